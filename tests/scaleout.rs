//! Many nodes behind a real proxy (docs/scale-out.md): two nsplay nodes behind HAProxy, and
//! again behind nginx (Debian's packages, run as plain processes on 127.0.0.1 with the shipped
//! `deploy/haproxy.cfg` and `deploy/nginx.conf`, only their addresses replaced). New sessions
//! spread over the nodes; every session's API calls and terminal WebSocket reach its owner; a
//! full node's 503 makes the proxy retry the other node; SIGTERM drains a node (`/readyz` 503 at
//! once, `/healthz` 200, its learners told, its sessions still served, new ones elsewhere), and
//! ends when its last session has ended or at `drain_timeout`; so does the admin call
//! (`POST /api/admin/drain` with the admin token), which `POST /api/admin/undrain` calls off.
//! Three nodes behind HAProxy take 90 sessions, spread over all three, each one's terminal
//! reaching its own node.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::term::Term;
use common::{Server, require_root, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The example node addresses and listen address of the shipped configs, which the tests
/// replace by their own.
const NODE_0: &str = "10.0.0.10:8080";
const NODE_1: &str = "10.0.0.11:8080";
const LISTEN: &str = "0.0.0.0:80";
/// The nodes' admin token (the drain call's bearer token).
const TOKEN: &str = "scale-out-admin-token-for-tests";

fn node(name: &str, max_sessions: usize) -> Server {
    let max = max_sessions.to_string();
    Server::start(&[
        "--admin-token",
        TOKEN,
        "--node",
        name,
        "--max-sessions",
        &max,
        "--warm-pool",
        "1",
        // Every request comes from the proxy's address: per-client caps would count them all.
        "--max-sessions-per-client",
        "20",
        "--create-per-minute",
        "600",
        "--create-burst",
        "100",
        "--drain-timeout",
        "2m",
    ])
}

/// A proxy process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Proxy {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if !wait_until(5, || self.child.try_wait().ok().flatten().is_some()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The shipped config with its addresses replaced (each must occur: the file is the one
/// documented, not a copy of it).
fn config(shipped: &str, swaps: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(shipped)).unwrap();
    for (from, to) in swaps {
        assert!(text.contains(from), "{shipped} no longer contains {from:?}; update tests/scaleout.rs with it");
        text = text.replace(from, to);
    }
    text
}

fn require(program: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    assert!(
        found.status.success(),
        "{program} is not installed: the scale-out tests run the real {program} (Debian's package; tests/run.sh \
         installs it)"
    );
}

fn spawn(mut cmd: Command, dir: tempfile::TempDir, port: u16, name: &str) -> Proxy {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut proxy = Proxy { child, addr: format!("127.0.0.1:{port}"), _dir: dir };
    let up = wait_until(15, || {
        std::net::TcpStream::connect(&proxy.addr).is_ok() || proxy.child.try_wait().ok().flatten().is_some()
    });
    if let Some(status) = proxy.child.try_wait().unwrap() {
        let mut err = String::new();
        use std::io::Read;
        let _ = proxy.child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("{name} exited at start ({status}): {err}");
    }
    assert!(up, "{name} does not listen on {}", proxy.addr);
    proxy
}

fn haproxy(a: &Server, b: &Server) -> Proxy {
    require("haproxy");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(
        "deploy/haproxy.cfg",
        &[(LISTEN, format!("127.0.0.1:{port}")), (NODE_0, a.addr.clone()), (NODE_1, b.addr.clone())],
    );
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, cfg).unwrap();
    let mut cmd = Command::new("haproxy");
    // -db: in the foreground, not as a daemon.
    cmd.arg("-db").arg("-f").arg(&file);
    spawn(cmd, dir, port, "haproxy")
}

fn nginx(a: &Server, b: &Server) -> Proxy {
    nginx_of(&[a, b])
}

/// The shipped nginx config for two or three nodes; a third is added the way docs/scale-out.md
/// says (a map line, a server in the pool, an upstream of its own).
fn nginx_of(n: &[&Server]) -> Proxy {
    require("nginx");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let logs = format!("{}/", dir.path().display());
    let mut swaps = vec![
        (LISTEN, format!("127.0.0.1:{port}")),
        (NODE_0, n[0].addr.clone()),
        (NODE_1, n[1].addr.clone()),
        ("/var/log/nginx/", logs),
    ];
    if let Some(third) = n.get(2) {
        let map_1 = "        ~^/api/sessions/nsplay-1\\.  node_nsplay-1;";
        let pool_1 = "        server 10.0.0.11:8080 max_fails=0;";
        let upstream_1 = "    upstream node_nsplay-1 {";
        swaps.splice(
            0..0,
            [
                (map_1, format!("{map_1}\n        ~^/api/sessions/nsplay-2\\.  node_nsplay-2;")),
                (pool_1, format!("{pool_1}\n        server {} max_fails=0;", third.addr)),
                (
                    upstream_1,
                    format!("    upstream node_nsplay-2 {{\n        server {};\n    }}\n{upstream_1}", third.addr),
                ),
            ],
        );
    }
    let cfg = config("deploy/nginx.conf", &swaps);
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, cfg).unwrap();
    // The temporary files go beside the config, not into /var/lib/nginx.
    let d = dir.path().display();
    let cfg = std::fs::read_to_string(&file).unwrap().replacen(
        "http {",
        &format!("http {{\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;"),
        1,
    );
    std::fs::write(&file, cfg).unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-p").arg(dir.path()).arg("-e").arg(dir.path().join("error.log")).arg("-c").arg(&file);
    cmd.arg("-g").arg(format!("daemon off; pid {d}/nginx.pid;"));
    spawn(cmd, dir, port, "nginx")
}

fn node_of(session: &Value) -> String {
    session["id"].as_str().unwrap().split_once('.').expect("an id is <node>.<random>").0.to_string()
}

async fn create(base: &str) -> reqwest::Response {
    reqwest::Client::new().post(format!("{base}/api/sessions")).send().await.unwrap()
}

async fn create_ok(base: &str) -> Value {
    let r = create(base).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    r.json().await.unwrap()
}

async fn status(url: String) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
}

/// The session's terminal through the proxy, at its prompt, answering `echo hi`.
async fn terminal_through(proxy: &Proxy, session: &Value) -> Term {
    let mut t = Term::connect_addr(&proxy.addr, session["terminal"].as_str().unwrap()).await;
    t.expect("# ", 20).await;
    let out = t.cmd("echo hi").await;
    assert!(out.lines().any(|l| l.trim() == "hi"), "{out:?}");
    t
}

async fn the_proxy_routes_retries_and_follows_a_drain(start: fn(&Server, &Server) -> Proxy) {
    require_root();
    // nsplay-0 holds two sessions, nsplay-1 four (its id ranges).
    let mut a = node("nsplay-0", 2);
    let b = node("nsplay-1", 4);
    let proxy = start(&a, &b);
    let via = format!("http://{}", proxy.addr);
    assert!(wait_until(15, || std::net::TcpStream::connect(&proxy.addr).is_ok()));

    // New sessions spread over the nodes (round robin over two ready nodes).
    let first = [create_ok(&via).await, create_ok(&via).await];
    let mut nodes: Vec<String> = first.iter().map(node_of).collect();
    nodes.sort();
    assert_eq!(nodes, ["nsplay-0", "nsplay-1"], "{first:?}");
    let on_a = first.iter().find(|s| node_of(s) == "nsplay-0").unwrap().clone();
    let on_b = first.iter().find(|s| node_of(s) == "nsplay-1").unwrap().clone();

    // Each session's API and terminal reach its owner through the proxy (the other node does
    // not know it).
    for (s, owner, other) in [(&on_a, &a, &b), (&on_b, &b, &a)] {
        let id = s["id"].as_str().unwrap();
        assert_eq!(status(format!("{via}/api/sessions/{id}")).await, 200);
        assert_eq!(status(format!("{}/api/sessions/{id}", owner.base)).await, 200);
        assert_eq!(status(format!("{}/api/sessions/{id}", other.base)).await, 404);
    }
    let mut term_a = terminal_through(&proxy, &on_a).await;
    let mut term_b = terminal_through(&proxy, &on_b).await;

    // nsplay-0 full: the proxy retries its 503 on nsplay-1, and every create succeeds.
    let direct = create_ok(&a.base).await;
    assert_eq!(node_of(&direct), "nsplay-0");
    let mut more = Vec::new();
    for _ in 0..3 {
        let s = create_ok(&via).await;
        assert_eq!(node_of(&s), "nsplay-1", "nsplay-0 is full");
        more.push(s);
    }
    let refused = metric(&reqwest::get(format!("{}/metrics", a.base)).await.unwrap().text().await.unwrap(), {
        "nsplay_refusals_total{reason=\"full\"}"
    });
    assert!(refused >= 1.0, "round robin sent none of three creates to the full node: the retry is untested");
    // Both full: the last 503 reaches the client, saying to retry elsewhere and when.
    let r = create(&via).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("x-nsplay-retry-elsewhere").map(|v| v.to_str().unwrap()), Some("1"));
    assert!(r.headers().get("retry-after").is_some());
    for s in &more {
        let id = s["id"].as_str().unwrap();
        let r = reqwest::Client::new().delete(format!("{via}/api/sessions/{id}")).send().await.unwrap();
        assert_eq!(r.status(), 204);
    }

    // SIGTERM drains nsplay-0: not ready at once, alive, its learner told, its session still
    // served through the proxy; new sessions go to nsplay-1.
    kill(Pid::from_raw(a.pid()), Signal::SIGTERM).unwrap();
    let a_ready = format!("{}/readyz", a.base);
    let mut flipped = false;
    for _ in 0..100 {
        if status(a_ready.clone()).await == 503 {
            flipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(flipped, "/readyz still 200 after SIGTERM");
    assert_eq!(status(format!("{}/healthz", a.base)).await, 200);
    assert_eq!(status(format!("{}/readyz", b.base)).await, 200);
    let told = term_a
        .pump_until(10, |t| {
            t.controls.iter().any(|c| {
                c["type"] == "notice" && c["message"].as_str().is_some_and(|m| m.contains("this session ends in"))
            })
        })
        .await;
    assert!(told, "no drain notice: {:?}", term_a.controls);
    let out = term_a.cmd("echo still here").await;
    assert!(out.contains("still here"), "{out:?}");
    assert_eq!(status(format!("{via}/api/sessions/{}", on_a["id"].as_str().unwrap())).await, 200);
    for _ in 0..2 {
        let s = create_ok(&via).await;
        assert_eq!(node_of(&s), "nsplay-1", "a draining node takes no new session");
    }

    // A second SIGTERM ends the drain: nsplay-0's sessions end, it exits cleanly, and nothing
    // on nsplay-1 is lost.
    kill(Pid::from_raw(a.pid()), Signal::SIGTERM).unwrap();
    assert!(wait_until(20, || a.child.try_wait().ok().flatten().is_some()), "nsplay-0 did not exit");
    assert_eq!(a.child.wait().unwrap().code(), Some(0), "{}", a.log.lock().unwrap());
    assert!(term_a.pump_until(10, |t| t.closed.is_some()).await);
    let out = term_b.cmd("echo on b").await;
    assert!(out.contains("on b"), "{out:?}");
    // A reconnect through the proxy lands on the same shell (its screen replayed first).
    drop(term_b);
    let mut again = Term::connect_addr(&proxy.addr, on_b["terminal"].as_str().unwrap()).await;
    again.expect("on b", 10).await;
    let out = again.cmd("echo same shell").await;
    assert!(out.contains("same shell"), "{out:?}");
    assert_eq!(status(format!("{via}/api/sessions/{}", on_b["id"].as_str().unwrap())).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn haproxy_routes_each_session_to_its_node_retries_a_full_node_and_follows_a_drain() {
    the_proxy_routes_retries_and_follows_a_drain(haproxy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_routes_each_session_to_its_node_retries_a_full_node_and_follows_a_drain() {
    the_proxy_routes_retries_and_follows_a_drain(nginx).await;
}

fn exited(server: &mut Server, secs: u64) -> Option<i32> {
    assert!(wait_until(secs, || server.child.try_wait().ok().flatten().is_some()), "still running after {secs} s");
    server.child.wait().unwrap().code()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_ends_as_soon_as_the_last_session_has_ended() {
    let mut server = Server::start(&["--drain-timeout", "10m"]);
    let s = common::term::create(&server).await;
    let id = s["id"].as_str().unwrap().to_string();
    kill(Pid::from_raw(server.pid()), Signal::SIGTERM).unwrap();
    assert!(wait_until(10, || server.log.lock().unwrap().contains("draining")), "{}", server.log.lock().unwrap());
    let r = reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204, "a draining node still serves its sessions");
    assert_eq!(exited(&mut server, 30), Some(0), "{}", server.log.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_drain_deadline_the_sessions_end_and_the_node_exits() {
    let mut server = Server::start(&["--drain-timeout", "2s"]);
    let s = common::term::create(&server).await;
    let mut t = common::term::attach(&server, &s).await;
    // A second reader of the same terminal, in Japanese.
    let mut ja = Term::connect(&server, &format!("{}?lang=ja", s["terminal"].as_str().unwrap())).await;
    ja.pump_until(5, |t| !t.out.is_empty()).await;
    kill(Pid::from_raw(server.pid()), Signal::SIGTERM).unwrap();
    assert!(t.pump_until(30, |t| t.closed.is_some()).await, "{:?}", t.controls);
    let seen = notices(&t);
    assert!(seen.iter().any(|n| n.contains("this session ends in 2 s") && n.contains("UTC")), "{seen:?}");
    assert!(seen.iter().any(|n| n.contains("shutting down")), "{seen:?}");
    assert!(ja.pump_until(30, |t| t.closed.is_some()).await);
    let seen = notices(&ja);
    assert!(seen.iter().any(|n| n.contains("あと 2 秒") && n.contains("UTC")), "{seen:?}");
    assert_eq!(exited(&mut server, 30), Some(0), "{}", server.log.lock().unwrap());
    assert!(wait_until(5, || server.inst.processes().is_empty()), "left: {:?}", server.inst.processes());
}

async fn admin_post(base: &str, call: &str, body: Option<Value>) -> reqwest::Response {
    let r = reqwest::Client::new().post(format!("{base}/api/admin/{call}")).bearer_auth(TOKEN);
    match body {
        Some(b) => r.json(&b),
        None => r,
    }
    .send()
    .await
    .unwrap()
}

fn notices(t: &Term) -> Vec<String> {
    t.controls
        .iter()
        .filter(|c| c["type"] == "notice")
        .filter_map(|c| c["message"].as_str())
        .map(String::from)
        .collect()
}

async fn delete(base: &str, s: &Value) {
    let r = reqwest::Client::new().delete(format!("{base}/api/sessions/{}", s["id"].as_str().unwrap())).send().await;
    assert_eq!(r.unwrap().status(), 204);
}

/// The admin call drains a node as SIGTERM does, but the process stays: new sessions through
/// the proxy go to the other node, the drained node's learner is told and still served; the
/// undrain brings new sessions back to it.
async fn an_admin_drain_sends_new_sessions_elsewhere(start: fn(&Server, &Server) -> Proxy) {
    require_root();
    let a = node("nsplay-0", 4);
    let b = node("nsplay-1", 4);
    let proxy = start(&a, &b);
    let via = format!("http://{}", proxy.addr);
    let on_a = create_ok(&a.base).await;
    let mut term_a = terminal_through(&proxy, &on_a).await;

    // Only the admin may drain.
    let r = reqwest::Client::new().post(format!("{via}/api/admin/drain")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new().post(format!("{}/api/admin/drain", a.base)).bearer_auth("not-the-token").send();
    assert_eq!(r.await.unwrap().status(), 401);
    assert_eq!(status(format!("{}/readyz", a.base)).await, 200);

    let r = admin_post(&a.base, "drain", Some(json!({"seconds": 600}))).await;
    assert_eq!(r.status(), 202);
    let d: Value = r.json().await.unwrap();
    assert_eq!((d["draining"].as_bool(), d["sessions"].as_u64()), (Some(true), Some(1)), "{d}");
    // Not ready once the call has answered, alive, and new sessions refused with the 503 the
    // proxies retry elsewhere.
    assert_eq!(status(format!("{}/readyz", a.base)).await, 503);
    assert_eq!(status(format!("{}/healthz", a.base)).await, 200);
    let r = create(&a.base).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("x-nsplay-retry-elsewhere").map(|v| v.to_str().unwrap()), Some("1"));
    // A second call keeps the deadline.
    let r = admin_post(&a.base, "drain", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deadline"], d["deadline"]);
    let told = term_a
        .pump_until(20, |t| notices(t).iter().any(|n| n.contains("this session ends in 600 s") && n.contains("UTC")))
        .await;
    assert!(told, "no drain notice: {:?}", term_a.controls);
    let out = term_a.cmd("echo still here").await;
    assert!(out.contains("still here"), "{out:?}");

    // Every new session through the proxy lands on nsplay-1.
    let mut on_b = Vec::new();
    for _ in 0..4 {
        let s = create_ok(&via).await;
        assert_eq!(node_of(&s), "nsplay-1", "a drained node took a new session");
        on_b.push(s);
    }
    let mut term_b = terminal_through(&proxy, &on_b[0]).await;
    for s in &on_b {
        delete(&via, s).await;
    }
    assert!(term_b.pump_until(20, |t| t.closed.is_some()).await);

    // The undrain: ready again, the learner told, and new sessions reach nsplay-0 again (once
    // HAProxy's check has seen it ready).
    let r = admin_post(&a.base, "undrain", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["was_draining"], true);
    assert_eq!(status(format!("{}/readyz", a.base)).await, 200);
    let told = term_a.pump_until(20, |t| notices(t).iter().any(|n| n.contains("stays in service"))).await;
    assert!(told, "no notice of the undrain: {:?}", term_a.controls);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = create_ok(&via).await;
        let landed = node_of(&s);
        delete(&via, &s).await;
        if landed == "nsplay-0" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no new session reached nsplay-0 after the undrain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = term_a.cmd("echo kept").await;
    assert!(out.contains("kept"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn haproxy_sends_new_sessions_past_a_node_drained_by_the_admin_call() {
    an_admin_drain_sends_new_sessions_elsewhere(haproxy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_sends_new_sessions_past_a_node_drained_by_the_admin_call() {
    an_admin_drain_sends_new_sessions_elsewhere(nginx).await;
}

/// At the deadline of an admin drain the sessions end (their learners told) and the node stays
/// up, not ready, until the undrain; a signed-in browser needs the CSRF token; once SIGTERM
/// drains the node, the drain cannot be undone.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_drain_ends_the_sessions_at_its_deadline_and_the_node_stays_up() {
    let mut server = Server::start(&["--admin-token", TOKEN, "--drain-timeout", "10m"]);
    let s = common::term::create(&server).await;
    let mut t = common::term::attach(&server, &s).await;
    let c = reqwest::Client::new();
    // The instructor's cookie without the sign-in's CSRF token may not drain.
    let r = c.post(format!("{}/api/instructor/login", server.base)).json(&json!({"token": TOKEN})).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 204);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let r = c.post(format!("{}/api/admin/drain", server.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "csrf");
    let r = c.get(format!("{}/api/admin/drain", server.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["draining"], false);
    assert_eq!(admin_post(&server.base, "drain", Some(json!({"seconds": 0}))).await.status(), 400);

    assert_eq!(admin_post(&server.base, "drain", Some(json!({"seconds": 2}))).await.status(), 202);
    assert!(t.pump_until(30, |t| t.closed.is_some()).await, "{:?}", t.controls);
    let seen = notices(&t);
    assert!(seen.iter().any(|n| n.contains("this session ends in 2 s")), "{seen:?}");
    assert!(seen.iter().any(|n| n.contains("out of service; this session ends now")), "{seen:?}");
    let id = s["id"].as_str().unwrap();
    let ended = wait_until(30, || {
        let log = server.log.lock().unwrap();
        log.contains("drain deadline: ending the sessions left") && log.contains("session ended")
    });
    assert!(ended, "{}", server.log.lock().unwrap());
    assert_eq!(status(format!("{}/api/sessions/{id}", server.base)).await, 404);
    assert!(server.child.try_wait().unwrap().is_none(), "the node stopped");
    assert_eq!(status(format!("{}/readyz", server.base)).await, 503);
    assert_eq!(create(&server.base).await.status(), 503);
    let r = c.get(format!("{}/api/admin/drain", server.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["draining"], true);

    assert_eq!(admin_post(&server.base, "undrain", None).await.status(), 200);
    assert_eq!(status(format!("{}/readyz", server.base)).await, 200);
    let s = create_ok(&server.base).await;
    // SIGTERM drains (the session keeps the node up for its 10 minutes); no undrain now.
    kill(Pid::from_raw(server.pid()), Signal::SIGTERM).unwrap();
    let draining = wait_until(10, || server.log.lock().unwrap().matches("draining: no new sessions").count() == 2);
    assert!(draining, "{}", server.log.lock().unwrap());
    let r = admin_post(&server.base, "undrain", None).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "stopping");
    delete(&server.base, &s).await;
    assert_eq!(exited(&mut server, 30), Some(0), "{}", server.log.lock().unwrap());
}

/// A node with room for 32 sessions, its id range apart from every other test's (and from the
/// other two nodes of [`ninety_sessions_spread_over_three_nodes_behind_haproxy_and_behind_nginx`]).
fn big_node(i: u32) -> Server {
    let mut inst = common::Instance::new();
    inst.id_slots = 32;
    inst.id_base = 3_800_000_000 + ((std::process::id() % 8) * 3 + i) * 32 * 65536;
    let name = format!("nsplay-{i}");
    Server::start_in(
        inst,
        &[
            "--node",
            &name,
            "--max-sessions",
            "32",
            "--warm-pool",
            "2",
            "--max-sessions-per-client",
            "40",
            "--create-per-minute",
            "600",
            "--create-burst",
            "100",
        ],
    )
}

/// The shipped HAProxy config with a third node added the way docs/scale-out.md says (a
/// prefix rule, a server in the pool, a backend of its own).
fn haproxy3(n: &[Server]) -> Proxy {
    require("haproxy");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rule_1 = "    use_backend node_nsplay-1 if { path_beg /api/sessions/nsplay-1. }";
    let pool_1 = "    server nsplay-1 10.0.0.11:8080 check";
    let mut cfg = config(
        "deploy/haproxy.cfg",
        &[
            (rule_1, format!("{rule_1}\n    use_backend node_nsplay-2 if {{ path_beg /api/sessions/nsplay-2. }}")),
            (pool_1, format!("{pool_1}\n    server nsplay-2 {} check", n[2].addr)),
            (LISTEN, format!("127.0.0.1:{port}")),
            (NODE_0, n[0].addr.clone()),
            (NODE_1, n[1].addr.clone()),
        ],
    );
    cfg.push_str(&format!("\nbackend node_nsplay-2\n    server nsplay-2 {}\n", n[2].addr));
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, cfg).unwrap();
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&file);
    spawn(cmd, dir, port, "haproxy")
}

/// Issue 21's scenario, behind HAProxy and then behind nginx (one after the other: three
/// nodes of 32 sessions each at a time are enough for this machine): three nodes, 90 sessions
/// created through the proxy (a few at a time); they spread over all three nodes, each node
/// holds exactly the sessions its name is in, and every session's terminal WebSocket through the
/// proxy reaches its shell and answers.
#[tokio::test(flavor = "multi_thread")]
async fn ninety_sessions_spread_over_three_nodes_behind_haproxy_and_behind_nginx() {
    require_root();
    let haproxy: fn(&[Server]) -> Proxy = haproxy3;
    let nginx: fn(&[Server]) -> Proxy = |n| nginx_of(&[&n[0], &n[1], &n[2]]);
    for (name, start) in [("haproxy", haproxy), ("nginx", nginx)] {
        println!("--- 90 sessions over three nodes behind {name}");
        ninety_sessions_over_three_nodes(start).await;
    }
}

async fn ninety_sessions_over_three_nodes(start: fn(&[Server]) -> Proxy) {
    use futures_util::StreamExt;
    let nodes: Vec<Server> = (0..3).map(big_node).collect();
    let proxy = start(&nodes);
    let via = format!("http://{}", proxy.addr);
    let sessions: Vec<Value> =
        futures_util::stream::iter(0..90).map(|_| create_ok(&via)).buffer_unordered(6).collect().await;
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for s in &sessions {
        *per_node.entry(node_of(s)).or_default() += 1;
    }
    assert_eq!(per_node.keys().collect::<Vec<_>>(), ["nsplay-0", "nsplay-1", "nsplay-2"], "{per_node:?}");
    for (i, n) in nodes.iter().enumerate() {
        let text = reqwest::get(format!("{}/metrics", n.base)).await.unwrap().text().await.unwrap();
        let live = metric(&text, "nsplay_sessions_live");
        assert_eq!(live as usize, per_node[&format!("nsplay-{i}")], "nsplay-{i}: {per_node:?}");
    }
    // Every terminal through the proxy, a few at a time, all kept open: each answers its own
    // marker.
    let terms: Vec<Term> = futures_util::stream::iter(sessions.iter().enumerate())
        .map(|(i, s)| {
            let proxy = &proxy;
            async move {
                let mut t = Term::connect_addr(&proxy.addr, s["terminal"].as_str().unwrap()).await;
                t.expect("# ", 30).await;
                let out = t.cmd(&format!("echo marker-{i}-$((6*7))")).await;
                assert!(out.lines().any(|l| l.trim() == format!("marker-{i}-42")), "{out:?}");
                t
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    assert_eq!(terms.len(), 90);
    drop(terms);
    for s in &sessions {
        delete(&via, s).await;
    }
}
