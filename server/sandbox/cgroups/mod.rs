//! Session cgroups: one group per session under an nsplay parent, with hard limits (memory with
//! swap 0, pids, CPU quota), usage readings, and a teardown that kills every process in the group
//! before removing it. Beside each session group sits its *relay group* `<session>.relay`, with
//! limits of its own, for the terminals' output relays (see [`RELAY_SUFFIX`]). Both hierarchies
//! are supported behind [`CgroupDriver`]: [`v1::V1Driver`] (separate controller mounts under
//! /sys/fs/cgroup/<controller>, as on hybrid hosts) and [`v2::V2Driver`] (the unified hierarchy
//! of current distributions). Which one is used is detected at start ([`detect`]). On v1,
//! creation and limits go through `cgroups-rs`; on v2 nsplay writes the few interface files
//! itself, so that it never touches a group outside the parent it chose (see [`v2`] for how it finds a delegated parent and keeps
//! to the "no internal processes" rule). Session groups are only ever removed under nsplay's own
//! parent and when their names start with [`PREFIX`]. `docs/cgroups.md` describes both
//! hierarchies and which hosts were tested.

pub mod v1;
pub mod v2;

use std::ffi::{CStr, CString};
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use serde::Serialize;

use super::limits::Limits;

/// Every session group's name starts with this, so start-up reclaim can tell ours apart.
pub const PREFIX: &str = "nsplay-";

/// A session's relay group is its sibling `<session>.relay`: it holds the session's terminal
/// output relays (nsplay's own code, `process::relay`), which copy what the session prints to the
/// server. Why not the session's own group: sharing it, the relay competed with the session's
/// processes for the session's quota and for the group's scheduler share, so a flood was held
/// back by its own reader: `cat` of a large file ran at 86–92 % of a raw pty at `--cpu 1` and
/// 54–58 % at `--cpu 0.5`, against 93–101 % and 73–79 % now (docs/benchmarks.md). Why not the
/// server's group: the relay's cost would escape every limit.
/// The relay group is bounded on its own ([`relay_cpu_quota_us`], [`RELAY_MEMORY_BYTES`],
/// [`RELAY_PIDS`]), owned by host root, outside the session's cgroup namespace, and removed with
/// the session.
pub const RELAY_SUFFIX: &str = ".relay";
/// Memory limit of a relay group: a relay holds a 32 KiB buffer and its pipe's 512 KiB.
pub const RELAY_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Tasks allowed in a relay group: relays never fork (one per terminal; they are moved in, which
/// pids.max does not limit).
pub const RELAY_PIDS: u64 = 16;
/// CPU weight of a relay group relative to a session group (whose weight is the default). Its
/// work is short and on the path of every echo; its quota bounds what the weight can take.
pub const RELAY_WEIGHT_FACTOR: u64 = 10;

/// The group below nsplay's parent that holds every session group and relay group, and nothing
/// else: all sessions together live under its limits ([`SessionsLimits`]). nsplay owns it (it is
/// created at start and removed at a clean stop when empty); the server and its spawner are never
/// in it (on v2 they may sit in the parent's `supervisor` leaf beside it), so whatever the sessions
/// do at once, the kernel reclaims and OOM-kills inside this group, not in the server or the host.
/// A group of its own rather than the parent itself, so that limits are only ever written to a
/// group nsplay made (a delegated `nsplay.service` or an operator's `--cgroup-parent` is not).
pub const SESSIONS_GROUP: &str = "sessions";

/// CPU weight of [`SESSIONS_GROUP`] (v2 `cpu.weight`; v1 `cpu.shares` is 10.24 times it): the
/// default weight, so all sessions together weigh as much as one sibling group — on v2 under a
/// delegated parent that is the server's `supervisor` leaf, which then keeps at least half of the
/// CPU while it needs it, however many sessions run.
pub const SESSIONS_CPU_WEIGHT: u64 = 100;

/// Limits of [`SESSIONS_GROUP`]: every session and relay together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionsLimits {
    /// `memory.max` (v2) / `memory.limit_in_bytes` (v1); no swap is charged beyond it (v1 memsw
    /// is set to the same value).
    pub memory_bytes: u64,
    /// `pids.max`: processes and threads of all sessions and relays together.
    pub pids: u64,
}

/// What all sessions together use of memory, as admission reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionsMemory {
    /// Charged memory minus the page cache the kernel drops first (`inactive_file`): the
    /// "working set" that container runtimes report. Tmpfs files (the sessions' root
    /// filesystems) are not page cache that can be dropped without swap, and count.
    pub used_bytes: u64,
    /// The group's memory limit (`u64::MAX` when it has none).
    pub limit_bytes: u64,
}

/// `current` less the file's `key` (inactive page cache), never below zero.
pub(crate) fn working_set(current: u64, stat: &Path, key: &str) -> u64 {
    current.saturating_sub(read_keyed(stat, key))
}

/// Reads a limit file: a number, or `max` (v2) for none.
pub(crate) fn read_limit(path: &Path) -> u64 {
    match fs::read_to_string(path) {
        Ok(s) if s.trim() == "max" => u64::MAX,
        Ok(s) => s.trim().parse().unwrap_or(u64::MAX),
        Err(_) => u64::MAX,
    }
}

/// Writes one interface file of a group nsplay made.
pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    fs::write(dir.join(file), value).map_err(|e| CgroupError::Limit {
        path: dir.display().to_string(),
        file: file.to_string(),
        message: format!("writing `{value}`: {e}"),
    })
}

/// The relay group's name for session group `name`.
pub fn relay_name(name: &str) -> String {
    format!("{name}{RELAY_SUFFIX}")
}

/// CPU quota per period of a session's relay group: the session's. Passing output on costs the
/// relay about what printing it costs the session's program (here 6.4–8.1 against 5.6–6.6 s of
/// CPU per GB for `cat`, docs/benchmarks.md); with half the session's quota the relay was
/// throttled and became the bottleneck of every flood. A session uses at most twice its limit in all, and only while it
/// prints as fast as it can.
pub fn relay_cpu_quota_us(limits: &Limits) -> u64 {
    limits.cpu_quota_us()
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup filesystem is mounted at /sys/fs/cgroup: mount cgroup2 there (or the v1 controllers memory, pids, cpu, cpuacct, freezer)"
    )]
    NotMounted,
    #[error(
        "the cgroup controller `{0}` is not available: enable it on the kernel command line or in the parent's cgroup.subtree_control"
    )]
    MissingController(String),
    #[error("creating cgroup {path}: {message}")]
    Create { path: String, message: String },
    #[error("setting {file} of cgroup {path}: {message}")]
    Limit { path: String, file: String, message: String },
    #[error("cgroup {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cgroup {path} still has processes after {waited_ms} ms of SIGKILL")]
    NotEmpty { path: String, waited_ms: u128 },
}

impl CgroupError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
        move |source| CgroupError::Io { path: path.display().to_string(), source }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// What the kernel counts for one session group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub pids: u64,
    pub cpu_usec: u64,
    pub oom_kills: u64,
    /// Times the session group's own memory limit was reached (v2 `oom` of
    /// memory.events.local; v1 has no child groups, so every kill counts here): an OOM kill
    /// without it happened at the smaller limit of a child group the learner made.
    pub oom_at_own_limit: u64,
    /// Forks refused because pids.max was reached.
    pub pids_limit_hits: u64,
    pub throttled_periods: u64,
    pub throttled_usec: u64,
    /// CPU time of the session's terminal output relays (its relay group), not in `cpu_usec`.
    pub relay_cpu_usec: u64,
}

/// The small interface the rest of nsplay sees; the two hierarchies differ in every detail.
pub trait CgroupDriver: Send + Sync {
    fn version(&self) -> Version;
    /// Creates the session group with its limits, and its relay group; `owner` is the host uid
    /// that is root in the session (on v2 the group is delegated to it so nested cgroups work
    /// inside).
    fn create(&self, name: &str, limits: &Limits, owner: u32) -> Result<(), CgroupError>;
    /// Lowers a live session group's memory, pids and CPU limits to `limits` (and its relay
    /// group's CPU quota, which follows the session's: [`relay_cpu_quota_us`]). The caller only
    /// ever passes limits at or below the group's ([`Limits::tightened`]).
    fn tighten(&self, name: &str, limits: &Limits) -> Result<(), CgroupError>;
    /// The `cgroup.procs` files a process writes its own pid to in order to join the group.
    fn procs_files(&self, name: &str) -> Vec<PathBuf>;
    /// The `cgroup.procs` files nsplay's own helpers (a session's keeper, a terminal's joiner)
    /// move back to once the session's processes are started, so that the session group holds
    /// only the session's processes: on v2 the session may then hand controllers to child groups
    /// of its own ("no internal processes"). Empty (v1): the helpers stay in the session group.
    fn helper_procs_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// The `cgroup.procs` files a terminal's output relay moves to once its program runs: those
    /// of the session's relay group ([`RELAY_SUFFIX`]).
    fn relay_procs_files(&self, name: &str) -> Vec<PathBuf>;
    /// The group's directory in the hierarchy that holds the memory controller.
    fn dir(&self, name: &str) -> PathBuf;
    fn usage(&self, name: &str) -> Result<Usage, CgroupError>;
    /// The smallest memory limit among the child groups (made by the learner, v2) whose own
    /// limit has been reached: where an OOM kill that the session's own limit did not cause
    /// came from. Looks at a bounded number of groups.
    fn child_oom_limit(&self, _name: &str) -> Option<u64> {
        None
    }
    /// Host pids of every process in the group (and its child groups) and its relay group.
    fn pids(&self, name: &str) -> Vec<i32>;
    /// Freezes (or thaws) the session group and everything below it, so that nothing in it can
    /// fork while it is being emptied (v2 `cgroup.freeze`, v1 the freezer controller). Returns
    /// whether the group is frozen now (false: no freezer, or thawed).
    fn freeze(&self, name: &str, frozen: bool) -> bool;
    /// Kills every process in the group and its relay group and removes both (and any child
    /// groups made inside).
    fn destroy(&self, name: &str) -> Result<(), CgroupError>;
    /// Names of nsplay session groups present now (after a crash: what an earlier run left); a
    /// relay group left without its session group counts as its session.
    fn existing(&self) -> Vec<String>;
    /// Sets the limits of [`SESSIONS_GROUP`], the group holding every session.
    fn set_sessions_limits(&self, limits: &SessionsLimits) -> Result<(), CgroupError>;
    /// What every session together uses of memory now, and the limit (see [`SessionsMemory`]).
    fn sessions_memory(&self) -> SessionsMemory;
    /// [`SESSIONS_GROUP`]'s directory in the hierarchy that holds the memory controller.
    fn sessions_dir(&self) -> PathBuf;
    /// Removes the parent groups this driver created at start (only those, and only when empty,
    /// innermost first), so a clean stop leaves the hierarchies as nsplay found them. Returns
    /// the ones that could not be removed.
    fn release(&self) -> Vec<PathBuf>;
}

/// Detects the host's hierarchy: v2 when /sys/fs/cgroup itself is cgroup2, else v1 controllers.
pub fn detect(parent: Option<&str>) -> Result<Box<dyn CgroupDriver>, CgroupError> {
    if cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
        Ok(Box::new(v2::V2Driver::new(parent)?))
    } else {
        Ok(Box::new(v1::V1Driver::new(parent)?))
    }
}

/// Creates the group `rel` below the hierarchy root `root` with any missing ancestors; returns
/// the directories it created, outermost first (those are the ones [`remove_created`] may
/// remove again: nsplay never removes a group it did not create).
pub(crate) fn create_parent(root: &Path, rel: &str) -> Result<Vec<PathBuf>, CgroupError> {
    let mut created = Vec::new();
    let mut dir = root.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io(&dir)(e)),
        }
    }
    Ok(created)
}

/// Removes the groups in `created` (from [`create_parent`]), innermost first; a group that is
/// not empty (rmdir refuses it) stays, and so do its ancestors. Returns the ones left.
pub(crate) fn remove_created(created: &[PathBuf]) -> Vec<PathBuf> {
    for (i, dir) in created.iter().enumerate().rev() {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return created[..=i].to_vec(),
        }
    }
    Vec::new()
}

pub(crate) fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Reads `key value` lines (memory.events, cpu.stat, pids.events, memory.oom_control).
pub(crate) fn read_keyed(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key)).then(|| it.next()?.parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

pub(crate) fn read_pids(procs: &Path) -> Vec<i32> {
    fs::read_to_string(procs).map(|s| parse_pids(&s)).unwrap_or_default()
}

fn parse_pids(s: &str) -> Vec<i32> {
    s.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// How deep a session may nest groups inside its delegated group (`cgroup.max.depth`, v2 and the
/// hybrid hosts' cgroup2 group): the lessons nest two or three.
pub const MAX_DEPTH: u32 = 32;
/// How many groups a session may have below its delegated group (`cgroup.max.descendants`):
/// this bounds what every walk of its tree costs the host (usage, pids, teardown).
pub const MAX_DESCENDANTS: u32 = 256;
/// Most groups one walk visits: a session's bound, with room for nsplay's own leaves, and a
/// bound also where the kernel has none (a tree left by an older nsplay).
const WALK_LIMIT: usize = 2 * MAX_DESCENDANTS as usize;
/// Deepest tree [`remove_tree`] descends into (one descriptor per level): far beyond
/// [`MAX_DEPTH`], for trees left by an older nsplay.
const REMOVE_DEPTH: usize = 1024;

/// Writes the nesting bounds of a delegated group (files of Linux 4.14+; older kernels have
/// none to write).
pub(crate) fn bound_nesting(dir: &Path) -> Result<(), CgroupError> {
    for (file, value) in [("cgroup.max.depth", MAX_DEPTH), ("cgroup.max.descendants", MAX_DESCENDANTS)] {
        let p = dir.join(file);
        if p.exists() {
            fs::write(&p, value.to_string()).map_err(|e| CgroupError::Limit {
                path: dir.display().to_string(),
                file: file.to_string(),
                message: format!("writing `{value}`: {e}"),
            })?;
        }
    }
    Ok(())
}

fn open_dir_at(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The child groups (directories) of the group open at `dir`.
fn child_groups(dir: &OwnedFd) -> nix::Result<Vec<CString>> {
    let mut d = nix::dir::Dir::from_fd(dir.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?)?;
    Ok(d.iter()
        .flatten()
        .filter(|e| e.file_type() == Some(nix::dir::Type::Directory))
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect())
}

/// All pids in `dir` and the groups below it, walked through directory descriptors (no path
/// grows with the depth) and at most [`WALK_LIMIT`] groups: a tree beyond that bound (only
/// possible where the kernel has no `cgroup.max.descendants`) is read in part.
pub(crate) fn pids_recursive(dir: &Path) -> Vec<i32> {
    let Ok(top) = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![top];
    let mut visited = 0;
    while let Some(fd) = stack.pop() {
        visited += 1;
        if let Ok(procs) = nix::fcntl::openat(&fd, c"cgroup.procs", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
            let mut text = String::new();
            if std::io::Read::read_to_string(&mut fs::File::from(procs), &mut text).is_ok() {
                out.extend(parse_pids(&text));
            }
        }
        for name in child_groups(&fd).unwrap_or_default() {
            if visited + stack.len() >= WALK_LIMIT {
                break;
            }
            if let Ok(child) = open_dir_at(fd.as_fd(), &name) {
                stack.push(child);
            }
        }
    }
    out
}

/// Removes the group `dir` and every group below it, depth-first, through directory
/// descriptors: each group is opened and removed relative to its parent (`openat`, `unlinkat`),
/// so however deep and long-named the groups a session nested, no path passes PATH_MAX.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    // The common case first, by path: a group without child groups needs no descriptor, so a
    // server out of descriptors still ends its sessions. Child groups, or a path past
    // PATH_MAX, take the walk below.
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    // Out of descriptors: they come free as connections close; wait a little for them.
    let start = Instant::now();
    loop {
        match remove_tree_at(dir) {
            Err(CgroupError::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && start.elapsed() < Duration::from_secs(3) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn remove_tree_at(dir: &Path) -> Result<(), CgroupError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    let parent = match nix::fcntl::open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(CgroupError::io(dir)(e.into())),
    };
    let name = CString::new(name.as_bytes()).map_err(|e| CgroupError::io(dir)(std::io::Error::other(e)))?;
    remove_at(parent.as_fd(), &name, 0).map_err(|(e, depth)| {
        let source = std::io::Error::from(e);
        CgroupError::Io { path: format!("{} (a group {depth} levels below it)", dir.display()), source }
    })
}

/// Removes the group `name` of the directory `parent` and its child groups; on error, the errno
/// and how deep below the first group it happened.
fn remove_at(parent: BorrowedFd<'_>, name: &CStr, depth: usize) -> Result<(), (Errno, usize)> {
    let rmdir = || nix::unistd::unlinkat(parent, name, UnlinkatFlags::RemoveDir);
    match rmdir() {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        // Child groups (or a task still exiting): remove those first.
        Err(Errno::EBUSY | Errno::ENOTEMPTY) => {}
        Err(e) => return Err((e, depth)),
    }
    if depth >= REMOVE_DEPTH {
        return Err((Errno::ELOOP, depth));
    }
    let fd = match open_dir_at(parent, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err((e, depth)),
    };
    for child in child_groups(&fd).map_err(|e| (e, depth))? {
        remove_at(fd.as_fd(), &child, depth + 1)?;
    }
    drop(fd);
    // The kernel may still be tearing down the last exited task: retry briefly on EBUSY.
    let start = Instant::now();
    loop {
        match rmdir() {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if start.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err((e, depth)),
        }
    }
}

/// Session group names found under `parent` (a relay group stands for its session).
pub(crate) fn list_sessions(parent: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(parent)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(PREFIX))
                .map(|n| n.strip_suffix(RELAY_SUFFIX).map(str::to_string).unwrap_or(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// SIGKILLs every process in `dirs` until they are empty (for groups whose processes cannot
/// fork, such as relay groups), then removes them.
pub(crate) fn kill_and_remove(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        let pids: Vec<i32> = dirs.iter().flat_map(|d| pids_recursive(d)).collect();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        if start.elapsed() > Duration::from_secs(10) {
            let path = dirs.first().map(|d| d.display().to_string()).unwrap_or_default();
            return Err(CgroupError::NotEmpty { path, waited_ms: start.elapsed().as_millis() });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for d in dirs {
        remove_tree(d)?;
    }
    Ok(())
}

/// The cgroup of this process in the unified hierarchy (the `0::` line of /proc/self/cgroup).
pub(crate) fn own_v2_cgroup() -> Option<String> {
    fs::read_to_string("/proc/self/cgroup").ok()?.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

pub(crate) fn valid_name(name: &str) -> bool {
    name.starts_with(PREFIX) && !name.contains('/') && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.events");
        fs::write(&p, "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n").unwrap();
        assert_eq!(read_keyed(&p, "oom_kill"), 2);
        assert_eq!(read_keyed(&p, "oom"), 3);
        assert_eq!(read_keyed(&p, "missing"), 0);
        assert!(valid_name("nsplay-abc"));
        assert!(!valid_name("system.slice"));
        assert!(!valid_name("nsplay-../x"));
    }

    #[test]
    fn only_the_parents_nsplay_created_are_removed_and_only_when_empty() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("existing")).unwrap();
        let created = create_parent(root.path(), "existing/a/b").unwrap();
        assert_eq!(created, [root.path().join("existing/a"), root.path().join("existing/a/b")]);
        assert_eq!(create_parent(root.path(), "existing/a/b").unwrap(), Vec::<PathBuf>::new());
        // Not empty (a group someone else put there): it and its ancestors stay.
        fs::create_dir(root.path().join("existing/a/b/other")).unwrap();
        assert_eq!(remove_created(&created).len(), 2);
        fs::remove_dir(root.path().join("existing/a/b/other")).unwrap();
        assert_eq!(remove_created(&created), Vec::<PathBuf>::new());
        assert!(root.path().join("existing").is_dir(), "a group nsplay did not create stays");
        assert!(!root.path().join("existing/a").exists());
    }

    #[test]
    fn only_prefixed_groups_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["nsplay-a", "nsplay-a.relay", "nsplay-b", "nsplay-c.relay", "other", "user.slice"] {
            fs::create_dir(dir.path().join(n)).unwrap();
        }
        // A relay group whose session group is gone (a crash mid-teardown) is reclaimed too.
        assert_eq!(list_sessions(dir.path()), ["nsplay-a", "nsplay-b", "nsplay-c"]);
    }
}
