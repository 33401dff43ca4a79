//! Link options for the binaries.
//!
//! Relative relocations packed into DT_RELR (`-z pack-relative-relocs`,
//! GNU ld 2.38+ and lld): a position-independent binary otherwise keeps a
//! 24-byte `.rela.dyn` entry per pointer in its read-only data (string
//! tables, vtables, panic locations); packed they are a short bitmap, 16 KB
//! less in the stripped daemon (issue 16: at most 512 KiB). The binary then
//! names the version GLIBC_ABI_DT_RELR, so it runs on glibc 2.36 or later
//! and an older loader refuses it by name rather than misbehaving.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
