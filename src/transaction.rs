//! Transactions: private copy-on-write versions of a subtree, committed
//! with one CAS.

use crate::error::{NotFound, TreeError};
use crate::limbo::LimboOwner;
use crate::linkage::Linkage;
use crate::negotiation;
use crate::negotiation::Negotiator;
use crate::node::{AsNode, Node, NodeRef, not_found};
use crate::packet::{self, Children, Packet, SlotKind};
use crate::protocol::bundle::InProgress;
use crate::protocol::dynamic::{self, ChildCas, InsertRead, Limbo};
use crate::protocol::{
    BundleFrame, BundleResult, Frame, Operation, Outcome, SnapResult, UnbundleFrame, UnbundleMode,
    UnbundleResult,
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
    /// Nodes this attempt brought into the tree by an online insert (CAS).
    pulled: Vec<Pulled>,
    /// The commit of this attempt succeeded (set by the retry loop): what
    /// the drop cleans up depends on it.
    pub(crate) committed: bool,
    /// Validation could not be done by reading: the next attempt gives the
    /// root priority before its snapshot.
    pub(crate) wants_priority: bool,
    /// Stamp and priority tags of this transaction (kept across retries;
    /// cleared on commit and when dropped, e.g. by a panic in the closure).
    pub(crate) neg: Negotiator,
    /// Events marked by this attempt, delivered only if it commits.
    pub(crate) marks: crate::talker::Marks,
    /// Names this attempt in the limbo wrappers it installs; finished when
    /// the attempt ends (`crate::limbo`).
    limbo_owner: Option<Arc<LimboOwner>>,
    /// A dynamic operation met another live attempt's limbo on this node:
    /// the next attempt waits until that one has ended.
    pub(crate) wait_for: Option<(Arc<LimboOwner>, Arc<Linkage>)>,
}

/// A node this attempt pulled in with an online insert.
struct Pulled {
    child: Arc<Linkage>,
    /// The packet it carries in the limbo wrapper (what the working tree
    /// holds for it unless written since).
    packet: Arc<Packet>,
    /// That limbo wrapper.
    wrapper: Arc<PacketWrapper>,
}

/// A child this attempt released (put in limbo), and what became of it.
struct Moved {
    child: Arc<Linkage>,
    /// The parent its limbo wrapper names (the one it was released from).
    limbo_parent: Arc<Linkage>,
    /// The limbo wrapper this attempt installed last; `None` when the
    /// attempt was doomed before it installed one (it only keeps the view
    /// consistent: a doomed attempt never commits).
    wrapper: Option<Arc<PacketWrapper>>,
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
            committed: false,
            wants_priority: false,
            neg,
            marks: Default::default(),
            limbo_owner: None,
            wait_for: None,
        }
    }

    /// This attempt's owner record for the limbo wrappers it installs.
    fn limbo_owner(&mut self) -> Arc<LimboOwner> {
        self.limbo_owner
            .get_or_insert_with(|| Arc::new(LimboOwner::new()))
            .clone()
    }

    pub(crate) fn into_negotiator(mut self) -> Negotiator {
        // The drop (below) still runs: it cleans up this attempt's limbo.
        std::mem::replace(&mut self.neg, Negotiator::with_stamp(0))
    }

    /// The payload of `node` in this transaction's version of the subtree.
    ///
    /// # Errors
    ///
    /// [`NotFound`] when `node` is not in this transaction's subtree
    /// (`tr[&node]` panics instead).
    pub fn get<P: 'static>(&self, node: &Node<P>) -> Result<&P, NotFound> {
        packet::find(&self.root, &self.packet, &node.link)
            .map(|p| p.payload::<P>())
            .ok_or_else(|| not_found(&node.link))
    }

    /// Mutable access to the payload of `node`, copying it (and the path to
    /// it) on first write.
    ///
    /// # Errors
    ///
    /// [`NotFound`] when `node` is not in this transaction's subtree.
    pub fn get_mut<P: 'static>(&mut self, node: &Node<P>) -> Result<&mut P, NotFound> {
        self.packet_mut(&node.link, false)
            .map(|p| p.payload_mut::<P>())
    }

    /// Whether `node` is in this transaction's subtree.
    pub fn contains(&self, node: &impl AsNode) -> bool {
        packet::find(&self.root, &self.packet, node.linkage()).is_some()
    }

    /// The children of `node` in this transaction's version.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let bus = Node::new(());
    /// for v in [1.0_f64, 2.0] {
    ///     bus.insert(&Node::new(v)).unwrap();
    /// }
    /// // Zero every f64 child, whatever its handle is.
    /// let shot = bus.iterate_commit(|tr| {
    ///     let kids: Vec<_> = tr.children(&bus).unwrap().collect();
    ///     for child in kids.iter().filter_map(|c| c.downcast::<f64>()) {
    ///         tr[&child] = 0.0;
    ///     }
    /// });
    /// let first = shot.children(&bus).unwrap().next().unwrap();
    /// assert_eq!(shot[&first.downcast::<f64>().unwrap()], 0.0);
    /// ```
    ///
    /// # Errors
    ///
    /// [`NotFound`] when `node` is not in this transaction's subtree.
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
    #[must_use]
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
    ///
    /// # Errors
    ///
    /// [`TreeError::NotFound`] for a parent outside this subtree,
    /// [`TreeError::AlreadyChild`], and [`TreeError::Cycle`] when `parent`
    /// is `child` or below it (checked again at commit, against inserts
    /// racing this one).
    pub fn insert(&mut self, parent: &impl AsNode, child: &impl AsNode) -> Result<(), TreeError> {
        self.insert_impl(parent.linkage(), child.linkage(), false)
    }

    /// Inserts `child` under `parent` and brings its current state into this
    /// transaction, so it can be read and written right away.
    ///
    /// One exception: a node that is (at the time of the call) only below a
    /// node this transaction released earlier in the same attempt is
    /// inserted as [`insert`](Self::insert) does: it is in the tree after
    /// the commit, but this attempt cannot read it. (Release and insert
    /// the node itself to move it with its state.)
    ///
    /// ```
    /// use kame_stm::Node;
    /// let rack = Node::new(0u32); // number of channels
    /// let ch = Node::named("ch0", 0.0_f64);
    /// // Plug in and configure in one step: nobody sees it half set up.
    /// rack.try_iterate_commit(|tr| {
    ///     tr.insert_online(&rack, &ch)?;
    ///     tr[&ch] = 1.25;
    ///     tr[&rack] += 1;
    ///     Ok::<(), kame_stm::TreeError>(())
    /// })?;
    /// assert_eq!((rack.read(), ch.read()), (1, 1.25));
    /// # Ok::<(), kame_stm::TreeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_online(
        &mut self,
        parent: &impl AsNode,
        child: &impl AsNode,
    ) -> Result<(), TreeError> {
        self.insert_impl(parent.linkage(), child.linkage(), true)
    }

    /// Removes `child` from `parent`'s children. The child keeps its state.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let (a, b) = (Node::new(()), Node::new(()));
    /// let probe = Node::named("probe", 3u8);
    /// a.insert(&probe)?;
    /// // Move it from a to b: under a common root, in one transaction.
    /// let root = Node::new(());
    /// root.insert(&a)?;
    /// root.insert(&b)?;
    /// root.try_iterate_commit(|tr| {
    ///     tr.release(&a, &probe)?;
    ///     tr.insert(&b, &probe)
    /// })?;
    /// let shot = root.snapshot();
    /// assert_eq!(shot.children(&a)?.len() + shot.children(&b)?.len(), 1);
    /// assert_eq!(shot[&probe], 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
        let pulled = self
            .pulled
            .iter()
            .position(|p| Arc::ptr_eq(&p.child, child));
        if let Some(i) = pulled {
            let slot = self
                .children_list(parent)?
                .and_then(|c| c.slots[pos].clone());
            if !slot.is_some_and(|s| Arc::ptr_eq(&s, &self.pulled[i].packet)) {
                return Err(TreeError::ReleaseOfPulledNode);
            }
        }
        // The released subtree may hold the packet of a hard-linked node
        // that stays listed (void) elsewhere in this tree: mark the path
        // missing so the next snapshot bundles it back in.
        // An insert of this edge earlier in the attempt is undone: the
        // commit's cycle check must not test an edge that is not there.
        self.inserts
            .retain(|i| !(Arc::ptr_eq(&i.parent, parent) && Arc::ptr_eq(&i.child, child)));
        let pkt = self.packet_mut(parent, true)?;
        let ch = Arc::make_mut(pkt.children.as_mut().expect("has the child"));
        let slot = ch.slots.remove(pos);
        Arc::make_mut(&mut ch.nodes).remove(pos);
        if ch.nodes.is_empty() {
            pkt.children = None;
            pkt.missing = false;
        }
        if let Some(i) = pulled {
            let p = self.pulled.remove(i);
            crate::drive::forget_limbo(&p.wrapper);
            unlimbo(&p.child, &p.wrapper);
            return Ok(());
        }
        let Some(slot) = slot else {
            // Void slot: the child's packet lives under another parent.
            return Ok(());
        };
        if self.contains_link(child) {
            // Still reachable through another parent in this subtree (hard
            // link): its packet stays where it is.
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
        let wrapper = self.release_in_limbo(child, parent, pos, &slot);
        self.moved.retain(|m| {
            let same = Arc::ptr_eq(&m.child, child);
            if let (true, Some(w)) = (same, &m.wrapper) {
                crate::drive::forget_limbo(w);
            }
            !same
        });
        self.moved.push(Moved {
            child: child.clone(),
            limbo_parent: parent.clone(),
            wrapper,
            last_released: slot.clone(),
        });
        // Still listed elsewhere in this tree with a void slot (a hard link
        // whose packet was under this parent): the packet moves there, as a
        // move does (`settle_moves`, then `unlimbo` after the commit; the
        // path is marked missing for the next bundle). Otherwise the node
        // would be listed but in no slot: unreadable in this attempt.
        if let Some((path, _)) = packet::find_void(&self.packet, |n| Arc::ptr_eq(n, child)) {
            Self::fill_void(&mut self.packet, &path, slot);
        }
        Ok(())
    }

    /// Puts `packet` in the void slot at `path` (from `find_void`), copying
    /// and marking missing every packet on the way.
    fn fill_void(root: &mut Arc<Packet>, path: &[u32], packet: Arc<Packet>) {
        Self::set_slot(root, path, Some(packet));
    }

    /// Sets the slot at `path` (slot indices from `root`), copying and
    /// marking missing every packet on the way (the next bundle looks at
    /// that slot again).
    fn set_slot(root: &mut Arc<Packet>, path: &[u32], slot: Option<Arc<Packet>>) {
        let (last, above) = path.split_last().expect("a slot is below the root");
        let p = copy_path(root, above, true);
        let ch = Arc::make_mut(p.children.as_mut().expect("the slot's list"));
        ch.slots[*last as usize] = slot;
    }

    /// The child CAS of a release: puts `child` in limbo under `parent`,
    /// carrying its *committed* packet (the one the snapshot read; `slot`,
    /// the working one, only for a node the snapshot did not hold):
    /// `settle_moves` puts the final packet in right before the commit, so
    /// a limbo of an attempt that does not commit never carries its
    /// writes. `None` when the attempt is (or gets) doomed: then it must not touch
    /// the child, and it records the release for its own view only (a
    /// later `insert_online` of the child reads `slot`).
    fn release_in_limbo(
        &mut self,
        child: &Arc<Linkage>,
        parent: &Arc<Linkage>,
        pos: usize,
        slot: &Arc<Packet>,
    ) -> Option<Arc<PacketWrapper>> {
        if self.doomed {
            return None;
        }
        let serial = self.serial();
        let mut rebased = false;
        loop {
            // The committed packet, read after the base is validated (a
            // rebase may have given the base new packets).
            let carried = packet::find(&self.root, &self.old, child)
                .cloned()
                .unwrap_or_else(|| slot.clone());
            let Some(w) = dynamic::release_read_child(child, parent, &carried) else {
                // The child's packet is elsewhere: when only a bundle moved
                // it (a hard link below it taken to its other parent with
                // the child), reading the base again brings it back.
                if !rebased && self.rebase() {
                    rebased = true;
                    continue;
                }
                self.doom();
                return None;
            };
            if !self.validate_over(child, &w) {
                return None;
            }
            // From here on this attempt relies on its base (`is_plain`).
            let owner = self.limbo_owner();
            let limbo = Limbo {
                parent,
                index: pos,
                serial,
                owner: &owner,
            };
            match dynamic::release_cas_child(child, &w, &limbo, carried.clone(), &mut self.neg) {
                ChildCas::Done(installed) => {
                    crate::drive::hold_limbo(child, &installed);
                    return Some(installed);
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
        if self.doomed {
            return false;
        }
        let mut i = 0;
        while i < self.moved.len() {
            let m = &self.moved[i];
            let desired = self
                .final_packet_of(&m.child)
                .unwrap_or_else(|| m.last_released.clone());
            let wrapper = m
                .wrapper
                .as_ref()
                .expect("not doomed: every release installed one");
            let carried = wrapper.packet.as_ref().expect("a limbo wrapper carries");
            if Arc::ptr_eq(carried, &desired) {
                i += 1;
                continue;
            }
            let (child, parent, expected) =
                (m.child.clone(), m.limbo_parent.clone(), wrapper.clone());
            let serial = self.serial();
            let owner = self.limbo_owner();
            loop {
                if !self.validate() {
                    return false;
                }
                let limbo = Limbo {
                    parent: &parent,
                    index: expected.index,
                    serial,
                    owner: &owner,
                };
                match dynamic::release_cas_child(
                    &child,
                    &expected,
                    &limbo,
                    desired.clone(),
                    &mut self.neg,
                ) {
                    ChildCas::Done(installed) => {
                        crate::drive::forget_limbo(&expected);
                        crate::drive::hold_limbo(&child, &installed);
                        self.moved[i].wrapper = Some(installed);
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
    ///
    /// ```
    /// use kame_stm::Node;
    /// let list = Node::new(());
    /// let (x, y) = (Node::named("x", 1u8), Node::named("y", 2u8));
    /// list.insert(&x)?;
    /// list.insert(&y)?;
    /// let shot = list.try_iterate_commit(|tr| tr.swap(&list, &x, &y))?;
    /// let names: Vec<_> = shot.children(&list)?.map(|c| c.name().unwrap().to_owned()).collect();
    /// assert_eq!(names, ["y", "x"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TreeError::NotFound`] for a parent outside this subtree,
    /// [`TreeError::NotAChild`] when `a` or `b` is not its child.
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
    /// The fast path is one load: the root still holds the wrapper the
    /// snapshot was read from. Otherwise the base is current iff the root's
    /// packet is still the very packet the snapshot read (`old`, an `Arc`
    /// this transaction holds, so its address names it): a commit anywhere
    /// in the subtree replaces it, an unbundle below marks it missing (a
    /// new packet), so identity means nothing was published since. A
    /// bundle and unbundle of the root keep the packet, which is why a
    /// snapshot of an ancestor taken inside the closure must not doom the
    /// attempt (it did, on every attempt). `false`: doomed.
    fn validate(&mut self) -> bool {
        if self.doomed {
            return false;
        }
        let ok = match &self.snap_wrapper {
            Some(snap) if dynamic::tx_validate(&self.root, snap) => true,
            _ => self.revalidate_root(false),
        };
        if !ok {
            self.doom();
        }
        ok
    }

    /// Nothing of this attempt ever outside its packet: it has not tried
    /// to put a node in limbo (a release, an online insert), not even one
    /// it took back since (a pulled node released again was read, and a
    /// commit made to it meanwhile must still fail this attempt), so its
    /// base can be read again (`rebase`). A plain insert is fine: its
    /// cycle check runs at the commit, against the state then.
    pub(crate) fn is_plain(&self) -> bool {
        self.limbo_owner.is_none()
    }

    /// The slow path of `validate`. A root with priority is current iff it
    /// holds `old` (then its wrapper becomes the one the commit expects). A
    /// bundled root is first checked by reading (`base_is_current`, loads
    /// only); when that cannot tell, or when `need_priority`, the root is
    /// unbundled with the same identity check the commit makes (an
    /// `UnbundleMode::Commit` that installs `old` itself), which reads its
    /// packet atomically and leaves it with priority.
    fn revalidate_root(&mut self, need_priority: bool) -> bool {
        self.revalidate_identity(need_priority)
            || (self.rebase() && self.revalidate_identity(need_priority))
    }

    /// A base found changed where it was only re-bundled: a snapshot (this
    /// thread's own, taken inside the closure, or another thread's) took
    /// the packet of a hard-linked node below the root to its other
    /// parent, so the root holds a new packet with the same state.
    /// Retrying the closure took the node back, and a closure that
    /// snapshots an ancestor on every attempt took it away again: a
    /// livelock of one thread (sequential model). Instead the root is read
    /// again (a snapshot, which bundles the node back) and, when every node
    /// of it holds the state this attempt read (`same_state`: payloads and
    /// child lists by identity, void slots where they were), that becomes
    /// the base: a CAS against it stands for a read of the same state.
    ///
    /// Only before this attempt has put anything in limbo (`is_plain`):
    /// another transaction that meets a limbo
    /// of ours *touches* our root (`validate_over`) with a copy of the
    /// same state precisely so that our commit fails; a rebase would undo
    /// that. `false`: a real conflict (or not applicable).
    pub(crate) fn rebase(&mut self) -> bool {
        if !self.may_rebase() {
            return false;
        }
        let Some(snap) = crate::drive::snapshot_result(&self.root, &mut self.neg) else {
            return false;
        };
        self.rebase_onto(snap)
    }

    /// The commit of this attempt's working version against its base (the
    /// snapshot's wrapper is used up by it).
    pub(crate) fn commit_frame(&mut self) -> crate::protocol::Frame {
        crate::protocol::Frame::Commit(crate::protocol::CommitFrame::new(
            self.root.clone(),
            self.old.clone(),
            self.packet.clone(),
            self.snap_wrapper.take(),
        ))
    }

    /// Whether a conflict may be answered by [`rebase`](Self::rebase).
    /// TLA+: RebaseOK
    pub(crate) fn may_rebase(&self) -> bool {
        !self.doomed && self.is_plain() && !self.neg.expired
    }

    /// The second half of [`rebase`](Self::rebase), once the root was read
    /// again (`snap`): local work only.
    /// TLA+: RebaseCheck
    pub(crate) fn rebase_onto(&mut self, snap: crate::protocol::SnapResult) -> bool {
        let before = Snapshot {
            root: self.root.clone(),
            packet: self.old.clone(),
        };
        let now = Snapshot {
            root: self.root.clone(),
            packet: snap.packet.clone(),
        };
        if !crate::snapshot::same_state(
            &before,
            &now,
            &before.packet,
            &now.packet,
            crate::snapshot::Voids::Strict,
        ) {
            return false;
        }
        self.old = snap.packet;
        self.snap_wrapper = snap.wrapper;
        true
    }

    /// `revalidate_root` by identity: the root holds `old` itself.
    fn revalidate_identity(&mut self, need_priority: bool) -> bool {
        loop {
            let w = self.root.load();
            if w.has_priority() {
                let same = Arc::ptr_eq(w.own_packet(), &self.old);
                if same {
                    self.snap_wrapper = Some(w);
                }
                return same;
            }
            if !need_priority {
                if let Some(current) = dynamic::base_is_current(&self.root, &self.old) {
                    return current;
                }
            }
            let mode = UnbundleMode::Commit {
                old: self.old.clone(),
                new: self.old.clone(),
            };
            let frame = UnbundleFrame::new(self.root.clone(), w, mode);
            match Operation::run_frame(Frame::from(frame), &mut self.neg) {
                Outcome::Unbundle(UnbundleResult::NewSubvalue(installed)) => {
                    let (_, _, mine) = installed.last().expect("the root's own CAS");
                    self.snap_wrapper = Some(mine.clone());
                    return true;
                }
                Outcome::Unbundle(UnbundleResult::SubvalueChanged) => return false,
                // Disturbed (tagged): look again.
                _ => {}
            }
        }
    }

    /// `validate` before a child CAS that replaces `w`. When `w` is a limbo
    /// wrapper another transaction (or an earlier attempt) installed, that
    /// transaction may still commit believing its limbo is in place: then
    /// the base is not only checked but *touched*: the root is CASed to a
    /// new wrapper holding the same packet, so that such a transaction's
    /// commit (a CAS on the same root) fails instead of publishing a parent
    /// that no longer lists the child while the child carries our packet.
    fn validate_over(&mut self, child: &Arc<Linkage>, w: &PacketWrapper) -> bool {
        if !self.validate() {
            return false;
        }
        // Another attempt's limbo, and that attempt may still commit: it
        // relies on its limbo (`crate::limbo`). Touching our root does not
        // stop it when its root is elsewhere (below ours, or bundled in it:
        // its commit then reads a packet the touch does not change), and
        // replacing its limbo would let it publish our carried packet as
        // the child's state. We lose, and wait for it before the next
        // attempt.
        if let Some(owner) = w.live_foreign_limbo(self.limbo_owner.as_ref()) {
            // No tag: it would only block the owner, whom the next attempt
            // waits for anyway (holding no tag).
            self.wait_for = Some((owner.clone(), child.clone()));
            self.doomed = true;
            return false;
        }
        let foreign_limbo = !w.has_priority() && w.packet.is_some() && w.serial != self.serial();
        if !foreign_limbo {
            return true;
        }
        // The touch is a CAS on the root: it needs the root with priority.
        let snap = match self.snap_wrapper.clone() {
            Some(snap) if dynamic::tx_validate(&self.root, &snap) => snap,
            _ => {
                if !self.revalidate_root(true) {
                    self.doom();
                    return false;
                }
                self.snap_wrapper.clone().expect("set by revalidate_root")
            }
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
        Ok(copy_path(&mut self.packet, &path, mark_missing))
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
        let released = self.released_subtrees();
        if structure::reaches(&self.root, &self.packet, &released, child, parent) {
            return Err(TreeError::Cycle);
        }
        let in_tree = self.contains_link(child);
        // A node released by this attempt: its packet as it is now (where
        // it was put back and released again with its new parent, maybe).
        let moved = if !in_tree && online && self.moved.iter().any(|m| Arc::ptr_eq(&m.child, child))
        {
            Some(self.take_moved(child))
        } else {
            None
        };
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
        } else if self.released_packet_of(child).is_some() {
            // Below a node this attempt released: its wrapper names a parent
            // inside that released subtree, which after the commit is no
            // part of this tree, so this tree's slot could not be where
            // writers of it look. Pulling it would unbundle it through the
            // released node's limbo, which dooms this attempt, every
            // attempt. It joins as a plain insert does: the next snapshot
            // bundles it in through its own wrapper; this attempt cannot
            // read it (documented on `insert_online`).
            None
        } else {
            let pulled = self.pull_child(parent, child);
            let pulled = self.void_present(child, pulled);
            Some(self.adopt_moved(child, pulled))
        };
        self.inserts.push(structure::PendingInsert {
            parent: parent.clone(),
            child: child.clone(),
            external: !in_tree,
        });
        let pkt = self.packet_mut(parent, true)?;
        let ch = pkt.children.get_or_insert_with(|| {
            Arc::new(Children {
                nodes: Arc::default(),
                slots: Default::default(),
            })
        });
        let ch = Arc::make_mut(ch);
        Arc::make_mut(&mut ch.nodes).push(child.clone());
        ch.slots.push(child_packet);
        Ok(())
    }

    /// The subtrees this attempt released and did not put back, with their
    /// packets as released: their edges are this attempt's too (for the
    /// cycle check).
    pub(crate) fn released_subtrees(&self) -> Vec<(Arc<Linkage>, Arc<Packet>)> {
        self.detached()
            .map(|m| (m.child.clone(), m.last_released.clone()))
            .collect()
    }

    /// The released children that head a detached subtree once this attempt
    /// commits: not in the working tree, and not inside another such
    /// subtree (a node released, put back elsewhere, and then released
    /// with its new parent lives in the parent's released packet; its own
    /// entry's packet is an earlier one).
    fn detached(&self) -> impl Iterator<Item = &Moved> {
        let out: Vec<&Moved> = self
            .moved
            .iter()
            .filter(|m| !self.contains_link(&m.child))
            .collect();
        let heads: Vec<&Moved> = out
            .iter()
            .filter(|m| {
                !out.iter().any(|o| {
                    !Arc::ptr_eq(&o.child, &m.child)
                        && packet::find(&o.child, &o.last_released, &m.child).is_some()
                })
            })
            .copied()
            .collect();
        heads.into_iter()
    }

    /// The packet `node` has once this attempt commits: in the working tree,
    /// or else in a subtree this attempt released (with its packet as
    /// released). `None`: neither (it left the tree, or was never in it).
    fn final_packet_of(&self, node: &Linkage) -> Option<Arc<Packet>> {
        packet::find(&self.root, &self.packet, node)
            .cloned()
            .or_else(|| self.released_packet_of(node))
    }

    /// The packet of `node` inside a subtree this attempt released (the
    /// released node itself or one below it), if any.
    fn released_packet_of(&self, node: &Linkage) -> Option<Arc<Packet>> {
        self.detached()
            .find_map(|m| packet::find(&m.child, &m.last_released, node).cloned())
    }

    /// The packet of a node this attempt released, taken for a move: where
    /// it is now. If it was put back and then released again with another
    /// node (so it lives in that node's released packet), its slot there is
    /// made void, on a path marked missing: the detached subtree must not
    /// keep a second, stale copy of it (it would be what a reader of the
    /// node finds through that parent after the commit: a lost update).
    fn take_moved(&mut self, node: &Arc<Linkage>) -> Arc<Packet> {
        let own = self
            .moved
            .iter()
            .position(|m| Arc::ptr_eq(&m.child, node))
            .expect("a released node");
        let heads: Vec<*const Linkage> = self.detached().map(|m| Arc::as_ptr(&m.child)).collect();
        for i in 0..self.moved.len() {
            let m = &self.moved[i];
            if Arc::ptr_eq(&m.child, node) || !heads.contains(&Arc::as_ptr(&m.child)) {
                continue;
            }
            let Some(path) = packet::find_path(&m.child, &m.last_released, node) else {
                continue;
            };
            let found = packet::find(&m.child, &m.last_released, node)
                .expect("found above")
                .clone();
            let mut head = m.last_released.clone();
            Self::set_slot(&mut head, &path, None);
            self.moved[i].last_released = head;
            return found;
        }
        self.moved[own].last_released.clone()
    }

    /// A subtree pulled in by an online insert may hold the packet of a
    /// node this tree holds already (a hard link: the child's subtree and
    /// this tree share a node). One node has one packet in a working tree:
    /// the copy this tree holds stays (it is the one the commit validates;
    /// if the node's packet moved into the child since the snapshot, this
    /// attempt cannot commit anyway), the pulled copy becomes a void slot
    /// on a path marked missing, which is what a bundle of the child as a
    /// part of this tree makes of it (`pull_child`). Two copies made reads
    /// and writes of that node disagree within one attempt.
    ///
    /// The same for a node inside a subtree this attempt released: its
    /// state in this attempt is in that released packet (written there,
    /// maybe), and it joins as a direct insert of it does (void, see
    /// `insert_impl`); `adopt_moved` then puts a released node itself back
    /// with its released packet. A pull that found such a node present
    /// (a doomed attempt reads the child without colliding with its own
    /// limbo) showed the committed copy: a child list without the child
    /// this attempt had released from it.
    fn void_present(&mut self, child: &Arc<Linkage>, mut pulled: Arc<Packet>) -> Arc<Packet> {
        let mut changed = false;
        while let Some((path, _)) = packet::find_slot(&pulled, SlotKind::Present, |n| {
            self.contains_link(n) || self.released_packet_of(n).is_some()
        }) {
            Self::set_slot(&mut pulled, &path, None);
            changed = true;
        }
        if changed {
            self.repacked(child, &pulled);
        }
        pulled
    }

    /// The pulled node `child` now holds `pulled` in the working tree: a
    /// release of it compares with that.
    fn repacked(&mut self, child: &Arc<Linkage>, pulled: &Arc<Packet>) {
        if let Some(entry) = self
            .pulled
            .iter_mut()
            .find(|p| Arc::ptr_eq(&p.child, child))
        {
            entry.packet = pulled.clone();
        }
    }

    /// A subtree pulled in by an online insert may list a node this attempt
    /// released: as a void slot (its packet was bundled here, so the pull
    /// left it void), or with the committed copy, which lacks what this
    /// attempt did to it (its view showed a child it had released). The
    /// node moves into the pulled subtree with the
    /// packet it was released with, on a path marked missing, as a move
    /// does: `settle_moves` puts its final packet in its limbo wrapper, and
    /// after the commit it takes priority with it (`unlimbo`), so its own
    /// wrapper leads to that packet and the next bundle collects it. Without
    /// this it was in no slot of the working tree: unreadable.
    ///
    /// Not so for a node *below* a released one: its wrapper names a
    /// parent in the released subtree, which would keep pointing at the
    /// packet it had there while this tree's copy is written (a lost
    /// update). Its slot stays void: the next snapshot bundles it in.
    fn adopt_moved(&mut self, child: &Arc<Linkage>, mut pulled: Arc<Packet>) -> Arc<Packet> {
        if self.moved.is_empty() {
            return pulled;
        }
        let mut adopted: Vec<*const Linkage> = Vec::new();
        loop {
            let want = |n: &Arc<Linkage>| {
                !adopted.contains(&Arc::as_ptr(n))
                    && !self.contains_link(n)
                    && self.moved.iter().any(|m| Arc::ptr_eq(&m.child, n))
            };
            // A void slot, or a present one: the pulled subtree's copy of a
            // node this attempt released is the committed one, without what
            // this attempt did to it (its children released, its payload
            // written); the released packet is its state in this attempt.
            let Some((path, node)) = packet::find_slot(&pulled, SlotKind::Either, want) else {
                break;
            };
            adopted.push(Arc::as_ptr(&node));
            let released = self.take_moved(&node);
            Self::fill_void(&mut pulled, &path, released);
        }
        if !adopted.is_empty() {
            self.repacked(child, &pulled);
        }
        pulled
    }

    /// Online insert: puts the child in limbo under `parent` and returns its
    /// packet. A doomed attempt only reads the child, bundled (it will not
    /// commit).
    fn pull_child(&mut self, parent: &Arc<Linkage>, child: &Arc<Linkage>) -> Arc<Packet> {
        let index = self
            .children_list(parent)
            .ok()
            .flatten()
            .map_or(0, |c| c.nodes.len());
        let serial = self.serial();
        loop {
            let read = match dynamic::insert_read_child(child, parent) {
                InsertRead::NeedsBundle(w) => {
                    // Bundle the child as a part of this transaction's
                    // tree: a node below it whose packet lives in this tree
                    // (a hard link) collides and stays there (a void slot
                    // in the child's packet), instead of being stolen,
                    // which would doom this attempt and every later one.
                    // The result may be marked missing for those void
                    // slots only; their packets are in this tree. The same
                    // for a node in a subtree this attempt released: its
                    // packet is in our limbo, and taking it out of there
                    // doomed this attempt, every attempt.
                    let bundle_serial = serial::next(w.serial);
                    let mut held = packet::nodes_in(&self.packet);
                    for m in self.detached() {
                        held.push(m.child.clone());
                        held.extend(packet::nodes_in(&m.last_released));
                    }
                    let tree = InProgress::of_tree(&self.root, &held);
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
                    // A doomed attempt (it will not commit) only reads the
                    // child, complete, so its view stays whole.
                    if self.doomed || !self.validate_over(child, &w) {
                        return packet;
                    }
                    let owner = self.limbo_owner();
                    let limbo = Limbo {
                        parent,
                        index,
                        serial,
                        owner: &owner,
                    };
                    match dynamic::insert_cas_child(child, &w, &limbo, &mut self.neg) {
                        ChildCas::Done(wrapper) => {
                            crate::drive::hold_limbo(child, &wrapper);
                            self.pulled.push(Pulled {
                                child: child.clone(),
                                packet: packet.clone(),
                                wrapper,
                            });
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

/// Path-copies the tree `root` along the slot indices `path` and returns
/// the last packet on it, uniquely owned; with `mark_missing`, every packet
/// on the way is marked missing (the subtree needs bundling again).
fn copy_path<'a>(root: &'a mut Arc<Packet>, path: &[u32], mark_missing: bool) -> &'a mut Packet {
    let mut cur = root;
    for &i in path {
        let p = Packet::make_mut(cur);
        p.missing |= mark_missing;
        let ch = Arc::make_mut(p.children.as_mut().expect("path goes through children"));
        cur = ch.slots[i as usize]
            .as_mut()
            .expect("path goes through present slots");
    }
    let p = Packet::make_mut(cur);
    p.missing |= mark_missing;
    p
}

/// Takes a child out of a limbo this attempt installed, once that limbo
/// names a parent that does not list the child (and never will: a release
/// that committed, a move that committed elsewhere, an online insert that
/// was released again or whose attempt did not commit). Its state is the
/// carried packet either way; a priority wrapper holding it says so
/// without naming that parent. Such a stale `bundled_by` edge is not an
/// edge of the tree, so it can close a loop with real ones (the parent
/// inserted below the child later) and every walk up that loop, a snapshot
/// or a commit, went round forever. A plain CAS from the wrapper this
/// attempt installed: when it fails, someone has taken the child out of
/// that limbo already (an unbundle or a bundle), which is as good.
fn unlimbo(child: &Linkage, installed: &Arc<PacketWrapper>) {
    let Some(carried) = installed.packet.clone() else {
        return;
    };
    let next = PacketWrapper::priority(carried, serial::next(installed.serial));
    let _ = child.slot.compare_exchange(installed, next);
}

/// After a commit that lists `child` under `parent` with a present slot:
/// turns this attempt's limbo `installed` into a bundled reference to
/// `parent` (a plain CAS; when it fails, someone has taken the child out of
/// that limbo already, which is as good).
fn rebundle(child: &Linkage, parent: &Arc<Linkage>, installed: &Arc<PacketWrapper>) {
    let next = PacketWrapper::bundled(parent, installed.index, serial::next(installed.serial));
    let _ = child.slot.compare_exchange(installed, next);
}

impl Drop for Transaction {
    /// The end of an attempt: no limbo of it may outlive it naming a parent
    /// that does not list the child (see `unlimbo`).
    fn drop(&mut self) {
        for w in self.moved.iter().filter_map(|m| m.wrapper.as_ref()) {
            crate::drive::forget_limbo(w);
        }
        for p in &self.pulled {
            crate::drive::forget_limbo(&p.wrapper);
        }
        if self.committed {
            // Released children: their parent's committed version does not
            // list them; moved ones are listed by another parent, on a path
            // this commit marked missing, so the next bundle collects them
            // through their priority wrapper.
            for m in &self.moved {
                let Some(w) = &m.wrapper else { continue };
                // Put back under the parent it was released from (maybe in
                // a subtree released later): that limbo is listed.
                let listed = self.final_packet_of(&m.limbo_parent).is_some_and(|p| {
                    p.children.as_ref().is_some_and(|c| {
                        c.position(&m.child, w.index)
                            .is_some_and(|i| c.slots[i].is_some())
                    })
                });
                if listed {
                    // Its state is that slot: say so, rather than leave a
                    // limbo whose carried packet goes stale with the next
                    // commit through the parent, and would be read if the
                    // parent ever listed it with a void slot (a hard link).
                    rebundle(&m.child, &m.limbo_parent, w);
                } else {
                    unlimbo(&m.child, w);
                }
            }
        } else {
            // Pulled children: the parent's committed version never listed
            // them.
            for p in &self.pulled {
                unlimbo(&p.child, &p.wrapper);
            }
            // Released ones: their parent's committed version still lists
            // them with a present slot (it did when the release validated,
            // and every change of it since either went through the child,
            // taking it out of this limbo, or kept that slot its state), so
            // they are bundled into it. A limbo left behind carries a
            // packet that goes stale (or, settled for a commit that then
            // failed, was never committed).
            for m in &self.moved {
                if let Some(w) = &m.wrapper {
                    rebundle(&m.child, &m.limbo_parent, w);
                }
            }
        }
        if let Some(owner) = &self.limbo_owner {
            owner.finish();
        }
    }
}

impl<P: 'static> Index<&Node<P>> for Transaction {
    type Output = P;

    /// # Panics
    ///
    /// If `node` is not in this transaction's subtree, naming the node; see
    /// [`Transaction::get`].
    fn index(&self, node: &Node<P>) -> &P {
        match self.get(node) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }
}

impl<P: 'static> IndexMut<&Node<P>> for Transaction {
    /// # Panics
    ///
    /// If `node` is not in this transaction's subtree, naming the node; see
    /// [`Transaction::get_mut`].
    fn index_mut(&mut self, node: &Node<P>) -> &mut P {
        match self.get_mut(node) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The root, the attempt, and whether this attempt has written yet.
impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field(
                "root",
                &NodeRef {
                    link: self.root.clone(),
                },
            )
            .field("attempt", &self.attempt)
            .field("written", &!Arc::ptr_eq(&self.old, &self.packet))
            .finish_non_exhaustive()
    }
}
