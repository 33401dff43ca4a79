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
//! This file decides; [`super::Doors`] carries out (timers, journal,
//! requests to the runner).

use std::net::IpAddr;

use crate::doors::journal::JournalId;
use crate::doors::runner::Outcome;
use crate::doors::wheel::TimerId;

/// What opening or closing a door does. One backend today: a shell command
/// run by the runner. A kernel backend (a set element added and deleted
/// over netlink) would be a second variant, driven through the same states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `/bin/sh -c` with this text (already expanded).
    Shell(String),
}

impl Action {
    /// The text to show in logs and to keep in the journal.
    pub fn text(&self) -> &str {
        match self {
            Action::Shell(s) => s,
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

    /// A new knock for the door: push the close out, or open again.
    pub fn knock(&mut self, due: Due) -> Do {
        match self.phase {
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

    /// The open action ended with `outcome`.
    pub fn opened(&mut self, outcome: &Outcome, now_ms: u64, stopping: bool) -> Do {
        if self.phase != Phase::Opening {
            return Do::Nothing;
        }
        self.started |= ran(outcome);
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

    /// The close action ended with `outcome`.
    pub fn closed(&mut self, outcome: &Outcome, now_ms: u64, stopping: bool) -> Do {
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
        if outcome.success() {
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

/// Whether an action with this outcome ran at all (or may have).
fn ran(outcome: &Outcome) -> bool {
    !matches!(outcome, Outcome::Cancelled | Outcome::SpawnFailed(_))
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

    #[test]
    fn the_close_waits_for_the_open_even_when_already_due() {
        let mut d = door();
        d.due = due(0); // Cmd_Timeout = 0
        assert_eq!(d.timer_at(), None);
        assert_eq!(d.committed(), Do::Open);
        assert_eq!(d.timer(5), Do::Nothing, "no close while the open runs");
        assert_eq!(d.knock(due(0)), Do::Nothing, "no second open");
        assert_eq!(d.opened(&OK, 5, false), Do::Close);
        assert_eq!(d.closed(&OK, 6, false), Do::Forget { done: true });
    }

    #[test]
    fn open_then_close_at_the_due_time_and_rearm() {
        let mut d = door();
        d.committed();
        assert_eq!(d.opened(&OK, 10, false), Do::Nothing);
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
        d.opened(&OK, 10, false);
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
            match d.closed(&outcome, now, false) {
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
        assert_eq!(d.closed(&OK, now, false), Do::Forget { done: true });
    }

    #[test]
    fn at_shutdown_a_failed_or_cancelled_close_stays_in_the_journal() {
        for outcome in [FAIL, Outcome::Cancelled, Outcome::Terminated] {
            let mut d = door();
            d.committed();
            d.opened(&OK, 10, false);
            assert_eq!(d.stop(), Do::Close);
            assert_eq!(d.closed(&outcome, 20, true), Do::Forget { done: false });
        }
        // A retrying door is closed once more at shutdown.
        let mut d = door();
        d.committed();
        d.opened(&OK, 1_000, false);
        d.timer(1_000);
        d.closed(&FAIL, 1_000, false);
        assert_eq!(d.stop(), Do::Close);
    }

    #[test]
    fn shutdown_while_opening_closes_after_the_open_ends() {
        let mut d = door();
        d.due = due(3_600_000);
        d.committed();
        assert_eq!(d.stop(), Do::Nothing);
        assert_eq!(d.opened(&OK, 10, true), Do::Close);
        // Before the journal released it: it never opened, nothing to close.
        let mut d = door();
        assert_eq!(d.stop(), Do::Forget { done: true });
    }

    #[test]
    fn an_open_that_never_ran_leaves_nothing_to_close() {
        for outcome in [Outcome::Cancelled, Outcome::SpawnFailed("fork".into())] {
            let mut d = door();
            d.committed();
            assert_eq!(d.opened(&outcome, 10, false), Do::Forget { done: true });
        }
        // One that ran and failed may have done part of its work: close it.
        let mut d = door();
        d.committed();
        assert_eq!(d.opened(&FAIL, 10, false), Do::Nothing);
        assert_eq!(d.timer(1_000), Do::Close);
    }

    #[test]
    fn a_knock_while_closing_opens_again_afterwards() {
        for outcome in [OK, FAIL] {
            let mut d = door();
            d.committed();
            d.opened(&OK, 1_000, false);
            d.timer(1_000);
            assert_eq!(d.knock(due(5_000)), Do::Nothing);
            assert_eq!(d.journal_due(), due(5_000));
            assert_eq!(d.closed(&outcome, 1_010, false), Do::Open);
            assert_eq!(d.opened(&OK, 1_020, false), Do::Nothing);
            assert_eq!(d.timer_at(), Some(5_000));
        }
        // While retrying: opens at once.
        let mut d = door();
        d.committed();
        d.opened(&OK, 1_000, false);
        d.timer(1_000);
        d.closed(&FAIL, 1_000, false);
        assert_eq!(d.knock(due(9_000)), Do::Open);
        assert_eq!((d.phase, d.failures), (Phase::Opening, 0));
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(6), 32_000);
        assert_eq!(backoff_ms(7), 60_000);
        assert_eq!(backoff_ms(u32::MAX), 60_000);
    }
}
