//! Per-commit latency (issue 12): the tail that a throughput figure hides.
//! A mirror of the C++ original's `transaction_latency_bench`
//! (northriv/KAME `kamestm/tests/`), so that both are run with the same
//! arguments in one session and compared line by line.
//!
//! ```text
//! cargo run -p kame-stm-bench --release --bin latency -- [-t THREADS] [-s SECONDS]
//!     [-w WARMUP_S] [-x GRAND_PERCENT] [-m leaf|grand|mixed|all] [-b BUDGET_US]
//! ```
//!
//! `-b`: every commit goes through `try_iterate_commit` with that wait
//! budget (the C++ `ScopedWaitBudget` per commit, as its
//! `transaction_wait_budget_test` does); commits that gave up are counted
//! and timed like the others.
//!
//! Tree `grand -> parent -> child[THREADS]`; thread i owns child[i].
//!
//! * leaf: every commit is a transaction on the thread's own child;
//! * grand: every commit is a transaction at `grand` incrementing every
//!   child (the 3-level bundle);
//! * mixed: `GRAND_PERCENT` % of the commits are grand, the rest leaf.
//!
//! Each `iterate_commit` is timed alone (a monotonic clock read on each
//! side; a shared commit counter is bumped inside the window, as the C++
//! bench does). The histogram has 4 buckets per octave (64 exact buckets
//! below 64 ns); a percentile is its bucket's (exclusive) upper edge, capped at the
//! maximum, and is printed only where at least 10 samples lie beyond it.
//! Also printed: attempts per commit (closure calls) and the commits that
//! took 100 µs or more. `KAME_BENCH_ALLOC=mimalloc` as for the other drivers.

mod common;

use kame_stm::{Node, TreeError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const BUCKETS: usize = 256;
const SLOW_NS: u64 = 100_000;

/// A log-bucketed histogram of nanoseconds.
#[derive(Clone)]
struct Hist {
    bucket: [u64; BUCKETS],
    n: u64,
    sum: u64,
    max: u64,
}

impl Hist {
    fn new() -> Self {
        Hist {
            bucket: [0; BUCKETS],
            n: 0,
            sum: 0,
            max: 0,
        }
    }

    /// Values below 64 have a bucket each; above, each octave [2^k, 2^(k+1))
    /// is cut into four quarters.
    fn index(v: u64) -> usize {
        if v < 64 {
            return v as usize;
        }
        let oct = 63 - v.leading_zeros() as usize;
        let quarter = ((v >> (oct - 2)) & 3) as usize;
        (64 + (oct - 6) * 4 + quarter).min(BUCKETS - 1)
    }

    /// The upper edge of bucket `i`.
    fn edge(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        let (oct, quarter) = (6 + (i - 64) / 4, (i - 64) % 4);
        (5 + quarter as u64) << (oct - 2)
    }

    fn add(&mut self, v: u64) {
        self.bucket[Self::index(v)] += 1;
        self.n += 1;
        self.sum += v;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.bucket.iter_mut().zip(o.bucket.iter()) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        if (self.n as f64) * (1.0 - p) < 10.0 {
            return None;
        }
        let want = ((p * self.n as f64) as u64).min(self.n - 1);
        let mut acc = 0;
        for (i, &c) in self.bucket.iter().enumerate() {
            acc += c;
            if acc > want {
                return Some(Self::edge(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Arm {
    Leaf,
    Grand,
    Mixed,
}

struct Args {
    threads: usize,
    seconds: f64,
    warmup: f64,
    grand_percent: u32,
    arms: Vec<Arm>,
    budget_us: Option<u64>,
}

fn parse() -> Args {
    let mut a = Args {
        threads: 2,
        seconds: 5.0,
        warmup: 0.5,
        grand_percent: 10,
        arms: vec![Arm::Leaf, Arm::Grand, Arm::Mixed],
        budget_us: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next().unwrap_or_else(|| {
                eprintln!("{flag} needs a value");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "-t" => a.threads = val().parse().expect("-t THREADS"),
            "-s" => a.seconds = val().parse().expect("-s SECONDS"),
            "-w" => a.warmup = val().parse().expect("-w WARMUP_S"),
            "-x" => a.grand_percent = val().parse().expect("-x PERCENT"),
            "-b" => a.budget_us = Some(val().parse().expect("-b BUDGET_US")),
            "-m" => {
                a.arms = match val().as_str() {
                    "leaf" => vec![Arm::Leaf],
                    "grand" => vec![Arm::Grand],
                    "mixed" => vec![Arm::Mixed],
                    "all" => vec![Arm::Leaf, Arm::Grand, Arm::Mixed],
                    m => {
                        eprintln!("unknown -m {m}");
                        std::process::exit(2)
                    }
                }
            }
            "--bench" => {}
            _ => {
                eprintln!(
                    "usage: latency [-t N] [-s S] [-w W] [-x PERCENT] [-m leaf|grand|mixed|all]"
                );
                std::process::exit(2)
            }
        }
    }
    assert!(a.threads > 0, "-t must be at least 1");
    a
}

/// Per thread: the histogram, commits, attempts, commits ≥ 100 µs.
struct Tally {
    hist: Hist,
    attempts: u64,
    slow: u64,
    max_attempts: u64,
    gave_up: u64,
}

fn run(arm: Arm, a: &Args) -> (Tally, f64) {
    let grand = Node::new(0u32);
    let parent = Node::new(0u32);
    let children: Vec<Node<u32>> = (0..a.threads).map(|_| Node::new(0)).collect();
    grand.insert(&parent).unwrap();
    for c in &children {
        parent.insert(c).unwrap();
    }
    let children = Arc::new(children);
    let (go, stop, timing) = (
        Arc::new(Barrier::new(a.threads + 1)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let commits = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..a.threads)
        .map(|tid| {
            let (grand, children, go, stop, timing, commits) = (
                grand.clone(),
                children.clone(),
                go.clone(),
                stop.clone(),
                timing.clone(),
                commits.clone(),
            );
            let pct = a.grand_percent;
            let budget = a.budget_us.map(Duration::from_micros);
            thread::spawn(move || {
                let mut t = Tally {
                    hist: Hist::new(),
                    attempts: 0,
                    slow: 0,
                    max_attempts: 0,
                    gave_up: 0,
                };
                let leaf = &children[tid];
                let mut seq = 0u32;
                go.wait();
                while !stop.load(Relaxed) {
                    let do_grand = arm == Arm::Grand || (arm == Arm::Mixed && seq % 100 < pct);
                    seq = seq.wrapping_add(1);
                    let measure = timing.load(Relaxed);
                    let mut attempts = 0u64;
                    let t0 = Instant::now();
                    let node = if do_grand { &grand } else { leaf };
                    let mut body = |tr: &mut kame_stm::Transaction| {
                        attempts += 1;
                        if do_grand {
                            for c in children.iter() {
                                tr[c] += 1;
                            }
                        } else {
                            tr[leaf] += 1;
                        }
                    };
                    let gave_up = match budget {
                        None => {
                            node.iterate_commit(body);
                            false
                        }
                        Some(b) => {
                            let r = node.transaction().wait_budget(b).try_iterate_commit(|tr| {
                                body(tr);
                                Ok::<(), TreeError>(())
                            });
                            match r {
                                Ok(_) => false,
                                Err(TreeError::WaitBudgetExceeded(_)) => true,
                                Err(e) => panic!("commit: {e}"),
                            }
                        }
                    };
                    commits.fetch_add(1, Relaxed);
                    if measure {
                        let dt = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        t.hist.add(dt);
                        t.attempts += attempts;
                        t.max_attempts = t.max_attempts.max(attempts);
                        if dt >= SLOW_NS {
                            t.slow += 1;
                        }
                        t.gave_up += u64::from(gave_up);
                    }
                }
                t
            })
        })
        .collect();
    go.wait();
    thread::sleep(Duration::from_secs_f64(a.warmup));
    timing.store(true, Relaxed);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs_f64(a.seconds));
    timing.store(false, Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let mut all = Tally {
        hist: Hist::new(),
        attempts: 0,
        slow: 0,
        max_attempts: 0,
        gave_up: 0,
    };
    for w in workers {
        let t = w.join().expect("a worker panicked");
        all.hist.merge(&t.hist);
        all.attempts += t.attempts;
        all.slow += t.slow;
        all.max_attempts = all.max_attempts.max(t.max_attempts);
        all.gave_up += t.gave_up;
    }
    (all, elapsed)
}

fn main() {
    let a = parse();
    println!(
        "# latency -t {} -s {} -w {} -x {} budget={} alloc={}",
        a.threads,
        a.seconds,
        a.warmup,
        a.grand_percent,
        a.budget_us.map_or("none".into(), |us| format!("{us}us")),
        common::alloc::name()
    );
    for &arm in &a.arms {
        let (t, secs) = run(arm, &a);
        let h = &t.hist;
        let name = match arm {
            Arm::Leaf => "leaf",
            Arm::Grand => "grand",
            Arm::Mixed => "mixed",
        };
        let mut line = format!(
            "{name:<6} n={} {:.2} Mcommit/s mean={}",
            h.n,
            h.n as f64 / secs / 1e6,
            h.sum.checked_div(h.n).unwrap_or(0)
        );
        for (p, label) in [
            (0.5, "p50"),
            (0.9, "p90"),
            (0.99, "p99"),
            (0.999, "p99.9"),
            (0.9999, "p99.99"),
            (0.99999, "p99.999"),
        ] {
            if let Some(v) = h.percentile(p) {
                line += &format!(" {label}={v}");
            }
        }
        line += &format!(
            " MAX={} ns attempts/commit={:.3} max_attempts={} commits>=100us={} gave_up={}",
            h.max,
            t.attempts as f64 / h.n.max(1) as f64,
            t.max_attempts,
            t.slow,
            t.gave_up
        );
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::Hist;

    /// Bucket edges: exact below 64; above, bucket i holds the values from
    /// the previous bucket's edge up to (not including) its own edge, so a
    /// percentile reported as an edge is never below the true value.
    #[test]
    fn buckets_cover_values_in_order() {
        for v in (0..10_000u64).chain([1 << 20, (1 << 20) + 1, 123_456_789]) {
            let i = Hist::index(v);
            if v < 64 {
                assert_eq!(Hist::edge(i), v);
                continue;
            }
            assert!(
                v < Hist::edge(i),
                "{v} not below its edge {}",
                Hist::edge(i)
            );
            assert!(v >= Hist::edge(i - 1), "{v} within the previous bucket");
        }
    }
}
