//! Lamport serials: a per-thread counter merged with every serial observed.
//!
//! A serial is `counter << 16 | thread id`. [`next`] advances the calling
//! thread's counter past the counter of `last`, so a serial minted after
//! observing a wrapper is larger than that wrapper's serial, and two threads
//! never mint the same serial. Bundles stamp every wrapper they touch with
//! one serial; finding that serial again on an ancestor while walking up
//! means "this node is already inside the bundle I am building" (a hard
//! link reached by a second path).

use crate::sync::thread_local;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

/// A Lamport serial (`counter << 16 | thread id`).
pub type Serial = u64;

const TID_BITS: u32 = 16;
const TID_MASK: u64 = (1 << TID_BITS) - 1;

static NEXT_TID: AtomicU32 = AtomicU32::new(1);

fn fresh_tid() -> u64 {
    loop {
        let t = u64::from(NEXT_TID.fetch_add(1, Ordering::Relaxed)) & TID_MASK;
        if t != 0 {
            return t;
        }
    }
}

thread_local! {
    static LAMPORT: Cell<Serial> = Cell::new(fresh_tid());
}

/// The calling thread's id as embedded in its serials (never 0).
#[cfg(test)]
pub(crate) fn thread_id() -> u16 {
    LAMPORT.with(|c| (c.get() & TID_MASK) as u16)
}

/// Counter part of a serial.
#[inline]
pub(crate) fn counter(s: Serial) -> u64 {
    s >> TID_BITS
}

/// Mints a new serial larger than both `last` and every serial this thread
/// minted before (the spec's `GenSerial`).
#[inline]
pub(crate) fn next(last: Serial) -> Serial {
    LAMPORT.with(|c| {
        let mine = c.get();
        let cnt = counter(last).max(counter(mine)) + 1;
        let s = (cnt << TID_BITS) | (mine & TID_MASK);
        c.set(s);
        s
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn gen_is_monotone_and_merges() {
        let a = next(0);
        let b = next(0);
        assert!(b > a);
        let far = (1000 << TID_BITS) | 7;
        let c = next(far);
        assert_eq!(counter(c), 1001);
        assert_eq!(c & TID_MASK, u64::from(thread_id()));
    }

    #[test]
    fn threads_have_distinct_ids() {
        let here = thread_id();
        let there = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(here, there);
        assert_ne!(there, 0);
    }
}
