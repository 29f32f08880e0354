//! Commit cost as the tree grows: a root with n children, one root
//! transaction writing all n (n = 1, 2, 4, 8, 16, 32). `benches/plot.py`
//! fits ns/op = a + b·n and reports the per-node slope b.
//!
//! Also, kame only: the 3-level tree `grand -> parent -> L leaves`
//! (C++ `stm_micro` C1-C4, L = 1, 2, 4).
//!
//! `cargo bench -p kame-stm-bench --bench commit_scaling`

#[path = "common/mod.rs"]
mod common;

use common::{TreeOps, arcswap::Swap, fast_stm::Stm, kame::Kame, kame::Kame3, rwlock::Rw};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const SIZES: [usize; 6] = [1, 2, 4, 8, 16, 32];

fn scaling<T: TreeOps>(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit_scaling");
    for n in SIZES {
        let t = T::build(n);
        t.root_commit_all();
        g.bench_with_input(BenchmarkId::new(T::NAME, n), &n, |b, _| {
            b.iter(|| t.root_commit_all())
        });
    }
}

fn three_level(c: &mut Criterion) {
    for l in [1usize, 2, 4] {
        let t = Kame3::build(l);
        c.benchmark_group("tree3_grand_commit_all")
            .bench_with_input(BenchmarkId::new("kame", l), &l, |b, _| {
                b.iter(|| t.grand_commit_all())
            });
        c.benchmark_group("tree3_leaf_commit").bench_with_input(
            BenchmarkId::new("kame", l),
            &l,
            |b, _| b.iter(|| t.leaf_commit()),
        );
        c.benchmark_group("tree3_snapshot_read_leaf")
            .bench_with_input(BenchmarkId::new("kame", l), &l, |b, _| {
                b.iter(|| black_box(t.snapshot_read_leaf()))
            });
        let mut i = 0u32;
        c.benchmark_group("tree3_mix_1_in_10_grand")
            .bench_with_input(BenchmarkId::new("kame", l), &l, |b, _| {
                b.iter(|| {
                    if i % 10 == 0 {
                        t.grand_commit_all()
                    } else {
                        t.leaf_commit()
                    }
                    i = i.wrapping_add(1);
                })
            });
    }
}

fn benches(c: &mut Criterion) {
    scaling::<Kame>(c);
    scaling::<Rw>(c);
    scaling::<Swap>(c);
    scaling::<Stm>(c);
    three_level(c);
}

criterion_group! {
    name = commit_scaling;
    config = common::criterion();
    targets = benches
}
criterion_main!(commit_scaling);
