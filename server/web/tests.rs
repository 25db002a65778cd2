//! The router in-process, over a fake session layer (no root, no sandbox): every error status
//! of docs/api.md with its JSON body and `Retry-After`, the body limit, malformed JSON, unknown
//! routes, wrong methods, a terminal URL fetched without an upgrade, and cross-site browser
//! requests.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
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
use crate::session::{EndReason, HostView, NsPair, Refusal, Session, SessionError, Terminal, TerminalError};
use nsplay_sandbox::{IdError, SandboxError, Usage};

/// A session layer that holds at most one session (`live`, with the terminals it was given)
/// and answers `create` and `open_terminal` with the errors it was told to.
#[derive(Clone)]
struct Fake {
    live: Option<Arc<Session>>,
    create: fn() -> SessionError,
    open_terminal: Option<fn() -> SessionError>,
}

impl Fake {
    fn empty(create: fn() -> SessionError) -> Fake {
        Fake { live: None, create, open_terminal: None }
    }

    /// One session, `live`, with a terminal 0 on a plain pty.
    fn with_session(open_terminal: Option<fn() -> SessionError>) -> Fake {
        Fake {
            live: Some(Session::detached("live", vec![pty_terminal(0)])),
            create: || SessionError::NotFound,
            open_terminal,
        }
    }
}

fn pty_terminal(index: u64) -> Arc<Terminal> {
    let pty = nix::pty::openpty(None, None).unwrap();
    // The slave end stays open as long as the test runs, so the terminal does not see a hangup.
    std::mem::forget(pty.slave);
    Terminal::start(index, pty.master, None, 80, 24).unwrap()
}

impl Sessions for Fake {
    async fn create(&self, _label: Option<String>, _client: IpAddr) -> Result<Arc<Session>, SessionError> {
        Err((self.create)())
    }
    fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.live.clone().filter(|s| s.id == id).ok_or(SessionError::NotFound)
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
        HostView {
            init_pid: s.sandbox.init_pid,
            pids: Vec::new(),
            hostname: s.sandbox.hostname.clone(),
            uid_base: s.sandbox.ids.base,
            usage: Usage::default(),
            cgroup_dir: std::path::PathBuf::from("/nonexistent"),
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
    /// Whether `X-Nsplay-Retry-Elsewhere: 1` came with it.
    elsewhere: bool,
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
        trusted_proxies: Arc::new(Vec::new()),
        allowed_origins: Arc::new(vec![ALLOWED_ORIGIN.into()]),
        metrics: None,
    };
    let router = app(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
    let resp = router.oneshot(req).await.unwrap();
    let header = |name| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let retry_after = header(header::RETRY_AFTER).map(|v| v.parse().unwrap());
    let allow = header(header::ALLOW);
    let location = header(header::LOCATION);
    let elsewhere = header(super::error::RETRY_ELSEWHERE.parse().unwrap()).is_some_and(|v| v == "1");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply { status, retry_after, allow, location, elsewhere, text: String::from_utf8(bytes.to_vec()).unwrap() }
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
    let r = send(Fake::with_session(None), Method::DELETE, "/api/sessions/live", Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.text.is_empty());
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
        (Method::POST, "/api/sessions/live/terminals/0", "GET,HEAD"),
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
