//! The door table without root or processes: completions are made up here,
//! the journal is a real file in a scratch directory.

use super::*;
use crate::doors::journal::tests::Tmp;
use crate::doors::journal::FILE_NAME;
use crate::doors::runner::Outcome;
use std::fs;

const T0_MS: u64 = 5_000_000;
const T0_UNIX_MS: u64 = 1_700_000_000_000;
const SYNC: Duration = Duration::from_secs(5);

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

fn texts(out: &[CommandRequest]) -> Vec<&str> {
    out.iter().map(|r| r.command.as_str()).collect()
}

fn memory() -> Doors {
    Doors::new(None, DoorLimits::default(), T0_MS).unwrap()
}

fn journaled(dir: &Tmp) -> Doors {
    let (journal, _, _) = Journal::open(&dir.0).unwrap();
    Doors::new(Some(journal), DoorLimits::default(), T0_MS).unwrap()
}

/// The runner's answer to `req`.
fn done(req: &CommandRequest, outcome: Outcome) -> Completion {
    Completion {
        tag: Some(req.id),
        label: format!("{} {}", req.src, req.event),
        outcome,
        duration: Duration::ZERO,
        pid: None,
        output: String::new(),
        discarded: 0,
    }
}

/// Waits for the journal and releases the starts it was holding.
fn settle_journal(doors: &mut Doors, now_ms: u64, out: &mut Vec<CommandRequest>) {
    assert!(doors.sync_journal(SYNC));
    doors.tick(now_ms, out);
}

/// Runs every request in `out` with `outcome`, repeatedly, until nothing
/// more is asked for at `now_ms`; returns the requests in the order made.
fn run_all(doors: &mut Doors, now_ms: u64, out: &mut Vec<CommandRequest>) -> Vec<CommandRequest> {
    let mut ran = Vec::new();
    while !out.is_empty() {
        let batch: Vec<CommandRequest> = std::mem::take(out);
        let completions = batch.iter().map(|r| done(r, Outcome::Exited(0))).collect();
        ran.extend(batch);
        doors.finished(completions, now_ms, out);
    }
    ran
}

fn on_disk(dir: &Tmp) -> Vec<JournalEntry> {
    journal::tests::parse_file(&dir.0.join(FILE_NAME))
}

#[test]
fn open_starts_now_and_stops_at_the_due_time() {
    let mut doors = memory();
    let mut out = Vec::new();
    let src = ip("10.199.0.2");
    assert_eq!(
        doors.open(&event("ssh", 30), src, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    assert_eq!(kinds(&out), [CommandKind::Start]);
    assert_eq!(texts(&out), ["iptables -I INPUT -s 10.199.0.2 -j ACCEPT"]);
    run_all(&mut doors, T0_MS + 10, &mut out);
    assert_eq!(doors.pending(), 1);
    assert!(doors.next_due_ms().is_some_and(|d| d <= T0_MS + 30_000));
    doors.tick(T0_MS + 29_999, &mut out);
    assert!(out.is_empty());
    doors.tick(T0_MS + 30_000, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop]);
    assert_eq!(texts(&out), ["iptables -D INPUT -s 10.199.0.2 -j ACCEPT"]);
    run_all(&mut doors, T0_MS + 30_010, &mut out);
    assert_eq!(doors.pending(), 0);
    // Closed: the next knock opens again.
    assert_eq!(
        doors.open(&event("ssh", 30), src, T0_MS + 40_000, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    assert_eq!(kinds(&out), [CommandKind::Start]);
}

#[test]
fn a_stop_never_runs_before_its_start_has_ended() {
    // Cmd_Timeout = 0: the stop is due at once, and must still wait.
    let mut doors = memory();
    let mut out = Vec::new();
    let ev = event("ssh", 0);
    let src = ip("10.0.0.7");
    doors.open(&ev, src, T0_MS, T0_UNIX_MS, &mut out);
    let start = out.pop().unwrap();
    assert_eq!(start.kind, CommandKind::Start);
    for t in [T0_MS, T0_MS + 1, T0_MS + 60_000] {
        doors.tick(t, &mut out);
        // A re-knock while the start runs runs no second start.
        assert_eq!(
            doors.open(&ev, src, t, T0_UNIX_MS, &mut out),
            Opened::Rearmed
        );
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(doors.in_flight(), 1);
    doors.finished(
        vec![done(&start, Outcome::Exited(0))],
        T0_MS + 60_000,
        &mut out,
    );
    assert_eq!(kinds(&out), [CommandKind::Stop]);
    let stop = out.pop().unwrap();
    doors.finished(
        vec![done(&stop, Outcome::Exited(0))],
        T0_MS + 60_001,
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!((doors.pending(), doors.in_flight()), (0, 0));
}

#[test]
fn rearm_does_not_start_again_and_pushes_the_stop_out() {
    let mut doors = memory();
    let mut out = Vec::new();
    let src = ip("fd00:199::2");
    let ev = event("ssh", 30);
    doors.open(&ev, src, T0_MS, T0_UNIX_MS, &mut out);
    run_all(&mut doors, T0_MS, &mut out);
    assert_eq!(
        doors.open(&ev, src, T0_MS + 20_000, T0_UNIX_MS, &mut out),
        Opened::Rearmed
    );
    assert!(out.is_empty());
    // Another source or event is a different door.
    doors.open(&ev, ip("fd00:199::3"), T0_MS + 20_000, T0_UNIX_MS, &mut out);
    doors.open(&event("web", 30), src, T0_MS + 20_000, T0_UNIX_MS, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Start, CommandKind::Start]);
    run_all(&mut doors, T0_MS + 20_000, &mut out);
    doors.tick(T0_MS + 30_000, &mut out);
    assert!(out.is_empty(), "re-armed stop fired at its old time");
    doors.tick(T0_MS + 50_000, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop; 3]);
}

#[test]
fn a_knock_while_the_stop_runs_opens_again_after_it() {
    let mut doors = memory();
    let mut out = Vec::new();
    let src = ip("10.0.0.8");
    let ev = event("ssh", 10);
    doors.open(&ev, src, T0_MS, T0_UNIX_MS, &mut out);
    run_all(&mut doors, T0_MS, &mut out);
    doors.tick(T0_MS + 10_000, &mut out);
    let stop = out.pop().unwrap();
    assert_eq!(
        doors.open(&ev, src, T0_MS + 10_001, T0_UNIX_MS, &mut out),
        Opened::Rearmed
    );
    assert!(out.is_empty(), "no start while the stop runs");
    doors.finished(
        vec![done(&stop, Outcome::Exited(0))],
        T0_MS + 10_002,
        &mut out,
    );
    assert_eq!(kinds(&out), [CommandKind::Start]);
    run_all(&mut doors, T0_MS + 10_003, &mut out);
    doors.tick(T0_MS + 20_000, &mut out);
    assert!(out.is_empty());
    doors.tick(T0_MS + 20_001, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop]);
}

#[test]
fn a_failing_stop_is_retried_with_backoff_and_kept_at_shutdown() {
    let tmp = Tmp::new("doors-retry");
    let mut doors = journaled(&tmp);
    let mut out = Vec::new();
    let src = ip("10.0.0.9");
    doors.open(&event("ssh", 1), src, T0_MS, T0_UNIX_MS, &mut out);
    settle_journal(&mut doors, T0_MS, &mut out);
    run_all(&mut doors, T0_MS, &mut out);
    let mut now = T0_MS + 1_000;
    // Fails twice, then succeeds: retried after 1 s, then 2 s.
    for (attempt, wait) in [(1, 1_000), (2, 2_000)] {
        doors.tick(now, &mut out);
        let stop = out.pop().expect("a stop attempt");
        doors.finished(vec![done(&stop, Outcome::Exited(1))], now, &mut out);
        assert!(out.is_empty());
        assert_eq!(doors.stats().retrying, 1);
        assert_eq!(doors.stats().stop_failures, attempt);
        doors.tick(now + wait - 1, &mut out);
        assert!(out.is_empty(), "retried early");
        now += wait;
    }
    doors.tick(now, &mut out);
    let stop = out.pop().unwrap();
    assert_eq!(
        on_disk(&tmp).len(),
        1,
        "the stop stays journaled until it succeeds"
    );
    doors.finished(vec![done(&stop, Outcome::Exited(0))], now, &mut out);
    assert_eq!(doors.pending(), 0);
    assert!(doors.sync_journal(SYNC));
    assert!(on_disk(&tmp).is_empty());

    // One that always fails: run once more at shutdown, then left to the
    // journal.
    doors.open(&event("ssh", 1), src, now, T0_UNIX_MS, &mut out);
    settle_journal(&mut doors, now, &mut out);
    run_all(&mut doors, now, &mut out);
    doors.tick(now + 1_000, &mut out);
    let stop = out.pop().unwrap();
    doors.finished(vec![done(&stop, Outcome::Exited(1))], now + 1_000, &mut out);
    doors.close_all(&mut out);
    let stop = out.pop().expect("shutdown runs the failing stop once more");
    doors.finished(vec![done(&stop, Outcome::Exited(1))], now + 1_100, &mut out);
    assert!(out.is_empty(), "no retry once shutting down");
    assert_eq!(doors.in_flight(), 0);
    doors.finish(SYNC);
    let kept = on_disk(&tmp);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].stop_command,
        "iptables -D INPUT -s 10.0.0.9 -j ACCEPT"
    );
}

#[test]
fn the_journal_holds_the_stop_before_the_start_is_released() {
    let tmp = Tmp::new("doors-before");
    let mut doors = journaled(&tmp);
    let mut out = Vec::new();
    doors.open(
        &event("ssh", 30),
        ip("10.199.0.2"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    assert!(out.is_empty(), "the start waits for the journal");
    settle_journal(&mut doors, T0_MS, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Start]);
    let text = fs::read_to_string(tmp.0.join(FILE_NAME)).unwrap();
    let stop = "iptables -D INPUT -s 10.199.0.2 -j ACCEPT";
    let add = format!(
        "add 1 {} 30000 3:ssh 10.199.0.2 {}:{stop} ",
        T0_UNIX_MS + 30_000,
        stop.len()
    );
    assert!(text.starts_with(&add), "journal: {text:?}");
    run_all(&mut doors, T0_MS, &mut out);
    // A re-arm journals the new due time.
    doors.open(
        &event("ssh", 30),
        ip("10.199.0.2"),
        T0_MS + 10_000,
        T0_UNIX_MS + 10_000,
        &mut out,
    );
    assert!(out.is_empty());
    assert!(doors.sync_journal(SYNC));
    let entries = on_disk(&tmp);
    assert_eq!(entries[0].due_unix_ms, T0_UNIX_MS + 40_000);
    assert_eq!(doors.journal_errors(), 0);
}

#[test]
fn caps_refuse_new_doors_but_rearm_and_free_slots_work() {
    let limits = DoorLimits {
        max_doors: 3,
        max_per_source: 2,
    };
    let mut doors = Doors::new(None, limits, T0_MS).unwrap();
    let mut out = Vec::new();
    let a = ip("10.0.0.1");
    let (ssh, web, ftp) = (event("ssh", 60), event("web", 60), event("ftp", 60));
    assert_eq!(
        doors.open(&ssh, a, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    assert_eq!(
        doors.open(&web, a, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    assert_eq!(
        doors.open(&ftp, a, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Refused(Refusal::Source(2))
    );
    assert_eq!(
        doors.open(&ssh, a, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Rearmed
    );
    assert_eq!(
        doors.open(&ssh, ip("10.0.0.2"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    assert_eq!(
        doors.open(&ssh, ip("10.0.0.3"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::Refused(Refusal::Total(3))
    );
    // A start-only event counts too.
    let mut bell = event("bell", 0);
    bell.stop_command = None;
    bell.command_delay = None;
    assert_eq!(
        doors.open(&bell, ip("10.0.0.4"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::Refused(Refusal::Total(3))
    );
    assert_eq!(doors.stats().refused, 3);
    assert_eq!(doors.stats().open, 3);
    run_all(&mut doors, T0_MS, &mut out);
    doors.tick(T0_MS + 60_000, &mut out);
    run_all(&mut doors, T0_MS + 60_000, &mut out);
    assert_eq!(doors.stats().open, 0);
    assert_eq!(
        doors.open(&bell, ip("10.0.0.4"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::StartOnly
    );
    assert_eq!(doors.stats().open, 1, "a running start-only command counts");
    run_all(&mut doors, T0_MS, &mut out);
    assert_eq!(doors.stats().open, 0);

    // An event's own max_doors.
    let mut capped = event("capped", 60);
    capped.max_doors = Some(1);
    let mut doors = Doors::new(None, DoorLimits::default(), T0_MS).unwrap();
    assert_eq!(
        doors.open(&capped, a, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    assert_eq!(
        doors.open(&capped, ip("10.0.0.2"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::Refused(Refusal::Event(1))
    );
    assert_eq!(
        doors.open(&ssh, ip("10.0.0.2"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
}

#[test]
fn a_flood_of_completions_stays_at_the_cap() {
    let tmp = Tmp::new("doors-flood");
    let (journal, _, _) = Journal::open(&tmp.0).unwrap();
    let limits = DoorLimits {
        max_doors: 1_000,
        max_per_source: 4,
    };
    let mut doors = Doors::new(Some(journal), limits, T0_MS).unwrap();
    let mut out = Vec::new();
    let ev = event("ssh", 600);
    for n in 0..20_000u32 {
        let src = IpAddr::from((0x6440_0000u32 + n).to_be_bytes());
        doors.open(&ev, src, T0_MS, T0_UNIX_MS, &mut out);
    }
    settle_journal(&mut doors, T0_MS, &mut out);
    assert_eq!(out.len(), 1_000);
    assert_eq!(doors.stats().refused, 19_000);
    assert_eq!(doors.in_flight(), 1_000);
    assert_eq!(on_disk(&tmp).len(), 1_000);
}

#[test]
fn events_without_stop_only_start() {
    let mut doors = memory();
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
    let mut doors = memory();
    let mut ev = event("smtp", 5);
    ev.start_command_6 = Some("ip6tables -I INPUT -s %IP%".into());
    ev.stop_command_6 = Some("ip6tables -D INPUT -s %IP%".into());
    let mut out = Vec::new();
    doors.open(&ev, ip("fd00::2"), T0_MS, T0_UNIX_MS, &mut out);
    doors.open(&ev, ip("10.0.0.2"), T0_MS, T0_UNIX_MS, &mut out);
    let ran = run_all(&mut doors, T0_MS, &mut out);
    doors.close_all(&mut out);
    let mut all: Vec<&str> = texts(&ran);
    all.extend(texts(&out));
    assert_eq!(
        all,
        [
            "ip6tables -I INPUT -s fd00::2",
            "iptables -I INPUT -s 10.0.0.2 -j ACCEPT",
            "ip6tables -D INPUT -s fd00::2",
            "iptables -D INPUT -s 10.0.0.2 -j ACCEPT",
        ]
    );
    // An empty IPv6 start means nothing for IPv6.
    let mut doors = memory();
    let mut out = Vec::new();
    ev.start_command_6 = Some(String::new());
    assert_eq!(
        doors.open(&ev, ip("fd00::4"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::Nothing
    );
    assert!(out.is_empty());
}

#[test]
fn restart_runs_overdue_stops_and_schedules_the_rest() {
    let tmp = Tmp::new("doors-restart");
    {
        let mut doors = journaled(&tmp);
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
        settle_journal(&mut doors, T0_MS, &mut out);
        assert_eq!(kinds(&out), [CommandKind::Start, CommandKind::Start]);
        // Dropped without close_all: like kill -9 (the journal is on disk).
    }
    // 60 s later, on a fresh monotonic clock (e.g. after a reboot).
    let (now_ms, now_unix_ms) = (1_000, T0_UNIX_MS + 60_000);
    let (journal, entries, skipped) = Journal::open(&tmp.0).unwrap();
    assert_eq!((entries.len(), skipped), (2, 0));
    let mut doors = Doors::new(Some(journal), DoorLimits::default(), now_ms).unwrap();
    let mut out = Vec::new();
    doors.restore(entries, now_ms, now_unix_ms, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop]);
    assert_eq!(
        (out[0].event.as_str(), out[0].command.as_str()),
        ("soon", "iptables -D INPUT -s 10.199.0.2 -j ACCEPT")
    );
    run_all(&mut doors, now_ms, &mut out);
    assert_eq!(doors.pending(), 1);
    let later_due = now_ms + (3_600 - 60) * 1000;
    doors.tick(later_due - 1, &mut out);
    assert!(out.is_empty());
    // A new knock on the restored door gets its own Start/Stop pair.
    assert_eq!(
        doors.open(
            &event("later", 3_600),
            ip("10.199.0.3"),
            later_due - 1,
            now_unix_ms + 3_539_000,
            &mut out
        ),
        Opened::Opened
    );
    settle_journal(&mut doors, later_due - 1, &mut out);
    run_all(&mut doors, later_due - 1, &mut out);
    doors.tick(later_due, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop]);
    assert_eq!(out[0].event, "later");
    run_all(&mut doors, later_due, &mut out);
    doors.finish(SYNC);
    drop(doors);
    // Only the stop for the new knock remains on disk.
    let entries = on_disk(&tmp);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].due_unix_ms, now_unix_ms + (3_539 + 3_600) * 1000);
    assert!(entries[0].id.get() > 2, "ids are never reused");
}

/// Runs in a child process (this test binary re-executed): opens two doors
/// on the journal named by the environment, says so, then waits to be killed.
fn kill_9_child(dir: &std::path::Path) -> ! {
    use std::io::Write;
    let (journal, _, _) = Journal::open(dir).unwrap();
    let mut doors = Doors::new(Some(journal), DoorLimits::default(), T0_MS).unwrap();
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
    assert!(doors.sync_journal(SYNC));
    doors.tick(T0_MS, &mut out);
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
    let mut doors = Doors::new(Some(journal), DoorLimits::default(), 0).unwrap();
    let mut out = Vec::new();
    doors.restore(entries, 0, T0_UNIX_MS + 30_000, &mut out);
    assert_eq!(texts(&out), ["iptables -D INPUT -s 10.199.0.2 -j ACCEPT"]);
    out.clear();
    doors.tick(569_999, &mut out);
    assert!(out.is_empty());
    doors.tick(570_000, &mut out);
    assert_eq!(texts(&out), ["iptables -D INPUT -s 10.199.0.3 -j ACCEPT"]);
}

#[test]
fn restored_wait_is_capped_by_the_delay() {
    // The door opened while the wall clock ran a year ahead; it has been
    // corrected since. The stop must not wait for that year to pass.
    let tmp = Tmp::new("doors-clock");
    let year_ms = 365 * 86_400 * 1000;
    {
        let mut doors = journaled(&tmp);
        let mut out = Vec::new();
        doors.open(
            &event("ssh", 60),
            ip("10.0.0.1"),
            T0_MS,
            T0_UNIX_MS + year_ms,
            &mut out,
        );
        assert!(doors.sync_journal(SYNC));
    }
    let (journal, entries, _) = Journal::open(&tmp.0).unwrap();
    let mut doors = Doors::new(Some(journal), DoorLimits::default(), 0).unwrap();
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
    let mut doors = Doors::new(Some(journal), DoorLimits::default(), T0_MS).unwrap();
    let mut out = Vec::new();
    let src = ip("10.199.0.2");
    assert_eq!(
        doors.open(&event("ssh", 5), src, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    settle_journal(&mut doors, T0_MS, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Start], "the door opens anyway");
    assert_eq!(doors.journal_errors(), 1);
    run_all(&mut doors, T0_MS, &mut out);
    // Re-arm retries the journal (and fails again); the stop stays.
    doors.open(
        &event("ssh", 5),
        src,
        T0_MS + 1_000,
        T0_UNIX_MS + 1_000,
        &mut out,
    );
    assert!(doors.sync_journal(SYNC));
    assert_eq!(doors.journal_errors(), 2);
    doors.tick(T0_MS + 6_000, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop]);
    assert_eq!(out[0].src, src);
}

#[test]
fn close_all_emits_every_pending_stop_once_in_due_order() {
    let tmp = Tmp::new("doors-close");
    let mut doors = journaled(&tmp);
    let mut out = Vec::new();
    for (i, delay) in [300, 10, 86_400].into_iter().enumerate() {
        let src = IpAddr::from([10, 0, 0, i as u8 + 1]);
        doors.open(&event("ssh", delay), src, T0_MS, T0_UNIX_MS, &mut out);
    }
    settle_journal(&mut doors, T0_MS, &mut out);
    run_all(&mut doors, T0_MS, &mut out);
    // One more whose start has not been released by the journal yet: it
    // never ran, so there is nothing to close.
    doors.open(
        &event("ssh", 5),
        ip("10.0.0.9"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    doors.close_all(&mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop; 3]);
    let srcs: Vec<String> = out.iter().map(|r| r.src.to_string()).collect();
    assert_eq!(srcs, ["10.0.0.2", "10.0.0.1", "10.0.0.3"]);
    // No knock opens anything any more.
    let mut more = Vec::new();
    doors.open(
        &event("ssh", 5),
        ip("10.0.0.8"),
        T0_MS,
        T0_UNIX_MS,
        &mut more,
    );
    assert!(more.is_empty());
    run_all(&mut doors, T0_MS, &mut out);
    assert_eq!((doors.pending(), doors.in_flight()), (0, 0));
    doors.finish(SYNC);
    assert!(on_disk(&tmp).is_empty());
}

#[test]
fn shutdown_closes_a_door_whose_start_is_still_running_once_it_ends() {
    let mut doors = memory();
    let mut out = Vec::new();
    doors.open(
        &event("ssh", 600),
        ip("10.0.0.5"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    let start = out.pop().unwrap();
    doors.close_all(&mut out);
    assert!(out.is_empty(), "the stop waits for the start");
    assert_eq!(doors.in_flight(), 1);
    doors.finished(vec![done(&start, Outcome::TimedOut)], T0_MS + 1, &mut out);
    assert_eq!(kinds(&out), [CommandKind::Stop]);
}

#[test]
fn completions_of_unknown_or_foreign_commands_are_ignored() {
    let mut doors = memory();
    let mut out = Vec::new();
    let mut c = done(
        &CommandRequest {
            kind: CommandKind::Stop,
            event: "x".into(),
            src: ip("10.0.0.1"),
            command: "true".into(),
            id: JournalId::new(777),
        },
        Outcome::Exited(0),
    );
    doors.finished(vec![c.clone()], T0_MS, &mut out);
    c.tag = None;
    doors.finished(vec![c], T0_MS, &mut out);
    assert!(out.is_empty());
    assert_eq!(doors.pending(), 0);
}

/// Replaces the daemon's old `settle` test: a stop leaves the journal only
/// when it exits 0; whatever else happened to it (it failed, was killed,
/// timed out, never started, or its status was lost) keeps it there, for a
/// retry now or at the next start.
#[test]
fn only_a_stop_that_exits_0_leaves_the_journal() {
    let outcomes = [
        Outcome::Exited(0),
        Outcome::Exited(1),
        Outcome::Signaled(9),
        Outcome::TimedOut,
        Outcome::Terminated,
        Outcome::Cancelled,
        Outcome::SpawnFailed("fork".into()),
        Outcome::Lost("reaped elsewhere".into()),
    ];
    for stopping in [false, true] {
        for outcome in &outcomes {
            let tmp = Tmp::new("doors-settle");
            let mut doors = journaled(&tmp);
            let mut out = Vec::new();
            doors.open(
                &event("ssh", 30),
                ip("10.0.0.1"),
                T0_MS,
                T0_UNIX_MS,
                &mut out,
            );
            settle_journal(&mut doors, T0_MS, &mut out);
            run_all(&mut doors, T0_MS, &mut out);
            if stopping {
                doors.close_all(&mut out);
            } else {
                doors.tick(T0_MS + 30_000, &mut out);
            }
            let stop = out.pop().expect("a stop");
            doors.finished(vec![done(&stop, outcome.clone())], T0_MS + 30_000, &mut out);
            assert!(doors.sync_journal(SYNC));
            let kept = on_disk(&tmp).len();
            let want = usize::from(!outcome.success());
            assert_eq!(kept, want, "{outcome:?} (shutting down: {stopping})");
            assert_eq!(
                doors.pending(),
                usize::from(!outcome.success() && !stopping)
            );
        }
    }
}
