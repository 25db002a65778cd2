//! Command-line interface: `nsplay` (= `nsplay serve`) and `nsplay run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use nsplay_sandbox::SandboxConfig;
use nsplay_sandbox::{self as limits, Limits};

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
    Serve(Box<ServeArgs>),
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

/// Settings of `nsplay serve`. Each one can also come from the TOML file given with `--config`
/// (same name, snake_case; `deploy/nsplay.toml` documents them all with their defaults) or from
/// an `NSPLAY_*` environment variable; flags and environment win over the file.
#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "NSPLAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "NSPLAY_LISTEN")]
    pub listen: Option<String>,
    /// Memory limit per session, swap is always 0 [default: 256M].
    #[arg(long, env = "NSPLAY_MEMORY")]
    pub memory: Option<String>,
    /// Most processes per session [default: 128].
    #[arg(long, env = "NSPLAY_PIDS")]
    pub pids: Option<u64>,
    /// CPU per session in cores [default: 0.5]; its terminal output relays get the same again
    /// in a group of their own.
    #[arg(long, env = "NSPLAY_CPU")]
    pub cpu: Option<f64>,
    /// Writable filesystem size per session [default: 64M].
    #[arg(long, env = "NSPLAY_DISK")]
    pub disk: Option<String>,
    /// /dev/shm size per session [default: 16M].
    #[arg(long, env = "NSPLAY_SHM")]
    pub shm: Option<String>,
    /// Hostname inside sessions [default: nsplay].
    #[arg(long, env = "NSPLAY_HOSTNAME")]
    pub hostname: Option<String>,
    /// First host uid/gid of the session id ranges, 65536 ids each [default: 1000000000].
    #[arg(long, env = "NSPLAY_ID_BASE")]
    pub id_base: Option<u32>,
    /// Number of id ranges [default: 4096].
    #[arg(long, env = "NSPLAY_ID_SLOTS")]
    pub id_slots: Option<u32>,
    /// Parent cgroup of sessions, relative to the hierarchy root [default: nsplay, or the
    /// delegated group under systemd on cgroup v2].
    #[arg(long, env = "NSPLAY_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
    /// Runtime state directory [default: /run/nsplay].
    #[arg(long, env = "NSPLAY_STATE_DIR")]
    pub state_dir: Option<String>,
    /// Most live sessions [default: 80 % of RAM divided by the memory limit].
    #[arg(long, env = "NSPLAY_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Sessions kept built and ready ahead of visitors (a new session then starts in about the
    /// time its shell takes to exec); they count toward max_sessions [default: 4].
    #[arg(long, env = "NSPLAY_WARM_POOL")]
    pub warm_pool: Option<usize>,
    /// Most live sessions per client address [default: 3].
    #[arg(long, env = "NSPLAY_MAX_SESSIONS_PER_CLIENT")]
    pub max_sessions_per_client: Option<usize>,
    /// Sessions a client may create per minute [default: 10].
    #[arg(long, env = "NSPLAY_CREATE_PER_MINUTE")]
    pub create_per_minute: Option<u32>,
    /// Sessions a client may create in a burst [default: 5].
    #[arg(long, env = "NSPLAY_CREATE_BURST")]
    pub create_burst: Option<u32>,
    /// End a session with no input and no attached client for this long [default: 15m].
    #[arg(long, env = "NSPLAY_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// End every session at this age [default: 2h].
    #[arg(long, env = "NSPLAY_MAX_AGE")]
    pub max_age: Option<String>,
    /// Longest a SIGTERM/SIGINT shutdown may take [default: 10s].
    #[arg(long, env = "NSPLAY_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
    /// Proxies whose X-Forwarded-For is believed (comma-separated IPs or CIDRs) [default: none].
    #[arg(long, env = "NSPLAY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Allow user namespaces inside sessions (the user-namespace lesson needs them) [default: true].
    #[arg(long, env = "NSPLAY_NESTED_USERNS")]
    pub nested_userns: Option<bool>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "NSPLAY_LOG_FORMAT")]
    pub log_format: Option<String>,
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
        assert_eq!(cli.serve.listen.as_deref(), Some("127.0.0.1:0"));
    }
}
