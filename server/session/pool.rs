//! The warm pool: sessions built ahead of visitors. Building one costs 15–25 ms, most of it the
//! kernel moving a process into a cgroup (see docs/benchmarks.md); a pooled one only has to
//! let its parked shell exec. One filler task builds, strictly one at a time (the spawner is
//! single-threaded anyway), for requests that found the pool empty first, then up to the target.
//!
//! The pool is generic over a [`Builder`] so its bookkeeping is tested without sandboxes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// What the pool needs from whoever builds its items.
pub trait Builder: Send + Sync + 'static {
    type Item: Send + 'static;
    type Error: Send + std::fmt::Display + 'static;
    /// Whether one more item may exist now (the pool counts toward the session cap).
    fn has_room(&self) -> bool;
    /// Builds one item (blocking).
    fn build(&self) -> Result<Self::Item, Self::Error>;
    /// Whether a ready item is still usable.
    fn is_alive(&self, item: &Self::Item) -> bool;
    /// Tears down an item nobody will use (blocking).
    fn discard(&self, item: Self::Item);
}

#[derive(Debug, thiserror::Error)]
pub enum TakeError<E> {
    #[error("the server is shutting down")]
    Closed,
    #[error(transparent)]
    Build(E),
}

type Waiter<B> = oneshot::Sender<Result<<B as Builder>::Item, <B as Builder>::Error>>;

struct State<B: Builder> {
    ready: VecDeque<B::Item>,
    /// Requests that found `ready` empty, served first come first served.
    waiters: VecDeque<Waiter<B>>,
    /// Items found dead, for the filler to discard.
    dead: Vec<B::Item>,
    closed: bool,
}

pub struct Pool<B: Builder> {
    target: usize,
    st: Mutex<State<B>>,
    /// Wakes the filler: an item was taken, a request waits, room was freed, or the pool closed.
    wake: Notify,
    /// Told when the filler has finished (after [`Pool::close`], everything discarded).
    done: Notify,
    finished: std::sync::atomic::AtomicBool,
}

/// Longest pause after a background build failed (a request that waits retries at once).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl<B: Builder> Pool<B> {
    pub fn new(target: usize) -> Arc<Pool<B>> {
        Arc::new(Pool {
            target,
            st: Mutex::new(State { ready: VecDeque::new(), waiters: VecDeque::new(), dead: Vec::new(), closed: false }),
            wake: Notify::new(),
            done: Notify::new(),
            finished: false.into(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<B>> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Tells the filler that something it waits for may have changed (for example a session
    /// ended, so there is room again).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// A ready item, or the next one built. Cancel-safe: an item delivered to a request that
    /// went away goes back to the pool.
    pub async fn take(&self, builder: &B) -> Result<B::Item, TakeError<B::Error>> {
        let rx = {
            let mut st = self.lock();
            if st.closed {
                return Err(TakeError::Closed);
            }
            while let Some(item) = st.ready.pop_front() {
                if builder.is_alive(&item) {
                    metrics::gauge!("nsplay_pool_ready").set(st.ready.len() as f64);
                    drop(st);
                    self.wake.notify_one();
                    return Ok(item);
                }
                st.dead.push(item);
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push_back(tx);
            rx
        };
        self.wake.notify_one();
        let mut guard = WaitGuard { pool: self, rx: Some(rx) };
        let result = guard.rx.as_mut().expect("set above").await;
        guard.rx = None;
        match result {
            Ok(Ok(item)) => Ok(item),
            Ok(Err(e)) => Err(TakeError::Build(e)),
            Err(_) => Err(TakeError::Closed),
        }
    }

    /// Stops building and discards every ready item; requests still waiting get
    /// [`TakeError::Closed`]. [`Pool::finished`] tells when the filler is done.
    pub fn close(&self) {
        let waiters = {
            let mut st = self.lock();
            st.closed = true;
            std::mem::take(&mut st.waiters)
        };
        drop(waiters);
        self.wake.notify_one();
    }

    /// Waits until the filler has discarded everything after [`Pool::close`].
    pub async fn finished(&self) {
        loop {
            let notified = self.done.notified();
            if self.finished.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Gives a built item to the oldest request still waiting, else to the pool.
    fn deliver(&self, mut item: B::Item) {
        let mut st = self.lock();
        if st.closed {
            st.dead.push(item);
            return;
        }
        while let Some(w) = st.waiters.pop_front() {
            match w.send(Ok(item)) {
                Ok(()) => return,
                Err(back) => item = back.ok().expect("we sent Ok"),
            }
        }
        st.ready.push_back(item);
        metrics::gauge!("nsplay_pool_ready").set(st.ready.len() as f64);
    }

    /// The filler: run it as one task for the life of the pool.
    pub async fn run(self: Arc<Self>, builder: Arc<B>) {
        let mut failures = 0u32;
        let mut next_try = Instant::now();
        loop {
            let (dead, closed, waiting, short) = {
                let mut st = self.lock();
                st.waiters.retain(|w| !w.is_closed());
                let closed = st.closed;
                if closed {
                    let ready = std::mem::take(&mut st.ready);
                    st.dead.extend(ready);
                    metrics::gauge!("nsplay_pool_ready").set(0.0);
                }
                (std::mem::take(&mut st.dead), closed, !st.waiters.is_empty(), st.ready.len() < self.target)
            };
            for item in dead {
                let b = builder.clone();
                let _ = tokio::task::spawn_blocking(move || b.discard(item)).await;
            }
            if closed {
                self.finished.store(true, std::sync::atomic::Ordering::Release);
                self.done.notify_waiters();
                return;
            }
            let background = short && Instant::now() >= next_try;
            if (waiting || background) && builder.has_room() {
                let b = builder.clone();
                match tokio::task::spawn_blocking(move || b.build()).await {
                    Ok(Ok(item)) => {
                        failures = 0;
                        self.deliver(item);
                    }
                    Ok(Err(e)) => {
                        failures += 1;
                        next_try = Instant::now() + MAX_BACKOFF.min(Duration::from_secs(1 << failures.min(6)));
                        let waiter = self.lock().waiters.pop_front();
                        match waiter {
                            Some(w) => {
                                let _ = w.send(Err(e));
                            }
                            None => tracing::warn!(error = %e, "could not build a session for the warm pool"),
                        }
                    }
                    // The runtime is shutting down.
                    Err(_) => return,
                }
                continue;
            }
            let notified = self.wake.notified();
            if short && !waiting && failures > 0 {
                let _ = tokio::time::timeout_at(next_try, notified).await;
            } else {
                notified.await;
            }
        }
    }
}

/// Returns an item that reached a request which stopped waiting to the pool.
struct WaitGuard<'a, B: Builder> {
    pool: &'a Pool<B>,
    rx: Option<oneshot::Receiver<Result<B::Item, B::Error>>>,
}

impl<B: Builder> Drop for WaitGuard<'_, B> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(Ok(item)) = rx.try_recv() {
                self.pool.deliver(item);
                self.pool.wake.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Items are numbers; `room` caps how many exist; odd builds can be made to fail.
    struct Counter {
        built: AtomicUsize,
        existing: AtomicUsize,
        room: usize,
        fail: std::sync::atomic::AtomicBool,
        discarded: Mutex<Vec<usize>>,
        dead: Mutex<Vec<usize>>,
    }

    impl Counter {
        fn new(room: usize) -> Arc<Counter> {
            Arc::new(Counter {
                built: 0.into(),
                existing: 0.into(),
                room,
                fail: false.into(),
                discarded: Mutex::default(),
                dead: Mutex::default(),
            })
        }
    }

    impl Builder for Counter {
        type Item = usize;
        type Error = String;
        fn has_room(&self) -> bool {
            self.existing.load(Ordering::SeqCst) < self.room
        }
        fn build(&self) -> Result<usize, String> {
            if self.fail.load(Ordering::SeqCst) {
                return Err("no luck".into());
            }
            self.existing.fetch_add(1, Ordering::SeqCst);
            Ok(self.built.fetch_add(1, Ordering::SeqCst))
        }
        fn is_alive(&self, item: &usize) -> bool {
            !self.dead.lock().unwrap().contains(item)
        }
        fn discard(&self, item: usize) {
            self.existing.fetch_sub(1, Ordering::SeqCst);
            self.discarded.lock().unwrap().push(item);
        }
    }

    async fn settle<B: Builder>(pool: &Pool<B>, ready: usize) {
        for _ in 0..200 {
            if pool.ready() == ready {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if pool.ready() == ready {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("pool holds {} ready items, expected {ready}", pool.ready());
    }

    #[tokio::test]
    async fn fills_to_target_refills_after_take_and_respects_room() {
        let b = Counter::new(3);
        let pool = Pool::<Counter>::new(2);
        tokio::spawn(pool.clone().run(b.clone()));
        settle(&pool, 2).await;
        assert_eq!(pool.take(&b).await.unwrap(), 0);
        settle(&pool, 2).await;
        // Three exist now (one taken, two ready): no room for a refill after the next take.
        assert_eq!(pool.take(&b).await.unwrap(), 1);
        settle(&pool, 1).await;
        assert_eq!(b.built.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_empty_pool_builds_on_demand_and_skips_dead_items() {
        let b = Counter::new(10);
        let pool = Pool::<Counter>::new(0);
        tokio::spawn(pool.clone().run(b.clone()));
        assert_eq!(pool.take(&b).await.unwrap(), 0);
        settle(&pool, 0).await;

        let b = Counter::new(10);
        let pool = Pool::<Counter>::new(1);
        tokio::spawn(pool.clone().run(b.clone()));
        settle(&pool, 1).await;
        b.dead.lock().unwrap().push(0);
        assert_eq!(pool.take(&b).await.unwrap(), 1);
        for _ in 0..100 {
            if b.discarded.lock().unwrap().contains(&0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*b.discarded.lock().unwrap(), vec![0]);
    }

    #[tokio::test]
    async fn a_failed_build_reaches_the_waiting_request() {
        let b = Counter::new(10);
        b.fail.store(true, Ordering::SeqCst);
        let pool = Pool::<Counter>::new(0);
        tokio::spawn(pool.clone().run(b.clone()));
        match pool.take(&b).await {
            Err(TakeError::Build(e)) => assert_eq!(e, "no luck"),
            other => panic!("{other:?}"),
        }
        b.fail.store(false, Ordering::SeqCst);
        assert_eq!(pool.take(&b).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_request_returns_its_item_and_close_discards_everything() {
        let b = Counter::new(10);
        let pool = Pool::<Counter>::new(0);
        // The request gives up before the filler runs; the item built for it is kept.
        let _ = tokio::time::timeout(Duration::ZERO, pool.take(&b)).await;
        tokio::spawn(pool.clone().run(b.clone()));
        settle(&pool, 0).await;
        let got = tokio::time::timeout(Duration::from_secs(5), pool.take(&b)).await.unwrap().unwrap();
        assert_eq!(got, 0, "first build, unused: {:?}", b.discarded.lock().unwrap());

        let pool2 = Pool::<Counter>::new(3);
        let b2 = Counter::new(10);
        tokio::spawn(pool2.clone().run(b2.clone()));
        settle(&pool2, 3).await;
        pool2.close();
        tokio::time::timeout(Duration::from_secs(5), pool2.finished()).await.unwrap();
        assert_eq!(b2.existing.load(Ordering::SeqCst), 0);
        assert!(matches!(pool2.take(&b2).await, Err(TakeError::Closed)));
    }
}
