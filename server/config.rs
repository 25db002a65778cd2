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
    pub warm_pool: Option<usize>,
    pub create_per_minute: Option<u32>,
    pub create_burst: Option<u32>,
    pub idle_timeout: Option<String>,
    pub max_age: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub grace: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub nested_userns: Option<bool>,
    pub log_format: Option<String>,
    pub node: Option<String>,
    pub drain_timeout: Option<String>,
}

/// Every default, written once. `Settings::resolve`, the `--help` texts of `nsplay serve`, the
/// flags of `nsplay run` and the test against `deploy/nsplay.toml` all read them here. Values
/// are in the form the TOML file and the flags take them.
pub mod defaults {
    #[cfg(test)]
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
    pub const IDLE_TIMEOUT: &str = "15m";
    pub const MAX_AGE: &str = "2h";
    pub const SHUTDOWN_TIMEOUT: &str = "10s";
    pub const GRACE: &str = "10s";
    pub const NESTED_USERNS: bool = true;
    pub const LOG_FORMAT: &str = "text";
    /// The node name defaults to the machine's host name (its first label; see `config::node`).
    pub const NODE: &str = "the host name";
    pub const DRAIN_TIMEOUT: &str = "60s";

    /// The default limits of a session, as `nsplay serve` and `nsplay run` resolve them (the
    /// tests compare with these).
    #[cfg(test)]
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
    pub warm_pool: usize,
    pub create_per_minute: u32,
    pub create_burst: u32,
    pub idle_timeout: Duration,
    pub max_age: Duration,
    pub shutdown_timeout: Duration,
    /// How long a session whose every terminal has ended is kept.
    pub grace: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins of other sites' pages that may drive the API from a browser (besides nsplay's
    /// own pages): `scheme://host[:port]`, lower case.
    pub allowed_origins: Vec<String>,
    pub nested_userns: bool,
    pub log_format: String,
    /// This node's name: the first part of every session id, so that a proxy routes each
    /// session's requests to the node that owns it (docs/scale-out.md).
    pub node: String,
    /// How long a SIGTERM waits for learners to finish before their sessions end.
    pub drain_timeout: Duration,
}

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

/// A default cap that the machine can actually hold: 80 % of RAM over the memory limit, and no
/// more sessions than id ranges.
pub fn default_max_sessions(memory_limit: u64, id_slots: u32) -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(4 << 30);
    ((total / 10 * 8) / memory_limit.max(1)).clamp(1, id_slots as u64) as usize
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
            warm_pool: f.warm_pool.or(self.warm_pool),
            create_per_minute: f.create_per_minute.or(self.create_per_minute),
            create_burst: f.create_burst.or(self.create_burst),
            idle_timeout: f.idle_timeout.or(self.idle_timeout),
            max_age: f.max_age.or(self.max_age),
            shutdown_timeout: f.shutdown_timeout.or(self.shutdown_timeout),
            grace: f.grace.or(self.grace),
            trusted_proxies: f.trusted_proxies.or(self.trusted_proxies),
            allowed_origins: f.allowed_origins.or(self.allowed_origins),
            nested_userns: f.nested_userns.or(self.nested_userns),
            log_format: f.log_format.or(self.log_format),
            node: f.node.or(self.node),
            drain_timeout: f.drain_timeout.or(self.drain_timeout),
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
    Ok(SandboxConfig { id_base, id_slots, cgroup_parent, state_dir })
}

/// Caps, warm pool and creation rate.
struct AdmissionSettings {
    max_sessions: usize,
    per_client: usize,
    warm_pool: usize,
    per_minute: u32,
    burst: u32,
}

fn admission(raw: &FileConfig, memory: u64, id_slots: u32) -> Result<AdmissionSettings, ConfigError> {
    let max_sessions = raw.max_sessions.unwrap_or_else(|| default_max_sessions(memory, id_slots));
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
    Ok(AdmissionSettings { max_sessions, per_client, warm_pool, per_minute, burst })
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

fn allowed_origins(raw: &FileConfig) -> Result<Vec<String>, ConfigError> {
    let origins = raw.allowed_origins.as_deref().unwrap_or_default();
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
                Err(bad("allowed_origins", o, "origins such as https://docs.example.org or http://localhost:3000"))
            }
        })
        .collect()
}

fn log_format(raw: &FileConfig) -> Result<String, ConfigError> {
    let log_format = or_default(&raw.log_format, defaults::LOG_FORMAT);
    if log_format != "text" && log_format != "json" {
        return Err(bad("log_format", &log_format, "text or json"));
    }
    Ok(log_format)
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
        let admission = admission(&raw, limits.memory_bytes, sandbox.id_slots)?;
        let lifecycle = lifecycle(&raw)?;
        Ok(Settings {
            listen,
            limits,
            hostname,
            sandbox,
            max_sessions: admission.max_sessions,
            max_sessions_per_client: admission.per_client,
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
            node: node(&raw)?,
            drain_timeout: duration("drain_timeout", &or_default(&raw.drain_timeout, defaults::DRAIN_TIMEOUT))?,
        })
    }

    /// What the session manager needs of these settings.
    pub fn manager_config(&self) -> ManagerConfig {
        ManagerConfig {
            limits: self.limits,
            max_sessions: self.max_sessions,
            max_sessions_per_client: self.max_sessions_per_client,
            warm_pool: self.warm_pool,
            create_per_minute: self.create_per_minute,
            create_burst: self.create_burst,
            max_age: self.max_age,
            idle_timeout: self.idle_timeout,
            grace: self.grace,
            hostname: self.hostname.clone(),
            node: self.node.clone(),
        }
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
        assert!(s.nested_userns);
        assert!(s.max_sessions >= 1);
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
    fn grace_is_a_setting_like_the_others() {
        assert_eq!(resolve(&["--grace", "3s"]).unwrap().grace, Duration::from_secs(3));
        assert_eq!(resolve(&["--grace", "never"]).unwrap_err().key, "grace");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.toml");
        std::fs::write(&f, "grace = \"1m\"\n").unwrap();
        assert_eq!(resolve(&["--config", f.to_str().unwrap()]).unwrap().grace, Duration::from_secs(60));
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
            .filter(|l| !l.starts_with("max_sessions =") && !l.starts_with("node ="))
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
        assert_eq!(from_file.drain_timeout, defaults.drain_timeout);
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
    fn drain_timeout_is_a_duration_defaulting_to_a_minute() {
        assert_eq!(resolve(&[]).unwrap().drain_timeout, Duration::from_secs(60));
        assert_eq!(resolve(&["--drain-timeout", "5s"]).unwrap().drain_timeout, Duration::from_secs(5));
        assert_eq!(resolve(&["--drain-timeout", "0s"]).unwrap_err().key, "drain_timeout");
    }
}
