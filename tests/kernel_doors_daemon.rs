//! Kernel doors end to end: the real daemon in a server namespace whose
//! nftables rule set and iptables + ipset rules hide TCP services, knocked
//! with real frames from a client namespace. What the sets hold is read
//! with `nft` and `ipset` themselves, whether a door is open by connecting.
//!
//! - a knock adds the knocker to every set of its family with
//!   `command_delay` as timeout, and the hidden ports answer it alone;
//! - the kernel closes the door at that time (the daemon removes nothing);
//! - a knock at 80 % of the delay keeps it open past the first deadline;
//! - SIGTERM removes the elements; after `kill -9` they still expire on
//!   time and the restarted daemon neither re-adds nor removes anything;
//! - a missing or unusable set refuses start-up (and reload) with the fix;
//! - SIGHUP with other set names sends new doors to the new sets;
//! - CAP_NET_ADMIN is effective only while kernel doors are configured.
//!
//! Needs root, nft, ipset and iptables (`make test` installs them).

mod common;
use common::daemon::*;
use common::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// nftables hides port 22 (sets k4, k6), iptables + ipset port 2222 (sets
/// ik4, ik6): both let in only what their sets hold.
const NFT_PORT: u16 = 22;
const IPSET_PORT: u16 = 2222;
/// The event's knock: UDP, then TCP with FIN+SYN, then TCP with no flag.
const HITS: [Hit; 3] = [(UDP, 7000, 0), (TCP, 7001, 0x03), (TCP, 7002, 0)];

fn require_tools() {
    require_root();
    for tool in ["nft", "ipset", "iptables", "ip6tables"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "`{tool}` is missing: install the Debian packages nftables, ipset and iptables \
             (`make test` does)"
        );
    }
}

/// A client/server pair with the firewall above and listeners on both
/// hidden ports.
fn setup() -> Pair {
    require_tools();
    let pair = Pair::new();
    pair.server.must(
        "nft -f - <<'EOF'
table inet tpk {
  set k4 { type ipv4_addr; flags timeout; }
  set k6 { type ipv6_addr; flags timeout; }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 ip saddr @k4 accept
    tcp dport 22 ip6 saddr @k6 accept
    tcp dport 22 drop
  }
}
EOF",
    );
    pair.server.must(
        "ipset create ik4 hash:ip family inet timeout 600 && \
         ipset create ik6 hash:ip family inet6 timeout 600 && \
         iptables -A INPUT -p tcp --dport 2222 -m set --match-set ik4 src -j ACCEPT && \
         iptables -A INPUT -p tcp --dport 2222 -j DROP && \
         ip6tables -A INPUT -p tcp --dport 2222 -m set --match-set ik6 src -j ACCEPT && \
         ip6tables -A INPUT -p tcp --dport 2222 -j DROP",
    );
    for port in [NFT_PORT, IPSET_PORT] {
        // [::] takes IPv4 too (IPV6_V6ONLY is off by default).
        let listener = pair
            .server
            .run(move || std::net::TcpListener::bind(("::", port)).unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
    }
    pair
}

/// One event with all four sets and `delay`, plus `extra` lines.
fn config(dir: &TempDir, delay: u32, extra: &str) {
    write_config(
        dir,
        &format!(
            "<SSH>\n sequence = udp:7000 tcp:7001:fs tcp:7002:n\n timeout = 5\n \
             nft_set = inet tpk k4\n nft_set_6 = inet tpk k6\n ipset = ik4\n ipset_6 = ik6\n \
             command_delay = {delay}\n{extra}</SSH>\n"
        ),
    );
}

fn v4(pair: &Pair) -> (IpAddr, IpAddr) {
    (IpAddr::V4(pair.client4), IpAddr::V4(pair.server4))
}

fn v6(pair: &Pair) -> (IpAddr, IpAddr) {
    (IpAddr::V6(pair.client6), IpAddr::V6(pair.server6))
}

/// Tries a TCP connection from the client namespace, from `src`.
fn can_connect(pair: &Pair, (src, dst): (IpAddr, IpAddr), port: u16) -> bool {
    pair.client.run(move || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(
            Domain::for_address(SocketAddr::new(src, 0)),
            Type::STREAM,
            None,
        )
        .unwrap();
        s.bind(&SocketAddr::new(src, 0).into()).unwrap();
        s.connect_timeout(
            &SocketAddr::new(dst, port).into(),
            Duration::from_millis(300),
        )
        .is_ok()
    })
}

/// `5s`, `2s996ms`, `1m59s999ms`, `1h2m3s` as nft prints them.
fn nft_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'd' => Duration::from_secs(n * 86_400),
            'h' => Duration::from_secs(n * 3_600),
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                Duration::from_millis(n)
            }
            'm' => Duration::from_secs(n * 60),
            's' => Duration::from_secs(n),
            _ => return None,
        };
    }
    num.is_empty().then_some(total)
}

/// What a set holds for `addr` as `nft`/`ipset` list it: (timeout, time
/// left), or None when absent. `set` is `ik4`/`ik6` (the ipsets; whole
/// seconds, the timeout not shown) or the name of a set in nftables table
/// `inet tpk`.
fn element(pair: &Pair, set: &str, addr: IpAddr) -> Option<(Duration, Duration)> {
    let needle = addr.to_string();
    if matches!(set, "ik4" | "ik6") {
        let out = pair.server.must(&format!("ipset list {set}"));
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(needle.as_str()))?;
        let secs: u64 = line.split_whitespace().nth(2)?.parse().ok()?;
        return Some((Duration::ZERO, Duration::from_secs(secs)));
    }
    let out = pair.server.must(&format!("nft list set inet tpk {set}"));
    let part = out
        .split([',', '{', '}', '\n'])
        .map(str::trim)
        .find(|p| p.split_whitespace().next() == Some(needle.as_str()))?;
    let words: Vec<&str> = part.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .and_then(|v| nft_duration(v))
    };
    Some((after("timeout")?, after("expires")?))
}

/// Ids of the doors a journal file still holds (`add`/`kadd` not followed
/// by `done`), read as plain text.
fn journal_pending(dir: &TempDir) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(dir.join("state/doors.journal")).unwrap_or_default();
    let mut live = BTreeSet::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        match (w.next(), w.next().and_then(|id| id.parse::<u64>().ok())) {
            (Some("add" | "kadd"), Some(id)) => {
                live.insert(id);
            }
            (Some("done"), Some(id)) => {
                live.remove(&id);
            }
            _ => {}
        }
    }
    live
}

/// Knocks from `src` to `dst`; returns the times just before the first
/// frame was built and just after the last one left (building frames
/// starts processes: the two can be far apart on a busy machine).
fn knock_as(pair: &Pair, (src, dst): (IpAddr, IpAddr)) -> (Instant, Instant) {
    let before = Instant::now();
    knock_from(pair, src, dst, &HITS);
    (before, Instant::now())
}

/// When the kernel will drop `addr` from `set`, as an interval (`nft`
/// takes a while to list it); None if it is not there.
fn expiry(pair: &Pair, set: &str, addr: IpAddr) -> Option<(Instant, Instant)> {
    let before = Instant::now();
    let (_, left) = element(pair, set, addr)?;
    Some((before + left, Instant::now() + left))
}

/// Checks an element's expiry against its knock: never before the knock
/// began plus `timeout` (less nft's rounding), and soon after it ended
/// (the add waits for the daemon, which a busy machine slows down).
#[track_caller]
fn expires_after(e: (Instant, Instant), knock: (Instant, Instant), timeout: Duration) {
    let (lo, hi) = (
        knock.0 + timeout - Duration::from_millis(50),
        knock.1 + timeout + Duration::from_millis(700),
    );
    assert!(
        e.1 >= lo && e.0 <= hi,
        "expires {:?}..{:?} after the knock began, expected {timeout:?}..{:?}",
        e.0.saturating_duration_since(knock.0),
        e.1.saturating_duration_since(knock.0),
        hi.saturating_duration_since(knock.0)
    );
}

/// Checks that the element was seen gone at its expiry `e` (the kernel's
/// doing), not before, and not much after (polling `nft` takes time).
#[track_caller]
fn gone_at(gone: Instant, e: (Instant, Instant)) {
    assert!(
        gone + Duration::from_millis(50) >= e.0 && gone <= e.1 + Duration::from_secs(1),
        "seen gone {:?} from its expiry",
        gone.saturating_duration_since(e.0)
    );
}

/// Waits until `set` holds `addr`; panics with the log if it never does.
#[track_caller]
fn wait_element(pair: &Pair, d: &Daemon, set: &str, addr: IpAddr) -> (Duration, Duration) {
    wait_for(Duration::from_secs(3), || element(pair, set, addr))
        .unwrap_or_else(|| panic!("{addr} never appeared in {set}; log:\n{}", d.log_tail(30)))
}

/// Waits until `set` no longer holds `addr`; returns when that was seen.
fn wait_gone(pair: &Pair, set: &str, addr: IpAddr, limit: Duration) -> Option<Instant> {
    wait_for(limit, || {
        element(pair, set, addr).is_none().then(Instant::now)
    })
}

#[test]
fn a_knock_opens_nft_and_ipset_doors_and_the_kernel_closes_them_on_time() {
    let pair = setup();
    let dir = TempDir::new("kd1");
    config(&dir, 3, "");
    let d = start_daemon(&pair, &dir, &[]);
    for port in [NFT_PORT, IPSET_PORT] {
        assert!(
            !can_connect(&pair, v4(&pair), port),
            "{port} open before a knock"
        );
        assert!(
            !can_connect(&pair, v6(&pair), port),
            "{port} open before a knock"
        );
    }
    let k4 = knock_as(&pair, v4(&pair));
    knock_as(&pair, v6(&pair));
    let (c4, c6) = (v4(&pair).0, v6(&pair).0);
    let (timeout, _) = wait_element(&pair, &d, "k4", c4);
    assert_eq!(timeout, Duration::from_secs(3), "element timeout");
    let e4 = expiry(&pair, "k4", c4).expect("gone at once");
    expires_after(e4, k4, timeout);
    assert_eq!(wait_element(&pair, &d, "k6", c6).0, Duration::from_secs(3));
    for set in ["ik4", "ik6"] {
        let addr = if set == "ik4" { c4 } else { c6 };
        let (_, left) = wait_element(&pair, &d, set, addr);
        assert!(
            left <= Duration::from_secs(3) && left >= Duration::from_secs(1),
            "{set}: {left:?}"
        );
    }
    // The hidden ports answer the knocker, on both families, and only it.
    for port in [NFT_PORT, IPSET_PORT] {
        assert!(
            can_connect(&pair, v4(&pair), port),
            "{port} shut after the knock (IPv4)"
        );
        assert!(
            can_connect(&pair, v6(&pair), port),
            "{port} shut after the knock (IPv6)"
        );
    }
    let other = IpAddr::V4("10.199.0.3".parse().unwrap());
    pair.client
        .must(&format!("ip addr add {other}/24 dev {}", pair.client_if));
    assert!(!can_connect(&pair, (other, v4(&pair).1), NFT_PORT));
    assert!(!can_connect(&pair, (other, v4(&pair).1), IPSET_PORT));
    // Closed by the kernel at command_delay (nft in milliseconds, ipset in
    // whole seconds).
    let gone = wait_gone(&pair, "k4", c4, Duration::from_secs(5)).expect("k4 door never closed");
    gone_at(gone, e4);
    for (set, addr) in [("k6", c6), ("ik4", c4), ("ik6", c6)] {
        assert!(
            wait_gone(&pair, set, addr, Duration::from_secs(2)).is_some(),
            "{set} still holds {addr}"
        );
    }
    assert!(!can_connect(&pair, v4(&pair), NFT_PORT));
    assert!(!can_connect(&pair, v6(&pair), IPSET_PORT));
    // The daemon removed nothing: the kernel did; the journal is empty.
    let empty = wait_for(Duration::from_secs(2), || {
        journal_pending(&dir).is_empty().then_some(())
    });
    assert!(empty.is_some(), "journal: {:?}", journal_pending(&dir));
    let log = d.log_text();
    assert!(!log.contains("removed from"), "{log}");
    assert_eq!(log.matches("door closed by the kernel").count(), 2, "{log}");
    let st = d.stats();
    assert_eq!((st["netlink_errors"], st["kernel_doors"]), (0, 0), "{st:?}");
}

#[test]
fn a_knock_at_80_percent_of_the_delay_keeps_the_door_open_past_the_first_deadline() {
    let pair = setup();
    let dir = TempDir::new("kd2");
    config(&dir, 3, "");
    let d = start_daemon(&pair, &dir, &[]);
    let c4 = v4(&pair).0;
    let (t0, _) = knock_as(&pair, v4(&pair));
    wait_element(&pair, &d, "k4", c4);
    std::thread::sleep(Duration::from_millis(2_400).saturating_sub(t0.elapsed()));
    let again = knock_as(&pair, v4(&pair));
    // Refreshed: the full timeout left again.
    let refreshed = wait_for(Duration::from_secs(1), || {
        expiry(&pair, "k4", c4).filter(|e| e.1 > again.0 + Duration::from_millis(2_950))
    });
    let e = refreshed.unwrap_or_else(|| {
        panic!(
            "not refreshed: {:?}; log:\n{}",
            element(&pair, "k4", c4),
            d.log_tail(20)
        )
    });
    expires_after(e, again, Duration::from_secs(3));
    // Past the first deadline: still in, on both families' ipset too.
    std::thread::sleep(Duration::from_millis(3_500).saturating_sub(t0.elapsed()));
    assert!(
        element(&pair, "k4", c4).is_some(),
        "shut at the first deadline"
    );
    assert!(
        element(&pair, "ik4", c4).is_some(),
        "ipset shut at the first deadline"
    );
    assert!(can_connect(&pair, v4(&pair), NFT_PORT));
    assert!(can_connect(&pair, v4(&pair), IPSET_PORT));
    // And closed at the second.
    let gone = wait_gone(&pair, "k4", c4, Duration::from_secs(4)).expect("never closed");
    gone_at(gone, e);
    assert!(d.log_text().contains("holds it for another 3 s"));
}

#[test]
fn sigterm_removes_the_elements_and_the_journal_entries() {
    let pair = setup();
    let dir = TempDir::new("kd3");
    config(&dir, 600, "");
    let mut d = start_daemon(&pair, &dir, &[]);
    knock_as(&pair, v4(&pair));
    knock_as(&pair, v6(&pair));
    let (c4, c6) = (v4(&pair).0, v6(&pair).0);
    for (set, addr) in [("k4", c4), ("k6", c6), ("ik4", c4), ("ik6", c6)] {
        let (_, left) = wait_element(&pair, &d, set, addr);
        assert!(left > Duration::from_secs(590), "{set}: {left:?}");
    }
    assert_eq!(journal_pending(&dir).len(), 2);
    d.proc.signal(libc::SIGTERM);
    let st = d
        .proc
        .wait_timeout(Duration::from_secs(10))
        .expect("no exit");
    assert!(st.success(), "{st:?}\n{}", d.log_tail(20));
    for (set, addr) in [("k4", c4), ("k6", c6), ("ik4", c4), ("ik6", c6)] {
        assert_eq!(element(&pair, set, addr), None, "{set} still holds {addr}");
    }
    assert!(!can_connect(&pair, v4(&pair), NFT_PORT));
    assert!(
        journal_pending(&dir).is_empty(),
        "{:?}",
        journal_pending(&dir)
    );
    assert_eq!(d.log_text().matches("door closed: removed from").count(), 4);
}

#[test]
fn after_kill_9_the_kernel_closes_on_time_and_the_restart_is_clean() {
    let pair = setup();
    let dir = TempDir::new("kd4");
    config(&dir, 4, "");
    let c4 = v4(&pair).0;
    // Killed while the door is open, restarted at once: the door is kept
    // as an open door, neither re-added nor removed, and expires on time.
    let d = start_daemon(&pair, &dir, &[]);
    let knocked = knock_as(&pair, v4(&pair));
    wait_element(&pair, &d, "k4", c4);
    let before = expiry(&pair, "k4", c4).expect("gone at once");
    expires_after(before, knocked, Duration::from_secs(4));
    let journaled = wait_for(Duration::from_secs(2), || {
        (journal_pending(&dir).len() == 1).then_some(())
    });
    assert!(journaled.is_some());
    // Long enough for a re-add by the restart to show in the expiry.
    std::thread::sleep(Duration::from_millis(300));
    drop(d); // SIGKILL
    let d = start_daemon(&pair, &dir, &[]);
    d.expect_log(
        "open from before the restart in nftables set 'inet tpk k4'",
        Duration::from_secs(2),
    );
    let after = expiry(&pair, "k4", c4).expect("gone after the restart");
    // The same expiry (to nft's millisecond): not re-added, not refreshed.
    let slack = Duration::from_millis(20);
    assert!(
        after.0 <= before.1 + slack && after.1 + slack >= before.0,
        "expiry moved by the restart by {:?} (re-added?)",
        after.0.saturating_duration_since(before.0)
    );
    let gone = wait_gone(&pair, "k4", c4, Duration::from_secs(6)).expect("never expired");
    gone_at(gone, before);
    let empty = wait_for(Duration::from_secs(2), || {
        journal_pending(&dir).is_empty().then_some(())
    });
    assert!(empty.is_some(), "journal not emptied after expiry");
    let log = d.log_text();
    for never in ["door open:", "removed from", "holds it", "kernel door not"] {
        assert!(
            !log.contains(never),
            "{never:?} in the restarted daemon's log:\n{log}"
        );
    }

    // Killed, and restarted only after the door expired: the entry is
    // forgotten, and the address someone else has put in the set since is
    // left alone, at start-up and at SIGTERM.
    knock_as(&pair, v4(&pair));
    wait_element(&pair, &d, "k4", c4);
    wait_for(Duration::from_secs(2), || {
        (journal_pending(&dir).len() == 1).then_some(())
    })
    .expect("not journaled");
    drop(d);
    assert!(wait_gone(&pair, "k4", c4, Duration::from_secs(6)).is_some());
    pair.server.must(&format!(
        "nft add element inet tpk k4 {{ {c4} timeout 60s }}"
    ));
    let mut d = start_daemon(&pair, &dir, &[]);
    d.expect_log(
        "closed by the kernel while the daemon was down",
        Duration::from_secs(2),
    );
    let forgotten = wait_for(Duration::from_secs(2), || {
        journal_pending(&dir).is_empty().then_some(())
    });
    assert!(forgotten.is_some(), "{:?}", journal_pending(&dir));
    d.proc.signal(libc::SIGTERM);
    assert!(d.proc.wait_timeout(Duration::from_secs(10)).is_some());
    let (timeout, _) = element(&pair, "k4", c4).expect("the restarted daemon removed it");
    assert_eq!(timeout, Duration::from_secs(60));
    let log = d.log_text();
    assert!(
        !log.contains("removed from") && !log.contains("door open:"),
        "{log}"
    );
}

/// Runs the daemon expecting it to refuse; returns its stderr.
fn refused(pair: &Pair, dir: &TempDir) -> String {
    let out = pair
        .server
        .command(BIN)
        .args(["-i", &pair.server_if, "-c"])
        .arg(dir.join("knock.conf"))
        .arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "not refused:\n{err}");
    err
}

/// The fix line a refusal names for `what`.
fn fix_of<'a>(err: &'a str, what: &str) -> &'a str {
    let line = err
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line about {what}:\n{err}"));
    line.split_once("; to fix it: ")
        .unwrap_or_else(|| panic!("no fix in: {line}"))
        .1
}

#[test]
fn missing_or_unusable_sets_refuse_start_and_reload_with_the_fix() {
    let pair = setup();
    let dir = TempDir::new("kd5");
    pair.server.must(
        "nft add set inet tpk plain '{ type ipv4_addr; }' && \
         nft add set inet tpk w6 '{ type ipv4_addr; flags timeout; }' && \
         ipset create p6 hash:ip family inet6",
    );
    write_config(
        &dir,
        "<SSH>\n sequence = udp:7000 tcp:7001:fs\n timeout = 5\n \
         nft_set = inet tpk later4\n nft_set_6 = inet tpk w6\n ipset = ik4\n ipset_6 = p6\n \
         command_delay = 30\n</SSH>\n<WEB>\n sequence = udp:7100 tcp:7101:fs\n timeout = 5\n \
         nft_set = inet tpk plain\n ipset = gone\n command_delay = 20\n</WEB>\n",
    );
    let err = refused(&pair, &dir);
    assert!(!err.contains("ready"), "{err}");
    let missing = fix_of(&err, "<SSH> nft_set: ");
    assert_eq!(
        missing,
        "nft add table inet tpk && nft add set inet tpk later4 '{ type ipv4_addr; flags timeout; }'"
    );
    assert!(err.contains("<SSH> nft_set_6: kernel door unusable: nftables set 'inet tpk w6': its elements are ipv4_addr, not ipv6_addr"), "{err}");
    assert!(
        err.contains("<SSH> ipset_6: kernel door unusable: ipset 'p6': it has no timeout support"),
        "{err}"
    );
    assert!(err.contains("<WEB> nft_set: kernel door unusable: nftables set 'inet tpk plain': it has no timeout support"), "{err}");
    assert_eq!(
        fix_of(&err, "<WEB> ipset: "),
        "ipset create gone hash:ip family inet timeout 20"
    );
    assert!(!err.contains("<SSH> ipset:"), "ik4 is fine: {err}");
    // Every fix line, run as printed, makes the daemon start.
    for what in [
        "<SSH> nft_set: ",
        "<SSH> nft_set_6: ",
        "<SSH> ipset_6: ",
        "<WEB> nft_set: ",
        "<WEB> ipset: ",
    ] {
        pair.server.must(fix_of(&err, what));
    }
    let d = start_daemon(&pair, &dir, &[]);
    assert!(!dir.join("state/doors.journal").exists() || journal_pending(&dir).is_empty());

    // At reload the running configuration stays when a set is missing.
    let conf = std::fs::read_to_string(dir.join("knock.conf")).unwrap();
    write_config(&dir, &conf.replace("inet tpk later4", "inet tpk nosuch4"));
    d.proc.signal(libc::SIGHUP);
    d.expect_log(
        "reload failed: keeping the running configuration",
        Duration::from_secs(5),
    );
    let log = d.log_text();
    assert!(
        log.contains("nft add set inet tpk nosuch4 '{ type ipv4_addr; flags timeout; }'"),
        "{log}"
    );
    knock_from(
        &pair,
        v4(&pair).0,
        v4(&pair).1,
        &[(UDP, 7000, 0), (TCP, 7001, 0x03)],
    );
    let (timeout, _) = wait_element(&pair, &d, "later4", v4(&pair).0);
    assert_eq!(timeout, Duration::from_secs(30));
}

#[test]
fn sighup_with_other_set_names_sends_new_doors_to_the_new_sets() {
    let pair = setup();
    let dir = TempDir::new("kd6");
    pair.server
        .must("nft add set inet tpk n4 '{ type ipv4_addr; flags timeout; }'");
    write_config(
        &dir,
        "<SSH>\n sequence = udp:7000 tcp:7001:fs\n timeout = 5\n \
         nft_set = inet tpk k4\n command_delay = 600\n</SSH>\n",
    );
    let mut d = start_daemon(&pair, &dir, &[]);
    let (c4, s4) = v4(&pair);
    let knock2 = |src: IpAddr| knock_from(&pair, src, s4, &[(UDP, 7000, 0), (TCP, 7001, 0x03)]);
    knock2(c4);
    wait_element(&pair, &d, "k4", c4);
    write_config(
        &dir,
        "<SSH>\n sequence = udp:7000 tcp:7001:fs\n timeout = 5\n \
         nft_set = inet tpk n4\n command_delay = 300\n</SSH>\n",
    );
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reloaded:", Duration::from_secs(5));
    // Another knocker, and the first one again: both into the new set.
    let other = IpAddr::V4("10.199.0.3".parse().unwrap());
    knock2(other);
    knock2(c4);
    let (t_other, _) = wait_element(&pair, &d, "n4", other);
    let (t_again, _) = wait_element(&pair, &d, "n4", c4);
    assert_eq!(
        (t_other, t_again),
        (Duration::from_secs(300), Duration::from_secs(300))
    );
    assert_eq!(element(&pair, "k4", other), None);
    // The old element stays until its own timeout, untouched by the knock.
    let (t_old, left) = element(&pair, "k4", c4).expect("old element gone at reload");
    assert_eq!(t_old, Duration::from_secs(600));
    assert!(left < Duration::from_secs(600), "refreshed: {left:?}");
    // Shutdown removes all three: the old door from the old set.
    d.proc.signal(libc::SIGTERM);
    assert!(d.proc.wait_timeout(Duration::from_secs(10)).is_some());
    for (set, addr) in [("k4", c4), ("n4", c4), ("n4", other)] {
        assert_eq!(element(&pair, set, addr), None, "{set} still holds {addr}");
    }
}

/// CapEff of process `pid`'s main thread.
fn cap_eff(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn cap_net_admin_is_effective_only_while_kernel_doors_are_configured() {
    const NET_ADMIN: u64 = 1 << 12;
    const NET_RAW: u64 = 1 << 13;
    let pair = setup();
    let dir = TempDir::new("kd7");
    let plain = format!(
        "<SSH>\n sequence = udp:7000 tcp:7001:fs\n timeout = 5\n start_command = echo %IP% >> {}\n</SSH>\n",
        dir.join("ran").display()
    );
    write_config(&dir, &plain);
    let d = start_daemon(&pair, &dir, &[]);
    assert_eq!(cap_eff(d.proc.pid()), NET_RAW);
    config(&dir, 30, "");
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reloaded:", Duration::from_secs(5));
    assert!(d.log_text().contains("CAP_NET_ADMIN effective again"));
    assert_eq!(cap_eff(d.proc.pid()), NET_RAW | NET_ADMIN);
    knock_as(&pair, v4(&pair));
    wait_element(&pair, &d, "k4", v4(&pair).0);
    // Back to commands only, while that door is open: kept until it closes
    // (shutdown removes it).
    write_config(&dir, &plain);
    d.proc.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(5), || {
        (d.log_text().matches("reloaded:").count() == 2).then_some(())
    })
    .expect("second reload");
    assert!(d.log_text().contains("1 still open from before"));
    assert_eq!(cap_eff(d.proc.pid()), NET_RAW | NET_ADMIN);
    drop(d);

    // Started with kernel doors: said so, and effective from the start.
    let dir = TempDir::new("kd7b");
    config(&dir, 30, "");
    let d = start_daemon(&pair, &dir, &[]);
    assert!(d
        .log_text()
        .contains("the daemon keeps CAP_NET_ADMIN effective to write them"));
    assert_eq!(cap_eff(d.proc.pid()), NET_RAW | NET_ADMIN);
    // -k none without kernel doors gives it up for good: a reload asking
    // for them is refused with the reason.
    drop(d);
    let dir = TempDir::new("kd7c");
    write_config(&dir, &plain);
    let d = start_daemon(&pair, &dir, &["-k", "none"]);
    config(&dir, 30, "");
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reload failed", Duration::from_secs(5));
    assert!(
        d.log_text().contains("restart it to use them"),
        "{}",
        d.log_tail(5)
    );
    assert_eq!(cap_eff(d.proc.pid()), NET_RAW);
}

#[test]
fn a_set_deleted_under_the_daemon_is_logged_with_its_name_and_counted() {
    let pair = setup();
    let dir = TempDir::new("kd8");
    pair.server
        .must("nft add set inet tpk d4 '{ type ipv4_addr; flags timeout; }'");
    write_config(
        &dir,
        "<SSH>\n sequence = udp:7000 tcp:7001:fs\n timeout = 5\n \
         nft_set = inet tpk d4\n command_delay = 30\n</SSH>\n",
    );
    let d = start_daemon(&pair, &dir, &[]);
    pair.server.must("nft delete set inet tpk d4");
    knock_from(
        &pair,
        v4(&pair).0,
        v4(&pair).1,
        &[(UDP, 7000, 0), (TCP, 7001, 0x03)],
    );
    d.expect_log(
        "10.199.0.2 SSH: kernel door not opened: nftables set 'inet tpk d4': \
         no such table, set or element",
        Duration::from_secs(3),
    );
    let st = d.stats();
    assert_eq!(st["netlink_errors"], 1, "{st:?}");
    // Nothing was added: no door to close, nothing left in the journal.
    assert_eq!(st["kernel_doors"], 0, "{st:?}");
    let empty = wait_for(Duration::from_secs(2), || {
        journal_pending(&dir).is_empty().then_some(())
    });
    assert!(empty.is_some(), "{:?}", journal_pending(&dir));
}

/// Lines of knock.conf(5) from the first that starts with `first` through
/// the first after it that equals `last`, roff escapes undone.
fn manual(first: &str, last: &str) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/knock.conf.5"))
        .unwrap()
        .replace("\\-", "-");
    let lines: Vec<&str> = page.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("knock.conf.5 has no line starting {first:?}"));
    let end = start
        + lines[start..]
            .iter()
            .position(|l| *l == last)
            .unwrap_or_else(|| panic!("knock.conf.5: no {last:?} after {first:?}"));
    lines[start..=end].join("\n") + "\n"
}

/// The recipe's event with a 2 s delay; knocks it from both families,
/// checks port 22 answers each knocker, and that it shuts again.
fn recipe_opens_and_closes(pair: &Pair, dir: &TempDir, event: &str) {
    let recipe = manual(&format!("<{event}>"), &format!("</{event}>"));
    assert!(recipe.contains("command_delay = 30"), "{recipe}");
    write_config(
        dir,
        &recipe.replace("command_delay = 30", "command_delay = 2"),
    );
    let d = start_daemon(pair, dir, &[]);
    // The sequence as printed: udp:A tcp:B:fu tcp:C:s.
    let seq = recipe
        .lines()
        .find_map(|l| l.trim().strip_prefix("sequence"))
        .unwrap()
        .trim_start_matches([' ', '='])
        .to_string();
    let hits: Vec<Hit> = seq
        .split_whitespace()
        .map(|step| {
            let parts: Vec<&str> = step.split(':').collect();
            let port = parts[1].parse().unwrap();
            match (parts[0], parts.get(2)) {
                ("udp", _) => (UDP, port, 0),
                ("tcp", Some(&"fu")) => (TCP, port, 0x21),
                ("tcp", Some(&"s")) => (TCP, port, 0x02),
                other => panic!("the recipe's sequence changed: update this test ({other:?})"),
            }
        })
        .collect();
    for (ends, name) in [(v4(pair), "IPv4"), (v6(pair), "IPv6")] {
        assert!(
            !can_connect(pair, ends, NFT_PORT),
            "{name}: open before the knock"
        );
        knock_from(pair, ends.0, ends.1, &hits);
        let opened = wait_for(Duration::from_secs(3), || {
            can_connect(pair, ends, NFT_PORT).then_some(())
        });
        assert!(
            opened.is_some(),
            "{name}: shut after the knock; log:\n{}",
            d.log_tail(20)
        );
    }
    let closed = wait_for(Duration::from_secs(5), || {
        (!can_connect(pair, v4(pair), NFT_PORT) && !can_connect(pair, v6(pair), NFT_PORT))
            .then_some(())
    });
    assert!(
        closed.is_some(),
        "still open after command_delay; log:\n{}",
        d.log_tail(20)
    );
}

/// knock.conf(5)'s two kernel door recipes as printed: its nftables rule
/// set and its ipset + iptables commands, each with its event.
#[test]
fn the_manual_kernel_door_recipes_work_as_printed() {
    require_tools();
    // nftables: the rule set as printed (its policy drops the rest).
    let pair = Pair::new();
    let dir = TempDir::new("kd9");
    let rules = manual("table inet filter {", "}");
    assert!(rules.contains("set knocked6"), "{rules}");
    pair.server.must(&format!("nft -f - <<'EOF'\n{rules}EOF"));
    let listener = pair
        .server
        .run(|| std::net::TcpListener::bind(("::", NFT_PORT)).unwrap());
    std::thread::spawn(move || listener.incoming().for_each(drop));
    recipe_opens_and_closes(&pair, &dir, "SSH_KERNEL");
    drop(pair);

    // ipset and iptables: the commands as printed, then a drop for the
    // rest (the policy the recipe assumes).
    let pair = Pair::new();
    let dir = TempDir::new("kd9b");
    let commands = manual(
        "ipset create knocked4",
        "ip6tables -I INPUT -p tcp --dport 22 -m set --match-set knocked6 src -j ACCEPT",
    );
    assert_eq!(commands.lines().count(), 4, "{commands}");
    for line in commands.lines() {
        pair.server.must(line);
    }
    pair.server.must(
        "iptables -A INPUT -p tcp --dport 22 -j DROP && ip6tables -A INPUT -p tcp --dport 22 -j DROP",
    );
    let listener = pair
        .server
        .run(|| std::net::TcpListener::bind(("::", NFT_PORT)).unwrap());
    std::thread::spawn(move || listener.incoming().for_each(drop));
    recipe_opens_and_closes(&pair, &dir, "SSH_IPSET");
}

/// A door left open by a run with kernel doors is still removed at the
/// SIGTERM of a restart whose configuration names no set any more.
#[test]
fn kernel_doors_left_in_the_journal_are_removed_by_a_restart_without_sets() {
    let pair = setup();
    let dir = TempDir::new("kd10");
    config(&dir, 600, "");
    let d = start_daemon(&pair, &dir, &[]);
    knock_as(&pair, v4(&pair));
    let c4 = v4(&pair).0;
    wait_element(&pair, &d, "k4", c4);
    wait_for(Duration::from_secs(2), || {
        (journal_pending(&dir).len() == 1).then_some(())
    })
    .expect("not journaled");
    drop(d); // SIGKILL
    write_config(
        &dir,
        "<SSH>\n sequence = udp:7000 tcp:7001:fs\n timeout = 5\n start_command = true\n</SSH>\n",
    );
    let mut d = start_daemon(&pair, &dir, &[]);
    assert!(
        d.log_text().contains("1 still open from before"),
        "{}",
        d.log_tail(10)
    );
    assert_eq!(
        element(&pair, "k4", c4).map(|e| e.0),
        Some(Duration::from_secs(600))
    );
    d.proc.signal(libc::SIGTERM);
    assert!(d.proc.wait_timeout(Duration::from_secs(10)).is_some());
    for set in ["k4", "ik4"] {
        assert_eq!(
            element(&pair, set, c4),
            None,
            "{set}; log:\n{}",
            d.log_tail(10)
        );
    }
    assert!(journal_pending(&dir).is_empty());
}
