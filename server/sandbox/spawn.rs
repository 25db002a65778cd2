//! The spawner: a single-threaded helper process (a fresh exec of the nsplay binary, started
//! before the server runs any thread) that does every fork, unshare, setns, mount and exec.
//! The multi-threaded server never forks: it sends requests over a `SOCK_SEQPACKET` socket and
//! gets back file descriptors (a pidfd per session, a pty master per terminal) and exit events.
//!
//! Process tree of one session (host view):
//!
//! ```text
//! spawner ── C1 (keeper: joins the cgroup, builds the root, unshares, waits) ── init (PID 1)
//!        └── J (joiner: setns into init's namespaces, opens a pty; then relays its output) ── shell
//! ```
//! A terminal may be *parked* (its program confined and waiting just before `execve` for a byte
//! on a start gate: the warm pool) and *relayed* (its joiner copies the pty's output into a pipe
//! to the server: see [`super::relay`]).
//! Every helper is non-dumpable and has `PR_SET_PDEATHSIG`, so killing the server kills the
//! spawner, which kills every keeper and joiner, which kills every init; an init's death ends its
//! whole PID namespace.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, getpid, setgroups, setresgid, setresuid};
use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::{init, mounts, namespaces, pty, relay, sys};

/// Largest control message either side sends; requests are small JSON documents.
const MAX_MSG: usize = 64 * 1024;
/// How long a session or terminal may take to come up before the spawner gives up on it.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the spawner helper ({exe}): {source}")]
    Start { exe: String, source: std::io::Error },
    #[error("the spawner helper is gone (it exited or crashed); restart nsplay")]
    Gone,
    #[error("{0}")]
    Setup(String),
    #[error("spawner protocol: {0}")]
    Protocol(String),
}

/// What a new session looks like (sent from the server to the spawner).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSpec {
    pub hostname: String,
    pub limits: Limits,
    pub uid_base: u32,
    pub id_count: u32,
    /// `cgroup.procs` files of the session's cgroup (one per v1 hierarchy, one on v2).
    pub procs_files: Vec<PathBuf>,
    /// Where the keeper moves once init runs (empty: it stays in the session's group). See
    /// `CgroupDriver::helper_procs_files`.
    pub helper_procs_files: Vec<PathBuf>,
    /// Empty directory on the host where the session root is assembled (in a private mount
    /// namespace, so the host never sees it).
    pub stage: PathBuf,
}

/// A program to run on a new pty inside a running session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TerminalSpec {
    /// Empty: the default shell (bash if the session has it, else sh).
    pub argv: Vec<String>,
    pub cols: u16,
    pub rows: u16,
    pub procs_files: Vec<PathBuf>,
    /// Where the joiner moves once the program runs (empty: it stays in the session's group).
    pub helper_procs_files: Vec<PathBuf>,
    /// Seccomp filter and rlimits of the program.
    pub confinement: pty::Confinement,
    /// Hold the program just before its `execve` until a byte arrives on the terminal's start
    /// gate ([`TerminalHandle::gate`]): everything up to the exec is then done ahead of time.
    pub parked: bool,
    /// Relay the terminal's output through the joiner into a pipe ([`TerminalHandle::output`])
    /// instead of leaving the reader to read the pty master (see `relay`).
    pub relay: bool,
    /// Where the joiner goes once the program runs when it relays: the session's relay group,
    /// which has limits of its own (see `cgroups::RELAY_SUFFIX`).
    pub relay_procs_files: Vec<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    CreateSession { req: u64, session: u64, spec: SessionSpec },
    OpenTerminal { req: u64, session: u64, terminal: u64, spec: TerminalSpec },
    EndSession { session: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// Carries init's pidfd.
    SessionReady {
        req: u64,
        init_pid: i32,
    },
    /// Carries the pty master, the start gate of a parked terminal and the output pipe of a
    /// relayed one (in that order).
    TerminalReady {
        req: u64,
        pid: i32,
    },
    Failed {
        req: u64,
        message: String,
    },
    SessionExited {
        session: u64,
        status: i32,
    },
    TerminalExited {
        session: u64,
        terminal: u64,
        code: i32,
    },
}

/// Things that happen on their own, reported to whoever started the spawner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The session's init is gone (its keeper's exit status).
    SessionExited { session: u64, status: i32 },
    /// The program on a terminal exited (`code` is 128+signal when killed by a signal).
    TerminalExited { session: u64, terminal: u64, code: i32 },
    /// The spawner itself exited: nothing can be spawned any more.
    SpawnerGone,
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
    /// chunks of up to [`RELAY_CHUNK`] bytes; end of file once the program has exited.
    pub output: Option<OwnedFd>,
}

/// The descriptors of a terminal on the wire, in a fixed order: master, gate, output.
struct TerminalFds {
    master: OwnedFd,
    gate: Option<OwnedFd>,
    output: Option<OwnedFd>,
}

impl TerminalFds {
    fn from_wire(fds: Vec<OwnedFd>, parked: bool, relay: bool) -> Option<TerminalFds> {
        if fds.len() != 1 + usize::from(parked) + usize::from(relay) {
            return None;
        }
        let mut fds = fds.into_iter();
        let master = fds.next()?;
        let gate = if parked { fds.next() } else { None };
        let output = if relay { fds.next() } else { None };
        Some(TerminalFds { master, gate, output })
    }

    fn wire(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![self.master.as_fd()];
        v.extend(self.gate.as_ref().map(|g| g.as_fd()));
        v.extend(self.output.as_ref().map(|o| o.as_fd()));
        v
    }
}

/// Largest chunk the relay writes at once (and so the largest read the server needs).
pub const RELAY_CHUNK: usize = 32 * 1024;

// ---------------------------------------------------------------------------------------------
// Wire helpers: one JSON message per datagram, with up to `MAX_FDS` descriptors.

fn send_msg(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> nix::Result<()> {
    let iov = [IoSlice::new(data)];
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map(drop)
}

/// Most descriptors one message carries (a terminal: pty master, start gate, output relay).
const MAX_FDS: usize = 3;

fn recv_msg(sock: BorrowedFd<'_>) -> nix::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // Owned (and so closed) even when a message carries more than expected.
            fds.extend(raw.into_iter().map(sys::adopt_received_fd));
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    Ok((buf, fds))
}

fn send_json<T: Serialize>(sock: BorrowedFd<'_>, v: &T, fds: &[BorrowedFd<'_>]) -> nix::Result<()> {
    let data = serde_json::to_vec(v).map_err(|_| Errno::EINVAL)?;
    send_msg(sock, &data, fds)
}

fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
}

/// Waits until `sock` is readable or the setup timeout passes.
fn wait_readable(sock: BorrowedFd<'_>, what: &str) -> Result<(), String> {
    let mut fds = [PollFd::new(sock, PollFlags::POLLIN)];
    // PollTimeout takes at most u16 milliseconds: wait in one-second chunks.
    for _ in 0..SETUP_TIMEOUT.as_secs() {
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("{what}: poll: {e}")),
        }
    }
    Err(format!("{what}: timed out after {} s", SETUP_TIMEOUT.as_secs()))
}

// ---------------------------------------------------------------------------------------------
// Server side.

struct Shared {
    sock: OwnedFd,
    next_req: u64,
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::SyncSender<(Reply, Vec<OwnedFd>)>>>>;

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
        let (ours, theirs) = seqpacket_pair().map_err(|e| start_err(e.into()))?;
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
        let reader_sock = ours.try_clone().map_err(start_err)?;
        let reader_pending = pending.clone();
        std::thread::Builder::new()
            .name("spawner-reader".into())
            .spawn(move || reader_loop(reader_sock, reader_pending, on_event))
            .map_err(start_err)?;
        Ok(Spawner { shared: Mutex::new(Shared { sock: ours, next_req: 1 }), pending })
    }

    fn call(&self, make: impl FnOnce(u64) -> Request) -> Result<(Reply, Vec<OwnedFd>), SpawnError> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let req = shared.next_req;
            shared.next_req += 1;
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(req, tx);
            if send_json(shared.sock.as_fd(), &make(req), &[]).is_err() {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
                return Err(SpawnError::Gone);
            }
        }
        rx.recv().map_err(|_| SpawnError::Gone)
    }

    pub fn create_session(&self, session: u64, spec: SessionSpec) -> Result<SessionHandle, SpawnError> {
        match self.call(|req| Request::CreateSession { req, session, spec })? {
            (Reply::SessionReady { init_pid, .. }, fds) if fds.len() == 1 => {
                let pidfd = fds.into_iter().next().expect("one fd");
                Ok(SessionHandle { init_pid, pidfd })
            }
            (Reply::Failed { message, .. }, _) => Err(SpawnError::Setup(message)),
            (other, _) => Err(SpawnError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    pub fn open_terminal(&self, session: u64, terminal: u64, spec: TerminalSpec) -> Result<TerminalHandle, SpawnError> {
        let (parked, relay) = (spec.parked, spec.relay);
        match self.call(|req| Request::OpenTerminal { req, session, terminal, spec })? {
            (Reply::TerminalReady { pid, .. }, fds) => match TerminalFds::from_wire(fds, parked, relay) {
                Some(t) => Ok(TerminalHandle { pid, master: t.master, gate: t.gate, output: t.output }),
                None => Err(SpawnError::Protocol("a terminal came with the wrong descriptors".into())),
            },
            (Reply::Failed { message, .. }, _) => Err(SpawnError::Setup(message)),
            (other, _) => Err(SpawnError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Asks the spawner to kill the session's keeper (and so its init and PID namespace).
    /// The caller still empties and removes the cgroup: that is the guarantee.
    pub fn end_session(&self, session: u64) {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let _ = send_json(shared.sock.as_fd(), &Request::EndSession { session }, &[]);
    }
}

fn reader_loop(sock: OwnedFd, pending: Pending, on_event: impl Fn(Event)) {
    loop {
        let (data, fds) = match recv_msg(sock.as_fd()) {
            Ok((d, _)) if d.is_empty() => break,
            Ok(x) => x,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        let Ok(reply) = serde_json::from_slice::<Reply>(&data) else {
            continue;
        };
        let req = match &reply {
            Reply::SessionReady { req, .. } | Reply::TerminalReady { req, .. } | Reply::Failed { req, .. } => {
                Some(*req)
            }
            Reply::SessionExited { session, status } => {
                on_event(Event::SessionExited { session: *session, status: *status });
                None
            }
            Reply::TerminalExited { session, terminal, code } => {
                on_event(Event::TerminalExited { session: *session, terminal: *terminal, code: *code });
                None
            }
        };
        if let Some(req) = req
            && let Some(tx) = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req)
        {
            let _ = tx.send((reply, fds));
        }
    }
    // Wake every caller still waiting: their senders drop here.
    pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    on_event(Event::SpawnerGone);
}

// ---------------------------------------------------------------------------------------------
// Spawner side.

/// PATH inside the sandbox, and of the spawner itself (its environment is replaced at exec).
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct SessionEntry {
    keeper: Pid,
    init_pidfd: OwnedFd,
}

enum Child {
    Keeper { session: u64 },
    Joiner { session: u64, terminal: u64 },
}

/// Entry point of `nsplay __spawner` (socket fd and server pid in `NSPLAY_SPAWNER_FD` and
/// `NSPLAY_SERVER_PID`). Never returns.
pub fn run_spawner(sock_fd: RawFd, server_pid: i32) -> ! {
    let code = match spawner_main(sock_fd, server_pid) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nsplay spawner: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn spawner_main(sock_fd: RawFd, server_pid: i32) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    if nix::unistd::getppid().as_raw() != server_pid {
        return Err("the server exited before the spawner started".into());
    }
    let sock = sys::adopt_inherited_fd(sock_fd).map_err(|e| format!("control socket fd {sock_fd}: {e}"))?;
    // Nothing but stdio and the control socket: no fd of the server can reach a sandbox.
    let keep = sock.as_raw_fd();
    for fd in 3..keep {
        let _ = nix::unistd::close(fd);
    }
    sys::close_fds_from(keep + 1).map_err(|e| format!("close_range: {e}"))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(DUMPABLE): {e}"))?;
    // Supplementary groups of host root must never reach a session (they would grant access to
    // root-group files); and they cannot be dropped later inside a user namespace.
    setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    // Orphans of our helpers (a shell whose joiner was killed at teardown, an init whose keeper
    // died) come to us and are reaped at once by the loop below; otherwise they would wait for
    // the host's PID 1, and init (waiting in zap_pid_ns_processes) with them: measured 1.2 s per
    // DELETE on a host whose PID 1 reaps once a second, 10 ms with this.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("prctl(CHILD_SUBREAPER): {e}"))?;
    // Children are reaped through a signalfd; nothing in this process uses signal handlers.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|e| format!("sigprocmask: {e}"))?;
    let sigfd = SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| format!("signalfd: {e}"))?;

    let mut sessions: HashMap<u64, SessionEntry> = HashMap::new();
    let mut children: HashMap<Pid, Child> = HashMap::new();
    loop {
        let (sock_ready, sig_ready) = {
            let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN), PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
                Ok(_) => {}
            }
            let r = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            (r(&fds[0]), r(&fds[1]))
        };
        if sig_ready {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            reap(&sock, &mut sessions, &mut children);
        }
        if !sock_ready {
            continue;
        }
        let data = match recv_msg(sock.as_fd()) {
            Ok((d, _)) if d.is_empty() => break,
            Ok((d, _)) => d,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        let Ok(request) = serde_json::from_slice::<Request>(&data) else {
            continue;
        };
        match request {
            Request::CreateSession { req, session, spec } => match create_session(&spec) {
                Ok((keeper, init_pid, pidfd)) => {
                    let _ = send_json(sock.as_fd(), &Reply::SessionReady { req, init_pid }, &[pidfd.as_fd()]);
                    children.insert(keeper, Child::Keeper { session });
                    sessions.insert(session, SessionEntry { keeper, init_pidfd: pidfd });
                }
                Err(message) => {
                    let _ = send_json(sock.as_fd(), &Reply::Failed { req, message }, &[]);
                }
            },
            Request::OpenTerminal { req, session, terminal, spec } => {
                let result = match sessions.get(&session) {
                    Some(entry) => open_terminal(entry.init_pidfd.as_fd(), &spec),
                    None => Err("the session has ended".to_string()),
                };
                match result {
                    Ok((pid, fds)) => {
                        let _ = send_json(sock.as_fd(), &Reply::TerminalReady { req, pid: pid.as_raw() }, &fds.wire());
                        children.insert(pid, Child::Joiner { session, terminal });
                    }
                    Err(message) => {
                        let _ = send_json(sock.as_fd(), &Reply::Failed { req, message }, &[]);
                    }
                }
            }
            Request::EndSession { session } => {
                if let Some(entry) = sessions.get(&session) {
                    let _ = kill(entry.keeper, Signal::SIGKILL);
                }
            }
        }
    }
    // The server is gone: take every session with us (PDEATHSIG would too; this is explicit).
    for pid in children.keys() {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    Ok(())
}

/// Waits for `child` (a child of the caller) to end; returns its exit code (128+signal when
/// killed, 1 if it cannot be waited for).
pub(super) fn wait_exit(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(s) => {
                if let Some(c) = exit_code(s) {
                    return c;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

fn reap(sock: &OwnedFd, sessions: &mut HashMap<u64, SessionEntry>, children: &mut HashMap<Pid, Child>) {
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(s) => s,
        };
        let (Some(pid), Some(code)) = (status.pid(), exit_code(status)) else {
            continue;
        };
        match children.remove(&pid) {
            Some(Child::Keeper { session }) => {
                sessions.remove(&session);
                let _ = send_json(sock.as_fd(), &Reply::SessionExited { session, status: code }, &[]);
            }
            Some(Child::Joiner { session, terminal }) => {
                let _ = send_json(sock.as_fd(), &Reply::TerminalExited { session, terminal, code }, &[]);
            }
            None => {}
        }
    }
}

/// Writes the id maps of a process that has just unshared its user namespace.
fn write_id_maps(pid: Pid, spec: &SessionSpec) -> Result<(), String> {
    let line = format!("0 {} {}\n", spec.uid_base, spec.id_count);
    for (file, data) in [("setgroups", "deny"), ("uid_map", line.as_str()), ("gid_map", line.as_str())] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, data).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

/// Creates a session; returns (keeper pid, init's host pid, init's pidfd).
fn create_session(spec: &SessionSpec) -> Result<(Pid, i32, OwnedFd), String> {
    let (ours, theirs) = seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
    let keeper = match sys::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(ours);
            let err = keeper_main(spec, &theirs).unwrap_err();
            let _ = send_msg(theirs.as_fd(), format!("E{err}").as_bytes(), &[]);
            std::process::exit(1);
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let result = (|| {
        let mut init: Option<(i32, OwnedFd)> = None;
        let mut ready = false;
        while init.is_none() || !ready {
            wait_readable(ours.as_fd(), "starting the session")?;
            let (msg, fds) = recv_msg(ours.as_fd()).map_err(|e| format!("recv: {e}"))?;
            match msg.first() {
                Some(b'M') => {
                    write_id_maps(keeper, spec)?;
                    send_msg(ours.as_fd(), b"G", &[]).map_err(|e| format!("send: {e}"))?;
                }
                Some(b'P') => {
                    let pid = std::str::from_utf8(&msg[1..]).ok().and_then(|s| s.parse().ok());
                    match (pid, fds.into_iter().next()) {
                        (Some(pid), Some(fd)) => init = Some((pid, fd)),
                        _ => return Err("malformed init announcement".into()),
                    }
                    // Init and everything it starts stay in the session's group; the keeper
                    // (invisible inside) leaves it, so the session can empty its own group.
                    move_helper(keeper, &spec.helper_procs_files)?;
                }
                Some(b'R') => ready = true,
                Some(b'E') => return Err(String::from_utf8_lossy(&msg[1..]).into_owned()),
                None => return Err("the session's helper exited during set-up".into()),
                _ => return Err("unexpected message during set-up".into()),
            }
        }
        let (pid, fd) = init.expect("loop ends only with init");
        Ok((keeper, pid, fd))
    })();
    if result.is_err() {
        // The keeper's death takes init down (PDEATHSIG); the SIGCHLD loop reaps the keeper.
        let _ = kill(keeper, Signal::SIGKILL);
    }
    result
}

fn join_cgroup(procs_files: &[PathBuf]) -> Result<(), String> {
    let me = getpid().to_string();
    for f in procs_files {
        match std::fs::write(f, &me) {
            Ok(()) => {}
            // cgroup v2: the session handed controllers to child groups of its own, so its group
            // may hold no process any more ("no internal processes"): join a leaf inside it.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let leaf = f.with_file_name(TERMINALS_LEAF);
                match std::fs::create_dir(&leaf) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("creating cgroup {}: {e}", leaf.display())),
                }
                let procs = leaf.join("cgroup.procs");
                std::fs::write(&procs, &me).map_err(|e| format!("joining cgroup {}: {e}", procs.display()))?;
            }
            Err(e) => return Err(format!("joining cgroup {}: {e}", f.display())),
        }
    }
    Ok(())
}

/// Leaf of a session's cgroup that new terminals join once the session has handed controllers to
/// its child groups (cgroup v2).
const TERMINALS_LEAF: &str = "terminals";

/// Moves a helper (keeper or joiner: host processes the session cannot see) out of the session's
/// cgroup, once what it started runs there. On v2 the session could otherwise never empty its
/// own group and hand controllers to child groups, as the cgroups lesson does.
fn move_helper(pid: Pid, helper_procs_files: &[PathBuf]) -> Result<(), String> {
    for f in helper_procs_files {
        std::fs::write(f, pid.to_string()).map_err(|e| format!("moving helper {pid} to {}: {e}", f.display()))?;
    }
    Ok(())
}

fn become_root_inside() -> Result<(), String> {
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(|e| format!("setresgid: {e}"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(|e| format!("setresuid: {e}"))?;
    // Credential changes reset these two; set them again.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(DUMPABLE): {e}"))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    Ok(())
}

/// The keeper (C1): host root until it unshares; builds the root, creates the namespaces, forks
/// init and waits for it. Returns only on error.
fn keeper_main(spec: &SessionSpec, sync: &OwnedFd) -> Result<std::convert::Infallible, String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    // The process is in its cgroup before it does anything else, let alone exec.
    join_cgroup(&spec.procs_files)?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(mount): {e}"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    let rootfs = mounts::RootfsSpec { hostname: &spec.hostname, limits: &spec.limits };
    let plan = mounts::host_plan(&rootfs, &mounts::RealHost);
    mounts::build_host_phase(&spec.stage, &plan, &spec.limits, spec.uid_base).map_err(|e| e.to_string())?;
    // Everything mounted so far becomes locked in the session's mount namespace.
    unshare(namespaces::all_flags()).map_err(|e| {
        if e == Errno::EPERM || e == Errno::ENOSPC {
            format!("creating namespaces: {e}: user namespaces may be disabled (check sysctl user.max_user_namespaces and kernel.unprivileged_userns_clone)")
        } else {
            format!("creating namespaces: {e}")
        }
    })?;
    send_msg(sync.as_fd(), b"M", &[]).map_err(|e| format!("send: {e}"))?;
    wait_readable(sync.as_fd(), "waiting for id maps")?;
    let (msg, _) = recv_msg(sync.as_fd()).map_err(|e| format!("recv: {e}"))?;
    if msg != b"G" {
        return Err("the spawner did not write the id maps".into());
    }
    become_root_inside()?;
    match sys::fork_single_threaded().map_err(|e| format!("fork init: {e}"))? {
        ForkResult::Child => init::run_init(spec, sync),
        ForkResult::Parent { child } => {
            let pidfd = sys::pidfd_open(child).map_err(|e| format!("pidfd_open: {e}"))?;
            send_msg(sync.as_fd(), format!("P{child}").as_bytes(), &[pidfd.as_fd()])
                .map_err(|e| format!("send: {e}"))?;
            drop(pidfd);
            let _ = sys::close_fds_from(0);
            std::process::exit(wait_exit(child))
        }
    }
}

/// Opens a terminal in a running session; returns the joiner's pid and the terminal's fds.
fn open_terminal(init_pidfd: BorrowedFd<'_>, spec: &TerminalSpec) -> Result<(Pid, TerminalFds), String> {
    let (ours, theirs) = seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
    let joiner = match sys::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(ours);
            let err = joiner_main(init_pidfd, spec, &theirs).unwrap_err();
            let _ = send_msg(theirs.as_fd(), format!("E{err}").as_bytes(), &[]);
            std::process::exit(1);
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let result = (|| {
        wait_readable(ours.as_fd(), "opening the terminal")?;
        let (msg, fds) = recv_msg(ours.as_fd()).map_err(|e| format!("recv: {e}"))?;
        match msg.first() {
            Some(b'T') => {
                let fds = TerminalFds::from_wire(fds, spec.parked, spec.relay)
                    .ok_or("the terminal's helper sent the wrong descriptors")?;
                // The program was forked in the session's group; the joiner leaves it (a relay for
                // the session's relay group: see `cgroups::RELAY_SUFFIX`).
                let to = if spec.relay { &spec.relay_procs_files } else { &spec.helper_procs_files };
                move_helper(joiner, to)?;
                Ok((joiner, fds))
            }
            Some(b'E') => Err(String::from_utf8_lossy(&msg[1..]).into_owned()),
            _ => Err("the terminal's helper exited during set-up".into()),
        }
    })();
    if result.is_err() {
        let _ = kill(joiner, Signal::SIGKILL);
    }
    result
}

/// The joiner (J): enters every namespace of the session's init and its cgroup, opens a pty on
/// the session's own devpts, and forks the program. Returns only on error.
fn joiner_main(
    init_pidfd: BorrowedFd<'_>,
    spec: &TerminalSpec,
    sync: &OwnedFd,
) -> Result<std::convert::Infallible, String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(DUMPABLE): {e}"))?;
    join_cgroup(&spec.procs_files)?;
    setns(init_pidfd, namespaces::all_flags()).map_err(|e| format!("entering the session's namespaces: {e}"))?;
    become_root_inside()?;
    let (master, slave) = pty::open_in_session(spec.cols, spec.rows).map_err(|e| format!("opening a pty: {e}"))?;
    let gate = if spec.parked {
        Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?)
    } else {
        None
    };
    match sys::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(master);
            let wait_for = gate.map(|(read_end, write_end)| {
                drop(write_end);
                read_end
            });
            let err = pty::exec_on_pty(slave, &spec.argv, &spec.confinement, wait_for);
            // stderr is the pty now: the person sees why their program did not start.
            eprintln!("nsplay: {err}");
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            drop(slave);
            let gate = gate.map(|(read_end, write_end)| {
                drop(read_end);
                write_end
            });
            let (output, relay) = if spec.relay {
                let (read_end, write_end) =
                    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
                // Room for 16 chunks (512 KiB), so a flood is not held up by every pause of the
                // server or its clients (measured: 81–87 % → 92 % of a raw pty's throughput).
                // Pipe pages are charged to the writer, the relay, so to the session's relay group.
                let _ = nix::fcntl::fcntl(&write_end, nix::fcntl::FcntlArg::F_SETPIPE_SZ(16 * RELAY_CHUNK as i32));
                (Some(read_end), Some((write_end, master.try_clone().map_err(|e| format!("dup: {e}"))?)))
            } else {
                (None, None)
            };
            // Announced only now that the program exists: the spawner then moves this joiner
            // out of the session's group (see `move_helper`).
            let fds = TerminalFds { master, gate, output };
            send_msg(sync.as_fd(), b"T", &fds.wire()).map_err(|e| format!("send: {e}"))?;
            drop(fds);
            if let Some((out, master)) = relay {
                let pidfd = sys::pidfd_open(child).map_err(|e| format!("pidfd_open: {e}"))?;
                let _ = sys::close_fds_except(&[master.as_raw_fd(), out.as_raw_fd(), pidfd.as_raw_fd()]);
                std::process::exit(relay::run(master, out, pidfd, child));
            }
            let _ = sys::close_fds_from(0);
            std::process::exit(wait_exit(child))
        }
    }
}
