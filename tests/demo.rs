//! `make demo`'s script, run with this test run's binaries: the story it
//! tells must be true (hidden, knock, open, closed again), and it must leave
//! nothing behind, also when interrupted.

mod common;

use common::daemon::BIN;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn demo() -> Command {
    require_root();
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/demo.sh"));
    cmd.env("TPK_BIN_DIR", Path::new(BIN).parent().unwrap())
        .env("TPK_DELAY", "2")
        .stdin(Stdio::null());
    cmd
}

fn namespaces_of(pid: u32) -> Vec<String> {
    must("ip netns list")
        .lines()
        .filter(|l| l.contains("tpkdemo-") && l.contains(&format!("-{pid}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn demo_shows_hidden_open_and_closed_again_and_cleans_up() {
    let mut cmd = demo();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn(cmd);
    let pid = child.child.id();
    let status = child
        .wait_timeout(Duration::from_secs(60))
        .expect("demo did not finish in 60 s");
    let mut out = String::new();
    std::io::Read::read_to_string(child.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "demo failed:\n{out}\n{err}");

    // The three connection attempts, in order: refused, let in, refused.
    let attempts: Vec<&str> = out.lines().filter(|l| l.contains(" 22: ")).collect();
    assert_eq!(attempts.len(), 3, "{out}");
    assert!(attempts[0].ends_with("no answer (dropped by the firewall)"));
    assert!(attempts[1].ends_with("connected"));
    assert!(attempts[2].ends_with("no answer (dropped by the firewall)"));
    // The daemon's own account of it is shown: a kernel door, the address
    // in the set with the delay as its timeout, closed by the kernel.
    for needle in [
        "door opened",
        "door open: in nftables set 'inet demo knocked' for 2 s",
        "set: elements = { 10.198.0.2 timeout 2s expires ",
        "door closed by the kernel",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
    assert!(!out.contains("command "), "no command runs:\n{out}");
    assert!(namespaces_of(pid).is_empty(), "namespaces left behind");
}

#[test]
fn interrupted_demo_removes_namespaces_and_processes() {
    let mut cmd = demo();
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = spawn(cmd);
    let pid = child.child.id();
    let stdout = child.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Interrupt with the door open: daemon, service and namespaces all exist.
    let mut seen = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("demo never opened the door:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("door opened") {
            break;
        }
    }
    let srv = format!("tpkdemo-srv-{pid}");
    let inside: Vec<i32> = must(&format!("ip netns pids {srv}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        inside.len() >= 2,
        "expected the daemon and the service in {srv}: {inside:?}"
    );
    child.signal(libc::SIGINT);
    let status = child
        .wait_timeout(Duration::from_secs(20))
        .expect("interrupted demo did not exit");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(namespaces_of(pid).is_empty(), "namespaces left behind");
    for p in inside {
        assert!(!alive(p), "process {p} of the demo still runs");
    }
}
