//! Who installed a limbo wrapper, and whether that attempt still runs.
//!
//! A release or an online insert puts the child in *limbo* under a parent:
//! while the parent's committed version lists the child, the parent's slot
//! is its state; once the attempt that installed the limbo commits a
//! version that does not list it, the packet the limbo carries is. That
//! attempt relies on its limbo staying in place until it commits. Bundles,
//! unbundles and commits that take a child out of limbo first CAS the
//! parent's chain, which makes such an attempt fail its own commit. A
//! dynamic operation of another transaction that replaces the limbo with
//! its own (a second release of the same child, an online insert of it)
//! CASes only the child, so it must not do so while the owner may still
//! commit: the owner would publish a parent that no longer lists the child
//! while the child carries the other transaction's, maybe never committed,
//! packet (issue 9: a write of an abandoned attempt became the child's
//! state; `tests/regressions.rs`). So every limbo wrapper names its owner
//! attempt; a dynamic operation that meets a live owner's limbo loses (its
//! attempt is doomed) and, before its next attempt, waits with no tags held
//! until the owner has finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

/// One attempt of a transaction that installed limbo wrappers.
pub(crate) struct LimboOwner {
    done: AtomicBool,
    /// The thread the attempt runs on: a nested transaction of the same
    /// thread must not wait for its own enclosing attempt.
    pub(crate) thread: ThreadId,
}

impl LimboOwner {
    pub(crate) fn new() -> Self {
        LimboOwner {
            done: AtomicBool::new(false),
            thread: std::thread::current().id(),
        }
    }

    /// The attempt may still commit.
    pub(crate) fn live(&self) -> bool {
        let live = !self.done.load(Ordering::Acquire);
        #[cfg(all(test, not(loom)))]
        crate::explore::coroutine::owner_seen(live);
        live
    }

    /// The attempt has ended (committed or not) and cleaned up its limbo.
    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::Release);
        crate::park::wake(self.key());
    }

    /// The parking key of this owner (`crate::park`).
    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Blocks until the attempt has ended. The caller holds no priority
    /// tag, so the owner never waits for it.
    pub(crate) fn wait(&self) {
        while self.live() {
            crate::park::park_on(self.key(), None, || self.live());
        }
    }
}

impl std::fmt::Debug for LimboOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimboOwner")
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}
