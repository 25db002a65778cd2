//! The web layer: routes, the WebSocket bridge, pages and assets. Thin by design: handlers
//! extract, call [`crate::session::Manager`], and map errors in one place ([`error`]).

pub mod api;
pub mod client;
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

use crate::config::Settings;
use crate::session::{Manager, ManagerConfig};
use nsplay_sandbox::Sandbox;

/// Largest request body the API accepts.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<Manager>,
    /// Upgraded WebSocket tasks: axum's graceful shutdown does not wait for them, we do.
    pub sockets: TaskTracker,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/play", get(pages::play))
        .route("/learn", get(pages::learn))
        .route("/learn/{topic}", get(pages::lesson))
        .route("/assets/{*path}", get(pages::asset))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
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
pub fn serve(settings: &Settings) -> anyhow::Result<i32> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let exe = std::env::current_exe()?;
    let (mut sandbox, reclaimed) = Sandbox::start(&settings.sandbox, &exe, move |ev| {
        let _ = tx.send(ev);
    })?;
    sandbox.set_nested_userns(settings.nested_userns);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("nsplay_spawn_seconds".into()),
            &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        for name in &reclaimed {
            tracing::warn!(cgroup = %name, "reclaimed a session left by an earlier run (its processes were killed and its cgroup removed)");
        }
        let cfg = ManagerConfig {
            limits: settings.limits,
            max_sessions: settings.max_sessions,
            max_sessions_per_client: settings.max_sessions_per_client,
            warm_pool: settings.warm_pool,
            create_per_minute: settings.create_per_minute,
            create_burst: settings.create_burst,
            max_age: settings.max_age,
            idle_timeout: settings.idle_timeout,
            grace: Duration::from_secs(10),
            hostname: settings.hostname.clone(),
        };
        tracing::info!(
            cgroup = ?sandbox.cgroup_version(),
            max_sessions = cfg.max_sessions,
            warm_pool = cfg.warm_pool,
            memory = settings.limits.memory_bytes,
            "sandbox ready"
        );
        let manager = Manager::new(sandbox, cfg);
        let m = manager.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                m.handle_event(ev);
            }
        });
        let m = manager.clone();
        let ticker = tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(1));
            loop {
                iv.tick().await;
                m.tick().await;
            }
        });
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e} (choose another with --listen)", settings.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line to find the port when listening on :0.
        println!("nsplay listening on http://{addr}");
        let state = AppState {
            manager: manager.clone(),
            sockets: TaskTracker::new(),
            trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
            metrics: Some(metrics),
        };
        let sockets = state.sockets.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await
        });
        shutdown_signal().await;
        let deadline = tokio::time::Instant::now() + settings.shutdown_timeout;
        tracing::info!(sessions = manager.live(), "shutting down");
        stop.notify_one();
        ticker.abort();
        // Sessions end first: that sends every terminal its notice, exit and Close frame.
        let _ = tokio::time::timeout_at(deadline, manager.shutdown()).await;
        sockets.close();
        let _ = tokio::time::timeout_at(deadline, sockets.wait()).await;
        let _ = tokio::time::timeout_at(deadline, server).await;
        if manager.live() > 0 {
            tracing::error!(left = manager.live(), "shutdown timed out; the next start reclaims what is left");
            return Ok(1);
        }
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
