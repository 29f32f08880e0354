//! An Elle-style list-append checker for histories of kame-stm transactions.
//!
//! Every node's payload is a list of tokens; every write appends a globally
//! unique token. Because a list shows its whole write history, each
//! observation names the exact version it saw, and the version order of a
//! node is its final list. From that the checker derives:
//!
//! * (a) **one version order per node**: every observed list is a prefix of
//!   the node's final list;
//! * (b) **no lost or phantom appends**: every committed token is in the
//!   final list of the node it was appended to, exactly once; no token of an
//!   uncommitted attempt (or of another node) appears anywhere;
//! * (c) **atomic read-then-append**: a transaction's appends to a node are
//!   contiguous in the final list and come right after the version it read;
//!   all its reads of one node show one version (plus its own appends);
//! * structure: the children a transaction or snapshot saw of a node are
//!   the initial children replayed with the structural operations (release,
//!   insert, swap) whose tokens are in the list it saw of that node: a
//!   structural change is one more append to the parent;
//! * (d) **serializability**: the graph of ww (token order), wr (writer of a
//!   version's last token → its readers) and rw (reader of a version → writer
//!   of the next token) edges over committed transactions and snapshots has
//!   no cycle. Snapshots are read-only transactions of the graph, so a torn
//!   snapshot is a cycle too. Then, with real-time edges (a transaction that
//!   ended before another started precedes it), **strict** serializability.
//!
//! A violation names the transactions and edges involved.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

/// A list token: unique across the whole history.
pub type Token = u64;
/// Index of a node in the history's node pool.
pub type NodeId = usize;

/// A structural change of a parent's child list (recorded with the token
/// appended to the parent in the same transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StructOp {
    /// `release(parent, child)`: the child leaves the list.
    Release(NodeId),
    /// `insert` / `insert_online(parent, child)`: the child is appended.
    Insert(NodeId),
    /// `swap(parent, a, b)`: the two children exchange positions.
    Swap(NodeId, NodeId),
}

/// One observation of a node: its list and (when looked at) its children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obs {
    /// The node.
    pub node: NodeId,
    /// The list seen.
    pub list: Vec<Token>,
    /// The children seen, in order (`None`: not looked at).
    pub children: Option<Vec<NodeId>>,
}

/// One append of a committed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The node appended to.
    pub node: NodeId,
    /// The token appended.
    pub token: Token,
    /// The structural change this append stands for, if any.
    pub op: Option<StructOp>,
}

/// A committed transaction (or, with no writes, a snapshot).
#[derive(Clone, Debug, Default)]
pub struct Txn {
    /// For reports: thread, scope, kind, attempt.
    pub label: String,
    /// Observations, in any order.
    pub obs: Vec<Obs>,
    /// Appends, in program order.
    pub writes: Vec<Write>,
    /// Logical clock readings before it started and after it returned
    /// (`None`: no real-time information).
    pub interval: Option<(u64, u64)>,
}

/// A whole history.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Number of nodes (ids `0..nodes`).
    pub nodes: usize,
    /// Children of every node before the first transaction (all lists are
    /// empty then).
    pub initial_children: Vec<Vec<NodeId>>,
    /// Committed transactions and snapshots.
    pub txns: Vec<Txn>,
    /// Tokens of attempts that did not commit (for reports; any token not
    /// committed is a violation where it appears).
    pub aborted: Vec<Token>,
    /// The final list and children of every node, after all threads joined.
    pub final_state: Vec<(Vec<Token>, Vec<NodeId>)>,
    /// Anomalies the recorder found on the spot (an unexpected error, a
    /// cycle accepted, a node listed but unreadable, ...).
    pub anomalies: Vec<String>,
}

/// What kind of rule a history broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// (a) an observed list is not a prefix of the final list.
    VersionOrder,
    /// (b) a committed token is missing from its node's final list.
    LostAppend,
    /// (b) a token appears twice in a list.
    Duplicate,
    /// (b) a token of no committed transaction (or of another node) appears.
    Phantom,
    /// (c) appends not contiguous / not right after the version read, or two
    /// reads of one node in one transaction disagree.
    NotAtomic,
    /// The children seen disagree with the structural operations in the list.
    Structure,
    /// (d) a cycle of ww / wr / rw edges: not serializable.
    Cycle,
    /// A cycle only with real-time edges: serializable, not strictly.
    RealTimeCycle,
    /// Found by the recorder while running.
    Anomaly,
}

/// One broken rule, with the evidence.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The rule.
    pub kind: Kind,
    /// The evidence.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.kind, self.detail)
    }
}

/// What a history that passed consisted of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Committed transactions (with at least one append or none: all
    /// transactions that are not pure snapshots).
    pub txns: usize,
    /// Snapshots (no writes).
    pub snapshots: usize,
    /// Committed tokens, each found exactly once where it belongs.
    pub tokens: usize,
    /// Node observations checked.
    pub observations: usize,
    /// Dependency edges (ww + wr + rw), real-time ones not counted.
    pub edges: usize,
}

impl std::ops::AddAssign for Summary {
    fn add_assign(&mut self, o: Summary) {
        self.txns += o.txns;
        self.snapshots += o.snapshots;
        self.tokens += o.tokens;
        self.observations += o.observations;
        self.edges += o.edges;
    }
}

/// Checker options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Also require strict serializability (real-time edges from intervals).
    pub realtime: bool,
    /// At most this many violations of one kind are reported.
    pub max_per_kind: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            realtime: true,
            max_per_kind: 8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeKind {
    Ww,
    Wr,
    Rw,
    Rt,
}

#[derive(Clone, Copy, Debug)]
struct Edge {
    to: usize,
    kind: EdgeKind,
    node: NodeId,
    /// ww: the two tokens; wr: the last token read; rw: the next token.
    tokens: (Token, Token),
}

struct Collector {
    out: Vec<Violation>,
    counts: HashMap<Kind, usize>,
    max: usize,
}

impl Collector {
    fn push(&mut self, kind: Kind, detail: impl FnOnce() -> String) {
        let c = self.counts.entry(kind).or_insert(0);
        *c += 1;
        if *c <= self.max {
            self.out.push(Violation {
                kind,
                detail: detail(),
            });
        }
    }

    fn finish(mut self) -> Vec<Violation> {
        for (kind, &c) in &self.counts {
            if c > self.max {
                self.out.push(Violation {
                    kind: *kind,
                    detail: format!("... {} more of this kind", c - self.max),
                });
            }
        }
        self.out
    }
}

/// Formats a token as `thread:counter` (the recorder puts the thread in
/// the high bits).
pub fn tok(t: Token) -> String {
    format!("{}:{}", t >> 40, t & ((1 << 40) - 1))
}

fn list_str(l: &[Token]) -> String {
    if l.len() <= 6 {
        format!(
            "[{}]",
            l.iter().map(|&t| tok(t)).collect::<Vec<_>>().join(", ")
        )
    } else {
        let tail: Vec<_> = l[l.len() - 3..].iter().map(|&t| tok(t)).collect();
        format!("[{} tokens ..., {}]", l.len(), tail.join(", "))
    }
}

/// Children of `init` after replaying `ops` in order; `Err` names the first
/// op that cannot apply.
pub fn replay(init: &[NodeId], ops: &[&StructOp]) -> Result<Vec<NodeId>, String> {
    let mut ch = init.to_vec();
    for (i, op) in ops.iter().enumerate() {
        match op {
            StructOp::Release(c) => match ch.iter().position(|x| x == c) {
                Some(p) => {
                    ch.remove(p);
                }
                None => return Err(format!("op #{i} {op:?}: not a child of {ch:?}")),
            },
            StructOp::Insert(c) => {
                if ch.contains(c) {
                    return Err(format!("op #{i} {op:?}: already a child in {ch:?}"));
                }
                ch.push(*c);
            }
            StructOp::Swap(a, b) => {
                match (
                    ch.iter().position(|x| x == a),
                    ch.iter().position(|x| x == b),
                ) {
                    (Some(i), Some(j)) => ch.swap(i, j),
                    _ => return Err(format!("op #{i} {op:?}: not both children of {ch:?}")),
                }
            }
        }
    }
    Ok(ch)
}

/// Checks a history; `Ok` with what it consisted of, or every violation.
pub fn check(h: &History, opts: Options) -> Result<Summary, Vec<Violation>> {
    let mut v = Collector {
        out: Vec::new(),
        counts: HashMap::new(),
        max: opts.max_per_kind,
    };
    for a in &h.anomalies {
        v.push(Kind::Anomaly, || a.clone());
    }
    let n = h.nodes;
    assert_eq!(h.final_state.len(), n, "final state of every node");
    assert_eq!(
        h.initial_children.len(),
        n,
        "initial children of every node"
    );
    let aborted: HashSet<Token> = h.aborted.iter().copied().collect();
    let label = |i: usize| format!("T{i} <{}>", h.txns[i].label);

    // Committed tokens: token -> (txn, node, op).
    let mut writer: HashMap<Token, (usize, NodeId)> = HashMap::new();
    let mut ops: HashMap<Token, &StructOp> = HashMap::new();
    for (i, t) in h.txns.iter().enumerate() {
        for w in &t.writes {
            if let Some((j, _)) = writer.insert(w.token, (i, w.node)) {
                v.push(Kind::Duplicate, || {
                    format!(
                        "token {} recorded as written by {} and {}",
                        tok(w.token),
                        label(j),
                        label(i)
                    )
                });
            }
            if let Some(op) = &w.op {
                ops.insert(w.token, op);
            }
        }
    }

    // (b) Final lists: positions, phantoms, duplicates, lost appends.
    let finals: Vec<&Vec<Token>> = h.final_state.iter().map(|(l, _)| l).collect();
    let mut pos: Vec<HashMap<Token, usize>> = vec![HashMap::new(); n];
    for (node, list) in finals.iter().enumerate() {
        for (i, &t) in list.iter().enumerate() {
            if pos[node].insert(t, i).is_some() {
                v.push(Kind::Duplicate, || {
                    format!("token {} twice in the final list of node {node}", tok(t))
                });
            }
        }
    }
    let phantom = |t: Token, node: NodeId| -> Option<String> {
        match writer.get(&t) {
            Some(&(_, m)) if m == node => None,
            Some(&(i, m)) => Some(format!(
                "token {} of node {m} (written by {}) appears in node {node}",
                tok(t),
                label(i)
            )),
            None if aborted.contains(&t) => Some(format!(
                "token {} of an attempt that did not commit appears in node {node}",
                tok(t)
            )),
            None => Some(format!("unknown token {} appears in node {node}", tok(t))),
        }
    };
    for (node, list) in finals.iter().enumerate() {
        for &t in list.iter() {
            if let Some(msg) = phantom(t, node) {
                v.push(Kind::Phantom, || format!("{msg} (final list)"));
            }
        }
    }
    let mut tokens = 0;
    for (i, t) in h.txns.iter().enumerate() {
        for w in &t.writes {
            if pos[w.node].contains_key(&w.token) {
                tokens += 1;
            } else {
                v.push(Kind::LostAppend, || {
                    format!(
                        "token {} appended to node {} by {} is not in its final list {}",
                        tok(w.token),
                        w.node,
                        label(i),
                        list_str(finals[w.node])
                    )
                });
            }
        }
    }

    // Observations: (a) prefixes, structure, and each txn's pre-read version.
    // reads[i]: node -> length of the version txn i read (before its own appends).
    let mut reads: Vec<HashMap<NodeId, usize>> = vec![HashMap::new(); h.txns.len()];
    let mut observations = 0;
    // prefix_children[n][len]: node n's children after the structural ops
    // of the first `len` tokens of its final list.
    let prefix_children: Vec<Vec<Result<Vec<NodeId>, String>>> = finals
        .iter()
        .enumerate()
        .map(|(node, f)| {
            let mut cur: Result<Vec<NodeId>, String> = Ok(h.initial_children[node].clone());
            let mut out = Vec::with_capacity(f.len() + 1);
            out.push(cur.clone());
            for t in f.iter() {
                if let (Some(op), Ok(ch)) = (ops.get(t), &cur) {
                    cur = replay(ch, &[*op]);
                }
                out.push(cur.clone());
            }
            out
        })
        .collect();
    let all_obs = h
        .txns
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.obs.iter().map(move |o| (Some(i), o)));
    let final_obs: Vec<Obs> = h
        .final_state
        .iter()
        .enumerate()
        .map(|(node, (l, c))| Obs {
            node,
            list: l.clone(),
            children: Some(c.clone()),
        })
        .collect();
    for (who, o) in all_obs.chain(final_obs.iter().map(|o| (None, o))) {
        observations += 1;
        let who_s = || who.map_or_else(|| "the final state".to_string(), label);
        let f = finals[o.node];
        let is_prefix = o.list.len() <= f.len() && f[..o.list.len()] == o.list[..];
        if !is_prefix {
            let at = o
                .list
                .iter()
                .zip(f.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(f.len());
            v.push(Kind::VersionOrder, || {
                format!(
                    "{} saw node {} as {} (length {}), not a prefix of its final list {}: \
                     differs at index {at}",
                    who_s(),
                    o.node,
                    list_str(&o.list),
                    o.list.len(),
                    list_str(f)
                )
            });
            for &t in &o.list {
                if let Some(msg) = phantom(t, o.node) {
                    v.push(Kind::Phantom, || format!("{msg} (seen by {})", who_s()));
                }
            }
        }
        // A version outside the version order names no place in it: no
        // edges from it (it is reported above).
        let place = is_prefix;
        if let Some(seen) = &o.children {
            // A prefix of the final list: its children were replayed once
            // for every length; otherwise replay this list.
            let replayed;
            let expect = if is_prefix {
                &prefix_children[o.node][o.list.len()]
            } else {
                let sops: Vec<&StructOp> =
                    o.list.iter().filter_map(|t| ops.get(t).copied()).collect();
                replayed = replay(&h.initial_children[o.node], &sops);
                &replayed
            };
            match expect {
                Ok(expect) if expect == seen => {}
                Ok(expect) => v.push(Kind::Structure, || {
                    format!(
                        "{} saw children {seen:?} of node {} whose list {} says {expect:?}",
                        who_s(),
                        o.node,
                        list_str(&o.list)
                    )
                }),
                Err(e) => v.push(Kind::Structure, || {
                    format!(
                        "{} saw node {} as {}: replaying its structural ops fails: {e}",
                        who_s(),
                        o.node,
                        list_str(&o.list)
                    )
                }),
            }
        }
        let Some(i) = who else { continue };
        if !place {
            continue;
        }
        // (c) strip this txn's own appends (they must be at the end, in order).
        let own: Vec<Token> = h.txns[i]
            .writes
            .iter()
            .filter(|w| w.node == o.node)
            .map(|w| w.token)
            .collect();
        let k = o.list.iter().filter(|t| own.contains(t)).count();
        let base = o.list.len() - k;
        if o.list[base..] != own[..k] {
            v.push(Kind::NotAtomic, || {
                format!(
                    "{} saw node {} as {}: its own appends {} are not at the end, in order",
                    label(i),
                    o.node,
                    list_str(&o.list),
                    list_str(&own)
                )
            });
            continue;
        }
        match reads[i].insert(o.node, base) {
            Some(b) if b != base => v.push(Kind::NotAtomic, || {
                format!(
                    "{} read two versions of node {}: lengths {b} and {base} ({})",
                    label(i),
                    o.node,
                    list_str(&o.list)
                )
            }),
            _ => {}
        }
    }

    // (c) own appends contiguous, right after the version read.
    for (i, t) in h.txns.iter().enumerate() {
        let mut by_node: HashMap<NodeId, Vec<Token>> = HashMap::new();
        for w in &t.writes {
            by_node.entry(w.node).or_default().push(w.token);
        }
        for (node, toks) in by_node {
            let Some(&p0) = pos[node].get(&toks[0]) else {
                continue; // lost, reported
            };
            let contiguous = toks
                .iter()
                .enumerate()
                .all(|(j, t)| pos[node].get(t) == Some(&(p0 + j)));
            if !contiguous {
                v.push(Kind::NotAtomic, || {
                    format!(
                        "{}'s appends {} to node {node} are not contiguous in its final list {}",
                        label(i),
                        list_str(&toks),
                        list_str(finals[node])
                    )
                });
            }
            if let Some(&r) = reads[i].get(&node) {
                if r != p0 {
                    let between: Vec<Token> = finals[node]
                        .get(r.min(p0)..r.max(p0))
                        .unwrap_or(&[])
                        .to_vec();
                    v.push(Kind::NotAtomic, || {
                        format!(
                            "{} read node {node} at length {r} but its first append {} landed at \
                             index {p0} (tokens in between: {}; lost update)",
                            label(i),
                            tok(toks[0]),
                            list_str(&between)
                        )
                    });
                }
            }
        }
    }

    // (d) dependency graph.
    let m = h.txns.len();
    let mut adj: Vec<Vec<Edge>> = vec![Vec::new(); m];
    let mut edges = 0;
    let wtx = |t: &Token| writer.get(t).map(|&(i, _)| i);
    for (node, f) in finals.iter().enumerate() {
        for pair in f.windows(2) {
            if let (Some(a), Some(b)) = (wtx(&pair[0]), wtx(&pair[1])) {
                if a != b {
                    adj[a].push(Edge {
                        to: b,
                        kind: EdgeKind::Ww,
                        node,
                        tokens: (pair[0], pair[1]),
                    });
                    edges += 1;
                }
            }
        }
    }
    for (i, r) in reads.iter().enumerate() {
        for (&node, &len) in r {
            let f = finals[node];
            if len > f.len() {
                continue; // not a prefix, reported
            }
            if len > 0 {
                if let Some(w) = wtx(&f[len - 1]) {
                    if w != i {
                        adj[w].push(Edge {
                            to: i,
                            kind: EdgeKind::Wr,
                            node,
                            tokens: (f[len - 1], f[len - 1]),
                        });
                        edges += 1;
                    }
                }
            }
            if len < f.len() {
                if let Some(w) = wtx(&f[len]) {
                    if w != i {
                        adj[i].push(Edge {
                            to: w,
                            kind: EdgeKind::Rw,
                            node,
                            tokens: (f[len], f[len]),
                        });
                        edges += 1;
                    }
                }
            }
        }
    }
    let describe = |cycle: &[(usize, Edge)], nodes: usize| -> String {
        let mut s = String::new();
        for (from, e) in cycle {
            let to = if e.to < nodes {
                label(e.to)
            } else {
                "(later)".into()
            };
            let why = match e.kind {
                EdgeKind::Ww => format!(
                    "ww node {}: {} then {}",
                    e.node,
                    tok(e.tokens.0),
                    tok(e.tokens.1)
                ),
                EdgeKind::Wr => format!("wr node {}: read up to {}", e.node, tok(e.tokens.0)),
                EdgeKind::Rw => format!(
                    "rw node {}: read the version before {}",
                    e.node,
                    tok(e.tokens.0)
                ),
                EdgeKind::Rt => "rt: ended before the next started".into(),
            };
            if *from < nodes {
                s.push_str(&format!("\n    {} --{}--> {}", label(*from), why, to));
            }
        }
        s
    };
    if let Some(c) = find_cycle(&adj) {
        v.push(Kind::Cycle, || {
            format!(
                "not serializable: dependency cycle of {} transactions:{}",
                c.len(),
                describe(&c, m)
            )
        });
    } else if opts.realtime {
        // Real-time edges through a chain of barrier vertices, one per
        // "end" event: T -> B(end T); B(k) -> B(k+1); B(last end before
        // start U) -> U. Then T reaches U iff end(T) < start(U).
        let mut ends: Vec<(u64, usize)> = h
            .txns
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.interval.map(|(_, e)| (e, i)))
            .collect();
        ends.sort_unstable();
        let mut g = adj.clone();
        g.resize(m + ends.len(), Vec::new());
        let rt = |to| Edge {
            to,
            kind: EdgeKind::Rt,
            node: 0,
            tokens: (0, 0),
        };
        for (k, &(_, i)) in ends.iter().enumerate() {
            g[i].push(rt(m + k));
            if k + 1 < ends.len() {
                g[m + k].push(rt(m + k + 1));
            }
        }
        for (u, t) in h.txns.iter().enumerate() {
            if let Some((s, _)) = t.interval {
                let k = ends.partition_point(|&(e, _)| e < s);
                if k > 0 {
                    g[m + k - 1].push(rt(u));
                }
            }
        }
        if let Some(c) = find_cycle(&g) {
            // Collapse barrier runs into one rt edge for the report.
            let mut collapsed: Vec<(usize, Edge)> = Vec::new();
            for (from, e) in c {
                if from >= m {
                    if let Some(last) = collapsed.last_mut() {
                        last.1.to = e.to;
                    }
                    continue;
                }
                collapsed.push((from, e));
            }
            v.push(Kind::RealTimeCycle, || {
                format!(
                    "serializable but not strictly: with real-time order a cycle of {} \
                     transactions:{}",
                    collapsed.len(),
                    describe(&collapsed, m)
                )
            });
        }
    }

    let out = v.finish();
    if out.is_empty() {
        let snapshots = h.txns.iter().filter(|t| t.writes.is_empty()).count();
        Ok(Summary {
            txns: h.txns.len() - snapshots,
            snapshots,
            tokens,
            observations,
            edges,
        })
    } else {
        Err(out)
    }
}

/// A shortest cycle through some vertex of the first non-trivial strongly
/// connected component, as (from, edge) pairs; `None` if acyclic.
fn find_cycle(adj: &[Vec<Edge>]) -> Option<Vec<(usize, Edge)>> {
    let comp = tarjan(adj);
    let mut size: HashMap<usize, usize> = HashMap::new();
    for &c in &comp {
        *size.entry(c).or_insert(0) += 1;
    }
    let start = (0..adj.len()).find(|&u| size[&comp[u]] > 1)?;
    let c = comp[start];
    // BFS from start back to start inside the component.
    let mut prev: HashMap<usize, (usize, Edge)> = HashMap::new();
    let mut q = VecDeque::from([start]);
    while let Some(u) = q.pop_front() {
        for e in &adj[u] {
            if comp[e.to] != c {
                continue;
            }
            if e.to == start {
                let mut path = vec![(u, *e)];
                let mut x = u;
                while x != start {
                    let (p, pe) = prev[&x];
                    path.push((p, pe));
                    x = p;
                }
                path.reverse();
                return Some(path);
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = prev.entry(e.to) {
                slot.insert((u, *e));
                q.push_back(e.to);
            }
        }
    }
    unreachable!("a vertex of a non-trivial SCC lies on a cycle")
}

/// Iterative Tarjan: the component id of every vertex.
fn tarjan(adj: &[Vec<Edge>]) -> Vec<usize> {
    let n = adj.len();
    const NONE: usize = usize::MAX;
    let mut index = vec![NONE; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut comp = vec![NONE; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut ncomp = 0;
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on[root] = true;
        while let Some(&mut (u, ref mut ei)) = call.last_mut() {
            if *ei < adj[u].len() {
                let w = adj[u][*ei].to;
                *ei += 1;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    call.push((w, 0));
                } else if on[w] {
                    low[u] = low[u].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(p, _)) = call.last() {
                    low[p] = low[p].min(low[u]);
                }
                if low[u] == index[u] {
                    loop {
                        let w = stack.pop().expect("on stack");
                        on[w] = false;
                        comp[w] = ncomp;
                        if w == u {
                            break;
                        }
                    }
                    ncomp += 1;
                }
            }
        }
    }
    comp
}

#[cfg(test)]
mod tests {
    //! The checker must be able to fail: hand-built histories with one
    //! known defect each are rejected with the right kind; correct ones pass.

    use super::*;

    const A: Token = (1 << 40) | 1;
    const B: Token = (2 << 40) | 1;
    const C: Token = (3 << 40) | 1;
    const D: Token = (1 << 40) | 2;

    fn obs(node: NodeId, list: &[Token]) -> Obs {
        Obs {
            node,
            list: list.to_vec(),
            children: None,
        }
    }
    fn app(node: NodeId, token: Token) -> Write {
        Write {
            node,
            token,
            op: None,
        }
    }
    fn txn(label: &str, obs: Vec<Obs>, writes: Vec<Write>, interval: (u64, u64)) -> Txn {
        Txn {
            label: label.into(),
            obs,
            writes,
            interval: Some(interval),
        }
    }
    /// Two unrelated leaf nodes 0 and 1.
    fn hist(txns: Vec<Txn>, finals: [&[Token]; 2]) -> History {
        History {
            nodes: 2,
            initial_children: vec![vec![], vec![]],
            txns,
            aborted: vec![],
            final_state: finals.iter().map(|l| (l.to_vec(), vec![])).collect(),
            anomalies: vec![],
        }
    }
    fn kinds(r: Result<Summary, Vec<Violation>>) -> Vec<Kind> {
        match r {
            Ok(_) => vec![],
            Err(v) => {
                for x in &v {
                    eprintln!("{x}");
                }
                v.iter().map(|x| x.kind).collect()
            }
        }
    }

    #[test]
    fn correct_history_is_accepted() {
        let h = hist(
            vec![
                txn(
                    "w a",
                    vec![obs(0, &[]), obs(0, &[A])],
                    vec![app(0, A)],
                    (0, 1),
                ),
                txn("r0 w b", vec![obs(0, &[A])], vec![app(1, B)], (2, 3)),
                txn("snap", vec![obs(0, &[A]), obs(1, &[B])], vec![], (4, 5)),
                txn(
                    "w c d",
                    vec![obs(0, &[A])],
                    vec![app(0, C), app(0, D)],
                    (4, 7),
                ),
                txn(
                    "snap2",
                    vec![obs(0, &[A, C, D]), obs(1, &[B])],
                    vec![],
                    (8, 9),
                ),
            ],
            [&[A, C, D], &[B]],
        );
        let s = check(&h, Options::default()).expect("a correct history");
        assert_eq!(
            (s.txns, s.snapshots, s.tokens, s.observations),
            (3, 2, 4, 10)
        );
        assert!(s.edges > 0);
    }

    #[test]
    fn lost_append_is_rejected() {
        // Both read the empty list and appended; only b survived.
        let h = hist(
            vec![
                txn("a", vec![obs(0, &[])], vec![app(0, A)], (0, 3)),
                txn("b", vec![obs(0, &[])], vec![app(0, B)], (1, 2)),
            ],
            [&[B], &[]],
        );
        assert!(kinds(check(&h, Options::default())).contains(&Kind::LostAppend));
    }

    #[test]
    fn lost_update_with_both_tokens_is_rejected() {
        // Both tokens survive, but b's read of [] is stale: read-then-append
        // was not atomic, and rw(b -> a) + ww(a -> b) is a cycle.
        let h = hist(
            vec![
                txn("a", vec![obs(0, &[])], vec![app(0, A)], (0, 3)),
                txn("b", vec![obs(0, &[])], vec![app(0, B)], (1, 2)),
            ],
            [&[A, B], &[]],
        );
        let k = kinds(check(&h, Options::default()));
        assert!(k.contains(&Kind::NotAtomic) && k.contains(&Kind::Cycle));
    }

    #[test]
    fn torn_snapshot_is_rejected() {
        // a and b were appended together; the snapshot saw only one of them.
        let h = hist(
            vec![
                txn("ab", vec![], vec![app(0, A), app(1, B)], (0, 3)),
                txn("snap", vec![obs(0, &[A]), obs(1, &[])], vec![], (1, 2)),
            ],
            [&[A], &[B]],
        );
        assert_eq!(kinds(check(&h, Options::default())), vec![Kind::Cycle]);
    }

    #[test]
    fn stale_reads_rw_cycle_is_rejected() {
        // Write skew: each read the other's node before the other's append.
        let h = hist(
            vec![
                txn("x", vec![obs(0, &[])], vec![app(1, A)], (0, 3)),
                txn("y", vec![obs(1, &[])], vec![app(0, B)], (1, 2)),
            ],
            [&[B], &[A]],
        );
        assert_eq!(kinds(check(&h, Options::default())), vec![Kind::Cycle]);
    }

    #[test]
    fn stale_snapshot_after_commit_is_only_not_strict() {
        // The snapshot started after a committed, yet saw the empty list:
        // serializable (snapshot first), not strictly serializable.
        let h = hist(
            vec![
                txn("a", vec![], vec![app(0, A)], (0, 1)),
                txn("snap", vec![obs(0, &[])], vec![], (2, 3)),
            ],
            [&[A], &[]],
        );
        let plain = Options {
            realtime: false,
            ..Options::default()
        };
        assert!(check(&h, plain).is_ok());
        assert_eq!(
            kinds(check(&h, Options::default())),
            vec![Kind::RealTimeCycle]
        );
    }

    #[test]
    fn uncommitted_token_is_rejected() {
        let mut h = hist(
            vec![txn("a", vec![], vec![app(0, A)], (0, 1))],
            [&[A, B], &[]],
        );
        h.aborted.push(B);
        assert!(kinds(check(&h, Options::default())).contains(&Kind::Phantom));
        // Seen in a snapshot but gone from the final list: also a violation.
        let mut h = hist(
            vec![
                txn("a", vec![], vec![app(0, A)], (0, 1)),
                txn("snap", vec![obs(0, &[A, B])], vec![], (2, 3)),
            ],
            [&[A], &[]],
        );
        h.aborted.push(B);
        let k = kinds(check(&h, Options::default()));
        assert!(k.contains(&Kind::VersionOrder) && k.contains(&Kind::Phantom));
    }

    #[test]
    fn divergent_versions_are_rejected() {
        let h = hist(
            vec![
                txn("a", vec![], vec![app(0, A)], (0, 1)),
                txn("b", vec![], vec![app(0, B)], (0, 1)),
                txn("snap", vec![obs(0, &[B])], vec![], (2, 3)),
            ],
            [&[A, B], &[]],
        );
        assert!(kinds(check(&h, Options::default())).contains(&Kind::VersionOrder));
    }

    #[test]
    fn interleaved_appends_are_rejected() {
        let h = hist(
            vec![
                txn("a d", vec![], vec![app(0, A), app(0, D)], (0, 3)),
                txn("b", vec![], vec![app(0, B)], (1, 2)),
            ],
            [&[A, B, D], &[]],
        );
        let k = kinds(check(&h, Options::default()));
        assert!(k.contains(&Kind::NotAtomic) && k.contains(&Kind::Cycle));
    }

    #[test]
    fn two_versions_in_one_transaction_are_rejected() {
        let h = hist(
            vec![
                txn("a", vec![], vec![app(0, A)], (0, 1)),
                txn("r", vec![obs(0, &[]), obs(0, &[A])], vec![], (0, 3)),
            ],
            [&[A], &[]],
        );
        assert!(kinds(check(&h, Options::default())).contains(&Kind::NotAtomic));
    }

    #[test]
    fn lost_structural_change_is_rejected() {
        // Node 0 is a parent of 1 and 2; a committed release of 1 appended
        // token a to node 0, yet the final children still list 1.
        let release = Write {
            node: 0,
            token: A,
            op: Some(StructOp::Release(1)),
        };
        let h = History {
            nodes: 3,
            initial_children: vec![vec![1, 2], vec![], vec![]],
            txns: vec![txn("rel", vec![], vec![release.clone()], (0, 1))],
            aborted: vec![],
            final_state: vec![(vec![A], vec![1, 2]), (vec![], vec![]), (vec![], vec![])],
            anomalies: vec![],
        };
        assert_eq!(kinds(check(&h, Options::default())), vec![Kind::Structure]);
        // The same history with the release applied passes.
        let mut ok = h.clone();
        ok.final_state[0].1 = vec![2];
        assert!(check(&ok, Options::default()).is_ok());
        // A replay that cannot apply (releasing twice) is also caught.
        let mut twice = ok.clone();
        twice.txns.push(txn(
            "rel again",
            vec![],
            vec![Write {
                node: 0,
                token: B,
                op: Some(StructOp::Release(1)),
            }],
            (2, 3),
        ));
        twice.final_state[0].0 = vec![A, B];
        assert!(kinds(check(&twice, Options::default())).contains(&Kind::Structure));
    }

    #[test]
    fn recorder_anomalies_are_violations() {
        let mut h = hist(vec![], [&[], &[]]);
        h.anomalies.push("cycle accepted".into());
        assert_eq!(kinds(check(&h, Options::default())), vec![Kind::Anomaly]);
    }
}
