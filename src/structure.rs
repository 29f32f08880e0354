//! Keeping the tree acyclic: the cycle check of `insert`, tied to the
//! commit that performs the insert.
//!
//! An insert of `child` under `parent` creates a cycle exactly when
//! `parent` is reachable from `child`. Where the edges come from decides
//! how the check is made atomic with the commit:
//!
//! * Edges inside the transaction's tree are the transaction's own working
//!   version. The commit's CAS on the transaction root succeeds only if
//!   that tree is unchanged since the snapshot (every change below the
//!   root goes through the root: an unbundle marks it missing), so a check
//!   made on the working version still holds at the commit.
//! * Edges outside it (the inserted child's subtree, when the child is not
//!   in the transaction's tree yet) are read from the current state, and
//!   nothing ties them to the transaction's commit. So every transaction
//!   that inserts such an *external* child runs its final commit under one
//!   process-wide lock ([`commit_locked`]) and checks its inserts again
//!   under it, against the current state, right before its commit CAS.
//!   Two external inserts are thereby serialised: the second one sees the
//!   first one's edge. An insert whose child is already in the inserting
//!   transaction's tree cannot close a cycle through nodes outside it (a
//!   tree is closed under children), so it needs no lock.
//!
//! The lock is held only while the commit steps run, never while a closure
//! runs or while the commit waits on a priority tag (it is released for the
//! wait and the check is repeated after it), so it cannot deadlock with the
//! negotiation. External inserts are rare (plugging a subtree in); all
//! other commits never touch the lock. See `docs/architecture.md`, "Cycles".

use crate::linkage::Linkage;
use crate::negotiation::Negotiator;
use crate::packet::Packet;
use crate::protocol::{
    Frame, Operation, Outcome, Step, UnbundleFrame, UnbundleMode, UnbundleResult,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// One insert a transaction attempt made, for the check at commit.
pub(crate) struct PendingInsert {
    pub(crate) parent: Arc<Linkage>,
    pub(crate) child: Arc<Linkage>,
    /// The child was not in the transaction's tree: its subtree's edges
    /// are outside what the commit validates.
    pub(crate) external: bool,
}

/// Serialises the commits of transactions that insert external children.
static STRUCTURE: Mutex<()> = Mutex::new(());

/// Whether `to` is `from` or below it. Child lists come from the working
/// version `working` of the tree rooted at `root` for the nodes whose
/// packet it holds, and from the current state for the others: a complete
/// packet read there is a consistent version of that node's whole subtree,
/// so it is walked as it is (linear in its size); an incomplete one only
/// gives the node's own list, and each child is read again. `released`:
/// subtrees the transaction released, with their packets as released (the
/// state they have once it commits, with its own edges in them); they
/// count after the working version and before the current state.
pub(crate) fn reaches(
    root: &Linkage,
    working: &Arc<Packet>,
    released: &[(Arc<Linkage>, Arc<Packet>)],
    from: &Arc<Linkage>,
    to: &Linkage,
) -> bool {
    Reach::new(root, working, released).reaches(from, to)
}

/// Walks (`packet::find`) after which a check of many inserts against one
/// working version maps that version once instead: hashing a node costs
/// about as much as walking past it this many times.
const MAP_AFTER_WALKS: usize = 16;

/// The cycle check of one working version (`reaches`), for one insert or
/// for all of a commit's: the map of the nodes whose packets the working
/// version and the released subtrees hold is built once, when a node has
/// edges there or after `MAP_AFTER_WALKS` nodes had none (a transaction
/// inserting n fresh children checked each with a walk of the whole
/// tree, O(n²) at its commit).
pub(crate) struct Reach<'a> {
    root: &'a Linkage,
    working: &'a Arc<Packet>,
    released: &'a [(Arc<Linkage>, Arc<Packet>)],
    /// Nodes whose packet the working version holds (it wins over anything
    /// read from the current state: it has this transaction's own edges).
    local: Option<HashMap<*const Linkage, Arc<Packet>>>,
    walks: usize,
}

impl<'a> Reach<'a> {
    pub(crate) fn new(
        root: &'a Linkage,
        working: &'a Arc<Packet>,
        released: &'a [(Arc<Linkage>, Arc<Packet>)],
    ) -> Self {
        Reach {
            root,
            working,
            released,
            local: None,
            walks: 0,
        }
    }

    /// Whether `to` is `from` or below it (see the free function).
    pub(crate) fn reaches(&mut self, from: &Arc<Linkage>, to: &Linkage) -> bool {
        if std::ptr::eq(&**from, to) {
            return true;
        }
        if self.walks >= MAP_AFTER_WALKS {
            self.mapped();
        }
        if self.edgeless(from) {
            return false;
        }
        walk_from(self.mapped(), from, to)
    }

    /// The map, built on first use.
    fn mapped(&mut self) -> &HashMap<*const Linkage, Arc<Packet>> {
        if self.local.is_none() {
            self.local = Some(self.map());
        }
        self.local.as_ref().expect("built above")
    }

    /// Whether `from` has no edges for the check: no packet in the working
    /// version or in a released subtree, and a leaf with priority in the
    /// current state (a fresh node: what nearly every insert inserts). The
    /// walk would read exactly that and stop; this spares it the map of
    /// the whole working tree, which made inserting n children one by one
    /// cost O(n) hashing each.
    fn edgeless(&mut self, from: &Arc<Linkage>) -> bool {
        let absent = match &self.local {
            Some(local) => !local.contains_key(&Arc::as_ptr(from)),
            None => {
                self.walks += 1;
                crate::packet::find(self.root, self.working, from).is_none()
                    && self
                        .released
                        .iter()
                        .all(|(l, p)| crate::packet::find(l, p, from).is_none())
            }
        };
        absent && {
            let w = from.load();
            w.has_priority() && w.own_packet().children.is_none()
        }
    }

    /// Every node with a packet in the working version or a released
    /// subtree, the first such packet (as `packet::find` finds it first).
    fn map(&self) -> HashMap<*const Linkage, Arc<Packet>> {
        let mut local: HashMap<*const Linkage, Arc<Packet>> = HashMap::new();
        let roots = std::iter::once((self.root as *const Linkage, self.working))
            .chain(self.released.iter().map(|(l, p)| (Arc::as_ptr(l), p)));
        for (link, top) in roots {
            if local.contains_key(&link) {
                continue;
            }
            local.insert(link, top.clone());
            let mut walk: Vec<&Arc<Packet>> = vec![top];
            while let Some(p) = walk.pop() {
                if let Some(ch) = p.children.as_ref() {
                    for (n, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
                        if let Some(sp) = slot {
                            local.entry(Arc::as_ptr(n)).or_insert_with(|| sp.clone());
                            walk.push(sp);
                        }
                    }
                }
            }
        }
        local
    }
}

/// The walk of `reaches` from `from`, with the working version's packets
/// `local`: child lists from there where it has them, from the current
/// state elsewhere.
fn walk_from(
    local: &HashMap<*const Linkage, Arc<Packet>>,
    from: &Arc<Linkage>,
    to: &Linkage,
) -> bool {
    enum Item {
        /// A node whose list must be looked up.
        Node(Arc<Linkage>),
        /// A node with a packet known to be its current (or working) one.
        Known(Arc<Linkage>, Arc<Packet>),
    }
    let mut seen: HashSet<*const Linkage> = HashSet::new();
    let mut stack = vec![Item::Node(from.clone())];
    while let Some(item) = stack.pop() {
        let (n, packet, trusted) = match item {
            Item::Node(n) => match local.get(&Arc::as_ptr(&n)) {
                Some(p) => {
                    let p = p.clone();
                    (n, p, true)
                }
                None => {
                    let p = peek(&n);
                    let complete = p.is_complete();
                    (n, p, complete)
                }
            },
            Item::Known(n, p) => match local.get(&Arc::as_ptr(&n)) {
                Some(mine) => {
                    let mine = mine.clone();
                    (n, mine, true)
                }
                None => (n, p, true),
            },
        };
        if std::ptr::eq(&*n, to) {
            return true;
        }
        if !seen.insert(Arc::as_ptr(&n)) {
            continue;
        }
        let Some(ch) = packet.children.as_ref() else {
            continue;
        };
        for (c, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
            stack.push(match slot {
                Some(sp) if trusted => Item::Known(c.clone(), sp.clone()),
                _ => Item::Node(c.clone()),
            });
        }
    }
    false
}

/// The current packet of a node (complete or not), read without any CAS (a
/// snapshot here could steal nodes shared with the calling transaction's
/// tree and make it retry forever).
pub(crate) fn peek(link: &Arc<Linkage>) -> Arc<Packet> {
    loop {
        let w = link.load();
        if w.has_priority() {
            return w.own_packet().clone();
        }
        let frame = UnbundleFrame::new(link.clone(), w, UnbundleMode::Peek);
        // Peeking never CASes, so it never tags or waits.
        let mut neg = Negotiator::with_stamp(0);
        if let Outcome::Unbundle(UnbundleResult::Found(p)) =
            Operation::run_frame(Frame::from(frame), &mut neg)
        {
            return p;
        }
    }
}

/// Whether every pending insert still leaves the tree acyclic.
pub(crate) fn inserts_acyclic(
    root: &Linkage,
    working: &Arc<Packet>,
    released: &[(Arc<Linkage>, Arc<Packet>)],
    inserts: &[PendingInsert],
) -> bool {
    let mut reach = Reach::new(root, working, released);
    inserts.iter().all(|i| !reach.reaches(&i.child, &i.parent))
}

/// Runs a commit operation under the structure lock, checking `acyclic`
/// right before it and again after every wait on a priority tag (the lock
/// is released while waiting). `None`: the check failed; the commit was
/// abandoned before its publishing CAS and the attempt must be retried.
/// `locked` sees the outcome while the lock is still held (marked commits
/// take their place in the delivery order there: `talker`).
pub(crate) fn commit_locked(
    frame: Frame,
    neg: &mut Negotiator,
    acyclic: impl Fn() -> bool,
    locked: impl FnOnce(&Outcome),
) -> Option<Outcome> {
    // Trace validation records the lock and each step as the explorer
    // schedules them (`explore::validate`).
    let lock = || {
        #[cfg(all(test, not(loom)))]
        if let Some(g) = crate::explore::validate::lock_structure(&STRUCTURE) {
            return g;
        }
        STRUCTURE.lock().unwrap_or_else(|e| e.into_inner())
    };
    let checked = || {
        #[cfg(all(test, not(loom)))]
        let ok = crate::explore::validate::quietly(&acyclic);
        #[cfg(not(all(test, not(loom))))]
        let ok = acyclic();
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::locked(ok);
        ok
    };
    let unlock = |guard: std::sync::MutexGuard<'static, ()>| {
        #[cfg(all(test, not(loom)))]
        crate::explore::validate::unlocking();
        drop(guard);
    };
    let mut guard = lock();
    if !checked() {
        unlock(guard);
        return None;
    }
    let mut op = Operation::new(frame);
    loop {
        match op.step_traced(neg) {
            Step::Done => break,
            Step::Running => {}
            Step::Blocked(link) => {
                unlock(guard);
                neg.wait(&link);
                if neg.expired {
                    return Some(Outcome::Expired);
                }
                guard = lock();
                if !checked() {
                    unlock(guard);
                    return None;
                }
            }
        }
    }
    let outcome = op.into_outcome();
    // Still under the lock: commits that need an order (marks) take it here.
    if let Some(o) = &outcome {
        locked(o);
    }
    unlock(guard);
    outcome
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::error::TreeError;
    use crate::node::Node;

    fn insert(parent: &Node<u32>, child: &Node<u32>) -> PendingInsert {
        PendingInsert {
            parent: parent.link.clone(),
            child: child.link.clone(),
            external: true,
        }
    }

    /// A commit's check of many inserts: fresh children are answered by
    /// walks, then by one map of the working version; a cycle through
    /// the current state (X lists R, and R is to list X) is found whether
    /// it is checked first, among the walks, or after the map.
    #[test]
    fn many_inserts_are_checked_walk_then_map() {
        let (r, x) = (Node::new(0u32), Node::new(0u32));
        x.insert(&r).unwrap();
        let kids: Vec<Node<u32>> = (0..2 * MAP_AFTER_WALKS as u32).map(Node::new).collect();
        let mut ran = false;
        r.try_iterate_commit(|tr| {
            for k in &kids {
                tr.insert(&r, k)?;
            }
            let fresh: Vec<PendingInsert> = kids.iter().map(|k| insert(&r, k)).collect();
            let acyclic =
                |inserts: &[PendingInsert]| inserts_acyclic(&tr.root, &tr.packet, &[], inserts);
            assert!(acyclic(&fresh));
            for at in [0, 1, MAP_AFTER_WALKS, fresh.len()] {
                let mut all: Vec<PendingInsert> = kids.iter().map(|k| insert(&r, k)).collect();
                all.insert(at, insert(&r, &x));
                assert!(!acyclic(&all), "the cycle checked at {at}");
            }
            let mut reach = Reach::new(&tr.root, &tr.packet, &[]);
            for k in &kids[..MAP_AFTER_WALKS] {
                assert!(!reach.reaches(&k.link, &r.link));
            }
            assert!(reach.local.is_none(), "walks first");
            assert!(!reach.reaches(&kids[MAP_AFTER_WALKS].link, &r.link));
            assert!(reach.local.is_some(), "then one map");
            assert!(reach.reaches(&x.link, &r.link));
            assert!(!reach.reaches(&r.link, &x.link));
            ran = true;
            Ok::<(), TreeError>(())
        })
        .unwrap();
        assert!(ran);
        assert_eq!(r.snapshot().children(&r).unwrap().len(), kids.len());
    }
}
