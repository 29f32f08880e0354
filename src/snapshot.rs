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
        .map(|c| c.nodes.iter())
        .unwrap_or_default()
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

/// Snapshot identity (issue 13): "did this change?" without comparing
/// payloads, from the path copies every write makes.
impl Snapshot {
    /// Whether both are the same version of the same subtree (one pointer
    /// comparison each for root and packet).
    ///
    /// ```
    /// use kame_stm::Node;
    /// let n = Node::new(1u8);
    /// let (a, b) = (n.snapshot(), n.snapshot());
    /// assert!(a.ptr_eq(&b)); // nothing committed in between
    /// n.iterate_commit(|tr| tr[&n] = 2);
    /// assert!(!a.ptr_eq(&n.snapshot()));
    /// ```
    #[must_use]
    pub fn ptr_eq(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.root, &other.root) && Arc::ptr_eq(&self.packet, &other.packet)
    }

    /// Whether `node`'s subtree (its payload, its child list, or anything
    /// below) differs between `old` and this snapshot. Never `false` for a
    /// change. A write path-copies every packet from the root down to the
    /// node it writes, so the answer is found by following the packets that
    /// differ: O(depth) for a change, and for a subtree that was only
    /// re-bundled (new packets, same contents) the re-packed paths are
    /// walked and `false` returned (a leaf's packet copied without a
    /// write, which the protocol does rarely, counts as a change). A node
    /// in one snapshot only has changed; in neither, it has not.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let rack = Node::new("rack");
    /// let (dmm, psu) = (Node::new(0.0_f64), Node::new(0.0_f64));
    /// rack.insert(&dmm).unwrap();
    /// rack.insert(&psu).unwrap();
    /// let before = rack.snapshot();
    /// let after = rack.iterate_commit(|tr| tr[&psu] = 5.0);
    /// assert!(after.changed_since(&before, &psu));
    /// assert!(after.changed_since(&before, &rack)); // psu is below it
    /// assert!(!after.changed_since(&before, &dmm));
    /// ```
    pub fn changed_since(&self, old: &Snapshot, node: &impl AsNode) -> bool {
        let link = node.linkage();
        match (old.packet_of(link), self.packet_of(link)) {
            (Ok(a), Ok(b)) => !same_state(old, self, a, b, Voids::Strict),
            (Err(_), Err(_)) => false,
            _ => true,
        }
    }
}

/// How `same_state` compares a hard-linked node's slots.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Voids {
    /// A slot void in one packet must be void in the other (the same
    /// bundling too: what a commit against the other packet needs).
    Strict,
    /// A node may be present in one and void in the other (its packet
    /// under its other parent): compared where each snapshot holds it.
    /// Same state, different bundling.
    Anywhere,
}

/// Whether two packets of one node hold the same state of its subtree.
/// Payload identity is the payload's address: an inner node's payload is
/// shared between its re-packed versions and copied on write; a leaf's is
/// in its packet, which is shared until written. Both packets are alive
/// here, so an address cannot have been reused. A void slot (a hard link
/// whose packet lives under its other parent) is compared where each
/// snapshot holds that packet.
pub(crate) fn same_state<'s>(
    old: &'s Snapshot,
    new: &'s Snapshot,
    a: &'s Arc<Packet>,
    b: &'s Arc<Packet>,
    voids: Voids,
) -> bool {
    let strict = voids == Voids::Strict;
    let mut todo: Vec<(&Packet, &Packet)> = vec![(a, b)];
    while let Some((a, b)) = todo.pop() {
        if std::ptr::eq(a, b) {
            continue;
        }
        let pa = a.payload.get() as *const dyn std::any::Any as *const ();
        let pb = b.payload.get() as *const dyn std::any::Any as *const ();
        if pa != pb {
            return false;
        }
        match (a.children.as_deref(), b.children.as_deref()) {
            (None, None) => {}
            (Some(ca), Some(cb)) => {
                if ca.nodes.len() != cb.nodes.len()
                    || !ca
                        .nodes
                        .iter()
                        .zip(cb.nodes.iter())
                        .all(|(x, y)| Arc::ptr_eq(x, y))
                {
                    return false;
                }
                for ((sa, sb), n) in ca.slots.iter().zip(cb.slots.iter()).zip(ca.nodes.iter()) {
                    match (sa, sb) {
                        (Some(x), Some(y)) => todo.push((x, y)),
                        (None, None) => match (old.packet_of(n), new.packet_of(n)) {
                            (Ok(x), Ok(y)) => todo.push((x, y)),
                            _ => return false,
                        },
                        (Some(x), None) if !strict => match new.packet_of(n) {
                            Ok(y) => todo.push((x, y)),
                            Err(_) => return false,
                        },
                        (None, Some(y)) if !strict => match old.packet_of(n) {
                            Ok(x) => todo.push((x, y)),
                            Err(_) => return false,
                        },
                        _ => return false,
                    }
                }
            }
            _ => return false,
        }
    }
    true
}
