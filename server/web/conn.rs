//! Connections: the accept loop under [`super::serve`]. It owns what one visitor could otherwise
//! use up before any handler runs — descriptors and connection slots:
//!
//! - a **global cap** ([`ConnLimits::max`]): past it the loop stops accepting, so waiting
//!   connections stay in the kernel's listen queue and cost the server no descriptor;
//! - a **cap per peer address** ([`ConnLimits::per_address`]), on the TCP peer (not the
//!   forwarded client: a proxy's connections are its own). One over it gets a short 429 and is
//!   closed. A classroom behind one NAT address is ~200 browsers with a few connections each, so
//!   the default is generous;
//! - a **header timeout** ([`ConnLimits::header_timeout`]): a request head must arrive complete
//!   within it, and it also bounds how long a kept-alive connection may sit idle between
//!   requests (hyper arms the same timer whenever it waits for a head). Slowloris stops here;
//! - **accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`) back off and retry, never spin or end
//!   the server; the shutdown trigger is still heard while backing off.
//!
//! - **TLS** (settings `tls_cert`/`tls_key`, [`Tls`]): the handshake runs inside the
//!   connection's slot and must complete within the header timeout (a peer that opens a
//!   connection and never finishes its hello is cut off like a slow request head); then the
//!   same HTTP/1.1 serving runs over the TLS stream, and every request carries [`OverTls`] (so
//!   cookies get `Secure`).
//!
//! A WebSocket keeps its slot for as long as it is open (the slot travels with the socket into
//! the upgrade) and is not subject to the header timeout: once upgraded, hyper no longer reads
//! HTTP on it, and the terminal bridge has its own rules.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The connection rules (settings `max_connections`, `max_connections_per_address`,
/// `header_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most open connections (WebSockets included).
    pub max: usize,
    /// Most open connections from one peer address.
    pub per_address: usize,
    /// Longest a request head may take to arrive, and a kept-alive connection may stay idle.
    pub header_timeout: Duration,
}

/// A TLS acceptor built from the configured certificate chain and key (PEM files).
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

/// Marks a request that reached nsplay over its own TLS (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// A certificate or key that cannot be used; names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_cert {path}: {message} (a PEM file of the certificate chain, the server's own certificate first)")]
    Cert { path: String, message: String },
    #[error("tls_key {path}: {message} (a PEM file of the certificate's private key: PKCS#8, PKCS#1 or SEC1)")]
    Key { path: String, message: String },
    #[error("tls_cert and tls_key do not fit together: {0}")]
    Config(String),
}

impl Tls {
    /// Loads the chain and key (TLS 1.2 and 1.3, ring's safe defaults, ALPN `http/1.1`).
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Tls, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert_err = |message: String| TlsError::Cert { path: cert.display().to_string(), message };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| cert_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(cert_err("no certificate in it".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError::Key { path: key.display().to_string(), message: e.to_string() })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// Server descriptors kept free of connections: the listener, the spawner's socket, logs,
/// cgroup and /proc files the server opens while it works.
pub const FD_RESERVE: u64 = 128;
/// Server descriptors one live session may hold: two per live terminal (pty master, relay
/// pipe), its pidfd, and a few while a request for it is served.
pub const FDS_PER_SESSION: u64 = 2 * crate::session::MAX_TERMINALS as u64 + 4;

impl ConnLimits {
    /// The global cap that fits the open-files limit `nofile` next to `max_sessions` sessions:
    /// connections should not take the descriptors sessions and the server itself need. At least
    /// a quarter of the limit (and 16), so a server on a low limit still serves a room (and says
    /// why in its log).
    pub fn fit_to_fds(self, nofile: u64, max_sessions: usize) -> ConnLimits {
        let room = nofile.saturating_sub(FD_RESERVE + FDS_PER_SESSION * max_sessions as u64);
        // The sessions' share is their worst case (every one with all its terminals). Where that
        // alone fills the limit, connections still keep a quarter of it: a server of only a few
        // connections serves nobody, while sessions that really hold that many descriptors
        // meet EMFILE on a new terminal (a clear error, and the server recovers).
        let room = room.max(nofile / 4).max(16);
        let max = self.max.min(room as usize);
        ConnLimits { max, per_address: self.per_address.min(max), ..self }
    }
}

/// Open connections per peer address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection's slot in the caps, given back when the connection (or the WebSocket it
/// became) closes.
struct Slot {
    _global: OwnedSemaphorePermit,
    addr: IpAddr,
    table: Arc<PerAddress>,
}

impl PerAddress {
    fn take(self: &Arc<Self>, addr: IpAddr, cap: usize, global: OwnedSemaphorePermit) -> Option<Slot> {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(addr).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot { _global: global, addr, table: self.clone() })
    }

    #[cfg(test)]
    fn open(&self, addr: IpAddr) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&addr).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.addr);
            }
        }
    }
}

/// A TCP stream that carries its [`Slot`]: hyper moves the stream into an upgraded WebSocket,
/// and the slot goes with it.
struct Counted {
    io: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Whether an accept error is about the server's resources (wait, then retry) rather than the
/// one connection (retry at once).
fn is_resource_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Longest wait between accept attempts while descriptors are exhausted.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts on `listener` and serves `router` on each connection until `stop` is cancelled;
/// then stops accepting, lets every connection finish its request (idle ones close at once) and
/// returns when they have. Upgraded WebSockets are not waited for (their owner tracks them).
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<Tls>,
    stop: CancellationToken,
) {
    let global = Arc::new(Semaphore::new(limits.max));
    let table = Arc::new(PerAddress::default());
    let conns = TaskTracker::new();
    let mut backoff = Duration::from_millis(5);
    let mut exhausted = false;
    loop {
        // A slot first: past the cap, connections wait in the kernel's queue, not in our fds.
        let permit = tokio::select! {
            p = global.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_resource_error(&e) => {
                if !exhausted {
                    tracing::error!(error = %e, "accept error: out of descriptors; retrying with back-off until some are free");
                    metrics::counter!("nsplay_accept_exhausted_total").increment(1);
                    exhausted = true;
                }
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            // The one connection failed (reset before we got to it, …): the next may not.
            Err(_) => continue,
        };
        if exhausted {
            tracing::info!("accepting connections again");
            exhausted = false;
        }
        backoff = Duration::from_millis(5);
        let addr = peer.ip().to_canonical();
        let Some(slot) = table.take(addr, limits.per_address, permit) else {
            metrics::counter!("nsplay_connections_refused_total", "reason" => "per_address").increment(1);
            refuse(stream, limits.per_address);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = Counted { io: stream, _slot: slot };
        match &tls {
            None => conns.spawn(serve_one(io, peer, router.clone(), limits, None, stop.clone())),
            Some(tls) => conns.spawn(handshake_then_serve(tls.clone(), io, peer, router.clone(), limits, stop.clone())),
        };
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// The TLS handshake, within the header timeout (and cut short by `stop`), then [`serve_one`]
/// over the TLS stream. A failed or slow handshake closes the connection and frees its slot.
async fn handshake_then_serve(
    tls: Tls,
    io: Counted,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let stream = tokio::select! {
        r = tokio::time::timeout(limits.header_timeout, tls.0.accept(io)) => r,
        _ = stop.cancelled() => return,
    };
    match stream {
        Ok(Ok(stream)) => serve_one(stream, peer, router, limits, Some(OverTls), stop).await,
        Ok(Err(e)) => {
            metrics::counter!("nsplay_tls_handshakes_failed_total", "reason" => "error").increment(1);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            metrics::counter!("nsplay_tls_handshakes_failed_total", "reason" => "timeout").increment(1);
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// Serves one connection (HTTP/1.1 with upgrades), shutting it down gracefully on `stop`.
async fn serve_one<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    tls: Option<OverTls>,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(t) = tls {
            req.extensions_mut().insert(t);
        }
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Tells a peer over its address's cap why it is closed (best effort: the socket is new, so
/// its send buffer has room; the language is not known before the request is read, so both).
fn refuse(stream: TcpStream, cap: usize) {
    let args = [("max", cap.to_string())];
    let en = crate::text::fill(crate::text::get("en", "refused_connections"), &args);
    let ja = crate::text::fill(crate::text::get("ja", "refused_connections"), &args);
    let body = serde_json::json!({"error": "too_many_connections", "message": format!("{en} / {ja}")}).to_string();
    let reply = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_cap_leaves_room_for_sessions_and_the_server() {
        let l = ConnLimits { max: 4096, per_address: 1024, header_timeout: Duration::from_secs(10) };
        assert_eq!(l.fit_to_fds(1 << 20, 100), l, "a large limit changes nothing");
        let fitted = l.fit_to_fds(1024, 10);
        assert_eq!(fitted.max as u64, 1024 - FD_RESERVE - 10 * FDS_PER_SESSION);
        // Sessions' worst case alone past the limit (1084 sessions, 20 000 files): connections
        // still get a quarter of it, not a handful.
        assert_eq!(l.fit_to_fds(20_000, 1084).max, 4096);
        assert_eq!(l.fit_to_fds(8_000, 1084).max, 2_000);
        assert_eq!(l.fit_to_fds(256, 4).max, 64);
        assert_eq!(fitted.per_address, 1024.min(fitted.max));
        assert_eq!(l.fit_to_fds(100, 50).max, 25, "a quarter of the limit");
        assert_eq!(l.fit_to_fds(40, 50).max, 16, "never below 16");
    }

    #[tokio::test]
    async fn slots_count_per_address_and_come_back() {
        let sem = Arc::new(Semaphore::new(10));
        let table = Arc::new(PerAddress::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = table.take(a, 2, sem.clone().try_acquire_owned().unwrap()).unwrap();
        let _s2 = table.take(a, 2, sem.clone().try_acquire_owned().unwrap()).unwrap();
        assert!(table.take(a, 2, sem.clone().try_acquire_owned().unwrap()).is_none());
        assert!(table.take(b, 2, sem.clone().try_acquire_owned().unwrap()).is_some(), "b has its own count");
        assert_eq!(table.open(a), 2);
        drop(s1);
        assert_eq!(table.open(a), 1);
        assert_eq!(sem.available_permits(), 9, "refused and dropped slots gave their permits back");
    }
}
