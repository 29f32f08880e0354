//! Soak test with exact accounting.
//!
//! ```sh
//! cargo run --release --example soak -- [COMMITS] [--threads N]   # default 10^7 commits, 4 threads
//! cargo run --example soak -- --quick                             # CI-sized: 200 000 commits, ~4 s in a debug build
//! ```
//!
//! The tree: `root` holds a group `g` and four free leaves `f0..f3`; `g`
//! holds eight leaves `l0..l7` and a counter `total`. Thread roles
//! (thread `i` takes role `i % 4`):
//!
//! 0. leaf committer: `f.iterate_commit(|tr| tr[&f] += 1)` on a free leaf,
//!    sometimes a root transaction incrementing free and group leaves;
//! 1. scope committer: `g` or `root` transactions incrementing several group
//!    leaves and `total` by as much;
//! 2. replugger: in one transaction, release a leaf and insert it online
//!    under the *same* parent, then increment it (group leaves together with
//!    `total`; free leaves under the root, racing the leaf committer);
//! 3. reader: snapshots of `root` and `g`, checking in every one that
//!    `sum(l) == total`, that every node is where it belongs, and that no
//!    value ever goes back (each reader's snapshots are monotonic).
//!
//! Every increment is counted by the thread that committed it, after its
//! `iterate_commit` returned (the closure may run several times). At the end
//! every leaf must hold exactly its committed increments and `total` their
//! sum, in the root's snapshot and in each node's own. Exit code 0: pass;
//! 1: a violation (printed); 2: no progress for 120 s (a hang).

use kame_stm::{Node, Snapshot, TreeError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GROUP: usize = 8;
const FREE: usize = 4;

/// xorshift64*: reproducible choices without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone)]
struct Tree {
    root: Node<u64>,
    g: Node<u64>,
    total: Node<u64>,
    l: Vec<Node<u64>>,
    f: Vec<Node<u64>>,
}

impl Tree {
    fn new() -> Result<Tree, TreeError> {
        let t = Tree {
            root: Node::new(0),
            g: Node::new(0),
            total: Node::new(0),
            l: (0..GROUP).map(|_| Node::new(0)).collect(),
            f: (0..FREE).map(|_| Node::new(0)).collect(),
        };
        t.root.insert(&t.g)?;
        for l in &t.l {
            t.g.insert(l)?;
        }
        t.g.insert(&t.total)?;
        for f in &t.f {
            t.root.insert(f)?;
        }
        Ok(t)
    }
}

/// Committed increments, as counted by the threads.
#[derive(Default, Clone)]
struct Counts {
    l: [u64; GROUP],
    f: [u64; FREE],
    leaf_commits: u64,
    scope_commits: u64,
    replugs: u64,
    snapshots: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        for i in 0..GROUP {
            self.l[i] += o.l[i];
        }
        for i in 0..FREE {
            self.f[i] += o.f[i];
        }
        self.leaf_commits += o.leaf_commits;
        self.scope_commits += o.scope_commits;
        self.replugs += o.replugs;
        self.snapshots += o.snapshots;
    }
}

struct Shared {
    tree: Tree,
    target: u64,
    claimed: AtomicU64,
    progress: AtomicU64,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, msg: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(msg);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
    /// Claims one commit of the budget; false when it is spent or stopped.
    fn claim(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && self.claimed.fetch_add(1, Ordering::Relaxed) < self.target
    }
    fn committed(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// Picks `k` distinct indices below `n`.
fn distinct(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut v: Vec<usize> = Vec::with_capacity(k);
    while v.len() < k {
        let i = rng.below(n);
        if !v.contains(&i) {
            v.push(i);
        }
    }
    v
}

fn leaf_committer(s: &Shared, rng: &mut Rng, c: &mut Counts) {
    let t = &s.tree;
    while s.claim() {
        if rng.below(5) > 0 {
            let i = rng.below(FREE);
            let f = &t.f[i];
            f.iterate_commit(|tr| tr[f] += 1);
            c.f[i] += 1;
            c.leaf_commits += 1;
        } else {
            let fs = distinct(rng, FREE, 2);
            let k = 1 + rng.below(3);
            let ls = distinct(rng, GROUP, k);
            t.root.iterate_commit(|tr| {
                for &i in &fs {
                    tr[&t.f[i]] += 1;
                }
                for &i in &ls {
                    tr[&t.l[i]] += 1;
                }
                tr[&t.total] += ls.len() as u64;
            });
            fs.iter().for_each(|&i| c.f[i] += 1);
            ls.iter().for_each(|&i| c.l[i] += 1);
            c.scope_commits += 1;
        }
        s.committed();
    }
}

fn scope_committer(s: &Shared, rng: &mut Rng, c: &mut Counts) {
    let t = &s.tree;
    while s.claim() {
        let k = 1 + rng.below(4);
        let ls = distinct(rng, GROUP, k);
        let scope = if rng.below(2) == 0 { &t.g } else { &t.root };
        scope.iterate_commit(|tr| {
            for &i in &ls {
                tr[&t.l[i]] += 1;
            }
            tr[&t.total] += ls.len() as u64;
        });
        ls.iter().for_each(|&i| c.l[i] += 1);
        c.scope_commits += 1;
        s.committed();
    }
}

fn replugger(s: &Shared, rng: &mut Rng, c: &mut Counts) {
    let t = &s.tree;
    while s.claim() {
        let r: Result<Snapshot, TreeError> = match rng.below(3) {
            k @ (0 | 1) => {
                // A group leaf under g, in a transaction on g or on the root.
                let on = if k == 0 { &t.g } else { &t.root };
                let i = rng.below(GROUP);
                let l = &t.l[i];
                let r = on.try_iterate_commit(|tr| {
                    tr.release(&t.g, l)?;
                    tr.insert_online(&t.g, l)?;
                    tr[l] += 1;
                    tr[&t.total] += 1;
                    Ok(())
                });
                if r.is_ok() {
                    c.l[i] += 1;
                }
                r
            }
            _ => {
                // A free leaf under the root, racing its leaf committer.
                let i = rng.below(FREE);
                let f = &t.f[i];
                let r = t.root.try_iterate_commit(|tr| {
                    tr.release(&t.root, f)?;
                    tr.insert_online(&t.root, f)?;
                    tr[f] += 1;
                    Ok(())
                });
                if r.is_ok() {
                    c.f[i] += 1;
                }
                r
            }
        };
        if let Err(e) = r {
            s.fail(format!("replug transaction failed: {e}"));
            return;
        }
        c.replugs += 1;
        s.committed();
    }
}

/// The invariants of one snapshot of `root` (or of `g` when `of_root` is
/// false); `last` holds this reader's previous values (monotonic reads).
fn check_snapshot(
    t: &Tree,
    shot: &Snapshot,
    of_root: bool,
    last: &mut [u64],
) -> Result<(), String> {
    let get = |n: &Node<u64>| shot.get(n).copied().map_err(|e| format!("{e}"));
    let mut sum = 0;
    for l in &t.l {
        sum += get(l)?;
    }
    let total = get(&t.total)?;
    if sum != total {
        return Err(format!("torn snapshot: sum(l) = {sum} but total = {total}"));
    }
    let g_kids: Vec<_> = shot.children(&t.g).map_err(|e| format!("{e}"))?.collect();
    if g_kids.len() != GROUP + 1
        || !t.l.iter().all(|l| g_kids.iter().any(|k| k == l))
        || !g_kids.iter().any(|k| *k == t.total)
    {
        return Err(format!(
            "g has {} children, not its 8 leaves and total",
            g_kids.len()
        ));
    }
    let mut now = vec![total];
    if of_root {
        let r_kids: Vec<_> = shot
            .children(&t.root)
            .map_err(|e| format!("{e}"))?
            .collect();
        if r_kids.len() != FREE + 1
            || !t.f.iter().all(|f| r_kids.iter().any(|k| k == f))
            || !r_kids.iter().any(|k| *k == t.g)
        {
            return Err(format!(
                "root has {} children, not g and the 4 free leaves",
                r_kids.len()
            ));
        }
        for f in &t.f {
            now.push(get(f)?);
        }
    }
    for (i, (&n, l)) in now.iter().zip(last.iter_mut()).enumerate() {
        if n < *l {
            return Err(format!(
                "value {i} went back from {l} to {n} between two snapshots of one reader"
            ));
        }
        *l = n;
    }
    Ok(())
}

fn reader(s: &Shared, rng: &mut Rng, c: &mut Counts) {
    let t = &s.tree;
    let mut last_root = vec![0; 1 + FREE];
    let mut last_g = vec![0; 1];
    while !s.stop.load(Ordering::Relaxed) {
        let r = if rng.below(4) == 0 {
            check_snapshot(t, &t.g.snapshot(), false, &mut last_g)
        } else {
            check_snapshot(t, &t.root.snapshot(), true, &mut last_root)
        };
        if let Err(e) = r {
            s.fail(format!("snapshot check: {e}"));
            return;
        }
        c.snapshots += 1;
    }
}

struct Args {
    commits: u64,
    threads: usize,
    quick: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        commits: 10_000_000,
        threads: 4,
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    let mut commits = None;
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--threads" => {
                a.threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--threads N")?;
            }
            _ => {
                commits = Some(
                    x.replace('_', "")
                        .parse()
                        .map_err(|_| format!("bad argument {x}"))?,
                )
            }
        }
    }
    a.commits = commits.unwrap_or(if a.quick { 200_000 } else { a.commits });
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: soak [COMMITS] [--threads N] [--quick]: {e}");
            std::process::exit(1);
        }
    };
    let tree = Tree::new().expect("the initial tree");
    let s = Arc::new(Shared {
        tree,
        target: args.commits,
        claimed: AtomicU64::new(0),
        progress: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
    });
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    println!(
        "soak: {} commits, {} threads (roles: leaf, scope, replug, reader), seed {seed:#x}{}",
        args.commits,
        args.threads,
        if args.quick { " (quick)" } else { "" }
    );
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..args.threads)
        .map(|i| {
            let (s, tx) = (s.clone(), tx.clone());
            // With fewer than 4 threads, the reader role is dropped first
            // and then the others, so commits always run.
            let role = if args.threads < 4 { i % 3 } else { i % 4 };
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                let mut c = Counts::default();
                match role {
                    0 => leaf_committer(&s, &mut rng, &mut c),
                    1 => scope_committer(&s, &mut rng, &mut c),
                    2 => replugger(&s, &mut rng, &mut c),
                    _ => reader(&s, &mut rng, &mut c),
                }
                let _ = tx.send(role);
                c
            })
        })
        .collect();
    drop(tx);
    // Committers end when the budget is spent; then readers are stopped.
    // The watchdog fires only when nothing was committed for 120 s.
    let committers = (0..args.threads)
        .filter(|&i| (if args.threads < 4 { i % 3 } else { i % 4 }) != 3)
        .count();
    let mut finished_committers = 0;
    let mut finished = 0;
    let (mut seen, mut seen_at, mut report_at) = (0, Instant::now(), Instant::now());
    while finished < args.threads {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(role) => {
                finished += 1;
                if role != 3 {
                    finished_committers += 1;
                    if finished_committers == committers {
                        s.stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break, // a panic: join shows it
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let p = s.progress.load(Ordering::Relaxed);
        if p != seen {
            (seen, seen_at) = (p, Instant::now());
        } else if seen_at.elapsed() > Duration::from_secs(120) && !s.stop.load(Ordering::SeqCst) {
            eprintln!("soak: FAIL: no commit for 120 s at {p} commits (hang)");
            std::process::exit(2);
        }
        if report_at.elapsed() > Duration::from_secs(10) {
            report_at = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            println!("  {p} commits in {secs:.0} s ({:.0}/s)", p as f64 / secs);
        }
    }
    let mut total = Counts::default();
    let mut panicked = false;
    for h in handles {
        match h.join() {
            Ok(c) => total.add(&c),
            Err(_) => panicked = true,
        }
    }
    let elapsed = start.elapsed();
    let commits = total.leaf_commits + total.scope_commits + total.replugs;
    println!(
        "soak: {commits} commits ({} leaf, {} scope, {} replug) and {} checked snapshots in {:.2?}: {:.0} commits/s",
        total.leaf_commits,
        total.scope_commits,
        total.replugs,
        total.snapshots,
        elapsed,
        commits as f64 / elapsed.as_secs_f64()
    );
    let mut errors: Vec<String> = Vec::new();
    if panicked {
        errors.push("a thread panicked".into());
    }
    if let Some(f) = s.failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        errors.push(f);
    }
    // Exact accounting, in the root's snapshot and in each node's own.
    let t = &s.tree;
    let shot = t.root.snapshot();
    let mut check = |what: &str, n: &Node<u64>, want: u64| {
        let in_root = shot.get(n).copied().ok();
        let own = n.read();
        if in_root != Some(want) || own != want {
            errors.push(format!(
                "{what}: {want} increments committed, root's snapshot shows {in_root:?}, its own {own}"
            ));
        }
    };
    let increments = total.l.iter().sum::<u64>() + total.f.iter().sum::<u64>();
    for (i, l) in t.l.iter().enumerate() {
        check(&format!("l{i}"), l, total.l[i]);
    }
    for (i, f) in t.f.iter().enumerate() {
        check(&format!("f{i}"), f, total.f[i]);
    }
    check("total", &t.total, total.l.iter().sum());
    let mut last = vec![0; 1 + FREE];
    if let Err(e) = check_snapshot(t, &shot, true, &mut last) {
        errors.push(format!("final snapshot: {e}"));
    }
    let in_leaves: u64 =
        t.l.iter()
            .chain(&t.f)
            .map(|n| shot.get(n).copied().unwrap_or(0))
            .sum();
    println!("soak: sum of all leaves {in_leaves}, increments committed {increments}");
    if errors.is_empty() && in_leaves == increments {
        println!("soak: PASS");
    } else {
        for e in &errors {
            println!("soak: FAIL: {e}");
        }
        if errors.is_empty() {
            println!("soak: FAIL: leaves {in_leaves} != increments {increments}");
        }
        std::process::exit(1);
    }
}
