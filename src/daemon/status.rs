//! `tportknockd -S`: what the daemon holds open, in words.
//!
//! The running daemon answers over its status socket ([`super::control`])
//! with [`render`]: its open doors with the time each has left, the stops
//! pending or being retried, and its counters. When no daemon answers, the
//! door journal in the state directory says which stops a daemon left
//! behind (they run at the next start); the output says it comes from
//! there.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::daemon::control::{self, SOCKET_NAME};
use crate::daemon::exit;
use crate::daemon::log::sanitize;
use crate::doors::journal::{self, JournalEntry};
use crate::doors::status::{DoorState, DoorView};

/// Doors listed per section; the rest are counted.
pub const MAX_LISTED: usize = 1_000;
/// How long `-S` waits for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the running daemon reports.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Its pid.
    pub pid: u32,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Where it captures and what (the `ready:` line's text).
    pub capturing: String,
    /// Every door, as [`crate::doors::Doors::views`] lists them.
    pub doors: Vec<DoorView<'a>>,
    /// Now on the daemon's monotonic clock (the doors' times are on it).
    pub now_ms: u64,
    /// The stats line (what SIGUSR1 logs).
    pub counters: String,
}

/// `3 h 02 min`, `4 min 05 s`, `12 s`: a duration for people.
pub fn human(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {:02} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {:02} h", s / 86_400, s / 3600 % 24),
    }
}

/// The status text the daemon sends.
pub fn render(r: &Report<'_>) -> String {
    let mut out = format!(
        "tportknockd {} running, pid {}, up {}: {}\n",
        env!("CARGO_PKG_VERSION"),
        r.pid,
        human(r.uptime_ms),
        r.capturing
    );
    let (open, stopping): (Vec<&DoorView<'_>>, Vec<&DoorView<'_>>) =
        r.doors.iter().partition(|d| d.is_open());
    section(&mut out, "doors open", &open, |d| door_line(d, r.now_ms));
    section(&mut out, "stops pending or being retried", &stopping, |d| {
        door_line(d, r.now_ms)
    });
    out += &format!("counters: {}\n", r.counters);
    out
}

/// `NAME: N` and up to [`MAX_LISTED`] lines, `  … and N more` after.
fn section<T>(out: &mut String, name: &str, items: &[T], line: impl Fn(&T) -> String) {
    out.push_str(&format!("{name}: {}\n", items.len()));
    for item in items.iter().take(MAX_LISTED) {
        out.push_str("  ");
        out.push_str(&line(item));
        out.push('\n');
    }
    if items.len() > MAX_LISTED {
        out.push_str(&format!("  … and {} more\n", items.len() - MAX_LISTED));
    }
}

/// `10.0.0.2 SSH: open, closes in 27 s`.
fn door_line(d: &DoorView<'_>, now_ms: u64) -> String {
    let left = |at: u64| match at.checked_sub(now_ms) {
        Some(ms) if ms > 0 => format!("in {}", human(ms)),
        _ => "now".to_string(),
    };
    let closes = d.due_ms.map(left).unwrap_or_default();
    let what = match d.state {
        DoorState::Journaling => format!("opening (its stop being journaled), closes {closes}"),
        DoorState::Opening => format!("opening (start command running), closes {closes}"),
        DoorState::Open => format!("open, closes {closes}"),
        DoorState::StartOnly => "start command running (the event has no stop)".to_string(),
        DoorState::Closing if d.failures > 0 => format!(
            "stop running (attempt {}; {} failed)",
            d.failures + 1,
            d.failures
        ),
        DoorState::Closing => "stop running".to_string(),
        DoorState::Retrying => format!(
            "stop failed {} time(s), the door may still be open; next attempt {}",
            d.failures,
            d.retry_at_ms.map(left).unwrap_or_default()
        ),
    };
    let restored = if d.restored {
        " (from the journal of an earlier run)"
    } else {
        ""
    };
    sanitize(&format!("{} {}: {what}{restored}", d.src, d.event))
}

/// Runs `-S`: asks the daemon whose pid file is `pidfile`, else reads the
/// journal in `state_dir`; writes to `out` and returns the exit status
/// ([`exit::OK`], [`exit::NOT_RUNNING`] or [`exit::FAILURE`]).
pub fn run(pidfile: &Path, state_dir: &Path, out: &mut dyn Write) -> i32 {
    let dir = control::socket_dir(pidfile);
    let socket = dir.join(SOCKET_NAME);
    match ask(&dir, "status") {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            if text.starts_with("error: ") {
                exit::FAILURE
            } else {
                exit::OK
            }
        }
        Err(e) if not_there(&e) => {
            if let Some(pid) = running_pid(pidfile) {
                eprintln!(
                    "tportknockd: a tportknockd runs (pid {pid}, {}) but does not answer on {}: \
                     its log says why at start",
                    pidfile.display(),
                    socket.display()
                );
                return exit::FAILURE;
            }
            let _ = writeln!(
                out,
                "tportknockd is not running (no daemon answers on {}).",
                socket.display()
            );
            from_journal(state_dir, now_unix_ms(), out)
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            eprintln!(
                "tportknockd: {}: {e}: the status socket is root's (run tportknockd -S as root)",
                socket.display()
            );
            exit::FAILURE
        }
        Err(e) => {
            eprintln!("tportknockd: {}: {e}", socket.display());
            exit::FAILURE
        }
    }
}

/// No socket, or nobody listening on it.
fn not_there(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR)
    )
}

/// Sends `request` to the socket in `dir` and reads the answer (at most
/// [`control::MAX_ANSWER`] bytes, within [`ANSWER_TIMEOUT`]).
fn ask(dir: &Path, request: &str) -> io::Result<String> {
    let d = crate::sys::dir::Dir::open(dir)?;
    let mut sock = UnixStream::connect(d.proc_path(SOCKET_NAME)?)?;
    sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    sock.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    sock.write_all(format!("{request}\n").as_bytes())?;
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut bytes = Vec::new();
    (&sock)
        .take(control::MAX_ANSWER as u64 + 64)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The pid in `pidfile` if a process called tportknockd has it.
fn running_pid(pidfile: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pidfile).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "tportknockd").then_some(pid)
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The stops the journal in `state_dir` holds; [`exit::NOT_RUNNING`], or
/// [`exit::FAILURE`] when it cannot be read.
fn from_journal(state_dir: &Path, now_unix_ms: u64, out: &mut dyn Write) -> i32 {
    let path = state_dir.join(journal::FILE_NAME);
    match journal::read_pending(state_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let _ = writeln!(
                out,
                "No door journal in {}: no stop is pending.",
                state_dir.display()
            );
            exit::NOT_RUNNING
        }
        Err(e) => {
            eprintln!(
                "tportknockd: cannot read the door journal {}: {e}",
                path.display()
            );
            exit::FAILURE
        }
        Ok(entries) => {
            let _ = out.write_all(journal_text(&path, &entries, now_unix_ms).as_bytes());
            exit::NOT_RUNNING
        }
    }
}

/// The journal's pending stops in words.
fn journal_text(path: &Path, entries: &[JournalEntry], now_unix_ms: u64) -> String {
    let mut out = format!("From the door journal {}:\n", path.display());
    section(
        &mut out,
        "stops pending, run at the next start",
        entries,
        |e| {
            let when = match e.due_unix_ms.checked_sub(now_unix_ms) {
                Some(ms) if ms > 0 => format!("due in {}", human(ms)),
                _ => format!(
                    "overdue by {}: runs at once",
                    human(now_unix_ms - e.due_unix_ms)
                ),
            };
            sanitize(&format!(
                "{} {}: {when}: {}",
                e.src, e.event, e.stop_command
            ))
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::journal::JournalId;

    fn view(src: &str, state: DoorState, due: Option<u64>, failures: u32) -> DoorView<'static> {
        DoorView {
            event: "SSH",
            src: src.parse().unwrap(),
            state,
            due_ms: due,
            retry_at_ms: (state == DoorState::Retrying).then_some(13_000),
            failures,
            restored: false,
        }
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human(0), "0 s");
        assert_eq!(human(1), "1 s");
        assert_eq!(human(27_000), "27 s");
        assert_eq!(human(192_000), "3 min 12 s");
        assert_eq!(human(3 * 3_600_000 + 120_000), "3 h 02 min");
        assert_eq!(human(2 * 86_400_000 + 3_600_000), "2 d 01 h");
    }

    #[test]
    fn the_status_lists_open_doors_then_pending_stops_then_counters() {
        let mut restored = view("10.0.0.7", DoorState::Open, Some(70_000), 0);
        restored.restored = true;
        let report = Report {
            pid: 42,
            uptime_ms: 192_000,
            capturing: "capturing on eth0 (1 event(s): SSH; 3 knock port(s))".into(),
            doors: vec![
                view("10.0.0.4", DoorState::Retrying, Some(9_000), 2),
                view("10.0.0.5", DoorState::Closing, Some(9_500), 0),
                view("10.0.0.2", DoorState::Open, Some(37_000), 0),
                view("10.0.0.3", DoorState::Opening, Some(39_000), 0),
                restored,
                view("10.0.0.8", DoorState::StartOnly, None, 0),
            ],
            now_ms: 10_000,
            counters: "frames=9 doors=5".into(),
        };
        assert_eq!(
            render(&report),
            format!(
                "tportknockd {} running, pid 42, up 3 min 12 s: capturing on eth0 (1 event(s): \
                 SSH; 3 knock port(s))
doors open: 4
  10.0.0.2 SSH: open, closes in 27 s
  10.0.0.3 SSH: opening (start command running), closes in 29 s
  10.0.0.7 SSH: open, closes in 1 min 00 s (from the journal of an earlier run)
  10.0.0.8 SSH: start command running (the event has no stop)
stops pending or being retried: 2
  10.0.0.4 SSH: stop failed 2 time(s), the door may still be open; next attempt in 3 s
  10.0.0.5 SSH: stop running
counters: frames=9 doors=5
",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn a_long_list_is_cut_and_counted() {
        let doors: Vec<DoorView<'static>> = (0..MAX_LISTED + 5)
            .map(|i| {
                let src = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                view(&src, DoorState::Open, Some(60_000), 0)
            })
            .collect();
        let report = Report {
            pid: 1,
            uptime_ms: 0,
            capturing: String::new(),
            doors,
            now_ms: 0,
            counters: String::new(),
        };
        let text = render(&report);
        assert!(text.contains(&format!("doors open: {}\n", MAX_LISTED + 5)));
        assert!(text.contains("  … and 5 more\n"));
        assert_eq!(
            text.lines().filter(|l| l.contains(": open, ")).count(),
            MAX_LISTED
        );
    }

    #[test]
    fn without_a_daemon_the_journal_is_shown_and_said_so() {
        let dir = crate::testutil::Scratch::new("status-journal");
        let mut out = Vec::new();
        assert_eq!(
            from_journal(&dir.0.join("none"), 0, &mut out),
            exit::NOT_RUNNING
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("No door journal in "));
        let entry = |id, due, src: &str, cmd: &str| JournalEntry {
            id: JournalId::new(id),
            due_unix_ms: due,
            delay_ms: 30_000,
            event: "SSH".into(),
            src: src.parse().unwrap(),
            stop_command: cmd.into(),
            sets: Vec::new(),
        };
        let text = journal_text(
            Path::new("/var/lib/tportknockd/doors.journal"),
            &[
                entry(1, 1_000_000 - 12_000, "10.0.0.4", "nft delete\x1b[2J"),
                entry(2, 1_000_000 + 30_000, "10.0.0.5", "close"),
            ],
            1_000_000,
        );
        assert_eq!(
            text,
            "From the door journal /var/lib/tportknockd/doors.journal:
stops pending, run at the next start: 2
  10.0.0.4 SSH: overdue by 12 s: runs at once: nft delete\\u{1b}[2J
  10.0.0.5 SSH: due in 30 s: close
"
        );
    }
}
