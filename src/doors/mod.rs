//! Doors: what happens after a knock sequence completes.
//!
//! Each door — one event for one source address — is a state machine
//! ([`door`]) that runs its open action, then its close action when due,
//! never both at once and never out of order, retrying a close that fails.
//! [`Doors`] holds them: it keeps their timers on a wheel, their pending
//! closes in the journal (written off the capture thread, [`commit`]), caps
//! how many may be open, and turns their decisions into
//! [`CommandRequest`]s. The runner executes those and hands the
//! completions back through [`Doors::finished`].
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
//!   gets a door of its own and the old close still runs at its time.

pub mod burn;
pub mod commit;
pub mod door;
pub mod journal;
pub mod kernel;
pub mod runner;
pub mod wheel;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::config::{expand, Event};
use crate::doors::commit::{Batch, JournalWriter};
use crate::doors::door::{Do, Door, Due, Phase};
use crate::doors::journal::{Journal, JournalEntry, JournalId, JournalOp};
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

/// An action for the runner (or, later, another backend) to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// Opening or closing.
    pub kind: CommandKind,
    /// The event's name (for the log).
    pub event: String,
    /// The knocking address (for the log).
    pub src: IpAddr,
    /// What to carry out.
    pub action: Action,
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
    /// The event has no stop command: Start emitted, nothing scheduled.
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
    /// The batch the last push went into.
    last_batch: Batch,
    next_id: u64,
    /// `close_all` was called: nothing opens, failed closes are not retried.
    stopping: bool,
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
            last_batch: 0,
            next_id,
            stopping: false,
            refused: 0,
            stop_failures: 0,
            refused_unlogged: 0,
            refused_logged_ms: None,
        })
    }

    /// Takes over the stops a previous run left in the journal: overdue ones
    /// run now, the rest are scheduled by their wall-clock due time
    /// translated to the monotonic clock (never later than their delay).
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
            let door = Door {
                id: e.id,
                event: e.event,
                src: e.src,
                open: None,
                close: Action::Shell(e.stop_command),
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
            };
            self.next_id = self.next_id.max(e.id.get().saturating_add(1));
            if e.due_unix_ms <= now_unix_ms {
                crate::info!(
                    "door {} for {}: stop overdue from before restart, running now",
                    door.event,
                    door.src
                );
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
        // As knockd: no start command, no stop either.
        let Some(start) = event.start_for(src) else {
            return Opened::Nothing;
        };
        let Some(stop) = event.stop_for(src) else {
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
                action: Action::Shell(expand(start, src)),
                id,
            });
            return Opened::StartOnly;
        };
        let delay_ms = u64::from(event.command_delay.unwrap_or(DEFAULT_COMMAND_DELAY)) * 1000;
        let due = Due {
            ms: now_ms.saturating_add(delay_ms),
            unix_ms: now_unix_ms.saturating_add(delay_ms),
        };
        if let Some(&id) = self.keyed.get(&(event.name.clone(), src)) {
            if let Some(door) = self.doors.get_mut(&id) {
                door.delay_ms = delay_ms;
            }
            self.step(id, |d| d.knock(due), now_ms, out);
            self.journal_add(id);
            return Opened::Rearmed;
        }
        if let Some(why) = self.refusal(event, src) {
            return self.refuse(event, src, why, now_ms);
        }
        let id = self.allocate_id();
        let door = Door {
            id,
            event: event.name.clone(),
            src,
            open: Some(Action::Shell(expand(start, src))),
            close: Action::Shell(expand(stop, src)),
            phase: Phase::Journaling,
            due,
            delay_ms,
            retry_at_ms: 0,
            failures: 0,
            reopen: None,
            started: false,
            timer: None,
        };
        self.insert(door);
        self.keyed.insert((event.name.clone(), src), id);
        match self.journal_add(id) {
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
            let durable = j.durable();
            while let Some(&(batch, id)) = self.awaiting.front() {
                if batch > durable {
                    break;
                }
                self.awaiting.pop_front();
                self.step(id, Door::committed, now_ms, out);
            }
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

    /// Finished commands: each moves its door on (see [`door`]).
    pub fn finished(&mut self, done: Vec<Completion>, now_ms: u64, out: &mut Vec<CommandRequest>) {
        for c in done {
            let Some(id) = c.tag else { continue };
            if let Some(s) = self.start_only.remove(&id) {
                self.count(&s.event, s.src, -1);
                continue;
            }
            let Some(phase) = self.doors.get(&id).map(|d| d.phase) else {
                continue;
            };
            let stopping = self.stopping;
            match phase {
                Phase::Opening => {
                    self.step(id, |d| d.opened(&c.outcome, now_ms, stopping), now_ms, out)
                }
                Phase::Closing => {
                    if !c.outcome.success() {
                        self.stop_failures += 1;
                    }
                    self.step(id, |d| d.closed(&c.outcome, now_ms, stopping), now_ms, out);
                }
                _ => {}
            }
        }
    }

    /// Shutdown: every door closes now, or as soon as its running action
    /// has ended; a close that fails from here on is left in the journal
    /// for the next start. Nothing opens any more.
    pub fn close_all(&mut self, out: &mut Vec<CommandRequest>) {
        self.stopping = true;
        self.keyed.clear();
        self.awaiting.clear();
        let ids: Vec<JournalId> = self.doors.keys().copied().collect();
        let mut ids = ids;
        // In due order, so the doors that should close first go first.
        ids.sort_by_key(|id| self.doors.get(id).map(|d| (d.due.ms, d.id)));
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
        }
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
        match what {
            Do::Nothing | Do::Retry { .. } => {}
            Do::Open => {
                if let Some(action) = door.open.clone() {
                    out.push(request(door, CommandKind::Start, action));
                }
            }
            Do::Close => out.push(request(door, CommandKind::Stop, door.close.clone())),
            Do::Forget { done } => {
                let door = self.doors.remove(&id).expect("present above");
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
                return;
            }
        }
        if let Do::Retry { after_ms } = what {
            crate::warn!(
                "{} {}: stop failed (attempt {}); the door may still be open: retrying in {} s",
                door.src,
                door.event,
                door.failures,
                after_ms / 1000
            );
        }
        // The timer follows the phase.
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

    /// Records door `id`'s pending close as it stands; the batch it goes
    /// into, if there is a journal.
    fn journal_add(&mut self, id: JournalId) -> Option<Batch> {
        let j = self.journal.as_ref()?;
        let door = self.doors.get(&id)?;
        let due = door.journal_due();
        let batch = j.push(JournalOp::Add(JournalEntry {
            id,
            due_unix_ms: due.unix_ms,
            delay_ms: door.delay_ms,
            event: door.event.clone(),
            src: door.src,
            stop_command: door.close.text().to_string(),
        }));
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

fn request(door: &Door, kind: CommandKind, action: Action) -> CommandRequest {
    CommandRequest {
        kind,
        event: door.event.clone(),
        src: door.src,
        action,
        id: door.id,
    }
}

/// Hands `requests` to the runner, each labelled "SRC EVENT start|stop" in
/// its log lines and tagged with its door.
pub fn submit(runner: &Runner, requests: &mut Vec<CommandRequest>) {
    for req in requests.drain(..) {
        let kind = match req.kind {
            CommandKind::Start => "start",
            CommandKind::Stop => "stop",
        };
        match req.action {
            Action::Shell(command) => runner.submit(Request {
                tag: Some(req.id),
                label: format!("{} {} {kind}", req.src, req.event),
                command,
            }),
        }
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
mod tests;
