//! Transactions: private copy-on-write versions of a subtree, committed
//! with one CAS.

use crate::error::{NotFound, TreeError};
use crate::linkage::Linkage;
use crate::negotiation;
use crate::negotiation::Negotiator;
use crate::node::{AsNode, Node, NodeRef, not_found};
use crate::packet::{self, Children, Packet};
use crate::protocol::bundle::InProgress;
use crate::protocol::dynamic::{self, ChildCas, InsertRead};
use crate::protocol::{
    BundleFrame, BundleResult, Frame, Operation, Outcome, SnapResult, UnbundleFrame, UnbundleMode,
};
use crate::serial::{self, Serial};
use crate::snapshot::{Snapshot, children_of};
use crate::structure;
use crate::wrapper::PacketWrapper;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

/// A transaction on one node's subtree.
///
/// Reads see the subtree as of the transaction's snapshot plus the
/// transaction's own writes. `tr[&node]` reads; `tr[&node]` in a mutable
/// position copies that node's payload (once) and writes the copy. Nothing
/// is visible to anyone else until the closure returns and the commit's CAS
/// succeeds; if it fails, the closure runs again on a fresh snapshot.
///
/// ```
/// use kame_stm::Node;
/// let parent = Node::new(0i64);
/// let (a, b) = (Node::new(10i64), Node::new(0i64));
/// parent.insert(&a).unwrap();
/// parent.insert(&b).unwrap();
/// // Move 3 from a to b atomically.
/// let shot = parent.iterate_commit(|tr| {
///     tr[&a] -= 3;
///     tr[&b] += 3;
/// });
/// assert_eq!((shot[&a], shot[&b]), (7, 3));
/// ```
pub struct Transaction {
    pub(crate) root: Arc<Linkage>,
    /// The packet the snapshot read (the commit's expected value).
    pub(crate) old: Arc<Packet>,
    /// The working version.
    pub(crate) packet: Arc<Packet>,
    pub(crate) snap_wrapper: Option<Arc<PacketWrapper>>,
    /// This attempt lost a race in a dynamic operation: it makes no further
    /// child CAS and does not commit (it is retried).
    pub(crate) doomed: bool,
    serial: Serial,
    attempt: u32,
    /// Inserts made by this attempt, for the cycle check at commit.
    pub(crate) inserts: Vec<structure::PendingInsert>,
    /// Children this attempt put in limbo by a release.
    moved: Vec<Moved>,
    /// Nodes this attempt brought into the tree by an online insert (CAS),
    /// with the packet pulled.
    pulled: Vec<(Arc<Linkage>, Arc<Packet>)>,
    /// Validation could not be done by reading: the next attempt gives the
    /// root priority before its snapshot.
    pub(crate) wants_priority: bool,
    /// Stamp and priority tags of this transaction (kept across retries;
    /// cleared on commit and when dropped, e.g. by a panic in the closure).
    pub(crate) neg: Negotiator,
    /// Events marked by this attempt, delivered only if it commits.
    pub(crate) marks: crate::talker::Marks,
}

/// A child this attempt released (put in limbo), and what became of it.
struct Moved {
    child: Arc<Linkage>,
    /// The parent its limbo wrapper names (the one it was released from).
    limbo_parent: Arc<Linkage>,
    /// The limbo wrapper this attempt installed last.
    wrapper: Arc<PacketWrapper>,
    /// Its packet when this attempt last released it.
    last_released: Arc<Packet>,
}

/// What it took to commit a transaction (see
/// [`Node::iterate_commit_with_stats`](crate::Node::iterate_commit_with_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Attempts thrown away before the one that committed (conflicts,
    /// dynamic operations that lost a race, `iterate_commit_if` refusals).
    pub retries: u32,
    /// Races lost inside the protocol: failed CASes and conflicts found
    /// without one (each tags its linkage).
    pub cas_failures: u32,
    /// Times the transaction waited on another transaction's priority tag.
    pub waits: u32,
    /// Total time spent in those waits.
    pub waited: std::time::Duration,
}

impl Transaction {
    pub(crate) fn new(root: Arc<Linkage>, snap: SnapResult, attempt: u32, neg: Negotiator) -> Self {
        Transaction {
            root,
            old: snap.packet.clone(),
            packet: snap.packet,
            snap_wrapper: snap.wrapper,
            doomed: false,
            serial: 0,
            attempt,
            inserts: Vec::new(),
            moved: Vec::new(),
            pulled: Vec::new(),
            wants_priority: false,
            neg,
            marks: Default::default(),
        }
    }

    pub(crate) fn into_negotiator(self) -> Negotiator {
        self.neg
    }

    /// The payload of `node` in this transaction's version of the subtree.
    pub fn get<P: 'static>(&self, node: &Node<P>) -> Result<&P, NotFound> {
        packet::find(&self.root, &self.packet, &node.link)
            .map(|p| p.payload::<P>())
            .ok_or_else(|| not_found(&node.link))
    }

    /// Mutable access to the payload of `node`, copying it (and the path to
    /// it) on first write.
    pub fn get_mut<P: 'static>(&mut self, node: &Node<P>) -> Result<&mut P, NotFound> {
        self.packet_mut(&node.link, false)
            .map(|p| p.payload_mut::<P>())
    }

    /// Whether `node` is in this transaction's subtree.
    pub fn contains(&self, node: &impl AsNode) -> bool {
        packet::find(&self.root, &self.packet, node.linkage()).is_some()
    }

    /// The children of `node` in this transaction's version.
    pub fn children(
        &self,
        node: &impl AsNode,
    ) -> Result<impl ExactSizeIterator<Item = NodeRef> + '_, NotFound> {
        let link = node.linkage();
        let p = packet::find(&self.root, &self.packet, link).ok_or_else(|| not_found(link))?;
        Ok(children_of(p))
    }

    /// A frozen copy of this transaction's current version (later writes in
    /// this transaction do not show in it).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            root: self.root.clone(),
            packet: self.packet.clone(),
        }
    }

    /// How many earlier attempts of this transaction were thrown away
    /// (0 on the first run of the closure).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Inserts `child` as the last child of `parent`. The child's state is
    /// absorbed by the next snapshot of the subtree; it cannot be read in
    /// this transaction (use [`insert_online`](Self::insert_online) for that).
    ///
    /// A node may have several parents (a hard link).
    pub fn insert(&mut self, parent: &impl AsNode, child: &impl AsNode) -> Result<(), TreeError> {
        self.insert_impl(parent.linkage(), child.linkage(), false)
    }

    /// Inserts `child` under `parent` and brings its current state into this
    /// transaction, so it can be read and written right away.
    pub fn insert_online(
        &mut self,
        parent: &impl AsNode,
        child: &impl AsNode,
    ) -> Result<(), TreeError> {
        self.insert_impl(parent.linkage(), child.linkage(), true)
    }

    /// Removes `child` from `parent`'s children. The child keeps its state.
    ///
    /// # Errors
    ///
    /// [`TreeError::NotAChild`], [`TreeError::NotFound`] for a parent outside
    /// this subtree, and [`TreeError::ReleaseOfPulledNode`] for a node this
    /// transaction brought in with [`insert_online`](Self::insert_online)
    /// and then wrote.
    pub fn release(&mut self, parent: &impl AsNode, child: &impl AsNode) -> Result<(), TreeError> {
        let (parent, child) = (parent.linkage(), child.linkage());
        let pos = self
            .children_list(parent)?
            .and_then(|c| c.position(child, 0))
            .ok_or(TreeError::NotAChild)?;
        // A node this attempt pulled in: its limbo wrapper names the parent
        // it was pulled under, whose committed version does not list it, so
        // the packet it carries (the one pulled) is its state whether this
        // transaction commits or not. Releasing it unwritten needs no CAS;
        // written, any CAS would publish the uncommitted writes at once.
        let pulled = self.pulled.iter().position(|(c, _)| Arc::ptr_eq(c, child));
        if let Some(i) = pulled {
            let slot = self
                .children_list(parent)?
                .and_then(|c| c.slots[pos].clone());
            if !slot.is_some_and(|s| Arc::ptr_eq(&s, &self.pulled[i].1)) {
                return Err(TreeError::ReleaseOfPulledNode);
            }
        }
        // The released subtree may hold the packet of a hard-linked node
        // that stays listed (void) elsewhere in this tree: mark the path
        // missing so the next snapshot bundles it back in.
        let pkt = self.packet_mut(parent, true)?;
        let ch = Arc::make_mut(pkt.children.as_mut().expect("has the child"));
        let slot = ch.slots.remove(pos);
        Arc::make_mut(&mut ch.nodes).remove(pos);
        if ch.nodes.is_empty() {
            pkt.children = None;
            pkt.missing = false;
        }
        if let Some(i) = pulled {
            self.pulled.remove(i);
            return Ok(());
        }
        let Some(slot) = slot else {
            // Void slot: the child's packet lives under another parent.
            return Ok(());
        };
        if self.contains_link(child) || self.doomed {
            // Still reachable through another parent in this subtree (hard
            // link): its packet stays where it is. Or this attempt is lost
            // anyway: it must not touch the child.
            return Ok(());
        }
        if let Some(m) = self.moved.iter_mut().find(|m| Arc::ptr_eq(&m.child, child)) {
            if !Arc::ptr_eq(&m.limbo_parent, parent) {
                // Moved here earlier in this attempt: its wrapper is still
                // our limbo under the parent it was first released from.
                m.last_released = slot;
                return Ok(());
            }
        }
        let serial = self.serial();
        loop {
            let Some(w) = dynamic::release_read_child(child, parent, &slot) else {
                self.doom();
                return Ok(());
            };
            if !self.validate_over(&w) {
                return Ok(());
            }
            match dynamic::release_cas_child(
                child,
                &w,
                parent,
                pos,
                serial,
                slot.clone(),
                &mut self.neg,
            ) {
                ChildCas::Done(installed) => {
                    self.moved.retain(|m| !Arc::ptr_eq(&m.child, child));
                    self.moved.push(Moved {
                        child: child.clone(),
                        limbo_parent: parent.clone(),
                        wrapper: installed,
                        last_released: slot,
                    });
                    return Ok(());
                }
                ChildCas::Failed => {}
                ChildCas::Blocked => self.neg.wait(child),
            }
        }
    }

    /// Before the commit: every child this attempt released and then
    /// inserted again (a move) or released again from where it was moved,
    /// must carry in its limbo wrapper the packet it ends up with, because
    /// its wrapper still names the parent it was first released from,
    /// which will not list it: after the commit the carried packet is its
    /// state. Until the commit that parent does list it, so the carried
    /// packet is not read. `false`: the attempt is doomed.
    pub(crate) fn settle_moves(&mut self) -> bool {
        let mut i = 0;
        while i < self.moved.len() {
            let m = &self.moved[i];
            let desired = packet::find(&self.root, &self.packet, &m.child)
                .unwrap_or(&m.last_released)
                .clone();
            let carried = m.wrapper.packet.as_ref().expect("a limbo wrapper carries");
            if Arc::ptr_eq(carried, &desired) {
                i += 1;
                continue;
            }
            let (child, parent, expected) =
                (m.child.clone(), m.limbo_parent.clone(), m.wrapper.clone());
            let serial = self.serial();
            loop {
                if !self.validate() {
                    return false;
                }
                match dynamic::release_cas_child(
                    &child,
                    &expected,
                    &parent,
                    expected.index,
                    serial,
                    desired.clone(),
                    &mut self.neg,
                ) {
                    ChildCas::Done(installed) => {
                        self.moved[i].wrapper = installed;
                        break;
                    }
                    ChildCas::Failed => {
                        // Someone committed to the child since: lost.
                        self.doom();
                        return false;
                    }
                    ChildCas::Blocked => self.neg.wait(&child),
                }
            }
            i += 1;
        }
        true
    }

    /// Exchanges the positions of two children of `parent`.
    pub fn swap(
        &mut self,
        parent: &impl AsNode,
        a: &impl AsNode,
        b: &impl AsNode,
    ) -> Result<(), TreeError> {
        let parent = parent.linkage();
        let list = self.children_list(parent)?.ok_or(TreeError::NotAChild)?;
        let i = list.position(a.linkage(), 0).ok_or(TreeError::NotAChild)?;
        let j = list.position(b.linkage(), 0).ok_or(TreeError::NotAChild)?;
        let pkt = self.packet_mut(parent, false)?;
        let ch = Arc::make_mut(pkt.children.as_mut().expect("has children"));
        ch.slots.swap(i, j);
        Arc::make_mut(&mut ch.nodes).swap(i, j);
        Ok(())
    }

    /// This attempt lost a race: it will not commit, and it enters the
    /// oldest-wins negotiation like any other loser (it tags the root).
    fn doom(&mut self) {
        if !self.doomed {
            self.doomed = true;
            negotiation::tag_after_fail(&self.root, &mut self.neg);
        }
    }

    /// Right before a child CAS: is the base still current (`tx_validate`)?
    /// A transaction whose root was bundled in an ancestor when it took its
    /// snapshot has no wrapper to compare with; it reads its root's packet
    /// where it lives (`dynamic::base_is_current`, loads only: a CAS here,
    /// such as re-stamping the root, would take the root out of the
    /// ancestor's bundle, and a snapshot of that ancestor in the same
    /// closure would put it back, every attempt). `false`: doomed.
    fn validate(&mut self) -> bool {
        if self.doomed {
            return false;
        }
        let ok = match &self.snap_wrapper {
            Some(snap) => dynamic::tx_validate(&self.root, snap),
            None => dynamic::base_is_current(&self.root, &self.old).unwrap_or_else(|| {
                // Cannot tell by reading: retry with the root given
                // priority first, so the next snapshot has a wrapper.
                self.wants_priority = true;
                false
            }),
        };
        if !ok {
            self.doom();
        }
        ok
    }

    /// `validate` before a child CAS that replaces `w`. When `w` is a limbo
    /// wrapper another transaction (or an earlier attempt) installed, that
    /// transaction may still commit believing its limbo is in place: then
    /// the base is not only checked but *touched*: the root is CASed to a
    /// new wrapper holding the same packet, so that such a transaction's
    /// commit (a CAS on the same root) fails instead of publishing a parent
    /// that no longer lists the child while the child carries our packet.
    fn validate_over(&mut self, w: &PacketWrapper) -> bool {
        if !self.validate() {
            return false;
        }
        let foreign_limbo = !w.has_priority() && w.packet.is_some() && w.serial != self.serial();
        if !foreign_limbo {
            return true;
        }
        let Some(snap) = self.snap_wrapper.clone() else {
            // Bundled root: give it priority first, next attempt.
            self.wants_priority = true;
            self.doom();
            return false;
        };
        while !negotiation::can_proceed(&self.root, &self.neg) {
            self.neg.wait(&self.root);
        }
        // A copy, not the same packet: a commit compares packets too.
        let copy = self.old.with_missing(self.old.missing);
        let next = PacketWrapper::priority(copy.clone(), serial::next(snap.serial));
        match self.root.slot.compare_exchange(&snap, next.clone()) {
            Ok(()) => {
                negotiation::tag_after_success(&self.root, &self.neg);
                self.snap_wrapper = Some(next);
                self.old = copy;
                true
            }
            Err(_) => {
                self.doom();
                false
            }
        }
    }

    fn serial(&mut self) -> Serial {
        if self.serial == 0 {
            self.serial = serial::next(self.snap_wrapper.as_ref().map_or(0, |w| w.serial));
        }
        self.serial
    }

    fn contains_link(&self, link: &Linkage) -> bool {
        packet::find(&self.root, &self.packet, link).is_some()
    }

    /// The child list of `parent` in the working version (`None`: no children).
    fn children_list(&self, parent: &Linkage) -> Result<Option<&Children>, NotFound> {
        let p = packet::find(&self.root, &self.packet, parent).ok_or_else(|| not_found(parent))?;
        Ok(p.children.as_deref())
    }

    /// Path-copies the working tree down to `target` and returns its packet.
    /// With `mark_missing`, every packet on the path is marked missing (the
    /// subtree will need bundling again).
    fn packet_mut(
        &mut self,
        target: &Linkage,
        mark_missing: bool,
    ) -> Result<&mut Packet, NotFound> {
        let path =
            packet::find_path(&self.root, &self.packet, target).ok_or_else(|| not_found(target))?;
        let mut cur: &mut Arc<Packet> = &mut self.packet;
        for &i in &path {
            let p = Packet::make_mut(cur);
            if mark_missing {
                p.missing = true;
            }
            let ch = Arc::make_mut(p.children.as_mut().expect("path goes through children"));
            cur = ch.slots[i as usize]
                .as_mut()
                .expect("path goes through present slots");
        }
        let p = Packet::make_mut(cur);
        if mark_missing {
            p.missing = true;
        }
        Ok(p)
    }

    fn insert_impl(
        &mut self,
        parent: &Arc<Linkage>,
        child: &Arc<Linkage>,
        online: bool,
    ) -> Result<(), TreeError> {
        if packet::find(&self.root, &self.packet, parent).is_none() {
            return Err(not_found(parent).into());
        }
        if Arc::ptr_eq(parent, child) || Arc::ptr_eq(&self.root, child) {
            return Err(TreeError::Cycle);
        }
        if self
            .children_list(parent)?
            .is_some_and(|c| c.position(child, 0).is_some())
        {
            return Err(TreeError::AlreadyChild);
        }
        // A cycle: `parent` is reachable from `child`, following the
        // working version for nodes in this tree (void slots included: a
        // hard-linked node's list is read where its packet is) and the
        // current state below nodes outside it.
        if structure::reaches(&self.root, &self.packet, child, parent) {
            return Err(TreeError::Cycle);
        }
        let in_tree = self.contains_link(child);
        let moved = self
            .moved
            .iter()
            .find(|m| Arc::ptr_eq(&m.child, child))
            .map(|m| m.last_released.clone());
        let child_packet = if in_tree || !online {
            None
        } else if let Some(released) = moved {
            // Released by this attempt (its limbo wrapper names the parent
            // it was released from): a move. Its packet is the one it was
            // released with; no CAS now (that would leave the first
            // parent's committed, complete packet listing it with a slot
            // while its wrapper names another parent), `settle_moves` puts
            // the final packet in its limbo wrapper before the commit.
            Some(released)
        } else {
            Some(self.pull_child(parent, child))
        };
        self.inserts.push(structure::PendingInsert {
            parent: parent.clone(),
            child: child.clone(),
            external: !in_tree,
        });
        let pkt = self.packet_mut(parent, true)?;
        let ch = pkt.children.get_or_insert_with(|| {
            Arc::new(Children {
                nodes: Arc::new(Vec::new()),
                slots: Default::default(),
            })
        });
        let ch = Arc::make_mut(ch);
        Arc::make_mut(&mut ch.nodes).push(child.clone());
        ch.slots.push(child_packet);
        Ok(())
    }

    /// Online insert: puts the child in limbo under `parent` and returns its
    /// packet. A doomed attempt only reads the child (it will not commit).
    fn pull_child(&mut self, parent: &Arc<Linkage>, child: &Arc<Linkage>) -> Arc<Packet> {
        let index = self
            .children_list(parent)
            .ok()
            .flatten()
            .map_or(0, |c| c.nodes.len());
        let serial = self.serial();
        loop {
            if self.doomed {
                return structure::peek(child);
            }
            let read = match dynamic::insert_read_child(child, parent) {
                InsertRead::NeedsBundle(w) => {
                    // Bundle the child as a part of this transaction's
                    // tree: a node below it whose packet lives in this tree
                    // (a hard link) collides and stays there (a void slot
                    // in the child's packet), instead of being stolen,
                    // which would doom this attempt and every later one.
                    // The result may be marked missing for those void
                    // slots only; their packets are in this tree.
                    let bundle_serial = serial::next(w.serial);
                    let tree = InProgress::of_tree(&self.root, &packet::nodes_in(&self.packet));
                    let frame = BundleFrame::new(child.clone(), w, bundle_serial, false, &tree);
                    match Operation::run_frame(Frame::from(frame), &mut self.neg) {
                        Outcome::Bundle(BundleResult::Success(w)) => InsertRead::Ready(w),
                        _ => continue,
                    }
                }
                read => read,
            };
            match read {
                InsertRead::Ready(w) => {
                    let packet = w.packet.clone().expect("a ready child carries its packet");
                    if !self.validate_over(&w) {
                        return packet;
                    }
                    match dynamic::insert_cas_child(child, &w, parent, index, serial, &mut self.neg)
                    {
                        ChildCas::Done(_) => {
                            self.pulled.push((child.clone(), packet.clone()));
                            return packet;
                        }
                        ChildCas::Failed => {}
                        ChildCas::Blocked => self.neg.wait(child),
                    }
                }
                InsertRead::NeedsBundle(_) => unreachable!("bundled above"),
                InsertRead::NeedsPromote(w) => {
                    let frame = UnbundleFrame::new(child.clone(), w, UnbundleMode::Promote);
                    Operation::run_frame(Frame::from(frame), &mut self.neg);
                }
            }
        }
    }
}

impl<P: 'static> Index<&Node<P>> for Transaction {
    type Output = P;

    /// Panics if `node` is not in this transaction's subtree; see
    /// [`Transaction::get`].
    fn index(&self, node: &Node<P>) -> &P {
        match self.get(node) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }
}

impl<P: 'static> IndexMut<&Node<P>> for Transaction {
    /// Panics if `node` is not in this transaction's subtree; see
    /// [`Transaction::get_mut`].
    fn index_mut(&mut self, node: &Node<P>) -> &mut P {
        match self.get_mut(node) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }
}
