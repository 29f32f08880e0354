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
