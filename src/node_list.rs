//! A node's list of children, with an index built on demand.
//!
//! Finding a child is a pointer scan of the list: the fastest way for the
//! few children most nodes have, but linear in the fan-out, so a snapshot
//! lookup in a node with 10 000 children took microseconds. A list is
//! shared by every packet version of its node until the list itself
//! changes (an insert, a release), so an index of a long list pays for
//! itself once the list has been scanned a few times. Ski rental: after
//! `REBUILD_SCANS` full scans' worth of comparisons, the list builds an
//! address → position map (about what those scans cost), and every later
//! lookup is O(1). A copy (a new version of the list) keeps the index and
//! a push keeps it (children inserted one by one, in one transaction or
//! one each, stay indexed); every other change drops it.

use crate::linkage::Linkage;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Lists shorter than this are only ever scanned.
const INDEX_MIN: usize = 64;
/// Full scans' worth of comparisons after which a long list is indexed.
const REBUILD_SCANS: usize = 4;

/// Hashes a linkage's address (already unique): one multiply.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    /// Only `usize` keys are hashed (`write_usize`).
    fn write(&mut self, _: &[u8]) {
        unreachable!("NodeList's index hashes addresses only");
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

type Index = HashMap<usize, u32, BuildHasherDefault<AddrHasher>>;

/// The children of a node, in list order (strong references).
#[derive(Default)]
pub(crate) struct NodeList {
    list: Vec<Arc<Linkage>>,
    index: OnceLock<Index>,
    /// Comparisons spent scanning this list so far (long lists only).
    scanned: AtomicUsize,
}

impl NodeList {
    /// Appends `node`, keeping the index if there is one (a list that grows
    /// by inserts, as in a transaction inserting many children, stays
    /// indexed instead of being scanned again from scratch).
    pub(crate) fn push(&mut self, node: Arc<Linkage>) {
        let at = u32::try_from(self.list.len()).expect("fewer than 2^32 children");
        if let Some(index) = self.index.get_mut() {
            // A node listed twice: the first position, as a scan.
            index.entry(Arc::as_ptr(&node) as usize).or_insert(at);
        }
        self.list.push(node);
    }

    /// Position of `child` in the list.
    #[inline]
    pub(crate) fn find(&self, child: &Linkage) -> Option<usize> {
        let p: *const Linkage = child;
        if self.list.len() < INDEX_MIN {
            return self.list.iter().position(|n| Arc::as_ptr(n) == p);
        }
        self.find_long(p as usize)
    }

    #[cold]
    fn find_long(&self, addr: usize) -> Option<usize> {
        if let Some(index) = self.index.get() {
            return index.get(&addr).map(|&i| i as usize);
        }
        let len = self.list.len();
        if self.scanned.fetch_add(len, Ordering::Relaxed) + len >= REBUILD_SCANS * len {
            let index = self.index.get_or_init(|| {
                let mut m = Index::with_capacity_and_hasher(len, Default::default());
                for (i, n) in self.list.iter().enumerate() {
                    // A node listed twice: the first position, as a scan.
                    m.entry(Arc::as_ptr(n) as usize).or_insert(i as u32);
                }
                m
            });
            return index.get(&addr).map(|&i| i as usize);
        }
        self.list
            .iter()
            .position(|n| Arc::as_ptr(n) as usize == addr)
    }
}

impl From<Vec<Arc<Linkage>>> for NodeList {
    fn from(list: Vec<Arc<Linkage>>) -> Self {
        NodeList {
            list,
            ..NodeList::default()
        }
    }
}

impl Clone for NodeList {
    /// A copy keeps the index and the scan count: it is made to be
    /// changed, and the change that copies a long list is nearly always a
    /// push (an insert), which keeps the index. Rebuilding it for every
    /// version made inserting n children one transaction each hash the
    /// whole list every time. (Any other change drops it, as before.)
    fn clone(&self) -> Self {
        NodeList {
            list: self.list.clone(),
            index: self.index.clone(),
            scanned: AtomicUsize::new(self.scanned.load(Ordering::Relaxed)),
        }
    }
}

impl Deref for NodeList {
    type Target = Vec<Arc<Linkage>>;
    fn deref(&self) -> &Self::Target {
        &self.list
    }
}

impl DerefMut for NodeList {
    /// Changing the list drops its index.
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.index = OnceLock::new();
        *self.scanned.get_mut() = 0;
        &mut self.list
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::node::Node;

    fn links(n: usize) -> Vec<Arc<Linkage>> {
        (0..n).map(|_| Node::new(0u8).link.clone()).collect()
    }

    /// Before, while and after the index is built, and after a change:
    /// always the position a scan finds.
    #[test]
    fn find_is_a_scan_with_or_without_the_index() {
        for len in [1, INDEX_MIN - 1, INDEX_MIN, 300] {
            let nodes = links(len);
            let outsider = Node::new(0u8).link.clone();
            let mut list = NodeList::from(nodes.clone());
            for round in 0..REBUILD_SCANS + 2 {
                for (i, n) in nodes.iter().enumerate() {
                    assert_eq!(list.find(n), Some(i), "len {len}, round {round}");
                }
                assert_eq!(list.find(&outsider), None);
            }
            assert_eq!(list.index.get().is_some(), len >= INDEX_MIN);
            list.swap(0, len - 1);
            list.push(outsider.clone());
            assert!(list.index.get().is_none(), "a change drops the index");
            assert_eq!(list.find(&outsider), Some(len));
            assert_eq!(list.find(&nodes[len - 1]), Some(0));
        }
    }

    /// The index is built after `REBUILD_SCANS` lookups' worth of
    /// scanning, not before; a copy keeps it and lists the same, and a
    /// push to the copy keeps it up to date.
    #[test]
    fn the_index_comes_after_a_few_scans() {
        let nodes = links(100);
        let list = NodeList::from(nodes.clone());
        for i in 0..REBUILD_SCANS - 1 {
            assert_eq!(list.find(&nodes[99]), Some(99));
            assert!(
                list.index.get().is_none(),
                "indexed after {} lookups",
                i + 1
            );
        }
        assert_eq!(list.find(&nodes[99]), Some(99));
        assert!(list.index.get().is_some());
        let mut copy = list.clone();
        assert_eq!(copy.len(), 100);
        assert!(copy.iter().zip(&nodes).all(|(a, b)| Arc::ptr_eq(a, b)));
        assert!(copy.index.get().is_some());
        let extra = links(1).pop().expect("one");
        copy.push(extra.clone());
        assert!(copy.index.get().is_some());
        assert_eq!(copy.find(&extra), Some(100));
        assert_eq!(list.find(&extra), None);
    }

    /// `push` keeps an index it finds (and a list without one stays
    /// without); a node pushed twice is found at its first position.
    #[test]
    fn push_keeps_the_index() {
        let nodes = links(INDEX_MIN + 5);
        let mut list = NodeList::from(nodes.clone());
        list.push(nodes[0].clone());
        assert!(list.index.get().is_none());
        for _ in 0..=REBUILD_SCANS {
            assert_eq!(list.find(&nodes[7]), Some(7));
        }
        assert!(list.index.get().is_some());
        let extra = links(3);
        for (i, n) in extra.iter().enumerate() {
            list.push(n.clone());
            assert!(list.index.get().is_some(), "a push dropped the index");
            assert_eq!(list.find(n), Some(INDEX_MIN + 6 + i));
        }
        list.push(nodes[3].clone());
        assert_eq!(list.find(&nodes[3]), Some(3));
        assert_eq!(list.find(&nodes[0]), Some(0));
        assert_eq!(list.len(), INDEX_MIN + 10);
    }

    /// A node listed twice is found at its first position, as a scan would.
    #[test]
    fn a_duplicate_is_found_first() {
        let mut nodes = links(INDEX_MIN + 10);
        nodes.push(nodes[3].clone());
        let list = NodeList::from(nodes.clone());
        for _ in 0..=REBUILD_SCANS * 2 {
            assert_eq!(list.find(&nodes[3]), Some(3));
        }
        assert!(list.index.get().is_some());
    }
}
