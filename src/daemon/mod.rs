//! The daemon: the I/O shell around the [`Pipeline`]. Start-up (optionally
//! detached), the poll loop that hands the ring's frames to the pipeline and
//! its door commands to the runner, address changes, signals, reload, and
//! the shutdown that closes every door. The command line is in [`cli`].

pub mod cli;
pub mod control;
mod error;
pub mod exit;
pub mod iflist;
pub mod log;
pub mod notify;
mod options;
mod sets;
pub mod status;

pub use error::StartError;
pub use options::{Options, DEFAULT_PIDFILE, DEFAULT_STATE_DIR};

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::capture::filter;
use crate::capture::netif::{Addresses, Change, NoSuchInterface};
use crate::capture::ring::{Ring, RingConfig};
use crate::config::{self, Config};
use crate::daemon::control::Control;
use crate::doors::journal::{Journal, JournalEntry};
use crate::doors::runner::{Runner, RunnerConfig};
use crate::doors::{CommandRequest, DoorLimits};
use crate::pipeline::{self, Pipeline};
use crate::sys::caps::{self, Keep};
use crate::sys::daemon::{self as sysd, Forked, PidFile};
use crate::sys::signal::SignalFd;
use crate::sys::statedir::StateDirError;
use crate::{debug, error, info, warn};

/// A pass that found at least this many frames means traffic is heavy:
/// the next poll leaves the ring out and waits at most `COALESCE_MS`, so
/// frames are taken in bursts of hundreds instead of one wake-up each.
const COALESCE_FRAMES: usize = 32;
/// The longest wait for more frames while traffic is heavy.
const COALESCE_MS: i32 = 1;
/// Upper bound on waiting for commands at shutdown, beyond their own limit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// While the capture is gone (interface deleted, not yet back), how often
/// opening it again is tried.
const RING_RETRY_MS: u64 = 1000;

/// The I/O shell around the [`Pipeline`]: capture ring, address table,
/// signals, command runner and pid file, driven by one poll loop.
struct Daemon {
    opts: Options,
    pipeline: Pipeline,
    addrs: Addresses,
    ring: Option<Ring>,
    /// ifindex the ring is bound to; 0 = all interfaces.
    ifindex: u32,
    retry_ring_at: Option<u64>,
    runner: Runner,
    signals: SignalFd,
    pidfile: Option<PidFile>,
    /// The status socket (`-S`), if it could be made.
    control: Option<Control>,
    clock: Instant,
    kernel_drops: u64,
    next_refresh_ms: Option<u64>,
    /// CAP_NET_ADMIN, effective while kernel doors are configured or open.
    admin: sets::AdminCap,
}

/// Wall-clock milliseconds: the journal's time, which survives a reboot.
fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `path` against the working directory, which `-D` leaves for `/`.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    }
}

/// Starts the daemon; returns the process exit status ([`exit`]).
pub fn start(mut opts: Options) -> i32 {
    crate::daemon::log::set_debug(opts.debug);
    // Before anything that would fail for want of it with a less telling
    // error (the config, the pid file).
    if let Err(e) = need_privilege() {
        error!("{e}");
        return e.exit_status();
    }
    // -D changes directory to /: resolve relative paths first.
    opts.config = absolute(&opts.config);
    opts.pidfile = absolute(&opts.pidfile);
    opts.state_dir = absolute(&opts.state_dir);
    if opts.daemon {
        return detach(opts);
    }
    match Daemon::setup(opts) {
        Ok(d) => {
            info!("ready: {}", d.describe());
            notify::ready();
            d.run()
        }
        Err(e) => {
            log_start_error(&e);
            e.exit_status()
        }
    }
}

/// Capturing needs `CAP_NET_RAW` (root has it).
fn need_privilege() -> Result<(), StartError> {
    match caps::current() {
        Ok(c) if !c.effective.contains(caps::NET_RAW) => {
            Err(StartError::Privilege { uid: sysd::euid() })
        }
        // A kernel that cannot tell: the capture says so if it fails.
        _ => Ok(()),
    }
}

/// fork, setsid, fork, /dev/null stdio, chdir / — and the launching process
/// exits only once the daemon is ready (0) or has failed (its status, with
/// the reason: the pipe carries `OK`, or `ERR STATUS REASON`).
fn detach(opts: Options) -> i32 {
    let (reader, mut writer) = match sysd::pipe() {
        Ok(p) => p,
        Err(e) => {
            error!("cannot create pipe: {e}");
            return 1;
        }
    };
    match sysd::fork() {
        Err(e) => {
            error!("fork: {e}");
            return 1;
        }
        Ok(Forked::Parent) => {
            drop(writer);
            let report = sysd::read_all(reader);
            if report.starts_with("OK") {
                return exit::OK;
            }
            let Some((status, reason)) = report
                .strip_prefix("ERR ")
                .and_then(|r| r.split_once(' '))
                .and_then(|(n, reason)| Some((n.parse::<i32>().ok()?, reason)))
            else {
                eprintln!("tportknockd: the daemon exited during start-up");
                return exit::FAILURE;
            };
            eprint!("tportknockd: {reason}");
            return status;
        }
        Ok(Forked::Child) => {}
    }
    drop(reader);
    if sysd::setsid().is_err() {
        sysd::exit_now(1);
    }
    match sysd::fork() {
        Ok(Forked::Child) => {}
        Ok(Forked::Parent) => sysd::exit_now(0),
        Err(_) => sysd::exit_now(1),
    }
    let _ = std::env::set_current_dir("/");
    let _ = sysd::stdio_to_devnull();
    crate::daemon::log::use_syslog();
    match Daemon::setup(opts) {
        Ok(d) => {
            info!("ready: {}", d.describe());
            let _ = writer.write_all(b"OK\n");
            drop(writer);
            notify::ready();
            d.run()
        }
        Err(e) => {
            log_start_error(&e);
            let status = e.exit_status();
            let _ = writer.write_all(format!("ERR {status} {e}\n").as_bytes());
            status
        }
    }
}

/// One log line per line of `err` (the log escapes line breaks inside a
/// line: a config with five errors would be one unreadable line).
fn log_start_error(err: &StartError) {
    for line in err.to_string().lines() {
        error!("{line}");
    }
}

/// The kernel filter for the pipeline's knock ports (and rotating
/// events' whole port ranges).
fn kernel_filter(pipeline: &Pipeline) -> filter::Program {
    filter::build_ranges(&pipeline.port_ranges(), RingConfig::default().snaplen)
}

/// A capture ring on `ifindex` (0: all interfaces) passing the pipeline's
/// knock ports.
fn open_ring(ifindex: u32, pipeline: &Pipeline) -> std::io::Result<Ring> {
    Ring::open(ifindex, &kernel_filter(pipeline), RingConfig::default())
}

impl Daemon {
    /// Everything up to the first poll; the order matters (see the comments).
    fn setup(mut opts: Options) -> Result<Daemon, StartError> {
        let clock = Instant::now();
        // Ignored signals stay ignored across exec: the runner needs SIGCHLD
        // at its default to read its children's status, the signalfd needs
        // the others not to be discarded.
        let handled = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];
        crate::sys::signal::reset_to_default(&[libc::SIGCHLD])
            .and_then(|()| crate::sys::signal::reset_to_default(&handled))
            .map_err(StartError::Signals)?;
        // Block the signals before any thread exists so only the signalfd sees them.
        let signals = SignalFd::new(&handled).map_err(StartError::Signals)?;
        let config = config::load(&opts.config).map_err(StartError::Config)?;
        apply_global_options(&mut opts, &config)?;
        for w in config::check::all_warnings(&config, &opts.config) {
            warn!("{w}");
        }
        let pidfile = PidFile::create(&opts.pidfile)
            .map_err(|e| StartError::PidFile(opts.pidfile.clone(), e))?;
        // Only with the pid file locked: a socket found there is stale.
        let control = match Control::open(&opts.pidfile) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!("status socket: {e}; tportknockd -S will not reach this daemon");
                None
            }
        };
        let addrs = Addresses::open().map_err(StartError::Netlink)?;
        let ifindex = capture_index(&opts, &addrs).map_err(StartError::NoInterface)?;
        // The rtnetlink socket is open; the capture needs only CAP_NET_RAW,
        // which the daemon keeps to re-open it, and kernel doors
        // CAP_NET_ADMIN. Give up the rest before the runner's threads exist
        // (the sets are per thread).
        let kernel = sets::configured(&config);
        let managed = drop_capabilities(opts.keep_caps, kernel)?;
        let (journal, entries) = open_journal(&opts.state_dir)?;
        // Rotating sequences: the windows spent before the restart.
        let burns = journal.as_ref().map(Journal::burns).unwrap_or_default();
        let now_ms = clock.elapsed().as_millis() as u64;
        let limits = DoorLimits {
            max_doors: opts.max_doors,
            max_per_source: opts.max_per_source,
        };
        let mut pipeline = Pipeline::new(config.clone(), opts.max_sources, journal, limits, now_ms)
            .map_err(StartError::JournalWriter)?;
        pipeline.set_trace(opts.debug);
        pipeline.set_step_lines(opts.step_lines);
        pipeline.set_capture_all(ifindex == 0);
        // Before the first frame: rotating events' windows, minus the spent ones.
        pipeline.restore_burns(burns, now_ms, now_unix_ms());
        // Restored first, so that kernel doors still open count below.
        let restored = pipeline.restore(entries, now_ms, now_unix_ms());
        let mut admin = sets::AdminCap::new(managed, managed && kernel);
        sets::prepare(&mut pipeline, &config, &mut admin).map_err(StartError::KernelDoors)?;
        let ring = open_ring(ifindex, &pipeline).map_err(|err| StartError::Capture {
            on: capture_name(&opts).into(),
            err,
        })?;
        let runner = Runner::new(RunnerConfig {
            max_running: opts.max_running,
            time_limit: opts.command_limit,
            ..RunnerConfig::default()
        })
        .map_err(StartError::Runner)?;
        let d = Daemon {
            next_refresh_ms: opts.refresh.map(|r| now_ms + r.as_millis() as u64),
            opts,
            pipeline,
            addrs,
            ring: Some(ring),
            ifindex,
            retry_ring_at: None,
            runner,
            signals,
            pidfile: Some(pidfile),
            control,
            clock,
            kernel_drops: 0,
            admin,
        };
        d.submit(restored);
        Ok(d)
    }

    /// The `ready:` and `reloaded:` line: where, which events, how many ports.
    fn describe(&self) -> String {
        format!(
            "capturing on {} ({})",
            capture_name(&self.opts),
            self.pipeline.describe()
        )
    }

    /// Monotonic milliseconds since start: the pipeline's clock.
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn run(mut self) -> i32 {
        // What start-up allocated and freed need not stay resident.
        crate::sys::heap::trim();
        let mut busy = false;
        loop {
            // poll(2) skips a negative fd (revents stays 0): -1 while the
            // ring is closed, or while frames are let pile up.
            let ring_fd = match &self.ring {
                Some(r) if !busy => r.fd(),
                _ => -1,
            };
            let mut fds = [
                pollfd(self.signals.as_raw_fd()),
                pollfd(self.addrs.fd()),
                pollfd(self.runner.wake_fd()),
                pollfd(ring_fd),
                // The journal wrote a batch: starts waiting for it may run.
                pollfd(self.pipeline.wake_fd().unwrap_or(-1)),
                self.control.as_ref().map_or(pollfd(-1), Control::pollfd),
            ];
            if let Err(e) = sysd::poll(&mut fds, self.poll_timeout(busy)) {
                error!("poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            if fds[3].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                self.ring_error();
            }
            busy = self.drain_ring() >= COALESCE_FRAMES;
            if fds[1].revents != 0 {
                match self.addrs.process() {
                    Ok(changes) => self.on_changes(changes),
                    Err(e) => warn!("netlink: {e}"),
                }
            }
            if fds[2].revents != 0 {
                let next = self
                    .pipeline
                    .settle(self.runner.completions(), self.now_ms());
                self.submit(next);
            }
            self.timers();
            self.serve_status(fds[5].revents);
            if fds[0].revents != 0 {
                if let Some(sig) = self.signals() {
                    return self.shutdown(sig);
                }
            }
        }
    }

    /// Until the next timer, at most a second; at most `COALESCE_MS` while
    /// traffic is heavy.
    fn poll_timeout(&self, busy: bool) -> i32 {
        let status_client = self.control.as_ref().and_then(Control::deadline_ms);
        let deadline = [self.next_refresh_ms, self.retry_ring_at, status_client]
            .into_iter()
            .flatten()
            .fold(self.pipeline.next_due_ms(), u64::min);
        let timeout = deadline.saturating_sub(self.now_ms()).min(1000) as i32;
        if busy {
            timeout.min(COALESCE_MS)
        } else {
            timeout
        }
    }

    /// Whatever is due: door stops, expiry, the `-r` re-read, re-opening
    /// a lost capture.
    fn timers(&mut self) {
        let now = self.now_ms();
        // Rotating events follow the wall clock (steps too) on every pass.
        self.pipeline.rotate(now, now_unix_ms());
        let due = self.pipeline.tick(now);
        self.submit(due);
        if self.next_refresh_ms.is_some_and(|t| now >= t) {
            match self.addrs.refresh() {
                Ok(changes) => {
                    debug!("own addresses re-read (-r)");
                    self.on_changes(changes)
                }
                Err(e) => warn!("address refresh: {e}"),
            }
            self.next_refresh_ms = self.opts.refresh.map(|r| now + r.as_millis() as u64);
        }
        if self.retry_ring_at.is_some_and(|t| now >= t) {
            self.retry_ring();
        }
    }

    /// Handles the pending signals; returns the one that asks to stop.
    fn signals(&mut self) -> Option<i32> {
        while let Ok(Some(sig)) = self.signals.read() {
            match sig {
                libc::SIGTERM | libc::SIGINT => return Some(sig),
                libc::SIGHUP => self.reload(),
                libc::SIGUSR1 => self.log_stats(),
                _ => {}
            }
        }
        None
    }

    /// Hands every ready frame to the pipeline and ends the batch; returns
    /// how many frames there were.
    fn drain_ring(&mut self) -> usize {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        let now = self.clock.elapsed().as_millis() as u64;
        let (pipeline, addrs) = (&mut self.pipeline, &self.addrs);
        let mut total = 0;
        loop {
            let n = ring.drain(pipeline::BATCH, |meta, bytes| {
                pipeline.push(meta, bytes, addrs, now)
            });
            total += n;
            if n < pipeline::BATCH {
                break;
            }
        }
        let end = self.pipeline.finish(self.now_ms(), now_unix_ms());
        if end.rebuild_filter {
            self.install_filter();
        }
        self.submit(end.requests);
        total
    }

    /// Points the capture's kernel filter at the pipeline's knock ports.
    fn install_filter(&self) {
        let Some(ring) = &self.ring else {
            return;
        };
        if let Err(e) = ring.set_filter(&kernel_filter(&self.pipeline)) {
            error!("cannot install the new kernel filter: {e}");
        }
    }

    /// Hands door commands to the runner, in order.
    fn submit(&self, mut requests: Vec<CommandRequest>) {
        crate::doors::submit(&self.runner, &mut requests);
    }

    /// Follows `-i`'s interface by name: gone, the ring goes; back, it returns.
    fn on_changes(&mut self, changes: Vec<Change>) {
        let Some(name) = self.opts.iface.clone() else {
            return;
        };
        for change in changes {
            match change {
                Change::LinkGone { index, name: n } if n == name || index == self.ifindex => {
                    self.lose_ring("interface is gone");
                }
                Change::LinkNew { name: n, .. } | Change::LinkUp { name: n, .. }
                    if n == name && self.ring.is_none() =>
                {
                    self.retry_ring();
                }
                _ => {}
            }
        }
    }

    /// The capture socket flagged an error: a link that went down keeps
    /// its ring (it works again when the link returns); a deleted interface
    /// needs a new one.
    fn ring_error(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        match ring.wait(0) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                warn!(
                    "{}: link is down",
                    self.opts.iface.as_deref().unwrap_or("capture")
                );
            }
            Err(e) => self.lose_ring(&e.to_string()),
        }
    }

    /// Drops the ring (keeping its drop count) and schedules re-opening it.
    fn lose_ring(&mut self, why: &str) {
        if let Some(mut ring) = self.ring.take() {
            if let Ok(s) = ring.stats() {
                self.kernel_drops = s.drops;
            }
            warn!(
                "capture on {} stopped ({why}): waiting for it to return",
                capture_name(&self.opts)
            );
        }
        self.retry_ring_at = Some(self.now_ms() + RING_RETRY_MS);
    }

    /// Re-opens the capture once its interface is there again.
    fn retry_ring(&mut self) {
        // The interface may not be back yet: the address table says when.
        let Ok(index) = capture_index(&self.opts, &self.addrs) else {
            self.retry_ring_at = Some(self.now_ms() + RING_RETRY_MS);
            return;
        };
        match open_ring(index, &self.pipeline) {
            Ok(ring) => {
                self.ring = Some(ring);
                self.ifindex = index;
                self.retry_ring_at = None;
                info!(
                    "capturing again on {} (ifindex {index})",
                    capture_name(&self.opts)
                );
            }
            Err(e) => {
                debug!("capture not yet possible: {e}");
                self.retry_ring_at = Some(self.now_ms() + RING_RETRY_MS);
            }
        }
    }

    /// SIGHUP: the new file, or the running config kept when it does not
    /// load. The service manager hears `RELOADING=1` first and `READY=1`
    /// once done, either way (with `Type=notify-reload`, `systemctl reload`
    /// waits for it).
    fn reload(&mut self) {
        notify::reloading();
        match config::load(&self.opts.config) {
            Err(e) => {
                for m in &e.messages {
                    error!("reload: {m}");
                }
                error!("reload failed: keeping the running configuration");
                notify::status("reload failed: running the previous configuration");
            }
            Ok(new) => {
                for w in config::check::all_warnings(&new, &self.opts.config) {
                    warn!("reload: {w}");
                }
                if let Err(problems) = sets::prepare(&mut self.pipeline, &new, &mut self.admin) {
                    for m in &problems {
                        error!("reload: {m}");
                    }
                    error!("reload failed: keeping the running configuration");
                    return;
                }
                let now = self.now_ms();
                self.pipeline.reload(new, now);
                self.install_filter();
                crate::sys::heap::trim();
                info!("reloaded: {}", self.describe());
                notify::status(&format!("reloaded: {}", self.describe()));
            }
        }
        notify::ready();
    }

    /// The status socket's turn: a request answered, a slow client dropped.
    fn serve_status(&mut self, revents: i16) {
        let now = self.now_ms();
        let Some(control) = self.control.as_mut() else {
            return;
        };
        control.expire(now);
        let Some(request) = control.ready(revents, now) else {
            return;
        };
        let text = match request {
            control::Request::Status => self.status_text(),
        };
        if let Some(control) = self.control.as_mut() {
            control.answer(text);
        }
    }

    /// What `tportknockd -S` shows.
    fn status_text(&mut self) -> String {
        let counters = self.stats_line();
        let now_ms = self.now_ms();
        status::render(&status::Report {
            pid: std::process::id(),
            uptime_ms: now_ms,
            capturing: self.describe(),
            doors: self.pipeline.doors().views(),
            now_ms,
            counters,
        })
    }

    /// SIGUSR1: one `stats:` line.
    fn log_stats(&mut self) {
        let line = self.stats_line();
        info!("stats: {line}");
    }

    /// The counters, the ring's drops read afresh.
    fn stats_line(&mut self) -> String {
        if let Some(ring) = self.ring.as_mut() {
            if let Ok(s) = ring.stats() {
                self.kernel_drops = s.drops;
            }
        }
        self.pipeline
            .stats_line(self.kernel_drops, &self.runner.stats())
    }

    /// SIGTERM/SIGINT: stop capturing, run every pending stop, wait for the
    /// commands (bounded), remove the pid file.
    fn shutdown(mut self, sig: i32) -> i32 {
        notify::stopping();
        // No status while the doors close; gone before the pid file is.
        self.control = None;
        info!("signal {sig}: stopping capture, closing every open door");
        self.ring = None;
        let limit = self.opts.command_limit.min(Duration::from_secs(30)) + SHUTDOWN_GRACE;
        let clock = self.clock;
        crate::doors::close_all_and_wait(self.pipeline.doors_mut(), self.runner, limit, || {
            clock.elapsed().as_millis() as u64
        });
        if let Some(p) = self.pidfile.take() {
            p.remove();
        }
        info!("stopped");
        exit::OK
    }
}

/// The journal in `dir` and the stops it holds; without one (logged),
/// doors still close on time but would not survive a crash. A directory
/// that is not safely the daemon's own, or that another daemon holds, is
/// refused.
fn open_journal(dir: &Path) -> Result<(Option<Journal>, Vec<JournalEntry>), StartError> {
    Ok(match Journal::open(dir) {
        Ok((j, entries, corrupt)) => {
            if corrupt > 0 {
                warn!(
                    "journal: skipped {corrupt} corrupt line(s) in {}",
                    dir.display()
                );
            }
            (Some(j), entries)
        }
        Err(e @ (StateDirError::Unsafe(_) | StateDirError::Locked { .. })) => {
            return Err(StartError::StateDir(e))
        }
        Err(StateDirError::Io(e)) => {
            warn!(
                "journal: cannot open {}: {e}; doors will close on time but would not survive a crash",
                dir.display()
            );
            (None, Vec::new())
        }
    })
}

/// `-i`'s interface, or "all interfaces".
fn capture_name(opts: &Options) -> &str {
    opts.iface.as_deref().unwrap_or("all interfaces")
}

/// The ifindex to capture on: `-i`'s interface (an error while it does
/// not exist), else 0 for all interfaces.
fn capture_index(opts: &Options, addrs: &Addresses) -> Result<u32, NoSuchInterface> {
    match &opts.iface {
        None => Ok(0),
        Some(name) => addrs.resolve(name).map(|i| i.index),
    }
}

/// knockd's `[options]` fill in what the command line left unset.
fn apply_global_options(opts: &mut Options, config: &Config) -> Result<(), StartError> {
    let g = &config.options;
    if opts.iface.is_none() {
        opts.iface = g.interface.clone();
    }
    if !opts.pidfile_set {
        if let Some(p) = &g.pid_file {
            opts.pidfile = p.clone();
        }
    }
    if g.use_syslog {
        crate::daemon::log::also_syslog();
    }
    if let Some(path) = &g.log_file {
        crate::daemon::log::to_file(path).map_err(|e| StartError::LogFile(path.clone(), e))?;
    }
    Ok(())
}

/// As root: commands keep `keep` (their bounding set), the daemon itself
/// only what re-opening the capture socket needs, and with `kernel` doors
/// what writing sets needs. True if the capabilities were narrowed (so the
/// daemon manages CAP_NET_ADMIN from here on).
fn drop_capabilities(keep: Keep, kernel: bool) -> Result<bool, StartError> {
    let Keep::Only(keep) = keep else {
        return Ok(false);
    };
    if sysd::euid() != 0 {
        return Ok(false);
    }
    let own = if kernel {
        caps::DAEMON_NEEDS | caps::KERNEL_DOORS_NEED
    } else {
        caps::DAEMON_NEEDS
    };
    let left = caps::restrict(keep, own).map_err(StartError::Capabilities)?;
    if !left.without(keep).is_empty() {
        // A service manager chose the bounding set (and withheld CAP_SETPCAP).
        info!("capabilities: commands keep {left} as the service manager set it (-k asked for {keep})");
    }
    debug!("capabilities: commands keep {left}; the daemon keeps {own}");
    Ok(true)
}

/// A poll entry waiting for `fd` to become readable.
fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
