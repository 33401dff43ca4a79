//! Kernel doors in the door table, without root: a stand-in backend records
//! every set operation (and fails those it is told to); the journal is a
//! real file. The real netlink client is tested against real sets in
//! tests/kernel_doors.rs, the whole daemon in tests/kernel_doors_daemon.rs.

use super::*;
use crate::config::sets::{DoorSets, IpsetName, NftSet};
use crate::doors::journal::tests::Tmp;
use crate::doors::journal::FILE_NAME;
use crate::doors::kernel::KernelError;
use crate::doors::runner::Outcome;
use std::sync::{Arc, Mutex};

const T0_MS: u64 = 5_000_000;
const T0_UNIX_MS: u64 = 1_700_000_000_000;
const SYNC: Duration = Duration::from_secs(5);

/// One operation as the stand-in saw it: `add SET ADDR SECONDS` or
/// `remove SET ADDR`.
type Log = Arc<Mutex<Vec<String>>>;

/// Records operations; fails the adds or removes it is told to.
#[derive(Default, Clone)]
struct Recorder {
    log: Log,
    fail_add: Arc<Mutex<bool>>,
    fail_remove: Arc<Mutex<bool>>,
}

impl Recorder {
    fn ops(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn refuse(target: &SetTarget) -> KernelError {
        KernelError {
            target: target.to_string(),
            reason: Reason::Kernel(libc::EPERM),
            fix: None,
        }
    }
}

impl SetBackend for Recorder {
    fn lookup(&mut self, _: &SetTarget, _: AddrFamily, _: Duration) -> Result<(), KernelError> {
        Ok(())
    }

    fn add(&mut self, t: &SetTarget, addr: IpAddr, timeout: Duration) -> Result<(), KernelError> {
        if *self.fail_add.lock().unwrap() {
            return Err(Recorder::refuse(t));
        }
        let op = format!("add {} {addr} {}", t.spec(), timeout.as_secs());
        self.log.lock().unwrap().push(op);
        Ok(())
    }

    fn remove(&mut self, t: &SetTarget, addr: IpAddr) -> Result<bool, KernelError> {
        if *self.fail_remove.lock().unwrap() {
            return Err(Recorder::refuse(t));
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("remove {} {addr}", t.spec()));
        Ok(true)
    }
}

fn sets(v4: &str, v6: &str) -> DoorSets {
    DoorSets {
        nft: Some(NftSet::parse(v4).unwrap()),
        nft_6: Some(NftSet::parse(v6).unwrap()),
        ipset: Some(IpsetName::parse("k4").unwrap()),
        ..DoorSets::default()
    }
}

/// An event whose door is a kernel door (nftables and ipset for IPv4,
/// nftables for IPv6), with `stop` as its stop command if given.
fn event(name: &str, delay: u32, stop: Option<&str>) -> Event {
    Event {
        name: name.into(),
        line: 1,
        timeout: 5,
        start_command: String::new(),
        stop_command: stop.map(str::to_string),
        command_delay: Some(delay),
        sets: sets("inet f k4", "inet f k6"),
        ..Default::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn doors_with(journal: Option<Journal>) -> (Doors, Recorder) {
    let mut doors = Doors::new(journal, DoorLimits::default(), T0_MS).unwrap();
    let rec = Recorder::default();
    doors.set_backend(Box::new(rec.clone()));
    (doors, rec)
}

fn journaled(tmp: &Tmp) -> (Doors, Recorder) {
    doors_with(Some(Journal::open(&tmp.0).unwrap().0))
}

fn on_disk(tmp: &Tmp) -> Vec<JournalEntry> {
    journal::tests::parse_file(&tmp.0.join(FILE_NAME))
}

fn completion(req: &CommandRequest, outcome: Outcome) -> Completion {
    Completion {
        tag: Some(req.id),
        label: String::new(),
        outcome,
        duration: Duration::ZERO,
        pid: None,
        output: String::new(),
        discarded: 0,
    }
}

#[test]
fn the_door_is_journaled_then_added_with_its_delay_and_left_to_the_kernel() {
    let tmp = Tmp::new("kdoor-open");
    let (mut doors, rec) = journaled(&tmp);
    let mut out = Vec::new();
    let src = ip("10.199.0.2");
    let ev = event("ssh", 30, None);
    assert_eq!(
        doors.open(&ev, src, T0_MS, T0_UNIX_MS, &mut out),
        Opened::Opened
    );
    // Nothing is added before the record of the door is written.
    assert!(rec.ops().is_empty());
    assert!(doors.sync_journal(SYNC));
    let entries = on_disk(&tmp);
    assert_eq!(entries.len(), 1);
    let specs: Vec<String> = entries[0].sets.iter().map(|s| s.spec()).collect();
    assert_eq!(specs, ["nft inet f k4", "ipset k4"]);
    assert_eq!(entries[0].due_unix_ms, T0_UNIX_MS + 30_000);
    assert_eq!(entries[0].stop_command, "");
    doors.tick(T0_MS + 1, &mut out);
    assert_eq!(
        rec.ops(),
        [
            "add nft inet f k4 10.199.0.2 30",
            "add ipset k4 10.199.0.2 30"
        ]
    );
    assert!(out.is_empty(), "no command: {out:?}");
    assert_eq!((doors.pending(), doors.in_flight()), (1, 0));
    assert_eq!(doors.stats().kernel_doors, 1);
    // At its time the kernel removes the elements: the daemon removes
    // nothing, and forgets the door.
    doors.tick(T0_MS + 29_999, &mut out);
    assert_eq!(doors.pending(), 1);
    doors.tick(T0_MS + 30_000, &mut out);
    assert!(out.is_empty());
    assert!(rec.ops().is_empty(), "no remove at the due time");
    assert_eq!(doors.pending(), 0);
    doors.finish(SYNC);
    assert!(on_disk(&tmp).is_empty(), "journal emptied at the due time");
}

#[test]
fn a_door_the_kernel_alone_closes_opens_once_written_the_others_once_synced() {
    let tmp = Tmp::new("kdoor-early");
    let (mut journal, _, _) = Journal::open(&tmp.0).unwrap();
    // A disk that takes a second to sync.
    journal.set_sync_delay_for_test(Duration::from_secs(1));
    let (mut doors, rec) = doors_with(Some(journal));
    let mut out = Vec::new();
    let t0 = std::time::Instant::now();
    doors.open(
        &event("kernel", 30, None),
        ip("10.0.0.1"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    doors.open(
        &event("with-stop", 30, Some("undo %IP%")),
        ip("10.0.0.2"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    let fd = doors.wake_fd().unwrap();
    let woke = crate::sys::process::poll_readable([Some(fd)], Some(SYNC)).unwrap();
    assert_eq!(woke, [true]);
    doors.tick(T0_MS + 1, &mut out);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "waited for the sync"
    );
    assert_eq!(
        rec.ops(),
        ["add nft inet f k4 10.0.0.1 30", "add ipset k4 10.0.0.1 30"],
        "only the door the kernel alone closes is open before the sync"
    );
    // Its record is in the file already (what `kill -9` leaves behind).
    assert_eq!(on_disk(&tmp).len(), 2);
    assert!(doors.sync_journal(SYNC));
    doors.tick(T0_MS + 2, &mut out);
    assert_eq!(
        rec.ops(),
        ["add nft inet f k4 10.0.0.2 30", "add ipset k4 10.0.0.2 30"]
    );
}

#[test]
fn commands_run_after_the_add_and_at_the_due_time() {
    let (mut doors, rec) = doors_with(None);
    let mut out = Vec::new();
    let mut ev = event("ssh", 30, Some("logger closed %IP%"));
    ev.start_command = "logger opened %IP%".into();
    doors.open(&ev, ip("10.0.0.1"), T0_MS, T0_UNIX_MS, &mut out);
    assert_eq!(rec.ops().len(), 2, "added before the start command");
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].kind, out[0].command.as_str()),
        (CommandKind::Start, "logger opened 10.0.0.1")
    );
    let start = out.pop().unwrap();
    assert_eq!(doors.in_flight(), 1);
    doors.finished(
        vec![completion(&start, Outcome::Exited(0))],
        T0_MS + 5,
        &mut out,
    );
    doors.tick(T0_MS + 30_000, &mut out);
    assert_eq!(
        (out[0].kind, out[0].command.as_str()),
        (CommandKind::Stop, "logger closed 10.0.0.1")
    );
    assert!(rec.ops().is_empty(), "the kernel removes, the command runs");
    let stop = out.pop().unwrap();
    doors.finished(
        vec![completion(&stop, Outcome::Exited(0))],
        T0_MS + 30_010,
        &mut out,
    );
    assert_eq!(doors.pending(), 0);
}

#[test]
fn a_knock_on_an_open_kernel_door_refreshes_it_to_the_full_delay() {
    let (mut doors, rec) = doors_with(None);
    let mut out = Vec::new();
    let ev = event("ssh", 10, None);
    let src = ip("10.0.0.1");
    doors.open(&ev, src, T0_MS, T0_UNIX_MS, &mut out);
    rec.ops();
    // At 80 % of the delay.
    assert_eq!(
        doors.open(&ev, src, T0_MS + 8_000, T0_UNIX_MS + 8_000, &mut out),
        Opened::Rearmed
    );
    assert_eq!(
        rec.ops(),
        ["add nft inet f k4 10.0.0.1 10", "add ipset k4 10.0.0.1 10"]
    );
    doors.tick(T0_MS + 10_000, &mut out);
    assert_eq!(doors.pending(), 1, "still open past the first deadline");
    doors.tick(T0_MS + 18_000, &mut out);
    assert_eq!(doors.pending(), 0);
    assert!(out.is_empty() && rec.ops().is_empty());
}

#[test]
fn shutdown_removes_the_elements_then_runs_the_stop_command() {
    let tmp = Tmp::new("kdoor-term");
    let (mut doors, rec) = journaled(&tmp);
    let mut out = Vec::new();
    doors.open(
        &event("ssh", 600, None),
        ip("10.0.0.1"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    doors.open(
        &event("web", 600, Some("logger bye %IP%")),
        ip("fd00::1"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    assert!(doors.sync_journal(SYNC));
    doors.tick(T0_MS + 1, &mut out);
    assert_eq!(
        rec.ops(),
        [
            "add nft inet f k4 10.0.0.1 600",
            "add ipset k4 10.0.0.1 600",
            "add nft inet f k6 fd00::1 600"
        ]
    );
    doors.close_all(&mut out);
    assert_eq!(
        rec.ops(),
        [
            "remove nft inet f k4 10.0.0.1",
            "remove ipset k4 10.0.0.1",
            "remove nft inet f k6 fd00::1"
        ]
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].command, "logger bye fd00::1");
    let stop = out.pop().unwrap();
    // The IPv4 door is closed; the IPv6 one once its command has ended.
    assert_eq!(doors.pending(), 1);
    doors.finished(
        vec![completion(&stop, Outcome::Exited(0))],
        T0_MS + 2,
        &mut out,
    );
    assert_eq!(doors.pending(), 0);
    doors.finish(SYNC);
    assert!(on_disk(&tmp).is_empty());
}

#[test]
fn a_failed_remove_at_shutdown_stays_in_the_journal_and_is_counted() {
    let tmp = Tmp::new("kdoor-fail");
    let (mut doors, rec) = journaled(&tmp);
    let mut out = Vec::new();
    doors.open(
        &event("ssh", 600, None),
        ip("10.0.0.1"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    assert!(doors.sync_journal(SYNC));
    doors.tick(T0_MS + 1, &mut out);
    *rec.fail_remove.lock().unwrap() = true;
    doors.close_all(&mut out);
    let st = doors.stats();
    assert_eq!((st.netlink_errors, st.stop_failures), (2, 1));
    assert_eq!(doors.pending(), 0);
    doors.finish(SYNC);
    assert_eq!(on_disk(&tmp).len(), 1, "kept for the next start");
}

#[test]
fn a_failed_add_is_counted_and_the_command_still_runs() {
    let (mut doors, rec) = doors_with(None);
    *rec.fail_add.lock().unwrap() = true;
    let mut out = Vec::new();
    // No command: nothing ran, so there is nothing to close.
    doors.open(
        &event("ssh", 30, None),
        ip("10.0.0.1"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    assert_eq!(doors.stats().netlink_errors, 2);
    assert_eq!(doors.pending(), 0);
    // With a start command: it runs, and the door waits for its time.
    let mut ev = event("web", 30, Some("undo %IP%"));
    ev.start_command = "do %IP%".into();
    doors.open(&ev, ip("10.0.0.2"), T0_MS, T0_UNIX_MS, &mut out);
    assert_eq!(out.len(), 1);
    let start = out.pop().unwrap();
    doors.finished(
        vec![completion(&start, Outcome::Exited(0))],
        T0_MS + 1,
        &mut out,
    );
    assert_eq!(doors.pending(), 1);
    // A re-knock's refresh that fails is counted too; the door stays.
    doors.open(&ev, ip("10.0.0.2"), T0_MS + 2, T0_UNIX_MS + 2, &mut out);
    assert_eq!(doors.stats().netlink_errors, 6);
    assert_eq!(doors.pending(), 1);
}

#[test]
fn without_a_netlink_socket_a_kernel_door_fails_loudly_and_opens_nothing() {
    let mut doors = Doors::new(None, DoorLimits::default(), T0_MS).unwrap();
    let mut out = Vec::new();
    doors.open(
        &event("ssh", 30, None),
        ip("10.0.0.1"),
        T0_MS,
        T0_UNIX_MS,
        &mut out,
    );
    assert_eq!(doors.stats().netlink_errors, 2);
    assert_eq!(doors.pending(), 0);
}

#[test]
fn after_a_restart_expired_doors_are_forgotten_and_the_rest_kept() {
    let tmp = Tmp::new("kdoor-restart");
    {
        let (mut doors, _) = journaled(&tmp);
        let mut out = Vec::new();
        doors.open(
            &event("soon", 10, None),
            ip("10.0.0.1"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        doors.open(
            &event("late", 600, None),
            ip("10.0.0.2"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        doors.open(
            &event("cmd", 10, Some("undo %IP%")),
            ip("10.0.0.3"),
            T0_MS,
            T0_UNIX_MS,
            &mut out,
        );
        assert!(doors.sync_journal(SYNC));
        doors.tick(T0_MS + 1, &mut out);
        // Dropped without close_all: kill -9.
    }
    // 60 s later: "soon" and "cmd" are past their time.
    let (journal, entries, _) = Journal::open(&tmp.0).unwrap();
    assert_eq!(entries.len(), 3);
    let (mut doors, rec) = doors_with(Some(journal));
    let mut out = Vec::new();
    doors.restore(entries, 1_000, T0_UNIX_MS + 60_000, &mut out);
    // Nothing re-added or removed; the overdue stop command runs.
    assert!(rec.ops().is_empty());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].command, "undo 10.0.0.3");
    let stop = out.pop().unwrap();
    doors.finished(vec![completion(&stop, Outcome::Exited(0))], 1_001, &mut out);
    assert_eq!(doors.pending(), 1);
    assert!(doors.sync_journal(SYNC));
    let left = on_disk(&tmp);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event, "late");
    // A new knock of the same source gets a door of its own (re-added).
    doors.open(
        &event("late", 600, None),
        ip("10.0.0.2"),
        2_000,
        T0_UNIX_MS + 61_000,
        &mut out,
    );
    assert!(doors.sync_journal(SYNC));
    doors.tick(2_001, &mut out);
    assert_eq!(rec.ops().len(), 2);
    // The restored one expires at its own time, 540 s from the restart,
    // touching nothing; the new one stays.
    doors.tick(1_000 + 539_999, &mut out);
    assert_eq!(doors.pending(), 2);
    doors.tick(1_000 + 540_000, &mut out);
    assert_eq!(doors.pending(), 1);
    assert!(rec.ops().is_empty());
    doors.close_all(&mut out);
    assert_eq!(
        rec.ops(),
        ["remove nft inet f k4 10.0.0.2", "remove ipset k4 10.0.0.2"]
    );
}

#[test]
fn after_a_reload_with_other_sets_a_knock_opens_a_door_in_the_new_ones() {
    let (mut doors, rec) = doors_with(None);
    let mut out = Vec::new();
    let old = event("ssh", 30, None);
    let src = ip("10.0.0.1");
    doors.open(&old, src, T0_MS, T0_UNIX_MS, &mut out);
    rec.ops();
    let mut new = old.clone();
    new.sets = sets("inet g n4", "inet g n6");
    new.sets.ipset = None;
    assert_eq!(
        doors.open(&new, src, T0_MS + 1_000, T0_UNIX_MS + 1_000, &mut out),
        Opened::Opened
    );
    assert_eq!(rec.ops(), ["add nft inet g n4 10.0.0.1 30"]);
    // A second knock refreshes the new door, not the old one.
    doors.open(&new, src, T0_MS + 2_000, T0_UNIX_MS + 2_000, &mut out);
    assert_eq!(rec.ops(), ["add nft inet g n4 10.0.0.1 30"]);
    // The old door keeps its sets until its time; shutdown removes both.
    doors.tick(T0_MS + 30_000, &mut out);
    assert_eq!(doors.pending(), 1);
    assert!(rec.ops().is_empty());
    doors.close_all(&mut out);
    assert_eq!(rec.ops(), ["remove nft inet g n4 10.0.0.1"]);
}

#[test]
fn an_event_with_sets_for_one_family_runs_commands_for_the_other() {
    let (mut doors, rec) = doors_with(None);
    let mut out = Vec::new();
    let mut ev = event("ssh", 30, None);
    ev.sets.nft_6 = None;
    ev.start_command = "ip6 %IP%".into();
    assert_eq!(
        doors.open(&ev, ip("fd00::9"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::StartOnly
    );
    assert_eq!(out[0].command, "ip6 fd00::9");
    assert!(rec.ops().is_empty());
    ev.start_command = String::new();
    out.clear();
    assert_eq!(
        doors.open(&ev, ip("fd00::8"), T0_MS, T0_UNIX_MS, &mut out),
        Opened::Nothing
    );
}
