//! The instructor's side (docs/classroom.md, docs/api.md): sign-in, the rooms API, the
//! dashboard's progress (JSON and CSV), the QR code, and the pages. Every call but sign-in
//! needs the instructor: the `nsplay_instructor` cookie (HttpOnly, SameSite=Strict, Secure
//! behind TLS) or `Authorization: Bearer <admin token>` for scripts. A change made with the
//! cookie must also carry the sign-in's CSRF token in `X-CSRF-Token`; with the Origin guard
//! ([`super::origin`]) and SameSite=Strict that is three locks against cross-site requests.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::pages::{LangQuery, Ui, pick_lang, render};
use super::sessions::Sessions;
use crate::classroom::{self, Classroom, ClassroomError, rfc3339};
use crate::session::EndReason;
use crate::store::{RoomRow, now_ms};
use crate::text;

pub const COOKIE: &str = "nsplay_instructor";
const CSRF_HEADER: &str = "x-csrf-token";

/// The classroom, or 404 where this server runs without one (the router's tests of others).
pub fn classroom_of<S>(st: &AppState<S>) -> Result<&Arc<Classroom>, ApiError> {
    st.classroom.as_ref().ok_or_else(|| ApiError::not_found("classroom mode is not enabled in this process"))
}

/// The classroom, once the request is an instructor's ([`authorize`]): what every instructor
/// handler starts with.
async fn instructor_classroom<'a, S>(
    st: &'a AppState<S>,
    headers: &HeaderMap,
    method: &Method,
    lang: &str,
) -> Result<&'a Arc<Classroom>, ApiError> {
    let c = classroom_of(st)?;
    authorize(c, headers, method, lang).await?;
    Ok(c)
}

pub fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "classroom store");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store_failed",
        format!("the classroom's database failed: {e}. The operator should check the server log."),
    )
}

pub fn classroom_error(e: ClassroomError, lang: &str) -> ApiError {
    match e {
        ClassroomError::Room(r) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_room", text::render(lang, &r)),
        ClassroomError::Join(j) => {
            let (status, code) = match j {
                classroom::JoinError::NotFound => (StatusCode::NOT_FOUND, "room_not_found"),
                classroom::JoinError::NotOpen { .. } => (StatusCode::FORBIDDEN, "room_not_open"),
                classroom::JoinError::Closed => (StatusCode::GONE, "room_closed"),
                classroom::JoinError::Full { .. } => (StatusCode::CONFLICT, "room_full"),
                classroom::JoinError::Name(_) => (StatusCode::BAD_REQUEST, "bad_name"),
            };
            ApiError::new(status, code, text::render(lang, &j))
        }
        ClassroomError::Auth(a) => ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", text::render(lang, &a)),
        ClassroomError::Store(s) => store_error(s),
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// The signed-in instructor's CSRF token (`None` for a bearer request, which carries no ambient
/// credential), or 401/403.
pub async fn authorize(
    c: &Classroom,
    headers: &HeaderMap,
    method: &Method,
    lang: &str,
) -> Result<Option<String>, ApiError> {
    if let Some(token) = bearer(headers) {
        return if c.bearer_ok(token) {
            Ok(None)
        } else {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", text::get(lang, "instructor_bad_token")))
        };
    }
    let required =
        || ApiError::new(StatusCode::UNAUTHORIZED, "instructor_required", text::get(lang, "instructor_required"));
    let cookie = cookie_value(headers, COOKIE).ok_or_else(required)?;
    let who = c.instructor(cookie).await.map_err(store_error)?.ok_or_else(required)?;
    if !matches!(*method, Method::GET | Method::HEAD) {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !classroom::auth::same(sent, &who.csrf) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "csrf", text::get(lang, "instructor_csrf")));
        }
    }
    Ok(Some(who.csrf))
}

/// Whether the browser reached nsplay over TLS: nsplay's own (`tls`, from the request's
/// `conn::OverTls`), its page's origin is `https:`, or a trusted proxy says so in
/// `X-Forwarded-Proto`.
fn over_tls(tls: bool, peer: SocketAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> bool {
    let origin_https =
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("https://"));
    let peer_trusted = trusted.iter().any(|n| n.contains(&peer.ip().to_canonical()));
    let forwarded_https = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https");
    tls || origin_https || (peer_trusted && forwarded_https)
}

/// The join URL of `code` as this request's browser reaches the server.
pub fn join_url(tls: bool, peer: SocketAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet], code: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if over_tls(tls, peer, headers, trusted) { "https" } else { "http" };
    format!("{scheme}://{host}/join/{code}")
}

fn room_state(r: &RoomRow) -> &'static str {
    let now = now_ms();
    if r.ended_at.is_some() {
        "ended"
    } else if r.closes_at.is_some_and(|c| now >= c) {
        "closed"
    } else if r.opens_at.is_some_and(|o| now < o) {
        "scheduled"
    } else {
        "open"
    }
}

fn room_json(r: &RoomRow, join_url: String, learners: i64) -> serde_json::Value {
    json!({
        "id": r.id,
        "code": r.code,
        "title": r.title,
        "lessons": r.lessons,
        "capacity": r.capacity,
        "limits": {"memory_bytes": r.memory_bytes, "pids": r.pids, "cpu": r.cpu_millis.map(|m| m as f64 / 1000.0)},
        "image": r.image,
        "opens_at": r.opens_at.map(rfc3339),
        "closes_at": r.closes_at.map(rfc3339),
        "created_at": rfc3339(r.created_at),
        "ended_at": r.ended_at.map(rfc3339),
        "state": room_state(r),
        "join_url": join_url,
        "learners": learners,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON for this call: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInBody {
    token: String,
}

/// `POST /api/instructor/login {"token"}`: 204 with the sign-in cookie, or 401.
pub async fn sign_in<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<super::conn::OverTls>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = classroom_of(&st)?;
    let body: SignInBody = parse_json(body)?;
    let s = c.sign_in(&body.token).await.map_err(|e| classroom_error(e, lang))?;
    let secure = if over_tls(tls.is_some(), peer, &headers, &st.trusted_proxies) { "; Secure" } else { "" };
    let max_age = c.sign_in_lifetime().as_secs();
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}", s.cookie);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| ApiError::bad_request(e.to_string()))?);
    Ok(resp)
}

/// `POST /api/instructor/logout`: the sign-in ends and the cookie is cleared.
pub async fn sign_out<S: Sessions>(State(st): State<AppState<S>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = classroom_of(&st)?;
    if let Some(v) = cookie_value(&headers, COOKIE) {
        c.sign_out(v).await.map_err(store_error)?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&clear).expect("a plain header value"));
    Ok(resp)
}

/// `GET /api/rooms`: every room, newest first.
pub async fn list_rooms<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<super::conn::OverTls>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    let mut out = Vec::new();
    for r in c.rooms().await.map_err(store_error)? {
        let n = c.store().count_learners(&r.id).await.map_err(store_error)?;
        out.push(room_json(&r, join_url(tls.is_some(), peer, &headers, &st.trusted_proxies, &r.code), n));
    }
    Ok(Json(json!({"rooms": out})))
}

/// `POST /api/rooms`: 201 with the new room.
pub async fn create_room<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<super::conn::OverTls>>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    let new: classroom::NewRoom = parse_json(body)?;
    let r = c.create_room(new).await.map_err(|e| classroom_error(e, lang))?;
    tracing::info!(room = %r.id, code = %r.code, "room created");
    let out = room_json(&r, join_url(tls.is_some(), peer, &headers, &st.trusted_proxies, &r.code), 0);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A room as `GET /api/rooms/{id}` shows it: with its join URL and how many learners joined.
async fn room_reply<S: Sessions>(
    st: &AppState<S>,
    c: &Classroom,
    id: &str,
    tls: bool,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = room_or_404(st, id).await?;
    let n = c.store().count_learners(&r.id).await.map_err(store_error)?;
    let mut out = room_json(&r, join_url(tls, peer, headers, &st.trusted_proxies, &r.code), n);
    // This node's sessions built ahead for the room ("prepare"), and every node's as their
    // sweeps last reported them (a shared database).
    out["prepared"] = json!(st.manager.reserve_state(&classroom::room_mark(&r.id)));
    let (ready, wanted, nodes) = c.reserves_of(&r.id).await.map_err(store_error)?;
    out["prepared_all"] = json!({"ready": ready, "wanted": wanted, "nodes": nodes});
    Ok(Json(out))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PrepareBody {
    /// How many learners are expected (default and at most: the room's capacity).
    expected: Option<usize>,
}

/// `POST /api/rooms/{id}/prepare {"expected"?}`: 202; every node that shares the store builds
/// sessions ahead for the room — its share ([`classroom::node_share`]) of the learners expected
/// (at most the capacity), less those seated in a live session on it, bounded by its
/// `max_sessions` and host headroom — with the room's limits and on its image, and hands them
/// to its joiners first. This node starts at once, the others at their next sweep. The room
/// JSON (`GET /api/rooms/{id}`) says how far this node is under `prepared`.
pub async fn prepare_room<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    let empty = body.as_ref().is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace));
    let body: PrepareBody = if empty { PrepareBody::default() } else { parse_json(body)? };
    let r = room_or_404(&st, &id).await?;
    if matches!(room_state(&r), "ended" | "closed") {
        return Err(classroom_error(ClassroomError::Join(classroom::JoinError::Closed), lang));
    }
    let capacity = usize::try_from(r.capacity).unwrap_or(0);
    let key = classroom::room_mark(&r.id);
    let seated = st.manager.marked(classroom::ROOM_MARK).get(&key).copied().unwrap_or(0);
    let expected = body.expected.unwrap_or(capacity).min(capacity);
    // This node's share now; the ask goes into the store, where every node's sweep (this one's
    // too, from then on) finds it and keeps its own share built.
    let nodes = c.live_nodes().await.map_err(store_error)?;
    let want = classroom::node_share(expected, nodes).saturating_sub(seated);
    st.manager
        .prepare_reserve(&key, want, c.limits_for(&r), &super::rooms::room_image(&r, &st.lessons.get()))
        .map_err(|e| ApiError::from_session(e, lang))?;
    c.ask_prepare(&r.id, expected, false).await.map_err(store_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"prepared": st.manager.reserve_state(&key), "nodes": nodes}))))
}

async fn room_or_404<S>(st: &AppState<S>, id: &str) -> Result<RoomRow, ApiError> {
    classroom_of(st)?
        .room(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("there is no room `{id}`")))
}

/// `GET /api/rooms/{id}`.
pub async fn get_room<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<super::conn::OverTls>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    room_reply(&st, c, &id, tls.is_some(), peer, &headers).await
}

/// `POST /api/rooms/{id}/end`: no more joins, and every learner's session ends.
pub async fn end_room<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    room_or_404(&st, &id).await?;
    c.end_room(&id).await.map_err(store_error)?;
    st.manager.end_reserve(&classroom::room_mark(&id));
    for l in c.store().learners(&id).await.map_err(store_error)? {
        if let Some(s) = l.session_id {
            // Already gone is fine: sessions end with the server or on their own.
            let _ = st.manager.end(&s, EndReason::Deleted).await;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn progress_of<S: Sessions>(st: &AppState<S>, id: &str) -> Result<classroom::Progress, ApiError> {
    classroom_of(st)?
        .progress(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("there is no room `{id}`")))
}

/// `GET /api/rooms/{id}/progress`: the steps, and per learner the passed matrix.
pub async fn progress<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lang = pick_lang(None, &headers);
    instructor_classroom(&st, &headers, &method, lang).await?;
    Ok(Json(progress_json(&st, &id).await?))
}

/// The body of `GET /api/rooms/{id}/progress` (and of each event of its stream).
async fn progress_json<S: Sessions>(st: &AppState<S>, id: &str) -> Result<serde_json::Value, ApiError> {
    let p = progress_of(st, id).await?;
    let learners: Vec<_> = p
        .learners
        .iter()
        .map(|l| {
            // A session on this node counts at once; one elsewhere by its node's latest report.
            let local = l.session.as_deref().and_then(|s| st.manager.get(s).ok());
            let ours = l.session.as_deref().is_some_and(|s| classroom_of(st).is_ok_and(|c| c.is_local(s)));
            // This node knows its own sessions (a report from before a restart is stale).
            let online = local.is_some() || (!ours && l.online);
            let stuck = online && l.stuck;
            let mut v = serde_json::to_value(l).unwrap_or_default();
            v["online"] = json!(online);
            v["stuck"] = json!(stuck);
            v["state"] = json!(if stuck {
                "stuck"
            } else if online {
                "online"
            } else {
                "offline"
            });
            if let Some(s) = local
                && l.memory_bytes == 0
            {
                let u = st.manager.usage(&s);
                v["memory_bytes"] = json!(u.memory_bytes);
                v["pids"] = json!(u.pids);
            }
            v
        })
        .collect();
    Ok(json!({
        "room": {"id": p.room.id, "code": p.room.code, "title": p.room.title, "lessons": p.room.lessons, "capacity": p.room.capacity, "state": room_state(&p.room)},
        "steps": p.steps,
        "learners": learners,
        "closes_at": p.room.closes_at.map(rfc3339),
        "stuck_after_seconds": classroom_of(st)?.stuck_after().as_secs(),
    }))
}

/// Longest an event stream stays silent before it sends the progress anyway (sessions that
/// ended change `online` without a classroom change) and looks whether the server is stopping.
const STREAM_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a silent event stream looks whether the server is stopping.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /api/rooms/{id}/events`: Server-Sent Events, one `progress` event (the body of
/// `/progress`) at once, then at every change of the classroom (a join, a check, the room's
/// end) and at least every 10 s. It ends when the server stops.
pub async fn events<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    let rx = c.subscribe();
    let first = progress_json(&st, &id).await?;
    // On a database shared with other nodes, their changes reach this node only through it:
    // the stream compares the room's fingerprint every poll.
    let shared = c.store().backend() != "SQLite";
    let stream = futures_util::stream::unfold((st, id, rx, Some(first)), move |(st, id, mut rx, ready)| async move {
        let body = match ready {
            Some(b) => b,
            None => {
                // A change, or the refresh time, whichever comes first; every second it looks
                // whether the server is stopping (the socket tracker closes): then it ends.
                let mut waited = std::time::Duration::ZERO;
                let c = st.classroom.clone()?;
                let mut seen = if shared { c.fingerprint(&id).await.ok() } else { None };
                loop {
                    if st.sockets.is_closed() {
                        return None;
                    }
                    if shared {
                        let now = c.fingerprint(&id).await.ok();
                        if now != seen {
                            break;
                        }
                        seen = now;
                    }
                    match tokio::time::timeout(STREAM_POLL, rx.changed()).await {
                        Ok(Err(_)) => return None,
                        Ok(Ok(())) => break,
                        Err(_) if waited + STREAM_POLL >= STREAM_REFRESH => break,
                        Err(_) => waited += STREAM_POLL,
                    }
                }
                progress_json(&st, &id).await.ok()?
            }
        };
        let ev = Event::default().event("progress").data(body.to_string());
        Some((Ok::<_, std::convert::Infallible>(ev), (st, id, rx, None)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// `GET /api/rooms/{id}/progress.csv`.
pub async fn progress_csv<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lang = pick_lang(None, &headers);
    instructor_classroom(&st, &headers, &method, lang).await?;
    let p = progress_of(&st, &id).await?;
    let name = format!("attachment; filename=\"nsplay-{}.csv\"", p.room.code);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        classroom::csv(&p),
    )
        .into_response())
}

/// The join URL as a QR code (SVG), drawn here: no network.
pub fn qr_svg(url: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(|e| ApiError::bad_request(format!("no QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

/// `GET /api/rooms/{id}/qr.svg`.
pub async fn qr<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<super::conn::OverTls>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lang = pick_lang(None, &headers);
    instructor_classroom(&st, &headers, &method, lang).await?;
    let r = room_or_404(&st, &id).await?;
    let svg = qr_svg(&join_url(tls.is_some(), peer, &headers, &st.trusted_proxies, &r.code))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    text: String,
}

/// `POST /api/rooms/{id}/notices {"text"}`: 204; every learner of the room sees it on their
/// pages within seconds, on whichever node their session is.
pub async fn post_notice<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    let body: NoticeBody = parse_json(body)?;
    room_or_404(&st, &id).await?;
    c.notice(&id, &body.text).await.map_err(|e| classroom_error(e, lang))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    minutes: i64,
}

/// `POST /api/rooms/{id}/extend {"minutes"}`: the room, its closing time moved.
pub async fn extend_room<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<super::conn::OverTls>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    let body: ExtendBody = parse_json(body)?;
    let r = room_or_404(&st, &id).await?;
    c.extend(&r, body.minutes).await.map_err(|e| classroom_error(e, lang))?;
    room_reply(&st, c, &id, tls.is_some(), peer, &headers).await
}

/// `POST /api/rooms/{id}/learners/{learner}/end`: 204; the learner's session ends (here at
/// once, on another node at its next sweep). The learner may join again.
pub async fn end_learner<S: Sessions>(
    State(st): State<AppState<S>>,
    Path((id, learner)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = instructor_classroom(&st, &headers, &method, lang).await?;
    if !c.request_end(&id, &learner).await.map_err(store_error)? {
        return Err(ApiError::not_found(format!("room `{id}` has no learner `{learner}`")));
    }
    if let Some(sid) = c.store().learner(&learner).await.map_err(store_error)?.and_then(|l| l.session_id)
        && st.manager.get(&sid).is_ok()
    {
        let _ = st.manager.end(&sid, EndReason::Deleted).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/sessions/{id}/terminals/{n}/view`: a read-only live view of a room learner's
/// terminal (WebSocket), for the instructor only. Its URL starts with the session's, so a proxy
/// in front of many nodes routes it to the node holding the session (docs/scale-out.md); the
/// sign-in it carries is checked against the shared database. The bridge drops the viewer's
/// keystrokes and resizes ([`super::ws::Mode::Viewer`]); the learner's page is told.
pub async fn view_socket<S: Sessions>(
    State(st): State<AppState<S>>,
    Path((id, n)): Path<(String, u64)>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    ws: Result<axum::extract::ws::WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    instructor_classroom(&st, &headers, &method, lang).await?;
    let s = st.manager.get(&id)?;
    // Instructors watch their rooms' learners, never an anonymous playground session.
    if classroom::learner_of(&s.marks()).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_room_session",
            "only the sessions of a room's learners can be viewed".to_string(),
        ));
    }
    let term = s.terminal_ref(n).ok_or(crate::session::SessionError::NoTerminal)?;
    super::api::upgrade_terminal(ws, s, term, st.sockets.clone(), lang, super::ws::Mode::Viewer)
}

// ---- pages

#[derive(Template)]
#[template(path = "instructor-login.html")]
struct LoginPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
}

pub struct LessonChoice {
    pub topic: String,
    pub title: String,
}

#[derive(Template)]
#[template(path = "instructor.html")]
struct DashboardPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    csrf: String,
    lessons: Vec<LessonChoice>,
    max_capacity: usize,
    /// The images a room may choose (none: the form has no image field).
    images: Vec<String>,
}

#[derive(Template)]
#[template(path = "projector.html")]
struct ProjectorPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    csrf: String,
    room_id: String,
    title: String,
    code: String,
    join_url: String,
    qr_svg: String,
}

fn page_lang(q: &LangQuery, headers: &HeaderMap) -> &'static str {
    pick_lang(q.lang.as_deref(), headers)
}

/// `GET /instructor/login`.
pub async fn login_page(Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let lang = page_lang(&q, &headers);
    let t = Ui::new(lang);
    let i18n_json = t.json();
    render(LoginPage { lang, t, i18n_json })
}

/// The signed-in instructor's CSRF token, or the sign-in page to go to.
async fn signed_in<S>(st: &AppState<S>, headers: &HeaderMap, lang: &str) -> Result<String, Response> {
    let to_login = || Redirect::to("/instructor/login").into_response();
    let Some(c) = st.classroom.as_ref() else { return Err(to_login()) };
    match authorize(c, headers, &Method::GET, lang).await {
        Ok(Some(csrf)) => Ok(csrf),
        Ok(None) => Ok(String::new()),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(to_login()),
        Err(e) => Err(e.into_response()),
    }
}

/// `GET /instructor`: the dashboard (rooms, the create form, the progress of one room).
pub async fn dashboard_page<S: Sessions>(
    State(st): State<AppState<S>>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = page_lang(&q, &headers);
    let csrf = match signed_in(&st, &headers, lang).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let catalog = st.lessons.get();
    let lessons = catalog
        .lessons
        .iter()
        .map(|l| LessonChoice { topic: l.topic.clone(), title: l.title.get(lang).to_string() })
        .collect();
    let t = Ui::new(lang);
    let i18n_json = t.json();
    let max_capacity = st.classroom.as_ref().map(|c| c.max_capacity()).unwrap_or(1);
    let images = st.classroom.as_ref().map(|c| c.room_images().to_vec()).unwrap_or_default();
    render(DashboardPage { lang, t, i18n_json, csrf, lessons, max_capacity, images })
}

/// `GET /instructor/rooms/{id}/projector`: the join code, QR code and live count, large.
pub async fn projector_page<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<super::conn::OverTls>>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = page_lang(&q, &headers);
    let csrf = match signed_in(&st, &headers, lang).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = match room_or_404(&st, &id).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let url = join_url(tls.is_some(), peer, &headers, &st.trusted_proxies, &r.code);
    let qr_svg = qr_svg(&url).unwrap_or_default();
    let t = Ui::new(lang);
    let i18n_json = t.json();
    render(ProjectorPage {
        lang,
        t,
        i18n_json,
        csrf,
        room_id: r.id,
        title: r.title,
        code: r.code,
        join_url: url,
        qr_svg,
    })
}
