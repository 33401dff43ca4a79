//! Thin, checked wrappers over the system calls the daemon needs. Together
//! with `ring`, this is the only place `unsafe` is allowed; everything above
//! it sees `io::Result`.

pub mod process;

/// Calls a libc function and turns the `-1` error convention into
/// `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller upholds the contract of the libc function named
        // here; every use carries its own SAFETY comment for its arguments.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
#[allow(unused_imports)] // for `crate::sys::syscall!` in ring.rs
pub(crate) use syscall;

pub mod caps;
pub mod daemon;
pub mod netlink;
pub mod signal;
