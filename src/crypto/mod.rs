//! The cryptography of rotating sequences, inside the crate (the
//! dependency list is fixed): SHA-256, HMAC-SHA256, the secret [`key::Key`]
//! and the key files it is kept in.
//!
//! A folder of its own rather than part of `knock`: the client derives and
//! sends the same sequences as the matcher, and key files follow the
//! config's ownership rules, so these are used by more than one stage.
//! Nothing here is constant-time beyond key comparison; the secrets are
//! local and the daemon's timing depends on the network far more.

pub mod hmac;
pub mod key;
pub mod keyfile;
pub mod sha256;
