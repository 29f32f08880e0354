//! Synchronisation shim: the real atomics, or loom's model of them.
//!
//! Everything the protocol shares between threads goes through this module,
//! so that `RUSTFLAGS="--cfg loom" cargo test --test loom` explores the
//! interleavings of the very code that ships. Under loom, memory
//! reclamation is replaced by deliberately leaking retired wrappers: loom
//! bounds every model to a handful of operations, and a leak is the one
//! reclamation scheme that can never free memory too early.

use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::thread_local;
#[cfg(all(not(loom), not(test)))]
pub(crate) use std::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, Ordering};
#[cfg(not(loom))]
pub(crate) use std::thread_local;
#[cfg(all(not(loom), test))]
pub(crate) use trace::AtomicU64;

#[cfg(not(loom))]
type Guard = crossbeam_epoch::Guard;
#[cfg(loom)]
struct Guard;

#[inline]
fn pin() -> Guard {
    #[cfg(not(loom))]
    {
        crossbeam_epoch::pin()
    }
    #[cfg(loom)]
    {
        Guard
    }
}

/// A raw `Arc` pointer that may cross into the epoch collector.
#[cfg_attr(loom, allow(dead_code))]
struct Retired<T>(*const T);
// SAFETY: the pointer came from `Arc::<T>::into_raw` with `T: Send + Sync`,
// so the strong reference it stands for may be dropped on any thread.
unsafe impl<T: Send + Sync> Send for Retired<T> {}

impl<T> Retired<T> {
    #[cfg_attr(loom, allow(dead_code))]
    fn release(self) {
        // SAFETY: `self.0` is a strong reference produced by `Arc::into_raw`
        // and owned by this value alone (see `ArcCell::compare_exchange`).
        drop(unsafe { Arc::from_raw(self.0) });
    }
}

#[inline]
fn retire<T: Send + Sync + 'static>(guard: &Guard, ptr: *const T) {
    let retired = Retired(ptr);
    #[cfg(not(loom))]
    guard.defer(move || retired.release());
    #[cfg(loom)]
    {
        let _ = guard;
        std::mem::forget(retired);
    }
}

/// Failed [`ArcCell::compare_exchange`]: the value the cell held at the
/// moment of the attempt.
pub(crate) struct CasFailure<T> {
    pub(crate) actual: Arc<T>,
}

/// An atomic slot holding one `Arc<T>`: the shape of a KAME `Linkage`.
///
/// Readers pin the epoch, load the pointer and take a strong count; writers
/// replace the pointer with one CAS and defer the release of the old strong
/// count until no pinned reader can still be looking at it. Identity is
/// pointer identity: because the caller of `compare_exchange` holds a strong
/// reference to the expected value, its address cannot be reused, so there
/// is no ABA.
pub(crate) struct ArcCell<T: Send + Sync + 'static> {
    ptr: AtomicPtr<T>,
}

impl<T: Send + Sync + 'static> ArcCell<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        ArcCell {
            ptr: AtomicPtr::new(Arc::into_raw(value).cast_mut()),
        }
    }

    /// Loads the current value (one shared-memory load).
    #[inline]
    pub(crate) fn load(&self) -> Arc<T> {
        let _guard = pin();
        let p = self.ptr.load(Ordering::Acquire);
        #[cfg(all(test, not(loom)))]
        trace::record(self.addr(), trace::Access::SlotLoad);
        // SAFETY: `p` came from `Arc::into_raw` and the cell owns one strong
        // count of it. That count is released only through `retire`, which
        // defers the release until every currently pinned thread (this one
        // included) has unpinned, so the allocation is alive here.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Replaces `current` by `new` if the cell still holds `current`
    /// (one CAS). On failure returns the offered value and what the cell held.
    #[inline]
    pub(crate) fn compare_exchange(
        &self,
        current: &Arc<T>,
        new: Arc<T>,
    ) -> Result<(), CasFailure<T>> {
        let guard = pin();
        let newp = Arc::into_raw(new).cast_mut();
        let r = self.ptr.compare_exchange(
            Arc::as_ptr(current).cast_mut(),
            newp,
            // SeqCst, not only AcqRel: a commit's CAS followed by its load
            // of the "any subscription?" flag pairs with a subscriber's
            // registration followed by its first snapshot (Dekker; see
            // `subscription`). Same instructions on x86-64 and AArch64.
            Ordering::SeqCst,
            Ordering::Acquire,
        );
        #[cfg(all(test, not(loom)))]
        trace::record(self.addr(), trace::Access::SlotCas { ok: r.is_ok() });
        match r {
            Ok(old) => {
                retire(&guard, old);
                Ok(())
            }
            Err(actual) => {
                // SAFETY: `newp` was never published, so we still own the
                // strong count `into_raw` gave us. `actual` is protected by
                // the guard exactly as in `load`.
                unsafe {
                    drop(Arc::from_raw(newp));
                    Arc::increment_strong_count(actual);
                    Err(CasFailure {
                        actual: Arc::from_raw(actual),
                    })
                }
            }
        }
    }

    /// The cell's address: what the explorer's access log names it by.
    #[cfg(all(test, not(loom)))]
    fn addr(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

impl<T: Send + Sync + 'static> Drop for ArcCell<T> {
    fn drop(&mut self) {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: `&mut self` means no thread can load from this cell any
        // more; the cell's own strong count is released exactly once here.
        drop(unsafe { Arc::from_raw(p) });
    }
}

/// Test build only: a log of the shared-memory operations of the protocol
/// (every `ArcCell` load and CAS, every tag load and CAS), per thread and
/// off unless a test turns it on. The explorer (`crate::explore`) reads it
/// to check each step's operations against its TLA+ action. Compiled out
/// of every other build.
#[cfg(all(test, not(loom)))]
pub(crate) mod trace {
    use std::cell::RefCell;
    use std::sync::atomic::Ordering;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub(crate) enum Access {
        SlotLoad,
        SlotCas { ok: bool },
        TagLoad { value: u64 },
        TagCas { ok: bool },
    }

    /// One operation: the address of the cell or tag word, and what it did.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Event {
        pub(crate) addr: usize,
        pub(crate) access: Access,
    }

    thread_local! {
        static LOG: RefCell<Option<Vec<Event>>> = const { RefCell::new(None) };
    }

    pub(crate) fn record(addr: usize, access: Access) {
        let _ = LOG.try_with(|l| {
            if let Some(v) = l.borrow_mut().as_mut() {
                v.push(Event { addr, access });
            }
        });
    }

    /// Starts (or restarts) recording on this thread.
    pub(crate) fn start() {
        LOG.with(|l| *l.borrow_mut() = Some(Vec::new()));
    }

    /// What was recorded since `start`; recording goes on.
    pub(crate) fn take() -> Vec<Event> {
        LOG.with(|l| {
            l.borrow_mut()
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default()
        })
    }

    /// Stops recording.
    pub(crate) fn stop() {
        LOG.with(|l| *l.borrow_mut() = None);
    }

    thread_local! {
        static GATE: std::cell::Cell<Option<(usize, u64)>> = const { std::cell::Cell::new(None) };
    }

    /// The next load of the tag word at `addr` on this thread returns
    /// `value` (what an earlier load returned): the explorer's window
    /// between a step's gate and its CAS. `None` clears it.
    pub(crate) fn set_gate(gate: Option<(usize, u64)>) {
        GATE.with(|g| g.set(gate));
    }

    /// The tag word of a linkage, recording its loads and CASes.
    pub(crate) struct AtomicU64(std::sync::atomic::AtomicU64);

    impl AtomicU64 {
        pub(crate) const fn new(v: u64) -> Self {
            AtomicU64(std::sync::atomic::AtomicU64::new(v))
        }

        fn addr(&self) -> usize {
            std::ptr::from_ref(self) as usize
        }

        pub(crate) fn load(&self, order: Ordering) -> u64 {
            let value = match GATE.try_with(|g| g.get()).ok().flatten() {
                // The explorer loaded this tag for the gate earlier, as a
                // scheduling point of its own: the step sees that value.
                Some((addr, v)) if addr == self.addr() => {
                    GATE.with(|g| g.set(None));
                    v
                }
                _ => self.0.load(order),
            };
            record(self.addr(), Access::TagLoad { value });
            value
        }

        pub(crate) fn compare_exchange(
            &self,
            current: u64,
            new: u64,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u64, u64> {
            let r = self.0.compare_exchange(current, new, success, failure);
            record(self.addr(), Access::TagCas { ok: r.is_ok() });
            r
        }
    }
}
