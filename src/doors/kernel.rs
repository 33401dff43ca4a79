//! Kernel doors: the knocker's address as a set element with a timeout, in
//! an nftables set or an ipset, written over netlink (no shell, no fork).
//! The kernel removes the element when its timeout runs out, so the door
//! closes even if the daemon is killed and never comes back.
//!
//! [`KernelDoors`] is a small synchronous client on one `NETLINK_NETFILTER`
//! socket, in the network namespace it was opened in:
//!
//! * [`lookup`](KernelDoors::lookup) checks at start-up that a set exists,
//!   holds addresses of the right family and supports timeouts; otherwise
//!   its error carries the `nft …` / `ipset …` line that fixes it.
//! * [`add`](KernelDoors::add) adds the address or refreshes it to the full
//!   timeout in one transaction: in place where the kernel can (ipset
//!   always, nftables since Linux 6.12), else by replacing the element,
//!   which older kernels do not make seamless for a lookup running at the
//!   instant of the commit (see [`Refresh`]).
//! * [`remove`](KernelDoors::remove) deletes it; absent is fine.
//! * [`expires`](KernelDoors::expires) reads the time it has left.
//!
//! Every reply is checked: from the kernel (port 0), with one of the
//! sequence numbers just sent (stale replies of an earlier, timed-out
//! request are skipped), read into a fixed buffer, parsed by the checked
//! views of `wire::nftables` / `wire::ipset`. A request waits at most
//! [`REPLY_TIMEOUT`] for its answer.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::sets::{AddrFamily, IpsetName, NftSet, SetTarget};
use crate::config::Event;
use crate::sys::netlink as sys;
use crate::wire::ipset;
use crate::wire::nfnetlink::{
    parse_ack, parse_done, Messages, Writer, NLMSG_DONE, NLMSG_ERROR, NLM_F_CREATE,
};
use crate::wire::nftables::{self, cmd, key_type, set_flags};
use crate::wire::rtnetlink::{NlMsg, ParseError};

/// How long one request waits for the kernel's answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Receive buffer: netlink dumps come in datagrams of at most 32 KiB, other
/// replies are far smaller. A longer datagram is an error, not a resize.
const RECV_BUF: usize = 64 * 1024;

/// How [`KernelDoors::add`] refreshes an nftables element that is already
/// there. Both commit as one nf_tables transaction: a lookup that starts
/// after the commit finds the element with its new timeout, one that ends
/// before it finds the old one. They differ for a lookup that runs at the
/// instant of the commit (see [`Refresh::Replace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// One `NEWSETELEM` with `NFTA_SET_ELEM_TIMEOUT` and
    /// `NFTA_SET_ELEM_EXPIRATION`: since Linux 6.12 `nft_add_set_elem()`
    /// turns it into an update of the existing element, and
    /// `nf_tables_commit()` rewrites that element's expiration. The element
    /// is never removed, so no lookup can miss it. Older kernels accept the
    /// same message but leave the old expiry (through 6.11 a re-add of an
    /// existing element is a silent no-op), so the door would shut early.
    InPlace,
    /// One batch of add, delete, add: the first add makes sure the element
    /// exists (so the delete cannot fail), the delete and the second add
    /// replace it with one with a fresh timeout. The only way before 6.12.
    ///
    /// Not seamless at the instant of the commit, and no batch can make it
    /// so: `nf_tables_commit()` flips the generation cursor, then walks the
    /// transactions in message order, so `nft_setelem_remove()` unlinks the
    /// old element from the hash before `nft_setelem_activate()` makes the
    /// new one valid in the old generation. A lookup (`nft_rhash_lookup()`
    /// for a packet, `nft_rhash_get()` for a netlink `GETSETELEM`) that read
    /// the cursor just before the flip and walks the bucket after the unlink
    /// finds neither: the new element, inserted at the head of the bucket,
    /// is not active in the generation it read. Another order cannot help:
    /// the new element can only be inserted once the old one is deactivated
    /// in the next generation, which only the delete does. Packet lookups
    /// repeat such a miss since Linux 6.17 ("netfilter: nf_tables: restart
    /// set lookup on base_seq change", in 6.16.8 and 6.12.48 too); on older
    /// kernels a packet whose lookup runs at that instant goes on to the
    /// rules after the set. Netlink reads never repeat it.
    Replace,
}

impl Refresh {
    /// [`Refresh::InPlace`] on Linux 6.12 and later (per `release`, e.g.
    /// `6.18.44-foo`), else [`Refresh::Replace`] (also right on a distro
    /// kernel that backported the update, only a little slower).
    pub fn for_kernel(release: &str) -> Refresh {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if (major, minor) >= (6, 12) {
            Refresh::InPlace
        } else {
            Refresh::Replace
        }
    }
}

/// Why a kernel-door operation failed.
#[derive(Debug)]
pub enum Reason {
    /// The table or set does not exist.
    Missing,
    /// The set's elements are not addresses of the knocker's family.
    WrongKey(String),
    /// The set was made without timeout support.
    NoTimeout,
    /// The set is of a kind a door cannot use (interval, map, …).
    Unsupported(String),
    /// A timeout the set cannot hold.
    TimeoutRange(Duration),
    /// The kernel refused (a positive errno; ipset codes from 4096).
    Kernel(i32),
    /// The socket failed.
    Io(io::Error),
    /// No answer within [`REPLY_TIMEOUT`].
    NoAnswer,
    /// An answer that does not parse.
    Malformed(ParseError),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => f.write_str("it does not exist"),
            Reason::WrongKey(found) => write!(f, "its elements are {found}"),
            Reason::NoTimeout => f.write_str("it has no timeout support"),
            Reason::Unsupported(what) => write!(f, "it is {what}, which a door cannot use"),
            Reason::TimeoutRange(t) => write!(f, "timeout {} is out of its range", Span(*t)),
            Reason::Kernel(errno) => f.write_str(&errno_text(*errno)),
            Reason::Io(e) => write!(f, "netlink: {e}"),
            Reason::NoAnswer => write!(
                f,
                "the kernel did not answer within {}",
                Span(REPLY_TIMEOUT)
            ),
            Reason::Malformed(e) => write!(f, "unexpected answer from the kernel: {e}"),
        }
    }
}

/// A timeout in whole seconds (`30s`, as `Duration`'s `Debug` wrote it) or
/// else milliseconds (`2250ms`), through integer formatting: `Debug`'s
/// decimal fractions are 2 KB of code the daemon needs nowhere else.
struct Span(Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else {
            write!(f, "{}ms", u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
    }
}

fn errno_text(errno: i32) -> String {
    if let Some(text) = ipset::error_text(errno) {
        return text.to_string();
    }
    match errno {
        libc::ENOENT => "no such table, set or element".to_string(),
        libc::EPERM => "not permitted (needs CAP_NET_ADMIN in the set's network namespace)".into(),
        libc::ENFILE | libc::ENOSPC => "the set is full (its size limit is reached)".into(),
        libc::EOPNOTSUPP => "not supported by this kernel (module not available?)".into(),
        libc::EINVAL => "the kernel refused the request as invalid (was the set re-created \
                         with another key type, or without timeout support?)"
            .into(),
        _ => format!("kernel: {}", io::Error::from_raw_os_error(errno)),
    }
}

/// A failed operation on one set: what, why, and the command that fixes
/// it when there is one.
#[derive(Debug)]
pub struct KernelError {
    /// The set, as `nftables set 'inet filter knocked4'` or `ipset 'k4'`.
    pub target: String,
    /// What went wrong.
    pub reason: Reason,
    /// A shell command line that would make the set usable.
    pub fix: Option<String>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.reason)?;
        if let Some(fix) = &self.fix {
            write!(f, "; to fix it: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// `nft`'s key type name for a door set of `family`.
fn nft_type(family: AddrFamily) -> &'static str {
    match family {
        AddrFamily::V4 => "ipv4_addr",
        AddrFamily::V6 => "ipv6_addr",
    }
}

/// The command line that creates the set a door of `family` needs.
/// `recreate`: the set exists but is wrong, so it has to go first.
pub fn fix_line(
    target: &SetTarget,
    family: AddrFamily,
    timeout: Duration,
    recreate: bool,
) -> String {
    match target {
        SetTarget::Nft(s) => {
            let create = format!(
                "nft add set {} {} {} '{{ type {}; flags timeout; }}'",
                s.family,
                s.table,
                s.set,
                nft_type(family)
            );
            if recreate {
                format!(
                    "nft delete set {} {} {} && {create}",
                    s.family, s.table, s.set
                )
            } else {
                format!("nft add table {} {} && {create}", s.family, s.table)
            }
        }
        SetTarget::Ipset(name) => {
            let fam = match family {
                AddrFamily::V4 => "inet",
                AddrFamily::V6 => "inet6",
            };
            let secs = timeout
                .as_secs()
                .clamp(1, u64::from(ipset::MAX_TIMEOUT_SECS));
            let create = format!("ipset create {name} hash:ip family {fam} timeout {secs}");
            if recreate {
                format!("ipset destroy {name} && {create}")
            } else {
                create
            }
        }
    }
}

/// Where the doors write kernel doors: [`KernelDoors`] in the daemon, a
/// stand-in in tests of the door table. Calls are synchronous.
pub trait SetBackend {
    /// As [`KernelDoors::lookup`].
    fn lookup(
        &mut self,
        target: &SetTarget,
        family: AddrFamily,
        timeout: Duration,
    ) -> Result<(), KernelError>;
    /// As [`KernelDoors::add`].
    fn add(
        &mut self,
        target: &SetTarget,
        addr: IpAddr,
        timeout: Duration,
    ) -> Result<(), KernelError>;
    /// As [`KernelDoors::remove`].
    fn remove(&mut self, target: &SetTarget, addr: IpAddr) -> Result<bool, KernelError>;
}

impl SetBackend for KernelDoors {
    fn lookup(
        &mut self,
        target: &SetTarget,
        family: AddrFamily,
        timeout: Duration,
    ) -> Result<(), KernelError> {
        KernelDoors::lookup(self, target, family, timeout)
    }

    fn add(
        &mut self,
        target: &SetTarget,
        addr: IpAddr,
        timeout: Duration,
    ) -> Result<(), KernelError> {
        KernelDoors::add(self, target, addr, timeout)
    }

    fn remove(&mut self, target: &SetTarget, addr: IpAddr) -> Result<bool, KernelError> {
        KernelDoors::remove(self, target, addr)
    }
}

/// The config key that names a set of this kind for this family.
fn key_name(target: &SetTarget, family: AddrFamily) -> &'static str {
    match (target, family) {
        (SetTarget::Nft(_), AddrFamily::V4) => "nft_set",
        (SetTarget::Nft(_), AddrFamily::V6) => "nft_set_6",
        (SetTarget::Ipset(_), AddrFamily::V4) => "ipset",
        (SetTarget::Ipset(_), AddrFamily::V6) => "ipset_6",
    }
}

/// Looks up every set `events` name (each set and family once): one
/// message per set a door cannot use, naming the event, its key, the
/// reason and the command that fixes it. Empty: all are usable.
pub fn check_sets(events: &[Event], backend: &mut dyn SetBackend) -> Vec<String> {
    // Sorted, searched by halves (a HashSet would be 2 KB more code).
    let mut seen: Vec<(SetTarget, AddrFamily)> = Vec::new();
    let mut problems = Vec::new();
    for event in events {
        let delay = Duration::from_secs(event.command_delay.unwrap_or(1).into());
        for (target, family) in event.sets.all() {
            let key = (target, family);
            match seen.binary_search(&key) {
                Ok(_) => continue,
                Err(at) => seen.insert(at, key.clone()),
            }
            let (target, family) = key;
            if let Err(e) = backend.lookup(&target, family, delay) {
                problems.push(format!(
                    "<{}> {}: kernel door unusable: {e}",
                    event.name,
                    key_name(&target, family)
                ));
            }
        }
    }
    problems
}

/// Every distinct set `events` name, for messages.
pub fn sets_named(events: &[Event]) -> Vec<SetTarget> {
    let mut out: Vec<SetTarget> = Vec::new();
    for event in events {
        for (target, _) in event.sets.all() {
            if !out.contains(&target) {
                out.push(target);
            }
        }
    }
    out
}

/// The netlink client for kernel doors. Not thread-safe by design: the
/// daemon's loop owns one.
#[derive(Debug)]
pub struct KernelDoors {
    sock: Socket,
    seq: u32,
    w: Writer,
    buf: Vec<u8>,
    refresh: Refresh,
    /// The ipset protocol version agreed with the kernel, once asked.
    ipset_proto: Option<u8>,
}

impl KernelDoors {
    /// Opens the socket in the calling thread's network namespace, with the
    /// refresh method this kernel supports.
    pub fn open() -> io::Result<KernelDoors> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        KernelDoors::with_refresh(Refresh::for_kernel(release.trim()))
    }

    /// As [`open`](Self::open), with a chosen [`Refresh`] (tests use both).
    pub fn with_refresh(refresh: Refresh) -> io::Result<KernelDoors> {
        let sock = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW.cloexec(),
            Some(Protocol::from(libc::NETLINK_NETFILTER)),
        )?;
        sys::bind(&sock, 0)?;
        sock.set_read_timeout(Some(REPLY_TIMEOUT))?;
        // Sequence numbers only need to differ from a previous socket's
        // leftovers; the clock is as good a start as any.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(KernelDoors {
            sock,
            seq,
            w: Writer::new(),
            buf: vec![0; RECV_BUF],
            refresh,
            ipset_proto: None,
        })
    }

    /// The refresh method in use.
    pub fn refresh(&self) -> Refresh {
        self.refresh
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Checks that `target` can hold doors for knockers of `family`.
    /// `timeout` (the event's `command_delay`) only goes into the fix line.
    pub fn lookup(
        &mut self,
        target: &SetTarget,
        family: AddrFamily,
        timeout: Duration,
    ) -> Result<(), KernelError> {
        let result = check_names(target).and_then(|()| match target {
            SetTarget::Nft(s) => self.nft_lookup(s, family),
            SetTarget::Ipset(name) => self.ipset_lookup(name, family),
        });
        result.map_err(|reason| {
            let fix = match &reason {
                Reason::Missing => Some(fix_line(target, family, timeout, false)),
                Reason::WrongKey(_) | Reason::NoTimeout | Reason::Unsupported(_) => {
                    Some(fix_line(target, family, timeout, true))
                }
                _ => None,
            };
            KernelError {
                target: target.to_string(),
                reason,
                fix,
            }
        })
    }

    /// Adds `addr` to `target` with `timeout`, or refreshes it to the full
    /// `timeout` if it is there. nftables keeps milliseconds, ipset whole
    /// seconds (at least 1, at most about 24.8 days).
    pub fn add(
        &mut self,
        target: &SetTarget,
        addr: IpAddr,
        timeout: Duration,
    ) -> Result<(), KernelError> {
        let result = check_names(target).and_then(|()| match target {
            SetTarget::Nft(s) => self.nft_add(s, addr, timeout),
            SetTarget::Ipset(name) => self.ipset_add(name, addr, timeout),
        });
        result.map_err(|reason| error(target, reason))
    }

    /// Removes `addr` from `target`: `Ok(true)` if it was there, `Ok(false)`
    /// if not (already expired, never added, or the set itself is gone).
    pub fn remove(&mut self, target: &SetTarget, addr: IpAddr) -> Result<bool, KernelError> {
        let result = check_names(target).and_then(|()| match target {
            SetTarget::Nft(s) => self.nft_remove(s, addr),
            SetTarget::Ipset(name) => self.ipset_remove(name, addr),
        });
        result.map_err(|reason| error(target, reason))
    }

    /// The time `addr` has left in `target`; `None` if it is not there.
    /// An element without a timeout reads as `Duration::MAX`. For an ipset
    /// this lists the whole set (fine for tests and status, not for a hot
    /// path); its resolution is a second.
    pub fn expires(
        &mut self,
        target: &SetTarget,
        addr: IpAddr,
    ) -> Result<Option<Duration>, KernelError> {
        let result = check_names(target).and_then(|()| match target {
            SetTarget::Nft(s) => self.nft_expires(s, addr),
            SetTarget::Ipset(name) => self.ipset_expires(name, addr),
        });
        result.map_err(|reason| error(target, reason))
    }

    // ---- nftables ----

    fn nft_lookup(&mut self, s: &NftSet, family: AddrFamily) -> Result<(), Reason> {
        self.w.clear();
        let seq = self.next_seq();
        nftables::get_set(&mut self.w, seq, &s.as_ref());
        let mut info = None;
        self.exchange(seq, seq, &[seq], None, |msg| {
            if info.is_none() {
                info = Some(nftables::parse_set(msg)?);
            }
            Ok(())
        })
        .map_err(missing_on_enoent)?;
        let info = info.ok_or(Reason::Malformed(ParseError::Malformed(
            "no set in the answer",
        )))?;
        for (flag, what) in [
            (set_flags::INTERVAL, "an interval set"),
            (set_flags::MAP, "a map"),
            (set_flags::OBJECT, "an object map"),
            (set_flags::CONCAT, "a concatenation"),
            (set_flags::CONSTANT, "a constant set"),
        ] {
            if info.flags & flag != 0 {
                return Err(Reason::Unsupported(what.to_string()));
            }
        }
        let (want_type, want_len) = match family {
            AddrFamily::V4 => (key_type::IPV4_ADDR, 4),
            AddrFamily::V6 => (key_type::IPV6_ADDR, 16),
        };
        if info.key_type != want_type || info.key_len != want_len {
            let found = match (info.key_type, info.key_len) {
                (key_type::IPV4_ADDR, 4) => "ipv4_addr".to_string(),
                (key_type::IPV6_ADDR, 16) => "ipv6_addr".to_string(),
                (t, l) => format!("of nft type {t} ({l} bytes)"),
            };
            return Err(Reason::WrongKey(format!(
                "{found}, not {} (only single addresses are supported, no concatenations)",
                nft_type(family)
            )));
        }
        if info.flags & set_flags::TIMEOUT == 0 {
            return Err(Reason::NoTimeout);
        }
        Ok(())
    }

    fn nft_add(&mut self, s: &NftSet, addr: IpAddr, timeout: Duration) -> Result<(), Reason> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // The kernel turns milliseconds into jiffies and refuses overflow;
        // a century is far beyond any command_delay.
        if ms == 0 || ms > 100 * 365 * 86_400_000 {
            return Err(Reason::TimeoutRange(timeout));
        }
        let key = key_bytes(&addr);
        let set = s.as_ref();
        self.w.clear();
        let begin = self.next_seq();
        self.w.batch_begin(begin);
        let mut acks = [0u32; 3];
        let n = match self.refresh {
            Refresh::InPlace => {
                acks[0] = self.next_seq();
                nftables::elem(
                    &mut self.w,
                    cmd::NEWSETELEM,
                    NLM_F_CREATE,
                    acks[0],
                    &set,
                    &key,
                    Some(ms),
                    Some(ms),
                );
                1
            }
            Refresh::Replace => {
                acks[0] = self.next_seq();
                nftables::elem(
                    &mut self.w,
                    cmd::NEWSETELEM,
                    NLM_F_CREATE,
                    acks[0],
                    &set,
                    &key,
                    Some(ms),
                    None,
                );
                acks[1] = self.next_seq();
                nftables::elem(
                    &mut self.w,
                    cmd::DELSETELEM,
                    0,
                    acks[1],
                    &set,
                    &key,
                    None,
                    None,
                );
                acks[2] = self.next_seq();
                nftables::elem(
                    &mut self.w,
                    cmd::NEWSETELEM,
                    NLM_F_CREATE,
                    acks[2],
                    &set,
                    &key,
                    Some(ms),
                    None,
                );
                3
            }
        };
        let end = self.next_seq();
        self.w.batch_end(end);
        self.exchange(begin, end, &acks[..n], None, |_| Ok(()))
    }

    fn nft_remove(&mut self, s: &NftSet, addr: IpAddr) -> Result<bool, Reason> {
        let key = key_bytes(&addr);
        self.w.clear();
        let begin = self.next_seq();
        self.w.batch_begin(begin);
        let del = self.next_seq();
        nftables::elem(
            &mut self.w,
            cmd::DELSETELEM,
            0,
            del,
            &s.as_ref(),
            &key,
            None,
            None,
        );
        let end = self.next_seq();
        self.w.batch_end(end);
        match self.exchange(begin, end, &[del], None, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(Reason::Kernel(libc::ENOENT)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn nft_expires(&mut self, s: &NftSet, addr: IpAddr) -> Result<Option<Duration>, Reason> {
        let key = key_bytes(&addr);
        self.w.clear();
        let seq = self.next_seq();
        nftables::elem(
            &mut self.w,
            cmd::GETSETELEM,
            0,
            seq,
            &s.as_ref(),
            &key,
            None,
            None,
        );
        let mut found = None;
        let r = self.exchange(seq, seq, &[seq], None, |msg| {
            if let Some(e) = nftables::parse_first_elem(msg)? {
                if e.key == key {
                    found = Some(e.expires_ms.map_or(Duration::MAX, Duration::from_millis));
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(found),
            Err(Reason::Kernel(libc::ENOENT)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- ipset ----

    /// The protocol version to speak: ours, or the kernel's if it is older
    /// but still one we know.
    fn ipset_proto(&mut self) -> Result<u8, Reason> {
        if let Some(p) = self.ipset_proto {
            return Ok(p);
        }
        self.w.clear();
        let seq = self.next_seq();
        ipset::protocol(&mut self.w, seq);
        let mut versions = None;
        self.exchange(seq, seq, &[seq], None, |msg| {
            versions = Some(ipset::parse_protocol(msg)?);
            Ok(())
        })?;
        let (current, min) = versions.ok_or(Reason::Malformed(ParseError::Malformed(
            "no ipset protocol version in the answer",
        )))?;
        let proto = current.min(ipset::PROTOCOL);
        if proto < ipset::PROTOCOL_MIN || min > ipset::PROTOCOL {
            return Err(Reason::Kernel(ipset::errno::PROTOCOL));
        }
        self.ipset_proto = Some(proto);
        Ok(proto)
    }

    fn ipset_lookup(&mut self, name: &IpsetName, family: AddrFamily) -> Result<(), Reason> {
        let proto = self.ipset_proto()?;
        self.w.clear();
        let seq = self.next_seq();
        ipset::list(&mut self.w, seq, proto, name.as_str(), true);
        let mut header = None;
        self.exchange(seq, seq, &[], Some(seq), |msg| {
            if header.is_none() {
                header = Some(ipset::parse_header(msg)?);
            }
            Ok(())
        })
        .map_err(missing_on_enoent)?;
        let h = header.ok_or(Reason::Malformed(ParseError::Malformed(
            "no set header in the answer",
        )))?;
        if h.type_name != "hash:ip" && h.type_name != "hash:net" {
            return Err(Reason::WrongKey(format!(
                "{} entries, not hash:ip (or hash:net)",
                h.type_name
            )));
        }
        let want = match family {
            AddrFamily::V4 => ipset::FAMILY_INET,
            AddrFamily::V6 => ipset::FAMILY_INET6,
        };
        if h.family != want {
            let found = match h.family {
                ipset::FAMILY_INET => "IPv4 (family inet)".to_string(),
                ipset::FAMILY_INET6 => "IPv6 (family inet6)".to_string(),
                other => format!("of family {other}"),
            };
            let wanted = if want == ipset::FAMILY_INET {
                "IPv4"
            } else {
                "IPv6"
            };
            return Err(Reason::WrongKey(format!("{found}, not {wanted} addresses")));
        }
        if h.timeout_s.is_none() {
            return Err(Reason::NoTimeout);
        }
        Ok(())
    }

    fn ipset_add(
        &mut self,
        name: &IpsetName,
        addr: IpAddr,
        timeout: Duration,
    ) -> Result<(), Reason> {
        let secs = timeout.as_secs();
        if secs == 0 || secs > u64::from(ipset::MAX_TIMEOUT_SECS) {
            return Err(Reason::TimeoutRange(timeout));
        }
        let proto = self.ipset_proto()?;
        self.w.clear();
        let seq = self.next_seq();
        ipset::adt(
            &mut self.w,
            ipset::cmd::ADD,
            seq,
            proto,
            name.as_str(),
            addr,
            Some(secs as u32),
            true,
        );
        self.exchange(seq, seq, &[seq], None, |_| Ok(()))
    }

    fn ipset_remove(&mut self, name: &IpsetName, addr: IpAddr) -> Result<bool, Reason> {
        let proto = self.ipset_proto()?;
        self.w.clear();
        let seq = self.next_seq();
        ipset::adt(
            &mut self.w,
            ipset::cmd::DEL,
            seq,
            proto,
            name.as_str(),
            addr,
            None,
            false,
        );
        match self.exchange(seq, seq, &[seq], None, |_| Ok(())) {
            Ok(()) => Ok(true),
            // Not in the set, or no such set any more: either way the
            // address is not let in through it.
            Err(Reason::Kernel(ipset::errno::EXIST | libc::ENOENT)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn ipset_expires(
        &mut self,
        name: &IpsetName,
        addr: IpAddr,
    ) -> Result<Option<Duration>, Reason> {
        let proto = self.ipset_proto()?;
        self.w.clear();
        let seq = self.next_seq();
        ipset::list(&mut self.w, seq, proto, name.as_str(), false);
        let mut found = None;
        self.exchange(seq, seq, &[], Some(seq), |msg| {
            if found.is_none() {
                if let Some(t) = ipset::find_member(msg, addr)? {
                    found = Some(t.map_or(Duration::MAX, |s| Duration::from_secs(s.into())));
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    // ---- the exchange ----

    /// Sends what is in the writer as one datagram and reads the answers to
    /// sequence numbers `first..=last` until every seq in `acks` is acked
    /// and, if `dump` is given, that dump is done. Data messages go to
    /// `data`. The first error the kernel reports is returned; answers to
    /// other sequence numbers, and datagrams not from the kernel, are
    /// skipped.
    fn exchange(
        &mut self,
        first: u32,
        last: u32,
        acks: &[u32],
        dump: Option<u32>,
        mut data: impl FnMut(&NlMsg<&[u8]>) -> Result<(), ParseError>,
    ) -> Result<(), Reason> {
        debug_assert!(acks.len() <= 8);
        let in_range = |seq: u32| seq.wrapping_sub(first) <= last.wrapping_sub(first);
        self.sock.send(self.w.as_bytes()).map_err(Reason::Io)?;
        let mut pending = [false; 8];
        for (slot, _) in pending.iter_mut().zip(acks) {
            *slot = true;
        }
        let mut dump_open = dump.is_some();
        let mut error = None;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while pending.iter().any(|&p| p) || dump_open {
            if Instant::now() > deadline {
                return Err(Reason::NoAnswer);
            }
            let (n, from) = match sys::recv_bounded(&self.sock, &mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Reason::NoAnswer)
                }
                Err(e) => return Err(Reason::Io(e)),
            };
            if n > self.buf.len() {
                return Err(Reason::Malformed(ParseError::Malformed(
                    "answer larger than the receive buffer",
                )));
            }
            if from != 0 {
                continue;
            }
            for msg in Messages::new(self.buf.get(..n).unwrap_or(&[])) {
                let msg = msg.map_err(Reason::Malformed)?;
                let seq = msg.seq();
                if !in_range(seq) {
                    continue;
                }
                match msg.kind() {
                    NLMSG_ERROR => {
                        let ack = parse_ack(&msg).map_err(Reason::Malformed)?;
                        if ack.errno != 0 {
                            // Keep the first error; an nf_tables batch that
                            // fails still acks the messages before it, and a
                            // failed dump or batch sends nothing more.
                            error.get_or_insert(ack.errno);
                            if Some(seq) == dump || !acks.contains(&seq) {
                                pending = [false; 8];
                                dump_open = false;
                            }
                        }
                        if let Some(i) = acks.iter().position(|&a| a == seq) {
                            pending[i] = false;
                        }
                    }
                    NLMSG_DONE if Some(seq) == dump => {
                        let status = parse_done(&msg);
                        if status != 0 {
                            error.get_or_insert(status);
                        }
                        dump_open = false;
                    }
                    _ => {
                        if error.is_none() {
                            data(&msg).map_err(Reason::Malformed)?;
                        }
                    }
                }
            }
        }
        match error {
            Some(errno) => Err(Reason::Kernel(errno)),
            None => Ok(()),
        }
    }
}

/// Names the kernel can take: the public fields of [`NftSet`] allow any
/// string, the wire builders only bounded ones without NUL.
fn check_names(target: &SetTarget) -> Result<(), Reason> {
    let fits =
        |name: &str, max: usize| !name.is_empty() && name.len() <= max && !name.contains('\0');
    let ok = match target {
        SetTarget::Nft(s) => {
            fits(&s.table, nftables::MAX_NAME_LEN) && fits(&s.set, nftables::MAX_NAME_LEN)
        }
        SetTarget::Ipset(name) => fits(name.as_str(), ipset::MAX_NAME_LEN),
    };
    if ok {
        Ok(())
    } else {
        Err(Reason::Unsupported(
            "named with an empty, too long or NUL-holding name".into(),
        ))
    }
}

fn key_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn missing_on_enoent(r: Reason) -> Reason {
    match r {
        Reason::Kernel(libc::ENOENT) => Reason::Missing,
        other => other,
    }
}

fn error(target: &SetTarget, reason: Reason) -> KernelError {
    KernelError {
        target: target.to_string(),
        reason,
        fix: None,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn refresh_by_kernel_release() {
        assert_eq!(Refresh::for_kernel("6.18.44-fc-v657"), Refresh::InPlace);
        assert_eq!(Refresh::for_kernel("6.12.0"), Refresh::InPlace);
        assert_eq!(Refresh::for_kernel("6.11.9-amd64"), Refresh::Replace);
        assert_eq!(Refresh::for_kernel("6.1.0-31-amd64"), Refresh::Replace);
        assert_eq!(Refresh::for_kernel("5.15.0-91-generic"), Refresh::Replace);
        assert_eq!(Refresh::for_kernel("7.0"), Refresh::InPlace);
        assert_eq!(Refresh::for_kernel(""), Refresh::Replace);
    }

    #[test]
    fn refuses_names_the_wire_cannot_carry() {
        let long = SetTarget::Nft(NftSet {
            family: crate::config::sets::NftFamily::Inet,
            table: "t".repeat(70_000),
            set: "s".into(),
        });
        assert!(matches!(check_names(&long), Err(Reason::Unsupported(_))));
        let nul = SetTarget::Nft(NftSet {
            family: crate::config::sets::NftFamily::Inet,
            table: "t\0".into(),
            set: "s".into(),
        });
        assert!(check_names(&nul).is_err());
        let ok = SetTarget::Nft(NftSet::parse("inet t s").unwrap());
        assert!(check_names(&ok).is_ok());
    }

    #[test]
    fn fix_lines() {
        let nft = SetTarget::Nft(NftSet::parse("inet filter knocked6").unwrap());
        assert_eq!(
            fix_line(&nft, AddrFamily::V6, Duration::from_secs(30), false),
            "nft add table inet filter && nft add set inet filter knocked6 '{ type ipv6_addr; flags timeout; }'"
        );
        assert_eq!(
            fix_line(&nft, AddrFamily::V4, Duration::from_secs(30), true),
            "nft delete set inet filter knocked6 && nft add set inet filter knocked6 '{ type ipv4_addr; flags timeout; }'"
        );
        let ips = SetTarget::Ipset(IpsetName::parse("k4").unwrap());
        assert_eq!(
            fix_line(&ips, AddrFamily::V4, Duration::from_secs(30), false),
            "ipset create k4 hash:ip family inet timeout 30"
        );
        assert_eq!(
            fix_line(&ips, AddrFamily::V6, Duration::from_secs(9), true),
            "ipset destroy k4 && ipset create k4 hash:ip family inet6 timeout 9"
        );
    }

    #[test]
    fn error_messages_name_set_and_reason() {
        let e = KernelError {
            target: "ipset 'k4'".into(),
            reason: Reason::Kernel(ipset::errno::TIMEOUT),
            fix: Some("ipset create k4 hash:ip family inet timeout 30".into()),
        };
        assert_eq!(
            e.to_string(),
            "ipset 'k4': the set was created without timeout support; to fix it: ipset create k4 hash:ip family inet timeout 30"
        );
        assert!(Reason::Kernel(libc::EPERM)
            .to_string()
            .contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn timeouts_read_in_whole_seconds_or_milliseconds() {
        for (d, text) in [
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(0), "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(2_250), "2250ms"),
            (Duration::from_nanos(1), "0ms"),
        ] {
            assert_eq!(Span(d).to_string(), text);
        }
        assert_eq!(
            Reason::TimeoutRange(Duration::from_millis(2_250)).to_string(),
            "timeout 2250ms is out of its range"
        );
        assert_eq!(
            Reason::NoAnswer.to_string(),
            "the kernel did not answer within 2s"
        );
    }
}
