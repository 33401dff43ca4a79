//! Overwriting secrets in memory before it is freed or reused.

use std::sync::atomic::{compiler_fence, Ordering};

/// Sets every item of `items` to its default (zero for integers) with
/// volatile writes, which the optimiser may not drop as dead stores even
/// when the memory is freed right after. This keeps a key out of freed
/// heap and stack; it cannot reach copies the compiler made in registers
/// or spilled elsewhere, so it narrows the window rather than closing it.
pub fn wipe<T: Copy + Default>(items: &mut [T]) {
    for item in items.iter_mut() {
        // SAFETY: `item` is a valid, aligned, exclusive reference; `T: Copy`
        // has no destructor that overwriting could skip.
        unsafe { std::ptr::write_volatile(item, T::default()) };
    }
    compiler_fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroes_bytes_and_words() {
        let mut bytes = [0xa5u8; 100];
        wipe(&mut bytes);
        assert_eq!(bytes, [0u8; 100]);
        let mut words = [u32::MAX; 8];
        wipe(&mut words);
        assert_eq!(words, [0u32; 8]);
        let mut one = 7u64;
        wipe(std::slice::from_mut(&mut one));
        assert_eq!(one, 0);
    }
}
