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
    #[cfg(not(loom))]
    local::retire(guard, local::Item::new(Retired(ptr)));
    #[cfg(loom)]
    {
        // Leaked: the strong count `ptr` stands for is never released.
        let _ = (guard, ptr);
    }
}

/// Reclamation on the retiring thread (not under loom).
///
/// Deferring each retired strong count to the epoch collector frees it on
/// whichever thread collects the bag: with two committing threads about
/// half of all frees landed on the other thread (the allocator's slow,
/// shared remote-free path), and disjoint leaf commits scaled 1.3x from
/// one thread to two. Here a thread keeps what it retires in batches; each
/// sealed batch defers only a flag to the collector, and the thread frees
/// a batch itself once its flag is set. The flag is deferred after every
/// item of its batch was retired (unlinked), so when the collector runs it
/// no thread can still be reading any of them: the same guarantee as
/// deferring each item, given later.
#[cfg(not(loom))]
pub(crate) mod local {
    use super::{Guard, Retired};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Items per batch (one deferred flag each).
    const BATCH: usize = 64;
    /// Cleared items freed per item retired, at most, by [`reclaim`]: a
    /// cleared batch is freed over the next operations instead of all in
    /// one (64 frees in one commit were the uncontended leaf commit's p99),
    /// and faster than items are retired, so nothing piles up.
    const FREE_PER_RETIRE: usize = 4;

    /// A retired strong count, type-erased: the pointer and how to release it.
    pub(super) struct Item {
        ptr: *const (),
        release: unsafe fn(*const ()),
    }

    // SAFETY: built only from a `Retired<T>`, which is `Send`.
    unsafe impl Send for Item {}

    impl Item {
        pub(super) fn new<T: Send + Sync>(r: Retired<T>) -> Item {
            /// # Safety
            /// `p` is a `Retired<T>`'s pointer, released once.
            unsafe fn release<T: Send + Sync>(p: *const ()) {
                Retired(p.cast::<T>()).release();
            }
            let ptr = r.0.cast::<()>();
            Item {
                ptr,
                release: release::<T>,
            }
        }

        fn release(self) {
            // SAFETY: `ptr` and `release` came together from one
            // `Retired<T>` (`Item::new`), and an item is released once.
            unsafe { (self.release)(self.ptr) }
        }
    }

    struct Batch {
        ready: Arc<AtomicBool>,
        items: Vec<Item>,
    }

    #[derive(Default)]
    struct Local {
        filling: Vec<Item>,
        sealed: VecDeque<Batch>,
        /// Items of cleared batches, still to free.
        cleared: Vec<Item>,
        /// Items retired since the last `reclaim`.
        retired: usize,
    }

    impl Drop for Local {
        /// Thread exit: what is still held goes to the collector, item by item.
        fn drop(&mut self) {
            let guard = crossbeam_epoch::pin();
            let items = self
                .filling
                .drain(..)
                .chain(self.cleared.drain(..))
                .chain(self.sealed.drain(..).flat_map(|b| b.items));
            for item in items {
                guard.defer(move || item.release());
            }
        }
    }

    thread_local! {
        static LOCAL: RefCell<Local> = RefCell::default();
    }

    pub(super) fn retire(guard: &Guard, item: Item) {
        let mut slot = Some(item);
        let step = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            l.filling.extend(slot.take());
            let sealed = l.filling.len() >= BATCH;
            if sealed {
                seal(&mut l, guard);
            }
            if let Some(b) = take_ready(&mut l) {
                l.cleared.extend(b.items);
            }
            l.retired += 1;
            sealed
        });
        if let Some(item) = slot {
            // This thread's list is gone (thread exit): the collector's way.
            guard.defer(move || item.release());
        }
        // Outside the borrow: the collector's closures and our releases can
        // drop a linkage, whose drop retires again.
        if let Ok(true) = step {
            // Hand the flag to the collector now, not once 64 flags have
            // filled its bag: a batch then waits as long as an item
            // deferred on its own did.
            guard.flush();
        }
    }

    /// Frees some cleared items: `FREE_PER_RETIRE` for each item retired
    /// since the last call. Called when an operation has ended (its CASes
    /// done, its tags cleared), so that no free lengthens a protocol step
    /// or the window between a transaction's CASes.
    pub(crate) fn reclaim() {
        let retired = LOCAL
            .try_with(|l| std::mem::take(&mut l.borrow_mut().retired))
            .unwrap_or(0);
        for _ in 0..retired * FREE_PER_RETIRE {
            // One at a time, outside the borrow: a release can drop a
            // linkage, which retires.
            let Ok(Some(item)) = LOCAL.try_with(|l| l.borrow_mut().cleared.pop()) else {
                break;
            };
            item.release();
        }
    }

    /// Closes the batch being filled: its flag goes to the collector.
    fn seal(l: &mut Local, guard: &Guard) {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        guard.defer(move || flag.store(true, Ordering::Release));
        let items = std::mem::replace(&mut l.filling, Vec::with_capacity(BATCH));
        l.sealed.push_back(Batch { ready, items });
    }

    /// The oldest sealed batch, when the collector has cleared it.
    fn take_ready(l: &mut Local) -> Option<Batch> {
        if l.sealed.front()?.ready.load(Ordering::Acquire) {
            l.sealed.pop_front()
        } else {
            None
        }
    }

    /// Seals what this thread has retired so far, hands the flags to the
    /// collector, and frees every batch of this thread it has cleared
    /// (`collect_garbage`: repeated, it frees everything retired here).
    pub(crate) fn collect() {
        let guard = crossbeam_epoch::pin();
        let _ = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            if !l.filling.is_empty() {
                seal(&mut l, &guard);
            }
        });
        guard.flush();
        drop(guard);
        let cleared = LOCAL
            .try_with(|l| std::mem::take(&mut l.borrow_mut().cleared))
            .unwrap_or_default();
        for item in cleared {
            item.release();
        }
        while let Ok(Some(batch)) = LOCAL.try_with(|l| take_ready(&mut l.borrow_mut())) {
            for item in batch.items {
                item.release();
            }
        }
    }
}

/// Frees some of what this thread retired and the collector has cleared
/// (`local::reclaim`); called by the driver when an operation has ended.
/// Nothing under loom, which leaks.
#[inline]
pub(crate) fn reclaim() {
    #[cfg(not(loom))]
    local::reclaim();
}

/// The orderings a slot's load and CAS need: the load acquires what the
/// CAS that installed the wrapper released (the packet and its payload).
/// Under loom only, a test may weaken either on purpose
/// (`order::weaken`): the payload models of
/// `tests/loom_payload.rs` must then report a data race, which shows they
/// can fail. Every other build has the constants and nothing else.
pub(crate) mod order {
    use super::Ordering;

    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn load() -> Ordering {
        Ordering::Acquire
    }

    // SeqCst, not only AcqRel: a commit's CAS followed by its load of the
    // "any subscription?" flag pairs with a subscriber's registration
    // followed by its first snapshot (Dekker; see `subscription`). Same
    // instructions on x86-64 and AArch64.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn publish() -> Ordering {
        Ordering::SeqCst
    }

    /// Which ordering a loom test weakens (none by default).
    #[cfg(loom)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Weakened {
        /// The orderings the code ships with.
        None = 0,
        /// `ArcCell::load` relaxed instead of acquiring.
        Load = 1,
        /// `ArcCell::compare_exchange` acquiring only, not releasing.
        Publish = 2,
    }

    /// Process-wide: a test file that uses it runs its models one at a time.
    #[cfg(loom)]
    static MODE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

    #[cfg(loom)]
    pub(crate) fn weaken(w: Weakened) {
        MODE.store(w as u8, std::sync::atomic::Ordering::SeqCst);
    }

    #[cfg(loom)]
    fn mode() -> u8 {
        MODE.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[cfg(loom)]
    pub(crate) fn load() -> Ordering {
        if mode() == Weakened::Load as u8 {
            Ordering::Relaxed
        } else {
            Ordering::Acquire
        }
    }

    #[cfg(loom)]
    pub(crate) fn publish() -> Ordering {
        if mode() == Weakened::Publish as u8 {
            Ordering::Acquire
        } else {
            Ordering::SeqCst
        }
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
        #[cfg(all(test, not(loom)))]
        crate::explore::coroutine::before_op(self.addr());
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::body_op(self.addr());
        let _guard = pin();
        let p = self.ptr.load(order::load());
        #[cfg(all(test, not(loom)))]
        trace::record(self.addr(), trace::Access::SlotLoad);
        // SAFETY: `p` came from `Arc::into_raw` and the cell owns one strong
        // count of it. That count is released only through `retire`, which
        // defers the release until every currently pinned thread (this one
        // included) has unpinned, so the allocation is alive here.
        let loaded = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        #[cfg(all(test, not(loom)))]
        crate::explore::coroutine::loaded(self.addr(), &loaded);
        loaded
    }

    /// Loads the current value without telling the explorer, the trace
    /// validation or the operation log (test builds: a fingerprint of the
    /// tree taken between two steps must not be a step).
    #[cfg(all(test, not(loom), debug_assertions))]
    pub(crate) fn load_quiet(&self) -> Arc<T> {
        let _guard = pin();
        let p = self.ptr.load(order::load());
        // SAFETY: as in `load`: the cell owns one strong count of `p`,
        // released only after every pinned thread (this one included) has
        // unpinned.
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
        #[cfg(all(test, not(loom)))]
        crate::explore::coroutine::before_op(self.addr());
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::body_op(self.addr());
        let guard = pin();
        let newp = Arc::into_raw(new).cast_mut();
        let r = self.ptr.compare_exchange(
            Arc::as_ptr(current).cast_mut(),
            newp,
            order::publish(),
            Ordering::Acquire,
        );
        #[cfg(all(test, not(loom)))]
        trace::record(self.addr(), trace::Access::SlotCas { ok: r.is_ok() });
        let r = match r {
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
        };
        #[cfg(all(test, not(loom)))]
        crate::explore::coroutine::cas_done(self.addr(), r.as_ref().err().map(|f| &f.actual));
        r
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

    thread_local! {
        static WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// How many CASes of this thread have succeeded (its writes).
    #[cfg(debug_assertions)]
    pub(crate) fn writes() -> u64 {
        WRITES.try_with(std::cell::Cell::get).unwrap_or(0)
    }

    pub(crate) fn record(addr: usize, access: Access) {
        if matches!(
            access,
            Access::SlotCas { ok: true } | Access::TagCas { ok: true }
        ) {
            let _ = WRITES.try_with(|w| w.set(w.get() + 1));
            crate::explore::dynamic::body_wrote();
        }
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
            crate::explore::coroutine::before_op(self.addr());
            #[cfg(all(test, not(loom)))]
            crate::explore::validate::body_op(self.addr());
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
            crate::explore::coroutine::tag_loaded(self.addr(), value);
            value
        }

        /// The tag, read without telling anyone (see `ArcCell::load_quiet`).
        #[cfg(debug_assertions)]
        pub(crate) fn load_quiet(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }

        pub(crate) fn compare_exchange(
            &self,
            current: u64,
            new: u64,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u64, u64> {
            crate::explore::coroutine::before_op(self.addr());
            #[cfg(all(test, not(loom)))]
            crate::explore::validate::body_op(self.addr());
            let r = self.0.compare_exchange(current, new, success, failure);
            record(self.addr(), Access::TagCas { ok: r.is_ok() });
            crate::explore::coroutine::tag_cas_done(self.addr(), r);
            r
        }
    }
}
