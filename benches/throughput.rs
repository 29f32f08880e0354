//! Throughput driver: KAME's payload-integrity workloads
//! (`transaction_payload_integrity_mixed_test` and
//! `transaction_payload_integrity_3level_mixed_test`) with the same knobs,
//! so the figures compare directly with the C++ original's.
//!
//! ```text
//! cargo run -p kame-stm-bench --release --bin throughput -- SECONDS THREADS MAX_PAYLOAD CROSS_RATIO [options]
//!   --levels 2|3      tree parent->child[N] (default) or grand->parent->child[N]
//!   --impl NAME       kame (default) | rwlock | arcswap | fast-stm (baselines, benches/baselines/)
//!   --readers R       R extra threads snapshot the whole tree in a loop and check
//!                     that every child shows the same number of cross commits
//!   --fairness        one extra thread runs a scope transaction whose closure takes
//!                     --long-ms (default 10) while the THREADS workers commit
//!   --long-ms MS      closure time of the fairness mode's long transaction
//!   --warmup S        untimed warm-up before the measurement (default 1, as the C++)
//!   --timeout S       give up (exit 3) when nothing commits for S seconds, or when
//!                     the threads do not stop within S seconds (default 10)
//!   --pad-nodes       kame only, diagnostic: 256 bytes of heap between the
//!                     children's allocations (no false sharing between leaves)
//!   --stats           kame only: commit through `iterate_commit_with_stats` and
//!                     report retries, failed CASes and negotiation waits per tx
//! ```
//!
//! Thread `i` owns `child[i]`; iteration `it` of a thread commits to its own
//! leaf, except when `CROSS_RATIO > 0 && it % CROSS_RATIO == 0`, which is one
//! scope (parent or grand) transaction incrementing every child. The
//! result line reports `child updates/s` = (leaf_tx + scope_tx × N) /
//! elapsed over the timed window. At the end every child must hold
//! `(leaf_commits_i + scope_commits) % MAX_PAYLOAD` (life-of-run counts), or
//! the run fails loudly (exit 1).

#[path = "common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::{
    Shared, TxCounters, arcswap::SwapShared, fast_stm::StmShared, kame::KameShared,
    rwlock::RwShared,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Args {
    seconds: f64,
    threads: usize,
    max_payload: u32,
    cross_ratio: u64,
    levels: usize,
    imp: String,
    readers: usize,
    fairness: bool,
    long_ms: f64,
    warmup: f64,
    timeout: f64,
    stats: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: throughput SECONDS THREADS MAX_PAYLOAD CROSS_RATIO [--levels 2|3] \
         [--impl kame|rwlock|arcswap|fast-stm] [--readers R] [--fairness] [--long-ms MS] \
         [--warmup S] [--timeout S] [--stats] [--pad-nodes]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut pos = Vec::new();
    let mut a = Args {
        seconds: 0.0,
        threads: 0,
        max_payload: 0,
        cross_ratio: 0,
        levels: 2,
        imp: "kame".into(),
        readers: 0,
        fairness: false,
        long_ms: 10.0,
        warmup: 1.0,
        timeout: 10.0,
        stats: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        let mut val = |name: &str| -> String {
            it.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                usage()
            })
        };
        fn num<T: std::str::FromStr>(s: String) -> T {
            s.parse().unwrap_or_else(|_| usage())
        }
        match s.as_str() {
            "--levels" => a.levels = num(val("--levels")),
            "--impl" => a.imp = val("--impl"),
            "--readers" => a.readers = num(val("--readers")),
            "--fairness" => a.fairness = true,
            "--stats" => a.stats = true,
            "--pad-nodes" => common::kame::PAD_NODES.store(true, Relaxed),
            "--long-ms" => a.long_ms = num(val("--long-ms")),
            "--warmup" => a.warmup = num(val("--warmup")),
            "--timeout" => a.timeout = num(val("--timeout")),
            "--bench" => {} // passed by `cargo bench`; ignored
            "-h" | "--help" => usage(),
            _ if s.starts_with("--") => {
                eprintln!("unknown option {s}");
                usage()
            }
            _ => pos.push(s),
        }
    }
    if pos.len() != 4 {
        usage()
    }
    a.seconds = pos[0].parse().unwrap_or_else(|_| usage());
    a.threads = pos[1].parse().unwrap_or_else(|_| usage());
    a.max_payload = pos[2].parse().unwrap_or_else(|_| usage());
    a.cross_ratio = pos[3].parse().unwrap_or_else(|_| usage());
    if a.max_payload == 0 || !(2..=3).contains(&a.levels) || a.threads == 0 {
        usage()
    }
    a
}

fn main() {
    let a = parse();
    match a.imp.as_str() {
        "kame" => run::<KameShared>(&a),
        "rwlock" => run::<RwShared>(&a),
        "arcswap" => run::<SwapShared>(&a),
        "fast-stm" | "stm" => run::<StmShared>(&a),
        other => {
            eprintln!("unknown --impl {other}");
            usage()
        }
    }
}

/// Per-thread counters on their own cache lines (written by one thread,
/// read by the watchdog and at the end).
#[repr(align(128))]
#[derive(Default)]
struct Slot {
    /// Operations finished (any kind, warm-up included): the watchdog's progress.
    ops: AtomicU64,
    leaf_total: AtomicU64,
    scope_total: AtomicU64,
    leaf_timed: AtomicU64,
    scope_timed: AtomicU64,
    /// Scope transaction attempts (closure runs), timed window only.
    scope_attempts_timed: AtomicU64,
    /// Fairness mode: the long transaction's worst and summed latency (ns).
    worst_ns: AtomicU64,
    sum_ns: AtomicU64,
}

struct Ctl {
    warming: AtomicBool,
    stop: AtomicBool,
    arrived: AtomicUsize,
    finished: AtomicUsize,
}

impl Ctl {
    fn barrier(&self, total: usize) {
        self.arrived.fetch_add(1, Relaxed);
        while self.arrived.load(Relaxed) < total {
            std::thread::yield_now();
        }
    }
}

fn levels_name(a: &Args) -> String {
    format!("{}-level", a.levels)
}

fn run<S: Shared>(a: &Args) {
    let n = a.threads;
    let sh = Arc::new(S::build(a.levels, n));
    let writers = n + usize::from(a.fairness);
    let total = writers + a.readers;
    let slots: Arc<Vec<Slot>> = Arc::new((0..total).map(|_| Slot::default()).collect());
    let ctl = Arc::new(Ctl {
        warming: AtomicBool::new(true),
        stop: AtomicBool::new(false),
        arrived: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
    });
    let torn = Arc::new(std::sync::Mutex::new(None::<String>));

    let mut handles = Vec::new();
    // Workers: thread i owns child[i].
    let counters: Arc<Vec<std::sync::Mutex<TxCounters>>> =
        Arc::new((0..n).map(|_| Default::default()).collect());
    for i in 0..n {
        let (sh, slots, ctl, counters) = (sh.clone(), slots.clone(), ctl.clone(), counters.clone());
        let (k, m, stats) = (a.cross_ratio, a.max_payload, a.stats);
        handles.push(std::thread::spawn(move || {
            let s = &slots[i];
            ctl.barrier(total);
            let (mut leaf_total, mut scope_total, mut leaf_timed, mut scope_timed) = (0, 0, 0, 0);
            let mut attempts_timed = 0u64;
            let mut acc = TxCounters::default();
            let mut it = 0u64;
            while !ctl.stop.load(Relaxed) {
                let timed = !ctl.warming.load(Relaxed);
                if k > 0 && it % k == 0 && stats {
                    let mut c = TxCounters::default();
                    sh.scope_stats(m, &mut c);
                    scope_total += 1;
                    if timed {
                        scope_timed += 1;
                        attempts_timed += c.retries + 1;
                        acc.add(&c);
                    }
                } else if k > 0 && it % k == 0 {
                    let mut att = 0u64;
                    sh.scope(m, &mut || {
                        att += 1;
                        true
                    });
                    scope_total += 1;
                    if timed {
                        scope_timed += 1;
                        attempts_timed += att;
                    }
                } else if stats {
                    let mut c = TxCounters::default();
                    sh.leaf_stats(i, m, &mut c);
                    leaf_total += 1;
                    if timed {
                        leaf_timed += 1;
                        acc.add(&c);
                    }
                } else {
                    sh.leaf(i, m);
                    leaf_total += 1;
                    if timed {
                        leaf_timed += 1;
                    }
                }
                it += 1;
                s.ops.store(it, Relaxed);
            }
            s.leaf_total.store(leaf_total, Relaxed);
            s.scope_total.store(scope_total, Relaxed);
            s.leaf_timed.store(leaf_timed, Relaxed);
            s.scope_timed.store(scope_timed, Relaxed);
            s.scope_attempts_timed.store(attempts_timed, Relaxed);
            *counters[i].lock().unwrap() = acc;
            ctl.finished.fetch_add(1, Relaxed);
        }));
    }
    // Fairness mode: the long transaction.
    if a.fairness {
        let (sh, slots, ctl) = (sh.clone(), slots.clone(), ctl.clone());
        let (m, long) = (a.max_payload, Duration::from_secs_f64(a.long_ms / 1e3));
        handles.push(std::thread::spawn(move || {
            let s = &slots[n];
            ctl.barrier(total);
            let (mut total_c, mut timed_c, mut attempts_timed) = (0u64, 0u64, 0u64);
            let (mut worst, mut sum) = (0u64, 0u64);
            while !ctl.stop.load(Relaxed) {
                let timed = !ctl.warming.load(Relaxed);
                let t0 = Instant::now();
                let mut att = 0u64;
                let committed = sh.scope(m, &mut || {
                    att += 1;
                    let t = Instant::now();
                    while t.elapsed() < long {
                        if ctl.stop.load(Relaxed) {
                            return false;
                        }
                        std::hint::spin_loop();
                    }
                    true
                });
                if !committed {
                    // Abandoned because the run is over: its wait so far is
                    // a lower bound on the latency.
                    // (Counted even if it began during the warm-up: a
                    // transaction pending all run long is the worst case.)
                    worst = worst.max(t0.elapsed().as_nanos() as u64);
                    break;
                }
                let lat = t0.elapsed().as_nanos() as u64;
                total_c += 1;
                if timed {
                    timed_c += 1;
                    attempts_timed += att;
                    worst = worst.max(lat);
                    sum += lat;
                }
                s.ops.fetch_add(1, Relaxed);
            }
            s.scope_total.store(total_c, Relaxed);
            s.scope_timed.store(timed_c, Relaxed);
            s.scope_attempts_timed.store(attempts_timed, Relaxed);
            s.worst_ns.store(worst, Relaxed);
            s.sum_ns.store(sum, Relaxed);
            ctl.finished.fetch_add(1, Relaxed);
        }));
    }
    // Readers: whole-tree snapshots; every child must show the same number
    // of cross (scope) commits, and that number never goes back.
    for r in 0..a.readers {
        let (sh, slots, ctl, torn) = (sh.clone(), slots.clone(), ctl.clone(), torn.clone());
        handles.push(std::thread::spawn(move || {
            let s = &slots[writers + r];
            ctl.barrier(total);
            let mut v = Vec::new();
            let (mut last, mut total_c, mut timed_c) = (0u32, 0u64, 0u64);
            while !ctl.stop.load(Relaxed) {
                let timed = !ctl.warming.load(Relaxed);
                sh.snapshot_cross(&mut v);
                let c0 = v.first().copied().unwrap_or(0);
                if v.iter().any(|&c| c != c0) || c0 < last {
                    *torn.lock().unwrap() = Some(format!(
                        "reader {r}: torn snapshot: cross counts {v:?} (previous {last})"
                    ));
                    ctl.stop.store(true, Relaxed);
                    break;
                }
                last = c0;
                total_c += 1;
                if timed {
                    timed_c += 1;
                }
                s.ops.store(total_c, Relaxed);
            }
            s.leaf_timed.store(timed_c, Relaxed); // snapshots, timed
            ctl.finished.fetch_add(1, Relaxed);
        }));
    }

    let timeout = Duration::from_secs_f64(a.timeout);
    let progress = |slots: &[Slot]| -> u64 { slots.iter().map(|s| s.ops.load(Relaxed)).sum() };
    // Waits `d` while watching for progress; gives up after `timeout`
    // without any commit or snapshot anywhere.
    let watch = |d: Duration, phase: &str| {
        let end = Instant::now() + d;
        let (mut last, mut since) = (progress(&slots), Instant::now());
        while Instant::now() < end && !ctl.stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
            let p = progress(&slots);
            if p != last {
                (last, since) = (p, Instant::now());
            } else if since.elapsed() >= timeout {
                println!(
                    "RESULT {} {} N={} K={}: NO PROGRESS — no commit or snapshot for {:.1} s \
                     during {phase} (livelock or starvation); giving up",
                    S::NAME,
                    levels_name(a),
                    n,
                    a.cross_ratio,
                    a.timeout
                );
                std::process::exit(3);
            }
        }
    };
    while ctl.arrived.load(Relaxed) < total {
        std::thread::yield_now();
    }
    watch(Duration::from_secs_f64(a.warmup), "warm-up");
    ctl.warming.store(false, Relaxed);
    let t0 = Instant::now();
    watch(Duration::from_secs_f64(a.seconds), "the timed run");
    ctl.stop.store(true, Relaxed);
    // Join, but never hang: a thread stuck retrying is reported.
    let deadline = Instant::now() + timeout;
    while ctl.finished.load(Relaxed) < total {
        if Instant::now() > deadline {
            println!(
                "RESULT {} {} N={} K={}: NO PROGRESS — {} of {} threads did not finish their \
                 operation within {:.1} s after stop (livelock or starvation); giving up",
                S::NAME,
                levels_name(a),
                n,
                a.cross_ratio,
                total - ctl.finished.load(Relaxed),
                total,
                a.timeout
            );
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for h in handles {
        if h.join().is_err() {
            println!("FAIL: a thread panicked");
            std::process::exit(1);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();

    // Exact end-of-run check.
    let scope_total: u64 = slots[..writers]
        .iter()
        .map(|s| s.scope_total.load(Relaxed))
        .sum();
    let vals = sh.values();
    let mut errors = Vec::new();
    for (i, v) in vals.iter().enumerate() {
        let leaf_i = slots[i].leaf_total.load(Relaxed);
        let want = ((leaf_i + scope_total) % u64::from(a.max_payload)) as u32;
        if v.x != want || u64::from(v.cross) != scope_total {
            errors.push(format!(
                "child[{i}] = {} (cross {}), expected ({leaf_i} + {scope_total}) % {} = {want} \
                 (cross {scope_total})",
                v.x, v.cross, a.max_payload
            ));
        }
    }
    if let Some(t) = torn.lock().unwrap().take() {
        errors.push(t);
    }

    let leaf_timed: u64 = slots[..n].iter().map(|s| s.leaf_timed.load(Relaxed)).sum();
    let scope_timed_w: u64 = slots[..n].iter().map(|s| s.scope_timed.load(Relaxed)).sum();
    let att_w: u64 = slots[..n]
        .iter()
        .map(|s| s.scope_attempts_timed.load(Relaxed))
        .sum();
    let long = a.fairness.then(|| &slots[n]);
    let scope_timed = scope_timed_w + long.map_or(0, |s| s.scope_timed.load(Relaxed));
    let updates = leaf_timed + scope_timed * n as u64;
    let tx = leaf_timed + scope_timed;
    let per_s = |x: u64| x as f64 / elapsed;
    let verdict = if errors.is_empty() { "PASS" } else { "FAIL" };
    let head = format!(
        "RESULT {} {} N={} K={} M={} S={} alloc={}",
        S::NAME,
        levels_name(a),
        n,
        a.cross_ratio,
        a.max_payload,
        a.seconds,
        common::alloc::name()
    );
    let mut att = if scope_timed_w > 0 {
        format!(
            ", scope attempts/commit {:.2}",
            att_w as f64 / scope_timed_w as f64
        )
    } else {
        String::new()
    };
    if a.stats {
        let mut c = TxCounters::default();
        for x in counters.iter() {
            c.add(&x.lock().unwrap());
        }
        if c.tx > 0 {
            let per = |v: u64| v as f64 / c.tx as f64;
            att += &format!(
                "; per tx: retries {:.4}, failed CAS {:.4}, waits {:.4}; waiting {:.1}% of {} thread-seconds",
                per(c.retries),
                per(c.cas_failures),
                per(c.waits),
                c.waited_ns as f64 / 1e9 / (elapsed * n as f64) * 100.0,
                n
            );
        } else {
            att += "; no statistics (kame only)";
        }
    }
    if let Some(ls) = long {
        let lc = ls.scope_timed.load(Relaxed);
        let worst = ls.worst_ns.load(Relaxed) as f64 / 1e6;
        let mean = if lc > 0 {
            format!("{:.1} ms", ls.sum_ns.load(Relaxed) as f64 / lc as f64 / 1e6)
        } else {
            "n/a".into()
        };
        let long_att = if lc > 0 {
            format!(
                "{:.1}",
                ls.scope_attempts_timed.load(Relaxed) as f64 / lc as f64
            )
        } else {
            "n/a".into()
        };
        let starved = if lc == 0 {
            format!(" — STARVED: the long transaction never committed in the {elapsed:.1} s run")
        } else {
            String::new()
        };
        println!(
            "{head} fairness long={}ms: long tx {:.2} commits/s, worst latency {:.1} ms, \
             mean {mean}, attempts/commit {long_att}{starved}; short {:.0} child updates/s \
             ({:.0} tx/s{att}) elapsed {:.3} s {verdict}",
            a.long_ms,
            per_s(lc),
            worst,
            per_s(updates),
            per_s(tx),
            elapsed
        );
    } else if a.readers > 0 {
        let snaps: u64 = slots[writers..]
            .iter()
            .map(|s| s.leaf_timed.load(Relaxed))
            .sum();
        println!(
            "{head} R={}: {:.0} child updates/s, {:.0} commits/s, {:.0} snapshots/s \
             (leaf_tx {leaf_timed}, scope_tx {scope_timed}{att}) elapsed {:.3} s {verdict}",
            a.readers,
            per_s(updates),
            per_s(tx),
            per_s(snaps),
            elapsed
        );
    } else {
        println!(
            "{head}: {:.0} child updates/s ({:.0} tx/s, leaf_tx {leaf_timed}, \
             scope_tx {scope_timed}{att}) elapsed {:.3} s {verdict}",
            per_s(updates),
            per_s(tx),
            elapsed
        );
    }
    if !errors.is_empty() {
        for e in &errors {
            println!("FAIL: {e}");
        }
        std::process::exit(1);
    }
}
