//! The knocking and timing half of `make bench` (bench/run.sh drives it).
//! Not installed, not a dependency of the daemon: an example target, built
//! with `cargo build --release --example knockbench`.
//!
//! Runs in the client namespace. Knocks go out through one raw IPv4 socket
//! (IPPROTO_RAW: we write the IP header, so each knock can come from its own
//! source address and no earlier door or attempt interferes). The daemon
//! under test runs `echo %IP% > FIFO` (a shell builtin, no further exec) as
//! its start command; a thread here blocks on the FIFO and stamps each line
//! the moment `read` returns. Latency = that stamp minus the stamp taken
//! right after the knock's last `sendto` returned (the frame has then been
//! handed to the veth peer). Same method, same frames, for every daemon.
//!
//!     knockbench knock   --dst IP --fifo F --seq STEPS --first N --count N
//!                        [--interval-ms MS | --period-ms MS] [--wait-ms MS]
//!     knockbench startup --dst IP --fifo F --seq STEPS --first N --log FILE -- CMD…
//!     knockbench shell   --fifo F --count N
//!     knockbench drops   --pid PID
//!
//! STEPS is a space-separated list like `tcp:7000:s udp:7001`. `--first N`
//! picks the first source address, 10.197.0.0 + N. Output: one summary line
//! of `key=value` pairs (latencies in microseconds).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tportknockd::client::segment;
use tportknockd::knock::{Proto, Step};

const SRC_BASE: u32 = u32::from_be_bytes([10, 197, 0, 0]);

struct Args {
    named: HashMap<String, String>,
    rest: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Args {
        let mut named = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            if args[i] == "--" {
                return Args {
                    named,
                    rest: args[i + 1..].to_vec(),
                };
            }
            let key = args[i].trim_start_matches("--").to_owned();
            let value = args.get(i + 1).cloned().unwrap_or_default();
            named.insert(key, value);
            i += 2;
        }
        Args {
            named,
            rest: Vec::new(),
        }
    }

    fn get(&self, key: &str) -> String {
        self.named
            .get(key)
            .cloned()
            .unwrap_or_else(|| fail(&format!("missing --{key}")))
    }

    fn num(&self, key: &str, default: u64) -> u64 {
        match self.named.get(key) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| fail(&format!("--{key}: not a number: {v}"))),
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("knockbench: {msg}");
    std::process::exit(2)
}

/// Lines from the FIFO, each stamped right after the read that returned it.
fn fifo_lines(path: &str) -> Receiver<(Instant, String)> {
    // Read-write: the open does not wait for a writer, and the pipe never
    // reports end-of-file between two commands.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let at = Instant::now();
                    if tx.send((at, line.trim().to_owned())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

struct Knocker {
    sock: Socket,
    dst: Ipv4Addr,
    steps: Vec<Step>,
}

impl Knocker {
    fn new(dst: Ipv4Addr, seq: &str) -> Knocker {
        let steps = seq
            .split_whitespace()
            .map(|s| {
                s.parse::<Step>()
                    .unwrap_or_else(|e| fail(&format!("{s}: {e}")))
            })
            .collect();
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap_or_else(|e| fail(&format!("raw socket (needs root): {e}")));
        Knocker { sock, dst, steps }
    }

    /// One datagram per step from `src`; returns when the last has left.
    fn knock(&self, src: Ipv4Addr) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(self.dst, 0)));
        for (i, step) in self.steps.iter().enumerate() {
            let frame = ipv4_datagram(src, self.dst, step, 40000 + i as u16);
            self.sock.send_to(&frame, &to)?;
        }
        Ok(())
    }
}

fn ipv4_datagram(src: Ipv4Addr, dst: Ipv4Addr, step: &Step, sport: u16) -> Vec<u8> {
    let (s, d) = (IpAddr::V4(src), IpAddr::V4(dst));
    let (proto, l4) = match step.proto {
        Proto::Tcp => {
            let flags = tportknockd::client::wire_flags(step).unwrap_or(0x02);
            (6u8, segment::tcp_segment(s, d, sport, step.port, 1, flags))
        }
        Proto::Udp => {
            let mut u = Vec::with_capacity(12);
            u.extend_from_slice(&sport.to_be_bytes());
            u.extend_from_slice(&step.port.to_be_bytes());
            u.extend_from_slice(&12u16.to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(b"knck");
            let sum = segment::checksum(s, d, 17, &u);
            u[6..8].copy_from_slice(&sum.to_be_bytes());
            (17u8, u)
        }
    };
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    // ID, flags (DF), TTL, protocol; the kernel fills in the checksum.
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&l4);
    ip
}

fn source(n: u64) -> Ipv4Addr {
    Ipv4Addr::from(SRC_BASE.wrapping_add(n as u32))
}

/// Waits for the line naming `ip`; other lines (late doors of earlier
/// knocks) are skipped.
fn wait_for(rx: &Receiver<(Instant, String)>, ip: &str, until: Instant) -> Option<Instant> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, line)) if line == ip => return Some(at),
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => fail("FIFO reader stopped"),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(attempted: usize, lat_us: &mut [f64]) -> String {
    lat_us.sort_by(|a, b| a.total_cmp(b));
    format!(
        "attempted={attempted} opened={} median_us={:.0} p90_us={:.0} min_us={:.0} max_us={:.0}",
        lat_us.len(),
        percentile(lat_us, 0.5),
        percentile(lat_us, 0.9),
        lat_us.first().copied().unwrap_or(f64::NAN),
        lat_us.last().copied().unwrap_or(f64::NAN),
    )
}

fn dst_of(a: &Args) -> Ipv4Addr {
    a.get("dst")
        .parse()
        .unwrap_or_else(|_| fail("--dst: not an IPv4 address"))
}

/// `count` knocks from fresh sources, each waited for before the next:
/// `--interval-ms` after the previous one ended, or (`--period-ms`) one
/// knock every period, so the run lasts `count` periods whatever happens.
fn knock(a: &Args) {
    let k = Knocker::new(dst_of(a), &a.get("seq"));
    let rx = fifo_lines(&a.get("fifo"));
    let first = a.num("first", 0);
    let count = a.num("count", 50) as usize;
    let interval = Duration::from_millis(a.num("interval-ms", 20));
    let period = Duration::from_millis(a.num("period-ms", 0));
    let wait = Duration::from_millis(a.num("wait-ms", 1000));
    let mut lat = Vec::with_capacity(count);
    let t0 = Instant::now();
    for i in 0..count {
        let src = source(first + i as u64);
        let start = t0 + period * i as u32;
        k.knock(src).unwrap_or_else(|e| fail(&format!("send: {e}")));
        let sent = Instant::now();
        let until = if period.is_zero() {
            sent + wait
        } else {
            (start + period).max(sent)
        };
        if let Some(at) = wait_for(&rx, &src.to_string(), until) {
            lat.push(at.saturating_duration_since(sent).as_secs_f64() * 1e6);
        }
        if period.is_zero() {
            std::thread::sleep(interval);
        } else {
            std::thread::sleep((start + period).saturating_duration_since(Instant::now()));
        }
    }
    println!("{}", summary(count, &mut lat));
}

/// Spawns the daemon and knocks every millisecond from a new source until
/// one knock opens: start-up time = that knock's send time minus the spawn.
/// The daemon is left running on purpose: when this process exits it is
/// re-parented, and bench/run.sh stops it by pid.
#[allow(clippy::zombie_processes)]
fn startup(a: &Args) {
    let k = Knocker::new(dst_of(a), &a.get("seq"));
    let rx = fifo_lines(&a.get("fifo"));
    let first = a.num("first", 0);
    if a.rest.is_empty() {
        fail("startup: no command after --");
    }
    let log = File::create(a.get("log")).unwrap_or_else(|e| fail(&format!("log: {e}")));
    let err = log
        .try_clone()
        .unwrap_or_else(|e| fail(&format!("log: {e}")));
    let t0 = Instant::now();
    let child = Command::new(&a.rest[0])
        .args(&a.rest[1..])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", a.rest[0])));
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let give_up = t0 + Duration::from_secs(10);
    let mut n = first;
    let opened = loop {
        let src = source(n);
        n += 1;
        let _ = k.knock(src);
        sent.insert(src.to_string(), Instant::now());
        match rx.recv_timeout(Duration::from_millis(1)) {
            Ok((_, line)) if sent.contains_key(&line) => break Some(sent[&line]),
            _ => {}
        }
        if Instant::now() > give_up {
            break None;
        }
    };
    // The daemon keeps running (bench/run.sh stops it by pid).
    match opened {
        Some(at) => println!(
            "pid={} startup_us={:.0} knocks={}",
            child.id(),
            at.saturating_duration_since(t0).as_secs_f64() * 1e6,
            n - first
        ),
        None => println!("pid={} startup_us=nan knocks={}", child.id(), n - first),
    }
}

/// Frames the kernel dropped because a packet socket of process `pid` was
/// full, since the last read (reading resets the kernel's counters). The
/// sockets are borrowed with pidfd_getfd, so this works the same for any
/// daemon, libpcap or not.
fn drops(a: &Args) {
    let pid = a.num("pid", 0) as i32;
    let inodes = packet_socket_inodes(pid);
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        fail(&format!("pidfd_open {pid}: {}", io::Error::last_os_error()));
    }
    let (mut packets, mut dropped) = (0u64, 0u64);
    for fd in inodes {
        // SAFETY: pidfd_getfd takes a pidfd, a target fd and flags, no pointers.
        let own = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) };
        if own < 0 {
            continue;
        }
        // tpacket_stats_v3 is the larger of the two layouts; a TPACKET_V2
        // socket fills the first two words.
        let mut st = [0u32; 3];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` and `len` are live for the call and `len` is the
        // size of `st`; `own` is our own descriptor, closed just after.
        let rc = unsafe {
            libc::getsockopt(
                own as i32,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        // SAFETY: `own` is a descriptor this process owns and uses no more.
        unsafe { libc::close(own as i32) };
        if rc == 0 {
            packets += u64::from(st[0]);
            dropped += u64::from(st[1]);
        }
    }
    // SAFETY: as above, our own descriptor.
    unsafe { libc::close(pidfd as i32) };
    println!("packets={packets} drops={dropped}");
}

/// The descriptor numbers of `pid`'s AF_PACKET sockets.
fn packet_socket_inodes(pid: i32) -> Vec<i32> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/packet"))
        .unwrap_or_else(|e| fail(&format!("/proc/{pid}/net/packet: {e}")));
    // The inode is the last column.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    let dir = format!("/proc/{pid}/fd");
    let mut fds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| fail(&format!("{dir}: {e}"))) {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
            if inodes.iter().any(|i| i == inode) {
                if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    fds.push(fd);
                }
            }
        }
    }
    fds
}

/// The floor: `/bin/sh -c 'echo x > FIFO'` started from here.
fn shell(a: &Args) {
    let fifo = a.get("fifo");
    let rx = fifo_lines(&fifo);
    let count = a.num("count", 50) as usize;
    let mut lat = Vec::with_capacity(count);
    for i in 0..count {
        let tag = format!("sh{i}");
        let t0 = Instant::now();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("echo {tag} > '{fifo}'"))
            .env_clear()
            .spawn()
            .unwrap_or_else(|e| fail(&format!("/bin/sh: {e}")));
        if let Some(at) = wait_for(&rx, &tag, t0 + Duration::from_secs(2)) {
            lat.push(at.saturating_duration_since(t0).as_secs_f64() * 1e6);
        }
        let _ = child.wait();
    }
    println!("{}", summary(count, &mut lat));
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = argv.first() else {
        fail("usage: knockbench knock|startup|shell --option value …")
    };
    let a = Args::parse(&argv[1..]);
    match mode.as_str() {
        "knock" => knock(&a),
        "startup" => startup(&a),
        "shell" => shell(&a),
        "drops" => drops(&a),
        m => fail(&format!("unknown mode {m}")),
    }
}
