//! Baseline: `fast-stm` (the maintained fork of `stm`), one `TVar` per
//! node. A consistent multi-node view is a read transaction over every
//! `TVar` it needs (O(n)); a single variable is read with `read_atomic`.

use super::{Leaf, Shared, TreeOps};
use fast_stm::{TVar, abort, atomically, atomically_with_err};

pub struct Stm {
    root: TVar<u32>,
    children: Vec<TVar<u32>>,
}

impl TreeOps for Stm {
    const NAME: &'static str = "fast-stm";

    fn build(n: usize) -> Self {
        Stm {
            root: TVar::new(0),
            children: (0..n).map(|_| TVar::new(0)).collect(),
        }
    }

    #[inline]
    fn snapshot_read_root(&self) -> u32 {
        self.root.read_atomic()
    }

    #[inline]
    fn commit_root(&self) {
        atomically(|tx| self.root.modify(tx, |x| x.wrapping_add(1)));
    }

    #[inline]
    fn snapshot_read_child(&self, i: usize) -> u32 {
        self.children[i].read_atomic()
    }

    #[inline]
    fn snapshot_read_all(&self) -> u32 {
        atomically(|tx| {
            let mut a = 0u32;
            for c in &self.children {
                a = a.wrapping_add(c.read(tx)?);
            }
            Ok(a)
        })
    }

    #[inline]
    fn root_commit_all(&self) {
        atomically(|tx| {
            for c in &self.children {
                c.modify(tx, |x| x.wrapping_add(1))?;
            }
            Ok(())
        });
    }

    #[inline]
    fn root_commit_child(&self, i: usize) {
        atomically(|tx| self.children[i].modify(tx, |x| x.wrapping_add(1)));
    }

    fn child_value(&self, i: usize) -> u32 {
        self.children[i].read_atomic()
    }
}

/// The throughput driver's tree as one `TVar` per leaf.
pub struct StmShared {
    ch: Vec<TVar<Leaf>>,
}

impl Shared for StmShared {
    const NAME: &'static str = "fast-stm";

    fn build(_levels: usize, n: usize) -> Self {
        StmShared {
            ch: (0..n).map(|_| TVar::new(Leaf::default())).collect(),
        }
    }

    #[inline]
    fn leaf(&self, i: usize, max_payload: u32) {
        atomically(|tx| {
            self.ch[i].modify(tx, |mut l| {
                l.bump(max_payload);
                l
            })
        });
    }

    fn scope(&self, max_payload: u32, body: &mut dyn FnMut() -> bool) -> bool {
        // `atomically` takes `Fn`; the body is `FnMut`, so go through a cell.
        let body = std::cell::RefCell::new(body);
        atomically_with_err(|tx| {
            if !(body.borrow_mut())() {
                return abort(());
            }
            for c in &self.ch {
                c.modify(tx, |mut l| {
                    l.bump_cross(max_payload);
                    l
                })?;
            }
            Ok(())
        })
        .is_ok()
    }

    fn snapshot_cross(&self, out: &mut Vec<u32>) {
        let v = atomically(|tx| {
            let mut v = Vec::with_capacity(self.ch.len());
            for c in &self.ch {
                v.push(c.read(tx)?.cross);
            }
            Ok(v)
        });
        *out = v;
    }

    fn values(&self) -> Vec<Leaf> {
        self.ch.iter().map(|c| c.read_atomic()).collect()
    }
}
