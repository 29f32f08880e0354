//! Baseline: `parking_lot::RwLock<Tree>` with in-place mutation — what most
//! Rust code would do. A "snapshot" is a read guard (consistent, but it
//! blocks every writer while held); a transaction is a write guard.

use super::{Leaf, Shared, TreeOps};
use parking_lot::RwLock;

pub struct Tree {
    root: u32,
    children: Vec<u32>,
}

pub struct Rw(RwLock<Tree>);

impl TreeOps for Rw {
    const NAME: &'static str = "rwlock";

    fn build(n: usize) -> Self {
        Rw(RwLock::new(Tree {
            root: 0,
            children: vec![0; n],
        }))
    }

    #[inline]
    fn snapshot_read_root(&self) -> u32 {
        self.0.read().root
    }

    #[inline]
    fn commit_root(&self) {
        let mut t = self.0.write();
        t.root = t.root.wrapping_add(1);
    }

    #[inline]
    fn snapshot_read_child(&self, i: usize) -> u32 {
        self.0.read().children[i]
    }

    #[inline]
    fn snapshot_read_all(&self) -> u32 {
        let t = self.0.read();
        t.children.iter().fold(0u32, |a, &x| a.wrapping_add(x))
    }

    #[inline]
    fn root_commit_all(&self) {
        let mut t = self.0.write();
        for x in t.children.iter_mut() {
            *x = x.wrapping_add(1);
        }
    }

    #[inline]
    fn root_commit_child(&self, i: usize) {
        let mut t = self.0.write();
        t.children[i] = t.children[i].wrapping_add(1);
    }

    fn child_value(&self, i: usize) -> u32 {
        self.0.read().children[i]
    }
}

/// The throughput driver's tree under one lock.
pub struct RwShared(RwLock<Vec<Leaf>>);

impl Shared for RwShared {
    const NAME: &'static str = "rwlock";

    fn build(_levels: usize, n: usize) -> Self {
        RwShared(RwLock::new(vec![Leaf::default(); n]))
    }

    #[inline]
    fn leaf(&self, i: usize, max_payload: u32) {
        self.0.write()[i].bump(max_payload);
    }

    fn scope(&self, max_payload: u32, body: &mut dyn FnMut() -> bool) -> bool {
        let mut t = self.0.write();
        if !body() {
            return false;
        }
        for l in t.iter_mut() {
            l.bump_cross(max_payload);
        }
        true
    }

    fn snapshot_cross(&self, out: &mut Vec<u32>) {
        let t = self.0.read();
        out.clear();
        out.extend(t.iter().map(|l| l.cross));
    }

    fn values(&self) -> Vec<Leaf> {
        self.0.read().clone()
    }
}
