//! The learner's identity: a random 128-bit value in the cookie `nsplay_learner` that the server
//! sets on the first page or API answer to a browser that has none (HttpOnly, SameSite=Lax, and
//! Secure when the request came over TLS: nsplay's own (`tls_cert`), or a trusted proxy said
//! `X-Forwarded-Proto: https`).
//! It groups one browser's sessions: every page attaches to the learner's one session, the
//! per-client cap and creation rate count per learner, and it authenticates "end my other
//! sessions". It is not guessable (128 bits from the OS), so nobody can act as someone else; a
//! client may choose its own value (a benchmark simulating a room does), which gains it nothing
//! that dropping the cookie would not: the per-address cap and rate bound every identity behind
//! one address together. A request that sends no cookie (curl, API clients) has no identity and
//! is counted by its address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::session::Learner;

pub const COOKIE: &str = "nsplay_learner";

/// How long a browser keeps its identity: a course's length; a new one only means a new session.
const MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// The learner named by the request's cookie, if it carries a well-formed one.
pub fn from_headers(headers: &HeaderMap) -> Option<Learner> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .and_then(parse)
}

fn parse(v: &str) -> Option<Learner> {
    (v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(v, 16).ok())
        .flatten()
        .map(Learner)
}

/// A new identity from the OS's random source.
pub fn new_learner() -> Learner {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    Learner(u128::from_le_bytes(bytes))
}

/// Whether the browser reached a TLS proxy in front of nsplay: a trusted proxy's
/// `X-Forwarded-Proto` says so (nsplay's own TLS marks the request with `conn::OverTls`).
fn over_tls(peer: SocketAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> bool {
    super::client::forwarded_proto(peer, headers, trusted).is_some_and(|p| p == "https")
}

/// The `Set-Cookie` value for `learner`.
pub fn set_cookie(learner: Learner, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!("{COOKIE}={:032x}; Path=/; Max-Age={MAX_AGE_SECS}; HttpOnly; SameSite=Lax{secure}", learner.0);
    HeaderValue::from_str(&v).expect("hex and ASCII only")
}

/// Gives a browser without an identity one, on every answer but assets, health and metrics (a
/// cached asset must carry no cookie). The request itself stays without an identity.
pub async fn ensure(
    State(trusted): State<Arc<Vec<ipnet::IpNet>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let wanted = !(path.starts_with("/assets/") || path == "/healthz" || path == "/metrics");
    let missing = wanted && from_headers(req.headers()).is_none();
    let secure = req.extensions().get::<super::conn::OverTls>().is_some() || over_tls(peer, req.headers(), &trusted);
    let mut resp = next.run(req).await;
    if missing {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(new_learner(), secure));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_a_well_formed_cookie_is_an_identity() {
        let l = new_learner();
        let value = set_cookie(l, false);
        let pair = value.to_str().unwrap().split(';').next().unwrap().to_string();
        assert_eq!(from_headers(&cookie(&format!("nsplay_lang=ja; {pair}"))), Some(l));
        assert_eq!(from_headers(&cookie("nsplay_learner=short")), None);
        assert_eq!(from_headers(&cookie(&format!("nsplay_learner={}", "z".repeat(32)))), None);
        assert_eq!(from_headers(&cookie(&format!("nsplay_learnerx={}", "a".repeat(32)))), None);
        assert_ne!(new_learner(), new_learner());
    }

    #[test]
    fn secure_only_when_a_trusted_proxy_says_https() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls("10.0.0.2:1".parse().unwrap(), &h, &trusted));
        assert!(!over_tls("203.0.113.2:1".parse().unwrap(), &h, &trusted), "a client's own claim");
        assert!(!over_tls("10.0.0.2:1".parse().unwrap(), &HeaderMap::new(), &trusted));
    }
}
