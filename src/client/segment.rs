//! The TCP header a flag knock puts on the wire and the Internet checksum
//! over the pseudo header that goes with it. Pure byte work, no sockets, so
//! every byte can be checked against captured fixtures.

use std::net::IpAddr;

// The decoder's offsets: the client writes the header the daemon reads.
use crate::wire::tcp::field;

/// A TCP header without options: all a knock needs.
pub const HEADER_LEN: usize = crate::wire::tcp::MIN_HEADER_LEN;

/// IP protocol number of TCP, as it enters the pseudo header.
pub const PROTO_TCP: u8 = crate::wire::ip_proto::TCP;

/// Receive window of the segments `tcp_segment` builds: an ordinary Linux
/// SYN window, so a knock does not stand out by it.
pub const WINDOW: u16 = 64240;

/// Every field of an option-less TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    /// The sender's port; the client draws one per run.
    pub src_port: u16,
    /// The port knocked on.
    pub dst_port: u16,
    /// Sequence number; the client draws one per run (nothing answers a
    /// knock: it only has to look ordinary).
    pub seq: u32,
    /// Acknowledgment number; a knock sends 0, having nothing to acknowledge.
    pub ack: u32,
    /// The whole flag byte (FIN is bit 0 … CWR bit 7).
    pub flags: u8,
    /// Receive window; [`WINDOW`] in what `tcp_segment` builds.
    pub window: u16,
}

impl TcpRepr {
    /// The header bytes with the checksum for a segment from `src` to `dst`.
    /// The addresses should be of one family; the checksum is then that of
    /// RFC 793 (IPv4) or RFC 8200 section 8.1 (IPv6).
    pub fn emit(&self, src: IpAddr, dst: IpAddr) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        b[field::SEQ_NUM].copy_from_slice(&self.seq.to_be_bytes());
        b[field::ACK_NUM].copy_from_slice(&self.ack.to_be_bytes());
        b[field::DATA_OFF] = ((HEADER_LEN / 4) as u8) << 4;
        b[field::FLAGS] = self.flags;
        b[field::WIN_SIZE].copy_from_slice(&self.window.to_be_bytes());
        let sum = checksum(src, dst, PROTO_TCP, &b);
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// The segment a flag knock sends: exactly `flags`, no options, no payload,
/// acknowledgment number zero, checksum filled in.
pub fn tcp_segment(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    flags: u8,
) -> Vec<u8> {
    TcpRepr {
        src_port,
        dst_port,
        seq,
        ack: 0,
        flags,
        window: WINDOW,
    }
    .emit(src, dst)
    .to_vec()
}

/// Internet checksum (RFC 1071) of `segment` behind the pseudo header for
/// `src`, `dst` and `proto`. With the segment's checksum field zeroed this
/// is the value to store; over a segment carrying its checksum it is 0 when
/// that checksum is right (see [`verify`]).
pub fn checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    // The IPv4 pseudo header carries a 16-bit length, IPv6 a 32-bit one;
    // in a ones' complement sum both come to the same, so one adder serves.
    let mut sum = add_bytes(0, &addr_bytes(src));
    sum = add_bytes(sum, &addr_bytes(dst));
    sum += u64::from(proto);
    sum += segment.len() as u64;
    sum = add_bytes(sum, segment);
    !fold(sum)
}

/// Is the checksum inside `segment` right for this pseudo header?
pub fn verify(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    checksum(src, dst, proto, segment) == 0
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn add_bytes(mut sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // Fixtures captured with `tcpdump -xx` on a veth pair between two
    // network namespaces (10.198.0.2 / fd00:198::2 → .1 / ::1).

    const V4_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 198, 0, 2));
    const V4_SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 198, 0, 1));
    const V6_CLIENT: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0, 0, 0, 0, 0, 2));
    const V6_SERVER: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0, 0, 0, 0, 0, 1));

    /// hping3 -S -p 7000 -s 40000: a SYN without options whose checksum
    /// hping3 computed itself (tcpdump: "cksum 0xf9da (correct)").
    static HPING_SYN_V4: [u8; 20] = [
        0x9c, 0x40, 0x1b, 0x58, 0x3b, 0xaf, 0x50, 0x25, 0x5d, 0xe1, 0xfd, 0x2a, 0x50, 0x02, 0x02,
        0x00, 0xf9, 0xda, 0x00, 0x00,
    ];

    /// hping3 -F -R -P -A -p 110 -s 40001: the `frap` knock, checksum correct.
    static HPING_FRPA_V4: [u8; 20] = [
        0x9c, 0x41, 0x00, 0x6e, 0x3b, 0xaf, 0x50, 0x25, 0x5d, 0xe1, 0xfd, 0x2a, 0x50, 0x1d, 0x02,
        0x00, 0x14, 0xa9, 0x00, 0x00,
    ];

    /// Linux's SYN from curl to 10.198.0.1:7000, with options. Checksum
    /// offload left a partial sum on the wire; the bytes here carry the
    /// value tcpdump computed ("cksum 0x15bd (incorrect -> 0xc0a4)").
    static LINUX_SYN_V4: [u8; 40] = [
        0xa6, 0x28, 0x1b, 0x58, 0x42, 0x27, 0x9d, 0x09, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xc0, 0xa4, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0xbe, 0x05,
        0x18, 0x22, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    /// Linux's RST,ACK answer to that SYN, checksummed in full by the kernel.
    static LINUX_RST_V4: [u8; 20] = [
        0x1b, 0x58, 0xa6, 0x28, 0x00, 0x00, 0x00, 0x00, 0x42, 0x27, 0x9d, 0x0a, 0x50, 0x14, 0x00,
        0x00, 0xf9, 0x8f, 0x00, 0x00,
    ];

    /// Linux's SYN from curl to [fd00:198::1]:7000 (tcpdump: "cksum 0xfd62
    /// (incorrect -> 0x0587)"; the correct value is stored here).
    static LINUX_SYN_V6: [u8; 40] = [
        0xec, 0xae, 0x1b, 0x58, 0xa2, 0xc0, 0x22, 0x45, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfd,
        0x20, 0x05, 0x87, 0x00, 0x00, 0x02, 0x04, 0x05, 0xa0, 0x04, 0x02, 0x08, 0x0a, 0xdc, 0x01,
        0x9f, 0x26, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    /// Linux's RST,ACK answer from fd00:198::1 (tcpdump: "incorrect ->
    /// 0xe58e"; the correct value is stored here).
    static LINUX_RST_V6: [u8; 20] = [
        0x1b, 0x58, 0xec, 0xae, 0x00, 0x00, 0x00, 0x00, 0xa2, 0xc0, 0x22, 0x46, 0x50, 0x14, 0x00,
        0x00, 0xe5, 0x8e, 0x00, 0x00,
    ];

    fn stored_checksum(segment: &[u8]) -> u16 {
        u16::from_be_bytes([segment[16], segment[17]])
    }

    fn zeroed(segment: &[u8]) -> Vec<u8> {
        let mut s = segment.to_vec();
        s[16] = 0;
        s[17] = 0;
        s
    }

    #[test]
    fn checksum_matches_captured_segments() {
        for (name, src, dst, seg) in [
            ("hping SYN v4", V4_CLIENT, V4_SERVER, &HPING_SYN_V4[..]),
            ("hping FRPA v4", V4_CLIENT, V4_SERVER, &HPING_FRPA_V4[..]),
            ("linux SYN v4", V4_CLIENT, V4_SERVER, &LINUX_SYN_V4[..]),
            ("linux RST v4", V4_SERVER, V4_CLIENT, &LINUX_RST_V4[..]),
            ("linux SYN v6", V6_CLIENT, V6_SERVER, &LINUX_SYN_V6[..]),
            ("linux RST v6", V6_SERVER, V6_CLIENT, &LINUX_RST_V6[..]),
        ] {
            assert_eq!(
                checksum(src, dst, PROTO_TCP, &zeroed(seg)),
                stored_checksum(seg),
                "{name}"
            );
            assert!(verify(src, dst, PROTO_TCP, seg), "{name}");
            // A flipped flag bit must show.
            let mut bad = seg.to_vec();
            bad[13] ^= 0x01;
            assert!(!verify(src, dst, PROTO_TCP, &bad), "{name}");
            assert!(!verify(src, dst, 17, seg), "{name}: protocol is summed");
        }
    }

    #[test]
    fn checksum_pads_an_odd_length_with_a_zero_byte() {
        let mut odd = zeroed(&HPING_SYN_V4);
        odd.push(0xab);
        let mut even = odd.clone();
        even.push(0);
        // Same words, but the length in the pseudo header differs by one.
        assert_eq!(
            checksum(V4_CLIENT, V4_SERVER, PROTO_TCP, &odd),
            !(!checksum(V4_CLIENT, V4_SERVER, PROTO_TCP, &even)).wrapping_sub(1)
        );
    }

    #[test]
    fn repr_reproduces_hping_segments_byte_for_byte() {
        let syn = TcpRepr {
            src_port: 40000,
            dst_port: 7000,
            seq: 0x3baf_5025,
            ack: 0x5de1_fd2a,
            flags: 0x02,
            window: 512,
        };
        assert_eq!(syn.emit(V4_CLIENT, V4_SERVER), HPING_SYN_V4);
        let frpa = TcpRepr {
            src_port: 40001,
            dst_port: 110,
            flags: 0x1d,
            ..syn
        };
        assert_eq!(frpa.emit(V4_CLIENT, V4_SERVER), HPING_FRPA_V4);
    }

    #[test]
    fn repr_reproduces_linux_rst_segments_byte_for_byte() {
        let v4 = TcpRepr {
            src_port: 7000,
            dst_port: 42536,
            seq: 0,
            ack: 0x4227_9d0a,
            flags: 0x14,
            window: 0,
        };
        assert_eq!(v4.emit(V4_SERVER, V4_CLIENT), LINUX_RST_V4);
        let v6 = TcpRepr {
            src_port: 7000,
            dst_port: 60590,
            seq: 0,
            ack: 0xa2c0_2246,
            flags: 0x14,
            window: 0,
        };
        assert_eq!(v6.emit(V6_SERVER, V6_CLIENT), LINUX_RST_V6);
    }

    #[test]
    fn tcp_segment_lays_out_every_field() {
        for (src, dst) in [(V4_CLIENT, V4_SERVER), (V6_CLIENT, V6_SERVER)] {
            for flags in [0x00, 0x02, 0x1d, 0x3f, 0x28, 0xff] {
                let s = tcp_segment(src, dst, 0xc001, 110, 0xdead_beef, flags);
                let mut expect = vec![
                    0xc0, 0x01, 0x00, 0x6e, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0x50, flags, 0xfa,
                    0xf0, 0, 0, 0, 0,
                ];
                expect[16..18].copy_from_slice(&s[16..18]);
                assert_eq!(s, expect, "flags {flags:#x}");
                assert!(verify(src, dst, PROTO_TCP, &s), "flags {flags:#x}");
                // The checksum covers the addresses: wrong ones fail.
                assert!(!verify(dst, dst, PROTO_TCP, &s));
            }
        }
    }
}
