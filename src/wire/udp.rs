//! UDP header: 8 bytes, all present for a knock. The length field and the
//! checksum are not checked; the IP layer bounds the payload.

use super::{be16, Layer, Malformed};

pub(crate) mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the UDP header (RFC 768): ports, length, checksum.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A read-only view of a UDP datagram.
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

    /// The 8-byte header must be present.
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Truncated(Layer::Udp));
        }
        Ok(())
    }

    /// Hands back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port field (RFC 768).
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// The destination port field (RFC 768): the knocked port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field (RFC 768) as sent, header included; not validated.
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The checksum field (RFC 768) as sent (0: none); not verified.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The captured payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// UDP 53124 -> 1234, length 12, checksum 0x3b1d, payload "knoc".
    static PACKET_BYTES: [u8; 12] = [
        0xcf, 0x84, 0x04, 0xd2, 0x00, 0x0c, 0x3b, 0x1d, //
        0x6b, 0x6e, 0x6f, 0x63,
    ];

    #[test]
    fn reads_header_fields() {
        let udp = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(udp.src_port(), 53124);
        assert_eq!(udp.dst_port(), 1234);
        assert_eq!(udp.length(), 12);
        assert_eq!(udp.checksum(), 0x3b1d);
        assert_eq!(udp.payload(), b"knoc");
    }

    #[test]
    fn header_alone_is_enough() {
        let udp = Packet::new_checked(&PACKET_BYTES[..HEADER_LEN]).unwrap();
        assert_eq!(udp.dst_port(), 1234);
        assert!(udp.payload().is_empty());
    }

    #[test]
    fn rejects_short_header() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET_BYTES[..len]),
                Err(Malformed::Truncated(Layer::Udp))
            );
        }
    }
}
