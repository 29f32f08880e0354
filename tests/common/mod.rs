//! Shared test helpers: leak accounting by live-copy counting, and a hang
//! watchdog.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts live payload copies and the sum of their values.
#[derive(Default, Debug)]
pub struct Tracker {
    pub live: AtomicI64,
    pub total: AtomicI64,
}

impl Tracker {
    pub fn new() -> Arc<Tracker> {
        Arc::new(Tracker::default())
    }

    /// Waits (by running reclamation, never by sleeping) until every copy
    /// is gone; returns the live count it settled at. Reclamation may be
    /// another thread's to finish (a tree dropped at thread exit can be
    /// handed to another exiting thread's drain), so on a loaded machine
    /// it may take a while: the limit is a hang guard, far beyond it.
    pub fn settle(&self) -> i64 {
        let guard = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            kame_stm::collect_garbage();
            let live = self.live.load(Ordering::SeqCst);
            if live == 0 || std::time::Instant::now() > guard {
                return live;
            }
            std::thread::yield_now();
        }
    }
}

/// A payload that counts its live copies in a [`Tracker`].
#[derive(Debug)]
pub struct Counted {
    pub x: i64,
    tracker: Arc<Tracker>,
}

impl Counted {
    pub fn new(x: i64, tracker: &Arc<Tracker>) -> Self {
        tracker.live.fetch_add(1, Ordering::SeqCst);
        tracker.total.fetch_add(x, Ordering::SeqCst);
        Counted {
            x,
            tracker: tracker.clone(),
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(self.x, &self.tracker)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.tracker.live.fetch_sub(1, Ordering::SeqCst);
        self.tracker.total.fetch_sub(self.x, Ordering::SeqCst);
    }
}

impl std::ops::AddAssign<i64> for Counted {
    fn add_assign(&mut self, d: i64) {
        self.tracker.total.fetch_add(d, Ordering::SeqCst);
        self.x += d;
    }
}

impl std::ops::SubAssign<i64> for Counted {
    fn sub_assign(&mut self, d: i64) {
        *self += -d;
    }
}

/// Runs `f` on its own thread and returns its result; fails the test if it
/// has not returned after `limit` (a hang: the operations take
/// milliseconds). It only fires on a hang, never decides a pass by timing.
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    use std::sync::mpsc::{self, RecvTimeoutError};
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: no result after {limit:?} (hang)"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the operation panicked"),
    }
}
