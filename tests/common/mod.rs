//! Test harness for end-to-end tests: network namespaces joined by a veth
//! pair, code run inside a namespace, raw frames sent from the client side,
//! and daemon processes that are always killed by pid.
//!
//! Every resource is owned by a guard whose `Drop` removes it, so a failing
//! test leaves no namespace or process behind.

#![allow(dead_code)]

pub mod daemon;

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "tpk{}_{}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        tag
    )
}

/// Fails the test (never passes silently) when it cannot run here.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "this end-to-end test needs root and network namespaces: run it as root, \
             e.g. `sudo make test` (CI runs as root)"
        );
    }
    let ok = Command::new("ip")
        .arg("netns")
        .arg("list")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        panic!(
            "`ip netns` is not usable here: install iproute2 and run as root (`sudo make test`)"
        );
    }
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh")
}

#[track_caller]
pub fn must(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "command failed: {cmd}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop (which also removes its veth ends
/// and kills nothing: processes are guarded separately).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        must(&format!("ip netns add {name}"));
        let ns = Netns { name };
        ns.must("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace.
    pub fn sh(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .expect("ip netns exec")
    }

    #[track_caller]
    pub fn must(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(
            out.status.success(),
            "in netns {}: command failed: {cmd}\nstdout: {}\nstderr: {}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `Command` that runs `program` inside the namespace; `ip netns exec`
    /// execs it, so the child's pid is the program's own.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it
    /// opens stay in the namespace.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = fs::File::open(&path).expect("open netns");
            use std::os::fd::AsRawFd;
            // SAFETY: valid fd of a network namespace file; this only moves
            // the calling (fresh) thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in netns panicked")
    }

    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let text = self.must(&format!("cat /sys/class/net/{ifname}/address"));
        let mut mac = [0u8; 6];
        for (i, part) in text.trim().split(':').enumerate() {
            mac[i] = u8::from_str_radix(part, 16).unwrap();
        }
        mac
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces, `server` and `client`, joined by a veth pair with IPv4
/// and IPv6 addresses on both ends.
pub struct Pair {
    // Field order matters for drop: namespaces go last.
    pub server_if: String,
    pub client_if: String,
    pub server4: Ipv4Addr,
    pub client4: Ipv4Addr,
    pub server6: Ipv6Addr,
    pub client6: Ipv6Addr,
    pub server: Netns,
    pub client: Netns,
}

impl Pair {
    pub fn new() -> Pair {
        require_root();
        let server = Netns::new("s");
        let client = Netns::new("c");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // veth names must fit IFNAMSIZ (15)
        let server_if = format!("vs{}", std::process::id() % 100000 * 100 + (n % 100) as u32);
        let client_if = format!("vc{}", std::process::id() % 100000 * 100 + (n % 100) as u32);
        must(&format!(
            "ip link add {server_if} netns {} type veth peer name {client_if} netns {}",
            server.name, client.name
        ));
        let server4 = Ipv4Addr::new(10, 199, 0, 1);
        let client4 = Ipv4Addr::new(10, 199, 0, 2);
        let server6: Ipv6Addr = "fd00:199::1".parse().unwrap();
        let client6: Ipv6Addr = "fd00:199::2".parse().unwrap();
        server.must(&format!(
            "ip addr add {server4}/24 dev {server_if} && ip -6 addr add {server6}/64 dev {server_if} nodad && ip link set {server_if} up"
        ));
        client.must(&format!(
            "ip addr add {client4}/24 dev {client_if} && ip -6 addr add {client6}/64 dev {client_if} nodad && ip link set {client_if} up"
        ));
        // A veth end reports carrier only once both ends are up; tests that
        // list links or send at once must not race that.
        for (ns, ifname) in [(&server, &server_if), (&client, &client_if)] {
            let up = wait_for(Duration::from_secs(5), || {
                ns.must(&format!("ip -o link show dev {ifname}"))
                    .contains("LOWER_UP")
                    .then_some(())
            });
            assert!(up.is_some(), "{ifname} never got carrier");
        }
        Pair {
            server_if,
            client_if,
            server4,
            client4,
            server6,
            client6,
            server,
            client,
        }
    }

    pub fn server_mac(&self) -> [u8; 6] {
        self.server.mac(&self.server_if)
    }

    pub fn client_mac(&self) -> [u8; 6] {
        self.client.mac(&self.client_if)
    }

    /// Sends complete link-layer frames out of the client's veth end.
    pub fn send_frames(&self, frames: Vec<Vec<u8>>) {
        let ifname = self.client_if.clone();
        self.client
            .run(move || send_raw(&ifname, &frames).expect("send frames"));
    }
}

/// A send-only AF_PACKET socket (protocol 0: it receives nothing) and the
/// address of `ifname` in the calling thread's namespace.
fn packet_sender(ifname: &str) -> io::Result<(OwnedFd, libc::sockaddr_ll)> {
    let cname = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    Ok((fd, addr))
}

/// Sends link-layer frames through an AF_PACKET socket bound to `ifname`
/// in the calling thread's namespace.
pub fn send_raw(ifname: &str, frames: &[Vec<u8>]) -> io::Result<()> {
    // `sock` closes the socket when it goes out of scope.
    let (sock, addr) = packet_sender(ifname)?;
    let fd = sock.as_raw_fd();
    let mut result = Ok(());
    for frame in frames {
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            result = Err(io::Error::last_os_error());
            break;
        }
    }
    result
}

/// Sends `total` frames out of `ifname` (in the calling thread's
/// namespace), cycling through `frames`, 512 per `sendmmsg` call: a few
/// hundred thousand frames a second even from a debug build. With
/// `per_sec`, no faster than that. Returns the number sent.
pub fn send_raw_many(
    ifname: &str,
    frames: &[Vec<u8>],
    total: usize,
    per_sec: Option<u64>,
) -> io::Result<usize> {
    const BATCH: usize = 512;
    assert!(!frames.is_empty());
    // `sock` closes the socket when it goes out of scope.
    let (sock, mut addr) = packet_sender(ifname)?;
    let fd = sock.as_raw_fd();
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    // SAFETY: an all-zero mmsghdr is valid; the pointers are set below.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let (mut sent, mut next, mut result) = (0usize, 0usize, Ok(()));
    let start = Instant::now();
    while sent < total {
        if let Some(rate) = per_sec {
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let n = BATCH.min(total - sent);
        iovs.clear();
        for i in 0..n {
            let f = &frames[(next + i) % frames.len()];
            iovs.push(libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            });
        }
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `n` headers, each pointing at a live iovec, frame and address.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == io::ErrorKind::Interrupted {
                std::thread::yield_now();
                continue;
            }
            result = Err(e);
            break;
        }
        sent += r as usize;
        next += r as usize;
    }
    result.map(|()| sent)
}

/// Alive and not a zombie: PID 1 here may not reap orphans, so a process
/// that ended can linger as 'Z'.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

/// A process killed (by pid) and reaped on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits up to `limit` for exit; returns the status if it exited.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

pub fn spawn(mut cmd: Command) -> Proc {
    cmd.stdin(Stdio::null());
    Proc {
        child: cmd.spawn().expect("spawn"),
    }
}

/// A scratch directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Polls `f` every 10 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Hand-built frames, independent of the crate's own code, so end-to-end
/// tests do not check the decoder against itself.
pub mod frame {
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub const ETH_IPV4: u16 = 0x0800;
    pub const ETH_IPV6: u16 = 0x86dd;

    fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        if let [b] = chunks.remainder() {
            sum += (*b as u32) << 8;
        }
        sum
    }

    fn csum_fold(mut sum: u32) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// TCP header (20 bytes, no options) with the given flags.
    pub fn tcp(src_port: u16, dst_port: u16, flags: u8) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0..2].copy_from_slice(&src_port.to_be_bytes());
        h[2..4].copy_from_slice(&dst_port.to_be_bytes());
        h[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h[14..16].copy_from_slice(&64240u16.to_be_bytes());
        h
    }

    pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&src_port.to_be_bytes());
        h[2..4].copy_from_slice(&dst_port.to_be_bytes());
        h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    /// IPv4 packet around an L4 segment (protocol 6 or 17), checksums set.
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, mut l4: Vec<u8>) -> Vec<u8> {
        let total = 20 + l4.len();
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = csum_fold(csum_add(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut pseudo = csum_add(0, &src.octets());
        pseudo = csum_add(pseudo, &dst.octets());
        pseudo += proto as u32 + l4.len() as u32;
        let off = if proto == 6 { 16 } else { 6 };
        l4[off] = 0;
        l4[off + 1] = 0;
        let c = csum_fold(csum_add(pseudo, &l4));
        l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&l4);
        ip
    }

    /// IPv6 packet; `ext` is a chain of (next-header-code, bytes) extension
    /// headers placed before the L4 segment.
    pub fn ipv6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        proto: u8,
        mut l4: Vec<u8>,
        ext: &[(u8, Vec<u8>)],
    ) -> Vec<u8> {
        let mut pseudo = csum_add(0, &src.octets());
        pseudo = csum_add(pseudo, &dst.octets());
        pseudo += proto as u32 + l4.len() as u32;
        let off = if proto == 6 { 16 } else { 6 };
        l4[off] = 0;
        l4[off + 1] = 0;
        let c = csum_fold(csum_add(pseudo, &l4));
        l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
        // each ext header's first byte is the next header: chain them
        let mut body = Vec::new();
        let first_next = ext.first().map(|(code, _)| *code).unwrap_or(proto);
        for (i, (_, bytes)) in ext.iter().enumerate() {
            let mut b = bytes.clone();
            b[0] = ext.get(i + 1).map(|(code, _)| *code).unwrap_or(proto);
            body.extend_from_slice(&b);
        }
        body.extend_from_slice(&l4);
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
        ip[6] = first_next;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&src.octets());
        ip[24..40].copy_from_slice(&dst.octets());
        ip.extend_from_slice(&body);
        ip
    }

    /// Ethernet II frame; `vlans` are 802.1Q/802.1ad tags (TPID, TCI) in
    /// the bytes, outermost first.
    pub fn ether(
        dst: [u8; 6],
        src: [u8; 6],
        vlans: &[(u16, u16)],
        ethertype: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        for (tpid, tci) in vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
}

/// Attaches to the persistent TUN device `name` (in the calling thread's
/// namespace) and returns its descriptor: what the test writes to it, the
/// kernel receives on a raw-IP link.
pub fn open_tun(name: &str) -> i32 {
    // SAFETY: plain open of the tun clone device.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(
        fd >= 0,
        "open /dev/net/tun: {}",
        std::io::Error::last_os_error()
    );
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: i16,
        pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as i16,
        pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads an ifreq-sized struct we own.
    let rc = unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut req) };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    fd
}

/// Writes one IP packet to a tun descriptor from `open_tun`: the kernel
/// takes it as received on that interface.
pub fn tun_write(fd: i32, packet: &[u8]) {
    // SAFETY: writing a buffer we own to a descriptor the caller owns.
    let n = unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) };
    assert_eq!(
        n as usize,
        packet.len(),
        "tun write: {}",
        std::io::Error::last_os_error()
    );
}
