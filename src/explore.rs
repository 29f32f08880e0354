//! Exhaustive exploration of the real protocol code (test-only).
//!
//! A scheduler holds N simulated threads on one OS thread. Each runs a
//! small program of operations (stand-alone snapshots, transactions,
//! nested ones, and dynamic ones that insert and release: [`dynamic`])
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

mod canon;
mod check;
mod config;
pub(crate) mod coroutine;
pub(crate) mod dynamic;
#[cfg(test)]
mod dynamic_tests;
mod ops;
mod search;
mod sim;
#[cfg(test)]
mod tests;
pub(crate) mod validate;

pub(crate) use canon::Canon;
#[cfg(debug_assertions)]
pub(crate) use canon::LoneLoop;
pub(crate) use config::*;
use ops::ops_of;
pub(crate) use ops::*;
pub(crate) use search::*;
use sim::{Pc, Sim};

// ---------------------------------------------------------------------------
// The simulated world.

const TID_BASE: u64 = 100;

/// A stamp minted on the one clock for simulated thread `tid`.
fn mint(tid: u64, last: serial::Serial) -> u64 {
    (serial::counter(serial::next(last)) << 16) | tid
}

pub(crate) struct World<'c> {
    cfg: &'c Config,
    /// The `can_proceed` gate's tag load is a scheduling point of its own.
    split: bool,
    /// Every shared-memory operation of a dynamic body is a scheduling
    /// point (`coroutine`); with `split`, and in trace validation.
    split_bodies: bool,
    /// The last frame step ran in a soft attempt (`Negotiator::soft`): its
    /// failed commit CAS may go untagged (the spec's `Soft(t)` branch).
    last_soft: bool,
    nodes: Vec<Node<u32>>,
    links: Vec<Arc<Linkage>>,
    /// Each node's linkage by address (its id in the canonical state) and
    /// weakly: after `OpKind::Drop` the world no longer holds it
    /// (`nodes` and `links` then hold a stand-in that nothing uses).
    addrs: Vec<usize>,
    weak: Vec<std::sync::Weak<Linkage>>,
    /// Each linkage's slot and tag words (to name recorded operations).
    words: Vec<(usize, usize)>,
    dropped: Vec<bool>,
    /// Stand-ins for the nodes the programs drop, made up front.
    spare: Vec<Option<Node<u32>>>,
    threads: Vec<Sim>,
    committed: Vec<u32>,
    /// The thread holding the structure lock (`structure::commit_locked`).
    lock: Option<usize>,
    /// A body was abandoned half done (`dynamic`): rebuild by replay.
    spoiled: bool,
}

impl<'c> World<'c> {
    fn new(cfg: &'c Config, split: bool) -> Self {
        let nodes: Vec<Node<u32>> = (cfg.tree)();
        let links: Vec<Arc<Linkage>> = nodes.iter().map(|n| n.link.clone()).collect();
        let addrs = links.iter().map(|l| Arc::as_ptr(l) as usize).collect();
        let weak = links.iter().map(Arc::downgrade).collect();
        let words = ops::words_of(&links);
        let spare = (0..nodes.len())
            .map(|i| {
                let drops = cfg
                    .programs
                    .iter()
                    .flatten()
                    .any(|k| matches!(k, OpKind::Drop(j) if *j == i));
                drops.then(|| Node::new(0u32))
            })
            .collect();
        for prog in &cfg.programs {
            if let Some(i) = prog.iter().position(|k| matches!(k, OpKind::Again)) {
                // Values stay bounded: plain transactions (rewriting what
                // they write), snapshots, and dynamic bodies that write no
                // payload.
                let plain = |k: &OpKind| match k {
                    OpKind::Tx { until, .. } => until.is_none(),
                    OpKind::Snap(_) => true,
                    OpKind::Dyn { edits, .. } => !edits
                        .iter()
                        .any(|e| matches!(e, dynamic::Edit::Write(_) | dynamic::Edit::Abort)),
                    _ => false,
                };
                assert!(
                    i > 0 && i + 1 == prog.len() && prog[..i].iter().all(plain),
                    "{}: `Again` ends a program of plain transactions, snapshots and edits",
                    cfg.name
                );
            }
        }
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
                deferred: VecDeque::new(),
                after: None,
                stamps: VecDeque::new(),
                outer: None,
                wrote: Vec::new(),
                relock: false,
                owner: None,
                promote: false,
                co: None,
            })
            .collect();
        let committed = vec![0; nodes.len()];
        World {
            cfg,
            split,
            split_bodies: split,
            last_soft: false,
            dropped: vec![false; nodes.len()],
            nodes,
            links,
            addrs,
            weak,
            words,
            spare,
            threads,
            committed,
            lock: None,
            spoiled: false,
        }
    }

    /// `OpKind::Drop`: the world lets go of node `i` (a stand-in takes its
    /// place in `nodes` and `links`; `addrs` and `weak` still name it) and
    /// returns the real handle. Dropping it runs `Linkage::drop` if
    /// nothing else holds the linkage (else the step that lets go last
    /// does).
    fn take_node(&mut self, i: usize) -> Node<u32> {
        let spare = self.spare[i].take().expect("each node is dropped once");
        self.links[i] = spare.link.clone();
        self.dropped[i] = true;
        std::mem::replace(&mut self.nodes[i], spare)
    }

    /// Every slot and tag word of the world, flat (a coroutine's filter).
    fn word_list(&self) -> Vec<usize> {
        self.words.iter().flat_map(|&(a, b)| [a, b]).collect()
    }

    /// For trace validation: frames merged as a real run records them,
    /// dynamic bodies split.
    fn for_replay(cfg: &'c Config) -> Self {
        let mut w = World::new(cfg, false);
        w.split_bodies = true;
        w
    }

    fn replay(cfg: &'c Config, split: bool, schedule: &[u8]) -> Self {
        let mut w = World::new(cfg, split);
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
        let root = self.threads[t].kind().root();
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
        self.last_soft = false;
        let th = &mut self.threads[t];
        if let Some(w) = th.deferred.pop_front() {
            // Split: one tag write the last step queued.
            let neg = th.neg_mut();
            let stamp = neg.stamp;
            crate::sync::trace::start();
            let name = w.run(neg);
            let events = crate::sync::trace::take();
            crate::sync::trace::stop();
            let ops = self.ops_of(&events, stamp);
            let th = &mut self.threads[t];
            let completed = if th.deferred.is_empty() {
                let stepped = th.after.take().expect("the step that queued the writes");
                self.stepped(t, stepped)?
            } else {
                false
            };
            return Ok(StepInfo {
                name,
                completed,
                ops,
            });
        }
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
            if std::mem::take(&mut th.relock) {
                th.pc = Pc::Lock;
            }
            return Ok(StepInfo {
                name,
                completed: false,
                ops: Vec::new(),
            });
        }
        match th.pc {
            Pc::Finished => Err("stepped a finished thread".into()),
            Pc::Body if self.split_bodies => Ok(self.body_op(t)),
            Pc::Body => Ok(self.run_body(t)?.unwrap_or(StepInfo {
                name: "body(blocked)",
                completed: false,
                ops: Vec::new(),
            })),
            Pc::Lock => Ok(self.commit_lock(t)),
            Pc::SealStart => {
                let tr = th.tr.as_ref().expect("a committed transaction");
                let stamp = tr.neg.stamp;
                crate::sync::trace::start();
                let op = tr.seal_start();
                let events = crate::sync::trace::take();
                crate::sync::trace::stop();
                let ops = self.ops_of(&events, stamp);
                let th = &mut self.threads[t];
                match op {
                    Some(op) => {
                        th.op = Some(op);
                        th.pc = Pc::Seal;
                    }
                    None => th.pc = Pc::SealEnd,
                }
                Ok(StepInfo {
                    name: "seal_start",
                    completed: false,
                    ops,
                })
            }
            Pc::SealEnd => {
                let tr = th.tr.as_mut().expect("a sealing transaction");
                let stamp = tr.neg.stamp;
                if self.split {
                    negotiation::split::start();
                }
                crate::sync::trace::start();
                tr.seal_end();
                let events = crate::sync::trace::take();
                crate::sync::trace::stop();
                let deferred = negotiation::split::take();
                let ops = self.ops_of(&events, stamp);
                let completed = self.hand_on(t, Step::Done, deferred)?;
                Ok(StepInfo {
                    name: "seal_end",
                    completed,
                    ops,
                })
            }
            Pc::Dropping => Ok(self.body_op(t)),
            Pc::Owner => Ok(self.owner_wait(t)),
            Pc::Idle => {
                let recorded = th.stamps.pop_front();
                let stamp = match &th.outer {
                    // Nested (`drive::Entered`): the enclosing one's stamp,
                    // a negotiator of its own.
                    Some((outer, _)) => outer.neg.stamp,
                    None => {
                        recorded.unwrap_or_else(|| priority::with_class(mint(th.tid, 0), th.class))
                    }
                };
                if let OpKind::Drop(i) = *th.kind() {
                    if self.split_bodies {
                        // Its operations (`Linkage::drop`'s) are steps.
                        let node = self.take_node(i);
                        let words = self.word_list();
                        let th = &mut self.threads[t];
                        th.co = Some(coroutine::Co::drop_node(i, node, words));
                        th.pc = Pc::Dropping;
                        return Ok(StepInfo {
                            name: "drop_handle",
                            completed: false,
                            ops: Vec::new(),
                        });
                    }
                    drop(self.take_node(i));
                    self.complete(t);
                    return Ok(StepInfo {
                        name: "drop_handle",
                        completed: true,
                        ops: Vec::new(),
                    });
                }
                let th = &mut self.threads[t];
                // `drive` (a transaction) or `take_snapshot` (a reader).
                th.neg = Some(match th.kind() {
                    OpKind::Snap(_) => Negotiator::with_stamp(stamp),
                    _ => Negotiator::for_transaction(stamp),
                });
                th.attempt = 0;
                match th.kind().clone() {
                    OpKind::Snap(node) => self.start_snapshot(t, node),
                    OpKind::Tx { .. } | OpKind::Dyn { .. } => self.start_attempt(t, false),
                    OpKind::Nested { .. } => unreachable!("kind() is one of its levels"),
                    OpKind::Drop(_) => unreachable!("handled above"),
                    OpKind::Again => unreachable!("`complete` starts the program over"),
                }
                Ok(StepInfo {
                    name: "begin",
                    completed: false,
                    ops: Vec::new(),
                })
            }
            Pc::Promote | Pc::Snap | Pc::Commit | Pc::Rebase | Pc::Seal => {
                let op = th.op.as_mut().expect("an operation runs");
                if self.split && th.gate.is_none() {
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
                let soft = neg.soft > 0;
                if self.split {
                    negotiation::split::start();
                }
                crate::sync::trace::start();
                let stepped = op.step(neg);
                crate::sync::trace::set_gate(None);
                let events = crate::sync::trace::take();
                crate::sync::trace::stop();
                let deferred = negotiation::split::take();
                let ops = self.ops_of(&events, stamp);
                self.last_soft = soft;
                let completed = self.hand_on(t, stepped, deferred)?;
                Ok(StepInfo {
                    name,
                    completed,
                    ops,
                })
            }
        }
    }

    /// After a step of thread `t` that returned `stepped`: split, the tag
    /// writes it queued (`deferred`) come first, one scheduling point each,
    /// and `stepped` is handed on after them; else at once. Returns whether
    /// an operation of the program completed.
    fn hand_on(
        &mut self,
        t: usize,
        stepped: Step,
        deferred: Vec<negotiation::split::TagWrite>,
    ) -> Result<bool, String> {
        if deferred.is_empty() {
            return self.stepped(t, stepped);
        }
        let th = &mut self.threads[t];
        th.deferred = deferred.into();
        th.after = Some(stepped);
        Ok(false)
    }

    /// What follows a frame step of thread `t` that returned `stepped`
    /// (after its queued tag writes, when split). Returns whether an
    /// operation of the program completed.
    fn stepped(&mut self, t: usize, stepped: Step) -> Result<bool, String> {
        match stepped {
            Step::Running => Ok(false),
            Step::Blocked(_) | Step::Done if self.threads[t].pc == Pc::Seal => {
                // `seal_inserts`: a blocked seal is given up, never waits.
                let th = &mut self.threads[t];
                th.op = None;
                th.pc = Pc::SealEnd;
                Ok(false)
            }
            Step::Done if self.threads[t].pc == Pc::SealEnd => {
                self.end_seal(t);
                Ok(true)
            }
            Step::Blocked(link) => {
                self.threads[t].blocked = Some(link);
                self.unlock_blocked(t);
                Ok(false)
            }
            Step::Done => self.finish_op(t),
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
        ops_of(&self.words, events, stamp)
    }

    /// The frame stack of thread `t` finished: the retry loop goes on.
    /// Returns whether an operation of the program completed.
    fn finish_op(&mut self, t: usize) -> Result<bool, String> {
        let th = &mut self.threads[t];
        let outcome = th.op.take().and_then(Operation::into_outcome);
        let kind = th.kind().clone();
        match (th.pc, kind, outcome) {
            (Pc::Promote, _, _) => {
                let root = th.kind().root();
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
                    until,
                },
                Some(Outcome::Snapshot(r)),
            ) => {
                let neg = th.neg.take().expect("negotiator");
                let mut tr = Transaction::new(self.links[root].clone(), r, th.attempt, neg);
                th.attempt += 1;
                let lo = std::mem::take(&mut th.lo);
                // The body: read (check the view), maybe ask to retry or
                // stop, write.
                let nodes = &self.nodes;
                self.check_view(&lo, |i| tr.get(&nodes[i]).ok().copied())?;
                let th = &mut self.threads[t];
                if th.nested() && th.outer.is_none() {
                    // The body runs the nested transaction first (its
                    // `begin` is the next step); this one waits for it.
                    th.outer = Some((tr, th.attempt));
                    th.pc = Pc::Idle;
                    return Ok(false);
                }
                let unwritten = |u: Until| tr.get(&nodes[u.node()]).copied() == Ok(0);
                let flow: Flow<()> = match until {
                    Some(u @ Until::Retry(_)) if unwritten(u) => Flow::Retry,
                    Some(u @ Until::Stop(_)) if unwritten(u) => Flow::Stop,
                    _ => {
                        let inc = th.increment();
                        for &w in &writes {
                            tr[&nodes[w]] += inc;
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
                    Flow::Stop => {
                        // `drive`: the operation ends without a commit; its
                        // negotiator is dropped, which clears its tags.
                        drop(tr.into_negotiator());
                        self.complete(t);
                        return Ok(true);
                    }
                    Flow::Fail(()) => unreachable!(),
                }
                Ok(false)
            }
            (Pc::Snap, OpKind::Dyn { .. }, Some(Outcome::Snapshot(r))) => {
                let neg = th.neg.take().expect("negotiator");
                let root = th.kind().root();
                let tr = Transaction::new(self.links[root].clone(), r, th.attempt, neg);
                th.attempt += 1;
                let lo = std::mem::take(&mut th.lo);
                let nodes = &self.nodes;
                self.check_view(&lo, |i| tr.get(&nodes[i]).ok().copied())?;
                let th = &mut self.threads[t];
                th.tr = Some(tr);
                th.pc = Pc::Body;
                Ok(false)
            }
            (
                Pc::Commit,
                kind @ (OpKind::Tx { .. } | OpKind::Dyn { .. }),
                Some(Outcome::Commit(res)),
            ) => {
                let writes = match kind {
                    OpKind::Tx { writes, .. } => writes,
                    _ => th.wrote.clone(),
                };
                let mut tr = th.tr.take().expect("a transaction commits");
                self.unlock(t);
                let th = &mut self.threads[t];
                match res {
                    CommitResult::Committed => {
                        tr.committed = true;
                        for w in writes {
                            self.committed[w] += th.increment();
                        }
                        if tr.may_seal() {
                            // `Transaction::seal_inserts`, steps of its own.
                            th.tr = Some(tr);
                            th.pc = Pc::SealStart;
                            return Ok(false);
                        }
                        drop(tr.into_negotiator());
                        if let Some((mut outer, attempt)) = th.outer.take() {
                            // The nested transaction committed: the
                            // enclosing body goes on, writes, commits.
                            th.attempt = attempt;
                            let OpKind::Tx { writes, .. } = th.kind().clone() else {
                                unreachable!("the enclosing level is a transaction")
                            };
                            for w in writes {
                                outer[&self.nodes[w]] += 1;
                            }
                            th.start_commit(outer);
                            return Ok(false);
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
            (Pc::Rebase, OpKind::Tx { .. } | OpKind::Dyn { .. }, Some(Outcome::Snapshot(r))) => {
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
    /// `drive`: after an attempt that met another attempt's live limbo,
    /// the wait for that attempt to end comes first.
    fn next_attempt(&mut self, t: usize, mut tr: Transaction) {
        let promote = tr.wants_priority;
        let wait_for = tr.wait_for.take();
        // The drop of the attempt (its limbos cleaned up) is part of this step.
        self.threads[t].neg = Some(tr.into_negotiator());
        match wait_for {
            Some((owner, _)) => self.await_owner(t, owner, promote),
            None => self.start_attempt(t, promote),
        }
    }

    /// The seal after a commit has ended (`seal_end` done): the
    /// transaction is over, its negotiator dropped.
    fn end_seal(&mut self, t: usize) {
        let th = &mut self.threads[t];
        let tr = th.tr.take().expect("the sealing transaction");
        drop(tr.into_negotiator());
        self.complete(t);
    }

    fn complete(&mut self, t: usize) {
        let th = &mut self.threads[t];
        th.next_op += 1;
        if matches!(th.program.get(th.next_op), Some(OpKind::Again)) {
            th.next_op = 0;
        }
        th.pc = if th.next_op == th.program.len() {
            Pc::Finished
        } else {
            Pc::Idle
        };
    }

    /// Thread names for printing: T1, T2, ...
    fn thread_name(t: u8) -> String {
        format!("T{}", t + 1)
    }
}
