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

/// Asks the CPU to start loading the cache line at `p` (and to walk the
/// page tables for it), so that a read a little later does not stall. Only
/// a hint: it reads nothing visible, writes nothing and never faults, so
/// any address will do, even one the kernel is writing.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    // SAFETY: PREFETCHT0 has no architectural effect and cannot fault, for
    // any address. SSE is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

pub mod daemon;
pub mod dir;
pub mod heap;
pub mod netlink;
pub mod random;
pub mod signal;
pub mod spawn;
pub mod statedir;
pub mod wipe;
