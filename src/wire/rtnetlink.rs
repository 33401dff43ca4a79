//! rtnetlink messages (`NETLINK_ROUTE`): the link and address
//! announcements the address table follows, and the dump requests that
//! read it whole.
//!
//! Views in the style of the rest of `wire`: a checked constructor, and
//! iterators that stop with an error at the first length that does not add
//! up. Nothing here indexes unchecked into received bytes. Netlink is host
//! byte order.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::Field;

// Values from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>,
// <linux/if_link.h>; all fixed kernel ABI.
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
/// A link is gone (or left a bridge, with AF_BRIDGE).
pub const RTM_DELLINK: u16 = 17;
/// Dump request for every link.
pub const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
/// Dump request for every address.
pub const RTM_GETADDR: u16 = 22;

const NLM_F_REQUEST: u16 = 0x1;
/// Set on a dump reply when the table changed during the dump.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;

/// Multicast group: link changes.
pub const RTMGRP_LINK: u32 = 0x1;
/// Multicast group: IPv4 address changes.
pub const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// Multicast group: IPv6 address changes.
pub const RTMGRP_IPV6_IFADDR: u32 = 0x100;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VLAN_ID: u16 = 1;
const IFLA_VLAN_PROTOCOL: u16 = 5;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Link flag: administratively up.
pub const IFF_UP: u32 = 0x1;
/// Link flag: operationally up (carrier).
pub const IFF_RUNNING: u32 = 0x40;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const AF_BRIDGE: u8 = 7;

/// Why a netlink message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer ends before the length it announces.
    Truncated,
    /// A length field is below its own header size.
    BadLength,
    /// Lengths add up but the content is not what the kernel sends.
    Malformed(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("netlink message truncated"),
            ParseError::BadLength => f.write_str("netlink length below header size"),
            ParseError::Malformed(what) => write!(f, "malformed netlink message: {what}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Rounds up to the 4-byte netlink alignment (`NLMSG_ALIGN`, `RTA_ALIGN`).
fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

// Netlink is host byte order. The getters return 0 when the field is out of
// range, which only a `new_unchecked` view on a short buffer can hit.
fn ne_u16(data: &[u8], f: Field) -> u16 {
    data.get(f)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .unwrap_or(0)
}

fn ne_u32(data: &[u8], f: Field) -> u32 {
    data.get(f)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0)
}

fn byte(data: &[u8], at: usize) -> u8 {
    data.get(at).copied().unwrap_or(0)
}

mod field {
    pub mod nlmsg {
        use crate::wire::Field;
        pub const LEN: Field = 0..4;
        pub const TYPE: Field = 4..6;
        pub const FLAGS: Field = 6..8;
        pub const SEQ: Field = 8..12;
        pub const PID: Field = 12..16;
        pub const HEADER_LEN: usize = 16;
    }

    pub mod ifinfo {
        use crate::wire::Field;
        pub const FAMILY: usize = 0;
        pub const TYPE: Field = 2..4;
        pub const INDEX: Field = 4..8;
        pub const FLAGS: Field = 8..12;
        pub const HEADER_LEN: usize = 16;
    }

    pub mod ifaddr {
        use crate::wire::Field;
        pub const FAMILY: usize = 0;
        pub const PREFIXLEN: usize = 1;
        pub const INDEX: Field = 4..8;
        pub const HEADER_LEN: usize = 8;
    }

    pub mod rtattr {
        use crate::wire::Field;
        pub const LEN: Field = 0..2;
        pub const TYPE: Field = 2..4;
        pub const HEADER_LEN: usize = 4;
    }
}

use field::{ifaddr, ifinfo, nlmsg, rtattr};

/// A view of one netlink message (`struct nlmsghdr` + payload).
#[derive(Debug, Clone)]
pub struct NlMsg<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NlMsg<T> {
    /// A view without checks: accessors return 0 or empty past the end.
    pub fn new_unchecked(buffer: T) -> NlMsg<T> {
        NlMsg { buffer }
    }

    /// Checks that the header fits and `nlmsg_len` lies within the buffer.
    pub fn new_checked(buffer: T) -> Result<NlMsg<T>, ParseError> {
        let msg = NlMsg::new_unchecked(buffer);
        msg.check_len()?;
        Ok(msg)
    }

    /// Checks that the header fits and `nlmsg_len` lies within the buffer.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let data = self.buffer.as_ref();
        if data.len() < nlmsg::HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let len = self.len() as usize;
        if len < nlmsg::HEADER_LEN {
            return Err(ParseError::BadLength);
        }
        if len > data.len() {
            return Err(ParseError::Truncated);
        }
        Ok(())
    }

    /// `nlmsg_len`: header plus payload, without trailing alignment.
    pub fn len(&self) -> u32 {
        ne_u32(self.buffer.as_ref(), nlmsg::LEN)
    }

    /// No payload after the header.
    pub fn is_empty(&self) -> bool {
        (self.len() as usize) <= nlmsg::HEADER_LEN
    }

    /// `nlmsg_type`: `RTM_*` or `NLMSG_*`.
    pub fn kind(&self) -> u16 {
        ne_u16(self.buffer.as_ref(), nlmsg::TYPE)
    }

    /// `nlmsg_flags`: `NLM_F_*`.
    pub fn flags(&self) -> u16 {
        ne_u16(self.buffer.as_ref(), nlmsg::FLAGS)
    }

    /// `nlmsg_seq`: a dump's replies carry its request's number.
    pub fn seq(&self) -> u32 {
        ne_u32(self.buffer.as_ref(), nlmsg::SEQ)
    }

    /// `nlmsg_pid`: the sender's port (0: the kernel).
    pub fn pid(&self) -> u32 {
        ne_u32(self.buffer.as_ref(), nlmsg::PID)
    }

    /// The bytes after the header, up to `nlmsg_len`.
    pub fn payload(&self) -> &[u8] {
        let end = self.len() as usize;
        self.buffer
            .as_ref()
            .get(nlmsg::HEADER_LEN..end)
            .unwrap_or(&[])
    }
}

/// The messages of one received datagram. Yields an error (and then stops)
/// at the first message whose length does not fit: after that there is no
/// telling where the next one starts.
#[derive(Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    /// The messages in `data`, one received datagram.
    pub fn new(data: &'a [u8]) -> Messages<'a> {
        Messages { rest: data }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<&'a [u8]>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        if let Err(e) = NlMsg::new_checked(rest) {
            self.rest = &[];
            return Some(Err(e));
        }
        let len = ne_u32(rest, nlmsg::LEN) as usize;
        let (this, _) = rest.split_at(len.min(rest.len()));
        // The last message may omit its alignment padding.
        let next = align4(len).min(rest.len());
        self.rest = rest.get(next..).unwrap_or(&[]);
        Some(Ok(NlMsg::new_unchecked(this)))
    }
}

/// The attributes (`struct rtattr`) following a fixed header. Yields an
/// error and stops at the first attribute whose length does not fit.
#[derive(Debug)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// The attributes in `data`, which starts at the first one.
    pub fn new(data: &'a [u8]) -> Attrs<'a> {
        Attrs { rest: data }
    }
}

impl<'a> Iterator for Attrs<'a> {
    /// (attribute type without the nested/byte-order bits, value)
    type Item = Result<(u16, &'a [u8]), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        self.rest = &[];
        if rest.len() < rtattr::HEADER_LEN {
            return Some(Err(ParseError::Truncated));
        }
        let len = ne_u16(rest, rtattr::LEN) as usize;
        if len < rtattr::HEADER_LEN {
            return Some(Err(ParseError::BadLength));
        }
        let value = match rest.get(rtattr::HEADER_LEN..len) {
            Some(v) => v,
            None => return Some(Err(ParseError::Truncated)),
        };
        let kind = ne_u16(rest, rtattr::TYPE) & NLA_TYPE_MASK;
        self.rest = rest.get(align4(len).min(rest.len())..).unwrap_or(&[]);
        Some(Ok((kind, value)))
    }
}

/// A link announcement (`RTM_NEWLINK` / `RTM_DELLINK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMsg {
    /// ifindex, positive.
    pub index: u32,
    /// `IFLA_IFNAME`, when the message carries it.
    pub name: Option<String>,
    /// `ifi_type`: the ARPHRD_* link type.
    pub hatype: u16,
    /// `ifi_flags`: `IFF_UP`, `IFF_RUNNING`, …
    pub flags: u32,
    /// Set when the link is a VLAN device (`IFLA_INFO_KIND` "vlan").
    pub vlan: Option<Vlan>,
}

/// What makes a link a VLAN device: the link it sits on and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vlan {
    /// ifindex of the link the tagged frames arrive on (`IFLA_LINK`).
    pub parent: u32,
    /// VLAN id, 0–4095 (`IFLA_VLAN_ID`).
    pub id: u16,
    /// Tag protocol: 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    pub tpid: u16,
}

/// An address announcement (`RTM_NEWADDR` / `RTM_DELADDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrMsg {
    /// ifindex of the link the address is on, positive.
    pub index: u32,
    /// `ifa_prefixlen`.
    pub prefix_len: u8,
    /// The host's own address: `IFA_LOCAL` when present, else `IFA_ADDRESS`.
    pub local: IpAddr,
    /// `IFA_ADDRESS`: the peer on point-to-point links, else `local`.
    pub address: IpAddr,
}

/// What one netlink message means to the address table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `RTM_NEWLINK`: a link appeared or changed.
    NewLink(LinkMsg),
    /// `RTM_DELLINK`: a link is gone.
    DelLink(LinkMsg),
    /// `RTM_NEWADDR`: an address was added.
    NewAddr(AddrMsg),
    /// `RTM_DELADDR`: an address was removed.
    DelAddr(AddrMsg),
    /// End of a dump, with the kernel's status (0 or -errno).
    Done(i32),
    /// `NLMSG_ERROR`: 0 is an ACK, else -errno.
    Error(i32),
    /// Anything the table does not follow (other families, no-ops).
    Other,
}

/// Interprets one message. Never panics; every length is checked.
pub fn parse<T: AsRef<[u8]>>(msg: &NlMsg<T>) -> Result<Message, ParseError> {
    let payload = msg.payload();
    match msg.kind() {
        NLMSG_NOOP => Ok(Message::Other),
        NLMSG_ERROR => {
            if payload.len() < 4 {
                return Err(ParseError::Truncated);
            }
            Ok(Message::Error(ne_u32(payload, 0..4) as i32))
        }
        // Old kernels send DONE without the status word.
        NLMSG_DONE => Ok(Message::Done(ne_u32(payload, 0..4) as i32)),
        RTM_NEWLINK => Ok(parse_link(payload)?.map_or(Message::Other, Message::NewLink)),
        RTM_DELLINK => Ok(parse_link(payload)?.map_or(Message::Other, Message::DelLink)),
        RTM_NEWADDR => Ok(parse_addr(payload)?.map_or(Message::Other, Message::NewAddr)),
        RTM_DELADDR => Ok(parse_addr(payload)?.map_or(Message::Other, Message::DelAddr)),
        _ => Ok(Message::Other),
    }
}

fn parse_index(data: &[u8], f: Field) -> Result<u32, ParseError> {
    let index = ne_u32(data, f) as i32;
    if index <= 0 {
        return Err(ParseError::Malformed("interface index not positive"));
    }
    Ok(index as u32)
}

fn parse_link(payload: &[u8]) -> Result<Option<LinkMsg>, ParseError> {
    let attrs = payload
        .get(align4(ifinfo::HEADER_LEN)..)
        .ok_or(ParseError::Truncated)?;
    // Bridge port events reuse RTM_NEWLINK/DELLINK with AF_BRIDGE; a
    // DELLINK there means "left the bridge", not "gone".
    if byte(payload, ifinfo::FAMILY) == AF_BRIDGE {
        return Ok(None);
    }
    let index = parse_index(payload, ifinfo::INDEX)?;
    let mut name = None;
    let mut parent = None;
    let mut vlan = None;
    for attr in Attrs::new(attrs) {
        let (kind, value) = attr?;
        match kind {
            IFLA_IFNAME => {
                let raw = value.split(|&b| b == 0).next().unwrap_or(&[]);
                if raw.is_empty() {
                    return Err(ParseError::Malformed("empty interface name"));
                }
                name = Some(String::from_utf8_lossy(raw).into_owned());
            }
            IFLA_LINK if value.len() == 4 => parent = Some(ne_u32(value, 0..4)),
            IFLA_LINKINFO => vlan = parse_vlan_info(value)?,
            _ => {}
        }
    }
    Ok(Some(LinkMsg {
        index,
        name,
        hatype: ne_u16(payload, ifinfo::TYPE),
        flags: ne_u32(payload, ifinfo::FLAGS),
        vlan: match (vlan, parent) {
            (Some((id, tpid)), Some(parent)) if parent > 0 => Some(Vlan { parent, id, tpid }),
            _ => None,
        },
    }))
}

/// (id, tpid) from a nested `IFLA_LINKINFO` of kind "vlan"; `None` for any
/// other kind of link.
fn parse_vlan_info(info: &[u8]) -> Result<Option<(u16, u16)>, ParseError> {
    let (mut is_vlan, mut data) = (false, None);
    for attr in Attrs::new(info) {
        let (kind, value) = attr?;
        match kind {
            IFLA_INFO_KIND => is_vlan = value.split(|&b| b == 0).next() == Some(b"vlan"),
            IFLA_INFO_DATA => data = Some(value),
            _ => {}
        }
    }
    let Some(data) = data.filter(|_| is_vlan) else {
        return Ok(None);
    };
    let (mut id, mut tpid) = (None, crate::wire::ethernet::ethertype::VLAN);
    for attr in Attrs::new(data) {
        let (kind, value) = attr?;
        match (kind, value.len()) {
            (IFLA_VLAN_ID, 2) => id = Some(ne_u16(value, 0..2) & 0x0fff),
            // The protocol is the one attribute here in network order.
            (IFLA_VLAN_PROTOCOL, 2) => tpid = u16::from_be_bytes([value[0], value[1]]),
            _ => {}
        }
    }
    Ok(id.map(|id| (id, tpid)))
}

fn ip_from(family: u8, value: &[u8]) -> Result<IpAddr, ParseError> {
    match family {
        AF_INET => <[u8; 4]>::try_from(value)
            .map(|b| IpAddr::V4(Ipv4Addr::from(b)))
            .map_err(|_| ParseError::Malformed("IPv4 address attribute not 4 bytes")),
        _ => <[u8; 16]>::try_from(value)
            .map(|b| IpAddr::V6(Ipv6Addr::from(b)))
            .map_err(|_| ParseError::Malformed("IPv6 address attribute not 16 bytes")),
    }
}

fn parse_addr(payload: &[u8]) -> Result<Option<AddrMsg>, ParseError> {
    let attrs = payload
        .get(align4(ifaddr::HEADER_LEN)..)
        .ok_or(ParseError::Truncated)?;
    let family = byte(payload, ifaddr::FAMILY);
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let index = parse_index(payload, ifaddr::INDEX)?;
    let (mut local, mut address) = (None, None);
    for attr in Attrs::new(attrs) {
        let (kind, value) = attr?;
        match kind {
            IFA_LOCAL => local = Some(ip_from(family, value)?),
            IFA_ADDRESS => address = Some(ip_from(family, value)?),
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer and IFA_LOCAL ours;
    // elsewhere IPv6 sends only IFA_ADDRESS and IPv4 sends both, equal.
    let local = local
        .or(address)
        .ok_or(ParseError::Malformed("address message without an address"))?;
    Ok(Some(AddrMsg {
        index,
        prefix_len: byte(payload, ifaddr::PREFIXLEN),
        local,
        address: address.unwrap_or(local),
    }))
}

/// A dump request for `RTM_GETLINK` or `RTM_GETADDR`, all families. The
/// body is a zeroed `ifinfomsg`/`ifaddrmsg`, which strict-checking kernels
/// require instead of the older one-byte `rtgenmsg`.
pub fn dump_request(kind: u16, seq: u32) -> Vec<u8> {
    let body = if kind == RTM_GETLINK {
        ifinfo::HEADER_LEN
    } else {
        ifaddr::HEADER_LEN
    };
    let len = nlmsg::HEADER_LEN + body;
    let mut req = vec![0u8; len];
    req[nlmsg::LEN].copy_from_slice(&(len as u32).to_ne_bytes());
    req[nlmsg::TYPE].copy_from_slice(&kind.to_ne_bytes());
    req[nlmsg::FLAGS].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[nlmsg::SEQ].copy_from_slice(&seq.to_ne_bytes());
    req[nlmsg::HEADER_LEN] = AF_UNSPEC;
    req
}

/// A short name for an ARPHRD_* value (<linux/if_arp.h>).
pub fn link_type_name(hatype: u16) -> Cow<'static, str> {
    let name = match hatype {
        1 => "ether",
        24 => "ieee1394",
        32 => "infiniband",
        280 => "can",
        512 => "ppp",
        513 => "cisco",
        768 => "ipip",
        769 => "tunnel6",
        772 => "loopback",
        776 => "sit",
        778 => "gre",
        801 => "ieee802.11",
        803 => "ieee802.11/radiotap",
        804 => "ieee802.15.4",
        823 => "ip6gre",
        824 => "netlink",
        825 => "6lowpan",
        0xfffe => "none",
        0xffff => "void",
        other => return Cow::Owned(format!("arphrd-{other}")),
    };
    Cow::Borrowed(name)
}

/// Captured messages shared by the tests here and the address table's.
// Fixtures were captured on x86_64 (netlink is host byte order) from a
// namespace running `ip link add dummy7 type veth …`, `ip addr add …`.
#[cfg(all(test, target_endian = "little"))]
pub(crate) mod fixtures {
    use super::*;

    /// RTM_NEWADDR for `ip addr add 192.0.2.7/24 dev dummy7` (ifindex 3).
    pub(crate) static NEWADDR_V4: [u8; 80] = [
        0x50, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x72, 0x55, 0x01, 0x6b, 0x32, 0x2d, 0x00,
        0x00, 0x02, 0x18, 0x80, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0xc0, 0x00,
        0x02, 0x07, 0x08, 0x00, 0x02, 0x00, 0xc0, 0x00, 0x02, 0x07, 0x0b, 0x00, 0x03, 0x00, 0x64,
        0x75, 0x6d, 0x6d, 0x79, 0x37, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x80, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x06, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1c, 0xda, 0x00,
        0x00, 0x1c, 0xda, 0x00, 0x00,
    ];

    /// RTM_NEWADDR for `ip -6 addr add 2001:db8::7/64 dev dummy7 nodad`:
    /// IPv6 sends only IFA_ADDRESS.
    pub(crate) static NEWADDR_V6: [u8; 72] = [
        0x48, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x0a, 0x40, 0x82, 0x00, 0x03, 0x00, 0x00, 0x00, 0x14, 0x00, 0x01, 0x00, 0x20, 0x01,
        0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x14,
        0x00, 0x06, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x58, 0xda, 0x00, 0x00,
        0x58, 0xda, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x82, 0x00, 0x00, 0x00,
    ];

    /// RTM_NEWADDR for `ip addr add 10.1.1.1 peer 10.1.1.2 dev dummy7`:
    /// IFA_ADDRESS (type 1) is the peer 10.1.1.2, IFA_LOCAL (2) is ours.
    pub(crate) static NEWADDR_PTP: [u8; 80] = [
        0x50, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x74, 0x55, 0x01, 0x6b, 0x63, 0x2d, 0x00,
        0x00, 0x02, 0x20, 0x80, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0x0a, 0x01,
        0x01, 0x02, 0x08, 0x00, 0x02, 0x00, 0x0a, 0x01, 0x01, 0x01, 0x0b, 0x00, 0x03, 0x00, 0x64,
        0x75, 0x6d, 0x6d, 0x79, 0x37, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x80, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x06, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x95, 0xda, 0x00,
        0x00, 0x95, 0xda, 0x00, 0x00,
    ];

    /// RTM_DELADDR for `ip addr del 192.0.2.7/24 dev dummy7`.
    pub(crate) static DELADDR_V4: [u8; 80] = [
        0x50, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x74, 0x55, 0x01, 0x6b, 0x6a, 0x2d, 0x00,
        0x00, 0x02, 0x18, 0x80, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0xc0, 0x00,
        0x02, 0x07, 0x08, 0x00, 0x02, 0x00, 0xc0, 0x00, 0x02, 0x07, 0x0b, 0x00, 0x03, 0x00, 0x64,
        0x75, 0x6d, 0x6d, 0x79, 0x37, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x80, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x06, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1c, 0xda, 0x00,
        0x00, 0x1c, 0xda, 0x00, 0x00,
    ];

    /// RTM_NEWLINK for `ip link set dummy7 up` (ether, index 3, flags
    /// UP|BROADCAST|MULTICAST), cut after its first three attributes
    /// (IFLA_IFNAME, IFLA_TXQLEN, IFLA_OPERSTATE) with nlmsg_len adjusted.
    /// `NEWLINK_UP_FULL` below is the whole 1496-byte message.
    pub(crate) static NEWLINK_UP: [u8; 60] = [
        0x3c, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0x10, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x0b, 0x00, 0x03, 0x00, 0x64, 0x75, 0x6d, 0x6d, 0x79, 0x37, 0x00, 0x00, 0x08,
        0x00, 0x0d, 0x00, 0xe8, 0x03, 0x00, 0x00, 0x05, 0x00, 0x10, 0x00, 0x03, 0x00, 0x00, 0x00,
    ];

    pub(crate) static NEWLINK_UP_FULL: &str = concat!(
        "d8050000100000000000000000000000000001000300000003100000010000000b00030064756d6d",
        "7937000008000d00e803000005001000030000000500110000000000050043000000000008000400",
        "dc050000080032004400000008003300ffff000008001b000000000008001e000000000008003d00",
        "0000000008001f000200000008002800ffff0000080029000000010008003a000000010008003f00",
        "00000100080040000000010008003b00f8ff070008003c00ffff0000080042000000000008002000",
        "020000000500210000000000080023000100000008002f0000000000080030000100000006004400",
        "00000000060045000000000005002700000000000a000100562643479ed800000a000200ffffffff",
        "ffff0000cc0017000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000006400070000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000c002b000500020000000000",
        "1000120009000100766574680000000008000500020000000c0006006e6f71756575650030031a00",
        "8c000200880001000000000000000000000000000100000001000000010000000100000000000000",
        "01000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000010270000e8030000",
        "0000000000000000000000000000000001000000a0020a00080001000000000014000500ffff0000",
        "dcf1000088ad0000e8030000f40002000000000040000000dc050000010000000100000001000000",
        "01000000ffffffffa00f0000e803000000000000803a090080510100030000005802000010000000",
        "0000000001000000010000000100000060ea00000000000000000000000000000000000000000000",
        "0000000001000000000000000000000010270000e803000001000000000000000000000001000000",
        "0000000000000000010000000000000000000000000000000000000080ee36000000000000000000",
        "0100000000000000000000000000000000000000000000000004000000000000ffff0000ffffffff",
        "01000000000000000000000000000000340103002600000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000003c0006000700000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000014000700000000000000000000000000",
        "00000000050008000000000024000e00000000000000000000000000000000000000000000000000",
        "000000000000000004003e8004004180",
    );

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    pub(crate) fn one(bytes: &[u8]) -> Result<Message, ParseError> {
        let msg = NlMsg::new_checked(bytes)?;
        parse(&msg)
    }

    pub(crate) fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    pub(crate) fn addr_msg(bytes: &[u8]) -> AddrMsg {
        match one(bytes).unwrap() {
            Message::NewAddr(a) | Message::DelAddr(a) => a,
            other => panic!("not an address message: {other:?}"),
        }
    }

    /// An attribute: length, type, value, padded to 4 bytes.
    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    /// RTM_NEWLINK for `ip link add link <parent> name eth0.<id> type vlan
    /// id <id> [protocol 802.1ad]`, up, built from the kernel ABI
    /// (<linux/if_link.h>): this machine's kernel has no 8021q module to
    /// record a real one from.
    pub(crate) fn vlan_newlink_fixture(index: u32, parent: u32, id: u16, tpid: u16) -> Vec<u8> {
        let mut data = attr(IFLA_VLAN_PROTOCOL, &tpid.to_be_bytes());
        data.extend(attr(IFLA_VLAN_ID, &id.to_ne_bytes()));
        let mut info = attr(IFLA_INFO_KIND, b"vlan\0");
        info.extend(attr(IFLA_INFO_DATA | 0x8000, &data)); // NLA_F_NESTED
        let mut body = vec![0u8; 16]; // ifinfomsg
        body[2..4].copy_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body[8..12].copy_from_slice(&(IFF_UP | IFF_RUNNING).to_ne_bytes());
        body.extend(attr(IFLA_IFNAME, format!("eth0.{id}\0").as_bytes()));
        body.extend(attr(IFLA_LINK, &parent.to_ne_bytes()));
        body.extend(attr(IFLA_LINKINFO, &info));
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend(body);
        msg
    }

    pub(crate) fn link_msg(bytes: &[u8]) -> LinkMsg {
        match one(bytes).unwrap() {
            Message::NewLink(l) | Message::DelLink(l) => l,
            other => panic!("not a link message: {other:?}"),
        }
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn vlan_devices_are_recognised() {
        let l = link_msg(&vlan_newlink_fixture(9, 2, 5, 0x8100));
        assert_eq!(
            l.vlan,
            Some(Vlan {
                parent: 2,
                id: 5,
                tpid: 0x8100
            })
        );
        assert_eq!(l.name.as_deref(), Some("eth0.5"));
        // A veth's full message (nested IFLA_LINKINFO of kind "veth"): no VLAN.
        assert_eq!(link_msg(&unhex(NEWLINK_UP_FULL)).vlan, None);
        assert_eq!(link_msg(&NEWLINK_UP).vlan, None);
    }

    #[test]
    fn header_fields() {
        let msg = NlMsg::new_checked(&NEWADDR_V4[..]).unwrap();
        assert_eq!(msg.len(), 80);
        assert_eq!(msg.kind(), RTM_NEWADDR);
        assert_eq!(msg.flags(), 0);
        assert_eq!(msg.seq(), 0x6b01_5572);
        assert_eq!(msg.pid(), 0x2d32);
        assert_eq!(msg.payload().len(), 64);
    }

    #[test]
    fn newaddr_v4() {
        let a = addr_msg(&NEWADDR_V4);
        assert_eq!(a.index, 3);
        assert_eq!(a.prefix_len, 24);
        assert_eq!(a.local, v4(192, 0, 2, 7));
        assert_eq!(a.address, v4(192, 0, 2, 7));
    }

    #[test]
    fn newaddr_v6_uses_ifa_address() {
        let a = addr_msg(&NEWADDR_V6);
        assert_eq!(a.index, 3);
        assert_eq!(a.prefix_len, 64);
        let own: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(a.local, own);
        assert_eq!(a.address, own);
    }

    #[test]
    fn point_to_point_local_is_ours_address_is_peer() {
        let a = addr_msg(&NEWADDR_PTP);
        assert_eq!(a.local, v4(10, 1, 1, 1));
        assert_eq!(a.address, v4(10, 1, 1, 2));
        assert_eq!(a.prefix_len, 32);
    }

    #[test]
    fn deladdr_v4() {
        assert!(matches!(one(&DELADDR_V4), Ok(Message::DelAddr(_))));
        assert_eq!(addr_msg(&DELADDR_V4).local, v4(192, 0, 2, 7));
    }

    #[test]
    fn newlink() {
        let l = link_msg(&NEWLINK_UP);
        assert_eq!(
            l,
            LinkMsg {
                index: 3,
                name: Some("dummy7".into()),
                hatype: 1,
                flags: 0x1003,
                vlan: None,
            }
        );
    }

    #[test]
    fn newlink_full_message_with_nested_attributes() {
        let bytes = unhex(NEWLINK_UP_FULL);
        assert_eq!(bytes.len(), 1496);
        let l = link_msg(&bytes);
        assert_eq!(l.name.as_deref(), Some("dummy7"));
        assert_eq!((l.index, l.hatype), (3, 1));
        assert!(l.flags & IFF_UP != 0);
        let attrs = Attrs::new(&bytes[32..])
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert!(attrs.len() > 30, "{} attributes", attrs.len());
    }

    #[test]
    fn several_messages_in_one_datagram() {
        let mut dgram = Vec::new();
        dgram.extend_from_slice(&NEWADDR_V4);
        dgram.extend_from_slice(&NEWADDR_V6);
        dgram.extend_from_slice(&NEWLINK_UP);
        let kinds: Vec<u16> = Messages::new(&dgram).map(|m| m.unwrap().kind()).collect();
        assert_eq!(kinds, [RTM_NEWADDR, RTM_NEWADDR, RTM_NEWLINK]);
    }

    #[test]
    fn unpadded_last_message_is_accepted() {
        // A DONE with a 3-byte payload: length 19, not a multiple of 4.
        let mut done = vec![0u8; 19];
        done[0] = 19;
        done[4] = NLMSG_DONE as u8;
        let msgs: Vec<_> = Messages::new(&done).collect();
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].is_ok());
    }

    fn exercise(bytes: &[u8]) -> usize {
        let mut errors = 0;
        for msg in Messages::new(bytes) {
            match msg.and_then(|m| parse(&m)) {
                Ok(_) => {}
                Err(_) => errors += 1,
            }
        }
        errors
    }

    #[test]
    fn truncated_at_every_length_is_an_error() {
        let full = unhex(NEWLINK_UP_FULL);
        let fixtures: [&[u8]; 6] = [
            &NEWADDR_V4,
            &NEWADDR_V6,
            &NEWADDR_PTP,
            &DELADDR_V4,
            &NEWLINK_UP,
            &full,
        ];
        for fx in fixtures {
            for n in 1..fx.len() {
                assert_eq!(exercise(&fx[..n]), 1, "cut at {n} of {}", fx.len());
            }
            assert_eq!(exercise(fx), 0);
        }
    }

    #[test]
    fn garbled_bytes_never_panic() {
        let fixtures: [&[u8]; 5] = [
            &NEWADDR_V4,
            &NEWADDR_V6,
            &NEWADDR_PTP,
            &DELADDR_V4,
            &NEWLINK_UP,
        ];
        let mut errors = 0;
        for fx in fixtures {
            for pos in 0..fx.len() {
                for value in [0x00, 0x01, 0x03, 0x04, 0x05, 0x07, 0x10, 0x7f, 0x80, 0xff] {
                    let mut bytes = fx.to_vec();
                    bytes[pos] = value;
                    errors += exercise(&bytes);
                    // Also with trailing bytes that look like a next header.
                    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 0x14, 0, 0, 0]);
                    errors += exercise(&bytes);
                }
            }
        }
        // Length fields were hit, so some must have been rejected.
        assert!(errors > 100, "only {errors} rejections");
    }

    #[test]
    fn attribute_lengths_are_checked() {
        let mut short = NEWADDR_V4;
        short[24] = 3; // first rta_len below its header
        assert_eq!(one(&short), Err(ParseError::BadLength));
        let mut long = NEWADDR_V4;
        long[60] = 0x40; // last rta_len past the message
        assert_eq!(one(&long), Err(ParseError::Truncated));
        let mut odd = NEWADDR_V4;
        odd[24] = 7; // IFA_ADDRESS of 3 bytes
        assert!(matches!(one(&odd), Err(ParseError::Malformed(_))));
        let mut bad_len = NEWADDR_V4;
        bad_len[0] = 15; // nlmsg_len below the header
        assert_eq!(one(&bad_len), Err(ParseError::BadLength));
    }

    #[test]
    fn non_positive_index_is_rejected() {
        let mut zero = NEWADDR_V4;
        zero[20] = 0;
        assert!(matches!(one(&zero), Err(ParseError::Malformed(_))));
        let mut negative = NEWLINK_UP;
        negative[23] = 0x80;
        assert!(matches!(one(&negative), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn bridge_port_events_and_other_families_are_ignored() {
        let mut bridge = NEWLINK_UP;
        bridge[16] = AF_BRIDGE;
        bridge[4] = RTM_DELLINK as u8;
        assert_eq!(one(&bridge), Ok(Message::Other));
        let mut mpls = NEWADDR_V4;
        mpls[16] = 28;
        assert_eq!(one(&mpls), Ok(Message::Other));
    }

    #[test]
    fn error_and_done() {
        let mut err = vec![0u8; 36];
        err[0] = 36;
        err[4] = NLMSG_ERROR as u8;
        err[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(one(&err), Ok(Message::Error(-libc::EPERM)));
        assert_eq!(one(&err[..16]), Err(ParseError::Truncated));
        let mut short_err = err[..18].to_vec();
        short_err[0] = 18;
        assert_eq!(one(&short_err), Err(ParseError::Truncated));
        let mut done = vec![0u8; 20];
        done[0] = 20;
        done[4] = NLMSG_DONE as u8;
        assert_eq!(one(&done), Ok(Message::Done(0)));
    }

    #[test]
    fn dump_requests() {
        let link = dump_request(RTM_GETLINK, 7);
        let msg = NlMsg::new_checked(&link[..]).unwrap();
        assert_eq!(
            (msg.len(), msg.kind(), msg.flags(), msg.seq()),
            (32, 18, 0x301, 7)
        );
        assert_eq!(msg.payload(), &[0u8; 16]);
        let addr = dump_request(RTM_GETADDR, 8);
        let msg = NlMsg::new_checked(&addr[..]).unwrap();
        assert_eq!(
            (msg.len(), msg.kind(), msg.flags(), msg.seq()),
            (24, 22, 0x301, 8)
        );
    }

    #[test]
    fn link_type_names() {
        assert_eq!(link_type_name(1), "ether");
        assert_eq!(link_type_name(772), "loopback");
        assert_eq!(link_type_name(9999), "arphrd-9999");
    }
}
