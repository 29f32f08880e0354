//! Dynamic configurations: insert, online insert, release and moves
//! against commits, snapshots and each other (`explore::dynamic`).

use super::dynamic::Edit::{Abort, Insert, InsertOnline, Release, Write};
use super::*;

const LIMIT: usize = 2_000_000;

/// Nodes of `two_level` and `two_level_detached`.
const P: usize = 0;
const C1: usize = 1;
const C2: usize = 2;

/// P -> {C2}, bundled, and C1 on its own: nodes [P, C1, C2]. TLC's dynamic
/// configurations start so (`Detached = {"C1"}`).
pub(super) fn two_level_detached() -> Vec<Node<u32>> {
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

/// G -> P -> {C2}, bundled into G, and C1 on its own: nodes [G, P, C1,
/// C2]. An insert at P then commits through an unbundle of P.
fn three_level_detached() -> Vec<Node<u32>> {
    let g = Node::new(0u32);
    let (p, c1, c2) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
    p.insert(&c2).unwrap();
    g.insert(&p).unwrap();
    let _ = g.snapshot();
    vec![g, p, c1, c2]
}

/// The diamond (G -> {P, Q}, P -> C, Q -> C, bundled: Q's packet inside
/// G's stays missing, C's packet is under P) and X on its own: nodes
/// [G, P, Q, C, X]. A seal at G keeps Q's missing slot as the base had it.
fn diamond_and_one() -> Vec<Node<u32>> {
    let mut nodes = diamond();
    nodes.push(Node::new(0u32));
    nodes
}

/// Two separate nodes A and B: nodes [A, B].
fn two_roots() -> Vec<Node<u32>> {
    vec![Node::new(0u32), Node::new(0u32)]
}

/// A -> {C}, and B on its own: nodes [A, B, C].
fn two_roots_one_child() -> Vec<Node<u32>> {
    let (a, b, c) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
    a.insert(&c).unwrap();
    let _ = a.snapshot();
    vec![a, b, c]
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

/// A thread that inserts C1 and releases it again for ever (no payload
/// writes: `OpKind::Again`), against each kind of other thread: none
/// starves (`explore::tests`, "endless threads").
#[cfg(not(feature = "no-privilege"))]
#[test]
#[ignore = "large: run in release"]
fn no_starvation_beside_an_endless_structure_editor() {
    let online = || dyn_tx(P, &[InsertOnline(P, C1)]);
    let plain = || dyn_tx(P, &[Insert(P, C1)]);
    let configs = vec![
        cfg(
            "2L' endless insert_online; release vs leaf(C1)",
            two_level_detached,
            vec![vec![online(), rel(), OpKind::Again], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L' endless insert_online; release vs snapshot(P)",
            two_level_detached,
            vec![vec![online(), rel(), OpKind::Again], vec![OpKind::Snap(P)]],
        ),
        cfg(
            "2L' endless insert_online; release vs root tx(P)",
            two_level_detached,
            vec![vec![online(), rel(), OpKind::Again], vec![tx(P, &[P, C2])]],
        ),
        cfg(
            "2L' endless insert; release vs leaf(C1)",
            two_level_detached,
            vec![vec![plain(), rel(), OpKind::Again], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L' endless insert; release vs snapshot(P)",
            two_level_detached,
            vec![vec![plain(), rel(), OpKind::Again], vec![OpKind::Snap(P)]],
        ),
    ];
    for r in run_all(configs) {
        super::tests::assert_no_starvation(r);
    }
}

/// Larger ones (`#[ignore]`d in the debug build).
#[cfg_attr(feature = "no-privilege", allow(dead_code))]
fn large_configs() -> Vec<Config> {
    vec![
        cfg(
            "diamond release(P, C) at P vs tx(Q) writing C",
            diamond,
            vec![vec![dyn_tx(1, &[Release(1, 3)])], vec![tx(2, &[2, 3])]],
        ),
        cfg(
            "2L' insert_online; release vs leaf(C1); leaf(C2) (TLC's KameStm_dyn roles)",
            two_level_detached,
            vec![vec![ins(), rel()], vec![tx(C1, &[C1]), tx(C2, &[C2])]],
        ),
        cfg(
            "2L' insert_online; release vs leaf(C1); root tx(P) (2 x 2)",
            two_level_detached,
            vec![vec![ins(), rel()], vec![tx(C1, &[C1]), tx(P, &[P, C2])]],
        ),
        cfg(
            "2L reins vs root tx(P) vs snapshot(P) (3 x 1)",
            two_level,
            vec![vec![reins()], vec![tx(P, &[P, C2])], vec![OpKind::Snap(P)]],
        ),
    ]
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
            "2L' insert(P, C1) vs leaf(C2) (the seal skips C2's stamp)",
            two_level_detached,
            vec![vec![dyn_tx(P, &[Insert(P, C1)])], vec![tx(C2, &[C2])]],
        ),
        cfg(
            "3L' insert(P, C1) at P bundled in G vs leaf(C2) (the seal after an unbundle)",
            three_level_detached,
            vec![vec![dyn_tx(1, &[Insert(1, 2)])], vec![tx(3, &[3])]],
        ),
        cfg(
            "3L' insert(P, C1) at P bundled in G vs snapshot(G) (the seal vs a bundle above)",
            three_level_detached,
            vec![vec![dyn_tx(1, &[Insert(1, 2)])], vec![OpKind::Snap(0)]],
        ),
        cfg(
            "diamond insert(G, X) vs leaf(C) (the seal keeps a missing slot of a hard link)",
            diamond_and_one,
            vec![vec![dyn_tx(0, &[Insert(0, 4)])], vec![tx(3, &[3])]],
        ),
        cfg(
            "2L' insert(P, C1) vs snapshot(P) (the seal vs a bundle)",
            two_level_detached,
            vec![vec![dyn_tx(P, &[Insert(P, C1)])], vec![OpKind::Snap(P)]],
        ),
        cfg(
            "2L' insert(P, C1) vs root tx(P) (the seal vs a commit)",
            two_level_detached,
            vec![vec![dyn_tx(P, &[Insert(P, C1)])], vec![tx(P, &[P, C2])]],
        ),
        cfg(
            "2L' insert; release (TLC's dyn_offline jobs) vs leaf(C1)",
            two_level_detached,
            vec![
                vec![dyn_tx(P, &[Insert(P, C1)]), rel()],
                vec![tx(C1, &[C1])],
            ],
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
            "3L' release(P, C1) at P vs reins at G (limbo of another root)",
            three_level_chain,
            vec![
                vec![dyn_tx(1, &[Release(1, 2)])],
                vec![dyn_tx(0, &[Release(1, 2), InsertOnline(1, 2), Write(2)])],
            ],
        ),
        cfg(
            "2L write + release, abort vs release(P, C1)",
            two_level,
            vec![
                vec![dyn_tx(P, &[Write(C1), Release(P, C1), Abort])],
                vec![rel()],
            ],
        ),
        cfg(
            "2L' insert_online + write, abort; then insert(C1, P) vs leaf(C1)",
            two_level_detached,
            vec![
                vec![
                    dyn_tx(P, &[InsertOnline(P, C1), Write(C1), Abort]),
                    dyn_tx(C1, &[Insert(C1, P)]),
                ],
                vec![tx(C1, &[C1])],
            ],
        ),
        cfg(
            "diamond release(Q, C) at G vs leaf(C)",
            diamond,
            vec![vec![dyn_tx(0, &[Release(2, 3)])], vec![tx(3, &[3])]],
        ),
        cfg(
            "two roots: insert(A, B) + release(A, C) vs insert(B, A) (a cycle race past a release)",
            two_roots_one_child,
            vec![
                vec![dyn_tx(0, &[Insert(0, 1), Release(0, 2)])],
                vec![dyn_tx(1, &[Insert(1, 0)])],
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

#[cfg_attr(feature = "no-privilege", allow(dead_code))]
/// The last handle of a node dropped while others use its children
/// (`Linkage::drop` hands the children bundled into it their packets
/// back; a walk up from a child finds the parent gone).
fn drop_configs() -> Vec<Config> {
    let drop_p = OpKind::Drop(P);
    vec![
        cfg(
            "2L drop(P) vs leaf(C1)",
            two_level,
            vec![vec![drop_p.clone()], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "2L drop(P) vs snapshot(C1)",
            two_level,
            vec![vec![drop_p.clone()], vec![OpKind::Snap(C1)]],
        ),
        cfg(
            "2L drop(P) vs leaf(C1); leaf(C2)",
            two_level,
            vec![vec![drop_p.clone()], vec![tx(C1, &[C1]), tx(C2, &[C2])]],
        ),
        cfg(
            "2L release(P, C1); drop(P) vs leaf(C1)",
            two_level,
            vec![vec![rel(), drop_p], vec![tx(C1, &[C1])]],
        ),
        cfg(
            "3L' drop(G) vs leaf(C1) (G -> P -> {C1, C2})",
            three_level_chain,
            vec![vec![OpKind::Drop(0)], vec![tx(2, &[2])]],
        ),
        cfg(
            "3L' drop(G) vs tx(P) vs ... (P's subtree outlives G)",
            three_level_chain,
            vec![vec![OpKind::Drop(0)], vec![tx(1, &[1, 3])]],
        ),
    ]
}

/// Every invariant holds while nodes are dropped; the drop happens at
/// every point of the other thread's steps. (Privilege on only: without
/// it, a livelock inside one split body, a rebase's snapshot retrying, is
/// an endless path of new states: see docs/verification.md.)
#[cfg(not(feature = "no-privilege"))]
#[test]
fn dropped_nodes_hand_back_their_children() {
    for c in drop_configs() {
        explore_drop(&c);
    }
}

/// Explores a drop configuration merged and split: the drop happens, no
/// livelock (every invariant is checked on the way).
#[cfg(not(feature = "no-privilege"))]
fn explore_drop(c: &Config) {
    for split in [false, true] {
        let r = explore_with(c, LIMIT, split);
        println!("{r}{}", if split { " (split)" } else { "" });
        assert!(r.steps.contains_key("drop_handle"));
        assert_eq!(r.livelocks, 0, "{}", r.lasso.as_deref().unwrap_or_default());
    }
}

/// TLC's `KameStm_2L_drop` roles on the code: a root transaction at P and
/// then the last handle of P let go, against a transaction at each leaf;
/// merged and split (release: 73 000 states split).
#[cfg(not(feature = "no-privilege"))]
#[test]
#[ignore = "large: run in release"]
fn drop_with_tlc_roles_holds_every_invariant() {
    let c = cfg(
        "2L root tx(P); drop(P) vs leaf(C1); leaf(C2) (TLC's KameStm_2L_drop roles)",
        two_level_unbundled,
        vec![
            vec![tx(P, &[C1, C2]), OpKind::Drop(P)],
            vec![tx(C1, &[C1]), tx(C2, &[C2])],
        ],
    );
    explore_drop(&c);
}

/// With privilege: every invariant, no livelock. Without: every invariant
/// still, and the ping-pong of a dynamic transaction against a leaf commit
/// (TLC's `KameStm_dyn_livelock`) is found and printed as a lasso.
#[test]
fn dynamic_configurations_hold_every_invariant() {
    let reports = run_all(configs());
    // Every way a dynamic step can go is taken somewhere (without
    // privilege there are no tags to block on).
    let blocked = if cfg!(feature = "no-privilege") {
        "body"
    } else {
        "body(blocked)"
    };
    for kind in [
        "body",
        blocked,
        "body(abort)",
        "commit_locked",
        "commit_locked(blocked)",
        "commit_locked(cycle)",
        "wait_owner",
        "wait_owner(blocked)",
    ] {
        assert!(
            reports.iter().any(|r| r.steps.contains_key(kind)),
            "no configuration took a {kind} step"
        );
    }
    let livelocked: Vec<&Report> = reports.iter().filter(|r| r.livelocks > 0).collect();
    if cfg!(feature = "no-privilege") {
        let jobs = livelocked
            .iter()
            .find(|r| r.name.contains("TLC's dyn jobs"))
            .expect("without privilege, insert_online; release vs leaf livelocks");
        println!("lasso: {}", jobs.lasso.as_deref().unwrap_or_default());
        assert!(jobs.lasso.is_some());
    } else {
        let names: Vec<String> = livelocked
            .iter()
            .map(|r| format!("{}\n{}", r.name, r.lasso.as_deref().unwrap_or_default()))
            .collect();
        assert!(names.is_empty(), "livelocks:\n{}", names.join("\n\n"));
    }
}

#[cfg(not(feature = "no-privilege"))]
#[test]
#[ignore = "large: run in release"]
fn large_dynamic_configurations_hold_every_invariant() {
    let reports = run_all(large_configs());
    assert!(reports.iter().all(|r| r.livelocks == 0));
}

/// Split: every shared-memory operation of a body a scheduling point of
/// its own (`explore::coroutine`), and of the frames as in `split_steps`.
#[cfg(not(feature = "no-privilege"))]
#[test]
#[ignore = "large: run in release (CI does)"]
fn dynamic_configurations_split_hold_every_invariant() {
    let reports = run_all_with(configs(), true);
    for kind in ["body(op)", "body(wait)", "wait_owner(blocked)"] {
        assert!(
            reports.iter().any(|r| r.steps.contains_key(kind)),
            "no configuration took a {kind} step"
        );
    }
    for r in &reports {
        assert_eq!(
            r.livelocks,
            0,
            "{}: {}",
            r.name,
            r.lasso.as_deref().unwrap_or_default()
        );
    }
}

fn run_all(configs: Vec<Config>) -> Vec<Report> {
    run_all_with(configs, false)
}

/// Explores each configuration; a violated invariant in any fails. With
/// privilege, the first configuration that fails or livelocks ends the run
/// at once: a later one may never end under the same defect (a body's
/// retry loop inside one scheduling point), and a failure must not wait
/// for it. Without privilege some configurations livelock by design, so
/// all are run and every failure is reported.
fn run_all_with(configs: Vec<Config>, split: bool) -> Vec<Report> {
    let mut failures = Vec::new();
    let mut reports = Vec::new();
    for c in configs {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            explore_with(&c, LIMIT, split)
        }));
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
                let bodies: u64 = r
                    .steps
                    .iter()
                    .filter(|(k, _)| k.starts_with("body"))
                    .map(|(_, v)| v)
                    .sum();
                assert!(bodies > 0, "{}: no body ran", c.name);
                if !cfg!(feature = "no-privilege") {
                    assert_eq!(
                        r.livelocks,
                        0,
                        "{}: {}",
                        r.name,
                        r.lasso.as_deref().unwrap_or_default()
                    );
                }
                reports.push(r);
            }
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: {what}", c.name));
                if !cfg!(feature = "no-privilege") {
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    reports
}
