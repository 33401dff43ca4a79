//! Matcher throughput on synthetic traffic (`cargo bench --bench matcher`).
//!
//! Frames are generated up front so only `feed` (and the periodic `expire`
//! the daemon runs) is timed. Each mix is run several times; the median
//! frames per second is printed.

use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use tportknockd::config::Event;
use tportknockd::knock::matcher::{Matcher, Output, DEFAULT_CAPACITY};
use tportknockd::knock::{flags, Knock, Proto};

const RUNS: usize = 7;
const FRAMES: usize = 2_000_000;
/// Frames per simulated millisecond (expire runs once per millisecond).
const PER_MS: usize = 20_000;

type Frame = Knock;

const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn frame(src: IpAddr, proto: Proto, port: u16, flags: u8) -> Frame {
    Knock {
        src,
        dst: DST,
        proto,
        dst_port: port,
        flags,
    }
}

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

fn event(name: &str, seq: &str, timeout: u32) -> Event {
    Event {
        name: name.into(),
        line: 1,
        sequence: seq.split_whitespace().map(|s| s.parse().unwrap()).collect(),
        timeout,
        start_command: String::new(),
        stop_command: None,
        command_delay: None,
        ..Default::default()
    }
}

fn events() -> Vec<Event> {
    vec![
        event("ssh", "tcp:7000:s udp:8000 tcp:9000:fa tcp:7000:s", 30),
        event(
            "ssh2",
            "tcp:110:x tcp:110:up tcp:110:up tcp:110:n tcp:110:i",
            15,
        ),
        event("web", "udp:5000 udp:5001 udp:5002", 10),
    ]
}

/// Knock ports and flags an attacker or a scanner would plausibly hit.
const KNOCK_PORTS: [(Proto, u16); 7] = [
    (Proto::Tcp, 7000),
    (Proto::Udp, 8000),
    (Proto::Tcp, 9000),
    (Proto::Tcp, 110),
    (Proto::Udp, 5000),
    (Proto::Udp, 5001),
    (Proto::Udp, 5002),
];

fn spoofed(r: &mut Rng) -> IpAddr {
    if r.below(4) == 0 {
        IpAddr::V6(Ipv6Addr::from(
            (u128::from(r.next()) << 64) | u128::from(r.next()),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(r.next() as u32))
    }
}

fn random_port_noise(r: &mut Rng) -> Frame {
    // Anything but a knock port: ordinary traffic on the interface.
    loop {
        let proto = if r.below(3) == 0 {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let port = r.next() as u16;
        if !KNOCK_PORTS.contains(&(proto, port)) {
            return frame(spoofed(r), proto, port, r.next() as u8);
        }
    }
}

/// A frame to a random knock port with scanner-like flags, from `src`.
fn knock_port_noise(r: &mut Rng, src: IpAddr) -> Frame {
    let (proto, port) = KNOCK_PORTS[r.below(KNOCK_PORTS.len() as u64) as usize];
    let f = [
        flags::SYN,
        flags::SYN,
        flags::ACK,
        flags::SYN | flags::ACK,
        0x3f,
        0,
    ];
    frame(src, proto, port, f[r.below(f.len() as u64) as usize])
}

/// Real knockers, each running through the "ssh" sequence.
struct Knockers {
    srcs: Vec<IpAddr>,
    pos: Vec<usize>,
}

impl Knockers {
    const SEQ: [(Proto, u16, u8); 4] = [
        (Proto::Tcp, 7000, flags::SYN),
        (Proto::Udp, 8000, 0),
        (Proto::Tcp, 9000, flags::FIN | flags::ACK),
        (Proto::Tcp, 7000, flags::SYN),
    ];

    fn next(&mut self, r: &mut Rng) -> Frame {
        let k = r.below(self.srcs.len() as u64) as usize;
        let (proto, port, flags) = Self::SEQ[self.pos[k]];
        self.pos[k] = (self.pos[k] + 1) % Self::SEQ.len();
        frame(self.srcs[k], proto, port, flags)
    }
}

/// A matcher whose table is full of spoofed step-1 sources.
fn prefilled(events: &[Event], pool: &[IpAddr]) -> Matcher {
    let mut m = Matcher::new(events, DEFAULT_CAPACITY, 0);
    let mut out = Output::new();
    for &src in pool {
        m.feed(&frame(src, Proto::Tcp, 7000, flags::SYN), 0, &mut out);
    }
    assert_eq!(m.stats().tracked, DEFAULT_CAPACITY.min(pool.len()));
    m
}

const BLOCK: usize = 256;

/// Runs one mix; returns the median rate in frames per second.
fn run(name: &str, frames: &[Frame], fresh: impl Fn() -> Matcher) -> f64 {
    // `cargo bench --bench matcher -- flood` runs only mixes named so.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !wanted.is_empty() && !wanted.iter().any(|w| name.contains(w.as_str())) {
        return 0.0;
    }
    let mut rates = Vec::new();
    let mut fired_total = 0;
    for _ in 0..RUNS {
        let mut m = fresh();
        let mut out = Output::new();
        out.fired.reserve(BLOCK);
        let start = Instant::now();
        for (ms, chunk) in frames.chunks(PER_MS).enumerate() {
            let now = 1 + ms as u64;
            for f in chunk {
                m.feed(f, now, &mut out);
                if out.fired.len() >= BLOCK {
                    fired_total += out.fired.len();
                    out.clear();
                }
            }
            m.expire(now, &mut out);
        }
        let secs = start.elapsed().as_secs_f64();
        fired_total += out.fired.len();
        black_box(&m);
        rates.push(frames.len() as f64 / secs);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<42} {:>6.1} M frames/s  (min {:.1}, max {:.1}; {} fired over {RUNS} runs)",
        rates[RUNS / 2] / 1e6,
        rates[0] / 1e6,
        rates[RUNS - 1] / 1e6,
        fired_total
    );
    rates[RUNS / 2]
}

/// The matcher's index hash (keyed folded multiply) against SipHash-1-3
/// from std, per 16-byte address.
fn hash_costs(pool: &[IpAddr]) {
    let keys: [u64; 4] = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    let words: Vec<[u64; 2]> = pool
        .iter()
        .map(|a| match a {
            IpAddr::V4(v) => [0, u64::from(u32::from(*v))],
            IpAddr::V6(v) => {
                let x = u128::from(*v);
                [(x >> 64) as u64, x as u64]
            }
        })
        .collect();
    let fold = |a: u64, b: u64| {
        let p = u128::from(a) * u128::from(b);
        (p as u64) ^ ((p >> 64) as u64)
    };
    let rs = std::collections::hash_map::RandomState::new();
    let reps = 20;
    let start = Instant::now();
    let mut acc = 0u64;
    for _ in 0..reps {
        for w in &words {
            let x = fold(w[0] ^ keys[0], w[1] ^ keys[1]);
            acc ^= fold(x ^ keys[2], keys[3]) >> 32;
        }
    }
    let fold_ns = start.elapsed().as_nanos() as f64 / (reps * words.len()) as f64;
    let start = Instant::now();
    for _ in 0..reps {
        for w in &words {
            let mut h = rs.build_hasher();
            h.write_u64(w[0]);
            h.write_u64(w[1]);
            acc ^= h.finish();
        }
    }
    let sip_ns = start.elapsed().as_nanos() as f64 / (reps * words.len()) as f64;
    black_box(acc);
    println!("hash per address: keyed fold {fold_ns:.2} ns, SipHash-1-3 {sip_ns:.2} ns");
}

fn main() {
    let evs = events();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let pool: Vec<IpAddr> = (0..DEFAULT_CAPACITY).map(|_| spoofed(&mut r)).collect();
    let mut knockers = Knockers {
        srcs: (0..256).map(|_| spoofed(&mut r)).collect(),
        pos: vec![0; 256],
    };

    // The kernel filter passes only knock ports, so that is what the
    // matcher sees: scanners and spoofed floods hitting knock ports from
    // ever new sources, some frames from sources already in the table, and a
    // few real knocks.
    let realistic: Vec<Frame> = (0..FRAMES)
        .map(|_| match r.below(100) {
            0..=77 => {
                let src = spoofed(&mut r);
                knock_port_noise(&mut r, src)
            }
            78..=97 => {
                let src = pool[r.below(pool.len() as u64) as usize];
                knock_port_noise(&mut r, src)
            }
            _ => knockers.next(&mut r),
        })
        .collect();
    // Every frame a first knock from a new source: an eviction each.
    let flood: Vec<Frame> = (0..FRAMES)
        .map(|_| match r.below(100) {
            0..=97 => frame(spoofed(&mut r), Proto::Tcp, 7000, flags::SYN),
            _ => knockers.next(&mut r),
        })
        .collect();
    // Every noise frame from a source in the table: resets, LRU moves.
    let returning: Vec<Frame> = (0..FRAMES)
        .map(|_| match r.below(100) {
            0..=97 => {
                let src = pool[r.below(pool.len() as u64) as usize];
                knock_port_noise(&mut r, src)
            }
            _ => knockers.next(&mut r),
        })
        .collect();
    let random_noise: Vec<Frame> = (0..FRAMES).map(|_| random_port_noise(&mut r)).collect();

    println!(
        "{FRAMES} frames per run, table pre-filled with {DEFAULT_CAPACITY} spoofed sources, {} events, 2% real knock frames",
        evs.len()
    );
    let fresh = || prefilled(&evs, &pool);
    run(
        "realistic (78% new, 20% tracked sources)",
        &realistic,
        fresh,
    );
    run("first-knock flood (new sources)", &flood, fresh);
    run("knock noise from tracked sources", &returning, fresh);
    run("random-port noise", &random_noise, fresh);
    hash_costs(&pool);
    scaling(&pool, &flood, &realistic);
    rotation_costs(&pool);
}

/// Issue 17: what a window change and a burn cost the capture thread with
/// a full table: each reloads the matcher, which walks every slot. (The
/// ring holds 16,384 frames: at 300,000 frames/s, 50 ms is its slack.)
fn rotation_costs(pool: &[IpAddr]) {
    use tportknockd::config::rotation::Rotation;
    use tportknockd::crypto::key::Key;
    use tportknockd::knock::matcher::Output;
    use tportknockd::knock::matchset::MatchSet;
    use tportknockd::knock::rotate::WindowLen;
    let rot = Event {
        name: "rot".into(),
        timeout: 30,
        rotation: Some(Rotation {
            templates: vec!["tcp:40000-40999:s".parse().unwrap(); 4],
            key_file: "k".into(),
            window: WindowLen::new(30).unwrap(),
            key: Some(Key::new(&[7; 32]).unwrap()),
        }),
        ..Event::default()
    };
    let mut evs = events();
    evs.insert(1, rot);
    let t0: u64 = 1_700_000_010_000; // window 56666667 begins
    let w = t0 / 30_000;
    let first = evs[1]
        .rotation
        .as_ref()
        .unwrap()
        .sequence("rot", w)
        .unwrap()[0];
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let mut set = MatchSet::new(&evs, DEFAULT_CAPACITY, 0);
        set.rotate(&evs, 0, t0);
        let mut out = Output::new();
        // Every source of the table half-way through the current window.
        for &src in pool {
            set.feed(
                true,
                &frame(src, Proto::Tcp, first.port, flags::SYN),
                1,
                &mut out,
            );
        }
        assert_eq!(set.stats(evs.len()).tracked, pool.len());
        let t = Instant::now();
        set.rotate(&evs, 2, t0 + 30_000);
        assert_eq!(
            set.next_rotation_ms(),
            Some(2 + 30_000),
            "the window changed"
        );
        let roll = t.elapsed();
        let t = Instant::now();
        set.burn(&evs, 1, w + 1, 3);
        let burn = t.elapsed();
        black_box(&set);
        times.push((roll.as_secs_f64() * 1e3, burn.as_secs_f64() * 1e3));
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (roll, burn) = times[RUNS / 2];
    println!(
        "rotating event, full table of {} sources: window change {roll:.1} ms, burn {burn:.1} ms (median of {RUNS})",
        pool.len()
    );
}

/// `n` events: "ssh" (the real knockers' sequence) and `n - 1` more, each
/// on ports of its own that no frame of the mixes hits.
fn scaled_events(n: usize) -> Vec<Event> {
    let mut evs = vec![events().remove(0)];
    for i in 1..n {
        let (a, b) = (10_000 + i, 30_000 + i);
        evs.push(event(
            &format!("e{i}"),
            &format!("tcp:{a}:s udp:{b} tcp:{a}:fa"),
            30,
        ));
    }
    evs
}

/// Issue 15: the cost of a frame must not grow with the number of events.
/// The same full table and mixes with 1, 100 and 1,000 events.
fn scaling(pool: &[IpAddr], flood: &[Frame], realistic: &[Frame]) {
    println!("event scaling (full table of {DEFAULT_CAPACITY} sources):");
    let mut base = [0.0f64; 2];
    for n in [1usize, 100, 1000] {
        let evs = scaled_events(n);
        let fresh = || prefilled(&evs, pool);
        let rates = [
            run(
                &format!("  {n:>4} event(s), first-knock flood"),
                flood,
                fresh,
            ),
            run(&format!("  {n:>4} event(s), realistic"), realistic, fresh),
        ];
        if n == 1 {
            base = rates;
        } else if base[0] > 0.0 && rates[0] > 0.0 {
            println!(
                "  {n:>4} event(s) against 1: flood {:.2}x, realistic {:.2}x of the rate",
                rates[0] / base[0],
                rates[1] / base[1]
            );
        }
    }
}
