//! Property tests (issue 8) for what the matcher promises whatever arrives:
//! sources cannot influence each other, an event fires exactly when its
//! sequence arrived within its timeout (checked against a from-scratch model
//! of the rules in `matcher.rs`'s docs), memory stays within the documented
//! bound, and `%IP%` only ever becomes a printed address.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tportknockd::config::{self, Event};
use tportknockd::knock::matcher::{Fired, Matcher, Output};
use tportknockd::knock::{flags, FlagSpec, Knock, Proto, Step};
use tportknockd::wire::{decode, Decoded, Link};

// ---- heap accounting, per thread (tests run in parallel threads) ----

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn account(add: usize, sub: usize) {
    let _ = LIVE.try_with(|l| {
        let v = (l.get() + add).saturating_sub(sub);
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), 0);
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(0, layout.size());
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), 0);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        account(new, layout.size());
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ---- inputs ----

/// Ports come from a tiny set so random frames hit steps often.
const PORTS: [u16; 4] = [1000, 1001, 1002, 1003];

fn step() -> impl Strategy<Value = Step> {
    (
        any::<bool>(),
        0..PORTS.len(),
        prop_oneof![
            Just(FlagSpec::Exact(flags::SYN)),
            Just(FlagSpec::Exact(0)),
            Just(FlagSpec::Exact(flags::FIN | flags::ACK)),
            Just(FlagSpec::Any),
        ],
    )
        .prop_map(|(tcp, p, f)| Step {
            proto: if tcp { Proto::Tcp } else { Proto::Udp },
            port: PORTS[p],
            flags: if tcp { f } else { FlagSpec::Any },
        })
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((prop::collection::vec(step(), 1..5), 1u32..4), 1..4).prop_map(|evs| {
        evs.into_iter()
            .enumerate()
            .map(|(i, (sequence, timeout))| Event {
                name: format!("E{i}"),
                line: 1,
                sequence,
                timeout,
                start_command: "true".into(),
                stop_command: None,
                command_delay: None,
                ..Event::default()
            })
            .collect()
    })
}

/// One frame: (protocol, port, raw flag byte, milliseconds since the last).
type Frame = (Proto, u16, u8, u64);

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<bool>(),
        0..PORTS.len() + 1,
        prop_oneof![
            Just(flags::SYN),
            Just(0u8),
            Just(flags::FIN | flags::ACK),
            Just(0xc2u8), // ECN bits + SYN: the classic flags are SYN
            any::<u8>(),
        ],
        prop_oneof![3 => 0u64..400, 1 => 0u64..4000],
    )
        .prop_map(|(tcp, p, f, dt)| {
            let proto = if tcp { Proto::Tcp } else { Proto::Udp };
            // one in five frames goes to a port no event uses
            let port = PORTS.get(p).copied().unwrap_or(2000);
            (proto, port, if tcp { f } else { 0 }, dt)
        })
}

/// Feeds one frame; the fires land in `fired` (cleared first).
fn feed(
    m: &mut Matcher,
    src: IpAddr,
    (proto, port, fl): (Proto, u16, u8),
    now: u64,
    out: &mut Output,
) -> Vec<Fired> {
    let k = Knock {
        src,
        dst: src,
        proto,
        dst_port: port,
        flags: fl,
    };
    out.clear();
    m.feed(&k, now, out);
    out.fired.clone()
}

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(n)))
}

// ---- a model of the documented rules, one source, one event ----

#[derive(Clone, Copy, Default)]
struct ModelAttempt {
    step: usize,
    flags: u8,
    deadline: u64,
}

fn model_feed(
    evs: &[Event],
    state: &mut [ModelAttempt],
    (proto, port, fl, now): (Proto, u16, u8, u64),
) -> Vec<usize> {
    let knock_port = evs.iter().any(|e| {
        e.sequence
            .iter()
            .any(|s| s.proto == proto && s.port == port)
    });
    let mut fired = Vec::new();
    if !knock_port {
        return fired;
    }
    for (i, ev) in evs.iter().enumerate() {
        let a = &mut state[i];
        if a.step > 0 {
            if now > a.deadline {
                *a = ModelAttempt::default(); // dead: never continued
            } else if ev.sequence[a.step].matches(proto, port, fl) {
                a.step += 1;
                a.flags = fl & flags::CLASSIC;
                if a.step == ev.sequence.len() {
                    fired.push(i);
                    *a = ModelAttempt::default();
                }
                continue;
            } else {
                let prev = ev.sequence[a.step - 1];
                if prev.proto == proto
                    && prev.port == port
                    && (proto == Proto::Udp || a.flags == fl & flags::CLASSIC)
                {
                    continue; // a retransmission of the last step
                }
                *a = ModelAttempt::default(); // reset, then try as a first step
            }
        }
        if ev.sequence[0].matches(proto, port, fl) {
            if ev.sequence.len() == 1 {
                fired.push(i);
            } else {
                *a = ModelAttempt {
                    step: 1,
                    flags: fl & flags::CLASSIC,
                    deadline: now + u64::from(ev.timeout) * 1000,
                };
            }
        }
    }
    fired
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The matcher fires exactly what the model of its documented rules
    /// fires, frame by frame: only after the exact sequence, within the
    /// timeout counted from the first frame.
    #[test]
    fn fires_exactly_as_the_rules_say(evs in events(), frames in prop::collection::vec(frame(), 0..60)) {
        let src = v4(1);
        let mut m = Matcher::new(&evs, 64, 0);
        let mut state = vec![ModelAttempt::default(); evs.len()];
        let (mut now, mut out) = (0u64, Output::new());
        for (i, &(proto, port, fl, dt)) in frames.iter().enumerate() {
            now += dt;
            if i % 7 == 6 {
                m.expire(now, &mut out);
            }
                        let fired = feed(&mut m, src, (proto, port, fl), now, &mut out);
            let got: Vec<usize> = fired.iter().map(|f| f.event).collect();
            let want = model_feed(&evs, &mut state, (proto, port, fl, now));
            prop_assert_eq!(&got, &want, "frame {} ({:?} {} {:#x} at {})", i, proto, port, fl, now);
            prop_assert!(fired.iter().all(|f| f.src == src));
        }
    }

    /// Whenever an event fires, the source's own frames contain its steps
    /// in order, the first no longer ago than the timeout.
    #[test]
    fn a_fire_has_its_whole_sequence_within_the_timeout(evs in events(), frames in prop::collection::vec(frame(), 0..60)) {
        let src = v4(1);
        let mut m = Matcher::new(&evs, 64, 0);
        let (mut now, mut out, mut seen) = (0u64, Output::new(), Vec::new());
        for &(proto, port, fl, dt) in &frames {
            now += dt;
            seen.push((proto, port, fl, now));
                        let fired = feed(&mut m, src, (proto, port, fl), now, &mut out);
            for f in &fired {
                let ev = &evs[f.event];
                let window = u64::from(ev.timeout) * 1000;
                // Match the steps backwards from this frame.
                let mut need = ev.sequence.len();
                let mut first_at = now;
                for &(p, po, fla, t) in seen.iter().rev() {
                    if need == 0 || now - t > window {
                        break;
                    }
                    if ev.sequence[need - 1].matches(p, po, fla) {
                        need -= 1;
                        first_at = t;
                    }
                }
                prop_assert_eq!(need, 0, "{} fired without its sequence in the window", ev.name);
                prop_assert!(now - first_at <= window);
            }
        }
    }

    /// Frames from other sources, interleaved in any way, change nothing
    /// about what one source's frames fire (while the table has room).
    #[test]
    fn other_sources_change_nothing(
        evs in events(),
        mine in prop::collection::vec(frame(), 0..40),
        others in prop::collection::vec((1u32..6, frame()), 0..120),
        merge in prop::collection::vec(any::<bool>(), 160),
    ) {
        let me = v4(0);
        let alone = {
            let mut m = Matcher::new(&evs, 64, 0);
            let (mut now, mut got, mut out) = (0u64, Vec::new(), Output::new());
            for &(proto, port, fl, dt) in &mine {
                now += dt;
                                let fired = feed(&mut m, me, (proto, port, fl), now, &mut out);
                got.push(fired.iter().map(|f| f.event).collect::<Vec<_>>());
            }
            got
        };
        // Same frames at the same times, others' frames slotted in between
        // (they take their time from the running clock, adding none).
        let mut m = Matcher::new(&evs, 64, 0);
        let (mut now, mut got, mut out) = (0u64, Vec::new(), Output::new());
        let (mut i, mut j, mut k) = (0, 0, 0);
        while i < mine.len() {
            let other_turn = j < others.len() && merge.get(k).copied().unwrap_or(false);
            k += 1;
            if other_turn {
                let (n, (proto, port, fl, _)) = others[j];
                j += 1;
                let fired = feed(&mut m, v4(n), (proto, port, fl), now, &mut out);
                prop_assert!(fired.iter().all(|f| f.src == v4(n)));
                if k % 5 == 0 {
                    m.expire(now, &mut out);
                }
            } else {
                let (proto, port, fl, dt) = mine[i];
                i += 1;
                now += dt;
                let fired = feed(&mut m, me, (proto, port, fl), now, &mut out);
                prop_assert!(fired.iter().all(|f| f.src == me));
                got.push(fired.iter().map(|f| f.event).collect::<Vec<_>>());
            }
        }
        prop_assert_eq!(got, alone);
    }

    /// `%IP%` becomes the printed address and nothing else: only hex
    /// digits, `.` and `:`, which parse back to the very address; the rest
    /// of the command is untouched.
    #[test]
    fn ip_expands_only_to_a_printed_address(
        pieces in prop::collection::vec("[^%]{0,12}", 1..5),
        bits in any::<u128>(),
        is_v4 in any::<bool>(),
    ) {
        let ip = if is_v4 { IpAddr::V4(Ipv4Addr::from(bits as u32)) } else { IpAddr::V6(Ipv6Addr::from(bits)) };
        let text = ip.to_string();
        prop_assert!(text.chars().all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':'), "{}", text);
        prop_assert_eq!(text.parse::<IpAddr>().unwrap(), ip);
        let command = pieces.join("%IP%");
        let out = config::expand(&command, ip);
        prop_assert_eq!(out, pieces.join(&text));
    }

    /// Whatever bytes a frame holds, the source address it yields prints
    /// as an address: the only frame-chosen text a command ever sees.
    #[test]
    fn any_frame_yields_only_an_address(bytes in prop::collection::vec(any::<u8>(), 0..120), link in 0usize..3) {
        let link = [Link::Ethernet, Link::RawIp, Link::Loopback][link];
        if let Decoded::Knock(k) = decode(&bytes, link) {
            let out = config::expand("iptables -A INPUT -s %IP% -j ACCEPT", k.src);
            let addr = out.strip_prefix("iptables -A INPUT -s ").and_then(|s| s.strip_suffix(" -j ACCEPT")).unwrap();
            prop_assert_eq!(addr.parse::<IpAddr>().unwrap(), k.src);
        }
    }

    /// Config bytes reach logs through error messages: never a control
    /// character or a line break, whatever the file holds.
    #[test]
    fn config_errors_are_printable_single_lines(text in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut doc = b"<A>\n sequence = ".to_vec();
        doc.extend_from_slice(&text);
        doc.extend_from_slice(b"\n timeout = \x1b[31m\n</A>\n");
        for bytes in [&text[..], &doc[..]] {
            if let Err(e) = config::parse(bytes, "k.conf") {
                for msg in &e.messages {
                    prop_assert!(!msg.chars().any(char::is_control), "{:?}", msg);
                }
            }
        }
    }
}

proptest! {
    // Long inputs, so fewer cases: generating them dominates in debug.
    #![proptest_config(ProptestConfig { cases: 40, ..config() })]

    /// Any stream of frames from any number of sources: at most `capacity`
    /// sources tracked, and the heap never holds more than the documented
    /// 64 bytes per slot + 16 per unit of capacity for the spill pool + 8
    /// per index entry (2 × capacity rounded up to a power of two), plus
    /// the two 16 KiB port bitmaps, the events themselves and one source's
    /// scratch attempts: nothing per source grows with the events.
    #[test]
    fn memory_stays_within_the_documented_bound(
        evs in events(),
        cap_log in 2u32..9,
        frames in prop::collection::vec((any::<u32>(), frame()), 0..1500),
    ) {
        let capacity = 1usize << cap_log;
        let mut out = Output { fired: Vec::with_capacity(16), ..Output::new() };
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let mut m = Matcher::new(&evs, capacity, 0);
        let mut now = 0;
        for (n, &(src, (proto, port, fl, dt))) in frames.iter().enumerate() {
            now += dt / 8;
            // Mostly fresh sources (a spoofed flood), some repeating.
            let addr = if src % 4 == 0 {
                IpAddr::V6(Ipv6Addr::from(u128::from(src % 64)))
            } else {
                v4(src)
            };
            let _ = feed(&mut m, addr, (proto, port, fl), now, &mut out);
            if n % 100 == 99 {
                m.expire(now, &mut out);
            }
            if n % 64 == 0 {
                prop_assert!(m.stats().tracked <= capacity);
            }
        }
        prop_assert!(m.stats().tracked <= capacity);
        let ne = evs.len();
        let index = (2 * capacity).next_power_of_two().max(16) * 8;
        let bitmaps = 2 * 2 * 65_536 / 8;
        // Per event: its record, name and steps, its first-step index
        // entry (16 bytes at most), and room in the two scratch lists.
        let events: usize = evs.iter().map(|e| 64 + e.name.len() + e.sequence.len() * 8 + 16 + 16).sum();
        let scratch = 2 * 10 * ne.max(4);
        let bound = capacity * (64 + 16) + index + bitmaps + events + scratch + 1024;
        let peak = PEAK.with(Cell::get) - start;
        prop_assert!(peak <= bound, "peak heap {} B > bound {} B (capacity {}, {} events)", peak, bound, capacity, ne);
        drop(m);
    }
}

/// Peak heap while `frames` run through a matcher for `evs`, and what it
/// tracks at the end.
fn peak_heap(evs: &[Event], capacity: usize, frames: &[(u32, Frame)]) -> (usize, usize) {
    let mut out = Output::new();
    out.fired.reserve(16);
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let mut m = Matcher::new(evs, capacity, 0);
    // A full table first: every source starts event 0 (two steps).
    for n in 0..capacity as u32 {
        let _ = feed(
            &mut m,
            v4(n),
            (Proto::Tcp, PORTS[0], flags::SYN),
            0,
            &mut out,
        );
    }
    let mut now = 0;
    for &(src, (proto, port, fl, dt)) in frames {
        now += dt / 8;
        let _ = feed(&mut m, v4(src), (proto, port, fl), now, &mut out);
    }
    let peak = PEAK.with(Cell::get) - start;
    (peak, m.stats().tracked)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..config() })]

    /// Issue 15: the same traffic against the same events plus 1,000 more
    /// (on ports the traffic never hits) costs the same per source: with a
    /// full table (256 sources) the peak heaps differ by no more than what
    /// the extra events themselves take. (8 bytes per source and event, as
    /// before issue 15, would be 2 MB more.)
    #[test]
    fn per_source_memory_is_independent_of_the_event_count(
        evs in events(),
        frames in prop::collection::vec((any::<u32>(), frame()), 200..1200),
    ) {
        let capacity = 256;
        // Event 0 starts on tcp/1000 with SYN and has two steps, so the
        // table can be filled.
        let mut evs = evs;
        evs[0].sequence = vec!["tcp:1000:s".parse().unwrap(), "udp:1001".parse().unwrap()];
        let mut many = evs.clone();
        for i in 0..1000u16 {
            let seq = format!("tcp:{} udp:{}", 20_000 + i, 40_000 + i);
            many.push(Event {
                name: format!("X{i}"),
                sequence: seq.split(' ').map(|s| s.parse().unwrap()).collect(),
                timeout: 5,
                ..evs[0].clone()
            });
        }
        let (few_peak, few_tracked) = peak_heap(&evs, capacity, &frames);
        let (many_peak, many_tracked) = peak_heap(&many, capacity, &frames);
        prop_assert_eq!(few_tracked, many_tracked);
        prop_assert!(few_tracked > 0);
        // Each extra event: its record (64), name, two steps (16), counters
        // (16), first-step index entry and the temporaries that build it
        // (at most 56).
        let per_extra_event = 64 + 4 + 16 + 16 + 56;
        let allowance = 1000 * per_extra_event + 4096;
        prop_assert!(many_peak <= few_peak + allowance,
            "1,000 more events cost {} B more at the peak (allowed {} B; {} sources)",
            many_peak - few_peak, allowance, many_tracked);
    }
}
