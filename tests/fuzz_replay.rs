//! Replays the checked-in fuzz inputs — the seed corpora in fuzz/corpus and
//! any crash input kept in fuzz/regressions — through the same code the
//! fuzz targets drive, so `make test` covers them without cargo-fuzz.
//! A crash found by `make fuzz` goes into fuzz/regressions/<target>/ (and,
//! once fixed, gets a unit test of its own next to the code it broke).

use std::path::{Path, PathBuf};

use tportknockd::config;
use tportknockd::knock::Step;
use tportknockd::matcher::{Fired, Matcher};
use tportknockd::wire::{decode, Decoded, Link};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out
}

#[test]
fn decode_inputs() {
    let all = inputs("decode");
    assert!(
        all.len() >= 20,
        "seed corpus missing: run python3 fuzz/seeds.py"
    );
    let mut knocks = 0;
    for (path, data) in &all {
        for link in [Link::Ethernet, Link::RawIp, Link::Loopback] {
            if let Decoded::Knock(k) = decode(data, link) {
                let min = if link == Link::RawIp { 28 } else { 42 };
                assert!(data.len() >= min, "{}", path.display());
                assert_eq!(k.src.is_ipv4(), k.dst.is_ipv4());
                knocks += 1;
            }
        }
    }
    assert!(knocks > 0);
}

#[test]
fn config_inputs() {
    let all = inputs("config");
    assert!(
        !all.is_empty(),
        "seed corpus missing: run python3 fuzz/seeds.py"
    );
    let mut valid = 0;
    for (path, data) in &all {
        match config::parse(data, "fuzz.conf") {
            Err(e) => assert!(e.messages.iter().all(|m| !m.contains('\n'))),
            Ok(cfg) => {
                valid += 1;
                let _ = tportknockd::check::warnings(&cfg, "fuzz.conf");
                for step in cfg.events.iter().flat_map(|e| &e.sequence) {
                    let text = step.to_string();
                    assert_eq!(
                        text.parse::<Step>().as_ref(),
                        Ok(step),
                        "{}",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(valid > 0);
}

/// The decode_match target's loop, with its invariants.
#[test]
fn decode_match_inputs() {
    const CONF: &[u8] = b"<A>\n sequence = tcp:22:s udp:1234 tcp:7000:fa\n timeout = 5\n \
start_command = true %IP%\n</A>\n<B>\n sequence = tcp:22:i tcp:22:i\n timeout = 2\n \
start_command = true\n</B>\n<C>\n sequence = udp:1234 udp:1234 tcp:8080:pa tcp:443:i\n \
timeout = 9\n start_command = true\n</C>\n";
    let cfg = config::parse(CONF, "fuzz").unwrap();
    let all = inputs("decode_match");
    assert!(
        !all.is_empty(),
        "seed corpus missing: run python3 fuzz/seeds.py"
    );
    let mut fed = 0;
    for (path, data) in &all {
        let mut m = Matcher::new(&cfg.events, 8, 0);
        let (mut fired, mut now, mut total) = (Vec::<Fired>::new(), 0u64, 0u64);
        let mut rest = &data[..];
        while let [head, len, tail @ ..] = rest {
            let n = (*len as usize).min(tail.len());
            let (frame, next) = tail.split_at(n);
            rest = next;
            let link = [Link::Ethernet, Link::RawIp, Link::Loopback, Link::Ethernet]
                [usize::from(head & 3)];
            now += u64::from(head >> 2) * 100;
            if head >> 2 == 63 {
                m.expire(now, None);
            }
            let Decoded::Knock(k) = decode(frame, link) else {
                continue;
            };
            fed += 1;
            fired.clear();
            m.feed(k.src, k.proto, k.dst_port, k.flags, now, &mut fired, None);
            assert!(fired.iter().all(|f| f.src == k.src), "{}", path.display());
            total += fired.len() as u64;
            let st = m.stats();
            assert!(st.tracked <= 8);
            assert_eq!(st.events.iter().map(|e| e.completed).sum::<u64>(), total);
        }
    }
    assert!(fed > 0);
}
