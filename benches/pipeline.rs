//! The daemon's knock pipeline on one core (`cargo bench --bench
//! pipeline`): what it does per captured frame, minus the ring and the
//! kernel.
//!
//! Real Ethernet frames (IPv4 and IPv6, TCP and UDP, checksums filled in)
//! are built up front into one buffer, one per 128-byte stride, the way they
//! sit in ring slots; each run pushes every frame through
//! [`Pipeline::push`] (decode, own-address check, prefetch, match in
//! batches) and ends a batch with [`Pipeline::finish`] every `BURST`
//! frames, the way the daemon ends each pass over the ring, with its timers
//! ([`Pipeline::tick`]) once per simulated millisecond. For comparison,
//! "one by one" ends the batch after every frame, so nothing is prefetched
//! ahead. The median of several runs is printed in frames per second.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use tportknockd::capture::ring::FrameMeta;
use tportknockd::client::segment;
use tportknockd::config::{Config, Event};
use tportknockd::doors::DoorLimits;
use tportknockd::knock::flags::{ACK, SYN};
use tportknockd::knock::matcher::DEFAULT_CAPACITY;
use tportknockd::pipeline::Pipeline;
use tportknockd::wire::hatype;

/// Runs and frames per run: `cargo bench` passes `--bench`; `cargo test
/// --all-targets` (and so `make test`) runs a debug build without it, where
/// only a smoke run that proves the bench still works is affordable.
fn scale() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (7, 1_000_000)
    } else {
        (1, 20_000)
    }
}
const STRIDE: usize = 128;
const PER_MS: usize = 20_000;
const SERVER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

/// One frame to the server: TCP with `flags`, or UDP when `flags` is None.
fn frame(src: IpAddr, port: u16, flags: Option<u8>) -> Vec<u8> {
    let dst = match src {
        IpAddr::V4(_) => IpAddr::V4(SERVER4),
        IpAddr::V6(_) => IpAddr::V6(SERVER6),
    };
    let (proto, l4) = match flags {
        Some(f) => (6u8, segment::tcp_segment(src, dst, 40000, port, 1, f)),
        None => {
            let mut u = vec![0x9c, 0x40];
            u.extend_from_slice(&port.to_be_bytes());
            u.extend_from_slice(&[0, 12, 0, 0, b'k', b'n', b'c', b'k']);
            let sum = segment::checksum(src, dst, 17, &u);
            u[6..8].copy_from_slice(&sum.to_be_bytes());
            (17u8, u)
        }
    };
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&(20 + l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            let sum = ip_checksum(&f[14..34]);
            f[24..26].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!("one family"),
    }
    f.extend_from_slice(&l4);
    f
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn spoofed(r: &mut Rng, v6_share: u64) -> IpAddr {
    if r.next() % 100 < v6_share {
        IpAddr::V6(Ipv6Addr::from(
            (u128::from(r.next()) << 64) | u128::from(r.next()),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(r.next() as u32))
    }
}

/// Frames laid out in one buffer at a fixed stride; (offset, length) each.
struct Frames {
    buf: Vec<u8>,
    lens: Vec<u16>,
}

impl Frames {
    fn build(make: impl FnMut() -> Vec<u8>) -> Frames {
        Frames::build_n(scale().1, make)
    }

    fn build_n(n_frames: usize, mut make: impl FnMut() -> Vec<u8>) -> Frames {
        let mut buf = vec![0u8; n_frames * STRIDE];
        let mut lens = Vec::with_capacity(n_frames);
        for i in 0..n_frames {
            let f = make();
            buf[i * STRIDE..i * STRIDE + f.len()].copy_from_slice(&f);
            lens.push(f.len() as u16);
        }
        Frames { buf, lens }
    }

    fn get(&self, i: usize) -> &[u8] {
        let at = i * STRIDE;
        &self.buf[at..at + usize::from(self.lens[i])]
    }
}

fn config() -> Config {
    Config {
        events: vec![Event {
            name: "bench".into(),
            line: 1,
            sequence: "tcp:7000:s udp:7001 tcp:7002:s"
                .split_whitespace()
                .map(|s| s.parse().unwrap())
                .collect(),
            timeout: 10,
            start_command: String::new(),
            stop_command: None,
            command_delay: None,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The server's own addresses, as the daemon's address table answers.
fn own(_ifindex: u32, dst: IpAddr) -> bool {
    dst == IpAddr::V4(SERVER4) || dst == IpAddr::V6(SERVER6)
}

/// What the ring reports with a frame of `len` bytes (it was not cut).
fn meta(len: usize) -> FrameMeta {
    FrameMeta {
        wire_len: len as u32,
        snap_len: len as u32,
        ..META
    }
}

const META: FrameMeta = FrameMeta {
    ifindex: 2,
    hatype: hatype::ETHER,
    pkttype: 0,
    protocol: 0x0800,
    vlan_tci: None,
    vlan_tpid: 0,
    wire_len: 0,
    snap_len: 0,
    losing: false,
    timestamp: std::time::Duration::ZERO,
};

/// A pipeline whose table is already full of spoofed step-1 sources.
fn full_table(prefill: &Frames) -> Pipeline {
    let mut p = Pipeline::new(config(), DEFAULT_CAPACITY, None, DoorLimits::default(), 0).unwrap();
    for i in 0..prefill.lens.len() {
        let f = prefill.get(i);
        p.push(&meta(f.len()), f, &own, 0);
    }
    let end = p.finish(0, 0);
    assert!(end.requests.is_empty());
    p
}

/// Frames per daemon pass over the ring under a flood (about 1 ms at
/// 300,000/s).
const BURST: usize = 300;

/// Between two passes other processes run and push the table out of the
/// caches: `cold` models that by streaming through a buffer larger than
/// the last-level cache between bursts (not timed).
fn run(name: &str, frames: &Frames, prefill: &Frames, batched: bool, cold: bool) {
    let (runs, n_frames) = scale();
    let mut scratch = if cold {
        vec![1u8; 64 << 20]
    } else {
        Vec::new()
    };
    let mut rates = Vec::new();
    let mut knocks = 0u64;
    for _ in 0..runs {
        let mut p = full_table(prefill);
        let before = p.counters().clone();
        let mut busy = std::time::Duration::ZERO;
        let mut start = Instant::now();
        for (ms, chunk) in frames.lens.chunks(PER_MS).enumerate() {
            let now = 1 + ms as u64;
            let base = ms * PER_MS;
            for from in (0..chunk.len()).step_by(BURST) {
                if cold {
                    busy += start.elapsed();
                    for b in scratch.iter_mut().step_by(64) {
                        *b = b.wrapping_add(1);
                    }
                    black_box(&scratch);
                    start = Instant::now();
                }
                for j in base + from..base + (from + BURST).min(chunk.len()) {
                    let f = frames.get(j);
                    p.push(&meta(f.len()), f, &own, now);
                    if !batched {
                        let _ = black_box(p.finish(now, now));
                    }
                }
                let _ = black_box(p.finish(now, now));
            }
            black_box(p.tick(now));
        }
        busy += start.elapsed();
        rates.push(n_frames as f64 / busy.as_secs_f64());
        let c = p.counters();
        assert_eq!(c.fired, 0, "no sequence completes");
        assert_eq!(c.malformed + c.not_local + c.unsupported_link, 0);
        knocks += c.frames - before.frames;
        black_box(&p);
    }
    assert_eq!(
        knocks,
        (runs * n_frames) as u64,
        "every frame reaches the matcher"
    );
    rates.sort_by(|a, b| a.total_cmp(b));
    let how = if batched { "batched" } else { "one by one" };
    let caches = if cold { "cold" } else { "warm" };
    println!(
        "{name:<44} {how:<10} {caches} {:>5.1} M frames/s  (min {:.1}, max {:.1})",
        rates[runs / 2] / 1e6,
        rates[0] / 1e6,
        rates[runs - 1] / 1e6
    );
}

fn main() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let (runs, n_frames) = scale();
    println!(
        "{n_frames} frames per run, table full ({DEFAULT_CAPACITY} sources), median of {runs} runs"
    );
    let prefill = Frames::build_n(DEFAULT_CAPACITY, || {
        frame(spoofed(&mut r, 25), 7000, Some(SYN))
    });
    let flood4 = Frames::build(|| frame(spoofed(&mut r, 0), 7000, Some(SYN)));
    let v4 = "IPv4 SYN first knocks from new sources";
    run(v4, &flood4, &prefill, true, false);
    run(v4, &flood4, &prefill, false, false);
    run(v4, &flood4, &prefill, true, true);
    run(v4, &flood4, &prefill, false, true);
    drop(flood4);
    let flood6 = Frames::build(|| frame(spoofed(&mut r, 100), 7000, Some(SYN)));
    run(
        "IPv6 SYN first knocks from new sources",
        &flood6,
        &prefill,
        true,
        false,
    );
    drop(flood6);
    // Knock-port frames from a small set of sources: advances, resets,
    // re-starts. The last step comes with SYN+ACK, which the event does not
    // take, so no sequence completes (a door would log a line).
    let pool: Vec<IpAddr> = (0..4096).map(|_| spoofed(&mut r, 25)).collect();
    let mixed = Frames::build(|| {
        let src = pool[r.below(pool.len() as u64) as usize];
        match r.below(3) {
            0 => frame(src, 7000, Some(SYN)),
            1 => frame(src, 7001, None),
            _ => frame(src, 7002, Some(SYN | ACK)),
        }
    });
    run(
        "knock-port mix from 4,096 returning sources",
        &mixed,
        &prefill,
        true,
        false,
    );
}
