//! One small stable sort for the whole crate.
//!
//! Every `slice::sort*` call with its own element type or closure
//! instantiates the standard library's driftsort/ipnsort afresh, 2–16 KB of
//! code each: about 100 KB of the daemon was sort copies. Here the algorithm
//! is written once, without generics, over a [`Seq`] trait object that only
//! compares and swaps elements by position; each call site adds just its
//! comparison and a swap.
//!
//! Stable, O(n log n) comparisons in the worst case (lengths are hostile: up
//! to 65,536 sources, 10,000 doors), O(n) on input that is already sorted.
//! It needs 2·n words of scratch while it runs. None of the crate's sorts is
//! per frame; the standard sorts stay in tests, where size does not matter.

use std::cmp::Ordering;

/// Up to this length a slice is insertion-sorted in place, and longer ones
/// are merged from runs of this length.
const RUN: usize = 16;

/// A sequence the sort reads and permutes through positions only.
trait Seq {
    /// Compares the elements at positions `a` and `b`.
    fn cmp(&mut self, a: usize, b: usize) -> Ordering;
    /// Swaps the elements at positions `a` and `b`.
    fn swap(&mut self, a: usize, b: usize);
}

/// A slice with its comparison.
struct By<'a, T, F> {
    v: &'a mut [T],
    cmp: F,
}

impl<T, F: FnMut(&T, &T) -> Ordering> Seq for By<'_, T, F> {
    fn cmp(&mut self, a: usize, b: usize) -> Ordering {
        (self.cmp)(&self.v[a], &self.v[b])
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.v.swap(a, b);
    }
}

/// Sorts `v` by `cmp`, stably (equal elements keep their order).
pub(crate) fn sort_by<T>(v: &mut [T], cmp: impl FnMut(&T, &T) -> Ordering) {
    let n = v.len();
    sort_seq(n, &mut By { v, cmp });
}

/// Sorts `v` by the key `f` gives each element, stably. The key is computed
/// for both elements of every comparison, so it should be cheap.
pub(crate) fn sort_by_key<T, K: Ord>(v: &mut [T], mut f: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| f(a).cmp(&f(b)));
}

/// Sorts `v` in ascending order, stably.
pub(crate) fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// The algorithm, once for every element type: short sequences are
/// insertion-sorted in place; longer ones get a permutation of positions,
/// merge-sorted bottom-up (the elements do not move meanwhile, so positions
/// still name them), which is then applied with swaps.
#[inline(never)]
fn sort_seq(n: usize, s: &mut dyn Seq) {
    if n <= RUN {
        for i in 1..n {
            let mut j = i;
            while j > 0 && s.cmp(j, j - 1) == Ordering::Less {
                s.swap(j, j - 1);
                j -= 1;
            }
        }
        return;
    }
    let mut perm: Vec<usize> = (0..n).collect();
    for run in perm.chunks_mut(RUN) {
        for i in 1..run.len() {
            let x = run[i];
            let mut j = i;
            while j > 0 && s.cmp(x, run[j - 1]) == Ordering::Less {
                run[j] = run[j - 1];
                j -= 1;
            }
            run[j] = x;
        }
    }
    let mut buf: Vec<usize> = vec![0; n];
    let mut width = RUN;
    while width < n {
        let mut lo = 0;
        while lo + width < n {
            let mid = lo + width;
            let hi = (mid + width).min(n);
            // Already in order across the seam: nothing to merge (this is
            // what makes sorted input linear).
            if s.cmp(perm[mid], perm[mid - 1]) != Ordering::Less {
                lo = hi;
                continue;
            }
            let (mut i, mut j, mut k) = (lo, mid, lo);
            while i < mid && j < hi {
                // Ties take the left run's element: stable.
                if s.cmp(perm[j], perm[i]) == Ordering::Less {
                    buf[k] = perm[j];
                    j += 1;
                } else {
                    buf[k] = perm[i];
                    i += 1;
                }
                k += 1;
            }
            buf[k..k + (mid - i)].copy_from_slice(&perm[i..mid]);
            k += mid - i;
            buf[k..k + (hi - j)].copy_from_slice(&perm[j..hi]);
            perm[lo..hi].copy_from_slice(&buf[lo..hi]);
            lo = hi;
        }
        width *= 2;
    }
    // Position p must receive the element now at perm[p]. Each cycle of the
    // permutation is walked once; a finished position is marked perm[p] = p.
    for start in 0..n {
        let mut p = start;
        loop {
            let from = perm[p];
            perm[p] = p;
            if from == start {
                break;
            }
            s.swap(p, from);
            p = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sorts (key, original index) pairs by key only, so stability shows.
    fn check(keys: &[u8]) {
        let mut ours: Vec<(u8, usize)> = keys.iter().copied().zip(0..).collect();
        let mut std = ours.clone();
        sort_by_key(&mut ours, |&(k, _)| k);
        std.sort_by_key(|&(k, _)| k);
        assert_eq!(ours, std);
    }

    #[test]
    fn short_long_sorted_reversed_and_equal_inputs() {
        for n in [0, 1, 2, 15, 16, 17, 31, 32, 33, 100, 1000, 4097] {
            let up: Vec<u8> = (0..n).map(|i| (i / 3) as u8).collect();
            let down: Vec<u8> = up.iter().rev().copied().collect();
            check(&up);
            check(&down);
            check(&vec![7; n]);
        }
    }

    #[test]
    fn sorted_input_takes_linear_comparisons() {
        let n = 65_536;
        let mut v: Vec<u32> = (0..n).collect();
        let mut calls = 0usize;
        sort_by(&mut v, |a, b| {
            calls += 1;
            a.cmp(b)
        });
        assert!(v.iter().copied().eq(0..n));
        // Insertion sort of each run: RUN - 1 comparisons; one per seam.
        assert!(calls < 2 * n as usize, "{calls} comparisons");
    }

    #[test]
    fn worst_case_is_n_log_n() {
        // Alternating runs defeat the seam check: every merge is real.
        let n = 65_536usize;
        let mut v: Vec<usize> = (0..n).map(|i| if i % 2 == 0 { i } else { n - i }).collect();
        let mut calls = 0usize;
        sort_by(&mut v, |a, b| {
            calls += 1;
            a.cmp(b)
        });
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        // n·log2(n) = 1,048,576 for n = 65,536; quadratic would be 2^31.
        assert!(calls <= 2 * n * 16, "{calls} comparisons");
    }

    #[test]
    fn sort_drops_nothing_and_keeps_owned_values() {
        let mut v: Vec<String> = ["b", "a", "c", "a"].iter().map(|s| s.to_string()).collect();
        v.extend((0..40).rev().map(|i| format!("x{i:02}")));
        let mut want = v.clone();
        want.sort();
        sort(&mut v);
        assert_eq!(v, want);
    }

    proptest! {
        #[test]
        fn same_as_std_stable_sort(keys in proptest::collection::vec(0u8..8, 0..300)) {
            check(&keys);
        }

        #[test]
        fn same_as_std_on_wide_keys(keys in proptest::collection::vec(any::<u8>(), 0..2000)) {
            check(&keys);
        }
    }
}
