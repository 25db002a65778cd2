//! Instructor access. One admin token per server: configured (`admin_token`,
//! `NSPLAY_ADMIN_TOKEN`), or made at the first start from 32 random bytes and shown once. Only
//! SHA-256 hashes are stored: of the token (a setting), and of each sign-in's cookie value
//! (with the token hash it was made under, so a new token ends every older sign-in, and a CSRF
//! token the dashboard sends back on every change). The token has 256 bits of entropy, so a
//! fast hash is enough: nothing can be guessed faster than the token itself.

use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::store::{InstructorRow, Store, StoreError, now_ms};

/// The setting that holds the admin token's hash.
const TOKEN_SETTING: &str = "admin_token_sha256";

/// How long a sign-in lasts.
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("this is not the admin token (or it was replaced by a newer one)")]
    BadToken,
}

impl crate::text::Message for AuthError {
    fn key(&self) -> &'static str {
        "instructor_bad_token"
    }
    fn args(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// A new sign-in: the cookie's value (shown to the browser once, stored only as a hash) and
/// the CSRF token the dashboard sends with every change.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub cookie: String,
    pub csrf: String,
}

/// A signed-in instructor.
#[derive(Debug, Clone)]
pub struct Instructor {
    pub csrf: String,
}

/// `n` random bytes, URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the kernel's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of `value` in the domain `what` (a token hash never equals a cookie hash), in hex.
pub fn hash(what: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"nsplay\0");
    h.update(what.as_bytes());
    h.update(b"\0");
    h.update(value.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit (the time taken does not say how much matched).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn token_matches(token: &str, token_hash: &str) -> bool {
    same(&hash("admin-token", token.trim()), token_hash)
}

/// The admin token's hash: the configured token's (stored, replacing an older one), else the
/// stored one, else a new token's — which is returned, to be shown once.
pub async fn resolve_token(store: &Store, configured: Option<&str>) -> Result<(String, Option<String>), StoreError> {
    if let Some(t) = configured {
        let h = hash("admin-token", t.trim());
        store.set_setting(TOKEN_SETTING, &h).await?;
        return Ok((h, None));
    }
    if let Some(h) = store.setting(TOKEN_SETTING).await? {
        return Ok((h, None));
    }
    let token = random_token(32);
    let h = hash("admin-token", &token);
    store.set_setting(TOKEN_SETTING, &h).await?;
    Ok((h, Some(token)))
}

pub async fn sign_in(store: &Store, token_hash: &str) -> Result<SignIn, StoreError> {
    let cookie = random_token(32);
    let csrf = random_token(24);
    let now = now_ms();
    let row = InstructorRow {
        token_hash: token_hash.into(),
        csrf: csrf.clone(),
        expires_at: now + SIGN_IN_LIFETIME.as_millis() as i64,
    };
    store.insert_instructor(&hash("cookie", &cookie), &row, now).await?;
    Ok(SignIn { cookie, csrf })
}

pub async fn instructor(store: &Store, cookie: &str, token_hash: &str) -> Result<Option<Instructor>, StoreError> {
    let Some(row) = store.instructor(&hash("cookie", cookie)).await? else { return Ok(None) };
    if row.expires_at <= now_ms() || !same(&row.token_hash, token_hash) {
        return Ok(None);
    }
    Ok(Some(Instructor { csrf: row.csrf }))
}
