//! Terminal descriptors for the layers above the sandbox (the server's terminals, `nsplay run`,
//! the benchmark's baselines): non-blocking mode, writing in full, window sizes, and a pty pair
//! on the host. Safe wrappers; the system calls themselves live in `sys`.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::sys;

/// Makes reads and writes on `fd` (a pty master, a relay pipe) return EAGAIN instead of blocking.
pub fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map(drop)
}

/// Writes all of `data` to `fd`, waiting for room when it is full (blocking or not).
pub fn write_all(fd: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Clamps a requested terminal size to something a shell stays usable in (0×0 and
/// 100000×100000 are not obeyed).
pub fn clamp_size(cols: u32, rows: u32) -> (u16, u16) {
    (cols.clamp(20, 1000) as u16, rows.clamp(5, 500) as u16)
}

/// Sets a terminal's size; the kernel sends SIGWINCH to its foreground process group.
pub fn set_window_size(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> std::io::Result<()> {
    sys::set_window_size(fd, cols, rows)
}

/// A terminal's size as (cols, rows).
pub fn window_size(fd: BorrowedFd<'_>) -> std::io::Result<(u16, u16)> {
    sys::window_size(fd)
}

/// Hangs up the terminal behind a pty master, as closing a terminal window does: its shell
/// and foreground job get SIGHUP, and their reads of the terminal end. The peer is reached
/// through the master (`TIOCGPTPEER`), never by a path in the session's `/dev`.
pub fn hang_up(master: BorrowedFd<'_>) -> std::io::Result<()> {
    let peer = sys::pty_peer(master)?;
    sys::tty_hangup(peer.as_fd())
}

/// A new pty pair on the host's `/dev/ptmx` (master, peer). For baselines and tests, never for
/// a session (a session's ptys live on its own devpts, see `pty`).
pub fn host_pty_pair(cols: u16, rows: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    open_pty_pair(Path::new("/dev/ptmx"), cols, rows)
}

/// Opens a pty pair through the multiplexer at `ptmx` (see [`pty_pair_from_master`]).
fn open_pty_pair(ptmx: &Path, cols: u16, rows: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master: OwnedFd =
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC).open(ptmx)?.into();
    pty_pair_from_master(master, cols, rows)
}

/// A pty pair from a just-opened multiplexer: the master, checked to really be one (`TIOCGPTN`,
/// whatever was opened), unlocked, and its peer opened without a path lookup (`TIOCGPTPEER`) at
/// `cols`×`rows`; both close-on-exec (the master from its open).
pub(crate) fn pty_pair_from_master(master: OwnedFd, cols: u16, rows: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    sys::pty_number(master.as_fd())?;
    sys::pty_unlock(master.as_fd())?;
    let peer = sys::pty_peer(master.as_fd())?;
    sys::set_window_size(peer.as_fd(), cols.max(1), rows.max(1))?;
    Ok((master, peer))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_clamped() {
        assert_eq!(super::clamp_size(0, 0), (20, 5));
        assert_eq!(super::clamp_size(100_000, 100_000), (1000, 500));
        assert_eq!(super::clamp_size(80, 24), (80, 24));
    }
}
