//! Loom models in which the payload's memory is a loom cell.
//!
//! `tests/loom.rs` checks what the protocol computes; a weakened ordering
//! there shows up at best as a wrong value or a branch limit. Here every
//! read and write of a node's payload goes through `loom::cell::UnsafeCell`,
//! so loom checks each against the happens-before it derives from the
//! linkage's atomics: a payload read without a release → acquire chain
//! from its write is reported as a data race ("Causality violation").
//!
//! Each model is also run with one ordering of the linkage slot weakened on
//! purpose (`__private::weaken_slot_orderings`, loom builds only): the model
//! must then fail. That is what shows the models can fail, and which
//! ordering each one guards.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_payload`
#![cfg(loom)]

use kame_stm::__private::{Weakened, weaken_slot_orderings};
use kame_stm::Node;
use loom::thread;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A payload whose memory loom watches.
struct Cell(loom::cell::UnsafeCell<u32>);

// SAFETY: the STM never lets two threads at one payload with one of them
// writing: a transaction writes its own copy (copy-on-write) and a CAS
// publishes it; published packets are never written again. That claim is
// what these models check: loom reports every access pair that the
// atomics do not order.
unsafe impl Sync for Cell {}

impl Cell {
    fn new(v: u32) -> Self {
        Cell(loom::cell::UnsafeCell::new(v))
    }
    fn get(&self) -> u32 {
        // SAFETY: see `impl Sync`; loom checks the access.
        self.0.with(|p| unsafe { *p })
    }
    /// A read and a write of the cell, as a transaction's `+=` does.
    fn add(&mut self, d: u32) {
        // SAFETY: see `impl Sync`; loom checks the accesses.
        let v = self.0.with(|p| unsafe { *p });
        // SAFETY: as above.
        self.0.with_mut(|p| unsafe { *p = v + d });
    }
}

impl Clone for Cell {
    fn clone(&self) -> Self {
        Cell::new(self.get())
    }
}

/// Runs `model` under loom with the orderings as shipped; the number of
/// executions explored.
fn explore(bound: usize, model: fn()) -> usize {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.check(move || {
        r.fetch_add(1, Ordering::Relaxed);
        model();
    });
    runs.load(Ordering::Relaxed)
}

const MODELS: &[(&str, usize, fn())] = &[
    ("commit_against_snapshot", 3, commit_against_snapshot),
    (
        "leaf_commit_against_root_snapshot",
        2,
        leaf_commit_against_root_snapshot,
    ),
    (
        "root_transaction_against_leaf_commit",
        2,
        root_transaction_against_leaf_commit,
    ),
];

/// The model passes as shipped and explores more than a few executions;
/// with each of `weak` in force it fails, with a data race where `race`. The weakened
/// runs are child processes (`weakened_model`): a model that panics leaves
/// loom's and the crate's thread-locals mid-operation, which would skew any
/// later model in the same process.
fn passes_and_catches(name: &str, weak: &[Weakened], race: bool) {
    let &(_, bound, model) = MODELS.iter().find(|m| m.0 == name).expect("a model");
    let runs = explore(bound, model);
    assert!(runs > 2, "loom explored only {runs} executions");
    for &w in weak {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["weakened_model", "--exact", "--ignored", "--nocapture"])
            .env("KAME_LOOM_MODEL", name)
            .env("KAME_LOOM_WEAKEN", format!("{w:?}"))
            .output()
            .expect("run the test binary again");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}, {w:?}: not caught\n{text}");
        assert!(
            !race || text.contains("Causality violation"),
            "{name}, {w:?}: failed, but not with a data race:\n{text}"
        );
    }
}

/// Child process of `passes_and_catches`: runs the model named by
/// `KAME_LOOM_MODEL` with `KAME_LOOM_WEAKEN` in force; expected to fail.
#[test]
#[ignore = "run by passes_and_catches in a child process"]
fn weakened_model() {
    let name = std::env::var("KAME_LOOM_MODEL").expect("KAME_LOOM_MODEL");
    let weak = match std::env::var("KAME_LOOM_WEAKEN").as_deref() {
        Ok("Load") => Weakened::Load,
        Ok("Publish") => Weakened::Publish,
        other => panic!("KAME_LOOM_WEAKEN: {other:?}"),
    };
    let &(_, bound, model) = MODELS.iter().find(|m| m.0 == name).expect("a model");
    weaken_slot_orderings(weak);
    explore(bound, model);
}

/// A commit on one node against a stand-alone snapshot of it: the reader
/// sees the old or the new value, and reads the new one only after the
/// commit's CAS released it (the commit's copy was written before). (The
/// snapshot runs on the spawned thread: the other way round, loom's
/// partial-order reduction explores a single execution.)
fn commit_against_snapshot() {
    let n = Node::new(Cell::new(0));
    let n2 = n.clone();
    let t = thread::spawn(move || {
        let v = n2.snapshot()[&n2].get();
        assert!(v <= 1);
    });
    n.iterate_commit(|tr| {
        tr[&n].add(1);
    });
    t.join().unwrap();
    assert_eq!(n.snapshot()[&n].get(), 1);
}

#[test]
fn a_committed_payload_is_published_by_its_cas() {
    passes_and_catches(
        "commit_against_snapshot",
        &[Weakened::Load, Weakened::Publish],
        true,
    );
}

/// A leaf commit against a snapshot of the root: the root's bundle reads
/// the leaf's new packet through the leaf's linkage and hands it on through
/// the root's; the reader gets it by either path.
fn leaf_commit_against_root_snapshot() {
    let root = Node::new(Cell::new(7));
    let leaf = Node::new(Cell::new(0));
    // Unsealed: the root is missing, with a void slot for the leaf, so the
    // snapshot below bundles it while the commit races it.
    kame_stm::__private::without_seal(|| root.insert(&leaf).unwrap());
    let l2 = leaf.clone();
    let t = thread::spawn(move || {
        l2.iterate_commit(|tr| {
            tr[&l2].add(1);
        });
    });
    let shot = root.snapshot();
    assert!(shot[&leaf].get() <= 1);
    assert_eq!(shot[&root].get(), 7);
    t.join().unwrap();
    assert_eq!(root.snapshot()[&leaf].get(), 1);
}

/// Weakened, this model fails before it reaches a data race: a reader
/// retrying on what is now a stale wrapper reads it again and again (loom
/// lets a load without a synchronising store return an old value forever)
/// and loom stops it at its branch limit. So it only checks that it fails;
/// the other two models catch both weakenings as races.
#[test]
fn a_bundle_hands_on_what_the_leaf_published() {
    passes_and_catches(
        "leaf_commit_against_root_snapshot",
        &[Weakened::Load, Weakened::Publish],
        false,
    );
}

/// A transaction on the root writing the leaf against a commit at the
/// leaf: both increments land, and each writer reads the other's copy only
/// through a CAS that published it (the root's commit unbundles nothing;
/// the leaf's commit takes the leaf out of the root's bundle).
fn root_transaction_against_leaf_commit() {
    let root = Node::new(Cell::new(0));
    let leaf = Node::new(Cell::new(0));
    root.insert(&leaf).unwrap();
    let (r2, l2) = (root.clone(), leaf.clone());
    let t = thread::spawn(move || {
        r2.iterate_commit(|tr| {
            tr[&l2].add(1);
        });
    });
    leaf.iterate_commit(|tr| {
        tr[&leaf].add(10);
    });
    t.join().unwrap();
    assert_eq!(root.snapshot()[&leaf].get(), 11);
}

#[test]
fn writers_of_one_leaf_through_two_linkages() {
    passes_and_catches(
        "root_transaction_against_leaf_commit",
        &[Weakened::Load, Weakened::Publish],
        true,
    );
}
