//! The knock matcher: follows every source through every event.
//!
//! Pure code: no sockets, no clock. The caller passes each frame's source,
//! protocol, destination port, raw TCP flag byte and a monotonic `now_ms`.
//!
//! # Rules
//! Per source and per event, independently (one frame may move several
//! events):
//! - a frame matching the event's next step advances it; the last step fires
//!   the event and resets it;
//! - otherwise a retransmission of the frame that last advanced the event
//!   (same protocol, port and classic flags) is ignored — the next step is
//!   tried first, so two identical consecutive steps still work;
//! - otherwise, for an event with knockd's `TCPFlags` (`Event::tcp_gate`), a
//!   TCP frame whose flags the gate refuses is ignored;
//! - otherwise any frame to a knock port (one used by *any* event) resets the
//!   event's progress and is then tried as its first step;
//! - frames to ports no event uses are ignored after one bit test;
//! - an attempt older than the event's timeout (counted from its first frame)
//!   is dead: a later frame never continues it, and [`Matcher::expire`]
//!   reclaims it.
//!
//! # Bounded state
//! A source gets an entry only once it has matched some event's first step,
//! and loses it as soon as it has no attempt in progress. At most `capacity`
//! sources are tracked. The table is a two-segment LRU: sources whose every
//! attempt is at step 1 live in a *probation* list; a source that reached
//! step 2 or beyond in some event moves to a *protected* list, which holds at
//! most `capacity - max(1, capacity / 4)` sources. A newcomer that needs a
//! slot in a full table evicts the least recently active probation source,
//! so a flood of spoofed first knocks — any number of them — never evicts a
//! knocker that has reached step 2; such a knocker is only displaced by more
//! than the protected limit of *more recently active* step-2 sources. Between
//! its first and second frames a knocker sits in probation and survives as
//! long as fewer than `capacity - protected` newcomers (at least
//! `capacity / 4`; all of `capacity` when nobody is protected) arrive in
//! between: with the default capacity and nobody protected, 65,535 spoofed
//! first knocks between two of its frames.
//!
//! Every frame costs O(number of events), independent of the number of
//! tracked sources. `expire` sweeps the slot table incrementally, a share
//! proportional to the time since its last call, all of it per
//! [`SWEEP_MS`]: an amortised sequential pass per second, whatever the
//! frame rate, and a lapsed source is reclaimed within `SWEEP_MS`. (Exact
//! per-event deadline queues were tried: unlinking an attempt touches two
//! other sources' memory, and those cache misses made every reset and
//! eviction slower — the cost of this code is almost all cache misses.)
//!
//! # Memory
//! Per tracked source: a 32-byte slot, 8 bytes per event (packed progress
//! and deadline), and its share of the open-addressing index, which has
//! `next_power_of_two(2 * capacity)` 8-byte entries (16 bytes per source
//! when `capacity` is a power of two, under 32 otherwise). With one event
//! and the default capacity of 65,536: 56 bytes per source, 3.5 MiB in all.
//! `tests::memory_per_source_is_as_documented` pins these figures.
//!
//! # Hashing
//! Source addresses are attacker-chosen, so the index (linear probing, load
//! at most 1/2) hashes them with a keyed two-round folded multiply whose
//! keys are drawn from the standard library's per-process random
//! `RandomState`: without the key, nobody can aim addresses at one probe
//! chain. SipHash-1-3 measured 7.7 ns per address against 1.4 ns (see
//! `benches/matcher.rs`), a sixth of a whole frame's budget at 20 M/s.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::Event;
use crate::knock::{flags, FlagSpec, Proto, Step};

/// Sources tracked at once unless the caller says otherwise.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// Larger capacities are clamped to this (the index stays under 64 MiB).
pub const MAX_CAPACITY: usize = 1 << 22;
/// Events with more steps than this (or none) never match.
pub const MAX_STEPS: usize = u16::MAX as usize;

/// An event completed by a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Index into the events slice given to `new`/`reload`.
    pub event: usize,
    pub src: IpAddr,
}

/// Debug-log detail of what the matcher did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// `step` (1-based) is the step now reached.
    Advanced {
        event: usize,
        src: IpAddr,
        step: usize,
    },
    Reset {
        event: usize,
        src: IpAddr,
    },
    TimedOut {
        event: usize,
        src: IpAddr,
    },
    Fired {
        event: usize,
        src: IpAddr,
    },
}

/// Counters for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStats {
    pub name: String,
    /// Attempts begun (first step matched).
    pub started: u64,
    pub completed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherStats {
    pub events: Vec<EventStats>,
    /// Sources with an attempt in progress right now.
    pub tracked: usize,
    pub capacity: usize,
    /// Sources dropped to make room for a newcomer.
    pub evictions: u64,
}

const NIL: u32 = u32::MAX;
/// How many evictions ahead `prefetch_victims` warms the victim's memory:
/// far enough for a DRAM miss to complete behind a few frames of work.
const VICTIMS_AHEAD: usize = 4;
/// Deadlines are milliseconds after the matcher's creation, in 42 bits
/// (139 years; a `u32` timeout in seconds still fits).
const MAX_REL: u64 = (1 << 42) - 1;
const STEP_BITS: u32 = 16;
/// `expire` sweeps the whole table once per this many milliseconds.
pub const SWEEP_MS: u64 = 1000;
const FLAG_SHIFT: u32 = 16;
const DEADLINE_SHIFT: u32 = 22;

/// One source's progress through one event. `state` packs: bits 0..16
/// step reached (0 = idle), 16..22 classic flags of the frame that advanced
/// it, 22..64 deadline.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    state: u64,
}

const IDLE: Attempt = Attempt { state: 0 };

impl Attempt {
    fn step(&self) -> usize {
        (self.state & ((1 << STEP_BITS) - 1)) as usize
    }
    fn flags(&self) -> u8 {
        ((self.state >> FLAG_SHIFT) as u8) & flags::CLASSIC
    }
    fn deadline(&self) -> u64 {
        self.state >> DEADLINE_SHIFT
    }
    fn pack(step: usize, raw_flags: u8, deadline: u64) -> u64 {
        (deadline.min(MAX_REL) << DEADLINE_SHIFT)
            | (u64::from(raw_flags & flags::CLASSIC) << FLAG_SHIFT)
            | (step as u64 & ((1 << STEP_BITS) - 1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    Free,
    Probation,
    Protected,
}

/// A tracked source. `prev`/`next` link it into its LRU segment (or the
/// free list).
#[derive(Debug, Clone, Copy)]
struct Source {
    addr: [u64; 2],
    prev: u32,
    next: u32,
    /// Attempts in progress (lapsed ones included until noticed).
    active: u32,
    v4: bool,
    seg: Seg,
}

/// Ends of an intrusive list: `head` is the most recent.
#[derive(Debug, Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
    len: usize,
}

const EMPTY: Ends = Ends {
    head: NIL,
    tail: NIL,
    len: 0,
};

#[derive(Debug, Clone)]
struct Ev {
    name: String,
    steps: Box<[Step]>,
    timeout: u32,
    timeout_ms: u64,
    usable: bool,
    gate: Option<FlagSpec>,
}

/// Tracks knock progress of every source; see the module docs.
pub struct Matcher {
    events: Vec<Ev>,
    /// Per event: (started, completed).
    counts: Vec<(u64, u64)>,
    /// Next slot `expire` looks at, and when it last swept.
    sweep_pos: usize,
    swept_at: u64,
    /// Bit per (proto, port): some event uses it / some event starts on it.
    knock: Box<[u64]>,
    first: Box<[u64]>,
    sources: Vec<Source>,
    /// `sources.len() * events.len()`, source-major.
    attempts: Vec<Attempt>,
    /// Open addressing, linear probing: `hash << 32 | slot + 1`, 0 = empty.
    index: Box<[u64]>,
    mask: usize,
    keys: [u64; 4],
    free: u32,
    probation: Ends,
    protected: Ends,
    capacity: usize,
    protected_cap: usize,
    evictions: u64,
    base: u64,
    now: u64,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("events", &self.events.len())
            .field("probation", &self.probation.len)
            .field("protected", &self.protected.len)
            .field("capacity", &self.capacity)
            .field("evictions", &self.evictions)
            .finish()
    }
}

const PORT_WORDS: usize = 2 * 65_536 / 64;

fn port_bit(proto: Proto, port: u16) -> usize {
    let p = match proto {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    };
    (p << 16) | usize::from(port)
}

fn bit_test(bits: &[u64], i: usize) -> bool {
    bits.get(i >> 6).is_some_and(|w| w & (1 << (i & 63)) != 0)
}

fn bit_set(bits: &mut [u64], i: usize) {
    if let Some(w) = bits.get_mut(i >> 6) {
        *w |= 1 << (i & 63);
    }
}

fn key_of(src: IpAddr) -> ([u64; 2], bool) {
    match src {
        IpAddr::V4(a) => ([0, u64::from(u32::from(a))], true),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            ([(v >> 64) as u64, v as u64], false)
        }
    }
}

fn addr_of(s: &Source) -> IpAddr {
    if s.v4 {
        IpAddr::V4(Ipv4Addr::from(s.addr[1] as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            (u128::from(s.addr[0]) << 64) | u128::from(s.addr[1]),
        ))
    }
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline]
fn note(trace: &mut Option<&mut Vec<Trace>>, t: Trace) {
    if let Some(v) = trace {
        v.push(t);
    }
}

fn build_events(events: &[Event]) -> Vec<Ev> {
    events
        .iter()
        .map(|e| Ev {
            name: e.name.clone(),
            steps: e.sequence.clone().into_boxed_slice(),
            timeout: e.timeout,
            timeout_ms: u64::from(e.timeout) * 1000,
            usable: !e.sequence.is_empty() && e.sequence.len() <= MAX_STEPS,
            gate: e.tcp_gate,
        })
        .collect()
}

impl Matcher {
    /// `capacity` is clamped to `1..=MAX_CAPACITY`.
    pub fn new(events: &[Event], capacity: usize, now_ms: u64) -> Matcher {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let slots = (capacity * 2).next_power_of_two().max(16);
        let rs = RandomState::new();
        let mut keys = [0u64; 4];
        for (i, k) in keys.iter_mut().enumerate() {
            let mut h = rs.build_hasher();
            h.write_usize(i);
            *k = h.finish();
        }
        keys[3] |= 1;
        let mut m = Matcher {
            events: Vec::new(),
            counts: Vec::new(),
            sweep_pos: 0,
            swept_at: 0,
            knock: vec![0; PORT_WORDS].into_boxed_slice(),
            first: vec![0; PORT_WORDS].into_boxed_slice(),
            sources: Vec::new(),
            attempts: Vec::new(),
            index: vec![0; slots].into_boxed_slice(),
            mask: slots - 1,
            keys,
            free: NIL,
            probation: EMPTY,
            protected: EMPTY,
            capacity,
            protected_cap: capacity - (capacity / 4).max(1),
            evictions: 0,
            base: now_ms,
            now: 0,
        };
        m.events = build_events(events);
        m.counts = vec![(0, 0); m.events.len()];
        m.rebuild_ports();
        m
    }

    fn rebuild_ports(&mut self) {
        self.knock.fill(0);
        self.first.fill(0);
        for ev in self.events.iter().filter(|e| e.usable) {
            for s in ev.steps.iter() {
                bit_set(&mut self.knock, port_bit(s.proto, s.port));
            }
            if let Some(s) = ev.steps.first() {
                bit_set(&mut self.first, port_bit(s.proto, s.port));
            }
        }
    }

    /// Advances the matcher's clock (never backwards) and returns it.
    fn tick(&mut self, now_ms: u64) -> u64 {
        let rel = now_ms.saturating_sub(self.base).min(MAX_REL);
        self.now = self.now.max(rel);
        self.now
    }

    #[inline]
    fn hash(&self, addr: [u64; 2], v4: bool) -> u32 {
        let x = fold(addr[0] ^ self.keys[0], addr[1] ^ self.keys[1]);
        let y = fold(x ^ self.keys[2] ^ u64::from(v4), self.keys[3]);
        (y >> 32) as u32
    }

    #[inline]
    fn find(&self, h: u32, addr: [u64; 2], v4: bool) -> Option<u32> {
        let mut i = h as usize & self.mask;
        loop {
            let e = self.index[i];
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == h {
                let s = (e as u32).wrapping_sub(1);
                let src = &self.sources[s as usize];
                if src.addr == addr && src.v4 == v4 {
                    return Some(s);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    fn index_insert(&mut self, h: u32, s: u32) {
        let mut i = h as usize & self.mask;
        while self.index[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.index[i] = (u64::from(h) << 32) | u64::from(s + 1);
    }

    fn index_remove(&mut self, s: u32) {
        let src = self.sources[s as usize];
        let h = self.hash(src.addr, src.v4);
        let want = (u64::from(h) << 32) | u64::from(s + 1);
        let mut i = h as usize & self.mask;
        loop {
            match self.index[i] {
                0 => return, // not indexed: nothing to do
                e if e == want => break,
                _ => i = (i + 1) & self.mask,
            }
        }
        // Backward-shift deletion keeps probe chains unbroken without
        // tombstones.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.index[j];
            if e == 0 {
                break;
            }
            let home = (e >> 32) as usize & self.mask;
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(i) & self.mask) {
                self.index[i] = e;
                i = j;
            }
        }
        self.index[i] = 0;
    }

    fn lru_unlink(&mut self, s: u32) {
        let Source {
            prev, next, seg, ..
        } = self.sources[s as usize];
        let ends = match seg {
            Seg::Probation => &mut self.probation,
            Seg::Protected => &mut self.protected,
            Seg::Free => return,
        };
        if prev == NIL {
            ends.head = next;
        } else {
            self.sources[prev as usize].next = next;
        }
        if next == NIL {
            ends.tail = prev;
        } else {
            self.sources[next as usize].prev = prev;
        }
        ends.len -= 1;
        let src = &mut self.sources[s as usize];
        src.prev = NIL;
        src.next = NIL;
        src.seg = Seg::Free;
    }

    /// Links an unlinked `s` as the most recent of `seg`.
    fn lru_push(&mut self, s: u32, seg: Seg) {
        let ends = match seg {
            Seg::Probation => &mut self.probation,
            Seg::Protected => &mut self.protected,
            Seg::Free => return,
        };
        let old = ends.head;
        ends.head = s;
        if old == NIL {
            ends.tail = s;
        } else {
            self.sources[old as usize].prev = s;
        }
        ends.len += 1;
        let src = &mut self.sources[s as usize];
        src.prev = NIL;
        src.next = old;
        src.seg = seg;
    }

    /// Drops source `s` and all its attempts.
    fn release(&mut self, s: u32) {
        let ne = self.events.len();
        self.attempts[s as usize * ne..(s as usize + 1) * ne].fill(IDLE);
        self.index_remove(s);
        self.lru_unlink(s);
        let src = &mut self.sources[s as usize];
        src.active = 0;
        src.next = self.free;
        self.free = s;
    }

    /// Under a flood of newcomers every frame evicts the probation tail, and
    /// each eviction misses the cache on the victim's slot, attempts and
    /// index entry. Warm them a few evictions ahead: walk from the tail
    /// over slots earlier calls warmed (cheap reads), then warm the index
    /// entry and attempts of the victim `VICTIMS_AHEAD - 1` evictions away
    /// and the slot of the one after it.
    fn prefetch_victims(&self) {
        let mut t = self.probation.tail;
        for _ in 0..VICTIMS_AHEAD - 2 {
            match self.sources.get(t as usize) {
                Some(s) => t = s.prev,
                None => return,
            }
        }
        let Some(v) = self.sources.get(t as usize) else {
            return;
        };
        if let Some(e) = self.index.get(self.hash(v.addr, v.v4) as usize & self.mask) {
            crate::sys::prefetch(e);
        }
        let ne = self.events.len();
        if let Some(a) = self.attempts.get(t as usize * ne) {
            crate::sys::prefetch(a);
        }
        if let Some(after) = self.sources.get(v.prev as usize) {
            crate::sys::prefetch(after);
        }
    }

    /// A fresh slot for a new source, evicting the least recently active
    /// probation source (protected only if probation is empty) when full.
    fn alloc(&mut self, h: u32, addr: [u64; 2], v4: bool) -> u32 {
        let fresh = Source {
            addr,
            prev: NIL,
            next: NIL,
            active: 0,
            v4,
            seg: Seg::Free,
        };
        let s = if self.free != NIL {
            let s = self.free;
            self.free = self.sources[s as usize].next;
            self.sources[s as usize] = fresh;
            s
        } else if self.sources.len() < self.capacity {
            let s = self.sources.len() as u32;
            self.sources.push(fresh);
            let ne = self.events.len();
            self.attempts.resize(self.attempts.len() + ne, IDLE);
            s
        } else {
            let victim = if self.probation.tail != NIL {
                self.probation.tail
            } else {
                self.protected.tail
            };
            self.release(victim);
            self.evictions += 1;
            self.prefetch_victims();
            self.free = self.sources[victim as usize].next;
            self.sources[victim as usize] = fresh;
            victim
        };
        self.index_insert(h, s);
        self.lru_push(s, Seg::Probation);
        s
    }

    /// Starts loading the index entry a `feed` of `src` will probe first. A
    /// caller that decodes a batch of frames, prefetches each source, then
    /// feeds them, has the batch's cache misses overlap instead of queueing
    /// one after the other (they are most of a frame's cost). A hint only.
    #[inline]
    pub fn prefetch(&self, src: IpAddr) {
        let (addr, v4) = key_of(src);
        let h = self.hash(addr, v4);
        if let Some(e) = self.index.get(h as usize & self.mask) {
            crate::sys::prefetch(e);
        }
    }

    /// Feeds one frame; pushes completed events into `fired`. With `trace`,
    /// also records every step, reset, timeout and fire.
    #[allow(clippy::too_many_arguments)]
    pub fn feed(
        &mut self,
        src: IpAddr,
        proto: Proto,
        port: u16,
        flags: u8,
        now_ms: u64,
        fired: &mut Vec<Fired>,
        mut trace: Option<&mut Vec<Trace>>,
    ) {
        let pb = port_bit(proto, port);
        if !bit_test(&self.knock, pb) {
            return;
        }
        let now = self.tick(now_ms);
        let (addr, v4) = key_of(src);
        let h = self.hash(addr, v4);
        let s = match self.find(h, addr, v4) {
            Some(s) => s,
            None => {
                if !bit_test(&self.first, pb) {
                    return;
                }
                let mut need_slot = false;
                let mut single = false;
                for ev in self.events.iter().filter(|e| e.usable) {
                    if ev.steps[0].matches(proto, port, flags) {
                        if ev.steps.len() == 1 {
                            single = true;
                        } else {
                            need_slot = true;
                        }
                    }
                }
                if need_slot {
                    self.alloc(h, addr, v4)
                } else {
                    if single {
                        self.fire_singles(src, proto, port, flags, fired, &mut trace);
                    }
                    return;
                }
            }
        };
        self.step_source(s, src, proto, port, flags, now, fired, &mut trace);
    }

    /// One-step events matched by an untracked source: fire without a slot.
    fn fire_singles(
        &mut self,
        src: IpAddr,
        proto: Proto,
        port: u16,
        flags: u8,
        fired: &mut Vec<Fired>,
        trace: &mut Option<&mut Vec<Trace>>,
    ) {
        for (event, ev) in self.events.iter().enumerate() {
            if ev.usable && ev.steps.len() == 1 && ev.steps[0].matches(proto, port, flags) {
                self.counts[event].0 += 1;
                self.counts[event].1 += 1;
                note(
                    trace,
                    Trace::Advanced {
                        event,
                        src,
                        step: 1,
                    },
                );
                note(trace, Trace::Fired { event, src });
                fired.push(Fired { event, src });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step_source(
        &mut self,
        s: u32,
        src: IpAddr,
        proto: Proto,
        port: u16,
        flags: u8,
        now: u64,
        fired: &mut Vec<Fired>,
        trace: &mut Option<&mut Vec<Trace>>,
    ) {
        let ne = self.events.len();
        let base = s as usize * ne;
        let mut active = self.sources[s as usize].active;
        let mut max_step = 0;
        for (event, ev) in self.events.iter().enumerate() {
            if !ev.usable {
                continue;
            }
            let a = self.attempts[base + event];
            let mut step = a.step();
            if step > 0 {
                let next = ev.steps.get(step);
                if now > a.deadline() {
                    note(trace, Trace::TimedOut { event, src });
                    step = 0;
                } else if next.is_some_and(|n| n.matches(proto, port, flags)) {
                    step += 1;
                    note(trace, Trace::Advanced { event, src, step });
                    if step < ev.steps.len() {
                        self.attempts[base + event].state =
                            Attempt::pack(step, flags, a.deadline());
                        max_step = max_step.max(step);
                        continue;
                    }
                    note(trace, Trace::Fired { event, src });
                    fired.push(Fired { event, src });
                    self.counts[event].1 += 1;
                    self.attempts[base + event] = IDLE;
                    active -= 1;
                    continue;
                } else if ev.steps.get(step - 1).is_some_and(|p| {
                    p.proto == proto
                        && p.port == port
                        && (proto == Proto::Udp || a.flags() == flags & flags::CLASSIC)
                }) {
                    max_step = max_step.max(step);
                    continue; // retransmission
                } else if ev
                    .gate
                    .is_some_and(|g| proto == Proto::Tcp && !g.accepts(flags))
                {
                    // Only reached when the frame would reset: costs the
                    // matching path nothing.
                    max_step = max_step.max(step);
                    continue;
                } else {
                    note(trace, Trace::Reset { event, src });
                    step = 0;
                }
                // Timed out or reset: drop the attempt, then retry the
                // frame as a first step below.
                self.attempts[base + event] = IDLE;
                active -= 1;
            }
            debug_assert_eq!(step, 0);
            if ev.steps[0].matches(proto, port, flags) {
                self.counts[event].0 += 1;
                note(
                    trace,
                    Trace::Advanced {
                        event,
                        src,
                        step: 1,
                    },
                );
                if ev.steps.len() == 1 {
                    self.counts[event].1 += 1;
                    note(trace, Trace::Fired { event, src });
                    fired.push(Fired { event, src });
                } else {
                    self.attempts[base + event].state =
                        Attempt::pack(1, flags, now.saturating_add(ev.timeout_ms));
                    active += 1;
                    max_step = max_step.max(1);
                }
            }
        }
        self.sources[s as usize].active = active;
        self.lru_unlink(s);
        if active == 0 {
            self.release(s);
            return;
        }
        if max_step >= 2 {
            self.lru_push(s, Seg::Protected);
            while self.protected.len > self.protected_cap {
                let old = self.protected.tail;
                self.lru_unlink(old);
                self.lru_push(old, Seg::Probation);
            }
        } else {
            self.lru_push(s, Seg::Probation);
        }
    }

    /// Drops attempts whose deadline has passed and reclaims sources left
    /// with none. Each call sweeps a share of the slots proportional to the
    /// time since the previous call, the whole table per `SWEEP_MS`: called
    /// regularly, it reclaims a lapsed source within `SWEEP_MS` of lapsing,
    /// at an amortised cost of one sequential pass over the table per
    /// `SWEEP_MS`, whatever the frame rate. (Frames never continue a lapsed
    /// attempt, whether or not it has been swept yet.)
    pub fn expire(&mut self, now_ms: u64, mut trace: Option<&mut Vec<Trace>>) {
        let now = self.tick(now_ms);
        let len = self.sources.len();
        let elapsed = now.saturating_sub(self.swept_at);
        if len == 0 || elapsed == 0 {
            return;
        }
        self.swept_at = now;
        let n = if elapsed >= SWEEP_MS {
            len
        } else {
            // Round up so frequent calls never stall the sweep.
            ((len as u64 * elapsed).div_ceil(SWEEP_MS) as usize).min(len)
        };
        let ne = self.events.len();
        for _ in 0..n {
            let s = self.sweep_pos % len;
            self.sweep_pos = (s + 1) % len;
            if self.sources[s].seg == Seg::Free {
                continue;
            }
            let mut lapsed = false;
            for event in 0..ne {
                let a = &mut self.attempts[s * ne + event];
                if a.step() != 0 && now > a.deadline() {
                    *a = IDLE;
                    lapsed = true;
                    let src = addr_of(&self.sources[s]);
                    note(&mut trace, Trace::TimedOut { event, src });
                    self.sources[s].active = self.sources[s].active.saturating_sub(1);
                }
            }
            if !lapsed {
                continue;
            }
            let s = s as u32;
            if self.sources[s as usize].active == 0 {
                self.release(s);
            } else if self.sources[s as usize].seg == Seg::Protected && !self.past_step_one(s) {
                self.lru_unlink(s);
                self.lru_push(s, Seg::Probation);
            }
        }
    }

    fn past_step_one(&self, s: u32) -> bool {
        let ne = self.events.len();
        self.attempts[s as usize * ne..(s as usize + 1) * ne]
            .iter()
            .any(|a| a.step() >= 2)
    }

    /// Replaces the events. Progress in events whose name, sequence and
    /// timeout are unchanged survives; everything else starts fresh.
    pub fn reload(&mut self, events: &[Event], now_ms: u64) {
        self.tick(now_ms);
        let new = build_events(events);
        let (old_ne, ne) = (self.events.len(), new.len());
        let mut taken = vec![false; old_ne];
        let map: Vec<Option<usize>> = new
            .iter()
            .map(|n| {
                let o = self.events.iter().enumerate().position(|(i, o)| {
                    !taken[i]
                        && o.usable
                        && o.name == n.name
                        && o.steps == n.steps
                        && o.timeout == n.timeout
                        && o.gate == n.gate
                })?;
                taken[o] = true;
                Some(o)
            })
            .collect();
        let mut attempts = vec![IDLE; self.sources.len() * ne];
        let mut counts = vec![(0, 0); ne];
        for (e, m) in map.iter().enumerate() {
            let Some(o) = *m else { continue };
            counts[e] = self.counts[o];
            for s in 0..self.sources.len() {
                attempts[s * ne + e] = self.attempts[s * old_ne + o];
            }
        }
        self.events = new;
        self.attempts = attempts;
        self.counts = counts;
        self.rebuild_ports();
        for s in 0..self.sources.len() as u32 {
            if self.sources[s as usize].seg == Seg::Free {
                continue;
            }
            let row = &self.attempts[s as usize * ne..(s as usize + 1) * ne];
            let active = row.iter().filter(|a| a.step() != 0).count() as u32;
            self.sources[s as usize].active = active;
            if active == 0 {
                self.release(s);
            } else if self.sources[s as usize].seg == Seg::Protected && !self.past_step_one(s) {
                self.lru_unlink(s);
                self.lru_push(s, Seg::Probation);
            }
        }
    }

    /// Is (proto, port) used by some event?
    pub fn is_knock_port(&self, proto: Proto, port: u16) -> bool {
        bit_test(&self.knock, port_bit(proto, port))
    }

    /// Distinct (proto, port) pairs used by some event, sorted.
    pub fn ports(&self) -> Vec<(Proto, u16)> {
        let mut out = Vec::new();
        for proto in [Proto::Tcp, Proto::Udp] {
            for port in 0..=u16::MAX {
                if self.is_knock_port(proto, port) {
                    out.push((proto, port));
                }
            }
        }
        out
    }

    /// The step `src` has reached in `event` (0: no attempt in progress).
    /// A lapsed attempt not yet reclaimed still shows its step.
    pub fn progress(&self, src: IpAddr, event: usize) -> usize {
        let (addr, v4) = key_of(src);
        let ne = self.events.len();
        if event >= ne {
            return 0;
        }
        match self.find(self.hash(addr, v4), addr, v4) {
            Some(s) => self.attempts[s as usize * ne + event].step(),
            None => 0,
        }
    }

    pub fn stats(&self) -> MatcherStats {
        MatcherStats {
            events: self
                .events
                .iter()
                .zip(&self.counts)
                .map(|(e, &(started, completed))| EventStats {
                    name: e.name.clone(),
                    started,
                    completed,
                })
                .collect(),
            tracked: self.probation.len + self.protected.len,
            capacity: self.capacity,
            evictions: self.evictions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::flags::{ACK, FIN, PSH, RST, SYN, URG};
    use std::collections::HashMap;

    const ECE: u8 = 0x40;
    const CWR: u8 = 0x80;

    fn event(name: &str, seq: &str, timeout: u32) -> Event {
        Event {
            name: name.into(),
            line: 1,
            sequence: seq.split_whitespace().map(|s| s.parse().unwrap()).collect(),
            timeout,
            start_command: String::new(),
            stop_command: None,
            command_delay: None,
            ..Default::default()
        }
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Feeds frames written like steps (`tcp:110:up`, `udp:9`); returns the
    /// events fired.
    fn knock(m: &mut Matcher, src: IpAddr, frames: &str, now: u64) -> Vec<usize> {
        let mut fired = Vec::new();
        for f in frames.split_whitespace() {
            let (proto, port, fl) = frame(f);
            m.feed(src, proto, port, fl, now, &mut fired, None);
        }
        assert!(fired.iter().all(|f| f.src == src));
        fired.iter().map(|f| f.event).collect()
    }

    fn frame(text: &str) -> (Proto, u16, u8) {
        let s: Step = text.parse().unwrap();
        let fl = match s.flags {
            crate::knock::FlagSpec::Exact(b) => b,
            crate::knock::FlagSpec::Any => 0,
            crate::knock::FlagSpec::Mask { set, .. } => set,
        };
        (s.proto, s.port, fl)
    }

    /// Checks every structural invariant; `O(everything)`, tests only.
    fn check(m: &Matcher) {
        let ne = m.events.len();
        let mut seen = vec![false; m.sources.len()];
        for (ends, seg) in [
            (&m.probation, Seg::Probation),
            (&m.protected, Seg::Protected),
        ] {
            let (mut s, mut prev, mut n) = (ends.head, NIL, 0);
            while s != NIL {
                let src = &m.sources[s as usize];
                assert_eq!(src.seg, seg);
                assert_eq!(src.prev, prev);
                assert!(!seen[s as usize]);
                seen[s as usize] = true;
                n += 1;
                prev = s;
                s = src.next;
            }
            assert_eq!(ends.tail, prev);
            assert_eq!(ends.len, n);
        }
        assert!(m.protected.len <= m.protected_cap);
        let mut indexed = 0;
        for (s, src) in m.sources.iter().enumerate() {
            let row = &m.attempts[s * ne..(s + 1) * ne];
            if src.seg == Seg::Free {
                assert!(row.iter().all(|a| a.step() == 0));
                continue;
            }
            indexed += 1;
            let active = row.iter().filter(|a| a.step() != 0).count() as u32;
            assert!(active > 0);
            assert_eq!(src.active, active);
            assert_eq!(
                m.find(m.hash(src.addr, src.v4), src.addr, src.v4),
                Some(s as u32)
            );
            // Protected sources are past step 1 (demoted ones may be too).
            if src.seg == Seg::Protected {
                assert!(row.iter().any(|a| a.step() >= 2));
            }
        }
        assert_eq!(m.index.iter().filter(|&&e| e != 0).count(), indexed);
    }

    #[test]
    fn tcp_gate_ignores_frames_with_other_flags() {
        let gate = FlagSpec::Mask { set: SYN, clear: 0 };
        let mut ev = event("knockd", "tcp:7000:s tcp:8000:s udp:9000", 10);
        for s in ev.sequence.iter_mut().filter(|s| s.proto == Proto::Tcp) {
            s.flags = gate;
        }
        ev.tcp_gate = Some(gate);
        let plain = event("plain", "tcp:7000:s tcp:8000:s udp:9000", 10);
        let mut m = Matcher::new(&[ev, plain], 16, 0);
        let a = ip("192.0.2.1");
        // SYN with extra flags matches the mask, not `plain`'s exact SYN.
        let (proto, port, _) = frame("tcp:7000:s");
        let mut fired = Vec::new();
        m.feed(a, proto, port, SYN | ECE | PSH, 1, &mut fired, None);
        assert_eq!((m.progress(a, 0), m.progress(a, 1)), (1, 0));
        assert!(knock(&mut m, a, "tcp:7000:s", 1).is_empty());
        assert_eq!((m.progress(a, 0), m.progress(a, 1)), (1, 1));
        // Wrong port without SYN: ignored by the gated event, resets the other.
        assert!(knock(&mut m, a, "tcp:9000:a tcp:8000:fa udp:7000", 2).is_empty());
        assert_eq!((m.progress(a, 0), m.progress(a, 1)), (1, 0));
        // A wrong frame with SYN resets (here to a new first step).
        assert!(knock(&mut m, a, "tcp:8000:s", 3).is_empty());
        assert_eq!(m.progress(a, 0), 2);
        assert!(knock(&mut m, a, "tcp:7000:s", 3).is_empty());
        assert_eq!((m.progress(a, 0), m.progress(a, 1)), (1, 1));
        assert!(knock(&mut m, a, "udp:9000", 3).is_empty());
        assert_eq!((m.progress(a, 0), m.progress(a, 1)), (0, 0));
        assert_eq!(
            knock(&mut m, a, "tcp:7000:s tcp:8000:sa tcp:7000:r udp:9000", 4),
            [0]
        );
        check(&m);
    }

    #[test]
    fn advances_step_by_step_and_fires_once() {
        let ev = [event("e", "tcp:1:s udp:2 tcp:3:fa", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = ip("192.0.2.1");
        let (mut fired, mut trace) = (Vec::new(), Vec::new());
        for (i, f) in ["tcp:1:s", "udp:2", "tcp:3:fa"].iter().enumerate() {
            let (p, port, fl) = frame(f);
            m.feed(a, p, port, fl, 100, &mut fired, Some(&mut trace));
            if i < 2 {
                assert_eq!(m.progress(a, 0), i + 1);
                assert!(fired.is_empty());
            }
        }
        assert_eq!(fired, vec![Fired { event: 0, src: a }]);
        assert_eq!(
            trace,
            vec![
                Trace::Advanced {
                    event: 0,
                    src: a,
                    step: 1
                },
                Trace::Advanced {
                    event: 0,
                    src: a,
                    step: 2
                },
                Trace::Advanced {
                    event: 0,
                    src: a,
                    step: 3
                },
                Trace::Fired { event: 0, src: a },
            ]
        );
        // Fired resets: the source is forgotten, a new attempt starts over.
        assert_eq!(m.progress(a, 0), 0);
        assert_eq!(m.stats().tracked, 0);
        assert_eq!(knock(&mut m, a, "udp:2 tcp:3:fa", 200), Vec::<usize>::new());
        assert_eq!(knock(&mut m, a, "tcp:1:s udp:2 tcp:3:fa", 300), vec![0]);
        check(&m);
    }

    #[test]
    fn retransmission_is_ignored() {
        let ev = [event("e", "tcp:1:s udp:2 tcp:3:fa", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = ip("192.0.2.1");
        // Repeats of the last matched frame, ECE/CWR differences included.
        assert_eq!(
            knock(&mut m, a, "tcp:1:s tcp:1:s udp:2 udp:2 udp:2", 0),
            vec![]
        );
        let mut fired = Vec::new();
        m.feed(a, Proto::Udp, 2, 0xff, 0, &mut fired, None); // UDP flags are noise
        m.feed(a, Proto::Tcp, 3, FIN | ACK | ECE | CWR, 0, &mut fired, None);
        assert_eq!(fired, vec![Fired { event: 0, src: a }]);
        // Same port, different classic flags: not a retransmission → reset.
        knock(&mut m, a, "tcp:1:s", 0);
        let mut trace = Vec::new();
        m.feed(a, Proto::Tcp, 1, SYN | ACK, 0, &mut fired, Some(&mut trace));
        assert_eq!(trace, vec![Trace::Reset { event: 0, src: a }]);
        assert_eq!(m.progress(a, 0), 0);
        check(&m);
    }

    #[test]
    fn any_flag_step_retransmission_needs_same_flags() {
        let ev = [event("e", "tcp:1:i tcp:2", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = ip("192.0.2.1");
        let mut fired = Vec::new();
        m.feed(a, Proto::Tcp, 1, PSH, 0, &mut fired, None);
        m.feed(a, Proto::Tcp, 1, PSH | ECE, 0, &mut fired, None); // retransmission
        assert_eq!(m.progress(a, 0), 1);
        // Other flags: reset, then a fresh first step (`i` takes anything).
        let mut trace = Vec::new();
        m.feed(a, Proto::Tcp, 1, URG, 0, &mut fired, Some(&mut trace));
        assert_eq!(
            trace,
            vec![
                Trace::Reset { event: 0, src: a },
                Trace::Advanced {
                    event: 0,
                    src: a,
                    step: 1
                }
            ]
        );
        m.feed(a, Proto::Tcp, 2, 0, 0, &mut fired, None);
        assert_eq!(fired.len(), 1);
    }

    #[test]
    fn identical_consecutive_steps_both_advance() {
        // The original's SSH2 example.
        let ev = [event(
            "ssh2",
            "tcp:110:x tcp:110:up tcp:110:up tcp:110:n tcp:110:i",
            10,
        )];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = ip("2001:db8::7");
        assert_eq!(
            knock(
                &mut m,
                a,
                "tcp:110:x tcp:110:up tcp:110:up tcp:110:n tcp:110:i",
                0
            ),
            vec![0]
        );
        // A third `up` is a retransmission of the second (it is not the
        // next step `n`): ignored, the knock still completes.
        assert_eq!(
            knock(
                &mut m,
                a,
                "tcp:110:x tcp:110:x tcp:110:up tcp:110:up tcp:110:up",
                0
            ),
            vec![]
        );
        assert_eq!(m.progress(a, 0), 3);
        assert_eq!(
            knock(&mut m, a, "tcp:110:n tcp:110:n tcp:110:s", 0),
            vec![0]
        );
        check(&m);
    }

    #[test]
    fn wrong_frame_resets_and_restarts() {
        let ev = [event("e", "tcp:1 tcp:2 tcp:3", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = ip("192.0.2.1");
        knock(&mut m, a, "tcp:1 tcp:2", 0);
        assert_eq!(m.progress(a, 0), 2);
        // tcp:3 with wrong flags: reset, not a first step → forgotten.
        knock(&mut m, a, "tcp:3:s", 0);
        assert_eq!(m.progress(a, 0), 0);
        assert_eq!(m.stats().tracked, 0);
        // tcp:1 after tcp:2 resets and at once starts a new attempt.
        let mut trace = Vec::new();
        let mut fired = Vec::new();
        knock(&mut m, a, "tcp:1 tcp:2", 0);
        m.feed(a, Proto::Tcp, 1, 0, 0, &mut fired, Some(&mut trace));
        assert_eq!(
            trace,
            vec![
                Trace::Reset { event: 0, src: a },
                Trace::Advanced {
                    event: 0,
                    src: a,
                    step: 1
                }
            ]
        );
        assert_eq!(knock(&mut m, a, "tcp:2 tcp:3", 0), vec![0]);
        // Out of order never fires.
        assert_eq!(knock(&mut m, a, "tcp:1 tcp:3 tcp:2 tcp:3", 0), vec![]);
        check(&m);
    }

    #[test]
    fn frame_after_deadline_starts_fresh() {
        let ev = [event("e", "tcp:1 tcp:2 tcp:3", 5)];
        let mut m = Matcher::new(&ev, 16, 1_000);
        let a = ip("192.0.2.1");
        knock(&mut m, a, "tcp:1", 1_000);
        knock(&mut m, a, "tcp:2", 3_000);
        // Deadline is 6000 (first frame + 5 s): on time still continues.
        assert_eq!(knock(&mut m, a, "tcp:3", 6_000), vec![0]);

        knock(&mut m, a, "tcp:1 tcp:2", 10_000);
        let (mut fired, mut trace) = (Vec::new(), Vec::new());
        m.feed(a, Proto::Tcp, 3, 0, 15_001, &mut fired, Some(&mut trace));
        assert!(fired.is_empty());
        assert_eq!(trace, vec![Trace::TimedOut { event: 0, src: a }]);
        assert_eq!(m.stats().tracked, 0);

        // A late first step begins a new attempt with a new deadline.
        knock(&mut m, a, "tcp:1", 20_000);
        trace.clear();
        m.feed(a, Proto::Tcp, 1, 0, 25_500, &mut fired, Some(&mut trace));
        assert_eq!(
            trace,
            vec![
                Trace::TimedOut { event: 0, src: a },
                Trace::Advanced {
                    event: 0,
                    src: a,
                    step: 1
                }
            ]
        );
        assert_eq!(knock(&mut m, a, "tcp:2 tcp:3", 30_500), vec![0]);
        check(&m);
    }

    #[test]
    fn expire_reclaims_lapsed_sources_only() {
        let ev = [
            event("short", "tcp:1 tcp:2", 5),
            event("long", "tcp:1 tcp:3", 60),
        ];
        let mut m = Matcher::new(&ev, 16, 0);
        let (a, b, c) = (v4(1), v4(2), v4(3));
        knock(&mut m, a, "tcp:1", 0); // both events
        knock(&mut m, b, "tcp:1", 3_000);
        knock(&mut m, c, "tcp:1 tcp:2", 4_000); // `short` fires; `long` reset
        assert_eq!(m.stats().tracked, 2);
        let mut trace = Vec::new();
        // A call SWEEP_MS or more after the last sweeps every slot.
        m.expire(5_000, Some(&mut trace));
        assert!(trace.is_empty());
        m.expire(6_001, Some(&mut trace));
        assert_eq!(trace, vec![Trace::TimedOut { event: 0, src: a }]);
        assert_eq!(m.progress(a, 0), 0);
        assert_eq!(m.progress(a, 1), 1); // `long` still running
        check(&m);
        trace.clear();
        m.expire(60_001, Some(&mut trace));
        assert_eq!(
            trace,
            vec![
                Trace::TimedOut { event: 1, src: a },
                Trace::TimedOut { event: 0, src: b },
            ]
        );
        assert_eq!(m.stats().tracked, 1);
        m.expire(63_001, None);
        assert_eq!(m.stats().tracked, 0);
        check(&m);
        // A lapsed attempt can't be continued even before expire runs.
        knock(&mut m, a, "tcp:1", 100_000);
        assert_eq!(knock(&mut m, a, "tcp:3", 160_001), vec![]);
    }

    #[test]
    fn frequent_expire_calls_sweep_a_share_each() {
        let ev = [event("e", "tcp:1 tcp:2", 1)];
        let mut m = Matcher::new(&ev, 1000, 0);
        for n in 0..1000 {
            knock(&mut m, v4(n), "tcp:1", 0);
        }
        let mut timed_out = Vec::new();
        for t in 1..=1000 {
            m.expire(t, Some(&mut timed_out));
        }
        assert!(timed_out.is_empty()); // deadline 1000 not passed yet
                                       // Called every millisecond, each call looks at ~1/1000 of the
                                       // table: half a period reclaims about half, a period reclaims all.
        for t in 1001..=1500 {
            m.expire(t, Some(&mut timed_out));
        }
        let half = timed_out.len();
        assert!((400..=600).contains(&half), "{half}");
        assert_eq!(m.stats().tracked, 1000 - half);
        for t in 1501..=2001 {
            m.expire(t, Some(&mut timed_out));
        }
        assert_eq!(timed_out.len(), 1000);
        assert_eq!(m.stats().tracked, 0);
        check(&m);
    }

    #[test]
    fn one_frame_moves_parallel_events() {
        let ev = [
            event("a", "tcp:1 tcp:2 tcp:3", 10),
            event("b", "tcp:1 tcp:2 udp:4", 10),
            event("c", "tcp:9 tcp:1", 10),
        ];
        let mut m = Matcher::new(&ev, 16, 0);
        let s = v4(7);
        let mut trace = Vec::new();
        let mut fired = Vec::new();
        m.feed(s, Proto::Tcp, 1, 0, 0, &mut fired, Some(&mut trace));
        assert_eq!(
            trace,
            vec![
                Trace::Advanced {
                    event: 0,
                    src: s,
                    step: 1
                },
                Trace::Advanced {
                    event: 1,
                    src: s,
                    step: 1
                }
            ]
        );
        knock(&mut m, s, "tcp:2", 0);
        assert_eq!((m.progress(s, 0), m.progress(s, 1)), (2, 2));
        assert_eq!(knock(&mut m, s, "tcp:3", 0), vec![0]);
        assert_eq!(m.progress(s, 1), 0); // reset by a knock port of `a`
                                         // One frame completes one event while starting another.
        knock(&mut m, s, "tcp:9", 0);
        let mut trace = Vec::new();
        fired.clear();
        m.feed(s, Proto::Tcp, 1, 0, 0, &mut fired, Some(&mut trace));
        assert_eq!(fired, vec![Fired { event: 2, src: s }]);
        assert_eq!((m.progress(s, 0), m.progress(s, 1)), (1, 1));
        check(&m);
    }

    #[test]
    fn sources_interleave_independently() {
        let ev = [event("e", "tcp:1 udp:2 tcp:3", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let (a, b) = (ip("192.0.2.1"), ip("::ffff:192.0.2.1"));
        let mut fired = Vec::new();
        for f in ["tcp:1", "udp:2", "tcp:3"] {
            let (p, port, fl) = frame(f);
            m.feed(a, p, port, fl, 0, &mut fired, None);
            m.feed(b, p, port, fl, 0, &mut fired, None);
        }
        // v4 and v4-mapped v6 are different sources.
        assert_eq!(
            fired,
            vec![Fired { event: 0, src: a }, Fired { event: 0, src: b }]
        );
        // One source's wrong frame does not disturb the other.
        knock(&mut m, a, "tcp:1", 0);
        knock(&mut m, b, "tcp:1 udp:2", 0);
        knock(&mut m, a, "tcp:3", 0);
        assert_eq!(knock(&mut m, b, "tcp:3", 0), vec![0]);
        check(&m);
    }

    #[test]
    fn other_ports_are_ignored_and_allocate_nothing() {
        let ev = [event("e", "tcp:1 udp:2 tcp:3", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = v4(1);
        knock(&mut m, a, "tcp:1 udp:1 tcp:2 tcp:80:s udp:3", 0);
        assert_eq!(knock(&mut m, a, "udp:2 tcp:65535 tcp:3", 0), vec![0]);
        assert!(!m.is_knock_port(Proto::Tcp, 2));
        assert!(m.is_knock_port(Proto::Udp, 2));
        let mut fired = Vec::new();
        for n in 0..10_000u32 {
            let src = v4(n);
            // Random ports, and knock ports that are not a first step.
            m.feed(
                src,
                Proto::Tcp,
                (n % 65_536) as u16 | 4,
                0,
                0,
                &mut fired,
                None,
            );
            m.feed(src, Proto::Udp, 2, 0, 0, &mut fired, None);
            m.feed(src, Proto::Tcp, 3, 0, 0, &mut fired, None);
            m.feed(src, Proto::Tcp, 1, SYN, 0, &mut fired, None); // wrong flags
        }
        assert!(fired.is_empty());
        assert_eq!(m.stats().tracked, 0);
        assert_eq!(m.stats().events[0].started, 1);
    }

    #[test]
    fn flags_match_exactly_but_ece_cwr_never_count() {
        let ev = [event("e", "tcp:1:s tcp:2:frap tcp:3:n udp:4", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = v4(1);
        let mut fired = Vec::new();
        let mut go = |p, port, fl| m.feed(a, p, port, fl, 0, &mut fired, None);
        go(Proto::Tcp, 1, SYN | ECE | CWR);
        go(Proto::Tcp, 2, FIN | RST | ACK | PSH | ECE);
        go(Proto::Tcp, 3, CWR);
        go(Proto::Udp, 4, SYN);
        assert_eq!(fired.len(), 1);
        for (fl, ok) in [
            (SYN, true),
            (SYN | ACK, false),
            (0, false),
            (SYN | FIN, false),
        ] {
            let mut fired = Vec::new();
            m.feed(a, Proto::Tcp, 1, fl, 0, &mut fired, None);
            assert_eq!(m.progress(a, 0) == 1, ok, "flags {fl:#x}");
            m.feed(a, Proto::Tcp, 9, 0, 0, &mut fired, None); // not a knock port
            m.feed(a, Proto::Tcp, 3, SYN, 0, &mut fired, None); // reset
        }
        // Superset of the flags: no.
        let mut fired = Vec::new();
        for f in [SYN, FIN | RST | ACK | PSH | URG] {
            m.feed(
                a,
                Proto::Tcp,
                if f == SYN { 1 } else { 2 },
                f,
                0,
                &mut fired,
                None,
            );
        }
        assert_eq!(m.progress(a, 0), 0);
    }

    #[test]
    fn lru_evicts_least_recently_active() {
        let ev = [event("e", "tcp:1 tcp:1:s tcp:2", 10)];
        let mut m = Matcher::new(&ev, 3, 0);
        let (a, b, c, d) = (v4(1), v4(2), v4(3), v4(4));
        for s in [a, b, c] {
            knock(&mut m, s, "tcp:1", 0);
        }
        knock(&mut m, a, "tcp:1", 0); // retransmission still counts as activity
        knock(&mut m, d, "tcp:1", 0); // full: evicts b, the oldest
        assert_eq!(m.stats().evictions, 1);
        assert_eq!(m.stats().tracked, 3);
        assert_eq!([a, b, c, d].map(|s| m.progress(s, 0)), [1, 0, 1, 1]);
        knock(&mut m, b, "tcp:1", 0); // evicts c
        assert_eq!([a, b, c, d].map(|s| m.progress(s, 0)), [1, 1, 0, 1]);
        check(&m);
        // Capacity 0 is treated as 1.
        let mut m = Matcher::new(&ev, 0, 0);
        knock(&mut m, a, "tcp:1", 0);
        knock(&mut m, b, "tcp:1", 0);
        assert_eq!((m.progress(a, 0), m.progress(b, 0)), (0, 1));
        assert_eq!(m.stats().capacity, 1);
    }

    #[test]
    fn step_two_knocker_survives_any_step_one_flood() {
        let ev = [event("e", "tcp:1 tcp:1:s tcp:2", 3600)];
        let cap = 1024;
        let mut m = Matcher::new(&ev, cap, 0);
        let knocker = ip("2001:db8::1");
        knock(&mut m, knocker, "tcp:1 tcp:1:s", 0);
        let mut fired = Vec::new();
        for n in 0..200_000u32 {
            m.feed(v4(n), Proto::Tcp, 1, 0, 1, &mut fired, None);
        }
        assert_eq!(m.stats().tracked, cap);
        assert_eq!(m.progress(knocker, 0), 2);
        check(&m);
        assert_eq!(knock(&mut m, knocker, "tcp:2", 2), vec![0]);
        // Protected room is bounded: more step-2 sources than it holds push
        // the oldest back to probation, newcomers still get slots.
        for n in 0..cap as u32 {
            knock(&mut m, v4(n), "tcp:1 tcp:1:s", 3);
        }
        assert_eq!(m.protected.len, m.protected_cap);
        knock(&mut m, knocker, "tcp:1", 4);
        assert_eq!(m.progress(knocker, 0), 1);
        check(&m);
    }

    /// 1,000,000 spoofed first knocks through a full default-size table,
    /// with the real knocker sending one frame every `gap` flood frames.
    /// Holds whenever `gap` < capacity (the knocker's step-1 slot must not
    /// age out of probation); from step 2 on no flood can evict it.
    #[test]
    fn flood_does_not_stop_a_real_knocker() {
        let ev = [event("ssh", "tcp:7000 udp:8000 tcp:9000:s tcp:7000", 30)];
        let mut m = Matcher::new(&ev, DEFAULT_CAPACITY, 0);
        let mut fired = Vec::new();
        let mut n: u64 = 0;
        let spoof = |n: u64| {
            let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            IpAddr::V6(Ipv6Addr::from(u128::from(x) | (0x2001_0db8u128 << 96)))
        };
        for _ in 0..DEFAULT_CAPACITY {
            m.feed(spoof(n), Proto::Tcp, 7000, 0, 0, &mut fired, None);
            n += 1;
        }
        assert_eq!(m.stats().tracked, DEFAULT_CAPACITY);
        let knocker = ip("198.51.100.7");
        let steps = [
            (Proto::Tcp, 7000, 0),
            (Proto::Udp, 8000, 0),
            (Proto::Tcp, 9000, SYN),
            (Proto::Tcp, 7000, 0),
        ];
        let gap = DEFAULT_CAPACITY as u64 - 1;
        let mut t = 0;
        let mut step = 0;
        while n < 1_000_000 + DEFAULT_CAPACITY as u64 {
            if n % gap == 0 && step < steps.len() {
                let (p, port, fl) = steps[step];
                m.feed(knocker, p, port, fl, t, &mut fired, None);
                step += 1;
            }
            m.feed(spoof(n), Proto::Tcp, 7000, 0, t, &mut fired, None);
            n += 1;
            t = n / 100_000; // 100k frames per millisecond
        }
        assert_eq!(step, steps.len());
        assert_eq!(
            fired,
            vec![Fired {
                event: 0,
                src: knocker
            }]
        );
        assert!(m.stats().evictions >= 1_000_000 - 4);
        assert_eq!(m.stats().tracked, DEFAULT_CAPACITY);
        check(&m);
    }

    #[test]
    fn reload_keeps_only_unchanged_events() {
        let old = [
            event("keep", "tcp:1 tcp:2 tcp:3", 10),
            event("change", "tcp:1 tcp:2 tcp:4", 10),
            event("gone", "tcp:1 tcp:5", 10),
            event("retime", "tcp:1 tcp:6", 10),
        ];
        let mut m = Matcher::new(&old, 16, 0);
        let a = v4(1);
        let b = v4(2);
        knock(&mut m, a, "tcp:1 tcp:2", 0);
        knock(&mut m, b, "tcp:1", 0);
        knock(&mut m, b, "tcp:3", 0); // resets b everywhere: untracked
        knock(&mut m, b, "tcp:1", 0);
        assert_eq!(m.progress(a, 0), 2);
        let started_keep = m.stats().events[0].started;
        let new = [
            event("new", "udp:9 tcp:3", 10),
            event("retime", "tcp:1 tcp:6", 11),
            event("change", "tcp:1 tcp:2 tcp:7", 10),
            event("keep", "tcp:1 tcp:2 tcp:3", 10),
        ];
        m.reload(&new, 1);
        check(&m);
        assert_eq!(m.progress(a, 3), 2);
        assert_eq!(m.progress(b, 3), 1);
        for e in 0..3 {
            assert_eq!(m.progress(a, e), 0);
        }
        let st = m.stats();
        assert_eq!(st.events[3].name, "keep");
        assert_eq!(st.events[3].started, started_keep);
        assert_eq!(st.events[2].started, 0);
        assert!(!m.is_knock_port(Proto::Tcp, 5));
        assert!(m.is_knock_port(Proto::Udp, 9));
        // The kept attempt finishes within its old deadline.
        assert_eq!(knock(&mut m, a, "tcp:3", 10_000), vec![3]);
        // ...and kept its deadline.
        let mut trace = Vec::new();
        m.expire(10_001, Some(&mut trace));
        assert_eq!(trace, vec![Trace::TimedOut { event: 3, src: b }]);
        // Reloading to nothing drops everyone.
        knock(&mut m, a, "tcp:1", 20_000);
        m.reload(&[], 20_000);
        assert_eq!(m.stats().tracked, 0);
        assert!(m.ports().is_empty());
        check(&m);
    }

    #[test]
    fn reload_follows_events_that_moved() {
        let mut evs: Vec<Event> = (0..7)
            .map(|i| {
                event(
                    &format!("e{i}"),
                    &format!("udp:{} tcp:{}", 100 + i, 200 + i),
                    10,
                )
            })
            .collect();
        let mut m = Matcher::new(&evs, 8, 0);
        let a = v4(1);
        for i in 0..7 {
            knock(&mut m, a, &format!("udp:{}", 100 + i), 0);
            // Each first step resets the others: only event i is running.
            assert_eq!(m.progress(a, i), 1);
        }
        evs.rotate_left(5); // e6 becomes event 1
        m.reload(&evs, 1);
        check(&m);
        assert_eq!(m.progress(a, 1), 1);
        assert_eq!(knock(&mut m, a, "tcp:206", 2), vec![1]);
        knock(&mut m, a, "udp:102", 3); // e2 is now event 4
        evs.rotate_left(2);
        m.reload(&evs, 4); // e2 moves to event 2
        assert_eq!(m.progress(a, 2), 1);
        assert_eq!(knock(&mut m, a, "tcp:202", 5), vec![2]);
        check(&m);
    }

    #[test]
    fn stats_count_starts_completions_and_tracking() {
        let ev = [event("a", "tcp:1 tcp:2", 10), event("b", "udp:5", 10)];
        let mut m = Matcher::new(&ev, 2, 0);
        knock(&mut m, v4(1), "tcp:1 tcp:2", 0);
        knock(&mut m, v4(2), "tcp:1 tcp:1 tcp:1:s tcp:1", 0);
        knock(&mut m, v4(3), "tcp:1", 0);
        // Evicts v4(2); then udp:5 fires `b` and, being a knock port,
        // resets v4(4)'s `a`, so v4(4) is forgotten.
        knock(&mut m, v4(4), "tcp:1 udp:5 udp:5", 0);
        let st = m.stats();
        assert_eq!(st.events[0].name, "a");
        assert_eq!((st.events[0].started, st.events[0].completed), (5, 1));
        assert_eq!((st.events[1].started, st.events[1].completed), (2, 2));
        assert_eq!(st.tracked, 1);
        assert_eq!(st.capacity, 2);
        assert_eq!(st.evictions, 1);
        assert_eq!(
            m.ports(),
            vec![(Proto::Tcp, 1), (Proto::Tcp, 2), (Proto::Udp, 5)]
        );
    }

    #[test]
    fn memory_per_source_is_as_documented() {
        assert!(std::mem::size_of::<Source>() <= 32);
        assert!(std::mem::size_of::<Attempt>() <= 8);
        let m = Matcher::new(&[event("e", "tcp:1 tcp:2", 1)], DEFAULT_CAPACITY, 0);
        // Index: 8-byte entries, 2 per unit of (power-of-two) capacity.
        assert_eq!(m.index.len() * 8, DEFAULT_CAPACITY * 16);
        let per_source = 32 + 8 + m.index.len() * 8 / DEFAULT_CAPACITY;
        assert_eq!(per_source, 56);
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let long: Vec<String> = (0..255).map(|i| format!("tcp:{}:i", 1 + i % 3)).collect();
        let mut many = event("many", "tcp:1", 1);
        many.sequence = (0..70_000).map(|_| "udp:1".parse().unwrap()).collect();
        let mut empty = event("empty", "tcp:1", 0);
        empty.sequence.clear();
        let evs = [
            event("long", &long.join(" "), 0),
            many,
            empty,
            event("zero", "tcp:65535 udp:1", 0),
            event("max", "udp:1 tcp:2", u32::MAX),
        ];
        for cap in [0, 1, 2, usize::MAX] {
            let mut m = Matcher::new(&evs, cap, u64::MAX - 5);
            let mut fired = Vec::new();
            let mut trace = Vec::new();
            let mut x: u64 = 1;
            for i in 0..20_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let src = if x & 1 == 0 {
                    v4((x >> 40) as u32 & 7)
                } else {
                    IpAddr::V6(Ipv6Addr::from(u128::from(x >> 60)))
                };
                let proto = if x & 2 == 0 { Proto::Tcp } else { Proto::Udp };
                let port = if x & 4 == 0 {
                    (x >> 8) as u16
                } else {
                    (x >> 8) as u16 % 3
                };
                // Time jumps around, backwards and to the end of u64.
                let now = match i % 5 {
                    0 => u64::MAX,
                    1 => 0,
                    _ => x,
                };
                m.feed(
                    src,
                    proto,
                    port,
                    (x >> 24) as u8,
                    now,
                    &mut fired,
                    Some(&mut trace),
                );
                if i % 97 == 0 {
                    m.expire(x, Some(&mut trace));
                }
                if i % 5003 == 0 {
                    m.reload(&evs[..(i as usize / 5003) % 5 + 1], x);
                }
            }
            check(&m);
            let _ = m.ports();
            let _ = m.progress(v4(0), usize::MAX);
        }
    }

    /// A naive model of the rules (unbounded, one map entry per source and
    /// event), compared with the matcher on random traffic.
    #[test]
    fn agrees_with_a_naive_model() {
        let evs = [
            event("a", "tcp:1:s tcp:2 tcp:2 udp:3", 3),
            event("b", "tcp:1:s tcp:2:i", 2),
            event("c", "udp:3 tcp:1:s tcp:1:s", 5),
            event("d", "tcp:4:sa", 1),
        ];
        let knock_ports: Vec<(Proto, u16)> = vec![
            (Proto::Tcp, 1),
            (Proto::Tcp, 2),
            (Proto::Udp, 3),
            (Proto::Tcp, 4),
        ];
        let mut m = Matcher::new(&evs, 1 << 12, 0);
        // (src, event) -> (step, last flags, deadline)
        let mut model: HashMap<(u32, usize), (usize, u8, u64)> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        let mut now = 0u64;
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += x % 7;
            let src = (x >> 8) as u32 % 50;
            let (proto, port) = if x % 11 == 0 {
                (Proto::Tcp, 99)
            } else {
                knock_ports[(x >> 16) as usize % 4]
            };
            let fl = [SYN, 0, SYN | ACK, SYN | ECE, ACK][(x >> 20) as usize % 5];
            let mut fired = Vec::new();
            m.feed(v4(src), proto, port, fl, now, &mut fired, None);
            let mut want = Vec::new();
            if knock_ports.contains(&(proto, port)) {
                for (e, ev) in evs.iter().enumerate() {
                    let seq = &ev.sequence;
                    let st = model.remove(&(src, e));
                    let mut keep = None;
                    let mut fresh = true;
                    if let Some((step, lf, dl)) = st {
                        if now <= dl {
                            if seq[step].matches(proto, port, fl) {
                                fresh = false;
                                if step + 1 == seq.len() {
                                    want.push(e);
                                } else {
                                    keep = Some((step + 1, fl & 0x3f, dl));
                                }
                            } else if seq[step - 1].proto == proto
                                && seq[step - 1].port == port
                                && (proto == Proto::Udp || lf == fl & 0x3f)
                            {
                                fresh = false;
                                keep = st;
                            }
                        }
                    }
                    if fresh && seq[0].matches(proto, port, fl) {
                        if seq.len() == 1 {
                            want.push(e);
                        } else {
                            keep = Some((1, fl & 0x3f, now + u64::from(ev.timeout) * 1000));
                        }
                    }
                    if let Some(k) = keep {
                        model.insert((src, e), k);
                    }
                }
            }
            let got: Vec<usize> = fired.iter().map(|f| f.event).collect();
            assert_eq!(got, want, "frame {i}");
            if i % 1000 == 0 {
                m.expire(now, None);
                model.retain(|_, v| v.2 >= now);
                check(&m);
                let live: std::collections::HashSet<u32> = model.keys().map(|k| k.0).collect();
                assert_eq!(m.stats().tracked, live.len());
            }
        }
        let st = m.stats();
        assert!(st.events.iter().all(|e| e.completed > 10), "{st:?}");
    }
}
