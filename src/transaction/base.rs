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
            _ => self.revalidate_root(),
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
    /// only); when that cannot tell, the root is unbundled with the same identity check the commit makes (an
    /// `UnbundleMode::Commit` that installs `old` itself), which reads its
    /// packet atomically and leaves it with priority.
    pub(super) fn revalidate_root(&mut self) -> bool {
        self.revalidate_identity() || (self.rebase() && self.revalidate_identity())
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
    /// what a limbo carries was read against this base, and a new base
    /// need not agree with it. `false`: a real conflict (or not
    /// applicable).
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
    pub(super) fn revalidate_identity(&mut self) -> bool {
        loop {
            let w = self.root.load();
            if w.has_priority() {
                let same = Arc::ptr_eq(w.own_packet(), &self.old);
                if same {
                    self.snap_wrapper = Some(w);
                }
                return same;
            }
            if let Some(current) = dynamic::base_is_current(&self.root, w.clone(), &self.old) {
                return current;
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
    /// wrapper of another attempt that may still commit, that attempt
    /// relies on its limbo staying in place (`crate::limbo`): we lose, and
    /// wait for it before our next attempt. A limbo whose attempt has ended
    /// asks nothing of us: its owner took it out before it ended (then the
    /// slot holds `w` no longer and our child CAS fails), or committed a
    /// parent that lists the child with a slot (an online insert), which
    /// makes it a bundled reference like any other.
    ///
    /// Until session 12 a limbo of an ended attempt also *touched* our
    /// root (a CAS to a copy of the same packet). That was the first fix of
    /// two concurrent releases of one child (issue 9), made before limbo
    /// wrappers named their owner; the owner rule made it dead weight: no
    /// commit can depend on a limbo whose attempt has ended. cargo-mutants
    /// showed no test could tell it was there (`docs/verification.md`).
    pub(super) fn validate_over(&mut self, child: &Arc<Linkage>, w: &PacketWrapper) -> bool {
        if !self.validate() {
            return false;
        }
        // Replacing a live owner's limbo would let it publish a parent that
        // no longer lists the child while the child carries our packet.
        if let Some(owner) = w.live_foreign_limbo(self.limbo_owner.as_ref()) {
            // No tag: it would only block the owner, whom the next attempt
            // waits for anyway (holding no tag).
            self.wait_for = Some((owner.clone(), child.clone()));
            self.doomed = true;
            return false;
        }
        true
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
