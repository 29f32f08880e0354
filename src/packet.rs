//! Packets: the immutable versions of a node's state.
//!
//! A [`Packet`] holds one node's payload and, when the node has children,
//! the list of its children with one slot per child. A slot holds the
//! child's packet when the child is *bundled* into this packet, or nothing
//! (a void slot: the child's packet lives elsewhere, e.g. under the other
//! parent of a hard link, or it has not been collected yet).
//!
//! Packets reachable from a published wrapper are never mutated. A
//! transaction path-copies them: `Arc::make_mut` clones a packet that is
//! shared with anyone else and mutates in place one that only the
//! transaction can see, which is exactly copy-on-write.

use crate::chunked::Chunked;
use crate::linkage::Linkage;
use crate::node_list::NodeList;
use smallvec::SmallVec;
use std::any::Any;
use std::sync::Arc;

/// Type-erased payload storage. A leaf's payload lives inline in its packet
/// (one allocation per written leaf); an inner node's payload is shared
/// between the node's versions, because bundling and unbundling re-pack
/// inner nodes without writing their payloads.
pub(crate) trait PayloadObj: Any + Send + Sync {
    /// A new packet holding this payload (copied, or shared for an inner
    /// node) with the given children and flag.
    fn repack(&self, children: Option<Arc<Children>>, missing: bool) -> Arc<Packet>;
    fn get(&self) -> &dyn Any;
    /// Mutable access; copies a shared payload first.
    fn get_mut(&mut self) -> &mut dyn Any;
}

/// A payload stored in the packet itself.
pub(crate) struct Inline<T>(T);

/// A payload shared by several packets (copy-on-write).
pub(crate) struct Shared<T>(Arc<T>);

fn pack<T: Clone + Send + Sync + 'static>(
    children: Option<Arc<Children>>,
    missing: bool,
    value: impl FnOnce() -> Arc<T>,
    inline: impl FnOnce() -> T,
) -> Arc<Packet> {
    if children.is_some() {
        Arc::new(PacketOf {
            children,
            missing,
            payload: Shared(value()),
        })
    } else {
        Arc::new(PacketOf {
            children,
            missing,
            payload: Inline(inline()),
        })
    }
}

impl<T: Clone + Send + Sync + 'static> PayloadObj for Inline<T> {
    fn repack(&self, children: Option<Arc<Children>>, missing: bool) -> Arc<Packet> {
        pack(
            children,
            missing,
            || Arc::new(self.0.clone()),
            || self.0.clone(),
        )
    }
    fn get(&self) -> &dyn Any {
        &self.0
    }
    fn get_mut(&mut self) -> &mut dyn Any {
        &mut self.0
    }
}

impl<T: Clone + Send + Sync + 'static> PayloadObj for Shared<T> {
    fn repack(&self, children: Option<Arc<Children>>, missing: bool) -> Arc<Packet> {
        pack(children, missing, || self.0.clone(), || (*self.0).clone())
    }
    fn get(&self) -> &dyn Any {
        &*self.0
    }
    fn get_mut(&mut self) -> &mut dyn Any {
        let v: &mut T = Arc::make_mut(&mut self.0);
        v
    }
}

/// One child slot per listed child; inline for small fan-outs, in shared
/// chunks for large ones (`chunked`).
pub(crate) type Slots = Chunked<Option<Arc<Packet>>>;

/// The children of a node: who they are, and their bundled packets.
#[derive(Clone)]
pub(crate) struct Children {
    /// Strong references: a child lives as long as some version lists it.
    /// Shared between packet versions; copied only when the list changes.
    pub(crate) nodes: Arc<NodeList>,
    /// `slots[i]` is the packet of `nodes[i]`, or `None` (void).
    pub(crate) slots: Slots,
}

impl Children {
    /// The (children, slots) pairs, slice by slice: walks over every slot
    /// run at slice speed however the list is stored.
    #[inline]
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&[Arc<Linkage>], &[Option<Arc<Packet>>])> {
        crate::chunked::zip_slices(self.nodes.list(), &self.slots)
    }

    /// Position of `child` in this list, trying `hint` first.
    pub(crate) fn position(&self, child: &Linkage, hint: usize) -> Option<usize> {
        let p: *const Linkage = child;
        if self.nodes.get(hint).is_some_and(|n| Arc::as_ptr(n) == p) {
            return Some(hint);
        }
        self.nodes.find(child)
    }
}

/// One immutable version of a node's state, its payload last (unsized:
/// `PacketOf<Inline<T>>` or `PacketOf<Shared<T>>` behind `Arc<Packet>`).
pub(crate) struct PacketOf<P: ?Sized> {
    pub(crate) children: Option<Arc<Children>>,
    /// Some descendant slot may be absent or out of date: this packet is not
    /// a snapshot of the subtree until it is bundled again.
    pub(crate) missing: bool,
    pub(crate) payload: P,
}

pub(crate) type Packet = PacketOf<dyn PayloadObj>;

impl<P: ?Sized> Drop for PacketOf<P> {
    /// Drops the children iteratively: a packet owns its children's
    /// packets, and through their linkages their whole subtrees, so the
    /// default recursive drop of a deep chain would overflow the stack.
    fn drop(&mut self) {
        if let Some(children) = self.children.take() {
            crate::dismantle::drop_children(children);
        }
    }
}

impl Packet {
    /// The first packet of a new node.
    pub(crate) fn leaf<T: Clone + Send + Sync + 'static>(payload: T) -> Arc<Packet> {
        Arc::new(PacketOf {
            children: None,
            missing: false,
            payload: Inline(payload),
        })
    }

    /// True when this packet is a complete, consistent subtree version.
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        !self.missing || self.children.is_none()
    }

    /// A copy that differs only in its `missing` flag.
    pub(crate) fn with_missing(&self, missing: bool) -> Arc<Packet> {
        self.payload.repack(self.children.clone(), missing)
    }

    /// A copy with other children.
    pub(crate) fn with_children(&self, children: Arc<Children>, missing: bool) -> Arc<Packet> {
        self.payload.repack(Some(children), missing)
    }

    /// `Arc::make_mut` for the unsized packet: copies it when shared.
    #[inline]
    pub(crate) fn make_mut(this: &mut Arc<Packet>) -> &mut Packet {
        if Arc::get_mut(this).is_none() {
            *this = this.with_missing(this.missing);
        }
        Arc::get_mut(this).expect("uniquely owned after the copy")
    }

    pub(crate) fn child_count(&self) -> usize {
        self.children.as_ref().map_or(0, |c| c.nodes.len())
    }
}

/// Finds the packet of `target` inside the tree rooted at `root` (which is
/// the packet of `root_link`). Skips void slots, so with hard links the one
/// slot that holds the packet is found. Iterative: deep trees cannot
/// overflow the stack.
pub(crate) fn find<'a>(
    root_link: &Linkage,
    root: &'a Arc<Packet>,
    target: &Linkage,
) -> Option<&'a Arc<Packet>> {
    if std::ptr::eq(root_link, target) {
        return Some(root);
    }
    if let Some(i) = direct_child(root, target) {
        return root.children.as_ref().and_then(|c| c.slots[i].as_ref());
    }
    if !target.is_listed() {
        // In no child list, so in no tree but its own: no walk.
        return None;
    }
    let t: *const Linkage = target;
    let mut stack: SmallVec<[&'a Arc<Packet>; 16]> = SmallVec::new();
    stack.push(root);
    while let Some(p) = stack.pop() {
        let Some(ch) = p.children.as_ref() else {
            continue;
        };
        for (ns, ss) in ch.pairs() {
            for (n, slot) in ns.iter().zip(ss) {
                if let Some(s) = slot {
                    if Arc::as_ptr(n) == t {
                        return Some(s);
                    }
                    if s.children.is_some() {
                        stack.push(s);
                    }
                }
            }
        }
    }
    None
}

/// Index of `target` among `p`'s direct children, if it is one with a
/// present slot: a tight pointer scan, the common case of every lookup.
#[inline]
fn direct_child(p: &Packet, target: &Linkage) -> Option<usize> {
    let ch = p.children.as_ref()?;
    let i = ch.nodes.find(target)?;
    if ch.slots[i].is_some() {
        return Some(i);
    }
    present_duplicate(ch, target, i + 1)
}

/// A node listed twice (a node may be), the first time with a void slot:
/// its first present slot from `from` on.
#[cold]
fn present_duplicate(ch: &Children, target: &Linkage, from: usize) -> Option<usize> {
    let t: *const Linkage = target;
    ch.nodes
        .iter_from(from)
        .zip(ch.slots.iter_from(from))
        .position(|(n, s)| Arc::as_ptr(n) == t && s.is_some())
        .map(|k| from + k)
}

/// Slot indices leading from `root` to `target` (empty for the root).
pub(crate) fn find_path(
    root_link: &Linkage,
    root: &Arc<Packet>,
    target: &Linkage,
) -> Option<SmallVec<[u32; 8]>> {
    if std::ptr::eq(root_link, target) {
        return Some(SmallVec::new());
    }
    if let Some(i) = direct_child(root, target) {
        let mut path = SmallVec::new();
        path.push(i as u32);
        return Some(path);
    }
    let t: *const Linkage = target;
    let mut stack = Walk::new(root);
    while let Some((ch, i)) = stack.next() {
        if let Some(s) = &ch.slots[i] {
            if Arc::as_ptr(&ch.nodes[i]) == t {
                let mut path = stack.path();
                debug_assert_eq!(*path.last().unwrap(), i as u32);
                path.shrink_to_fit();
                return Some(path);
            }
            stack.enter(s);
        }
    }
    None
}

/// A depth-first walk of a packet tree with an explicit stack (a chain
/// 10 000 deep must not recurse): per level, the children and the indices
/// still to visit. Ranges, not counters: the walk moves on by
/// `Range::next` alone.
struct Walk<'a> {
    stack: SmallVec<[(&'a Children, std::ops::Range<usize>); 16]>,
}

impl<'a> Walk<'a> {
    fn new(root: &'a Packet) -> Self {
        let mut w = Walk {
            stack: SmallVec::new(),
        };
        w.enter(root);
        w
    }

    /// The next child of the deepest level with one left: its level's
    /// children and its index there.
    fn next(&mut self) -> Option<(&'a Children, usize)> {
        loop {
            let top = self.stack.last_mut()?;
            match top.1.next() {
                Some(i) => return Some((top.0, i)),
                None => {
                    self.stack.pop();
                }
            }
        }
    }

    /// Walks `p`'s children next (before the rest of the current level).
    fn enter(&mut self, p: &'a Packet) {
        if let Some(ch) = p.children.as_deref() {
            self.stack.push((ch, 0..ch.nodes.len()));
        }
    }

    /// The slot indices from the root to the child `next` returned last.
    fn path(&self) -> SmallVec<[u32; 8]> {
        self.stack
            .iter()
            .map(|(_, rest)| (rest.start - 1) as u32)
            .collect()
    }
}

/// Which slots [`find_slot`] may return.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotKind {
    Void,
    Present,
    Either,
}

/// Slot indices leading to the first slot of `kind` (depth first) whose
/// node `want` accepts, and that node; the search does not go below an
/// accepted present slot. Iterative, like [`find_path`].
pub(crate) fn find_slot(
    root: &Arc<Packet>,
    kind: SlotKind,
    mut want: impl FnMut(&Arc<Linkage>) -> bool,
) -> Option<(SmallVec<[u32; 8]>, Arc<Linkage>)> {
    let mut stack = Walk::new(root);
    while let Some((ch, i)) = stack.next() {
        let slot = &ch.slots[i];
        let of_kind = match kind {
            SlotKind::Void => slot.is_none(),
            SlotKind::Present => slot.is_some(),
            SlotKind::Either => true,
        };
        if of_kind && want(&ch.nodes[i]) {
            return Some((stack.path(), ch.nodes[i].clone()));
        }
        if let Some(s) = slot {
            stack.enter(s);
        }
    }
    None
}

/// [`find_slot`] for void slots.
pub(crate) fn find_void(
    root: &Arc<Packet>,
    want: impl FnMut(&Arc<Linkage>) -> bool,
) -> Option<(SmallVec<[u32; 8]>, Arc<Linkage>)> {
    find_slot(root, SlotKind::Void, want)
}

/// Every node whose packet the tree holds (present slots only).
pub(crate) fn nodes_in(root: &Packet) -> Vec<Arc<Linkage>> {
    let mut out = Vec::new();
    let mut stack: Vec<&Packet> = vec![root];
    while let Some(p) = stack.pop() {
        let Some(ch) = p.children.as_ref() else {
            continue;
        };
        for (n, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
            if let Some(s) = slot {
                out.push(n.clone());
                stack.push(s);
            }
        }
    }
    out
}

/// Every void slot of the tree names a node whose packet is present in
/// another slot of the same tree (the Phase-4 gate for hard links).
pub(crate) fn all_sub_reachable(root: &Packet) -> bool {
    let mut present: Vec<*const Linkage> = Vec::new();
    let mut void: Vec<*const Linkage> = Vec::new();
    let mut stack: Vec<&Packet> = vec![root];
    while let Some(p) = stack.pop() {
        let Some(ch) = p.children.as_ref() else {
            continue;
        };
        for (n, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
            match slot {
                Some(s) => {
                    present.push(Arc::as_ptr(n));
                    stack.push(s);
                }
                None => void.push(Arc::as_ptr(n)),
            }
        }
    }
    if void.is_empty() {
        return true;
    }
    // Sorted once: a wide node with many hard links is not quadratic.
    present.sort_unstable();
    void.iter().all(|v| present.binary_search(v).is_ok())
}

impl Packet {
    /// The payload as `P`. Callers only ask for the type the node was
    /// created with (typed handles), so a mismatch is a bug in this crate.
    #[inline]
    pub(crate) fn payload<P: 'static>(&self) -> &P {
        self.payload
            .get()
            .downcast_ref::<P>()
            .expect("payload type is fixed at node creation")
    }

    /// The payload as `&mut P`, copying it first if anyone else shares it.
    #[inline]
    pub(crate) fn payload_mut<P: 'static>(&mut self) -> &mut P {
        self.payload
            .get_mut()
            .downcast_mut::<P>()
            .expect("payload type is fixed at node creation")
    }
}

#[cfg(test)]
mod tests {
    //! The tree searches on hand-built packets: exact indices and exact
    //! packets (by pointer), so that an off-by-one or a wrong slot fails.
    use super::*;
    use std::any::TypeId;

    fn node() -> Arc<Linkage> {
        Linkage::new(Packet::leaf(0u32), TypeId::of::<u32>(), "u32", None)
    }

    fn leaf() -> Arc<Packet> {
        Packet::leaf(0u32)
    }

    /// A packet listing `kids`, each with its slot (`None`: void).
    fn inner(kids: &[(&Arc<Linkage>, Option<&Arc<Packet>>)]) -> Arc<Packet> {
        let nodes: Vec<Arc<Linkage>> = kids.iter().map(|(n, _)| (*n).clone()).collect();
        let slots: Slots = kids.iter().map(|(_, s)| s.cloned()).collect();
        let children = Children {
            nodes: Arc::new(NodeList::from(nodes)),
            slots,
        };
        leaf().with_children(Arc::new(children), false)
    }

    fn same(a: Option<&Arc<Packet>>, b: &Arc<Packet>) -> bool {
        a.is_some_and(|a| Arc::ptr_eq(a, b))
    }

    fn path(p: &[u32]) -> Option<SmallVec<[u32; 8]>> {
        Some(p.iter().copied().collect())
    }

    #[test]
    fn position_tries_the_hint_then_scans() {
        let (a, b, c, x) = (node(), node(), node(), node());
        let p = inner(&[(&a, None), (&b, None), (&c, None)]);
        let ch = p.children.as_ref().unwrap();
        assert_eq!(ch.position(&b, 1), Some(1));
        assert_eq!(ch.position(&b, 0), Some(1));
        assert_eq!(ch.position(&c, 9), Some(2));
        assert_eq!(ch.position(&a, 2), Some(0));
        assert_eq!(ch.position(&x, 0), None);
        assert_eq!(p.child_count(), 3);
        assert_eq!(leaf().child_count(), 0);
    }

    #[test]
    fn completeness_is_the_missing_flag_of_an_inner_packet() {
        let a = node();
        let p = inner(&[(&a, Some(&leaf()))]);
        assert!(p.is_complete());
        assert!(!p.with_missing(true).is_complete());
        assert!(p.with_missing(true).with_missing(false).is_complete());
        // A leaf has nothing below it to miss.
        assert!(leaf().with_missing(true).is_complete());
    }

    /// R -> [A -> [X, B -> [C]], Y]: every search finds the exact slot.
    #[test]
    fn find_and_find_path_reach_every_depth() {
        let (r, a, b, c, x, y, z) = (node(), node(), node(), node(), node(), node(), node());
        let (pc, px, py) = (leaf(), leaf(), leaf());
        let pb = inner(&[(&c, Some(&pc))]);
        let pa = inner(&[(&x, Some(&px)), (&b, Some(&pb))]);
        let pr = inner(&[(&a, Some(&pa)), (&y, Some(&py))]);
        assert!(same(find(&r, &pr, &r), &pr));
        assert!(same(find(&r, &pr, &a), &pa));
        assert!(same(find(&r, &pr, &y), &py));
        assert!(same(find(&r, &pr, &x), &px));
        assert!(same(find(&r, &pr, &b), &pb));
        assert!(same(find(&r, &pr, &c), &pc));
        assert!(find(&r, &pr, &z).is_none());
        assert_eq!(find_path(&r, &pr, &r), path(&[]));
        assert_eq!(find_path(&r, &pr, &a), path(&[0]));
        assert_eq!(find_path(&r, &pr, &y), path(&[1]));
        assert_eq!(find_path(&r, &pr, &x), path(&[0, 0]));
        assert_eq!(find_path(&r, &pr, &b), path(&[0, 1]));
        assert_eq!(find_path(&r, &pr, &c), path(&[0, 1, 0]));
        assert_eq!(find_path(&r, &pr, &z), None);
        // The path leads to the packet `find` returns.
        let mut p = &pr;
        for &i in find_path(&r, &pr, &c).unwrap().iter() {
            p = p.children.as_ref().unwrap().slots[i as usize]
                .as_ref()
                .unwrap();
        }
        assert!(Arc::ptr_eq(p, &pc));
    }

    /// A node listed twice, void first: the present slot is found, at
    /// every position of the void one.
    #[test]
    fn a_node_listed_twice_is_found_in_its_present_slot() {
        let (r, a, b, q) = (node(), node(), node(), node());
        let (pa, pb) = (leaf(), leaf());
        let p1 = inner(&[(&a, None), (&b, Some(&pb)), (&a, Some(&pa))]);
        assert_eq!(direct_child(&p1, &a), Some(2));
        assert_eq!(direct_child(&p1, &b), Some(1));
        assert_eq!(direct_child(&p1, &q), None);
        assert!(same(find(&r, &p1, &a), &pa));
        assert_eq!(find_path(&r, &p1, &a), path(&[2]));
        // A hint names the very slot (a bundled reference's index).
        let ch1 = p1.children.as_ref().unwrap();
        assert_eq!(ch1.position(&a, 2), Some(2));
        assert_eq!(ch1.position(&a, 1), Some(0));
        // Listed three times, twice void before the present slot.
        let p5 = inner(&[(&a, None), (&b, Some(&pb)), (&a, None), (&a, Some(&pa))]);
        assert_eq!(direct_child(&p5, &a), Some(3));
        assert!(same(find(&r, &p5, &a), &pa));
        let p2 = inner(&[(&b, Some(&pb)), (&a, None), (&q, None), (&a, Some(&pa))]);
        assert_eq!(direct_child(&p2, &a), Some(3));
        assert_eq!(direct_child(&p2, &b), Some(0));
        assert_eq!(direct_child(&p2, &q), None);
        assert!(same(find(&r, &p2, &a), &pa));
        assert_eq!(find_path(&r, &p2, &a), path(&[3]));
        assert!(same(find(&r, &p2, &b), &pb));
        // Only void: not found (no packet to return).
        let p3 = inner(&[(&b, Some(&pb)), (&a, None)]);
        assert_eq!(direct_child(&p3, &a), None);
        assert!(find(&r, &p3, &a).is_none());
        assert_eq!(find_path(&r, &p3, &a), None);
        // Void here, present one level down (a hard link).
        let pq = inner(&[(&a, Some(&pa))]);
        let p4 = inner(&[(&a, None), (&q, Some(&pq))]);
        assert!(same(find(&r, &p4, &a), &pa));
        assert_eq!(find_path(&r, &p4, &a), path(&[1, 0]));
    }

    /// R -> [A void, B -> [C void, D -> [E]], F]
    #[test]
    fn find_slot_returns_the_first_slot_of_its_kind_depth_first() {
        let (a, b, c, d, e, f) = (node(), node(), node(), node(), node(), node());
        let (pe, pf) = (leaf(), leaf());
        let pd = inner(&[(&e, Some(&pe))]);
        let pb = inner(&[(&c, None), (&d, Some(&pd))]);
        let pr = inner(&[(&a, None), (&b, Some(&pb)), (&f, Some(&pf))]);
        let is = |n: &Arc<Linkage>| {
            let n = n.clone();
            move |m: &Arc<Linkage>| Arc::ptr_eq(m, &n)
        };
        let hit = |r: Option<(SmallVec<[u32; 8]>, Arc<Linkage>)>| r.map(|(p, n)| (p.to_vec(), n));
        let at = |p: &[u32], n: &Arc<Linkage>| Some((p.to_vec(), n.clone()));
        let eq =
            |a: Option<(Vec<u32>, Arc<Linkage>)>, b: Option<(Vec<u32>, Arc<Linkage>)>| match (a, b)
            {
                (None, None) => true,
                (Some((p, n)), Some((q, m))) => p == q && Arc::ptr_eq(&n, &m),
                _ => false,
            };
        // The first void slot, depth first.
        assert!(eq(hit(find_void(&pr, |_| true)), at(&[0], &a)));
        // A void slot below a present one.
        assert!(eq(hit(find_void(&pr, is(&c))), at(&[1, 0], &c)));
        // A present node is not a void slot.
        assert!(eq(hit(find_void(&pr, is(&e))), None));
        assert!(eq(
            hit(find_slot(&pr, SlotKind::Present, |_| true)),
            at(&[1], &b)
        ));
        assert!(eq(
            hit(find_slot(&pr, SlotKind::Present, is(&e))),
            at(&[1, 1, 0], &e)
        ));
        assert!(eq(
            hit(find_slot(&pr, SlotKind::Present, is(&f))),
            at(&[2], &f)
        ));
        assert!(eq(hit(find_slot(&pr, SlotKind::Present, is(&a))), None));
        assert!(eq(
            hit(find_slot(&pr, SlotKind::Either, is(&c))),
            at(&[1, 0], &c)
        ));
        assert!(eq(
            hit(find_slot(&pr, SlotKind::Either, is(&a))),
            at(&[0], &a)
        ));
        // The search does not go below an accepted present slot: B
        // accepted, so nothing below it is visited.
        let mut seen = Vec::new();
        let r = find_slot(&pr, SlotKind::Present, |n| {
            seen.push(n.clone());
            Arc::ptr_eq(n, &b)
        });
        assert!(eq(hit(r), at(&[1], &b)));
        assert_eq!(seen.len(), 1, "only B was offered (A is void)");
        let mut seen = 0;
        assert!(
            find_slot(&pr, SlotKind::Either, |_| {
                seen += 1;
                false
            })
            .is_none()
        );
        assert_eq!(seen, 6, "every slot, void or present, offered once");
    }

    #[test]
    fn nodes_in_lists_present_slots_and_reachability_checks_voids() {
        let (a, b, c, d) = (node(), node(), node(), node());
        let pb = inner(&[(&c, Some(&leaf())), (&a, None)]);
        let pr = inner(&[(&a, Some(&leaf())), (&b, Some(&pb)), (&d, None)]);
        let mut got: Vec<*const Linkage> = nodes_in(&pr).iter().map(Arc::as_ptr).collect();
        let mut want: Vec<*const Linkage> = [&a, &b, &c].iter().map(|n| Arc::as_ptr(n)).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // D is void and nowhere present.
        assert!(!all_sub_reachable(&pr));
        let pr2 = inner(&[(&a, Some(&leaf())), (&b, Some(&pb))]);
        // A is void under B but present under R.
        assert!(all_sub_reachable(&pr2));
        // B alone: A is void there and nowhere present.
        assert!(!all_sub_reachable(&pb));
        assert!(all_sub_reachable(&leaf()));
    }
}
