//! Errors: what can go wrong is reported, never undefined behaviour.

use std::fmt;

/// The node is not part of the snapshot (or transaction) it was looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFound {
    /// Payload type of the node that was looked up.
    pub type_name: &'static str,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node ({}) is not in this snapshot", self.type_name)
    }
}

impl std::error::Error for NotFound {}

/// A dynamic tree operation (insert, release, swap) that cannot be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeError {
    /// The parent (or a node to swap) is not in the transaction's tree.
    NotFound(NotFound),
    /// The node is not a child of that parent.
    NotAChild,
    /// The node is already a child of that parent.
    AlreadyChild,
    /// Inserting the node there would make it its own ancestor.
    Cycle,
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::NotFound(e) => e.fmt(f),
            TreeError::NotAChild => f.write_str("the node is not a child of that parent"),
            TreeError::AlreadyChild => f.write_str("the node is already a child of that parent"),
            TreeError::Cycle => f.write_str("inserting the node there would create a cycle"),
        }
    }
}

impl std::error::Error for TreeError {}

impl From<NotFound> for TreeError {
    fn from(e: NotFound) -> Self {
        TreeError::NotFound(e)
    }
}
