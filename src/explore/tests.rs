//! The explorer's configurations. Default ones run in `cargo test` (debug)
//! in seconds; larger ones are `#[ignore]`d (run them with
//! `cargo test --release --lib explore -- --ignored --nocapture`).
//!
//! With privilege (the default build) every exploration must terminate
//! with no violated invariant, no deadlock and no livelock. With the
//! `no-privilege` feature the snapshot-against-leaf-commit configuration
//! must contain a livelock, and the test prints it as a lasso.

use super::*;

const LIMIT: usize = 2_000_000;

/// Nodes of `two_level`.
const P: usize = 0;
const C1: usize = 1;
const C2: usize = 2;

fn snap_vs_leaf(ops: usize) -> Config {
    Config {
        name: if ops == 1 { "2L snapshot(P) vs leaf(C1)" } else { "2L snapshot(P) vs leaf(C1), x2" },
        tree: two_level,
        programs: vec![vec![OpKind::Snap(P); ops], vec![tx(C1, &[C1]); ops]],
        pairs: vec![],
    }
}

fn root_vs_leaf(ops: usize) -> Config {
    Config {
        name: if ops == 1 { "2L root tx(P) vs leaf(C1)" } else { "2L root tx(P) vs leaf(C1), x2" },
        tree: two_level,
        programs: vec![vec![tx(P, &[P, C2]); ops], vec![tx(C1, &[C1]); ops]],
        pairs: vec![(P, C2)],
    }
}

fn run(cfg: &Config) -> Report {
    let r = explore(cfg, LIMIT);
    println!("{r}");
    if let Some(l) = &r.lasso {
        println!("livelock lasso:\n{l}");
    }
    r
}

#[cfg(not(feature = "no-privilege"))]
fn live(cfg: &Config) {
    let r = run(cfg);
    assert!(r.terminal > 0, "{}: no run finishes", r.name);
    assert_eq!(r.livelocks, 0, "{}: livelock\n{}", r.name, r.lasso.unwrap_or_default());
}

#[cfg(not(feature = "no-privilege"))]
mod privileged {
    use super::*;

    #[test]
    fn two_level_snapshot_vs_leaf() {
        live(&snap_vs_leaf(1));
    }

    #[test]
    fn two_level_root_vs_leaf() {
        live(&root_vs_leaf(1));
    }
}

#[cfg(feature = "no-privilege")]
mod unprivileged {
    use super::*;

    /// The bundle/unbundle ping-pong, found on the real code: the test
    /// passes *because* the explorer finds a fair cycle in which nothing
    /// completes (deterministic: no timing involved).
    #[test]
    fn two_level_snapshot_vs_leaf_livelocks() {
        let r = run(&snap_vs_leaf(1));
        assert!(r.livelocks > 0, "no livelock found without privilege");
        let lasso = r.lasso.unwrap();
        assert!(lasso.contains("bundle_phase2") && lasso.contains("unbundle_cas_ancestors"));
    }
}
