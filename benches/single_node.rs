//! Single node (C++ `stm_micro` A1-A3): snapshot + read, a transaction
//! incrementing the payload, and the two in a row. Baselines: the root of
//! their tree with no children.
//!
//! `cargo bench -p kame-stm-bench --bench single_node` (add `-- kame` to run only ours).

#[path = "common/mod.rs"]
mod common;

use common::{TreeOps, arcswap::Swap, fast_stm::Stm, kame::Kame, rwlock::Rw};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn ops<T: TreeOps>(c: &mut Criterion) {
    let t = T::build(0);
    c.benchmark_group("single_node_snapshot_read")
        .bench_function(T::NAME, |b| b.iter(|| black_box(t.snapshot_read_root())));
    c.benchmark_group("single_node_commit")
        .bench_function(T::NAME, |b| b.iter(|| t.commit_root()));
    c.benchmark_group("single_node_commit_then_snapshot")
        .bench_function(T::NAME, |b| {
            b.iter(|| {
                t.commit_root();
                black_box(t.snapshot_read_root())
            })
        });
}

fn benches(c: &mut Criterion) {
    ops::<Kame>(c);
    ops::<Rw>(c);
    ops::<Swap>(c);
    ops::<Stm>(c);
}

criterion_group! {
    name = single_node;
    config = common::criterion();
    targets = benches
}
criterion_main!(single_node);
