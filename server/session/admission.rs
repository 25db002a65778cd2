//! Who may start a session now: a global cap, a cap per client address, and a creation rate per
//! client (a token bucket from `governor`). Refusals say how long to wait.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Every slot is taken; try again after the given wait.
    Full { max: usize, retry_after: Duration },
    /// This client already has its share of sessions.
    ClientCap { max: usize, retry_after: Duration },
    /// This client creates sessions too fast.
    RateLimited { retry_after: Duration },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Full { .. } => "full",
            Refusal::ClientCap { .. } => "client_cap",
            Refusal::RateLimited { .. } => "rate_limited",
        }
    }
    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::Full { retry_after, .. }
            | Refusal::ClientCap { retry_after, .. }
            | Refusal::RateLimited { retry_after } => *retry_after,
        }
    }
}

/// A refusal in words comes from the catalog (`refused_*` in `web/ui.toml`).
impl crate::text::Message for Refusal {
    fn key(&self) -> &'static str {
        match self {
            Refusal::Full { .. } => "refused_full",
            Refusal::ClientCap { .. } => "refused_client_cap",
            Refusal::RateLimited { .. } => "refused_rate",
        }
    }

    fn args(&self) -> Vec<(&'static str, String)> {
        let seconds = ("seconds", self.retry_after().as_secs().max(1).to_string());
        match self {
            Refusal::Full { max, .. } | Refusal::ClientCap { max, .. } => vec![("max", max.to_string()), seconds],
            Refusal::RateLimited { .. } => vec![seconds],
        }
    }
}

pub struct Admission {
    max_sessions: usize,
    per_client: usize,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Admission {
    pub fn new(max_sessions: usize, per_client: usize, per_minute: u32, burst: u32) -> Admission {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("at least one"))
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"));
        Admission { max_sessions, per_client, limiter: governor::RateLimiter::keyed(quota) }
    }

    /// Decides on one creation; `live` and `client_live` are the current counts.
    pub fn admit(&self, client: IpAddr, live: usize, client_live: usize) -> Result<(), Refusal> {
        if live >= self.max_sessions {
            // Sessions end by idling out or being closed; a short wait is a fair guess.
            return Err(Refusal::Full { max: self.max_sessions, retry_after: Duration::from_secs(30) });
        }
        if client_live >= self.per_client {
            return Err(Refusal::ClientCap { max: self.per_client, retry_after: Duration::from_secs(60) });
        }
        self.limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Refusal::RateLimited { retry_after: wait.max(Duration::from_secs(1)) }
        })?;
        // Keep the limiter's memory bounded to clients seen recently.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_rate_are_enforced_with_a_wait() {
        let a = Admission::new(2, 1, 60, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(a.admit(ip, 0, 0).is_ok());
        assert!(matches!(a.admit(ip, 1, 1), Err(Refusal::ClientCap { max: 1, .. })));
        assert!(matches!(a.admit(other, 2, 0), Err(Refusal::Full { max: 2, .. })));
        assert!(a.admit(ip, 0, 0).is_ok());
        let r = a.admit(ip, 0, 0).unwrap_err();
        assert_eq!(r.reason(), "rate_limited");
        assert!(r.retry_after() >= Duration::from_secs(1));
        assert!(a.admit(other, 0, 0).is_ok(), "another client has its own bucket");
    }
}
