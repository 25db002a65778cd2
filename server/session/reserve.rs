//! Reserves: sessions built ahead for one named group of requests (a classroom room: its
//! `room:<id>` mark is the key, but this layer knows no rooms), with that group's limits, and
//! handed to its requests before the warm pool's (docs/classroom.md, "Prepare"). A reserve is
//! filled in the background, one session at a time (the spawner builds one at a time anyway),
//! and stops short where the warm pool would: at `max_sessions` (a reserved session is counted
//! in it like a pooled one) or when all sessions together are near their memory limit or the
//! host's file table is nearly full. The caller ends a reserve when its group no longer needs it
//! (the room ended or closed); a shutdown ends every reserve.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use nsplay_sandbox::{Limits, Prepared};

use super::{Manager, admission, pool};

/// One group's sessions built ahead.
#[derive(Default)]
pub(super) struct Reserve {
    /// Their limits: the server's, tightened to the group's.
    limits: Option<Limits>,
    /// The image they are built on (`None`: the host's `/usr`), as [`Manager::pick_image`]
    /// chose it for the group's requests: only a request on the same image takes one.
    image: Option<String>,
    ready: Vec<Prepared>,
    /// How many the group wants ready.
    wanted: usize,
    /// A filler task is building for it.
    building: bool,
    /// When a build for it last failed: it is taken up again only [`RETRY_AFTER_FAILURE`] later.
    failed_at: Option<std::time::Instant>,
}

/// How long a reserve whose build failed waits before [`Manager::resume_reserves`] tries again.
const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(30);

/// What [`Manager::reserve_state`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReserveState {
    pub ready: usize,
    pub wanted: usize,
    pub building: bool,
}

/// Why a reserve stopped short of what its group wanted (logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    Cap,
    Memory,
    Files,
}

impl Manager {
    /// Asks for `count` sessions with `limits` (tightened to the server's) on the image `choice`
    /// picks ready for `key`, and returns at once: a background task builds the missing ones.
    /// `count` 0 ends the reserve. Asking again replaces the count (and the limits, for sessions
    /// built from then on); a new image replaces the ready sessions too. An image the server
    /// does not serve is refused, as a create call on it would be.
    pub fn prepare_reserve(
        self: &Arc<Self>,
        key: &str,
        count: usize,
        limits: Limits,
        choice: &super::ImageChoice,
    ) -> Result<(), super::SessionError> {
        let image = self.pick_image(choice)?;
        let count = count.min(self.cfg.max_sessions);
        if count == 0 {
            self.end_reserve(key);
            return Ok(());
        }
        if self.shutting_down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let start = {
            let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
            let r = all.entry(key.to_string()).or_default();
            r.limits = Some(self.cfg.limits.tightened(&limits));
            r.wanted = count;
            let keep = if r.image == image { count.min(r.ready.len()) } else { 0 };
            r.image = image;
            // More ready than wanted now, or built on another image: they go back (below).
            let surplus: Vec<Prepared> = r.ready.drain(keep..).collect();
            self.discard_all(surplus);
            !std::mem::replace(&mut r.building, true)
        };
        if start {
            let m = self.clone();
            let key = key.to_string();
            tokio::spawn(async move { m.fill_reserve(key).await });
        }
        Ok(())
    }

    /// How far `key`'s reserve is (zeroes when there is none).
    pub fn reserve_state(&self, key: &str) -> ReserveState {
        let all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
        all.get(key)
            .map(|r| ReserveState { ready: r.ready.len(), wanted: r.wanted, building: r.building })
            .unwrap_or_default()
    }

    /// Keys of every reserve (the classroom ends those of rooms that ended).
    pub fn reserve_keys(&self) -> Vec<String> {
        self.reserves.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// Ends `key`'s reserve: its ready sessions are torn down (a build in flight is discarded
    /// when it finishes).
    pub fn end_reserve(self: &Arc<Self>, key: &str) {
        let ready = {
            let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
            match all.get_mut(key) {
                Some(r) if r.building => {
                    r.wanted = 0;
                    std::mem::take(&mut r.ready)
                }
                Some(_) => all.remove(key).map(|r| r.ready).unwrap_or_default(),
                None => Vec::new(),
            }
        };
        self.discard_all(ready);
    }

    /// A ready session of `key`'s reserve on `image` that is still whole, if there is one (dead
    /// ones are torn down), with the limits it was built with. Never waits.
    pub(super) fn take_reserved(self: &Arc<Self>, key: &str, image: &Option<String>) -> Option<Prepared> {
        let (found, dead) = {
            let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
            let r = all.get_mut(key).filter(|r| &r.image == image)?;
            let mut dead = Vec::new();
            let mut found = None;
            while let Some(p) = r.ready.pop() {
                if p.is_alive() {
                    found = Some(p);
                    break;
                }
                dead.push(p);
            }
            // A taken session is no longer wanted here: the reserve shrinks with its joiners.
            if found.is_some() {
                r.wanted = r.wanted.saturating_sub(1);
            }
            if r.ready.is_empty() && r.wanted == 0 && !r.building {
                all.remove(key);
            }
            (found, dead)
        };
        self.discard_all(dead);
        if found.is_some() {
            metrics::counter!("nsplay_reserve_taken_total").increment(1);
        }
        found
    }

    /// Takes up again every reserve that stopped short of what its group wants (the server was
    /// full, or a build failed) once there is room: called every tick, so sessions that end
    /// give their places to the rooms that asked for them.
    pub(super) fn resume_reserves(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let waiting: Vec<String> = {
            let all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
            all.iter()
                .filter(|(_, r)| !r.building && r.ready.len() < r.wanted)
                .filter(|(_, r)| r.failed_at.is_none_or(|t| t.elapsed() >= RETRY_AFTER_FAILURE))
                .map(|(k, _)| k.clone())
                .collect()
        };
        if waiting.is_empty() || self.short().is_some() {
            return;
        }
        for key in waiting {
            let start = {
                let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
                all.get_mut(&key).is_some_and(|r| r.ready.len() < r.wanted && !std::mem::replace(&mut r.building, true))
            };
            if start {
                tracing::info!(reserve = %key, "a reserve that stopped short takes up again: there is room now");
                let m = self.clone();
                tokio::spawn(async move { m.fill_reserve(key).await });
            }
        }
    }

    /// Tears every reserve down (a shutdown), and waits until no reserve is being built.
    pub(super) async fn end_reserves(self: &Arc<Self>) {
        let ready: Vec<Prepared> = {
            let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
            let ready = all.values_mut().flat_map(|r| std::mem::take(&mut r.ready)).collect();
            all.retain(|_, r| r.building);
            ready
        };
        let m = self.clone();
        let _ = tokio::task::spawn_blocking(move || ready.into_iter().for_each(|p| m.discard_prepared(p))).await;
        while self.reserves.lock().unwrap_or_else(|e| e.into_inner()).values().any(|r| r.building) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Tears down prepared sessions nobody will use, off the runtime.
    fn discard_all(self: &Arc<Self>, items: Vec<Prepared>) {
        if items.is_empty() {
            return;
        }
        let m = self.clone();
        tokio::task::spawn_blocking(move || {
            for p in items {
                m.discard_prepared(p);
            }
        });
    }

    /// Why no more may be built now, if so.
    fn short(&self) -> Option<Short> {
        if !pool::Builder::has_room(self) {
            return Some(Short::Cap);
        }
        if self.admission.memory_full(self.sandbox.sessions_memory()) {
            return Some(Short::Memory);
        }
        if admission::HostFiles::read().is_some_and(|f| f.nearly_full()) {
            return Some(Short::Files);
        }
        None
    }

    /// Stops a filler whose build failed.
    fn stop_filling(&self, key: &str) {
        let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = all.get_mut(key) {
            r.building = false;
            r.failed_at = Some(std::time::Instant::now());
            if r.ready.is_empty() && r.wanted == 0 {
                all.remove(key);
            }
        }
    }

    /// The filler of `key`'s reserve: builds one at a time until it has what is wanted, the
    /// server is full, or the shutdown begins.
    async fn fill_reserve(self: Arc<Self>, key: String) {
        loop {
            let (limits, image) = {
                let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
                let Some(r) = all.get_mut(&key) else { return };
                let stop = self.shutting_down.load(Ordering::SeqCst) || r.ready.len() >= r.wanted;
                let short = if stop { None } else { self.short() };
                if stop || short.is_some() {
                    if let Some(why) = short {
                        tracing::warn!(
                            reserve = %key,
                            ready = r.ready.len(),
                            wanted = r.wanted,
                            reason = ?why,
                            "a reserve stops short of what its room wants: the server is full"
                        );
                    }
                    r.building = false;
                    if r.ready.is_empty() && r.wanted == 0 {
                        all.remove(&key);
                    }
                    return;
                }
                (r.limits.unwrap_or(self.cfg.limits), r.image.clone())
            };
            let m = self.clone();
            let on = image.clone();
            let built = tokio::task::spawn_blocking(move || {
                let root = on.as_ref().and_then(|n| m.cfg.images.get(n));
                m.existing.fetch_add(1, Ordering::SeqCst);
                let r = m.sandbox.prepare_on(&m.cfg.hostname, &limits, root);
                if r.is_err() {
                    m.existing.fetch_sub(1, Ordering::SeqCst);
                }
                r
            })
            .await;
            match built {
                Ok(Ok(p)) => {
                    let unwanted = {
                        let mut all = self.reserves.lock().unwrap_or_else(|e| e.into_inner());
                        match all.get_mut(&key) {
                            // Not if the group asked for another image meanwhile.
                            Some(r)
                                if r.ready.len() < r.wanted
                                    && r.image == image
                                    && !self.shutting_down.load(Ordering::SeqCst) =>
                            {
                                r.ready.push(p);
                                metrics::counter!("nsplay_reserve_built_total").increment(1);
                                None
                            }
                            _ => Some(p),
                        }
                    };
                    if let Some(p) = unwanted {
                        // Awaited: a shutdown waits for this filler, then counts sandboxes.
                        let m = self.clone();
                        let _ = tokio::task::spawn_blocking(move || m.discard_prepared(p)).await;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(reserve = %key, error = %e, "could not build a session for a reserve");
                    return self.stop_filling(&key);
                }
                Err(e) => {
                    tracing::error!(reserve = %key, error = %e, "a reserve's build panicked");
                    return self.stop_filling(&key);
                }
            }
        }
    }
}
