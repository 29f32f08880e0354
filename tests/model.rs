//! Property test against a sequential model: random sequences of inserts,
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
    if std::env::var("KT_PRINT").is_ok() { eprintln!("CASE {ops:?}"); }
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
    for n in 0..N {
        assert_eq!(nodes[n].read(), m.values[n]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn matches_sequential_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

#[test]
#[ignore]
fn minimize_hang() {
    use Op::*;
    let mut ops = vec![Add(3, 5, 7), Check(3), Release(3, 1), Release(5, 4), Release(3, 1), Swap(1, 4, 5), Insert(3, 0), Check(2), Add(3, 4, 10), Swap(3, 4, 4), Release(3, 2), Add(5, 5, 75), Check(3), Swap(4, 2, 1), Insert(4, 2), Add(0, 0, 46), Check(1), Swap(3, 1, 5), Swap(0, 5, 4), Release(0, 4), Insert(4, 0), Release(4, 5), Release(4, 2), Check(5), Insert(5, 4), Insert(5, 2), Release(1, 1), Swap(0, 3, 1), Insert(3, 5), Release(2, 0), Check(3), Check(4), Release(4, 3), Release(4, 3), Release(5, 0), Swap(2, 3, 2), Check(4), Swap(1, 4, 4), Check(2), Check(2), Check(1), Swap(4, 1, 1), Release(5, 1)];
    let hangs = |ops: &Vec<Op>| {
        let ops = ops.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || { let _ = std::panic::catch_unwind(|| run(ops)); let _ = tx.send(()); });
        rx.recv_timeout(std::time::Duration::from_millis(1500)).is_err()
    };
    assert!(hangs(&ops));
    let mut i = 0;
    while i < ops.len() {
        let mut t = ops.clone();
        t.remove(i);
        if hangs(&t) { ops = t; } else { i += 1; }
    }
    panic!("minimal: {ops:?}");
}
