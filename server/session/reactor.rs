//! Registering a terminal's descriptors with the tokio reactor: the one `unsafe` call of the
//! server crate (the sandbox crate has its own, in `sys`, and no tokio). tokio's registration is
//! `unsafe` because the reactor keeps the raw descriptor number; the safe constructor it had is
//! deprecated as unsound.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers an owned fd (a pty master, a relay pipe) for the readiness in `interest` only: a
/// master whose output a relay reads is registered for writing alone, so its output does not
/// wake the server for nothing on every chunk.
pub(super) fn register(fd: OwnedFd, interest: Interest) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open and
    // refers to the same file description until the AsyncFd is dropped (which deregisters it);
    // OwnedFd::as_raw_fd always returns the same number.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}
