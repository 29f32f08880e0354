//! Shared code of the benchmarks and of the throughput driver (`throughput.rs`).
//!
//! * [`TreeOps`]: the single-threaded operations of the criterion benches
//!   (KAME's `stm_micro` cases A1-A3, B1-B9), implemented by kame-stm
//!   ([`kame`]) and by each baseline (`benches/baselines/*.rs`).
//! * [`Shared`]: the multi-threaded payload-integrity workload of the
//!   throughput driver, implemented by the same four.
//!
//! Every implementation holds the same tree: a root payload and `n`
//! children, each payload an integer (the C++ `unsigned int m_x`).
#![allow(dead_code)]

use std::time::Duration;

pub mod alloc;
#[path = "../baselines/arcswap.rs"]
pub mod arcswap;
#[path = "../baselines/fast_stm.rs"]
pub mod fast_stm;
pub mod kame;
#[path = "../baselines/rwlock.rs"]
pub mod rwlock;

/// The child the C++ micro benchmark uses for "one child" (`ch[5]`), or
/// the last one in smaller trees.
pub fn one_child(n: usize) -> usize {
    5.min(n.saturating_sub(1))
}

/// Single-threaded tree operations, one method per benchmarked case.
///
/// "Snapshot" means the cheapest way the implementation offers to get a
/// consistent view that the caller may keep (kame: `Snapshot`; ArcSwap:
/// `load_full`; RwLock: a read guard, which blocks writers while held;
/// fast-stm: a read transaction, or `read_atomic` for a single variable).
pub trait TreeOps: Send + Sync + Sized + 'static {
    /// Name used in benchmark ids and tables.
    const NAME: &'static str;
    /// A root with `n` children, all payloads 0.
    fn build(n: usize) -> Self;
    /// A1 / snapshot of the root + read the root payload.
    fn snapshot_read_root(&self) -> u32;
    /// A2 / B5: commit incrementing the root payload only.
    fn commit_root(&self);
    /// B1: snapshot of the root + read child `i`.
    fn snapshot_read_child(&self, i: usize) -> u32;
    /// B2: snapshot of the root + read every child.
    fn snapshot_read_all(&self) -> u32;
    /// B3 and the scaling series: one root transaction incrementing every child.
    fn root_commit_all(&self);
    /// B4: one root transaction incrementing child `i`.
    fn root_commit_child(&self, i: usize);
    /// B6: a root transaction reading every child and writing nothing.
    ///
    /// The defaults of this and the next two methods are for trees with a
    /// single root (every baseline): a read-only transaction is a snapshot,
    /// a leaf write replaces (or locks) the whole tree, and a snapshot of a
    /// child is a snapshot of the root.
    #[inline]
    fn readonly_root_tx(&self) -> u32 {
        self.snapshot_read_all()
    }
    /// B7 / B9: a transaction on child `i` incrementing it.
    #[inline]
    fn leaf_commit(&self, i: usize) {
        self.root_commit_child(i)
    }
    /// B8: snapshot of child `i` + read it.
    #[inline]
    fn child_snapshot_read(&self, i: usize) -> u32 {
        self.snapshot_read_child(i)
    }
    /// Payload of child `i` (for sanity checks, not timed).
    fn child_value(&self, i: usize) -> u32;
}

/// A leaf of the throughput driver's tree: the C++ `m_x` plus the number of
/// cross (scope) transactions applied to it, for the readers' invariant.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub x: u32,
    pub cross: u32,
}

impl Leaf {
    #[inline]
    pub fn bump(&mut self, max_payload: u32) {
        self.x = (self.x + 1) % max_payload;
    }
    #[inline]
    pub fn bump_cross(&mut self, max_payload: u32) {
        self.bump(max_payload);
        self.cross = self.cross.wrapping_add(1);
    }
}

/// Retry and negotiation counters summed over transactions (`--stats`).
#[derive(Clone, Copy, Default, Debug)]
pub struct TxCounters {
    pub tx: u64,
    pub retries: u64,
    pub cas_failures: u64,
    pub waits: u64,
    pub waited_ns: u64,
}

impl TxCounters {
    pub fn add(&mut self, o: &TxCounters) {
        self.tx += o.tx;
        self.retries += o.retries;
        self.cas_failures += o.cas_failures;
        self.waits += o.waits;
        self.waited_ns += o.waited_ns;
    }
}

/// The throughput driver's workload (KAME's
/// `transaction_payload_integrity_{,3level_}mixed_test`).
pub trait Shared: Send + Sync + Sized + 'static {
    const NAME: &'static str;
    /// `levels` = 2: parent -> child[0..n]; 3: grand -> parent -> child[0..n]
    /// (baselines have no levels; they build the same structure for both).
    fn build(levels: usize, n: usize) -> Self;
    /// Leaf transaction on child `i`: `x = (x + 1) % max_payload`.
    fn leaf(&self, i: usize, max_payload: u32);
    /// Scope transaction (parent or grand): bumps every child and its cross
    /// count. `body` runs once per attempt inside the transaction (before
    /// the writes); returning `false` abandons the transaction without
    /// committing, and `scope` returns `false`.
    fn scope(&self, max_payload: u32, body: &mut dyn FnMut() -> bool) -> bool;
    /// [`leaf`](Self::leaf), accumulating retry / negotiation statistics
    /// where the implementation has them (kame-stm's `TxStats`).
    fn leaf_stats(&self, i: usize, max_payload: u32, _acc: &mut TxCounters) {
        self.leaf(i, max_payload)
    }
    /// [`scope`](Self::scope) without a body, accumulating statistics.
    fn scope_stats(&self, max_payload: u32, _acc: &mut TxCounters) {
        self.scope(max_payload, &mut || true);
    }
    /// A consistent view of the whole tree: the cross counts of every child
    /// (a reader checks they are all equal).
    fn snapshot_cross(&self, out: &mut Vec<u32>);
    /// Final payloads (after all threads stopped).
    fn values(&self) -> Vec<Leaf>;
}

/// Criterion settings shared by the bench binaries: short warm-up and
/// measurement (the operations take 0.01-10 µs, so 3 s gives millions of
/// iterations); the command line (`--measurement-time` etc.) overrides.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}
