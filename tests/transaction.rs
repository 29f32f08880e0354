//! Ports of KAME's `transaction_test` and `transaction_dynamic_node_test`:
//! a tree with online inserts, releases, swaps and hard links, then threads
//! running multi-node transactions whose net effect is zero, checking a
//! cross-node invariant in every snapshot they take.

mod common;
use common::{Counted, Tracker};
use kame_stm::{Node, Transaction};
use std::sync::Arc;
use std::sync::atomic::Ordering;

type N = Node<Counted>;

fn val(tr: &Transaction, n: &N) -> i64 {
    tr[n].x
}

/// gn1 -> gn2 -> gn3 (+ hard-linked side tree), gn4 detached.
fn build(t: &Arc<Tracker>) -> [N; 4] {
    let gn1 = Node::new(Counted::new(0, t));
    let gn2 = Node::new(Counted::new(0, t));
    let gn3 = Node::new(Counted::new(0, t));
    let gn4 = Node::new(Counted::new(0, t));
    gn1.iterate_commit_if(|tr| {
        tr.insert_online(&gn1, &gn2).unwrap();
        tr[&gn2] += 1;
        tr.insert_online(&gn2, &gn3).unwrap();
        tr.insert_online(&gn3, &gn4).unwrap();
        tr.release(&gn3, &gn4).unwrap();
        true
    });
    let s = gn1.snapshot();
    assert_eq!(s[&gn2].x, 1);
    assert!(!s.contains(&gn4));
    gn1.release(&gn2).unwrap();
    gn1.insert(&gn2).unwrap();
    gn2.iterate_commit(|tr| {
        tr[&gn2] -= 1;
        let v = val(tr, &gn3);
        tr[&gn3] -= v;
    });
    let s = gn1.snapshot();
    assert_eq!((s[&gn2].x, s[&gn3].x), (0, 0));
    gn3.iterate_commit(|tr| tr[&gn3] += 2);
    gn3.iterate_commit(|tr| tr[&gn3] -= 2);

    // p1 under gn1, swapped with gn2, also under gn3 (hard link).
    let p1 = Node::new(Counted::new(0, t));
    gn1.insert(&p1).unwrap();
    gn1.iterate_commit(|tr| tr.swap(&gn1, &p1, &gn2).unwrap());
    gn3.insert(&p1).unwrap();
    let s = gn1.snapshot();
    assert!(s.contains(&p1) && s.contains(&gn3));

    // Side tree with hard links, built and torn down inside gn3 transactions.
    let p2 = Node::new(Counted::new(0, t));
    let p21 = Node::new(Counted::new(0, t));
    let p22 = Node::new(Counted::new(0, t));
    let p211 = Node::new(Counted::new(0, t));
    let leaves: Vec<N> = (0..4).map(|_| Node::new(Counted::new(0, t))).collect();
    gn3.iterate_commit(|tr| {
        tr.insert_online(&gn3, &p2).unwrap();
        tr.insert_online(&p2, &p21).unwrap();
        tr.insert_online(&p2, &p22).unwrap();
        tr.insert_online(&p2, &p211).unwrap();
        tr.insert(&p21, &p211).unwrap(); // hard link
        tr.insert(&p21, &p22).unwrap(); // hard link
        for l in &leaves {
            tr.insert_online(&p211, l).unwrap();
        }
        tr.insert(&gn3, &leaves[0]).unwrap(); // hard link, not online
    });
    for _ in 0..3 {
        gn1.iterate_commit(|tr| {
            for l in &leaves {
                tr[l] += 1;
            }
            tr[&p22] += 1;
        });
        leaves[0].iterate_commit(|tr| tr[&leaves[0]] -= 1);
        p21.iterate_commit(|tr| tr[&p22] -= 1);
    }
    let s = gn1.snapshot();
    for n in [&p2, &p21, &p22, &p211] {
        assert!(s.contains(n));
    }
    assert_eq!(s[&leaves[0]].x, 0);
    assert_eq!(s[&leaves[1]].x, 3);
    assert_eq!(s[&p22].x, 0);
    gn3.iterate_commit(|tr| {
        for l in &leaves {
            let v = val(tr, l);
            tr[l] -= v;
        }
        tr.release(&gn3, &leaves[0]).unwrap();
        tr.release(&gn3, &p2).unwrap();
    });
    assert!(!gn1.snapshot().contains(&p2));
    assert_eq!(p2.snapshot()[&leaves[1]].x, 0);
    gn1.release(&p1).unwrap();
    let s = gn1.snapshot();
    assert!(s.contains(&p1), "p1 stays reachable through gn3");
    [gn1, gn2, gn3, gn4]
}

fn check(shot: &kame_stm::Snapshot, gn2: &N, gn3: &N) {
    let (a, b) = (shot[gn2].x, shot[gn3].x);
    assert!(a <= b, "torn snapshot: gn2 = {a} > gn3 = {b}");
}

fn body(gns: &[N; 4], i: usize, extra: Option<&N>) {
    let [gn1, gn2, gn3, gn4] = gns;
    let with_p2 = extra.filter(|_| i % 10 == 0);
    gn1.iterate_commit(|tr| {
        tr[gn1] += 1;
        tr[gn3] += 1;
        let frozen = tr.snapshot();
        tr[gn1] -= 1;
        tr[gn2] += 1;
        assert_eq!(frozen[gn1].x, tr[gn1].x + 1);
        if let Some(p2) = with_p2 {
            tr[p2] += 1;
        }
    });
    check(&gn1.snapshot(), gn2, gn3);
    gn3.iterate_commit(|tr| tr[gn3] += 1);
    gn4.iterate_commit(|tr| {
        tr[gn4] += 1;
        tr[gn4] -= 1;
    });
    check(&gn2.snapshot(), gn2, gn3);
    gn2.iterate_commit(|tr| {
        tr[gn2] -= 1;
        tr[gn3] -= 1;
        if let Some(p2) = with_p2 {
            tr[p2] -= 1;
        }
    });
    gn3.iterate_commit(|tr| tr[gn3] -= 1);
}

fn finish(gns: [N; 4], t: &Arc<Tracker>) {
    let s = gns[0].snapshot();
    for n in &gns[..3] {
        assert_eq!(s[n].x, 0);
    }
    assert_eq!(gns[3].snapshot()[&gns[3]].x, 0);
    drop(s);
    drop(gns);
    assert_eq!(t.settle(), 0, "payload copies leaked");
    assert_eq!(t.total.load(Ordering::SeqCst), 0);
}

#[test]
fn transaction_test() {
    let t = Tracker::new();
    let gns = build(&t);
    let nthreads: usize = std::env::var("KT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let threads: Vec<_> = (0..nthreads)
        .map(|_| {
            let gns = gns.clone();
            std::thread::spawn(move || {
                for i in 0..2500 {
                    body(&gns, i, None);
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    finish(gns, &t);
}

#[test]
fn transaction_dynamic_node_test() {
    let t = Tracker::new();
    let gns = build(&t);
    let nthreads: usize = std::env::var("KT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let threads: Vec<_> = (0..nthreads)
        .map(|_| {
            let gns = gns.clone();
            let t = t.clone();
            std::thread::spawn(move || {
                let [gn1, gn2, gn3, _] = &gns;
                let p1 = Node::new(Counted::new(0, &t));
                let p2 = Node::new(Counted::new(0, &t));
                for i in 0..2500 {
                    p1.insert(&p2).unwrap();
                    if i % 10 == 0 {
                        gn1.iterate_commit(|tr| {
                            tr.insert(gn2, &p2).unwrap();
                            tr.swap(gn2, &p2, gn3).unwrap();
                            tr.insert(gn1, &p1).unwrap();
                        });
                    }
                    body(&gns, i, Some(&p2));
                    p1.release(&p2).unwrap();
                    if i % 10 == 0 {
                        gn1.iterate_commit(|tr| {
                            tr.release(gn2, &p2).unwrap();
                            tr.release(gn1, &p1).unwrap();
                        });
                        assert!(!gn1.snapshot().contains(&p2));
                    }
                }
                assert_eq!(p2.snapshot()[&p2].x, 0);
            })
        })
        .collect();
    for _ in 0..100 {
        gns[2].insert(&gns[3]).unwrap();
        gns[2].release(&gns[3]).unwrap();
    }
    for th in threads {
        th.join().unwrap();
    }
    finish(gns, &t);
}
