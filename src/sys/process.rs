//! Process helpers for the command runner: an output pipe, pidfds so a worker
//! can wait for a child with a deadline, signals to a whole process group.
//! Starting the child is [`super::spawn`]'s.

use super::syscall;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is an array of two c_ints, which is what pipe2 fills in.
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 succeeded, so both descriptors are fresh and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets `O_NONBLOCK` on `fd`, keeping its other status flags. The runner
/// sets it on a command's output pipe, so a read never holds a worker past
/// the command's deadline.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller keeps open.
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    // SAFETY: as above.
    syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    Ok(())
}

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+).
/// Valid only while `pid` is our unreaped child, so it cannot name a reused pid.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = syscall!(syscall(libc::SYS_pidfd_open, pid, 0))?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel returned a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until one of `fds` is readable (or hung up / in error), at most
/// `timeout` (`None`: forever). `None` entries are skipped. Returns which
/// entries are ready; all false on timeout or EINTR.
pub fn poll_readable<const N: usize>(
    fds: [Option<RawFd>; N],
    timeout: Option<Duration>,
) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd: fd.unwrap_or(-1), // poll ignores negative descriptors
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = match timeout {
        None => -1,
        // Round up so a short remaining time does not become a busy loop.
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    };
    // SAFETY: `pfds` is a live array of N pollfd structs.
    match syscall!(poll(pfds.as_mut_ptr(), N as libc::nfds_t, ms)) {
        Ok(_) => Ok(pfds.map(|p| p.revents != 0)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok([false; N]),
        Err(e) => Err(e),
    }
}

/// Sends `sig` to every process in group `pgid`. Refuses 0 and 1, which
/// would mean "our own group" and "every process" to kill(2).
pub fn kill_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad process group"))?;
    // SAFETY: kill with a negative pid > -i32::MAX signals exactly that group.
    syscall!(kill(-pgid, sig))?;
    Ok(())
}

/// True once child `pid` has exited, without reaping it (so its pid and
/// process group id stay reserved until the caller waits for it).
pub fn has_exited(pid: u32) -> io::Result<bool> {
    let pid = libc::id_t::from(pid);
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid siginfo_t for waitid to fill in.
    syscall!(waitid(libc::P_PID, pid, &mut info, flags))?;
    // SAFETY: waitid filled `info` for a child event or left it zeroed
    // (WNOHANG, no event); si_pid is meaningful in both cases.
    Ok(unsafe { info.si_pid() } != 0)
}
