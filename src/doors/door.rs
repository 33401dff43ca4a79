//! One door: the state machine that keeps its commands in order.
//!
//! ```text
//!  Journaling ──committed──▶ Opening ──start ended──▶ Open ──due──▶ Closing ──exit 0──▶ (closed)
//!                              ▲   └─(due passed, or shutting down)──────▶ │
//!                              │                                            │ failed
//!                              └──────── knock ─────── Retrying ◀───────────┘
//!                                                         └──backoff──▶ Closing
//! ```
//!
//! Invariants, whatever the backend that carries out the actions:
//! - at most one of the door's actions is in flight, so a close never starts
//!   before the open it undoes has ended, and a re-knock while the open runs
//!   does not run it a second time;
//! - a door that may be open has a pending close until a close *succeeds*
//!   (exit 0) after the last open ended; a failed close is retried with
//!   backoff, and at shutdown it is left to the journal for the next start;
//! - a knock while the close runs opens the door again once it has ended.
//!
//! - a kernel door's close at its due time leaves the elements to the
//!   kernel, which removes them at that moment by their timeout; only
//!   shutdown removes them early ([`Action::at_due`]).
//!
//! This file decides; [`super::Doors`] carries out (timers, journal, set
//! operations over netlink, requests to the runner).

use std::net::IpAddr;

use crate::config::sets::SetTarget;
use crate::doors::journal::JournalId;
use crate::doors::runner::Outcome;
use crate::doors::wheel::TimerId;

/// What opening or closing a door does: a shell command run by the runner,
/// or a kernel door, whose set elements the daemon writes over netlink
/// itself (synchronously, on its own thread) before the command that may
/// come with it is handed to the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `/bin/sh -c` with this text (already expanded).
    Shell(String),
    /// The knocker's address in these sets, then a command if any.
    Kernel(KernelAction),
}

/// The kernel part of an action: one operation on each of a door's sets
/// for the knocker's address, then the event's command for it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelAction {
    /// Add or remove.
    pub op: SetOp,
    /// The sets for the knocker's address family, nftables first.
    pub sets: Vec<SetTarget>,
    /// Runs once the sets are written (`start_command` after an add,
    /// `stop_command` after a remove), already expanded.
    pub then: Option<String>,
}

/// What a kernel door does to its sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// Add the address with the door's delay as timeout, or refresh it to
    /// the full delay if it is there.
    Add,
    /// Remove the address: the door closes before the kernel would close it.
    Remove,
}

impl Action {
    /// The shell text to show in logs and to keep in the journal; empty for
    /// a kernel door without a command.
    pub fn text(&self) -> &str {
        match self {
            Action::Shell(s) => s,
            Action::Kernel(k) => k.then.as_deref().unwrap_or(""),
        }
    }

    /// The sets a kernel door writes; none for a shell action.
    pub fn sets(&self) -> &[SetTarget] {
        match self {
            Action::Shell(_) => &[],
            Action::Kernel(k) => &k.sets,
        }
    }

    /// What this close does when the door's time is up. A kernel door's
    /// elements carry the same time as their timeout, so the kernel removes
    /// them itself at that moment (whether or not the daemon still runs):
    /// only the command is left to run, if there is one. `None`: nothing
    /// to do. Removing them early is for shutdown (see [`Door::stop`]).
    pub fn at_due(&self) -> Option<Action> {
        match self {
            Action::Shell(s) => Some(Action::Shell(s.clone())),
            Action::Kernel(k) => k.then.clone().map(Action::Shell),
        }
    }
}

/// How an action ended, as far as its door is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// It ran, or may have, at least in part: there may be something to undo.
    pub ran: bool,
    /// It did all it had to.
    pub ok: bool,
}

impl Ended {
    /// Done, all of it.
    pub const OK: Ended = Ended {
        ran: true,
        ok: true,
    };

    /// A command's outcome: one that never started did nothing; only exit
    /// status 0 is success.
    pub fn of(outcome: &Outcome) -> Ended {
        Ended {
            ran: !matches!(outcome, Outcome::Cancelled | Outcome::SpawnFailed(_)),
            ok: outcome.success(),
        }
    }

    /// Both parts of one action (sets, then command): it ran if either did,
    /// and succeeded if both did.
    pub fn and(self, other: Ended) -> Ended {
        Ended {
            ran: self.ran || other.ran,
            ok: self.ok && other.ok,
        }
    }
}

/// Where a door is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its pending close is being written to the journal; nothing runs yet.
    Journaling,
    /// The open action runs.
    Opening,
    /// Open; the close waits for its due time.
    Open,
    /// The close action runs.
    Closing,
    /// The last close failed; the next attempt waits for its backoff.
    Retrying,
}

/// When a close is due: on the monotonic clock that times it, and on the
/// wall clock the journal keeps across reboots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Milliseconds on the daemon's monotonic clock.
    pub ms: u64,
    /// Unix time in milliseconds.
    pub unix_ms: u64,
}

/// What the door asks of its owner after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Do {
    /// Nothing to carry out now.
    Nothing,
    /// Run the open action.
    Open,
    /// Run the close action.
    Close,
    /// A kernel door was knocked again while open: write its sets again with
    /// the full delay (no phase change; nothing else is in flight for it).
    Refresh,
    /// The close failed: it is retried in `after_ms` (logged by the owner).
    Retry {
        /// Milliseconds until the next attempt.
        after_ms: u64,
    },
    /// The door is gone from memory. `done`: it is closed (or was never
    /// opened), so its journal record goes; otherwise the record stays and
    /// the next start runs the close.
    Forget {
        /// Closed (or never opened): the journal record goes.
        done: bool,
    },
}

/// First retry delay; doubled per failure up to [`RETRY_MAX_MS`].
pub const RETRY_FIRST_MS: u64 = 1_000;
/// Longest wait between two attempts at a failing close.
pub const RETRY_MAX_MS: u64 = 60_000;

/// Wait before the next attempt after `failures` failed ones (1, 2, 4 … 60 s).
pub fn backoff_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (RETRY_FIRST_MS << doublings).min(RETRY_MAX_MS)
}

/// One door.
#[derive(Debug, Clone)]
pub struct Door {
    /// Its name for its whole life, in the journal and in completions.
    pub id: JournalId,
    /// The event's name.
    pub event: String,
    /// The knocking address.
    pub src: IpAddr,
    /// `None` for a door restored from the journal: its open is not known,
    /// and it is never re-armed (a new knock opens a door of its own).
    pub open: Option<Action>,
    /// What closes it.
    pub close: Action,
    /// Where it is in its life.
    pub phase: Phase,
    /// When the close is due.
    pub due: Due,
    /// The event's delay, kept in the journal (caps the wait after a restart).
    pub delay_ms: u64,
    /// In `Retrying`: when the next attempt runs.
    pub retry_at_ms: u64,
    /// Failed close attempts since the door last opened.
    pub failures: u32,
    /// A knock arrived while the close ran: open again once it has ended,
    /// closing at this time.
    pub reopen: Option<Due>,
    /// Some open action of this door has actually run (or, restored, may
    /// have): only then is there anything to close.
    pub started: bool,
    /// Its timer on the owner's wheel, if it has one.
    pub timer: Option<TimerId>,
    /// While the command of a kernel action runs: how its set operations
    /// ended, to be joined with the command's end.
    pub kernel_part: Option<Ended>,
}

impl Door {
    /// The timer the door needs now, if any. None while an action runs or
    /// awaits the journal: the due time is checked when the open ends.
    pub fn timer_at(&self) -> Option<u64> {
        match self.phase {
            Phase::Open => Some(self.due.ms),
            Phase::Retrying => Some(self.retry_at_ms),
            Phase::Journaling | Phase::Opening | Phase::Closing => None,
        }
    }

    /// True while one of its actions runs.
    pub fn busy(&self) -> bool {
        matches!(self.phase, Phase::Opening | Phase::Closing)
    }

    /// The due time the journal should hold for it now.
    pub fn journal_due(&self) -> Due {
        self.reopen.unwrap_or(self.due)
    }

    /// The journal holds its close: the open may run.
    pub fn committed(&mut self) -> Do {
        if self.phase != Phase::Journaling {
            return Do::Nothing;
        }
        self.phase = Phase::Opening;
        Do::Open
    }

    /// A kernel door whose close is the kernel's alone (no stop command):
    /// should the daemon die, nothing of it needs the daemon but the index
    /// its journal record keeps.
    pub fn closed_by_kernel_alone(&self) -> bool {
        matches!(&self.close, Action::Kernel(k) if k.then.is_none())
    }

    /// A kernel door: its open writes sets (and its refresh does too).
    pub fn is_kernel(&self) -> bool {
        matches!(self.open, Some(Action::Kernel(_)))
    }

    /// A new knock for the door: push the close out (a kernel door's
    /// elements are refreshed to the new time), or open again.
    pub fn knock(&mut self, due: Due) -> Do {
        match self.phase {
            // Its sets were written: refresh them. (While journaling they
            // are not yet, and will be written with the full delay.)
            Phase::Opening | Phase::Open if self.is_kernel() => {
                self.due = due;
                Do::Refresh
            }
            Phase::Journaling | Phase::Opening | Phase::Open => {
                self.due = due;
                Do::Nothing
            }
            Phase::Closing => {
                self.reopen = Some(due);
                Do::Nothing
            }
            Phase::Retrying if self.open.is_some() => {
                // The failed close may have left it open or not: open it
                // (again) and close it at the new time, retrying as before.
                self.due = due;
                self.failures = 0;
                self.phase = Phase::Opening;
                Do::Open
            }
            Phase::Retrying => Do::Nothing,
        }
    }

    /// Its timer fired at `now_ms`.
    pub fn timer(&mut self, now_ms: u64) -> Do {
        let due = match self.phase {
            Phase::Open => self.due.ms,
            Phase::Retrying => self.retry_at_ms,
            _ => return Do::Nothing,
        };
        if now_ms < due {
            return Do::Nothing;
        }
        self.phase = Phase::Closing;
        Do::Close
    }

    /// The open action ended.
    pub fn opened(&mut self, ended: Ended, now_ms: u64, stopping: bool) -> Do {
        if self.phase != Phase::Opening {
            return Do::Nothing;
        }
        self.started |= ended.ran;
        if !self.started {
            // Nothing ran, now or before: there is nothing to undo.
            return Do::Forget { done: true };
        }
        if stopping || now_ms >= self.due.ms {
            self.phase = Phase::Closing;
            return Do::Close;
        }
        self.phase = Phase::Open;
        Do::Nothing
    }

    /// The close action ended.
    pub fn closed(&mut self, ended: Ended, now_ms: u64, stopping: bool) -> Do {
        if self.phase != Phase::Closing {
            return Do::Nothing;
        }
        if let Some(due) = self
            .reopen
            .take()
            .filter(|_| !stopping && self.open.is_some())
        {
            // Whatever the close did, the new open and its close at the new
            // time (retried until it succeeds) supersede it.
            self.due = due;
            self.failures = 0;
            self.phase = Phase::Opening;
            return Do::Open;
        }
        if ended.ok {
            return Do::Forget { done: true };
        }
        if stopping {
            return Do::Forget { done: false };
        }
        self.failures = self.failures.saturating_add(1);
        let after_ms = backoff_ms(self.failures);
        self.retry_at_ms = now_ms.saturating_add(after_ms);
        self.phase = Phase::Retrying;
        Do::Retry { after_ms }
    }

    /// Shutdown: close now what can be closed now; the rest closes when its
    /// running action ends (see `opened`).
    pub fn stop(&mut self) -> Do {
        self.reopen = None;
        match self.phase {
            Phase::Journaling if !self.started => Do::Forget { done: true },
            Phase::Journaling | Phase::Open | Phase::Retrying => {
                self.phase = Phase::Closing;
                Do::Close
            }
            Phase::Opening | Phase::Closing => Do::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door() -> Door {
        Door {
            id: JournalId::new(1),
            event: "SSH".into(),
            src: "10.0.0.1".parse().unwrap(),
            open: Some(Action::Shell("open".into())),
            close: Action::Shell("close".into()),
            phase: Phase::Journaling,
            due: due(1_000),
            delay_ms: 1_000,
            retry_at_ms: 0,
            failures: 0,
            reopen: None,
            started: false,
            timer: None,
            kernel_part: None,
        }
    }

    fn due(ms: u64) -> Due {
        Due {
            ms,
            unix_ms: 1_700_000_000_000 + ms,
        }
    }

    const OK: Outcome = Outcome::Exited(0);
    const FAIL: Outcome = Outcome::Exited(1);

    fn e(outcome: &Outcome) -> Ended {
        Ended::of(outcome)
    }

    #[test]
    fn the_close_waits_for_the_open_even_when_already_due() {
        let mut d = door();
        d.due = due(0); // Cmd_Timeout = 0
        assert_eq!(d.timer_at(), None);
        assert_eq!(d.committed(), Do::Open);
        assert_eq!(d.timer(5), Do::Nothing, "no close while the open runs");
        assert_eq!(d.knock(due(0)), Do::Nothing, "no second open");
        assert_eq!(d.opened(e(&OK), 5, false), Do::Close);
        assert_eq!(d.closed(e(&OK), 6, false), Do::Forget { done: true });
    }

    #[test]
    fn open_then_close_at_the_due_time_and_rearm() {
        let mut d = door();
        d.committed();
        assert_eq!(d.opened(e(&OK), 10, false), Do::Nothing);
        assert_eq!((d.phase, d.timer_at()), (Phase::Open, Some(1_000)));
        assert_eq!(d.knock(due(1_500)), Do::Nothing);
        assert_eq!(d.timer_at(), Some(1_500));
        assert_eq!(d.timer(1_499), Do::Nothing);
        assert_eq!(d.timer(1_500), Do::Close);
        assert!(d.busy());
    }

    #[test]
    fn a_failed_close_is_retried_with_backoff_until_it_succeeds() {
        let mut d = door();
        d.committed();
        d.opened(e(&OK), 10, false);
        let mut now = 1_000;
        let mut waits = Vec::new();
        for outcome in [
            FAIL,
            Outcome::TimedOut,
            Outcome::Signaled(9),
            Outcome::Lost("x".into()),
            FAIL,
            FAIL,
            FAIL,
            FAIL,
        ] {
            assert_eq!(d.timer(now), Do::Close);
            match d.closed(e(&outcome), now, false) {
                Do::Retry { after_ms } => waits.push(after_ms),
                other => panic!("{other:?}"),
            }
            assert_eq!(d.timer(now + waits.last().unwrap() - 1), Do::Nothing);
            now += waits.last().unwrap();
        }
        assert_eq!(
            waits,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(d.timer(now), Do::Close);
        assert_eq!(d.closed(e(&OK), now, false), Do::Forget { done: true });
    }

    #[test]
    fn at_shutdown_a_failed_or_cancelled_close_stays_in_the_journal() {
        for outcome in [FAIL, Outcome::Cancelled, Outcome::Terminated] {
            let mut d = door();
            d.committed();
            d.opened(e(&OK), 10, false);
            assert_eq!(d.stop(), Do::Close);
            assert_eq!(d.closed(e(&outcome), 20, true), Do::Forget { done: false });
        }
        // A retrying door is closed once more at shutdown.
        let mut d = door();
        d.committed();
        d.opened(e(&OK), 1_000, false);
        d.timer(1_000);
        d.closed(e(&FAIL), 1_000, false);
        assert_eq!(d.stop(), Do::Close);
    }

    #[test]
    fn shutdown_while_opening_closes_after_the_open_ends() {
        let mut d = door();
        d.due = due(3_600_000);
        d.committed();
        assert_eq!(d.stop(), Do::Nothing);
        assert_eq!(d.opened(e(&OK), 10, true), Do::Close);
        // Before the journal released it: it never opened, nothing to close.
        let mut d = door();
        assert_eq!(d.stop(), Do::Forget { done: true });
    }

    #[test]
    fn an_open_that_never_ran_leaves_nothing_to_close() {
        for outcome in [Outcome::Cancelled, Outcome::SpawnFailed("fork".into())] {
            let mut d = door();
            d.committed();
            assert_eq!(d.opened(e(&outcome), 10, false), Do::Forget { done: true });
        }
        // One that ran and failed may have done part of its work: close it.
        let mut d = door();
        d.committed();
        assert_eq!(d.opened(e(&FAIL), 10, false), Do::Nothing);
        assert_eq!(d.timer(1_000), Do::Close);
    }

    #[test]
    fn a_knock_while_closing_opens_again_afterwards() {
        for outcome in [OK, FAIL] {
            let mut d = door();
            d.committed();
            d.opened(e(&OK), 1_000, false);
            d.timer(1_000);
            assert_eq!(d.knock(due(5_000)), Do::Nothing);
            assert_eq!(d.journal_due(), due(5_000));
            assert_eq!(d.closed(e(&outcome), 1_010, false), Do::Open);
            assert_eq!(d.opened(e(&OK), 1_020, false), Do::Nothing);
            assert_eq!(d.timer_at(), Some(5_000));
        }
        // While retrying: opens at once.
        let mut d = door();
        d.committed();
        d.opened(e(&OK), 1_000, false);
        d.timer(1_000);
        d.closed(e(&FAIL), 1_000, false);
        assert_eq!(d.knock(due(9_000)), Do::Open);
        assert_eq!((d.phase, d.failures), (Phase::Opening, 0));
    }

    fn kernel_door() -> Door {
        let sets = vec![SetTarget::parse_spec("nft inet f k4").unwrap()];
        Door {
            open: Some(Action::Kernel(KernelAction {
                op: SetOp::Add,
                sets: sets.clone(),
                then: None,
            })),
            close: Action::Kernel(KernelAction {
                op: SetOp::Remove,
                sets,
                then: Some("logger closed".into()),
            }),
            ..door()
        }
    }

    #[test]
    fn a_kernel_door_is_refreshed_by_a_knock_once_its_sets_are_written() {
        let mut d = kernel_door();
        assert!(d.is_kernel() && !door().is_kernel());
        // Not yet written: the add to come carries the full delay.
        assert_eq!(d.knock(due(2_000)), Do::Nothing);
        assert_eq!(d.committed(), Do::Open);
        assert_eq!(d.knock(due(3_000)), Do::Refresh);
        assert_eq!(d.opened(Ended::OK, 10, false), Do::Nothing);
        assert_eq!(d.knock(due(4_000)), Do::Refresh);
        assert_eq!(d.timer_at(), Some(4_000));
        // Closing: as any door, it opens again (writes its sets) afterwards.
        assert_eq!(d.timer(4_000), Do::Close);
        assert_eq!(d.knock(due(9_000)), Do::Nothing);
        assert_eq!(d.closed(Ended::OK, 4_001, false), Do::Open);
    }

    #[test]
    fn a_kernel_close_at_its_time_only_runs_the_command() {
        let d = kernel_door();
        assert_eq!(
            d.close.at_due(),
            Some(Action::Shell("logger closed".into()))
        );
        assert_eq!(d.close.text(), "logger closed");
        assert_eq!(d.close.sets().len(), 1);
        assert_eq!(d.open.as_ref().unwrap().at_due(), None);
        assert_eq!(d.open.as_ref().unwrap().text(), "");
        let shell = Action::Shell("x".into());
        assert_eq!(shell.at_due(), Some(shell.clone()));
        assert!(shell.sets().is_empty());
    }

    #[test]
    fn the_two_parts_of_an_action_end_together() {
        let failed_set = Ended {
            ran: false,
            ok: false,
        };
        assert_eq!(
            failed_set.and(e(&OK)),
            Ended {
                ran: true,
                ok: false
            }
        );
        assert!(Ended::OK.and(e(&Outcome::Cancelled)).ran);
        assert_eq!(
            failed_set.and(e(&Outcome::SpawnFailed("x".into()))),
            failed_set
        );
        // A set that was written and a command that failed to start: there
        // is something to close.
        let mut d = kernel_door();
        d.committed();
        let ended = Ended::OK.and(e(&Outcome::SpawnFailed("x".into())));
        assert_eq!(d.opened(ended, 10, false), Do::Nothing);
        assert_eq!(d.phase, Phase::Open);
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(6), 32_000);
        assert_eq!(backoff_ms(7), 60_000);
        assert_eq!(backoff_ms(u32::MAX), 60_000);
    }
}
