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

use std::fmt;
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

/// `CAP_SETPCAP`: needed to narrow the bounding set.
pub const SETPCAP: u32 = 8;
/// `CAP_NET_ADMIN`: what iptables and nft need.
pub const NET_ADMIN: u32 = 12;
/// `CAP_NET_RAW`: what a packet socket (the capture ring) needs.
pub const NET_RAW: u32 = 13;

/// A set of capabilities, as the kernel's masks hold them (bit n is
/// capability n). Shown as `cap_net_admin,cap_net_raw`, or `none`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

impl CapSet {
    /// No capability at all.
    pub const EMPTY: CapSet = CapSet(0);

    /// The set of capability `cap` alone (a number from `NAMES`, below 64).
    pub const fn of(cap: u32) -> CapSet {
        debug_assert!(cap < 64);
        CapSet(1 << cap)
    }

    /// The set behind a kernel mask.
    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    /// The kernel mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Capabilities in either set.
    pub const fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    /// Capabilities in both sets.
    pub const fn intersection(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// Capabilities in `self` but not in `other`.
    pub const fn without(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Does the set hold capability `cap`?
    pub const fn contains(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// No capability in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for CapSet {
    type Output = CapSet;
    fn bitor(self, other: CapSet) -> CapSet {
        self.union(other)
    }
}

impl std::ops::BitAnd for CapSet {
    type Output = CapSet;
    fn bitand(self, other: CapSet) -> CapSet {
        self.intersection(other)
    }
}

/// `cap_net_admin,cap_net_raw`, or `none`; what [`parse_keep`] reads back.
impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = (0..NAMES.len() as u32).filter(|&c| self.contains(c));
        let Some(first) = names.next() else {
            return f.write_str("none");
        };
        write!(f, "cap_{}", NAMES[first as usize])?;
        for c in names {
            write!(f, ",cap_{}", NAMES[c as usize])?;
        }
        Ok(())
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSet({self})")
    }
}

/// What commands keep unless `-k` says otherwise.
pub const DEFAULT_KEEP: CapSet = CapSet::of(NET_ADMIN).union(CapSet::of(NET_RAW));
/// What the daemon itself keeps after start-up.
pub const DAEMON_NEEDS: CapSet = CapSet::of(NET_RAW);
/// What it keeps effective besides while a kernel door is configured: the
/// kernel checks `CAP_NET_ADMIN` of the sending thread on every nftables
/// and ipset message.
pub const KERNEL_DOORS_NEED: CapSet = CapSet::of(NET_ADMIN);

/// What `-k` asks the commands to keep when the daemon runs as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// `-k all`: drop nothing, in the daemon either.
    All,
    /// These (the daemon itself keeps [`DAEMON_NEEDS`]).
    Only(CapSet),
}

impl Default for Keep {
    fn default() -> Keep {
        Keep::Only(DEFAULT_KEEP)
    }
}

/// Parses `-k`: `all`, `none`, or a comma-separated list of names with or
/// without the `cap_` prefix, in any case (`cap_net_admin,NET_RAW`).
pub fn parse_keep(text: &str) -> Result<Keep, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("all") {
        return Ok(Keep::All);
    }
    if text.eq_ignore_ascii_case("none") {
        return Ok(Keep::Only(CapSet::EMPTY));
    }
    let mut set = CapSet::EMPTY;
    for word in text.split(',') {
        let w = word.trim().to_ascii_lowercase();
        let name = w.strip_prefix("cap_").unwrap_or(&w);
        match NAMES.iter().position(|n| *n == name) {
            Some(i) => set = set | CapSet::of(i as u32),
            None => {
                return Err(format!(
                    "unknown capability '{}' (e.g. cap_net_admin, or all, none)",
                    word.escape_debug()
                ))
            }
        }
    }
    Ok(Keep::Only(set))
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
    /// What the thread may use now.
    pub effective: CapSet,
    /// What it may make effective again.
    pub permitted: CapSet,
    /// What survives an exec into a program's inheritable set.
    pub inheritable: CapSet,
}

/// The calling thread's sets (`capget`).
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
    let join = |f: fn(&Data) -> u32| {
        CapSet::from_bits(u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32))
    };
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
    let split = |v: CapSet| [v.bits() as u32, (v.bits() >> 32) as u32];
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
    let mut set = CapSet::EMPTY;
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
            set = set | CapSet::of(cap);
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
    if !bset.without(commands).is_empty() && held.effective.contains(SETPCAP) {
        for cap in 0..=last_cap() {
            if !bset.without(commands).contains(cap) {
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
        inheritable: CapSet::EMPTY,
    })?;
    Ok(bset)
}

/// Makes `caps` effective on the calling thread (`on`) or not, leaving
/// them permitted either way. Raising a capability that is not permitted
/// fails with `EPERM`: it was given up for good.
pub fn set_effective(caps: CapSet, on: bool) -> io::Result<()> {
    let mut held = current()?;
    if on && !caps.without(held.permitted).is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    held.effective = if on {
        held.effective | caps
    } else {
        held.effective.without(caps)
    };
    set(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lists() {
        assert_eq!(NAMES[NET_ADMIN as usize], "net_admin");
        assert_eq!(NAMES[NET_RAW as usize], "net_raw");
        assert_eq!(NAMES[40], "checkpoint_restore");
        assert_eq!(parse_keep("all"), Ok(Keep::All));
        assert_eq!(parse_keep("ALL"), Ok(Keep::All));
        assert_eq!(parse_keep("none"), Ok(Keep::Only(CapSet::EMPTY)));
        assert_eq!(
            parse_keep("cap_net_admin, NET_RAW"),
            Ok(Keep::Only(DEFAULT_KEEP))
        );
        assert_eq!(
            parse_keep("cap_net_admin,cap_dac_override"),
            Ok(Keep::Only(CapSet::from_bits((1 << 12) | (1 << 1))))
        );
        let e = parse_keep("cap_net_admin,cap_bogus\n").unwrap_err();
        assert!(e.contains("'cap_bogus'"), "{e}");
        assert!(parse_keep("").is_err());
        assert!(parse_keep("net_admin,,net_raw").is_err());
        assert_eq!(DEFAULT_KEEP.to_string(), "cap_net_admin,cap_net_raw");
        assert_eq!(format!("{DAEMON_NEEDS:?}"), "CapSet(cap_net_raw)");
        assert_eq!(CapSet::EMPTY.to_string(), "none");
        let all_known = CapSet::from_bits((1 << 41) - 1);
        for set in [
            CapSet::EMPTY,
            DEFAULT_KEEP,
            CapSet::of(0) | CapSet::of(40),
            all_known,
        ] {
            assert_eq!(parse_keep(&set.to_string()), Ok(Keep::Only(set)));
        }
    }

    /// In a thread of its own (the sets are per thread), so the test
    /// process keeps its capabilities.
    #[test]
    fn restrict_narrows_the_thread() {
        let before = current().unwrap();
        if !before.permitted.contains(SETPCAP) {
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
        assert_eq!(caps.inheritable, CapSet::EMPTY);
        assert_eq!((bset, left), (DEFAULT_KEEP, DEFAULT_KEEP));
        assert_eq!(current().unwrap(), before, "other threads keep their sets");
    }

    /// Kernel doors: CAP_NET_ADMIN effective only while wanted, and raised
    /// again only if it stayed permitted.
    #[test]
    fn effective_caps_come_and_go_within_the_permitted_set() {
        if !current().unwrap().permitted.contains(SETPCAP) {
            panic!("needs root (CAP_SETPCAP): run as root, e.g. `sudo make test`");
        }
        let steps = std::thread::spawn(|| {
            let mut seen = Vec::new();
            restrict(DEFAULT_KEEP, DAEMON_NEEDS | KERNEL_DOORS_NEED).unwrap();
            seen.push(current().unwrap().effective);
            set_effective(KERNEL_DOORS_NEED, false).unwrap();
            seen.push(current().unwrap().effective);
            set_effective(KERNEL_DOORS_NEED, true).unwrap();
            seen.push(current().unwrap().effective);
            // -k none and no kernel door at start: gone for good.
            restrict(CapSet::EMPTY, DAEMON_NEEDS).unwrap();
            let again = set_effective(KERNEL_DOORS_NEED, true).unwrap_err();
            (seen, again.raw_os_error(), current().unwrap())
        })
        .join()
        .unwrap();
        let (seen, again, last) = steps;
        let both = DAEMON_NEEDS | KERNEL_DOORS_NEED;
        assert_eq!(seen, [both, DAEMON_NEEDS, both]);
        assert_eq!(again, Some(libc::EPERM));
        assert_eq!(
            (last.effective, last.permitted),
            (DAEMON_NEEDS, DAEMON_NEEDS)
        );
    }

    /// Without CAP_SETPCAP (as under a unit's CapabilityBoundingSet=) the
    /// bounding set stays as it was, reported; the rest still narrows.
    #[test]
    fn without_setpcap_the_bounding_set_is_left_to_the_service_manager() {
        if !current().unwrap().permitted.contains(SETPCAP) {
            panic!("needs root (CAP_SETPCAP): run as root, e.g. `sudo make test`");
        }
        let (caps, bset, left) = std::thread::spawn(|| {
            // What systemd does for CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN CAP_KILL.
            let unit = DEFAULT_KEEP | CapSet::of(5);
            let setpcap = CapSet::of(SETPCAP);
            restrict(unit | setpcap, unit | setpcap).unwrap();
            let mut held = current().unwrap();
            held.effective = held.effective.without(setpcap);
            held.permitted = held.permitted.without(setpcap);
            set(held).unwrap();
            let left = restrict(DEFAULT_KEEP, DAEMON_NEEDS).unwrap();
            (current().unwrap(), bounding().unwrap(), left)
        })
        .join()
        .unwrap();
        assert_eq!(caps.effective, DAEMON_NEEDS);
        assert_eq!(caps.permitted, DEFAULT_KEEP);
        assert_eq!(bset, DEFAULT_KEEP | CapSet::of(5) | CapSet::of(SETPCAP));
        assert_eq!(left, bset);
    }
}
