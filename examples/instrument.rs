//! A simulated cryostat shared by an acquisition loop, a control loop, a
//! "script" that reconfigures the tree, and a display.
//!
//! ```text
//! cryostat
//! ├── thermometer   (acquisition writes readings at ~1 kHz)
//! ├── heater        (control loop writes the output power)
//! ├── magnet        (script ramps the field setpoint)
//! └── aux channel   (script inserts and releases it)
//! ```
//!
//! Every line the display prints comes from one consistent snapshot: the
//! heater power shown is the one the control loop computed from a
//! temperature at least as old as the one shown.
//!
//! The display does not poll: it holds a subscription to the cryostat,
//! coalesced to at most 30 redraws a second, and redraws when the tree
//! changed. The script marks "plugged in" / "unplugged" on a talker that
//! lives in the cryostat's payload, inside the very transaction that
//! inserts or releases the channel; the display hears each event once,
//! after its commit, with the committed state. On a terminal the status
//! line is redrawn in place; otherwise one plain line a second is printed.
//!
//! Acquisition runs as `Priority::Realtime` (it never waits behind the
//! others' tags), the control loop as the default `Normal`, the script as
//! `Background`, and the display's snapshots default to `Interactive`.
//!
//! The nodes are named, so with `--features serde` the run ends by saving
//! the instrument's configuration (the heater and magnet settings, keyed
//! by name path) as JSON and applying it back in one transaction.
//!
//! Run: `cargo run --release --example instrument [seconds]` (default 5);
//! `cargo run --release --example instrument --features serde` to see the
//! configuration saved.

use kame_stm::priority::{self, Priority};
use kame_stm::{Coalesce, Node, Talker};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Cryostat {
    name: &'static str,
    setpoint_k: f64,
    /// Plug/unplug events of the aux channel (clones share listeners).
    channel_events: Talker<Plug>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plug {
    In,
    Out,
}

#[derive(Clone, Debug, Default)]
struct Thermometer {
    kelvin: f64,
    samples: u64,
}

#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Heater {
    power_w: f64,
    /// The thermometer sample the power was computed from.
    based_on_sample: u64,
}

#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Magnet {
    field_t: f64,
    target_t: f64,
}

#[derive(Clone, Debug, Default)]
struct Aux {
    volts: f64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    retries: AtomicU64,
    /// Plug/unplug commits made by the script.
    plugs: AtomicU64,
}

impl Counters {
    fn record(&self, attempts: u32) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.retries
            .fetch_add(u64::from(attempts), Ordering::Relaxed);
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let run_for = Duration::from_secs_f64(seconds);

    let channel_events = Talker::new();
    let cryostat = Node::named(
        "cryostat",
        Cryostat {
            name: "cryostat",
            setpoint_k: 4.2,
            channel_events: channel_events.clone(),
        },
    );
    let thermometer = Node::named(
        "thermometer",
        Thermometer {
            kelvin: 300.0,
            samples: 0,
        },
    );
    let heater = Node::named("heater", Heater::default());
    let magnet = Node::named("magnet", Magnet::default());
    let aux = Node::named("aux", Aux::default());
    for child in [thermometer.to_ref(), heater.to_ref(), magnet.to_ref()] {
        cryostat.insert(&child).expect("fresh nodes");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Counters::default());
    let start = Instant::now();
    let mut workers = Vec::new();

    // Acquisition: one reading per millisecond, committed to the thermometer.
    {
        let (thermometer, heater, stop, stats) = (
            thermometer.clone(),
            heater.clone(),
            stop.clone(),
            stats.clone(),
        );
        workers.push(std::thread::spawn(move || {
            // Acquisition must not miss a sample: its commits win every
            // tag against the other classes and it never parks.
            let _class = priority::scope(Priority::Realtime);
            let period = Duration::from_millis(1);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let power = heater.read().power_w;
                let mut attempts = 0;
                thermometer.iterate_commit(|tr| {
                    attempts = tr.attempt();
                    let t = &mut tr[&thermometer];
                    // Cools towards 1.5 K, warmed by the heater.
                    t.kelvin += (1.5 - t.kelvin) * 0.002 + power * 0.05;
                    t.samples += 1;
                });
                stats.record(attempts);
                next += period;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                } else {
                    next = Instant::now();
                }
            }
        }));
    }

    // Control: reads a snapshot of the whole cryostat, writes the heater.
    {
        let (cryostat, thermometer, heater, stop, stats) = (
            cryostat.clone(),
            thermometer.clone(),
            heater.clone(),
            stop.clone(),
            stats.clone(),
        );
        workers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut attempts = 0;
                cryostat.iterate_commit(|tr| {
                    attempts = tr.attempt();
                    let setpoint = tr[&cryostat].setpoint_k;
                    let t = tr[&thermometer].clone();
                    let error = setpoint - t.kelvin;
                    let h = &mut tr[&heater];
                    h.power_w = (error * 0.5).clamp(0.0, 1.0);
                    h.based_on_sample = t.samples;
                });
                stats.record(attempts);
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }

    // Script: ramps the magnet and plugs an aux channel in and out.
    {
        let (cryostat, magnet, aux, stop, stats) = (
            cryostat.clone(),
            magnet.clone(),
            aux.clone(),
            stop.clone(),
            stats.clone(),
        );
        workers.push(std::thread::spawn(move || {
            // The script may wait: it yields to acquisition and control.
            let _class = priority::scope(Priority::Background);
            let mut step = 0u64;
            while !stop.load(Ordering::Relaxed) {
                step += 1;
                let mut attempts = 0;
                cryostat.iterate_commit(|tr| {
                    attempts = tr.attempt();
                    let m = &mut tr[&magnet];
                    m.target_t = if (step / 100) % 2 == 0 { 1.0 } else { 0.0 };
                    m.field_t += (m.target_t - m.field_t) * 0.05;
                    if step % 250 == 0 {
                        tr[&cryostat].setpoint_k = if tr[&cryostat].setpoint_k > 3.0 {
                            2.0
                        } else {
                            4.2
                        };
                    }
                });
                stats.record(attempts);
                // Plugging is marked in the transaction that does it: the
                // event is heard only if (and after) that attempt commits.
                if step % 400 == 100 {
                    let r = cryostat.try_iterate_commit(|tr| {
                        tr.insert_online(&cryostat, &aux)?;
                        tr[&aux].volts = 0.0;
                        let talker = tr[&cryostat].channel_events.clone();
                        tr.mark(&talker, Plug::In);
                        Ok::<_, kame_stm::TreeError>(())
                    });
                    r.expect("aux is not plugged in yet");
                    stats.plugs.fetch_add(1, Ordering::Relaxed);
                } else if step % 400 == 300 {
                    let r = cryostat.try_iterate_commit(|tr| {
                        tr.release(&cryostat, &aux)?;
                        let talker = tr[&cryostat].channel_events.clone();
                        tr.mark(&talker, Plug::Out);
                        Ok::<_, kame_stm::TreeError>(())
                    });
                    r.expect("aux is plugged in");
                    stats.plugs.fetch_add(1, Ordering::Relaxed);
                }
                if step % 400 > 100 && step % 400 < 300 {
                    aux.iterate_commit(|tr| tr[&aux].volts += 0.01);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }

    // Display: redraws on change, through a subscription coalesced to
    // ≤ 30 Hz; prints the channel events heard from the talker.
    let live = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let header = format!(
        "{:>5}  {:>9} {:>9} {:>8}  {:>8} {:>5}  {:>7} {:>6}",
        "t/s", "T/K", "setp/K", "samples", "heater/W", "lag", "B/T", "aux/V"
    );
    let _ = writeln!(
        out,
        "T: thermometer; setp: control setpoint; samples: readings so far; heater: control output\n\
         lag: readings taken since the heater power was computed; B: magnet field; aux/V: aux channel (- unplugged)\n{header}"
    );
    let mut sub = cryostat
        .subscribe()
        .at_most_every(Duration::from_millis(34));
    let mut events = channel_events.mailbox(Coalesce::All);
    let (mut checked, mut redraws, mut heard) = (0u64, 0u64, 0u64);
    let mut next_plain = Duration::from_secs(1);
    while start.elapsed() < run_for {
        let wait = run_for.saturating_sub(start.elapsed());
        let Some(shot) = sub.changed_timeout(wait) else {
            continue;
        };
        checked += 1;
        let (t, h) = (&shot[&thermometer], &shot[&heater]);
        // Consistency: the heater was computed from a sample we also see.
        assert!(h.based_on_sample <= t.samples, "torn snapshot");
        for ev in events.drain() {
            heard += 1;
            let channels = ev.snapshot.children(&cryostat).map_or(0, |c| c.count());
            let what = match ev.message {
                Plug::In => "plugged in",
                Plug::Out => "unplugged",
            };
            let clear = if live { "\r\x1b[2K" } else { "" };
            let _ = writeln!(
                out,
                "{clear}{:>5.1}  aux channel {what} ({channels} nodes under the cryostat in that commit)",
                start.elapsed().as_secs_f64()
            );
        }
        let aux_v = shot
            .get(&aux)
            .map_or("-".to_string(), |a| format!("{:.2}", a.volts));
        let line = format!(
            "{:>5.1}  {:>9.4} {:>9.2} {:>8}  {:>8.4} {:>5}  {:>7.3} {:>6}",
            start.elapsed().as_secs_f64(),
            t.kelvin,
            shot[&cryostat].setpoint_k,
            t.samples,
            h.power_w,
            t.samples - h.based_on_sample,
            shot[&magnet].field_t,
            aux_v
        );
        if live {
            let _ = write!(out, "\r\x1b[2K{line}");
            let _ = out.flush();
            redraws += 1;
        } else if start.elapsed() >= next_plain {
            next_plain += Duration::from_secs(1);
            let _ = writeln!(out, "{line}");
            redraws += 1;
        }
    }
    if live {
        let _ = writeln!(out);
    }
    drop(out);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let commits = stats.commits.load(Ordering::Relaxed);
    let retries = stats.retries.load(Ordering::Relaxed);
    let final_shot = cryostat.snapshot();
    let plugs = stats.plugs.load(Ordering::Relaxed);
    heard += events.drain().len() as u64;
    println!(
        "\n{}: {:.1} s, {} commits ({:.0}/s), {} retries; final T = {:.4} K",
        final_shot[&cryostat].name,
        elapsed,
        commits,
        commits as f64 / elapsed,
        retries,
        final_shot[&thermometer].kelvin
    );
    println!(
        "display: {checked} changed snapshots checked, none torn; {redraws} {} ({:.1}/s, subscription capped at 30/s)",
        if live { "redraws" } else { "lines printed" },
        redraws as f64 / elapsed
    );
    println!(
        "talker: {plugs} plug/unplug commits, {heard} events heard (each once, after its commit)"
    );
    assert_eq!(heard, plugs, "an event was lost or heard twice");
    save_configuration(&cryostat, &heater, &magnet);
}

/// The settings a user would keep between runs: the heater and magnet
/// payloads, keyed by name path, saved from one snapshot and applied back
/// in one transaction.
#[cfg(feature = "serde")]
fn save_configuration(cryostat: &Node<Cryostat>, heater: &Node<Heater>, magnet: &Node<Magnet>) {
    use kame_stm::config::{Config, Registry};
    let registry = Registry::new().with::<Heater>().with::<Magnet>();
    let saved = Config::save(&cryostat.snapshot(), &registry).expect("registered types");
    let text = serde_json::to_string_pretty(&saved).expect("a JSON value");
    println!("configuration saved ({} nodes):\n{text}", saved.nodes.len());
    let field = magnet.read().field_t;
    magnet.iterate_commit(|tr| tr[magnet].field_t = -1.0);
    let doc: Config = serde_json::from_str(&text).expect("what we wrote");
    doc.apply(cryostat, &registry)
        .expect("same tree, same types");
    assert_eq!(magnet.read().field_t, field, "the saved field came back");
    let _ = heater;
    println!("configuration applied back in one transaction: magnet field {field:.3} T");
}

#[cfg(not(feature = "serde"))]
fn save_configuration(_: &Node<Cryostat>, _: &Node<Heater>, _: &Node<Magnet>) {
    println!("(run with --features serde to save the configuration by node names)");
}
