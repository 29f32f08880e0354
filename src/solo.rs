//! Debug builds: a wait that nothing can ever end fails at once.
//!
//! A transaction blocked by a priority tag waits until the tag's owner
//! clears it. When no other negotiator has existed at any moment since
//! this one was made, there is no owner: the tag was left by a transaction
//! that has ended (a broken `clear_my_tags`), or the step reported itself
//! blocked on a tag that lets it on (a broken gate). Either way the wait,
//! or the step-wait-step loop around it, never ends. A test that would hang
//! there panics instead, so a broken gate is a failing assertion, not a
//! time-out (cargo-mutants counts the two apart: `docs/verification.md`).
//!
//! The check is sound because negotiators are the only writers of tags
//! (`negotiation`), and one word counts both the live negotiators and the
//! ones ever made: a negotiator that began with no other alive, and sees
//! the made-count unchanged, has been alone all along. The one way such a
//! wait ends is the expiry of a tag of a yielding class (`take_expired`):
//! those are let through. Release builds compile none of this.

use crate::linkage::Linkage;
use crate::priority;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Low half: live negotiators; high half: negotiators ever made.
static NEGOTIATORS: AtomicU64 = AtomicU64::new(0);
const LIVE: u64 = 1;
const MADE: u64 = 1 << 32;

/// What a negotiator knows of its company: `Some(made)` when it began with
/// no other negotiator alive, `made` being its own place in the count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Company(Option<u64>);

impl Company {
    /// A negotiator is made.
    pub(crate) fn join() -> Self {
        let before = NEGOTIATORS.fetch_add(LIVE + MADE, SeqCst);
        Company((before % MADE == 0).then_some(before / MADE + 1))
    }

    /// It is dropped.
    pub(crate) fn leave(self) {
        NEGOTIATORS.fetch_sub(LIVE, SeqCst);
    }

    /// No other negotiator has existed since this one was made.
    pub(crate) fn alone(self) -> bool {
        self.0 == Some(NEGOTIATORS.load(SeqCst) / MADE)
    }
}

/// Called as a wait begins: panics when it can never end.
pub(crate) fn check_wait(company: Company, link: &Linkage, stamp: u64) {
    if !company.alone() {
        return;
    }
    let tag = link.tag.load(crate::sync::Ordering::SeqCst);
    if tag != 0 && !crate::serial::same_thread(tag, stamp) && priority::class_of(tag).yields() {
        return; // its expiry ends the wait
    }
    panic!(
        "a transaction (stamp {stamp:#x}) waits on a linkage tagged {tag:#x} while no other \
         transaction has existed since it began: nothing can ever let it on"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Node;
    use crate::priority::{Priority, with_class};

    /// The count sees company made after, even once it is gone again.
    #[test]
    fn company_made_after_is_seen() {
        let me = Company::join();
        let other = Company::join();
        assert!(!me.alone(), "one made after me");
        other.leave();
        assert!(!me.alone(), "gone again, but it existed");
        me.leave();
    }

    /// Alone, a wait on an open tag, on a tag of this thread or on a
    /// foreign tag of a class that never yields panics; one on a yielding
    /// class's tag does not (its expiry ends it). Another test of this
    /// process may make a negotiator meanwhile (not under nextest, where
    /// each test has a process): then nothing is asserted.
    #[test]
    fn a_wait_alone_panics_unless_an_expiry_can_end_it() {
        use crate::sync::Ordering::Relaxed;
        let link = Node::new(0u8).link;
        let me = (3 << 16) | 1;
        let company = Company(Some(NEGOTIATORS.load(SeqCst) / MADE));
        let set = |tag: u64| {
            let cur = link.tag.load(Relaxed);
            assert!(
                link.tag
                    .compare_exchange(cur, tag, Relaxed, Relaxed)
                    .is_ok()
            );
        };
        let panics = |tag: u64| {
            set(tag);
            std::panic::catch_unwind(|| check_wait(company, &link, me)).is_err()
        };
        let results = [
            panics(0),
            panics((5 << 16) | 1),
            panics((1 << 16) | 2),
            panics(with_class((1 << 16) | 2, Priority::Background)),
        ];
        set(0);
        if company.alone() {
            assert_eq!(results, [true, true, true, false]);
        }
    }
}
