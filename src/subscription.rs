//! Subscriptions: wait until a subtree changed, blocking or async.
//!
//! A GUI, a logger or a control loop wants "the state, again, when it
//! changed", not every event: like `tokio::sync::watch`, a [`Subscription`]
//! coalesces by construction. [`changed`](Subscription::changed) returns
//! the newest snapshot of the subtree once it differs from the last one
//! this subscription returned (compared by identity:
//! [`Snapshot::changed_since`], no payload `PartialEq`), however many
//! commits that took. [`Node::wait_until`] waits for a condition ("until
//! the magnet holds its field") without polling.
//!
//! ```
//! use kame_stm::Node;
//! use std::time::Duration;
//!
//! let magnet = Node::new(0.0_f64);
//! let mut sub = magnet.subscribe();
//! let ramp = {
//!     let magnet = magnet.clone();
//!     std::thread::spawn(move || {
//!         for step in 1..=10 {
//!             magnet.iterate_commit(|tr| tr[&magnet] = step as f64 * 0.5);
//!         }
//!     })
//! };
//! let shot = sub.changed(); // some state after at least one commit
//! assert!(shot[&magnet] > 0.0);
//! let held = magnet.wait_until(Duration::from_secs(60), |s| s[&magnet] >= 5.0);
//! assert_eq!(held.map(|s| s[&magnet]), Some(5.0));
//! ramp.join().unwrap();
//! ```
//!
//! How a commit reaches a subscriber: a commit that wrote loads one
//! process-wide counter of live subscriptions; with none (the usual case for
//! a writer-only process) that load is all it pays. Otherwise it bumps a
//! global commit epoch and, if someone sleeps, wakes every sleeper; each
//! subscriber then compares a fresh snapshot of its own subtree with the
//! one it returned last. So with subscriptions alive, every writing commit
//! anywhere costs one shared counter increment, and each wake-up costs its
//! subscriber one snapshot (a load when nothing of its subtree changed).
//!
//! No lost wake-up: a subscriber reads the epoch before its snapshot and
//! sleeps only while the epoch is still that value; a committer bumps the
//! epoch after its publishing CAS. Either the snapshot sees the commit, or
//! the epoch moved. At registration the subscription count and the commit
//! CAS form a Dekker pair: both sides are `SeqCst` (the CAS in
//! `sync::ArcCell`) with a fence after the registration.

use crate::drive::take_snapshot;
use crate::linkage::Linkage;
use crate::node::{AsNode, Node, NodeRef};
use crate::snapshot::Snapshot;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Live subscriptions; 0 lets commits skip everything below.
static WATCHERS: AtomicUsize = AtomicUsize::new(0);

struct Hub {
    /// Writing commits made while some subscription was alive.
    epoch: AtomicU64,
    /// Blocked threads plus registered wakers.
    sleepers: AtomicUsize,
    wakers: Mutex<Vec<(u64, Waker)>>,
    wake: Condvar,
    next_id: AtomicU64,
}

static HUB: Hub = Hub {
    epoch: AtomicU64::new(0),
    sleepers: AtomicUsize::new(0),
    wakers: Mutex::new(Vec::new()),
    wake: Condvar::new(),
    next_id: AtomicU64::new(0),
};

fn lock_wakers() -> MutexGuard<'static, Vec<(u64, Waker)>> {
    HUB.wakers.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called by every committed transaction, after its tags are released.
#[inline]
pub(crate) fn committed(wrote: bool) {
    if !wrote || WATCHERS.load(Ordering::SeqCst) == 0 {
        return;
    }
    wake_all();
}

#[cold]
fn wake_all() {
    HUB.epoch.fetch_add(1, Ordering::SeqCst);
    if HUB.sleepers.load(Ordering::SeqCst) == 0 {
        return;
    }
    let wakers = {
        let mut w = lock_wakers();
        HUB.sleepers.fetch_sub(w.len(), Ordering::SeqCst);
        HUB.wake.notify_all();
        std::mem::take(&mut *w)
    };
    for (_, w) in wakers {
        w.wake();
    }
}

/// Blocks until the epoch is no longer `seen` (`true`) or `deadline`
/// passed (`false`).
fn sleep_while(seen: u64, deadline: Option<Instant>) -> bool {
    let mut g = lock_wakers();
    HUB.sleepers.fetch_add(1, Ordering::SeqCst);
    let moved = loop {
        if HUB.epoch.load(Ordering::SeqCst) != seen {
            break true;
        }
        match deadline {
            None => g = HUB.wake.wait(g).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    break false;
                }
                g = HUB
                    .wake
                    .wait_timeout(g, d - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    };
    HUB.sleepers.fetch_sub(1, Ordering::SeqCst);
    drop(g);
    moved
}

/// Counts as a live subscription while it exists.
struct Watch;

impl Watch {
    fn new() -> Self {
        WATCHERS.fetch_add(1, Ordering::SeqCst);
        // Pairs with the commit's SeqCst CAS then SeqCst load of WATCHERS:
        // a commit that did not see us is seen by the snapshot we take next.
        fence(Ordering::SeqCst);
        Watch
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        WATCHERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A receiver of the changes of one node's subtree, coalescing like
/// `tokio::sync::watch`: [`changed`](Self::changed) returns the newest
/// state once it differs from the last one returned, however many commits
/// that took. Made by [`Node::subscribe`]; the model and its cost are in
/// `docs/notification.md`.
pub struct Subscription {
    node: Arc<Linkage>,
    /// The last snapshot returned (or taken by `snapshot`).
    last: Snapshot,
    /// The epoch read before `last` was taken.
    seen: u64,
    interval: Option<Duration>,
    last_out: Option<Instant>,
    _watch: Watch,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("node", &self.last.root())
            .field("interval", &self.interval)
            .finish()
    }
}

impl Subscription {
    fn new(node: &Arc<Linkage>) -> Self {
        let watch = Watch::new();
        let seen = HUB.epoch.load(Ordering::SeqCst);
        Subscription {
            node: node.clone(),
            last: take_snapshot(node),
            seen,
            interval: None,
            last_out: None,
            _watch: watch,
        }
    }

    /// Makes [`changed`](Self::changed) return at most once per `interval`
    /// (the newest state at that time): a display redrawn at ≤ 30 Hz is
    /// `at_most_every(Duration::from_millis(34))`.
    pub fn at_most_every(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// The current state of the subtree, taken now; later calls of
    /// [`changed`](Self::changed) wait for a state that differs from it.
    pub fn snapshot(&mut self) -> Snapshot {
        self.seen = HUB.epoch.load(Ordering::SeqCst);
        self.last = take_snapshot(&self.node);
        self.last.clone()
    }

    /// The state last returned, without looking again.
    pub fn last(&self) -> &Snapshot {
        &self.last
    }

    /// Waits until the subtree differs from the last state returned, and
    /// returns the newest state. Intermediate states may be skipped.
    pub fn changed(&mut self) -> Snapshot {
        loop {
            if let Some(s) = self.changed_until(None) {
                return s;
            }
        }
    }

    /// [`changed`](Self::changed), waiting at most `timeout`; `None`: no
    /// change in that time.
    pub fn changed_timeout(&mut self, timeout: Duration) -> Option<Snapshot> {
        self.changed_until(Some(Instant::now() + timeout))
    }

    /// An async receiver of the same subtree, for any executor.
    pub fn into_async(self) -> AsyncSubscription {
        AsyncSubscription {
            sub: self,
            id: HUB.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A newer state than `last` if a commit happened since it was taken.
    fn poll_change(&mut self) -> Option<Snapshot> {
        loop {
            let epoch = HUB.epoch.load(Ordering::SeqCst);
            if epoch == self.seen {
                return None;
            }
            let shot = take_snapshot(&self.node);
            self.seen = epoch;
            if shot.changed_since(&self.last, &NodeRef::from_link(&self.node)) {
                self.last = shot.clone();
                return Some(shot);
            }
        }
    }

    fn changed_until(&mut self, deadline: Option<Instant>) -> Option<Snapshot> {
        let before = (self.last.clone(), self.seen);
        let found = loop {
            if let Some(s) = self.poll_change() {
                break s;
            }
            if !sleep_while(self.seen, deadline) {
                return None;
            }
        };
        let Some(interval) = self.interval else {
            return Some(found);
        };
        let now = Instant::now();
        let found = match self.last_out.map(|t| t + interval) {
            Some(ready) if ready > now => {
                // Rate limit, not a race: wait out the interval, then
                // return the newest state (latest wins).
                if let Some(d) = deadline.filter(|&d| d < ready) {
                    std::thread::sleep(d.saturating_duration_since(now));
                    // Keep the change for the next call.
                    (self.last, self.seen) = before;
                    return None;
                }
                std::thread::sleep(ready - now);
                self.snapshot()
            }
            _ => found,
        };
        self.last_out = Some(Instant::now());
        Some(found)
    }
}

/// [`Subscription`] for async code: `changed().await` works on any
/// executor (it only stores the task's `Waker`; the committing thread wakes
/// it). Made by [`Subscription::into_async`] or [`Node::subscribe_async`].
///
/// ```
/// use kame_stm::Node;
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
///
/// let level = Node::new(0u32);
/// let mut sub = level.subscribe_async();
/// let mut cx = Context::from_waker(Waker::noop());
/// let mut changed = pin!(sub.changed());
/// assert!(changed.as_mut().poll(&mut cx).is_pending());
/// level.iterate_commit(|tr| tr[&level] = 1);
/// match changed.poll(&mut cx) {
///     Poll::Ready(shot) => assert_eq!(shot[&level], 1),
///     Poll::Pending => unreachable!("the commit above woke it"),
/// }
/// ```
pub struct AsyncSubscription {
    sub: Subscription,
    id: u64,
}

impl fmt::Debug for AsyncSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sub.fmt(f)
    }
}

impl AsyncSubscription {
    /// Resolves when the subtree differs from the last state returned,
    /// to the newest state. Cancel-safe (dropping it loses nothing).
    pub async fn changed(&mut self) -> Snapshot {
        let id = self.id;
        poll_fn(|cx| {
            loop {
                if let Some(s) = self.sub.poll_change() {
                    return Poll::Ready(s);
                }
                let mut w = lock_wakers();
                match w.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, old)) => old.clone_from(cx.waker()),
                    None => {
                        w.push((id, cx.waker().clone()));
                        HUB.sleepers.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if HUB.epoch.load(Ordering::SeqCst) == self.sub.seen {
                    return Poll::Pending;
                }
                // A commit came in meanwhile: look again (the registered
                // waker stays; it costs one spurious wake at most).
            }
        })
        .await
    }

    /// The current state, taken now (see [`Subscription::snapshot`]).
    pub fn snapshot(&mut self) -> Snapshot {
        self.sub.snapshot()
    }

    /// The state last returned.
    pub fn last(&self) -> &Snapshot {
        self.sub.last()
    }
}

impl Drop for AsyncSubscription {
    fn drop(&mut self) {
        let mut w = lock_wakers();
        let before = w.len();
        w.retain(|(i, _)| *i != self.id);
        HUB.sleepers.fetch_sub(before - w.len(), Ordering::SeqCst);
    }
}

impl NodeRef {
    fn from_link(link: &Arc<Linkage>) -> NodeRef {
        NodeRef { link: link.clone() }
    }

    /// See [`Node::subscribe`].
    pub fn subscribe(&self) -> Subscription {
        Subscription::new(&self.link)
    }
}

/// Subscriptions (issue 13).
impl<P: 'static> Node<P> {
    /// A receiver of this subtree's changes: every commit that changes
    /// anything in it (also one made through an ancestor or a descendant)
    /// wakes it. The subscription starts at the state taken now.
    pub fn subscribe(&self) -> Subscription {
        Subscription::new(self.linkage())
    }

    /// [`subscribe`](Self::subscribe) for async code.
    pub fn subscribe_async(&self) -> AsyncSubscription {
        self.subscribe().into_async()
    }

    /// Waits until `cond` holds for this subtree's state, and returns that
    /// state; `None` if it did not within `timeout`. `cond` runs on the
    /// current state first, then on each changed one (not on every commit:
    /// intermediate states may be skipped, so test a level, not an edge).
    pub fn wait_until<F>(&self, timeout: Duration, mut cond: F) -> Option<Snapshot>
    where
        F: FnMut(&Snapshot) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut sub = self.subscribe();
        let mut shot = sub.last().clone();
        loop {
            if cond(&shot) {
                return Some(shot);
            }
            shot = sub.changed_until(Some(deadline))?;
        }
    }
}
