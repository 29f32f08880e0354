//! Publishing a transaction: `CommitStart`, `CommitParent`, `CommitRead`,
//! `CommitTryCAS`, `CommitDone`.
//!
//! A transaction on node N read N's packet (`old`) and built a new one
//! (`new`) that shares every untouched subtree. Because the descendants are
//! bundled into N's packet, one CAS on N's linkage publishes all of them.
//! When N itself is bundled into an ancestor, the commit unbundles it
//! ([`super::unbundle`]) and the unbundle's last CAS installs `new`.

use super::{CommitResult, Frame, Next, Outcome, UnbundleFrame, UnbundleMode, UnbundleResult};
use crate::linkage::Linkage;
use crate::negotiation::{self, Negotiator};
use crate::packet::Packet;
use crate::serial;
use crate::wrapper::PacketWrapper;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitPc {
    Start,
    Parent,
    Read,
    TryCas,
    Done,
}

pub(crate) struct CommitFrame {
    pub(crate) node: Arc<Linkage>,
    pub(crate) old: Arc<Packet>,
    pub(crate) new: Arc<Packet>,
    /// Wrapper the snapshot was read from, when the node had priority then.
    pub(crate) snap_wrapper: Option<Arc<PacketWrapper>>,
    /// Wrapper loaded by `commit_read` for `commit_try_cas`.
    read_wrapper: Option<Arc<PacketWrapper>>,
    /// The last CAS failed softly (`Negotiator::soft`): the conflict
    /// `commit_read` finds next is that loss, and tags nothing either.
    /// The spec's `local[t].sf`.
    soft_failed: bool,
    pub(crate) pc: CommitPc,
    result: CommitResult,
}

impl CommitFrame {
    pub(crate) fn new(
        node: Arc<Linkage>,
        old: Arc<Packet>,
        new: Arc<Packet>,
        snap_wrapper: Option<Arc<PacketWrapper>>,
    ) -> Self {
        CommitFrame {
            node,
            old,
            new,
            snap_wrapper,
            read_wrapper: None,
            soft_failed: false,
            pc: CommitPc::Start,
            result: CommitResult::Conflict,
        }
    }

    pub(crate) fn step(&mut self, returned: Option<Outcome>, neg: &mut Negotiator) -> Next {
        match self.pc {
            CommitPc::Start => commit_start(self),
            CommitPc::Parent => commit_parent(self, neg),
            CommitPc::Read => commit_read(self, returned, neg),
            CommitPc::TryCas => commit_try_cas(self, neg),
            CommitPc::Done => commit_done(self, neg),
        }
    }

    fn finish(&mut self, result: CommitResult) -> Next {
        self.result = result;
        self.pc = CommitPc::Done;
        Next::Stay
    }
}

/// Chooses the first commit step (no shared-memory operation). An
/// unmodified transaction commits without any CAS.
/// TLA+: CommitStart
pub(crate) fn commit_start(f: &mut CommitFrame) -> Next {
    if Arc::ptr_eq(&f.old, &f.new) {
        return f.finish(CommitResult::Committed);
    }
    f.pc = if f.snap_wrapper.is_some() {
        CommitPc::Parent
    } else {
        CommitPc::Read
    };
    Next::Stay
}

/// The one CAS both `commit_parent` and `commit_try_cas` perform: publish
/// `new` in place of `expected`; on failure go back to `commit_read`,
/// tagging the node unless the failure is soft (`Negotiator::soft`).
fn publish(f: &mut CommitFrame, expected: Arc<PacketWrapper>, neg: &mut Negotiator) -> Next {
    let next = PacketWrapper::priority(f.new.clone(), serial::next(expected.serial));
    match f.node.slot.compare_exchange(&expected, next) {
        Ok(()) => {
            negotiation::tag_after_success(&f.node, neg);
            f.finish(CommitResult::Committed)
        }
        Err(_) if neg.soft > 0 => {
            // A soft loss: most likely a peer has just committed here. No
            // tag; read again (a conflict ends the attempt, and the driver
            // backs off before the next: `negotiation::SOFT_LOSSES`).
            neg.soft -= 1;
            neg.cas_failures += 1;
            f.soft_failed = true;
            f.pc = CommitPc::Read;
            Next::Stay
        }
        Err(_) => {
            negotiation::tag_after_fail(&f.node, neg);
            f.pc = CommitPc::Read;
            Next::Stay
        }
    }
}

/// CAS against the wrapper the snapshot was read from: the common case,
/// where nothing happened to the node since the snapshot.
/// TLA+: CommitParent
pub(crate) fn commit_parent(f: &mut CommitFrame, neg: &mut Negotiator) -> Next {
    if !negotiation::can_proceed(&f.node, neg) {
        return Next::Blocked(f.node.clone());
    }
    let expected = f.snap_wrapper.take().expect("chosen by commit_start");
    publish(f, expected, neg)
}

/// Loads the node's wrapper: still our packet (CAS it), someone else's
/// packet (conflict), or bundled (unbundle with our new packet). A conflict
/// found here, without any failed CAS, still tags the node: every way a
/// transaction learns it lost enters the oldest-wins negotiation.
/// TLA+: CommitRead
pub(crate) fn commit_read(
    f: &mut CommitFrame,
    returned: Option<Outcome>,
    neg: &mut Negotiator,
) -> Next {
    if let Some(outcome) = returned {
        return match outcome {
            Outcome::Unbundle(UnbundleResult::NewSubvalue(_)) => f.finish(CommitResult::Committed),
            Outcome::Unbundle(UnbundleResult::SubvalueChanged) => f.finish(CommitResult::Conflict),
            _ => Next::Stay,
        };
    }
    let w = f.node.load();
    let soft_failed = std::mem::take(&mut f.soft_failed);
    if w.has_priority() {
        if Arc::ptr_eq(w.own_packet(), &f.old) {
            f.read_wrapper = Some(w);
            f.pc = CommitPc::TryCas;
            return Next::Stay;
        }
        if !soft_failed {
            negotiation::tag_after_fail(&f.node, neg);
        }
        return f.finish(CommitResult::Conflict);
    }
    Next::Call(Frame::from(UnbundleFrame::new(
        f.node.clone(),
        w,
        UnbundleMode::Commit {
            old: f.old.clone(),
            new: f.new.clone(),
        },
    )))
}

/// CAS against the wrapper `commit_read` loaded.
/// TLA+: CommitTryCAS
pub(crate) fn commit_try_cas(f: &mut CommitFrame, neg: &mut Negotiator) -> Next {
    if !negotiation::can_proceed(&f.node, neg) {
        return Next::Blocked(f.node.clone());
    }
    let expected = f.read_wrapper.take().expect("loaded by commit_read");
    publish(f, expected, neg)
}

/// Reports the result; a committed transaction releases its priority tags
/// (a conflicting one keeps them for its retry).
/// TLA+: CommitDone
pub(crate) fn commit_done(f: &mut CommitFrame, neg: &mut Negotiator) -> Next {
    if f.result == CommitResult::Committed {
        negotiation::clear_my_tags(neg);
    }
    Next::Return(Outcome::Commit(f.result))
}

/// The frame's whole state for the explorer's visited set (`crate::explore`).
#[cfg(all(test, not(loom)))]
impl CommitFrame {
    pub(crate) fn canon(&self, c: &mut crate::explore::Canon) {
        c.link(&self.node);
        c.packet(&self.old);
        c.packet(&self.new);
        c.opt_wrapper(self.snap_wrapper.as_ref());
        c.opt_wrapper(self.read_wrapper.as_ref());
        c.n(u64::from(self.soft_failed));
        c.n(self.pc as u64);
        c.n(self.result as u64);
    }
}
