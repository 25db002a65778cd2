//! The output relay. Once a terminal's program runs, its joiner copies the pty's output into a
//! pipe to the server, gathering a flood into chunks of up to [`RELAY_CHUNK`] bytes, and ends
//! (closing the pipe) once the program has exited and its last output is passed on.
//!
//! Why a relay: the pty hands its reader at most 4 KiB per `read` (the line discipline's
//! buffer), and every 4 KiB costs the reader a wake-up — 4–5 s of CPU per GB of output for a
//! bare reading loop on the development VM (docs/benchmarks.md). Read by the server, that cost
//! lands on the one process every session's keystrokes go through, outside any session's CPU
//! quota. Read by the relay, it is paid by the session's relay group, which has limits of its
//! own beside the session's (see `cgroups::RELAY_SUFFIX` for why not the session's group), and
//! the server reads a pipe in chunks eight times larger. Interactive output (an echo) is passed
//! on at once.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

use crate::consts::RELAY_CHUNK;
use crate::harden;

/// A read at least this large means a flood: wait briefly for more before passing it on.
const FLOOD_READ: usize = 2048;
/// Longest a flood's chunk is held back.
const GATHER: Duration = Duration::from_millis(2);
/// Longest the relay keeps passing on output once the program has exited (background jobs may
/// keep the pty open and writing).
const DRAIN: Duration = Duration::from_millis(200);

/// Relays `master`'s output into `out` until `child` (watched through `pidfd`) has exited;
/// returns its exit code (128+signal when killed).
pub fn run(master: OwnedFd, out: OwnedFd, pidfd: OwnedFd, child: Pid) -> i32 {
    let mut buf = vec![0u8; RELAY_CHUNK];
    let mut pty_open = crate::term::set_nonblocking(&master).is_ok();
    let mut server_reads = true;
    loop {
        let (exited, readable) = {
            let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            if pty_open {
                fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if readable {
            let (len, closed) = gather(&master, &mut buf);
            // Blocking: a full pipe means the server's clients read slowly, and the program must
            // wait, not the server's memory grow. An error: the server is gone.
            server_reads = server_reads && crate::term::write_all(&out, &buf[..len]).is_ok();
            pty_open = !closed;
        }
        if exited {
            break;
        }
    }
    let deadline = Instant::now() + DRAIN;
    while pty_open && server_reads && Instant::now() < deadline {
        match nix::unistd::read(&master, &mut buf) {
            Ok(n) if n > 0 => server_reads = crate::term::write_all(&out, &buf[..n]).is_ok(),
            Err(Errno::EINTR) => continue,
            _ => break,
        }
    }
    drop(out);
    harden::wait_exit(child)
}

/// Reads what the pty has; for a flood, keeps reading for up to [`GATHER`] into the rest of
/// `buf`. Returns the bytes read and whether the pty is closed (every slave fd gone).
fn gather(master: &OwnedFd, buf: &mut [u8]) -> (usize, bool) {
    let mut len = match nix::unistd::read(master, buf) {
        Ok(0) | Err(Errno::EIO) => return (0, true),
        Ok(n) => n,
        Err(_) => return (0, false),
    };
    if len < FLOOD_READ {
        return (len, false);
    }
    let deadline = Instant::now() + GATHER;
    // Room for one more full read of the line discipline's buffer. Read first and poll only
    // when the pty is empty: in a flood the next 4 KiB is usually there already (a read waits
    // for the tty's pending flush work itself), which saves a poll per read.
    while len + 4096 <= buf.len() {
        match nix::unistd::read(master, &mut buf[len..]) {
            Ok(0) | Err(Errno::EIO) => return (len, true),
            Ok(n) => {
                len += n;
                continue;
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => break,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    (len, false)
}
