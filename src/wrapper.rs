//! Packet wrappers: what a linkage points at.
//!
//! A wrapper is immutable; every state change of a node is a new wrapper
//! installed by one CAS on the node's linkage. Its three states:
//!
//! | state | `bundled_by` | `packet` | meaning |
//! |---|---|---|---|
//! | priority (P) | none | some | the node owns its current packet |
//! | bundled (B) | parent | none | the packet lives in the parent's packet (recursively up to a P ancestor) |
//! | limbo (L) | parent | some | transitional (insert / release): if the parent does not list the node, the carried packet is current |

use crate::limbo::LimboOwner;
use crate::linkage::Linkage;
use crate::packet::Packet;
use crate::serial::Serial;
use std::sync::{Arc, Weak};

pub(crate) struct PacketWrapper {
    pub(crate) packet: Option<Arc<Packet>>,
    pub(crate) bundled_by: Option<Weak<Linkage>>,
    /// Index hint of this node in the parent's child list.
    pub(crate) index: usize,
    pub(crate) serial: Serial,
    /// The attempt that installed a limbo wrapper (`None` otherwise).
    pub(crate) owner: Option<Arc<LimboOwner>>,
}

impl PacketWrapper {
    pub(crate) fn priority(packet: Arc<Packet>, serial: Serial) -> Arc<Self> {
        Arc::new(PacketWrapper {
            packet: Some(packet),
            bundled_by: None,
            index: 0,
            serial,
            owner: None,
        })
    }

    pub(crate) fn bundled(parent: &Arc<Linkage>, index: usize, serial: Serial) -> Arc<Self> {
        Arc::new(PacketWrapper {
            packet: None,
            bundled_by: Some(Arc::downgrade(parent)),
            index,
            serial,
            owner: None,
        })
    }

    pub(crate) fn limbo(
        parent: &Arc<Linkage>,
        index: usize,
        serial: Serial,
        packet: Arc<Packet>,
        owner: &Arc<LimboOwner>,
    ) -> Arc<Self> {
        Arc::new(PacketWrapper {
            packet: Some(packet),
            bundled_by: Some(Arc::downgrade(parent)),
            index,
            serial,
            owner: Some(owner.clone()),
        })
    }

    /// A limbo wrapper whose installing attempt may still commit, and is
    /// not `mine`.
    pub(crate) fn live_foreign_limbo(
        &self,
        mine: Option<&Arc<LimboOwner>>,
    ) -> Option<&Arc<LimboOwner>> {
        let owner = self.owner.as_ref()?;
        let own = mine.is_some_and(|m| Arc::ptr_eq(m, owner));
        (!own && owner.live()).then_some(owner)
    }

    #[inline]
    pub(crate) fn has_priority(&self) -> bool {
        self.bundled_by.is_none()
    }

    /// The packet of a priority wrapper.
    #[inline]
    pub(crate) fn own_packet(&self) -> &Arc<Packet> {
        debug_assert!(self.has_priority());
        self.packet
            .as_ref()
            .expect("a priority wrapper always holds a packet")
    }

    /// Whether this wrapper is bundled into (or in limbo under) `parent`.
    #[inline]
    pub(crate) fn is_bundled_by(&self, parent: &Linkage) -> bool {
        let p: *const Linkage = parent;
        self.bundled_by
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), p))
    }
}
