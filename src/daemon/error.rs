//! Why the daemon could not start. Each kind keeps its cause, and its text
//! names what failed and, where there is one, the fix.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::capture::netif::NoSuchInterface;
use crate::config::LoadError;
use crate::daemon::exit;
use crate::sys::statedir::StateDirError;

/// A start-up failure; the daemon exits with its
/// [`exit_status`](StartError::exit_status) and its text.
#[derive(Debug)]
pub enum StartError {
    /// The process may not capture: no `CAP_NET_RAW` (not root).
    Privilege {
        /// The user it runs as.
        uid: u32,
    },
    /// The signalfd could not be set up.
    Signals(io::Error),
    /// The configuration does not load (every problem, one a line).
    Config(LoadError),
    /// knockd's `LogFile` cannot be opened.
    LogFile(PathBuf, io::Error),
    /// The pid file cannot be created or locked (another daemon runs).
    PidFile(PathBuf, io::Error),
    /// The rtnetlink sockets or the first address dump failed.
    Netlink(io::Error),
    /// `-i` (or knockd's `Interface`) names no interface.
    NoInterface(NoSuchInterface),
    /// Narrowing the capability sets failed.
    Capabilities(io::Error),
    /// The capture ring cannot be opened on `on` (an interface or "all
    /// interfaces").
    Capture {
        /// Where the capture was to run.
        on: String,
        /// What the kernel said.
        err: io::Error,
    },
    /// The command runner's threads could not start.
    Runner(io::Error),
    /// The state directory is not safely the daemon's own, or another
    /// daemon holds it.
    StateDir(StateDirError),
    /// The journal's writer thread could not start.
    JournalWriter(io::Error),
    /// Kernel doors cannot be written: a set is missing or unusable (each
    /// message names the event, the set, the reason and the fix), the
    /// netlink socket cannot be opened, or CAP_NET_ADMIN is missing.
    KernelDoors(Vec<String>),
}

impl StartError {
    /// The exit status: [`exit::CONFIG`] for a configuration to fix (no
    /// restart helps), [`exit::FAILURE`] otherwise.
    pub fn exit_status(&self) -> i32 {
        match self {
            StartError::Config(_) => exit::CONFIG,
            _ => exit::FAILURE,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Privilege { uid } => write!(
                f,
                "capturing frames needs CAP_NET_RAW, which this process (uid {uid}) does not \
                 have: run tportknockd as root (sudo, or its systemd unit)"
            ),
            StartError::Signals(e) => write!(f, "signalfd: {e}"),
            StartError::Config(e) => write!(f, "{e}"),
            StartError::LogFile(path, e) => write!(f, "LogFile {}: {e}", path.display()),
            StartError::PidFile(path, e) => write!(f, "pid file {}: {e}", path.display()),
            StartError::Netlink(e) => write!(f, "netlink: {e}"),
            StartError::NoInterface(e) => write!(f, "{e}"),
            StartError::Capabilities(e) => {
                write!(f, "cannot drop capabilities: {e} (-k all keeps them all)")
            }
            StartError::Capture { on, err } if err.kind() == io::ErrorKind::PermissionDenied => {
                write!(f, "capture on {on}: {err} (needs root or CAP_NET_RAW)")
            }
            StartError::Capture { on, err } => write!(f, "capture on {on}: {err}"),
            StartError::Runner(e) => write!(f, "command runner: {e}"),
            StartError::StateDir(e) => write!(f, "{e}"),
            StartError::JournalWriter(e) => write!(f, "journal writer: {e}"),
            StartError::KernelDoors(problems) => f.write_str(&problems.join("\n")),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Signals(e)
            | StartError::LogFile(_, e)
            | StartError::PidFile(_, e)
            | StartError::Netlink(e)
            | StartError::Capabilities(e)
            | StartError::Capture { err: e, .. }
            | StartError::Runner(e)
            | StartError::JournalWriter(e) => Some(e),
            StartError::StateDir(_) | StartError::Privilege { .. } | StartError::KernelDoors(_) => {
                None
            }
            StartError::Config(e) => Some(e),
            StartError::NoInterface(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_fix() {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let capture = StartError::Capture {
            on: "eth0".into(),
            err: denied(),
        };
        assert!(capture.to_string().ends_with("(needs root or CAP_NET_RAW)"));
        let gone = StartError::Capture {
            on: "all interfaces".into(),
            err: io::Error::from_raw_os_error(libc::ENODEV),
        };
        assert!(gone.to_string().starts_with("capture on all interfaces: "));
        assert!(!gone.to_string().contains("CAP_NET_RAW"));
        assert!(StartError::Capabilities(denied())
            .to_string()
            .ends_with("(-k all keeps them all)"));
        let config = StartError::Config(LoadError {
            messages: vec!["k.conf:1: one".into(), "k.conf:2: two".into()],
        });
        assert_eq!(config.to_string(), "k.conf:1: one\nk.conf:2: two");
        let pid = StartError::PidFile("/run/t.pid".into(), denied());
        assert!(pid.to_string().starts_with("pid file /run/t.pid: "));
        assert_eq!(pid.exit_status(), exit::FAILURE);
        assert_eq!(config.exit_status(), exit::CONFIG);
        let privilege = StartError::Privilege { uid: 1000 }.to_string();
        assert!(privilege.contains("CAP_NET_RAW") && privilege.contains("uid 1000"));
    }
}
