//! Oldest-wins negotiation: per-linkage priority tags.
//!
//! Optimistic retry alone is not livelock-free: a snapshot that bundles a
//! subtree and a commit that unbundles a child can reset each other forever
//! (see `protocol::interleavings` for a schedule that does it), and a long
//! transaction starves behind short ones. So every linkage carries a
//! *priority tag*: empty, or the stamp of one transaction. A transaction
//! whose CAS on a linkage fails tags it (`tag_after_fail`); from then on
//! nobody else may CAS that linkage (`can_proceed`) until the tag's owner
//! commits or is dropped (`clear_my_tags`). A transaction of a higher
//! priority class wins, and within a class the older one (smaller stamp;
//! `priority::wins`): it overwrites the loser's tag when its own CAS fails,
//! and takes it over while waiting (`preempt_tag`). Tags persist across the
//! retries of a transaction — clearing them per CAS lets a peer squeeze in
//! between two phases and restart the ping-pong.
//!
//! The uncontended path never writes a tag: a tag is only written after a
//! CAS failed. `can_proceed` is one relaxed load of a word that is almost
//! always zero.
//!
//! With the `no-privilege` feature, `can_proceed` is always true and the
//! tag operations do nothing (the spec's `Privilege = FALSE`). That build
//! exists to demonstrate the livelock; never use it in production.

use crate::linkage::Linkage;
use crate::priority::{self, Priority};
use crate::serial::Serial;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A transaction's priority: its class in the top two bits over its
/// serial (`counter << 16 | thread id`), fixed when it starts and kept
/// across its retries. [`priority::wins`] orders them: higher class first,
/// then older (smaller serial).
pub(crate) type Stamp = Serial;

use crate::serial::same_thread;

/// One transaction's (or one snapshot's) negotiation state: its stamp and
/// the ledger of linkages it has tagged. Dropping it clears its tags, so no
/// tag outlives its transaction, whatever ends it (commit, error, panic).
pub(crate) struct Negotiator {
    pub(crate) stamp: Stamp,
    ledger: SmallVec<[Arc<Linkage>; 4]>,
    /// Statistics for the caller.
    pub(crate) cas_failures: u32,
    pub(crate) waits: u32,
    pub(crate) waited: Duration,
    /// Wait budget: when armed, a wait that is still blocked at this
    /// instant gives up and sets `expired` (the driver abandons).
    pub(crate) deadline: Option<Instant>,
    pub(crate) armed: bool,
    pub(crate) expired: bool,
    /// Soft losses left ([`SOFT_LOSSES`] for a transaction of any class
    /// but Realtime, 0 otherwise): while non-zero, a failed commit CAS
    /// writes no tag and uses one up (`protocol::commit`). The spec's
    /// `local[t].soft`.
    pub(crate) soft: u32,
    /// Whether another negotiator has existed since this one was made: a
    /// wait alone can never end (`solo`).
    #[cfg(all(debug_assertions, not(loom)))]
    company: crate::solo::Company,
}

impl Negotiator {
    /// A negotiator with a given stamp (tests play several transactions on
    /// one thread by giving them stamps of different "threads").
    pub(crate) fn with_stamp(stamp: Stamp) -> Self {
        Negotiator {
            stamp,
            ledger: SmallVec::new(),
            cas_failures: 0,
            waits: 0,
            waited: Duration::ZERO,
            deadline: None,
            armed: false,
            expired: false,
            soft: 0,
            #[cfg(all(debug_assertions, not(loom)))]
            company: crate::solo::Company::join(),
        }
    }

    /// The negotiator of a transaction (`drive`): its first
    /// [`SOFT_LOSSES`] failed commit CASes are soft, unless it is
    /// [`Priority::Realtime`] (which must win at once, never back off).
    /// The commit steps read `soft` (`protocol::commit`).
    /// TLA+: Soft
    pub(crate) fn for_transaction(stamp: Stamp) -> Self {
        let mut neg = Negotiator::with_stamp(stamp);
        if priority::class_of(stamp) != Priority::Realtime {
            neg.soft = SOFT_LOSSES;
        }
        neg
    }

    fn record(&mut self, link: &Arc<Linkage>) {
        if !self.ledger.iter().any(|l| Arc::ptr_eq(l, link)) {
            self.ledger.push(link.clone());
        }
    }

    /// Waits until `link` may be CASed by this transaction: spins briefly,
    /// then yields, then parks on the linkage with a timeout,
    /// re-checking (and trying to preempt, when it wins) every round.
    ///
    /// A [`Priority::Realtime`] transaction never parks: it only yields (an
    /// acquisition thread must not sleep in the kernel on the commit path),
    /// and by the tag order it only ever waits behind an older Realtime.
    /// When armed with a deadline that has passed, returns with `expired`
    /// set instead of waiting on (the caller abandons the operation; a
    /// blocked step did nothing, so that is safe). Once `expired` is set,
    /// later waits are not clipped: a caller that loops on its step without
    /// looking at `expired` (the closure's dynamic operations) waits as
    /// before instead of spinning hot; the driver ends the attempt after it.
    pub(crate) fn wait(&mut self, link: &Arc<Linkage>) {
        #[cfg(all(test, not(loom)))]
        if crate::explore::dynamic::body_wait(link, self)
            || crate::explore::coroutine::wait(link, self)
        {
            return;
        }
        #[cfg(all(debug_assertions, not(loom)))]
        crate::solo::check_wait(self.company, link, self.stamp);
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::wait_enter();
        let start = crate::clock::now();
        self.waits += 1;
        debug::waited();
        // A tag is a message from its owner (Lamport): after meeting it,
        // this thread's next transactions are younger than the owner, so an
        // old transaction that tagged is overtaken at most once per thread.
        crate::serial::observe(
            link.tag.load(crate::sync::Ordering::Relaxed) & priority::SERIAL_MASK,
        );
        let realtime = priority::class_of(self.stamp) == Priority::Realtime;
        let budget = if self.armed && !self.expired {
            self.deadline
        } else {
            None
        };
        let mut round = 0u32;
        // The yielding-class tag we wait behind, and since when.
        let mut behind: Option<(u64, Instant)> = None;
        loop {
            crate::clock::round();
            #[cfg(all(test, not(loom)))]
            crate::explore::validate::wait_round();
            let open = can_proceed(link, self);
            let took = !open && preempt_tag(link, self);
            #[cfg(all(test, not(loom)))]
            crate::explore::validate::wait_result(
                match (open, took) {
                    (true, _) => "wait",
                    (false, true) => "preempt_tag",
                    (false, false) => "wait(blocked)",
                },
                link,
                budget.is_some(),
            );
            if open || took {
                break;
            }
            let cur = link.tag.load(crate::sync::Ordering::Relaxed);
            if cur != 0 && priority::wins(self.stamp, cur) {
                // The tag changed under our preemption: take the new one.
                continue;
            }
            if cur != 0 && priority::class_of(cur).yields() {
                let since = match behind {
                    Some((tag, since)) if tag == cur => since,
                    _ => behind.insert((cur, crate::clock::now())).1,
                };
                if crate::clock::now().saturating_duration_since(since)
                    >= priority::PRIVILEGE_EXPIRY
                {
                    #[cfg(all(test, not(loom)))]
                    crate::explore::validate::wait_round();
                    let took = take_expired(link, self, cur);
                    #[cfg(all(test, not(loom)))]
                    crate::explore::validate::expiry(took);
                    if took {
                        break;
                    }
                    continue;
                }
            }
            if cur != 0 && priority::class_of(cur) > priority::class_of(self.stamp) {
                debug::waited_behind_lower();
            }
            if let Some(d) = budget {
                if crate::clock::now() >= d {
                    self.expired = true;
                    tracing::debug!(stamp = self.stamp, "wait budget ran out");
                    break;
                }
            }
            round += 1;
            if round < 32 {
                std::hint::spin_loop();
            } else if round < 64 || realtime {
                std::thread::yield_now();
            } else {
                park_on(link, budget, || !can_proceed(link, self));
            }
        }
        // Its contract: the gate is open to it now, unless its budget ran out.
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::wait_exit(budget.is_some(), self.expired, || {
            can_proceed(link, self)
        });
        let waited = crate::clock::now().saturating_duration_since(start);
        self.waited += waited;
        tracing::debug!(stamp = self.stamp, ?waited, "waited on a priority tag");
    }
}

/// The linkages this negotiator has tagged (for the explorer, `crate::explore`).
#[cfg(all(test, not(loom)))]
impl Negotiator {
    /// No other negotiator has existed since this one was made (`solo`).
    #[cfg(debug_assertions)]
    pub(crate) fn alone(&self) -> bool {
        self.company.alone()
    }

    pub(crate) fn ledger(&self) -> &[Arc<Linkage>] {
        &self.ledger
    }
}

impl Drop for Negotiator {
    fn drop(&mut self) {
        clear_my_tags(self);
        #[cfg(all(debug_assertions, not(loom)))]
        self.company.leave();
    }
}

/// May this transaction CAS `link` now? Yes when the tag is empty or ours
/// (any transaction of this thread: a nested transaction never waits on its
/// outer one).
/// TLA+: CanProceed
#[inline]
pub(crate) fn can_proceed(link: &Linkage, neg: &Negotiator) -> bool {
    if cfg!(feature = "no-privilege") {
        return true;
    }
    let tag = link.tag.load(crate::sync::Ordering::Acquire);
    tag == 0 || same_thread(tag, neg.stamp)
}

/// After a failed CAS on `link`: claim its tag when it is empty or a
/// transaction we win against holds it (a lower class, or our class and
/// younger); leave the tag of one that wins against us alone.
/// TLA+: TagAfterFail
pub(crate) fn tag_after_fail(link: &Arc<Linkage>, neg: &mut Negotiator) {
    if cfg!(feature = "no-privilege") {
        neg.cas_failures += 1;
        return;
    }
    #[cfg(all(test, not(loom)))]
    if split::defer(split::TagWrite::Tag(link.clone())) {
        return;
    }
    neg.cas_failures += 1;
    let me = neg.stamp;
    let mut cur = link.tag.load(crate::sync::Ordering::Acquire);
    loop {
        let new = if cur == 0 || priority::wins(me, cur) {
            me
        } else if same_thread(cur, me) {
            // Ours already (maybe an outer transaction's, which is older).
            return;
        } else {
            return;
        };
        match link.tag.compare_exchange(
            cur,
            new,
            crate::sync::Ordering::AcqRel,
            crate::sync::Ordering::Acquire,
        ) {
            Ok(_) => {
                tracing::debug!(stamp = me, replaced = cur, "priority tag set");
                neg.record(link);
                return;
            }
            Err(actual) => cur = actual,
        }
    }
}

/// After a successful CAS: nothing. Tags are kept for the whole transaction
/// (clearing them here would let a peer restart the ping-pong).
/// TLA+: TagAfterSuccess
#[inline]
pub(crate) fn tag_after_success(_link: &Linkage, _neg: &Negotiator) {}

/// A waiting transaction that wins against the tag's owner (a higher
/// class, or the same class and older) takes the tag.
/// Returns true if the tag is ours afterwards.
/// TLA+: PreemptTag
pub(crate) fn preempt_tag(link: &Arc<Linkage>, neg: &mut Negotiator) -> bool {
    if cfg!(feature = "no-privilege") {
        return true;
    }
    let me = neg.stamp;
    let cur = link.tag.load(crate::sync::Ordering::Acquire);
    if cur == 0 || same_thread(cur, me) {
        return true;
    }
    if !priority::wins(me, cur) {
        return false;
    }
    let ok = link
        .tag
        .compare_exchange(
            cur,
            me,
            crate::sync::Ordering::AcqRel,
            crate::sync::Ordering::Acquire,
        )
        .is_ok();
    if ok {
        tracing::debug!(stamp = me, preempted = cur, "priority tag preempted");
        neg.record(link);
        wake(link);
    }
    ok
}

/// The tag `cur` of a yielding class has held us up for
/// [`priority::PRIVILEGE_EXPIRY`]: take it over, as a preemption does
/// (its owner's clearing leaves our tag alone). `false`: it changed since.
/// Not a TLA+ action: the spec has no time (`tla/README.md`).
pub(crate) fn take_expired(link: &Arc<Linkage>, neg: &mut Negotiator, cur: u64) -> bool {
    let ok = link
        .tag
        .compare_exchange(
            cur,
            neg.stamp,
            crate::sync::Ordering::AcqRel,
            crate::sync::Ordering::Acquire,
        )
        .is_ok();
    if ok {
        tracing::debug!(
            stamp = neg.stamp,
            expired = cur,
            "expired priority tag taken over"
        );
        neg.record(link);
        wake(link);
    }
    ok
}

/// How many failed commit CASes of a transaction are soft: they write no
/// tag (nor does the conflict `commit_read` then finds), and the
/// transaction backs off before its next attempt. Two threads
/// committing at one scope node used to hand it back and forth with a
/// wait and a lost attempt per commit (1.8 attempts per commit); a soft
/// loss lets the winner go on committing while the loser backs off, and
/// a transaction that loses again tags as before, so the oldest-wins
/// argument for progress holds from its second loss on
/// (`docs/negotiation.md`, "Soft losses").
pub(crate) const SOFT_LOSSES: u32 = 1;

/// How long a transaction backs off after a soft loss, before its next
/// attempt (spinning: it holds no tag, and a park would cost more than
/// the wait). Long enough for the winner to chain several commits.
#[cfg_attr(any(test, loom), allow(dead_code))]
pub(crate) const SOFT_BACKOFF: Duration = Duration::from_micros(40);

#[cfg(not(loom))]
std::thread_local! {
    /// Soft losses of this thread since one of its transactions last
    /// committed without any.
    static SOFT_STREAK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A transaction of this thread lost an attempt softly: is it a hot spot,
/// where it should back off ([`back_off`])? Yes from the second soft loss
/// in a row, counted over the thread's transactions: two threads that
/// keep committing at one node lose to each other every time, while a
/// leaf commit that lost once to a scope commit will most likely not lose
/// again, and a back-off would only make it late.
pub(crate) fn soft_loss_again() -> bool {
    #[cfg(not(loom))]
    {
        SOFT_STREAK.with(|s| {
            s.set(s.get().saturating_add(1));
            s.get() >= 2
        })
    }
    #[cfg(loom)]
    false
}

/// A transaction of this thread committed without a soft loss.
pub(crate) fn committed_without_soft_loss() {
    #[cfg(not(loom))]
    SOFT_STREAK.with(|s| s.set(0));
}

/// Backs off after a soft loss: spins for about [`SOFT_BACKOFF`],
/// stretched by up to a half from the stamp's bits so that two losers
/// do not come back in step. Time only: the spec has no time, and a
/// delay is a stutter. Nothing in test builds of the library (the
/// explorer schedules steps, not time) nor under loom.
pub(crate) fn back_off(stamp: Stamp) {
    #[cfg(not(any(test, loom)))]
    {
        let jitter = SOFT_BACKOFF / 2 * ((stamp >> 16) as u32 & 7) / 7;
        let until = Instant::now() + SOFT_BACKOFF + jitter;
        while Instant::now() < until {
            for _ in 0..16 {
                std::hint::spin_loop();
            }
        }
    }
    #[cfg(any(test, loom))]
    let _ = stamp;
}

/// Releases every tag this transaction still owns (on commit, and when the
/// transaction is dropped for any reason), and wakes its waiters.
/// TLA+: ClearMyTags
pub(crate) fn clear_my_tags(neg: &mut Negotiator) {
    if neg.ledger.is_empty() {
        return;
    }
    let me = neg.stamp;
    for link in neg.ledger.drain(..) {
        #[cfg(all(test, not(loom)))]
        if split::defer(split::TagWrite::Clear(link.clone(), me)) {
            continue;
        }
        clear_tag(&link, me);
    }
}

/// Clears the tag of `link` if it is still `me`: an older transaction that
/// preempted us owns the tag now and clears it itself.
fn clear_tag(link: &Linkage, me: Stamp) {
    if link
        .tag
        .compare_exchange(
            me,
            0,
            crate::sync::Ordering::AcqRel,
            crate::sync::Ordering::Relaxed,
        )
        .is_ok()
    {
        tracing::debug!(stamp = me, "priority tag cleared");
        wake(link);
    }
}

/// The explorer's split steps (`crate::explore`, test builds only): while a
/// step runs under [`split::start`], its tag writes (a `tag_after_fail`, the
/// clearing of one tag) are queued instead of done, and the explorer does
/// each one later as a scheduling point of its own, before the thread's
/// next step. So the window between a step's slot operation and its tag
/// writes, which the spec merges into one action, is explored.
#[cfg(all(test, not(loom)))]
pub(crate) mod split {
    use super::{Linkage, Negotiator, Stamp};
    use std::cell::RefCell;
    use std::sync::Arc;

    /// A tag write taken out of a step.
    #[derive(Clone)]
    pub(crate) enum TagWrite {
        /// `tag_after_fail` on the linkage.
        Tag(Arc<Linkage>),
        /// Clearing the linkage's tag if it is still the stamp.
        Clear(Arc<Linkage>, Stamp),
    }

    impl TagWrite {
        pub(crate) fn link(&self) -> &Arc<Linkage> {
            match self {
                TagWrite::Tag(l) | TagWrite::Clear(l, _) => l,
            }
        }

        /// Does it, as the step would have.
        pub(crate) fn run(&self, neg: &mut Negotiator) -> &'static str {
            match self {
                TagWrite::Tag(l) => {
                    super::tag_after_fail(l, neg);
                    "tag_after_fail(split)"
                }
                TagWrite::Clear(l, me) => {
                    super::clear_tag(l, *me);
                    "clear_my_tags(split)"
                }
            }
        }
    }

    thread_local! {
        static QUEUE: RefCell<Option<Vec<TagWrite>>> = const { RefCell::new(None) };
    }

    /// Queue this thread's tag writes from now on.
    pub(crate) fn start() {
        QUEUE.with(|q| *q.borrow_mut() = Some(Vec::new()));
    }

    /// Stops queueing; the writes queued since `start`.
    pub(crate) fn take() -> Vec<TagWrite> {
        QUEUE.with(|q| q.borrow_mut().take().unwrap_or_default())
    }

    /// Queues `w` when queueing is on.
    pub(super) fn defer(w: TagWrite) -> bool {
        QUEUE.with(|q| match q.borrow_mut().as_mut() {
            Some(v) => {
                v.push(w);
                true
            }
            None => false,
        })
    }
}

/// The parking key of a linkage's tag (`crate::park`).
fn tag_key(link: &Linkage) -> usize {
    std::ptr::from_ref(&link.tag) as usize
}

/// Sleeps while `blocked()` holds, until the tag of `link` is cleared or
/// taken over ([`wake`]), or a millisecond passed: a tag overwritten by an
/// older transaction's failure wakes nobody, and a waiter older than the
/// new owner must get to preempt it.
fn park_on(link: &Linkage, budget: Option<std::time::Instant>, blocked: impl Fn() -> bool) {
    debug::parked();
    crate::park::park_on(tag_key(link), budget, blocked);
}

/// Wakes every transaction parked on the tag of `link`.
fn wake(link: &Linkage) {
    crate::park::wake(tag_key(link));
}

/// Per-thread counts of waits, and of the waits a [`Priority::Realtime`]
/// thread must never make, for the tests (`kame_stm::__private`): parks (futex sleeps) and
/// wait rounds spent behind a lower class's tag. Touched only on the
/// contended path.
pub(crate) mod debug {
    use crate::sync::thread_local;
    use std::cell::Cell;

    thread_local! {
        #[allow(clippy::missing_const_for_thread_local)]
        static PARKS: Cell<u64> = Cell::new(0);
        #[allow(clippy::missing_const_for_thread_local)]
        static BEHIND_LOWER: Cell<u64> = Cell::new(0);
        #[allow(clippy::missing_const_for_thread_local)]
        static WAITS: Cell<u64> = Cell::new(0);
    }

    pub(crate) fn waited() {
        let _ = WAITS.try_with(|c| c.set(c.get() + 1));
    }

    pub(crate) fn parked() {
        let _ = PARKS.try_with(|c| c.set(c.get() + 1));
    }

    pub(crate) fn waited_behind_lower() {
        let _ = BEHIND_LOWER.try_with(|c| c.set(c.get() + 1));
    }

    /// (parks, rounds behind a lower class, waits) on this thread so far.
    pub(crate) fn counts() -> (u64, u64, u64) {
        (
            PARKS.try_with(Cell::get).unwrap_or(0),
            BEHIND_LOWER.try_with(Cell::get).unwrap_or(0),
            WAITS.try_with(Cell::get).unwrap_or(0),
        )
    }
}

#[cfg(all(test, not(loom), not(feature = "no-privilege")))]
mod tests {
    use super::*;
    use crate::node::Node;

    fn link() -> Arc<Linkage> {
        Node::new(0u8).link
    }

    /// The tag of `n` at the start of each attempt of a transaction on it
    /// (at `class`) that loses its first `losses` attempts to commits of
    /// another thread.
    fn tags_seen_losing(class: Priority, losses: u32) -> (Vec<u64>, crate::TxStats) {
        let n = crate::Node::new(0u64);
        let other = n.clone();
        let _c = priority::scope(class);
        let mut seen = Vec::new();
        let (_, stats) = n.iterate_commit_with_stats(|tr| {
            seen.push(n.link.tag.load(crate::sync::Ordering::Relaxed));
            if tr.attempt() < losses {
                std::thread::scope(|s| {
                    s.spawn(|| other.iterate_commit(|t| t[&other] += 100));
                });
            }
            tr[&n] += 1;
        });
        assert_eq!(n.read(), 100 * u64::from(losses) + 1);
        (seen, stats)
    }

    /// The back-off starts at a thread's second soft loss in a row, and a
    /// commit without one starts the count over (the back-off itself is
    /// time only, nothing in test builds: the streak is what decides).
    #[test]
    fn the_back_off_starts_at_the_second_soft_loss_in_a_row() {
        assert!(!soft_loss_again(), "a first soft loss does not back off");
        assert!(soft_loss_again(), "the second in a row does");
        assert!(soft_loss_again(), "and so does the third");
        committed_without_soft_loss();
        assert!(!soft_loss_again(), "a commit without one starts over");
        assert!(soft_loss_again());
    }

    /// A transaction's first lost commit is soft: no tag. Its next loss
    /// tags as before (a Realtime transaction's first one already).
    #[test]
    fn a_soft_loss_writes_no_tag_and_the_next_loss_does() {
        assert_eq!(SOFT_LOSSES, 1);
        let (seen, stats) = tags_seen_losing(Priority::Normal, 2);
        assert_eq!(seen[..2], [0, 0], "the first loss was soft: {seen:x?}");
        assert!(same_thread(seen[2], crate::serial::clock()), "{seen:x?}");
        // Lost races, soft ones too: the soft CAS (its conflict is not
        // another one), then the tagging CAS and the conflict it tags.
        assert_eq!(stats.cas_failures, 3, "{stats:?}");
        assert_eq!(stats.retries, 2);
        let (seen, _) = tags_seen_losing(Priority::Realtime, 1);
        assert_eq!(seen[0], 0);
        assert!(same_thread(seen[1], crate::serial::clock()), "{seen:x?}");
    }

    /// A linkage whose tag is `stamp`'s (the holder returned with it).
    fn tagged(stamp: u64) -> (Arc<Linkage>, Negotiator) {
        let l = link();
        let mut holder = Negotiator::with_stamp(stamp);
        tag_after_fail(&l, &mut holder);
        (l, holder)
    }

    /// Arms `neg`'s wait budget with a deadline already past, and sets
    /// this thread a virtual clock (`crate::clock`) that fails a second
    /// round: the wait must end at its first.
    fn spent(neg: &mut Negotiator) -> crate::clock::Virtual {
        let clock = crate::clock::Virtual::start(TICK, TICK);
        neg.deadline = Some(crate::clock::now());
        neg.armed = true;
        clock
    }

    #[test]
    fn older_wins_and_tags_clear() {
        let l = link();
        let mut old = Negotiator::with_stamp((5 << 16) | 1);
        let mut young = Negotiator::with_stamp((9 << 16) | 2);
        assert!(can_proceed(&l, &old) && can_proceed(&l, &young));
        tag_after_fail(&l, &mut young);
        assert!(can_proceed(&l, &young) && !can_proceed(&l, &old));
        // The older one takes over, by a failure of its own or by preemption.
        assert!(preempt_tag(&l, &mut old));
        assert!(can_proceed(&l, &old) && !can_proceed(&l, &young));
        // The younger one cannot take it back.
        tag_after_fail(&l, &mut young);
        assert!(!preempt_tag(&l, &mut young));
        // Clearing the younger one's tags leaves the older one's tag.
        clear_my_tags(&mut young);
        assert!(!can_proceed(&l, &young));
        drop(old);
        assert!(can_proceed(&l, &young));
        assert_eq!(l.tag.load(crate::sync::Ordering::Relaxed), 0);
    }

    #[test]
    fn a_higher_class_wins_whatever_its_age() {
        use crate::priority::with_class;
        let l = link();
        let mut old_bg = Negotiator::with_stamp(with_class((1 << 16) | 1, Priority::Background));
        let mut young_rt = Negotiator::with_stamp(with_class((9 << 16) | 2, Priority::Realtime));
        tag_after_fail(&l, &mut old_bg);
        assert!(!can_proceed(&l, &young_rt));
        assert!(preempt_tag(&l, &mut young_rt));
        // The lower class cannot take it back, by a failure or by preemption.
        tag_after_fail(&l, &mut old_bg);
        assert!(!preempt_tag(&l, &mut old_bg));
        assert!(can_proceed(&l, &young_rt) && !can_proceed(&l, &old_bg));
        // A Realtime's failure overwrites an older Normal's tag at once.
        let l2 = link();
        let mut old_normal = Negotiator::with_stamp((1 << 16) | 3);
        tag_after_fail(&l2, &mut old_normal);
        tag_after_fail(&l2, &mut young_rt);
        assert!(can_proceed(&l2, &young_rt) && !can_proceed(&l2, &old_normal));
    }

    #[test]
    fn an_expired_budget_ends_the_wait_without_barging() {
        let (l, holder) = tagged((1 << 16) | 1);
        let mut waiter = Negotiator::with_stamp((9 << 16) | 2);
        let _clock = spent(&mut waiter);
        waiter.wait(&l);
        assert!(waiter.expired && !can_proceed(&l, &waiter));
        // The tag is the holder's still: the budget gave up, it did not barge.
        assert_eq!(l.tag.load(crate::sync::Ordering::Relaxed), holder.stamp);
    }

    /// One round of a virtual clock (`crate::clock`): 16 make an expiry.
    const TICK: Duration =
        Duration::from_nanos((crate::priority::PRIVILEGE_EXPIRY.as_nanos() / 16) as u64);

    /// A waiter behind a tag of a yielding class takes it over at the
    /// first round at which it has waited `PRIVILEGE_EXPIRY`: not a round
    /// earlier, and (the virtual clock fails the round after) not later.
    #[test]
    fn a_yielding_tag_is_taken_over_when_it_expires() {
        use crate::priority::{PRIVILEGE_EXPIRY, with_class};
        use Priority::{Background, Interactive};
        for (holder_class, waiter_class) in [
            (Background, Background),
            (Interactive, Background),
            (Interactive, Interactive),
        ] {
            let (l, holder) = tagged(with_class((1 << 16) | 1, holder_class));
            let mut waiter = Negotiator::with_stamp(with_class((9 << 16) | 2, waiter_class));
            assert!(!can_proceed(&l, &waiter), "the older tag holds it up");
            let clock = crate::clock::Virtual::start(TICK, PRIVILEGE_EXPIRY + TICK);
            waiter.wait(&l);
            // Seen at the first round (one tick), expired 16 rounds later.
            assert_eq!(clock.elapsed(), TICK + PRIVILEGE_EXPIRY);
            assert_eq!(l.tag.load(crate::sync::Ordering::Relaxed), waiter.stamp);
            assert!(!waiter.expired, "no budget was armed");
            // The holder's clearing leaves the waiter's tag alone.
            drop(holder);
            assert!(can_proceed(&l, &waiter));
        }
    }

    /// The expiry of a yielding-class tag runs from when the waiter first
    /// saw *that* tag: a new holder gets its whole `PRIVILEGE_EXPIRY`, not
    /// what its predecessor left of it. The first holder's tag is replaced
    /// a third of the way through its expiry, at a round of the waiter's
    /// virtual clock.
    #[test]
    fn an_expiry_restarts_when_the_holder_changes() {
        use crate::priority::{PRIVILEGE_EXPIRY, with_class};
        use crate::sync::Ordering::Relaxed;
        let l = link();
        let first = with_class((1 << 16) | 1, Priority::Background);
        let second = with_class((2 << 16) | 2, Priority::Background);
        let mut waiter = Negotiator::with_stamp(with_class((9 << 16) | 3, Priority::Background));
        assert!(l.tag.compare_exchange(0, first, Relaxed, Relaxed).is_ok());
        let change = TICK * 6; // past a third of the expiry
        let clock = crate::clock::Virtual::start(TICK, change + PRIVILEGE_EXPIRY + TICK);
        let l2 = l.clone();
        clock.on_round(move |at| {
            if at == change {
                assert!(
                    l2.tag
                        .compare_exchange(first, second, Relaxed, Relaxed)
                        .is_ok()
                );
            }
        });
        waiter.wait(&l);
        assert_eq!(l.tag.load(Relaxed), waiter.stamp, "the waiter took the tag");
        assert_eq!(
            clock.elapsed(),
            change + PRIVILEGE_EXPIRY,
            "the second holder's tag is taken a whole expiry after it was set"
        );
    }

    /// A budget ends the wait at the first round at or past its deadline,
    /// behind a tag of a class that never expires.
    #[test]
    fn a_budget_ends_the_wait_at_its_deadline() {
        let (l, holder) = tagged((1 << 16) | 1);
        let mut waiter = Negotiator::with_stamp((9 << 16) | 2);
        let clock = crate::clock::Virtual::start(TICK, TICK * 6);
        waiter.deadline = Some(crate::clock::now() + TICK * 5);
        waiter.armed = true;
        waiter.wait(&l);
        assert!(waiter.expired);
        assert_eq!(clock.elapsed(), TICK * 5);
        assert_eq!(l.tag.load(crate::sync::Ordering::Relaxed), holder.stamp);
    }

    /// Once the budget has run out, later waits (the closure's dynamic
    /// operations, which loop on their step without looking at `expired`)
    /// wait for the tag as before instead of returning at once.
    #[test]
    fn an_expired_negotiator_waits_for_the_tag_again() {
        let (l, mut holder) = tagged((1 << 16) | 1);
        let mut waiter = Negotiator::with_stamp((9 << 16) | 2);
        // Spent on the real clock: the wait lasts as long as the holder.
        waiter.deadline = Some(Instant::now());
        waiter.armed = true;
        waiter.expired = true;
        let clearer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            clear_my_tags(&mut holder);
        });
        waiter.wait(&l);
        // It came back because the holder let go, not because of the budget.
        assert!(can_proceed(&l, &waiter));
        clearer.join().expect("the holder");
    }

    /// Meeting a tag moves this thread's Lamport clock up to the tag's
    /// serial: its class bits are not part of it.
    #[test]
    fn a_wait_observes_the_tags_serial_without_its_class() {
        use crate::priority::with_class;
        std::thread::spawn(|| {
            // A thread's clock may be one an ended thread gave back.
            let ahead = crate::serial::counter(crate::serial::clock()) + 1_000_000;
            let (l, _holder) = tagged(with_class((ahead << 16) | 1, Priority::Background));
            let mut waiter =
                Negotiator::with_stamp(with_class(((ahead + 1) << 16) | 2, Priority::Background));
            let _clock = spent(&mut waiter);
            waiter.wait(&l);
            assert!(waiter.expired);
            assert_eq!(crate::serial::counter(crate::serial::clock()), ahead);
        })
        .join()
        .expect("the waiter");
    }

    /// Only a wait behind a *lower* class's tag is counted as one (the
    /// statistic the Realtime tests assert stays 0): not one behind an
    /// older tag of the same class, nor behind a higher class.
    #[test]
    fn only_waits_behind_a_lower_class_are_counted_as_such() {
        use crate::priority::with_class;
        for class in [Priority::Normal, Priority::Realtime] {
            let (l, _holder) = tagged(with_class((1 << 16) | 1, class));
            let mut waiter = Negotiator::with_stamp((9 << 16) | 2);
            let (_, before, waits) = debug::counts();
            let _clock = spent(&mut waiter);
            waiter.wait(&l);
            assert!(waiter.expired);
            assert_eq!(debug::counts().2, waits + 1, "one wait");
            assert_eq!(debug::counts().1, before, "behind {class:?}");
        }
    }

    #[test]
    fn same_thread_never_waits_on_itself() {
        let l = link();
        let mut outer = Negotiator::with_stamp((5 << 16) | 3);
        let mut inner = Negotiator::with_stamp((8 << 16) | 3);
        tag_after_fail(&l, &mut outer);
        assert!(can_proceed(&l, &inner));
        tag_after_fail(&l, &mut inner); // keeps the outer (older) stamp
        drop(inner);
        assert_eq!(l.tag.load(crate::sync::Ordering::Relaxed), (5 << 16) | 3);
    }
}
