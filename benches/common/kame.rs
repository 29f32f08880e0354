//! kame-stm: the tree is real nodes; every operation is the library's own.

use super::{Leaf, Shared, TreeOps, TxCounters};
use kame_stm::Node;
use kame_stm::TxStats;

/// Root with `n` children, payloads `u32` (the C++ `unsigned int m_x`).
pub struct Kame {
    pub root: Node<u32>,
    pub ch: Vec<Node<u32>>,
}

impl TreeOps for Kame {
    const NAME: &'static str = "kame";

    fn build(n: usize) -> Self {
        let root = Node::new(0u32);
        let ch: Vec<_> = (0..n).map(|_| Node::new(0u32)).collect();
        for c in &ch {
            root.insert(c).expect("fresh child");
        }
        // One root commit writing everything, as the C++ micro benchmark
        // does first, so the subtree starts bundled.
        let t = Kame { root, ch };
        t.root_commit_all();
        t
    }

    #[inline]
    fn snapshot_read_root(&self) -> u32 {
        let s = self.root.snapshot();
        s[&self.root]
    }

    #[inline]
    fn commit_root(&self) {
        let r = &self.root;
        r.iterate_commit(|tr| {
            let x = &mut tr[r];
            *x = x.wrapping_add(1);
        });
    }

    #[inline]
    fn snapshot_read_child(&self, i: usize) -> u32 {
        let s = self.root.snapshot();
        s[&self.ch[i]]
    }

    #[inline]
    fn snapshot_read_all(&self) -> u32 {
        let s = self.root.snapshot();
        self.ch.iter().fold(0u32, |a, c| a.wrapping_add(s[c]))
    }

    #[inline]
    fn root_commit_all(&self) {
        let ch = &self.ch;
        self.root.iterate_commit(|tr| {
            for c in ch {
                let x = &mut tr[c];
                *x = x.wrapping_add(1);
            }
        });
    }

    #[inline]
    fn root_commit_child(&self, i: usize) {
        let c = &self.ch[i];
        self.root.iterate_commit(|tr| {
            let x = &mut tr[c];
            *x = x.wrapping_add(1);
        });
    }

    #[inline]
    fn readonly_root_tx(&self) -> u32 {
        let ch = &self.ch;
        let mut sum = 0u32;
        self.root.iterate_commit(|tr| {
            sum = ch.iter().fold(0u32, |a, c| a.wrapping_add(tr[c]));
        });
        sum
    }

    #[inline]
    fn leaf_commit(&self, i: usize) {
        let c = &self.ch[i];
        c.iterate_commit(|tr| {
            let x = &mut tr[c];
            *x = x.wrapping_add(1);
        });
    }

    #[inline]
    fn child_snapshot_read(&self, i: usize) -> u32 {
        let c = &self.ch[i];
        let s = c.snapshot();
        s[c]
    }

    fn child_value(&self, i: usize) -> u32 {
        self.root.snapshot()[&self.ch[i]]
    }
}

/// 3-level tree `grand -> parent -> leaves[0..n]` (C++ micro cases C1-C4).
pub struct Kame3 {
    pub grand: Node<u32>,
    pub parent: Node<u32>,
    pub leaves: Vec<Node<u32>>,
}

impl Kame3 {
    pub fn build(n: usize) -> Self {
        let grand = Node::new(0u32);
        let parent = Node::new(0u32);
        grand.insert(&parent).expect("fresh");
        let leaves: Vec<_> = (0..n).map(|_| Node::new(0u32)).collect();
        for l in &leaves {
            parent.insert(l).expect("fresh");
        }
        let t = Kame3 {
            grand,
            parent,
            leaves,
        };
        t.grand_commit_all();
        t
    }

    /// C1: grand transaction incrementing every leaf.
    #[inline]
    pub fn grand_commit_all(&self) {
        let ls = &self.leaves;
        self.grand.iterate_commit(|tr| {
            for l in ls {
                let x = &mut tr[l];
                *x = x.wrapping_add(1);
            }
        });
    }

    /// C2: leaf transaction on leaf 0.
    #[inline]
    pub fn leaf_commit(&self) {
        let l = &self.leaves[0];
        l.iterate_commit(|tr| {
            let x = &mut tr[l];
            *x = x.wrapping_add(1);
        });
    }

    /// C3: snapshot of grand + read leaf 0.
    #[inline]
    pub fn snapshot_read_leaf(&self) -> u32 {
        let s = self.grand.snapshot();
        s[&self.leaves[0]]
    }
}

/// Diagnostic (`throughput --pad-nodes`): keep 256 bytes of heap between the
/// children's allocations so that no two children's linkages share a cache
/// line. Off by default: the natural layout is what users get.
pub static PAD_NODES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The throughput driver's tree.
pub struct KameShared {
    /// The node scope transactions run on: parent (2 levels) or grand (3).
    pub scope: Node<u32>,
    pub ch: Vec<Node<Leaf>>,
    /// Separate allocations on purpose: each one sits between two nodes.
    #[allow(clippy::vec_box)]
    _pad: Vec<Box<[u8; 256]>>,
}

impl Shared for KameShared {
    const NAME: &'static str = "kame";

    fn build(levels: usize, n: usize) -> Self {
        // Built like the C++ drivers: each insert is its own transaction.
        let parent = Node::new(0u32);
        let scope = if levels >= 3 {
            let grand = Node::new(0u32);
            grand.insert(&parent).expect("fresh");
            grand
        } else {
            parent.clone()
        };
        let pad = PAD_NODES.load(std::sync::atomic::Ordering::Relaxed);
        let mut _pad = Vec::new();
        let ch: Vec<_> = (0..n)
            .map(|_| {
                if pad {
                    _pad.push(Box::new([0u8; 256]));
                }
                Node::new(Leaf::default())
            })
            .collect();
        for c in &ch {
            parent.insert(c).expect("fresh");
        }
        KameShared { scope, ch, _pad }
    }

    #[inline]
    fn leaf(&self, i: usize, max_payload: u32) {
        let c = &self.ch[i];
        c.iterate_commit(|tr| tr[c].bump(max_payload));
    }

    fn scope(&self, max_payload: u32, body: &mut dyn FnMut() -> bool) -> bool {
        let ch = &self.ch;
        self.scope
            .iterate_commit_while(|tr| {
                if !body() {
                    return false;
                }
                for c in ch {
                    tr[c].bump_cross(max_payload);
                }
                true
            })
            .is_some()
    }

    fn leaf_stats(&self, i: usize, max_payload: u32, acc: &mut TxCounters) {
        let c = &self.ch[i];
        let (_, st) = c.iterate_commit_with_stats(|tr| tr[c].bump(max_payload));
        count(acc, &st);
    }

    fn scope_stats(&self, max_payload: u32, acc: &mut TxCounters) {
        let ch = &self.ch;
        let (_, st) = self.scope.iterate_commit_with_stats(|tr| {
            for c in ch {
                tr[c].bump_cross(max_payload);
            }
        });
        count(acc, &st);
    }

    fn snapshot_cross(&self, out: &mut Vec<u32>) {
        let s = self.scope.snapshot();
        out.clear();
        out.extend(self.ch.iter().map(|c| s[c].cross));
    }

    fn values(&self) -> Vec<Leaf> {
        let s = self.scope.snapshot();
        self.ch.iter().map(|c| s[c]).collect()
    }
}

fn count(acc: &mut TxCounters, st: &TxStats) {
    acc.tx += 1;
    acc.retries += u64::from(st.retries);
    acc.cas_failures += u64::from(st.cas_failures);
    acc.waits += u64::from(st.waits);
    acc.waited_ns += st.waited.as_nanos() as u64;
}
