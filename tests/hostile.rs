//! Hostile input and faults, end to end (issue 8): floods of malformed and
//! spoofed frames, commands that hang, fail or leave children behind, a
//! journal that cannot be written, capabilities, and log lines that carry
//! attacker-chosen bytes. Every test runs the real daemon in network
//! namespaces it creates.

mod common;
use common::daemon::*;
use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const SEQ: &[Hit] = &[(TCP, 7000, 0x02), (UDP, 7001, 0), (TCP, 7002, 0x29)];

/// OPEN is the real knock; WIDE only makes tcp/8192 a knock port, so that
/// frames with IHL 1 (port read from the fragment field) pass the filter.
fn config(dir: &TempDir) -> String {
    format!(
        "<OPEN>\n sequence = tcp:7000:s udp:7001 tcp:7002:fpu\n timeout = 5\n \
         start_command = echo %IP% >> {}\n</OPEN>\n\
         <WIDE>\n sequence = tcp:8192:s tcp:8193:s\n timeout = 5\n start_command = true\n</WIDE>\n",
        dir.join("opened").display()
    )
}

/// A daemon without `-d`: under a flood, a debug line per frame would
/// measure the log file, not the daemon.
fn quiet_daemon(pair: &Pair, dir: &TempDir, extra: &[&str]) -> Daemon {
    start_daemon_opts(&pair.server, Some(&pair.server_if), dir, extra, false)
}

fn opened(dir: &TempDir, n: usize, limit: Duration) -> Vec<String> {
    wait_lines(&dir.join("opened"), n, limit)
}

/// The `key=value` pairs of a stats line.
#[derive(Debug)]
struct Stats(HashMap<String, String>);

impl Stats {
    #[track_caller]
    fn n(&self, key: &str) -> u64 {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number {key} in {self:?}"))
    }
}

/// Asks for a stats line (SIGUSR1) and returns it.
fn stats(d: &Daemon) -> Stats {
    let line = d.stats_line();
    Stats(
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// `VmRSS`/`VmHWM`… of a process, in KiB.
fn status_kb(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------
// Malformed frames

/// An IPv4 header (20 bytes, no checksum: neither the filter nor the
/// decoder reads it) with the given first byte and total length.
fn ipv4_header(vihl: u8, total: u16, proto: u8, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = vihl;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h
}

/// Every malformed shape the issue names, each with whether it reaches
/// user space: the kernel filter passes a frame only when it can read a
/// knock port where it expects the destination port, follows IPv6
/// extension headers as deep as the decoder (8) and no deeper, and drops
/// stacked VLAN tags (issue 15). (The filter's rules are restated here, not taken
/// from the crate, so a filter that passes or drops differently shows up
/// as a count mismatch.)
fn malformed_frames(pair: &Pair) -> Vec<(Vec<u8>, bool)> {
    let (smac, cmac) = (pair.server_mac(), pair.client_mac());
    let (c4, s4) = (pair.client4, pair.server4);
    let eth = |vlans: &[(u16, u16)], ethertype: u16, payload: &[u8]| {
        frame::ether(smac, cmac, vlans, ethertype, payload)
    };
    let mut out = Vec::new();
    // Every truncation of a TCP, a UDP and an IPv6 TCP knock frame, down to
    // the 14 bytes the kernel insists on. Past the destination port, the
    // filter passes them and the decoder finds the L4 header cut.
    let tcp4 = eth(
        &[],
        frame::ETH_IPV4,
        &frame::ipv4(c4, s4, TCP, frame::tcp(40000, 7000, 0x02)),
    );
    let udp4 = eth(
        &[],
        frame::ETH_IPV4,
        &frame::ipv4(c4, s4, UDP, frame::udp(40000, 7001, b"")),
    );
    let tcp6 = eth(
        &[],
        frame::ETH_IPV6,
        &frame::ipv6(
            pair.client6,
            pair.server6,
            TCP,
            frame::tcp(40000, 7000, 0x02),
            &[],
        ),
    );
    for (whole, port_end, l4_end) in [(&tcp4, 38, 54), (&udp4, 38, 42), (&tcp6, 58, 74)] {
        for len in 14..l4_end {
            out.push((whole[..len].to_vec(), len >= port_end));
        }
    }
    // IPv4 total length too small for the headers the frame holds.
    for total in 0..40u16 {
        let mut f = tcp4.clone();
        f[16..18].copy_from_slice(&total.to_be_bytes());
        out.push((f, true));
    }
    // IHL below 5: the filter reads the "port" at 4 * IHL + 2 of the IP
    // header; place a knock port there. IHL 1 reads the fragment field,
    // where only a port with the low 13 bits clear passes (8192: MF set).
    for ihl in 0u8..5 {
        let mut ip = ipv4_header(0x40 | ihl, 40, TCP, c4, s4);
        ip.extend_from_slice(&frame::tcp(40000, 7000, 0x02));
        let at = 4 * usize::from(ihl) + 2;
        let port: u16 = if ihl == 1 { 8192 } else { 7000 };
        ip[at..at + 2].copy_from_slice(&port.to_be_bytes());
        out.push((eth(&[], frame::ETH_IPV4, &ip), true));
    }
    // IPv6 extension header chains: 9 to 16 headers (one more than the
    // decoder walks), as a run of hop-by-hop/destination options pointing at
    // each other; one whose second header claims 2 KiB; one whose payload
    // length is 0. The filter walks as deep as the decoder: the long chains
    // and the one running past the packet stay in the kernel.
    let hdr = |next: u8, len8: u8| {
        let mut h = vec![0u8; 8 * (usize::from(len8) + 1)];
        h[0] = next;
        h[1] = len8;
        h[2] = 1; // PadN
        h[3] = (h.len() - 4) as u8;
        h
    };
    for n in 9..=16usize {
        for kind in [0u8, 60] {
            let mut body = Vec::new();
            for i in 0..n {
                body.extend(hdr(if i + 1 == n { TCP } else { kind }, 0));
            }
            body.extend(frame::tcp(40000, 7000, 0x02));
            let mut ip = frame::ipv6(pair.client6, pair.server6, TCP, vec![0; 20], &[]);
            ip.truncate(40);
            ip[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
            ip[6] = kind;
            ip.extend(body);
            out.push((eth(&[], frame::ETH_IPV6, &ip), false));
        }
    }
    {
        let mut body = hdr(60, 0);
        let mut second = hdr(TCP, 0);
        second[1] = 255; // 2 KiB, far past the packet
        body.extend(second);
        body.extend(frame::tcp(40000, 7000, 0x02));
        let mut ip = frame::ipv6(pair.client6, pair.server6, TCP, vec![0; 20], &[]);
        ip.truncate(40);
        ip[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
        ip[6] = 0;
        ip.extend(body);
        out.push((eth(&[], frame::ETH_IPV6, &ip), false));
        let mut f = tcp6.clone();
        f[18..20].copy_from_slice(&0u16.to_be_bytes());
        out.push((f, true));
    }
    // VLAN stacks: the kernel takes the outer tag into metadata, and one
    // left in the bytes never knocks: two to ten tags stay in the kernel.
    let cut = &frame::ipv4(c4, s4, TCP, frame::tcp(40000, 7000, 0x02))[..30];
    for tags in 2..=10usize {
        let vlans: Vec<(u16, u16)> = (0..tags)
            .map(|i| (if i == 0 { 0x88a8 } else { 0x8100 }, i as u16 + 1))
            .collect();
        out.push((eth(&vlans, frame::ETH_IPV4, cut), false));
    }
    out
}

const MALFORMED_TOTAL: usize = 1_000_000;
/// Half the frames reach the decoder. A debug build keeps up with this rate
/// (no ring drops seen on a busy two-core machine); should the ring
/// overflow, the kernel counts the drops and the test accounts for them.
const MALFORMED_RATE: u64 = 120_000;

#[test]
fn a_million_malformed_frames_are_counted_and_a_knock_still_opens() {
    let pair = Pair::new();
    let dir = TempDir::new("h1");
    write_config(&dir, &config(&dir));
    let d = quiet_daemon(&pair, &dir, &[]);
    let kinds = malformed_frames(&pair);
    let per_cycle = kinds.iter().filter(|k| k.1).count();
    let expected = MALFORMED_TOTAL / kinds.len() * per_cycle
        + kinds[..MALFORMED_TOTAL % kinds.len()]
            .iter()
            .filter(|k| k.1)
            .count();
    let frames: Vec<Vec<u8>> = kinds.into_iter().map(|k| k.0).collect();
    let ifname = pair.client_if.clone();
    let t = Instant::now();
    let sent = pair
        .client
        .run(move || send_raw_many(&ifname, &frames, MALFORMED_TOTAL, Some(MALFORMED_RATE)))
        .expect("send");
    let took = t.elapsed();
    assert_eq!(sent, MALFORMED_TOTAL);
    eprintln!(
        "{sent} malformed frames in {took:?} ({:.0}/s), {expected} expected to reach the decoder",
        sent as f64 / took.as_secs_f64()
    );
    // Wait for the daemon to work through its ring.
    let mut s = stats(&d);
    let until = Instant::now() + Duration::from_secs(30);
    while s.n("malformed") + s.n("drops") < expected as u64 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        s = stats(&d);
    }
    assert!(
        alive(d.proc.pid()),
        "the daemon died; log:\n{}",
        d.log_tail(40)
    );
    eprintln!("stats: {s:?}");
    // Every frame that reached the decoder was counted malformed (or, if
    // the ring overflowed, as a kernel drop), none as anything else.
    assert_eq!(
        s.n("malformed") + s.n("drops"),
        expected as u64,
        "stats {s:?}; log:\n{}",
        d.log_tail(40)
    );
    assert!(s.n("malformed") >= expected as u64 / 2, "{s:?}");
    // Nothing that reached the daemon was anything but malformed.
    assert_eq!(s.n("frames"), s.n("malformed"), "{s:?}");
    assert_eq!(
        (s.0["OPEN"].as_str(), s.0["WIDE"].as_str()),
        ("0/0", "0/0"),
        "{s:?}"
    );
    assert_eq!(s.n("sources"), 0, "{s:?}");
    knock(&pair, SEQ);
    assert_eq!(
        opened(&dir, 1, Duration::from_secs(5)),
        vec![pair.client4.to_string()],
        "log:\n{}",
        d.log_tail(40)
    );
}

// ---------------------------------------------------------------------------
// Spoofed flood

const FLOOD_SOURCES: u32 = 1_000_000;
const FLOOD_RATE: u64 = 100_000;
/// Resident memory the daemon may reach, whatever the flood: the matcher's
/// full default table (65,536 sources × 56 B = 3.5 MiB), the 2 MiB ring, the
/// port bitmaps and the binary itself stay under issue 7's goal of 16 MB.
const RSS_BOUND_KB: u64 = 16 * 1000;

/// First knocks (tcp/7000 SYN) from `count` distinct spoofed sources in
/// 100.64.0.0/10, starting at offset `from`.
fn spoofed_first_knocks(pair: &Pair, from: u32, count: u32) -> Vec<Vec<u8>> {
    let template = knock_frame(
        pair,
        IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)),
        IpAddr::V4(pair.server4),
        (TCP, 7000, 0x02),
    );
    (from..from + count)
        .map(|n| {
            let mut f = template.clone();
            let src = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n;
            // The IP header checksum is made right (the daemon refuses a
            // wrong one, as the host does); the TCP checksum stays stale,
            // so the server's own stack drops these instead of answering a
            // million spoofed sources.
            f[26..30].copy_from_slice(&src.to_be_bytes());
            fix_ipv4_checksum(&mut f[14..34]);
            f
        })
        .collect()
}

/// Recomputes the checksum of a 20-byte IPv4 header in place.
fn fix_ipv4_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[test]
fn a_million_source_spoofed_flood_stays_in_bounded_memory_and_a_real_knock_opens() {
    let pair = Pair::new();
    let dir = TempDir::new("h2");
    write_config(&dir, &config(&dir));
    let d = quiet_daemon(&pair, &dir, &[]);
    let pid = d.proc.pid();
    let rss_before = status_kb(pid, "VmRSS");
    let ifname = pair.client_if.clone();
    let chunk = 100_000;
    let chunks: Vec<Vec<Vec<u8>>> = (0..FLOOD_SOURCES / chunk)
        .map(|i| spoofed_first_knocks(&pair, i * chunk, chunk))
        .collect();
    let t = Instant::now();
    let flood = {
        let path = format!("/run/netns/{}", pair.client.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: a network namespace fd; moves only this new thread.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let mut sent = 0;
            for frames in &chunks {
                sent += send_raw_many(&ifname, frames, frames.len(), Some(FLOOD_RATE)).unwrap();
            }
            sent
        })
    };
    // The real knock, in the middle of the flood.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !flood.is_finished(),
        "the flood ended before the real knock"
    );
    knock(&pair, SEQ);
    let during = opened(&dir, 1, Duration::from_secs(5));
    let still_flooding = !flood.is_finished();
    let sent = flood.join().unwrap();
    let took = t.elapsed();
    assert_eq!(sent, FLOOD_SOURCES as usize);
    assert_eq!(
        during,
        vec![pair.client4.to_string()],
        "log:\n{}",
        d.log_tail(40)
    );
    assert!(still_flooding, "the door opened only after the flood");
    let s = stats(&d);
    let (rss, hwm) = (status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"));
    eprintln!(
        "{sent} spoofed first knocks in {took:?}; RSS {rss_before} kB before, {rss} kB after, peak {hwm} kB; {s:?}"
    );
    assert!(alive(pid));
    assert_eq!(s.0["OPEN"].split('/').nth(1), Some("1"), "{s:?}");
    // Most of the flood reached the matcher: the bound below was tested.
    assert!(s.n("frames") >= u64::from(FLOOD_SOURCES) / 2, "{s:?}");
    assert!(s.n("sources") <= 65_536, "{s:?}");
    // The flood was admitted (right IP checksum, unicast sources): it was
    // the matcher's table that bounded it, not a refusal.
    assert_eq!(
        s.n("bad_checksum") + s.n("src_own") + s.n("vlan"),
        0,
        "{s:?}"
    );
    assert!(
        hwm <= RSS_BOUND_KB,
        "peak RSS {hwm} kB over the {RSS_BOUND_KB} kB bound"
    );
}

// ---------------------------------------------------------------------------
// Commands that misbehave

/// Kills, on drop, the processes whose pids the test's commands wrote down
/// (a command's lingering child is nobody else's to clean up).
struct PidFiles(Vec<std::path::PathBuf>);

impl Drop for PidFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Some(pid) = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                // SAFETY: signalling a pid our own test command recorded.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn read_pid(path: &std::path::Path) -> i32 {
    wait_for(Duration::from_secs(3), || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .unwrap_or_else(|| panic!("{} was never written", path.display()))
}

#[test]
fn hung_failing_and_forking_commands_leave_capture_alone() {
    let pair = Pair::new();
    let dir = TempDir::new("h3");
    let (hang, child) = (dir.join("hang.pid"), dir.join("child.pid"));
    let _guard = PidFiles(vec![hang.clone(), child.clone()]);
    write_config(
        &dir,
        &format!(
            "<HANG>\n sequence = tcp:7100:s\n timeout = 5\n \
             start_command = echo $$ > {hang}; sleep 600\n</HANG>\n\
             <FAIL>\n sequence = tcp:7200:s\n timeout = 5\n \
             start_command = echo went wrong >&2; exit 3\n</FAIL>\n\
             <FORK>\n sequence = tcp:7300:s\n timeout = 5\n \
             start_command = sleep 600 & echo $! > {child}; echo forked\n</FORK>\n{}",
            config(&dir),
            hang = hang.display(),
            child = child.display(),
        ),
    );
    let d = start_daemon(&pair, &dir, &["-t", "2"]);
    let started = Instant::now();
    knock(
        &pair,
        &[(TCP, 7100, 0x02), (TCP, 7200, 0x02), (TCP, 7300, 0x02)],
    );
    let hang_pid = read_pid(&hang);
    let child_pid = read_pid(&child);
    // The hung command runs; a knock still opens at once.
    let t = Instant::now();
    knock(&pair, SEQ);
    assert_eq!(
        opened(&dir, 1, Duration::from_secs(2)),
        vec![pair.client4.to_string()],
        "log:\n{}",
        d.log_tail(40)
    );
    eprintln!(
        "door opened {:?} after the knock while a command hung",
        t.elapsed()
    );
    assert!(alive(hang_pid), "the hung command ended too early");
    let who = pair.client4;
    d.expect_log(
        &format!("command {who} FAIL start: | went wrong"),
        Duration::from_secs(2),
    );
    d.expect_log(
        &format!("command {who} FAIL start: failed: exit status 3"),
        Duration::from_secs(2),
    );
    // The forking command is done when its own shell exits; its child lives
    // on without holding anything up.
    d.expect_log(
        &format!("command {who} FORK start: | forked"),
        Duration::from_secs(2),
    );
    d.expect_log(
        &format!("command {who} FORK start: exited 0"),
        Duration::from_secs(2),
    );
    assert!(alive(child_pid), "the forked child is not ours to kill");
    // The hung one is terminated at the 2 s limit, with its process group.
    d.expect_log(
        &format!("command {who} HANG start: failed: time limit reached"),
        Duration::from_secs(4),
    );
    let ended = started.elapsed();
    assert!(
        ended >= Duration::from_secs(2) && ended < Duration::from_secs(5),
        "terminated after {ended:?}"
    );
    assert!(
        wait_for(Duration::from_secs(3), || (!alive(hang_pid)).then_some(())).is_some(),
        "the hung command's shell survived"
    );
    // Capture still runs after all of it.
    let other = Ipv4Addr::new(10, 199, 0, 66);
    knock_from(&pair, IpAddr::V4(other), IpAddr::V4(pair.server4), SEQ);
    assert_eq!(
        opened(&dir, 2, Duration::from_secs(2)).get(1),
        Some(&other.to_string()),
        "log:\n{}",
        d.log_tail(40)
    );
    let s = stats(&d);
    assert_eq!(s.n("failed"), 2, "{s:?}");
    assert!(alive(d.proc.pid()));
}

// ---------------------------------------------------------------------------
// The journal cannot be written

/// A tmpfs mounted for the test, lazily unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, opts: &str) -> Tmpfs {
        std::fs::create_dir_all(&path).unwrap();
        must(&format!(
            "mount -t tmpfs -o {opts} tpk-test {}",
            path.display()
        ));
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -l {}", self.0.display()));
    }
}

fn door_config(dir: &TempDir) -> String {
    format!(
        "<OPEN>\n sequence = tcp:7000:s udp:7001 tcp:7002:fpu\n timeout = 5\n \
         start_command = echo start %IP% >> {out}\n stop_command = echo stop %IP% >> {out}\n \
         command_delay = 2\n</OPEN>\n",
        out = dir.join("doors").display()
    )
}

/// Knocks and checks the door opens at once and closes 2 s later.
fn door_closes_on_time(pair: &Pair, dir: &TempDir, d: &Daemon) {
    let t = Instant::now();
    knock(pair, SEQ);
    let out = dir.join("doors");
    let l = wait_lines(&out, 1, Duration::from_secs(3));
    assert_eq!(
        l,
        vec![format!("start {}", pair.client4)],
        "log:\n{}",
        d.log_tail(30)
    );
    let l = wait_lines(&out, 2, Duration::from_secs(5));
    let closed = t.elapsed();
    assert_eq!(
        l.get(1),
        Some(&format!("stop {}", pair.client4)),
        "log:\n{}",
        d.log_tail(30)
    );
    assert!(
        closed >= Duration::from_millis(2000) && closed < Duration::from_millis(2800),
        "closed after {closed:?}, wanted 2 s"
    );
}

#[test]
fn unwritable_journal_directory_is_logged_and_doors_close_on_time() {
    let pair = Pair::new();
    let dir = TempDir::new("h4");
    write_config(&dir, &door_config(&dir));
    // Read-only whatever the daemon's capabilities (and 0700: a directory
    // others can write is refused outright, see tests/doors.rs).
    let _state = Tmpfs::mount(dir.join("state"), "ro,size=64k,mode=0700");
    let d = start_daemon(&pair, &dir, &[]);
    d.expect_log("journal: cannot open", Duration::from_secs(1));
    assert!(
        d.log_text().contains("Read-only file system"),
        "{}",
        d.log_tail(10)
    );
    door_closes_on_time(&pair, &dir, &d);
    assert!(alive(d.proc.pid()));
}

#[test]
fn full_disk_under_the_journal_is_logged_and_doors_close_on_time() {
    let pair = Pair::new();
    let dir = TempDir::new("h5");
    write_config(&dir, &door_config(&dir));
    let state = Tmpfs::mount(dir.join("state"), "size=64k,mode=0700");
    let d = start_daemon(&pair, &dir, &[]);
    assert!(
        state.0.join("doors.journal").exists(),
        "journal not created"
    );
    // Fill the file system to the last block.
    let _ = sh(&format!(
        "dd if=/dev/zero of={} bs=4k 2>/dev/null",
        state.0.join("fill").display()
    ));
    let df = must(&format!("df -k --output=avail {}", state.0.display()));
    assert_eq!(df.lines().nth(1).map(str::trim), Some("0"), "{df}");
    door_closes_on_time(&pair, &dir, &d);
    d.expect_log("cannot record stop for OPEN", Duration::from_secs(1));
    assert!(
        d.log_text().contains("No space left on device"),
        "{}",
        d.log_tail(10)
    );
    // With room again, the next door is journaled as before.
    std::fs::remove_file(state.0.join("fill")).unwrap();
    knock(&pair, SEQ);
    wait_lines(&dir.join("doors"), 3, Duration::from_secs(3));
    let journal = std::fs::read_to_string(state.0.join("doors.journal")).unwrap();
    assert!(journal.contains("add "), "{journal}");
}

// ---------------------------------------------------------------------------
// Capabilities

const NET_ADMIN: u64 = 1 << 12;
const NET_RAW: u64 = 1 << 13;

/// The `Cap*:` lines of a /proc status text, as numbers.
fn caps(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(":\t")?;
            k.starts_with("Cap")
                .then(|| (k.to_owned(), u64::from_str_radix(v.trim(), 16).ok()))
        })
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
}

fn caps_config(dir: &TempDir) -> String {
    format!(
        "<CAPS>\n sequence = tcp:7000:s udp:7001 tcp:7002:fpu\n timeout = 5\n \
         start_command = grep Cap /proc/self/status > {out}; \
         iptables -w -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT && echo iptables ok >> {out}; \
         nft add table inet tpkcaps && echo nft ok >> {out}; echo done >> {out}\n</CAPS>\n",
        out = dir.join("child").display()
    )
}

/// Knocks and returns what the command wrote about itself.
fn child_report(pair: &Pair, dir: &TempDir, d: &Daemon) -> String {
    knock(pair, SEQ);
    wait_for(Duration::from_secs(5), || {
        let t = std::fs::read_to_string(dir.join("child")).ok()?;
        t.contains("done").then_some(t)
    })
    .unwrap_or_else(|| panic!("the command did not finish; log:\n{}", d.log_tail(30)))
}

#[test]
fn the_daemon_drops_capabilities_and_commands_keep_only_k() {
    let pair = Pair::new();
    let dir = TempDir::new("h6");
    write_config(&dir, &caps_config(&dir));
    let d = start_daemon(&pair, &dir, &[]);
    // Every thread of the daemon, runner workers included.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", d.proc.pid())).unwrap();
    let mut n = 0;
    for task in tasks {
        let c = caps(&std::fs::read_to_string(task.unwrap().path().join("status")).unwrap());
        assert_eq!(c["CapEff"], NET_RAW, "{c:x?}");
        // Commands' capabilities stay permitted, for no_new_privs children.
        assert_eq!(c["CapPrm"], NET_ADMIN | NET_RAW, "{c:x?}");
        assert_eq!(c["CapInh"], 0, "{c:x?}");
        assert_eq!(c["CapAmb"], 0, "{c:x?}");
        assert_eq!(c["CapBnd"], NET_ADMIN | NET_RAW, "{c:x?}");
        n += 1;
    }
    assert!(n > 1, "expected the runner's threads too");
    let report = child_report(&pair, &dir, &d);
    let c = caps(&report);
    assert_eq!(c["CapEff"], NET_ADMIN | NET_RAW, "{report}");
    assert_eq!(c["CapBnd"], NET_ADMIN | NET_RAW, "{report}");
    assert!(
        report.contains("iptables ok"),
        "{report}\nlog:\n{}",
        d.log_tail(20)
    );
    assert!(
        report.contains("nft ok"),
        "{report}\nlog:\n{}",
        d.log_tail(20)
    );
    let rules = pair.server.must("iptables -S INPUT");
    assert!(
        rules.contains(&format!("-A INPUT -s {}/32", pair.client4)),
        "{rules}"
    );
    // Without CAP_SYS_ADMIN or CAP_DAC_OVERRIDE the daemon still reloads
    // its root-owned config and survives.
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reloaded:", Duration::from_secs(2));
}

#[test]
fn k_none_leaves_commands_powerless_and_k_all_keeps_everything() {
    let pair = Pair::new();
    let dir = TempDir::new("h7");
    write_config(&dir, &caps_config(&dir));
    let d = start_daemon(&pair, &dir, &["-k", "none"]);
    let report = child_report(&pair, &dir, &d);
    let c = caps(&report);
    assert_eq!((c["CapEff"], c["CapBnd"]), (0, 0), "{report}");
    assert!(
        !report.contains("iptables ok") && !report.contains("nft ok"),
        "{report}"
    );
    drop(d);
    std::fs::remove_file(dir.join("child")).unwrap();
    let ours = caps(&std::fs::read_to_string("/proc/self/status").unwrap());
    let d = start_daemon(&pair, &dir, &["-k", "all"]);
    let daemon = caps(&std::fs::read_to_string(format!("/proc/{}/status", d.proc.pid())).unwrap());
    assert_eq!(daemon["CapEff"], ours["CapEff"], "{daemon:x?}");
    let report = child_report(&pair, &dir, &d);
    let c = caps(&report);
    assert_eq!(c["CapBnd"], ours["CapBnd"], "{report}");
    assert!(report.contains("iptables ok"), "{report}");
}

// ---------------------------------------------------------------------------
// Log lines

/// Frame bytes, command output and config text all reach the log; none may
/// put a raw control byte, a line break or an invisible format character in
/// it, or forge a line of its own.
#[test]
fn log_lines_never_carry_raw_bytes() {
    let pair = Pair::new();
    let dir = TempDir::new("h8");
    let noisy = "<NOISY>\n sequence = tcp:7300:s\n timeout = 5\n \
                 start_command = printf '\\033[2J\\ntportknockd: info: FORGED\\r\\342\\200\\250x\\342\\200\\256y\\377\\000z\\n'; exit 1\n</NOISY>\n";
    write_config(&dir, &format!("{}{noisy}", config(&dir)));
    let d = start_daemon(&pair, &dir, &[]);
    // Malformed frames full of escape and newline bytes (debug logs each).
    let mut frames = Vec::new();
    for fill in [0x1bu8, b'\n', b'\r', 0x9b, 0xff] {
        let mut f = knock_frame(
            &pair,
            IpAddr::V4(pair.client4),
            IpAddr::V4(pair.server4),
            (TCP, 7000, 0x02),
        );
        f[16..18].copy_from_slice(&30u16.to_be_bytes()); // total length lies
        for b in &mut f[38..] {
            *b = fill;
        }
        frames.push(f);
    }
    pair.send_frames(frames);
    knock(&pair, &[(TCP, 7300, 0x02)]);
    d.expect_log("NOISY start: failed", Duration::from_secs(3));
    // A broken config with the same bytes, loaded on SIGHUP.
    std::fs::write(
        dir.join("knock.conf"),
        b"<BAD\x1b[31m>\n sequence = tcp:1:\x1b\r\n timeout = \xe2\x80\xae9\n</BAD\x1b[31m>\n",
    )
    .unwrap();
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reload failed", Duration::from_secs(2));
    d.expect_log("malformed frame", Duration::from_secs(1));
    let bytes = std::fs::read(&d.log).unwrap();
    let text = String::from_utf8(bytes).expect("the log is UTF-8");
    for line in text.lines() {
        assert!(
            line.starts_with("tportknockd: "),
            "forged or broken line: {line:?}"
        );
        assert!(
            !line.chars().any(|c| c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')),
            "raw byte in {line:?}"
        );
        assert!(!line.starts_with("tportknockd: info: FORGED"), "{line:?}");
    }
    // The text is there, escaped, not dropped (invalid UTF-8 shows as
    // U+FFFD, a printable character).
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(
        text.contains("FORGED\\r\\u{2028}x\\u{202e}y\u{fffd}\\u{0}z"),
        "{text}"
    );
    assert!(text.contains("malformed frame on ifindex"), "{text}");
}

/// The start-up refusal is tested in tests/cli.rs; a file that becomes
/// writable by others while the daemon runs is refused on reload too, and
/// the old sequences stay in force.
#[test]
fn a_config_made_writable_by_others_is_refused_on_reload() {
    use std::os::unix::fs::PermissionsExt;
    let pair = Pair::new();
    let dir = TempDir::new("h9");
    let path = write_config(&dir, &config(&dir));
    let d = start_daemon(&pair, &dir, &[]);
    let evil = config(&dir).replace("tcp:7000:s udp:7001 tcp:7002:fpu", "udp:9");
    std::fs::write(&path, evil).unwrap();
    for mode in [0o602, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let before = d.log_text().matches("reload failed").count();
        d.proc.signal(libc::SIGHUP);
        wait_for(Duration::from_secs(2), || {
            (d.log_text().matches("reload failed").count() > before).then_some(())
        })
        .unwrap_or_else(|| panic!("mode {mode:o} accepted; log:\n{}", d.log_tail(10)));
    }
    assert!(d.log_text().contains("chmod go-w"), "{}", d.log_tail(10));
    knock(&pair, &[(UDP, 9, 0)]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        read_lines(&dir.join("opened")).is_empty(),
        "the refused file's sequence opened"
    );
    knock(&pair, SEQ);
    assert_eq!(
        opened(&dir, 1, Duration::from_secs(3)),
        vec![pair.client4.to_string()],
        "log:\n{}",
        d.log_tail(20)
    );
}
