//! IPv6 header and the extension headers in front of the transport header.

use std::net::Ipv6Addr;

use super::{be16, blame_ip_length, ip_proto, Layer, Malformed, MAX_EXT_HEADERS};

pub(crate) mod field {
    use crate::wire::Field;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed IPv6 header (RFC 8200), extension headers excluded.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A read-only view of an IPv6 packet, possibly cut short by the snap length
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

    /// The fixed 40-byte header must be present and say version 6. The
    /// payload may be cut (snap length) or followed by padding.
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Truncated(Layer::Ipv6));
        }
        if self.version() != 6 {
            return Err(Malformed::BadVersion);
        }
        Ok(())
    }

    /// Hands back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (RFC 8200): 6 once `check_len` has passed.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// The traffic class field (RFC 8200): DSCP and ECN.
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), field::VER_TC_FLOW.start) >> 4) as u8
    }

    /// The 20-bit flow label field (RFC 8200, RFC 6437).
    pub fn flow_label(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// The payload length field (RFC 8200): bytes after the fixed header as
    /// sent, not as captured. (A jumbogram's
    /// 0 bounds the payload to nothing: jumbograms do not occur on the links
    /// a knock arrives on.)
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::PAYLOAD_LEN.start))
    }

    /// The next header field (RFC 8200): the first extension header or the
    /// transport protocol, see [`ip_proto`].
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// The hop limit field (RFC 8200).
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address field (RFC 8200).
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address field (RFC 8200).
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Was the whole packet captured (no snap-length cut)?
    pub fn is_complete(&self) -> bool {
        self.buffer.as_ref().len() >= HEADER_LEN + self.payload_len()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The captured payload: up to the payload length or the end of the
    /// capture, whichever comes first (padding excluded).
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        let end = (HEADER_LEN + self.payload_len()).min(data.len());
        &data[HEADER_LEN..end]
    }
}

fn addr(bytes: &[u8]) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(bytes);
    Ipv6Addr::from(octets)
}

pub(crate) mod ext_field {
    use crate::wire::Field;

    pub const NXT_HDR: usize = 0;
    pub const LENGTH: usize = 1;
    /// Fragment header only: offset (13 bits, 8-byte units), 2 reserved, M.
    pub const FRAG_OFF_M: Field = 2..4;
    pub const FRAG_IDENT: Field = 4..8;
}

/// Length of the smallest extension header: every kind is a multiple of 8
/// bytes at least 8 long, so a checked header always has `ext_field` bytes.
pub const EXT_MIN_LEN: usize = 8;

/// The extension headers the decoder walks past, in one list that the
/// kernel filter (`capture::filter`) follows too: hop-by-hop, routing,
/// fragment, destination options, authentication. ESP ends the walk (what
/// follows is encrypted), as does anything else.
pub const WALKED_EXT_HEADERS: [u8; 5] = [
    ip_proto::HOP_BY_HOP,
    ip_proto::IPV6_ROUTING,
    ip_proto::IPV6_FRAGMENT,
    ip_proto::IPV6_DEST_OPTS,
    ip_proto::AH,
];

/// How a walked extension header states its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtLength {
    /// Always 8 bytes (fragment).
    Fixed8,
    /// `(byte 1 + 1) * 8` bytes (hop-by-hop, routing, destination options).
    Eights,
    /// `(byte 1 + 2) * 4` bytes (authentication, RFC 4302).
    AhWords,
}

/// The length rule of a walked extension header `kind`.
pub const fn ext_length(kind: u8) -> ExtLength {
    match kind {
        ip_proto::IPV6_FRAGMENT => ExtLength::Fixed8,
        ip_proto::AH => ExtLength::AhWords,
        _ => ExtLength::Eights,
    }
}

/// Is this next-header value one of [`WALKED_EXT_HEADERS`]?
pub const fn is_walked_ext_header(next_header: u8) -> bool {
    let mut i = 0;
    while i < WALKED_EXT_HEADERS.len() {
        if WALKED_EXT_HEADERS[i] == next_header {
            return true;
        }
        i += 1;
    }
    false
}

/// A read-only view of one walked extension header (hop-by-hop, routing,
/// destination options, fragment, AH) and what follows it. The kind comes
/// from the previous header's next-header field because it decides the
/// length unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wraps a buffer without checking it; accessors may panic on short input.
    pub const fn new_unchecked(buffer: T, kind: u8) -> ExtHeader<T> {
        ExtHeader { buffer, kind }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len); no accessor can
    /// panic afterwards.
    pub fn new_checked(buffer: T, kind: u8) -> Result<ExtHeader<T>, Malformed> {
        let header = Self::new_unchecked(buffer, kind);
        header.check_len()?;
        Ok(header)
    }

    /// The whole header, as long as its length field says, must be present.
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < EXT_MIN_LEN || len < self.header_len() {
            return Err(Malformed::Truncated(Layer::Ipv6Ext));
        }
        Ok(())
    }

    /// Hands back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Which extension header this is: the previous header's next-header
    /// value, given to the constructor.
    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// The next header field (RFC 8200, byte 0): what follows this header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NXT_HDR]
    }

    /// Header length in bytes, from the length field (byte 1) by the rule of
    /// [`ext_length`]. Needs only the first 2 bytes, so
    /// `check_len` can call it on a buffer of at least 8.
    #[inline]
    pub fn header_len(&self) -> usize {
        let units = usize::from(self.buffer.as_ref()[ext_field::LENGTH]);
        match ext_length(self.kind) {
            ExtLength::Fixed8 => EXT_MIN_LEN,
            ExtLength::AhWords => (units + 2) * 4,
            ExtLength::Eights => (units + 1) * 8,
        }
    }

    /// The fragment offset field (RFC 8200) in bytes (it counts 8-byte
    /// units); meaningful for a fragment header only.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), ext_field::FRAG_OFF_M.start) & 0xfff8)
    }

    /// The M (more fragments) flag (RFC 8200); meaningful for a fragment
    /// header only.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), ext_field::FRAG_OFF_M.start) & 1 != 0
    }

    /// The identification field (RFC 8200); meaningful for a fragment header
    /// only.
    pub fn frag_ident(&self) -> u32 {
        let b = &self.buffer.as_ref()[ext_field::FRAG_IDENT];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> ExtHeader<&'a T> {
    /// Everything after this header: the next header and on, to the end of
    /// the buffer.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// Where an extension-header walk ended: the first header not walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport<'a> {
    /// Its protocol number (TCP, UDP, ESP, …).
    pub protocol: u8,
    /// Its bytes, to the end of the (captured) payload.
    pub payload: &'a [u8],
    /// A fragment header (offset 0) came before it: a first fragment.
    pub fragment: bool,
}

/// Walks the extension headers starting with `next_header` over `payload`
/// (the IPv6 payload as bounded by [`Packet::payload`]) and returns the first
/// header that is not walked — its protocol number and bytes, and whether a
/// fragment header came before it (a first fragment) — or `None` for a
/// non-first fragment, whose bytes are not a transport header.
///
/// `complete` says whether the payload is bounded by the payload length
/// (then a header running past it is `BadTotalLength(Ipv6)`) or by the end of
/// the capture (then it is `Truncated(Ipv6Ext)`).
pub fn walk_ext_headers(
    next_header: u8,
    payload: &[u8],
    complete: bool,
) -> Result<Option<Transport<'_>>, Malformed> {
    let mut next = next_header;
    let mut rest = payload;
    let mut walked = 0;
    let mut fragment = false;
    while is_walked_ext_header(next) {
        if walked == MAX_EXT_HEADERS {
            return Err(Malformed::ExtensionHeaderLimit);
        }
        let ext = ExtHeader::new_checked(rest, next)
            .map_err(|e| blame_ip_length(e, complete, Layer::Ipv6))?;
        if next == ip_proto::IPV6_FRAGMENT {
            if ext.frag_offset() != 0 {
                return Ok(None);
            }
            fragment = true;
        }
        next = ext.next_header();
        rest = ext.payload();
        walked += 1;
    }
    Ok(Some(Transport {
        protocol: next,
        payload: rest,
        fragment,
    }))
}

#[cfg(test)]
mod test {
    use super::*;

    /// IPv6 fd00:199::2 -> fd00:199::1, traffic class 0xb8, flow 0x12345,
    /// payload 48: hop-by-hop (8), destination options (16), fragment (8,
    /// offset 0, M), then UDP 53127 -> 1234 length 16 with 8 payload bytes.
    static PACKET_BYTES: [u8; 88] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x30, 0x00, 0x40, //
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        // hop-by-hop: next destination options, length 0, Router Alert, PadN
        0x3c, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, //
        // destination options: next fragment, length 1, PadN 12
        0x2c, 0x01, 0x01, 0x0c, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // fragment: next UDP, offset 0, M, identification 0xdeadbeef
        0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, //
        // UDP and 8 payload bytes
        0xcf, 0x87, 0x04, 0xd2, 0x00, 0x10, 0x00, 0x00, //
        0x6b, 0x6e, 0x6f, 0x63, 0x6b, 0x21, 0x21, 0x21,
    ];

    const HBH_AT: usize = 40;
    const DST_AT: usize = 48;
    const FRAG_AT: usize = 64;
    const UDP_AT: usize = 72;

    fn patched(edits: &[(usize, u8)]) -> [u8; 88] {
        let mut bytes = PACKET_BYTES;
        for &(at, value) in edits {
            bytes[at] = value;
        }
        bytes
    }

    /// (protocol, payload, fragment) of where the walk ended.
    type Walked<'a> = Result<Option<(u8, &'a [u8], bool)>, Malformed>;

    fn walk(bytes: &[u8]) -> Walked<'_> {
        let ip = Packet::new_checked(bytes)?;
        let t = walk_ext_headers(ip.next_header(), ip.payload(), ip.is_complete())?;
        Ok(t.map(|t| (t.protocol, t.payload, t.fragment)))
    }

    #[test]
    fn reads_header_fields() {
        let ip = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0xb8);
        assert_eq!(ip.flow_label(), 0x12345);
        assert_eq!(ip.payload_len(), 48);
        assert_eq!(ip.next_header(), ip_proto::HOP_BY_HOP);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr(), "fd00:199::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "fd00:199::1".parse::<Ipv6Addr>().unwrap());
        assert!(ip.is_complete());
        assert_eq!(ip.payload(), &PACKET_BYTES[HBH_AT..]);
    }

    #[test]
    fn reads_fragment_header() {
        let frag =
            ExtHeader::new_checked(&PACKET_BYTES[FRAG_AT..], ip_proto::IPV6_FRAGMENT).unwrap();
        assert_eq!(frag.kind(), ip_proto::IPV6_FRAGMENT);
        assert_eq!(frag.header_len(), 8);
        assert_eq!(frag.next_header(), ip_proto::UDP);
        assert_eq!(frag.frag_offset(), 0);
        assert!(frag.more_frags());
        assert_eq!(frag.frag_ident(), 0xdeadbeef);
        assert_eq!(frag.payload(), &PACKET_BYTES[UDP_AT..]);
    }

    #[test]
    fn ext_header_length_units() {
        let dst =
            ExtHeader::new_checked(&PACKET_BYTES[DST_AT..], ip_proto::IPV6_DEST_OPTS).unwrap();
        assert_eq!(dst.header_len(), 16);
        // The same bytes read as AH: (1 + 2) * 4.
        let ah = ExtHeader::new_checked(&PACKET_BYTES[DST_AT..], ip_proto::AH).unwrap();
        assert_eq!(ah.header_len(), 12);
        // The fragment header's length byte is reserved: always 8.
        let frag =
            ExtHeader::new_checked(&PACKET_BYTES[DST_AT..], ip_proto::IPV6_FRAGMENT).unwrap();
        assert_eq!(frag.header_len(), 8);
    }

    #[test]
    fn walks_to_the_transport_header() {
        let (proto, l4, fragment) = walk(&PACKET_BYTES).unwrap().unwrap();
        assert_eq!(proto, ip_proto::UDP);
        assert_eq!(l4, &PACKET_BYTES[UDP_AT..]);
        // The chain holds a fragment header (offset 0, M): a first fragment.
        assert!(fragment);
    }

    #[test]
    fn walks_ah() {
        // Turn the destination options header (16 bytes) into AH with
        // length 2: (2 + 2) * 4 = 16 bytes.
        let bytes = patched(&[(HBH_AT, ip_proto::AH), (DST_AT + 1, 2)]);
        let (proto, l4, _) = walk(&bytes).unwrap().unwrap();
        assert_eq!(proto, ip_proto::UDP);
        assert_eq!(l4, &PACKET_BYTES[UDP_AT..]);
    }

    #[test]
    fn non_first_fragment_is_not_walked_into() {
        let bytes = patched(&[(FRAG_AT + 2, 0x05), (FRAG_AT + 3, 0xa8)]);
        let frag = ExtHeader::new_checked(&bytes[FRAG_AT..], ip_proto::IPV6_FRAGMENT).unwrap();
        assert_eq!(frag.frag_offset(), 1448);
        assert!(!frag.more_frags());
        assert_eq!(walk(&bytes), Ok(None));
    }

    #[test]
    fn the_walked_list_is_the_predicate() {
        for nh in 0..=u8::MAX {
            assert_eq!(is_walked_ext_header(nh), WALKED_EXT_HEADERS.contains(&nh));
        }
    }

    #[test]
    fn stops_at_headers_it_does_not_walk() {
        for stop in [
            ip_proto::ESP,
            ip_proto::IPV6_NO_NEXT,
            ip_proto::ICMPV6,
            135,
            253,
        ] {
            let bytes = patched(&[(DST_AT, stop)]);
            let (proto, rest, fragment) = walk(&bytes).unwrap().unwrap();
            assert_eq!(proto, stop);
            assert!(!fragment);
            assert_eq!(rest, &PACKET_BYTES[FRAG_AT..]);
        }
    }

    #[test]
    fn header_past_payload_length_is_bad_total_length() {
        // Destination options claims 24 bytes; payload length is still 48,
        // and the frame is whole: the packet itself is inconsistent.
        let bytes = patched(&[(DST_AT + 1, 0xff)]);
        assert_eq!(walk(&bytes), Err(Malformed::BadTotalLength(Layer::Ipv6)));
        // Payload length too short for the hop-by-hop header.
        let bytes = patched(&[(4, 0), (5, 4)]);
        assert_eq!(walk(&bytes), Err(Malformed::BadTotalLength(Layer::Ipv6)));
    }

    #[test]
    fn header_past_capture_is_truncated() {
        // Payload length promises more than captured: a snap cut.
        let bytes = patched(&[(4, 0x05), (5, 0xdc)]);
        assert_eq!(
            walk(&bytes[..DST_AT + 10]),
            Err(Malformed::Truncated(Layer::Ipv6Ext))
        );
        assert_eq!(
            walk(&bytes[..HBH_AT + 1]),
            Err(Malformed::Truncated(Layer::Ipv6Ext))
        );
        // Cut after the fragment header: the walk succeeds with nothing
        // left; the transport layer judges that.
        let (proto, rest, _) = walk(&bytes[..UDP_AT]).unwrap().unwrap();
        assert_eq!(proto, ip_proto::UDP);
        assert!(rest.is_empty());
    }

    #[test]
    fn chain_longer_than_the_limit_is_refused() {
        let mut chain = [0u8; 8 * (MAX_EXT_HEADERS + 1)];
        // MAX_EXT_HEADERS hop-by-hop headers each naming another, ending in
        // one that names UDP: just within the limit.
        for (i, header) in chain.chunks_mut(8).enumerate() {
            header[0] = if i + 1 < MAX_EXT_HEADERS {
                ip_proto::HOP_BY_HOP
            } else {
                ip_proto::UDP
            };
        }
        let t = walk_ext_headers(0, &chain, true).unwrap().unwrap();
        let (proto, rest) = (t.protocol, t.payload);
        assert!(!t.fragment);
        assert_eq!(proto, ip_proto::UDP);
        assert_eq!(rest.len(), 8);
        // One more hop-by-hop header: over the limit.
        for header in chain.chunks_mut(8) {
            header[0] = ip_proto::HOP_BY_HOP;
        }
        assert_eq!(
            walk_ext_headers(0, &chain, true),
            Err(Malformed::ExtensionHeaderLimit)
        );
    }

    #[test]
    fn rejects_short_or_wrong_version_header() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET_BYTES[..len]),
                Err(Malformed::Truncated(Layer::Ipv6))
            );
        }
        let bytes = patched(&[(0, 0x4b)]);
        assert_eq!(Packet::new_checked(&bytes[..]), Err(Malformed::BadVersion));
    }
}
