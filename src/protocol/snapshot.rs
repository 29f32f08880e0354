//! Taking a snapshot of a subtree: `SnapRead`, `SnapCheck`.
//!
//! Fast path: the node has priority and its packet is complete, so one load
//! is the whole snapshot. Otherwise the node is bundled into an ancestor
//! (read its packet there, or unbundle it) or its packet is missing
//! (bundle the subtree: [`super::bundle`]).

use super::{
    BundleFrame, BundleResult, Frame, Next, Outcome, SnapResult, UnbundleFrame, UnbundleMode,
    UnbundleResult,
};
use crate::linkage::Linkage;
use crate::negotiation::Negotiator;
use crate::serial;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapPc {
    Read,
    Check,
}

pub(crate) struct SnapshotFrame {
    pub(crate) node: Arc<Linkage>,
    pub(crate) pc: SnapPc,
    /// Attempts that had to start over (contention).
    pub(crate) retries: u32,
}

impl SnapshotFrame {
    pub(crate) fn new(node: Arc<Linkage>) -> Self {
        SnapshotFrame {
            node,
            pc: SnapPc::Read,
            retries: 0,
        }
    }

    pub(crate) fn step(&mut self, returned: Option<Outcome>, _neg: &mut Negotiator) -> Next {
        match self.pc {
            SnapPc::Read => snap_read(self),
            SnapPc::Check => snap_check(self, returned),
        }
    }
}

/// Entry of a snapshot (no shared-memory operation).
/// TLA+: SnapRead
pub(crate) fn snap_read(f: &mut SnapshotFrame) -> Next {
    f.pc = SnapPc::Check;
    Next::Stay
}

/// Loads the node's wrapper and decides: done, bundle, or look inside the
/// ancestor that bundles it. Also consumes what those sub-operations return.
/// TLA+: SnapCheck
pub(crate) fn snap_check(f: &mut SnapshotFrame, returned: Option<Outcome>) -> Next {
    if let Some(outcome) = returned {
        return match outcome {
            Outcome::Bundle(BundleResult::Success(w)) => {
                let packet = w.own_packet().clone();
                Next::Return(Outcome::Snapshot(SnapResult {
                    packet,
                    wrapper: Some(w),
                }))
            }
            Outcome::Unbundle(UnbundleResult::Found(packet)) => {
                Next::Return(Outcome::Snapshot(SnapResult {
                    packet,
                    wrapper: None,
                }))
            }
            // The node has priority now, or something moved: look again.
            _ => {
                f.retries += 1;
                tracing::trace!(retries = f.retries, "snapshot retry");
                Next::Stay
            }
        };
    }
    let w = f.node.load();
    if w.has_priority() {
        if w.own_packet().is_complete() {
            let packet = w.own_packet().clone();
            return Next::Return(Outcome::Snapshot(SnapResult {
                packet,
                wrapper: Some(w),
            }));
        }
        let bundle_serial = serial::next(w.serial);
        return Next::Call(Frame::from(BundleFrame::new(
            f.node.clone(),
            w,
            bundle_serial,
            true,
            &Default::default(),
        )));
    }
    Next::Call(Frame::from(UnbundleFrame::new(
        f.node.clone(),
        w,
        UnbundleMode::Snapshot,
    )))
}
