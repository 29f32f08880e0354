//! Ports of KAME's payload-integrity tests: parent (or grand) transactions
//! racing direct child commits; every increment must land exactly once.

use kame_stm::Node;

const MODULO: u32 = 3;

fn threads() -> usize {
    std::env::var("KT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

fn iterations() -> usize {
    std::env::var("KT_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn run(levels: usize) {
    let grand = Node::new(0u32);
    let parent = Node::new(0u32);
    let c1 = Node::new(0u32);
    let c2 = Node::new(0u32);
    parent.insert(&c1).unwrap();
    parent.insert(&c2).unwrap();
    let scope = if levels == 3 {
        grand.insert(&parent).unwrap();
        grand.clone()
    } else {
        parent.clone()
    };
    let (n, iters) = (threads(), iterations());
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let (scope, c1, c2) = (scope.clone(), c1.clone(), c2.clone());
            std::thread::spawn(move || {
                for _ in 0..iters {
                    scope.iterate_commit(|tr| {
                        tr[&c1] = (tr[&c1] + 1) % MODULO;
                        tr[&c2] = (tr[&c2] + 1) % MODULO;
                    });
                    c1.iterate_commit(|tr| tr[&c1] = (tr[&c1] + 1) % MODULO);
                    c2.iterate_commit(|tr| tr[&c2] = (tr[&c2] + 1) % MODULO);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let expect = ((2 * iters * n) % MODULO as usize) as u32;
    let s = scope.snapshot();
    assert_eq!((s[&c1], s[&c2]), (expect, expect));
}

#[test]
fn payload_integrity_2level() {
    run(2);
}

#[test]
fn payload_integrity_3level() {
    run(3);
}

/// The same race on a node with more children than a short list holds
/// (long lists live in shared chunks): each thread commits to its own
/// children spread over the chunks, and scope transactions increment every
/// child; snapshots of the parent taken meanwhile are consistent (every
/// child has seen the same number of scope commits). Counts are exact: no
/// increment is lost or applied twice.
#[test]
fn payload_integrity_wide_node() {
    const KIDS: usize = 150;
    let parent = Node::new(0u32);
    let kids: Vec<Node<u64>> = (0..KIDS).map(|_| Node::new(0)).collect();
    for k in &kids {
        parent.insert(k).unwrap();
    }
    let (n, iters) = (threads().min(4), iterations() / 5);
    let scope_every = 10;
    let hs: Vec<_> = (0..n)
        .map(|t| {
            let (parent, kids) = (parent.clone(), kids.clone());
            std::thread::spawn(move || {
                let mut scopes = 0u64;
                for it in 0..iters {
                    if it % scope_every == 0 {
                        parent.iterate_commit(|tr| {
                            for k in &kids {
                                tr[k] += 1 << 32;
                            }
                        });
                        scopes += 1;
                        let s = parent.snapshot();
                        let seen = s[&kids[0]] >> 32;
                        assert!(kids.iter().all(|k| s[k] >> 32 == seen), "torn snapshot");
                    } else {
                        let k = &kids[(t + n * it) % KIDS];
                        k.iterate_commit(|tr| tr[k] += 1);
                    }
                }
                scopes
            })
        })
        .collect();
    let scopes: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let s = parent.snapshot();
    let mut leaf_total = 0;
    for k in &kids {
        assert_eq!(s[k] >> 32, scopes, "every child saw every scope commit");
        leaf_total += s[k] & 0xffff_ffff;
    }
    assert_eq!(leaf_total, (n * iters) as u64 - scopes);
}
