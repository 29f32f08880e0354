//! What a scheduling point did: its name and its shared-memory operations.

use super::*;

/// What one scheduling point did.
pub(crate) struct StepInfo {
    pub(crate) name: &'static str,
    pub(crate) completed: bool,
    /// The shared-memory operations of the frame step (none for the other
    /// scheduling points).
    pub(crate) ops: Vec<Op>,
}

/// One shared-memory operation of a step, named by the configuration's
/// linkage index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    SlotLoad(usize),
    SlotCas(usize, bool),
    /// The tag of the linkage, and whether it was free for the stepping
    /// thread (empty or its own).
    TagLoad(usize, bool),
    TagCas(usize, bool),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ok = |b: bool| if b { "ok" } else { "fail" };
        match *self {
            Op::SlotLoad(_) => write!(f, "load"),
            Op::SlotCas(_, b) => write!(f, "cas:{}", ok(b)),
            Op::TagLoad(_, free) => write!(f, "tag-load:{}", if free { "free" } else { "foreign" }),
            Op::TagCas(_, b) => write!(f, "tag-cas:{}", ok(b)),
        }
    }
}

/// What the explorer saw of one step function's shared-memory operations,
/// over every execution of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepOps {
    pub(crate) runs: usize,
    /// Most slot operations (loads and CASes of a linkage's wrapper) in one run.
    pub(crate) max_slot_ops: usize,
    pub(crate) slot_cas: usize,
    /// Slot CASes preceded, in the same step, by a load of that linkage's
    /// tag that found it free (the `can_proceed` gate).
    pub(crate) gated_cas: usize,
    /// Slot CASes issued after the same step saw that linkage's tag foreign.
    pub(crate) cas_past_foreign_tag: usize,
    pub(crate) failed_cas: usize,
    /// Failed slot CASes followed, in the same step, by a tag operation on
    /// that linkage (`tag_after_fail`).
    pub(crate) tagged_after_fail: usize,
    /// Failed slot CASes of a soft attempt with no tag operation after
    /// them (a soft loss: `Negotiator::soft`, the spec's `Soft(t)`).
    pub(crate) soft_untagged: usize,
    /// Runs that ended blocked (a foreign tag and no CAS).
    pub(crate) blocked: usize,
    /// Runs with a tag operation after a wrapper operation (`tag_after_fail`
    /// after a failed CAS or a conflict seen by a load).
    pub(crate) tagging: usize,
    /// Runs that CAS tags without any wrapper operation (`clear_my_tags`).
    pub(crate) clearing: usize,
    /// The distinct sequences seen.
    pub(crate) patterns: std::collections::BTreeSet<String>,
}

impl StepOps {
    pub(super) fn add(&mut self, ops: &[Op], soft: bool) {
        self.runs += 1;
        let slot = ops
            .iter()
            .filter(|o| matches!(o, Op::SlotLoad(_) | Op::SlotCas(..)))
            .count();
        self.max_slot_ops = self.max_slot_ops.max(slot);
        for (i, o) in ops.iter().enumerate() {
            let Op::SlotCas(l, ok) = *o else { continue };
            self.slot_cas += 1;
            let before = &ops[..i];
            if before.contains(&Op::TagLoad(l, true)) {
                self.gated_cas += 1;
            }
            if before.contains(&Op::TagLoad(l, false)) {
                self.cas_past_foreign_tag += 1;
            }
            if !ok {
                self.failed_cas += 1;
                if ops[i + 1..]
                    .iter()
                    .any(|a| matches!(*a, Op::TagLoad(x, _) | Op::TagCas(x, _) if x == l))
                {
                    self.tagged_after_fail += 1;
                } else if soft {
                    self.soft_untagged += 1;
                }
            }
        }
        if ops.iter().any(|o| matches!(o, Op::TagLoad(_, false)))
            && !ops.iter().any(|o| matches!(o, Op::SlotCas(..)))
        {
            self.blocked += 1;
        }
        let is_slot = |o: &Op| matches!(o, Op::SlotLoad(_) | Op::SlotCas(..));
        let is_tag = |o: &Op| matches!(o, Op::TagLoad(..) | Op::TagCas(..));
        if let Some(first) = ops.iter().position(is_slot) {
            if ops[first..].iter().any(is_tag) {
                self.tagging += 1;
            }
        } else if ops.iter().any(|o| matches!(o, Op::TagCas(..))) {
            self.clearing += 1;
        }
        let p: Vec<String> = ops.iter().map(ToString::to_string).collect();
        self.patterns.insert(p.join(" "));
    }

    #[cfg_attr(feature = "no-privilege", allow(dead_code))]
    pub(crate) fn merge(&mut self, o: &StepOps) {
        self.runs += o.runs;
        self.max_slot_ops = self.max_slot_ops.max(o.max_slot_ops);
        self.slot_cas += o.slot_cas;
        self.gated_cas += o.gated_cas;
        self.cas_past_foreign_tag += o.cas_past_foreign_tag;
        self.failed_cas += o.failed_cas;
        self.tagged_after_fail += o.tagged_after_fail;
        self.soft_untagged += o.soft_untagged;
        self.blocked += o.blocked;
        self.tagging += o.tagging;
        self.clearing += o.clearing;
        self.patterns.extend(o.patterns.iter().cloned());
    }
}

/// The slot and tag words of each linkage, for [`ops_of`].
pub(super) fn words_of(links: &[Arc<Linkage>]) -> Vec<(usize, usize)> {
    links
        .iter()
        .map(|l| {
            (
                std::ptr::from_ref(&l.slot) as usize,
                std::ptr::from_ref(&l.tag) as usize,
            )
        })
        .collect()
}

/// Names the recorded operations by linkage index in `words` (each
/// linkage's slot and tag word).
pub(super) fn ops_of(
    words: &[(usize, usize)],
    events: &[crate::sync::trace::Event],
    stamp: u64,
) -> Vec<Op> {
    use crate::sync::trace::Access;
    // Accesses to other linkages are the deferred destruction of an
    // earlier replay's trees (`Linkage::drop`), run by the epoch
    // collector whenever this step pins: not the step's.
    events
        .iter()
        .filter_map(|e| {
            let slot = words.iter().position(|w| w.0 == e.addr);
            let tag = words.iter().position(|w| w.1 == e.addr);
            Some(match (e.access, slot, tag) {
                (Access::SlotLoad, Some(i), _) => Op::SlotLoad(i),
                (Access::SlotCas { ok }, Some(i), _) => Op::SlotCas(i, ok),
                (Access::TagLoad { value }, _, Some(i)) => {
                    Op::TagLoad(i, value == 0 || serial::same_thread(value, stamp))
                }
                (Access::TagCas { ok }, _, Some(i)) => Op::TagCas(i, ok),
                _ => return None,
            })
        })
        .collect()
}
