//! Logging: one short greppable line per fact. Foreground logs go to stderr;
//! in daemon mode they go to syslog (ident `tportknockd`, facility daemon).
//! A knockd config's `UseSyslog` and `LogFile` add syslog and a file.
//!
//! Logging never blocks: a reader that stops reading (stderr to a pipe
//! nobody drains, a `/dev/log` whose daemon hangs) must not stop doors from
//! opening and closing. stderr is written without waiting — `send` with
//! `MSG_DONTWAIT` on a socket, a non-blocking description of its own on a
//! pipe or terminal — and syslog through a non-blocking socket. A line that
//! cannot be written now is dropped and counted, and the next line that gets
//! through is preceded by "N log lines dropped". Lines are cut to
//! [`MAX_LINE`] bytes so that a write to a pipe is atomic.
//!
//! When stderr is the systemd journal (`JOURNAL_STREAM` names its device and
//! inode), each line starts with its `<N>` priority (sd-daemon(3)) instead
//! of the program name, which the journal adds itself.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Severity, numbered as syslog's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed.
    Error = 3,
    /// Something is wrong or risky, and handled.
    Warn = 4,
    /// What happened: doors, commands, reloads.
    Info = 6,
    /// Every step (`-d`).
    Debug = 7,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Longest line written, in bytes (less than `PIPE_BUF` with the prefixes).
pub const MAX_LINE: usize = 3_900;
/// Where syslog listens.
const DEV_LOG: &str = "/dev/log";

static DEBUG: AtomicBool = AtomicBool::new(false);
static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    syslog_main: false,
    also_syslog: false,
    stderr: None,
    syslog: None,
    file: None,
});

struct Sinks {
    /// Daemon mode: syslog instead of stderr.
    syslog_main: bool,
    /// stderr and syslog (knockd's `UseSyslog`).
    also_syslog: bool,
    /// Opened at the first line written to stderr.
    stderr: Option<Stream>,
    syslog: Option<Syslog>,
    file: Option<File>,
}

/// Turns debug lines on or off.
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether debug lines are written.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

fn sinks() -> std::sync::MutexGuard<'static, Sinks> {
    SINKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Switch to syslog; called once the daemon has detached.
pub fn use_syslog() {
    let mut s = sinks();
    s.syslog_main = true;
    // stderr is /dev/null from here on: let go of our copy of the old one.
    s.stderr = None;
}

/// Also log to syslog when the main sink is stderr (knockd's `UseSyslog`).
pub fn also_syslog() {
    sinks().also_syslog = true;
}

/// Also append every line, time-stamped, to `path` (knockd's `LogFile`).
pub fn to_file(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    sinks().file = Some(file);
    Ok(())
}

/// Writes one line at `level` to every sink; never waits for a reader.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let mut line = sanitize(&args.to_string());
    clip_line(&mut line);
    let mut s = sinks();
    let to_syslog = s.syslog_main || s.also_syslog;
    if !s.syslog_main {
        let stream = s
            .stderr
            .get_or_insert_with(|| Stream::stderr(std::env::var("JOURNAL_STREAM").ok().as_deref()));
        stream.line(level, &line);
    }
    if to_syslog {
        s.syslog
            .get_or_insert_with(|| Syslog::new(DEV_LOG))
            .line(level, &line);
    }
    if let Some(f) = s.file.as_mut() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(f, "{} {}: {line}", utc(secs), level.tag());
    }
}

/// Cuts `line` to [`MAX_LINE`] bytes at a character boundary.
fn clip_line(line: &mut String) {
    if line.len() <= MAX_LINE {
        return;
    }
    let mut end = MAX_LINE - 3;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line.push('…');
}

/// How a write that must not wait went.
enum Sent {
    All,
    /// Some bytes went out, not all: the line is cut.
    Part,
    /// Nothing went out (the reader is full or gone).
    Nothing,
}

/// How stderr is written without waiting.
#[derive(Debug)]
enum Fd {
    /// A socket (e.g. the journal's): `send` with `MSG_DONTWAIT`.
    Socket(std::os::fd::OwnedFd),
    /// A pipe or terminal, reopened as a description of our own with
    /// `O_NONBLOCK` (setting it on the shared one would surprise whoever
    /// else holds it, e.g. the shell).
    Own(File),
    /// A regular file (writes do not wait for a reader), or whatever could
    /// not be reopened.
    Plain(File),
}

/// A line-oriented stream (stderr) with drop accounting.
#[derive(Debug)]
pub struct Stream {
    fd: Option<Fd>,
    /// `<N>` prefixes, no program name.
    journal: bool,
    dropped: u64,
    /// The last line went out only in part: start the next on a new line.
    cut: bool,
}

impl Stream {
    /// stderr, as `JOURNAL_STREAM` (`DEVICE:INODE`, if set) says whether
    /// it is the journal.
    fn stderr(journal_stream: Option<&str>) -> Stream {
        let fd = std::io::stderr().as_fd().try_clone_to_owned().ok();
        match fd {
            Some(fd) => Stream::new(fd, journal_stream),
            None => Stream {
                fd: None,
                journal: false,
                dropped: 0,
                cut: false,
            },
        }
    }

    /// Wraps `fd`; `journal_stream` as in the `JOURNAL_STREAM` variable.
    pub fn new(fd: std::os::fd::OwnedFd, journal_stream: Option<&str>) -> Stream {
        let meta = fd
            .try_clone()
            .map(File::from)
            .and_then(|f| f.metadata())
            .ok();
        let journal = match (&meta, journal_stream.and_then(parse_dev_ino)) {
            (Some(m), Some((dev, ino))) => m.dev() == dev && m.ino() == ino,
            _ => false,
        };
        let kind = meta.as_ref().map(|m| m.mode() & libc::S_IFMT);
        let fd = match kind {
            Some(libc::S_IFSOCK) => Fd::Socket(fd),
            Some(libc::S_IFIFO | libc::S_IFCHR) => match reopen_nonblocking(&fd) {
                Ok(f) => Fd::Own(f),
                Err(_) => Fd::Plain(File::from(fd)),
            },
            _ => Fd::Plain(File::from(fd)),
        };
        Stream {
            fd: Some(fd),
            journal,
            dropped: 0,
            cut: false,
        }
    }

    /// Lines dropped since the last one that went out.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether lines carry `<N>` priorities for the journal.
    pub fn is_journal(&self) -> bool {
        self.journal
    }

    /// Writes one (sanitized, clipped) line, or counts it as dropped.
    pub fn line(&mut self, level: Level, line: &str) {
        if self.dropped > 0 {
            let n = self.dropped;
            let note = format!("{n} log line(s) dropped: the log reader is not keeping up");
            let text = self.format(Level::Warn, &note);
            if !self.send(&text) {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        let text = self.format(level, line);
        if !self.send(&text) {
            self.dropped += 1;
        }
    }

    fn format(&self, level: Level, line: &str) -> String {
        let lead = if self.cut { "\n" } else { "" };
        if self.journal {
            format!("{lead}<{}>{}: {line}\n", level as u8, level.tag())
        } else {
            format!("{lead}tportknockd: {}: {line}\n", level.tag())
        }
    }

    /// True when the whole text went out.
    fn send(&mut self, text: &str) -> bool {
        let Some(fd) = &self.fd else {
            return false;
        };
        let sent = match fd {
            Fd::Socket(s) => send_dontwait(s, text.as_bytes()),
            Fd::Own(f) => write_once(&mut &*f, text.as_bytes()),
            Fd::Plain(f) => match (&*f).write_all(text.as_bytes()) {
                Ok(()) => Sent::All,
                Err(_) => Sent::Nothing,
            },
        };
        match sent {
            Sent::All => {
                self.cut = false;
                true
            }
            Sent::Part => {
                self.cut = true;
                true
            }
            Sent::Nothing => false,
        }
    }
}

/// `DEVICE:INODE` as in `JOURNAL_STREAM`.
fn parse_dev_ino(text: &str) -> Option<(u64, u64)> {
    let (dev, ino) = text.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Opens `/proc/self/fd/N` for `fd`: a new description of the same pipe or
/// terminal, non-blocking.
fn reopen_nonblocking(fd: &std::os::fd::OwnedFd) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn write_once(w: &mut impl Write, bytes: &[u8]) -> Sent {
    loop {
        return match w.write(bytes) {
            Ok(n) if n == bytes.len() => Sent::All,
            Ok(0) => Sent::Nothing,
            Ok(_) => Sent::Part,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => Sent::Nothing,
        };
    }
}

fn send_dontwait(fd: &std::os::fd::OwnedFd, bytes: &[u8]) -> Sent {
    let sock = socket2::SockRef::from(fd);
    loop {
        return match sock.send_with_flags(bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
            Ok(n) if n == bytes.len() => Sent::All,
            Ok(0) => Sent::Nothing,
            Ok(_) => Sent::Part,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => Sent::Nothing,
        };
    }
}

/// syslog over a non-blocking datagram socket, RFC 3164 priorities
/// (facility daemon).
#[derive(Debug)]
pub struct Syslog {
    sock: Option<UnixDatagram>,
    path: std::path::PathBuf,
    dropped: u64,
}

impl Syslog {
    /// A sender to the syslog socket at `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Syslog {
        let sock = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        Syslog {
            sock,
            path: path.into(),
            dropped: 0,
        }
    }

    /// Lines dropped since the last one that went out.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sends one line, or counts it as dropped.
    pub fn line(&mut self, level: Level, line: &str) {
        if self.dropped > 0 {
            let note = format!(
                "{} log line(s) dropped: the log reader is not keeping up",
                self.dropped
            );
            if !self.send(Level::Warn, &note) {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if !self.send(level, line) {
            self.dropped += 1;
        }
    }

    fn send(&self, level: Level, line: &str) -> bool {
        // facility daemon (3) * 8 + severity
        let msg = format!(
            "<{}>tportknockd[{}]: {line}",
            3 * 8 + level as u8,
            std::process::id()
        );
        self.sock
            .as_ref()
            .is_some_and(|s| s.send_to(msg.as_bytes(), &self.path).is_ok())
    }
}

/// `2026-11-21 08:50:00` (UTC) for Unix time `secs`.
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Log lines may carry attacker-chosen or command-chosen text: keep them on
/// one line and printable. Besides control characters, the Unicode line and
/// paragraph separators (some viewers break lines there) and the invisible
/// format characters (bidi overrides can make a line read differently from
/// its bytes) are escaped.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// At most `per_sec` lines a second of some kind; the rest are counted and
/// the count handed out once, when its second is over. Bounds what a flood
/// can make the log print (the logger drops what its reader cannot take,
/// but a reader that keeps up would otherwise get every line).
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_sec: u32,
    /// Start of the current one-second window.
    window_ms: u64,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    /// A limit of `per_sec` lines a second, its first window from `now_ms`.
    pub const fn new(per_sec: u32, now_ms: u64) -> RateLimit {
        RateLimit {
            per_sec,
            window_ms: now_ms,
            used: 0,
            suppressed: 0,
        }
    }

    /// Starts a new window if the current one is over; returns how many
    /// lines the ended window suppressed, if any (each count once).
    pub fn roll(&mut self, now_ms: u64) -> Option<u64> {
        if now_ms < self.window_ms.saturating_add(1000) {
            return None;
        }
        self.window_ms = now_ms;
        self.used = 0;
        Some(std::mem::take(&mut self.suppressed)).filter(|&n| n > 0)
    }

    /// Whether one more line fits in the current window; if not, it is
    /// counted as suppressed.
    pub fn allow(&mut self) -> bool {
        if self.used < self.per_sec {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Lines suppressed in the current window so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// Logs at [`Level::Error`](crate::daemon::log::Level).
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::daemon::log::write($crate::daemon::log::Level::Error, format_args!($($t)*)) } }
/// Logs at [`Level::Warn`](crate::daemon::log::Level).
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::daemon::log::write($crate::daemon::log::Level::Warn, format_args!($($t)*)) } }
/// Logs at [`Level::Info`](crate::daemon::log::Level).
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::daemon::log::write($crate::daemon::log::Level::Info, format_args!($($t)*)) } }
/// Logs at [`Level::Debug`](crate::daemon::log::Level), when `-d` is on.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { if $crate::daemon::log::debug_enabled() { $crate::daemon::log::write($crate::daemon::log::Level::Debug, format_args!($($t)*)) } } }

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sanitize_escapes_control_bytes() {
        assert_eq!(sanitize("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(sanitize("plain %IP% #1"), "plain %IP% #1");
        assert_eq!(sanitize("\u{85}x\r\0"), "\\u{85}x\\r\\u{0}");
        // Unicode line breaks and bidi overrides are escaped too; ordinary
        // non-ASCII text stays readable.
        assert_eq!(
            sanitize("a\u{2028}b\u{202e}c\u{2066}d\u{feff}"),
            "a\\u{2028}b\\u{202e}c\\u{2066}d\\u{feff}"
        );
        assert_eq!(sanitize("Grüße ✓"), "Grüße ✓");
    }

    #[test]
    fn sanitized_text_is_one_printable_line() {
        // Every char of the first planes, and invalid UTF-8 as the runner
        // receives it (lossily decoded).
        let all: String = (0..0x3_0000u32).filter_map(char::from_u32).collect();
        let lossy = String::from_utf8_lossy(b"\xff\xfe\x1b[2J\xc0\n").into_owned();
        for text in [all, lossy] {
            let s = sanitize(&text);
            assert!(!s.chars().any(|c| c.is_control() || invisible(c)));
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_250_999), "2026-11-21 08:49:59");
    }

    fn read_available(f: &File) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = (&*f).read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_pipe_nobody_reads_drops_and_counts_and_never_blocks() {
        let (rd, wr) = crate::sys::process::pipe().unwrap();
        let rd = File::from(rd);
        crate::sys::process::set_nonblocking(&rd).unwrap();
        let mut s = Stream::new(wr, None);
        assert!(!s.is_journal());
        let line = "x".repeat(1000);
        let t = std::time::Instant::now();
        for _ in 0..1_000 {
            s.line(Level::Info, &line);
        }
        // 64 KiB of pipe holds about 64 of these lines; the rest dropped,
        // and nothing waited for a reader.
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        let dropped = s.dropped();
        assert!((900..1_000).contains(&dropped), "{dropped}");
        let text = read_available(&rd);
        assert_eq!(text.lines().count() as u64, 1_000 - dropped);
        assert!(text
            .lines()
            .all(|l| l == format!("tportknockd: info: {line}")));
        // The reader is back: the next line says how many were lost.
        s.line(Level::Error, "next");
        assert_eq!(
            read_available(&rd),
            format!(
                "tportknockd: warning: {dropped} log line(s) dropped: the log reader is not \
                 keeping up\ntportknockd: error: next\n"
            )
        );
        assert_eq!(s.dropped(), 0);
    }

    #[test]
    fn the_journal_gets_priorities_and_no_program_name() {
        use std::os::unix::net::UnixStream;
        let (ours, theirs) = UnixStream::pair().unwrap();
        let meta = {
            let dup = ours.as_fd().try_clone_to_owned().map(File::from).unwrap();
            dup.metadata().unwrap()
        };
        let stream = format!("{}:{}", meta.dev(), meta.ino());
        let mut s = Stream::new(ours.as_fd().try_clone_to_owned().unwrap(), Some(&stream));
        assert!(s.is_journal());
        s.line(Level::Error, "bad");
        s.line(Level::Warn, "careful");
        s.line(Level::Info, "fine");
        s.line(Level::Debug, "detail");
        drop(s);
        drop(ours);
        let mut text = String::new();
        (&theirs).read_to_string(&mut text).unwrap();
        assert_eq!(
            text,
            "<3>error: bad\n<4>warning: careful\n<6>info: fine\n<7>debug: detail\n"
        );
        // Another socket's device:inode: not the journal.
        let (other, _peer) = UnixStream::pair().unwrap();
        let s = Stream::new(other.as_fd().try_clone_to_owned().unwrap(), Some("1:2"));
        assert!(!s.is_journal());
        let s = Stream::new(other.as_fd().try_clone_to_owned().unwrap(), Some("garbage"));
        assert!(!s.is_journal());
    }

    #[test]
    fn a_syslog_that_never_reads_drops_and_counts() {
        let dir = crate::testutil::Scratch::new("log-syslog");
        let path = dir.0.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(&path);
        let t = std::time::Instant::now();
        for i in 0..2_000 {
            s.line(Level::Info, &format!("line {i}"));
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        let dropped = s.dropped();
        assert!(dropped > 0, "the socket queue never filled");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("<30>tportknockd[{}]: line 0", std::process::id())
        );
        server.set_nonblocking(true).unwrap();
        while server.recv(&mut buf).is_ok() {}
        s.line(Level::Error, "after");
        let n = server.recv(&mut buf).unwrap();
        let note = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(note.starts_with("<28>tportknockd["), "{note}");
        assert!(
            note.ends_with(&format!(
                "]: {dropped} log line(s) dropped: the log reader is not keeping up"
            )),
            "{note}"
        );
        let n = server.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .ends_with("]: after"));
    }

    #[test]
    fn a_rate_limit_passes_its_share_and_counts_the_rest_once() {
        let mut r = RateLimit::new(3, 10_000);
        assert_eq!(r.roll(10_000), None);
        let passed = (0..10).filter(|_| r.allow()).count();
        assert_eq!((passed, r.suppressed()), (3, 7));
        // Within the same second: nothing more passes, nothing is reported.
        assert_eq!(r.roll(10_999), None);
        assert!(!r.allow());
        // The second is over: its count once, and a fresh share.
        assert_eq!(r.roll(11_000), Some(8));
        assert_eq!(r.roll(12_500), None, "counted once");
        assert!(r.allow() && r.allow() && r.allow() && !r.allow());
        assert_eq!(r.roll(14_000), Some(1));
    }

    #[test]
    fn long_lines_are_clipped_at_a_character_boundary() {
        let mut line = "é".repeat(MAX_LINE);
        clip_line(&mut line);
        assert!(line.len() <= MAX_LINE && line.ends_with('…'));
        let mut short = "abc".to_string();
        clip_line(&mut short);
        assert_eq!(short, "abc");
    }
}
