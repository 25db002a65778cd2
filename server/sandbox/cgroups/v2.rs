//! cgroup v2 (the unified hierarchy).
//!
//! Where session groups go (the *parent*, relative to `/sys/fs/cgroup`):
//! - `--cgroup-parent` when given;
//! - else the subtree systemd delegated to nsplay (a service with `Delegate=yes`): nsplay's own
//!   group when it is a `*.service` group that holds nothing but nsplay and the processes that
//!   started it (`ExecStart=/bin/sh -c 'nsplay …'` leaves the shell there), or the parent of
//!   nsplay's own group when that is a `*.service` group without processes of its own and
//!   nsplay's group holds only nsplay and its starters (systemd's `DelegateSubgroup=`, or a
//!   restart from the leaf an earlier nsplay moved to);
//! - else `nsplay` below the root.
//!
//! Cgroup v2 lets a non-root group distribute controllers to children only while it holds no
//! process itself ("no internal processes"); a cgroup namespace's root (a container's own group,
//! seen as `/` with `--cgroupns=private`) is a non-root group too. So when nsplay runs inside the
//! parent, or inside an ancestor of it, it first moves every process of that group into the leaf `supervisor` below
//! it (as nsjail and container runtimes do), then writes `+memory +pids +cpu` to the
//! `cgroup.subtree_control` of each group from the root down to the parent that lacks them. Under
//! systemd with `Delegate=yes` the groups above the service already have them, so nothing outside
//! the delegated subtree is written.
//!
//! Session groups are leaves with `memory.max`, `memory.swap.max` 0, `pids.max` and `cpu.max`
//! (their relay groups too, with `cpu.weight` on top), and `cgroup.max.depth` and
//! `cgroup.max.descendants` bounding the tree a session nests below it, written directly (not through
//! `cgroups-rs`, whose v2 `create` also writes to the root's and every intermediate group's
//! `cgroup.subtree_control`, delegated or not). Teardown writes `cgroup.kill`, waits for
//! `cgroup.events` to report the group unpopulated, and removes the tree through directory
//! descriptors (see `remove_tree`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, chown};

use super::{CgroupDriver, CgroupError, Usage, Version};
use crate::limits::{CPU_PERIOD_US, Limits};

const ROOT: &str = "/sys/fs/cgroup";
/// Controllers every session group gets.
pub const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// The leaf nsplay moves itself (and whatever else was there) into when it runs inside the group
/// whose children it manages.
pub const SUPERVISOR: &str = "supervisor";

/// How the parent group was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `--cgroup-parent` / `NSPLAY_CGROUP_PARENT`.
    Explicit,
    /// The subtree systemd delegated to nsplay's service.
    Delegated,
    /// `nsplay` below the root of the hierarchy.
    Default,
}

pub struct V2Driver {
    /// Parent group relative to the hierarchy root, e.g. `nsplay` or `system.slice/nsplay.service`.
    parent: String,
    placement: Placement,
    /// Groups from the root down to the parent that this driver created (see
    /// [`CgroupDriver::release`]).
    created: Vec<PathBuf>,
}

impl V2Driver {
    pub fn new(parent: Option<&str>) -> Result<Self, CgroupError> {
        let root = Path::new(ROOT);
        let available =
            read_words(&root.join("cgroup.controllers")).map_err(CgroupError::io(&root.join("cgroup.controllers")))?;
        for c in CONTROLLERS {
            if !available.iter().any(|a| a == c) {
                return Err(CgroupError::MissingController(c.to_string()));
            }
        }
        let own = super::own_v2_cgroup().unwrap_or_else(|| "/".into()).trim_matches('/').to_string();
        let (parent, placement) = planned_parent(parent)?;
        let mut driver = V2Driver { parent, placement, created: Vec::new() };
        driver.created = driver.prepare_parent(&own)?;
        // The sessions group is nsplay's whether this run made it or a crashed one did: it is
        // always removed at a clean stop (when empty).
        let sessions = driver.sessions();
        match fs::create_dir(&sessions) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::Create { path: sessions.display().to_string(), message: e.to_string() }),
        }
        driver.created.push(sessions.clone());
        enable_controllers(&sessions, driver.placement)?;
        Ok(driver)
    }

    /// The parent group's directory.
    pub fn parent_dir(&self) -> PathBuf {
        Path::new(ROOT).join(&self.parent)
    }

    /// The sessions group's directory (session groups are its `nsplay-*` children; see
    /// [`super::SESSIONS_GROUP`]).
    fn sessions(&self) -> PathBuf {
        self.parent_dir().join(super::SESSIONS_GROUP)
    }

    /// Creates the parent, moves this process out of the way if it sits in the parent or one of
    /// its ancestors, and enables the controllers for session groups. Returns the groups it
    /// created.
    fn prepare_parent(&self, own: &str) -> Result<Vec<PathBuf>, CgroupError> {
        let created = super::create_parent(Path::new(ROOT), &self.parent)?;
        // Groups from the root down to the parent, as paths relative to the root.
        let parts: Vec<&str> = self.parent.split('/').collect();
        let chain: Vec<String> = (0..=parts.len()).map(|n| parts[..n].join("/")).collect();
        // The hierarchy's real root may hold processes beside groups with controllers; any
        // other group may not, a cgroup namespace's root included (a container's own group,
        // which it sees as `/`).
        let own_must_empty = !own.is_empty() || !is_hierarchy_root(Path::new(ROOT));
        if own_must_empty && chain.iter().any(|g| g == own) {
            // Relative to the root: `Path::join` of an absolute path would leave the hierarchy.
            let below = |name: String| if own.is_empty() { name } else { format!("{own}/{name}") };
            let mut leaf = below(SUPERVISOR.to_string());
            if chain.contains(&leaf) {
                leaf = below(format!("{SUPERVISOR}-{}", std::process::id()));
            }
            move_all(&Path::new(ROOT).join(own), &Path::new(ROOT).join(leaf))?;
        }
        // Under systemd with Delegate=yes every group above a delegated one already distributes
        // the controllers, so this writes nothing outside the subtree nsplay was given.
        for g in &chain {
            enable_controllers(&Path::new(ROOT).join(g), self.placement)?;
        }
        Ok(created)
    }
}

/// Whether `root` (a cgroup v2 mount's top) is the hierarchy's real root, not the root of a
/// cgroup namespace (a container with `--cgroupns=private` sees its own group as `/`). The
/// kernel gives every group but the real root a `cgroup.events`.
fn is_hierarchy_root(root: &Path) -> bool {
    !root.join("cgroup.events").exists()
}

/// Enables every session controller in `dir`'s `cgroup.subtree_control` that is not already on.
fn enable_controllers(dir: &Path, placement: Placement) -> Result<(), CgroupError> {
    let ctl = dir.join("cgroup.subtree_control");
    let enabled = read_words(&ctl).map_err(CgroupError::io(dir))?;
    let available = read_words(&dir.join("cgroup.controllers")).map_err(CgroupError::io(dir))?;
    for c in CONTROLLERS {
        if enabled.iter().any(|e| e == c) {
            continue;
        }
        if !available.iter().any(|a| a == c) {
            let hint = if placement == Placement::Delegated {
                "; the service must be delegated all of them (Delegate=yes, or Delegate=memory pids cpu)"
            } else {
                "; enable it in the cgroup.subtree_control of the groups above it"
            };
            return Err(CgroupError::Create {
                path: dir.display().to_string(),
                message: format!(
                    "the controller `{c}` is not available in this group (cgroup.controllers lists: {}){hint}",
                    available.join(" ")
                ),
            });
        }
        fs::write(&ctl, format!("+{c}")).map_err(|e| CgroupError::Create {
            path: dir.display().to_string(),
            message: if e.raw_os_error() == Some(libc::EBUSY) {
                format!(
                    "cannot enable +{c} in cgroup.subtree_control: {e}: the group holds processes of its own, and cgroup v2 lets only groups without processes hand controllers to their children; choose a cgroup parent outside it (--cgroup-parent)"
                )
            } else {
                format!("cannot enable +{c} in cgroup.subtree_control: {e}")
            },
        })?;
    }
    Ok(())
}

/// Moves every process of `from` into the leaf `to` (created if needed), until `from` is empty.
fn move_all(from: &Path, to: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(to).map_err(CgroupError::io(to))?;
    let procs = to.join("cgroup.procs");
    // A process may fork while we move: repeat until nothing is left behind.
    for _ in 0..100 {
        let pids = super::read_pids(&from.join("cgroup.procs"));
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match fs::write(&procs, pid.to_string()) {
                Ok(()) => {}
                // Exited meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    return Err(CgroupError::Create {
                        path: to.display().to_string(),
                        message: format!("moving process {pid} out of {} into this leaf: {e}", from.display()),
                    });
                }
            }
        }
    }
    Err(CgroupError::Create {
        path: from.display().to_string(),
        message: "processes keep appearing in this group while nsplay moves them to a leaf".into(),
    })
}

/// The process asking, as far as delegation detection cares.
struct Process {
    pid: i32,
    /// Its ancestors (parent, grandparent, … up to pid 1).
    ancestors: Vec<i32>,
}

impl Process {
    fn current() -> Process {
        let pid = std::process::id() as i32;
        let mut ancestors = Vec::new();
        let mut p = pid;
        while let Some(pp) = parent_pid(p) {
            if pp <= 0 || ancestors.contains(&pp) {
                break;
            }
            ancestors.push(pp);
            p = pp;
        }
        Process { pid, ancestors }
    }

    /// True when every pid is this process or one of those that started it.
    fn only_kin(&self, pids: &[i32]) -> bool {
        pids.iter().all(|p| *p == self.pid || self.ancestors.contains(p))
    }
}

/// Where the parent group goes (relative to the root) and why, without creating anything (see
/// the module docs; `check-host` reports it too).
pub fn planned_parent(parent: Option<&str>) -> Result<(String, Placement), CgroupError> {
    let own = super::own_v2_cgroup().unwrap_or_else(|| "/".into()).trim_matches('/').to_string();
    let explicit =
        parent.map(|p| p.split('/').filter(|c| !c.is_empty()).collect::<Vec<_>>().join("/")).filter(|p| !p.is_empty());
    Ok(match explicit {
        Some(p) => {
            if p.split('/').any(|c| c == "." || c == "..") {
                return Err(CgroupError::Create {
                    path: p,
                    message: "the cgroup parent must be a plain path below the root (no `.` or `..`)".into(),
                });
            }
            (p, Placement::Explicit)
        }
        None => match delegated_group(Path::new(ROOT), &own, &Process::current()) {
            Some(p) => (p, Placement::Delegated),
            None => ("nsplay".to_string(), Placement::Default),
        },
    })
}

fn parent_pid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The group systemd delegated to nsplay, if nsplay runs in one (see the module docs).
fn delegated_group(root: &Path, own: &str, me: &Process) -> Option<String> {
    if own.is_empty() {
        return None;
    }
    let dir = |g: &str| root.join(g);
    let own_pids = super::read_pids(&dir(own).join("cgroup.procs"));
    if !me.only_kin(&own_pids) {
        return None;
    }
    let service = |g: &str| g.rsplit('/').next().is_some_and(|n| n.ends_with(".service"));
    if service(own) {
        return Some(own.to_string());
    }
    // DelegateSubgroup=: systemd started us in a leaf of the delegated service group.
    let (up, _) = own.rsplit_once('/')?;
    if service(up) && super::read_pids(&dir(up).join("cgroup.procs")).is_empty() {
        return Some(up.to_string());
    }
    None
}

fn read_words(path: &Path) -> std::io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?.split_whitespace().map(str::to_string).collect())
}

impl CgroupDriver for V2Driver {
    fn version(&self) -> Version {
        Version::V2
    }

    fn create(&self, name: &str, limits: &Limits, owner: u32) -> Result<(), CgroupError> {
        if !super::valid_name(name) || name.ends_with(super::RELAY_SUFFIX) {
            return Err(CgroupError::Create {
                path: name.to_string(),
                message: format!(
                    "session group names start with {} and do not end with {}",
                    super::PREFIX,
                    super::RELAY_SUFFIX
                ),
            });
        }
        let dir = self.dir(name);
        if dir.exists() || self.relay_dir(name).exists() {
            // A leftover with the same name (an earlier nsplay with our pid): start clean.
            self.destroy(name)?;
        }
        fs::create_dir(&dir)
            .map_err(|e| CgroupError::Create { path: dir.display().to_string(), message: e.to_string() })?;
        let result = (|| {
            super::write_file(&dir, "memory.max", &limits.memory_bytes.to_string())?;
            // Without swap accounting (swapaccount=0, no CONFIG_MEMCG_SWAP) there is no file and
            // the kernel charges no swap to the group to limit.
            if dir.join("memory.swap.max").exists() {
                super::write_file(&dir, "memory.swap.max", "0")?;
            }
            super::write_file(&dir, "pids.max", &limits.pids.to_string())?;
            super::write_file(&dir, "cpu.max", &format!("{} {CPU_PERIOD_US}", limits.cpu_quota_us()))?;
            // Bounds the tree the session can build below it: what its teardown and every walk
            // of it cost the host.
            super::bound_nesting(&dir)?;
            // Delegation (cgroup-v2.rst, "Delegation Containment"): root in the session may
            // create child groups and move its processes, but not raise its own limits.
            let (uid, gid) = (Some(Uid::from_raw(owner)), Some(Gid::from_raw(owner)));
            for p in
                [dir.clone(), dir.join("cgroup.procs"), dir.join("cgroup.subtree_control"), dir.join("cgroup.threads")]
            {
                chown(&p, uid, gid).map_err(|e| CgroupError::Io { path: p.display().to_string(), source: e.into() })?;
            }
            // The relay group: owned by host root and outside the session's cgroup namespace.
            let relay = self.relay_dir(name);
            fs::create_dir(&relay)
                .map_err(|e| CgroupError::Create { path: relay.display().to_string(), message: e.to_string() })?;
            super::write_file(&relay, "memory.max", &super::RELAY_MEMORY_BYTES.to_string())?;
            if relay.join("memory.swap.max").exists() {
                super::write_file(&relay, "memory.swap.max", "0")?;
            }
            super::write_file(&relay, "pids.max", &super::RELAY_PIDS.to_string())?;
            // 100 is v2's default cpu.weight (a session group's).
            super::write_file(&relay, "cpu.weight", &(100 * super::RELAY_WEIGHT_FACTOR).to_string())?;
            super::write_file(&relay, "cpu.max", &format!("{} {CPU_PERIOD_US}", super::relay_cpu_quota_us(limits)))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = self.destroy(name);
        }
        result
    }

    fn tighten(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        tighten_files(&self.dir(name), &self.relay_dir(name), limits)
    }

    fn helper_procs_files(&self) -> Vec<PathBuf> {
        // Where nsplay itself runs (after any move to a leaf): the root, or a leaf outside every
        // session group.
        let own = super::own_v2_cgroup().unwrap_or_else(|| "/".into());
        vec![Path::new(ROOT).join(own.trim_matches('/')).join("cgroup.procs")]
    }

    fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        vec![self.dir(name).join("cgroup.procs")]
    }

    fn relay_procs_files(&self, name: &str) -> Vec<PathBuf> {
        vec![self.relay_dir(name).join("cgroup.procs")]
    }

    fn freeze(&self, name: &str, frozen: bool) -> bool {
        if !super::valid_name(name) {
            return false;
        }
        let d = self.dir(name);
        if fs::write(d.join("cgroup.freeze"), if frozen { "1" } else { "0" }).is_err() || !frozen {
            return false;
        }
        // `frozen 1` in cgroup.events once every task has stopped; bounded, the caller kills in
        // rounds anyway.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            if super::read_keyed(&d.join("cgroup.events"), "frozen") == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.sessions().join(name)
    }

    fn usage(&self, name: &str) -> Result<Usage, CgroupError> {
        let d = self.dir(name);
        if !d.exists() {
            return Err(CgroupError::io(&d)(ErrorKind::NotFound.into()));
        }
        let cpu_stat = d.join("cpu.stat");
        let memory_bytes = super::read_u64(&d.join("memory.current"));
        // memory.peak exists since Linux 5.19.
        let peak = d.join("memory.peak");
        Ok(Usage {
            memory_bytes,
            memory_peak_bytes: if peak.exists() { super::read_u64(&peak) } else { memory_bytes },
            oom_kills: super::read_keyed(&d.join("memory.events"), "oom_kill"),
            oom_at_own_limit: super::read_keyed(&d.join("memory.events.local"), "oom"),
            pids: super::read_u64(&d.join("pids.current")),
            pids_limit_hits: super::read_keyed(&d.join("pids.events"), "max"),
            cpu_usec: super::read_keyed(&cpu_stat, "usage_usec"),
            throttled_periods: super::read_keyed(&cpu_stat, "nr_throttled"),
            throttled_usec: super::read_keyed(&cpu_stat, "throttled_usec"),
            relay_cpu_usec: super::read_keyed(&self.relay_dir(name).join("cpu.stat"), "usage_usec"),
        })
    }

    fn child_oom_limit(&self, name: &str) -> Option<u64> {
        if !super::valid_name(name) {
            return None;
        }
        // Breadth-first below the session group, at most MAX_GROUPS groups: the learner may
        // make many, and this runs on the server's time.
        const MAX_GROUPS: usize = 256;
        let mut queue = std::collections::VecDeque::from([self.dir(name)]);
        let (mut seen, mut best) = (0, None::<u64>);
        while let Some(d) = queue.pop_front() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                seen += 1;
                if seen > MAX_GROUPS {
                    return best;
                }
                let c = e.path();
                let limit = fs::read_to_string(c.join("memory.max")).ok().and_then(|s| s.trim().parse::<u64>().ok());
                if let Some(limit) = limit
                    && super::read_keyed(&c.join("memory.events.local"), "oom") > 0
                {
                    best = Some(best.map_or(limit, |b| b.min(limit)));
                }
                queue.push_back(c);
            }
        }
        best
    }

    fn pids(&self, name: &str) -> Vec<i32> {
        let mut all = super::pids_recursive(&self.dir(name));
        all.extend(super::pids_recursive(&self.relay_dir(name)));
        all
    }

    fn destroy(&self, name: &str) -> Result<(), CgroupError> {
        if !super::valid_name(name) {
            return Ok(());
        }
        // The session first: its relays pass on its last output until then.
        kill_group(&self.dir(name))?;
        kill_group(&self.relay_dir(name))
    }

    fn release(&self) -> Vec<PathBuf> {
        // The supervisor leaf this process moved into (if any) is not in `created`: the server
        // still runs in it.
        super::remove_created(&self.created)
    }

    fn existing(&self) -> Vec<String> {
        super::list_sessions(&self.sessions())
    }

    fn set_sessions_limits(&self, limits: &super::SessionsLimits) -> Result<(), CgroupError> {
        let dir = self.sessions();
        super::write_file(&dir, "memory.max", &limits.memory_bytes.to_string())?;
        super::write_file(&dir, "pids.max", &limits.pids.to_string())?;
        super::write_file(&dir, "cpu.weight", &super::SESSIONS_CPU_WEIGHT.to_string())
    }

    fn sessions_memory(&self) -> super::SessionsMemory {
        let dir = self.sessions();
        let current = super::read_u64(&dir.join("memory.current"));
        super::SessionsMemory {
            used_bytes: super::working_set(current, &dir.join("memory.stat"), "inactive_file"),
            limit_bytes: super::read_limit(&dir.join("memory.max")),
        }
    }

    fn sessions_dir(&self) -> PathBuf {
        self.sessions()
    }
}

impl V2Driver {
    fn relay_dir(&self, name: &str) -> PathBuf {
        self.sessions().join(super::relay_name(name))
    }
}

/// Writes a session group's lowered limits (`memory.max`, `pids.max`, `cpu.max`) and its relay
/// group's CPU quota. The session cannot undo them: delegation gave it only `cgroup.procs`,
/// `cgroup.subtree_control` and `cgroup.threads` of its group. A memory limit below what the
/// group uses makes the kernel reclaim (and at worst OOM-kill) inside the group.
fn tighten_files(dir: &Path, relay: &Path, limits: &Limits) -> Result<(), CgroupError> {
    super::write_file(dir, "memory.max", &limits.memory_bytes.to_string())?;
    super::write_file(dir, "pids.max", &limits.pids.to_string())?;
    super::write_file(dir, "cpu.max", &format!("{} {CPU_PERIOD_US}", limits.cpu_quota_us()))?;
    super::write_file(relay, "cpu.max", &format!("{} {CPU_PERIOD_US}", super::relay_cpu_quota_us(limits)))
}

/// Kills every process in the group `d` (and below) and removes it.
fn kill_group(d: &Path) -> Result<(), CgroupError> {
    if !d.exists() {
        return Ok(());
    }
    let kill = d.join("cgroup.kill");
    let has_kill = kill.exists();
    // Before Linux 5.14 there is no cgroup.kill: freeze, SIGKILL each process, thaw.
    let freeze = d.join("cgroup.freeze");
    let start = Instant::now();
    loop {
        if !populated(d) {
            break;
        }
        if has_kill {
            // Kills every process of the group and of its child groups, atomically with
            // respect to fork.
            let _ = fs::write(&kill, "1");
        } else {
            let _ = fs::write(&freeze, "1");
            for p in super::pids_recursive(d) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = fs::write(&freeze, "0");
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(CgroupError::NotEmpty {
                path: d.display().to_string(),
                waited_ms: start.elapsed().as_millis(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    super::remove_tree(d)
}

/// Whether the group or any group below it still has a process (`populated` of cgroup.events
/// also counts processes that are exiting; cgroup.procs alone would not).
fn populated(dir: &Path) -> bool {
    let events = dir.join("cgroup.events");
    match fs::read_to_string(&events) {
        Ok(_) => super::read_keyed(&events, "populated") != 0,
        Err(_) => !super::pids_recursive(dir).is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake hierarchy: `groups` are (path, controllers, pids).
    fn tree(groups: &[(&str, &str, &[i32])]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (g, controllers, pids) in groups {
            let d = t.path().join(g);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cgroup.controllers"), controllers).unwrap();
            let procs: String = pids.iter().map(|p| format!("{p}\n")).collect();
            fs::write(d.join("cgroup.procs"), procs).unwrap();
        }
        t
    }

    /// The files a tightening writes, in plain directories (the v2 VM's real run:
    /// tests/cgroups_v2.rs).
    #[test]
    fn tightening_writes_the_v2_limit_files() {
        let t = tempfile::tempdir().unwrap();
        let (dir, relay) = (t.path().join("nsplay-1-1"), t.path().join("nsplay-1-1.relay"));
        fs::create_dir(&dir).unwrap();
        fs::create_dir(&relay).unwrap();
        let mib = crate::limits::MIB;
        let limits = Limits { memory_bytes: 64 * mib, pids: 32, cpu: 0.25, disk_bytes: 64 * mib, shm_bytes: 16 * mib };
        tighten_files(&dir, &relay, &limits).unwrap();
        let read = |d: &Path, f: &str| fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read(&dir, "memory.max"), "67108864");
        assert_eq!(read(&dir, "pids.max"), "32");
        assert_eq!(read(&dir, "cpu.max"), "25000 100000");
        assert_eq!(read(&relay, "cpu.max"), "25000 100000");
    }

    const ALL: &str = "cpuset cpu io memory pids";
    const ME: Process = Process { pid: 100, ancestors: Vec::new() };

    fn me_from_shell() -> Process {
        Process { pid: 100, ancestors: vec![50, 1] }
    }

    #[test]
    fn a_cgroup_namespace_root_is_told_from_the_real_root() {
        let real = tree(&[]);
        assert!(is_hierarchy_root(real.path()));
        // A container's own group seen as `/`: the kernel gives it what non-root groups have.
        let ns = tree(&[]);
        fs::write(ns.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(!is_hierarchy_root(ns.path()));
    }

    #[test]
    fn a_delegated_service_group_is_used() {
        let t = tree(&[("system.slice/nsplay.service", ALL, &[100])]);
        assert_eq!(
            delegated_group(t.path(), "system.slice/nsplay.service", &ME).as_deref(),
            Some("system.slice/nsplay.service")
        );
        // Started from a shell that sits in the group too (ExecStart=/bin/sh -c 'nsplay …').
        let t = tree(&[("system.slice/nsplay.service", ALL, &[50, 100])]);
        assert_eq!(
            delegated_group(t.path(), "system.slice/nsplay.service", &me_from_shell()).as_deref(),
            Some("system.slice/nsplay.service")
        );
    }

    #[test]
    fn delegate_subgroup_uses_the_service_group() {
        let t =
            tree(&[("system.slice/nsplay.service", ALL, &[]), ("system.slice/nsplay.service/supervisor", ALL, &[100])]);
        assert_eq!(
            delegated_group(t.path(), "system.slice/nsplay.service/supervisor", &ME).as_deref(),
            Some("system.slice/nsplay.service")
        );
    }

    #[test]
    fn other_groups_are_left_alone() {
        // The root.
        let t = tree(&[("", ALL, &[1, 100])]);
        assert_eq!(delegated_group(t.path(), "", &ME), None);
        // A login session (not a service).
        let t = tree(&[("user.slice/user-0.slice/session-1.scope", ALL, &[50, 100])]);
        assert_eq!(delegated_group(t.path(), "user.slice/user-0.slice/session-1.scope", &me_from_shell()), None);
        // A service with processes that did not start nsplay (a CI runner, say).
        let t = tree(&[("system.slice/runner.service", ALL, &[7, 50, 100])]);
        assert_eq!(delegated_group(t.path(), "system.slice/runner.service", &me_from_shell()), None);
        // A leaf below a service whose group still holds processes.
        let t = tree(&[("system.slice/x.service", ALL, &[7]), ("system.slice/x.service/leaf", ALL, &[100])]);
        assert_eq!(delegated_group(t.path(), "system.slice/x.service/leaf", &ME), None);
    }
}
