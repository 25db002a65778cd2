//! The spawner: a single-threaded helper process (a fresh exec of the nsplay binary, started
//! before the server runs any thread) that does every fork, unshare, setns, mount and exec.
//! It serves the server's [`Request`]s one at a time: for a session it forks a keeper (see
//! [`super::keeper`]) and writes its id maps, for a terminal a joiner (see [`super::joiner`]),
//! moving each out of the session's cgroup once what it started runs there. It reaps every
//! child through a signalfd and reports the exits as [`Event`]s.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, setgroups};

use super::cgroup_join::{self, CgroupJoinError};
use super::channel::{self, Channel, ChannelError, decode};
use super::message::{
    Event, FromHelper, Helper, Reply, Request, RequestHead, SessionSpec, TerminalFds, TerminalSpec, ToJoiner, ToKeeper,
    ToServer,
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

    let mut sessions: HashMap<u64, SessionEntry> = HashMap::new();
    let mut children: HashMap<Pid, Child> = HashMap::new();
    loop {
        let (sock_ready, sig_ready) = {
            let mut fds =
                [PollFd::new(server.as_fd(), PollFlags::POLLIN), PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SpawnerError::Poll(e)),
                Ok(_) => {}
            }
            let r = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            (r(&fds[0]), r(&fds[1]))
        };
        if sig_ready {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            reap(&server, &mut sessions, &mut children);
        }
        if !sock_ready {
            continue;
        }
        let (data, fds) = match server.recv_datagram() {
            Ok(d) => d,
            // Cut short: not even its id is left to answer.
            Err(ChannelError::Truncated) => continue,
            Err(_) => break,
        };
        let request = match decode::<Request>(&data, fds) {
            Ok(r) => r,
            Err(e) => {
                // Answer what can be answered, so that no call waits for ever.
                if let Some(req) = decode::<RequestHead>(&data, Vec::new()).ok().and_then(|h| h.req()) {
                    let reply = Reply::BadRequest { message: format!("unreadable request: {e}") };
                    let _ = server.send(ToServer::Reply { req, reply });
                }
                continue;
            }
        };
        match request {
            Request::CreateSession { req, session, spec } => match create_session(&spec) {
                Ok((keeper, init_pid, pidfd)) => {
                    let init_pidfd = pidfd.try_clone();
                    let reply = match init_pidfd {
                        Ok(dup) => {
                            children.insert(keeper, Child::Keeper { session });
                            sessions.insert(session, SessionEntry { keeper, init_pidfd: pidfd });
                            Reply::SessionReady { init_pid, pidfd: dup }
                        }
                        Err(e) => {
                            let _ = kill(keeper, Signal::SIGKILL);
                            Reply::Failed { helper: Helper::Spawner, message: format!("dup: {e}") }
                        }
                    };
                    let _ = server.send(ToServer::Reply { req, reply });
                }
                Err(e) => {
                    let _ = server.send(ToServer::Reply { req, reply: e.into_reply() });
                }
            },
            Request::OpenTerminal { req, session, terminal, spec } => {
                let reply = match sessions.get(&session) {
                    Some(entry) => match open_terminal(entry.init_pidfd.as_fd(), &spec) {
                        Ok((pid, fds)) => {
                            children.insert(pid, Child::Joiner { session, terminal });
                            Reply::TerminalReady { pid: pid.as_raw(), fds }
                        }
                        Err(e) => e.into_reply(),
                    },
                    None => Reply::NoSuchSession,
                };
                let _ = server.send(ToServer::Reply { req, reply });
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

fn reap(
    server: &Channel<ToServer, Request>,
    sessions: &mut HashMap<u64, SessionEntry>,
    children: &mut HashMap<Pid, Child>,
) {
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(s) => s,
        };
        let (Some(pid), Some(code)) = (status.pid(), harden::exit_code(status)) else {
            continue;
        };
        let event = match children.remove(&pid) {
            Some(Child::Keeper { session }) => {
                sessions.remove(&session);
                Event::SessionExited { session, status: code }
            }
            Some(Child::Joiner { session, terminal }) => Event::TerminalExited { session, terminal, code },
            None => continue,
        };
        let _ = server.send(ToServer::Event(event));
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

/// Creates a session; returns (keeper pid, init's host pid, init's pidfd).
fn create_session(spec: &SessionSpec) -> Result<(Pid, i32, OwnedFd), SetupError> {
    let (ours, theirs) = channel::pair::<ToKeeper, FromHelper>(Some(SETUP_TIMEOUT)).map_err(SetupError::Socketpair)?;
    let keeper = match sys::fork_single_threaded().map_err(SetupError::Fork)? {
        ForkResult::Child => {
            drop(ours);
            keeper::run(spec, theirs)
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let talk = SetupError::talk(Job::Session);
    let result = (|| {
        ours.recv_id_map_request().map_err(&talk)?;
        write_id_maps(keeper, spec)?;
        ours.send(ToKeeper::IdMapsWritten).map_err(&talk)?;
        // The keeper announces init, and init reports ready, on the same socket: in either order.
        let first = ours
            .expect("InitStarted or InitReady", |m| match m {
                FromHelper::InitStarted { .. } | FromHelper::InitReady => Ok(m),
                m => Err(m),
            })
            .map_err(&talk)?;
        // Init and everything it starts stay in the session's group; the keeper (invisible
        // inside) leaves it, so the session can empty its own group.
        let (pid, pidfd) = if let FromHelper::InitStarted { pid, pidfd } = first {
            cgroup_join::move_helper(keeper, &spec.helper_procs_files)?;
            ours.recv_init_ready().map_err(&talk)?;
            (pid, pidfd)
        } else {
            let (pid, pidfd) = ours.recv_init_started().map_err(&talk)?;
            cgroup_join::move_helper(keeper, &spec.helper_procs_files)?;
            (pid, pidfd)
        };
        Ok((keeper, pid, pidfd))
    })();
    if result.is_err() {
        // The keeper's death takes init down (PDEATHSIG); the SIGCHLD loop reaps the keeper.
        let _ = kill(keeper, Signal::SIGKILL);
    }
    result
}

/// Opens a terminal in a running session; returns the joiner's pid and the terminal's fds.
fn open_terminal(init_pidfd: BorrowedFd<'_>, spec: &TerminalSpec) -> Result<(Pid, TerminalFds), SetupError> {
    let (ours, theirs) = channel::pair::<ToJoiner, FromHelper>(Some(SETUP_TIMEOUT)).map_err(SetupError::Socketpair)?;
    let joiner = match sys::fork_single_threaded().map_err(SetupError::Fork)? {
        ForkResult::Child => {
            drop(ours);
            joiner::run(init_pidfd, spec, theirs)
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let result = (|| {
        let fds = ours.recv_terminal_ready().map_err(SetupError::talk(Job::Terminal))?;
        // The program was forked in the session's group; the joiner leaves it (a relay for the
        // session's relay group: see `cgroups::RELAY_SUFFIX`).
        let to = if spec.relay { &spec.relay_procs_files } else { &spec.helper_procs_files };
        cgroup_join::move_helper(joiner, to)?;
        Ok((joiner, fds))
    })();
    if result.is_err() {
        let _ = kill(joiner, Signal::SIGKILL);
    }
    result
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
