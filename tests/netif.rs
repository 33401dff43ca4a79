//! End-to-end: the address table against a real kernel, inside network
//! namespaces the tests create (see tests/common). Addresses and links are
//! changed with iproute2 exactly as DHCP clients or pppd would.

mod common;

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use common::{Netns, Pair};
use tportknockd::capture::netif::{self, Addresses, Change};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ifindex(ns: &Netns, name: &str) -> u32 {
    ns.must(&format!("cat /sys/class/net/{name}/ifindex"))
        .trim()
        .parse()
        .unwrap()
}

/// A pair whose server end has its IPv6 link-local address already: the
/// kernel adds it asynchronously after link-up, and tests that expect an
/// exact list of changes must not see it arrive.
fn settled_pair() -> Pair {
    let pair = Pair::new();
    let cmd = format!("ip -6 -o addr show dev {} scope link", pair.server_if);
    let ready = common::wait_for(Duration::from_secs(3), || {
        (!pair.server.must(&cmd).trim().is_empty()).then_some(())
    });
    assert!(
        ready.is_some(),
        "no IPv6 link-local address on {}",
        pair.server_if
    );
    pair
}

/// Opens the live table inside `ns`; the socket stays in that namespace.
fn open_in(ns: &Netns) -> Addresses {
    ns.run(|| Addresses::open().expect("Addresses::open"))
}

fn poll_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

/// Polls the fd and processes until `done` holds for the changes seen so
/// far, or `limit` passes. Returns all changes and the time it took.
fn changes_until(
    table: &mut Addresses,
    limit: Duration,
    done: impl Fn(&[Change]) -> bool,
) -> (Vec<Change>, Duration) {
    let start = Instant::now();
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        if poll_readable(table.fd(), left) {
            seen.extend(table.process().expect("process"));
        }
    }
    (seen, start.elapsed())
}

#[test]
fn list_shows_veth_with_addresses_and_loopback() {
    let pair = Pair::new();
    let ifaces = pair.server.run(|| netif::list().expect("list"));
    let lo = ifaces.iter().find(|i| i.name == "lo").expect("lo listed");
    assert_eq!(lo.index, 1);
    assert_eq!(lo.link_type(), "loopback");
    assert!(lo.up);
    assert_eq!(lo.addrs, [ip("127.0.0.1"), ip("::1")]);

    let veth = ifaces
        .iter()
        .find(|i| i.name == pair.server_if)
        .expect("veth listed");
    assert_eq!(veth.index, ifindex(&pair.server, &pair.server_if));
    assert_eq!(veth.link_type(), "ether");
    assert!(veth.up);
    assert!(veth.addrs.contains(&IpAddr::V4(pair.server4)));
    assert!(veth.addrs.contains(&IpAddr::V6(pair.server6)));
    // The client's addresses live in the other namespace.
    assert!(!veth.addrs.contains(&IpAddr::V4(pair.client4)));
    assert_eq!(ifaces.len(), 2, "{ifaces:?}");

    let text = tportknockd::daemon::iflist::format_list(&ifaces);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("lo ") && lines[0].contains("loopback"));
    let words: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(words[0], pair.server_if);
    assert_eq!(words[1], veth.index.to_string());
    assert_eq!(&words[2..4], ["ether", "up"]);
    assert!(words.contains(&"10.199.0.1") && words.contains(&"fd00:199::1"));
}

#[test]
fn resolve_finds_interface_or_lists_real_names() {
    let pair = Pair::new();
    let name = pair.server_if.clone();
    let table = open_in(&pair.server);
    let found = table.resolve(&name).expect("resolve veth");
    assert_eq!(found.index, ifindex(&pair.server, &pair.server_if));
    let err = table
        .resolve("nope")
        .expect_err("nope must not resolve")
        .to_string();
    assert!(err.contains("\"nope\""), "{err}");
    assert!(err.contains("lo"), "{err}");
    assert!(err.contains(&pair.server_if), "{err}");
}

#[test]
fn added_and_removed_addresses_are_followed_at_once() {
    let pair = Pair::new();
    let mut table = open_in(&pair.server);
    let index = ifindex(&pair.server, &pair.server_if);
    assert!(table.is_local(index, IpAddr::V4(pair.server4)));
    assert!(table.is_local(0, IpAddr::V4(pair.server4)));
    assert!(!table.is_local(1, IpAddr::V4(pair.server4)), "not lo's");
    assert!(table.is_local(1, ip("127.0.0.1")));
    assert!(!table.is_local(index, IpAddr::V4(pair.client4)));

    let new4 = ip("10.199.5.5");
    let new6 = ip("fd00:5::5");
    pair.server.must(&format!(
        "ip addr add {new4}/24 dev {0} && ip -6 addr add {new6}/64 dev {0} nodad",
        pair.server_if
    ));
    let (changes, took) = changes_until(&mut table, Duration::from_secs(1), |c| {
        c.contains(&Change::AddrAdded { index, addr: new4 })
            && c.contains(&Change::AddrAdded { index, addr: new6 })
    });
    assert!(
        changes.contains(&Change::AddrAdded { index, addr: new4 })
            && changes.contains(&Change::AddrAdded { index, addr: new6 }),
        "within 1 s: {changes:?}"
    );
    eprintln!("address additions seen after {took:?}");
    assert!(table.is_local(index, new4) && table.is_local(index, new6));
    assert!(table.is_local(0, new4));
    assert!(!table.is_local(1, new4));
    assert!(table.by_index(index).unwrap().addrs.contains(&new6));

    pair.server
        .must(&format!("ip addr del {new4}/24 dev {}", pair.server_if));
    let (changes, _) = changes_until(&mut table, Duration::from_secs(1), |c| {
        c.contains(&Change::AddrRemoved { index, addr: new4 })
    });
    assert!(
        changes.contains(&Change::AddrRemoved { index, addr: new4 }),
        "{changes:?}"
    );
    assert!(!table.is_local(index, new4) && !table.is_local(0, new4));
    assert!(table.is_local(index, new6), "the other address stays");
}

#[test]
fn refresh_rereads_a_stale_table() {
    let pair = settled_pair();
    let mut table = open_in(&pair.server);
    let index = ifindex(&pair.server, &pair.server_if);
    let addr = ip("10.199.7.7");
    pair.server
        .must(&format!("ip addr add {addr}/24 dev {}", pair.server_if));
    // Not processed yet: the table still has the old state. (refresh runs
    // on this thread, outside the namespace: it must re-read the table's
    // namespace, not the caller's.)
    assert!(!table.is_local(index, addr));
    let changes = table.refresh().expect("refresh");
    assert_eq!(changes, [Change::AddrAdded { index, addr }]);
    assert!(table.is_local(index, addr));
    // The queued notification was superseded by the re-read: no replay.
    assert!(table.process().expect("process").is_empty());

    pair.server
        .must(&format!("ip addr del {addr}/24 dev {}", pair.server_if));
    let changes = table.refresh().expect("refresh");
    assert_eq!(changes, [Change::AddrRemoved { index, addr }]);
    assert!(!table.is_local(index, addr));
}

#[test]
fn point_to_point_address_is_the_local_not_the_peer() {
    let pair = settled_pair();
    let mut table = open_in(&pair.server);
    let index = ifindex(&pair.server, &pair.server_if);
    pair.server.must(&format!(
        "ip addr add 10.1.1.1 peer 10.1.1.2 dev {}",
        pair.server_if
    ));
    let (changes, _) = changes_until(&mut table, Duration::from_secs(1), |c| !c.is_empty());
    assert_eq!(
        changes,
        [Change::AddrAdded {
            index,
            addr: ip("10.1.1.1")
        }]
    );
    assert!(table.is_local(index, ip("10.1.1.1")));
    assert!(!table.is_local(index, ip("10.1.1.2")));
    // The dump path agrees with the notification path.
    let listed = pair.server.run(|| netif::list().expect("list"));
    let veth = listed.iter().find(|i| i.index == index).unwrap();
    assert!(veth.addrs.contains(&ip("10.1.1.1")));
    assert!(!veth.addrs.contains(&ip("10.1.1.2")));
}

#[test]
fn same_address_with_two_prefixes_survives_deleting_one() {
    let pair = settled_pair();
    let mut table = open_in(&pair.server);
    let index = ifindex(&pair.server, &pair.server_if);
    let addr = ip("10.9.9.9");
    let dev = &pair.server_if;
    pair.server.must(&format!(
        "ip addr add {addr}/24 dev {dev} && ip addr add {addr}/16 dev {dev} && ip addr del {addr}/24 dev {dev}"
    ));
    let (changes, _) = changes_until(&mut table, Duration::from_secs(1), |c| !c.is_empty());
    // Give any wrongly emitted removal time to arrive too.
    std::thread::sleep(Duration::from_millis(100));
    let mut changes = changes;
    changes.extend(table.process().expect("process"));
    assert_eq!(changes, [Change::AddrAdded { index, addr }]);
    assert!(table.is_local(index, addr));
}

#[test]
fn link_gone_and_back_with_new_index_and_rename() {
    let pair = Pair::new();
    let mut table = open_in(&pair.server);
    let name = pair.server_if.clone();
    let old = ifindex(&pair.server, &name);
    assert_eq!(table.interface(&name).map(|i| i.index), Some(old));

    pair.server.must(&format!("ip link del {name}"));
    let gone = Change::LinkGone {
        index: old,
        name: name.clone(),
    };
    let (changes, _) = changes_until(&mut table, Duration::from_secs(1), |c| c.contains(&gone));
    assert!(changes.contains(&gone), "{changes:?}");
    assert!(changes.contains(&Change::AddrRemoved {
        index: old,
        addr: IpAddr::V4(pair.server4)
    }));
    assert!(table.interface(&name).is_none() && table.by_index(old).is_none());
    assert!(!table.is_local(0, IpAddr::V4(pair.server4)));

    // Like a PPP redial: same name, new index.
    let peer = format!("{}p", &name[..name.len().min(13)]);
    pair.server.must(&format!(
        "ip link add {name} type veth peer name {peer} && ip link set {name} up"
    ));
    let new = ifindex(&pair.server, &name);
    assert_ne!(new, old);
    let appeared = Change::LinkNew {
        index: new,
        name: name.clone(),
    };
    let up = Change::LinkUp {
        index: new,
        name: name.clone(),
    };
    let (changes, _) = changes_until(&mut table, Duration::from_secs(1), |c| {
        c.contains(&appeared) && c.contains(&up)
    });
    assert!(changes.contains(&appeared), "{changes:?}");
    assert!(changes.contains(&up), "{changes:?}");
    let iface = table.interface(&name).expect("back");
    assert_eq!((iface.index, iface.up), (new, true));

    let renamed = format!("{}r", &name[..name.len().min(13)]);
    pair.server.must(&format!(
        "ip link set {name} down && ip link set {name} name {renamed}"
    ));
    let expect = [
        Change::LinkDown {
            index: new,
            name: name.clone(),
        },
        Change::LinkGone {
            index: new,
            name: name.clone(),
        },
        Change::LinkNew {
            index: new,
            name: renamed.clone(),
        },
    ];
    let (changes, _) = changes_until(&mut table, Duration::from_secs(1), |c| {
        expect.iter().all(|e| c.contains(e))
    });
    assert!(expect.iter().all(|e| changes.contains(e)), "{changes:?}");
    assert!(table.interface(&name).is_none());
    assert_eq!(table.interface(&renamed).map(|i| i.index), Some(new));
}

#[test]
fn overrun_is_recovered_by_a_full_reread() {
    let pair = Pair::new();
    let mut table = open_in(&pair.server);
    let index = ifindex(&pair.server, &pair.server_if);
    // The kernel rounds this up to its minimum: a few notifications fit.
    table.set_recv_buffer_size(1).unwrap();
    let batch: String = (0..300)
        .map(|i| {
            format!(
                "addr add 10.77.{}.{}/32 dev {}\n",
                i / 200,
                i % 200 + 1,
                pair.server_if
            )
        })
        .collect();
    let dir = common::TempDir::new("nl");
    let file = dir.join("batch");
    std::fs::write(&file, batch).unwrap();
    pair.server.must(&format!("ip -batch {}", file.display()));

    let changes = table.process().expect("process");
    // Other notifications (the link-local address finishing DAD, say) may
    // follow the resync; what matters is that one happened.
    assert!(changes.contains(&Change::Resynced), "overrun not seen");
    for i in 0..300 {
        let addr = ip(&format!("10.77.{}.{}", i / 200, i % 200 + 1));
        assert!(table.is_local(index, addr), "{addr} missing after resync");
    }
    let added = changes
        .iter()
        .filter(|c| matches!(c, Change::AddrAdded { addr: IpAddr::V4(a), .. } if a.octets()[..2] == [10, 77]))
        .count();
    assert_eq!(added, 300, "each address reported once");
    // The table keeps following after the overrun.
    pair.server
        .must(&format!("ip addr del 10.77.0.1/32 dev {}", pair.server_if));
    let gone = Change::AddrRemoved {
        index,
        addr: ip("10.77.0.1"),
    };
    let (changes, _) = changes_until(&mut table, Duration::from_secs(1), |c| c.contains(&gone));
    assert!(changes.contains(&gone), "{changes:?}");
}

#[test]
fn notifications_not_from_the_kernel_are_ignored() {
    let pair = Pair::new();
    let mut table = open_in(&pair.server);
    let index = ifindex(&pair.server, &pair.server_if);
    let fd = table.fd();
    // A root process in the namespace unicasts a forged RTM_NEWADDR for
    // 192.0.2.99 to the table's netlink port.
    pair.server.run(move || {
        // SAFETY: plain libc calls on fds and structs owned here; `fd` is
        // the table's socket, alive for the whole test.
        unsafe {
            let mut me: libc::sockaddr_nl = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            assert_eq!(
                libc::getsockname(fd, (&mut me as *mut libc::sockaddr_nl).cast(), &mut len),
                0
            );
            let s = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
            assert!(s >= 0);
            let mut msg = [0u8; 16 + 8 + 8];
            msg[0..4].copy_from_slice(&32u32.to_ne_bytes());
            msg[4..6].copy_from_slice(&20u16.to_ne_bytes()); // RTM_NEWADDR
            msg[16] = libc::AF_INET as u8;
            msg[17] = 32;
            msg[20..24].copy_from_slice(&index.to_ne_bytes());
            msg[24..26].copy_from_slice(&8u16.to_ne_bytes());
            msg[26..28].copy_from_slice(&1u16.to_ne_bytes()); // IFA_ADDRESS
            msg[28..32].copy_from_slice(&[192, 0, 2, 99]);
            let mut to: libc::sockaddr_nl = std::mem::zeroed();
            to.nl_family = libc::AF_NETLINK as u16;
            to.nl_pid = me.nl_pid;
            let n = libc::sendto(
                s,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            );
            assert_eq!(n, 32, "sendto: {}", std::io::Error::last_os_error());
            libc::close(s);
        }
    });
    assert!(
        poll_readable(table.fd(), Duration::from_secs(1)),
        "forged message did not arrive"
    );
    let changes = table.process().expect("process");
    assert!(changes.is_empty(), "{changes:?}");
    assert!(!table.is_local(index, ip("192.0.2.99")));
}

/// The receive buffers start empty and grow to each reply: a table whose
/// dump takes many datagrams (600 addresses, about 60 KiB of replies) is
/// read whole, at start and on a refresh.
#[test]
fn a_dump_of_many_datagrams_is_read_whole() {
    let pair = Pair::new();
    let dev = pair.server_if.clone();
    let batch: String = (0..600)
        .map(|i| {
            format!(
                "address add 10.77.{}.{}/32 dev {dev}\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let file = std::env::temp_dir().join(format!("tpk-netif-batch-{}", std::process::id()));
    std::fs::write(&file, batch).unwrap();
    pair.server.must(&format!("ip -batch {}", file.display()));
    let _ = std::fs::remove_file(&file);
    let all = |t: &Addresses| {
        let index = ifindex(&pair.server, &dev);
        (0..600).all(|i| {
            let a = ip(&format!("10.77.{}.{}", i / 250, i % 250 + 1));
            t.is_local(index, a)
        })
    };
    let mut table = open_in(&pair.server);
    assert!(all(&table), "an address of the 600 is missing after open");
    table.refresh().expect("refresh");
    assert!(
        all(&table),
        "an address of the 600 is missing after a refresh"
    );
}
