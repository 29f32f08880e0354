//! Where a moved or pulled child's packet lives during an attempt: the
//! limbos of released children, settled before the commit, and the state
//! an online insert pulls in.

use super::*;

impl Transaction {
    /// Before the commit: every child this attempt released and then
    /// inserted again (a move) or released again from where it was moved,
    /// must carry in its limbo wrapper the packet it ends up with, because
    /// its wrapper still names the parent it was first released from,
    /// which will not list it: after the commit the carried packet is its
    /// state. Until the commit that parent does list it, so the carried
    /// packet is not read. `false`: the attempt is doomed.
    pub(crate) fn settle_moves(&mut self) -> bool {
        if self.doomed {
            return false;
        }
        // Nothing in the loop adds or removes a move.
        for i in 0..self.moved.len() {
            let m = &self.moved[i];
            let desired = self
                .final_packet_of(&m.child)
                .unwrap_or_else(|| m.last_released.clone());
            let wrapper = m
                .wrapper
                .as_ref()
                .expect("not doomed: every release installed one");
            let carried = wrapper.packet.as_ref().expect("a limbo wrapper carries");
            if Arc::ptr_eq(carried, &desired) {
                continue;
            }
            let (child, parent, expected) =
                (m.child.clone(), m.limbo_parent.clone(), wrapper.clone());
            let serial = self.serial();
            let owner = self.limbo_owner();
            loop {
                if !self.validate() {
                    return false;
                }
                let limbo = Limbo {
                    parent: &parent,
                    index: expected.index,
                    serial,
                    owner: &owner,
                };
                match dynamic::release_cas_child(
                    &child,
                    &expected,
                    &limbo,
                    desired.clone(),
                    &mut self.neg,
                ) {
                    ChildCas::Done(installed) => {
                        crate::drive::forget_limbo(&expected);
                        crate::drive::hold_limbo(&child, &installed);
                        self.moved[i].wrapper = Some(installed);
                        break;
                    }
                    ChildCas::Failed => {
                        // Someone committed to the child since: lost.
                        self.doom();
                        return false;
                    }
                    ChildCas::Blocked => self.neg.wait(&child),
                }
            }
        }
        true
    }

    /// The subtrees this attempt released and did not put back, with their
    /// packets as released: their edges are this attempt's too (for the
    /// cycle check).
    pub(crate) fn released_subtrees(&self) -> Vec<(Arc<Linkage>, Arc<Packet>)> {
        self.detached()
            .map(|m| (m.child.clone(), m.last_released.clone()))
            .collect()
    }

    /// The released children that head a detached subtree once this attempt
    /// commits: not in the working tree, and not inside another such
    /// subtree (a node released, put back elsewhere, and then released
    /// with its new parent lives in the parent's released packet; its own
    /// entry's packet is an earlier one).
    pub(super) fn detached(&self) -> impl Iterator<Item = &Moved> {
        let out: Vec<&Moved> = self
            .moved
            .iter()
            .filter(|m| !self.contains_link(&m.child))
            .collect();
        let heads: Vec<&Moved> = out
            .iter()
            .filter(|m| {
                !out.iter().any(|o| {
                    !Arc::ptr_eq(&o.child, &m.child)
                        && packet::find(&o.child, &o.last_released, &m.child).is_some()
                })
            })
            .copied()
            .collect();
        heads.into_iter()
    }

    /// The packet `node` has once this attempt commits: in the working tree,
    /// or else in a subtree this attempt released (with its packet as
    /// released). `None`: neither (it left the tree, or was never in it).
    pub(super) fn final_packet_of(&self, node: &Linkage) -> Option<Arc<Packet>> {
        packet::find(&self.root, &self.packet, node)
            .cloned()
            .or_else(|| self.released_packet_of(node))
    }

    /// The packet of `node` inside a subtree this attempt released (the
    /// released node itself or one below it), if any.
    pub(super) fn released_packet_of(&self, node: &Linkage) -> Option<Arc<Packet>> {
        self.detached()
            .find_map(|m| packet::find(&m.child, &m.last_released, node).cloned())
    }

    /// The packet of a node this attempt released, taken for a move: where
    /// it is now. If it was put back and then released again with another
    /// node (so it lives in that node's released packet), its slot there is
    /// made void, on a path marked missing: the detached subtree must not
    /// keep a second, stale copy of it (it would be what a reader of the
    /// node finds through that parent after the commit: a lost update).
    pub(super) fn take_moved(&mut self, node: &Arc<Linkage>) -> Arc<Packet> {
        let own = self
            .moved
            .iter()
            .position(|m| Arc::ptr_eq(&m.child, node))
            .expect("a released node");
        let heads: Vec<*const Linkage> = self.detached().map(|m| Arc::as_ptr(&m.child)).collect();
        for i in 0..self.moved.len() {
            let m = &self.moved[i];
            if Arc::ptr_eq(&m.child, node) || !heads.contains(&Arc::as_ptr(&m.child)) {
                continue;
            }
            let Some(path) = packet::find_path(&m.child, &m.last_released, node) else {
                continue;
            };
            let found = packet::find(&m.child, &m.last_released, node)
                .expect("found above")
                .clone();
            let mut head = m.last_released.clone();
            Self::set_slot(&mut head, &path, None);
            self.moved[i].last_released = head;
            return found;
        }
        self.moved[own].last_released.clone()
    }

    /// A subtree pulled in by an online insert may hold the packet of a
    /// node this tree holds already (a hard link: the child's subtree and
    /// this tree share a node). One node has one packet in a working tree:
    /// the copy this tree holds stays (it is the one the commit validates;
    /// if the node's packet moved into the child since the snapshot, this
    /// attempt cannot commit anyway), the pulled copy becomes a void slot
    /// on a path marked missing, which is what a bundle of the child as a
    /// part of this tree makes of it (`pull_child`). Two copies made reads
    /// and writes of that node disagree within one attempt.
    ///
    /// The same for a node inside a subtree this attempt released: its
    /// state in this attempt is in that released packet (written there,
    /// maybe), and it joins as a direct insert of it does (void, see
    /// `insert_impl`); `adopt_moved` then puts a released node itself back
    /// with its released packet. A pull that found such a node present
    /// (a doomed attempt reads the child without colliding with its own
    /// limbo) showed the committed copy: a child list without the child
    /// this attempt had released from it.
    pub(super) fn void_present(
        &mut self,
        child: &Arc<Linkage>,
        mut pulled: Arc<Packet>,
    ) -> Arc<Packet> {
        let mut changed = false;
        while let Some((path, _)) = packet::find_slot(&pulled, SlotKind::Present, |n| {
            self.contains_link(n) || self.released_packet_of(n).is_some()
        }) {
            Self::set_slot(&mut pulled, &path, None);
            changed = true;
        }
        if changed {
            self.repacked(child, &pulled);
        }
        pulled
    }

    /// The pulled node `child` now holds `pulled` in the working tree: a
    /// release of it compares with that.
    pub(super) fn repacked(&mut self, child: &Arc<Linkage>, pulled: &Arc<Packet>) {
        if let Some(entry) = self
            .pulled
            .iter_mut()
            .find(|p| Arc::ptr_eq(&p.child, child))
        {
            entry.packet = pulled.clone();
        }
    }

    /// A subtree pulled in by an online insert may list a node this attempt
    /// released: as a void slot (its packet was bundled here, so the pull
    /// left it void), or with the committed copy, which lacks what this
    /// attempt did to it (its view showed a child it had released). The
    /// node moves into the pulled subtree with the
    /// packet it was released with, on a path marked missing, as a move
    /// does: `settle_moves` puts its final packet in its limbo wrapper, and
    /// after the commit it takes priority with it (`unlimbo`), so its own
    /// wrapper leads to that packet and the next bundle collects it. Without
    /// this it was in no slot of the working tree: unreadable.
    ///
    /// Not so for a node *below* a released one: its wrapper names a
    /// parent in the released subtree, which would keep pointing at the
    /// packet it had there while this tree's copy is written (a lost
    /// update). Its slot stays void: the next snapshot bundles it in.
    pub(super) fn adopt_moved(
        &mut self,
        child: &Arc<Linkage>,
        mut pulled: Arc<Packet>,
    ) -> Arc<Packet> {
        if self.moved.is_empty() {
            return pulled;
        }
        let mut adopted: Vec<*const Linkage> = Vec::new();
        loop {
            let want = |n: &Arc<Linkage>| {
                !adopted.contains(&Arc::as_ptr(n))
                    && !self.contains_link(n)
                    && self.moved.iter().any(|m| Arc::ptr_eq(&m.child, n))
            };
            // A void slot, or a present one: the pulled subtree's copy of a
            // node this attempt released is the committed one, without what
            // this attempt did to it (its children released, its payload
            // written); the released packet is its state in this attempt.
            let Some((path, node)) = packet::find_slot(&pulled, SlotKind::Either, want) else {
                break;
            };
            adopted.push(Arc::as_ptr(&node));
            let released = self.take_moved(&node);
            Self::fill_void(&mut pulled, &path, released);
        }
        if !adopted.is_empty() {
            self.repacked(child, &pulled);
        }
        pulled
    }

    /// Online insert: puts the child in limbo under `parent` and returns its
    /// packet. A doomed attempt only reads the child, bundled (it will not
    /// commit).
    pub(super) fn pull_child(
        &mut self,
        parent: &Arc<Linkage>,
        child: &Arc<Linkage>,
    ) -> Arc<Packet> {
        let index = self
            .children_list(parent)
            .ok()
            .flatten()
            .map_or(0, |c| c.nodes.len());
        let serial = self.serial();
        loop {
            let read = match dynamic::insert_read_child(child, parent) {
                InsertRead::NeedsBundle(w) => {
                    // Bundle the child as a part of this transaction's
                    // tree: a node below it whose packet lives in this tree
                    // (a hard link) collides and stays there (a void slot
                    // in the child's packet), instead of being stolen,
                    // which would doom this attempt and every later one.
                    // The result may be marked missing for those void
                    // slots only; their packets are in this tree. The same
                    // for a node in a subtree this attempt released: its
                    // packet is in our limbo, and taking it out of there
                    // doomed this attempt, every attempt.
                    let bundle_serial = serial::next(w.serial);
                    let mut held = packet::nodes_in(&self.packet);
                    for m in self.detached() {
                        held.push(m.child.clone());
                        held.extend(packet::nodes_in(&m.last_released));
                    }
                    let tree = InProgress::of_tree(&self.root, &held);
                    let frame = BundleFrame::new(child.clone(), w, bundle_serial, false, &tree);
                    match Operation::run_frame(Frame::from(frame), &mut self.neg) {
                        Outcome::Bundle(BundleResult::Success(w)) => InsertRead::Ready(w),
                        _ => continue,
                    }
                }
                read => read,
            };
            match read {
                InsertRead::Ready(w) => {
                    let packet = w.packet.clone().expect("a ready child carries its packet");
                    // A doomed attempt (it will not commit) only reads the
                    // child, complete, so its view stays whole.
                    if self.doomed || !self.validate_over(child, &w) {
                        return packet;
                    }
                    let owner = self.limbo_owner();
                    let limbo = Limbo {
                        parent,
                        index,
                        serial,
                        owner: &owner,
                    };
                    match dynamic::insert_cas_child(child, &w, &limbo, &mut self.neg) {
                        ChildCas::Done(wrapper) => {
                            crate::drive::hold_limbo(child, &wrapper);
                            self.pulled.push(Pulled {
                                child: child.clone(),
                                packet: packet.clone(),
                                wrapper,
                            });
                            return packet;
                        }
                        ChildCas::Failed => {}
                        ChildCas::Blocked => self.neg.wait(child),
                    }
                }
                InsertRead::NeedsBundle(_) => unreachable!("bundled above"),
                InsertRead::NeedsPromote(w) => {
                    let frame = UnbundleFrame::new(child.clone(), w, UnbundleMode::Promote);
                    Operation::run_frame(Frame::from(frame), &mut self.neg);
                }
            }
        }
    }
}
