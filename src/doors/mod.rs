//! Doors: what happens after a knock sequence completes.
//!
//! Each door — one event for one source address — is a state machine
//! ([`door`]) that runs its open action, then its close action when due,
//! never both at once and never out of order, retrying a close that fails.
//! [`Doors`] holds them: it keeps their timers on a wheel, their pending
//! closes in the journal (written off the capture thread, [`commit`]), caps
//! how many may be open, writes kernel doors' set elements itself (over
//! netlink, [`kernel`], synchronously: microseconds) and turns the rest of
//! their decisions into [`CommandRequest`]s. The runner executes those and
//! hands the completions back through [`Doors::finished`].
//!
//! Invariants:
//! - a door's close is in the journal before its open runs (unless the
//!   journal cannot be written, which is logged; the close then lives in
//!   memory only);
//! - every door that may be open has a pending close until a close exits 0;
//! - open doors, and so commands queued or running, never exceed the caps
//!   ([`DoorLimits`]): at most one command per door is in flight;
//! - doors restored from the journal after a restart are not re-armed by a
//!   new knock (the firewall may have been flushed by a reboot), so the knock
//!   gets a door of its own and the old close still runs at its time;
//! - a kernel door's elements carry its delay as their timeout: the kernel
//!   closes it at its due time whatever happens to the daemon, which only
//!   removes them itself when it closes doors early (shutdown). The journal
//!   is then an index of what the kernel will close: a restarted daemon
//!   forgets the entries past their time (nothing to re-add or remove) and
//!   keeps the others as open doors.

pub mod burn;
pub mod commit;
pub mod door;
pub mod journal;
pub mod kernel;
pub mod runner;
pub mod status;
pub mod wheel;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::config::sets::{AddrFamily, SetTarget};
use crate::config::{expand, Event};
use crate::doors::commit::{Batch, JournalWriter};
use crate::doors::door::{Do, Door, Due, Ended, KernelAction, Phase, SetOp};
use crate::doors::journal::{Journal, JournalEntry, JournalId, JournalOp};
use crate::doors::kernel::{KernelError, Reason, SetBackend};
use crate::doors::runner::{Completion, Request, Runner};
use crate::doors::wheel::Wheel;

pub use crate::doors::door::Action;

/// Used when an event has a stop command but no `command_delay`.
pub const DEFAULT_COMMAND_DELAY: u32 = 10;
/// Default cap on doors open at once (`-n`).
pub const DEFAULT_MAX_DOORS: usize = 4_096;
/// Default cap on doors open at once for one source address (`-N`).
pub const DEFAULT_MAX_PER_SOURCE: usize = 32;
/// At most one "door cap reached" line per this many milliseconds; the
/// knocks refused in between are counted in the next.
const REFUSAL_LOG_EVERY_MS: u64 = 1_000;

/// Which of a door's actions a request carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Opens the door.
    Start,
    /// Closes it.
    Stop,
}

/// A command for the runner to run. (A kernel door's set operations are
/// not requests: [`Doors`] carries them out itself.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// Opening or closing.
    pub kind: CommandKind,
    /// The event's name (for the log).
    pub event: String,
    /// The knocking address (for the log).
    pub src: IpAddr,
    /// `/bin/sh -c` text, already expanded.
    pub command: String,
    /// The door it belongs to; hand it back with the completion.
    pub id: JournalId,
}

/// Caps on open doors. A door counts from its knock until its close has
/// succeeded (a close being retried still counts); a start-only command
/// counts while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorLimits {
    /// Doors open at once, all events and sources together.
    pub max_doors: usize,
    /// Doors open at once for one source address.
    pub max_per_source: usize,
}

impl Default for DoorLimits {
    fn default() -> DoorLimits {
        DoorLimits {
            max_doors: DEFAULT_MAX_DOORS,
            max_per_source: DEFAULT_MAX_PER_SOURCE,
        }
    }
}

/// Which cap refused a knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `-n`: doors open at once.
    Total(usize),
    /// The event's `max_doors`.
    Event(usize),
    /// `-N`: doors open at once for one source.
    Source(usize),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Total(n) => write!(f, "{n} doors open, the cap (-n)"),
            Refusal::Event(n) => write!(f, "{n} doors open for this event, its max_doors"),
            Refusal::Source(n) => write!(f, "{n} doors open for this source, the cap (-N)"),
        }
    }
}

/// What a completed knock did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new door: its start runs once its stop is journaled.
    Opened,
    /// The door was already open (or opening, or closing): its stop was
    /// pushed out, and no second start runs while one is running.
    Rearmed,
    /// The event has no stop command and no set: Start emitted, nothing
    /// scheduled.
    StartOnly,
    /// The event runs nothing for this address family (a knockd event with
    /// an empty or absent command): nothing emitted.
    Nothing,
    /// A cap was reached: nothing runs (logged, at most once a second, and
    /// counted).
    Refused(Refusal),
}

/// Counters for the stats line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DoorStats {
    /// Doors open, opening, closing or retrying, and start-only commands
    /// running.
    pub open: usize,
    /// Doors whose close failed and waits for its next attempt.
    pub retrying: usize,
    /// Knocks refused at a cap.
    pub refused: u64,
    /// Close attempts that failed.
    pub stop_failures: u64,
    /// Journal batches that could not be written.
    pub journal_errors: u64,
    /// Set operations of kernel doors that failed (each logged with the set
    /// and the reason).
    pub netlink_errors: u64,
    /// Open doors that are kernel doors (a subset of `open`).
    pub kernel_doors: usize,
}

/// A start-only command while it runs (it counts towards the caps).
struct StartOnly {
    event: String,
    src: IpAddr,
}

/// Every door, keyed by id.
pub struct Doors {
    limits: DoorLimits,
    doors: HashMap<JournalId, Door>,
    /// Doors a knock can re-arm: (event, source) → id.
    keyed: HashMap<(String, IpAddr), JournalId>,
    start_only: HashMap<JournalId, StartOnly>,
    per_event: HashMap<String, usize>,
    per_source: HashMap<IpAddr, usize>,
    wheel: Wheel<JournalId>,
    journal: Option<JournalWriter>,
    /// Doors waiting for the batch holding their close, in push order.
    awaiting: std::collections::VecDeque<(Batch, JournalId)>,
    /// Kernel doors closed by the kernel alone, waiting for the batch
    /// holding their record to be written (not synced), in push order.
    awaiting_written: std::collections::VecDeque<(Batch, JournalId)>,
    /// The batch the last push went into.
    last_batch: Batch,
    next_id: u64,
    /// `close_all` was called: nothing opens, failed closes are not retried.
    stopping: bool,
    /// Writes kernel doors; none until the daemon gives it one.
    sets: Option<Box<dyn SetBackend>>,
    netlink_errors: u64,
    refused: u64,
    stop_failures: u64,
    refused_unlogged: u64,
    refused_logged_ms: Option<u64>,
}

impl std::fmt::Debug for Doors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doors")
            .field("limits", &self.limits)
            .field("doors", &self.doors.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Doors {
    /// Doors with `journal` (moved to a writer thread) or none, under `limits`.
    pub fn new(
        journal: Option<Journal>,
        limits: DoorLimits,
        now_ms: u64,
    ) -> std::io::Result<Doors> {
        let journal = journal.map(JournalWriter::spawn).transpose()?;
        let next_id = journal.as_ref().map_or(1, |j| j.first_free_id().get());
        Ok(Doors {
            limits,
            doors: HashMap::new(),
            keyed: HashMap::new(),
            start_only: HashMap::new(),
            per_event: HashMap::new(),
            per_source: HashMap::new(),
            wheel: Wheel::new(now_ms),
            journal,
            awaiting: Default::default(),
            awaiting_written: Default::default(),
            last_batch: 0,
            next_id,
            stopping: false,
            sets: None,
            netlink_errors: 0,
            refused: 0,
            stop_failures: 0,
            refused_unlogged: 0,
            refused_logged_ms: None,
        })
    }

    /// Writes kernel doors through `backend` from now on.
    pub fn set_backend(&mut self, backend: Box<dyn SetBackend>) {
        self.sets = Some(backend);
    }

    /// Whether kernel doors can be written.
    pub fn has_backend(&self) -> bool {
        self.sets.is_some()
    }

    /// What writes kernel doors, if there is one (for the daemon's checks
    /// at reload).
    pub fn backend_mut(&mut self) -> Option<&mut (dyn SetBackend + 'static)> {
        self.sets.as_deref_mut()
    }

    /// Takes over the stops a previous run left in the journal: overdue ones
    /// run now, the rest are scheduled by their wall-clock due time
    /// translated to the monotonic clock (never later than their delay).
    /// A kernel door past its time was closed by the kernel: it is
    /// forgotten (its stop command, if it has one, runs now); the others
    /// stay open doors, removed at shutdown or left to expire.
    pub fn restore(
        &mut self,
        entries: Vec<JournalEntry>,
        now_ms: u64,
        now_unix_ms: u64,
        out: &mut Vec<CommandRequest>,
    ) {
        for e in entries {
            // Capped: a wall clock set wrong (ahead) when the door opened
            // and corrected since must not keep it open longer.
            let wait_ms = e.due_unix_ms.saturating_sub(now_unix_ms).min(e.delay_ms);
            let overdue = e.due_unix_ms <= now_unix_ms;
            let close = if e.sets.is_empty() {
                Action::Shell(e.stop_command)
            } else {
                Action::Kernel(KernelAction {
                    op: SetOp::Remove,
                    sets: e.sets,
                    then: (!e.stop_command.is_empty()).then_some(e.stop_command),
                })
            };
            let door = Door {
                id: e.id,
                event: e.event,
                src: e.src,
                open: None,
                close,
                phase: Phase::Open,
                due: Due {
                    ms: now_ms.saturating_add(wait_ms),
                    unix_ms: e.due_unix_ms,
                },
                delay_ms: e.delay_ms,
                retry_at_ms: 0,
                failures: 0,
                reopen: None,
                started: true,
                timer: None,
                kernel_part: None,
            };
            self.next_id = self.next_id.max(e.id.get().saturating_add(1));
            let sets = door
                .close
                .sets()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>();
            match (overdue, sets.is_empty(), door.close.text().is_empty()) {
                (true, true, _) | (true, false, false) => crate::info!(
                    "door {} for {}: stop overdue from before restart, running now",
                    door.event,
                    door.src
                ),
                (true, false, true) => crate::info!(
                    "door {} for {}: closed by the kernel while the daemon was down \
                     (its time is past); forgotten",
                    door.event,
                    door.src
                ),
                (false, false, _) => crate::info!(
                    "door {} for {}: open from before the restart in {} for {} s more",
                    door.event,
                    door.src,
                    sets.join(" and "),
                    wait_ms.div_ceil(1000)
                ),
                (false, true, _) => {}
            }
            self.insert(door);
            self.step(e.id, |d| d.timer(now_ms), now_ms, out);
        }
    }

    /// A knock for `event` from `src` completed.
    pub fn open(
        &mut self,
        event: &Event,
        src: IpAddr,
        now_ms: u64,
        now_unix_ms: u64,
        out: &mut Vec<CommandRequest>,
    ) -> Opened {
        if self.stopping {
            return Opened::Nothing;
        }
        let sets = event.sets.for_family(AddrFamily::of(src));
        let start = event.start_for(src).map(|c| expand(c, src));
        let stop = event.stop_for(src).map(|c| expand(c, src));
        let (open, close) = if !sets.is_empty() {
            // A kernel door: the address in the sets (then start_command),
            // closed by the kernel at its time (with stop_command).
            let kernel = |op, sets, then| Action::Kernel(KernelAction { op, sets, then });
            (
                kernel(SetOp::Add, sets.clone(), start),
                kernel(SetOp::Remove, sets, stop),
            )
        } else {
            // As knockd: no start command, no stop either.
            let Some(start) = start else {
                return Opened::Nothing;
            };
            let Some(stop) = stop else {
                if let Some(why) = self.refusal(event, src) {
                    return self.refuse(event, src, why, now_ms);
                }
                let id = self.allocate_id();
                self.start_only.insert(
                    id,
                    StartOnly {
                        event: event.name.clone(),
                        src,
                    },
                );
                self.count(&event.name, src, 1);
                out.push(CommandRequest {
                    kind: CommandKind::Start,
                    event: event.name.clone(),
                    src,
                    command: start,
                    id,
                });
                return Opened::StartOnly;
            };
            (Action::Shell(start), Action::Shell(stop))
        };
        let delay_ms = u64::from(event.command_delay.unwrap_or(DEFAULT_COMMAND_DELAY)) * 1000;
        let due = Due {
            ms: now_ms.saturating_add(delay_ms),
            unix_ms: now_unix_ms.saturating_add(delay_ms),
        };
        let key = (event.name.clone(), src);
        if let Some(&id) = self.keyed.get(&key) {
            match self.doors.get_mut(&id) {
                // Re-armed only if it does what this knock asks: one opened
                // before a reload changed the event's commands or sets
                // keeps its own, closes at its own time, and this knock
                // gets a door of its own (new sets, new commands).
                Some(door) if door.open.as_ref() == Some(&open) && door.close == close => {
                    door.delay_ms = delay_ms;
                    self.step(id, |d| d.knock(due), now_ms, out);
                    self.journal_add(id, false);
                    return Opened::Rearmed;
                }
                _ => {
                    self.keyed.remove(&key);
                }
            }
        }
        if let Some(why) = self.refusal(event, src) {
            return self.refuse(event, src, why, now_ms);
        }
        let id = self.allocate_id();
        let door = Door {
            id,
            event: event.name.clone(),
            src,
            open: Some(open),
            close,
            phase: Phase::Journaling,
            due,
            delay_ms,
            retry_at_ms: 0,
            failures: 0,
            reopen: None,
            started: false,
            timer: None,
            kernel_part: None,
        };
        // A door the kernel alone closes opens once its record is written:
        // a written record survives the daemon's death, and what a power
        // loss takes from the file it takes from the kernel's sets too. The
        // others wait until it is synced: their stop command needs it.
        let early = door.closed_by_kernel_alone();
        self.insert(door);
        self.keyed.insert(key, id);
        match self.journal_add(id, early) {
            Some(batch) if early => self.awaiting_written.push_back((batch, id)),
            Some(batch) => self.awaiting.push_back((batch, id)),
            None => self.step(id, Door::committed, now_ms, out),
        }
        Opened::Opened
    }

    /// When `tick` next has work (never later than the earliest timer).
    pub fn next_due_ms(&self) -> Option<u64> {
        self.wheel.next_due_ms()
    }

    /// Readable when the journal has written a batch: call `tick`.
    pub fn wake_fd(&self) -> Option<RawFd> {
        self.journal.as_ref().map(JournalWriter::wake_fd)
    }

    /// Releases the starts whose stops are now journaled, runs the stops
    /// and retries that are due, and logs refusals not yet logged.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<CommandRequest>) {
        if let Some(j) = &self.journal {
            j.clear_wake();
            let (written, durable) = (j.written(), j.durable());
            self.release(true, written, now_ms, out);
            self.release(false, durable, now_ms, out);
        }
        let mut fired = Vec::new();
        self.wheel.advance(now_ms, &mut fired);
        for id in fired {
            if let Some(door) = self.doors.get_mut(&id) {
                door.timer = None;
            }
            self.step(id, |d| d.timer(now_ms), now_ms, out);
        }
        if self.refused_unlogged > 0
            && self
                .refused_logged_ms
                .is_none_or(|t| now_ms >= t + REFUSAL_LOG_EVERY_MS)
        {
            crate::warn!(
                "{} more completed knock(s) refused at a door cap in the last second",
                self.refused_unlogged
            );
            self.refused_unlogged = 0;
            self.refused_logged_ms = Some(now_ms);
        }
    }

    /// Opens the doors whose journal batch is now `upto`: those waiting for
    /// it to be written (`early`) or synced.
    fn release(&mut self, early: bool, upto: Batch, now_ms: u64, out: &mut Vec<CommandRequest>) {
        loop {
            let queue = if early {
                &mut self.awaiting_written
            } else {
                &mut self.awaiting
            };
            match queue.front() {
                Some(&(batch, id)) if batch <= upto => {
                    queue.pop_front();
                    self.step(id, Door::committed, now_ms, out);
                }
                _ => break,
            }
        }
    }

    /// Finished commands: each moves its door on (see [`door`]).
    pub fn finished(&mut self, done: Vec<Completion>, now_ms: u64, out: &mut Vec<CommandRequest>) {
        for c in done {
            let Some(id) = c.tag else { continue };
            if let Some(s) = self.start_only.remove(&id) {
                self.count(&s.event, s.src, -1);
                continue;
            }
            let Some(door) = self.doors.get_mut(&id) else {
                continue;
            };
            if !door.busy() {
                continue;
            }
            // A kernel action's command ended: its sets were written before.
            let command = Ended::of(&c.outcome);
            let ended = door.kernel_part.take().map_or(command, |k| k.and(command));
            let what = self.ended(id, ended, now_ms);
            self.follow(id, what, now_ms, out);
        }
    }

    /// Shutdown: every door closes now, or as soon as its running action
    /// has ended; a close that fails from here on is left in the journal
    /// for the next start. Nothing opens any more.
    pub fn close_all(&mut self, out: &mut Vec<CommandRequest>) {
        self.stopping = true;
        self.keyed.clear();
        self.awaiting.clear();
        self.awaiting_written.clear();
        let ids: Vec<JournalId> = self.doors.keys().copied().collect();
        let mut ids = ids;
        // In due order, so the doors that should close first go first.
        crate::sort::sort_by_key(&mut ids, |id| self.doors.get(id).map(|d| (d.due.ms, d.id)));
        for id in ids {
            self.step(id, Door::stop, 0, out);
        }
    }

    /// Commands in flight (or about to be): what shutdown waits for.
    pub fn in_flight(&self) -> usize {
        self.start_only.len() + self.doors.values().filter(|d| d.busy()).count()
    }

    /// Doors with a pending stop (open, opening, closing or retrying).
    pub fn pending(&self) -> usize {
        self.doors.len()
    }

    /// Counters for the stats line.
    pub fn stats(&self) -> DoorStats {
        DoorStats {
            open: self.doors.len() + self.start_only.len(),
            retrying: self
                .doors
                .values()
                .filter(|d| d.phase == Phase::Retrying)
                .count(),
            refused: self.refused,
            stop_failures: self.stop_failures,
            journal_errors: self.journal_errors(),
            netlink_errors: self.netlink_errors,
            kernel_doors: self.kernel_doors(),
        }
    }

    /// Open doors that are kernel doors (restored ones included): while
    /// there are any, shutdown removes set elements.
    pub fn kernel_doors(&self) -> usize {
        self.doors
            .values()
            .filter(|d| !d.close.sets().is_empty())
            .count()
    }

    /// Journal batches that could not be written.
    pub fn journal_errors(&self) -> u64 {
        self.journal.as_ref().map_or(0, JournalWriter::errors)
    }

    /// Waits up to `limit` until everything pushed to the journal so far
    /// is written; true if it is (or there is no journal).
    pub fn sync_journal(&self, limit: Duration) -> bool {
        self.journal
            .as_ref()
            .is_none_or(|j| j.wait(self.last_batch, limit))
    }

    // ---- Rotating sequences (issue 17): burned windows in the journal.

    /// Queues a burned window for the journal; the batch that carries it,
    /// or `None` without a journal. The caller holds back what must not
    /// happen before it is durable ([`Doors::journal_durable`]).
    pub fn journal_burn(&mut self, burn: burn::Burn) -> Option<Batch> {
        let batch = self.journal.as_ref()?.push(JournalOp::Burn(burn));
        self.last_batch = batch;
        Some(batch)
    }

    /// Every batch up to this one is written (or failed, and logged);
    /// `None` without a journal.
    pub fn journal_durable(&self) -> Option<Batch> {
        self.journal.as_ref().map(JournalWriter::durable)
    }

    // ---- End of rotating sequences.

    /// Ends the journal's writer after it wrote what is queued (at most
    /// `limit`).
    pub fn finish(&mut self, limit: Duration) {
        if let Some(j) = self.journal.take() {
            j.finish(limit);
        }
    }

    fn allocate_id(&mut self) -> JournalId {
        let id = JournalId::new(self.next_id);
        self.next_id += 1;
        id
    }

    /// The cap this knock would exceed, if any.
    fn refusal(&self, event: &Event, src: IpAddr) -> Option<Refusal> {
        let open = self.doors.len() + self.start_only.len();
        if open >= self.limits.max_doors {
            return Some(Refusal::Total(self.limits.max_doors));
        }
        if let Some(max) = event.max_doors {
            let max = max as usize;
            if self.per_event.get(&event.name).copied().unwrap_or(0) >= max {
                return Some(Refusal::Event(max));
            }
        }
        if self.per_source.get(&src).copied().unwrap_or(0) >= self.limits.max_per_source {
            return Some(Refusal::Source(self.limits.max_per_source));
        }
        None
    }

    fn refuse(&mut self, event: &Event, src: IpAddr, why: Refusal, now_ms: u64) -> Opened {
        self.refused += 1;
        let quiet = self
            .refused_logged_ms
            .is_some_and(|t| now_ms < t + REFUSAL_LOG_EVERY_MS);
        if quiet {
            self.refused_unlogged += 1;
        } else {
            crate::warn!(
                "{src} {}: knock complete, door not opened: {why}{}",
                event.name,
                match self.refused_unlogged {
                    0 => String::new(),
                    n => format!(" ({n} more refused before this one)"),
                }
            );
            self.refused_unlogged = 0;
            self.refused_logged_ms = Some(now_ms);
        }
        Opened::Refused(why)
    }

    fn count(&mut self, event: &str, src: IpAddr, delta: isize) {
        let bump = |n: &mut usize| *n = n.saturating_add_signed(delta);
        match self.per_event.get_mut(event) {
            Some(n) => bump(n),
            None => {
                self.per_event
                    .insert(event.to_string(), delta.max(0) as usize);
            }
        }
        match self.per_source.get_mut(&src) {
            Some(n) => bump(n),
            None => {
                self.per_source.insert(src, delta.max(0) as usize);
            }
        }
        if self.per_event.get(event) == Some(&0) {
            self.per_event.remove(event);
        }
        if self.per_source.get(&src) == Some(&0) {
            self.per_source.remove(&src);
        }
    }

    fn insert(&mut self, door: Door) {
        self.count(&door.event.clone(), door.src, 1);
        self.doors.insert(door.id, door);
    }

    /// Applies one transition of door `id` and carries out what it asks.
    fn step(
        &mut self,
        id: JournalId,
        f: impl FnOnce(&mut Door) -> Do,
        now_ms: u64,
        out: &mut Vec<CommandRequest>,
    ) {
        let Some(door) = self.doors.get_mut(&id) else {
            return;
        };
        let what = f(door);
        self.follow(id, what, now_ms, out);
    }

    /// The door's open or close action ended: its next decision. Counts a
    /// failed close.
    fn ended(&mut self, id: JournalId, ended: Ended, now_ms: u64) -> Do {
        let stopping = self.stopping;
        let Some(door) = self.doors.get_mut(&id) else {
            return Do::Nothing;
        };
        match door.phase {
            Phase::Opening => door.opened(ended, now_ms, stopping),
            Phase::Closing => {
                if !ended.ok {
                    self.stop_failures += 1;
                }
                door.closed(ended, now_ms, stopping)
            }
            _ => Do::Nothing,
        }
    }

    /// Carries out the decision `what` of door `id`, and the decisions that
    /// follow at once: an action without a command (a kernel door's sets
    /// alone, a kernel door closing at its time) ends where it starts.
    fn follow(&mut self, id: JournalId, mut what: Do, now_ms: u64, out: &mut Vec<CommandRequest>) {
        loop {
            let ended = match what {
                Do::Nothing => None,
                Do::Retry { after_ms } => {
                    if let Some(door) = self.doors.get(&id) {
                        crate::warn!(
                            "{} {}: stop failed (attempt {}); the door may still be open: \
                             retrying in {} s",
                            door.src,
                            door.event,
                            door.failures,
                            after_ms / 1000
                        );
                    }
                    None
                }
                Do::Refresh => {
                    let action = self.doors.get(&id).and_then(|d| d.open.clone());
                    if let Some(Action::Kernel(k)) = action {
                        self.write_sets(id, SetOp::Add, &k.sets, true);
                    }
                    None
                }
                Do::Open => {
                    let action = self.doors.get(&id).and_then(|d| d.open.clone());
                    action.and_then(|a| self.start(id, CommandKind::Start, a, out))
                }
                Do::Close => {
                    // Early (shutdown): everything; at its time, what the
                    // kernel does not do by itself.
                    let stopping = self.stopping;
                    let action = self.doors.get(&id).and_then(|d| {
                        if stopping {
                            Some(d.close.clone())
                        } else {
                            d.close.at_due()
                        }
                    });
                    match action {
                        Some(a) => self.start(id, CommandKind::Stop, a, out),
                        None => {
                            if let Some(d) = self.doors.get(&id) {
                                crate::info!(
                                    "{} {}: door closed by the kernel (its elements' timeout)",
                                    d.src,
                                    d.event
                                );
                            }
                            Some(Ended::OK)
                        }
                    }
                }
                Do::Forget { done } => {
                    self.forget(id, done);
                    return;
                }
            };
            match ended {
                Some(ended) => what = self.ended(id, ended, now_ms),
                None => break,
            }
        }
        // The timer follows the phase.
        let Some(door) = self.doors.get_mut(&id) else {
            return;
        };
        let want = door.timer_at();
        let have = door.timer.and_then(|t| self.wheel.due_ms(t));
        if want != have {
            if let Some(t) = door.timer.take() {
                self.wheel.cancel(t);
            }
            if let Some(at) = want {
                door.timer = Some(self.wheel.insert(at.max(now_ms), id));
            }
        }
    }

    /// Starts `action` for door `id`: a command goes to the runner (`None`:
    /// it ends later); a kernel action writes its sets now and then hands
    /// its command on, or, without one, has ended (`Some`).
    fn start(
        &mut self,
        id: JournalId,
        kind: CommandKind,
        action: Action,
        out: &mut Vec<CommandRequest>,
    ) -> Option<Ended> {
        let (command, sets_ended) = match action {
            Action::Shell(command) => (command, None),
            Action::Kernel(k) => {
                let ended = self.write_sets(id, k.op, &k.sets, false);
                match k.then {
                    Some(command) => (command, Some(ended)),
                    None => return Some(ended),
                }
            }
        };
        let door = self.doors.get_mut(&id)?;
        door.kernel_part = sets_ended;
        out.push(CommandRequest {
            kind,
            event: door.event.clone(),
            src: door.src,
            command,
            id,
        });
        None
    }

    /// Adds door `id`'s address to `sets` (with its delay as timeout) or
    /// removes it, logging each result; failures are counted. `refresh`:
    /// only for the log (a knock on an open kernel door).
    fn write_sets(&mut self, id: JournalId, op: SetOp, sets: &[SetTarget], refresh: bool) -> Ended {
        let Some(door) = self.doors.get(&id) else {
            return Ended {
                ran: false,
                ok: false,
            };
        };
        let (src, event) = (door.src, door.event.clone());
        let delay = Duration::from_millis(door.delay_ms);
        let Some(backend) = self.sets.as_deref_mut() else {
            self.netlink_errors += sets.len() as u64;
            crate::error!(
                "{src} {event}: kernel door not written: no netlink socket (the daemon \
                 started without kernel doors); its elements expire by their timeout"
            );
            return Ended {
                ran: false,
                ok: false,
            };
        };
        let mut ended = Ended {
            ran: false,
            ok: true,
        };
        for set in sets {
            let result = match op {
                SetOp::Add => backend.add(set, src, delay).map(|()| true),
                SetOp::Remove => backend.remove(set, src),
            };
            let secs = delay.as_secs();
            match (op, result) {
                (SetOp::Add, Ok(_)) if refresh => {
                    crate::info!("{src} {event}: {set} holds it for another {secs} s")
                }
                (SetOp::Add, Ok(_)) => {
                    crate::info!("{src} {event}: door open: in {set} for {secs} s")
                }
                (SetOp::Remove, Ok(true)) => {
                    crate::info!("{src} {event}: door closed: removed from {set}")
                }
                (SetOp::Remove, Ok(false)) => {
                    crate::info!("{src} {event}: door already closed: not in {set} any more")
                }
                (op, Err(e)) => {
                    self.netlink_errors += 1;
                    ended.ok = false;
                    ended.ran |= may_have_applied(&e);
                    match op {
                        SetOp::Add if refresh => crate::error!(
                            "{src} {event}: kernel door not refreshed: {e}; it closes at its \
                             earlier time"
                        ),
                        SetOp::Add => crate::error!("{src} {event}: kernel door not opened: {e}"),
                        SetOp::Remove => crate::error!(
                            "{src} {event}: kernel door not closed: {e}; the kernel still \
                             removes the address at its timeout"
                        ),
                    }
                    continue;
                }
            }
            ended.ran = true;
        }
        ended
    }

    /// Door `id` is done with: gone from memory, and from the journal if
    /// `done` (closed, or never opened).
    fn forget(&mut self, id: JournalId, done: bool) {
        let Some(door) = self.doors.remove(&id) else {
            return;
        };
        if let Some(t) = door.timer {
            self.wheel.cancel(t);
        }
        if self.keyed.get(&(door.event.clone(), door.src)) == Some(&id) {
            self.keyed.remove(&(door.event.clone(), door.src));
        }
        self.count(&door.event, door.src, -1);
        if done {
            if let Some(j) = &self.journal {
                self.last_batch = j.push(JournalOp::Done(id));
            }
        } else if self.journal.is_some() {
            crate::warn!(
                "{} {}: stop did not succeed before shutdown; kept in the journal, \
                 it runs again at the next start",
                door.src,
                door.event
            );
        } else {
            crate::error!(
                "{} {}: stop did not succeed before shutdown and there is no journal: \
                 the door may stay open",
                door.src,
                door.event
            );
        }
    }

    /// Records door `id`'s pending close as it stands; the batch it goes
    /// into, if there is a journal. `early`: someone waits for the batch to
    /// be written, not only synced.
    fn journal_add(&mut self, id: JournalId, early: bool) -> Option<Batch> {
        let j = self.journal.as_ref()?;
        let door = self.doors.get(&id)?;
        let due = door.journal_due();
        let push = if early {
            JournalWriter::push_early
        } else {
            JournalWriter::push
        };
        let batch = push(
            j,
            JournalOp::Add(JournalEntry {
                id,
                due_unix_ms: due.unix_ms,
                delay_ms: door.delay_ms,
                event: door.event.clone(),
                src: door.src,
                stop_command: door.close.text().to_string(),
                sets: door.close.sets().to_vec(),
            }),
        );
        self.last_batch = batch;
        Some(batch)
    }
}

impl Drop for Doors {
    fn drop(&mut self) {
        // Let the writer finish what is queued (briefly): a test or an exit
        // path that forgot `finish` should still leave a consistent file.
        self.finish(Duration::from_secs(2));
    }
}

/// Whether a set operation that failed may still have been carried out:
/// the kernel refused it (then nothing changed: netlink requests are
/// atomic), or its answer was lost.
fn may_have_applied(e: &KernelError) -> bool {
    matches!(e.reason, Reason::NoAnswer | Reason::Malformed(_))
}

/// Hands `requests` to the runner, each labelled "SRC EVENT start|stop" in
/// its log lines and tagged with its door.
pub fn submit(runner: &Runner, requests: &mut Vec<CommandRequest>) {
    for req in requests.drain(..) {
        let kind = match req.kind {
            CommandKind::Start => "start",
            CommandKind::Stop => "stop",
        };
        runner.submit(Request {
            tag: Some(req.id),
            label: format!("{} {} {kind}", req.src, req.event),
            command: req.command,
        });
    }
}

/// Shutdown: closes every door (see [`Doors::close_all`]), runs what that
/// takes — a stop after a start that is still running — for up to `limit`,
/// then ends the runner (terminating what still runs) and the journal
/// writer. Stops that did not succeed stay in the journal. `now_ms` reads
/// the daemon's monotonic clock.
pub fn close_all_and_wait(
    doors: &mut Doors,
    runner: Runner,
    limit: Duration,
    now_ms: impl Fn() -> u64,
) {
    let deadline = Instant::now() + limit;
    let mut requests = Vec::new();
    doors.close_all(&mut requests);
    submit(&runner, &mut requests);
    while doors.in_flight() > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        let _ = crate::sys::process::poll_readable(
            [Some(runner.wake_fd()), doors.wake_fd()],
            Some(wait),
        );
        let t = now_ms();
        doors.finished(runner.completions(), t, &mut requests);
        doors.tick(t, &mut requests);
        submit(&runner, &mut requests);
    }
    let rest = runner.shutdown(deadline.saturating_duration_since(Instant::now()));
    doors.finished(rest, now_ms(), &mut requests);
    // The runner is gone: anything asked for now stays in the journal.
    requests.clear();
    doors.finish(Duration::from_secs(5));
}

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;
