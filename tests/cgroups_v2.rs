//! cgroup v2 specifics, on top of tests/sandbox.rs (which runs unchanged on both hierarchies):
//! controllers enabled on the way down and the "no internal processes" rule, the limit files,
//! the counters behind the usage numbers, teardown of nested groups, reclaim of populated
//! leftovers, and a parent delegated by systemd (simulated: a `*.service` group with the
//! starting shell in it).
//!
//! They need a cgroup v2 host: natively, or the throwaway VM of `tests/v2-pass.sh` (CI). On a
//! v1/hybrid host each test says so and passes, unless `NSPLAY_REQUIRE_CGROUP_V2=1` (which
//! tests/v2-pass.sh sets) turns that into a failure. The output-relay test at the end checks
//! both hierarchies and runs everywhere.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{BIN, Instance, Interactive, wait_until};

const ROOT: &str = "/sys/fs/cgroup";

fn v2() -> bool {
    common::require_root();
    if common::cgroup_v2() {
        return true;
    }
    assert!(
        std::env::var_os("NSPLAY_REQUIRE_CGROUP_V2").is_none(),
        "NSPLAY_REQUIRE_CGROUP_V2 is set but /sys/fs/cgroup is not cgroup2"
    );
    eprintln!("not applicable: /sys/fs/cgroup is not cgroup v2 here (tests/v2-pass.sh runs these in a cgroup v2 VM)");
    false
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

fn words(p: impl AsRef<Path>) -> Vec<String> {
    read(p).split_whitespace().map(str::to_string).collect()
}

fn keyed(p: impl AsRef<Path>, key: &str) -> u64 {
    read(&p)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` in {}", p.as_ref().display()))
}

fn num(p: impl AsRef<Path>) -> u64 {
    read(p).parse().unwrap()
}

fn has_all_controllers(p: impl AsRef<Path>) -> bool {
    let w = words(p);
    ["memory", "pids", "cpu"].iter().all(|c| w.iter().any(|x| x == c))
}

/// Every group at or below `dir` that distributes controllers to children while holding
/// processes itself (cgroup v2 forbids this for every group but the root).
fn internal_processes(dir: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    if !read(dir.join("cgroup.subtree_control")).is_empty() && !read(dir.join("cgroup.procs")).is_empty() {
        bad.push(format!("{}: procs {:?}", dir.display(), read(dir.join("cgroup.procs"))));
    }
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            bad.extend(internal_processes(&e.path()));
        }
    }
    bad
}

/// The one session group of `inst`, once it exists.
fn session_group(inst: &Instance) -> PathBuf {
    assert!(wait_until(10, || inst.session_groups().len() == 1), "{:?}", inst.session_groups());
    inst.session_groups().remove(0)
}

#[test]
fn parent_gets_the_controllers_and_a_session_group_gets_its_limits() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--memory", "48M", "--pids", "40", "--cpu", "0.3", "--", "/bin/sh"]);
    sh.send("echo re''ady");
    sh.expect("ready\n", 20);
    let parent = Path::new(ROOT).join(&inst.parent);
    let sessions = parent.join("sessions");
    let g = session_group(&inst);
    assert_eq!(g.parent(), Some(sessions.as_path()));
    for dir in [Path::new(ROOT), parent.as_path(), sessions.as_path()] {
        assert!(has_all_controllers(dir.join("cgroup.subtree_control")), "{}", dir.display());
    }
    assert!(read(parent.join("cgroup.procs")).is_empty(), "processes in the parent");
    assert!(read(sessions.join("cgroup.procs")).is_empty(), "processes in the sessions group");
    assert!(has_all_controllers(g.join("cgroup.controllers")));
    assert_eq!(read(g.join("memory.max")), (48u64 << 20).to_string());
    if parent.join("memory.swap.max").exists() {
        assert_eq!(read(g.join("memory.swap.max")), "0");
    }
    assert_eq!(read(g.join("pids.max")), "40");
    assert_eq!(read(g.join("cpu.max")), "30000 100000");
    // Delegated to root of the session: it may make child groups, not change its limits.
    for f in ["", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] {
        assert_eq!(std::fs::metadata(g.join(f)).unwrap().uid(), inst.id_base, "{f}");
    }
    assert_eq!(std::fs::metadata(g.join("memory.max")).unwrap().uid(), 0);
    assert!(!read(g.join("cgroup.procs")).is_empty());
    assert_eq!(internal_processes(&parent), Vec::<String>::new());
    assert_eq!(internal_processes(&sessions), Vec::<String>::new());
    sh.send("exit 3");
    assert_eq!(sh.child.wait().unwrap().code(), Some(3), "{}", sh.all_output());
    assert!(inst.all_groups().is_empty());
}

#[test]
fn usage_numbers_are_the_kernel_counters_after_an_oom_kill_and_throttling() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    // Emulated guests are slow and run tests side by side: generous waits, and enough CPU for
    // the memory hog to reach the limit quickly.
    let mut sh = Interactive::start(&inst, &["--memory", "48M", "--cpu", "0.5", "--", "/bin/sh"]);
    sh.send("tail /dev/zero; echo \"oom=$?\"");
    sh.expect("oom=137\n", 180);
    sh.send("timeout 1 sh -c 'while :; do :; done'; echo sp''un");
    sh.expect("spun\n", 30);
    let g = session_group(&inst);
    let name = g.file_name().unwrap().to_str().unwrap().to_string();
    // What the API and the inspector report: the driver nsplay uses, on this session.
    let driver = nsplay_sandbox::detect_cgroups(Some(&inst.parent)).unwrap();
    assert_eq!(driver.version(), nsplay_sandbox::Version::V2);
    let cpu_before = keyed(g.join("cpu.stat"), "usage_usec");
    let u = driver.usage(&name).unwrap();
    let cpu_after = keyed(g.join("cpu.stat"), "usage_usec");
    assert!(u.oom_kills >= 1, "{u:?}");
    assert_eq!(u.oom_kills, keyed(g.join("memory.events"), "oom_kill"));
    assert_eq!(u.memory_peak_bytes, num(g.join("memory.peak")));
    assert!(u.memory_peak_bytes > 32 << 20 && u.memory_peak_bytes <= 48 << 20, "{u:?}");
    assert!(u.memory_bytes > 0 && u.memory_bytes < 48 << 20, "{u:?}");
    assert_eq!(u.pids, num(g.join("pids.current")));
    assert!(u.throttled_periods > 0, "{u:?}");
    assert_eq!(u.throttled_periods, keyed(g.join("cpu.stat"), "nr_throttled"));
    assert_eq!(u.throttled_usec, keyed(g.join("cpu.stat"), "throttled_usec"));
    assert!(cpu_before <= u.cpu_usec && u.cpu_usec <= cpu_after, "{cpu_before} {u:?} {cpu_after}");
    // A 1 s spin at 0.5 CPU (after the hog): well over 100 ms of CPU in all.
    assert!(u.cpu_usec > 100_000, "{u:?}");
    sh.send("exit");
    sh.child.wait().unwrap();
}

#[test]
fn refused_forks_are_counted_in_pids_events() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--pids", "24", "--", "/bin/sh"]);
    sh.send("sh -c 'i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done' 2>/dev/null; echo bo''mbed");
    sh.expect("bombed\n", 60);
    let g = session_group(&inst);
    let name = g.file_name().unwrap().to_str().unwrap().to_string();
    let hits = keyed(g.join("pids.events"), "max");
    // Something that refuses forks first (an RLIMIT_NPROC at or below pids.max) would leave
    // pids.max, pids.events and the inspector's count without effect.
    let nproc = read(g.join("cgroup.procs"))
        .lines()
        .filter_map(|p| {
            let limits = std::fs::read_to_string(format!("/proc/{p}/limits")).ok()?;
            let line = limits.lines().find(|l| l.starts_with("Max processes"))?.to_string();
            line.split_whitespace().nth(2)?.parse::<u64>().ok()
        })
        .min();
    assert!(
        hits >= 1,
        "pids.events: {:?}: forks were refused, but not by the cgroup (lowest RLIMIT_NPROC in it: {nproc:?})",
        read(g.join("pids.events"))
    );
    assert!(num(g.join("pids.current")) <= 24);
    let u = nsplay_sandbox::detect_cgroups(Some(&inst.parent)).unwrap().usage(&name).unwrap();
    assert_eq!(u.pids_limit_hits, hits);
    sh.send("kill -9 -1; echo cl''eared");
    sh.expect("cleared\n", 20);
    sh.send("exit");
    sh.child.wait().unwrap();
}

#[test]
fn teardown_kills_processes_in_child_groups_and_leaves_no_group() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--", "/bin/sh"]);
    sh.send("mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && mkdir -p /tmp/cg/demo/inner && echo mou''nted");
    sh.expect("mounted\n", 20);
    sh.send(
        "sh -c 'echo $$ > /tmp/cg/demo/cgroup.procs && exec sleep 1000' & \
         sh -c 'echo $$ > /tmp/cg/demo/inner/cgroup.procs && exec sleep 1000' & echo star''ted",
    );
    sh.expect("started\n", 20);
    let g = session_group(&inst);
    assert!(
        wait_until(10, || ["demo", "demo/inner"].iter().all(|d| !read(g.join(d).join("cgroup.procs")).is_empty())),
        "{}",
        sh.all_output()
    );
    let pids =
        nsplay_sandbox::detect_cgroups(Some(&inst.parent)).unwrap().pids(g.file_name().unwrap().to_str().unwrap());
    assert!(pids.len() >= 4, "{pids:?}");
    sh.send("exit 0");
    assert_eq!(sh.child.wait().unwrap().code(), Some(0), "{}", sh.all_output());
    assert!(inst.all_groups().is_empty(), "{:?}", inst.all_groups());
    assert!(!g.exists());
    for p in pids {
        assert!(!Path::new(&format!("/proc/{p}")).exists(), "pid {p} survived");
    }
    assert!(wait_until(5, || inst.processes().is_empty()), "{:?}", inst.processes());
}

/// All sessions together sit in `<parent>/sessions` under the parent limits (memory, pids, CPU
/// weight), the server outside it; a clean stop removes it with the parent.
#[test]
fn the_sessions_group_gets_the_parent_limits_and_the_server_stays_outside() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--", "/bin/sh"]);
    sh.send("echo re''ady");
    sh.expect("ready\n", 20);
    let sessions = Path::new(ROOT).join(&inst.parent).join("sessions");
    let g = session_group(&inst);
    assert_eq!(g.parent(), Some(sessions.as_path()));
    // `nsplay run` uses the server's defaults: RAM less max(1 GiB, 10 %), never below half.
    let total: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
        .map(|kib: u64| kib * 1024)
        .unwrap();
    let expected = total.saturating_sub((1u64 << 30).max(total / 100 * 10)).max(total / 2);
    assert_eq!(read(sessions.join("memory.max")), expected.to_string());
    assert_eq!(read(sessions.join("pids.max")), "16384");
    assert_eq!(read(sessions.join("cpu.weight")), "100");
    // The server is not under the sessions' limits.
    let mine = read("/proc/self/cgroup");
    let nsplay = sh.child.id();
    let server = read(format!("/proc/{nsplay}/cgroup"));
    assert!(!server.contains("/sessions"), "{server}");
    assert!(!mine.contains("/sessions"), "{mine}");
    // What the sessions use is charged there too.
    assert!(num(sessions.join("memory.current")) >= num(g.join("memory.current")));
    sh.send("exit 0");
    assert_eq!(sh.child.wait().unwrap().code(), Some(0), "{}", sh.all_output());
    assert!(!sessions.exists(), "a clean stop removes the sessions group");
}

#[test]
fn start_up_reclaims_populated_leftovers_with_nested_groups() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let (out, code) = inst.run("true");
    assert_eq!(code, 0, "{out}");
    // What a crashed nsplay (pid 999999) would leave: its parent and sessions groups with the
    // session controllers handed down (a clean stop, like the run above, removes the groups it
    // made), and in them a populated session group whose session handed the memory controller
    // to a child group, as the cgroups lesson does.
    let parent = Path::new(ROOT).join(&inst.parent);
    std::fs::create_dir_all(parent.join("sessions")).unwrap();
    std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu").unwrap();
    std::fs::write(parent.join("sessions/cgroup.subtree_control"), "+memory +pids +cpu").unwrap();
    let left = parent.join("sessions/nsplay-999999-1");
    std::fs::create_dir_all(left.join("leaf")).unwrap();
    std::fs::create_dir_all(left.join("demo")).unwrap();
    let mut sleepers: Vec<Child> = ["leaf", "demo"]
        .iter()
        .map(|d| {
            let procs = left.join(d).join("cgroup.procs");
            Command::new("sh")
                .args(["-c", "echo $$ > \"$0\" && exec sleep 1000"])
                .arg(&procs)
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    assert!(wait_until(10, || {
        ["leaf", "demo"].iter().all(|d| !read(left.join(d).join("cgroup.procs")).is_empty())
    }));
    std::fs::write(left.join("cgroup.subtree_control"), "+memory").unwrap();
    std::fs::write(left.join("demo/memory.max"), "64M").unwrap();
    let (out, code) = inst.run("echo fresh");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reclaimed cgroup nsplay-999999-1"), "{out}");
    assert!(!left.exists());
    for s in &mut sleepers {
        let status = s.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status:?}");
    }
    assert!(inst.all_groups().is_empty());
}

/// A shell placed in `group` (created if needed) that starts `nsplay run` without
/// `--cgroup-parent`, the way systemd starts `ExecStart=/bin/sh -c 'nsplay …'` in a delegated
/// service group. The session runs `cat /proc/self/cgroup`, says `ready`, and ends when a line
/// arrives on stdin.
struct ServiceShell {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<String>>,
}

impl ServiceShell {
    fn start(inst: &Instance, group: &Path) -> ServiceShell {
        std::fs::create_dir_all(group).unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", "echo $$ > \"$0/cgroup.procs\" || exit 99; \"$@\"; echo \"nsplay-exit=$?\""])
            .arg(group)
            .arg(BIN)
            .arg("run")
            .args(["--state-dir", &inst.state.path().display().to_string()])
            .args(["--id-base", &inst.id_base.to_string(), "--id-slots", &inst.id_slots.to_string()])
            .args(["--", "/bin/sh", "-c", "cat /proc/self/cgroup; echo re''ady; read line; echo bye"]);
        c.env_remove("NSPLAY_CGROUP_PARENT").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn std::io::Read + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for pipe in pipes {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    out.lock().unwrap().push_str(&format!("{}\n", line.replace('\r', "")));
                }
            });
        }
        ServiceShell { child, stdin, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&self, needle: &str) {
        assert!(wait_until(60, || self.output().contains(needle)), "no {needle:?} in:\n{}", self.output());
    }

    fn finish(mut self) -> String {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
        self.wait_for("nsplay-exit=");
        let _ = self.child.wait();
        self.output()
    }
}

/// Creates `rel` below the root unless it exists; removes what it created on drop.
struct Groups(Vec<PathBuf>);

impl Groups {
    fn make(rel: &str) -> Groups {
        let mut made = Vec::new();
        let mut dir = PathBuf::from(ROOT);
        for part in rel.split('/') {
            dir.push(part);
            // Another test may create the same ancestor (system.slice) at the same moment.
            match std::fs::create_dir(&dir) {
                Ok(()) => made.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("{}: {e}", dir.display()),
            }
        }
        Groups(made)
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            for sub in ["supervisor", "main"] {
                let _ = std::fs::remove_dir(d.join(sub));
            }
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// nsplay's groups in `dir`: session groups and their relay groups.
fn groups_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir() && e.file_name().to_string_lossy().starts_with("nsplay-"))
        .map(|e| e.path())
        .collect()
}

fn session_groups_in(dir: &Path) -> Vec<PathBuf> {
    groups_in(dir).into_iter().filter(|g| !common::is_relay_group(g)).collect()
}

#[test]
fn a_systemd_delegated_service_group_is_used_and_nsplay_moves_itself_to_a_leaf() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let unit = format!("system.slice/nsplay-test-{}.service", std::process::id());
    let _groups = Groups::make(&unit);
    let svc = Path::new(ROOT).join(&unit);
    let sh = ServiceShell::start(&inst, &svc);
    sh.wait_for("ready\n");
    // The shell and nsplay (and its spawner) moved out of the service group into a leaf.
    assert!(read(svc.join("cgroup.procs")).is_empty(), "{}", read(svc.join("cgroup.procs")));
    let supervised: Vec<i32> = read(svc.join("supervisor/cgroup.procs")).lines().map(|l| l.parse().unwrap()).collect();
    assert!(supervised.contains(&(sh.child.id() as i32)), "{supervised:?}");
    assert!(supervised.len() >= 3, "shell, nsplay, spawner: {supervised:?}");
    assert!(has_all_controllers(svc.join("cgroup.subtree_control")));
    // Sessions live in nsplay's own `sessions` group beside the server's leaf: the delegated
    // service group's own limits are systemd's and stay untouched.
    let all = svc.join("sessions");
    assert!(has_all_controllers(all.join("cgroup.subtree_control")));
    assert_eq!(read(svc.join("memory.max")), "max", "the service group's limit is not nsplay's to set");
    assert_ne!(read(all.join("memory.max")), "max");
    let sessions = session_groups_in(&all);
    assert_eq!(sessions.len(), 1, "{sessions:?}\n{}", sh.output());
    let g = &sessions[0];
    // Its relay group sits beside it, inside the delegated subtree too.
    let relay = PathBuf::from(format!("{}.relay", g.display()));
    assert_eq!(groups_in(&all).len(), 2, "{:?}", groups_in(&all));
    assert_eq!(read(relay.join("pids.max")), "16");
    assert_eq!(read(g.join("memory.max")), (256u64 << 20).to_string());
    assert!(!read(g.join("cgroup.procs")).is_empty());
    assert_eq!(internal_processes(&svc), Vec::<String>::new());
    // Inside, the session's cgroup namespace makes its own group look like the root.
    assert!(sh.output().contains("0::/\n"), "{}", sh.output());
    let out = sh.finish();
    assert!(out.contains("bye\n") && out.contains("nsplay-exit=0"), "{out}");
    assert!(!all.exists(), "the sessions group nsplay made is gone after a clean stop");
}

#[test]
fn delegate_subgroup_runs_sessions_beside_the_leaf_nsplay_was_started_in() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let unit = format!("system.slice/nsplay-test-{}-sub.service", std::process::id());
    let _groups = Groups::make(&format!("{unit}/main"));
    let svc = Path::new(ROOT).join(&unit);
    let sh = ServiceShell::start(&inst, &svc.join("main"));
    sh.wait_for("ready\n");
    assert!(read(svc.join("main/cgroup.procs")).lines().any(|l| l == sh.child.id().to_string()));
    assert!(!svc.join("supervisor").exists());
    assert_eq!(session_groups_in(&svc.join("sessions")).len(), 1, "{}", sh.output());
    assert_eq!(internal_processes(&svc), Vec::<String>::new());
    let out = sh.finish();
    assert!(out.contains("nsplay-exit=0"), "{out}");
    assert!(!svc.join("sessions").exists());
}

/// The cgroups lesson's `child-limit` step: the session moves its processes into a leaf and
/// hands `memory` to its child groups. Works because nsplay's own helpers (keeper, joiner) leave
/// the session group once what they started runs.
#[test]
fn a_session_can_hand_controllers_to_its_own_child_groups() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let (out, code) = inst.run(
        "mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && mkdir -p /tmp/cg/leaf /tmp/cg/demo && \
         for p in $(cat /tmp/cg/cgroup.procs); do echo $p > /tmp/cg/leaf/cgroup.procs; done 2>/dev/null; \
         echo +memory > /tmp/cg/cgroup.subtree_control && echo 32M > /tmp/cg/demo/memory.max && \
         sh -c 'echo $$ > /tmp/cg/demo/cgroup.procs && exec tail /dev/zero'; \
         echo \"rc=$? $(grep oom_kill /tmp/cg/demo/memory.events)\"",
    );
    assert!(out.contains("rc=137 oom_kill 1"), "{out}");
    assert_eq!(code, 0, "{out}");
    assert!(inst.all_groups().is_empty());
}

/// The cgroup path of `pid` in the hierarchy that holds the cpu controller.
fn cpu_cgroup(pid: i32) -> String {
    let text = read(format!("/proc/{pid}/cgroup"));
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let cpu =
                if common::cgroup_v2() { controllers.is_empty() } else { controllers.split(',').any(|c| c == "cpu") };
            cpu.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no cpu cgroup for {pid}: {text}"))
}

fn parent_of(pid: i32) -> i32 {
    read(format!("/proc/{pid}/status"))
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no parent for {pid}"))
}

/// Reads `file` of the group at `path` (a /proc/<pid>/cgroup path) in the hierarchy of
/// `controller` (v1; on v2 the one hierarchy).
fn group_file(path: &str, controller: &str, file: &str) -> String {
    let base = if common::cgroup_v2() { PathBuf::from(ROOT) } else { Path::new(ROOT).join(controller) };
    read(base.join(path.trim_start_matches('/')).join(file))
}

/// A terminal's output relay (its joiner, the shell's parent) runs in the session's relay group
/// `<session>.relay`, beside the session's group: with limits of its own (CPU quota equal to the
/// session's, a higher weight, pids and memory caps), outside the session's cgroup namespace,
/// where the session can neither see nor touch it; it keeps passing output on after the session
/// reorganised its own groups (on v2: the cgroups lesson), and it goes with the session. Runs on
/// both hierarchies.
#[tokio::test(flavor = "multi_thread")]
async fn the_output_relay_runs_in_the_sessions_relay_group() {
    common::require_root();
    let server = common::Server::start(&["--warm-pool", "0", "--cpu", "0.7"]);
    let (s, mut t) = common::term::shell(&server).await;
    t.line("sleep 4242 & echo st''arted").await;
    t.expect("started\r\n", 20).await;
    t.expect("# ", 20).await;
    assert!(wait_until(10, || server.inst.pids_running("sleep 4242").len() == 1));
    let sleeper = server.inst.pids_running("sleep 4242")[0];
    let shell = parent_of(sleeper);
    let relay = parent_of(shell);
    assert_eq!(read(format!("/proc/{shell}/comm")), "bash");
    assert_eq!(read(format!("/proc/{relay}/comm")), "nsplay", "the shell's parent is its relay");
    // Before the session moves its processes into child groups of its own.
    let (_, groups) = server.inst.footprint(sleeper);
    assert!(groups.iter().any(|g| common::is_relay_group(g)), "{groups:?}");
    let session = cpu_cgroup(shell);
    assert_eq!(cpu_cgroup(relay), format!("{session}.relay"));
    let relay_group = format!("{session}.relay");
    if common::cgroup_v2() {
        assert_eq!(group_file(&relay_group, "cpu", "cpu.max"), "70000 100000");
        assert_eq!(group_file(&relay_group, "cpu", "cpu.weight"), "1000");
        assert_eq!(group_file(&relay_group, "memory", "memory.max"), (64u64 << 20).to_string());
        // Owned by host root: the session's root (its own uid range) cannot change it.
        let owner = std::fs::metadata(Path::new(ROOT).join(relay_group.trim_start_matches('/'))).unwrap().uid();
        assert_eq!(owner, 0);
    } else {
        assert_eq!(group_file(&relay_group, "cpu", "cpu.cfs_quota_us"), "70000");
        assert_eq!(group_file(&relay_group, "cpu", "cpu.shares"), "10240");
        assert_eq!(group_file(&relay_group, "memory", "memory.limit_in_bytes"), (64u64 << 20).to_string());
    }
    assert_eq!(group_file(&relay_group, "pids", "pids.max"), "16");
    // Not in the session's own accounting; the API reports it apart.
    let procs = group_file(&session, "cpu", "cgroup.procs");
    assert!(!procs.lines().any(|l| l.trim() == relay.to_string()), "{procs}");
    t.line("seq 40000; cat /proc/self/cgroup").await;
    let out = t.expect("# ", 30).await;
    assert!(!out.contains(".relay"), "the session sees its relay group: {out}");
    let id = s["id"].as_str().unwrap();
    let usage: serde_json::Value =
        reqwest::get(format!("{}/api/sessions/{id}", server.base)).await.unwrap().json().await.unwrap();
    assert!(usage["usage"]["relay_cpu_usec"].as_u64().is_some_and(|u| u > 0), "{usage}");
    if common::cgroup_v2() {
        let out = t
            .cmd_wait(
                "mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && mkdir -p /tmp/cg/leaf /tmp/cg/demo && \
                 for p in $(cat /tmp/cg/cgroup.procs); do echo $p > /tmp/cg/leaf/cgroup.procs; done 2>/dev/null; \
                 echo +memory > /tmp/cg/cgroup.subtree_control && echo 32M > /tmp/cg/demo/memory.max && echo handed''-out; \
                 ls /tmp/cg",
                60,
            )
            .await;
        assert!(out.contains("handed-out"), "{out}");
        assert!(!out.contains("relay"), "the session sees its relay group: {out}");
        // The relay still passes output on after the session reorganised its groups.
        t.line("echo still''-here").await;
        t.expect("still-here\r\n", 20).await;
    }
    let r = reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let left: Vec<_> = groups.iter().filter(|g| g.exists()).collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(wait_until(5, || std::fs::metadata(format!("/proc/{relay}")).is_err()), "the relay outlived its session");
}

/// Issue 15, item 4 on v2: the deep tree is built in the session group itself (see
/// `common::DEEP_CGROUP_TREE`); the session's teardown removes it and the tree is bounded.
#[test]
fn a_deep_cgroup_tree_of_long_names_is_bounded_and_removed_with_the_session() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let (out, code) = inst.run(common::DEEP_CGROUP_TREE);
    println!("{out}");
    common::assert_deep_tree_bounded(&out, code);
    assert!(wait_until(5, || inst.all_groups().is_empty()), "{:?}", inst.all_groups());
}

/// Issue 15, item 1 on v2: a session hands its controllers to child groups and freezes the
/// `terminals` leaf its next terminal's helper joins. That helper then stalls until the spawner
/// gives up on it (its deadline): meanwhile another visitor's session and terminal must come up,
/// not wait behind it.
#[test]
fn a_frozen_terminals_leaf_stalls_only_its_own_sessions_request() {
    if !v2() {
        return;
    }
    let inst = Instance::new();
    let (sandbox, _events, limits) = common::library_sandbox(&inst, true);
    let sandbox = Arc::new(sandbox);
    let attacker = Arc::new(sandbox.create("freezer", &limits).unwrap());
    let script = "mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && mkdir -p /tmp/cg/leaf /tmp/cg/terminals && \
         for p in $(cat /tmp/cg/cgroup.procs); do echo $p > /tmp/cg/leaf/cgroup.procs; done 2>/dev/null; \
         echo +pids > /tmp/cg/cgroup.subtree_control && echo 1 > /tmp/cg/terminals/cgroup.freeze && \
         echo RESULT frozen yes; exec sleep 600";
    let argv = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let term = sandbox.open_terminal(&attacker, 0, argv(script), (80, 24), false).unwrap();
    let out = common::read_until(&term.master, "RESULT frozen yes", 30);
    println!("{out}");
    assert!(out.contains("RESULT frozen yes"), "{out}");
    let stalled_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stalled = {
        let (sandbox, attacker, done) = (sandbox.clone(), attacker.clone(), stalled_done.clone());
        std::thread::spawn(move || {
            let r = sandbox.open_terminal(&attacker, 1, argv("echo second"), (80, 24), false).map(drop);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        })
    };
    // Let that request reach the spawner first (the old spawner then waited on it alone).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let other = sandbox.create("other", &limits).expect("another visitor's session starts");
    let term = sandbox.open_terminal(&other, 0, argv("echo hello from the other session"), (80, 24), false).unwrap();
    let out = common::read_until(&term.master, "hello from the other session", 30);
    assert!(out.contains("hello from the other session"), "{out}");
    assert!(
        !stalled_done.load(std::sync::atomic::Ordering::SeqCst),
        "the other session came up only after the stalled request was answered"
    );
    let e = stalled.join().unwrap().expect_err("the frozen helper's request fails at its deadline");
    println!("the stalled request: {e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    sandbox.destroy(&other).unwrap();
    sandbox.destroy(&attacker).unwrap();
    assert!(wait_until(10, || inst.processes().is_empty()), "{:?}", inst.processes());
    assert!(wait_until(5, || inst.all_groups().is_empty()), "{:?}", inst.all_groups());
}
