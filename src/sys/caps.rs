//! Linux capabilities: what a root daemon keeps once its sockets are open.
//!
//! The daemon's effective set shrinks to what it still does itself
//! (re-opening the capture socket when the interface returns: `CAP_NET_RAW`).
//! Its commands are root children that `exec /bin/sh`; for uid 0 the kernel
//! grants a new program the whole *bounding* set, so the bounding set is
//! what commands get and must keep what they need (`-k`; by default
//! `CAP_NET_ADMIN` and `CAP_NET_RAW` for iptables and nft). Under
//! `no_new_privs` a child gets no more than its parent's permitted set, so
//! those stay permitted (not effective) in the daemon too.
//!
//! Both sets are per thread, and threads inherit them when created: call
//! [`restrict`] before starting any thread that will spawn commands.

use std::io;

/// Capability numbers from `<linux/capability.h>`, by index.
pub const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

pub const SETPCAP: u32 = 8;
pub const NET_ADMIN: u32 = 12;
pub const NET_RAW: u32 = 13;

/// A set of capabilities as a bit mask (bit n = capability n).
pub type CapSet = u64;

pub const fn bit(cap: u32) -> CapSet {
    1 << cap
}

/// What commands keep unless `-k` says otherwise.
pub const DEFAULT_KEEP: CapSet = bit(NET_ADMIN) | bit(NET_RAW);
/// What the daemon itself keeps after start-up.
pub const DAEMON_NEEDS: CapSet = bit(NET_RAW);

/// Parses `-k`: `all`, `none`, or a comma-separated list of names with or
/// without the `cap_` prefix, in any case (`cap_net_admin,NET_RAW`).
/// `Ok(None)` is `all`: keep every capability, drop nothing.
pub fn parse_list(text: &str) -> Result<Option<CapSet>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    if text.eq_ignore_ascii_case("none") {
        return Ok(Some(0));
    }
    let mut set = 0;
    for word in text.split(',') {
        let w = word.trim().to_ascii_lowercase();
        let name = w.strip_prefix("cap_").unwrap_or(&w);
        match NAMES.iter().position(|n| *n == name) {
            Some(i) => set |= bit(i as u32),
            None => {
                return Err(format!(
                    "unknown capability '{}' (e.g. cap_net_admin, or all, none)",
                    word.escape_debug()
                ))
            }
        }
    }
    Ok(Some(set))
}

/// `cap_net_admin,cap_net_raw`, or `none`.
pub fn format_list(set: CapSet) -> String {
    let names: Vec<String> = (0..NAMES.len())
        .filter(|&i| set & bit(i as u32) != 0)
        .map(|i| format!("cap_{}", NAMES[i]))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit halves.
const VERSION_3: u32 = 0x2008_0522;

/// The calling thread's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
}

pub fn current() -> io::Result<Caps> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` for version 3, which `data` holds;
    // `hdr` is a valid header for the calling thread (pid 0).
    syscall!(syscall(
        libc::SYS_capget,
        &mut hdr as *mut Header,
        data.as_mut_ptr()
    ))?;
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(Caps {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

fn set(caps: Caps) -> io::Result<()> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |v: u64| [v as u32, (v >> 32) as u32];
    let (e, p, i) = (
        split(caps.effective),
        split(caps.permitted),
        split(caps.inheritable),
    );
    let data = [
        Data {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        Data {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: capset reads one header and two `Data` for version 3, both
    // valid for the call.
    syscall!(syscall(
        libc::SYS_capset,
        &mut hdr as *mut Header,
        data.as_ptr()
    ))?;
    Ok(())
}

/// Highest capability the running kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
        .min(63)
}

/// The calling thread's bounding set.
pub fn bounding() -> io::Result<CapSet> {
    let mut set = 0;
    for cap in 0..=last_cap() {
        // SAFETY: PR_CAPBSET_READ takes a capability number and reads nothing else.
        let r = syscall!(prctl(
            libc::PR_CAPBSET_READ,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong
        ))?;
        if r == 1 {
            set |= bit(cap);
        }
    }
    Ok(set)
}

/// Narrows the calling thread to `commands` in the bounding set (what
/// programs it starts can ever hold), to `own` in its effective set and to
/// both in its permitted set, and clears its inheritable and ambient sets.
/// Returns the bounding set left.
///
/// Narrowing the bounding set needs `CAP_SETPCAP`. Without it (a service
/// manager such as systemd with `CapabilityBoundingSet=` already chose the
/// set) the bounding set stays as that manager left it and the caller sees
/// what it holds beyond `commands` in the result.
pub fn restrict(commands: CapSet, own: CapSet) -> io::Result<CapSet> {
    let held = current()?;
    let mut bset = bounding()?;
    if bset & !commands != 0 && held.effective & bit(SETPCAP) != 0 {
        for cap in 0..=last_cap() {
            if bset & !commands & bit(cap) == 0 {
                continue;
            }
            // SAFETY: PR_CAPBSET_DROP takes a capability number and reads nothing else.
            syscall!(prctl(
                libc::PR_CAPBSET_DROP,
                cap as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong
            ))?;
        }
        bset = bounding()?;
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers. EINVAL on kernels
    // before 4.3, which have no ambient set to clear.
    match syscall!(prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong
    )) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        _ => {}
    }
    // Commands' capabilities stay permitted (not effective): under
    // no_new_privs (systemd's NoNewPrivileges=) a root child gets the
    // bounding set only as far as its parent's permitted set reaches.
    set(Caps {
        effective: own & held.permitted,
        permitted: (own | commands) & held.permitted,
        inheritable: 0,
    })?;
    Ok(bset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lists() {
        assert_eq!(NAMES[NET_ADMIN as usize], "net_admin");
        assert_eq!(NAMES[NET_RAW as usize], "net_raw");
        assert_eq!(NAMES[40], "checkpoint_restore");
        assert_eq!(parse_list("all"), Ok(None));
        assert_eq!(parse_list("ALL"), Ok(None));
        assert_eq!(parse_list("none"), Ok(Some(0)));
        assert_eq!(parse_list("cap_net_admin, NET_RAW"), Ok(Some(DEFAULT_KEEP)));
        assert_eq!(
            parse_list("cap_net_admin,cap_dac_override"),
            Ok(Some(bit(NET_ADMIN) | bit(1)))
        );
        let e = parse_list("cap_net_admin,cap_bogus\n").unwrap_err();
        assert!(e.contains("'cap_bogus'"), "{e}");
        assert!(parse_list("").is_err());
        assert!(parse_list("net_admin,,net_raw").is_err());
        assert_eq!(format_list(DEFAULT_KEEP), "cap_net_admin,cap_net_raw");
        assert_eq!(format_list(0), "none");
        for set in [0, DEFAULT_KEEP, bit(0) | bit(40), (1 << 41) - 1] {
            assert_eq!(parse_list(&format_list(set)), Ok(Some(set)));
        }
    }

    /// In a thread of its own (the sets are per thread), so the test
    /// process keeps its capabilities.
    #[test]
    fn restrict_narrows_the_thread() {
        let before = current().unwrap();
        if before.permitted & bit(8) == 0 {
            panic!("needs root (CAP_SETPCAP): run as root, e.g. `sudo make test`");
        }
        let (caps, bset, left) = std::thread::spawn(|| {
            let left = restrict(DEFAULT_KEEP, DAEMON_NEEDS).unwrap();
            (current().unwrap(), bounding().unwrap(), left)
        })
        .join()
        .unwrap();
        assert_eq!(caps.effective, DAEMON_NEEDS);
        assert_eq!(caps.permitted, DEFAULT_KEEP | DAEMON_NEEDS);
        assert_eq!(caps.inheritable, 0);
        assert_eq!((bset, left), (DEFAULT_KEEP, DEFAULT_KEEP));
        assert_eq!(current().unwrap(), before, "other threads keep their sets");
    }

    /// Without CAP_SETPCAP (as under a unit's CapabilityBoundingSet=) the
    /// bounding set stays as it was, reported; the rest still narrows.
    #[test]
    fn without_setpcap_the_bounding_set_is_left_to_the_service_manager() {
        if current().unwrap().permitted & bit(SETPCAP) == 0 {
            panic!("needs root (CAP_SETPCAP): run as root, e.g. `sudo make test`");
        }
        let (caps, bset, left) = std::thread::spawn(|| {
            // What systemd does for CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN CAP_KILL.
            let unit = DEFAULT_KEEP | bit(5);
            restrict(unit | bit(SETPCAP), unit | bit(SETPCAP)).unwrap();
            let mut held = current().unwrap();
            held.effective &= !bit(SETPCAP);
            held.permitted &= !bit(SETPCAP);
            set(held).unwrap();
            let left = restrict(DEFAULT_KEEP, DAEMON_NEEDS).unwrap();
            (current().unwrap(), bounding().unwrap(), left)
        })
        .join()
        .unwrap();
        assert_eq!(caps.effective, DAEMON_NEEDS);
        assert_eq!(caps.permitted, DEFAULT_KEEP);
        assert_eq!(bset, DEFAULT_KEEP | bit(5) | bit(SETPCAP));
        assert_eq!(left, bset);
    }
}
