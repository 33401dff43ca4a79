//! Burned windows of rotating sequences in the doors journal: a sequence
//! that has completed must open nothing again, after a restart too. One
//! record kind of its own in the journal file:
//!
//! ```text
//! burn <window_secs> <window> <len>:<event> <crc>
//! ```
//!
//! `<window_secs>` is the event's window length: a window number means a
//! time only together with it, so a burn is applied only to an event
//! whose windows still have that length. The event is escaped and length
//! prefixed as in `add` records, and `<crc>` seals the line the same way.
//!
//! A burn matters while its window can be live, that is until the window
//! two after it begins; compaction drops it after that
//! ([`Burn::expired`]). The daemon re-applies, at start, the burns of
//! windows from the one before the current one on.

/// Burns a journal keeps at most; past it the oldest windows go first.
/// Live burns are a few per rotating event (a window burns once, three
/// are live), so this is only reached by a clock that stepped back and
/// forth, and then what is forgotten is the past.
pub const MAX_BURNS: usize = 4096;

/// Window `window` (of `window_secs` seconds) of rotating event `event`
/// completed once, and its sequence is spent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Burn {
    /// The event's name.
    pub event: String,
    /// The event's window length in seconds.
    pub window_secs: u32,
    /// The window's index: `floor(unix_secs / window_secs)`.
    pub window: u64,
}

impl Burn {
    /// No longer needed at Unix time `unix_secs`: the window is past the
    /// live set (it was live up to the start of the window two after it).
    pub fn expired(&self, unix_secs: u64) -> bool {
        let gone_at = self
            .window
            .saturating_add(2)
            .saturating_mul(u64::from(self.window_secs));
        unix_secs >= gone_at
    }

    /// The record's body (without the checksum): `burn <secs> <w> <len>:<event>`.
    pub(super) fn encode(&self, escape: impl Fn(&str) -> String) -> String {
        let event = escape(&self.event);
        format!(
            "burn {} {} {}:{}",
            self.window_secs,
            self.window,
            event.len(),
            event
        )
    }

    /// The record after its leading `burn `: `<secs> <w> <len>:<event>`,
    /// every field as [`Burn::encode`] writes it, nothing after; `None`
    /// otherwise.
    pub(super) fn decode(rest: &str, unescape: impl Fn(&str) -> Option<String>) -> Option<Burn> {
        let (secs, rest) = rest.split_once(' ')?;
        let (window, rest) = rest.split_once(' ')?;
        let (len, event) = rest.split_once(':')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(secs) || !digits(window) || !digits(len) {
            return None;
        }
        if event.len() != len.parse::<usize>().ok()? {
            return None;
        }
        let window_secs: u32 = secs.parse().ok()?;
        if window_secs == 0 {
            return None;
        }
        Some(Burn {
            event: unescape(event)?,
            window_secs,
            window: window.parse().ok()?,
        })
    }
}

/// The burns a journal holds, bounded by [`MAX_BURNS`]: ascending and
/// without duplicates (a sorted list: a BTreeSet would bring its own 4 KB
/// of code, and inserting into 4,096 entries is a short move).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Burns(Vec<Burn>);

impl Burns {
    /// Adds `burn`; past [`MAX_BURNS`] the lowest window goes.
    pub fn insert(&mut self, burn: Burn) {
        if let Err(at) = self.0.binary_search(&burn) {
            self.0.insert(at, burn);
        }
        if self.0.len() > MAX_BURNS {
            let oldest = (0..self.0.len()).min_by_key(|&i| self.0[i].window);
            if let Some(i) = oldest {
                self.0.remove(i);
            }
        }
        debug_assert!(self.0.windows(2).all(|p| p[0] < p[1]));
    }

    /// Forgets the burns no longer needed at `unix_secs`.
    pub fn prune(&mut self, unix_secs: u64) {
        self.0.retain(|b| !b.expired(unix_secs));
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None at all?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In order of event, window length and window.
    pub fn iter(&self) -> impl Iterator<Item = &Burn> {
        self.0.iter()
    }
}

/// Unix time in whole seconds (0 for a clock before 1970).
pub(super) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burn(event: &str, secs: u32, w: u64) -> Burn {
        Burn {
            event: event.into(),
            window_secs: secs,
            window: w,
        }
    }

    fn plain(t: &str) -> String {
        t.to_string()
    }

    #[test]
    fn round_trips_and_refuses_anything_else() {
        let b = burn("SSH door", 30, 56_666_666);
        let text = b.encode(plain);
        assert_eq!(text, "burn 30 56666666 8:SSH door");
        let rest = text.strip_prefix("burn ").unwrap();
        assert_eq!(Burn::decode(rest, |t| Some(t.into())), Some(b));
        for bad in [
            "30 56666666 8:SSH doo",
            "30 56666666 8:SSH doors",
            "30 56666666 x:SSH door",
            "30 5666x666 8:SSH door",
            "0 56666666 8:SSH door",
            "30  56666666 8:SSH door",
            "-30 56666666 8:SSH door",
            "30 56666666",
            "30 99999999999999999999 1:S",
            "",
        ] {
            assert_eq!(Burn::decode(bad, |t| Some(t.into())), None, "{bad:?}");
        }
    }

    #[test]
    fn a_burn_expires_when_its_window_can_no_longer_be_live() {
        // Window 100 of 10 s is live while the current window is 99 to 101,
        // that is up to Unix time 1020.
        let b = burn("R", 10, 100);
        assert!(!b.expired(1019));
        assert!(b.expired(1020));
        assert!(!burn("R", 10, u64::MAX).expired(u64::MAX - 1));
    }

    #[test]
    fn iterates_in_order_without_duplicates() {
        let mut burns = Burns::default();
        for b in [
            burn("S", 30, 7),
            burn("R", 10, 9),
            burn("S", 30, 5),
            burn("R", 10, 9),
            burn("R", 20, 1),
        ] {
            burns.insert(b);
        }
        assert_eq!(
            burns.iter().cloned().collect::<Vec<_>>(),
            [
                burn("R", 10, 9),
                burn("R", 20, 1),
                burn("S", 30, 5),
                burn("S", 30, 7)
            ]
        );
    }

    #[test]
    fn bounded_and_pruned() {
        let mut burns = Burns::default();
        for w in 0..MAX_BURNS as u64 + 10 {
            burns.insert(burn("R", 10, w));
        }
        assert_eq!(burns.len(), MAX_BURNS);
        assert_eq!(burns.iter().map(|b| b.window).min(), Some(10));
        burns.prune(10 * (MAX_BURNS as u64 + 8));
        assert_eq!(
            burns.iter().map(|b| b.window).collect::<Vec<_>>(),
            [
                MAX_BURNS as u64 + 7,
                MAX_BURNS as u64 + 8,
                MAX_BURNS as u64 + 9
            ]
        );
    }

    mod in_the_journal {
        use super::*;
        use crate::doors::journal::tests::{entry, Tmp};
        use crate::doors::journal::{Journal, JournalOp, FILE_NAME};

        /// A window that is live now (its window length is 10 s).
        fn live_window() -> u64 {
            unix_secs() / 10
        }

        #[test]
        fn burns_survive_reopen_beside_stops_and_expired_ones_go() {
            let tmp = Tmp::new("burn-reopen");
            let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
            let w = live_window();
            let now = burn("R\nx", 10, w);
            let old = burn("R", 10, w - 2);
            j.commit(&[
                JournalOp::Burn(now.clone()),
                JournalOp::Add(entry(1, 5, "stop")),
                JournalOp::Burn(old.clone()),
            ])
            .unwrap();
            // One line each, the event escaped.
            let text = std::fs::read_to_string(tmp.0.join(FILE_NAME)).unwrap();
            assert_eq!(text.lines().count(), 3, "{text}");
            assert!(text
                .lines()
                .next()
                .unwrap()
                .starts_with(&format!("burn 10 {w} 4:R\\nx ")));
            drop(j);
            let (j, entries, skipped) = Journal::open(&tmp.0).unwrap();
            assert_eq!((entries.len(), skipped), (1, 0));
            // Window w - 2 is past the live set: gone on open.
            assert_eq!(j.burns(), [now]);
        }

        #[test]
        fn compaction_keeps_live_burns() {
            let tmp = Tmp::new("burn-compact");
            let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
            j.set_compact_min_lines(20);
            let w = live_window();
            j.commit(&[JournalOp::Burn(burn("R", 10, w))]).unwrap();
            for id in 1..=40 {
                j.commit(&[JournalOp::Add(entry(id, id, "stop"))]).unwrap();
                j.commit(&[JournalOp::Done(crate::doors::journal::JournalId::new(id))])
                    .unwrap();
            }
            let lines = std::fs::read_to_string(tmp.0.join(FILE_NAME))
                .unwrap()
                .lines()
                .count();
            assert!(lines < 25, "compacted: {lines} lines");
            drop(j);
            let (j, entries, _) = Journal::open(&tmp.0).unwrap();
            assert!(entries.is_empty());
            assert_eq!(j.burns(), [burn("R", 10, w)]);
        }

        #[test]
        fn a_damaged_burn_line_is_skipped_and_counted() {
            let tmp = Tmp::new("burn-corrupt");
            let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
            let w = live_window();
            j.commit(&[
                JournalOp::Burn(burn("A", 10, w)),
                JournalOp::Burn(burn("B", 10, w)),
            ])
            .unwrap();
            drop(j);
            let path = tmp.0.join(FILE_NAME);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replacen("burn 10", "burn 11", 1)).unwrap();
            let (j, _, skipped) = Journal::open(&tmp.0).unwrap();
            assert_eq!(skipped, 1);
            assert_eq!(j.burns(), [burn("B", 10, w)]);
        }
    }
}
