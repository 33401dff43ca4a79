//! The two netlink socket calls socket2 cannot make safely: binding to a
//! `sockaddr_nl` (to join multicast groups) and receiving with the sender's
//! `sockaddr_nl` (to accept only what the kernel sent). Message parsing lives
//! in safe code (`crate::capture::netif`).

use std::io;
use std::mem;
use std::os::fd::AsRawFd;

/// Binds a netlink socket with a kernel-chosen port id, joining the legacy
/// `RTMGRP_*` multicast groups in `groups`.
pub fn bind(sock: &impl AsRawFd, groups: u32) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_pid = 0;
    addr.nl_groups = groups;
    // SAFETY: `addr` is a live, initialised sockaddr_nl and the length
    // passed is exactly its size.
    super::syscall!(bind(
        sock.as_raw_fd(),
        (&addr as *const libc::sockaddr_nl).cast(),
        mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
    ))?;
    Ok(())
}

/// Receives one whole datagram into `buf` (grown as needed, never
/// truncated) and returns its length and the sender's port id (0 = kernel).
///
/// The size is learnt first with `MSG_PEEK | MSG_TRUNC`, so an oversized
/// datagram is not silently cut. Errors (`EAGAIN` on a non-blocking socket,
/// `ENOBUFS` after an overrun) are passed through unchanged.
pub fn recv_from(sock: &impl AsRawFd, buf: &mut Vec<u8>) -> io::Result<(usize, u32)> {
    let fd = sock.as_raw_fd();
    let mut probe = [0u8; 1];
    // SAFETY: `probe` is valid for writes of its length; null address
    // pointers are allowed when the sender is not wanted.
    let size = super::syscall!(recvfrom(
        fd,
        probe.as_mut_ptr().cast(),
        probe.len(),
        libc::MSG_PEEK | libc::MSG_TRUNC,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ))? as usize;
    if buf.len() < size {
        buf.resize(size, 0);
    }
    // SAFETY: as above; zeroed sockaddr_nl is valid.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    let mut addr_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `addr` and
    // `addr_len` are live and `addr_len` holds the size of `addr`, so the
    // kernel writes at most that much.
    let n = super::syscall!(recvfrom(
        fd,
        buf.as_mut_ptr().cast(),
        buf.len(),
        libc::MSG_TRUNC,
        (&mut addr as *mut libc::sockaddr_nl).cast(),
        &mut addr_len,
    ))? as usize;
    if n > buf.len() {
        // Only possible if another reader raced us between peek and read.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "netlink datagram larger than announced",
        ));
    }
    let is_netlink = addr.nl_family == libc::AF_NETLINK as libc::sa_family_t;
    let pid = if is_netlink { addr.nl_pid } else { u32::MAX };
    Ok((n, pid))
}

/// Receives one datagram into the fixed `buf` and returns its *full*
/// length (which exceeds `buf.len()` if it was cut: the caller treats that
/// as an error) and the sender's port id (0 = kernel). Unlike [`recv_from`]
/// the buffer never grows, so a reply cannot make the daemon allocate.
pub fn recv_bounded(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, u32)> {
    // SAFETY: zeroed sockaddr_nl is valid.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    let mut addr_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `addr` and
    // `addr_len` are live and `addr_len` holds the size of `addr`.
    let n = super::syscall!(recvfrom(
        sock.as_raw_fd(),
        buf.as_mut_ptr().cast(),
        buf.len(),
        libc::MSG_TRUNC,
        (&mut addr as *mut libc::sockaddr_nl).cast(),
        &mut addr_len,
    ))? as usize;
    let is_netlink = addr.nl_family == libc::AF_NETLINK as libc::sa_family_t;
    let pid = if is_netlink { addr.nl_pid } else { u32::MAX };
    Ok((n, pid))
}
