//! The learner's side of a room: `/join` and `/join/{code}` (the page, or a clear refusal in
//! the reader's language), `POST /api/join/{code}` (a learner and their session, tagged with
//! the room through the session's marks), and the hook that stores a room learner's check
//! results. Sessions are made through [`Sessions::create`] like any other.

use std::net::SocketAddr;

use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::instructor::{classroom_error, classroom_of};
use super::pages::{LangQuery, Ui, pick_lang, render};
use super::sessions::Sessions;
use crate::classroom::{self, Classroom, ClassroomError, JoinError};
use crate::text;

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    /// Empty on `/join` (the learner types the code).
    code: String,
    title: String,
    lessons: Vec<String>,
    /// Why this code cannot be joined, in the page's language (empty: it can).
    refusal: String,
    max_name: usize,
}

fn join_page(lang: &'static str, code: String, title: String, lessons: Vec<String>, refusal: String) -> JoinPage {
    let t = Ui::new(lang);
    let i18n_json = t.json();
    JoinPage { lang, t, i18n_json, code, title, lessons, refusal, max_name: classroom::code::MAX_NAME }
}

/// `GET /join`: a form for the code.
pub async fn enter_code(Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    render(join_page(lang, String::new(), String::new(), Vec::new(), String::new()))
}

/// `GET /join/{code}`: the room's page with the name field, or why it cannot be joined (404
/// unknown, 403 not open yet, 410 closed) in the page's language.
pub async fn join_code_page<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(code): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let shown: String = code.chars().take(12).collect();
    let refused = |status: StatusCode, why: String| {
        let mut resp = render(join_page(lang, shown.clone(), String::new(), Vec::new(), why));
        *resp.status_mut() = status;
        resp
    };
    let Some(c) = st.classroom.as_ref() else {
        return refused(StatusCode::NOT_FOUND, text::render(lang, &JoinError::NotFound));
    };
    match c.joinable(&code).await {
        Ok(room) => {
            let catalog = st.lessons.get();
            let lessons =
                room.lessons.iter().filter_map(|l| catalog.find(l)).map(|l| l.title.get(lang).to_string()).collect();
            render(join_page(lang, room.code, room.title, lessons, String::new()))
        }
        Err(e) => {
            let api = classroom_error(e, lang);
            refused(api.status, api.message)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    #[serde(default)]
    name: String,
    /// The learner id this browser got at its first join (a rejoin keeps the progress).
    learner: Option<String>,
}

/// `POST /api/join/{code}`: 201 with the learner, their session (the live one on a rejoin, else
/// a new one) and the room's lessons.
pub async fn join<S: Sessions>(
    State(st): State<AppState<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let lang = pick_lang(None, &headers);
    let c = classroom_of(&st)?;
    let body = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body: JoinBody = if body.iter().all(u8::is_ascii_whitespace) {
        JoinBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON for this call: {e}")))?
    };
    let a = c.admit(&code, &body.name, body.learner.as_deref()).await.map_err(|e| classroom_error(e, lang))?;
    let first = a.room.lessons.first().cloned().unwrap_or_default();
    let live = a.learner.session_id.as_deref().and_then(|id| st.manager.get(id).ok());
    let session = match live {
        Some(s) => s,
        None => {
            let who = super::api::requester(&st, peer, &headers);
            // The room's reserve first (built at "prepare"), its limits on the session's cgroup.
            let within =
                crate::session::Within { reserve: classroom::room_mark(&a.room.id), limits: c.limits_for(&a.room) };
            // On the room's image, else the first lesson's, if either names one.
            let choice = room_image(&a.room, &st.lessons.get());
            let s = st
                .manager
                .create_within(Some(first.clone()), choice, who, within)
                .await
                .map_err(|e| ApiError::from_session(e, lang))?;
            s.mark(&classroom::room_mark(&a.room.id));
            s.mark(&classroom::learner_mark(&a.learner.id));
            s
        }
    };
    c.seat(&a, &session.id).await.map_err(super::instructor::store_error)?;
    let out = json!({
        "learner": a.learner.id,
        "name": a.learner.name,
        "returning": a.returning,
        "session": session.id,
        "terminal": format!("/api/sessions/{}/terminals/0", session.id),
        "room": {"code": a.room.code, "title": a.room.title},
        "lessons": a.room.lessons,
        "lesson": first,
        "next": format!("/learn/{first}"),
    });
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Stores a check run in a room learner's session (`learner` from its marks). The learner's
/// check answer does not wait on a failing store: the failure is logged.
pub async fn record_check(c: &Classroom, learner: &str, lesson: &str, step: &str, passed: bool) {
    if let Err(e) = c.record_check(learner, lesson, step, passed).await {
        tracing::error!(error = %e, learner, lesson, step, "cannot store a room learner's check result");
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    learner: String,
}

/// `GET /api/join/{code}/status?learner=<id>`: what a learner's pages show of their room — its
/// state, the time left and the instructor's newest notices (any node answers: it is all in
/// the store). 404 unless the learner is one of the room's (the id is their secret).
pub async fn learner_status<S: Sessions>(
    State(st): State<AppState<S>>,
    Path(code): Path<String>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<classroom::LearnerStatus>, ApiError> {
    let c = classroom_of(&st)?;
    c.learner_status(&code, &q.learner)
        .await
        .map_err(super::instructor::store_error)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such learner in this room"))
}

/// How often a node reports on its learners' sessions and carries out what the store asks.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs for the server's life: every [`SWEEP_EVERY`], this node writes what it sees of its room
/// learners' sessions (memory, processes, last keystroke) to the store, where the dashboard of
/// any node reads it, and ends the sessions whose room ended or closed or whose end the
/// instructor asked for on any node. The database is the only link between nodes.
pub async fn sweep(
    manager: std::sync::Arc<crate::session::Manager>,
    c: std::sync::Arc<Classroom>,
    lessons: std::sync::Arc<crate::lessons::Catalog>,
) {
    let mut opened = std::collections::HashSet::new();
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let m = manager.clone();
        // Usage reads cgroup files: off the runtime's workers.
        let Ok(reports) = tokio::task::spawn_blocking(move || {
            let now_ms = crate::store::now_ms();
            let now = std::time::Instant::now();
            m.sessions()
                .into_iter()
                .filter_map(|s| {
                    let learner = classroom::learner_of(&s.marks())?.to_string();
                    let u = m.usage(&s);
                    let ago = i64::try_from(now.saturating_duration_since(s.last_input()).as_millis()).unwrap_or(0);
                    let report = crate::store::SessionReport {
                        at: now_ms,
                        last_input_at: now_ms - ago,
                        memory_bytes: i64::try_from(u.memory_bytes).unwrap_or(i64::MAX),
                        pids: i64::try_from(u.pids).unwrap_or(i64::MAX),
                    };
                    Some((learner, s.id.clone(), report))
                })
                .collect::<Vec<_>>()
        })
        .await
        else {
            continue;
        };
        if let Err(e) = c.report(&reports).await {
            tracing::warn!(error = %e, "cannot report the room sessions to the classroom's database");
        }
        prepare_and_release(&manager, &c, &lessons.get(), &mut opened).await;
        let local: Vec<(String, String)> = reports.into_iter().map(|(l, s, _)| (s, l)).collect();
        match c.sweep_orders(&local).await {
            Ok(end) => {
                for id in end {
                    tracing::info!(session = %id, "a room session ends: its room is over or the instructor ended it");
                    let _ = manager.end(&id, crate::session::EndReason::Deleted).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the classroom's database"),
        }
    }
}

/// The image a room's sessions start on: the room's own, else its first lesson's (if either
/// names one; else the server's default), as a create call would ask for it.
pub(super) fn room_image(
    room: &crate::store::RoomRow,
    lessons: &crate::lessons::Loaded,
) -> crate::session::ImageChoice {
    super::api::image_choice(room.image.clone(), &room.lessons.first().cloned(), lessons)
}

/// How long after a room's opening time a node still asks for it to be prepared on its own (a
/// node started later leaves it to the instructor's "prepare").
const PREPARE_AT_OPENING: i64 = 60_000;

/// The sweep's part in pre-warming (docs/classroom.md, "Prepare"): this node beats in the
/// store; a room whose opening time has just come is asked to be prepared up to its capacity
/// (unless an instructor asked already); every open room with an ask gets this node's share of
/// it built ([`classroom::node_share`] of the nodes that beat, less its learners seated here),
/// whichever node the ask came from; and the reserve of a room that ended or closed is torn
/// down.
async fn prepare_and_release(
    manager: &std::sync::Arc<crate::session::Manager>,
    c: &Classroom,
    lessons: &crate::lessons::Loaded,
    opened: &mut std::collections::HashSet<String>,
) {
    let now = crate::store::now_ms();
    let nodes = match c.beat().await {
        Ok(n) => n,
        Err(e) => return tracing::warn!(error = %e, "cannot record this node in the classroom's database"),
    };
    let keys = manager.reserve_keys();
    let rooms = match c.rooms().await {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "cannot read the classroom's rooms"),
    };
    let over = |r: &crate::store::RoomRow| r.ended_at.is_some() || r.closes_at.is_some_and(|t| now >= t);
    for key in keys {
        let room = rooms.iter().find(|r| classroom::room_mark(&r.id) == key);
        if room.is_none_or(over) {
            tracing::info!(reserve = %key, "a room's reserve ends: the room is over");
            manager.end_reserve(&key);
        }
    }
    let seated_here = manager.marked(classroom::ROOM_MARK);
    let mut reports = Vec::new();
    for r in rooms.iter().filter(|r| !over(r)) {
        let mut expected = r.prepare_expected.and_then(|e| usize::try_from(e).ok());
        if let Some(o) = r.opens_at
            && now >= o
            && now - o < PREPARE_AT_OPENING
            && opened.insert(r.id.clone())
            && expected.is_none()
        {
            let capacity = usize::try_from(r.capacity).unwrap_or(0);
            tracing::info!(room = %r.id, sessions = capacity, "a room opens: its sessions are built ahead");
            match c.ask_prepare(&r.id, capacity, true).await {
                Ok(_) => expected = Some(capacity),
                Err(e) => {
                    tracing::warn!(room = %r.id, error = %e, "cannot ask for a room's sessions to be built ahead")
                }
            }
        }
        let key = classroom::room_mark(&r.id);
        // What this node holds for the room, for the dashboards of every node (after the
        // change below, at the next sweep).
        let state = manager.reserve_state(&key);
        if expected.is_some() || state.wanted > 0 || state.ready > 0 {
            reports.push((r.id.clone(), state.ready, state.wanted));
        }
        let Some(expected) = expected else { continue };
        let want = classroom::node_share(expected, nodes).saturating_sub(seated_here.get(&key).copied().unwrap_or(0));
        // Only a change: a reserve that stopped short is taken up by the manager's own tick
        // (with its wait after a failed build).
        if want == state.wanted {
            continue;
        }
        if let Err(e) = manager.prepare_reserve(&key, want, c.limits_for(r), &room_image(r, lessons)) {
            tracing::warn!(room = %r.id, error = %e, "a room's sessions cannot be built ahead");
        }
    }
    if let Err(e) = c.report_reserves(&reports).await {
        tracing::warn!(error = %e, "cannot report this node's prepared sessions to the classroom's database");
    }
    // Bounded: only rooms still open within the last minute stay remembered.
    opened
        .retain(|id| rooms.iter().any(|r| &r.id == id && r.opens_at.is_some_and(|o| now - o < 2 * PREPARE_AT_OPENING)));
}

/// Refuses a session made outside a room when the server is not `open` (403
/// `room_code_required`).
pub fn require_open<S>(st: &AppState<S>, lang: &str) -> Result<(), ApiError> {
    match &st.classroom {
        Some(c) if !c.open() => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "room_code_required", text::get(lang, "room_code_required")))
        }
        _ => Ok(()),
    }
}

impl From<ClassroomError> for ApiError {
    fn from(e: ClassroomError) -> Self {
        classroom_error(e, "en")
    }
}
