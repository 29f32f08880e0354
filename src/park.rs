//! Sleeping until another thread says something changed: `parking_lot_core`'s
//! address-keyed queues, shared by the tag waits of the negotiation (keyed by
//! the awaited tag) and the waits for a limbo's owner (keyed by the owner).
//! Every wait is bounded (a millisecond, or less): callers loop and check
//! again, so a spurious or missed wake-up costs at most that.

#[cfg(not(loom))]
mod imp {
    use parking_lot_core::{DEFAULT_PARK_TOKEN, DEFAULT_UNPARK_TOKEN};
    use std::time::{Duration, Instant};

    /// Sleeps on `key` while `blocked()` holds (checked under the queue's
    /// lock), until [`wake`] on the same key, a millisecond, or `budget`.
    pub(crate) fn park_on(key: usize, budget: Option<Instant>, blocked: impl Fn() -> bool) {
        let mut deadline = Instant::now() + Duration::from_millis(1);
        if let Some(b) = budget {
            deadline = deadline.min(b);
        }
        // SAFETY: `validate` (the caller's check, atomic loads) and the no-op
        // callbacks do not panic and do not call into parking_lot; the key
        // is the address of an object the caller keeps alive, and any other
        // use of that address only causes a spurious wake-up, which the
        // caller's loop tolerates.
        unsafe {
            parking_lot_core::park(
                key,
                blocked,
                || {},
                |_, _| {},
                DEFAULT_PARK_TOKEN,
                Some(deadline),
            );
        }
    }

    /// Wakes every thread parked on `key`. `park_on` checks its condition
    /// under the queue's lock, so a change made before this call is never
    /// slept through.
    pub(crate) fn wake(key: usize) {
        // SAFETY: as in `park_on`.
        unsafe {
            parking_lot_core::unpark_all(key, DEFAULT_UNPARK_TOKEN);
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) fn park_on(
        _key: usize,
        _budget: Option<std::time::Instant>,
        _blocked: impl Fn() -> bool,
    ) {
        loom::thread::yield_now();
    }
    pub(crate) fn wake(_key: usize) {}
}

pub(crate) use imp::{park_on, wake};
