//! Classroom mode end to end on a real server (root): learners join a room by its code and get
//! real sessions; one does a lesson step over the terminal WebSocket, one only prints the
//! step's expected output, one does nothing; the dashboard's API shows exactly that. Then the
//! server is SIGKILLed and restarted on the same data directory: the room and the progress are
//! still there, and a learner rejoining from the same browser is the same learner in a fresh
//! session.

mod common;

use common::Server;
use common::term::attach;
use futures_util::SinkExt;
use serde_json::{Value, json};

const TOKEN: &str = "integration-admin-token-0123456789";

fn args() -> Vec<&'static str> {
    vec![
        "--admin-token",
        TOKEN,
        "--open",
        "false",
        "--warm-pool",
        "1",
        "--max-sessions",
        "4",
        "--max-sessions-per-client",
        "4",
        "--create-per-minute",
        "60",
        "--create-burst",
        "10",
    ]
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn instructor_get(server: &Server, path: &str) -> Value {
    let r = http().get(format!("{}{path}", server.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn join(server: &Server, code: &str, body: Value) -> Value {
    let r = http().post(format!("{}/api/join/{code}", server.base)).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

async fn check(server: &Server, session: &str) -> bool {
    let r =
        http().post(format!("{}/api/sessions/{session}/checks/uts/set-hostname", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["passed"].as_bool().unwrap()
}

/// Per learner name: the set of "lesson/step" the dashboard says passed, and the checks run.
fn matrix(p: &Value) -> Vec<(String, Vec<String>, u64)> {
    let steps = p["steps"].as_array().unwrap();
    p["learners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let passed = l["passed"]
                .as_array()
                .unwrap()
                .iter()
                .zip(steps)
                .filter(|(ok, _)| ok.as_bool().unwrap())
                .map(|(_, s)| format!("{}/{}", s["lesson"].as_str().unwrap(), s["step"].as_str().unwrap()))
                .collect();
            (l["name"].as_str().unwrap_or("").to_string(), passed, l["checks"].as_u64().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn learners_join_by_code_and_the_dashboard_shows_exactly_what_the_host_saw() {
    let server = Server::start(&args());
    // open = false: no session without a room.
    let r = http().post(format!("{}/api/sessions", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 403);

    let r = http()
        .post(format!("{}/api/rooms", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "Namespaces 101", "lessons": ["uts"], "capacity": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let room: Value = r.json().await.unwrap();
    let (id, code) = (room["id"].as_str().unwrap().to_string(), room["code"].as_str().unwrap().to_string());

    let doer = join(&server, &code, json!({"name": "Doer"})).await;
    let printer = join(&server, &code.to_lowercase(), json!({"name": "Printer"})).await;
    let idle = join(&server, &code, json!({"name": "<b>Idle</b>"})).await;
    assert_eq!(doer["next"], "/learn/uts");

    // The doer does the step, exactly as the lesson's Run buttons type it.
    let mut t = attach(&server, &doer).await;
    t.cmd_wait("unshare -u /bin/sh", 30).await;
    t.cmd_wait("hostname my-new-hostname", 30).await;
    let mut passed = check(&server, doer["session"].as_str().unwrap()).await;
    for _ in 0..20 {
        if passed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        passed = check(&server, doer["session"].as_str().unwrap()).await;
    }
    assert!(passed, "the host sees the doer's nested hostname");

    // The printer only prints what the step would show; the host is not fooled.
    let mut p = attach(&server, &printer).await;
    p.cmd_wait("echo my-new-hostname; echo 'Passed'", 30).await;
    assert!(!check(&server, printer["session"].as_str().unwrap()).await);

    let progress = instructor_get(&server, &format!("/api/rooms/{id}/progress")).await;
    let step_count = progress["steps"].as_array().unwrap().len();
    assert!(step_count >= 1);
    let want = vec![
        ("Doer".to_string(), vec!["uts/set-hostname".to_string()], 1),
        ("Printer".to_string(), vec![], 1),
        ("<b>Idle</b>".to_string(), vec![], 0),
    ];
    assert_eq!(matrix(&progress), want, "{progress}");
    assert!(progress["learners"].as_array().unwrap().iter().all(|l| l["online"] == true));
    let csv =
        http().get(format!("{}/api/rooms/{id}/progress.csv", server.base)).bearer_auth(TOKEN).send().await.unwrap();
    let csv = csv.text().await.unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    drop((t, p, idle));

    // SIGKILL and a restart on the same data directory: the room and the progress stay.
    let server = server.crash_and_restart(&args());
    let after = instructor_get(&server, &format!("/api/rooms/{id}/progress")).await;
    assert_eq!(matrix(&after), want, "{after}");
    assert!(after["learners"].as_array().unwrap().iter().all(|l| l["online"] == false), "sessions end with the server");
    // The doer's browser rejoins: the same learner, a fresh session, the progress kept.
    let back = join(&server, &code, json!({"learner": doer["learner"]})).await;
    assert_eq!(back["learner"], doer["learner"]);
    assert_eq!(back["returning"], true);
    assert_ne!(back["session"], doer["session"]);
    let again = instructor_get(&server, &format!("/api/rooms/{id}/progress")).await;
    assert_eq!(matrix(&again), want);
    assert_eq!(again["learners"][0]["online"], true);
    assert_eq!(again["learners"][0]["session"], back["session"]);
}

/// A throw-away PostgreSQL cluster (Debian's `postgresql`): `initdb` in a temporary directory
/// and `postgres` on a unix socket there and a free 127.0.0.1 port, as `nobody` (postgres
/// refuses root). Stopped (fast shutdown) and removed on drop.
struct Postgres {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Postgres {
    fn start() -> Postgres {
        use std::os::unix::process::CommandExt;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).max()
            })
            .expect("no PostgreSQL under /usr/lib/postgresql: install Debian's `postgresql` (tests/run.sh does)");
        let dir = tempfile::tempdir().unwrap();
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a `nobody` user to run postgres as");
        nix::unistd::chown(dir.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
        let data = dir.path().join("data");
        let as_nobody = |program: &str| {
            let mut c = std::process::Command::new(bin.join(program));
            c.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw()).env("LC_ALL", "C").current_dir(dir.path());
            c
        };
        let out = as_nobody("initdb")
            .args(["-D", data.to_str().unwrap(), "-U", "nsplay", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = as_nobody("postgres")
            .args(["-D", data.to_str().unwrap(), "-k", dir.path().to_str().unwrap(), "-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=40"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ready = common::wait_until(30, || {
            as_nobody("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(ready, "PostgreSQL did not accept connections on 127.0.0.1:{port}");
        Postgres { child, url: format!("postgres://nsplay@127.0.0.1:{port}/postgres"), _dir: dir }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
    }
}

/// A node named `name` with its classroom in `pg`.
fn pg_node(pg: &Postgres, name: &'static str) -> Server {
    let mut a = args();
    a.extend(["--database-url", Box::leak(pg.url.clone().into_boxed_str()), "--node", name]);
    Server::start(&a)
}

async fn until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    for _ in 0..120 {
        if probe().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("{what}: not within 30 s");
}

/// Issue #21 item 3: one room in PostgreSQL, its learners on two nodes, the dashboard on a
/// third shows all of them — the steps the host saw, their sessions' memory — and the
/// instructor's notice and the end of a learner's session reach the nodes that hold them.
#[tokio::test]
async fn a_room_in_postgresql_spans_nodes_and_the_dashboard_on_a_third_sees_everyone() {
    let pg = Postgres::start();
    let node = |name: &'static str| pg_node(&pg, name);
    let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
    let r = http()
        .post(format!("{}/api/rooms", c.base))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "Shared", "lessons": ["uts"], "capacity": 4, "closes_at": "2099-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let room: Value = r.json().await.unwrap();
    let (id, code) = (room["id"].as_str().unwrap().to_string(), room["code"].as_str().unwrap().to_string());

    let on_a = join(&a, &code, json!({"name": "On A"})).await;
    let on_b = join(&b, &code, json!({"name": "On B"})).await;
    assert!(on_a["session"].as_str().unwrap().starts_with("node-a."), "{on_a}");
    assert!(on_b["session"].as_str().unwrap().starts_with("node-b."), "{on_b}");
    let mut t = attach(&a, &on_a).await;
    t.cmd_wait("unshare -u /bin/sh", 30).await;
    t.cmd_wait("hostname my-new-hostname", 30).await;
    until("the host sees the step on node a", async || check(&a, on_a["session"].as_str().unwrap()).await).await;

    // The dashboard on node c: both learners, live (their nodes' reports), the step as done.
    let mut p = Value::Null;
    until("node c's dashboard shows both learners live", async || {
        p = instructor_get(&c, &format!("/api/rooms/{id}/progress")).await;
        p["learners"].as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|l| l["online"] == true))
    })
    .await;
    assert_eq!(
        matrix(&p),
        vec![("On A".to_string(), vec!["uts/set-hostname".to_string()], 1), ("On B".to_string(), vec![], 0)],
        "{p}"
    );
    assert!(p["learners"].as_array().unwrap().iter().all(|l| l["memory_bytes"].as_i64() > Some(0)), "{p}");

    // A notice sent on c is in the status that nodes a and b answer.
    let r = http()
        .post(format!("{}/api/rooms/{id}/notices", c.base))
        .bearer_auth(TOKEN)
        .json(&json!({"text": "Five minutes left"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (server, l) in [(&a, &on_a), (&b, &on_b)] {
        let s: Value = http()
            .get(format!("{}/api/join/{code}/status?learner={}", server.base, l["learner"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(s["notices"][0]["text"], "Five minutes left", "{s}");
    }

    // A sign-in made on c is good on a, where the learner's session and its read-only view are.
    let r =
        http().post(format!("{}/api/instructor/login", c.base)).json(&json!({"token": TOKEN})).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let view = format!("{}/api/sessions/{}/terminals/0/view", a.base, on_a["session"].as_str().unwrap());
    let r = http().get(&view).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 400, "signed in, found, but not a WebSocket request: {}", r.text().await.unwrap());
    assert_eq!(http().get(&view).send().await.unwrap().status(), 401);

    // Ending the learner on b from c: node b ends the session at its next sweep.
    let r = http()
        .post(format!("{}/api/rooms/{id}/learners/{}/end", c.base, on_b["learner"].as_str().unwrap()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let gone = format!("{}/api/sessions/{}", b.base, on_b["session"].as_str().unwrap());
    until("node b ends the session", async || http().get(&gone).send().await.unwrap().status() == 404).await;
    assert_eq!(
        http()
            .get(format!("{}/api/sessions/{}", a.base, on_a["session"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(t);
    drop((a, b, c));
    drop(pg);
}

/// "Prepare" on one node of a shared PostgreSQL builds the room's sessions on every node: each
/// node's sweep finds the ask in the database and builds its share (4 expected over 2 nodes: 2
/// each), and a join on a node takes one of that node's.
#[tokio::test]
async fn prepare_on_one_node_builds_every_nodes_share_of_the_room() {
    let pg = Postgres::start();
    let node = |name: &'static str| pg_node(&pg, name);
    let (a, b) = (node("node-a"), node("node-b"));
    let (id, code) = room_with(&a, json!({"title": "Prepared", "lessons": ["uts"], "capacity": 4})).await;
    let prepare = async |s: &Server| {
        let r = http()
            .post(format!("{}/api/rooms/{id}/prepare", s.base))
            .bearer_auth(TOKEN)
            .json(&json!({"expected": 4}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().await.unwrap()
    };
    prepare(&a).await;
    let prepared = async |s: &Server| instructor_get(s, &format!("/api/rooms/{id}")).await["prepared"].clone();
    for s in [&a, &b] {
        until("each node builds its share of the room", async || {
            let p = prepared(s).await;
            p["ready"] == 2 && p["wanted"] == 2
        })
        .await;
    }
    // The dashboard on either node adds up what every node reported (each sweep, 5 s).
    let all = async |s: &Server| instructor_get(s, &format!("/api/rooms/{id}")).await["prepared_all"].clone();
    until("node a's dashboard shows both nodes' prepared sessions", async || {
        all(&a).await == json!({"ready": 4, "wanted": 4, "nodes": 2})
    })
    .await;
    let joined = join(&b, &code, json!({"name": "On B"})).await;
    assert!(joined["session"].as_str().unwrap().starts_with("node-b."), "{joined}");
    let p = prepared(&b).await;
    assert_eq!((p["ready"].as_u64(), p["wanted"].as_u64()), (Some(1), Some(1)), "{p}");
    // The next sweeps keep it so: the learner seated on b counts in b's share.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(prepared(&b).await["wanted"], 1);
    assert_eq!(prepared(&a).await["ready"], 2);
    // An instructor's prepare on b counts its seated learner the same way.
    let again = prepare(&b).await;
    assert_eq!(again["prepared"]["wanted"], 1, "{again}");
    until("the total follows the join", async || all(&a).await == json!({"ready": 3, "wanted": 3, "nodes": 2})).await;
    drop((a, b));
    drop(pg);
}

/// Issue #18: 30 simulated learners join by code and work over the terminal WebSocket — every
/// third does the UTS step, every third only prints its expected output, the rest do nothing —
/// and the dashboard's matrix (API) is exactly that: printing never marks a step.
#[tokio::test]
async fn thirty_learners_and_the_matrix_is_exactly_what_they_did() {
    const N: usize = 30;
    let server = Server::start_in(
        common::Instance::with_slots(32),
        &[
            "--admin-token",
            TOKEN,
            "--warm-pool",
            "4",
            "--max-sessions",
            "32",
            "--max-sessions-per-client",
            "32",
            "--create-per-minute",
            "120",
            "--create-burst",
            "40",
        ],
    );
    let r = http()
        .post(format!("{}/api/rooms", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "Thirty", "lessons": ["uts"], "capacity": N}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let room: Value = r.json().await.unwrap();
    let (id, code) = (room["id"].as_str().unwrap().to_string(), room["code"].as_str().unwrap().to_string());
    let joins = (0..N).map(|i| {
        let (server, code) = (&server, &code);
        async move { join(server, code, json!({"name": format!("learner-{i:02}")})).await }
    });
    let learners = futures_util::future::join_all(joins).await;
    let work = learners.iter().enumerate().map(|(i, l)| {
        let server = &server;
        async move {
            let mut t = attach(server, l).await;
            let session = l["session"].as_str().unwrap();
            match i % 3 {
                0 => {
                    t.cmd_wait("unshare -u /bin/sh", 60).await;
                    t.cmd_wait("hostname my-new-hostname", 60).await;
                    // Checks are rate-limited per session (429): ask again a second later.
                    let url = format!("{}/api/sessions/{session}/checks/uts/set-hostname", server.base);
                    let mut passed = false;
                    for _ in 0..30 {
                        let r = http().post(&url).send().await.unwrap();
                        if r.status() == 200 && r.json::<Value>().await.unwrap()["passed"] == true {
                            passed = true;
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    assert!(passed, "the host never saw learner {i}'s step");
                }
                1 => {
                    t.cmd_wait("echo my-new-hostname; echo Passed; echo ✓", 60).await;
                    assert!(!check(server, session).await, "printing passed a step");
                }
                _ => {}
            }
        }
    });
    futures_util::future::join_all(work).await;
    let p = instructor_get(&server, &format!("/api/rooms/{id}/progress")).await;
    let want: Vec<(String, Vec<String>)> = (0..N)
        .map(|i| (format!("learner-{i:02}"), if i % 3 == 0 { vec!["uts/set-hostname".to_string()] } else { vec![] }))
        .collect();
    let mut got = matrix(&p);
    got.sort();
    assert_eq!(got.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect::<Vec<_>>(), want, "{p}");
    // Checks run: at least one by each doer (it may have asked before the kernel showed the
    // change), exactly one by each printer, none by the idle.
    for (i, (_, _, checks)) in got.iter().enumerate() {
        match i % 3 {
            0 => assert!(*checks >= 1, "{p}"),
            1 => assert_eq!(*checks, 1, "{p}"),
            _ => assert_eq!(*checks, 0, "{p}"),
        }
    }
}

/// Opens `path` as a WebSocket with extra request headers (a cookie, an Origin): the terminal
/// client, or the HTTP status the upgrade was refused with.
async fn connect_with(server: &Server, path: &str, headers: &[(&str, &str)]) -> Result<common::term::Term, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}{path}", server.addr).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(common::term::Term::from_socket(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// Signs in with `token` and returns the `nsplay_instructor=…` cookie pair.
async fn sign_in(server: &Server, token: &str) -> String {
    let r = http().post(format!("{}/api/instructor/login", server.base)).json(&json!({"token": token})).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 204);
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

/// Issue #18: a viewer's keystrokes and resizes never reach the learner's pty, asserted on the
/// pty itself: the learner's shell reads its terminal into a file (`cat > /tmp/got`) while the
/// instructor's view sends keys and a resize; the file then holds only the learner's own line
/// and `stty size` is what the learner set. The view refuses a missing, wrong, signed-out or
/// replaced-token sign-in (401) and a page of another site (403).
#[tokio::test]
async fn a_viewer_never_reaches_the_pty_and_only_a_signed_in_instructor_views() {
    let server = Server::start(&args());
    let r = http()
        .post(format!("{}/api/rooms", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "Watched", "lessons": ["uts"], "capacity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let code = r.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_string();
    let learner = join(&server, &code, json!({"name": "Watched"})).await;
    let view = format!("{}/view", learner["terminal"].as_str().unwrap());
    let own = format!("http://{}", server.addr);

    let mut t = attach(&server, &learner).await;
    t.control(json!({"type": "resize", "cols": 101, "rows": 31})).await;
    assert!(t.cmd("stty size").await.contains("31 101"), "the learner's own resize");
    // The learner's shell now reads its terminal, line by line, into a file.
    t.line("cat > /tmp/got").await;
    t.expect("cat > /tmp/got\r\n", 10).await;

    let cookie = sign_in(&server, TOKEN).await;
    let mut v = connect_with(&server, &view, &[("cookie", &cookie), ("origin", &own)]).await.expect("the view opens");
    assert!(t.pump_until(20, |t| t.controls.iter().any(|c| c["type"] == "viewers" && c["count"] == 1)).await);
    v.send("viewer-typed\r").await;
    v.control(json!({"type": "resize", "cols": 20, "rows": 5})).await;
    // A malformed control message is answered with a notice by the same loop that handled the
    // frames before it: once the viewer has it, its keys and resize went wherever they went.
    v.ws.send(tokio_tungstenite::tungstenite::Message::Text("{oops".into())).await.unwrap();
    assert!(v.pump_until(20, |v| v.controls.iter().any(|c| c["type"] == "notice")).await, "no notice for the viewer");

    t.send("learner-marker\r\x04").await;
    t.expect("# ", 20).await;
    // Every byte the tty gave the learner's `cat`, escapes spelled out by od.
    let got = t.cmd("od -An -c /tmp/got | tr -d ' \\n'; echo").await;
    let got = got.lines().next().unwrap_or_default();
    assert!(!got.contains("viewer"), "the viewer's keys reached the pty: {got}");
    assert_eq!(got, "learner-marker\\n", "only the learner's line reached the pty");
    assert!(t.cmd("stty size").await.contains("31 101"), "the viewer's resize reached the pty");
    // The viewer saw the learner's work all along.
    assert!(v.pump_until(20, |v| common::term::find(&v.out, b"learner-marker").is_some()).await);
    drop(v);

    // Missing, wrong and signed-out sign-ins: 401; a page of another site: 403.
    assert_eq!(connect_with(&server, &view, &[]).await.err(), Some(401));
    let wrong = "nsplay_instructor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(connect_with(&server, &view, &[("cookie", wrong)]).await.err(), Some(401));
    let bad_bearer = "Bearer not-the-admin-token-0000000000";
    assert_eq!(connect_with(&server, &view, &[("authorization", bad_bearer)]).await.err(), Some(401));
    let foreign = [("cookie", cookie.as_str()), ("origin", "http://evil.example")];
    assert_eq!(connect_with(&server, &view, &foreign).await.err(), Some(403));
    let own_port_other_host = format!("http://localhost:{}", server.addr.rsplit(':').next().unwrap());
    let foreign = [("cookie", cookie.as_str()), ("origin", own_port_other_host.as_str())];
    assert_eq!(connect_with(&server, &view, &foreign).await.err(), Some(403));
    let old = sign_in(&server, TOKEN).await;
    let r = http().post(format!("{}/api/instructor/logout", server.base)).header("cookie", &old).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(connect_with(&server, &view, &[("cookie", &old)]).await.err(), Some(401), "a signed-out cookie");
    assert!(connect_with(&server, &view, &[("cookie", &cookie)]).await.is_ok(), "the other sign-in still views");
    drop(t);

    // A new admin token: the old token and the sign-ins made with it are refused.
    const NEW: &str = "replacement-admin-token-9876543210";
    let mut a = args();
    a[1] = NEW;
    let server = server.crash_and_restart(&a);
    let back = join(&server, &code, json!({"learner": learner["learner"]})).await;
    let view = format!("{}/view", back["terminal"].as_str().unwrap());
    let mut t = attach(&server, &back).await;
    let old_bearer = format!("Bearer {TOKEN}");
    assert_eq!(connect_with(&server, &view, &[("authorization", &old_bearer)]).await.err(), Some(401));
    assert_eq!(connect_with(&server, &view, &[("cookie", &cookie)]).await.err(), Some(401), "an old token's sign-in");
    let new_bearer = format!("Bearer {NEW}");
    let v = connect_with(&server, &view, &[("authorization", &new_bearer)]).await;
    assert!(v.is_ok(), "the new token views");
    assert!(t.pump_until(20, |t| t.controls.iter().any(|c| c["type"] == "viewers" && c["count"] == 1)).await);
}

/// The cgroup files of the session whose shell runs `sleep <tag>` (started by the test): its
/// memory, pids and CPU limits, and its relay group's CPU quota, as the kernel has them (v1).
fn cgroup_limits(server: &Server, tag: &str) -> (u64, u64, u64, u64) {
    let mut pids = Vec::new();
    assert!(common::wait_until(20, || {
        pids = server.inst.pids_running(&format!("sleep {tag}"));
        !pids.is_empty()
    }));
    let (_, groups) = server.inst.footprint(pids[0]);
    if common::cgroup_v2() {
        // One hierarchy: the session's group and its relay group, `cpu.max` as "quota period".
        let group = |relay: bool| {
            groups
                .iter()
                .find(|g| common::is_relay_group(g) == relay)
                .unwrap_or_else(|| panic!("no {} group among {groups:?}", if relay { "relay" } else { "session" }))
        };
        let read = |relay: bool, file: &str| std::fs::read_to_string(group(relay).join(file)).unwrap();
        let quota = |relay: bool| read(relay, "cpu.max").split_whitespace().next().unwrap().parse().unwrap();
        return (
            read(false, "memory.max").trim().parse().unwrap(),
            read(false, "pids.max").trim().parse().unwrap(),
            quota(false),
            quota(true),
        );
    }
    let read = |controller: &str, relay: bool, file: &str| -> u64 {
        let g = groups
            .iter()
            .find(|g| g.starts_with(format!("/sys/fs/cgroup/{controller}/")) && common::is_relay_group(g) == relay)
            .unwrap_or_else(|| panic!("no {controller} group among {groups:?}"));
        std::fs::read_to_string(g.join(file)).unwrap().trim().parse().unwrap()
    };
    (
        read("memory", false, "memory.limit_in_bytes"),
        read("pids", false, "pids.max"),
        read("cpu", false, "cpu.cfs_quota_us"),
        read("cpu", true, "cpu.cfs_quota_us"),
    )
}

async fn room_with(server: &Server, body: Value) -> (String, String) {
    let r = http().post(format!("{}/api/rooms", server.base)).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    let status = r.status();
    let room: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{room}");
    (room["id"].as_str().unwrap().to_string(), room["code"].as_str().unwrap().to_string())
}

async fn session_limits(server: &Server, session: &Value) -> Value {
    let url = format!("{}/api/sessions/{}", server.base, session["session"].as_str().unwrap());
    http().get(url).send().await.unwrap().json::<Value>().await.unwrap()["limits"].clone()
}

async fn metric(server: &Server, name: &str) -> u64 {
    let text = http().get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Issue #18: a room's limits tighten its learners' sessions. A learner of a room with 64 MiB
/// and 32 processes gets a pooled session (built with the server's limits) whose cgroup files
/// say 64 MiB and 32 before the shell runs, and the session's API (what the learner's page
/// shows) says so. A room "prepared" gets its sessions
/// built ahead with its own limits, up to its capacity and never past `max_sessions`; its
/// joiners take them, and ending the room tears the rest down.
#[tokio::test]
async fn a_rooms_limits_reach_its_sessions_cgroups_and_prepared_sessions_go_to_its_joiners() {
    common::require_root();
    // Both hierarchies: tests/v2-pass.sh runs it in the cgroup v2 guest.
    // max_sessions 3 with 4 id ranges: the prepare below stops at max_sessions, not at the ids.
    let mut a = args();
    let at = a.iter().position(|x| *x == "--max-sessions").unwrap();
    a[at + 1] = "3";
    let server = Server::start(&a);
    let (_, code) =
        room_with(&server, json!({"title": "Tight", "lessons": ["uts"], "capacity": 2, "limits": {"memory": "64M", "pids": 32, "cpu": 0.25}})).await;
    // Joined from a browser (its learner cookie), as the join page does.
    let cookie = format!("nsplay_learner={:032x}", 0x7301_u128);
    let r = http()
        .post(format!("{}/api/join/{code}", server.base))
        .header("cookie", &cookie)
        .json(&json!({"name": "Tight"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let learner: Value = r.json().await.unwrap();
    let mut t = attach(&server, &learner).await;
    t.cmd("sleep 7301 &").await;
    assert_eq!(cgroup_limits(&server, "7301"), (64 << 20, 32, 25_000, 25_000));
    // The lesson's text names the limits of the learner's own session: the room's, not the
    // server's (what the learner then sees in the inspector and the limit notices).
    let page = |cookie: Option<&str>| {
        let mut r = http().get(format!("{}/learn/cgroups", server.base));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        async move { r.send().await.unwrap().text().await.unwrap() }
    };
    let mine = page(Some(&cookie)).await;
    assert!(mine.contains("64 MiB") && !mine.contains("256 MiB"), "the room learner's lesson does not name 64 MiB");
    let pids_cpu = if common::cgroup_v2() {
        "<code>pids.max</code> = 32 and <code>cpu.max</code> = 0.25 CPU"
    } else {
        "at most 32 processes and 0.25 CPU"
    };
    assert!(mine.contains(pids_cpu), "the room's pids and CPU: {mine}");
    let others = page(None).await;
    assert!(others.contains("256 MiB") && !others.contains("64 MiB"), "everyone else's lesson names the server's");
    let limits = session_limits(&server, &learner).await;
    assert_eq!(
        (limits["memory_bytes"].as_u64(), limits["pids"].as_u64(), limits["cpu"].as_f64()),
        (Some(64 << 20), Some(32), Some(0.25)),
        "{limits}"
    );
    drop(t);
    let gone = format!("{}/api/sessions/{}", server.base, learner["session"].as_str().unwrap());
    assert_eq!(http().delete(gone).send().await.unwrap().status(), 204);

    // Prepare: a room of capacity 2 gets two sessions built ahead, with its own limits.
    let (prep_id, prep_code) = room_with(
        &server,
        json!({"title": "Prepared", "lessons": ["uts"], "capacity": 2, "limits": {"memory": "48M", "pids": 24}}),
    )
    .await;
    let prepare = |id: &str, body: Value| {
        http().post(format!("{}/api/rooms/{id}/prepare", server.base)).bearer_auth(TOKEN).json(&body).send()
    };
    let r = prepare(&prep_id, json!({"expected": 10})).await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["prepared"]["wanted"], 2, "bounded by the room's capacity");
    let mut state = Value::Null;
    until("the prepared room's two sessions are ready", async || {
        state = instructor_get(&server, &format!("/api/rooms/{prep_id}")).await["prepared"].clone();
        state["ready"] == 2 && state["building"] == false
    })
    .await;
    let taken_before = metric(&server, "nsplay_reserve_taken_total").await;
    let a = join(&server, &prep_code, json!({"name": "A"})).await;
    let b = join(&server, &prep_code, json!({"name": "B"})).await;
    assert_eq!(
        metric(&server, "nsplay_reserve_taken_total").await,
        taken_before + 2,
        "the joiners got the prepared sessions"
    );
    let state = instructor_get(&server, &format!("/api/rooms/{prep_id}")).await["prepared"].clone();
    assert_eq!((state["ready"].as_u64(), state["wanted"].as_u64()), (Some(0), Some(0)), "{state}");
    for (l, tag) in [(&a, "7302"), (&b, "7303")] {
        let mut t = attach(&server, l).await;
        t.cmd(&format!("sleep {tag} &")).await;
        let (memory, pids, _, _) = cgroup_limits(&server, tag);
        assert_eq!((memory, pids), (48 << 20, 24));
        assert_eq!(session_limits(&server, l).await["pids"], 24);
    }

    // The server is full now (max_sessions 3: two learners and the warm pool's one): a prepare
    // builds nothing past it.
    let (full_id, _) = room_with(&server, json!({"title": "Full", "lessons": ["uts"], "capacity": 3})).await;
    let r = prepare(&full_id, json!({})).await.unwrap();
    assert_eq!(r.status(), 202);
    until("the full server's reserve stops", async || {
        instructor_get(&server, &format!("/api/rooms/{full_id}")).await["prepared"]["building"] == false
    })
    .await;
    let state = instructor_get(&server, &format!("/api/rooms/{full_id}")).await["prepared"].clone();
    assert_eq!((state["ready"].as_u64(), state["wanted"].as_u64()), (Some(0), Some(3)), "{state}");

    // Ending the prepared room ends its learners' sessions; a reserve of an ended room is gone.
    let r = http().post(format!("{}/api/rooms/{prep_id}/end", server.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 204);
    until("the ended room's two sessions are gone", async || {
        server.inst.pids_running("sleep 7302").is_empty() && server.inst.pids_running("sleep 7303").is_empty()
    })
    .await;
    let r = prepare(&prep_id, json!({})).await.unwrap();
    assert_eq!(r.status(), 410, "an ended room is not prepared");

    // With their two places free, the full room's reserve takes up again where it stopped and
    // builds what now fits (max_sessions 3: two, beside the warm pool's one).
    until("the full room's reserve resumes", async || {
        instructor_get(&server, &format!("/api/rooms/{full_id}")).await["prepared"]["ready"] == 2
    })
    .await;
    let state = instructor_get(&server, &format!("/api/rooms/{full_id}")).await["prepared"].clone();
    assert_eq!((state["wanted"].as_u64(), state["building"].as_bool()), (Some(3), Some(false)), "{state}");
}
