//! Resource limits of one session (memory, pids, CPU, disk, /dev/shm): parsing from what people
//! type (`256M`, `0.5`), and the ranges nsplay accepts.

use serde::{Deserialize, Serialize};

/// Limits of one session. Every session gets all of them; there is no "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u64,
    /// CPU in cores (0.5 = half of one core), enforced as a CFS quota per 100 ms period.
    pub cpu: f64,
    pub disk_bytes: u64,
    pub shm_bytes: u64,
}

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// The smallest memory, process and CPU limits a session works with (a classroom room may
/// tighten the server's down to these).
pub const MIN_MEMORY_BYTES: u64 = 32 * MIB;
pub const MIN_PIDS: u64 = 8;
pub const MIN_CPU: f64 = 0.01;

/// The CFS period nsplay uses; the quota is `cpu * CPU_PERIOD_US`.
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LimitError {
    #[error("{what} `{value}` is not a size: write a number with an optional unit, like 256M, 1G or 65536")]
    NotASize { what: &'static str, value: String },
    #[error("{what} `{value}` is not a number: write a decimal like 0.5 or 2")]
    NotANumber { what: &'static str, value: String },
    #[error("{what} {value} is out of range: allowed is {min} to {max}")]
    OutOfRange { what: &'static str, value: String, min: String, max: String },
}

/// Parses `256M`, `64MiB`, `1g`, `512k`, `1048576` into bytes (binary units).
pub fn parse_size(what: &'static str, text: &str) -> Result<u64, LimitError> {
    let err = || LimitError::NotASize { what, value: text.to_string() };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

/// Formats bytes the way people read limits: `256 MiB`.
pub fn format_size(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

pub fn parse_cpu(text: &str) -> Result<f64, LimitError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|c| c.is_finite())
        .ok_or_else(|| LimitError::NotANumber { what: "cpu", value: text.to_string() })
}

impl Limits {
    /// Checks every limit against what the sandbox can honour. Too small breaks the shell, too
    /// large defeats the point of a limit on a shared machine.
    pub fn validate(&self) -> Result<(), LimitError> {
        let size = |what, v: u64, min: u64, max: u64| {
            if v < min || v > max {
                Err(LimitError::OutOfRange {
                    what,
                    value: format_size(v),
                    min: format_size(min),
                    max: format_size(max),
                })
            } else {
                Ok(())
            }
        };
        size("memory", self.memory_bytes, MIN_MEMORY_BYTES, 64 * GIB)?;
        size("disk", self.disk_bytes, 4 * MIB, 16 * GIB)?;
        size("shm", self.shm_bytes, MIB, 4 * GIB)?;
        if !(MIN_PIDS..=65536).contains(&self.pids) {
            return Err(LimitError::OutOfRange {
                what: "pids",
                value: self.pids.to_string(),
                min: "8".into(),
                max: "65536".into(),
            });
        }
        if !(MIN_CPU..=256.0).contains(&self.cpu) {
            return Err(LimitError::OutOfRange {
                what: "cpu",
                value: self.cpu.to_string(),
                min: "0.01".into(),
                max: "256".into(),
            });
        }
        Ok(())
    }

    /// These limits, lowered to `to`'s memory, processes and CPU wherever `to`'s are lower
    /// (disk and shm stay: they are sizes of mounts made when the session was built).
    pub fn tightened(&self, to: &Limits) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes.min(to.memory_bytes),
            pids: self.pids.min(to.pids),
            cpu: self.cpu.min(to.cpu),
            ..*self
        }
    }

    pub fn cpu_quota_us(&self) -> u64 {
        ((self.cpu * CPU_PERIOD_US as f64).round() as u64).max(1000)
    }

    /// Inodes allowed in the session's tmpfs root: one per KiB of disk, so "a million empty
    /// files" hits ENOSPC long before it costs the host real memory.
    pub fn disk_inodes(&self) -> u64 {
        (self.disk_bytes / KIB).max(4096)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("memory", "256M"), Ok(256 * MIB));
        assert_eq!(parse_size("memory", "64MiB"), Ok(64 * MIB));
        assert_eq!(parse_size("memory", "1g"), Ok(GIB));
        assert_eq!(parse_size("memory", "512k"), Ok(512 * KIB));
        assert_eq!(parse_size("memory", "4096"), Ok(4096));
        assert!(matches!(parse_size("memory", "lots"), Err(LimitError::NotASize { .. })));
        assert!(matches!(parse_size("memory", "12T"), Err(LimitError::NotASize { .. })));
        assert!(matches!(parse_size("memory", "-1M"), Err(LimitError::NotASize { .. })));
        assert!(matches!(parse_size("memory", "99999999999999999999G"), Err(LimitError::NotASize { .. })));
    }

    /// Valid limits to vary one at a time (the defaults are the server's, in its config).
    const VALID: Limits =
        Limits { memory_bytes: 256 * MIB, pids: 128, cpu: 0.5, disk_bytes: 64 * MIB, shm_bytes: 16 * MIB };

    #[test]
    fn tightening_only_ever_lowers_and_keeps_the_mount_sizes() {
        let to = Limits { memory_bytes: 64 * MIB, pids: 256, cpu: 0.25, disk_bytes: 8 * MIB, shm_bytes: GIB };
        let t = VALID.tightened(&to);
        assert_eq!(t, Limits { memory_bytes: 64 * MIB, pids: 128, cpu: 0.25, ..VALID });
        assert_eq!(VALID.tightened(&VALID), VALID);
    }

    #[test]
    fn valid_limits_pass() {
        VALID.validate().unwrap();
        assert_eq!(VALID.cpu_quota_us(), 50_000);
    }

    #[test]
    fn out_of_range_limits_are_refused_with_the_range() {
        let l = Limits { memory_bytes: MIB, ..VALID };
        let e = l.validate().unwrap_err();
        assert_eq!(e.to_string(), "memory 1 MiB is out of range: allowed is 32 MiB to 64 GiB");
        let l = Limits { pids: 2, ..VALID };
        assert!(l.validate().is_err());
        let l = Limits { cpu: 0.0, ..VALID };
        assert!(l.validate().is_err());
        assert!(parse_cpu("NaN").is_err());
        assert!(parse_cpu("half").is_err());
        assert_eq!(parse_cpu("1.5"), Ok(1.5));
    }
}
