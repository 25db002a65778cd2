//! The node's admin calls (docs/scale-out.md): drain it, see its drain, call the drain off.
//! Authorized as every instructor call is ([`super::instructor::authorize`]): a script sends
//! `Authorization: Bearer <admin token>` (no ambient credential, so no CSRF token); a browser
//! signed in as the instructor sends its cookie and, for the POSTs, the sign-in's CSRF token in
//! `X-CSRF-Token`.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::instructor::{authorize, classroom_of};
use super::pages::pick_lang;
use super::sessions::Sessions;
use crate::session::DrainStatus;

/// Longest drain the call may ask for.
const MAX_DRAIN: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    /// How long the sessions have (default: the node's `drain_timeout`).
    seconds: Option<u64>,
}

async fn admin<S: Sessions>(st: &AppState<S>, headers: &HeaderMap, method: &Method) -> Result<(), ApiError> {
    let lang = pick_lang(None, headers);
    authorize(classroom_of(st)?, headers, method, lang).await.map(|_| ())
}

fn utc(t: SystemTime) -> String {
    let ms = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
    crate::classroom::rfc3339(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn status_json(d: Option<DrainStatus>) -> serde_json::Value {
    match d {
        Some(d) => json!({"draining": true, "deadline": utc(d.deadline), "sessions": d.sessions}),
        None => json!({"draining": false}),
    }
}

/// `POST /api/admin/drain` (body optional: `{"seconds": N}`): `202` when this call began the
/// drain, `200` when one was under way (its deadline stays), with
/// `{"draining": true, "deadline", "sessions"}`.
pub async fn drain<S: Sessions>(
    State(st): State<AppState<S>>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(&st, &headers, &method).await?;
    let body = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body: DrainBody = if body.iter().all(u8::is_ascii_whitespace) {
        DrainBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not valid JSON for this call (`{{\"seconds\": N}}` or none): {e}"
            ))
        })?
    };
    let timeout = match body.seconds {
        None => None,
        Some(s) if (1..=MAX_DRAIN.as_secs()).contains(&s) => Some(Duration::from_secs(s)),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "`seconds` must be 1 to {} (or left out for the node's drain_timeout)",
                MAX_DRAIN.as_secs()
            )));
        }
    };
    let d = st.manager.begin_drain(timeout)?;
    let status = if d.begun { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(status_json(Some(d)))).into_response())
}

/// `GET /api/admin/drain`: `{"draining": false}` or the drain under way.
pub async fn drain_status<S: Sessions>(
    State(st): State<AppState<S>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&st, &headers, &method).await?;
    Ok(Json(status_json(st.manager.drain_status())))
}

/// `POST /api/admin/undrain`: the node takes new sessions again (`/readyz` 200), its running
/// sessions go on and their learners are told; `{"draining": false, "was_draining"}`. `409
/// stopping` while the node stops (a drain for SIGTERM cannot be undone).
pub async fn undrain<S: Sessions>(
    State(st): State<AppState<S>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&st, &headers, &method).await?;
    let was = st.manager.undrain()?;
    Ok(Json(json!({"draining": false, "was_draining": was})))
}
