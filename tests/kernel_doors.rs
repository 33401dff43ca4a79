//! End-to-end: kernel doors (`doors::kernel`) against real nftables sets and
//! ipsets, inside network namespaces the tests create. Every answer the
//! client gives is checked against what `nft` / `ipset` themselves list.
//!
//! Needs root, `nft` (nftables) and `ipset`; `make test` installs them.

mod common;

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{require_root, Netns};
use tportknockd::config::sets::{AddrFamily, IpsetName, NftSet, SetTarget};
use tportknockd::doors::kernel::{KernelDoors, Reason, Refresh};

fn require_tools() {
    require_root();
    for tool in ["nft", "ipset"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        assert!(
            found,
            "`{tool}` is missing: install the Debian packages nftables and ipset (`make test` does)"
        );
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nft(spec: &str) -> SetTarget {
    SetTarget::Nft(NftSet::parse(spec).unwrap())
}

fn ipset(name: &str) -> SetTarget {
    SetTarget::Ipset(IpsetName::parse(name).unwrap())
}

/// A namespace with table `inet f` holding sets k4 (ipv4_addr) and k6
/// (ipv6_addr), both with the timeout flag, and ipsets k4 / k6 (hash:ip,
/// inet / inet6, timeout support).
fn door_ns() -> Netns {
    require_tools();
    let ns = Netns::new("kd");
    ns.must(
        "nft add table inet f && \
         nft add set inet f k4 '{ type ipv4_addr; flags timeout; }' && \
         nft add set inet f k6 '{ type ipv6_addr; flags timeout; }' && \
         ipset create k4 hash:ip family inet timeout 600 && \
         ipset create k6 hash:ip family inet6 timeout 600",
    );
    ns
}

/// What `nft`/`ipset` list for `addr` in `target`: the element's line
/// fragment, or `None` when absent. Independent of the client under test.
fn listed(ns: &Netns, target: &SetTarget, addr: IpAddr) -> Option<String> {
    let out = match target {
        SetTarget::Nft(s) => ns.sh(&format!("nft list set {s}")),
        SetTarget::Ipset(name) => ns.sh(&format!("ipset list {name}")),
    };
    assert!(out.status.success(), "listing {target} failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let needle = addr.to_string();
    text.split([',', '{', '}', '\n'])
        .map(str::trim)
        .find(|part| part.split_whitespace().next() == Some(needle.as_str()))
        .map(str::to_string)
}

fn assert_near(got: Duration, want: Duration, slack: Duration, what: &str) {
    assert!(
        got <= want && want - got <= slack,
        "{what}: {got:?} left, expected just under {want:?} (slack {slack:?})"
    );
}

/// Add → present with the right timeout; refresh at 80 % → still there past
/// the first deadline with the full timeout again; remove → gone; remove
/// again → reported absent.
fn add_refresh_remove(ns: &Netns, target: SetTarget, addr: IpAddr, refresh: Option<Refresh>) {
    let timeout = Duration::from_secs(3);
    // ipset keeps whole seconds: up to a second of rounding on reads.
    let slack = match target {
        SetTarget::Nft(_) => Duration::from_millis(300),
        SetTarget::Ipset(_) => Duration::from_millis(1300),
    };
    let t = target.clone();
    let (first, refreshed, after_deadline) = ns.run(move || {
        let mut kd = match refresh {
            Some(r) => KernelDoors::with_refresh(r).unwrap(),
            None => KernelDoors::open().unwrap(),
        };
        let start = Instant::now();
        kd.add(&t, addr, timeout).unwrap();
        let first = kd
            .expires(&t, addr)
            .unwrap()
            .expect("element present after add");
        thread::sleep(timeout.mul_f32(0.8).saturating_sub(start.elapsed()));
        kd.add(&t, addr, timeout).unwrap();
        let refreshed = kd
            .expires(&t, addr)
            .unwrap()
            .expect("present after refresh");
        // Past the first deadline: a refresh that did not take would be gone.
        thread::sleep((timeout + Duration::from_millis(500)).saturating_sub(start.elapsed()));
        let after = kd.expires(&t, addr).unwrap();
        (first, refreshed, after)
    });
    assert_near(first, timeout, slack, "after add");
    assert_near(refreshed, timeout, slack, "after refresh at 80%");
    let after = after_deadline.expect("door shut at the first deadline despite the refresh");
    assert!(after <= timeout, "{after:?}");
    let line = listed(ns, &target, addr).expect("nft/ipset do not list the refreshed element");
    match &target {
        SetTarget::Nft(_) => assert!(line.contains("timeout 3s"), "{line}"),
        SetTarget::Ipset(_) => assert!(line.contains("timeout "), "{line}"),
    }
    let t = target.clone();
    let (removed, gone, again) = ns.run(move || {
        let mut kd = KernelDoors::open().unwrap();
        let removed = kd.remove(&t, addr).unwrap();
        let gone = kd.expires(&t, addr).unwrap();
        let again = kd.remove(&t, addr).unwrap();
        (removed, gone, again)
    });
    assert!(removed, "remove did not find the element");
    assert_eq!(gone, None);
    assert!(!again, "a second remove must report the element absent");
    assert_eq!(listed(ns, &target, addr), None, "still listed after remove");
}

#[test]
fn nft_ipv4_door_in_place_refresh() {
    let ns = door_ns();
    add_refresh_remove(
        &ns,
        nft("inet f k4"),
        ip("192.0.2.7"),
        Some(Refresh::InPlace),
    );
}

#[test]
fn nft_ipv6_door_in_place_refresh() {
    let ns = door_ns();
    add_refresh_remove(
        &ns,
        nft("inet f k6"),
        ip("2001:db8::7"),
        Some(Refresh::InPlace),
    );
}

#[test]
fn nft_doors_replace_refresh() {
    let ns = door_ns();
    add_refresh_remove(
        &ns,
        nft("inet f k4"),
        ip("192.0.2.8"),
        Some(Refresh::Replace),
    );
    add_refresh_remove(
        &ns,
        nft("inet f k6"),
        ip("2001:db8::8"),
        Some(Refresh::Replace),
    );
}

#[test]
fn ipset_ipv4_door() {
    let ns = door_ns();
    add_refresh_remove(&ns, ipset("k4"), ip("192.0.2.9"), None);
}

#[test]
fn ipset_ipv6_door() {
    let ns = door_ns();
    add_refresh_remove(&ns, ipset("k6"), ip("2001:db8::9"), None);
}

/// The kernel itself closes the door: no remove, the element is gone once
/// its timeout has passed, in nft's own listing too.
#[test]
fn kernel_expires_the_door() {
    let ns = door_ns();
    let targets = [
        (nft("inet f k4"), ip("192.0.2.10")),
        (nft("inet f k6"), ip("2001:db8::10")),
        (ipset("k4"), ip("192.0.2.10")),
        (ipset("k6"), ip("2001:db8::10")),
    ];
    let ts = targets.clone();
    ns.run(move || {
        let mut kd = KernelDoors::open().unwrap();
        for (t, a) in &ts {
            kd.add(t, *a, Duration::from_secs(1)).unwrap();
            assert!(kd.expires(t, *a).unwrap().is_some(), "{t}: not added");
        }
    });
    for (t, a) in &targets {
        assert!(listed(&ns, t, *a).is_some(), "{t}: not listed after add");
    }
    thread::sleep(Duration::from_millis(2300));
    let ts = targets.clone();
    let left = ns.run(move || {
        let mut kd = KernelDoors::open().unwrap();
        ts.iter()
            .map(|(t, a)| kd.expires(t, *a).unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(left, vec![None; 4], "elements outlived their timeout");
    for (t, a) in &targets {
        assert_eq!(listed(&ns, t, *a), None, "{t}: still listed after expiry");
    }
}

/// A reader polling all the while never sees the element missing while it
/// is refreshed again and again: no gap between old and new.
fn no_gap(target: SetTarget, addr: IpAddr, refresh: Refresh) {
    let ns = door_ns();
    let path = format!("/run/netns/{}", ns.name);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU32::new(0));
    let t = target.clone();
    ns.run(move || {
        let mut kd = KernelDoors::with_refresh(refresh).unwrap();
        kd.add(&t, addr, Duration::from_secs(30)).unwrap();
    });
    let t = target.clone();
    let (stop2, reads2) = (stop.clone(), reads.clone());
    let reader = thread::spawn(move || {
        enter(&path);
        let mut kd = KernelDoors::open().unwrap();
        let mut misses = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            reads2.fetch_add(1, Ordering::Relaxed);
            if kd.expires(&t, addr).unwrap().is_none() {
                misses += 1;
            }
        }
        misses
    });
    let t = target.clone();
    let reads3 = reads.clone();
    ns.run(move || {
        let mut kd = KernelDoors::with_refresh(refresh).unwrap();
        // Refresh while the reader runs: from its first read until both
        // 300 refreshes and 500 more reads are done.
        let start = Instant::now();
        while reads3.load(Ordering::Relaxed) == 0 && start.elapsed() < Duration::from_secs(5) {
            thread::yield_now();
        }
        let first = reads3.load(Ordering::Relaxed);
        let mut n = 0;
        while n < 300 || reads3.load(Ordering::Relaxed) < first + 500 {
            kd.add(&t, addr, Duration::from_secs(30)).unwrap();
            n += 1;
            assert!(start.elapsed() < Duration::from_secs(20), "reader stalled");
        }
    });
    stop.store(true, Ordering::Relaxed);
    let misses = reader.join().unwrap();
    let reads = reads.load(Ordering::Relaxed);
    assert!(reads > 500, "the reader hardly ran ({reads} reads)");
    assert_eq!(
        misses, 0,
        "{target}: absent in {misses} of {reads} reads during refreshes"
    );
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a valid namespace fd; moves only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn nft_in_place_refresh_has_no_gap() {
    no_gap(nft("inet f k4"), ip("192.0.2.11"), Refresh::InPlace);
}

#[test]
// Known defect, issue 16 (open): the add/delete/add batch used on kernels
// before 6.12 left the element absent for 1 of 3,775 reads in one run
// under load. This kernel refreshes in place (tested by the other no-gap
// tests); run this one with --ignored while fixing the fallback.
#[ignore = "fallback refresh for kernels < 6.12 has a rare gap (issue 16)"]
fn nft_replace_refresh_has_no_gap() {
    no_gap(nft("inet f k6"), ip("2001:db8::11"), Refresh::Replace);
}

#[test]
fn ipset_refresh_has_no_gap() {
    no_gap(ipset("k4"), ip("192.0.2.11"), Refresh::InPlace);
}

/// Looks `target` up for `family` and returns the error's text; then runs
/// the fix line the error suggests and checks that the lookup now passes.
fn refused_then_fixed(ns: &Netns, target: SetTarget, family: AddrFamily, expect: &str) -> String {
    let t = target.clone();
    let err = ns.run(move || {
        let mut kd = KernelDoors::open().unwrap();
        kd.lookup(&t, family, Duration::from_secs(30))
            .expect_err("lookup accepted an unusable set")
    });
    let text = err.to_string();
    assert!(text.contains(expect), "message lacks '{expect}': {text}");
    assert!(
        text.contains(&target.to_string()),
        "message does not name the set: {text}"
    );
    let fix = err
        .fix
        .clone()
        .unwrap_or_else(|| panic!("no fix line in: {text}"));
    assert!(text.ends_with(&fix));
    ns.must(&fix);
    let t = target.clone();
    let after = ns.run(move || {
        let mut kd = KernelDoors::open().unwrap();
        kd.lookup(&t, family, Duration::from_secs(30))
            .map_err(|e| e.to_string())
    });
    assert_eq!(after, Ok(()), "the suggested fix did not fix it: {fix}");
    text
}

#[test]
fn nft_lookup_accepts_good_sets() {
    let ns = door_ns();
    ns.run(|| {
        let mut kd = KernelDoors::open().unwrap();
        let d = Duration::from_secs(30);
        kd.lookup(&nft("inet f k4"), AddrFamily::V4, d).unwrap();
        kd.lookup(&nft("inet f k6"), AddrFamily::V6, d).unwrap();
        kd.lookup(&ipset("k4"), AddrFamily::V4, d).unwrap();
        kd.lookup(&ipset("k6"), AddrFamily::V6, d).unwrap();
    });
}

#[test]
fn nft_lookup_refuses_with_the_fix() {
    let ns = door_ns();
    // Missing table and set.
    let text = refused_then_fixed(&ns, nft("ip knock k"), AddrFamily::V4, "does not exist");
    assert!(
        text.contains(
            "nft add table ip knock && nft add set ip knock k '{ type ipv4_addr; flags timeout; }'"
        ),
        "{text}"
    );
    // Missing set in an existing table.
    refused_then_fixed(&ns, nft("inet f other"), AddrFamily::V6, "does not exist");
    // No timeout flag.
    ns.must("nft add set inet f plain '{ type ipv4_addr; }'");
    let text = refused_then_fixed(
        &ns,
        nft("inet f plain"),
        AddrFamily::V4,
        "no timeout support",
    );
    assert!(
        text.contains("nft delete set inet f plain && nft add set"),
        "{text}"
    );
    // Wrong key type: an IPv6 set named for IPv4 knockers.
    ns.must("nft add set inet f six '{ type ipv6_addr; flags timeout; }'");
    refused_then_fixed(
        &ns,
        nft("inet f six"),
        AddrFamily::V4,
        "ipv6_addr, not ipv4_addr",
    );
    // A concatenation.
    ns.must("nft add set inet f cc '{ type ipv4_addr . inet_service; flags timeout; }'");
    refused_then_fixed(&ns, nft("inet f cc"), AddrFamily::V4, "concatenation");
    // An interval set.
    ns.must("nft add set inet f iv '{ type ipv4_addr; flags interval, timeout; }'");
    refused_then_fixed(&ns, nft("inet f iv"), AddrFamily::V4, "interval set");
}

#[test]
fn ipset_lookup_refuses_with_the_fix() {
    let ns = door_ns();
    let text = refused_then_fixed(&ns, ipset("nosuch"), AddrFamily::V4, "does not exist");
    assert!(
        text.contains("ipset create nosuch hash:ip family inet timeout 30"),
        "{text}"
    );
    ns.must("ipset create plain hash:ip");
    refused_then_fixed(&ns, ipset("plain"), AddrFamily::V4, "no timeout support");
    refused_then_fixed(&ns, ipset("k4"), AddrFamily::V6, "not IPv6 addresses");
    ns.must("ipset create ports hash:ip,port timeout 5");
    refused_then_fixed(&ns, ipset("ports"), AddrFamily::V4, "hash:ip,port entries");
}

/// Kernel refusals during operation name the set and the reason.
#[test]
fn kernel_errors_name_set_and_reason() {
    let ns = door_ns();
    ns.must("nft add set inet f plain '{ type ipv4_addr; }' && ipset create plain hash:ip");
    let errors = ns.run(|| {
        let mut kd = KernelDoors::open().unwrap();
        let a = ip("192.0.2.12");
        let d = Duration::from_secs(5);
        vec![
            kd.add(&nft("inet f gone"), a, d).unwrap_err(),
            kd.add(&ipset("gone"), a, d).unwrap_err(),
            kd.add(&ipset("plain"), a, d).unwrap_err(),
            kd.add(&nft("inet f plain"), a, d).unwrap_err(),
            kd.add(&ipset("k4"), a, Duration::from_millis(500))
                .unwrap_err(),
        ]
    });
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        texts[0].starts_with("nftables set 'inet f gone': no such table"),
        "{}",
        texts[0]
    );
    assert!(texts[1].starts_with("ipset 'gone': "), "{}", texts[1]);
    assert!(
        matches!(errors[1].reason, Reason::Kernel(libc::ENOENT)),
        "{:?}",
        errors[1]
    );
    assert_eq!(
        texts[2],
        "ipset 'plain': the set was created without timeout support"
    );
    assert!(
        matches!(errors[3].reason, Reason::Kernel(libc::EINVAL)),
        "{:?}",
        errors[3]
    );
    assert!(
        texts[3].starts_with("nftables set 'inet f plain': the kernel refused"),
        "{}",
        texts[3]
    );
    assert!(
        matches!(errors[4].reason, Reason::TimeoutRange(_)),
        "{:?}",
        errors[4]
    );
}
