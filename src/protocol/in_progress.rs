//! The set of linkages one operation's nested bundle frames are bundling.
//!
//! Each nested frame extends its enclosing frame's set by one node, and
//! every child a frame looks at is tested against it, so on a chain of
//! depth d a list scanned from the head cost O(d) per test and O(d²) per
//! bundle (a root snapshot of a 10 000-deep chain took most of a second).
//! The set is a persistent list with Fenwick-style skips: the cell that
//! makes the list `len` long also indexes the `span = lowbit(len)` cells
//! ending at it (sorted, once `span` is large enough to be worth it) and
//! points past them. A test walks at most `SPAN_MIN` cells one by one and
//! then O(log d) indexed spans; building the indexes costs O(d log d)
//! over a whole chain.

use crate::linkage::Linkage;
use std::sync::Arc;

/// Spans shorter than this are walked cell by cell (no index).
const SPAN_MIN: usize = 16;

/// The linkages being bundled by one operation's nested bundle frames: a
/// persistent list (innermost first) that each nested frame extends in
/// amortised O(log d), tested in O(log d).
#[derive(Clone, Default)]
pub(crate) struct InProgress(Option<Arc<InProgressCell>>);

pub(crate) struct InProgressCell {
    /// Address of the linkage (compared only, never dereferenced).
    addr: usize,
    /// Cells in the list ending here (this one included).
    len: usize,
    /// For a span of at least `SPAN_MIN` cells: the sorted addresses of
    /// the span's cells, and the list that remains past them.
    span: Option<(Box<[usize]>, InProgress)>,
    outer: InProgress,
}

impl InProgress {
    /// Just `node`: a bundle that treats everything already bundled under
    /// `node` as inside it (an online insert pulling a subtree into the
    /// tree of `node`).
    pub(crate) fn of(node: &Arc<Linkage>) -> InProgress {
        InProgress::default().with(node)
    }

    /// `root` and every node of `nodes`: an online insert's bundle, which
    /// must leave alone everything already in the inserting tree.
    pub(crate) fn of_tree<'a>(
        root: &Arc<Linkage>,
        nodes: impl IntoIterator<Item = &'a Arc<Linkage>>,
    ) -> InProgress {
        nodes
            .into_iter()
            .fold(InProgress::of(root), |acc, n| acc.with(n))
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |c| c.len)
    }

    /// This list with `node` in front.
    pub(crate) fn with(&self, node: &Arc<Linkage>) -> InProgress {
        let addr = Arc::as_ptr(node) as usize;
        let len = self.len() + 1;
        let span_len = len & len.wrapping_neg();
        let span = (span_len >= SPAN_MIN).then(|| {
            let mut addrs = Vec::with_capacity(span_len);
            addrs.push(addr);
            let mut rest = self;
            for _ in 1..span_len {
                let cell = rest.0.as_ref().expect("the list is `len - 1` long");
                addrs.push(cell.addr);
                rest = &cell.outer;
            }
            addrs.sort_unstable();
            (addrs.into_boxed_slice(), rest.clone())
        });
        InProgress(Some(Arc::new(InProgressCell {
            addr,
            len,
            span,
            outer: self.clone(),
        })))
    }

    /// Whether `node` is being bundled by this operation.
    pub(crate) fn contains(&self, node: &Linkage) -> bool {
        self.search(node as *const Linkage as usize).0
    }

    /// Whether `addr` is in the list, and how many cells and spans the
    /// search looked at.
    fn search(&self, addr: usize) -> (bool, usize) {
        let mut cur = &self.0;
        let mut steps = 0;
        while let Some(cell) = cur {
            steps += 1;
            match &cell.span {
                Some((addrs, rest)) => {
                    if addrs.binary_search(&addr).is_ok() {
                        return (true, steps);
                    }
                    cur = &rest.0;
                }
                None => {
                    if cell.addr == addr {
                        return (true, steps);
                    }
                    cur = &cell.outer.0;
                }
            }
        }
        (false, steps)
    }

    /// The addresses in list order (innermost first).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn addrs(&self) -> impl Iterator<Item = usize> + '_ {
        let mut cur = &self.0;
        std::iter::from_fn(move || {
            let cell = cur.as_ref()?;
            cur = &cell.outer.0;
            Some(cell.addr)
        })
    }
}

impl Drop for InProgressCell {
    /// Iterative: a deep chain makes the list long. A span's `rest` is a
    /// list this cell's `outer` also leads to, so dropping it with its cell
    /// never frees more than a reference count.
    fn drop(&mut self) {
        super::bundle::drop_tail(self.outer.0.take(), |c| c.outer.0.take());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every prefix length, against a plain scan: members and non-members.
    #[test]
    fn contains_matches_a_scan_at_every_length() {
        let nodes: Vec<Arc<Linkage>> = (0..300)
            .map(|_| crate::node::Node::new(0u8).link.clone())
            .collect();
        let mut list = InProgress::default();
        for (i, n) in nodes.iter().enumerate() {
            list = list.with(n);
            assert_eq!(list.len(), i + 1);
            for (j, m) in nodes.iter().enumerate() {
                assert_eq!(list.contains(m), j <= i, "length {}, node {j}", i + 1);
            }
            let scan: Vec<usize> = list.addrs().collect();
            assert_eq!(scan.len(), i + 1);
        }
    }

    /// The point of the skips: deciding takes O(log d) steps, not O(d).
    #[test]
    fn a_search_takes_logarithmic_steps() {
        let nodes: Vec<Arc<Linkage>> = (0..5000)
            .map(|_| crate::node::Node::new(0u8).link.clone())
            .collect();
        let list = nodes.iter().fold(InProgress::default(), |l, n| l.with(n));
        let outsider = crate::node::Node::new(0u8).link.clone();
        // At most SPAN_MIN cells one by one, then one span per set bit.
        let bound = SPAN_MIN + usize::BITS as usize;
        for probe in [&outsider, &nodes[0], &nodes[2500], &nodes[4999]] {
            let (found, steps) = list.search(Arc::as_ptr(probe) as usize);
            assert_eq!(found, !Arc::ptr_eq(probe, &outsider));
            assert!(
                (1..=bound).contains(&steps),
                "{steps} steps in a list of 5000"
            );
        }
    }

    /// `of` and `of_tree`: the root alone, or the root and the tree's nodes.
    #[test]
    fn of_and_of_tree_hold_their_nodes() {
        let nodes: Vec<Arc<Linkage>> = (0..40)
            .map(|_| crate::node::Node::new(0u8).link.clone())
            .collect();
        let one = InProgress::of(&nodes[0]);
        assert!(one.contains(&nodes[0]) && !one.contains(&nodes[1]));
        let tree = InProgress::of_tree(&nodes[0], &nodes[1..30]);
        assert!(nodes[..30].iter().all(|n| tree.contains(n)));
        assert!(!nodes[30..].iter().any(|n| tree.contains(n)));
    }

    /// A very long list drops without recursion, on a small stack.
    #[test]
    fn a_long_list_drops_on_a_small_stack() {
        let node = crate::node::Node::new(0u8).link.clone();
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let list = (0..200_000).fold(InProgress::default(), |l, _| l.with(&node));
                assert!(list.contains(&node));
                drop(list);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// Lists share their tails: extending one never changes another.
    #[test]
    fn branches_are_independent() {
        let nodes: Vec<Arc<Linkage>> = (0..40)
            .map(|_| crate::node::Node::new(0u8).link.clone())
            .collect();
        let base = nodes[..31]
            .iter()
            .fold(InProgress::default(), |l, n| l.with(n));
        let a = base.with(&nodes[31]); // length 32: a span of 32
        let b = base.with(&nodes[32]);
        assert!(a.contains(&nodes[31]) && !a.contains(&nodes[32]));
        assert!(b.contains(&nodes[32]) && !b.contains(&nodes[31]));
        assert!(nodes[..31].iter().all(|n| a.contains(n) && b.contains(n)));
        drop(base);
        assert!(nodes[..31].iter().all(|n| a.contains(n) && b.contains(n)));
    }
}
