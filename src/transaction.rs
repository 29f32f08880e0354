//! Transactions: private copy-on-write versions of a subtree, committed
//! with one CAS.

use crate::error::{NotFound, TreeError};
use crate::linkage::Linkage;
use crate::negotiation::Negotiator;
use crate::node::{AsNode, Node, NodeRef, not_found};
use crate::packet::{self, Children, Packet};
use crate::protocol::dynamic::{self, ChildCas, InsertRead};
use crate::protocol::{
    CommitFrame, CommitResult, Frame, Operation, Outcome, SnapResult, SnapshotFrame, UnbundleFrame,
    UnbundleMode,
};
use crate::serial::{self, Serial};
use crate::snapshot::{Snapshot, children_of};
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
    root: Arc<Linkage>,
    /// The packet the snapshot read (the commit's expected value).
    old: Arc<Packet>,
    /// The working version.
    packet: Arc<Packet>,
    snap_wrapper: Option<Arc<PacketWrapper>>,
    /// A dynamic operation lost a race: the commit must not happen.
    doomed: bool,
    serial: Serial,
    attempt: u32,
    /// Stamp and priority tags of this transaction (kept across retries;
    /// cleared on commit and when dropped, e.g. by a panic in the closure).
    neg: Negotiator,
}

/// What it took to commit a transaction (see
/// [`Node::iterate_commit_with_stats`](crate::Node::iterate_commit_with_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Attempts thrown away before the one that committed (conflicts,
    /// dynamic operations that lost a race, `iterate_commit_if` refusals).
    pub retries: u32,
    /// CASes that failed inside the protocol (each one tags its linkage).
    pub cas_failures: u32,
    /// Times the transaction waited on another transaction's priority tag.
    pub waits: u32,
    /// Total time spent in those waits.
    pub waited: std::time::Duration,
}

/// What the body of a transaction asks for.
pub(crate) enum Flow<E> {
    Commit,
    Retry,
    Stop,
    Fail(E),
}

/// Runs the protocol for a snapshot of `node`.
pub(crate) fn snapshot_result(node: &Arc<Linkage>, neg: &mut Negotiator) -> SnapResult {
    let frame = Frame::Snapshot(SnapshotFrame::new(node.clone()));
    match Operation::run_frame(frame, neg) {
        Outcome::Snapshot(r) => r,
        _ => unreachable!("a snapshot operation returns a snapshot"),
    }
}

pub(crate) fn take_snapshot(node: &Arc<Linkage>) -> Snapshot {
    let mut neg = Negotiator::new();
    let r = snapshot_result(node, &mut neg);
    Snapshot {
        root: node.clone(),
        packet: r.packet,
    }
}

/// The retry loop shared by every `iterate_commit` flavour.
pub(crate) fn drive<E>(
    root: &Arc<Linkage>,
    stats: Option<&mut TxStats>,
    mut body: impl FnMut(&mut Transaction) -> Flow<E>,
) -> Result<Option<Snapshot>, E> {
    let mut attempt = 0u32;
    let mut neg = Negotiator::new();
    let result = loop {
        let snap = snapshot_result(root, &mut neg);
        let mut tr = Transaction {
            root: root.clone(),
            old: snap.packet.clone(),
            packet: snap.packet,
            snap_wrapper: snap.wrapper,
            doomed: false,
            serial: 0,
            attempt,
            neg,
        };
        attempt += 1;
        let flow = body(&mut tr);
        neg = std::mem::replace(&mut tr.neg, Negotiator::with_stamp(0));
        match flow {
            Flow::Commit => {}
            Flow::Retry => continue,
            Flow::Stop => break Ok(None),
            Flow::Fail(e) => break Err(e),
        }
        if tr.doomed {
            tracing::trace!(attempt, "transaction doomed by a dynamic operation");
            continue;
        }
        let frame = CommitFrame::new(root.clone(), tr.old, tr.packet.clone(), tr.snap_wrapper);
        match Operation::run_frame(Frame::Commit(frame), &mut neg) {
            Outcome::Commit(CommitResult::Committed) => {
                break Ok(Some(Snapshot {
                    root: tr.root,
                    packet: tr.packet,
                }));
            }
            Outcome::Commit(CommitResult::Conflict) => {
                tracing::trace!(attempt, "transaction conflict, retrying");
            }
            _ => unreachable!("a commit operation returns a commit result"),
        }
    };
    if let Some(s) = stats {
        *s = TxStats {
            retries: attempt.saturating_sub(1),
            cas_failures: neg.cas_failures,
            waits: neg.waits,
            waited: neg.waited,
        };
    }
    result
}

impl Transaction {
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
    pub fn release(&mut self, parent: &impl AsNode, child: &impl AsNode) -> Result<(), TreeError> {
        let (parent, child) = (parent.linkage(), child.linkage());
        let pos = self
            .children_list(parent)?
            .and_then(|c| c.position(child, 0))
            .ok_or(TreeError::NotAChild)?;
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
        let Some(slot) = slot else {
            // Void slot: the child's packet lives under another parent.
            return Ok(());
        };
        if self.contains_link(child) {
            // Still reachable through another parent in this subtree (hard
            // link): its packet stays where it is.
            return Ok(());
        }
        let serial = self.serial();
        loop {
            let Some(w) = dynamic::release_read_child(child, parent, &slot) else {
                self.doomed = true;
                return Ok(());
            };
            match dynamic::release_cas_child(
                child,
                &w,
                parent,
                pos,
                serial,
                slot.clone(),
                &mut self.neg,
            ) {
                ChildCas::Done => return Ok(()),
                ChildCas::Failed => {}
                ChildCas::Blocked => self.neg.wait(child),
            }
        }
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
        let path =
            packet::find_path(&self.root, &self.packet, parent).ok_or_else(|| not_found(parent))?;
        if Arc::ptr_eq(parent, child) || Arc::ptr_eq(&self.root, child) {
            return Err(TreeError::Cycle);
        }
        if self
            .children_list(parent)?
            .is_some_and(|c| c.position(child, 0).is_some())
        {
            return Err(TreeError::AlreadyChild);
        }
        // Ancestors of `parent` inside this subtree.
        let mut p: &Arc<Packet> = &self.packet;
        for &i in &path {
            let ch = p.children.as_ref().expect("path goes through children");
            if Arc::ptr_eq(&ch.nodes[i as usize], child) {
                return Err(TreeError::Cycle);
            }
            p = ch.slots[i as usize].as_ref().expect("present");
        }
        // Is the child already in this subtree (a hard link within it)?
        let in_tree = self.contains_link(child);
        let child_packet = if in_tree {
            let cp = packet::find(&self.root, &self.packet, child).expect("just found");
            if packet::find(child, cp, parent).is_some() {
                return Err(TreeError::Cycle);
            }
            None
        } else {
            if reaches(child, parent) || reaches(child, &self.root) {
                return Err(TreeError::Cycle);
            }
            online.then(|| self.pull_child(parent, child))
        };
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
    /// packet.
    fn pull_child(&mut self, parent: &Arc<Linkage>, child: &Arc<Linkage>) -> Arc<Packet> {
        let index = self
            .children_list(parent)
            .ok()
            .flatten()
            .map_or(0, |c| c.nodes.len());
        let serial = self.serial();
        loop {
            match dynamic::insert_read_child(child, parent) {
                InsertRead::Ready(w) => {
                    match dynamic::insert_cas_child(child, &w, parent, index, serial, &mut self.neg)
                    {
                        ChildCas::Done => {
                            return w.packet.clone().expect("a ready child carries its packet");
                        }
                        ChildCas::Failed => {}
                        ChildCas::Blocked => self.neg.wait(child),
                    }
                }
                InsertRead::NeedsBundle => {
                    snapshot_result(child, &mut self.neg);
                }
                InsertRead::NeedsPromote(w) => {
                    let frame = UnbundleFrame::new(child.clone(), w, UnbundleMode::Promote);
                    Operation::run_frame(Frame::from(frame), &mut self.neg);
                }
            }
        }
    }
}

/// The current child list of a node, read without bundling anything (a
/// snapshot here could steal nodes shared with the calling transaction's
/// tree and make it retry forever).
fn peek_children(link: &Arc<Linkage>) -> Vec<Arc<Linkage>> {
    loop {
        let w = link.load();
        let packet = if w.has_priority() {
            w.own_packet().clone()
        } else {
            let frame = UnbundleFrame::new(link.clone(), w, UnbundleMode::Peek);
            // Peeking never CASes, so it never tags or waits.
            let mut neg = Negotiator::with_stamp(0);
            match Operation::run_frame(Frame::from(frame), &mut neg) {
                Outcome::Unbundle(crate::protocol::UnbundleResult::Found(p)) => p,
                _ => continue,
            }
        };
        return packet
            .children
            .as_ref()
            .map(|c| c.nodes.as_ref().clone())
            .unwrap_or_default();
    }
}

/// Whether `to` is `from` or below it, following current child lists.
fn reaches(from: &Arc<Linkage>, to: &Arc<Linkage>) -> bool {
    let mut seen: Vec<*const Linkage> = Vec::new();
    let mut stack = vec![from.clone()];
    while let Some(n) = stack.pop() {
        if Arc::ptr_eq(&n, to) {
            return true;
        }
        if seen.contains(&Arc::as_ptr(&n)) {
            continue;
        }
        seen.push(Arc::as_ptr(&n));
        stack.extend(peek_children(&n));
    }
    false
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
