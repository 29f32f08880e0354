//! Dynamic transactions in the explorer: bodies that insert, release and
//! move nodes (`OpKind::Dyn`), the structure lock of a commit with
//! inserts, and the wait for another attempt's limbo.
//!
//! A dynamic body runs the real `Transaction::{insert, insert_online,
//! release}` and `settle_moves`, whose child CASes, validations and
//! bundles of a pulled child loop inside those methods. The explorer runs
//! the whole body as *one* scheduling point ("body"): the windows between
//! a body's own shared-memory operations are not explored (the spec's
//! `InsertReadChild` / `InsertCASChild` / `ReleaseReadChild` /
//! `ReleaseCASChild` are separate actions, so TLC does explore them, on
//! the spec). What a body does to the shared state, and everything the
//! other threads do around it, is the real code's.
//!
//! A body that would wait on another transaction's tag cannot run to its
//! end on this one OS thread. Its `Negotiator::wait` asks [`body_wait`]
//! first: one real round of the wait (the gate, then the preemption rule);
//! when that does not let it on, the body is abandoned by unwinding, the
//! world it half changed is thrown away (the search rebuilds the state by
//! replay) and the thread's move is a round of waiting that changes
//! nothing: a self-loop, as for a blocked frame step. So a body is
//! explored where it runs through, and counts as blocked where it would
//! wait; the executions in which it waits half done are not explored.

use super::*;
use crate::limbo::LimboOwner;
use std::cell::Cell;

/// One edit of a dynamic body, by node index; one that does not apply
/// (an error: not a child, already a child, not in the tree) is skipped,
/// as a body that first looks would skip it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Edit {
    Insert(usize, usize),
    InsertOnline(usize, usize),
    Release(usize, usize),
    /// Adds 1 to the node, when the transaction can read it.
    Write(usize),
    /// The body returns an error (`try_iterate_commit`'s `Err`): the
    /// operation ends, nothing of this attempt is committed.
    Abort,
}

thread_local! {
    static IN_BODY: Cell<bool> = const { Cell::new(false) };
    /// In a body: how many of its CASes have succeeded, and for each
    /// linkage it was blocked on, that count when it last was.
    static BODY_WRITES: Cell<u64> = const { Cell::new(0) };
    static BODY_BLOCKED: std::cell::RefCell<Vec<(usize, u64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A CAS of this thread succeeded (`sync::trace`).
pub(crate) fn body_wrote() {
    if IN_BODY.with(Cell::get) {
        BODY_WRITES.with(|w| w.set(w.get() + 1));
    }
}

/// A step of a body, or one of its child CASes, found `link` blocked by a
/// tag. Nothing else runs during a body (one scheduling point), so the
/// tag can only change by a write of the body itself: blocked on the same
/// linkage again with nothing written since, the body would go round the
/// same loop for ever (its wait let it on, or did nothing, and the gate
/// still says no). That fails here instead of hanging the search. The
/// real protocol cannot get here: a wait lets a body on only when the gate
/// is open or its preemption wrote the tag.
pub(crate) fn body_blocked(link: &Linkage) {
    if !IN_BODY.with(Cell::get) {
        return;
    }
    let addr = std::ptr::from_ref(link) as usize;
    let writes = BODY_WRITES.with(Cell::get);
    BODY_BLOCKED.with(|b| {
        let mut b = b.borrow_mut();
        match b.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, w)) if *w == writes => panic!(
                "a body was blocked twice on one linkage with nothing written in between: \
                 it would retry for ever"
            ),
            Some((_, w)) => *w = writes,
            None => b.push((addr, writes)),
        }
    });
}

/// The unwinding payload of a body that would wait.
struct BodyBlocked;

/// Called first by `Negotiator::wait`. Outside an explored body: `false`
/// (wait as always). Inside one: one round of the wait; `true` when the
/// caller may go on, and an unwind out of the body when it would wait.
pub(crate) fn body_wait(link: &Arc<Linkage>, neg: &mut Negotiator) -> bool {
    if !IN_BODY.with(Cell::get) {
        return false;
    }
    if negotiation::can_proceed(link, neg) || negotiation::preempt_tag(link, neg) {
        return true;
    }
    std::panic::resume_unwind(Box::new(BodyBlocked));
}

/// What a body did.
pub(super) struct Applied {
    /// The attempt goes on to its commit (not doomed, moves settled).
    commit: bool,
    /// The body returned an error.
    pub(super) abort: bool,
    /// The nodes it wrote.
    wrote: Vec<usize>,
}

/// Makes `edits` in `tr`, then what `drive` does before the commit: a
/// doomed attempt does not commit, one that is not settles its moves
/// first (which may doom it).
pub(super) fn apply(tr: &mut Transaction, edits: &[Edit], nodes: &[Node<u32>]) -> Applied {
    let mut a = apply_edits(tr, edits, nodes);
    a.commit = !a.abort && !tr.doomed && tr.settle_moves();
    a
}

/// The body proper: `edits` in `tr` (what a real run's closure does).
pub(super) fn apply_edits(tr: &mut Transaction, edits: &[Edit], nodes: &[Node<u32>]) -> Applied {
    let mut wrote = Vec::new();
    for e in edits {
        match *e {
            Edit::Abort => {
                return Applied {
                    commit: false,
                    abort: true,
                    wrote,
                };
            }
            Edit::Insert(p, c) => drop(tr.insert(&nodes[p], &nodes[c])),
            Edit::InsertOnline(p, c) => drop(tr.insert_online(&nodes[p], &nodes[c])),
            Edit::Release(p, c) => drop(tr.release(&nodes[p], &nodes[c])),
            Edit::Write(n) => {
                if let Ok(v) = tr.get_mut(&nodes[n]) {
                    *v += 1;
                    wrote.push(n);
                }
            }
        }
    }
    Applied {
        commit: false,
        abort: false,
        wrote,
    }
}

/// Whether a transaction's commit runs under the structure lock
/// (`drive::commit_once`: inserts of nodes from outside, or marks).
fn needs_lock(tr: &Transaction) -> bool {
    tr.inserts.iter().any(|i| i.external) || tr.marks.any()
}

impl World<'_> {
    /// The body of a dynamic transaction, then what `drive` does before the
    /// commit (`settle_moves`), as one scheduling point. `Ok(None)`: the
    /// body would wait; the world is no longer usable.
    pub(super) fn run_body(&mut self, t: usize) -> Result<Option<StepInfo>, String> {
        let th = &mut self.threads[t];
        let OpKind::Dyn { edits, .. } = th.kind().clone() else {
            unreachable!("only dynamic bodies are a step of their own")
        };
        let mut tr = th.tr.take().expect("a body runs in a transaction");
        let nodes = &self.nodes;
        IN_BODY.with(|b| b.set(true));
        BODY_BLOCKED.with(|b| b.borrow_mut().clear());
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            apply(&mut tr, &edits, nodes)
        }));
        IN_BODY.with(|b| b.set(false));
        let applied = match ran {
            Ok(a) => a,
            Err(p) if p.is::<BodyBlocked>() => {
                // Its drop may CAS: on a world thrown away anyway.
                drop(tr);
                self.spoiled = true;
                return Ok(None);
            }
            Err(p) => std::panic::resume_unwind(p),
        };
        Ok(Some(self.finish_body(t, tr, applied)))
    }

    /// Split mode: one operation of the body (or a round of its wait, or
    /// its start), on the body's own thread (`explore::coroutine`).
    pub(super) fn body_op(&mut self, t: usize) -> StepInfo {
        if self.threads[t].co.is_none() {
            // (A drop's coroutine is started by its first step.)
            let (nodes, words) = (self.nodes.clone(), self.word_list());
            let th = &mut self.threads[t];
            let OpKind::Dyn { edits, .. } = th.kind().clone() else {
                unreachable!("only dynamic bodies are a step of their own")
            };
            let tr = th.tr.take().expect("a body runs in a transaction");
            th.co = Some(coroutine::Co::body(tr, edits, nodes, words));
        }
        let th = &mut self.threads[t];
        let (name, ended) = th.co.as_mut().expect("started").resume();
        let Some(ended) = ended else {
            return StepInfo {
                name,
                completed: false,
                ops: Vec::new(),
            };
        };
        th.co = None;
        match ended {
            coroutine::Ended::Body {
                tr,
                applied: Ok(applied),
            } => {
                let mut info = self.finish_body(t, *tr, applied);
                info.name = name;
                info
            }
            coroutine::Ended::Body {
                applied: Err(p), ..
            }
            | coroutine::Ended::Dropped(Err(p)) => std::panic::resume_unwind(p),
            coroutine::Ended::Dropped(Ok(())) => {
                self.complete(t);
                StepInfo {
                    name: "drop_handle(op)",
                    completed: true,
                    ops: Vec::new(),
                }
            }
        }
    }

    /// After the body: the commit, or the next attempt, or (an error) the
    /// end of the operation.
    fn finish_body(&mut self, t: usize, tr: Transaction, applied: Applied) -> StepInfo {
        let th = &mut self.threads[t];
        th.wrote = applied.wrote;
        if applied.abort {
            // `drive`: `Flow::Fail`; the attempt's drop cleans up its
            // limbos and its negotiator clears its tags.
            drop(tr.into_negotiator());
            self.complete(t);
            return StepInfo {
                name: "body(abort)",
                completed: true,
                ops: Vec::new(),
            };
        }
        if applied.commit {
            th.start_commit(tr);
        } else {
            self.next_attempt(t, tr);
        }
        StepInfo {
            name: "body",
            completed: false,
            ops: Vec::new(),
        }
    }

    /// `structure::commit_locked`: takes the structure lock and checks that
    /// the inserts close no cycle, before the commit's first step and
    /// again after each wait on a tag (the lock is not held while waiting).
    pub(super) fn commit_lock(&mut self, t: usize) -> StepInfo {
        let step = |name| StepInfo {
            name,
            completed: false,
            ops: Vec::new(),
        };
        if self.lock.is_some_and(|o| o != t) {
            return step("commit_locked(blocked)");
        }
        self.lock = Some(t);
        let th = &mut self.threads[t];
        let tr = th.tr.as_ref().expect("a commit runs in a transaction");
        let acyclic = !tr.inserts.iter().any(|i| i.external)
            || crate::structure::inserts_acyclic(
                &tr.root,
                &tr.packet,
                &tr.released_subtrees(),
                &tr.inserts,
            );
        if acyclic {
            th.pc = Pc::Commit;
            return step("commit_locked");
        }
        // `drive::commit` returns `None`: the attempt ends.
        self.lock = None;
        th.op = None;
        let tr = th.tr.take().expect("checked above");
        self.next_attempt(t, tr);
        step("commit_locked(cycle)")
    }

    /// A commit step of thread `t` blocked: `commit_locked` lets the lock
    /// go while it waits, and takes it again after.
    pub(super) fn unlock_blocked(&mut self, t: usize) {
        if self.lock == Some(t) {
            self.lock = None;
            self.threads[t].relock = true;
        }
    }

    /// The commit of thread `t` ended: its lock (if any) is let go.
    pub(super) fn unlock(&mut self, t: usize) {
        if self.lock == Some(t) {
            self.lock = None;
        }
    }

    /// `drive`: an attempt that met another attempt's live limbo waits,
    /// holding no tag, until that attempt has ended, then starts the next.
    pub(super) fn owner_wait(&mut self, t: usize) -> StepInfo {
        let th = &mut self.threads[t];
        let owner = th.owner.clone().expect("waiting for an owner");
        if owner.live() {
            return StepInfo {
                name: "wait_owner(blocked)",
                completed: false,
                ops: Vec::new(),
            };
        }
        th.owner = None;
        let promote = std::mem::take(&mut th.promote);
        self.start_attempt(t, promote);
        StepInfo {
            name: "wait_owner",
            completed: false,
            ops: Vec::new(),
        }
    }

    /// Where a commit starts: under the structure lock when it must.
    pub(super) fn commit_pc(tr: &Transaction) -> Pc {
        if needs_lock(tr) { Pc::Lock } else { Pc::Commit }
    }

    /// Before the next attempt: wait for the owner of the limbo this one
    /// met (`drive`), clearing this thread's tags first.
    pub(super) fn await_owner(&mut self, t: usize, owner: Arc<LimboOwner>, promote: bool) {
        let th = &mut self.threads[t];
        negotiation::clear_my_tags(th.neg_mut());
        th.owner = Some(owner);
        th.promote = promote;
        th.pc = Pc::Owner;
    }
}
