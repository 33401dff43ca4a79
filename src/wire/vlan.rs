//! An 802.1Q / 802.1ad tag left in the frame bytes: the 4 bytes after a TPID
//! ethertype (TCI, then the ethertype of what follows).
//!
//! The kernel usually moves the outer tag into the ring metadata before
//! AF_PACKET sees the frame, so the bytes hold either no tag or the inner
//! tag(s) of a QinQ frame; the decoder skips whatever is left.

use super::ethernet::ethertype;
use super::{be16, Layer, Malformed};

mod field {
    use crate::wire::Field;

    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// Length of one tag after its TPID: the TCI and the next ethertype.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Does this ethertype announce a VLAN tag?
pub const fn is_tag(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
    )
}

/// A read-only view of one VLAN tag and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on short input.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len); no accessor can
    /// panic afterwards.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Malformed> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The 4-byte tag must be present.
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Truncated(Layer::Vlan));
        }
        Ok(())
    }

    /// Hands back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The priority code point (PCP, IEEE 802.1Q): the top 3 bits of the TCI.
    pub fn priority(&self) -> u8 {
        (be16(self.buffer.as_ref(), field::TCI.start) >> 13) as u8
    }

    /// The VLAN identifier (VID, IEEE 802.1Q): the low 12 bits of the TCI.
    pub fn vlan_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI.start) & 0x0fff
    }

    /// Ethertype of what follows the tag (possibly another tag).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the tag: another tag or the network header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// An 802.1Q tag (priority 5, VLAN 100) announcing IPv4, then the first
    /// bytes of the IPv4 header.
    static TAG_BYTES: [u8; 8] = [
        0xa0, 0x64, // PCP 5, DEI 0, VID 100
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x28,
    ];

    #[test]
    fn reads_tag_fields() {
        let tag = Packet::new_checked(&TAG_BYTES[..]).unwrap();
        assert_eq!(tag.priority(), 5);
        assert_eq!(tag.vlan_id(), 100);
        assert_eq!(tag.ethertype(), ethertype::IPV4);
        assert_eq!(tag.payload(), &[0x45, 0x00, 0x00, 0x28]);
    }

    #[test]
    fn rejects_every_shorter_buffer() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&TAG_BYTES[..len]),
                Err(Malformed::Truncated(Layer::Vlan))
            );
        }
    }

    #[test]
    fn knows_the_tag_protocol_ids() {
        assert!(is_tag(0x8100));
        assert!(is_tag(0x88a8));
        assert!(is_tag(0x9100));
        assert!(!is_tag(0x0800));
        assert!(!is_tag(0x86dd));
        assert!(!is_tag(0x0806));
    }
}
