//! Delivery of marked events: after the commit, in commit order, one
//! thread at a time (see `talker` for the model and `docs/notification.md`
//! for the rules).
//!
//! A committed attempt with marks took a place in the sequence under the
//! commit lock. Its thread queues its batch under that place and delivers
//! every batch that is in order, or, when another thread is delivering,
//! waits until that one has delivered it. A listener's panic is caught per
//! listener and handed to the thread that waits for that batch.

use crate::snapshot::Snapshot;
use crate::talker::lock;
use std::any::Any;
use std::collections::BTreeMap;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

pub(crate) type PanicPayload = Box<dyn Any + Send>;

/// One marked event waiting for its commit.
pub(crate) trait Pending: Send {
    fn deliver(self: Box<Self>, shot: &Snapshot, panic: &mut Option<PanicPayload>);
}

/// The events one transaction attempt marked. Dropped with the attempt
/// when it does not commit.
/// Boxed and absent until the first mark, so that an attempt without
/// marks (almost every one) pays one null check to create, move and drop.
#[derive(Default)]
pub(crate) struct Marks(Option<Box<MarksInner>>);

#[derive(Default)]
struct MarksInner {
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
    pub(crate) fn push(&mut self, event: Box<dyn Pending>) {
        self.0
            .get_or_insert_with(Default::default)
            .pending
            .push(event);
    }

    /// Does the commit of this attempt need a place in the sequence?
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.0.is_some()
    }

    /// Under the commit lock, right after the commit succeeded.
    pub(crate) fn take_place(&mut self) {
        if let Some(inner) = &mut self.0 {
            inner.seq = Some(SEQ.fetch_add(1, Ordering::Relaxed));
        }
    }

    /// After the commit finished and the tags are released: delivers these
    /// events, with `shot`, in sequence, and returns once they (and what
    /// listeners marked meanwhile on this thread) were delivered, by this
    /// thread or by the one delivering already. From inside a listener, or
    /// inside an enclosing transaction's closure (whose tags a listener
    /// might need), it does not wait: the events go after the ones being
    /// delivered. A listener's panic resumes on the thread that waited for
    /// that event, after the deliveries.
    #[inline(never)]
    pub(crate) fn deliver(mut self, shot: &Snapshot, nested: bool) {
        let Some(mut inner) = self.0.take() else {
            return;
        };
        let Some(seq) = inner.seq.take() else {
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
                events: std::mem::take(&mut inner.pending),
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
        if let Some(seq) = self.0.take().and_then(|inner| inner.seq) {
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
