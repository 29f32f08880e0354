//! A small, Miri-sized tour of the code behind the crate's `unsafe`: the
//! atomic `Arc` cell of `src/sync.rs` (load, CAS, failed CAS, deferred
//! release: batches freed by the retiring thread once the epoch collector
//! clears them, or handed to the collector when a thread ends), the
//! unsized packets of `src/packet.rs` (payloads stored inline or shared,
//! copied on write, moved between a node and its ancestors by bundling and
//! unbundling), and the linkage's drop, which hands bundled packets back
//! to living children.
//!
//! `.ci/run` runs this file under Miri (`cargo +nightly miri test --test
//! miri`), where undefined behaviour, a use after free or a leak fails it;
//! it also runs in the ordinary `cargo test`. Sizes are kept tiny: Miri is
//! about a thousand times slower than native code.

mod common;

use common::{Counted, Tracker};
use kame_stm::{Node, TreeError, collect_garbage};

#[test]
fn commit_snapshot_and_failed_cas_single_thread() {
    let live = Tracker::new();
    {
        let n = Node::new(Counted::new(1, &live));
        let old = n.snapshot();
        n.iterate_commit(|tr| tr[&n].x += 1);
        // The old snapshot still reads the replaced version.
        assert_eq!(old[&n].x, 1);
        assert_eq!(n.snapshot()[&n].x, 2);
        // A transaction whose closure commits to its own node first loses
        // its own CAS once (a failed compare_exchange), then commits.
        let mut first = true;
        n.iterate_commit(|tr| {
            if std::mem::take(&mut first) {
                n.iterate_commit(|inner| inner[&n].x += 10);
            }
            tr[&n].x += 1;
        });
        assert_eq!(n.read().x, 13);
    }
    assert_eq!(live.settle(), 0, "a payload copy leaked");
}

#[test]
fn bundle_unbundle_and_dynamic_tree() -> Result<(), TreeError> {
    let live = Tracker::new();
    {
        let root = Node::new(0u8);
        let group = Node::new(String::from("group"));
        let (a, b) = (
            Node::new(Counted::new(1, &live)),
            Node::new(Counted::new(2, &live)),
        );
        root.insert(&group)?;
        group.insert(&a)?;
        group.insert(&b)?;
        // Bundling: the root's snapshot absorbs the children's packets.
        let s = root.snapshot();
        assert_eq!((s[&a].x, s[&b].x), (1, 2));
        // Unbundling: a leaf commit takes its packet back out.
        a.iterate_commit(|tr| tr[&a].x += 1);
        root.iterate_commit(|tr| {
            tr[&b].x += 1;
            tr.swap(&group, &a, &b).expect("both are children");
        });
        let s = root.snapshot();
        assert_eq!((s[&a].x, s[&b].x), (2, 3));
        // Release and online insert in one transaction.
        root.try_iterate_commit(|tr| {
            tr.release(&group, &a)?;
            tr.insert_online(&root, &a)?;
            tr[&a].x += 1;
            Ok::<(), TreeError>(())
        })?;
        assert_eq!(root.snapshot()[&a].x, 3);
        assert!(!group.snapshot().contains(&a));
        // Drop the tree while the leaves live on: the linkage's drop hands
        // their bundled packets back.
        drop(root);
        drop(group);
        assert_eq!((a.read().x, b.read().x), (3, 3));
    }
    assert_eq!(live.settle(), 0, "a payload copy leaked");
    Ok(())
}

#[test]
fn two_threads_race_on_one_tree() {
    let root = Node::new(0u32);
    let leaves: Vec<Node<u32>> = (0..2).map(|_| Node::new(0)).collect();
    for l in &leaves {
        root.insert(l).unwrap();
    }
    std::thread::scope(|s| {
        for (i, leaf) in leaves.iter().enumerate() {
            let root = &root;
            s.spawn(move || {
                for _ in 0..3 {
                    if i == 0 {
                        root.iterate_commit(|tr| tr[root] += 1);
                    }
                    leaf.iterate_commit(|tr| tr[leaf] += 1);
                    let shot = root.snapshot();
                    assert!(shot[leaf] <= 3);
                }
            });
        }
    });
    let s = root.snapshot();
    assert_eq!((s[&root], s[&leaves[0]], s[&leaves[1]]), (3, 3, 3));
    collect_garbage();
}

/// The retiring thread's own reclamation (`src/sync.rs`, `local`): enough
/// commits on two threads to seal several batches of retired versions on
/// each, freed by their own thread once the collector clears them, and
/// what a thread still holds when it ends handed to the collector.
#[test]
fn retired_versions_are_freed_by_their_own_thread() {
    let live = Tracker::new();
    {
        let nodes: Vec<Node<Counted>> = (0..2).map(|i| Node::new(Counted::new(i, &live))).collect();
        std::thread::scope(|s| {
            for node in &nodes {
                s.spawn(move || {
                    for _ in 0..150 {
                        node.iterate_commit(|tr| tr[node].x += 1);
                    }
                });
            }
        });
        for _ in 0..150 {
            nodes[0].iterate_commit(|tr| tr[&nodes[0]].x += 1);
        }
        assert_eq!((nodes[0].read().x, nodes[1].read().x), (300, 151));
    }
    assert_eq!(live.settle(), 0, "a payload copy leaked");
}
