//! Operations: session lifecycle (idle timeout, maximum age, grace), admission (caps, rate
//! limit, trusted proxies), crash recovery, configuration errors and metrics.

mod common;

use std::time::Duration;

use common::term::{Term, attach, shell};
use common::{BIN, Server, host_mount_count, wait_until};
use serde_json::Value;

async fn create_from(server: &Server, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(format!("{}/api/sessions", server.base));
    if let Some(f) = forwarded_for {
        r = r.header("x-forwarded-for", f);
    }
    r.send().await.unwrap()
}

async fn status_of(server: &Server, id: &str) -> u16 {
    reqwest::get(format!("{}/api/sessions/{id}", server.base)).await.unwrap().status().as_u16()
}

async fn metrics(server: &Server) -> String {
    reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_end_but_attached_ones_stay() {
    let server = Server::start(&["--idle-timeout", "2s"]);
    let idle: Value = create_from(&server, None).await.json().await.unwrap();
    let watched: Value = create_from(&server, None).await.json().await.unwrap();
    let _t = attach(&server, &watched).await;
    let idle_id = idle["id"].as_str().unwrap().to_string();
    let mut gone = false;
    for _ in 0..60 {
        if status_of(&server, &idle_id).await == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "an idle session outlived its 2 s idle timeout");
    assert_eq!(status_of(&server, watched["id"].as_str().unwrap()).await, 200, "an attached session was ended");
    // The 404 comes as soon as the session leaves the table; the counter moves once its
    // teardown finished.
    let mut m = String::new();
    for _ in 0..50 {
        m = metrics(&server).await;
        if m.contains("nsplay_sessions_ended_total{reason=\"idle\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(m.contains("nsplay_sessions_ended_total{reason=\"idle\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_warns_then_ends_the_session() {
    let server = Server::start(&["--max-age", "4s"]);
    let (s, mut t) = shell(&server).await;
    assert!(t.pump_until(10, |t| t.closed.is_some()).await, "the session outlived its maximum age");
    let notices: Vec<&str> =
        t.controls.iter().filter(|c| c["type"] == "notice").filter_map(|c| c["message"].as_str()).collect();
    assert!(notices.iter().any(|n| n.contains("ends in")), "{notices:?}");
    assert!(t.controls.iter().any(|c| c["type"] == "exit"), "{:?}", t.controls);
    assert_eq!(status_of(&server, s["id"].as_str().unwrap()).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_cap_and_rate_limit_answer_429_with_retry_after() {
    let server =
        Server::start(&["--max-sessions-per-client", "2", "--create-per-minute", "60", "--create-burst", "10"]);
    assert_eq!(create_from(&server, None).await.status(), 201);
    assert_eq!(create_from(&server, None).await.status(), 201);
    let r = create_from(&server, None).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "too_many_sessions");
    assert!(v["message"].as_str().unwrap().to_lowercase().contains("try again in"), "{v}");

    let server = Server::start(&["--create-per-minute", "1", "--create-burst", "1"]);
    assert_eq!(create_from(&server, None).await.status(), 201);
    let r = create_from(&server, None).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "rate_limited");
    let m = metrics(&server).await;
    assert!(m.contains("nsplay_refusals_total{reason=\"rate_limited\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    let proxied = Server::start(&["--trusted-proxies", "127.0.0.1", "--max-sessions-per-client", "1"]);
    assert_eq!(create_from(&proxied, Some("198.51.100.1")).await.status(), 201);
    assert_eq!(create_from(&proxied, Some("198.51.100.1")).await.status(), 429);
    assert_eq!(create_from(&proxied, Some("198.51.100.2")).await.status(), 201, "another client behind the proxy");

    let direct = Server::start(&["--max-sessions-per-client", "1"]);
    assert_eq!(create_from(&direct, Some("198.51.100.1")).await.status(), 201);
    assert_eq!(create_from(&direct, Some("198.51.100.2")).await.status(), 429, "a spoofed header must not help");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_leaves_no_process_and_the_next_start_reclaims_the_rest() {
    let mounts = host_mount_count();
    let server = Server::start(&[]);
    for _ in 0..2 {
        let (_, mut t) = shell(&server).await;
        t.line("sleep 1000 & setsid nohup sleep 1000 >/dev/null 2>&1 &").await;
        t.expect("# ", 10).await;
    }
    // Everything of the crashed server: its sessions and its warm pool.
    let before: Vec<i32> = server.inst.processes().iter().map(|(pid, _)| *pid).collect();
    assert!(before.len() >= 6, "{before:?}");
    let old_groups = format!("nsplay-{}-", server.pid());
    assert!(server.inst.session_groups().iter().any(|g| g.ends_with(format!("{old_groups}1"))));
    let server = server.crash_and_restart(&[]);
    // The new server builds its own warm pool in the same id ranges: what must be gone is
    // exactly what the crashed one left.
    let survivors = || -> Vec<i32> {
        let now: Vec<i32> = server.inst.processes().iter().map(|(pid, _)| *pid).collect();
        before.iter().copied().filter(|p| now.contains(p)).collect()
    };
    assert!(wait_until(10, || survivors().is_empty()), "survivors: {:?}", survivors());
    let old: Vec<_> = server
        .inst
        .all_groups()
        .into_iter()
        .filter(|g| g.file_name().unwrap().to_string_lossy().starts_with(&old_groups))
        .collect();
    assert!(old.is_empty(), "{old:?}");
    assert!(wait_until(5, || server.log.lock().unwrap().contains("reclaimed")), "{}", server.log.lock().unwrap());
    assert_eq!(host_mount_count(), mounts);
}

/// A teardown the kernel refuses for a while (here: a mount on the session's cgroup directory,
/// so rmdir answers EBUSY) is logged and tried again until it succeeds, instead of leaving the
/// session's groups and its slot behind for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_teardown_the_kernel_refuses_is_tried_again_until_it_succeeds() {
    // The server in a mount namespace of its own, so the mount below is its alone: other tests
    // of this binary count the host's mounts meanwhile.
    let mut server = Server::start_wrapped(
        common::Instance::new(),
        &["unshare", "--mount", "--propagation", "private"],
        &["--warm-pool", "0"],
    );
    let (s, _t) = shell(&server).await;
    // Its directory in the first hierarchy the tests look at (memory on v1).
    let groups = server.inst.session_groups();
    let group = groups.first().expect("the session's group").clone();
    let in_servers_mounts = |args: &[&str]| {
        let pid = server.pid().to_string();
        let out = std::process::Command::new("nsenter").args(["-t", &pid, "-m", "--"]).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let dir = group.to_str().unwrap();
    in_servers_mounts(&["mount", "-t", "tmpfs", "none", dir]);
    let id = s["id"].as_str().unwrap();
    reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    let log = |server: &Server| server.log.lock().unwrap().clone();
    assert!(wait_until(20, || log(&server).contains("could not be removed completely")), "{}", log(&server));
    assert!(group.exists(), "the group went although its directory was a mount point");
    // The kernel lets go: the next try removes it.
    in_servers_mounts(&["umount", "-l", dir]);
    assert!(
        wait_until(30, || server.inst.all_groups().is_empty() && log(&server).contains("teardown had failed")),
        "{:?}\n{}",
        server.inst.all_groups(),
        log(&server)
    );
    let (code, _) = server.stop_with(nix::sys::signal::Signal::SIGINT);
    assert_eq!(code, Some(0), "{}", log(&server));
}

/// A stop signal that comes while the server is still starting (its warm pool already
/// building) is a clean stop too: before the handlers were installed first, SIGINT here killed
/// the server with the default action and left the pool's cgroups behind (2 runs in 8).
#[test]
fn a_stop_signal_during_the_start_still_leaves_nothing() {
    for round in 0..10 {
        let mut server = Server::start_in(common::Instance::new(), &["--warm-pool", "2"]);
        let (code, _) = server.stop_with(nix::sys::signal::Signal::SIGINT);
        let log = server.log.lock().unwrap().clone();
        assert_eq!(code, Some(0), "round {round}: exit {code:?}\n{log}");
        let left: Vec<_> = server.inst.parent_dirs().into_iter().filter(|d| d.exists()).collect();
        assert!(left.is_empty(), "round {round}: left {left:?}\n{log}");
    }
}

#[test]
fn a_wrong_setting_stops_the_start_with_one_line_and_exit_2() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max_sesions = 5\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--memory".into(), "1M".into()], "invalid setting memory = 1 MiB: from 32 MiB to 64 GiB"),
        (vec!["--idle-timeout".into(), "soon".into()], "invalid setting idle_timeout = soon"),
        (vec!["--listen".into(), "nowhere".into()], "invalid setting listen = nowhere"),
        (vec!["--trusted-proxies".into(), "proxy.example".into()], "invalid setting trusted_proxies = proxy.example"),
        (vec!["--config".into(), file.display().to_string()], "invalid setting max_sesions"),
    ];
    for (args, expect) in cases {
        let out = std::process::Command::new(BIN).arg("serve").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_the_events() {
    let server = Server::start(&["--max-sessions", "1"]);
    let m0 = metrics(&server).await;
    let (s, mut t) = shell(&server).await;
    t.line("echo hello").await;
    t.expect("hello", 10).await;
    assert_eq!(create_from(&server, None).await.status(), 503);
    let id = s["id"].as_str().unwrap();
    reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    let m = metrics(&server).await;
    assert!(!m0.contains("nsplay_sessions_created_total 1"));
    assert!(m.contains("nsplay_sessions_created_total 1"), "{m}");
    assert!(m.contains("nsplay_sessions_ended_total{reason=\"deleted\"} 1"), "{m}");
    assert!(m.contains("nsplay_refusals_total{reason=\"full\"} 1"), "{m}");
    assert!(m.contains("nsplay_sessions_live 0"), "{m}");
    assert!(m.contains("nsplay_spawn_seconds_bucket"), "{m}");
    assert!(metric(&m, "nsplay_ws_bytes_in_total") >= 11.0, "{m}");
    assert!(metric(&m, "nsplay_ws_bytes_out_total") > 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_that_bites_is_explained_in_the_terminal_and_the_inspector() {
    let server = Server::start(&["--memory", "64M"]);
    let (s, mut t) = shell(&server).await;
    t.line("tail /dev/zero").await;
    let notice = |t: &Term| {
        t.controls
            .iter()
            .any(|c| c["type"] == "notice" && c["message"].as_str().unwrap_or("").contains("memory limit (64 MiB)"))
    };
    assert!(t.pump_until(20, notice).await, "{:?}", t.controls);
    let id = s["id"].as_str().unwrap();
    let info: Value =
        reqwest::get(format!("{}/api/sessions/{id}?lang=ja", server.base)).await.unwrap().json().await.unwrap();
    assert!(info["events"][0]["message"].as_str().unwrap().contains("メモリ上限"), "{info}");
    assert!(info["usage"]["oom_kills"].as_u64().unwrap() >= 1);
    assert!(metric(&metrics(&server).await, "nsplay_oom_kills_total") >= 1.0);
}

/// Open descriptors of a process.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// `GET /healthz` over a fresh connection, without a client library's pool or retries.
fn healthz_once(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok")
}

/// Idle TCP connections to the server (they send nothing).
fn hold_connections(addr: &str, n: usize) -> Vec<std::net::TcpStream> {
    (0..n).filter_map(|_| std::net::TcpStream::connect(addr).ok()).collect()
}

/// Sessions of the server (live and ready in the pool), by group name (on v1 a session has a
/// group in each hierarchy).
fn sandboxes(server: &Server) -> usize {
    let names: std::collections::BTreeSet<_> =
        server.inst.session_groups().iter().map(|g| g.file_name().unwrap().to_owned()).collect();
    names.len()
}

/// Waits until the warm pool holds a ready session (the `nsplay_pool_ready` gauge).
async fn pool_ready(server: &Server) -> bool {
    for _ in 0..600 {
        if metric(&metrics(server).await, "nsplay_pool_ready") >= 1.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn log_count(server: &Server, needle: &str) -> usize {
    server.log.lock().unwrap().matches(needle).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_survives_descriptor_exhaustion_recovers_and_still_stops_on_sigterm() {
    // A short drain: the SIGTERM below must stop it while a session still lives.
    let mut server = Server::start(&["--warm-pool", "1", "--drain-timeout", "1s"]);
    let pid = server.pid();
    // Nothing is being built while descriptors run out: the pool is full first.
    assert!(pool_ready(&server).await, "the warm pool did not fill");
    // Lower the running server's open-files limit to a little above what it uses: its
    // connection cap, fitted at start to the old limit, no longer holds, so idle connections
    // exhaust its descriptors (what a server on a low limit, or one leaking, would meet).
    let limit = fd_count(pid) + 24;
    let st = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(st.success());
    let held = hold_connections(&server.addr, 60);
    const EXHAUSTED: &str = "out of descriptors";
    assert!(wait_until(20, || log_count(&server, EXHAUSTED) >= 1), "never ran out: {}", server.log.lock().unwrap());
    assert!(server.child.try_wait().unwrap().is_none(), "the server died: {}", server.log.lock().unwrap());
    drop(held);
    assert!(wait_until(30, || healthz_once(&server.addr)), "no answer once descriptors were free again");
    // A new session starts (from the pool) and its shell answers.
    let (_, mut t) = shell(&server).await;
    t.line("echo after-$((6*7))").await;
    t.expect("after-42", 20).await;
    drop(t);
    // The pool refills; then exhaust again and stop while exhausted.
    assert!(pool_ready(&server).await, "the pool did not refill");
    let before = log_count(&server, EXHAUSTED);
    let _held = hold_connections(&server.addr, 60);
    assert!(wait_until(20, || log_count(&server, EXHAUSTED) > before), "never ran out again");
    let (code, took) = server.stop();
    println!("stopped while out of descriptors in {took:?} with {code:?}; log:\n{}", server.log.lock().unwrap());
    assert_eq!(code, Some(0), "{}", server.log.lock().unwrap());
    assert_eq!(sandboxes(&server), 0, "sessions were left: {:?}", server.inst.session_groups());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_cannot_take_the_descriptors_of_a_server_on_a_low_limit() {
    // 256 open files, 4 sessions: the connection cap is lowered to what is left.
    let server = Server::start_wrapped(
        common::Instance::new(),
        &["prlimit", "--nofile=256:256"],
        &["--warm-pool", "1", "--header-timeout", "1s"],
    );
    assert!(wait_until(10, || log_count(&server, "lowered max_connections") == 1), "{}", server.log.lock().unwrap());
    let held = hold_connections(&server.addr, 400);
    assert!(held.len() >= 300, "could only open {}", held.len());
    // Past the cap they wait in the listen queue; the header timeout closes the ones accepted,
    // and the server answers again while the rest are still held.
    assert!(wait_until(60, || healthz_once(&server.addr)), "no answer with 400 idle connections held");
    println!("server fds with 400 idle connections held: {}", fd_count(server.pid()));
    assert!(fd_count(server.pid()) < 256);
    let log = server.log.lock().unwrap().clone();
    assert!(!log.contains("Too many open files") && !log.contains("out of descriptors"), "{log}");
    drop(held);
}

/// A browser's identity: the `nsplay_learner` cookie the server sets (or a value a client
/// chooses, as a benchmark simulating a room does).
fn cookie(n: u128) -> String {
    format!("nsplay_learner={n:032x}")
}

async fn learner_post(server: &Server, path: &str, who: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .header("cookie", who)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn end_mine(server: &Server, who: &str, except: Option<&str>) -> Value {
    let q = except.map(|e| format!("?except={e}")).unwrap_or_default();
    let r = reqwest::Client::new()
        .delete(format!("{}/api/learner/sessions{q}", server.base))
        .header("cookie", who)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The sessions' group gets `sessions_memory` as its limit (v1 and v2), and a new session is
/// refused by what the sessions really use against it, not by the sum of their limits: a
/// session filling its tmpfs past the threshold blocks the next one (503 memory_full with
/// Retry-After) until it frees the memory.
#[tokio::test(flavor = "multi_thread")]
async fn admission_refuses_by_the_sessions_real_memory_use_and_admits_once_it_is_freed() {
    let server = Server::start(&[
        "--sessions-memory",
        "192M",
        "--admit-memory-percent",
        "50",
        "--disk",
        "160M",
        "--warm-pool",
        "0",
    ]);
    let dir = server.inst.sessions_dirs().into_iter().next().unwrap();
    let limit = if common::cgroup_v2() { "memory.max" } else { "memory.limit_in_bytes" };
    assert_eq!(std::fs::read_to_string(dir.join(limit)).unwrap().trim(), (192u64 << 20).to_string());
    let pids = if common::cgroup_v2() { dir.join("pids.max") } else { server.inst.sessions_dirs()[1].join("pids.max") };
    assert_eq!(std::fs::read_to_string(pids).unwrap().trim(), "16384");
    let (cpu, weight) = if common::cgroup_v2() {
        (dir.join("cpu.weight"), "100")
    } else {
        (server.inst.sessions_dirs()[2].join("cpu.shares"), "1024")
    };
    assert_eq!(std::fs::read_to_string(cpu).unwrap().trim(), weight);
    // More than max_sessions × the 256 MiB limit of each would allow under the old rule.
    let (_, mut t) = shell(&server).await;
    let out = t.cmd_wait("head -c 120M /dev/zero > /tmp/fill && echo fi''lled", 60).await;
    assert!(out.contains("filled"), "{out}");
    let r = create_from(&server, None).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "memory_full", "{v}");
    assert!(v["message"].as_str().unwrap().contains("memory"), "{v}");
    assert!(metrics(&server).await.contains("nsplay_refusals_total{reason=\"memory\"} 1"));
    t.cmd("rm /tmp/fill").await;
    assert_eq!(create_from(&server, None).await.status(), 201, "admitted once the memory is free");
}

/// Four lesson pages in a row from one browser attach to its one session (the per-client cap
/// of 3 never bites), and the first page sets the identity the others send back.
#[tokio::test(flavor = "multi_thread")]
async fn four_lesson_pages_in_a_row_from_one_browser_share_one_session() {
    let server = Server::start(&[]);
    let page = reqwest::get(format!("{}/learn/uts", server.base)).await.unwrap();
    let set = page.headers()["set-cookie"].to_str().unwrap().to_string();
    let who = set.split(';').next().unwrap().to_string();
    assert!(who.starts_with("nsplay_learner="), "{set}");
    let mut ids = Vec::new();
    for (i, topic) in ["uts", "pid", "mnt", "ipc"].iter().enumerate() {
        let page = reqwest::Client::new()
            .get(format!("{}/learn/{topic}", server.base))
            .header("cookie", &who)
            .send()
            .await
            .unwrap();
        assert!(page.headers().get("set-cookie").is_none(), "a browser keeps its identity");
        let r = learner_post(&server, "/api/learner/session", &who, serde_json::json!({"lesson": topic})).await;
        assert_eq!(r.status(), if i == 0 { 201 } else { 200 }, "{topic}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["attached"], i > 0, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(metric(&metrics(&server).await, "nsplay_sessions_live"), 1.0);
    // "Start this lesson on a fresh session": the old one ends, a new one starts.
    let r =
        learner_post(&server, "/api/learner/session", &who, serde_json::json!({"lesson": "ipc", "fresh": true})).await;
    assert_eq!(r.status(), 201);
    let fresh: Value = r.json().await.unwrap();
    assert_ne!(fresh["id"], ids[0].as_str());
    assert_eq!(status_of(&server, &ids[0]).await, 404);
}

/// Learners behind one NAT address each count on their own; only the (much higher) per-address
/// bound counts them together. Small numbers here: 40 identities under a bound of 40; the
/// default bound (400) is sized for a room of 200 with a spare each (`deploy/nsplay.toml`).
#[tokio::test(flavor = "multi_thread")]
async fn learners_behind_one_address_are_bounded_only_by_the_per_address_cap() {
    const ROOM: u128 = 40;
    let server = Server::start_in(
        common::Instance::with_slots(50),
        &[
            "--max-sessions",
            "50",
            "--max-sessions-per-client",
            "1",
            "--max-sessions-per-address",
            "40",
            "--create-burst-per-address",
            "50",
            "--warm-pool",
            "0",
        ],
    );
    let creates = (0..ROOM).map(|n| {
        let server = &server;
        async move { learner_post(server, "/api/sessions", &cookie(n + 1), serde_json::json!({})).await.status() }
    });
    let statuses = futures_util::future::join_all(creates).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 201), "{statuses:?}");
    // Each learner's own cap is 1, and one more learner meets the address's bound.
    let r = learner_post(&server, "/api/sessions", &cookie(1), serde_json::json!({})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "too_many_sessions");
    let r = learner_post(&server, "/api/sessions", &cookie(ROOM + 1), serde_json::json!({})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "too_many_from_address");
    // A request without an identity is bounded by the same address cap.
    let r = create_from(&server, None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "too_many_from_address");
}

/// "End my other sessions" ends exactly the caller's sessions, never another learner's.
#[tokio::test(flavor = "multi_thread")]
async fn ending_ones_other_sessions_works_and_cannot_end_someone_elses() {
    let server = Server::start(&["--max-sessions-per-client", "2", "--warm-pool", "0"]);
    let (alice, bob) = (cookie(0xa11ce), cookie(0xb0b));
    let mut mine = Vec::new();
    for _ in 0..2 {
        let r = learner_post(&server, "/api/sessions", &alice, serde_json::json!({})).await;
        assert_eq!(r.status(), 201);
        mine.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    let r = learner_post(&server, "/api/sessions", &alice, serde_json::json!({})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "too_many_sessions");
    let r = learner_post(&server, "/api/sessions", &bob, serde_json::json!({})).await;
    let bobs = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    // Bob's call cannot touch Alice's sessions.
    assert_eq!(end_mine(&server, &cookie(0xe5e), None).await["ended"], 0);
    assert_eq!(end_mine(&server, &alice, Some(&mine[0])).await["ended"], 1);
    assert_eq!(status_of(&server, &mine[0]).await, 200, "the one kept");
    assert_eq!(status_of(&server, &mine[1]).await, 404);
    assert_eq!(status_of(&server, &bobs).await, 200, "never someone else's");
    let r = learner_post(&server, "/api/sessions", &alice, serde_json::json!({})).await;
    assert_eq!(r.status(), 201, "room again for Alice");
    assert_eq!(end_mine(&server, &alice, None).await["ended"], 2);
    assert_eq!(status_of(&server, &bobs).await, 200);
}
