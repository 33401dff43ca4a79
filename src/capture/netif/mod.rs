//! Which addresses are "this host", kept current over rtnetlink.
//!
//! A knock counts only if its destination is an own address of the interface
//! it arrived on, so the table is kept per ifindex. It is read with an
//! `RTM_GETLINK` + `RTM_GETADDR` dump and then followed through the
//! `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` multicast groups:
//! an address brought by DHCP or a PPP redial is honoured as soon as the
//! kernel announces it. This module is the socket side; the messages are
//! parsed by [`crate::wire::rtnetlink`] and applied by `table`.

mod table;

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::sys::netlink as sys;
use crate::wire::rtnetlink::{
    dump_request, parse, Message, Messages, ParseError, NLM_F_DUMP_INTR, RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR, RTMGRP_LINK, RTM_GETADDR, RTM_GETLINK,
};
use table::Table;
pub use table::{Change, Interface, NoSuchInterface};

/// How long a dump may stall before the kernel is deemed not to answer.
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);
/// A dump the kernel marks as interrupted (NLM_F_DUMP_INTR: the table
/// changed under it) is retried this often before being taken as is.
const DUMP_TRIES: usize = 5;
/// Datagrams handled per `process` call, so a notification storm cannot
/// starve the capture loop; the fd stays readable for the rest.
const MAX_DATAGRAMS: usize = 256;
/// Receive buffer asked for the subscription (capped by net.core.rmem_max).
const SUBSCRIPTION_RCVBUF: usize = 1 << 20;

fn route_socket() -> io::Result<Socket> {
    Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )
}

fn invalid(e: ParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs one dump request on `sock`, feeding each reply to `table`. Returns
/// whether the kernel flagged the dump as interrupted.
fn dump_one(
    sock: &Socket,
    buf: &mut Vec<u8>,
    kind: u16,
    seq: u32,
    table: &mut Table,
) -> io::Result<bool> {
    sock.send(&dump_request(kind, seq))?;
    let mut interrupted = false;
    let mut sink = Vec::new();
    loop {
        let (n, from) = match sys::recv_from(sock, buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if from != 0 {
            continue;
        }
        for msg in Messages::new(buf.get(..n).unwrap_or(&[])) {
            let msg = msg.map_err(invalid)?;
            if msg.seq() != seq {
                continue;
            }
            interrupted |= msg.flags() & NLM_F_DUMP_INTR != 0;
            match parse(&msg).map_err(invalid)? {
                Message::Done(status) if status < 0 => {
                    return Err(io::Error::from_raw_os_error(-status))
                }
                Message::Done(_) => return Ok(interrupted),
                Message::Error(0) => {}
                Message::Error(err) => return Err(io::Error::from_raw_os_error(-err)),
                other => table.apply(other, &mut sink),
            }
        }
    }
}

/// Reads all links and their addresses on its own, unsubscribed socket, so
/// the replies never interleave with notifications. The socket is made once
/// and kept: it belongs to the network namespace it was created in, which
/// must be the subscription's.
#[derive(Debug)]
struct Dumper {
    sock: Socket,
    seq: u32,
}

impl Dumper {
    fn new() -> io::Result<Dumper> {
        let sock = route_socket()?;
        sock.set_read_timeout(Some(DUMP_TIMEOUT))?;
        Ok(Dumper { sock, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        // Replies to an earlier, abandoned dump carry an older number.
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn dump(&mut self) -> io::Result<Table> {
        // Grown to the largest reply (`recv_from` sizes it) and freed after:
        // dumps are rare (start, `-r`, an overrun).
        let mut buf = Vec::new();
        let mut table = Table::default();
        for _ in 0..DUMP_TRIES {
            table = Table::default();
            let seq = self.next_seq();
            let links = dump_one(&self.sock, &mut buf, RTM_GETLINK, seq, &mut table)?;
            let seq = self.next_seq();
            let addrs = dump_one(&self.sock, &mut buf, RTM_GETADDR, seq, &mut table)?;
            if !links && !addrs {
                return Ok(table);
            }
        }
        crate::debug!("netlink dump kept being interrupted; using the last one");
        Ok(table)
    }
}

/// All interfaces with their addresses, read once.
pub fn list() -> io::Result<Vec<Interface>> {
    Ok(Dumper::new()?.dump()?.into_interfaces())
}

/// The live table of own addresses per interface.
#[derive(Debug)]
pub struct Addresses {
    sock: Socket,
    dumper: Dumper,
    table: Table,
    buf: Vec<u8>,
}

impl Addresses {
    /// Subscribes first, then dumps: a change between the two is both in
    /// the dump and queued, and replaying it is a no-op, so nothing is lost.
    pub fn open() -> io::Result<Addresses> {
        let sock = route_socket()?;
        // Best effort: a bigger buffer makes overruns rarer, and they are
        // recovered from anyway.
        let _ = sock.set_recv_buffer_size(SUBSCRIPTION_RCVBUF);
        sys::bind(&sock, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)?;
        sock.set_nonblocking(true)?;
        let mut dumper = Dumper::new()?;
        let table = dumper.dump()?;
        Ok(Addresses {
            sock,
            dumper,
            table,
            // Grown by `recv_from` to the largest notification (a few
            // hundred bytes), not allocated and zeroed for the worst case.
            buf: Vec::new(),
        })
    }

    /// The subscription socket (non-blocking) for the daemon's poll loop.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sets the subscription's receive buffer (tests use a tiny one to
    /// provoke an overrun).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        self.sock.set_recv_buffer_size(bytes)
    }

    /// Drains pending notifications without blocking and applies them. On
    /// an overrun (`ENOBUFS`) or a garbled datagram the whole table is
    /// re-read; the result then ends with `Change::Resynced`.
    pub fn process(&mut self) -> io::Result<Vec<Change>> {
        let mut out = Vec::new();
        let mut resync = false;
        for _ in 0..MAX_DATAGRAMS {
            let (n, from) = match sys::recv_from(&self.sock, &mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    resync = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            // Only the kernel may tell us what our addresses are.
            if from != 0 {
                crate::debug!("ignoring netlink datagram from port {from}");
                continue;
            }
            for msg in Messages::new(self.buf.get(..n).unwrap_or(&[])) {
                match msg.and_then(|m| parse(&m)) {
                    Ok(m) => self.table.apply(m, &mut out),
                    Err(e) => {
                        crate::warn!("{e}; re-reading the address table");
                        resync = true;
                        break;
                    }
                }
            }
        }
        if resync {
            self.resync(&mut out)?;
            out.push(Change::Resynced);
        }
        Ok(out)
    }

    /// Re-reads everything (`-r SEC`) and reports what differed.
    pub fn refresh(&mut self) -> io::Result<Vec<Change>> {
        let mut out = Vec::new();
        self.resync(&mut out)?;
        Ok(out)
    }

    /// Queued notifications are older than the dump that follows, and after
    /// an overrun some of their successors are lost: applying them on top of
    /// the dump could resurrect a deleted address. So they are discarded
    /// first; the dump supersedes them.
    fn resync(&mut self, out: &mut Vec<Change>) -> io::Result<()> {
        loop {
            match sys::recv_from(&self.sock, &mut self.buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(e) => return Err(e),
            }
        }
        let fresh = self.dumper.dump()?;
        self.table.replace(fresh, out);
        Ok(())
    }

    /// Is `dst` an own address of interface `index` (0: of any interface)?
    pub fn is_local(&self, index: u32, dst: IpAddr) -> bool {
        self.table.is_local(index, dst)
    }

    /// Is `addr` the directed broadcast address of an IPv4 subnet of some
    /// interface (`10.0.0.255` for `10.0.0.1/24`; none for /31 and /32)?
    pub fn is_subnet_broadcast(&self, addr: std::net::Ipv4Addr) -> bool {
        self.table.is_subnet_broadcast(addr)
    }

    /// The VLAN device (up) that takes frames tagged `id` with protocol
    /// `tpid` arriving on interface `parent`, if there is one.
    pub fn vlan_device(&self, parent: u32, id: u16, tpid: u16) -> Option<u32> {
        self.table.vlan_device(parent, id, tpid)
    }

    /// The interface called `name`, if there is one.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.table.interfaces().find(|i| i.name == name)
    }

    /// The interface called `name` (`-i NAME`); the error lists the real ones.
    pub fn resolve(&self, name: &str) -> Result<&Interface, NoSuchInterface> {
        self.table.resolve(name)
    }

    /// The interface with ifindex `index`.
    pub fn by_index(&self, index: u32) -> Option<&Interface> {
        self.table.by_index(index)
    }

    /// All interfaces, by index.
    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.table.interfaces()
    }
}
