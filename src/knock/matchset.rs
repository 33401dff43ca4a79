//! The matchers of one configuration, split by destination: one
//! [`Matcher`] for the events that watch the own addresses, one per
//! knockd `Target` address for the events that watch that address instead.
//! Each frame goes to the matchers its destination selects, so events never
//! see frames meant for another destination, and a configuration without
//! `Target` costs one predictable branch per frame over a bare `Matcher`.
//!
//! Rotating events ([`Rotor`]) enter their matcher as one event per window
//! they hold, each with that window's concrete sequence: so a frame costs
//! the same whether its event rotates or not, and the matcher's rules
//! (resets, retransmissions, timeouts, bounded state) apply unchanged.
//! [`MatchSet::rotate`] follows the wall clock; when a rotor's windows
//! change, its matcher is reloaded, which keeps the progress of every
//! attempt in a window that stays. Every port of a rotating event's
//! templates is a knock port ([`Matcher::set_guard_ranges`]): a frame
//! there that is not the next step resets an attempt, so a guess must get
//! every step right in a row.
//!
//! Event indices in [`Fired`] and [`Trace`] are those of the whole
//! configuration; a fire of a rotating event names its window.

use std::net::IpAddr;

use crate::config::Event;
use crate::knock::matcher::{Fired, Matcher, MatcherStats, Output, Trace};
use crate::knock::rotor::Rotor;
use crate::knock::template::PortRange;
use crate::knock::{Knock, Proto};

/// Which events a matcher takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Picks {
    /// Those that watch the own addresses.
    Local,
    /// Those whose knockd `Target` is this address.
    Target(IpAddr),
}

impl Picks {
    fn picks(self, e: &Event) -> bool {
        match self {
            Picks::Local => e.target.is_none(),
            Picks::Target(t) => e.target == Some(t),
        }
    }
}

/// Where one of a matcher's events comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    /// Index in the configuration.
    config: usize,
    /// The window, for one of a rotating event's.
    window: Option<u64>,
}

/// The wall clock as last seen: monotonic `now_ms` was Unix `unix_ms`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    now_ms: u64,
    unix_ms: u64,
}

impl Clock {
    /// Unix time at monotonic `now_ms`, assuming the wall clock ran on.
    fn unix_at(self, now_ms: u64) -> u64 {
        self.unix_ms
            .saturating_add(now_ms.saturating_sub(self.now_ms))
    }
}

#[derive(Debug)]
struct Group {
    picks: Picks,
    matcher: Matcher,
    /// Origin of each of the matcher's events; `None` when they are the
    /// configuration's events in order.
    map: Option<Box<[Origin]>>,
    /// The group's rotating events, in config order.
    rotors: Vec<Rotor>,
}

impl Group {
    fn new(events: &[Event], picks: Picks, cap: usize, now: u64, clock: Option<Clock>) -> Group {
        let mut g = Group {
            picks,
            matcher: Matcher::new(&[], cap, now),
            map: None,
            rotors: rotors(events, picks),
        };
        g.advance(clock, now);
        g.rebuild(events, now);
        g
    }

    /// Takes `events` (a reload): rotors carry over by event name.
    fn reload(&mut self, events: &[Event], now: u64, clock: Option<Clock>) {
        let mut old = std::mem::take(&mut self.rotors);
        self.rotors = rotors(events, self.picks)
            .into_iter()
            .map(|r| match old.iter().position(|o| o.name() == r.name()) {
                Some(i) => r.adopt(old.swap_remove(i)),
                None => r,
            })
            .collect();
        self.advance(clock, now);
        self.rebuild(events, now);
    }

    /// Moves every rotor to the clock; true if some held windows changed.
    fn advance(&mut self, clock: Option<Clock>, now: u64) -> bool {
        let Some(clock) = clock else { return false };
        let unix_secs = clock.unix_at(now) / 1000;
        let mut changed = false;
        for r in &mut self.rotors {
            changed |= r.advance(now, unix_secs);
        }
        changed
    }

    /// Gives the matcher the group's events as they are now: fixed ones as
    /// they are, rotating ones one per held window. Counters of windows
    /// that leave are kept by their rotor.
    fn rebuild(&mut self, events: &[Event], now: u64) {
        let mut own: Vec<Event> = Vec::new();
        let mut origins: Vec<Origin> = Vec::new();
        let mut draining: Vec<usize> = Vec::new();
        for (i, e) in events
            .iter()
            .enumerate()
            .filter(|(_, e)| self.picks.picks(e))
        {
            let Some(r) = self.rotors.iter().find(|r| r.config == i) else {
                own.push(e.clone());
                origins.push(Origin {
                    config: i,
                    window: None,
                });
                continue;
            };
            for h in r.held() {
                if h.drain_until.is_some() {
                    draining.push(own.len());
                }
                // What the matcher reads of an event: no commands, no key.
                own.push(Event {
                    name: e.name.clone(),
                    line: e.line,
                    sequence: h.steps.to_vec(),
                    timeout: e.timeout,
                    tcp_gate: e.tcp_gate,
                    ..Event::default()
                });
                origins.push(Origin {
                    config: i,
                    window: Some(h.window),
                });
            }
        }
        // Counters of the windows that leave the matcher.
        if let Some(map) = &self.map {
            let stats = self.matcher.stats();
            for (o, s) in map.iter().zip(stats.events) {
                if o.window.is_some() && !origins.contains(o) {
                    if let Some(r) = self.rotors.iter_mut().find(|r| r.config == o.config) {
                        r.count_past(s.started, s.completed);
                    }
                }
            }
        }
        // Every port of a rotating event's templates resets attempts.
        let guards: Vec<(Proto, PortRange)> = self.rotors.iter().flat_map(Rotor::ranges).collect();
        self.matcher.set_guard_ranges(&guards);
        self.matcher.reload(&own, now);
        for i in draining {
            self.matcher.set_draining(i);
        }
        let identity = origins.len() == events.len()
            && origins
                .iter()
                .enumerate()
                .all(|(i, o)| o.config == i && o.window.is_none());
        self.map = (!identity).then(|| origins.into_boxed_slice());
    }

    /// Rewrites the event indices `out` gained since it held `fired_from`
    /// fires and `trace_from` trace entries to config ones, and names the
    /// window of a rotating event's fire.
    #[inline]
    fn remap(&self, out: &mut Output, fired_from: usize, trace_from: usize) {
        let Some(map) = &self.map else { return };
        let at = |i: usize| {
            map.get(i).copied().unwrap_or(Origin {
                config: usize::MAX,
                window: None,
            })
        };
        for f in out.fired.iter_mut().skip(fired_from) {
            let o = at(f.event);
            *f = Fired {
                event: o.config,
                src: f.src,
                window: o.window,
            };
        }
        for t in out.trace.iter_mut().skip(trace_from) {
            match t {
                Trace::Advanced { event, .. }
                | Trace::Reset { event, .. }
                | Trace::Ignored { event, .. }
                | Trace::TimedOut { event, .. }
                | Trace::Fired { event, .. } => *event = at(*event).config,
            }
        }
    }

    #[inline]
    fn feed(&mut self, k: &Knock, now_ms: u64, out: &mut Output) {
        let (f0, t0) = (out.fired.len(), out.trace.len());
        self.matcher.feed(k, now_ms, out);
        self.remap(out, f0, t0);
    }
}

/// The rotors of the rotating events `picks` selects.
fn rotors(events: &[Event], picks: Picks) -> Vec<Rotor> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| picks.picks(e))
        .filter_map(|(i, e)| Rotor::new(i, e))
        .collect()
}

fn targets(events: &[Event]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for t in events.iter().filter_map(|e| e.target) {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// All matchers of a configuration; see the module docs. `Debug` shows
/// counts and target addresses, never a sequence (see [`Matcher`]'s).
#[derive(Debug)]
pub struct MatchSet {
    local: Group,
    targets: Vec<(IpAddr, Group)>,
    capacity: usize,
    /// The clocks at the last [`MatchSet::rotate`]; `None` before it, when
    /// rotating events hold no window yet.
    clock: Option<Clock>,
}

impl MatchSet {
    /// The matchers of `events`, each tracking at most `capacity` sources.
    /// Rotating events hold no window until the first [`MatchSet::rotate`].
    pub fn new(events: &[Event], capacity: usize, now_ms: u64) -> MatchSet {
        let targets = targets(events)
            .into_iter()
            .map(|t| {
                let g = Group::new(events, Picks::Target(t), capacity, now_ms, None);
                (t, g)
            })
            .collect();
        MatchSet {
            local: Group::new(events, Picks::Local, capacity, now_ms, None),
            targets,
            capacity,
            clock: None,
        }
    }

    fn groups_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        std::iter::once(&mut self.local).chain(self.targets.iter_mut().map(|(_, g)| g))
    }

    fn groups(&self) -> impl Iterator<Item = &Group> {
        std::iter::once(&self.local).chain(self.targets.iter().map(|(_, g)| g))
    }

    /// Warms what `feed` will probe first for `k` in the common case (see
    /// [`Matcher::prefetch`]). A hint only.
    #[inline]
    pub fn prefetch(&self, local: bool, k: &Knock) {
        if local {
            self.local.matcher.prefetch(k.src);
        }
    }

    /// Feeds one frame: to the own-address events if `local`, and to the
    /// events targeting its destination. False if no event watches that
    /// destination.
    #[inline]
    pub fn feed(&mut self, local: bool, k: &Knock, now_ms: u64, out: &mut Output) -> bool {
        if self.targets.is_empty() {
            if local {
                self.local.feed(k, now_ms, out);
            }
            return local;
        }
        self.feed_split(local, k, now_ms, out)
    }

    #[inline(never)]
    fn feed_split(&mut self, local: bool, k: &Knock, now_ms: u64, out: &mut Output) -> bool {
        if local {
            self.local.feed(k, now_ms, out);
        }
        let target = self.targets.iter_mut().find(|(t, _)| *t == k.dst);
        let hit = target.is_some();
        if let Some((_, g)) = target {
            g.feed(k, now_ms, out);
        }
        local || hit
    }

    /// Reclaims lapsed attempts in every matcher (see [`Matcher::expire`]).
    pub fn expire(&mut self, now_ms: u64, out: &mut Output) {
        for g in self.groups_mut() {
            let (f0, t0) = (out.fired.len(), out.trace.len());
            g.matcher.expire(now_ms, out);
            g.remap(out, f0, t0);
        }
    }

    /// Follows the wall clock: monotonic `now_ms` is Unix time `unix_ms`.
    /// Rotating events move to the windows around the current one (a
    /// clock that stepped is followed at once), drains end, and the
    /// matchers whose windows changed are reloaded. True if any did.
    pub fn rotate(&mut self, events: &[Event], now_ms: u64, unix_ms: u64) -> bool {
        let clock = Some(Clock { now_ms, unix_ms });
        self.clock = clock;
        let mut any = false;
        for g in self.groups_mut() {
            if g.advance(clock, now_ms) {
                g.rebuild(events, now_ms);
                any = true;
            }
        }
        any
    }

    /// When [`MatchSet::rotate`] next has work (monotonic ms): the next
    /// window's start or drain's end. `None` without rotating events or
    /// before the first `rotate`.
    pub fn next_rotation_ms(&self) -> Option<u64> {
        let clock = self.clock?;
        self.groups()
            .flat_map(|g| &g.rotors)
            .map(|r| r.next_due_ms(clock.now_ms, clock.unix_ms))
            .min()
    }

    /// Burns window `window` of rotating event `event` (config index): its
    /// sequence completed, so it is taken out of the matcher, with every
    /// attempt in it, and never held again. False if it was burned already
    /// (or the event does not rotate): the completion must open nothing.
    pub fn burn(&mut self, events: &[Event], event: usize, window: u64, now_ms: u64) -> bool {
        for g in self.groups_mut() {
            let Some(r) = g.rotors.iter_mut().find(|r| r.config == event) else {
                continue;
            };
            if !r.burn(window) {
                return false;
            }
            g.rebuild(events, now_ms);
            return true;
        }
        false
    }

    /// Replaces the events; progress survives in unchanged events (see
    /// [`Matcher::reload`]), and in the unchanged windows of unchanged
    /// rotating events, which also keep their burned windows.
    pub fn reload(&mut self, events: &[Event], now_ms: u64) {
        let clock = self.clock;
        self.local.reload(events, now_ms, clock);
        let mut old = std::mem::take(&mut self.targets);
        for t in targets(events) {
            let g = match old.iter().position(|(o, _)| *o == t) {
                Some(i) => {
                    let (_, mut g) = old.swap_remove(i);
                    g.reload(events, now_ms, clock);
                    g
                }
                None => Group::new(events, Picks::Target(t), self.capacity, now_ms, clock),
            };
            self.targets.push((t, g));
        }
    }

    /// Distinct (proto, port) pairs the matchers use now, sorted (for a
    /// rotating event: its held windows' ports).
    pub fn ports(&self) -> Vec<(Proto, u16)> {
        let mut out: Vec<(Proto, u16)> = self.groups().flat_map(|g| g.matcher.ports()).collect();
        crate::sort::sort(&mut out);
        out.dedup();
        out
    }

    /// What a frame must go to for some event to want it, as sorted,
    /// disjoint, non-adjacent port ranges per protocol: the ports of fixed
    /// sequences, and the whole template ranges of rotating events (which
    /// hold every port any window can use, so the set does not change with
    /// the windows).
    pub fn port_ranges(&self) -> Vec<(Proto, PortRange)> {
        let mut all: Vec<(Proto, u16, u16)> = self
            .ports()
            .into_iter()
            .map(|(p, port)| (p, port, port))
            .collect();
        for r in self.groups().flat_map(|g| &g.rotors) {
            all.extend(
                r.ranges()
                    .map(|(p, range)| (p, range.first(), range.last())),
            );
        }
        crate::sort::sort(&mut all);
        let mut out: Vec<(Proto, u16, u16)> = Vec::with_capacity(all.len());
        for (p, first, last) in all {
            match out.last_mut() {
                Some((q, _, end)) if *q == p && u32::from(first) <= u32::from(*end) + 1 => {
                    *end = (*end).max(last);
                }
                _ => out.push((p, first, last)),
            }
        }
        out.into_iter()
            .filter_map(|(p, first, last)| Some((p, PortRange::new(first, last)?)))
            .collect()
    }

    /// Counters in config order; sources summed over the matchers, a
    /// rotating event's attempts over its windows, past and present.
    pub fn stats(&self, events: usize) -> MatcherStats {
        let mut all = self.local.matcher.stats();
        if self.targets.is_empty() && self.local.map.is_none() {
            return all;
        }
        let mut per: Vec<Option<crate::knock::matcher::EventStats>> = vec![None; events];
        all.tracked = 0;
        all.evictions = 0;
        all.attempts_dropped = 0;
        for g in self.groups() {
            let s = g.matcher.stats();
            all.tracked += s.tracked;
            all.evictions += s.evictions;
            all.attempts_dropped += s.attempts_dropped;
            for (i, e) in s.events.into_iter().enumerate() {
                let at = g
                    .map
                    .as_ref()
                    .map_or(Some(i), |m| m.get(i).map(|o| o.config));
                let Some(slot) = at.and_then(|at| per.get_mut(at)) else {
                    continue;
                };
                match slot {
                    Some(sum) => {
                        sum.started += e.started;
                        sum.completed += e.completed;
                    }
                    None => *slot = Some(e),
                }
            }
            for r in &g.rotors {
                let (started, completed) = r.past();
                if let Some(slot) = per.get_mut(r.config) {
                    let sum = slot.get_or_insert_with(|| crate::knock::matcher::EventStats {
                        name: r.name().to_string(),
                        started: 0,
                        completed: 0,
                    });
                    sum.started += started;
                    sum.completed += completed;
                }
            }
        }
        all.events = per.into_iter().flatten().collect();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::flags::SYN;

    fn event(name: &str, port: u16, target: Option<&str>) -> Event {
        Event {
            name: name.into(),
            sequence: vec![format!("tcp:{port}:s").parse().unwrap()],
            timeout: 5,
            target: target.map(|t| t.parse().unwrap()),
            ..Event::default()
        }
    }

    fn knock(src: &str, dst: &str, port: u16) -> Knock {
        Knock {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: Proto::Tcp,
            dst_port: port,
            flags: SYN,
        }
    }

    #[test]
    fn frames_reach_the_events_of_their_destination() {
        let events = [
            event("t1", 1000, Some("10.0.0.9")),
            event("own", 1000, None),
            event("t2", 2000, Some("fd00::9")),
        ];
        let mut set = MatchSet::new(&events, 16, 0);
        let mut fired = Output::new();
        let fed = |set: &mut MatchSet, local, k: Knock, out: &mut Output| {
            out.clear();
            let ok = set.feed(local, &k, 1, out);
            (ok, out.fired.iter().map(|f| f.event).collect::<Vec<_>>())
        };
        assert_eq!(
            fed(
                &mut set,
                true,
                knock("10.0.0.2", "10.0.0.1", 1000),
                &mut fired
            ),
            (true, vec![1])
        );
        assert_eq!(
            fed(
                &mut set,
                false,
                knock("10.0.0.2", "10.0.0.9", 1000),
                &mut fired
            ),
            (true, vec![0])
        );
        assert_eq!(
            fed(
                &mut set,
                false,
                knock("fd00::2", "fd00::9", 2000),
                &mut fired
            ),
            (true, vec![2])
        );
        // A target that is also an own address feeds both.
        assert_eq!(
            fed(
                &mut set,
                true,
                knock("10.0.0.2", "10.0.0.9", 1000),
                &mut fired
            ),
            (true, vec![1, 0])
        );
        assert_eq!(
            fed(
                &mut set,
                false,
                knock("10.0.0.2", "10.0.0.8", 1000),
                &mut fired
            ),
            (false, vec![])
        );
        assert_eq!(set.ports(), [(Proto::Tcp, 1000), (Proto::Tcp, 2000)]);
        let names: Vec<String> = set.stats(3).events.into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["t1", "own", "t2"]);
        set.reload(&events[1..], 2);
        assert_eq!(set.ports(), [(Proto::Tcp, 1000), (Proto::Tcp, 2000)]);
        assert_eq!(
            fed(
                &mut set,
                false,
                knock("fd00::2", "fd00::9", 2000),
                &mut fired
            ),
            (true, vec![1])
        );
        assert_eq!(
            fed(
                &mut set,
                false,
                knock("10.0.0.2", "10.0.0.9", 1000),
                &mut fired
            ),
            (false, vec![])
        );
    }

    mod rotating {
        use super::*;
        use crate::config::rotation::Rotation;
        use crate::crypto::key::Key;
        use crate::knock::rotate::WindowLen;
        use crate::knock::Step;

        /// Window 10 s; at Unix time 1000 s the current window is 100.
        const T0: u64 = 1_000_000;

        fn rot(name: &str, key: u8) -> Event {
            Event {
                name: name.into(),
                timeout: 5,
                rotation: Some(Rotation {
                    templates: vec!["udp:20000-29999".parse().unwrap(); 3],
                    key_file: "k".into(),
                    window: WindowLen::new(10).unwrap(),
                    key: Some(Key::new(&[key; 16]).unwrap()),
                }),
                ..Event::default()
            }
        }

        fn seq(e: &Event, w: u64) -> Vec<Step> {
            e.rotation.as_ref().unwrap().sequence(&e.name, w).unwrap()
        }

        fn udp(src: &str, port: u16) -> Knock {
            Knock {
                src: src.parse().unwrap(),
                dst: "10.0.0.1".parse().unwrap(),
                proto: Proto::Udp,
                dst_port: port,
                flags: 0,
            }
        }

        /// Sends `steps` from `src`; what fired, as (event, window).
        fn send(
            set: &mut MatchSet,
            src: &str,
            steps: &[Step],
            now: u64,
        ) -> Vec<(usize, Option<u64>)> {
            let mut out = Output::new();
            for s in steps {
                set.feed(true, &udp(src, s.port), now, &mut out);
            }
            out.fired.iter().map(|f| (f.event, f.window)).collect()
        }

        #[test]
        fn the_previous_current_and_next_windows_open_and_no_other() {
            let events = [event("plain", 7000, None), rot("R", 1)];
            let mut set = MatchSet::new(&events, 64, 0);
            // Before the first rotate the event holds nothing.
            assert_eq!(send(&mut set, "10.0.0.2", &seq(&events[1], 100), 0), []);
            assert!(set.rotate(&events, 0, T0));
            for (n, w) in [98u64, 99, 100, 101, 102].into_iter().enumerate() {
                let src = format!("10.0.1.{n}");
                let want = if (99..=101).contains(&w) {
                    vec![(1, Some(w))]
                } else {
                    vec![]
                };
                assert_eq!(
                    send(&mut set, &src, &seq(&events[1], w), 1),
                    want,
                    "window {w}"
                );
            }
            // The plain event is untouched.
            let mut out = Output::new();
            set.feed(true, &knock("10.0.0.9", "10.0.0.1", 7000), 1, &mut out);
            assert_eq!(out.fired[0].event, 0);
            assert_eq!(out.fired[0].window, None);
            // The keys differ: another event's sequence is not this one's.
            let other = rot("R", 2);
            assert_eq!(send(&mut set, "10.0.0.3", &seq(&other, 100), 1), []);
        }

        #[test]
        fn the_window_that_leaves_keeps_its_attempts_until_their_timeout() {
            let events = [rot("R", 1)];
            let mut set = MatchSet::new(&events, 64, 0);
            set.rotate(&events, 0, T0);
            let s99 = seq(&events[0], 99);
            let s100 = seq(&events[0], 100);
            assert_eq!(send(&mut set, "10.0.0.2", &s99[..2], 9_000), []);
            assert_eq!(send(&mut set, "10.0.0.3", &s100[..1], 9_000), []);
            // Window 101 begins: 99 leaves the live set and drains.
            assert_eq!(set.next_rotation_ms(), Some(10_000));
            assert!(!set.rotate(&events, 9_999, T0 + 9_999));
            assert!(set.rotate(&events, 10_000, T0 + 10_000));
            assert_eq!(set.next_rotation_ms(), Some(15_000), "the drain ends first");
            // Progress in 100 (still live) survived the reload, 99 finishes…
            assert_eq!(
                send(&mut set, "10.0.0.3", &s100[1..], 10_001),
                [(0, Some(100))]
            );
            assert_eq!(
                send(&mut set, "10.0.0.2", &s99[2..], 10_001),
                [(0, Some(99))]
            );
            // …but takes no new knocker.
            assert_eq!(send(&mut set, "10.0.0.4", &s99, 10_002), []);
            // After the timeout the drain is gone: what is due next is the
            // next window.
            assert!(set.rotate(&events, 15_000, T0 + 15_000));
            assert_eq!(set.next_rotation_ms(), Some(20_000));
        }

        #[test]
        fn a_burned_window_opens_nothing_from_anyone() {
            let events = [rot("R", 1)];
            let mut set = MatchSet::new(&events, 64, 0);
            set.rotate(&events, 0, T0);
            let s = seq(&events[0], 100);
            // Someone else is half-way through the same sequence.
            assert_eq!(send(&mut set, "10.0.0.3", &s[..2], 1), []);
            assert_eq!(send(&mut set, "10.0.0.2", &s, 1), [(0, Some(100))]);
            assert!(set.burn(&events, 0, 100, 1));
            assert!(!set.burn(&events, 0, 100, 1), "once only");
            assert_eq!(send(&mut set, "10.0.0.3", &s[2..], 2), []);
            assert_eq!(send(&mut set, "10.0.0.4", &s, 2), []);
            assert_eq!(send(&mut set, "10.0.0.2", &s, 2), []);
            // Nor in the next windows, nor after a reload.
            set.rotate(&events, 10_000, T0 + 10_000);
            assert_eq!(send(&mut set, "10.0.0.5", &s, 10_001), []);
            set.reload(&events, 10_002);
            assert_eq!(send(&mut set, "10.0.0.6", &s, 10_003), []);
            // The other live windows still open.
            assert_eq!(
                send(&mut set, "10.0.0.7", &seq(&events[0], 101), 10_004),
                [(0, Some(101))]
            );
            let st = set.stats(1);
            assert_eq!(
                (st.events[0].name.as_str(), st.events[0].completed),
                ("R", 2)
            );
            assert!(!set.burn(&events, 5, 100, 1), "no such rotating event");
        }

        #[test]
        fn reload_keeps_progress_in_an_unchanged_rotating_event() {
            let events = [rot("R", 1)];
            let mut set = MatchSet::new(&events, 64, 0);
            set.rotate(&events, 0, T0);
            let s = seq(&events[0], 100);
            assert_eq!(send(&mut set, "10.0.0.2", &s[..2], 1), []);
            set.reload(&events, 2);
            assert_eq!(send(&mut set, "10.0.0.2", &s[2..], 3), [(0, Some(100))]);
            // A new key: other sequences, from the clock's estimate at once.
            let rekeyed = [rot("R", 3)];
            set.reload(&rekeyed, 4);
            assert_eq!(send(&mut set, "10.0.0.2", &s, 5), []);
            assert_eq!(
                send(&mut set, "10.0.0.2", &seq(&rekeyed[0], 100), 6),
                [(0, Some(100))]
            );
        }

        #[test]
        fn the_filter_gets_whole_ranges_merged_with_fixed_ports() {
            let mut r2 = rot("S", 2);
            r2.rotation.as_mut().unwrap().templates = vec![
                "udp:30001-30009".parse().unwrap(),
                "tcp:7000-7010:s".parse().unwrap(),
            ];
            let events = [event("plain", 7011, None), rot("R", 1), r2];
            let mut set = MatchSet::new(&events, 64, 0);
            set.rotate(&events, 0, T0);
            let ranges: Vec<String> = set
                .port_ranges()
                .iter()
                .map(|(p, r)| format!("{p}:{r}"))
                .collect();
            // Overlapping and adjacent ranges merge; a gap of one port does not.
            assert_eq!(
                ranges,
                ["tcp:7000-7011", "udp:20000-29999", "udp:30001-30009"]
            );
        }

        /// A frame anywhere in the templates' ranges that is not the next
        /// step resets the attempt, as on a fixed sequence's own ports.
        #[test]
        fn a_wrong_frame_in_the_ranges_resets_the_attempt() {
            let events = [rot("R", 1)];
            let mut set = MatchSet::new(&events, 64, 0);
            set.rotate(&events, 0, T0);
            let s = seq(&events[0], 100);
            let wrong = Step {
                port: if s[1].port == 29_999 {
                    20_000
                } else {
                    s[1].port + 1
                },
                ..s[1]
            };
            assert_eq!(
                send(&mut set, "10.0.0.2", &[s[0], wrong, s[1], s[2]], 1),
                []
            );
            // Outside the ranges a frame changes nothing.
            let outside = Step {
                port: 19_999,
                ..s[1]
            };
            assert_eq!(
                send(&mut set, "10.0.0.3", &[s[0], outside, s[1], s[2]], 1),
                [(0, Some(100))]
            );
        }

        /// Sweeping one step's range after the other opens only where the
        /// sweep happens to hold the three steps in a row: every frame of
        /// it that is not the next step resets the attempt. (Were the
        /// ranges' other ports ignored, such a sweep of 3 × 10 frames would
        /// carry an attempt from each step's frame to the next one's, and
        /// a guess would cost the sum of the steps' choices, not their
        /// product.)
        #[test]
        fn sweeping_the_ranges_step_by_step_opens_only_by_chance() {
            let mut e = rot("R", 1);
            e.rotation.as_mut().unwrap().templates = vec!["udp:20000-20009".parse().unwrap(); 3];
            let events = [e];
            let sweep: Vec<Step> = (0..3)
                .flat_map(|_| {
                    (20000..=20009).map(|port| Step {
                        port,
                        ..seq(&events[0], 0)[0]
                    })
                })
                .collect();
            let (mut fires, mut expected) = (0, 0);
            for w in 1..200u64 {
                let mut set = MatchSet::new(&events, 64, 0);
                set.rotate(&events, 0, w * 10_000);
                fires += send(
                    &mut set,
                    &format!("10.0.{}.{}", w / 256, w % 256),
                    &sweep,
                    1,
                )
                .len();
                expected += (w - 1..=w + 1)
                    .map(|v| {
                        let s = seq(&events[0], v);
                        sweep.windows(3).filter(|t| *t == &s[..]).count()
                    })
                    .sum::<usize>();
            }
            assert_eq!(fires, expected);
            assert!(expected < 30, "{expected} of 597 window sequences");
        }
    }
}
