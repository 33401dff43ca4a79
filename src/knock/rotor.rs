//! The windows of one rotating event that the matcher holds, following
//! the wall clock: the previous, current and next windows' sequences
//! ([`LIVE_WINDOWS`](super::rotate::LIVE_WINDOWS)) minus the burned ones,
//! and the window that left that set last, draining for the event's
//! timeout so a knocker who started with it can finish.
//!
//! Burned windows (a sequence that completed) are never held again. They
//! are remembered while they could come back: from the window before the
//! current one on, up to [`MAX_BURNED`] of them.
//!
//! Pure: the caller passes the monotonic and the wall clock, and rebuilds
//! the matcher when [`Rotor::advance`] or [`Rotor::burn`] says the windows
//! changed.

use crate::config::rotation::Rotation;
use crate::config::Event;
use crate::knock::template::PortRange;
use crate::knock::{Proto, Step};

/// Burned windows remembered per event. Only windows from the one before
/// the current one on matter, and a window burns at most once, so more
/// than a handful only gather after the clock stepped back; the lowest are
/// forgotten first.
pub const MAX_BURNED: usize = 64;

/// A window whose sequence the matcher holds. Its `Debug` shows the
/// step count, never the steps: they are the live secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Held {
    /// The window's index (`floor(unix_secs / window)`).
    pub window: u64,
    /// Its sequence.
    pub steps: Box<[Step]>,
    /// `Some(t)`: it left the live set and starts no new attempts; it is
    /// dropped at monotonic time `t` (ms), when attempts begun in it have
    /// timed out.
    pub drain_until: Option<u64>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("window", &self.window)
            .field("steps", &self.steps.len())
            .field("drain_until", &self.drain_until)
            .finish()
    }
}

/// The windows of one rotating event; see the module docs.
#[derive(Debug, Clone)]
pub struct Rotor {
    /// The event's index in the configuration.
    pub config: usize,
    name: String,
    rotation: Rotation,
    timeout_ms: u64,
    /// The current window at the last `advance`; `None` before it.
    current: Option<u64>,
    /// Live windows ascending, then at most one draining window.
    held: Vec<Held>,
    /// Burned windows, ascending, at most [`MAX_BURNED`] (a sorted list:
    /// a BTreeSet would bring its own 4 KB of code for 64 numbers).
    burned: Vec<u64>,
    /// (started, completed) counted in windows the matcher no longer holds.
    past: (u64, u64),
}

impl Rotor {
    /// The rotor of rotating event `event` (config index `config`); it
    /// holds no window until the first [`Rotor::advance`]. `None` for an
    /// event that is not rotating.
    pub fn new(config: usize, event: &Event) -> Option<Rotor> {
        Some(Rotor {
            config,
            name: event.name.clone(),
            rotation: event.rotation.clone()?,
            timeout_ms: u64::from(event.timeout) * 1000,
            current: None,
            held: Vec::new(),
            burned: Vec::new(),
            past: (0, 0),
        })
    }

    /// The rotor for `event` after a reload, taking over from `old` what
    /// still applies: everything if the event is unchanged; else the
    /// burned windows, if the windows have the same length (the same
    /// index means the same time), and the counters.
    pub fn adopt(mut self, old: Rotor) -> Rotor {
        if old.name != self.name {
            return self;
        }
        self.past = old.past;
        if old.rotation.window == self.rotation.window {
            self.burned = old.burned;
        }
        if old.rotation == self.rotation && old.timeout_ms == self.timeout_ms {
            self.current = old.current;
            self.held = old.held;
        }
        self
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The windows the matcher should hold now, live ones first.
    pub fn held(&self) -> &[Held] {
        &self.held
    }

    /// Follows the clocks: at a new current window (however the wall
    /// clock got there, stepped or not), the live set is the windows
    /// around it; the last live window to fall below it drains; a drain
    /// that is over ends. True if the held windows changed.
    pub fn advance(&mut self, now_ms: u64, unix_secs: u64) -> bool {
        let mut changed = false;
        let len = self.held.len();
        self.held
            .retain(|h| h.drain_until.is_none_or(|until| now_ms < until));
        changed |= self.held.len() != len;
        let current = self.rotation.window.index(unix_secs);
        if self.current == Some(current) {
            return changed;
        }
        self.current = Some(current);
        let live = self.rotation.window.live(unix_secs);
        let (first, last) = (*live.start(), *live.end());
        // What leaves: the newest window below the set drains (replacing
        // an older drain), everything else goes.
        let leaving = self
            .held
            .iter()
            .filter(|h| h.drain_until.is_none() && h.window < first)
            .map(|h| h.window)
            .max();
        let until = now_ms.saturating_add(self.timeout_ms);
        let mut kept: Vec<Held> = Vec::with_capacity(live.clone().count() + 1);
        let mut drain = None;
        for h in self.held.drain(..) {
            if live.contains(&h.window) {
                kept.push(Held {
                    drain_until: None,
                    ..h
                });
            } else if Some(h.window) == leaving {
                drain = Some(Held {
                    drain_until: Some(until),
                    ..h
                });
            } else if h.drain_until.is_some() && leaving.is_none() {
                drain = Some(h);
            }
        }
        for w in first..=last {
            if self.is_burned(w) || kept.iter().any(|h| h.window == w) {
                continue;
            }
            if let Some(steps) = self.rotation.sequence(&self.name, w) {
                kept.push(Held {
                    window: w,
                    steps: steps.into_boxed_slice(),
                    drain_until: None,
                });
            }
        }
        crate::sort::sort_by_key(&mut kept, |h| h.window);
        kept.extend(drain);
        self.held = kept;
        // Windows below the live set stay gone unless the clock steps back.
        self.burned.retain(|&b| b >= first);
        changed = true;
        self.debug_check();
        changed
    }

    /// Burns window `w`: its sequence completed, so it never opens again.
    /// False if it was burned already (a second completion of the same
    /// sequence, e.g. from another source in the same batch).
    pub fn burn(&mut self, w: u64) -> bool {
        match self.burned.binary_search(&w) {
            Ok(_) => return false,
            Err(at) => self.burned.insert(at, w),
        }
        if self.burned.len() > MAX_BURNED {
            self.burned.remove(0);
        }
        self.held.retain(|h| h.window != w);
        self.debug_check();
        true
    }

    /// Is window `w` burned?
    pub fn is_burned(&self, w: u64) -> bool {
        self.burned.binary_search(&w).is_ok()
    }

    /// Seconds per window.
    pub fn window_secs(&self) -> u32 {
        self.rotation.window.secs()
    }

    /// When [`Rotor::advance`] next has work, in monotonic ms, given that
    /// monotonic `now_ms` is Unix time `unix_ms`: the next window's start
    /// or the end of the drain, whichever comes first.
    pub fn next_due_ms(&self, now_ms: u64, unix_ms: u64) -> u64 {
        let next = self.rotation.window.next_change(unix_ms / 1000);
        let wall = now_ms.saturating_add(next.saturating_mul(1000).saturating_sub(unix_ms));
        self.held
            .iter()
            .filter_map(|h| h.drain_until)
            .fold(wall, u64::min)
    }

    /// Adds the counters of windows that leave the matcher.
    pub fn count_past(&mut self, started: u64, completed: u64) {
        self.past.0 += started;
        self.past.1 += completed;
    }

    /// (started, completed) counted in windows no longer held.
    pub fn past(&self) -> (u64, u64) {
        self.past
    }

    /// The port ranges a frame of some window may go to: the kernel
    /// filter passes them whole, so it need not change every window.
    pub fn ranges(&self) -> impl Iterator<Item = (Proto, PortRange)> + '_ {
        self.rotation
            .templates
            .iter()
            .map(|t| (t.proto(), t.ports()))
    }

    fn debug_check(&self) {
        debug_assert!(self.held.iter().filter(|h| h.drain_until.is_some()).count() <= 1);
        debug_assert!(self.burned.windows(2).all(|p| p[0] < p[1]));
        debug_assert!(self.held.iter().all(|h| !self.is_burned(h.window)));
        debug_assert!(self.burned.len() <= MAX_BURNED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::key::Key;
    use crate::knock::rotate::WindowLen;
    use std::path::PathBuf;

    fn event(name: &str, window: u32, timeout: u32) -> Event {
        Event {
            name: name.into(),
            timeout,
            rotation: Some(Rotation {
                templates: vec!["udp:1-65535".parse().unwrap(); 4],
                key_file: PathBuf::from("k"),
                window: WindowLen::new(window).unwrap(),
                key: Some(Key::new(&[7; 16]).unwrap()),
            }),
            ..Event::default()
        }
    }

    fn windows(r: &Rotor) -> Vec<(u64, bool)> {
        r.held()
            .iter()
            .map(|h| (h.window, h.drain_until.is_some()))
            .collect()
    }

    #[test]
    fn holds_the_previous_current_and_next_window() {
        let ev = event("R", 10, 5);
        let mut r = Rotor::new(0, &ev).unwrap();
        assert!(r.held().is_empty());
        assert!(r.advance(0, 1000));
        assert_eq!(windows(&r), [(99, false), (100, false), (101, false)]);
        let rot = ev.rotation.as_ref().unwrap();
        for h in r.held() {
            assert_eq!(&*h.steps, &rot.sequence("R", h.window).unwrap()[..]);
        }
        // Same window: nothing to do.
        assert!(!r.advance(500, 1009));
        assert_eq!(r.next_due_ms(500, 1_009_000), 1_500);
    }

    #[test]
    fn debug_shows_no_step_of_a_held_window() {
        let mut r = Rotor::new(0, &event("R", 10, 5)).unwrap();
        r.advance(0, 1000);
        let text = format!("{r:?}");
        assert!(text.contains("steps: 4"), "{text}");
        // A derived Debug of the steps would print `Step { proto: …, port: … }`.
        assert!(
            !text.contains("port:") && !text.contains("Step {"),
            "{text}"
        );
    }

    #[test]
    fn the_window_that_leaves_drains_for_the_timeout() {
        let mut r = Rotor::new(0, &event("R", 10, 5)).unwrap();
        r.advance(0, 1000);
        assert!(r.advance(10_000, 1010));
        assert_eq!(
            windows(&r),
            [(100, false), (101, false), (102, false), (99, true)]
        );
        assert_eq!(r.held()[3].drain_until, Some(15_000));
        assert_eq!(r.next_due_ms(10_000, 1_010_000), 15_000);
        assert!(!r.advance(14_999, 1014));
        assert!(r.advance(15_000, 1015));
        assert_eq!(windows(&r), [(100, false), (101, false), (102, false)]);
        // With a timeout longer than the window, only the last one drains.
        let mut r = Rotor::new(0, &event("R", 10, 60)).unwrap();
        r.advance(0, 1000);
        r.advance(10_000, 1010);
        r.advance(20_000, 1020);
        assert_eq!(
            windows(&r),
            [(101, false), (102, false), (103, false), (100, true)]
        );
    }

    #[test]
    fn follows_clock_steps_both_ways() {
        let mut r = Rotor::new(0, &event("R", 10, 5)).unwrap();
        r.advance(0, 1000);
        // An hour ahead: a fresh live set; the newest old window drains.
        assert!(r.advance(1000, 4600));
        assert_eq!(
            windows(&r),
            [(459, false), (460, false), (461, false), (101, true)]
        );
        // Back again: windows above the set do not drain, and the draining
        // window, live again, is live.
        assert!(r.advance(2000, 1000));
        assert_eq!(
            windows(&r),
            [(99, false), (100, false), (101, false)],
            "101 is live again, no longer draining"
        );
    }

    #[test]
    fn a_burned_window_is_never_held_again_while_it_could_be_live() {
        let mut r = Rotor::new(0, &event("R", 10, 5)).unwrap();
        r.advance(0, 1000);
        assert!(r.burn(100));
        assert!(!r.burn(100), "a second completion burns nothing new");
        assert_eq!(windows(&r), [(99, false), (101, false)]);
        r.advance(10_000, 1010);
        assert_eq!(windows(&r), [(101, false), (102, false), (99, true)]);
        assert!(r.is_burned(100));
        // Burned before it is live (restored from the journal).
        assert!(r.burn(103));
        r.advance(20_000, 1020);
        assert_eq!(windows(&r), [(101, false), (102, false)]);
        // Below the live set a burn is forgotten (the window cannot return
        // unless the clock steps back).
        r.advance(30_000, 1030);
        assert!(!r.is_burned(100) && r.is_burned(103));
    }

    #[test]
    fn burned_windows_are_bounded() {
        let mut r = Rotor::new(0, &event("R", 10, 5)).unwrap();
        r.advance(0, 1000);
        for w in 200..200 + 2 * MAX_BURNED as u64 {
            r.burn(w);
        }
        assert_eq!(r.burned.len(), MAX_BURNED);
        assert!(r.is_burned(200 + 2 * MAX_BURNED as u64 - 1) && !r.is_burned(200));
    }

    #[test]
    fn adopt_keeps_what_still_applies() {
        let ev = event("R", 10, 5);
        let mut old = Rotor::new(0, &ev).unwrap();
        old.advance(0, 1000);
        old.burn(101);
        old.count_past(3, 1);
        let same = Rotor::new(2, &ev).unwrap().adopt(old.clone());
        assert_eq!(same.config, 2);
        assert_eq!(windows(&same), windows(&old));
        assert!(same.is_burned(101));
        assert_eq!(same.past(), (3, 1));
        // A new key: the windows are derived again, the burns stay.
        let mut rekeyed = event("R", 10, 5);
        rekeyed.rotation.as_mut().unwrap().key = Some(Key::new(&[8; 16]).unwrap());
        let r = Rotor::new(0, &rekeyed).unwrap().adopt(old.clone());
        assert!(r.held().is_empty() && r.is_burned(101));
        // Another window length: window numbers mean other times.
        let r = Rotor::new(0, &event("R", 20, 5))
            .unwrap()
            .adopt(old.clone());
        assert!(!r.is_burned(101));
        // Another event: nothing.
        let r = Rotor::new(0, &event("S", 10, 5)).unwrap().adopt(old);
        assert_eq!(r.past(), (0, 0));
    }

    #[test]
    fn no_key_holds_nothing() {
        let mut ev = event("R", 10, 5);
        ev.rotation.as_mut().unwrap().key = None;
        let mut r = Rotor::new(0, &ev).unwrap();
        r.advance(0, 1000);
        assert!(r.held().is_empty());
        assert!(Rotor::new(0, &Event::default()).is_none());
    }
}
