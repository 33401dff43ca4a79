//! End-to-end tests of the capture ring and its filter: real frames over a
//! veth pair (and `lo`) between network namespaces created by the test.

mod common;
use common::*;

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant, SystemTime};
use tportknockd::capture::filter::{self, Insn};
use tportknockd::capture::ring::{FrameMeta, Ring, RingConfig, RingStats};
use tportknockd::knock::Proto;

const KNOCKS: [(Proto, u16); 2] = [(Proto::Tcp, 7000), (Proto::Udp, 7001)];
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const PACKET_HOST: u8 = 0;

#[derive(Debug, Clone)]
struct Got {
    meta: FrameMeta,
    bytes: Vec<u8>,
    /// User-space clock when `drain` handed the frame over.
    at: SystemTime,
}

enum Cmd {
    /// Drain until `want` frames arrived (or `limit`), then keep draining
    /// for `settle` to catch frames that should not have come.
    Collect {
        want: usize,
        limit: Duration,
        settle: Duration,
    },
    /// Like Collect without keeping the frames: counts knock frames
    /// numbered by their TCP sequence number and checks their order.
    Count {
        want: usize,
        limit: Duration,
    },
    Stats,
    Wait(i32),
    Filter(Vec<Insn>),
}

enum Reply {
    Frames(Vec<Got>),
    /// (frames, frames out of order, reader thread CPU time)
    Counted(usize, usize, Duration),
    Stats(io::Result<RingStats>),
    Wait(io::Result<bool>),
    Done(io::Result<()>),
}

/// A Ring living on a thread inside a namespace, driven by commands.
struct Remote {
    tx: Sender<Cmd>,
    rx: Receiver<Reply>,
}

impl Remote {
    fn collect(&self, want: usize, settle: Duration) -> Vec<Got> {
        self.start_collect(want, settle);
        self.frames()
    }

    /// Starts collecting; `frames()` returns the result.
    fn start_collect(&self, want: usize, settle: Duration) {
        self.tx
            .send(Cmd::Collect {
                want,
                limit: Duration::from_secs(5),
                settle,
            })
            .unwrap();
    }

    fn frames(&self) -> Vec<Got> {
        match self.rx.recv().unwrap() {
            Reply::Frames(f) => f,
            _ => unreachable!(),
        }
    }

    fn stats(&self) -> RingStats {
        self.tx.send(Cmd::Stats).unwrap();
        match self.rx.recv().unwrap() {
            Reply::Stats(s) => s.expect("ring stats"),
            _ => unreachable!(),
        }
    }

    fn wait(&self, ms: i32) -> io::Result<bool> {
        self.tx.send(Cmd::Wait(ms)).unwrap();
        match self.rx.recv().unwrap() {
            Reply::Wait(w) => w,
            _ => unreachable!(),
        }
    }

    fn set_filter(&self, prog: Vec<Insn>) {
        self.tx.send(Cmd::Filter(prog)).unwrap();
        match self.rx.recv().unwrap() {
            Reply::Done(r) => r.expect("set_filter"),
            _ => unreachable!(),
        }
    }
}

fn serve(ring: &mut Ring, cmd: Cmd) -> Reply {
    match cmd {
        Cmd::Collect {
            want,
            limit,
            settle,
        } => {
            let mut got = Vec::new();
            let start = Instant::now();
            let mut enough_at = None;
            loop {
                let now = Instant::now();
                if got.len() >= want && enough_at.is_none() {
                    enough_at = Some(now);
                }
                match enough_at {
                    Some(t) if now - t >= settle => break,
                    None if now - start >= limit => break,
                    _ => {}
                }
                match ring.wait(20) {
                    Ok(true) => {
                        ring.drain(usize::MAX, |meta, bytes| {
                            got.push(Got {
                                meta: *meta,
                                bytes: bytes.to_vec(),
                                at: SystemTime::now(),
                            })
                        });
                    }
                    Ok(false) => {}
                    Err(e) => panic!("wait failed while collecting: {e}"),
                }
            }
            Reply::Frames(got)
        }
        Cmd::Count { want, limit } => {
            let (mut n, mut disorder, mut last) = (0usize, 0usize, None::<u32>);
            let cpu0 = thread_cpu();
            let start = Instant::now();
            while n < want && start.elapsed() < limit {
                if let Ok(true) = ring.wait(20) {
                    ring.drain(256, |_, bytes| {
                        n += 1;
                        let seq = seq_of(bytes);
                        if last.is_some_and(|l| seq <= l) {
                            disorder += 1;
                        }
                        last = Some(seq);
                    });
                }
            }
            Reply::Counted(n, disorder, thread_cpu().saturating_sub(cpu0))
        }
        Cmd::Stats => Reply::Stats(ring.stats()),
        Cmd::Wait(ms) => Reply::Wait(ring.wait(ms)),
        Cmd::Filter(prog) => Reply::Done(ring.set_filter(&prog)),
    }
}

/// Opens a Ring in `ns` on `ifindex` with a filter for `ports`, then runs
/// `body` with a handle to it. The ring thread ends when `body` returns or
/// panics (the command channel closes).
fn with_ring<R>(
    ns: &Netns,
    ifindex: u32,
    ports: &[(Proto, u16)],
    cfg: RingConfig,
    body: impl FnOnce(&Remote) -> R,
) -> R {
    let prog = filter::build(ports, cfg.snaplen);
    assert!(!prog.pass_all_ports);
    std::thread::scope(|s| {
        let (cmd_tx, cmd_rx) = channel::<Cmd>();
        let (reply_tx, reply_rx) = channel::<Reply>();
        let (open_tx, open_rx) = channel::<Result<usize, String>>();
        let ring_thread = s.spawn(move || {
            ns.run(move || {
                let mut ring = match Ring::open(ifindex, &prog, cfg) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = open_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = open_tx.send(Ok(ring.capacity()));
                while let Ok(cmd) = cmd_rx.recv() {
                    if reply_tx.send(serve(&mut ring, cmd)).is_err() {
                        break;
                    }
                }
            })
        });
        let opened = open_rx.recv().expect("ring thread died");
        opened.expect("Ring::open");
        let remote = Remote {
            tx: cmd_tx,
            rx: reply_rx,
        };
        let out = body(&remote);
        drop(remote);
        ring_thread.join().expect("ring thread");
        out
    })
}

fn ifindex(ns: &Netns, ifname: &str) -> u32 {
    ns.must(&format!("cat /sys/class/net/{ifname}/ifindex"))
        .trim()
        .parse()
        .unwrap()
}

/// Addresses of both ends, read once: each MAC lookup runs a process.
struct Ends {
    server_mac: [u8; 6],
    client_mac: [u8; 6],
    server4: Ipv4Addr,
    client4: Ipv4Addr,
}

impl Ends {
    fn of(pair: &Pair) -> Ends {
        Ends {
            server_mac: pair.server_mac(),
            client_mac: pair.client_mac(),
            server4: pair.server4,
            client4: pair.client4,
        }
    }
}

fn eth(pair: &Ends, vlans: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    frame::ether(pair.server_mac, pair.client_mac, vlans, ethertype, payload)
}

fn tcp4(pair: &Ends, dport: u16, flags: u8) -> Vec<u8> {
    let ip = frame::ipv4(
        pair.client4,
        pair.server4,
        6,
        frame::tcp(40000, dport, flags),
    );
    eth(pair, &[], frame::ETH_IPV4, &ip)
}

fn udp4(pair: &Ends, dport: u16, payload: &[u8]) -> Vec<u8> {
    let ip = frame::ipv4(
        pair.client4,
        pair.server4,
        17,
        frame::udp(40000, dport, payload),
    );
    eth(pair, &[], frame::ETH_IPV4, &ip)
}

fn no_settle() -> Duration {
    Duration::from_millis(0)
}

fn settle() -> Duration {
    Duration::from_millis(300)
}

#[test]
fn knock_frames_arrive_in_order_and_nothing_else() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    with_ring(&pair.server, idx, &KNOCKS, RingConfig::default(), |ring| {
        let mut frag = tcp4(&ends, 7000, 0x02);
        frag[14 + 6..14 + 8].copy_from_slice(&185u16.to_be_bytes()); // offset 1480
        let mut arp = vec![0u8; 28];
        arp[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        let hbh = vec![0u8, 0, 1, 4, 0, 0, 0, 0]; // next, len 0, PadN(4)
        let ext6 = |dport, exts: &[(u8, Vec<u8>)]| {
            let ip = frame::ipv6(
                pair.client6,
                pair.server6,
                17,
                frame::udp(40002, dport, b"ext"),
                exts,
            );
            eth(&ends, &[], frame::ETH_IPV6, &ip)
        };
        let tcp6 = frame::ipv6(
            pair.client6,
            pair.server6,
            6,
            frame::tcp(40001, 7000, 0x01),
            &[],
        );
        let udp6_other = frame::ipv6(
            pair.client6,
            pair.server6,
            17,
            frame::udp(40003, 9, b"no"),
            &[],
        );
        let frames = vec![
            tcp4(&ends, 7000, 0x02),                            // 0 knock
            tcp4(&ends, 7002, 0x02),                            // other port
            udp4(&ends, 7000, b"wrong proto"),                  // udp to a tcp knock port
            udp4(&ends, 7001, b"two"),                          // 3 knock
            eth(&ends, &[], 0x0806, &arp),                      // ARP
            frag,                                               // non-first fragment
            eth(&ends, &[], frame::ETH_IPV6, &tcp6),            // 6 knock over IPv6
            ext6(7001, &[(0, hbh.clone())]),                    // 7 knock behind hop-by-hop
            ext6(9999, &[(0, hbh.clone())]),                    // other port behind hop-by-hop
            ext6(7001, &[(0, hbh.clone()), (60, hbh.clone())]), // 9 knock behind two
            ext6(9999, &[(0, hbh.clone()), (60, hbh)]),         // other port behind two
            eth(&ends, &[], frame::ETH_IPV6, &udp6_other),      // other port
            tcp4(&ends, 7000, 0x29),                            // 12 knock, last
        ];
        // The filter walks extension headers as deep as the decoder
        // (issue 15): a second one no longer sends other ports up.
        let expected: Vec<Vec<u8>> = [0, 3, 6, 7, 9, 12]
            .iter()
            .map(|&i| frames[i].clone())
            .collect();
        pair.send_frames(frames);
        let got = ring.collect(expected.len(), settle());
        let bytes: Vec<&Vec<u8>> = got.iter().map(|g| &g.bytes).collect();
        assert_eq!(
            bytes,
            expected.iter().collect::<Vec<_>>(),
            "frames or order"
        );
        for (g, want) in got.iter().zip(&expected) {
            let m = &g.meta;
            assert_eq!(m.ifindex as u32, idx);
            assert_eq!(m.hatype, ARPHRD_ETHER);
            assert_eq!(m.pkttype, PACKET_HOST);
            assert_eq!(m.protocol, u16::from_be_bytes([want[12], want[13]]));
            assert_eq!(m.vlan_tci, None);
            assert_eq!(m.wire_len as usize, want.len());
            assert_eq!(m.snap_len as usize, want.len());
            assert!(!m.losing);
        }
    });
}

#[test]
fn only_snaplen_bytes_are_copied() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    let cfg = RingConfig {
        snaplen: 96,
        ..RingConfig::default()
    };
    with_ring(&pair.server, idx, &KNOCKS, cfg, |ring| {
        let big = udp4(&ends, 7001, &[0xab; 1000]);
        pair.send_frames(vec![big.clone()]);
        let got = ring.collect(1, settle());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].meta.wire_len as usize, big.len());
        assert_eq!(got[0].meta.snap_len, 96);
        assert_eq!(got[0].bytes, big[..96]);
    });
}

/// The outer tag goes to the ring's metadata; a frame with a tag left in
/// its bytes (QinQ and deeper) never knocks (issue 15) and stays in the
/// kernel.
#[test]
fn vlan_tag_goes_to_meta_and_stacked_tags_stay_in_the_kernel() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    with_ring(&pair.server, idx, &KNOCKS, RingConfig::default(), |ring| {
        let ip = frame::ipv4(pair.client4, pair.server4, 6, frame::tcp(40000, 7000, 0x02));
        let other = frame::ipv4(pair.client4, pair.server4, 6, frame::tcp(40000, 22, 0x02));
        let tci = (3 << 13) | 42;
        let tagged = eth(&ends, &[(0x8100, tci)], frame::ETH_IPV4, &ip);
        let qinq = eth(&ends, &[(0x88a8, 100), (0x8100, 42)], frame::ETH_IPV4, &ip);
        let qinq_other = eth(
            &ends,
            &[(0x88a8, 100), (0x8100, 42)],
            frame::ETH_IPV4,
            &other,
        );
        let triple = eth(
            &ends,
            &[(0x88a8, 100), (0x8100, 42), (0x8100, 7)],
            frame::ETH_IPV4,
            &ip,
        );
        pair.send_frames(vec![tagged, qinq_other, triple, qinq]);
        let got = ring.collect(2, settle());
        assert_eq!(got.len(), 1, "{got:?}");
        // 802.1Q: the kernel strips the tag into metadata; the bytes are the
        // untagged frame and the protocol is the inner ethertype.
        assert_eq!(got[0].meta.vlan_tci, Some(tci));
        assert_eq!(got[0].meta.protocol, 0x0800);
        assert_eq!(got[0].bytes, eth(&ends, &[], frame::ETH_IPV4, &ip));
        assert_eq!(got[0].meta.vlan_tpid, 0x8100);
    });
}

#[test]
fn frames_the_host_sends_are_not_seen() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    let client4 = pair.client4;
    with_ring(&pair.server, idx, &KNOCKS, RingConfig::default(), |ring| {
        // The server sends to udp/7001 on the client: out of the very
        // interface the ring watches. The client has no listener, so the
        // ICMP port unreachable that comes back proves the datagram left.
        let refused = pair.server.run(move || {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            sock.connect((client4, 7001)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            sock.send(b"outgoing").unwrap();
            sock.recv(&mut [0u8; 16]).map_err(|e| e.kind())
        });
        assert_eq!(refused, Err(io::ErrorKind::ConnectionRefused));
        let sentinel = udp4(&ends, 7001, b"incoming");
        pair.send_frames(vec![sentinel.clone()]);
        let got = ring.collect(1, settle());
        let bytes: Vec<&Vec<u8>> = got.iter().map(|g| &g.bytes).collect();
        assert_eq!(bytes, vec![&sentinel]);
    });
}

#[test]
fn loopback_and_any_interface() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let veth = ifindex(&pair.server, &pair.server_if);
    // On `lo` every datagram passes twice, once outgoing and once incoming:
    // exactly one copy must arrive.
    with_ring(&pair.server, 1, &KNOCKS, RingConfig::default(), |ring| {
        pair.server.run(|| {
            let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            sock.send_to(b"lo knock", (Ipv4Addr::LOCALHOST, 7001))
                .unwrap();
        });
        let got = ring.collect(1, settle());
        assert_eq!(got.len(), 1, "{got:?}");
        let m = &got[0].meta;
        assert_eq!(m.hatype, ARPHRD_LOOPBACK);
        assert_eq!(m.ifindex, 1);
        assert_eq!(m.pkttype, PACKET_HOST);
        assert_eq!(m.protocol, 0x0800);
        let b = &got[0].bytes;
        assert_eq!(&b[..14], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0]);
        assert_eq!(&b[14 + 20 + 2..14 + 20 + 4], &7001u16.to_be_bytes());
        assert!(b.ends_with(b"lo knock"));
    });
    // ifindex 0: every interface of the namespace.
    with_ring(&pair.server, 0, &KNOCKS, RingConfig::default(), |ring| {
        pair.server.run(|| {
            let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            sock.send_to(b"lo", (Ipv4Addr::LOCALHOST, 7001)).unwrap();
        });
        let knock = tcp4(&ends, 7000, 0x02);
        pair.send_frames(vec![knock.clone()]);
        let got = ring.collect(2, settle());
        assert_eq!(got.len(), 2, "{got:?}");
        let lo = got.iter().find(|g| g.meta.ifindex == 1).expect("lo frame");
        assert_eq!(lo.meta.hatype, ARPHRD_LOOPBACK);
        let v = got
            .iter()
            .find(|g| g.meta.ifindex as u32 == veth)
            .expect("veth frame");
        assert_eq!(v.meta.hatype, ARPHRD_ETHER);
        assert_eq!(v.bytes, knock);
    });
}

/// A knock frame to tcp/7000 numbered by its TCP sequence number.
fn numbered(pair: &Ends, n: u32) -> Vec<u8> {
    let mut l4 = frame::tcp(40000, 7000, 0x02);
    l4[4..8].copy_from_slice(&n.to_be_bytes());
    eth(
        pair,
        &[],
        frame::ETH_IPV4,
        &frame::ipv4(pair.client4, pair.server4, 6, l4),
    )
}

fn seq_of(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[38..42].try_into().unwrap())
}

#[test]
fn a_full_ring_counts_drops_and_flags_losing() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    let cfg = RingConfig {
        frame_size: 256,
        frame_count: 16,
        snaplen: 128,
    };
    with_ring(&pair.server, idx, &KNOCKS, cfg, |ring| {
        // 16 slots of 256 bytes fill exactly one 4 KiB block.
        pair.send_frames((0..2000).map(|n| numbered(&ends, n)).collect());
        std::thread::sleep(Duration::from_millis(200));
        let got = ring.collect(16, settle());
        let seqs: Vec<u32> = got.iter().map(|g| seq_of(&g.bytes)).collect();
        assert_eq!(
            seqs,
            (0..16).collect::<Vec<u32>>(),
            "the first frames, in order, and nothing after the ring filled"
        );
        assert!(
            got.iter().all(|g| !g.meta.losing),
            "written before any drop"
        );

        // Drops not yet read from the kernel → the next frame is flagged.
        pair.send_frames(vec![numbered(&ends, 5000)]);
        let got = ring.collect(1, settle());
        assert_eq!(got.len(), 1);
        assert!(got[0].meta.losing);

        let first = ring.stats();
        assert!(first.drops > 0, "{first:?}");
        // Exactly 17 frames found a free slot.
        assert_eq!(first.packets - first.drops, 17, "{first:?}");
        // The kernel resets its counters on read; the totals must not.
        assert_eq!(ring.stats(), first);

        // Counters just read: no longer losing.
        pair.send_frames(vec![numbered(&ends, 5001)]);
        let got = ring.collect(1, settle());
        assert_eq!(got.len(), 1);
        assert!(!got[0].meta.losing);

        // Without draining, 40 more frames: 16 stored, 24 dropped.
        pair.send_frames((0..40).map(|n| numbered(&ends, 10_000 + n)).collect());
        std::thread::sleep(Duration::from_millis(200));
        let second = ring.stats();
        assert_eq!(second.packets, first.packets + 41, "{second:?}");
        assert_eq!(second.drops, first.drops + 24, "{second:?}");
        let got = ring.collect(16, settle());
        let seqs: Vec<u32> = got.iter().map(|g| seq_of(&g.bytes)).collect();
        assert_eq!(seqs, (10_000..10_016).collect::<Vec<u32>>());
    });
}

#[test]
fn set_filter_replaces_the_program() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    with_ring(&pair.server, idx, &KNOCKS, RingConfig::default(), |ring| {
        ring.set_filter(filter::build(&[(Proto::Udp, 9000)], 160).insns);
        let nine = udp4(&ends, 9000, b"new");
        pair.send_frames(vec![tcp4(&ends, 7000, 0x02), nine.clone()]);
        let got = ring.collect(1, settle());
        let bytes: Vec<&Vec<u8>> = got.iter().map(|g| &g.bytes).collect();
        assert_eq!(bytes, vec![&nine]);
    });
}

#[test]
fn interface_going_down_or_away_is_an_error_from_wait() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    with_ring(&pair.server, idx, &KNOCKS, RingConfig::default(), |ring| {
        assert!(!ring.wait(50).expect("quiet wait"));

        pair.server
            .must(&format!("ip link set {} down", pair.server_if));
        let err = ring.wait(2000).expect_err("link down must be reported");
        assert_eq!(err.raw_os_error(), Some(libc::ENETDOWN), "{err}");
        // Reported once; when the link is back the same ring works again.
        pair.server
            .must(&format!("ip link set {} up", pair.server_if));
        let knock = tcp4(&ends, 7000, 0x02);
        let sent = knock.clone();
        let got = wait_for(Duration::from_secs(5), || {
            pair.send_frames(vec![sent.clone()]);
            let got = ring.collect(1, no_settle());
            (!got.is_empty()).then_some(got)
        })
        .expect("frames after link up");
        assert_eq!(got[0].bytes, knock);

        pair.server.must(&format!("ip link del {}", pair.server_if));
        // Deleting reports ENETDOWN first (the kernel takes the link down
        // before unregistering it); the next waits find it gone.
        let mut codes = Vec::new();
        for _ in 0..5 {
            match ring.wait(200) {
                Err(e) => {
                    codes.push(e.raw_os_error());
                    if e.raw_os_error() == Some(libc::ENODEV) {
                        break;
                    }
                }
                Ok(ready) => panic!("wait on a deleted interface returned Ok({ready})"),
            }
        }
        assert_eq!(codes.last(), Some(&Some(libc::ENODEV)), "{codes:?}");
        assert!(
            codes[..codes.len() - 1]
                .iter()
                .all(|c| *c == Some(libc::ENETDOWN)),
            "{codes:?}"
        );
        eprintln!("wait() after deleting the interface: {codes:?}");
        // and it stays an error: the device will not come back
        let err = ring.wait(10).expect_err("still gone");
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
    });
}

#[test]
fn bad_geometry_is_refused() {
    let prog = filter::build(&KNOCKS, 160);
    for cfg in [
        RingConfig {
            frame_size: 200,
            ..RingConfig::default()
        },
        RingConfig {
            frame_size: 224,
            snaplen: 160,
            frame_count: 16,
        },
        RingConfig {
            frame_count: 0,
            ..RingConfig::default()
        },
    ] {
        let err = Ring::open(0, &prog, cfg).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cfg:?}");
    }
}

/// Opens an AF_PACKET socket on `ifname` in the calling thread's namespace.
fn packet_sender(ifname: &str) -> (i32, libc::sockaddr_ll) {
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex != 0, "no interface {ifname}");
    // SAFETY: plain socket creation; protocol 0 receives nothing.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: an all-zero sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    (fd, addr)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

/// Not a test: prints latency and throughput figures. Run with
/// `cargo test --test capture -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_latency_and_rate() {
    let pair = Pair::new();
    let ends = Ends::of(&pair);
    let idx = ifindex(&pair.server, &pair.server_if);
    let client_if = pair.client_if.clone();
    with_ring(&pair.server, idx, &KNOCKS, RingConfig::default(), |ring| {
        // Latency: 200 lone frames 2 ms apart, each carrying its send time.
        const N: usize = 200;
        let template = udp4(&ends, 7001, &[0u8; 8]);
        ring.start_collect(N, no_settle());
        let ifname = client_if.clone();
        let frame = template.clone();
        pair.client.run(move || {
            let (fd, addr) = packet_sender(&ifname);
            let mut f = frame;
            let at = f.len() - 8;
            for _ in 0..N {
                let t = now_ns();
                f[at..].copy_from_slice(&t.to_be_bytes());
                // SAFETY: buffer and address valid for their lengths. The
                // UDP checksum is now wrong, which AF_PACKET does not check.
                let n = unsafe {
                    libc::sendto(
                        fd,
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                assert_eq!(n as usize, f.len());
                std::thread::sleep(Duration::from_millis(2));
            }
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
        });
        let got = ring.frames();
        assert_eq!(got.len(), N);
        let mut send_to_drain: Vec<Duration> = Vec::new();
        let mut kernel_to_drain: Vec<Duration> = Vec::new();
        for g in &got {
            let sent = u64::from_be_bytes(g.bytes[g.bytes.len() - 8..].try_into().unwrap());
            let at = g.at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            send_to_drain.push(at.saturating_sub(Duration::from_nanos(sent)));
            kernel_to_drain.push(at.saturating_sub(g.meta.timestamp));
        }
        send_to_drain.sort();
        kernel_to_drain.sort();
        eprintln!(
            "latency send->drain over {N} lone frames: median {:?}, p90 {:?}, p99 {:?}, max {:?}",
            percentile(&send_to_drain, 50),
            percentile(&send_to_drain, 90),
            percentile(&send_to_drain, 99),
            send_to_drain[N - 1]
        );
        eprintln!(
            "latency kernel rx timestamp->drain: median {:?}, p90 {:?}, p99 {:?}",
            percentile(&kernel_to_drain, 50),
            percentile(&kernel_to_drain, 90),
            percentile(&kernel_to_drain, 99)
        );

        // Rate: 300,000 knock frames at 300,000 frames/s, paced in batches
        // of 64 with sendmmsg, to tcp/7000, with the ring being drained.
        const RATE: u64 = 300_000;
        const TOTAL: usize = 300_000;
        let before = ring.stats();
        ring.tx
            .send(Cmd::Count {
                want: TOTAL,
                limit: Duration::from_secs(10),
            })
            .unwrap();
        let frames: Vec<Vec<u8>> = (0..TOTAL as u32).map(|n| numbered(&ends, n)).collect();
        let ifname = client_if.clone();
        let (elapsed, sent) = pair.client.run(move || {
            let (fd, addr) = packet_sender(&ifname);
            let mut iov: Vec<libc::iovec> = frames
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    // SAFETY: all-zero msghdr is valid; fields set below.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_name = (&addr as *const libc::sockaddr_ll) as *mut libc::c_void;
                    h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    h.msg_hdr.msg_iov = v;
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            let start = Instant::now();
            let mut sent = 0usize;
            while sent < TOTAL {
                let due = Duration::from_nanos(sent as u64 * 1_000_000_000 / RATE);
                while start.elapsed() < due {
                    std::hint::spin_loop();
                }
                let batch = (TOTAL - sent).min(64);
                // SAFETY: `batch` valid mmsghdrs pointing at live frames,
                // iovecs and `addr`.
                let n = unsafe { libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), batch as u32, 0) };
                if n > 0 {
                    sent += n as usize;
                }
            }
            let elapsed = start.elapsed();
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
            drop(frames);
            (elapsed, sent)
        });
        let (count, disorder, cpu) = match ring.rx.recv().unwrap() {
            Reply::Counted(n, d, c) => (n, d, c),
            _ => unreachable!(),
        };
        let after = ring.stats();
        eprintln!(
            "rate: sent {sent} frames in {elapsed:?} ({:.0} frames/s); drained {count}, \
             out of order {disorder}; ring stats: {} packets, {} drops; \
             reader CPU {cpu:?} ({:?} per frame, poll and wakeups included)",
            sent as f64 / elapsed.as_secs_f64(),
            after.packets - before.packets,
            after.drops - before.drops,
            cpu / count.max(1) as u32
        );

        // The same with trafgen (netsniff-ng, mmap TX ring), if installed;
        // all frames are identical, so the order check does not apply.
        let dir = TempDir::new("trafgen");
        let conf = dir.join("knock.cfg");
        let bytes: Vec<String> = numbered(&ends, 7)
            .iter()
            .map(|b| format!("{b:#04x}"))
            .collect();
        std::fs::write(&conf, format!("{{ {} }}\n", bytes.join(", "))).unwrap();
        let before = ring.stats();
        ring.tx
            .send(Cmd::Count {
                want: TOTAL,
                limit: Duration::from_secs(10),
            })
            .unwrap();
        let start = Instant::now();
        let out = pair
            .client
            .command("trafgen")
            .args(["-i", conf.to_str().unwrap(), "-o", &client_if])
            .args(["-n", "300000", "-b", "300000pps", "-P", "1", "-Q"])
            .output();
        let elapsed = start.elapsed();
        let count = match ring.rx.recv().unwrap() {
            Reply::Counted(n, _, _) => n,
            _ => unreachable!(),
        };
        let after = ring.stats();
        match out {
            Ok(o) => eprintln!(
                "trafgen -n 300000 -b 300000pps -P 1 -Q: exit {:?}, wall {elapsed:?}; \
                 drained {count}; ring stats: {} packets, {} drops\n{}",
                o.status.code(),
                after.packets - before.packets,
                after.drops - before.drops,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("trafgen not run: {e}"),
        }
    });
}
