//! Kernel-door latency: one element added (or refreshed) over netlink by
//! `doors::kernel`, against the same change made the way a start command
//! makes it today, `sh -c "nft add element …"` / `sh -c "ipset add …"`.
//! (`cargo bench --bench kernel_doors`, as root: it works in a network
//! namespace of its own.) Figures are medians and 99th percentiles of
//! single operations, wall clock, in microseconds. Under `cargo test` it
//! only does a few of each, as a smoke run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use tportknockd::config::sets::{IpsetName, NftSet, SetTarget};
use tportknockd::doors::kernel::{KernelDoors, Refresh};

/// A throwaway namespace, deleted on drop.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread inside `ns`; processes it spawns are there too.
fn in_ns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: a valid namespace fd; only this fresh thread moves.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("bench thread")
}

fn stats(mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn time_each(n: usize, mut op: impl FnMut(usize)) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            op(i);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn v4(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32))
}

fn v6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128))
}

fn report(what: &str, us: Vec<f64>) -> f64 {
    let n = us.len();
    let (median, p99) = stats(us);
    println!("{what:<52} median {median:>8.1} us   p99 {p99:>8.1} us   (n={n})");
    median
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("the kernel_doors bench needs root (network namespaces, nft, ipset): sudo cargo bench --bench kernel_doors");
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (n_nl, n_sh) = if full { (2000, 300) } else { (20, 3) };
    let ns = Ns(format!("tpkbench{}", std::process::id()));
    sh(&format!("ip netns add {}", ns.0));
    sh(&format!(
        "ip netns exec {} sh -c \"nft add table inet f && \
         nft add set inet f k4 '{{ type ipv4_addr; flags timeout; }}' && \
         nft add set inet f k6 '{{ type ipv6_addr; flags timeout; }}' && \
         ipset create k4 hash:ip timeout 600 maxelem 1000000\"",
        ns.0
    ));
    let t = Duration::from_secs(600);
    let k4 = SetTarget::Nft(NftSet::parse("inet f k4").unwrap());
    let k6 = SetTarget::Nft(NftSet::parse("inet f k6").unwrap());
    let i4 = SetTarget::Ipset(IpsetName::parse("k4").unwrap());
    println!("one element per operation; netlink: doors::kernel, shell: sh -c as a start command runs it");
    let figures = in_ns(&ns.0, move || {
        let mut kd = KernelDoors::open().unwrap();
        println!("refresh method: {:?}", kd.refresh());
        // The shell first, while the sets are empty: nft reads the rule set
        // (and set contents) on every start, so full sets would slow it.
        let mut sh_m = Vec::new();
        let run = |cmd: String| {
            let st = Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .status()
                .unwrap();
            assert!(st.success(), "{cmd}");
        };
        sh_m.push(report(
            "sh -c    nft add element, new IPv4 element",
            time_each(n_sh, |i| {
                run(format!(
                    "nft add element inet f k4 '{{ {} timeout 600s }}'",
                    v4(100_000 + i)
                ))
            }),
        ));
        sh_m.push(report(
            "sh -c    ipset add -exist, new IPv4 element",
            time_each(n_sh, |i| {
                run(format!(
                    "ipset add -exist k4 {} timeout 600",
                    v4(100_000 + i)
                ))
            }),
        ));
        let mut m = Vec::new();
        m.push(report(
            "netlink  nft add, new IPv4 element",
            time_each(n_nl, |i| kd.add(&k4, v4(i), t).unwrap()),
        ));
        m.push(report(
            "netlink  nft add, existing IPv4 element (refresh)",
            time_each(n_nl, |_| kd.add(&k4, v4(0), t).unwrap()),
        ));
        let mut replace = KernelDoors::with_refresh(Refresh::Replace).unwrap();
        report(
            "netlink  nft add, existing element (Replace refresh)",
            time_each(n_nl, |_| replace.add(&k4, v4(0), t).unwrap()),
        );
        report(
            "netlink  nft add, new IPv6 element",
            time_each(n_nl, |i| kd.add(&k6, v6(i), t).unwrap()),
        );
        report(
            "netlink  nft remove IPv4 element",
            time_each(n_nl, |i| assert!(kd.remove(&k4, v4(i)).unwrap())),
        );
        m.push(report(
            "netlink  ipset add, new IPv4 element",
            time_each(n_nl, |i| kd.add(&i4, v4(i), t).unwrap()),
        ));
        report(
            "netlink  ipset add, existing element (refresh)",
            time_each(n_nl, |_| kd.add(&i4, v4(0), t).unwrap()),
        );
        m.extend(sh_m);
        m
    });
    // figures: nft new, nft refresh, ipset new, sh nft, sh ipset.
    println!(
        "shell / netlink, new element: nft {:.0}x, ipset {:.0}x",
        figures[3] / figures[0],
        figures[4] / figures[2],
    );
}
