//! The spawner: a single-threaded helper process (a fresh exec of the nsplay binary, started
//! before the server runs any thread) that does every fork, unshare, setns, mount and exec.
//! For a session it forks a keeper (see [`super::keeper`]) and writes its id maps, for a terminal
//! a joiner (see [`super::joiner`]), moving each out of the session's cgroup once what it started
//! runs there. It never waits on one helper: every set-up in flight is a [`Pending`] request that
//! the one `poll` loop advances when its helper's socket has a message and fails at its own
//! deadline, so a helper that stalls (whatever its session does to it) holds up only its own
//! request. It reaps every child through a signalfd and reports the exits as [`Event`]s.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, setgroups};

use super::cgroup_join::{self, CgroupJoinError};
use super::channel::{self, Channel, ChannelError, decode};
use super::message::{
    Event, FromHelper, Helper, Message, Reply, Request, RequestHead, SessionSpec, TerminalFds, TerminalSpec, ToJoiner,
    ToKeeper, ToServer,
};
use super::{joiner, keeper};
use crate::consts::SETUP_TIMEOUT;
use crate::harden::{self, HardenError};
use crate::sys;

/// Starting the spawner failed (it exits, and the server reports that it cannot start).
#[derive(Debug, thiserror::Error)]
enum SpawnerError {
    #[error("the server exited before the spawner started")]
    Orphaned,
    #[error("control socket fd {fd}: {source}")]
    ControlSocket { fd: RawFd, source: std::io::Error },
    #[error(transparent)]
    Harden(#[from] HardenError),
    #[error("setgroups: {0}")]
    Setgroups(#[source] Errno),
    #[error("prctl(CHILD_SUBREAPER): {0}")]
    Subreaper(#[source] Errno),
    #[error("sigprocmask: {0}")]
    Sigprocmask(#[source] Errno),
    #[error("signalfd: {0}")]
    Signalfd(#[source] Errno),
    #[error("poll: {0}")]
    Poll(#[source] Errno),
}

/// What the spawner was setting up when it failed.
#[derive(Debug, Clone, Copy)]
enum Job {
    Session,
    Terminal,
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Session => "starting the session",
            Job::Terminal => "opening the terminal",
        })
    }
}

impl Job {
    fn owner(self) -> &'static str {
        match self {
            Job::Session => "the session",
            Job::Terminal => "the terminal",
        }
    }
}

/// The spawner's side of setting a session or terminal up: one variant per step, and the
/// helper's own error (as text) when the helper failed.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error(transparent)]
    Socketpair(ChannelError),
    #[error("fork: {0}")]
    Fork(#[source] Errno),
    #[error("writing {}: {source}", path.display())]
    IdMap { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupJoinError),
    #[error("{message}")]
    Helper { helper: Helper, message: String },
    #[error("{}'s helper exited during set-up", job.owner())]
    HelperExited { job: Job },
    #[error("{job}: {source}")]
    Talk { job: Job, source: ChannelError },
}

impl SetupError {
    fn talk(job: Job) -> impl Fn(ChannelError) -> SetupError {
        move |e| match e {
            ChannelError::Failed { helper, message } => SetupError::Helper { helper, message },
            ChannelError::Closed => SetupError::HelperExited { job },
            source => SetupError::Talk { job, source },
        }
    }

    /// The error as the server gets it: the text, and the helper it happened in.
    fn into_reply(self) -> Reply {
        match self {
            SetupError::Helper { helper, message } => Reply::Failed { helper, message },
            e => Reply::Failed { helper: Helper::Spawner, message: e.to_string() },
        }
    }
}

struct SessionEntry {
    keeper: Pid,
    init_pidfd: OwnedFd,
    /// The root of the session's devpts, taken by init before the session's code ran.
    devpts: OwnedFd,
}

enum Child {
    Keeper { session: u64 },
    Joiner { session: u64, terminal: u64 },
}

/// Requests being set up at once, at most; beyond, a request is refused at once (the server
/// bounds sessions and terminals well below this).
const MAX_PENDING: usize = 256;

/// A request the spawner has started and not yet answered: its helper runs on its own, and the
/// spawner advances the set-up whenever the helper's socket has a message, so that no helper (and
/// nothing a session does to it) can hold up another request.
struct Pending {
    req: u64,
    /// When the request fails with a timeout (and its helper is killed).
    deadline: Instant,
    /// The keeper or joiner.
    helper: Pid,
    /// The helper's exit status, if it was reaped before the set-up completed.
    exited: Option<i32>,
    work: Work,
}

enum Work {
    Session { session: u64, spec: SessionSpec, ch: Channel<ToKeeper, FromHelper>, step: SessionStep },
    Terminal { session: u64, terminal: u64, to: Vec<PathBuf>, ch: Channel<ToJoiner, FromHelper> },
}

enum SessionStep {
    /// Waiting for the keeper to unshare and ask for its id maps.
    IdMaps,
    /// The keeper announces init, and init reports ready, on the same socket: in either order.
    Init { started: Option<(i32, OwnedFd)>, devpts: Option<OwnedFd> },
}

/// What a completed set-up yields.
enum Done {
    Session { session: u64, init_pid: i32, pidfd: OwnedFd, devpts: OwnedFd },
    Terminal { session: u64, terminal: u64, fds: TerminalFds },
}

impl Pending {
    fn job(&self) -> Job {
        match self.work {
            Work::Session { .. } => Job::Session,
            Work::Terminal { .. } => Job::Terminal,
        }
    }

    fn sock(&self) -> BorrowedFd<'_> {
        match &self.work {
            Work::Session { ch, .. } => ch.as_fd(),
            Work::Terminal { ch, .. } => ch.as_fd(),
        }
    }

    /// Takes the next message of the helper (its socket is readable); `Some` once set-up is done.
    fn advance(&mut self) -> Result<Option<Done>, SetupError> {
        let talk = SetupError::talk(self.job());
        let helper = self.helper;
        match &mut self.work {
            Work::Session { session, spec, ch, step } => match step {
                SessionStep::IdMaps => {
                    ch.recv_id_map_request().map_err(&talk)?;
                    write_id_maps(helper, spec)?;
                    ch.send(ToKeeper::IdMapsWritten).map_err(&talk)?;
                    *step = SessionStep::Init { started: None, devpts: None };
                    Ok(None)
                }
                SessionStep::Init { started, devpts } => {
                    let msg = ch
                        .expect("InitStarted or InitReady", |m| match m {
                            FromHelper::InitStarted { .. } | FromHelper::InitReady { .. } => Ok(m),
                            m => Err(m),
                        })
                        .map_err(&talk)?;
                    match msg {
                        FromHelper::InitStarted { pid, pidfd } if started.is_none() => {
                            // Init and everything it starts stay in the session's group; the
                            // keeper (invisible inside) leaves it, so the session can empty its
                            // own group.
                            cgroup_join::move_helper(helper, &spec.helper_procs_files)?;
                            *started = Some((pid, pidfd));
                        }
                        FromHelper::InitReady { devpts: d } if devpts.is_none() => *devpts = Some(d),
                        m => {
                            return Err(talk(ChannelError::Unexpected {
                                expected: "InitStarted or InitReady",
                                got: m.kind(),
                            }));
                        }
                    }
                    if started.is_none() || devpts.is_none() {
                        return Ok(None);
                    }
                    match (started.take(), devpts.take()) {
                        (Some((init_pid, pidfd)), Some(devpts)) => {
                            Ok(Some(Done::Session { session: *session, init_pid, pidfd, devpts }))
                        }
                        _ => Ok(None),
                    }
                }
            },
            Work::Terminal { session, terminal, to, ch } => {
                let fds = ch.recv_terminal_ready().map_err(&talk)?;
                // The program was forked in the session's group; the joiner leaves it (a relay
                // for the session's relay group: see `cgroups::RELAY_SUFFIX`).
                cgroup_join::move_helper(helper, to)?;
                Ok(Some(Done::Terminal { session: *session, terminal: *terminal, fds }))
            }
        }
    }
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

/// The spawner's state: what runs, and what is still being set up.
struct State {
    server: Channel<ToServer, Request>,
    sessions: HashMap<u64, SessionEntry>,
    children: HashMap<Pid, Child>,
    pending: Vec<Pending>,
}

fn spawner_main(sock_fd: RawFd, server_pid: i32) -> Result<(), SpawnerError> {
    harden::die_with_parent()?;
    if nix::unistd::getppid().as_raw() != server_pid {
        return Err(SpawnerError::Orphaned);
    }
    let sock =
        sys::adopt_inherited_fd(sock_fd).map_err(|source| SpawnerError::ControlSocket { fd: sock_fd, source })?;
    // Nothing but stdio and the control socket: no fd of the server can reach a sandbox.
    harden::keep_only_fds(&[0, 1, 2, sock.as_raw_fd()])?;
    let server: Channel<ToServer, Request> = Channel::new(sock, None);
    harden::non_dumpable()?;
    // Supplementary groups of host root must never reach a session (they would grant access to
    // root-group files); and they cannot be dropped later inside a user namespace.
    setgroups(&[]).map_err(SpawnerError::Setgroups)?;
    // Orphans of our helpers (a shell whose joiner was killed at teardown, an init whose keeper
    // died) come to us and are reaped at once by the loop below; otherwise they would wait for
    // the host's PID 1, and init (waiting in zap_pid_ns_processes) with them: measured 1.2 s per
    // DELETE on a host whose PID 1 reaps once a second, 10 ms with this.
    nix::sys::prctl::set_child_subreaper(true).map_err(SpawnerError::Subreaper)?;
    // Children are reaped through a signalfd; nothing in this process uses signal handlers.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(SpawnerError::Sigprocmask)?;
    let sigfd = SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )
    .map_err(SpawnerError::Signalfd)?;

    let mut st = State { server, sessions: HashMap::new(), children: HashMap::new(), pending: Vec::new() };
    loop {
        st.expire(Instant::now());
        // Wait for the server, a child's exit, or a message of a helper being set up, at most
        // until the next set-up deadline.
        let (sock_ready, sig_ready, ready) = {
            let mut fds =
                vec![PollFd::new(st.server.as_fd(), PollFlags::POLLIN), PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            fds.extend(st.pending.iter().map(|p| PollFd::new(p.sock(), PollFlags::POLLIN)));
            let timeout = match st.pending.iter().map(|p| p.deadline).min() {
                None => PollTimeout::NONE,
                Some(d) => {
                    // Rounded up, so the deadline has passed when poll returns.
                    let ms = d.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::from(ms.min(u16::MAX as u128) as u16)
                }
            };
            match poll(&mut fds, timeout) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SpawnerError::Poll(e)),
                Ok(_) => {}
            }
            let r = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            (r(&fds[0]), r(&fds[1]), fds[2..].iter().map(r).collect::<Vec<bool>>())
        };
        // Helpers' messages first: a set-up that completed is answered before its helper's exit
        // (reaped below) is reported.
        for i in (0..ready.len()).rev() {
            if ready[i] {
                st.advance(i);
            }
        }
        if sig_ready {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            st.reap();
        }
        if sock_ready && !st.serve_one() {
            break;
        }
    }
    // The server is gone: take every session with us (PDEATHSIG would too; this is explicit).
    for pid in st.children.keys().chain(st.pending.iter().filter(|p| p.exited.is_none()).map(|p| &p.helper)) {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    Ok(())
}

impl State {
    fn reply(&self, req: u64, reply: Reply) {
        let _ = self.server.send(ToServer::Reply { req, reply });
    }

    /// Reads and starts one request of the server; `false` once the server is gone.
    fn serve_one(&mut self) -> bool {
        let (data, fds) = match self.server.recv_datagram() {
            Ok(d) => d,
            // Cut short: not even its id is left to answer.
            Err(ChannelError::Truncated) => return true,
            // Requests carry no descriptors: the request is bad, the link is fine.
            Err(ChannelError::DescriptorsLost { data }) => (data, Vec::new()),
            Err(_) => return false,
        };
        let request = match decode::<Request>(&data, fds) {
            Ok(r) => r,
            Err(e) => {
                // Answer what can be answered, so that no call waits for ever.
                if let Some(req) = decode::<RequestHead>(&data, Vec::new()).ok().and_then(|h| h.req()) {
                    self.reply(req, Reply::BadRequest { message: format!("unreadable request: {e}") });
                }
                return true;
            }
        };
        match request {
            Request::CreateSession { req, .. } | Request::OpenTerminal { req, .. }
                if self.pending.len() >= MAX_PENDING =>
            {
                let message = format!("the spawner is setting up {MAX_PENDING} requests already; try again");
                self.reply(req, Reply::Failed { helper: Helper::Spawner, message });
            }
            Request::CreateSession { req, session, spec } => match start_session(&spec) {
                Ok((keeper, ch)) => self.pending.push(Pending {
                    req,
                    deadline: Instant::now() + SETUP_TIMEOUT,
                    helper: keeper,
                    exited: None,
                    work: Work::Session { session, spec, ch, step: SessionStep::IdMaps },
                }),
                Err(e) => self.reply(req, e.into_reply()),
            },
            Request::OpenTerminal { req, session, terminal, spec } => match self.sessions.get(&session) {
                Some(entry) => match start_terminal(entry, &spec) {
                    Ok((joiner, ch)) => {
                        let to = if spec.relay { spec.relay_procs_files } else { spec.helper_procs_files };
                        self.pending.push(Pending {
                            req,
                            deadline: Instant::now() + SETUP_TIMEOUT,
                            helper: joiner,
                            exited: None,
                            work: Work::Terminal { session, terminal, to, ch },
                        });
                    }
                    Err(e) => self.reply(req, e.into_reply()),
                },
                None => self.reply(req, Reply::NoSuchSession),
            },
            Request::EndSession { session } => {
                if let Some(entry) = self.sessions.get(&session) {
                    let _ = kill(entry.keeper, Signal::SIGKILL);
                }
                // A session still being set up: its keeper's death fails the set-up.
                for p in &self.pending {
                    if matches!(p.work, Work::Session { session: s, .. } if s == session) && p.exited.is_none() {
                        let _ = kill(p.helper, Signal::SIGKILL);
                    }
                }
            }
        }
        true
    }

    /// Advances `pending[i]` by one message; answers and forgets it once done or failed.
    fn advance(&mut self, i: usize) {
        match self.pending[i].advance() {
            Ok(None) => {}
            Ok(Some(done)) => {
                let p = self.pending.swap_remove(i);
                self.complete(p, done);
            }
            Err(e) => {
                let p = self.pending.swap_remove(i);
                self.fail(p, e);
            }
        }
    }

    fn fail(&self, p: Pending, e: SetupError) {
        // The keeper's death takes init down (PDEATHSIG); the SIGCHLD loop reaps the helper.
        if p.exited.is_none() {
            let _ = kill(p.helper, Signal::SIGKILL);
        }
        self.reply(p.req, e.into_reply());
    }

    fn complete(&mut self, p: Pending, done: Done) {
        match done {
            Done::Session { session, init_pid, pidfd, devpts } => {
                let dup = match pidfd.try_clone() {
                    Ok(dup) => dup,
                    Err(e) => {
                        let message = format!("dup: {e}");
                        return self.fail(p, SetupError::Helper { helper: Helper::Spawner, message });
                    }
                };
                self.reply(p.req, Reply::SessionReady { init_pid, pidfd: dup });
                match p.exited {
                    Some(status) => self.event(Event::SessionExited { session, status }),
                    None => {
                        self.children.insert(p.helper, Child::Keeper { session });
                        self.sessions.insert(session, SessionEntry { keeper: p.helper, init_pidfd: pidfd, devpts });
                    }
                }
            }
            Done::Terminal { session, terminal, fds } => {
                self.reply(p.req, Reply::TerminalReady { pid: p.helper.as_raw(), fds });
                match p.exited {
                    Some(code) => self.event(Event::TerminalExited { session, terminal, code }),
                    None => {
                        self.children.insert(p.helper, Child::Joiner { session, terminal });
                    }
                }
            }
        }
    }

    fn event(&self, event: Event) {
        let _ = self.server.send(ToServer::Event(event));
    }

    /// Fails every set-up whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline <= now {
                let p = self.pending.swap_remove(i);
                let e = SetupError::talk(p.job())(ChannelError::Timeout(SETUP_TIMEOUT.as_secs()));
                self.fail(p, e);
            } else {
                i += 1;
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let (Some(pid), Some(code)) = (status.pid(), harden::exit_code(status)) else {
                continue;
            };
            if let Some(p) = self.pending.iter_mut().find(|p| p.helper == pid) {
                // Its socket says the rest (a last message, or closed).
                p.exited = Some(code);
                continue;
            }
            let event = match self.children.remove(&pid) {
                Some(Child::Keeper { session }) => {
                    self.sessions.remove(&session);
                    Event::SessionExited { session, status: code }
                }
                Some(Child::Joiner { session, terminal }) => Event::TerminalExited { session, terminal, code },
                None => continue,
            };
            self.event(event);
        }
    }
}

/// Writes the id maps of a process that has just unshared its user namespace.
fn write_id_maps(pid: Pid, spec: &SessionSpec) -> Result<(), SetupError> {
    let line = format!("0 {} {}\n", spec.uid_base, spec.id_count);
    for (file, data) in [("setgroups", "deny"), ("uid_map", line.as_str()), ("gid_map", line.as_str())] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, data).map_err(|source| SetupError::IdMap { path, source })?;
    }
    Ok(())
}

/// Forks a session's keeper; the rest of its set-up happens in [`Pending::advance`].
fn start_session(spec: &SessionSpec) -> Result<(Pid, Channel<ToKeeper, FromHelper>), SetupError> {
    // No timeout on the spawner's side: it reads only when poll says there is a message.
    let (ours, theirs) = channel::pair::<ToKeeper, FromHelper>(Some(SETUP_TIMEOUT)).map_err(SetupError::Socketpair)?;
    let ours = ours.without_timeout();
    match sys::fork_single_threaded().map_err(SetupError::Fork)? {
        ForkResult::Child => {
            drop(ours);
            keeper::run(spec, theirs)
        }
        ForkResult::Parent { child } => Ok((child, ours)),
    }
}

/// Forks a terminal's joiner in a running session; the rest happens in [`Pending::advance`].
fn start_terminal(
    entry: &SessionEntry,
    spec: &TerminalSpec,
) -> Result<(Pid, Channel<ToJoiner, FromHelper>), SetupError> {
    let (ours, theirs) = channel::pair::<ToJoiner, FromHelper>(Some(SETUP_TIMEOUT)).map_err(SetupError::Socketpair)?;
    let ours = ours.without_timeout();
    match sys::fork_single_threaded().map_err(SetupError::Fork)? {
        ForkResult::Child => {
            drop(ours);
            joiner::run(entry.init_pidfd.as_fd(), entry.devpts.as_fd(), spec, theirs)
        }
        ForkResult::Parent { child } => Ok((child, ours)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_failure_reaches_the_server_as_the_helpers_text() {
        let talk = SetupError::talk(Job::Session);
        let failed = ChannelError::Failed { helper: Helper::Init, message: "sethostname: EINVAL".into() };
        match talk(failed).into_reply() {
            Reply::Failed { helper: Helper::Init, message } => assert_eq!(message, "sethostname: EINVAL"),
            other => panic!("got {other:?}"),
        }
        assert_eq!(talk(ChannelError::Closed).to_string(), "the session's helper exited during set-up");
        assert_eq!(
            SetupError::talk(Job::Terminal)(ChannelError::Closed).to_string(),
            "the terminal's helper exited during set-up"
        );
        match talk(ChannelError::Timeout(20)).into_reply() {
            Reply::Failed { helper: Helper::Spawner, message } => {
                assert_eq!(message, "starting the session: timed out after 20 s")
            }
            other => panic!("got {other:?}"),
        }
    }
}
