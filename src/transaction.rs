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
    BundleFrame, BundleResult, Frame, Operation, Outcome, SnapResult, Step, UnbundleFrame,
    UnbundleMode, UnbundleResult,
};
use crate::serial::{self, Serial};
use crate::snapshot::{Snapshot, children_of};
use crate::structure;
use crate::wrapper::PacketWrapper;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

mod base;
mod edit;
mod moves;

use edit::{copy_path, rebundle, unlimbo};

#[cfg(any(loom, test))]
std::thread_local! {
    /// Loom (`__private::without_seal`) and the explorer's never-bundled
    /// trees (`explore::config::two_level_unbundled`): no seal on this
    /// thread.
    pub(crate) static SEAL_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

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
    /// without one (each tags its linkage, but a transaction's first
    /// failed commit CAS: a soft loss).
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
}

#[cfg(all(test, not(loom)))]
impl Transaction {
    /// The explorer's view of what a dynamic attempt holds (the state that
    /// `Canon` fingerprints): its doom, its pending inserts, its moved and
    /// pulled children with their limbo wrappers, its limbo owner and the
    /// owner it must wait for.
    pub(crate) fn canon_dynamic(&self, c: &mut crate::explore::Canon) {
        c.n(u64::from(self.doomed));
        c.n(self.inserts.len() as u64);
        for i in &self.inserts {
            c.link(&i.parent);
            c.link(&i.child);
            c.n(u64::from(i.external));
        }
        c.n(self.moved.len() as u64);
        for m in &self.moved {
            c.link(&m.child);
            c.link(&m.limbo_parent);
            c.opt_wrapper(m.wrapper.as_ref());
            c.packet(&m.last_released);
        }
        c.n(self.pulled.len() as u64);
        for p in &self.pulled {
            c.link(&p.child);
            c.packet(&p.packet);
            c.wrapper(&p.wrapper);
        }
        c.opt_owner(self.limbo_owner.as_ref());
        match &self.wait_for {
            None => c.n(0),
            Some((o, l)) => {
                c.opt_owner(Some(o));
                c.link(l);
            }
        }
    }
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
