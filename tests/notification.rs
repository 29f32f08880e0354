//! Change notification (issue 13): talkers, listeners, mailboxes and
//! subscriptions. Every test says which bug makes it fail. None depends on
//! timing: a lost wake-up shows as a watchdog expiring (60 s, far beyond any
//! honest run), never as "too slow".
//!
//! `KAME_NOTIFY_COMMITS` sets the commit count of the contention test
//! (default 10⁶ in a release build, 2·10⁴ in a debug build).

use kame_stm::{Coalesce, Listener, Node, Snapshot, Talker};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

fn recorder<M: Clone + Send + 'static>(talker: &Talker<M>) -> (Listener, Arc<Mutex<Vec<M>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let l = talker.connect(move |_, m: &M| h.lock().unwrap().push(m.clone()));
    (l, heard)
}

/// Catches: marks of a thrown-away attempt delivered (the buffer not tied
/// to the attempt), or the committed attempt's mark lost. Two deterministic
/// retries: the closure asking to run again, and a real lost CAS (another
/// thread commits to the node between this attempt's snapshot and commit).
#[test]
fn no_delivery_from_a_failed_attempt() {
    let n = Node::new(0u32);
    let talker: Talker<String> = Talker::new();
    let (_l, heard) = recorder(&talker);

    let shot = n.iterate_commit_if(|tr| {
        tr[&n] += 1;
        tr.mark(&talker, format!("asked attempt {}", tr.attempt()));
        tr.attempt() > 0
    });
    assert_eq!(shot[&n], 1);
    assert_eq!(*heard.lock().unwrap(), ["asked attempt 1"]);

    heard.lock().unwrap().clear();
    let (shot, stats) = n.iterate_commit_with_stats(|tr| {
        tr[&n] += 1;
        tr.mark(&talker, format!("conflict attempt {}", tr.attempt()));
        if tr.attempt() == 0 {
            // Another thread commits now: this attempt's CAS must fail.
            thread::scope(|s| {
                s.spawn(|| n.iterate_commit(|t| t[&n] += 100));
            });
        }
    });
    assert!(stats.retries >= 1, "the forced conflict did not happen");
    assert_eq!(shot[&n], 102);
    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0], format!("conflict attempt {}", stats.retries));
}

/// Catches: lost or doubled deliveries under contention (e.g. a place in
/// the delivery sequence skipped or taken twice, a batch left in the
/// queue when the delivering thread stops).
#[test]
fn exactly_one_delivery_per_committed_mark() {
    const THREADS: usize = 4;
    const PER: usize = 500;
    let n = Node::new(0usize);
    let talker: Talker<(usize, usize)> = Talker::new();
    let (_l, heard) = recorder(&talker);
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (n, talker, barrier) = (&n, &talker, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..PER {
                    n.iterate_commit(|tr| {
                        tr[n] += 1;
                        tr.mark(talker, (t, i));
                    });
                }
            });
        }
    });
    let mut heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), THREADS * PER);
    heard.sort();
    heard.dedup();
    assert_eq!(heard.len(), THREADS * PER, "some mark delivered twice");
}

/// Catches: deliveries out of commit order (e.g. each thread delivering
/// its own events as soon as it committed), and a delivered snapshot that
/// is not the committed one. Every commit increments one counter and marks
/// the value it committed: the listener must hear 1, 2, 3, … exactly, each
/// with a snapshot showing that value.
#[test]
fn order_per_talker_under_4_threads() {
    const THREADS: usize = 4;
    const PER: u64 = 500;
    let n = Node::new(0u64);
    let talker: Talker<u64> = Talker::new();
    let (_l, heard) = recorder(&talker);
    let torn = Arc::new(AtomicUsize::new(0));
    let (t2, n2) = (torn.clone(), n.clone());
    let _check = talker.connect(move |shot, &m| {
        if shot[&n2] != m {
            t2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for _ in 0..THREADS {
            let (n, talker, barrier) = (&n, &talker, &barrier);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..PER {
                    n.iterate_commit(|tr| {
                        tr[n] += 1;
                        let v = tr[n];
                        tr.mark(talker, v);
                    });
                }
            });
        }
    });
    let heard = heard.lock().unwrap();
    let expected: Vec<u64> = (1..=THREADS as u64 * PER).collect();
    assert!(*heard == expected, "out of commit order");
    assert_eq!(torn.load(Ordering::SeqCst), 0, "not the committed snapshot");
}

/// Catches: a dropped guard still called; a guard dropped from inside a
/// delivery still called for the event under way (the list read before the
/// drop), or a deadlock when a listener drops a guard (its own included).
#[test]
fn dropping_the_guard_unregisters_also_inside_a_delivery() {
    let n = Node::new(0u32);
    let talker: Talker<u32> = Talker::new();
    let commit = |v: u32| {
        n.iterate_commit(|tr| {
            tr[&n] = v;
            tr.mark(&talker, v);
        });
    };

    let (plain, heard) = recorder(&talker);
    commit(1);
    drop(plain);
    commit(2);
    assert_eq!(*heard.lock().unwrap(), [1]);
    assert_eq!(talker.listener_count(), 0);

    // A drops B's guard on the first event; B comes after A in the list.
    let b_slot: Arc<Mutex<Option<Listener>>> = Arc::new(Mutex::new(None));
    let bs = b_slot.clone();
    let _a = talker.connect(move |_, _| drop(bs.lock().unwrap().take()));
    let (b, b_heard) = recorder(&talker);
    *b_slot.lock().unwrap() = Some(b);
    commit(3);
    assert!(
        b_heard.lock().unwrap().is_empty(),
        "B called after its drop"
    );

    // C drops its own guard inside its delivery.
    let c_slot: Arc<Mutex<Option<Listener>>> = Arc::new(Mutex::new(None));
    let c_count = Arc::new(AtomicUsize::new(0));
    let (cs, cc) = (c_slot.clone(), c_count.clone());
    let c = talker.connect(move |_, _| {
        cc.fetch_add(1, Ordering::SeqCst);
        drop(cs.lock().unwrap().take());
    });
    *c_slot.lock().unwrap() = Some(c);
    commit(4);
    commit(5);
    assert_eq!(c_count.load(Ordering::SeqCst), 1);
    assert_eq!(talker.listener_count(), 1); // only A
}

/// Catches: delivery while the committing transaction still holds its
/// priority tags (the other thread's commit below, younger, would wait on
/// them forever: the test hangs), a listener's commit deadlocking on the
/// delivery machinery, and re-entrant or lost delivery of the listener's
/// own marks (they must be heard after it returns, in order, before the
/// outer `iterate_commit` returns).
#[test]
fn a_listener_may_commit() {
    let n = Node::new(0u32);
    let other = Node::new(0u32);
    let talker: Talker<u32> = Talker::new();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let (h, n2, o2, t2) = (heard.clone(), n.clone(), other.clone(), talker.clone());
    let _l = talker.connect(move |shot, &m| {
        h.lock().unwrap().push((m, shot[&n2]));
        // Another thread writes the node just committed.
        thread::scope(|s| {
            s.spawn(|| n2.iterate_commit(|tr| tr[&n2] += 10));
        });
        o2.iterate_commit(|tr| tr[&o2] += 1);
        if m < 3 {
            n2.iterate_commit(|tr| {
                tr[&n2] += 1;
                tr.mark(&t2, m + 1);
            });
        }
    });
    n.iterate_commit(|tr| {
        tr[&n] = 1;
        tr.mark(&talker, 1);
    });
    // 1 committed → listener: +10, then 12 marked 2 → +10, 23 marked 3 → +10.
    assert_eq!(*heard.lock().unwrap(), [(1, 1), (2, 12), (3, 23)]);
    assert_eq!(n.read(), 33);
    assert_eq!(other.read(), 3);
}

/// Catches: a listener's panic poisoning the talker, skipping the other
/// listeners of the same event or later events, stalling the delivery
/// sequence, or leaving a tag behind (the other thread's commit would
/// hang), and a panic swallowed silently.
#[test]
fn a_panicking_listener_loses_nothing_else() {
    let n = Node::new(0u32);
    let talker: Talker<u32> = Talker::new();
    let first = Arc::new(Mutex::new(Vec::new()));
    let f = first.clone();
    let _bad = talker.connect(move |_, &m| {
        f.lock().unwrap().push(m);
        assert_ne!(m, 1, "listener fails on 1");
    });
    let (_good, heard) = recorder(&talker);
    let r = catch_unwind(AssertUnwindSafe(|| {
        n.iterate_commit(|tr| {
            tr[&n] = 1;
            tr.mark(&talker, 1);
        })
    }));
    assert!(r.is_err(), "the listener's panic must reach the caller");
    assert_eq!(n.read(), 1, "the commit itself stands");
    thread::scope(|s| {
        s.spawn(|| {
            n.iterate_commit(|tr| {
                tr[&n] = 2;
                tr.mark(&talker, 2);
            })
        });
    });
    let (_late, late) = recorder(&talker);
    n.iterate_commit(|tr| {
        tr[&n] = 3;
        tr.mark(&talker, 3);
    });
    assert_eq!(*heard.lock().unwrap(), [1, 2, 3]);
    assert_eq!(*first.lock().unwrap(), [1, 2, 3]);
    assert_eq!(*late.lock().unwrap(), [3]);
}

/// Catches: a failed attempt's event queued, coalescing that loses the
/// newest event, an interval not honoured, a mailbox that hangs after its
/// talker is gone.
#[test]
fn mailbox_policies() {
    let n = Node::new(0u32);
    let talker: Talker<u32> = Talker::new();
    let mut all = talker.mailbox(Coalesce::All);
    let mut latest = talker.mailbox(Coalesce::Latest);
    let interval = Duration::from_millis(20);
    let mut slow = talker.mailbox(Coalesce::Interval(interval));
    let commit = |v: u32| {
        n.iterate_commit(|tr| {
            tr[&n] = v;
            tr.mark(&talker, v);
        })
    };
    for v in 1..=5 {
        commit(v);
    }
    let got: Vec<_> = all
        .drain()
        .into_iter()
        .map(|e| (e.message, e.snapshot[&n]))
        .collect();
    assert_eq!(got, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
    assert_eq!(latest.drain().len(), 1);
    let t0 = Instant::now();
    let first = slow.recv().unwrap();
    assert_eq!(first.message, 5);
    commit(6);
    commit(7);
    let second = slow.recv().unwrap();
    assert!(t0.elapsed() >= interval, "interval not honoured");
    assert_eq!(second.message, 7);
    drop(talker);
    assert!(all.recv().is_some_and(|e| e.message == 6));
    assert!(all.recv().is_some_and(|e| e.message == 7));
    assert!(all.recv().is_none(), "talker gone: recv must end");
}

/// Catches: duplicates delivered by `connect_distinct`, or a distinct
/// message after a duplicate dropped.
#[test]
fn connect_distinct_drops_duplicates() {
    let n = Node::new(0u32);
    let talker: Talker<u32> = Talker::new();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let _l = talker.connect_distinct(move |_, &m| h.lock().unwrap().push(m));
    for v in [1, 1, 2, 2, 1] {
        n.iterate_commit(|tr| tr.mark(&talker, v));
    }
    assert_eq!(*heard.lock().unwrap(), [1, 2, 1]);
}

/// Catches: duplicates queued by `mailbox_distinct`.
#[test]
fn mailbox_distinct_drops_duplicates() {
    let n = Node::new(0u32);
    let talker: Talker<u32> = Talker::new();
    let mut mb = talker.mailbox_distinct(Coalesce::All);
    for v in [1, 1, 2, 2, 1] {
        n.iterate_commit(|tr| tr.mark(&talker, v));
    }
    let got: Vec<u32> = mb.drain().into_iter().map(|e| e.message).collect();
    assert_eq!(got, [1, 2, 1]);
}

fn tree3() -> (Node<&'static str>, Node<u64>, Node<u64>) {
    let root = Node::new("rack");
    let (a, b) = (Node::new(0u64), Node::new(0u64));
    root.insert(&a).unwrap();
    root.insert(&b).unwrap();
    (root, a, b)
}

/// Catches: `changed_since` reporting a change of an untouched sibling, or
/// missing one made through a descendant's own transaction, or reporting a
/// change for a subtree that was only unbundled and bundled again.
#[test]
fn snapshot_identity() {
    let (root, a, b) = tree3();
    let s1 = root.snapshot();
    assert!(s1.ptr_eq(&root.snapshot()));
    a.iterate_commit(|tr| tr[&a] = 7); // a's own transaction
    let s2 = root.snapshot();
    assert!(!s2.ptr_eq(&s1));
    assert!(s2.changed_since(&s1, &a));
    assert!(s2.changed_since(&s1, &root));
    assert!(!s2.changed_since(&s1, &b));
    // Two swaps: the root's packet and child list are copied, the
    // contents end up the same (its payload shared, same children, same
    // child packets). A bare pointer comparison would call this a change.
    let s3 = root.iterate_commit(|tr| {
        tr.swap(&root, &a, &b).unwrap();
        tr.swap(&root, &a, &b).unwrap();
    });
    assert!(!s3.ptr_eq(&s2), "the case is exercised: new packets");
    assert!(
        !s3.changed_since(&s2, &root),
        "same contents is not changed"
    );
    assert!(!s3.changed_since(&s2, &a));
    // One swap is a change of the root (its child order), not of a.
    let s3b = root.iterate_commit(|tr| tr.swap(&root, &a, &b).unwrap());
    assert!(s3b.changed_since(&s3, &root));
    assert!(!s3b.changed_since(&s3, &a));
    let s3 = root.iterate_commit(|tr| tr.swap(&root, &a, &b).unwrap());
    // Structure: a release is a change of the parent, not of the sibling.
    root.release(&b).unwrap();
    let s4 = root.snapshot();
    assert!(s4.changed_since(&s3, &root));
    assert!(s4.changed_since(&s3, &b)); // gone from the subtree
    assert!(!s4.changed_since(&s3, &a));
}

/// Catches: a subscription not woken by a commit through a descendant or
/// through an ancestor, or woken (returning a state) for a sibling's
/// change. `changed_timeout(ZERO)` looks once and does not wait.
#[test]
fn subscription_sees_its_subtree_only() {
    let (root, a, b) = tree3();
    let mut on_root = root.subscribe();
    let mut on_a = a.subscribe();
    assert!(on_root.changed_timeout(Duration::ZERO).is_none());
    a.iterate_commit(|tr| tr[&a] = 1);
    assert_eq!(on_root.changed_timeout(WATCHDOG).map(|s| s[&a]), Some(1));
    assert_eq!(on_a.changed_timeout(WATCHDOG).map(|s| s[&a]), Some(1));
    root.iterate_commit(|tr| tr[&b] = 5);
    assert!(on_a.changed_timeout(Duration::ZERO).is_none(), "sibling");
    assert_eq!(on_root.changed_timeout(WATCHDOG).map(|s| s[&b]), Some(5));
    root.iterate_commit(|tr| tr[&a] = 2);
    assert_eq!(on_a.changed_timeout(WATCHDOG).map(|s| s[&a]), Some(2));
}

fn commits_under_contention() -> u64 {
    std::env::var("KAME_NOTIFY_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            20_000
        } else {
            1_000_000
        })
}

/// Catches: a lost wake-up. Four writers commit `KAME_NOTIFY_COMMITS`
/// increments (spread over two children, so some commits go through the
/// children's own transactions, some through the root) while a subscriber
/// on the root waits for changes; after the last commit it must see the
/// final sum. If the last wake-up were lost it would wait until the
/// watchdog expires.
#[test]
fn no_lost_wake_up_under_contention() {
    let total = commits_under_contention();
    let (root, a, b) = tree3();
    let mut sub = root.subscribe();
    let writers = 4u64;
    thread::scope(|s| {
        for w in 0..writers {
            let (root, a, b) = (&root, &a, &b);
            s.spawn(move || {
                let count = total / writers + u64::from(w < total % writers);
                for i in 0..count {
                    match (w + i) % 3 {
                        0 => a.iterate_commit(|tr| tr[a] += 1),
                        1 => b.iterate_commit(|tr| tr[b] += 1),
                        _ => root.iterate_commit(|tr| tr[a] += 1),
                    };
                }
            });
        }
        let mut wakes = 0u64;
        loop {
            let shot = sub
                .changed_timeout(WATCHDOG)
                .expect("lost wake-up: no change seen before the watchdog");
            wakes += 1;
            if shot[&a] + shot[&b] == total {
                break;
            }
        }
        assert!(wakes <= total, "more wake-ups than commits");
    });
}

/// Catches: a lost wake-up, one commit at a time: the writer commits and
/// waits until the subscriber acknowledged exactly that value.
#[test]
fn no_lost_wake_up_ping_pong() {
    let rounds = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let n = Node::new(0u64);
    let mut sub = n.subscribe();
    let (ack_tx, ack_rx) = mpsc::channel();
    thread::scope(|s| {
        let n2 = &n;
        s.spawn(move || {
            for i in 1..=rounds {
                n2.iterate_commit(|tr| tr[n2] = i);
                assert_eq!(ack_rx.recv_timeout(WATCHDOG), Ok(i), "lost wake-up");
            }
        });
        for i in 1..=rounds {
            let shot = sub.changed_timeout(WATCHDOG).expect("lost wake-up");
            assert_eq!(shot[&n], i);
            ack_tx.send(i).unwrap();
        }
    });
}

/// Catches: `wait_until` missing the state that satisfies it, or not
/// giving up at its timeout.
#[test]
fn wait_until_the_magnet_holds() {
    let magnet = Node::new(0.0_f64);
    assert!(
        magnet
            .wait_until(Duration::ZERO, |s| s[&magnet] > 1.0)
            .is_none()
    );
    let held = thread::scope(|s| {
        let m = &magnet;
        s.spawn(move || {
            for step in 1..=100 {
                m.iterate_commit(|tr| tr[m] = f64::from(step) * 0.1);
            }
        });
        magnet.wait_until(WATCHDOG, |shot| shot[&magnet] >= 9.95)
    });
    assert!(held.is_some_and(|s| s[&magnet] >= 9.95));
}

/// Catches: an async subscription that is never woken (waker not stored,
/// or stored after the check), under a real executor.
#[test]
fn async_subscription_under_tokio() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let n = Node::new(0u64);
    let mut sub = n.subscribe_async();
    let last = 2_000u64;
    let writer = {
        let n = n.clone();
        thread::spawn(move || {
            for i in 1..=last {
                n.iterate_commit(|tr| tr[&n] = i);
            }
        })
    };
    let seen: Snapshot = rt.block_on(async {
        tokio::time::timeout(WATCHDOG, async {
            loop {
                let shot = sub.changed().await;
                if shot[&n] == last {
                    break shot;
                }
            }
        })
        .await
        .expect("lost async wake-up")
    });
    writer.join().unwrap();
    assert_eq!(seen[&n], last);
}

/// Catches: `at_most_every` returning faster than its interval, or
/// returning a stale state instead of the newest one.
#[test]
fn throttled_subscription_returns_the_newest_state() {
    let n = Node::new(0u32);
    let interval = Duration::from_millis(20);
    let mut sub = n.subscribe().at_most_every(interval);
    n.iterate_commit(|tr| tr[&n] = 1);
    let t0 = Instant::now();
    assert_eq!(sub.changed()[&n], 1);
    n.iterate_commit(|tr| tr[&n] = 2);
    n.iterate_commit(|tr| tr[&n] = 3);
    assert_eq!(sub.changed()[&n], 3);
    assert!(t0.elapsed() >= interval, "interval not honoured");
}
