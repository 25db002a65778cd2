//! The output budget: how fast all terminals together may print while someone else is using
//! the server, shared fairly among those printing more than their share.
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
//! the number of terminals currently over theirs (at least one): ten floods get a tenth each,
//! and a learner typing (an echo is a few bytes, a command's answer rarely more than the burst)
//! never waits.
//!
//! The budget only bites when there is someone to protect: another terminal past its bucket
//! too, or one that was typed into within [`ACTIVE`]. A lone `cat` of a large file on a server
//! nobody else is using runs at the full speed of the path (what the pty, the relay and the
//! server can carry), however often its own learner types; it is paced from the moment another
//! learner presses a key. What decides is use by people, not a CPU reading: pacing lowers the
//! CPU pressure it would be read from, so a pressure signal would switch it off and on again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a terminal may print at once before its share applies: a screenful of `ls -l` many
/// times over, so everyday commands never wait.
pub const BURST: u64 = 256 * 1024;

/// How long after its last keystroke a terminal counts as in use: a learner reading a lesson
/// between two commands is still there.
pub const ACTIVE: Duration = Duration::from_secs(30);

/// The budget every terminal of a server draws from.
#[derive(Debug)]
pub struct Budget {
    /// Bytes per second for all terminals together; 0: no limit.
    rate: u64,
    /// Terminals whose last chunk took them past their bucket (floods).
    busy: AtomicUsize,
    /// Gives each terminal's pace its id.
    next_id: AtomicU64,
    /// The two terminals typed into last (id, when), newest first: enough to tell whether any
    /// terminal but a given one was typed into lately, without a table of every terminal.
    typed: Mutex<[Option<(u64, Instant)>; 2]>,
}

impl Budget {
    pub fn new(rate: u64) -> Arc<Budget> {
        Arc::new(Budget { rate, busy: AtomicUsize::new(0), next_id: AtomicU64::new(1), typed: Mutex::new([None; 2]) })
    }

    /// A fresh pace for one terminal (full bucket).
    pub fn pace(self: &Arc<Self>) -> Pace {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Pace { budget: self.clone(), id, tokens: BURST as f64, last: Instant::now(), busy: false }
    }

    fn typed_into(&self, id: u64, now: Instant) {
        let mut t = self.typed.lock().unwrap_or_else(|e| e.into_inner());
        if t[0].is_some_and(|(last, _)| last != id) {
            t[1] = t[0];
        }
        t[0] = Some((id, now));
    }

    /// Whether a terminal other than `id` is in use: printing past its bucket, or typed into
    /// within [`ACTIVE`].
    fn others_active(&self, id: u64, me_busy: bool, now: Instant) -> bool {
        if self.busy() > usize::from(me_busy) {
            return true;
        }
        let t = self.typed.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().flatten().any(|&(who, at)| who != id && now.saturating_duration_since(at) < ACTIVE)
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
    id: u64,
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
        if !self.budget.others_active(self.id, true, now) {
            // Nobody to make room for: no debt either, so pacing starts from an empty bucket,
            // not from what the flood printed alone.
            self.tokens = 0.0;
            return Duration::ZERO;
        }
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

    /// The handle the terminal's input side tells about keystrokes.
    pub fn typist(&self) -> Typist {
        Typist { budget: self.budget.clone(), id: self.id }
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

/// Tells the budget that a terminal was typed into (held by the terminal's writer).
#[derive(Debug, Clone)]
pub struct Typist {
    budget: Arc<Budget>,
    id: u64,
}

impl Typist {
    pub fn typed(&self) {
        self.typed_at(Instant::now())
    }

    fn typed_at(&self, now: Instant) {
        if self.budget.rate != 0 {
            self.budget.typed_into(self.id, now);
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
    fn a_flood_nobody_else_sees_is_not_paced_even_while_its_own_learner_types() {
        let b = Budget::new(MIB);
        let mut p = b.pace();
        let me = p.typist();
        let mut t = Instant::now();
        for _ in 0..100 {
            me.typed_at(t);
            assert_eq!(p.spend(MIB as usize, t), Duration::ZERO);
            t += Duration::from_millis(10);
        }
        // It is a flood all the same: a second one would see it.
        assert_eq!(b.busy(), 1);
    }

    #[test]
    fn a_flood_is_paced_at_the_whole_rate_while_another_terminal_is_in_use() {
        let b = Budget::new(MIB);
        let mut p = b.pace();
        let other = b.pace().typist();
        let t = Instant::now();
        assert_eq!(p.spend(BURST as usize, t), Duration::ZERO);
        // Past its bucket alone: free, and no debt kept for later.
        assert_eq!(p.spend(4 * MIB as usize, t), Duration::ZERO);
        other.typed_at(t);
        // Half a MiB more at once: half a second at 1 MiB/s.
        let d = p.spend((MIB / 2) as usize, t);
        assert!((d.as_secs_f64() - 0.5).abs() < 1e-6, "{d:?}");
        // The other learner stops typing: once ACTIVE has passed, the flood is free again.
        let later = t + ACTIVE + Duration::from_secs(1);
        assert_eq!(p.spend(4 * MIB as usize, later), Duration::ZERO);
    }

    #[test]
    fn the_flood_typed_into_last_does_not_hide_another_typist() {
        let b = Budget::new(MIB);
        let mut p = b.pace();
        let me = p.typist();
        let other = b.pace().typist();
        let t = Instant::now();
        other.typed_at(t);
        // The flood's own learner types many times after: the other typist is still seen.
        for i in 0..10 {
            me.typed_at(t + Duration::from_millis(i));
        }
        p.spend(BURST as usize, t);
        assert!(p.spend(MIB as usize, t + Duration::from_millis(20)) > Duration::ZERO);
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
