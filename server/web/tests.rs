//! The router in-process, over a fake session layer (no root, no sandbox): every error status
//! of docs/api.md with its JSON body and `Retry-After`, the body limit, malformed JSON, unknown
//! routes, wrong methods, a terminal URL fetched without an upgrade, and cross-site browser
//! requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::sessions::Sessions;
use super::{AppState, MAX_BODY, app};
use crate::session::{
    EndReason, HostView, Learner, NsPair, Refusal, Requester, Session, SessionError, Terminal, TerminalError,
};
use nsplay_sandbox::{IdError, SandboxError, Usage};

/// A session layer that holds at most one session (`live`, with the terminals it was given)
/// and answers `create` and `open_terminal` with the errors it was told to.
#[derive(Clone)]
struct Fake {
    live: Option<Arc<Session>>,
    create: fn() -> SessionError,
    open_terminal: Option<fn() -> SessionError>,
    /// Counts `host_view` calls running at once (each takes a while), when set.
    gauge: Option<Arc<Gauge>>,
}

/// How many calls run at once, and the most that ever did.
#[derive(Default)]
struct Gauge {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Fake {
    fn empty(create: fn() -> SessionError) -> Fake {
        Fake { live: None, create, open_terminal: None, gauge: None }
    }

    /// One session, `live`, with a terminal 0 on a plain pty.
    fn with_session(open_terminal: Option<fn() -> SessionError>) -> Fake {
        Fake {
            live: Some(Session::detached("live", vec![pty_terminal(0)])),
            create: || SessionError::NotFound,
            open_terminal,
            gauge: None,
        }
    }
}

fn pty_terminal(index: u64) -> Arc<Terminal> {
    let pty = nix::pty::openpty(None, None).unwrap();
    // The slave end stays open as long as the test runs, so the terminal does not see a hangup.
    std::mem::forget(pty.slave);
    Terminal::start(index, pty.master, None, 80, 24, None).unwrap()
}

impl Sessions for Fake {
    async fn create(&self, _label: Option<String>, _who: Requester) -> Result<Arc<Session>, SessionError> {
        Err((self.create)())
    }
    fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.live.clone().filter(|s| s.id == id).ok_or(SessionError::NotFound)
    }
    fn learner_sessions(&self, learner: Learner) -> Vec<Arc<Session>> {
        self.live.clone().into_iter().filter(|s| s.learner == Some(learner)).collect()
    }
    fn marked(&self, prefix: &str) -> std::collections::HashMap<String, usize> {
        crate::session::count_marks(&self.live.clone().into_iter().collect::<Vec<_>>(), prefix)
    }
    async fn end(&self, id: &str, _reason: EndReason) -> Result<(), SessionError> {
        self.get(id).map(|_| ())
    }
    async fn open_terminal(&self, _s: &Arc<Session>) -> Result<Arc<Terminal>, SessionError> {
        match self.open_terminal {
            Some(e) => Err(e()),
            None => Ok(pty_terminal(1)),
        }
    }
    async fn close_terminal(&self, s: &Arc<Session>, n: u64) -> Result<(), SessionError> {
        s.terminal_ref(n).map(drop).ok_or(SessionError::NoTerminal)
    }
    async fn reset(&self, _s: &Arc<Session>) -> Result<usize, SessionError> {
        Ok(3)
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
        if let Some(g) = &self.gauge {
            use std::sync::atomic::Ordering::SeqCst;
            g.calls.fetch_add(1, SeqCst);
            let now = g.now.fetch_add(1, SeqCst) + 1;
            g.most.fetch_max(now, SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            g.now.fetch_sub(1, SeqCst);
        }
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
    fn ready(&self) -> bool {
        !matches!((self.create)(), SessionError::Draining)
    }
}

/// What came back: status, `Retry-After`, and the body (JSON when it is JSON).
struct Reply {
    status: StatusCode,
    retry_after: Option<u64>,
    allow: Option<String>,
    location: Option<String>,
    set_cookie: Option<String>,
    /// Whether `X-Nsplay-Retry-Elsewhere: 1` came with it.
    elsewhere: bool,
    /// Every header (for those the fields above do not name).
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// The documented error shape: exactly `error` and `message`, the code as given, the
    /// message a sentence.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        let v = self.json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["error", "message"], "{v}");
        assert_eq!(v["error"], code, "{v}");
        assert!(v["message"].as_str().unwrap().len() > 10, "{v}");
    }
}

async fn send(fake: Fake, method: Method, uri: &str, body: impl Into<Body>) -> Reply {
    send_request(fake, Request::builder().method(method).uri(uri).body(body.into()).unwrap()).await
}

/// The origin the router's state allows besides nsplay's own pages.
const ALLOWED_ORIGIN: &str = "https://docs.example.org";

async fn send_request(fake: Fake, req: Request<Body>) -> Reply {
    let state = AppState {
        manager: fake,
        sockets: TaskTracker::new(),
        // The test peer (below) is a trusted proxy: its X-Forwarded-Proto counts.
        trusted_proxies: Arc::new(vec!["192.0.2.1/32".parse().unwrap()]),
        allowed_origins: Arc::new(vec![ALLOWED_ORIGIN.into()]),
        metrics: None,
        checks: Arc::new(tokio::sync::Semaphore::new(super::max_checks())),
        hierarchy: crate::lessons::Hierarchy::V2,
        lessons: std::sync::Arc::new(crate::lessons::Catalog::builtin(crate::lessons::Hierarchy::V2)),
        classroom: None,
    };
    let router = app(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
    let resp = router.oneshot(req).await.unwrap();
    let header = |name| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let retry_after = header(header::RETRY_AFTER).map(|v| v.parse().unwrap());
    let allow = header(header::ALLOW);
    let location = header(header::LOCATION);
    let set_cookie = header(header::SET_COOKIE);
    let elsewhere = header(super::error::RETRY_ELSEWHERE.parse().unwrap()).is_some_and(|v| v == "1");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply {
        status,
        headers,
        retry_after,
        allow,
        location,
        set_cookie,
        elsewhere,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn create_failing(e: fn() -> SessionError) -> Reply {
    send(Fake::empty(e), Method::POST, "/api/sessions", Body::empty()).await
}

#[tokio::test]
async fn refusals_are_429_or_503_with_retry_after() {
    let wait = Duration::from_secs(20);
    let r = create_failing(|| SessionError::Refused(Refusal::Full { max: 200, retry_after: Duration::from_secs(20) }))
        .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "full");
    assert_eq!(r.retry_after, Some(wait.as_secs()));
    assert!(r.json()["message"].as_str().unwrap().contains("200"), "{}", r.text);

    let r =
        create_failing(|| SessionError::Refused(Refusal::ClientCap { max: 3, retry_after: Duration::from_secs(20) }))
            .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_sessions");
    assert_eq!(r.retry_after, Some(20));

    let r = create_failing(|| SessionError::Refused(Refusal::RateLimited { retry_after: Duration::from_millis(300) }))
        .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(r.retry_after, Some(1), "a wait under a second is rounded up, never 0");

    let r =
        create_failing(|| SessionError::Refused(Refusal::Memory { percent: 90, retry_after: Duration::from_secs(20) }))
            .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "memory_full");
    assert_eq!(r.retry_after, Some(20));
    assert!(r.json()["message"].as_str().unwrap().contains("memory"), "{}", r.text);

    let r = create_failing(|| {
        SessionError::Refused(Refusal::AddressCap { max: 400, retry_after: Duration::from_secs(20) })
    })
    .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_from_address");
    assert!(r.json()["message"].as_str().unwrap().contains("max_sessions_per_address"), "{}", r.text);
}

#[tokio::test]
async fn refusals_say_their_reason_in_the_pages_language() {
    let ja = |e: fn() -> SessionError| {
        let req = Request::post("/api/learner/session")
            .header(header::ACCEPT_LANGUAGE, "ja")
            .header(header::COOKIE, format!("nsplay_learner={}", "1".repeat(32)))
            .body(Body::empty())
            .unwrap();
        send_request(Fake::empty(e), req)
    };
    let cap = ja(|| SessionError::Refused(Refusal::ClientCap { max: 3, retry_after: Duration::from_secs(60) })).await;
    cap.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_sessions");
    assert!(cap.json()["message"].as_str().unwrap().contains("ほかのセッションを終了"), "{}", cap.text);
    let rate = ja(|| SessionError::Refused(Refusal::RateLimited { retry_after: Duration::from_secs(5) })).await;
    rate.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(rate.json()["message"].as_str().unwrap().contains("速すぎます"), "{}", rate.text);
    assert_ne!(cap.json()["message"], rate.json()["message"]);
}

/// The cookie's attributes, lower case, and its value.
fn learner_cookie(r: &Reply) -> (String, Vec<String>) {
    let c = r.set_cookie.clone().unwrap_or_else(|| panic!("no Set-Cookie: {}", r.text));
    let mut parts = c.split(';').map(|p| p.trim().to_string());
    let pair = parts.next().unwrap();
    let value = pair.strip_prefix("nsplay_learner=").unwrap_or_else(|| panic!("{c}")).to_string();
    (value, parts.map(|p| p.to_ascii_lowercase()).collect())
}

#[tokio::test]
async fn a_browser_without_an_identity_gets_a_random_httponly_samesite_cookie_on_pages_and_api_calls() {
    let none = || Fake::empty(|| SessionError::NotFound);
    let page = send(none(), Method::GET, "/", Body::empty()).await;
    let (value, attrs) = learner_cookie(&page);
    assert_eq!(value.len(), 32);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{value}");
    for a in ["httponly", "samesite=lax", "path=/"] {
        assert!(attrs.iter().any(|x| x == a), "{a} in {attrs:?}");
    }
    assert!(!attrs.iter().any(|x| x == "secure"), "plain HTTP: no Secure ({attrs:?})");
    let (other, _) = learner_cookie(&send(none(), Method::GET, "/learn/uts", Body::empty()).await);
    assert_ne!(value, other, "each browser its own identity");
    // An API call too, even a refused one.
    let api = create_failing(|| SessionError::Refused(Refusal::RateLimited { retry_after: Duration::from_secs(1) }));
    learner_cookie(&api.await);
    // Behind a trusted proxy that says the browser came over TLS: Secure.
    let req = Request::get("/play").header("x-forwarded-proto", "https").body(Body::empty()).unwrap();
    let (_, attrs) = learner_cookie(&send_request(none(), req).await);
    assert!(attrs.iter().any(|x| x == "secure"), "{attrs:?}");
    // A browser that has one keeps it; assets and health checks never carry one.
    let req = Request::get("/").header(header::COOKIE, format!("nsplay_learner={value}")).body(Body::empty()).unwrap();
    assert_eq!(send_request(none(), req).await.set_cookie, None);
    assert_eq!(send(none(), Method::GET, "/assets/nsplay.css", Body::empty()).await.set_cookie, None);
    assert_eq!(send(none(), Method::GET, "/healthz", Body::empty()).await.set_cookie, None);
}

fn with_cookie(method: Method, uri: &str, learner: u128) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, format!("nsplay_learner={learner:032x}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_learner_attaches_to_its_session_and_ends_only_its_own() {
    let mine = 0xabc;
    let fake = || {
        let s = Session::detached_for("live", vec![pty_terminal(0)], Some(Learner(mine)));
        Fake { live: Some(s), create: || SessionError::NotFound, open_terminal: None, gauge: None }
    };
    let r = send_request(fake(), with_cookie(Method::POST, "/api/learner/session", mine)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["id"], "live");
    assert_eq!(r.json()["attached"], true);
    assert_eq!(r.json()["terminal"], "/api/sessions/live/terminals/0");
    // Someone else's identity does not find it (the fake refuses to create, as told).
    let r = send_request(fake(), with_cookie(Method::POST, "/api/learner/session", 0xdef)).await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
    // Without an identity the call says what it needs.
    send(fake(), Method::POST, "/api/learner/session", Body::empty())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "no_identity");
    send(fake(), Method::DELETE, "/api/learner/sessions", Body::empty())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "no_identity");
    let r = send_request(fake(), with_cookie(Method::DELETE, "/api/learner/sessions", 0xdef)).await;
    assert_eq!((r.status, r.json()["ended"].as_u64()), (StatusCode::OK, Some(0)), "never another learner's");
    let r = send_request(fake(), with_cookie(Method::DELETE, "/api/learner/sessions?except=live", mine)).await;
    assert_eq!(r.json()["ended"], 0, "the one kept");
    let r = send_request(fake(), with_cookie(Method::DELETE, "/api/learner/sessions", mine)).await;
    assert_eq!(r.json()["ended"], 1, "{}", r.text);
}

#[tokio::test]
async fn the_lesson_list_reads_only_the_learners_own_sessions_and_their_progress() {
    let mine = 0xabc;
    let fake = || {
        let s = Session::detached_for("live", vec![pty_terminal(0)], Some(Learner(mine)));
        s.mark("step:uts/set-hostname");
        Fake { live: Some(s), create: || SessionError::NotFound, open_terminal: None, gauge: None }
    };
    let r = send_request(fake(), with_cookie(Method::GET, "/api/learner/sessions", mine)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["sessions"][0]["id"], "live");
    assert_eq!(r.json()["sessions"][0]["passed"]["uts"][0], "set-hostname", "{}", r.text);
    let r = send_request(fake(), with_cookie(Method::GET, "/api/learner/sessions", 0xdef)).await;
    assert_eq!(r.json()["sessions"], serde_json::json!([]), "never another learner's");
    send(fake(), Method::GET, "/api/learner/sessions", Body::empty())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "no_identity");
}

#[tokio::test]
async fn a_stopping_busy_or_exhausted_server_answers_503_with_retry_after() {
    let r = create_failing(|| SessionError::ShuttingDown).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    assert_eq!(r.retry_after, Some(10));

    let r = create_failing(|| SessionError::StartTimeout).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "busy");
    assert_eq!(r.retry_after, Some(5));

    // Every id range taken is the same as full to the visitor.
    let r = create_failing(|| SessionError::Sandbox(SandboxError::Ids(IdError::Exhausted(4)))).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "full");
    assert_eq!(r.retry_after, Some(30));
}

#[tokio::test]
async fn a_sandbox_failure_is_500_without_retry_after() {
    let r = create_failing(|| SessionError::Sandbox(SandboxError::NoUserNamespaces)).await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "sandbox_failed");
    assert_eq!(r.retry_after, None);
    assert!(r.json()["message"].as_str().unwrap().contains("server log"), "{}", r.text);
}

#[tokio::test]
async fn a_bad_body_is_400_and_an_unknown_lesson_is_400_unknown_lesson() {
    let no_create = || panic!("create must not be called for a bad request");
    for body in ["{nope", r#"{"lesson": 5}"#, r#"{"lesson": "uts", "colour": "red"}"#, "[]"] {
        send(Fake::empty(no_create), Method::POST, "/api/sessions", body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = send(Fake::empty(no_create), Method::POST, "/api/sessions", r#"{"lesson": "no-such-lesson"}"#).await;
    r.assert_error(StatusCode::BAD_REQUEST, "unknown_lesson");
    assert_eq!(r.retry_after, None);
    // No body, a blank one, or a known lesson reach the session layer.
    for body in ["", "  \n", r#"{"lesson": "uts"}"#, "{}"] {
        let r = send(Fake::empty(|| SessionError::ShuttingDown), Method::POST, "/api/sessions", body).await;
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    }
}

#[tokio::test]
async fn bodies_are_limited_to_64_kib() {
    let at_limit = vec![b' '; MAX_BODY];
    let r = send(Fake::empty(|| SessionError::ShuttingDown), Method::POST, "/api/sessions", at_limit).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    let over = vec![b' '; MAX_BODY + 1];
    let r = send(Fake::empty(|| panic!("not called")), Method::POST, "/api/sessions", over).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert!(r.json()["message"].as_str().unwrap().contains("64 KiB"), "{}", r.text);
}

#[tokio::test]
async fn unknown_sessions_are_404_session_not_found_on_every_route() {
    let calls = [
        (Method::GET, "/api/sessions/nope"),
        (Method::DELETE, "/api/sessions/nope"),
        (Method::POST, "/api/sessions/nope/terminals"),
        // The terminal socket answers before any upgrade.
        (Method::GET, "/api/sessions/nope/terminals/0"),
        (Method::POST, "/api/sessions/nope/checks/uts/hostname"),
    ];
    for (method, uri) in calls {
        let r = send(Fake::with_session(None), method.clone(), uri, Body::empty()).await;
        r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
        assert_eq!(r.retry_after, None, "{method} {uri}");
    }
}

#[tokio::test]
async fn terminals_unknown_too_many_or_ended() {
    let r = send(Fake::with_session(None), Method::GET, "/api/sessions/live/terminals/7", Body::empty()).await;
    r.assert_error(StatusCode::NOT_FOUND, "terminal_not_found");
    // A terminal index that is not a number is no terminal either (axum's path rejection).
    let r = send(Fake::with_session(None), Method::GET, "/api/sessions/live/terminals/x", Body::empty()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    let r = send(
        Fake::with_session(Some(|| SessionError::TooManyTerminals)),
        Method::POST,
        "/api/sessions/live/terminals",
        Body::empty(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "too_many_terminals");
    assert!(r.json()["message"].as_str().unwrap().contains('8'), "{}", r.text);
    let r = send(
        Fake::with_session(Some(|| SessionError::TerminalBudgetSpent)),
        Method::POST,
        "/api/sessions/live/terminals",
        Body::empty(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "terminal_budget_spent");
    assert_eq!(r.retry_after, None);
    let r = send(
        Fake::with_session(Some(|| SessionError::TerminalRateLimited { retry_after: Duration::from_millis(2500) })),
        Method::POST,
        "/api/sessions/live/terminals",
        Body::empty(),
    )
    .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "terminal_rate_limited");
    assert_eq!(r.retry_after, Some(2));
    // The page shows these refusals as they are: in its language.
    for (err, code, words) in [
        ((|| SessionError::TooManyTerminals) as fn() -> SessionError, "too_many_terminals", "8 個"),
        (|| SessionError::TerminalBudgetSpent, "terminal_budget_spent", "64 個"),
        (
            || SessionError::TerminalRateLimited { retry_after: Duration::from_millis(2500) },
            "terminal_rate_limited",
            "2 秒後",
        ),
    ] {
        let r =
            send(Fake::with_session(Some(err)), Method::POST, "/api/sessions/live/terminals?lang=ja", Body::empty())
                .await;
        assert_eq!(r.json()["error"], code, "{}", r.text);
        assert!(r.json()["message"].as_str().unwrap().contains(words), "{}", r.text);
    }
    let r = send(
        Fake::with_session(Some(|| SessionError::Terminal(TerminalError::Ended))),
        Method::POST,
        "/api/sessions/live/terminals",
        Body::empty(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "terminal_ended");

    let r = send(Fake::with_session(None), Method::POST, "/api/sessions/live/terminals", Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["terminal"], "/api/sessions/live/terminals/1");
}

#[tokio::test]
async fn an_image_the_server_does_not_offer_is_400_unknown_image_in_both_languages() {
    let no_create = || panic!("create must not be called for an unknown image");
    let r = send(Fake::empty(no_create), Method::POST, "/api/sessions", r#"{"image": "nope"}"#).await;
    r.assert_error(StatusCode::BAD_REQUEST, "unknown_image");
    assert!(r.json()["message"].as_str().unwrap().contains("`nope`"), "{}", r.text);
    assert_eq!(r.retry_after, None);
    let ja = crate::text::fill(crate::text::get("ja", "refused_unknown_image"), &[("image", "x".into())]);
    assert!(ja.contains("イメージ `x`"), "{ja}");
}

#[tokio::test]
async fn a_terminal_url_fetched_without_upgrade_is_400() {
    let r = send(Fake::with_session(None), Method::GET, "/api/sessions/live/terminals/0", Body::empty()).await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(r.json()["message"].as_str().unwrap().contains("WebSocket"), "{}", r.text);
}

#[tokio::test]
async fn checks_of_unknown_lessons_or_steps_are_404_not_found() {
    let uris = [
        "/api/sessions/live/checks/no-such-lesson/hostname",
        "/api/sessions/live/checks/uts/no-such-step",
        // A step with nothing to check.
        "/api/sessions/live/checks/uts/enter",
    ];
    for uri in uris {
        send(Fake::with_session(None), Method::POST, uri, Body::empty())
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn a_live_session_is_described_and_deleted() {
    let r = send(Fake::with_session(None), Method::GET, "/api/sessions/live", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["id"], "live");
    assert_eq!(v["state"], "running");
    assert_eq!(v["limits"]["memory_bytes"], 256 << 20);
    assert!(v["events"].as_array().unwrap().is_empty());
    // The terminals still running: a page reopens a tab for each.
    assert_eq!(v["terminals"], serde_json::json!(["/api/sessions/live/terminals/0"]));
    let r = send(Fake::with_session(None), Method::DELETE, "/api/sessions/live", Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.text.is_empty());
}

#[tokio::test]
async fn a_session_lists_the_lesson_steps_it_passed() {
    let fake = Fake::with_session(None);
    let live = fake.live.clone().unwrap();
    let r = send(fake.clone(), Method::GET, "/api/sessions/live", Body::empty()).await;
    assert_eq!(r.json()["passed"], serde_json::json!({}));
    // A check kind's own mark is not a step; step marks are grouped by lesson.
    live.mark("uts_nested_hostname");
    live.mark("step:uts/set-hostname");
    live.mark("step:uts/exit");
    live.mark("step:pid/nested-init");
    let r = send(fake, Method::GET, "/api/sessions/live", Body::empty()).await;
    assert_eq!(r.json()["passed"], serde_json::json!({"pid": ["nested-init"], "uts": ["exit", "set-hostname"]}));
}

#[tokio::test]
async fn a_reset_answers_what_it_killed_and_404_for_unknown_sessions() {
    let r = send(Fake::with_session(None), Method::POST, "/api/sessions/live/reset", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), serde_json::json!({"killed": 3}));
    send(Fake::with_session(None), Method::POST, "/api/sessions/gone/reset", Body::empty())
        .await
        .assert_error(StatusCode::NOT_FOUND, "session_not_found");
}

#[tokio::test]
async fn metrics_without_a_recorder_are_404_not_found() {
    send(Fake::empty(|| SessionError::NotFound), Method::GET, "/metrics", Body::empty())
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = send(Fake::empty(|| SessionError::NotFound), Method::GET, "/healthz", Body::empty()).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    for uri in ["/api/nowhere", "/api/sessions/live/terminals/0/more"] {
        let r = send(Fake::with_session(None), Method::GET, uri, Body::empty()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(r.text.is_empty(), "{uri}: {}", r.text);
    }
    let calls = [
        (Method::GET, "/api/sessions", "POST"),
        (Method::PUT, "/api/sessions/live", "GET,HEAD,DELETE"),
        (Method::GET, "/api/sessions/live/terminals", "POST"),
        (Method::POST, "/api/sessions/live/terminals/0", "GET,HEAD,DELETE"),
        (Method::POST, "/healthz", "GET,HEAD"),
    ];
    for (method, uri, allow) in calls {
        let r = send(Fake::with_session(None), method.clone(), uri, Body::empty()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.allow.as_deref(), Some(allow), "{method} {uri}");
    }
}

#[tokio::test]
async fn cross_site_browser_requests_are_403_and_own_pages_tools_and_allowed_origins_pass() {
    let post = |origin: Option<&str>| {
        let mut b = Request::builder().method(Method::POST).uri("/api/sessions").header(header::HOST, "play.test:8080");
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::empty()).unwrap()
    };
    let no_create = || panic!("create must not be called for a cross-site request");
    for foreign in ["https://evil.example", "null", "http://play.test:9090"] {
        let r = send_request(Fake::empty(no_create), post(Some(foreign))).await;
        r.assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    }
    // nsplay's own page (any scheme: TLS may end at a proxy), an allowed site, and a tool that
    // sends no Origin reach the session layer.
    for origin in [Some("http://play.test:8080"), Some("https://PLAY.test:8080"), Some(ALLOWED_ORIGIN), None] {
        let r = send_request(Fake::empty(|| SessionError::ShuttingDown), post(origin)).await;
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    }
    // A terminal socket opened by another site's page is refused before the upgrade; reading
    // (GET) is left to the browser's same-origin policy.
    let ws = Request::builder()
        .uri("/api/sessions/live/terminals/0")
        .header(header::HOST, "play.test:8080")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .body(Body::empty())
        .unwrap();
    send_request(Fake::with_session(None), ws).await.assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
    let get = Request::builder()
        .uri("/api/sessions/live")
        .header(header::HOST, "play.test:8080")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send_request(Fake::with_session(None), get).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_trusted_proxys_scheme_counts_for_own_pages() {
    // The test peer is a trusted proxy: when it says the browser came over https, a plain-http
    // page of the same host is another site (and the other way round).
    let ws = |origin: &str, proto: &str| {
        Request::builder()
            .uri("/api/sessions/live/terminals/0")
            .header(header::HOST, "play.test:8080")
            .header(header::ORIGIN, origin)
            .header("x-forwarded-proto", proto)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "upgrade")
            .body(Body::empty())
            .unwrap()
    };
    for (origin, proto) in [("http://play.test:8080", "https"), ("https://play.test:8080", "http")] {
        let r = send_request(Fake::with_session(None), ws(origin, proto)).await;
        r.assert_error(StatusCode::FORBIDDEN, "forbidden_origin");
        assert!(r.json()["message"].as_str().unwrap().contains("terminal sockets"), "{}", r.text);
    }
    // The same origin and scheme reaches the upgrade (refused here only for lacking the
    // WebSocket handshake's key: not an origin refusal).
    let r = send_request(Fake::with_session(None), ws("https://play.test:8080", "https")).await;
    assert_ne!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

#[tokio::test]
async fn embed_pages_may_be_framed_by_allowed_origins_only_and_cors_answers_them() {
    let get = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
    let csp = |r: &Reply| r.headers.get(header::CONTENT_SECURITY_POLICY).map(|v| v.to_str().unwrap().to_string());
    let r = send_request(Fake::with_session(None), get("/")).await;
    assert_eq!(csp(&r).as_deref(), Some("frame-ancestors 'self'"), "other pages: nsplay only");
    let r = send_request(Fake::with_session(None), get("/api/sessions/live")).await;
    assert_eq!(csp(&r).as_deref(), Some("frame-ancestors 'self'"));
    // Preflight of a create from the allowed origin: answered, without credentials.
    let preflight = |origin: &str, uri: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(uri)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    for uri in ["/api/sessions", "/api/sessions/live/terminals", "/api/sessions/live/checks/uts/enter"] {
        let r = send_request(Fake::with_session(None), preflight(ALLOWED_ORIGIN, uri)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), ALLOWED_ORIGIN, "{uri}");
        assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none(), "{uri}");
        let r = send_request(Fake::with_session(None), preflight("https://evil.example", uri)).await;
        assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{uri}");
    }
    // The learner's own calls are not for other sites.
    let r = send_request(Fake::with_session(None), preflight(ALLOWED_ORIGIN, "/api/learner/session")).await;
    assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // A read from the allowed origin carries the header the browser needs.
    let read = Request::builder()
        .uri("/api/sessions/live")
        .header(header::ORIGIN, ALLOWED_ORIGIN)
        .body(Body::empty())
        .unwrap();
    let r = send_request(Fake::with_session(None), read).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), ALLOWED_ORIGIN);
}

#[tokio::test]
async fn unknown_pages_get_the_styled_404_in_the_readers_language_and_trailing_slashes_redirect() {
    let page = |uri: &str, lang: &str| {
        Request::builder().uri(uri).header(header::ACCEPT_LANGUAGE, lang).body(Body::empty()).unwrap()
    };
    let r = send_request(Fake::empty(|| SessionError::NotFound), page("/nowhere", "en")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("Page not found") && r.text.contains("href=\"/learn\""), "{}", r.text);
    assert!(r.text.contains("/assets/nsplay.css"), "the 404 page is styled like the others");
    let r = send_request(Fake::empty(|| SessionError::NotFound), page("/nowhere", "ja")).await;
    assert!(r.text.contains("ページが見つかりません") && r.text.contains("lang=\"ja\""), "{}", r.text);
    // An unknown lesson says which, escaped.
    let r = send_request(Fake::empty(|| SessionError::NotFound), page("/learn/%3Cb%3Enope", "ja")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("次の名前のレッスンはありません") && r.text.contains("&#60;b&#62;nope"), "{}", r.text);
    for (from, to) in [("/learn/", "/learn"), ("/learn/uts/", "/learn/uts"), ("/play/?lang=ja", "/play?lang=ja")] {
        let r = send_request(Fake::empty(|| SessionError::NotFound), page(from, "en")).await;
        assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT, "{from}");
        assert_eq!(r.location.as_deref(), Some(to), "{from}");
    }
    // Never a redirect to another site.
    for uri in ["//evil.example/", "/\\evil.example/"] {
        let r = send_request(Fake::empty(|| SessionError::NotFound), page(uri, "en")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
    }
}

// ---- Connections: the accept loop over real sockets on 127.0.0.1 (see `conn`).

mod connections {
    use super::super::conn::{ConnLimits, accept_loop};
    use axum::Router;
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::routing::get;
    use futures_util::{SinkExt, StreamExt};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    /// A server of `/` (counting the requests it answered) and `/ws` (an echo WebSocket).
    struct Served {
        addr: std::net::SocketAddr,
        answered: Arc<AtomicUsize>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(limits: ConnLimits) -> Served {
        let answered = Arc::new(AtomicUsize::new(0));
        let n = answered.clone();
        let router = Router::new()
            .route(
                "/",
                get(move || {
                    n.fetch_add(1, Ordering::SeqCst);
                    async { "ok" }
                }),
            )
            .route(
                "/ws",
                get(|ws: WebSocketUpgrade| async {
                    ws.on_upgrade(|mut s| async move {
                        while let Some(Ok(m)) = s.recv().await {
                            if matches!(m, Message::Text(_)) && s.send(m).await.is_err() {
                                break;
                            }
                        }
                    })
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, router, limits, None, stop.clone()));
        Served { addr, answered, stop, task }
    }

    fn limits(max: usize, per_address: usize, header_ms: u64) -> ConnLimits {
        ConnLimits { max, per_address, header_timeout: Duration::from_millis(header_ms) }
    }

    /// Everything the server sends until it closes the connection (bounded wait: a server that
    /// never closes fails the test).
    async fn until_closed(s: &mut TcpStream) -> String {
        let mut all = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut all)).await;
        assert!(r.is_ok(), "the server kept the connection open; got {:?}", String::from_utf8_lossy(&all));
        String::from_utf8_lossy(&all).into_owned()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    /// Sends one GET and reads its whole reply (the reply is small: one read is enough).
    async fn get_once(s: &mut TcpStream) -> String {
        s.write_all(GET).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await.expect("no reply").unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn one_address_over_its_cap_gets_429_in_both_languages_and_a_freed_slot_is_reused() {
        let srv = start(limits(100, 2, 30_000)).await;
        let held1 = TcpStream::connect(srv.addr).await.unwrap();
        let mut held2 = TcpStream::connect(srv.addr).await.unwrap();
        assert!(get_once(&mut held2).await.starts_with("HTTP/1.1 200"));
        let mut third = TcpStream::connect(srv.addr).await.unwrap();
        let reply = until_closed(&mut third).await;
        assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
        assert!(reply.contains("too_many_connections") && reply.contains("at most 2"), "{reply}");
        assert!(reply.contains("接続が多すぎます"), "{reply}");
        drop(held1);
        // The slot comes back once the server has seen the close.
        let mut served = false;
        for _ in 0..200 {
            let mut s = TcpStream::connect(srv.addr).await.unwrap();
            if get_once(&mut s).await.starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served, "a closed connection's slot never came back");
        srv.stop.cancel();
    }

    #[tokio::test]
    async fn past_the_global_cap_connections_wait_unaccepted_until_a_slot_frees() {
        let srv = start(limits(2, 2, 30_000)).await;
        let held = TcpStream::connect(srv.addr).await.unwrap();
        let mut other = TcpStream::connect(srv.addr).await.unwrap();
        assert!(get_once(&mut other).await.starts_with("HTTP/1.1 200"));
        let mut waiting = TcpStream::connect(srv.addr).await.unwrap();
        waiting.write_all(GET).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(srv.answered.load(Ordering::SeqCst), 1, "a third connection was served past the cap of 2");
        drop(held);
        let mut buf = vec![0u8; 4096];
        let n =
            tokio::time::timeout(Duration::from_secs(20), waiting.read(&mut buf)).await.expect("never served").unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        srv.stop.cancel();
    }

    #[tokio::test]
    async fn a_slow_request_head_and_an_idle_kept_alive_connection_are_closed() {
        let srv = start(limits(100, 100, 300)).await;
        let mut slow = TcpStream::connect(srv.addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let reply = until_closed(&mut slow).await;
        assert!(!reply.contains("200 OK"), "{reply}");
        let mut idle = TcpStream::connect(srv.addr).await.unwrap();
        assert!(get_once(&mut idle).await.starts_with("HTTP/1.1 200"));
        until_closed(&mut idle).await;
        let mut silent = TcpStream::connect(srv.addr).await.unwrap();
        until_closed(&mut silent).await;
        srv.stop.cancel();
    }

    #[tokio::test]
    async fn a_websocket_outlives_the_header_timeout_and_keeps_its_slot() {
        let srv = start(limits(100, 1, 200)).await;
        let tcp = TcpStream::connect(srv.addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", srv.addr), tcp).await.unwrap();
        // Several header timeouts pass with nothing sent.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        ws.send(tokio_tungstenite::tungstenite::Message::Text("still here".into())).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("no echo").unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "still here");
        // The socket still holds its address's only slot.
        let mut second = TcpStream::connect(srv.addr).await.unwrap();
        assert!(until_closed(&mut second).await.starts_with("HTTP/1.1 429"));
        drop(ws);
        srv.stop.cancel();
    }

    #[tokio::test]
    async fn stopping_closes_idle_connections_and_returns() {
        let srv = start(limits(100, 100, 30_000)).await;
        let mut idle = TcpStream::connect(srv.addr).await.unwrap();
        assert!(get_once(&mut idle).await.starts_with("HTTP/1.1 200"));
        srv.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), srv.task).await.expect("the loop did not return").unwrap();
        until_closed(&mut idle).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_of_one_session_run_one_at_a_time_and_the_rest_are_429_in_the_readers_language() {
    let gauge = Arc::new(Gauge::default());
    let fake = Fake { gauge: Some(gauge.clone()), ..Fake::with_session(None) };
    let state = AppState {
        manager: fake,
        sockets: TaskTracker::new(),
        trusted_proxies: Arc::new(Vec::new()),
        allowed_origins: Arc::new(Vec::new()),
        metrics: None,
        // Room for every request at once: only the session's own gate may hold them back.
        checks: Arc::new(tokio::sync::Semaphore::new(64)),
        hierarchy: crate::lessons::Hierarchy::V2,
        lessons: std::sync::Arc::new(crate::lessons::Catalog::builtin(crate::lessons::Hierarchy::V2)),
        classroom: None,
    };
    let router = app(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
    let calls = (0..24).map(|i| {
        let router = router.clone();
        let lang = if i % 2 == 0 { "en" } else { "ja" };
        async move {
            let uri = format!("/api/sessions/live/checks/uts/set-hostname?lang={lang}");
            let req = Request::builder().method(Method::POST).uri(uri).body(Body::empty()).unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            (lang, status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(gauge.most.load(SeqCst), 1, "checks of one session ran side by side");
    let ran = replies.iter().filter(|(_, s, _)| *s == StatusCode::OK).count();
    assert_eq!(ran, gauge.calls.load(SeqCst), "every 200 is a check that ran, and only those");
    assert!(ran >= 1, "no check ran at all");
    assert!(ran <= crate::session::HOST_WORK_BURST as usize, "{ran} checks ran past the burst");
    for (lang, status, v) in &replies {
        if *status == StatusCode::OK {
            continue;
        }
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert!(v["error"] == "check_busy" || v["error"] == "check_rate_limited", "{v}");
        let msg = v["message"].as_str().unwrap();
        if *lang == "ja" {
            assert!(msg.contains("チェック"), "{msg}");
        } else {
            assert!(msg.starts_with("A check") || msg.starts_with("Checks"), "{msg}");
        }
    }
    println!("24 concurrent checks: {ran} ran (one at a time), {} refused", 24 - ran);
}

#[tokio::test]
async fn every_503_of_a_create_says_retry_elsewhere_and_other_refusals_do_not() {
    let full = || SessionError::Refused(Refusal::Full { max: 2, retry_after: Duration::from_secs(20) });
    for e in [
        full as fn() -> SessionError,
        || SessionError::Draining,
        || SessionError::ShuttingDown,
        || SessionError::StartTimeout,
    ] {
        let r = create_failing(e).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert!(r.elsewhere && r.retry_after.is_some(), "{}", r.text);
    }
    let r =
        create_failing(|| SessionError::Refused(Refusal::RateLimited { retry_after: Duration::from_secs(3) })).await;
    assert!(!r.elsewhere, "a client too fast is too fast on every node");
    let r = create_failing(|| SessionError::Sandbox(SandboxError::NoUserNamespaces)).await;
    assert!(!r.elsewhere);
    // The session's own node is the only one for a second terminal: no header there.
    let r = send(
        Fake::with_session(Some(|| SessionError::Sandbox(SandboxError::Ids(IdError::Exhausted(4))))),
        Method::POST,
        "/api/sessions/live/terminals",
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(!r.elsewhere, "{}", r.text);
}

#[tokio::test]
async fn a_draining_node_refuses_creates_in_the_readers_language_and_readyz_turns_503_but_healthz_stays_200() {
    let r = create_failing(|| SessionError::Draining).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "draining");
    assert!(r.json()["message"].as_str().unwrap().contains("another server"), "{}", r.text);
    let ja = Request::post("/api/sessions").header(header::ACCEPT_LANGUAGE, "ja").body(Body::empty()).unwrap();
    let r = send_request(Fake::empty(|| SessionError::Draining), ja).await;
    assert!(r.json()["message"].as_str().unwrap().contains("別のサーバー"), "{}", r.text);

    let r = send(Fake::empty(|| SessionError::NotFound), Method::GET, "/readyz", Body::empty()).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "ready"));
    let r = send(Fake::empty(|| SessionError::Draining), Method::GET, "/readyz", Body::empty()).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    assert!(r.elsewhere && r.retry_after.is_some());
    let r = send(Fake::empty(|| SessionError::Draining), Method::GET, "/healthz", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK, "alive while draining: a restart would not help");
}
