//! Giving a bundled node priority again: `UnbundleWalk`,
//! `UnbundleCASAncestors`, `UnbundleCASChild`.
//!
//! Walk up the `bundled_by` chain one linkage per step to the first
//! ancestor with priority, locate the node's packet down that chain, then
//! CAS every ancestor on the chain, root first, to a copy of its packet
//! marked missing, and finally CAS the node itself to a priority wrapper.
//! Marking the ancestors first is what keeps everybody consistent: a
//! concurrent bundle of an ancestor fails its next CAS and starts over,
//! and nobody ever treats the stale slot left inside an ancestor as a
//! snapshot, because the ancestor is missing.

use super::bundle::{InProgress, Pending};
use super::{Installed, Next, Outcome, UnbundleResult};
use crate::linkage::Linkage;
use crate::negotiation::{self, Negotiator};
use crate::packet::Packet;
use crate::serial::{self, Serial};
use crate::wrapper::PacketWrapper;
use smallvec::SmallVec;
use std::sync::Arc;

/// Why the node is being unbundled, which decides what it ends up holding.
pub(crate) enum UnbundleMode {
    /// A snapshot of the node: read-only if its packet is found complete.
    Snapshot,
    /// Phase 1 of a bundle with this serial: always take priority, but
    /// report a collision if the node is already inside that bundle (an
    /// ancestor carries the serial, or is in `in_progress`: one of the
    /// nodes being bundled or collected) or will be (an ancestor is in
    /// `pending`: a child the bundle has still to collect). Sound because
    /// the decision rests on the node's loaded wrapper (bundled elsewhere):
    /// another bundle of the same parent would have taken it out of there
    /// before its own phase 2, so before this bundle could read the parent
    /// that its phase 2 expects.
    Bundle {
        serial: Serial,
        in_progress: InProgress,
        pending: Pending,
    },
    /// Take priority with the packet found (no conflict check).
    Promote,
    /// Only locate the node's packet (complete or not); never CAS.
    Peek,
    /// A transaction's commit: the node must still hold `old`; it gets `new`.
    Commit { old: Arc<Packet>, new: Arc<Packet> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnbundlePc {
    Walk,
    /// A read-only result, before it is returned: every level below the
    /// priority ancestor is loaded again (`unbundle_recheck`).
    Recheck,
    CasAncestors,
    CasChild,
}

pub(crate) struct UnbundleFrame {
    pub(crate) target: Arc<Linkage>,
    pub(crate) target_wrapper: Arc<PacketWrapper>,
    pub(crate) mode: UnbundleMode,
    pub(crate) pc: UnbundlePc,
    /// Ancestors as walked, nearest first: (linkage, wrapper seen).
    chain: SmallVec<[(Arc<Linkage>, Arc<PacketWrapper>); 4]>,
    /// The target's packet, once located.
    found: Option<Arc<Packet>>,
    /// Replacement wrappers for `chain` (same indices).
    copies: SmallVec<[Arc<PacketWrapper>; 4]>,
    /// Next chain index to CAS (counts down to 0, root first).
    cas_pos: usize,
    /// Next level to load again before a read-only result (0 = the target).
    recheck: usize,
    installed: Installed,
    /// Loop detection (Brent): the linkage remembered at the last power of
    /// two of the chain length; meeting it again means a loop.
    loop_mark: usize,
}

impl UnbundleFrame {
    pub(crate) fn new(
        target: Arc<Linkage>,
        target_wrapper: Arc<PacketWrapper>,
        mode: UnbundleMode,
    ) -> Self {
        debug_assert!(!target_wrapper.has_priority());
        UnbundleFrame {
            target,
            target_wrapper,
            mode,
            pc: UnbundlePc::Walk,
            chain: SmallVec::new(),
            found: None,
            copies: SmallVec::new(),
            cas_pos: 0,
            recheck: 0,
            installed: SmallVec::new(),
            loop_mark: 0,
        }
    }

    /// Whether `parent`, the next level up, was walked already. Brent's
    /// check: compares with one remembered linkage, moved up at every power
    /// of two, so a loop is seen by the time the walk has gone round it
    /// once after the next power of two at or above its length plus the
    /// distance to it (at most about three times that), at constant cost
    /// per level.
    fn closes_loop(&mut self, parent: &Arc<Linkage>) -> bool {
        let p = Arc::as_ptr(parent) as usize;
        let len = self.chain.len();
        if len == 0 {
            self.loop_mark = Arc::as_ptr(&self.target) as usize;
        } else if len.is_power_of_two() {
            self.loop_mark = Arc::as_ptr(&self.chain[len - 1].0) as usize;
        }
        p == self.loop_mark
    }

    pub(crate) fn step(&mut self, returned: Option<Outcome>, neg: &mut Negotiator) -> Next {
        debug_assert!(returned.is_none(), "unbundle starts no sub-operation");
        match self.pc {
            UnbundlePc::Walk => unbundle_walk(self, neg),
            UnbundlePc::Recheck => unbundle_recheck(self, neg),
            UnbundlePc::CasAncestors => unbundle_cas_ancestors(self, neg),
            UnbundlePc::CasChild => unbundle_cas_child(self, neg),
        }
    }

    /// Wrapper of chain level `j` (0 = the target itself).
    /// A race lost without a CAS (the chain moved under the walk): tag
    /// the target, as a failed CAS would, and look again. Every way of
    /// losing must tag, or a thread that keeps losing so never gets the
    /// older stamp's right of way (`tla/FINDINGS.md` #5, #8). `Peek` has
    /// no negotiator to tag with.
    fn lost_race(&self, neg: &mut Negotiator) -> Next {
        if !matches!(self.mode, UnbundleMode::Peek) {
            negotiation::tag_after_fail(&self.target, neg);
        }
        ret(UnbundleResult::Disturbed)
    }

    fn level_wrapper(&self, j: usize) -> &Arc<PacketWrapper> {
        if j == 0 {
            &self.target_wrapper
        } else {
            &self.chain[j - 1].1
        }
    }

    fn level_link(&self, j: usize) -> &Arc<Linkage> {
        if j == 0 {
            &self.target
        } else {
            &self.chain[j - 1].0
        }
    }

    /// With `chain` ending at a priority ancestor, finds the packet of every
    /// level below it (index 0 = the target), and how deep the target is
    /// reachable through listed slots: `packets[j]` for `j < inside` were
    /// found in their parent's slot (not carried by a limbo wrapper), so the
    /// target's packet is inside the packet of every level up to `inside`.
    /// `None` when a bundled level has no packet anywhere.
    fn locate(&self) -> Option<(SmallVec<[Arc<Packet>; 4]>, usize)> {
        let k = self.chain.len();
        // Built top down (level k first), then turned round.
        let mut packets: SmallVec<[Arc<Packet>; 4]> = SmallVec::with_capacity(k + 1);
        packets.push(self.chain[k - 1].1.own_packet().clone());
        let mut inside = k;
        for j in (0..k).rev() {
            let upper = packets.last().expect("level k is in");
            let w = self.level_wrapper(j);
            let link = self.level_link(j);
            let in_upper = upper
                .children
                .as_ref()
                .and_then(|ch| ch.position(link, w.index).and_then(|i| ch.slots[i].clone()));
            let packet = match (in_upper, &w.packet) {
                (Some(p), _) => p,
                // Not (yet / any more) listed there: the carried packet of a
                // limbo wrapper is the node's state.
                (None, Some(carried)) => {
                    inside = j;
                    carried.clone()
                }
                (None, None) => return None,
            };
            packets.push(packet);
        }
        packets.reverse();
        Some((packets, inside))
    }

    /// Bundle mode: is the target's packet already inside the bundle being
    /// built, i.e. inside an ancestor that carries the bundle serial or is
    /// being bundled right now?
    fn collided(&self, inside: usize) -> bool {
        let UnbundleMode::Bundle {
            serial,
            in_progress,
            pending,
        } = &self.mode
        else {
            return false;
        };
        self.chain[..inside]
            .iter()
            .any(|(l, w)| w.serial == *serial || in_progress.contains(l) || pending.contains(l))
    }

    fn prepare_cas(&mut self, packets: &[Arc<Packet>]) {
        self.copies = self
            .chain
            .iter()
            .enumerate()
            .map(|(i, (_, w))| {
                let copy = packets[i + 1].with_missing(true);
                PacketWrapper::priority(copy, serial::next(w.serial))
            })
            .collect();
        self.found = Some(packets[0].clone());
        if self.chain.is_empty() {
            self.pc = UnbundlePc::CasChild;
        } else {
            self.cas_pos = self.chain.len() - 1;
            self.pc = UnbundlePc::CasAncestors;
        }
    }
}

fn ret(r: UnbundleResult) -> Next {
    Next::Return(Outcome::Unbundle(r))
}

/// Loads the next ancestor up the chain; once it has priority, locates the
/// node's packet and decides what to do. No depth limit: inserts never
/// create a cycle and limbo wrappers naming a parent that does not list the
/// child are cleaned up when their attempt ends, so every `bundled_by`
/// chain ends at a priority ancestor (a loop seen meanwhile is a lost race),
/// and the walk is linear in its length (so is the loop check).
/// TLA+: UnbundleWalk
pub(crate) fn unbundle_walk(f: &mut UnbundleFrame, neg: &mut Negotiator) -> Next {
    let lower = f.level_wrapper(f.chain.len()).clone();
    let parent = lower.bundled_by.as_ref().and_then(|w| w.upgrade());
    let Some(parent) = parent else {
        // The parent is gone. Only a carried packet can still be current,
        // and only the target's own (ancestors above were not reached).
        if f.chain.is_empty() {
            if let Some(carried) = &lower.packet {
                let packets = [carried.clone()];
                return decide(f, &packets, neg);
            }
        }
        // Until the dropping thread's `Linkage::drop` hands the packet back
        // there is nothing to read: the caller looks again. Under loom that
        // is a spin on another thread, which loom must be told of.
        #[cfg(loom)]
        loom::thread::yield_now();
        return ret(UnbundleResult::Disturbed);
    };
    if f.closes_loop(&parent) {
        // A loop: a limbo wrapper naming a parent that no longer lists the
        // child closes it with real edges, for as long as the transaction
        // that left it takes to clean it up (`Transaction`'s drop). Look
        // again; the lost race enters the negotiation like any other.
        return f.lost_race(neg);
    }
    let pw = parent.load();
    let root = pw.has_priority();
    f.chain.push((parent, pw));
    if !root {
        return Next::Stay;
    }
    match f.locate() {
        Some((_, inside)) if f.collided(inside) => ret(UnbundleResult::Collided),
        Some((packets, _)) => decide(f, &packets, neg),
        None => {
            // Moved while we walked: the lost race enters the negotiation.
            f.lost_race(neg)
        }
    }
}

fn decide(f: &mut UnbundleFrame, packets: &[Arc<Packet>], neg: &mut Negotiator) -> Next {
    let found = &packets[0];
    match &f.mode {
        UnbundleMode::Snapshot if found.is_complete() => return read_only(f, found),
        UnbundleMode::Peek => return read_only(f, found),
        UnbundleMode::Commit { old, .. } if !Arc::ptr_eq(old, found) => {
            // The commit lost without a failed CAS: someone committed to the
            // node (maybe through an ancestor's bundle). Tag the node and
            // every ancestor walked, so that when this transaction is the
            // oldest, neither leaf nor scope committers can overtake its
            // next attempt (defect 5 of issue 9).
            negotiation::tag_after_fail(&f.target, neg);
            for (link, _) in &f.chain {
                negotiation::tag_after_fail(link, neg);
            }
            return ret(UnbundleResult::SubvalueChanged);
        }
        _ => {}
    }
    f.prepare_cas(packets);
    Next::Stay
}

/// A read-only result rests on loads made one after another, bottom up:
/// the target's wrapper first, the priority ancestor's last. Between them
/// the target may have left the limbo or bundle it was in and the ancestors
/// moved on (a commit elsewhere), so the packet found combines an old
/// wrapper with newer ancestors: the carried packet of a limbo whose
/// attempt never committed, or a slot older than the target's own commit
/// (found by the history test in release builds: `Phantom`, stale reads;
/// `tla/FINDINGS.md`). The CASing modes need nothing more (each CAS checks
/// its level); a read-only one loads every level below the ancestor again
/// (`unbundle_recheck`): unchanged, they held when the ancestor was read.
fn read_only(f: &mut UnbundleFrame, found: &Arc<Packet>) -> Next {
    f.found = Some(found.clone());
    f.recheck = 0;
    f.pc = UnbundlePc::Recheck;
    Next::Stay
}

/// Loads one level below the priority ancestor again (the target first);
/// when all are unchanged, returns the packet found. A changed one is a
/// lost race of a reader: look again, and tag the target as every lost
/// race does. Untagged, a reader whose walk a writer keeps undoing (an
/// endless insert and release of the node) looked again for ever
/// (`tla/FINDINGS.md` #8).
/// TLA+: UnbundleRecheck
pub(crate) fn unbundle_recheck(f: &mut UnbundleFrame, neg: &mut Negotiator) -> Next {
    let j = f.recheck;
    let same = Arc::ptr_eq(&f.level_link(j).load(), f.level_wrapper(j));
    if !same {
        return f.lost_race(neg);
    }
    f.recheck += 1;
    // Levels 0..k-1 (the priority ancestor, level k, was loaded last).
    if f.recheck >= f.chain.len() {
        let found = f.found.clone().expect("set by read_only");
        return ret(UnbundleResult::Found(found));
    }
    Next::Stay
}

/// CASes one ancestor (root first) to a copy of its packet marked missing.
/// TLA+: UnbundleCASAncestors
pub(crate) fn unbundle_cas_ancestors(f: &mut UnbundleFrame, neg: &mut Negotiator) -> Next {
    let i = f.cas_pos;
    let (link, expected) = &f.chain[i];
    if !negotiation::can_proceed(link, neg) {
        return Next::Blocked(link.clone());
    }
    let next = f.copies[i].clone();
    match link.slot.compare_exchange(expected, next.clone()) {
        Ok(()) => {
            negotiation::tag_after_success(link, neg);
            f.installed.push((link.clone(), expected.clone(), next));
            if i == 0 {
                f.pc = UnbundlePc::CasChild;
            } else {
                f.cas_pos -= 1;
            }
            Next::Stay
        }
        Err(_) => {
            negotiation::tag_after_fail(link, neg);
            ret(UnbundleResult::Disturbed)
        }
    }
}

/// CASes the node itself to priority, holding its found (or new) packet.
/// TLA+: UnbundleCASChild
pub(crate) fn unbundle_cas_child(f: &mut UnbundleFrame, neg: &mut Negotiator) -> Next {
    if !negotiation::can_proceed(&f.target, neg) {
        return Next::Blocked(f.target.clone());
    }
    let packet = match &f.mode {
        UnbundleMode::Commit { new, .. } => new.clone(),
        _ => f.found.clone().expect("located before the CAS"),
    };
    let last = f
        .chain
        .first()
        .map_or(f.target_wrapper.serial, |c| c.1.serial);
    let next = PacketWrapper::priority(packet, serial::next(last.max(f.target_wrapper.serial)));
    match f
        .target
        .slot
        .compare_exchange(&f.target_wrapper, next.clone())
    {
        Ok(()) => {
            negotiation::tag_after_success(&f.target, neg);
            let mut installed = std::mem::take(&mut f.installed);
            installed.push((f.target.clone(), f.target_wrapper.clone(), next));
            ret(UnbundleResult::NewSubvalue(installed))
        }
        Err(_) => {
            negotiation::tag_after_fail(&f.target, neg);
            ret(UnbundleResult::Disturbed)
        }
    }
}

/// The frame's whole state for the explorer's visited set (`crate::explore`).
#[cfg(all(test, not(loom)))]
impl UnbundleFrame {
    /// The linkage the next step gates on (`crate::explore`).
    pub(crate) fn next_gate(&self) -> Option<Arc<Linkage>> {
        match self.pc {
            UnbundlePc::CasAncestors => Some(self.chain[self.cas_pos].0.clone()),
            UnbundlePc::CasChild => Some(self.target.clone()),
            UnbundlePc::Walk | UnbundlePc::Recheck => None,
        }
    }

    pub(crate) fn canon(&self, c: &mut crate::explore::Canon) {
        c.link(&self.target);
        c.wrapper(&self.target_wrapper);
        match &self.mode {
            UnbundleMode::Snapshot => c.n(1),
            UnbundleMode::Bundle {
                serial,
                in_progress,
                pending,
            } => {
                c.n(2);
                c.serial(*serial);
                in_progress.canon(c);
                pending.canon(c);
            }
            UnbundleMode::Promote => c.n(3),
            UnbundleMode::Peek => c.n(4),
            UnbundleMode::Commit { old, new } => {
                c.n(5);
                c.packet(old);
                c.packet(new);
            }
        }
        c.n(self.pc as u64);
        c.n(self.chain.len() as u64);
        for (l, w) in &self.chain {
            c.link(l);
            c.wrapper(w);
        }
        c.opt_packet(self.found.as_ref());
        c.n(self.copies.len() as u64);
        for w in &self.copies {
            c.wrapper(w);
        }
        c.n(self.cas_pos as u64);
        c.n(self.recheck as u64);
        c.installed(&self.installed);
        if self.loop_mark == 0 {
            c.n(u64::MAX);
        } else {
            c.link_addr(self.loop_mark);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::limbo::LimboOwner;
    use crate::node::Node;

    /// Walks up from `target` (a snapshot's unbundle) for at most `limit`
    /// steps: its result, and the tags it left.
    fn walk(target: &Node<u32>, limit: usize) -> (UnbundleResult, usize) {
        let mut f = UnbundleFrame::new(
            target.link.clone(),
            target.link.load(),
            UnbundleMode::Snapshot,
        );
        let mut neg = Negotiator::with_stamp(crate::drive::snapshot_stamp());
        for _ in 0..limit {
            match f.step(None, &mut neg) {
                Next::Stay => {}
                Next::Return(Outcome::Unbundle(r)) => return (r, neg.ledger().len()),
                _ => panic!("a walk asks for nothing else"),
            }
        }
        panic!("the walk did not end within {limit} steps");
    }

    /// A limbo wrapper naming a parent that is itself bundled into the
    /// child closes a loop of `bundled_by` edges until its attempt cleans
    /// it up. A walk up that loop must see it (Brent's check) and report
    /// a lost race within a few levels, not go round: an unbundle looks
    /// again, and by then the loop is gone.
    #[test]
    fn a_walk_round_a_limbo_loop_reports_it_within_a_few_levels() {
        for extra in 0..6 {
            // a -> b -> c1 -> ... -> c_extra, all bundled into a; then a put
            // in limbo under the deepest node.
            let a = Node::new(0u32);
            let mut chain = vec![Node::new(0u32)];
            a.insert(&chain[0]).unwrap();
            // A leaf of b: a walk from it reaches the loop one level up.
            let t = Node::new(0u32);
            chain[0].insert(&t).unwrap();
            for _ in 0..extra {
                let n = Node::new(0u32);
                chain.last().unwrap().insert(&n).unwrap();
                chain.push(n);
            }
            let _ = a.snapshot();
            // No loop yet: the walk from t finds its packet in a.
            let (found, _) = walk(&t, 100);
            assert!(
                !matches!(found, UnbundleResult::Disturbed),
                "a walk without a loop saw one"
            );
            let deepest = chain.last().unwrap();
            let w = a.link.load();
            let owner = Arc::new(LimboOwner::new());
            let limbo = PacketWrapper::limbo(
                &deepest.link,
                0,
                serial::next(w.serial),
                w.own_packet().clone(),
                &owner,
            );
            assert!(a.link.slot.compare_exchange(&w, limbo).is_ok());
            // From b (in the loop) and from t (one level below it): seen
            // after the next power of two at or above the walk's length to
            // the loop and round it, plus one lap.
            let levels = extra + 2;
            for (target, below) in [(&chain[0], 0), (&t, 1)] {
                let (result, tagged) = walk(target, 3 * (levels + below) + 2);
                assert!(
                    matches!(result, UnbundleResult::Disturbed),
                    "{levels} levels, {below} below"
                );
                // Its tag entered the negotiation, as for any lost race
                // (without privilege there are no tags).
                let tags = if cfg!(feature = "no-privilege") { 0 } else { 1 };
                assert_eq!(tagged, tags);
            }
        }
    }
}
