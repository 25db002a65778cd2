//! `nsplay check-host` on the machine it runs on: the answers it gives are compared with what the
//! test finds out itself (the cgroup hierarchy from statfs and /proc/mounts, the kernel's own
//! files), on this cgroup v1/hybrid host and, through tests/v2-pass.sh, in the cgroup v2 VM.
//! A setting nsplay cannot run with makes it exit 1 with the failing item and its fix.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{BIN, Instance};
use serde_json::Value;

/// Runs check-host with `extra` flags (as JSON); returns the exit code, `can_run` and each
/// item's (status, detail, fix).
fn check(extra: &[&str]) -> (i32, bool, BTreeMap<String, (String, String, String)>) {
    let inst = Instance::new();
    let mut args = vec!["check-host".to_string(), "--json".to_string()];
    args.extend(with(inst.serve_args(), extra));
    let child = Command::new(BIN)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("check-host printed no JSON ({e}): {stdout} / {}", String::from_utf8_lossy(&out.stderr))
    });
    let mut items = BTreeMap::new();
    for f in v["findings"].as_array().unwrap() {
        let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
        items.insert(s("item"), (s("status"), s("detail"), s("fix")));
    }
    // Nothing of the probes is left behind: no scratch directory (named after this run's pid:
    // another test's check-host may be running beside it), no probe group.
    let scratch = std::env::temp_dir().join(format!("nsplay-check-{pid}"));
    assert!(!scratch.exists(), "check-host left its scratch directory {}", scratch.display());
    (out.status.code().unwrap_or(-1), v["can_run"].as_bool().unwrap(), items)
}

/// `args` with each `--flag value` pair of `extra` replacing the same flag's.
fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    for pair in extra.chunks(2) {
        match args.iter().position(|a| a == pair[0]) {
            Some(i) => args[i + 1] = pair[1].to_string(),
            None => args.extend(pair.iter().map(|s| s.to_string())),
        }
    }
    args
}

fn status<'a>(items: &'a BTreeMap<String, (String, String, String)>, item: &str) -> &'a str {
    &items.get(item).unwrap_or_else(|| panic!("no finding {item}: {items:#?}")).0
}

#[test]
fn check_host_reports_this_hosts_kernel_and_cgroups_as_they_are() {
    let (code, can_run, items) = check(&[]);
    // This host runs every other integration test, so nsplay can run on it.
    assert_eq!((code, can_run), (0, true), "{items:#?}");
    for item in
        ["root", "namespaces", "time_namespace", "id_map", "tmpfs_in_userns", "devpts", "seccomp", "pidfd", "id_ranges"]
    {
        assert_eq!(status(&items, item), "ok", "{item}: {:?}", items[item]);
    }
    // The kernel's own answers, read here independently.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(items["kernel"].1, release.trim());
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    assert_eq!(items["max_user_namespaces"].1, format!("user.max_user_namespaces = {}", userns.trim()));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let version = &items["cgroup_version"].1;
    if common::cgroup_v2() {
        assert!(version.starts_with("v2"), "{version}");
        for item in ["cgroup_controllers", "cgroup_delegation", "cgroup_writable", "socket_buffer_accounting"] {
            assert_eq!(status(&items, item), "ok", "{item}: {:?}", items[item]);
        }
        assert!(!items.contains_key("tcp_buffer_accounting"), "a v1 item on v2: {items:#?}");
    } else {
        let hybrid = mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup/unified"));
        assert_eq!(version.starts_with("v1, hybrid"), hybrid, "{version}");
        assert_eq!(status(&items, "cgroup_controllers"), "ok");
        // The kernel offers the tcp kmem limit (checked by hand in a group of this test's own).
        let probe =
            std::path::Path::new("/sys/fs/cgroup/memory").join(format!("nsplay-test-tcp-{}", std::process::id()));
        std::fs::create_dir(&probe).unwrap();
        let tcp = std::fs::write(probe.join("memory.kmem.tcp.limit_in_bytes"), "1048576").is_ok();
        std::fs::remove_dir(&probe).unwrap();
        assert_eq!(status(&items, "tcp_buffer_accounting"), if tcp { "ok" } else { "warn" });
        // UDP buffers are never charged on v1: a warning with its fix, always.
        assert_eq!(status(&items, "udp_buffer_accounting"), "warn");
        assert!(items["udp_buffer_accounting"].2.contains("net.core.rmem_max"));
    }
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    assert!(items["nofile"].1.contains(&format!("soft {soft}, hard {hard}")), "{:?}", items["nofile"]);
    assert_eq!(status(&items, "nofile"), if hard < 16384 { "warn" } else { "ok" });
}

#[test]
fn check_host_fails_with_the_fix_when_nsplay_cannot_run() {
    // A process already runs with a uid of the session range (as another nsplay's session
    // would): sessions of both could reach each other's files.
    let inst = Instance::new();
    let uid = (inst.id_base + 7).to_string();
    let mut squatter = Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "sleep", "30"])
        .spawn()
        .expect("setpriv (util-linux)");
    assert!(common::wait_until(5, || common::host_processes().iter().any(|(_, u)| u.to_string() == uid)));
    let base = inst.id_base.to_string();
    let (code, can_run, items) = check(&["--id-base", &base]);
    let mut args = vec!["check-host".to_string()];
    args.extend(with(inst.serve_args(), &[]));
    let out = Command::new(BIN).args(&args).output().unwrap();
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!((code, can_run), (1, false), "{items:#?}");
    assert_eq!(status(&items, "id_ranges"), "fail");
    assert!(items["id_ranges"].1.contains("1 processes run with uids"), "{:?}", items["id_ranges"]);
    assert!(items["id_ranges"].2.contains("--id-base"), "{:?}", items["id_ranges"]);
    // Text output: the failing item, its fix, and the verdict.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.lines().any(|l| l.starts_with("FAIL id_ranges")), "{text}");
    assert!(text.contains("fix: give each nsplay"), "{text}");
    assert!(text.contains("nsplay cannot run on this host"), "{text}");
    // The same settings with the process gone: the range is free again.
    let (code, _, items) = check(&["--id-base", &base]);
    assert_eq!((code, status(&items, "id_ranges")), (0, "ok"), "{items:#?}");
}
