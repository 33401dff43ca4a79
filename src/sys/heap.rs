//! The C heap: giving back what start-up used and freed.

/// Returns the C heap's free pages to the kernel (glibc's `malloc_trim`).
/// Start-up and reload read the config, the interface table and the
/// journal into memory they free again; without this those pages stay
/// resident for the daemon's life. Where the C library is not glibc,
/// nothing.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a byte count (0: keep no slack at the top)
    // and touches only the allocator's own state, under its own lock.
    unsafe {
        libc::malloc_trim(0);
    }
}
