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
//!   [`Mailbox`], with [`Coalesce`] choosing between every event, only the
//!   latest, or the latest at most once per interval.
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

use crate::snapshot::Snapshot;
use crate::transaction::Transaction;
use arc_swap::ArcSwap;
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

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
trait Sink<M>: Send + Sync {
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

/// A source of typed events of type `M`, marked in transactions.
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
    /// panic resumes on the delivering thread.
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

    /// A queue of this talker's events for a thread or an event loop to
    /// drain (e.g. a GUI thread), coalesced as `coalesce` says. Dropping
    /// the mailbox unregisters it.
    pub fn mailbox(&self, coalesce: Coalesce) -> Mailbox<M>
    where
        M: Clone,
    {
        let inner = Arc::new(MailboxInner {
            state: Mutex::new(MailboxState {
                queue: VecDeque::new(),
                closed: false,
                last_out: None,
            }),
            ready: Condvar::new(),
            coalesce,
        });
        let listener = self.register(Box::new(Post(inner.clone())));
        Mailbox {
            inner,
            _listener: listener,
        }
    }

    /// Number of listeners (mailboxes included) connected now.
    pub fn listener_count(&self) -> usize {
        self.registry.listeners.load().len()
    }

    fn register(&self, sink: Box<dyn Sink<M>>) -> Listener {
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
        marks.pending.push(Box::new(Marked { listeners, msg }));
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

/// How a [`Mailbox`] coalesces the events that wait in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coalesce {
    /// Every event, in commit order.
    All,
    /// Only the newest waiting event (latest wins): a slow reader skips
    /// intermediate states, never the last one.
    Latest,
    /// Latest wins, and [`Mailbox::recv`] returns at most once per
    /// interval (e.g. a display redrawn at ≤ 30 Hz); `try_recv` returns
    /// nothing before the interval is over.
    Interval(Duration),
}

struct MailboxState<M> {
    queue: VecDeque<Event<M>>,
    closed: bool,
    last_out: Option<Instant>,
}

struct MailboxInner<M> {
    state: Mutex<MailboxState<M>>,
    ready: Condvar,
    coalesce: Coalesce,
}

struct Post<M>(Arc<MailboxInner<M>>);

impl<M: Clone + Send> Sink<M> for Post<M> {
    fn deliver(&self, shot: &Snapshot, msg: &M) {
        let ev = Event {
            snapshot: shot.clone(),
            message: msg.clone(),
        };
        let mut st = lock(&self.0.state);
        if self.0.coalesce != Coalesce::All {
            st.queue.clear();
        }
        st.queue.push_back(ev);
        drop(st);
        self.0.ready.notify_all();
    }

    fn close(&self) {
        lock(&self.0.state).closed = true;
        self.0.ready.notify_all();
    }
}

/// Queued delivery: a talker's events wait here until a thread takes them.
///
/// ```
/// use kame_stm::{Coalesce, Node, Talker};
/// let level = Node::new(0u32);
/// let filled: Talker<u32> = Talker::new();
/// let mut gui = filled.mailbox(Coalesce::Latest);
/// for v in 1..=3 {
///     level.iterate_commit(|tr| {
///         tr[&level] = v;
///         tr.mark(&filled, v);
///     });
/// }
/// // Latest wins: the GUI thread sees one event, the last state.
/// let ev = gui.try_recv().unwrap();
/// assert_eq!((ev.message, ev.snapshot[&level]), (3, 3));
/// assert!(gui.try_recv().is_none());
/// ```
pub struct Mailbox<M> {
    inner: Arc<MailboxInner<M>>,
    _listener: Listener,
}

impl<M> fmt::Debug for Mailbox<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("coalesce", &self.inner.coalesce)
            .field("waiting", &lock(&self.inner.state).queue.len())
            .finish()
    }
}

impl<M> Mailbox<M> {
    /// The next event if one is waiting (and, with
    /// [`Coalesce::Interval`], the interval since the last one is over).
    pub fn try_recv(&mut self) -> Option<Event<M>> {
        let mut st = lock(&self.inner.state);
        if self.hold_until(&st).is_some_and(|t| t > Instant::now()) {
            return None;
        }
        self.take(&mut st)
    }

    /// Waits for the next event. `None`: the talker is gone and nothing is
    /// left.
    pub fn recv(&mut self) -> Option<Event<M>> {
        self.recv_until(None)
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event<M>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Every event waiting now (no waiting).
    pub fn drain(&mut self) -> Vec<Event<M>> {
        let mut out = Vec::new();
        while let Some(e) = self.try_recv() {
            out.push(e);
        }
        out
    }

    fn hold_until(&self, st: &MailboxState<M>) -> Option<Instant> {
        match (self.inner.coalesce, st.last_out) {
            (Coalesce::Interval(d), Some(t)) => Some(t + d),
            _ => None,
        }
    }

    fn take(&self, st: &mut MailboxState<M>) -> Option<Event<M>> {
        let ev = st.queue.pop_front()?;
        if matches!(self.inner.coalesce, Coalesce::Interval(_)) {
            st.last_out = Some(Instant::now());
        }
        Some(ev)
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Option<Event<M>> {
        let mut st = lock(&self.inner.state);
        loop {
            let now = Instant::now();
            let hold = self.hold_until(&st).filter(|&t| t > now);
            if !st.queue.is_empty() && hold.is_none() {
                return self.take(&mut st);
            }
            if st.queue.is_empty() && st.closed {
                return None;
            }
            // Wake at the end of the interval, or at the deadline.
            let until = match (hold, deadline) {
                (Some(h), Some(d)) => Some(h.min(d)),
                (h, d) => h.or(d),
            };
            if deadline.is_some_and(|d| d <= now) {
                return None;
            }
            st = match until {
                None => self.inner.ready.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    self.inner
                        .ready
                        .wait_timeout(st, t.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A listener's panic never happens while one of these is held; but a
    // poisoned lock must not turn one panic into many.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One marked event waiting for its commit.
trait Pending: Send {
    fn deliver(self: Box<Self>, shot: &Snapshot, panic: &mut Option<PanicPayload>);
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

/// The events one transaction attempt marked. Dropped with the attempt
/// when it does not commit.
#[derive(Default)]
pub(crate) struct Marks {
    pending: Vec<Box<dyn Pending>>,
    /// Place in the delivery sequence, taken under the commit lock when the
    /// attempt committed.
    seq: Option<u64>,
}

/// Next place in the delivery sequence; only advanced under the commit
/// lock (`structure::commit_locked`), so places follow commit order.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// A committed attempt's events, queued for delivery.
struct Batch {
    events: Vec<Box<dyn Pending>>,
    /// `None`: nothing to deliver, the place is only given back.
    shot: Option<Snapshot>,
    /// Nobody waits for it: any delivering thread delivers it (events
    /// marked inside a listener or inside an enclosing transaction).
    orphan: bool,
    /// The place of the `deliver` call that waits for this batch, to which
    /// a listener's panic is handed (`None`: the delivering thread's).
    claim: Option<u64>,
}

type PanicPayload = Box<dyn Any + Send>;

struct Dispatch {
    /// The place whose events are delivered next (all before it are).
    next: u64,
    waiting: BTreeMap<u64, Batch>,
    /// The thread delivering now, and the place it was called for.
    busy: Option<(ThreadId, u64)>,
    /// The last place taken by a listener's commit on the delivering
    /// thread: that thread waits for it too before it returns.
    owed: Option<u64>,
    /// Listener panics for the thread waiting on that place.
    panics: BTreeMap<u64, PanicPayload>,
}

static DISPATCH: Mutex<Dispatch> = Mutex::new(Dispatch {
    next: 0,
    waiting: BTreeMap::new(),
    busy: None,
    owed: None,
    panics: BTreeMap::new(),
});

/// Signalled whenever a delivering thread stops.
static DELIVERED: Condvar = Condvar::new();

impl Marks {
    /// Does the commit of this attempt need a place in the sequence?
    pub(crate) fn any(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Under the commit lock, right after the commit succeeded.
    pub(crate) fn take_place(&mut self) {
        self.seq = Some(SEQ.fetch_add(1, Ordering::Relaxed));
    }

    /// After the commit finished and the tags are released: delivers these
    /// events, with `shot`, in sequence, and returns once they (and what
    /// listeners marked meanwhile on this thread) were delivered, by this
    /// thread or by the one delivering already. From inside a listener, or
    /// inside an enclosing transaction's closure (whose tags a listener
    /// might need), it does not wait: the events go after the ones being
    /// delivered. A listener's panic resumes on the thread that waited for
    /// that event, after the deliveries.
    pub(crate) fn deliver(mut self, shot: &Snapshot, nested: bool) {
        let Some(seq) = self.seq.take() else {
            return;
        };
        let me = std::thread::current().id();
        let mut d = lock(&DISPATCH);
        let busy = d.busy;
        let inside_listener = busy.is_some_and(|(t, _)| t == me);
        let claim = match busy {
            Some((t, root)) if t == me => Some(root),
            _ if nested => None,
            _ => Some(seq),
        };
        d.waiting.insert(
            seq,
            Batch {
                events: std::mem::take(&mut self.pending),
                shot: Some(shot.clone()),
                orphan: nested || inside_listener,
                claim,
            },
        );
        if inside_listener {
            d.owed = Some(d.owed.map_or(seq, |o| o.max(seq)));
            return;
        }
        let root = seq;
        let mut target = seq;
        let mut mine: Option<PanicPayload> = None;
        while d.next <= target {
            let next = d.next;
            if d.busy.is_none() && d.waiting.contains_key(&next) {
                d.busy = Some((me, root));
                // Ours and everything before it; after it only what nobody
                // waits for (the others' owners take over: no thread
                // delivers forever).
                loop {
                    let next = d.next;
                    let take = d
                        .waiting
                        .get(&next)
                        .is_some_and(|b| next <= target || b.orphan);
                    if !take {
                        break;
                    }
                    let batch = d.waiting.remove(&next).expect("present");
                    drop(d);
                    let mut panic = None;
                    if let Some(shot) = &batch.shot {
                        for ev in batch.events {
                            ev.deliver(shot, &mut panic);
                        }
                    }
                    d = lock(&DISPATCH);
                    if let Some(p) = panic {
                        match batch.claim {
                            Some(c) if c != root => {
                                d.panics.entry(c).or_insert(p);
                            }
                            _ => {
                                mine.get_or_insert(p);
                            }
                        }
                    }
                    // Advanced only now: its owner returns when it sees
                    // this, and finds its panic stored.
                    d.next += 1;
                    // What our listeners marked, we wait for as well.
                    if let Some(o) = d.owed.take() {
                        target = target.max(o);
                    }
                }
                d.busy = None;
                DELIVERED.notify_all();
            } else if nested {
                // Do not wait inside an enclosing transaction.
                break;
            } else {
                d = DELIVERED.wait(d).unwrap_or_else(|e| e.into_inner());
            }
        }
        if let Some(p) = d.panics.remove(&root) {
            mine.get_or_insert(p);
        }
        drop(d);
        if let Some(p) = mine {
            resume_unwind(p);
        }
    }
}

impl Drop for Marks {
    /// A place taken but never delivered (a panic between the commit and
    /// the delivery) would stall every later delivery: give it back empty.
    fn drop(&mut self) {
        if let Some(seq) = self.seq.take() {
            let mut d = lock(&DISPATCH);
            d.waiting.insert(
                seq,
                Batch {
                    events: Vec::new(),
                    shot: None,
                    orphan: true,
                    claim: None,
                },
            );
            drop(d);
            DELIVERED.notify_all();
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
