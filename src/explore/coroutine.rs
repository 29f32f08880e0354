//! A dynamic body with every shared-memory operation a scheduling point
//! (split mode): the body runs on a thread of its own that hands the baton
//! back to the scheduler right before each load or CAS of a slot or tag
//! (`crate::sync` calls [`before_op`]), so the other simulated threads run
//! between any two of its operations. Only one of the two threads runs at
//! any time, and the clock is handed over with the baton: the simulated
//! threads still share one clock, and a schedule replays exactly.
//!
//! The visited set needs the state of a suspended body. Its stack is out of
//! reach, but it is a function of where it started (the attempt's view,
//! kept) and of what each of its operations returned (kept: the wrappers
//! it loaded or failed against, the tags it read, the liveness of each
//! limbo owner it looked at). Those, canonicalised with the rest of the
//! state, are its fingerprint ([`Co::canon`]); two states that agree on
//! them agree on the body's next steps.
//!
//! A body waiting on a tag runs one real round of the wait per scheduling
//! point; a round that does not let it on is forgotten (its loads changed
//! nothing), so a blocked body's move is a self-loop, as a blocked frame's.

use super::*;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::{Condvar, Mutex};

/// What one operation of the body returned.
enum Hist {
    Load(Arc<PacketWrapper>),
    /// A CAS: `None` done, `Some(actual)` failed.
    Cas(Option<Arc<PacketWrapper>>),
    Tag(u64),
    TagCas(Result<u64, u64>),
    Owner(bool),
}

/// Where the body is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// About to run (not started yet, or right before an operation).
    Op,
    /// Waiting on a tag: the next step is a round of the wait.
    Wait,
    /// Ended: `done` holds what it left.
    Ended,
}

/// What an ended coroutine leaves.
pub(super) enum Ended {
    /// A body: the attempt, and what the body did (or its panic).
    Body {
        tr: Box<Transaction>,
        applied: Result<dynamic::Applied, Box<dyn Any + Send>>,
    },
    /// The drop of a node's last handle (or its panic).
    Dropped(Result<(), Box<dyn Any + Send>>),
}

impl Ended {
    /// Thrown away with its world (`Aborted`): nothing to hand over.
    fn aborted(&self) -> bool {
        match self {
            Ended::Body { applied, .. } => applied.as_ref().is_err_and(|p| p.is::<Aborted>()),
            Ended::Dropped(r) => r.as_ref().is_err_and(|p| p.is::<Aborted>()),
        }
    }
}

/// Where a coroutine started: what its fingerprint needs besides the
/// results of its operations.
enum Start {
    /// The attempt's view when the body started, its stamp and tags.
    Body {
        old: Arc<Packet>,
        packet: Arc<Packet>,
        snap: Option<Arc<PacketWrapper>>,
        ledger: Vec<Arc<Linkage>>,
    },
    /// The drop of node `i`'s last handle.
    Drop(usize),
}

struct Inner {
    body_turn: bool,
    abort: bool,
    clock: serial::Serial,
    hist: Vec<Hist>,
    at: At,
    done: Option<Ended>,
}

struct Shared {
    m: Mutex<Inner>,
    cv: Condvar,
    /// The slot and tag words of the world's linkages: the epoch collector
    /// may run the drop of an earlier world's tree on the body thread, and
    /// those operations are not the body's.
    words: Vec<usize>,
}

thread_local! {
    static CO: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// Inside a round of the wait: its operations are one scheduling point.
    static IN_ROUND: Cell<bool> = const { Cell::new(false) };
}

/// The unwinding payload of a body thrown away with its world.
struct Aborted;

fn shared() -> Option<Arc<Shared>> {
    CO.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// The body's shared state, if `addr` is a word of its world.
fn shared_for(addr: usize) -> Option<Arc<Shared>> {
    shared().filter(|sh| sh.words.contains(&addr))
}

/// Body thread: hands the baton to the scheduler and waits for it back.
fn hand_over(sh: &Shared, at: At) {
    let mut g = sh.m.lock().unwrap_or_else(|e| e.into_inner());
    if g.abort {
        drop(g);
        if std::thread::panicking() {
            return; // unwinding already: let the drops run through
        }
        std::panic::resume_unwind(Box::new(Aborted));
    }
    g.clock = serial::clock();
    g.at = at;
    g.body_turn = false;
    sh.cv.notify_all();
    while !g.body_turn && !g.abort {
        g = sh.cv.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    if g.abort {
        drop(g);
        if !std::thread::panicking() {
            std::panic::resume_unwind(Box::new(Aborted));
        }
        return;
    }
    serial::set_clock(g.clock);
}

fn push(addr: Option<usize>, h: Hist) {
    let sh = match addr {
        Some(a) => shared_for(a),
        None => shared(),
    };
    if let Some(sh) = sh {
        sh.m.lock().unwrap_or_else(|e| e.into_inner()).hist.push(h);
    }
}

/// `crate::sync`: a load or CAS of a slot or tag is about to happen.
pub(crate) fn before_op(addr: usize) {
    if IN_ROUND.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    if let Some(sh) = shared_for(addr) {
        hand_over(&sh, At::Op);
    }
}

/// `crate::sync`: what a slot load returned.
pub(crate) fn loaded<T: Any>(addr: usize, v: &Arc<T>) {
    if let Some(w) = (v as &dyn Any).downcast_ref::<Arc<PacketWrapper>>() {
        push(Some(addr), Hist::Load(w.clone()));
    }
}

/// `crate::sync`: how a slot CAS ended (`Some(actual)`: failed).
pub(crate) fn cas_done<T: Any>(addr: usize, failed: Option<&Arc<T>>) {
    let actual = failed.and_then(|a| (a as &dyn Any).downcast_ref::<Arc<PacketWrapper>>());
    push(Some(addr), Hist::Cas(actual.cloned()));
}

/// `crate::sync`: what a tag load returned.
pub(crate) fn tag_loaded(addr: usize, v: u64) {
    push(Some(addr), Hist::Tag(v));
}

/// `crate::sync`: how a tag CAS ended.
pub(crate) fn tag_cas_done(addr: usize, r: Result<u64, u64>) {
    push(Some(addr), Hist::TagCas(r));
}

/// `LimboOwner::live`: a shared read outside `crate::sync` (not a
/// scheduling point of its own, but an input of the body).
pub(crate) fn owner_seen(live: bool) {
    push(None, Hist::Owner(live));
}

/// `Negotiator::wait` on a body thread: one round per scheduling point;
/// returns when a round lets the body on. `false`: not a body thread.
pub(crate) fn wait(link: &Arc<Linkage>, neg: &mut Negotiator) -> bool {
    let Some(sh) = shared() else {
        return false;
    };
    loop {
        hand_over(&sh, At::Wait);
        let mark = sh.m.lock().unwrap_or_else(|e| e.into_inner()).hist.len();
        IN_ROUND.with(|r| r.set(true));
        let on = negotiation::can_proceed(link, neg) || negotiation::preempt_tag(link, neg);
        IN_ROUND.with(|r| r.set(false));
        if on {
            return true;
        }
        // Loads only, nothing learnt: the same state as before the round.
        sh.m.lock()
            .unwrap_or_else(|e| e.into_inner())
            .hist
            .truncate(mark);
    }
}

/// A body (or a drop) running on its own thread, and what the visited set
/// needs of it.
pub(super) struct Co {
    sh: Arc<Shared>,
    handle: Option<std::thread::JoinHandle<()>>,
    start: Start,
    /// The stamp of the body's attempt (0 for a drop): its tags are owned.
    pub(super) stamp: u64,
}

impl Co {
    /// Starts `edits` on `tr` on a thread of its own; it waits for the
    /// first [`resume`](Self::resume). `words`: the world's slot and tag
    /// words.
    pub(super) fn body(
        tr: Transaction,
        edits: Vec<dynamic::Edit>,
        nodes: Vec<Node<u32>>,
        words: Vec<usize>,
    ) -> Co {
        let start = Start::Body {
            old: tr.old.clone(),
            packet: tr.packet.clone(),
            snap: tr.snap_wrapper.clone(),
            ledger: tr.neg.ledger().to_vec(),
        };
        let stamp = tr.neg.stamp;
        Co::spawn(words, start, stamp, move || {
            let mut tr = tr;
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                dynamic::apply(&mut tr, &edits, &nodes)
            }));
            // Its handles go before the baton does (a node the world has
            // dropped may go with them: `Linkage::drop` runs in this step).
            drop(nodes);
            Ended::Body {
                tr: Box::new(tr),
                applied,
            }
        })
    }

    /// Drops `node` (node `i`'s last handle held by the world) on a thread
    /// of its own: `Linkage::drop`'s operations are scheduling points.
    pub(super) fn drop_node(i: usize, node: Node<u32>, words: Vec<usize>) -> Co {
        Co::spawn(words, Start::Drop(i), 0, move || {
            Ended::Dropped(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || drop(node),
            )))
        })
    }

    fn spawn(
        words: Vec<usize>,
        start: Start,
        stamp: u64,
        job: impl FnOnce() -> Ended + Send + 'static,
    ) -> Co {
        let sh = Arc::new(Shared {
            m: Mutex::new(Inner {
                body_turn: false,
                abort: false,
                clock: 0,
                hist: Vec::new(),
                at: At::Op,
                done: None,
            }),
            cv: Condvar::new(),
            words,
        });
        let body_sh = sh.clone();
        let handle = std::thread::spawn(move || {
            let own = serial::clock();
            {
                let mut g = body_sh.m.lock().unwrap_or_else(|e| e.into_inner());
                while !g.body_turn && !g.abort {
                    g = body_sh.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                if g.abort {
                    return;
                }
                serial::set_clock(g.clock);
            }
            CO.with(|c| *c.borrow_mut() = Some(body_sh.clone()));
            let ended = job();
            CO.with(|c| *c.borrow_mut() = None);
            let clock = serial::clock();
            // This thread's own id goes back to the pool, not the baton's.
            serial::set_clock(own);
            if ended.aborted() {
                drop(ended);
                return;
            }
            let mut g = body_sh.m.lock().unwrap_or_else(|e| e.into_inner());
            g.clock = clock;
            g.at = At::Ended;
            g.done = Some(ended);
            g.body_turn = false;
            body_sh.cv.notify_all();
        });
        Co {
            sh,
            handle: Some(handle),
            start,
            stamp,
        }
    }

    /// Runs the body to its next operation (or wait round, or end).
    /// `Some`: it ended.
    pub(super) fn resume(&mut self) -> (&'static str, Option<Ended>) {
        let mut g = self.sh.m.lock().unwrap_or_else(|e| e.into_inner());
        let name = match (&self.start, g.at) {
            (Start::Drop(_), _) => "drop_handle(op)",
            (_, At::Wait) => "body(wait)",
            _ => "body(op)",
        };
        g.clock = serial::clock();
        g.body_turn = true;
        self.sh.cv.notify_all();
        while g.body_turn {
            g = self.sh.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        serial::set_clock(g.clock);
        let done = g.done.take();
        drop(g);
        if done.is_some() {
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
        (name, done)
    }

    /// The body's fingerprint: its starting view and what its operations
    /// returned, and whether it waits.
    pub(super) fn canon(&self, c: &mut Canon) {
        match &self.start {
            Start::Body {
                old,
                packet,
                snap,
                ledger,
            } => {
                c.n(0);
                c.packet(old);
                c.packet(packet);
                c.opt_wrapper(snap.as_ref());
                c.stamp(self.stamp);
                c.n(ledger.len() as u64);
                for l in ledger {
                    c.link(l);
                }
            }
            Start::Drop(i) => {
                c.n(1);
                c.n(*i as u64);
            }
        }
        let g = self.sh.m.lock().unwrap_or_else(|e| e.into_inner());
        c.n(u64::from(g.at == At::Wait));
        c.n(g.hist.len() as u64);
        for h in &g.hist {
            match h {
                Hist::Load(w) => {
                    c.n(1);
                    c.wrapper(w);
                }
                Hist::Cas(a) => {
                    c.n(2);
                    c.opt_wrapper(a.as_ref());
                }
                Hist::Tag(v) => {
                    c.n(3);
                    c.stamp(*v);
                }
                Hist::TagCas(r) => {
                    c.n(4);
                    c.n(u64::from(r.is_ok()));
                    c.stamp(r.unwrap_or_else(|v| v));
                }
                Hist::Owner(live) => {
                    c.n(5);
                    c.n(u64::from(*live));
                }
            }
        }
    }
}

impl Drop for Co {
    /// The world is thrown away: the body unwinds (its drops run their
    /// operations without handing over) and its thread ends.
    fn drop(&mut self) {
        {
            let mut g = self.sh.m.lock().unwrap_or_else(|e| e.into_inner());
            g.abort = true;
            self.sh.cv.notify_all();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
