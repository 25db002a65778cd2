//! Integration tests of the sandbox core through `nsplay run` (as root). Each test uses its own
//! instance (state dir, cgroup parent, id range) so they run in parallel.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Instance, Interactive, host_mount_count, wait_until};

fn host_ns() -> BTreeMap<String, String> {
    ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]
        .iter()
        .map(|k| (k.to_string(), std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap().display().to_string()))
        .collect()
}

#[test]
fn every_namespace_differs_from_the_host_and_lo_is_the_only_link() {
    let inst = Instance::new();
    let (out, code) = inst.run("for k in cgroup ipc mnt net pid time user uts; do echo \"$k=$(readlink /proc/self/ns/$k)\"; done; ip -o link show");
    assert_eq!(code, 0, "{out}");
    let host = host_ns();
    for (kind, host_link) in &host {
        let line =
            out.lines().find(|l| l.starts_with(&format!("{kind}="))).unwrap_or_else(|| panic!("no {kind} in {out}"));
        let inside = line.split_once('=').unwrap().1;
        assert!(inside.starts_with(&format!("{kind}:[")), "{line}");
        assert_ne!(inside, host_link, "{kind} namespace is the host's");
    }
    let links: Vec<&str> = out.lines().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(links[0].contains(" lo: ") && links[0].contains("UP"), "{out}");
}

#[test]
fn seed_walkthrough_unshare_uts_runs_verbatim() {
    let before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--hostname", "sess-a", "--", "/bin/sh"]);
    sh.send("echo re''ady");
    sh.expect("ready\n", 20);
    sh.send("unshare -u /bin/sh");
    sh.send("hostname my-new-hostname");
    // Consume the terminal's echo of the command first: only real output can match next.
    sh.expect("hostname my-new-hostname\n", 10);
    sh.send("uname -n");
    sh.expect("my-new-hostname\n", 10);
    sh.send("exit");
    sh.send("uname -n");
    sh.expect("sess-a\n", 10);
    sh.send("exit 7");
    let status = sh.child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "{}", sh.all_output());
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), before);
}

#[test]
fn ps_shows_only_the_session_and_pid_1_is_nsplay_init() {
    let inst = Instance::new();
    let (out, code) = inst.run("ps -eo pid=,comm=");
    assert_eq!(code, 0, "{out}");
    let procs: Vec<(i32, String)> = out
        .lines()
        .filter_map(|l| {
            let (p, c) = l.trim().split_once(' ')?;
            Some((p.parse().ok()?, c.trim().to_string()))
        })
        .collect();
    assert_eq!(procs.first(), Some(&(1, "nsplay-init".to_string())), "{out}");
    let names: Vec<&str> = procs.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(names, ["nsplay-init", "sh", "ps"], "{out}");
}

#[test]
fn files_do_not_cross_between_host_and_sandbox() {
    let inst = Instance::new();
    let marker = format!("/tmp/nsplay-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let inside = format!("/tmp/nsplay-inside-{}", std::process::id());
    let (out, code) = inst.run(&format!(
        "test -e {marker} && echo VISIBLE; echo data > {inside} && echo WROTE; ls /etc/shadow /etc/machine-id 2>&1"
    ));
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(code, 2, "{out}"); // ls of missing files
    assert!(!out.contains("VISIBLE"), "{out}");
    assert!(out.contains("WROTE"), "{out}");
    assert!(!std::path::Path::new(&inside).exists(), "a file written inside appeared on the host");
    assert!(out.contains("/etc/shadow': No such file"), "{out}");
}

#[test]
fn root_inside_is_an_unprivileged_uid_on_the_host() {
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--", "/bin/sh"]);
    sh.send("id -u; cat /proc/self/uid_map; sleep 1000 &");
    let out = sh.expect("65536\n", 20);
    assert!(out.contains("0\n"), "{out}");
    assert!(out.contains(&inst.id_base.to_string()), "{out}");
    // Every process of the session, helpers included, runs as an id of the session's range.
    assert!(wait_until(5, || !inst.processes().is_empty()));
    let groups = inst.session_groups();
    assert!(!groups.is_empty());
    // The shell forks `sleep` only after it printed the map: wait for it.
    let read = || std::fs::read_to_string(groups[0].join("cgroup.procs")).unwrap();
    wait_until(5, || read().lines().count() >= 3);
    let procs = read();
    let pids: Vec<i32> = procs.lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.len() >= 3, "{procs}");
    for pid in pids {
        // Gone since cgroup.procs was read (`cat` above may still have been exiting).
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let uid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no Uid in /proc/{pid}/status: {status}"));
        assert!(uid >= inst.id_base && uid < inst.id_base + 65536, "pid {pid} runs as host uid {uid}");
    }
    sh.send("exit 0");
    assert_eq!(sh.child.wait().unwrap().code(), Some(0));
}

#[test]
fn usr_stays_read_only_and_global_sysctls_stay_out_of_reach() {
    let inst = Instance::new();
    let (out, _) = inst.run(
        "mount -o remount,rw /usr && echo REMOUNTED; touch /usr/x 2>/dev/null && echo WROTE_USR; \
         umount /proc/sys && echo UNMASKED; echo 3 > /proc/sys/vm/drop_caches && echo DROPPED; \
         echo 1 > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ; echo done",
    );
    assert!(out.contains("done"), "{out}");
    assert!(!out.contains("REMOUNTED") && !out.contains("WROTE_USR"), "{out}");
    assert!(out.contains("UNMASKED"), "the /proc/sys protection is meant to be unlocked: {out}");
    assert!(!out.contains("DROPPED") && !out.contains("SYSRQ"), "{out}");
}

#[test]
fn nested_namespaces_of_every_lesson_work_inside() {
    let inst = Instance::new();
    let (out, code) = inst.run(
        "unshare -p -f --mount-proc ps -eo pid=,comm= | tr -s ' ' | sed 's/^ //' | head -1; \
         unshare -m sh -c 'mount -t tmpfs none /mnt && touch /mnt/x && echo TMPFS_OK'; \
         unshare -n sh -c 'mount -t sysfs none /sys && ls /sys/class/net'; \
         unshare -U -r id -u; echo end",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 ps"), "nested pid namespace: {out}");
    assert!(out.contains("TMPFS_OK"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "lo"), "nested sysfs: {out}");
    assert!(out.lines().any(|l| l.trim() == "0"), "nested user namespace: {out}");
}

#[test]
fn memory_hog_is_oom_killed_and_the_shell_survives() {
    let inst = Instance::new();
    let (out, code) = inst.run_with(&["--memory", "64M"], "tail /dev/zero; echo \"survived $?\"");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("survived 137"), "{out}");
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    let inst = Instance::new();
    // The inner shell dies at the first refused fork; the outer one only uses builtins from then
    // on (a fork of its own would be refused too while the sleeps hold the pids).
    let (out, code) = inst.run_with(
        &["--pids", "32"],
        "sh -c 'i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); echo $i > /tmp/n; done' 2>/dev/null; \
         read n < /tmp/n; echo \"started=$n\"; kill -9 -1; echo alive",
    );
    assert_eq!(code, 0, "{out}");
    let started: usize =
        out.lines().find_map(|l| l.strip_prefix("started=")).and_then(|n| n.trim().parse().ok()).unwrap_or(999);
    assert!(started < 32, "pids.max 32 let {started} sleeps start: {out}");
    assert!(started > 10, "{out}");
    assert!(out.contains("alive"), "{out}");
}

#[test]
fn disk_fills_up_at_the_cap() {
    let inst = Instance::new();
    let (out, _) =
        inst.run_with(&["--disk", "16M"], "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; ls -l /tmp/fill");
    assert!(out.contains("No space left on device"), "{out}");
    let size: u64 = out
        .lines()
        .find(|l| l.contains("/tmp/fill") && l.starts_with('-'))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap();
    assert!(size <= 16 << 20, "{size}");
}

#[test]
fn cpu_spinner_is_throttled() {
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--cpu", "0.2", "--", "/bin/sh"]);
    sh.send("timeout 2 sh -c 'while :; do :; done'; echo sp''un");
    sh.expect("spun\n", 30);
    let group = inst.session_groups().into_iter().find(|g| g.join("cpu.stat").exists()).expect("cpu group");
    let stat = std::fs::read_to_string(group.join("cpu.stat")).unwrap();
    let throttled: u64 = stat.lines().find_map(|l| l.strip_prefix("nr_throttled ")).unwrap().trim().parse().unwrap();
    assert!(throttled > 0, "{stat}");
    sh.send("exit");
    sh.child.wait().unwrap();
}

#[test]
fn nothing_is_left_after_the_command_exits_or_is_killed() {
    let inst = Instance::new();
    let mounts = host_mount_count();
    let (out, code) = inst.run("sleep 1000 & setsid nohup sleep 1000 >/dev/null 2>&1 & echo started; exit 5");
    assert_eq!(code, 5, "{out}");
    assert!(wait_until(5, || inst.processes().is_empty()), "processes left: {:?}", inst.processes());
    assert!(inst.all_groups().is_empty(), "{:?}", inst.all_groups());
    assert_eq!(host_mount_count(), mounts);
    // The parent groups it created at start are gone too: the host is as it was.
    let parents: Vec<_> = inst.parent_dirs().into_iter().filter(|d| d.exists()).collect();
    assert!(parents.is_empty(), "parent cgroups left: {parents:?}");
}

#[test]
fn sigkill_of_nsplay_run_leaves_no_process_and_the_next_start_reclaims_the_rest() {
    let inst = Instance::new();
    let mut sh = Interactive::start(&inst, &["--", "/bin/sh"]);
    sh.send("sleep 1000 & echo u''p");
    sh.expect("up\n", 20);
    assert!(!inst.processes().is_empty());
    sh.child.kill().unwrap();
    sh.child.wait().unwrap();
    assert!(wait_until(10, || inst.processes().is_empty()), "survivors: {:?}", inst.processes());
    // The group may be left (empty); a new start reclaims it and says so.
    let leftovers = inst.session_groups();
    let (out, code) = inst.run("echo fresh");
    assert_eq!(code, 0, "{out}");
    if !leftovers.is_empty() {
        assert!(out.contains("reclaimed cgroup"), "{out}");
    }
    assert!(inst.all_groups().is_empty());
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn clear_errors_for_bad_input() {
    let inst = Instance::new();
    let (out, code) = inst.run_with(&["--memory", "1M"], "true");
    assert_ne!(code, 0);
    assert!(out.contains("memory 1 MiB is out of range"), "{out}");
    let (out, code) = inst.run_with(&["--hostname", "bad host"], "true");
    assert_ne!(code, 0);
    assert!(out.contains("invalid hostname"), "{out}");
    assert!(inst.all_groups().is_empty());
    assert!(inst.parent_dirs().iter().all(|d| !d.exists()), "a failed start leaves its parent cgroups");
    let (out, code) = inst.run_with(&[], "exec /does/not/exist");
    assert_eq!(code, 127, "{out}");
}

#[test]
fn without_root_it_says_so_in_one_line_and_leaves_nothing() {
    let inst = Instance::new();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", common::BIN, "run"])
        .args(inst.args())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("must run as root"), "{err}");
    assert!(inst.all_groups().is_empty());
}

/// Checks enter a session's namespaces by a pid read earlier from its cgroup; by the time they
/// do, that process may have exited and a host process may have its pid. The namespace is
/// opened only for a process of the session's uid range, and only while the pidfd taken first
/// says that very process still lives.
#[test]
fn a_checks_namespace_is_opened_only_for_a_live_process_of_the_sessions_ids() {
    common::require_root();
    let base = 1_500_000_000u32;
    let spawn = |uid: Option<u32>| {
        let mut cmd = std::process::Command::new("setpriv");
        if let Some(u) = uid {
            cmd.args(["--reuid", &u.to_string(), "--regid", &u.to_string(), "--clear-groups"]);
        }
        cmd.args(["sleep", "30"]).spawn().unwrap()
    };
    let mut inside = spawn(Some(base + 1000));
    let mut host = spawn(None);
    let pid = |c: &std::process::Child| c.id() as i32;
    assert!(wait_until(5, || std::fs::read_to_string(format!("/proc/{}/comm", pid(&inside)))
        .is_ok_and(|c| c.trim() == "sleep")));
    assert!(nsplay_sandbox::open_session_namespace(pid(&inside), "uts", base).is_some(), "the session's own process");
    assert!(
        nsplay_sandbox::open_session_namespace(pid(&host), "uts", base).is_none(),
        "a host process (root) was let in"
    );
    assert!(
        nsplay_sandbox::open_session_namespace(pid(&inside), "uts", base + 65536).is_none(),
        "another session's range"
    );
    assert!(nsplay_sandbox::open_session_namespace(pid(&inside), "nonsense", base).is_none());
    let _ = inside.kill();
    let _ = inside.wait();
    assert!(nsplay_sandbox::open_session_namespace(pid(&inside), "uts", base).is_none(), "a pid whose process is gone");
    let _ = host.kill();
    let _ = host.wait();
}
