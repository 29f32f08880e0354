//! Loom model checks of the protocol on its real atomics (the `cfg(loom)`
//! shim in `src/sync.rs` swaps in loom's atomics and thread-locals, and
//! replaces epoch reclamation by leaking). Bounded as loom recommends.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom`
#![cfg(loom)]

use kame_stm::Node;
use loom::thread;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `f` under loom with a preemption bound; returns the number of
/// executions explored (so a test can insist that loom really branched).
fn explore(bound: usize, f: impl Fn() + Sync + Send + 'static) -> usize {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.check(move || {
        r.fetch_add(1, Ordering::Relaxed);
        f();
    });
    runs.load(Ordering::Relaxed)
}

/// Two commits on one node, every interleaving: both land.
#[test]
fn concurrent_single_node_commits() {
    let runs = explore(3, || {
        let n = Node::new(0u32);
        let n2 = n.clone();
        let t = thread::spawn(move || {
            n2.iterate_commit(|tr| tr[&n2] += 1);
        });
        n.iterate_commit(|tr| tr[&n] += 10);
        t.join().unwrap();
        assert_eq!(n.snapshot()[&n], 11);
    });
    assert!(runs > 5, "loom explored only {runs} executions");
}

/// A root transaction (bundles) and a leaf commit (unbundles): both
/// increments land, in every interleaving within the bound.
#[test]
fn root_transaction_against_leaf_commit() {
    let runs = explore(2, || {
        let root = Node::new(0u32);
        let leaf = Node::new(0u32);
        root.insert(&leaf).unwrap();
        let (r2, l2) = (root.clone(), leaf.clone());
        let t = thread::spawn(move || {
            r2.iterate_commit(|tr| tr[&l2] += 1);
        });
        leaf.iterate_commit(|tr| tr[&leaf] += 10);
        t.join().unwrap();
        assert_eq!(root.snapshot()[&leaf], 11);
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// A root snapshot (bundles) racing a leaf commit (unbundles): the
/// snapshot sees the leaf before or after the commit, never anything else.
#[test]
fn root_snapshot_against_leaf_commit() {
    let runs = explore(2, || {
        let root = Node::new(0u32);
        let leaf = Node::new(0u32);
        let other = Node::new(5u32);
        root.insert(&leaf).unwrap();
        root.insert(&other).unwrap();
        let l2 = leaf.clone();
        let t = thread::spawn(move || {
            l2.iterate_commit(|tr| tr[&l2] += 1);
        });
        let shot = root.snapshot();
        assert!(shot[&leaf] <= 1);
        assert_eq!(shot[&other], 5);
        t.join().unwrap();
        assert_eq!(root.snapshot()[&leaf], 1);
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}
