//! Loom model checks of the protocol on its real atomics (the `cfg(loom)`
//! shim in `src/sync.rs` swaps in loom's atomics and thread-locals, and
//! replaces epoch reclamation by leaking). Bounded as loom recommends.
//! Besides commits and snapshots: the dynamic operations (a move by
//! release + `insert_online`, an insert, a release), a nested transaction,
//! a body that retries, and a hard link, each against a commit where it
//! hurts. Every interleaving of every atomic operation within the
//! preemption bound, which is finer than the explorer's steps; but
//! bounded, and safety only (no livelock check).
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
    // A bundle of a hard-linked tree takes more branches than loom's
    // default 1 000 in one execution.
    b.max_branches = 20_000;
    b.check(move || {
        r.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let runs = runs.load(Ordering::Relaxed);
    println!("loom: {runs} executions");
    runs
}

/// `root → {a, b}`: (root, a, b).
fn root_with_two_leaves() -> (Node<u32>, Node<u32>, Node<u32>) {
    let root = Node::new(0u32);
    let (a, b) = (Node::new(0u32), Node::new(0u32));
    root.insert(&a).unwrap();
    root.insert(&b).unwrap();
    (root, a, b)
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
        // The inserts are sealed (the root is complete): a first leaf
        // commit takes the leaf out again, so that the snapshot below has
        // to bundle it back while the second one races it.
        leaf.iterate_commit(|tr| tr[&leaf] += 1);
        let l2 = leaf.clone();
        let t = thread::spawn(move || {
            l2.iterate_commit(|tr| tr[&l2] += 1);
        });
        let shot = root.snapshot();
        assert!((1..=2).contains(&shot[&leaf]));
        assert_eq!(shot[&other], 5);
        t.join().unwrap();
        assert_eq!(root.snapshot()[&leaf], 2);
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// A move (release from one parent, `insert_online` under another, in one
/// transaction on their common root) racing a commit at the moved node:
/// the commit lands, and the node ends under exactly one parent.
#[test]
fn move_against_commit_at_the_moved_node() {
    let runs = explore(2, || {
        let root = Node::new(0u32);
        let (p, q) = (Node::new(0u32), Node::new(0u32));
        let c = Node::new(0u32);
        root.insert(&p).unwrap();
        root.insert(&q).unwrap();
        p.insert(&c).unwrap();
        let (r2, p2, q2, c2) = (root.clone(), p.clone(), q.clone(), c.clone());
        let t = thread::spawn(move || {
            r2.iterate_commit(|tr| {
                tr.release(&p2, &c2).unwrap();
                tr.insert_online(&q2, &c2).unwrap();
            });
        });
        c.iterate_commit(|tr| tr[&c] += 1);
        t.join().unwrap();
        let shot = root.snapshot();
        assert_eq!(shot[&c], 1);
        assert_eq!(shot.children(&p).unwrap().len(), 0);
        assert_eq!(shot.children(&q).unwrap().len(), 1);
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// An insert (offline) of a node racing a commit at that node: the
/// commit is in the next snapshot of the parent.
#[test]
fn insert_against_commit_at_the_child() {
    let runs = explore(2, || {
        let p = Node::new(0u32);
        let c = Node::new(0u32);
        let (p2, c2) = (p.clone(), c.clone());
        let t = thread::spawn(move || {
            p2.insert(&c2).unwrap();
        });
        c.iterate_commit(|tr| tr[&c] += 1);
        t.join().unwrap();
        assert_eq!(p.snapshot()[&c], 1);
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// A release racing a commit at the released node: the commit lands and
/// the node keeps it after it left the tree.
#[test]
fn release_against_commit_at_the_child() {
    let runs = explore(2, || {
        let p = Node::new(0u32);
        let c = Node::new(0u32);
        p.insert(&c).unwrap();
        let _ = p.snapshot();
        let (p2, c2) = (p.clone(), c.clone());
        let t = thread::spawn(move || {
            p2.release(&c2).unwrap();
        });
        c.iterate_commit(|tr| tr[&c] += 1);
        t.join().unwrap();
        assert!(!p.snapshot().contains(&c));
        assert_eq!(c.read(), 1);
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// A transaction on the root whose closure commits a nested transaction
/// at a leaf, racing a commit at that leaf: every increment lands once.
#[test]
fn nested_transaction_against_leaf_commit() {
    let runs = explore(2, || {
        let (root, a, b) = root_with_two_leaves();
        let (r2, a2, b2) = (root.clone(), a.clone(), b.clone());
        let t = thread::spawn(move || {
            let mut nested = false;
            r2.iterate_commit(|tr| {
                if !nested {
                    nested = true;
                    b2.iterate_commit(|inner| inner[&b2] += 100);
                }
                tr[&a2] += 1;
            });
        });
        b.iterate_commit(|tr| tr[&b] += 1);
        t.join().unwrap();
        let shot = root.snapshot();
        assert_eq!((shot[&a], shot[&b]), (1, 101));
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// `iterate_commit_if` waiting for a leaf another thread commits: it
/// commits once, after the leaf's commit.
#[test]
fn body_retry_against_the_commit_it_waits_for() {
    let runs = explore(2, || {
        let (root, a, b) = root_with_two_leaves();
        let (r2, a2, b2) = (root.clone(), a.clone(), b.clone());
        let t = thread::spawn(move || {
            r2.iterate_commit_if(|tr| {
                if tr[&a2] == 0 {
                    return false;
                }
                tr[&b2] += 1;
                true
            });
        });
        a.iterate_commit(|tr| tr[&a] += 1);
        t.join().unwrap();
        let shot = root.snapshot();
        assert_eq!((shot[&a], shot[&b]), (1, 1));
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// A snapshot of the top of a diamond (`g → {p, q}`, `p → c`, `q → c`: a
/// hard link) racing a commit at `c`: the snapshot sees `c` once, before
/// or after the commit.
#[test]
fn hard_link_snapshot_against_commit() {
    let runs = explore(2, || {
        let g = Node::new(0u32);
        let (p, q, c) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
        p.insert(&c).unwrap();
        q.insert(&c).unwrap();
        g.insert(&p).unwrap();
        g.insert(&q).unwrap();
        let c2 = c.clone();
        let t = thread::spawn(move || {
            c2.iterate_commit(|tr| tr[&c2] += 1);
        });
        let shot = g.snapshot();
        assert!(shot[&c] <= 1);
        t.join().unwrap();
        assert_eq!(g.snapshot()[&c], 1);
    });
    assert!(runs > 10, "loom explored only {runs} executions");
}

/// The last handle of a parent dropped while another thread commits at
/// its bundled child: `Linkage::drop` hands the child its packet back (a
/// CAS loop that ignores tags) while the commit's unbundle finds the parent
/// gone. The commit lands, on the packet the parent carried.
#[test]
fn parent_dropped_against_commit_at_its_child() {
    let runs = explore(3, || {
        let p = Node::new(0u32);
        let c = Node::new(0u32);
        p.insert(&c).unwrap();
        c.iterate_commit(|tr| tr[&c] += 1);
        let _ = p.snapshot(); // bundles the written child into p
        let c2 = c.clone();
        let t = thread::spawn(move || {
            c2.iterate_commit(|tr| tr[&c2] += 10);
        });
        drop(p);
        t.join().unwrap();
        assert_eq!(c.read(), 11);
    });
    assert!(runs > 3, "loom explored only {runs} executions");
}
