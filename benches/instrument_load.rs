//! Instrument workload (issue 11): does the acquisition thread keep its
//! deadlines while a control loop, two GUI pollers and a script share the
//! tree? Runs the same workload with priorities on and with every thread
//! `Normal`, and prints one table.
//!
//! ```text
//! cargo run -p kame-stm-bench --release --bin instrument_load -- [options]
//!   --seconds S     measured time per mode (default 5)
//!   --rate HZ       acquisition rate, 1..=10000 (default 1000)
//!   --script-ms MS  closure time of the Background script's transactions (default 10)
//!   --mode M        both (default) | prio | normal
//!   --budget-us US  the acquisition commits through `try_iterate_commit` with this
//!                   wait budget; samples that gave up are counted (default: none)
//! ```
//!
//! Tree: `lab -> {acq -> {reading, count}, control -> {setpoint}, script}`.
//!
//! * acquisition (`Realtime` with priorities): at every tick commits
//!   `reading` (a leaf transaction), and every 10th tick the `acq` scope
//!   (reading and count together). Latency = the `iterate_commit` call; a
//!   deadline miss = a commit that ends after the next tick.
//! * control loop (`Normal`): a transaction on `control` that reads the lab
//!   snapshot's reading and writes the setpoint, every 200 µs.
//! * two GUI pollers (no scope: stand-alone snapshots at their default
//!   class): `lab.snapshot()` in a loop, yielding between polls.
//! * script (`Background` with priorities): transactions on `lab` whose
//!   closure busy-waits `--script-ms`, writing `script`.
//!
//! Timing numbers from a shared machine mean little: measure on a quiet one.

use kame_stm::priority::{self, Priority};
use kame_stm::{Node, TreeError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

struct Args {
    seconds: f64,
    rate: u32,
    script_ms: f64,
    mode: String,
    budget_us: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: instrument_load [--seconds S] [--rate HZ] [--script-ms MS] \
         [--mode both|prio|normal] [--budget-us US]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        seconds: 5.0,
        rate: 1000,
        script_ms: 10.0,
        mode: "both".into(),
        budget_us: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--seconds" => a.seconds = v().parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = v().parse().unwrap_or_else(|_| usage()),
            "--script-ms" => a.script_ms = v().parse().unwrap_or_else(|_| usage()),
            "--mode" => a.mode = v(),
            "--budget-us" => a.budget_us = Some(v().parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    if !(1..=10_000).contains(&a.rate) || !["both", "prio", "normal"].contains(&a.mode.as_str()) {
        usage();
    }
    a
}

#[derive(Default)]
struct Report {
    latencies_ns: Vec<u64>,
    misses: u64,
    gave_up: u64,
    control: u64,
    polls: u64,
    script: u64,
}

fn class(prio: bool, c: Priority) -> Priority {
    if prio { c } else { Priority::Normal }
}

fn run(a: &Args, prio: bool) -> Report {
    let lab = Node::named("lab", 0u64);
    let acq = Node::named("acq", 0u64);
    let reading = Node::named("reading", 0.0_f64);
    let count = Node::named("count", 0u64);
    let control = Node::named("control", 0u64);
    let setpoint = Node::named("setpoint", 0.0_f64);
    let script = Node::named("script", 0u64);
    acq.insert(&reading).unwrap();
    acq.insert(&count).unwrap();
    control.insert(&setpoint).unwrap();
    lab.insert(&acq).unwrap();
    lab.insert(&control).unwrap();
    lab.insert(&script).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(5));
    let (n_control, n_polls, n_script) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut hs = Vec::new();
    {
        let (lab, control, setpoint, reading) = (
            lab.clone(),
            control.clone(),
            setpoint.clone(),
            reading.clone(),
        );
        let (stop, start, n) = (stop.clone(), start.clone(), n_control.clone());
        hs.push(thread::spawn(move || {
            let _c = priority::scope(Priority::Normal);
            start.wait();
            while !stop.load(Relaxed) {
                let r = lab.snapshot()[&reading];
                control.iterate_commit(|tr| {
                    tr[&setpoint] = 0.5 * r;
                    tr[&control] += 1;
                });
                n.fetch_add(1, Relaxed);
                thread::sleep(Duration::from_micros(200));
            }
        }));
    }
    for _ in 0..2 {
        let (lab, reading) = (lab.clone(), reading.clone());
        let (stop, start, n) = (stop.clone(), start.clone(), n_polls.clone());
        hs.push(thread::spawn(move || {
            // No scope when priorities are on: the reader default. All
            // Normal: the readers are Normal too.
            let _c = (!prio).then(|| priority::scope(Priority::Normal));
            start.wait();
            while !stop.load(Relaxed) {
                std::hint::black_box(lab.snapshot()[&reading]);
                n.fetch_add(1, Relaxed);
                thread::yield_now();
            }
        }));
    }
    {
        let (lab, script) = (lab.clone(), script.clone());
        let (stop, start, n) = (stop.clone(), start.clone(), n_script.clone());
        let work = Duration::from_secs_f64(a.script_ms / 1e3);
        hs.push(thread::spawn(move || {
            let _c = priority::scope(class(prio, Priority::Background));
            start.wait();
            while !stop.load(Relaxed) {
                lab.iterate_commit(|tr| {
                    let t = Instant::now();
                    while t.elapsed() < work {
                        std::hint::spin_loop();
                    }
                    tr[&script] += 1;
                });
                n.fetch_add(1, Relaxed);
            }
        }));
    }
    let _c = priority::scope(class(prio, Priority::Realtime));
    let period = Duration::from_secs_f64(1.0 / f64::from(a.rate));
    let samples = (a.seconds * f64::from(a.rate)) as u64;
    let mut rep = Report {
        latencies_ns: Vec::with_capacity(samples as usize),
        ..Report::default()
    };
    start.wait();
    let t0 = Instant::now();
    for i in 0..samples {
        let tick = t0 + period * (i as u32);
        let now = Instant::now();
        if tick > now {
            thread::sleep(tick - now);
        }
        let v = i as f64;
        let begin = Instant::now();
        if let Some(us) = a.budget_us {
            let r = if i % 10 == 0 {
                acq.transaction()
                    .wait_budget(Duration::from_micros(us))
                    .try_iterate_commit(|tr| {
                        tr[&reading] = v;
                        tr[&count] += 1;
                        Ok::<(), TreeError>(())
                    })
            } else {
                reading
                    .transaction()
                    .wait_budget(Duration::from_micros(us))
                    .try_iterate_commit(|tr| {
                        tr[&reading] = v;
                        Ok::<(), TreeError>(())
                    })
            };
            match r {
                Ok(_) => {}
                Err(TreeError::WaitBudgetExceeded(_)) => rep.gave_up += 1,
                Err(e) => panic!("acquisition: {e}"),
            }
        } else if i % 10 == 0 {
            acq.iterate_commit(|tr| {
                tr[&reading] = v;
                tr[&count] += 1;
            });
        } else {
            reading.iterate_commit(|tr| tr[&reading] = v);
        }
        let end = Instant::now();
        rep.latencies_ns.push((end - begin).as_nanos() as u64);
        if end > tick + period {
            rep.misses += 1;
        }
    }
    stop.store(true, Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    rep.control = n_control.load(Relaxed);
    rep.polls = n_polls.load(Relaxed);
    rep.script = n_script.load(Relaxed);
    rep.latencies_ns.sort_unstable();
    rep
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e3
}

fn main() {
    let a = parse();
    let modes: &[bool] = match a.mode.as_str() {
        "prio" => &[true],
        "normal" => &[false],
        _ => &[false, true],
    };
    println!(
        "instrument load: {} Hz acquisition, {} s, script closures {} ms, wait budget {}",
        a.rate,
        a.seconds,
        a.script_ms,
        a.budget_us.map_or("none".into(), |us| format!("{us} µs"))
    );
    println!(
        "| mode | samples | p50 µs | p99 µs | p99.9 µs | p99.99 µs | max µs | deadline misses | gave up (budget) | control tx | GUI polls | script tx |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &prio in modes {
        let r = run(&a, prio);
        let l = &r.latencies_ns;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} |",
            if prio { "priorities" } else { "all Normal" },
            l.len(),
            pct(l, 0.5),
            pct(l, 0.99),
            pct(l, 0.999),
            pct(l, 0.9999),
            pct(l, 1.0),
            r.misses,
            r.gave_up,
            r.control,
            r.polls,
            r.script
        );
    }
}
