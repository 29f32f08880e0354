//! The sequential model: one value per node and one ordered child list per
//! node (a DAG: a node may have several parents), plus what a transaction
//! (or a snapshot) is expected to show of it.
//!
//! The model is node-centric: a node has exactly one value, whatever the
//! edges do. A write made in a transaction belongs to the node, so it
//! survives releasing and re-inserting the node in the same transaction,
//! and it is committed (or dropped) with the transaction.

use std::fmt;

/// Whether a node can be read in a view (snapshot or transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tri {
    Yes,
    No,
    /// Not pinned down by the API: which slot of a hard-linked node holds
    /// its packet is an implementation detail, so after releasing one of
    /// its edges inside a transaction the node may or may not still be
    /// readable *in that transaction*. The first observation decides.
    Maybe,
}

/// The committed state (or a transaction's working copy of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    pub vals: Vec<u64>,
    pub kids: Vec<Vec<usize>>,
    /// The chains built so far: first node, length.
    pub chains: Vec<(usize, usize)>,
}

impl World {
    pub fn add(&mut self, v: u64) -> usize {
        self.vals.push(v);
        self.kids.push(Vec::new());
        self.vals.len() - 1
    }

    pub fn len(&self) -> usize {
        self.vals.len()
    }

    /// Nodes reachable from `s` (itself included), following every edge.
    pub fn reach(&self, s: usize) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack = vec![s];
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut seen[n], true) {
                stack.extend(self.kids[n].iter().copied());
            }
        }
        seen
    }

    pub fn reaches(&self, from: usize, to: usize) -> bool {
        self.reach(from)[to]
    }

    /// Some node has several parents (a hard link).
    pub fn has_links(&self) -> bool {
        let mut parents = vec![0u32; self.len()];
        self.kids.iter().flatten().for_each(|&k| parents[k] += 1);
        parents.iter().any(|&n| n > 1)
    }

    /// The nodes of `s`'s subtree, in index order.
    pub fn subtree(&self, s: usize) -> Vec<usize> {
        let r = self.reach(s);
        (0..self.len()).filter(|&i| r[i]).collect()
    }

    /// Readability in a complete snapshot of `s`.
    pub fn readable(&self, s: usize) -> Vec<Tri> {
        self.reach(s)
            .into_iter()
            .map(|b| if b { Tri::Yes } else { Tri::No })
            .collect()
    }
}

/// The outcome of a dynamic operation, as the model predicts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    Ok,
    NotFound,
    NotAChild,
    AlreadyChild,
    Cycle,
    /// A variant the model does not know (`TreeError` is non-exhaustive).
    Other,
}

impl Out {
    pub fn of(r: &Result<(), kame_stm::TreeError>) -> Out {
        use kame_stm::TreeError as E;
        #[allow(unreachable_patterns)] // TreeError becomes #[non_exhaustive]
        match r {
            Ok(()) => Out::Ok,
            Err(E::NotFound(_)) => Out::NotFound,
            Err(E::NotAChild) => Out::NotAChild,
            Err(E::AlreadyChild) => Out::AlreadyChild,
            Err(E::Cycle) => Out::Cycle,
            Err(_) => Out::Other,
        }
    }
}

/// What a view (a snapshot, or a transaction's current version) must show.
#[derive(Clone, Debug)]
pub struct ViewModel {
    pub w: World,
    pub read: Vec<Tri>,
    /// Other acceptable values, for a node written by a nested commit
    /// after the transaction's snapshot (that attempt is doomed; a packet
    /// pulled in or moved later may carry any value the node had since).
    pub alt: Vec<Vec<u64>>,
}

impl ViewModel {
    /// A complete snapshot of `s` in `w`.
    pub fn snapshot(w: &World, s: usize) -> ViewModel {
        ViewModel {
            read: w.readable(s),
            alt: vec![Vec::new(); w.len()],
            w: w.clone(),
        }
    }

    fn value_ok(&self, n: usize, v: u64) -> bool {
        v == self.w.vals[n] || self.alt[n].contains(&v)
    }

    /// `n` was looked up and found (`true`) or not; checks it and settles a
    /// `Maybe`.
    pub fn observe(&mut self, n: usize, found: bool, what: &str) -> Result<(), String> {
        match (self.read[n], found) {
            (Tri::Yes, false) => Err(format!("{what}: node {n} not found, model has it")),
            (Tri::No, true) => Err(format!("{what}: node {n} found, model says NotFound")),
            (Tri::Maybe, f) => {
                self.read[n] = if f { Tri::Yes } else { Tri::No };
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn check_get(&mut self, n: usize, got: Option<u64>, what: &str) -> Result<(), String> {
        self.observe(n, got.is_some(), what)?;
        match got {
            Some(v) if !self.value_ok(n, v) => Err(format!(
                "{what}: node {n} = {v}, model {}{}",
                self.w.vals[n],
                if self.alt[n].is_empty() {
                    String::new()
                } else {
                    format!(" (or one of {:?})", self.alt[n])
                }
            )),
            _ => Ok(()),
        }
    }

    /// Child list of `n` as indices (`usize::MAX` for a node the test does
    /// not know).
    pub fn check_kids(
        &mut self,
        n: usize,
        got: Option<Vec<usize>>,
        what: &str,
    ) -> Result<(), String> {
        self.observe(n, got.is_some(), what)?;
        match got {
            Some(k) if k != self.w.kids[n] => Err(format!(
                "{what}: children of {n} = {}, model {}",
                Idx(&k),
                Idx(&self.w.kids[n])
            )),
            _ => Ok(()),
        }
    }

    /// A write of `+d` to `n` that succeeded (`ok`) or not.
    pub fn write(&mut self, n: usize, d: u64, ok: bool, what: &str) -> Result<(), String> {
        self.observe(n, ok, what)?;
        if ok {
            self.w.vals[n] = self.w.vals[n].wrapping_add(d);
            for a in &mut self.alt[n] {
                *a = a.wrapping_add(d);
            }
        }
        Ok(())
    }

    /// `Some(NotFound)` when the parent of a dynamic operation is not in
    /// the view (settling a `Maybe` from what the library answered).
    fn parent(&mut self, p: usize, actual: Out) -> Option<Out> {
        match self.read[p] {
            Tri::Yes => None,
            Tri::No => Some(Out::NotFound),
            Tri::Maybe if actual == Out::NotFound => {
                self.read[p] = Tri::No;
                Some(Out::NotFound)
            }
            Tri::Maybe => {
                self.read[p] = Tri::Yes;
                None
            }
        }
    }
}

/// A transaction's attempt, as the model sees it.
pub struct TxModel {
    pub s: usize,
    pub v: ViewModel,
}

impl TxModel {
    pub fn new(g: &World, s: usize) -> TxModel {
        TxModel {
            s,
            v: ViewModel::snapshot(g, s),
        }
    }

    fn mismatch(what: String, actual: Out, exp: Out) -> Result<(), String> {
        if actual == exp {
            Ok(())
        } else {
            Err(format!("{what}: library {actual:?}, model {exp:?}"))
        }
    }

    /// `insert` / `insert_online` of `c` under `p`.
    pub fn insert(&mut self, p: usize, c: usize, online: bool, actual: Out) -> Result<(), String> {
        let what = format!("tx.insert{}({p}, {c})", if online { "_online" } else { "" });
        let exp = if let Some(e) = self.v.parent(p, actual) {
            e
        } else if self.v.w.kids[p].contains(&c) {
            Out::AlreadyChild
        } else if self.v.w.reaches(c, p) {
            Out::Cycle
        } else {
            Out::Ok
        };
        Self::mismatch(what, actual, exp)?;
        if exp == Out::Ok {
            self.v.w.kids[p].push(c);
            // Already readable: it stays where it is, nothing is pulled.
            if online && self.v.read[c] != Tri::Yes {
                // What the pull brings in: the child's subtree, except below
                // nodes this view holds already (a hard link into the tree):
                // one node has one packet in a view, the one it has here, so
                // the pulled copy of such a node is void and what lies
                // below it is as this view has it.
                let mut below = vec![false; self.v.w.len()];
                let mut stack = vec![c];
                while let Some(n) = stack.pop() {
                    if std::mem::replace(&mut below[n], true) {
                        continue;
                    }
                    if n == c || self.v.read[n] != Tri::Yes {
                        stack.extend(self.v.w.kids[n].iter().copied());
                    }
                }
                let pulled = self.v.read[c] == Tri::No;
                for n in (0..below.len()).filter(|&n| below[n]) {
                    self.v.read[n] = match self.v.read[n] {
                        // Its state was pulled in with the whole subtree.
                        Tri::No | Tri::Maybe if pulled => Tri::Yes,
                        // Pulled in, or found where it already was.
                        Tri::No => Tri::Maybe,
                        r => r,
                    };
                }
                // The inserted node itself can be read right away.
                self.v.read[c] = Tri::Yes;
            }
        }
        Ok(())
    }

    pub fn release(&mut self, p: usize, c: usize, actual: Out) -> Result<(), String> {
        let what = format!("tx.release({p}, {c})");
        let exp = if let Some(e) = self.v.parent(p, actual) {
            e
        } else if !self.v.w.kids[p].contains(&c) {
            Out::NotAChild
        } else {
            Out::Ok
        };
        Self::mismatch(what, actual, exp)?;
        if exp == Out::Ok {
            let below = self.v.w.reach(c);
            let i = self.v.w.kids[p].iter().position(|&k| k == c).unwrap();
            self.v.w.kids[p].remove(i);
            let still = self.v.w.reach(self.s);
            for n in (0..below.len()).filter(|&n| below[n]) {
                if !still[n] {
                    self.v.read[n] = Tri::No;
                } else if self.v.read[n] == Tri::Yes {
                    // Still listed elsewhere; its packet may have left with
                    // the released slot (see `Tri::Maybe`).
                    self.v.read[n] = Tri::Maybe;
                }
            }
        }
        Ok(())
    }

    pub fn swap(&mut self, p: usize, a: usize, b: usize, actual: Out) -> Result<(), String> {
        let what = format!("tx.swap({p}, {a}, {b})");
        let kids = &self.v.w.kids[p];
        let (i, j) = (
            kids.iter().position(|&k| k == a),
            kids.iter().position(|&k| k == b),
        );
        let exp = if let Some(e) = self.v.parent(p, actual) {
            e
        } else if i.is_none() || j.is_none() {
            Out::NotAChild
        } else {
            Out::Ok
        };
        Self::mismatch(what, actual, exp)?;
        if let (Out::Ok, Some(i), Some(j)) = (exp, i, j) {
            self.v.w.kids[p].swap(i, j);
        }
        Ok(())
    }
}

/// Formats a list of node indices.
pub struct Idx<'a>(pub &'a [usize]);

impl fmt::Display for Idx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if *n == usize::MAX {
                f.write_str("?")?;
            } else {
                write!(f, "{n}")?;
            }
        }
        f.write_str("]")
    }
}
