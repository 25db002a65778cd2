//! Which pages may drive the API from a browser. A browser attaches its cookies and sends a
//! foreign page's `text/plain` POST or WebSocket to any site; only the `Origin` header says whose
//! page it was. So a request that changes something (any method but GET/HEAD/OPTIONS) or opens a
//! terminal socket, and that names an origin, must come from nsplay's own pages (the origin's
//! host is the request's `Host`) or from an origin in `allowed_origins`. Requests without an
//! `Origin` (curl, scripts, classroom tools) are not browsers' cross-site requests and pass.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Refuses cross-site browser requests that would act on the API (403 `forbidden_origin`).
pub async fn guard(State(allowed): State<Arc<Vec<String>>>, req: Request, next: Next) -> Response {
    let acts = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.headers().contains_key(header::UPGRADE);
    if acts
        && req.uri().path().starts_with("/api/")
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("null").to_ascii_lowercase();
        if !permitted(&origin, req.headers(), &allowed) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "requests from pages of {origin} are not accepted; only nsplay's own pages and the origins \
                     in the allowed_origins setting may use the API from a browser"
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether a page of `origin` (lower case) may act: nsplay's own (same host and port as the
/// request, whatever the scheme: a proxy may end TLS in front) or an allowed one.
fn permitted(origin: &str, headers: &HeaderMap, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Some((_, authority)) = origin.split_once("://") else { return false };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    host.is_some_and(|h| h == authority)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn own_pages_and_allowed_origins_pass_and_others_do_not() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("play.example.org:8080"));
        let allowed = vec!["https://docs.example.org".to_string()];
        assert!(permitted("http://play.example.org:8080", &h, &allowed));
        assert!(permitted("https://play.example.org:8080", &h, &allowed), "TLS ended by a proxy");
        assert!(permitted("https://docs.example.org", &h, &allowed));
        assert!(!permitted("https://evil.example", &h, &allowed));
        assert!(!permitted("http://play.example.org", &h, &allowed), "another port is another site");
        assert!(!permitted("null", &h, &allowed));
        assert!(!permitted("https://docs.example.org.evil.example", &h, &allowed));
    }
}
