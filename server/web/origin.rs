//! Which pages may drive the API from a browser, and which sites may frame nsplay. A browser
//! attaches its cookies and sends a foreign page's `text/plain` POST or WebSocket to any site;
//! only the `Origin` header says whose page it was. So a request that changes something (any
//! method but GET/HEAD/OPTIONS) or opens a terminal socket, and that names an origin, must come
//! from nsplay's own pages (the origin's host is the request's `Host`, and its scheme the one a
//! trusted proxy reports) or from an origin in `embed_origins` (older name: `allowed_origins`).
//! Requests without an `Origin` (curl, scripts, classroom tools) are not browsers' cross-site
//! requests and pass.
//!
//! The same list says who may frame the `/embed/*` pages (`frame-ancestors`; every other page
//! only by nsplay itself) and whose scripts may read the answers of the calls an embed makes
//! (CORS, without credentials: docs/embedding.md says why).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;

/// What the origin checks need: the other sites allowed, and the proxies whose
/// `X-Forwarded-Proto` says which scheme nsplay's own pages use.
#[derive(Clone)]
pub struct Policy {
    pub allowed: Arc<Vec<String>>,
    pub trusted: Arc<Vec<ipnet::IpNet>>,
}

/// Refuses cross-site browser requests that would act on the API (403 `forbidden_origin`).
pub async fn guard(
    State(p): State<Policy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let socket = req.headers().contains_key(header::UPGRADE);
    let acts = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || socket;
    if acts
        && req.uri().path().starts_with("/api/")
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("null").to_ascii_lowercase();
        let scheme = super::client::forwarded_proto(peer, req.headers(), &p.trusted);
        if !permitted(&origin, req.headers(), scheme.as_deref(), &p.allowed) {
            let what = if socket { "terminal sockets opened" } else { "requests" };
            metrics::counter!("nsplay_forbidden_origin_total").increment(1);
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "{what} from pages of {origin} are not accepted; only nsplay's own pages and the origins in \
                     the embed_origins setting may use the API from a browser (docs/embedding.md)"
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether a page of `origin` (lower case) may act: nsplay's own (same host and port as the
/// request; the same scheme as the trusted proxy reports, either when none does: a proxy nsplay
/// was not told about may end TLS in front) or an allowed one.
fn permitted(origin: &str, headers: &HeaderMap, scheme: Option<&str>, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Some((origin_scheme, authority)) = origin.split_once("://") else { return false };
    if !matches!(origin_scheme, "http" | "https") || scheme.is_some_and(|s| s != origin_scheme) {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    host.is_some_and(|h| h == authority)
}

/// The `Content-Security-Policy` of every answer: `/embed/*` pages may be framed by nsplay
/// and the allowed origins, everything else only by nsplay (no clickjacking of the lesson
/// pages or the instructor's dashboard).
pub async fn frame_ancestors(State(allowed): State<Arc<Vec<String>>>, req: Request, next: Next) -> Response {
    let embed = req.uri().path().starts_with("/embed/");
    let mut resp = next.run(req).await;
    let policy = if embed { embed_policy(&allowed) } else { "frame-ancestors 'self'".to_string() };
    if let Ok(v) = HeaderValue::from_str(&policy) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

fn embed_policy(allowed: &[String]) -> String {
    let mut p = "frame-ancestors 'self'".to_string();
    for o in allowed {
        p.push(' ');
        p.push_str(o);
    }
    p
}

/// CORS for the calls an embed makes (docs/embedding.md): the allowed origins' scripts may read
/// the answers, never with credentials — the learner cookie is not theirs to use, so such a
/// client is an API client of its own (counted by its address), and its session id is its key.
pub fn cors(allowed: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = allowed.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_LANGUAGE])
        .expose_headers([header::RETRY_AFTER, header::CONTENT_DISPOSITION])
        .max_age(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pages_and_allowed_origins_pass_and_others_do_not() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("play.example.org:8080"));
        let allowed = vec!["https://docs.example.org".to_string()];
        assert!(permitted("http://play.example.org:8080", &h, None, &allowed));
        assert!(permitted("https://play.example.org:8080", &h, None, &allowed), "TLS ended by a proxy");
        assert!(permitted("https://docs.example.org", &h, None, &allowed));
        assert!(!permitted("https://evil.example", &h, None, &allowed));
        assert!(!permitted("http://play.example.org", &h, None, &allowed), "another port is another site");
        assert!(!permitted("null", &h, None, &allowed));
        assert!(!permitted("https://docs.example.org.evil.example", &h, None, &allowed));
        assert!(!permitted("ftp://play.example.org:8080", &h, None, &allowed));
        // Behind a trusted proxy that says https, a plain-http page of that host is another site.
        assert!(permitted("https://play.example.org:8080", &h, Some("https"), &allowed));
        assert!(!permitted("http://play.example.org:8080", &h, Some("https"), &allowed));
        assert!(!permitted("https://play.example.org:8080", &h, Some("http"), &allowed));
    }

    #[test]
    fn embed_pages_name_the_allowed_ancestors() {
        assert_eq!(embed_policy(&[]), "frame-ancestors 'self'");
        let allowed = ["https://docs.example".to_string(), "http://127.0.0.1:8000".to_string()];
        assert_eq!(embed_policy(&allowed), "frame-ancestors 'self' https://docs.example http://127.0.0.1:8000");
    }
}
