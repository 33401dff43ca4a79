//! The knock pipeline without its I/O: frames in, door commands out.
//!
//! [`Pipeline`] owns the running configuration, the matchers, the doors and
//! the counters. The daemon hands it every captured frame
//! ([`Pipeline::push`]) and, once the ring is drained,
//! ends the batch ([`Pipeline::finish`]): that matches what is queued, gates
//! one-time sequences, opens doors and says which commands to run and
//! whether the kernel filter must be rebuilt. Timers ([`Pipeline::tick`]),
//! reloads and finished commands ([`Pipeline::settle`]) come in the same
//! way. Nothing here touches a socket, a signal or a thread, so all of it
//! is tested without root; the one file it writes is a one-time sequence
//! file, and the doors journal it is given.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

use crate::capture::admit::{self, Host, Refusals, Verdict};
use crate::capture::ring::FrameMeta;
use crate::config::{self, Config};
use crate::daemon::log::{Level, RateLimit};
use crate::doors::burn::Burn;
use crate::doors::commit::Batch;
use crate::doors::journal::{Journal, JournalEntry};
use crate::doors::kernel::{self, SetBackend};
use crate::doors::runner::{Completion, RunnerStats};
use crate::doors::{CommandRequest, DoorLimits, Doors, Opened};
use crate::knock::matcher::{MatcherStats, Output, Skip, Trace};
use crate::knock::matchset::MatchSet;
use crate::knock::source::HostAddresses;
use crate::knock::template::PortRange;
use crate::knock::{FlagSpec, Knock, Proto};
use crate::wire::Link;
use crate::{debug, error, info, warn};

/// Knocks decoded (and their table entries prefetched) before any of them
/// is matched: enough for their cache misses to overlap.
pub const BATCH: usize = 16;
/// How often lapsed knock attempts are reclaimed.
pub const EXPIRE_EVERY_MS: u64 = 1000;
/// Step lines (and re-arm lines) logged a second at most; a flood past
/// the first step is counted instead, in one line a second.
pub const STEP_LINES_PER_SEC: u32 = 20;

/// A closure `(ifindex, dst) -> mine?` is a host for tests and benches:
/// the destinations it names are its own, it has no VLAN devices and no
/// subnet broadcasts, and it refuses no source as one of its own.
impl<F: Fn(u32, IpAddr) -> bool> HostAddresses for F {
    fn is_own(&self, _addr: IpAddr) -> bool {
        false
    }
    fn is_subnet_broadcast(&self, _addr: std::net::Ipv4Addr) -> bool {
        false
    }
}

impl<F: Fn(u32, IpAddr) -> bool> Host for F {
    #[inline]
    fn is_local(&self, ifindex: u32, dst: IpAddr) -> bool {
        self(ifindex, dst)
    }
    fn vlan_device(&self, _parent: u32, _id: u16, _tpid: u16) -> Option<u32> {
        None
    }
}

/// Counters for the SIGUSR1 stats line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Frames pushed, whatever became of them.
    pub frames: u64,
    /// Frames the decoder rejected.
    pub malformed: u64,
    /// Knocks to an address no event watches.
    pub not_local: u64,
    /// Frames from a link type the decoder does not know.
    pub unsupported_link: u64,
    /// Sequences completed (whether or not a door opened).
    pub fired: u64,
    /// Frames the host would not take, by reason.
    pub refusals: Refusals,
}

/// What a batch leaves the daemon to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[must_use]
pub struct BatchEnd {
    /// Commands to hand to the runner, in order.
    pub requests: Vec<CommandRequest>,
    /// Knock ports changed (a one-time sequence moved on): the kernel
    /// filter must be rebuilt from [`Pipeline::ports`].
    pub rebuild_filter: bool,
}

/// The knock pipeline; see the module docs.
pub struct Pipeline {
    config: Config,
    matcher: MatchSet,
    doors: Doors,
    counters: Counters,
    /// The ring takes every interface (no `-i`): a VLAN device then
    /// delivers its frames again untagged, so tagged copies are skipped.
    capture_all: bool,
    next_expire_ms: u64,
    /// Decoded knocks (and whether addressed to us) awaiting the matcher;
    /// shorter than [`BATCH`] between calls, empty after `finish`.
    queue: Vec<(bool, Knock)>,
    /// The matchers' fires and trace (steps past the first; with `-d`
    /// everything), emptied every batch.
    out: Output,
    requests: Vec<CommandRequest>,
    /// Bounds the info lines a knock makes (steps, re-arms).
    step_lines: RateLimit,
    /// Rotating sequences: completions whose burned window is on its way
    /// to the journal, opened once it is durable (see [`Pipeline::rotate`]).
    held: std::collections::VecDeque<HeldOpen>,
    /// When the rotating events' windows next change (monotonic ms).
    next_rotate_ms: Option<u64>,
    /// The clocks last seen together: (monotonic ms, Unix ms).
    clock: (u64, u64),
}

/// A rotating event's completion waiting for its burn to be durable.
#[derive(Debug)]
struct HeldOpen {
    batch: Batch,
    /// By name: a reload in between may move the event.
    event: String,
    src: IpAddr,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("events", &self.config.events.len())
            .field("counters", &self.counters)
            .field("pending_stops", &self.doors.pending())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline for `config`, tracking at most `capacity` sources per
    /// matcher, with doors capped by `limits` and journaled in `journal`
    /// when there is one (its writer thread is started here).
    pub fn new(
        config: Config,
        capacity: usize,
        journal: Option<Journal>,
        limits: DoorLimits,
        now_ms: u64,
    ) -> io::Result<Pipeline> {
        Ok(Pipeline {
            matcher: MatchSet::new(&config.events, capacity, now_ms),
            doors: Doors::new(journal, limits, now_ms)?,
            config,
            counters: Counters::default(),
            capture_all: false,
            next_expire_ms: now_ms + EXPIRE_EVERY_MS,
            queue: Vec::with_capacity(BATCH),
            out: Output {
                progress: true,
                ..Output::new()
            },
            requests: Vec::new(),
            step_lines: RateLimit::new(STEP_LINES_PER_SEC, now_ms),
            held: Default::default(),
            next_rotate_ms: None,
            clock: (now_ms, 0),
        })
    }

    /// Kernel doors are written through `backend` from now on (the daemon's
    /// netlink client).
    pub fn set_backend(&mut self, backend: Box<dyn SetBackend>) {
        self.doors.set_backend(backend);
    }

    /// Whether kernel doors can be written (a backend was given).
    pub fn has_backend(&self) -> bool {
        self.doors.has_backend()
    }

    /// Looks up every set `config` names through the backend: one message
    /// per unusable set, with its fix (see [`kernel::check_sets`]). Without
    /// a backend every set is unusable.
    pub fn check_sets(&mut self, config: &Config) -> Vec<String> {
        match self.doors.backend_mut() {
            Some(backend) => kernel::check_sets(&config.events, backend),
            None => kernel::sets_named(&config.events)
                .iter()
                .map(|s| format!("{s}: no netlink socket to write kernel doors"))
                .collect(),
        }
    }

    /// Open kernel doors (restored ones included).
    pub fn kernel_doors(&self) -> usize {
        self.doors.kernel_doors()
    }

    /// Logs every step matched, reset, ignored and timed out, at debug
    /// level (the daemon's `-d`).
    pub fn set_trace(&mut self, on: bool) {
        self.out.tracing = on;
    }

    /// Logs each step past the first at info level, `SRC EVENT: step N of
    /// M` (on unless the daemon's `-q`), at most [`STEP_LINES_PER_SEC`].
    pub fn set_step_lines(&mut self, on: bool) {
        self.out.progress = on;
    }

    /// The ring captures on every interface (no `-i`).
    pub fn set_capture_all(&mut self, all: bool) {
        self.capture_all = all;
    }

    /// Takes over the stops a previous run journaled: the overdue ones are
    /// returned to run now, the rest are scheduled.
    pub fn restore(
        &mut self,
        entries: Vec<JournalEntry>,
        now_ms: u64,
        now_unix_ms: u64,
    ) -> Vec<CommandRequest> {
        if !entries.is_empty() {
            info!(
                "journal: {} pending stop(s) from the last run",
                entries.len()
            );
        }
        self.doors
            .restore(entries, now_ms, now_unix_ms, &mut self.requests);
        std::mem::take(&mut self.requests)
    }

    /// Takes one captured frame: decodes it and queues its knock; every
    /// [`BATCH`] knocks the queue is matched. `own` decides whether the
    /// destination is an own address of the receiving interface.
    #[inline]
    pub fn push(&mut self, meta: &FrameMeta, bytes: &[u8], host: &impl Host, now_ms: u64) {
        self.counters.frames += 1;
        let Some(link) = Link::from_hatype(meta.hatype) else {
            self.counters.unsupported_link += 1;
            return;
        };
        // Only frames the host itself would take knock (capture::admit);
        // the rest are counted by reason.
        match admit::frame(meta, bytes, link, self.capture_all, host) {
            Verdict::Knock { knock: k, local } => {
                self.matcher.prefetch(local, &k);
                self.queue.push((local, k));
                if self.queue.len() >= BATCH {
                    self.match_queue(now_ms);
                }
                debug_assert!(self.queue.len() < BATCH);
            }
            Verdict::Ignored => {}
            Verdict::Refused(r) => {
                self.counters.refusals.count(r);
                debug!("frame on ifindex {} refused: {r:?}", meta.ifindex);
            }
            Verdict::Malformed(why) => {
                self.counters.malformed += 1;
                self.counters.refusals.count_malformed(why);
                debug!("malformed frame on ifindex {}: {why}", meta.ifindex);
            }
        }
    }

    /// Feeds the queued knocks to the matchers.
    fn match_queue(&mut self, now_ms: u64) {
        let Pipeline {
            matcher,
            counters,
            queue,
            out,
            ..
        } = self;
        for (local, k) in queue.drain(..) {
            if !matcher.feed(local, &k, now_ms, out) {
                counters.not_local += 1;
            }
        }
    }

    /// Ends a batch of frames: matches what is still queued, logs the
    /// trace, opens a door for every completed sequence (one-time ones
    /// first marked used in their file) and returns what is left to do.
    pub fn finish(&mut self, now_ms: u64, now_unix_ms: u64) -> BatchEnd {
        self.clock = (now_ms, now_unix_ms);
        self.match_queue(now_ms);
        debug_assert!(self.queue.is_empty());
        self.flush_trace(now_ms);
        let mut rebuild_filter = false;
        if !self.out.fired.is_empty() {
            // Taken and put back so the buffer keeps its capacity.
            let mut fired = std::mem::take(&mut self.out.fired);
            let mut one_time_used = Vec::new();
            for f in fired.drain(..) {
                if let Some(w) = f.window {
                    self.rotation_gate(f.event, w, f.src, now_ms, now_unix_ms);
                } else if self.one_time_gate(f.event, f.src, &mut one_time_used) {
                    self.open_door(f.event, f.src, now_ms, now_unix_ms);
                }
            }
            self.out.fired = fired;
            if !one_time_used.is_empty() {
                // The rotated sequences replace the used ones in the
                // matchers; the kernel filter must follow.
                self.matcher.reload(&self.config.events, now_ms);
                rebuild_filter = true;
            }
        }
        BatchEnd {
            requests: std::mem::take(&mut self.requests),
            rebuild_filter,
        }
    }

    /// When [`tick`](Self::tick) (or, with rotating events,
    /// [`rotate`](Self::rotate)) next has work.
    pub fn next_due_ms(&self) -> u64 {
        [self.doors.next_due_ms(), self.next_rotate_ms]
            .into_iter()
            .flatten()
            .fold(self.next_expire_ms, u64::min)
    }

    /// Timers: returns the stops due by `now_ms`, and reclaims lapsed
    /// knock attempts once every [`EXPIRE_EVERY_MS`].
    pub fn tick(&mut self, now_ms: u64) -> Vec<CommandRequest> {
        self.doors.tick(now_ms, &mut self.requests);
        self.release_held(now_ms);
        if now_ms >= self.next_expire_ms {
            self.matcher.expire(now_ms, &mut self.out);
            self.flush_trace(now_ms);
            self.next_expire_ms = now_ms + EXPIRE_EVERY_MS;
        }
        self.roll_step_lines(now_ms);
        std::mem::take(&mut self.requests)
    }

    /// Runs `config` from now on. Progress in unchanged events survives;
    /// open doors keep their stops. The caller rebuilds the kernel filter.
    pub fn reload(&mut self, config: Config, now_ms: u64) {
        self.matcher.reload(&config.events, now_ms);
        self.config = config;
    }

    /// Finished commands move their doors on: a door's stop runs once its
    /// start has ended, a stop is done only when it exits 0, a failed one
    /// is retried later (see [`crate::doors`]). Returns what to run next.
    pub fn settle(&mut self, done: Vec<Completion>, now_ms: u64) -> Vec<CommandRequest> {
        self.doors.finished(done, now_ms, &mut self.requests);
        std::mem::take(&mut self.requests)
    }

    /// Shutdown: every door closes now, or once its running command ends;
    /// returns what to run now.
    pub fn close_all(&mut self) -> Vec<CommandRequest> {
        self.doors.close_all(&mut self.requests);
        std::mem::take(&mut self.requests)
    }

    /// The doors, for the status (`-S`).
    pub fn doors(&self) -> &Doors {
        &self.doors
    }

    /// The doors, for shutdown ([`crate::doors::close_all_and_wait`]).
    pub fn doors_mut(&mut self) -> &mut Doors {
        &mut self.doors
    }

    /// Readable when the journal writer has committed a batch: starts that
    /// waited for it may run ([`Pipeline::tick`] hands them out).
    pub fn wake_fd(&self) -> Option<RawFd> {
        self.doors.wake_fd()
    }

    /// Distinct (protocol, port) pairs some event knocks on now, sorted
    /// (for a rotating event, those of the windows it holds).
    pub fn ports(&self) -> Vec<(Proto, u16)> {
        self.matcher.ports()
    }

    /// What the kernel filter lets through: the knock ports, and the whole
    /// template ranges of rotating events, as disjoint sorted ranges.
    pub fn port_ranges(&self) -> Vec<(Proto, PortRange)> {
        self.matcher.port_ranges()
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Frame counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The matchers' counters, in config order.
    pub fn knock_stats(&self) -> MatcherStats {
        self.matcher.stats(self.config.events.len())
    }

    /// Door stops scheduled and not yet handed out.
    pub fn pending_stops(&self) -> usize {
        self.doors.pending()
    }

    /// `2 event(s): SSH WEB; 5 knock port(s)`, and `; kernel doors in 2
    /// set(s)` when events name sets.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.config.events.iter().map(|e| e.name.as_str()).collect();
        let ports: u32 = self.port_ranges().iter().map(|(_, r)| r.len()).sum();
        let sets = kernel::sets_named(&self.config.events).len();
        format!(
            "{} event(s): {}; {ports} knock port(s){}",
            names.len(),
            names.join(" "),
            match sets {
                0 => String::new(),
                n => format!("; kernel doors in {n} set(s)"),
            }
        )
    }

    /// The SIGUSR1 line after `stats: `, with the capture's kernel drops
    /// and the runner's counters.
    pub fn stats_line(&self, kernel_drops: u64, commands: &RunnerStats) -> String {
        let m = self.knock_stats();
        let c = &self.counters;
        let mut events = String::new();
        for (i, ev) in self.config.events.iter().enumerate() {
            let (started, completed) = m
                .events
                .get(i)
                .map(|e| (e.started, e.completed))
                .unwrap_or((0, 0));
            events.push_str(&format!(" {}={started}/{completed}", ev.name));
        }
        let d = self.doors.stats();
        format!(
            "frames={} drops={kernel_drops} malformed={} not_local={} {} sources={} pending_stops={} doors={} kernel_doors={} refused={} retrying={} stop_failures={} journal_errors={} netlink_errors={} commands={} failed={} knocks(started/completed):{events}",
            c.frames,
            c.malformed,
            c.not_local,
            c.refusals,
            m.tracked,
            self.doors.pending(),
            d.open,
            d.kernel_doors,
            d.refused,
            d.retrying,
            d.stop_failures,
            d.journal_errors,
            d.netlink_errors,
            commands.run,
            commands.failed,
        )
    }

    fn flush_trace(&mut self, now_ms: u64) {
        if self.out.trace.is_empty() {
            return;
        }
        // Taken and put back so the buffer keeps its capacity.
        let mut trace = std::mem::take(&mut self.out.trace);
        for t in trace.drain(..) {
            if let Some((level, line)) = self.trace_log(&t, now_ms) {
                crate::daemon::log::write(level, format_args!("{line}"));
            }
        }
        self.out.trace = trace;
    }

    /// The line a trace entry logs, at its level, if any: a step past the
    /// first at info level within the budget, the rest at debug level.
    fn trace_log(&mut self, t: &Trace, now_ms: u64) -> Option<(Level, String)> {
        if self.out.progress && t.is_progress() {
            self.roll_step_lines(now_ms);
            return self
                .step_lines
                .allow()
                .then(|| (Level::Info, self.trace_line(t)));
        }
        self.out.tracing.then(|| (Level::Debug, self.trace_line(t)))
    }

    /// Once a second: how many step lines the budget held back.
    fn roll_step_lines(&mut self, now_ms: u64) {
        if let Some(n) = self.step_lines.roll(now_ms) {
            warn!(
                "{n} knock step line(s) not logged in the last second: more than \
                 {STEP_LINES_PER_SEC} a second (a flood past the first step, or -q to log none)"
            );
        }
    }

    /// One line for what the matcher did. For an event whose steps are
    /// secret ([`config::Event::withheld`]: rotating, one-time) it names
    /// neither the step expected nor the frame: a frame that broke or
    /// repeated a step may itself be a step of the live sequence (sent out
    /// of order, retransmitted, or from a neighbouring window).
    fn trace_line(&self, t: &Trace) -> String {
        let event = |i: usize| self.config.events.get(i);
        let name = |i: usize| event(i).map(|e| e.name.as_str()).unwrap_or("?");
        let withheld = |i: usize| event(i).and_then(|e| e.withheld());
        let of = |i: usize| match event(i).map(|e| e.step_count()).unwrap_or(0) {
            0 => String::new(),
            n => format!(" of {n}"),
        };
        match *t {
            Trace::Advanced {
                event: e,
                src,
                step,
            } => format!("{src} {}: step {step}{}", name(e), of(e)),
            Trace::Reset {
                event,
                src,
                step,
                by,
                expected,
            } => {
                let name = name(event);
                if let Some(kind) = withheld(event) {
                    return format!(
                        "{src} {name}: reset at step {step}{} ({kind}: frame and expected step \
                         withheld)",
                        of(event)
                    );
                }
                let mut line = format!("{src} {name}: reset at step {step} by {by}");
                if let Some(next) = expected {
                    line += &format!(", expected {}", next.describe());
                }
                line
            }
            Trace::Ignored {
                event,
                src,
                step,
                by,
                why,
            } => {
                let why = match why {
                    Skip::Repeat => "repeats the last step",
                    Skip::TcpFlags => "its flags are not the event's TCPFlags",
                };
                match withheld(event) {
                    Some(kind) => format!(
                        "{src} {}: ignored a frame at step {step}: {why} ({kind}: frame withheld)",
                        name(event)
                    ),
                    None => format!("{src} {}: ignored {by} at step {step}: {why}", name(event)),
                }
            }
            Trace::TimedOut { event, src } => format!("{src} {}: timed out", name(event)),
            Trace::Fired { event, src } => format!("{src} {}: sequence complete", name(event)),
        }
    }

    fn open_door(&mut self, event: usize, src: IpAddr, now_ms: u64, now_unix_ms: u64) {
        let Some(ev) = self.config.events.get(event) else {
            return;
        };
        self.counters.fired += 1;
        match self
            .doors
            .open(ev, src, now_ms, now_unix_ms, &mut self.requests)
        {
            Opened::Opened => info!("{src} {}: knock complete, door opened", ev.name),
            // A source may complete again and again: bounded with the steps.
            Opened::Rearmed if self.step_lines.allow() => info!(
                "{src} {}: knock complete, door already open: stop re-armed",
                ev.name
            ),
            Opened::Rearmed => {}
            Opened::StartOnly => info!("{src} {}: knock complete, running start command", ev.name),
            Opened::Nothing => info!(
                "{src} {}: knock complete, no command for this address family",
                ev.name
            ),
            // Logged by the doors, at most once a second.
            Opened::Refused(_) => {}
        }
    }

    // ---- Rotating sequences (issue 17).

    /// Follows the wall clock for rotating events: monotonic `now_ms` is
    /// Unix time `now_unix_ms`. Call it at start and on every timer pass
    /// (it is cheap when no window changes): windows change on time, and a
    /// clock that stepped is followed at the next call. The kernel filter
    /// passes the templates' whole ranges, so it never needs rebuilding.
    pub fn rotate(&mut self, now_ms: u64, now_unix_ms: u64) {
        self.clock = (now_ms, now_unix_ms);
        self.matcher
            .rotate(&self.config.events, now_ms, now_unix_ms);
        self.next_rotate_ms = self.matcher.next_rotation_ms();
    }

    /// Re-applies the burned windows a previous run journaled: those of
    /// rotating events that still have the same window length, from the
    /// window before the current one on. Call before the first frame.
    pub fn restore_burns(&mut self, burns: Vec<Burn>, now_ms: u64, now_unix_ms: u64) {
        let mut applied = 0;
        for b in burns {
            let Some(i) = self.config.events.iter().position(|e| {
                e.name == b.event
                    && e.rotation
                        .as_ref()
                        .is_some_and(|r| r.window.secs() == b.window_secs)
            }) else {
                continue;
            };
            let current = now_unix_ms / 1000 / u64::from(b.window_secs);
            if b.window + 1 >= current
                && self.matcher.burn(&self.config.events, i, b.window, now_ms)
            {
                applied += 1;
            }
        }
        if applied > 0 {
            info!("journal: {applied} spent window(s) of rotating sequences from the last run");
        }
        self.rotate(now_ms, now_unix_ms);
    }

    /// A rotating event's sequence of window `w` completed: the window is
    /// burned (taken out of the matcher, so the same frames from anyone
    /// open nothing any more), and the door opens once the burn is in the
    /// journal, so that a crash cannot bring the sequence back after the
    /// door has opened. A second completion of a burned window opens
    /// nothing.
    fn rotation_gate(&mut self, event: usize, w: u64, src: IpAddr, now_ms: u64, now_unix_ms: u64) {
        let Some(ev) = self.config.events.get(event) else {
            return;
        };
        let Some(secs) = ev.rotation.as_ref().map(|r| r.window.secs()) else {
            return;
        };
        let name = ev.name.clone();
        if !self.matcher.burn(&self.config.events, event, w, now_ms) {
            info!("{src} {name}: knock complete, but its window's sequence is spent: ignored");
            return;
        }
        self.next_rotate_ms = self.matcher.next_rotation_ms();
        let burn = Burn {
            event: name.clone(),
            window_secs: secs,
            window: w,
        };
        match self.doors.journal_burn(burn) {
            Some(batch) => {
                debug!("{src} {name}: window {w} spent; opening once that is journaled");
                self.held.push_back(HeldOpen {
                    batch,
                    event: name,
                    src,
                });
            }
            // No journal: the burn lives in memory only (as the doors' stops).
            None => self.open_door(event, src, now_ms, now_unix_ms),
        }
    }

    /// Opens the doors whose burn the journal has written.
    fn release_held(&mut self, now_ms: u64) {
        let Some(durable) = self.doors.journal_durable() else {
            return;
        };
        // Wall time for the doors' due times, from the clocks last seen
        // together: the held opens waited for a disk write only.
        let (then_ms, then_unix_ms) = self.clock;
        let now_unix_ms = then_unix_ms.saturating_add(now_ms.saturating_sub(then_ms));
        while self.held.front().is_some_and(|h| h.batch <= durable) {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            match self.config.events.iter().position(|e| e.name == h.event) {
                Some(i) => self.open_door(i, h.src, now_ms, now_unix_ms),
                None => info!(
                    "{} {}: event gone in a reload before its door opened: not opened",
                    h.src, h.event
                ),
            }
        }
    }

    // ---- End of rotating sequences.

    /// For a one-time event: marks its sequence used in its file (fsync'ed
    /// before the door opens) and moves to the next; false when the door
    /// must stay shut (already used in this batch, or the file could not be
    /// marked, which also disables the event).
    fn one_time_gate(&mut self, event: usize, src: IpAddr, used: &mut Vec<usize>) -> bool {
        let Some(ev) = self.config.events.get_mut(event) else {
            return false;
        };
        let Some(path) = ev.one_time.clone() else {
            return true;
        };
        if used.contains(&event) {
            info!(
                "{src} {}: one-time sequence already used by an earlier knock: ignored",
                ev.name
            );
            return false;
        }
        used.push(event);
        let tcp = ev.tcp_gate.unwrap_or(FlagSpec::Any);
        match config::onetime::mark_used(&path, tcp, &ev.sequence) {
            Err(e) => {
                error!("{src} {}: {e}; event disabled, door stays shut", ev.name);
                ev.sequence.clear();
                false
            }
            Ok(scan) => {
                match scan.active {
                    Some(next) => {
                        info!(
                            "{}: one-time sequence used; next is line {} of {} ({} left)",
                            ev.name,
                            next.line,
                            path.display(),
                            scan.unused
                        );
                        ev.sequence = next.steps;
                    }
                    None => {
                        warn!(
                            "{}: no unused sequence left in {}: event disabled",
                            ev.name,
                            path.display()
                        );
                        ev.sequence.clear();
                    }
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::segment;
    use crate::doors::runner::{Completion, Outcome};
    use crate::doors::CommandKind;
    use crate::testutil::Scratch;
    use crate::wire::ip_proto;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
    const SYN: u8 = crate::knock::flags::SYN;
    const ACK: u8 = crate::knock::flags::ACK;
    const UNIX_MS: u64 = 1_700_000_000_000;

    const SSH: &str = "<SSH>\n sequence = tcp:7000:s udp:7001 tcp:7002:s\n timeout = 5\n \
        start_command = open %IP%\n stop_command = close %IP%\n command_delay = 30\n</SSH>\n";
    const WEB: &str = "<WEB>\n sequence = tcp:8000:s tcp:8001:s\n timeout = 5\n \
        start_command = web %IP%\n</WEB>\n";

    fn own(_ifindex: u32, addr: IpAddr) -> bool {
        addr == IpAddr::V4(SERVER)
    }

    fn parse(text: &str) -> Config {
        config::parse(text.as_bytes(), "test.conf").unwrap()
    }

    fn pipeline(text: &str) -> Pipeline {
        Pipeline::new(parse(text), 64, None, DoorLimits::default(), 0).unwrap()
    }

    /// A raw IPv4 packet (the framing of a tun or WireGuard link).
    fn ip4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&(20 + l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        // Header checksum: the ones' complement sum of its 16-bit words.
        let sum = p
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        let folded = (folded & 0xffff) + (folded >> 16);
        p[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
        p.extend_from_slice(l4);
        p
    }

    /// One knock frame: TCP with `flags`, or UDP when `flags` is None.
    fn frame(src: &str, dst: Ipv4Addr, port: u16, flags: Option<u8>) -> Vec<u8> {
        let src: Ipv4Addr = src.parse().unwrap();
        let (s, d) = (IpAddr::V4(src), IpAddr::V4(dst));
        match flags {
            Some(f) => ip4(
                src,
                dst,
                ip_proto::TCP,
                &segment::tcp_segment(s, d, 40000, port, 1, f),
            ),
            None => {
                let mut u = vec![0x9c, 0x40];
                u.extend_from_slice(&port.to_be_bytes());
                u.extend_from_slice(&[0, 8, 0, 0]);
                ip4(src, dst, ip_proto::UDP, &u)
            }
        }
    }

    fn meta(hatype: u16, len: usize) -> FrameMeta {
        FrameMeta {
            ifindex: 2,
            hatype,
            pkttype: 0,
            protocol: 0x0800,
            vlan_tci: None,
            vlan_tpid: 0,
            wire_len: len as u32,
            snap_len: len as u32,
            losing: false,
            timestamp: Duration::ZERO,
        }
    }

    fn push(p: &mut Pipeline, bytes: &[u8], now: u64) {
        p.push(
            &meta(crate::wire::hatype::NONE, bytes.len()),
            bytes,
            &own,
            now,
        );
    }

    /// SSH's three knocks from `src` to `dst`.
    fn knock_ssh(p: &mut Pipeline, src: &str, dst: Ipv4Addr, now: u64) {
        push(p, &frame(src, dst, 7000, Some(SYN)), now);
        push(p, &frame(src, dst, 7001, None), now);
        push(p, &frame(src, dst, 7002, Some(SYN)), now);
    }

    fn commands(reqs: &[CommandRequest]) -> Vec<(CommandKind, &str)> {
        reqs.iter().map(|r| (r.kind, r.command.as_str())).collect()
    }

    fn completion(req: &CommandRequest, outcome: Outcome) -> Completion {
        Completion {
            tag: Some(req.id),
            label: format!("{} {} {:?}", req.src, req.event, req.kind),
            outcome,
            duration: Duration::ZERO,
            pid: None,
            output: String::new(),
            discarded: 0,
        }
    }

    /// The runner reports `reqs` as exited with `code`; returns what the
    /// doors ask for next.
    fn ran(p: &mut Pipeline, reqs: &[CommandRequest], code: i32, now: u64) -> Vec<CommandRequest> {
        let done = reqs
            .iter()
            .map(|r| completion(r, Outcome::Exited(code)))
            .collect();
        p.settle(done, now)
    }

    #[test]
    fn a_completed_sequence_opens_the_door_and_its_stop_comes_due() {
        let mut p = pipeline(SSH);
        knock_ssh(&mut p, "10.0.0.1", SERVER, 100);
        let end = p.finish(100, UNIX_MS);
        assert!(!end.rebuild_filter);
        assert_eq!(
            commands(&end.requests),
            [(CommandKind::Start, "open 10.0.0.1")]
        );
        assert_eq!(p.counters().frames, 3);
        assert_eq!(p.counters().fired, 1);
        assert_eq!(p.pending_stops(), 1);
        assert!(ran(&mut p, &end.requests, 0, 150).is_empty());
        assert_eq!(p.next_due_ms(), EXPIRE_EVERY_MS, "expiry comes first");
        // Nothing more until the stop's delay has passed.
        assert!(p.tick(30_099).is_empty());
        assert_eq!(p.next_due_ms().min(30_100), 30_100);
        let due = p.tick(30_100);
        assert_eq!(commands(&due), [(CommandKind::Stop, "close 10.0.0.1")]);
        assert_eq!(p.pending_stops(), 1, "closing until the stop exits 0");
        assert!(ran(&mut p, &due, 0, 30_200).is_empty());
        assert_eq!(p.pending_stops(), 0);
    }

    #[test]
    fn a_stop_never_runs_before_its_start_has_ended() {
        let mut p = pipeline(SSH);
        knock_ssh(&mut p, "10.0.0.1", SERVER, 0);
        let start = p.finish(0, UNIX_MS).requests;
        assert_eq!(commands(&start), [(CommandKind::Start, "open 10.0.0.1")]);
        // The delay passes while the start still runs: no stop yet.
        assert!(p.tick(30_000).is_empty());
        // It ends: the stop follows at once.
        let stop = ran(&mut p, &start, 0, 31_000);
        assert_eq!(commands(&stop), [(CommandKind::Stop, "close 10.0.0.1")]);
    }

    #[test]
    fn a_failing_stop_is_retried_until_it_exits_0() {
        let mut p = pipeline(SSH);
        knock_ssh(&mut p, "10.0.0.1", SERVER, 0);
        let start = p.finish(0, UNIX_MS).requests;
        let _ = ran(&mut p, &start, 0, 10);
        let stop = p.tick(30_000);
        assert_eq!(commands(&stop), [(CommandKind::Stop, "close 10.0.0.1")]);
        assert!(ran(&mut p, &stop, 1, 30_010).is_empty(), "not at once");
        assert_eq!(p.pending_stops(), 1);
        let mut now;
        let again = loop {
            now = p.next_due_ms();
            let due = p.tick(now);
            if !due.is_empty() {
                break due;
            }
            assert!(now < 40_000, "no retry");
        };
        assert_eq!(commands(&again), [(CommandKind::Stop, "close 10.0.0.1")]);
        assert!(now >= 31_000, "retried after a back-off, at {now}");
        let _ = ran(&mut p, &again, 0, now);
        assert_eq!(p.pending_stops(), 0);
    }

    #[test]
    fn frames_for_others_and_broken_frames_open_nothing() {
        let mut p = pipeline(SSH);
        knock_ssh(&mut p, "10.0.0.1", ELSEWHERE, 0);
        let mut bad = frame("10.0.0.1", SERVER, 7000, Some(SYN));
        bad[0] = 0x44; // IHL below the minimum
        push(&mut p, &bad, 0);
        let ok = frame("10.0.0.1", SERVER, 7000, Some(SYN));
        p.push(&meta(0x1234, ok.len()), &ok, &own, 0);
        push(
            &mut p,
            &ip4(SERVER, SERVER, ip_proto::ICMP, &[8, 0, 0, 0]),
            0,
        );
        let end = p.finish(0, UNIX_MS);
        assert_eq!(end, BatchEnd::default());
        let c = p.counters();
        assert_eq!(
            (
                c.frames,
                c.not_local,
                c.malformed,
                c.unsupported_link,
                c.fired
            ),
            (6, 3, 1, 1, 0)
        );
    }

    #[test]
    fn frames_the_host_would_not_take_open_nothing_and_are_counted() {
        let mut p = pipeline(SSH);
        // Another host's link address (promiscuous capture).
        let mut other = meta(crate::wire::hatype::NONE, 0);
        other.pkttype = libc::PACKET_OTHERHOST;
        for port in [7000, 7002] {
            let f = frame("10.0.0.1", SERVER, port, Some(SYN));
            other.wire_len = f.len() as u32;
            other.snap_len = f.len() as u32;
            p.push(&other, &f, &own, 0);
        }
        // A wrong IPv4 header checksum.
        let mut bad = frame("10.0.0.2", SERVER, 7000, Some(SYN));
        bad[10] ^= 0xff;
        push(&mut p, &bad, 0);
        // Sources no host can knock from.
        knock_ssh(&mut p, "127.0.0.1", SERVER, 0);
        knock_ssh(&mut p, "224.0.0.5", SERVER, 0);
        knock_ssh(&mut p, "255.255.255.255", SERVER, 0);
        let end = p.finish(0, UNIX_MS);
        assert!(end.requests.is_empty(), "{end:?}");
        let r = &p.counters().refusals;
        assert_eq!(r.other_host, 2);
        assert_eq!(r.bad_checksum, 1);
        let counted = r.to_string();
        for reason in ["src_loopback=3", "src_multicast=3", "src_broadcast=3"] {
            assert!(counted.contains(reason), "{reason} in {counted}");
        }
        // The same knock from a unicast source of another host opens.
        knock_ssh(&mut p, "10.0.0.3", SERVER, 0);
        assert_eq!(
            commands(&p.finish(0, UNIX_MS).requests),
            [(CommandKind::Start, "open 10.0.0.3")]
        );
    }

    #[test]
    fn the_order_of_frames_survives_batching() {
        // More knocks than one batch, with the real sequence spread over
        // them: each batch is matched before the next frames are.
        let mut p = pipeline(SSH);
        let noise = |p: &mut Pipeline, n: usize| {
            for _ in 0..n {
                let src = format!("10.1.0.{}", p.counters().frames);
                push(p, &frame(&src, SERVER, 7000, Some(SYN)), 0);
            }
        };
        push(&mut p, &frame("10.0.0.1", SERVER, 7000, Some(SYN)), 0);
        noise(&mut p, BATCH + 3);
        push(&mut p, &frame("10.0.0.1", SERVER, 7001, None), 0);
        noise(&mut p, 2 * BATCH);
        push(&mut p, &frame("10.0.0.1", SERVER, 7002, Some(SYN)), 0);
        assert_eq!(p.counters().fired, 0, "doors open only when the batch ends");
        let end = p.finish(0, UNIX_MS);
        assert_eq!(
            commands(&end.requests),
            [(CommandKind::Start, "open 10.0.0.1")]
        );
        assert_eq!(p.knock_stats().events[0].started, 1 + 3 * BATCH as u64 + 3);
    }

    #[test]
    fn a_second_knock_rearms_the_open_door() {
        let mut p = pipeline(SSH);
        knock_ssh(&mut p, "10.0.0.1", SERVER, 0);
        let start = p.finish(0, UNIX_MS).requests;
        assert_eq!(start.len(), 1);
        let _ = ran(&mut p, &start, 0, 100);
        knock_ssh(&mut p, "10.0.0.1", SERVER, 10_000);
        let end = p.finish(10_000, UNIX_MS + 10_000);
        assert!(end.requests.is_empty(), "no second start: {end:?}");
        assert_eq!(p.counters().fired, 2);
        assert_eq!(p.pending_stops(), 1);
        // The stop moved from 30 s to 40 s after the first knock.
        assert!(p.tick(30_000).is_empty());
        assert!(p.tick(39_999).is_empty());
        assert_eq!(
            commands(&p.tick(40_000)),
            [(CommandKind::Stop, "close 10.0.0.1")]
        );
        // Another source gets a door of its own.
        knock_ssh(&mut p, "10.0.0.2", SERVER, 41_000);
        assert_eq!(
            commands(&p.finish(41_000, UNIX_MS).requests),
            [(CommandKind::Start, "open 10.0.0.2")]
        );
    }

    #[test]
    fn lapsed_attempts_are_reclaimed_on_tick() {
        let mut p = pipeline(SSH);
        push(&mut p, &frame("10.0.0.1", SERVER, 7000, Some(SYN)), 0);
        let _ = p.finish(0, UNIX_MS);
        assert_eq!(p.knock_stats().tracked, 1);
        let _ = p.tick(EXPIRE_EVERY_MS);
        assert_eq!(p.knock_stats().tracked, 1, "within its 5 s");
        let mut now = EXPIRE_EVERY_MS;
        while now < 7_000 {
            now = p.next_due_ms();
            assert!(p.tick(now).is_empty());
        }
        assert_eq!(p.knock_stats().tracked, 0);
    }

    /// A knockd config with a one-time event over `lines`, loaded as the
    /// daemon loads it (the first unused line becomes the sequence).
    fn one_time(dir: &Scratch, lines: &str) -> (Pipeline, std::path::PathBuf) {
        let seqs = dir.file("otp.seqs", lines, 0o600);
        let conf = format!(
            "[otp]\n One_Time_Sequences = {}\n Seq_Timeout = 5\n Start_Command = otp %IP%\n",
            seqs.display()
        );
        let path = dir.file("knockd.conf", conf, 0o600);
        let config = config::load(&path).unwrap();
        let p = Pipeline::new(config, 64, None, DoorLimits::default(), 0).unwrap();
        (p, seqs)
    }

    fn tcp_knocks(p: &mut Pipeline, src: &str, ports: &[u16]) {
        for &port in ports {
            push(p, &frame(src, SERVER, port, Some(SYN)), 0);
        }
    }

    #[test]
    fn a_one_time_sequence_opens_once_then_the_next_line_rules() {
        let dir = Scratch::new("pipeline-otp");
        let (mut p, seqs) = one_time(&dir, "7000,7001\n7100,7101\n");
        assert_eq!(p.ports(), [(Proto::Tcp, 7000), (Proto::Tcp, 7001)]);
        tcp_knocks(&mut p, "10.0.0.1", &[7000, 7001]);
        let end = p.finish(0, UNIX_MS);
        assert_eq!(
            commands(&end.requests),
            [(CommandKind::Start, "otp 10.0.0.1")]
        );
        assert!(end.rebuild_filter);
        assert_eq!(std::fs::read(&seqs).unwrap(), b"#000,7001\n7100,7101\n");
        assert_eq!(p.ports(), [(Proto::Tcp, 7100), (Proto::Tcp, 7101)]);
        // The used sequence opens nothing any more.
        tcp_knocks(&mut p, "10.0.0.2", &[7000, 7001]);
        assert_eq!(p.finish(0, UNIX_MS), BatchEnd::default());
        // The next one does, once; then nothing is left.
        tcp_knocks(&mut p, "10.0.0.2", &[7100, 7101]);
        let end = p.finish(0, UNIX_MS);
        assert_eq!(
            commands(&end.requests),
            [(CommandKind::Start, "otp 10.0.0.2")]
        );
        assert!(end.rebuild_filter);
        assert_eq!(std::fs::read(&seqs).unwrap(), b"#000,7001\n#100,7101\n");
        assert!(p.config().events[0].sequence.is_empty(), "event disabled");
        assert!(p.ports().is_empty());
    }

    /// `-d` on a one-time event: the next line is a secret until used,
    /// so a repeat and a reset name neither the frame nor the step.
    #[test]
    fn trace_lines_of_a_one_time_event_name_no_step_of_the_next_line() {
        let dir = Scratch::new("pipeline-otp-trace");
        let (mut p, _) = one_time(&dir, "7000,7001,7002\n");
        p.set_trace(true);
        tcp_knocks(&mut p, "10.0.0.2", &[7000, 7000, 7002]);
        let lines: Vec<String> = logged(&mut p, 0).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            lines,
            [
                "10.0.0.2 otp: step 1 of 3",
                "10.0.0.2 otp: ignored a frame at step 1: repeats the last step \
                 (one-time: frame withheld)",
                "10.0.0.2 otp: reset at step 1 of 3 (one-time: frame and expected step \
                 withheld)",
            ]
        );
        assert!(lines.iter().all(|l| !l.contains("700")), "{lines:?}");
    }

    #[test]
    fn a_one_time_sequence_completed_twice_in_one_batch_opens_once() {
        let dir = Scratch::new("pipeline-otp2");
        let (mut p, seqs) = one_time(&dir, "7000,7001\n7100,7101\n");
        tcp_knocks(&mut p, "10.0.0.1", &[7000, 7001]);
        tcp_knocks(&mut p, "10.0.0.2", &[7000, 7001]);
        let end = p.finish(0, UNIX_MS);
        assert_eq!(
            commands(&end.requests),
            [(CommandKind::Start, "otp 10.0.0.1")]
        );
        assert_eq!(
            p.counters().fired,
            1,
            "the second completion opened nothing"
        );
        assert_eq!(std::fs::read(&seqs).unwrap(), b"#000,7001\n7100,7101\n");
    }

    #[test]
    fn a_one_time_file_that_cannot_be_marked_keeps_the_door_shut() {
        let dir = Scratch::new("pipeline-otp3");
        let (mut p, seqs) = one_time(&dir, "7000,7001\n");
        // Edited behind the daemon's back: the knocked line is gone.
        std::fs::write(&seqs, "7200,7201\n").unwrap();
        tcp_knocks(&mut p, "10.0.0.1", &[7000, 7001]);
        let end = p.finish(0, UNIX_MS);
        assert!(end.requests.is_empty(), "{end:?}");
        assert!(end.rebuild_filter);
        assert!(p.config().events[0].sequence.is_empty(), "event disabled");
        assert_eq!(std::fs::read(&seqs).unwrap(), b"7200,7201\n");
    }

    #[test]
    fn reload_keeps_progress_in_unchanged_events_and_takes_new_ones() {
        let mut p = pipeline(SSH);
        push(&mut p, &frame("10.0.0.1", SERVER, 7000, Some(SYN)), 0);
        push(&mut p, &frame("10.0.0.1", SERVER, 7001, None), 0);
        let _ = p.finish(0, UNIX_MS);
        p.reload(parse(&format!("{SSH}{WEB}")), 100);
        assert_eq!(p.describe(), "2 event(s): SSH WEB; 5 knock port(s)");
        assert!(p.ports().contains(&(Proto::Tcp, 8001)));
        push(&mut p, &frame("10.0.0.1", SERVER, 7002, Some(SYN)), 200);
        tcp_knocks(&mut p, "10.0.0.3", &[8000, 8001]);
        let end = p.finish(200, UNIX_MS);
        assert_eq!(
            commands(&end.requests),
            [
                (CommandKind::Start, "open 10.0.0.1"),
                (CommandKind::Start, "web 10.0.0.3")
            ]
        );
        // A changed sequence starts afresh.
        push(&mut p, &frame("10.0.0.4", SERVER, 7000, Some(SYN)), 300);
        push(&mut p, &frame("10.0.0.4", SERVER, 7001, None), 300);
        let _ = p.finish(300, UNIX_MS);
        p.reload(parse(&SSH.replace("tcp:7002:s", "tcp:7003:s")), 400);
        assert_eq!(p.describe(), "1 event(s): SSH; 3 knock port(s)");
        push(&mut p, &frame("10.0.0.4", SERVER, 7003, Some(SYN)), 500);
        assert!(p.finish(500, UNIX_MS).requests.is_empty());
        // The door opened before the reloads still closes.
        assert_eq!(p.pending_stops(), 1);
    }

    #[test]
    fn trace_lines_name_the_event() {
        let mut p = pipeline(SSH);
        p.set_step_lines(false);
        push(&mut p, &frame("10.0.0.1", SERVER, 7000, Some(SYN)), 0);
        push(&mut p, &frame("10.0.0.1", SERVER, 7001, None), 0);
        p.match_queue(0);
        assert!(p.out.trace.is_empty(), "no trace unless asked for");
        p.set_trace(true);
        push(&mut p, &frame("10.0.0.1", SERVER, 7002, Some(SYN)), 0);
        push(&mut p, &frame("10.0.0.2", SERVER, 7001, None), 0);
        p.match_queue(0);
        let lines: Vec<String> = p.out.trace.iter().map(|t| p.trace_line(t)).collect();
        assert_eq!(
            lines,
            [
                "10.0.0.1 SSH: step 3 of 3",
                "10.0.0.1 SSH: sequence complete"
            ]
        );
        let timed_out = Trace::TimedOut {
            event: 0,
            src: "10.0.0.9".parse().unwrap(),
        };
        assert_eq!(p.trace_line(&timed_out), "10.0.0.9 SSH: timed out");
        let _ = p.finish(0, UNIX_MS);
        assert!(p.out.trace.is_empty(), "flushed to the log");
    }

    /// The lines the queued trace logs, at their levels.
    fn logged(p: &mut Pipeline, now_ms: u64) -> Vec<(Level, String)> {
        p.match_queue(now_ms);
        let trace = std::mem::take(&mut p.out.trace);
        trace
            .iter()
            .filter_map(|t| p.trace_log(t, now_ms))
            .collect()
    }

    #[test]
    fn steps_past_the_first_are_info_lines_resets_name_the_frame_with_d() {
        let mut p = pipeline(SSH);
        // By default: a step past the first, nothing else.
        push(&mut p, &frame("10.0.0.2", SERVER, 7000, Some(SYN)), 0);
        push(&mut p, &frame("10.0.0.2", SERVER, 7001, None), 0);
        push(&mut p, &frame("10.0.0.2", SERVER, 7000, Some(SYN | ACK)), 0);
        assert_eq!(
            logged(&mut p, 0),
            [(Level::Info, "10.0.0.2 SSH: step 2 of 3".to_string())]
        );
        // -d: the first step, the reset naming the frame and the step it
        // waited for, a repeat let pass.
        p.set_trace(true);
        push(&mut p, &frame("10.0.0.2", SERVER, 7000, Some(SYN)), 0);
        push(&mut p, &frame("10.0.0.2", SERVER, 7001, None), 0);
        push(&mut p, &frame("10.0.0.2", SERVER, 7001, None), 0);
        push(&mut p, &frame("10.0.0.2", SERVER, 7000, Some(SYN | ACK)), 0);
        let debug = |s: &str| (Level::Debug, s.to_string());
        assert_eq!(
            logged(&mut p, 0),
            [
                debug("10.0.0.2 SSH: step 1 of 3"),
                (Level::Info, "10.0.0.2 SSH: step 2 of 3".to_string()),
                debug("10.0.0.2 SSH: ignored udp/7001 at step 2: repeats the last step"),
                debug(
                    "10.0.0.2 SSH: reset at step 2 by tcp/7000 flags SA, expected tcp/7002 \
                     with exactly SYN"
                ),
            ]
        );
    }

    #[test]
    fn a_flood_past_the_first_step_logs_its_share_and_a_count() {
        let mut p = pipeline(SSH);
        let mut now = 5_000;
        let mut info = 0;
        for second in 0..3 {
            for i in 0..200u32 {
                let src = format!("10.{second}.{}.{}", i / 250, i % 250 + 1);
                push(&mut p, &frame(&src, SERVER, 7000, Some(SYN)), now);
                push(&mut p, &frame(&src, SERVER, 7001, None), now);
            }
            info += logged(&mut p, now)
                .iter()
                .filter(|(l, _)| *l == Level::Info)
                .count();
            assert_eq!(
                p.step_lines.suppressed(),
                200 - u64::from(STEP_LINES_PER_SEC)
            );
            now += 1_000;
            // The next second starts with the count (logged by tick).
            assert_eq!(p.step_lines.roll(now), Some(180));
        }
        assert_eq!(info, 3 * STEP_LINES_PER_SEC as usize);
    }

    #[test]
    fn stats_line() {
        let mut p = pipeline(&format!("{SSH}{WEB}"));
        knock_ssh(&mut p, "10.0.0.1", SERVER, 0);
        push(&mut p, &frame("10.0.0.2", SERVER, 8000, Some(SYN)), 0);
        push(&mut p, &frame("10.0.0.2", ELSEWHERE, 8000, Some(SYN)), 0);
        let _ = p.finish(0, UNIX_MS);
        let runner = RunnerStats {
            run: 4,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(
            p.stats_line(7, &runner),
            "frames=5 drops=7 malformed=0 not_local=1 other_host=0 link_broadcast=0 \
             link_multicast=0 other_pkttype=0 vlan=0 fragment=0 bad_checksum=0 bad_length=0 \
             src_unspecified=0 src_loopback=0 src_multicast=0 src_broadcast=0 src_own=0 \
             src_mapped=0 sources=1 pending_stops=1 \
             doors=1 kernel_doors=0 refused=0 retrying=0 stop_failures=0 journal_errors=0 \
             netlink_errors=0 commands=4 failed=1 knocks(started/completed): SSH=1/1 WEB=1/0"
        );
    }

    /// A pipeline journaling into `dir` with one door opened (its start
    /// ran) and, at shutdown, closing: returns the stop to run.
    fn open_and_close(dir: &Scratch) -> (Pipeline, CommandRequest) {
        let (journal, _, _) = Journal::open(&dir.0).unwrap();
        let mut p = Pipeline::new(parse(SSH), 64, Some(journal), DoorLimits::default(), 0).unwrap();
        knock_ssh(&mut p, "10.0.0.1", SERVER, 0);
        let _ = p.finish(0, UNIX_MS);
        // The start waits for its stop to be on disk.
        assert!(p.doors_mut().sync_journal(Duration::from_secs(5)));
        let start = p.tick(1);
        assert_eq!(commands(&start), [(CommandKind::Start, "open 10.0.0.1")]);
        let _ = ran(&mut p, &start, 0, 2);
        let stops = p.close_all();
        assert_eq!(commands(&stops), [(CommandKind::Stop, "close 10.0.0.1")]);
        (p, stops[0].clone())
    }

    /// Stops left in the journal once its writer has caught up.
    fn journaled(p: &mut Pipeline, dir: &Scratch) -> usize {
        assert!(p.doors_mut().sync_journal(Duration::from_secs(5)));
        Journal::open(&dir.0).unwrap().1.len()
    }

    #[test]
    fn only_a_stop_that_exits_0_leaves_the_journal() {
        for outcome in [
            Outcome::Cancelled,
            Outcome::SpawnFailed("fork".into()),
            Outcome::Lost("x".into()),
            Outcome::TimedOut,
            Outcome::Terminated,
            Outcome::Exited(1),
            Outcome::Signaled(9),
        ] {
            let dir = Scratch::new("settle");
            let (mut p, stop) = open_and_close(&dir);
            let _ = p.settle(vec![completion(&stop, outcome.clone())], 10);
            p.doors_mut().finish(Duration::from_secs(5));
            assert_eq!(
                journaled(&mut p, &dir),
                1,
                "{outcome:?} must stay journaled"
            );
        }
        let dir = Scratch::new("settle");
        let (mut p, stop) = open_and_close(&dir);
        let _ = p.settle(vec![completion(&stop, Outcome::Exited(0))], 10);
        p.doors_mut().finish(Duration::from_secs(5));
        assert_eq!(journaled(&mut p, &dir), 0, "it closed: its entry must go");
    }

    #[test]
    fn journaled_stops_come_back_after_a_restart() {
        let dir = Scratch::new("restore");
        let (mut p, _) = open_and_close(&dir);
        p.doors_mut().finish(Duration::from_secs(5));
        drop(p);
        let (journal, entries, _) = Journal::open(&dir.0).unwrap();
        let mut p = Pipeline::new(parse(SSH), 64, Some(journal), DoorLimits::default(), 0).unwrap();
        // Ten seconds later by the wall clock: 20 s of the 30 are left.
        assert!(p.restore(entries, 0, UNIX_MS + 10_000).is_empty());
        assert!(p.tick(19_999).is_empty());
        assert_eq!(
            commands(&p.tick(20_000)),
            [(CommandKind::Stop, "close 10.0.0.1")]
        );
    }

    mod rotating {
        use super::*;
        use crate::crypto::key::Key;
        use crate::knock::Step;

        /// Start-only (no stop), so nothing but the burn holds the start.
        const ROT: &str = "<ROT>\n sequence = udp:20000-29999 udp:20000-29999 udp:20000-29999\n \
            key_file = rot.key\n window = 10\n timeout = 5\n start_command = open %IP%\n</ROT>\n";

        fn config() -> Config {
            let mut c = parse(ROT);
            c.events[0].rotation.as_mut().unwrap().key = Some(Key::new(&[9; 32]).unwrap());
            c
        }

        /// The real wall clock: the journal forgets burns of past windows.
        fn unix_ms() -> u64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        }

        fn seq(c: &Config, unix_ms: u64) -> Vec<Step> {
            let r = c.events[0].rotation.as_ref().unwrap();
            r.sequence("ROT", unix_ms / 1000 / 10).unwrap()
        }

        fn knock(p: &mut Pipeline, src: &str, steps: &[Step], now: u64) {
            for s in steps {
                push(p, &frame(src, SERVER, s.port, None), now);
            }
        }

        fn with_journal(dir: &Scratch, now: u64, unix: u64) -> Pipeline {
            let (journal, _, _) = Journal::open(&dir.0).unwrap();
            let burns = journal.burns();
            let mut p =
                Pipeline::new(config(), 64, Some(journal), DoorLimits::default(), now).unwrap();
            p.restore_burns(burns, now, unix);
            p
        }

        #[test]
        fn the_door_opens_only_once_the_spent_window_is_journaled() {
            let dir = Scratch::new("rot-journal");
            let unix = unix_ms();
            let mut p = with_journal(&dir, 0, unix);
            let c = config();
            knock(&mut p, "10.0.0.1", &seq(&c, unix), 1);
            let end = p.finish(1, unix);
            assert!(
                end.requests.is_empty(),
                "no start before the burn is durable"
            );
            assert!(p.doors_mut().sync_journal(Duration::from_secs(5)));
            // The burn is on disk before the start is handed out.
            let text =
                std::fs::read_to_string(dir.0.join(crate::doors::journal::FILE_NAME)).unwrap();
            let w = unix / 10_000;
            assert!(text.starts_with(&format!("burn 10 {w} 3:ROT ")), "{text}");
            let start = p.tick(2);
            assert_eq!(commands(&start), [(CommandKind::Start, "open 10.0.0.1")]);
            // The same frames, from anyone, open nothing now.
            knock(&mut p, "10.0.0.2", &seq(&c, unix), 3);
            knock(&mut p, "10.0.0.1", &seq(&c, unix), 3);
            assert!(p.finish(3, unix).requests.is_empty());
            assert!(p.doors_mut().sync_journal(Duration::from_secs(5)));
            assert!(p.tick(4).is_empty());
            assert_eq!(p.counters().fired, 1);
            // Nor after a restart.
            p.doors_mut().finish(Duration::from_secs(5));
            drop(p);
            let mut p = with_journal(&dir, 0, unix + 1);
            knock(&mut p, "10.0.0.3", &seq(&c, unix), 1);
            assert!(p.finish(1, unix + 1).requests.is_empty());
            assert!(p.doors_mut().sync_journal(Duration::from_secs(5)));
            assert!(p.tick(2).is_empty());
            // The next window's sequence still opens.
            let next = seq(&c, unix + 10_000);
            knock(&mut p, "10.0.0.3", &next, 3);
            let _ = p.finish(3, unix + 1);
            assert!(p.doors_mut().sync_journal(Duration::from_secs(5)));
            assert_eq!(
                commands(&p.tick(4)),
                [(CommandKind::Start, "open 10.0.0.3")]
            );
        }

        #[test]
        fn two_completions_in_one_batch_open_once() {
            let unix = unix_ms();
            let mut p = Pipeline::new(config(), 64, None, DoorLimits::default(), 0).unwrap();
            p.rotate(0, unix);
            let c = config();
            knock(&mut p, "10.0.0.1", &seq(&c, unix), 1);
            knock(&mut p, "10.0.0.2", &seq(&c, unix), 1);
            // Without a journal the door opens at once.
            let end = p.finish(1, unix);
            assert_eq!(
                commands(&end.requests),
                [(CommandKind::Start, "open 10.0.0.1")]
            );
        }

        #[test]
        fn windows_follow_the_clock_and_the_filter_keeps_the_ranges() {
            let unix = 1_700_000_009_500;
            let mut p = Pipeline::new(config(), 64, None, DoorLimits::default(), 0).unwrap();
            p.rotate(0, unix);
            let c = config();
            let ranges = p.port_ranges();
            assert_eq!(ranges.len(), 1);
            assert_eq!(ranges[0].1.to_string(), "20000-29999");
            assert!(
                p.describe().ends_with("; 10000 knock port(s)"),
                "{}",
                p.describe()
            );
            // The window changes at the next multiple of 10 s, in 500 ms.
            assert_eq!(p.next_due_ms(), 500);
            // Two windows later by the wall clock (a step): the old sequence
            // is dead, the new one opens, the filter is the same.
            let later = unix + 20_000;
            p.rotate(5, later);
            knock(&mut p, "10.0.0.1", &seq(&c, unix), 6);
            assert!(p.finish(6, later).requests.is_empty());
            knock(&mut p, "10.0.0.1", &seq(&c, later), 7);
            assert_eq!(p.finish(7, later).requests.len(), 1);
            assert_eq!(p.port_ranges(), ranges);
        }

        /// `-d` on a rotating event: a step, a repeat and a reset by a
        /// step sent out of order name no port of a live window, only the
        /// step counts; the fixed event's reset test is
        /// `steps_past_the_first_are_info_lines_resets_name_the_frame_with_d`.
        #[test]
        fn trace_lines_name_no_port_of_a_live_window() {
            let unix = 1_700_000_005_000;
            let mut p = Pipeline::new(config(), 64, None, DoorLimits::default(), 0).unwrap();
            p.rotate(0, unix);
            p.set_trace(true);
            let c = config();
            let live = seq(&c, unix);
            knock(&mut p, "10.0.0.2", &[live[0], live[0], live[2]], 1);
            let lines: Vec<String> = logged(&mut p, 1).into_iter().map(|(_, l)| l).collect();
            assert_eq!(
                lines,
                [
                    "10.0.0.2 ROT: step 1 of 3",
                    "10.0.0.2 ROT: ignored a frame at step 1: repeats the last step \
                     (rotating: frame withheld)",
                    "10.0.0.2 ROT: reset at step 1 of 3 (rotating: frame and expected step \
                     withheld)",
                ]
            );
            for w in [unix - 10_000, unix, unix + 10_000] {
                for step in seq(&c, w) {
                    let port = step.port.to_string();
                    assert!(
                        lines.iter().all(|l| !l.contains(&port)),
                        "port {port} of window {w} logged: {lines:?}"
                    );
                }
            }
        }
    }
}
