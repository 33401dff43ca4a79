//! Running the real `tportknockd` binary in the server namespace and
//! knocking it with hand-built frames from the client namespace.

use super::*;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

pub const BIN: &str = env!("CARGO_BIN_EXE_tportknockd");

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// A daemon under test: killed by pid on drop, its stderr in `log`.
pub struct Daemon {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Asks for a stats line (SIGUSR1) and returns the new one; panics with
    /// the log if none comes within 5 s.
    pub fn stats_line(&self) -> String {
        const MARK: &str = "stats: frames=";
        let before = self.log_text().matches(MARK).count();
        self.proc.signal(libc::SIGUSR1);
        let text = wait_for(Duration::from_secs(5), || {
            let t = self.log_text();
            (t.matches(MARK).count() > before).then_some(t)
        })
        .unwrap_or_else(|| panic!("no stats line after SIGUSR1; log:\n{}", self.log_tail(30)));
        let line = text.lines().rfind(|l| l.contains(MARK)).unwrap();
        line.to_owned()
    }

    /// The numeric `key=value` pairs of a fresh stats line
    /// ([`Daemon::stats_line`]).
    pub fn stats(&self) -> std::collections::HashMap<String, u64> {
        self.stats_line()
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect()
    }

    /// Waits until the log contains `needle`; panics with the log if not.
    #[track_caller]
    pub fn expect_log(&self, needle: &str, limit: Duration) {
        if wait_for(limit, || self.log_text().contains(needle).then_some(())).is_none() {
            panic!(
                "daemon log never showed {needle:?}; log:\n{}",
                self.log_text()
            );
        }
    }
}

/// Writes a config readable only by root, as the daemon demands.
pub fn write_config(dir: &TempDir, text: &str) -> PathBuf {
    let path = dir.join("knock.conf");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Starts the daemon on the server's veth with pid file and journal in
/// `dir`, `-d` on, and waits for it to report ready.
pub fn start_daemon(pair: &Pair, dir: &TempDir, extra: &[&str]) -> Daemon {
    start_daemon_on(&pair.server, Some(&pair.server_if), dir, extra)
}

pub fn start_daemon_on(ns: &Netns, iface: Option<&str>, dir: &TempDir, extra: &[&str]) -> Daemon {
    start_daemon_opts(ns, iface, dir, extra, true)
}

/// As [`start_daemon_on`]; `debug: false` leaves out `-d`, for floods whose
/// every frame would otherwise be a log line.
pub fn start_daemon_opts(
    ns: &Netns,
    iface: Option<&str>,
    dir: &TempDir,
    extra: &[&str],
    debug: bool,
) -> Daemon {
    let log = dir.join(&format!(
        "daemon{}.log",
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let mut cmd = ns.command(BIN);
    cmd.arg("-c").arg(dir.join("knock.conf"));
    if let Some(i) = iface {
        cmd.args(["-i", i]);
    }
    cmd.arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"));
    if debug {
        cmd.arg("-d");
    }
    cmd.args(extra);
    cmd.stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    let d = Daemon {
        proc: spawn(cmd),
        log,
    };
    d.expect_log("ready:", Duration::from_secs(10));
    d
}

/// One knock frame: (protocol number, destination port, TCP flags).
pub type Hit = (u8, u16, u8);

/// Builds the Ethernet frame for one knock from `src` to `dst`.
pub fn knock_frame(pair: &Pair, src: IpAddr, dst: IpAddr, hit: Hit) -> Vec<u8> {
    let (proto, port, flags) = hit;
    let l4 = if proto == TCP {
        frame::tcp(40000, port, flags)
    } else {
        frame::udp(40000, port, b"knock")
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => frame::ether(
            pair.server_mac(),
            pair.client_mac(),
            &[],
            frame::ETH_IPV4,
            &frame::ipv4(s, d, proto, l4),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => frame::ether(
            pair.server_mac(),
            pair.client_mac(),
            &[],
            frame::ETH_IPV6,
            &frame::ipv6(s, d, proto, l4, &[]),
        ),
        _ => panic!("mixed address families"),
    }
}

/// Sends a sequence from the client's own IPv4 address to the server's,
/// with a small gap so frames arrive in order as separate events.
pub fn knock(pair: &Pair, hits: &[Hit]) {
    knock_from(
        pair,
        IpAddr::V4(pair.client4),
        IpAddr::V4(pair.server4),
        hits,
    );
}

pub fn knock_from(pair: &Pair, src: IpAddr, dst: IpAddr, hits: &[Hit]) {
    for hit in hits {
        pair.send_frames(vec![knock_frame(pair, src, dst, *hit)]);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Lines of a file that commands append to.
pub fn lines(path: &Path) -> Vec<String> {
    read_lines(path)
}

/// Waits until `path` has at least `n` lines.
pub fn wait_lines(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    wait_for(limit, || {
        let l = read_lines(path);
        (l.len() >= n).then_some(l)
    })
    .unwrap_or_else(|| read_lines(path))
}
