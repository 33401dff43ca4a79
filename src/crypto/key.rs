//! The shared secret of a rotating event: 128 to 512 random bits.
//!
//! A [`Key`] lives in a fixed array (never on a growable heap buffer that
//! could leave copies behind when it moves), is wiped when dropped, and its
//! `Debug` shows only its length.

use std::fmt;
use std::io;

use crate::sys::wipe::wipe;

/// Fewest key bytes accepted: 128 bits, the floor and TOTP's advice.
pub const MIN_KEY_BYTES: usize = 16;
/// Most key bytes accepted: one HMAC-SHA256 block. A longer key would be
/// hashed to 32 bytes first and be no stronger.
pub const MAX_KEY_BYTES: usize = 64;
/// Bytes of a generated key: 256 bits, SHA-256's own strength.
pub const GENERATED_KEY_BYTES: usize = 32;

/// A secret key for HMAC-SHA256.
///
/// Invariant: `MIN_KEY_BYTES <= len <= MAX_KEY_BYTES`, and the bytes of
/// `bytes` past `len` are zero.
pub struct Key {
    bytes: [u8; MAX_KEY_BYTES],
    len: usize,
}

/// A key of a length outside `MIN_KEY_BYTES..=MAX_KEY_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLengthError {
    /// The length that was offered, in bytes.
    pub len: usize,
}

impl fmt::Display for KeyLengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a key of {} bits; keys have {} to {} bits",
            self.len * 8,
            MIN_KEY_BYTES * 8,
            MAX_KEY_BYTES * 8
        )
    }
}

impl std::error::Error for KeyLengthError {}

impl Key {
    /// A key holding a copy of `bytes`; the caller wipes its own copy.
    pub fn new(bytes: &[u8]) -> Result<Key, KeyLengthError> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(KeyLengthError { len: bytes.len() });
        }
        let mut key = Key {
            bytes: [0; MAX_KEY_BYTES],
            len: bytes.len(),
        };
        key.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// A fresh key of [`GENERATED_KEY_BYTES`] from the kernel's generator.
    pub fn generate() -> io::Result<Key> {
        let mut key = Key {
            bytes: [0; MAX_KEY_BYTES],
            len: GENERATED_KEY_BYTES,
        };
        crate::sys::random::fill(&mut key.bytes[..GENERATED_KEY_BYTES])?;
        Ok(key)
    }

    /// The secret bytes, for HMAC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Length in bits.
    pub fn bits(&self) -> usize {
        self.len * 8
    }
}

impl Clone for Key {
    fn clone(&self) -> Key {
        // Each copy wipes itself when dropped.
        Key {
            bytes: self.bytes,
            len: self.len,
        }
    }
}

/// Compares in time independent of where the keys differ.
impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        let diff = self
            .bytes
            .iter()
            .zip(&other.bytes)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0) & (self.len == other.len)
    }
}

impl Eq for Key {}

/// `Key(256 bits)`: never the bytes.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bits)", self.bits())
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_from_128_to_512_bits() {
        assert_eq!(Key::new(&[1; 15]).unwrap_err(), KeyLengthError { len: 15 });
        assert_eq!(Key::new(&[1; 65]).unwrap_err(), KeyLengthError { len: 65 });
        assert_eq!(
            Key::new(&[]).unwrap_err().to_string(),
            "a key of 0 bits; keys have 128 to 512 bits"
        );
        assert_eq!(Key::new(&[7; 16]).unwrap().as_bytes(), &[7; 16]);
        assert_eq!(Key::new(&[7; 64]).unwrap().bits(), 512);
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let key = Key::new(&[0xab; 20]).unwrap();
        let text = format!("{key:?} {:?}", Some(&key));
        assert_eq!(text, "Key(160 bits) Some(Key(160 bits))");
    }

    #[test]
    fn generated_keys_are_256_bits_and_differ() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        assert_eq!(a.as_bytes().len(), 32);
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }

    #[test]
    fn equality_needs_same_length_and_bytes() {
        let a = Key::new(&[5; 16]).unwrap();
        assert_ne!(a, Key::new(&[5; 17]).unwrap());
        // The same array with a zero byte more: only the length differs.
        let mut longer = [5u8; 17];
        longer[16] = 0;
        assert_ne!(a, Key::new(&longer).unwrap());
        let mut other = [5u8; 16];
        other[15] = 4;
        assert_ne!(a, Key::new(&other).unwrap());
    }
}
