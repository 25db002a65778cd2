//! PID 1 of a session: finishes the root filesystem from inside the user namespace, sets the
//! hostname, brings up `lo`, then does the two things an init must do — reap orphans (so zombies
//! never pile up against pids.max) and forward termination signals to everything in the session.
//! When it dies, the kernel kills every process of its PID namespace.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, sethostname};

use super::channel::Channel;
use super::message::{FromHelper, Helper, SessionSpec, ToKeeper};
use crate::harden::{self, HardenError};
use crate::mounts::{self, MountError};
use crate::sys;

/// One variant per set-up step of init.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Harden(#[from] HardenError),
    #[error(transparent)]
    FinishRoot(#[from] MountError),
    #[error("sethostname: {0}")]
    Hostname(#[source] Errno),
    #[error("bringing up lo: {0}")]
    Loopback(#[source] std::io::Error),
    #[error("prctl(SET_NAME): {0}")]
    Name(#[source] Errno),
    #[error("taking the session's devpts: {0}")]
    Devpts(#[source] std::io::Error),
}

/// Runs in the forked init; never returns. It talks to the spawner on the keeper's set-up
/// socket (inherited through the fork): `InitReady`, or `Failed` with the error's text.
pub fn run(spec: &SessionSpec, ch: &Channel<FromHelper, ToKeeper>) -> ! {
    let devpts = match setup(spec) {
        Ok(devpts) => devpts,
        Err(e) => {
            let _ = ch.send(FromHelper::Failed { helper: Helper::Init, message: e.to_string() });
            std::process::exit(1);
        }
    };
    // Sending closes init's copy: init keeps no descriptor of its own.
    let _ = ch.send(FromHelper::InitReady { devpts });
    // Init holds nothing: no socket to the spawner, no host fd, not even stdio.
    let _ = harden::keep_only_fds(&[]);
    serve()
}

/// Returns the session's devpts, taken now, before any of the session's code runs (so nothing
/// the session mounts or places later can stand in for it).
fn setup(spec: &SessionSpec) -> Result<OwnedFd, InitError> {
    harden::die_with_parent()?;
    mounts::finish_in_userns(&mounts::session_root(&spec.stage, spec.image.is_some()))?;
    let devpts = mounts::session_devpts().map_err(InitError::Devpts)?;
    sethostname(&spec.hostname).map_err(InitError::Hostname)?;
    sys::loopback_up().map_err(InitError::Loopback)?;
    nix::sys::prctl::set_name(c"nsplay-init").map_err(InitError::Name)?;
    Ok(devpts)
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
