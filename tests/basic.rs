//! Single-threaded behaviour of the public API.

use kame_stm::{Node, TreeError};

#[test]
fn single_node_commit_and_snapshot() {
    let n = Node::new(1u32);
    assert_eq!(n.snapshot()[&n], 1);
    let shot = n.iterate_commit(|tr| tr[&n] += 41);
    assert_eq!(shot[&n], 42);
    assert_eq!(n.snapshot()[&n], 42);
}

#[test]
fn two_level_tree() {
    let p = Node::new(0i64);
    let a = Node::new(1i64);
    let b = Node::new(String::from("b"));
    p.insert(&a).unwrap();
    p.insert(&b).unwrap();
    let s = p.snapshot();
    assert_eq!(s[&a], 1);
    assert_eq!(s[&b], "b");
    assert_eq!(s.children(&p).unwrap().count(), 2);
    p.iterate_commit(|tr| {
        tr[&a] += 1;
        tr[&b].push('!');
    });
    let s = p.snapshot();
    assert_eq!((s[&a], s[&b].as_str()), (2, "b!"));
    // Direct child commit (unbundles a) then root snapshot again.
    a.iterate_commit(|tr| tr[&a] *= 10);
    assert_eq!(a.snapshot()[&a], 20);
    assert_eq!(p.snapshot()[&a], 20);
    assert_eq!(p.snapshot()[&b], "b!");
}

#[test]
fn three_level_tree() {
    let g = Node::new(0u8);
    let p = Node::new(0u8);
    let c1 = Node::new(0u32);
    let c2 = Node::new(0u32);
    p.insert(&c1).unwrap();
    p.insert(&c2).unwrap();
    g.insert(&p).unwrap();
    for i in 0..10u32 {
        g.iterate_commit(|tr| {
            tr[&c1] += 1;
            tr[&c2] += 1;
        });
        c1.iterate_commit(|tr| tr[&c1] += 1);
        p.iterate_commit(|tr| tr[&c2] += 1);
        let s = g.snapshot();
        assert_eq!(s[&c1], 2 * (i + 1));
        assert_eq!(s[&c2], 2 * (i + 1));
    }
}

#[test]
fn errors_instead_of_panics() {
    let p = Node::new(0u8);
    let a = Node::new(0u8);
    let stranger = Node::new(0u8);
    p.insert(&a).unwrap();
    assert!(p.snapshot().get(&stranger).is_err());
    assert_eq!(p.release(&stranger), Err(TreeError::NotAChild));
    assert_eq!(p.insert(&a), Err(TreeError::AlreadyChild));
    assert_eq!(a.insert(&p), Err(TreeError::Cycle));
    assert_eq!(p.insert(&p), Err(TreeError::Cycle));
    let g = Node::new(0u8);
    g.insert(&p).unwrap();
    assert_eq!(a.insert(&g), Err(TreeError::Cycle));
}

#[test]
fn online_insert_release_swap() {
    let p = Node::new(0u8);
    let a = Node::new(5u32);
    let b = Node::new(7u32);
    p.iterate_commit(|tr| {
        tr.insert_online(&p, &a).unwrap();
        tr[&a] += 1;
        tr.insert_online(&p, &b).unwrap();
    });
    let s = p.snapshot();
    assert_eq!((s[&a], s[&b]), (6, 7));
    let names: Vec<_> = s.children(&p).unwrap().collect();
    assert!(names[0] == a && names[1] == b);
    p.iterate_commit(|tr| tr.swap(&p, &a, &b).unwrap());
    let names: Vec<_> = p.snapshot().children(&p).unwrap().collect();
    assert!(names[0] == b && names[1] == a);
    p.release(&a).unwrap();
    assert!(!p.snapshot().contains(&a));
    assert_eq!(a.snapshot()[&a], 6);
    a.iterate_commit(|tr| tr[&a] += 1);
    assert_eq!(a.snapshot()[&a], 7);
    p.insert(&a).unwrap();
    assert_eq!(p.snapshot()[&a], 7);
}

#[test]
fn hard_link_two_parents() {
    let r = Node::new(0u8);
    let p1 = Node::new(0u8);
    let p2 = Node::new(0u8);
    let x = Node::new(0u32);
    r.insert(&p1).unwrap();
    r.insert(&p2).unwrap();
    p1.insert(&x).unwrap();
    p2.insert(&x).unwrap();
    for _ in 0..5 {
        r.iterate_commit(|tr| tr[&x] += 1);
        p1.iterate_commit(|tr| tr[&x] += 1);
        p2.iterate_commit(|tr| tr[&x] += 1);
        x.iterate_commit(|tr| tr[&x] += 1);
    }
    assert_eq!(r.snapshot()[&x], 20);
    assert_eq!(p1.snapshot()[&x], 20);
    assert_eq!(p2.snapshot()[&x], 20);
}

#[test]
fn dropped_parent_hands_packets_back() {
    let c = Node::new(3u32);
    {
        let p = Node::new(0u8);
        p.insert(&c).unwrap();
        p.iterate_commit(|tr| tr[&c] += 1);
        assert_eq!(p.snapshot()[&c], 4);
    }
    assert_eq!(c.snapshot()[&c], 4);
    c.iterate_commit(|tr| tr[&c] += 1);
    assert_eq!(c.snapshot()[&c], 5);
}

/// Bundling and unbundling re-pack the parent without copying its payload:
/// only a write copies a payload (leaf payloads live inline in their packet,
/// inner ones are shared between versions; src/packet.rs).
#[test]
fn bundle_and_unbundle_do_not_copy_inner_payloads() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    struct Big(Vec<u8>);
    impl Clone for Big {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Big(self.0.clone())
        }
    }
    let parent = Node::new(Big(vec![0; 1024]));
    let kids: Vec<_> = (0..3).map(|_| Node::new(0u32)).collect();
    for k in &kids {
        parent.insert(k).unwrap();
    }
    let before = CLONES.load(Ordering::SeqCst);
    for round in 1..=20u32 {
        for k in &kids {
            k.iterate_commit(|tr| tr[k] += 1); // unbundles k from the parent
        }
        let shot = parent.snapshot(); // bundles the subtree again
        assert!(kids.iter().all(|k| shot[k] == round));
        assert_eq!(shot[&parent].0.len(), 1024);
    }
    assert_eq!(
        CLONES.load(Ordering::SeqCst),
        before,
        "the parent's payload was copied"
    );
    // A write does copy it (copy-on-write), exactly once per transaction.
    parent.iterate_commit(|tr| tr[&parent].0[0] = 1);
    assert_eq!(CLONES.load(Ordering::SeqCst), before + 1);
}

/// `attempt` counts the attempts thrown away before this one: a body that
/// asks to retry twice sees 0, 1, 2 (bounded here, so that a wrong count
/// fails the test instead of looping).
#[test]
fn attempt_counts_the_attempts_thrown_away() {
    let n = Node::new(0u32);
    let mut seen = Vec::new();
    n.iterate_commit_if(|tr| {
        seen.push(tr.attempt());
        assert!(seen.len() <= 3, "attempts seen: {seen:?}");
        tr[&n] += 1;
        seen.len() == 3
    });
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(n.read(), 1, "only the committed attempt's write");
}

/// A transaction's `Debug` names its root, its attempt and whether it has
/// written yet.
#[test]
fn a_transaction_debugs_its_root_attempt_and_writes() {
    let n = Node::named("dmm", 0u32);
    n.iterate_commit(|tr| {
        let before = format!("{tr:?}");
        assert!(before.starts_with("Transaction"), "{before}");
        assert!(before.contains("dmm"), "{before}");
        assert!(before.contains("attempt: 0"), "{before}");
        assert!(before.contains("written: false"), "{before}");
        tr[&n] += 1;
        let after = format!("{tr:?}");
        assert!(after.contains("written: true"), "{after}");
    });
}

/// A node with more children than a short list holds (long lists are kept
/// in shared chunks): inserts one transaction each and in one transaction,
/// online inserts, leaf commits that unbundle a child out of the middle of
/// a chunk, root transactions writing every child, swaps across chunks,
/// releases from the middle, a hard link and a second parent; every
/// snapshot lists the children in order with their values, and an older
/// snapshot keeps what it saw.
#[test]
fn a_wide_node_keeps_its_children_in_order() {
    let p = Node::new(0u32);
    let kids: Vec<Node<u32>> = (0..300).map(Node::new).collect();
    for k in &kids[..150] {
        p.insert(k).unwrap();
    }
    p.iterate_commit(|tr| {
        for k in &kids[150..250] {
            tr.insert(&p, k).unwrap();
        }
        for k in &kids[250..] {
            tr.insert_online(&p, k).unwrap();
            tr[k] += 1000;
        }
    });
    let mut order: Vec<usize> = (0..300).collect();
    let mut vals: Vec<u32> = (0..300)
        .map(|i| if i >= 250 { i + 1000 } else { i })
        .collect();
    let check = |order: &[usize], vals: &[u32]| {
        let s = p.snapshot();
        let listed: Vec<_> = s.children(&p).unwrap().collect();
        assert_eq!(listed.len(), order.len());
        for (got, &i) in listed.iter().zip(order) {
            assert!(*got == kids[i], "child {i} out of place");
            assert_eq!(s[&kids[i]], vals[i], "child {i}");
        }
        s
    };
    let before = check(&order, &vals);
    assert_eq!(p.insert(&kids[7]), Err(TreeError::AlreadyChild));
    for i in [0, 63, 64, 65, 130, 299] {
        kids[i].iterate_commit(|tr| tr[&kids[i]] += 1);
        vals[i] += 1;
    }
    check(&order, &vals);
    p.iterate_commit(|tr| {
        for k in &kids {
            tr[k] += 2;
        }
        tr.swap(&p, &kids[3], &kids[200]).unwrap();
    });
    vals.iter_mut().for_each(|v| *v += 2);
    order.swap(3, 200);
    check(&order, &vals);
    for i in [100, 64, 5] {
        p.release(&kids[i]).unwrap();
        order.retain(|&j| j != i);
    }
    check(&order, &vals);
    let q = Node::new(0u32);
    q.insert(&kids[150]).unwrap();
    kids[150].iterate_commit(|tr| tr[&kids[150]] += 10);
    vals[150] += 10;
    check(&order, &vals);
    assert_eq!(q.snapshot()[&kids[150]], vals[150]);
    p.insert(&kids[100]).unwrap();
    order.push(100);
    check(&order, &vals);
    assert_eq!(before.children(&p).unwrap().len(), 300);
    assert_eq!(before[&kids[299]], 1299);
    while order.len() > 10 {
        let i = order[order.len() / 2];
        p.release(&kids[i]).unwrap();
        order.retain(|&j| j != i);
    }
    check(&order, &vals);
}
