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
//! `door` measures what a knocker sees instead: after the knock it sends
//! TCP SYNs to the hidden port from the knocking address (ever closer
//! together: every 1/40 of the time so far, 20 µs to 1 ms), and a packet
//! socket on the client's veth catches the first SYN-ACK, stamped by the
//! kernel (SO_TIMESTAMPNS) when it arrived. Latency = that stamp minus the
//! wall-clock stamp right after the knock's last `sendto`. The server
//! routes the knock sources back to the client, which drops what is not
//! its own (the packet socket sees it first). One more SYN to the open door
//! gives the probe's own round trip: the floor under the figure.
//!
//!     knockbench knock   --dst IP --fifo F --seq STEPS --first N --count N
//!                        [--interval-ms MS | --period-ms MS] [--wait-ms MS]
//!     knockbench startup --dst IP --fifo F --seq STEPS --first N --log FILE -- CMD…
//!     knockbench shell   --fifo F --count N
//!     knockbench drops   --pid PID
//!     knockbench listen  --port P          (in the server namespace)
//!     knockbench door    --dst IP --iface IF --port P --seq STEPS --first N --count N
//!                        [--interval-ms MS] [--wait-ms MS]
//!     knockbench burst   --dst IP --seq STEPS --first N --count N --netns NS
//!                        --set "FAMILY TABLE SET" --pid PID --delay S
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
use std::time::{Duration, Instant, SystemTime};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tportknockd::client::segment;
use tportknockd::config::sets::{NftSet, SetTarget};
use tportknockd::doors::kernel::KernelDoors;
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

    /// A TCP SYN from `src:sport` to the destination's `port`.
    fn syn(&self, src: Ipv4Addr, sport: u16, port: u16) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(self.dst, 0)));
        let (s, d) = (IpAddr::V4(src), IpAddr::V4(self.dst));
        let l4 = segment::tcp_segment(s, d, sport, port, 1, 0x02);
        self.sock.send_to(&ip_packet(src, self.dst, 6, &l4), &to)?;
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
    ip_packet(src, dst, proto, &l4)
}

fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    // ID, flags (DF), TTL, protocol; the kernel fills in the checksum.
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(l4);
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

/// The floor: `/bin/sh -c 'echo x > FIFO'` started from here, one every
/// `--interval-ms` (after the previous one ended), as the latency run's
/// knocks are paced: back to back, the shell's pages and the caches stay
/// warm and the floor is lower than what a knock's shell can meet.
fn shell(a: &Args) {
    let fifo = a.get("fifo");
    let rx = fifo_lines(&fifo);
    let count = a.num("count", 50) as usize;
    let interval = Duration::from_millis(a.num("interval-ms", 0));
    let mut lat = Vec::with_capacity(count);
    for i in 0..count {
        std::thread::sleep(interval);
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

/// Accepts (and drops) connections on `--port` forever: the hidden service.
fn listen(a: &Args) {
    let port = a.num("port", 2222) as u16;
    let l = std::net::TcpListener::bind(("0.0.0.0", port))
        .unwrap_or_else(|e| fail(&format!("listen on {port}: {e}")));
    for conn in l.incoming() {
        drop(conn);
    }
}

/// SYN-ACKs from `server:port` seen on `iface`: (the address they go to,
/// the kernel's receive time).
fn syn_acks(iface: &str, server: Ipv4Addr, port: u16) -> Receiver<(Ipv4Addr, SystemTime)> {
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        fail(&format!("{iface}: {}", io::Error::last_os_error()));
    }
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, proto.into()) };
    if fd < 0 {
        fail(&format!("packet socket: {}", io::Error::last_os_error()));
    }
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    let on: libc::c_int = 1;
    // SAFETY: `sll` and `on` are live and sized as passed.
    let ok = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) == 0
            && libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            ) == 0
    };
    if !ok {
        fail(&format!("packet socket: {}", io::Error::last_os_error()));
    }
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut control = [0u64; 16];
        loop {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: an all-zero msghdr is valid; its pointers are set below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: `msg` points at live buffers of the given sizes.
            let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
            if n < 0 {
                continue;
            }
            let p = &buf[..n as usize];
            if p.len() < 40 || p[0] >> 4 != 4 || p[9] != 6 || p[12..16] != server.octets() {
                continue;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let Some(tcp) = p.get(ihl..ihl + 20) else {
                continue;
            };
            if u16::from_be_bytes([tcp[0], tcp[1]]) != port || tcp[13] & 0x12 != 0x12 {
                continue;
            }
            let mut at = SystemTime::now();
            // SAFETY: the control buffer was filled by recvmsg; the CMSG
            // macros stay within `msg_controllen`.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                    {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        at = SystemTime::UNIX_EPOCH
                            + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            let to = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            if tx.send((to, at)).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first SYN-ACK to `to` before `until`, skipping late ones to others.
fn syn_ack_for(
    rx: &Receiver<(Ipv4Addr, SystemTime)>,
    to: Ipv4Addr,
    until: Instant,
) -> Option<SystemTime> {
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((dst, at)) if dst == to => return Some(at),
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => fail("SYN-ACK reader stopped"),
        }
    }
}

/// Knock, then probe the hidden port until it answers: see the module docs.
fn door(a: &Args) {
    // Precise short sleeps between probes (the default slack is 50 µs).
    // SAFETY: PR_SET_TIMERSLACK takes a number, no pointers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let dst = dst_of(a);
    let k = Knocker::new(dst, &a.get("seq"));
    let port = a.num("port", 2222) as u16;
    let rx = syn_acks(&a.get("iface"), dst, port);
    let first = a.num("first", 0);
    let count = a.num("count", 50) as usize;
    let interval = Duration::from_millis(a.num("interval-ms", 20));
    let wait = Duration::from_millis(a.num("wait-ms", 1000));
    let (mut lat, mut rtt) = (Vec::with_capacity(count), Vec::with_capacity(count));
    let mut probes = 0u64;
    let mut sport = 50_000u16;
    let mut next_sport = || {
        sport = if sport == u16::MAX { 50_000 } else { sport + 1 };
        sport
    };
    for i in 0..count {
        let src = source(first + i as u64);
        k.knock(src).unwrap_or_else(|e| fail(&format!("send: {e}")));
        let t0 = SystemTime::now();
        let i0 = Instant::now();
        let answered = loop {
            k.syn(src, next_sport(), port)
                .unwrap_or_else(|e| fail(&format!("send: {e}")));
            probes += 1;
            let gap =
                (i0.elapsed() / 40).clamp(Duration::from_micros(20), Duration::from_millis(1));
            if let Some(at) = syn_ack_for(&rx, src, Instant::now() + gap) {
                break Some(at);
            }
            if i0.elapsed() > wait {
                break None;
            }
        };
        if let Some(at) = answered {
            let d = at.duration_since(t0).unwrap_or_default();
            lat.push(d.as_secs_f64() * 1e6);
            // The floor: one probe to the door now open.
            let p0 = SystemTime::now();
            k.syn(src, next_sport(), port)
                .unwrap_or_else(|e| fail(&format!("send: {e}")));
            if let Some(at) = syn_ack_for(&rx, src, Instant::now() + Duration::from_millis(100)) {
                rtt.push(at.duration_since(p0).unwrap_or_default().as_secs_f64() * 1e6);
            }
        }
        std::thread::sleep(interval);
    }
    rtt.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{} probe_rtt_us={:.0} probes={probes}",
        summary(count, &mut lat),
        percentile(&rtt, 0.5)
    );
}

/// CPU time (user + system) of process `pid` so far, in seconds.
fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| fail(&format!("/proc/{pid}/stat: {e}")));
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    // SAFETY: sysconf takes a number.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / tck
}

/// `count` knocks from fresh sources sent back to back, then: how long
/// until every address is in the daemon's set (read over netlink from
/// inside the server namespace), the daemon's CPU for that, and the same
/// for their expiry `--delay` seconds later.
fn burst(a: &Args) {
    let dst = dst_of(a);
    let k = Knocker::new(dst, &a.get("seq"));
    let first = a.num("first", 0);
    let count = a.num("count", 10_000) as usize;
    let pid = a.num("pid", 0) as i32;
    let delay = Duration::from_secs(a.num("delay", 20));
    let set = SetTarget::Nft(
        NftSet::parse(&a.get("set")).unwrap_or_else(|e| fail(&format!("--set: {e}"))),
    );
    let netns = format!("/run/netns/{}", a.get("netns"));
    let srcs: Vec<Ipv4Addr> = (0..count).map(|i| source(first + i as u64)).collect();
    // The checker: in the server namespace, sweeps the sources not yet in
    // the wanted state until all are, or until `limit` has passed; then
    // reports when it ended and how many reached the state (a burst can
    // lose frames to a full ring: that is a figure, not a failure).
    let (go_tx, go_rx) = channel::<()>();
    let (done_tx, done_rx) = channel::<(Instant, usize)>();
    let checker_srcs = srcs.clone();
    let limit = delay;
    std::thread::spawn(move || {
        let f = File::open(&netns).unwrap_or_else(|e| fail(&format!("{netns}: {e}")));
        use std::os::fd::AsRawFd;
        // SAFETY: a namespace descriptor; moves only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            fail(&format!("setns: {}", io::Error::last_os_error()));
        }
        let mut kd = KernelDoors::open().unwrap_or_else(|e| fail(&format!("netlink: {e}")));
        let mut present = |a: Ipv4Addr| {
            kd.expires(&set, IpAddr::V4(a))
                .unwrap_or_else(|e| fail(&e.to_string()))
                .is_some()
        };
        let _ = go_rx.recv();
        let mut opened = 0;
        for want in [true, false] {
            let start = Instant::now();
            let mut left: Vec<Ipv4Addr> = checker_srcs.clone();
            while !left.is_empty() && start.elapsed() < limit + Duration::from_secs(30) {
                left.retain(|&a| present(a) != want);
                if !left.is_empty() {
                    std::thread::sleep(Duration::from_millis(if want { 1 } else { 5 }));
                }
                if want && start.elapsed() >= limit {
                    break;
                }
            }
            if want {
                opened = checker_srcs.len() - left.len();
            }
            let _ = done_tx.send((Instant::now(), if want { opened } else { left.len() }));
        }
    });
    let c0 = cpu_secs(pid);
    let t0 = Instant::now();
    let _ = go_tx.send(());
    for &src in &srcs {
        k.knock(src).unwrap_or_else(|e| fail(&format!("send: {e}")));
    }
    let sent = t0.elapsed();
    let (all_open, opened) = done_rx
        .recv_timeout(delay + Duration::from_secs(5))
        .unwrap_or_else(|_| fail("the set checker did not answer"));
    let c1 = cpu_secs(pid);
    // The elements expire between t0 + delay and all_open + delay.
    std::thread::sleep(
        (t0 + delay).saturating_duration_since(Instant::now() + Duration::from_secs(1)),
    );
    let c2 = cpu_secs(pid);
    let (all_gone, still_open) = done_rx
        .recv_timeout(delay + Duration::from_secs(60))
        .unwrap_or_else(|_| fail("the set checker did not answer"));
    std::thread::sleep(Duration::from_secs(1));
    let c3 = cpu_secs(pid);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Signed, in whole milliseconds: the last may go before all were seen.
    let due = all_open + delay;
    let late = (ms(all_gone.saturating_duration_since(due))
        - ms(due.saturating_duration_since(all_gone)))
    .round() as i64;
    println!(
        "doors={count} opened={opened} still_open={still_open} send_ms={:.0} open_all_ms={:.0} \
         open_cpu_s={:.2} last_gone_after_delay_ms={late} expire_window_ms={:.0} expire_cpu_s={:.2}",
        ms(sent),
        ms(all_open - t0),
        c1 - c0,
        ms(all_gone.saturating_duration_since(t0 + delay)),
        c3 - c2,
    );
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
        "listen" => listen(&a),
        "door" => door(&a),
        "burst" => burst(&a),
        m => fail(&format!("unknown mode {m}")),
    }
}
