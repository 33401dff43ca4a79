//! Replays the checked-in fuzz inputs — the seed corpora in fuzz/corpus and
//! any crash input kept in fuzz/regressions — through the very checks the
//! fuzz targets run (fuzz/fuzz_targets/checks.rs), so `make test` covers
//! them without cargo-fuzz. A crash found by `make fuzz` goes into
//! fuzz/regressions/<target>/, and once fixed also gets a unit test next to
//! the code it broke.

use std::path::Path;

#[path = "../fuzz/fuzz_targets/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{} fails {target}", path.display());
            n += 1;
        }
    }
    assert!(n > 0, "no {target} inputs: run python3 fuzz/seeds.py");
}

#[test]
fn decode_inputs() {
    replay("decode", checks::decode);
}

#[test]
fn config_inputs() {
    replay("config", checks::config);
}

#[test]
fn decode_match_inputs() {
    replay("decode_match", checks::decode_match);
}
