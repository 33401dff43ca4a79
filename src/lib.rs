//! tportknockd: a port-knocking daemon that watches an interface below the
//! firewall and opens doors for sources that knock the right sequence.
//!
//! Frames flow one way, a folder per stage: `capture` (ring, kernel filter,
//! own addresses, admission of frames the host would take) → `wire`
//! (decode) → `knock` (steps, sources, matcher) → `doors`
//! (door state, journal, timed stops, commands). `config` reads the rules,
//! `daemon` is the I/O shell around the stages, `client` is `tportknock`.

#![deny(unsafe_code)]

pub mod capture;
pub mod client;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod doors;
pub mod knock;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod wire;
