//! nf_tables set messages: look a set up (`NFT_MSG_GETSET` → `NEWSET`) and
//! add, read and delete one element (`NFT_MSG_NEWSETELEM`, `GETSETELEM`,
//! `DELSETELEM`). Changes go inside a batch ([`Writer::batch_begin`] …
//! [`Writer::batch_end`]); the kernel applies a batch as one transaction.
//!
//! Values from `<linux/netfilter/nf_tables.h>` and `<linux/netfilter.h>`
//! (fixed kernel ABI). Element keys, timeouts and expirations are
//! big-endian; timeouts are milliseconds.

use std::fmt;

use super::nfnetlink::{
    be_u32, be_u64, msg_type, payload, string, subsys, Writer, NLM_F_ACK, NLM_F_REQUEST,
};
use crate::wire::rtnetlink::{Attrs, NlMsg, ParseError};

/// `NFT_MSG_*` commands used here.
pub mod cmd {
    /// Reply to `GETSET`; also a set-creation request.
    pub const NEWSET: u8 = 9;
    /// Look a set up by table and name.
    pub const GETSET: u8 = 10;
    /// Add (or, without `NLM_F_EXCL`, update) elements; also the reply to
    /// `GETSETELEM`.
    pub const NEWSETELEM: u8 = 12;
    /// Read elements by key.
    pub const GETSETELEM: u8 = 13;
    /// Delete elements by key.
    pub const DELSETELEM: u8 = 14;
}

/// `enum nft_set_attributes`.
mod set_attr {
    pub const TABLE: u16 = 1;
    pub const NAME: u16 = 2;
    pub const FLAGS: u16 = 3;
    pub const KEY_TYPE: u16 = 4;
    pub const KEY_LEN: u16 = 5;
    pub const TIMEOUT: u16 = 11;
}

/// `enum nft_set_elem_list_attributes`.
mod list_attr {
    pub const TABLE: u16 = 1;
    pub const SET: u16 = 2;
    pub const ELEMENTS: u16 = 3;
}

/// `NFTA_LIST_ELEM`: one element inside `NFTA_SET_ELEM_LIST_ELEMENTS`.
const LIST_ELEM: u16 = 1;

/// `enum nft_set_elem_attributes`.
mod elem_attr {
    pub const KEY: u16 = 1;
    pub const TIMEOUT: u16 = 4;
    pub const EXPIRATION: u16 = 5;
}

/// `NFTA_DATA_VALUE`: the bytes of a key inside `NFTA_SET_ELEM_KEY`.
const DATA_VALUE: u16 = 1;

/// `enum nft_set_flags` bits.
pub mod set_flags {
    /// Anonymous (bound to one rule).
    pub const ANONYMOUS: u32 = 0x1;
    /// Contents may not change while bound.
    pub const CONSTANT: u32 = 0x2;
    /// Holds ranges: an address needs a start and an end element.
    pub const INTERVAL: u32 = 0x4;
    /// A map (key → data), not a set.
    pub const MAP: u32 = 0x8;
    /// Elements may carry timeouts.
    pub const TIMEOUT: u32 = 0x10;
    /// Updated from the packet path.
    pub const EVAL: u32 = 0x20;
    /// A map to stateful objects.
    pub const OBJECT: u32 = 0x40;
    /// The key is a concatenation.
    pub const CONCAT: u32 = 0x80;
}

/// nft's data type ids (`NFTA_SET_KEY_TYPE`, informational in the kernel
/// but what `nft list` prints).
pub mod key_type {
    /// `ipv4_addr`.
    pub const IPV4_ADDR: u32 = 7;
    /// `ipv6_addr`.
    pub const IPV6_ADDR: u32 = 8;
}

/// The largest key (`NFT_DATA_VALUE_MAXLEN`).
pub const MAX_KEY_LEN: usize = 64;
/// The longest table or set name (`NFT_NAME_MAXLEN` less the NUL).
pub const MAX_NAME_LEN: usize = 255;

/// An nf_tables table family (`NFPROTO_*`), as nft names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `ip`: IPv4 only.
    Ip,
    /// `ip6`: IPv6 only.
    Ip6,
    /// `inet`: both.
    Inet,
    /// `arp`.
    Arp,
    /// `bridge`.
    Bridge,
    /// `netdev`.
    Netdev,
}

impl Family {
    const ALL: [Family; 6] = [
        Family::Ip,
        Family::Ip6,
        Family::Inet,
        Family::Arp,
        Family::Bridge,
        Family::Netdev,
    ];

    /// nft's name: `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }

    /// The family nft calls `name`, if any.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The `NFPROTO_*` value that goes into `nfgen_family`.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Arp => 3,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetRef<'a> {
    /// Table family.
    pub family: Family,
    /// Table name (at most [`MAX_NAME_LEN`] bytes, no NUL).
    pub table: &'a str,
    /// Set name (likewise).
    pub set: &'a str,
}

/// Writes a `GETSET` request for one set; the kernel answers with a
/// `NEWSET` and an ack, or an error (`ENOENT`: no such table or set).
pub fn get_set(w: &mut Writer, seq: u32, set: &SetRef<'_>) {
    let kind = msg_type(subsys::NFTABLES, cmd::GETSET);
    let m = w.begin_msg(
        kind,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        set.family.nfproto(),
        0,
    );
    w.attr_str(set_attr::TABLE, set.table);
    w.attr_str(set_attr::NAME, set.set);
    w.end_msg(m);
}

/// Writes one element message: `cmd` is [`cmd::NEWSETELEM`] (inside a
/// batch), [`cmd::DELSETELEM`] (inside a batch) or [`cmd::GETSETELEM`]
/// (alone). `flags` are added to `NLM_F_REQUEST | NLM_F_ACK`. `timeout_ms`
/// and `expiration_ms` are sent only when given.
#[allow(clippy::too_many_arguments)]
pub fn elem(
    w: &mut Writer,
    cmd: u8,
    flags: u16,
    seq: u32,
    set: &SetRef<'_>,
    key: &[u8],
    timeout_ms: Option<u64>,
    expiration_ms: Option<u64>,
) {
    debug_assert!(key.len() <= MAX_KEY_LEN);
    let kind = msg_type(subsys::NFTABLES, cmd);
    let flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let m = w.begin_msg(kind, flags, seq, set.family.nfproto(), 0);
    w.attr_str(list_attr::TABLE, set.table);
    w.attr_str(list_attr::SET, set.set);
    let elements = w.begin_nest(list_attr::ELEMENTS);
    let one = w.begin_nest(LIST_ELEM);
    if let Some(t) = timeout_ms {
        w.attr_be64(elem_attr::TIMEOUT, t);
    }
    if let Some(e) = expiration_ms {
        w.attr_be64(elem_attr::EXPIRATION, e);
    }
    let k = w.begin_nest(elem_attr::KEY);
    w.attr(DATA_VALUE, key);
    w.end_nest(k);
    w.end_nest(one);
    w.end_nest(elements);
    w.end_msg(m);
}

/// What the kernel says about a set (`NEWSET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// Table name.
    pub table: String,
    /// Set name.
    pub name: String,
    /// [`set_flags`] bits.
    pub flags: u32,
    /// nft's key data type ([`key_type`]); concatenations combine several.
    pub key_type: u32,
    /// Key length in bytes.
    pub key_len: u32,
    /// The set's default element timeout, if it has one.
    pub timeout_ms: Option<u64>,
}

/// Reads a `NEWSET` message. Table, name, key type and key length must be
/// present; unknown attributes are skipped.
pub fn parse_set<T: AsRef<[u8]>>(msg: &NlMsg<T>) -> Result<SetInfo, ParseError> {
    if msg.kind() != msg_type(subsys::NFTABLES, cmd::NEWSET) {
        return Err(ParseError::Malformed("not an nf_tables set"));
    }
    let p = payload(msg)?;
    let (mut table, mut name, mut key_type, mut key_len) = (None, None, None, None);
    let (mut flags, mut timeout_ms) = (0, None);
    for attr in p.attrs() {
        let (kind, value) = attr?;
        match kind {
            set_attr::TABLE => table = Some(string(value)?.to_string()),
            set_attr::NAME => name = Some(string(value)?.to_string()),
            set_attr::FLAGS => flags = be_u32(value)?,
            set_attr::KEY_TYPE => key_type = Some(be_u32(value)?),
            set_attr::KEY_LEN => key_len = Some(be_u32(value)?),
            set_attr::TIMEOUT => timeout_ms = Some(be_u64(value)?),
            _ => {}
        }
    }
    let missing = ParseError::Malformed("set without table, name or key");
    Ok(SetInfo {
        table: table.ok_or(missing)?,
        name: name.ok_or(missing)?,
        flags,
        key_type: key_type.ok_or(missing)?,
        key_len: key_len.ok_or(missing)?,
        timeout_ms,
    })
}

/// One element as the kernel reports it (`NEWSETELEM` reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemInfo {
    /// The key bytes.
    pub key: Vec<u8>,
    /// The element's timeout, if it has one.
    pub timeout_ms: Option<u64>,
    /// Time left before the kernel removes it, if it has a timeout.
    pub expires_ms: Option<u64>,
}

/// Reads the first element of a `NEWSETELEM` message (a `GETSETELEM` for
/// one key is answered with exactly one). `Ok(None)`: no element in it.
pub fn parse_first_elem<T: AsRef<[u8]>>(msg: &NlMsg<T>) -> Result<Option<ElemInfo>, ParseError> {
    if msg.kind() != msg_type(subsys::NFTABLES, cmd::NEWSETELEM) {
        return Err(ParseError::Malformed("not an nf_tables set element"));
    }
    let p = payload(msg)?;
    for attr in p.attrs() {
        let (kind, value) = attr?;
        if kind != list_attr::ELEMENTS {
            continue;
        }
        // The kernel does not set NLA_F_NESTED on replies; the type says it.
        if let Some(elem) = Attrs::new(value).next() {
            let (kind, value) = elem?;
            if kind != LIST_ELEM {
                return Err(ParseError::Malformed("element list entry of unknown type"));
            }
            return parse_elem(value).map(Some);
        }
    }
    Ok(None)
}

fn parse_elem(data: &[u8]) -> Result<ElemInfo, ParseError> {
    let (mut key, mut timeout_ms, mut expires_ms) = (None, None, None);
    for attr in Attrs::new(data) {
        let (kind, value) = attr?;
        match kind {
            elem_attr::KEY => {
                for inner in Attrs::new(value) {
                    let (kind, value) = inner?;
                    if kind == DATA_VALUE {
                        if value.len() > MAX_KEY_LEN {
                            return Err(ParseError::Malformed("element key too long"));
                        }
                        key = Some(value.to_vec());
                    }
                }
            }
            elem_attr::TIMEOUT => timeout_ms = Some(be_u64(value)?),
            elem_attr::EXPIRATION => expires_ms = Some(be_u64(value)?),
            _ => {}
        }
    }
    Ok(ElemInfo {
        key: key.ok_or(ParseError::Malformed("element without key"))?,
        timeout_ms,
        expires_ms,
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::nfnetlink::NLM_F_CREATE;

    /// nft 1.0.6 `add element inet f k4 { 10.0.0.9 timeout 30s expires 30s }`
    /// as sent (seq 1), less nft's `NFTA_SET_ELEM_LIST_SET_ID` (which only
    /// matters for sets created in the same batch) and with `NLM_F_ACK`,
    /// so 80 bytes instead of 88.
    static NEW_ELEM_K4: [u8; 80] = [
        0x50, 0x00, 0x00, 0x00, 0x0c, 0x0a, 0x05, 0x04, 0x01, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // nfgenmsg: inet
        0x06, 0x00, 0x01, 0x00, 0x66, 0x00, 0x00, 0x00, // table "f"
        0x07, 0x00, 0x02, 0x00, 0x6b, 0x34, 0x00, 0x00, // set "k4"
        0x2c, 0x00, 0x03, 0x80, 0x28, 0x00, 0x01, 0x80, // elements, element
        0x0c, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x75, 0x30, // timeout
        0x0c, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x75, 0x30, // expiration
        0x0c, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x09, // key
    ];

    /// The kernel's answer to nft's `get element inet f k4 { 10.0.0.9 }`:
    /// timeout 30 s, 29.976 s left. No `NLA_F_NESTED` on the nests.
    static ELEM_REPLY_K4: [u8; 80] = [
        0x50, 0x00, 0x00, 0x00, 0x0c, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, //
        0xfb, 0x54, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0d, 0x06, 0x00, 0x01, 0x00, //
        0x66, 0x00, 0x00, 0x00, 0x07, 0x00, 0x02, 0x00, 0x6b, 0x34, 0x00, 0x00, //
        0x2c, 0x00, 0x03, 0x00, 0x28, 0x00, 0x01, 0x00, 0x0c, 0x00, 0x01, 0x00, //
        0x08, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x09, 0x0c, 0x00, 0x04, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x75, 0x30, 0x0c, 0x00, 0x05, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x75, 0x18,
    ];

    /// The kernel's `NEWSET` for `set k6 { type ipv6_addr; flags timeout; }`
    /// in table `inet f` (from `nft list set`'s dump).
    static SET_K6: [u8; 120] = [
        0x78, 0x00, 0x00, 0x00, 0x09, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x15, 0x55, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0d, 0x06, 0x00, 0x01, 0x00, //
        0x66, 0x00, 0x00, 0x00, 0x07, 0x00, 0x02, 0x00, 0x6b, 0x36, 0x00, 0x00, //
        0x0c, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x10, 0x08, 0x00, 0x04, 0x00, //
        0x00, 0x00, 0x00, 0x08, 0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x10, //
        0x0a, 0x00, 0x0d, 0x00, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x04, 0x00, 0x09, 0x00, 0x17, 0x00, 0x13, 0x00, 0x30, 0x78, 0x66, 0x66, //
        0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x38, 0x32, 0x35, 0x30, 0x37, 0x66, //
        0x34, 0x30, 0x00, 0x00, 0x08, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    const F_K4: SetRef<'static> = SetRef {
        family: Family::Inet,
        table: "f",
        set: "k4",
    };

    #[test]
    fn new_element_matches_nft() {
        let mut w = Writer::new();
        let key = [10, 0, 0, 9];
        elem(
            &mut w,
            cmd::NEWSETELEM,
            NLM_F_CREATE,
            1,
            &F_K4,
            &key,
            Some(30_000),
            Some(30_000),
        );
        assert_eq!(w.as_bytes(), &NEW_ELEM_K4[..]);
    }

    #[test]
    fn reads_element_reply() {
        let msg = NlMsg::new_checked(&ELEM_REPLY_K4[..]).unwrap();
        let e = parse_first_elem(&msg).unwrap().unwrap();
        assert_eq!(e.key, vec![10, 0, 0, 9]);
        assert_eq!(e.timeout_ms, Some(30_000));
        assert_eq!(e.expires_ms, Some(29_976));
    }

    #[test]
    fn reads_set() {
        let msg = NlMsg::new_checked(&SET_K6[..]).unwrap();
        let s = parse_set(&msg).unwrap();
        assert_eq!((s.table.as_str(), s.name.as_str()), ("f", "k6"));
        assert_eq!(s.flags, set_flags::TIMEOUT);
        assert_eq!((s.key_type, s.key_len), (key_type::IPV6_ADDR, 16));
        assert_eq!(s.timeout_ms, None);
    }

    #[test]
    fn get_set_request() {
        let mut w = Writer::new();
        get_set(&mut w, 5, &F_K4);
        let msg = NlMsg::new_checked(w.as_bytes()).unwrap();
        assert_eq!(msg.kind(), 0x0a0a);
        assert_eq!(msg.flags(), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(msg.seq(), 5);
        let p = payload(&msg).unwrap();
        assert_eq!(p.family(), 1);
        let attrs: Vec<_> = p.attrs().collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs, vec![(1, &b"f\0"[..]), (2, &b"k4\0"[..])]);
    }

    /// Every cut of a real reply is an error or a shorter answer, never a
    /// panic, and a length that points past the end is caught.
    #[test]
    fn truncated_replies_never_panic() {
        for fixture in [&ELEM_REPLY_K4[..], &SET_K6[..]] {
            for cut in 0..fixture.len() {
                let mut bytes = fixture[..cut].to_vec();
                if bytes.len() >= 4 {
                    bytes[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                }
                if let Ok(msg) = NlMsg::new_checked(&bytes[..]) {
                    let _ = parse_set(&msg);
                    let _ = parse_first_elem(&msg);
                }
            }
        }
        // The element nest claims more than the message holds.
        let mut bad = ELEM_REPLY_K4;
        bad[36] = 0x7f;
        let msg = NlMsg::new_checked(&bad[..]).unwrap();
        assert_eq!(parse_first_elem(&msg), Err(ParseError::Truncated));
    }

    #[test]
    fn family_names_round_trip() {
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.name()), Some(f));
        }
        assert_eq!(Family::from_name("inet6"), None);
    }

    proptest::proptest! {
        /// Real replies with bytes overwritten, and random bytes: the
        /// readers answer or refuse, never panic, and never report a key
        /// longer than a key can be.
        #[test]
        fn mutated_replies_never_panic(
            which in 0usize..2,
            edits in proptest::collection::vec((0usize..120, proptest::prelude::any::<u8>()), 1..8),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let mut bytes = [&ELEM_REPLY_K4[..], &SET_K6[..]][which].to_vec();
            for (at, v) in edits {
                if let Some(b) = bytes.get_mut(at) {
                    *b = v;
                }
            }
            for data in [&bytes[..], &noise[..]] {
                for msg in crate::wire::nfnetlink::Messages::new(data).flatten() {
                    let _ = parse_set(&msg);
                    if let Ok(Some(e)) = parse_first_elem(&msg) {
                        proptest::prop_assert!(e.key.len() <= MAX_KEY_LEN);
                    }
                    let _ = crate::wire::nfnetlink::parse_ack(&msg);
                }
            }
        }
    }
}
