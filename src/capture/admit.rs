//! Which captured frames are knocks: only a frame the host's own stack
//! would take from another host. The capture sees frames below the
//! firewall, including frames the host throws away; a knock must not be
//! one of them.
//!
//! The rules, by stage:
//! - link ([`link`]): the frame is addressed to this host's link address
//!   (`PACKET_HOST`), not another host's (promiscuous capture), a link
//!   broadcast or multicast;
//! - decode (`wire::decode_captured`): a right IPv4 header checksum, IP
//!   lengths that agree with the wire, no fragment (we do not reassemble);
//! - VLAN and destination ([`knock`]): a tag counts only when a VLAN
//!   device for it sits on the receiving interface, and then the
//!   destination must be one of *that device's* addresses; a tag left in
//!   the frame bytes (a stacked one) never counts;
//! - source ([`knock`], `knock::source::classify`): a unicast address of
//!   another host.
//!
//! Each refusal is counted by reason in [`Refusals`].

use std::fmt;
use std::net::IpAddr;

use crate::capture::ring::FrameMeta;
use crate::knock::source::{self, HostAddresses, SourceRefusal};
use crate::knock::Knock;
use crate::wire::{self, Decoded, Link, Malformed};

/// What the admission rules need to know about the host beyond its
/// addresses: which addresses belong to which interface, and its VLAN
/// devices.
pub trait Host: HostAddresses {
    /// Is `dst` an own address of interface `ifindex`?
    fn is_local(&self, ifindex: u32, dst: IpAddr) -> bool;
    /// The VLAN device (up) on `parent` for tag `id` and protocol `tpid`.
    fn vlan_device(&self, parent: u32, id: u16, tpid: u16) -> Option<u32>;
}

impl HostAddresses for crate::capture::netif::Addresses {
    fn is_own(&self, addr: IpAddr) -> bool {
        self.is_local(0, addr)
    }
    fn is_subnet_broadcast(&self, addr: std::net::Ipv4Addr) -> bool {
        crate::capture::netif::Addresses::is_subnet_broadcast(self, addr)
    }
}

impl Host for crate::capture::netif::Addresses {
    fn is_local(&self, ifindex: u32, dst: IpAddr) -> bool {
        crate::capture::netif::Addresses::is_local(self, ifindex, dst)
    }
    fn vlan_device(&self, parent: u32, id: u16, tpid: u16) -> Option<u32> {
        crate::capture::netif::Addresses::vlan_device(self, parent, id, tpid)
    }
}

/// `sll_pkttype` of a frame addressed to this host (<linux/if_packet.h>).
pub const PACKET_HOST: u8 = libc::PACKET_HOST;

/// Why a frame is no knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Addressed to another host's link address (promiscuous capture).
    OtherHost,
    /// A link-layer broadcast.
    LinkBroadcast,
    /// A link-layer multicast.
    LinkMulticast,
    /// Any other packet type that is not for this host.
    OtherPacketType,
    /// A VLAN tag no device on the interface takes, a destination that is
    /// not the VLAN device's, or a tag stacked in the frame bytes.
    Vlan,
    /// The first fragment of a packet (fragments are not reassembled).
    Fragment,
    /// A wrong IPv4 header checksum.
    BadChecksum,
    /// IP length fields that do not agree with the frame.
    BadLength,
    /// A source that cannot knock.
    Source(SourceRefusal),
}

impl Refusal {
    /// The refusal a malformed frame also counts as, if any.
    pub fn of_malformed(m: Malformed) -> Option<Refusal> {
        match m {
            Malformed::BadChecksum(_) => Some(Refusal::BadChecksum),
            Malformed::BadTotalLength(_) => Some(Refusal::BadLength),
            _ => None,
        }
    }
}

/// What became of one captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A knock for the matchers; `local` as in [`Admission::Knock`].
    Knock {
        /// The decoded knock.
        knock: Knock,
        /// Its destination is an own address of the interface that took it.
        local: bool,
    },
    /// Refused for this reason.
    Refused(Refusal),
    /// Broken in a way the host would drop it for (count it with
    /// [`Refusals::count_malformed`] too).
    Malformed(Malformed),
    /// Not a knock and nothing to count (another protocol, a later
    /// fragment, a duplicate).
    Ignored,
}

/// Every rule, in order, for one captured frame of link type `link`;
/// `capture_all` when the ring takes every interface.
pub fn frame(
    meta: &FrameMeta,
    bytes: &[u8],
    link_type: Link,
    capture_all: bool,
    host: &impl Host,
) -> Verdict {
    if let Err(r) = link(meta) {
        return Verdict::Refused(r);
    }
    match wire::decode_captured(bytes, meta.wire_len as usize, link_type) {
        Decoded::Knock(k) => {
            let tagged = wire::has_vlan_tag_in_frame(bytes, link_type);
            match knock(meta, &k, tagged, capture_all, host) {
                Ok(Admission::Knock { local }) => Verdict::Knock { knock: k, local },
                Ok(Admission::Duplicate) => Verdict::Ignored,
                Err(r) => Verdict::Refused(r),
            }
        }
        Decoded::Malformed(m) => Verdict::Malformed(m),
        Decoded::Fragment => Verdict::Refused(Refusal::Fragment),
        Decoded::Other => Verdict::Ignored,
    }
}

/// A frame that passed every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A knock; `local` says the destination is an own address of the
    /// interface that took it (otherwise only knockd `Target` events may
    /// want it).
    Knock {
        /// The destination is the receiving interface's own address.
        local: bool,
    },
    /// A tagged copy of a frame a capture on every interface also gets
    /// untagged from the VLAN device: matched there, not twice.
    Duplicate,
}

/// The link-layer rule: only frames addressed to this host.
pub fn link(meta: &FrameMeta) -> Result<(), Refusal> {
    match meta.pkttype {
        PACKET_HOST => Ok(()),
        libc::PACKET_OTHERHOST => Err(Refusal::OtherHost),
        libc::PACKET_BROADCAST => Err(Refusal::LinkBroadcast),
        libc::PACKET_MULTICAST => Err(Refusal::LinkMulticast),
        _ => Err(Refusal::OtherPacketType),
    }
}

/// VLAN, destination and source rules for a decoded knock `k` that came
/// with `meta`; `tag_in_bytes` from `wire::has_vlan_tag_in_frame`;
/// `capture_all` when the ring takes every interface (ifindex 0).
pub fn knock(
    meta: &FrameMeta,
    k: &Knock,
    tag_in_bytes: bool,
    capture_all: bool,
    host: &impl Host,
) -> Result<Admission, Refusal> {
    if tag_in_bytes {
        return Err(Refusal::Vlan);
    }
    let arrived_on = u32::try_from(meta.ifindex).unwrap_or(0);
    let taken_by = match meta.vlan_tci {
        None => arrived_on,
        Some(tci) => {
            let id = tci & 0x0fff;
            match host.vlan_device(arrived_on, id, meta.vlan_tpid) {
                None => return Err(Refusal::Vlan),
                Some(_) if capture_all => return Ok(Admission::Duplicate),
                Some(dev) => dev,
            }
        }
    };
    let local = host.is_local(taken_by, k.dst);
    if meta.vlan_tci.is_some() && !local {
        // Tagged for a device that does not have this address: the host
        // would not take it, whatever Target events say.
        return Err(Refusal::Vlan);
    }
    source::classify(k.src, host).map_err(Refusal::Source)?;
    Ok(Admission::Knock { local })
}

/// Refusals so far, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// [`Refusal::OtherHost`].
    pub other_host: u64,
    /// [`Refusal::LinkBroadcast`].
    pub link_broadcast: u64,
    /// [`Refusal::LinkMulticast`].
    pub link_multicast: u64,
    /// [`Refusal::OtherPacketType`].
    pub other_pkttype: u64,
    /// [`Refusal::Vlan`].
    pub vlan: u64,
    /// [`Refusal::Fragment`].
    pub fragment: u64,
    /// [`Refusal::BadChecksum`].
    pub bad_checksum: u64,
    /// [`Refusal::BadLength`].
    pub bad_length: u64,
    /// [`Refusal::Source`], in the order of [`SourceRefusal::ALL`].
    pub source: [u64; SourceRefusal::ALL.len()],
}

impl Refusals {
    /// Counts one refusal.
    pub fn count(&mut self, r: Refusal) {
        let n = match r {
            Refusal::OtherHost => &mut self.other_host,
            Refusal::LinkBroadcast => &mut self.link_broadcast,
            Refusal::LinkMulticast => &mut self.link_multicast,
            Refusal::OtherPacketType => &mut self.other_pkttype,
            Refusal::Vlan => &mut self.vlan,
            Refusal::Fragment => &mut self.fragment,
            Refusal::BadChecksum => &mut self.bad_checksum,
            Refusal::BadLength => &mut self.bad_length,
            Refusal::Source(s) => {
                let i = SourceRefusal::ALL.iter().position(|x| *x == s).unwrap_or(0);
                &mut self.source[i]
            }
        };
        *n += 1;
    }

    /// Counts a malformed frame's reason, if it has one here.
    pub fn count_malformed(&mut self, m: Malformed) {
        if let Some(r) = Refusal::of_malformed(m) {
            self.count(r);
        }
    }

    /// Refusals of every reason together.
    pub fn total(&self) -> u64 {
        self.other_host
            + self.link_broadcast
            + self.link_multicast
            + self.other_pkttype
            + self.vlan
            + self.fragment
            + self.bad_checksum
            + self.bad_length
            + self.source.iter().sum::<u64>()
    }
}

/// `key=value` pairs for the stats line.
impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "other_host={} link_broadcast={} link_multicast={} other_pkttype={} vlan={} \
             fragment={} bad_checksum={} bad_length={}",
            self.other_host,
            self.link_broadcast,
            self.link_multicast,
            self.other_pkttype,
            self.vlan,
            self.fragment,
            self.bad_checksum,
            self.bad_length
        )?;
        for (r, n) in SourceRefusal::ALL.iter().zip(self.source) {
            write!(f, " {}={n}", r.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::Proto;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    /// eth0 (2): 10.199.0.1/24; eth0.5 (9, VLAN 5 on eth0): 10.5.0.1/24.
    struct Box2;

    impl HostAddresses for Box2 {
        fn is_own(&self, addr: IpAddr) -> bool {
            self.is_local(2, addr) || self.is_local(9, addr)
        }
        fn is_subnet_broadcast(&self, addr: Ipv4Addr) -> bool {
            addr == Ipv4Addr::new(10, 199, 0, 255) || addr == Ipv4Addr::new(10, 5, 0, 255)
        }
    }

    impl Host for Box2 {
        fn is_local(&self, ifindex: u32, dst: IpAddr) -> bool {
            match ifindex {
                2 => dst == IpAddr::from([10, 199, 0, 1]),
                9 => dst == IpAddr::from([10, 5, 0, 1]),
                _ => false,
            }
        }
        fn vlan_device(&self, parent: u32, id: u16, tpid: u16) -> Option<u32> {
            (parent == 2 && id == 5 && tpid == 0x8100).then_some(9)
        }
    }

    fn meta(pkttype: u8, tci: Option<u16>) -> FrameMeta {
        FrameMeta {
            ifindex: 2,
            hatype: 1,
            pkttype,
            protocol: 0x0800,
            vlan_tci: tci,
            vlan_tpid: 0x8100,
            wire_len: 60,
            snap_len: 60,
            losing: false,
            timestamp: Duration::ZERO,
        }
    }

    fn k(src: [u8; 4], dst: [u8; 4]) -> Knock {
        Knock {
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            proto: Proto::Tcp,
            dst_port: 7000,
            flags: 2,
        }
    }

    const ME: [u8; 4] = [10, 199, 0, 1];
    const VME: [u8; 4] = [10, 5, 0, 1];
    const PEER: [u8; 4] = [10, 199, 0, 2];

    #[test]
    fn only_frames_for_this_host_pass_the_link_rule() {
        assert_eq!(link(&meta(0, None)), Ok(()));
        assert_eq!(link(&meta(1, None)), Err(Refusal::LinkBroadcast));
        assert_eq!(link(&meta(2, None)), Err(Refusal::LinkMulticast));
        assert_eq!(link(&meta(3, None)), Err(Refusal::OtherHost));
        assert_eq!(link(&meta(5, None)), Err(Refusal::OtherPacketType));
    }

    #[test]
    fn untagged_knocks_are_local_to_their_interface() {
        let m = meta(0, None);
        let ok = |kn: Knock| knock(&m, &kn, false, false, &Box2);
        assert_eq!(ok(k(PEER, ME)), Ok(Admission::Knock { local: true }));
        // The VLAN device's address, reached untagged: not this interface's.
        assert_eq!(ok(k(PEER, VME)), Ok(Admission::Knock { local: false }));
        assert_eq!(
            ok(k(PEER, [10, 199, 0, 99])),
            Ok(Admission::Knock { local: false })
        );
        // A tag stacked in the bytes never counts.
        assert_eq!(
            knock(&m, &k(PEER, ME), true, false, &Box2),
            Err(Refusal::Vlan)
        );
    }

    #[test]
    fn a_tag_counts_only_with_its_device_and_the_devices_address() {
        let ok = |tci, dst, all| knock(&meta(0, Some(tci)), &k(PEER, dst), false, all, &Box2);
        assert_eq!(ok(5, VME, false), Ok(Admission::Knock { local: true }));
        // Priority bits do not matter, the id does.
        assert_eq!(ok(0xe005, VME, false), Ok(Admission::Knock { local: true }));
        assert_eq!(
            ok(6, VME, false),
            Err(Refusal::Vlan),
            "no device for VLAN 6"
        );
        assert_eq!(
            ok(5, ME, false),
            Err(Refusal::Vlan),
            "not the VLAN device's address"
        );
        // Capturing everywhere, the VLAN device delivers it again untagged.
        assert_eq!(ok(5, VME, true), Ok(Admission::Duplicate));
        assert_eq!(ok(6, VME, true), Err(Refusal::Vlan));
        // 802.1ad with the same id: the device is 802.1Q.
        let mut m = meta(0, Some(5));
        m.vlan_tpid = 0x88a8;
        assert_eq!(
            knock(&m, &k(PEER, VME), false, false, &Box2),
            Err(Refusal::Vlan)
        );
    }

    #[test]
    fn impossible_sources_are_refused_by_reason() {
        let m = meta(0, None);
        for (src, why) in [
            ([127, 0, 0, 1], SourceRefusal::Loopback),
            ([0, 0, 0, 0], SourceRefusal::Unspecified),
            ([224, 0, 0, 5], SourceRefusal::Multicast),
            ([255, 255, 255, 255], SourceRefusal::Broadcast),
            ([10, 199, 0, 255], SourceRefusal::Broadcast),
            ([10, 5, 0, 255], SourceRefusal::Broadcast),
            (ME, SourceRefusal::Own),
            (VME, SourceRefusal::Own),
        ] {
            assert_eq!(
                knock(&m, &k(src, ME), false, false, &Box2),
                Err(Refusal::Source(why)),
                "{src:?}"
            );
        }
    }

    #[test]
    fn refusals_are_counted_by_reason_and_printed() {
        let mut r = Refusals::default();
        for x in [
            Refusal::OtherHost,
            Refusal::Vlan,
            Refusal::Vlan,
            Refusal::Fragment,
            Refusal::BadChecksum,
            Refusal::BadLength,
            Refusal::Source(SourceRefusal::Mapped),
            Refusal::Source(SourceRefusal::Unspecified),
        ] {
            r.count(x);
        }
        assert_eq!(r.total(), 8);
        assert_eq!(
            r.to_string(),
            "other_host=1 link_broadcast=0 link_multicast=0 other_pkttype=0 vlan=2 \
             fragment=1 bad_checksum=1 bad_length=1 src_unspecified=1 src_loopback=0 \
             src_multicast=0 src_broadcast=0 src_own=0 src_mapped=1"
        );
        r.count_malformed(Malformed::BadChecksum(crate::wire::Layer::Ipv4));
        r.count_malformed(Malformed::TooManyVlanTags);
        assert_eq!((r.bad_checksum, r.total()), (2, 9));
    }
}
