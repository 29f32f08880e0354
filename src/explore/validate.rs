//! Trace validation of real runs (test-only).
//!
//! The explorer checks every interleaving of a tiny configuration; real
//! runs have real threads, the real driver (`drive::drive`,
//! `drive::take_snapshot`, `Negotiator::wait`) and long programs. This
//! module records real multi-threaded runs and replays each recorded trace
//! through the explorer's transition relation ([`World::step`]): the same
//! step, step by step, must have the same name and the same shared-memory
//! operations with the same results, and every state on the way must
//! satisfy the explorer's invariants (snapshot consistency, no lost commit,
//! bundled references, tags owned by live transactions). A difference is a
//! *divergence*: the code took a path the explorer does not model, or the
//! explorer models one the code does not take.
//!
//! Recording makes each scheduling point of the explorer atomic in the real
//! run: a thread takes a process-wide baton at every point the explorer
//! schedules (the start of an operation, each frame step, each round of
//! `Negotiator::wait`) and keeps it until its next one, so the work between
//! (the closure, building the commit, dropping a negotiator) stays with the
//! step before it, as in [`World::step`]. A waiting thread gives the baton
//! back before it spins or parks. The OS decides who gets the baton next:
//! the interleavings are the real scheduler's, at the explorer's
//! granularity. Stamps are the real ones (a thread's Lamport clock may lag
//! another's, which the explorer's one clock cannot show): the replay hands
//! each simulated thread the stamps its real thread minted.
//!
//! Recording also checks: a run in which every thread still running is
//! blocked with nothing changed since each found it so fails as a
//! deadlock (`Watch`), and so does a wait that goes round again after a
//! round that ended it, or returns with its gate closed (`wait_exit`).
//! A broken gate then fails the test instead of hanging it.
//!
//! Under recording the driver runs every frame through `Operation::run`
//! (not `Operation::run_frame`'s in-place loop), which steps the same frames
//! in the same order.

use super::{Config, Op, OpKind, Until, World};
use crate::linkage::Linkage;
use crate::node::Node;
use std::cell::RefCell;
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};

/// One scheduling point of a real thread, in baton order.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) thread: u8,
    pub(crate) name: &'static str,
    pub(crate) ops: Vec<Op>,
}

/// A recorded run: its events in baton order and, per thread, the stamps
/// it minted in order (operation starts and body retries).
pub(crate) struct Recorded {
    pub(crate) events: Vec<Event>,
    pub(crate) stamps: Vec<Vec<u64>>,
}

static BATON: Mutex<()> = Mutex::new(());

/// A recorded run's watch for a deadlock: the threads still running their
/// programs, and those that have been blocked (a wait round, the
/// structure lock, a limbo's owner) with no timer that could end it,
/// since the last event of any thread that was not such a block. The
/// baton makes every event atomic, so when every live thread is in that
/// set, the shared state is the one each of them found blocked, and each
/// one's next look finds it blocked again: nothing can ever move. The run
/// fails then instead of hanging (a broken gate or preemption is a failing
/// assertion, not a time-out: `docs/verification.md`).
#[derive(Default)]
struct Watch {
    live: u64,
    stalled: u64,
    /// A thread found the deadlock: every thread of the run stops.
    dead: bool,
}

struct ThreadRec {
    thread: u8,
    links: Vec<Arc<Linkage>>,
    log: Arc<Mutex<Vec<Event>>>,
    stamps: Vec<u64>,
    holding: Option<MutexGuard<'static, ()>>,
    /// The operation running is dynamic (`OpKind::Dyn`): its body is
    /// recorded as the explorer splits it (`explore::coroutine`).
    dynamic: bool,
    /// Inside such a body: each shared-memory operation on `words` is a
    /// scheduling point, frames run inside it are not.
    in_body: bool,
    /// Inside a round of a wait in the body (one scheduling point).
    in_round: bool,
    /// Inside the commit's cycle check, part of the lock's step.
    quiet: bool,
    words: Vec<usize>,
    watch: Arc<Mutex<Watch>>,
    /// The wait running has had a round that ends it (`wait`,
    /// `preempt_tag`): another round would break its contract.
    wait_ended: bool,
}

impl ThreadRec {
    /// A scheduling point: give the baton back, take it again.
    fn boundary(&mut self) {
        self.holding = None;
        std::thread::yield_now();
        self.holding = Some(BATON.lock().unwrap_or_else(PoisonError::into_inner));
        let dead = self.watch().dead;
        if dead {
            self.holding = None;
            panic!("another thread of this recorded run found it deadlocked");
        }
    }

    /// Fails the run: this thread panics, and every other thread of the
    /// run at its next scheduling point.
    fn fail(&mut self, msg: &str) -> ! {
        self.watch().dead = true;
        self.holding = None;
        panic!("{msg}");
    }

    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An event that may have changed something.
    fn push(&self, name: &'static str, ops: Vec<Op>) {
        self.watch().stalled = 0;
        self.record(name, ops);
    }

    /// An event that changed nothing: this thread found itself blocked.
    /// `timed`: a timer (an expiry, a budget) may end the block alone.
    fn push_blocked(&mut self, name: &'static str, timed: bool) {
        self.record(name, Vec::new());
        if !timed {
            let bit = 1 << self.thread;
            let mut w = self.watch();
            w.stalled |= bit;
            if w.stalled & w.live == w.live {
                drop(w);
                self.fail(&format!(
                    "deadlock: every thread of the recorded run is blocked and nothing has \
                     changed since each of them found it so ({name} on thread {})",
                    self.thread
                ));
            }
        }
    }

    fn record(&self, name: &'static str, ops: Vec<Op>) {
        debug_assert!(self.holding.is_some());
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Event {
                thread: self.thread,
                name,
                ops,
            });
    }
}

thread_local! {
    static REC: RefCell<Option<ThreadRec>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut ThreadRec) -> R) -> Option<R> {
    REC.try_with(|r| r.borrow_mut().as_mut().map(f))
        .ok()
        .flatten()
}

/// Whether this thread records.
pub(crate) fn active() -> bool {
    REC.try_with(|r| r.borrow().is_some()).unwrap_or(false)
}

/// An operation starts with `stamp` (the explorer's `begin`).
pub(crate) fn begin(stamp: u64) {
    with(|rec| {
        rec.boundary();
        rec.stamps.push(stamp);
        rec.push("begin", Vec::new());
    });
}

/// A body retry took the fresh stamp `stamp` (inside the step before).
pub(crate) fn restamp(stamp: u64) {
    with(|rec| rec.stamps.push(stamp));
}

/// A dynamic body starts (the explorer's first `body(op)`: the body's
/// local work up to its first shared-memory operation).
pub(crate) fn body_start() {
    with(|rec| {
        if rec.dynamic {
            rec.boundary();
            rec.push("body(op)", Vec::new());
            rec.in_body = true;
        }
    });
}

/// The body, and the settling of its moves, ended.
pub(crate) fn body_end() {
    with(|rec| rec.in_body = false);
}

/// `crate::sync`: a shared-memory operation on the word at `addr` is
/// about to happen; in a body, it is a scheduling point of its own.
pub(crate) fn body_op(addr: usize) {
    with(|rec| {
        if rec.in_body && !rec.in_round && !rec.quiet && rec.words.contains(&addr) {
            rec.boundary();
            rec.push("body(op)", Vec::new());
        }
    });
}

fn in_body() -> bool {
    with(|rec| rec.in_body || rec.quiet).unwrap_or(false)
}

/// Runs `f` (the commit's cycle check: loads and `Peek` walks) inside the
/// current scheduling point, as the explorer's `commit_locked` step does.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    with(|rec| rec.quiet = true);
    let r = f();
    with(|rec| rec.quiet = false);
    r
}

/// `structure::commit_locked` takes the structure lock: a scheduling point;
/// while another thread of this recorded run holds it, each try is a step
/// (`commit_locked(blocked)`). The baton goes back between tries whoever
/// holds the lock (another test's recording threads need it too).
pub(crate) fn lock_structure(lock: &'static Mutex<()>) -> Option<MutexGuard<'static, ()>> {
    let run = with(|rec| {
        rec.boundary();
        Arc::as_ptr(&rec.log) as usize
    })?;
    loop {
        let guard = match lock.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(g) = guard {
            LOCK_RUN.store(run, std::sync::atomic::Ordering::SeqCst);
            return Some(g);
        }
        with(|rec| {
            if LOCK_RUN.load(std::sync::atomic::Ordering::SeqCst) == run {
                rec.push_blocked("commit_locked(blocked)", false);
            }
            rec.boundary();
        });
    }
}

/// The recorded run (its log's address) whose thread holds the structure
/// lock; 0 for none (or a thread that does not record).
static LOCK_RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The lock was taken and the cycle check done (`acyclic`).
pub(crate) fn locked(acyclic: bool) {
    with(|rec| {
        rec.push(
            if acyclic {
                "commit_locked"
            } else {
                "commit_locked(cycle)"
            },
            Vec::new(),
        );
    });
}

/// A recording thread lets the structure lock go.
pub(crate) fn unlocking() {
    if active() {
        LOCK_RUN.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `drive` waits for the attempt that owns a limbo this one met: each
/// look at it is a scheduling point. `false`: not recording.
pub(crate) fn owner_wait(owner: &crate::limbo::LimboOwner) -> bool {
    if !active() {
        return false;
    }
    loop {
        with(ThreadRec::boundary);
        if !owner.live() {
            with(|rec| rec.push("wait_owner", Vec::new()));
            return true;
        }
        with(|rec| {
            rec.push_blocked("wait_owner(blocked)", false);
            rec.holding = None;
        });
        std::thread::yield_now();
    }
}

/// Runs one frame step (`name`, for the transaction with `stamp`) as a
/// scheduling point, recording its shared-memory operations. Inside a
/// dynamic body its operations are the body's (`body_op`).
pub(crate) fn step<R>(name: &'static str, stamp: u64, f: impl FnOnce() -> R) -> R {
    if in_body() || with(ThreadRec::boundary).is_none() {
        return f();
    }
    crate::sync::trace::start();
    let r = f();
    let accesses = crate::sync::trace::take();
    crate::sync::trace::stop();
    with(|rec| {
        let ops = super::ops_of(&super::ops::words_of(&rec.links), &accesses, stamp);
        rec.push(name, ops);
    });
    r
}

/// `Negotiator::wait` starts: in a body, its loads outside its rounds
/// (the stamp it observes, the tag it re-reads, its park) are not
/// scheduling points: the explorer's round is one.
pub(crate) fn wait_enter() {
    with(|rec| {
        rec.in_round = rec.in_body;
        rec.wait_ended = false;
    });
}

/// `Negotiator::wait` returns; `open` tells whether the gate lets it on.
/// The baton is still held since the last round, so nothing has changed
/// since that round's result: a wait that returns with its gate closed
/// broke its contract, unless it had a budget and gave up (`expired`: a
/// budget is only armed while the negotiator has not expired).
pub(crate) fn wait_exit(budget: bool, expired: bool, open: impl FnOnce() -> bool) {
    // The look at the gate goes through the `sync` shim, which calls back
    // here: not inside `with`.
    let open = !active() || (budget && expired) || open();
    with(|rec| {
        rec.in_round = false;
        if !open {
            rec.fail("a wait returned with its gate still closed");
        }
    });
}

/// A round of `Negotiator::wait` starts (a scheduling point).
pub(crate) fn wait_round() {
    with(|rec| {
        if rec.wait_ended {
            rec.fail("a wait went round again after a round that ends it");
        }
        rec.boundary();
    });
}

/// The round's result: `wait` (the gate is open), `preempt_tag`, or
/// `wait(blocked)`, after which the baton is given back while the thread
/// spins or parks. A blocked wait on `link` is timed (a timer may end it
/// with nothing else changing) when it has a budget or the tag is of a
/// yielding class (its expiry).
pub(crate) fn wait_result(name: &'static str, link: &Linkage, budget: bool) {
    // Read outside `with`, as in `wait_exit`.
    let timed = name == "wait(blocked)"
        && active()
        && (budget
            || crate::priority::class_of(link.tag.load(crate::sync::Ordering::Relaxed)).yields());
    with(|rec| {
        let blocked = name == "wait(blocked)";
        // In a body every round is the explorer's `body(wait)`.
        let name = if rec.in_body { "body(wait)" } else { name };
        if blocked {
            rec.push_blocked(name, timed);
            rec.holding = None;
        } else {
            rec.wait_ended = true;
            rec.push(name, Vec::new());
        }
    });
}

/// A waiter tried to take over an expired tag (a timed transition the
/// explorer has no clock for: the replay applies it where the run took
/// it). A failed try changed nothing and is not an event.
pub(crate) fn expiry(took: bool) {
    with(|rec| {
        if took {
            rec.push("take_expired", Vec::new());
        } else {
            rec.holding = None;
        }
    });
}

/// Between operations: the baton goes back.
fn idle() {
    with(|rec| rec.holding = None);
}

fn run_op(nodes: &[Node<u32>], op: &OpKind) {
    match op {
        OpKind::Nested { outer, inner } => {
            let OpKind::Tx {
                root, writes: w, ..
            } = &**outer
            else {
                unreachable!("a nested pair is of transactions")
            };
            nodes[*root].iterate_commit(|tr| {
                run_op(nodes, inner);
                for &w in w {
                    tr[&nodes[w]] += 1;
                }
            });
        }
        OpKind::Snap(n) => {
            std::hint::black_box(nodes[*n].snapshot());
        }
        OpKind::Drop(_) => unreachable!("real runs keep their nodes"),
        OpKind::Again => unreachable!("real runs finish"),
        OpKind::Dyn { root, edits } => {
            with(|rec| rec.dynamic = true);
            let _ = nodes[*root].try_iterate_commit(|tr| {
                if super::dynamic::apply_edits(tr, edits, nodes).abort {
                    return Err(crate::TreeError::NotAChild);
                }
                Ok::<(), crate::TreeError>(())
            });
            with(|rec| rec.dynamic = false);
        }
        OpKind::Tx {
            root,
            writes,
            until: None,
        } => {
            nodes[*root].iterate_commit(|tr| {
                for &w in writes {
                    tr[&nodes[w]] += 1;
                }
            });
        }
        OpKind::Tx {
            root,
            writes,
            until: Some(until),
        } => {
            // Does nothing while the node is still 0: retry or stop.
            let body = |tr: &mut crate::Transaction| {
                if tr[&nodes[until.node()]] == 0 {
                    return false;
                }
                for &w in writes {
                    tr[&nodes[w]] += 1;
                }
                true
            };
            match until {
                Until::Retry(_) => {
                    nodes[*root].iterate_commit_if(body);
                }
                Until::Stop(_) => {
                    let _ = nodes[*root].iterate_commit_while(body);
                }
            }
        }
    }
}

/// Runs `cfg`'s programs on real threads (one per program, started
/// together) with recording on.
pub(crate) fn record(cfg: &Config) -> Recorded {
    let nodes = Arc::new((cfg.tree)());
    let links: Vec<Arc<Linkage>> = nodes.iter().map(|n| n.link.clone()).collect();
    let log = Arc::new(Mutex::new(Vec::new()));
    let watch = Arc::new(Mutex::new(Watch {
        live: (1u64 << cfg.programs.len()) - 1,
        ..Watch::default()
    }));
    let start = Arc::new(Barrier::new(cfg.programs.len()));
    let handles: Vec<_> = cfg
        .programs
        .iter()
        .enumerate()
        .map(|(i, prog)| {
            let (nodes, links, log, start, watch) = (
                nodes.clone(),
                links.clone(),
                log.clone(),
                start.clone(),
                watch.clone(),
            );
            let words = super::ops::words_of(&links)
                .into_iter()
                .flat_map(|(a, b)| [a, b])
                .collect();
            let prog = prog.clone();
            std::thread::spawn(move || {
                REC.with(|r| {
                    *r.borrow_mut() = Some(ThreadRec {
                        thread: u8::try_from(i).expect("few threads"),
                        links,
                        log,
                        stamps: Vec::new(),
                        holding: None,
                        dynamic: false,
                        in_body: false,
                        in_round: false,
                        quiet: false,
                        words,
                        watch,
                        wait_ended: false,
                    });
                });
                start.wait();
                for op in &prog {
                    run_op(&nodes, op);
                    idle();
                }
                // Its program is done: the others may be all that is left,
                // all blocked.
                with(|rec| {
                    let mut w = rec.watch();
                    w.live &= !(1 << rec.thread);
                    if w.live != 0 && w.stalled & w.live == w.live {
                        drop(w);
                        rec.holding = Some(BATON.lock().unwrap_or_else(PoisonError::into_inner));
                        rec.fail("deadlock: every thread left of the recorded run is blocked");
                    }
                });
                REC.with(|r| r.borrow_mut().take())
                    .map(|rec| rec.stamps)
                    .unwrap_or_default()
            })
        })
        .collect();
    let stamps = handles
        .into_iter()
        .map(|h| h.join().expect("a recording thread panicked"))
        .collect();
    let events = std::mem::take(&mut *log.lock().unwrap_or_else(PoisonError::into_inner));
    Recorded { events, stamps }
}

/// Replays `rec` through the explorer's transition relation; the number of
/// steps validated, or the first divergence or violated invariant.
pub(crate) fn replay(cfg: &Config, rec: &Recorded) -> Result<usize, String> {
    let mut w = World::for_replay(cfg);
    for (t, stamps) in rec.stamps.iter().enumerate() {
        w.threads[t].stamps = stamps.iter().copied().collect();
    }
    for (i, e) in rec.events.iter().enumerate() {
        let t = usize::from(e.thread);
        let info = if e.name == "take_expired" {
            w.take_expired(t)
        } else {
            w.step(t)
        }
        .map_err(|m| format!("step {i} (T{}, {}): {m}", t + 1, e.name))?;
        if info.name != e.name || info.ops != e.ops {
            let show = |ops: &[Op]| {
                ops.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            return Err(format!(
                "divergence at step {i} of T{}: the run did {} [{}], the explorer {} [{}]",
                t + 1,
                e.name,
                show(&e.ops),
                info.name,
                show(&info.ops)
            ));
        }
        w.check_state()
            .map_err(|m| format!("after step {i}: {m}"))?;
    }
    if !w.all_finished() {
        return Err("the run ended, the replay did not".into());
    }
    w.check_final()?;
    Ok(rec.events.len())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Op, OpKind, Until, diamond, three_level, two_level, tx};
    use super::{record, replay};

    fn repeat(op: OpKind, n: usize) -> Vec<OpKind> {
        vec![op; n]
    }

    /// Records `runs` real runs of `cfg` and replays each; returns the
    /// steps validated. Panics at the first divergence. Prints what the
    /// runs did (how much they interleaved and contended: the scheduler
    /// decides, so it is reported, not asserted).
    fn validate(cfg: &Config, runs: usize) -> usize {
        // A longer sample: KAME_VALIDATE_RUNS=<n> (runs per configuration).
        let runs = std::env::var("KAME_VALIDATE_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(runs);
        let (mut steps, mut switches, mut failed, mut blocked, mut preempt) = (0, 0, 0, 0, 0);
        // Dynamic steps by kind (body operations, waits, the lock, owners).
        let mut dynamic: std::collections::BTreeMap<&'static str, usize> = Default::default();
        for r in 0..runs {
            let rec = record(cfg);
            match replay(cfg, &rec) {
                Ok(n) => steps += n,
                Err(e) => panic!("{}: run {r}: {e}", cfg.name),
            }
            switches += rec
                .events
                .windows(2)
                .filter(|w| w[0].thread != w[1].thread)
                .count();
            for e in &rec.events {
                failed += e
                    .ops
                    .iter()
                    .filter(|o| matches!(o, Op::SlotCas(_, false)))
                    .count();
                blocked += usize::from(e.name == "wait(blocked)");
                preempt += usize::from(e.name == "preempt_tag");
                if ["body", "commit_locked", "wait_owner"]
                    .iter()
                    .any(|k| e.name.starts_with(k))
                {
                    *dynamic.entry(e.name).or_default() += 1;
                }
            }
        }
        println!(
            "{}: {runs} traces, {steps} steps validated ({switches} thread switches, \
             {failed} failed CAS, {blocked} blocked wait rounds, {preempt} preemptions)",
            cfg.name
        );
        if !dynamic.is_empty() {
            let kinds: Vec<String> = dynamic.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("    {}", kinds.join(", "));
        }
        steps
    }

    fn two_level_mix() -> Config {
        Config {
            name: "2L root tx(P) vs leaf(C1) vs snapshot(P), 30 ops each",
            tree: two_level,
            programs: vec![
                repeat(tx(0, &[0, 2]), 30),
                repeat(tx(1, &[1]), 30),
                repeat(OpKind::Snap(0), 30),
            ],
            pairs: vec![(0, 2)],
            classes: Vec::new(),
        }
    }

    #[test]
    fn real_runs_replay_on_two_levels() {
        assert!(validate(&two_level_mix(), 20) > 0);
    }

    #[test]
    fn real_runs_replay_on_three_levels() {
        // G -> {P -> {C1, C2}, C3}: [G, P, C1, C2, C3].
        let cfg = Config {
            name: "3L root tx(G) vs mid tx(P) vs leaf(C1) vs snapshot(G), 15 ops each",
            tree: three_level,
            programs: vec![
                repeat(tx(0, &[0, 4]), 15),
                repeat(tx(1, &[1, 3]), 15),
                repeat(tx(2, &[2]), 15),
                repeat(OpKind::Snap(0), 15),
            ],
            pairs: vec![(0, 4), (1, 3)],
            classes: Vec::new(),
        };
        assert!(validate(&cfg, 20) > 0);
    }

    /// A body that does `until` while C1 is 0 at P, against a leaf
    /// commit at C1 and a snapshot of P, 10 operations each.
    fn body_until(until: Until, name: &'static str) -> Config {
        Config {
            name,
            tree: two_level,
            programs: vec![
                repeat(
                    OpKind::Tx {
                        root: 0,
                        writes: vec![0, 2],
                        until: Some(until),
                    },
                    10,
                ),
                repeat(tx(1, &[1]), 10),
                repeat(OpKind::Snap(0), 10),
            ],
            pairs: vec![(0, 2)],
            classes: Vec::new(),
        }
    }

    #[test]
    fn real_runs_replay_with_a_body_that_retries() {
        let cfg = body_until(
            Until::Retry(1),
            "2L iterate_commit_if(P) waiting for C1 vs leaf(C1) vs snapshot(P), 10 ops each",
        );
        assert!(validate(&cfg, 20) > 0);
    }

    #[test]
    fn real_runs_replay_with_a_body_that_stops() {
        let cfg = body_until(
            Until::Stop(1),
            "2L iterate_commit_while(P) stopping while C1 is 0 vs leaf(C1) vs snapshot(P), 10 ops each",
        );
        assert!(validate(&cfg, 20) > 0);
    }

    /// Dynamic bodies, split at every shared-memory operation as the
    /// explorer's split mode steps them: release + online insert + write
    /// of C1 (a move in place), a leaf commit at C1, a snapshot of P, and
    /// a second dynamic thread doing the same (limbos of another attempt).
    #[test]
    fn real_runs_replay_with_dynamic_bodies() {
        use super::super::dynamic::Edit::{InsertOnline, Release, Write};
        let reins = OpKind::Dyn {
            root: 0,
            edits: vec![Release(0, 1), InsertOnline(0, 1), Write(1)],
        };
        let cfg = Config {
            name: "2L reins(C1) x2 threads vs leaf(C1) vs snapshot(P), 8 ops each",
            tree: two_level,
            programs: vec![
                repeat(reins.clone(), 8),
                repeat(reins, 8),
                repeat(tx(1, &[1]), 8),
                repeat(OpKind::Snap(0), 8),
            ],
            pairs: Vec::new(),
            classes: Vec::new(),
        };
        assert!(validate(&cfg, 20) > 0);
    }

    /// Inserts from outside (the structure lock) and releases: C1 goes in
    /// and out of P while a leaf commits at it and a snapshot reads P.
    #[test]
    fn real_runs_replay_with_inserts_and_releases() {
        use super::super::dynamic::Edit::{Insert, InsertOnline, Release, Write};
        let cfg = Config {
            name: "2L release, then insert_online + write + release of C1 vs C1 inserted under C2 (a hard link) vs leaf(C1) vs snapshot(P), 8 ops each",
            tree: two_level,
            programs: vec![
                repeat(
                    OpKind::Dyn {
                        root: 0,
                        edits: vec![Release(0, 1)],
                    },
                    1,
                )
                .into_iter()
                .chain(repeat(
                    OpKind::Dyn {
                        root: 0,
                        edits: vec![InsertOnline(0, 1), Write(1), Release(0, 1)],
                    },
                    7,
                ))
                .collect(),
                repeat(
                    OpKind::Dyn {
                        root: 2,
                        edits: vec![Insert(2, 1), Write(2)],
                    },
                    8,
                ),
                repeat(tx(1, &[1]), 8),
                repeat(OpKind::Snap(0), 8),
            ],
            pairs: Vec::new(),
            classes: Vec::new(),
        };
        assert!(validate(&cfg, 20) > 0);
    }

    /// Plain inserts of C1 under P (each sealed at once) and its release,
    /// while a leaf commits at C2 and a snapshot reads P.
    #[test]
    fn real_runs_replay_with_sealed_inserts() {
        use super::super::dynamic::Edit::{Insert, Release};
        let insert = OpKind::Dyn {
            root: 0,
            edits: vec![Insert(0, 1)],
        };
        let release = OpKind::Dyn {
            root: 0,
            edits: vec![Release(0, 1)],
        };
        let cfg = Config {
            name: "2L' insert(P, C1); release(P, C1), 4 times, vs leaf(C2) vs snapshot(P), 8 ops each",
            tree: super::super::dynamic_tests::two_level_detached,
            programs: vec![
                [insert, release].into_iter().cycle().take(8).collect(),
                repeat(tx(2, &[2]), 8),
                repeat(OpKind::Snap(0), 8),
            ],
            pairs: Vec::new(),
            classes: Vec::new(),
        };
        assert!(validate(&cfg, 20) > 0);
    }

    #[test]
    fn real_runs_replay_with_a_nested_transaction() {
        let cfg = Config {
            name: "2L tx(C1) { nested tx(C2) } vs root tx(P) vs snapshot(P), 10 ops each",
            tree: two_level,
            programs: vec![
                repeat(
                    OpKind::Nested {
                        outer: Box::new(tx(1, &[1])),
                        inner: Box::new(tx(2, &[2])),
                    },
                    10,
                ),
                repeat(tx(0, &[0]), 10),
                repeat(OpKind::Snap(0), 10),
            ],
            pairs: Vec::new(),
            classes: Vec::new(),
        };
        assert!(validate(&cfg, 20) > 0);
    }

    #[test]
    fn real_runs_replay_on_a_hard_link() {
        // G -> {P, Q}, P -> C, Q -> C: [G, P, Q, C].
        let cfg = Config {
            name: "diamond root tx(G) vs tx(Q) vs leaf(C) vs snapshot(P), 10 ops each",
            tree: diamond,
            programs: vec![
                repeat(tx(0, &[0]), 10),
                repeat(tx(2, &[2, 3]), 10),
                repeat(tx(3, &[3]), 10),
                repeat(OpKind::Snap(1), 10),
            ],
            pairs: Vec::new(),
            classes: Vec::new(),
        };
        assert!(validate(&cfg, 20) > 0);
    }
}
