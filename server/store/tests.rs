//! The store on a temporary SQLite file: migrations, every table round trip, the capacity
//! guard, WAL mode, and what a SIGKILLed writer leaves behind.

use std::io::BufRead;
use std::process::{Command, Stdio};

use super::*;

fn room(id: &str, code: &str) -> RoomRow {
    RoomRow {
        id: id.into(),
        code: code.into(),
        title: "Namespaces 101".into(),
        lessons: vec!["uts".into(), "pid".into()],
        capacity: 2,
        memory_bytes: Some(128 << 20),
        pids: None,
        cpu_millis: Some(250),
        opens_at: None,
        closes_at: Some(2_000_000_000_000),
        created_at: 1_700_000_000_000,
        ended_at: None,
        image: Some("tools".into()),
        prepare_expected: None,
    }
}

fn learner(id: &str, room: &str) -> LearnerRow {
    LearnerRow {
        id: id.into(),
        room_id: room.into(),
        name: Some("Ada <b>".into()),
        session_id: Some("s1".into()),
        joined_at: 1,
        last_seen_at: 1,
        report: None,
        end_requested_at: None,
    }
}

#[tokio::test]
async fn migrates_once_and_reopens_at_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_dir(&dir.path().join("data")).await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), 3);
    let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(&s.pool).await.unwrap().try_get(0).unwrap();
    assert_eq!(mode, "wal");
    s.set_setting("k", "v1").await.unwrap();
    s.set_setting("k", "v2").await.unwrap();
    s.close().await;
    let s = Store::open_dir(&dir.path().join("data")).await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), 3);
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(s.setting("missing").await.unwrap(), None);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("data")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the data directory is the server's alone");
}

#[tokio::test]
async fn rooms_learners_checks_and_events_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_dir(dir.path()).await.unwrap();
    let r = room("r1", "ABC234");
    assert!(s.insert_room(&r).await.unwrap());
    assert!(!s.insert_room(&room("r2", "ABC234")).await.unwrap(), "a taken code is refused");
    assert_eq!(s.room("r1").await.unwrap().unwrap(), r);
    assert_eq!(s.room_by_code("ABC234").await.unwrap().unwrap().id, "r1");
    assert_eq!(s.room_by_code("ZZZZZZ").await.unwrap(), None);
    assert_eq!(s.rooms().await.unwrap().len(), 1);

    // A room's opening asks only if no instructor did; an instructor's ask replaces.
    assert!(s.set_prepare("r1", 2, true).await.unwrap());
    assert!(!s.set_prepare("r1", 9, true).await.unwrap());
    assert_eq!(s.room("r1").await.unwrap().unwrap().prepare_expected, Some(2));
    assert!(s.set_prepare("r1", 0, false).await.unwrap());
    assert_eq!(s.room("r1").await.unwrap().unwrap().prepare_expected, Some(0));
    assert!(!s.set_prepare("nope", 1, false).await.unwrap());
    // Nodes: a beat replaces the last one; only those seen since count.
    s.heartbeat("a", 100).await.unwrap();
    s.heartbeat("b", 100).await.unwrap();
    s.heartbeat("a", 200).await.unwrap();
    assert_eq!(s.live_nodes(150).await.unwrap(), 1);
    assert_eq!(s.live_nodes(100).await.unwrap(), 2);
    // Reserves: each node's latest row; only fresh rows count.
    s.report_reserves("a", &[("r1".into(), 2, 3)], 200).await.unwrap();
    s.report_reserves("b", &[("r1".into(), 1, 3)], 100).await.unwrap();
    s.report_reserves("a", &[("r1".into(), 3, 3)], 210).await.unwrap();
    assert_eq!(s.reserves_of("r1", 150).await.unwrap(), (3, 3, 1));
    assert_eq!(s.reserves_of("r1", 0).await.unwrap(), (4, 6, 2));
    assert_eq!(s.reserves_of("r2", 0).await.unwrap(), (0, 0, 0));

    assert!(s.insert_learner(&learner("l1", "r1"), r.capacity).await.unwrap());
    assert!(s.insert_learner(&learner("l2", "r1"), r.capacity).await.unwrap());
    assert!(!s.insert_learner(&learner("l3", "r1"), r.capacity).await.unwrap(), "capacity 2");
    assert_eq!(s.count_learners("r1").await.unwrap(), 2);
    assert_eq!(s.learner("l1").await.unwrap().unwrap().name.as_deref(), Some("Ada <b>"));
    s.set_learner_session("l2", "s9", 5).await.unwrap();
    let ls = s.learners("r1").await.unwrap();
    assert_eq!(ls.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["l1", "l2"]);
    assert_eq!(ls[1].session_id.as_deref(), Some("s9"));

    let c = CheckRow {
        learner_id: "l1".into(),
        room_id: "r1".into(),
        lesson: "uts".into(),
        step: "set-hostname".into(),
        passed: true,
        at: 42,
    };
    s.insert_check(&c).await.unwrap();
    s.insert_check(&CheckRow { passed: false, at: 43, ..c.clone() }).await.unwrap();
    let checks = s.checks("r1").await.unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0], c);
    assert!(!checks[1].passed);
    assert_eq!(s.learner("l1").await.unwrap().unwrap().last_seen_at, 43, "a check is activity");

    for at in [10, 11, 12] {
        let e = EventRow { room_id: "r1".into(), at, kind: "join".into(), learner_id: None, detail: format!("{at}") };
        s.insert_event(&e).await.unwrap();
    }
    let ev = s.events("r1", 2).await.unwrap();
    assert_eq!(ev.iter().map(|e| e.at).collect::<Vec<_>>(), [11, 12], "the newest two, oldest first");

    // What a node reports of a learner's session, and an end request a new session clears.
    let report = SessionReport { at: 50, last_input_at: 45, memory_bytes: 1 << 20, pids: 3 };
    s.report_sessions(&[("l2".into(), "s9".into(), report.clone()), ("l1".into(), "old".into(), report.clone())])
        .await
        .unwrap();
    assert_eq!(s.learner("l2").await.unwrap().unwrap().report, Some(report), "reported");
    assert_eq!(s.learner("l1").await.unwrap().unwrap().report, None, "not the learner's current session");
    assert!(s.request_end("r1", "l2", 60).await.unwrap());
    assert!(!s.request_end("r2", "l2", 60).await.unwrap(), "a learner of another room");
    assert_eq!(s.learner("l2").await.unwrap().unwrap().end_requested_at, Some(60));
    s.set_learner_session("l2", "s10", 61).await.unwrap();
    let l2 = s.learner("l2").await.unwrap().unwrap();
    assert_eq!((l2.end_requested_at, l2.report), (None, None), "a new session starts clean");
    let before = s.room_fingerprint("r1").await.unwrap();
    s.insert_event(&EventRow {
        room_id: "r1".into(),
        at: 70,
        kind: "notice".into(),
        learner_id: None,
        detail: "hi".into(),
    })
    .await
    .unwrap();
    assert_ne!(s.room_fingerprint("r1").await.unwrap(), before, "an event changes the fingerprint");
    let notices = s.events_of("r1", "notice", 5).await.unwrap();
    assert_eq!(notices.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(), ["hi"]);
    assert!(s.set_closes_at("r1", 3_000_000_000_000).await.unwrap());
    assert_eq!(s.room("r1").await.unwrap().unwrap().closes_at, Some(3_000_000_000_000));

    assert!(s.end_room("r1", 99).await.unwrap());
    assert!(!s.set_closes_at("r1", 4_000_000_000_000).await.unwrap(), "an ended room is not extended");
    assert!(!s.end_room("r1", 100).await.unwrap(), "ended once");
    assert_eq!(s.room("r1").await.unwrap().unwrap().ended_at, Some(99));
}

#[tokio::test]
async fn instructor_sign_ins_expire_and_can_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_dir(dir.path()).await.unwrap();
    let row = InstructorRow { token_hash: "t".into(), csrf: "c".into(), expires_at: 100 };
    s.insert_instructor("a", &row, 10).await.unwrap();
    assert_eq!(s.instructor("a").await.unwrap(), Some(row.clone()));
    // A new sign-in after "a" expired removes it.
    s.insert_instructor("b", &InstructorRow { expires_at: 500, ..row.clone() }, 200).await.unwrap();
    assert_eq!(s.instructor("a").await.unwrap(), None);
    s.delete_instructor("b").await.unwrap();
    assert_eq!(s.instructor("b").await.unwrap(), None);
}

#[test]
fn a_database_url_is_logged_without_its_password() {
    assert_eq!(redact("postgres://nsplay:s3cret@db:5432/nsplay"), "postgres://nsplay:***@db:5432/nsplay");
    assert_eq!(redact("sqlite:///var/lib/nsplay/nsplay.db"), "sqlite:///var/lib/nsplay/nsplay.db");
}

const CHILD_DIR: &str = "NSPLAY_STORE_CHILD_DIR";
const CHILD_ROWS: i64 = 50;

/// The child of [`a_sigkilled_writer_loses_nothing_it_committed`]: writes, says so, waits to
/// be killed.
#[tokio::test]
#[ignore = "the child process of a_sigkilled_writer_loses_nothing_it_committed"]
async fn child_writes_then_waits_to_be_killed() {
    let dir = std::env::var(CHILD_DIR).expect("run by a_sigkilled_writer_loses_nothing_it_committed");
    let s = Store::open_dir(Path::new(&dir)).await.unwrap();
    s.insert_room(&room("r1", "ABC234")).await.unwrap();
    s.insert_learner(&learner("l1", "r1"), 10).await.unwrap();
    for at in 0..CHILD_ROWS {
        let c = CheckRow {
            learner_id: "l1".into(),
            room_id: "r1".into(),
            lesson: "uts".into(),
            step: format!("s{at}"),
            passed: at % 2 == 0,
            at,
        };
        s.insert_check(&c).await.unwrap();
    }
    println!("committed {CHILD_ROWS}");
    tokio::time::sleep(Duration::from_secs(120)).await;
    panic!("the parent should have killed this process");
}

#[tokio::test]
async fn a_sigkilled_writer_loses_nothing_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "store::tests::child_writes_then_waits_to_be_killed", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let said = std::io::BufReader::new(out).lines().map_while(Result::ok).find(|l| l.starts_with("committed"));
    assert_eq!(said.as_deref(), Some("committed 50"), "the child did not report its writes");
    assert!(dir.path().join("nsplay.db-wal").exists(), "the writes went through the write-ahead log");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");

    let s = Store::open_dir(dir.path()).await.unwrap();
    let checks = s.checks("r1").await.unwrap();
    assert_eq!(checks.len(), CHILD_ROWS as usize);
    assert_eq!(checks.iter().filter(|c| c.passed).count(), 25);
    assert_eq!(s.learners("r1").await.unwrap()[0].last_seen_at, CHILD_ROWS - 1);
}
