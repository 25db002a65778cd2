//! Shared helpers of the integration tests: an isolated nsplay "instance" (own state dir, cgroup
//! parent and id range, so tests run in parallel without reclaiming each other's sessions) and
//! host-side views of what a session left behind.
#![allow(dead_code)]

pub mod escapes;
pub mod term;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nsplay");
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Fails (never skips) when the tests cannot do what they must.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the integration tests need root (they create namespaces, cgroups and mounts): run tests/run.sh as root"
    );
}

pub fn cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

pub struct Instance {
    pub state: tempfile::TempDir,
    pub parent: String,
    pub id_base: u32,
    pub id_slots: u32,
}

impl Instance {
    pub fn new() -> Instance {
        require_root();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let slot = (pid.wrapping_mul(31).wrapping_add(n * 7919)) % 6000;
        Instance {
            state: tempfile::tempdir().unwrap(),
            parent: format!("nsplay-test-{pid}-{n}"),
            id_base: 1_500_000_000 + slot * 65536 * 4,
            id_slots: 4,
        }
    }

    /// An instance with room for `slots` sessions, for the few tests that need more than 4: its
    /// ids lie above those of [`Instance::new`] and of `tests/bench_smoke.rs` (one such test
    /// runs at a time per test process).
    pub fn with_slots(slots: u32) -> Instance {
        assert!(slots <= 64);
        let mut inst = Instance::new();
        inst.id_base = 3_700_000_000 + (std::process::id() % 8) * 64 * 65536;
        inst.id_slots = slots;
        inst
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--state-dir".into(),
            self.state.path().display().to_string(),
            "--cgroup-parent".into(),
            self.parent.clone(),
            "--id-base".into(),
            self.id_base.to_string(),
            "--id-slots".into(),
            self.id_slots.to_string(),
        ]
    }

    /// [`Instance::args`] for `nsplay serve`, with the classroom's database in the state dir
    /// (never the host's `/var/lib/nsplay`).
    pub fn serve_args(&self) -> Vec<String> {
        let mut a = self.args();
        a.extend(["--data-dir".into(), self.state.path().join("data").display().to_string()]);
        a
    }

    pub fn run_cmd(&self, extra: &[&str], script: &str) -> Command {
        let mut c = Command::new(BIN);
        c.arg("run").args(self.args()).args(extra).args(["--", "sh", "-c", script]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// Runs `script` with sh in a sandbox; returns (stdout+stderr as text, exit code).
    pub fn run(&self, script: &str) -> (String, i32) {
        self.run_with(&[], script)
    }

    pub fn run_with(&self, extra: &[&str], script: &str) -> (String, i32) {
        let out: Output = self.run_cmd(extra, script).output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (text.replace('\r', ""), out.status.code().unwrap_or(-1))
    }

    /// The session groups' parent in each hierarchy the tests look at.
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        if cgroup_v2() {
            vec![Path::new("/sys/fs/cgroup").join(&self.parent)]
        } else {
            ["memory", "pids", "cpu", "cpuacct", "freezer", "unified"]
                .iter()
                .map(|c| Path::new("/sys/fs/cgroup").join(c).join(&self.parent))
                .collect()
        }
    }

    /// The group holding every session of this instance (`<parent>/sessions`), in each
    /// hierarchy the tests look at.
    pub fn sessions_dirs(&self) -> Vec<PathBuf> {
        self.parent_dirs().into_iter().map(|d| d.join("sessions")).collect()
    }

    /// Every nsplay group present now under this instance's parent: session groups and their
    /// relay groups.
    pub fn all_groups(&self) -> Vec<PathBuf> {
        self.sessions_dirs()
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter(|e| e.file_name().to_string_lossy().starts_with("nsplay-"))
            .map(|e| e.path())
            .collect()
    }

    /// Session groups present now under this instance's parent.
    pub fn session_groups(&self) -> Vec<PathBuf> {
        self.all_groups().into_iter().filter(|g| !is_relay_group(g)).collect()
    }

    /// Relay groups (`<session>.relay`) present now under this instance's parent.
    pub fn relay_groups(&self) -> Vec<PathBuf> {
        self.all_groups().into_iter().filter(|g| is_relay_group(g)).collect()
    }

    /// What belongs to the session of host process `pid`: its uid range and its cgroup
    /// directories (its relay group's too). With a warm pool other sessions of the instance exist at the same time;
    /// checks that one session left nothing look at exactly these.
    pub fn footprint(&self, pid: i32) -> (std::ops::Range<u32>, Vec<PathBuf>) {
        let uid = self
            .processes()
            .into_iter()
            .find(|(p, _)| *p == pid)
            .unwrap_or_else(|| panic!("process {pid} is not in this instance's id ranges"))
            .1;
        let lo = self.id_base + (uid - self.id_base) / 65536 * 65536;
        let groups: Vec<PathBuf> = self
            .session_groups()
            .into_iter()
            .filter(|g| {
                std::fs::read_to_string(g.join("cgroup.procs"))
                    .map(|procs| procs.lines().any(|l| l.trim() == pid.to_string()))
                    .unwrap_or(false)
            })
            .collect();
        let relays = self.relay_groups().into_iter().filter(|r| {
            let name = r.file_name().unwrap().to_string_lossy().trim_end_matches(".relay").to_string();
            groups.iter().any(|g| g.file_name().unwrap().to_string_lossy() == name)
        });
        let groups = groups.iter().cloned().chain(relays).collect();
        (lo..lo + 65536, groups)
    }

    /// Host pids of this instance's processes whose command line is exactly `args`.
    pub fn pids_running(&self, args: &str) -> Vec<i32> {
        self.processes()
            .into_iter()
            .filter(|(pid, _)| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == args)
                    .unwrap_or(false)
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Host processes whose uid lies in this instance's id ranges.
    pub fn processes(&self) -> Vec<(i32, u32)> {
        let lo = self.id_base;
        let hi = self.id_base + self.id_slots * 65536;
        host_processes().into_iter().filter(|(_, uid)| *uid >= lo && *uid < hi).collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        for d in self.parent_dirs() {
            for leaf in ["supervisor", "sessions"] {
                if d.join(leaf).exists() {
                    let _ = std::fs::remove_dir(d.join(leaf));
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// (pid, real uid) of every live host process (zombies hold nothing and are left out).
pub fn host_processes() -> Vec<(i32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        if status.lines().any(|l| l.starts_with("State:") && l.contains("zombie")) {
            continue;
        }
        if let Some(uid) =
            status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next()?.parse().ok())
        {
            out.push((pid, uid));
        }
    }
    out
}

/// Whether `group` is a session's relay group (`<session>.relay`, beside the session's group).
pub fn is_relay_group(group: &Path) -> bool {
    group.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".relay"))
}

pub fn host_mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}

/// Polls `cond` until it holds or `secs` pass.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Appends everything `pipe` yields to `into` (carriage returns dropped) on a thread of its own.
fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
        }
    });
}

/// A sandboxed interactive shell driven line by line, the way a person types: each line is
/// sent only after the previous output arrived, so nothing depends on type-ahead.
pub struct Interactive {
    pub child: Child,
    stdin: std::process::ChildStdin,
    out: Arc<Mutex<String>>,
    seen: usize,
}

impl Interactive {
    pub fn start(inst: &Instance, extra: &[&str]) -> Interactive {
        let mut c = Command::new(BIN);
        c.arg("run").args(inst.args()).args(extra);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), out.clone());
        Interactive { child, stdin, out, seen: 0 }
    }

    pub fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for `needle` in output that arrived since the last successful expect; returns
    /// that output.
    pub fn expect(&mut self, needle: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(pos) = out[self.seen..].find(needle) {
                    let chunk = out[self.seen..self.seen + pos + needle.len()].to_string();
                    self.seen += pos + needle.len();
                    return chunk;
                }
                if start.elapsed() > Duration::from_secs(secs) {
                    panic!("timed out waiting for {needle:?}; output so far:\n{}", &out[..]);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn all_output(&self) -> String {
        self.out.lock().unwrap().clone()
    }
}

/// A running `nsplay serve` on 127.0.0.1:0 with its own instance settings.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: String,
    pub inst: Instance,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_in(Instance::new(), extra)
    }

    /// SIGKILLs this server (no clean-up at all) and starts a new one with the same instance
    /// settings, as an operator restarting after a crash would.
    pub fn crash_and_restart(mut self, extra: &[&str]) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let inst = std::mem::replace(&mut self.inst, Instance::new());
        Server::start_in(inst, extra)
    }

    pub fn start_in(inst: Instance, extra: &[&str]) -> Server {
        Server::start_wrapped(inst, &[], extra)
    }

    /// Starts the server under a program that execs it (such as `prlimit --nofile=N:N`), so
    /// the server's pid is the child's.
    pub fn start_wrapped(inst: Instance, wrapper: &[&str], extra: &[&str]) -> Server {
        let mut c = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        // The classroom's database beside the state: a crash-and-restart finds it again.
        c.args(["serve", "--listen", "127.0.0.1:0"]).args(inst.serve_args()).args(extra);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().unwrap(), log.clone());
        let mut line = String::new();
        use std::io::BufRead;
        stdout.read_line(&mut line).unwrap();
        let (scheme, addr) = line
            .trim()
            .strip_prefix("nsplay listening on ")
            .and_then(|a| a.split_once("://"))
            .unwrap_or_else(|| panic!("server did not start: {line:?} {}", log.lock().unwrap()));
        let (scheme, addr) = (scheme.to_string(), addr.to_string());
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
        });
        Server { child, base: format!("{scheme}://{addr}"), addr, inst, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM and waits; returns the exit code and how long the shutdown took.
    pub fn stop(&mut self) -> (Option<i32>, Duration) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `signal` and waits; returns the exit code and how long the shutdown took.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, start.elapsed())
    }

    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SIGINT: an orderly stop without SIGTERM's drain (which waits for the learners).
            self.stop_with(nix::sys::signal::Signal::SIGINT);
        }
    }
}

/// Issue 15, item 4: inside its delegated cgroup2 group (v2, or the cgroup2 group of a hybrid
/// host), a session nests 18 groups with 250-character names (their host path is far past
/// PATH_MAX), then tries to make 400 groups side by side. Prints `RESULT` lines: the group's
/// nesting bounds, the depth and the width it reached.
pub const DEEP_CGROUP_TREE: &str = "set -e; mkdir -p /tmp/cg; mountpoint -q /tmp/cg || mount -t cgroup2 none /tmp/cg; \
    echo RESULT max.depth $(cat /tmp/cg/cgroup.max.depth); echo RESULT max.descendants $(cat /tmp/cg/cgroup.max.descendants); \
    exec python3 -c \"
import os
os.chdir('/tmp/cg')
i = 0
while i < 18:
    try:
        os.mkdir('d' * 250)
        os.chdir('d' * 250)
        i += 1
    except OSError as e:
        print('RESULT deep-error', e.strerror)
        break
print('RESULT depth', i)
os.chdir('/tmp/cg')
os.mkdir('wide')
j = 0
while j < 400:
    try:
        os.mkdir('wide/%d' % j)
        j += 1
    except OSError as e:
        print('RESULT wide-error', e.strerror)
        break
print('RESULT wide', j)
\"";

/// What [`DEEP_CGROUP_TREE`]'s run must show: the teardown succeeded, the delegated group had
/// its nesting bounds, the deep chain was built, and the width stopped at the bound.
pub fn assert_deep_tree_bounded(out: &str, code: i32) {
    let r = results(out);
    assert_eq!(code, 0, "the session's teardown failed: {out}");
    assert_eq!(r["max.depth"], "32", "{out}");
    assert_eq!(r["max.descendants"], "256", "{out}");
    assert_eq!(r["depth"], "18", "the tree was not built: {out}");
    let wide: u32 = r["wide"].parse().unwrap();
    assert!(wide < 256, "{wide} groups side by side: {out}");
}

/// `RESULT <label> <value>` lines of a script's output, as a map.
pub fn results(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// A library-level sandbox on `inst` (for switches `nsplay run` has no flag for, and for
/// terminals that join a running session), its events, and the server's default limits.
pub fn library_sandbox(
    inst: &Instance,
    nested_userns: bool,
) -> (nsplay_sandbox::Sandbox, std::sync::mpsc::Receiver<nsplay_sandbox::Event>, nsplay_sandbox::Limits) {
    use nsplay_sandbox::{Limits, Sandbox, SandboxConfig};
    let cfg = SandboxConfig {
        id_base: inst.id_base,
        id_slots: inst.id_slots,
        cgroup_parent: Some(inst.parent.clone()),
        state_dir: inst.state.path().to_path_buf(),
        sessions: nsplay_sandbox::SessionsLimits { memory_bytes: 2 << 30, pids: 4096 },
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (mut sandbox, _) = Sandbox::start(&cfg, std::path::Path::new(BIN), move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    sandbox.set_nested_userns(nested_userns);
    let limits = Limits { memory_bytes: 256 << 20, pids: 128, cpu: 0.5, disk_bytes: 64 << 20, shm_bytes: 16 << 20 };
    (sandbox, rx, limits)
}

/// Reads a terminal's master until `needle` has appeared (at most `secs`); returns what it read.
pub fn read_until(master: &std::os::fd::OwnedFd, needle: &str, secs: u64) -> String {
    use std::os::fd::AsFd;
    nsplay_sandbox::term::set_nonblocking(master).unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(needle) && Instant::now() < deadline {
        let mut fds = [nix::poll::PollFd::new(master.as_fd(), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16));
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}
