//! Steps of the dynamic tree operations that touch a child's linkage:
//! `InsertReadChild`, `InsertCASChild` (online insert), `ReleaseReadChild`,
//! `ReleaseCASChild` (release).
//!
//! Both leave the child in *limbo* under the parent: bundled by the parent
//! but carrying its own packet. While the parent lists the child, the
//! parent's slot is the child's state; once the parent does not (the
//! release committed, or the insert has not committed), the carried packet
//! is. Either way a reader finds the right packet, and a writer of the
//! child must CAS the parent's chain first, which makes a still-running
//! insert or release transaction fail and retry.

use crate::limbo::LimboOwner;
use crate::linkage::Linkage;
use crate::negotiation::{self, Negotiator};
use crate::packet::Packet;
use crate::serial::Serial;
use crate::wrapper::PacketWrapper;
use std::sync::Arc;

/// What an online insert found at the child.
pub(crate) enum InsertRead {
    /// The child has priority with a complete packet, or is in limbo under
    /// this very parent (left there by an earlier, failed attempt of the
    /// inserting transaction, which does not list it, or by this attempt's
    /// release of it from this parent): its packet is ready, as long as
    /// `tx_validate` holds. (A child this attempt released from *another*
    /// parent never gets here: see `Transaction::insert_impl`.)
    Ready(Arc<PacketWrapper>),
    /// The child's packet is missing: bundle it first (as a part of the
    /// inserting transaction's tree, see `Transaction::pull_child`).
    NeedsBundle(Arc<PacketWrapper>),
    /// The child is bundled or in limbo: unbundle it first.
    NeedsPromote(Arc<PacketWrapper>),
}

/// Loads the child's wrapper for an online insert under `parent`.
/// TLA+: InsertReadChild
pub(crate) fn insert_read_child(child: &Linkage, parent: &Linkage) -> InsertRead {
    let w = child.load();
    if !w.has_priority() {
        if w.packet.as_ref().is_some_and(|p| p.is_complete()) && w.is_bundled_by(parent) {
            return InsertRead::Ready(w);
        }
        return InsertRead::NeedsPromote(w);
    }
    if w.own_packet().is_complete() {
        InsertRead::Ready(w)
    } else {
        InsertRead::NeedsBundle(w)
    }
}

/// Result of a gated CAS on a child.
pub(crate) enum ChildCas {
    /// Installed this wrapper.
    Done(Arc<PacketWrapper>),
    Failed,
    /// Another transaction's priority tag: wait, then try again.
    Blocked,
}

fn gated_cas(
    child: &Arc<Linkage>,
    expected: &Arc<PacketWrapper>,
    next: Arc<PacketWrapper>,
    neg: &mut Negotiator,
) -> ChildCas {
    if !negotiation::can_proceed(child, neg) {
        #[cfg(all(test, not(loom)))]
        crate::explore::dynamic::body_blocked(child);
        return ChildCas::Blocked;
    }
    match child.slot.compare_exchange(expected, next.clone()) {
        Ok(()) => {
            negotiation::tag_after_success(child, neg);
            ChildCas::Done(next)
        }
        Err(_) => {
            negotiation::tag_after_fail(child, neg);
            ChildCas::Failed
        }
    }
}

/// Where a child CAS puts the child in limbo, and whose limbo it is.
pub(crate) struct Limbo<'a> {
    pub(crate) parent: &'a Arc<Linkage>,
    /// The child's index hint in the parent's list.
    pub(crate) index: usize,
    pub(crate) serial: Serial,
    pub(crate) owner: &'a Arc<LimboOwner>,
}

impl Limbo<'_> {
    fn wrapper(&self, packet: Arc<Packet>) -> Arc<PacketWrapper> {
        PacketWrapper::limbo(self.parent, self.index, self.serial, packet, self.owner)
    }
}

/// Puts the child in limbo under `parent`, carrying its packet, so the
/// inserting transaction can write it and later readers can find it.
/// TLA+: InsertCASChild
pub(crate) fn insert_cas_child(
    child: &Arc<Linkage>,
    expected: &Arc<PacketWrapper>,
    limbo: &Limbo<'_>,
    neg: &mut Negotiator,
) -> ChildCas {
    let packet = expected
        .packet
        .clone()
        .expect("a ready child carries its packet");
    let next = limbo.wrapper(packet);
    gated_cas(child, expected, next, neg)
}

/// Loads the child's wrapper for a release; `Some` when it is in the state
/// the releasing transaction saw (priority holding `slot`, or bundled by
/// `parent`).
/// TLA+: ReleaseReadChild
pub(crate) fn release_read_child(
    child: &Linkage,
    parent: &Linkage,
    slot: &Arc<Packet>,
) -> Option<Arc<PacketWrapper>> {
    let w = child.load();
    let ok = if w.has_priority() {
        Arc::ptr_eq(w.own_packet(), slot)
    } else {
        w.is_bundled_by(parent)
    };
    ok.then_some(w)
}

/// Puts the released child in limbo carrying its last packet.
/// TLA+: ReleaseCASChild
pub(crate) fn release_cas_child(
    child: &Arc<Linkage>,
    expected: &Arc<PacketWrapper>,
    limbo: &Limbo<'_>,
    slot: Arc<Packet>,
    neg: &mut Negotiator,
) -> ChildCas {
    let next = limbo.wrapper(slot);
    gated_cas(child, expected, next, neg)
}

/// Before a child CAS: is the transaction's base still current? One load of
/// the transaction root's linkage, which must still hold exactly the
/// wrapper the snapshot was read from (`snap`). Then the root's committed
/// state, and with it the parent's committed child list, is the one the
/// transaction read, so the limbo wrapper the CAS installs carries the
/// child's current packet and the parent's slot for it (if it lists the
/// child at all) is void or that very packet. Without this check an insert
/// or release of a transaction that has already lost could put the child
/// in limbo under a parent whose stale slot then hides the child's newest
/// commit (issue 9, defect 1). `false`: the attempt is doomed.
/// TLA+: TxValidate
pub(crate) fn tx_validate(root: &Linkage, snap: &Arc<PacketWrapper>) -> bool {
    Arc::ptr_eq(&root.load(), snap)
}

/// `tx_validate` for a transaction whose root was bundled in an ancestor at
/// snapshot time: from `loaded`, the root's wrapper just read, loads the
/// `bundled_by` chain up to the first priority ancestor and finds the
/// root's packet down its slots. The base
/// is current iff that ancestor's packet is complete (then every slot in
/// it is current: an unbundle marks the ancestors missing first) and the
/// packet found is the transaction's base. Loads only; any doubt (a
/// missing ancestor, a parent gone) answers `false`.
///
/// `None`: cannot tell by reading (the priority ancestor's packet is
/// missing, so the slots in it may be stale).
pub(crate) fn base_is_current(
    root: &Arc<Linkage>,
    loaded: Arc<PacketWrapper>,
    old: &Arc<Packet>,
) -> Option<bool> {
    let mut links = vec![root.clone()];
    let mut wrappers = vec![loaded];
    loop {
        let w = wrappers.last().expect("not empty");
        if w.has_priority() {
            break;
        }
        let Some(parent) = w.bundled_by.as_ref().and_then(|b| b.upgrade()) else {
            return Some(false);
        };
        wrappers.push(parent.load());
        links.push(parent);
    }
    let top = wrappers.last().expect("not empty").own_packet();
    if wrappers.len() == 1 {
        return Some(Arc::ptr_eq(top, old));
    }
    if !top.is_complete() {
        return None;
    }
    let mut packet = top.clone();
    for j in (0..links.len() - 1).rev() {
        // As `UnbundleFrame::locate`: the slot in the level above if it
        // lists this level, else the packet its limbo wrapper carries.
        let listed = packet.children.as_ref().and_then(|ch| {
            ch.position(&links[j], wrappers[j].index)
                .and_then(|i| ch.slots[i].clone())
        });
        packet = match (listed, &wrappers[j].packet) {
            (Some(p), _) => p,
            (None, Some(carried)) => carried.clone(),
            (None, None) => return Some(false),
        };
    }
    Some(Arc::ptr_eq(&packet, old))
}
