//! Doors that cannot be left open or hijacked (issue 14), end to end: the
//! real daemon in network namespaces, real nftables sets, real processes.
//!
//! - a stop never runs before its start (Cmd_Timeout 0, bursts, SIGTERM);
//! - the state directory, journal, temp file and pid file are the daemon's
//!   own or refused, and nothing outside is touched;
//! - one daemon per state directory;
//! - open doors are capped, under a flood of spoofed completions too;
//! - a log reader that never reads stops nothing;
//! - a failing stop is retried, and kept for the next start.

mod common;
use common::daemon::*;
use common::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers

/// `count` spoofed sources in 100.64.0.0/10, from offset `from`.
fn spoofed(from: u32, count: u32) -> Vec<IpAddr> {
    (from..from + count)
        .map(|n| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n)))
        .collect()
}

/// One single-frame knock from each of `srcs` to the server.
fn frames(pair: &Pair, srcs: &[IpAddr], hit: Hit) -> Vec<Vec<u8>> {
    // One frame built by the harness, the others only re-addressed (the
    // harness asks the namespaces for MAC addresses each time). The L4
    // checksum goes stale, so the server's own stack drops the frames
    // instead of answering; the daemon reads them below it.
    let template = knock_frame(pair, srcs[0], IpAddr::V4(pair.server4), hit);
    srcs.iter()
        .map(|&s| {
            let IpAddr::V4(v4) = s else {
                panic!("IPv4 only")
            };
            let mut f = template.clone();
            f[26..30].copy_from_slice(&v4.octets());
            // IPv4 header checksum over the new source.
            f[24..26].copy_from_slice(&[0, 0]);
            let mut sum: u32 = f[14..34]
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f
        })
        .collect()
}

/// Ids of the stops a journal file still holds (`add` not followed by `done`).
fn journal_pending(path: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut live = BTreeSet::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        match (w.next(), w.next().and_then(|id| id.parse::<u64>().ok())) {
            (Some("add"), Some(id)) => {
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

/// Elements of an nftables set in the server namespace.
fn set_elements(pair: &Pair, set: &str) -> usize {
    let out = pair.server.must(&format!("nft -j list set inet tpk {set}"));
    // One `"elem"` list; count its addresses by their quotes' pairs.
    match out.split_once("\"elem\": [") {
        None => 0,
        Some((_, rest)) => {
            let list = rest.split(']').next().unwrap_or("");
            list.matches('"').count() / 2
        }
    }
}

fn nft_set(pair: &Pair, set: &str) {
    pair.server.must(&format!(
        "nft add table inet tpk && nft add set inet tpk {set} '{{ type ipv4_addr; }}'"
    ));
}

/// Runs the daemon to completion (it is expected to refuse to start);
/// returns its exit code and stderr.
fn run_refused(pair: &Pair, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = pair
        .server
        .command(BIN)
        .args(["-i", &pair.server_if])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file outside the state directory that must never change.
struct Precious {
    path: std::path::PathBuf,
    bytes: &'static [u8],
    mode: u32,
}

impl Precious {
    fn new(dir: &TempDir, name: &str, mode: u32) -> Precious {
        let p = Precious {
            path: dir.join(name),
            bytes: b"root:x:0:0:precious\n",
            mode,
        };
        std::fs::write(&p.path, p.bytes).unwrap();
        std::fs::set_permissions(&p.path, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[track_caller]
    fn untouched(&self) {
        assert_eq!(
            std::fs::read(&self.path).unwrap(),
            self.bytes,
            "bytes changed"
        );
        let mode = std::fs::metadata(&self.path).unwrap().mode() & 0o7777;
        assert_eq!(mode, self.mode, "mode changed");
    }
}

// ---------------------------------------------------------------------------
// 1. A stop never runs before its start

/// knockd.conf with Cmd_Timeout 0: each door's stop is due the moment it
/// opens. 200 sources knock in one burst and SIGTERM follows at once; every
/// time, the set must end empty and the journal hold nothing.
#[test]
fn cmd_timeout_0_burst_and_sigterm_leave_the_set_empty_every_time() {
    let pair = Pair::new();
    let dir = TempDir::new("o1");
    nft_set(&pair, "knocked");
    write_config(
        &dir,
        "[burst]\n sequence = 7000:udp\n seq_timeout = 5\n \
         start_command = nft add element inet tpk knocked { %IP% }\n cmd_timeout = 0\n \
         stop_command = nft delete element inet tpk knocked { %IP% }\n",
    );
    let srcs = spoofed(0, 200);
    let burst = frames(&pair, &srcs, (UDP, 7000, 0));
    let mut opened_total = 0;
    let t0 = Instant::now();
    for round in 0..20 {
        let mut d = start_daemon_opts(&pair.server, Some(&pair.server_if), &dir, &[], false);
        pair.send_frames(burst.clone());
        // Right after the knocks: some doors are journaling, some starting,
        // some stopping.
        d.proc.signal(libc::SIGTERM);
        let st = d
            .proc
            .wait_timeout(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("round {round}: no exit; log:\n{}", d.log_tail(30)));
        assert!(st.success(), "round {round}: {st:?}\n{}", d.log_tail(30));
        let left = set_elements(&pair, "knocked");
        assert_eq!(
            left,
            0,
            "round {round}: doors left open\n{}",
            d.log_tail(40)
        );
        let pending = journal_pending(&dir.join("state/doors.journal"));
        assert!(
            pending.is_empty(),
            "round {round}: journal holds {pending:?}"
        );
        opened_total += d.log_text().matches("door opened").count();
    }
    eprintln!(
        "20 rounds of 200 knocks then SIGTERM: {opened_total} doors opened, 0 left open, in {:?}",
        t0.elapsed()
    );
    assert!(
        opened_total > 0,
        "no door ever opened: the test tested nothing"
    );
}

// ---------------------------------------------------------------------------
// 2. The state directory is the daemon's own

fn plain_config(dir: &TempDir) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "<OPEN>\n sequence = udp:7000\n timeout = 5\n start_command = echo start %IP% >> {out}\n \
             stop_command = echo stop %IP% >> {out}\n command_delay = 1\n</OPEN>\n",
            out = dir.join("doors").display()
        ),
    )
}

/// A journal line planted by whoever could write the directory: if it ever
/// ran, `mark` would exist.
fn planted_journal(mark: &Path) -> String {
    let body = format!(
        "add 1 1 1000 4:EVIL 10.0.0.1 {}:touch {}",
        6 + mark.display().to_string().len(),
        mark.display()
    );
    format!(
        "{body} {:08x}\n",
        tportknockd::doors::journal::crc32(body.as_bytes())
    )
}

#[test]
fn hostile_state_directories_and_links_are_refused_and_nothing_outside_is_touched() {
    let pair = Pair::new();
    let dir = TempDir::new("o2");
    let conf = plain_config(&dir);
    let mark = dir.join("planted-ran");
    let precious = Precious::new(&dir, "precious", 0o644);
    let secret = Precious::new(&dir, "secret", 0o640);
    let pid = dir.join("pid");
    let c = |p: &Path| p.as_os_str().to_owned();
    let run = |state: &Path, pidfile: &Path, extra: &[&str]| {
        let mut args = vec![
            c(Path::new("-c")),
            c(&conf),
            "-s".into(),
            c(state),
            "-p".into(),
            c(pidfile),
        ];
        args.extend(extra.iter().map(|a| a.into()));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run_refused(&pair, &refs)
    };

    // World-writable, with a planted journal line, even with -k all.
    let state = dir.join("open-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(state.join("doors.journal"), planted_journal(&mark)).unwrap();
    let (code, err) = run(&state, &pid, &["-k", "all"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("can be written by group or others") && err.contains("chmod 700"),
        "{err}"
    );
    assert!(!mark.exists(), "the planted stop ran");
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o7777, 0o777);
    assert!(!state.join("lock").exists());
    assert!(!pid.exists(), "pid file left after a refused start");

    // Owned by someone else (0700).
    let state = dir.join("foreign-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(state.join("doors.journal"), planted_journal(&mark)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let (code, err) = run(&state, &pid, &["-k", "all"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("owned by uid 65534") && err.contains("chown 0"),
        "{err}"
    );
    assert!(!mark.exists(), "the planted stop ran");

    // The directory itself a symbolic link.
    let real = dir.join("real-state");
    std::fs::create_dir(&real).unwrap();
    let link = dir.join("link-state");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (code, err) = run(&link, &pid, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_dir(&real).unwrap().count(),
        0,
        "wrote through the link"
    );

    // The journal, and its temp file, links to files root cares about.
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::symlink(&precious.path, state.join("doors.journal")).unwrap();
    let (code, err) = run(&state, &pid, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("doors.journal is a symbolic link"), "{err}");
    precious.untouched();
    std::fs::remove_file(state.join("doors.journal")).unwrap();
    std::os::unix::fs::symlink(&secret.path, state.join("doors.journal.tmp")).unwrap();
    let (code, err) = run(&state, &pid, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("doors.journal.tmp is not a regular file"),
        "{err}"
    );
    secret.untouched();
    std::fs::remove_file(state.join("doors.journal.tmp")).unwrap();
    // A hard link is refused too (the directory is root's, so only root
    // could have made one; still no write through it).
    std::fs::hard_link(&precious.path, state.join("doors.journal")).unwrap();
    let (code, err) = run(&state, &pid, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("hard links"), "{err}");
    precious.untouched();
    std::fs::remove_file(state.join("doors.journal")).unwrap();

    // The pid file a link.
    let link_pid = dir.join("pid-link");
    std::os::unix::fs::symlink(&precious.path, &link_pid).unwrap();
    let (code, err) = run(&state, &link_pid, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("symbolic link") && err.contains("pid file"),
        "{err}"
    );
    precious.untouched();

    // A fresh directory is created 0700 and the daemon starts.
    let fresh = dir.join("fresh/state");
    let log = dir.join("fresh.log");
    let mut cmd = pair.server.command(BIN);
    cmd.arg("-c")
        .arg(&conf)
        .args(["-i", &pair.server_if])
        .arg("-s")
        .arg(&fresh)
        .arg("-p")
        .arg(&pid)
        .stderr(std::fs::File::create(&log).unwrap());
    let d = Daemon {
        proc: spawn(cmd),
        log,
    };
    d.expect_log("ready:", Duration::from_secs(10));
    assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o700);
    let lock = std::fs::read_to_string(fresh.join("lock")).unwrap();
    assert_eq!(lock.trim(), d.proc.pid().to_string());
    precious.untouched();
    secret.untouched();
}

// ---------------------------------------------------------------------------
// 3. One daemon per state directory

#[test]
fn a_second_daemon_on_the_same_state_directory_is_refused_with_the_first_ones_pid() {
    let pair = Pair::new();
    let dir = TempDir::new("o3");
    let conf = plain_config(&dir);
    let first = start_daemon_opts(&pair.server, Some(&pair.server_if), &dir, &[], false);
    let pid2 = dir.join("pid2");
    let state = dir.join("state");
    let args: Vec<&std::ffi::OsStr> = vec![
        "-c".as_ref(),
        conf.as_os_str(),
        "-p".as_ref(),
        pid2.as_os_str(),
        "-s".as_ref(),
        state.as_os_str(),
    ];
    let (code, err) = run_refused(&pair, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "in use by another tportknockd (pid {})",
            first.proc.pid()
        )),
        "{err}"
    );
    assert!(!pid2.exists(), "the refused daemon left its pid file");
    // The first one still works.
    knock(&pair, &[(UDP, 7000, 0)]);
    assert_eq!(
        wait_lines(&dir.join("doors"), 1, Duration::from_secs(3)).len(),
        1
    );
    assert!(alive(first.proc.pid()));
}

// ---------------------------------------------------------------------------
// 4. Doors are capped

/// `count` spoofed completions (tcp/7000 SYN) with stale checksums, so the
/// server's own stack drops them instead of answering.
fn spoofed_completions(pair: &Pair, count: u32) -> Vec<Vec<u8>> {
    let template = knock_frame(
        pair,
        IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)),
        IpAddr::V4(pair.server4),
        (TCP, 7000, 0x02),
    );
    (0..count)
        .map(|n| {
            let mut f = template.clone();
            let src = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n;
            f[26..30].copy_from_slice(&src.to_be_bytes());
            // The IP header checksum follows the new source (issue 15: the
            // daemon, like the host, refuses a wrong one); the TCP checksum
            // stays stale, so the server's stack answers none of them.
            f[24..26].copy_from_slice(&[0, 0]);
            let mut sum: u32 = f[14..34]
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f
        })
        .collect()
}

const FLOOD_COMPLETIONS: u32 = 20_000;
/// The rate of `hostile.rs`'s flood; a debug build under a busy machine
/// keeps up with it without ring drops.
const FLOOD_RATE: u64 = 100_000;
const FLOOD_CAP: u64 = 500;

#[test]
fn spoofed_completions_stop_at_the_cap_and_a_real_knock_still_opens() {
    let pair = Pair::new();
    let dir = TempDir::new("o4");
    nft_set(&pair, "flood");
    nft_set(&pair, "admin");
    // FLOOD is the sequence an attacker has seen; SSH the admin's own.
    write_config(
        &dir,
        &format!(
            "<FLOOD>\n sequence = tcp:7000:s\n timeout = 5\n \
             start_command = nft add element inet tpk flood {{ %IP% }}\n \
             stop_command = nft delete element inet tpk flood {{ %IP% }}\n \
             command_delay = 600\n max_doors = {FLOOD_CAP}\n</FLOOD>\n\
             <SSH>\n sequence = tcp:7100:s udp:7101\n timeout = 5\n \
             start_command = nft add element inet tpk admin {{ %IP% }}\n \
             stop_command = nft delete element inet tpk admin {{ %IP% }}\n \
             command_delay = 600\n</SSH>\n"
        ),
    );
    let mut d = start_daemon_opts(&pair.server, Some(&pair.server_if), &dir, &[], false);
    let flood = spoofed_completions(&pair, FLOOD_COMPLETIONS);
    let (first, second) = flood.split_at(flood.len() / 2);
    let (first, second) = (first.to_vec(), second.to_vec());
    let send = |frames: Vec<Vec<u8>>| {
        let ifname = pair.client_if.clone();
        pair.client
            .run(move || send_raw_many(&ifname, &frames, frames.len(), Some(FLOOD_RATE)).unwrap())
    };
    let t = Instant::now();
    // The admin's knock in the middle of the flood, when the cap is long
    // reached.
    let mut sent = send(first);
    knock(&pair, &[(TCP, 7100, 0x02), (UDP, 7101, 0)]);
    sent += send(second);
    let flood_took = t.elapsed();
    assert_eq!(sent, FLOOD_COMPLETIONS as usize);
    let admin = wait_for(Duration::from_secs(10), || {
        (set_elements(&pair, "admin") == 1).then_some(())
    });
    assert!(
        admin.is_some(),
        "the admin's door did not open\n{}",
        d.log_tail(30)
    );
    let opened = wait_for(Duration::from_secs(60), || {
        (set_elements(&pair, "flood") as u64 >= FLOOD_CAP).then_some(())
    });
    assert!(
        opened.is_some(),
        "flood doors: {}",
        set_elements(&pair, "flood")
    );
    let s = d.stats();
    eprintln!("{FLOOD_COMPLETIONS} spoofed completions in {flood_took:?}; stats {s:?}");
    assert_eq!(s["drops"], 0, "ring drops under the flood: {s:?}");
    assert_eq!(s["doors"], FLOOD_CAP + 1, "{s:?}");
    assert_eq!(
        s["refused"],
        u64::from(FLOOD_COMPLETIONS) - FLOOD_CAP,
        "{s:?}"
    );
    assert_eq!(set_elements(&pair, "flood") as u64, FLOOD_CAP);
    // Refusals are logged at most about once a second, not once each.
    let refusal_lines = d.log_text().matches("door not opened").count()
        + d.log_text().matches("refused at a door cap").count();
    assert!(refusal_lines <= 30, "{refusal_lines} refusal lines");
    // Shutdown closes all of them within the limit (-t 60: 35 s).
    let t = Instant::now();
    d.proc.signal(libc::SIGTERM);
    let st = d.proc.wait_timeout(Duration::from_secs(35));
    let took = t.elapsed();
    assert!(
        st.is_some_and(|s| s.success()),
        "no clean exit in {took:?}\n{}",
        d.log_tail(20)
    );
    eprintln!("shutdown closed {} doors in {took:?}", FLOOD_CAP + 1);
    assert_eq!(set_elements(&pair, "flood"), 0);
    assert_eq!(set_elements(&pair, "admin"), 0);
    assert!(journal_pending(&dir.join("state/doors.journal")).is_empty());
}

// ---------------------------------------------------------------------------
// 5. A log reader that never reads

const LOG_KNOCKS: u32 = 300;
const LOG_DELAY_S: u64 = 2;

fn log_config(dir: &TempDir) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "<OPEN>\n sequence = udp:7000\n timeout = 5\n start_command = echo start %IP% >> {out}\n \
             stop_command = echo stop %IP% >> {out}\n command_delay = {LOG_DELAY_S}\n</OPEN>\n",
            out = dir.join("doors").display()
        ),
    )
}

/// 300 knocks from distinct sources: every door opens at once and closes
/// after its delay, not before and not much after.
fn doors_open_and_close_on_time(pair: &Pair, dir: &TempDir, what: &str) {
    let out = dir.join("doors");
    let count = |word: &str| {
        read_lines(&out)
            .iter()
            .filter(|l| l.starts_with(word))
            .count()
    };
    let burst = frames(pair, &spoofed(1_000, LOG_KNOCKS), (UDP, 7000, 0));
    let t = Instant::now();
    pair.send_frames(burst);
    let sent = t.elapsed();
    let started = wait_for(Duration::from_secs(LOG_DELAY_S), || {
        (count("start ") == LOG_KNOCKS as usize).then(|| t.elapsed())
    });
    assert!(
        started.is_some(),
        "{what}: {} of {LOG_KNOCKS} doors opened within {LOG_DELAY_S} s",
        count("start ")
    );
    assert_eq!(count("stop "), 0, "{what}: a door closed before its delay");
    let closed = wait_for(Duration::from_secs(LOG_DELAY_S + 5), || {
        (count("stop ") == LOG_KNOCKS as usize).then(|| t.elapsed())
    });
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "{what}: {} of {LOG_KNOCKS} doors closed within {} s",
            count("stop "),
            LOG_DELAY_S + 5
        )
    });
    eprintln!(
        "{what}: {LOG_KNOCKS} knocks sent in {sent:?}; all open after {:?}, all closed after {closed:?} (delay {LOG_DELAY_S} s)",
        started.unwrap()
    );
    assert!(closed >= Duration::from_secs(LOG_DELAY_S));
    assert!(
        closed < Duration::from_secs(LOG_DELAY_S + 3),
        "{what}: closed late: {closed:?}"
    );
}

/// Waits for READY=1 on a notify socket.
fn wait_ready(sock: &std::os::unix::net::UnixDatagram) {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("no READY=1");
    assert_eq!(&buf[..n], b"READY=1");
}

#[test]
fn stderr_to_a_pipe_nobody_reads_stops_no_door() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let pair = Pair::new();
    let dir = TempDir::new("o5");
    log_config(&dir);
    let mut fds = [0; 2];
    // SAFETY: a fresh pipe whose two descriptors we own from here on.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned these two descriptors.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let notify = dir.join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let mut cmd = pair.server.command(BIN);
    cmd.arg("-c")
        .arg(dir.join("knock.conf"))
        .args(["-i", &pair.server_if, "-d"])
        .arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"))
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::from(wr));
    let d = spawn(cmd);
    wait_ready(&sock);
    // With -d every frame and command is a line: the 64 KiB pipe fills
    // long before the doors are done, and nobody reads it.
    doors_open_and_close_on_time(&pair, &dir, "stderr to a pipe never read");
    // Now read: the daemon says what it had to drop.
    let rd = std::fs::File::from(rd);
    // SAFETY: F_SETFL on our own descriptor.
    unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&rd),
            libc::F_SETFL,
            libc::O_NONBLOCK,
        )
    };
    let drain = |f: &std::fs::File| {
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = std::io::Read::read(&mut &*f, &mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    };
    let first = drain(&rd);
    assert!(
        first.len() >= 60_000,
        "the pipe never filled: {} bytes",
        first.len()
    );
    d.signal(libc::SIGUSR1);
    let note = wait_for(Duration::from_secs(5), || {
        let t = drain(&rd);
        t.contains("log line(s) dropped").then_some(t)
    })
    .expect("no dropped-lines note once the reader came back");
    eprintln!("after reading again: {}", note.lines().next().unwrap_or(""));
    assert!(alive(d.pid()));
}

/// `-D` sends the log to `/dev/log`. Here that is a socket the test binds
/// and never reads, placed at `/dev/log` only for the daemon: a private
/// mount namespace (`unshare -m`) bind-mounts a directory holding it (and
/// `/dev/null`) over `/dev`. The daemon has no option for the syslog path.
#[test]
fn a_dev_log_that_never_reads_stops_no_door() {
    let pair = Pair::new();
    let dir = TempDir::new("o6");
    let conf = log_config(&dir);
    let dev = dir.join("dev");
    std::fs::create_dir(&dev).unwrap();
    let log = std::os::unix::net::UnixDatagram::bind(dev.join("log")).unwrap();
    std::fs::write(dev.join("null"), b"").unwrap();
    let pid = dir.join("pid");
    let script = format!(
        "mount --bind /dev/null {dev}/null && mount --rbind {dev} /dev && \
         exec ip netns exec {ns} {bin} -c {conf} -i {iface} -d -D -p {pid} -s {state}",
        dev = dev.display(),
        ns = pair.server.name,
        bin = BIN,
        conf = conf.display(),
        iface = pair.server_if,
        pid = pid.display(),
        state = dir.join("state").display(),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "-D did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon_pid: i32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: signalling the daemon this test started, by its pid.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let _kill = Kill(daemon_pid);
    doors_open_and_close_on_time(&pair, &dir, "-D with a /dev/log never read");
    // Reading again: the daemon says what it had to drop.
    log.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut queued = 0;
    while log.recv(&mut buf).is_ok() {
        queued += 1;
    }
    assert!(queued > 0, "syslog got nothing at all");
    // SAFETY: as above.
    unsafe { libc::kill(daemon_pid, libc::SIGUSR1) };
    log.set_nonblocking(false).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = log.recv(&mut buf).expect("nothing after reading again");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(line.starts_with("<28>tportknockd["), "{line}");
    assert!(line.contains("log line(s) dropped"), "{line}");
    eprintln!("syslog had {queued} datagrams queued; then: {line}");
}

// ---------------------------------------------------------------------------
// 6. Stops that fail

#[test]
fn a_stop_that_fails_twice_is_retried_until_it_closes_the_door() {
    let pair = Pair::new();
    let dir = TempDir::new("o7");
    let (tries, out) = (dir.join("tries"), dir.join("doors"));
    write_config(
        &dir,
        &format!(
            "<OPEN>\n sequence = udp:7000\n timeout = 5\n start_command = echo start >> {out}\n \
             stop_command = n=$(($(cat {tries} 2>/dev/null || echo 0) + 1)); echo $n > {tries}; \
             echo stop $n >> {out}; [ $n -ge 3 ]\n command_delay = 1\n</OPEN>\n",
            out = out.display(),
            tries = tries.display()
        ),
    );
    let d = start_daemon(&pair, &dir, &[]);
    let t = Instant::now();
    knock(&pair, &[(UDP, 7000, 0)]);
    let l = wait_lines(&out, 4, Duration::from_secs(8));
    let took = t.elapsed();
    assert_eq!(
        l,
        ["start", "stop 1", "stop 2", "stop 3"],
        "{}",
        d.log_tail(20)
    );
    // 1 s delay, then retries after 1 s and 2 s.
    assert!(
        took >= Duration::from_millis(3_900) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    d.expect_log("stop failed (attempt 1)", Duration::from_secs(1));
    d.expect_log("stop failed (attempt 2)", Duration::from_secs(1));
    d.expect_log("stop: exited 0", Duration::from_secs(1));
    let s = d.stats();
    assert_eq!(
        (s["doors"], s["retrying"], s["stop_failures"]),
        (0, 0, 2),
        "{s:?}"
    );
    // Closed for good: nothing runs again.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(read_lines(&out).len(), 4);
    assert!(journal_pending(&dir.join("state/doors.journal")).is_empty());
}

#[test]
fn a_stop_that_always_fails_stays_in_the_journal_and_runs_at_the_next_start() {
    let pair = Pair::new();
    let dir = TempDir::new("o8");
    let out = dir.join("doors");
    write_config(
        &dir,
        &format!(
            "<OPEN>\n sequence = udp:7000\n timeout = 5\n start_command = echo start >> {out}\n \
             stop_command = echo stop >> {out}; exit 7\n command_delay = 1\n</OPEN>\n",
            out = out.display()
        ),
    );
    let mut d = start_daemon(&pair, &dir, &[]);
    knock(&pair, &[(UDP, 7000, 0)]);
    // The stop at 1 s and a retry at 2 s.
    assert_eq!(wait_lines(&out, 3, Duration::from_secs(5)).len(), 3);
    // SIGTERM once the retry has ended (not while it still runs: a stop
    // in flight at SIGTERM is that stop's run, not one more).
    d.expect_log("stop failed (attempt 2)", Duration::from_secs(5));
    d.proc.signal(libc::SIGTERM);
    let st = d
        .proc
        .wait_timeout(Duration::from_secs(10))
        .expect("no exit");
    assert!(st.success());
    // SIGTERM ran it once more; it failed, so the journal keeps it.
    assert_eq!(read_lines(&out), ["start", "stop", "stop", "stop"]);
    assert!(
        d.log_text().contains("kept in the journal"),
        "{}",
        d.log_tail(10)
    );
    let journal = dir.join("state/doors.journal");
    assert_eq!(journal_pending(&journal).len(), 1);
    // The next start runs it at once (and keeps retrying it).
    let d2 = start_daemon(&pair, &dir, &[]);
    d2.expect_log(
        "stop overdue from before restart, running now",
        Duration::from_secs(2),
    );
    assert_eq!(wait_lines(&out, 5, Duration::from_secs(3)).len(), 5);
    d2.expect_log("stop failed (attempt 1)", Duration::from_secs(2));
    assert_eq!(journal_pending(&journal).len(), 1);
}

// ---------------------------------------------------------------------------
// 7. Smaller

/// Makes `cmd` start with SIGCHLD ignored, as a careless init script would
/// (the disposition survives exec; `ip netns exec` passes it on).
fn ignoring_sigchld(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec; signal(2) is async-signal-safe and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
}

/// SIGCHLD's bit in a `SigIgn:` line of /proc/PID/status.
fn sigchld_ignored(status: &str) -> bool {
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (libc::SIGCHLD - 1)) != 0
}

/// Started with SIGCHLD ignored, the kernel would reap every command before
/// the runner could read its status: stops would count as failed and run
/// again at every start.
#[test]
fn sigchld_ignored_at_start_is_reset() {
    let pair = Pair::new();
    let dir = TempDir::new("o9");
    plain_config(&dir);
    // The set-up works: a program started this way has SIGCHLD ignored.
    let mut probe = pair.server.command("cat");
    probe.arg("/proc/self/status");
    ignoring_sigchld(&mut probe);
    let probe = probe.output().unwrap();
    assert!(sigchld_ignored(&String::from_utf8_lossy(&probe.stdout)));
    let log = dir.join("daemon.log");
    let mut cmd = pair.server.command(BIN);
    cmd.arg("-c")
        .arg(dir.join("knock.conf"))
        .args(["-i", &pair.server_if])
        .arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"))
        .stderr(std::fs::File::create(&log).unwrap());
    ignoring_sigchld(&mut cmd);
    let d = Daemon {
        proc: spawn(cmd),
        log,
    };
    d.expect_log("ready:", Duration::from_secs(10));
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.proc.pid())).unwrap();
    assert!(!sigchld_ignored(&status), "SIGCHLD still ignored");
    knock(&pair, &[(UDP, 7000, 0)]);
    assert_eq!(
        wait_lines(&dir.join("doors"), 2, Duration::from_secs(4)).len(),
        2
    );
    d.expect_log("OPEN stop: exited 0", Duration::from_secs(2));
    assert!(
        !d.log_text().contains("exit status lost"),
        "{}",
        d.log_tail(10)
    );
    // The journal's writer records the stop as done moments later.
    let journal = dir.join("state/doors.journal");
    let done = wait_for(Duration::from_secs(2), || {
        journal_pending(&journal).is_empty().then_some(())
    });
    assert!(done.is_some(), "the stop stayed journaled");
}

/// When stderr is the journal (`JOURNAL_STREAM` names it), lines carry
/// sd-daemon priorities and not the program name.
#[test]
fn stderr_to_the_journal_carries_priorities() {
    use std::io::{BufRead, BufReader};
    use std::os::fd::{AsFd, OwnedFd};
    let pair = Pair::new();
    let dir = TempDir::new("o10");
    write_config(
        &dir,
        "<FAIL>\n sequence = udp:7000\n timeout = 5\n start_command = exit 3\n</FAIL>\n",
    );
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let meta = std::fs::File::from(theirs.as_fd().try_clone_to_owned().unwrap())
        .metadata()
        .unwrap();
    let mut cmd = pair.server.command(BIN);
    cmd.arg("-c")
        .arg(dir.join("knock.conf"))
        .args(["-i", &pair.server_if])
        .arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(Stdio::from(OwnedFd::from(theirs)));
    let d = spawn(cmd);
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut lines = BufReader::new(ours).lines();
    let mut seen = Vec::new();
    let mut next = |until: &str| loop {
        let l = lines
            .next()
            .unwrap_or_else(|| panic!("no {until:?}; got {seen:?}"))
            .unwrap();
        seen.push(l.clone());
        if l.contains(until) {
            return l;
        }
    };
    let ready = next("ready:");
    assert!(ready.starts_with("<6>info: ready:"), "{ready}");
    knock(&pair, &[(UDP, 7000, 0)]);
    let failed = next("FAIL start: failed");
    assert!(failed.starts_with("<4>warning: command "), "{failed}");
    for l in &seen {
        assert!(l.starts_with('<') && !l.contains("tportknockd:"), "{l}");
    }
    drop(d);
}
