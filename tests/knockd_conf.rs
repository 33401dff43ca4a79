//! End-to-end: tportknockd run on knockd.conf files — the examples of
//! knockd's manual, in equivalents that write to files instead of
//! iptables — knocked with Debian's `knock` client (and `tportknock` where
//! TCPFlags demand flags `knock` cannot send) across a veth pair.

mod common;
use common::daemon::*;
use common::*;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const TPORTKNOCK: &str = env!("CARGO_BIN_EXE_tportknock");

/// Runs Debian's knockd client in the client namespace.
fn knock_client(pair: &Pair, args: &[&str]) {
    let out = pair
        .client
        .command("knock")
        .args(["-d", "5"])
        .args(args)
        .output()
        .expect("run knock (Debian package knockd; `make test` installs it)");
    assert!(
        out.status.success(),
        "knock {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Let the daemon see the last frame before the next tool sends.
    std::thread::sleep(Duration::from_millis(20));
}

/// Runs this project's client (raw socket for exact TCP flags).
fn tportknock(pair: &Pair, args: &[&str]) {
    let out = pair
        .client
        .command(TPORTKNOCK)
        .args(["-d", "5"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tportknock {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(20));
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Waits for `n` lines in `path`, failing with the daemon log if they do
/// not come.
#[track_caller]
fn expect_lines(d: &Daemon, path: &Path, n: usize, limit: Duration) -> Vec<String> {
    let l = wait_lines(path, n, limit);
    assert!(
        l.len() >= n,
        "wanted {n} line(s) in {}, got {l:?}; log:\n{}",
        path.display(),
        d.log_text()
    );
    l
}

/// Asserts that `path` still has exactly `want` after a pause.
#[track_caller]
fn expect_still(d: &Daemon, path: &Path, want: &[String]) {
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(lines(path), want, "log:\n{}", d.log_text());
}

#[test]
fn manual_example_1_two_doors_with_knock() {
    let pair = Pair::new();
    let dir = TempDir::new("kd1");
    let out = dir.join("doors");
    let logfile = dir.join("knockd.log");
    write_config(
        &dir,
        &format!(
            "[options]
     logfile = {log}

[openSSH]
     sequence    = 7000,8000,9000
     seq_timeout = 10
     tcpflags    = syn
     command     = echo open %IP% >> {out}

[closeSSH]
     sequence    = 9000,8000,7000
     seq_timeout = 10
     tcpflags    = syn
     command     = echo close %IP% >> {out}
",
            log = logfile.display(),
            out = out.display()
        ),
    );
    let d = start_daemon(&pair, &dir, &[]);
    let server = pair.server4.to_string();
    let client = pair.client4.to_string();
    knock_client(&pair, &[&server, "7000", "8000", "9000"]);
    assert_eq!(
        expect_lines(&d, &out, 1, Duration::from_secs(3)),
        [format!("open {client}")]
    );
    knock_client(&pair, &[&server, "9000", "8000", "7000"]);
    assert_eq!(
        expect_lines(&d, &out, 2, Duration::from_secs(3)),
        [format!("open {client}"), format!("close {client}")]
    );
    // LogFile got the same lines as the log, time-stamped.
    let logged = std::fs::read_to_string(&logfile).unwrap_or_default();
    assert!(
        logged.contains(&format!("info: {client} openSSH: knock complete")),
        "LogFile:\n{logged}"
    );
    // A wrong port with matching flags discards the attempt.
    knock_client(&pair, &[&server, "7000", "9000", "8000", "9000"]);
    expect_still(
        &d,
        &out,
        &[format!("open {client}"), format!("close {client}")],
    );
}

#[test]
fn manual_example_2_flags_ignored_not_wrong_and_stop_after_cmd_timeout() {
    let pair = Pair::new();
    let dir = TempDir::new("kd2");
    let out = dir.join("doors");
    write_config(
        &dir,
        &format!(
            "[options]
     logfile = {log}

[opencloseSSH]
     sequence      = 2222:udp,3333:tcp,4444:udp
     seq_timeout   = 15
     tcpflags      = syn,ack
     start_command = echo start %IP% >> {out}
     cmd_timeout   = 2
     stop_command  = echo stop %IP% >> {out}
",
            log = dir.join("knockd.log").display(),
            out = out.display()
        ),
    );
    let d = start_daemon(&pair, &dir, &[]);
    let server = pair.server4.to_string();
    let client = pair.client4.to_string();
    // knock's TCP hit is a bare SYN: it lacks ACK, so it is ignored.
    knock_client(&pair, &[&server, "2222:udp", "3333:tcp", "4444:udp"]);
    expect_still(&d, &out, &[]);
    // Ignored, not wrong: the SYN in between does not derail the attempt.
    knock_client(&pair, &[&server, "2222:udp", "3333:tcp"]);
    tportknock(&pair, &[&server, "tcp:3333:sa"]);
    let opened = Instant::now();
    knock_client(&pair, &[&server, "4444:udp"]);
    assert_eq!(
        expect_lines(&d, &out, 1, Duration::from_secs(3)),
        [format!("start {client}")]
    );
    let l = expect_lines(&d, &out, 2, Duration::from_secs(5));
    let after = opened.elapsed();
    assert_eq!(l[1], format!("stop {client}"));
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_millis(4500),
        "stop {after:?} after the knock; Cmd_Timeout is 2 s"
    );
    // tportknock reads the event from the knockd file and sends SYN+ACK.
    let conf = dir.join("knock.conf");
    tportknock(
        &pair,
        &[
            "-c",
            &conf.display().to_string(),
            "-e",
            "opencloseSSH",
            &server,
        ],
    );
    assert_eq!(
        expect_lines(&d, &out, 3, Duration::from_secs(3))[2],
        format!("start {client}")
    );
}

fn one_time_config(dir: &TempDir, seqs: &Path, flags: &str) -> String {
    let out = dir.join("doors");
    format!(
        "[options]
     logfile = {log}

[opencloseSMTP]
     one_time_sequences = {seqs}
     seq_timeout        = 15
     tcpflags           = {flags}
     start_command      = echo start %IP% >> {out}
     start_command_6    = echo start6 %IP% >> {out}
     cmd_timeout        = 1
     stop_command       = echo stop %IP% >> {out}
     stop_command_6     = echo stop6 %IP% >> {out}
",
        log = dir.join("knockd.log").display(),
        seqs = seqs.display(),
        out = out.display()
    )
}

#[test]
fn manual_example_3_one_time_sequences_are_used_up_across_restarts() {
    let pair = Pair::new();
    let dir = TempDir::new("kd3");
    let out = dir.join("doors");
    let seqs = dir.join("smtp_sequences");
    write_private(
        &seqs,
        "# one knock each\n 7100,7200,7300\n7400,7500:udp,7600\n\n 7700,7800,7900\n",
    );
    write_config(&dir, &one_time_config(&dir, &seqs, "fin,!ack"));
    let d = start_daemon(&pair, &dir, &[]);
    let server = pair.server4.to_string();
    let client = pair.client4.to_string();
    let first = ["tcp:7100:f", "tcp:7200:f", "tcp:7300:fp"];
    // FIN with ACK is forbidden: ignored, so nothing opens.
    tportknock(
        &pair,
        &[&server, "tcp:7100:fa", "tcp:7200:fa", "tcp:7300:fa"],
    );
    expect_still(&d, &out, &[]);
    tportknock(&pair, &[&[server.as_str()][..], &first[..]].concat());
    expect_lines(&d, &out, 1, Duration::from_secs(3));
    // Marked as knockd would: '#' over the first byte, in place.
    assert_eq!(
        std::fs::read_to_string(&seqs).unwrap(),
        "# one knock each\n#7100,7200,7300\n7400,7500:udp,7600\n\n 7700,7800,7900\n"
    );
    d.expect_log("next is line 3", Duration::from_secs(1));
    // Used: the same knock opens nothing any more.
    let opened = [format!("start {client}"), format!("stop {client}")];
    expect_lines(&d, &out, 2, Duration::from_secs(3));
    tportknock(&pair, &[&[server.as_str()][..], &first[..]].concat());
    expect_still(&d, &out, &opened);
    // The next line works, and is marked in turn (losing its first digit,
    // as with knockd).
    tportknock(&pair, &[&server, "tcp:7400:f", "udp:7500", "tcp:7600:f"]);
    expect_lines(&d, &out, 4, Duration::from_secs(4));
    assert_eq!(
        std::fs::read_to_string(&seqs).unwrap(),
        "# one knock each\n#7100,7200,7300\n#400,7500:udp,7600\n\n 7700,7800,7900\n"
    );
    // A restart reads the file again: used lines stay used. (SIGTERM: a
    // kill -9 right after a stop ran may leave it journaled, to run again.)
    let mut d = d;
    d.proc.signal(libc::SIGTERM);
    assert!(d.proc.wait_timeout(Duration::from_secs(5)).is_some());
    drop(d);
    let d = start_daemon(&pair, &dir, &[]);
    tportknock(&pair, &[&[server.as_str()][..], &first[..]].concat());
    tportknock(&pair, &[&server, "tcp:7400:f", "udp:7500", "tcp:7600:f"]);
    expect_still(&d, &out, &lines(&out)[..4]);
    tportknock(&pair, &[&server, "tcp:7700:f", "tcp:7800:f", "tcp:7900:f"]);
    expect_lines(&d, &out, 5, Duration::from_secs(3));
    // The file is used up: the event is disabled, the daemon runs on.
    d.expect_log("no unused sequence left in", Duration::from_secs(2));
    tportknock(&pair, &[&server, "tcp:7700:f", "tcp:7800:f", "tcp:7900:f"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lines(&out).len(), 6, "log:\n{}", d.log_text());
    assert!(
        d.proc.pid() > 0 && std::fs::metadata(format!("/proc/{}", d.proc.pid())).is_ok(),
        "daemon died"
    );
    let mut d = d;
    assert!(d.proc.child.try_wait().unwrap().is_none(), "daemon exited");
}

#[test]
fn manual_example_4_ipv6_knocks_run_the_6_commands() {
    let pair = Pair::new();
    let dir = TempDir::new("kd4");
    let out = dir.join("doors");
    let seqs = dir.join("smtp_sequences");
    write_private(&seqs, " 7100,7200,7300\n 7400,7500,7600\n");
    // Equivalent of example 4 with flags knock's SYN satisfies.
    write_config(&dir, &one_time_config(&dir, &seqs, "syn,!ack"));
    let d = start_daemon(&pair, &dir, &[]);
    let v6 = pair.server6.to_string();
    let v4 = pair.server4.to_string();
    knock_client(&pair, &["-6", &v6, "7100", "7200", "7300"]);
    let l = expect_lines(&d, &out, 2, Duration::from_secs(4));
    assert_eq!(
        l,
        [
            format!("start6 {}", pair.client6),
            format!("stop6 {}", pair.client6)
        ]
    );
    knock_client(&pair, &["-4", &v4, "7400", "7500", "7600"]);
    let l = expect_lines(&d, &out, 4, Duration::from_secs(4));
    assert_eq!(
        l[2..],
        [
            format!("start {}", pair.client4),
            format!("stop {}", pair.client4)
        ]
    );
}

#[test]
fn empty_ipv6_command_means_nothing_and_absent_falls_back() {
    let pair = Pair::new();
    let dir = TempDir::new("kd5");
    let out = dir.join("doors");
    write_config(
        &dir,
        &format!(
            "[v4only]\nsequence = 7100,7200:udp\ncommand = echo v4only %IP% >> {out}\ncommand_6 =\n\
             [both]\nsequence = 7300,7400:udp\ncommand = echo both %IP% >> {out}\n",
            out = out.display()
        ),
    );
    let d = start_daemon(&pair, &dir, &[]);
    let v6 = pair.server6.to_string();
    knock_client(&pair, &["-6", &v6, "7100", "7200:udp"]);
    d.expect_log("no command for this address family", Duration::from_secs(3));
    knock_client(&pair, &["-6", &v6, "7300", "7400:udp"]);
    assert_eq!(
        expect_lines(&d, &out, 1, Duration::from_secs(3)),
        [format!("both {}", pair.client6)]
    );
}

#[test]
fn target_event_watches_its_address_instead_of_the_own_ones() {
    let pair = Pair::new();
    let dir = TempDir::new("kd6");
    let out = dir.join("doors");
    let target = "10.199.0.77";
    write_config(
        &dir,
        &format!(
            "[wake]\nsequence = 7000,8000,9000\ntarget = {target}\ncommand = echo wake %IP% >> {out}\n\
             [own]\nsequence = 7000,8000,9000\ncommand = echo own %IP% >> {out}\n",
            out = out.display()
        ),
    );
    // Frames to the routed host reach the server's link.
    let mac = pair.server_mac();
    let mac = mac.map(|b| format!("{b:02x}")).join(":");
    pair.client.must(&format!(
        "ip neigh replace {target} lladdr {mac} dev {}",
        pair.client_if
    ));
    let d = start_daemon(&pair, &dir, &[]);
    let client = pair.client4.to_string();
    knock_client(&pair, &[target, "7000", "8000", "9000"]);
    assert_eq!(
        expect_lines(&d, &out, 1, Duration::from_secs(3)),
        [format!("wake {client}")]
    );
    knock_client(&pair, &[&pair.server4.to_string(), "7000", "8000", "9000"]);
    assert_eq!(
        expect_lines(&d, &out, 2, Duration::from_secs(3)),
        [format!("wake {client}"), format!("own {client}")]
    );
    // Mixing destinations completes neither.
    knock_client(&pair, &[target, "7000", "8000"]);
    knock_client(&pair, &[&pair.server4.to_string(), "9000"]);
    expect_still(
        &d,
        &out,
        &[format!("wake {client}"), format!("own {client}")],
    );
}

#[test]
fn a_second_sources_completion_keeps_the_first_sources_attempt() {
    let pair = Pair::new();
    let dir = TempDir::new("kd7");
    let out = dir.join("doors");
    write_config(
        &dir,
        &format!(
            "[open]\nsequence = 7000,8000,9000\ntcpflags = syn\ncommand = echo open %IP% >> {out}\n",
            out = out.display()
        ),
    );
    let d = start_daemon(&pair, &dir, &[]);
    let server = pair.server4.to_string();
    let other: IpAddr = "10.199.0.3".parse().unwrap();
    let syn = |port| (TCP, port, 0x02);
    // A starts, B completes, A finishes: both doors open (knockd drops A's
    // attempt when B's completed one is removed from the head of its list).
    knock_client(&pair, &[&server, "7000", "8000"]);
    knock_from(
        &pair,
        other,
        IpAddr::V4(pair.server4),
        &[syn(7000), syn(8000), syn(9000)],
    );
    expect_lines(&d, &out, 1, Duration::from_secs(3));
    knock_client(&pair, &[&server, "9000"]);
    let l = expect_lines(&d, &out, 2, Duration::from_secs(3));
    assert_eq!(
        l,
        [format!("open {other}"), format!("open {}", pair.client4)]
    );
}

#[test]
fn options_interface_and_pidfile_apply_without_command_line() {
    let pair = Pair::new();
    let dir = TempDir::new("kd8");
    let out = dir.join("doors");
    let pidfile = dir.join("knockd.pid");
    write_config(
        &dir,
        &format!(
            "[options]\nUseSyslog\nInterface = {ifname}\nPidFile = {pid}\n\
             [open]\nsequence = 7000:udp,8000\ncommand = echo open %IP% >> {out}\n",
            ifname = pair.server_if,
            pid = pidfile.display(),
            out = out.display()
        ),
    );
    let log = dir.join("daemon.log");
    let mut cmd = pair.server.command(BIN);
    cmd.arg("-c")
        .arg(dir.join("knock.conf"))
        .arg("-s")
        .arg(dir.join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let d = Daemon {
        proc: spawn(cmd),
        log,
    };
    d.expect_log(
        &format!("ready: capturing on {}", pair.server_if),
        Duration::from_secs(10),
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    assert_eq!(pid.trim(), d.proc.pid().to_string());
    knock_client(&pair, &[&pair.server4.to_string(), "7000:udp", "8000"]);
    expect_lines(&d, &out, 1, Duration::from_secs(3));
}

#[test]
fn check_summarises_a_knockd_file() {
    require_root();
    let dir = TempDir::new("kd9");
    let seqs = dir.join("seqs");
    write_private(&seqs, "#used\n");
    write_config(
        &dir,
        &format!(
            "[options]\nlogfile = /var/log/knockd.log\n[openSSH]\nsequence = 7000,8000:udp\n\
             tcpflags = syn, !ack\ncommand = open %IP%\nstart_command_6 =\n\
             [otp]\none_time_sequences = {}\ncommand = x %IP%\n",
            seqs.display()
        ),
    );
    let path = dir.join("knock.conf");
    let out = std::process::Command::new(BIN)
        .arg("-C")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "event openSSH (line 3)\n  sequence: 2 frames within 25 s\n    1. tcp/7000 with SYN without ACK\n    2. udp/8000\n",
        "  TCPFlags: SYN set, ACK clear; other TCP frames are ignored, not wrong\n  start: open %IP%\n  start for IPv6: none\n  stop: none\n",
        "event otp (line 8)\n  one-time sequences from ",
        "  sequence: none left: event disabled\n",
        &format!("warning: {}:8: event otp is disabled: {} has no unused sequence left\n", path.display(), seqs.display()),
        ": 2 events, 0 errors, ",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Errors name the file and line, like knock.conf's.
    write_config(&dir, "[a]\nsequence = 7000,x\ncommand = y\n");
    let out = std::process::Command::new(BIN)
        .arg("-C")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: {}:2: Sequence: 'x' not port[:tcp|udp] with a port from 1 to 65535",
            path.display()
        )),
        "{err}"
    );
}

/// knockd decodes IPv6 only on Ethernet; here a TUN device (a raw-IP link,
/// as under a VPN) carries IPv6 knocks that run `Start_Command_6`.
#[test]
fn ipv6_knocks_on_a_raw_ip_link_run_the_6_command() {
    let pair = Pair::new();
    let dir = TempDir::new("kd10");
    let out = dir.join("doors");
    write_config(
        &dir,
        &format!(
            "[vpn]\nsequence = 7000,8000:udp,9000\ntcpflags = syn\ncommand = echo v4 %IP% >> {out}\n\
             command_6 = echo v6 %IP% >> {out}\n",
            out = out.display()
        ),
    );
    let tun = format!("tk6{}", std::process::id() % 10000);
    pair.server.must(&format!(
        "ip tuntap add mode tun name {tun} && ip -6 addr add fd01::1/64 dev {tun} nodad && ip link set {tun} up"
    ));
    let tun_name = tun.clone();
    let fd = pair.server.run(move || open_tun(&tun_name));
    let d = start_daemon_on(&pair.server, Some(&tun), &dir, &[]);
    let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        ("fd01::2".parse().unwrap(), "fd01::1".parse().unwrap());
    for (proto, port) in [(TCP, 7000), (UDP, 8000), (TCP, 9000)] {
        let l4 = if proto == TCP {
            frame::tcp(40000, port, 0x02)
        } else {
            frame::udp(40000, port, b"knock")
        };
        let ip = frame::ipv6(src, dst, proto, l4, &[]);
        tun_write(fd, &ip);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        expect_lines(&d, &out, 1, Duration::from_secs(3)),
        [format!("v6 {src}")]
    );
    // SAFETY: closing the descriptor we opened.
    unsafe { libc::close(fd) };
}

/// knockd sleeps through Cmd_Timeout in a child; here the stop is a timer,
/// so reload and shutdown answer at once, and shutdown runs the stop.
#[test]
fn reload_and_shutdown_do_not_wait_for_cmd_timeout() {
    let pair = Pair::new();
    let dir = TempDir::new("kd11");
    let out = dir.join("doors");
    write_config(
        &dir,
        &format!(
            "[long]\nsequence = 7000,8000\nstart_command = echo start %IP% >> {out}\n\
             cmd_timeout = 600\nstop_command = echo stop %IP% >> {out}\n",
            out = out.display()
        ),
    );
    let mut d = start_daemon(&pair, &dir, &[]);
    knock_client(&pair, &[&pair.server4.to_string(), "7000", "8000"]);
    expect_lines(&d, &out, 1, Duration::from_secs(3));
    let t = Instant::now();
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reloaded:", Duration::from_secs(2));
    d.proc.signal(libc::SIGTERM);
    let status = d.proc.wait_timeout(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "log:\n{}",
        d.log_text()
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        lines(&out),
        [
            format!("start {}", pair.client4),
            format!("stop {}", pair.client4)
        ]
    );
}

#[test]
fn the_manuals_knockd_example_checks() {
    require_root();
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/knock.conf.5")).unwrap();
    let section = page
        .split_once(".SH KNOCKD.CONF")
        .expect("KNOCKD.CONF section")
        .1;
    let example = section
        .split_once(".nf\n")
        .and_then(|(_, rest)| rest.split_once(".fi\n"))
        .expect("an example between .nf and .fi")
        .0
        .replace("\\-", "-");
    let dir = TempDir::new("kd12");
    write_config(&dir, &example);
    let out = std::process::Command::new(BIN)
        .arg("-C")
        .arg(dir.join("knock.conf"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{example}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("event openSSH (line 7)"), "{text}");
    assert!(
        text.contains("start for IPv6: /usr/sbin/ip6tables -A INPUT"),
        "{text}"
    );
}
