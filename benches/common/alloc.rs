//! The global allocator of the benchmarks and of the throughput driver,
//! chosen at start-up by `KAME_BENCH_ALLOC`: `system` (default, glibc
//! malloc: what a program gets without asking) or `mimalloc`.
//!
//! Why: every written node costs a few small allocations, so the allocator
//! is a large part of a commit. The C++ original is measured both with its
//! own pool allocator (its default build) and with glibc malloc
//! (the C++ columns of `docs/benchmarks.md`); these two settings give the
//! matching Rust figures from one binary. The library itself never picks
//! an allocator: that is the application's choice.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{CStr, c_char};
use std::sync::atomic::{AtomicU8, Ordering};

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

/// Decided on the first allocation (before `main`, single-threaded), never
/// changed afterwards, so every block is freed by the allocator that made it.
static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

unsafe extern "C" {
    fn getenv(name: *const c_char) -> *const c_char;
}

#[cold]
fn decide() -> u8 {
    // SAFETY: getenv with a NUL-terminated name; it allocates nothing (the
    // allocator must not recurse) and the returned string, if any, is
    // NUL-terminated and only read here, before any thread is spawned.
    let v = unsafe { getenv(c"KAME_BENCH_ALLOC".as_ptr()) };
    let choice = if !v.is_null() && unsafe { CStr::from_ptr(v) }.to_bytes() == b"mimalloc" {
        MIMALLOC
    } else {
        SYSTEM
    };
    CHOICE.store(choice, Ordering::Relaxed);
    choice
}

#[inline]
fn choice() -> u8 {
    match CHOICE.load(Ordering::Relaxed) {
        UNDECIDED => decide(),
        c => c,
    }
}

/// Name of the allocator in use, for result lines.
pub fn name() -> &'static str {
    if choice() == MIMALLOC {
        "mimalloc"
    } else {
        "system"
    }
}

/// Forwards to glibc malloc or to mimalloc, as decided once.
pub struct Switch;

// SAFETY: every method forwards to one of two sound allocators; the choice
// is fixed before the first block is handed out, so `dealloc` and
// `realloc` always reach the allocator that made the block.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if choice() == MIMALLOC {
                mimalloc::MiMalloc.alloc(l)
            } else {
                System.alloc(l)
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded with the caller's guarantees (same allocator).
        unsafe {
            if choice() == MIMALLOC {
                mimalloc::MiMalloc.dealloc(p, l)
            } else {
                System.dealloc(p, l)
            }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if choice() == MIMALLOC {
                mimalloc::MiMalloc.alloc_zeroed(l)
            } else {
                System.alloc_zeroed(l)
            }
        }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (same allocator).
        unsafe {
            if choice() == MIMALLOC {
                mimalloc::MiMalloc.realloc(p, l, new)
            } else {
                System.realloc(p, l, new)
            }
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;
