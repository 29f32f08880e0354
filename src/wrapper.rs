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
}

impl PacketWrapper {
    pub(crate) fn priority(packet: Arc<Packet>, serial: Serial) -> Arc<Self> {
        Arc::new(PacketWrapper {
            packet: Some(packet),
            bundled_by: None,
            index: 0,
            serial,
        })
    }

    pub(crate) fn bundled(parent: &Arc<Linkage>, index: usize, serial: Serial) -> Arc<Self> {
        Arc::new(PacketWrapper {
            packet: None,
            bundled_by: Some(Arc::downgrade(parent)),
            index,
            serial,
        })
    }

    pub(crate) fn limbo(
        parent: &Arc<Linkage>,
        index: usize,
        serial: Serial,
        packet: Arc<Packet>,
    ) -> Arc<Self> {
        Arc::new(PacketWrapper {
            packet: Some(packet),
            bundled_by: Some(Arc::downgrade(parent)),
            index,
            serial,
        })
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
