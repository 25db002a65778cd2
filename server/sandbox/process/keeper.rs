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
use super::init;
use super::message::{FromHelper, Helper, SessionSpec, ToKeeper};
use crate::harden::{self, HardenError};
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

/// The keeper's steps that touch the system, one method each, in the order [`prepare`] takes
/// them. A trait so that the order (which the isolation depends on) is tested without root.
trait KeeperSteps {
    fn die_with_parent(&mut self) -> Result<(), KeeperError>;
    fn join_cgroup(&mut self, spec: &SessionSpec) -> Result<(), KeeperError>;
    fn unshare_mount(&mut self) -> Result<(), KeeperError>;
    fn make_root_private(&mut self) -> Result<(), KeeperError>;
    fn build_root(&mut self, spec: &SessionSpec) -> Result<(), KeeperError>;
    fn unshare_all(&mut self) -> Result<(), KeeperError>;
    fn request_id_maps(&mut self) -> Result<(), KeeperError>;
    fn become_root(&mut self) -> Result<(), KeeperError>;
    fn fork_init(&mut self) -> Result<ForkResult, KeeperError>;
}

/// Everything the keeper does before init runs; returns where the fork left this process.
fn prepare(s: &mut impl KeeperSteps, spec: &SessionSpec) -> Result<ForkResult, KeeperError> {
    s.die_with_parent()?;
    // The process is in its cgroup before it does anything else, let alone exec.
    s.join_cgroup(spec)?;
    s.unshare_mount()?;
    s.make_root_private()?;
    s.build_root(spec)?;
    // Everything mounted so far becomes locked in the session's mount namespace.
    s.unshare_all()?;
    // Only host root outside can write the maps of the new user namespace: the spawner.
    s.request_id_maps()?;
    s.become_root()?;
    s.fork_init()
}

/// The real steps.
struct Host<'a> {
    ch: &'a Channel<FromHelper, ToKeeper>,
}

impl KeeperSteps for Host<'_> {
    fn die_with_parent(&mut self) -> Result<(), KeeperError> {
        Ok(harden::die_with_parent()?)
    }

    fn join_cgroup(&mut self, spec: &SessionSpec) -> Result<(), KeeperError> {
        Ok(cgroup_join::join(&spec.procs_files)?)
    }

    fn unshare_mount(&mut self) -> Result<(), KeeperError> {
        unshare(CloneFlags::CLONE_NEWNS).map_err(KeeperError::UnshareMount)
    }

    fn make_root_private(&mut self) -> Result<(), KeeperError> {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(KeeperError::PrivateRoot)
    }

    fn build_root(&mut self, spec: &SessionSpec) -> Result<(), KeeperError> {
        let rootfs = mounts::RootfsSpec { hostname: &spec.hostname, limits: &spec.limits };
        if let Some(image) = &spec.image {
            // The layers are shown to the session through an idmap of its own id range.
            let userns = mounts::mapping_userns(spec.uid_base, spec.id_count)?;
            let plan = mounts::image_plan(&rootfs);
            use std::os::fd::AsFd;
            return Ok(mounts::build_image_phase(&spec.stage, image, &rootfs, &plan, spec.uid_base, userns.as_fd())?);
        }
        let plan = mounts::host_plan(&rootfs, &mounts::RealHost);
        Ok(mounts::build_host_phase(&spec.stage, &plan, &spec.limits, spec.uid_base)?)
    }

    fn unshare_all(&mut self) -> Result<(), KeeperError> {
        unshare(namespaces::all_flags()).map_err(KeeperError::Namespaces)
    }

    fn request_id_maps(&mut self) -> Result<(), KeeperError> {
        self.ch.send(FromHelper::WantIdMaps).map_err(KeeperError::AskIdMaps)?;
        self.ch.recv_id_maps_written().map_err(KeeperError::IdMaps)
    }

    fn become_root(&mut self) -> Result<(), KeeperError> {
        Ok(harden::become_root_inside()?)
    }

    fn fork_init(&mut self) -> Result<ForkResult, KeeperError> {
        sys::fork_single_threaded().map_err(KeeperError::ForkInit)
    }
}

/// Host root until it unshares. Returns only on error.
fn keeper_main(spec: &SessionSpec, ch: &Channel<FromHelper, ToKeeper>) -> Result<Infallible, KeeperError> {
    match prepare(&mut Host { ch }, spec)? {
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

    /// Records the steps taken; fails the one named `fail` (with EPERM).
    struct Recorder {
        steps: Vec<&'static str>,
        fail: Option<&'static str>,
    }

    impl Recorder {
        fn step(&mut self, name: &'static str) -> Result<(), KeeperError> {
            self.steps.push(name);
            if self.fail == Some(name) {
                return Err(match name {
                    "unshare_all" => KeeperError::Namespaces(Errno::EPERM),
                    _ => KeeperError::UnshareMount(Errno::EPERM),
                });
            }
            Ok(())
        }
    }

    impl KeeperSteps for Recorder {
        fn die_with_parent(&mut self) -> Result<(), KeeperError> {
            self.step("die_with_parent")
        }
        fn join_cgroup(&mut self, _: &SessionSpec) -> Result<(), KeeperError> {
            self.step("join_cgroup")
        }
        fn unshare_mount(&mut self) -> Result<(), KeeperError> {
            self.step("unshare_mount")
        }
        fn make_root_private(&mut self) -> Result<(), KeeperError> {
            self.step("make_root_private")
        }
        fn build_root(&mut self, _: &SessionSpec) -> Result<(), KeeperError> {
            self.step("build_root")
        }
        fn unshare_all(&mut self) -> Result<(), KeeperError> {
            self.step("unshare_all")
        }
        fn request_id_maps(&mut self) -> Result<(), KeeperError> {
            self.step("request_id_maps")
        }
        fn become_root(&mut self) -> Result<(), KeeperError> {
            self.step("become_root")
        }
        fn fork_init(&mut self) -> Result<ForkResult, KeeperError> {
            self.step("fork_init")?;
            Ok(ForkResult::Parent { child: nix::unistd::Pid::from_raw(4242) })
        }
    }

    fn spec() -> SessionSpec {
        SessionSpec {
            hostname: "nsplay".into(),
            limits: crate::limits::Limits {
                memory_bytes: 256 << 20,
                pids: 128,
                cpu: 0.5,
                disk_bytes: 64 << 20,
                shm_bytes: 16 << 20,
            },
            uid_base: 1_000_000_000,
            id_count: 65536,
            procs_files: Vec::new(),
            helper_procs_files: Vec::new(),
            stage: "/nonexistent".into(),
            image: None,
        }
    }

    const ORDER: [&str; 9] = [
        "die_with_parent",
        "join_cgroup",
        "unshare_mount",
        "make_root_private",
        "build_root",
        "unshare_all",
        "request_id_maps",
        "become_root",
        "fork_init",
    ];

    #[test]
    fn the_keeper_takes_its_steps_in_order() {
        let mut r = Recorder { steps: Vec::new(), fail: None };
        let forked = prepare(&mut r, &spec()).expect("every step succeeds");
        assert!(matches!(forked, ForkResult::Parent { child } if child.as_raw() == 4242));
        assert_eq!(r.steps, ORDER);
    }

    #[test]
    fn a_failed_step_stops_the_keeper_there() {
        let mut r = Recorder { steps: Vec::new(), fail: Some("unshare_all") };
        let e = prepare(&mut r, &spec()).expect_err("unshare_all fails");
        assert_eq!(r.steps, ORDER[..6]);
        assert!(e.to_string().contains("user namespaces may be disabled"), "{e}");
    }

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
