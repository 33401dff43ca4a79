//! Timer wheel cost per operation with 100,000 timers pending
//! (`cargo bench --bench wheel`). Plain timing, no harness: each figure is
//! the best of several rounds, in ns per operation.

use std::hint::black_box;
use std::time::Instant;
use tportknockd::doors::wheel::Wheel;

const PENDING: u64 = 100_000;
const ROUNDS: usize = 7;
const DAY_MS: u64 = 86_400_000;

/// xorshift64*: reproducible spread of due times.
fn dues(n: u64, seed: u64, span: u64) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            1 + s.wrapping_mul(0x2545_f491_4f6c_dd1d) % span
        })
        .collect()
}

fn best(mut f: impl FnMut() -> f64) -> f64 {
    (0..ROUNDS).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let spread = dues(PENDING, 1, 14 * DAY_MS);
    let extra = dues(PENDING, 2, 14 * DAY_MS);

    let insert = best(|| {
        let mut w = Wheel::new(0);
        for (i, &d) in spread.iter().enumerate() {
            w.insert(d, i);
        }
        let t = Instant::now();
        for (i, &d) in extra.iter().enumerate() {
            black_box(w.insert(d, i));
        }
        t.elapsed().as_nanos() as f64 / PENDING as f64
    });

    let cancel = best(|| {
        let mut w = Wheel::new(0);
        let ids: Vec<_> = spread
            .iter()
            .enumerate()
            .map(|(i, &d)| w.insert(d, i))
            .collect();
        let t = Instant::now();
        for &id in ids.iter().rev() {
            black_box(w.cancel(id));
        }
        t.elapsed().as_nanos() as f64 / PENDING as f64
    });

    // Expire everything, waking where the wheel asks (cascades included),
    // and separately in one jump (a machine back from two weeks asleep).
    let expire_stepped = best(|| {
        let mut w = Wheel::new(0);
        for (i, &d) in spread.iter().enumerate() {
            w.insert(d, i);
        }
        let mut out = Vec::with_capacity(PENDING as usize);
        let t = Instant::now();
        while let Some(next) = w.next_due_ms() {
            w.advance(next, &mut out);
        }
        let ns = t.elapsed().as_nanos() as f64 / PENDING as f64;
        assert_eq!(out.len() as u64, PENDING);
        ns
    });

    let expire_jump = best(|| {
        let mut w = Wheel::new(0);
        for (i, &d) in spread.iter().enumerate() {
            w.insert(d, i);
        }
        let mut out = Vec::with_capacity(PENDING as usize);
        let t = Instant::now();
        w.advance(15 * DAY_MS, &mut out);
        let ns = t.elapsed().as_nanos() as f64 / PENDING as f64;
        assert_eq!(out.len() as u64, PENDING);
        ns
    });

    println!("wheel, {PENDING} timers pending, due within 14 days, best of {ROUNDS}:");
    println!("  insert            {insert:7.1} ns/op");
    println!("  cancel            {cancel:7.1} ns/op");
    println!("  expire (stepped)  {expire_stepped:7.1} ns/timer");
    println!("  expire (one jump) {expire_jump:7.1} ns/timer");
    println!(
        "  slab entry        {} bytes per timer (usize payload)",
        Wheel::<usize>::ENTRY_BYTES
    );
}
