//! cgroup v2 (the unified hierarchy). The parent group gets `+memory +pids +cpu` in its
//! `cgroup.subtree_control`; because v2 forbids processes in a group that distributes
//! controllers to children, nsplay first moves itself into a leaf (`<parent>/supervisor`) when it
//! runs inside the group it was delegated (a systemd unit with `Delegate=yes`). Teardown writes
//! `cgroup.kill`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::hierarchies::V2;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Cgroup, MaxValue, cpu::CpuController, pid::PidController};
use nix::unistd::{Gid, Uid, chown};

use super::{CgroupDriver, CgroupError, Usage, Version};
use crate::sandbox::limits::{CPU_PERIOD_US, Limits};

const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

pub struct V2Driver {
    /// Parent group relative to the hierarchy root, e.g. `nsplay` or `system.slice/nsplay.service`.
    parent: String,
}

impl V2Driver {
    pub fn new(parent: Option<&str>) -> Result<Self, CgroupError> {
        let root = Path::new(ROOT);
        let available =
            fs::read_to_string(root.join("cgroup.controllers")).map_err(CgroupError::io(root))?;
        for c in CONTROLLERS {
            if !available.split_whitespace().any(|a| a == c) {
                return Err(CgroupError::MissingController(c.to_string()));
            }
        }
        let own = super::own_v2_cgroup().unwrap_or_else(|| "/".into());
        let parent = match parent {
            Some(p) => p.trim_matches('/').to_string(),
            // Alone in a group that is not the root: we were given this subtree (systemd
            // Delegate=yes). Otherwise keep out of other people's groups and use /nsplay.
            None if own != "/" && alone_in(&root.join(own.trim_start_matches('/'))) => {
                own.trim_start_matches('/').to_string()
            }
            None => "nsplay".to_string(),
        };
        let driver = V2Driver { parent };
        driver.prepare_parent(&own)?;
        Ok(driver)
    }

    fn parent_dir(&self) -> PathBuf {
        Path::new(ROOT).join(&self.parent)
    }

    /// Creates the parent, moves this process to a leaf if it sits in the parent, and enables
    /// the controllers for session groups.
    fn prepare_parent(&self, own: &str) -> Result<(), CgroupError> {
        let parent = self.parent_dir();
        fs::create_dir_all(&parent).map_err(CgroupError::io(&parent))?;
        if own.trim_matches('/') == self.parent {
            let leaf = parent.join("supervisor");
            fs::create_dir_all(&leaf).map_err(CgroupError::io(&leaf))?;
            // Every thread group of ours (the server and its spawner) moves out of the parent.
            for pid in super::read_pids(&parent.join("cgroup.procs")) {
                fs::write(leaf.join("cgroup.procs"), pid.to_string())
                    .map_err(CgroupError::io(&leaf))?;
            }
        }
        // Enable the controllers on every ancestor down to the parent.
        let mut dir = PathBuf::from(ROOT);
        let mut chain = vec![dir.clone()];
        for part in self.parent.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            chain.push(dir.clone());
        }
        for d in chain {
            let ctl = d.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&ctl).map_err(CgroupError::io(&d))?;
            for c in CONTROLLERS {
                if !enabled.split_whitespace().any(|e| e == c) {
                    fs::write(&ctl, format!("+{c}")).map_err(|e| CgroupError::Create {
                        path: d.display().to_string(),
                        message: format!("cannot enable +{c} in cgroup.subtree_control: {e}"),
                    })?;
                }
            }
        }
        Ok(())
    }

    fn rel(&self, name: &str) -> String {
        format!("{}/{}", self.parent, name)
    }
}

fn alone_in(dir: &Path) -> bool {
    let me = std::process::id() as i32;
    let pids = super::read_pids(&dir.join("cgroup.procs"));
    !pids.is_empty() && pids.iter().all(|p| *p == me || is_our_child(*p, me))
}

fn is_our_child(pid: i32, me: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
        })
        == Some(me)
}

fn lerr(path: &Path, file: &str) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError {
    let path = path.display().to_string();
    let file = file.to_string();
    move |e| CgroupError::Limit {
        path,
        file,
        message: e.to_string(),
    }
}

impl CgroupDriver for V2Driver {
    fn version(&self) -> Version {
        Version::V2
    }

    fn create(&self, name: &str, limits: &Limits, owner: u32) -> Result<(), CgroupError> {
        let dir = self.dir(name);
        let controllers = CONTROLLERS.iter().map(|c| c.to_string()).collect();
        let cg = Cgroup::new_with_specified_controllers(
            Box::new(V2::new()),
            self.rel(name),
            Some(controllers),
        )
        .map_err(|e| CgroupError::Create {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let result = (|| {
            let mem: &MemController = cg
                .controller_of()
                .ok_or_else(|| CgroupError::MissingController("memory".into()))?;
            mem.set_limit(limits.memory_bytes as i64)
                .map_err(lerr(&dir, "memory.max"))?;
            if dir.join("memory.swap.max").exists() {
                mem.set_memswap_limit(0)
                    .map_err(lerr(&dir, "memory.swap.max"))?;
            }
            let pids: &PidController = cg
                .controller_of()
                .ok_or_else(|| CgroupError::MissingController("pids".into()))?;
            pids.set_pid_max(MaxValue::Value(limits.pids as i64))
                .map_err(lerr(&dir, "pids.max"))?;
            let cpu: &CpuController = cg
                .controller_of()
                .ok_or_else(|| CgroupError::MissingController("cpu".into()))?;
            cpu.set_cfs_quota_and_period(Some(limits.cpu_quota_us() as i64), Some(CPU_PERIOD_US))
                .map_err(lerr(&dir, "cpu.max"))?;
            // Delegation (cgroup-v2.rst, "Delegation Containment"): root in the session may
            // create child groups and move its processes, but not raise its own limits.
            let (uid, gid) = (Some(Uid::from_raw(owner)), Some(Gid::from_raw(owner)));
            for p in [
                dir.clone(),
                dir.join("cgroup.procs"),
                dir.join("cgroup.subtree_control"),
                dir.join("cgroup.threads"),
            ] {
                chown(&p, uid, gid).map_err(|e| CgroupError::Io {
                    path: p.display().to_string(),
                    source: e.into(),
                })?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = self.destroy(name);
        }
        result
    }

    fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        vec![self.dir(name).join("cgroup.procs")]
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.parent_dir().join(name)
    }

    fn usage(&self, name: &str) -> Result<Usage, CgroupError> {
        let d = self.dir(name);
        if !d.exists() {
            return Err(CgroupError::io(&d)(std::io::ErrorKind::NotFound.into()));
        }
        let cpu_stat = d.join("cpu.stat");
        Ok(Usage {
            memory_bytes: super::read_u64(&d.join("memory.current")),
            memory_peak_bytes: super::read_u64(&d.join("memory.peak")),
            oom_kills: super::read_keyed(&d.join("memory.events"), "oom_kill"),
            pids: super::read_u64(&d.join("pids.current")),
            pids_limit_hits: super::read_keyed(&d.join("pids.events"), "max"),
            cpu_usec: super::read_keyed(&cpu_stat, "usage_usec"),
            throttled_periods: super::read_keyed(&cpu_stat, "nr_throttled"),
            throttled_usec: super::read_keyed(&cpu_stat, "throttled_usec"),
        })
    }

    fn pids(&self, name: &str) -> Vec<i32> {
        super::pids_recursive(&self.dir(name))
    }

    fn destroy(&self, name: &str) -> Result<(), CgroupError> {
        if !super::valid_name(name) {
            return Ok(());
        }
        let d = self.dir(name);
        if !d.exists() {
            return Ok(());
        }
        let kill = d.join("cgroup.kill");
        let start = Instant::now();
        loop {
            if super::pids_recursive(&d).is_empty() {
                break;
            }
            if kill.exists() {
                let _ = fs::write(&kill, "1");
            } else {
                for p in super::pids_recursive(&d) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(CgroupError::NotEmpty {
                    path: d.display().to_string(),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        super::remove_tree(&d)
    }

    fn existing(&self) -> Vec<String> {
        super::list_sessions(&self.parent_dir())
    }
}
