//! Logging: one short greppable line per fact. Foreground logs go to stderr;
//! in daemon mode they go to syslog (ident `tportknockd`, facility daemon).
//! A knockd config's `UseSyslog` and `LogFile` add syslog and a file.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

static DEBUG: AtomicBool = AtomicBool::new(false);
static SINK: AtomicU8 = AtomicU8::new(0); // 0 = stderr, 1 = syslog
static ALSO_SYSLOG: AtomicBool = AtomicBool::new(false);
static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Switch to syslog; called once the daemon has detached.
pub fn use_syslog() {
    SINK.store(1, Ordering::Relaxed);
}

/// Also log to syslog when the main sink is stderr (knockd's `UseSyslog`).
pub fn also_syslog() {
    ALSO_SYSLOG.store(true, Ordering::Relaxed);
}

/// Also append every line, time-stamped, to `path` (knockd's `LogFile`).
pub fn to_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    Ok(())
}

pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let line = sanitize(&args.to_string());
    let tag = match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    if SINK.load(Ordering::Relaxed) == 1 {
        syslog(level, &line);
    } else {
        let _ = writeln!(std::io::stderr().lock(), "tportknockd: {tag}: {line}");
        if ALSO_SYSLOG.load(Ordering::Relaxed) {
            syslog(level, &line);
        }
    }
    let mut file = FILE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = file.as_mut() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(f, "{} {tag}: {line}", utc(secs));
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

fn syslog(level: Level, line: &str) {
    use std::os::unix::net::UnixDatagram;
    // facility daemon (3) * 8 + severity
    let msg = format!(
        "<{}>tportknockd[{}]: {}",
        3 * 8 + level as u8,
        std::process::id(),
        line
    );
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(msg.as_bytes(), "/dev/log");
    }
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::daemon::log::write($crate::daemon::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::daemon::log::write($crate::daemon::log::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::daemon::log::write($crate::daemon::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { if $crate::daemon::log::debug_enabled() { $crate::daemon::log::write($crate::daemon::log::Level::Debug, format_args!($($t)*)) } } }

#[cfg(test)]
mod tests {
    use super::*;

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
}
