//! Kernel doors in knock.conf: the nftables sets and ipsets an event adds
//! the knocker's address to, with `command_delay` as the element timeout.
//!
//! ```text
//! nft_set   = inet filter knocked4     # family table set, for IPv4 knockers
//! nft_set_6 = inet filter knocked6     # the same for IPv6 knockers
//! ipset     = knocked4                 # a hash:ip set, family inet
//! ipset_6   = knocked6                 # a hash:ip set, family inet6
//! ```
//!
//! Names are restricted to letters, digits, `_`, `-` and `.` (starting
//! with a letter or `_`): they are echoed into log lines and into the
//! `nft …`/`ipset …` command a message suggests, so nothing in them may
//! need quoting.

use std::fmt;
use std::net::IpAddr;

use crate::wire::ipset::MAX_TIMEOUT_SECS as IPSET_MAX_TIMEOUT_SECS;
pub use crate::wire::nftables::Family as NftFamily;
use crate::wire::{ipset, nftables};

/// Which knockers a set is for, and so the key type it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrFamily {
    /// IPv4 knockers: `ipv4_addr` / `hash:ip family inet`.
    V4,
    /// IPv6 knockers: `ipv6_addr` / `hash:ip family inet6`.
    V6,
}

impl AddrFamily {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> AddrFamily {
        match addr {
            IpAddr::V4(_) => AddrFamily::V4,
            IpAddr::V6(_) => AddrFamily::V6,
        }
    }
}

/// An nftables set: `family table set`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NftSet {
    /// The table's family.
    pub family: NftFamily,
    /// Table name.
    pub table: String,
    /// Set name.
    pub set: String,
}

impl NftSet {
    /// Parses `family table set` (e.g. `inet filter knocked4`).
    pub fn parse(value: &str) -> Result<NftSet, String> {
        let words: Vec<&str> = value.split_whitespace().collect();
        let [family, table, set] = words[..] else {
            return Err(
                "expects three words: family table set (e.g. 'inet filter knocked4')".into(),
            );
        };
        let family = NftFamily::from_name(family).ok_or_else(|| {
            "family must be one of ip, ip6, inet, arp, bridge, netdev".to_string()
        })?;
        check_name("table", table, nftables::MAX_NAME_LEN)?;
        check_name("set", set, nftables::MAX_NAME_LEN)?;
        Ok(NftSet {
            family,
            table: table.to_string(),
            set: set.to_string(),
        })
    }

    /// The view the wire builders take.
    pub fn as_ref(&self) -> nftables::SetRef<'_> {
        nftables::SetRef {
            family: self.family,
            table: &self.table,
            set: &self.set,
        }
    }
}

impl fmt::Display for NftSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.family, self.table, self.set)
    }
}

/// The name of an ipset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpsetName(String);

impl IpsetName {
    /// Checks an ipset name (at most 31 bytes).
    pub fn parse(value: &str) -> Result<IpsetName, String> {
        check_name("ipset name", value, ipset::MAX_NAME_LEN)?;
        Ok(IpsetName(value.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IpsetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a kernel door is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetTarget {
    /// An nftables set.
    Nft(NftSet),
    /// An ipset.
    Ipset(IpsetName),
}

impl SetTarget {
    /// The target as one line of plain words, `nft inet filter knocked4` or
    /// `ipset knocked4`: what the doors journal keeps, and what
    /// [`SetTarget::parse_spec`] reads back.
    pub fn spec(&self) -> String {
        match self {
            SetTarget::Nft(s) => format!("nft {s}"),
            SetTarget::Ipset(s) => format!("ipset {s}"),
        }
    }

    /// Reads [`SetTarget::spec`]'s form back, with the same checks on
    /// names as the configuration.
    pub fn parse_spec(text: &str) -> Result<SetTarget, String> {
        match text.split_once(' ') {
            Some(("nft", rest)) => NftSet::parse(rest).map(SetTarget::Nft),
            Some(("ipset", rest)) => IpsetName::parse(rest).map(SetTarget::Ipset),
            _ => Err("expects 'nft FAMILY TABLE SET' or 'ipset NAME'".into()),
        }
    }
}

impl fmt::Display for SetTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetTarget::Nft(s) => write!(f, "nftables set '{s}'"),
            SetTarget::Ipset(s) => write!(f, "ipset '{s}'"),
        }
    }
}

/// An event's kernel doors (all optional; any mix).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DoorSets {
    /// `nft_set`: for IPv4 knockers.
    pub nft: Option<NftSet>,
    /// `nft_set_6`: for IPv6 knockers.
    pub nft_6: Option<NftSet>,
    /// `ipset`: for IPv4 knockers.
    pub ipset: Option<IpsetName>,
    /// `ipset_6`: for IPv6 knockers.
    pub ipset_6: Option<IpsetName>,
}

impl DoorSets {
    /// No set named.
    pub fn is_empty(&self) -> bool {
        *self == DoorSets::default()
    }

    /// The sets a knocker of `family` goes into, nftables first.
    pub fn for_family(&self, family: AddrFamily) -> Vec<SetTarget> {
        let (nft, ipset) = match family {
            AddrFamily::V4 => (&self.nft, &self.ipset),
            AddrFamily::V6 => (&self.nft_6, &self.ipset_6),
        };
        let nft = nft.iter().cloned().map(SetTarget::Nft);
        nft.chain(ipset.iter().cloned().map(SetTarget::Ipset))
            .collect()
    }

    /// Every set with the knockers it is for.
    pub fn all(&self) -> Vec<(SetTarget, AddrFamily)> {
        let mut out = Vec::new();
        for family in [AddrFamily::V4, AddrFamily::V6] {
            out.extend(self.for_family(family).into_iter().map(|t| (t, family)));
        }
        out
    }

    /// Why `command_delay` (seconds) cannot be these sets' timeout, if it
    /// cannot: ipset silently cuts timeouts above about 24.8 days.
    pub fn delay_problem(&self, delay: u32) -> Option<String> {
        let has_ipset = self.ipset.is_some() || self.ipset_6.is_some();
        (has_ipset && delay > IPSET_MAX_TIMEOUT_SECS).then(|| {
            format!(
                "command_delay is an ipset timeout here, at most {IPSET_MAX_TIMEOUT_SECS} seconds, not {delay}"
            )
        })
    }
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > max || !ok_first || !ok_rest {
        return Err(format!(
            "{what} must be 1 to {max} letters, digits, '_', '-' or '.', starting with a letter or '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn parses_nft_set() {
        let s = NftSet::parse(" inet  filter knocked4 ").unwrap();
        assert_eq!(s.family, NftFamily::Inet);
        assert_eq!((s.table.as_str(), s.set.as_str()), ("filter", "knocked4"));
        assert_eq!(s.to_string(), "inet filter knocked4");
        assert!(NftSet::parse("inet filter").is_err());
        assert!(NftSet::parse("inet6 filter k")
            .unwrap_err()
            .contains("family"));
        assert!(NftSet::parse("ip filter k;reboot").is_err());
        assert!(NftSet::parse("ip 1filter k").is_err());
        assert!(NftSet::parse(&format!("ip t {}", "k".repeat(256))).is_err());
        assert!(NftSet::parse(&format!("ip t {}", "k".repeat(255))).is_ok());
    }

    #[test]
    fn parses_ipset_name() {
        assert_eq!(IpsetName::parse("knocked-4").unwrap().as_str(), "knocked-4");
        assert!(IpsetName::parse(&"k".repeat(32)).is_err());
        assert!(IpsetName::parse("a b").is_err());
        assert!(IpsetName::parse("").is_err());
    }

    #[test]
    fn set_specs_round_trip_and_are_checked() {
        for text in ["nft inet filter knocked4", "nft ip6 t k6", "ipset k-4"] {
            let t = SetTarget::parse_spec(text).unwrap();
            assert_eq!(t.spec(), text);
        }
        for bad in [
            "",
            "nft",
            "nft inet filter",
            "ipset",
            "ipset a b",
            "ipset k;reboot",
            "iptables k",
            "nft inet f k extra",
        ] {
            assert!(SetTarget::parse_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sets_per_family() {
        let sets = DoorSets {
            nft: Some(NftSet::parse("inet f k4").unwrap()),
            ipset_6: Some(IpsetName::parse("k6").unwrap()),
            ..DoorSets::default()
        };
        assert_eq!(sets.for_family(AddrFamily::V4).len(), 1);
        assert!(matches!(
            sets.for_family(AddrFamily::V6)[..],
            [SetTarget::Ipset(_)]
        ));
        assert_eq!(sets.all().len(), 2);
        assert_eq!(sets.delay_problem(IPSET_MAX_TIMEOUT_SECS), None);
        assert!(sets.delay_problem(IPSET_MAX_TIMEOUT_SECS + 1).is_some());
        assert!(DoorSets::default().is_empty());
    }
}
