//! Bundling a subtree into its root's packet: `BundlePhase1` … `BundlePhase4`.
//!
//! 1. collect each child's current packet (bundling a child whose own
//!    packet is missing first, recursively, with the same bundle serial;
//!    unbundling a child that lives in another bundle);
//! 2. CAS the node to a packet holding the collected slots, still missing;
//! 3. CAS each collected child that had priority to a bundled reference;
//! 4. CAS the node to the same packet marked complete.
//!
//! Phase 3 CASes *every* collected child, also one that was already bundled
//! into this node (it is re-stamped with this bundle's serial). Skipping it
//! would be wrong: an unbundle of that child may have CASed this node to a
//! missing copy *before* this bundle read it, with its final CAS on the
//! child still to come; only a CAS on the child itself orders the two.
//! The one exception is a *seal* (`seal_phase1`), which starts from the
//! wrapper its own commit installed on a complete base.

pub(crate) use super::in_progress::InProgress;
use super::{
    BundleResult, Frame, Installed, Next, Outcome, UnbundleFrame, UnbundleMode, UnbundleResult,
};
use crate::linkage::Linkage;
use crate::negotiation::{self, Negotiator};
use crate::packet::{self, Children, Packet};
use crate::serial::Serial;
use crate::wrapper::PacketWrapper;
use smallvec::SmallVec;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BundlePc {
    Phase1,
    Phase2,
    Phase3,
    Phase4,
}

/// A child's packet as collected in phase 1.
pub(crate) struct Collected {
    packet: Option<Arc<Packet>>,
    /// The child's wrapper as seen in phase 1, which phase 3 turns into a
    /// bundled reference; `None` for a void slot.
    wrapper: Option<Arc<PacketWrapper>>,
    /// The slot this was collected for. A bundle collects every slot in
    /// order; a seal only the void ones (it keeps the others as they are,
    /// unread and uncopied: `seal_phase1`).
    at: usize,
}

pub(crate) struct BundleFrame {
    pub(crate) node: Arc<Linkage>,
    /// The node's wrapper as this bundle last saw or installed it.
    pub(crate) wrapper: Arc<PacketWrapper>,
    pub(crate) serial: Serial,
    pub(crate) is_root: bool,
    pub(crate) pc: BundlePc,
    /// Phase 1: the child (slot) it works on; phase 3: the entry of
    /// `collected`.
    pub(crate) idx: usize,
    collected: SmallVec<[Collected; 8]>,
    /// Some slot is void or some collected packet is missing.
    incomplete: bool,
    /// This node and the nodes of the enclosing bundle frames (addresses):
    /// a child whose bundled chain reaches one of them is already inside
    /// the bundle being built.
    pub(crate) in_progress: InProgress,
    /// `in_progress` and every child collected so far by this frame and
    /// the enclosing ones: a node whose bundled chain reaches a collected
    /// child is inside the bundle too (its packet is in the collected
    /// packet), a collision, not something to take out. Taking it out
    /// changed the collected child under this very bundle, whose phase 3
    /// then failed: with two such hard links the bundle disturbed itself on
    /// every round (a hang, `tla/FINDINGS.md`). Only the collision test
    /// reads it: a child that *is* a collected node is loaded as usual (a
    /// void slot for it, decided without loading it, could be published
    /// while another bundle of this node stamps it in: explorer, shortcut
    /// tree, two snapshots).
    inside: InProgress,
    /// `inside` as the frame started: what a restart of phase 1 goes back
    /// to.
    base: InProgress,
    /// The children the enclosing frames have still to collect.
    pending: Pending,
    /// A seal (`seal_phase1`): the node's wrapper is the one a commit of a
    /// plain insert installed, and only its void slots are collected.
    seal: bool,
}

/// The children that bundle frames of one operation have still to collect
/// (each frame's siblings after the one it works on): a persistent list of
/// (child list, first index) cells, extended in O(1) per nested frame and
/// scanned only when a hard link is met.
#[derive(Clone, Default)]
pub(crate) struct Pending(Option<Arc<PendingCell>>);

pub(crate) struct PendingCell {
    children: Arc<Children>,
    from: usize,
    outer: Pending,
}

impl Pending {
    fn with(&self, children: &Arc<Children>, from: usize) -> Pending {
        if from >= children.nodes.len() {
            return self.clone();
        }
        Pending(Some(Arc::new(PendingCell {
            children: children.clone(),
            from,
            outer: self.clone(),
        })))
    }

    /// Whether `node` is a child some frame has still to collect.
    pub(crate) fn contains(&self, node: &Linkage) -> bool {
        let mut cur = &self.0;
        while let Some(cell) = cur {
            if cell
                .children
                .nodes
                .iter_from(cell.from)
                .any(|n| std::ptr::eq(Arc::as_ptr(n), node))
            {
                return true;
            }
            cur = &cell.outer.0;
        }
        false
    }
}

/// Drops the rest of a persistent list iteratively (a deep chain makes it
/// long): each cell this drop owns alone hands over its tail before it
/// goes; a shared one stops the walk.
pub(super) fn drop_tail<C>(mut next: Option<Arc<C>>, tail: impl Fn(&mut C) -> Option<Arc<C>>) {
    while let Some(cell) = next {
        next = Arc::try_unwrap(cell).ok().and_then(|mut c| tail(&mut c));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::node::Node;
    use crate::node_list::NodeList;

    /// A deep chain of nested bundle frames makes `Pending` long; dropping
    /// it must not recurse (`drop_tail`).
    #[test]
    fn a_long_pending_list_drops_on_a_small_stack() {
        let kids: Vec<_> = (0..2).map(|_| Node::new(0u8).link.clone()).collect();
        let children = Arc::new(Children {
            nodes: Arc::new(NodeList::from(kids)),
            slots: Default::default(),
        });
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let list = (0..200_000).fold(Pending::default(), |p, _| p.with(&children, 0));
                assert!(list.contains(&children.nodes[1]));
                drop(list);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A snapshot of the root leaves every nested bundle complete: a later
    /// snapshot of a middle node reads its packet as it is.
    #[test]
    fn nested_bundles_are_complete() {
        let (g, p) = (Node::new(0u8), Node::new(0u8));
        let (c1, c2) = (Node::new(0u8), Node::new(0u8));
        p.insert(&c1).unwrap();
        p.insert(&c2).unwrap();
        g.insert(&p).unwrap();
        let shot = g.snapshot();
        let mid = packet::find(&g.link, &shot.packet, &p.link).expect("P in G's packet");
        assert!(mid.is_complete(), "P's packet inside G's is still missing");
        assert!(shot.packet.is_complete());
        // A leaf commit takes C1 out (P and G missing); the next snapshot
        // of G bundles P again inside its own bundle, complete.
        c1.iterate_commit(|tr| tr[&c1] += 1);
        let shot = g.snapshot();
        let mid = packet::find(&g.link, &shot.packet, &p.link).expect("P in G's packet");
        assert!(mid.is_complete(), "P bundled again inside G, still missing");
        assert_eq!(shot[&c1], 1);
    }

    /// One edge of a hard link released at the common root: the path to
    /// the other parent is marked missing, and the next snapshot bundles
    /// the shared child back in there, with P left with no list at all.
    #[test]
    fn a_released_hard_link_is_bundled_under_its_other_parent() {
        let (g, p, q, c) = (
            Node::new(0u8),
            Node::new(0u8),
            Node::new(0u8),
            Node::new(0u8),
        );
        p.insert(&c).unwrap();
        q.insert(&c).unwrap();
        g.insert(&p).unwrap();
        g.insert(&q).unwrap();
        let _ = g.snapshot();
        g.try_iterate_commit(|tr| tr.release(&p, &c)).unwrap();
        let shot = g.snapshot();
        assert!(shot.packet.is_complete());
        assert_eq!(shot.children(&p).unwrap().len(), 0);
        assert_eq!(shot.children(&q).unwrap().len(), 1);
        assert_eq!(shot.get(&c), Ok(&0));
    }
}

impl Drop for PendingCell {
    fn drop(&mut self) {
        drop_tail(self.outer.0.take(), |c| c.outer.0.take());
    }
}

impl BundleFrame {
    pub(crate) fn new(
        node: Arc<Linkage>,
        wrapper: Arc<PacketWrapper>,
        serial: Serial,
        is_root: bool,
        enclosing: &InProgress,
    ) -> Self {
        Self::nested(
            node,
            wrapper,
            serial,
            is_root,
            (enclosing, enclosing),
            Pending::default(),
        )
    }

    /// A frame inside others: `enclosing` is their (`in_progress`,
    /// `inside`), `pending` their children still to collect.
    fn nested(
        node: Arc<Linkage>,
        wrapper: Arc<PacketWrapper>,
        serial: Serial,
        is_root: bool,
        enclosing: (&InProgress, &InProgress),
        pending: Pending,
    ) -> Self {
        let in_progress = enclosing.0.with(&node);
        let inside = enclosing.1.with(&node);
        BundleFrame {
            pending,
            base: inside.clone(),
            inside,
            in_progress,
            node,
            wrapper,
            serial,
            is_root,
            pc: BundlePc::Phase1,
            idx: 0,
            collected: SmallVec::new(),
            incomplete: false,
            seal: false,
        }
    }

    /// A seal of `node` from `wrapper`, the wrapper the caller's own commit
    /// installed (see `seal_phase1`).
    pub(crate) fn seal(node: Arc<Linkage>, wrapper: Arc<PacketWrapper>, serial: Serial) -> Self {
        let mut f = Self::new(node, wrapper, serial, true, &InProgress::default());
        f.seal = true;
        f
    }

    pub(crate) fn step(&mut self, returned: Option<Outcome>, neg: &mut Negotiator) -> Next {
        match self.pc {
            BundlePc::Phase1 if self.seal => seal_phase1(self),
            BundlePc::Phase1 => bundle_phase1(self, returned),
            BundlePc::Phase2 => bundle_phase2(self, neg),
            BundlePc::Phase3 => bundle_phase3(self, neg),
            BundlePc::Phase4 => bundle_phase4(self, neg),
        }
    }

    fn children(&self) -> &Arc<Children> {
        self.wrapper
            .own_packet()
            .children
            .as_ref()
            .expect("only nodes with children are bundled")
    }

    fn push(&mut self, packet: Option<Arc<Packet>>, wrapper: Option<Arc<PacketWrapper>>) {
        match &packet {
            None => self.incomplete = true,
            Some(p) if !p.is_complete() => self.incomplete = true,
            Some(_) => {}
        }
        if wrapper.is_some() {
            let child = self.children().nodes[self.idx].clone();
            self.inside = self.inside.with(&child);
        }
        self.collected.push(Collected {
            packet,
            wrapper,
            at: self.idx,
        });
        self.idx += 1;
        debug_assert!(
            self.seal || self.idx == self.collected.len(),
            "a bundle collects one entry per child met"
        );
        if self.idx == self.children().nodes.len() {
            self.pc = BundlePc::Phase2;
        }
    }

    /// A seal keeps the node's own slots `idx..to` (present: the base's):
    /// nothing is collected for them.
    fn keep(&mut self, to: usize) {
        self.idx = to;
        if self.idx == self.children().nodes.len() {
            self.pc = BundlePc::Phase2;
        }
    }

    /// Our own unbundle may have CASed this node from exactly the wrapper
    /// we work on to a missing copy of it (same slots): follow it, or phase
    /// 2 would fail against ourselves.
    fn adopt(&mut self, installed: &Installed) {
        for (l, old, new) in installed {
            if Arc::ptr_eq(l, &self.node) && Arc::ptr_eq(old, &self.wrapper) {
                self.wrapper = new.clone();
            }
        }
    }

    /// The children this frame and the enclosing ones have still to
    /// collect, after the current one.
    fn pending_after(&self) -> Pending {
        self.pending.with(self.children(), self.idx + 1)
    }

    fn restart(&mut self) {
        self.collected.clear();
        self.inside = self.base.clone();
        self.idx = 0;
        self.incomplete = false;
        self.pc = BundlePc::Phase1;
    }
}

fn disturbed() -> Next {
    Next::Return(Outcome::Bundle(BundleResult::Disturbed))
}

/// Collects one child's packet per step (or consumes the result of the
/// recursive bundle / unbundle it started for that child).
/// TLA+: BundlePhase1
pub(crate) fn bundle_phase1(f: &mut BundleFrame, returned: Option<Outcome>) -> Next {
    if let Some(outcome) = returned {
        return match outcome {
            Outcome::Bundle(BundleResult::Success(w)) => {
                let p = w.own_packet().clone();
                f.push(Some(p), Some(w));
                Next::Stay
            }
            Outcome::Unbundle(UnbundleResult::NewSubvalue(mut installed)) => {
                // The child has priority now, in the wrapper our unbundle
                // installed: go on from that wrapper, as from a first look
                // that found priority. Not from a fresh load: another
                // thread can bundle the child again before every load,
                // and a frame that looks again and again never fails a
                // CAS, so it never tags and starves (`tla/FINDINGS.md`
                // #7). If the child changed since, phase 3's CAS fails.
                f.adopt(&installed);
                let (child, _, cw) = installed
                    .pop()
                    .expect("an unbundle's last CAS is its target's");
                return collect_priority(f, child, cw);
            }
            Outcome::Unbundle(UnbundleResult::Collided) => {
                // Already inside this bundle by another path (hard link).
                f.push(None, None);
                Next::Stay
            }
            _ => disturbed(),
        };
    }
    if f.idx == 0 && f.children().nodes.is_empty() {
        f.pc = BundlePc::Phase2;
        return Next::Stay;
    }
    let child = f.children().nodes[f.idx].clone();
    if Arc::ptr_eq(&child, &f.node) {
        // A node listed as its own child cannot be bundled into itself.
        f.push(None, None);
        return Next::Stay;
    }
    let cw = child.load();
    if f.in_progress.contains(&child) && !cw.is_bundled_by(&f.node) {
        // A node this operation is bundling already (an online insert's
        // bundle: a node of the inserting tree) stays where it is. Not one
        // whose packet is in this node's own slot (the inserting attempt's
        // view of it is stale: it moved here since): voiding that slot lost
        // its only packet while its wrapper still named this node, and
        // every later bundle of it failed (a hang, sequential model).
        f.push(None, None);
        return Next::Stay;
    }
    if cw.has_priority() {
        return collect_priority(f, child, cw);
    }
    if cw.is_bundled_by(&f.node) {
        let slot = f.children().slots[f.idx].clone();
        if let Some(p) = slot.filter(|p| p.is_complete()) {
            f.push(Some(p), Some(cw));
            return Next::Stay;
        }
        // Our own slot for it is stale or void: give it priority back (this
        // CASes our node too; `adopt` follows that).
        return Next::Call(Frame::from(UnbundleFrame::new(
            child,
            cw,
            UnbundleMode::Promote,
        )));
    }
    // Bundled elsewhere or in limbo: bring it back to priority first, unless
    // it is already inside this bundle by another path (hard link), or will
    // be: inside a child some frame of this bundle has still to collect
    // (taking it out of there would change that child under this bundle,
    // and the closure of a transaction on that child that snapshots this
    // node on every attempt never committed).
    Next::Call(Frame::from(UnbundleFrame::new(
        child,
        cw,
        UnbundleMode::Bundle {
            serial: f.serial,
            in_progress: f.inside.clone(),
            pending: f.pending_after(),
        },
    )))
}

/// A child with priority: collect its packet, or bundle it first (same
/// serial) when its packet is missing.
fn collect_priority(f: &mut BundleFrame, child: Arc<Linkage>, cw: Arc<PacketWrapper>) -> Next {
    let p = cw.own_packet().clone();
    if p.is_complete() {
        f.push(Some(p), Some(cw));
        return Next::Stay;
    }
    Next::Call(Frame::from(BundleFrame::nested(
        child,
        cw,
        f.serial,
        false,
        (&f.in_progress, &f.inside),
        f.pending_after(),
    )))
}

/// Phase 1 of a seal: the bundle a transaction runs right after its commit
/// of plain inserts under its root, from the wrapper that commit installed
/// (missing only for the void slots of the inserted children). Every
/// present slot is kept as it is, unread; the inserted child in the next
/// void slot is collected as phase 1 would (priority and a complete
/// packet, or the seal is given up: the next snapshot bundles as before).
///
/// Why the present slots need no re-stamp (which `bundle_phase1` must do,
/// `tla/FINDINGS.md` #1): the commit's base was complete and current at
/// the commit's CAS, and every complete wrapper installed after an
/// unbundle's ancestor CAS comes from a bundle that re-stamped every child
/// after that CAS. An unbundle still pending from before the base therefore
/// fails its child CAS, and one that starts later must CAS this node first,
/// which makes phases 2 and 4 of the seal fail. Why they need not be read
/// either: they are the base's slots (the attempt only wrote below them,
/// which keeps each packet's `missing` flag, or swapped them), and the
/// base was published complete with them; filling void slots of nodes
/// from outside the tree leaves it as complete as it was. Without the seal,
/// inserting n children one transaction each re-stamped every child n
/// times.
/// TLA+: SealPhase1
pub(crate) fn seal_phase1(f: &mut BundleFrame) -> Next {
    if f.children().nodes.is_empty() {
        f.pc = BundlePc::Phase2;
        return Next::Stay;
    }
    let n = f.children().nodes.len();
    let void = f.children().slots.position_from(f.idx, Option::is_none);
    f.keep(void.unwrap_or(n));
    let Some(void) = void else {
        // Every slot from here on kept: `keep` moved on to phase 2.
        return Next::Stay;
    };
    let child = f.children().nodes[void].clone();
    if Arc::ptr_eq(&child, &f.node) {
        return disturbed();
    }
    let cw = child.load();
    if !cw.has_priority() || !cw.own_packet().is_complete() {
        return disturbed();
    }
    let p = cw.own_packet().clone();
    f.push(Some(p), Some(cw));
    Next::Stay
}

/// Publishes the collected slots, still marked missing.
/// TLA+: BundlePhase2
pub(crate) fn bundle_phase2(f: &mut BundleFrame, neg: &mut Negotiator) -> Next {
    if !negotiation::can_proceed(&f.node, neg) {
        return Next::Blocked(f.node.clone());
    }
    let old = f.wrapper.own_packet();
    let mut children: Children = (**f.children()).clone();
    for c in &f.collected {
        let slot = &children.slots[c.at];
        let same = match (slot, &c.packet) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        // Written only where it differs: a write copies the slot's chunk.
        if !same {
            children.slots[c.at] = c.packet.clone();
        }
    }
    let packet = old.with_children(Arc::new(children), true);
    let next = PacketWrapper::priority(packet, f.serial);
    match f.node.slot.compare_exchange(&f.wrapper, next.clone()) {
        Ok(()) => {
            negotiation::tag_after_success(&f.node, neg);
            f.wrapper = next;
            f.idx = 0;
            f.pc = BundlePc::Phase3;
            Next::Stay
        }
        Err(_) => {
            negotiation::tag_after_fail(&f.node, neg);
            disturbed()
        }
    }
}

/// Turns one collected child into a bundled reference stamped with this
/// bundle's serial.
/// TLA+: BundlePhase3
pub(crate) fn bundle_phase3(f: &mut BundleFrame, neg: &mut Negotiator) -> Next {
    // Skip the children that need no CAS (no wrapper to replace).
    f.idx = (f.idx..f.collected.len())
        .find(|&i| f.collected[i].wrapper.is_some())
        .unwrap_or(f.collected.len());
    if f.idx == f.collected.len() {
        f.pc = BundlePc::Phase4;
        return Next::Stay;
    }
    let at = f.collected[f.idx].at;
    let child = f.children().nodes[at].clone();
    if !negotiation::can_proceed(&child, neg) {
        return Next::Blocked(child);
    }
    let expected = f.collected[f.idx].wrapper.take().expect("checked above");
    let next = PacketWrapper::bundled(&f.node, at, f.serial);
    match child.slot.compare_exchange(&expected, next) {
        Ok(()) => {
            negotiation::tag_after_success(&child, neg);
            f.idx += 1;
            Next::Stay
        }
        Err(e) => {
            negotiation::tag_after_fail(&child, neg);
            if e.actual.serial == f.serial {
                // Changed by this very bundle through another path: collect again.
                f.restart();
                Next::Stay
            } else {
                disturbed()
            }
        }
    }
}

/// Marks the bundle complete (the root of a snapshot always; a nested
/// bundle only when nothing below it is void or missing).
/// TLA+: BundlePhase4
pub(crate) fn bundle_phase4(f: &mut BundleFrame, neg: &mut Negotiator) -> Next {
    if !negotiation::can_proceed(&f.node, neg) {
        return Next::Blocked(f.node.clone());
    }
    let missing = !f.is_root && f.incomplete;
    let packet = f.wrapper.own_packet().with_missing(missing);
    if f.is_root && f.incomplete && !packet::all_sub_reachable(&packet) {
        return disturbed();
    }
    let next = PacketWrapper::priority(packet, f.serial);
    match f.node.slot.compare_exchange(&f.wrapper, next.clone()) {
        Ok(()) => {
            negotiation::tag_after_success(&f.node, neg);
            Next::Return(Outcome::Bundle(BundleResult::Success(next)))
        }
        Err(_) => {
            negotiation::tag_after_fail(&f.node, neg);
            disturbed()
        }
    }
}

/// The frame's whole state for the explorer's visited set (`crate::explore`).
#[cfg(all(test, not(loom)))]
impl BundleFrame {
    /// A seal's frame (its phase 1 is `seal_phase1`).
    pub(crate) fn is_seal(&self) -> bool {
        self.seal
    }

    /// The linkage the next step gates on (`crate::explore`).
    pub(crate) fn next_gate(&self) -> Option<Arc<Linkage>> {
        match self.pc {
            BundlePc::Phase2 | BundlePc::Phase4 => Some(self.node.clone()),
            BundlePc::Phase3 => (self.idx..self.collected.len())
                .find(|&i| self.collected[i].wrapper.is_some())
                .map(|i| self.children().nodes[self.collected[i].at].clone()),
            BundlePc::Phase1 => None,
        }
    }

    pub(crate) fn canon(&self, c: &mut crate::explore::Canon) {
        c.link(&self.node);
        c.wrapper(&self.wrapper);
        c.serial(self.serial);
        c.n(u64::from(self.is_root));
        c.n(u64::from(self.seal));
        c.n(self.pc as u64);
        c.n(self.idx as u64);
        c.n(self.collected.len() as u64);
        for col in &self.collected {
            c.n(col.at as u64);
            c.opt_packet(col.packet.as_ref());
            c.opt_wrapper(col.wrapper.as_ref());
        }
        c.n(u64::from(self.incomplete));
        self.in_progress.canon(c);
        self.inside.canon(c);
        self.pending.canon(c);
    }
}

#[cfg(all(test, not(loom)))]
impl Pending {
    pub(crate) fn canon(&self, c: &mut crate::explore::Canon) {
        let mut cur = &self.0;
        while let Some(cell) = cur {
            for n in cell.children.nodes.iter_from(cell.from) {
                c.link(n);
            }
            c.n(u64::MAX - 1);
            cur = &cell.outer.0;
        }
        c.n(u64::MAX);
    }
}

#[cfg(all(test, not(loom)))]
impl InProgress {
    pub(crate) fn canon(&self, c: &mut crate::explore::Canon) {
        for addr in self.addrs() {
            c.link_addr(addr);
        }
        c.n(u64::MAX);
    }
}
