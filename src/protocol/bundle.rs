//! Bundling a subtree into its root's packet: `BundlePhase1` … `BundlePhase4`.
//!
//! 1. collect each child's current packet (bundling a child whose own
//!    packet is missing first, recursively, with the same bundle serial;
//!    unbundling a child that lives in another bundle);
//! 2. CAS the node to a packet holding the collected slots, still missing;
//! 3. CAS each collected child that had priority to a bundled reference;
//! 4. CAS the node to the same packet marked complete.
//!
//! Children that were already bundled into this node are skipped in phase
//! 3: their packets already live in this node's packet, and any change to
//! them has to CAS this node first, which phase 4 would notice.

use super::{
    BundleResult, Frame, Installed, Next, Outcome, UnbundleFrame, UnbundleMode, UnbundleResult,
};
use crate::linkage::Linkage;
use crate::packet::{self, Children, Packet};
use crate::serial::Serial;
use crate::wrapper::PacketWrapper;
use smallvec::SmallVec;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BundlePc {
    Phase1,
    Phase2,
    Phase3,
    Phase4,
}

/// A child's packet as collected in phase 1.
pub(crate) struct Collected {
    packet: Option<Arc<Packet>>,
    /// The child's priority wrapper, which phase 3 must turn into a bundled
    /// reference; `None` when there is nothing to CAS.
    wrapper: Option<Arc<PacketWrapper>>,
}

pub(crate) struct BundleFrame {
    pub(crate) node: Arc<Linkage>,
    /// The node's wrapper as this bundle last saw or installed it.
    pub(crate) wrapper: Arc<PacketWrapper>,
    pub(crate) serial: Serial,
    pub(crate) is_root: bool,
    pub(crate) pc: BundlePc,
    /// Child index phase 1 / phase 3 works on.
    pub(crate) idx: usize,
    collected: SmallVec<[Collected; 8]>,
    /// Some slot is void or some collected packet is missing.
    incomplete: bool,
}

impl BundleFrame {
    pub(crate) fn new(
        node: Arc<Linkage>,
        wrapper: Arc<PacketWrapper>,
        serial: Serial,
        is_root: bool,
    ) -> Self {
        BundleFrame {
            node,
            wrapper,
            serial,
            is_root,
            pc: BundlePc::Phase1,
            idx: 0,
            collected: SmallVec::new(),
            incomplete: false,
        }
    }

    pub(crate) fn step(&mut self, returned: Option<Outcome>) -> Next {
        match self.pc {
            BundlePc::Phase1 => bundle_phase1(self, returned),
            BundlePc::Phase2 => bundle_phase2(self),
            BundlePc::Phase3 => bundle_phase3(self),
            BundlePc::Phase4 => bundle_phase4(self),
        }
    }

    fn children(&self) -> &Arc<Children> {
        self.wrapper
            .own_packet()
            .children
            .as_ref()
            .expect("only nodes with children are bundled")
    }

    fn push(&mut self, packet: Option<Arc<Packet>>, wrapper: Option<Arc<PacketWrapper>>) {
        match &packet {
            None => self.incomplete = true,
            Some(p) if !p.is_complete() => self.incomplete = true,
            Some(_) => {}
        }
        self.collected.push(Collected { packet, wrapper });
        self.idx += 1;
        if self.idx == self.children().nodes.len() {
            self.pc = BundlePc::Phase2;
        }
    }

    /// Our own unbundle may have CASed this node to a missing copy (same
    /// slots): follow it, or phase 2 would fail against ourselves.
    fn adopt(&mut self, installed: &Installed) {
        for (l, w) in installed {
            if Arc::ptr_eq(l, &self.node) {
                self.wrapper = w.clone();
            }
        }
    }

    fn restart(&mut self) {
        self.collected.clear();
        self.idx = 0;
        self.incomplete = false;
        self.pc = BundlePc::Phase1;
    }
}

fn disturbed() -> Next {
    Next::Return(Outcome::Bundle(BundleResult::Disturbed))
}

/// Collects one child's packet per step (or consumes the result of the
/// recursive bundle / unbundle it started for that child).
/// TLA+: BundlePhase1
pub(crate) fn bundle_phase1(f: &mut BundleFrame, returned: Option<Outcome>) -> Next {
    if let Some(outcome) = returned {
        return match outcome {
            Outcome::Bundle(BundleResult::Success(w)) => {
                let p = w.own_packet().clone();
                f.push(Some(p), Some(w));
                Next::Stay
            }
            Outcome::Unbundle(UnbundleResult::NewSubvalue(installed)) => {
                // The child has priority now: look at it again.
                f.adopt(&installed);
                Next::Stay
            }
            Outcome::Unbundle(UnbundleResult::Collided) => {
                // Already inside this bundle by another path (hard link).
                f.push(None, None);
                Next::Stay
            }
            _ => disturbed(),
        };
    }
    if f.idx == 0 && f.children().nodes.is_empty() {
        f.pc = BundlePc::Phase2;
        return Next::Stay;
    }
    let child = f.children().nodes[f.idx].clone();
    if Arc::ptr_eq(&child, &f.node) {
        // A node listed as its own child cannot be bundled into itself.
        f.push(None, None);
        return Next::Stay;
    }
    let cw = child.load();
    if cw.has_priority() {
        let p = cw.own_packet().clone();
        if p.is_complete() {
            f.push(Some(p), Some(cw));
            return Next::Stay;
        }
        return Next::Call(Frame::Bundle(BundleFrame::new(child, cw, f.serial, false)));
    }
    if cw.is_bundled_by(&f.node) {
        let slot = f.children().slots[f.idx].clone();
        if let Some(p) = slot.filter(|p| p.is_complete()) {
            f.push(Some(p), None);
            return Next::Stay;
        }
    }
    // Bundled elsewhere, in limbo, or our slot for it is stale: bring it
    // back to priority first (detecting a second path into this bundle).
    Next::Call(Frame::Unbundle(UnbundleFrame::new(
        child,
        cw,
        UnbundleMode::Bundle { serial: f.serial },
    )))
}

/// Publishes the collected slots, still marked missing.
/// TLA+: BundlePhase2
pub(crate) fn bundle_phase2(f: &mut BundleFrame) -> Next {
    let old = f.wrapper.own_packet();
    let mut children: Children = (**f.children()).clone();
    for (slot, c) in children.slots.iter_mut().zip(f.collected.iter()) {
        *slot = c.packet.clone();
    }
    let packet = Packet {
        payload: old.payload.clone(),
        children: Some(Arc::new(children)),
        missing: true,
    };
    let next = PacketWrapper::priority(Arc::new(packet), f.serial);
    match f.node.slot.compare_exchange(&f.wrapper, next.clone()) {
        Ok(()) => {
            f.wrapper = next;
            f.idx = 0;
            f.pc = BundlePc::Phase3;
            Next::Stay
        }
        Err(_) => disturbed(),
    }
}

/// Turns one collected priority child into a bundled reference.
/// TLA+: BundlePhase3
pub(crate) fn bundle_phase3(f: &mut BundleFrame) -> Next {
    while f.idx < f.collected.len() && f.collected[f.idx].wrapper.is_none() {
        f.idx += 1;
    }
    if f.idx == f.collected.len() {
        f.pc = BundlePc::Phase4;
        return Next::Stay;
    }
    let i = f.idx;
    let child = f.children().nodes[i].clone();
    let expected = f.collected[i].wrapper.take().expect("checked above");
    let next = PacketWrapper::bundled(&f.node, i, f.serial);
    match child.slot.compare_exchange(&expected, next) {
        Ok(()) => {
            f.idx += 1;
            Next::Stay
        }
        Err(e) if e.actual.serial == f.serial => {
            // Changed by this very bundle through another path: collect again.
            f.restart();
            Next::Stay
        }
        Err(_) => disturbed(),
    }
}

/// Marks the bundle complete (the root of a snapshot always; a nested
/// bundle only when nothing below it is void or missing).
/// TLA+: BundlePhase4
pub(crate) fn bundle_phase4(f: &mut BundleFrame) -> Next {
    let missing = !f.is_root && f.incomplete;
    let packet = f.wrapper.own_packet().with_missing(missing);
    if f.is_root && f.incomplete && !packet::all_sub_reachable(&packet) {
        return disturbed();
    }
    let next = PacketWrapper::priority(Arc::new(packet), f.serial);
    match f.node.slot.compare_exchange(&f.wrapper, next.clone()) {
        Ok(()) => Next::Return(Outcome::Bundle(BundleResult::Success(next))),
        Err(_) => disturbed(),
    }
}
