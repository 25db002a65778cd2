//! The web layer: routes, the WebSocket bridge, pages and assets, and [`serve`], which runs
//! them on a listener it is given until a shutdown trigger fires. Thin by design: handlers
//! extract, call the session layer through [`sessions::Sessions`] (the
//! [`crate::session::Manager`] in the server, a fake in the router's tests), and map errors in
//! one place ([`error`]).

pub mod api;
pub mod client;
pub mod error;
pub mod origin;
pub mod pages;
pub mod sessions;
pub mod ws;

#[cfg(test)]
mod tests;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::session::Manager;
use nsplay_sandbox::Event;
use sessions::Sessions;

/// Largest request body the API accepts.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler gets. `S` is the session layer: [`Manager`] in the server, a fake in the
/// router's tests.
#[derive(Clone)]
pub struct AppState<S = Arc<Manager>> {
    pub manager: S,
    /// Upgraded WebSocket tasks: axum's graceful shutdown does not wait for them, we do.
    pub sockets: TaskTracker,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Origins besides nsplay's own whose pages may use the API (see [`origin`]).
    pub allowed_origins: Arc<Vec<String>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

pub fn app<S: Sessions>(state: AppState<S>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/play", get(pages::play))
        .route("/learn", get(pages::learn))
        .route("/learn/{topic}", get(pages::lesson))
        .route("/assets/{*path}", get(pages::asset))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz::<S>))
        .route("/metrics", get(api::metrics::<S>))
        .route("/api/sessions", post(api::create_session::<S>))
        .route("/api/sessions/{id}", get(api::get_session::<S>).delete(api::delete_session::<S>))
        .route("/api/sessions/{id}/terminals", post(api::create_terminal::<S>))
        .route("/api/sessions/{id}/terminals/{n}", get(api::terminal_socket::<S>))
        .route("/api/sessions/{id}/checks/{lesson}/{step}", post(api::run_check::<S>))
        .fallback(pages::fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.allowed_origins.clone(), origin::guard))
        .with_state(state)
}

/// What [`serve`] runs besides its listener: the sessions, what the sandbox reports about them,
/// and the web layer's settings.
pub struct Service {
    /// The live sessions (built by the caller: the spawner starts before any thread does).
    pub manager: Arc<Manager>,
    /// What the sandbox reports (shells and sessions that exited), handed to the manager in
    /// order until [`serve`] returns.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins besides nsplay's own whose pages may use the API (see [`origin`]).
    pub allowed_origins: Vec<String>,
    /// Renders `/metrics` (`None`: it answers 404).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Longest the orderly shutdown may take once the shutdown trigger fired.
    pub shutdown_timeout: Duration,
}

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every session ended within the shutdown timeout.
    Clean,
    /// The timeout passed with sessions left; the next start reclaims them.
    TimedOut { left: usize },
}

/// How often the manager's periodic work runs (idle and maximum age, grace, limit notices):
/// the resolution of those timeouts.
const TICK: Duration = Duration::from_secs(1);

/// Serves the playground on `listener` until `shutdown` completes, then stops in order within
/// `shutdown_timeout`: the listener closes and the ticks stop, every session ends (each
/// terminal gets its notice, exit and Close frame), then the socket tasks and the HTTP
/// connections finish.
///
/// Everything it starts stops when it returns — or when it is dropped half-way: drop guards
/// cancel the HTTP server and abort the ticker and the event loop.
pub async fn serve(listener: TcpListener, service: Service, shutdown: impl Future) -> Stopped {
    let Service { manager, mut events, trusted_proxies, allowed_origins, metrics, shutdown_timeout } = service;
    let m = manager.clone();
    let _event_loop = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            m.handle_event(ev);
        }
    }));
    let m = manager.clone();
    let ticker = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut iv = tokio::time::interval(TICK);
        loop {
            iv.tick().await;
            m.tick().await;
        }
    }));
    let state = AppState {
        manager: manager.clone(),
        sockets: TaskTracker::new(),
        trusted_proxies: Arc::new(trusted_proxies),
        allowed_origins: Arc::new(allowed_origins),
        metrics,
    };
    let sockets = state.sockets.clone();
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let server = tokio::spawn(
        axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    shutdown.await;
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    tracing::info!(sessions = manager.live(), "shutting down");
    stop.cancel();
    ticker.abort();
    // Sessions end first: that sends every terminal its notice, exit and Close frame.
    let _ = tokio::time::timeout_at(deadline, manager.shutdown()).await;
    sockets.close();
    let _ = tokio::time::timeout_at(deadline, sockets.wait()).await;
    let _ = tokio::time::timeout_at(deadline, server).await;
    match manager.live() {
        0 => Stopped::Clean,
        left => {
            tracing::error!(left, "shutdown timed out; the next start reclaims what is left");
            Stopped::TimedOut { left }
        }
    }
}
