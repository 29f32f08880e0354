//! Configuration save / load (feature `serde`): a round trip through JSON
//! text, and each error a document can meet.

use kame_stm::Node;
use kame_stm::config::{Config, ConfigError, Registry};

struct Rig {
    root: Node<()>,
    setpoint: Node<f64>,
    label: Node<String>,
    gains: Node<Vec<f64>>,
    aux: Node<()>,
    volts: Node<(u32, bool)>,
    unnamed: Node<f64>,
    unregistered: Node<char>,
}

fn rig() -> Rig {
    let r = Rig {
        root: Node::named("cryostat", ()),
        setpoint: Node::named("setpoint", 4.2),
        label: Node::named("label", "run 7".to_owned()),
        gains: Node::named("gains", vec![1.0, 0.5, 0.0]),
        aux: Node::named("aux", ()),
        volts: Node::named("V", (3, true)),
        unnamed: Node::new(9.0),
        unregistered: Node::named("mode", 'a'),
    };
    for n in [&r.setpoint, &r.unnamed] {
        r.root.insert(n).unwrap();
    }
    r.root.insert(&r.label).unwrap();
    r.root.insert(&r.gains).unwrap();
    r.root.insert(&r.aux).unwrap();
    r.root.insert(&r.unregistered).unwrap();
    r.aux.insert(&r.volts).unwrap();
    r
}

fn registry() -> Registry {
    Registry::new()
        .with::<f64>()
        .with::<String>()
        .with::<Vec<f64>>()
        .with::<(u32, bool)>()
        .with::<()>()
}

#[test]
fn round_trip_through_json_restores_every_named_node() {
    let r = rig();
    let reg = registry();
    let saved = Config::save(&r.root.snapshot(), &reg).unwrap();
    let keys: Vec<&str> = saved.nodes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "cryostat",
            "cryostat/aux",
            "cryostat/aux/V",
            "cryostat/gains",
            "cryostat/label",
            "cryostat/setpoint"
        ],
        "named nodes of registered types only, keyed by path"
    );
    let text = serde_json::to_string_pretty(&saved).unwrap();
    assert!(text.contains("\"type\": \"f64\""), "{text}");

    // Change everything, then load the document back.
    r.root.iterate_commit(|tr| {
        tr[&r.setpoint] = 1.5;
        tr[&r.label].push_str(" (edited)");
        tr[&r.gains].clear();
        tr[&r.volts] = (0, false);
        tr[&r.unnamed] = 10.0;
    });
    let doc: Config = serde_json::from_str(&text).unwrap();
    assert_eq!(doc, saved);
    let shot = doc.apply(&r.root, &reg).unwrap();
    assert_eq!(shot[&r.setpoint], 4.2);
    assert_eq!(shot[&r.label], "run 7");
    assert_eq!(shot[&r.gains], [1.0, 0.5, 0.0]);
    assert_eq!(shot[&r.volts], (3, true));
    assert_eq!(
        shot[&r.unnamed], 10.0,
        "unnamed nodes are not in the document"
    );
    assert_eq!(Config::save(&shot, &reg).unwrap(), saved);
}

/// Every `f64` comes back bit for bit through JSON text. Without
/// serde_json's `float_roundtrip` its parser may be one ulp off: the
/// instrument example's saved magnet field came back as
/// 0.9901698350690552 instead of ...553 (CI, session 5).
#[test]
fn floats_round_trip_exactly() {
    let root = Node::named("root", ());
    let x = Node::named("x", 0.0f64);
    root.insert(&x).unwrap();
    let reg = Registry::new().with::<f64>().with::<()>();
    let mut v = 0.9901698350690553f64;
    for _ in 0..2000 {
        x.iterate_commit(|tr| tr[&x] = v);
        let saved = Config::save(&root.snapshot(), &reg).unwrap();
        let text = serde_json::to_string(&saved).unwrap();
        x.iterate_commit(|tr| tr[&x] = -1.0);
        let doc: Config = serde_json::from_str(&text).unwrap();
        let shot = doc.apply(&root, &reg).unwrap();
        assert_eq!(
            shot[&x].to_bits(),
            v.to_bits(),
            "{v:e} came back as {:e}",
            shot[&x]
        );
        // The next value: spread over magnitudes and mantissas.
        v = f64::from_bits(
            v.to_bits()
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 2,
        );
    }
}

#[test]
fn a_subtree_saves_relative_to_its_own_root() {
    let r = rig();
    let saved = Config::save(&r.aux.snapshot(), &registry()).unwrap();
    assert_eq!(saved.nodes.keys().collect::<Vec<_>>(), ["aux", "aux/V"]);
}

/// Applies `edit` of a saved document and checks that it fails with
/// `want` and that nothing was committed.
fn apply_fails(edit: impl FnOnce(&mut serde_json::Value), want: impl Fn(&ConfigError) -> bool) {
    let r = rig();
    let reg = registry();
    let saved = Config::save(&r.root.snapshot(), &reg).unwrap();
    let mut v = serde_json::to_value(&saved).unwrap();
    edit(&mut v);
    r.root.iterate_commit(|tr| tr[&r.setpoint] = 1.5);
    let before = r.root.snapshot();
    let doc: Config = serde_json::from_value(v).unwrap();
    let err = doc.apply(&r.root, &reg).unwrap_err();
    assert!(want(&err), "unexpected error: {err:?} ({err})");
    assert!(
        r.root.snapshot().ptr_eq(&before),
        "a failed apply committed"
    );
    assert_eq!(r.setpoint.read(), 1.5);
}

#[test]
fn unknown_name_is_an_error_and_commits_nothing() {
    apply_fails(
        |v| {
            let e = v["nodes"]["cryostat/setpoint"].clone();
            v["nodes"]["cryostat/heater"] = e;
        },
        |e| matches!(e, ConfigError::UnknownName { path } if path == "cryostat/heater"),
    );
}

#[test]
fn type_mismatch_is_an_error_and_commits_nothing() {
    apply_fails(
        |v| {
            v["nodes"]["cryostat/label"]["type"] = "f64".into();
            v["nodes"]["cryostat/label"]["value"] = 1.0.into();
        },
        |e| {
            matches!(e, ConfigError::TypeMismatch { path, expected, found }
                if path == "cryostat/label" && *expected == "alloc::string::String" && found == "f64")
        },
    );
}

#[test]
fn a_value_that_does_not_fit_is_an_error() {
    apply_fails(
        |v| v["nodes"]["cryostat/aux/V"]["value"] = "three".into(),
        |e| matches!(e, ConfigError::Value { path, .. } if path == "cryostat/aux/V"),
    );
}

#[test]
fn unregistered_type_is_an_error_on_apply() {
    let r = rig();
    let doc: Config = serde_json::from_value(serde_json::json!({
        "nodes": { "cryostat/mode": { "type": "char", "value": "b" } }
    }))
    .unwrap();
    let err = doc.apply(&r.root, &registry()).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Unregistered { path, type_name: "char" } if path == "cryostat/mode"),
        "{err:?}"
    );
    assert_eq!(r.unregistered.read(), 'a');
}

#[test]
fn two_nodes_with_one_path_are_refused() {
    let root = Node::named("r", ());
    root.insert(&Node::named("x", 1.0_f64)).unwrap();
    root.insert(&Node::named("x", 2.0_f64)).unwrap();
    let err = Config::save(&root.snapshot(), &registry()).unwrap_err();
    assert_eq!(err, ConfigError::DuplicatePath { path: "r/x".into() });
}
