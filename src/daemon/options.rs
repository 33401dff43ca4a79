//! What the daemon runs with: the command line's choices, and the defaults
//! for everything it leaves out (each default has its home here or with the
//! part it configures).

use std::path::PathBuf;
use std::time::Duration;

use crate::doors::runner::RunnerConfig;
use crate::knock::matcher::DEFAULT_CAPACITY;
use crate::sys::caps::Keep;

/// Where the pid file goes unless `-p` (or knockd's `PidFile`) says.
pub const DEFAULT_PIDFILE: &str = "/run/tportknockd.pid";
/// Where the door journal lives unless `-s` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tportknockd";

/// Everything the daemon needs from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-c`: the knock.conf or knockd.conf to run.
    pub config: PathBuf,
    /// `-i`: the interface to capture on; `None` captures on all.
    pub iface: Option<String>,
    /// `-r`: re-read own addresses every this many seconds.
    pub refresh: Option<Duration>,
    /// `-d`: log every step matched, reset and timed out.
    pub debug: bool,
    /// Not `-q`: log each knock step past the first at info level.
    pub step_lines: bool,
    /// `-D`: detach and log to syslog.
    pub daemon: bool,
    /// `-p`: the pid file.
    pub pidfile: PathBuf,
    /// `-p` was given: a knockd config's `PidFile` does not override it.
    pub pidfile_set: bool,
    /// `-s`: the directory of the door journal.
    pub state_dir: PathBuf,
    /// `-m`: sources tracked at once, per matcher.
    pub max_sources: usize,
    /// `-t`: a command still running after this long is terminated.
    pub command_limit: Duration,
    /// `-j`: commands running at once.
    pub max_running: usize,
    /// `-n`: doors open at once, all events and sources together.
    pub max_doors: usize,
    /// `-N`: doors open at once for one source address.
    pub max_per_source: usize,
    /// `-k`: capabilities commands may hold (the bounding set kept after
    /// start-up as root).
    pub keep_caps: Keep,
}

impl Options {
    /// The defaults, running `config`.
    pub fn new(config: PathBuf) -> Options {
        let runner = RunnerConfig::default();
        Options {
            config,
            iface: None,
            refresh: None,
            debug: false,
            step_lines: true,
            daemon: false,
            pidfile: DEFAULT_PIDFILE.into(),
            pidfile_set: false,
            state_dir: DEFAULT_STATE_DIR.into(),
            max_sources: DEFAULT_CAPACITY,
            command_limit: runner.time_limit,
            max_running: runner.max_running,
            max_doors: crate::doors::DEFAULT_MAX_DOORS,
            max_per_source: crate::doors::DEFAULT_MAX_PER_SOURCE,
            keep_caps: Keep::default(),
        }
    }
}
