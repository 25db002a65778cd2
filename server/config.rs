//! Server settings: defaults, overridden by a TOML file (`--config`), overridden by `NSPLAY_*`
//! environment variables and command-line flags. Every setting is documented with its default in
//! `deploy/nsplay.toml`. A wrong value stops the start with one line naming the key, the value
//! and what is allowed.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cli::ServeArgs;
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
    pub trusted_proxies: Option<Vec<String>>,
    pub nested_userns: Option<bool>,
    pub log_format: Option<String>,
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
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub nested_userns: bool,
    pub log_format: String,
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

impl Settings {
    /// Defaults ← file ← environment/flags (clap has already merged those two).
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("config", path.display(), format!("a readable TOML file ({e})")))?;
                toml::from_str(&text).map_err(|e| {
                    let msg = e.message().to_string();
                    let key = msg.split('`').nth(1).unwrap_or("config").to_string();
                    bad(&key, path.display(), msg)
                })?
            }
            None => FileConfig::default(),
        };
        let pick_s = |cli: &Option<String>, f: &Option<String>, d: &str| {
            cli.clone().or_else(|| f.clone()).unwrap_or(d.to_string())
        };

        let listen_s = pick_s(&args.listen, &file.listen, "127.0.0.1:8080");
        let listen =
            listen_s.parse().map_err(|_| bad("listen", &listen_s, "an address with a port, such as 127.0.0.1:8080"))?;
        let memory = size("memory", &pick_s(&args.memory, &file.memory, "256M"))?;
        let disk = size("disk", &pick_s(&args.disk, &file.disk, "64M"))?;
        let shm = size("shm", &pick_s(&args.shm, &file.shm, "16M"))?;
        let pids = args.pids.or(file.pids).unwrap_or(128);
        let cpu = args.cpu.or(file.cpu).unwrap_or(0.5);
        let limits = Limits { memory_bytes: memory, pids, cpu, disk_bytes: disk, shm_bytes: shm };
        limits.validate().map_err(|e| match e {
            nsplay_sandbox::LimitError::OutOfRange { what, value, min, max } => {
                bad(what, value, format!("from {min} to {max}"))
            }
            other => bad("limits", "", other.to_string()),
        })?;
        let hostname = pick_s(&args.hostname, &file.hostname, "nsplay");
        if !nsplay_sandbox::valid_hostname(&hostname) {
            return Err(bad("hostname", &hostname, "letters, digits and dashes, at most 63"));
        }
        let id_base = args.id_base.or(file.id_base).unwrap_or(1_000_000_000);
        let id_slots = args.id_slots.or(file.id_slots).unwrap_or(4096);
        nsplay_sandbox::IdAllocator::new(id_base, id_slots).map_err(|e| bad("id_base", id_base, e.to_string()))?;
        let cgroup_parent = args.cgroup_parent.clone().or(file.cgroup_parent.clone());
        if let Some(p) = &cgroup_parent
            && (p.split('/').any(|c| c == ".." || c == ".") || p.trim_matches('/').is_empty())
        {
            return Err(bad("cgroup_parent", p, "a path below the cgroup root, such as nsplay"));
        }
        let state_dir = PathBuf::from(pick_s(&args.state_dir, &file.state_dir, "/run/nsplay"));
        if !state_dir.is_absolute() {
            return Err(bad("state_dir", state_dir.display(), "an absolute path"));
        }
        let max_sessions =
            args.max_sessions.or(file.max_sessions).unwrap_or_else(|| default_max_sessions(memory, id_slots));
        if max_sessions == 0 || max_sessions > id_slots as usize {
            return Err(bad("max_sessions", max_sessions, format!("1 to id_slots ({id_slots})")));
        }
        let max_sessions_per_client = args.max_sessions_per_client.or(file.max_sessions_per_client).unwrap_or(3);
        if max_sessions_per_client == 0 {
            return Err(bad("max_sessions_per_client", 0, "1 or more"));
        }
        let warm_pool = args.warm_pool.or(file.warm_pool).unwrap_or(4);
        if warm_pool > MAX_WARM_POOL {
            return Err(bad("warm_pool", warm_pool, format!("0 to {MAX_WARM_POOL}")));
        }
        let create_per_minute = args.create_per_minute.or(file.create_per_minute).unwrap_or(10);
        let create_burst = args.create_burst.or(file.create_burst).unwrap_or(5);
        if create_per_minute == 0 || create_burst == 0 {
            return Err(bad("create_per_minute", create_per_minute, "1 or more (and create_burst 1 or more)"));
        }
        let idle_timeout = duration("idle_timeout", &pick_s(&args.idle_timeout, &file.idle_timeout, "15m"))?;
        let max_age = duration("max_age", &pick_s(&args.max_age, &file.max_age, "2h"))?;
        let shutdown_timeout =
            duration("shutdown_timeout", &pick_s(&args.shutdown_timeout, &file.shutdown_timeout, "10s"))?;
        let proxies = args.trusted_proxies.clone().or(file.trusted_proxies.clone()).unwrap_or_default();
        let trusted_proxies = proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>().or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from)).map_err(|_| {
                    bad("trusted_proxies", p, "IP addresses or CIDR ranges, such as 10.0.0.1 or 10.0.0.0/8")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nested_userns = args.nested_userns.or(file.nested_userns).unwrap_or(true);
        let log_format = pick_s(&args.log_format, &file.log_format, "text");
        if log_format != "text" && log_format != "json" {
            return Err(bad("log_format", &log_format, "text or json"));
        }
        Ok(Settings {
            listen,
            limits,
            hostname,
            sandbox: SandboxConfig { id_base, id_slots, cgroup_parent, state_dir },
            max_sessions,
            max_sessions_per_client,
            warm_pool,
            create_per_minute,
            create_burst,
            idle_timeout,
            max_age,
            shutdown_timeout,
            trusted_proxies,
            nested_userns,
            log_format,
        })
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
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.idle_timeout, Duration::from_secs(15 * 60));
        assert_eq!(s.max_age, Duration::from_secs(2 * 3600));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(s.max_sessions_per_client, 3);
        assert!(s.nested_userns);
        assert!(s.max_sessions >= 1);
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
            .filter(|l| !l.starts_with("max_sessions ="))
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
    }
}
