//! Concurrent readers: while writers commit (root transactions, direct
//! child commits that unbundle, nested-scope commits), readers take
//! snapshots and check cross-node invariants in every one. A torn snapshot
//! (a packet mixing two commits) fails the invariant.

use kame_stm::Node;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const WRITES: u64 = 3_000;

#[test]
fn snapshots_are_never_torn() {
    // grand -> parent -> {a, b, noise}; invariant: a == b, everywhere.
    let grand = Node::new(0u64);
    let parent = Node::new(0u64);
    let a = Node::new(0u64);
    let b = Node::new(0u64);
    let noise = Node::new(0u64);
    for c in [&a, &b, &noise] {
        parent.insert(c).unwrap();
    }
    grand.insert(&parent).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (grand, parent, a, b) = (grand.clone(), parent.clone(), a.clone(), b.clone());
            let (stop, checked) = (stop.clone(), checked.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                let mut kept = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let shot = if r == 0 {
                        grand.snapshot()
                    } else {
                        parent.snapshot()
                    };
                    let (x, y) = (shot[&a], shot[&b]);
                    assert_eq!(x, y, "torn snapshot");
                    assert!(x >= last, "snapshots went back in time: {x} < {last}");
                    last = x;
                    // Hold a few old snapshots: they must stay valid.
                    kept.push(shot);
                    if kept.len() > 16 {
                        let old = kept.remove(0);
                        assert_eq!(old[&a], old[&b]);
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (grand, parent, a, b, noise) = (
                grand.clone(),
                parent.clone(),
                a.clone(),
                b.clone(),
                noise.clone(),
            );
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    match (w + i as usize) % 3 {
                        0 => {
                            grand.iterate_commit(|tr| {
                                tr[&a] += 1;
                                tr[&b] += 1;
                                tr[&grand] += 1;
                            });
                        }
                        1 => {
                            parent.iterate_commit(|tr| {
                                tr[&a] += 1;
                                tr[&b] += 1;
                            });
                        }
                        _ => {
                            noise.iterate_commit(|tr| tr[&noise] += 1);
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let s = grand.snapshot();
    // Each writer spends a third of its writes on each kind of commit.
    assert_eq!((s[&a], s[&b], s[&noise]), (2 * WRITES, 2 * WRITES, WRITES));
    assert!(checked.load(Ordering::Relaxed) > 0);
}
