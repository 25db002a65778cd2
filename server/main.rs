//! The `nsplay` binary: argument parsing and the edges — exit codes, logging, and for
//! `nsplay serve` the process set-up around [`nsplay::serve`] (spawner, metrics recorder,
//! runtime, listener, signals). Everything else lives in the library.

use clap::Parser;
use nsplay::{Cli, Command, Manager, Service, Settings, Stopped};
use nsplay_sandbox::Sandbox;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The spawner helper: a re-exec of this binary, never typed by people.
    if args.get(1).map(String::as_str) == Some("__spawner") {
        let var = |k: &str| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(-1);
        let (fd, server) = (var("NSPLAY_SPAWNER_FD"), var("NSPLAY_SERVER_PID"));
        nsplay_sandbox::run_spawner(fd, server);
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Run(run)) => nsplay::run(&run),
        Some(Command::Serve(serve)) => serve_main(&serve),
        Some(Command::Lessons(cmd)) => {
            // Only what went wrong: the table is the output.
            let filter = tracing_subscriber::EnvFilter::try_from_env("NSPLAY_LOG").unwrap_or_else(|_| "warn".into());
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            nsplay::lessons_main(&cmd)
        }
        Some(Command::Image(cmd)) => nsplay::images::cmd::main(&cmd),
        Some(Command::CheckHost(args)) => nsplay::check_host(&args),
        None => serve_main(&cli.serve),
    };
    std::process::exit(code);
}

fn serve_main(args: &nsplay::ServeArgs) -> i32 {
    let settings = match Settings::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nsplay: {e}");
            return 2;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NSPLAY_LOG").unwrap_or_else(|_| "info".into());
    if settings.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    match serve(&settings) {
        Ok(Stopped::Clean) => 0,
        Ok(Stopped::TimedOut { .. }) => 1,
        Err(e) => {
            eprintln!("nsplay: {e:#}");
            1
        }
    }
}

/// `nsplay serve`: starts the spawner (before any thread exists), the metrics recorder and the
/// runtime, builds the session manager, binds the listener and serves until SIGTERM or SIGINT.
fn serve(settings: &Settings) -> anyhow::Result<Stopped> {
    raise_fd_limit();
    // First: a stop signal during the start waits for its handler (see `nsplay::signals`).
    let blocked = nsplay::signals::block()?;
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let exe = std::env::current_exe()?;
    let (mut sandbox, reclaimed) = Sandbox::start(&settings.sandbox, &exe, move |ev| {
        let _ = tx.send(ev);
    })?;
    sandbox.set_nested_userns(settings.nested_userns);
    sandbox.set_open_files(settings.open_files);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("nsplay_spawn_seconds".into()),
            &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let signals = nsplay::signals::StopSignals::install(blocked)?;
        for left in &reclaimed {
            match &left.error {
                None => tracing::warn!(cgroup = %left.name, "reclaimed a session left by an earlier run (its processes were killed and its cgroup removed)"),
                Some(e) => tracing::error!(cgroup = %left.name, error = %e, "could not reclaim a session left by an earlier run; it stays (remove it by hand once empty) and nsplay starts anyway"),
            }
        }
        if settings.open_files_overcommitted {
            tracing::warn!(
                open_files_per_process = settings.open_files,
                max_sessions = settings.max_sessions,
                "in the worst case the sessions together could fill the host's file table (fs.file-max): new sessions are refused while it is {}% full; raise fs.file-max (sysctl) or lower max_sessions or pids to bound it by limits alone",
                nsplay::FILES_ADMIT_PERCENT
            );
        }
        if let Some(w) = nsplay_sandbox::pty_budget_warning(settings.max_sessions) {
            tracing::warn!("{w}");
        }
        tracing::info!(
            cgroup = ?sandbox.cgroup_version(),
            max_sessions = settings.max_sessions,
            warm_pool = settings.warm_pool,
            memory = settings.limits.memory_bytes,
            open_files_per_process = settings.open_files,
            "sandbox ready"
        );
        let connections = fit_connections(settings);
        // Everything that can still fail (the database, images, TLS files, the ports) before a
        // single session is built: a start that fails leaves the host as it found it.
        let setup = async {
            let lessons = std::sync::Arc::new(nsplay::Catalog::with_limits(sandbox.cgroup_version(), settings.limits, settings.lessons.clone()));
            let classroom = nsplay::open_classroom(
                &settings.data_dir,
                settings.database_url.as_ref().map(|u| u.0.as_str()),
                settings.classroom_config(lessons.clone()),
            )
                .await
                .map_err(|e| anyhow::anyhow!("classroom: {e}"))?;
            // Held while the server runs: `nsplay image rm` refuses these images meanwhile.
            let (images, image_holds) = nsplay::images::load_for_server(&settings.data_dir, &settings.images_in_use(&lessons.get()))
                .map_err(|e| anyhow::anyhow!("images: {e}"))?;
            let tls = match &settings.tls {
                Some(f) => Some(nsplay::Tls::load(&f.cert, &f.key)?),
                None => None,
            };
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e} (choose another with --listen)", settings.listen))?;
            let redirect_http = match settings.redirect_http {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the HTTP redirect: {e} (choose another with --redirect-http)"))?,
                ),
                None => None,
            };
            anyhow::Ok((lessons, classroom, images, image_holds, tls, listener, redirect_http))
        };
        let (lessons, classroom, images, _image_holds, tls, listener, redirect_http) = match setup.await {
            Ok(v) => v,
            Err(e) => {
                // No session exists yet: only the parent groups made at start are to remove.
                for left in sandbox.release_cgroups() {
                    tracing::warn!(cgroup = %left.display(), "could not remove a parent cgroup made at start");
                }
                return Err(e);
            }
        };
        let mut manager_config = settings.manager_config();
        manager_config.images = images;
        let manager = Manager::new(sandbox, manager_config);
        let manager_for_drain = manager.clone();
        // Tests and scripts read this line to find the port when listening on :0.
        println!("nsplay listening on {}://{}", if tls.is_some() { "https" } else { "http" }, listener.local_addr()?);
        if let Some(l) = &redirect_http {
            println!("nsplay redirecting http://{} to https", l.local_addr()?);
        }
        let service = Service {
            manager,
            events,
            trusted_proxies: settings.trusted_proxies.clone(),
            allowed_origins: settings.allowed_origins.clone(),
            metrics: Some(metrics),
            shutdown_timeout: settings.shutdown_timeout,
            connections,
            classroom: Some(classroom),
            lessons,
            tls,
            redirect_http,
        };
        Ok(nsplay::serve(listener, service, drain_then_stop(signals, manager_for_drain, settings.drain_timeout)).await)
    })
}

/// Raises the soft limit on open files to the hard one. Each terminal holds two server
/// descriptors and each WebSocket one: the common soft limit of 1024 is a few hundred terminals.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit"),
        },
        Ok((soft, _)) if soft < 16384 => tracing::warn!(
            limit = soft,
            "the open-files limit is low for a server of many terminals; raise it (LimitNOFILE= in the unit)"
        ),
        _ => {}
    }
}

/// The configured connection caps, the global one lowered to what the open-files limit leaves
/// next to the sessions (so idle connections can never take the descriptors terminals need).
fn fit_connections(settings: &Settings) -> nsplay::ConnLimits {
    let nofile =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(s, _)| s).unwrap_or(1024);
    let fitted = settings.connections.fit_to_fds(nofile, settings.max_sessions);
    if fitted.max < settings.connections.max {
        tracing::warn!(
            configured = settings.connections.max,
            max_connections = fitted.max,
            open_files_limit = nofile,
            max_sessions = settings.max_sessions,
            "lowered max_connections to fit the open-files limit next to the sessions; raise the limit (LimitNOFILE= in the unit) for more"
        );
    }
    fitted
}

/// Completes when the sessions should end: a SIGINT ends them at once; a SIGTERM drains the
/// node first (no new sessions, every learner told the deadline; see [`Manager::drain`]) for
/// up to `drain_timeout`, cut short by a second SIGTERM or a SIGINT.
async fn drain_then_stop(
    signals: nsplay::signals::StopSignals,
    manager: std::sync::Arc<Manager>,
    drain_timeout: std::time::Duration,
) {
    let nsplay::signals::StopSignals { mut term, mut int } = signals;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => return,
    }
    tokio::select! {
        _ = manager.drain(drain_timeout) => {}
        _ = term.recv() => tracing::info!("a second SIGTERM: the drain ends now"),
        _ = int.recv() => tracing::info!("SIGINT: the drain ends now"),
    }
}
