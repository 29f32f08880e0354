//! Regressions the sequential model (`tests/model.rs`) found after issue 9's
//! fixes had landed (on 9f83bc2). Each is a minimal case it printed, in
//! plain code; each failed or hung on 9f83bc2 (checked there; the last
//! two on 439a011, whose fixes they complete) and passes now. Root causes:
//! `tla/FINDINGS.md`, "What the sequential model found".
//!
//! Tests that used to hang run under a generous watchdog (`within`): it
//! only fires on a hang, never decides a pass by timing.

use kame_stm::{Node, TreeError};
use std::time::Duration;

mod common;

/// `r` is the report of a closure's snapshot (of `inner`) that keeps
/// invalidating the transaction on `outer`.
fn assert_snapshot_report<T: std::fmt::Debug>(r: Result<T, TreeError>, outer: &str, inner: &str) {
    match r {
        Err(TreeError::NestedConflict(c)) => {
            assert_eq!(c.cause, kame_stm::NestedCause::Snapshot);
            assert_eq!(c.inner.name.as_deref(), Some(inner));
            assert_eq!(c.outer.name.as_deref(), Some(outer));
        }
        other => panic!("expected a NestedConflict report, got {other:?}"),
    }
}

/// `common::within` with this file's limit.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    common::within(Duration::from_secs(120), what, f)
}

/// A snapshot of an ancestor taken inside the closure bundles the
/// transaction's root into it; an online insert then found its root's
/// wrapper changed and doomed the attempt, every attempt (a livelock). Its
/// packet is still the one it read: the attempt is valid.
#[test]
fn an_ancestor_snapshot_in_the_closure_does_not_doom_the_attempt() {
    within("ancestor snapshot + insert_online", || {
        let (top, mine, other) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
        top.insert(&mine).unwrap();
        top.insert(&other).unwrap();
        let (_, stats) = mine.iterate_commit_with_stats(|tr| {
            let _ = top.snapshot();
            tr.insert_online(&mine, &other).unwrap();
            tr[&other] += 1;
            tr[&mine] += 1;
        });
        assert_eq!(stats.retries, 0);
        assert_eq!((mine.read(), other.read()), (1, 1));
        let shot = top.snapshot();
        assert_eq!((shot[&mine], shot[&other]), (1, 1));
    });
}

/// An online insert of a node whose subtree holds a node this attempt had
/// released (its packet lived in this tree, so the pulled packet listed it
/// void): the released node was in no slot of the working tree, and the
/// transaction could not read it.
#[test]
fn a_released_node_pulled_back_with_another_subtree_is_readable() {
    let (root, mid, leaf, other) = (
        Node::new(0u32),
        Node::new(0u32),
        Node::new(0u32),
        Node::new(0u32),
    );
    root.insert(&mid).unwrap();
    mid.insert(&leaf).unwrap();
    other.insert(&leaf).unwrap(); // a hard link from outside the tree
    let _ = root.snapshot();
    root.iterate_commit(|tr| {
        tr.release(&mid, &leaf).unwrap();
        tr.insert_online(&mid, &other).unwrap();
        tr[&leaf] += 5;
    });
    assert_eq!(leaf.read(), 5);
    assert_eq!(root.snapshot()[&leaf], 5);
    assert_eq!(other.snapshot()[&leaf], 5);
}

// The loop of `bundled_by` references left by a stale limbo (a hang) is
// replayed from the model's own case: `recorded_cases` in `tests/model.rs`.

/// An insert undone by a release in the same attempt was still checked for
/// cycles at the commit, against the attempt's later edges: every commit
/// failed the check (a livelock).
#[test]
fn an_insert_released_again_is_not_cycle_checked() {
    within("insert + release, then the reverse edge", || {
        let (root, a, b, x) = (
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
        );
        root.insert(&a).unwrap();
        root.insert(&x).unwrap();
        a.insert(&b).unwrap();
        let _ = root.snapshot();
        let (_, stats) = root.iterate_commit_with_stats(|tr| {
            tr.insert(&b, &x).unwrap(); // x also below b (a hard link)
            tr.release(&b, &x).unwrap(); // undone
            tr.release(&a, &b).unwrap();
            tr.insert(&x, &b).unwrap(); // b below x: no cycle any more
        });
        assert_eq!(stats.retries, 0);
        let shot = root.snapshot();
        assert_eq!(shot.children(&x).unwrap().count(), 1);
        assert_eq!(shot.children(&a).unwrap().count(), 0);
    });
}

/// The cycle check of an insert ignored the edges of subtrees this attempt
/// had released: the insert was accepted, the commit's check (which sees
/// them) refused it, every attempt.
#[test]
fn the_cycle_check_sees_the_edges_of_released_subtrees() {
    within("insert below a released subtree's own descendant", || {
        let (root, x, y, z) = (
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
        );
        let outside = Node::new(0u32);
        root.insert(&x).unwrap();
        root.insert(&z).unwrap();
        outside.insert(&z).unwrap(); // z: under root and under outside
        let _ = root.snapshot();
        let r = root.try_iterate_commit(|tr| {
            tr.insert(&x, &outside)?; // x -> outside -> z
            tr.release(&root, &x)?; // x leaves with that edge
            tr.insert(&z, &x) // z -> x -> outside -> z: a cycle
        });
        assert_eq!(r.err(), Some(TreeError::Cycle));
        let _ = y;
    });
}

/// A child moved back under the parent it was released from, written, and
/// then released with that parent: its limbo carried the packet of its
/// first release, and after the commit a read of it lost the write.
#[test]
fn a_move_inside_a_subtree_released_later_keeps_its_write() {
    let (root, a, b, c) = (
        Node::new(0u64),
        Node::new(0u64),
        Node::new(0u64),
        Node::new(0u64),
    );
    let top = Node::new(0u64);
    top.insert(&root).unwrap();
    root.insert(&a).unwrap();
    a.insert(&b).unwrap();
    b.insert(&c).unwrap();
    let _ = top.snapshot();
    top.iterate_commit(|tr| {
        tr.release(&b, &c).unwrap();
        tr.insert_online(&a, &c).unwrap();
        tr[&c] += 1;
        tr.release(&root, &a).unwrap();
    });
    assert_eq!(c.read(), 1);
    assert_eq!(a.snapshot()[&c], 1);
}

/// An online insert of a node that is only below a node released earlier
/// in the attempt unbundled it through that node's limbo, which dooms the
/// attempt, every attempt (a livelock). It is inserted as `insert` does.
#[test]
fn an_online_insert_below_a_released_node_commits() {
    within("release, then insert_online of a grandchild", || {
        let (root, a, b) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
        root.insert(&a).unwrap();
        a.insert(&b).unwrap();
        let _ = root.snapshot();
        let (_, stats) = root.iterate_commit_with_stats(|tr| {
            tr.release(&root, &a).unwrap();
            tr.insert_online(&root, &b).unwrap();
            assert!(!tr.contains(&b), "inserted as by `insert`");
        });
        assert_eq!(stats.retries, 0);
        b.iterate_commit(|tr| tr[&b] += 1);
        let shot = root.snapshot();
        assert_eq!(shot[&b], 1);
        assert!(!shot.contains(&a));
        assert_eq!(a.snapshot()[&b], 1);
    });
}

/// A node moved back under its parent, the parent then released, and the
/// node moved out of it again: the released parent's packet kept a second
/// copy of the node, which after the commit was what a read of the node
/// found (its limbo named that parent): the last write was lost.
#[test]
fn a_node_moved_out_of_a_released_subtree_keeps_one_copy() {
    let (root, mid, leaf) = (Node::new(0u64), Node::new(0u64), Node::new(0u64));
    root.insert(&mid).unwrap();
    mid.insert(&leaf).unwrap();
    let _ = root.snapshot();
    root.iterate_commit(|tr| {
        tr.release(&mid, &leaf).unwrap();
        tr.insert_online(&mid, &leaf).unwrap();
        tr[&leaf] += 1;
        tr.release(&root, &mid).unwrap();
        tr.insert_online(&root, &leaf).unwrap();
        tr[&leaf] += 1;
    });
    assert_eq!(leaf.read(), 2);
    assert_eq!(root.snapshot()[&leaf], 2);
    assert!(!mid.snapshot().contains(&leaf) || mid.snapshot()[&leaf] == 2);
}

/// Releasing the edge that held a hard-linked node's packet, while the
/// node stays listed under another parent in the tree: the node was listed
/// but in no slot, unreadable for the rest of the attempt.
#[test]
fn a_hard_linked_node_stays_readable_after_releasing_one_edge() {
    let (root, a, b, x) = (
        Node::new(0u64),
        Node::new(0u64),
        Node::new(0u64),
        Node::new(0u64),
    );
    root.insert(&a).unwrap();
    root.insert(&b).unwrap();
    a.insert(&x).unwrap();
    b.insert(&x).unwrap();
    let _ = root.snapshot();
    root.iterate_commit(|tr| {
        tr.release(&a, &x).unwrap();
        assert!(tr.contains(&x), "still below b");
        tr[&x] += 1;
    });
    assert_eq!(x.read(), 1);
    assert_eq!(root.snapshot()[&x], 1);
    assert_eq!(b.snapshot()[&x], 1);
}

/// Two hard links met below already collected siblings: the bundle of
/// `mid` (children `a`, `b`, `c`, `d`; `a → b` and `c → d` are the other
/// edges of `b` and `d`) collected `a` with `b`'s packet inside, then took
/// `b` out of `a` (an unbundle through `a`), so its own phase 3 failed on
/// `a`; the next round repaired `a` and broke `c` the same way, and so on:
/// the snapshot of `top` never returned. It hung on 4369f81; a node whose
/// packet lies in a collected sibling is now a collision (a void slot).
#[test]
fn a_bundle_does_not_take_a_hard_link_out_of_a_collected_sibling() {
    within("snapshot over two hard links", || {
        let n: Vec<Node<u64>> = (0..6).map(|i| Node::named(format!("n{i}"), i)).collect();
        let (top, mid, a, b, c, d) = (&n[0], &n[1], &n[2], &n[3], &n[4], &n[5]);
        a.insert(b).unwrap();
        mid.insert(a).unwrap();
        mid.insert(b).unwrap();
        top.insert(a).unwrap();
        c.insert(d).unwrap();
        mid.insert(c).unwrap();
        top.insert(mid).unwrap();
        mid.insert(d).unwrap();
        d.iterate_commit(|tr| tr[d] += 1000);
        let shot = top.snapshot();
        assert_eq!((shot[a], shot[b], shot[c], shot[d]), (2, 3, 4, 1005));
        assert_eq!(shot.children(mid).unwrap().len(), 4);
    });
}

/// An online insert of a node whose subtree shares a node with the tree (a
/// hard link) pulled in a second copy of that node: the working tree held
/// it twice, a write went to one copy and the attempt's snapshot found the
/// other (failed on 4369f81: `tr.snapshot()[&shared]` was 0 after `+= 1`).
/// The copy the tree holds stays; the pulled one is a void slot.
#[test]
fn an_online_insert_does_not_pull_a_second_copy_of_a_shared_node() {
    let name = |s: &str| Node::named(s, 0u64);
    let (root, a, b, other, shared) = (
        name("root"),
        name("a"),
        name("b"),
        name("other"),
        name("shared"),
    );
    other.insert(&shared).unwrap();
    root.insert(&a).unwrap();
    b.iterate_commit(|tr| tr.insert_online(&b, &a).unwrap());
    b.iterate_commit(|tr| tr.insert(&a, &shared).unwrap());
    root.iterate_commit(|tr| {
        if tr.attempt() == 0 {
            // `shared` complete inside `other` (this attempt is lost).
            let _ = other.snapshot();
        }
        tr.insert_online(&root, &other).unwrap();
        tr[&shared] += 1;
        assert_eq!(tr[&shared], 1);
        assert_eq!(tr.snapshot()[&shared], 1);
    });
    assert_eq!(shared.read(), 1);
    let shot = root.snapshot();
    assert_eq!(
        (shot[&shared], shot.children(&other).unwrap().len()),
        (1, 1)
    );
}

/// A closure that inserts a sibling online and then snapshots the common
/// parent, on every attempt: the snapshot's bundle takes the sibling out of
/// the attempt's limbo, so no attempt could commit, and the transaction
/// retried forever (4369f81). It is now reported like a nested commit into
/// the enclosing tree: a panic naming both nodes, `NestedConflict` (with
/// `cause: NestedCause::Snapshot`) from the `try_` form.
#[test]
fn a_snapshot_that_takes_back_an_online_insert_is_reported() {
    within("insert_online + snapshot of the parent", || {
        let (top, mine, sib) = (
            Node::named("top", 0u64),
            Node::named("mine", 0u64),
            Node::named("sib", 0u64),
        );
        top.insert(&mine).unwrap();
        top.insert(&sib).unwrap();
        let r = mine.try_iterate_commit(|tr| {
            tr.insert_online(&mine, &sib)?;
            tr[&sib] += 1;
            let _ = top.snapshot();
            Ok::<(), TreeError>(())
        });
        assert_snapshot_report(r, "mine", "top");
        // Nothing of it committed, and the tree is whole.
        assert_eq!(sib.read(), 0);
        assert_eq!(top.snapshot().children(&top).unwrap().len(), 2);
        // Taken before the transaction, the same snapshot is fine.
        let _ = top.snapshot();
        mine.iterate_commit(|tr| {
            tr.insert_online(&mine, &sib).unwrap();
            tr[&sib] += 1;
        });
        assert_eq!(sib.read(), 1);
    });
}

/// A transaction released a child (`seven`) from a node (`three`) inside a
/// subtree it then released (`four`), and inserted online a subtree
/// (`two`) that also holds `three` (a hard link). An attempt doomed by a
/// nested commit reads the pulled subtree without colliding with its own
/// limbo (it installs none): its view listed `seven` under `three` again,
/// the committed copy, though the attempt had released it (failed on
/// af28916). Now a pulled copy of a node living in a released subtree is
/// void, in every attempt, as a direct insert of it is.
#[test]
fn a_pulled_subtree_never_shows_a_released_subtree_node_as_committed() {
    within("release below a released node + insert_online", || {
        let name = |s: &str| Node::named(s, 0u64);
        let (two, zero, three, seven, six, four) = (
            name("two"),
            name("zero"),
            name("three"),
            name("seven"),
            name("six"),
            name("four"),
        );
        two.insert(&zero).unwrap();
        three.insert(&seven).unwrap();
        six.insert(&four).unwrap();
        zero.insert(&three).unwrap();
        four.insert(&three).unwrap();
        let _ = six.snapshot();
        six.iterate_commit(|tr| {
            if tr.attempt() == 0 {
                seven.iterate_commit(|t| t[&seven] += 1000); // dooms this attempt
            }
            tr.release(&three, &seven).unwrap();
            tr.release(&six, &four).unwrap();
            tr.insert_online(&six, &two).unwrap();
            let listed = tr.children(&three).map_or(0, |c| c.len());
            assert_eq!(
                listed,
                0,
                "attempt {}: a released child listed",
                tr.attempt()
            );
            tr[&two] += 1;
        });
        for shot in [six.snapshot(), four.snapshot(), two.snapshot()] {
            assert_eq!(shot.children(&three).unwrap().len(), 0);
        }
        assert_eq!((two.read(), seven.read()), (1, 1000));
        assert!(six.snapshot().contains(&two) && !six.snapshot().contains(&four));
    });
}

/// `chain`: `top → a → b → hl` and `top → c → hl`: `hl` is hard-linked
/// under `b` and `c`.
fn hard_linked_under_two_branches() -> [Node<u64>; 5] {
    let [top, a, b, c, hl] = ["top", "a", "b", "c", "hl"].map(|s| Node::named(s, 0u64));
    top.insert(&c).unwrap();
    top.insert(&a).unwrap();
    a.insert(&b).unwrap();
    b.insert(&hl).unwrap();
    c.insert(&hl).unwrap();
    [top, a, b, c, hl]
}

/// A writer on `b` whose closure snapshots the ancestor `top` on every
/// attempt: that snapshot's bundle collects `hl` under `c` first, taking
/// its packet out of `b`'s, so `b`'s base changed on every attempt (same
/// state, new packet) and the writer never committed: a livelock of one
/// thread (failed on af28916 as a hang). The base is now read again and
/// accepted when it holds the same state (`Transaction::rebase`).
#[test]
fn an_ancestor_snapshot_across_a_hard_link_lets_the_writer_commit() {
    within("ancestor snapshot across a hard link", || {
        let [top, _a, b, _c, hl] = hard_linked_under_two_branches();
        let (_, stats) = b.iterate_commit_with_stats(|tr| {
            tr[&b] += 1;
            let shot = top.snapshot();
            assert_eq!(shot[&hl], 0);
        });
        assert_eq!(stats.retries, 0);
        assert_eq!(b.read(), 1);
        // A write below the hard link too, and a real conflict still loses.
        let (_, stats) = b.iterate_commit_with_stats(|tr| {
            tr[&hl] += 1;
            let _ = top.snapshot();
            if tr.attempt() == 0 {
                hl.iterate_commit(|t| t[&hl] += 100);
            }
        });
        assert_eq!(stats.retries, 1);
        let shot = top.snapshot();
        assert_eq!((shot[&b], shot[&hl]), (1, 101));
    });
}

/// The same with a dynamic operation after the snapshot: the release's
/// validation found the base changed and doomed the attempt, every attempt
/// (failed on af28916 as a hang). A plain insert, whose cycle check runs at
/// the commit, likewise.
#[test]
fn an_ancestor_snapshot_across_a_hard_link_lets_a_move_commit() {
    within("ancestor snapshot across a hard link + move", || {
        let [top, a, b, _c, hl] = hard_linked_under_two_branches();
        let (x, y) = (Node::named("x", 0u64), Node::named("y", 0u64));
        b.insert(&x).unwrap();
        b.iterate_commit(|tr| {
            let _ = top.snapshot();
            tr.release(&b, &x).unwrap();
            tr.insert(&hl, &x).unwrap();
        });
        b.iterate_commit(|tr| {
            let _ = top.snapshot();
            tr.insert(&hl, &y).unwrap();
        });
        let shot = top.snapshot();
        assert_eq!(shot.children(&hl).unwrap().len(), 2);
        assert_eq!(shot.children(&b).unwrap().len(), 1);
        assert!(shot.contains(&a));
    });
}

/// A transaction pulled `zero` (listed under `one` too) in under `five`,
/// released `five`, then inserted `one` online: bundling `one` took
/// `zero`'s packet out of the released subtree, which is this attempt's
/// limbo, and doomed the attempt, every attempt (a livelock; failed on
/// af28916). A node of a released subtree is now left where it is, as a
/// node of the tree is: void in the pulled subtree, bundled in by the next
/// snapshot.
#[test]
fn an_online_insert_leaves_a_released_subtree_node_in_place() {
    within(
        "insert_online sharing a node with a released subtree",
        || {
            let [zero, four, one, three, five] =
                ["zero", "four", "one", "three", "five"].map(|s| Node::named(s, 0u64));
            zero.insert(&four).unwrap();
            one.insert(&zero).unwrap();
            three.insert(&five).unwrap();
            let (_, stats) = three.iterate_commit_with_stats(|tr| {
                tr.insert_online(&five, &zero).unwrap();
                tr[&four] += 1;
                tr.release(&three, &five).unwrap();
                tr.insert_online(&three, &one).unwrap();
                tr[&one] += 1;
            });
            assert_eq!(stats.retries, 0);
            let shot = three.snapshot();
            assert_eq!((shot[&one], shot[&four]), (1, 1));
            assert!(!shot.contains(&five));
            assert_eq!(five.snapshot().children(&five).unwrap().len(), 1);
            assert_eq!(five.snapshot()[&four], 1);
        },
    );
}

/// The same ancestor snapshot after the attempt has put a node in limbo
/// (a release): such an attempt cannot take a re-bundled base (another
/// transaction's touch of its root looks the same), so it loses on every
/// attempt. It retried forever, silently (af28916); it is now reported as
/// a closure's snapshot that invalidates its own transaction
/// (`NestedCause::Snapshot`), and taken first, the snapshot is fine.
#[test]
fn an_ancestor_snapshot_across_a_hard_link_after_a_release_is_reported() {
    within("release, then ancestor snapshot across a hard link", || {
        let [top, _a, b, _c, _hl] = hard_linked_under_two_branches();
        let x = Node::named("x", 0u64);
        b.insert(&x).unwrap();
        let r = b.try_iterate_commit(|tr| {
            tr.release(&b, &x)?;
            let _ = top.snapshot();
            Ok::<(), TreeError>(())
        });
        assert_snapshot_report(r, "b", "top");
        assert_eq!(b.snapshot().children(&b).unwrap().len(), 2);
        b.iterate_commit(|tr| {
            let _ = top.snapshot();
            tr.release(&b, &x).unwrap();
        });
        assert_eq!(b.snapshot().children(&b).unwrap().len(), 1);
    });
}

/// Three hard links (`zero` under `five`, `six` and `one`; `four` under
/// `six` and `one`; `one` under `two` and `three`). A transaction on `one`
/// whose attempt is invalidated by a nested commit (it re-bundles `four`
/// into `six`) inserts `six` online: the pull's bundle of `six` left every
/// node of the inserting tree where the attempt's (stale) view had it, so
/// it voided `four`'s slot in `six`, the only copy of `four`'s packet,
/// while `four`'s wrapper still named `six`. Every later bundle of `four`
/// failed: the next snapshot of `one` never returned (a hang on af28916).
/// A node whose wrapper names the node being bundled is now collected from
/// its slot.
#[test]
fn an_online_insert_bundle_keeps_a_packet_that_moved_into_the_child() {
    within(
        "online insert after a nested commit, three hard links",
        || {
            let n: Vec<Node<u64>> = (0..7).map(|i| Node::named(format!("n{i}"), 0u64)).collect();
            n[5].insert(&n[0]).unwrap();
            n[5].insert(&n[2]).unwrap();
            n[3].insert(&n[1]).unwrap();
            n[1].insert(&n[0]).unwrap();
            n[6].insert(&n[0]).unwrap();
            n[2].insert(&n[6]).unwrap();
            n[1].insert(&n[4]).unwrap();
            n[6].insert(&n[4]).unwrap();
            n[2].insert(&n[1]).unwrap();
            let (_, stats) = n[1].iterate_commit_with_stats(|tr| {
                if tr.attempt() == 0 {
                    n[5].iterate_commit(|t2| t2[&n[0]] += 1);
                }
                // `six` is `one`'s sibling under `two`: no cycle.
                tr.insert_online(&n[1], &n[6]).unwrap();
                tr[&n[4]] += 10;
            });
            assert!(stats.retries >= 1);
            let shot = n[5].snapshot();
            assert_eq!((shot[&n[0]], shot[&n[4]]), (1, 10));
            assert_eq!(shot.children(&n[1]).unwrap().len(), 3);
            assert_eq!(n[1].snapshot().children(&n[6]).unwrap().len(), 2);
        },
    );
}
