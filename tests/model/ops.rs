//! The operations the model runs, and their proptest strategies. Node
//! arguments are selectors resolved against the model at run time, so that
//! most generated operations are meaningful (a child of that parent, a
//! node inside the transaction's subtree) and still shrink towards node 0.

use proptest::prelude::*;

/// Names a node.
#[derive(Clone, Copy, Debug)]
pub enum Sel {
    /// A node of the initial pool (index modulo the pool size).
    Any(u8),
    /// A node of a chain: the chain (modulo the chains built so far), the
    /// depth (modulo its length); a pool node while there is no chain.
    /// Chain nodes are named this way so that shrinking a chain's length
    /// does not rename every other node.
    Deep(u8, u8),
    /// The k-th node (modulo) of the subtree of the context node (the
    /// transaction's root, or the nested commit's root); `In(0)` is that
    /// root itself.
    In(u8),
    /// The k-th child (modulo) of the operation's parent; a node as `Any`
    /// when that parent has no children.
    Kid(u8),
}

/// How a transaction is driven.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// `iterate_commit`.
    Plain,
    /// `iterate_commit_with_stats`: `retries` must count the extra attempts.
    Stats,
    /// `iterate_commit_if`, refusing the first `n` attempts.
    If(u8),
    /// `iterate_commit_while`; `true`: return `false` (nothing committed, `None`).
    While(bool),
    /// `try_iterate_commit`: dynamic operations use `?`, so the first error
    /// abandons the transaction; `true`: also fail at the end.
    Try(bool),
}

/// An operation inside a transaction's closure.
#[derive(Clone, Copy, Debug)]
pub enum TxOp {
    /// `tr.get(n)`.
    Get(Sel),
    /// `tr.get_mut(n)` += d (or `tr[&n] += d` when the model has it).
    Write(Sel, u8),
    Contains(Sel),
    Children(Sel),
    /// `tr.snapshot()`, checked at the end of the attempt and after commit.
    Snap,
    /// `tr.attempt()` counts the earlier attempts.
    Attempt,
    /// Everything `tr` shows, node by node.
    CheckAll,
    Insert {
        p: Sel,
        c: Sel,
        online: bool,
    },
    Release {
        p: Sel,
        c: Sel,
    },
    Swap {
        p: Sel,
        a: Sel,
        b: Sel,
    },
    /// `release(p, c)` then `insert(q, c)` (online: then `tr[&c] += d`).
    Move {
        p: Sel,
        c: Sel,
        q: Sel,
        online: bool,
        d: u8,
    },
    /// `insert(p, c)` then `release(p, c)`.
    InsertRelease {
        p: Sel,
        c: Sel,
        online: bool,
    },
    /// On the first attempt only: `t.iterate_commit(|t| t[&n] += 1000 * (d + 1))`.
    Nested {
        t: Sel,
        n: Sel,
        d: u8,
    },
    /// `t.snapshot()` from inside the closure: on every attempt when `t`
    /// is the transaction's root or an ancestor, on the first only otherwise.
    NestedSnap(Sel),
    /// On the first attempt a nested commit on child `c` of `p`, then a
    /// `Move` of `c` (the release + insert_online lost-commit case).
    NestedMove {
        p: Sel,
        c: Sel,
        q: Sel,
        online: bool,
        d: u8,
    },
}

/// How `Op::Chain` builds its chain.
#[derive(Clone, Copy, Debug)]
pub enum Build {
    /// `c[i].insert(&c[i+1])` from the deepest up.
    BottomUp,
    /// `c[i].insert(&c[i+1])` from the head down.
    TopDown,
    /// One transaction on the head: `insert_online` all the way down.
    Online,
}

/// A top-level operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// `p.insert(&c)`.
    Insert(Sel, Sel),
    /// `p.release(&c)`.
    Release(Sel, Sel),
    /// `n.read()`.
    Read(Sel),
    /// `s.snapshot()`: every node's membership, value and child order.
    Check(Sel),
    /// Keep `s.snapshot()` (at most four); `Recheck` checks them again.
    Hold(Sel),
    Recheck,
    Tx {
        s: Sel,
        flavor: Flavor,
        ops: Vec<TxOp>,
    },
    /// A fresh chain of `k` nodes under `under` (deeper than the pool),
    /// then a commit at its deepest node and a snapshot of `under`.
    Chain {
        under: Sel,
        k: u8,
        build: Build,
    },
    /// A transaction on `s` whose closure commits on `t` on *every*
    /// attempt: an error (`try_`) or a panic when `t` is inside `s`'s
    /// subtree, a normal commit when the two subtrees are disjoint.
    Every {
        s: Sel,
        t: Sel,
        try_form: bool,
    },
}

fn any_sel() -> impl Strategy<Value = Sel> {
    prop_oneof![
        5 => any::<u8>().prop_map(Sel::Any),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(c, d)| Sel::Deep(c, d)),
    ]
}

/// Mostly inside the context subtree.
fn in_sel() -> impl Strategy<Value = Sel> {
    prop_oneof![
        4 => any::<u8>().prop_map(Sel::In),
        1 => any_sel(),
    ]
}

/// Mostly a child of the parent.
fn kid_sel() -> impl Strategy<Value = Sel> {
    prop_oneof![
        4 => any::<u8>().prop_map(Sel::Kid),
        1 => any_sel(),
    ]
}

fn flavor() -> impl Strategy<Value = Flavor> {
    prop_oneof![
        3 => Just(Flavor::Plain),
        1 => Just(Flavor::Stats),
        1 => (0..3u8).prop_map(Flavor::If),
        1 => any::<bool>().prop_map(Flavor::While),
        2 => any::<bool>().prop_map(Flavor::Try),
    ]
}

prop_compose! {
    fn move_args()(p in in_sel(), c in kid_sel(), q in in_sel(), online in any::<bool>(),
                   d in any::<u8>()) -> (Sel, Sel, Sel, bool, u8) {
        (p, c, q, online, d)
    }
}

pub fn tx_op() -> impl Strategy<Value = TxOp> {
    prop_oneof![
        3 => in_sel().prop_map(TxOp::Get),
        4 => (in_sel(), any::<u8>()).prop_map(|(n, d)| TxOp::Write(n, d)),
        1 => any_sel().prop_map(TxOp::Contains),
        1 => in_sel().prop_map(TxOp::Children),
        1 => Just(TxOp::Snap),
        1 => Just(TxOp::Attempt),
        1 => Just(TxOp::CheckAll),
        4 => (in_sel(), any_sel(), any::<bool>())
            .prop_map(|(p, c, online)| TxOp::Insert { p, c, online }),
        3 => (in_sel(), kid_sel()).prop_map(|(p, c)| TxOp::Release { p, c }),
        1 => (in_sel(), kid_sel(), kid_sel()).prop_map(|(p, a, b)| TxOp::Swap { p, a, b }),
        2 => move_args().prop_map(|(p, c, q, online, d)| TxOp::Move { p, c, q, online, d }),
        1 => (in_sel(), any_sel(), any::<bool>())
            .prop_map(|(p, c, online)| TxOp::InsertRelease { p, c, online }),
        2 => (in_sel(), in_sel(), any::<u8>()).prop_map(|(t, n, d)| TxOp::Nested { t, n, d }),
        1 => any_sel().prop_map(TxOp::NestedSnap),
        1 => move_args().prop_map(|(p, c, q, online, d)| TxOp::NestedMove { p, c, q, online, d }),
    ]
}

prop_compose! {
    fn tx()(s in any_sel(), flavor in flavor(),
            ops in prop::collection::vec(tx_op(), 1..8)) -> Op {
        Op::Tx { s, flavor, ops }
    }
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any_sel(), any_sel()).prop_map(|(p, c)| Op::Insert(p, c)),
        2 => (any_sel(), kid_sel()).prop_map(|(p, c)| Op::Release(p, c)),
        1 => any_sel().prop_map(Op::Read),
        2 => any_sel().prop_map(Op::Check),
        1 => any_sel().prop_map(Op::Hold),
        1 => Just(Op::Recheck),
        8 => tx(),
        1 => (
            any_sel(),
            1..=40u8,
            prop_oneof![Just(Build::BottomUp), Just(Build::TopDown), Just(Build::Online)]
        )
            .prop_map(|(under, k, build)| Op::Chain { under, k, build }),
        1 => (any_sel(), in_sel(), any::<bool>())
            .prop_map(|(s, t, try_form)| Op::Every { s, t, try_form }),
    ]
}

impl TxOp {
    /// The name `KAME_MODEL_SKIP` knows this operation by.
    pub fn kind(&self) -> &'static str {
        match self {
            TxOp::Get(_) => "get",
            TxOp::Write(..) => "write",
            TxOp::Contains(_) => "contains",
            TxOp::Children(_) => "children",
            TxOp::Snap => "snap",
            TxOp::Attempt => "attempt",
            TxOp::CheckAll => "checkall",
            TxOp::Insert { .. } => "tx-insert",
            TxOp::Release { .. } => "tx-release",
            TxOp::Swap { .. } => "swap",
            TxOp::Move { .. } => "move",
            TxOp::InsertRelease { .. } => "insert-release",
            TxOp::Nested { .. } => "nested",
            TxOp::NestedSnap(_) => "nested-snap",
            TxOp::NestedMove { .. } => "nested-move",
        }
    }
}

impl Op {
    /// The name `KAME_MODEL_SKIP` knows this operation by.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Insert(..) => "insert",
            Op::Release(..) => "release",
            Op::Read(_) => "read",
            Op::Check(_) => "check",
            Op::Hold(_) => "hold",
            Op::Recheck => "recheck",
            Op::Tx { .. } => "tx",
            Op::Chain { .. } => "chain",
            Op::Every { .. } => "every",
        }
    }
}

/// Operation kinds to run as no-ops (`KAME_MODEL_SKIP=every,nested-move`),
/// to look past a known failure for the next one.
pub fn skipped() -> Vec<String> {
    std::env::var("KAME_MODEL_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
