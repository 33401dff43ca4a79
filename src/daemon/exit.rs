//! The exit statuses of `tportknockd`, one meaning each, so that a service
//! manager can tell a configuration to fix from a failure worth a restart
//! (the unit's `RestartPreventExitStatus=` names [`USAGE`] and [`CONFIG`]).

/// Success; also a daemon stopped by SIGTERM or SIGINT, and `-S` that
/// reached the running daemon.
pub const OK: i32 = 0;
/// A failure: start-up (no privilege, the capture, the pid file, the state
/// directory…), `-C` on an invalid file, `-S` that could not tell.
pub const FAILURE: i32 = 1;
/// Wrong usage: an unknown option, a missing or malformed value.
pub const USAGE: i32 = 2;
/// `-S`: no daemon runs (as an LSB init script's `status` says it); what
/// the door journal holds was shown instead.
pub const NOT_RUNNING: i32 = 3;
/// The daemon's configuration is invalid or has no events: restarting
/// cannot help until someone edits it (`EX_CONFIG` of sysexits.h).
pub const CONFIG: i32 = 78;
