//! A read-only view of the doors, for `tportknockd -S`: each door's event,
//! address, where it is in its life and when its stop is due. Nothing here
//! changes a door; the views borrow the table for as long as they live.

use std::net::IpAddr;

use crate::doors::door::Phase;
use crate::doors::Doors;

/// Where a door is, as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorState {
    /// Its stop is being journaled; the start runs next.
    Journaling,
    /// The start command runs.
    Opening,
    /// Open; the stop waits for its due time.
    Open,
    /// The stop runs.
    Closing,
    /// The last stop failed; the next attempt waits for its backoff.
    Retrying,
    /// A command of an event without a stop, while it runs.
    StartOnly,
}

/// One door as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorView<'a> {
    /// The event's name.
    pub event: &'a str,
    /// The knocking address.
    pub src: IpAddr,
    /// Where it is.
    pub state: DoorState,
    /// When the stop is due, on the daemon's monotonic clock (`None` for a
    /// start-only command).
    pub due_ms: Option<u64>,
    /// In `Retrying`: when the next attempt runs.
    pub retry_at_ms: Option<u64>,
    /// Failed stop attempts since the door last opened.
    pub failures: u32,
    /// Taken over from the journal of an earlier run.
    pub restored: bool,
}

impl DoorView<'_> {
    /// The stop has not yet been tried: the door counts as open (opening,
    /// open); otherwise its stop is pending or being retried.
    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            DoorState::Journaling | DoorState::Opening | DoorState::Open | DoorState::StartOnly
        )
    }
}

impl Doors {
    /// Every door and start-only command, stops due first (start-only
    /// commands last), ties by age.
    pub fn views(&self) -> Vec<DoorView<'_>> {
        let mut out: Vec<(u64, DoorView<'_>)> = self
            .doors
            .values()
            .map(|d| {
                let state = match d.phase {
                    Phase::Journaling => DoorState::Journaling,
                    Phase::Opening => DoorState::Opening,
                    Phase::Open => DoorState::Open,
                    Phase::Closing => DoorState::Closing,
                    Phase::Retrying => DoorState::Retrying,
                };
                let view = DoorView {
                    event: &d.event,
                    src: d.src,
                    state,
                    due_ms: Some(d.due.ms),
                    retry_at_ms: (d.phase == Phase::Retrying).then_some(d.retry_at_ms),
                    failures: d.failures,
                    restored: d.open.is_none(),
                };
                (d.id.get(), view)
            })
            .collect();
        out.extend(self.start_only.iter().map(|(id, s)| {
            let view = DoorView {
                event: &s.event,
                src: s.src,
                state: DoorState::StartOnly,
                due_ms: None,
                retry_at_ms: None,
                failures: 0,
                restored: false,
            };
            (id.get(), view)
        }));
        crate::sort::sort_by_key(&mut out, |(id, v)| (v.due_ms.is_none(), v.due_ms, *id));
        out.into_iter().map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Event;
    use crate::doors::runner::{Completion, Outcome};
    use crate::doors::{CommandRequest, DoorLimits};
    use std::time::Duration;

    fn event(name: &str, delay: u32, stop: bool) -> Event {
        Event {
            name: name.into(),
            line: 1,
            timeout: 5,
            start_command: "open %IP%".into(),
            stop_command: stop.then(|| "close %IP%".into()),
            command_delay: Some(delay),
            ..Default::default()
        }
    }

    fn done(req: &CommandRequest, code: i32) -> Completion {
        Completion {
            tag: Some(req.id),
            label: String::new(),
            outcome: Outcome::Exited(code),
            duration: Duration::ZERO,
            pid: None,
            output: String::new(),
            discarded: 0,
        }
    }

    #[test]
    fn views_show_open_doors_retried_stops_and_start_only_commands() {
        let mut doors = Doors::new(None, DoorLimits::default(), 0).unwrap();
        let (ssh, web, once) = (
            event("SSH", 30, true),
            event("WEB", 1, true),
            event("ONCE", 0, false),
        );
        let mut out = Vec::new();
        doors.open(&ssh, "10.0.0.2".parse().unwrap(), 0, 0, &mut out);
        doors.open(&ssh, "10.0.0.3".parse().unwrap(), 500, 500, &mut out);
        doors.open(&web, "10.0.0.4".parse().unwrap(), 0, 0, &mut out);
        doors.open(&once, "10.0.0.5".parse().unwrap(), 0, 0, &mut out);
        // Every start ends well; WEB's stop comes due at 1 s and fails.
        let starts = std::mem::take(&mut out);
        doors.finished(starts.iter().map(|r| done(r, 0)).collect(), 10, &mut out);
        assert!(out.is_empty());
        doors.tick(1_000, &mut out);
        let stops = std::mem::take(&mut out);
        assert_eq!(stops.len(), 1);
        doors.finished(vec![done(&stops[0], 1)], 1_100, &mut out);

        let views = doors.views();
        type Shown<'a> = (&'a str, String, DoorState, Option<u64>, Option<u64>, u32);
        let show: Vec<Shown<'_>> = views
            .iter()
            .map(|v| {
                (
                    v.event,
                    v.src.to_string(),
                    v.state,
                    v.due_ms,
                    v.retry_at_ms,
                    v.failures,
                )
            })
            .collect();
        assert_eq!(
            show,
            [
                (
                    "WEB",
                    "10.0.0.4".into(),
                    DoorState::Retrying,
                    Some(1_000),
                    Some(2_100),
                    1
                ),
                (
                    "SSH",
                    "10.0.0.2".into(),
                    DoorState::Open,
                    Some(30_000),
                    None,
                    0
                ),
                (
                    "SSH",
                    "10.0.0.3".into(),
                    DoorState::Open,
                    Some(30_500),
                    None,
                    0
                ),
                // The start-only command has ended: it is gone.
            ]
        );
        assert_eq!(views.iter().filter(|v| v.is_open()).count(), 2);
        assert!(views.iter().all(|v| !v.restored));
    }

    #[test]
    fn a_running_start_only_command_is_listed_last() {
        let mut doors = Doors::new(None, DoorLimits::default(), 0).unwrap();
        let mut out = Vec::new();
        doors.open(
            &event("ONCE", 0, false),
            "10.0.0.5".parse().unwrap(),
            0,
            0,
            &mut out,
        );
        doors.open(
            &event("SSH", 30, true),
            "10.0.0.2".parse().unwrap(),
            0,
            0,
            &mut out,
        );
        let states: Vec<DoorState> = doors.views().iter().map(|v| v.state).collect();
        // Without a journal the door's start is asked for at once.
        assert_eq!(states, [DoorState::Opening, DoorState::StartOnly]);
    }
}
