//! The checks behind each fuzz target, shared with `tests/fuzz_replay.rs`
//! so `make test` replays the seed corpora and kept crash inputs through
//! exactly what the fuzzer runs.

#![allow(dead_code)]

use std::sync::OnceLock;

use tportknockd::config::{self, Config};
use tportknockd::knock::matcher::Output;
use tportknockd::knock::matchset::MatchSet;
use tportknockd::knock::{FlagSpec, Step};
use tportknockd::wire::{decode as decode_frame, decode_captured, Decoded, Link};

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

/// Decoder and matchers together, as the daemon's capture loop drives them.
///
/// Input: one byte choosing the configuration (even: knock.conf, one
/// matcher; odd: knockd.conf with `Target` and `TCPFlags`, split matchers),
/// then records of `[head][len][len bytes of frame]`. The low two bits of
/// `head` pick the link, bits 2-6 advance the clock by that many 100 ms
/// steps (31: also run `expire`), bit 7 says the destination is not one of
/// the own addresses. A small table (8 sources) makes eviction part of
/// every run.
pub fn decode_match(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = &configs()[usize::from(pick & 1)];
    let n = cfg.events.len();
    let groups = 1 + cfg.events.iter().filter(|e| e.target.is_some()).count();
    let mut m = MatchSet::new(&cfg.events, CAPACITY, 0);
    let (mut out, mut now, mut total) = (Output::new(), 0u64, 0u64);
    while let [head, len, tail @ ..] = rest {
        let take = (*len as usize).min(tail.len());
        let (frame, next) = tail.split_at(take);
        rest = next;
        let link =
            [Link::Ethernet, Link::RawIp, Link::Loopback, Link::Ethernet][usize::from(head & 3)];
        let steps = (head >> 2) & 31;
        now += u64::from(steps) * 100;
        if steps == 31 {
            m.expire(now, &mut out);
        }
        let local = head & 0x80 == 0;
        let Decoded::Knock(k) = decode_frame(frame, link) else {
            continue;
        };
        out.clear();
        m.feed(local, &k, now, &mut out);
        for f in &out.fired {
            assert_eq!(f.src, k.src, "a frame fired an event for another source");
            let ev = &cfg.events[f.event];
            match ev.target {
                // A Target event sees only frames to its address.
                Some(t) => assert_eq!(t, k.dst, "{} fired for {}", ev.name, k.dst),
                None => assert!(local, "{} fired for a foreign address", ev.name),
            }
        }
        total += out.fired.len() as u64;
        let st = m.stats(n);
        assert!(
            st.tracked <= CAPACITY * groups,
            "{} sources tracked",
            st.tracked
        );
        let completed: u64 = st.events.iter().map(|e| e.completed).sum();
        assert_eq!(completed, total);
    }
}
