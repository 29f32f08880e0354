//! Scale (issue 12): how the cost of an operation grows with the size of
//! the tree. Prints one table; what matters is the ratio between rows of
//! one run (linear growth: time ∝ size), not the absolute figures.
//!
//! ```text
//! cargo run -p kame-stm-bench --release --bin scale -- [--quick | --full]
//!   (--full adds a 10 000-child node: its inserts take tens of seconds)
//! ```
//!
//! * chain of depth d (`n[0] -> n[1] -> … -> n[d-1]`, bundled): a commit at
//!   the bottom (it unbundles the whole chain) followed by a snapshot of
//!   the top (it bundles the whole chain again);
//! * wide node with n children: the time to insert them all, each by
//!   `parent.insert(&child)` (a transaction each), and all in one
//!   transaction (with the first snapshot after it); a commit at the
//!   last child (it has its own packet: the steady state of a busy
//!   channel); a snapshot of the parent followed by that commit (the
//!   snapshot bundles the child, the commit takes it out again); a lookup
//!   of the last child in a snapshot of the parent (the first 10 000,
//!   which pay for the list's index, and the next 10 000).

use kame_stm::Node;
use std::time::{Duration, Instant};

fn per<R, F: FnMut() -> R>(reps: u32, mut f: F) -> Duration {
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    t.elapsed() / reps
}

fn chain(depth: usize) -> (Duration, Duration) {
    let chain: Vec<Node<u32>> = (0..depth).map(|_| Node::new(0)).collect();
    for w in chain.windows(2) {
        w[0].insert(&w[1]).unwrap();
    }
    let (top, bottom) = (&chain[0], &chain[depth - 1]);
    let _ = top.snapshot();
    let commit = per(10, || bottom.iterate_commit(|tr| tr[bottom] += 1));
    let both = per(10, || {
        bottom.iterate_commit(|tr| tr[bottom] += 1);
        std::hint::black_box(top.snapshot());
    });
    (commit, both)
}

fn wide(n: usize) -> (Duration, Duration, Duration, Duration, Duration) {
    let parent = Node::new(0u32);
    let kids: Vec<Node<u32>> = (0..n).map(|_| Node::new(0)).collect();
    let t = Instant::now();
    for k in &kids {
        parent.insert(k).unwrap();
    }
    let insert = t.elapsed();
    let last = &kids[n - 1];
    let _ = parent.snapshot();
    last.iterate_commit(|tr| tr[last] += 1); // unbundles it
    // The first commits after the inserts also free the parent versions
    // the inserts retired (reclamation runs at the end of later
    // operations): a transient of a few milliseconds in all, reported
    // apart in docs/benchmarks.md. The steady state is measured after it.
    let _ = per(2000, || last.iterate_commit(|tr| tr[last] += 1));
    let commit = per(1000, || last.iterate_commit(|tr| tr[last] += 1));
    let after_snapshot = per(100, || {
        std::hint::black_box(parent.snapshot());
        last.iterate_commit(|tr| tr[last] += 1)
    });
    let shot = parent.snapshot();
    // The first lookups in a list version scan it until they have paid
    // for its index (`node_list.rs`); the next ones are the steady state.
    let lookup = per(10_000, || {
        std::hint::black_box(shot[last]);
    });
    let again = per(10_000, || {
        std::hint::black_box(shot[last]);
    });
    (insert, commit, after_snapshot, lookup, again)
}

/// Inserting `n` children in one transaction, and the first snapshot of
/// the parent after it (which bundles them all).
fn wide_batch(n: usize) -> (Duration, Duration) {
    let parent = Node::new(0u32);
    let kids: Vec<Node<u32>> = (0..n).map(|_| Node::new(0)).collect();
    let t = Instant::now();
    parent.iterate_commit(|tr| {
        for k in &kids {
            tr.insert(&parent, k).unwrap();
        }
    });
    let insert = t.elapsed();
    let t = Instant::now();
    let shot = parent.snapshot();
    let first = t.elapsed();
    assert_eq!(shot.children(&parent).unwrap().len(), n);
    (insert, first)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let depths: &[usize] = if quick {
        &[100, 1000]
    } else {
        &[100, 1000, 3000, 10_000]
    };
    println!("| chain depth | commit at the bottom | + snapshot of the top | per level |");
    println!("|---:|---:|---:|---:|");
    for &d in depths {
        let (c, b) = chain(d);
        println!(
            "| {d} | {c:.1?} | {b:.1?} | {:.0?} |",
            b / u32::try_from(d).unwrap()
        );
    }
    let full = std::env::args().any(|a| a == "--full");
    let widths: &[usize] = if quick {
        &[100, 1000]
    } else if full {
        &[100, 1000, 3000, 10_000]
    } else {
        &[100, 1000, 3000]
    };
    println!();
    println!(
        "| children | insert all, one transaction each | all in one transaction | + first snapshot | commit at the last child | snapshot of the parent + that commit | lookup of the last child: first 10 000 | next 10 000 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in widths {
        let (b, f) = wide_batch(n);
        let (i, c, s, l, a) = wide(n);
        println!("| {n} | {i:.1?} | {b:.1?} | {f:.1?} | {c:.1?} | {s:.1?} | {l:.1?} | {a:.1?} |");
    }
}
