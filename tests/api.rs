//! The handles as a user of the crate meets them: identity `Hash` / `Ord`,
//! names in `Debug`, errors and panics.

use kame_stm::{Node, NodeRef, Place, TreeError};
use std::collections::{BTreeSet, HashMap};

#[test]
fn nodes_key_maps_by_identity() {
    let (a, b) = (Node::new(1.0_f64), Node::new(1.0_f64));
    let mut widgets: HashMap<Node<f64>, &str> = HashMap::new();
    widgets.insert(a.clone(), "dial a");
    widgets.insert(b.clone(), "dial b");
    assert_eq!(widgets.len(), 2, "equal payloads, distinct nodes");
    assert_eq!(widgets[&a], "dial a");
    // A NodeRef of the same node is the same key in a map of NodeRefs.
    let refs: HashMap<NodeRef, usize> = [(a.to_ref(), 0), (b.to_ref(), 1)].into();
    assert_eq!(refs[&NodeRef::from(&b)], 1);
    assert!(a.to_ref() == a && a == a.to_ref() && a.to_ref() != b);
    let ordered: BTreeSet<Node<f64>> = [a.clone(), b.clone(), a.clone()].into();
    assert_eq!(ordered.len(), 2);
    assert_eq!(a.cmp(&b), a.to_ref().cmp(&b.to_ref()));
}

#[test]
fn debug_shows_names() {
    let heater = Node::named("heater", 0.0_f64);
    let dbg = format!("{heater:?}");
    assert!(dbg.starts_with("Node<f64> `heater` @0x"), "{dbg}");
    assert!(format!("{:?}", heater.to_ref()).starts_with("NodeRef<f64> `heater` @"));
    let anon = format!("{:?}", Node::new(0u8));
    assert!(anon.starts_with("Node<u8>@0x"), "{anon}");
    let tr_dbg = format!("{:?}", heater.iterate_commit(|_| {}));
    assert!(tr_dbg.contains("heater"), "{tr_dbg}");
    heater.iterate_commit(|tr| {
        let d = format!("{tr:?}");
        assert!(d.contains("heater") && d.contains("attempt"), "{d}");
    });
}

#[test]
fn errors_name_the_node_and_the_place() {
    let root = Node::named("cryostat", ());
    let heater = Node::named("heater", 0.0_f64);
    let e = root.snapshot().get(&heater).unwrap_err();
    assert_eq!(e.place, Place::Snapshot);
    assert_eq!(e.node.name.as_deref(), Some("heater"));
    assert_eq!(
        e.to_string(),
        "node `heater` (f64) is not in this snapshot's subtree"
    );
    root.iterate_commit(|tr| {
        let e = tr.get(&heater).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `heater` (f64) is not in this transaction's subtree"
        );
    });
    let r = root.try_iterate_commit(|tr| tr.insert(&heater, &root));
    match r {
        Err(TreeError::NotFound(e)) => {
            assert_eq!(e.place, Place::Transaction);
            assert_eq!(e.type_name(), "f64");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn index_panics_name_the_node() {
    let root = Node::named("cryostat", ());
    let heater = Node::named("heater", 0.0_f64);
    let msg = |r: std::thread::Result<()>| -> String {
        let p = r.expect_err("must panic");
        p.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let in_tr = msg(std::panic::catch_unwind(|| {
        root.iterate_commit(|tr| tr[&heater] = 1.0);
    }));
    assert_eq!(
        in_tr,
        "node `heater` (f64) is not in this transaction's subtree"
    );
    let in_shot = msg(std::panic::catch_unwind(|| {
        let _ = root.snapshot()[&heater];
    }));
    assert_eq!(
        in_shot,
        "node `heater` (f64) is not in this snapshot's subtree"
    );
    // The panic abandoned the transaction: nothing committed, nothing held.
    assert_eq!(heater.read(), 0.0);
    root.iterate_commit(|_| {});
}

#[test]
fn names_survive_the_tree() {
    let root = Node::new(());
    root.insert(&Node::named("ch0", 1u8)).unwrap();
    let shot = root.snapshot();
    let child = shot.children(&root).unwrap().next().unwrap();
    assert_eq!(child.name(), Some("ch0"));
    assert_eq!(child.node_name().to_string(), "node `ch0` (u8)");
    assert_eq!(root.name(), None);
}
