//! The checks behind each fuzz target, shared with `tests/fuzz_replay.rs`
//! so `make test` replays the seed corpora and kept crash inputs through
//! exactly what the fuzzer runs.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tportknockd::capture::ring::FrameMeta;
use tportknockd::config::{self, Config};
use tportknockd::doors::{CommandKind, DoorLimits};
use tportknockd::knock::{FlagSpec, Step};
use tportknockd::pipeline::Pipeline;
use tportknockd::wire::{decode as decode_frame, decode_captured, hatype, Decoded, Link};

/// The frame decoder on arbitrary bytes, with every link type: never
/// panics, and a knock is only ever reported from bytes that hold it.
pub fn decode(data: &[u8]) {
    for link in [Link::Ethernet, Link::RawIp, Link::Loopback] {
        match decode_frame(data, link) {
            Decoded::Knock(k) => {
                // The smallest knock is IPv4 (20) + UDP (8), after 14 bytes
                // of Ethernet unless the link is raw IP.
                let min = if link == Link::RawIp { 28 } else { 42 };
                assert!(
                    data.len() >= min,
                    "{link:?} knock from {} bytes",
                    data.len()
                );
                assert_eq!(k.src.is_ipv4(), k.dst.is_ipv4());
            }
            Decoded::Malformed(m) => assert!(!m.to_string().is_empty()),
            Decoded::Other | Decoded::Fragment => {}
        }
        // Knowing the wire length only ever takes knocks away.
        let plain = decode_frame(data, link);
        for wire in [data.len(), data.len() / 2, usize::MAX] {
            if let Decoded::Knock(k) = decode_captured(data, wire, link) {
                assert_eq!(plain, Decoded::Knock(k), "wire length {wire}");
            }
        }
    }
}

/// The config parser (knock.conf and knockd.conf) on arbitrary bytes: never
/// panics, and whatever it accepts is sane: steps print back to themselves,
/// limits hold, and the checker's warnings run on it.
pub fn config(data: &[u8]) {
    let cfg = match config::parse(data, "fuzz.conf") {
        Ok(cfg) => cfg,
        Err(e) => {
            // Every message is one line: none may smuggle a newline into a log.
            for m in &e.messages {
                assert!(!m.contains('\n'), "{m:?}");
            }
            return;
        }
    };
    let _ = tportknockd::config::check::warnings(&cfg, "fuzz.conf");
    for ev in &cfg.events {
        // Only a knockd one-time event gets its steps later, from its file.
        assert!(
            !ev.sequence.is_empty() || ev.one_time.is_some(),
            "an event without steps was accepted"
        );
        assert!((1..=config::MAX_TIMEOUT).contains(&ev.timeout));
        assert!(ev.name.len() <= config::MAX_NAME);
        for step in &ev.sequence {
            // knockd's TCPFlags masks print as `f!a`, which knock.conf
            // does not read; every other step prints as its config text.
            if matches!(step.flags, FlagSpec::Mask { .. }) {
                continue;
            }
            let text = step.to_string();
            assert_eq!(text.parse::<Step>().as_ref(), Ok(step), "{text}");
        }
    }
}

/// Ports and addresses of the wire test fixtures the seeds are built from.
const KNOCK_CONF: &[u8] = b"<A>\n sequence = tcp:22:s udp:1234 tcp:7000:fa\n timeout = 5\n \
start_command = true %IP%\n</A>\n<B>\n sequence = tcp:22:i tcp:22:i\n timeout = 2\n \
start_command = true\n</B>\n<C>\n sequence = udp:1234 udp:1234 tcp:8080:pa tcp:443:i\n \
timeout = 9\n start_command = true\n</C>\n";
const KNOCKD_CONF: &[u8] = b"[A]\n Sequence = 22,1234:udp,7000\n TCPFlags = syn,!ack\n \
Seq_Timeout = 5\n Start_Command = true %IP%\n[B]\n Sequence = 22,22\n Seq_Timeout = 2\n \
Target = 10.199.0.1\n Start_Command = true\n[C]\n Sequence = 1234:udp,1234:udp,8080,443\n \
Seq_Timeout = 9\n Target = 10.199.0.1\n Start_Command = true\n[D]\n Sequence = 22,443\n \
Target = fd00:199::1\n Start_Command = true\n";
const CAPACITY: usize = 8;

fn configs() -> &'static [Config; 2] {
    static CFG: OnceLock<[Config; 2]> = OnceLock::new();
    CFG.get_or_init(|| {
        [
            config::parse(KNOCK_CONF, "fuzz").expect("knock.conf"),
            config::parse(KNOCKD_CONF, "fuzz").expect("knockd.conf"),
        ]
    })
}

/// The daemon's pipeline (decode, match, doors) as the capture loop
/// drives it, one frame per batch.
///
/// Input: one byte choosing the configuration (even: knock.conf, one
/// matcher; odd: knockd.conf with `Target` and `TCPFlags`, split matchers),
/// then records of `[head][len][len bytes of frame]`. The low two bits of
/// `head` pick the link, bits 2-6 advance the clock by that many 100 ms
/// steps (the pipeline's timers run after each step), bit 7 says the
/// destination is not one of the own addresses. A small table (8 sources)
/// makes eviction part of every run.
pub fn decode_match(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = &configs()[usize::from(pick & 1)];
    let groups = 1 + cfg.events.iter().filter(|e| e.target.is_some()).count();
    // No caps: every completion must become exactly one start (the caps
    // have their own tests; start-only doors here never report back).
    let unbounded = DoorLimits {
        max_doors: usize::MAX,
        max_per_source: usize::MAX,
    };
    let mut p = Pipeline::new(cfg.clone(), CAPACITY, None, unbounded, 0).expect("no journal");
    let (mut now, mut total) = (0u64, 0u64);
    while let [head, len, tail @ ..] = rest {
        let take = (*len as usize).min(tail.len());
        let (frame, next) = tail.split_at(take);
        rest = next;
        let (link, hatype) = [
            (Link::Ethernet, hatype::ETHER),
            (Link::RawIp, hatype::NONE),
            (Link::Loopback, hatype::LOOPBACK),
            (Link::Ethernet, hatype::ETHER),
        ][usize::from(head & 3)];
        now += u64::from((head >> 2) & 31) * 100;
        // No event here has a stop command: timers never run one.
        assert!(p.tick(now).is_empty(), "a stop without a door");
        let local = head & 0x80 == 0;
        let own = move |_: u32, _: IpAddr| local;
        p.push(&meta(hatype, frame.len()), frame, &own, now);
        let end = p.finish(now, now);
        assert!(!end.rebuild_filter, "no one-time event here");
        let knock = match decode_frame(frame, link) {
            Decoded::Knock(k) => Some(k),
            _ => None,
        };
        for req in &end.requests {
            let Some(k) = knock else {
                panic!("{} opened by a frame that is no knock", req.event);
            };
            assert_eq!(req.kind, CommandKind::Start);
            assert_eq!(req.src, k.src, "a frame opened a door for another source");
            let ev = cfg.events.iter().find(|e| e.name == req.event).unwrap();
            match ev.target {
                // A Target event sees only frames to its address.
                Some(t) => assert_eq!(t, k.dst, "{} fired for {}", ev.name, k.dst),
                None => assert!(local, "{} fired for a foreign address", ev.name),
            }
        }
        // Every event has a start command for both families and no stop:
        // each completed sequence is one start.
        total += end.requests.len() as u64;
        assert_eq!(p.counters().fired, total);
        let st = p.knock_stats();
        assert!(
            st.tracked <= CAPACITY * groups,
            "{} sources tracked",
            st.tracked
        );
        let completed: u64 = st.events.iter().map(|e| e.completed).sum();
        assert_eq!(completed, total);
    }
}

/// What the ring reports with a frame of `len` bytes on link `hatype`.
fn meta(hatype: u16, len: usize) -> FrameMeta {
    FrameMeta {
        ifindex: 1,
        hatype,
        pkttype: 0,
        protocol: 0,
        vlan_tci: None,
        vlan_tpid: 0,
        wire_len: len as u32,
        snap_len: len as u32,
        losing: false,
        timestamp: Duration::ZERO,
    }
}
