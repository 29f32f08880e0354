//! The search: depth-first over schedules with replay, then the cycles.

use super::*;

// The search.

#[derive(Clone, Copy)]
struct Edge {
    to: u32,
    thread: u8,
    name: &'static str,
    completing: bool,
}

/// What an exploration found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) name: &'static str,
    pub(crate) states: usize,
    pub(crate) edges: usize,
    /// Longest shortest path from the initial state (TLC's "depth").
    pub(crate) depth: usize,
    pub(crate) terminal: usize,
    /// Replays (re-executions of a schedule prefix) the search needed.
    pub(crate) replays: usize,
    /// Non-trivial strongly connected components of non-completing steps.
    pub(crate) cycles: usize,
    /// Those of them that admit a fair run: livelocks.
    pub(crate) livelocks: usize,
    /// With an endless thread (`OpKind::Again`): components where another
    /// thread never completes (steps of endless threads may), that admit a
    /// fair run in which that thread has not finished: starvation.
    pub(crate) starvations: usize,
    /// The first livelock (else the first starvation) as a lasso of step
    /// names.
    pub(crate) lasso: Option<String>,
    /// Shared-memory operations per step function.
    #[cfg_attr(feature = "no-privilege", allow(dead_code))]
    pub(crate) ops: std::collections::BTreeMap<&'static str, StepOps>,
    /// How often each scheduling point (by name) was explored.
    #[cfg_attr(feature = "no-privilege", allow(dead_code))]
    pub(crate) steps: std::collections::BTreeMap<&'static str, u64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} distinct states, {} edges, depth {}, {} terminal, {} replays, \
             {} non-completing cycles (SCCs), {} fair (livelocks), {} starvations",
            self.name,
            self.states,
            self.edges,
            self.depth,
            self.terminal,
            self.replays,
            self.cycles,
            self.livelocks,
            self.starvations
        )
    }
}

/// Explores every schedule of `cfg`; panics on a violated invariant (with
/// the schedule that leads there) or when more than `limit` states exist.
pub(crate) fn explore(cfg: &Config, limit: usize) -> Report {
    explore_with(cfg, limit, false)
}

/// [`explore`], optionally with every shared-memory operation of a step
/// as a scheduling point of its own (`split`): the gate's tag load before
/// the step's slot operation, and each tag write after it
/// (`negotiation::split`). The spec merges all of them into one action;
/// split, the windows between them are explored.
pub(crate) fn explore_with(cfg: &Config, limit: usize, split: bool) -> Report {
    struct Frontier {
        schedule: Vec<u8>,
        id: u32,
        enabled: u8,
        next: u8,
    }
    let nthreads = cfg.programs.len() as u8;
    assert!(nthreads <= 8);
    let mut ids: HashMap<u128, u32> = HashMap::new();
    let mut edges: Vec<Vec<Edge>> = Vec::new();
    let mut enabled_of: Vec<u8> = Vec::new();
    // The step that discovered each state (for error traces).
    let mut pred: Vec<Option<(u32, u8, &'static str)>> = Vec::new();
    let mut terminal = 0usize;
    let mut replays = 0usize;
    let mut step_ops: std::collections::BTreeMap<&'static str, StepOps> = Default::default();
    let mut steps: std::collections::BTreeMap<&'static str, u64> = Default::default();

    let trace = |pred: &[Option<(u32, u8, &'static str)>], mut s: u32| {
        let mut steps = Vec::new();
        while let Some((p, t, name)) = pred[s as usize] {
            steps.push(format!("{} {name}", World::thread_name(t)));
            s = p;
        }
        steps.reverse();
        steps.join("\n  ")
    };

    let mut world = World::new(cfg, split);
    let mut at: Option<Vec<u8>> = Some(Vec::new());
    let init = world.canon();
    if let Err(e) = world.check_state() {
        panic!("{}: initial state: {e}", cfg.name);
    }
    ids.insert(init, 0);
    edges.push(Vec::new());
    let en = world.enabled();
    enabled_of.push(en);
    pred.push(None);
    let mut stack = vec![Frontier {
        schedule: Vec::new(),
        id: 0,
        enabled: en,
        next: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(t) = (top.next..nthreads).find(|&t| top.enabled & (1 << t) != 0) else {
            stack.pop();
            continue;
        };
        top.next = t + 1;
        if at.as_deref() != Some(&top.schedule[..]) {
            world = World::replay(cfg, split, &top.schedule);
            replays += 1;
        }
        let from = top.id;
        let mut schedule = top.schedule.clone();
        schedule.push(t);
        let info = match world.step(usize::from(t)) {
            Ok(i) => i,
            Err(e) => panic!(
                "{}: {e}\nafter:\n  {}\n  {} (next step)",
                cfg.name,
                trace(&pred, from),
                World::thread_name(t)
            ),
        };
        *steps.entry(info.name).or_default() += 1;
        if world.spoiled {
            // A dynamic body that would wait: a round of waiting that
            // changes nothing, from a world to be rebuilt.
            edges[from as usize].push(Edge {
                to: from,
                thread: t,
                name: info.name,
                completing: false,
            });
            at = None;
            continue;
        }
        if !matches!(
            info.name,
            "begin" | "wait" | "wait(blocked)" | "preempt_tag" | "can_proceed(gate load)"
        ) {
            step_ops
                .entry(info.name)
                .or_default()
                .add(&info.ops, world.last_soft);
        }
        let h = world.canon();
        let (to, new) = match ids.get(&h) {
            Some(&id) => (id, false),
            None => {
                let id = ids.len() as u32;
                ids.insert(h, id);
                edges.push(Vec::new());
                pred.push(Some((from, t, info.name)));
                (id, true)
            }
        };
        edges[from as usize].push(Edge {
            to,
            thread: t,
            name: info.name,
            completing: info.completed,
        });
        if !new {
            if to != from {
                at = None; // the world is past the frontier's state
            } // else: a round of `wait` that changed nothing
            continue;
        }
        assert!(ids.len() <= limit, "{}: more than {limit} states", cfg.name);
        if let Err(e) = world.check_state() {
            panic!("{}: {e}\nafter:\n  {}", cfg.name, trace(&pred, to));
        }
        let en = world.enabled();
        enabled_of.push(en);
        if en == 0 {
            // (A deadlock is not a dead end here: its blocked threads
            // loop in `wait`, a fair cycle of non-completing steps.)
            assert!(world.all_finished());
            terminal += 1;
            if let Err(e) = world.check_final() {
                panic!("{}: {e}\nafter:\n  {}", cfg.name, trace(&pred, to));
            }
            at = None; // the final check took a snapshot
            continue;
        }
        at = Some(schedule.clone());
        stack.push(Frontier {
            schedule,
            id: to,
            enabled: en,
            next: 0,
        });
    }

    let depth = bfs(&edges, 0, |_| true)
        .0
        .iter()
        .filter_map(|d| *d)
        .max()
        .unwrap_or(0);
    let sccs = sccs_without(&edges, |e| e.completing);
    let mut livelocks = 0;
    let mut lasso = None;
    for scc in &sccs {
        if fair(scc, &edges, &enabled_of, nthreads, |e| e.completing) {
            livelocks += 1;
            if lasso.is_none() {
                lasso = Some(print_lasso(scc, &edges, nthreads, |e| e.completing));
            }
        }
    }
    // Starvation: for each thread that finishes, a fair cycle in which it
    // has not finished and never completes, while endless threads do.
    let endless = |t: usize| config::endless(&cfg.programs[t]);
    let mut starvations = 0;
    if (0..cfg.programs.len()).any(endless) {
        for t in (0..nthreads).filter(|&t| !endless(usize::from(t))) {
            let skip = |e: &Edge| e.completing && e.thread == t;
            for scc in sccs_without(&edges, skip) {
                let unfinished = enabled_of[scc[0] as usize] & (1 << t) != 0;
                if unfinished && fair(&scc, &edges, &enabled_of, nthreads, skip) {
                    starvations += 1;
                    if lasso.is_none() {
                        lasso = Some(format!(
                            "  {} starves:\n{}",
                            World::thread_name(t),
                            print_lasso(&scc, &edges, nthreads, skip)
                        ));
                    }
                }
            }
        }
    }
    Report {
        name: cfg.name,
        states: ids.len(),
        edges: edges.iter().map(Vec::len).sum(),
        depth,
        terminal,
        replays,
        cycles: sccs.len(),
        livelocks,
        starvations,
        lasso,
        ops: step_ops,
        steps,
    }
}

/// Breadth-first distances and parents from `from`, following edges `ok` admits.
#[allow(clippy::type_complexity)]
fn bfs(
    edges: &[Vec<Edge>],
    from: u32,
    ok: impl Fn(&Edge) -> bool,
) -> (Vec<Option<usize>>, Vec<Option<(u32, Edge)>>) {
    let mut dist = vec![None; edges.len()];
    let mut parent = vec![None; edges.len()];
    dist[from as usize] = Some(0);
    let mut q = VecDeque::from([from]);
    while let Some(s) = q.pop_front() {
        let d = dist[s as usize].unwrap();
        for e in &edges[s as usize] {
            if ok(e) && dist[e.to as usize].is_none() {
                dist[e.to as usize] = Some(d + 1);
                parent[e.to as usize] = Some((s, *e));
                q.push_back(e.to);
            }
        }
    }
    (dist, parent)
}

/// Tarjan's algorithm (iterative) over the edges `skip` does not name
/// (the completing ones, for a livelock); returns the components that
/// contain a cycle.
fn sccs_without(edges: &[Vec<Edge>], skip: impl Fn(&Edge) -> bool) -> Vec<Vec<u32>> {
    let n = edges.len();
    let mut index = vec![u32::MAX; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut next_index = 0u32;
    let mut out = Vec::new();
    for root in 0..n as u32 {
        if index[root as usize] != u32::MAX {
            continue;
        }
        let mut call: Vec<(u32, usize)> = vec![(root, 0)];
        index[root as usize] = next_index;
        low[root as usize] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        while let Some(&mut (v, ref mut ei)) = call.last_mut() {
            let es = &edges[v as usize];
            if *ei < es.len() {
                let e = es[*ei];
                *ei += 1;
                if skip(&e) {
                    continue;
                }
                let w = e.to;
                if index[w as usize] == u32::MAX {
                    index[w as usize] = next_index;
                    low[w as usize] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w as usize] = true;
                    call.push((w, 0));
                } else if on_stack[w as usize] {
                    low[v as usize] = low[v as usize].min(index[w as usize]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u as usize] = low[u as usize].min(low[v as usize]);
            }
            if low[v as usize] == index[v as usize] {
                let mut comp = Vec::new();
                loop {
                    let w = stack.pop().unwrap();
                    on_stack[w as usize] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                let cyclic =
                    comp.len() > 1 || edges[v as usize].iter().any(|e| !skip(e) && e.to == v);
                if cyclic {
                    out.push(comp);
                }
            }
        }
    }
    out
}

fn in_scc(scc: &[u32], edges: &[Vec<Edge>]) -> Vec<bool> {
    let mut member = vec![false; edges.len()];
    for &s in scc {
        member[s as usize] = true;
    }
    member
}

/// Weak fairness per thread: a run that stays in `scc` forever, through
/// all of it, is fair iff every thread either moves inside it or is
/// disabled in one of its states.
fn fair(
    scc: &[u32],
    edges: &[Vec<Edge>],
    enabled: &[u8],
    nthreads: u8,
    skip: impl Fn(&Edge) -> bool,
) -> bool {
    let member = in_scc(scc, edges);
    (0..nthreads).all(|t| {
        scc.iter().any(|&s| {
            enabled[s as usize] & (1 << t) == 0
                || edges[s as usize]
                    .iter()
                    .any(|e| e.thread == t && !skip(e) && member[e.to as usize])
        })
    })
}

/// A lasso: the shortest path into `scc`, then a cycle through it that
/// gives every thread that moves in it a step.
fn print_lasso(
    scc: &[u32],
    edges: &[Vec<Edge>],
    nthreads: u8,
    skip: impl Fn(&Edge) -> bool,
) -> String {
    let member = in_scc(scc, edges);
    let (dist, parent) = bfs(edges, 0, |_| true);
    let entry = *scc
        .iter()
        .min_by_key(|&&s| dist[s as usize].unwrap_or(usize::MAX))
        .unwrap();
    let path = |parent: &[Option<(u32, Edge)>], from: u32, to: u32| {
        let mut steps = Vec::new();
        let mut s = to;
        while s != from {
            let (p, e) = parent[s as usize].expect("reachable");
            steps.push(e);
            s = p;
        }
        steps.reverse();
        steps
    };
    let fmt = |es: &[Edge]| {
        es.iter()
            .map(|e| format!("{} {}", World::thread_name(e.thread), e.name))
            .collect::<Vec<_>>()
    };
    let prefix = path(&parent, 0, entry);
    let mut cycle: Vec<Edge> = Vec::new();
    let mut cur = entry;
    let inside = |e: &Edge| !skip(e) && member[e.to as usize];
    for t in 0..nthreads {
        if cycle.iter().any(|e| e.thread == t) {
            continue;
        }
        // A state of the SCC where t moves inside it (if it never does, it
        // is disabled somewhere in it: the run may leave it waiting).
        let Some((s, e)) = scc.iter().find_map(|&s| {
            edges[s as usize]
                .iter()
                .find(|e| e.thread == t && inside(e))
                .map(|e| (s, *e))
        }) else {
            continue;
        };
        let (_, par) = bfs(edges, cur, |e| inside(e));
        cycle.extend(path(&par, cur, s));
        cycle.push(e);
        cur = e.to;
    }
    let (_, par) = bfs(edges, cur, |e| inside(e));
    cycle.extend(path(&par, cur, entry));
    let mut out = String::new();
    out.push_str("  prefix:\n");
    for s in fmt(&prefix) {
        out.push_str(&format!("    {s}\n"));
    }
    out.push_str(&format!(
        "  cycle ({} steps, repeats forever):\n",
        cycle.len()
    ));
    for s in fmt(&cycle) {
        out.push_str(&format!("    {s}\n"));
    }
    out
}
