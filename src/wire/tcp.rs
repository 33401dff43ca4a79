//! TCP header: the ports and the flag byte are all a knock needs, so only the
//! fixed 20 bytes must be captured; options and payload may be cut.

use super::{be16, Layer, Malformed};

pub(crate) mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high nibble) and the NS bit (low bit).
    pub const DATA_OFF: usize = 12;
    /// CWR ECE URG ACK PSH RST SYN FIN.
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// The fixed header (data offset 5).
pub const MIN_HEADER_LEN: usize = field::URGENT.end;

/// Flag bits beyond the six classic ones in [`crate::knock::flags`].
pub mod flags {
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

/// A read-only view of a TCP header.
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

    /// The fixed 20 bytes must be present and the data offset at least 5.
    /// Options past them are not required: the snap length may cut them.
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < MIN_HEADER_LEN {
            return Err(Malformed::Truncated(Layer::Tcp));
        }
        if self.header_len() < MIN_HEADER_LEN {
            return Err(Malformed::BadHeaderLength(Layer::Tcp));
        }
        Ok(())
    }

    /// Hands back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port field (RFC 9293).
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// The destination port field (RFC 9293): the knocked port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The sequence number field (RFC 9293).
    pub fn seq_number(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQ_NUM];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The acknowledgment number field (RFC 9293), meaningful with ACK set.
    pub fn ack_number(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::ACK_NUM];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Header length in bytes: the data offset field (RFC 9293) times 4,
    /// options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The raw flag byte (byte 13), ECE and CWR included; the matcher masks.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The NS (ECN nonce, RFC 3540, historic) bit, outside the flag byte.
    pub fn ns(&self) -> bool {
        self.buffer.as_ref()[field::DATA_OFF] & 1 != 0
    }

    /// The window field (RFC 9293), unscaled.
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// The checksum field (RFC 9293) as sent; not verified: it covers the
    /// payload, which the snap length may cut.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The urgent pointer field (RFC 9293), meaningful with URG set.
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT.start)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::knock::flags::{ACK, FIN, PSH, RST, SYN, URG};

    /// TCP 40000 -> 22, seq 0x5a3e6c01, SYN, window 64240, data offset 10:
    /// MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    static PACKET_BYTES: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00, //
        0xa0, 0x02, 0xfa, 0xf0, 0x0d, 0x9b, 0x00, 0x00, //
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x9d, 0x1c, 0x2a, 0x31, //
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn reads_header_fields() {
        let tcp = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(tcp.src_port(), 40000);
        assert_eq!(tcp.dst_port(), 22);
        assert_eq!(tcp.seq_number(), 0x5a3e6c01);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), SYN);
        assert!(!tcp.ns());
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.checksum(), 0x0d9b);
        assert_eq!(tcp.urgent_at(), 0);
    }

    #[test]
    fn options_may_be_cut_by_the_snap_length() {
        for len in MIN_HEADER_LEN..=PACKET_BYTES.len() {
            let tcp = Packet::new_checked(&PACKET_BYTES[..len]).unwrap();
            assert_eq!(tcp.dst_port(), 22);
        }
    }

    #[test]
    fn returns_every_flag_byte_raw() {
        let mut bytes = PACKET_BYTES;
        for raw in 0..=u8::MAX {
            bytes[13] = raw;
            assert_eq!(Packet::new_checked(&bytes[..]).unwrap().flags(), raw);
        }
        bytes[13] = flags::CWR | flags::ECE | SYN;
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().flags(), 0xc2);
        bytes[13] = FIN | SYN | RST | PSH | ACK | URG;
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().flags(), 0x3f);
    }

    #[test]
    fn reads_ns_outside_the_flag_byte() {
        let mut bytes = PACKET_BYTES;
        bytes[12] = 0xa1;
        let tcp = Packet::new_checked(&bytes[..]).unwrap();
        assert!(tcp.ns());
        assert_eq!(tcp.flags(), SYN);
        assert_eq!(tcp.header_len(), 40);
    }

    #[test]
    fn rejects_short_header() {
        for len in 0..MIN_HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET_BYTES[..len]),
                Err(Malformed::Truncated(Layer::Tcp))
            );
        }
    }

    #[test]
    fn rejects_data_offset_below_five() {
        let mut bytes = PACKET_BYTES;
        for offset in 0..5u8 {
            bytes[12] = offset << 4;
            assert_eq!(
                Packet::new_checked(&bytes[..]),
                Err(Malformed::BadHeaderLength(Layer::Tcp)),
                "data offset {offset}"
            );
        }
        bytes[12] = 0x50;
        assert!(Packet::new_checked(&bytes[..]).is_ok());
    }
}
