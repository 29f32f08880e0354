//! The invariants every explored state and every view must satisfy.

use super::*;

impl World<'_> {
    /// Upper bound of each node's value: committed, or in a commit now.
    pub(super) fn hi(&self) -> Vec<u32> {
        let mut hi = self.committed.clone();
        for t in &self.threads {
            if t.pc == Pc::Commit {
                let writes = match t.kind() {
                    OpKind::Tx { writes, .. } => writes,
                    OpKind::Dyn { .. } => &t.wrote,
                    _ => continue,
                };
                for &w in writes {
                    hi[w] += t.increment();
                }
            }
        }
        hi
    }

    /// A snapshot (or a transaction's view) is consistent: each value lies
    /// between the increments committed before it started and those
    /// committed (or being committed) now, and pairs written together are
    /// equal.
    pub(super) fn check_view(
        &self,
        lo: &[u32],
        value: impl Fn(usize) -> Option<u32>,
    ) -> Result<(), String> {
        let hi = self.hi();
        for i in 0..self.nodes.len() {
            if let Some(v) = value(i) {
                if v < lo[i] || v > hi[i] {
                    return Err(format!(
                        "inconsistent snapshot: node {i} = {v}, committed between {} and {}",
                        lo[i], hi[i]
                    ));
                }
            }
        }
        for &(a, b) in &self.cfg.pairs {
            if let (Some(x), Some(y)) = (value(a), value(b)) {
                if x != y {
                    return Err(format!(
                        "torn snapshot: nodes {a} and {b}, always written together, read {x} and {y}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// State invariants: bundled references reach a priority ancestor that
    /// lists them; a complete packet's filled slots belong to children
    /// bundled into it; every tag belongs to a live transaction that has it
    /// in its ledger.
    pub(super) fn check_state(&self) -> Result<(), String> {
        let id = |l: &Linkage| {
            self.addrs
                .iter()
                .position(|&x| x == std::ptr::from_ref(l) as usize)
        };
        for (i, l) in self.alive() {
            let l = &l;
            let tag = l.tag.load(crate::sync::Ordering::Acquire);
            if tag != 0 {
                // Split: a clearing still queued is the owner's too.
                let clearing = |t: &Sim| {
                    t.deferred.iter().any(|w| {
                        matches!(w, negotiation::split::TagWrite::Clear(x, me)
                            if *me == tag && Arc::ptr_eq(x, l))
                    })
                };
                let owns =
                    |n: &Negotiator| n.stamp == tag && n.ledger().iter().any(|x| Arc::ptr_eq(x, l));
                let owned = self.threads.iter().any(|t| {
                    clearing(t)
                        || t.neg().is_some_and(owns)
                        || t.outer.as_ref().is_some_and(|(tr, _)| owns(&tr.neg))
                        || t.co.as_ref().is_some_and(|co| co.stamp == tag)
                });
                if !owned {
                    return Err(format!(
                        "node {i}: tag {tag:#x} owned by no live transaction"
                    ));
                }
            }
            let w = l.load();
            if w.owner.as_ref().is_some_and(|o| !o.live()) {
                // A limbo whose attempt has ended must be one its parent
                // lists with a slot (then that slot is the child's state,
                // as for a bundled reference); `Transaction`'s drop takes
                // every other one out (`unlimbo`).
                let parent = w.bundled_by.as_ref().and_then(|p| p.upgrade());
                let listed = parent.as_ref().and_then(|p| id(p)).map(|j| {
                    self.current_packet(j).is_none_or(|pp| {
                        pp.children.as_ref().is_some_and(|c| {
                            c.position(l, w.index).is_some_and(|k| c.slots[k].is_some())
                        })
                    })
                });
                if listed != Some(true) {
                    return Err(format!(
                        "node {i}: a limbo outlives its attempt, naming a parent that does not list it"
                    ));
                }
            }
            if !w.has_priority() {
                // Walk up: must end at a priority ancestor.
                let mut cur = w.clone();
                let mut hops = 0;
                // While a `Linkage::drop` runs (split), the children it has
                // not handed their packets back yet are bundled into a
                // parent that is gone: that window is what is explored.
                let dropping = self.threads.iter().any(|t| t.pc == Pc::Dropping);
                while !cur.has_priority() {
                    let Some(parent) = cur.bundled_by.as_ref().and_then(|p| p.upgrade()) else {
                        if dropping {
                            break;
                        }
                        return Err(format!("node {i}: bundled into a dropped parent"));
                    };
                    id(&parent).ok_or_else(|| format!("node {i}: bundled outside the tree"))?;
                    cur = parent.load();
                    hops += 1;
                    if hops > self.addrs.len() {
                        return Err(format!("node {i}: bundled_by chain loops"));
                    }
                }
                if w.packet.is_none() {
                    let Some(parent) = w.bundled_by.as_ref().and_then(|p| p.upgrade()) else {
                        continue; // a drop in progress (above)
                    };
                    let pw = parent.load();
                    if pw.has_priority() {
                        let listed = pw
                            .own_packet()
                            .children
                            .as_ref()
                            .and_then(|c| c.position(l, w.index));
                        if listed.is_none() {
                            return Err(format!("node {i}: bundled into a parent not listing it"));
                        }
                    }
                }
            } else if w.own_packet().is_complete() {
                self.check_complete(l, w.own_packet())?;
            }
        }
        self.check_acyclic()?;
        Ok(())
    }

    /// Node `i`'s packet as it is now: its own, the one its limbo carries,
    /// or its slot in the packet of the node it is bundled into. `None`
    /// where that is not found (a void slot, a loop).
    fn current_packet(&self, i: usize) -> Option<Arc<Packet>> {
        let mut path = Vec::new();
        let mut link = self.weak[i].upgrade()?;
        let mut w = link.load();
        while w.packet.is_none() {
            let parent = w.bundled_by.as_ref()?.upgrade()?;
            path.push((link.clone(), w.index));
            if path.len() > self.addrs.len() {
                return None;
            }
            link = parent;
            w = link.load();
        }
        let mut p = w.packet.clone()?;
        for (l, hint) in path.iter().rev() {
            let ch = p.children.clone()?;
            let at = ch.position(l, *hint)?;
            p = ch.slots[at].clone()?;
        }
        Some(p)
    }

    /// The tree has no cycle: following each node's children as its
    /// current packet lists them (its own, the one its limbo carries, or
    /// its slot in the packet of the node it is bundled into) never comes
    /// back to a node on the way.
    pub(super) fn check_acyclic(&self) -> Result<(), String> {
        let n = self.addrs.len();
        let index = |l: &Arc<Linkage>| {
            self.addrs
                .iter()
                .position(|&x| x == Arc::as_ptr(l) as usize)
        };
        let children: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                self.current_packet(i)
                    .and_then(|p| p.children.clone())
                    .map(|c| c.nodes.iter().filter_map(index).collect())
                    .unwrap_or_default()
            })
            .collect();
        // Depth-first, colouring: 1 on the path, 2 done.
        fn visit(i: usize, ch: &[Vec<usize>], colour: &mut [u8]) -> bool {
            colour[i] = 1;
            for &c in &ch[i] {
                if colour[c] == 1 || (colour[c] == 0 && !visit(c, ch, colour)) {
                    return false;
                }
            }
            colour[i] = 2;
            true
        }
        let mut colour = vec![0u8; n];
        for i in 0..n {
            if colour[i] == 0 && !visit(i, &children, &mut colour) {
                return Err(format!("the tree has a cycle through node {i}"));
            }
        }
        Ok(())
    }

    /// Every filled slot of the complete packet `p` of `owner` is a child
    /// bundled (or in limbo) under `owner`, recursively.
    pub(super) fn check_complete(
        &self,
        owner: &Arc<Linkage>,
        p: &Arc<Packet>,
    ) -> Result<(), String> {
        let Some(ch) = &p.children else {
            return Ok(());
        };
        for (child, slot) in ch.nodes.iter().zip(ch.slots.iter()) {
            let Some(slot) = slot else { continue };
            let cw = child.load();
            if cw.has_priority() || !cw.is_bundled_by(owner) {
                let i = self
                    .addrs
                    .iter()
                    .position(|&x| x == Arc::as_ptr(child) as usize);
                return Err(format!(
                    "node {i:?}: has a slot in a complete packet but is not bundled there"
                ));
            }
            self.check_complete(child, slot)?;
        }
        Ok(())
    }

    /// The linkages still alive (a dropped node's while something holds it).
    fn alive(&self) -> impl Iterator<Item = (usize, Arc<Linkage>)> + '_ {
        self.weak
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.upgrade().map(|l| (i, l)))
    }

    /// After every thread finished: each node holds exactly the increments
    /// committed to it, and no tag is left.
    pub(super) fn check_final(&self) -> Result<(), String> {
        self.check_acyclic()?;
        let shot = self.nodes[0].snapshot();
        let dynamic = self
            .cfg
            .programs
            .iter()
            .flatten()
            .any(|k| matches!(k, OpKind::Dyn { .. } | OpKind::Drop(_)));
        for (i, n) in self.nodes.iter().enumerate() {
            if self.dropped[i] {
                continue;
            }
            let v = match shot.get(n) {
                Ok(v) => *v,
                // Released (or never inserted): read on its own.
                Err(_) if dynamic => n.read(),
                Err(_) => return Err(format!("node {i} missing from the final snapshot")),
            };
            if v != self.committed[i] {
                return Err(format!(
                    "lost commit: node {i} = {v}, {} increments committed",
                    self.committed[i]
                ));
            }
        }
        for (i, l) in self.alive() {
            if l.tag.load(crate::sync::Ordering::Acquire) != 0 {
                return Err(format!("node {i}: a tag outlives every transaction"));
            }
        }
        Ok(())
    }
}
