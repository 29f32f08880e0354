//! The explorer's configurations: trees and the threads' programs.

use super::*;

// Configurations.

/// One operation of a simulated thread's program.
#[derive(Clone, Debug)]
pub(crate) enum OpKind {
    /// A stand-alone snapshot of `node` (`Node::snapshot`).
    Snap(usize),
    /// `iterate_commit` on `root` adding 1 to every node of `writes`; with
    /// `until`, a body that does not write while a node is still 0.
    Tx {
        root: usize,
        writes: Vec<usize>,
        until: Option<Until>,
    },
    /// `outer` (a `Tx` without `until`) whose body first runs `inner` (a
    /// `Tx`) as a nested transaction, then writes. `inner`'s tree must be
    /// disjoint from `outer`'s: a nested commit inside the enclosing tree
    /// fails it every attempt (`drive`'s `NestedConflict`, not modelled).
    Nested {
        outer: Box<OpKind>,
        inner: Box<OpKind>,
    },
    /// `iterate_commit` on `root` whose body makes `edits` in order
    /// (`explore::dynamic`).
    Dyn {
        root: usize,
        edits: Vec<dynamic::Edit>,
    },
    /// The world lets go of its handle of the node (its last user handle):
    /// once nothing else holds its linkage, `Linkage::drop` hands the
    /// packets of the children bundled into it back to them. No later
    /// operation may name the node.
    Drop(usize),
    /// The program starts over: the thread never finishes (the spec's
    /// `Endless`). Its transactions write every node of `writes` with the
    /// value it has (a new packet each commit, values bounded). Only after
    /// `Tx` and `Snap` operations, and `Dyn` ones that write no payload.
    Again,
}

/// A program that starts over (`OpKind::Again` last): its thread never
/// finishes.
pub(crate) fn endless(program: &[OpKind]) -> bool {
    matches!(program.last(), Some(OpKind::Again))
}

impl OpKind {
    /// The node a transaction runs at.
    pub(crate) fn root(&self) -> usize {
        match self {
            OpKind::Tx { root, .. } | OpKind::Dyn { root, .. } => *root,
            OpKind::Snap(_) | OpKind::Nested { .. } | OpKind::Drop(_) | OpKind::Again => {
                unreachable!("not a transaction")
            }
        }
    }
}

/// What a transaction's body does while the node is still 0.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Until {
    /// Asks to retry: `iterate_commit_if` returning `false`.
    Retry(usize),
    /// Stops without committing: `iterate_commit_while` returning `false`.
    Stop(usize),
}

impl Until {
    pub(crate) fn node(self) -> usize {
        match self {
            Until::Retry(n) | Until::Stop(n) => n,
        }
    }
}

pub(crate) fn tx(root: usize, writes: &[usize]) -> OpKind {
    OpKind::Tx {
        root,
        writes: writes.to_vec(),
        until: None,
    }
}

/// A tree, the programs of the threads, and pairs of nodes that are only
/// ever written together (every consistent snapshot sees them equal).
pub(crate) struct Config {
    pub(crate) name: &'static str,
    /// Builds the tree; node 0 is its root (the final check reads it).
    pub(crate) tree: fn() -> Vec<Node<u32>>,
    pub(crate) programs: Vec<Vec<OpKind>>,
    pub(crate) pairs: Vec<(usize, usize)>,
    /// The priority class of each thread's transactions and snapshots
    /// (missing entries: `Normal`), as a `PriorityScope` would set it.
    pub(crate) classes: Vec<Priority>,
}

/// P -> {C1, C2}, bundled (one snapshot of P taken): nodes [P, C1, C2].
pub(crate) fn two_level() -> Vec<Node<u32>> {
    let nodes = two_level_unbundled();
    let _ = nodes[0].snapshot();
    nodes
}

/// P -> {C1, C2}, never bundled (P's packet is missing, its slots void,
/// each child with priority): nodes [P, C1, C2]. TLC's initial state.
/// The inserts run without their seal (`Transaction::seal_inserts`,
/// which would bundle them at once).
pub(crate) fn two_level_unbundled() -> Vec<Node<u32>> {
    let p = Node::new(0u32);
    let (c1, c2) = (Node::new(0u32), Node::new(0u32));
    crate::transaction::SEAL_OFF.with(|s| s.set(true));
    p.insert(&c1).unwrap();
    p.insert(&c2).unwrap();
    crate::transaction::SEAL_OFF.with(|s| s.set(false));
    let w = p.link.load();
    assert!(
        w.has_priority() && !w.own_packet().is_complete(),
        "P is never bundled"
    );
    vec![p, c1, c2]
}

/// G -> {P -> {C1, C2}, C3}, bundled: nodes [G, P, C1, C2, C3].
pub(crate) fn three_level() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let p = Node::new(0u32);
    let (c1, c2, c3) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
    p.insert(&c1).unwrap();
    p.insert(&c2).unwrap();
    g.insert(&p).unwrap();
    g.insert(&c3).unwrap();
    let _ = g.snapshot();
    vec![g, p, c1, c2, c3]
}

/// The spec's 3-level tree: G -> P -> {C1, C2}, bundled: nodes [G, P, C1, C2].
pub(crate) fn three_level_chain() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let p = Node::new(0u32);
    let (c1, c2) = (Node::new(0u32), Node::new(0u32));
    p.insert(&c1).unwrap();
    p.insert(&c2).unwrap();
    g.insert(&p).unwrap();
    let _ = g.snapshot();
    vec![g, p, c1, c2]
}

/// A diamond with a hard link: G -> {P, Q}, P -> {C}, Q -> {C}: nodes
/// [G, P, Q, C].
pub(crate) fn diamond() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let (p, q, c) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
    p.insert(&c).unwrap();
    q.insert(&c).unwrap();
    g.insert(&p).unwrap();
    g.insert(&q).unwrap();
    let _ = g.snapshot();
    vec![g, p, q, c]
}

/// TLC's "shortcut_rev" hard link: G -> {C, P}, P -> C (G lists C first,
/// so a bundle of G collects C before it meets it again below P).
#[cfg_attr(feature = "no-privilege", allow(dead_code))]
pub(crate) fn shortcut_rev() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let (p, c) = (Node::new(0u32), Node::new(0u32));
    p.insert(&c).unwrap();
    g.insert(&c).unwrap();
    g.insert(&p).unwrap();
    let _ = g.snapshot();
    vec![g, p, c]
}
