//! Dynamic configurations: insert, online insert, release and moves
//! against commits, snapshots and each other (`explore::dynamic`).

use super::dynamic::Edit::{Insert, InsertOnline, Release, Write};
use super::*;

const LIMIT: usize = 2_000_000;

/// Nodes of `two_level` and `two_level_detached`.
const P: usize = 0;
const C1: usize = 1;
const C2: usize = 2;

/// P -> {C2}, bundled, and C1 on its own: nodes [P, C1, C2]. TLC's dynamic
/// configurations start so (`Detached = {"C1"}`).
fn two_level_detached() -> Vec<Node<u32>> {
    let p = Node::new(0u32);
    let (c1, c2) = (Node::new(0u32), Node::new(0u32));
    p.insert(&c2).unwrap();
    let _ = p.snapshot();
    vec![p, c1, c2]
}

/// G -> {P -> {C1}, Q}, bundled: nodes [G, P, C1, Q].
fn two_parents() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let (p, c1, q) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
    p.insert(&c1).unwrap();
    g.insert(&p).unwrap();
    g.insert(&q).unwrap();
    let _ = g.snapshot();
    vec![g, p, c1, q]
}

/// Two separate nodes A and B: nodes [A, B].
fn two_roots() -> Vec<Node<u32>> {
    vec![Node::new(0u32), Node::new(0u32)]
}

fn dyn_tx(root: usize, edits: &[dynamic::Edit]) -> OpKind {
    OpKind::Dyn {
        root,
        edits: edits.to_vec(),
    }
}

fn cfg(name: &'static str, tree: fn() -> Vec<Node<u32>>, programs: Vec<Vec<OpKind>>) -> Config {
    Config {
        name,
        tree,
        programs,
        pairs: vec![],
        classes: vec![],
    }
}

fn ins() -> OpKind {
    dyn_tx(P, &[InsertOnline(P, C1), Write(C1)])
}

fn rel() -> OpKind {
    dyn_tx(P, &[Release(P, C1)])
}

/// Release C1 and insert it again online, writing it: TLC's "reins".
fn reins() -> OpKind {
    dyn_tx(P, &[Release(P, C1), InsertOnline(P, C1), Write(C1)])
}

pub(super) fn configs() -> Vec<Config> {
    vec![
        cfg(
            "2L release(P, C1) vs leaf(C1)",
            two_level,
            vec![vec![rel()], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L release(P, C1) vs root tx(P)",
            two_level,
            vec![vec![rel()], vec![tx(P, &[P, C2])]],
        ),
        cfg(
            "2L release(P, C1) vs snapshot(P)",
            two_level,
            vec![vec![rel()], vec![OpKind::Snap(P)]],
        ),
        cfg(
            "2L' insert_online(P, C1) + write vs leaf(C1)",
            two_level_detached,
            vec![vec![ins()], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L' insert(P, C1) vs leaf(C1)",
            two_level_detached,
            vec![vec![dyn_tx(P, &[Insert(P, C1)])], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L' insert_online(P, C1) + write vs snapshot(P)",
            two_level_detached,
            vec![vec![ins()], vec![OpKind::Snap(P)]],
        ),
        cfg(
            "2L' insert_online; release (TLC's dyn jobs) vs leaf(C1)",
            two_level_detached,
            vec![vec![ins(), rel()], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L release + insert_online + write (reins) vs leaf(C1)",
            two_level,
            vec![vec![reins()], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L reins vs root tx(P)",
            two_level,
            vec![vec![reins()], vec![tx(P, &[P, C2])]],
        ),
        cfg(
            "2L release(P, C1) vs reins (two dynamic threads)",
            two_level,
            vec![vec![rel()], vec![reins()]],
        ),
        cfg(
            "2L' insert_online vs insert_online of C1 (two dynamic threads)",
            two_level_detached,
            vec![vec![ins()], vec![ins()]],
        ),
        cfg(
            "3L move C1 from P to Q (release + insert) vs leaf(C1)",
            two_parents,
            vec![
                vec![dyn_tx(0, &[Release(1, 2), Insert(3, 2)])],
                vec![tx(2, &[2])],
            ],
        ),
        cfg(
            "3L move C1 from P to Q online + write vs snapshot(P)",
            two_parents,
            vec![
                vec![dyn_tx(0, &[Release(1, 2), InsertOnline(3, 2), Write(2)])],
                vec![OpKind::Snap(1)],
            ],
        ),
        cfg(
            "two roots: insert(A, B) vs insert(B, A) (a cycle race)",
            two_roots,
            vec![
                vec![dyn_tx(0, &[Insert(0, 1), Write(0)])],
                vec![dyn_tx(1, &[Insert(1, 0), Write(1)])],
            ],
        ),
    ]
}

#[cfg(not(feature = "no-privilege"))]
#[test]
fn dynamic_configurations_hold_every_invariant() {
    let mut failures = Vec::new();
    for c in configs() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| explore(&c, LIMIT)));
        match r {
            Ok(r) => {
                println!("{r}");
                let dynamic_steps: Vec<String> = r
                    .steps
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with("body")
                            || k.starts_with("commit_locked")
                            || k.starts_with("wait_owner")
                    })
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                println!("    {}", dynamic_steps.join(", "));
                if r.livelocks != 0 {
                    failures.push(format!(
                        "{}: livelock\n{}",
                        c.name,
                        r.lasso.unwrap_or_default()
                    ));
                }
                assert!(
                    r.steps.get("body").copied().unwrap_or(0) > 0,
                    "{}: no body ran",
                    c.name
                );
            }
            Err(p) => failures.push(format!(
                "{}: {}",
                c.name,
                p.downcast_ref::<String>().cloned().unwrap_or_default()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
