//! Host uid/gid ranges for sessions. Root in a session is the first id of its range; no two live
//! sessions share a range, and no range contains host uid 0.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Ids per session: a full 16-bit range, so `useradd` and nested user namespaces work inside.
pub const IDS_PER_SESSION: u32 = 65536;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdError {
    #[error("id range base {0} is too low: it must be at least 65536 so no session can map host system users")]
    BaseTooLow(u32),
    #[error("id range base {base} with {slots} sessions of 65536 ids passes the largest uid (4294967294)")]
    TooLarge { base: u32, slots: u32 },
    #[error("all {0} id ranges are in use: end a session or raise id_slots")]
    Exhausted(u32),
}

/// One session's host id range: inside uid 0..65535 maps to `base..base+65535` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub slot: u32,
    pub base: u32,
}

impl IdRange {
    pub fn count(&self) -> u32 {
        IDS_PER_SESSION
    }
    /// The line written to `uid_map`/`gid_map`.
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.base, IDS_PER_SESSION)
    }
    pub fn contains(&self, host_id: u32) -> bool {
        host_id >= self.base && host_id - self.base < IDS_PER_SESSION
    }
}

/// Hands out disjoint id ranges, round-robin: a freed range is handed out again as late as
/// possible, not to the very next session. What the kernel keeps per host uid for a moment after
/// a session's last process is gone (a user keyring, a socket's credentials in flight, a
/// process still being reaped) must never meet another visitor's session, and a test or an
/// operator that looks for the uids of an ended session never finds a new one's.
#[derive(Debug)]
pub struct IdAllocator {
    base: u32,
    slots: u32,
    used: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    taken: BTreeSet<u32>,
    /// Where the search for the next free slot starts: one past the last one handed out.
    next: u32,
}

impl IdAllocator {
    pub fn new(base: u32, slots: u32) -> Result<Self, IdError> {
        if base < IDS_PER_SESSION {
            return Err(IdError::BaseTooLow(base));
        }
        let end = base as u64 + slots as u64 * IDS_PER_SESSION as u64;
        if slots == 0 || end > u32::MAX as u64 {
            return Err(IdError::TooLarge { base, slots });
        }
        Ok(IdAllocator { base, slots, used: Mutex::new(Slots::default()) })
    }

    pub fn allocate(&self) -> Result<IdRange, IdError> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let start = used.next;
        let slot = (start..self.slots)
            .chain(0..start)
            .find(|s| !used.taken.contains(s))
            .ok_or(IdError::Exhausted(self.slots))?;
        used.taken.insert(slot);
        used.next = (slot + 1) % self.slots;
        Ok(IdRange { slot, base: self.base + slot * IDS_PER_SESSION })
    }

    pub fn release(&self, range: IdRange) {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).taken.remove(&range.slot);
    }

    pub fn in_use(&self) -> usize {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).taken.len()
    }

    /// Whether a host id belongs to any session range (used to sanity-check what we see in /proc).
    pub fn owns(&self, host_id: u32) -> bool {
        host_id >= self.base && ((host_id - self.base) / IDS_PER_SESSION) < self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_disjoint_and_reused_after_release() {
        let a = IdAllocator::new(1_000_000_000, 3).unwrap();
        let r0 = a.allocate().unwrap();
        let r1 = a.allocate().unwrap();
        let r2 = a.allocate().unwrap();
        assert_eq!(r0.base, 1_000_000_000);
        assert_eq!(r1.base, 1_000_000_000 + 65536);
        assert!(!r0.contains(r1.base) && !r1.contains(r0.base + 65535));
        assert_eq!(a.allocate(), Err(IdError::Exhausted(3)));
        a.release(r1);
        assert_eq!(a.allocate().unwrap(), r1);
        assert_eq!(a.in_use(), 3);
        let _ = r2;
        assert_eq!(r0.map_line(), "0 1000000000 65536\n");
        assert!(a.owns(r2.base + 65535) && !a.owns(r2.base + 65536) && !a.owns(0));
    }

    #[test]
    fn a_released_range_goes_to_the_back_of_the_line() {
        let a = IdAllocator::new(1_000_000_000, 4).unwrap();
        let r0 = a.allocate().unwrap();
        a.release(r0);
        // Three other ranges are free: the next sessions get those first.
        let next: Vec<u32> = (0..3).map(|_| a.allocate().unwrap().slot).collect();
        assert_eq!(next, [1, 2, 3]);
        assert_eq!(a.allocate().unwrap(), r0);
        assert_eq!(a.allocate(), Err(IdError::Exhausted(4)));
    }

    #[test]
    fn bad_bases_are_refused() {
        assert_eq!(IdAllocator::new(0, 1).unwrap_err(), IdError::BaseTooLow(0));
        assert!(matches!(IdAllocator::new(4_000_000_000, 10_000), Err(IdError::TooLarge { .. })));
        assert!(IdAllocator::new(100_000, 0).is_err());
    }
}
