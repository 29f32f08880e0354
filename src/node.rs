//! Typed node handles.

use crate::drive::{self, Ended, Flow};
use crate::error::{NotFound, TreeError};
use crate::linkage::Linkage;
use crate::packet::Packet;
use crate::snapshot::Snapshot;
use crate::transaction::{Transaction, TxStats};
use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// A node of a tree whose payload has type `P`.
///
/// A cheap-to-clone handle (one reference count). Different nodes of one
/// tree may have different payload types. A node is kept alive by its
/// handles and by every parent that lists it.
///
/// ```
/// use kame_stm::Node;
/// let root = Node::new(0u32);
/// let leaf = Node::new(String::from("hello"));
/// root.insert(&leaf).unwrap();
/// root.iterate_commit(|tr| tr[&leaf].push_str(", world"));
/// assert_eq!(root.snapshot()[&leaf], "hello, world");
/// ```
pub struct Node<P> {
    pub(crate) link: Arc<Linkage>,
    _payload: PhantomData<fn() -> P>,
}

impl<P> Clone for Node<P> {
    fn clone(&self) -> Self {
        Node {
            link: self.link.clone(),
            _payload: PhantomData,
        }
    }
}

impl<P> PartialEq for Node<P> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.link, &other.link)
    }
}
impl<P> Eq for Node<P> {}

impl<P> fmt::Debug for Node<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Node<{}>@{:p}",
            self.link.type_name,
            Arc::as_ptr(&self.link)
        )
    }
}

/// Anything that names a node: a typed [`Node`] or an untyped [`NodeRef`].
pub trait AsNode: sealed::Sealed {
    #[doc(hidden)]
    fn linkage(&self) -> &Arc<Linkage>;
}

mod sealed {
    pub trait Sealed {}
    impl<P> Sealed for super::Node<P> {}
    impl Sealed for super::NodeRef {}
}

impl<P> AsNode for Node<P> {
    fn linkage(&self) -> &Arc<Linkage> {
        &self.link
    }
}

impl AsNode for NodeRef {
    fn linkage(&self) -> &Arc<Linkage> {
        &self.link
    }
}

impl<P: Clone + Send + Sync + 'static> Node<P> {
    /// Creates a detached node holding `payload`.
    pub fn new(payload: P) -> Self {
        let link = Linkage::new(
            Packet::leaf(payload),
            TypeId::of::<P>(),
            std::any::type_name::<P>(),
        );
        Node {
            link,
            _payload: PhantomData,
        }
    }
}

impl<P: 'static> Node<P> {
    /// An untyped handle to the same node.
    pub fn as_ref(&self) -> NodeRef {
        NodeRef {
            link: self.link.clone(),
        }
    }

    /// A consistent snapshot of this node's subtree.
    ///
    /// One atomic load when the subtree is already bundled; otherwise the
    /// subtree is bundled first. The snapshot may be kept as long as you
    /// like; it never blocks writers or the reclamation of newer versions.
    pub fn snapshot(&self) -> Snapshot {
        drive::take_snapshot(&self.link)
    }

    /// Runs `f` on a private copy of this subtree and commits all its
    /// writes atomically with one CAS, retrying with a fresh snapshot (and
    /// running `f` again) until the commit succeeds. Returns the committed
    /// state.
    ///
    /// `f` may run many times: keep it free of side effects other than
    /// writes through `tr` (no I/O, no blocking, no sends).
    ///
    /// # Panics
    ///
    /// If `f` panics (the transaction is abandoned, its tags released). If
    /// `f` commits, in a nested transaction, into this node's subtree (or
    /// changes it through an ancestor) on [`NESTED_LIMIT`](crate::NESTED_LIMIT)
    /// attempts in a row, it can never commit: the panic message names
    /// both nodes ([`try_iterate_commit`](Self::try_iterate_commit) returns
    /// [`TreeError::NestedConflict`] instead).
    pub fn iterate_commit<F>(&self, mut f: F) -> Snapshot
    where
        F: FnMut(&mut Transaction),
    {
        let r = drive::drive::<std::convert::Infallible>(&self.link, None, |tr| {
            f(tr);
            Flow::Commit
        });
        committed(r)
    }

    /// [`iterate_commit`](Self::iterate_commit), also reporting what it took:
    /// retries, failed CASes and waits on other transactions' priority tags.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let n = Node::new(0u8);
    /// let (shot, stats) = n.iterate_commit_with_stats(|tr| tr[&n] += 1);
    /// assert_eq!((shot[&n], stats.retries), (1, 0));
    /// ```
    ///
    /// # Panics
    ///
    /// As [`iterate_commit`](Self::iterate_commit).
    pub fn iterate_commit_with_stats<F>(&self, mut f: F) -> (Snapshot, TxStats)
    where
        F: FnMut(&mut Transaction),
    {
        let mut stats = TxStats::default();
        let r = drive::drive::<std::convert::Infallible>(&self.link, Some(&mut stats), |tr| {
            f(tr);
            Flow::Commit
        });
        (committed(r), stats)
    }

    /// Like [`iterate_commit`](Self::iterate_commit), but when `f` returns
    /// `false` this attempt is dropped and `f` runs again on a fresh
    /// snapshot. While it waits like this the transaction holds no priority
    /// tag and gives up its age (it negotiates as a transaction started
    /// now), so whatever it waits for can happen.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let n = Node::new(0u32);
    /// let shot = n.iterate_commit_if(|tr| {
    ///     if tr.attempt() < 2 {
    ///         return false; // not yet: run again
    ///     }
    ///     tr[&n] = 7;
    ///     true
    /// });
    /// assert_eq!(shot[&n], 7);
    /// ```
    ///
    /// # Panics
    ///
    /// As [`iterate_commit`](Self::iterate_commit).
    pub fn iterate_commit_if<F>(&self, mut f: F) -> Snapshot
    where
        F: FnMut(&mut Transaction) -> bool,
    {
        let r = drive::drive::<std::convert::Infallible>(&self.link, None, |tr| {
            if f(tr) { Flow::Commit } else { Flow::Retry }
        });
        committed(r)
    }

    /// Like [`iterate_commit`](Self::iterate_commit), but when `f` returns
    /// `false` nothing is committed and `None` is returned.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let n = Node::new(5u32);
    /// assert!(n.iterate_commit_while(|tr| { tr[&n] = 0; false }).is_none());
    /// assert_eq!(n.read(), 5);
    /// ```
    ///
    /// # Panics
    ///
    /// As [`iterate_commit`](Self::iterate_commit).
    #[must_use = "None means nothing was committed"]
    pub fn iterate_commit_while<F>(&self, mut f: F) -> Option<Snapshot>
    where
        F: FnMut(&mut Transaction) -> bool,
    {
        let r = drive::drive::<std::convert::Infallible>(&self.link, None, |tr| {
            if f(tr) { Flow::Commit } else { Flow::Stop }
        });
        match r {
            Ok(shot) => shot,
            Err(Ended::Nested(e)) => panic!("kame-stm: {e}"),
            Err(Ended::Body(never)) => match never {},
        }
    }

    /// Like [`iterate_commit`](Self::iterate_commit) for a fallible body:
    /// an `Err` abandons the transaction (nothing is committed) and is
    /// returned.
    ///
    /// ```
    /// use kame_stm::{Node, TreeError};
    /// let (p, c) = (Node::new(0u8), Node::new(0u8));
    /// p.insert(&c)?;
    /// // The second insert fails, so neither happens.
    /// let r = p.try_iterate_commit(|tr| {
    ///     tr[&c] = 1;
    ///     tr.insert(&c, &p)
    /// });
    /// assert_eq!(r.unwrap_err(), TreeError::Cycle);
    /// assert_eq!(c.read(), 0);
    /// # Ok::<(), TreeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// What `f` returned, or [`TreeError::NestedConflict`] (converted into
    /// `E`) when `f`'s own nested commits keep invalidating it (see
    /// [`iterate_commit`](Self::iterate_commit)).
    pub fn try_iterate_commit<E, F>(&self, mut f: F) -> Result<Snapshot, E>
    where
        E: From<TreeError>,
        F: FnMut(&mut Transaction) -> Result<(), E>,
    {
        match drive::drive(&self.link, None, |tr| match f(tr) {
            Ok(()) => Flow::Commit,
            Err(e) => Flow::Fail(e),
        }) {
            Ok(shot) => Ok(shot.expect("only Flow::Stop returns no snapshot")),
            Err(Ended::Body(e)) => Err(e),
            Err(Ended::Nested(n)) => Err(E::from(TreeError::NestedConflict(n))),
        }
    }

    /// Inserts `child` under this node in a transaction of its own.
    ///
    /// The child's packet is absorbed by the next snapshot of this node.
    pub fn insert(&self, child: &impl AsNode) -> Result<(), TreeError> {
        self.try_iterate_commit(|tr| tr.insert(self, child))
            .map(|_| ())
    }

    /// Releases `child` from this node in a transaction of its own. The
    /// child keeps its state and may be inserted elsewhere.
    pub fn release(&self, child: &impl AsNode) -> Result<(), TreeError> {
        self.try_iterate_commit(|tr| tr.release(self, child))
            .map(|_| ())
    }

    /// A copy of this node's committed payload (`self.snapshot()[self].clone()`).
    pub fn read(&self) -> P
    where
        P: Clone,
    {
        let shot = self.snapshot();
        shot.get(self)
            .cloned()
            .expect("a node is in its own snapshot")
    }
}

/// An untyped node handle, as found when iterating over children.
#[derive(Clone)]
pub struct NodeRef {
    pub(crate) link: Arc<Linkage>,
}

impl NodeRef {
    /// The typed handle, if the node's payload is a `P`.
    pub fn downcast<P: 'static>(&self) -> Option<Node<P>> {
        (self.link.payload_type == TypeId::of::<P>()).then(|| Node {
            link: self.link.clone(),
            _payload: PhantomData,
        })
    }

    /// Whether the node's payload is a `P`.
    pub fn is<P: 'static>(&self) -> bool {
        self.link.payload_type == TypeId::of::<P>()
    }

    /// Name of the payload type (for diagnostics).
    pub fn type_name(&self) -> &'static str {
        self.link.type_name
    }

    /// Whether both handles name the same node.
    pub fn same_node(&self, other: &impl AsNode) -> bool {
        Arc::ptr_eq(&self.link, other.linkage())
    }
}

impl fmt::Debug for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeRef<{}>@{:p}",
            self.link.type_name,
            Arc::as_ptr(&self.link)
        )
    }
}

impl PartialEq for NodeRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.link, &other.link)
    }
}
impl Eq for NodeRef {}

impl<P> PartialEq<Node<P>> for NodeRef {
    fn eq(&self, other: &Node<P>) -> bool {
        Arc::ptr_eq(&self.link, &other.link)
    }
}

/// The snapshot of a transaction that cannot stop without committing.
fn committed(r: Result<Option<Snapshot>, Ended<std::convert::Infallible>>) -> Snapshot {
    match r {
        Ok(Some(shot)) => shot,
        Ok(None) => unreachable!("this transaction never stops without committing"),
        Err(Ended::Nested(e)) => panic!("kame-stm: {e}"),
        Err(Ended::Body(never)) => match never {},
    }
}

pub(crate) fn not_found(link: &Linkage) -> NotFound {
    NotFound {
        type_name: link.type_name,
    }
}
