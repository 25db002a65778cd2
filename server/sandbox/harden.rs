//! The hardening steps every helper process takes (spawner, keeper, joiner, init, relay, and a
//! terminal's program just before exec), each written once: dying with the parent, staying
//! non-dumpable, carrying no stray descriptor, becoming root of the session's user namespace,
//! waiting with a deadline, and collecting a child's exit code.

use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, setresgid, setresuid};

use crate::sys;

/// A hardening step that failed; the text names the system call.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("prctl(PDEATHSIG): {0}")]
    Pdeathsig(#[source] Errno),
    #[error("prctl(DUMPABLE): {0}")]
    Dumpable(#[source] Errno),
    #[error("setresgid: {0}")]
    Setresgid(#[source] Errno),
    #[error("setresuid: {0}")]
    Setresuid(#[source] Errno),
    #[error("close_range: {0}")]
    CloseFds(#[source] std::io::Error),
}

/// `PR_SET_PDEATHSIG` = SIGKILL: the process dies with its parent, so killing the server takes
/// every helper and session down with it.
pub fn die_with_parent() -> Result<(), HardenError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(HardenError::Pdeathsig)
}

/// Not dumpable: nothing inside a session can ptrace the helper or open its `/proc` files.
pub fn non_dumpable() -> Result<(), HardenError> {
    nix::sys::prctl::set_dumpable(false).map_err(HardenError::Dumpable)
}

/// Closes every descriptor but `keep` (0–2 included unless kept): a process entering the
/// sandbox must not carry any host fd (the CVE-2024-21626 class of leaks).
pub fn keep_only_fds(keep: &[RawFd]) -> Result<(), HardenError> {
    sys::close_fds_except(keep).map_err(HardenError::CloseFds)
}

/// Becomes uid/gid 0 of the user namespace just created or entered.
pub fn become_root_inside() -> Result<(), HardenError> {
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(HardenError::Setresgid)?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(HardenError::Setresuid)?;
    // Credential changes reset these two; set them again.
    non_dumpable()?;
    die_with_parent()
}

/// Waits until `fd` is readable; `Ok(false)` once `timeout` (whole seconds) has passed.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> nix::Result<bool> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    // PollTimeout takes at most u16 milliseconds: wait in one-second chunks.
    for _ in 0..timeout.as_secs() {
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Waits for `child` (a child of the caller) to end; returns its exit code (128+signal when
/// killed, 1 if it cannot be waited for).
pub fn wait_exit(child: Pid) -> i32 {
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

/// The exit code of an ended process (128+signal when killed); `None` for a stop or continue.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}
