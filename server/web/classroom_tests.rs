//! The classroom's routes in-process over a fake session layer that seats learners in detached
//! sessions (no root, no sandbox): instructor sign-in and its cookie, wrong, missing and old
//! tokens, cross-site and CSRF-less changes, rooms, join pages in the reader's language, joins
//! and rejoins, `open = false`, check results of room learners, CSV and QR.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::sessions::Sessions;
use super::{AppState, app};
use crate::classroom::{Classroom, ClassroomConfig};
use crate::session::{EndReason, HostView, Learner, NsPair, Requester, Session, SessionError, Terminal};
use crate::store::Store;
use nsplay_sandbox::{Limits, Usage};

const TOKEN: &str = "test-admin-token-0123456789";
const HOST: &str = "class.example:8080";

/// Sessions that are only records: `create` makes a detached one.
#[derive(Clone, Default)]
struct Seats {
    live: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    made: Arc<AtomicUsize>,
}

impl Sessions for Seats {
    async fn create(&self, _label: Option<String>, _who: Requester) -> Result<Arc<Session>, SessionError> {
        let n = self.made.fetch_add(1, Ordering::SeqCst);
        let s = Session::detached(&format!("seat{n}"), Vec::new());
        self.live.lock().unwrap().insert(s.id.clone(), s.clone());
        Ok(s)
    }
    fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.live.lock().unwrap().get(id).cloned().ok_or(SessionError::NotFound)
    }
    fn learner_sessions(&self, learner: Learner) -> Vec<Arc<Session>> {
        self.live.lock().unwrap().values().filter(|s| s.learner == Some(learner)).cloned().collect()
    }
    fn marked(&self, prefix: &str) -> HashMap<String, usize> {
        let live: Vec<_> = self.live.lock().unwrap().values().cloned().collect();
        crate::session::count_marks(&live, prefix)
    }
    async fn reset(&self, _s: &Arc<Session>) -> Result<usize, SessionError> {
        Ok(0)
    }
    async fn end(&self, id: &str, _reason: EndReason) -> Result<(), SessionError> {
        self.live.lock().unwrap().remove(id).map(|_| ()).ok_or(SessionError::NotFound)
    }
    async fn open_terminal(&self, _s: &Arc<Session>) -> Result<Arc<Terminal>, SessionError> {
        Err(SessionError::NoTerminal)
    }
    async fn close_terminal(&self, _s: &Arc<Session>, _n: u64) -> Result<(), SessionError> {
        Err(SessionError::NoTerminal)
    }
    fn usage(&self, _s: &Session) -> Usage {
        Usage::default()
    }
    fn namespaces(&self, _s: &Session) -> BTreeMap<&'static str, NsPair> {
        BTreeMap::new()
    }
    fn nested(&self, _s: &Session) -> Vec<(&'static str, u64, i32)> {
        Vec::new()
    }
    fn host_view(&self, s: &Session) -> HostView {
        // No process of the session's: every check reads nothing and fails.
        HostView {
            init_pid: s.sandbox.init_pid,
            pids: Vec::new(),
            hostname: s.sandbox.hostname.clone(),
            uid_base: s.sandbox.ids.base,
            usage: Usage::default(),
            cgroup_dir: std::path::PathBuf::from("/nonexistent"),
            charge_to: Vec::new(),
        }
    }
}

struct Class {
    state: AppState<Seats>,
    dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.json()["error"], code, "{}", self.text);
    }
}

async fn classroom(dir: &std::path::Path, token: &str, open: bool) -> Arc<Classroom> {
    let cfg = ClassroomConfig {
        admin_token: Some(token.into()),
        open,
        limits: Limits { memory_bytes: 256 << 20, pids: 128, cpu: 0.5, disk_bytes: 64 << 20, shm_bytes: 16 << 20 },
        max_sessions: 40,
        lessons: std::sync::Arc::new(crate::lessons::Catalog::builtin(crate::lessons::Hierarchy::V2)),
        stuck_after: std::time::Duration::from_secs(600),
        node: "test".into(),
        images: vec!["tools".into()],
    };
    let (c, _) = Classroom::start(Store::open_dir(dir).await.unwrap(), cfg).await.unwrap();
    Arc::new(c)
}

impl Class {
    async fn new(open: bool) -> Class {
        let dir = tempfile::tempdir().unwrap();
        let c = classroom(dir.path(), TOKEN, open).await;
        let state = AppState {
            manager: Seats::default(),
            sockets: TaskTracker::new(),
            trusted_proxies: Arc::new(Vec::new()),
            allowed_origins: Arc::new(Vec::new()),
            metrics: None,
            checks: Arc::new(tokio::sync::Semaphore::new(super::max_checks())),
            hierarchy: crate::lessons::Hierarchy::V2,
            lessons: std::sync::Arc::new(crate::lessons::Catalog::builtin(crate::lessons::Hierarchy::V2)),
            classroom: Some(c),
        };
        Class { state, dir }
    }

    /// The same store under a new admin token, as after a restart with another token.
    async fn restart_with_token(&mut self, token: &str) {
        self.state.classroom = Some(classroom(self.dir.path(), token, true).await);
    }

    async fn send(&self, req: axum::http::request::Builder, body: impl Into<Body>) -> Reply {
        let req = req.header(header::HOST, HOST).body(body.into()).unwrap();
        let router = app(self.state.clone()).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
        let resp = router.oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        Reply { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// Signs in from the dashboard's own page; the cookie header and the CSRF token.
    async fn sign_in(&self) -> (String, String) {
        let r = self
            .send(
                Request::post("/api/instructor/login").header(header::ORIGIN, format!("http://{HOST}")),
                json!({"token": TOKEN}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        let page = self.send(Request::get("/instructor").header(header::COOKIE, &cookie), Body::empty()).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let csrf = page.text.split("data-csrf=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        assert!(csrf.len() >= 24, "{csrf}");
        (cookie, csrf)
    }

    async fn create_room(&self, body: Value) -> Value {
        let r = self
            .send(
                Request::post("/api/rooms").header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
                body.to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()
    }

    async fn join(&self, code: &str, body: Value) -> Reply {
        self.send(
            Request::post(format!("/api/join/{code}")).header(header::ORIGIN, format!("http://{HOST}")),
            body.to_string(),
        )
        .await
    }

    async fn progress(&self, room: &str) -> Value {
        let r = self
            .send(
                Request::get(format!("/api/rooms/{room}/progress"))
                    .header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()
    }
}

#[tokio::test]
async fn a_wrong_missing_or_old_token_is_refused() {
    let mut c = Class::new(true).await;
    let r = c.send(Request::post("/api/instructor/login"), json!({"token": "guess"}).to_string()).await;
    r.error(StatusCode::UNAUTHORIZED, "bad_token");
    // (The learner identity cookie may come with any answer; no sign-in cookie may.)
    assert!(
        !r.headers.get_all(header::SET_COOKIE).iter().any(|v| v.to_str().unwrap().starts_with("nsplay_instructor=")),
        "{:?}",
        r.headers
    );
    c.send(Request::get("/api/rooms"), Body::empty()).await.error(StatusCode::UNAUTHORIZED, "instructor_required");
    c.send(Request::get("/api/rooms").header(header::COOKIE, "nsplay_instructor=forged"), Body::empty())
        .await
        .error(StatusCode::UNAUTHORIZED, "instructor_required");
    c.send(Request::get("/api/rooms").header(header::AUTHORIZATION, "Bearer guess"), Body::empty())
        .await
        .error(StatusCode::UNAUTHORIZED, "bad_token");
    let ok = c
        .send(Request::get("/api/rooms").header(header::AUTHORIZATION, format!("Bearer {TOKEN}")), Body::empty())
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // Pages send the signed-out to the sign-in page.
    let page = c.send(Request::get("/instructor"), Body::empty()).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers.get(header::LOCATION).unwrap(), "/instructor/login");

    let (cookie, _) = c.sign_in().await;
    let ok = c.send(Request::get("/api/rooms").header(header::COOKIE, &cookie), Body::empty()).await;
    assert_eq!(ok.status, StatusCode::OK);
    c.restart_with_token("a-brand-new-token-9876543210").await;
    c.send(Request::get("/api/rooms").header(header::COOKIE, &cookie), Body::empty())
        .await
        .error(StatusCode::UNAUTHORIZED, "instructor_required");
    c.send(Request::get("/api/rooms").header(header::AUTHORIZATION, format!("Bearer {TOKEN}")), Body::empty())
        .await
        .error(StatusCode::UNAUTHORIZED, "bad_token");
}

#[tokio::test]
async fn the_sign_in_cookie_is_httponly_strict_and_secure_behind_tls() {
    let c = Class::new(true).await;
    let login = |origin: &'static str| {
        Request::post("/api/instructor/login").header(header::ORIGIN, origin).header("x-forwarded-proto", "https")
    };
    let r = c.send(login("http://class.example:8080"), json!({"token": TOKEN}).to_string()).await;
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(set.starts_with("nsplay_instructor="), "{set}");
    assert!(set.contains("; HttpOnly") && set.contains("; SameSite=Strict") && set.contains("; Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP (a stranger's X-Forwarded-Proto is not believed): {set}");
    let r = c.send(login("https://class.example:8080"), json!({"token": TOKEN}).to_string()).await;
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(set.ends_with("; Secure"), "{set}");
    let out = c.send(Request::post("/api/instructor/logout"), Body::empty()).await;
    assert!(out.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn cross_site_and_csrf_less_changes_are_refused() {
    let c = Class::new(true).await;
    let (cookie, csrf) = c.sign_in().await;
    let body = json!({"title": "T", "lessons": ["uts"]}).to_string();
    let post = || Request::post("/api/rooms").header(header::COOKIE, &cookie);
    // Another site's page (its browser attaches the cookie if SameSite did not stop it).
    c.send(post().header(header::ORIGIN, "https://evil.example").header("x-csrf-token", &csrf), body.clone())
        .await
        .error(StatusCode::FORBIDDEN, "forbidden_origin");
    // No CSRF token, or a wrong one: not the dashboard.
    c.send(post().header(header::ORIGIN, format!("http://{HOST}")), body.clone())
        .await
        .error(StatusCode::FORBIDDEN, "csrf");
    c.send(post().header("x-csrf-token", "nope"), body.clone()).await.error(StatusCode::FORBIDDEN, "csrf");
    let sign_in_elsewhere = c
        .send(
            Request::post("/api/instructor/login").header(header::ORIGIN, "https://evil.example"),
            json!({"token": TOKEN}).to_string(),
        )
        .await;
    sign_in_elsewhere.error(StatusCode::FORBIDDEN, "forbidden_origin");
    let r = c.send(post().header(header::ORIGIN, format!("http://{HOST}")).header("x-csrf-token", &csrf), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let rooms = c.send(Request::get("/api/rooms").header(header::COOKIE, &cookie), Body::empty()).await.json();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1, "only the dashboard's own request made a room");
    // "Prepare" makes the host build sessions: the same three locks.
    let id = r.json()["id"].as_str().unwrap().to_string();
    let prepare = || Request::post(format!("/api/rooms/{id}/prepare")).header(header::COOKIE, &cookie);
    c.send(prepare().header(header::ORIGIN, "https://evil.example").header("x-csrf-token", &csrf), Body::empty())
        .await
        .error(StatusCode::FORBIDDEN, "forbidden_origin");
    c.send(prepare(), Body::empty()).await.error(StatusCode::FORBIDDEN, "csrf");
    c.send(Request::post(format!("/api/rooms/{id}/prepare")), Body::empty())
        .await
        .error(StatusCode::UNAUTHORIZED, "instructor_required");
    let r = c.send(prepare().header("x-csrf-token", &csrf), json!({"expected": 5}).to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

#[tokio::test]
async fn rooms_get_a_code_a_join_url_and_a_qr_code() {
    let c = Class::new(true).await;
    c.send(
        Request::post("/api/rooms").header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
        json!({"title": "x", "lessons": ["uts"], "limits": {"memory": "4G"}}).to_string(),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_room");
    let r = c.create_room(json!({"title": "Namespaces <b>101</b>", "lessons": ["pid", "uts"], "capacity": 3})).await;
    let code = r["code"].as_str().unwrap();
    assert_eq!(r["join_url"], format!("http://{HOST}/join/{code}"));
    assert_eq!(r["lessons"], json!(["pid", "uts"]));
    assert_eq!(r["state"], "open");
    assert_eq!(r["capacity"], 3);
    let qr = c
        .send(
            Request::get(format!("/api/rooms/{}/qr.svg", r["id"].as_str().unwrap()))
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
            Body::empty(),
        )
        .await;
    assert_eq!(qr.headers.get(header::CONTENT_TYPE).unwrap(), "image/svg+xml");
    assert!(qr.text.contains("<svg"), "{}", &qr.text[..qr.text.len().min(200)]);
    // The join page names the room, as text.
    let page = c.send(Request::get(format!("/join/{}", code.to_lowercase())), Body::empty()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("Namespaces &#60;b&#62;101&#60;/b&#62;") || page.text.contains("Namespaces &lt;b&gt;101"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("<b>101</b>"));
    let proj = c
        .send(
            Request::get(format!("/instructor/rooms/{}/projector", r["id"].as_str().unwrap()))
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
            Body::empty(),
        )
        .await;
    assert_eq!(proj.status, StatusCode::OK);
    assert!(proj.text.contains(code) && proj.text.contains("<svg"), "{}", proj.text);
}

#[tokio::test]
async fn wrong_and_closed_codes_get_a_clear_page_in_the_readers_language() {
    let c = Class::new(true).await;
    let page = c.send(Request::get("/join/ZZZZZZ").header(header::ACCEPT_LANGUAGE, "ja"), Body::empty()).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.text.contains("このコードのクラスはありません。"), "{}", page.text);
    let page = c.send(Request::get("/join/%3Cscript%3E"), Body::empty()).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.text.contains("<script>") || !page.text.contains("data-code=\"<script>"), "the code is escaped");
    let r = c.create_room(json!({"title": "Past", "lessons": ["uts"], "closes_at": "2001-01-01T00:00:00Z"})).await;
    let page = c.send(Request::get(format!("/join/{}", r["code"].as_str().unwrap())), Body::empty()).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.text.contains("This class is closed."), "{}", page.text);
    let join = c.join(r["code"].as_str().unwrap(), json!({})).await;
    join.error(StatusCode::GONE, "room_closed");
    let later = c.create_room(json!({"title": "Later", "lessons": ["uts"], "opens_at": "2099-01-01T00:00:00Z"})).await;
    let page = c.send(Request::get(format!("/join/{}?lang=ja", later["code"].as_str().unwrap())), Body::empty()).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.text.contains("2099-01-01T00:00:00Z に開始します"), "{}", page.text);
    c.send(Request::get("/join"), Body::empty()).await;
}

#[tokio::test]
async fn learners_join_rejoin_and_fill_a_room() {
    let c = Class::new(true).await;
    let r = c.create_room(json!({"title": "T", "lessons": ["uts", "pid"], "capacity": 2})).await;
    let code = r["code"].as_str().unwrap();
    let a = c.join(code, json!({"name": "<img src=x onerror=alert(1)>"})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = a.json();
    assert_eq!(a["next"], "/learn/uts");
    assert_eq!(a["lessons"], json!(["uts", "pid"]));
    let seat = c.state.manager.get(a["session"].as_str().unwrap()).unwrap();
    let marks = seat.marks();
    assert!(marks.contains(&format!("learner:{}", a["learner"].as_str().unwrap())), "{marks:?}");
    assert!(marks.contains(&format!("room:{}", r["id"].as_str().unwrap())), "{marks:?}");
    // The same browser again: the same learner and, while it lives, the same session.
    let again = c.join(code, json!({"learner": a["learner"]})).await.json();
    assert_eq!(
        (again["learner"].clone(), again["session"].clone(), again["returning"].clone()),
        (a["learner"].clone(), a["session"].clone(), json!(true))
    );
    c.state.manager.end(a["session"].as_str().unwrap(), EndReason::Deleted).await.unwrap();
    let fresh = c.join(code, json!({"learner": a["learner"]})).await.json();
    assert_eq!(fresh["learner"], a["learner"]);
    assert_ne!(fresh["session"], a["session"], "the old session ended: a new one");
    c.join(code, json!({"name": "B"})).await;
    c.join(code, json!({"name": "C"})).await.error(StatusCode::CONFLICT, "room_full");
    c.join(code, json!({"name": "x".repeat(41)})).await.error(StatusCode::BAD_REQUEST, "bad_name");
    c.join("ZZZZZZ", json!({})).await.error(StatusCode::NOT_FOUND, "room_not_found");
    let p = c.progress(r["id"].as_str().unwrap()).await;
    let names: Vec<&str> = p["learners"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["<img src=x onerror=alert(1)>", "B"], "names are data; the pages set them as text");
    assert_eq!(p["learners"][0]["online"], true);
}

#[tokio::test]
async fn the_event_stream_sends_the_progress_at_once_and_at_every_join() {
    use futures_util::StreamExt;
    let c = Class::new(true).await;
    let r = c.create_room(json!({"title": "T", "lessons": ["uts"]})).await;
    let req = Request::get(format!("/api/rooms/{}/events", r["id"].as_str().unwrap()))
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let router = app(c.state.clone()).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    async fn next(body: &mut axum::body::BodyDataStream) -> String {
        String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap()
    }
    let first = next(&mut body).await;
    assert!(first.starts_with("event: progress\ndata: {"), "{first}");
    assert!(first.contains("\"learners\":[]"), "{first}");
    c.join(r["code"].as_str().unwrap(), json!({"name": "Streamed"})).await;
    let second = next(&mut body).await;
    assert!(second.contains("\"name\":\"Streamed\""), "{second}");
    let unauthorized =
        c.send(Request::get(format!("/api/rooms/{}/events", r["id"].as_str().unwrap())), Body::empty()).await;
    unauthorized.error(StatusCode::UNAUTHORIZED, "instructor_required");
}

#[tokio::test]
async fn a_closed_playground_takes_sessions_only_through_a_room() {
    let c = Class::new(false).await;
    let r = c.send(Request::post("/api/sessions").header(header::ACCEPT_LANGUAGE, "ja"), Body::empty()).await;
    r.error(StatusCode::FORBIDDEN, "room_code_required");
    assert!(r.json()["message"].as_str().unwrap().contains("/join"), "{}", r.text);
    let room = c.create_room(json!({"title": "T", "lessons": ["uts"]})).await;
    let j = c.join(room["code"].as_str().unwrap(), json!({})).await;
    assert_eq!(j.status, StatusCode::CREATED, "{}", j.text);
}

#[tokio::test]
async fn a_room_learners_checks_are_stored_and_only_passes_count() {
    let c = Class::new(true).await;
    let r = c.create_room(json!({"title": "T", "lessons": ["uts"]})).await;
    let room = r["id"].as_str().unwrap();
    let a = c.join(r["code"].as_str().unwrap(), json!({"name": "Ada"})).await.json();
    let s = a["session"].as_str().unwrap();
    // The fake session has no processes: the host finds no nested hostname, the check fails.
    let chk = c.send(Request::post(format!("/api/sessions/{s}/checks/uts/set-hostname")), Body::empty()).await;
    assert_eq!(chk.status, StatusCode::OK, "{}", chk.text);
    assert_eq!(chk.json()["passed"], false);
    let p = c.progress(room).await;
    let l = &p["learners"][0];
    assert_eq!(l["checks"], 1, "the check was stored");
    assert_eq!(l["passed_count"], 0);
    assert!(l["passed"].as_array().unwrap().iter().all(|v| v == false));
    let csv = c
        .send(
            Request::get(format!("/api/rooms/{room}/progress.csv"))
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
            Body::empty(),
        )
        .await;
    assert_eq!(csv.headers.get(header::CONTENT_TYPE).unwrap(), "text/csv; charset=utf-8");
    assert!(csv.text.lines().nth(1).unwrap().contains("\"Ada\""), "{}", csv.text);
    c.send(Request::get(format!("/api/rooms/{room}/progress.csv")), Body::empty())
        .await
        .error(StatusCode::UNAUTHORIZED, "instructor_required");
    // Ending the room ends its learners' sessions and refuses new joins.
    let end = c
        .send(
            Request::post(format!("/api/rooms/{room}/end")).header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
            Body::empty(),
        )
        .await;
    assert_eq!(end.status, StatusCode::NO_CONTENT, "{}", end.text);
    assert!(c.state.manager.get(s).is_err());
    c.join(r["code"].as_str().unwrap(), json!({})).await.error(StatusCode::GONE, "room_closed");
}

#[tokio::test]
async fn notices_time_and_ending_a_learner_reach_the_learners_status() {
    let c = Class::new(true).await;
    let closes = crate::classroom::rfc3339(crate::store::now_ms() + 30 * 60_000);
    let room = c.create_room(json!({"title": "T", "lessons": ["uts"], "closes_at": closes})).await;
    let (id, code) = (room["id"].as_str().unwrap(), room["code"].as_str().unwrap());
    let j = c.join(code, json!({"name": "Ada"})).await.json();
    let learner = j["learner"].as_str().unwrap();
    let session = j["session"].as_str().unwrap();
    let bearer = || format!("Bearer {TOKEN}");
    let post = |url: String| Request::post(url).header(header::AUTHORIZATION, bearer());

    // A learner's status: only with their id; a notice in the instructor's words, shown as sent.
    let status_url = format!("/api/join/{code}/status?learner={learner}");
    c.send(Request::get(format!("/api/join/{code}/status?learner=guess")), Body::empty())
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let r =
        c.send(post(format!("/api/rooms/{id}/notices")), json!({"text": "<b>Break</b> until 10:30"}).to_string()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    c.send(post(format!("/api/rooms/{id}/notices")), json!({"text": "  "}).to_string())
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_room");
    let s = c.send(Request::get(&status_url), Body::empty()).await.json();
    assert_eq!(s["notices"][0]["text"], "<b>Break</b> until 10:30");
    let left = s["seconds_left"].as_i64().unwrap();
    assert!((29 * 60..=30 * 60).contains(&left), "{s}");

    // Extending moves the closing time by the minutes asked; bounds are refused.
    let r = c.send(post(format!("/api/rooms/{id}/extend")), json!({"minutes": 15}).to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let s = c.send(Request::get(&status_url), Body::empty()).await.json();
    assert!(s["seconds_left"].as_i64().unwrap() >= left + 15 * 60 - 5, "{s}");
    c.send(post(format!("/api/rooms/{id}/extend")), json!({"minutes": 0}).to_string())
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_room");

    // The dashboard's row: live (on this node), not stuck yet, at the lesson's first step.
    let p = c.progress(id).await;
    let row = &p["learners"][0];
    assert_eq!((row["state"].as_str(), row["online"].as_bool()), (Some("online"), Some(true)), "{row}");
    assert_eq!(row["current_step"], p["steps"][0]["step"], "{p}");
    assert_eq!(p["stuck_after_seconds"], 600);

    // Ending one learner's session: the session goes, the learner stays and may rejoin.
    c.send(post(format!("/api/rooms/{id}/learners/nobody/end")), Body::empty())
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let r = c.send(post(format!("/api/rooms/{id}/learners/{learner}/end")), Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(c.state.manager.get(session).is_err(), "the learner's session ended");
    let p = c.progress(id).await;
    assert_eq!(p["learners"][0]["state"], "offline");
    let again = c.join(code, json!({"learner": learner})).await.json();
    assert_ne!(again["session"], session, "a fresh session");
    let sweep = c
        .state
        .classroom
        .as_ref()
        .unwrap()
        .sweep_orders(&[(again["session"].as_str().unwrap().into(), learner.into())])
        .await
        .unwrap();
    assert!(sweep.is_empty(), "a new session is not ended by the old request: {sweep:?}");
}

#[tokio::test]
async fn only_a_signed_in_instructor_views_and_only_room_sessions() {
    let c = Class::new(true).await;
    let room = c.create_room(json!({"title": "T", "lessons": ["uts"]})).await;
    let j = c.join(room["code"].as_str().unwrap(), json!({})).await.json();
    let url = format!("/api/sessions/{}/terminals/0/view", j["session"].as_str().unwrap());
    c.send(Request::get(&url), Body::empty()).await.error(StatusCode::UNAUTHORIZED, "instructor_required");
    c.send(Request::get(&url).header(header::COOKIE, "nsplay_instructor=forged"), Body::empty())
        .await
        .error(StatusCode::UNAUTHORIZED, "instructor_required");
    // Signed in, the view is a WebSocket (a plain GET is told so, after the checks passed).
    let (cookie, _) = c.sign_in().await;
    let r = c.send(Request::get(&url).header(header::COOKIE, &cookie), Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the detached seat has no terminal 0: {}", r.text);
    // A session of no room is never viewable.
    let anon = c.state.manager.create(None, Requester { address: [192, 0, 2, 9].into(), learner: None }).await.unwrap();
    c.send(
        Request::get(format!("/api/sessions/{}/terminals/0/view", anon.id)).header(header::COOKIE, &cookie),
        Body::empty(),
    )
    .await
    .error(StatusCode::FORBIDDEN, "not_a_room_session");
    // Ending the whole room: the sweep of every node ends its sessions.
    let r = c
        .send(
            Request::post(format!("/api/rooms/{}/end", room["id"].as_str().unwrap()))
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let orders = c
        .state
        .classroom
        .as_ref()
        .unwrap()
        .sweep_orders(&[("elsewhere.x".into(), j["learner"].as_str().unwrap().into())])
        .await
        .unwrap();
    assert_eq!(orders, ["elsewhere.x"], "a session of an ended room on another node is ended by its node");
}
