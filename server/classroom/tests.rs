//! The classroom's rules over a store in a temporary directory (no root, no sessions).

use super::*;

pub(crate) fn config(token: Option<&str>) -> ClassroomConfig {
    ClassroomConfig {
        admin_token: token.map(str::to_string),
        open: true,
        limits: Limits { memory_bytes: 256 << 20, pids: 128, cpu: 0.5, disk_bytes: 64 << 20, shm_bytes: 16 << 20 },
        max_sessions: 50,
        lessons: std::sync::Arc::new(crate::lessons::Catalog::builtin(crate::lessons::Hierarchy::V2)),
        stuck_after: Duration::from_secs(600),
        node: "test".into(),
        images: vec!["tools".into()],
    }
}

pub(crate) fn new_room(lessons: &[&str]) -> NewRoom {
    NewRoom {
        title: "Namespaces 101".into(),
        lessons: lessons.iter().map(|s| s.to_string()).collect(),
        ..NewRoom::default()
    }
}

#[tokio::test]
async fn a_generated_token_is_shown_once_and_stored_only_as_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    let (c, token) = Classroom::start(store.clone(), config(None)).await.unwrap();
    let token = token.expect("a first start makes a token");
    assert!(token.len() >= 43, "32 random bytes: {token}");
    assert!(c.bearer_ok(&token));
    assert!(!c.bearer_ok("not-the-token"));
    let db = std::fs::read(dir.path().join("nsplay.db")).unwrap();
    let wal = std::fs::read(dir.path().join("nsplay.db-wal")).unwrap_or_default();
    let appears = |hay: &[u8]| hay.windows(token.len()).any(|w| w == token.as_bytes());
    assert!(!appears(&db) && !appears(&wal), "the token itself is never written");
    // The next start finds the hash and shows nothing.
    let (c2, again) = Classroom::start(store.clone(), config(None)).await.unwrap();
    assert_eq!(again, None);
    assert!(c2.bearer_ok(&token));
}

#[tokio::test]
async fn a_new_configured_token_ends_older_sign_ins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    let (c, _) = Classroom::start(store.clone(), config(Some("first-token-0123456"))).await.unwrap();
    assert!(matches!(c.sign_in("wrong").await, Err(ClassroomError::Auth(AuthError::BadToken))));
    let s = c.sign_in("first-token-0123456").await.unwrap();
    let i = c.instructor(&s.cookie).await.unwrap().expect("signed in");
    assert_eq!(i.csrf, s.csrf);
    assert!(c.instructor("forged").await.unwrap().is_none());
    let (c2, _) = Classroom::start(store, config(Some("second-token-0123456"))).await.unwrap();
    assert!(c2.instructor(&s.cookie).await.unwrap().is_none(), "signed in with the old token");
    assert!(!c2.bearer_ok("first-token-0123456"), "the old token");
    c2.sign_out(&s.cookie).await.unwrap();
}

#[tokio::test]
async fn rooms_may_tighten_the_servers_limits_but_never_exceed_them() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = Classroom::start(Store::open_dir(dir.path()).await.unwrap(), config(None)).await.unwrap();
    let err = |r: Result<RoomRow, ClassroomError>| match r {
        Err(ClassroomError::Room(e)) => e,
        other => panic!("not a room error: {other:?}"),
    };
    let mut n = new_room(&["uts", "pid"]);
    n.limits = RoomLimits { memory: Some("128M".into()), pids: Some(64), cpu: Some(0.25) };
    n.capacity = Some(12);
    let r = c.create_room(n.clone()).await.unwrap();
    assert_eq!((r.memory_bytes, r.pids, r.cpu_millis, r.capacity), (Some(128 << 20), Some(64), Some(250), 12));
    // Its sessions' limits: the server's, tightened to the room's; unset ones are the server's.
    let server = c.limits_for(&RoomRow { memory_bytes: None, pids: None, cpu_millis: None, ..r.clone() });
    let room = c.limits_for(&r);
    assert_eq!((room.memory_bytes, room.pids, room.cpu), (128 << 20, 64, 0.25));
    assert_eq!((room.disk_bytes, room.shm_bytes), (server.disk_bytes, server.shm_bytes));
    assert!(server.memory_bytes > room.memory_bytes && server.pids > room.pids && server.cpu > room.cpu);
    assert_eq!(r.lessons, ["uts", "pid"], "the order as given");
    assert!(normalize_code(&r.code).is_some());
    n.limits.memory = Some("1G".into());
    let memory = RoomError::Limit { what: "memory", min: "32 MiB".into(), max: "256 MiB".into() };
    assert_eq!(err(c.create_room(n.clone()).await), memory);
    // Below what a session needs to work: refused when the room is made, not at every join.
    n.limits.memory = Some("16M".into());
    assert_eq!(err(c.create_room(n.clone()).await), memory);
    assert!(crate::text::render("en", &memory).contains("at least 32 MiB"), "{}", crate::text::render("en", &memory));
    assert!(crate::text::render("ja", &memory).contains("32 MiB"));
    n.limits.memory = None;
    n.limits.pids = Some(4);
    assert!(matches!(err(c.create_room(n.clone()).await), RoomError::Limit { what: "pids", .. }));
    n.limits.pids = Some(129);
    assert!(matches!(err(c.create_room(n.clone()).await), RoomError::Limit { what: "pids", .. }));
    n.limits.pids = None;
    n.limits.cpu = Some(2.0);
    assert!(matches!(err(c.create_room(n.clone()).await), RoomError::Limit { what: "cpu", .. }));
    n.limits.cpu = None;
    n.capacity = Some(51);
    assert_eq!(err(c.create_room(n.clone()).await), RoomError::Capacity { max: 50 });
    n.capacity = None;
    assert_eq!(err(c.create_room(new_room(&[])).await), RoomError::Lessons);
    assert_eq!(err(c.create_room(new_room(&["uts", "uts"])).await), RoomError::Lessons);
    assert_eq!(err(c.create_room(new_room(&["nope"])).await), RoomError::UnknownLesson("nope".into()));
    // Only an image the create API would take; an empty choice is the lessons' own.
    let image = |i: &str| NewRoom { image: Some(i.into()), ..new_room(&["uts"]) };
    assert_eq!(err(c.create_room(image("other")).await), RoomError::UnknownImage("other".into()));
    assert_eq!(c.create_room(image("tools")).await.unwrap().image.as_deref(), Some("tools"));
    assert_eq!(c.create_room(image(" ")).await.unwrap().image, None);
    assert_eq!(err(c.create_room(NewRoom { title: " ".into(), ..new_room(&["uts"]) }).await), RoomError::Title);
    let times = NewRoom {
        opens_at: Some("2030-01-01T10:00:00Z".into()),
        closes_at: Some("2030-01-01T09:00:00Z".into()),
        ..new_room(&["uts"])
    };
    assert_eq!(err(c.create_room(times).await), RoomError::Time("closes_at"));
    let bad = NewRoom { opens_at: Some("tomorrow".into()), ..new_room(&["uts"]) };
    assert_eq!(err(c.create_room(bad).await), RoomError::Time("opens_at"));
}

#[tokio::test]
async fn joins_are_refused_when_unknown_not_open_closed_or_full() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = Classroom::start(Store::open_dir(dir.path()).await.unwrap(), config(None)).await.unwrap();
    let join_err = |r: Result<Admitted, ClassroomError>| match r {
        Err(ClassroomError::Join(e)) => e,
        other => panic!("not a join error: {other:?}"),
    };
    assert_eq!(join_err(c.admit("ZZZZZZ", "", None).await), JoinError::NotFound);
    assert_eq!(join_err(c.admit("<script>", "", None).await), JoinError::NotFound);
    let later = NewRoom { opens_at: Some("2099-01-01T00:00:00Z".into()), ..new_room(&["uts"]) };
    let later = c.create_room(later).await.unwrap();
    assert!(matches!(join_err(c.admit(&later.code, "", None).await), JoinError::NotOpen { .. }));
    let past = NewRoom { closes_at: Some("2001-01-01T00:00:00Z".into()), ..new_room(&["uts"]) };
    let past = c.create_room(past).await.unwrap();
    assert_eq!(join_err(c.admit(&past.code, "", None).await), JoinError::Closed);

    let r = c.create_room(NewRoom { capacity: Some(2), ..new_room(&["uts"]) }).await.unwrap();
    let a = c.admit(&r.code.to_lowercase(), " Ada ", None).await.unwrap();
    assert_eq!(a.learner.name.as_deref(), Some("Ada"));
    assert!(!a.returning);
    assert!(matches!(join_err(c.admit(&r.code, "x\u{0}", None).await), JoinError::Name(_)));
    c.admit(&r.code, "", None).await.unwrap();
    assert_eq!(join_err(c.admit(&r.code, "Third", None).await), JoinError::Full { capacity: 2 });
    // The same browser comes back: the same learner, even in a full room.
    let again = c.admit(&r.code, "ignored", Some(&a.learner.id)).await.unwrap();
    assert!(again.returning);
    assert_eq!(again.learner.id, a.learner.id);
    assert!(c.end_room(&r.id).await.unwrap());
    assert_eq!(join_err(c.admit(&r.code, "", Some(&a.learner.id)).await), JoinError::Closed);
}

#[tokio::test]
async fn progress_counts_only_passed_checks_of_the_rooms_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = Classroom::start(Store::open_dir(dir.path()).await.unwrap(), config(None)).await.unwrap();
    let r = c.create_room(new_room(&["uts", "pid"])).await.unwrap();
    let a = c.admit(&r.code, "=HYPERLINK(\"x\")", None).await.unwrap();
    let b = c.admit(&r.code, "Bo", None).await.unwrap();
    c.seat(&a, "sess-a").await.unwrap();
    let p = c.progress(&r.id).await.unwrap().unwrap();
    let uts: Vec<_> = p.steps.iter().filter(|s| s.lesson == "uts").map(|s| s.step.clone()).collect();
    assert!(uts.contains(&"set-hostname".to_string()), "{uts:?}");
    assert!(p.steps.iter().all(|s| {
        crate::lessons::catalog::load(crate::lessons::Hierarchy::V2, &[])
            .find(&s.lesson)
            .unwrap()
            .step(&s.step)
            .unwrap()
            .check
            .is_some()
    }));
    assert!(p.learners.iter().all(|l| l.passed.iter().all(|x| !x) && l.current_lesson == "uts"));

    c.record_check(&a.learner.id, "uts", "set-hostname", false).await.unwrap();
    c.record_check(&a.learner.id, "uts", "set-hostname", true).await.unwrap();
    let pid_step = p.steps.iter().find(|s| s.lesson == "pid").unwrap().step.clone();
    c.record_check(&b.learner.id, "pid", &pid_step, false).await.unwrap();
    c.record_check("no-such-learner", "uts", "set-hostname", true).await.unwrap();
    let p = c.progress(&r.id).await.unwrap().unwrap();
    let col = p.steps.iter().position(|s| s.lesson == "uts" && s.step == "set-hostname").unwrap();
    // Both joined in the same millisecond, perhaps: the order is then the ids', which are random.
    let of = |id: &str| p.learners.iter().find(|l| l.id == id).unwrap();
    let (la, lb) = (of(&a.learner.id), of(&b.learner.id));
    assert_eq!(la.session.as_deref(), Some("sess-a"));
    assert_eq!(la.passed_count, 1);
    assert!(la.passed[col]);
    assert_eq!(la.checks, 2);
    assert_eq!(lb.passed_count, 0, "a failed check marks nothing");
    assert_eq!(lb.current_lesson, "pid");
    let text = csv(&p);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with("\"learner\",\"name\""), "{}", lines[0]);
    let formula = lines.iter().find(|l| l.contains("HYPERLINK")).expect("learner a's row");
    assert!(formula.contains("\"'=HYPERLINK(\"\"x\"\")\""), "a formula is defused and quoted: {formula}");
    assert_eq!(lines.len(), 4, "header, two learners, the final CRLF");
}

/// Every refusal of a room has its words in both languages (a missing entry would show its key).
#[test]
fn every_room_error_has_its_text() {
    use crate::text::Message;
    let all = [
        RoomError::Title,
        RoomError::Lessons,
        RoomError::UnknownLesson("x".into()),
        RoomError::UnknownImage("x".into()),
        RoomError::Capacity { max: 1 },
        RoomError::Limit { what: "pids", min: "8".into(), max: "128".into() },
        RoomError::Time("opens_at"),
        RoomError::Notice,
        RoomError::Extend,
    ];
    for e in all {
        for lang in ["en", "ja"] {
            assert!(crate::text::lookup(lang, e.key()).is_some(), "{} ({lang}) is not in web/ui.toml", e.key());
        }
    }
}
