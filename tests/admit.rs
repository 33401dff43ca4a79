//! Issue 15, end to end: only frames the server's own stack would take can
//! knock. Every frame kind of the issue is sent, as real frames from the
//! client namespace, at a running daemon whose one-step event would open a
//! door for any single frame: none opens, the stats line counts each
//! reason, and the same knock from a proper unicast source opens. And a
//! random-port flood with 0–8 IPv6 extension headers stays in the kernel.

mod common;
use common::daemon::*;
use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const PORT: u16 = 7000;
const SYN: u8 = 0x02;

/// One step: any single admitted frame opens a door.
fn config(dir: &TempDir) -> String {
    format!(
        "<ONE>\n sequence = tcp:{PORT}:s\n timeout = 5\n start_command = echo %IP% >> {}\n</ONE>\n",
        dir.join("opened").display()
    )
}

/// The numeric `key=value` pairs of the last stats line after a SIGUSR1
/// (an event's `started/completed` as `EVENT.started`).
fn stats(d: &Daemon) -> HashMap<String, u64> {
    let line = d.stats_line();
    let mut out = HashMap::new();
    for (k, v) in line.split_whitespace().filter_map(|w| w.split_once('=')) {
        match v.split_once('/') {
            Some((started, _)) => out.insert(format!("{k}.started"), started.parse().unwrap()),
            None => out.insert(k.to_owned(), v.parse().unwrap()),
        };
    }
    out
}

/// Recomputes an IPv4 header checksum in place (`h` is the header).
fn fix_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

struct Frames<'a> {
    pair: &'a Pair,
    to: [u8; 6],
    from: [u8; 6],
}

impl Frames<'_> {
    fn v4(&self, src: Ipv4Addr) -> Vec<u8> {
        frame::ipv4(src, self.pair.server4, TCP, frame::tcp(40000, PORT, SYN))
    }

    fn v6(&self, src: Ipv6Addr, ext: &[(u8, Vec<u8>)]) -> Vec<u8> {
        frame::ipv6(
            src,
            self.pair.server6,
            TCP,
            frame::tcp(40000, PORT, SYN),
            ext,
        )
    }

    fn eth4(&self, ip: &[u8]) -> Vec<u8> {
        frame::ether(self.to, self.from, &[], frame::ETH_IPV4, ip)
    }

    fn eth6(&self, ip: &[u8]) -> Vec<u8> {
        frame::ether(self.to, self.from, &[], frame::ETH_IPV6, ip)
    }
}

#[test]
fn frames_the_host_would_not_take_never_knock_and_are_counted_by_reason() {
    let pair = Pair::new();
    let dir = TempDir::new("adm1");
    write_config(&dir, &config(&dir));
    let d = start_daemon(&pair, &dir, &[]);
    let f = Frames {
        pair: &pair,
        to: pair.server_mac(),
        from: pair.client_mac(),
    };
    let good4 = f.v4(pair.client4);
    let mut refused: Vec<(&str, Vec<u8>)> = Vec::new();
    // Link layer: another host's MAC (what promiscuous capture sees), a
    // link broadcast, a link multicast.
    for (why, mac) in [
        ("other_host", [0x02, 0, 0, 0, 0, 0x99]),
        ("link_broadcast", [0xff; 6]),
        ("link_multicast", [0x01, 0, 0x5e, 0, 0, 5]),
    ] {
        refused.push((why, frame::ether(mac, f.from, &[], frame::ETH_IPV4, &good4)));
    }
    // A VLAN tag the server has no device for (the kernel moves it into
    // the ring's metadata).
    refused.push((
        "vlan",
        frame::ether(f.to, f.from, &[(0x8100, 5)], frame::ETH_IPV4, &good4),
    ));
    // A wrong IPv4 header checksum.
    let mut bad = good4.clone();
    bad[11] ^= 0x5a;
    refused.push(("bad_checksum", f.eth4(&bad)));
    // An IPv4 total length larger than the frame (checksum kept right).
    let mut long = good4.clone();
    long[2..4].copy_from_slice(&(good4.len() as u16 + 40).to_be_bytes());
    fix_checksum(&mut long[..20]);
    refused.push(("bad_length", f.eth4(&long)));
    // Lone first fragments: IPv4 MF at offset 0; IPv6 with a fragment
    // header (offset 0, M).
    let mut first = good4.clone();
    first[6] = 0x20;
    fix_checksum(&mut first[..20]);
    refused.push(("fragment", f.eth4(&first)));
    let frag_hdr = vec![0u8, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    refused.push(("fragment", f.eth6(&f.v6(pair.client6, &[(44, frag_hdr)]))));
    // Sources no door may open for.
    for (why, src) in [
        ("src_loopback", "127.0.0.1"),
        ("src_unspecified", "0.0.0.0"),
        ("src_multicast", "224.0.0.5"),
        ("src_broadcast", "255.255.255.255"),
        ("src_broadcast", "10.199.0.255"),
        ("src_own", "10.199.0.1"),
        ("src_unspecified", "::"),
        ("src_loopback", "::1"),
        ("src_multicast", "ff02::1"),
        ("src_mapped", "::ffff:10.199.0.2"),
        ("src_own", "fd00:199::1"),
    ] {
        let frame = match src.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => f.eth4(&f.v4(a)),
            IpAddr::V6(a) => f.eth6(&f.v6(a, &[])),
        };
        refused.push((why, frame));
    }
    for (_, frame) in &refused {
        pair.send_frames(vec![frame.clone()]);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut want: HashMap<&str, u64> = HashMap::new();
    for (why, _) in &refused {
        *want.entry(why).or_default() += 1;
    }
    let s = wait_for(Duration::from_secs(5), || {
        let s = stats(&d);
        (s.get("frames") >= Some(&(refused.len() as u64))).then_some(s)
    })
    .unwrap_or_else(|| panic!("frames never all arrived; log:\n{}", d.log_tail(30)));
    for (why, n) in &want {
        assert_eq!(s.get(*why), Some(n), "{why}: stats {s:?}");
    }
    assert_eq!(s["frames"], refused.len() as u64, "stats {s:?}");
    assert_eq!(s["drops"], 0, "stats {s:?}");
    assert_eq!(s["ONE.started"], 0, "an event started: stats {s:?}");
    assert!(
        read_lines(&dir.join("opened")).is_empty(),
        "a door opened; log:\n{}",
        d.log_tail(40)
    );
    // The same knock from proper unicast sources opens.
    pair.send_frames(vec![f.eth4(&good4)]);
    let got = wait_lines(&dir.join("opened"), 1, Duration::from_secs(3));
    assert_eq!(
        got,
        vec![pair.client4.to_string()],
        "log:\n{}",
        d.log_tail(30)
    );
    pair.send_frames(vec![f.eth6(&f.v6(pair.client6, &[]))]);
    let got = wait_lines(&dir.join("opened"), 2, Duration::from_secs(3));
    assert_eq!(got.get(1), Some(&pair.client6.to_string()));
}

const FLOOD: usize = 90_000;
/// Debug daemons keep up with this easily; the ring's drops are counted
/// anyway.
const FLOOD_RATE: u64 = 60_000;

/// `n` extension headers of the walked kinds, 8 or (unless `short`) 16
/// bytes each. (A knock must fit the daemon's 160-byte snap length: eight
/// 8-byte headers do.)
fn chain(n: usize, short: bool) -> Vec<(u8, Vec<u8>)> {
    let long = if short { 8 } else { 16 };
    let kinds: [(u8, usize); 4] = [(0, 8), (60, long), (43, 8), (51, long)];
    (0..n)
        .map(|i| {
            let (kind, len) = kinds[i % kinds.len()];
            let mut h = vec![0u8; len];
            h[1] = if kind == 51 {
                (len / 4 - 2) as u8
            } else {
                (len / 8 - 1) as u8
            };
            if kind == 0 || kind == 60 {
                // PadN over the rest of the header.
                h[2] = 1;
                h[3] = (len - 4) as u8;
            }
            (kind, h)
        })
        .collect()
}

#[test]
fn a_random_port_flood_with_up_to_8_ipv6_extension_headers_stays_in_the_kernel() {
    let pair = Pair::new();
    let dir = TempDir::new("adm2");
    write_config(&dir, &config(&dir));
    let d = start_daemon_opts(&pair.server, Some(&pair.server_if), &dir, &[], false);
    let (to, from) = (pair.server_mac(), pair.client_mac());
    // 0 to 8 extension headers, TCP or UDP, every port but the knock port.
    let mut x = 0x1234_5678u32;
    let frames: Vec<Vec<u8>> = (0..4096usize)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut port = x as u16;
            if port == PORT {
                port += 1;
            }
            let (proto, l4) = if i % 2 == 0 {
                (TCP, frame::tcp(40000, port, SYN))
            } else {
                (UDP, frame::udp(40000, port, b"noise"))
            };
            let ip = frame::ipv6(pair.client6, pair.server6, proto, l4, &chain(i % 9, false));
            frame::ether(to, from, &[], frame::ETH_IPV6, &ip)
        })
        .collect();
    let ifname = pair.client_if.clone();
    let sent = pair
        .client
        .run(move || send_raw_many(&ifname, &frames, FLOOD, Some(FLOOD_RATE)))
        .expect("send");
    assert_eq!(sent, FLOOD);
    // A knock behind 8 extension headers still gets through and opens.
    let ip = frame::ipv6(
        pair.client6,
        pair.server6,
        TCP,
        frame::tcp(40000, PORT, SYN),
        &chain(8, true),
    );
    pair.send_frames(vec![frame::ether(to, from, &[], frame::ETH_IPV6, &ip)]);
    let got = wait_lines(&dir.join("opened"), 1, Duration::from_secs(5));
    assert_eq!(
        got,
        vec![pair.client6.to_string()],
        "log:\n{}",
        d.log_tail(30)
    );
    let s = stats(&d);
    let up = s["frames"] + s["drops"];
    eprintln!("{FLOOD} random-port frames with 0-8 extension headers: {up} reached user space");
    // Only the knock itself (and nothing of the flood) may come up; the
    // issue allows 1 %.
    assert!(
        up <= FLOOD as u64 / 100,
        "{up} of {FLOOD} flood frames reached user space: stats {s:?}"
    );
}
