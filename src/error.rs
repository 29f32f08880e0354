//! Errors: what can go wrong is reported, never undefined behaviour.

use crate::linkage::Linkage;
use crate::priority::Priority;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The node is not part of the snapshot (or transaction) it was looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotFound {
    /// The node that was looked up.
    pub node: NodeName,
    /// Where it was looked up.
    pub place: Place,
}

/// Where a node was looked up, for [`NotFound`]'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// In a [`Snapshot`](crate::Snapshot).
    Snapshot,
    /// In a [`Transaction`](crate::Transaction).
    Transaction,
}

impl NotFound {
    /// Payload type of the node that was looked up.
    pub fn type_name(&self) -> &'static str {
        self.node.type_name
    }
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.place {
            Place::Snapshot => "snapshot",
            Place::Transaction => "transaction",
        };
        write!(f, "{} is not in this {place}'s subtree", self.node)
    }
}

impl std::error::Error for NotFound {}

/// A transaction kept failing only because of its own closure: it commits,
/// in a nested transaction, to nodes inside the enclosing transaction's
/// subtree (or to an ancestor of it), or it takes a snapshot of a tree that
/// holds a node the attempt is inserting online or releasing (a hard link:
/// bundling that tree takes the node back out of the attempt's hands).
/// Every such step invalidates the enclosing attempt, so it could never
/// commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NestedConflict {
    /// The node the enclosing transaction runs on.
    pub outer: NodeName,
    /// The node the nested transaction committed to, or whose snapshot
    /// was taken.
    pub inner: NodeName,
    /// Attempts of the enclosing transaction that failed this way in a row.
    pub attempts: u32,
    /// What the last of them was lost to.
    pub cause: NestedCause,
}

/// Why a transaction's own closure keeps invalidating it (see
/// [`NestedConflict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NestedCause {
    /// A nested transaction committed into the enclosing subtree (or to an
    /// ancestor of it): `inner` is the nested transaction's node.
    Commit,
    /// A snapshot inside the closure, of a tree sharing a node the attempt
    /// inserted online or released, or (after such an operation) a
    /// hard-linked node with the transaction's tree, whose packet it took
    /// to the node's other parent: `inner` is the snapshot's node.
    Snapshot,
    /// This transaction is the nested one: its insert or release meets a
    /// node the enclosing transaction of the same thread holds in limbo
    /// (released or inserted online, not yet committed): `inner` is that
    /// node. It can never proceed while the enclosing attempt runs.
    HeldByEnclosing,
}

/// Identifies a node in errors and panics: its name (see
/// [`Node::named`](crate::Node::named)) when it has one, its payload type,
/// and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeName {
    /// The node's name, if it was given one.
    pub name: Option<Arc<str>>,
    /// Payload type.
    pub type_name: &'static str,
    /// Address of the node (stable while the node lives).
    pub addr: usize,
}

impl NodeName {
    pub(crate) fn of(link: &Linkage) -> NodeName {
        NodeName {
            name: link.name.clone(),
            type_name: link.type_name,
            addr: std::ptr::from_ref(link) as usize,
        }
    }
}

/// `` node `heater` (f64) `` for a named node; `node (f64)@0x…` otherwise
/// (the address tells two unnamed nodes of one type apart).
impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "node `{name}` ({})", self.type_name),
            None => write!(f, "node ({})@{:#x}", self.type_name, self.addr),
        }
    }
}

impl fmt::Display for NestedConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cause == NestedCause::HeldByEnclosing {
            return write!(
                f,
                "the transaction on {} failed {} attempts in a row because it inserts or \
                 releases {}, which the enclosing transaction of this thread has released or \
                 inserted online and not yet committed; do that operation in the enclosing \
                 transaction instead",
                self.outer, self.attempts, self.inner
            );
        }
        if self.cause == NestedCause::Snapshot {
            return write!(
                f,
                "the transaction on {} failed {} attempts in a row because its closure takes a \
                 snapshot of {}, which shares a node the transaction inserts online or \
                 releases (or, after one of those, a hard-linked node of its tree); take \
                 that snapshot before the transaction, or read the node through the \
                 transaction",
                self.outer, self.attempts, self.inner
            );
        }
        write!(
            f,
            "the transaction on {} failed {} attempts in a row because its closure commits to {} \
             in a nested transaction, which changes the enclosing transaction's subtree; \
             write that node through the enclosing transaction instead",
            self.outer, self.attempts, self.inner
        )
    }
}

impl std::error::Error for NestedConflict {}

/// A dynamic tree operation (insert, release, swap) that cannot be done, or
/// a transaction that cannot commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeError {
    /// The parent (or a node to swap) is not in the transaction's tree.
    NotFound(NotFound),
    /// The node is not a child of that parent.
    NotAChild,
    /// The node is already a child of that parent.
    AlreadyChild,
    /// Inserting the node there would make it its own ancestor.
    Cycle,
    /// The transaction's own nested commits keep invalidating it (see
    /// [`NestedConflict`]).
    NestedConflict(NestedConflict),
    /// The node came into the tree by an `insert_online` of this same
    /// transaction (it was not in the tree before) and was written since:
    /// releasing it again in the same transaction is refused, because its
    /// limbo wrapper would make those writes visible before (or without)
    /// the commit. Commit the insert first, or do not write it.
    ReleaseOfPulledNode,
    /// The transaction's wait budget ran out while it waited on another
    /// transaction's priority tag (see [`WaitBudgetExceeded`]); nothing
    /// was committed.
    WaitBudgetExceeded(WaitBudgetExceeded),
    /// A transaction of a yielding class kept losing past its starvation
    /// bound (see [`Starved`]); nothing was committed.
    Starved(Starved),
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::NotFound(e) => e.fmt(f),
            TreeError::NotAChild => f.write_str("the node is not a child of that parent"),
            TreeError::AlreadyChild => f.write_str("the node is already a child of that parent"),
            TreeError::Cycle => f.write_str("inserting the node there would create a cycle"),
            TreeError::NestedConflict(e) => e.fmt(f),
            TreeError::ReleaseOfPulledNode => f.write_str(
                "the node was inserted online by this transaction and cannot be released in it",
            ),
            TreeError::WaitBudgetExceeded(e) => e.fmt(f),
            TreeError::Starved(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TreeError {}

/// A fallible transaction gave up waiting: its wait budget
/// ([`priority::wait_budget`](crate::priority::wait_budget), or the
/// builder's) ran out while another transaction's priority tag blocked it.
/// It abandoned its attempt (releasing its own tags) instead of proceeding
/// past the tag, which would break the holder's completion guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitBudgetExceeded {
    /// The node the transaction ran on.
    pub node: NodeName,
    /// The budget it had when it started (what was left of a scope's).
    pub budget: Duration,
    /// Time it spent waiting on tags.
    pub waited: Duration,
    /// Attempts it had run.
    pub attempts: u32,
}

impl fmt::Display for WaitBudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the transaction on {} ran out of its wait budget ({:?}) after {} attempts, \
             {:?} of them waiting on other transactions' priority tags",
            self.node, self.budget, self.attempts, self.waited
        )
    }
}

impl std::error::Error for WaitBudgetExceeded {}

/// A transaction of a class that yields ([`Priority::yields`]) lost at
/// least [`STARVATION_MIN_RETRIES`](crate::priority::STARVATION_MIN_RETRIES)
/// attempts and is older than its starvation bound
/// ([`priority::starvation_bound`](crate::priority::starvation_bound)):
/// higher classes keep winning. Retry later, or run it at a higher class.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Starved {
    /// The node the transaction ran on.
    pub node: NodeName,
    /// Its class.
    pub priority: Priority,
    /// Attempts it lost.
    pub attempts: u32,
    /// Its age when it gave up.
    pub age: Duration,
}

impl fmt::Display for Starved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {:?} transaction on {} lost {} attempts over {:?} to higher classes and gave up",
            self.priority, self.node, self.attempts, self.age
        )
    }
}

impl std::error::Error for Starved {}

impl From<WaitBudgetExceeded> for TreeError {
    fn from(e: WaitBudgetExceeded) -> Self {
        TreeError::WaitBudgetExceeded(e)
    }
}

impl From<Starved> for TreeError {
    fn from(e: Starved) -> Self {
        TreeError::Starved(e)
    }
}

impl From<NotFound> for TreeError {
    fn from(e: NotFound) -> Self {
        TreeError::NotFound(e)
    }
}

impl From<NestedConflict> for TreeError {
    fn from(e: NestedConflict) -> Self {
        TreeError::NestedConflict(e)
    }
}
