//! The `nsplay` binary: argument parsing and the edges (exit codes, logging). Everything else
//! lives in the library.

use clap::Parser;
use nsplay::{Cli, Command};

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
        None => serve_main(&cli.serve),
    };
    std::process::exit(code);
}

fn serve_main(args: &nsplay::ServeArgs) -> i32 {
    let settings = match nsplay::Settings::resolve(args) {
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
    match nsplay::serve(&settings) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nsplay: {e:#}");
            1
        }
    }
}
