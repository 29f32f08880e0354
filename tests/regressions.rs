//! Regression tests for the eight defects of issue 9 ("Total correctness:
//! no lost commit, no accepted cycle, no hang"). Each test failed (or hung)
//! on 975d73a, the commit before the fixes, and passes now, except the two
//! that state a property that must keep holding (`nesting_that_can_commit_
//! keeps_working`, and the measured bound of defect 5, which failed there
//! only by timing); the root causes are in `tla/FINDINGS.md`.
//!
//! Tests that used to hang run their operation on a helper thread under a
//! generous watchdog (`within`): it only fires on a hang, never decides a
//! pass by timing.

use kame_stm::{NESTED_LIMIT, Node, TreeError};
use std::collections::HashSet;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

mod common;
use common::within;

const HANG: Duration = Duration::from_secs(120);

/// Defect 1 (lost update): release + insert_online of a child in one
/// transaction must keep a commit made on the child after the
/// transaction's snapshot. On 975d73a the +100 was lost (value 1).
#[test]
fn release_then_insert_online_keeps_a_concurrent_commit() {
    let m = Node::new(0u64);
    let l = Node::new(0u64);
    m.insert(&l).unwrap();
    let _ = m.snapshot();
    m.iterate_commit(|tr| {
        if tr.attempt() == 0 {
            l.iterate_commit(|t| t[&l] += 100); // a commit on l after tr's snapshot
        }
        tr.release(&m, &l).unwrap();
        tr.insert_online(&m, &l).unwrap();
        tr[&l] += 1;
    });
    assert_eq!(l.read(), 101);
    assert_eq!(m.snapshot()[&l], 101);
}

/// Defect 1's class, other shapes: the transaction's own node is bundled
/// in an ancestor when it starts (so the dynamic operation first re-stamps
/// it), and a move (release from one parent, insert_online under another)
/// in one transaction; each with a commit on the child after the snapshot.
#[test]
fn dynamic_operations_keep_concurrent_commits_in_every_shape() {
    // Re-stamp path: `cryostat` is bundled into `lab`.
    let lab = Node::new(0u64);
    let cryostat = Node::new(0u64);
    let heater = Node::new(0u64);
    lab.insert(&cryostat).unwrap();
    cryostat.insert(&heater).unwrap();
    let _ = lab.snapshot();
    cryostat.iterate_commit(|tr| {
        if tr.attempt() == 0 {
            heater.iterate_commit(|t| t[&heater] += 100);
        }
        tr.release(&cryostat, &heater).unwrap();
        tr.insert_online(&cryostat, &heater).unwrap();
        tr[&heater] += 1;
    });
    assert_eq!(heater.read(), 101);
    assert_eq!(lab.snapshot()[&heater], 101);

    // A move inside one subtree.
    let (p, q) = (Node::new(0u64), Node::new(0u64));
    lab.insert(&p).unwrap();
    lab.insert(&q).unwrap();
    let c = Node::new(0u64);
    p.insert(&c).unwrap();
    let _ = lab.snapshot();
    let mut runs = 0;
    lab.iterate_commit(|tr| {
        runs += 1;
        if tr.attempt() == 0 {
            c.iterate_commit(|t| t[&c] += 100);
        }
        tr.release(&p, &c).unwrap();
        tr.insert_online(&q, &c).unwrap();
        tr[&c] += 1;
    });
    assert_eq!(runs, 2);
    assert_eq!(c.read(), 101);
    let shot = lab.snapshot();
    assert_eq!(shot[&c], 101);
    assert_eq!(shot.children(&p).unwrap().count(), 0);
    assert_eq!(shot.children(&q).unwrap().count(), 1);
    // And back, twice in one transaction, then plain insert.
    lab.iterate_commit(|tr| {
        tr.release(&q, &c).unwrap();
        tr.insert_online(&p, &c).unwrap();
        tr[&c] += 1;
        tr.release(&p, &c).unwrap();
        tr.insert(&q, &c).unwrap();
    });
    assert_eq!(c.read(), 102);
    assert_eq!(lab.snapshot()[&c], 102);
}

/// Defect 1 under threads: one thread re-plugs the leaf (release +
/// insert_online + increment in one transaction), another increments it;
/// every increment must survive. On 975d73a increments were lost.
#[test]
fn replug_against_leaf_commits_loses_nothing() {
    let m = Node::new(0u64);
    let l = Node::new(0u64);
    m.insert(&l).unwrap();
    const N: u64 = 2_000;
    let (m2, l2) = (m.clone(), l.clone());
    let replugger = thread::spawn(move || {
        for _ in 0..N {
            m2.iterate_commit(|tr| {
                tr.release(&m2, &l2).unwrap();
                tr.insert_online(&m2, &l2).unwrap();
                tr[&l2] += 1;
            });
        }
    });
    let l3 = l.clone();
    let writer = thread::spawn(move || {
        for _ in 0..N {
            l3.iterate_commit(|tr| tr[&l3] += 1);
        }
    });
    replugger.join().unwrap();
    writer.join().unwrap();
    assert_eq!(l.read(), 2 * N);
    assert_eq!(m.snapshot()[&l], 2 * N);
}

/// Defect 2: a cycle through a hard link must be refused, and the tree
/// must stay usable. On 975d73a the first insert returned `Ok` and the
/// second never returned.
#[test]
fn cycle_through_a_hard_link_is_refused() {
    let r = within(HANG, "cycle through a hard link", || {
        let (r, a, b, x) = (
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
            Node::new(0u32),
        );
        r.insert(&a)?;
        r.insert(&b)?;
        a.insert(&x)?;
        b.insert(&x)?;
        let _ = r.snapshot(); // bundle: x's packet lives under one parent only
        let first = r.try_iterate_commit(|tr| tr.insert(&x, &b)).map(|_| ());
        let second = b.try_iterate_commit(|tr| tr.insert(&x, &a)).map(|_| ());
        let third = x.try_iterate_commit(|tr| tr.insert(&x, &r)).map(|_| ());
        let shot = r.snapshot();
        Ok::<_, TreeError>((first, second, third, shot.contains(&x)))
    })
    .unwrap();
    assert_eq!(
        r,
        (
            Err(TreeError::Cycle),
            Err(TreeError::Cycle),
            Err(TreeError::Cycle),
            true
        )
    );
}

/// Defect 3: racing opposite inserts (`a.insert(&b)` against
/// `b.insert(&a)`) may not both succeed. On 975d73a both returned `Ok` in
/// some round (1 225 of 10⁵ seen) and `a.snapshot()` then hung.
#[test]
fn racing_opposite_inserts_never_both_succeed() {
    const ROUNDS: usize = 100_000;
    within(HANG, "racing opposite inserts", || {
        let pairs: Arc<Vec<(Node<u8>, Node<u8>)>> =
            Arc::new((0..ROUNDS).map(|_| (Node::new(0), Node::new(0))).collect());
        let barrier = Arc::new(Barrier::new(2));
        let run = |forward: bool| {
            let (pairs, barrier) = (pairs.clone(), barrier.clone());
            thread::spawn(move || {
                let mut ok = Vec::with_capacity(ROUNDS);
                for (i, (a, b)) in pairs.iter().enumerate() {
                    if i % 64 == 0 {
                        barrier.wait(); // keep the two threads on the same rounds
                    }
                    let r = if forward { a.insert(b) } else { b.insert(a) };
                    assert!(matches!(r, Ok(()) | Err(TreeError::Cycle)), "{r:?}");
                    ok.push(r.is_ok());
                }
                ok
            })
        };
        let (fwd, back) = (run(true), run(false));
        let (fwd, back) = (fwd.join().unwrap(), back.join().unwrap());
        let mut wins = 0usize;
        for (i, (a, b)) in pairs.iter().enumerate() {
            assert!(!(fwd[i] && back[i]), "round {i}: both inserts succeeded");
            wins += usize::from(fwd[i] || back[i]);
            // Whatever won, both nodes can still be snapshotted.
            assert_eq!(a.snapshot().contains(b), fwd[i]);
            assert_eq!(b.snapshot().contains(a), back[i]);
        }
        assert_eq!(wins, ROUNDS, "exactly one insert of each pair succeeds");
    });
}

/// Defect 4: no depth at which an operation spins. On 975d73a a commit at
/// depth ≥ 4 097 never returned. A chain of 10 000 works end to end: build,
/// snapshot, commit at the deepest node and at the root, and drop (the
/// drop runs on a thread with the default 2 MiB stack: it must not recurse
/// per level).
#[test]
fn a_chain_of_ten_thousand_works_end_to_end() {
    const DEPTH: usize = 10_000;
    within(HANG, "10 000-deep chain", || {
        let chain: Vec<Node<u32>> = (0..DEPTH).map(|_| Node::new(0)).collect();
        for w in chain.windows(2) {
            w[0].insert(&w[1]).unwrap();
        }
        let (top, bottom) = (&chain[0], &chain[DEPTH - 1]);
        assert!(top.snapshot().contains(bottom));
        bottom.iterate_commit(|tr| tr[bottom] += 1);
        assert_eq!(top.snapshot()[bottom], 1);
        top.iterate_commit(|tr| tr[bottom] += 1);
        chain[DEPTH / 2].iterate_commit(|tr| tr[bottom] += 1);
        assert_eq!(bottom.read(), 3);
        assert_eq!(top.snapshot()[bottom], 3);
        // Refused: the bottom above the top.
        assert_eq!(bottom.insert(top), Err(TreeError::Cycle));
        let top = top.clone();
        drop(chain);
        drop(top); // the whole chain goes here
    });
}

/// Defect 4, built the other way (each insert puts a whole chain under a
/// new parent, so the cycle check walks the child's subtree).
#[test]
fn a_chain_built_bottom_up_works() {
    const DEPTH: usize = 1_000;
    within(HANG, "bottom-up chain", || {
        let chain: Vec<Node<u32>> = (0..DEPTH).map(|_| Node::new(0)).collect();
        for i in (1..DEPTH).rev() {
            chain[i - 1].insert(&chain[i]).unwrap();
            if i % 100 == 0 {
                let _ = chain[i - 1].snapshot(); // bundle part of it
            }
        }
        chain[DEPTH - 1].iterate_commit(|tr| tr[&chain[DEPTH - 1]] = 5);
        assert_eq!(chain[0].snapshot()[&chain[DEPTH - 1]], 5);
        assert_eq!(chain[DEPTH - 1].insert(&chain[0]), Err(TreeError::Cycle));
    });
}

/// The scenario of defect 5: root → leaf; one thread commits at the root,
/// two at the leaf, all incrementing the leaf; a slow leaf transaction
/// (its closure sleeps) must commit within a bounded number of attempts.
/// Returns the slow transaction's retries.
#[cfg(not(feature = "no-privilege"))]
fn slow_against_fast(closure: Duration) -> u32 {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;
    let root = Node::new(0u64);
    let leaf = Node::new(0u64);
    root.insert(&leaf).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let fast_commits = Arc::new(AtomicU64::new(0));
    let mut fast = Vec::new();
    for i in 0..3 {
        let (root, leaf, stop, n) = (
            root.clone(),
            leaf.clone(),
            stop.clone(),
            fast_commits.clone(),
        );
        fast.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if i == 0 {
                    root.iterate_commit(|tr| tr[&leaf] += 1);
                } else {
                    leaf.iterate_commit(|tr| tr[&leaf] += 1);
                }
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the fast threads get going.
    while fast_commits.load(Ordering::Relaxed) < 1_000 {
        thread::yield_now();
    }
    let (leaf2, stop2) = (leaf.clone(), stop.clone());
    let (retries, took) = within(HANG, "slow transaction", move || {
        let t0 = Instant::now();
        let (_, stats) = leaf2.iterate_commit_with_stats(|tr| {
            thread::sleep(closure);
            tr[&leaf2] += 1_000_000;
        });
        stop2.store(true, Ordering::Relaxed);
        (stats.retries, t0.elapsed())
    });
    for t in fast {
        t.join().unwrap();
    }
    let total = leaf.read();
    assert_eq!(total, 1_000_000 + fast_commits.load(Ordering::Relaxed));
    eprintln!("slow transaction ({closure:?} closure): {retries} retries, {took:?}");
    retries
}

/// Defect 5, deterministically: a transaction that loses at commit time
/// *without* a failed CAS (the commit reads a packet someone else
/// committed) must still tag, so that younger committers wait for its next
/// attempt. The slow leaf transaction's first attempt loses to one root
/// commit; during its second attempt the root committer tries again and
/// must not get through (it waits on the tag), so the second attempt
/// commits. On 975d73a no tag was set: the root committer committed during
/// every attempt and the slow transaction never committed here (it gives up
/// waiting after 5 attempts; then its retries are 5, not 1).
#[test]
#[cfg(not(feature = "no-privilege"))]
fn a_conflict_found_at_commit_time_tags() {
    let root = Node::new(0u64);
    let leaf = Node::new(0u64);
    let marker = Node::new(0u64); // unrelated: orders the two threads' stamps
    root.insert(&leaf).unwrap();
    let _ = root.snapshot();
    let (tx_go, rx_go) = mpsc::channel::<()>();
    let (tx_done, rx_done) = mpsc::channel::<()>();
    let (root2, leaf2, marker2) = (root.clone(), leaf.clone(), marker.clone());
    let committer = thread::spawn(move || {
        while rx_go.recv().is_ok() {
            // This commit replaces a wrapper the slow transaction's thread
            // minted after the slow transaction started, so the root
            // transaction below is younger than the slow one.
            marker2.iterate_commit(|tr| tr[&marker2] += 1);
            root2.iterate_commit(|tr| tr[&leaf2] += 1);
            let _ = tx_done.send(());
        }
    });
    let (slow_leaf, marker3) = (leaf.clone(), marker.clone());
    let (stats, during) = within(HANG, "slow transaction", move || {
        let mut committed_during = Vec::new();
        let (_, stats) = slow_leaf.iterate_commit_with_stats(|tr| {
            if tr.attempt() < 5 {
                marker3.iterate_commit(|t| t[&marker3] += 1);
                // Ask the root committer to commit now, and give it time.
                tx_go.send(()).unwrap();
                committed_during.push(rx_done.recv_timeout(Duration::from_millis(200)).is_ok());
            }
            tr[&slow_leaf] += 1_000;
        });
        drop(tx_go);
        (stats, committed_during)
    });
    committer.join().unwrap();
    // Attempt 0 lost to the root commit; during attempt 1 the root
    // committer waited on the slow transaction's tags.
    assert_eq!(
        stats.retries, 1,
        "{stats:?}, root commits during attempts: {during:?}"
    );
    assert_eq!(during, [true, false]);
    assert_eq!(leaf.read(), 1_000 + 2);
}

/// Defect 5, the issue's scenario (one root and two leaf committers
/// against a slow leaf transaction whose closure sleeps): the bound, stated
/// and checked. On 975d73a this starved in 2 of 5 runs (timing-dependent:
/// here it may pass on 975d73a; `a_conflict_found_at_commit_time_tags` is
/// the deterministic regression). Now every lost attempt tags and the
/// oldest transaction wins: the first attempt loses (the others commit
/// during its closure), its next attempt runs while the younger committers
/// wait on its tags; at most one commit per other thread can slip in
/// between its tagging and their wait (a CAS already past its gate), so
/// the bound is 1 + the number of other threads (measured: 1 retry, 2 ×
/// the closure's time, with 50 ms and 200 ms closures).
#[test]
#[cfg(not(feature = "no-privilege"))]
fn slow_transaction_commits_within_bounded_attempts() {
    let others = 3;
    for closure in [Duration::from_millis(50), Duration::from_millis(200)] {
        let retries = slow_against_fast(closure);
        assert!(
            retries <= 1 + others,
            "{retries} retries with a {closure:?} closure"
        );
    }
}

/// Defect 6: `iterate_commit_if` must not hold its tags while its closure
/// waits for something another thread does. On 975d73a the older
/// transaction (which had tagged the root after losing its first attempt)
/// blocked the younger leaf writer forever; neither finished.
#[test]
fn iterate_commit_if_waiting_does_not_block_the_writer() {
    within(HANG, "iterate_commit_if waiting on a writer", || {
        let root = Node::new(0u32);
        let leaf = Node::new(0u32);
        root.insert(&leaf).unwrap();
        let _ = root.snapshot();
        let started = Arc::new(Barrier::new(2));
        let (retrying, is_retrying) = mpsc::channel::<()>();
        let (leaf2, started2) = (leaf.clone(), started.clone());
        let writer = thread::spawn(move || {
            started2.wait();
            // These commits see serials minted after the waiting
            // transaction started, so every later transaction of this
            // thread is younger than it (a larger Lamport stamp).
            for _ in 0..5 {
                leaf2.iterate_commit(|tr| tr[&leaf2] += 0);
            }
            started2.wait();
            // Start writing once the other transaction waits for it.
            is_retrying.recv().unwrap();
            for _ in 0..100 {
                leaf2.iterate_commit(|tr| tr[&leaf2] += 1);
            }
        });
        let mut runs = 0u64;
        root.iterate_commit_if(|tr| {
            runs += 1;
            if tr.attempt() == 0 {
                // Lose the first attempt: the nested commit changes the
                // root, so this attempt's commit CAS fails and tags it.
                leaf.iterate_commit(|t| t[&leaf] += 1000);
                started.wait();
                started.wait();
                tr[&root] += 1;
                return true;
            }
            if tr[&leaf] < 1100 {
                let _ = retrying.send(());
                return false; // wait for the writer
            }
            tr[&root] += 1;
            true
        });
        writer.join().unwrap();
        assert_eq!(root.snapshot()[&leaf], 1100);
        runs
    });
}

/// Defect 7: a nested transaction committing into the enclosing
/// transaction's subtree on every attempt can never let it commit. On
/// 975d73a that looped silently forever; now `iterate_commit` panics naming
/// both nodes and `try_iterate_commit` returns `TreeError::NestedConflict`.
#[test]
fn nested_commit_into_the_enclosing_subtree_is_reported() {
    let cryostat = Node::new(0u32);
    let heater = Node::new(0.0f64);
    cryostat.insert(&heater).unwrap();

    let (c2, h2) = (cryostat.clone(), heater.clone());
    let panic = within(HANG, "nested loop (panic)", move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c2.iterate_commit(|tr| {
                tr[&c2] += 1;
                h2.iterate_commit(|t| t[&h2] += 1.0);
            });
        }))
    })
    .expect_err("iterate_commit must panic");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    let addr = |dbg: String| dbg.rsplit('@').next().unwrap().to_string();
    assert!(msg.contains(&addr(format!("{cryostat:?}"))), "{msg}");
    assert!(msg.contains(&addr(format!("{heater:?}"))), "{msg}");
    assert_eq!(
        cryostat.read(),
        0,
        "the enclosing transaction never committed"
    );

    let (c2, h2) = (cryostat.clone(), heater.clone());
    let r = within(HANG, "nested loop (try_)", move || {
        c2.try_iterate_commit(|tr| {
            tr[&c2] += 1;
            h2.iterate_commit(|t| t[&h2] += 1.0);
            Ok::<(), TreeError>(())
        })
        .map(|_| ())
    });
    match r {
        Err(TreeError::NestedConflict(n)) => assert_eq!(n.attempts, NESTED_LIMIT),
        other => panic!("expected NestedConflict, got {other:?}"),
    }
    assert_eq!(cryostat.read(), 0);
}

/// Defect 7, what keeps working: a nested commit into the subtree on the
/// first attempt only (the outer attempt conflicts and runs again), nested
/// commits on an unrelated subtree, and snapshots of an ancestor.
#[test]
fn nesting_that_can_commit_keeps_working() {
    let lab = Node::new(0u32);
    let cryostat = Node::new(0u32);
    let heater = Node::new(0u32);
    let other = Node::new(0u32);
    lab.insert(&cryostat).unwrap();
    cryostat.insert(&heater).unwrap();
    let mut runs = 0;
    cryostat.iterate_commit(|tr| {
        runs += 1;
        if tr.attempt() == 0 {
            heater.iterate_commit(|t| t[&heater] += 10);
        }
        other.iterate_commit(|t| t[&other] += 1); // unrelated: never a conflict
        assert!(lab.snapshot().contains(&heater)); // an ancestor's snapshot
        tr[&heater] += 1;
    });
    assert_eq!(runs, 2);
    assert_eq!(heater.read(), 11);
    assert_eq!(other.read(), 2);
}

/// Defect 8: thread ids were 16 bits and wrapped after 65 535 threads, so
/// two live threads could share an id (one then ignored the other's tags,
/// and serials were no longer unique). Now ids of exited threads are
/// recycled: among live threads they stay distinct, and serials stay
/// distinct forever, however many threads the process creates.
#[test]
fn seventy_thousand_threads_keep_ids_and_serials_distinct() {
    const THREADS: usize = 70_016;
    const LIVE: usize = 16;
    // A long-lived thread whose id must never be handed out again while
    // it lives.
    let keeper_id = kame_stm::__private::thread_id();
    let mut serials: HashSet<u64> = HashSet::with_capacity(THREADS);
    for _ in 0..THREADS / LIVE {
        let barrier = Arc::new(Barrier::new(LIVE));
        let batch: Vec<_> = (0..LIVE)
            .map(|_| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let id = kame_stm::__private::thread_id();
                    let s = kame_stm::__private::mint_serial();
                    barrier.wait(); // all of the batch are alive at once
                    (id, s)
                })
            })
            .collect();
        let got: Vec<(u16, u64)> = batch.into_iter().map(|t| t.join().unwrap()).collect();
        let ids: HashSet<u16> = got.iter().map(|g| g.0).collect();
        assert_eq!(ids.len(), LIVE, "live threads share an id: {got:?}");
        assert!(!ids.contains(&keeper_id), "a live thread's id was reused");
        for (_, s) in got {
            assert!(serials.insert(s), "serial {s:#x} minted twice");
        }
    }
    assert_eq!(serials.len(), THREADS);
}

/// Defect 1's class: an online insert of a subtree that shares a
/// hard-linked node with the inserting transaction's tree. Pulling the
/// child in must not steal the shared node's packet from the transaction's
/// own tree (that dooms the attempt, and the next attempt steals it back:
/// a transaction retrying forever against itself).
#[test]
fn online_insert_of_a_subtree_sharing_a_hard_link_commits() {
    within(HANG, "online insert sharing a hard link", || {
        let (r, a, x) = (Node::new(0u32), Node::new(0u32), Node::new(0u32));
        let c = Node::new(0u32);
        r.insert(&a).unwrap();
        a.insert(&x).unwrap();
        c.insert(&x).unwrap(); // x: under a (in r's tree) and under c
        let _ = r.snapshot();
        let (_, stats) = r.iterate_commit_with_stats(|tr| {
            tr.insert_online(&r, &c).unwrap();
            tr[&c] += 1;
            tr[&x] += 1;
        });
        assert!(stats.retries <= 1, "{stats:?}");
        let shot = r.snapshot();
        assert_eq!((shot[&c], shot[&x]), (1, 1));
        assert_eq!(c.snapshot()[&x], 1);
    });
}

/// Defect 1's class, concurrently (found by the history checker): two
/// transactions release the same child. The second one's child CAS
/// replaced the first one's limbo wrapper after the first one's own CAS but
/// before its commit; the first committed (its parent no longer lists the
/// child), the second aborted, and the child carried the second's
/// uncommitted write. Now a child CAS over another transaction's limbo
/// touches the root first (`Transaction::validate_over`), so the first
/// one's commit fails instead.
#[test]
fn concurrent_releases_of_one_child_publish_nothing_uncommitted() {
    within(HANG, "concurrent releases", || {
        let p = Node::new(0u64);
        let c = Node::new(0u64);
        p.insert(&c).unwrap();
        let _ = p.snapshot();
        let (a, b) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let (p2, c2, a2, b2) = (p.clone(), c.clone(), a.clone(), b.clone());
        let second = thread::spawn(move || {
            let mut first = true;
            let r: Result<_, TreeError> = p2.try_iterate_commit(|tr| {
                if first {
                    first = false;
                    a2.wait(); // the first transaction has released c
                    tr[&c2] += 100;
                    tr.release(&p2, &c2)?;
                    b2.wait(); // let the first one commit
                    b2.wait(); // it has committed
                    return Err(TreeError::NotAChild); // abort
                }
                Ok(())
            });
            assert!(r.is_err());
        });
        let mut first = true;
        p.iterate_commit(|tr| {
            tr.release(&p, &c).unwrap();
            if first {
                first = false;
                a.wait();
                b.wait(); // the second one has released c too
            }
        });
        b.wait();
        second.join().unwrap();
        assert_eq!(c.read(), 0, "an aborted transaction's write is visible");
    });
}

/// `r → x → {q, c}`, bundled: `c` can move from `x` to `q` in a transaction
/// on `x` or on `r`.
fn r_x_q_c() -> (Node<u64>, Node<u64>, Node<u64>, Node<u64>) {
    let (r, x, q, c) = (
        Node::named("r", 0u64),
        Node::named("x", 0u64),
        Node::named("q", 0u64),
        Node::named("c", 0u64),
    );
    r.insert(&x).unwrap();
    x.insert(&q).unwrap();
    x.insert(&c).unwrap();
    let _ = r.snapshot();
    (r, x, q, c)
}

/// Found by the concurrent history test in release builds (3 of 40 runs on
/// 4369f81: `Phantom` and `LostAppend`), after the test above was fixed:
/// the root touch of `validate_over` only stops a transaction on the *same*
/// root. Here the first transaction runs on `x` and moves `c` from `x` to
/// `q`; the second, on the ancestor `r`, writes `c`, releases it (replacing
/// the first one's limbo with its own, carrying the write) and gives up.
/// The first commits: `x` no longer lists `c`, so `c`'s state is the
/// carried packet, with the abandoned write (`c` read 100 on 4369f81).
/// Now every limbo names the attempt that installed it, and a dynamic
/// operation that meets a live one's limbo loses instead of replacing it
/// (and waits for it before its next attempt: `src/limbo.rs`).
#[test]
fn a_release_over_a_live_limbo_of_another_root_publishes_nothing_uncommitted() {
    within(HANG, "release over a live limbo of another root", || {
        let (r, x, q, c) = r_x_q_c();
        let (a, b) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let (r2, x2, c2, a2, b2) = (r.clone(), x.clone(), c.clone(), a.clone(), b.clone());
        let second = thread::spawn(move || {
            let r: Result<_, TreeError> = r2.try_iterate_commit(|tr| {
                a2.wait(); // the first transaction has moved c
                tr[&c2] += 100;
                let _ = tr.release(&x2, &c2);
                b2.wait(); // let the first one commit
                b2.wait(); // it has committed
                Err(TreeError::NotAChild) // abandon
            });
            assert!(r.is_err());
        });
        let mut first = true;
        x.iterate_commit(|tr| {
            tr.release(&x, &c).unwrap();
            tr.insert(&q, &c).unwrap();
            if first {
                first = false;
                a.wait();
                b.wait(); // the second one has tried to release c too
            }
        });
        b.wait();
        second.join().unwrap();
        assert_eq!(c.read(), 0, "an abandoned transaction's write is visible");
        let shot = r.snapshot();
        assert_eq!((shot[&c], shot.children(&q).unwrap().len()), (0, 1));
    });
}

/// The same on one thread: the transaction on the ancestor runs nested
/// inside the closure of the one that moved `c`. Its release meets the
/// enclosing attempt's limbo, which cannot end while it runs: reported
/// after `NESTED_LIMIT` attempts (`NestedCause::HeldByEnclosing`), never
/// a wait for itself. On 4369f81 the nested transaction replaced the
/// enclosing limbo and committed its release, and the enclosing closure's
/// next attempt found `c` gone (`release` returned `NotAChild`).
#[test]
fn a_nested_release_of_a_node_the_enclosing_attempt_holds_is_reported() {
    within(HANG, "nested release over the enclosing limbo", || {
        let (r, x, q, c) = r_x_q_c();
        let mut inner = None;
        x.iterate_commit(|tr| {
            tr.release(&x, &c).unwrap();
            tr.insert(&q, &c).unwrap();
            if tr.attempt() == 0 {
                inner = Some(r.try_iterate_commit(|t2| {
                    t2[&c] += 100;
                    t2.release(&x, &c)
                }));
            }
        });
        match inner {
            Some(Err(TreeError::NestedConflict(e))) => {
                assert_eq!(e.cause, kame_stm::NestedCause::HeldByEnclosing);
                assert_eq!(e.inner.name.as_deref(), Some("c"));
                assert_eq!(e.attempts, NESTED_LIMIT);
            }
            other => panic!("expected a HeldByEnclosing report, got {other:?}"),
        }
        assert_eq!(c.read(), 0, "the nested transaction's write is visible");
        assert_eq!(r.snapshot().children(&q).unwrap().len(), 1);
    });
}

/// A bundle leaves alone a hard-linked node that sits inside a sibling it
/// has still to collect (`BundleFrame::pending`): `r → {c, a}`, `a → {c,
/// x}`. A transaction on `a` releases `x` (a limbo: no rebase can save the
/// attempt) and then snapshots `r`, whose bundle meets `c` first, bundled
/// in `a`. Taking `c` out of `a` there changes the attempt's base under
/// it: the attempt is lost (once, here; on every attempt in the shape of
/// `tla/FINDINGS.md`'s `nested-snap` case). Found by cargo-mutants:
/// `Pending::contains` made `false` survived every test.
#[test]
fn an_ancestor_snapshot_leaves_a_hard_link_inside_a_sibling_still_to_collect() {
    within(
        Duration::from_secs(60),
        "ancestor snapshot in a closure",
        || {
            let (r, a) = (Node::new(0u64), Node::new(0u64));
            let (c, x) = (Node::new(0u64), Node::new(0u64));
            r.insert(&c).unwrap();
            r.insert(&a).unwrap();
            a.insert(&c).unwrap();
            a.insert(&x).unwrap();
            // `a` with priority, `c` bundled into it, `r` not bundled yet.
            let _ = r.snapshot();
            a.iterate_commit(|tr| tr[&a] += 0);
            let _ = a.snapshot();
            let mut attempts = 0;
            a.try_iterate_commit(|tr| {
                attempts += 1;
                tr.release(&a, &x)?;
                let shot = r.snapshot();
                assert_eq!(shot[&c], 0);
                tr[&a] += 1;
                Ok::<(), TreeError>(())
            })
            .expect("the transaction commits");
            // Alone on its tree, it commits at its first attempt.
            assert_eq!(attempts, 1, "the ancestor snapshot cost the attempt");
            let shot = r.snapshot();
            assert_eq!(shot[&a], 1);
            assert!(!shot.contains(&x));
            assert_eq!(x.read(), 0);
        },
    );
}

/// Defect 1 as TLC's `KameStm_dyn_bug_reins_novalidate` shows it: the
/// child is released (in limbo under its parent, which still lists it),
/// then another thread commits to it through the parent (the parent's
/// packet keeps a stale slot, marked missing), then the same transaction
/// inserts it online again. Its base is stale by then: only the
/// validation before that child CAS (`tx_validate`) stops it from putting
/// the child in limbo under a parent whose stale slot would win the next
/// bundle, and +100 would be lost.
#[test]
fn a_release_then_a_foreign_commit_then_insert_online_keeps_the_commit() {
    within(HANG, "release, foreign commit, insert_online", || {
        let m = Node::new(0u64);
        let l = Node::new(0u64);
        m.insert(&l).unwrap();
        let _ = m.snapshot();
        let mut runs = 0;
        m.iterate_commit(|tr| {
            runs += 1;
            tr.release(&m, &l).unwrap();
            if tr.attempt() == 0 {
                let l = l.clone();
                thread::spawn(move || l.iterate_commit(|t| t[&l] += 100))
                    .join()
                    .unwrap();
            }
            tr.insert_online(&m, &l).unwrap();
            tr[&l] += 1;
        });
        assert_eq!(runs, 2, "the first attempt's base was stale");
        assert_eq!(l.read(), 101);
        assert_eq!(m.snapshot()[&l], 101);
    });
}

/// The cycle check of a plain insert reads the current subtree of a child
/// that lives in another tree (`structure::peek`) and must not write to
/// that tree: unbundling the child there would replace the other tree's
/// packet under its users and make its next snapshot bundle again.
#[test]
fn the_cycle_check_of_an_insert_reads_the_childs_tree_without_writing() {
    let y = Node::new(0u64);
    let x = Node::new(0u64);
    let z = Node::new(0u64);
    x.insert(&z).unwrap();
    y.insert(&x).unwrap();
    let before = y.snapshot(); // x and z bundled into y
    let p = Node::new(0u64);
    p.iterate_commit(|tr| tr.insert(&p, &x).unwrap()); // x has an edge: peeked
    assert!(
        before.ptr_eq(&y.snapshot()),
        "the insert's cycle check wrote to the tree x was bundled in"
    );
    assert!(p.snapshot().contains(&z));
}
