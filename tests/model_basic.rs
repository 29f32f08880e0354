//! The first, smaller property test against a sequential model (kept in CI
//! while the full model in `tests/model.rs` has open failures): random sequences of inserts,
//! releases, swaps, transactions and snapshots on a small forest; every
//! result (values, membership, child order, errors) must match the model.

use kame_stm::{Node, TreeError};
use proptest::prelude::*;
use std::collections::BTreeMap;

const N: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, usize),
    Release(usize, usize),
    Swap(usize, usize, usize),
    Add(usize, usize, u32),
    Check(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..N, 0..N).prop_map(|(p, c)| Op::Insert(p, c)),
        (0..N, 0..N).prop_map(|(p, c)| Op::Release(p, c)),
        (0..N, 0..N, 0..N).prop_map(|(p, a, b)| Op::Swap(p, a, b)),
        (0..N, 0..N, 1..100u32).prop_map(|(s, n, d)| Op::Add(s, n, d)),
        (0..N).prop_map(Op::Check),
    ]
}

#[derive(Default)]
struct Model {
    values: [u32; N],
    children: BTreeMap<usize, Vec<usize>>,
}

impl Model {
    fn kids(&self, p: usize) -> &[usize] {
        self.children.get(&p).map_or(&[], |v| v.as_slice())
    }
    fn reaches(&self, from: usize, to: usize) -> bool {
        from == to || self.kids(from).iter().any(|&c| self.reaches(c, to))
    }
}

fn run(ops: Vec<Op>) {
    let nodes: Vec<Node<u32>> = (0..N).map(|_| Node::new(0)).collect();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Insert(p, c) => {
                let expect = if m.reaches(c, p) {
                    Err(TreeError::Cycle)
                } else if m.kids(p).contains(&c) {
                    Err(TreeError::AlreadyChild)
                } else {
                    m.children.entry(p).or_default().push(c);
                    Ok(())
                };
                assert_eq!(nodes[p].insert(&nodes[c]), expect, "{op:?}");
            }
            Op::Release(p, c) => {
                let expect = match m.kids(p).iter().position(|&k| k == c) {
                    Some(i) => {
                        m.children.get_mut(&p).unwrap().remove(i);
                        Ok(())
                    }
                    None => Err(TreeError::NotAChild),
                };
                assert_eq!(nodes[p].release(&nodes[c]), expect, "{op:?}");
            }
            Op::Swap(p, a, b) => {
                let kids = m.kids(p).to_vec();
                let (ia, ib) = (
                    kids.iter().position(|&k| k == a),
                    kids.iter().position(|&k| k == b),
                );
                let expect = match (ia, ib) {
                    (Some(i), Some(j)) => {
                        m.children.get_mut(&p).unwrap().swap(i, j);
                        Ok(())
                    }
                    _ => Err(TreeError::NotAChild),
                };
                let r = nodes[p].try_iterate_commit(|tr| tr.swap(&nodes[p], &nodes[a], &nodes[b]));
                assert_eq!(r.map(|_| ()), expect, "{op:?}");
            }
            Op::Add(s, n, d) => {
                let inside = m.reaches(s, n);
                let shot = nodes[s].iterate_commit(|tr| {
                    assert_eq!(tr.get(&nodes[n]).is_ok(), inside, "{op:?}");
                    if let Ok(v) = tr.get_mut(&nodes[n]) {
                        *v += d;
                    }
                });
                if inside {
                    m.values[n] += d;
                    assert_eq!(shot[&nodes[n]], m.values[n]);
                }
            }
            Op::Check(s) => {
                let shot = nodes[s].snapshot();
                for n in 0..N {
                    let inside = m.reaches(s, n);
                    assert_eq!(shot.contains(&nodes[n]), inside, "check {s}: node {n}");
                    if inside {
                        assert_eq!(shot[&nodes[n]], m.values[n], "check {s}: node {n}");
                    }
                }
                for p in 0..N {
                    if m.reaches(s, p) {
                        let kids: Vec<_> = shot.children(&nodes[p]).unwrap().collect();
                        let want = m.kids(p);
                        assert_eq!(kids.len(), want.len());
                        for (k, &w) in kids.iter().zip(want) {
                            assert!(*k == nodes[w], "child order of {p}");
                        }
                    }
                }
            }
        }
    }
    // Every node agrees with the model on its own.
    for (node, want) in nodes.iter().zip(m.values) {
        assert_eq!(node.read(), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn matches_sequential_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
