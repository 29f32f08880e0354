//! Leak accounting: after everything is dropped no payload copy survives.

mod common;
use common::{Counted, Tracker};
use kame_stm::Node;
use std::sync::atomic::Ordering;

#[test]
fn no_copy_survives_a_dropped_tree() {
    let t = Tracker::new();
    {
        let root = Node::new(Counted::new(0, &t));
        let kids: Vec<_> = (0..5).map(|i| Node::new(Counted::new(i, &t))).collect();
        for k in &kids {
            root.insert(k).unwrap();
        }
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let root = root.clone();
                let kids = kids.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let k = &kids[(i + n) % kids.len()];
                        if i % 3 == 0 {
                            root.iterate_commit(|tr| {
                                if let Ok(v) = tr.get_mut(k) {
                                    *v += 1;
                                }
                                tr[&root] += 1;
                            });
                        } else {
                            k.iterate_commit(|tr| tr[k] -= 1);
                        }
                        let s = root.snapshot();
                        let _ = s.get(k).map(|c| c.x);
                        if i % 50 == 0 {
                            // Threads race on the same children: either
                            // may find it already released / inserted.
                            let _ = root.release(k);
                            let _ = root.insert(k);
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert!(t.live.load(Ordering::SeqCst) > 0);
    }
    assert_eq!(t.settle(), 0, "payload copies leaked");
    assert_eq!(t.total.load(Ordering::SeqCst), 0);
}
