//! Classroom mode end to end on a real server (root): learners join a room by its code and get
//! real sessions; one does a lesson step over the terminal WebSocket, one only prints the
//! step's expected output, one does nothing; the dashboard's API shows exactly that. Then the
//! server is SIGKILLed and restarted on the same data directory: the room and the progress are
//! still there, and a learner rejoining from the same browser is the same learner in a fresh
//! session.

mod common;

use common::Server;
use common::term::attach;
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
