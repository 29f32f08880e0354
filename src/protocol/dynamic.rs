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
    /// inserting transaction, which does not list it): its packet is ready.
    Ready(Arc<PacketWrapper>),
    /// The child's packet is missing: bundle it first (take a snapshot).
    NeedsBundle,
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
        InsertRead::NeedsBundle
    }
}

/// Result of a gated CAS on a child.
pub(crate) enum ChildCas {
    Done,
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
        return ChildCas::Blocked;
    }
    match child.slot.compare_exchange(expected, next) {
        Ok(()) => {
            negotiation::tag_after_success(child, neg);
            ChildCas::Done
        }
        Err(_) => {
            negotiation::tag_after_fail(child, neg);
            ChildCas::Failed
        }
    }
}

/// Puts the child in limbo under `parent`, carrying its packet, so the
/// inserting transaction can write it and later readers can find it.
/// TLA+: InsertCASChild
pub(crate) fn insert_cas_child(
    child: &Arc<Linkage>,
    expected: &Arc<PacketWrapper>,
    parent: &Arc<Linkage>,
    index: usize,
    serial: Serial,
    neg: &mut Negotiator,
) -> ChildCas {
    let packet = expected
        .packet
        .clone()
        .expect("a ready child carries its packet");
    let next = PacketWrapper::limbo(parent, index, serial, packet);
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
    parent: &Arc<Linkage>,
    index: usize,
    serial: Serial,
    slot: Arc<Packet>,
    neg: &mut Negotiator,
) -> ChildCas {
    let next = PacketWrapper::limbo(parent, index, serial, slot);
    gated_cas(child, expected, next, neg)
}
