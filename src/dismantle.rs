//! Dropping a deep tree without deep recursion.
//!
//! A packet owns its children's packets and, through their linkages, their
//! whole subtrees, so the default recursive drop of a 10 000-deep chain
//! would overflow the stack. `PacketOf::drop` hands its child list to
//! [`drop_children`], a trampoline: the outermost drop on a thread drains a
//! queue of child lists, and drops nested inside it only enqueue.
//!
//! The queue is thread-local, and thread-locals are destroyed one by one
//! when a thread exits. A tree can still be dropped after the queue is gone:
//! held by another thread-local (a user's, or the epoch collector's bag of
//! retired wrappers, which it empties while its own thread-local is
//! destroyed). Rust cannot report a stack overflow there (its overflow
//! handler needs thread-locals too), so the process died of a bare
//! SIGSEGV. Such late drops go through one process-wide queue instead,
//! drained by whichever late thread gets there first: a tree dropped while
//! one thread exits may be freed by another exiting thread, a little
//! later (as the epoch collector already frees on whichever thread
//! collects).

use crate::packet::Children;
use std::sync::Arc;

/// Drops `children` (and everything only they keep alive) with a bounded
/// stack, on any thread, at any time, thread exit included.
#[cfg(not(loom))]
pub(crate) fn drop_children(children: Arc<Children>) {
    use std::cell::{Cell, RefCell};
    thread_local! {
        static DRAINING: Cell<bool> = const { Cell::new(false) };
        static QUEUE: RefCell<Vec<Arc<Children>>> = const { RefCell::new(Vec::new()) };
    }
    // `DRAINING` has no destructor, so it is never gone; `QUEUE` is gone
    // once this thread's thread-locals are being destroyed.
    if QUEUE.try_with(|_| ()).is_err() {
        late::drop_children(children);
        return;
    }
    if DRAINING.with(|d| d.replace(true)) {
        // Nested inside a drain on this thread: enqueue. The queue cannot go
        // away while that drain runs (it is this thread's, and in use).
        let mut slot = Some(children);
        let _ = QUEUE.try_with(|q| q.borrow_mut().extend(slot.take()));
        if let Some(c) = slot {
            late::drop_children(c);
        }
        return;
    }
    /// Ends this thread's drain even if a payload's drop unwinds; what is
    /// left in the queue goes with the next drain.
    struct Drainer;
    impl Drop for Drainer {
        fn drop(&mut self) {
            DRAINING.with(|d| d.set(false));
        }
    }
    let _drainer = Drainer;
    drop(children);
    while let Some(next) = QUEUE.try_with(|q| q.borrow_mut().pop()).ok().flatten() {
        drop(next);
    }
}

/// Loom runs every modelled thread on one OS thread, so a std thread-local
/// queue would be shared between them: drop in place (loom's trees are tiny).
#[cfg(loom)]
pub(crate) fn drop_children(children: Arc<Children>) {
    drop(children);
}

/// The process-wide queue for drops that come after this thread's queue is
/// gone. Rare (thread exit only), so a mutex is cheap enough.
#[cfg(not(loom))]
mod late {
    use super::Children;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};

    static QUEUE: Mutex<Vec<Arc<Children>>> = Mutex::new(Vec::new());
    /// Some thread is draining `QUEUE`: every late drop, on that thread
    /// (nested) or any other, only enqueues.
    static DRAINING: AtomicBool = AtomicBool::new(false);

    fn queue() -> MutexGuard<'static, Vec<Arc<Children>>> {
        // A payload's drop that panicked mid-drain leaves a valid vector.
        QUEUE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resets `DRAINING` even if a payload's drop unwinds.
    struct Drainer;
    impl Drop for Drainer {
        fn drop(&mut self) {
            DRAINING.store(false, Ordering::SeqCst);
        }
    }

    pub(super) fn drop_children(children: Arc<Children>) {
        queue().push(children);
        // Enqueue first, then try to become the drainer. A drainer stops
        // only after it saw the queue empty *after* giving up the role, so
        // an entry pushed while it drained is either drained by it or by
        // the pusher, whose swap then finds the role free.
        while !queue().is_empty() {
            if DRAINING.swap(true, Ordering::SeqCst) {
                return; // the drainer (this thread, nested, or another) takes it
            }
            let drainer = Drainer;
            loop {
                let next = queue().pop();
                match next {
                    Some(c) => drop(c),
                    None => break,
                }
            }
            drop(drainer);
        }
    }
}
