//! Every lesson, end to end: a session started for it, each step's commands typed through the
//! terminal WebSocket exactly as the Run button does, and each check asked from the server —
//! failing before the step, passing after. Printing the expected text never passes a check.

mod common;

use common::Server;
use common::term::attach;
use serde_json::{Value, json};

/// Asks for a check; when the session's check rate is spent (429), waits as `Retry-After` says,
/// as the page would (this walk checks every step before and after, and polls).
async fn check(server: &Server, id: &str, topic: &str, step: &str, lang: &str) -> Value {
    for _ in 0..30 {
        let r = reqwest::Client::new()
            .post(format!("{}/api/sessions/{id}/checks/{topic}/{step}", server.base))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            continue;
        }
        assert_eq!(r.status(), 200);
        return r.json().await.unwrap();
    }
    panic!("{topic}/{step}: the check stayed refused");
}

async fn walk(topic: &str) {
    // The server reads the lessons as written for the hierarchy it detects; so does the test.
    let h = if common::cgroup_v2() { nsplay::Hierarchy::V2 } else { nsplay::Hierarchy::V1 };
    let lesson = nsplay::find_lesson(topic, h).expect("lesson exists");
    let server = Server::start(&[]);
    let r = reqwest::Client::new()
        .post(format!("{}/api/sessions", server.base))
        .json(&json!({"lesson": topic}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s: Value = r.json().await.unwrap();
    let id = s["id"].as_str().unwrap().to_string();
    let mut t = attach(&server, &s).await;
    for step in &lesson.steps {
        if step.check.is_some() {
            let before = check(&server, &id, topic, &step.id, "en").await;
            assert_eq!(before["passed"], false, "{topic}/{}: passed before the step: {before}", step.id);
            // Printing what a passing step would show must not pass it.
            let fake = before["detail"].as_str().unwrap().replace(['\'', '`', '$', '\\'], "");
            t.cmd_wait(&format!("echo '{}'", fake.chars().take(60).collect::<String>()), 20).await;
            assert_eq!(check(&server, &id, topic, &step.id, "en").await["passed"], false);
        }
        for c in &step.commands {
            let out = t.cmd_wait(c, 90).await;
            // A lesson's commands fit the host they run on: none reads a file that is not there
            // (the cgroups lesson on a v1 host printed five of these before it had variants).
            assert!(!out.contains("No such file or directory"), "{topic}/{}: `{c}` printed:\n{out}", step.id);
            if (topic, step.id.as_str()) == ("ipc", "nested-queue") {
                // What the background job prints comes before the prompt, not after it.
                assert!(out.contains("Message queue id: 0"), "ipc/nested-queue printed before its prompt:\n{out}");
            }
        }
        if step.check.is_some() {
            // Background commands (`… &`) may need a moment to reach the state checked.
            let mut after = check(&server, &id, topic, &step.id, "en").await;
            for _ in 0..20 {
                if after["passed"] == true {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                after = check(&server, &id, topic, &step.id, "en").await;
            }
            assert_eq!(
                after["passed"],
                true,
                "{topic}/{}: {after}\nscreen:\n{}",
                step.id,
                String::from_utf8_lossy(&t.out)
            );
            let ja = check(&server, &id, topic, &step.id, "ja").await;
            assert_eq!(ja["passed"], true);
            assert!(ja["detail"].as_str().unwrap().chars().any(|c| c > '\u{3000}'), "no Japanese: {ja}");
        }
    }
}

macro_rules! lesson_test {
    ($name:ident, $topic:literal) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            walk($topic).await;
        }
    };
}

lesson_test!(uts_lesson, "uts");
lesson_test!(pid_lesson, "pid");
lesson_test!(mnt_lesson, "mnt");
lesson_test!(ipc_lesson, "ipc");
lesson_test!(net_lesson, "net");
lesson_test!(user_lesson, "user");
lesson_test!(time_lesson, "time");
lesson_test!(cgroup_lesson, "cgroup");
lesson_test!(cgroups_lesson, "cgroups");
