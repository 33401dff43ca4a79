//! The frame decoder on arbitrary bytes, with every link type (see `checks::decode`).
#![no_main]

mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decode(data));
