//! Exhaustive exploration of the real protocol code (test-only).
//!
//! A scheduler holds N simulated threads on one OS thread. Each runs a
//! small program of operations (stand-alone snapshots and transactions)
//! through the *real* step functions of `src/protocol/` (one
//! [`Operation::step`] per scheduling point), the real negotiation
//! (`can_proceed`, `preempt_tag`, `clear_my_tags` through the real
//! [`Negotiator`]) and the real [`Transaction`]. The retry loop of
//! `drive::drive` is re-played here on top of those pieces, one scheduling
//! point per frame step (see [`World::step`] and `docs/verification.md`).
//!
//! The search is a depth-first search over schedules with deterministic
//! replay (a state is rebuilt by re-running its schedule on a fresh tree)
//! and a visited set over a canonical abstraction of the real state
//! ([`Canon`]): every linkage's wrapper, packet (by identity and content),
//! serial and tag; each thread's frame stack, pending outcome, negotiator
//! (stamp and ledger) and program position. Serials and stamps are
//! renormalised to their ranks (the only thing the code uses of them is
//! their order and equality: every serial is minted by one clock, so a new
//! one is always above all others), thread ids of stamps are kept.
//!
//! Checked: safety invariants in every state, consistency of every
//! snapshot a reader or a transaction body sees, the final values against
//! the committed increments, no deadlock, and no reachable cycle of
//! non-completing steps that is fair (every unfinished thread moves in it;
//! a blocked thread's move is a round of `Negotiator::wait`, which may
//! change nothing): a livelock. A deadlock is such a cycle too.

use crate::drive::{self, Flow};
use crate::linkage::Linkage;
use crate::negotiation::{self, Negotiator};
use crate::node::Node;
use crate::packet::Packet;
use crate::priority::{self, Priority};
use crate::protocol::{
    CommitResult, Frame, Installed, Operation, Outcome, SnapshotFrame, Step, UnbundleFrame,
    UnbundleMode,
};
use crate::serial;
use crate::snapshot::Snapshot;
use crate::transaction::Transaction;
use crate::wrapper::PacketWrapper;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Canonical abstraction of a state.

#[derive(Clone, Copy)]
enum Tok {
    N(u64),
    Serial(u64),
    Stamp(u64),
}

/// Builds the canonical token stream of one state. Linkages are numbered by
/// their place in the configuration, packets and wrappers by first
/// encounter (their identity is what `Arc::ptr_eq` and the CASes compare).
pub(crate) struct Canon {
    toks: Vec<Tok>,
    links: Vec<usize>,
    packets: HashMap<usize, u64>,
    wrappers: HashMap<usize, u64>,
}

impl Canon {
    fn new(links: &[Arc<Linkage>]) -> Self {
        Canon {
            toks: Vec::with_capacity(512),
            links: links.iter().map(|l| Arc::as_ptr(l) as usize).collect(),
            packets: HashMap::new(),
            wrappers: HashMap::new(),
        }
    }

    pub(crate) fn n(&mut self, v: u64) {
        self.toks.push(Tok::N(v));
    }

    pub(crate) fn serial(&mut self, s: u64) {
        self.toks.push(Tok::Serial(s));
    }

    pub(crate) fn stamp(&mut self, s: u64) {
        self.toks.push(Tok::Stamp(s));
    }

    fn link_id(&self, addr: usize) -> Option<u64> {
        self.links.iter().position(|&a| a == addr).map(|i| i as u64)
    }

    pub(crate) fn link_addr(&mut self, addr: usize) {
        let id = self
            .link_id(addr)
            .expect("a linkage outside the configuration");
        self.n(id);
    }

    pub(crate) fn link(&mut self, l: &Linkage) {
        self.link_addr(std::ptr::from_ref(l) as usize);
    }

    pub(crate) fn packet(&mut self, p: &Arc<Packet>) {
        let addr = Arc::as_ptr(p) as *const () as usize;
        if let Some(&id) = self.packets.get(&addr) {
            self.n(1);
            self.n(id);
            return;
        }
        let id = self.packets.len() as u64;
        self.packets.insert(addr, id);
        self.n(2);
        self.n(u64::from(p.missing));
        self.n(payload(p).map_or(u64::MAX, u64::from));
        match &p.children {
            None => self.n(0),
            Some(ch) => {
                self.n(1 + ch.nodes.len() as u64);
                for (node, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
                    self.link(node);
                    self.opt_packet(slot.as_ref());
                }
            }
        }
    }

    pub(crate) fn opt_packet(&mut self, p: Option<&Arc<Packet>>) {
        match p {
            None => self.n(0),
            Some(p) => self.packet(p),
        }
    }

    pub(crate) fn wrapper(&mut self, w: &Arc<PacketWrapper>) {
        let addr = Arc::as_ptr(w) as usize;
        if let Some(&id) = self.wrappers.get(&addr) {
            self.n(1);
            self.n(id);
            return;
        }
        let id = self.wrappers.len() as u64;
        self.wrappers.insert(addr, id);
        self.n(2);
        match &w.bundled_by {
            None => self.n(u64::MAX),
            Some(weak) => {
                let addr = weak.as_ptr() as usize;
                let id = self.link_id(addr).unwrap_or(u64::MAX - 1);
                self.n(id);
            }
        }
        self.n(w.index as u64);
        self.serial(w.serial);
        self.opt_packet(w.packet.as_ref());
    }

    pub(crate) fn opt_wrapper(&mut self, w: Option<&Arc<PacketWrapper>>) {
        match w {
            None => self.n(0),
            Some(w) => self.wrapper(w),
        }
    }

    pub(crate) fn installed(&mut self, inst: &Installed) {
        self.n(inst.len() as u64);
        for (l, old, new) in inst {
            self.link(l);
            self.wrapper(old);
            self.wrapper(new);
        }
    }

    fn negotiator(&mut self, neg: &Negotiator) {
        self.stamp(neg.stamp);
        self.n(neg.ledger().len() as u64);
        for l in neg.ledger() {
            self.link(l);
        }
    }

    /// The state's fingerprint: serials and stamps replaced by their ranks
    /// (separately: they are never compared with each other), stamps
    /// keeping their thread id.
    fn finish(self) -> u128 {
        let mut serials: Vec<u64> = Vec::new();
        let mut stamps: Vec<u64> = Vec::new();
        for t in &self.toks {
            match *t {
                Tok::Serial(s) => serials.push(s),
                Tok::Stamp(s) if s != 0 => stamps.push(s),
                _ => {}
            }
        }
        serials.sort_unstable();
        serials.dedup();
        stamps.sort_unstable();
        stamps.dedup();
        let rank = |v: &[u64], x: u64| v.binary_search(&x).expect("collected") as u64;
        let mut h1 = std::hash::DefaultHasher::new();
        let mut h2 = std::hash::DefaultHasher::new();
        0xC0FFEEu64.hash(&mut h2);
        for t in &self.toks {
            let (kind, v) = match *t {
                Tok::N(v) => (0u8, v),
                Tok::Serial(s) => (1, rank(&serials, s)),
                Tok::Stamp(0) => (2, u64::MAX),
                Tok::Stamp(s) => (2, (rank(&stamps, s) << 16) | (s & serial::TID_MASK)),
            };
            (kind, v).hash(&mut h1);
            (kind, v).hash(&mut h2);
        }
        (u128::from(h1.finish()) << 64) | u128::from(h2.finish())
    }
}

fn payload(p: &Packet) -> Option<u32> {
    p.payload.get().downcast_ref::<u32>().copied()
}

// ---------------------------------------------------------------------------
// Configurations.

/// One operation of a simulated thread's program.
#[derive(Clone, Debug)]
pub(crate) enum OpKind {
    /// A stand-alone snapshot of `node` (`Node::snapshot`).
    Snap(usize),
    /// `iterate_commit` on `root` adding 1 to every node of `writes`; with
    /// `wait_for`, `iterate_commit_if` whose body returns `false` (retry)
    /// while that node is still 0.
    Tx {
        root: usize,
        writes: Vec<usize>,
        wait_for: Option<usize>,
    },
}

pub(crate) fn tx(root: usize, writes: &[usize]) -> OpKind {
    OpKind::Tx {
        root,
        writes: writes.to_vec(),
        wait_for: None,
    }
}

/// A tree, the programs of the threads, and pairs of nodes that are only
/// ever written together (every consistent snapshot sees them equal).
pub(crate) struct Config {
    pub(crate) name: &'static str,
    /// Builds the tree; node 0 is its root (the final check reads it).
    pub(crate) tree: fn() -> Vec<Node<u32>>,
    pub(crate) programs: Vec<Vec<OpKind>>,
    pub(crate) pairs: Vec<(usize, usize)>,
    /// The priority class of each thread's transactions and snapshots
    /// (missing entries: `Normal`), as a `PriorityScope` would set it.
    pub(crate) classes: Vec<Priority>,
}

/// P -> {C1, C2}, bundled (one snapshot of P taken): nodes [P, C1, C2].
pub(crate) fn two_level() -> Vec<Node<u32>> {
    let p = Node::new(0u32);
    let (c1, c2) = (Node::new(0u32), Node::new(0u32));
    p.insert(&c1).unwrap();
    p.insert(&c2).unwrap();
    let _ = p.snapshot();
    vec![p, c1, c2]
}

/// G -> {P -> {C1, C2}, C3}, bundled: nodes [G, P, C1, C2, C3].
pub(crate) fn three_level() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let p = Node::new(0u32);
    let (c1, c2, c3) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
    p.insert(&c1).unwrap();
    p.insert(&c2).unwrap();
    g.insert(&p).unwrap();
    g.insert(&c3).unwrap();
    let _ = g.snapshot();
    vec![g, p, c1, c2, c3]
}

/// The spec's 3-level tree: G -> P -> {C1, C2}, bundled: nodes [G, P, C1, C2].
pub(crate) fn three_level_chain() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let p = Node::new(0u32);
    let (c1, c2) = (Node::new(0u32), Node::new(0u32));
    p.insert(&c1).unwrap();
    p.insert(&c2).unwrap();
    g.insert(&p).unwrap();
    let _ = g.snapshot();
    vec![g, p, c1, c2]
}

/// A diamond with a hard link: G -> {P, Q}, P -> {C}, Q -> {C}: nodes
/// [G, P, Q, C].
pub(crate) fn diamond() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let (p, q, c) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
    p.insert(&c).unwrap();
    q.insert(&c).unwrap();
    g.insert(&p).unwrap();
    g.insert(&q).unwrap();
    let _ = g.snapshot();
    vec![g, p, q, c]
}

// ---------------------------------------------------------------------------
// The simulated world.

const TID_BASE: u64 = 100;

/// A stamp minted on the one clock for simulated thread `tid`.
fn mint(tid: u64, last: serial::Serial) -> u64 {
    (serial::counter(serial::next(last)) << 16) | tid
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pc {
    Idle,
    /// `give_priority` before an attempt's snapshot.
    Promote,
    Snap,
    Commit,
    /// `Transaction::rebase` after a conflict: the root read again.
    Rebase,
    Finished,
}

struct Sim {
    tid: u64,
    class: Priority,
    program: Vec<OpKind>,
    next_op: usize,
    pc: Pc,
    neg: Option<Negotiator>,
    tr: Option<Transaction>,
    op: Option<Operation>,
    blocked: Option<Arc<Linkage>>,
    attempt: u32,
    /// This attempt's commit was rebased once already (`drive::commit`).
    rebased: bool,
    /// Committed increments when the current snapshot started.
    lo: Vec<u32>,
    /// With split gates: the tag the next step's gate loaded already.
    gate: Option<(Arc<Linkage>, u64)>,
    /// Stamps to take instead of minting (trace validation: the ones the
    /// real thread minted, in order).
    stamps: VecDeque<u64>,
}

impl Sim {
    fn neg(&self) -> Option<&Negotiator> {
        self.tr.as_ref().map(|t| &t.neg).or(self.neg.as_ref())
    }

    fn neg_mut(&mut self) -> &mut Negotiator {
        match &mut self.tr {
            Some(t) => &mut t.neg,
            None => self
                .neg
                .as_mut()
                .expect("a running thread has a negotiator"),
        }
    }

    /// The commit of `tr`'s attempt starts (`drive::commit_once`).
    fn start_commit(&mut self, mut tr: Transaction) {
        self.op = Some(Operation::new(tr.commit_frame()));
        self.tr = Some(tr);
        self.pc = Pc::Commit;
    }

    fn kind(&self) -> &OpKind {
        &self.program[self.next_op]
    }

    /// Every unfinished thread can take a step: a blocked one runs a round
    /// of `Negotiator::wait` (which may change nothing: a self-loop).
    fn enabled(&self) -> bool {
        self.pc != Pc::Finished
    }
}

/// What one scheduling point did.
pub(crate) struct StepInfo {
    pub(crate) name: &'static str,
    pub(crate) completed: bool,
    /// The shared-memory operations of the frame step (none for the other
    /// scheduling points).
    pub(crate) ops: Vec<Op>,
}

/// One shared-memory operation of a step, named by the configuration's
/// linkage index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    SlotLoad(usize),
    SlotCas(usize, bool),
    /// The tag of the linkage, and whether it was free for the stepping
    /// thread (empty or its own).
    TagLoad(usize, bool),
    TagCas(usize, bool),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ok = |b: bool| if b { "ok" } else { "fail" };
        match *self {
            Op::SlotLoad(_) => write!(f, "load"),
            Op::SlotCas(_, b) => write!(f, "cas:{}", ok(b)),
            Op::TagLoad(_, free) => write!(f, "tag-load:{}", if free { "free" } else { "foreign" }),
            Op::TagCas(_, b) => write!(f, "tag-cas:{}", ok(b)),
        }
    }
}

/// What the explorer saw of one step function's shared-memory operations,
/// over every execution of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepOps {
    pub(crate) runs: usize,
    /// Most slot operations (loads and CASes of a linkage's wrapper) in one run.
    pub(crate) max_slot_ops: usize,
    pub(crate) slot_cas: usize,
    /// Slot CASes preceded, in the same step, by a load of that linkage's
    /// tag that found it free (the `can_proceed` gate).
    pub(crate) gated_cas: usize,
    /// Slot CASes issued after the same step saw that linkage's tag foreign.
    pub(crate) cas_past_foreign_tag: usize,
    pub(crate) failed_cas: usize,
    /// Failed slot CASes followed, in the same step, by a tag operation on
    /// that linkage (`tag_after_fail`).
    pub(crate) tagged_after_fail: usize,
    /// Runs that ended blocked (a foreign tag and no CAS).
    pub(crate) blocked: usize,
    /// Runs with a tag operation after a wrapper operation (`tag_after_fail`
    /// after a failed CAS or a conflict seen by a load).
    pub(crate) tagging: usize,
    /// Runs that CAS tags without any wrapper operation (`clear_my_tags`).
    pub(crate) clearing: usize,
    /// The distinct sequences seen.
    pub(crate) patterns: std::collections::BTreeSet<String>,
}

impl StepOps {
    fn add(&mut self, ops: &[Op]) {
        self.runs += 1;
        let slot = ops
            .iter()
            .filter(|o| matches!(o, Op::SlotLoad(_) | Op::SlotCas(..)))
            .count();
        self.max_slot_ops = self.max_slot_ops.max(slot);
        for (i, o) in ops.iter().enumerate() {
            let Op::SlotCas(l, ok) = *o else { continue };
            self.slot_cas += 1;
            let before = &ops[..i];
            if before.contains(&Op::TagLoad(l, true)) {
                self.gated_cas += 1;
            }
            if before.contains(&Op::TagLoad(l, false)) {
                self.cas_past_foreign_tag += 1;
            }
            if !ok {
                self.failed_cas += 1;
                if ops[i + 1..]
                    .iter()
                    .any(|a| matches!(*a, Op::TagLoad(x, _) | Op::TagCas(x, _) if x == l))
                {
                    self.tagged_after_fail += 1;
                }
            }
        }
        if ops.iter().any(|o| matches!(o, Op::TagLoad(_, false)))
            && !ops.iter().any(|o| matches!(o, Op::SlotCas(..)))
        {
            self.blocked += 1;
        }
        let is_slot = |o: &Op| matches!(o, Op::SlotLoad(_) | Op::SlotCas(..));
        let is_tag = |o: &Op| matches!(o, Op::TagLoad(..) | Op::TagCas(..));
        if let Some(first) = ops.iter().position(is_slot) {
            if ops[first..].iter().any(is_tag) {
                self.tagging += 1;
            }
        } else if ops.iter().any(|o| matches!(o, Op::TagCas(..))) {
            self.clearing += 1;
        }
        let p: Vec<String> = ops.iter().map(ToString::to_string).collect();
        self.patterns.insert(p.join(" "));
    }

    #[cfg_attr(feature = "no-privilege", allow(dead_code))]
    pub(crate) fn merge(&mut self, o: &StepOps) {
        self.runs += o.runs;
        self.max_slot_ops = self.max_slot_ops.max(o.max_slot_ops);
        self.slot_cas += o.slot_cas;
        self.gated_cas += o.gated_cas;
        self.cas_past_foreign_tag += o.cas_past_foreign_tag;
        self.failed_cas += o.failed_cas;
        self.tagged_after_fail += o.tagged_after_fail;
        self.blocked += o.blocked;
        self.tagging += o.tagging;
        self.clearing += o.clearing;
        self.patterns.extend(o.patterns.iter().cloned());
    }
}

pub(crate) struct World<'c> {
    cfg: &'c Config,
    /// The `can_proceed` gate's tag load is a scheduling point of its own.
    split_gates: bool,
    nodes: Vec<Node<u32>>,
    links: Vec<Arc<Linkage>>,
    threads: Vec<Sim>,
    committed: Vec<u32>,
}

impl<'c> World<'c> {
    fn new(cfg: &'c Config, split_gates: bool) -> Self {
        let nodes = (cfg.tree)();
        let links = nodes.iter().map(|n| n.link.clone()).collect();
        let threads = cfg
            .programs
            .iter()
            .enumerate()
            .map(|(i, prog)| Sim {
                tid: TID_BASE + i as u64 + 1,
                class: cfg.classes.get(i).copied().unwrap_or(Priority::Normal),
                program: prog.clone(),
                next_op: 0,
                pc: if prog.is_empty() {
                    Pc::Finished
                } else {
                    Pc::Idle
                },
                neg: None,
                tr: None,
                op: None,
                blocked: None,
                attempt: 0,
                rebased: false,
                lo: Vec::new(),
                gate: None,
                stamps: VecDeque::new(),
            })
            .collect();
        let committed = vec![0; nodes.len()];
        World {
            cfg,
            split_gates,
            nodes,
            links,
            threads,
            committed,
        }
    }

    fn replay(cfg: &'c Config, split_gates: bool, schedule: &[u8]) -> Self {
        let mut w = World::new(cfg, split_gates);
        for &t in schedule {
            w.step(usize::from(t))
                .expect("a replay reproduces its schedule");
        }
        w
    }

    fn enabled(&self) -> u8 {
        self.threads
            .iter()
            .enumerate()
            .filter(|(_, t)| t.enabled())
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    fn all_finished(&self) -> bool {
        self.threads.iter().all(|t| t.pc == Pc::Finished)
    }

    /// Upper bound of each node's value: committed, or in a commit now.
    fn hi(&self) -> Vec<u32> {
        let mut hi = self.committed.clone();
        for t in &self.threads {
            if t.pc == Pc::Commit {
                if let OpKind::Tx { writes, .. } = t.kind() {
                    for &w in writes {
                        hi[w] += 1;
                    }
                }
            }
        }
        hi
    }

    /// A snapshot (or a transaction's view) is consistent: each value lies
    /// between the increments committed before it started and those
    /// committed (or being committed) now, and pairs written together are
    /// equal.
    fn check_view(&self, lo: &[u32], value: impl Fn(usize) -> Option<u32>) -> Result<(), String> {
        let hi = self.hi();
        for i in 0..self.nodes.len() {
            if let Some(v) = value(i) {
                if v < lo[i] || v > hi[i] {
                    return Err(format!(
                        "inconsistent snapshot: node {i} = {v}, committed between {} and {}",
                        lo[i], hi[i]
                    ));
                }
            }
        }
        for &(a, b) in &self.cfg.pairs {
            if let (Some(x), Some(y)) = (value(a), value(b)) {
                if x != y {
                    return Err(format!(
                        "torn snapshot: nodes {a} and {b}, always written together, read {x} and {y}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn start_snapshot(&mut self, t: usize, node: usize) {
        let link = self.links[node].clone();
        let th = &mut self.threads[t];
        th.lo = self.committed.clone();
        th.op = Some(Operation::new(Frame::Snapshot(SnapshotFrame::new(link))));
        th.pc = Pc::Snap;
    }

    /// An attempt of the retry loop begins (`drive::drive`'s loop head):
    /// `give_priority` first when the last attempt asked for it (its load
    /// of the root is part of this step), then the snapshot.
    fn start_attempt(&mut self, t: usize, promote: bool) {
        let OpKind::Tx { root, .. } = *self.threads[t].kind() else {
            unreachable!()
        };
        self.threads[t].rebased = false;
        let link = self.links[root].clone();
        if promote {
            let w = link.load();
            if !w.has_priority() {
                let th = &mut self.threads[t];
                th.op = Some(Operation::new(Frame::from(UnbundleFrame::new(
                    link,
                    w,
                    UnbundleMode::Promote,
                ))));
                th.pc = Pc::Promote;
                return;
            }
        }
        self.start_snapshot(t, root);
    }

    /// Runs one scheduling point of thread `t`: one frame step, one round
    /// of `Negotiator::wait` (a blocked thread), or the start of an
    /// operation. A finished frame stack's hand-over to the retry loop
    /// (the body, building the commit, releasing the negotiator) is part of
    /// the step that finished it: local work, or tag clearing that follows
    /// the thread's last shared-memory operation.
    pub(crate) fn step(&mut self, t: usize) -> Result<StepInfo, String> {
        let th = &mut self.threads[t];
        if let Some(link) = th.blocked.clone() {
            let neg = th.neg_mut();
            // One round of `Negotiator::wait`'s loop, with the real gate
            // and the real preemption rule.
            let name = if negotiation::can_proceed(&link, neg) {
                "wait"
            } else if negotiation::preempt_tag(&link, neg) {
                "preempt_tag"
            } else {
                return Ok(StepInfo {
                    name: "wait(blocked)",
                    completed: false,
                    ops: Vec::new(),
                });
            };
            th.blocked = None;
            return Ok(StepInfo {
                name,
                completed: false,
                ops: Vec::new(),
            });
        }
        match th.pc {
            Pc::Finished => Err("stepped a finished thread".into()),
            Pc::Idle => {
                let stamp = th
                    .stamps
                    .pop_front()
                    .unwrap_or_else(|| priority::with_class(mint(th.tid, 0), th.class));
                th.neg = Some(Negotiator::with_stamp(stamp));
                th.attempt = 0;
                match th.kind().clone() {
                    OpKind::Snap(node) => self.start_snapshot(t, node),
                    OpKind::Tx { .. } => self.start_attempt(t, false),
                }
                Ok(StepInfo {
                    name: "begin",
                    completed: false,
                    ops: Vec::new(),
                })
            }
            Pc::Promote | Pc::Snap | Pc::Commit | Pc::Rebase => {
                let op = th.op.as_mut().expect("an operation runs");
                if self.split_gates && th.gate.is_none() {
                    if let Some(link) = op.next_gate() {
                        let v = link.tag.load(crate::sync::Ordering::Acquire);
                        th.gate = Some((link, v));
                        return Ok(StepInfo {
                            name: "can_proceed(gate load)",
                            completed: false,
                            ops: Vec::new(),
                        });
                    }
                }
                if let Some((l, v)) = th.gate.take() {
                    crate::sync::trace::set_gate(Some((std::ptr::from_ref(&l.tag) as usize, v)));
                }
                let name = op.next_step_name();
                let neg = match &mut th.tr {
                    Some(tr) => &mut tr.neg,
                    None => th.neg.as_mut().expect("negotiator"),
                };
                let stamp = neg.stamp;
                crate::sync::trace::start();
                let stepped = op.step(neg);
                crate::sync::trace::set_gate(None);
                let events = crate::sync::trace::take();
                crate::sync::trace::stop();
                let ops = self.ops_of(&events, stamp);
                let th = &mut self.threads[t];
                let completed = match stepped {
                    Step::Running => false,
                    Step::Blocked(link) => {
                        th.blocked = Some(link);
                        false
                    }
                    Step::Done => self.finish_op(t)?,
                };
                Ok(StepInfo {
                    name,
                    completed,
                    ops,
                })
            }
        }
    }

    /// A blocked thread takes over the expired tag it waits behind
    /// (`negotiation::take_expired`: a transition after
    /// `priority::PRIVILEGE_EXPIRY`, which the explorer, having no clock,
    /// never takes itself; trace validation replays it where a real run
    /// took it).
    fn take_expired(&mut self, t: usize) -> Result<StepInfo, String> {
        let th = &mut self.threads[t];
        let link = th.blocked.clone().ok_or("take_expired: not blocked")?;
        let cur = link.tag.load(crate::sync::Ordering::Acquire);
        if cur == 0 || !negotiation::take_expired(&link, th.neg_mut(), cur) {
            return Err("take_expired: the tag could not be taken over".into());
        }
        th.blocked = None;
        Ok(StepInfo {
            name: "take_expired",
            completed: false,
            ops: Vec::new(),
        })
    }

    /// Names the recorded operations by linkage.
    fn ops_of(&self, events: &[crate::sync::trace::Event], stamp: u64) -> Vec<Op> {
        ops_of(&self.links, events, stamp)
    }

    /// The frame stack of thread `t` finished: the retry loop goes on.
    /// Returns whether an operation of the program completed.
    fn finish_op(&mut self, t: usize) -> Result<bool, String> {
        let th = &mut self.threads[t];
        let outcome = th.op.take().and_then(Operation::into_outcome);
        let kind = th.kind().clone();
        match (th.pc, kind, outcome) {
            (Pc::Promote, _, _) => {
                let OpKind::Tx { root, .. } = *th.kind() else {
                    unreachable!()
                };
                self.start_snapshot(t, root);
                Ok(false)
            }
            (Pc::Snap, OpKind::Snap(node), Some(Outcome::Snapshot(r))) => {
                let shot = Snapshot {
                    root: self.links[node].clone(),
                    packet: r.packet,
                };
                let lo = std::mem::take(&mut self.threads[t].lo);
                let nodes = &self.nodes;
                self.check_view(&lo, |i| shot.get(&nodes[i]).ok().copied())?;
                let th = &mut self.threads[t];
                th.neg = None; // dropped: clears its tags
                self.complete(t);
                Ok(true)
            }
            (
                Pc::Snap,
                OpKind::Tx {
                    root,
                    writes,
                    wait_for,
                },
                Some(Outcome::Snapshot(r)),
            ) => {
                let neg = th.neg.take().expect("negotiator");
                let mut tr = Transaction::new(self.links[root].clone(), r, th.attempt, neg);
                th.attempt += 1;
                let lo = std::mem::take(&mut th.lo);
                // The body: read (check the view), maybe ask to retry, write.
                let nodes = &self.nodes;
                self.check_view(&lo, |i| tr.get(&nodes[i]).ok().copied())?;
                let flow: Flow<()> = match wait_for {
                    Some(w) if tr.get(&nodes[w]).copied() == Ok(0) => Flow::Retry,
                    _ => {
                        for &w in &writes {
                            tr[&nodes[w]] += 1;
                        }
                        Flow::Commit
                    }
                };
                let th = &mut self.threads[t];
                match flow {
                    Flow::Commit => {
                        assert!(!tr.doomed && tr.inserts.is_empty() && !tr.marks.any());
                        assert!(tr.settle_moves());
                        th.start_commit(tr);
                    }
                    Flow::Retry => {
                        let last = tr.snap_wrapper.as_ref().map_or(0, |w| w.serial);
                        drive::body_retry(&mut tr.neg, last);
                        // `body_retry` minted on this (one) OS thread: the
                        // stamp belongs to the simulated thread.
                        tr.neg.stamp = th
                            .stamps
                            .pop_front()
                            .unwrap_or_else(|| (serial::counter(tr.neg.stamp) << 16) | th.tid);
                        th.neg = Some(tr.into_negotiator());
                        self.start_attempt(t, false);
                    }
                    Flow::Stop | Flow::Fail(()) => unreachable!(),
                }
                Ok(false)
            }
            (Pc::Commit, OpKind::Tx { writes, .. }, Some(Outcome::Commit(res))) => {
                let mut tr = th.tr.take().expect("a transaction commits");
                match res {
                    CommitResult::Committed => {
                        tr.committed = true;
                        drop(tr.into_negotiator());
                        for w in writes {
                            self.committed[w] += 1;
                        }
                        self.complete(t);
                        Ok(true)
                    }
                    CommitResult::Conflict if !th.rebased && tr.may_rebase() => {
                        // `drive::commit`: once per attempt, the root is
                        // read again (steps of their own), and if it holds
                        // the state this attempt read, the commit is tried
                        // again against it.
                        th.rebased = true;
                        let root = tr.root.clone();
                        th.tr = Some(tr);
                        th.op = Some(Operation::new(Frame::Snapshot(SnapshotFrame::new(root))));
                        th.pc = Pc::Rebase;
                        Ok(false)
                    }
                    CommitResult::Conflict => {
                        self.next_attempt(t, tr);
                        Ok(false)
                    }
                }
            }
            (Pc::Rebase, OpKind::Tx { .. }, Some(Outcome::Snapshot(r))) => {
                let mut tr = th.tr.take().expect("a transaction rebases");
                if tr.rebase_onto(r) {
                    th.start_commit(tr);
                } else {
                    self.next_attempt(t, tr);
                }
                Ok(false)
            }
            (pc, kind, _) => Err(format!("unexpected outcome at {pc:?} of {kind:?}")),
        }
    }

    /// The attempt lost: the next one, with `give_priority` first if the
    /// attempt asked for it.
    fn next_attempt(&mut self, t: usize, tr: Transaction) {
        let promote = tr.wants_priority;
        self.threads[t].neg = Some(tr.into_negotiator());
        self.start_attempt(t, promote);
    }

    fn complete(&mut self, t: usize) {
        let th = &mut self.threads[t];
        th.next_op += 1;
        th.pc = if th.next_op == th.program.len() {
            Pc::Finished
        } else {
            Pc::Idle
        };
    }

    /// The state's fingerprint.
    fn canon(&self) -> u128 {
        let mut c = Canon::new(&self.links);
        for l in &self.links {
            c.wrapper(&l.load());
            c.stamp(l.tag.load(crate::sync::Ordering::Acquire));
        }
        for n in &self.committed {
            c.n(u64::from(*n));
        }
        for th in &self.threads {
            c.n(th.next_op as u64);
            c.n(th.pc as u64);
            c.n(u64::from(th.rebased));
            match th.neg() {
                None => c.n(0),
                Some(neg) => {
                    c.n(1);
                    c.negotiator(neg);
                }
            }
            match &th.blocked {
                None => c.n(u64::MAX),
                Some(l) => c.link(l),
            }
            for &v in &th.lo {
                c.n(u64::from(v));
            }
            match &th.gate {
                None => c.n(u64::MAX),
                Some((l, v)) => {
                    c.link(l);
                    c.stamp(*v);
                }
            }
            if let Some(tr) = &th.tr {
                c.packet(&tr.old);
                c.packet(&tr.packet);
                c.opt_wrapper(tr.snap_wrapper.as_ref());
                c.n(u64::from(tr.wants_priority));
            }
            match &th.op {
                None => c.n(0),
                Some(op) => {
                    c.n(op.frames().len() as u64 + 1);
                    for f in op.frames() {
                        f.canon(&mut c);
                    }
                    match op.pending().or(op.finished()) {
                        None => c.n(0),
                        Some(o) => {
                            c.n(1);
                            o.canon(&mut c);
                        }
                    }
                }
            }
        }
        c.finish()
    }

    /// State invariants: bundled references reach a priority ancestor that
    /// lists them; a complete packet's filled slots belong to children
    /// bundled into it; every tag belongs to a live transaction that has it
    /// in its ledger.
    fn check_state(&self) -> Result<(), String> {
        let id = |l: &Linkage| {
            self.links
                .iter()
                .position(|x| std::ptr::eq(Arc::as_ptr(x), l))
        };
        for (i, l) in self.links.iter().enumerate() {
            let tag = l.tag.load(crate::sync::Ordering::Acquire);
            if tag != 0 {
                let owned = self.threads.iter().any(|t| {
                    t.neg().is_some_and(|n| {
                        n.stamp == tag && n.ledger().iter().any(|x| Arc::ptr_eq(x, l))
                    })
                });
                if !owned {
                    return Err(format!(
                        "node {i}: tag {tag:#x} owned by no live transaction"
                    ));
                }
            }
            let w = l.load();
            if !w.has_priority() {
                // Walk up: must end at a priority ancestor.
                let mut cur = w.clone();
                let mut hops = 0;
                while !cur.has_priority() {
                    let parent = cur
                        .bundled_by
                        .as_ref()
                        .and_then(|p| p.upgrade())
                        .ok_or_else(|| format!("node {i}: bundled into a dropped parent"))?;
                    id(&parent).ok_or_else(|| format!("node {i}: bundled outside the tree"))?;
                    cur = parent.load();
                    hops += 1;
                    if hops > self.links.len() {
                        return Err(format!("node {i}: bundled_by chain loops"));
                    }
                }
                if w.packet.is_none() {
                    let parent = w.bundled_by.as_ref().and_then(|p| p.upgrade()).unwrap();
                    let pw = parent.load();
                    if pw.has_priority() {
                        let listed = pw
                            .own_packet()
                            .children
                            .as_ref()
                            .and_then(|c| c.position(l, w.index));
                        if listed.is_none() {
                            return Err(format!("node {i}: bundled into a parent not listing it"));
                        }
                    }
                }
            } else if w.own_packet().is_complete() {
                self.check_complete(l, w.own_packet())?;
            }
        }
        Ok(())
    }

    /// Every filled slot of the complete packet `p` of `owner` is a child
    /// bundled (or in limbo) under `owner`, recursively.
    fn check_complete(&self, owner: &Arc<Linkage>, p: &Arc<Packet>) -> Result<(), String> {
        let Some(ch) = &p.children else {
            return Ok(());
        };
        for (child, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
            let Some(slot) = slot else { continue };
            let cw = child.load();
            if cw.has_priority() || !cw.is_bundled_by(owner) {
                let i = self.links.iter().position(|x| Arc::ptr_eq(x, child));
                return Err(format!(
                    "node {i:?}: has a slot in a complete packet but is not bundled there"
                ));
            }
            self.check_complete(child, slot)?;
        }
        Ok(())
    }

    /// After every thread finished: each node holds exactly the increments
    /// committed to it, and no tag is left.
    fn check_final(&self) -> Result<(), String> {
        let shot = self.nodes[0].snapshot();
        for (i, n) in self.nodes.iter().enumerate() {
            let v = *shot
                .get(n)
                .map_err(|_| format!("node {i} missing from the final snapshot"))?;
            if v != self.committed[i] {
                return Err(format!(
                    "lost commit: node {i} = {v}, {} increments committed",
                    self.committed[i]
                ));
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            if l.tag.load(crate::sync::Ordering::Acquire) != 0 {
                return Err(format!("node {i}: a tag outlives every transaction"));
            }
        }
        Ok(())
    }

    /// Thread names for printing: T1, T2, ...
    fn thread_name(t: u8) -> String {
        format!("T{}", t + 1)
    }
}

// ---------------------------------------------------------------------------
// The search.

#[derive(Clone, Copy)]
struct Edge {
    to: u32,
    thread: u8,
    name: &'static str,
    completing: bool,
}

/// What an exploration found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) name: &'static str,
    pub(crate) states: usize,
    pub(crate) edges: usize,
    /// Longest shortest path from the initial state (TLC's "depth").
    pub(crate) depth: usize,
    pub(crate) terminal: usize,
    /// Replays (re-executions of a schedule prefix) the search needed.
    pub(crate) replays: usize,
    /// Non-trivial strongly connected components of non-completing steps.
    pub(crate) cycles: usize,
    /// Those of them that admit a fair run: livelocks.
    pub(crate) livelocks: usize,
    /// The first livelock as a lasso of step names.
    pub(crate) lasso: Option<String>,
    /// Shared-memory operations per step function.
    #[cfg_attr(feature = "no-privilege", allow(dead_code))]
    pub(crate) ops: std::collections::BTreeMap<&'static str, StepOps>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} distinct states, {} edges, depth {}, {} terminal, {} replays, \
             {} non-completing cycles (SCCs), {} fair (livelocks)",
            self.name,
            self.states,
            self.edges,
            self.depth,
            self.terminal,
            self.replays,
            self.cycles,
            self.livelocks
        )
    }
}

/// Explores every schedule of `cfg`; panics on a violated invariant (with
/// the schedule that leads there) or when more than `limit` states exist.
pub(crate) fn explore(cfg: &Config, limit: usize) -> Report {
    explore_with(cfg, limit, false)
}

/// [`explore`], optionally with the gate's tag load of every gated step
/// as a scheduling point of its own (`split_gates`): the window between a
/// step's `can_proceed` and its CAS, which the spec merges into one action.
pub(crate) fn explore_with(cfg: &Config, limit: usize, split_gates: bool) -> Report {
    struct Frontier {
        schedule: Vec<u8>,
        id: u32,
        enabled: u8,
        next: u8,
    }
    let nthreads = cfg.programs.len() as u8;
    assert!(nthreads <= 8);
    let mut ids: HashMap<u128, u32> = HashMap::new();
    let mut edges: Vec<Vec<Edge>> = Vec::new();
    let mut enabled_of: Vec<u8> = Vec::new();
    // The step that discovered each state (for error traces).
    let mut pred: Vec<Option<(u32, u8, &'static str)>> = Vec::new();
    let mut terminal = 0usize;
    let mut replays = 0usize;
    let mut step_ops: std::collections::BTreeMap<&'static str, StepOps> = Default::default();

    let trace = |pred: &[Option<(u32, u8, &'static str)>], mut s: u32| {
        let mut steps = Vec::new();
        while let Some((p, t, name)) = pred[s as usize] {
            steps.push(format!("{} {name}", World::thread_name(t)));
            s = p;
        }
        steps.reverse();
        steps.join("\n  ")
    };

    let mut world = World::new(cfg, split_gates);
    let mut at: Option<Vec<u8>> = Some(Vec::new());
    let init = world.canon();
    if let Err(e) = world.check_state() {
        panic!("{}: initial state: {e}", cfg.name);
    }
    ids.insert(init, 0);
    edges.push(Vec::new());
    let en = world.enabled();
    enabled_of.push(en);
    pred.push(None);
    let mut stack = vec![Frontier {
        schedule: Vec::new(),
        id: 0,
        enabled: en,
        next: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(t) = (top.next..nthreads).find(|&t| top.enabled & (1 << t) != 0) else {
            stack.pop();
            continue;
        };
        top.next = t + 1;
        if at.as_deref() != Some(&top.schedule[..]) {
            world = World::replay(cfg, split_gates, &top.schedule);
            replays += 1;
        }
        let from = top.id;
        let mut schedule = top.schedule.clone();
        schedule.push(t);
        let info = match world.step(usize::from(t)) {
            Ok(i) => i,
            Err(e) => panic!(
                "{}: {e}\nafter:\n  {}\n  {} (next step)",
                cfg.name,
                trace(&pred, from),
                World::thread_name(t)
            ),
        };
        if !matches!(
            info.name,
            "begin" | "wait" | "wait(blocked)" | "preempt_tag" | "can_proceed(gate load)"
        ) {
            step_ops.entry(info.name).or_default().add(&info.ops);
        }
        let h = world.canon();
        let (to, new) = match ids.get(&h) {
            Some(&id) => (id, false),
            None => {
                let id = ids.len() as u32;
                ids.insert(h, id);
                edges.push(Vec::new());
                pred.push(Some((from, t, info.name)));
                (id, true)
            }
        };
        edges[from as usize].push(Edge {
            to,
            thread: t,
            name: info.name,
            completing: info.completed,
        });
        if !new {
            if to != from {
                at = None; // the world is past the frontier's state
            } // else: a round of `wait` that changed nothing
            continue;
        }
        assert!(ids.len() <= limit, "{}: more than {limit} states", cfg.name);
        if let Err(e) = world.check_state() {
            panic!("{}: {e}\nafter:\n  {}", cfg.name, trace(&pred, to));
        }
        let en = world.enabled();
        enabled_of.push(en);
        if en == 0 {
            // (A deadlock is not a dead end here: its blocked threads
            // loop in `wait`, a fair cycle of non-completing steps.)
            assert!(world.all_finished());
            terminal += 1;
            if let Err(e) = world.check_final() {
                panic!("{}: {e}\nafter:\n  {}", cfg.name, trace(&pred, to));
            }
            at = None; // the final check took a snapshot
            continue;
        }
        at = Some(schedule.clone());
        stack.push(Frontier {
            schedule,
            id: to,
            enabled: en,
            next: 0,
        });
    }

    let depth = bfs(&edges, 0, |_| true)
        .0
        .iter()
        .filter_map(|d| *d)
        .max()
        .unwrap_or(0);
    let sccs = non_completing_sccs(&edges);
    let mut livelocks = 0;
    let mut lasso = None;
    for scc in &sccs {
        if fair(scc, &edges, &enabled_of, nthreads) {
            livelocks += 1;
            if lasso.is_none() {
                lasso = Some(print_lasso(scc, &edges, &enabled_of, nthreads));
            }
        }
    }
    Report {
        name: cfg.name,
        states: ids.len(),
        edges: edges.iter().map(Vec::len).sum(),
        depth,
        terminal,
        replays,
        cycles: sccs.len(),
        livelocks,
        lasso,
        ops: step_ops,
    }
}

/// Breadth-first distances and parents from `from`, following edges `ok` admits.
#[allow(clippy::type_complexity)]
fn bfs(
    edges: &[Vec<Edge>],
    from: u32,
    ok: impl Fn(&Edge) -> bool,
) -> (Vec<Option<usize>>, Vec<Option<(u32, Edge)>>) {
    let mut dist = vec![None; edges.len()];
    let mut parent = vec![None; edges.len()];
    dist[from as usize] = Some(0);
    let mut q = VecDeque::from([from]);
    while let Some(s) = q.pop_front() {
        let d = dist[s as usize].unwrap();
        for e in &edges[s as usize] {
            if ok(e) && dist[e.to as usize].is_none() {
                dist[e.to as usize] = Some(d + 1);
                parent[e.to as usize] = Some((s, *e));
                q.push_back(e.to);
            }
        }
    }
    (dist, parent)
}

/// Tarjan's algorithm (iterative) over the non-completing edges; returns
/// the components that contain a cycle.
fn non_completing_sccs(edges: &[Vec<Edge>]) -> Vec<Vec<u32>> {
    let n = edges.len();
    let mut index = vec![u32::MAX; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut next_index = 0u32;
    let mut out = Vec::new();
    for root in 0..n as u32 {
        if index[root as usize] != u32::MAX {
            continue;
        }
        let mut call: Vec<(u32, usize)> = vec![(root, 0)];
        index[root as usize] = next_index;
        low[root as usize] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        while let Some(&mut (v, ref mut ei)) = call.last_mut() {
            let es = &edges[v as usize];
            if *ei < es.len() {
                let e = es[*ei];
                *ei += 1;
                if e.completing {
                    continue;
                }
                let w = e.to;
                if index[w as usize] == u32::MAX {
                    index[w as usize] = next_index;
                    low[w as usize] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w as usize] = true;
                    call.push((w, 0));
                } else if on_stack[w as usize] {
                    low[v as usize] = low[v as usize].min(index[w as usize]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u as usize] = low[u as usize].min(low[v as usize]);
            }
            if low[v as usize] == index[v as usize] {
                let mut comp = Vec::new();
                loop {
                    let w = stack.pop().unwrap();
                    on_stack[w as usize] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                let cyclic =
                    comp.len() > 1 || edges[v as usize].iter().any(|e| !e.completing && e.to == v);
                if cyclic {
                    out.push(comp);
                }
            }
        }
    }
    out
}

fn in_scc(scc: &[u32], edges: &[Vec<Edge>]) -> Vec<bool> {
    let mut member = vec![false; edges.len()];
    for &s in scc {
        member[s as usize] = true;
    }
    member
}

/// Weak fairness per thread: a run that stays in `scc` forever, through
/// all of it, is fair iff every thread either moves inside it or is
/// disabled in one of its states.
fn fair(scc: &[u32], edges: &[Vec<Edge>], enabled: &[u8], nthreads: u8) -> bool {
    let member = in_scc(scc, edges);
    (0..nthreads).all(|t| {
        scc.iter().any(|&s| {
            enabled[s as usize] & (1 << t) == 0
                || edges[s as usize]
                    .iter()
                    .any(|e| e.thread == t && !e.completing && member[e.to as usize])
        })
    })
}

/// A lasso: the shortest path into `scc`, then a cycle through it that
/// gives every thread that moves in it a step.
fn print_lasso(scc: &[u32], edges: &[Vec<Edge>], enabled: &[u8], nthreads: u8) -> String {
    let member = in_scc(scc, edges);
    let (dist, parent) = bfs(edges, 0, |_| true);
    let entry = *scc
        .iter()
        .min_by_key(|&&s| dist[s as usize].unwrap_or(usize::MAX))
        .unwrap();
    let path = |parent: &[Option<(u32, Edge)>], from: u32, to: u32| {
        let mut steps = Vec::new();
        let mut s = to;
        while s != from {
            let (p, e) = parent[s as usize].expect("reachable");
            steps.push(e);
            s = p;
        }
        steps.reverse();
        steps
    };
    let fmt = |es: &[Edge]| {
        es.iter()
            .map(|e| format!("{} {}", World::thread_name(e.thread), e.name))
            .collect::<Vec<_>>()
    };
    let prefix = path(&parent, 0, entry);
    let mut cycle: Vec<Edge> = Vec::new();
    let mut cur = entry;
    let inside = |e: &Edge| !e.completing && member[e.to as usize];
    for t in 0..nthreads {
        if cycle.iter().any(|e| e.thread == t) {
            continue;
        }
        // A state of the SCC where t moves inside it (if it never does, it
        // is disabled somewhere in it: the run may leave it waiting).
        let Some((s, e)) = scc.iter().find_map(|&s| {
            edges[s as usize]
                .iter()
                .find(|e| e.thread == t && inside(e))
                .map(|e| (s, *e))
        }) else {
            continue;
        };
        let (_, par) = bfs(edges, cur, |e| inside(e));
        cycle.extend(path(&par, cur, s));
        cycle.push(e);
        cur = e.to;
    }
    let (_, par) = bfs(edges, cur, |e| inside(e));
    cycle.extend(path(&par, cur, entry));
    let _ = enabled;
    let mut out = String::new();
    out.push_str("  prefix:\n");
    for s in fmt(&prefix) {
        out.push_str(&format!("    {s}\n"));
    }
    out.push_str(&format!(
        "  cycle ({} steps, repeats forever):\n",
        cycle.len()
    ));
    for s in fmt(&cycle) {
        out.push_str(&format!("    {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests;
pub(crate) mod validate;

/// Names the recorded operations by linkage index in `links`.
fn ops_of(links: &[Arc<Linkage>], events: &[crate::sync::trace::Event], stamp: u64) -> Vec<Op> {
    use crate::sync::trace::Access;
    // Accesses to other linkages are the deferred destruction of an
    // earlier replay's trees (`Linkage::drop`), run by the epoch
    // collector whenever this step pins: not the step's.
    events
        .iter()
        .filter_map(|e| {
            let slot = links
                .iter()
                .position(|l| std::ptr::from_ref(&l.slot) as usize == e.addr);
            let tag = links
                .iter()
                .position(|l| std::ptr::from_ref(&l.tag) as usize == e.addr);
            Some(match (e.access, slot, tag) {
                (Access::SlotLoad, Some(i), _) => Op::SlotLoad(i),
                (Access::SlotCas { ok }, Some(i), _) => Op::SlotCas(i, ok),
                (Access::TagLoad { value }, _, Some(i)) => {
                    Op::TagLoad(i, value == 0 || serial::same_thread(value, stamp))
                }
                (Access::TagCas { ok }, _, Some(i)) => Op::TagCas(i, ok),
                _ => return None,
            })
        })
        .collect()
}

/// TLC's "shortcut_rev" hard link: G -> {C, P}, P -> C (G lists C first,
/// so a bundle of G collects C before it meets it again below P).
#[cfg_attr(feature = "no-privilege", allow(dead_code))]
pub(crate) fn shortcut_rev() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let (p, c) = (Node::new(0u32), Node::new(0u32));
    p.insert(&c).unwrap();
    g.insert(&c).unwrap();
    g.insert(&p).unwrap();
    let _ = g.snapshot();
    vec![g, p, c]
}
