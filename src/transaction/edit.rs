//! Tree edits inside a transaction: insert, insert_online, release and
//! moves, with the child CASes and limbos they need.

use super::*;

impl Transaction {
    /// Inserts `child` as the last child of `parent`. The child's state is
    /// absorbed by the next snapshot of the subtree; it cannot be read in
    /// this transaction (use [`insert_online`](Self::insert_online) for that).
    ///
    /// A node may have several parents (a hard link).
    ///
    /// # Errors
    ///
    /// [`TreeError::NotFound`] for a parent outside this subtree,
    /// [`TreeError::AlreadyChild`], and [`TreeError::Cycle`] when `parent`
    /// is `child` or below it (checked again at commit, against inserts
    /// racing this one).
    pub fn insert(&mut self, parent: &impl AsNode, child: &impl AsNode) -> Result<(), TreeError> {
        self.insert_impl(parent.linkage(), child.linkage(), false)
    }

    /// Inserts `child` under `parent` and brings its current state into this
    /// transaction, so it can be read and written right away.
    ///
    /// One exception: a node that is (at the time of the call) only below a
    /// node this transaction released earlier in the same attempt is
    /// inserted as [`insert`](Self::insert) does: it is in the tree after
    /// the commit, but this attempt cannot read it. (Release and insert
    /// the node itself to move it with its state.)
    ///
    /// ```
    /// use kame_stm::Node;
    /// let rack = Node::new(0u32); // number of channels
    /// let ch = Node::named("ch0", 0.0_f64);
    /// // Plug in and configure in one step: nobody sees it half set up.
    /// rack.try_iterate_commit(|tr| {
    ///     tr.insert_online(&rack, &ch)?;
    ///     tr[&ch] = 1.25;
    ///     tr[&rack] += 1;
    ///     Ok::<(), kame_stm::TreeError>(())
    /// })?;
    /// assert_eq!((rack.read(), ch.read()), (1, 1.25));
    /// # Ok::<(), kame_stm::TreeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_online(
        &mut self,
        parent: &impl AsNode,
        child: &impl AsNode,
    ) -> Result<(), TreeError> {
        self.insert_impl(parent.linkage(), child.linkage(), true)
    }

    /// Removes `child` from `parent`'s children. The child keeps its state.
    ///
    /// ```
    /// use kame_stm::Node;
    /// let (a, b) = (Node::new(()), Node::new(()));
    /// let probe = Node::named("probe", 3u8);
    /// a.insert(&probe)?;
    /// // Move it from a to b: under a common root, in one transaction.
    /// let root = Node::new(());
    /// root.insert(&a)?;
    /// root.insert(&b)?;
    /// root.try_iterate_commit(|tr| {
    ///     tr.release(&a, &probe)?;
    ///     tr.insert(&b, &probe)
    /// })?;
    /// let shot = root.snapshot();
    /// assert_eq!(shot.children(&a)?.len() + shot.children(&b)?.len(), 1);
    /// assert_eq!(shot[&probe], 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TreeError::NotAChild`], [`TreeError::NotFound`] for a parent outside
    /// this subtree, and [`TreeError::ReleaseOfPulledNode`] for a node this
    /// transaction brought in with [`insert_online`](Self::insert_online)
    /// and then wrote.
    pub fn release(&mut self, parent: &impl AsNode, child: &impl AsNode) -> Result<(), TreeError> {
        let (parent, child) = (parent.linkage(), child.linkage());
        let pos = self
            .children_list(parent)?
            .and_then(|c| c.position(child, 0))
            .ok_or(TreeError::NotAChild)?;
        // A node this attempt pulled in: its limbo wrapper names the parent
        // it was pulled under, whose committed version does not list it, so
        // the packet it carries (the one pulled) is its state whether this
        // transaction commits or not. Releasing it unwritten needs no CAS;
        // written, any CAS would publish the uncommitted writes at once.
        let pulled = self
            .pulled
            .iter()
            .position(|p| Arc::ptr_eq(&p.child, child));
        if let Some(i) = pulled {
            let slot = self
                .children_list(parent)?
                .and_then(|c| c.slots[pos].clone());
            if !slot.is_some_and(|s| Arc::ptr_eq(&s, &self.pulled[i].packet)) {
                return Err(TreeError::ReleaseOfPulledNode);
            }
        }
        // The released subtree may hold the packet of a hard-linked node
        // that stays listed (void) elsewhere in this tree: mark the path
        // missing so the next snapshot bundles it back in.
        // An insert of this edge earlier in the attempt is undone: the
        // commit's cycle check must not test an edge that is not there.
        self.inserts
            .retain(|i| !(Arc::ptr_eq(&i.parent, parent) && Arc::ptr_eq(&i.child, child)));
        let pkt = self.packet_mut(parent, true)?;
        let ch = Arc::make_mut(pkt.children.as_mut().expect("has the child"));
        let slot = ch.slots.remove(pos);
        Arc::make_mut(&mut ch.nodes).remove(pos);
        if ch.nodes.is_empty() {
            pkt.children = None;
            pkt.missing = false;
        }
        if let Some(i) = pulled {
            let p = self.pulled.remove(i);
            crate::drive::forget_limbo(&p.wrapper);
            unlimbo(&p.child, &p.wrapper);
            return Ok(());
        }
        let Some(slot) = slot else {
            // Void slot: the child's packet lives under another parent.
            return Ok(());
        };
        if self.contains_link(child) {
            // Still reachable through another parent in this subtree (hard
            // link): its packet stays where it is.
            return Ok(());
        }
        if let Some(m) = self.moved.iter_mut().find(|m| Arc::ptr_eq(&m.child, child)) {
            if !Arc::ptr_eq(&m.limbo_parent, parent) {
                // Moved here earlier in this attempt: its wrapper is still
                // our limbo under the parent it was first released from.
                m.last_released = slot;
                return Ok(());
            }
        }
        let wrapper = self.release_in_limbo(child, parent, pos, &slot);
        self.moved.retain(|m| {
            let same = Arc::ptr_eq(&m.child, child);
            if let (true, Some(w)) = (same, &m.wrapper) {
                crate::drive::forget_limbo(w);
            }
            !same
        });
        self.moved.push(Moved {
            child: child.clone(),
            limbo_parent: parent.clone(),
            wrapper,
            last_released: slot.clone(),
        });
        // Still listed elsewhere in this tree with a void slot (a hard link
        // whose packet was under this parent): the packet moves there, as a
        // move does (`settle_moves`, then `unlimbo` after the commit; the
        // path is marked missing for the next bundle). Otherwise the node
        // would be listed but in no slot: unreadable in this attempt.
        if let Some((path, _)) = packet::find_void(&self.packet, |n| Arc::ptr_eq(n, child)) {
            Self::fill_void(&mut self.packet, &path, slot);
        }
        Ok(())
    }

    /// Puts `packet` in the void slot at `path` (from `find_void`), copying
    /// and marking missing every packet on the way.
    pub(super) fn fill_void(root: &mut Arc<Packet>, path: &[u32], packet: Arc<Packet>) {
        Self::set_slot(root, path, Some(packet));
    }

    /// Sets the slot at `path` (slot indices from `root`), copying and
    /// marking missing every packet on the way (the next bundle looks at
    /// that slot again).
    pub(super) fn set_slot(root: &mut Arc<Packet>, path: &[u32], slot: Option<Arc<Packet>>) {
        let (last, above) = path.split_last().expect("a slot is below the root");
        let p = copy_path(root, above, true);
        let ch = Arc::make_mut(p.children.as_mut().expect("the slot's list"));
        ch.slots[*last as usize] = slot;
    }

    /// The child CAS of a release: puts `child` in limbo under `parent`,
    /// carrying its *committed* packet (the one the snapshot read; `slot`,
    /// the working one, only for a node the snapshot did not hold):
    /// `settle_moves` puts the final packet in right before the commit, so
    /// a limbo of an attempt that does not commit never carries its
    /// writes. `None` when the attempt is (or gets) doomed: then it must not touch
    /// the child, and it records the release for its own view only (a
    /// later `insert_online` of the child reads `slot`).
    pub(super) fn release_in_limbo(
        &mut self,
        child: &Arc<Linkage>,
        parent: &Arc<Linkage>,
        pos: usize,
        slot: &Arc<Packet>,
    ) -> Option<Arc<PacketWrapper>> {
        if self.doomed {
            return None;
        }
        let serial = self.serial();
        let mut rebased = false;
        loop {
            // The committed packet, read after the base is validated (a
            // rebase may have given the base new packets).
            let carried = packet::find(&self.root, &self.old, child)
                .cloned()
                .unwrap_or_else(|| slot.clone());
            let Some(w) = dynamic::release_read_child(child, parent, &carried) else {
                // The child's packet is elsewhere: when only a bundle moved
                // it (a hard link below it taken to its other parent with
                // the child), reading the base again brings it back.
                if !rebased && self.rebase() {
                    rebased = true;
                    continue;
                }
                self.doom();
                return None;
            };
            if !self.validate_over(child, &w) {
                return None;
            }
            // From here on this attempt relies on its base (`is_plain`).
            let owner = self.limbo_owner();
            let limbo = Limbo {
                parent,
                index: pos,
                serial,
                owner: &owner,
            };
            match dynamic::release_cas_child(child, &w, &limbo, carried.clone(), &mut self.neg) {
                ChildCas::Done(installed) => {
                    crate::drive::hold_limbo(child, &installed);
                    return Some(installed);
                }
                ChildCas::Failed => {}
                ChildCas::Blocked => self.neg.wait(child),
            }
        }
    }

    /// After this attempt's commit: when its only edits of the tree were
    /// plain inserts of outside nodes directly under the root, bundles the
    /// inserted children into the root's packet at once (a seal,
    /// `seal_phase1`), so that the next snapshot finds it complete instead
    /// of bundling, and re-stamping, every child again: inserting n
    /// children one transaction each was quadratic. Best effort: a seal
    /// that meets anything else (a wrapper changed since the commit, an
    /// inserted child that is not a complete node of its own, a tag it may
    /// not pass) is given up where it stands, as a disturbed bundle is,
    /// and the next snapshot bundles as before.
    /// TLA+: SealBlocked
    pub(crate) fn seal_inserts(&mut self) {
        if !self.may_seal() {
            return;
        }
        #[cfg(all(test, not(loom)))]
        let op = crate::explore::validate::step("seal_start", self.neg.stamp, || self.seal_start());
        #[cfg(not(all(test, not(loom))))]
        let op = self.seal_start();
        if let Some(mut op) = op {
            // Blocked: given up, the seal never waits.
            while let Step::Running = op.step_traced(&mut self.neg) {}
        }
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::step("seal_end", self.neg.stamp, || self.seal_end());
        #[cfg(not(all(test, not(loom))))]
        self.seal_end();
    }

    /// Whether a committed attempt is one a seal is for (local: no load).
    pub(crate) fn may_seal(&self) -> bool {
        #[cfg(any(loom, test))]
        if SEAL_OFF.with(std::cell::Cell::get) {
            return false;
        }
        !self.inserts.is_empty()
            && self.is_plain()
            && self
                .inserts
                .iter()
                .all(|i| i.external && Arc::ptr_eq(&i.parent, &self.root))
    }

    /// Loads the root: a seal starts only from the wrapper this attempt's
    /// commit installed (its packet is the one committed), which that
    /// commit made from a complete base (`seal_phase1`'s argument).
    /// TLA+: SealStart
    pub(crate) fn seal_start(&self) -> Option<Operation> {
        let w = self.root.load();
        if !w.has_priority() || !Arc::ptr_eq(w.own_packet(), &self.packet) {
            return None;
        }
        let serial = serial::next(w.serial);
        let frame = BundleFrame::seal(self.root.clone(), w, serial);
        Some(Operation::new(Frame::from(frame)))
    }

    /// The seal is over: the tags its lost races left (the commit cleared
    /// the transaction's own already) are cleared, before anyone waits on
    /// them for long.
    /// TLA+: SealEnd
    pub(crate) fn seal_end(&mut self) {
        negotiation::clear_my_tags(&mut self.neg);
    }

    pub(super) fn insert_impl(
        &mut self,
        parent: &Arc<Linkage>,
        child: &Arc<Linkage>,
        online: bool,
    ) -> Result<(), TreeError> {
        if packet::find(&self.root, &self.packet, parent).is_none() {
            return Err(not_found(parent).into());
        }
        if Arc::ptr_eq(parent, child) || Arc::ptr_eq(&self.root, child) {
            return Err(TreeError::Cycle);
        }
        if self
            .children_list(parent)?
            .is_some_and(|c| c.position(child, 0).is_some())
        {
            return Err(TreeError::AlreadyChild);
        }
        // A cycle: `parent` is reachable from `child`, following the
        // working version for nodes in this tree (void slots included: a
        // hard-linked node's list is read where its packet is) and the
        // current state below nodes outside it.
        let released = self.released_subtrees();
        if structure::reaches(&self.root, &self.packet, &released, child, parent) {
            return Err(TreeError::Cycle);
        }
        let in_tree = self.contains_link(child);
        // A node released by this attempt: its packet as it is now (where
        // it was put back and released again with its new parent, maybe).
        let moved = if !in_tree && online && self.moved.iter().any(|m| Arc::ptr_eq(&m.child, child))
        {
            Some(self.take_moved(child))
        } else {
            None
        };
        let child_packet = if in_tree || !online {
            None
        } else if let Some(released) = moved {
            // Released by this attempt (its limbo wrapper names the parent
            // it was released from): a move. Its packet is the one it was
            // released with; no CAS now (that would leave the first
            // parent's committed, complete packet listing it with a slot
            // while its wrapper names another parent), `settle_moves` puts
            // the final packet in its limbo wrapper before the commit.
            Some(released)
        } else if self.released_packet_of(child).is_some() {
            // Below a node this attempt released: its wrapper names a parent
            // inside that released subtree, which after the commit is no
            // part of this tree, so this tree's slot could not be where
            // writers of it look. Pulling it would unbundle it through the
            // released node's limbo, which dooms this attempt, every
            // attempt. It joins as a plain insert does: the next snapshot
            // bundles it in through its own wrapper; this attempt cannot
            // read it (documented on `insert_online`).
            None
        } else {
            let pulled = self.pull_child(parent, child);
            let pulled = self.void_present(child, pulled);
            Some(self.adopt_moved(child, pulled))
        };
        self.inserts.push(structure::PendingInsert {
            parent: parent.clone(),
            child: child.clone(),
            external: !in_tree,
        });
        let pkt = self.packet_mut(parent, true)?;
        let ch = pkt.children.get_or_insert_with(|| {
            Arc::new(Children {
                nodes: Arc::default(),
                slots: Default::default(),
            })
        });
        let ch = Arc::make_mut(ch);
        Arc::make_mut(&mut ch.nodes).push(child.clone());
        ch.slots.push(child_packet);
        Ok(())
    }
}

/// Path-copies the tree `root` along the slot indices `path` and returns
/// the last packet on it, uniquely owned; with `mark_missing`, every packet
/// on the way is marked missing (the subtree needs bundling again).
pub(super) fn copy_path<'a>(
    root: &'a mut Arc<Packet>,
    path: &[u32],
    mark_missing: bool,
) -> &'a mut Packet {
    let mut cur = root;
    for &i in path {
        let p = Packet::make_mut(cur);
        p.missing |= mark_missing;
        let ch = Arc::make_mut(p.children.as_mut().expect("path goes through children"));
        cur = ch.slots[i as usize]
            .as_mut()
            .expect("path goes through present slots");
    }
    let p = Packet::make_mut(cur);
    p.missing |= mark_missing;
    p
}

/// Takes a child out of a limbo this attempt installed, once that limbo
/// names a parent that does not list the child (and never will: a release
/// that committed, a move that committed elsewhere, an online insert that
/// was released again or whose attempt did not commit). Its state is the
/// carried packet either way; a priority wrapper holding it says so
/// without naming that parent. Such a stale `bundled_by` edge is not an
/// edge of the tree, so it can close a loop with real ones (the parent
/// inserted below the child later) and every walk up that loop, a snapshot
/// or a commit, went round forever. A plain CAS from the wrapper this
/// attempt installed: when it fails, someone has taken the child out of
/// that limbo already (an unbundle or a bundle), which is as good.
pub(super) fn unlimbo(child: &Linkage, installed: &Arc<PacketWrapper>) {
    let Some(carried) = installed.packet.clone() else {
        return;
    };
    let next = PacketWrapper::priority(carried, serial::next(installed.serial));
    let _ = child.slot.compare_exchange(installed, next);
}

/// After a commit that lists `child` under `parent` with a present slot:
/// turns this attempt's limbo `installed` into a bundled reference to
/// `parent` (a plain CAS; when it fails, someone has taken the child out of
/// that limbo already, which is as good).
pub(super) fn rebundle(child: &Linkage, parent: &Arc<Linkage>, installed: &Arc<PacketWrapper>) {
    let next = PacketWrapper::bundled(parent, installed.index, serial::next(installed.serial));
    let _ = child.slot.compare_exchange(installed, next);
}

#[cfg(test)]
mod tests {
    //! What a release leaves in the child's wrapper once its attempt ends:
    //! never a limbo (its carried packet would go stale, and be read if the
    //! parent ever listed the child with a void slot).
    use crate::{Node, TreeError};

    /// The child's wrapper is a plain bundled reference to `parent`.
    fn bundled_into(child: &Node<u32>, parent: &Node<u32>) -> bool {
        let w = child.link.load();
        w.packet.is_none()
            && w.bundled_by
                .as_ref()
                .is_some_and(|b| std::ptr::eq(b.as_ptr(), std::sync::Arc::as_ptr(&parent.link)))
    }

    /// The node's own wrapper has priority and a complete packet.
    fn complete(p: &Node<u32>) -> bool {
        let w = p.link.load();
        w.has_priority() && w.own_packet().is_complete()
    }

    /// A plain insert under the root is sealed by its own transaction: the
    /// parent is complete and the child bundled into it right after the
    /// insert, with no snapshot, and the children sealed before keep their
    /// wrappers (a seal stamps only what was inserted).
    #[test]
    fn a_plain_insert_is_sealed_by_its_transaction() {
        let p = Node::new(0u32);
        let (a, b) = (Node::new(1u32), Node::new(2u32));
        p.insert(&a).unwrap();
        assert!(complete(&p) && bundled_into(&a, &p));
        let wa = a.link.load();
        p.insert(&b).unwrap();
        assert!(complete(&p) && bundled_into(&b, &p));
        assert!(
            std::sync::Arc::ptr_eq(&wa, &a.link.load()),
            "a was stamped again"
        );
        let shot = p.snapshot();
        assert_eq!((shot[&a], shot[&b]), (1, 2));
        // Many inserts in one transaction: one seal.
        let kids: Vec<Node<u32>> = (0..70).map(Node::new).collect();
        p.iterate_commit(|tr| {
            for k in &kids {
                tr.insert(&p, k).unwrap();
            }
        });
        assert!(complete(&p) && kids.iter().all(|k| bundled_into(k, &p)));
        assert!(std::sync::Arc::ptr_eq(&wa, &a.link.load()));
        assert_eq!(p.snapshot()[&kids[69]], 69);
    }

    /// No seal where the commit leaves more than void slots of outside
    /// nodes under the root (an insert below the root), and none that takes
    /// a child out of another tree's bundle (it gives up): the next
    /// snapshot bundles as before.
    #[test]
    fn a_seal_follows_only_plain_inserts_of_outside_nodes_under_the_root() {
        let (root, mid, c) = (Node::new(0u32), Node::new(0u32), Node::new(5u32));
        root.insert(&mid).unwrap();
        assert!(complete(&root));
        root.iterate_commit(|tr| tr.insert(&mid, &c).unwrap());
        assert!(!complete(&root), "an insert below the root was sealed");
        assert_eq!(root.snapshot()[&c], 5);
        assert!(complete(&root) && bundled_into(&c, &mid));

        let (q, p, d) = (Node::new(0u32), Node::new(0u32), Node::new(7u32));
        q.insert(&d).unwrap();
        assert!(bundled_into(&d, &q));
        p.insert(&d).unwrap();
        assert!(
            !complete(&p) && bundled_into(&d, &q),
            "a seal took d from q"
        );
        assert_eq!(p.snapshot()[&d], 7);
        assert!(complete(&p) && bundled_into(&d, &p));
    }

    fn tree() -> (Node<u32>, Node<u32>) {
        let (p, c) = (Node::new(0u32), Node::new(0u32));
        p.insert(&c).unwrap();
        let _ = p.snapshot();
        (p, c)
    }

    #[test]
    fn a_child_released_and_put_back_is_bundled_after_the_commit() {
        let (p, c) = tree();
        assert!(bundled_into(&c, &p));
        p.iterate_commit(|tr| {
            tr.release(&p, &c).unwrap();
            tr.insert_online(&p, &c).unwrap();
            tr[&c] += 1;
        });
        assert!(
            bundled_into(&c, &p),
            "a limbo outlived its committed attempt"
        );
        assert_eq!(p.snapshot()[&c], 1);
        assert_eq!(c.read(), 1);
    }

    /// R -> {P -> {C}}, and K -> {C} outside R's tree (C hard-linked). An
    /// attempt at R releases C from P, then pulls K in online: K's subtree
    /// lists C, which takes C back with the packet this attempt released
    /// it with (`adopt_moved`). K is then released again unwritten, which
    /// needs no CAS, and must be allowed: the pulled entry follows what
    /// the adoption made of K's packet (`repacked`).
    #[test]
    fn a_pulled_node_that_adopted_a_released_one_can_be_released_again() {
        let (r, p, c, k) = (
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
        );
        p.insert(&c).unwrap();
        r.insert(&p).unwrap();
        k.insert(&c).unwrap();
        let _ = r.snapshot();
        r.iterate_commit(|tr| {
            tr.release(&p, &c).unwrap();
            tr.insert_online(&r, &k).unwrap();
            assert!(tr.contains(&c), "C came back inside K");
            assert_eq!(tr.release(&r, &k), Ok(()));
        });
        let shot = r.snapshot();
        assert!(!shot.contains(&k));
        assert!(!shot.contains(&c));
        assert!(k.snapshot().contains(&c));
    }

    /// The working tree's child lists as edits see them: an insert is
    /// listed at once, released again, and a second release finds nothing.
    #[test]
    fn edits_see_the_working_child_lists() {
        let (p, c) = tree();
        let d = Node::new(0u32);
        p.iterate_commit(|tr| {
            assert!(tr.attempt() < 2, "attempt {}", tr.attempt());
            tr.insert(&p, &d).unwrap();
            assert_eq!(tr.insert(&p, &d), Err(TreeError::AlreadyChild));
            tr.swap(&p, &c, &d).unwrap();
            assert_eq!(tr.release(&p, &d), Ok(()));
            assert_eq!(tr.release(&p, &d), Err(TreeError::NotAChild));
        });
        assert!(!p.snapshot().contains(&d));
        assert!(p.snapshot().contains(&c));
    }

    /// An online insert of a node this tree already holds (a second
    /// parent for it) takes it as it is: no pull, no retry.
    #[test]
    fn an_online_insert_of_a_node_in_the_tree_takes_it_as_it_is() {
        let (r, a, h) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
        a.insert(&h).unwrap();
        r.insert(&a).unwrap();
        let _ = r.snapshot();
        let (_, stats) = r.iterate_commit_with_stats(|tr| {
            assert!(tr.attempt() < 2, "attempt {}", tr.attempt());
            tr.insert_online(&r, &h).unwrap();
            assert!(tr.contains(&h));
            tr[&h] += 1;
        });
        assert_eq!(stats.retries, 0);
        assert_eq!(h.read(), 1);
        assert_eq!(r.snapshot()[&h], 1);
    }

    #[test]
    fn a_child_released_by_a_failed_attempt_is_bundled_again() {
        let (p, c) = tree();
        let r: Result<_, TreeError> = p.try_iterate_commit(|tr| {
            tr.release(&p, &c)?;
            Err(TreeError::NotAChild)
        });
        assert_eq!(r.err(), Some(TreeError::NotAChild));
        assert!(bundled_into(&c, &p), "a limbo outlived its failed attempt");
        assert!(p.snapshot().contains(&c));
    }
}
