//! A typed channel over one end of a `SOCK_SEQPACKET` socket pair: one [`Message`] per
//! datagram, JSON, at most [`MAX_MSG`] bytes and [`MAX_FDS`] descriptors, the descriptors as
//! `SCM_RIGHTS`. `Channel<S, R>` sends `S` and receives `R`; a receive waits at most the
//! channel's timeout, and the typed receive calls ([`Channel::recv_terminal_ready`], …) fail with
//! "expected X, got Y" instead of letting a caller misread a message.
//!
//! Descriptors ride inside the message (see [`super::fds`]): encoding collects them for
//! `SCM_RIGHTS`, decoding hands each field the one it names, and a message whose descriptors are
//! missing, or more than it names, is refused.

use std::io::IoSlice;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair};

use super::fds;
use super::message::{FromHelper, Helper, Message, TerminalFds, ToKeeper};
use crate::harden;
use crate::sys;

/// Largest message either side sends; requests are small JSON documents.
pub const MAX_MSG: usize = 64 * 1024;
/// Most descriptors one message carries (a terminal: pty master, start gate, output relay).
pub const MAX_FDS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("socketpair: {0}")]
    Socketpair(#[source] Errno),
    #[error("send: {0}")]
    Send(#[source] Errno),
    #[error("recv: {0}")]
    Recv(#[source] Errno),
    #[error("poll: {0}")]
    Poll(#[source] Errno),
    #[error("timed out after {0} s")]
    Timeout(u64),
    #[error("the other side closed the channel")]
    Closed,
    #[error("a message of {0} bytes is larger than the limit of {MAX_MSG}")]
    TooLarge(usize),
    #[error("a message carries {0} descriptors, more than the limit of {MAX_FDS}")]
    TooManyFds(usize),
    #[error("a message arrived cut short (over {MAX_MSG} bytes)")]
    Truncated,
    /// The kernel could not hand over every descriptor of a message (this process is out of
    /// file descriptors, or the message carried more than [`MAX_FDS`]); `data` is its text, whole.
    #[error(
        "a message arrived without its descriptors: this process is out of file descriptors (or it carried more than {MAX_FDS})"
    )]
    DescriptorsLost { data: Vec<u8> },
    #[error("unreadable message: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("the message names descriptor {index}, but {received} came with it")]
    MissingFd { index: usize, received: usize },
    #[error("{0} descriptors came with the message that it does not name")]
    ExtraFds(usize),
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: &'static str },
    /// The helper on the other side reported that its set-up failed (the text of its error).
    #[error("{message}")]
    Failed { helper: Helper, message: String },
}

/// One end of a socket pair that sends `S` and receives `R`.
pub struct Channel<S, R> {
    sock: OwnedFd,
    /// How long a receive waits; `None`: for ever.
    timeout: Option<Duration>,
    _types: PhantomData<fn(S) -> R>,
}

/// Two connected ends: one sends `A` and receives `B`, the other the reverse.
pub type Pair<A, B> = (Channel<A, B>, Channel<B, A>);

/// A connected pair of channels (close-on-exec): messages sent on one are received on the other.
pub fn pair<A: Message, B: Message>(timeout: Option<Duration>) -> Result<Pair<A, B>, ChannelError> {
    let (a, b) = socket_pair().map_err(ChannelError::Socketpair)?;
    Ok((Channel::new(a, timeout), Channel::new(b, timeout)))
}

/// The socket pair under a channel (close-on-exec), for a peer that is exec'd, not forked.
pub fn socket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
}

impl<S: Message, R: Message> Channel<S, R> {
    pub fn new(sock: OwnedFd, timeout: Option<Duration>) -> Self {
        Channel { sock, timeout, _types: PhantomData }
    }

    /// The same channel, its receives waiting for ever (for a receiver that polls first).
    pub fn without_timeout(self) -> Self {
        Channel { timeout: None, ..self }
    }

    /// Sends `msg` with the descriptors it holds, then closes this side's copies of them.
    pub fn send(&self, msg: S) -> Result<(), ChannelError> {
        let (data, fds) = encode(&msg)?;
        send_datagram(self.sock.as_fd(), &data, &fds)
    }

    /// Receives the next message.
    pub fn recv(&self) -> Result<R, ChannelError> {
        let (data, fds) = self.recv_datagram()?;
        decode(&data, fds)
    }

    /// Receives the next datagram undecoded (for a receiver that must learn something from a
    /// message it cannot decode: see `client`).
    pub fn recv_datagram(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), ChannelError> {
        if let Some(t) = self.timeout
            && !harden::wait_readable(self.sock.as_fd(), t).map_err(ChannelError::Poll)?
        {
            return Err(ChannelError::Timeout(t.as_secs()));
        }
        recv_datagram(self.sock.as_fd())
    }

    /// Sends a datagram as it is (tests: what a broken peer would send).
    #[cfg(test)]
    pub fn send_datagram(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        send_datagram(self.sock.as_fd(), data, &raw)
    }
}

impl<S, R> AsFd for Channel<S, R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The spawner's side of a helper's set-up socket.
impl<S: Message> Channel<S, FromHelper> {
    /// Receives a message `pick` accepts (returning it back otherwise); a helper's `Failed`
    /// becomes [`ChannelError::Failed`], anything else [`ChannelError::Unexpected`].
    pub fn expect<T>(
        &self,
        expected: &'static str,
        pick: impl FnOnce(FromHelper) -> Result<T, FromHelper>,
    ) -> Result<T, ChannelError> {
        match pick(self.recv()?) {
            Ok(t) => Ok(t),
            Err(FromHelper::Failed { helper, message }) => Err(ChannelError::Failed { helper, message }),
            Err(other) => Err(ChannelError::Unexpected { expected, got: other.kind() }),
        }
    }

    pub fn recv_id_map_request(&self) -> Result<(), ChannelError> {
        self.expect("WantIdMaps", |m| match m {
            FromHelper::WantIdMaps => Ok(()),
            m => Err(m),
        })
    }

    pub fn recv_terminal_ready(&self) -> Result<TerminalFds, ChannelError> {
        self.expect("TerminalReady", |m| match m {
            FromHelper::TerminalReady(fds) => Ok(fds),
            m => Err(m),
        })
    }
}

/// The keeper's side of its set-up socket.
impl Channel<FromHelper, ToKeeper> {
    pub fn recv_id_maps_written(&self) -> Result<(), ChannelError> {
        match self.recv()? {
            ToKeeper::IdMapsWritten => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding: JSON plus a descriptor table.

fn encode<M: Message>(msg: &M) -> Result<(Vec<u8>, Vec<RawFd>), ChannelError> {
    let (data, fds) = fds::encoding(|| serde_json::to_vec(msg));
    let data = data.map_err(ChannelError::Malformed)?;
    if data.len() > MAX_MSG {
        return Err(ChannelError::TooLarge(data.len()));
    }
    if fds.len() > MAX_FDS {
        return Err(ChannelError::TooManyFds(fds.len()));
    }
    Ok((data, fds))
}

/// Decodes one datagram. Every descriptor that arrived ends up in the message or is closed.
pub fn decode<M: serde::de::DeserializeOwned>(data: &[u8], fds: Vec<OwnedFd>) -> Result<M, ChannelError> {
    let received = fds.len();
    let (msg, extra, missing) = fds::decoding(fds, || serde_json::from_slice::<M>(data));
    match (msg, missing) {
        (Err(_), Some(index)) => Err(ChannelError::MissingFd { index, received }),
        (Err(e), None) => Err(ChannelError::Malformed(e)),
        // Dropping the message closes the descriptors it did take.
        (Ok(_), _) if extra > 0 => Err(ChannelError::ExtraFds(extra)),
        (Ok(m), _) => Ok(m),
    }
}

fn send_datagram(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> Result<(), ChannelError> {
    let iov = [IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            r => return r.map(drop).map_err(ChannelError::Send),
        }
    }
}

fn recv_datagram(sock: BorrowedFd<'_>) -> Result<(Vec<u8>, Vec<OwnedFd>), ChannelError> {
    recv_datagram_with_room(sock, MAX_FDS)
}

/// Receives one datagram with room for `max_fds` descriptors.
fn recv_datagram_with_room(sock: BorrowedFd<'_>, max_fds: usize) -> Result<(Vec<u8>, Vec<OwnedFd>), ChannelError> {
    let mut buf = vec![0u8; MAX_MSG];
    let (n, flags, fds) = sys::recv_with_fds(sock, &mut buf, max_fds)
        .map_err(|e| ChannelError::Recv(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    if flags & libc::MSG_TRUNC != 0 {
        return Err(ChannelError::Truncated);
    }
    if n == 0 && fds.is_empty() && flags & libc::MSG_CTRUNC == 0 {
        return Err(ChannelError::Closed);
    }
    buf.truncate(n);
    if flags & libc::MSG_CTRUNC != 0 {
        // The text is whole, so the receiver can still tell which call this fails; the
        // descriptors that did arrive are closed here.
        drop(fds);
        return Err(ChannelError::DescriptorsLost { data: buf });
    }
    Ok((buf, fds))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    type Helper2Spawner = Pair<FromHelper, ToKeeper>;

    fn channels() -> Helper2Spawner {
        pair(Some(Duration::from_secs(1))).expect("socketpair")
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
    }

    /// Writes through `write_end` and reads it back from `read_end`: the two are one pipe.
    fn same_pipe(write_end: &OwnedFd, read_end: &OwnedFd, what: &[u8]) {
        assert_eq!(nix::unistd::write(write_end, what), Ok(what.len()));
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(read_end.as_fd(), &mut buf).expect("read");
        assert_eq!(&buf[..n], what);
    }

    #[test]
    fn descriptors_round_trip_in_their_fields() {
        let (helper, spawner) = channels();
        let (master_r, master_w) = pipe();
        let (gate_r, gate_w) = pipe();
        let (out_r, out_w) = pipe();
        let fds = TerminalFds { master: master_w, gate: Some(gate_w), output: Some(out_w) };
        helper.send(FromHelper::TerminalReady(fds)).expect("send");
        let got = spawner.recv_terminal_ready().expect("recv");
        same_pipe(&got.master, &master_r, b"master");
        same_pipe(got.gate.as_ref().expect("gate"), &gate_r, b"gate");
        same_pipe(got.output.as_ref().expect("output"), &out_r, b"output");

        // Without a gate, the output is still the output.
        let (master_r, master_w) = pipe();
        let (out_r, out_w) = pipe();
        helper
            .send(FromHelper::TerminalReady(TerminalFds { master: master_w, gate: None, output: Some(out_w) }))
            .expect("send");
        let got = spawner.recv_terminal_ready().expect("recv");
        assert!(got.gate.is_none());
        same_pipe(&got.master, &master_r, b"m");
        same_pipe(got.output.as_ref().expect("output"), &out_r, b"o");

        let (pid_r, pid_w) = pipe();
        helper.send(FromHelper::InitStarted { pid: 42, pidfd: pid_w }).expect("send");
        let (pid, pidfd) = spawner
            .expect("InitStarted", |m| match m {
                FromHelper::InitStarted { pid, pidfd } => Ok((pid, pidfd)),
                m => Err(m),
            })
            .expect("recv");
        assert_eq!(pid, 42);
        same_pipe(&pidfd, &pid_r, b"p");
    }

    #[test]
    fn a_typed_receive_names_what_it_expected_and_got() {
        let (helper, spawner) = channels();
        helper.send(FromHelper::WantIdMaps).expect("send");
        let e = spawner.recv_terminal_ready().expect_err("wrong message");
        assert_eq!(e.to_string(), "expected TerminalReady, got WantIdMaps");
        assert!(matches!(e, ChannelError::Unexpected { expected: "TerminalReady", got: "WantIdMaps" }));
    }

    #[test]
    fn a_helper_failure_arrives_as_its_text() {
        let (helper, spawner) = channels();
        let message = "creating namespaces: EPERM: Operation not permitted".to_string();
        helper.send(FromHelper::Failed { helper: Helper::Keeper, message: message.clone() }).expect("send");
        let e = spawner.recv_id_map_request().expect_err("failure");
        assert_eq!(e.to_string(), message);
        assert!(matches!(e, ChannelError::Failed { helper: Helper::Keeper, .. }));
    }

    #[test]
    fn garbage_and_oversized_messages_fail() {
        let (helper, spawner) = channels();
        helper.send_datagram(b"not json", &[]).expect("send");
        let e = spawner.recv().expect_err("garbage");
        assert!(matches!(e, ChannelError::Malformed(_)), "{e}");
        assert!(e.to_string().starts_with("unreadable message: "), "{e}");

        helper.send_datagram(br#"{"NoSuchVariant":1}"#, &[]).expect("send");
        assert!(matches!(spawner.recv(), Err(ChannelError::Malformed(_))));

        helper.send_datagram(&vec![b' '; MAX_MSG + 1], &[]).expect("send");
        let e = spawner.recv().expect_err("oversized");
        assert!(matches!(e, ChannelError::Truncated), "{e}");

        let huge = FromHelper::Failed { helper: Helper::Joiner, message: "x".repeat(MAX_MSG) };
        let e = helper.send(huge).expect_err("oversized");
        assert!(matches!(e, ChannelError::TooLarge(n) if n > MAX_MSG), "{e}");

        // The channel still works after each of them.
        helper.send(FromHelper::WantIdMaps).expect("send");
        spawner.recv_id_map_request().expect("recv");
    }

    #[test]
    fn a_message_without_its_descriptors_fails() {
        let (helper, spawner) = channels();
        let (_r, w) = pipe();
        let data = br#"{"TerminalReady":{"master":0,"gate":null,"output":1}}"#;
        helper.send_datagram(data, &[w.as_fd()]).expect("send");
        let e = spawner.recv().expect_err("missing fd");
        assert!(matches!(e, ChannelError::MissingFd { index: 1, received: 1 }), "{e}");
        assert_eq!(e.to_string(), "the message names descriptor 1, but 1 came with it");

        // A descriptor it names twice is missing the second time.
        helper.send_datagram(br#"{"TerminalReady":{"master":0,"gate":0,"output":null}}"#, &[w.as_fd()]).expect("send");
        assert!(matches!(spawner.recv(), Err(ChannelError::MissingFd { index: 0, .. })));

        // And descriptors it does not name are refused (and closed).
        helper.send_datagram(br#""WantIdMaps""#, &[w.as_fd()]).expect("send");
        assert!(matches!(spawner.recv(), Err(ChannelError::ExtraFds(1))));
    }

    #[test]
    fn a_receive_times_out_and_sees_the_peer_close() {
        let (helper, spawner) = channels();
        assert!(matches!(spawner.recv(), Err(ChannelError::Timeout(1))));
        drop(helper);
        assert!(matches!(spawner.recv(), Err(ChannelError::Closed)));
    }

    #[test]
    fn descriptors_are_only_encoded_by_a_channel() {
        let (_r, w) = pipe();
        let msg = FromHelper::InitStarted { pid: 1, pidfd: w };
        assert!(serde_json::to_vec(&msg).is_err());
        assert!(serde_json::from_slice::<FromHelper>(br#"{"InitStarted":{"pid":1,"pidfd":0}}"#).is_err());
    }
}
