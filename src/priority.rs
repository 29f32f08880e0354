//! Priority classes, wait budgets and a starvation bound.
//!
//! Threads of an instrument program are not equal: an acquisition loop
//! commits readings at kHz rates and must not wait behind a GUI that redraws
//! from snapshots, or behind a script's long transaction. Every transaction
//! (and every stand-alone snapshot) negotiates with a [`Priority`] class
//! folded into its stamp: on a priority tag a **higher class always wins**
//! against a lower one, and within a class the oldest wins, as before
//! (`docs/negotiation.md` has the table of what each class promises).
//!
//! The class is set for a thread by a scoped guard ([`scope`]) or for one
//! transaction by [`Node::transaction`](crate::Node::transaction)'s builder.
//! A transaction nested inside another one's closure negotiates as the
//! outermost one (class and age): it is part of that work.
//!
//! Two bounds make the fallible forms give up instead of retrying for ever;
//! they are reported as errors, so only `try_` forms
//! ([`Node::try_iterate_commit`](crate::Node::try_iterate_commit) and the
//! builder's `try_iterate_commit`) honour them:
//!
//! * a **wait budget** ([`wait_budget`], or per call): once the time is up a
//!   transaction that has to wait on a tag abandons (its tags are released)
//!   and returns [`TreeError::WaitBudgetExceeded`](crate::TreeError). It
//!   never proceeds *past* a tag: a tag is its owner's completion
//!   guarantee, and a budgeted thread that barged past it would restart the
//!   ping-pong the tag exists to stop (KAME found exactly that; northriv/KAME
//!   kamestm/transaction_detail.h, `ScopedWaitBudget`'s exemption). So the
//!   budget bounds how long it *waits*, not when a holder of a higher or
//!   equal class finishes;
//! * a **starvation bound** ([`starvation_bound`], or per call) for the
//!   classes that yield ([`Priority::Interactive`], [`Priority::Background`]):
//!   one that is older than the bound and lost at least
//!   [`STARVATION_MIN_RETRIES`] attempts returns
//!   [`TreeError::Starved`](crate::TreeError), as KAME's starvation handler
//!   does (northriv/KAME kamestm/transaction.h, `throw_if_starved_`).
//!
//! ```
//! use kame_stm::{Node, TreeError};
//! use kame_stm::priority::{self, Priority};
//! use std::time::Duration;
//!
//! let reading = Node::new(0.0_f64);
//! // An acquisition thread: everything it commits wins over lower classes.
//! let _rt = priority::scope(Priority::Realtime);
//! reading.iterate_commit(|tr| tr[&reading] = 1.5);
//! // One transaction with a budget: gives up waiting after 1 ms.
//! let r = reading
//!     .transaction()
//!     .wait_budget(Duration::from_millis(1))
//!     .try_iterate_commit(|tr| {
//!         tr[&reading] += 1.0;
//!         Ok::<(), TreeError>(())
//!     });
//! assert_eq!(r.unwrap()[&reading], 2.5);
//! ```

use crate::drive;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// A transaction's class in the negotiation on priority tags, highest
/// first. A higher class always wins a tag against a lower one; within a
/// class the older transaction wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Acquisition: wins against every other class and never parks (it
    /// spins, then yields, and only ever behind an older `Realtime`).
    Realtime,
    /// The default for transactions.
    #[default]
    Normal,
    /// GUI work; the default of a stand-alone snapshot taken outside any
    /// [`scope`], so that polling readers never hold up writers.
    Interactive,
    /// Scripts and long jobs: yields to everything else. Like
    /// `Interactive`, its tag stops holding up waiters after
    /// [`PRIVILEGE_EXPIRY`].
    Background,
}

/// Lost attempts a lower-class transaction needs before the starvation
/// bound may report it (KAME's `KAME_STM_LOWPRIO_STARVE_MIN_RETRIES`).
pub const STARVATION_MIN_RETRIES: u32 = 2;

/// How long the tag of a yielding class ([`Priority::Interactive`],
/// [`Priority::Background`]) may hold up a transaction that would
/// otherwise wait for it: after that the waiter takes the tag over, as if
/// it had won. A GUI or a script that keeps a node tagged this long (a slow
/// closure after a lost attempt) stops blocking everyone else; it may then
/// lose and retry, which is what the starvation bound reports. The tags of
/// [`Priority::Normal`] and [`Priority::Realtime`] never expire: they are
/// the completion guarantee. 51 ms, as the original (1 ms minimum
/// privilege age + 50 ms maximum hold, `northriv/KAME` `kamestm/`).
pub const PRIVILEGE_EXPIRY: Duration = Duration::from_millis(51);

impl Priority {
    /// Whether this class yields to [`Priority::Normal`] (and so may
    /// starve, and is subject to the starvation bound).
    #[must_use]
    pub fn yields(self) -> bool {
        self > Priority::Normal
    }
}

/// Sets the calling thread's priority class until the guard is dropped
/// (then the previous one is back). Covers transactions and stand-alone
/// snapshots started on this thread meanwhile.
///
/// ```
/// use kame_stm::priority::{self, Priority};
/// assert_eq!(priority::current(), Priority::Normal);
/// {
///     let _g = priority::scope(Priority::Background);
///     assert_eq!(priority::current(), Priority::Background);
/// }
/// assert_eq!(priority::current(), Priority::Normal);
/// ```
#[must_use = "the class is reset when the guard is dropped"]
pub fn scope(class: Priority) -> PriorityScope {
    PriorityScope {
        prev: drive::set_class(Some(class)),
        _thread: PhantomData,
    }
}

/// The calling thread's class for transactions ([`Priority::Normal`]
/// outside any [`scope`]).
#[must_use]
pub fn current() -> Priority {
    drive::class().unwrap_or_default()
}

/// Gives every fallible transaction (`try_` form) started on this thread
/// until the guard is dropped a deadline `budget` from now: a transaction
/// that would wait on a priority tag after it returns
/// [`TreeError::WaitBudgetExceeded`](crate::TreeError) instead. Nested
/// budgets take the tighter deadline (a callee cannot give itself more time
/// than its caller allowed).
///
/// ```
/// use kame_stm::{Node, TreeError, priority};
/// use std::time::Duration;
/// let n = Node::new(0u32);
/// let _b = priority::wait_budget(Duration::from_micros(500));
/// // Uncontended: nothing to wait for, so it commits.
/// n.try_iterate_commit(|tr| { tr[&n] = 1; Ok::<(), TreeError>(()) }).unwrap();
/// ```
#[must_use = "the budget ends when the guard is dropped"]
pub fn wait_budget(budget: Duration) -> BudgetScope {
    let at = Instant::now().checked_add(budget);
    let prev = drive::deadline();
    let tighter = match (prev, at) {
        (Some(p), Some(a)) => Some(p.min(a)),
        (p, a) => p.or(a),
    };
    drive::set_deadline(tighter);
    BudgetScope {
        prev,
        _thread: PhantomData,
    }
}

/// Makes every fallible transaction of a yielding class ([`Priority::yields`])
/// started on this thread until the guard is dropped report
/// [`TreeError::Starved`](crate::TreeError) once it is older than `age` and
/// lost at least [`STARVATION_MIN_RETRIES`] attempts.
///
/// ```
/// use kame_stm::{Node, TreeError, priority};
/// use std::time::Duration;
/// let _bg = priority::scope(priority::Priority::Background);
/// let _s = priority::starvation_bound(Duration::from_secs(1));
/// let n = Node::new(0u32);
/// n.try_iterate_commit(|tr| { tr[&n] = 1; Ok::<(), TreeError>(()) }).unwrap();
/// ```
#[must_use = "the bound ends when the guard is dropped"]
pub fn starvation_bound(age: Duration) -> StarvationScope {
    StarvationScope {
        prev: drive::set_starvation(Some(age)),
        _thread: PhantomData,
    }
}

/// Restores the previous class when dropped ([`scope`]).
#[derive(Debug)]
pub struct PriorityScope {
    prev: Option<Priority>,
    /// The setting is the thread's: the guard stays on it.
    _thread: PhantomData<*const ()>,
}

impl Drop for PriorityScope {
    fn drop(&mut self) {
        drive::set_class(self.prev);
    }
}

/// Restores the previous deadline when dropped ([`wait_budget`]).
#[derive(Debug)]
pub struct BudgetScope {
    prev: Option<Instant>,
    _thread: PhantomData<*const ()>,
}

impl Drop for BudgetScope {
    fn drop(&mut self) {
        drive::set_deadline(self.prev);
    }
}

/// Restores the previous starvation bound when dropped ([`starvation_bound`]).
#[derive(Debug)]
pub struct StarvationScope {
    prev: Option<Duration>,
    _thread: PhantomData<*const ()>,
}

impl Drop for StarvationScope {
    fn drop(&mut self) {
        drive::set_starvation(self.prev);
    }
}

/// Per-call settings of one transaction (see
/// [`Node::transaction`](crate::Node::transaction)); unset ones come from
/// this thread's scopes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TxOptions {
    pub(crate) priority: Option<Priority>,
    pub(crate) wait_budget: Option<Duration>,
    pub(crate) starvation: Option<Duration>,
    /// Only a fallible form can report a budget or starvation.
    pub(crate) fallible: bool,
}

// ---------------------------------------------------------------------------
// The class in the tag word.

/// Bits above the Lamport serial in a stamp: the class. Normal is 0, so a
/// stamp without class bits (and a zero, torn or test stamp) is Normal.
pub(crate) const CLASS_SHIFT: u32 = 62;
/// The serial part of a stamp: 46 bits of Lamport counter and the 16-bit
/// thread id (2^46 transactions on one clock before the order wraps,
/// against 2^48 without the class).
pub(crate) const SERIAL_MASK: u64 = (1 << CLASS_SHIFT) - 1;
/// Flipping bit 62 of the class field turns it into the rank (Realtime 0,
/// Normal 1, Interactive 2, Background 3), so the order on tags is one
/// XOR and one comparison.
const RANK_FLIP: u64 = 1 << CLASS_SHIFT;

const fn field(class: Priority) -> u64 {
    match class {
        Priority::Normal => 0,
        Priority::Realtime => 1,
        Priority::Background => 2,
        Priority::Interactive => 3,
    }
}

/// A stamp of class `class` for the serial `serial`.
pub(crate) fn with_class(serial: u64, class: Priority) -> u64 {
    (serial & SERIAL_MASK) | (field(class) << CLASS_SHIFT)
}

/// The class a stamp (or a tag) was minted with.
pub(crate) fn class_of(stamp: u64) -> Priority {
    match stamp >> CLASS_SHIFT {
        0 => Priority::Normal,
        1 => Priority::Realtime,
        2 => Priority::Background,
        _ => Priority::Interactive,
    }
}

/// The order of tags: `a` wins against `b` (higher class, or same class and
/// older, or same class and age and smaller thread id).
/// TLA+: TagOlder
#[inline]
pub(crate) fn wins(a: u64, b: u64) -> bool {
    (a ^ RANK_FLIP) < (b ^ RANK_FLIP)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn class_dominates_age() {
        let all = [
            Priority::Realtime,
            Priority::Normal,
            Priority::Interactive,
            Priority::Background,
        ];
        for (i, &hi) in all.iter().enumerate() {
            for &lo in &all[i + 1..] {
                // A young stamp of the higher class beats an old one of the lower.
                assert!(wins(
                    with_class(9 << 16 | 1, hi),
                    with_class(1 << 16 | 2, lo)
                ));
                assert!(!wins(
                    with_class(1 << 16 | 2, lo),
                    with_class(9 << 16 | 1, hi)
                ));
            }
            assert_eq!(class_of(with_class(5 << 16 | 3, hi)), hi);
            // Within a class the older wins.
            assert!(wins(
                with_class(1 << 16 | 2, hi),
                with_class(9 << 16 | 1, hi)
            ));
        }
        assert_eq!(with_class(7, Priority::Normal), 7);
    }

    /// A stand-alone snapshot yields to writers unless a scope says
    /// otherwise; inside a transaction it is that transaction's.
    #[test]
    fn snapshot_classes() {
        assert_eq!(class_of(drive::snapshot_stamp()), Priority::Interactive);
        {
            let _g = scope(Priority::Normal);
            assert_eq!(class_of(drive::snapshot_stamp()), Priority::Normal);
        }
        let n = crate::Node::new(0u8);
        let _bg = scope(Priority::Background);
        n.iterate_commit(|_| {
            let _rt = scope(Priority::Realtime);
            assert_eq!(class_of(drive::snapshot_stamp()), Priority::Background);
        });
    }
}
