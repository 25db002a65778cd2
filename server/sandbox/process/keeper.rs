//! The keeper (C1), one per session: forked by the spawner as host root, it joins the session's
//! cgroup, builds the session's root in a private mount namespace, unshares all eight
//! namespaces, has the spawner write its id maps, becomes root inside, forks init, and then only
//! waits for init (its exit is the session's exit). Killing the keeper kills init (PDEATHSIG)
//! and so the session's whole PID namespace.

use std::convert::Infallible;

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};
use nix::unistd::ForkResult;

use super::cgroup_join::{self, CgroupJoinError};
use super::channel::{Channel, ChannelError};
use super::harden::{self, HardenError};
use super::init;
use super::message::{FromHelper, Helper, SessionSpec, ToKeeper};
use crate::mounts::{self, MountError};
use crate::{namespaces, sys};

/// One variant per set-up step of the keeper.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error(transparent)]
    Harden(#[from] HardenError),
    #[error(transparent)]
    Cgroup(#[from] CgroupJoinError),
    #[error("unshare(mount): {0}")]
    UnshareMount(#[source] Errno),
    #[error("making / private: {0}")]
    PrivateRoot(#[source] Errno),
    #[error(transparent)]
    BuildRoot(#[from] MountError),
    #[error("creating namespaces: {0}{hint}", hint = userns_hint(*.0))]
    Namespaces(#[source] Errno),
    #[error("asking for id maps: {0}")]
    AskIdMaps(#[source] ChannelError),
    #[error("waiting for id maps: {0}")]
    IdMaps(#[source] ChannelError),
    #[error("fork init: {0}")]
    ForkInit(#[source] Errno),
    #[error("pidfd_open: {0}")]
    Pidfd(#[source] std::io::Error),
    #[error("announcing init: {0}")]
    Announce(#[source] ChannelError),
}

/// EPERM or ENOSPC from `unshare(CLONE_NEWUSER…)` mostly means user namespaces are off.
fn userns_hint(e: Errno) -> &'static str {
    if e == Errno::EPERM || e == Errno::ENOSPC {
        ": user namespaces may be disabled (check sysctl user.max_user_namespaces and kernel.unprivileged_userns_clone)"
    } else {
        ""
    }
}

/// Runs in the forked keeper; never returns. A set-up error goes to the spawner as text.
pub fn run(spec: &SessionSpec, ch: Channel<FromHelper, ToKeeper>) -> ! {
    let Err(e) = keeper_main(spec, &ch);
    let _ = ch.send(FromHelper::Failed { helper: Helper::Keeper, message: e.to_string() });
    std::process::exit(1)
}

/// Host root until it unshares. Returns only on error.
fn keeper_main(spec: &SessionSpec, ch: &Channel<FromHelper, ToKeeper>) -> Result<Infallible, KeeperError> {
    harden::die_with_parent()?;
    // The process is in its cgroup before it does anything else, let alone exec.
    cgroup_join::join(&spec.procs_files)?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(KeeperError::UnshareMount)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(KeeperError::PrivateRoot)?;
    let rootfs = mounts::RootfsSpec { hostname: &spec.hostname, limits: &spec.limits };
    let plan = mounts::host_plan(&rootfs, &mounts::RealHost);
    mounts::build_host_phase(&spec.stage, &plan, &spec.limits, spec.uid_base)?;
    // Everything mounted so far becomes locked in the session's mount namespace.
    unshare(namespaces::all_flags()).map_err(KeeperError::Namespaces)?;
    // Only host root outside can write the maps of the new user namespace: the spawner.
    ch.send(FromHelper::WantIdMaps).map_err(KeeperError::AskIdMaps)?;
    ch.recv_id_maps_written().map_err(KeeperError::IdMaps)?;
    harden::become_root_inside()?;
    match sys::fork_single_threaded().map_err(KeeperError::ForkInit)? {
        ForkResult::Child => init::run(spec, ch),
        ForkResult::Parent { child } => {
            let pidfd = sys::pidfd_open(child).map_err(KeeperError::Pidfd)?;
            ch.send(FromHelper::InitStarted { pid: child.as_raw(), pidfd }).map_err(KeeperError::Announce)?;
            // Nothing left to say: the keeper holds no descriptor while it waits.
            let _ = harden::keep_only_fds(&[]);
            std::process::exit(harden::wait_exit(child))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_namespaces_carry_the_user_namespace_hint() {
        for e in [Errno::EPERM, Errno::ENOSPC] {
            let text = KeeperError::Namespaces(e).to_string();
            assert!(text.starts_with(&format!("creating namespaces: {e}: user namespaces may be disabled")), "{text}");
        }
        assert_eq!(
            KeeperError::Namespaces(Errno::EINVAL).to_string(),
            format!("creating namespaces: {}", Errno::EINVAL)
        );
    }

    #[test]
    fn each_step_names_itself_and_keeps_its_cause() {
        use std::error::Error;
        let e = KeeperError::IdMaps(ChannelError::Timeout(20));
        assert_eq!(e.to_string(), "waiting for id maps: timed out after 20 s");
        assert!(e.source().is_some());
        let e = KeeperError::from(HardenError::Pdeathsig(Errno::EINVAL));
        assert_eq!(e.to_string(), format!("prctl(PDEATHSIG): {}", Errno::EINVAL));
    }
}
