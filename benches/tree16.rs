//! 2-level tree, root with 16 children (C++ `stm_micro` B1-B11).
//!
//! Each case gets a fresh tree whose first act was one root commit writing
//! all 16 children (so kame's subtree starts bundled, as in the C++ run).
//! The pairs B10/B11 alternate leaf and root work, which for kame forces
//! an unbundle and a re-bundle every iteration.
//!
//! `cargo bench -p kame-stm-bench --bench tree16` (add `-- kame` to run only ours).

#[path = "common/mod.rs"]
mod common;

use common::{TreeOps, arcswap::Swap, fast_stm::Stm, kame::Kame, one_child, rwlock::Rw};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const N: usize = 16;

fn ops<T: TreeOps>(c: &mut Criterion) {
    let k = one_child(N);
    let fresh = || {
        let t = T::build(N);
        t.root_commit_all();
        t
    };
    let mut case = |group: &str, f: &dyn Fn(&T, usize) -> u32| {
        let t = fresh();
        let mut i = 0usize;
        c.benchmark_group(group).bench_function(T::NAME, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(f(&t, i))
            })
        });
    };
    case("tree16_snapshot_read_one", &|t, _| t.snapshot_read_child(k));
    case("tree16_snapshot_read_all", &|t, _| t.snapshot_read_all());
    case("tree16_root_commit_all", &|t, _| {
        t.root_commit_all();
        0
    });
    case("tree16_root_commit_one", &|t, _| {
        t.root_commit_child(k);
        0
    });
    case("tree16_root_commit_root_only", &|t, _| {
        t.commit_root();
        0
    });
    case("tree16_readonly_root_tx", &|t, _| t.readonly_root_tx());
    case("tree16_leaf_commit", &|t, _| {
        t.leaf_commit(k);
        0
    });
    case("tree16_child_snapshot_read", &|t, _| {
        t.child_snapshot_read(k)
    });
    case("tree16_leaf_commit_round_robin", &|t, i| {
        t.leaf_commit(i % N);
        0
    });
    case("tree16_pair_leaf_commit_root_snapshot", &|t, _| {
        t.leaf_commit(k);
        t.snapshot_read_child(k)
    });
    case("tree16_pair_root_commit_leaf_commit", &|t, _| {
        t.root_commit_all();
        t.leaf_commit(k);
        0
    });
}

fn benches(c: &mut Criterion) {
    ops::<Kame>(c);
    ops::<Rw>(c);
    ops::<Swap>(c);
    ops::<Stm>(c);
}

criterion_group! {
    name = tree16;
    config = common::criterion();
    targets = benches
}
criterion_main!(tree16);
