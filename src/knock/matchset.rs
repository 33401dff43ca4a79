//! The matchers of one configuration, split by destination: one
//! [`Matcher`] for the events that watch the own addresses, one per
//! knockd `Target` address for the events that watch that address instead.
//! Each frame goes to the matchers its destination selects, so events never
//! see frames meant for another destination, and a configuration without
//! `Target` costs one predictable branch per frame over a bare `Matcher`.
//!
//! Event indices in [`Fired`](crate::knock::matcher::Fired) and [`Trace`]
//! are those of the whole configuration.

use std::net::IpAddr;

use crate::config::Event;
use crate::knock::matcher::{Matcher, MatcherStats, Output, Trace};
use crate::knock::{Knock, Proto};

#[derive(Debug)]
struct Group {
    matcher: Matcher,
    /// Config index of each of the matcher's events; `None` when identical.
    map: Option<Box<[usize]>>,
}

impl Group {
    fn new(events: &[Event], pick: impl Fn(&Event) -> bool, cap: usize, now: u64) -> Group {
        let (own, map) = select(events, pick);
        Group {
            matcher: Matcher::new(&own, cap, now),
            map,
        }
    }

    fn reload(&mut self, events: &[Event], pick: impl Fn(&Event) -> bool, now: u64) {
        let (own, map) = select(events, pick);
        self.matcher.reload(&own, now);
        self.map = map;
    }

    /// Rewrites the event indices `out` gained since it held `fired_from`
    /// fires and `trace_from` trace entries to config ones.
    fn remap(&self, out: &mut Output, fired_from: usize, trace_from: usize) {
        let Some(map) = &self.map else { return };
        let to = |i: usize| map.get(i).copied().unwrap_or(usize::MAX);
        for f in out.fired.iter_mut().skip(fired_from) {
            f.event = to(f.event);
        }
        for t in out.trace.iter_mut().skip(trace_from) {
            match t {
                Trace::Advanced { event, .. }
                | Trace::Reset { event, .. }
                | Trace::TimedOut { event, .. }
                | Trace::Fired { event, .. } => *event = to(*event),
            }
        }
    }
}

/// The events `pick` selects, and their config indices unless that is all
/// of them in order.
fn select(events: &[Event], pick: impl Fn(&Event) -> bool) -> (Vec<Event>, Option<Box<[usize]>>) {
    let idx: Vec<usize> = (0..events.len()).filter(|&i| pick(&events[i])).collect();
    let own = idx.iter().map(|&i| events[i].clone()).collect();
    let map = (idx.len() != events.len()).then(|| idx.into_boxed_slice());
    (own, map)
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
}

impl MatchSet {
    /// Matchers for `events`, each tracking up to `capacity` sources, with
    /// the clock at `now_ms`.
    pub fn new(events: &[Event], capacity: usize, now_ms: u64) -> MatchSet {
        let targets = targets(events)
            .into_iter()
            .map(|t| {
                let g = Group::new(events, |e| e.target == Some(t), capacity, now_ms);
                (t, g)
            })
            .collect();
        MatchSet {
            local: Group::new(events, |e| e.target.is_none(), capacity, now_ms),
            targets,
            capacity,
        }
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
        if self.local.map.is_none() && self.targets.is_empty() {
            if local {
                self.local.matcher.feed(k, now_ms, out);
            }
            return local;
        }
        self.feed_split(local, k, now_ms, out)
    }

    #[inline(never)]
    fn feed_split(&mut self, local: bool, k: &Knock, now_ms: u64, out: &mut Output) -> bool {
        let mut groups: [Option<&mut Group>; 2] = [None, None];
        if local {
            groups[0] = Some(&mut self.local);
        }
        let target = self.targets.iter_mut().find(|(t, _)| *t == k.dst);
        let hit = target.is_some();
        groups[1] = target.map(|(_, g)| g);
        for g in groups.into_iter().flatten() {
            let (f0, t0) = (out.fired.len(), out.trace.len());
            g.matcher.feed(k, now_ms, out);
            g.remap(out, f0, t0);
        }
        local || hit
    }

    /// Reclaims lapsed attempts in every matcher (see [`Matcher::expire`]).
    pub fn expire(&mut self, now_ms: u64, out: &mut Output) {
        for g in std::iter::once(&mut self.local).chain(self.targets.iter_mut().map(|(_, g)| g)) {
            let (f0, t0) = (out.fired.len(), out.trace.len());
            g.matcher.expire(now_ms, out);
            g.remap(out, f0, t0);
        }
    }

    /// Replaces the events; progress survives in unchanged events (see
    /// [`Matcher::reload`]).
    pub fn reload(&mut self, events: &[Event], now_ms: u64) {
        self.local.reload(events, |e| e.target.is_none(), now_ms);
        let mut old = std::mem::take(&mut self.targets);
        for t in targets(events) {
            let pick = |e: &Event| e.target == Some(t);
            let g = match old.iter().position(|(o, _)| *o == t) {
                Some(i) => {
                    let (_, mut g) = old.swap_remove(i);
                    g.reload(events, pick, now_ms);
                    g
                }
                None => Group::new(events, pick, self.capacity, now_ms),
            };
            self.targets.push((t, g));
        }
    }

    /// Distinct (proto, port) pairs some event uses, sorted.
    pub fn ports(&self) -> Vec<(Proto, u16)> {
        let mut out = self.local.matcher.ports();
        for (_, g) in &self.targets {
            out.extend(g.matcher.ports());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Counters in config order; sources summed over the matchers.
    pub fn stats(&self, events: usize) -> MatcherStats {
        let mut all = self.local.matcher.stats();
        if self.targets.is_empty() && self.local.map.is_none() {
            return all;
        }
        let mut per = vec![None; events];
        let groups = std::iter::once(&self.local).chain(self.targets.iter().map(|(_, g)| g));
        all.tracked = 0;
        all.evictions = 0;
        all.attempts_dropped = 0;
        for g in groups {
            let s = g.matcher.stats();
            all.tracked += s.tracked;
            all.evictions += s.evictions;
            all.attempts_dropped += s.attempts_dropped;
            for (i, e) in s.events.into_iter().enumerate() {
                let at = g.map.as_ref().map_or(Some(i), |m| m.get(i).copied());
                let Some(at) = at else { continue };
                if let Some(slot) = per.get_mut(at) {
                    *slot = Some(e);
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
}
