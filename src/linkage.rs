//! The linkage: a node's one shared, mutable word.
//!
//! All of a node's state changes are CASes of the wrapper pointer in its
//! linkage. The linkage is reference counted separately from user handles:
//! parents' child lists hold it strongly, bundled children refer to it
//! weakly (so a tree has no reference cycles).

use crate::packet::Packet;
use crate::serial::{self, Serial};
use crate::sync::{ArcCell, AtomicU64};
use crate::wrapper::PacketWrapper;
use std::any::TypeId;
use std::sync::Arc;

#[doc(hidden)]
pub struct Linkage {
    pub(crate) slot: ArcCell<PacketWrapper>,
    /// Priority tag: 0, or the stamp of the transaction that owns this
    /// linkage's CASes for now (see `negotiation`).
    pub(crate) tag: AtomicU64,
    pub(crate) payload_type: TypeId,
    pub(crate) type_name: &'static str,
    /// The name given by `Node::named`, for `Debug`, errors and panics.
    pub(crate) name: Option<Arc<str>>,
    /// Set once this node is put in any child list (a transaction's
    /// working version included), never cleared. A node never listed is in
    /// no tree: the lookups an insert of a fresh node makes (is it in this
    /// tree already? under the parent?) answer without a walk. Not part of
    /// the protocol: a hint whose only use is to skip a search that would
    /// find nothing.
    listed: std::sync::atomic::AtomicBool,
}

impl Linkage {
    pub(crate) fn new(
        packet: Arc<Packet>,
        payload_type: TypeId,
        type_name: &'static str,
        name: Option<Arc<str>>,
    ) -> Arc<Self> {
        let serial: Serial = serial::next(0);
        Arc::new(Linkage {
            slot: ArcCell::new(PacketWrapper::priority(packet, serial)),
            tag: AtomicU64::new(0),
            payload_type,
            type_name,
            name,
            listed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Called before this node enters a child list. Relaxed suffices: the
    /// list reaches another thread only through a wrapper CAS (release)
    /// and load (acquire), which order this store before that thread's
    /// reads of the flag.
    #[inline]
    pub(crate) fn mark_listed(&self) {
        if !self.listed.load(std::sync::atomic::Ordering::Relaxed) {
            self.listed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether this node has ever been put in a child list.
    #[inline]
    pub(crate) fn is_listed(&self) -> bool {
        self.listed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One load of the current wrapper.
    #[inline]
    pub(crate) fn load(&self) -> Arc<PacketWrapper> {
        self.slot.load()
    }
}

impl Drop for Linkage {
    /// A node that nobody references any more still owns the packets of the
    /// children bundled into it. Hand each such child its packet back (a
    /// priority wrapper), so that children kept alive elsewhere keep their
    /// state. Only children can still reach this linkage (weakly, and the
    /// weak upgrade already fails), so our own wrapper is stable here.
    /// TLA+: DropStart
    fn drop(&mut self) {
        let w = self.slot.load();
        let Some(packet) = w.packet.as_ref() else {
            return;
        };
        let Some(children) = packet.children.as_ref() else {
            return;
        };
        for (child, slot) in children.nodes.iter().zip(children.slots.iter()) {
            if let Some(sub) = slot {
                self.hand_back(child, sub);
            }
        }
    }
}

impl Linkage {
    /// One child of a dropped node: while its wrapper still names us, CAS
    /// its packet back as a priority wrapper. No tag is read or written:
    /// nobody can wait on a dropped node, and every other thread that meets
    /// the child meanwhile finds its parent gone and looks again
    /// (`unbundle_walk`). A failed CAS changes nothing, so the spec merges
    /// the load that leads to the successful CAS with it.
    /// TLA+: DropChild
    fn hand_back(&self, child: &Linkage, sub: &Arc<Packet>) {
        let me: *const Linkage = self;
        loop {
            let cw = child.load();
            let mine = cw
                .bundled_by
                .as_ref()
                .is_some_and(|p| std::ptr::eq(p.as_ptr(), me));
            if !mine {
                return;
            }
            let next = PacketWrapper::priority(sub.clone(), serial::next(cw.serial));
            if child.slot.compare_exchange(&cw, next).is_ok() {
                return;
            }
        }
    }
}

impl std::fmt::Debug for Linkage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&crate::error::NodeName::of(self), f)
    }
}
