//! `nsplay check-host`: what this host offers of what nsplay needs, each item probed the way a
//! session uses it (not guessed from the kernel version), with the fix for what is missing.
//!
//! Most items read `/proc` and `/sys`. The namespace items are tried for real in a throw-away
//! child: it unshares the eight namespace kinds a session gets, has its user namespace mapped to
//! the first session id range, and as root there mounts a tmpfs, an overlayfs and a devpts with
//! `max=` on a scratch directory, creates a nested user namespace (the user-namespace lesson)
//! and installs the session's seccomp filter; it reports each step on a pipe and exits. The
//! cgroup items create and remove one probe group `nsplay-check-<pid>`. Nothing else is
//! written. Call [`check`] from a single-threaded process (the binary does it from `main`).

use std::ffi::CString;
use std::fs;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{ForkResult, Pid};
use serde::Serialize;

use crate::cgroups::{self, v2};
use crate::idmap::IDS_PER_SESSION;
use crate::{consts, harden, namespaces, seccomp, sys};

/// What nsplay needs of the host for one configuration.
#[derive(Debug, Clone)]
pub struct HostCheckConfig {
    pub id_base: u32,
    pub id_slots: u32,
    pub cgroup_parent: Option<String>,
    pub max_sessions: usize,
    pub pids: u64,
    /// RLIMIT_NOFILE of every process in a session.
    pub open_files: u64,
    pub nested_userns: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and working.
    Ok,
    /// nsplay runs, but something is missing or weaker (a lesson, a bound).
    Warn,
    /// nsplay cannot run (or not safely) until it is fixed.
    Fail,
}

/// One probed item.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// A stable key (`user_namespaces`, `cgroup_version`, …), for scripts and the JSON output.
    pub item: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when nothing is to be done).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Finding {
    fn ok(item: &'static str, detail: impl Into<String>) -> Finding {
        Finding { item, status: Status::Ok, detail: detail.into(), fix: String::new() }
    }
    fn warn(item: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { item, status: Status::Warn, detail: detail.into(), fix: fix.into() }
    }
    fn fail(item: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { item, status: Status::Fail, detail: detail.into(), fix: fix.into() }
    }
}

/// Probes the host; one finding per item, in a fixed order.
pub fn check(cfg: &HostCheckConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    out.push(if root {
        Finding::ok("root", "running as root")
    } else {
        Finding::fail("root", "not running as root", "run nsplay (and this check) as root, e.g. with sudo")
    });
    out.push(Finding::ok(
        "kernel",
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
    ));
    out.extend(user_namespace_sysctls());
    if root {
        out.extend(namespace_probe(cfg));
    }
    out.push(pidfd());
    out.extend(cgroup_findings(cfg, root));
    out.push(id_ranges(cfg));
    out.push(ptys(cfg));
    out.extend(open_files(cfg));
    out
}

fn read_sysctl(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The sysctls that switch user namespaces off, or off for processes without host privileges
/// (every process inside a session is one of those: nested namespaces).
fn user_namespace_sysctls() -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(match read_sysctl("/proc/sys/user/max_user_namespaces") {
        Some(0) => Finding::fail(
            "max_user_namespaces",
            "user.max_user_namespaces is 0: user namespaces are off",
            "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ to keep it)",
        ),
        Some(n) => Finding::ok("max_user_namespaces", format!("user.max_user_namespaces = {n}")),
        None => Finding::fail(
            "max_user_namespaces",
            "/proc/sys/user/max_user_namespaces is missing: the kernel has no user namespaces",
            "use a kernel built with CONFIG_USER_NS=y",
        ),
    });
    // Debian's patch: 0 refuses user namespaces to processes without CAP_SYS_ADMIN on the host.
    if let Some(v) = read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") {
        out.push(if v == 0 {
            Finding::warn(
                "unprivileged_userns_clone",
                "kernel.unprivileged_userns_clone = 0: nested user namespaces inside sessions are refused",
                "sysctl -w kernel.unprivileged_userns_clone=1 for the user-namespace lesson, or serve with nested_userns = false",
            )
        } else {
            Finding::ok("unprivileged_userns_clone", format!("kernel.unprivileged_userns_clone = {v}"))
        });
    }
    // Ubuntu 23.10+: AppArmor refuses them to unconfined processes without CAP_SYS_ADMIN.
    if let Some(v) = read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        out.push(if v != 0 {
            Finding::warn(
                "apparmor_restrict_unprivileged_userns",
                format!(
                    "kernel.apparmor_restrict_unprivileged_userns = {v}: AppArmor refuses nested user namespaces inside sessions"
                ),
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 for the user-namespace lesson, or serve with nested_userns = false",
            )
        } else {
            Finding::ok("apparmor_restrict_unprivileged_userns", "kernel.apparmor_restrict_unprivileged_userns = 0")
        });
    }
    out
}

/// Runs [`child_probe`] in a forked child and turns its report into findings.
fn namespace_probe(cfg: &HostCheckConfig) -> Vec<Finding> {
    let scratch = std::env::temp_dir().join(format!("nsplay-check-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&scratch) {
        return vec![Finding::fail(
            "namespaces",
            format!("cannot create the scratch directory {}: {e}", scratch.display()),
            "make the temporary directory writable (TMPDIR)",
        )];
    }
    let report = run_child(cfg, &scratch);
    let _ = fs::remove_dir(&scratch);
    let report = match report {
        Ok(r) => r,
        Err(e) => return vec![Finding::fail("namespaces", format!("the probe child failed: {e}"), "")],
    };
    let step = |name: &str| report.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut out = Vec::new();
    out.push(match step("unshare") {
        Some("ok") => Finding::ok("namespaces", "all eight kinds (user mnt pid net uts ipc cgroup time) unshare together"),
        Some(e) => {
            let missing: Vec<&str> = namespaces::KINDS.iter().filter(|(n, _)| step(&format!("kind_{n}")) != Some("ok")).map(|(n, _)| *n).collect();
            Finding::fail(
                "namespaces",
                format!("unsharing the eight namespace kinds failed ({e}); missing: {}", missing.join(" ")),
                "use a kernel (5.6 or newer) with CONFIG_USER_NS, CONFIG_PID_NS, CONFIG_NET_NS, CONFIG_UTS_NS, CONFIG_IPC_NS, CONFIG_CGROUPS and CONFIG_TIME_NS",
            )
        }
        None => Finding::fail("namespaces", "the probe child reported nothing", ""),
    });
    let time = step("kind_time");
    out.push(if time == Some("ok") {
        Finding::ok("time_namespace", "time namespaces work")
    } else {
        Finding::fail(
            "time_namespace",
            format!("unshare(CLONE_NEWTIME): {}", time.unwrap_or("not tried")),
            "use Linux 5.6 or newer with CONFIG_TIME_NS=y",
        )
    });
    let mapped = step("id_map");
    out.push(if mapped == Some("ok") {
        Finding::ok(
            "id_map",
            format!(
                "a user namespace maps to host ids {}..{}",
                cfg.id_base,
                cfg.id_base as u64 + IDS_PER_SESSION as u64
            ),
        )
    } else {
        Finding::fail(
            "id_map",
            format!("writing uid_map/gid_map: {}", mapped.unwrap_or("not tried")),
            "check that nothing (an LSM) refuses root writing /proc/<pid>/uid_map",
        )
    });
    let tri = |item: &'static str, key: &str, what: &str, fail_fix: &str, fatal: bool| match step(key) {
        Some("ok") => Finding::ok(item, format!("{what} works")),
        other => {
            let detail = format!("{what}: {}", other.unwrap_or("not tried"));
            if fatal { Finding::fail(item, detail, fail_fix) } else { Finding::warn(item, detail, fail_fix) }
        }
    };
    out.push(tri(
        "tmpfs_in_userns",
        "tmpfs",
        "mounting a tmpfs in the session's user namespace",
        "use a kernel that allows tmpfs mounts in user namespaces (any 4.x or newer does)",
        true,
    ));
    out.push(tri(
        "overlayfs_in_userns",
        "overlay",
        "mounting an overlayfs in a user namespace",
        "Linux 5.11 or newer allows it; load the module (modprobe overlay, and `overlay` in /etc/modules-load.d/). Without it, learners cannot try overlay mounts; nsplay itself runs",
        false,
    ));
    out.push(tri(
        "devpts",
        "devpts",
        &format!("a private devpts instance with max={}", consts::SESSION_PTYS),
        "use a kernel with CONFIG_UNIX98_PTYS and multiple devpts instances (any 4.7 or newer)",
        true,
    ));
    if cfg.nested_userns {
        out.push(tri(
            "nested_user_namespaces",
            "nested_userns",
            "a user namespace inside the session's (the user-namespace lesson)",
            "see unprivileged_userns_clone / apparmor_restrict_unprivileged_userns above, or serve with nested_userns = false",
            false,
        ));
    }
    out.push(tri(
        "seccomp",
        "seccomp",
        "installing the session's seccomp filter",
        "use a kernel with CONFIG_SECCOMP_FILTER=y; nsplay does not start a program without its filter",
        true,
    ));
    out
}

/// Forks the probe child, maps its user namespace, and collects `step result` lines.
fn run_child(cfg: &HostCheckConfig, scratch: &Path) -> std::io::Result<Vec<(String, String)>> {
    let (report_r, report_w) = nix::unistd::pipe()?;
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (go_r, go_w) = nix::unistd::pipe()?;
    match sys::fork_single_threaded()? {
        ForkResult::Child => {
            drop((report_r, ready_r, go_w));
            let code = child_probe(cfg, scratch, report_w, ready_w, go_r);
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop((report_w, ready_w, go_r));
            let result = parent_side(cfg, child, report_r, ready_r, go_w);
            let _ = harden::wait_exit(child);
            result
        }
    }
}

fn parent_side(
    cfg: &HostCheckConfig,
    child: Pid,
    report_r: OwnedFd,
    ready_r: OwnedFd,
    go_w: OwnedFd,
) -> std::io::Result<Vec<(String, String)>> {
    let deadline = Duration::from_secs(10);
    let mut map_result = "not tried".to_string();
    if harden::wait_readable(ready_r.as_fd(), deadline)? {
        let mut byte = [0u8; 1];
        let mut ready = fs::File::from(ready_r);
        if ready.read(&mut byte)? == 1 {
            let line = format!("0 {} {IDS_PER_SESSION}\n", cfg.id_base);
            let write = |f: &str, v: &str| fs::write(format!("/proc/{child}/{f}"), v);
            map_result = match write("setgroups", "deny")
                .and_then(|_| write("uid_map", &line))
                .and_then(|_| write("gid_map", &line))
            {
                Ok(()) => "ok".into(),
                Err(e) => e.to_string(),
            };
        }
    }
    let mut go = fs::File::from(go_w);
    let _ = go.write_all(if map_result == "ok" { b"1" } else { b"0" });
    drop(go);
    let mut lines = vec![("id_map".to_string(), map_result)];
    if !harden::wait_readable(report_r.as_fd(), deadline)? {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        return Err(std::io::Error::other("the probe child did not answer within 10 s"));
    }
    // The child writes its whole report, then exits (closing the pipe).
    for line in std::io::BufReader::new(fs::File::from(report_r)).lines() {
        let line = line?;
        if let Some((k, v)) = line.split_once(' ') {
            lines.push((k.to_string(), v.to_string()));
        }
    }
    Ok(lines)
}

/// The child's steps; every result goes on `report` as `step ok` or `step <error>`.
fn child_probe(cfg: &HostCheckConfig, scratch: &Path, report: OwnedFd, ready: OwnedFd, go: OwnedFd) -> i32 {
    let mut report = fs::File::from(report);
    let mut say = |k: &str, r: Result<(), String>| {
        let v = r.err().unwrap_or_else(|| "ok".into()).replace('\n', " ");
        let _ = writeln!(report, "{k} {v}");
    };
    let _ = harden::die_with_parent();
    let all = namespaces::all_flags();
    let together = unshare(all).map_err(|e| e.to_string());
    for (name, flag) in &namespaces::KINDS {
        // Only when they fail together: each kind alone, in a grandchild of its own (a second
        // unshare of the pid or time kind in one process is refused).
        let alone = if together.is_ok() { Ok(()) } else { unshare_alone(*flag) };
        say(&format!("kind_{name}"), alone);
    }
    if together.is_err() {
        let _ = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS);
    }
    say("unshare", together);
    let _ = fs::File::from(ready).write_all(b"1");
    let mut byte = [0u8; 1];
    let mapped = fs::File::from(go).read(&mut byte).is_ok_and(|n| n == 1) && byte[0] == b'1';
    if !mapped {
        return 1;
    }
    if harden::become_root_inside().is_err() {
        say("tmpfs", Err("cannot become root in the new user namespace".into()));
        return 1;
    }
    let _ = mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>);
    let tmpfs = mount(Some("tmpfs"), scratch, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("size=1m"))
        .map_err(|e| e.to_string());
    let tmpfs_ok = tmpfs.is_ok();
    say("tmpfs", tmpfs);
    if tmpfs_ok {
        let dir = |d: &str| -> PathBuf { scratch.join(d) };
        let made =
            ["l", "u", "w", "m", "pts"].iter().try_for_each(|d| fs::create_dir(dir(d))).map_err(|e| e.to_string());
        let opts =
            format!("lowerdir={},upperdir={},workdir={}", dir("l").display(), dir("u").display(), dir("w").display());
        say(
            "overlay",
            made.clone().and_then(|_| {
                mount(Some("overlay"), &dir("m"), Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
                    .map_err(|e| e.to_string())
            }),
        );
        let pts = format!("newinstance,ptmxmode=0666,mode=0620,max={}", consts::SESSION_PTYS);
        say(
            "devpts",
            made.and_then(|_| {
                mount(
                    Some("devpts"),
                    &dir("pts"),
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some(pts.as_str()),
                )
                .map_err(|e| e.to_string())
            }),
        );
    }
    if cfg.nested_userns {
        // As a session's programs do it: root of a non-initial user namespace.
        say("nested_userns", unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| e.to_string()));
    }
    say(
        "seccomp",
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string()).and_then(|_| {
            seccomp::install(&seccomp::Options { nested_userns: cfg.nested_userns }).map_err(|e| e.to_string())
        }),
    );
    0
}

/// `unshare(flag)` in a throw-away grandchild; its exit code is the errno.
fn unshare_alone(flag: CloneFlags) -> Result<(), String> {
    match sys::fork_single_threaded() {
        Ok(ForkResult::Child) => std::process::exit(match unshare(flag) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }),
        Ok(ForkResult::Parent { child }) => match harden::wait_exit(child) {
            0 => Ok(()),
            e => Err(nix::errno::Errno::from_raw(e).to_string()),
        },
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn pidfd() -> Finding {
    match sys::pidfd_open(nix::unistd::getpid()) {
        Ok(_) => Finding::ok("pidfd", "pidfd_open works"),
        Err(e) => Finding::fail(
            "pidfd",
            format!("pidfd_open: {e}"),
            "use Linux 5.3 or newer (nsplay names every helper by pidfd)",
        ),
    }
}

fn cgroup_findings(cfg: &HostCheckConfig, root: bool) -> Vec<Finding> {
    let unified = |p: &str| {
        nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    if unified("/sys/fs/cgroup") {
        let mut out = vec![Finding::ok("cgroup_version", "v2 (the unified hierarchy)")];
        out.extend(cgroup_v2(cfg, root));
        out
    } else if Path::new("/sys/fs/cgroup/memory").is_dir() {
        let hybrid = unified("/sys/fs/cgroup/unified");
        let mut out = vec![Finding::ok(
            "cgroup_version",
            if hybrid {
                "v1, hybrid (controllers on v1, a controller-less cgroup2 at /sys/fs/cgroup/unified)"
            } else {
                "v1 (legacy)"
            },
        )];
        if !hybrid {
            out.push(Finding::warn(
                "cgroup_unified",
                "no cgroup2 mount at /sys/fs/cgroup/unified: `mount -t cgroup2` inside sessions (the cgroup lessons) finds nothing",
                "boot with systemd.unified_cgroup_hierarchy=1 (v2), or mount cgroup2 at /sys/fs/cgroup/unified",
            ));
        }
        out.extend(cgroup_v1(cfg, root));
        out
    } else {
        vec![Finding::fail(
            "cgroup_version",
            "no cgroup filesystem at /sys/fs/cgroup",
            "mount cgroup2 at /sys/fs/cgroup (or the v1 controllers memory, pids, cpu, cpuacct, freezer)",
        )]
    }
}

fn cgroup_v1(cfg: &HostCheckConfig, root: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    use cgroups_rs::fs::Controllers;
    let hier = cgroups_rs::fs::hierarchies::V1::new();
    let missing: Vec<&str> = [
        ("memory", Controllers::Mem),
        ("pids", Controllers::Pids),
        ("cpu", Controllers::Cpu),
        ("cpuacct", Controllers::CpuAcct),
        ("freezer", Controllers::Freezer),
    ]
    .into_iter()
    .filter(|(_, c)| hier.get_mount_point(c.clone()).is_none())
    .map(|(n, _)| n)
    .collect();
    out.push(if missing.is_empty() {
        Finding::ok("cgroup_controllers", "memory pids cpu cpuacct freezer are mounted")
    } else {
        Finding::fail(
            "cgroup_controllers",
            format!("missing v1 controllers: {}", missing.join(" ")),
            "mount them under /sys/fs/cgroup (and enable them in the kernel: CONFIG_MEMCG, CONFIG_CGROUP_PIDS, CONFIG_CGROUP_SCHED, CONFIG_CGROUP_CPUACCT, CONFIG_CGROUP_FREEZER)",
        )
    });
    if !root {
        return out;
    }
    let parent = cfg.cgroup_parent.as_deref().unwrap_or("nsplay").trim_matches('/');
    let base = Path::new("/sys/fs/cgroup/memory");
    let probe = base.join(format!(
        "{}{}",
        cgroups::PREFIX.trim_end_matches('-'),
        format_args!("-check-{}", std::process::id())
    ));
    match fs::create_dir(&probe) {
        Ok(()) => {
            let has = |f: &str| probe.join(f).exists();
            out.push(if has("memory.memsw.limit_in_bytes") {
                Finding::ok("memory_swap_accounting", "memory.memsw.* present: swap is limited with memory")
            } else {
                Finding::warn(
                    "memory_swap_accounting",
                    "no memory.memsw.*: a session may use swap beyond its memory limit",
                    "boot with swapaccount=1 (or run without swap)",
                )
            });
            out.push(match fs::write(probe.join("memory.kmem.tcp.limit_in_bytes"), "1073741824") {
                Ok(()) => Finding::ok(
                    "tcp_buffer_accounting",
                    "memory.kmem.tcp.limit_in_bytes works: a session's TCP buffers are charged to it and bounded",
                ),
                Err(e) => Finding::warn(
                    "tcp_buffer_accounting",
                    format!("memory.kmem.tcp.limit_in_bytes: {e}: TCP buffers are not charged to sessions"),
                    "use cgroup v2 (socket memory is charged there), or a kernel with CONFIG_MEMCG_KMEM",
                ),
            });
            let _ = fs::remove_dir(&probe);
        }
        Err(e) => out.push(Finding::fail(
            "cgroup_writable",
            format!("cannot create a group in {}: {e}", base.display()),
            "nsplay must be able to create groups below the v1 controllers (read-write cgroup mounts, as root)",
        )),
    }
    out.push(Finding::warn(
        "udp_buffer_accounting",
        "cgroup v1 does not charge UDP (or other non-TCP) socket buffers to a session: they are bounded only per socket (net.core.rmem_max) and host-wide (net.ipv4.udp_mem)",
        format!(
            "prefer cgroup v2; on v1 keep net.core.rmem_max/wmem_max small (the kernel's default 212992) and net.ipv4.udp_mem well below RAM (docs/security.md, Round two item 6); sessions group: {parent}"
        ),
    ));
    out
}

fn cgroup_v2(cfg: &HostCheckConfig, root: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    let words = |p: &Path| {
        fs::read_to_string(p).map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>()).unwrap_or_default()
    };
    let available = words(&base.join("cgroup.controllers"));
    let missing: Vec<&str> = v2::CONTROLLERS.iter().copied().filter(|c| !available.iter().any(|a| a == c)).collect();
    out.push(if missing.is_empty() {
        Finding::ok("cgroup_controllers", format!("the root offers {}", available.join(" ")))
    } else {
        Finding::fail(
            "cgroup_controllers",
            format!("the root's cgroup.controllers lacks {}", missing.join(" ")),
            "enable them in the kernel (CONFIG_MEMCG, CONFIG_CGROUP_PIDS, CONFIG_CGROUP_SCHED) and do not disable them on the kernel command line (cgroup_disable=)",
        )
    });
    let own = cgroups::own_v2_cgroup().unwrap_or_default();
    let (parent, placement) = match v2::planned_parent(cfg.cgroup_parent.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            out.push(Finding::fail("cgroup_delegation", e.to_string(), "give --cgroup-parent a plain path"));
            return out;
        }
    };
    let under_service = own.rsplit('/').next().is_some_and(|n| n.ends_with(".service"))
        || own.rsplit('/').nth(1).is_some_and(|n| n.ends_with(".service"));
    let delegated_flag = |g: &str| {
        let path = CString::new(base.join(g.trim_matches('/')).into_os_string().into_encoded_bytes()).ok()?;
        ["trusted.delegate", "user.delegate"]
            .iter()
            .find_map(|n| sys::getxattr(&path, &CString::new(*n).ok()?).ok())
            .map(|v| v == b"1")
    };
    out.push(match placement {
        v2::Placement::Delegated => Finding::ok(
            "cgroup_delegation",
            format!(
                "sessions go below the group systemd delegated: {parent}{}",
                if delegated_flag(&parent) == Some(true) { " (marked delegated)" } else { "" }
            ),
        ),
        v2::Placement::Explicit => Finding::ok("cgroup_delegation", format!("sessions go below --cgroup-parent {parent}")),
        v2::Placement::Default if under_service => Finding::warn(
            "cgroup_delegation",
            format!("running in the systemd service group {own} without a delegated subtree: nsplay would make /{parent} at the root, outside what systemd manages for it"),
            "add Delegate=yes to the unit (deploy/nsplay.service), or give --cgroup-parent",
        ),
        v2::Placement::Default => Finding::ok("cgroup_delegation", format!("sessions go below /{parent} (not under a systemd service)")),
    });
    if !root {
        return out;
    }
    // Probe: can a group be made where the parent goes, and will it get the controllers? The
    // parent's own subtree_control is what nsplay enables at start; read what it may enable.
    let parent_dir = base.join(&parent);
    let (where_, offered) = if parent_dir.is_dir() {
        (parent_dir.clone(), words(&parent_dir.join("cgroup.controllers")))
    } else {
        let up = parent_dir.parent().unwrap_or(base).to_path_buf();
        let sub = words(&up.join("cgroup.subtree_control"));
        let ctl = words(&up.join("cgroup.controllers"));
        (up, if up_is_root(&parent_dir) { ctl } else { sub })
    };
    let lacking: Vec<&str> = v2::CONTROLLERS.iter().copied().filter(|c| !offered.iter().any(|a| a == c)).collect();
    let probe = where_.join(format!("nsplay-check-{}", std::process::id()));
    out.push(match fs::create_dir(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
            if lacking.is_empty() {
                Finding::ok("cgroup_writable", format!("groups can be made in {} and get {}", where_.display(), v2::CONTROLLERS.join(" ")))
            } else {
                Finding::fail(
                    "cgroup_writable",
                    format!("{} does not offer {} to its children", where_.display(), lacking.join(" ")),
                    "enable them in every ancestor's cgroup.subtree_control (systemd: Delegate=yes on the unit)",
                )
            }
        }
        Err(e) => Finding::fail(
            "cgroup_writable",
            format!("cannot create a group in {}: {e}", where_.display()),
            "give nsplay a writable subtree: systemd Delegate=yes, a container with --cgroupns=private and a read-write /sys/fs/cgroup, or --cgroup-parent",
        ),
    });
    out.push(Finding::ok(
        "socket_buffer_accounting",
        "cgroup v2 charges every socket's buffers to the session's memory group",
    ));
    out
}

fn up_is_root(dir: &Path) -> bool {
    dir.parent() == Some(Path::new("/sys/fs/cgroup"))
}

/// The session id ranges must be free: no host user, group, subordinate range or process in them.
fn id_ranges(cfg: &HostCheckConfig) -> Finding {
    let item = "id_ranges";
    if let Err(e) = crate::IdAllocator::new(cfg.id_base, cfg.id_slots) {
        return Finding::fail(item, e.to_string(), "choose id_base and id_slots so the ranges fit below 2^32");
    }
    let lo = cfg.id_base as u64;
    let hi = lo + cfg.id_slots as u64 * IDS_PER_SESSION as u64;
    let inside = |id: u64| id >= lo && id < hi;
    let mut found = Vec::new();
    for (file, what) in [("/etc/passwd", "user"), ("/etc/group", "group")] {
        for line in fs::read_to_string(file).unwrap_or_default().lines() {
            let mut f = line.split(':');
            let (name, id) = (f.next().unwrap_or(""), f.nth(1).and_then(|s| s.parse::<u64>().ok()));
            if id.is_some_and(inside) {
                found.push(format!("{what} {name} ({})", id.unwrap_or(0)));
            }
        }
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        for line in fs::read_to_string(file).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let [name, start, count] = f[..]
                && let (Ok(s), Ok(c)) = (start.parse::<u64>(), count.parse::<u64>())
                && s < hi
                && s + c > lo
            {
                found.push(format!("{file} range of {name} ({s}+{c})"));
            }
        }
    }
    let mut procs = 0;
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())) {
            let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
            if uid.is_some_and(inside) {
                procs += 1;
            }
        }
    }
    let range = format!("{lo}..{hi} ({} ranges of {IDS_PER_SESSION})", cfg.id_slots);
    if !found.is_empty() {
        Finding::fail(
            item,
            format!(
                "host ids in the session range {range}: {}",
                found.into_iter().take(5).collect::<Vec<_>>().join(", ")
            ),
            "choose another id_base (--id-base), so that root in a session is no host user",
        )
    } else if procs > 0 {
        // Sessions of two users of one range could reach each other's files and processes.
        Finding::fail(
            item,
            format!(
                "{procs} processes run with uids in {range}: another nsplay (or a container runtime) uses these ids"
            ),
            "give each nsplay on this host its own id_base (--id-base), or stop the other one",
        )
    } else {
        Finding::ok(item, format!("{range} is free"))
    }
}

fn ptys(cfg: &HostCheckConfig) -> Finding {
    let read = |f: &str| read_sysctl(&format!("/proc/sys/kernel/pty/{f}"));
    match crate::pty_budget_warning(cfg.max_sessions) {
        Some(w) => Finding::warn(
            "ptys",
            w,
            format!(
                "sysctl -w kernel.pty.max={}",
                cfg.max_sessions as u64 * consts::SESSION_PTYS as u64 + read("reserve").unwrap_or(1024) as u64
            ),
        ),
        None => Finding::ok(
            "ptys",
            format!(
                "kernel.pty.max {} (in use {}) holds {} sessions of {} ptys",
                read("max").unwrap_or(0),
                read("nr").unwrap_or(0),
                cfg.max_sessions,
                consts::SESSION_PTYS
            ),
        ),
    }
}

fn open_files(cfg: &HostCheckConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let file_max = read_sysctl("/proc/sys/fs/file-max").unwrap_or(i64::MAX) as u64;
    let in_use = fs::read_to_string("/proc/sys/fs/file-nr")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let worst = cfg.max_sessions as u64 * (cfg.pids + 1) * cfg.open_files;
    out.push(if worst > file_max / 2 {
        Finding::warn(
            "file_max",
            format!(
                "fs.file-max {file_max} ({in_use} open): {} sessions × {} processes × {} files could take {worst}; admission refuses new sessions when the table fills",
                cfg.max_sessions,
                cfg.pids + 1,
                cfg.open_files
            ),
            format!("sysctl -w fs.file-max={} (or lower max_sessions or pids)", worst * 2),
        )
    } else {
        Finding::ok("file_max", format!("fs.file-max {file_max} ({in_use} open) holds the sessions' worst case {worst}"))
    });
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
    out.push(if hard < 16384 {
        Finding::warn(
            "nofile",
            format!("RLIMIT_NOFILE soft {soft}, hard {hard}: the server (which raises its soft limit to the hard one) runs out of descriptors at a few thousand terminals and connections"),
            "LimitNOFILE=65536 in the unit (deploy/nsplay.service), or ulimit -Hn 65536 before starting",
        )
    } else {
        Finding::ok("nofile", format!("RLIMIT_NOFILE soft {soft}, hard {hard} (the server raises soft to hard)"))
    });
    out
}
