//! Rotating sequences: the concrete steps an event expects in a time
//! window, derived from the event's key, so that a sniffed knock is worth
//! nothing in the next windows (and, once the matcher burns the sequences
//! that opened a door, nothing in its own window either).
//!
//! # The derivation, exactly
//!
//! Inputs: the key `K` (the bytes of the key file, 16 to 64), the event
//! name `E` as written in the config (its ASCII bytes, case kept, no
//! terminator), the window length `L` in seconds, the Unix time `t` in
//! seconds, and the step templates `T1 … Tk` ([`Template`]).
//!
//! 1. Window: `w = floor(t / L)`, a 64-bit unsigned number.
//! 2. Blocks: block 0 is `HMAC-SHA256(K, E ‖ W)`, where `W` is `w` as 8
//!    bytes big-endian (as RFC 6238 encodes its counter). Block `j` for
//!    `j = 1, 2, …` is `HMAC-SHA256(K, E ‖ W ‖ J)`, `J` being `j` as 4 bytes
//!    big-endian. Blocks are computed only as far as needed.
//! 3. Words: each 32-byte block is read as eight 32-bit big-endian words,
//!    bytes `4i … 4i+3` forming word `i`; block 0's words come first, then
//!    block 1's, and so on. This is one stream, consumed in order.
//! 4. Steps, in order `T1 … Tk`: let `n` be the template's number of
//!    choices (ports in its range times flag combinations in its set, 1 for
//!    fixed flags) and `limit = 2^32 − (2^32 mod n)`, the largest multiple
//!    of `n` not above `2^32`. Take the next word `v` of the stream; if
//!    `v >= limit`, discard it and take the next one, until `v < limit`.
//!    The choice is `c = v mod n`. Every step takes at least one word,
//!    fixed steps (`n = 1`, `limit = 2^32`) included.
//! 5. The step: with `m` flag choices (the set's size, or 1), the port is
//!    `first + floor(c / m)` and the flags are choice number `c mod m` of
//!    the set sorted by the flag byte's value (FIN 1, SYN 2, RST 4, PSH 8,
//!    ACK 16, URG 32); with fixed flags, the port is `first + c`.
//!
//! Rejection (step 4) makes every choice exactly equally likely: the words
//! below `limit` fall into each residue `mod n` the same number of times.
//! With at most 65535 × 16 choices a word is discarded with probability
//! below 2^-12, so a sequence of eight steps almost always needs block 0 only.
//!
//! The test vectors at the end of this file, checked against an
//! independent implementation written from this text, pin it down.

use std::time::{SystemTime, UNIX_EPOCH};

use super::template::Template;
use super::Step;
use crate::crypto::hmac::{HmacSha256, MAC_LEN};
use crate::crypto::key::Key;
use crate::sys::wipe::wipe;

/// Window length when the config gives none: RFC 6238's 30 s.
pub const DEFAULT_WINDOW: u32 = 30;
/// Shortest window: the client's clock may be one window off, so shorter
/// windows demand clocks closer than most hosts keep without NTP.
pub const MIN_WINDOW: u32 = 5;
/// Longest window: a knock sniffed and blocked can be sent first by the
/// sniffer for up to two windows, so longer windows only help an attacker.
pub const MAX_WINDOW: u32 = 3600;
/// Windows whose sequences are live at once: the previous, the current and
/// the next, for clock skew of up to one window either way.
pub const LIVE_WINDOWS: u32 = 3;
/// A guess should open a door with a chance below 1 in 2^32; `-C` warns
/// otherwise.
pub const MIN_GUESS_BITS: f64 = 32.0;

/// Seconds per window.
///
/// Invariant: `MIN_WINDOW <= secs <= MAX_WINDOW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowLen(u32);

impl Default for WindowLen {
    fn default() -> Self {
        WindowLen(DEFAULT_WINDOW)
    }
}

impl WindowLen {
    /// A window of `secs` seconds; `None` outside `MIN_WINDOW..=MAX_WINDOW`.
    pub fn new(secs: u32) -> Option<WindowLen> {
        (MIN_WINDOW..=MAX_WINDOW)
            .contains(&secs)
            .then_some(WindowLen(secs))
    }

    /// The length in seconds.
    pub fn secs(self) -> u32 {
        self.0
    }

    /// The window `floor(unix_secs / len)` that `unix_secs` falls in.
    pub fn index(self, unix_secs: u64) -> u64 {
        unix_secs / u64::from(self.0)
    }

    /// The Unix time at which window `w` begins (saturating far in the future).
    pub fn start(self, w: u64) -> u64 {
        w.saturating_mul(u64::from(self.0))
    }

    /// The windows live at `unix_secs`: the previous (when there is one),
    /// the current and the next.
    pub fn live(self, unix_secs: u64) -> std::ops::RangeInclusive<u64> {
        let w = self.index(unix_secs);
        w.saturating_sub(1)..=w.saturating_add(1)
    }

    /// When the live set changes next: the start of the window after the
    /// current one. A timer set for then keeps the matcher's sequences fresh.
    pub fn next_change(self, unix_secs: u64) -> u64 {
        self.start(self.index(unix_secs).saturating_add(1))
    }
}

/// The current Unix time in whole seconds, shifted by `shift` seconds (the
/// client's clock-shift option); 0 for a clock set before 1970.
pub fn unix_now(shift: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now.saturating_add_signed(shift)
}

/// The stream of 32-bit words of one event and window (steps 2 and 3 of
/// the derivation). Ends only after block 2^32 − 1, which no derivation of
/// a config-sized sequence comes near.
pub struct Words {
    keyed: HmacSha256,
    prefix_len: usize,
    /// `E ‖ W`, then room for `J`; `prefix_len` bytes are in use.
    message: Vec<u8>,
    block: [u8; MAC_LEN],
    /// Words of `block` already handed out (8: none left).
    used: usize,
    /// The block to compute next; past `u32::MAX` the stream has ended.
    next_block: u64,
}

/// Shows no word: they are derived from the key.
impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Words").finish_non_exhaustive()
    }
}

impl Words {
    /// The stream for `event` in window `window` under `key`.
    pub fn new(key: &Key, event: &str, window: u64) -> Words {
        let mut message = Vec::with_capacity(event.len() + 12);
        message.extend_from_slice(event.as_bytes());
        message.extend_from_slice(&window.to_be_bytes());
        Words {
            keyed: HmacSha256::new(key.as_bytes()),
            prefix_len: message.len(),
            message,
            block: [0; MAC_LEN],
            used: MAC_LEN / 4,
            next_block: 0,
        }
    }
}

impl Iterator for Words {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.used == MAC_LEN / 4 {
            if self.next_block > u64::from(u32::MAX) {
                return None;
            }
            self.message.truncate(self.prefix_len);
            if self.next_block > 0 {
                let j = self.next_block as u32;
                self.message.extend_from_slice(&j.to_be_bytes());
            }
            let mut mac = self.keyed.clone();
            mac.update(&self.message);
            self.block = mac.finish();
            self.used = 0;
            self.next_block += 1;
        }
        let i = self.used * 4;
        self.used += 1;
        Some(u32::from_be_bytes(
            self.block[i..i + 4].try_into().expect("4 bytes"),
        ))
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        wipe(&mut self.block);
    }
}

/// A number below `n`, each equally likely if the words are (step 4 of the
/// derivation): words at or above the largest multiple of `n` not above
/// 2^32 are discarded. `None` if the words run out first.
pub fn uniform_below(n: u32, words: &mut impl Iterator<Item = u32>) -> Option<u32> {
    debug_assert!(n >= 1);
    let n = u64::from(n.max(1));
    let limit = (1u64 << 32) - (1u64 << 32) % n;
    debug_assert!(limit % n == 0 && limit > (1u64 << 32) - n);
    words
        .find(|&v| u64::from(v) < limit)
        .map(|v| (u64::from(v) % n) as u32)
}

/// The concrete sequence of `event` for window `window`: one step per
/// template, in order. `None` only if the word stream ran out, which needs
/// about 2^35 discarded words in a row and does not happen.
pub fn derive(key: &Key, event: &str, window: u64, templates: &[Template]) -> Option<Vec<Step>> {
    let mut words = Words::new(key, event, window);
    templates
        .iter()
        .map(|t| uniform_below(t.choices(), &mut words).map(|c| t.step(c)))
        .collect()
}

/// log2 of `n` (at least 1), to within 1e-12, without `f64::log2`: that
/// one call was the daemon's only use of libm, which cost it 300 KiB of
/// resident memory (the library's start-up relocations touch its text).
/// The integer part is `ilog2`; each squaring of the mantissa, kept in
/// [1, 2), yields the next binary digit of the fraction.
fn log2(n: u32) -> f64 {
    let n = n.max(1);
    let int = n.ilog2();
    let mut m = f64::from(n) / f64::from(1u32 << int);
    let (mut frac, mut digit) = (0.0, 0.5);
    for _ in 0..f64::MANTISSA_DIGITS {
        debug_assert!((1.0..2.0).contains(&m));
        m *= m;
        if m >= 2.0 {
            m /= 2.0;
            frac += digit;
        }
        digit /= 2.0;
    }
    f64::from(int) + frac
}

/// How hard a rotating sequence is to guess.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuessSpace {
    /// log2 of the number of possible sequences of one window: the sum of
    /// log2(choices) over the steps.
    pub bits_per_window: f64,
    /// Sequences live at once, each of which a guess may hit.
    pub live_windows: u32,
}

impl GuessSpace {
    /// The guess space of `templates` with [`LIVE_WINDOWS`] live.
    pub fn of(templates: &[Template]) -> GuessSpace {
        GuessSpace {
            bits_per_window: templates.iter().map(|t| log2(t.choices())).sum(),
            live_windows: LIVE_WINDOWS,
        }
    }

    /// log2 of the odds against one guessed sequence opening the door:
    /// each live window's sequence is a target.
    pub fn bits_per_guess(&self) -> f64 {
        self.bits_per_window - log2(self.live_windows)
    }

    /// `-C`'s words: `guess space: about 40 bits per window (…)`.
    pub fn describe(&self) -> String {
        format!(
            "guess space: about {} bits per window; with {} windows live a guessed \
             sequence opens with a chance of about 1 in 2^{}",
            whole(self.bits_per_window),
            self.live_windows,
            whole(self.bits_per_guess())
        )
    }

    /// A warning when a guess has a better chance than 1 in 2^32.
    pub fn warning(&self) -> Option<String> {
        (self.bits_per_guess() < MIN_GUESS_BITS).then(|| {
            format!(
                "is easy to guess: a guessed sequence opens with a chance of about 1 in \
                 2^{} (about {} bits per window, {} windows live), below 1 in 2^{}; \
                 widen the port ranges, add flag sets or add steps",
                whole(self.bits_per_guess()),
                whole(self.bits_per_window),
                self.live_windows,
                whole(MIN_GUESS_BITS)
            )
        })
    }
}

/// `bits` rounded to a whole number for the words above, printed as an
/// integer: formatting an `f64` would link ~15 KB of float printing into the
/// daemon for these two lines.
fn whole(bits: f64) -> i64 {
    bits.round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::XorShift;

    fn templates(text: &str) -> Vec<Template> {
        text.split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect()
    }

    fn texts(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.to_string()).collect()
    }

    /// The documented key: bytes 0x00, 0x01, … 0x1f.
    fn vector_key() -> Key {
        Key::new(&(0u8..32).collect::<Vec<u8>>()).unwrap()
    }

    /// Test vector 1 (in knock.conf(5)): key 000102…1f, event `SSH`,
    /// window 30 s, t = 1700000000, so w = 56666666.
    #[test]
    fn vector_1_four_steps() {
        let window = WindowLen::new(30).unwrap();
        let w = window.index(1_700_000_000);
        assert_eq!(w, 56_666_666);
        let steps = derive(
            &vector_key(),
            "SSH",
            w,
            &templates(
                "tcp:40000-40999:{s,fs,sr} udp:50000-50999 tcp:40000-40999:{s,fs,sr} \
                 tcp:60000-60099:fu",
            ),
        )
        .unwrap();
        assert_eq!(
            texts(&steps),
            ["tcp:40871:s", "udp:50647", "tcp:40590:sr", "tcp:60056:fu"]
        );
    }

    /// The first words of vector 1's stream, to debug a client against.
    #[test]
    fn vector_1_words() {
        let words: Vec<u32> = Words::new(&vector_key(), "SSH", 56_666_666)
            .take(10)
            .collect();
        assert_eq!(
            words,
            [
                0x9879bb35, 0x5015277f, 0xb35fb854, 0xdc73c860, 0xe9aa7517, 0x5fe8078d, 0x37cee828,
                0xbf009902, 0xfc2a7236, 0xb2ac8ca9
            ]
        );
    }

    /// Test vector 2: ten steps, so the last two come from block 1 (the
    /// counter block).
    #[test]
    fn vector_2_counter_block() {
        let steps = derive(
            &vector_key(),
            "SSH",
            56_666_666,
            &templates(&"udp:1-65535 ".repeat(10)),
        )
        .unwrap();
        assert_eq!(
            texts(&steps),
            [
                "udp:21424",
                "udp:30613",
                "udp:27573",
                "udp:42197",
                "udp:24259",
                "udp:26486",
                "udp:8184",
                "udp:22532",
                "udp:28258",
                "udp:16215"
            ]
        );
    }

    /// Test vector 3: a rejected word. Window 56666922, eight steps of
    /// `tcp:255-65535` with all 16 combinations of FIN SYN RST PSH
    /// (n = 65281 × 16, limit 0xfff010f0): word 7 is 0xfff3c6c2 and is
    /// discarded, so step 8 takes word 8, the first of block 1.
    #[test]
    fn vector_3_rejection() {
        let t: Template = "tcp:255-65535:{n,f,s,fs,r,fr,sr,fsr,p,fp,sp,fsp,rp,frp,srp,fsrp}"
            .parse()
            .unwrap();
        assert_eq!(t.choices(), 65281 * 16);
        let words: Vec<u32> = Words::new(&vector_key(), "SSH", 56_666_922)
            .take(9)
            .collect();
        assert_eq!(words[7], 0xfff3c6c2);
        let steps = derive(&vector_key(), "SSH", 56_666_922, &vec![t; 8]).unwrap();
        assert_eq!(
            texts(&steps),
            [
                "tcp:32868:fsr",
                "tcp:35777:fr",
                "tcp:38938:srp",
                "tcp:37909:sr",
                "tcp:17819:s",
                "tcp:5626:srp",
                "tcp:19128:sp",
                "tcp:12679:fp"
            ]
        );
    }

    /// knock.conf(5) shows vectors 1 and 2 as this code computes them, so
    /// a client written from the page meets the daemon.
    #[test]
    fn the_manual_shows_the_vectors() {
        let page = include_str!("../../man/knock.conf.5").replace("\\-", "-");
        let page = page.split_whitespace().collect::<Vec<_>>().join(" ");
        let key = vector_key();
        let words: Vec<String> = Words::new(&key, "SSH", 56_666_666)
            .take(4)
            .map(|w| format!("{w:08x}"))
            .collect();
        let one = derive(
            &key,
            "SSH",
            56_666_666,
            &templates(
                "tcp:40000-40999:{s,fs,sr} udp:50000-50999 tcp:40000-40999:{s,fs,sr} \
                 tcp:60000-60099:fu",
            ),
        )
        .unwrap();
        let two = derive(
            &key,
            "SSH",
            56_666_666,
            &templates(&"udp:1-65535 ".repeat(10)),
        )
        .unwrap();
        let ports: Vec<String> = two.iter().map(|s| s.port.to_string()).collect();
        for shown in [
            format!("Block 0 begins with the words {}.", words.join(" ")),
            format!("give .BR \"{}\" ;", texts(&one).join(" ")),
            format!("gives {}, the last two from block 1", ports.join(" ")),
            "window 30 s, time 1700000000, so .I w = 56666666.".to_string(),
        ] {
            assert!(page.contains(&shown), "knock.conf.5 lacks: {shown}");
        }
    }

    #[test]
    fn key_event_and_window_each_change_the_sequence() {
        let t = templates("udp:1-65535 udp:1-65535 udp:1-65535");
        let base = derive(&vector_key(), "SSH", 7, &t).unwrap();
        let other_key = Key::new(&[1u8; 32]).unwrap();
        assert_ne!(derive(&other_key, "SSH", 7, &t).unwrap(), base);
        assert_ne!(derive(&vector_key(), "SSh", 7, &t).unwrap(), base);
        assert_ne!(derive(&vector_key(), "SSH", 8, &t).unwrap(), base);
        assert_eq!(derive(&vector_key(), "SSH", 7, &t).unwrap(), base);
    }

    /// Fixed steps take a word too and come out as written.
    #[test]
    fn fixed_steps_pass_through_and_take_a_word() {
        let mixed = derive(
            &vector_key(),
            "SSH",
            56_666_666,
            &templates("tcp:22:s udp:1-65535"),
        )
        .unwrap();
        assert_eq!(texts(&mixed)[0], "tcp:22:s");
        // The range step used word 1 (vector 2's second step), not word 0.
        assert_eq!(texts(&mixed)[1], "udp:30613");
    }

    #[test]
    fn windows_and_live_sets() {
        let w = WindowLen::new(30).unwrap();
        assert_eq!(WindowLen::new(4), None);
        assert_eq!(WindowLen::new(3601), None);
        assert_eq!(WindowLen::default().secs(), 30);
        assert_eq!(w.index(59), 1);
        assert_eq!(w.index(60), 2);
        assert_eq!(w.start(2), 60);
        assert_eq!(w.live(60), 1..=3);
        assert_eq!(w.live(5), 0..=1);
        assert_eq!(w.next_change(60), 90);
        assert_eq!(w.next_change(89), 90);
        assert_eq!(w.next_change(u64::MAX), u64::MAX);
        let now = unix_now(0);
        assert!(now > 1_600_000_000);
        // Read after `now`: 30 s earlier, give or take a second boundary.
        let shifted = unix_now(-30) + 30;
        assert!((now..=now + 1).contains(&shifted), "{now} {shifted}");
        assert_eq!(unix_now(i64::MIN), 0);
    }

    #[test]
    fn the_sampler_consumes_exactly_as_documented() {
        // n = 3: limit = 2^32 - 1 (2^32 mod 3 = 1), so only u32::MAX is
        // discarded, and the next word is used.
        let mut words = [u32::MAX, u32::MAX, 5, 7].into_iter();
        assert_eq!(uniform_below(3, &mut words), Some(2));
        assert_eq!(words.next(), Some(7));
        let mut words = [u32::MAX - 1].into_iter();
        assert_eq!(uniform_below(3, &mut words), Some((u32::MAX - 1) % 3));
        // n = 1 and powers of two discard nothing.
        assert_eq!(uniform_below(1, &mut [u32::MAX].into_iter()), Some(0));
        assert_eq!(
            uniform_below(1 << 16, &mut [u32::MAX].into_iter()),
            Some(0xffff)
        );
        // Words that run out give None, not a biased answer.
        assert_eq!(uniform_below(3, &mut [u32::MAX].into_iter()), None);
    }

    /// Pearson's chi-square of `counts` against the expected `expect[i]`.
    fn chi_square(counts: &[u64], expect: &[f64]) -> f64 {
        counts
            .iter()
            .zip(expect)
            .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
            .sum()
    }

    /// The chi-square value that a fair sample exceeds with probability
    /// 0.001, for `dof` degrees of freedom (Wilson–Hilferty).
    fn critical(dof: f64) -> f64 {
        let z = 3.090; // upper 0.001 quantile of the standard normal
        let a = 2.0 / (9.0 * dof);
        dof * (1.0 - a + z * a.sqrt()).powi(3)
    }

    /// No modulo bias on a range that does not divide 2^32, shown on a range
    /// where plain `v % n` is grossly biased: n = 3 · 2^30. The words
    /// 3 · 2^30 … 2^32 − 1 wrap around onto the first third under `% n`, so
    /// it gives the first third of the range half the draws instead of a
    /// third. The test asserts that the naive mapping, fed the same words,
    /// fails the same threshold, so it would catch a sampler that does that.
    #[test]
    fn no_modulo_bias_on_a_range_of_3_times_2_30() {
        let n: u32 = 3 << 30;
        let mut rng = XorShift(0x0dd_5eed_2017);
        let draws = 30_000u64;
        let expect = [draws as f64 / 3.0; 3];
        let (mut fair, mut naive) = ([0u64; 3], [0u64; 3]);
        let mut words = std::iter::from_fn(|| Some((rng.next() >> 32) as u32));
        for _ in 0..draws {
            let c = uniform_below(n, &mut words).unwrap();
            fair[(c >> 30) as usize] += 1;
            let v = words.next().unwrap();
            naive[((v % n) >> 30) as usize] += 1;
        }
        let limit = critical(2.0);
        let fair_chi = chi_square(&fair, &expect);
        let naive_chi = chi_square(&naive, &expect);
        assert!(
            fair_chi < limit,
            "rejection sampling: chi2 {fair_chi} {fair:?}"
        );
        assert!(
            naive_chi > limit,
            "naive modulo: chi2 {naive_chi} {naive:?}"
        );
    }

    /// The same on a small odd range, n = 3003 (1001 ports × 3 flag sets),
    /// where the bias of `% n` is only n / 2^32 for uniform words and no
    /// sample could show it. So the words are chosen on purpose: every
    /// second word is drawn from the tail `limit … 2^32 − 1`, the 1621 words
    /// that `% n` maps onto choices 0 … 1620 a second time. The sampler
    /// discards them and stays uniform over all 3003 choices; `v % n` on the
    /// same words piles half its draws onto the first 1621 choices.
    #[test]
    fn no_modulo_bias_on_a_small_odd_range_with_tail_words() {
        let n: u32 = 3003;
        let limit = (1u64 << 32) - (1u64 << 32) % u64::from(n);
        let tail = (1u64 << 32) - limit;
        assert_eq!(tail, 1621);
        let mut rng = XorShift(0x3003_1621);
        let mut flip = false;
        let mut words = std::iter::from_fn(|| {
            flip = !flip;
            let r = rng.next();
            Some(if flip {
                (limit + (r % tail)) as u32
            } else {
                (r >> 32) as u32
            })
        });
        let draws = 20 * u64::from(n);
        let expect = vec![20.0; n as usize];
        let (mut fair, mut naive) = (vec![0u64; n as usize], vec![0u64; n as usize]);
        for _ in 0..draws {
            fair[uniform_below(n, &mut words).unwrap() as usize] += 1;
            naive[(words.next().unwrap() % n) as usize] += 1;
        }
        let limit = critical(f64::from(n - 1));
        let fair_chi = chi_square(&fair, &expect);
        let naive_chi = chi_square(&naive, &expect);
        assert!(
            fair_chi < limit,
            "rejection sampling: chi2 {fair_chi} > {limit}"
        );
        assert!(
            naive_chi > limit,
            "naive modulo: chi2 {naive_chi} < {limit}"
        );
    }

    /// The whole derivation (HMAC words, sampler, step mapping) spreads a
    /// 1001-port range with 3 flag sets evenly over windows. (Uniform words
    /// cannot show modulo bias at this size; this checks that no step of the
    /// pipeline collapses or skews choices, e.g. by reading words wrongly.)
    #[test]
    fn derived_choices_are_uniform_over_windows() {
        let t: Template = "tcp:40000-41000:{s,fs,sr}".parse().unwrap();
        let n = t.choices();
        assert_eq!(n, 3003);
        let key = Key::new(&[0x5a; 16]).unwrap();
        let per_choice = 10u64;
        let mut counts = vec![0u64; n as usize];
        for w in 0..per_choice * u64::from(n) {
            let step = derive(&key, "uniform", w, std::slice::from_ref(&t)).unwrap()[0];
            assert!(t.covers(&step));
            let m = 3;
            let flag_index = match step.flags {
                crate::knock::FlagSpec::Exact(0x02) => 0,
                crate::knock::FlagSpec::Exact(0x03) => 1,
                crate::knock::FlagSpec::Exact(0x06) => 2,
                other => panic!("{other:?}"),
            };
            counts[(u32::from(step.port - 40000) * m + flag_index) as usize] += 1;
        }
        let chi = chi_square(&counts, &vec![per_choice as f64; n as usize]);
        assert!(chi < critical(f64::from(n - 1)), "chi2 {chi}");
    }

    #[test]
    fn log2_without_libm_matches_std() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let fixed = [1, 2, 3, 5, 1000, 3000, 65535, 65535 * 16, 1 << 31, u32::MAX];
        let random = (0..10_000).map(|_| rng.next() as u32 | 1);
        for n in fixed.into_iter().chain(random) {
            let (ours, std) = (log2(n), f64::from(n).log2());
            assert!((ours - std).abs() < 1e-12, "log2({n}): {ours} vs {std}");
        }
        assert_eq!(log2(1), 0.0);
        assert_eq!(log2(1 << 20), 20.0);
    }

    #[test]
    fn guess_space_in_bits() {
        let g = GuessSpace::of(&templates(
            "tcp:40000-40999:s tcp:40000-40999:s udp:50000-50999 tcp:41000-41999:s",
        ));
        assert!((g.bits_per_window - 4.0 * 1000f64.log2()).abs() < 1e-9);
        assert_eq!(
            g.describe(),
            "guess space: about 40 bits per window; with 3 windows live a guessed sequence \
             opens with a chance of about 1 in 2^38"
        );
        assert_eq!(g.warning(), None);
        // Three 1000-port steps: 29.9 bits, 28.3 per guess: warned.
        let small = GuessSpace::of(&templates("udp:1-1000 udp:1-1000 udp:1-1000"));
        let w = small.warning().unwrap();
        assert!(w.starts_with("is easy to guess: a guessed sequence opens with a chance of about 1 in 2^28 (about 30 bits per window, 3 windows live), below 1 in 2^32"), "{w}");
        // The threshold is on the odds per guess: 33.5 bits per window are
        // below 32 bits per guess (33.5 - log2 3 = 31.9).
        let edge = GuessSpace {
            bits_per_window: 33.5,
            live_windows: 3,
        };
        assert!(edge.warning().is_some());
        let above = GuessSpace {
            bits_per_window: 33.6,
            live_windows: 3,
        };
        assert!(above.warning().is_none());
        // Flag sets count: log2(1000 * 3) per step.
        let sets = GuessSpace::of(&templates("tcp:1-1000:{s,fs,sr}"));
        assert!((sets.bits_per_window - 3000f64.log2()).abs() < 1e-9);
        // Fixed steps add nothing.
        assert_eq!(
            GuessSpace::of(&templates("tcp:22:s udp:53")).bits_per_window,
            0.0
        );
    }
}
