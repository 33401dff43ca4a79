//! Starting a command without copying the daemon.
//!
//! `fork` write-protects and copies the page tables of the whole daemon
//! (capture ring, source table, every thread's stack) only for the child
//! to drop them at `exec`, and afterwards each page the daemon writes takes
//! a fault. `posix_spawn` in glibc (2.24 and later) is
//! `clone(CLONE_VM | CLONE_VFORK)` on a small stack of its own: the child
//! borrows the address space until `exec`, and only the calling thread
//! waits meanwhile. Everything the child must do before `exec` is described
//! up front as spawn attributes and file actions, which glibc carries out
//! with every signal blocked, without allocating, and it reports a failed
//! `exec` as the error number `posix_spawn` returns. All strings are built
//! here, before the spawn ([`CStrings`]).
//!
//! A child started by [`spawn`] gets, in this order:
//! - every signal at its default disposition (`POSIX_SPAWN_SETSIGDEF` with
//!   the full set: ignored ones included, which would survive `exec`);
//! - a session and process group of its own (`POSIX_SPAWN_SETSID`: the
//!   runner signals the whole group, and no controlling terminal);
//! - stdin `/dev/null`, stdout and stderr the given descriptor, every
//!   descriptor from 3 up closed (`posix_spawn_file_actions_addclosefrom_np`,
//!   glibc 2.34: also those opened without `O_CLOEXEC`, and those another
//!   thread opens meanwhile); working directory `/`;
//! - an empty signal mask (`POSIX_SPAWN_SETSIGMASK`);
//! - exactly the argument and environment strings given.
//!
//! Credentials, the capability bounding set, `no_new_privs` and resource
//! limits are the calling thread's, as with `fork`.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// A null-terminated array of C strings, as `execve` takes for its
/// arguments and environment.
///
/// Invariant: `ptrs` holds one pointer into each of `owned`, in order, then
/// a null pointer. The strings' buffers are on the heap and never change,
/// so the pointers stay valid however this value moves.
#[derive(Debug)]
pub struct CStrings {
    owned: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrings {
    /// Copies `items`; an item with a NUL byte is an `InvalidInput` error
    /// naming `what`.
    pub fn new<I, S>(what: &str, items: I) -> io::Result<CStrings>
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        let owned = items
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{what} contains a NUL byte"),
                )
            })?;
        let mut ptrs: Vec<*const libc::c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        debug_assert_eq!(ptrs.len(), owned.len() + 1);
        Ok(CStrings { owned, ptrs })
    }

    /// The strings, without the terminating null pointer.
    pub fn strings(&self) -> &[CString] {
        &self.owned
    }

    /// For `posix_spawn`, which wants `char *const []` (and does not write).
    fn as_ptr(&self) -> *const *mut libc::c_char {
        self.ptrs.as_ptr().cast()
    }
}

/// A child started by [`spawn`], not yet reaped: its pid, which is also
/// its process group and session id, cannot be reused until [`Child::wait`].
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
}

impl Child {
    /// The process id (and process group id).
    pub fn id(&self) -> u32 {
        // pid_t from a successful posix_spawn is positive.
        self.pid.unsigned_abs()
    }

    /// Waits for the child to exit and reaps it.
    pub fn wait(self) -> io::Result<ExitStatus> {
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: `status` is a valid int for waitpid to fill in; the
            // pid is our own child.
            match syscall!(waitpid(self.pid, &mut status, 0)) {
                Ok(_) => return Ok(ExitStatus::from_raw(status)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(libc::posix_spawn_file_actions_t);

/// `posix_spawn` functions return an error number instead of setting errno.
fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

impl FileActions {
    fn new() -> io::Result<FileActions> {
        let mut fa = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        // SAFETY: init writes a valid, empty action list into `fa`.
        check(unsafe { libc::posix_spawn_file_actions_init(fa.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(FileActions(unsafe { fa.assume_init() }))
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// `posix_spawnattr_t`, destroyed on drop.
struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    fn new() -> io::Result<Attributes> {
        let mut at = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        // SAFETY: init writes valid default attributes into `at`.
        check(unsafe { libc::posix_spawnattr_init(at.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(Attributes(unsafe { at.assume_init() }))
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

fn sigset(full: bool) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: both functions initialise the whole set they are given.
    if full {
        syscall!(sigfillset(set.as_mut_ptr()))?;
    } else {
        syscall!(sigemptyset(set.as_mut_ptr()))?;
    }
    // SAFETY: initialised just above.
    Ok(unsafe { set.assume_init() })
}

/// Starts `program` with `argv` and exactly the environment `envp`, in the
/// clean state the module documentation lists, with stdout and stderr on
/// `output`. Returns once the child has called `exec` (or failed to: then
/// the error is `exec`'s).
pub fn spawn(
    program: &CStr,
    argv: &CStrings,
    envp: &CStrings,
    output: BorrowedFd<'_>,
) -> io::Result<Child> {
    // The actions run in order: an output descriptor below 3 would be
    // replaced (0) or closed (1, 2) before it is duplicated. Move it up.
    let moved;
    let output = if output.as_raw_fd() < 3 {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor the caller keeps open
        // returns a new one, 3 or above, that we own.
        let fd = syscall!(fcntl(output.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3))?;
        // SAFETY: fresh descriptor from fcntl, owned by nobody else.
        moved = unsafe { OwnedFd::from_raw_fd(fd) };
        moved.as_raw_fd()
    } else {
        output.as_raw_fd()
    };
    debug_assert!(output >= 3);

    let mut fa = FileActions::new()?;
    // SAFETY: `fa` is initialised; glibc copies the NUL-terminated path.
    check(unsafe {
        libc::posix_spawn_file_actions_addopen(
            &mut fa.0,
            0,
            c"/dev/null".as_ptr(),
            libc::O_RDONLY,
            0,
        )
    })?;
    // SAFETY: `fa` is initialised; `output` stays open until posix_spawn
    // has returned.
    check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut fa.0, output, 1) })?;
    // SAFETY: as above.
    check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut fa.0, output, 2) })?;
    // SAFETY: `fa` is initialised; takes a number only.
    check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(&mut fa.0, 3) })?;
    // SAFETY: `fa` is initialised; glibc copies the NUL-terminated path.
    check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut fa.0, c"/".as_ptr()) })?;

    let mut at = Attributes::new()?;
    let flags = libc::c_int::from(libc::POSIX_SPAWN_SETSID)
        | libc::POSIX_SPAWN_SETSIGDEF
        | libc::POSIX_SPAWN_SETSIGMASK;
    let (all, none) = (sigset(true)?, sigset(false)?);
    // SAFETY: `at` is initialised; takes a number only.
    check(unsafe { libc::posix_spawnattr_setflags(&mut at.0, flags as libc::c_short) })?;
    // SAFETY: `at` is initialised; the set is valid and copied.
    check(unsafe { libc::posix_spawnattr_setsigdefault(&mut at.0, &all) })?;
    // SAFETY: as above.
    check(unsafe { libc::posix_spawnattr_setsigmask(&mut at.0, &none) })?;

    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: `pid` is writable, the
    // program path and both string arrays are NUL- and null-terminated
    // (CStrings' invariant), `fa` and `at` are initialised. glibc's child
    // runs on its own stack with all signals blocked and only makes system
    // calls before exec; the parent thread resumes after exec or exit.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &fa.0,
            &at.0,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    check(rc)?;
    debug_assert!(pid > 0);
    Ok(Child { pid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn run(argv: &[&str], env: &[&str]) -> (ExitStatus, String) {
        let (rd, wr) = super::super::process::pipe().unwrap();
        let argv = CStrings::new("argument", argv.iter().copied()).unwrap();
        let envp = CStrings::new("environment", env.iter().copied()).unwrap();
        let child = spawn(
            &argv.strings()[0],
            &argv,
            &envp,
            std::os::fd::AsFd::as_fd(&wr),
        );
        drop(wr);
        let child = child.unwrap();
        let mut out = String::new();
        std::fs::File::from(rd).read_to_string(&mut out).unwrap();
        (child.wait().unwrap(), out)
    }

    #[test]
    fn runs_with_exactly_the_arguments_and_environment_given() {
        let (st, out) = run(
            &["/bin/sh", "-c", "echo \"$0|$1|$X\"; pwd; env | sort", "a b"],
            &["X=1"],
        );
        assert!(st.success(), "{st:?} {out}");
        assert_eq!(out, "a b||1\n/\nPWD=/\nX=1\n");
    }

    #[test]
    fn own_session_and_process_group() {
        let (st, out) = run(
            &["/bin/sh", "-c", "cut -d' ' -f5,6 /proc/$$/stat; echo $$"],
            &[],
        );
        assert!(st.success());
        let mut l = out.lines();
        let (ids, pid) = (l.next().unwrap(), l.next().unwrap());
        assert_eq!(
            ids,
            format!("{pid} {pid}"),
            "pgrp and session are the child's pid"
        );
    }

    #[test]
    fn exit_status_and_signals_come_back() {
        assert_eq!(run(&["/bin/sh", "-c", "exit 7"], &[]).0.code(), Some(7));
        let (st, _) = run(&["/bin/sh", "-c", "kill -9 $$"], &[]);
        assert_eq!(st.signal(), Some(9));
    }

    #[test]
    fn a_missing_program_is_exec_s_error() {
        let (_rd, wr) = super::super::process::pipe().unwrap();
        let argv = CStrings::new("argument", ["/nonexistent/program"]).unwrap();
        let envp = CStrings::new("environment", Vec::<&str>::new()).unwrap();
        let e = spawn(
            c"/nonexistent/program",
            &argv,
            &envp,
            std::os::fd::AsFd::as_fd(&wr),
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    }

    #[test]
    fn nul_bytes_are_refused_before_anything_runs() {
        let e = CStrings::new("command", ["echo a\0b"]).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("command contains a NUL byte"), "{e}");
    }
}
