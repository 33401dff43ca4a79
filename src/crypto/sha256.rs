//! SHA-256 (FIPS 180-4, section 6.2), streaming: [`Sha256::update`] any
//! number of times, then [`Sha256::finish`]. Written for HMAC keys and
//! knock derivation, not for bulk hashing: plain, portable, no SIMD.
//!
//! The state is wiped when dropped: inside HMAC it is a function of the key
//! (the midstate after the padded key block) and as good as the key itself.

use crate::sys::wipe::wipe;

/// Bytes per digest.
pub const DIGEST_LEN: usize = 32;
/// Bytes per message block: HMAC pads keys to this length.
pub const BLOCK_LEN: usize = 64;

/// The initial hash value: the first 32 bits of the fractional parts of the
/// square roots of the first eight primes (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The round constants: the first 32 bits of the fractional parts of the
/// cube roots of the first 64 primes (FIPS 180-4, 4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A SHA-256 computation in progress.
///
/// Invariant: `buf_len < BLOCK_LEN`; the first `buf_len` bytes of `buf`
/// are message bytes not yet compressed; `total` counts every byte given
/// to `update`.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    buf: [u8; BLOCK_LEN],
    buf_len: usize,
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

/// Never shows the state: inside HMAC it stands for the key.
impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sha256 {{ {} bytes hashed }}", self.total)
    }
}

impl Sha256 {
    /// A fresh computation (the hash of nothing so far).
    pub fn new() -> Sha256 {
        Sha256 {
            state: H0,
            buf: [0; BLOCK_LEN],
            buf_len: 0,
            total: 0,
        }
    }

    /// The digest of `data` in one call.
    pub fn digest(data: &[u8]) -> [u8; DIGEST_LEN] {
        let mut h = Sha256::new();
        h.update(data);
        h.finish()
    }

    /// Appends `data` to the message.
    pub fn update(&mut self, mut data: &[u8]) {
        // 2^64 bits is the standard's limit; 2^61 bytes will never be hashed
        // here, so wrapping is only a formality.
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (BLOCK_LEN - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < BLOCK_LEN {
                return;
            }
            compress(&mut self.state, &self.buf);
            self.buf_len = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK_LEN);
        for block in &mut blocks {
            compress(&mut self.state, block.try_into().expect("64-byte chunk"));
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
        debug_assert!(self.buf_len < BLOCK_LEN);
    }

    /// Pads the message (a 1 bit, zeros, the bit length as 64-bit big
    /// endian) and returns the digest.
    pub fn finish(mut self) -> [u8; DIGEST_LEN] {
        let bits = self.total.wrapping_mul(8);
        let mut pad = [0u8; BLOCK_LEN + 8];
        pad[0] = 0x80;
        // Enough zeros that the length ends exactly on a block boundary.
        let zeros = (BLOCK_LEN + 56 - 1 - self.buf_len) % BLOCK_LEN;
        let len = 1 + zeros;
        pad[len..len + 8].copy_from_slice(&bits.to_be_bytes());
        self.update_padding(&pad[..len + 8]);
        debug_assert_eq!(self.buf_len, 0);
        let mut out = [0u8; DIGEST_LEN];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// `update` without counting the bytes as message.
    fn update_padding(&mut self, pad: &[u8]) {
        let total = self.total;
        self.update(pad);
        self.total = total;
    }
}

impl Drop for Sha256 {
    fn drop(&mut self) {
        wipe(&mut self.state);
        wipe(&mut self.buf);
    }
}

/// The compression function: folds one 64-byte block into `state`.
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_LEN]) {
    let mut w = [0u32; 64];
    for (t, chunk) in block.chunks_exact(4).enumerate() {
        w[t] = u32::from_be_bytes(chunk.try_into().expect("4-byte chunk"));
    }
    for t in 16..64 {
        let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
        let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16]
            .wrapping_add(s0)
            .wrapping_add(w[t - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let big_s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(big_s1)
            .wrapping_add(ch)
            .wrapping_add(K[t])
            .wrapping_add(w[t]);
        let big_s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = big_s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
    wipe(&mut w);
}

/// Lower-case hex of `bytes`, for tests and diagnostics of non-secret data.
#[cfg(test)]
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::XorShift;

    /// FIPS 180-4's example messages (NIST's "SHA256.pdf" examples): the
    /// one-block "abc", the two-block 448-bit message, and the empty message.
    #[test]
    fn fips_180_4_examples() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&Sha256::digest(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&Sha256::digest(
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn\
                  hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
            )),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
        );
    }

    /// The long example: one million 'a', fed in uneven pieces so that the
    /// buffering between blocks is exercised too.
    #[test]
    fn one_million_a() {
        let expect = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        let a = vec![b'a'; 1_000_000];
        assert_eq!(hex(&Sha256::digest(&a)), expect);
        let mut h = Sha256::new();
        let mut rest = &a[..];
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            h.update(&rest[..n]);
            rest = &rest[n..];
            size = size % 97 + 13;
        }
        assert_eq!(hex(&h.finish()), expect);
    }

    /// Lengths around the padding boundaries (55/56 bytes: the length still
    /// fits / no longer fits in the last block). The digests come from an
    /// independent implementation (Python's hashlib) of bytes `i % 251`.
    #[test]
    fn padding_boundaries() {
        for (n, expect) in [
            (
                55,
                "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59",
            ),
            (
                56,
                "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562",
            ),
            (
                63,
                "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488",
            ),
            (
                64,
                "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108",
            ),
            (
                65,
                "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781",
            ),
            (
                119,
                "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6",
            ),
            (
                120,
                "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c",
            ),
            (
                127,
                "92ca0fa6651ee2f97b884b7246a562fa71250fedefe5ebf270d31c546bfea976",
            ),
            (
                128,
                "471fb943aa23c511f6f72f8d1652d9c880cfa392ad80503120547703e56a2be5",
            ),
        ] {
            let msg: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            assert_eq!(hex(&Sha256::digest(&msg)), expect, "length {n}");
        }
    }

    /// However a message is cut into `update` calls, the digest is the same.
    #[test]
    fn split_updates_agree_with_one_call() {
        let mut rng = XorShift(0x5eed_0f5a_0256);
        for _ in 0..200 {
            let len = rng.below(300);
            let msg: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let whole = Sha256::digest(&msg);
            let mut h = Sha256::new();
            let mut rest = &msg[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                h.update(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(h.finish(), whole, "length {len}");
        }
    }

    /// The constant tables are what the standard says they are derived from,
    /// so a typo in one of the 72 words cannot hide behind the vectors.
    #[test]
    fn constants_are_the_prime_roots() {
        let primes: Vec<u64> = (2u64..)
            .filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0))
            .take(64)
            .collect();
        let frac32 = |x: f64| ((x - x.floor()) * 4294967296.0) as u32;
        for (i, &p) in primes.iter().enumerate() {
            assert_eq!(K[i], frac32((p as f64).cbrt()), "K[{i}]");
        }
        for (i, &p) in primes.iter().take(8).enumerate() {
            assert_eq!(H0[i], frac32((p as f64).sqrt()), "H0[{i}]");
        }
    }

    #[test]
    fn debug_shows_no_state() {
        let mut h = Sha256::new();
        h.update(b"secret");
        assert_eq!(format!("{h:?}"), "Sha256 { 6 bytes hashed }");
    }
}
