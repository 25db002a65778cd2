//! The joiner (J), one per terminal: forked by the spawner, it joins the session's cgroup,
//! enters every namespace of the session's init through its pidfd, opens a pty on the session's
//! own devpts and forks the terminal's program (see [`crate::pty::exec_on_pty`]). It sends the
//! terminal's descriptors back and then either relays the pty's output (see [`super::relay`]) or
//! only waits; its exit is the terminal's exit.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::setns;
use nix::unistd::ForkResult;

use super::cgroup_join::{self, CgroupJoinError};
use super::channel::{Channel, ChannelError};
use super::message::{FromHelper, Helper, TerminalFds, TerminalSpec, ToJoiner};
use super::relay;
use crate::consts::RELAY_CHUNK;
use crate::harden::{self, HardenError};
use crate::{namespaces, pty, sys};

/// One variant per set-up step of the joiner.
#[derive(Debug, thiserror::Error)]
pub enum JoinerError {
    #[error(transparent)]
    Harden(#[from] HardenError),
    #[error(transparent)]
    Cgroup(#[from] CgroupJoinError),
    #[error("entering the session's namespaces: {0}")]
    Setns(#[source] Errno),
    #[error("opening a pty: {0}{hint}", hint = pty_hint(.0))]
    OpenPty(#[source] std::io::Error),
    #[error("pipe: {0}")]
    Pipe(#[source] Errno),
    #[error("fork: {0}")]
    Fork(#[source] Errno),
    #[error("dup: {0}")]
    Dup(#[source] std::io::Error),
    #[error("sending the terminal: {0}")]
    Announce(#[source] ChannelError),
    #[error("pidfd_open: {0}")]
    Pidfd(#[source] std::io::Error),
}

/// What the session did to its /dev/pts, when that is why no pty could be opened.
fn pty_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EXDEV) => {
            ": something is mounted over /dev/pts/ptmx inside the session; unmount it to open terminals again"
        }
        Some(libc::ENOSPC) => ": the session has as many ptys open as it may; close some",
        _ => "",
    }
}

/// Runs in the forked joiner; never returns. A set-up error goes to the spawner as text.
pub fn run(
    init_pidfd: BorrowedFd<'_>,
    devpts: BorrowedFd<'_>,
    spec: &TerminalSpec,
    ch: Channel<FromHelper, ToJoiner>,
) -> ! {
    let Err(e) = joiner_main(init_pidfd, devpts, spec, &ch);
    let _ = ch.send(FromHelper::Failed { helper: Helper::Joiner, message: e.to_string() });
    std::process::exit(1)
}

/// Returns only on error.
fn joiner_main(
    init_pidfd: BorrowedFd<'_>,
    devpts: BorrowedFd<'_>,
    spec: &TerminalSpec,
    ch: &Channel<FromHelper, ToJoiner>,
) -> Result<Infallible, JoinerError> {
    harden::die_with_parent()?;
    harden::non_dumpable()?;
    cgroup_join::join(&spec.procs_files)?;
    setns(init_pidfd, namespaces::all_flags()).map_err(JoinerError::Setns)?;
    harden::become_root_inside()?;
    let (master, slave) = pty::open_in_session(devpts, spec.cols, spec.rows).map_err(JoinerError::OpenPty)?;
    let gate = if spec.parked {
        Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(JoinerError::Pipe)?)
    } else {
        None
    };
    match sys::fork_single_threaded().map_err(JoinerError::Fork)? {
        ForkResult::Child => {
            drop(master);
            let wait_for = gate.map(|(read_end, write_end)| {
                drop(write_end);
                read_end
            });
            let err = pty::exec_on_pty(
                slave,
                &spec.argv,
                &spec.env,
                spec.working_dir.as_deref(),
                &spec.confinement,
                wait_for,
            );
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
                    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(JoinerError::Pipe)?;
                // Room for 16 chunks (512 KiB), so a flood is not held up by every pause of the
                // server or its clients (measured: 81–87 % → 92 % of a raw pty's throughput).
                // Pipe pages are charged to the writer, the relay, so to the session's relay group.
                let _ = nix::fcntl::fcntl(&write_end, nix::fcntl::FcntlArg::F_SETPIPE_SZ(16 * RELAY_CHUNK as i32));
                (Some(read_end), Some((write_end, master.try_clone().map_err(JoinerError::Dup)?)))
            } else {
                (None, None)
            };
            // Announced only now that the program exists: the spawner then moves this joiner
            // out of the session's group (see `cgroup_join::move_helper`). Sending closes this
            // side's copies.
            ch.send(FromHelper::TerminalReady(TerminalFds { master, gate, output })).map_err(JoinerError::Announce)?;
            if let Some((out, master)) = relay {
                let pidfd = sys::pidfd_open(child).map_err(JoinerError::Pidfd)?;
                let _ = harden::keep_only_fds(&[master.as_raw_fd(), out.as_raw_fd(), pidfd.as_raw_fd()]);
                std::process::exit(relay::run(master, out, pidfd, child));
            }
            let _ = harden::keep_only_fds(&[]);
            std::process::exit(harden::wait_exit(child))
        }
    }
}
