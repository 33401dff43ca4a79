//! Decoder and matcher together, as the daemon's capture loop drives them.
//!
//! Input: records of `[head][len][len bytes of frame]`; the low two bits of
//! `head` pick the link, the rest advance the clock by that many 100 ms
//! steps (so timeouts and sweeps happen). A small table (8 sources) makes
//! eviction part of every run.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tportknockd::config;
use tportknockd::matcher::{Fired, Matcher, Trace};
use tportknockd::wire::{decode, Decoded, Link};

/// Ports of the wire test fixtures the seed corpus is built from.
const CONF: &[u8] = b"<A>\n sequence = tcp:22:s udp:1234 tcp:7000:fa\n timeout = 5\n \
start_command = true %IP%\n</A>\n<B>\n sequence = tcp:22:i tcp:22:i\n timeout = 2\n \
start_command = true\n</B>\n<C>\n sequence = udp:1234 udp:1234 tcp:8080:pa tcp:443:i\n \
timeout = 9\n start_command = true\n</C>\n";
const CAPACITY: usize = 8;

fuzz_target!(|data: &[u8]| {
    static CFG: OnceLock<config::Config> = OnceLock::new();
    let cfg = CFG.get_or_init(|| config::parse(CONF, "fuzz").expect("fuzz config"));
    let lens: Vec<usize> = cfg.events.iter().map(|e| e.sequence.len()).collect();
    let mut m = Matcher::new(&cfg.events, CAPACITY, 0);
    let (mut fired, mut trace): (Vec<Fired>, Vec<Trace>) = (Vec::new(), Vec::new());
    let (mut now, mut total_fired) = (0u64, 0u64);
    let mut rest = data;
    while let [head, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        let link =
            [Link::Ethernet, Link::RawIp, Link::Loopback, Link::Ethernet][usize::from(head & 3)];
        now += u64::from(head >> 2) * 100;
        if head >> 2 == 63 {
            m.expire(now, Some(&mut trace));
        }
        let Decoded::Knock(k) = decode(frame, link) else {
            continue;
        };
        fired.clear();
        m.feed(
            k.src,
            k.proto,
            k.dst_port,
            k.flags,
            now,
            &mut fired,
            Some(&mut trace),
        );
        for f in &fired {
            assert_eq!(f.src, k.src, "a frame fired an event for another source");
            assert!(f.event < lens.len());
            assert_eq!(
                m.progress(k.src, f.event),
                0,
                "a fired event kept its progress"
            );
        }
        total_fired += fired.len() as u64;
        for (e, len) in lens.iter().enumerate() {
            assert!(m.progress(k.src, e) < *len);
        }
        let st = m.stats();
        assert!(st.tracked <= CAPACITY, "{} sources tracked", st.tracked);
        let completed: u64 = st.events.iter().map(|e| e.completed).sum();
        assert_eq!(completed, total_fired);
        trace.clear();
    }
});
