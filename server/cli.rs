//! Command-line interface: `nsplay` (= `nsplay serve`) and `nsplay run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::defaults::{self, help};
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
    /// Check or test lesson directories (docs/authoring.md), e.g. in an author's CI.
    #[command(subcommand)]
    Lessons(LessonsCommand),
    /// Manage the image store (root filesystems from OCI images, docs/images.md).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Probe what this host offers of what nsplay needs (namespaces, cgroups, seccomp, id ranges,
    /// limits), each with its fix; exits 1 when nsplay cannot run here. Takes serve's settings.
    CheckHost(Box<CheckHostArgs>),
}

#[derive(Debug, Subcommand)]
pub enum LessonsCommand {
    /// Load every lesson of the directories as the server would; print each problem as
    /// file:line: key: message; exit 1 if any.
    Check(LessonsCheckArgs),
    /// Walk every lesson in a real session (needs root, like `nsplay serve`): each step's check
    /// must fail, still fail after printing its text, and pass after its solution is typed;
    /// prints a table and exits 1 on any failure.
    Test(Box<LessonsTestArgs>),
}

#[derive(Debug, Args, Clone)]
pub struct LessonsCheckArgs {
    /// Lesson directories (`<topic>.toml` or `<topic>/lesson.toml` in each).
    pub dirs: Vec<PathBuf>,
    /// Check the built-in lessons too.
    #[arg(long)]
    pub builtin: bool,
}

#[derive(Debug, Args, Clone)]
pub struct LessonsTestArgs {
    /// Lesson directories to test.
    pub dirs: Vec<PathBuf>,
    /// Test the built-in lessons too.
    #[arg(long)]
    pub builtin: bool,
    /// Test only this lesson (repeatable).
    #[arg(long)]
    pub lesson: Vec<String>,
    /// Write what each solution command printed to this file (JSON lines: lesson, step,
    /// command, output).
    #[arg(long)]
    pub transcript: Option<PathBuf>,
    /// The language of the checks' messages in the results (en or ja). Default: each lesson's
    /// own (English for a lesson written in both).
    #[arg(long, value_parser = ["en", "ja"])]
    pub lang: Option<String>,
    /// The sandbox's settings, as for `nsplay serve` (state dir, cgroup parent, limits …).
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image from an OCI layout directory, a docker/podman save archive, or a
    /// registry reference (host:port/name:tag or host:port/name@sha256:…).
    Import {
        name: String,
        source: String,
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
    /// List the images in the store.
    Ls {
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
    /// Remove an image (refused while a running server may use it) and the layers only it used.
    Rm {
        name: String,
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
    /// Remove layers no image uses.
    Gc {
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct CheckHostArgs {
    /// Print the findings as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args, Clone)]
pub struct SandboxArgs {
    /// First host uid/gid of the session id ranges (65536 ids per session).
    #[arg(long, env = "NSPLAY_ID_BASE", default_value_t = defaults::ID_BASE)]
    pub id_base: u32,
    /// Number of id ranges, which is also the most sessions that can exist at once.
    #[arg(long, env = "NSPLAY_ID_SLOTS", default_value_t = defaults::ID_SLOTS)]
    pub id_slots: u32,
    /// Parent cgroup for sessions, relative to the hierarchy root (default: `nsplay`, or the
    /// delegated group nsplay was started in under systemd on cgroup v2).
    #[arg(long, env = "NSPLAY_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
    /// Directory for nsplay's runtime state (a lock file and the staging mount point).
    #[arg(long, env = "NSPLAY_STATE_DIR", default_value = defaults::STATE_DIR)]
    pub state_dir: PathBuf,
}

impl SandboxArgs {
    pub fn config(&self) -> SandboxConfig {
        SandboxConfig {
            id_base: self.id_base,
            id_slots: self.id_slots,
            cgroup_parent: self.cgroup_parent.clone(),
            state_dir: self.state_dir.clone(),
            sessions: crate::config::default_sessions_limits(),
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct LimitArgs {
    /// Memory limit (swap is always 0), e.g. 256M, 1G.
    #[arg(long, default_value = defaults::MEMORY, value_parser = |s: &str| limits::parse_size("memory", s))]
    pub memory: u64,
    /// Most processes and threads at once.
    #[arg(long, default_value_t = defaults::PIDS)]
    pub pids: u64,
    /// CPU in cores, e.g. 0.5 for half of one core.
    #[arg(long, default_value_t = defaults::CPU, value_parser = limits::parse_cpu)]
    pub cpu: f64,
    /// Size of the session's writable filesystem (/, /tmp, /root … together).
    #[arg(long, default_value = defaults::DISK, value_parser = |s: &str| limits::parse_size("disk", s))]
    pub disk: u64,
    /// Size of /dev/shm.
    #[arg(long, default_value = defaults::SHM, value_parser = |s: &str| limits::parse_size("shm", s))]
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
    #[arg(long, default_value = defaults::HOSTNAME)]
    pub hostname: String,
    /// Build the root from this image of the store (see `nsplay image`) instead of the host's /usr.
    #[arg(long, env = "NSPLAY_IMAGE")]
    pub image: Option<String>,
    /// Directory holding the image store (`<data_dir>/images`).
    #[arg(long, env = "NSPLAY_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,
    /// Program and arguments (default: bash, else sh).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Settings of `nsplay serve`. Each one can also come from the TOML file given with `--config`
/// (same name, snake_case; `deploy/nsplay.toml` documents them all with their defaults) or from
/// an `NSPLAY_*` environment variable; flags and environment win over the file. They stay unset
/// here (a default would hide the file's value); each help text shows the default from
/// [`defaults`], which `Settings::resolve` applies.
#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "NSPLAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "NSPLAY_LISTEN", help = help("Address to listen on", defaults::LISTEN))]
    pub listen: Option<String>,
    #[arg(long, env = "NSPLAY_MEMORY", help = help("Memory limit per session, swap is always 0", defaults::MEMORY))]
    pub memory: Option<String>,
    #[arg(long, env = "NSPLAY_PIDS", help = help("Most processes per session", defaults::PIDS))]
    pub pids: Option<u64>,
    #[arg(long, env = "NSPLAY_CPU", help = help(
        "CPU per session in cores; its terminal output relays get the same again in a group of their own",
        defaults::CPU,
    ))]
    pub cpu: Option<f64>,
    #[arg(long, env = "NSPLAY_DISK", help = help("Writable filesystem size per session", defaults::DISK))]
    pub disk: Option<String>,
    #[arg(long, env = "NSPLAY_SHM", help = help("/dev/shm size per session", defaults::SHM))]
    pub shm: Option<String>,
    #[arg(long, env = "NSPLAY_HOSTNAME", help = help("Hostname inside sessions", defaults::HOSTNAME))]
    pub hostname: Option<String>,
    #[arg(long, env = "NSPLAY_ID_BASE", help = help(
        "First host uid/gid of the session id ranges, 65536 ids each",
        defaults::ID_BASE,
    ))]
    pub id_base: Option<u32>,
    #[arg(long, env = "NSPLAY_ID_SLOTS", help = help("Number of id ranges", defaults::ID_SLOTS))]
    pub id_slots: Option<u32>,
    /// Parent cgroup of sessions, relative to the hierarchy root [default: nsplay, or the
    /// delegated group under systemd on cgroup v2].
    #[arg(long, env = "NSPLAY_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
    #[arg(long, env = "NSPLAY_STATE_DIR", help = help("Runtime state directory", defaults::STATE_DIR))]
    pub state_dir: Option<String>,
    /// Most live sessions [default: sessions_memory divided by 20 MiB, a realistic real use of
    /// one session; at most id_slots].
    #[arg(long, env = "NSPLAY_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Memory limit of all sessions together (their parent group), e.g. 6G [default: RAM less
    /// the larger of 1 GiB and 10 %].
    #[arg(long, env = "NSPLAY_SESSIONS_MEMORY")]
    pub sessions_memory: Option<String>,
    #[arg(long, env = "NSPLAY_SESSIONS_PIDS", help = help(
        "Most processes and threads of all sessions together",
        defaults::SESSIONS_PIDS,
    ))]
    pub sessions_pids: Option<u64>,
    #[arg(long, env = "NSPLAY_ADMIT_MEMORY_PERCENT", help = help(
        "Refuse new sessions once all sessions together use this percent of sessions_memory",
        defaults::ADMIT_MEMORY_PERCENT,
    ))]
    pub admit_memory_percent: Option<u8>,
    #[arg(long, env = "NSPLAY_WARM_POOL", help = help(
        "Sessions kept built and ready ahead of visitors (a new session then starts in about the time its shell \
         takes to exec); they count toward max_sessions",
        defaults::WARM_POOL,
    ))]
    pub warm_pool: Option<usize>,
    #[arg(long, env = "NSPLAY_MAX_SESSIONS_PER_CLIENT", help = help(
        "Most live sessions per learner (the browser's identity cookie), or per address for requests without one",
        defaults::MAX_SESSIONS_PER_CLIENT,
    ))]
    pub max_sessions_per_client: Option<usize>,
    #[arg(long, env = "NSPLAY_MAX_SESSIONS_PER_ADDRESS", help = help(
        "Most live sessions from one client address, every learner behind it together (a room behind one NAT)",
        defaults::MAX_SESSIONS_PER_ADDRESS,
    ))]
    pub max_sessions_per_address: Option<usize>,
    #[arg(long, env = "NSPLAY_CREATE_PER_MINUTE_PER_ADDRESS", help = help(
        "Sessions one client address may create per minute, every learner behind it together",
        defaults::CREATE_PER_MINUTE_PER_ADDRESS,
    ))]
    pub create_per_minute_per_address: Option<u32>,
    #[arg(long, env = "NSPLAY_CREATE_BURST_PER_ADDRESS", help = help(
        "Sessions one client address may create in a burst",
        defaults::CREATE_BURST_PER_ADDRESS,
    ))]
    pub create_burst_per_address: Option<u32>,
    #[arg(long, env = "NSPLAY_CREATE_PER_MINUTE", help = help(
        "Sessions a learner (or an address without a cookie) may create per minute",
        defaults::CREATE_PER_MINUTE,
    ))]
    pub create_per_minute: Option<u32>,
    #[arg(long, env = "NSPLAY_CREATE_BURST", help = help(
        "Sessions a learner (or an address without a cookie) may create in a burst",
        defaults::CREATE_BURST,
    ))]
    pub create_burst: Option<u32>,
    #[arg(long, env = "NSPLAY_IDLE_TIMEOUT", help = help(
        "End a session with no input and no attached client for this long",
        defaults::IDLE_TIMEOUT,
    ))]
    pub idle_timeout: Option<String>,
    #[arg(long, env = "NSPLAY_MAX_AGE", help = help("End every session at this age", defaults::MAX_AGE))]
    pub max_age: Option<String>,
    #[arg(long, env = "NSPLAY_SHUTDOWN_TIMEOUT", help = help(
        "Longest a SIGTERM/SIGINT shutdown may take (after a SIGTERM's drain)",
        defaults::SHUTDOWN_TIMEOUT,
    ))]
    pub shutdown_timeout: Option<String>,
    #[arg(long, env = "NSPLAY_GRACE", help = help(
        "Keep a session whose every shell has exited this long (a reloaded page still sees the exit and can \
         open a new terminal)",
        defaults::GRACE,
    ))]
    pub grace: Option<String>,
    /// A directory of lessons, merged with the built-in ones and reloaded when it changes
    /// (repeatable; docs/authoring.md) [default: none: the built-in lessons only].
    #[arg(long = "lessons", env = "NSPLAY_LESSONS", value_delimiter = ',')]
    pub lessons: Option<Vec<String>>,
    /// Proxies whose X-Forwarded-For is believed (comma-separated IPs or CIDRs) [default: none].
    #[arg(long, env = "NSPLAY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Other sites whose pages may use the API from a browser (comma-separated origins such as
    /// https://docs.example.org) [default: none: only nsplay's own pages].
    #[arg(long, env = "NSPLAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Another site whose pages may embed nsplay (iframes of /embed/*, embed.js) and use its API
    /// and terminal sockets from a browser, such as https://docs.example.org; repeat it for
    /// more (docs/embedding.md) [default: none: only nsplay's own pages].
    #[arg(long = "embed-origin", env = "NSPLAY_EMBED_ORIGINS", value_delimiter = ',')]
    pub embed_origins: Option<Vec<String>>,
    #[arg(long, env = "NSPLAY_NESTED_USERNS", help = help(
        "Allow user namespaces inside sessions (the user-namespace lesson needs them)",
        defaults::NESTED_USERNS,
    ))]
    pub nested_userns: Option<bool>,
    #[arg(long, env = "NSPLAY_LOG_FORMAT", help = help("Log format: text or json", defaults::LOG_FORMAT))]
    pub log_format: Option<String>,
    #[arg(long, env = "NSPLAY_MAX_CONNECTIONS", help = help(
        "Most open HTTP connections and WebSockets together (lowered at start to what the open-files limit \
         leaves next to the sessions)",
        defaults::MAX_CONNECTIONS,
    ))]
    pub max_connections: Option<usize>,
    #[arg(long, env = "NSPLAY_MAX_CONNECTIONS_PER_ADDRESS", help = help(
        "Most open connections from one TCP peer address (a classroom behind one NAT address shares it)",
        defaults::MAX_CONNECTIONS_PER_ADDRESS,
    ))]
    pub max_connections_per_address: Option<usize>,
    #[arg(long, env = "NSPLAY_HEADER_TIMEOUT", help = help(
        "Longest a request head may take to arrive, and a kept-alive connection may sit idle",
        defaults::HEADER_TIMEOUT,
    ))]
    pub header_timeout: Option<String>,
    // ---- classroom (docs/classroom.md)
    #[arg(long, env = "NSPLAY_DATA_DIR", help = help(
        "Directory of the classroom's database (rooms, learners, check results), kept across restarts",
        defaults::DATA_DIR,
    ))]
    pub data_dir: Option<String>,
    /// The instructor's admin token (at least 16 characters; better from the environment or the
    /// file than on the command line, where other users can read it) [default: the stored one,
    /// or one generated at the first start and printed once to the log].
    #[arg(long, env = "NSPLAY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, env = "NSPLAY_OPEN", help = help(
        "Anyone may start a session; false: sessions only through a room's join code",
        defaults::OPEN,
    ))]
    pub open: Option<bool>,
    #[arg(long, env = "NSPLAY_NODE", help = help(
        "This node's name, the first part of every session id, which a proxy in front of many nodes routes by \
         (a DNS label: lower-case letters, digits, dashes)",
        defaults::NODE,
    ))]
    pub node: Option<String>,
    #[arg(long, env = "NSPLAY_DRAIN_TIMEOUT", help = help(
        "On SIGTERM: refuse new sessions at once (/readyz 503), tell the learners, and end their sessions \
         after this long (a second SIGTERM or a SIGINT ends them at once)",
        defaults::DRAIN_TIMEOUT,
    ))]
    pub drain_timeout: Option<String>,
    /// Bytes per second all terminals together may print while another terminal is in use
    /// (flooding too, or typed into in the last 30 s), shared fairly among those printing more
    /// than their share (a flood slows down, an echo never waits); 0: no limit [default: 4M per
    /// CPU core].
    #[arg(long, env = "NSPLAY_OUTPUT_RATE")]
    pub output_rate: Option<String>,
    #[arg(long, env = "NSPLAY_DATABASE_URL", hide_env_values = true, help = help(
        "The classroom's database: postgres://user:password@host/db to share rooms between nodes (the same \
         schema and migrations), or sqlite:///path",
        defaults::DATABASE_URL,
    ))]
    pub database_url: Option<String>,
    #[arg(long, env = "NSPLAY_STUCK_AFTER", help = help(
        "The dashboard shows a learner as stuck after this long without a passed step or a keystroke",
        defaults::STUCK_AFTER,
    ))]
    pub stuck_after: Option<String>,
    // ---- images (docs/images.md)
    /// Image of the store that sessions start on unless a lesson or the create call names
    /// another [default: none: the host's read-only /usr].
    #[arg(long, env = "NSPLAY_IMAGE")]
    pub image: Option<String>,
    /// Images the create API's "image" may ask for, comma-separated [default: none].
    #[arg(long, env = "NSPLAY_IMAGES_ALLOWED", value_delimiter = ',')]
    pub images_allowed: Option<Vec<String>>,
    #[arg(long, env = "NSPLAY_MAX_IMAGE_SIZE", help = help(
        "Most bytes one `nsplay image import` may unpack, its layers together",
        defaults::MAX_IMAGE_SIZE,
    ))]
    pub max_image_size: Option<String>,
    #[arg(long, env = "NSPLAY_MAX_IMAGE_LAYERS", help = help("Most layers of an imported image", defaults::MAX_IMAGE_LAYERS))]
    pub max_image_layers: Option<usize>,
    /// Registries (host:port) an import may reach over plain HTTP besides loopback ones,
    /// comma-separated [default: none].
    #[arg(long, env = "NSPLAY_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Option<Vec<String>>,
    #[arg(long, env = "NSPLAY_WARM_POOL_PER_IMAGE", help = help(
        "Sessions kept ready for each image other than the default (the lessons' and the allowed ones); they \
         count toward max_sessions",
        defaults::WARM_POOL_PER_IMAGE,
    ))]
    pub warm_pool_per_image: Option<usize>,
    #[arg(long, env = "NSPLAY_MAX_NEIGHBOURS", help = help(
        "Neighbour (ARP/NDP) entries a session may hold in all its network namespaces together, counted every \
         few seconds; past it the session is ended with a notice (the kernel charges them to no memory limit)",
        defaults::MAX_NEIGHBOURS,
    ))]
    pub max_neighbours: Option<usize>,
    #[arg(long, env = "NSPLAY_FILE_TABLE_END_PERCENT", help = help(
        "How full the host's file table may get (percent of fs.file-max) before the session holding the most \
         open files is ended with a notice, one every few seconds (new sessions are refused from 80 %)",
        defaults::FILE_TABLE_END_PERCENT,
    ))]
    pub file_table_end_percent: Option<u64>,
    /// Registry credentials, a `docker login`-style JSON file [default: none: anonymous].
    #[arg(long, env = "NSPLAY_REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<String>,
    // ---- TLS without a proxy (docs/deploy.md)
    /// Serve HTTPS with this certificate chain (a PEM file, the server's certificate first;
    /// needs --tls-key) [default: plain HTTP, as behind a TLS proxy].
    #[arg(long, env = "NSPLAY_TLS_CERT")]
    pub tls_cert: Option<String>,
    /// The certificate's private key (a PEM file: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "NSPLAY_TLS_KEY")]
    pub tls_key: Option<String>,
    /// Also listen here for plain HTTP and answer every request with a redirect to the same URL
    /// over HTTPS (only with --tls-cert), e.g. 0.0.0.0:80 [default: none].
    #[arg(long, env = "NSPLAY_REDIRECT_HTTP")]
    pub redirect_http: Option<String>,
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
        assert_eq!(run.limits.limits(), defaults::limits());
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
