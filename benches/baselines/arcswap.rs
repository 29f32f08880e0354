//! Baseline: `ArcSwap<Tree>` updated with `rcu` (load, copy, CAS, retry),
//! the children in an `imbl::Vector` so a copy shares everything but the
//! changed chunk. A snapshot is `load_full()` (an owned `Arc`, O(1)); every
//! writer — leaf or root — CASes the one root pointer.

use super::{Leaf, Shared, TreeOps};
use arc_swap::ArcSwap;
use imbl::Vector;
use std::sync::Arc;

#[derive(Clone)]
pub struct Tree {
    root: u32,
    children: Vector<u32>,
}

pub struct Swap(ArcSwap<Tree>);

impl TreeOps for Swap {
    const NAME: &'static str = "arcswap";

    fn build(n: usize) -> Self {
        Swap(ArcSwap::from_pointee(Tree {
            root: 0,
            children: std::iter::repeat_n(0u32, n).collect(),
        }))
    }

    #[inline]
    fn snapshot_read_root(&self) -> u32 {
        self.0.load_full().root
    }

    #[inline]
    fn commit_root(&self) {
        self.0.rcu(|t| {
            let mut t = Tree::clone(t);
            t.root = t.root.wrapping_add(1);
            t
        });
    }

    #[inline]
    fn snapshot_read_child(&self, i: usize) -> u32 {
        self.0.load_full().children[i]
    }

    #[inline]
    fn snapshot_read_all(&self) -> u32 {
        let t = self.0.load_full();
        t.children.iter().fold(0u32, |a, &x| a.wrapping_add(x))
    }

    #[inline]
    fn root_commit_all(&self) {
        self.0.rcu(|t| {
            let mut t = Tree::clone(t);
            for x in t.children.iter_mut() {
                *x = x.wrapping_add(1);
            }
            t
        });
    }

    #[inline]
    fn root_commit_child(&self, i: usize) {
        self.0.rcu(|t| {
            let mut t = Tree::clone(t);
            let x = &mut t.children[i];
            *x = x.wrapping_add(1);
            t
        });
    }

    fn child_value(&self, i: usize) -> u32 {
        self.0.load().children[i]
    }
}

/// The throughput driver's tree behind one `ArcSwap`.
pub struct SwapShared(ArcSwap<Vector<Leaf>>);

impl SwapShared {
    /// `rcu` that can be abandoned: load, build, CAS, retry.
    fn update(&self, mut f: impl FnMut(&Vector<Leaf>) -> Option<Vector<Leaf>>) -> bool {
        let mut cur = self.0.load_full();
        loop {
            let Some(new) = f(&cur) else { return false };
            let prev = self.0.compare_and_swap(&cur, Arc::new(new));
            if Arc::ptr_eq(&cur, &prev) {
                return true;
            }
            cur = arc_swap::Guard::into_inner(prev);
        }
    }
}

impl Shared for SwapShared {
    const NAME: &'static str = "arcswap";

    fn build(_levels: usize, n: usize) -> Self {
        SwapShared(ArcSwap::from_pointee(
            std::iter::repeat_n(Leaf::default(), n).collect(),
        ))
    }

    #[inline]
    fn leaf(&self, i: usize, max_payload: u32) {
        self.0.rcu(|t| {
            let mut t = Vector::clone(t);
            t[i].bump(max_payload);
            t
        });
    }

    fn scope(&self, max_payload: u32, body: &mut dyn FnMut() -> bool) -> bool {
        self.update(|t| {
            if !body() {
                return None;
            }
            let mut t = t.clone();
            for l in t.iter_mut() {
                l.bump_cross(max_payload);
            }
            Some(t)
        })
    }

    fn snapshot_cross(&self, out: &mut Vec<u32>) {
        let t = self.0.load_full();
        out.clear();
        out.extend(t.iter().map(|l| l.cross));
    }

    fn values(&self) -> Vec<Leaf> {
        self.0.load_full().iter().copied().collect()
    }
}
