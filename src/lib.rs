#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations)]

mod chunked;
mod clock;
#[cfg(feature = "serde")]
pub mod config;
mod delivery;
mod dismantle;
mod drive;
mod error;
#[cfg(all(test, not(loom)))]
mod explore;
mod limbo;
mod linkage;
mod mailbox;
mod negotiation;
mod node;
mod node_list;
mod packet;
mod park;
pub mod priority;
mod protocol;
mod serial;
mod snapshot;
#[cfg(all(debug_assertions, not(loom)))]
mod solo;
mod structure;
mod subscription;
mod sync;
mod talker;
mod transaction;
mod wrapper;

pub use drive::NESTED_LIMIT;
pub use error::{
    NestedCause, NestedConflict, NodeName, NotFound, Place, Starved, TreeError, WaitBudgetExceeded,
};
pub use mailbox::{Coalesce, Mailbox};
pub use node::{AsNode, Node, NodeRef, TxBuilder};
pub use snapshot::Snapshot;
pub use subscription::{AsyncSubscription, Subscription};
pub use talker::{Event, Listener, Talker};
pub use transaction::{Transaction, TxStats};

/// Runs deferred memory reclamation on this thread.
///
/// A replaced version is freed by the thread that replaced it, in batches,
/// once no thread can still be reading it; that happens lazily as the
/// thread goes on committing. A thread that ends hands what it still holds
/// to a shared collector. Call this in leak checks (e.g. after joining all
/// worker threads): it frees what this thread replaced and what ended
/// threads left behind.
pub fn collect_garbage() {
    #[cfg(not(loom))]
    for _ in 0..4 {
        sync::local::collect();
    }
}

/// Test hooks for the crate's own integration tests; not part of the API.
#[doc(hidden)]
pub mod __private {
    #[cfg(loom)]
    pub use crate::sync::order::Weakened;

    /// Loom only: weakens one ordering of the linkage slot on purpose, so
    /// that a test can show its model catches the weakening.
    #[cfg(loom)]
    pub fn weaken_slot_orderings(w: Weakened) {
        crate::sync::order::weaken(w);
    }

    /// Loom only: runs `f` with the seal of plain inserts switched off
    /// (`Transaction::seal_inserts`), so that a model can start from a
    /// parent that the next snapshot has to bundle, as every insert left
    /// it before the seal.
    #[cfg(loom)]
    pub fn without_seal<R>(f: impl FnOnce() -> R) -> R {
        crate::transaction::SEAL_OFF.with(|s| s.set(true));
        let r = f();
        crate::transaction::SEAL_OFF.with(|s| s.set(false));
        r
    }

    /// How many failed commit CASes of a transaction (of any class but
    /// Realtime) are soft: no tag (`negotiation::SOFT_LOSSES`).
    pub const SOFT_LOSSES: u32 = crate::negotiation::SOFT_LOSSES;

    /// The calling thread's id as embedded in its serials and tags.
    pub fn thread_id() -> u16 {
        crate::serial::thread_id()
    }

    /// Mints a serial on the calling thread (`serial::next(0)`).
    pub fn mint_serial() -> u64 {
        crate::serial::next(0)
    }

    /// Parks (futex sleeps in `Negotiator::wait`) on the calling thread so far.
    pub fn parks_on_this_thread() -> u64 {
        crate::negotiation::debug::counts().0
    }

    /// Waits on priority tags (`Negotiator::wait` calls) on the calling thread so far.
    pub fn waits_on_this_thread() -> u64 {
        crate::negotiation::debug::counts().2
    }

    /// Merges `serial` into the calling thread's Lamport clock: its next
    /// stamps are younger than any minted before `serial` (tests order
    /// transactions of different threads with it).
    pub fn observe_serial(serial: u64) {
        crate::serial::observe(serial);
    }

    /// Wait rounds the calling thread spent behind a tag of a lower class
    /// than its own (the tag order makes this zero).
    pub fn waits_behind_lower_class() -> u64 {
        crate::negotiation::debug::counts().1
    }
}
