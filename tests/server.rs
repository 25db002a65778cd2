//! Integration tests of the web server: HTTP API and the terminal WebSocket, driven the way a
//! browser or a classroom script does (as root: every session is a real sandbox).

mod common;

use std::time::{Duration, Instant};

use common::term::{Term, create, shell};
use common::{Server, host_mount_count, wait_until};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread")]
async fn create_session_and_run_uname() {
    let server = Server::start(&[]);
    let (s, mut t) = shell(&server).await;
    let id = s["id"].as_str().unwrap();
    // `<node>.<random>`: the node (the host name by default), then 128 random bits of base64url.
    let (node, random) = id.split_once('.').unwrap_or_else(|| panic!("id {id} does not name its node"));
    assert!(!node.is_empty() && node.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    assert!(random.len() >= 22, "id {id} is shorter than 128 bits of base64");
    assert!(random.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(s["terminal"], format!("/api/sessions/{id}/terminals/0"));
    assert_eq!(s["limits"]["memory_bytes"], 256 * 1024 * 1024);
    assert!(s["expires_at"].as_str().unwrap().ends_with('Z'));
    t.line("uname -n").await;
    t.expect("uname -n\r\n", 10).await;
    t.expect("nsplay\r\n", 10).await;
    let info: Value = reqwest::get(format!("{}/api/sessions/{id}", server.base)).await.unwrap().json().await.unwrap();
    assert_eq!(info["state"], "running");
    let ns = info["namespaces"].as_object().unwrap();
    assert_eq!(ns.len(), 8);
    for (kind, pair) in ns {
        assert_ne!(pair["session"], pair["host"], "{kind}");
    }
    assert_eq!(info["nested"], serde_json::json!([]), "a fresh session has no nested namespaces");
    assert!(info["usage"]["pids"].as_u64().unwrap() >= 2);
    assert!(info["usage"]["memory_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_walkthrough_over_the_socket() {
    let server = Server::start(&[]);
    let (_, mut t) = shell(&server).await;
    t.line("unshare -u /bin/sh").await;
    t.expect("# ", 10).await;
    t.line("hostname my-new-hostname").await;
    t.expect("hostname my-new-hostname\r\n", 10).await;
    t.line("uname -n").await;
    t.expect("my-new-hostname\r\n", 10).await;
    t.line("exit").await;
    // Back in the session's bash: wait for its prompt before typing (no type-ahead).
    t.expect("exit\r\n", 10).await;
    t.expect("root@nsplay", 10).await;
    t.expect("# ", 10).await;
    let out = t.cmd("uname -n").await;
    assert!(out.starts_with("nsplay\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resize_is_seen_by_stty_and_absurd_sizes_are_clamped() {
    let server = Server::start(&[]);
    let (_, mut t) = shell(&server).await;
    t.control(json!({"type": "resize", "cols": 100, "rows": 40})).await;
    assert!(t.cmd("stty size").await.starts_with("40 100\n"));
    t.control(json!({"type": "resize", "cols": 0, "rows": 0})).await;
    assert!(t.cmd("stty size").await.starts_with("5 20\n"));
    t.control(json!({"type": "resize", "cols": 1000000, "rows": 1000000})).await;
    assert!(t.cmd("stty size").await.starts_with("500 1000\n"));
    // Malformed control: a notice, and the terminal keeps working.
    t.control(json!({"type": "dance"})).await;
    t.ws.send(Message::Text("{not json".into())).await.unwrap();
    t.line("echo st''ill-here").await;
    t.expect("still-here", 10).await;
    assert!(t.controls.iter().filter(|c| c["type"] == "notice").count() >= 2, "{:?}", t.controls);
}

#[tokio::test(flavor = "multi_thread")]
async fn utf8_comes_back_byte_exact() {
    let server = Server::start(&[]);
    let (_, mut t) = shell(&server).await;
    t.line("printf '%s\\n' 日本語 | od -An -tx1").await;
    t.expect("e6 97 a5 e6 9c ac e8 aa 9e 0a", 10).await;
    // Type the next line only at the prompt: typed ahead, it is echoed twice (by the tty, then
    // by readline's redraw) and `cmd` would read the first echo's empty output.
    t.expect("# ", 10).await;
    assert!(t.cmd("echo 日本語").await.starts_with("日本語\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnect_replays_the_screen_and_keeps_the_shell() {
    let server = Server::start(&[]);
    let (s, mut t) = shell(&server).await;
    t.line("cd /tmp && echo mark''er-before").await;
    t.expect("marker-before", 10).await;
    // Typing before bash's next prompt would be echoed by the tty ahead of that prompt.
    t.expect("# ", 10).await;
    drop(t);
    let mut t = Term::connect(&server, s["terminal"].as_str().unwrap()).await;
    t.expect("marker-before", 10).await;
    t.expect("# ", 10).await;
    let pwd = t.cmd("pwd").await;
    assert!(pwd.starts_with("/tmp\n"), "{pwd:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_terminal_joins_the_same_session() {
    let server = Server::start(&[]);
    let (s, mut t) = shell(&server).await;
    let id = s["id"].as_str().unwrap();
    t.line("sleep 1000 &").await;
    t.expect("# ", 10).await;
    let r = reqwest::Client::new().post(format!("{}/api/sessions/{id}/terminals", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["terminal"], format!("/api/sessions/{id}/terminals/1"));
    let mut t2 = Term::connect(&server, v["terminal"].as_str().unwrap()).await;
    t2.expect("# ", 20).await;
    let out = t2.cmd("ps -eo comm= | grep -c '^sleep$'; uname -n").await;
    assert!(out.starts_with("1\nnsplay\n"), "{out}");
    // Two clients on one terminal both see the output.
    let mut t1b = Term::connect(&server, s["terminal"].as_str().unwrap()).await;
    t.line("echo bo''th").await;
    t.expect("both\r\n", 10).await;
    t1b.expect("both\r\n", 10).await;
}

/// Each ended terminal keeps server descriptors until its session ends, so a session may not
/// open terminals without bound: beyond a burst they are rate-limited (429 with Retry-After).
#[tokio::test(flavor = "multi_thread")]
async fn opening_terminals_over_and_over_is_rate_limited() {
    let server = Server::start(&[]);
    let (s, _t) = shell(&server).await;
    let id = s["id"].as_str().unwrap();
    let c = reqwest::Client::new();
    let mut opened = 0;
    let refusal = loop {
        assert!(opened < 16, "opened {opened} terminals in a row without a refusal");
        let r = c.post(format!("{}/api/sessions/{id}/terminals", server.base)).send().await.unwrap();
        if r.status() != 201 {
            break r;
        }
        opened += 1;
        // End it at once: only the live ones count against the cap of 8.
        let v: Value = r.json().await.unwrap();
        let mut t = Term::connect(&server, v["terminal"].as_str().unwrap()).await;
        t.expect("# ", 20).await;
        t.line("exit").await;
        assert!(t.pump_until(10, |t| t.closed.is_some()).await);
    };
    assert!(opened >= 7, "refused after only {opened}");
    assert_eq!(refusal.status(), 429);
    let wait: u64 = refusal.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let v: Value = refusal.json().await.unwrap();
    assert_eq!(v["error"], "terminal_rate_limited", "{v}");
}

/// Open descriptors of a process.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn ended_terminals_are_freed_at_once_and_the_servers_fds_stay_flat() {
    // No warm pool: nothing else opens descriptors in the server while this runs.
    let server = Server::start(&["--warm-pool", "0"]);
    let (s, _t) = shell(&server).await;
    let id = s["id"].as_str().unwrap().to_string();
    let c = reqwest::Client::new();
    let mut paths = Vec::new();
    let cycle = async || {
        let r = c.post(format!("{}/api/sessions/{id}/terminals", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        let path = v["terminal"].as_str().unwrap().to_string();
        let mut t = Term::connect(&server, &path).await;
        t.expect("# ", 20).await;
        t.line("exit 7").await;
        assert!(t.pump_until(10, |t| t.closed.is_some()).await);
        path
    };
    paths.push(cycle().await);
    // Settled: the first ended terminal is freed, the client's pooled connection is open.
    let mut base = fd_count(server.pid());
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        base = base.min(fd_count(server.pid()));
    }
    for _ in 0..6 {
        paths.push(cycle().await);
    }
    let mut now = fd_count(server.pid());
    for _ in 0..100 {
        if now <= base + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = fd_count(server.pid());
    }
    println!("server fds after 1 ended terminal: {base}, after 7: {now}");
    // Each ended terminal used to keep 2 descriptors until its session ended (+12 here).
    assert!(now <= base + 2, "6 more ended terminals left {} descriptors open", now - base);
    // A page that reconnects to an ended terminal still learns its exit code.
    let mut t = Term::connect(&server, &paths[0]).await;
    assert!(t.pump_until(10, |t| t.closed.is_some()).await);
    assert!(t.controls.iter().any(|c| c == &json!({"type": "exit", "code": 7})), "{:?}", t.controls);
    assert_eq!(t.closed.as_ref().unwrap().0, 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_terminal_hangs_up_its_shell_kills_what_ignores_that_and_keeps_the_rest() {
    let server = Server::start(&[]);
    let (s, mut first) = shell(&server).await;
    let id = s["id"].as_str().unwrap().to_string();
    let c = reqwest::Client::new();
    let open = async || {
        let r = c.post(format!("{}/api/sessions/{id}/terminals", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let path = r.json::<Value>().await.unwrap()["terminal"].as_str().unwrap().to_string();
        let mut t = Term::connect(&server, &path).await;
        t.expect("# ", 20).await;
        (path, t)
    };
    let close = async |path: &str| c.delete(format!("{}{path}", server.base)).send().await.unwrap().status();

    // A foreground job and a job that escaped the hang-up (`nohup`), in a second terminal.
    let (path, mut second) = open().await;
    second.line("nohup sleep 1101 >/dev/null 2>&1 & sleep 1102; echo not-hung''-up").await;
    assert!(wait_until(10, || server.inst.pids_running("sleep 1102").len() == 1));
    assert!(wait_until(10, || server.inst.pids_running("sleep 1101").len() == 1));
    let started = Instant::now();
    assert_eq!(close(&path).await, 204);
    assert!(started.elapsed() < Duration::from_secs(2), "a shell that obeys SIGHUP waited for the kill");
    // Ended when the call answers: its socket has the exit, the foreground job is gone (SIGHUP),
    // and the shell never ran the rest of its line.
    assert!(second.pump_until(10, |t| t.closed.is_some()).await);
    assert!(second.controls.iter().any(|c| c["type"] == "exit"), "{:?}", second.controls);
    assert!(!String::from_utf8_lossy(&second.out).contains("not-hung-up"));
    assert!(wait_until(10, || server.inst.pids_running("sleep 1102").is_empty()));
    assert_eq!(server.inst.pids_running("sleep 1101").len(), 1, "the nohup job went with the terminal");
    let info: Value = c.get(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["terminals"], json!([format!("/api/sessions/{id}/terminals/0")]), "{info}");
    // Closing it again, or a terminal that never was.
    assert_eq!(close(&path).await, 204);
    assert_eq!(close(&format!("/api/sessions/{id}/terminals/77")).await, 404);

    // A program that ignores the hang-up (and never reads its terminal) is killed after a grace.
    let (path, mut third) = open().await;
    third.line("exec sh -c 'trap \"\" HUP; while :; do sleep 1; done'").await;
    third.expect("exec sh", 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert_eq!(close(&path).await, 204);
    assert!(started.elapsed() >= Duration::from_secs(1), "ended before the grace: was it ever ignoring SIGHUP?");
    assert!(third.pump_until(10, |t| t.closed.is_some()).await);

    // The session and its first shell live on.
    let out = first.cmd("echo st''ill").await;
    assert!(out.starts_with("still\n"), "{out}");
    assert_eq!(server.inst.pids_running("sleep 1101").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_ends_the_terminal_with_its_code() {
    let server = Server::start(&[]);
    let (_, mut t) = shell(&server).await;
    t.line("exit 3").await;
    assert!(t.pump_until(10, |t| t.closed.is_some()).await);
    assert!(t.controls.iter().any(|c| c == &json!({"type": "exit", "code": 3})), "{:?}", t.controls);
    assert_eq!(t.closed.as_ref().unwrap().0, 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_output_arrives_before_the_exit_and_background_jobs_do_not_hold_the_terminal() {
    let server = Server::start(&[]);
    let (_, mut t) = shell(&server).await;
    let from = t.out.len();
    // 300 000 bytes printed just before the shell exits, while a background job keeps the pty
    // open: every byte arrives (the relay drains the pty), then the exit code, promptly.
    t.line("sleep 1000 & head -c 300000 /dev/zero | tr '\\0' Q; exit 3").await;
    let start = Instant::now();
    assert!(t.pump_until(20, |t| t.closed.is_some()).await);
    assert!(start.elapsed() < Duration::from_secs(10), "the exit took {:?}", start.elapsed());
    // One more in the echoed command line.
    let qs = t.out[from..].iter().filter(|b| **b == b'Q').count();
    assert_eq!(qs, 300_001);
    assert!(t.controls.iter().any(|c| c == &json!({"type": "exit", "code": 3})), "{:?}", t.controls);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_read_stops_yes_and_memory_stays_bounded() {
    let server = Server::start(&[]);
    let (_, mut t) = shell(&server).await;
    let before = server.rss_kib();
    t.line("yes").await;
    // Do not read for a while: the server must stop reading the pty instead of buffering.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = server.rss_kib();
    assert!(during < before + 16 * 1024, "server RSS grew from {before} KiB to {during} KiB");
    t.send("\x03").await;
    t.line("echo sto''pped").await;
    let start = Instant::now();
    t.expect("stopped\r\n", 30).await;
    assert!(start.elapsed() < Duration::from_secs(30));
    // Output arrives coalesced: far fewer frames than bytes.
    let after = server.rss_kib();
    assert!(after < before + 16 * 1024, "server RSS {after} KiB after yes (was {before})");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_is_paced_to_the_output_budget_while_another_terminal_answers() {
    // 256 KiB/s for all terminals together; a terminal may print 256 KiB at once before its
    // share applies (session::output::BURST), and the chunk that crossed it (up to 32 KiB).
    let server = Server::start(&["--output-rate", "256K"]);
    let (_, mut flood) = shell(&server).await;
    let (_, mut typist) = shell(&server).await;
    // Another learner at work: the budget now has someone to make room for.
    let hello = typist.cmd("echo hel''lo").await;
    assert!(hello.starts_with("hello"), "{hello}");
    flood.line("yes").await;
    let start = Instant::now();
    let from = flood.out.len();
    flood.pump_until(3, |_| false).await;
    let got = (flood.out.len() - from) as f64;
    let bound = 256.0 * 1024.0 * (start.elapsed().as_secs_f64() + 1.0) + 32.0 * 1024.0 + 4096.0;
    assert!(got > 0.0, "the flood printed nothing");
    assert!(got <= bound, "{got} bytes in {:?} at 256 KiB/s (at most {bound})", start.elapsed());
    // The flood was paced (a counter: a gauge read at one instant could catch the flood between
    // two chunks); the other terminal, never past its bucket, answers.
    assert!(paced_ms(&server).await > 0.0, "the flood was not paced");
    let answer = typist.cmd("echo an''swer").await;
    assert!(answer.starts_with("answer"), "{answer}");
    flood.send("\x03").await;
    flood.line("echo sto''pped").await;
    flood.expect("stopped\r\n", 30).await;
}

/// The output paced so far, from the server's metrics.
async fn paced_ms(server: &Server) -> f64 {
    let m = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix("nsplay_output_paced_milliseconds_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_nobody_else_is_there_for_runs_unpaced_and_is_paced_once_someone_types() {
    let server = Server::start(&["--output-rate", "256K"]);
    let (_, mut flood) = shell(&server).await;
    let (_, mut other) = shell(&server).await;
    // Its own learner types the command: that is no reason to pace it. 4 MiB would take 15 s
    // at 256 KiB/s; unpaced it is a matter of a second or two.
    flood.line("yes").await;
    let from = flood.out.len();
    let got = flood.pump_until(60, |t| t.out.len() - from > 4 << 20).await;
    assert!(got, "a lone flood printed only {} bytes", flood.out.len() - from);
    assert_eq!(paced_ms(&server).await, 0.0, "a lone flood was paced");
    // The other learner presses a key: the flood is paced from then on.
    other.send("x").await;
    let paced = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            flood.pump_until(1, |_| false).await;
            let ms = paced_ms(&server).await;
            if ms > 0.0 || Instant::now() > deadline {
                break ms;
            }
        }
    };
    assert!(paced > 0.0, "the flood was not paced after another terminal was typed into");
    flood.send("\x03").await;
    flood.line("echo sto''pped").await;
    flood.expect("stopped\r\n", 30).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_messages_are_refused_with_a_close_code() {
    let server = Server::start(&[]);
    let (_, mut t) = shell(&server).await;
    let big = vec![b'a'; 70 * 1024];
    let _ = t.ws.send(Message::Binary(big.into())).await;
    assert!(t.pump_until(10, |t| t.closed.is_some()).await);
    let (code, _) = t.closed.clone().unwrap();
    assert!(code == u16::from(CloseCode::Size) || code == 1006, "close code {code}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_status_is_json_with_a_sentence() {
    let server = Server::start(&["--max-sessions", "1"]);
    let c = reqwest::Client::new();
    let check = |r: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(r.status(), status);
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], code, "{v}");
        assert!(v["message"].as_str().unwrap().len() > 10, "{v}");
        retry
    };
    let r = c.post(format!("{}/api/sessions", server.base)).body("{nope").send().await.unwrap();
    check(r, 400, "bad_request").await;
    let r = c.post(format!("{}/api/sessions", server.base)).body(r#"{"lesson": 5}"#).send().await.unwrap();
    check(r, 400, "bad_request").await;
    let r = c.post(format!("{}/api/sessions", server.base)).body(vec![b' '; 65 * 1024]).send().await.unwrap();
    check(r, 413, "too_large").await;
    let r = c.get(format!("{}/api/sessions/doesnotexist", server.base)).send().await.unwrap();
    check(r, 404, "session_not_found").await;
    let r = c.delete(format!("{}/api/sessions/doesnotexist", server.base)).send().await.unwrap();
    check(r, 404, "session_not_found").await;
    let r = c.get(format!("{}/api/sessions/doesnotexist/terminals/0", server.base)).send().await.unwrap();
    check(r, 404, "session_not_found").await;
    let s = create(&server).await;
    let id = s["id"].as_str().unwrap();
    let r = c.get(format!("{}/api/sessions/{id}/terminals/7", server.base)).send().await.unwrap();
    check(r, 404, "terminal_not_found").await;
    let r = c.post(format!("{}/api/sessions", server.base)).send().await.unwrap();
    let retry = check(r, 503, "full").await;
    assert!(retry.unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(reqwest::get(format!("{}/healthz", server.base)).await.unwrap().text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_leaves_no_process_cgroup_or_mount() {
    let server = Server::start(&[]);
    let mounts = host_mount_count();
    let (s, mut t) = shell(&server).await;
    t.line("sleep 1000 & setsid nohup sleep 1000 >/dev/null 2>&1 & echo u''p").await;
    t.expect("up\r\n", 10).await;
    // `echo` may run before the background `setsid nohup sleep` has exec'd.
    assert!(wait_until(10, || server.inst.pids_running("sleep 1000").len() == 2));
    let sleepers = server.inst.pids_running("sleep 1000");
    // The warm pool keeps other sessions of this server alive: look at this one's.
    let (uids, groups) = server.inst.footprint(sleepers[0]);
    assert!(!groups.is_empty());
    let id = s["id"].as_str().unwrap();
    let r = reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let left: Vec<_> = server.inst.processes().into_iter().filter(|(_, u)| uids.contains(u)).collect();
    assert!(left.is_empty(), "left: {left:?}");
    let groups_left: Vec<_> = groups.iter().filter(|g| g.exists()).collect();
    assert!(groups_left.is_empty(), "{groups_left:?}");
    assert_eq!(host_mount_count(), mounts);
    // The page's socket learns the session ended.
    assert!(t.pump_until(10, |t| t.closed.is_some()).await);
    let r = reqwest::get(format!("{}/api/sessions/{id}", server.base)).await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_every_session_and_exits_cleanly() {
    // SIGTERM drains first (tests/scaleout.rs); a short drain here.
    let mut server = Server::start(&["--drain-timeout", "1s"]);
    let (_, mut t) = shell(&server).await;
    let _ = create(&server).await;
    t.line("sleep 1000 &").await;
    t.expect("# ", 10).await;
    let (code, took) = server.stop();
    assert_eq!(code, Some(0), "{}", server.log.lock().unwrap());
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(wait_until(5, || server.inst.processes().is_empty()), "left: {:?}", server.inst.processes());
    assert!(server.inst.all_groups().is_empty());
    // A clean stop leaves the host's hierarchies as it found them: the parents it made are gone.
    let parents: Vec<_> = server.inst.parent_dirs().into_iter().filter(|d| d.exists()).collect();
    assert!(parents.is_empty(), "parent cgroups left after SIGTERM: {parents:?}");
    assert!(t.pump_until(5, |t| t.closed.is_some()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_and_assets_are_served_from_the_binary() {
    let server = Server::start(&[]);
    let html = reqwest::get(format!("{}/", server.base)).await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"start\"") && !html.contains("http://") && !html.contains("https://"), "{html}");
    let ja = reqwest::Client::new()
        .get(format!("{}/play", server.base))
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap();
    let ja = ja.text().await.unwrap();
    assert!(ja.contains("lang=\"ja\"") && ja.contains("id=\"terminal\""));
    for asset in [
        "/assets/vendor/xterm.js",
        "/assets/vendor/addon-fit.js",
        "/assets/vendor/xterm.css",
        "/assets/js/main.js",
        "/assets/js/terminal.js",
        "/assets/nsplay.css",
    ] {
        let r = reqwest::get(format!("{}{asset}", server.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.headers().get("etag").is_some() && r.headers().get("cache-control").is_some());
        // Browsers refuse to run a module script served with any other type.
        if asset.ends_with(".js") {
            assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8", "{asset}");
        }
    }
    assert!(html.contains(r#"<script type="module" src="/assets/js/main.js">"#), "{html}");
    let r = reqwest::get(format!("{}/assets/package.json", server.base)).await.unwrap();
    assert_eq!(r.status(), 404);
}

/// The session's JSON (GET), polled while the terminal's output is read on.
async fn session_json(server: &Server, id: &str) -> Value {
    let r = reqwest::Client::new().get(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_stops_a_running_fork_bomb_and_keeps_the_shell() {
    let server = Server::start(&[]);
    let (s, mut t) = shell(&server).await;
    let id = s["id"].as_str().unwrap().to_string();
    let max = s["limits"]["pids"].as_u64().unwrap();
    // The classic bomb, started as a learner would: the prompt comes back, the bomb stays
    // (Ctrl-C cannot reach background jobs). In a subshell, so that the shell forks once, before
    // the bomb exists (see the fork bomb probe in probes.rs).
    t.cmd_wait("f() { f | f & }; (f 2>/dev/null) &", 30).await;
    let mut pids = 0;
    for _ in 0..60 {
        pids = session_json(&server, &id).await["usage"]["pids"].as_u64().unwrap();
        if pids + 8 >= max {
            break;
        }
        t.pump_until(1, |_| false).await;
    }
    assert!(pids + 8 >= max, "the bomb never filled the session: {pids} of {max} processes");

    let r = reqwest::Client::new().post(format!("{}/api/sessions/{id}/reset", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let killed = r.json::<Value>().await.unwrap()["killed"].as_u64().unwrap();
    // The bomb churns (its processes exit as they fork), so the count at the reset's moment is
    // a little below the one read before: most of the bomb, and the rest is asserted below.
    assert!(killed * 2 >= max, "reset killed only {killed} of about {pids} processes");

    // The same shell answers, and the session is down to init, the shell and what it runs.
    let out = t.cmd_wait("echo reset-''ok", 30).await;
    assert!(out.contains("reset-ok"), "{out}");
    let mut left = u64::MAX;
    for _ in 0..20 {
        left = session_json(&server, &id).await["usage"]["pids"].as_u64().unwrap();
        if left <= 4 {
            break;
        }
        t.pump_until(1, |_| false).await;
    }
    assert!(left <= 4, "{left} processes left after the reset");
    // A second reset finds nothing to kill: init and the shell are never touched.
    let r = reqwest::Client::new().post(format!("{}/api/sessions/{id}/reset", server.base)).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["killed"], 0);
    assert!(t.cmd_wait("echo still-''here", 20).await.contains("still-here"));
}

/// A terminal socket whose handshake names `origin` (what a browser sends for a page there).
async fn socket_from(server: &Server, path: &str, origin: &str) -> Result<(), (u16, String)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}{path}", server.addr).into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("the handshake failed otherwise: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_socket_from_another_sites_page_is_refused() {
    // By default only nsplay's own pages (the Origin's host is the request's Host) may open it.
    let server = Server::start(&[]);
    let s = create(&server).await;
    let path = s["terminal"].as_str().unwrap();
    let (status, body) = socket_from(&server, path, "https://evil.example").await.unwrap_err();
    assert_eq!(status, 403);
    assert!(body.contains("forbidden_origin") && body.contains("embed_origins"), "{body}");
    socket_from(&server, path, &format!("http://{}", server.addr)).await.expect("nsplay's own page");
    drop(server);
    // An origin in embed_origins may open it too; others still may not.
    let server = Server::start(&["--embed-origin", "https://docs.example"]);
    let s = create(&server).await;
    let path = s["terminal"].as_str().unwrap();
    socket_from(&server, path, "https://docs.example").await.expect("an allowed site");
    assert_eq!(socket_from(&server, path, "https://evil.example").await.unwrap_err().0, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminals_recording_is_an_asciicast_that_asciinema_replays() {
    let asciinema = std::path::Path::new("/usr/bin/asciinema");
    assert!(asciinema.exists(), "/usr/bin/asciinema is missing: `apt-get install asciinema` (tests/run.sh does it)");
    let server = Server::start(&[]);
    let (s, mut t) = shell(&server).await;
    t.line("printf '\\033[31mred\\033[0m \\033[1;32m緑\\033[0m 色\\n'").await;
    t.expect("\x1b[31mred\x1b[0m \x1b[1;32m緑\x1b[0m 色", 10).await;
    t.expect("# ", 10).await;
    // Enough three-byte characters that chunk boundaries fall inside some of them.
    t.line("yes 日本語テキスト | head -n 5000; echo do''ne").await;
    t.expect("done", 20).await;
    let url = format!("{}{}/cast", server.base, s["terminal"].as_str().unwrap());
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-asciicast");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains(".cast"));
    let cast = r.text().await.unwrap();
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(header["width"].as_u64().unwrap() > 0 && header["height"].as_u64().unwrap() > 0, "{header}");
    assert!(header["timestamp"].as_u64().unwrap() > 1_600_000_000, "{header}");
    assert!(header["env"].is_object(), "{header}");
    assert!(header.get("nsplay_truncated_bytes").is_none(), "{header}");
    let mut text = String::new();
    let mut last = 0.0;
    for l in lines {
        let e: Value = serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}"));
        let time = e[0].as_f64().unwrap();
        assert!(time >= last, "times go forward: {l}");
        last = time;
        assert_eq!(e[1], "o");
        text.push_str(e[2].as_str().unwrap());
    }
    assert!(text.contains("\x1b[31mred\x1b[0m \x1b[1;32m緑\x1b[0m 色"), "{text:.300}");
    assert!(!text.contains('\u{FFFD}'), "a character split across chunks was broken");
    assert!(text.matches("日本語テキスト\r\n").count() >= 5000);
    // Debian's asciinema replays it (`cat` reads keys from /dev/tty: util-linux's `script`
    // gives it a terminal).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.cast");
    std::fs::write(&file, &cast).unwrap();
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{} cat {}", asciinema.display(), file.display()), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "asciinema cat: {}", String::from_utf8_lossy(&out.stderr));
    let replayed = String::from_utf8_lossy(&out.stdout);
    assert!(replayed.contains("\x1b[31mred\x1b[0m \x1b[1;32m緑\x1b[0m 色"), "{replayed:.300}");
    assert!(replayed.matches("日本語テキスト").count() >= 5000);
    // A resize is an "r" event, after the output before it (the header has the first size).
    assert_eq!((header["width"].as_u64(), header["height"].as_u64()), (Some(80), Some(24)), "{header}");
    t.control(json!({"type": "resize", "cols": 100, "rows": 30})).await;
    t.line("stty size").await;
    t.expect("30 100", 10).await;
    t.expect("# ", 10).await;
    let cast = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let events: Vec<Value> = cast.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    let resizes: Vec<&Value> = events.iter().filter(|e| e[1] == "r").collect();
    assert_eq!(resizes.len(), 1, "{resizes:?}");
    assert_eq!(resizes[0][2], "100x30");
    let at = events.iter().position(|e| e[1] == "r").unwrap();
    assert!(events[..at].iter().any(|e| e[2].as_str().unwrap().contains("日本語テキスト")));
    assert!(events[at..].iter().any(|e| e[2].as_str().unwrap().contains("30 100")));
    // Unknown terminals are 404.
    let r = reqwest::get(format!("{}/api/sessions/{}/terminals/7/cast", server.base, s["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// An ended terminal's recording stays downloadable for the session's life: only the recording
/// (its descriptors and ring are freed, which a new socket sees as an exit with no screen to
/// replay).
#[tokio::test(flavor = "multi_thread")]
async fn an_ended_terminals_recording_stays_downloadable() {
    let server = Server::start(&[]);
    let (s, _t) = shell(&server).await;
    let id = s["id"].as_str().unwrap();
    let r = reqwest::Client::new().post(format!("{}/api/sessions/{id}/terminals", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let path = r.json::<Value>().await.unwrap()["terminal"].as_str().unwrap().to_string();
    let mut t1 = Term::connect(&server, &path).await;
    t1.expect("# ", 20).await;
    t1.line("echo ended-''terminal-marker; exit 3").await;
    t1.expect("ended-terminal-marker", 10).await;
    assert!(t1.pump_until(20, |t| t.closed.is_some()).await, "the terminal's socket closes when its shell exits");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut again = Term::connect(&server, &path).await;
        again.pump_until(20, |t| t.closed.is_some()).await;
        assert!(again.controls.iter().any(|c| c["type"] == "exit" && c["code"] == 3), "{:?}", again.controls);
        if again.out.is_empty() {
            break; // freed
        }
        assert!(Instant::now() < deadline, "the ended terminal was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = reqwest::get(format!("{}{path}/cast", server.base)).await.unwrap();
    assert_eq!(r.status(), 200, "the cast of an ended terminal");
    let cast = r.text().await.unwrap();
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(cast.contains("ended-terminal-marker"), "{cast:.2000}");
    // An asciinema-readable file, like a live one's.
    assert!(cast.lines().skip(1).all(|l| serde_json::from_str::<Value>(l).is_ok()));
}

/// An admin drain's deadline ends every session of the node, also the ones whose create was
/// already past the draining check when the drain began and that were only built after the
/// deadline.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_drains_deadline_also_ends_the_sessions_still_being_built() {
    const TOKEN: &str = "server-test-admin-token-0123456789";
    // The only test of this file with more than 4 id ranges (see `Instance::with_slots`).
    let server = Server::start_in(
        common::Instance::with_slots(32),
        &[
            "--warm-pool",
            "0",
            "--admin-token",
            TOKEN,
            "--max-sessions-per-client",
            "32",
            "--create-burst",
            "64",
            "--max-sessions",
            "32",
        ],
    );
    let c = reqwest::Client::new();
    let creates: Vec<_> = (0..24)
        .map(|_| {
            let r = c.post(format!("{}/api/sessions", server.base)).send();
            tokio::spawn(async move { r.await.unwrap() })
        })
        .collect();
    // Every create is under way (nothing is pooled); the spawner is held still (SIGSTOP) so
    // that they are built only after a 1 s drain's deadline.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spawner: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(server.pid()) && String::from_utf8_lossy(&cmd).contains("__spawner")
        })
        .collect();
    assert_eq!(spawner.len(), 1, "the server's spawner: {spawner:?}");
    let spawner = nix::unistd::Pid::from_raw(spawner[0]);
    nix::sys::signal::kill(spawner, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = Instant::now();
    let r = c
        .post(format!("{}/api/admin/drain", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({"seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nix::sys::signal::kill(spawner, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "the spawner ran again before the deadline");
    // Built after the deadline: refused (503 draining), or created and then ended.
    let mut ids = Vec::new();
    for h in creates {
        let r = h.await.unwrap();
        if r.status() == 201 {
            ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
        }
    }
    println!("{} of 24 sessions answered 201", ids.len());
    // Past the deadline (and a tick): none of them lives on.
    let mut left = ids.clone();
    let until = Instant::now() + Duration::from_secs(20);
    while !left.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut still = Vec::new();
        for id in left {
            if c.get(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap().status() != 404 {
                still.push(id);
            }
        }
        left = still;
    }
    assert!(left.is_empty(), "{} sessions outlived the drain's deadline: {left:?}", left.len());
    assert!(wait_until(10, || server.inst.processes().is_empty()), "left: {:?}", server.inst.processes());
}
