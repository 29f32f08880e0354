//! What the priority-tag negotiation costs when nobody contends: run once
//! with the default features and once with `--features no-privilege` (the
//! same code with the tag machinery compiled out) and compare:
//!
//! ```sh
//! cargo bench -p kame-stm-bench --bench negotiation_overhead -- --save-baseline privilege
//! cargo bench -p kame-stm-bench --features no-privilege --bench negotiation_overhead -- --baseline privilege
//! ```
//!
//! The second run prints the change relative to the first; "no change in
//! performance detected" is the expected outcome (no tag is ever written
//! on the uncontended path; each CAS step reads one tag word).

use criterion::{Criterion, criterion_group, criterion_main};
use kame_stm::Node;
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("negotiation_overhead");
    let n = Node::new(0u64);
    g.bench_function("single_node_commit", |b| {
        b.iter(|| n.iterate_commit(|tr| tr[&n] += 1))
    });
    let root = Node::new(0u64);
    let kids: Vec<_> = (0..16).map(|_| Node::new(0u64)).collect();
    for k in &kids {
        root.insert(k).unwrap();
    }
    g.bench_function("root_commit_16", |b| {
        b.iter(|| {
            root.iterate_commit(|tr| {
                for k in &kids {
                    tr[k] += 1;
                }
            })
        })
    });
    g.bench_function("leaf_commit_then_root_snapshot", |b| {
        b.iter(|| {
            kids[3].iterate_commit(|tr| tr[&kids[3]] += 1);
            black_box(root.snapshot()[&kids[3]])
        })
    });
    g.finish();
}

criterion_group!(negotiation_overhead, benches);
criterion_main!(negotiation_overhead);
