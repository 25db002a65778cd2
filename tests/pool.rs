//! The warm pool (as root): sessions built ahead of visitors with their first shell parked
//! before its exec; how it refills, how it stays within the session cap, and that a burst of
//! requests is served without overshooting the caps.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::term::shell;
use common::{Server, wait_until};

/// Names of the session cgroups of the server (one per sandbox, live or pooled).
fn sandboxes(server: &Server) -> BTreeSet<String> {
    server.inst.session_groups().iter().map(|g| g.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

/// Command names of every process of the server's sandboxes.
fn comms(server: &Server) -> Vec<String> {
    server
        .inst
        .processes()
        .iter()
        .filter_map(|(pid, _)| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}

fn first_line(out: String) -> String {
    out.lines().next().unwrap_or_default().to_string()
}

async fn pool_ready_metric(server: &Server) -> String {
    let m = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    m.lines().find(|l| l.starts_with("nsplay_pool_ready ")).unwrap_or("nsplay_pool_ready missing").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_holds_parked_sessions_hands_one_out_and_refills() {
    let server = Server::start(&["--warm-pool", "2"]);
    assert!(wait_until(10, || sandboxes(&server).len() == 2), "{:?}", sandboxes(&server));
    let before = sandboxes(&server);
    // Parked: built, but no shell has run in them yet.
    let c = comms(&server);
    assert!(c.iter().any(|c| c == "nsplay-init"), "{c:?}");
    assert!(!c.iter().any(|c| c == "bash"), "{c:?}");
    assert_eq!(pool_ready_metric(&server).await, "nsplay_pool_ready 2");

    let (s, mut t) = shell(&server).await;
    // The parked process became the shell: PID 2 inside, right after init.
    assert_eq!(first_line(t.cmd("echo $$").await), "2");
    assert_eq!(first_line(t.cmd("uname -n").await), "nsplay");
    let live = sandboxes(&server);
    assert!(live.intersection(&before).count() == 2, "the session came from the pool: {before:?} {live:?}");
    // Refilled in the background: one live session and two ready ones.
    assert!(wait_until(10, || sandboxes(&server).len() == 3), "{:?}", sandboxes(&server));
    assert_eq!(comms(&server).iter().filter(|c| *c == "bash").count(), 1);

    let id = s["id"].as_str().unwrap();
    let r = reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(wait_until(10, || sandboxes(&server).len() == 2), "{:?}", sandboxes(&server));
    assert!(!comms(&server).iter().any(|c| c == "bash"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_stays_within_max_sessions() {
    let server = Server::start(&["--warm-pool", "4", "--max-sessions", "2", "--max-sessions-per-client", "5"]);
    assert!(wait_until(10, || sandboxes(&server).len() == 2));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sandboxes(&server).len(), 2, "the pool built beyond max_sessions");
    let (a, _ta) = shell(&server).await;
    let (_b, _tb) = shell(&server).await;
    let r = reqwest::Client::new().post(format!("{}/api/sessions", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(sandboxes(&server).len(), 2);
    assert_eq!(pool_ready_metric(&server).await, "nsplay_pool_ready 0");
    // Room again: the pool takes it, and the next visitor gets that session.
    let id = a["id"].as_str().unwrap();
    let r = reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(wait_until(10, || sandboxes(&server).len() == 2));
    let (_c, mut tc) = shell(&server).await;
    assert_eq!(first_line(tc.cmd("id -u").await), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_pool_sessions_are_built_on_demand() {
    let server = Server::start(&["--warm-pool", "0"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(sandboxes(&server).is_empty(), "{:?}", sandboxes(&server));
    assert!(server.inst.processes().is_empty());
    let (s, mut t) = shell(&server).await;
    assert_eq!(first_line(t.cmd("echo $$").await), "2");
    let id = s["id"].as_str().unwrap();
    let r = reqwest::Client::new().delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(wait_until(5, || server.inst.processes().is_empty()), "{:?}", server.inst.processes());
    assert!(sandboxes(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_beyond_the_cap_gets_exactly_the_cap() {
    let server = Server::start(&[
        "--warm-pool",
        "1",
        "--max-sessions",
        "4",
        "--max-sessions-per-client",
        "10",
        "--create-per-minute",
        "600",
        "--create-burst",
        "20",
    ]);
    let c = reqwest::Client::new();
    let posts = (0..10).map(|_| c.post(format!("{}/api/sessions", server.base)).send());
    let answers = futures_util::future::join_all(posts).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.as_ref().unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 6, "{statuses:?}");
    assert_eq!(sandboxes(&server).len(), 4);
    // Every admitted session works.
    for r in answers.into_iter().flatten().filter(|r| r.status() == 201) {
        let s: serde_json::Value = r.json().await.unwrap();
        let mut t = common::term::attach(&server, &s).await;
        assert_eq!(first_line(t.cmd("echo ok").await), "ok");
    }
}
