//! Lamport serials: a per-thread counter merged with every serial observed.
//!
//! A serial is `counter << 16 | thread id`. [`next`] advances the calling
//! thread's counter past the counter of `last`, so a serial minted after
//! observing a wrapper is larger than that wrapper's serial, and two threads
//! never mint the same serial. Bundles stamp every wrapper they touch with
//! one serial; finding that serial again on an ancestor while walking up
//! means "this node is already inside the bundle I am building" (a hard
//! link reached by a second path).
//!
//! Thread ids are 16 bits and are *recycled*: a thread that exits hands its
//! id back together with its last counter, and the next thread to take that
//! id continues from there. So ids stay unique among live threads however
//! many threads a process creates over its life (only more than 65 535
//! threads alive at once are refused), and serials stay unique forever: a
//! recycled id's serials continue above everything its previous owner
//! minted. Recycling is safe for the negotiation too: a thread's tags are
//! owned by its negotiators, which are all dropped (clearing the tags)
//! before the thread's thread-locals are destroyed.

use crate::sync::thread_local;
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A Lamport serial (`counter << 16 | thread id`).
pub(crate) type Serial = u64;

const TID_BITS: u32 = 16;
pub(crate) const TID_MASK: u64 = (1 << TID_BITS) - 1;

/// Ids never handed out yet start here (0 is never an id).
static NEXT_TID: AtomicU64 = AtomicU64::new(1);
/// Ids of exited threads, each with the last serial its owner minted.
static FREE: Mutex<Vec<Serial>> = Mutex::new(Vec::new());

/// Takes an id (a recycled one first) and returns the serial to continue from.
fn acquire() -> Serial {
    if let Some(s) = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        return s;
    }
    let t = NEXT_TID.fetch_add(1, Ordering::Relaxed);
    // Loom creates threads for every execution it explores and recycles
    // nothing (see `Clock::drop`): wrap there, its models are 2-3 threads.
    #[cfg(loom)]
    let t = (t - 1) % TID_MASK + 1;
    assert!(
        t <= TID_MASK,
        "kame-stm: more than {TID_MASK} threads use the STM at the same time"
    );
    t
}

/// The calling thread's Lamport clock; gives its id back on thread exit.
struct Clock(Cell<Serial>);

impl Drop for Clock {
    fn drop(&mut self) {
        // Under loom every execution of a model must see the same ids in
        // the same order (ids order stamps): fresh ids only.
        #[cfg(not(loom))]
        FREE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.0.get());
    }
}

thread_local! {
    static LAMPORT: Clock = Clock(Cell::new(acquire()));
}

/// Runs `f` on this thread's clock. After the clock was destroyed (a
/// transaction run from another thread-local's destructor) the thread gets
/// an id of its own that it keeps to the end (it is not recycled).
fn with_clock<R>(f: impl FnOnce(&Cell<Serial>) -> R) -> R {
    #[cfg(not(loom))]
    {
        thread_local! {
            static LATE: Cell<Serial> = const { Cell::new(0) };
        }
        let mut f = Some(f);
        match LAMPORT.try_with(|c| (f.take().expect("called once"))(&c.0)) {
            Ok(r) => r,
            Err(_) => {
                let f = f.take().expect("not called");
                let late = Cell::new(LATE.try_with(Cell::get).unwrap_or(0));
                if late.get() == 0 {
                    late.set(acquire());
                }
                let r = f(&late);
                let _ = LATE.try_with(|l| l.set(late.get()));
                r
            }
        }
    }
    #[cfg(loom)]
    {
        LAMPORT.with(|c| f(&c.0))
    }
}

/// The calling thread's id as embedded in its serials (never 0).
pub(crate) fn thread_id() -> u16 {
    with_clock(|c| (c.get() & TID_MASK) as u16)
}

/// Counter part of a serial.
#[inline]
pub(crate) fn counter(s: Serial) -> u64 {
    s >> TID_BITS
}

/// Whether two serials (or stamps) were minted by the same live thread.
#[inline]
pub(crate) fn same_thread(a: Serial, b: Serial) -> bool {
    a & TID_MASK == b & TID_MASK
}

/// Merges a serial another thread minted (a priority tag this thread had
/// to wait on) into this thread's clock without minting: every stamp this
/// thread mints from now on is younger than that transaction's.
pub(crate) fn observe(other: Serial) {
    with_clock(|c| {
        let mine = c.get();
        if counter(other) > counter(mine) {
            c.set((counter(other) << TID_BITS) | (mine & TID_MASK));
        }
    });
}

/// Mints a new serial larger than both `last` and every serial this thread
/// minted before (the spec's `GenSerial`).
#[inline]
pub(crate) fn next(last: Serial) -> Serial {
    with_clock(|c| {
        let mine = c.get();
        let cnt = counter(last).max(counter(mine)) + 1;
        let s = (cnt << TID_BITS) | (mine & TID_MASK);
        c.set(s);
        s
    })
}

/// The calling thread's clock (the explorer hands it from thread to
/// thread with the baton, so that its simulated threads share one clock).
#[cfg(all(test, not(loom)))]
pub(crate) fn clock() -> Serial {
    with_clock(Cell::get)
}

/// Sets the calling thread's clock (see [`clock`]).
#[cfg(all(test, not(loom)))]
pub(crate) fn set_clock(s: Serial) {
    with_clock(|c| c.set(s));
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
        assert!(counter(c) >= 1001);
        assert_eq!(c & TID_MASK, u64::from(thread_id()));
    }

    #[test]
    fn threads_have_distinct_ids() {
        let here = thread_id();
        let there = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(here, there);
        assert_ne!(there, 0);
    }

    /// A recycled id continues above its previous owner's serials.
    #[test]
    fn recycled_ids_continue_their_counter() {
        let (tid, last) = std::thread::spawn(|| {
            let s = next(1 << 40);
            (thread_id(), s)
        })
        .join()
        .unwrap();
        // Some later thread gets `tid` again; whoever it is, its serials
        // are above `last`.
        for _ in 0..64 {
            let (t, s) = std::thread::spawn(|| (thread_id(), next(0)))
                .join()
                .unwrap();
            if t == tid {
                assert!(s > last);
                return;
            }
        }
    }
}
