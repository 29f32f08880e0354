//! The retry loop behind every `iterate_commit` flavour, and the
//! bookkeeping of transactions nested on one thread.
//!
//! A transaction runs its closure on a fresh snapshot, commits, and on any
//! lost race runs again. Which attempts end how:
//!
//! | the attempt … | then |
//! |---|---|
//! | commits | tags released, the committed snapshot returned |
//! | conflicts at commit, or a dynamic operation in it was doomed | tags kept (they were set when it lost), run again |
//! | closure asks to retry (`iterate_commit_if` → `false`) | tags released, a fresh stamp ([`body_retry`]), run again |
//! | closure stops or fails | tags released (the negotiator is dropped) |
//!
//! Nesting: a transaction started from inside another one's closure on the
//! same thread inherits the outermost transaction's stamp (so it is as old
//! as the work it is part of and can never wait on a younger peer that
//! waits on its own outer transaction), and when it commits into the
//! subtree of an enclosing transaction, that enclosing attempt is marked:
//! it will conflict. An enclosing transaction whose attempts fail
//! [`NESTED_LIMIT`] times in a row with such a mark can never commit; it
//! reports a [`NestedConflict`] instead of looping.

use crate::error::{NestedCause, NestedConflict, NodeName, Starved, WaitBudgetExceeded};
use crate::linkage::Linkage;
use crate::negotiation::{self, Negotiator, Stamp};
use crate::packet::{self, Packet};
use crate::priority::{self, Priority, STARVATION_MIN_RETRIES, TxOptions};
use crate::protocol::{
    CommitResult, Frame, Operation, Outcome, SnapResult, SnapshotFrame, UnbundleFrame, UnbundleMode,
};
use crate::serial;
use crate::snapshot::Snapshot;
use crate::structure;
use crate::sync::thread_local;
use crate::transaction::{Transaction, TxStats};
use crate::wrapper::PacketWrapper;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempts in a row that may fail only because of the thread's own nested
/// commits before the enclosing transaction reports a [`NestedConflict`].
/// Each such attempt ran the closure, which committed into the enclosing
/// subtree again; a closure that does so on its first attempt only (then
/// writes through the enclosing transaction) needs one.
pub const NESTED_LIMIT: u32 = 4;

/// What the body of a transaction asks for.
pub(crate) enum Flow<E> {
    Commit,
    Retry,
    Stop,
    Fail(E),
}

/// How a transaction ended without committing.
pub(crate) enum Ended<E> {
    /// The closure failed with its own error.
    Body(E),
    /// Its own nested commits keep invalidating it.
    Nested(NestedConflict),
    /// Its wait budget ran out (fallible forms only).
    Budget(WaitBudgetExceeded),
    /// A yielding class past its starvation bound (fallible forms only).
    Starved(Starved),
}

/// What a closure did that may invalidate an enclosing attempt of its
/// thread.
enum NestedEvent {
    /// A nested commit: its root and what it published.
    Commit(Arc<Linkage>, Arc<Packet>),
    /// A snapshot (of this node) that took a node out of a limbo an
    /// enclosing attempt holds: that attempt cannot commit.
    TookLimbo(Arc<Linkage>),
    /// A snapshot (of this node, reading this packet) inside a closure: an
    /// enclosing attempt that has used a limbo cannot take a base that was
    /// only re-bundled (`Transaction::rebase`), so a snapshot whose bundle
    /// re-bundled it (a hard link) invalidates it.
    Snapshot(Arc<Linkage>, Arc<Packet>),
}

/// Per-thread nesting state. An outermost transaction pays two cell
/// accesses; the log of nested commits is only written by nested ones.
struct Nesting {
    /// Transactions running on this thread (0: none).
    depth: Cell<u32>,
    /// The outermost running transaction's stamp (valid while depth > 0).
    stamp: Cell<Stamp>,
    /// Entries ever pushed to `log` (a generation count: nested commits
    /// and snapshots inside closures).
    commits: Cell<u64>,
    /// Those nested commits and the snapshots that matter (`NestedEvent`);
    /// cleared when an outermost transaction starts an attempt.
    log: RefCell<Vec<NestedEvent>>,
    /// The limbo wrappers the running attempts of this thread installed
    /// (online inserts and releases), with their nodes: a snapshot inside a
    /// closure that replaces one has doomed its own enclosing attempt.
    limbos: RefCell<Vec<(Arc<Linkage>, Arc<PacketWrapper>)>>,
    /// `priority::scope`: the thread's class, if one was set.
    class: Cell<Option<Priority>>,
    /// `priority::wait_budget`: the deadline of fallible transactions.
    deadline: Cell<Option<Instant>>,
    /// `priority::starvation_bound`.
    starvation: Cell<Option<Duration>>,
}

thread_local! {
    // Not `const`: loom's `thread_local!` does not take a const initialiser.
    #[allow(clippy::missing_const_for_thread_local)]
    static NESTING: Nesting = Nesting {
        depth: Cell::new(0),
        stamp: Cell::new(0),
        commits: Cell::new(0),
        log: RefCell::new(Vec::new()),
        limbos: RefCell::new(Vec::new()),
        class: Cell::new(None),
        deadline: Cell::new(None),
        starvation: Cell::new(None),
    };
}

/// The thread's class set by `priority::scope`; returns the previous one.
pub(crate) fn set_class(c: Option<Priority>) -> Option<Priority> {
    NESTING.with(|n| n.class.replace(c))
}

pub(crate) fn class() -> Option<Priority> {
    NESTING.try_with(|n| n.class.get()).ok().flatten()
}

pub(crate) fn set_deadline(d: Option<Instant>) {
    NESTING.with(|n| n.deadline.set(d));
}

pub(crate) fn deadline() -> Option<Instant> {
    NESTING.try_with(|n| n.deadline.get()).ok().flatten()
}

pub(crate) fn set_starvation(d: Option<Duration>) -> Option<Duration> {
    NESTING.with(|n| n.starvation.replace(d))
}

/// The stamp a stand-alone snapshot on this thread negotiates with: the
/// outermost running transaction's, or a fresh one of the thread's class —
/// [`Priority::Interactive`] unless a scope set one, so that readers
/// polling snapshots never hold up writers.
pub(crate) fn snapshot_stamp() -> Stamp {
    NESTING
        .try_with(|n| {
            if n.depth.get() > 0 {
                n.stamp.get()
            } else {
                let class = n.class.get().unwrap_or(Priority::Interactive);
                priority::with_class(serial::next(0), class)
            }
        })
        .unwrap_or_else(|_| priority::with_class(serial::next(0), Priority::Interactive))
}

/// This transaction's place in `NESTING`; left when dropped (also when the
/// closure panics).
struct Entered {
    depth: u32,
}

/// What a fallible transaction gives up at (resolved from its options and
/// the thread's scopes when it starts).
#[derive(Default)]
struct Bounds {
    deadline: Option<Instant>,
    budget: Duration,
    /// Age after which a yielding class reports starvation, and its start.
    starvation: Option<(Duration, Instant)>,
}

impl Entered {
    /// Enters this thread's nesting. An outermost transaction mints a stamp
    /// of its class (the call's, else the thread's, else Normal); a nested
    /// one negotiates with the outermost one's. One thread-local access.
    fn new(opts: &TxOptions) -> (Self, Stamp, Bounds) {
        NESTING.with(|n| {
            let d = n.depth.get();
            let stamp = if d == 0 {
                let class = opts.priority.or(n.class.get()).unwrap_or_default();
                let s = priority::with_class(serial::next(0), class);
                n.stamp.set(s);
                s
            } else {
                n.stamp.get()
            };
            n.depth.set(d + 1);
            let mut bounds = Bounds::default();
            if opts.fallible {
                let scoped = n.deadline.get();
                let starve = opts.starvation.or(n.starvation.get());
                if scoped.is_some() || opts.wait_budget.is_some() || starve.is_some() {
                    let now = Instant::now();
                    let own = opts.wait_budget.and_then(|b| now.checked_add(b));
                    bounds.deadline = match (scoped, own) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    bounds.budget = bounds
                        .deadline
                        .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                    if priority::class_of(stamp).yields() {
                        bounds.starvation = starve.map(|age| (age, now));
                    }
                }
            }
            (Entered { depth: d }, stamp, bounds)
        })
    }

    /// Starts an attempt: the nested-commit count to compare with later.
    fn attempt(&self) -> u64 {
        NESTING.with(|n| {
            if self.depth == 0 && n.commits.get() != 0 {
                n.log.borrow_mut().clear();
                n.commits.set(0);
            }
            n.commits.get()
        })
    }

    /// The attempt that started at `since` and read `base` at `root` was
    /// lost: did a nested commit of this thread invalidate it? Its root is
    /// inside this tree, or it is an ancestor and changed this root's packet.
    /// `plain`: the attempt held no limbo (a re-bundled base was no loss).
    fn lost_to_nested(
        &self,
        since: u64,
        root: &Arc<Linkage>,
        base: &Arc<Packet>,
        plain: bool,
    ) -> Option<(NodeName, NestedCause)> {
        NESTING.with(|n| {
            if n.commits.get() == since {
                return None;
            }
            let log = n.log.borrow();
            let from = log.len() - (n.commits.get() - since) as usize;
            let mine: std::collections::HashSet<*const Linkage> = packet::nodes_in(base)
                .iter()
                .map(Arc::as_ptr)
                .chain(std::iter::once(Arc::as_ptr(root)))
                .collect();
            log[from..].iter().find_map(|event| {
                let (inner, published) = match event {
                    NestedEvent::Commit(inner, published) => (inner, published),
                    NestedEvent::TookLimbo(inner) => {
                        return Some((name(inner), NestedCause::Snapshot));
                    }
                    NestedEvent::Snapshot(inner, read) => {
                        // It read this root re-bundled: same state, another
                        // packet (a hard link's packet taken to its other
                        // parent).
                        let rebundled = !plain
                            && packet::find(inner, read, root).is_some_and(|p| {
                                let before = Snapshot {
                                    root: root.clone(),
                                    packet: base.clone(),
                                };
                                let shot = Snapshot {
                                    root: inner.clone(),
                                    packet: read.clone(),
                                };
                                !Arc::ptr_eq(p, base)
                                    && crate::snapshot::same_state(
                                        &before,
                                        &shot,
                                        base,
                                        p,
                                        crate::snapshot::Voids::Anywhere,
                                    )
                            });
                        return rebundled.then(|| (name(inner), NestedCause::Snapshot));
                    }
                };
                // Inside this tree, around it (changing it), or sharing a
                // node with it (a hard link: its snapshot takes that node's
                // packet out of this tree).
                let inside = mine.contains(&Arc::as_ptr(inner));
                let changed_around =
                    packet::find(inner, published, root).is_some_and(|p| !Arc::ptr_eq(p, base));
                let shares = || {
                    packet::nodes_in(published)
                        .iter()
                        .any(|x| mine.contains(&Arc::as_ptr(x)))
                };
                (inside || changed_around || shares()).then(|| (name(inner), NestedCause::Commit))
            })
        })
    }

    /// This (nested) transaction published `shot`.
    fn committed(&self, shot: &Snapshot) {
        if self.depth == 0 {
            return;
        }
        NESTING.with(|n| {
            n.log
                .borrow_mut()
                .push(NestedEvent::Commit(shot.root.clone(), shot.packet.clone()));
            n.commits.set(n.commits.get() + 1);
        });
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = NESTING.try_with(|n| n.depth.set(self.depth));
    }
}

pub(crate) fn name(link: &Arc<Linkage>) -> NodeName {
    NodeName::of(link)
}

/// Runs the protocol for a snapshot of `node`; `None` when its wait budget
/// ran out (only for a negotiator armed with one).
pub(crate) fn snapshot_result(node: &Arc<Linkage>, neg: &mut Negotiator) -> Option<SnapResult> {
    let frame = Frame::Snapshot(SnapshotFrame::new(node.clone()));
    match Operation::run_frame(frame, neg) {
        Outcome::Snapshot(r) => Some(r),
        Outcome::Expired => None,
        _ => unreachable!("a snapshot operation returns a snapshot"),
    }
}

/// Unbundles `node` from its ancestors if it is bundled (the `Promote`
/// unbundle), so that the next snapshot of it reads its own wrapper.
fn give_priority(node: &Arc<Linkage>, neg: &mut Negotiator) {
    let w = node.load();
    if !w.has_priority() {
        let frame = UnbundleFrame::new(node.clone(), w, UnbundleMode::Promote);
        let _ = Operation::run_frame(Frame::from(frame), neg);
    }
}

/// A stand-alone snapshot (`Node::snapshot`).
pub(crate) fn take_snapshot(node: &Arc<Linkage>) -> Snapshot {
    let nested = NESTING.try_with(|n| n.depth.get() != 0).unwrap_or(false);
    let held = if nested { own_limbos_held() } else { 0 };
    let mut neg = Negotiator::with_stamp(snapshot_stamp());
    #[cfg(all(test, not(loom)))]
    crate::explore::validate::begin(neg.stamp);
    let r = snapshot_result(node, &mut neg).expect("a snapshot without a budget never expires");
    drop(neg); // clears its tags
    crate::sync::reclaim();
    if nested {
        // Bundling took a node out of a limbo an enclosing attempt of this
        // thread holds (the node is in both trees): that attempt cannot
        // commit. Counted like a nested commit into it, so a closure that
        // does this on every attempt is reported, not retried forever.
        // Else what it read, in case it re-bundled the root of an attempt
        // that has used a limbo (`lost_to_nested` decides).
        let event = if held != 0 && own_limbos_held() != held {
            NestedEvent::TookLimbo(node.clone())
        } else {
            NestedEvent::Snapshot(node.clone(), r.packet.clone())
        };
        NESTING.with(|n| {
            n.log.borrow_mut().push(event);
            n.commits.set(n.commits.get() + 1);
        });
    }
    Snapshot {
        root: node.clone(),
        packet: r.packet,
    }
}

/// How many of this thread's attempts' limbo wrappers are still in place,
/// as a bit set over the first 64 (0 outside transactions: no cost beyond
/// one thread-local access).
fn own_limbos_held() -> u64 {
    NESTING
        .try_with(|n| {
            if n.depth.get() == 0 {
                return 0;
            }
            let limbos = n.limbos.borrow();
            limbos
                .iter()
                .take(64)
                .enumerate()
                .filter(|(_, (node, w))| Arc::ptr_eq(&node.load(), w))
                .fold(0u64, |acc, (i, _)| acc | (1 << i))
        })
        .unwrap_or(0)
}

/// An attempt of this thread installed the limbo wrapper `w` on `node`.
pub(crate) fn hold_limbo(node: &Arc<Linkage>, w: &Arc<PacketWrapper>) {
    let _ = NESTING.try_with(|n| n.limbos.borrow_mut().push((node.clone(), w.clone())));
}

/// The attempt that installed `w` ended.
pub(crate) fn forget_limbo(w: &Arc<PacketWrapper>) {
    let _ = NESTING.try_with(|n| n.limbos.borrow_mut().retain(|(_, x)| !Arc::ptr_eq(x, w)));
}

/// The closure asked to run again: it is now waiting for something only
/// others can change. Release every tag this transaction holds (they would
/// block exactly those others: issue 9, defect 6) and give up its age: take
/// a fresh stamp, minted after the snapshot it just read (`last`: the
/// serial of its wrapper), so younger than whoever wrote what it read. With
/// its old stamp it would still win every conflict with the writer it
/// waits for, and each of its snapshots would re-bundle what the writer
/// had just unbundled: TLC found that lasso (`tla/FINDINGS.md` #6).
/// TLA+: BodyRetry
pub(crate) fn body_retry(neg: &mut Negotiator, last: serial::Serial) {
    negotiation::clear_my_tags(neg);
    // A fresh age, the same class.
    neg.stamp = priority::with_class(serial::next(last), priority::class_of(neg.stamp));
    #[cfg(all(test, not(loom)))]
    crate::explore::validate::restamp(neg.stamp);
}

/// Commits one attempt; `Some` with the committed snapshot on success.
fn commit(tr: &mut Transaction) -> Option<Snapshot> {
    // A budget that ran out in there (an expired wait is not retried with
    // the budget: see `Negotiator::wait`) ends the attempt here.
    let settled = tr.settle_moves();
    #[cfg(all(test, not(loom)))]
    crate::explore::validate::body_end();
    if !settled || tr.neg.expired {
        return None;
    }
    let mut rebased = false;
    loop {
        let outcome = commit_once(tr)?;
        // A conflict where the base was only re-bundled: once, against
        // the state read again (`Transaction::rebase`).
        if outcome.is_some() || rebased || !tr.rebase() {
            return outcome;
        }
        rebased = true;
    }
}

/// One commit of the attempt's packet against its base: `None` when the
/// attempt cannot commit at all (an expired budget, a failed cycle check
/// that ended it), `Some(None)` for a conflict, `Some(Some(shot))` done.
fn commit_once(tr: &mut Transaction) -> Option<Option<Snapshot>> {
    let frame = tr.commit_frame();
    let external = tr.inserts.iter().any(|i| i.external);
    let outcome = if external || tr.marks.any() {
        let released = if external {
            tr.released_subtrees()
        } else {
            Vec::new()
        };
        let (root, working, inserts) = (&tr.root, &tr.packet, &tr.inserts);
        let marks = &mut tr.marks;
        structure::commit_locked(
            frame,
            &mut tr.neg,
            || !external || structure::inserts_acyclic(root, working, &released, inserts),
            |o| {
                if marks.any() && matches!(o, Outcome::Commit(CommitResult::Committed)) {
                    marks.take_place();
                }
            },
        )?
    } else {
        Operation::run_frame(frame, &mut tr.neg)
    };
    match outcome {
        Outcome::Commit(CommitResult::Committed) => Some(Some(Snapshot {
            root: tr.root.clone(),
            packet: tr.packet.clone(),
        })),
        Outcome::Commit(CommitResult::Conflict) => Some(None),
        Outcome::Expired => None,
        _ => unreachable!("a commit operation returns a commit result"),
    }
}

/// The retry loop shared by every `iterate_commit` flavour.
pub(crate) fn drive<E>(
    root: &Arc<Linkage>,
    opts: &TxOptions,
    stats: Option<&mut TxStats>,
    mut body: impl FnMut(&mut Transaction) -> Flow<E>,
) -> Result<Option<Snapshot>, Ended<E>> {
    let (entered, stamp, bounds) = Entered::new(opts);
    let mut neg = Negotiator::for_transaction(stamp);
    let soft0 = neg.soft;
    #[cfg(all(test, not(loom)))]
    crate::explore::validate::begin(stamp);
    neg.deadline = bounds.deadline;
    neg.armed = true;
    let mut attempt = 0u32;
    let mut lost = 0u32;
    let mut own_losses = 0u32;
    let mut promote = false;
    let mut after = None;
    let result = loop {
        if let Some((age, since)) = bounds.starvation {
            let old = since.elapsed();
            if lost >= STARVATION_MIN_RETRIES && old >= age {
                break Err(Ended::Starved(Starved {
                    node: name(root),
                    priority: priority::class_of(neg.stamp),
                    attempts: lost,
                    age: old,
                }));
            }
        }
        let since = entered.attempt();
        if std::mem::take(&mut promote) {
            give_priority(root, &mut neg);
            if neg.expired {
                break Err(expired(root, &neg, &bounds, attempt));
            }
        }
        let Some(snap) = snapshot_result(root, &mut neg) else {
            break Err(expired(root, &neg, &bounds, attempt));
        };
        // The closure's own waits (dynamic operations) are not clipped: the
        // budget is checked where the driver waits.
        neg.armed = false;
        let soft = neg.soft;
        let mut tr = Transaction::new(root.clone(), snap, attempt, neg);
        attempt += 1;
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::body_start();
        let flow = body(&mut tr);
        #[cfg(all(test, not(loom)))]
        if !matches!(flow, Flow::Commit) || tr.doomed {
            crate::explore::validate::body_end();
        }
        tr.neg.armed = true;
        let retried = matches!(flow, Flow::Retry);
        let committed = match flow {
            Flow::Commit if tr.doomed => {
                tracing::trace!(attempt, "transaction doomed by a dynamic operation");
                None
            }
            Flow::Commit => {
                let wrote = !Arc::ptr_eq(&tr.old, &tr.packet);
                commit(&mut tr).map(|shot| (shot, wrote))
            }
            Flow::Retry => {
                let last = tr.snap_wrapper.as_ref().map_or(0, |w| w.serial);
                body_retry(&mut tr.neg, last);
                // The closure waits for another thread here, busily: tell
                // loom so (it explores the other thread instead of this
                // spin). Nothing in other builds.
                #[cfg(loom)]
                loom::thread::yield_now();
                None
            }
            Flow::Stop => {
                neg = tr.into_negotiator();
                break Ok(None);
            }
            Flow::Fail(e) => {
                neg = tr.into_negotiator();
                break Err(Ended::Body(e));
            }
        };
        if let Some((shot, wrote)) = committed {
            if tr.neg.soft == soft0 {
                negotiation::committed_without_soft_loss();
            }
            tr.committed = true;
            tr.seal_inserts();
            after = Some((std::mem::take(&mut tr.marks), wrote));
            neg = tr.into_negotiator();
            if wrote {
                entered.committed(&shot);
            }
            break Ok(Some(shot));
        }
        tracing::trace!(attempt, "transaction attempt lost, retrying");
        if !retried {
            lost += 1;
        }
        promote = tr.wants_priority;
        let mut lost_to = entered.lost_to_nested(since, root, &tr.old, tr.is_plain());
        let wait_for = tr.wait_for.take();
        neg = tr.into_negotiator();
        if neg.expired {
            break Err(expired(root, &neg, &bounds, attempt));
        }
        if neg.soft < soft && !retried && wait_for.is_none() && negotiation::soft_loss_again() {
            // This attempt lost softly (no tag), and so did this thread's
            // last transaction: a hot spot. Let the winner go on.
            negotiation::back_off(neg.stamp);
        }
        if let Some((owner, child)) = wait_for {
            if owner.thread == std::thread::current().id() {
                // The enclosing attempt of this very thread holds that
                // limbo: it cannot end while this transaction runs.
                lost_to = Some((name(&child), NestedCause::HeldByEnclosing));
            } else {
                // Wait, holding no tag (the owner may need one of ours to
                // commit), until the owner of that limbo has ended.
                negotiation::clear_my_tags(&mut neg);
                #[cfg(all(test, not(loom)))]
                let recorded = crate::explore::validate::owner_wait(&owner);
                #[cfg(not(all(test, not(loom))))]
                let recorded = false;
                if !recorded {
                    owner.wait();
                }
            }
        }
        match lost_to {
            Some((inner, cause)) => {
                own_losses += 1;
                if own_losses >= NESTED_LIMIT {
                    break Err(Ended::Nested(NestedConflict {
                        outer: name(root),
                        inner,
                        attempts: own_losses,
                        cause,
                    }));
                }
            }
            None => own_losses = 0,
        }
    };
    if let Some(s) = stats {
        *s = TxStats {
            retries: attempt.saturating_sub(1),
            cas_failures: neg.cas_failures,
            waits: neg.waits,
            waited: neg.waited,
        };
    }
    // Notification: outside every priority tag and outside this
    // transaction's nesting (a listener may commit, also into this tree).
    drop(neg);
    drop(entered);
    // Outside every tag and CAS window of this transaction.
    crate::sync::reclaim();
    if let (Some((marks, wrote)), Ok(Some(shot))) = (after, &result) {
        crate::subscription::committed(wrote);
        if marks.any() {
            marks.deliver(shot, in_transaction());
        }
    }
    result
}

/// The error of a transaction whose wait budget ran out.
fn expired<E>(root: &Arc<Linkage>, neg: &Negotiator, bounds: &Bounds, attempts: u32) -> Ended<E> {
    Ended::Budget(WaitBudgetExceeded {
        node: name(root),
        budget: bounds.budget,
        waited: neg.waited,
        attempts,
    })
}

/// Whether the calling thread runs inside some transaction's closure (for
/// the delivery of marks: `talker`).
pub(crate) fn in_transaction() -> bool {
    NESTING.try_with(|n| n.depth.get() > 0).unwrap_or(false)
}
