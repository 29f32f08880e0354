//! Typed node handles.

use crate::drive::{self, Ended, Flow};
use crate::error::{NodeName, NotFound, Place, TreeError};
use crate::linkage::Linkage;
use crate::packet::Packet;
use crate::priority::{Priority, TxOptions};
use crate::snapshot::Snapshot;
use crate::transaction::{Transaction, TxStats};
use std::any::TypeId;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A node of a tree whose payload has type `P`.
///
/// A cheap-to-clone handle (one reference count). Different nodes of one
/// tree may have different payload types. A node is kept alive by its
/// handles and by every parent that lists it.
///
/// Equality, hashing and ordering are by identity (the node, not its
/// payload), so handles can key a map, e.g. of GUI widgets; a [`NodeRef`]
/// to the same node compares and hashes alike. (Clippy's
/// `mutable_key_type` cannot see that the hash ignores the atomics inside:
/// `ignore-interior-mutability = ["kame_stm::Node", "kame_stm::NodeRef"]`
/// in `clippy.toml` silences it.)
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

impl<P> Hash for Node<P> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.link).hash(state);
    }
}

/// By address: an arbitrary but stable order (for `BTreeMap` keys).
impl<P> Ord for Node<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        Arc::as_ptr(&self.link).cmp(&Arc::as_ptr(&other.link))
    }
}

impl<P> PartialOrd for Node<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `` Node<f64> `heater` @0x… ``, or `Node<f64>@0x…` without a name.
impl<P> fmt::Debug for Node<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node("Node", &self.link, f)
    }
}

fn debug_node(kind: &str, link: &Arc<Linkage>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{kind}<{}>", link.type_name)?;
    if let Some(name) = &link.name {
        write!(f, " `{name}` ")?;
    }
    write!(f, "@{:p}", Arc::as_ptr(link))
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
        Self::with_name(None, payload)
    }

    /// Creates a detached node holding `payload`, with a name that
    /// `Debug`, errors and panics show, and that keys the node in a saved
    /// configuration (the `config` module, feature `serde`). Names need not
    /// be unique; the name of a node never changes.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let heater = Node::named("heater", 0.0_f64);
    /// let other = Node::new(0u8);
    /// assert_eq!(heater.name(), Some("heater"));
    /// let err = other.snapshot().get(&heater).unwrap_err();
    /// assert_eq!(err.to_string(), "node `heater` (f64) is not in this snapshot's subtree");
    /// ```
    pub fn named(name: impl Into<Arc<str>>, payload: P) -> Self {
        Self::with_name(Some(name.into()), payload)
    }

    fn with_name(name: Option<Arc<str>>, payload: P) -> Self {
        let link = Linkage::new(
            Packet::leaf(payload),
            TypeId::of::<P>(),
            std::any::type_name::<P>(),
            name,
        );
        Node {
            link,
            _payload: PhantomData,
        }
    }
}

impl<P> Node<P> {
    /// The name given by [`Node::named`], if any.
    pub fn name(&self) -> Option<&str> {
        self.link.name.as_deref()
    }
}

impl<P: 'static> Node<P> {
    /// An untyped handle to the same node (also `NodeRef::from(&node)`).
    ///
    /// ```
    /// use kame_stm::{Node, NodeRef};
    /// let n = Node::new(1u8);
    /// let r: NodeRef = n.to_ref();
    /// assert!(r == n && r.downcast::<u8>() == Some(n));
    /// ```
    #[must_use]
    pub fn to_ref(&self) -> NodeRef {
        NodeRef {
            link: self.link.clone(),
        }
    }

    /// A consistent snapshot of this node's subtree.
    ///
    /// One atomic load when the subtree is already bundled; otherwise the
    /// subtree is bundled first. The snapshot may be kept as long as you
    /// like; it never blocks writers or the reclamation of newer versions.
    #[must_use = "taking a snapshot has no effect besides returning it"]
    pub fn snapshot(&self) -> Snapshot {
        drive::take_snapshot(&self.link)
    }

    /// Runs `f` on a private copy of this subtree and commits all its
    /// writes atomically with one CAS, retrying with a fresh snapshot (and
    /// running `f` again) until the commit succeeds. Returns the committed
    /// state.
    ///
    /// # The closure
    ///
    /// `f` may run many times (once per attempt; [`Transaction::attempt`]
    /// counts them), and the writes of every attempt but the committed one
    /// are thrown away. So:
    ///
    /// * no I/O, no blocking (locks, channels, sleeps), no side effects
    ///   outside the transaction: do them after `iterate_commit` returns,
    ///   from the returned snapshot;
    /// * read and write tree state only through `tr`: values read elsewhere
    ///   (another snapshot, a nested transaction) are not validated by the
    ///   commit;
    /// * a nested transaction on a node inside this subtree invalidates the
    ///   enclosing attempt (see *Panics*).
    ///
    /// ```
    /// use kame_stm::Node;
    /// let counter = Node::new(0u64);
    /// let shot = counter.iterate_commit(|tr| tr[&counter] += 1);
    /// // Side effects belong here, once, after the commit.
    /// println!("committed {}", shot[&counter]);
    /// ```
    ///
    /// # Panics
    ///
    /// If `f` panics (the transaction is abandoned, its tags released). If
    /// `f` commits, in a nested transaction, into this node's subtree (or
    /// changes it through an ancestor), or takes a snapshot that takes back
    /// a node this attempt inserted online or released, on
    /// [`NESTED_LIMIT`](crate::NESTED_LIMIT) attempts in a row, it can
    /// never commit: the panic message names both nodes
    /// ([`try_iterate_commit`](Self::try_iterate_commit) returns
    /// [`TreeError::NestedConflict`] instead).
    pub fn iterate_commit<F>(&self, mut f: F) -> Snapshot
    where
        F: FnMut(&mut Transaction),
    {
        let r = drive::drive::<std::convert::Infallible>(
            &self.link,
            &TxOptions::default(),
            None,
            |tr| {
                f(tr);
                Flow::Commit
            },
        );
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
        let r = drive::drive::<std::convert::Infallible>(
            &self.link,
            &TxOptions::default(),
            Some(&mut stats),
            |tr| {
                f(tr);
                Flow::Commit
            },
        );
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
        let r = drive::drive::<std::convert::Infallible>(
            &self.link,
            &TxOptions::default(),
            None,
            |tr| {
                if f(tr) { Flow::Commit } else { Flow::Retry }
            },
        );
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
        let r = drive::drive::<std::convert::Infallible>(
            &self.link,
            &TxOptions::default(),
            None,
            |tr| {
                if f(tr) { Flow::Commit } else { Flow::Stop }
            },
        );
        match r {
            Ok(shot) => shot,
            Err(Ended::Nested(e)) => panic!("kame-stm: {e}"),
            Err(Ended::Body(never)) => match never {},
            Err(Ended::Budget(_) | Ended::Starved(_)) => {
                unreachable!("only fallible forms give up")
            }
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
    /// [`iterate_commit`](Self::iterate_commit)). Under a
    /// [`priority::wait_budget`](crate::priority::wait_budget) or
    /// [`priority::starvation_bound`](crate::priority::starvation_bound)
    /// scope also [`TreeError::WaitBudgetExceeded`] or
    /// [`TreeError::Starved`] (nothing was committed).
    pub fn try_iterate_commit<E, F>(&self, f: F) -> Result<Snapshot, E>
    where
        E: From<TreeError>,
        F: FnMut(&mut Transaction) -> Result<(), E>,
    {
        let opts = TxOptions {
            fallible: true,
            ..TxOptions::default()
        };
        try_drive(&self.link, &opts, f)
    }

    /// A transaction with settings of its own: class, wait budget,
    /// starvation bound (see [`TxBuilder`] and
    /// [`priority`](crate::priority)).
    ///
    /// ```
    /// use kame_stm::{Node, TreeError};
    /// use kame_stm::priority::Priority;
    /// use std::time::Duration;
    /// let n = Node::new(0u32);
    /// n.transaction()
    ///     .priority(Priority::Realtime)
    ///     .wait_budget(Duration::from_micros(200))
    ///     .try_iterate_commit(|tr| {
    ///         tr[&n] = 1;
    ///         Ok::<(), TreeError>(())
    ///     })?;
    /// # Ok::<(), TreeError>(())
    /// ```
    pub fn transaction(&self) -> TxBuilder<'_, P> {
        TxBuilder {
            node: self,
            opts: TxOptions::default(),
        }
    }

    /// Inserts `child` under this node in a transaction of its own.
    ///
    /// The child's packet is absorbed by the next snapshot of this node.
    ///
    /// ```
    /// use kame_stm::{Node, TreeError};
    /// let (rack, dmm) = (Node::new(()), Node::named("dmm", 0.0_f64));
    /// rack.insert(&dmm)?;
    /// assert!(rack.snapshot().contains(&dmm));
    /// assert_eq!(rack.insert(&dmm), Err(TreeError::AlreadyChild));
    /// assert_eq!(dmm.insert(&rack), Err(TreeError::Cycle));
    /// # Ok::<(), TreeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TreeError::AlreadyChild`] when `child` is already a child of this
    /// node, [`TreeError::Cycle`] when this node is `child` or one of its
    /// descendants.
    pub fn insert(&self, child: &impl AsNode) -> Result<(), TreeError> {
        self.try_iterate_commit(|tr| tr.insert(self, child))
            .map(|_| ())
    }

    /// Releases `child` from this node in a transaction of its own. The
    /// child keeps its state and may be inserted elsewhere.
    ///
    /// ```
    /// use kame_stm::{Node, TreeError};
    /// let (rack, dmm) = (Node::new(()), Node::named("dmm", 1.5_f64));
    /// rack.insert(&dmm)?;
    /// rack.release(&dmm)?;
    /// assert!(!rack.snapshot().contains(&dmm));
    /// assert_eq!(dmm.read(), 1.5); // unplugged, not lost
    /// assert_eq!(rack.release(&dmm), Err(TreeError::NotAChild));
    /// # Ok::<(), TreeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TreeError::NotAChild`] when `child` is not a child of this node.
    pub fn release(&self, child: &impl AsNode) -> Result<(), TreeError> {
        self.try_iterate_commit(|tr| tr.release(self, child))
            .map(|_| ())
    }

    /// A copy of this node's committed payload (`self.snapshot()[self].clone()`).
    #[must_use]
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
///
/// Equality, hashing and ordering are by identity, as for [`Node`].
///
/// ```
/// use kame_stm::Node;
/// let rack = Node::new("rack");
/// rack.insert(&Node::named("T", 4.2_f64)).unwrap();
/// rack.insert(&Node::named("label", String::from("cryostat"))).unwrap();
/// let shot = rack.snapshot();
/// for child in shot.children(&rack).unwrap() {
///     if let Some(t) = child.downcast::<f64>() {
///         assert_eq!((child.name(), shot[&t]), (Some("T"), 4.2));
///     } else {
///         assert!(child.is::<String>());
///     }
/// }
/// ```
#[derive(Clone)]
pub struct NodeRef {
    pub(crate) link: Arc<Linkage>,
}

impl NodeRef {
    /// The typed handle, if the node's payload is a `P`.
    #[must_use]
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

    /// The name given by [`Node::named`], if any.
    pub fn name(&self) -> Option<&str> {
        self.link.name.as_deref()
    }

    /// Name, payload type and address, as errors show them.
    pub fn node_name(&self) -> NodeName {
        NodeName::of(&self.link)
    }

    /// Whether both handles name the same node.
    pub fn same_node(&self, other: &impl AsNode) -> bool {
        Arc::ptr_eq(&self.link, other.linkage())
    }
}

impl fmt::Debug for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node("NodeRef", &self.link, f)
    }
}

impl Hash for NodeRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.link).hash(state);
    }
}

/// By address, as for [`Node`].
impl Ord for NodeRef {
    fn cmp(&self, other: &Self) -> Ordering {
        Arc::as_ptr(&self.link).cmp(&Arc::as_ptr(&other.link))
    }
}

impl PartialOrd for NodeRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<P: 'static> From<&Node<P>> for NodeRef {
    fn from(node: &Node<P>) -> Self {
        node.to_ref()
    }
}

impl<P> PartialEq<NodeRef> for Node<P> {
    fn eq(&self, other: &NodeRef) -> bool {
        Arc::ptr_eq(&self.link, &other.link)
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
        Err(Ended::Budget(_) | Ended::Starved(_)) => unreachable!("only fallible forms give up"),
    }
}

/// The fallible driver behind `try_iterate_commit` (plain and per call).
fn try_drive<E, F>(link: &Arc<Linkage>, opts: &TxOptions, mut f: F) -> Result<Snapshot, E>
where
    E: From<TreeError>,
    F: FnMut(&mut Transaction) -> Result<(), E>,
{
    match drive::drive(link, opts, None, |tr| match f(tr) {
        Ok(()) => Flow::Commit,
        Err(e) => Flow::Fail(e),
    }) {
        Ok(shot) => Ok(shot.expect("only Flow::Stop returns no snapshot")),
        Err(Ended::Body(e)) => Err(e),
        Err(Ended::Nested(n)) => Err(E::from(TreeError::NestedConflict(n))),
        Err(Ended::Budget(b)) => Err(E::from(TreeError::WaitBudgetExceeded(b))),
        Err(Ended::Starved(s)) => Err(E::from(TreeError::Starved(s))),
    }
}

/// One transaction's settings ([`Node::transaction`]): its class, a wait
/// budget and a starvation bound, each overriding this thread's scope
/// ([`priority`](crate::priority)). Run it with
/// [`try_iterate_commit`](Self::try_iterate_commit).
#[derive(Debug)]
#[must_use = "a builder does nothing until it runs"]
pub struct TxBuilder<'a, P> {
    node: &'a Node<P>,
    opts: TxOptions,
}

impl<P: 'static> TxBuilder<'_, P> {
    /// The class this transaction negotiates with (when it is not nested
    /// in another transaction's closure: then it is the outermost one's).
    pub fn priority(mut self, class: Priority) -> Self {
        self.opts.priority = Some(class);
        self
    }

    /// Give up waiting on other transactions' tags `budget` after the start
    /// (the tighter of this and a scope's budget):
    /// [`TreeError::WaitBudgetExceeded`].
    pub fn wait_budget(mut self, budget: Duration) -> Self {
        self.opts.wait_budget = Some(budget);
        self
    }

    /// For a yielding class ([`Priority::yields`]): give up once older than
    /// `age` with at least
    /// [`STARVATION_MIN_RETRIES`](crate::priority::STARVATION_MIN_RETRIES)
    /// lost attempts: [`TreeError::Starved`].
    pub fn starvation_bound(mut self, age: Duration) -> Self {
        self.opts.starvation = Some(age);
        self
    }

    /// [`Node::try_iterate_commit`] with these settings.
    ///
    /// ```
    /// use kame_stm::{Node, TreeError};
    /// use kame_stm::priority::Priority;
    /// use std::time::Duration;
    /// let n = Node::new(0u32);
    /// let shot = n
    ///     .transaction()
    ///     .priority(Priority::Background)
    ///     .starvation_bound(Duration::from_secs(2))
    ///     .try_iterate_commit(|tr| {
    ///         tr[&n] += 1;
    ///         Ok::<(), TreeError>(())
    ///     })?;
    /// assert_eq!(shot[&n], 1);
    /// # Ok::<(), TreeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Node::try_iterate_commit`], and
    /// [`TreeError::WaitBudgetExceeded`] or [`TreeError::Starved`] when a
    /// bound was reached (nothing was committed).
    pub fn try_iterate_commit<E, F>(self, f: F) -> Result<Snapshot, E>
    where
        E: From<TreeError>,
        F: FnMut(&mut Transaction) -> Result<(), E>,
    {
        let opts = TxOptions {
            fallible: true,
            ..self.opts
        };
        try_drive(&self.node.link, &opts, f)
    }
}

/// `link` is not in a transaction's subtree.
pub(crate) fn not_found(link: &Linkage) -> NotFound {
    NotFound {
        node: NodeName::of(link),
        place: Place::Transaction,
    }
}

/// `link` is not in a snapshot's subtree.
pub(crate) fn not_found_in_snapshot(link: &Linkage) -> NotFound {
    NotFound {
        node: NodeName::of(link),
        place: Place::Snapshot,
    }
}
