//! End-to-end tests of `tportknock`: the built binary runs in the client
//! namespace, tcpdump in the server namespace records what arrives, and each
//! test asserts the frames, their order, their exact TCP flags and (for the
//! segments the client builds itself) their checksums.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tportknock");

// TCP flag bits as tcpdump names them, written out here rather than taken
// from the crate so the test does not check the client against itself.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ALL6: u8 = 0x3f;

/// What a step should look like on the wire: protocol, port, TCP flags.
type Expect = (&'static str, u16, Option<u8>);

/// One frame tcpdump saw arriving at the server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    proto: &'static str,
    src_port: u16,
    dst_port: u16,
    /// The whole flag byte, for TCP.
    flags: Option<u8>,
    /// tcpdump's verdict on the TCP checksum.
    cksum_correct: Option<bool>,
}

/// tcpdump in the server namespace, recording frames addressed to the
/// server; killed by pid on drop.
struct Capture {
    _proc: Proc,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Capture {
    fn start(pair: &Pair) -> Capture {
        // Only what the client sends: the server's RSTs, ICMP errors and
        // neighbour discovery stay out.
        let filter = format!(
            "(dst host {} or dst host {}) and (tcp or udp)",
            pair.server4, pair.server6
        );
        let mut cmd = pair.server.command("tcpdump");
        cmd.args(["-nn", "-vv", "-l", "-i", &pair.server_if, &filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = spawn(cmd);
        let stdout = proc.child.stdout.take().expect("tcpdump stdout");
        let stderr = proc.child.stderr.take().expect("tcpdump stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("tcpdump did not start listening");
        Capture { _proc: proc, lines }
    }

    fn seen(&self) -> Vec<Seen> {
        // tcpdump -vv prints an IPv4 packet on two lines (the second
        // indented), an IPv6 one on one line.
        let mut records: Vec<String> = Vec::new();
        for line in self.lines.lock().unwrap().iter() {
            match records.last_mut() {
                Some(last) if line.starts_with(char::is_whitespace) => last.push_str(line),
                _ => records.push(line.clone()),
            }
        }
        records.iter().filter_map(|r| parse_record(r)).collect()
    }

    /// Waits for `n` frames, then a little longer so that a surplus frame
    /// would show too.
    fn wait_frames(&self, n: usize) -> Vec<Seen> {
        wait_for(Duration::from_secs(5), || {
            (self.seen().len() >= n).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        self.seen()
    }
}

/// `IP (… proto TCP (6) …) 10.199.0.2.5555 > 10.199.0.1.110: Flags [FRP.],
/// cksum 0x1085 (correct), …`; None for a record not yet complete.
fn parse_record(record: &str) -> Option<Seen> {
    let proto = if record.contains("proto TCP (6)") || record.contains("next-header TCP (6)") {
        "tcp"
    } else if record.contains("proto UDP (17)") || record.contains("next-header UDP (17)") {
        "udp"
    } else {
        return None;
    };
    let (left, right) = record.split_once(" > ")?;
    let port_of = |endpoint: &str| -> Option<u16> { endpoint.rsplit_once('.')?.1.parse().ok() };
    let src_port = port_of(left.rsplit(' ').next()?)?;
    let dst_port = port_of(right.split(": ").next()?)?;
    let (flags, cksum_correct) = if proto == "tcp" {
        let text = right.split_once("Flags [")?.1.split_once(']')?.0;
        let mut bits = 0u8;
        if text != "none" {
            for c in text.chars() {
                bits |= match c {
                    'F' => FIN,
                    'S' => SYN,
                    'R' => RST,
                    'P' => PSH,
                    '.' => ACK,
                    'U' => URG,
                    'E' => 0x40,
                    'W' => 0x80,
                    other => panic!("unknown tcpdump flag {other:?} in {record}"),
                };
            }
        }
        let after = right.split_once("cksum 0x")?.1;
        let verdict = after.split_once(')')?.0;
        (Some(bits), Some(verdict.contains("(correct")))
    } else {
        (None, None)
    };
    Some(Seen {
        proto,
        src_port,
        dst_port,
        flags,
        cksum_correct,
    })
}

/// Every step arrived, in order, with exactly the requested flags; for
/// segments the client built (`raw`) the checksum is right and one source
/// port serves the whole run.
#[track_caller]
fn assert_frames(seen: &[Seen], expect: &[Expect], raw: bool) {
    let got: Vec<Expect> = seen
        .iter()
        .map(|s| (s.proto, s.dst_port, s.flags))
        .collect();
    assert_eq!(got, expect, "frames seen: {seen:#?}");
    if raw {
        let tcp: Vec<&Seen> = seen.iter().filter(|s| s.proto == "tcp").collect();
        for s in &tcp {
            assert_eq!(s.cksum_correct, Some(true), "checksum of {s:?}");
        }
        if let Some(first) = tcp.first() {
            assert!(
                tcp.iter().all(|s| s.src_port == first.src_port),
                "one source port per run: {tcp:#?}"
            );
        }
    }
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "tportknock failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the client as root in the client namespace.
fn knock(pair: &Pair, args: &[&str]) -> Output {
    pair.client
        .command(BIN)
        .args(args)
        .output()
        .expect("run tportknock")
}

/// Runs the client as `nobody` (no capabilities) in the client namespace.
fn knock_unprivileged(pair: &Pair, args: &[&str]) -> Output {
    pair.client
        .command("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", BIN])
        .args(args)
        .output()
        .expect("run setpriv tportknock")
}

fn servers(pair: &Pair) -> [IpAddr; 2] {
    [pair.server4.into(), pair.server6.into()]
}

/// `ADDR:PORT` as the client's `-v` prints it.
fn endpoint(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

#[test]
fn original_ssh_example_arrives_with_exact_flags_over_ipv4_and_ipv6() {
    let pair = Pair::new();
    let steps = [
        "udp:1234",
        "tcp:543",
        "tcp:543:i",
        "tcp:123:frap",
        "tcp:434:x",
        "tcp:2345:n",
    ];
    let expect: [Expect; 6] = [
        ("udp", 1234, None),
        ("tcp", 543, Some(0)),
        ("tcp", 543, Some(SYN)),
        ("tcp", 123, Some(FIN | RST | PSH | ACK)),
        ("tcp", 434, Some(ALL6)),
        ("tcp", 2345, Some(0)),
    ];
    for server in servers(&pair) {
        let capture = Capture::start(&pair);
        let host = server.to_string();
        let mut args = vec!["-v", host.as_str()];
        args.extend(steps);
        let out = knock(&pair, &args);
        assert_success(&out);
        assert_frames(&capture.wait_frames(expect.len()), &expect, true);
        assert_eq!(
            stdout_lines(&out),
            [
                format!("udp {}", endpoint(server, 1234)),
                format!("tcp {} flags none", endpoint(server, 543)),
                format!("tcp {} flags SYN", endpoint(server, 543)),
                format!("tcp {} flags FIN,RST,PSH,ACK", endpoint(server, 123)),
                format!(
                    "tcp {} flags FIN,SYN,RST,PSH,ACK,URG",
                    endpoint(server, 434)
                ),
                format!("tcp {} flags none", endpoint(server, 2345)),
            ]
        );
    }
}

#[test]
fn flag_only_sequence_on_one_port_over_ipv4_and_ipv6() {
    let pair = Pair::new();
    let expect: [Expect; 5] = [
        ("tcp", 110, Some(ALL6)),
        ("tcp", 110, Some(URG | PSH)),
        ("tcp", 110, Some(URG | PSH)),
        ("tcp", 110, Some(0)),
        ("tcp", 110, Some(SYN)),
    ];
    for server in servers(&pair) {
        let capture = Capture::start(&pair);
        let host = server.to_string();
        let out = knock(
            &pair,
            &[
                &host,
                "tcp:110:x",
                "tcp:110:up",
                "tcp:110:up",
                "tcp:110:n",
                "tcp:110:i",
            ],
        );
        assert_success(&out);
        assert!(out.stdout.is_empty(), "silent without -v");
        assert_frames(&capture.wait_frames(expect.len()), &expect, true);
    }
}

/// Makes `name` resolve to `addr` inside a namespace: `ip netns exec`
/// mounts /etc/netns/NS/hosts over /etc/hosts.
struct NetnsHosts {
    dir: std::path::PathBuf,
}

impl NetnsHosts {
    fn new(ns: &Netns, lines: &str) -> NetnsHosts {
        let dir = std::path::PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), lines).unwrap();
        NetnsHosts { dir }
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // /etc/netns itself only if this left it empty.
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

#[test]
fn knockd_style_ports_to_a_host_name() {
    let pair = Pair::new();
    let _hosts = NetnsHosts::new(
        &pair.client,
        &format!(
            "127.0.0.1 localhost\n{} knockee\n{} knockee\n",
            pair.server4, pair.server6
        ),
    );
    let expect: [Expect; 3] = [
        ("tcp", 7000, Some(SYN)),
        ("udp", 7001, None),
        ("tcp", 7002, Some(SYN)),
    ];
    for (family, server) in [
        ("-4", IpAddr::from(pair.server4)),
        ("-6", pair.server6.into()),
    ] {
        let capture = Capture::start(&pair);
        let out = knock(
            &pair,
            &["-v", family, "knockee", "7000", "7001:udp", "7002:tcp"],
        );
        assert_success(&out);
        assert_frames(&capture.wait_frames(expect.len()), &expect, true);
        assert_eq!(
            stdout_lines(&out)[0],
            format!("tcp {} flags SYN", endpoint(server, 7000))
        );
    }
}

/// knock's own spelling of a run: `-u` (bare ports are UDP), `--delay`,
/// `--ipv6`, `--verbose`.
#[test]
fn knockd_client_options_u_delay_and_long_names() {
    let pair = Pair::new();
    let capture = Capture::start(&pair);
    let host = pair.server6.to_string();
    let started = std::time::Instant::now();
    let out = knock_unprivileged(
        &pair,
        &[
            "-u",
            "--delay",
            "300",
            "--ipv6",
            "--verbose",
            &host,
            "7000",
            "7001:tcp",
            "7002",
        ],
    );
    let took = started.elapsed();
    assert_success(&out);
    let seen: Vec<Seen> = capture
        .wait_frames(3)
        .into_iter()
        .map(|s| Seen {
            flags: s.flags.map(|f| f & ALL6),
            ..s
        })
        .collect();
    assert_frames(
        &seen,
        &[
            ("udp", 7000, None),
            ("tcp", 7001, Some(SYN)),
            ("udp", 7002, None),
        ],
        false,
    );
    assert_eq!(
        stdout_lines(&out),
        [
            format!("udp {}", endpoint(pair.server6.into(), 7000)),
            format!("tcp {} flags SYN", endpoint(pair.server6.into(), 7001)),
            format!("udp {}", endpoint(pair.server6.into(), 7002)),
        ]
    );
    // Two pauses of 300 ms between three frames.
    assert!(took >= Duration::from_millis(600), "{took:?}");
}

#[test]
fn syn_and_udp_steps_need_no_privileges() {
    let pair = Pair::new();
    for server in servers(&pair) {
        let capture = Capture::start(&pair);
        let host = server.to_string();
        let out = knock_unprivileged(
            &pair,
            &[
                "-v",
                &host,
                "7000",
                "7001:udp",
                "7002:tcp",
                "tcp:7003:i",
                "tcp:7004:s",
            ],
        );
        assert_success(&out);
        assert_eq!(stdout_lines(&out).len(), 5);
        // The kernel builds these SYNs (with options and an offloaded
        // checksum); only its classic flags are ours to assert, since ECN
        // settings may add ECE and CWR.
        let seen: Vec<Seen> = capture
            .wait_frames(5)
            .into_iter()
            .map(|s| Seen {
                flags: s.flags.map(|f| f & ALL6),
                ..s
            })
            .collect();
        assert_frames(
            &seen,
            &[
                ("tcp", 7000, Some(SYN)),
                ("udp", 7001, None),
                ("tcp", 7002, Some(SYN)),
                ("tcp", 7003, Some(SYN)),
                ("tcp", 7004, Some(SYN)),
            ],
            false,
        );
    }
}

#[test]
fn flag_step_without_privileges_fails_before_sending_anything() {
    let pair = Pair::new();
    let capture = Capture::start(&pair);
    let host = pair.server4.to_string();
    let out = knock_unprivileged(&pair, &[&host, "7000", "udp:7001", "tcp:123:frap"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tportknock: step 3 (tcp:123:frap) needs root or CAP_NET_RAW to send exact TCP flags\n"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.seen(), [], "nothing may be sent");
}

#[test]
fn knocks_the_sequence_of_an_event_from_knock_conf() {
    let pair = Pair::new();
    let dir = TempDir::new("conf");
    let conf = dir.join("knock.conf");
    std::fs::write(
        &conf,
        "<SSH>\n \
         sequence      = udp:1234 tcp:543 tcp:543:i tcp:123:frap tcp:434:x tcp:2345:n\n \
         timeout       = 10\n \
         start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\
         </SSH>\n\
         <SSH2>\n \
         sequence      = tcp:110:x tcp:110:up tcp:110:up tcp:110:n tcp:110:i\n \
         timeout       = 10\n \
         start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n \
         stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n \
         command_delay = 30\n\
         </SSH2>\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let capture = Capture::start(&pair);
    let host = pair.server6.to_string();
    let out = knock(&pair, &["-c", conf, "-e", "SSH2", &host]);
    assert_success(&out);
    let expect: [Expect; 5] = [
        ("tcp", 110, Some(ALL6)),
        ("tcp", 110, Some(URG | PSH)),
        ("tcp", 110, Some(URG | PSH)),
        ("tcp", 110, Some(0)),
        ("tcp", 110, Some(SYN)),
    ];
    assert_frames(&capture.wait_frames(expect.len()), &expect, true);

    let out = knock(&pair, &["-c", conf, "-e", "FTP", &host]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no event 'FTP' (events: SSH, SSH2)"), "{err}");
}

#[test]
fn usage_errors_exit_2_with_usage() {
    for (args, first_line) in [
        (&[][..], "tportknock: missing HOST"),
        (
            &["-d", "soon", "h", "1"][..],
            "tportknock: -d wants milliseconds",
        ),
        (
            &["h", "tcp:1:q"][..],
            "tportknock: frame 'tcp:1:q': unknown flag",
        ),
        (
            &["-4", "-6", "h", "1"][..],
            "tportknock: -4 and -6 exclude each other",
        ),
    ] {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines[0].starts_with(first_line), "{args:?}: {err}");
        assert!(lines[1].starts_with("usage: tportknock"), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    for arg in ["-h", "--help"] {
        let out = std::process::Command::new(BIN).arg(arg).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.starts_with("usage: tportknock"), "{arg}: {help}");
        assert!(help.contains("-u, --udp"), "{arg}: {help}");
    }
    for arg in ["-V", "--version"] {
        let out = std::process::Command::new(BIN).arg(arg).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("tportknock {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn host_without_an_address_of_the_family_exits_1() {
    let out = std::process::Command::new(BIN)
        .args(["-4", "::1", "7000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tportknock: ::1: no IPv4 address\n"
    );
}

/// Issue 15: `-c` reads the file under the daemon's limits, with its
/// messages: a device or a FIFO fails at once instead of eating memory or
/// hanging, an oversized file is refused without being read whole.
#[test]
fn c_takes_only_a_bounded_regular_file() {
    let dir = std::env::temp_dir().join(format!("tpk-c-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = dir.join("big.conf");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(17 << 20).unwrap(); // sparse: costs no disk
    for (file, want) in [
        (
            "/dev/zero".to_string(),
            "/dev/zero: not a regular file".to_string(),
        ),
        (
            fifo.display().to_string(),
            format!("{}: not a regular file", fifo.display()),
        ),
        (
            big.display().to_string(),
            format!(
                "{}: larger than 16 MiB; that is no knock.conf",
                big.display()
            ),
        ),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["-c", &file, "-e", "SSH", "127.0.0.1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("tportknock: {want}\n")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
