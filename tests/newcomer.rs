//! A newcomer follows README.md: scripts/newcomer copies the tracked files to
//! a fresh directory and runs every command of the Quick start and Install
//! sections (make, make demo, make deb, dpkg -i into a scratch root, the
//! edit, tportknockd -C, the unit started in a network namespace, a knock
//! that opens the door, tportknockd -S, make install, the non-systemd
//! examples). The README
//! and the script must agree: a step the script does not know fails it.

mod common;
use common::*;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn readme_quick_start_and_install_work_as_written() {
    require_root();
    let log = std::env::temp_dir().join(format!("tpk-newcomer-{}.log", std::process::id()));
    let mut cmd =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/newcomer"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ));
    let mut run = spawn(cmd);
    // One release build on a busy 2-core machine, the demo, a knock.
    let mut status = run.wait_timeout(Duration::from_secs(600));
    if status.is_none() {
        // SIGTERM lets the script remove its namespaces and directories.
        run.signal(libc::SIGTERM);
        status = run.wait_timeout(Duration::from_secs(30));
    }
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        status.is_some_and(|s| s.success()),
        "newcomer failed ({status:?}):\n{out}"
    );
    for step in [
        "README: make deb",
        "README: sudo dpkg -i target/deb/tportknockd_*.deb",
        "README: sudo systemctl enable --now tportknockd",
        "door open for ",
        "README: sudo tportknockd -S",
        "all README steps done",
    ] {
        assert!(out.contains(step), "no {step:?} in:\n{out}");
    }
}
