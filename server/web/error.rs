//! The one place where errors become HTTP responses: JSON `{"error", "message"}` with the
//! right status (and `Retry-After` where waiting helps).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::session::{Refusal, SessionError};
use nsplay_sandbox::SandboxError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Sends [`RETRY_ELSEWHERE`]: another node may well do what this one cannot now.
    pub retry_elsewhere: bool,
}

/// The header of a 503 that another node may answer differently (this one is full, draining,
/// shutting down or too busy to start a session in time): a client, or a proxy in front of many
/// nodes, should try another node (docs/scale-out.md). Always with `Retry-After`.
pub const RETRY_ELSEWHERE: &str = "x-nsplay-retry-elsewhere";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None, retry_elsewhere: false }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        Self::from_session(e, "en")
    }
}

impl ApiError {
    /// The response for a session error, its message in `lang` where the catalog has it (the
    /// refusals a visitor meets; the rest are for developers and operators).
    pub fn from_session(e: SessionError, lang: &str) -> Self {
        let wait = |d: std::time::Duration| ("seconds", d.as_secs().max(1).to_string());
        let msg = match &e {
            SessionError::Refused(r) => crate::text::render(lang, r),
            SessionError::HostWorkBusy => {
                crate::text::fill(crate::text::get(lang, "refused_check_busy"), &[wait(crate::session::HOST_WORK_WAIT)])
            }
            SessionError::HostWorkRateLimited { retry_after } => {
                crate::text::fill(crate::text::get(lang, "refused_check_rate"), &[wait(*retry_after)])
            }
            SessionError::TooManyTerminals => crate::text::fill(
                crate::text::get(lang, "refused_too_many_terminals"),
                &[("max", crate::session::MAX_TERMINALS.to_string())],
            ),
            SessionError::TerminalBudgetSpent => crate::text::fill(
                crate::text::get(lang, "refused_terminal_budget"),
                &[("max", crate::session::MAX_TERMINALS_OPENED.to_string())],
            ),
            SessionError::TerminalRateLimited { retry_after } => {
                crate::text::fill(crate::text::get(lang, "refused_terminal_rate"), &[wait(*retry_after)])
            }
            SessionError::UnknownImage(image) => {
                crate::text::fill(crate::text::get(lang, "refused_unknown_image"), &[("image", image.clone())])
            }
            other => other.to_string(),
        };
        match e {
            SessionError::NotFound => Self::new(StatusCode::NOT_FOUND, "session_not_found", msg),
            SessionError::NoTerminal => Self::new(StatusCode::NOT_FOUND, "terminal_not_found", msg),
            SessionError::RecordingGone => Self::new(StatusCode::GONE, "recording_gone", msg),
            SessionError::Refused(r) => {
                let retry_after = Some(r.retry_after().as_secs().max(1));
                let (status, code) = match r {
                    Refusal::Full { .. } => (StatusCode::SERVICE_UNAVAILABLE, "full"),
                    Refusal::Memory { .. } => (StatusCode::SERVICE_UNAVAILABLE, "memory_full"),
                    Refusal::Files { .. } => (StatusCode::SERVICE_UNAVAILABLE, "files_full"),
                    Refusal::ClientCap { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions"),
                    Refusal::AddressCap { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_from_address"),
                    Refusal::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
                };
                ApiError { retry_after, ..Self::new(status, code, msg) }
            }
            SessionError::Draining => ApiError {
                retry_after: Some(10),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "draining", crate::text::get(lang, "refused_draining"))
            },
            SessionError::Stopping => Self::new(StatusCode::CONFLICT, "stopping", msg),
            SessionError::ShuttingDown => {
                ApiError { retry_after: Some(10), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", msg) }
            }
            SessionError::StartTimeout => {
                ApiError { retry_after: Some(5), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", msg) }
            }
            SessionError::UnknownImage(_) => Self::new(StatusCode::BAD_REQUEST, "unknown_image", msg),
            SessionError::TooManyTerminals => Self::new(StatusCode::CONFLICT, "too_many_terminals", msg),
            SessionError::CloseFailed => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "close_failed", msg),
            SessionError::TerminalBudgetSpent => Self::new(StatusCode::CONFLICT, "terminal_budget_spent", msg),
            SessionError::TerminalRateLimited { retry_after } => ApiError {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "terminal_rate_limited", msg)
            },
            SessionError::HostWorkBusy => ApiError {
                retry_after: Some(crate::session::HOST_WORK_WAIT.as_secs().max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "check_busy", msg)
            },
            SessionError::HostWorkRateLimited { retry_after } => ApiError {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "check_rate_limited", msg)
            },
            SessionError::Terminal(_) => Self::new(StatusCode::CONFLICT, "terminal_ended", msg),
            SessionError::Sandbox(SandboxError::Ids(_)) => {
                ApiError { retry_after: Some(30), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "full", msg) }
            }
            SessionError::Sandbox(e) => {
                tracing::error!(error = %e, "sandbox failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "sandbox_failed",
                    format!("the sandbox could not be started: {e}. The operator should check the server log."),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "message": self.message});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.retry_elsewhere {
            resp.headers_mut().insert(RETRY_ELSEWHERE, HeaderValue::from_static("1"));
        }
        resp
    }
}
