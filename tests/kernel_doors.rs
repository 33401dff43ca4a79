//! End-to-end: kernel doors (`doors::kernel`) against real nftables sets and
//! ipsets, inside network namespaces the tests create. Every answer the
//! client gives is checked against what `nft` / `ipset` themselves list.
//!
//! Needs root, `nft` (nftables) and `ipset`; `make test` installs them.

mod common;

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{frame, require_root, Netns, Pair};
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

// ---- The moment of a refresh ----
//
// In place (Linux 6.12 and later) and for ipsets the element is never
// removed, so nothing can miss it. Replace (before 6.12) deletes it and
// adds its successor in one nf_tables transaction; the kernel's commit
// flips the generation, then unlinks the old element before it activates
// the new one, and a lookup that sampled the old generation just before
// the flip can walk past both (`Refresh::Replace` in src/doors/kernel.rs
// has the kernel functions). Packet lookups retry such a miss since Linux
// 6.17 (6.12.48, 6.16.8); netlink GETSETELEM never does. The tests below
// assert exactly that: one transaction per refresh, the element present
// after each, a netlink reader missing it at most once per commit, and no
// packet dropped in place, nor by replace on a kernel with the retry.

/// What a netlink reader saw while the element was refreshed.
#[derive(Debug)]
struct Polled {
    refreshes: u32,
    reads: u32,
    misses: u32,
}

/// A reader polls `addr` over netlink all the while it is refreshed: from
/// the reader's first read until both 300 refreshes and 500 more reads are
/// done. Each refresh is checked to have left the element there.
fn poll_during_refreshes(target: SetTarget, addr: IpAddr, refresh: Refresh) -> Polled {
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
    let refreshes = ns.run(move || {
        let mut kd = KernelDoors::with_refresh(refresh).unwrap();
        let start = Instant::now();
        while reads3.load(Ordering::Relaxed) == 0 && start.elapsed() < Duration::from_secs(5) {
            thread::yield_now();
        }
        let first = reads3.load(Ordering::Relaxed);
        let mut n = 0;
        while n < 300 || reads3.load(Ordering::Relaxed) < first + 500 {
            kd.add(&t, addr, Duration::from_secs(30)).unwrap();
            n += 1;
            let left = kd.expires(&t, addr).unwrap();
            assert!(left.is_some(), "{t}: absent after refresh {n}");
            assert!(start.elapsed() < Duration::from_secs(20), "reader stalled");
        }
        n
    });
    stop.store(true, Ordering::Relaxed);
    let misses = reader.join().unwrap();
    let reads = reads.load(Ordering::Relaxed);
    assert!(reads > 500, "the reader hardly ran ({reads} reads)");
    let polled = Polled {
        refreshes,
        reads,
        misses,
    };
    eprintln!("{target} {refresh:?}: {polled:?}");
    polled
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
    let p = poll_during_refreshes(nft("inet f k4"), ip("192.0.2.11"), Refresh::InPlace);
    assert_eq!(p.misses, 0, "absent in {} of {} reads", p.misses, p.reads);
}

#[test]
fn ipset_refresh_has_no_gap() {
    let p = poll_during_refreshes(ipset("k4"), ip("192.0.2.11"), Refresh::InPlace);
    assert_eq!(p.misses, 0, "absent in {} of {} reads", p.misses, p.reads);
}

/// Replace: a reader's read misses the element only if it sampled the
/// generation before a commit's flip and walked the set after that commit
/// unlinked the old element; its next read starts later and sees the new
/// generation. So each miss belongs to a different refresh. (A refresh
/// that left the element out for longer would show up as absent right
/// after it, which `poll_during_refreshes` checks.)
#[test]
fn nft_replace_refresh_misses_only_at_a_commit() {
    let p = poll_during_refreshes(nft("inet f k6"), ip("2001:db8::11"), Refresh::Replace);
    assert!(
        p.misses <= p.refreshes,
        "absent in {} of {} reads over {} refreshes: more than the commits explain",
        p.misses,
        p.reads,
        p.refreshes
    );
}

/// `nft monitor` in `ns`, its lines collected as they come.
struct Monitor {
    proc: common::Proc,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    /// Marks added so far (each a new element of k4).
    marks: u8,
}

impl Monitor {
    fn start(ns: &Netns) -> Monitor {
        let mut cmd = ns.command("nft");
        cmd.arg("monitor").stdout(std::process::Stdio::piped());
        let mut proc = common::spawn(cmd);
        let out = proc.child.stdout.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut m = Monitor {
            proc,
            lines,
            marks: 0,
        };
        m.mark(ns);
        m
    }

    /// Adds new elements to k4 with `nft` until the monitor shows one:
    /// from then on it sees every commit, and has seen all before.
    fn mark(&mut self, ns: &Netns) {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            self.marks = self.marks.checked_add(1).expect("too many marks");
            let addr = format!("198.51.100.{}", self.marks);
            ns.must(&format!("nft add element inet f k4 '{{ {addr} }}'"));
            thread::sleep(Duration::from_millis(20));
            let seen = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with("add element inet f k4") && l.contains(&addr));
            if seen {
                return;
            }
            assert!(Instant::now() < until, "nft monitor shows nothing");
        }
    }

    fn stop(mut self, ns: &Netns) -> Vec<String> {
        self.mark(ns);
        self.proc.signal(libc::SIGTERM);
        let _ = self.proc.wait_timeout(Duration::from_secs(5));
        let lines = self.lines.lock().unwrap().clone();
        lines
    }
}

/// The transactions (`# new generation` closes each) in which `nft
/// monitor` saw elements `key` of set `inet f k6` change: for each, the
/// changes in order, as "add" / "delete".
fn transactions_of(lines: &[String], key: &str) -> Vec<Vec<&'static str>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for line in lines {
        if line.starts_with("# new generation") {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.contains("element inet f k6") && line.contains(&format!("{{ {key} ")) {
            if line.starts_with("add element") {
                current.push("add");
            } else if line.starts_with("delete element") {
                current.push("delete");
            }
        }
    }
    assert!(
        current.is_empty(),
        "changes after the last generation: {current:?}"
    );
    out
}

/// Every refresh is one transaction, seen by `nft monitor` (an observer
/// independent of this crate): in place one add; replace a delete and the
/// add of its successor with no generation between them.
#[test]
fn each_refresh_is_one_transaction() {
    let key = "2001:db8::12";
    for refresh in [Refresh::InPlace, Refresh::Replace] {
        let ns = door_ns();
        let monitor = Monitor::start(&ns);
        ns.run(move || {
            let mut kd = KernelDoors::with_refresh(refresh).unwrap();
            for _ in 0..50 {
                kd.add(&nft("inet f k6"), ip(key), Duration::from_secs(30))
                    .unwrap();
            }
        });
        let lines = monitor.stop(&ns);
        let txs = transactions_of(&lines, key);
        assert_eq!(
            txs.len(),
            50,
            "{refresh:?}: not one transaction per add: {lines:#?}"
        );
        // The first add finds no element (replace: it adds one, deletes it
        // and adds its successor); each refresh after finds one.
        for (i, tx) in txs.iter().enumerate() {
            let want: &[&str] = match (refresh, i) {
                (Refresh::InPlace, _) => &["add"],
                (Refresh::Replace, 0) => &["add", "delete", "add"],
                (Refresh::Replace, _) => &["delete", "add"],
            };
            assert_eq!(tx, want, "{refresh:?}: transaction {i}");
        }
    }
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

// ---- The packet path ----

/// Packets to UDP port 9999 pass only from addresses in k4 / k6; the rest
/// of that port's packets are counted and dropped.
const PACKET_RULES: &str = "nft -f - <<'EOF'
table inet f {
  set k4 { type ipv4_addr; flags timeout; }
  set k6 { type ipv6_addr; flags timeout; }
  counter passed { }
  counter dropped { }
  chain pre {
    type filter hook prerouting priority 0; policy accept;
    udp dport 9999 ip saddr @k4 counter name passed accept
    udp dport 9999 ip6 saddr @k6 counter name passed accept
    udp dport 9999 counter name dropped drop
  }
}
EOF";

/// The packets a named counter of table `inet f` has counted.
fn counted(ns: &Netns, name: &str) -> u64 {
    let text = ns.must(&format!("nft list counter inet f {name}"));
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in: {text}"))
}

/// What one run of [`packet_flow`] saw.
#[derive(Debug)]
struct Flow {
    refreshes: u32,
    /// Frames the client sent while the refreshes ran (counted in bursts
    /// of 512).
    during: usize,
    /// Of all frames sent from just before the first refresh to just after
    /// the last: what the set let in, and what the rule dropped.
    passed: u64,
    dropped: u64,
    /// Netlink reads of the element all the while, and how many missed it.
    reads: u32,
    misses: u32,
}

/// Frames from the knocker's address flow without pause from the client
/// namespace into the server's prerouting rule while the server refreshes
/// the knocker's element again and again, at least `min_refreshes` times
/// and until at least `min_frames` were sent meanwhile (and, with `read`, a
/// thread polls it over netlink all the while).
fn packet_flow(
    refresh: Refresh,
    v6: bool,
    min_refreshes: u32,
    min_frames: usize,
    read: bool,
) -> Flow {
    require_tools();
    let pair = Pair::new();
    pair.server.must(PACKET_RULES);
    let udp = frame::udp(5555, 9999, b"door");
    let (src, packet, ethertype, set) = if v6 {
        let p = frame::ipv6(pair.client6, pair.server6, 17, udp, &[]);
        (IpAddr::V6(pair.client6), p, frame::ETH_IPV6, "k6")
    } else {
        let p = frame::ipv4(pair.client4, pair.server4, 17, udp);
        (IpAddr::V4(pair.client4), p, frame::ETH_IPV4, "k4")
    };
    let frame = frame::ether(
        pair.server_mac(),
        pair.client_mac(),
        &[],
        ethertype,
        &packet,
    );
    let target = nft(&format!("inet f {set}"));

    // Without the element the rule drops the knocker, with it lets it in:
    // else the counts below would prove nothing.
    pair.send_frames(vec![frame.clone(); 50]);
    assert_eq!(counted(&pair.server, "dropped"), 50, "frames not dropped");
    let t = target.clone();
    pair.server.run(move || {
        let mut kd = KernelDoors::with_refresh(refresh).unwrap();
        kd.add(&t, src, Duration::from_secs(30)).unwrap();
    });
    pair.send_frames(vec![frame.clone(); 50]);
    assert_eq!(counted(&pair.server, "passed"), 50, "frames not let in");
    assert_eq!(counted(&pair.server, "dropped"), 50);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let (ifname, client) = (
        pair.client_if.clone(),
        format!("/run/netns/{}", pair.client.name),
    );
    let (stop2, sent2) = (stop.clone(), sent.clone());
    let sender = thread::spawn(move || {
        enter(&client);
        let frames = [frame];
        while !stop2.load(Ordering::Relaxed) {
            let n = common::send_raw_many(&ifname, &frames, 512, None).unwrap();
            sent2.fetch_add(n, Ordering::Relaxed);
        }
    });
    let reads = Arc::new(AtomicU32::new(0));
    let reader = read.then(|| {
        let (t, stop3, reads2) = (target.clone(), stop.clone(), reads.clone());
        let server = format!("/run/netns/{}", pair.server.name);
        thread::spawn(move || {
            enter(&server);
            let mut kd = KernelDoors::open().unwrap();
            let mut misses = 0u32;
            while !stop3.load(Ordering::Relaxed) {
                reads2.fetch_add(1, Ordering::Relaxed);
                if kd.expires(&t, src).unwrap().is_none() {
                    misses += 1;
                }
            }
            misses
        })
    });
    let (t, sent3) = (target.clone(), sent.clone());
    let (refreshes, during) = pair.server.run(move || {
        let mut kd = KernelDoors::with_refresh(refresh).unwrap();
        let start = Instant::now();
        let sent_since = |since: usize| sent3.load(Ordering::Relaxed) - since;
        let in_time = || {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the sender stalled"
            )
        };
        // Frames flow before the first refresh, during all of them, and
        // after the last.
        while sent_since(0) < 1024 {
            in_time();
            thread::yield_now();
        }
        let first = sent3.load(Ordering::Relaxed);
        let mut n = 0;
        while n < min_refreshes || sent_since(first) < min_frames {
            kd.add(&t, src, Duration::from_secs(30)).unwrap();
            n += 1;
            in_time();
        }
        let during = sent_since(first);
        let last = sent3.load(Ordering::Relaxed);
        while sent_since(last) < 1024 {
            in_time();
            thread::yield_now();
        }
        (n, during)
    });
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let misses = reader.map_or(0, |r| r.join().unwrap());
    let flow = Flow {
        refreshes,
        during,
        passed: counted(&pair.server, "passed") - 50,
        dropped: counted(&pair.server, "dropped") - 50,
        reads: reads.load(Ordering::Relaxed),
        misses,
    };
    eprintln!("{target} {refresh:?}: {flow:?}");
    assert!(
        flow.passed + flow.dropped >= flow.during as u64,
        "frames sent during the refreshes did not all reach the rule: {flow:?}"
    );
    flow
}

/// Whether this kernel's packet path repeats a set lookup that missed
/// while a transaction was committing ("netfilter: nf_tables: restart set
/// lookup on base_seq change": Linux 6.17, 6.16.8, 6.12.48). `release` as
/// in /proc/sys/kernel/osrelease. A distribution kernel may have the
/// change without the version: then this says no, and the tests assert
/// less than they could.
fn lookup_retries(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= (6, 17, 0) || (v.0, v.1) == (6, 16) && v.2 >= 8 || (v.0, v.1) == (6, 12) && v.2 >= 48
}

#[test]
fn lookup_retry_by_release() {
    assert!(lookup_retries("6.18.44-fc-v657"));
    assert!(lookup_retries("6.17.0"));
    assert!(lookup_retries("6.16.8-arch1"));
    assert!(!lookup_retries("6.16.7"));
    assert!(lookup_retries("6.12.48+deb13-amd64"));
    assert!(!lookup_retries("6.12.47"));
    assert!(!lookup_retries("6.1.0-40-amd64"));
    assert!(lookup_retries("7.0"));
}

/// In place the element is never removed: not one packet from the
/// knocker is dropped and no netlink read misses it, over hundreds of
/// refreshes with 20,000 frames arriving meanwhile, for IPv4 and IPv6.
#[test]
fn in_place_refresh_drops_no_packet() {
    for v6 in [false, true] {
        let f = packet_flow(Refresh::InPlace, v6, 500, 20_000, true);
        assert_eq!(f.dropped, 0, "dropped during in-place refreshes: {f:?}");
        assert!(f.reads > 100, "the netlink reader hardly ran: {f:?}");
        assert_eq!(f.misses, 0, "netlink reads missed it: {f:?}");
    }
}

/// Replace, as the daemon does before Linux 6.12: on a kernel whose packet
/// path retries a lookup across a commit, not one packet is dropped. On
/// one without (6.1, 6.6, ...) a packet whose lookup straddles a commit can
/// be: at most one per CPU and refresh (lookups on one CPU run one after
/// the other, and only one that started before the flip can miss); that a
/// refresh is one transaction at all, `each_refresh_is_one_transaction`
/// shows on every kernel.
#[test]
fn replace_refresh_packet_path() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let retries = lookup_retries(release.trim());
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    for v6 in [false, true] {
        let f = packet_flow(Refresh::Replace, v6, 500, 20_000, true);
        // Netlink reads never repeat a lookup: each miss needs a commit.
        assert!(f.misses <= f.refreshes, "more misses than commits: {f:?}");
        if retries {
            assert_eq!(
                f.dropped, 0,
                "kernel {release}: dropped during replaces: {f:?}"
            );
        } else {
            assert!(
                f.dropped <= u64::from(f.refreshes) * cpus,
                "kernel {release}: more drops than commits explain: {f:?}"
            );
        }
    }
}
