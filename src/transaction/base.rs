//! The attempt's base: validating it against the root, rebasing onto
//! a re-bundled root, and the commit frame built on it.

use super::*;

impl Transaction {
    /// This attempt lost a race: it will not commit, and it enters the
    /// oldest-wins negotiation like any other loser (it tags the root).
    pub(super) fn doom(&mut self) {
        if !self.doomed {
            self.doomed = true;
            negotiation::tag_after_fail(&self.root, &mut self.neg);
        }
    }

    /// Right before a child CAS: is the base still current (`tx_validate`)?
    /// The fast path is one load: the root still holds the wrapper the
    /// snapshot was read from. Otherwise the base is current iff the root's
    /// packet is still the very packet the snapshot read (`old`, an `Arc`
    /// this transaction holds, so its address names it): a commit anywhere
    /// in the subtree replaces it, an unbundle below marks it missing (a
    /// new packet), so identity means nothing was published since. A
    /// bundle and unbundle of the root keep the packet, which is why a
    /// snapshot of an ancestor taken inside the closure must not doom the
    /// attempt (it did, on every attempt). `false`: doomed.
    pub(super) fn validate(&mut self) -> bool {
        if self.doomed {
            return false;
        }
        let ok = match &self.snap_wrapper {
            Some(snap) if dynamic::tx_validate(&self.root, snap) => true,
            _ => self.revalidate_root(false),
        };
        if !ok {
            self.doom();
        }
        ok
    }

    /// Nothing of this attempt ever outside its packet: it has not tried
    /// to put a node in limbo (a release, an online insert), not even one
    /// it took back since (a pulled node released again was read, and a
    /// commit made to it meanwhile must still fail this attempt), so its
    /// base can be read again (`rebase`). A plain insert is fine: its
    /// cycle check runs at the commit, against the state then.
    pub(crate) fn is_plain(&self) -> bool {
        self.limbo_owner.is_none()
    }

    /// The slow path of `validate`. A root with priority is current iff it
    /// holds `old` (then its wrapper becomes the one the commit expects). A
    /// bundled root is first checked by reading (`base_is_current`, loads
    /// only); when that cannot tell, or when `need_priority`, the root is
    /// unbundled with the same identity check the commit makes (an
    /// `UnbundleMode::Commit` that installs `old` itself), which reads its
    /// packet atomically and leaves it with priority.
    pub(super) fn revalidate_root(&mut self, need_priority: bool) -> bool {
        self.revalidate_identity(need_priority)
            || (self.rebase() && self.revalidate_identity(need_priority))
    }

    /// A base found changed where it was only re-bundled: a snapshot (this
    /// thread's own, taken inside the closure, or another thread's) took
    /// the packet of a hard-linked node below the root to its other
    /// parent, so the root holds a new packet with the same state.
    /// Retrying the closure took the node back, and a closure that
    /// snapshots an ancestor on every attempt took it away again: a
    /// livelock of one thread (sequential model). Instead the root is read
    /// again (a snapshot, which bundles the node back) and, when every node
    /// of it holds the state this attempt read (`same_state`: payloads and
    /// child lists by identity, void slots where they were), that becomes
    /// the base: a CAS against it stands for a read of the same state.
    ///
    /// Only before this attempt has put anything in limbo (`is_plain`):
    /// another transaction that meets a limbo
    /// of ours *touches* our root (`validate_over`) with a copy of the
    /// same state precisely so that our commit fails; a rebase would undo
    /// that. `false`: a real conflict (or not applicable).
    pub(crate) fn rebase(&mut self) -> bool {
        if !self.may_rebase() {
            return false;
        }
        let Some(snap) = crate::drive::snapshot_result(&self.root, &mut self.neg) else {
            return false;
        };
        self.rebase_onto(snap)
    }

    /// The commit of this attempt's working version against its base (the
    /// snapshot's wrapper is used up by it).
    pub(crate) fn commit_frame(&mut self) -> crate::protocol::Frame {
        crate::protocol::Frame::Commit(crate::protocol::CommitFrame::new(
            self.root.clone(),
            self.old.clone(),
            self.packet.clone(),
            self.snap_wrapper.take(),
        ))
    }

    /// Whether a conflict may be answered by [`rebase`](Self::rebase).
    /// TLA+: RebaseOK
    pub(crate) fn may_rebase(&self) -> bool {
        !self.doomed && self.is_plain() && !self.neg.expired
    }

    /// The second half of [`rebase`](Self::rebase), once the root was read
    /// again (`snap`): local work only.
    /// TLA+: RebaseCheck
    pub(crate) fn rebase_onto(&mut self, snap: crate::protocol::SnapResult) -> bool {
        let before = Snapshot {
            root: self.root.clone(),
            packet: self.old.clone(),
        };
        let now = Snapshot {
            root: self.root.clone(),
            packet: snap.packet.clone(),
        };
        if !crate::snapshot::same_state(
            &before,
            &now,
            &before.packet,
            &now.packet,
            crate::snapshot::Voids::Strict,
        ) {
            return false;
        }
        self.old = snap.packet;
        self.snap_wrapper = snap.wrapper;
        true
    }

    /// `revalidate_root` by identity: the root holds `old` itself.
    pub(super) fn revalidate_identity(&mut self, need_priority: bool) -> bool {
        loop {
            let w = self.root.load();
            if w.has_priority() {
                let same = Arc::ptr_eq(w.own_packet(), &self.old);
                if same {
                    self.snap_wrapper = Some(w);
                }
                return same;
            }
            if !need_priority {
                if let Some(current) = dynamic::base_is_current(&self.root, w.clone(), &self.old) {
                    return current;
                }
            }
            let mode = UnbundleMode::Commit {
                old: self.old.clone(),
                new: self.old.clone(),
            };
            let frame = UnbundleFrame::new(self.root.clone(), w, mode);
            match Operation::run_frame(Frame::from(frame), &mut self.neg) {
                Outcome::Unbundle(UnbundleResult::NewSubvalue(installed)) => {
                    let (_, _, mine) = installed.last().expect("the root's own CAS");
                    self.snap_wrapper = Some(mine.clone());
                    return true;
                }
                Outcome::Unbundle(UnbundleResult::SubvalueChanged) => return false,
                // Disturbed (tagged): look again.
                _ => {}
            }
        }
    }

    /// `validate` before a child CAS that replaces `w`. When `w` is a limbo
    /// wrapper another transaction (or an earlier attempt) installed, that
    /// transaction may still commit believing its limbo is in place: then
    /// the base is not only checked but *touched*: the root is CASed to a
    /// new wrapper holding the same packet, so that such a transaction's
    /// commit (a CAS on the same root) fails instead of publishing a parent
    /// that no longer lists the child while the child carries our packet.
    pub(super) fn validate_over(&mut self, child: &Arc<Linkage>, w: &PacketWrapper) -> bool {
        if !self.validate() {
            return false;
        }
        // Another attempt's limbo, and that attempt may still commit: it
        // relies on its limbo (`crate::limbo`). Touching our root does not
        // stop it when its root is elsewhere (below ours, or bundled in it:
        // its commit then reads a packet the touch does not change), and
        // replacing its limbo would let it publish our carried packet as
        // the child's state. We lose, and wait for it before the next
        // attempt.
        if let Some(owner) = w.live_foreign_limbo(self.limbo_owner.as_ref()) {
            // No tag: it would only block the owner, whom the next attempt
            // waits for anyway (holding no tag).
            self.wait_for = Some((owner.clone(), child.clone()));
            self.doomed = true;
            return false;
        }
        let foreign_limbo = !w.has_priority() && w.packet.is_some() && w.serial != self.serial();
        if !foreign_limbo {
            return true;
        }
        // The touch is a CAS on the root: it needs the root with priority.
        let snap = match self.snap_wrapper.clone() {
            Some(snap) if dynamic::tx_validate(&self.root, &snap) => snap,
            _ => {
                if !self.revalidate_root(true) {
                    self.doom();
                    return false;
                }
                self.snap_wrapper.clone().expect("set by revalidate_root")
            }
        };
        while !negotiation::can_proceed(&self.root, &self.neg) {
            self.neg.wait(&self.root);
        }
        // A copy, not the same packet: a commit compares packets too.
        let copy = self.old.with_missing(self.old.missing);
        let next = PacketWrapper::priority(copy.clone(), serial::next(snap.serial));
        match self.root.slot.compare_exchange(&snap, next.clone()) {
            Ok(()) => {
                negotiation::tag_after_success(&self.root, &self.neg);
                self.snap_wrapper = Some(next);
                self.old = copy;
                true
            }
            Err(_) => {
                self.doom();
                false
            }
        }
    }
}

/// Validation reads and never writes when the base is current: one load
/// of the root when it holds the snapshot's wrapper, and the `bundled_by`
/// chain up to the priority ancestor when the root was bundled (no
/// unbundle). A validation that wrote would turn every dynamic operation
/// into an unbundle of its transaction's root.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::trace::{self, Access};

    fn begin(root: &Node<u32>) -> Transaction {
        let mut neg = Negotiator::with_stamp(crate::drive::snapshot_stamp());
        let snap = crate::drive::snapshot_result(&root.link, &mut neg).expect("no budget");
        Transaction::new(root.link.clone(), snap, 0, neg)
    }

    /// Validates `tr` and returns the shared-memory operations it did.
    fn validate(tr: &mut Transaction) -> (bool, Vec<Access>) {
        trace::start();
        let ok = tr.validate();
        let ops = trace::take().into_iter().map(|e| e.access).collect();
        trace::stop();
        (ok, ops)
    }

    #[test]
    fn a_current_base_with_priority_costs_one_load() {
        let r = Node::new(0u32);
        let c = Node::new(0u32);
        r.insert(&c).unwrap();
        let _ = r.snapshot();
        let mut tr = begin(&r);
        assert_eq!(validate(&mut tr), (true, vec![Access::SlotLoad]));
        // Changed by a commit: doomed.
        c.iterate_commit(|t| t[&c] += 1);
        let (ok, _) = validate(&mut tr);
        assert!(!ok && tr.doomed);
    }

    #[test]
    fn a_current_base_bundled_in_an_ancestor_is_read_not_unbundled() {
        let g = Node::new(0u32);
        let r = Node::new(0u32);
        let c = Node::new(0u32);
        r.insert(&c).unwrap();
        g.insert(&r).unwrap();
        let _ = g.snapshot();
        let mut tr = begin(&r);
        assert!(tr.snap_wrapper.is_none(), "r is bundled in g");
        let (ok, ops) = validate(&mut tr);
        assert!(ok);
        assert_eq!(ops, vec![Access::SlotLoad, Access::SlotLoad], "r, then g");
        assert!(!r.link.load().has_priority(), "still bundled");
        // Changed by a commit below it: doomed.
        c.iterate_commit(|t| t[&c] += 1);
        let (ok, _) = validate(&mut tr);
        assert!(!ok && tr.doomed);
    }
}
