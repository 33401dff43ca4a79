//! The frame decoder on arbitrary bytes, with every link type: never
//! panics, and a knock is only ever reported from bytes that hold it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tportknockd::wire::{decode, Decoded, Link};

fuzz_target!(|data: &[u8]| {
    for link in [Link::Ethernet, Link::RawIp, Link::Loopback] {
        match decode(data, link) {
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
            Decoded::Other => {}
        }
    }
});
