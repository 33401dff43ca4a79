//! Doors: what happens after a knock sequence completes. Opening a door
//! emits its `start_command`; its `stop_command` is journaled first (so it
//! outlives a crash) and scheduled on the timer wheel (so it runs on time
//! even when the journal cannot be written). This module only produces
//! [`CommandRequest`]s; the runner executes them and reports finished stops
//! back through [`Doors::stop_ran`].
//!
//! Invariant: every emitted Start whose event has a stop is matched by
//! exactly one pending Stop. A re-knock on an open door re-arms its stop
//! instead of starting again; stops restored from the journal after a
//! restart are not re-armed by a new knock (the firewall may have been
//! flushed by a reboot, so the knock gets its own Start and Stop pair and the
//! old stop still runs at its time).

pub mod journal;
pub mod kernel;
pub mod runner;
pub mod wheel;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::{expand, Event};
use crate::doors::journal::{Journal, JournalEntry};
use crate::doors::wheel::{TimerId, Wheel};

/// Used when an event has a stop command but no `command_delay`.
pub const DEFAULT_COMMAND_DELAY: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Start,
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub kind: CommandKind,
    pub event: String,
    pub src: IpAddr,
    /// Already expanded.
    pub command: String,
    /// For a journaled Stop: pass to [`Doors::stop_ran`] once it has run.
    pub journal_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Start emitted, stop scheduled.
    Opened,
    /// The door was already open: its stop was pushed out, no Start.
    Rearmed,
    /// The event has no stop command: Start emitted, nothing scheduled.
    StartOnly,
    /// The event runs nothing for this address family (a knockd event with
    /// an empty or absent command): nothing emitted.
    Nothing,
}

struct PendingStop {
    event: String,
    src: IpAddr,
    command: String,
    journal_id: Option<u64>,
    /// In `open_doors` (opened in this run, may be re-armed).
    keyed: bool,
}

pub struct Doors {
    journal: Option<Journal>,
    wheel: Wheel<PendingStop>,
    open_doors: HashMap<(String, IpAddr), TimerId>,
    journal_errors: u64,
}

impl Doors {
    pub fn new(journal: Option<Journal>, now_ms: u64, now_unix_ms: u64) -> Self {
        let _ = now_unix_ms;
        Doors {
            journal,
            wheel: Wheel::new(now_ms),
            open_doors: HashMap::new(),
            journal_errors: 0,
        }
    }

    /// Takes over the stops a previous run left in the journal: overdue ones
    /// become Stop requests now, the rest are scheduled by their wall-clock
    /// due time translated to the monotonic clock.
    pub fn restore(
        &mut self,
        entries: Vec<JournalEntry>,
        now_ms: u64,
        now_unix_ms: u64,
        out: &mut Vec<CommandRequest>,
    ) {
        for e in entries {
            let pending = PendingStop {
                event: e.event,
                src: e.src,
                command: e.stop_command,
                journal_id: Some(e.id),
                keyed: false,
            };
            if e.due_unix_ms <= now_unix_ms {
                crate::info!(
                    "door {} for {}: stop overdue from before restart, running now",
                    pending.event,
                    pending.src
                );
                out.push(stop_request(pending));
            } else {
                // Capped: a wall clock set wrong (ahead) when the door
                // opened and corrected since must not keep it open longer.
                let wait_ms = (e.due_unix_ms - now_unix_ms).min(e.delay_ms);
                self.wheel.insert(now_ms.saturating_add(wait_ms), pending);
            }
        }
    }

    pub fn open(
        &mut self,
        event: &Event,
        src: IpAddr,
        now_ms: u64,
        now_unix_ms: u64,
        out: &mut Vec<CommandRequest>,
    ) -> Opened {
        // As knockd: no start command, no stop either.
        let Some(start) = event.start_for(src) else {
            return Opened::Nothing;
        };
        let Some(stop) = event.stop_for(src) else {
            out.push(start_request(event, start, src));
            return Opened::StartOnly;
        };
        let delay = u64::from(event.command_delay.unwrap_or(DEFAULT_COMMAND_DELAY));
        let delay_ms = delay * 1000;
        let due_ms = now_ms.saturating_add(delay_ms);
        let due_unix_ms = now_unix_ms.saturating_add(delay_ms);

        let key = (event.name.clone(), src);
        if let Some(&id) = self.open_doors.get(&key) {
            if self.wheel.reschedule(id, due_ms) {
                self.journal_rearm(id, due_unix_ms, delay_ms);
                return Opened::Rearmed;
            }
            // Stale key (cannot happen: firing removes it); open afresh.
            self.open_doors.remove(&key);
        }

        let command = expand(stop, src);
        let journal_id = self.journal_add(&event.name, src, &command, due_unix_ms, delay_ms);
        out.push(start_request(event, start, src));
        let id = self.wheel.insert(
            due_ms,
            PendingStop {
                event: event.name.clone(),
                src,
                command,
                journal_id,
                keyed: true,
            },
        );
        self.open_doors.insert(key, id);
        Opened::Opened
    }

    /// When `tick` next has work (never later than the earliest stop).
    pub fn next_due_ms(&self) -> Option<u64> {
        self.wheel.next_due_ms()
    }

    /// Emits a Stop for every stop due at or before `now_ms`.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<CommandRequest>) {
        let mut due = Vec::new();
        self.wheel.advance(now_ms, &mut due);
        for pending in due {
            if pending.keyed {
                self.open_doors
                    .remove(&(pending.event.clone(), pending.src));
            }
            out.push(stop_request(pending));
        }
    }

    /// The runner has run the Stop journaled as `journal_id`.
    pub fn stop_ran(&mut self, journal_id: u64) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if let Err(e) = journal.done(journal_id) {
            self.journal_errors += 1;
            crate::warn!(
                "journal {}: cannot mark stop {journal_id} done (it will run again after a restart): {e}",
                journal.path().display()
            );
        }
    }

    /// Shutdown: every pending stop, now, in due order.
    pub fn close_all(&mut self, out: &mut Vec<CommandRequest>) {
        self.open_doors.clear();
        out.extend(self.wheel.drain_all().into_iter().map(stop_request));
    }

    pub fn pending(&self) -> usize {
        self.wheel.len()
    }

    pub fn journal_errors(&self) -> u64 {
        self.journal_errors
    }

    /// Journals a new stop; `None` (logged, counted) when it cannot, in which
    /// case the stop lives in memory only.
    fn journal_add(
        &mut self,
        event: &str,
        src: IpAddr,
        command: &str,
        due_unix_ms: u64,
        delay_ms: u64,
    ) -> Option<u64> {
        let journal = self.journal.as_mut()?;
        let entry = JournalEntry {
            id: journal.allocate_id(),
            due_unix_ms,
            delay_ms,
            event: event.to_string(),
            src,
            stop_command: command.to_string(),
        };
        match journal.record(&entry) {
            Ok(()) => Some(entry.id),
            Err(e) => {
                self.journal_errors += 1;
                crate::warn!(
                    "journal {}: cannot record stop for {event} from {src} (kept in memory only): {e}",
                    journal.path().display()
                );
                None
            }
        }
    }

    /// Journals a re-armed stop's new due time (or, if it never made it to
    /// the journal, tries again to record it).
    fn journal_rearm(&mut self, id: TimerId, due_unix_ms: u64, delay_ms: u64) {
        let Some(pending) = self.wheel.get(id) else {
            return;
        };
        let (event, src, command) = (pending.event.clone(), pending.src, pending.command.clone());
        let journal_id = match pending.journal_id {
            None => self.journal_add(&event, src, &command, due_unix_ms, delay_ms),
            Some(journal_id) => {
                let Some(journal) = self.journal.as_mut() else {
                    return;
                };
                let entry = JournalEntry {
                    id: journal_id,
                    due_unix_ms,
                    delay_ms,
                    event,
                    src,
                    stop_command: command,
                };
                if let Err(e) = journal.record(&entry) {
                    // The old due time stays on disk: after a crash the door
                    // would close early, never late.
                    self.journal_errors += 1;
                    crate::warn!(
                        "journal {}: cannot record re-armed stop for {} from {src}: {e}",
                        journal.path().display(),
                        entry.event
                    );
                }
                Some(journal_id)
            }
        };
        if let Some(pending) = self.wheel.get_mut(id) {
            pending.journal_id = journal_id;
        }
    }
}

fn start_request(event: &Event, start: &str, src: IpAddr) -> CommandRequest {
    CommandRequest {
        kind: CommandKind::Start,
        event: event.name.clone(),
        src,
        command: expand(start, src),
        journal_id: None,
    }
}

fn stop_request(p: PendingStop) -> CommandRequest {
    CommandRequest {
        kind: CommandKind::Stop,
        event: p.event,
        src: p.src,
        command: p.command,
        journal_id: p.journal_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::journal::tests::Tmp;
    use crate::doors::journal::FILE_NAME;
    use std::fs;

    const T0_MS: u64 = 5_000_000;
    const T0_UNIX_MS: u64 = 1_700_000_000;

    fn event(name: &str, delay: u32) -> Event {
        Event {
            name: name.into(),
            line: 1,
            sequence: Vec::new(),
            timeout: 5,
            start_command: "iptables -I INPUT -s %IP% -j ACCEPT".into(),
            stop_command: Some("iptables -D INPUT -s %IP% -j ACCEPT".into()),
            command_delay: Some(delay),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn kinds(out: &[CommandRequest]) -> Vec<CommandKind> {
        out.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn open_starts_now_and_stops_at_the_due_time() {
        let mut doors = Doors::new(None, T0_MS, T0_UNIX_MS);
        let mut out = Vec::new();
        let src = ip("10.199.0.2");
        assert_eq!(
            doors.open(&event("ssh", 30), src, T0_MS, T0_UNIX_MS, &mut out),
            Opened::Opened
        );
        assert_eq!(
            out,
            [CommandRequest {
                kind: CommandKind::Start,
                event: "ssh".into(),
                src,
                command: "iptables -I INPUT -s 10.199.0.2 -j ACCEPT".into(),
                journal_id: None,
            }]
        );
        out.clear();
        assert_eq!(doors.pending(), 1);
        assert_eq!(doors.next_due_ms().map(|d| d <= T0_MS + 30_000), Some(true));
        doors.tick(T0_MS + 29_999, &mut out);
        assert!(out.is_empty());
        doors.tick(T0_MS + 30_000, &mut out);
        assert_eq!(kinds(&out), [CommandKind::Stop]);
        assert_eq!(out[0].command, "iptables -D INPUT -s 10.199.0.2 -j ACCEPT");
        assert_eq!(doors.pending(), 0);
        out.clear();
        // Closed: the next knock opens again.
        assert_eq!(
            doors.open(
                &event("ssh", 30),
                src,
                T0_MS + 40_000,
                T0_UNIX_MS + 40 * 1000,
                &mut out
            ),
            Opened::Opened
        );
        assert_eq!(kinds(&out), [CommandKind::Start]);
    }

    #[test]
    fn rearm_does_not_start_again_and_pushes_the_stop_out() {
        let mut doors = Doors::new(None, T0_MS, T0_UNIX_MS);
        let mut out = Vec::new();
        let src = ip("fd00:199::2");
        let ev = event("ssh", 30);
        doors.open(&ev, src, T0_MS, T0_UNIX_MS, &mut out);
        out.clear();
        assert_eq!(
            doors.open(&ev, src, T0_MS + 20_000, T0_UNIX_MS + 20 * 1000, &mut out),
            Opened::Rearmed
        );
        assert!(out.is_empty());
        // Another source or event is a different door.
        assert_eq!(
            doors.open(
                &ev,
                ip("fd00:199::3"),
                T0_MS + 20_000,
                T0_UNIX_MS + 20 * 1000,
                &mut out
            ),
            Opened::Opened
        );
        assert_eq!(
            doors.open(
                &event("web", 30),
                src,
                T0_MS + 20_000,
                T0_UNIX_MS + 20 * 1000,
                &mut out
            ),
            Opened::Opened
        );
        assert_eq!(kinds(&out), [CommandKind::Start, CommandKind::Start]);
        out.clear();
        doors.tick(T0_MS + 30_000, &mut out);
        assert!(out.is_empty(), "re-armed stop fired at its old time");
        doors.tick(T0_MS + 50_000, &mut out);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| r.kind == CommandKind::Stop));
        assert_eq!(doors.pending(), 0);
    }

    #[test]
    fn events_without_stop_only_start() {
        let mut doors = Doors::new(None, T0_MS, T0_UNIX_MS);
        let mut ev = event("bell", 5);
        ev.stop_command = None;
        ev.command_delay = None;
        let mut out = Vec::new();
        for _ in 0..2 {
            assert_eq!(
                doors.open(&ev, ip("10.0.0.9"), T0_MS, T0_UNIX_MS, &mut out),
                Opened::StartOnly
            );
        }
        assert_eq!(kinds(&out), [CommandKind::Start, CommandKind::Start]);
        assert_eq!(doors.pending(), 0);
        assert_eq!(doors.next_due_ms(), None);
    }

    #[test]
    fn ipv6_knockers_get_the_ipv6_commands() {
        let mut doors = Doors::new(None, T0_MS, T0_UNIX_MS);
        let mut ev = event("smtp", 5);
        ev.start_command_6 = Some("ip6tables -I INPUT -s %IP%".into());
        ev.stop_command_6 = Some("ip6tables -D INPUT -s %IP%".into());
        let mut out = Vec::new();
        doors.open(&ev, ip("fd00::2"), T0_MS, T0_UNIX_MS, &mut out);
        doors.open(&ev, ip("10.0.0.2"), T0_MS, T0_UNIX_MS, &mut out);
        doors.close_all(&mut out);
        let cmds: Vec<&str> = out.iter().map(|r| r.command.as_str()).collect();
        assert_eq!(
            cmds,
            [
                "ip6tables -I INPUT -s fd00::2",
                "iptables -I INPUT -s 10.0.0.2 -j ACCEPT",
                "ip6tables -D INPUT -s fd00::2",
                "iptables -D INPUT -s 10.0.0.2 -j ACCEPT",
            ]
        );
        // Without _6 commands IPv6 falls back; an empty one means nothing.
        let mut out = Vec::new();
        let plain = event("ssh", 5);
        doors.open(&plain, ip("fd00::3"), T0_MS, T0_UNIX_MS, &mut out);
        assert_eq!(out[0].command, "iptables -I INPUT -s fd00::3 -j ACCEPT");
        ev.start_command_6 = Some(String::new());
        assert_eq!(
            doors.open(&ev, ip("fd00::4"), T0_MS, T0_UNIX_MS, &mut out),
            Opened::Nothing
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn journal_holds_the_stop_before_start_is_emitted() {
        let tmp = Tmp::new("doors-before");
        let (journal, _, _) = Journal::open(&tmp.0).unwrap();
        let mut doors = Doors::new(Some(journal), T0_MS, T0_UNIX_MS);
        let mut out = Vec::new();
        doors.open(
            &event("ssh", 30),
            ip("10.199.0.2"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        assert_eq!(kinds(&out), [CommandKind::Start]);
        let text = fs::read_to_string(tmp.0.join(FILE_NAME)).unwrap();
        let stop = "iptables -D INPUT -s 10.199.0.2 -j ACCEPT";
        let add = format!(
            "add 1 {} 30000 3:ssh 10.199.0.2 {}:{stop} ",
            T0_UNIX_MS + 30 * 1000,
            stop.len()
        );
        assert!(text.starts_with(&add), "journal: {text:?}");
        // A re-arm journals the new due time.
        out.clear();
        doors.open(
            &event("ssh", 30),
            ip("10.199.0.2"),
            T0_MS + 10_000,
            T0_UNIX_MS + 10 * 1000,
            &mut out,
        );
        let text = fs::read_to_string(tmp.0.join(FILE_NAME)).unwrap();
        assert!(text.contains(&format!("add 1 {} 30000 3:ssh", T0_UNIX_MS + 40 * 1000)));
        assert!(out.is_empty());
        assert_eq!(doors.journal_errors(), 0);
    }

    #[test]
    fn restart_runs_overdue_stops_and_schedules_the_rest() {
        let tmp = Tmp::new("doors-restart");
        {
            let (journal, _, _) = Journal::open(&tmp.0).unwrap();
            let mut doors = Doors::new(Some(journal), T0_MS, T0_UNIX_MS);
            let mut out = Vec::new();
            doors.open(
                &event("soon", 10),
                ip("10.199.0.2"),
                T0_MS,
                T0_UNIX_MS,
                &mut out,
            );
            doors.open(
                &event("later", 3_600),
                ip("10.199.0.3"),
                T0_MS,
                T0_UNIX_MS,
                &mut out,
            );
            assert_eq!(kinds(&out), [CommandKind::Start, CommandKind::Start]);
            // Dropped without close_all: like kill -9.
        }
        // 60 s later, on a fresh monotonic clock (e.g. after a reboot).
        let (now_ms, now_unix_ms) = (1_000, T0_UNIX_MS + 60 * 1000);
        let (journal, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!((entries.len(), skipped), (2, 0));
        let mut doors = Doors::new(Some(journal), now_ms, now_unix_ms);
        let mut out = Vec::new();
        doors.restore(entries, now_ms, now_unix_ms, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, CommandKind::Stop);
        assert_eq!(out[0].event, "soon");
        assert_eq!(out[0].command, "iptables -D INPUT -s 10.199.0.2 -j ACCEPT");
        let soon_id = out[0].journal_id.unwrap();
        doors.stop_ran(soon_id);
        assert_eq!(doors.pending(), 1);
        out.clear();
        let later_due = now_ms + (3_600 - 60) * 1000;
        doors.tick(later_due - 1, &mut out);
        assert!(out.is_empty());
        // A new knock on the restored door gets its own Start/Stop pair.
        assert_eq!(
            doors.open(
                &event("later", 3_600),
                ip("10.199.0.3"),
                later_due - 1,
                now_unix_ms + 3_539 * 1000,
                &mut out
            ),
            Opened::Opened
        );
        out.clear();
        doors.tick(later_due, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].kind, out[0].event.as_str()),
            (CommandKind::Stop, "later")
        );
        let later_id = out[0].journal_id.unwrap();
        doors.stop_ran(later_id);
        drop(doors);
        // Only the stop for the new knock remains on disk.
        let (_, entries, _) = Journal::open(&tmp.0).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries.iter().all(|e| e.id != soon_id && e.id != later_id));
        assert_eq!(entries[0].due_unix_ms, now_unix_ms + (3_539 + 3_600) * 1000);
    }

    /// Runs in a child process (this test binary re-executed): opens two
    /// doors on the journal named by the environment, says so, then waits
    /// to be killed.
    fn kill_9_child(dir: &std::path::Path) -> ! {
        use std::io::Write;
        let (journal, _, _) = Journal::open(dir).unwrap();
        let mut doors = Doors::new(Some(journal), T0_MS, T0_UNIX_MS);
        let mut out = Vec::new();
        doors.open(
            &event("soon", 10),
            ip("10.199.0.2"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        doors.open(
            &event("later", 600),
            ip("10.199.0.3"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        let mut stdout = std::io::stdout();
        writeln!(stdout, "DOORS-OPENED {}", out.len()).unwrap();
        stdout.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(120));
        std::process::exit(3);
    }

    #[test]
    fn doors_close_after_the_process_is_killed_with_sigkill() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        const ENV: &str = "TPORTKNOCKD_DOORS_KILL9_DIR";
        if let Some(dir) = std::env::var_os(ENV) {
            kill_9_child(std::path::Path::new(&dir));
        }

        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }

        let tmp = Tmp::new("doors-kill9");
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "doors::tests::doors_close_after_the_process_is_killed_with_sigkill",
                "--nocapture",
            ])
            .env(ENV, &tmp.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let opened = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.starts_with("DOORS-OPENED"));
        assert_eq!(opened.as_deref(), Some("DOORS-OPENED 2"));
        // Child::kill sends SIGKILL to this child's pid: no destructor runs.
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );

        // Restart 30 s later: the short door is overdue, the long one waits.
        let (journal, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!((entries.len(), skipped), (2, 0));
        let mut doors = Doors::new(Some(journal), 0, T0_UNIX_MS + 30 * 1000);
        let mut out = Vec::new();
        doors.restore(entries, 0, T0_UNIX_MS + 30 * 1000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].command, "iptables -D INPUT -s 10.199.0.2 -j ACCEPT");
        out.clear();
        doors.tick(569_999, &mut out);
        assert!(out.is_empty());
        doors.tick(570_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].command, "iptables -D INPUT -s 10.199.0.3 -j ACCEPT");
    }

    #[test]
    fn restored_wait_is_capped_by_the_delay() {
        // The door opened while the wall clock ran a year ahead; it has been
        // corrected since. The stop must not wait for that year to pass.
        let tmp = Tmp::new("doors-clock");
        let year = 365 * 86_400;
        {
            let (journal, _, _) = Journal::open(&tmp.0).unwrap();
            let mut doors = Doors::new(Some(journal), T0_MS, T0_UNIX_MS + year * 1000);
            let mut out = Vec::new();
            doors.open(
                &event("ssh", 60),
                ip("10.0.0.1"),
                T0_MS,
                T0_UNIX_MS + year * 1000,
                &mut out,
            );
        }
        let (journal, entries, _) = Journal::open(&tmp.0).unwrap();
        let mut doors = Doors::new(Some(journal), 0, T0_UNIX_MS);
        let mut out = Vec::new();
        doors.restore(entries, 0, T0_UNIX_MS, &mut out);
        assert!(out.is_empty());
        doors.tick(59_999, &mut out);
        assert!(out.is_empty());
        doors.tick(60_000, &mut out);
        assert_eq!(kinds(&out), [CommandKind::Stop]);
    }

    #[test]
    fn journal_failure_keeps_the_stop_in_memory() {
        // Root ignores permission bits, so make writes fail for real: the
        // journal's file becomes /dev/full (ENOSPC, as on a full disk).
        let tmp = Tmp::new("doors-full");
        let (mut journal, _, _) = Journal::open(&tmp.0).unwrap();
        journal.replace_file_for_test(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        );
        let mut doors = Doors::new(Some(journal), T0_MS, T0_UNIX_MS);
        let mut out = Vec::new();
        let src = ip("10.199.0.2");
        assert_eq!(
            doors.open(&event("ssh", 5), src, T0_MS, T0_UNIX_MS, &mut out),
            Opened::Opened
        );
        assert_eq!(kinds(&out), [CommandKind::Start]);
        assert_eq!(doors.journal_errors(), 1);
        // Re-arm retries the journal (and fails again), stop stays.
        doors.open(
            &event("ssh", 5),
            src,
            T0_MS + 1_000,
            T0_UNIX_MS + 1000,
            &mut out,
        );
        assert_eq!(doors.journal_errors(), 2);
        out.clear();
        doors.tick(T0_MS + 6_000, &mut out);
        assert_eq!(kinds(&out), [CommandKind::Stop]);
        assert_eq!(out[0].journal_id, None);
        assert_eq!(out[0].src, src);
    }

    #[test]
    fn unusable_state_directory_still_closes_from_memory() {
        let tmp = Tmp::new("doors-notdir");
        let file = tmp.0.join("file");
        fs::write(&file, b"").unwrap();
        // The daemon logs this and runs without a journal.
        assert!(Journal::open(&file.join("state")).is_err());
        let mut doors = Doors::new(None, T0_MS, T0_UNIX_MS);
        let mut out = Vec::new();
        doors.open(
            &event("ssh", 1),
            ip("10.199.0.2"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        doors.tick(T0_MS + 1_000, &mut out);
        assert_eq!(kinds(&out), [CommandKind::Start, CommandKind::Stop]);
    }

    #[test]
    fn close_all_emits_every_pending_stop_once() {
        let tmp = Tmp::new("doors-close");
        let (journal, _, _) = Journal::open(&tmp.0).unwrap();
        let mut doors = Doors::new(Some(journal), T0_MS, T0_UNIX_MS);
        let mut out = Vec::new();
        for (i, delay) in [300, 10, 86_400].into_iter().enumerate() {
            let src = IpAddr::from([10, 0, 0, i as u8 + 1]);
            doors.open(&event("ssh", delay), src, T0_MS, T0_UNIX_MS, &mut out);
        }
        out.clear();
        doors.close_all(&mut out);
        assert_eq!(kinds(&out), [CommandKind::Stop; 3]);
        let srcs: Vec<String> = out.iter().map(|r| r.src.to_string()).collect();
        assert_eq!(srcs, ["10.0.0.2", "10.0.0.1", "10.0.0.3"]);
        assert_eq!(doors.pending(), 0);
        let ids: Vec<u64> = out.iter().map(|r| r.journal_id.unwrap()).collect();
        out.clear();
        doors.tick(T0_MS + 100_000_000, &mut out);
        doors.close_all(&mut out);
        assert!(out.is_empty());
        // Nothing is left keyed as open: the same door opens afresh.
        let again = doors.open(
            &event("ssh", 300),
            ip("10.0.0.1"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        assert_eq!(again, Opened::Opened);
        doors.close_all(&mut out);
        let id = out[1].journal_id.unwrap();
        out.clear();
        for id in ids.into_iter().chain([id]) {
            doors.stop_ran(id);
        }
        drop(doors);
        let (_, entries, _) = Journal::open(&tmp.0).unwrap();
        assert!(entries.is_empty());
    }
}
