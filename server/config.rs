//! Server settings: defaults (each written once, in [`defaults`]), overridden by a TOML file (`--config`), overridden by `NSPLAY_*`
//! environment variables and command-line flags. Every setting is documented with its default in
//! `deploy/nsplay.toml`. A wrong value stops the start with one line naming the key, the value
//! and what is allowed.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::session::ManagerConfig;
use nsplay_sandbox::SandboxConfig;
use nsplay_sandbox::{self as limits, Limits};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid setting {key} = {value}: {allowed}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub allowed: String,
}

fn bad(key: &str, value: impl std::fmt::Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), value: value.to_string(), allowed: allowed.into() }
}

/// The TOML file: every key optional, unknown keys refused (a typo must not pass silently).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub memory: Option<String>,
    pub pids: Option<u64>,
    pub cpu: Option<f64>,
    pub disk: Option<String>,
    pub shm: Option<String>,
    pub hostname: Option<String>,
    pub id_base: Option<u32>,
    pub id_slots: Option<u32>,
    pub cgroup_parent: Option<String>,
    pub state_dir: Option<String>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_client: Option<usize>,
    pub max_sessions_per_address: Option<usize>,
    pub create_per_minute_per_address: Option<u32>,
    pub create_burst_per_address: Option<u32>,
    pub sessions_memory: Option<String>,
    pub sessions_pids: Option<u64>,
    pub admit_memory_percent: Option<u8>,
    pub warm_pool: Option<usize>,
    pub create_per_minute: Option<u32>,
    pub create_burst: Option<u32>,
    pub idle_timeout: Option<String>,
    pub max_age: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub grace: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub embed_origins: Option<Vec<String>>,
    pub nested_userns: Option<bool>,
    pub log_format: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub header_timeout: Option<String>,
    // ---- classroom
    pub data_dir: Option<String>,
    pub admin_token: Option<String>,
    pub open: Option<bool>,
    pub node: Option<String>,
    pub drain_timeout: Option<String>,
    pub output_rate: Option<String>,
    pub database_url: Option<String>,
    pub stuck_after: Option<String>,
    // ---- lessons
    pub lessons: Option<Vec<String>>,
    // ---- images (docs/images.md)
    pub image: Option<String>,
    pub images_allowed: Option<Vec<String>>,
    pub max_image_size: Option<String>,
    pub max_image_layers: Option<usize>,
    pub insecure_registries: Option<Vec<String>>,
    pub registry_auth_file: Option<String>,
    pub warm_pool_per_image: Option<usize>,
    pub max_neighbours: Option<usize>,
    pub file_table_end_percent: Option<u64>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub redirect_http: Option<String>,
}

/// Every default, written once. `Settings::resolve`, the `--help` texts of `nsplay serve`, the
/// flags of `nsplay run` and the test against `deploy/nsplay.toml` all read them here. Values
/// are in the form the TOML file and the flags take them.
pub mod defaults {
    use nsplay_sandbox::{self as limits, Limits};

    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const MEMORY: &str = "256M";
    pub const PIDS: u64 = 128;
    pub const CPU: f64 = 0.5;
    pub const DISK: &str = "64M";
    pub const SHM: &str = "16M";
    pub const HOSTNAME: &str = "nsplay";
    pub const ID_BASE: u32 = 1_000_000_000;
    pub const ID_SLOTS: u32 = 4096;
    pub const STATE_DIR: &str = "/run/nsplay";
    pub const WARM_POOL: usize = 4;
    pub const MAX_SESSIONS_PER_CLIENT: usize = 3;
    pub const CREATE_PER_MINUTE: u32 = 10;
    pub const CREATE_BURST: u32 = 5;
    /// A room of 200 behind one NAT address, each learner with a session and a spare.
    pub const MAX_SESSIONS_PER_ADDRESS: usize = 400;
    /// The same room arriving at once (burst), then a steady stream of new and fresh sessions.
    pub const CREATE_PER_MINUTE_PER_ADDRESS: u32 = 600;
    pub const CREATE_BURST_PER_ADDRESS: u32 = 200;
    /// Processes and threads of all sessions together: 1000 idle sessions hold about 3 each, a
    /// room of 200 a few each plus a few fork bombs at their own `pids` limit.
    pub const SESSIONS_PIDS: u64 = 16384;
    /// A new session is refused once all sessions together use this share of `sessions_memory`.
    pub const ADMIT_MEMORY_PERCENT: u8 = 90;
    /// Memory the host and nsplay keep outside the sessions' group: at least this, or
    /// [`RESERVE_PERCENT`] of RAM when that is more.
    pub const RESERVE_MIN: u64 = 1 << 30;
    pub const RESERVE_PERCENT: u64 = 10;
    /// What one session really uses, for the default `max_sessions`: a learner typing measured
    /// 5.6 MiB and an idle one 2.1 MiB (docs/benchmarks.md); 20 MiB leaves room for an editor,
    /// a compiler run or a file in /tmp. The sessions' group limit holds whatever they really
    /// do, and admission refuses by real use, so this only sizes the cap.
    pub const SESSION_REAL_USE: u64 = 20 << 20;
    pub const IDLE_TIMEOUT: &str = "15m";
    pub const MAX_AGE: &str = "2h";
    pub const SHUTDOWN_TIMEOUT: &str = "10s";
    pub const GRACE: &str = "10s";
    pub const NESTED_USERNS: bool = true;
    pub const LOG_FORMAT: &str = "text";
    /// Output all terminals together may print per second, per CPU core of the host: the work
    /// between a program and the browser costs CPU per byte (docs/benchmarks.md, "Fair output"),
    /// so floods together keep to a small share of it while a lone `cat` stays fast.
    pub const OUTPUT_RATE_PER_CORE: u64 = 4 << 20;
    /// Open HTTP connections and WebSockets, all together (lowered at start to what the
    /// open-files limit leaves next to the sessions).
    pub const MAX_CONNECTIONS: usize = 4096;
    /// Per TCP peer address: a classroom of ~200 browsers behind one NAT address, each with a
    /// terminal socket or two and a few HTTP connections, fits.
    pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;
    pub const HEADER_TIMEOUT: &str = "10s";
    // ---- classroom
    pub const DATA_DIR: &str = "/var/lib/nsplay";
    pub const OPEN: bool = true;
    /// The node name defaults to the machine's host name (its first label; see `config::node`).
    pub const NODE: &str = "the host name";
    pub const DRAIN_TIMEOUT: &str = "60s";
    /// The classroom's database when `database_url` is unset (a description for `--help`).
    pub const DATABASE_URL: &str = "SQLite, <data_dir>/nsplay.db";
    pub const STUCK_AFTER: &str = "10m";
    /// Most bytes one `nsplay image import` may unpack.
    pub const MAX_IMAGE_SIZE: &str = "2G";
    pub const MAX_IMAGE_LAYERS: usize = 64;
    /// Sessions kept ready for each image other than the default (which has `WARM_POOL`).
    pub const WARM_POOL_PER_IMAGE: usize = 1;
    /// Neighbour (ARP/NDP) entries per session, all its network namespaces together: far past
    /// what a lesson adds (a handful), and about 2 MiB of kernel memory the session's memory
    /// limit does not see (docs/security.md, item 7).
    pub const MAX_NEIGHBOURS: usize = 4096;
    /// Percent of `fs.file-max` open host-wide past which the session holding the most files is
    /// ended (new sessions are refused from `session::admission::FILES_ADMIT_PERCENT`).
    pub const FILE_TABLE_END_PERCENT: u64 = 90;

    /// The default limits of a session, as `nsplay serve` and `nsplay run` resolve them (the
    /// tests compare with these; lessons read with them where no server's limits are known).
    pub fn limits() -> Limits {
        let size = |what, v| limits::parse_size(what, v).expect("the default sizes parse");
        Limits {
            memory_bytes: size("memory", MEMORY),
            pids: PIDS,
            cpu: CPU,
            disk_bytes: size("disk", DISK),
            shm_bytes: size("shm", SHM),
        }
    }

    /// A `--help` line: the text, then the default.
    pub fn help(text: &str, default: impl std::fmt::Display) -> String {
        format!("{text} [default: {default}]")
    }
}

/// Resolved settings of `nsplay serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub limits: Limits,
    pub hostname: String,
    pub sandbox: SandboxConfig,
    pub max_sessions: usize,
    pub max_sessions_per_client: usize,
    pub max_sessions_per_address: usize,
    pub create_per_minute_per_address: u32,
    pub create_burst_per_address: u32,
    /// Percent of the sessions' group memory limit above which new sessions are refused.
    pub admit_memory_percent: u8,
    pub warm_pool: usize,
    pub create_per_minute: u32,
    pub create_burst: u32,
    pub idle_timeout: Duration,
    pub max_age: Duration,
    pub shutdown_timeout: Duration,
    /// How long a session whose every terminal has ended is kept.
    pub grace: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins of other sites' pages that may embed nsplay (`frame-ancestors` of `/embed/*`),
    /// drive the API and open terminal sockets from a browser (besides nsplay's own pages), and
    /// read the embed calls' answers (CORS): `scheme://host[:port]`, lower case. The settings
    /// `embed_origins` and its older name `allowed_origins` together (docs/embedding.md).
    pub allowed_origins: Vec<String>,
    pub nested_userns: bool,
    pub log_format: String,
    // ---- classroom
    /// Where the classroom's SQLite database lives (`<data_dir>/nsplay.db`).
    pub data_dir: PathBuf,
    /// The configured admin token (`None`: the stored one, or a new one at the first start).
    pub admin_token: Option<AdminToken>,
    /// Whether anyone may start a session (false: only through a room's join code).
    pub open: bool,
    /// Connection caps and the header timeout, as configured (`serve` fits the global cap to the
    /// open-files limit).
    pub connections: crate::web::conn::ConnLimits,
    /// RLIMIT_NOFILE of every process in a session: [`nsplay_sandbox::MAX_OPEN_FILES`], or less
    /// where the host's `fs.file-max` needs it (see [`open_files`]).
    pub open_files: u64,
    /// Whether even [`MIN_OPEN_FILES`] lets the sessions together, in the worst case, go past
    /// [`FILE_MAX_SHARE_PERCENT`] of `fs.file-max` (logged at start).
    pub open_files_overcommitted: bool,
    /// This node's name: the first part of every session id, so that a proxy routes each
    /// session's requests to the node that owns it (docs/scale-out.md).
    pub node: String,
    /// How long a SIGTERM waits for learners to finish before their sessions end.
    pub drain_timeout: Duration,
    /// Bytes per second all terminals together may print (0: no limit; `session::output`).
    pub output_rate: u64,
    /// The classroom's shared database (`postgres://…`, or `sqlite://…`); `None`: SQLite in
    /// `data_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// A learner with no passed step and no keystroke for this long shows as stuck.
    pub stuck_after: Duration,
    /// Directories of lessons merged with the built-in ones (docs/authoring.md).
    pub lessons: Vec<PathBuf>,
    // ---- images
    /// The image sessions start on when nothing else names one (`None`: the host's `/usr`).
    pub image: Option<String>,
    /// Images the create API's `"image"` may ask for (the default one always may).
    pub images_allowed: Vec<String>,
    /// Bounds of `nsplay image import` and how it reaches registries.
    pub import: crate::images::ImportLimits,
    /// Sessions kept ready per image besides the default one's `warm_pool`.
    pub warm_pool_per_image: usize,
    /// Neighbour entries a session may hold in all its network namespaces together.
    pub max_neighbours: usize,
    /// How full the host's file table (percent of `fs.file-max`) may get before the session
    /// holding the most files is ended.
    pub file_table_end_percent: u64,
    /// Serve HTTPS with this certificate chain and key (PEM files; both or neither).
    pub tls: Option<TlsFiles>,
    /// Where to answer plain HTTP with a redirect to HTTPS (only with `tls`).
    pub redirect_http: Option<SocketAddr>,
}

/// The default output budget: [`defaults::OUTPUT_RATE_PER_CORE`] times the CPUs this process may
/// use.
pub fn default_output_rate() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    defaults::OUTPUT_RATE_PER_CORE * cores
}

fn file_table_end_percent(raw: &FileConfig) -> Result<u64, ConfigError> {
    let n = raw.file_table_end_percent.unwrap_or(defaults::FILE_TABLE_END_PERCENT);
    if !(1..=100).contains(&n) {
        return Err(bad("file_table_end_percent", n, "1 to 100 (percent of fs.file-max)"));
    }
    Ok(n)
}

fn max_neighbours(raw: &FileConfig) -> Result<usize, ConfigError> {
    let n = raw.max_neighbours.unwrap_or(defaults::MAX_NEIGHBOURS);
    if !(16..=1_000_000).contains(&n) {
        return Err(bad("max_neighbours", n, "16 to 1000000 (neighbour entries per session)"));
    }
    Ok(n)
}

fn output_rate(raw: &FileConfig) -> Result<u64, ConfigError> {
    match raw.output_rate.as_deref() {
        None => Ok(default_output_rate()),
        Some("0") => Ok(0),
        Some(v) => {
            let rate = size("output_rate", v)?;
            if rate < 64 << 10 {
                return Err(bad("output_rate", v, "0 (no limit) or at least 64K (bytes per second)"));
            }
            Ok(rate)
        }
    }
}

/// A database URL; its `Debug` hides the password (it may sit in the URL).
#[derive(Clone, PartialEq)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match (self.0.find("://"), self.0.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &self.0[..s + 3], &self.0[at..]),
            _ => self.0.clone(),
        };
        f.debug_tuple("DatabaseUrl").field(&shown).finish()
    }
}

/// The certificate chain and private key of nsplay's own TLS (`tls_cert`, `tls_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn tls(raw: &FileConfig) -> Result<(Option<TlsFiles>, Option<SocketAddr>), ConfigError> {
    let files = match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.into(), key: key.into() }),
        (None, None) => None,
        (Some(c), None) => {
            return Err(bad("tls_key", "(unset)", format!("a PEM key file: tls_cert = {c} needs its key")));
        }
        (None, Some(k)) => {
            return Err(bad(
                "tls_cert",
                "(unset)",
                format!("a PEM certificate file: tls_key = {k} needs its certificate"),
            ));
        }
    };
    let redirect = match &raw.redirect_http {
        None => None,
        Some(_) if files.is_none() => {
            return Err(bad(
                "redirect_http",
                raw.redirect_http.as_deref().unwrap_or(""),
                "unset, unless tls_cert and tls_key are set",
            ));
        }
        Some(a) => Some(a.parse().map_err(|_| bad("redirect_http", a, "an address with a port, such as 0.0.0.0:80"))?),
    };
    Ok((files, redirect))
}

/// Share of the host's `fs.file-max` every session together may hold, in percent: the rest is
/// the host's (nsplay itself, as root, may go past the limit; other services may not).
pub const FILE_MAX_SHARE_PERCENT: u64 = 90;
/// The least RLIMIT_NOFILE a session's processes get, whatever the host: less breaks ordinary
/// programs (python, a build). Where even this much could, in the worst case, fill the host's
/// file table, new sessions are refused by the table's real use instead (`files_full`, see
/// `session::admission`).
pub const MIN_OPEN_FILES: u64 = 256;

/// The open-files limit per process of a session such that `max_sessions` sessions of `pids`
/// processes each cannot together hold more than [`FILE_MAX_SHARE_PERCENT`] of `file_max`: a
/// session holds at most (pids + 1) × the limit (every process its own table, plus descriptors
/// in flight over unix sockets, which the kernel bounds per user by the same limit). Never
/// below [`MIN_OPEN_FILES`]; the second value says whether that floor leaves the worst case
/// over the share (then admission by the table's real use is what holds, and the start says so).
pub fn open_files(file_max: u64, max_sessions: usize, pids: u64) -> (u64, bool) {
    let share = file_max / 100 * FILE_MAX_SHARE_PERCENT;
    let per_process = share / (max_sessions as u64 * (pids + 1)).max(1);
    (per_process.clamp(MIN_OPEN_FILES, nsplay_sandbox::MAX_OPEN_FILES), per_process < MIN_OPEN_FILES)
}

/// The host's `fs.file-max` (a large value when it cannot be read: then nothing is lowered).
fn file_max() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/file-max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(u64::MAX / 2)
}

/// The instructor's admin token as configured: a secret, so `Debug` never shows it.
#[derive(Clone, PartialEq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// Shortest admin token accepted from the configuration.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// Largest warm pool: each ready session holds an id range, a cgroup and about 1 MiB.
pub const MAX_WARM_POOL: usize = 64;

fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v.trim()).map_err(|_| bad(key, v, "a duration such as 30s, 15m or 2h"))?;
    if d.is_zero() {
        return Err(bad(key, v, "a duration above zero"));
    }
    Ok(d)
}

fn size(key: &'static str, v: &str) -> Result<u64, ConfigError> {
    limits::parse_size(key, v).map_err(|_| bad(key, v, "a size such as 256M or 1G"))
}

/// The host's RAM (MemTotal), or 4 GiB if /proc/meminfo cannot be read.
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(4 << 30)
}

/// The default memory limit of all sessions together: RAM less a reserve for the host and nsplay
/// (the larger of 1 GiB and 10 %), and never less than half of RAM.
pub fn default_sessions_memory(total: u64) -> u64 {
    let reserve = defaults::RESERVE_MIN.max(total / 100 * defaults::RESERVE_PERCENT);
    total.saturating_sub(reserve).max(total / 2)
}

/// The default cap: as many sessions as the sessions' memory holds at a realistic real use each
/// ([`defaults::SESSION_REAL_USE`]), and no more than id ranges. Not the sum of the per-session
/// limits: those bound one session; all of them together are bounded by their group's limit.
pub fn default_max_sessions(sessions_memory: u64, id_slots: u32) -> usize {
    (sessions_memory / defaults::SESSION_REAL_USE).clamp(1, id_slots as u64) as usize
}

/// The limits of the group holding every session, for `nsplay run` (the defaults).
pub fn default_sessions_limits() -> nsplay_sandbox::SessionsLimits {
    nsplay_sandbox::SessionsLimits { memory_bytes: default_sessions_memory(mem_total()), pids: defaults::SESSIONS_PIDS }
}

impl FileConfig {
    /// Reads the `--config` file (none: every key unset).
    fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        let Some(path) = path else { return Ok(FileConfig::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("config", path.display(), format!("a readable TOML file ({e})")))?;
        toml::from_str(&text).map_err(|e| {
            let msg = e.message().to_string();
            let key = msg.split('`').nth(1).unwrap_or("config").to_string();
            bad(&key, path.display(), msg)
        })
    }

    /// The file's values with the flags' (and the environment's: clap has merged those two)
    /// laid over them.
    fn under(self, flags: &ServeArgs) -> FileConfig {
        let f = flags.clone();
        FileConfig {
            listen: f.listen.or(self.listen),
            memory: f.memory.or(self.memory),
            pids: f.pids.or(self.pids),
            cpu: f.cpu.or(self.cpu),
            disk: f.disk.or(self.disk),
            shm: f.shm.or(self.shm),
            hostname: f.hostname.or(self.hostname),
            id_base: f.id_base.or(self.id_base),
            id_slots: f.id_slots.or(self.id_slots),
            cgroup_parent: f.cgroup_parent.or(self.cgroup_parent),
            state_dir: f.state_dir.or(self.state_dir),
            max_sessions: f.max_sessions.or(self.max_sessions),
            max_sessions_per_client: f.max_sessions_per_client.or(self.max_sessions_per_client),
            max_sessions_per_address: f.max_sessions_per_address.or(self.max_sessions_per_address),
            create_per_minute_per_address: f.create_per_minute_per_address.or(self.create_per_minute_per_address),
            create_burst_per_address: f.create_burst_per_address.or(self.create_burst_per_address),
            sessions_memory: f.sessions_memory.or(self.sessions_memory),
            sessions_pids: f.sessions_pids.or(self.sessions_pids),
            admit_memory_percent: f.admit_memory_percent.or(self.admit_memory_percent),
            warm_pool: f.warm_pool.or(self.warm_pool),
            create_per_minute: f.create_per_minute.or(self.create_per_minute),
            create_burst: f.create_burst.or(self.create_burst),
            idle_timeout: f.idle_timeout.or(self.idle_timeout),
            max_age: f.max_age.or(self.max_age),
            shutdown_timeout: f.shutdown_timeout.or(self.shutdown_timeout),
            grace: f.grace.or(self.grace),
            trusted_proxies: f.trusted_proxies.or(self.trusted_proxies),
            allowed_origins: f.allowed_origins.or(self.allowed_origins),
            embed_origins: f.embed_origins.or(self.embed_origins),
            nested_userns: f.nested_userns.or(self.nested_userns),
            log_format: f.log_format.or(self.log_format),
            max_connections: f.max_connections.or(self.max_connections),
            max_connections_per_address: f.max_connections_per_address.or(self.max_connections_per_address),
            header_timeout: f.header_timeout.or(self.header_timeout),
            data_dir: f.data_dir.or(self.data_dir),
            admin_token: f.admin_token.or(self.admin_token),
            open: f.open.or(self.open),
            node: f.node.or(self.node),
            drain_timeout: f.drain_timeout.or(self.drain_timeout),
            output_rate: f.output_rate.or(self.output_rate),
            database_url: f.database_url.or(self.database_url),
            stuck_after: f.stuck_after.or(self.stuck_after),
            lessons: f.lessons.or(self.lessons),
            image: f.image.or(self.image),
            images_allowed: f.images_allowed.or(self.images_allowed),
            max_image_size: f.max_image_size.or(self.max_image_size),
            max_image_layers: f.max_image_layers.or(self.max_image_layers),
            insecure_registries: f.insecure_registries.or(self.insecure_registries),
            registry_auth_file: f.registry_auth_file.or(self.registry_auth_file),
            warm_pool_per_image: f.warm_pool_per_image.or(self.warm_pool_per_image),
            max_neighbours: f.max_neighbours.or(self.max_neighbours),
            file_table_end_percent: f.file_table_end_percent.or(self.file_table_end_percent),
            tls_cert: f.tls_cert.or(self.tls_cert),
            tls_key: f.tls_key.or(self.tls_key),
            redirect_http: f.redirect_http.or(self.redirect_http),
        }
    }
}

fn or_default(v: &Option<String>, default: &str) -> String {
    v.clone().unwrap_or_else(|| default.to_string())
}

fn listen(raw: &FileConfig) -> Result<SocketAddr, ConfigError> {
    let listen = or_default(&raw.listen, defaults::LISTEN);
    listen.parse().map_err(|_| bad("listen", &listen, "an address with a port, such as 127.0.0.1:8080"))
}

fn session_limits(raw: &FileConfig) -> Result<Limits, ConfigError> {
    let limits = Limits {
        memory_bytes: size("memory", &or_default(&raw.memory, defaults::MEMORY))?,
        disk_bytes: size("disk", &or_default(&raw.disk, defaults::DISK))?,
        shm_bytes: size("shm", &or_default(&raw.shm, defaults::SHM))?,
        pids: raw.pids.unwrap_or(defaults::PIDS),
        cpu: raw.cpu.unwrap_or(defaults::CPU),
    };
    limits.validate().map_err(|e| match e {
        nsplay_sandbox::LimitError::OutOfRange { what, value, min, max } => {
            bad(what, value, format!("from {min} to {max}"))
        }
        other => bad("limits", "", other.to_string()),
    })?;
    Ok(limits)
}

fn hostname(raw: &FileConfig) -> Result<String, ConfigError> {
    let hostname = or_default(&raw.hostname, defaults::HOSTNAME);
    if !nsplay_sandbox::valid_hostname(&hostname) {
        return Err(bad("hostname", &hostname, "letters, digits and dashes, at most 63"));
    }
    Ok(hostname)
}

/// Id ranges, cgroup parent and state directory.
fn placement(raw: &FileConfig) -> Result<SandboxConfig, ConfigError> {
    let id_base = raw.id_base.unwrap_or(defaults::ID_BASE);
    let id_slots = raw.id_slots.unwrap_or(defaults::ID_SLOTS);
    nsplay_sandbox::IdAllocator::new(id_base, id_slots).map_err(|e| bad("id_base", id_base, e.to_string()))?;
    let cgroup_parent = raw.cgroup_parent.clone();
    if let Some(p) = &cgroup_parent
        && (p.split('/').any(|c| c == ".." || c == ".") || p.trim_matches('/').is_empty())
    {
        return Err(bad("cgroup_parent", p, "a path below the cgroup root, such as nsplay"));
    }
    let state_dir = PathBuf::from(or_default(&raw.state_dir, defaults::STATE_DIR));
    if !state_dir.is_absolute() {
        return Err(bad("state_dir", state_dir.display(), "an absolute path"));
    }
    let memory_bytes = match &raw.sessions_memory {
        Some(v) => size("sessions_memory", v)?,
        None => default_sessions_memory(mem_total()),
    };
    if memory_bytes < 64 << 20 {
        return Err(bad("sessions_memory", limits::format_size(memory_bytes), "64M or more"));
    }
    let pids = raw.sessions_pids.unwrap_or(defaults::SESSIONS_PIDS);
    if pids < 64 {
        return Err(bad("sessions_pids", pids, "64 or more"));
    }
    let sessions = nsplay_sandbox::SessionsLimits { memory_bytes, pids };
    Ok(SandboxConfig { id_base, id_slots, cgroup_parent, state_dir, sessions })
}

/// Caps, warm pool and creation rate.
struct AdmissionSettings {
    max_sessions: usize,
    per_client: usize,
    per_address: usize,
    address_per_minute: u32,
    address_burst: u32,
    admit_memory_percent: u8,
    warm_pool: usize,
    per_minute: u32,
    burst: u32,
}

fn admission(raw: &FileConfig, sessions_memory: u64, id_slots: u32) -> Result<AdmissionSettings, ConfigError> {
    let max_sessions = raw.max_sessions.unwrap_or_else(|| default_max_sessions(sessions_memory, id_slots));
    if max_sessions == 0 || max_sessions > id_slots as usize {
        return Err(bad("max_sessions", max_sessions, format!("1 to id_slots ({id_slots})")));
    }
    let per_client = raw.max_sessions_per_client.unwrap_or(defaults::MAX_SESSIONS_PER_CLIENT);
    if per_client == 0 {
        return Err(bad("max_sessions_per_client", 0, "1 or more"));
    }
    let warm_pool = raw.warm_pool.unwrap_or(defaults::WARM_POOL);
    if warm_pool > MAX_WARM_POOL {
        return Err(bad("warm_pool", warm_pool, format!("0 to {MAX_WARM_POOL}")));
    }
    let per_minute = raw.create_per_minute.unwrap_or(defaults::CREATE_PER_MINUTE);
    let burst = raw.create_burst.unwrap_or(defaults::CREATE_BURST);
    if per_minute == 0 || burst == 0 {
        return Err(bad("create_per_minute", per_minute, "1 or more (and create_burst 1 or more)"));
    }
    let per_address = raw.max_sessions_per_address.unwrap_or(defaults::MAX_SESSIONS_PER_ADDRESS);
    if per_address == 0 {
        return Err(bad("max_sessions_per_address", 0, "1 or more"));
    }
    let address_per_minute = raw.create_per_minute_per_address.unwrap_or(defaults::CREATE_PER_MINUTE_PER_ADDRESS);
    let address_burst = raw.create_burst_per_address.unwrap_or(defaults::CREATE_BURST_PER_ADDRESS);
    if address_per_minute == 0 || address_burst == 0 {
        return Err(bad(
            "create_per_minute_per_address",
            address_per_minute,
            "1 or more (and create_burst_per_address 1 or more)",
        ));
    }
    let admit_memory_percent = raw.admit_memory_percent.unwrap_or(defaults::ADMIT_MEMORY_PERCENT);
    if !(1..=100).contains(&admit_memory_percent) {
        return Err(bad("admit_memory_percent", admit_memory_percent, "1 to 100"));
    }
    Ok(AdmissionSettings {
        max_sessions,
        per_client,
        per_address,
        address_per_minute,
        address_burst,
        admit_memory_percent,
        warm_pool,
        per_minute,
        burst,
    })
}

/// How long sessions live, and how long a shutdown may take.
struct Lifecycle {
    idle_timeout: Duration,
    max_age: Duration,
    shutdown_timeout: Duration,
    grace: Duration,
}

fn lifecycle(raw: &FileConfig) -> Result<Lifecycle, ConfigError> {
    Ok(Lifecycle {
        idle_timeout: duration("idle_timeout", &or_default(&raw.idle_timeout, defaults::IDLE_TIMEOUT))?,
        max_age: duration("max_age", &or_default(&raw.max_age, defaults::MAX_AGE))?,
        shutdown_timeout: duration("shutdown_timeout", &or_default(&raw.shutdown_timeout, defaults::SHUTDOWN_TIMEOUT))?,
        grace: duration("grace", &or_default(&raw.grace, defaults::GRACE))?,
    })
}

/// Lesson directories. One that is missing or unreadable does not stop the start: like a
/// broken lesson, it is logged and listed (`GET /api/lessons`, /learn) with the reason, and
/// loads once it is there (the catalog looks again on every change and on SIGHUP).
fn lesson_dirs(raw: &FileConfig) -> Result<Vec<PathBuf>, ConfigError> {
    raw.lessons
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            if d.trim().is_empty() {
                Err(bad("lessons", d, "paths of lesson directories"))
            } else {
                Ok(PathBuf::from(d))
            }
        })
        .collect()
}

fn trusted_proxies(raw: &FileConfig) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let proxies = raw.trusted_proxies.as_deref().unwrap_or_default();
    proxies
        .iter()
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| bad("trusted_proxies", p, "IP addresses or CIDR ranges, such as 10.0.0.1 or 10.0.0.0/8"))
        })
        .collect()
}

fn image_name(key: &str, name: Option<&str>) -> Result<Option<String>, ConfigError> {
    match name {
        None => Ok(None),
        Some(n) if crate::images::valid_name(n) => Ok(Some(n.to_string())),
        Some(n) => Err(bad(key, n, "an image name from `nsplay image ls`")),
    }
}

fn import_limits(raw: &FileConfig) -> Result<crate::images::ImportLimits, ConfigError> {
    let size = or_default(&raw.max_image_size, defaults::MAX_IMAGE_SIZE);
    let max_bytes = nsplay_sandbox::parse_size("max_image_size", &size)
        .map_err(|_| bad("max_image_size", &size, "a size such as 2G"))?;
    let max_layers = raw.max_image_layers.unwrap_or(defaults::MAX_IMAGE_LAYERS);
    if max_layers == 0 || max_layers > nsplay_sandbox::MAX_IMAGE_LAYERS {
        return Err(bad("max_image_layers", max_layers, "1 to 128"));
    }
    let auth_file = raw.registry_auth_file.as_ref().map(PathBuf::from);
    if let Some(f) = &auth_file
        && !f.is_absolute()
    {
        return Err(bad("registry_auth_file", f.display(), "an absolute path"));
    }
    Ok(crate::images::ImportLimits {
        max_bytes,
        max_layers,
        registry: crate::images::registry::RegistryOptions {
            insecure: raw.insecure_registries.clone().unwrap_or_default(),
            auth_file,
        },
    })
}

fn allowed_origins(raw: &FileConfig) -> Result<Vec<String>, ConfigError> {
    let mut out = origins("allowed_origins", raw.allowed_origins.as_deref().unwrap_or_default())?;
    for o in origins("embed_origins", raw.embed_origins.as_deref().unwrap_or_default())? {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}

fn origins(key: &'static str, origins: &[String]) -> Result<Vec<String>, ConfigError> {
    origins
        .iter()
        .map(|o| {
            let lower = o.trim().trim_end_matches('/').to_ascii_lowercase();
            let valid = lower.split_once("://").is_some_and(|(scheme, host)| {
                matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains(['/', '?', '#', '*', ' '])
            });
            if valid {
                Ok(lower)
            } else {
                Err(bad(key, o, "origins such as https://docs.example.org or http://localhost:3000"))
            }
        })
        .collect()
}

fn connections(raw: &FileConfig) -> Result<crate::web::conn::ConnLimits, ConfigError> {
    let max = raw.max_connections.unwrap_or(defaults::MAX_CONNECTIONS);
    if max == 0 {
        return Err(bad("max_connections", 0, "1 or more"));
    }
    let per_address = raw.max_connections_per_address.unwrap_or(defaults::MAX_CONNECTIONS_PER_ADDRESS);
    if per_address == 0 || per_address > max {
        return Err(bad("max_connections_per_address", per_address, format!("1 to max_connections ({max})")));
    }
    let header_timeout = duration("header_timeout", &or_default(&raw.header_timeout, defaults::HEADER_TIMEOUT))?;
    Ok(crate::web::conn::ConnLimits { max, per_address, header_timeout })
}

fn log_format(raw: &FileConfig) -> Result<String, ConfigError> {
    let log_format = or_default(&raw.log_format, defaults::LOG_FORMAT);
    if log_format != "text" && log_format != "json" {
        return Err(bad("log_format", &log_format, "text or json"));
    }
    Ok(log_format)
}

/// The classroom's settings: data directory, admin token, open or rooms only.
fn classroom(raw: &FileConfig) -> Result<(PathBuf, Option<AdminToken>), ConfigError> {
    let data_dir = PathBuf::from(or_default(&raw.data_dir, defaults::DATA_DIR));
    if !data_dir.is_absolute() {
        return Err(bad("data_dir", data_dir.display(), "an absolute path"));
    }
    let token = raw.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if let Some(t) = token
        && (t.chars().count() < MIN_ADMIN_TOKEN || t.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        // The value itself is a secret: never in an error message.
        return Err(bad(
            "admin_token",
            "(hidden)",
            format!("at least {MIN_ADMIN_TOKEN} characters without spaces, or unset to have one generated"),
        ));
    }
    Ok((data_dir, token.map(|t| AdminToken(t.to_string()))))
}

/// The classroom's database URL: PostgreSQL (shared by many nodes) or SQLite.
fn database_url(raw: &FileConfig) -> Result<Option<DatabaseUrl>, ConfigError> {
    let Some(url) = raw.database_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else { return Ok(None) };
    if ["postgres://", "postgresql://", "sqlite://"].iter().any(|p| url.starts_with(p)) {
        Ok(Some(DatabaseUrl(url.to_string())))
    } else {
        // The URL may hold a password: only its scheme in the message.
        let scheme = url.split("://").next().unwrap_or("").chars().take(20).collect::<String>();
        Err(bad("database_url", format!("{scheme}://…"), "a postgres://user:password@host/db or sqlite:///path URL"))
    }
}

/// Whether `name` is a DNS label nsplay can put in ids and proxies can match: 1 to 63 lower-case
/// letters, digits and dashes, neither first nor last a dash. No dot: the dot ends the node name
/// in a session id (`<node>.<random>`), and base64url randomness never contains one.
pub fn valid_node(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The node name: the setting, or the machine's host name up to its first dot, lower-cased (a
/// StatefulSet pod's name, `nsplay-0`, in Kubernetes).
fn node(raw: &FileConfig) -> Result<String, ConfigError> {
    let allowed = "a DNS label: 1 to 63 lower-case letters, digits and dashes, not starting or ending with a dash";
    match &raw.node {
        Some(n) if valid_node(n) => Ok(n.clone()),
        Some(n) => Err(bad("node", n, allowed)),
        None => {
            let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
            let first = host.split('.').next().unwrap_or_default().to_ascii_lowercase();
            if valid_node(&first) {
                Ok(first)
            } else {
                Err(bad("node", format!("{host:?} (the host name)"), format!("{allowed}; set node or --node")))
            }
        }
    }
}

impl Settings {
    /// Defaults ← file ← environment/flags, each group checked in turn (the first wrong value
    /// is the error).
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let raw = FileConfig::load(args.config.as_deref())?.under(args);
        let listen = listen(&raw)?;
        let limits = session_limits(&raw)?;
        let hostname = hostname(&raw)?;
        let sandbox = placement(&raw)?;
        let admission = admission(&raw, sandbox.sessions.memory_bytes, sandbox.id_slots)?;
        let lifecycle = lifecycle(&raw)?;
        let (open_files, open_files_overcommitted) = open_files(file_max(), admission.max_sessions, limits.pids);
        let (data_dir, admin_token) = classroom(&raw)?;
        let (tls_files, redirect_http) = tls(&raw)?;
        Ok(Settings {
            listen,
            limits,
            hostname,
            sandbox,
            max_sessions: admission.max_sessions,
            max_sessions_per_client: admission.per_client,
            max_sessions_per_address: admission.per_address,
            create_per_minute_per_address: admission.address_per_minute,
            create_burst_per_address: admission.address_burst,
            admit_memory_percent: admission.admit_memory_percent,
            warm_pool: admission.warm_pool,
            create_per_minute: admission.per_minute,
            create_burst: admission.burst,
            idle_timeout: lifecycle.idle_timeout,
            max_age: lifecycle.max_age,
            shutdown_timeout: lifecycle.shutdown_timeout,
            grace: lifecycle.grace,
            trusted_proxies: trusted_proxies(&raw)?,
            allowed_origins: allowed_origins(&raw)?,
            nested_userns: raw.nested_userns.unwrap_or(defaults::NESTED_USERNS),
            log_format: log_format(&raw)?,
            connections: connections(&raw)?,
            open_files,
            open_files_overcommitted,
            data_dir,
            admin_token,
            open: raw.open.unwrap_or(defaults::OPEN),
            node: node(&raw)?,
            drain_timeout: duration("drain_timeout", &or_default(&raw.drain_timeout, defaults::DRAIN_TIMEOUT))?,
            output_rate: output_rate(&raw)?,
            database_url: database_url(&raw)?,
            stuck_after: duration("stuck_after", &or_default(&raw.stuck_after, defaults::STUCK_AFTER))?,
            lessons: lesson_dirs(&raw)?,
            image: image_name("image", raw.image.as_deref())?,
            images_allowed: raw
                .images_allowed
                .iter()
                .flatten()
                .map(|n| image_name("images_allowed", Some(n)).map(Option::unwrap_or_default))
                .collect::<Result<_, _>>()?,
            import: import_limits(&raw)?,
            warm_pool_per_image: raw.warm_pool_per_image.unwrap_or(defaults::WARM_POOL_PER_IMAGE),
            max_neighbours: max_neighbours(&raw)?,
            file_table_end_percent: file_table_end_percent(&raw)?,
            tls: tls_files,
            redirect_http,
        })
    }

    /// What the classroom needs of these settings.
    pub fn classroom_config(
        &self,
        lessons: std::sync::Arc<crate::lessons::Catalog>,
    ) -> crate::classroom::ClassroomConfig {
        crate::classroom::ClassroomConfig {
            lessons,
            admin_token: self.admin_token.as_ref().map(|t| t.0.clone()),
            open: self.open,
            limits: self.limits,
            max_sessions: self.max_sessions,
            stuck_after: self.stuck_after,
            node: self.node.clone(),
            images: self.offered_images(),
        }
    }

    /// What the session manager needs of these settings.
    pub fn manager_config(&self) -> ManagerConfig {
        ManagerConfig {
            limits: self.limits,
            max_sessions: self.max_sessions,
            max_sessions_per_client: self.max_sessions_per_client,
            max_sessions_per_address: self.max_sessions_per_address,
            create_per_minute_per_address: self.create_per_minute_per_address,
            create_burst_per_address: self.create_burst_per_address,
            admit_memory_percent: self.admit_memory_percent,
            warm_pool: self.warm_pool,
            create_per_minute: self.create_per_minute,
            create_burst: self.create_burst,
            max_age: self.max_age,
            idle_timeout: self.idle_timeout,
            grace: self.grace,
            hostname: self.hostname.clone(),
            node: self.node.clone(),
            output_rate: self.output_rate,
            default_image: self.image.clone(),
            // Filled from the store at start (`images::load_for_server`).
            images: Default::default(),
            images_allowed: self.images_allowed.clone(),
            warm_pool_per_image: self.warm_pool_per_image,
            drain_timeout: self.drain_timeout,
            max_neighbours: self.max_neighbours,
            file_table_end_percent: self.file_table_end_percent,
        }
    }

    /// The images a request may ask for by name (the create API, a room): the default and the
    /// allowed ones.
    fn offered_images(&self) -> Vec<String> {
        self.image.iter().chain(&self.images_allowed).cloned().collect()
    }

    /// Every image this server may start sessions on: the default, the allowed ones, and the
    /// lessons' (which must all be in the store).
    pub fn images_in_use(&self, lessons: &crate::lessons::Loaded) -> Vec<String> {
        let mut all = self.offered_images();
        all.extend(lessons.lessons.iter().filter_map(|l| l.image.clone()));
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(argv: &[&str]) -> Result<Settings, ConfigError> {
        let mut full = vec!["nsplay", "serve"];
        full.extend_from_slice(argv);
        let cli = crate::cli::Cli::try_parse_from(full).unwrap();
        let Some(crate::cli::Command::Serve(args)) = cli.command else { unreachable!() };
        Settings::resolve(args.as_ref())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = resolve(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.limits, defaults::limits());
        assert_eq!(s.idle_timeout, Duration::from_secs(15 * 60));
        assert_eq!(s.max_age, Duration::from_secs(2 * 3600));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(s.grace, Duration::from_secs(10));
        assert_eq!(s.max_sessions_per_client, 3);
        assert_eq!(s.connections.max, 4096);
        assert_eq!(s.connections.per_address, 1024);
        assert_eq!(s.connections.header_timeout, Duration::from_secs(10));
        assert!(s.max_sessions_per_address >= 200, "a room of 200 behind one NAT address");
        assert!(s.nested_userns);
        assert!(s.max_sessions >= 1);
        assert_eq!(s.sandbox.sessions.pids, defaults::SESSIONS_PIDS);
        assert_eq!(s.sandbox.sessions.memory_bytes, default_sessions_memory(mem_total()));
        assert_eq!(s.admit_memory_percent, 90);
    }

    #[test]
    fn the_sessions_group_leaves_a_reserve_and_the_cap_fits_a_room_of_200_on_8_gib() {
        const GIB: u64 = 1 << 30;
        // A VM sold as 8 GiB shows a little less as MemTotal.
        let ram = 7_900 << 20;
        let sessions = default_sessions_memory(ram);
        assert_eq!(sessions, ram - GIB, "1 GiB reserve below 10 GiB of RAM");
        assert!(default_max_sessions(sessions, 4096) >= 200);
        assert_eq!(default_sessions_memory(24 * GIB), 24 * GIB - 24 * GIB / 100 * 10);
        assert_eq!(default_sessions_memory(GIB), GIB / 2, "never less than half of a tiny host");
        assert_eq!(default_max_sessions(sessions, 100), 100, "no more than id ranges");
        let s = resolve(&["--sessions-memory", "128M", "--admit-memory-percent", "50"]).unwrap();
        assert_eq!(s.sandbox.sessions.memory_bytes, 128 << 20);
        assert_eq!(s.max_sessions, 6, "the cap follows sessions_memory");
        assert_eq!(s.admit_memory_percent, 50);
        assert_eq!(resolve(&["--sessions-memory", "1M"]).unwrap_err().key, "sessions_memory");
        assert_eq!(resolve(&["--admit-memory-percent", "0"]).unwrap_err().key, "admit_memory_percent");
        assert_eq!(resolve(&["--sessions-pids", "3"]).unwrap_err().key, "sessions_pids");
        assert_eq!(resolve(&["--max-sessions-per-address", "0"]).unwrap_err().key, "max_sessions_per_address");
    }

    #[test]
    fn default_limits_are_valid_and_as_documented() {
        let l = defaults::limits();
        l.validate().unwrap();
        assert_eq!(l.memory_bytes, 256 << 20);
        assert_eq!(l.pids, 128);
        assert_eq!(l.cpu_quota_us(), 50_000);
        assert_eq!(l.disk_bytes, 64 << 20);
        assert_eq!(l.shm_bytes, 16 << 20);
    }

    #[test]
    fn sessions_together_stay_under_the_hosts_file_max() {
        // A roomy host: the full limit.
        assert_eq!(open_files(100_000_000, 10, 128).0, 1024);
        // A host of 2.4 M files and 60 sessions of 128 processes: lowered so that they fit.
        let (n, over) = open_files(2_466_126, 60, 128);
        assert!(!over);
        assert!((MIN_OPEN_FILES..1024).contains(&n), "{n}");
        assert!(60 * 129 * n <= 2_466_126 / 100 * FILE_MAX_SHARE_PERCENT);
        // No room even for the least: the floor, flagged (admission by real use holds then).
        assert_eq!(open_files(200_000, 100, 128), (MIN_OPEN_FILES, true));
        assert!(!open_files(100_000_000, 10, 128).1);
        // The defaults start on this host, however many sessions its RAM allows.
        assert!(resolve(&[]).is_ok());
    }

    #[test]
    fn grace_is_a_setting_like_the_others() {
        assert_eq!(resolve(&["--grace", "3s"]).unwrap().grace, Duration::from_secs(3));
        assert_eq!(resolve(&["--grace", "never"]).unwrap_err().key, "grace");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.toml");
        std::fs::write(&f, "grace = \"1m\"\n").unwrap();
        assert_eq!(resolve(&["--config", f.to_str().unwrap()]).unwrap().grace, Duration::from_secs(60));
    }

    #[test]
    fn embed_origins_repeat_and_join_allowed_origins() {
        let s =
            resolve(&["--embed-origin", "https://Docs.Example/", "--embed-origin", "http://127.0.0.1:8000"]).unwrap();
        assert_eq!(s.allowed_origins, ["https://docs.example", "http://127.0.0.1:8000"]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.toml");
        std::fs::write(&f, "embed_origins = [\"https://a.example\"]\nallowed_origins = [\"https://b.example\"]\n")
            .unwrap();
        let s = resolve(&["--config", f.to_str().unwrap()]).unwrap();
        assert_eq!(s.allowed_origins, ["https://b.example", "https://a.example"]);
        assert_eq!(resolve(&["--embed-origin", "docs.example"]).unwrap_err().key, "embed_origins");
        assert_eq!(resolve(&["--embed-origin", "https://*.example"]).unwrap_err().key, "embed_origins");
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.toml");
        std::fs::write(
            &f,
            "memory = \"512M\"\nidle_timeout = \"30s\"\ntrusted_proxies = [\"10.0.0.0/8\"]\nmax_sessions = 7\n",
        )
        .unwrap();
        let s = resolve(&["--config", f.to_str().unwrap(), "--max-sessions", "9"]).unwrap();
        assert_eq!(s.limits.memory_bytes, 512 << 20);
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.max_sessions, 9);
        assert!(s.trusted_proxies[0].contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn every_bad_setting_names_key_value_and_what_is_allowed() {
        let e = resolve(&["--memory", "1M"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid setting memory = 1 MiB: from 32 MiB to 64 GiB");
        let e = resolve(&["--idle-timeout", "soon"]).unwrap_err();
        assert_eq!(e.key, "idle_timeout");
        assert_eq!(resolve(&["--listen", "nowhere"]).unwrap_err().key, "listen");
        assert_eq!(resolve(&["--trusted-proxies", "proxy.example"]).unwrap_err().key, "trusted_proxies");
        assert_eq!(resolve(&["--max-sessions", "0"]).unwrap_err().key, "max_sessions");
        assert_eq!(resolve(&["--cgroup-parent", "../etc"]).unwrap_err().key, "cgroup_parent");
        assert_eq!(resolve(&["--log-format", "xml"]).unwrap_err().key, "log_format");
        assert_eq!(resolve(&["--max-connections", "0"]).unwrap_err().key, "max_connections");
        assert_eq!(
            resolve(&["--max-connections", "10", "--max-connections-per-address", "11"]).unwrap_err().key,
            "max_connections_per_address"
        );
        assert_eq!(resolve(&["--header-timeout", "0s"]).unwrap_err().key, "header_timeout");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.toml");
        std::fs::write(&f, "memroy = \"1G\"\n").unwrap();
        let e = resolve(&["--config", f.to_str().unwrap()]).unwrap_err();
        assert_eq!(e.key, "memroy", "{e}");
    }

    #[test]
    fn the_shipped_example_file_documents_the_defaults() {
        let text = include_str!("../deploy/nsplay.toml");
        // Uncomment every `# key = value` line: the result must parse and equal the defaults.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ").is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            })
            .filter(|l| {
                !l.starts_with("max_sessions =")
                    && !l.starts_with("sessions_memory =")
                    && !l.starts_with("node =")
                    && !l.starts_with("output_rate =")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.toml");
        std::fs::write(&f, &uncommented).unwrap();
        let from_file = resolve(&["--config", f.to_str().unwrap()]).unwrap();
        let defaults = resolve(&[]).unwrap();
        assert!(uncommented.lines().count() >= 20, "{uncommented}");
        assert_eq!(from_file.limits, defaults.limits);
        assert_eq!(from_file.listen, defaults.listen);
        assert_eq!(from_file.idle_timeout, defaults.idle_timeout);
        assert_eq!(from_file.max_age, defaults.max_age);
        assert_eq!(from_file.shutdown_timeout, defaults.shutdown_timeout);
        assert_eq!(from_file.max_sessions_per_client, defaults.max_sessions_per_client);
        assert_eq!(from_file.max_sessions_per_address, defaults.max_sessions_per_address);
        assert_eq!(from_file.create_per_minute_per_address, defaults.create_per_minute_per_address);
        assert_eq!(from_file.create_burst_per_address, defaults.create_burst_per_address);
        assert_eq!(from_file.admit_memory_percent, defaults.admit_memory_percent);
        assert_eq!(from_file.sandbox.sessions.pids, defaults.sandbox.sessions.pids);
        assert_eq!(from_file.create_per_minute, defaults.create_per_minute);
        assert_eq!(from_file.sandbox.state_dir, defaults.sandbox.state_dir);
        assert_eq!(from_file.sandbox.id_base, defaults.sandbox.id_base);
        assert_eq!(from_file.sandbox.id_slots, defaults.sandbox.id_slots);
        assert_eq!(from_file.hostname, defaults.hostname);
        assert_eq!(from_file.warm_pool, defaults.warm_pool);
        assert_eq!(from_file.create_burst, defaults.create_burst);
        assert_eq!(from_file.grace, defaults.grace);
        assert_eq!(from_file.trusted_proxies, defaults.trusted_proxies);
        assert_eq!(from_file.allowed_origins, defaults.allowed_origins);
        assert_eq!(from_file.nested_userns, defaults.nested_userns);
        assert_eq!(from_file.log_format, defaults.log_format);
        assert_eq!(from_file.connections, defaults.connections);
        assert_eq!(from_file.data_dir, defaults.data_dir);
        assert_eq!(from_file.open, defaults.open);
        assert_eq!(from_file.drain_timeout, defaults.drain_timeout);
        assert_eq!(from_file.stuck_after, defaults.stuck_after);
        assert_eq!(from_file.image, defaults.image);
        assert_eq!(from_file.images_allowed, defaults.images_allowed);
        assert_eq!(from_file.warm_pool_per_image, defaults.warm_pool_per_image);
        assert_eq!(from_file.max_neighbours, defaults.max_neighbours);
        assert_eq!(from_file.import.max_bytes, defaults.import.max_bytes);
        assert_eq!(from_file.import.max_layers, defaults.import.max_layers);
        assert_eq!(from_file.import.registry.insecure, defaults.import.registry.insecure);
    }

    #[test]
    fn the_output_budget_follows_the_cores_and_may_be_switched_off() {
        assert_eq!(resolve(&[]).unwrap().output_rate, default_output_rate());
        assert!(default_output_rate() >= defaults::OUTPUT_RATE_PER_CORE);
        assert_eq!(resolve(&["--output-rate", "0"]).unwrap().output_rate, 0);
        assert_eq!(resolve(&["--output-rate", "2M"]).unwrap().output_rate, 2 << 20);
        assert_eq!(resolve(&["--output-rate", "1K"]).unwrap_err().key, "output_rate");
        assert_eq!(resolve(&["--output-rate", "fast"]).unwrap_err().key, "output_rate");
    }

    #[test]
    fn image_settings_are_checked() {
        let s = resolve(&["--image", "busybox", "--images-allowed", "a,b-1"]).unwrap();
        assert_eq!(s.image.as_deref(), Some("busybox"));
        assert_eq!(s.images_allowed, ["a", "b-1"]);
        let builtin = crate::lessons::Catalog::builtin(crate::lessons::Hierarchy::V1);
        assert_eq!(s.images_in_use(&builtin.get()), ["a", "b-1", "busybox"]);
        assert_eq!(resolve(&["--image", "Bad/Name"]).unwrap_err().key, "image");
        assert_eq!(resolve(&["--images-allowed", "../x"]).unwrap_err().key, "images_allowed");
        assert_eq!(resolve(&["--max-image-layers", "0"]).unwrap_err().key, "max_image_layers");
        assert_eq!(resolve(&[]).unwrap().max_neighbours, defaults::MAX_NEIGHBOURS);
        assert_eq!(resolve(&["--max-neighbours", "200"]).unwrap().max_neighbours, 200);
        assert_eq!(resolve(&["--max-neighbours", "15"]).unwrap_err().key, "max_neighbours");
        assert_eq!(resolve(&[]).unwrap().file_table_end_percent, 90);
        assert_eq!(resolve(&["--file-table-end-percent", "1"]).unwrap().file_table_end_percent, 1);
        assert_eq!(resolve(&["--file-table-end-percent", "0"]).unwrap_err().key, "file_table_end_percent");
        assert_eq!(resolve(&["--max-image-size", "lots"]).unwrap_err().key, "max_image_size");
        assert_eq!(resolve(&["--registry-auth-file", "auth.json"]).unwrap_err().key, "registry_auth_file");
        assert_eq!(resolve(&[]).unwrap().import.max_bytes, 2 << 30);
    }

    #[test]
    fn classroom_settings_are_checked_and_the_token_never_echoed() {
        let s = resolve(&[]).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/nsplay"));
        assert!(s.open);
        assert_eq!(s.admin_token, None);
        let s = resolve(&["--data-dir", "/tmp/x", "--open", "false", "--admin-token", "0123456789abcdef"]).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert!(!s.open);
        assert_eq!(s.admin_token.as_ref().map(|t| t.0.as_str()), Some("0123456789abcdef"));
        assert!(!format!("{s:?}").contains("0123456789abcdef"), "Debug hides the token");
        assert_eq!(resolve(&["--data-dir", "relative"]).unwrap_err().key, "data_dir");
        let e = resolve(&["--admin-token", "short-secret"]).unwrap_err();
        assert_eq!(e.key, "admin_token");
        assert!(!e.to_string().contains("short-secret"), "{e}");
    }

    #[test]
    fn node_names_are_dns_labels_and_default_to_the_host_name() {
        assert_eq!(resolve(&["--node", "eu-1"]).unwrap().node, "eu-1");
        for bad in ["EU", "a.b", "-a", "a-", "", "a_b", &"x".repeat(64)] {
            let arg = format!("--node={bad}");
            assert_eq!(resolve(&[&arg]).unwrap_err().key, "node", "{bad:?}");
        }
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        let first = host.split('.').next().unwrap().to_ascii_lowercase();
        assert_eq!(resolve(&[]).unwrap().node, first);
        assert!(valid_node(&first), "this machine's host name {host:?} makes a node name");
    }

    #[test]
    fn the_kubernetes_config_map_is_a_valid_nsplay_toml_that_drains_within_the_grace_period() {
        let f = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/nsplay.toml");
        let s = resolve(&["--config", f]).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:8080", "the port of the StatefulSet and the Services");
        let sts = include_str!("../deploy/k8s/statefulset.yaml");
        let grace: u64 = sts
            .lines()
            .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("the StatefulSet sets terminationGracePeriodSeconds");
        assert!(
            Duration::from_secs(grace) > s.drain_timeout + s.shutdown_timeout,
            "the kubelet would kill a draining pod: {grace} s <= {:?} + {:?}",
            s.drain_timeout,
            s.shutdown_timeout
        );
        assert!(sts.contains("containerPort: 8080") && sts.contains("/etc/nsplay/nsplay.toml"));
    }

    #[test]
    fn the_database_url_is_postgres_or_sqlite_and_stuck_after_a_duration() {
        assert_eq!(resolve(&[]).unwrap().database_url, None);
        let pg = "postgres://nsplay:pw@db:5432/nsplay";
        assert_eq!(resolve(&["--database-url", pg]).unwrap().database_url, Some(DatabaseUrl(pg.into())));
        let e = resolve(&["--database-url", "mysql://u:secret@h/db"]).unwrap_err();
        assert_eq!(e.key, "database_url");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(!format!("{:?}", DatabaseUrl(pg.into())).contains("pw"));
        assert_eq!(resolve(&[]).unwrap().stuck_after, Duration::from_secs(600));
        assert_eq!(resolve(&["--stuck-after", "3m"]).unwrap().stuck_after, Duration::from_secs(180));
    }

    #[test]
    fn drain_timeout_is_a_duration_defaulting_to_a_minute() {
        assert_eq!(resolve(&[]).unwrap().drain_timeout, Duration::from_secs(60));
        assert_eq!(resolve(&["--drain-timeout", "5s"]).unwrap().drain_timeout, Duration::from_secs(5));
        assert_eq!(resolve(&["--drain-timeout", "0s"]).unwrap_err().key, "drain_timeout");
    }
}
