//! Command-line interface: `nsplay` (= `nsplay serve`) and `nsplay run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::sandbox::SandboxConfig;
use crate::sandbox::limits::{self, Limits};

#[derive(Debug, Parser)]
#[command(
    name = "nsplay",
    version,
    about = "A web playground for Linux namespaces and cgroups: every visitor gets a root shell in fresh namespaces."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web playground (the default when no command is given).
    Serve(ServeArgs),
    /// Run a program (default: an interactive shell) in a sandbox on this terminal, like unshare or bwrap.
    Run(RunArgs),
}

#[derive(Debug, Args, Clone)]
pub struct SandboxArgs {
    /// First host uid/gid of the session id ranges (65536 ids per session).
    #[arg(long, env = "NSPLAY_ID_BASE", default_value_t = 1_000_000_000)]
    pub id_base: u32,
    /// Number of id ranges, which is also the most sessions that can exist at once.
    #[arg(long, env = "NSPLAY_ID_SLOTS", default_value_t = 4096)]
    pub id_slots: u32,
    /// Parent cgroup for sessions, relative to the hierarchy root (default: `nsplay`, or the
    /// delegated group nsplay was started in under systemd on cgroup v2).
    #[arg(long, env = "NSPLAY_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
    /// Directory for nsplay's runtime state (a lock file and the staging mount point).
    #[arg(long, env = "NSPLAY_STATE_DIR", default_value = "/run/nsplay")]
    pub state_dir: PathBuf,
}

impl SandboxArgs {
    pub fn config(&self) -> SandboxConfig {
        SandboxConfig {
            id_base: self.id_base,
            id_slots: self.id_slots,
            cgroup_parent: self.cgroup_parent.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct LimitArgs {
    /// Memory limit (swap is always 0), e.g. 256M, 1G.
    #[arg(long, default_value = "256M", value_parser = |s: &str| limits::parse_size("memory", s))]
    pub memory: u64,
    /// Most processes and threads at once.
    #[arg(long, default_value_t = 128)]
    pub pids: u64,
    /// CPU in cores, e.g. 0.5 for half of one core.
    #[arg(long, default_value = "0.5", value_parser = limits::parse_cpu)]
    pub cpu: f64,
    /// Size of the session's writable filesystem (/, /tmp, /root … together).
    #[arg(long, default_value = "64M", value_parser = |s: &str| limits::parse_size("disk", s))]
    pub disk: u64,
    /// Size of /dev/shm.
    #[arg(long, default_value = "16M", value_parser = |s: &str| limits::parse_size("shm", s))]
    pub shm: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits { memory_bytes: self.memory, pids: self.pids, cpu: self.cpu, disk_bytes: self.disk, shm_bytes: self.shm }
    }
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Hostname inside the sandbox.
    #[arg(long, default_value = "nsplay")]
    pub hostname: String,
    /// Program and arguments (default: bash, else sh).
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "NSPLAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Most live sessions at once.
    #[arg(long, env = "NSPLAY_MAX_SESSIONS", default_value_t = 200)]
    pub max_sessions: usize,
    /// Log format.
    #[arg(long, env = "NSPLAY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_parses_limits_and_command() {
        let cli = Cli::try_parse_from([
            "nsplay",
            "run",
            "--memory",
            "128M",
            "--pids",
            "64",
            "--cpu",
            "1.5",
            "--disk",
            "32M",
            "--hostname",
            "box",
            "--",
            "sh",
            "-c",
            "id",
        ])
        .unwrap();
        let Some(Command::Run(run)) = cli.command else { panic!("not run") };
        let l = run.limits.limits();
        assert_eq!(l.memory_bytes, 128 << 20);
        assert_eq!(l.pids, 64);
        assert_eq!(l.cpu, 1.5);
        assert_eq!(l.disk_bytes, 32 << 20);
        assert_eq!(run.hostname, "box");
        assert_eq!(run.command, ["sh", "-c", "id"]);
    }

    #[test]
    fn run_defaults_match_the_documented_limits() {
        let cli = Cli::try_parse_from(["nsplay", "run"]).unwrap();
        let Some(Command::Run(run)) = cli.command else { panic!("not run") };
        assert_eq!(run.limits.limits(), Limits::default());
        assert!(run.command.is_empty());
    }

    #[test]
    fn bad_limits_are_refused_at_parse_time() {
        assert!(Cli::try_parse_from(["nsplay", "run", "--memory", "lots"]).is_err());
        assert!(Cli::try_parse_from(["nsplay", "run", "--cpu", "half"]).is_err());
    }

    #[test]
    fn no_command_means_serve() {
        let cli = Cli::try_parse_from(["nsplay", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.port(), 0);
    }
}
