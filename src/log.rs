//! Logging: one short greppable line per fact. Foreground logs go to stderr;
//! in daemon mode they go to syslog (ident `tportknockd`, facility daemon).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

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

pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let line = sanitize(&args.to_string());
    if SINK.load(Ordering::Relaxed) == 1 {
        syslog(level, &line);
    } else {
        let tag = match level {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        let _ = writeln!(std::io::stderr().lock(), "tportknockd: {tag}: {line}");
    }
}

/// Log lines may carry attacker-chosen or command-chosen text: keep them on
/// one line and printable.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
macro_rules! error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { if $crate::log::debug_enabled() { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_control_bytes() {
        assert_eq!(sanitize("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(sanitize("plain %IP% #1"), "plain %IP% #1");
    }
}
