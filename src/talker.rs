//! Talkers and listeners: typed events marked inside a transaction and
//! delivered after it committed.
//!
//! A transaction's closure may run many times, so it must not tell anyone
//! anything: whoever hears about an attempt that is then thrown away has
//! been lied to. Instead it *marks* an event on a [`Talker`]
//! ([`Transaction::mark`]); the mark is buffered in the attempt, dropped
//! with it when it fails, and delivered with the committed [`Snapshot`]
//! only after the commit succeeded and the transaction released every
//! priority tag, so a listener may itself commit. This is the
//! Talker/Listener layer of the original (northriv/KAME
//! `kamestm/transaction_signal.h`), with Rust ownership: dropping the
//! [`Listener`] guard unregisters.
//!
//! Delivery policies:
//! * [`Talker::connect`]: called on a committing thread, in commit order.
//! * [`Talker::connect_distinct`]: the same, skipping a message equal to
//!   the one delivered last (drop duplicates).
//! * [`Talker::mailbox`]: queued; a thread or an event loop drains the
//!   [`Mailbox`](crate::Mailbox), with [`Coalesce`](crate::Coalesce)
//!   choosing between every event, only the latest, or the latest at most
//!   once per interval ([`Talker::mailbox_distinct`]: duplicates dropped
//!   first).
//!
//! ```
//! use kame_stm::{Node, Talker};
//! use std::sync::{Arc, Mutex};
//!
//! let magnet = Node::new(0.0_f64); // field in tesla
//! let ramped: Talker<f64> = Talker::new();
//! let heard = Arc::new(Mutex::new(Vec::new()));
//! let h = heard.clone();
//! let _listener = ramped.connect(move |shot, field| {
//!     h.lock().unwrap().push((*field, shot.root().type_name()));
//! });
//! magnet.iterate_commit(|tr| {
//!     tr[&magnet] = 1.5;
//!     tr.mark(&ramped, 1.5); // heard once, after the commit
//! });
//! assert_eq!(heard.lock().unwrap().as_slice(), &[(1.5, "f64")]);
//! ```
//!
//! Order: marked commits are sequenced (the commit steps of a transaction
//! with marks run under the process-wide lock that already serialises
//! external inserts, `structure::commit_locked`; never while a closure runs
//! or while the commit waits on a tag), and deliveries are made in that
//! sequence by one thread at a time. So per talker, and across talkers,
//! listeners hear events in commit order, and a listener never runs
//! concurrently with another listener. The delivering thread is a thread
//! that committed a mark: usually the one whose commit it is; when another
//! thread is delivering already, that one delivers it, and the committing
//! thread waits until it has. So when `iterate_commit` returns, its events
//! were delivered (not so for a commit made inside a listener or inside
//! another transaction's closure, which does not wait: see
//! `docs/notification.md`). A transaction with no mark (or whose talkers
//! have no listener) never touches the lock.

pub(crate) use crate::delivery::Marks;
use crate::delivery::{PanicPayload, Pending};
use crate::snapshot::Snapshot;
use crate::transaction::Transaction;
use arc_swap::ArcSwap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// An event as a queued listener receives it: the message and the state it
/// was committed with.
#[derive(Clone, Debug)]
pub struct Event<M> {
    /// The snapshot the marking transaction committed (its whole subtree).
    pub snapshot: Snapshot,
    /// What was marked.
    pub message: M,
}

/// Where a listener's events go.
pub(crate) trait Sink<M>: Send + Sync {
    fn deliver(&self, shot: &Snapshot, msg: &M);
    /// The talker is gone: no event will follow the ones under way.
    fn close(&self) {}
}

struct Entry<M> {
    id: u64,
    /// Cleared by the guard's drop before it unregisters: a delivery
    /// already under way (which read the list earlier) skips it.
    alive: AtomicBool,
    sink: Box<dyn Sink<M>>,
}

type List<M> = Arc<Vec<Arc<Entry<M>>>>;

struct Registry<M> {
    listeners: ArcSwap<Vec<Arc<Entry<M>>>>,
    next_id: AtomicU64,
}

impl<M> Drop for Registry<M> {
    fn drop(&mut self) {
        for e in self.listeners.load().iter() {
            e.sink.close();
        }
    }
}

/// A source of typed events of type `M`, marked in transactions
/// ([`Transaction::mark`]) and delivered to its listeners after, and only
/// after, the attempt that committed, with the committed [`Snapshot`], in
/// commit order. Listeners: [`connect`](Self::connect),
/// [`connect_distinct`](Self::connect_distinct), and queued
/// [`mailbox`](Self::mailbox)es; the model is in `docs/notification.md`.
///
/// Cheap to clone (clones share the listeners), so it can live in a payload
/// and be copied with it. With no listener, a mark costs one load of the
/// listener list and is dropped at once.
pub struct Talker<M> {
    registry: Arc<Registry<M>>,
}

impl<M> Clone for Talker<M> {
    fn clone(&self) -> Self {
        Talker {
            registry: self.registry.clone(),
        }
    }
}

impl<M: Send + 'static> Default for Talker<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> fmt::Debug for Talker<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Talker")
            .field("listeners", &self.registry.listeners.load().len())
            .finish()
    }
}

struct Call<F>(F);

impl<M, F: Fn(&Snapshot, &M) + Send + Sync> Sink<M> for Call<F> {
    fn deliver(&self, shot: &Snapshot, msg: &M) {
        (self.0)(shot, msg)
    }
}

struct Distinct<M, F> {
    last: Mutex<Option<M>>,
    f: F,
}

impl<M, F> Sink<M> for Distinct<M, F>
where
    M: Clone + PartialEq + Send,
    F: Fn(&Snapshot, &M) + Send + Sync,
{
    fn deliver(&self, shot: &Snapshot, msg: &M) {
        {
            let mut last = lock(&self.last);
            if last.as_ref() == Some(msg) {
                return;
            }
            *last = Some(msg.clone());
        }
        (self.f)(shot, msg)
    }
}

impl<M: Send + 'static> Talker<M> {
    /// A talker with no listener.
    pub fn new() -> Self {
        Talker {
            registry: Arc::new(Registry {
                listeners: ArcSwap::from_pointee(Vec::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Calls `f` with each committed event, on a committing thread after
    /// the commit finished (outside every priority tag: `f` may commit,
    /// also with marks; those are delivered after `f` returns). `f` must
    /// not block on other threads' deliveries. Dropping the returned guard
    /// unregisters `f`, also from inside a delivery.
    ///
    /// A panic in `f` is caught; the other deliveries are made, then the
    /// panic resumes on the thread that waited for that event (the one
    /// whose commit it was, after its commit).
    #[must_use = "dropping the Listener unregisters it at once"]
    pub fn connect<F>(&self, f: F) -> Listener
    where
        F: Fn(&Snapshot, &M) + Send + Sync + 'static,
    {
        self.register(Box::new(Call(f)))
    }

    /// Like [`connect`](Self::connect), but a message equal to the one
    /// this listener heard last is skipped (drop duplicates).
    #[must_use = "dropping the Listener unregisters it at once"]
    pub fn connect_distinct<F>(&self, f: F) -> Listener
    where
        M: Clone + PartialEq,
        F: Fn(&Snapshot, &M) + Send + Sync + 'static,
    {
        self.register(Box::new(Distinct {
            last: Mutex::new(None),
            f,
        }))
    }

    /// Number of listeners (mailboxes included) connected now.
    pub fn listener_count(&self) -> usize {
        self.registry.listeners.load().len()
    }

    pub(crate) fn register(&self, sink: Box<dyn Sink<M>>) -> Listener {
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            id,
            alive: AtomicBool::new(true),
            sink,
        });
        self.registry.listeners.rcu(|list| {
            let mut v = Vec::with_capacity(list.len() + 1);
            v.extend(list.iter().cloned());
            v.push(entry.clone());
            v
        });
        let registry = Arc::downgrade(&self.registry);
        Listener {
            unregister: Some(Box::new(Unregister {
                registry,
                entry: Arc::downgrade(&entry),
                id,
            })),
        }
    }

    /// Buffers `msg` in `marks` for the listeners connected now.
    fn mark_into(&self, marks: &mut Marks, msg: M) {
        let listeners = self.registry.listeners.load_full();
        if listeners.is_empty() {
            return;
        }
        marks.push(Box::new(Marked { listeners, msg }));
    }
}

struct Unregister<M> {
    registry: Weak<Registry<M>>,
    entry: Weak<Entry<M>>,
    id: u64,
}

trait Disconnect: Send + Sync {
    fn disconnect(&self);
}

impl<M: Send + 'static> Disconnect for Unregister<M> {
    fn disconnect(&self) {
        if let Some(e) = self.entry.upgrade() {
            e.alive.store(false, Ordering::SeqCst);
        }
        if let Some(r) = self.registry.upgrade() {
            let id = self.id;
            r.listeners.rcu(|list| {
                list.iter()
                    .filter(|e| e.id != id)
                    .cloned()
                    .collect::<Vec<_>>()
            });
        }
    }
}

/// A connected listener. Dropping it unregisters: no delivery to it starts
/// after the drop (one already running on another thread finishes).
pub struct Listener {
    unregister: Option<Box<dyn Disconnect>>,
}

impl Listener {
    /// Unregisters now (the same as dropping).
    pub fn disconnect(mut self) {
        if let Some(u) = self.unregister.take() {
            u.disconnect();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(u) = self.unregister.take() {
            u.disconnect();
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Listener")
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A listener's panic never happens while one of these is held; but a
    // poisoned lock must not turn one panic into many.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Marked<M> {
    listeners: List<M>,
    msg: M,
}

impl<M: Send> Pending for Marked<M> {
    fn deliver(self: Box<Self>, shot: &Snapshot, panic: &mut Option<PanicPayload>) {
        for e in self.listeners.iter() {
            if !e.alive.load(Ordering::SeqCst) {
                continue;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| e.sink.deliver(shot, &self.msg))) {
                tracing::error!("a listener panicked; the other deliveries go on");
                panic.get_or_insert(p);
            }
        }
    }
}

impl Transaction {
    /// Marks `msg` on `talker`: if and only if this attempt commits, the
    /// talker's listeners receive it with the committed snapshot, after the
    /// commit finished. A failed attempt's marks are dropped; the next
    /// attempt marks again (the closure runs again).
    ///
    /// ```
    /// use kame_stm::{Coalesce, Node, Talker};
    /// let channel = Node::new(false); // plugged in?
    /// let plug: Talker<bool> = Talker::new();
    /// let mut log = plug.mailbox(Coalesce::All);
    /// channel.iterate_commit(|tr| {
    ///     tr[&channel] = true;
    ///     tr.mark(&plug, true);
    /// });
    /// assert_eq!(log.try_recv().map(|e| e.message), Some(true));
    /// ```
    pub fn mark<M: Send + 'static>(&mut self, talker: &Talker<M>, msg: M) {
        talker.mark_into(&mut self.marks, msg);
    }
}

/// The examples of `docs/notification.md`, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/notification.md")]
struct NotificationDoc;
