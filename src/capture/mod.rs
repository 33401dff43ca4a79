//! Capture: the PACKET_MMAP ring, the kernel filter in front of it, and the
//! table of the host's own addresses that decides whether a frame is ours.

pub mod filter;
pub mod netif;
#[allow(unsafe_code)]
pub mod ring;
