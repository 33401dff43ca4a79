//! Which source addresses can knock: only a unicast address of another
//! host. A door opened for `127.0.0.1`, `0.0.0.0`, a multicast or broadcast
//! address, the server's own address or an IPv4-mapped IPv6 address would
//! let a spoofer open the firewall for traffic no real knocker sends (or
//! for the host itself), and no such frame comes from a host that could
//! receive the answer.
//!
//! [`classify`] is pure: what it needs to know about the host comes in
//! through [`HostAddresses`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the host knows about its own addresses.
pub trait HostAddresses {
    /// Is `addr` an address of one of the host's interfaces?
    fn is_own(&self, addr: IpAddr) -> bool;
    /// Is `addr` the directed broadcast address of one of the host's
    /// IPv4 subnets?
    fn is_subnet_broadcast(&self, addr: Ipv4Addr) -> bool;
}

/// Why a source address cannot knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceRefusal {
    /// `0.0.0.0/8` ("this network") or `::`.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`, or a local subnet's broadcast address.
    Broadcast,
    /// One of the host's own addresses.
    Own,
    /// IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`)
    /// IPv6: an IPv4 address in disguise, never on the wire as a source.
    Mapped,
}

impl SourceRefusal {
    /// Every reason, in the order the stats line prints them.
    pub const ALL: [SourceRefusal; 6] = [
        SourceRefusal::Unspecified,
        SourceRefusal::Loopback,
        SourceRefusal::Multicast,
        SourceRefusal::Broadcast,
        SourceRefusal::Own,
        SourceRefusal::Mapped,
    ];

    /// A short name for counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            SourceRefusal::Unspecified => "src_unspecified",
            SourceRefusal::Loopback => "src_loopback",
            SourceRefusal::Multicast => "src_multicast",
            SourceRefusal::Broadcast => "src_broadcast",
            SourceRefusal::Own => "src_own",
            SourceRefusal::Mapped => "src_mapped",
        }
    }
}

impl fmt::Display for SourceRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `Ok` if `src` may knock; otherwise why not.
pub fn classify(src: IpAddr, host: &impl HostAddresses) -> Result<(), SourceRefusal> {
    match src {
        IpAddr::V4(a) => classify_v4(a, host)?,
        IpAddr::V6(a) => classify_v6(a)?,
    }
    if host.is_own(src) {
        return Err(SourceRefusal::Own);
    }
    Ok(())
}

fn classify_v4(a: Ipv4Addr, host: &impl HostAddresses) -> Result<(), SourceRefusal> {
    let first = a.octets()[0];
    if first == 0 {
        Err(SourceRefusal::Unspecified)
    } else if a.is_loopback() {
        Err(SourceRefusal::Loopback)
    } else if a.is_multicast() {
        Err(SourceRefusal::Multicast)
    } else if a.is_broadcast() || host.is_subnet_broadcast(a) {
        Err(SourceRefusal::Broadcast)
    } else {
        Ok(())
    }
}

fn classify_v6(a: Ipv6Addr) -> Result<(), SourceRefusal> {
    let bits = u128::from(a);
    if a.is_unspecified() {
        Err(SourceRefusal::Unspecified)
    } else if a.is_loopback() {
        Err(SourceRefusal::Loopback)
    } else if a.is_multicast() {
        Err(SourceRefusal::Multicast)
    } else if bits >> 32 == 0xffff || bits >> 32 == 0 {
        // ::ffff:0:0/96 mapped; ::/96 compatible (:: and ::1 are above).
        Err(SourceRefusal::Mapped)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host of the tests: 10.199.0.1/24 and fd00:199::1/64.
    struct Host;

    impl HostAddresses for Host {
        fn is_own(&self, addr: IpAddr) -> bool {
            addr == IpAddr::from([10, 199, 0, 1]) || addr.to_string() == "fd00:199::1"
        }
        fn is_subnet_broadcast(&self, addr: Ipv4Addr) -> bool {
            addr == Ipv4Addr::new(10, 199, 0, 255)
        }
    }

    fn class(text: &str) -> Result<(), SourceRefusal> {
        classify(text.parse().unwrap(), &Host)
    }

    #[test]
    fn every_impossible_source_of_issue_15_is_refused_for_its_reason() {
        use SourceRefusal::*;
        for (text, why) in [
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("224.0.0.5", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("10.199.0.255", Broadcast),
            ("10.199.0.1", Own),
            ("::", Unspecified),
            ("::1", Loopback),
            ("ff02::1", Multicast),
            ("ff05::1:3", Multicast),
            ("::ffff:10.199.0.2", Mapped),
            ("::ffff:198.51.100.7", Mapped),
            ("::198.51.100.7", Mapped),
            ("fd00:199::1", Own),
        ] {
            assert_eq!(class(text), Err(why), "{text}");
        }
    }

    #[test]
    fn unicast_sources_of_other_hosts_knock() {
        for text in [
            "10.199.0.2",
            "198.51.100.7",
            "10.199.0.254",
            "100.64.0.1",
            "169.254.1.1",
            "240.0.0.1",
            "fd00:199::2",
            "fe80::1",
            "2001:db8::7",
            "64:ff9b::c633:6407",
            "::1:0:0:1",
        ] {
            assert_eq!(class(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<&str> = SourceRefusal::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SourceRefusal::ALL.len());
    }
}
