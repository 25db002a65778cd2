//! The web layer: routes, the WebSocket bridge, pages and assets. Thin by design: handlers
//! extract, call [`crate::session::Manager`], and map errors in one place ([`error`]).

pub mod api;
pub mod error;
pub mod pages;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::task::TaskTracker;

use crate::cli::ServeArgs;
use crate::sandbox::Sandbox;
use crate::session::{Manager, ManagerConfig};

/// Largest request body the API accepts.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<Manager>,
    /// Upgraded WebSocket tasks: axum's graceful shutdown does not wait for them, we do.
    pub sockets: TaskTracker,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/play", get(pages::play))
        .route("/learn", get(pages::learn))
        .route("/learn/{topic}", get(pages::lesson))
        .route("/assets/{*path}", get(pages::asset))
        .route("/healthz", get(api::healthz))
        .route("/api/sessions", post(api::create_session))
        .route("/api/sessions/{id}", get(api::get_session).delete(api::delete_session))
        .route("/api/sessions/{id}/terminals", post(api::create_terminal))
        .route("/api/sessions/{id}/terminals/{n}", get(api::terminal_socket))
        .route("/api/sessions/{id}/checks/{lesson}/{step}", post(api::run_check))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// `nsplay serve`: starts the spawner (before any thread), then the runtime and the server.
/// Returns the process exit code.
pub fn serve(args: &ServeArgs) -> anyhow::Result<i32> {
    let limits = args.limits.limits();
    limits.validate()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let exe = std::env::current_exe()?;
    let (sandbox, reclaimed) = Sandbox::start(&args.sandbox.config(), &exe, move |ev| {
        let _ = tx.send(ev);
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        for name in &reclaimed {
            tracing::warn!(cgroup = %name, "reclaimed a session left by an earlier run");
        }
        tracing::info!(cgroup = ?sandbox.cgroup_version(), "sandbox ready");
        let cfg = ManagerConfig {
            limits,
            max_sessions: args.max_sessions,
            max_age: Duration::from_secs(2 * 3600),
            hostname: "nsplay".into(),
            lessons: crate::lessons::catalog().iter().map(|l| l.topic.clone()).collect(),
        };
        let manager = Manager::new(sandbox, cfg);
        let m = manager.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                m.handle_event(ev);
            }
        });
        let m = manager.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(1));
            loop {
                iv.tick().await;
                m.tick().await;
            }
        });
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e} (choose another with --listen)", args.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line to find the port when listening on :0.
        println!("nsplay listening on http://{addr}");
        let state = AppState { manager: manager.clone(), sockets: TaskTracker::new() };
        let sockets = state.sockets.clone();
        axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        tracing::info!(sessions = manager.live(), "shutting down");
        manager.shutdown().await;
        sockets.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), sockets.wait()).await;
        Ok(0)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
