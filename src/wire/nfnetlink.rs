//! nfnetlink framing shared by nf_tables ([`super::nftables`]) and ipset
//! ([`super::ipset`]): the `struct nfgenmsg` header that follows every
//! `nlmsghdr`, the acknowledgement (`NLMSG_ERROR`) view, the nf_tables batch
//! markers, and a [`Writer`] that lays out requests with nested attributes.
//!
//! Reading reuses the netlink views of `capture::netif` ([`NlMsg`],
//! [`Messages`], [`Attrs`]): every length is checked before it is used and an
//! attribute walk stops at the first length that does not add up.
//!
//! Byte order: the netlink and attribute headers are host order; nfnetlink
//! payload integers (`res_id`, u32/u64 attributes) are big-endian.

use crate::capture::netif::{Attrs, NlMsg, ParseError};

pub use crate::capture::netif::Messages;

/// `NLMSG_ERROR`: an acknowledgement (error 0) or a failure (-errno).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;

/// `NLM_F_REQUEST`: every message to the kernel carries it.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multi-part (dump) reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: ask for an `NLMSG_ERROR` with error 0 on success.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`ROOT | MATCH`): list everything that matches.
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_EXCL`: fail with `EEXIST` instead of touching an existing object.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`: create the object if it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;

/// Attribute type bit: the value is a list of attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Attribute type bit: the value is in network byte order (ipset sets it).
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;

/// Subsystem ids (`NFNL_SUBSYS_*`), the high byte of the message type.
pub mod subsys {
    /// ipset.
    pub const IPSET: u8 = 6;
    /// nf_tables.
    pub const NFTABLES: u8 = 10;
}

/// `NFNL_MSG_BATCH_BEGIN` (`NLMSG_MIN_TYPE`): opens a transaction.
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`: commits it.
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFNETLINK_V0`: the only nfgenmsg version.
pub const NFNETLINK_V0: u8 = 0;

/// The netlink message type of `cmd` in subsystem `subsys`.
pub const fn msg_type(subsys: u8, cmd: u8) -> u16 {
    ((subsys as u16) << 8) | cmd as u16
}

/// `struct nlmsghdr` is 16 bytes.
pub const NLMSG_HEADER_LEN: usize = 16;
/// `struct nlattr` is 4 bytes.
pub const NLA_HEADER_LEN: usize = 4;
/// The largest value one attribute can carry (its length field is a u16).
pub const MAX_ATTR_VALUE: usize = u16::MAX as usize - NLA_HEADER_LEN;

mod field {
    use crate::wire::Field;

    pub const FAMILY: usize = 0;
    pub const VERSION: usize = 1;
    pub const RES_ID: Field = 2..4;
    pub const HEADER_LEN: usize = 4;

    /// `struct nlmsgerr`: the error, then the request's header.
    pub const ERROR: Field = 0..4;
    /// The type field of the echoed request header.
    pub const ERR_REQUEST_TYPE: Field = 8..10;
    pub const ERR_MIN_LEN: usize = 4;
}

/// `struct nfgenmsg` is 4 bytes.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// A view of the `struct nfgenmsg` that opens an nfnetlink payload, and the
/// attributes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a payload without checking it; accessors read 0 past the end.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a payload whose 4-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ParseError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The 4-byte header must be present.
    pub fn check_len(&self) -> Result<(), ParseError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(())
    }

    /// `nfgen_family`: the `NFPROTO_*` of the object (nf_tables) or the
    /// family the request was made in (ipset).
    pub fn family(&self) -> u8 {
        self.buffer
            .as_ref()
            .get(field::FAMILY)
            .copied()
            .unwrap_or(0)
    }

    /// `version`: [`NFNETLINK_V0`].
    pub fn version(&self) -> u8 {
        self.buffer
            .as_ref()
            .get(field::VERSION)
            .copied()
            .unwrap_or(0)
    }

    /// `res_id`, big-endian: the subsystem on batch markers, else 0 or a
    /// generation id.
    pub fn res_id(&self) -> u16 {
        be_u16(self.buffer.as_ref().get(field::RES_ID).unwrap_or(&[]))
    }

    /// The attributes after the header.
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs::new(self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[]))
    }
}

/// The nfnetlink payload of `msg`, checked to hold at least the nfgenmsg.
pub fn payload<T: AsRef<[u8]>>(msg: &NlMsg<T>) -> Result<Packet<&[u8]>, ParseError> {
    Packet::new_checked(msg.payload())
}

/// What an `NLMSG_ERROR` says about the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// 0 for success, else a positive errno (ipset adds its own codes from
    /// 4096 up).
    pub errno: i32,
    /// The type of the request it answers (from the echoed header), if the
    /// kernel echoed it.
    pub request_type: Option<u16>,
}

/// Reads the `struct nlmsgerr` of an `NLMSG_ERROR` message.
pub fn parse_ack<T: AsRef<[u8]>>(msg: &NlMsg<T>) -> Result<Ack, ParseError> {
    if msg.kind() != NLMSG_ERROR {
        return Err(ParseError::Malformed("not an acknowledgement"));
    }
    let data = msg.payload();
    if data.len() < field::ERR_MIN_LEN {
        return Err(ParseError::Truncated);
    }
    let error = i32::from_ne_bytes(u32_bytes(data.get(field::ERROR).unwrap_or(&[])));
    if error > 0 {
        return Err(ParseError::Malformed("positive error in acknowledgement"));
    }
    // The echoed request header: its type is at offset 4 of nlmsghdr.
    let request_type = data
        .get(field::ERR_REQUEST_TYPE)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes);
    Ok(Ack {
        errno: error.checked_neg().unwrap_or(i32::MAX),
        request_type,
    })
}

/// The status of an `NLMSG_DONE` (0 or a positive errno).
pub fn parse_done<T: AsRef<[u8]>>(msg: &NlMsg<T>) -> i32 {
    let data = msg.payload();
    match data.get(..4) {
        Some(b) => i32::from_ne_bytes(u32_bytes(b))
            .checked_neg()
            .unwrap_or(0)
            .max(0),
        None => 0,
    }
}

fn u32_bytes(b: &[u8]) -> [u8; 4] {
    b.try_into().unwrap_or([0; 4])
}

/// A big-endian u16 from exactly two bytes (0 otherwise).
pub fn be_u16(b: &[u8]) -> u16 {
    b.try_into().map(u16::from_be_bytes).unwrap_or(0)
}

/// A big-endian u32 attribute value; anything but four bytes is malformed.
pub fn be_u32(b: &[u8]) -> Result<u32, ParseError> {
    b.try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| ParseError::Malformed("u32 attribute of the wrong size"))
}

/// A big-endian u64 attribute value; anything but eight bytes is malformed.
pub fn be_u64(b: &[u8]) -> Result<u64, ParseError> {
    b.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| ParseError::Malformed("u64 attribute of the wrong size"))
}

/// A string attribute: the bytes before the first NUL, as UTF-8.
pub fn string(b: &[u8]) -> Result<&str, ParseError> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    std::str::from_utf8(b.get(..end).unwrap_or(&[]))
        .map_err(|_| ParseError::Malformed("string attribute is not UTF-8"))
}

/// Where a message begins in a [`Writer`], to close it with
/// [`Writer::end_msg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a message must be closed with end_msg"]
pub struct MsgMark(usize);

/// Where a nested attribute begins in a [`Writer`], to close it with
/// [`Writer::end_nest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a nest must be closed with end_nest"]
pub struct NestMark(usize);

/// Lays out netlink requests back to back in one buffer (a batch is several
/// messages sent in one datagram).
///
/// Invariant: after `end_msg` the buffer is a sequence of whole messages,
/// each padded to 4 bytes; lengths are patched when a message or nest is
/// closed. Attribute values are bounded by [`MAX_ATTR_VALUE`], which the
/// callers guarantee by construction (names are at most 256 bytes).
#[derive(Debug, Clone, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Forgets everything written, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// Starts a message: `nlmsghdr` (pid 0: the kernel fills in ours) and
    /// `nfgenmsg`.
    pub fn begin_msg(
        &mut self,
        kind: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> MsgMark {
        debug_assert!(self.buf.len() % 4 == 0, "previous message not closed");
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        MsgMark(start)
    }

    /// Closes the message begun at `mark`: patches its length and pads.
    pub fn end_msg(&mut self, mark: MsgMark) {
        let len = self.buf.len() - mark.0;
        debug_assert!(len >= NLMSG_HEADER_LEN + HEADER_LEN);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        if let Some(slot) = self.buf.get_mut(mark.0..mark.0 + 4) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
        self.pad();
    }

    /// Appends one attribute. Panics if `value` is longer than
    /// [`MAX_ATTR_VALUE`]: callers bound every value they pass.
    pub fn attr(&mut self, kind: u16, value: &[u8]) {
        assert!(value.len() <= MAX_ATTR_VALUE, "netlink attribute too long");
        let len = (NLA_HEADER_LEN + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, kind: u16, value: &str) {
        debug_assert!(!value.as_bytes().contains(&0), "NUL inside a name");
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.attr(kind, &v);
    }

    /// A one-byte attribute.
    pub fn attr_u8(&mut self, kind: u16, value: u8) {
        self.attr(kind, &[value]);
    }

    /// A big-endian u32 attribute.
    pub fn attr_be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    /// A big-endian u64 attribute.
    pub fn attr_be64(&mut self, kind: u16, value: u64) {
        self.attr(kind, &value.to_be_bytes());
    }

    /// Opens a nested attribute (`NLA_F_NESTED` is added to `kind`).
    pub fn begin_nest(&mut self, kind: u16) -> NestMark {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        NestMark(start)
    }

    /// Closes the nest opened at `mark`.
    pub fn end_nest(&mut self, mark: NestMark) {
        let len = self.buf.len() - mark.0;
        assert!(len <= u16::MAX as usize, "netlink nest too long");
        if let Some(slot) = self.buf.get_mut(mark.0..mark.0 + 2) {
            slot.copy_from_slice(&(len as u16).to_ne_bytes());
        }
    }

    /// An nf_tables `NFNL_MSG_BATCH_BEGIN` (`res_id` = the subsystem).
    pub fn batch_begin(&mut self, seq: u32) {
        let m = self.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            subsys::NFTABLES as u16,
        );
        self.end_msg(m);
    }

    /// An nf_tables `NFNL_MSG_BATCH_END`: the kernel commits the batch.
    pub fn batch_end(&mut self, seq: u32) {
        let m = self.begin_msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            0,
            subsys::NFTABLES as u16,
        );
        self.end_msg(m);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// nft 1.0.6's `NFNL_MSG_BATCH_BEGIN` and `_END` (seq 0 and 2), as sent
    /// to the kernel (read with `strace -e write=3`).
    static BATCH_BEGIN: [u8; 20] = [
        0x14, 0x00, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a,
    ];
    static BATCH_END: [u8; 20] = [
        0x14, 0x00, 0x00, 0x00, 0x11, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a,
    ];

    /// The kernel's ack of an nft `GETSETELEM` (seq 1, port 0x54fb), with
    /// `NETLINK_CAP_ACK` (only the request's header echoed).
    static ACK: [u8; 36] = [
        0x24, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, //
        0xfb, 0x54, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, //
        0x0d, 0x0a, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn batch_markers_match_nft() {
        let mut w = Writer::new();
        w.batch_begin(0);
        w.batch_end(2);
        assert_eq!(&w.as_bytes()[..20], &BATCH_BEGIN[..]);
        assert_eq!(&w.as_bytes()[20..], &BATCH_END[..]);
        let begin = NlMsg::new_checked(&BATCH_BEGIN[..]).unwrap();
        let p = payload(&begin).unwrap();
        assert_eq!((p.family(), p.version(), p.res_id()), (0, 0, 10));
    }

    #[test]
    fn reads_ack() {
        let msg = NlMsg::new_checked(&ACK[..]).unwrap();
        assert_eq!(msg.seq(), 1);
        let ack = parse_ack(&msg).unwrap();
        assert_eq!(ack.errno, 0);
        assert_eq!(ack.request_type, Some(0x0a0d));
    }

    #[test]
    fn reads_error_and_short_ack() {
        let mut err = ACK;
        err[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        let ack = parse_ack(&NlMsg::new_checked(&err[..]).unwrap()).unwrap();
        assert_eq!(ack.errno, 2);
        // A payload cut before the error field is truncated, never a panic.
        let mut short = ACK[..18].to_vec();
        short[0] = 18;
        let msg = NlMsg::new_checked(&short[..]).unwrap();
        assert_eq!(parse_ack(&msg), Err(ParseError::Truncated));
        // Error without the echoed header: the request type is unknown.
        let mut bare = ACK[..20].to_vec();
        bare[0] = 20;
        let ack = parse_ack(&NlMsg::new_checked(&bare[..]).unwrap()).unwrap();
        assert_eq!(
            ack,
            Ack {
                errno: 0,
                request_type: None
            }
        );
        // A positive "error" is not something the kernel sends.
        let mut bad = ACK;
        bad[16..20].copy_from_slice(&5i32.to_ne_bytes());
        assert!(parse_ack(&NlMsg::new_checked(&bad[..]).unwrap()).is_err());
    }

    #[test]
    fn nests_and_padding() {
        let mut w = Writer::new();
        let m = w.begin_msg(msg_type(subsys::NFTABLES, 12), NLM_F_REQUEST, 7, 1, 0);
        w.attr_str(1, "f");
        let n = w.begin_nest(3);
        w.attr_be64(4, 30_000);
        w.end_nest(n);
        w.end_msg(m);
        let bytes = w.as_bytes();
        assert_eq!(bytes.len() % 4, 0);
        let msg = NlMsg::new_checked(bytes).unwrap();
        assert_eq!(msg.len() as usize, bytes.len());
        let p = payload(&msg).unwrap();
        let attrs: Vec<_> = p.attrs().collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs[0], (1, &b"f\0"[..]));
        assert_eq!(attrs[1].0, 3);
        let inner: Vec<_> = Attrs::new(attrs[1].1).collect::<Result<_, _>>().unwrap();
        assert_eq!(be_u64(inner[0].1).unwrap(), 30_000);
        // The nested bit is on the wire.
        assert_eq!(u16::from_ne_bytes([bytes[30], bytes[31]]), 3 | NLA_F_NESTED);
    }

    #[test]
    fn value_readers_reject_wrong_sizes() {
        assert!(be_u32(&[1, 2, 3]).is_err());
        assert!(be_u64(&[0; 4]).is_err());
        assert_eq!(string(b"k4\0\0").unwrap(), "k4");
        assert_eq!(string(b"k4").unwrap(), "k4");
        assert!(string(b"\xff\0").is_err());
        assert_eq!(be_u16(&[1]), 0);
    }
}
