//! Who may start a session now: a global cap, the memory all sessions really use against their
//! group's limit, a cap and a creation rate per *requester* (a learner's identity, or the client
//! address of a request without one), and a much higher cap and rate per client address (a room
//! of learners behind one NAT). Rates are token buckets from `governor`. Refusals say how long
//! to wait.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use nsplay_sandbox::SessionsMemory;

/// A learner: the random identity the web layer keeps in a browser's cookie. Opaque here; it
/// only groups the sessions one learner started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Learner(pub u128);

/// Who asks for a session: the client address, and the learner when the request carried one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    pub address: IpAddr,
    pub learner: Option<Learner>,
}

impl Requester {
    pub fn anonymous(address: IpAddr) -> Requester {
        Requester { address, learner: None }
    }

    /// What the per-requester cap and rate count by.
    fn key(&self) -> Key {
        match self.learner {
            Some(l) => Key::Learner(l),
            None => Key::Address(self.address),
        }
    }

    /// Whether `other` counts against this requester's own cap.
    pub fn same(&self, other: &Requester) -> bool {
        self.key() == other.key()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Learner(Learner),
    Address(IpAddr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Every slot is taken; try again after the given wait.
    Full { max: usize, retry_after: Duration },
    /// All sessions together use nearly their memory limit (`percent` of it).
    Memory { percent: u8, retry_after: Duration },
    /// This learner (or address without an identity) already has its share of sessions.
    ClientCap { max: usize, retry_after: Duration },
    /// This client address already has its share (every learner behind it together).
    AddressCap { max: usize, retry_after: Duration },
    /// This learner, or this address, creates sessions too fast.
    RateLimited { retry_after: Duration },
    /// The host's file table (`fs.file-max`) is nearly full.
    Files { retry_after: Duration },
}

/// New sessions are refused once the host's file table is this full (percent of `fs.file-max`):
/// what bounds the sessions together where their per-process limits alone cannot (see
/// `config::open_files`). nsplay itself, as root, may go past `fs.file-max`.
pub const FILES_ADMIT_PERCENT: u64 = 80;

/// The host's open files against `fs.file-max` (`/proc/sys/fs/file-nr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFiles {
    pub open: u64,
    pub max: u64,
}

impl HostFiles {
    /// Reads the host's counts; `None` where `/proc/sys/fs/file-nr` cannot be read.
    pub fn read() -> Option<HostFiles> {
        HostFiles::parse(&std::fs::read_to_string("/proc/sys/fs/file-nr").ok()?)
    }

    /// `file-nr` is "allocated, free (always 0 since 2.6), max".
    fn parse(text: &str) -> Option<HostFiles> {
        let v: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        match v[..] {
            [open, _, max] if max > 0 => Some(HostFiles { open, max }),
            _ => None,
        }
    }

    pub fn nearly_full(&self) -> bool {
        self.open as u128 * 100 >= self.max as u128 * FILES_ADMIT_PERCENT as u128
    }
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Full { .. } => "full",
            Refusal::Memory { .. } => "memory",
            Refusal::ClientCap { .. } => "client_cap",
            Refusal::AddressCap { .. } => "address_cap",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Files { .. } => "files",
        }
    }
    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::Full { retry_after, .. }
            | Refusal::Memory { retry_after, .. }
            | Refusal::ClientCap { retry_after, .. }
            | Refusal::AddressCap { retry_after, .. }
            | Refusal::RateLimited { retry_after }
            | Refusal::Files { retry_after } => *retry_after,
        }
    }
}

/// A refusal in words comes from the catalog (`refused_*` in `web/ui.toml`).
impl crate::text::Message for Refusal {
    fn key(&self) -> &'static str {
        match self {
            Refusal::Full { .. } => "refused_full",
            Refusal::Memory { .. } => "refused_memory",
            Refusal::ClientCap { .. } => "refused_client_cap",
            Refusal::AddressCap { .. } => "refused_address_cap",
            Refusal::RateLimited { .. } => "refused_rate",
            Refusal::Files { .. } => "refused_files",
        }
    }

    fn args(&self) -> Vec<(&'static str, String)> {
        let seconds = ("seconds", self.retry_after().as_secs().max(1).to_string());
        match self {
            Refusal::Full { max, .. } | Refusal::ClientCap { max, .. } | Refusal::AddressCap { max, .. } => {
                vec![("max", max.to_string()), seconds]
            }
            Refusal::Memory { .. } | Refusal::RateLimited { .. } | Refusal::Files { .. } => vec![seconds],
        }
    }
}

/// The numbers one decision is made on (counted by the manager, under its lock).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Sessions live or being started.
    pub live: usize,
    /// Of those, the requester's own (its learner's, or its address's without an identity).
    pub mine: usize,
    /// Of those, every one from the requester's address.
    pub address: usize,
}

/// Settings of [`Admission`].
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub max_sessions: usize,
    pub per_client: usize,
    pub per_minute: u32,
    pub burst: u32,
    pub per_address: usize,
    pub address_per_minute: u32,
    pub address_burst: u32,
    /// Refuse once the sessions' group uses this percent of its memory limit.
    pub memory_percent: u8,
}

/// Rate limiters keep one entry per key seen recently; past this many they drop the stale ones.
const LIMITER_KEYS: usize = 10_000;

pub struct Admission {
    rules: Rules,
    limiter: DefaultKeyedRateLimiter<Key>,
    address_limiter: DefaultKeyedRateLimiter<IpAddr>,
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("at least one"))
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"))
}

fn rate_refusal(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> Refusal {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    Refusal::RateLimited { retry_after: wait.max(Duration::from_secs(1)) }
}

impl Admission {
    pub fn new(rules: Rules) -> Admission {
        Admission {
            rules,
            limiter: governor::RateLimiter::keyed(quota(rules.per_minute, rules.burst)),
            address_limiter: governor::RateLimiter::keyed(quota(rules.address_per_minute, rules.address_burst)),
        }
    }

    /// Whether all sessions together are near their memory limit.
    pub fn memory_full(&self, memory: SessionsMemory) -> bool {
        let threshold = (memory.limit_bytes as u128 * self.rules.memory_percent as u128 / 100) as u64;
        memory.used_bytes >= threshold
    }

    /// Decides on one creation by `who`, given the current counts and the sessions' memory use.
    pub fn admit(
        &self,
        who: &Requester,
        counts: Counts,
        memory: SessionsMemory,
        files: Option<HostFiles>,
    ) -> Result<(), Refusal> {
        let r = &self.rules;
        if counts.live >= r.max_sessions {
            // Sessions end by idling out or being closed; a short wait is a fair guess.
            return Err(Refusal::Full { max: r.max_sessions, retry_after: Duration::from_secs(30) });
        }
        if self.memory_full(memory) {
            return Err(Refusal::Memory { percent: r.memory_percent, retry_after: Duration::from_secs(30) });
        }
        if files.is_some_and(|f| f.nearly_full()) {
            return Err(Refusal::Files { retry_after: Duration::from_secs(30) });
        }
        if counts.mine >= r.per_client {
            return Err(Refusal::ClientCap { max: r.per_client, retry_after: Duration::from_secs(60) });
        }
        if counts.address >= r.per_address {
            return Err(Refusal::AddressCap { max: r.per_address, retry_after: Duration::from_secs(60) });
        }
        // The address first: identities a client mints then reach the per-learner limiter (and
        // its map) no faster than the address's rate.
        self.address_limiter.check_key(&who.address).map_err(rate_refusal)?;
        self.limiter.check_key(&who.key()).map_err(rate_refusal)?;
        // Keep the limiters' memory bounded to requesters seen recently.
        if self.limiter.len() > LIMITER_KEYS {
            self.limiter.retain_recent();
        }
        if self.address_limiter.len() > LIMITER_KEYS {
            self.address_limiter.retain_recent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nearly_full_file_table_refuses_and_file_nr_is_read_as_the_kernel_writes_it() {
        let f = HostFiles::parse("1952\t0\t2466126\n").unwrap();
        assert_eq!(f, HostFiles { open: 1952, max: 2466126 });
        assert!(!f.nearly_full());
        assert!(HostFiles::parse("garbage").is_none());
        assert!(HostFiles::read().is_some(), "this host has /proc/sys/fs/file-nr");
        let a = Admission::new(rules());
        let ip = Requester::anonymous("192.0.2.1".parse().unwrap());
        let full = HostFiles { open: 81, max: 100 };
        assert!(matches!(a.admit(&ip, c(0, 0), ROOM, Some(full)), Err(Refusal::Files { .. })));
        assert!(a.admit(&ip, c(0, 0), ROOM, Some(HostFiles { open: 79, max: 100 })).is_ok());
    }

    fn rules() -> Rules {
        Rules {
            max_sessions: 2,
            per_client: 1,
            per_minute: 60,
            burst: 2,
            per_address: 1000,
            address_per_minute: 600,
            address_burst: 1000,
            memory_percent: 90,
        }
    }

    const ROOM: SessionsMemory = SessionsMemory { used_bytes: 0, limit_bytes: 1 << 30 };

    fn c(live: usize, mine: usize) -> Counts {
        Counts { live, mine, address: mine }
    }

    #[test]
    fn caps_and_rate_are_enforced_with_a_wait() {
        let a = Admission::new(rules());
        let ip = Requester::anonymous("192.0.2.1".parse().unwrap());
        let other = Requester::anonymous("192.0.2.2".parse().unwrap());
        assert!(a.admit(&ip, c(0, 0), ROOM, None).is_ok());
        assert!(matches!(a.admit(&ip, c(1, 1), ROOM, None), Err(Refusal::ClientCap { max: 1, .. })));
        assert!(matches!(a.admit(&other, c(2, 0), ROOM, None), Err(Refusal::Full { max: 2, .. })));
        assert!(a.admit(&ip, c(0, 0), ROOM, None).is_ok());
        let r = a.admit(&ip, c(0, 0), ROOM, None).unwrap_err();
        assert_eq!(r.reason(), "rate_limited");
        assert!(r.retry_after() >= Duration::from_secs(1));
        assert!(a.admit(&other, c(0, 0), ROOM, None).is_ok(), "another client has its own bucket");
    }

    #[test]
    fn learners_behind_one_address_each_have_their_own_cap_and_rate_under_the_address_bound() {
        let a = Admission::new(Rules { per_address: 3, address_burst: 1000, ..rules() });
        let nat: IpAddr = "198.51.100.1".parse().unwrap();
        let learner = |n| Requester { address: nat, learner: Some(Learner(n)) };
        for n in 0..3 {
            let counts = Counts { live: 0, mine: 0, address: n as usize };
            assert!(a.admit(&learner(n), counts, ROOM, None).is_ok(), "learner {n}");
            // The same learner's burst is its own: a second and third each.
            assert!(a.admit(&learner(n), counts, ROOM, None).is_ok());
            assert!(a.admit(&learner(n), counts, ROOM, None).is_err(), "burst 2 per learner");
        }
        let r = a.admit(&learner(9), Counts { live: 0, mine: 0, address: 3 }, ROOM, None).unwrap_err();
        assert!(matches!(r, Refusal::AddressCap { max: 3, .. }), "{r:?}");
        assert!(!learner(1).same(&learner(2)));
        assert!(!learner(1).same(&Requester::anonymous(nat)));
        // The address's own rate bounds identities minted by one client.
        let a = Admission::new(Rules { address_burst: 2, ..rules() });
        assert!(a.admit(&learner(1), c(0, 0), ROOM, None).is_ok());
        assert!(a.admit(&learner(2), c(0, 0), ROOM, None).is_ok());
        assert_eq!(a.admit(&learner(3), c(0, 0), ROOM, None).unwrap_err().reason(), "rate_limited");
    }

    #[test]
    fn memory_near_the_limit_refuses_and_below_it_admits() {
        let a = Admission::new(Rules { max_sessions: 100, per_client: 100, burst: 100, ..rules() });
        let who = Requester::anonymous("192.0.2.1".parse().unwrap());
        let used = |mib: u64| SessionsMemory { used_bytes: mib << 20, limit_bytes: 1000 << 20 };
        assert!(a.admit(&who, c(0, 0), used(899), None).is_ok());
        let r = a.admit(&who, c(0, 0), used(900), None).unwrap_err();
        assert!(matches!(r, Refusal::Memory { percent: 90, .. }), "{r:?}");
        assert!(a.admit(&who, c(0, 0), SessionsMemory { used_bytes: 1 << 40, limit_bytes: u64::MAX }, None).is_ok());
    }
}
