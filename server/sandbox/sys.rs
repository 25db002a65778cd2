//! The only place in nsplay with `unsafe` code: thin wrappers over system calls that neither
//! `std` nor `nix` expose safely. Every block states why it is sound. Callers get safe
//! functions that take and return owned file descriptors.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::{ForkResult, Pid};

/// `fork(2)`. Only the spawner calls it, and the spawner is single-threaded (it is a fresh
/// `exec` of the binary and never starts a thread), so the child is a full, consistent copy;
/// so does `nsplay check-host`, before any thread exists (see `hostcheck`).
pub fn fork_single_threaded() -> nix::Result<ForkResult> {
    // SAFETY: the spawner process is single-threaded by construction (see `process::spawner`),
    // and `check-host` forks from `main` before anything has started a thread,
    // so no lock or allocator state can be held by another thread at the moment of the fork.
    unsafe { nix::unistd::fork() }
}

/// `getxattr(2)` of `name` on `path` (at most 256 bytes: the short flags systemd sets on the
/// cgroups it delegates are all `check-host` reads).
pub fn getxattr(path: &std::ffi::CStr, name: &std::ffi::CStr) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 256];
    // SAFETY: both strings are NUL-terminated `CStr`s and `buf` is a writable buffer of the
    // length passed; the kernel writes at most that many bytes and returns how many.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf[..n as usize].to_vec())
}

/// `pidfd_open(2)`: a file descriptor that names `pid` for as long as it is not reaped.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; on success it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process `pidfd` names (never one that reused
/// its pid).
pub fn pidfd_kill(pidfd: BorrowedFd<'_>, signal: nix::sys::signal::Signal) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open pidfd; a null siginfo is allowed (the kernel
    // fills in a SI_USER one) and flags must be 0.
    let r = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal as libc::c_int, std::ptr::null::<u8>(), 0)
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Closes every file descriptor but those in `keep`: a process entering the sandbox must not
/// carry any host fd (the CVE-2024-21626 class of leaks).
pub fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut first = 0;
    for k in keep {
        if k > first {
            close_range(first, k - 1)?;
        }
        first = first.max(k + 1);
    }
    close_range(first, RawFd::MAX)
}

fn close_range(first: RawFd, last: RawFd) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; the callers own nothing in the range that
    // Rust code will use afterwards (they are about to exec or loop without those fds).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last as libc::c_uint, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of an fd number handed to this process at exec time (the spawner's socket).
pub fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD checks that the descriptor is open; it was inherited for us to own and no
    // other code in this freshly exec'd process refers to it.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One datagram received with `recvmsg(2)` into `buf`, with room for `max_fds` descriptors
/// (close-on-exec): its length, its flags (`MSG_TRUNC`, `MSG_CTRUNC`), and every descriptor that
/// arrived, owned, also when the control data was cut short. (`nix` refuses to read the control
/// data of a message with `MSG_CTRUNC`, and the descriptors the kernel did install would leak;
/// the kernel only ever writes whole control messages, so reading them is sound.)
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, libc::c_int, Vec<OwnedFd>)> {
    let payload = (max_fds * std::mem::size_of::<RawFd>()) as libc::c_uint;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    // u64 words: aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8).max(1)];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at `iov` (into `buf`) and `control`, which outlive the call, with
        // their true lengths.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel set msg_controllen to the bytes of whole control messages it wrote into
    // `control`; CMSG_FIRSTHDR/CMSG_NXTHDR stay within that length and return null past it.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` points at a complete cmsghdr inside `control` (see above).
        let (level, kind, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len as usize) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_DATA points just past the header of the same message.
            let data = unsafe { libc::CMSG_DATA(c) };
            let header = data as usize - c as usize;
            let count = len.saturating_sub(header) / std::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: `count` descriptors lie within the message's cmsg_len; they may be
                // unaligned, so they are read as such.
                let fd = unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                // SAFETY: the kernel installed this descriptor in our table for this message;
                // nothing else refers to it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Ok((n, msg.msg_flags, fds))
}

fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong, arg: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: the requests used with this helper take an integer argument (not a pointer).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Unlocks a pty master so its peer can be opened (`unlockpt(3)`).
pub fn pty_unlock(master: BorrowedFd<'_>) -> io::Result<()> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one c_int through the pointer, which lives for the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK as _, &unlock) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the peer (slave) of a pty master without a path lookup (`TIOCGPTPEER`), so nothing in
/// the sandbox's /dev can redirect the open.
pub fn pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = ioctl_int(master, libc::TIOCGPTPEER as libc::c_ulong, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)?;
    // SAFETY: TIOCGPTPEER returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Hangs up a terminal (`TIOCVHANGUP`, needs CAP_SYS_ADMIN): as when a modem line drops, the
/// kernel sends SIGHUP and SIGCONT to the session it controls and its foreground group, and
/// every descriptor open on it reads end of file from then on.
pub fn tty_hangup(tty: BorrowedFd<'_>) -> io::Result<()> {
    ioctl_int(tty, libc::TIOCVHANGUP as libc::c_ulong, 0).map(drop)
}

/// The pty index behind a master (`TIOCGPTN`); also proves the fd really is a pty master.
pub fn pty_number(master: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one c_uint through the pointer, which lives for the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN as _, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n)
}

/// Makes the pty the controlling terminal of the calling session leader (`TIOCSCTTY`).
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    ioctl_int(fd, libc::TIOCSCTTY as libc::c_ulong, 0).map(drop)
}

/// Sets a terminal's size (`TIOCSWINSZ`); the kernel sends SIGWINCH to its foreground group.
pub fn set_window_size(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads a terminal's size (`TIOCGWINSZ`) as (cols, rows).
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: winsize is plain old data; all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ as _, &mut ws) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_col, ws.ws_row))
}

/// Brings the loopback interface of the current network namespace up (`SIOCSIFFLAGS`).
pub fn loopback_up() -> io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one ifreq through the pointer, which lives for the call.
    let r = unsafe { libc::ioctl(sock.as_fd().as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restores default dispositions for the signals a Rust runtime or the spawner changed, and
/// unblocks every signal, so the sandboxed program starts like one started by a login.
pub fn reset_signals() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    for sig in [Signal::SIGPIPE, Signal::SIGCHLD, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: installing SIG_DFL runs no handler code of ours, so it cannot violate any
        // async-signal-safety requirement.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The kernel's `struct mount_attr` (`linux/mount.h`, version 0: 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Binds the directory `source` at `target`, read-only, nosuid, nodev and *idmapped* through
/// `userns` (files owned by uid N in `source` appear owned by what N maps to in `userns`):
/// `open_tree(OPEN_TREE_CLONE)`, `mount_setattr(MOUNT_ATTR_IDMAP…)`, `move_mount`.
pub fn bind_idmapped(source: &std::path::Path, target: &std::path::Path, userns: BorrowedFd<'_>) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (src, dst) = (cstr(source)?, cstr(target)?);
    // SAFETY: `src` is a NUL-terminated string that outlives the call; the flags are plain
    // integers; the kernel returns a new descriptor (owned below) or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open_tree and is owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: `tree` is a valid descriptor, `empty` a NUL-terminated string, `attr` a properly
    // laid out `struct mount_attr` whose size is passed; all outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors/strings are valid for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
