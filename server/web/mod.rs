//! The web layer: routes, the WebSocket bridge, pages and assets, and [`serve`], which runs
//! them on a listener it is given until a shutdown trigger fires. Thin by design: handlers
//! extract, call the session layer through [`sessions::Sessions`] (the
//! [`crate::session::Manager`] in the server, a fake in the router's tests), and map errors in
//! one place ([`error`]).

pub mod admin;
pub mod api;
pub mod client;
pub mod conn;
pub mod error;
pub mod instructor;
pub mod learner;
pub mod lessons_api;
pub mod origin;
pub mod pages;
pub mod rooms;
pub mod sessions;
pub mod ws;

#[cfg(test)]
mod classroom_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::classroom::Classroom;
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
    /// Origins besides nsplay's own whose pages may embed nsplay and use the API (`embed_origins`
    /// and `allowed_origins` together; see [`origin`]).
    pub allowed_origins: Arc<Vec<String>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Rooms, learners and the instructor (`None`: classroom routes answer 404).
    pub classroom: Option<Arc<Classroom>>,
    /// Checks running at once across every session ([`max_checks`] slots).
    pub checks: Arc<tokio::sync::Semaphore>,
    /// The host's cgroup hierarchy, detected at start: the lessons read as written for it.
    pub hierarchy: crate::lessons::Hierarchy,
    /// The lessons (built-in and the operator's directories), reloaded in place.
    pub lessons: Arc<crate::lessons::Catalog>,
}

/// Pages take only the lessons from the state.
impl<S> axum::extract::FromRef<AppState<S>> for Arc<crate::lessons::Catalog> {
    fn from_ref(st: &AppState<S>) -> Self {
        st.lessons.clone()
    }
}

/// Pages take only the hierarchy from the state.
impl<S> axum::extract::FromRef<AppState<S>> for crate::lessons::Hierarchy {
    fn from_ref(st: &AppState<S>) -> Self {
        st.hierarchy
    }
}

/// Checks that may run at once across sessions: half the cores (at least one), so checks alone
/// never fill the machine however many sessions ask.
pub fn max_checks() -> usize {
    std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1).max(1)
}

/// The classroom's routes (docs/classroom.md): join pages and API, instructor pages and API.
fn classroom_routes<S: Sessions>() -> Router<AppState<S>> {
    Router::new()
        .route("/join", get(rooms::enter_code))
        .route("/join/{code}", get(rooms::join_code_page::<S>))
        .route("/api/join/{code}", post(rooms::join::<S>))
        .route("/instructor", get(instructor::dashboard_page::<S>))
        .route("/instructor/login", get(instructor::login_page))
        .route("/instructor/rooms/{id}/projector", get(instructor::projector_page::<S>))
        .route("/api/instructor/login", post(instructor::sign_in::<S>))
        .route("/api/instructor/logout", post(instructor::sign_out::<S>))
        .route("/api/rooms", get(instructor::list_rooms::<S>).post(instructor::create_room::<S>))
        .route("/api/rooms/{id}", get(instructor::get_room::<S>))
        .route("/api/rooms/{id}/end", post(instructor::end_room::<S>))
        .route("/api/rooms/{id}/progress", get(instructor::progress::<S>))
        .route("/api/rooms/{id}/progress.csv", get(instructor::progress_csv::<S>))
        .route("/api/rooms/{id}/events", get(instructor::events::<S>))
        .route("/api/rooms/{id}/qr.svg", get(instructor::qr::<S>))
        .route("/api/rooms/{id}/notices", post(instructor::post_notice::<S>))
        .route("/api/rooms/{id}/extend", post(instructor::extend_room::<S>))
        .route("/api/rooms/{id}/prepare", post(instructor::prepare_room::<S>))
        .route("/api/rooms/{id}/learners/{learner}/end", post(instructor::end_learner::<S>))
        .route("/api/join/{code}/status", get(rooms::learner_status::<S>))
        .route("/api/sessions/{id}/terminals/{n}/view", get(instructor::view_socket::<S>))
        .route("/api/admin/drain", get(admin::drain_status::<S>).post(admin::drain::<S>))
        .route("/api/admin/undrain", post(admin::undrain::<S>))
}

pub fn app<S: Sessions>(state: AppState<S>) -> Router {
    let policy = origin::Policy { allowed: state.allowed_origins.clone(), trusted: state.trusted_proxies.clone() };
    // The calls an embed makes, readable by the allowed origins' scripts (CORS).
    let embed_api = Router::new()
        .route("/api/sessions", post(api::create_session::<S>))
        .route("/api/sessions/{id}", get(api::get_session::<S>).delete(api::delete_session::<S>))
        .route("/api/sessions/{id}/terminals", post(api::create_terminal::<S>))
        .route("/api/sessions/{id}/terminals/{n}/cast", get(api::terminal_cast::<S>))
        .route("/api/sessions/{id}/checks/{lesson}/{step}", post(api::run_check::<S>))
        .layer(origin::cors(&state.allowed_origins));
    Router::new()
        .route("/", get(pages::index))
        .route("/play", get(pages::play))
        .route("/learn", get(pages::learn))
        .route("/learn/{topic}", get(pages::lesson::<S>))
        .route("/embed/play", get(pages::embed_play::<S>))
        .route("/embed/{topic}", get(pages::embed_lesson::<S>))
        .route("/embed.js", get(pages::embed_script))
        .route("/learn/{topic}/files/{*path}", get(pages::lesson_file))
        .route("/api/lessons", get(lessons_api::list))
        .route("/api/lessons/{topic}", get(lessons_api::get))
        .route("/assets/{*path}", get(pages::asset))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz::<S>))
        .route("/metrics", get(api::metrics::<S>))
        .route("/api/learner/session", post(api::learner_session::<S>))
        .route("/api/learner/sessions", get(api::list_learner_sessions::<S>).delete(api::end_learner_sessions::<S>))
        .route("/api/sessions/{id}/reset", post(api::reset_session::<S>))
        .route("/api/sessions/{id}/terminals/{n}", get(api::terminal_socket::<S>).delete(api::close_terminal::<S>))
        .merge(embed_api)
        .merge(classroom_routes::<S>())
        .fallback(pages::fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(policy, origin::guard))
        .layer(axum::middleware::from_fn_with_state(state.allowed_origins.clone(), origin::frame_ancestors))
        .layer(axum::middleware::from_fn_with_state(state.trusted_proxies.clone(), learner::ensure))
        .with_state(state)
}

/// The router of the `redirect_http` listener: every request gets 308 to the same host, path and
/// query over HTTPS on `port` (a method and body the browser repeats there); without a usable
/// `Host`, 400.
pub fn redirect_to_https(port: u16) -> Router {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::IntoResponse;
    Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
        let Some(host) = host else {
            return (StatusCode::BAD_REQUEST, "a Host header is needed to redirect to HTTPS\n").into_response();
        };
        let port = if port == 443 { String::new() } else { format!(":{port}") };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let to = format!("https://{}{port}{path}", host.host());
        match axum::http::HeaderValue::from_str(&to) {
            Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
            Err(_) => (StatusCode::BAD_REQUEST, "bad Host header\n").into_response(),
        }
    })
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
    /// Connection caps and the header timeout (see [`conn`]).
    pub connections: conn::ConnLimits,
    /// Rooms, learners and the instructor (its store opened by the caller).
    pub classroom: Option<Arc<Classroom>>,
    /// The lessons; [`serve`] reloads them when their files change and on SIGHUP.
    pub lessons: Arc<crate::lessons::Catalog>,
    /// Serve HTTPS on the listener with this certificate (`None`: plain HTTP, as behind a proxy).
    pub tls: Option<conn::Tls>,
    /// A second listener that answers every request with a redirect to the same URL over
    /// HTTPS on the main listener's port (`redirect_http`), under the same connection rules.
    pub redirect_http: Option<TcpListener>,
}

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every session ended within the shutdown timeout.
    Clean,
    /// The timeout passed with sessions left; the next start reclaims them.
    TimedOut { left: usize },
}

/// How often the lesson directories are looked at for changes (a listing and a stat per file,
/// no read unless one changed).
const LESSONS_POLL: Duration = Duration::from_secs(2);

/// Reloads the lessons when a file in their directories changes, and on SIGHUP; on a blocking
/// thread (it reads files), one reload at a time. Sessions are untouched.
async fn reload_lessons(lessons: Arc<crate::lessons::Catalog>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut iv = tokio::time::interval(LESSONS_POLL);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = iv.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        if !forced && lessons.dirs().is_empty() {
            continue;
        }
        let l = lessons.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if forced {
                tracing::info!("SIGHUP: reloading the lessons");
                l.reload();
            } else {
                l.reload_if_changed();
            }
        })
        .await;
    }
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
    let Service {
        manager,
        mut events,
        trusted_proxies,
        allowed_origins,
        metrics,
        shutdown_timeout,
        connections,
        classroom,
        lessons,
        tls,
        redirect_http,
    } = service;
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
    let m = manager.clone();
    let _neighbours = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut iv = tokio::time::interval(crate::session::NEIGHBOUR_SWEEP);
        // One sweep at a time: a slow one delays the next instead of piling up.
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            iv.tick().await;
            m.sweep_neighbours().await;
            m.sweep_file_table().await;
        }
    }));
    let state = AppState {
        manager: manager.clone(),
        sockets: TaskTracker::new(),
        trusted_proxies: Arc::new(trusted_proxies),
        allowed_origins: Arc::new(allowed_origins),
        metrics,
        checks: Arc::new(tokio::sync::Semaphore::new(max_checks())),
        hierarchy: manager.cgroup_version(),
        classroom,
        lessons: lessons.clone(),
    };
    let _sweep = state
        .classroom
        .clone()
        .map(|c| AbortOnDropHandle::new(tokio::spawn(rooms::sweep(manager.clone(), c, state.lessons.clone()))));
    let _reloader = AbortOnDropHandle::new(tokio::spawn(reload_lessons(lessons)));
    let sockets = state.sockets.clone();
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let https_port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
    let redirect = redirect_http
        .map(|l| tokio::spawn(conn::accept_loop(l, redirect_to_https(https_port), connections, None, stop.clone())));
    let server = tokio::spawn(conn::accept_loop(listener, app(state), connections, tls, stop.clone()));
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
    if let Some(r) = redirect {
        let _ = tokio::time::timeout_at(deadline, r).await;
    }
    match manager.sandboxes() {
        0 => Stopped::Clean,
        left => {
            tracing::error!(left, "shutdown timed out; the next start reclaims what is left");
            Stopped::TimedOut { left }
        }
    }
}
