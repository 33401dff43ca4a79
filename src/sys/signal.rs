//! Signals as file-descriptor events: the daemon blocks the signals it
//! handles and reads them from a signalfd in its poll loop, so no handler
//! ever runs at an arbitrary point of the capture code.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A signalfd for the signals the daemon handles.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

fn sigset(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    syscall!(sigemptyset(&mut set))?;
    for &sig in signals {
        // SAFETY: as above; invalid signal numbers are reported as EINVAL.
        syscall!(sigaddset(&mut set, sig))?;
    }
    Ok(set)
}

impl SignalFd {
    /// Blocks `signals` for the calling thread (threads spawned later
    /// inherit the mask, so the signals are only ever seen here) and returns
    /// a non-blocking descriptor that becomes readable when one is pending.
    pub fn new(signals: &[i32]) -> io::Result<SignalFd> {
        let set = sigset(signals)?;
        // SAFETY: valid set pointer; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new descriptor; the set is valid.
        let fd = syscall!(signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))?;
        // SAFETY: signalfd returned a fresh descriptor we now own.
        Ok(SignalFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The next pending signal number, if any.
    pub fn read(&self) -> io::Result<Option<i32>> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
        let size = mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is exactly one signalfd_siginfo, writable.
        let res = syscall!(read(
            self.fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size
        ));
        match res {
            Ok(n) if n as usize == size => Ok(Some(info.ssi_signo as i32)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Sets `signals` back to their default action. A disposition of "ignore"
/// survives exec, so a daemon started from a shell or supervisor that
/// ignored, say, SIGCHLD would have every child reaped by the kernel before
/// the runner could read its exit status (the status is lost, a stop seems
/// to have failed), and an ignored SIGTERM or SIGHUP would never reach the
/// signalfd.
pub fn reset_to_default(signals: &[i32]) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: an all-zero sigaction is a valid value: SIG_DFL, empty
        // mask, no flags.
        let dfl: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: installs SIG_DFL; invalid numbers are reported as EINVAL.
        syscall!(sigaction(sig, &dfl, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Whether `sig` is currently ignored (for tests and diagnostics).
pub fn is_ignored(sig: i32) -> io::Result<bool> {
    // SAFETY: an all-zero sigaction is a valid value for sigaction to fill in.
    let mut old: libc::sigaction = unsafe { mem::zeroed() };
    // SAFETY: only queries the disposition.
    syscall!(sigaction(sig, std::ptr::null(), &mut old))?;
    Ok(old.sa_sigaction == libc::SIG_IGN)
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
