//! Ethernet II header (also what AF_PACKET shows on `lo`, with zero MACs).

use super::{be16, Layer, Malformed};

mod field {
    use crate::wire::Field;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header: two MAC addresses and the ethertype.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Ethertypes the decoder distinguishes (IEEE registry values).
pub mod ethertype {
    /// IPv4 (RFC 894).
    pub const IPV4: u16 = 0x0800;
    /// ARP (RFC 826): never a knock.
    pub const ARP: u16 = 0x0806;
    /// An IEEE 802.1Q VLAN tag follows (customer TPID).
    pub const VLAN: u16 = 0x8100;
    /// IPv6 (RFC 2464).
    pub const IPV6: u16 = 0x86dd;
    /// An IEEE 802.1ad service tag (QinQ outer TPID) follows.
    pub const QINQ: u16 = 0x88a8;
    /// Pre-802.1ad QinQ TPID, still emitted by some switches.
    pub const QINQ_LEGACY: u16 = 0x9100;
}

/// A read-only view of an Ethernet II frame.
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

    /// The 14-byte header must be present.
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Truncated(Layer::Ethernet));
        }
        Ok(())
    }

    /// Hands back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination MAC address (bytes 0..6).
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        mac
    }

    /// The source MAC address (bytes 6..12).
    pub fn src_addr(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        mac
    }

    /// The ethertype (or, below 0x0600, an 802.3 length: never IP).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the header, including any VLAN tags and padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// An ARP request from 02:c0:ff:ee:00:02 to broadcast, padded to 60 bytes.
    static FRAME_BYTES: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x02, // source
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02, 0x0a,
        0xc7, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc7, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00,
    ];

    #[test]
    fn reads_header_fields() {
        let eth = Packet::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(eth.dst_addr(), [0xff; 6]);
        assert_eq!(eth.src_addr(), [0x02, 0xc0, 0xff, 0xee, 0x00, 0x02]);
        assert_eq!(eth.ethertype(), ethertype::ARP);
        assert_eq!(eth.payload().len(), 46);
        assert_eq!(&eth.payload()[..2], &[0x00, 0x01]);
    }

    #[test]
    fn header_alone_is_enough() {
        let eth = Packet::new_checked(&FRAME_BYTES[..HEADER_LEN]).unwrap();
        assert_eq!(eth.ethertype(), ethertype::ARP);
        assert!(eth.payload().is_empty());
    }

    #[test]
    fn rejects_every_shorter_buffer() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&FRAME_BYTES[..len]),
                Err(Malformed::Truncated(Layer::Ethernet)),
                "length {len}"
            );
        }
    }
}
