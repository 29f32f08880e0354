//! Cost of change notification (issue 13): a single-node commit with no
//! listener (to compare with `single_node_commit` of `main`, same run),
//! with a mark and 0 / 1 / 8 listeners, and with 1 live subscription.
//!
//! `cargo bench --bench notify` (`-- --test` runs each once).

#[path = "common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use kame_stm::{Node, Talker};
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify_commit");
    let n = Node::new(0u64);
    g.bench_function("plain", |b| b.iter(|| n.iterate_commit(|tr| tr[&n] += 1)));
    for listeners in [0usize, 1, 8] {
        let talker: Talker<u64> = Talker::new();
        let guards: Vec<_> = (0..listeners)
            .map(|_| {
                talker.connect(|_, m| {
                    black_box(m);
                })
            })
            .collect();
        g.bench_function(format!("mark_{listeners}_listeners"), |b| {
            b.iter(|| {
                n.iterate_commit(|tr| {
                    tr[&n] += 1;
                    let v = tr[&n];
                    tr.mark(&talker, v);
                })
            })
        });
        drop(guards);
    }
    {
        let _sub = n.subscribe();
        g.bench_function("plain_1_subscription", |b| {
            b.iter(|| n.iterate_commit(|tr| tr[&n] += 1))
        });
    }
    g.finish();
}

criterion_group! {
    name = notify;
    config = common::criterion();
    targets = benches
}
criterion_main!(notify);
