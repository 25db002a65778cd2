//! HTTP API handlers (documented in docs/api.md): extract, call the session manager, map errors.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::sessions::Sessions;
use super::ws::{self, Frame};
use crate::lessons::checks;
use crate::session::{EndReason, Requester, Session, SessionError, TerminalRef};
use crate::text;

fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn limits_json(s: &Session) -> serde_json::Value {
    let l = &s.sandbox.limits;
    json!({"memory_bytes": l.memory_bytes, "pids": l.pids, "cpu": l.cpu, "disk_bytes": l.disk_bytes})
}

/// The mark a passed step leaves on its session (beside the check kind's own mark, which later
/// checks read): what a lesson page shows as passed when it comes back to the session.
const STEP_MARK: &str = "step:";

fn step_mark(lesson: &str, step: &str) -> String {
    format!("{STEP_MARK}{lesson}/{step}")
}

/// The steps passed in session `s`, by lesson: `{"uts": ["set-hostname", …]}`.
fn passed_json(s: &Session) -> serde_json::Value {
    let mut by_lesson = serde_json::Map::new();
    for m in s.marks() {
        if let Some((lesson, step)) = m.strip_prefix(STEP_MARK).and_then(|r| r.split_once('/')) {
            let steps = by_lesson.entry(lesson.to_string()).or_insert_with(|| json!([]));
            if let Some(a) = steps.as_array_mut() {
                a.push(json!(step));
            }
        }
    }
    serde_json::Value::Object(by_lesson)
}

fn terminal_path(id: &str, n: u64) -> String {
    format!("/api/sessions/{id}/terminals/{n}")
}

/// Read buffer of a terminal socket. The default 128 KiB is zero-filled and stays resident per
/// socket: most of the server's memory per idle session (162 KiB -> 35 KiB measured at 500
/// sessions).
const WS_READ_BUFFER: usize = 4096;

/// Liveness: 200 while the process serves HTTP, draining or not (a restart would not help).
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 200 while this node takes new sessions, 503 from the moment it starts draining
/// (a proxy's health check or Kubernetes then sends new sessions elsewhere; the sessions it
/// owns still reach it).
pub async fn readyz<S: Sessions>(State(st): State<AppState<S>>) -> Response {
    if st.manager.ready() {
        "ready".into_response()
    } else {
        ApiError {
            retry_after: Some(10),
            retry_elsewhere: true,
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "this node is draining or shutting down and takes no new sessions; its sessions still work until they end",
            )
        }
        .into_response()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    lesson: Option<String>,
    /// An image from `images_allowed` (docs/images.md).
    image: Option<String>,
}

/// The image choice of a create call: the one it asks for, and its lesson's.
pub(super) fn image_choice(
    requested: Option<String>,
    lesson: &Option<String>,
    lessons: &crate::lessons::Loaded,
) -> crate::session::ImageChoice {
    let lesson = lesson.as_deref().and_then(|l| lessons.find(l)).and_then(|l| l.image.clone());
    crate::session::ImageChoice { requested, lesson }
}

/// The body is optional; when present it must be JSON (and at most 64 KiB, enforced by the
/// body limit layer, which reports 413).
fn parse_body<T: serde::de::DeserializeOwned + Default>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let kib = super::MAX_BODY / 1024;
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {kib} KiB"),
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON for this call: {e}")))
}

fn check_lesson(lesson: &Option<String>, lessons: &crate::lessons::Catalog) -> Result<(), ApiError> {
    if let Some(l) = lesson
        && lessons.get().find(l).is_none()
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "unknown_lesson", format!("unknown lesson `{l}`")));
    }
    Ok(())
}

/// The requester: the client address, and the learner when the request carries the cookie.
pub(super) fn requester<S>(st: &AppState<S>, peer: SocketAddr, headers: &axum::http::HeaderMap) -> Requester {
    Requester {
        address: super::client::address(peer, headers, &st.trusted_proxies),
        learner: super::learner::from_headers(headers),
    }
}

fn session_json(s: &Session, terminal: u64) -> serde_json::Value {
    json!({
        "id": s.id,
        "terminal": terminal_path(&s.id, terminal),
        "expires_at": rfc3339(s.expires_at),
        "limits": limits_json(s),
    })
}

pub async fn create_session<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CreateBody = parse_body(body)?;
    super::rooms::require_open(&st, super::pages::pick_lang(None, &headers))?;
    check_lesson(&body.lesson, &st.lessons)?;
    let lang = super::pages::pick_lang(None, &headers);
    let who = requester(&st, peer, &headers);
    let choice = image_choice(body.image, &body.lesson, &st.lessons.get());
    let s =
        st.manager.create_on(body.lesson, choice, who).await.map_err(|e| elsewhere(ApiError::from_session(e, lang)))?;
    Ok((StatusCode::CREATED, Json(session_json(&s, 0))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnerBody {
    lesson: Option<String>,
    /// End the learner's sessions and start a new one.
    #[serde(default)]
    fresh: bool,
}

/// Every 503 of a create means "not this node, not now": another node may take it.
fn elsewhere(e: ApiError) -> ApiError {
    ApiError { retry_elsewhere: e.status == StatusCode::SERVICE_UNAVAILABLE, ..e }
}

fn no_identity() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "no_identity",
        "this call needs the learner cookie (nsplay_learner) that nsplay's pages set; allow cookies for this          site, or use POST /api/sessions",
    )
}

/// The learner's one session: the newest it has, attached to its first running terminal (200),
/// or a new one (201); with `fresh`, its sessions end first.
pub async fn learner_session<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: LearnerBody = parse_body(body)?;
    check_lesson(&body.lesson, &st.lessons)?;
    let lang = super::pages::pick_lang(None, &headers);
    let who = requester(&st, peer, &headers);
    let learner = who.learner.ok_or_else(no_identity)?;
    let mine = st.manager.learner_sessions(learner);
    if body.fresh {
        for s in &mine {
            // Ended meanwhile (by another tab): nothing left to do.
            let _ = st.manager.end(&s.id, EndReason::Deleted).await;
        }
    } else if let Some(s) = mine.last() {
        let terminal = match s.live_terminal() {
            Some(t) => t.index,
            // Every shell exited (the session is in its grace time): a fresh one in it.
            None => st.manager.open_terminal(s).await.map_err(|e| ApiError::from_session(e, lang))?.index,
        };
        let mut out = session_json(s, terminal);
        out["attached"] = json!(true);
        return Ok((StatusCode::OK, Json(out)).into_response());
    }
    let choice = image_choice(None, &body.lesson, &st.lessons.get());
    let s =
        st.manager.create_on(body.lesson, choice, who).await.map_err(|e| elsewhere(ApiError::from_session(e, lang)))?;
    let mut out = session_json(&s, 0);
    out["attached"] = json!(false);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct EndQuery {
    /// A session of the learner's to keep.
    except: Option<String>,
}

/// Ends the sessions of the learner named by the request's cookie (never anyone else's), but
/// `except`.
pub async fn end_learner_sessions<S: Sessions>(
    State(st): State<AppState<S>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<EndQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let learner = super::learner::from_headers(&headers).ok_or_else(no_identity)?;
    let mut ended = 0;
    for s in st.manager.learner_sessions(learner) {
        if Some(&s.id) != q.except.as_ref() && st.manager.end(&s.id, EndReason::Deleted).await.is_ok() {
            ended += 1;
        }
    }
    Ok(Json(json!({"ended": ended})))
}

/// The learner's sessions with the steps passed in each (the `/learn` page's progress): reads
/// nothing but the session table, so it is cheap however often a page asks.
pub async fn list_learner_sessions<S: Sessions>(
    State(st): State<AppState<S>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let learner = super::learner::from_headers(&headers).ok_or_else(no_identity)?;
    let sessions: Vec<serde_json::Value> = st
        .manager
        .learner_sessions(learner)
        .iter()
        .map(|s| json!({"id": s.id, "lesson": s.label, "passed": passed_json(s)}))
        .collect();
    Ok(Json(json!({"sessions": sessions})))
}

pub async fn get_session<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Query(q): Query<super::pages::LangQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lang = super::pages::pick_lang(q.lang.as_deref(), &headers);
    let s = st.manager.get(&id)?;
    let d = st.manager.details(&s).await;
    let u = &d.usage;
    Ok(Json(json!({
        "id": s.id,
        "state": "running",
        "lesson": s.label,
        "created_at": rfc3339(s.created_at),
        "expires_at": rfc3339(s.expires_at),
        "limits": limits_json(&s),
        "usage": {
            "memory_bytes": u.memory_bytes,
            "pids": u.pids,
            "cpu_usec": u.cpu_usec,
            "oom_kills": u.oom_kills,
            "pids_limit_hits": u.pids_limit_hits,
            "throttled_usec": u.throttled_usec,
            "relay_cpu_usec": u.relay_cpu_usec,
        },
        "namespaces": d.namespaces,
        "nested": d.nested.iter().map(|(kind, inode, pid)| json!({"kind": kind, "inode": inode, "pid": pid})).collect::<Vec<_>>(),
        "passed": passed_json(&s),
        "terminals": s.live_terminals().into_iter().map(|n| terminal_path(&s.id, n)).collect::<Vec<_>>(),
        "events": s.events().into_iter().map(|e| json!({"at": rfc3339(e.at), "message": text::render(lang, &e.notice)})).collect::<Vec<_>>(),
    })))
}

pub async fn delete_session<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.manager.end(&id, EndReason::Deleted).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prometheus text format.
pub async fn metrics<S: Sessions>(State(st): State<AppState<S>>) -> Response {
    match &st.metrics {
        Some(h) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => ApiError::not_found("metrics are not enabled in this process").into_response(),
    }
}

/// Stops every process the learner started (a runaway fork bomb too), keeping the session and its
/// shells.
pub async fn reset_session<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = st.manager.get(&id)?;
    let killed = st.manager.reset(&s).await?;
    Ok(Json(json!({"killed": killed})))
}

pub async fn create_terminal<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Query(q): Query<super::pages::LangQuery>,
) -> Result<Response, ApiError> {
    // The refusals (8 open, 64 opened, too fast) are shown in the page as they are.
    let lang = super::pages::pick_lang(q.lang.as_deref(), &headers);
    let s = st.manager.get(&id)?;
    let t = st.manager.open_terminal(&s).await.map_err(|e| ApiError::from_session(e, lang))?;
    Ok((StatusCode::CREATED, Json(json!({"terminal": terminal_path(&id, t.index)}))).into_response())
}

/// Closes a terminal as closing its window does: 204 once it has ended (its shell hung up, or
/// killed if it ignored that), what it left in the background still running.
pub async fn close_terminal<S: Sessions>(
    State(st): State<AppState<S>>,
    Path((id, n)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let s = st.manager.get(&id)?;
    st.manager.close_terminal(&s, n).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn terminal_socket<S: Sessions>(
    State(st): State<AppState<S>>,
    Path((id, n)): Path<(String, u64)>,
    headers: axum::http::HeaderMap,
    Query(q): Query<super::pages::LangQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Notices on the socket follow the page's language (`?lang=`, cookie, Accept-Language).
    let lang = super::pages::pick_lang(q.lang.as_deref(), &headers);
    let s = st.manager.get(&id)?;
    let term = s.terminal_ref(n).ok_or(SessionError::NoTerminal)?;
    upgrade_terminal(ws, s, term, st.sockets.clone(), lang, ws::Mode::Interactive)
}

/// Upgrades a terminal's socket (bounded messages and read buffer) and runs the bridge in `mode`
/// on it, tracked so that a shutdown waits for it; an ended terminal gets its exit code. The
/// learner's socket and the instructor's read-only view both come here.
pub(super) fn upgrade_terminal(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    session: Arc<Session>,
    term: TerminalRef,
    tracker: tokio_util::task::TaskTracker,
    lang: &'static str,
    mode: ws::Mode,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| ApiError::bad_request(format!("this URL is a WebSocket: {}", e.body_text())))?;
    Ok(ws
        .max_message_size(ws::MAX_CLIENT_MESSAGE)
        .max_frame_size(ws::MAX_CLIENT_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            let sink = Box::pin(sink.with(|f: Frame| async move {
                Ok::<_, axum::Error>(match f {
                    Frame::Binary(b) => Message::Binary(b),
                    Frame::Text(t) => Message::Text(t.into()),
                    Frame::Close(code, reason) => Message::Close(Some(CloseFrame { code, reason: reason.into() })),
                    Frame::Other => Message::Ping(Bytes::new()),
                })
            }));
            let stream = stream.map(|m| {
                m.map(|m| match m {
                    Message::Binary(b) => Frame::Binary(b),
                    Message::Text(t) => Frame::Text(t.to_string()),
                    Message::Close(c) => Frame::Close(c.map(|c| c.code).unwrap_or(ws::CLOSE_NORMAL), String::new()),
                    _ => Frame::Other,
                })
            });
            tracker.track_future(async move {
                // The session lives as long as its socket.
                let _session = session;
                match term {
                    TerminalRef::Live(term) => ws::bridge_as(sink, stream, term, lang, mode).await,
                    TerminalRef::Ended(code) => ws::ended(sink, code).await,
                }
            })
        }))
}

/// A terminal's output as an asciicast v2 file (`asciinema play` replays it): the newest
/// output the terminal kept and its resizes (docs/api.md says how much), as a download; an
/// ended terminal's too, while its session lives.
pub async fn terminal_cast<S: Sessions>(
    State(st): State<AppState<S>>,
    Path((id, n)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    let s = st.manager.get(&id)?;
    let title = format!("nsplay {} terminal {n}", s.label.as_deref().unwrap_or("playground"));
    let cast = s.asciicast(n, &title)?;
    let disposition = format!("attachment; filename=\"nsplay-terminal-{n}.cast\"");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-asciicast".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            (axum::http::header::CACHE_CONTROL, "no-store".to_string()),
        ],
        cast,
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    /// What the learner typed for a quiz step.
    answer: Option<String>,
}

/// Longest quiz answer read.
const MAX_ANSWER: usize = 1024;

/// The steps of `step.needs` not yet passed in session `s` (their marks missing).
pub fn missing_needs(s: &Session, topic: &str, step: &crate::lessons::Step) -> Vec<String> {
    let marks = s.marks();
    step.needs.iter().filter(|n| !marks.contains(&step_mark(topic, n))).cloned().collect()
}

/// What a step whose `needs` are not passed answers.
fn needs_message(lang: &str, missing: &[String]) -> String {
    let steps = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
    text::fill(text::get(lang, "lesson_needs"), &[("steps", steps)])
}

/// Runs one step's check on session `s` (blocking: it reads host files and may run nsenter),
/// recording a pass as marks on the session. The caller holds the session's and the server's
/// check slots.
pub fn check_step<S: Sessions>(
    manager: &S,
    s: &Session,
    topic: &str,
    step: &crate::lessons::Step,
    answer: Option<String>,
    lang: &str,
) -> checks::Outcome {
    let Some(check) = &step.check else {
        return checks::Outcome { passed: false, detail: String::new() };
    };
    let missing = missing_needs(s, topic, step);
    if !missing.is_empty() {
        return checks::Outcome { passed: false, detail: needs_message(lang, &missing) };
    }
    let deadline = std::time::Instant::now() + checks::CHECK_TIMEOUT;
    let view = manager.host_view(s);
    let probe = checks::Probe {
        init_pid: view.init_pid,
        pids: view.pids,
        hostname: &view.hostname,
        uid_base: view.uid_base,
        usage: view.usage,
        cgroup_dir: view.cgroup_dir,
        charge_to: view.charge_to,
        passed: s.marks(),
        deadline,
        answer,
    };
    let outcome = checks::run_check(check, &step.check_args, &probe, lang);
    if outcome.passed {
        // Later steps may build on this one (`Probe::passed`, `needs`).
        if let crate::lessons::Check::Kind(kind) = check {
            s.mark(kind);
        }
        s.mark(&step_mark(topic, &step.id));
    }
    outcome
}

pub async fn run_check<S: Sessions>(
    State(st): State<AppState<S>>,
    Path((id, lesson, step)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    Query(q): Query<super::pages::LangQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = st.manager.get(&id)?;
    let catalog = st.lessons.get();
    let lesson = catalog
        .find(&lesson)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("there is no lesson called `{lesson}`")))?;
    let step = lesson
        .step(&step)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("lesson `{}` has no step `{step}`", lesson.topic)))?;
    if step.check.is_none() {
        return Err(ApiError::not_found(format!("step `{}` has nothing to check", step.id)));
    }
    let body: CheckBody = parse_body(body)?;
    let answer = body.answer.map(|a| a.chars().take(MAX_ANSWER).collect::<String>());
    let lang = super::pages::pick_lang(q.lang.as_deref(), &headers);
    let missing = missing_needs(&s, &lesson.topic, &step);
    if !missing.is_empty() {
        // Refused before any host work: the steps it builds on come first.
        return Ok(Json(json!({"passed": false, "detail": needs_message(lang, &missing), "needs": missing})));
    }
    // The host does this work for the session, outside its cgroup: one check at a time per
    // session (and rate limited), a bounded number at once across sessions, each with a deadline.
    let session_slot = s.host_work().await.map_err(|e| ApiError::from_session(e, lang))?;
    let global_slot = tokio::time::timeout(crate::session::HOST_WORK_WAIT, st.checks.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            let seconds = crate::session::HOST_WORK_WAIT.as_secs().max(1);
            let msg = text::fill(text::get(lang, "refused_checks_busy"), &[("seconds", seconds.to_string())]);
            ApiError {
                retry_after: Some(seconds),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "checks_busy", msg)
            }
        })?;
    let manager = st.manager.clone();
    // A room learner's session: its checks go to the classroom's store too.
    let learner = st.classroom.as_ref().and_then(|_| crate::classroom::learner_of(&s.marks()).map(str::to_string));
    // Checks read /proc and cgroup files of the session, and may run nsenter: blocking work.
    // The slots travel with it: a check that outlives its caller's wait still counts until it ends.
    let (topic, step_c) = (lesson.topic.clone(), step.clone());
    let work = tokio::task::spawn_blocking(move || {
        let _slots = (session_slot, global_slot);
        check_step(&manager, &s, &topic, &step_c, answer, lang)
    });
    let outcome = match tokio::time::timeout(checks::CHECK_TIMEOUT + std::time::Duration::from_secs(1), work).await {
        Ok(done) => done.map_err(|_| ApiError::from(SessionError::ShuttingDown))?,
        Err(_) => checks::timed_out(lang),
    };
    if let (Some(c), Some(learner)) = (&st.classroom, learner) {
        super::rooms::record_check(c, &learner, &lesson.topic, &step.id, outcome.passed).await;
    }
    Ok(Json(json!({"passed": outcome.passed, "detail": outcome.detail})))
}
