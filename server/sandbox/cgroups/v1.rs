//! cgroup v1 (and hybrid hosts): one directory per controller hierarchy. Teardown freezes the
//! group so nothing can fork while it is being emptied, SIGKILLs every task, thaws, and removes
//! the directories. A session's relay group exists in the memory, pids, cpu and cpuacct
//! hierarchies; its relays stay in the session's freezer group (frozen and killed with it) and
//! in its group of the controller-less cgroup2 mount.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::hierarchies::V1;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Cgroup, MaxValue, cpu::CpuController, pid::PidController};
use cgroups_rs::fs::{Controllers, freezer::FreezerController};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{CgroupDriver, CgroupError, Usage, Version};
use crate::limits::{CPU_PERIOD_US, Limits};

/// The first [`RELAY_CONTROLLERS`] of these are the relay group's.
const CONTROLLERS: [(&str, Controllers); 5] = [
    ("memory", Controllers::Mem),
    ("pids", Controllers::Pids),
    ("cpu", Controllers::Cpu),
    ("cpuacct", Controllers::CpuAcct),
    ("freezer", Controllers::Freezer),
];
const RELAY_CONTROLLERS: usize = 4;
/// The v1 limit on a group's TCP socket buffers (kernels with CONFIG_MEMCG_KMEM).
const TCP_LIMIT: &str = "memory.kmem.tcp.limit_in_bytes";

pub struct V1Driver {
    /// Path of the sessions group inside each hierarchy, e.g. `nsplay/sessions` (session groups
    /// are its children; see [`super::SESSIONS_GROUP`]).
    parent: String,
    /// Mount point of each controller in CONTROLLERS order.
    mounts: Vec<PathBuf>,
    /// The controller-less cgroup2 mount of hybrid hosts (/sys/fs/cgroup/unified). Sessions get
    /// a delegated group there too, so `mount -t cgroup2`, `mkdir` and `unshare -C` behave inside
    /// as the cgroup lessons expect.
    unified: Option<PathBuf>,
    /// Parent groups this driver created at start (see [`CgroupDriver::release`]).
    created: Vec<PathBuf>,
}

impl V1Driver {
    pub fn new(parent: Option<&str>) -> Result<Self, CgroupError> {
        let hier = V1::new();
        let mut mounts = Vec::new();
        for (name, c) in CONTROLLERS {
            let (mount, _root) =
                hier.get_mount_point(c).ok_or_else(|| CgroupError::MissingController(name.to_string()))?;
            mounts.push(mount);
        }
        let parent = parent.unwrap_or("nsplay").trim_matches('/').to_string();
        let unified = Path::new("/sys/fs/cgroup/unified");
        let unified = nix::sys::statfs::statfs(unified)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .then(|| unified.to_path_buf());
        // The parent in every hierarchy now (not later by cgroups-rs with each session), so that
        // nsplay knows which groups it made and removes exactly those at a clean stop.
        // The sessions group is nsplay's whether this run made it or a crashed one did: it is
        // always removed at a clean stop (when empty).
        let mut created = Vec::new();
        let mut roots: Vec<&PathBuf> = mounts.iter().chain(&unified).collect();
        roots.sort();
        roots.dedup();
        let sessions = format!("{parent}/{}", super::SESSIONS_GROUP);
        for root in &roots {
            created.extend(super::create_parent(root, &parent)?);
        }
        for root in &roots {
            super::create_parent(root, &sessions)?;
            created.push(root.join(&sessions));
        }
        Ok(V1Driver { parent: sessions, mounts, unified, created })
    }

    fn rel(&self, name: &str) -> String {
        format!("{}/{}", self.parent, name)
    }

    /// The group's directory in every hierarchy, the unified one last.
    fn dirs(&self, name: &str) -> Vec<PathBuf> {
        self.mounts.iter().chain(&self.unified).map(|m| m.join(&self.parent).join(name)).collect()
    }

    fn ctl(&self, idx: usize, name: &str) -> PathBuf {
        self.mounts[idx].join(&self.parent).join(name)
    }

    /// The relay group's directories (one per hierarchy: co-mounted controllers share one).
    fn relay_dirs(&self, name: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.mounts[..RELAY_CONTROLLERS]
            .iter()
            .map(|m| m.join(&self.parent).join(super::relay_name(name)))
            .collect();
        dirs.dedup();
        dirs
    }

    fn create_relay_group(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        let relay = super::relay_name(name);
        let dir = self.ctl(0, &relay);
        let controllers = CONTROLLERS[..RELAY_CONTROLLERS].iter().map(|(n, _)| n.to_string()).collect();
        let cg = Cgroup::new_with_specified_controllers(Box::new(V1::new()), self.rel(&relay), Some(controllers))
            .map_err(|e| CgroupError::Create { path: dir.display().to_string(), message: e.to_string() })?;
        let mem: &MemController = cg.controller_of().ok_or_else(|| CgroupError::MissingController("memory".into()))?;
        mem.set_limit(super::RELAY_MEMORY_BYTES as i64).map_err(lerr(&dir, "memory.limit_in_bytes"))?;
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            mem.set_memswap_limit(super::RELAY_MEMORY_BYTES as i64)
                .map_err(lerr(&dir, "memory.memsw.limit_in_bytes"))?;
        }
        let pids: &PidController = cg.controller_of().ok_or_else(|| CgroupError::MissingController("pids".into()))?;
        pids.set_pid_max(MaxValue::Value(super::RELAY_PIDS as i64)).map_err(lerr(&dir, "pids.max"))?;
        let cpu: &CpuController = cg.controller_of().ok_or_else(|| CgroupError::MissingController("cpu".into()))?;
        // 1024 is v1's default cpu.shares (a session group's).
        cpu.set_shares(1024 * super::RELAY_WEIGHT_FACTOR).map_err(lerr(&dir, "cpu.shares"))?;
        cpu.set_cfs_quota_and_period(Some(super::relay_cpu_quota_us(limits) as i64), Some(CPU_PERIOD_US))
            .map_err(lerr(&dir, "cpu.cfs_quota_us"))?;
        Ok(())
    }

    fn load(&self, name: &str) -> Cgroup {
        let controllers = CONTROLLERS.iter().map(|(n, _)| n.to_string()).collect();
        Cgroup::load_with_specified_controllers(Box::new(V1::new()), self.rel(name), controllers)
    }
}

/// Writes a session group's lowered limits into its v1 memory, pids and cpu directories, and the
/// CPU quota into its relay group's cpu directory (the period stays [`CPU_PERIOD_US`], set at
/// creation).
fn tighten_files(mem: &Path, pids: &Path, cpu: &Path, relay_cpu: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let bytes = limits.memory_bytes.to_string();
    // Lowering: the memory limit first, since memsw may never be below it; then memsw.
    super::write_file(mem, "memory.limit_in_bytes", &bytes)?;
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        super::write_file(mem, "memory.memsw.limit_in_bytes", &bytes)?;
    }
    if mem.join(TCP_LIMIT).exists() {
        super::write_file(mem, TCP_LIMIT, &bytes)?;
    }
    super::write_file(pids, "pids.max", &limits.pids.to_string())?;
    super::write_file(cpu, "cpu.cfs_quota_us", &limits.cpu_quota_us().to_string())?;
    super::write_file(relay_cpu, "cpu.cfs_quota_us", &super::relay_cpu_quota_us(limits).to_string())
}

/// Forks refused at pids.max. Recent kernels no longer count them in v1's pids.events (its
/// `max` stays 0); a peak at the limit then stands for "a fork hit the wall".
fn pids_limit_hits(dir: &Path) -> u64 {
    let counted = super::read_keyed(&dir.join("pids.events"), "max");
    let max = super::read_u64(&dir.join("pids.max"));
    let peak = super::read_u64(&dir.join("pids.peak"));
    if counted == 0 && max > 0 && peak >= max { 1 } else { counted }
}

fn lerr(path: &Path, file: &str) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError {
    let path = path.display().to_string();
    let file = file.to_string();
    move |e| CgroupError::Limit { path, file, message: e.to_string() }
}

impl CgroupDriver for V1Driver {
    fn version(&self) -> Version {
        Version::V1
    }

    fn create(&self, name: &str, limits: &Limits, owner: u32) -> Result<(), CgroupError> {
        let dir = self.dir(name);
        let controllers = CONTROLLERS.iter().map(|(n, _)| n.to_string()).collect();
        let cg = Cgroup::new_with_specified_controllers(Box::new(V1::new()), self.rel(name), Some(controllers))
            .map_err(|e| CgroupError::Create { path: dir.display().to_string(), message: e.to_string() })?;
        let result = (|| {
            let mem: &MemController =
                cg.controller_of().ok_or_else(|| CgroupError::MissingController("memory".into()))?;
            mem.set_limit(limits.memory_bytes as i64).map_err(lerr(&dir, "memory.limit_in_bytes"))?;
            // memsw exists only with swap accounting; without it there is no swap to limit.
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                mem.set_memswap_limit(limits.memory_bytes as i64).map_err(lerr(&dir, "memory.memsw.limit_in_bytes"))?;
            }
            mem.set_swappiness(0).map_err(lerr(&dir, "memory.swappiness"))?;
            // v1 charges socket buffers to no group unless this limit is set: then TCP buffer
            // memory is charged to the session's own tcp counter and bounded by its memory
            // limit (docs/security.md, Round two item 6). UDP buffers stay uncharged on v1.
            if dir.join(TCP_LIMIT).exists() {
                super::write_file(&dir, TCP_LIMIT, &limits.memory_bytes.to_string())?;
            }
            let pids: &PidController =
                cg.controller_of().ok_or_else(|| CgroupError::MissingController("pids".into()))?;
            pids.set_pid_max(MaxValue::Value(limits.pids as i64)).map_err(lerr(&dir, "pids.max"))?;
            let cpu: &CpuController = cg.controller_of().ok_or_else(|| CgroupError::MissingController("cpu".into()))?;
            cpu.set_cfs_quota_and_period(Some(limits.cpu_quota_us() as i64), Some(CPU_PERIOD_US))
                .map_err(lerr(&dir, "cpu.cfs_quota_us"))?;
            if let Some(u) = &self.unified {
                let d = u.join(&self.parent).join(name);
                std::fs::create_dir_all(&d).map_err(CgroupError::io(&d))?;
                super::bound_nesting(&d)?;
                let (uid, gid) = (Some(nix::unistd::Uid::from_raw(owner)), Some(nix::unistd::Gid::from_raw(owner)));
                for p in [d.clone(), d.join("cgroup.procs"), d.join("cgroup.subtree_control"), d.join("cgroup.threads")]
                {
                    nix::unistd::chown(&p, uid, gid)
                        .map_err(|e| CgroupError::Io { path: p.display().to_string(), source: e.into() })?;
                }
            }
            self.create_relay_group(name, limits)
        })();
        if result.is_err() {
            let _ = self.destroy(name);
        }
        result
    }

    fn tighten(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        // CONTROLLERS order: memory, pids, cpu (co-mounted controllers share a directory).
        let relay_cpu = self.ctl(2, &super::relay_name(name));
        tighten_files(&self.ctl(0, name), &self.ctl(1, name), &self.ctl(2, name), &relay_cpu, limits)
    }

    fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        self.dirs(name).into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn relay_procs_files(&self, name: &str) -> Vec<PathBuf> {
        self.relay_dirs(name).into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.ctl(0, name)
    }

    fn usage(&self, name: &str) -> Result<Usage, CgroupError> {
        let mem = self.ctl(0, name);
        if !mem.exists() {
            return Err(CgroupError::io(&mem)(std::io::ErrorKind::NotFound.into()));
        }
        let pids = self.ctl(1, name);
        let cpu = self.ctl(2, name);
        let acct = self.ctl(3, name);
        Ok(Usage {
            memory_bytes: super::read_u64(&mem.join("memory.usage_in_bytes")),
            memory_peak_bytes: super::read_u64(&mem.join("memory.max_usage_in_bytes")),
            oom_kills: super::read_keyed(&mem.join("memory.oom_control"), "oom_kill"),
            oom_at_own_limit: super::read_keyed(&mem.join("memory.oom_control"), "oom_kill"),
            pids: super::read_u64(&pids.join("pids.current")),
            pids_limit_hits: pids_limit_hits(&pids),
            cpu_usec: super::read_u64(&acct.join("cpuacct.usage")) / 1000,
            throttled_periods: super::read_keyed(&cpu.join("cpu.stat"), "nr_throttled"),
            throttled_usec: super::read_keyed(&cpu.join("cpu.stat"), "throttled_time") / 1000,
            relay_cpu_usec: super::read_u64(&self.ctl(3, &super::relay_name(name)).join("cpuacct.usage")) / 1000,
        })
    }

    fn pids(&self, name: &str) -> Vec<i32> {
        let mut all: Vec<i32> =
            self.dirs(name).iter().chain(&self.relay_dirs(name)).flat_map(|d| super::pids_recursive(d)).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    fn freeze(&self, name: &str, frozen: bool) -> bool {
        if !super::valid_name(name) {
            return false;
        }
        let cg = self.load(name);
        let Some(f) = cg.controller_of::<FreezerController>() else { return false };
        if !frozen {
            let _ = f.thaw();
            return false;
        }
        if f.freeze().is_err() {
            return false;
        }
        // FREEZING until every task has stopped; bounded, the caller kills in rounds anyway.
        let state = self.ctl(4, name).join("freezer.state");
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            if std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    fn destroy(&self, name: &str) -> Result<(), CgroupError> {
        if !super::valid_name(name) {
            return Ok(());
        }
        let cg = self.load(name);
        let freezer: Option<&FreezerController> = cg.controller_of();
        let frozen = freezer.map(|f| f.freeze().is_ok()).unwrap_or(false);
        let start = Instant::now();
        loop {
            let pids = self.pids(name);
            if pids.is_empty() {
                break;
            }
            for p in &pids {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            // SIGKILL is delivered to frozen tasks only once they thaw.
            if frozen && let Some(f) = freezer {
                let _ = f.thaw();
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(CgroupError::NotEmpty {
                    path: self.dir(name).display().to_string(),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for d in self.dirs(name) {
            super::remove_tree(&d)?;
        }
        super::kill_and_remove(&self.relay_dirs(name))
    }

    fn set_sessions_limits(&self, limits: &super::SessionsLimits) -> Result<(), CgroupError> {
        let mem = self.mounts[0].join(&self.parent);
        let bytes = limits.memory_bytes.to_string();
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            // memsw may never be below the memory limit: lift it first, then set both.
            super::write_file(&mem, "memory.memsw.limit_in_bytes", "-1")?;
            super::write_file(&mem, "memory.limit_in_bytes", &bytes)?;
            super::write_file(&mem, "memory.memsw.limit_in_bytes", &bytes)?;
        } else {
            super::write_file(&mem, "memory.limit_in_bytes", &bytes)?;
        }
        super::write_file(&self.mounts[1].join(&self.parent), "pids.max", &limits.pids.to_string())?;
        // v1's default shares are 1024 for a weight of 100.
        let shares = super::SESSIONS_CPU_WEIGHT * 1024 / 100;
        super::write_file(&self.mounts[2].join(&self.parent), "cpu.shares", &shares.to_string())
    }

    fn sessions_memory(&self) -> super::SessionsMemory {
        let mem = self.mounts[0].join(&self.parent);
        let current = super::read_u64(&mem.join("memory.usage_in_bytes"));
        super::SessionsMemory {
            used_bytes: super::working_set(current, &mem.join("memory.stat"), "total_inactive_file"),
            limit_bytes: super::read_limit(&mem.join("memory.limit_in_bytes")),
        }
    }

    fn sessions_dir(&self) -> PathBuf {
        self.mounts[0].join(&self.parent)
    }

    fn release(&self) -> Vec<PathBuf> {
        super::remove_created(&self.created)
    }

    fn existing(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.mounts.iter().chain(&self.unified).flat_map(|m| super::list_sessions(&m.join(&self.parent))).collect();
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MIB;

    /// The files a tightening writes, in a plain directory laid out like v1's hierarchies (the
    /// kernel's own files are exercised by tests/classroom.rs on a real server).
    #[test]
    fn tightening_writes_the_v1_limit_files() {
        let t = tempfile::tempdir().unwrap();
        let (mem, pids, cpu, relay) =
            (t.path().join("memory"), t.path().join("pids"), t.path().join("cpu"), t.path().join("cpu.relay"));
        for d in [&mem, &pids, &cpu, &relay] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(mem.join("memory.memsw.limit_in_bytes"), "536870912").unwrap();
        std::fs::write(mem.join(TCP_LIMIT), "536870912").unwrap();
        let limits = Limits { memory_bytes: 64 * MIB, pids: 32, cpu: 0.25, disk_bytes: 64 * MIB, shm_bytes: 16 * MIB };
        tighten_files(&mem, &pids, &cpu, &relay, &limits).unwrap();
        let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "67108864");
        assert_eq!(read(&mem, TCP_LIMIT), "67108864");
        assert_eq!(read(&pids, "pids.max"), "32");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "25000");
        assert_eq!(read(&relay, "cpu.cfs_quota_us"), "25000");
        // Without swap accounting there is no memsw file, and none is made.
        std::fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
        tighten_files(&mem, &pids, &cpu, &relay, &limits).unwrap();
        assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
    }
}
