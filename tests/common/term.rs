//! A terminal WebSocket client for the integration tests: collects output bytes and control
//! messages, and types commands the way a person does (waiting for each prompt).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::Server;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A terminal client: collects output bytes and control messages.
pub struct Term {
    pub ws: Ws,
    pub out: Vec<u8>,
    seen: usize,
    pub controls: Vec<Value>,
    pub closed: Option<(u16, String)>,
}

impl Term {
    pub async fn connect(server: &Server, path: &str) -> Term {
        Term::connect_addr(&server.addr, path).await
    }

    /// A terminal socket through `addr` (a proxy in front of the servers, `host:port`).
    pub async fn connect_addr(addr: &str, path: &str) -> Term {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await.unwrap();
        Term::from_socket(ws)
    }

    /// A terminal client over a socket the test opened itself (with its own request headers).
    pub fn from_socket(ws: Ws) -> Term {
        Term { ws, out: Vec::new(), seen: 0, controls: Vec::new(), closed: None }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::Binary(text.as_bytes().to_vec().into())).await.unwrap();
    }

    pub async fn line(&mut self, cmd: &str) {
        self.send(&format!("{cmd}\r")).await;
    }

    pub async fn control(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    /// Reads until `pred` holds for the socket's state or `secs` pass.
    pub async fn pump_until(&mut self, secs: u64, mut pred: impl FnMut(&Term) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !pred(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.closed.is_some() {
                return pred(self);
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => self.out.extend_from_slice(&b),
                Ok(Some(Ok(Message::Text(t)))) => self.controls.push(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(Message::Close(c)))) => {
                    self.closed =
                        Some(c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new())))
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => self.closed = Some((1006, String::new())),
                Err(_) => return pred(self),
            }
        }
        true
    }

    /// Runs a command like a person: types it, waits for its echo and the next prompt, and
    /// returns what it printed (escapes stripped).
    pub async fn cmd(&mut self, c: &str) -> String {
        self.line(c).await;
        self.expect(&format!("{c}\r\n"), 10).await;
        plain(&self.expect("# ", 20).await)
    }

    /// Like `cmd`, with a longer wait for the prompt (commands that hit limits take a while).
    /// Commands longer than the terminal is wide are echoed with wrapping, so only the prompt
    /// is awaited.
    pub async fn cmd_wait(&mut self, c: &str, secs: u64) -> String {
        self.line(c).await;
        plain(&self.expect("# ", secs).await)
    }

    /// Waits for `needle` in output after the last match; panics with the screen if absent.
    pub async fn expect(&mut self, needle: &str, secs: u64) -> String {
        let n = needle.as_bytes().to_vec();
        let seen = self.seen;
        // Scan only bytes not scanned before (yes floods megabytes; rescanning is quadratic).
        let mut from = seen;
        let mut hit = None;
        self.pump_until(secs, |t| {
            if hit.is_none() {
                hit = find(&t.out[from..], &n).map(|p| from + p);
                from = t.out.len().saturating_sub(n.len() - 1).max(seen);
            }
            hit.is_some()
        })
        .await;
        let text = String::from_utf8_lossy(&self.out[self.out.len().saturating_sub(4096)..]).into_owned();
        let Some(pos) = hit else { panic!("timed out waiting for {needle:?}; screen (last 4 KiB):\n{text}") };
        let at = pos + n.len();
        let chunk = String::from_utf8_lossy(&self.out[seen..at]).into_owned();
        self.seen = at;
        chunk
    }
}

/// Drops terminal escape sequences (colours, bracketed-paste toggles) and carriage returns.
pub fn plain(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            if it.peek() == Some(&'[') {
                it.next();
                for c in it.by_ref() {
                    if c.is_ascii_alphabetic() || c == '~' {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Creates a session through the API (asserting 201) and returns its JSON.
pub async fn create(server: &Server) -> Value {
    let r = reqwest::Client::new().post(format!("{}/api/sessions", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// Attaches to a created session's first terminal and waits for its prompt.
pub async fn attach(server: &Server, session: &Value) -> Term {
    let mut t = Term::connect(server, session["terminal"].as_str().unwrap()).await;
    t.expect("# ", 20).await;
    t
}

/// A new session with its shell at the prompt.
pub async fn shell(server: &Server) -> (Value, Term) {
    let s = create(server).await;
    let t = attach(server, &s).await;
    (s, t)
}
