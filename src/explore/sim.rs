//! A simulated thread: its program, where it is, and what it holds.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Pc {
    Idle,
    /// `give_priority` before an attempt's snapshot.
    Promote,
    Snap,
    Commit,
    /// `Transaction::rebase` after a conflict: the root read again.
    Rebase,
    /// A dynamic body (`OpKind::Dyn`): one scheduling point, or split, one
    /// per shared-memory operation of it (`coroutine`).
    Body,
    /// Taking the structure lock for a commit with inserts.
    Lock,
    /// After a committed attempt of plain inserts: the seal's load of the
    /// root (`Transaction::seal_start`).
    SealStart,
    /// The seal's bundle steps; blocked, it is given up.
    Seal,
    /// `Transaction::seal_end`: the tags the seal left are cleared.
    SealEnd,
    /// Waiting for the attempt that owns a limbo this one met.
    Owner,
    /// Split: dropping a node's last handle on a thread of its own.
    Dropping,
    Finished,
}

pub(super) struct Sim {
    pub(super) tid: u64,
    pub(super) class: Priority,
    pub(super) program: Vec<OpKind>,
    pub(super) next_op: usize,
    pub(super) pc: Pc,
    pub(super) neg: Option<Negotiator>,
    pub(super) tr: Option<Transaction>,
    pub(super) op: Option<Operation>,
    pub(super) blocked: Option<Arc<Linkage>>,
    pub(super) attempt: u32,
    /// This attempt's commit was rebased once already (`drive::commit`).
    pub(super) rebased: bool,
    /// Committed increments when the current snapshot started.
    pub(super) lo: Vec<u32>,
    /// Split: the tag the next step's gate loaded already.
    pub(super) gate: Option<(Arc<Linkage>, u64)>,
    /// Split: the tag writes the last step queued, each a scheduling point
    /// of its own, and what that step returned (handled after them).
    pub(super) deferred: VecDeque<negotiation::split::TagWrite>,
    pub(super) after: Option<Step>,
    /// Stamps to take instead of minting (trace validation: the ones the
    /// real thread minted, in order).
    pub(super) stamps: VecDeque<u64>,
    /// `OpKind::Nested`: the enclosing transaction, its body suspended
    /// while the nested one runs, and its attempt count.
    pub(super) outer: Option<(Transaction, u32)>,
    /// `OpKind::Dyn`: the nodes this attempt's body wrote.
    pub(super) wrote: Vec<usize>,
    /// The commit let the structure lock go to wait: take it again.
    pub(super) relock: bool,
    /// The limbo owner to wait for, and whether the next attempt promotes.
    pub(super) owner: Option<Arc<crate::limbo::LimboOwner>>,
    pub(super) promote: bool,
    /// Split mode: the dynamic body running on a thread of its own.
    pub(super) co: Option<coroutine::Co>,
}

impl Sim {
    pub(super) fn neg(&self) -> Option<&Negotiator> {
        self.tr.as_ref().map(|t| &t.neg).or(self.neg.as_ref())
    }

    pub(super) fn neg_mut(&mut self) -> &mut Negotiator {
        match &mut self.tr {
            Some(t) => &mut t.neg,
            None => self
                .neg
                .as_mut()
                .expect("a running thread has a negotiator"),
        }
    }

    /// The commit of `tr`'s attempt starts (`drive::commit_once`).
    pub(super) fn start_commit(&mut self, mut tr: Transaction) {
        self.op = Some(Operation::new(tr.commit_frame()));
        self.pc = World::commit_pc(&tr);
        self.tr = Some(tr);
    }

    /// The transaction (or snapshot) running now: of a nested pair, the
    /// nested one while the enclosing one's body waits for it.
    pub(super) fn kind(&self) -> &OpKind {
        match (&self.program[self.next_op], &self.outer) {
            (OpKind::Nested { inner, .. }, Some(_)) => inner,
            (OpKind::Nested { outer, .. }, None) => outer,
            (k, _) => k,
        }
    }

    /// The program starts over (`OpKind::Again`): its writes keep values.
    pub(super) fn endless(&self) -> bool {
        config::endless(&self.program)
    }

    /// What each write of this thread adds: 0 for an endless thread.
    pub(super) fn increment(&self) -> u32 {
        u32::from(!self.endless())
    }

    pub(super) fn nested(&self) -> bool {
        matches!(self.program[self.next_op], OpKind::Nested { .. })
    }

    /// Every unfinished thread can take a step: a blocked one runs a round
    /// of `Negotiator::wait` (which may change nothing: a self-loop).
    pub(super) fn enabled(&self) -> bool {
        self.pc != Pc::Finished
    }
}
