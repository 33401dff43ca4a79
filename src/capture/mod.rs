//! Capture: the PACKET_MMAP ring, the kernel filter in front of it, the
//! table of the host's own addresses, and the rules that decide whether a
//! frame is one the host would take (`admit`).

pub mod admit;
pub mod filter;
pub mod netif;
#[allow(unsafe_code)]
pub mod ring;
