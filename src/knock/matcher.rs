//! The knock matcher: follows every source through every event.
//!
//! Pure code: no sockets, no clock. The caller passes each frame as a
//! [`Knock`] (source, protocol, destination port, raw TCP flag byte) and a
//! monotonic `now_ms`; what happened comes back in an [`Output`].
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
//! # Cost independent of the number of events
//! A source holds only the attempts it has in progress, sorted by event:
//! up to [`INLINE`] in its own table slot, more (rare: several events
//! sharing first steps) in a shared spill pool of at most `capacity`
//! entries. A frame reaches only the source's own attempts and, through an
//! index from (protocol, port) to the events whose *first* step is there,
//! the events it could start. So a frame costs O(attempts in progress +
//! events starting on its port), and a source's memory does not grow with
//! the number of events in the configuration.
//!
//! # Bounded state
//! A source gets a slot only once it has matched some event's first step, and
//! loses it as soon as it has no attempt in progress. At most `capacity`
//! sources are tracked, in the two-segment LRU of the source table
//! (`knock::table`): a source past step 1 in some attempt is *protected*, and
//! newcomers evict the least recently active *probation* source, so a flood of
//! spoofed first knocks — any number of them — never evicts a knocker that has
//! reached step 2; such a knocker is only displaced by more than the protected
//! limit of *more recently active* step-2 sources. Between its first and second
//! frames a knocker sits in probation and survives as long as fewer than
//! `capacity - protected` newcomers (at least `capacity / 4`; all of `capacity`
//! when nobody is protected) arrive in between.
//!
//! When the spill pool is exhausted, a source that needs more than
//! [`INLINE`] attempts first evicts up to [`SPILL_EVICTIONS`] other sources
//! (in LRU order, as a newcomer would); attempts that still find no room are
//! not kept and are counted ([`MatcherStats::attempts_dropped`]).
//!
//! `expire` sweeps the slot table incrementally, a share proportional to
//! the time since its last call, all of it per [`SWEEP_MS`]: an amortised
//! sequential pass per second, whatever the frame rate, and a lapsed source
//! is reclaimed within `SWEEP_MS`.
//!
//! # Memory
//! Per tracked source: a 64-byte slot (one cache line: address, LRU links
//! and [`INLINE`] attempts) and its share of the open-addressing index,
//! which has `next_power_of_two(2 * capacity)` 8-byte entries (16 bytes per
//! source when `capacity` is a power of two): 80 bytes, whatever the number
//! of events, 5 MiB for the default 65,536 sources. The spill pool adds at
//! most 16 bytes per unit of capacity, and only when used. The events cost
//! their steps and one index entry per event. `tests::memory_per_source_is_as_documented`
//! pins these figures.

use std::net::IpAddr;

use crate::config::Event;
use crate::knock::table::{Key, Seg, SourceTable, NIL};
use crate::knock::template::PortRange;
use crate::knock::{flags, FlagSpec, Knock, Proto, Step};

/// Sources tracked at once unless the caller says otherwise.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// Larger capacities are clamped to this (the index stays under 64 MiB).
pub const MAX_CAPACITY: usize = 1 << 22;
/// Events with more steps than this (or none) never match.
pub const MAX_STEPS: usize = u16::MAX as usize;
/// Events past this many in one matcher never match (an attempt names its
/// event in 16 bits); the config loader's step limit keeps real
/// configurations far below it.
pub const MAX_EVENTS: usize = 1 << 16;
/// Attempts a source keeps in its own slot; more go to the spill pool.
pub const INLINE: usize = 3;
/// Sources a source may evict to find spill room for its attempts.
pub const SPILL_EVICTIONS: usize = 8;

/// An event completed by a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Index into the events slice given to `new`/`reload`.
    pub event: usize,
    /// The source that knocked.
    pub src: IpAddr,
    /// For a rotating event's sequence: the window it belongs to. The
    /// matcher itself leaves it `None`; [`MatchSet`](super::matchset::MatchSet)
    /// fills it in.
    pub window: Option<u64>,
}

/// Debug-log detail of what the matcher did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// `step` (1-based) is the step now reached.
    Advanced {
        /// Index of the event.
        event: usize,
        /// The knocking source.
        src: IpAddr,
        /// Step reached, from 1.
        step: usize,
    },
    /// A frame broke the attempt off.
    Reset {
        /// Index of the event.
        event: usize,
        /// The knocking source.
        src: IpAddr,
        /// Steps the attempt had matched.
        step: usize,
        /// The frame that broke it off.
        by: Seen,
        /// The step it waited for.
        expected: Option<Step>,
    },
    /// A frame that would have reset the attempt was let pass.
    Ignored {
        /// Index of the event.
        event: usize,
        /// The knocking source.
        src: IpAddr,
        /// Steps the attempt has matched.
        step: usize,
        /// The frame let pass.
        by: Seen,
        /// Why it did not reset the attempt.
        why: Skip,
    },
    /// The attempt outlived the event's timeout.
    TimedOut {
        /// Index of the event.
        event: usize,
        /// The knocking source.
        src: IpAddr,
    },
    /// The whole sequence arrived.
    Fired {
        /// Index of the event.
        event: usize,
        /// The knocking source.
        src: IpAddr,
    },
}

impl Trace {
    /// A step past the first: what [`Output::progress`] records. A first
    /// step is left out, as a flood of spoofed first knocks makes any
    /// number of them.
    pub fn is_progress(&self) -> bool {
        matches!(*self, Trace::Advanced { step, .. } if step >= 2)
    }
}

/// Why a frame that matches no next step left an attempt alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It repeats the frame that matched the last step (a retransmission).
    Repeat,
    /// The event's `TCPFlags` refuse its flags (knockd: ignored, not wrong).
    TcpFlags,
}

/// A frame as a trace line names it: protocol, destination port and, for
/// TCP, the classic flags, e.g. `tcp/543 flags SA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Its protocol.
    pub proto: Proto,
    /// Its destination port.
    pub port: u16,
    /// Its raw TCP flag byte (0 for UDP).
    pub flags: u8,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.proto, self.port)?;
        if self.proto == Proto::Tcp {
            f.write_str(" flags ")?;
            if self.flags & flags::CLASSIC == 0 {
                return f.write_str("none");
            }
            for (letter, bit, _) in flags::LETTERS {
                if self.flags & bit != 0 {
                    write!(f, "{}", letter.to_ascii_uppercase())?;
                }
            }
        }
        Ok(())
    }
}

/// What [`Matcher::feed`] and [`Matcher::expire`] produce, appended to.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Events completed, in the order they completed.
    pub fired: Vec<Fired>,
    /// Every step, reset, timeout and fire, when `tracing`; the steps past
    /// the first ([`Trace::is_progress`]) when `progress`.
    pub trace: Vec<Trace>,
    /// Whether to fill `trace` (off in normal operation: a push per step).
    pub tracing: bool,
    /// Whether to record steps past the first even without `tracing`.
    pub progress: bool,
}

impl Output {
    /// An output without tracing.
    pub fn new() -> Output {
        Output::default()
    }

    /// An output that also records the trace.
    pub fn traced() -> Output {
        Output {
            tracing: true,
            ..Output::default()
        }
    }

    /// Empties `fired` and `trace`, keeping their buffers.
    pub fn clear(&mut self) {
        self.fired.clear();
        self.trace.clear();
    }

    #[inline]
    fn note(&mut self, t: Trace) {
        if self.tracing || (self.progress && t.is_progress()) {
            self.trace.push(t);
        }
    }
}

/// Counters for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStats {
    /// The event's name.
    pub name: String,
    /// Attempts begun (first step matched).
    pub started: u64,
    /// Attempts that ran through the whole sequence.
    pub completed: u64,
}

/// The matcher's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherStats {
    /// Per event, in the order given.
    pub events: Vec<EventStats>,
    /// Sources with an attempt in progress right now.
    pub tracked: usize,
    /// Sources tracked at most.
    pub capacity: usize,
    /// Sources dropped to make room for a newcomer.
    pub evictions: u64,
    /// Attempts not kept for want of spill room (see the module docs).
    pub attempts_dropped: u64,
}

/// Deadlines are milliseconds after the matcher's creation, in 42 bits
/// (139 years; a `u32` timeout in seconds still fits).
const MAX_REL: u64 = (1 << 42) - 1;
/// `expire` sweeps the whole table once per this many milliseconds.
pub const SWEEP_MS: u64 = 1000;

/// One source's progress through one event, in five 16-bit words so that
/// [`INLINE`] of them fit a slot: event, step reached (≥ 1), then 48 bits
/// of classic flags of the frame that advanced it (low 6) and deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Attempt([u16; 5]);

impl Attempt {
    fn new(event: usize, step: usize, raw_flags: u8, deadline: u64) -> Attempt {
        debug_assert!(event < MAX_EVENTS && (1..=MAX_STEPS).contains(&step));
        let rest = (deadline.min(MAX_REL) << 6) | u64::from(raw_flags & flags::CLASSIC);
        Attempt([
            event as u16,
            step as u16,
            rest as u16,
            (rest >> 16) as u16,
            (rest >> 32) as u16,
        ])
    }
    fn event(&self) -> usize {
        usize::from(self.0[0])
    }
    fn step(&self) -> usize {
        usize::from(self.0[1])
    }
    fn rest(&self) -> u64 {
        u64::from(self.0[2]) | u64::from(self.0[3]) << 16 | u64::from(self.0[4]) << 32
    }
    fn flags(&self) -> u8 {
        self.rest() as u8 & flags::CLASSIC
    }
    fn deadline(&self) -> u64 {
        self.rest() >> 6
    }
}

/// A source's attempts in progress: `inline[..len]`, then (only when
/// `inline` is full) the spill chain from `more`; sorted by event.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Attempts {
    more: u32,
    len: u8,
    inline: [Attempt; INLINE],
}

const NO_ATTEMPTS: Attempts = Attempts {
    more: NIL,
    len: 0,
    inline: [Attempt([0; 5]); INLINE],
};

/// A spilled attempt and the next of its source's chain.
#[derive(Debug, Clone, Copy)]
struct Spill {
    attempt: Attempt,
    next: u32,
}

#[derive(Debug, Clone)]
struct Ev {
    name: String,
    steps: Box<[Step]>,
    timeout: u32,
    timeout_ms: u64,
    usable: bool,
    /// New attempts may start (false: draining, see [`Matcher::set_draining`]).
    starts: bool,
    gate: Option<FlagSpec>,
}

impl Ev {
    /// Why a frame that does not advance an attempt at `step` (whose last
    /// matched frame had classic flags `last`) leaves it in place instead of
    /// resetting it: it repeats that frame (a retransmission), or it is TCP
    /// with flags the event's gate ignores. `None`: the attempt resets. The
    /// gate is only consulted when the frame would otherwise reset, so the
    /// matching path pays nothing for it.
    #[inline]
    fn keeps(&self, step: usize, last: u8, proto: Proto, port: u16, fl: u8) -> Option<Skip> {
        let repeat = self.steps.get(step - 1).is_some_and(|p| {
            p.proto == proto
                && p.port == port
                && (proto == Proto::Udp || last == fl & flags::CLASSIC)
        });
        if repeat {
            Some(Skip::Repeat)
        } else if self
            .gate
            .is_some_and(|g| proto == Proto::Tcp && !g.accepts(fl))
        {
            Some(Skip::TcpFlags)
        } else {
            None
        }
    }
}

/// What must be unchanged for an event's attempts to survive a reload:
/// name, steps, timeout and flag gate.
type Identity<'a> = (&'a str, &'a [Step], u32, Option<FlagSpec>);

impl Ev {
    fn identity(&self) -> Identity<'_> {
        (&self.name, &self.steps, self.timeout, self.gate)
    }
}

/// From (protocol, port) to the events whose first step is there: an
/// open-addressing table of `(port_bit + 1, start, end)` (0: empty, load at
/// most 1/2) over ranges of `events`, so a lookup is a probe or two
/// whatever the number of events.
#[derive(Debug, Default)]
struct FirstIndex {
    slots: Box<[(u32, u32, u32)]>,
    /// Event indices grouped by first (protocol, port), ascending in a group.
    events: Vec<u16>,
}

impl FirstIndex {
    fn build(events: &[Ev]) -> FirstIndex {
        let mut pairs: Vec<(u32, u16)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.usable && e.starts)
            .map(|(i, e)| (port_bit(e.steps[0].proto, e.steps[0].port) as u32, i as u16))
            .collect();
        crate::sort::sort(&mut pairs);
        // (key, start, end) per distinct first (protocol, port).
        let mut groups: Vec<(u32, u32, u32)> = Vec::new();
        for (i, &(key, _)) in pairs.iter().enumerate() {
            match groups.last_mut() {
                Some(g) if g.0 == key => g.2 = i as u32 + 1,
                _ => groups.push((key, i as u32, i as u32 + 1)),
            }
        }
        let size = (groups.len() * 2).next_power_of_two().max(4);
        let mut index = FirstIndex {
            slots: vec![(0, 0, 0); size].into_boxed_slice(),
            events: pairs.iter().map(|p| p.1).collect(),
        };
        for (key, start, end) in groups {
            let mut i = Self::home(key, size);
            while index.slots[i].0 != 0 {
                i = (i + 1) & (size - 1);
            }
            index.slots[i] = (key + 1, start, end);
        }
        index
    }

    #[inline]
    fn home(key: u32, size: usize) -> usize {
        (key.wrapping_mul(0x9e37_79b1) >> 15) as usize & (size - 1)
    }

    /// The range of `events` starting on `pb`.
    #[inline]
    fn range(&self, pb: usize) -> (usize, usize) {
        let size = self.slots.len();
        if size == 0 {
            return (0, 0);
        }
        let key = pb as u32;
        let mut i = Self::home(key, size);
        loop {
            let (k, lo, hi) = self.slots[i];
            if k == key + 1 {
                return (lo as usize, hi as usize);
            }
            if k == 0 {
                return (0, 0);
            }
            i = (i + 1) & (size - 1);
        }
    }
}

/// Attempts being collected: on the stack while they fit a slot, then in
/// a reused buffer.
struct List<'a> {
    small: [Attempt; INLINE],
    n: usize,
    big: &'a mut Vec<Attempt>,
    spilled: bool,
}

impl<'a> List<'a> {
    fn new(big: &'a mut Vec<Attempt>) -> List<'a> {
        List {
            small: [Attempt::default(); INLINE],
            n: 0,
            big,
            spilled: false,
        }
    }

    #[inline]
    fn push(&mut self, a: Attempt) {
        if !self.spilled && self.n < INLINE {
            self.small[self.n] = a;
            self.n += 1;
            return;
        }
        if !self.spilled {
            self.big.clear();
            self.big.extend_from_slice(&self.small[..self.n]);
            self.spilled = true;
        }
        self.big.push(a);
    }

    fn is_empty(&self) -> bool {
        !self.spilled && self.n == 0
    }

    /// The list, if it is still on the stack.
    fn small(&self) -> Option<&[Attempt]> {
        (!self.spilled).then(|| &self.small[..self.n])
    }

    #[inline]
    fn as_slice(&self) -> &[Attempt] {
        if self.spilled {
            self.big
        } else {
            &self.small[..self.n]
        }
    }
}

/// Tracks knock progress of every source; see the module docs.
pub struct Matcher {
    events: Vec<Ev>,
    /// Per event: (started, completed).
    counts: Vec<(u64, u64)>,
    /// Next slot `expire` looks at, and when it last swept.
    sweep_pos: usize,
    swept_at: u64,
    /// Bit per (proto, port): some event uses it (or a guard range holds
    /// it) / some event starts on it.
    knock: Box<[u64]>,
    /// Ports that count as knock ports though no step is there now (see
    /// [`Matcher::set_guard_ranges`]).
    guards: Vec<(Proto, PortRange)>,
    first: Box<[u64]>,
    firsts: FirstIndex,
    table: SourceTable<Attempts>,
    spill: Vec<Spill>,
    spill_free: u32,
    spill_cap: usize,
    attempts_dropped: u64,
    /// Scratch for one source's attempts (kept to reuse the buffers).
    cur: Vec<Attempt>,
    next: Vec<Attempt>,
    base: u64,
    now: u64,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("events", &self.events.len())
            .field("table", &self.table)
            .field("spilled", &self.spill.len())
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

fn build_events(events: &[Event]) -> Vec<Ev> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Ev {
            name: e.name.clone(),
            steps: e.sequence.clone().into_boxed_slice(),
            timeout: e.timeout,
            timeout_ms: u64::from(e.timeout) * 1000,
            usable: !e.sequence.is_empty() && e.sequence.len() <= MAX_STEPS && i < MAX_EVENTS,
            starts: true,
            gate: e.tcp_gate,
        })
        .collect()
}

impl Matcher {
    /// A matcher for `events` tracking at most `capacity` sources (clamped
    /// to `1..=MAX_CAPACITY`); `now_ms` is the caller's clock now.
    pub fn new(events: &[Event], capacity: usize, now_ms: u64) -> Matcher {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let mut m = Matcher {
            events: Vec::new(),
            counts: Vec::new(),
            sweep_pos: 0,
            swept_at: 0,
            knock: vec![0; PORT_WORDS].into_boxed_slice(),
            guards: Vec::new(),
            first: vec![0; PORT_WORDS].into_boxed_slice(),
            firsts: FirstIndex::default(),
            table: SourceTable::new(capacity),
            spill: Vec::new(),
            spill_free: NIL,
            spill_cap: capacity,
            attempts_dropped: 0,
            cur: Vec::new(),
            next: Vec::new(),
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
            if let Some(s) = ev.steps.first().filter(|_| ev.starts) {
                bit_set(&mut self.first, port_bit(s.proto, s.port));
            }
        }
        for &(proto, range) in &self.guards {
            for port in range.first()..=range.last() {
                bit_set(&mut self.knock, port_bit(proto, port));
            }
        }
        self.firsts = FirstIndex::build(&self.events);
    }

    /// Advances the matcher's clock (never backwards) and returns it.
    fn tick(&mut self, now_ms: u64) -> u64 {
        let rel = now_ms.saturating_sub(self.base).min(MAX_REL);
        self.now = self.now.max(rel);
        self.now
    }

    /// Copies slot `s`'s attempts into `out` (cleared first).
    fn read_attempts(&self, s: u32, out: &mut Vec<Attempt>) {
        out.clear();
        let a = self.table.data(s);
        out.extend_from_slice(&a.inline[..usize::from(a.len)]);
        let mut e = a.more;
        while let Some(sp) = self.spill.get(e as usize) {
            out.push(sp.attempt);
            e = sp.next;
        }
    }

    /// Returns a spill chain to the pool.
    fn free_chain(&mut self, mut e: u32) {
        while let Some(sp) = self.spill.get_mut(e as usize) {
            let next = sp.next;
            sp.next = self.spill_free;
            self.spill_free = e;
            e = next;
        }
    }

    fn spill_alloc(&mut self, attempt: Attempt) -> Option<u32> {
        if self.spill_free != NIL {
            let e = self.spill_free;
            let sp = &mut self.spill[e as usize];
            self.spill_free = sp.next;
            *sp = Spill { attempt, next: NIL };
            Some(e)
        } else if self.spill.len() < self.spill_cap {
            self.spill.push(Spill { attempt, next: NIL });
            Some((self.spill.len() - 1) as u32)
        } else {
            None
        }
    }

    /// Evicts the LRU source other than `keep` and frees its spill chain.
    fn evict_other(&mut self, keep: u32) -> bool {
        match self.table.evict(keep) {
            Some(v) => {
                let more = self.table.data(v).more;
                *self.table.data_mut(v) = NO_ATTEMPTS;
                self.free_chain(more);
                true
            }
            None => false,
        }
    }

    /// Stores `list` (sorted by event) as slot `s`'s attempts, replacing
    /// what it had; spills past [`INLINE`], evicting others if it must.
    fn write_attempts(&mut self, s: u32, list: &[Attempt]) {
        let old = self.table.data(s).more;
        self.free_chain(old);
        let mut a = NO_ATTEMPTS;
        let n = list.len().min(INLINE);
        a.inline[..n].copy_from_slice(&list[..n]);
        a.len = n as u8;
        let mut tail = NIL;
        let mut evictions = 0;
        for (i, &attempt) in list.iter().enumerate().skip(INLINE) {
            let e = loop {
                if let Some(e) = self.spill_alloc(attempt) {
                    break Some(e);
                }
                if evictions == SPILL_EVICTIONS || !self.evict_other(s) {
                    break None;
                }
                evictions += 1;
            };
            let Some(e) = e else {
                self.attempts_dropped += (list.len() - i) as u64;
                break;
            };
            if tail == NIL {
                a.more = e;
            } else {
                self.spill[tail as usize].next = e;
            }
            tail = e;
        }
        *self.table.data_mut(s) = a;
    }

    /// Starts loading the index entry a `feed` from `src` will probe first.
    /// A caller that decodes a batch of frames, prefetches each source, then
    /// feeds them, has the batch's cache misses overlap instead of queueing
    /// one after the other (they are most of a frame's cost). A hint only.
    #[inline]
    pub fn prefetch(&self, src: IpAddr) {
        self.table.prefetch(Key::of(src));
    }

    /// Feeds one frame; completed events go to `out.fired`, and with
    /// `out.tracing` every step, reset, timeout and fire to `out.trace`.
    pub fn feed(&mut self, k: &Knock, now_ms: u64, out: &mut Output) {
        let pb = port_bit(k.proto, k.dst_port);
        if !bit_test(&self.knock, pb) {
            return;
        }
        let now = self.tick(now_ms);
        let key = Key::of(k.src);
        let h = self.table.hash(key);
        match self.table.find(h, key) {
            Some(s) => self.step_source(s, k, now, pb, out),
            None if bit_test(&self.first, pb) => self.start_source(h, key, k, now, pb, out),
            None => {}
        }
    }

    /// A frame from an untracked source on a first-step port: the events
    /// it starts get attempts (in a new slot), the one-step ones fire.
    /// The rules of `apply` for a source without attempts, in one pass.
    fn start_source(&mut self, h: u32, key: Key, k: &Knock, now: u64, pb: usize, out: &mut Output) {
        let (lo, hi) = self.firsts.range(pb);
        let mut big = std::mem::take(&mut self.next);
        let mut list = List::new(&mut big);
        let src = k.src;
        for &e in &self.firsts.events[lo..hi] {
            let event = usize::from(e);
            let ev = &self.events[event];
            if !ev.steps[0].matches(k.proto, k.dst_port, k.flags) {
                continue;
            }
            self.counts[event].0 += 1;
            out.note(Trace::Advanced {
                event,
                src,
                step: 1,
            });
            if ev.steps.len() == 1 {
                self.counts[event].1 += 1;
                out.note(Trace::Fired { event, src });
                out.fired.push(Fired {
                    event,
                    src,
                    window: None,
                });
            } else {
                list.push(Attempt::new(
                    event,
                    1,
                    k.flags,
                    now.saturating_add(ev.timeout_ms),
                ));
            }
        }
        if !list.is_empty() {
            // A new slot is at the front of probation already.
            let (s, evicted) = self.table.insert(h, key, NO_ATTEMPTS);
            if let Some(old) = evicted {
                self.free_chain(old.more);
            }
            match list.small() {
                Some(l) => {
                    let d = self.table.data_mut(s);
                    d.inline[..l.len()].copy_from_slice(l);
                    d.len = l.len() as u8;
                }
                None => self.write_attempts(s, list.as_slice()),
            }
        }
        self.next = big;
    }

    /// Applies the rules to tracked source `s`: its attempts in progress
    /// and the events starting on the frame's port, in event order.
    fn step_source(&mut self, s: u32, k: &Knock, now: u64, pb: usize, out: &mut Output) {
        let data = *self.table.data(s);
        let mut big_cur = std::mem::take(&mut self.cur);
        let mut big_next = std::mem::take(&mut self.next);
        // Almost always the attempts fit the slot: work on stack copies.
        let cur: &[Attempt] = if data.more == NIL {
            &data.inline[..usize::from(data.len)]
        } else {
            self.read_attempts(s, &mut big_cur);
            &big_cur
        };
        let mut next = List::new(&mut big_next);
        let max_step = self.apply(cur, k, now, pb, &mut next, out);
        if next.is_empty() {
            self.free_chain(data.more);
            *self.table.data_mut(s) = NO_ATTEMPTS;
            self.table.release(s);
        } else {
            // Moved to the front first, so spill evictions never pick `s`'s
            // neighbours over older sources.
            let seg = if max_step >= 2 {
                Seg::Protected
            } else {
                Seg::Probation
            };
            self.table.touch(s, seg);
            match next.small() {
                Some(list) if data.more == NIL => {
                    let d = self.table.data_mut(s);
                    d.inline[..list.len()].copy_from_slice(list);
                    d.len = list.len() as u8;
                }
                _ => self.write_attempts(s, next.as_slice()),
            }
        }
        self.cur = big_cur;
        self.next = big_next;
    }

    /// The rules for one frame over a source's attempts `cur`; what stays
    /// in progress goes to `next`. Returns the highest step in `next`.
    fn apply(
        &mut self,
        cur: &[Attempt],
        k: &Knock,
        now: u64,
        pb: usize,
        next: &mut List<'_>,
        out: &mut Output,
    ) -> usize {
        let (proto, port, fl, src) = (k.proto, k.dst_port, k.flags, k.src);
        let (lo, hi) = if bit_test(&self.first, pb) {
            self.firsts.range(pb)
        } else {
            (0, 0)
        };
        let firsts = &self.firsts.events[lo..hi];
        let (mut i, mut j) = (0, 0);
        let mut max_step = 0;
        while i < cur.len() || j < firsts.len() {
            let ea = cur.get(i).map_or(usize::MAX, Attempt::event);
            let ef = firsts.get(j).map_or(usize::MAX, |&e| usize::from(e));
            let event = ea.min(ef);
            let attempt = (ea == event).then(|| cur[i]);
            if ea == event {
                i += 1;
            }
            if ef == event {
                j += 1;
            }
            let ev = &self.events[event];
            if let Some(a) = attempt {
                let step = a.step();
                if now > a.deadline() {
                    out.note(Trace::TimedOut { event, src });
                } else if ev
                    .steps
                    .get(step)
                    .is_some_and(|n| n.matches(proto, port, fl))
                {
                    let step = step + 1;
                    out.note(Trace::Advanced { event, src, step });
                    if step < ev.steps.len() {
                        next.push(Attempt::new(event, step, fl, a.deadline()));
                        max_step = max_step.max(step);
                    } else {
                        out.note(Trace::Fired { event, src });
                        out.fired.push(Fired {
                            event,
                            src,
                            window: None,
                        });
                        self.counts[event].1 += 1;
                    }
                    continue;
                } else if let Some(why) = ev.keeps(step, a.flags(), proto, port, fl) {
                    next.push(a);
                    max_step = max_step.max(step);
                    if out.tracing {
                        let by = Seen {
                            proto,
                            port,
                            flags: fl,
                        };
                        out.note(Trace::Ignored {
                            event,
                            src,
                            step,
                            by,
                            why,
                        });
                    }
                    continue;
                } else if out.tracing {
                    let by = Seen {
                        proto,
                        port,
                        flags: fl,
                    };
                    let expected = ev.steps.get(step).copied();
                    out.note(Trace::Reset {
                        event,
                        src,
                        step,
                        by,
                        expected,
                    });
                }
                // Timed out or reset: the attempt is gone; the frame is
                // then tried as a first step below.
            }
            if ef == event && ev.steps[0].matches(proto, port, fl) {
                self.counts[event].0 += 1;
                out.note(Trace::Advanced {
                    event,
                    src,
                    step: 1,
                });
                if ev.steps.len() == 1 {
                    self.counts[event].1 += 1;
                    out.note(Trace::Fired { event, src });
                    out.fired.push(Fired {
                        event,
                        src,
                        window: None,
                    });
                } else {
                    next.push(Attempt::new(
                        event,
                        1,
                        fl,
                        now.saturating_add(ev.timeout_ms),
                    ));
                    max_step = max_step.max(1);
                }
            }
        }
        max_step
    }

    /// Drops attempts whose deadline has passed and reclaims sources left
    /// with none. Each call sweeps a share of the slots proportional to the
    /// time since the previous call, the whole table per `SWEEP_MS`: called
    /// regularly, it reclaims a lapsed source within `SWEEP_MS` of lapsing,
    /// at an amortised cost of one sequential pass over the table per
    /// `SWEEP_MS`, whatever the frame rate. (Frames never continue a lapsed
    /// attempt, whether or not it has been swept yet.)
    pub fn expire(&mut self, now_ms: u64, out: &mut Output) {
        let now = self.tick(now_ms);
        let len = self.table.slots();
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
        let mut cur = std::mem::take(&mut self.cur);
        for _ in 0..n {
            let s = self.sweep_pos % len;
            self.sweep_pos = (s + 1) % len;
            let s = s as u32;
            if self.table.seg(s) == Seg::Free {
                continue;
            }
            self.read_attempts(s, &mut cur);
            if !cur.iter().any(|a| now > a.deadline()) {
                continue;
            }
            let src = self.table.addr(s);
            cur.retain(|a| {
                let lapsed = now > a.deadline();
                if lapsed {
                    out.note(Trace::TimedOut {
                        event: a.event(),
                        src,
                    });
                }
                !lapsed
            });
            self.settle(s, &cur);
        }
        self.cur = cur;
    }

    /// Stores `list` as `s`'s attempts after a sweep or reload: releases a
    /// source left with none, demotes one no longer past step 1.
    fn settle(&mut self, s: u32, list: &[Attempt]) {
        if list.is_empty() {
            self.free_chain(self.table.data(s).more);
            *self.table.data_mut(s) = NO_ATTEMPTS;
            self.table.release(s);
            return;
        }
        self.write_attempts(s, list);
        if !list.iter().any(|a| a.step() >= 2) {
            self.table.demote(s);
        }
    }

    /// Replaces the events. Progress in events whose name, sequence,
    /// timeout and flag gate are unchanged survives; everything else starts
    /// fresh.
    pub fn reload(&mut self, events: &[Event], now_ms: u64) {
        self.tick(now_ms);
        let new = build_events(events);
        // Old index → new index for the events that carry over. Found by
        // binary search in the old events sorted by what must be unchanged,
        // so that a reload costs O(events log events), not O(events²):
        // rotating events reload the matcher every window. (Sorted, not
        // hashed: a map keyed by identity was 4 KB more code.)
        let mut map: Vec<Option<usize>> = vec![None; self.events.len()];
        let mut counts = vec![(0, 0); new.len()];
        let olds = &self.events;
        let mut old: Vec<usize> = (0..olds.len()).filter(|&i| olds[i].usable).collect();
        // Stable: equal old events stay in index order.
        crate::sort::sort_by(&mut old, |&a, &b| {
            olds[a].identity().cmp(&olds[b].identity())
        });
        // Per run of equal old events (at its first position): how many
        // of them are paired already.
        let mut taken = vec![0usize; old.len()];
        for (e, n) in new.iter().enumerate().filter(|(_, n)| n.usable) {
            // Equal events pair up in order, as a linear search would.
            let id = n.identity();
            let run = old.partition_point(|&o| olds[o].identity() < id);
            let at = run + taken.get(run).copied().unwrap_or(0);
            if let Some(&o) = old.get(at).filter(|&&o| olds[o].identity() == id) {
                taken[run] += 1;
                map[o] = Some(e);
                counts[e] = self.counts[o];
            }
        }
        self.events = new;
        self.counts = counts;
        self.rebuild_ports();
        let mut cur = std::mem::take(&mut self.cur);
        for s in 0..self.table.slots() as u32 {
            if self.table.seg(s) == Seg::Free {
                continue;
            }
            self.read_attempts(s, &mut cur);
            cur.retain_mut(|a| match map.get(a.event()).copied().flatten() {
                Some(e) => {
                    a.0[0] = e as u16;
                    true
                }
                None => false,
            });
            crate::sort::sort_by_key(&mut cur, Attempt::event);
            self.settle(s, &cur);
        }
        self.cur = cur;
    }

    /// Makes every port of `ranges` a knock port: a frame there that is not
    /// the next step of an attempt resets it, as on a step's own port. For
    /// rotating events, whose template ranges hold the ports of every
    /// window: were frames to the ranges' other ports ignored, a guesser
    /// could sweep one step's range after the other without ever being
    /// reset, and would need the sum of the steps' choices in frames
    /// instead of their product. Kept across reloads.
    pub fn set_guard_ranges(&mut self, ranges: &[(Proto, PortRange)]) {
        if self.guards != ranges {
            self.guards = ranges.to_vec();
            self.rebuild_ports();
        }
    }

    /// Stops `event` from starting new attempts; attempts in progress go
    /// on until they complete or time out. A rotating event's window that
    /// has left the live set drains this way. The next `reload` undoes it.
    pub fn set_draining(&mut self, event: usize) {
        if let Some(ev) = self.events.get_mut(event).filter(|e| e.starts) {
            ev.starts = false;
            self.rebuild_ports();
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
        let key = Key::of(src);
        let Some(s) = self.table.find(self.table.hash(key), key) else {
            return 0;
        };
        let mut list = Vec::new();
        self.read_attempts(s, &mut list);
        list.iter()
            .find(|a| a.event() == event)
            .map_or(0, Attempt::step)
    }

    /// Counters now.
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
            tracked: self.table.len(),
            capacity: self.table.capacity(),
            evictions: self.table.evictions(),
            attempts_dropped: self.attempts_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::flags::{ACK, FIN, PSH, RST, SYN, URG};
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The old seven-argument form, so the rules' tests read as frames.
    #[allow(clippy::too_many_arguments)]
    fn feed(
        m: &mut Matcher,
        src: IpAddr,
        proto: Proto,
        port: u16,
        flags: u8,
        now: u64,
        fired: &mut Vec<Fired>,
        trace: Option<&mut Vec<Trace>>,
    ) {
        let k = Knock {
            src,
            dst: src,
            proto,
            dst_port: port,
            flags,
        };
        let mut out = Output {
            tracing: trace.is_some(),
            ..Output::default()
        };
        m.feed(&k, now, &mut out);
        fired.extend(out.fired);
        if let Some(t) = trace {
            t.extend(out.trace);
        }
    }

    fn expire(m: &mut Matcher, now: u64, trace: Option<&mut Vec<Trace>>) {
        let mut out = Output {
            tracing: trace.is_some(),
            ..Output::default()
        };
        m.expire(now, &mut out);
        assert!(out.fired.is_empty());
        if let Some(t) = trace {
            t.extend(out.trace);
        }
    }

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
            feed(m, src, proto, port, fl, now, &mut fired, None);
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
        let tracked = m.table.check();
        let mut spilled = 0;
        for s in 0..m.table.slots() as u32 {
            let a = m.table.data(s);
            if m.table.seg(s) == Seg::Free {
                continue;
            }
            let mut list = Vec::new();
            m.read_attempts(s, &mut list);
            assert!(!list.is_empty());
            assert!(a.more == NIL || usize::from(a.len) == INLINE);
            spilled += list.len().saturating_sub(INLINE);
            assert!(list.windows(2).all(|w| w[0].event() < w[1].event()));
            for at in &list {
                assert!(m.events[at.event()].usable);
                assert!(at.step() >= 1 && at.step() < m.events[at.event()].steps.len());
            }
            // Protected sources are past step 1 (demoted ones may be too).
            if m.table.seg(s) == Seg::Protected {
                assert!(list.iter().any(|a| a.step() >= 2));
            }
        }
        assert_eq!(tracked.len(), m.table.len());
        // Every spill entry is in some chain or on the free list.
        let mut free = 0;
        let mut e = m.spill_free;
        while e != NIL {
            free += 1;
            e = m.spill[e as usize].next;
        }
        assert_eq!(spilled + free, m.spill.len());
    }

    #[test]
    fn ignored_frames_are_traced_with_the_reason() {
        let gate = FlagSpec::Mask { set: SYN, clear: 0 };
        let mut ev = event("knockd", "tcp:7000:s tcp:8000:s", 10);
        for s in ev.sequence.iter_mut() {
            s.flags = gate;
        }
        ev.tcp_gate = Some(gate);
        let mut m = Matcher::new(&[ev], 16, 0);
        let a = ip("192.0.2.1");
        let (mut fired, mut trace) = (Vec::new(), Vec::new());
        feed(&mut m, a, Proto::Tcp, 7000, SYN, 0, &mut fired, None);
        feed(
            &mut m,
            a,
            Proto::Tcp,
            7000,
            SYN,
            0,
            &mut fired,
            Some(&mut trace),
        );
        feed(
            &mut m,
            a,
            Proto::Tcp,
            8000,
            ACK,
            0,
            &mut fired,
            Some(&mut trace),
        );
        let ignored = |port, flags, why| Trace::Ignored {
            event: 0,
            src: a,
            step: 1,
            by: Seen {
                proto: Proto::Tcp,
                port,
                flags,
            },
            why,
        };
        assert_eq!(
            trace,
            [
                ignored(7000, SYN, Skip::Repeat),
                ignored(8000, ACK, Skip::TcpFlags)
            ]
        );
        assert_eq!(m.progress(a, 0), 1, "neither reset the attempt");
    }

    #[test]
    fn progress_records_only_steps_past_the_first() {
        let ev = [event("e", "tcp:1:s udp:2 tcp:3:fa", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let mut out = Output {
            progress: true,
            ..Output::default()
        };
        for (src, f) in [(a, "tcp:1:s"), (b, "tcp:1:s"), (a, "udp:2"), (a, "tcp:9")] {
            let (proto, dst_port, flags) = frame(f);
            let k = Knock {
                src,
                dst: src,
                proto,
                dst_port,
                flags,
            };
            m.feed(&k, 0, &mut out);
        }
        // No first steps, no reset (tcp:9 is no knock port): only a's step 2.
        assert_eq!(
            out.trace,
            [Trace::Advanced {
                event: 0,
                src: a,
                step: 2
            }]
        );
    }

    #[test]
    fn a_seen_frame_names_protocol_port_and_flags() {
        let seen = |proto, port, flags| Seen { proto, port, flags }.to_string();
        assert_eq!(seen(Proto::Tcp, 543, SYN | ACK), "tcp/543 flags SA");
        assert_eq!(
            seen(Proto::Tcp, 1, FIN | RST | PSH | ACK | ECE),
            "tcp/1 flags FRPA"
        );
        assert_eq!(seen(Proto::Tcp, 2, CWR), "tcp/2 flags none");
        assert_eq!(seen(Proto::Udp, 1234, 0), "udp/1234");
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
        feed(&mut m, a, proto, port, SYN | ECE | PSH, 1, &mut fired, None);
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
            feed(&mut m, a, p, port, fl, 100, &mut fired, Some(&mut trace));
            if i < 2 {
                assert_eq!(m.progress(a, 0), i + 1);
                assert!(fired.is_empty());
            }
        }
        assert_eq!(
            fired,
            vec![Fired {
                event: 0,
                src: a,
                window: None
            }]
        );
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
        feed(&mut m, a, Proto::Udp, 2, 0xff, 0, &mut fired, None); // UDP flags are noise
        feed(
            &mut m,
            a,
            Proto::Tcp,
            3,
            FIN | ACK | ECE | CWR,
            0,
            &mut fired,
            None,
        );
        assert_eq!(
            fired,
            vec![Fired {
                event: 0,
                src: a,
                window: None
            }]
        );
        // Same port, different classic flags: not a retransmission → reset.
        knock(&mut m, a, "tcp:1:s", 0);
        let mut trace = Vec::new();
        feed(
            &mut m,
            a,
            Proto::Tcp,
            1,
            SYN | ACK,
            0,
            &mut fired,
            Some(&mut trace),
        );
        let reset = Trace::Reset {
            event: 0,
            src: a,
            step: 1,
            by: Seen {
                proto: Proto::Tcp,
                port: 1,
                flags: SYN | ACK,
            },
            expected: Some("udp:2".parse().unwrap()),
        };
        assert_eq!(trace, vec![reset]);
        assert_eq!(m.progress(a, 0), 0);
        check(&m);
    }

    #[test]
    fn any_flag_step_retransmission_needs_same_flags() {
        let ev = [event("e", "tcp:1:i tcp:2", 10)];
        let mut m = Matcher::new(&ev, 16, 0);
        let a = ip("192.0.2.1");
        let mut fired = Vec::new();
        feed(&mut m, a, Proto::Tcp, 1, PSH, 0, &mut fired, None);
        feed(&mut m, a, Proto::Tcp, 1, PSH | ECE, 0, &mut fired, None); // retransmission
        assert_eq!(m.progress(a, 0), 1);
        // Other flags: reset, then a fresh first step (`i` takes anything).
        let mut trace = Vec::new();
        feed(
            &mut m,
            a,
            Proto::Tcp,
            1,
            URG,
            0,
            &mut fired,
            Some(&mut trace),
        );
        assert_eq!(
            trace,
            vec![
                Trace::Reset {
                    event: 0,
                    src: a,
                    step: 1,
                    by: Seen {
                        proto: Proto::Tcp,
                        port: 1,
                        flags: URG
                    },
                    expected: Some("tcp:2".parse().unwrap()),
                },
                Trace::Advanced {
                    event: 0,
                    src: a,
                    step: 1
                }
            ]
        );
        feed(&mut m, a, Proto::Tcp, 2, 0, 0, &mut fired, None);
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
        feed(&mut m, a, Proto::Tcp, 1, 0, 0, &mut fired, Some(&mut trace));
        assert_eq!(
            trace,
            vec![
                Trace::Reset {
                    event: 0,
                    src: a,
                    step: 2,
                    by: Seen {
                        proto: Proto::Tcp,
                        port: 1,
                        flags: 0
                    },
                    expected: Some("tcp:3".parse().unwrap()),
                },
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
        feed(
            &mut m,
            a,
            Proto::Tcp,
            3,
            0,
            15_001,
            &mut fired,
            Some(&mut trace),
        );
        assert!(fired.is_empty());
        assert_eq!(trace, vec![Trace::TimedOut { event: 0, src: a }]);
        assert_eq!(m.stats().tracked, 0);

        // A late first step begins a new attempt with a new deadline.
        knock(&mut m, a, "tcp:1", 20_000);
        trace.clear();
        feed(
            &mut m,
            a,
            Proto::Tcp,
            1,
            0,
            25_500,
            &mut fired,
            Some(&mut trace),
        );
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
        expire(&mut m, 5_000, Some(&mut trace));
        assert!(trace.is_empty());
        expire(&mut m, 6_001, Some(&mut trace));
        assert_eq!(trace, vec![Trace::TimedOut { event: 0, src: a }]);
        assert_eq!(m.progress(a, 0), 0);
        assert_eq!(m.progress(a, 1), 1); // `long` still running
        check(&m);
        trace.clear();
        expire(&mut m, 60_001, Some(&mut trace));
        assert_eq!(
            trace,
            vec![
                Trace::TimedOut { event: 1, src: a },
                Trace::TimedOut { event: 0, src: b },
            ]
        );
        assert_eq!(m.stats().tracked, 1);
        expire(&mut m, 63_001, None);
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
            expire(&mut m, t, Some(&mut timed_out));
        }
        assert!(timed_out.is_empty()); // deadline 1000 not passed yet
                                       // Called every millisecond, each call looks at ~1/1000 of the
                                       // table: half a period reclaims about half, a period reclaims all.
        for t in 1001..=1500 {
            expire(&mut m, t, Some(&mut timed_out));
        }
        let half = timed_out.len();
        assert!((400..=600).contains(&half), "{half}");
        assert_eq!(m.stats().tracked, 1000 - half);
        for t in 1501..=2001 {
            expire(&mut m, t, Some(&mut timed_out));
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
        feed(&mut m, s, Proto::Tcp, 1, 0, 0, &mut fired, Some(&mut trace));
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
        feed(&mut m, s, Proto::Tcp, 1, 0, 0, &mut fired, Some(&mut trace));
        assert_eq!(
            fired,
            vec![Fired {
                event: 2,
                src: s,
                window: None
            }]
        );
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
            feed(&mut m, a, p, port, fl, 0, &mut fired, None);
            feed(&mut m, b, p, port, fl, 0, &mut fired, None);
        }
        // v4 and v4-mapped v6 are different sources.
        assert_eq!(
            fired,
            vec![
                Fired {
                    event: 0,
                    src: a,
                    window: None
                },
                Fired {
                    event: 0,
                    src: b,
                    window: None
                }
            ]
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
            feed(
                &mut m,
                src,
                Proto::Tcp,
                (n % 65_536) as u16 | 4,
                0,
                0,
                &mut fired,
                None,
            );
            feed(&mut m, src, Proto::Udp, 2, 0, 0, &mut fired, None);
            feed(&mut m, src, Proto::Tcp, 3, 0, 0, &mut fired, None);
            feed(&mut m, src, Proto::Tcp, 1, SYN, 0, &mut fired, None); // wrong flags
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
        let mut go = |p, port, fl| feed(&mut m, a, p, port, fl, 0, &mut fired, None);
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
            feed(&mut m, a, Proto::Tcp, 1, fl, 0, &mut fired, None);
            assert_eq!(m.progress(a, 0) == 1, ok, "flags {fl:#x}");
            feed(&mut m, a, Proto::Tcp, 9, 0, 0, &mut fired, None); // not a knock port
            feed(&mut m, a, Proto::Tcp, 3, SYN, 0, &mut fired, None); // reset
        }
        // Superset of the flags: no.
        let mut fired = Vec::new();
        for f in [SYN, FIN | RST | ACK | PSH | URG] {
            feed(
                &mut m,
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
            feed(&mut m, v4(n), Proto::Tcp, 1, 0, 1, &mut fired, None);
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
        let (len, cap) = m.table.protected_len();
        assert_eq!(len, cap);
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
            feed(&mut m, spoof(n), Proto::Tcp, 7000, 0, 0, &mut fired, None);
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
                feed(&mut m, knocker, p, port, fl, t, &mut fired, None);
                step += 1;
            }
            feed(&mut m, spoof(n), Proto::Tcp, 7000, 0, t, &mut fired, None);
            n += 1;
            t = n / 100_000; // 100k frames per millisecond
        }
        assert_eq!(step, steps.len());
        assert_eq!(
            fired,
            vec![Fired {
                event: 0,
                src: knocker,
                window: None
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
        expire(&mut m, 10_001, Some(&mut trace));
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
        use crate::knock::table::Slot;
        assert_eq!(std::mem::size_of::<Attempt>(), 10);
        assert_eq!(std::mem::size_of::<Slot<Attempts>>(), 64);
        assert_eq!(std::mem::size_of::<Spill>(), 16);
        let m = Matcher::new(&[event("e", "tcp:1 tcp:2", 1)], DEFAULT_CAPACITY, 0);
        // Index: 8-byte entries, 2 per unit of (power-of-two) capacity.
        assert_eq!(m.table.index_len() * 8, DEFAULT_CAPACITY * 16);
        let per_source = 64 + m.table.index_len() * 8 / DEFAULT_CAPACITY;
        assert_eq!(per_source, 80);
    }

    /// The issue-15 property: what a source costs does not depend on how
    /// many events there are. The same spoofed flood against 1 and 1,000
    /// events (each starting on its own port) leaves the same number of
    /// slots and no spill, and a frame from a tracked source looks at only
    /// its own attempt.
    #[test]
    fn per_source_memory_is_independent_of_the_event_count() {
        let evs = |n: u16| -> Vec<Event> {
            (0..n)
                .map(|i| {
                    event(
                        &format!("e{i}"),
                        &format!("tcp:{} udp:{}", 1000 + i, 3000 + i),
                        30,
                    )
                })
                .collect()
        };
        let mut slots = Vec::new();
        for n in [1u16, 1000] {
            let mut m = Matcher::new(&evs(n), 4096, 0);
            let mut fired = Vec::new();
            for s in 0..20_000u32 {
                let port = 1000 + (s % u32::from(n)) as u16;
                feed(&mut m, v4(s), Proto::Tcp, port, 0, 0, &mut fired, None);
            }
            assert_eq!(m.stats().tracked, 4096);
            assert!(m.spill.is_empty());
            assert!(m.cur.capacity() <= 4 && m.next.capacity() <= 4, "{n}");
            check(&m);
            slots.push(m.table.slots());
        }
        assert_eq!(slots[0], slots[1]);
    }

    #[test]
    fn many_events_on_one_first_step_spill_and_stay_bounded() {
        let evs: Vec<Event> = (0..40)
            .map(|i| event(&format!("e{i}"), &format!("tcp:7 udp:{}", 100 + i), 30))
            .collect();
        let mut m = Matcher::new(&evs, 64, 0);
        let mut fired = Vec::new();
        // One source: 40 attempts, 37 of them spilled.
        feed(&mut m, v4(1), Proto::Tcp, 7, 0, 0, &mut fired, None);
        assert_eq!(m.spill.len(), 37);
        check(&m);
        assert_eq!(knock(&mut m, v4(1), "udp:139", 0), vec![39]);
        check(&m);
        // A small table: the pool has one entry per unit of capacity (8).
        // A source that needs more keeps what fits; the rest is counted,
        // never kept.
        let mut m = Matcher::new(&evs, 8, 0);
        feed(&mut m, v4(1), Proto::Tcp, 7, 0, 0, &mut fired, None);
        assert_eq!(m.spill.len(), 8);
        assert_eq!(m.stats().attempts_dropped, 40 - 3 - 8);
        check(&m);
        // A flood of such sources: the pool never grows, sources evict
        // each other to make room.
        for n in 2..200 {
            feed(&mut m, v4(n), Proto::Tcp, 7, 0, 1, &mut fired, None);
            assert!(m.spill.len() <= 8);
            check(&m);
        }
        assert!(m.stats().attempts_dropped > 0);
        // The newest source still completes what it kept inline.
        assert_eq!(knock(&mut m, v4(199), "udp:100", 2), vec![0]);
        check(&m);
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
                feed(
                    &mut m,
                    src,
                    proto,
                    port,
                    (x >> 24) as u8,
                    now,
                    &mut fired,
                    Some(&mut trace),
                );
                if i % 97 == 0 {
                    expire(&mut m, x, Some(&mut trace));
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
            feed(&mut m, v4(src), proto, port, fl, now, &mut fired, None);
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
                expire(&mut m, now, None);
                model.retain(|_, v| v.2 >= now);
                check(&m);
                let live: std::collections::HashSet<u32> = model.keys().map(|k| k.0).collect();
                assert_eq!(m.stats().tracked, live.len());
            }
        }
        let st = m.stats();
        assert!(st.events.iter().all(|e| e.completed > 10), "{st:?}");
    }

    /// A draining event finishes the attempts it has and starts no more,
    /// while the other events sharing its ports go on as before; a reload
    /// lets it start again.
    #[test]
    fn a_draining_event_finishes_attempts_but_starts_none() {
        let events = [
            event("old", "tcp:7000:s tcp:7001:s tcp:7002:s", 5),
            event("new", "tcp:7000:s tcp:7003:s", 5),
        ];
        let mut m = Matcher::new(&events, 64, 0);
        let (a, b) = (v4(1), v4(2));
        assert_eq!(knock(&mut m, a, "tcp:7000:s tcp:7001:s", 0), []);
        m.set_draining(0);
        assert_eq!(m.progress(a, 0), 2, "progress survives");
        assert_eq!(knock(&mut m, b, "tcp:7000:s", 1), []);
        assert_eq!(m.progress(b, 0), 0, "no new attempt");
        assert_eq!(m.progress(b, 1), 1, "the other event still starts");
        assert_eq!(knock(&mut m, a, "tcp:7002:s", 2), [0]);
        assert_eq!(knock(&mut m, b, "tcp:7001:s tcp:7002:s", 3), []);
        // Still a knock port: a frame there resets the other event.
        assert!(m.is_knock_port(Proto::Tcp, 7002));
        assert_eq!(m.progress(b, 1), 0);
        // A reset drained attempt does not restart either.
        m.set_draining(0);
        assert_eq!(knock(&mut m, a, "tcp:7000:s tcp:7001:s tcp:7002:s", 4), []);
        m.reload(&events, 5);
        assert_eq!(knock(&mut m, a, "tcp:7000:s tcp:7001:s tcp:7002:s", 6), [0]);
        check(&m);
    }

    /// Reload pairs equal events in order and keeps progress and counts
    /// of each, whatever the events around them.
    #[test]
    fn reload_pairs_equal_events_in_order() {
        let a = event("same", "tcp:7000:s tcp:7001:s", 5);
        let b = event("same", "tcp:7000:s tcp:7002:s", 5);
        let mut m = Matcher::new(&[a.clone(), b.clone(), a.clone()], 64, 0);
        let s = v4(9);
        assert_eq!(knock(&mut m, s, "tcp:7000:s", 0), []);
        assert_eq!(
            (m.progress(s, 0), m.progress(s, 1), m.progress(s, 2)),
            (1, 1, 1)
        );
        // b goes, a third copy of a arrives first: the old copies keep their
        // progress in their new places, the new copy starts fresh.
        let c = event("other", "udp:9 udp:10", 5);
        m.reload(&[c, a.clone(), a.clone(), a], 1);
        assert_eq!(
            (0..4).map(|e| m.progress(s, e)).collect::<Vec<_>>(),
            [0, 1, 1, 0]
        );
        let started: Vec<u64> = m.stats().events.iter().map(|e| e.started).collect();
        assert_eq!(started, [0, 1, 1, 0]);
        check(&m);
    }
}
