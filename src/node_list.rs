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
//! lookup is O(1). A push keeps the index (children inserted in one
//! transaction stay indexed); a copy (a new version of the list) starts
//! without one, since copying it is linear (the list itself is shared in
//! chunks, `chunked`). A node that was never listed anywhere is found in
//! no list without a scan (`Linkage::is_listed`): the lookups an insert of
//! a fresh node makes cost nothing.

use crate::chunked::{Chunked, Iter};
use crate::linkage::Linkage;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Index as IndexOp;
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
    list: Chunked<Arc<Linkage>, Vec<Arc<Linkage>>>,
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
        node.mark_listed();
        if let Some(index) = self.index.get_mut() {
            // A node listed twice: the first position, as a scan.
            index.entry(Arc::as_ptr(&node) as usize).or_insert(at);
        }
        self.list.push(node);
    }

    /// Removes the child at `i`; positions change, so the index goes.
    pub(crate) fn remove(&mut self, i: usize) -> Arc<Linkage> {
        self.forget_index();
        self.list.remove(i)
    }

    /// Swaps two children; positions change, so the index goes.
    pub(crate) fn swap(&mut self, i: usize, j: usize) {
        self.forget_index();
        self.list.swap(i, j);
    }

    fn forget_index(&mut self) {
        self.index = OnceLock::new();
        *self.scanned.get_mut() = 0;
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&Arc<Linkage>> {
        self.list.get(i)
    }

    /// The list as stored.
    #[inline]
    pub(crate) fn list(&self) -> &Chunked<Arc<Linkage>, Vec<Arc<Linkage>>> {
        &self.list
    }

    /// The children in list order.
    #[inline]
    pub(crate) fn iter(&self) -> Iter<'_, Arc<Linkage>> {
        self.list.iter()
    }

    /// The children from position `from` on.
    #[inline]
    pub(crate) fn iter_from(&self, from: usize) -> Iter<'_, Arc<Linkage>> {
        self.list.iter_from(from)
    }

    /// Position of `child` in the list. A node never listed anywhere (a
    /// fresh one, about to be inserted) is in no list: no scan.
    #[inline]
    pub(crate) fn find(&self, child: &Linkage) -> Option<usize> {
        let p: *const Linkage = child;
        match &self.list {
            Chunked::Flat(v) if v.len() < INDEX_MIN => v.iter().position(|n| Arc::as_ptr(n) == p),
            _ => self.find_long(child),
        }
    }

    #[cold]
    fn find_long(&self, child: &Linkage) -> Option<usize> {
        if !child.is_listed() {
            return None;
        }
        let addr = child as *const Linkage as usize;
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
            .position_from(0, |n| Arc::as_ptr(n) as usize == addr)
    }
}

impl From<Vec<Arc<Linkage>>> for NodeList {
    fn from(list: Vec<Arc<Linkage>>) -> Self {
        for n in &list {
            n.mark_listed();
        }
        NodeList {
            list: list.into_iter().collect(),
            ..NodeList::default()
        }
    }
}

impl Clone for NodeList {
    /// A copy shares the list's chunks (`Chunked`) but not its index:
    /// copying an index is linear in the list, and the copy is made to be
    /// changed. Lookups in the copy are scans until it has paid for an
    /// index of its own, as a fresh list does.
    fn clone(&self) -> Self {
        NodeList {
            list: self.list.clone(),
            index: OnceLock::new(),
            scanned: AtomicUsize::new(0),
        }
    }
}

impl IndexOp<usize> for NodeList {
    type Output = Arc<Linkage>;
    #[inline]
    fn index(&self, i: usize) -> &Arc<Linkage> {
        &self.list[i]
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
            outsider.mark_listed();
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
    /// scanning, not before; a copy lists the same without it, and pays
    /// for its own after as many scans.
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
        assert!(copy.index.get().is_none(), "a copy starts unindexed");
        let extra = links(1).pop().expect("one");
        copy.push(extra.clone());
        for _ in 0..REBUILD_SCANS {
            assert_eq!(copy.find(&extra), Some(100));
        }
        assert!(copy.index.get().is_some());
        assert_eq!(list.find(&extra), None);
        assert_eq!(copy.find(&nodes[42]), Some(42));
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

    /// A node is listed from its first push (or list) on, for good; one
    /// never listed is in no list, without a scan.
    #[test]
    fn a_node_is_listed_once_it_enters_a_list() {
        let nodes = links(INDEX_MIN + 1);
        assert!(nodes.iter().all(|n| !n.is_listed()));
        let mut list = NodeList::from(nodes[..INDEX_MIN].to_vec());
        assert!(nodes[..INDEX_MIN].iter().all(|n| n.is_listed()));
        assert!(!nodes[INDEX_MIN].is_listed());
        assert_eq!(list.find(&nodes[INDEX_MIN]), None);
        list.push(nodes[INDEX_MIN].clone());
        assert!(nodes[INDEX_MIN].is_listed());
        assert_eq!(list.find(&nodes[INDEX_MIN]), Some(INDEX_MIN));
        list.remove(INDEX_MIN);
        assert!(nodes[INDEX_MIN].is_listed(), "never cleared");
    }

    /// The index hashes distinct addresses apart (a constant hash would
    /// still find every child, one probe chain for all of them).
    #[test]
    fn the_hasher_spreads_addresses() {
        let hash = |a: usize| {
            let mut h = AddrHasher::default();
            h.write_usize(a);
            h.finish()
        };
        let hashes: std::collections::HashSet<u64> =
            (0..64).map(|i| hash(0x1000 + 64 * i)).collect();
        assert_eq!(hashes.len(), 64);
        assert!(hashes.iter().all(|&h| h > 1));
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
