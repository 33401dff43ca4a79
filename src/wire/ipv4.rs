//! IPv4 header. Options are skipped via IHL. The header checksum can be
//! verified ([`Packet::checksum_ok`]): the host drops a header whose sum is
//! wrong, so such a frame is no knock. (Checksum offload concerns the
//! transport checksum of outgoing frames, which the capture never takes;
//! the header checksum is always filled in.)

use std::net::Ipv4Addr;

use super::{be16, Layer, Malformed};

pub(crate) mod field {
    use crate::wire::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Header length without options (IHL 5).
pub const MIN_HEADER_LEN: usize = field::DST_ADDR.end;

/// A read-only view of an IPv4 packet, possibly cut short by the snap length
/// or followed by link-layer padding.
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

    /// Version 4, IHL >= 5, total length >= header length, and the whole
    /// header (with options) captured. The buffer may be shorter than the
    /// total length (snap length) or longer (padding).
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Malformed::Truncated(Layer::Ipv4));
        }
        if self.version() != 4 {
            return Err(Malformed::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(Malformed::BadHeaderLength(Layer::Ipv4));
        }
        if self.total_len() < header_len {
            return Err(Malformed::BadTotalLength(Layer::Ipv4));
        }
        if len < header_len {
            return Err(Malformed::Truncated(Layer::Ipv4));
        }
        Ok(())
    }

    /// Hands back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (RFC 791): 4 once `check_len` has passed.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes: the IHL field (RFC 791) times 4.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former type-of-service byte: DSCP (RFC 2474) and ECN (RFC 3168).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length field (RFC 791): the packet as sent, not as captured.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::LENGTH.start))
    }

    /// The identification field (RFC 791), shared by a packet's fragments.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The Don't Fragment flag (RFC 791).
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & 0x4000 != 0
    }

    /// The More Fragments flag (RFC 791): set on every fragment but the last.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & 0x2000 != 0
    }

    /// The fragment offset field (RFC 791) in bytes (it counts 8-byte units);
    /// only offset 0 carries the transport header.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::FLG_OFF.start) & 0x1fff) * 8
    }

    /// The time-to-live field (RFC 791).
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol field (RFC 791): what follows the header, see
    /// [`ip_proto`](super::ip_proto).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field (RFC 791) as sent;
    /// [`checksum_ok`](Self::checksum_ok) verifies it.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The source address field (RFC 791).
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address field (RFC 791).
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Does the header (with options) sum to 0xffff in ones' complement,
    /// as RFC 791 demands? `check_len` has proved the header is present.
    pub fn checksum_ok(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        let mut sum: u32 = header
            .chunks_exact(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    /// Was the whole packet captured (no snap-length cut)?
    pub fn is_complete(&self) -> bool {
        self.buffer.as_ref().len() >= self.total_len()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The captured payload: after the options, up to the total length or
    /// the end of the capture, whichever comes first (padding excluded).
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        let end = self.total_len().min(data.len());
        &data[self.header_len()..end]
    }
}

fn addr(bytes: &[u8]) -> Ipv4Addr {
    let mut octets = [0; 4];
    octets.copy_from_slice(bytes);
    Ipv4Addr::from(octets)
}

#[cfg(test)]
mod test {
    use super::*;

    /// IPv4 10.199.0.2 -> 10.199.0.1, IHL 6 (Router Alert option), total 44,
    /// ident 0x1c46, DF, TTL 64, TCP; then 20 bytes of TCP header.
    static PACKET_BYTES: [u8; 44] = [
        0x46, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, //
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01, //
        0x94, 0x04, 0x00, 0x00, // Router Alert
        0x9c, 0x40, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00, //
        0x50, 0x02, 0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00,
    ];

    fn patched(edits: &[(usize, u8)]) -> [u8; 44] {
        let mut bytes = PACKET_BYTES;
        for &(at, value) in edits {
            bytes[at] = value;
        }
        bytes
    }

    #[test]
    fn reads_header_fields() {
        let ip = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.dscp_ecn(), 0);
        assert_eq!(ip.total_len(), 44);
        assert_eq!(ip.ident(), 0x1c46);
        assert!(ip.dont_frag());
        assert!(!ip.more_frags());
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), 6);
        assert_eq!(ip.checksum(), 0);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 199, 0, 2));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 199, 0, 1));
        assert!(ip.is_complete());
        assert_eq!(ip.payload(), &PACKET_BYTES[24..]);
    }

    #[test]
    fn checksum_is_verified_over_the_options_too() {
        // 0x73f1 is this header's sum complemented (the same header appears,
        // checksum filled in, in wire::test::ETH_IPV4_OPTIONS_TCP).
        let good = patched(&[(10, 0x73), (11, 0xf1)]);
        assert!(Packet::new_checked(&good[..]).unwrap().checksum_ok());
        assert!(!Packet::new_checked(&PACKET_BYTES[..])
            .unwrap()
            .checksum_ok());
        // A bit flipped in the option (byte 22) breaks it.
        let mut bad = good;
        bad[22] ^= 0x10;
        assert!(!Packet::new_checked(&bad[..]).unwrap().checksum_ok());
    }

    #[test]
    fn payload_stops_at_total_length_not_at_padding() {
        let mut padded = [0xa5u8; 60];
        padded[..44].copy_from_slice(&PACKET_BYTES);
        let ip = Packet::new_checked(&padded[..]).unwrap();
        assert!(ip.is_complete());
        assert_eq!(ip.payload(), &PACKET_BYTES[24..]);
    }

    #[test]
    fn snap_cut_packet_is_valid_but_incomplete() {
        let ip = Packet::new_checked(&PACKET_BYTES[..30]).unwrap();
        assert!(!ip.is_complete());
        assert_eq!(ip.payload(), &PACKET_BYTES[24..30]);
        // Cut right after the options: still a valid header, empty payload.
        let ip = Packet::new_checked(&PACKET_BYTES[..24]).unwrap();
        assert!(ip.payload().is_empty());
    }

    #[test]
    fn reads_fragment_fields() {
        // MF set, offset 185 * 8.
        let bytes = patched(&[(6, 0x20), (7, 0xb9)]);
        let ip = Packet::new_checked(&bytes[..]).unwrap();
        assert!(ip.more_frags());
        assert!(!ip.dont_frag());
        assert_eq!(ip.frag_offset(), 1480);
    }

    #[test]
    fn rejects_short_header() {
        for len in 0..MIN_HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET_BYTES[..len]),
                Err(Malformed::Truncated(Layer::Ipv4))
            );
        }
        // 20 bytes present but IHL 6 wants the option too.
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..23]),
            Err(Malformed::Truncated(Layer::Ipv4))
        );
    }

    #[test]
    fn rejects_wrong_version() {
        for ver_ihl in [0x66, 0x06, 0xf6, 0x56] {
            let bytes = patched(&[(0, ver_ihl)]);
            assert_eq!(Packet::new_checked(&bytes[..]), Err(Malformed::BadVersion));
        }
    }

    #[test]
    fn rejects_ihl_below_five() {
        for ihl in 0..5 {
            let bytes = patched(&[(0, 0x40 | ihl)]);
            assert_eq!(
                Packet::new_checked(&bytes[..]),
                Err(Malformed::BadHeaderLength(Layer::Ipv4)),
                "IHL {ihl}"
            );
        }
    }

    #[test]
    fn rejects_ihl_beyond_buffer() {
        // IHL 15 (60 bytes) and a total length that admits it, in 44 bytes.
        let bytes = patched(&[(0, 0x4f), (2, 0x05), (3, 0xdc)]);
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(Malformed::Truncated(Layer::Ipv4))
        );
    }

    #[test]
    fn rejects_total_length_below_header_length() {
        for total in [0u8, 19, 20, 23] {
            let bytes = patched(&[(2, 0), (3, total)]);
            assert_eq!(
                Packet::new_checked(&bytes[..]),
                Err(Malformed::BadTotalLength(Layer::Ipv4)),
                "total {total}"
            );
        }
        // Exactly the header: valid, empty payload.
        let bytes = patched(&[(2, 0), (3, 24)]);
        let ip = Packet::new_checked(&bytes[..]).unwrap();
        assert!(ip.payload().is_empty());
        assert!(ip.is_complete());
    }
}
