//! The server's side: [`Spawner`] starts the spawner (`nsplay __spawner`), sends it requests,
//! and a reader thread hands each reply to the call waiting for it and each [`Event`] to the
//! server. A reply that cannot be read still fails its call (its request id is read on its own),
//! and a message whose id cannot be read fails every waiting call: no call waits for ever.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::channel::{self, Channel, ChannelError, decode};
use super::message::{Event, Helper, Reply, Request, SessionSpec, TerminalSpec, ToServer, ToServerHead};
use crate::consts::SANDBOX_PATH;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the spawner helper ({exe}): {source}")]
    Start { exe: String, source: std::io::Error },
    #[error("the spawner helper is gone (it exited or crashed); restart nsplay")]
    Gone,
    /// The session or terminal could not be set up; `message` is the text of the error in
    /// `helper`.
    #[error("{message}")]
    Failed { helper: Helper, message: String },
    #[error("the session has ended")]
    SessionEnded,
    #[error("the prepared shell is gone")]
    ShellGone,
    /// The server could not take a new terminal's descriptors over.
    #[error("{0}")]
    Terminal(#[source] std::io::Error),
    #[error("spawner protocol: {0}")]
    Protocol(String),
    /// The reply came, but the server could not take its descriptors (it is out of them): this
    /// one call fails, the link to the spawner stays.
    #[error(
        "the server is out of file descriptors and could not take the new session or terminal over; try again shortly (if it persists, raise the server's open-file limit, LimitNOFILE=)"
    )]
    DescriptorsLost,
}

pub struct SessionHandle {
    /// Host pid of the session's init (PID 1 inside).
    pub init_pid: i32,
    pub pidfd: OwnedFd,
}

pub struct TerminalHandle {
    /// Host pid of the terminal's joiner (its exit is the terminal's exit).
    pub pid: i32,
    /// Input and window size (and output, unless relayed).
    pub master: OwnedFd,
    /// For a parked terminal: writing one byte lets the program exec; closing it unwritten
    /// makes the program exit instead.
    pub gate: Option<OwnedFd>,
    /// For a relayed terminal: the read end of the pipe the joiner copies the output into, in
    /// chunks of up to [`crate::consts::RELAY_CHUNK`] bytes; end of file once the program has
    /// exited.
    pub output: Option<OwnedFd>,
}

struct Shared {
    ch: Channel<Request, ToServer>,
    next_req: u64,
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::SyncSender<Result<Reply, SpawnError>>>>>;

/// The server's handle on its spawner. Calls block for the few milliseconds a spawn takes; from
/// async code call them through `spawn_blocking`.
pub struct Spawner {
    shared: Mutex<Shared>,
    pending: Pending,
}

impl Spawner {
    /// Starts the helper by exec'ing `exe __spawner`. Call it before starting any thread that
    /// might outlive the call, since the helper's PDEATHSIG follows the calling thread.
    pub fn start(exe: &Path, on_event: impl Fn(Event) + Send + 'static) -> Result<Spawner, SpawnError> {
        let start_err = |source| SpawnError::Start { exe: exe.display().to_string(), source };
        let (ours, theirs) = channel::socket_pair().map_err(|e| start_err(e.into()))?;
        // The helper's end must survive exec; ours stays close-on-exec.
        nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
            .map_err(|e| start_err(e.into()))?;
        let child = std::process::Command::new(exe)
            .arg0("nsplay")
            .arg("__spawner")
            .env_clear()
            // Not in argv: a session's init is a fork of the spawner and its command line is
            // world-readable inside the session; its environment is not (it is non-dumpable).
            .env("NSPLAY_SPAWNER_FD", theirs.as_raw_fd().to_string())
            .env("NSPLAY_SERVER_PID", std::process::id().to_string())
            .env("PATH", SANDBOX_PATH)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(start_err)?;
        drop(theirs);
        // The spawner is reaped by this thread-less detached waiter so it never lingers as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let pending: Pending = Arc::default();
        let reader = Channel::new(ours.try_clone().map_err(start_err)?, None);
        let reader_pending = pending.clone();
        std::thread::Builder::new()
            .name("spawner-reader".into())
            .spawn(move || reader_loop(reader, reader_pending, on_event))
            .map_err(start_err)?;
        Ok(Spawner { shared: Mutex::new(Shared { ch: Channel::new(ours, None), next_req: 1 }), pending })
    }

    fn call(&self, make: impl FnOnce(u64) -> Request) -> Result<Reply, SpawnError> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let req = shared.next_req;
            shared.next_req += 1;
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(req, tx);
            if let Err(e) = shared.ch.send(make(req)) {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
                return Err(match e {
                    ChannelError::Send(_) => SpawnError::Gone,
                    e => SpawnError::Protocol(e.to_string()),
                });
            }
        }
        rx.recv().map_err(|_| SpawnError::Gone)?
    }

    pub fn create_session(&self, session: u64, spec: SessionSpec) -> Result<SessionHandle, SpawnError> {
        match self.call(|req| Request::CreateSession { req, session, spec })? {
            Reply::SessionReady { init_pid, pidfd } => Ok(SessionHandle { init_pid, pidfd }),
            other => Err(refused("SessionReady", other)),
        }
    }

    pub fn open_terminal(&self, session: u64, terminal: u64, spec: TerminalSpec) -> Result<TerminalHandle, SpawnError> {
        match self.call(|req| Request::OpenTerminal { req, session, terminal, spec })? {
            Reply::TerminalReady { pid, fds } => {
                Ok(TerminalHandle { pid, master: fds.master, gate: fds.gate, output: fds.output })
            }
            other => Err(refused("TerminalReady", other)),
        }
    }

    /// Asks the spawner to kill the session's keeper (and so its init and PID namespace).
    /// The caller still empties and removes the cgroup: that is the guarantee.
    pub fn end_session(&self, session: u64) {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let _ = shared.ch.send(Request::EndSession { session });
    }
}

/// The error for a reply other than the one `expected`.
fn refused(expected: &'static str, reply: Reply) -> SpawnError {
    match reply {
        Reply::Failed { helper, message } => SpawnError::Failed { helper, message },
        Reply::NoSuchSession => SpawnError::SessionEnded,
        Reply::BadRequest { message } => SpawnError::Protocol(message),
        other => SpawnError::Protocol(format!("expected {expected}, got {}", other.kind())),
    }
}

fn reader_loop(ch: Channel<Request, ToServer>, pending: Pending, on_event: impl Fn(Event)) {
    let deliver = |req: u64, r: Result<Reply, SpawnError>| {
        if let Some(tx) = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req) {
            let _ = tx.send(r);
        }
    };
    // A message nobody can pair with its call: every waiting call fails (and may be retried).
    let fail_all = |why: String| {
        for (_, tx) in pending.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = tx.send(Err(SpawnError::Protocol(why.clone())));
        }
    };
    loop {
        let (data, fds) = match ch.recv_datagram() {
            Ok(d) => d,
            Err(e @ ChannelError::Truncated) => {
                fail_all(e.to_string());
                continue;
            }
            // Out of descriptors for a moment: only the call this reply answers fails (the
            // descriptors that did arrive are closed; the helper that sent them sees its end
            // close and exits).
            Err(ChannelError::DescriptorsLost { data }) => {
                match decode::<ToServerHead>(&data, Vec::new()) {
                    Ok(ToServerHead::Reply { req }) => deliver(req, Err(SpawnError::DescriptorsLost)),
                    Ok(ToServerHead::Event(_)) => {}
                    Err(e) => fail_all(format!("unreadable message: {e}")),
                }
                continue;
            }
            // Closed, or the socket broke: the spawner is gone.
            Err(_) => break,
        };
        match decode::<ToServer>(&data, fds) {
            Ok(ToServer::Reply { req, reply }) => deliver(req, Ok(reply)),
            Ok(ToServer::Event(event)) => on_event(event),
            Err(e) => match decode::<ToServerHead>(&data, Vec::new()) {
                Ok(ToServerHead::Reply { req }) => {
                    deliver(req, Err(SpawnError::Protocol(format!("unreadable reply: {e}"))))
                }
                // Nobody waits for an event.
                Ok(ToServerHead::Event(_)) => {}
                Err(_) => fail_all(format!("unreadable message: {e}")),
            },
        }
    }
    // Wake every caller still waiting: their senders drop here.
    pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    on_event(Event::SpawnerGone);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Runs a reader over one end of a pair; returns the other end, and a waiting call for `req`.
    fn reader_with_call(req: u64) -> (Channel<ToServer, Request>, mpsc::Receiver<Result<Reply, SpawnError>>) {
        let (ours, spawner) = channel::pair::<Request, ToServer>(None).expect("socketpair");
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::sync_channel(1);
        pending.lock().expect("lock").insert(req, tx);
        std::thread::spawn(move || reader_loop(ours, pending, |_| {}));
        (spawner, rx)
    }

    fn wait(rx: &mpsc::Receiver<Result<Reply, SpawnError>>) -> Result<Reply, SpawnError> {
        rx.recv_timeout(Duration::from_secs(5)).expect("the call is answered, not left waiting")
    }

    #[test]
    fn an_unreadable_reply_fails_its_call() {
        let (spawner, rx) = reader_with_call(7);
        spawner.send_datagram(br#"{"Reply":{"req":7,"reply":{"NoSuchReply":1}}}"#, &[]).expect("send");
        let e = wait(&rx).expect_err("an error");
        assert!(matches!(&e, SpawnError::Protocol(m) if m.starts_with("unreadable reply: ")), "{e}");
    }

    #[test]
    fn a_message_without_a_readable_id_fails_every_call() {
        let (spawner, rx) = reader_with_call(3);
        spawner.send_datagram(b"\xff garbage", &[]).expect("send");
        let e = wait(&rx).expect_err("an error");
        assert!(matches!(&e, SpawnError::Protocol(m) if m.starts_with("unreadable message: ")), "{e}");
    }

    #[test]
    fn a_reply_whose_descriptors_cannot_be_taken_fails_only_its_call() {
        let (ours, spawner) = channel::pair::<Request, ToServer>(None).expect("socketpair");
        let pending: Pending = Arc::default();
        let (tx7, rx7) = mpsc::sync_channel(1);
        let (tx8, rx8) = mpsc::sync_channel(1);
        pending.lock().expect("lock").insert(7, tx7);
        pending.lock().expect("lock").insert(8, tx8);
        let (events_tx, events) = mpsc::channel();
        std::thread::spawn(move || reader_loop(ours, pending, move |e| drop(events_tx.send(e))));
        // More descriptors than the reader has room for (its buffer is aligned up: well more): the
        // kernel cuts the control data short (MSG_CTRUNC), as when the receiver is out of fds.
        let pipes: Vec<(OwnedFd, OwnedFd)> =
            (0..channel::MAX_FDS + 5).map(|_| nix::unistd::pipe().expect("pipe")).collect();
        let fds: Vec<_> = pipes.iter().map(|(_, w)| std::os::fd::AsFd::as_fd(w)).collect();
        let data = br#"{"Reply":{"req":7,"reply":{"TerminalReady":{"pid":1,"fds":{"master":0,"gate":1,"output":2}}}}}"#;
        spawner.send_datagram(data, &fds).expect("send");
        let e = wait(&rx7).expect_err("the call fails");
        assert!(matches!(e, SpawnError::DescriptorsLost), "{e}");
        assert!(e.to_string().contains("out of file descriptors"), "{e}");
        // The descriptors that did arrive were closed: the pipes' write ends are ours alone.
        drop(fds);
        for (r, w) in pipes {
            drop(w);
            let mut buf = [0u8; 1];
            assert_eq!(nix::unistd::read(&r, &mut buf), Ok(0), "a received descriptor was leaked");
        }
        // The link lives on: the next reply reaches its call, and no SpawnerGone was reported.
        spawner.send(ToServer::Reply { req: 8, reply: Reply::NoSuchSession }).expect("send");
        assert!(matches!(wait(&rx8), Ok(Reply::NoSuchSession)));
        assert!(events.try_recv().is_err(), "the reader reported an event");
    }

    #[test]
    fn a_reply_reaches_its_call() {
        let (spawner, rx) = reader_with_call(5);
        spawner.send(ToServer::Reply { req: 5, reply: Reply::NoSuchSession }).expect("send");
        assert!(matches!(wait(&rx), Ok(Reply::NoSuchSession)));
    }
}
