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
use crate::session::{EndReason, Session, SessionError};
use crate::text;

fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn limits_json(s: &Session) -> serde_json::Value {
    let l = &s.sandbox.limits;
    json!({"memory_bytes": l.memory_bytes, "pids": l.pids, "cpu": l.cpu, "disk_bytes": l.disk_bytes})
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

pub async fn create_session<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CreateBody = parse_body(body)?;
    if let Some(l) = &body.lesson
        && crate::lessons::find(l).is_none()
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "unknown_lesson", format!("unknown lesson `{l}`")));
    }
    let lang = super::pages::pick_lang(None, &headers);
    let client = super::client::address(peer, &headers, &st.trusted_proxies);
    let s = st.manager.create(body.lesson, client).await.map_err(|e| {
        let e = ApiError::from_session(e, lang);
        // Every 503 of a create means "not this node, not now": another node may take it.
        ApiError { retry_elsewhere: e.status == StatusCode::SERVICE_UNAVAILABLE, ..e }
    })?;
    let out = json!({
        "id": s.id,
        "terminal": terminal_path(&s.id, 0),
        "expires_at": rfc3339(s.expires_at),
        "limits": limits_json(&s),
    });
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub async fn get_session<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Query(q): Query<super::pages::LangQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lang = super::pages::pick_lang(q.lang.as_deref(), &headers);
    let s = st.manager.get(&id)?;
    let u = st.manager.usage(&s);
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
        "namespaces": st.manager.namespaces(&s),
        "nested": st.manager.nested(&s).into_iter().map(|(kind, inode, pid)| json!({"kind": kind, "inode": inode, "pid": pid})).collect::<Vec<_>>(),
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

pub async fn create_terminal<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = st.manager.get(&id)?;
    let t = st.manager.open_terminal(&s).await?;
    Ok((StatusCode::CREATED, Json(json!({"terminal": terminal_path(&id, t.index)}))).into_response())
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
    let term = s.terminal(n).ok_or(SessionError::NoTerminal)?;
    let ws = ws.map_err(|e| ApiError::bad_request(format!("this URL is a WebSocket: {}", e.body_text())))?;
    let tracker = st.sockets.clone();
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
            let _s: Arc<Session> = s;
            tracker.track_future(ws::bridge(sink, stream, term, lang))
        }))
}

pub async fn run_check<S: Sessions>(
    State(st): State<AppState<S>>,
    Path((id, lesson, step)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    Query(q): Query<super::pages::LangQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = st.manager.get(&id)?;
    let lesson = crate::lessons::find(&lesson)
        .ok_or_else(|| ApiError::not_found(format!("there is no lesson called `{lesson}`")))?;
    let step = lesson
        .step(&step)
        .ok_or_else(|| ApiError::not_found(format!("lesson `{}` has no step `{step}`", lesson.topic)))?;
    let kind =
        step.check.clone().ok_or_else(|| ApiError::not_found(format!("step `{}` has nothing to check", step.id)))?;
    let lang = super::pages::pick_lang(q.lang.as_deref(), &headers);
    let args = step.check_args.clone();
    let manager = st.manager.clone();
    // Checks read /proc and cgroup files of the session, and may run nsenter: blocking work.
    let outcome = tokio::task::spawn_blocking(move || {
        let view = manager.host_view(&s);
        let probe = checks::Probe {
            init_pid: view.init_pid,
            pids: view.pids,
            hostname: &view.hostname,
            uid_base: view.uid_base,
            usage: view.usage,
            cgroup_dir: view.cgroup_dir,
            passed: s.marks(),
        };
        let outcome = checks::run(&kind, &args, &probe, lang);
        if outcome.passed {
            // Later steps may build on this one (`Probe::passed`).
            s.mark(&kind);
        }
        outcome
    })
    .await
    .map_err(|_| ApiError::from(SessionError::ShuttingDown))?;
    Ok(Json(json!({"passed": outcome.passed, "detail": outcome.detail})))
}
