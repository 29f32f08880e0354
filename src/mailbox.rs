//! Queued delivery: a talker's events wait in a [`Mailbox`] until a
//! thread or an event loop takes them (a GUI draining it in its loop), so
//! slow work never runs on a committing thread. [`Coalesce`] says what
//! waits: every event, only the latest, or the latest at most once per
//! interval.

use crate::snapshot::Snapshot;
use crate::talker::{Event, Listener, Sink, Talker, lock};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

impl<M: Send + 'static> Talker<M> {
    /// A queue of this talker's events for a thread or an event loop to
    /// drain (e.g. a GUI thread), coalesced as `coalesce` says. Dropping
    /// the mailbox unregisters it.
    pub fn mailbox(&self, coalesce: Coalesce) -> Mailbox<M>
    where
        M: Clone,
    {
        self.mailbox_with(coalesce, None)
    }

    /// Like [`mailbox`](Self::mailbox), but a message equal to the last one
    /// posted to this mailbox is dropped (drop duplicates), before
    /// `coalesce` applies.
    pub fn mailbox_distinct(&self, coalesce: Coalesce) -> Mailbox<M>
    where
        M: Clone + PartialEq,
    {
        self.mailbox_with(coalesce, Some(|a: &M, b: &M| a == b))
    }

    fn mailbox_with(&self, coalesce: Coalesce, same: Option<fn(&M, &M) -> bool>) -> Mailbox<M>
    where
        M: Clone,
    {
        let inner = Arc::new(MailboxInner {
            state: Mutex::new(MailboxState {
                queue: VecDeque::new(),
                closed: false,
                last_out: None,
                last_in: None,
            }),
            ready: Condvar::new(),
            coalesce,
            same,
        });
        let listener = self.register(Box::new(Post(inner.clone())));
        Mailbox {
            inner,
            _listener: listener,
        }
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
    /// The last message posted (kept only for `mailbox_distinct`).
    last_in: Option<M>,
}

struct MailboxInner<M> {
    state: Mutex<MailboxState<M>>,
    ready: Condvar,
    coalesce: Coalesce,
    /// Drop a message equal to the last one posted.
    same: Option<fn(&M, &M) -> bool>,
}

struct Post<M>(Arc<MailboxInner<M>>);

impl<M: Clone + Send> Sink<M> for Post<M> {
    fn deliver(&self, shot: &Snapshot, msg: &M) {
        let ev = Event {
            snapshot: shot.clone(),
            message: msg.clone(),
        };
        let mut st = lock(&self.0.state);
        if let Some(same) = self.0.same {
            if st.last_in.as_ref().is_some_and(|last| same(last, msg)) {
                return;
            }
            st.last_in = Some(msg.clone());
        }
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
