//! Random bytes from the kernel (`getrandom(2)`), for secret keys.

use std::io;

/// Fills `buf` with random bytes from the kernel's generator. Blocks only
/// while the pool is not yet seeded (early boot); a short read or a signal
/// is retried, so on success every byte is fresh.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid, writable memory of exactly `rest.len()`
        // bytes for the duration of the call; flags 0 asks for nothing else.
        match syscall!(getrandom(rest.as_mut_ptr().cast(), rest.len(), 0)) {
            // getrandom never returns 0 for a non-empty buffer; if a kernel
            // did, retrying would loop forever.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "getrandom returned no bytes",
                ))
            }
            Ok(n) => done += n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_byte_and_differs_between_calls() {
        // Two 64-byte draws agreeing, or a draw leaving a 16-byte stretch
        // zero, each has probability below 2^-128.
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        for chunk in a.chunks(16).chain(b.chunks(16)) {
            assert!(chunk.iter().any(|&x| x != 0), "{a:?} {b:?}");
        }
        fill(&mut []).unwrap();
    }

    #[test]
    fn large_buffers_are_filled_whole() {
        // getrandom returns at most 32 MiB - 1 per call for large requests;
        // 1 MiB exercises the loop's bookkeeping without being slow.
        let mut big = vec![0u8; 1 << 20];
        fill(&mut big).unwrap();
        let zeros = big.iter().filter(|&&x| x == 0).count();
        // Expected 4096 zero bytes; 6 standard deviations is about 380.
        assert!((3700..4500).contains(&zeros), "{zeros} zero bytes");
    }
}
