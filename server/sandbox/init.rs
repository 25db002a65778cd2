//! PID 1 of a session: finishes the root filesystem from inside the user namespace, sets the
//! hostname, brings up `lo`, then does the two things an init must do — reap orphans (so zombies
//! never pile up against pids.max) and forward termination signals to everything in the session.
//! When it dies, the kernel kills every process of its PID namespace.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, sethostname};

use super::spawn::SessionSpec;
use super::{mounts, sys};

/// Runs in the forked init; never returns. Set-up errors go to the spawner over `sync`.
pub fn run_init(spec: &SessionSpec, sync: &OwnedFd) -> ! {
    if let Err(e) = setup(spec) {
        let _ = nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(sync),
            format!("E{e}").as_bytes(),
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        );
        std::process::exit(1);
    }
    let _ = nix::sys::socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&sync.as_fd()),
        b"R",
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    );
    // Init holds nothing: no socket to the spawner, no host fd, not even stdio.
    let _ = sys::close_fds_from(0);
    serve()
}

fn setup(spec: &SessionSpec) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    mounts::finish_in_userns(&spec.stage).map_err(|e| e.to_string())?;
    sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    sys::loopback_up().map_err(|e| format!("bringing up lo: {e}"))?;
    nix::sys::prctl::set_name(c"nsplay-init").map_err(|e| format!("prctl(SET_NAME): {e}"))?;
    Ok(())
}

fn serve() -> ! {
    let all = SigSet::all();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None);
    loop {
        let Ok(sig) = all.wait() else { continue };
        match sig {
            Signal::SIGCHLD => reap_all(),
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT | Signal::SIGUSR1 | Signal::SIGUSR2 => {
                // kill(-1) from PID 1 reaches every other process of the namespace.
                let _ = kill(Pid::from_raw(-1), sig);
            }
            _ => {}
        }
    }
}

fn reap_all() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}
