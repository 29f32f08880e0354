//! A deep tree dropped while a thread exits.
//!
//! When a thread ends, its thread-locals are destroyed one by one, and a
//! tree can lose its last reference in the middle of that: held by a
//! user's thread-local, or by the epoch collector's bag of retired
//! wrappers. The iterative drop of a deep chain used a thread-local queue,
//! and once that queue was gone it dropped recursively; a 10 000-deep chain
//! then overflowed the stack where Rust cannot report it (its overflow
//! handler needs thread-locals too), and the whole process died of a bare
//! SIGSEGV. That was the crash of a CI run of `tests/regressions.rs`
//! (session 6), whose chain test runs on a helper thread. Each test here
//! crashed this binary before the fix; it runs its threads on a small
//! stack, so the recursion cannot hide in a large one.

mod common;

use common::{Counted, Tracker};
use kame_stm::Node;
use std::cell::RefCell;
use std::sync::{Arc, Barrier};
use std::thread;

/// Small enough that a recursive drop of `DEPTH` levels overflows it in
/// any build profile; large enough for everything else the test does.
const STACK: usize = 256 * 1024;
const DEPTH: usize = 10_000;

thread_local! {
    /// Registered before the library touches any of its own thread-locals
    /// on the thread, so it is destroyed after them (destruction runs in
    /// reverse order of registration).
    static HOLD: RefCell<Option<Node<Counted>>> = const { RefCell::new(None) };
}

/// A chain of `depth` nodes, bundled and committed at both ends, returned
/// as its top (the only handle left).
fn chain(depth: usize, live: &Arc<Tracker>) -> Node<Counted> {
    let chain: Vec<Node<Counted>> = (0..depth)
        .map(|_| Node::new(Counted::new(0, live)))
        .collect();
    for w in chain.windows(2) {
        w[0].insert(&w[1]).unwrap();
    }
    let (top, bottom) = (&chain[0], &chain[depth - 1]);
    let _ = top.snapshot(); // bundle the whole chain into the top
    bottom.iterate_commit(|tr| tr[bottom].x += 1);
    top.iterate_commit(|tr| tr[bottom].x += 1);
    assert_eq!(top.snapshot()[bottom].x, 2);
    top.clone()
}

/// On a fresh small-stack thread: register `HOLD`, make the library use its
/// thread-locals (drops included), then leave `top` in `HOLD` as the only
/// handle, to be dropped while the thread's thread-locals are destroyed.
fn drop_at_exit(top: Node<Counted>, start: Option<Arc<Barrier>>) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            HOLD.with(|_| ());
            let scratch = Node::new(0u32);
            scratch.insert(&Node::new(0u32)).unwrap();
            scratch.iterate_commit(|tr| tr[&scratch] += 1);
            drop(scratch);
            HOLD.with(|h| *h.borrow_mut() = Some(top));
            if let Some(b) = start {
                b.wait(); // every thread exits at once
            }
        })
        .unwrap()
}

#[test]
fn a_deep_chain_dropped_at_thread_exit_does_not_crash() {
    let live = Tracker::new();
    drop_at_exit(chain(DEPTH, &live), None).join().unwrap();
    assert_eq!(live.settle(), 0, "a payload of the chain was never dropped");
}

/// Several threads at once: the drops after a thread's own queue is gone
/// share one process-wide queue; none may be lost (every payload is
/// dropped in the end) or recursive.
#[test]
fn deep_chains_dropped_at_once_by_exiting_threads() {
    const THREADS: usize = 4;
    let start = Arc::new(Barrier::new(THREADS));
    let live = Tracker::new();
    let tops: Vec<Node<Counted>> = (0..THREADS).map(|_| chain(DEPTH / 2, &live)).collect();
    let handles: Vec<_> = tops
        .into_iter()
        .map(|t| drop_at_exit(t, Some(start.clone())))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(live.settle(), 0, "a payload of a chain was never dropped");
}
