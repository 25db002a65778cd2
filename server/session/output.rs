//! The output budget: how fast all terminals together may print, shared fairly among those
//! printing more than their share.
//!
//! Output costs the host CPU at every step between the program and the browser — the pty's line
//! discipline (in kernel workers no session's cgroup pays for), the terminal's relay, the
//! server's copy and WebSocket framing — and in a room a few learners running `yes` made that
//! work crowd out everyone's echo. Nobody reads megabytes a second in a browser, so the budget
//! bounds the whole flow, not just the server's part: a terminal over its share is paced in its
//! reader task, which stops reading its pipe, which fills the relay's pipe and the pty's buffer,
//! which blocks the printing program in the kernel. Its CPU use falls with the rate.
//!
//! Each terminal has a bucket of [`BURST`] bytes that refills at the budget's rate divided by
//! the number of terminals currently over theirs (at least one): a lone `cat` of a large file
//! gets the whole budget, ten floods a tenth each, and a learner typing (an echo is a few bytes,
//! a command's answer rarely more than the burst) never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a terminal may print at once before its share applies: a screenful of `ls -l` many
/// times over, so everyday commands never wait.
pub const BURST: u64 = 256 * 1024;

/// The budget every terminal of a server draws from.
#[derive(Debug)]
pub struct Budget {
    /// Bytes per second for all terminals together; 0: no limit.
    rate: u64,
    /// Terminals whose last chunk took them past their bucket (they are being paced).
    busy: AtomicUsize,
}

impl Budget {
    pub fn new(rate: u64) -> Arc<Budget> {
        Arc::new(Budget { rate, busy: AtomicUsize::new(0) })
    }

    /// A fresh pace for one terminal (full bucket).
    pub fn pace(self: &Arc<Self>) -> Pace {
        Pace { budget: self.clone(), tokens: BURST as f64, last: Instant::now(), busy: false }
    }

    /// Terminals being paced now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// One terminal's share of the rate, in bytes per second.
    fn share(&self) -> f64 {
        self.rate as f64 / self.busy().max(1) as f64
    }
}

/// One terminal's bucket.
#[derive(Debug)]
pub struct Pace {
    budget: Arc<Budget>,
    tokens: f64,
    last: Instant,
    busy: bool,
}

impl Pace {
    /// Accounts `n` bytes just delivered and says how long the terminal must wait before it
    /// reads more (zero while it is within its bucket).
    pub fn spend(&mut self, n: usize, now: Instant) -> Duration {
        if self.budget.rate == 0 {
            return Duration::ZERO;
        }
        let share = self.budget.share();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * share).min(BURST as f64) - n as f64;
        if self.tokens >= 0.0 {
            self.set_busy(false);
            return Duration::ZERO;
        }
        self.set_busy(true);
        // The share just counted this terminal among the busy ones only if it already was; the
        // wait uses the share as it is now, with this terminal in it.
        Duration::from_secs_f64(-self.tokens / self.budget.share())
    }

    /// [`spend`](Self::spend), then the wait.
    pub async fn wait(&mut self, n: usize) {
        let d = self.spend(n, Instant::now());
        if !d.is_zero() {
            metrics::counter!("nsplay_output_paced_milliseconds_total").increment(d.as_millis() as u64);
            tokio::time::sleep(d).await;
        }
    }

    fn set_busy(&mut self, busy: bool) {
        if busy != self.busy {
            self.busy = busy;
            let now = if busy {
                self.budget.busy.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                self.budget.busy.fetch_sub(1, Ordering::Relaxed) - 1
            };
            metrics::gauge!("nsplay_output_paced_terminals").set(now as f64);
        }
    }
}

impl Drop for Pace {
    fn drop(&mut self) {
        self.set_busy(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn within_the_burst_nothing_waits() {
        let b = Budget::new(MIB);
        let mut p = b.pace();
        let t = Instant::now();
        for _ in 0..8 {
            assert_eq!(p.spend(32 * 1024, t), Duration::ZERO);
        }
        assert_eq!(b.busy(), 0);
    }

    #[test]
    fn a_lone_flood_gets_the_whole_rate() {
        let b = Budget::new(MIB);
        let mut p = b.pace();
        let t = Instant::now();
        assert_eq!(p.spend(BURST as usize, t), Duration::ZERO);
        // Half a MiB more at once: half a second at 1 MiB/s.
        let d = p.spend((MIB / 2) as usize, t);
        assert!((d.as_secs_f64() - 0.5).abs() < 1e-6, "{d:?}");
        assert_eq!(b.busy(), 1);
    }

    #[test]
    fn floods_share_the_rate_and_a_typist_never_waits() {
        let b = Budget::new(MIB);
        let mut floods: Vec<Pace> = (0..4).map(|_| b.pace()).collect();
        let mut typist = b.pace();
        let mut t = Instant::now();
        for f in floods.iter_mut() {
            f.spend(BURST as usize, t);
            f.spend(1, t);
        }
        assert_eq!(b.busy(), 4);
        // Each flood now refills at a quarter of the rate: 64 KiB takes a quarter second.
        t += Duration::from_secs(1);
        let mut waits = Vec::new();
        for f in floods.iter_mut() {
            waits.push(f.spend((MIB / 4) as usize + 64 * 1024, t));
        }
        for d in waits {
            assert!((d.as_secs_f64() - 0.25).abs() < 0.01, "{d:?}");
        }
        for _ in 0..1000 {
            t += Duration::from_millis(100);
            assert_eq!(typist.spend(40, t), Duration::ZERO);
        }
    }

    #[test]
    fn an_ended_flood_gives_its_share_back() {
        let b = Budget::new(MIB);
        let mut a = b.pace();
        let mut c = b.pace();
        let t = Instant::now();
        a.spend(BURST as usize + 1, t);
        c.spend(BURST as usize + 1, t);
        assert_eq!(b.busy(), 2);
        drop(a);
        assert_eq!(b.busy(), 1);
        // A flood that drained its debt and stays within its bucket is no longer counted.
        assert_eq!(c.spend(0, t + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(b.busy(), 0);
    }

    #[test]
    fn no_rate_means_no_limit() {
        let b = Budget::new(0);
        let mut p = b.pace();
        assert_eq!(p.spend(usize::MAX / 2, Instant::now()), Duration::ZERO);
        assert_eq!(b.busy(), 0);
    }
}
