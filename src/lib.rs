//! # kame-stm
//!
//! Lock-free, snapshot-based software transactional memory for a *tree* of
//! typed nodes: a Rust port of the STM at the heart of KAME, the
//! instrument-control framework.
//!
//! Instrument drivers, acquisition loops, GUIs and scripts share one tree
//! of state. Readers take an immutable, subtree-consistent [`Snapshot`] —
//! one atomic load when the subtree is already *bundled* — and may keep it
//! as long as they like. Writers edit a private copy-on-write version in a
//! [`Transaction`] and publish all of it with one CAS on the subtree root.
//!
//! ```
//! use kame_stm::Node;
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct Heater { power_w: f64 }
//!
//! let cryostat = Node::new("cryostat");
//! let thermometer = Node::new(4.2_f64);
//! let heater = Node::new(Heater { power_w: 0.0 });
//! cryostat.insert(&thermometer).unwrap();
//! cryostat.insert(&heater).unwrap();
//!
//! // Both writes become visible together, or not at all.
//! cryostat.iterate_commit(|tr| {
//!     tr[&thermometer] = 4.5;
//!     tr[&heater].power_w = 0.1;
//! });
//!
//! let shot = cryostat.snapshot();
//! assert_eq!(shot[&thermometer], 4.5);
//! assert_eq!(shot[&heater], Heater { power_w: 0.1 });
//! ```
//!
//! See `docs/architecture.md` for the data model and the protocol, and
//! `tla/` for its TLA+ specification: every step function of
//! [`protocol`](crate) maps one to one onto an action of the spec.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod delivery;
mod drive;
mod error;
mod linkage;
mod mailbox;
mod negotiation;
mod node;
mod packet;
mod protocol;
mod serial;
mod snapshot;
mod structure;
mod subscription;
mod sync;
mod talker;
mod transaction;
mod wrapper;

pub use drive::NESTED_LIMIT;
pub use error::{NestedConflict, NodeName, NotFound, TreeError};
pub use mailbox::{Coalesce, Mailbox};
pub use node::{AsNode, Node, NodeRef};
pub use snapshot::Snapshot;
pub use subscription::{AsyncSubscription, Subscription};
pub use talker::{Event, Listener, Talker};
pub use transaction::{Transaction, TxStats};

/// Runs deferred memory reclamation on this thread.
///
/// Replaced versions are freed once no thread can still be reading them;
/// that happens lazily as threads take snapshots and commit. Call this in
/// leak checks (e.g. after joining all worker threads) to reclaim eagerly.
pub fn collect_garbage() {
    #[cfg(not(loom))]
    for _ in 0..4 {
        crossbeam_epoch::pin().flush();
    }
}

/// Test hooks for the crate's own integration tests; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// The calling thread's id as embedded in its serials and tags.
    pub fn thread_id() -> u16 {
        crate::serial::thread_id()
    }

    /// Mints a serial on the calling thread (`serial::next(0)`).
    pub fn mint_serial() -> u64 {
        crate::serial::next(0)
    }
}
