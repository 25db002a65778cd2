//! nsplay-sandbox: turns "run this program" into a process in eight fresh namespaces, in its
//! own cgroup, on its own root filesystem and pty — and removes every trace afterwards. It knows
//! nothing about HTTP and has no async runtime (its manifest has neither: that is a compile
//! error, not a convention); the CLI (`nsplay run`) and the server both drive it through
//! [`Sandbox`].
//!
//! # Layout
//!
//! - `limits`: resource limits and their parsing.
//! - `idmap`: host uid/gid ranges per session.
//! - `cgroups`: per-session cgroups on v1 and v2 behind one trait.
//! - `mounts`: the session's root filesystem.
//! - `namespaces`: namespace kinds, identities, and what a session nested inside itself, read
//!   from the host's `/proc`.
//! - `neighbours`: the neighbour (ARP/NDP) entries of every network namespace a session
//!   holds, counted from the host over netlink (nothing else bounds them).
//! - `pty`: terminals inside a session and the last steps before exec; `term`: terminal fd
//!   helpers for the layers above.
//! - `seccomp`: the system-call filter of every program in a session.
//! - `process`: every process besides the server, one module per role — the spawner (the
//!   single-threaded helper that does every fork/unshare/setns/exec), the server's handle on it,
//!   keeper, init (PID 1 of a session), joiner and relay (copies a terminal's output to the
//!   server in large chunks) — and the one typed protocol they speak.
//! - `hostcheck`: `nsplay check-host`, what this host offers of what nsplay needs, probed.
//! - `consts`: constants several of those share.
//! - `sys`: the only `unsafe` code, each block with its SAFETY note.
//!
//! Modules are private; the few types a layer above needs are re-exported here.

mod cgroups;
mod consts;
mod harden;
pub mod hostcheck;
mod idmap;
mod limits;
mod mounts;
mod namespaces;
mod neighbours;
mod process;
mod pty;
pub use pty::MAX_OPEN_FILES;
pub mod seccomp;
mod sys;
pub mod term;

pub use cgroups::{
    CgroupDriver, CgroupError, SESSIONS_GROUP, SessionsLimits, SessionsMemory, Usage, Version, detect as detect_cgroups,
};
pub use idmap::{IdAllocator, IdError};
pub use limits::{
    CPU_PERIOD_US, LimitError, Limits, MIN_CPU, MIN_MEMORY_BYTES, MIN_PIDS, format_size, parse_cpu, parse_size,
};
pub use mounts::{ImageRoot, MAX_IMAGE_LAYERS, valid_hostname};
pub use namespaces::{
    KINDS as NAMESPACE_KINDS, inode as namespace_inode, inodes as namespace_inodes, inside_session, nested, nested_in,
    open_session_namespace,
};
pub use neighbours::{Count as NeighbourCount, MAX_NET_NAMESPACES, host_total as host_neighbour_entries};
pub use process::{Event, Helper, SpawnError, TerminalHandle, run_spawner};

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use idmap::IdRange;
use process::{SessionSpec, Spawner, TerminalSpec};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("nsplay must run as root (it creates namespaces, cgroups and mounts): run it with sudo")]
    NotRoot,
    #[error(
        "user namespaces are disabled on this kernel: set `sysctl user.max_user_namespaces=15000` (and kernel.unprivileged_userns_clone=1 where that exists)"
    )]
    NoUserNamespaces,
    #[error("state directory {path}: {source}")]
    StateDir { path: String, source: std::io::Error },
    #[error(
        "another nsplay already uses the state directory {0}: give each instance its own state_dir and cgroup_parent"
    )]
    Locked(String),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Ids(#[from] IdError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("invalid hostname `{0}`: use letters, digits and dashes (at most 63)")]
    Hostname(String),
    #[error(transparent)]
    Limits(#[from] limits::LimitError),
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub id_base: u32,
    pub id_slots: u32,
    /// Parent cgroup (relative to the hierarchy root); `None` = detect (see [`cgroups`]).
    pub cgroup_parent: Option<String>,
    pub state_dir: PathBuf,
    /// Limits of the group holding every session together (see [`cgroups::SESSIONS_GROUP`]).
    pub sessions: SessionsLimits,
}

/// A session group an earlier run left behind, found at start.
#[derive(Debug)]
pub struct Leftover {
    pub name: String,
    /// Why it could not be removed (it stays; the start goes on); `None`: it was removed, its
    /// processes killed.
    pub error: Option<CgroupError>,
}

/// A live sandbox: namespaces held by its init, a cgroup, an id range.
#[derive(Debug)]
pub struct SandboxSession {
    pub key: u64,
    /// Name of its cgroup (also used in logs).
    pub name: String,
    pub ids: IdRange,
    pub hostname: String,
    pub limits: Limits,
    /// Host pid of its init.
    pub init_pid: i32,
    pub pidfd: OwnedFd,
    /// The image its root was built from (`None`: the host's `/usr`).
    pub image: Option<ImageRoot>,
}

/// A session built by [`Sandbox::prepare`] whose first shell waits for [`Gate::open`].
pub struct Prepared {
    pub session: SandboxSession,
    /// The first terminal (relayed).
    terminal: TerminalHandle,
    gate: OwnedFd,
}

impl Prepared {
    /// Whether the session is still whole (its init alive). A prepared session that died while
    /// it waited must be destroyed, not handed out.
    pub fn is_alive(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(self.session.pidfd.as_fd(), nix::poll::PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) == Ok(0)
    }

    /// The session, its first terminal, and the gate that lets the terminal's shell exec.
    /// Wire the terminal up before opening the gate, so none of its output is missed.
    pub fn split(self) -> (SandboxSession, TerminalHandle, Gate) {
        (self.session, self.terminal, Gate(self.gate))
    }
}

/// The start gate of a parked shell.
pub struct Gate(OwnedFd);

impl Gate {
    /// Lets the shell exec (non-blocking: one byte into a pipe).
    pub fn open(self) -> Result<(), SandboxError> {
        match nix::unistd::write(&self.0, b"g") {
            Ok(1) => Ok(()),
            _ => Err(SpawnError::ShellGone.into()),
        }
    }
}

pub struct Sandbox {
    cgroups: Box<dyn CgroupDriver>,
    ids: IdAllocator,
    spawner: Spawner,
    stage: PathBuf,
    next: AtomicU64,
    /// Whether sessions may create user namespaces of their own (see [`Sandbox::set_nested_userns`]).
    nested_userns: bool,
    /// RLIMIT_NOFILE of every process in a session (see [`Sandbox::set_open_files`]).
    open_files: u64,
    /// Held for the life of the process: one nsplay per state directory.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Checks what nsplay needs from the host, with a message saying how to fix each gap.
pub fn preflight() -> Result<(), SandboxError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SandboxError::NotRoot);
    }
    let max_userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1);
    if max_userns == 0 {
        return Err(SandboxError::NoUserNamespaces);
    }
    Ok(())
}

/// Whether `max_sessions` full sessions could, together, take every pty the kernel leaves to
/// devpts instances other than the host's (`kernel.pty.max` − `kernel.pty.reserve`; each
/// session's own instance holds at most [`consts::SESSION_PTYS`]). `Some`: what to tell the
/// operator (the host's own terminals keep the reserve either way).
pub fn pty_budget_warning(max_sessions: usize) -> Option<String> {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/sys/kernel/pty/{f}")).ok()?.trim().parse::<u64>().ok();
    let (max, reserve) = (read("max")?, read("reserve")?);
    let pool = max.saturating_sub(reserve);
    let needed = max_sessions as u64 * consts::SESSION_PTYS as u64;
    (needed > pool).then(|| {
        format!(
            "{max_sessions} sessions may hold {needed} ptys together ({} each), more than the {pool} the kernel leaves to devpts instances other than the host's (kernel.pty.max {max} - kernel.pty.reserve {reserve}): one visitor's terminals could then fail for want of a pty; raise the limit (sysctl -w kernel.pty.max={}) or lower max_sessions",
            consts::SESSION_PTYS,
            needed + reserve
        )
    })
}

impl Sandbox {
    /// Checks the host, reclaims what an earlier run left, and starts the spawner. Call from the
    /// main thread before starting an async runtime. Returns the sandbox and the leftovers it
    /// found (each removed, or the reason it could not be).
    pub fn start(
        cfg: &SandboxConfig,
        exe: &Path,
        on_event: impl Fn(Event) + Send + 'static,
    ) -> Result<(Sandbox, Vec<Leftover>), SandboxError> {
        preflight()?;
        let sd = |source| SandboxError::StateDir { path: cfg.state_dir.display().to_string(), source };
        std::fs::create_dir_all(&cfg.state_dir).map_err(sd)?;
        let lock_file = std::fs::File::create(cfg.state_dir.join("lock")).map_err(sd)?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| SandboxError::Locked(cfg.state_dir.display().to_string()))?;
        let stage = cfg.state_dir.join("root");
        std::fs::create_dir_all(&stage).map_err(sd)?;
        let cgroups = cgroups::detect(cfg.cgroup_parent.as_deref())?;
        let ids = IdAllocator::new(cfg.id_base, cfg.id_slots)?;
        // One leftover that cannot be removed is reported, not fatal: nsplay still starts.
        let reclaimed =
            cgroups.existing().into_iter().map(|name| Leftover { error: cgroups.destroy(&name).err(), name }).collect();
        // After the reclaim: a limit below what leftovers hold would only make the kernel
        // reclaim memory that is about to be freed anyway.
        if let Err(e) = cgroups.set_sessions_limits(&cfg.sessions) {
            cgroups.release();
            return Err(e.into());
        }
        let spawner = Spawner::start(exe, on_event)?;
        Ok((
            Sandbox {
                cgroups,
                ids,
                spawner,
                stage,
                next: AtomicU64::new(1),
                nested_userns: true,
                open_files: pty::MAX_OPEN_FILES,
                _lock: lock,
            },
            reclaimed,
        ))
    }

    /// Allows (the default) or refuses nested user namespaces in terminals opened from now on.
    /// The user-namespace lesson needs them (`unshare -U -r`); refusing them keeps a session to
    /// the one user namespace nsplay made, for deployments that want the least kernel surface.
    /// Sets the open-files limit (RLIMIT_NOFILE) of the programs of terminals opened from now on,
    /// at most [`MAX_OPEN_FILES`] (the server lowers it so that every session together stays
    /// under the host's `fs.file-max`).
    pub fn set_open_files(&mut self, n: u64) {
        self.open_files = n.clamp(1, pty::MAX_OPEN_FILES);
    }

    pub fn set_nested_userns(&mut self, allow: bool) {
        self.nested_userns = allow;
    }

    pub fn cgroup_version(&self) -> cgroups::Version {
        self.cgroups.version()
    }

    pub fn cgroups(&self) -> &dyn CgroupDriver {
        self.cgroups.as_ref()
    }

    /// What all sessions together use of memory now, against their group's limit (two small
    /// file reads; admission asks before every new session).
    pub fn sessions_memory(&self) -> SessionsMemory {
        self.cgroups.sessions_memory()
    }

    /// Creates a session (blocking, a few milliseconds). On error nothing is left behind.
    pub fn create(&self, hostname: &str, limits: &Limits) -> Result<SandboxSession, SandboxError> {
        self.create_on(hostname, limits, None)
    }

    /// [`Sandbox::create`] with its root built from `image` (`None`: the host's `/usr`).
    pub fn create_on(
        &self,
        hostname: &str,
        limits: &Limits,
        image: Option<&ImageRoot>,
    ) -> Result<SandboxSession, SandboxError> {
        if !mounts::valid_hostname(hostname) {
            return Err(SandboxError::Hostname(hostname.to_string()));
        }
        limits.validate()?;
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let ids = self.ids.allocate()?;
        let name = format!("{}{}-{key}", cgroups::PREFIX, std::process::id());
        if let Err(e) = self.cgroups.create(&name, limits, ids.base) {
            self.ids.release(ids);
            return Err(e.into());
        }
        let spec = SessionSpec {
            hostname: hostname.to_string(),
            limits: *limits,
            uid_base: ids.base,
            id_count: ids.count(),
            procs_files: self.cgroups.procs_files(&name),
            helper_procs_files: self.cgroups.helper_procs_files(),
            stage: self.stage.clone(),
            image: image.cloned(),
        };
        match self.spawner.create_session(key, spec) {
            Ok(h) => Ok(SandboxSession {
                key,
                name,
                ids,
                hostname: hostname.to_string(),
                limits: *limits,
                init_pid: h.init_pid,
                pidfd: h.pidfd,
                image: image.cloned(),
            }),
            Err(e) => {
                let _ = self.cgroups.destroy(&name);
                self.ids.release(ids);
                Err(e.into())
            }
        }
    }

    /// Starts `argv` (empty: the default shell) on a new pty inside the session. With `relay`,
    /// its output comes through [`TerminalHandle::output`] (see `process::relay`).
    pub fn open_terminal(
        &self,
        s: &SandboxSession,
        terminal: u64,
        argv: Vec<String>,
        size: (u16, u16),
        relay: bool,
    ) -> Result<TerminalHandle, SandboxError> {
        let spec = self.terminal_spec(s, argv, size, false, relay);
        Ok(self.spawner.open_terminal(s.key, terminal, spec)?)
    }

    /// Builds a complete session ahead of time: its cgroup, root, namespaces and init, and its
    /// first terminal (index 0, the default shell, 80×24, relayed) with the shell confined and
    /// parked just before its `execve`; [`Gate::open`] then only lets the shell exec. Blocking;
    /// on error nothing is left behind. Dropping a `Prepared` without [`Sandbox::destroy`] of its
    /// session leaks it until the server exits.
    pub fn prepare(&self, hostname: &str, limits: &Limits) -> Result<Prepared, SandboxError> {
        self.prepare_on(hostname, limits, None)
    }

    /// [`Sandbox::prepare`] with its root built from `image` (`None`: the host's `/usr`).
    pub fn prepare_on(
        &self,
        hostname: &str,
        limits: &Limits,
        image: Option<&ImageRoot>,
    ) -> Result<Prepared, SandboxError> {
        let session = self.create_on(hostname, limits, image)?;
        let spec = self.terminal_spec(&session, Vec::new(), (80, 24), true, true);
        match self.spawner.open_terminal(session.key, 0, spec) {
            Ok(TerminalHandle { pid, master, gate: Some(gate), output }) => {
                Ok(Prepared { session, terminal: TerminalHandle { pid, master, gate: None, output }, gate })
            }
            Ok(_) => {
                let _ = self.destroy(&session);
                Err(SpawnError::Protocol("a parked terminal came without its gate".into()).into())
            }
            Err(e) => {
                let _ = self.destroy(&session);
                Err(e.into())
            }
        }
    }

    fn terminal_spec(
        &self,
        s: &SandboxSession,
        argv: Vec<String>,
        (cols, rows): (u16, u16),
        parked: bool,
        relay: bool,
    ) -> TerminalSpec {
        TerminalSpec {
            argv,
            cols,
            rows,
            procs_files: self.cgroups.procs_files(&s.name),
            helper_procs_files: self.cgroups.helper_procs_files(),
            confinement: pty::Confinement::new(&s.limits, self.nested_userns, self.open_files),
            parked,
            relay,
            relay_procs_files: self.cgroups.relay_procs_files(&s.name),
            env: s.image.as_ref().map(|i| i.env.clone()).unwrap_or_default(),
            working_dir: s.image.as_ref().and_then(|i| i.working_dir.clone()),
        }
    }

    /// Tightens a live session's memory, process and CPU limits to `to` wherever `to` is lower
    /// (one is never raised; disk and `/dev/shm` are the sizes of mounts made at creation and
    /// stay) and records them in `s.limits`. A classroom room's session comes out of the warm
    /// pool with the server's limits and gets the room's this way before its shell runs.
    pub fn tighten(&self, s: &mut SandboxSession, to: &Limits) -> Result<(), SandboxError> {
        let new = s.limits.tightened(to);
        if new == s.limits {
            return Ok(());
        }
        new.validate()?;
        self.cgroups.tighten(&s.name, &new)?;
        s.limits = new;
        Ok(())
    }

    pub fn usage(&self, s: &SandboxSession) -> Result<Usage, SandboxError> {
        Ok(self.cgroups.usage(&s.name)?)
    }

    /// The memory limit of the learner's child group where an OOM kill happened, if one did
    /// (see [`CgroupDriver::child_oom_limit`]).
    pub fn child_oom_limit(&self, s: &SandboxSession) -> Option<u64> {
        self.cgroups.child_oom_limit(&s.name)
    }

    /// Host pids of every process of the session.
    pub fn pids(&self, s: &SandboxSession) -> Vec<i32> {
        self.cgroups.pids(&s.name)
    }

    /// Open file descriptors of the session's processes together (`/proc/<pid>/fd` of each;
    /// blocking, at most pids × RLIMIT_NOFILE entries).
    pub fn open_files(&self, s: &SandboxSession) -> usize {
        self.cgroups
            .pids(&s.name)
            .into_iter()
            .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
            .map(Iterator::count)
            .sum()
    }

    /// Neighbour entries in every network namespace the session holds (its own, those of its
    /// processes, and those mounted where they can see them), counted until the total passes
    /// `cap` (blocking: reads `/proc` and dumps each namespace's tables; bounded by
    /// [`MAX_NET_NAMESPACES`] and `cap`).
    pub fn neighbours(&self, s: &SandboxSession, cap: usize) -> NeighbourCount {
        let mut pids = vec![s.init_pid];
        pids.extend(inside_session(self.pids(s)).into_iter().filter(|p| *p != s.init_pid));
        neighbours::count_session(&pids, cap)
    }

    /// Stops everything the learner started, keeping the session: every process in the
    /// session's cgroup tree that runs inside its PID namespace is SIGKILLed, except init and
    /// the terminals' shells (the processes whose parent is outside the session: a joiner).
    /// nsplay's own helpers (keeper, joiners, relays) run in the host's PID namespace and are
    /// never touched. The group is frozen while it is emptied, so a fork bomb cannot outrun it;
    /// each kill goes through a pidfd opened while the process was still seen in the group, so
    /// a reused pid is never signalled. Returns how many processes were killed.
    pub fn reset(&self, s: &SandboxSession) -> usize {
        let mut killed = 0;
        // Rounds: a process that forked before the freeze took hold shows up in the next one.
        for _ in 0..50 {
            let frozen = self.cgroups.freeze(&s.name, true);
            let victims = reset_victims(s.init_pid, &self.cgroups.pids(&s.name));
            for &pid in &victims {
                let Ok(fd) = sys::pidfd_open(nix::unistd::Pid::from_raw(pid)) else { continue };
                // Still ours now that the pidfd pins it? (It may have exited and its pid gone to
                // a host process between the listing and the open.)
                if !self.cgroups.pids(&s.name).contains(&pid) {
                    continue;
                }
                if sys::pidfd_kill(fd.as_fd(), nix::sys::signal::Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
            if frozen {
                self.cgroups.freeze(&s.name, false);
            }
            if victims.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        killed
    }

    /// Kills the program a terminal started (its shell: the session's process whose parent is
    /// the terminal's joiner, host pid `joiner`), for a closed terminal whose shell outlived the
    /// hang-up ([`term::hang_up`]). What the shell started lives on, as after any shell's end.
    /// The kill goes through a pidfd checked against the session's group, so a reused pid is
    /// never signalled. Returns whether a process was killed.
    pub fn kill_terminal_program(&self, s: &SandboxSession, joiner: i32) -> bool {
        let pids = self.cgroups.pids(&s.name);
        let Some(&shell) = pids.iter().find(|&&p| parent_of(p) == Some(joiner)) else { return false };
        let Ok(fd) = sys::pidfd_open(nix::unistd::Pid::from_raw(shell)) else { return false };
        // Still the session's, and still the joiner's child, now that the pidfd pins it?
        if !self.cgroups.pids(&s.name).contains(&shell) || parent_of(shell) != Some(joiner) {
            return false;
        }
        sys::pidfd_kill(fd.as_fd(), nix::sys::signal::Signal::SIGKILL).is_ok()
    }

    /// Removes the parent cgroups nsplay created at start, once every session is destroyed (a
    /// clean stop leaves the host's hierarchies as they were). Returns the groups that could
    /// not be removed (not empty: a session still exists, or someone else put a group there).
    pub fn release_cgroups(&self) -> Vec<PathBuf> {
        self.cgroups.release()
    }

    /// Ends the session: every process killed, the cgroup removed, the id range freed. Its
    /// mounts lived only in its own mount namespace and vanish with its last process.
    pub fn destroy(&self, s: &SandboxSession) -> Result<(), SandboxError> {
        self.spawner.end_session(s.key);
        let r = self.cgroups.destroy(&s.name);
        // A cgroup lists no task once it starts exiting; init's pidfd turns readable only when
        // init is dead, and init dies last in its PID namespace. So this is "everything gone".
        let mut fds = [nix::poll::PollFd::new(s.pidfd.as_fd(), nix::poll::PollFlags::POLLIN)];
        for _ in 0..50 {
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
                break;
            }
        }
        if r.is_ok() {
            self.ids.release(s.ids);
        }
        Ok(r?)
    }
}

/// Of the session's host pids `pids`, those a reset kills: the ones inside the session's PID
/// namespace whose parent is inside too, but not init (whose parent is its keeper). A
/// terminal's shell has its joiner, outside, as parent, and stays.
fn reset_victims(init_pid: i32, pids: &[i32]) -> Vec<i32> {
    let inside: std::collections::BTreeSet<i32> = namespaces::inside_session(pids.to_vec()).into_iter().collect();
    inside.iter().copied().filter(|&p| p != init_pid && parent_of(p).is_some_and(|pp| inside.contains(&pp))).collect()
}

/// The parent pid of `pid` as the host sees it (`/proc/<pid>/stat`, after the command name).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pty_budget_is_checked_against_the_hosts_limit() {
        // /proc/sys/kernel/pty is readable without root; the default limit (4096 - 1024) holds
        // a few sessions, and no host holds a billion.
        assert_eq!(super::pty_budget_warning(1), None);
        let w = super::pty_budget_warning(1 << 30).expect("a warning");
        assert!(w.contains("sysctl -w kernel.pty.max="), "{w}");
    }
}
