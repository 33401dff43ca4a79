//! tportknockd: a port-knocking daemon that watches an interface below the
//! firewall and opens doors for sources that knock the right sequence.
//!
//! Data flows one way: `ring` (frames) → `wire` (decode) → `matcher` →
//! `doors` (start, journal, timed stop) → `runner` (commands).

#![deny(unsafe_code)]

pub mod log;

pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod doors;
pub mod filter;
pub mod journal;
pub mod knock;
pub mod matcher;
pub mod matchset;
pub mod netif;
#[allow(unsafe_code)]
pub mod ring;
pub mod runner;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod wheel;
pub mod wire;
