//! HMAC-SHA256 (RFC 2104 with SHA-256; test cases from RFC 4231).
//!
//! `HMAC(K, m) = H((K' ^ opad) ‖ H((K' ^ ipad) ‖ m))`, where `K'` is the key
//! padded with zeros to the 64-byte block, or first hashed if longer. The
//! two hash states after the padded key blocks are kept, so one keyed
//! [`HmacSha256`] can be cloned for many messages; both are wiped on drop.

use super::sha256::{Sha256, BLOCK_LEN, DIGEST_LEN};
use crate::sys::wipe::wipe;

/// Bytes per MAC.
pub const MAC_LEN: usize = DIGEST_LEN;

const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;

/// An HMAC-SHA256 computation in progress. Its `Debug` shows nothing of
/// the key.
#[derive(Clone, Debug)]
pub struct HmacSha256 {
    inner: Sha256,
    outer: Sha256,
}

impl HmacSha256 {
    /// Starts a MAC under `key` (any length; longer than 64 bytes is
    /// hashed first, as RFC 2104 says).
    pub fn new(key: &[u8]) -> HmacSha256 {
        let mut block = [0u8; BLOCK_LEN];
        if key.len() > BLOCK_LEN {
            let mut digest = Sha256::digest(key);
            block[..DIGEST_LEN].copy_from_slice(&digest);
            wipe(&mut digest);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; BLOCK_LEN];
        let mut keyed = |byte: u8| {
            for (p, k) in pad.iter_mut().zip(&block) {
                *p = k ^ byte;
            }
            let mut h = Sha256::new();
            h.update(&pad);
            h
        };
        let inner = keyed(IPAD);
        let outer = keyed(OPAD);
        wipe(&mut pad);
        wipe(&mut block);
        HmacSha256 { inner, outer }
    }

    /// Appends `data` to the message.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The MAC of everything given to `update`.
    pub fn finish(self) -> [u8; MAC_LEN] {
        let HmacSha256 { inner, mut outer } = self;
        let mut digest = inner.finish();
        outer.update(&digest);
        wipe(&mut digest);
        outer.finish()
    }

    /// The MAC of the concatenation of `parts`, in one call.
    pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut h = HmacSha256::new(key);
        for part in parts {
            h.update(part);
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sha256::hex;

    /// Every HMAC-SHA256 test case of RFC 4231 (section 4); case 5 is
    /// checked on its first 128 bits, as the RFC gives only those.
    #[test]
    fn rfc_4231_test_cases() {
        let case4_key: Vec<u8> = (1..=25).collect();
        let cases: [(&[u8], &[u8], &str); 7] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                &case4_key,
                &[0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                &[0x0c; 20],
                b"Test With Truncation",
                "a3b6167473100ee06e0c796c2955552b",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &[0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (i, (key, data, expect)) in cases.iter().enumerate() {
            let mac = HmacSha256::mac(key, &[data]);
            // Case 5 truncates to 128 bits: compare as many hex digits as given.
            assert_eq!(
                &hex(&mac)[..expect.len()],
                *expect,
                "RFC 4231 test case {}",
                i + 1
            );
        }
    }

    /// A message given in parts, or a keyed state cloned, MACs the same as
    /// the message in one piece; a different key or message does not.
    #[test]
    fn parts_and_clones_agree() {
        let key = b"0123456789abcdef0123456789abcdef";
        let whole = HmacSha256::mac(key, &[b"SSH\x00\x00\x00\x00\x03\x60\xa8\x2a"]);
        let parts = HmacSha256::mac(key, &[b"SSH", &[0, 0, 0, 0, 3, 0x60, 0xa8, 0x2a]]);
        assert_eq!(whole, parts);
        let keyed = HmacSha256::new(key);
        let mut a = keyed.clone();
        a.update(b"SSH\x00\x00\x00\x00\x03\x60\xa8\x2a");
        assert_eq!(a.finish(), whole);
        assert_ne!(
            HmacSha256::mac(b"0123456789abcdef0123456789abcdeF", &[b"SSH"]),
            HmacSha256::mac(key, &[b"SSH"])
        );
        assert_ne!(
            HmacSha256::mac(key, &[b"SSI"]),
            HmacSha256::mac(key, &[b"SSH"])
        );
    }

    /// A 64-byte key is used as it is, a 65-byte key is hashed: both
    /// boundaries agree with an independent implementation (Python's hmac).
    #[test]
    fn key_length_boundaries() {
        let k64 = [0x42u8; 64];
        let k65 = [0x42u8; 65];
        assert_eq!(
            hex(&HmacSha256::mac(&k64, &[b"boundary"])),
            "530d9d42d5a799c52ff13d9b7dd313db2604204d1f327e0385c0db94b7e29ff6"
        );
        assert_eq!(
            hex(&HmacSha256::mac(&k65, &[b"boundary"])),
            "76c506d36076cba6b3ee21d9956fc6fbf3c9d71fe33e2868063af84c08dde198"
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let h = HmacSha256::new(b"very secret key material");
        let text = format!("{h:?}");
        assert!(!text.contains("secret") && !text.contains("0x"), "{text}");
    }
}
