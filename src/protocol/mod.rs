//! The protocol as explicit step functions.
//!
//! Every action of the TLA+ spec (`tla/`) is one function here with the
//! action's name in snake_case, tagged `/// TLA+: ActionName`. Each step
//! performs at most one shared-memory operation on one linkage (a load or a
//! CAS) plus local work, and says what comes next. The state of an
//! operation is a plain value ([`Operation`]): a stack of frames, one per
//! nested sub-operation (a bundle inside a snapshot, a recursive bundle of
//! a child, an unbundle inside a commit). Recursion never uses the Rust
//! call stack, so a test can hold several operations and interleave their
//! steps in any order it likes.

pub(crate) mod bundle;
pub(crate) mod commit;
pub(crate) mod dynamic;
pub(crate) mod in_progress;
pub(crate) mod snapshot;
pub(crate) mod unbundle;

use crate::packet::Packet;
use crate::wrapper::PacketWrapper;
use smallvec::SmallVec;
use std::sync::Arc;

pub(crate) use bundle::BundleFrame;
pub(crate) use commit::CommitFrame;
pub(crate) use snapshot::SnapshotFrame;
pub(crate) use unbundle::{UnbundleFrame, UnbundleMode};

use crate::linkage::Linkage;
use crate::negotiation::Negotiator;

/// One level of an operation in progress. The bundle and unbundle frames
/// are large and only needed off the fast paths, so they are boxed.
pub(crate) enum Frame {
    Snapshot(SnapshotFrame),
    Bundle(Box<BundleFrame>),
    Unbundle(Box<UnbundleFrame>),
    Commit(CommitFrame),
}

impl From<BundleFrame> for Frame {
    fn from(f: BundleFrame) -> Self {
        Frame::Bundle(Box::new(f))
    }
}

impl From<UnbundleFrame> for Frame {
    fn from(f: UnbundleFrame) -> Self {
        Frame::Unbundle(Box::new(f))
    }
}

/// What a finished frame hands to the frame below it.
pub(crate) enum Outcome {
    Snapshot(SnapResult),
    Bundle(BundleResult),
    Unbundle(UnbundleResult),
    Commit(CommitResult),
    /// The operation was abandoned at a blocked step: its negotiator's wait
    /// budget ran out (`Negotiator::wait`). A blocked step did nothing.
    Expired,
}

/// A completed snapshot: the packet, and the wrapper it was read from when
/// the node had priority (a later commit can CAS against it directly).
pub(crate) struct SnapResult {
    pub(crate) packet: Arc<Packet>,
    pub(crate) wrapper: Option<Arc<PacketWrapper>>,
}

pub(crate) enum BundleResult {
    /// The node now has priority with this (bundled) wrapper.
    Success(Arc<PacketWrapper>),
    Disturbed,
}

/// New wrappers an unbundle installed, so an enclosing bundle that is
/// working on one of those linkages can follow its own node's new version.
/// Each entry: (linkage, the wrapper it replaced, the new wrapper).
pub(crate) type Installed = SmallVec<[(Arc<Linkage>, Arc<PacketWrapper>, Arc<PacketWrapper>); 4]>;

pub(crate) enum UnbundleResult {
    /// The node's packet, read inside an ancestor's bundle without any CAS.
    Found(Arc<Packet>),
    /// The node has priority now.
    NewSubvalue(Installed),
    /// The node is already inside the bundle being built (hard link).
    Collided,
    /// Commit only: the node's packet is no longer the one the transaction read.
    SubvalueChanged,
    Disturbed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitResult {
    Committed,
    Conflict,
}

/// What a step asks the driver to do next.
pub(crate) enum Next {
    /// Run the same frame again (its `pc` says which step).
    Stay,
    /// Push a sub-operation; its outcome is handed back to this frame.
    Call(Frame),
    /// This frame is finished.
    Return(Outcome),
    /// The step may not CAS this linkage now (another transaction's
    /// priority tag): nothing was done; wait, then run the same step again.
    Blocked(Arc<Linkage>),
}

/// What one step of an [`Operation`] did.
pub(crate) enum Step {
    Running,
    Done,
    Blocked(Arc<Linkage>),
}

/// An operation in progress: a plain value a test can hold and step.
pub(crate) struct Operation {
    stack: Vec<Frame>,
    returned: Option<Outcome>,
    done: Option<Outcome>,
}

impl Operation {
    pub(crate) fn new(root: Frame) -> Self {
        let mut stack = Vec::with_capacity(4);
        stack.push(root);
        Operation {
            stack,
            returned: None,
            done: None,
        }
    }

    /// An operation whose root frame has already asked for `sub`.
    pub(crate) fn with_call(root: Frame, sub: Frame) -> Self {
        let mut op = Operation::new(root);
        op.stack.push(sub);
        op
    }

    /// Runs one step for the transaction `neg` negotiates for.
    pub(crate) fn step(&mut self, neg: &mut Negotiator) -> Step {
        if self.done.is_some() {
            return Step::Done;
        }
        let returned = self.returned.take();
        let top = self
            .stack
            .last_mut()
            .expect("an unfinished operation has a frame");
        let next = match top {
            Frame::Snapshot(f) => f.step(returned, neg),
            Frame::Bundle(f) => f.step(returned, neg),
            Frame::Unbundle(f) => f.step(returned, neg),
            Frame::Commit(f) => f.step(returned, neg),
        };
        match next {
            Next::Stay => Step::Running,
            Next::Blocked(link) => {
                debug_assert!(self.returned.is_none());
                Step::Blocked(link)
            }
            Next::Call(frame) => {
                self.stack.push(frame);
                Step::Running
            }
            Next::Return(outcome) => {
                self.stack.pop();
                if self.stack.is_empty() {
                    self.done = Some(outcome);
                    Step::Done
                } else {
                    self.returned = Some(outcome);
                    Step::Running
                }
            }
        }
    }

    /// Depth of the frame stack (nested sub-operations).
    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Runs `frame` to completion. Steps it in place, without allocating an
    /// operation stack, until it asks for a sub-operation other than an
    /// unbundle (the common paths never do). An unbundle starts nothing
    /// further, so it is stepped here too and its outcome handed back to
    /// `frame`, as `Operation::step` would: the same steps in the same
    /// order, without the stack (a snapshot or a commit of a bundled node).
    pub(crate) fn run_frame(mut frame: Frame, neg: &mut Negotiator) -> Outcome {
        #[cfg(all(test, not(loom)))]
        if crate::explore::validate::active() {
            // Trace validation steps every frame through `run`.
            return Operation::new(frame).run(neg);
        }
        #[cfg(all(test, not(loom), debug_assertions))]
        let mut lone = crate::explore::LoneLoop::new();
        let mut returned = None;
        loop {
            let next = match &mut frame {
                Frame::Snapshot(f) => f.step(returned.take(), neg),
                Frame::Bundle(f) => f.step(returned.take(), neg),
                Frame::Unbundle(f) => f.step(returned.take(), neg),
                Frame::Commit(f) => f.step(returned.take(), neg),
            };
            match next {
                Next::Stay =>
                {
                    #[cfg(all(test, not(loom), debug_assertions))]
                    lone.step(neg, Some(frame.node()), |c| frame.canon(c))
                }
                Next::Blocked(link) => {
                    if !wait_for(&link, neg) {
                        return Outcome::Expired;
                    }
                }
                Next::Return(outcome) => return outcome,
                Next::Call(Frame::Unbundle(mut sub)) => loop {
                    match sub.step(None, neg) {
                        Next::Stay =>
                        {
                            #[cfg(all(test, not(loom), debug_assertions))]
                            lone.step(neg, None, |c| {
                                frame.canon(c);
                                sub.canon(c);
                            })
                        }
                        Next::Blocked(link) => {
                            if !wait_for(&link, neg) {
                                return Outcome::Expired;
                            }
                        }
                        Next::Return(outcome) => {
                            returned = Some(outcome);
                            break;
                        }
                        Next::Call(_) => unreachable!("an unbundle starts no sub-operation"),
                    }
                },
                Next::Call(sub) => return Operation::with_call(frame, sub).run(neg),
            }
        }
    }

    /// One [`step`](Self::step); under trace validation also a scheduling
    /// point recorded with its operations (`explore::validate::step`).
    pub(crate) fn step_traced(&mut self, neg: &mut Negotiator) -> Step {
        #[cfg(all(test, not(loom)))]
        {
            let (name, stamp) = (self.next_step_name(), neg.stamp);
            crate::explore::validate::step(name, stamp, || self.step(neg))
        }
        #[cfg(not(all(test, not(loom))))]
        self.step(neg)
    }

    /// Steps until finished (waiting whenever a step is blocked by a
    /// priority tag) and returns the outcome.
    pub(crate) fn run(mut self, neg: &mut Negotiator) -> Outcome {
        #[cfg(all(test, not(loom), debug_assertions))]
        let mut lone = crate::explore::LoneLoop::new();
        loop {
            match self.step_traced(neg) {
                Step::Done => break,
                Step::Running =>
                {
                    #[cfg(all(test, not(loom), debug_assertions))]
                    lone.step(
                        neg,
                        (self.stack.len() == 1).then(|| self.stack[0].node()),
                        |c| self.canon_lone(c),
                    )
                }
                Step::Blocked(link) => {
                    if !wait_for(&link, neg) {
                        return Outcome::Expired;
                    }
                }
            }
        }
        self.done.take().expect("finished")
    }

    /// The outcome, once [`step`](Self::step) returned `Done`.
    pub(crate) fn into_outcome(self) -> Option<Outcome> {
        self.done
    }
}

/// Read access for the exhaustive explorer (`crate::explore`): the frame
/// stack, the outcome handed to the top frame on its next step, and the
/// name of the step function that step runs. Test-only.
#[cfg(all(test, not(loom)))]
impl Operation {
    pub(crate) fn frames(&self) -> &[Frame] {
        &self.stack
    }

    pub(crate) fn pending(&self) -> Option<&Outcome> {
        self.returned.as_ref()
    }

    pub(crate) fn finished(&self) -> Option<&Outcome> {
        self.done.as_ref()
    }

    /// The linkage whose tag the next step's `can_proceed` gate loads
    /// first, if that step is gated.
    pub(crate) fn next_gate(&self) -> Option<Arc<Linkage>> {
        if self.returned.is_some() {
            return None;
        }
        match self.stack.last()? {
            Frame::Bundle(f) => f.next_gate(),
            Frame::Unbundle(f) => f.next_gate(),
            Frame::Commit(f) => matches!(f.pc, commit::CommitPc::Parent | commit::CommitPc::TryCas)
                .then(|| f.node.clone()),
            Frame::Snapshot(_) => None,
        }
    }

    /// The step function the next [`step`](Self::step) runs.
    pub(crate) fn next_step_name(&self) -> &'static str {
        match self.stack.last() {
            None => "done",
            Some(Frame::Snapshot(f)) => match f.pc {
                snapshot::SnapPc::Read => "snap_read",
                snapshot::SnapPc::Check => "snap_check",
            },
            Some(Frame::Bundle(f)) => match f.pc {
                bundle::BundlePc::Phase1 if f.is_seal() => "seal_phase1",
                bundle::BundlePc::Phase1 => "bundle_phase1",
                bundle::BundlePc::Phase2 => "bundle_phase2",
                bundle::BundlePc::Phase3 => "bundle_phase3",
                bundle::BundlePc::Phase4 => "bundle_phase4",
            },
            Some(Frame::Unbundle(f)) => match f.pc {
                unbundle::UnbundlePc::Walk => "unbundle_walk",
                unbundle::UnbundlePc::Recheck => "unbundle_recheck",
                unbundle::UnbundlePc::CasAncestors => "unbundle_cas_ancestors",
                unbundle::UnbundlePc::CasChild => "unbundle_cas_child",
            },
            Some(Frame::Commit(f)) => match f.pc {
                commit::CommitPc::Start => "commit_start",
                commit::CommitPc::Parent => "commit_parent",
                commit::CommitPc::Read => "commit_read",
                commit::CommitPc::TryCas => "commit_try_cas",
                commit::CommitPc::Done => "commit_done",
            },
        }
    }
}

/// A step was blocked by `link`'s tag: waits until it may go on. `false`
/// when the wait budget ran out (the operation ends `Expired`).
fn wait_for(link: &Arc<Linkage>, neg: &mut Negotiator) -> bool {
    #[cfg(all(test, not(loom)))]
    crate::explore::dynamic::body_blocked(link);
    neg.wait(link);
    !neg.expired
}

#[cfg(all(test, not(loom)))]
impl Operation {
    /// Its whole state, for `explore::LoneLoop`: the frames, what the last
    /// one returned, and whether it is done.
    #[cfg(debug_assertions)]
    fn canon_lone(&self, c: &mut crate::explore::Canon) {
        c.n(self.stack.len() as u64);
        for f in &self.stack {
            f.canon(c);
        }
        match &self.returned {
            None => c.n(0),
            Some(o) => {
                c.n(1);
                o.canon(c);
            }
        }
        c.n(u64::from(self.done.is_some()));
    }
}

#[cfg(all(test, not(loom)))]
impl Frame {
    /// The node the frame works on.
    #[cfg(debug_assertions)]
    pub(crate) fn node(&self) -> &Arc<Linkage> {
        match self {
            Frame::Snapshot(f) => &f.node,
            Frame::Bundle(f) => &f.node,
            Frame::Unbundle(f) => &f.target,
            Frame::Commit(f) => &f.node,
        }
    }

    pub(crate) fn canon(&self, c: &mut crate::explore::Canon) {
        match self {
            Frame::Snapshot(f) => {
                c.n(1);
                c.link(&f.node);
                c.n(f.pc as u64);
            }
            Frame::Bundle(f) => {
                c.n(2);
                f.canon(c);
            }
            Frame::Unbundle(f) => {
                c.n(3);
                f.canon(c);
            }
            Frame::Commit(f) => {
                c.n(4);
                f.canon(c);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
impl Outcome {
    pub(crate) fn canon(&self, c: &mut crate::explore::Canon) {
        match self {
            Outcome::Snapshot(r) => {
                c.n(1);
                c.packet(&r.packet);
                c.opt_wrapper(r.wrapper.as_ref());
            }
            Outcome::Bundle(BundleResult::Success(w)) => {
                c.n(2);
                c.wrapper(w);
            }
            Outcome::Bundle(BundleResult::Disturbed) => c.n(3),
            Outcome::Unbundle(u) => {
                c.n(4);
                match u {
                    UnbundleResult::Found(p) => {
                        c.n(1);
                        c.packet(p);
                    }
                    UnbundleResult::NewSubvalue(inst) => {
                        c.n(2);
                        c.installed(inst);
                    }
                    UnbundleResult::Collided => c.n(3),
                    UnbundleResult::SubvalueChanged => c.n(4),
                    UnbundleResult::Disturbed => c.n(5),
                }
            }
            Outcome::Expired => c.n(6),
            Outcome::Commit(r) => {
                c.n(5);
                c.n(*r as u64);
            }
        }
    }
}

/// Deterministic, exhaustive interleavings of whole operations, step by
/// step: the step state is a plain value, so one thread can play several.
#[cfg(all(test, not(loom)))]
mod interleavings;
