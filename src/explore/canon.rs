//! The canonical abstraction of an explored state: the visited set's key.

use super::*;

// Canonical abstraction of a state.

#[derive(Clone, Copy)]
enum Tok {
    N(u64),
    Serial(u64),
    Stamp(u64),
}

/// Builds the canonical token stream of one state. Linkages are numbered by
/// their place in the configuration, packets and wrappers by first
/// encounter (their identity is what `Arc::ptr_eq` and the CASes compare).
pub(crate) struct Canon {
    /// Identities as they are (addresses, serials): for comparing two
    /// states of one lone operation with nothing written in between
    /// (`LoneLoop`), where a renaming could equate states that differ.
    raw: bool,
    /// Linkages numbered as they are met (`LoneLoop`'s tree), not by a
    /// configuration.
    grow: bool,
    toks: Vec<Tok>,
    links: Vec<usize>,
    packets: HashMap<usize, u64>,
    wrappers: HashMap<usize, u64>,
    owners: HashMap<usize, u64>,
}

impl Canon {
    fn new(addrs: &[usize]) -> Self {
        Canon {
            raw: false,
            grow: false,
            toks: Vec::with_capacity(512),
            links: addrs.to_vec(),
            packets: HashMap::new(),
            wrappers: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    pub(crate) fn n(&mut self, v: u64) {
        self.toks.push(Tok::N(v));
    }

    pub(crate) fn serial(&mut self, s: u64) {
        self.toks.push(Tok::Serial(s));
    }

    pub(crate) fn stamp(&mut self, s: u64) {
        self.toks.push(Tok::Stamp(s));
    }

    fn link_id(&self, addr: usize) -> Option<u64> {
        if self.raw {
            return Some(addr as u64);
        }
        self.links.iter().position(|&a| a == addr).map(|i| i as u64)
    }

    /// A linkage's number; a new one in `grow` mode.
    fn link_num(&mut self, addr: usize) -> Option<u64> {
        let id = self.link_id(addr);
        if id.is_none() && self.grow {
            self.links.push(addr);
            return Some(self.links.len() as u64 - 1);
        }
        id
    }

    pub(crate) fn link_addr(&mut self, addr: usize) {
        let id = self
            .link_num(addr)
            .expect("a linkage outside the configuration");
        self.n(id);
    }

    pub(crate) fn link(&mut self, l: &Linkage) {
        self.link_addr(std::ptr::from_ref(l) as usize);
    }

    pub(crate) fn packet(&mut self, p: &Arc<Packet>) {
        let addr = Arc::as_ptr(p) as *const () as usize;
        if self.raw {
            // Packets never change: the address is the content.
            self.n(addr as u64);
            return;
        }
        if let Some(&id) = self.packets.get(&addr) {
            self.n(1);
            self.n(id);
            return;
        }
        let id = self.packets.len() as u64;
        self.packets.insert(addr, id);
        self.n(2);
        self.n(u64::from(p.missing));
        self.n(payload(p).map_or(u64::MAX, u64::from));
        match &p.children {
            None => self.n(0),
            Some(ch) => {
                self.n(1 + ch.nodes.len() as u64);
                for (node, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
                    self.link(node);
                    self.opt_packet(slot.as_ref());
                }
            }
        }
    }

    pub(crate) fn opt_packet(&mut self, p: Option<&Arc<Packet>>) {
        match p {
            None => self.n(0),
            Some(p) => self.packet(p),
        }
    }

    pub(crate) fn wrapper(&mut self, w: &Arc<PacketWrapper>) {
        let addr = Arc::as_ptr(w) as usize;
        if self.raw {
            // Nor do wrappers, but a limbo's owner may end.
            self.n(addr as u64);
            self.opt_owner(w.owner.as_ref());
            return;
        }
        if let Some(&id) = self.wrappers.get(&addr) {
            self.n(1);
            self.n(id);
            return;
        }
        let id = self.wrappers.len() as u64;
        self.wrappers.insert(addr, id);
        self.n(2);
        match &w.bundled_by {
            None => self.n(u64::MAX),
            Some(weak) => {
                let addr = weak.as_ptr() as usize;
                let id = self.link_num(addr).unwrap_or(u64::MAX - 1);
                self.n(id);
            }
        }
        self.n(w.index as u64);
        self.serial(w.serial);
        self.opt_packet(w.packet.as_ref());
        self.opt_owner(w.owner.as_ref());
    }

    /// A limbo owner: by identity (first encounter) and whether it lives.
    pub(crate) fn opt_owner(&mut self, o: Option<&Arc<crate::limbo::LimboOwner>>) {
        let Some(o) = o else {
            self.n(0);
            return;
        };
        let addr = Arc::as_ptr(o) as usize;
        if self.raw {
            self.n(addr as u64);
            self.n(u64::from(o.live()));
            return;
        }
        let next = self.owners.len() as u64;
        let id = *self.owners.entry(addr).or_insert(next);
        self.n(1 + id);
        self.n(u64::from(o.live()));
    }

    pub(crate) fn opt_wrapper(&mut self, w: Option<&Arc<PacketWrapper>>) {
        match w {
            None => self.n(0),
            Some(w) => self.wrapper(w),
        }
    }

    pub(crate) fn installed(&mut self, inst: &Installed) {
        self.n(inst.len() as u64);
        for (l, old, new) in inst {
            self.link(l);
            self.wrapper(old);
            self.wrapper(new);
        }
    }

    fn negotiator(&mut self, neg: &Negotiator) {
        self.stamp(neg.stamp);
        self.n(u64::from(neg.soft));
        self.n(neg.ledger().len() as u64);
        for l in neg.ledger() {
            self.link(l);
        }
    }

    /// The state's fingerprint: serials and stamps replaced by their ranks
    /// (separately: they are never compared with each other), stamps
    /// keeping their thread id.
    fn finish(self) -> u128 {
        let mut serials: Vec<u64> = Vec::new();
        let mut stamps: Vec<u64> = Vec::new();
        for t in &self.toks {
            match *t {
                Tok::Serial(s) => serials.push(s),
                Tok::Stamp(s) if s != 0 => stamps.push(s),
                _ => {}
            }
        }
        serials.sort_unstable();
        serials.dedup();
        stamps.sort_unstable();
        stamps.dedup();
        let rank = |v: &[u64], x: u64| v.binary_search(&x).expect("collected") as u64;
        fingerprint(self.toks.iter().map(|t| match *t {
            Tok::N(v) => (0u8, v),
            Tok::Serial(s) => (1, rank(&serials, s)),
            Tok::Stamp(0) => (2, u64::MAX),
            Tok::Stamp(s) => (2, (rank(&stamps, s) << 16) | (s & serial::TID_MASK)),
        }))
    }
}

/// Finds a lone operation going round a loop it can never leave (test
/// builds). An operation whose negotiator has been alone all along
/// (`crate::solo`) is the only thing that changes shared memory, and it is
/// deterministic: back at a state it was in, it goes round the same loop
/// for ever. Two checks, each Brent's search (one saved state, saved again
/// at steps 1, 2, 4, ...: one fingerprint per step, a loop found within
/// twice its length plus its start):
///
/// * every step, the frames exactly (`Canon` with raw identities) and the
///   count of this thread's successful CASes: the same frames with nothing
///   written in between (a frame that stopped advancing);
/// * each time the operation is back at its first frame, the whole tree it
///   can reach (from that frame's node along children and `bundled_by`,
///   numbered as met; packets and wrappers by content, serials and stamps
///   by rank, as the explorer's visited set) with its frames and
///   negotiator: an operation that restarts and writes the same things
///   again (new wrappers, new serials), round after round.
#[cfg(debug_assertions)]
pub(crate) struct LoneLoop {
    frames: Brent<(u128, u64)>,
    tree: Brent<u128>,
}

#[cfg(debug_assertions)]
struct Brent<T> {
    saved: Option<T>,
    steps: u64,
    power: u64,
}

#[cfg(debug_assertions)]
impl<T: PartialEq> Brent<T> {
    fn new() -> Self {
        Brent {
            saved: None,
            steps: 0,
            power: 1,
        }
    }

    /// Whether `now` is the saved state (a loop).
    fn seen(&mut self, now: T) -> bool {
        if self.saved.as_ref() == Some(&now) {
            return true;
        }
        self.steps += 1;
        if self.steps == self.power {
            self.saved = Some(now);
            self.power *= 2;
            self.steps = 0;
        }
        false
    }
}

#[cfg(debug_assertions)]
impl LoneLoop {
    pub(crate) fn new() -> Self {
        LoneLoop {
            frames: Brent::new(),
            tree: Brent::new(),
        }
    }

    /// After a step of the operation that `neg` negotiates for; `state`
    /// writes its frames; `from` is its first frame's node when that frame
    /// is the one running.
    pub(crate) fn step(
        &mut self,
        neg: &Negotiator,
        from: Option<&Arc<Linkage>>,
        state: impl Fn(&mut Canon),
    ) {
        if !neg.alone() {
            *self = LoneLoop::new();
            return;
        }
        let mut c = Canon::new(&[]);
        c.raw = true;
        state(&mut c);
        let now = (c.exact(), crate::sync::trace::writes());
        assert!(
            !self.frames.seen(now),
            "an operation running alone is back at a state it was in, with nothing written \
             in between: it loops for ever"
        );
        let Some(from) = from else { return };
        let mut c = Canon::new(&[]);
        c.grow = true;
        c.tree_from(from);
        state(&mut c);
        c.negotiator(neg);
        assert!(
            !self.tree.seen(c.finish()),
            "an operation running alone is back at its first frame with the tree and its \
             frames as they were before: it loops for ever"
        );
    }
}

#[cfg(debug_assertions)]
impl Canon {
    /// The fingerprint of the tokens as they are (no ranks).
    fn exact(&self) -> u128 {
        fingerprint(self.toks.iter().map(|t| match *t {
            Tok::N(v) => (0u8, v),
            Tok::Serial(s) => (1, s),
            Tok::Stamp(s) => (2, s),
        }))
    }

    /// Every linkage reachable from `from` (children, `bundled_by`), in
    /// the order met: its wrapper and its tag, read quietly.
    fn tree_from(&mut self, from: &Arc<Linkage>) {
        let mut queue = VecDeque::from([from.clone()]);
        let mut seen = std::collections::HashSet::from([Arc::as_ptr(from) as usize]);
        let mut meet = |l: &Arc<Linkage>, queue: &mut VecDeque<Arc<Linkage>>| {
            if seen.insert(Arc::as_ptr(l) as usize) {
                queue.push_back(l.clone());
            }
        };
        while let Some(l) = queue.pop_front() {
            self.link(&l);
            let w = l.slot.load_quiet();
            self.wrapper(&w);
            self.stamp(l.tag.load_quiet());
            if let Some(parent) = w.bundled_by.as_ref().and_then(std::sync::Weak::upgrade) {
                meet(&parent, &mut queue);
            }
            let mut packets: Vec<&Arc<Packet>> = w.packet.iter().collect();
            while let Some(p) = packets.pop() {
                if let Some(ch) = &p.children {
                    for (node, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
                        meet(node, &mut queue);
                        packets.extend(slot.iter());
                    }
                }
            }
        }
    }
}

/// 128 bits over (kind, value) tokens: two independent 64-bit hashes, so
/// two different states of one search practically never collide.
fn fingerprint(toks: impl Iterator<Item = (u8, u64)>) -> u128 {
    let mut h1 = std::hash::DefaultHasher::new();
    let mut h2 = std::hash::DefaultHasher::new();
    0xC0FFEEu64.hash(&mut h2);
    for t in toks {
        t.hash(&mut h1);
        t.hash(&mut h2);
    }
    (u128::from(h1.finish()) << 64) | u128::from(h2.finish())
}

fn payload(p: &Packet) -> Option<u32> {
    p.payload.get().downcast_ref::<u32>().copied()
}

impl World<'_> {
    /// The state's fingerprint.
    pub(super) fn canon(&self) -> u128 {
        let mut c = Canon::new(&self.addrs);
        for w in &self.weak {
            // A dropped node's linkage while something still holds it.
            match w.upgrade() {
                Some(l) => {
                    c.wrapper(&l.load());
                    c.stamp(l.tag.load(crate::sync::Ordering::Acquire));
                }
                None => c.n(u64::MAX),
            }
        }
        for n in &self.committed {
            c.n(u64::from(*n));
        }
        c.n(self.lock.map_or(u64::MAX, |t| t as u64));
        for th in &self.threads {
            c.n(th.next_op as u64);
            c.n(th.pc as u64);
            c.n(u64::from(th.rebased));
            match th.neg() {
                None => c.n(0),
                Some(neg) => {
                    c.n(1);
                    c.negotiator(neg);
                }
            }
            match &th.blocked {
                None => c.n(u64::MAX),
                Some(l) => c.link(l),
            }
            for &v in &th.lo {
                c.n(u64::from(v));
            }
            match &th.gate {
                None => c.n(u64::MAX),
                Some((l, v)) => {
                    c.link(l);
                    c.stamp(*v);
                }
            }
            c.n(th.deferred.len() as u64);
            for w in &th.deferred {
                c.link(w.link());
                if let negotiation::split::TagWrite::Clear(_, me) = w {
                    c.stamp(*me);
                }
            }
            match &th.after {
                None => c.n(0),
                Some(Step::Running) => c.n(1),
                Some(Step::Done) => c.n(2),
                Some(Step::Blocked(l)) => {
                    c.n(3);
                    c.link(l);
                }
            }
            if let Some(tr) = &th.tr {
                c.packet(&tr.old);
                c.packet(&tr.packet);
                c.opt_wrapper(tr.snap_wrapper.as_ref());
                c.n(u64::from(tr.wants_priority));
                tr.canon_dynamic(&mut c);
            }
            for &w in &th.wrote {
                c.n(w as u64);
            }
            c.n(u64::from(th.relock));
            c.n(u64::from(th.promote));
            c.opt_owner(th.owner.as_ref());
            match &th.co {
                None => c.n(0),
                Some(co) => {
                    c.n(1);
                    co.canon(&mut c);
                }
            }
            match &th.outer {
                None => c.n(0),
                Some((tr, _)) => {
                    c.n(1);
                    c.packet(&tr.old);
                    c.packet(&tr.packet);
                    c.opt_wrapper(tr.snap_wrapper.as_ref());
                    c.n(u64::from(tr.wants_priority));
                    c.negotiator(&tr.neg);
                }
            }
            match &th.op {
                None => c.n(0),
                Some(op) => {
                    c.n(op.frames().len() as u64 + 1);
                    for f in op.frames() {
                        f.canon(&mut c);
                    }
                    match op.pending().or(op.finished()) {
                        None => c.n(0),
                        Some(o) => {
                            c.n(1);
                            o.canon(&mut c);
                        }
                    }
                }
            }
        }
        c.finish()
    }
}
