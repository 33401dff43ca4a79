//! Decoder and matchers together, as the daemon drives them (see `checks::decode_match`).
#![no_main]

mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decode_match(data));
