//! Zero-copy views over captured frames, one file per layer, in the style of
//! smoltcp's `wire` module: a checked constructor, then accessors that cannot
//! panic.
//!
//! [`decode`] turns one frame from the capture ring into a [`Knock`] (source,
//! destination, protocol, destination port, raw TCP flag byte) without copying
//! or allocating. Every length in the frame is treated as hostile: each view's
//! `new_checked` proves that the bytes its accessors read are present, and the
//! walk between layers is bounded (VLAN tags, IPv6 extension headers).
//!
//! # Snap length: the frame may be shorter than the packet
//!
//! The capture filter truncates the copy it hands to the ring to a snap length
//! (typically 128–256 bytes): we only need headers. So a frame is routinely
//! *shorter* than the IP total length (IPv4) or `40 + payload length` (IPv6)
//! says. That alone is not malformed. What we demand is that every header we
//! read lies within both bounds:
//!
//! * the **packet bound** — the IP length fields: a header that reaches past
//!   them belongs to no real packet, so it is
//!   [`Malformed::BadTotalLength`] of the IP layer;
//! * the **capture bound** — the end of the frame: a header that fits in the
//!   packet but was cut off by the snap length (or a runt frame) is
//!   [`Malformed::Truncated`] of the layer that was cut.
//!
//! The frame may also be *longer* than the packet (Ethernet pads to 60 bytes);
//! the IP length fields, not the frame, bound what is parsed as payload, so
//! padding is never read as a header.
//!
//! A knock is therefore reported only when the whole fixed L4 header (20 bytes
//! of TCP, 8 of UDP) is present within `min(frame, packet)`. TCP options and
//! payload are never needed, so they may be cut.

pub mod ethernet;
pub mod ipset;
pub mod ipv4;
pub mod ipv6;
pub mod nfnetlink;
pub mod nftables;
pub mod rtnetlink;
pub mod tcp;
pub mod udp;
pub mod vlan;

use std::fmt;
use std::net::IpAddr;

use crate::knock::{Knock, Proto};

/// A byte range of a header, as in smoltcp: `mod field { pub const X: Field = 2..4; }`.
pub type Field = core::ops::Range<usize>;

/// VLAN tags left in the frame bytes that are skipped; one more is malformed.
pub const MAX_VLAN_TAGS: usize = 8;

/// IPv6 extension headers walked before the transport header; one more is
/// malformed (no real packet needs that many, a crafted one could chain
/// hundreds).
pub const MAX_EXT_HEADERS: usize = 8;

/// IP protocol numbers (IANA registry) the decoder cares about: the IPv4
/// protocol field and the IPv6 next header field share them.
pub mod ip_proto {
    /// IPv6 hop-by-hop options extension header (RFC 8200).
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP (RFC 792): never a knock.
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 routing extension header (RFC 8200).
    pub const IPV6_ROUTING: u8 = 43;
    /// IPv6 fragment extension header (RFC 8200).
    pub const IPV6_FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303): what follows is encrypted,
    /// so the extension-header walk stops here.
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302), walked like an extension header.
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443): never a knock.
    pub const ICMPV6: u8 = 58;
    /// No next header (RFC 8200): nothing follows.
    pub const IPV6_NO_NEXT: u8 = 59;
    /// IPv6 destination options extension header (RFC 8200).
    pub const IPV6_DEST_OPTS: u8 = 60;
}

/// Link-layer framing of a captured frame, from the ring's `sll_hatype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// Ethernet II, possibly with 802.1Q/802.1ad tags still in the bytes.
    Ethernet,
    /// The bytes start at the IP header; the version nibble decides v4/v6.
    RawIp,
    /// `lo`: AF_PACKET shows an Ethernet header of zero MACs.
    Loopback,
}

/// `ARPHRD_*` values from `<linux/if_arp.h>`.
pub mod hatype {
    /// Ethernet and devices that look like it (veth, bridge, macvlan, …).
    pub const ETHER: u16 = 1;
    /// PPP.
    pub const PPP: u16 = 512;
    /// Raw IP without a link header (e.g. some cellular modems).
    pub const RAWIP: u16 = 519;
    /// IPv4-in-IPv4 tunnel (ipip).
    pub const TUNNEL: u16 = 768;
    /// IP-in-IPv6 tunnel (ip6tnl).
    pub const TUNNEL6: u16 = 769;
    /// The loopback device `lo`.
    pub const LOOPBACK: u16 = 772;
    /// IPv6-in-IPv4 tunnel (sit).
    pub const SIT: u16 = 776;
    /// GRE over IPv4.
    pub const IPGRE: u16 = 778;
    /// GRE over IPv6.
    pub const IP6GRE: u16 = 823;
    /// No link header at all: tun, WireGuard.
    pub const NONE: u16 = 65534;
}

impl Link {
    /// The framing AF_PACKET `SOCK_RAW` delivers on a device of this type, or
    /// `None` if the decoder does not know it (the caller counts it as an
    /// unsupported link).
    ///
    /// A `SOCK_RAW` socket sees the link header only if the device builds one
    /// (`header_ops->create`). tun, WireGuard (`NONE`), PPP (the PPP protocol
    /// field is pulled before the stack and pushed after the tap), raw-IP
    /// modems (`RAWIP`) and the ipip/ip6tnl/sit tunnels build none, so their
    /// frames start at the IP header.
    ///
    /// GRE (`IPGRE`, `IP6GRE`) builds a header only when it has no fixed
    /// remote (or a multicast one); then the bytes are the outer IP header
    /// with protocol 47, which decodes as [`Decoded::Other`] — never as a
    /// wrong knock — and point-to-point GRE, the common case, decodes fully.
    pub fn from_hatype(hatype: u16) -> Option<Link> {
        match hatype {
            hatype::ETHER => Some(Link::Ethernet),
            hatype::LOOPBACK => Some(Link::Loopback),
            hatype::NONE
            | hatype::PPP
            | hatype::RAWIP
            | hatype::TUNNEL
            | hatype::TUNNEL6
            | hatype::SIT
            | hatype::IPGRE
            | hatype::IP6GRE => Some(Link::RawIp),
            _ => None,
        }
    }
}

/// The outcome of decoding one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A TCP or UDP packet whole in itself: a knock candidate.
    Knock(Knock),
    /// The first fragment of a TCP or UDP packet (IPv4 MF, or an IPv6
    /// fragment header). Fragments are not reassembled, so it is no knock:
    /// what the host's stack takes is the reassembled packet, which the
    /// capture never sees as one.
    Fragment,
    /// Not IPv4/IPv6 TCP/UDP, or a non-first fragment: not a knock, not an error.
    Other,
    /// A frame the host would drop as broken.
    Malformed(Malformed),
}

/// The header a [`Malformed`] verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// The Ethernet II header.
    Ethernet,
    /// An 802.1Q / 802.1ad tag left in the frame bytes.
    Vlan,
    /// The version nibble of a raw-IP frame (an empty frame is cut here).
    Ip,
    /// The IPv4 header, options included.
    Ipv4,
    /// The fixed IPv6 header.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Ext,
    /// The fixed 20 bytes of the TCP header.
    Tcp,
    /// The UDP header.
    Udp,
}

impl Layer {
    /// The header's name as messages and counters show it.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "Ethernet",
            Layer::Vlan => "VLAN tag",
            Layer::Ip => "IP",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Ipv6Ext => "IPv6 extension",
            Layer::Tcp => "TCP",
            Layer::Udp => "UDP",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a frame that claimed to be IP could not be decoded. Small and `Copy`:
/// the caller counts these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// The frame ends inside this header (runt frame or snap length).
    Truncated(Layer),
    /// A header length field is below its minimum (IPv4 IHL or TCP data
    /// offset under 5); one reaching past the packet is `BadTotalLength`.
    BadHeaderLength(Layer),
    /// The IP length field is too small for the headers the packet carries,
    /// or (with the wire length known) larger than what the wire carried.
    BadTotalLength(Layer),
    /// The IPv4 header checksum is wrong.
    BadChecksum(Layer),
    /// More than [`MAX_VLAN_TAGS`] VLAN tags.
    TooManyVlanTags,
    /// More than [`MAX_EXT_HEADERS`] IPv6 extension headers.
    ExtensionHeaderLimit,
    /// The IP version nibble contradicts the ethertype, or a raw-IP frame is
    /// neither version 4 nor 6.
    BadVersion,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Truncated(layer) => write!(f, "truncated {layer} header"),
            Malformed::BadHeaderLength(layer) => write!(f, "bad {layer} header length"),
            Malformed::BadTotalLength(layer) => write!(f, "bad {layer} total length"),
            Malformed::BadChecksum(layer) => write!(f, "bad {layer} header checksum"),
            Malformed::TooManyVlanTags => {
                write!(f, "more than {MAX_VLAN_TAGS} VLAN tags")
            }
            Malformed::ExtensionHeaderLimit => {
                write!(f, "more than {MAX_EXT_HEADERS} IPv6 extension headers")
            }
            Malformed::BadVersion => f.write_str("bad IP version"),
        }
    }
}

impl std::error::Error for Malformed {}

/// Decodes one captured frame, which may be cut short by the snap length.
/// Never panics, never allocates.
pub fn decode(frame: &[u8], link: Link) -> Decoded {
    decode_frame(frame, link, None).unwrap_or_else(Decoded::Malformed)
}

/// [`decode`], knowing how long the frame was on the wire (`wire_len`,
/// the ring's `tp_len`): an IP length field that claims more than the wire
/// carried is [`Malformed::BadTotalLength`], as the host's stack would
/// judge it. (A frame longer than its IP packet is padding, which is fine.)
pub fn decode_captured(frame: &[u8], wire_len: usize, link: Link) -> Decoded {
    decode_frame(frame, link, Some(wire_len)).unwrap_or_else(Decoded::Malformed)
}

/// Does the frame carry a VLAN tag in its bytes? The kernel moves a
/// received frame's outer tag into the ring's metadata, so a tag left in
/// the bytes is a second, stacked one.
pub fn has_vlan_tag_in_frame(frame: &[u8], link: Link) -> bool {
    match link {
        Link::Ethernet | Link::Loopback => {
            ethernet::Packet::new_checked(frame).is_ok_and(|eth| vlan::is_tag(eth.ethertype()))
        }
        Link::RawIp => false,
    }
}

/// `wire_len`: bytes the frame had on the wire, when known.
fn decode_frame(frame: &[u8], link: Link, wire_len: Option<usize>) -> Result<Decoded, Malformed> {
    // Bytes of the IP packet the wire carried, from where it starts in `bytes`.
    let avail = |ip: &[u8]| wire_len.map(|w| w.saturating_sub(frame.len() - ip.len()));
    match link {
        Link::Ethernet | Link::Loopback => {
            let eth = ethernet::Packet::new_checked(frame)?;
            let mut ethertype = eth.ethertype();
            let mut payload = eth.payload();
            let mut tags = 0;
            while vlan::is_tag(ethertype) {
                if tags == MAX_VLAN_TAGS {
                    return Err(Malformed::TooManyVlanTags);
                }
                let tag = vlan::Packet::new_checked(payload)?;
                ethertype = tag.ethertype();
                payload = tag.payload();
                tags += 1;
            }
            match ethertype {
                ethernet::ethertype::IPV4 => decode_ipv4(payload, avail(payload)),
                ethernet::ethertype::IPV6 => decode_ipv6(payload, avail(payload)),
                _ => Ok(Decoded::Other),
            }
        }
        Link::RawIp => match frame.first().map(|b| b >> 4) {
            None => Err(Malformed::Truncated(Layer::Ip)),
            Some(4) => decode_ipv4(frame, wire_len),
            Some(6) => decode_ipv6(frame, wire_len),
            Some(_) => Err(Malformed::BadVersion),
        },
    }
}

/// `avail`: bytes of the packet the wire carried, when known.
fn decode_ipv4(bytes: &[u8], avail: Option<usize>) -> Result<Decoded, Malformed> {
    let ip = ipv4::Packet::new_checked(bytes)?;
    if avail.is_some_and(|a| ip.total_len() > a) {
        return Err(Malformed::BadTotalLength(Layer::Ipv4));
    }
    if ip.frag_offset() != 0 {
        return Ok(Decoded::Other);
    }
    let l4 = L4 {
        src: IpAddr::V4(ip.src_addr()),
        dst: IpAddr::V4(ip.dst_addr()),
        ip_layer: Layer::Ipv4,
        complete: ip.is_complete(),
    };
    // Checked only for a transport header worth reporting: what is no
    // knock anyway need not be summed.
    match l4.decode(ip.protocol(), ip.payload())? {
        None => Ok(Decoded::Other),
        Some(_) if !ip.checksum_ok() => Err(Malformed::BadChecksum(Layer::Ipv4)),
        Some(_) if ip.more_frags() => Ok(Decoded::Fragment),
        Some(k) => Ok(Decoded::Knock(k)),
    }
}

/// `avail`: bytes of the packet the wire carried, when known.
fn decode_ipv6(bytes: &[u8], avail: Option<usize>) -> Result<Decoded, Malformed> {
    let ip = ipv6::Packet::new_checked(bytes)?;
    if avail.is_some_and(|a| ipv6::HEADER_LEN + ip.payload_len() > a) {
        return Err(Malformed::BadTotalLength(Layer::Ipv6));
    }
    let complete = ip.is_complete();
    let Some(ipv6::Transport {
        protocol,
        payload,
        fragment,
    }) = ipv6::walk_ext_headers(ip.next_header(), ip.payload(), complete)?
    else {
        return Ok(Decoded::Other);
    };
    let l4 = L4 {
        src: IpAddr::V6(ip.src_addr()),
        dst: IpAddr::V6(ip.dst_addr()),
        ip_layer: Layer::Ipv6,
        complete,
    };
    match l4.decode(protocol, payload)? {
        None => Ok(Decoded::Other),
        Some(_) if fragment => Ok(Decoded::Fragment),
        Some(k) => Ok(Decoded::Knock(k)),
    }
}

/// What the transport layer needs from the network layer.
struct L4 {
    src: IpAddr,
    dst: IpAddr,
    ip_layer: Layer,
    /// The whole IP packet was captured, so a short payload is the packet's
    /// own fault, not the snap length's.
    complete: bool,
}

impl L4 {
    #[inline]
    fn decode(&self, protocol: u8, payload: &[u8]) -> Result<Option<Knock>, Malformed> {
        let (proto, dst_port, flags) = match protocol {
            ip_proto::TCP => {
                let tcp = tcp::Packet::new_checked(payload).map_err(|e| self.blame(e))?;
                (Proto::Tcp, tcp.dst_port(), tcp.flags())
            }
            ip_proto::UDP => {
                let udp = udp::Packet::new_checked(payload).map_err(|e| self.blame(e))?;
                (Proto::Udp, udp.dst_port(), 0)
            }
            _ => return Ok(None),
        };
        Ok(Some(Knock {
            src: self.src,
            dst: self.dst,
            proto,
            dst_port,
            flags,
        }))
    }

    /// A transport header cut short inside a fully captured packet means the
    /// IP length field lied.
    fn blame(&self, e: Malformed) -> Malformed {
        blame_ip_length(e, self.complete, self.ip_layer)
    }
}

/// Turns `Truncated` into `BadTotalLength(ip_layer)` when the payload was
/// bounded by the IP length field rather than by the end of the capture.
pub(crate) fn blame_ip_length(e: Malformed, complete: bool, ip_layer: Layer) -> Malformed {
    match e {
        Malformed::Truncated(_) if complete => Malformed::BadTotalLength(ip_layer),
        other => other,
    }
}

/// Big-endian u16 at `at`; callers have checked `at + 2 <= data.len()`.
#[inline]
fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::knock::flags::{ACK, FIN, PSH, RST, SYN};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Ethernet + IPv4 + TCP SYN 10.199.0.2:40000 -> 10.199.0.1:22 with MSS,
    /// SACK-permitted, timestamps and window-scale options (as Linux sends it).
    #[rustfmt::skip]
    static ETH_IPV4_TCP_SYN: [u8; 74] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4: IHL 5, total 60, DF, TTL 64, TCP
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x08, 0xe6,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // TCP: 40000 -> 22, data offset 10, SYN, options
        0x9c, 0x40, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0xa0, 0x02, 0xfa, 0xf0, 0x0d, 0x9b, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
        0x04, 0x02, 0x08, 0x0a, 0x9d, 0x1c, 0x2a, 0x31, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07,
    ];

    /// An ECN-setup SYN: flag byte 0xc2 (CWR ECE SYN), 10.199.0.2:40001 -> :443.
    #[rustfmt::skip]
    static ETH_IPV4_TCP_ECN_SYN: [u8; 74] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x47, 0x40, 0x00, 0x40, 0x06, 0x08, 0xe5,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // TCP: flags CWR|ECE|SYN
        0x9c, 0x41, 0x01, 0xbb, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0xa0, 0xc2, 0xfa, 0xf0, 0x0b, 0x35, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
        0x04, 0x02, 0x08, 0x0a, 0x9d, 0x1c, 0x2a, 0x31, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07,
    ];

    /// UDP 10.199.0.2:53124 -> :1234 carrying "knoc"; IPv4 total length 32, but the
    /// frame is padded to the 60-byte Ethernet minimum with non-zero junk.
    #[rustfmt::skip]
    static ETH_IPV4_UDP_PADDED: [u8; 60] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4: total 32
        0x45, 0x00, 0x00, 0x20, 0x9a, 0x01, 0x40, 0x00, 0x40, 0x11, 0x8b, 0x3b,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // UDP: 53124 -> 1234, length 12
        0xcf, 0x84, 0x04, 0xd2, 0x00, 0x0c, 0x3b, 0x1d,
        // payload "knoc"
        0x6b, 0x6e, 0x6f, 0x63,
        // Ethernet padding (not part of the IP packet)
        0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5,
        0xa5, 0xa5,
    ];

    /// IPv4 with IHL 6 (a Router Alert option) carrying TCP FIN|ACK :40002 -> :7000.
    #[rustfmt::skip]
    static ETH_IPV4_OPTIONS_TCP: [u8; 58] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4: IHL 6, total 44
        0x46, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x73, 0xf1,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01, 0x94, 0x04, 0x00, 0x00,
        // TCP: FIN|ACK, data offset 5
        0x9c, 0x42, 0x1b, 0x58, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x11, 0xfa, 0xf0, 0x21, 0x78, 0x00, 0x00,
    ];

    /// A 1452-byte TCP PSH|ACK segment :40003 -> :8080 of which the capture kept only
    /// the first 96 bytes (snap length): IPv4 total length says 1452.
    #[rustfmt::skip]
    static ETH_IPV4_TCP_SNAPPED: [u8; 96] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4: total 1452
        0x45, 0x00, 0x05, 0xac, 0x1c, 0x48, 0x40, 0x00, 0x40, 0x06, 0x03, 0x74,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // TCP: PSH|ACK, data offset 8 (timestamps)
        0x9c, 0x43, 0x1f, 0x90, 0x5a, 0x3e, 0x6c, 0x01, 0x11, 0x22, 0x33, 0x44,
        0x80, 0x18, 0xfa, 0xf0, 0xc7, 0x1f, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a,
        0x9d, 0x1c, 0x2a, 0x31, 0x00, 0xbc, 0x61, 0x4e,
        // payload, cut by the snap length
        0x00, 0x07, 0x0e, 0x15, 0x1c, 0x23, 0x2a, 0x31, 0x38, 0x3f, 0x46, 0x4d,
        0x54, 0x5b, 0x62, 0x69, 0x70, 0x77, 0x7e, 0x85, 0x8c, 0x93, 0x9a, 0xa1,
        0xa8, 0xaf, 0xb6, 0xbd, 0xc4, 0xcb,
    ];

    /// A non-first IPv4 fragment (offset 1480, MF clear) whose payload happens to
    /// look like a UDP header to port 1234: it must not count.
    #[rustfmt::skip]
    static ETH_IPV4_FRAG_LATER: [u8; 74] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4: flags/offset 0x00b9 (offset 185*8 = 1480), UDP
        0x45, 0x00, 0x00, 0x3c, 0x77, 0x77, 0x00, 0xb9, 0x40, 0x11, 0xec, 0xf0,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // bytes of the middle of a datagram
        0xcf, 0x85, 0x04, 0xd2, 0x00, 0x28, 0x24, 0xb5, 0x00, 0x01, 0x02, 0x03,
        0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
        0x1c, 0x1d, 0x1e, 0x1f,
    ];

    /// The first IPv4 fragment (offset 0, MF set) of a UDP datagram to :1234.
    #[rustfmt::skip]
    static ETH_IPV4_FRAG_FIRST: [u8; 74] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4: MF, offset 0, total 60
        0x45, 0x00, 0x00, 0x3c, 0x77, 0x78, 0x20, 0x00, 0x40, 0x11, 0xcd, 0xa8,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // UDP: 53126 -> 1234, length 40
        0xcf, 0x86, 0x04, 0xd2, 0x00, 0x28, 0x24, 0xb4,
        // first 32 payload bytes
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
        0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    ];

    /// Ethernet + IPv6 + TCP SYN [fd00:199::2]:40004 -> [fd00:199::1]:22.
    #[rustfmt::skip]
    static ETH_IPV6_TCP_SYN: [u8; 94] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x86, 0xdd,
        // IPv6: payload 40, next header TCP, hop limit 64
        0x60, 0x01, 0x23, 0x45, 0x00, 0x28, 0x06, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // TCP: SYN, data offset 10
        0x9c, 0x44, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0xa0, 0x02, 0xfa, 0xf0, 0x25, 0xf1, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
        0x04, 0x02, 0x08, 0x0a, 0x9d, 0x1c, 0x2a, 0x31, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07,
    ];

    /// IPv6 with hop-by-hop (8 bytes), destination options (16 bytes) and routing
    /// (24 bytes) headers in front of UDP [fd00:199::2]:53127 -> :1234.
    #[rustfmt::skip]
    static ETH_IPV6_EXT_UDP: [u8; 116] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x86, 0xdd,
        // IPv6: payload 62, next header hop-by-hop
        0x60, 0x01, 0x23, 0x45, 0x00, 0x3e, 0x00, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // hop-by-hop: next destination options, length 0 (8 bytes), Router Alert, PadN
        0x3c, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00,
        // destination options: next routing, length 1 (16 bytes), PadN
        0x2b, 0x01, 0x01, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
        // routing: next UDP, length 2 (24 bytes), type 0, segments left 0, one address
        0x11, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,
        // UDP: 53127 -> 1234, length 14
        0xcf, 0x87, 0x04, 0xd2, 0x00, 0x0e, 0xe8, 0x4e,
        // payload "knock!"
        0x6b, 0x6e, 0x6f, 0x63, 0x6b, 0x21,
    ];

    /// IPv6 first fragment (offset 0, M set) of a TCP SYN to :2222.
    #[rustfmt::skip]
    static ETH_IPV6_FRAG_FIRST: [u8; 102] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x86, 0xdd,
        // IPv6: payload 48, next header fragment
        0x60, 0x01, 0x23, 0x45, 0x00, 0x30, 0x2c, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // fragment: next TCP, offset 0, M, id 0xdeadbeef
        0x06, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef,
        // TCP: SYN
        0x9c, 0x45, 0x08, 0xae, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0xa0, 0x02, 0xfa, 0xf0, 0x1d, 0x58, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
        0x04, 0x02, 0x08, 0x0a, 0x9d, 0x1c, 0x2a, 0x31, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07,
    ];

    /// IPv6 non-first fragment (offset 1448, M clear) whose bytes look like UDP to
    /// :1234: it must not count.
    #[rustfmt::skip]
    static ETH_IPV6_FRAG_LATER: [u8; 78] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x86, 0xdd,
        // IPv6: payload 24, next header fragment
        0x60, 0x01, 0x23, 0x45, 0x00, 0x18, 0x2c, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // fragment: next UDP, offset 1448, id 0xdeadbeef
        0x11, 0x00, 0x05, 0xa8, 0xde, 0xad, 0xbe, 0xef,
        // middle-of-datagram bytes
        0xcf, 0x88, 0x04, 0xd2, 0x00, 0x10, 0x2e, 0x3d, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];

    /// IPv6 whose extension-header chain is nine hop-by-hop headers long (each names
    /// hop-by-hop as the next one) before TCP: longer than the walk allows.
    #[rustfmt::skip]
    static ETH_IPV6_EXT_LOOP: [u8; 146] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x86, 0xdd,
        // IPv6: payload 92, next header hop-by-hop
        0x60, 0x01, 0x23, 0x45, 0x00, 0x5c, 0x00, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // hop-by-hop #1: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #2: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #3: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #4: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #5: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #6: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #7: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #8: next hop-by-hop, length 0, PadN
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // hop-by-hop #9: next TCP
        0x06, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // TCP: SYN
        0x9c, 0x46, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xfa, 0xf0, 0x55, 0x1f, 0x00, 0x00,
    ];

    /// An 802.1Q-tagged frame (VLAN 100, priority 0) carrying IPv4 TCP SYN :40007 -> :22.
    #[rustfmt::skip]
    static ETH_VLAN_IPV4_TCP: [u8; 58] = [
        // Ethernet: dst, src, tags, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x81, 0x00, 0x00, 0x64, 0x08, 0x00,
        // IPv4
        0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x08, 0xfa,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // TCP: SYN
        0x9c, 0x47, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xfa, 0xf0, 0x3c, 0xc4, 0x00, 0x00,
    ];

    /// A QinQ frame: 802.1ad service tag (0x88a8, VLAN 200) then 802.1Q customer tag
    /// (VLAN 100) carrying IPv6 UDP :53129 -> :1234.
    #[rustfmt::skip]
    static ETH_QINQ_IPV6_UDP: [u8; 74] = [
        // Ethernet: dst, src, tags, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x88, 0xa8, 0x00, 0xc8, 0x81, 0x00, 0x00, 0x64, 0x86, 0xdd,
        // IPv6: payload 12, UDP
        0x60, 0x01, 0x23, 0x45, 0x00, 0x0c, 0x11, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // UDP
        0xcf, 0x89, 0x04, 0xd2, 0x00, 0x0c, 0x4e, 0x69,
        // payload "qinq"
        0x71, 0x69, 0x6e, 0x71,
    ];

    /// Nine stacked 802.1Q tags in front of IPv4 TCP: deeper than the decoder skips.
    #[rustfmt::skip]
    static ETH_VLAN_TOO_DEEP: [u8; 90] = [
        // Ethernet: dst, src, tags, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x81, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x02, 0x81, 0x00, 0x00, 0x03,
        0x81, 0x00, 0x00, 0x04, 0x81, 0x00, 0x00, 0x05, 0x81, 0x00, 0x00, 0x06,
        0x81, 0x00, 0x00, 0x07, 0x81, 0x00, 0x00, 0x08, 0x81, 0x00, 0x00, 0x09,
        0x08, 0x00,
        // IPv4
        0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x08, 0xfa,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // TCP: SYN
        0x9c, 0x48, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xfa, 0xf0, 0x3c, 0xc3, 0x00, 0x00,
    ];

    /// A bare IPv4 packet as a tun or WireGuard interface delivers it: TCP RST
    /// 10.8.0.2:40009 -> 10.8.0.1:51820.
    #[rustfmt::skip]
    static RAW_IPV4_TCP: [u8; 40] = [
        // IPv4
        0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x0a, 0x78,
        0x0a, 0x08, 0x00, 0x02, 0x0a, 0x08, 0x00, 0x01,
        // TCP: RST
        0x9c, 0x49, 0xca, 0x6c, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x04, 0xfa, 0xf0, 0x73, 0xe7, 0x00, 0x00,
    ];

    /// A bare IPv6 packet (PPP, tun): UDP [fd00:199::2]:53130 -> [fd00:199::1]:4000,
    /// no payload.
    #[rustfmt::skip]
    static RAW_IPV6_UDP: [u8; 48] = [
        // IPv6: payload 8, UDP
        0x60, 0x01, 0x23, 0x45, 0x00, 0x08, 0x11, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // UDP: length 8
        0xcf, 0x8a, 0x0f, 0xa0, 0x00, 0x08, 0x23, 0x7d,
    ];

    /// What AF_PACKET shows on lo: an Ethernet header of zero MACs, then IPv4 TCP SYN
    /// 127.0.0.1:40010 -> 127.0.0.1:9999.
    #[rustfmt::skip]
    static LOOPBACK_IPV4_TCP: [u8; 54] = [
        // Ethernet: dst, src, ethertype
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00,
        // IPv4
        0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x20, 0x88,
        0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
        // TCP: SYN
        0x9c, 0x4a, 0x27, 0x0f, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xfa, 0xf0, 0x2d, 0x56, 0x00, 0x00,
    ];

    /// An ARP request who-has 10.199.0.1 tell 10.199.0.2, padded to 60 bytes.
    #[rustfmt::skip]
    static ETH_ARP: [u8; 60] = [
        // Ethernet: dst, src, ethertype
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x06,
        // ARP request
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee,
        0x00, 0x02, 0x0a, 0xc7, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x0a, 0xc7, 0x00, 0x01,
        // padding
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// An ICMP echo request 10.199.0.2 -> 10.199.0.1.
    #[rustfmt::skip]
    static ETH_IPV4_ICMP: [u8; 58] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x08, 0x00,
        // IPv4: protocol 1
        0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x08, 0xfb,
        0x0a, 0xc7, 0x00, 0x02, 0x0a, 0xc7, 0x00, 0x01,
        // ICMP echo request
        0x08, 0x00, 0xad, 0x8a, 0x12, 0x34, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03,
        0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    ];

    /// IPv6 with an authentication header (24 bytes: length field 4, in 4-byte units
    /// plus 2) in front of TCP SYN :40011 -> :22.
    #[rustfmt::skip]
    static ETH_IPV6_AH_TCP: [u8; 98] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x86, 0xdd,
        // IPv6: payload 44, next header AH
        0x60, 0x01, 0x23, 0x45, 0x00, 0x2c, 0x33, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // AH: next TCP, length 4, SPI 0x100, seq 1, 12-byte ICV
        0x06, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // TCP: SYN
        0x9c, 0x4b, 0x00, 0x16, 0x5a, 0x3e, 0x6c, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xfa, 0xf0, 0x55, 0x1a, 0x00, 0x00,
    ];

    /// IPv6 ESP: the transport header is encrypted, so it is not a knock.
    #[rustfmt::skip]
    static ETH_IPV6_ESP: [u8; 86] = [
        // Ethernet: dst, src, ethertype
        0x02, 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02, 0xc0, 0xff, 0xee, 0x00, 0x02,
        0x86, 0xdd,
        // IPv6: payload 32, next header ESP
        0x60, 0x01, 0x23, 0x45, 0x00, 0x20, 0x32, 0x40, 0xfd, 0x00, 0x01, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0xfd, 0x00, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01,
        // ESP: SPI, sequence, ciphertext
        0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03,
        0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
    ];

    const V4_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 199, 0, 2));
    const V4_SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 199, 0, 1));

    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(text.parse::<Ipv6Addr>().unwrap())
    }

    fn knock(frame: &[u8], link: Link) -> Knock {
        match decode(frame, link) {
            Decoded::Knock(k) => k,
            other => panic!("expected a knock, got {other:?}"),
        }
    }

    fn eth(frame: &[u8]) -> Decoded {
        decode(frame, Link::Ethernet)
    }

    fn patched(frame: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
        let mut bytes = frame.to_vec();
        for &(at, value) in edits {
            bytes[at] = value;
        }
        bytes
    }

    const IP: usize = 14; // where the IP header starts in an untagged frame

    #[test]
    fn tcp_syn_over_ipv4() {
        assert_eq!(
            knock(&ETH_IPV4_TCP_SYN, Link::Ethernet),
            Knock {
                src: V4_CLIENT,
                dst: V4_SERVER,
                proto: Proto::Tcp,
                dst_port: 22,
                flags: SYN,
            }
        );
    }

    #[test]
    fn ecn_syn_keeps_ece_and_cwr_in_the_raw_flags() {
        let k = knock(&ETH_IPV4_TCP_ECN_SYN, Link::Ethernet);
        assert_eq!((k.dst_port, k.flags), (443, 0xc2));
    }

    #[test]
    fn every_flag_byte_comes_through_raw() {
        let mut frame = ETH_IPV4_TCP_SYN;
        for raw in 0..=u8::MAX {
            frame[IP + 20 + 13] = raw;
            assert_eq!(knock(&frame, Link::Ethernet).flags, raw);
        }
        for combo in [0, FIN, SYN | ACK, RST | ACK, FIN | PSH | ACK, 0x3f, 0xff] {
            frame[IP + 20 + 13] = combo;
            assert_eq!(knock(&frame, Link::Ethernet).flags, combo);
        }
    }

    #[test]
    fn udp_in_a_padded_frame() {
        assert_eq!(
            knock(&ETH_IPV4_UDP_PADDED, Link::Ethernet),
            Knock {
                src: V4_CLIENT,
                dst: V4_SERVER,
                proto: Proto::Udp,
                dst_port: 1234,
                flags: 0,
            }
        );
    }

    #[test]
    fn padding_is_never_read_as_a_header() {
        // Total length 24: only 4 bytes of UDP belong to the packet; the
        // frame's padding would supply the rest, but it is not the packet's.
        let frame = patched(&ETH_IPV4_UDP_PADDED, &[(IP + 3, 24)]);
        assert_eq!(
            eth(&frame),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv4))
        );
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let k = knock(&ETH_IPV4_OPTIONS_TCP, Link::Ethernet);
        assert_eq!(
            (k.proto, k.dst_port, k.flags),
            (Proto::Tcp, 7000, FIN | ACK)
        );
    }

    #[test]
    fn snap_cut_frame_is_still_a_knock() {
        let k = knock(&ETH_IPV4_TCP_SNAPPED, Link::Ethernet);
        assert_eq!((k.dst_port, k.flags), (8080, PSH | ACK));
        // Cut inside the fixed TCP header: the capture's fault.
        assert_eq!(
            eth(&ETH_IPV4_TCP_SNAPPED[..IP + 20 + 19]),
            Decoded::Malformed(Malformed::Truncated(Layer::Tcp))
        );
    }

    #[test]
    fn ihl_below_five() {
        for ihl in 0..5 {
            let frame = patched(&ETH_IPV4_TCP_SYN, &[(IP, 0x40 | ihl)]);
            assert_eq!(
                eth(&frame),
                Decoded::Malformed(Malformed::BadHeaderLength(Layer::Ipv4))
            );
        }
    }

    #[test]
    fn ihl_beyond_the_frame() {
        // IHL 15 (60 bytes), total length 1500, 40 bytes captured.
        let frame = patched(&RAW_IPV4_TCP, &[(0, 0x4f), (2, 0x05), (3, 0xdc)]);
        assert_eq!(
            decode(&frame, Link::RawIp),
            Decoded::Malformed(Malformed::Truncated(Layer::Ipv4))
        );
    }

    #[test]
    fn total_length_below_header_length() {
        let frame = patched(&ETH_IPV4_TCP_SYN, &[(IP + 2, 0), (IP + 3, 16)]);
        assert_eq!(
            eth(&frame),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv4))
        );
        // IHL 6 with total length 20.
        let frame = patched(&ETH_IPV4_OPTIONS_TCP, &[(IP + 2, 0), (IP + 3, 20)]);
        assert_eq!(
            eth(&frame),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv4))
        );
    }

    #[test]
    fn total_length_too_short_for_the_tcp_header() {
        // The whole packet is captured and its TCP header ends at byte 30.
        let frame = patched(&ETH_IPV4_TCP_SYN, &[(IP + 3, 30)]);
        assert_eq!(
            eth(&frame),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv4))
        );
    }

    #[test]
    fn tcp_data_offset_below_five() {
        let frame = patched(&ETH_IPV4_TCP_SYN, &[(IP + 20 + 12, 0x40)]);
        assert_eq!(
            eth(&frame),
            Decoded::Malformed(Malformed::BadHeaderLength(Layer::Tcp))
        );
    }

    #[test]
    fn version_must_match_the_ethertype() {
        let frame = patched(&ETH_IPV4_TCP_SYN, &[(IP, 0x65)]);
        assert_eq!(eth(&frame), Decoded::Malformed(Malformed::BadVersion));
        let frame = patched(&ETH_IPV6_TCP_SYN, &[(IP, 0x40)]);
        assert_eq!(eth(&frame), Decoded::Malformed(Malformed::BadVersion));
    }

    #[test]
    fn ipv4_fragments() {
        assert_eq!(eth(&ETH_IPV4_FRAG_LATER), Decoded::Other);
        // A first fragment is no knock (issue 15): it is not reassembled.
        assert_eq!(eth(&ETH_IPV4_FRAG_FIRST), Decoded::Fragment);
        // The same packet unfragmented (MF clear, checksum fixed) is.
        let whole = patched(&ETH_IPV4_FRAG_FIRST, &[(IP + 6, 0), (IP + 10, 0xed)]);
        let k = knock(&whole, Link::Ethernet);
        assert_eq!((k.proto, k.dst_port, k.flags), (Proto::Udp, 1234, 0));
        // The same first fragment with offset 8: no longer first.
        let frame = patched(&ETH_IPV4_FRAG_FIRST, &[(IP + 7, 1)]);
        assert_eq!(eth(&frame), Decoded::Other);
    }

    #[test]
    fn tcp_over_ipv6() {
        assert_eq!(
            knock(&ETH_IPV6_TCP_SYN, Link::Ethernet),
            Knock {
                src: v6("fd00:199::2"),
                dst: v6("fd00:199::1"),
                proto: Proto::Tcp,
                dst_port: 22,
                flags: SYN,
            }
        );
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let k = knock(&ETH_IPV6_EXT_UDP, Link::Ethernet);
        assert_eq!((k.proto, k.dst_port), (Proto::Udp, 1234));
        assert_eq!(k.src, v6("fd00:199::2"));
        let k = knock(&ETH_IPV6_AH_TCP, Link::Ethernet);
        assert_eq!((k.proto, k.dst_port, k.flags), (Proto::Tcp, 22, SYN));
    }

    #[test]
    fn ipv6_fragments() {
        // Any fragment header before the transport header: a first
        // fragment (or an atomic one), not reassembled, no knock.
        assert_eq!(eth(&ETH_IPV6_FRAG_FIRST), Decoded::Fragment);
        let atomic = patched(&ETH_IPV6_FRAG_FIRST, &[(IP + 40 + 3, 0)]);
        assert_eq!(eth(&atomic), Decoded::Fragment);
        assert_eq!(eth(&ETH_IPV6_FRAG_LATER), Decoded::Other);
    }

    #[test]
    fn ipv4_header_checksum_must_be_right() {
        for frame in [
            &ETH_IPV4_TCP_SYN[..],
            &ETH_IPV4_UDP_PADDED,
            &ETH_IPV4_OPTIONS_TCP,
        ] {
            assert!(matches!(eth(frame), Decoded::Knock(_)));
            // Any single bit flipped anywhere in the header breaks it.
            let ihl = usize::from(frame[IP] & 0x0f) * 4;
            for at in IP + 10..IP + ihl {
                for bit in 0..8 {
                    let bad = patched(frame, &[(at, frame[at] ^ (1 << bit))]);
                    let got = eth(&bad);
                    let is_address = (IP + 12..IP + 20).contains(&at);
                    assert!(
                        got == Decoded::Malformed(Malformed::BadChecksum(Layer::Ipv4))
                            || !is_address && !matches!(got, Decoded::Knock(_)),
                        "byte {at} bit {bit}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn total_length_must_fit_what_the_wire_carried() {
        // Whole frames: the wire length is the frame's.
        let len = ETH_IPV4_TCP_SYN.len();
        assert!(matches!(
            decode_captured(&ETH_IPV4_TCP_SYN, len, Link::Ethernet),
            Decoded::Knock(_)
        ));
        // Total length 61 (checksum kept right) for 60 bytes on the wire.
        let long = patched(&ETH_IPV4_TCP_SYN, &[(IP + 3, 0x3d), (IP + 11, 0xe5)]);
        assert!(matches!(eth(&long), Decoded::Knock(_)), "snapped: fine");
        assert_eq!(
            decode_captured(&long, len, Link::Ethernet),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv4))
        );
        // Cut by the snap length but whole on the wire: a knock.
        assert!(matches!(
            decode_captured(&ETH_IPV4_TCP_SNAPPED, IP + 1452, Link::Ethernet),
            Decoded::Knock(_)
        ));
        assert_eq!(
            decode_captured(&ETH_IPV4_TCP_SNAPPED, IP + 1451, Link::Ethernet),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv4))
        );
        // Padding past the packet is fine.
        assert!(matches!(
            decode_captured(&ETH_IPV4_UDP_PADDED, 60, Link::Ethernet),
            Decoded::Knock(_)
        ));
        // IPv6 and raw IP, behind VLAN tags too.
        let len6 = ETH_IPV6_TCP_SYN.len();
        assert!(matches!(
            decode_captured(&ETH_IPV6_TCP_SYN, len6, Link::Ethernet),
            Decoded::Knock(_)
        ));
        assert_eq!(
            decode_captured(&ETH_IPV6_TCP_SYN, len6 - 1, Link::Ethernet),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv6))
        );
        assert_eq!(
            decode_captured(&RAW_IPV4_TCP, 39, Link::RawIp),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv4))
        );
        let len = ETH_QINQ_IPV6_UDP.len();
        assert!(matches!(
            decode_captured(&ETH_QINQ_IPV6_UDP, len, Link::Ethernet),
            Decoded::Knock(_)
        ));
        assert_eq!(
            decode_captured(&ETH_QINQ_IPV6_UDP, len - 1, Link::Ethernet),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv6))
        );
    }

    #[test]
    fn vlan_tags_left_in_the_bytes_are_seen() {
        assert!(!has_vlan_tag_in_frame(&ETH_IPV4_TCP_SYN, Link::Ethernet));
        assert!(has_vlan_tag_in_frame(&ETH_VLAN_IPV4_TCP, Link::Ethernet));
        assert!(has_vlan_tag_in_frame(&ETH_QINQ_IPV6_UDP, Link::Ethernet));
        assert!(!has_vlan_tag_in_frame(&RAW_IPV4_TCP, Link::RawIp));
        assert!(!has_vlan_tag_in_frame(
            &ETH_VLAN_IPV4_TCP[..13],
            Link::Ethernet
        ));
    }

    #[test]
    fn ipv6_headers_that_end_the_walk() {
        assert_eq!(eth(&ETH_IPV6_ESP), Decoded::Other);
        let no_next = patched(&ETH_IPV6_ESP, &[(IP + 6, ip_proto::IPV6_NO_NEXT)]);
        assert_eq!(eth(&no_next), Decoded::Other);
        let unknown = patched(&ETH_IPV6_ESP, &[(IP + 6, 253)]);
        assert_eq!(eth(&unknown), Decoded::Other);
    }

    #[test]
    fn ipv6_extension_header_loop_is_bounded() {
        assert_eq!(
            eth(&ETH_IPV6_EXT_LOOP),
            Decoded::Malformed(Malformed::ExtensionHeaderLimit)
        );
    }

    #[test]
    fn ipv6_extension_header_longer_than_the_packet() {
        const RT_LEN: usize = IP + 40 + 8 + 16 + 1;
        // Routing header claims 8 * 256 bytes; the frame is whole.
        let frame = patched(&ETH_IPV6_EXT_UDP, &[(RT_LEN, 0xff)]);
        assert_eq!(
            eth(&frame),
            Decoded::Malformed(Malformed::BadTotalLength(Layer::Ipv6))
        );
        // Same, but the payload length says the packet is longer than
        // captured: the header runs past the frame.
        let frame = patched(&ETH_IPV6_EXT_UDP, &[(RT_LEN, 0xff), (IP + 4, 0x10)]);
        assert_eq!(
            eth(&frame),
            Decoded::Malformed(Malformed::Truncated(Layer::Ipv6Ext))
        );
    }

    #[test]
    fn vlan_tags_in_the_bytes_are_skipped() {
        let k = knock(&ETH_VLAN_IPV4_TCP, Link::Ethernet);
        assert_eq!((k.src, k.dst_port, k.flags), (V4_CLIENT, 22, SYN));
        let k = knock(&ETH_QINQ_IPV6_UDP, Link::Ethernet);
        assert_eq!(
            (k.src, k.proto, k.dst_port),
            (v6("fd00:199::2"), Proto::Udp, 1234)
        );
    }

    #[test]
    fn vlan_stack_is_bounded() {
        assert_eq!(
            eth(&ETH_VLAN_TOO_DEEP),
            Decoded::Malformed(Malformed::TooManyVlanTags)
        );
        // Drop one tag: exactly MAX_VLAN_TAGS is still decoded.
        let mut frame = ETH_VLAN_TOO_DEEP[..12].to_vec();
        frame.extend_from_slice(&ETH_VLAN_TOO_DEEP[16..]);
        assert_eq!(knock(&frame, Link::Ethernet).dst_port, 22);
    }

    #[test]
    fn raw_ip_links() {
        assert_eq!(
            knock(&RAW_IPV4_TCP, Link::RawIp),
            Knock {
                src: IpAddr::V4(Ipv4Addr::new(10, 8, 0, 2)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 8, 0, 1)),
                proto: Proto::Tcp,
                dst_port: 51820,
                flags: RST,
            }
        );
        let k = knock(&RAW_IPV6_UDP, Link::RawIp);
        assert_eq!(
            (k.dst, k.proto, k.dst_port),
            (v6("fd00:199::1"), Proto::Udp, 4000)
        );
        for version in [0x00, 0x50, 0x70, 0xf0] {
            let frame = patched(&RAW_IPV4_TCP, &[(0, version | 5)]);
            assert_eq!(
                decode(&frame, Link::RawIp),
                Decoded::Malformed(Malformed::BadVersion)
            );
        }
        assert_eq!(
            decode(&[], Link::RawIp),
            Decoded::Malformed(Malformed::Truncated(Layer::Ip))
        );
    }

    #[test]
    fn loopback() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            knock(&LOOPBACK_IPV4_TCP, Link::Loopback),
            Knock {
                src: lo,
                dst: lo,
                proto: Proto::Tcp,
                dst_port: 9999,
                flags: SYN,
            }
        );
    }

    #[test]
    fn not_a_knock() {
        assert_eq!(eth(&ETH_ARP), Decoded::Other);
        assert_eq!(eth(&ETH_IPV4_ICMP), Decoded::Other);
        // An 802.3 length field instead of an ethertype.
        let frame = patched(&ETH_ARP, &[(12, 0x00), (13, 0x2e)]);
        assert_eq!(eth(&frame), Decoded::Other);
    }

    #[test]
    fn runt_frames() {
        assert_eq!(
            eth(&ETH_IPV4_TCP_SYN[..13]),
            Decoded::Malformed(Malformed::Truncated(Layer::Ethernet))
        );
        assert_eq!(
            eth(&ETH_VLAN_IPV4_TCP[..16]),
            Decoded::Malformed(Malformed::Truncated(Layer::Vlan))
        );
    }

    #[test]
    fn hatypes() {
        assert_eq!(Link::from_hatype(1), Some(Link::Ethernet));
        assert_eq!(Link::from_hatype(772), Some(Link::Loopback));
        for raw in [65534, 512, 519, 768, 769, 776, 778, 823] {
            assert_eq!(Link::from_hatype(raw), Some(Link::RawIp), "hatype {raw}");
        }
        // Framings the decoder does not know: NET/ROM, InfiniBand, CAN,
        // FDDI, 802.11 radiotap, netlink, VOID.
        for raw in [0, 32, 280, 774, 803, 824, 0xffff] {
            assert_eq!(Link::from_hatype(raw), None, "hatype {raw}");
        }
    }

    #[test]
    fn malformed_reads_well() {
        assert_eq!(
            Malformed::Truncated(Layer::Ipv6Ext).to_string(),
            "truncated IPv6 extension header"
        );
        assert_eq!(
            Malformed::BadTotalLength(Layer::Ipv4).to_string(),
            "bad IPv4 total length"
        );
        assert_eq!(
            Malformed::BadHeaderLength(Layer::Tcp).to_string(),
            "bad TCP header length"
        );
        assert_eq!(
            Malformed::TooManyVlanTags.to_string(),
            "more than 8 VLAN tags"
        );
        assert_eq!(
            Malformed::ExtensionHeaderLimit.to_string(),
            "more than 8 IPv6 extension headers"
        );
        assert_eq!(Malformed::BadVersion.to_string(), "bad IP version");
    }

    /// Fixtures that are knocks, with the link and where their fixed L4
    /// header ends.
    fn knock_fixtures() -> [(&'static str, &'static [u8], Link, usize); 15] {
        [
            (
                "ETH_IPV4_TCP_SYN",
                &ETH_IPV4_TCP_SYN,
                Link::Ethernet,
                IP + 20 + 20,
            ),
            (
                "ETH_IPV4_TCP_ECN_SYN",
                &ETH_IPV4_TCP_ECN_SYN,
                Link::Ethernet,
                IP + 20 + 20,
            ),
            (
                "ETH_IPV4_UDP_PADDED",
                &ETH_IPV4_UDP_PADDED,
                Link::Ethernet,
                IP + 20 + 8,
            ),
            (
                "ETH_IPV4_OPTIONS_TCP",
                &ETH_IPV4_OPTIONS_TCP,
                Link::Ethernet,
                IP + 24 + 20,
            ),
            (
                "ETH_IPV4_TCP_SNAPPED",
                &ETH_IPV4_TCP_SNAPPED,
                Link::Ethernet,
                IP + 20 + 20,
            ),
            (
                "ETH_IPV4_FRAG_FIRST",
                &ETH_IPV4_FRAG_FIRST,
                Link::Ethernet,
                IP + 20 + 8,
            ),
            (
                "ETH_IPV6_TCP_SYN",
                &ETH_IPV6_TCP_SYN,
                Link::Ethernet,
                IP + 40 + 20,
            ),
            (
                "ETH_IPV6_EXT_UDP",
                &ETH_IPV6_EXT_UDP,
                Link::Ethernet,
                IP + 40 + 48 + 8,
            ),
            (
                "ETH_IPV6_FRAG_FIRST",
                &ETH_IPV6_FRAG_FIRST,
                Link::Ethernet,
                IP + 40 + 8 + 20,
            ),
            (
                "ETH_IPV6_AH_TCP",
                &ETH_IPV6_AH_TCP,
                Link::Ethernet,
                IP + 40 + 24 + 20,
            ),
            (
                "ETH_VLAN_IPV4_TCP",
                &ETH_VLAN_IPV4_TCP,
                Link::Ethernet,
                IP + 4 + 20 + 20,
            ),
            (
                "ETH_QINQ_IPV6_UDP",
                &ETH_QINQ_IPV6_UDP,
                Link::Ethernet,
                IP + 8 + 40 + 8,
            ),
            ("RAW_IPV4_TCP", &RAW_IPV4_TCP, Link::RawIp, 20 + 20),
            ("RAW_IPV6_UDP", &RAW_IPV6_UDP, Link::RawIp, 40 + 8),
            (
                "LOOPBACK_IPV4_TCP",
                &LOOPBACK_IPV4_TCP,
                Link::Loopback,
                IP + 20 + 20,
            ),
        ]
    }

    fn other_fixtures() -> [(&'static str, &'static [u8], Link); 7] {
        [
            ("ETH_IPV4_FRAG_LATER", &ETH_IPV4_FRAG_LATER, Link::Ethernet),
            ("ETH_IPV6_FRAG_LATER", &ETH_IPV6_FRAG_LATER, Link::Ethernet),
            ("ETH_IPV6_EXT_LOOP", &ETH_IPV6_EXT_LOOP, Link::Ethernet),
            ("ETH_VLAN_TOO_DEEP", &ETH_VLAN_TOO_DEEP, Link::Ethernet),
            ("ETH_ARP", &ETH_ARP, Link::Ethernet),
            ("ETH_IPV4_ICMP", &ETH_IPV4_ICMP, Link::Ethernet),
            ("ETH_IPV6_ESP", &ETH_IPV6_ESP, Link::Ethernet),
        ]
    }

    #[test]
    fn every_truncation_of_every_fixture() {
        for (name, frame, link, l4_end) in knock_fixtures() {
            // First fragments decode whole as `Fragment`, the rest as knocks.
            let whole = decode(frame, link);
            assert!(
                matches!(whole, Decoded::Knock(_) | Decoded::Fragment),
                "{name}"
            );
            for len in 0..=frame.len() {
                let got = decode(&frame[..len], link);
                if len < l4_end {
                    // Only the capture cut these frames, so the verdict must
                    // blame truncation, never the packet, never a knock.
                    assert!(
                        matches!(got, Decoded::Malformed(Malformed::Truncated(_))),
                        "{name}[..{len}] (L4 header ends at {l4_end}): {got:?}"
                    );
                } else {
                    assert_eq!(got, whole, "{name}[..{len}]");
                }
            }
        }
        for (name, frame, link) in other_fixtures() {
            for len in 0..=frame.len() {
                let got = decode(&frame[..len], link);
                assert!(
                    !matches!(got, Decoded::Knock(_)),
                    "{name}[..{len}]: {got:?}"
                );
            }
        }
    }

    #[test]
    fn mutated_frames_never_panic() {
        let mut frames: Vec<(&[u8], Link)> = knock_fixtures()
            .iter()
            .map(|&(_, frame, link, _)| (frame, link))
            .collect();
        frames.extend(
            other_fixtures()
                .iter()
                .map(|&(_, frame, link)| (frame, link)),
        );
        let links = [Link::Ethernet, Link::RawIp, Link::Loopback];
        let mut rng = crate::testutil::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = Vec::with_capacity(256);
        let (mut knocks, mut others, mut malformed) = (0u32, 0u32, 0u32);
        for _ in 0..200_000 {
            let (frame, mut link) = frames[rng.below(frames.len())];
            buf.clear();
            buf.extend_from_slice(frame);
            // Few mutations keep most frames deep enough to reach L4;
            // small values hit the length fields' edge cases.
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(buf.len());
                buf[at] = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    2 => rng.below(16) as u8,
                    _ => rng.next() as u8,
                };
            }
            match rng.below(8) {
                0 => buf.truncate(rng.below(buf.len() + 1)),
                1 => buf.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
                2 => link = links[rng.below(links.len())],
                _ => {}
            }
            match decode(&buf, link) {
                Decoded::Knock(_) => knocks += 1,
                Decoded::Other | Decoded::Fragment => others += 1,
                Decoded::Malformed(m) => {
                    malformed += 1;
                    assert!(!m.to_string().is_empty());
                }
            }
        }
        // The mutations reached every outcome, so they exercised the walk.
        eprintln!("knocks {knocks}, others {others}, malformed {malformed}");
        assert!(
            knocks > 10_000 && others > 1_000 && malformed > 10_000,
            "knocks {knocks}, others {others}, malformed {malformed}"
        );
    }

    #[test]
    #[ignore = "measurement: cargo test --release --lib wire::test::decode_speed -- --ignored --nocapture"]
    fn decode_speed() {
        let frames = [
            (&ETH_IPV4_TCP_SYN[..], Link::Ethernet),
            (&ETH_IPV6_EXT_UDP[..], Link::Ethernet),
            (&ETH_QINQ_IPV6_UDP[..], Link::Ethernet),
            (&ETH_ARP[..], Link::Ethernet),
        ];
        for (frame, link) in frames {
            let rounds = 10_000_000u32;
            let start = std::time::Instant::now();
            let mut ports = 0u64;
            for _ in 0..rounds {
                if let Decoded::Knock(k) = decode(std::hint::black_box(frame), link) {
                    ports += u64::from(k.dst_port);
                }
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(rounds);
            eprintln!("{} bytes: {ns:.1} ns/frame (checksum {ports})", frame.len());
        }
    }
}

/// Frames the kernel itself builds, captured the way the daemon captures them
/// (AF_PACKET `SOCK_RAW`, `ETH_P_ALL`), in a network namespace private to the
/// test thread: this checks the framing [`Link::from_hatype`] promises
/// against the real thing rather than against our own fixtures.
#[cfg(test)]
#[allow(unsafe_code)]
mod live {
    use super::*;
    use std::ffi::CString;
    use std::fs::{File, OpenOptions};
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn require_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "this test needs root (network namespace, AF_PACKET socket, tun): \
                 run it as root, e.g. `sudo -E cargo test --lib wire::live`"
            );
        }
    }

    /// Runs `f` on a thread moved into a fresh network namespace, which is
    /// torn down with its devices when the thread and its sockets are gone,
    /// pass or fail. The host's interfaces are never touched.
    fn in_private_netns<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        require_root();
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only the
            // calling thread, and children it spawns, into the new namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            f()
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// `ip` runs in the namespace: a child inherits its forking thread's.
    fn ip(args: &[&str]) {
        let status = Command::new("ip").args(args).status().expect("run ip");
        assert!(status.success(), "ip {}: {status}", args.join(" "));
    }

    /// A tun device (`IFF_TUN | IFF_NO_PI`) that exists while the file is open.
    fn open_tun(name: &str) -> File {
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        // struct ifreq: 16-byte name, then the flags as a short.
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq; ifr is 40 bytes,
        // the size of ifreq, and lives across the call.
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        tun
    }

    struct Capture {
        fd: OwnedFd,
    }

    impl Capture {
        fn open(ifname: &str) -> Capture {
            let name = CString::new(ifname).unwrap();
            // SAFETY: name is NUL-terminated and outlives the call.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "no interface {ifname}");
            let protocol = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: socket(2) takes no pointers.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(protocol),
                )
            };
            assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
            // SAFETY: raw is a fresh descriptor owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: all-zero bytes are a valid sockaddr_ll.
            let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = protocol;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: sll is a sockaddr_ll and the length passed is its size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: SO_RCVTIMEO reads a timeval of the length passed.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
            Capture { fd }
        }

        /// Reads frames until `want` decodes out of one; returns its hatype.
        fn expect(&self, want: Knock) -> u16 {
            let mut buf = [0u8; 2048];
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                // SAFETY: all-zero bytes are a valid sockaddr_ll.
                let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
                let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: buf and sll are writable for the lengths passed.
                let n = unsafe {
                    libc::recvfrom(
                        self.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut sll as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                let Ok(n) = usize::try_from(n) else {
                    continue; // timeout: look at the deadline again
                };
                let link = Link::from_hatype(sll.sll_hatype)
                    .unwrap_or_else(|| panic!("unknown hatype {}", sll.sll_hatype));
                let got = decode(&buf[..n], link);
                if got == Decoded::Knock(want) {
                    return sll.sll_hatype;
                }
                seen.push((sll.sll_hatype, got));
            }
            panic!("never saw {want:?}; saw {seen:?}");
        }
    }

    fn udp_knock(from: SocketAddr, to: SocketAddr) -> Knock {
        let socket = UdpSocket::bind(from).expect("bind UDP");
        socket.send_to(b"knock", to).expect("send UDP");
        Knock {
            src: from.ip(),
            dst: to.ip(),
            proto: Proto::Udp,
            dst_port: to.port(),
            flags: 0,
        }
    }

    /// A connect to a port nobody answers (or that is refused) sends a SYN.
    fn syn_knock(from: IpAddr, to: SocketAddr) -> Knock {
        let _ = TcpStream::connect_timeout(&to, Duration::from_millis(300));
        Knock {
            src: from,
            dst: to.ip(),
            proto: Proto::Tcp,
            dst_port: to.port(),
            flags: crate::knock::flags::SYN,
        }
    }

    #[test]
    fn loopback_frames_have_a_zero_mac_ethernet_header() {
        in_private_netns(|| {
            ip(&["link", "set", "lo", "up"]);
            let capture = Capture::open("lo");
            let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);

            let knock = udp_knock((lo4, 0).into(), (lo4, 7777).into());
            assert_eq!(capture.expect(knock), hatype::LOOPBACK);
            let knock = syn_knock(lo4, (lo4, 2222).into());
            assert_eq!(capture.expect(knock), hatype::LOOPBACK);
            let knock = udp_knock((lo6, 0).into(), (lo6, 7778).into());
            assert_eq!(capture.expect(knock), hatype::LOOPBACK);
        });
    }

    #[test]
    fn tun_frames_are_bare_ip() {
        in_private_netns(|| {
            let _tun = open_tun("knocktun0");
            ip(&["addr", "add", "10.77.0.1/24", "dev", "knocktun0"]);
            ip(&["addr", "add", "fd77::1/64", "dev", "knocktun0", "nodad"]);
            ip(&["link", "set", "knocktun0", "up"]);
            let capture = Capture::open("knocktun0");
            let local4 = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
            let peer4 = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
            let local6: IpAddr = "fd77::1".parse().unwrap();
            let peer6: IpAddr = "fd77::2".parse().unwrap();

            let knock = udp_knock((local4, 0).into(), (peer4, 7777).into());
            assert_eq!(capture.expect(knock), hatype::NONE);
            let knock = syn_knock(local4, (peer4, 2222).into());
            assert_eq!(capture.expect(knock), hatype::NONE);
            let knock = udp_knock((local6, 0).into(), (peer6, 7778).into());
            assert_eq!(capture.expect(knock), hatype::NONE);
        });
    }
}
