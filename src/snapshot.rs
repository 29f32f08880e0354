//! Snapshots: immutable, consistent views of a subtree.

use crate::error::NotFound;
use crate::linkage::Linkage;
use crate::node::{AsNode, Node, NodeRef, not_found_in_snapshot};
use crate::packet::{self, Packet};
use std::fmt;
use std::ops::Index;
use std::sync::Arc;

/// A consistent view of a subtree at one instant.
///
/// Reading never blocks and never fails for nodes in the subtree. Holding a
/// snapshot keeps the versions it shows alive (and nothing else): writers
/// go on committing and newer versions are reclaimed as usual.
///
/// ```
/// use kame_stm::Node;
/// let cryostat = Node::new("cryostat");
/// let temp = Node::new(4.2_f64);
/// cryostat.insert(&temp).unwrap();
/// let shot = cryostat.snapshot();
/// assert_eq!(shot[&temp], 4.2);
/// assert_eq!(shot.children(&cryostat).unwrap().count(), 1);
/// ```
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) root: Arc<Linkage>,
    pub(crate) packet: Arc<Packet>,
}

impl Snapshot {
    /// The payload of `node`.
    ///
    /// # Errors
    ///
    /// [`NotFound`] when `node` is not in this subtree (`shot[&node]`
    /// panics instead).
    pub fn get<P: 'static>(&self, node: &Node<P>) -> Result<&P, NotFound> {
        self.packet_of(&node.link).map(|p| p.payload::<P>())
    }

    /// Whether `node` is in this subtree.
    pub fn contains(&self, node: &impl AsNode) -> bool {
        self.packet_of(node.linkage()).is_ok()
    }

    /// The children of `node` (in list order).
    ///
    /// # Errors
    ///
    /// [`NotFound`] when `node` is not in this subtree.
    pub fn children(
        &self,
        node: &impl AsNode,
    ) -> Result<impl ExactSizeIterator<Item = NodeRef> + '_, NotFound> {
        let p = self.packet_of(node.linkage())?;
        Ok(children_of(p))
    }

    /// The node this snapshot was taken of.
    #[must_use]
    pub fn root(&self) -> NodeRef {
        NodeRef {
            link: self.root.clone(),
        }
    }

    pub(crate) fn packet_of(&self, link: &Linkage) -> Result<&Arc<Packet>, NotFound> {
        packet::find(&self.root, &self.packet, link).ok_or_else(|| not_found_in_snapshot(link))
    }
}

pub(crate) fn children_of(p: &Packet) -> impl ExactSizeIterator<Item = NodeRef> + '_ {
    p.children
        .as_ref()
        .map(|c| c.nodes.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|l| NodeRef { link: l.clone() })
}

impl<P: 'static> Index<&Node<P>> for Snapshot {
    type Output = P;

    /// # Panics
    ///
    /// If `node` is not in this subtree, naming the node; see
    /// [`Snapshot::get`].
    fn index(&self, node: &Node<P>) -> &P {
        match self.get(node) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("root", &self.root())
            .field("children", &self.packet.child_count())
            .finish()
    }
}

impl Snapshot {
    /// Whether both snapshots show the same committed version of the same
    /// subtree (identity, not equality of payloads): e.g. a display that
    /// redraws only when something changed.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let n = Node::new(0u8);
    /// let (a, b) = (n.snapshot(), n.snapshot());
    /// assert!(a.same_version(&b));
    /// n.iterate_commit(|tr| tr[&n] = 0); // a commit, even of an equal value
    /// assert!(!a.same_version(&n.snapshot()));
    /// ```
    #[must_use]
    pub fn same_version(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.root, &other.root) && Arc::ptr_eq(&self.packet, &other.packet)
    }
}
