//! The table of links and their own addresses, kept by applying rtnetlink
//! announcements one by one or replacing it with a fresh dump. Pure data:
//! the socket side is in the parent module.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::wire::rtnetlink::{
    link_type_name, AddrMsg, LinkMsg, Message, Vlan, IFF_RUNNING, IFF_UP,
};

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `IFLA_IFNAME`, e.g. `eth0`.
    pub name: String,
    /// ifindex, positive.
    pub index: u32,
    /// ARPHRD_* link type (`ifi_type`): tells the capture its link header.
    pub hatype: u16,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Operationally up (IFF_RUNNING): carrier present.
    pub running: bool,
    /// Own addresses, sorted, without duplicates.
    pub addrs: Vec<IpAddr>,
    /// Set for a VLAN device.
    pub vlan: Option<Vlan>,
}

impl Interface {
    /// A short name for the link type, e.g. `ether`.
    pub fn link_type(&self) -> Cow<'static, str> {
        link_type_name(self.hatype)
    }
}

/// A change in the table, as `Addresses::process` / `refresh` report it.
///
/// A rename is reported as `LinkGone` under the old name followed by
/// `LinkNew` under the new one, both with the same index: to a daemon that
/// follows an interface by name, that is what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // the fields: ifindex, and the address or link name
pub enum Change {
    /// `addr` became an own address of link `index`.
    AddrAdded { index: u32, addr: IpAddr },
    /// `addr` is no longer an own address of link `index`.
    AddrRemoved { index: u32, addr: IpAddr },
    /// The link was set administratively up.
    LinkUp { index: u32, name: String },
    /// The link was set administratively down.
    LinkDown { index: u32, name: String },
    /// The link was deleted (or renamed away from `name`).
    LinkGone { index: u32, name: String },
    /// A link appeared (or was renamed to `name`); `by_index` has its state.
    LinkNew { index: u32, name: String },
    /// Notifications were lost (socket overrun) and the table was re-read;
    /// the changes before this one are the difference that re-read found.
    Resynced,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |n: &str| crate::daemon::log::sanitize(n);
        match self {
            Change::AddrAdded { index, addr } => {
                write!(f, "address {addr} added on ifindex {index}")
            }
            Change::AddrRemoved { index, addr } => {
                write!(f, "address {addr} removed from ifindex {index}")
            }
            Change::LinkUp { index, name: n } => write!(f, "link {} (index {index}) up", name(n)),
            Change::LinkDown { index, name: n } => {
                write!(f, "link {} (index {index}) down", name(n))
            }
            Change::LinkGone { index, name: n } => {
                write!(f, "link {} (index {index}) gone", name(n))
            }
            Change::LinkNew { index, name: n } => write!(f, "link {} (index {index}) new", name(n)),
            Change::Resynced => f.write_str("netlink notifications lost; address table re-read"),
        }
    }
}

/// What identifies an address to the kernel: IPv4 allows the same local
/// address twice on one link with different prefixes (or peers), and
/// deleting one must not forget the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AddrKey {
    local: IpAddr,
    prefix_len: u8,
    address: IpAddr,
}

impl From<&AddrMsg> for AddrKey {
    fn from(a: &AddrMsg) -> AddrKey {
        AddrKey {
            local: a.local,
            prefix_len: a.prefix_len,
            address: a.address,
        }
    }
}

#[derive(Debug, Clone)]
struct Link {
    iface: Interface,
    keys: Vec<AddrKey>,
}

impl Link {
    fn has_local(&self, addr: IpAddr) -> bool {
        self.keys.iter().any(|k| k.local == addr)
    }

    fn rebuild_addrs(&mut self) {
        let mut addrs: Vec<IpAddr> = self.keys.iter().map(|k| k.local).collect();
        crate::sort::sort(&mut addrs);
        addrs.dedup();
        self.iface.addrs = addrs;
    }
}

/// Links by index (sorted), each with its addresses.
#[derive(Debug, Clone, Default)]
pub(super) struct Table {
    links: Vec<Link>,
}

/// `-i NAME` names no interface: the error lists the ones there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSuchInterface {
    /// The name asked for.
    pub name: String,
    /// The interfaces the kernel has, by index.
    pub known: Vec<String>,
}

impl fmt::Display for NoSuchInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<String> = self
            .known
            .iter()
            .map(|n| crate::daemon::log::sanitize(n))
            .collect();
        write!(
            f,
            "no network interface named \"{}\"; available: {}",
            crate::daemon::log::sanitize(&self.name),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    }
}

impl std::error::Error for NoSuchInterface {}

impl Table {
    /// All interfaces, by index.
    pub(super) fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.links.iter().map(|l| &l.iface)
    }

    /// The interfaces, by index, without their address keys.
    pub(super) fn into_interfaces(self) -> Vec<Interface> {
        self.links.into_iter().map(|l| l.iface).collect()
    }

    /// The interface called `name`.
    pub(super) fn resolve(&self, name: &str) -> Result<&Interface, NoSuchInterface> {
        self.interfaces()
            .find(|i| i.name == name)
            .ok_or_else(|| NoSuchInterface {
                name: name.to_string(),
                known: self.interfaces().map(|i| i.name.clone()).collect(),
            })
    }

    /// The interface with ifindex `index`.
    pub(super) fn by_index(&self, index: u32) -> Option<&Interface> {
        self.get(index).map(|l| &l.iface)
    }

    fn find(&self, index: u32) -> Result<usize, usize> {
        self.links.binary_search_by_key(&index, |l| l.iface.index)
    }

    fn get(&self, index: u32) -> Option<&Link> {
        self.find(index).ok().and_then(|i| self.links.get(i))
    }

    /// Is `addr` the directed broadcast address of an IPv4 subnet of some
    /// interface (`10.0.0.255` for `10.0.0.1/24`; none for /31 and /32)?
    pub(super) fn is_subnet_broadcast(&self, addr: Ipv4Addr) -> bool {
        self.links
            .iter()
            .flat_map(|l| &l.keys)
            .any(|k| match k.local {
                IpAddr::V4(own) if k.prefix_len <= 30 => {
                    let host = u32::MAX >> k.prefix_len;
                    u32::from(own) | host == u32::from(addr)
                }
                _ => false,
            })
    }

    /// The VLAN device (up) on `parent` for tag `id` / protocol `tpid`.
    pub(super) fn vlan_device(&self, parent: u32, id: u16, tpid: u16) -> Option<u32> {
        self.links
            .iter()
            .find(|l| {
                l.iface.up
                    && l.iface
                        .vlan
                        .is_some_and(|v| v.parent == parent && v.id == id && v.tpid == tpid)
            })
            .map(|l| l.iface.index)
    }

    pub(super) fn is_local(&self, index: u32, dst: IpAddr) -> bool {
        if index == 0 {
            return self
                .links
                .iter()
                .any(|l| l.iface.addrs.binary_search(&dst).is_ok());
        }
        self.get(index)
            .is_some_and(|l| l.iface.addrs.binary_search(&dst).is_ok())
    }

    /// Applies one message, reporting only what actually changed (replays
    /// of known state, as after subscribe-then-dump, report nothing).
    pub(super) fn apply(&mut self, msg: Message, out: &mut Vec<Change>) {
        match msg {
            Message::NewLink(l) => self.new_link(l, out),
            Message::DelLink(l) => {
                if let Ok(i) = self.find(l.index) {
                    let link = self.links.remove(i);
                    drop_link(&link, out);
                }
            }
            Message::NewAddr(a) => {
                let Ok(i) = self.find(a.index) else { return };
                let Some(link) = self.links.get_mut(i) else {
                    return;
                };
                let key = AddrKey::from(&a);
                if let Err(pos) = link.keys.binary_search(&key) {
                    let was = link.has_local(a.local);
                    link.keys.insert(pos, key);
                    link.rebuild_addrs();
                    if !was {
                        out.push(Change::AddrAdded {
                            index: a.index,
                            addr: a.local,
                        });
                    }
                }
            }
            Message::DelAddr(a) => {
                let Ok(i) = self.find(a.index) else { return };
                let Some(link) = self.links.get_mut(i) else {
                    return;
                };
                let key = AddrKey::from(&a);
                let before = link.keys.len();
                link.keys.retain(|k| *k != key);
                if link.keys.len() == before {
                    // Not the announced peer we stored: match on what the
                    // kernel itself keys deletion by.
                    link.keys
                        .retain(|k| !(k.local == a.local && k.prefix_len == a.prefix_len));
                }
                if link.keys.len() != before {
                    link.rebuild_addrs();
                    if !link.has_local(a.local) {
                        out.push(Change::AddrRemoved {
                            index: a.index,
                            addr: a.local,
                        });
                    }
                }
            }
            Message::Done(_) | Message::Error(_) | Message::Other => {}
        }
    }

    fn new_link(&mut self, l: LinkMsg, out: &mut Vec<Change>) {
        let up = l.flags & IFF_UP != 0;
        let running = l.flags & IFF_RUNNING != 0;
        match self.find(l.index) {
            Ok(i) => {
                let Some(link) = self.links.get_mut(i) else {
                    return;
                };
                let iface = &mut link.iface;
                if let Some(name) = l.name {
                    if name != iface.name {
                        let old = std::mem::replace(&mut iface.name, name.clone());
                        out.push(Change::LinkGone {
                            index: l.index,
                            name: old,
                        });
                        out.push(Change::LinkNew {
                            index: l.index,
                            name,
                        });
                    }
                }
                iface.hatype = l.hatype;
                iface.running = running;
                iface.vlan = l.vlan;
                if up != iface.up {
                    iface.up = up;
                    let name = iface.name.clone();
                    out.push(if up {
                        Change::LinkUp {
                            index: l.index,
                            name,
                        }
                    } else {
                        Change::LinkDown {
                            index: l.index,
                            name,
                        }
                    });
                }
            }
            Err(pos) => {
                // The kernel always names a new link; without a name there is
                // nothing a daemon could match it by.
                let Some(name) = l.name else { return };
                out.push(Change::LinkNew {
                    index: l.index,
                    name: name.clone(),
                });
                self.links.insert(
                    pos,
                    Link {
                        iface: Interface {
                            name,
                            index: l.index,
                            hatype: l.hatype,
                            up,
                            running,
                            addrs: Vec::new(),
                            vlan: l.vlan,
                        },
                        keys: Vec::new(),
                    },
                );
            }
        }
    }

    /// Replaces the table with a fresh dump, reporting the difference.
    pub(super) fn replace(&mut self, new: Table, out: &mut Vec<Change>) {
        let old = std::mem::replace(self, new);
        for link in &old.links {
            if self.get(link.iface.index).is_none() {
                drop_link(link, out);
            }
        }
        for now in &self.links {
            let index = now.iface.index;
            let Some(link) = old.get(index) else {
                out.push(Change::LinkNew {
                    index,
                    name: now.iface.name.clone(),
                });
                for &addr in &now.iface.addrs {
                    out.push(Change::AddrAdded { index, addr });
                }
                continue;
            };
            if now.iface.name != link.iface.name {
                out.push(Change::LinkGone {
                    index,
                    name: link.iface.name.clone(),
                });
                out.push(Change::LinkNew {
                    index,
                    name: now.iface.name.clone(),
                });
            }
            for &addr in &link.iface.addrs {
                if now.iface.addrs.binary_search(&addr).is_err() {
                    out.push(Change::AddrRemoved { index, addr });
                }
            }
            for &addr in &now.iface.addrs {
                if link.iface.addrs.binary_search(&addr).is_err() {
                    out.push(Change::AddrAdded { index, addr });
                }
            }
            let name = now.iface.name.clone();
            match (link.iface.up, now.iface.up) {
                (false, true) => out.push(Change::LinkUp { index, name }),
                (true, false) => out.push(Change::LinkDown { index, name }),
                _ => {}
            }
        }
    }
}

fn drop_link(link: &Link, out: &mut Vec<Change>) {
    let index = link.iface.index;
    for &addr in &link.iface.addrs {
        out.push(Change::AddrRemoved { index, addr });
    }
    out.push(Change::LinkGone {
        index,
        name: link.iface.name.clone(),
    });
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;
    use crate::wire::rtnetlink::fixtures::*;
    use crate::wire::rtnetlink::RTM_DELLINK;

    /// RTM_NEWLINK for `ip link add link <parent> name eth0.<id> type vlan
    /// id <id> [protocol 802.1ad]`, up, built by the kernel ABI
    /// (<linux/if_link.h>): this machine's kernel has no 8021q module to
    /// record a real one from.
    fn vlan_newlink(index: u32, parent: u32, id: u16, tpid: u16) -> Vec<u8> {
        vlan_newlink_fixture(index, parent, id, tpid)
    }

    #[test]
    fn vlan_devices_are_looked_up_by_parent_and_tag() {
        let mut t = Table::default();
        let mut out = Vec::new();
        t.apply(one(&vlan_newlink(9, 2, 5, 0x8100)).unwrap(), &mut out);
        t.apply(one(&vlan_newlink(10, 2, 6, 0x88a8)).unwrap(), &mut out);
        assert_eq!(t.vlan_device(2, 5, 0x8100), Some(9));
        assert_eq!(t.vlan_device(2, 6, 0x88a8), Some(10));
        assert_eq!(t.vlan_device(2, 6, 0x8100), None, "wrong tag protocol");
        assert_eq!(t.vlan_device(3, 5, 0x8100), None, "another parent");
        assert_eq!(t.vlan_device(2, 7, 0x8100), None, "no such tag");
        // A device that is down takes no frames.
        let mut down = vlan_newlink(9, 2, 5, 0x8100);
        down[24..28].copy_from_slice(&0u32.to_ne_bytes());
        t.apply(one(&down).unwrap(), &mut out);
        assert_eq!(t.vlan_device(2, 5, 0x8100), None);
    }

    #[test]
    fn subnet_broadcasts_come_from_the_prefixes() {
        let mut t = table_with_dummy7();
        t.apply(one(&NEWADDR_V4).unwrap(), &mut Vec::new()); // 192.0.2.7/24
        assert!(t.is_subnet_broadcast(Ipv4Addr::new(192, 0, 2, 255)));
        assert!(!t.is_subnet_broadcast(Ipv4Addr::new(192, 0, 2, 7)));
        assert!(!t.is_subnet_broadcast(Ipv4Addr::new(192, 0, 3, 255)));
        let mut t = Table::default();
        let mut out = Vec::new();
        t.apply(one(&NEWLINK_UP).unwrap(), &mut out);
        t.apply(one(&NEWADDR_PTP).unwrap(), &mut out); // 10.1.1.1 peer 10.1.1.2/32
        assert!(!t.is_subnet_broadcast(Ipv4Addr::new(10, 1, 1, 1)));
        assert!(!t.is_subnet_broadcast(Ipv4Addr::BROADCAST));
    }

    fn table_with_dummy7() -> Table {
        let mut t = Table::default();
        let mut out = Vec::new();
        t.apply(one(&NEWLINK_UP).unwrap(), &mut out);
        assert_eq!(
            out,
            [Change::LinkNew {
                index: 3,
                name: "dummy7".into()
            }]
        );
        t
    }

    #[test]
    fn resolve_names_the_interfaces_there_are() {
        let t = table_with_dummy7();
        assert_eq!(t.resolve("dummy7").map(|i| i.index), Ok(3));
        let e = t.resolve("eth\n0").unwrap_err();
        assert_eq!(e.known, ["dummy7"]);
        assert_eq!(
            e.to_string(),
            "no network interface named \"eth\\n0\"; available: dummy7"
        );
        let e = Table::default().resolve("eth0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no network interface named \"eth0\"; available: none"
        );
    }

    #[test]
    fn table_follows_addresses() {
        let mut t = table_with_dummy7();
        let mut out = Vec::new();
        let own = v4(192, 0, 2, 7);
        assert!(!t.is_local(3, own));
        t.apply(one(&NEWADDR_V4).unwrap(), &mut out);
        assert_eq!(
            out,
            [Change::AddrAdded {
                index: 3,
                addr: own
            }]
        );
        assert!(t.is_local(3, own));
        assert!(t.is_local(0, own));
        assert!(!t.is_local(4, own));
        // A replay (subscription raced the dump) changes nothing.
        out.clear();
        t.apply(one(&NEWADDR_V4).unwrap(), &mut out);
        assert!(out.is_empty());
        t.apply(one(&DELADDR_V4).unwrap(), &mut out);
        assert_eq!(
            out,
            [Change::AddrRemoved {
                index: 3,
                addr: own
            }]
        );
        assert!(!t.is_local(3, own) && !t.is_local(0, own));
    }

    #[test]
    fn table_records_point_to_point_local_not_peer() {
        let mut t = table_with_dummy7();
        let mut out = Vec::new();
        t.apply(one(&NEWADDR_PTP).unwrap(), &mut out);
        assert!(t.is_local(3, v4(10, 1, 1, 1)));
        assert!(!t.is_local(3, v4(10, 1, 1, 2)));
    }

    #[test]
    fn same_address_twice_with_other_prefix_survives_one_delete() {
        let mut t = table_with_dummy7();
        let mut out = Vec::new();
        let mut wide = NEWADDR_V4;
        wide[17] = 16;
        t.apply(one(&NEWADDR_V4).unwrap(), &mut out);
        t.apply(one(&wide).unwrap(), &mut out);
        assert_eq!(out.len(), 1, "second prefix is not a new address: {out:?}");
        out.clear();
        t.apply(one(&DELADDR_V4).unwrap(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(t.is_local(3, v4(192, 0, 2, 7)));
    }

    #[test]
    fn address_on_unknown_link_is_ignored() {
        let mut t = Table::default();
        let mut out = Vec::new();
        t.apply(one(&NEWADDR_V4).unwrap(), &mut out);
        assert!(out.is_empty());
        assert!(!t.is_local(0, v4(192, 0, 2, 7)));
    }

    #[test]
    fn link_down_rename_and_removal() {
        let mut t = table_with_dummy7();
        let mut out = Vec::new();
        t.apply(one(&NEWADDR_V6).unwrap(), &mut out);
        out.clear();
        let mut down = NEWLINK_UP;
        down[24] = 0x02; // flags: BROADCAST only
        t.apply(one(&down).unwrap(), &mut out);
        assert_eq!(
            out,
            [Change::LinkDown {
                index: 3,
                name: "dummy7".into()
            }]
        );
        out.clear();
        let mut renamed = down;
        renamed[41] = b'9';
        t.apply(one(&renamed).unwrap(), &mut out);
        assert_eq!(
            out,
            [
                Change::LinkGone {
                    index: 3,
                    name: "dummy7".into()
                },
                Change::LinkNew {
                    index: 3,
                    name: "dummy9".into()
                }
            ]
        );
        out.clear();
        let mut del = renamed;
        del[4] = RTM_DELLINK as u8;
        t.apply(one(&del).unwrap(), &mut out);
        assert_eq!(
            out,
            [
                Change::AddrRemoved {
                    index: 3,
                    addr: "2001:db8::7".parse().unwrap()
                },
                Change::LinkGone {
                    index: 3,
                    name: "dummy9".into()
                }
            ]
        );
        assert!(t.links.is_empty());
    }

    #[test]
    fn replace_reports_the_difference() {
        let mut old = table_with_dummy7();
        let mut out = Vec::new();
        old.apply(one(&NEWADDR_V4).unwrap(), &mut out);
        let mut new = table_with_dummy7();
        new.apply(one(&NEWADDR_V6).unwrap(), &mut out);
        let mut other = NEWLINK_UP;
        other[20] = 5;
        other[41] = b'5';
        new.apply(one(&other).unwrap(), &mut out);
        out.clear();
        old.replace(new, &mut out);
        assert_eq!(
            out,
            [
                Change::AddrRemoved {
                    index: 3,
                    addr: v4(192, 0, 2, 7)
                },
                Change::AddrAdded {
                    index: 3,
                    addr: "2001:db8::7".parse().unwrap()
                },
                Change::LinkNew {
                    index: 5,
                    name: "dummy5".into()
                },
            ]
        );
        assert!(old.is_local(3, "2001:db8::7".parse().unwrap()));
        assert!(!old.is_local(3, v4(192, 0, 2, 7)));
    }
}
