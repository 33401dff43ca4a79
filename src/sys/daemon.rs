//! Process-level calls for becoming a daemon: fork, setsid, redirecting
//! stdio, the locked pid file, and `poll(2)` for the main loop.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Which side of a `fork` this is.
#[derive(Debug)]
pub enum Forked {
    /// The calling process.
    Parent,
    /// The new one.
    Child,
}

/// fork(2). Call only while the process has a single thread: the child
/// gets just the calling thread and locks held elsewhere would stay held.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees the process is single-threaded, so the
    // child's copy of the address space is consistent.
    let pid = syscall!(fork())?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent
    })
}

/// setsid(2): a new session without a controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments; fails only if already a group leader.
    syscall!(setsid()).map(|_| ())
}

/// Exit without running destructors or atexit handlers: for the
/// intermediate processes of a double fork.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Points stdin, stdout and stderr at /dev/null.
pub fn stdio_to_devnull() -> io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: both descriptors are valid; dup2 replaces fd atomically.
        syscall!(dup2(null.as_raw_fd(), fd))?;
    }
    Ok(())
}

/// A pipe whose ends are close-on-exec: the daemon reports readiness to
/// the process that launched it through it.
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    Ok((r, w))
}

/// Reads everything until EOF (used by the launching parent).
pub fn read_all(mut f: File) -> String {
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// A pid file held with an exclusive `flock` for the daemon's lifetime, so
/// a second instance is refused instead of fighting over the same doors.
/// Opened without following a symbolic link (`O_NOFOLLOW`), and only if it
/// is a regular file of the daemon's own user with one name, so `-p` cannot
/// be turned against another file. Removed when dropped — on every way out
/// of the daemon after it was written — unless its name has since been
/// given to another file.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
}

impl PidFile {
    /// Creates or takes over `path`, locks it and writes this process's pid.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::new(
                        e.kind(),
                        "is a symbolic link; tportknockd writes no pid through one \
                         (it could overwrite the link's target): remove it or give -p another path",
                    )
                } else {
                    e
                }
            })?;
        let meta = file.metadata()?;
        if let Some(problem) =
            super::statedir::own_file_problem(&path.display().to_string(), &meta, euid())
        {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, problem));
        }
        if !super::dir::try_lock(&file)? {
            let mut other = String::new();
            let _ = Read::by_ref(&mut file).take(32).read_to_string(&mut other);
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is locked: another tportknockd is running (pid {})",
                    path.display(),
                    other.trim()
                ),
            ));
        }
        file.set_len(0)?;
        // Not fsynced: the number is only meaningful while this process
        // runs, and after a crash or power cut it is stale whatever the disk
        // kept (the lock, not the content, says whether a daemon runs).
        writeln!(file, "{}", std::process::id())?;
        Ok(PidFile {
            file,
            path: path.to_owned(),
        })
    }

    /// Removes the file (while still holding the lock).
    pub fn remove(self) {
        drop(self)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        // Only our own file: if the name now points elsewhere, leave it.
        let same = match (std::fs::symlink_metadata(&self.path), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// poll(2) over `fds`; returns the number ready (0 on timeout, and on EINTR).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: the slice is valid for its length for the duration of the call.
    match syscall!(poll(
        fds.as_mut_ptr(),
        fds.len() as libc::nfds_t,
        timeout_ms
    )) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Effective user id (for the config ownership check and error messages).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `CLOCK_MONOTONIC` in microseconds: the clock sd_notify's
/// `MONOTONIC_USEC=` is read against.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill in; CLOCK_MONOTONIC always
    // exists on Linux.
    match syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ts)) {
        Ok(_) => (ts.tv_sec as u64)
            .saturating_mul(1_000_000)
            .saturating_add(ts.tv_nsec as u64 / 1_000),
        Err(_) => 0,
    }
}

/// The user id of the process at the other end of a connected unix
/// socket, as the kernel recorded it at `connect` (`SO_PEERCRED`): it
/// cannot be forged by the peer.
pub fn peer_uid(fd: &impl std::os::fd::AsFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for getsockopt to fill in; len holds
    // cred's size.
    syscall!(getsockopt(
        fd.as_fd().as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_PEERCRED,
        (&mut cred as *mut libc::ucred).cast(),
        &mut len
    ))?;
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other("SO_PEERCRED: short answer"));
    }
    Ok(cred.uid)
}
