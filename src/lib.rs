//! tportknockd: a port-knocking daemon that watches an interface below the
//! firewall and opens doors for sources that knock the right sequence.
//!
//! Frames flow one way: `capture` (ring, kernel filter, own addresses,
//! admission of frames the host would take) → `wire` (decode) → `knock`
//! (steps, sources, matchers) → `doors` (door state, journal, timed stops,
//! commands), joined without I/O by `pipeline`. `daemon` is the I/O shell
//! around it, `config` reads the rules, `sys` wraps the system calls and
//! `client` is `tportknock`.

#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod capture;
pub mod client;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod doors;
pub mod knock;
pub mod pipeline;
mod sort;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod wire;
