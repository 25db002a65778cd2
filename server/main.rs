//! The `nsplay` binary: argument parsing and the edges (exit codes, logging). Everything else
//! lives in the library.

use clap::Parser;
use nsplay::cli::{Cli, Command};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The spawner helper: a re-exec of this binary, never typed by people.
    if args.get(1).map(String::as_str) == Some("__spawner") {
        let fd = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(-1);
        let server = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(-1);
        nsplay::sandbox::spawn::run_spawner(fd, server);
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Run(run)) => nsplay::run::run(&run),
        Some(Command::Serve(_)) | None => {
            eprintln!("nsplay: the web server is not built yet; use `nsplay run`");
            2
        }
    };
    std::process::exit(code);
}
