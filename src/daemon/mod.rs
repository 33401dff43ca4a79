//! The daemon's life: start-up (optionally detached), the poll loop that
//! moves frames through decode → match → doors → commands, signals, reload
//! and the shutdown that closes every door.

pub mod cli;
pub mod log;

use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::capture::admit::{self, Refusals, Verdict};
use crate::capture::filter;
use crate::capture::netif::{Addresses, Change};
use crate::capture::ring::{Ring, RingConfig};
use crate::config::{self, Config};
use crate::daemon::cli::Options;
use crate::doors::journal::Journal;
use crate::doors::runner::{Runner, RunnerConfig};
use crate::doors::{CommandRequest, DoorLimits, Doors, Opened};
use crate::knock::matcher::{Output, Trace};
use crate::knock::matchset::MatchSet;
use crate::knock::Knock;
use crate::sys::daemon::{self as sysd, Forked, PidFile};
use crate::sys::signal::SignalFd;
use crate::sys::statedir::StateDirError;
use crate::wire::Link;
use crate::{debug, error, info, warn};

/// Frames decoded (and their table entries prefetched) before any of them
/// is matched: enough for their cache misses to overlap.
const BATCH: usize = 16;
/// A pass that found at least this many frames means traffic is heavy:
/// the next poll leaves the ring out and waits at most `COALESCE_MS`, so
/// frames are taken in bursts of hundreds instead of one wake-up each.
const COALESCE_FRAMES: usize = 32;
const COALESCE_MS: i32 = 1;
/// How often lapsed knock attempts are reclaimed.
const EXPIRE_EVERY_MS: u64 = 1000;
/// Upper bound on waiting for commands at shutdown, beyond their own limit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Counters for the SIGUSR1 stats line.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub frames: u64,
    pub malformed: u64,
    pub not_local: u64,
    pub unsupported_link: u64,
    pub fired: u64,
    /// Frames the host would not take, by reason (issue 15).
    pub refusals: Refusals,
}

struct Daemon {
    opts: Options,
    config: Config,
    matcher: MatchSet,
    addrs: Addresses,
    ring: Option<Ring>,
    /// ifindex the ring is bound to; 0 = all interfaces.
    ifindex: u32,
    retry_ring_at: Option<u64>,
    doors: Doors,
    runner: Runner,
    signals: SignalFd,
    pidfile: Option<PidFile>,
    clock: Instant,
    counters: Counters,
    kernel_drops: u64,
    next_expire_ms: u64,
    next_refresh_ms: Option<u64>,
    /// The matchers' fires and trace, emptied after each batch.
    out: Output,
    requests: Vec<CommandRequest>,
    /// Decoded knocks (and whether addressed to us) awaiting the matcher.
    batch: Vec<(bool, Knock)>,
}

/// Wall-clock milliseconds: the journal's time, which survives a reboot.
fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    }
}

/// Starts the daemon; returns the process exit status.
pub fn start(mut opts: Options) -> i32 {
    crate::daemon::log::set_debug(opts.debug);
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
            notify("READY=1");
            d.run()
        }
        Err(msg) => {
            error!("{msg}");
            1
        }
    }
}

/// fork, setsid, fork, /dev/null stdio, chdir / — and the launching process
/// exits only once the daemon is ready (0) or has failed (1, with the reason).
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
            return match report.strip_prefix("OK") {
                Some(_) => 0,
                None if report.is_empty() => {
                    eprintln!("tportknockd: the daemon exited during start-up");
                    1
                }
                None => {
                    eprint!("tportknockd: {}", report.trim_start_matches("ERR "));
                    1
                }
            };
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
            notify("READY=1");
            d.run()
        }
        Err(msg) => {
            error!("{msg}");
            let _ = writer.write_all(format!("ERR {msg}\n").as_bytes());
            1
        }
    }
}

/// systemd's readiness protocol: one datagram to $NOTIFY_SOCKET.
fn notify(state: &str) {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(&path)
    };
    if let Ok(addr) = addr {
        let _ = sock.send_to_addr(state.as_bytes(), &addr);
    }
}

fn open_ring(ifindex: u32, matcher: &MatchSet) -> std::io::Result<Ring> {
    let cfg = RingConfig::default();
    let program = filter::build(&matcher.ports(), cfg.snaplen);
    Ring::open(ifindex, &program, cfg)
}

impl Daemon {
    fn setup(mut opts: Options) -> Result<Daemon, String> {
        let clock = Instant::now();
        // Ignored signals stay ignored across exec: the runner needs SIGCHLD
        // at its default to read its children's status, the signalfd needs
        // the others not to be discarded.
        let handled = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];
        crate::sys::signal::reset_to_default(&[libc::SIGCHLD])
            .and_then(|()| crate::sys::signal::reset_to_default(&handled))
            .map_err(|e| format!("signals: {e}"))?;
        // Block the signals before any thread exists so only the signalfd sees them.
        let signals = SignalFd::new(&handled).map_err(|e| format!("signalfd: {e}"))?;
        let config = config::load(&opts.config).map_err(|e| e.to_string())?;
        apply_global_options(&mut opts, &config)?;
        for w in &config.warnings {
            warn!("{w}");
        }
        let pidfile = PidFile::create(&opts.pidfile)
            .map_err(|e| format!("pid file {}: {e}", opts.pidfile.display()))?;
        let addrs = Addresses::open().map_err(|e| format!("netlink: {e}"))?;
        let ifindex = match &opts.iface {
            None => 0,
            Some(name) => match addrs.interface(name) {
                Some(i) => i.index,
                None => {
                    return Err(crate::capture::netif::resolve(name)
                        .err()
                        .unwrap_or_else(|| format!("no interface {name}")))
                }
            },
        };
        let matcher = MatchSet::new(&config.events, opts.max_sources, 0);
        let ring = open_ring(ifindex, &matcher).map_err(|e| {
            let on = opts.iface.as_deref().unwrap_or("all interfaces");
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!("capture on {on}: {e} (needs root or CAP_NET_RAW)")
            } else {
                format!("capture on {on}: {e}")
            }
        })?;
        // Sockets are open: give up what neither the daemon nor its commands
        // need, before the runner's threads exist (the sets are per thread).
        drop_capabilities(opts.keep_caps)?;
        let runner = Runner::new(RunnerConfig {
            max_running: opts.max_running,
            time_limit: opts.command_limit,
            ..RunnerConfig::default()
        })
        .map_err(|e| format!("command runner: {e}"))?;
        let (journal, entries) = match Journal::open(&opts.state_dir) {
            Ok((j, entries, corrupt)) => {
                if corrupt > 0 {
                    warn!(
                        "journal: skipped {corrupt} corrupt line(s) in {}",
                        opts.state_dir.display()
                    );
                }
                (Some(j), entries)
            }
            // Not the daemon's own, or another daemon's: refuse to start.
            Err(e @ (StateDirError::Unsafe(_) | StateDirError::Locked { .. })) => {
                return Err(e.to_string())
            }
            Err(StateDirError::Io(e)) => {
                warn!(
                    "journal: cannot open {}: {e}; doors will close on time but would not survive a crash",
                    opts.state_dir.display()
                );
                (None, Vec::new())
            }
        };
        let now_ms = clock.elapsed().as_millis() as u64;
        let limits = DoorLimits {
            max_doors: opts.max_doors,
            max_per_source: opts.max_per_source,
        };
        let mut doors =
            Doors::new(journal, limits, now_ms).map_err(|e| format!("journal writer: {e}"))?;
        let mut requests = Vec::new();
        if !entries.is_empty() {
            info!(
                "journal: {} pending stop(s) from the last run",
                entries.len()
            );
        }
        doors.restore(entries, now_ms, now_unix_ms(), &mut requests);
        let mut d = Daemon {
            next_refresh_ms: opts.refresh.map(|r| now_ms + r.as_millis() as u64),
            opts,
            config,
            matcher,
            addrs,
            ring: Some(ring),
            ifindex,
            retry_ring_at: None,
            doors,
            runner,
            signals,
            pidfile: Some(pidfile),
            clock,
            counters: Counters::default(),
            kernel_drops: 0,
            next_expire_ms: now_ms + EXPIRE_EVERY_MS,
            out: Output::new(),
            requests,
            batch: Vec::with_capacity(BATCH),
        };
        d.submit_requests();
        Ok(d)
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.config.events.iter().map(|e| e.name.as_str()).collect();
        format!(
            "capturing on {} ({} event(s): {}; {} knock port(s))",
            self.opts.iface.as_deref().unwrap_or("all interfaces"),
            names.len(),
            names.join(" "),
            self.matcher.ports().len()
        )
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn run(mut self) -> i32 {
        let mut busy = false;
        loop {
            let now = self.now_ms();
            let mut deadline = self.next_expire_ms;
            for t in [
                self.doors.next_due_ms(),
                self.next_refresh_ms,
                self.retry_ring_at,
            ]
            .into_iter()
            .flatten()
            {
                deadline = deadline.min(t);
            }
            let mut timeout = deadline.saturating_sub(now).min(1000) as i32;
            if busy {
                timeout = timeout.min(COALESCE_MS);
            }
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
                pollfd(self.doors.wake_fd().unwrap_or(-1)),
            ];
            if let Err(e) = sysd::poll(&mut fds, timeout) {
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
            let now = self.now_ms();
            if fds[2].revents != 0 {
                let done = self.runner.completions();
                self.doors.finished(done, now, &mut self.requests);
            }
            self.doors.tick(now, &mut self.requests);
            self.submit_requests();
            if now >= self.next_expire_ms {
                self.out.tracing = crate::daemon::log::debug_enabled();
                self.matcher.expire(now, &mut self.out);
                self.flush_trace();
                self.next_expire_ms = now + EXPIRE_EVERY_MS;
            }
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
            if fds[0].revents != 0 {
                while let Ok(Some(sig)) = self.signals.read() {
                    match sig {
                        libc::SIGTERM | libc::SIGINT => return self.shutdown(sig),
                        libc::SIGHUP => self.reload(),
                        libc::SIGUSR1 => self.log_stats(),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Feeds every ready frame to the matcher; returns how many there were.
    fn drain_ring(&mut self) -> usize {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        self.out.tracing = crate::daemon::log::debug_enabled();
        let now = self.clock.elapsed().as_millis() as u64;
        let Daemon {
            matcher,
            addrs,
            counters,
            out,
            batch,
            ifindex,
            ..
        } = self;
        let mut total = 0;
        let capture_all = *ifindex == 0;
        loop {
            let n = ring.drain(BATCH, |meta, bytes| {
                counters.frames += 1;
                let Some(link) = Link::from_hatype(meta.hatype) else {
                    counters.unsupported_link += 1;
                    return;
                };
                // Issue 15: only frames the host itself would take knock
                // (capture::admit); the rest are counted by reason.
                match admit::frame(meta, bytes, link, capture_all, addrs) {
                    Verdict::Knock { knock: k, local } => {
                        matcher.prefetch(local, &k);
                        batch.push((local, k));
                    }
                    Verdict::Ignored => {}
                    Verdict::Refused(r) => {
                        counters.refusals.count(r);
                        debug!("frame on ifindex {} refused: {r:?}", meta.ifindex);
                    }
                    Verdict::Malformed(why) => {
                        counters.malformed += 1;
                        counters.refusals.count_malformed(why);
                        debug!("malformed frame on ifindex {}: {why}", meta.ifindex);
                    }
                }
            });
            for (local, k) in batch.drain(..) {
                if !matcher.feed(local, &k, now, out) {
                    counters.not_local += 1;
                }
            }
            total += n;
            if n < BATCH {
                break;
            }
        }
        self.flush_trace();
        if !self.out.fired.is_empty() {
            // Taken and put back so the buffer keeps its capacity.
            let mut fired = std::mem::take(&mut self.out.fired);
            let mut one_time_used = Vec::new();
            for f in fired.drain(..) {
                if self.one_time_gate(f.event, f.src, &mut one_time_used) {
                    self.open_door(f.event, f.src);
                }
            }
            self.out.fired = fired;
            if !one_time_used.is_empty() {
                self.sequences_changed();
            }
            self.submit_requests();
        }
        total
    }

    fn flush_trace(&mut self) {
        for t in self.out.trace.drain(..) {
            let name = |i: usize| {
                self.config
                    .events
                    .get(i)
                    .map(|e| e.name.as_str())
                    .unwrap_or("?")
            };
            match t {
                Trace::Advanced { event, src, step } => {
                    debug!("{src} {}: step {step} matched", name(event))
                }
                Trace::Reset { event, src } => debug!("{src} {}: reset", name(event)),
                Trace::TimedOut { event, src } => debug!("{src} {}: timed out", name(event)),
                Trace::Fired { event, src } => debug!("{src} {}: sequence complete", name(event)),
            }
        }
    }

    fn open_door(&mut self, event: usize, src: IpAddr) {
        let Some(ev) = self.config.events.get(event) else {
            return;
        };
        self.counters.fired += 1;
        let now = self.now_ms();
        match self
            .doors
            .open(ev, src, now, now_unix_ms(), &mut self.requests)
        {
            Opened::Opened => info!("{src} {}: knock complete, door opened", ev.name),
            Opened::Rearmed => info!(
                "{src} {}: knock complete, door already open: stop re-armed",
                ev.name
            ),
            Opened::StartOnly => info!("{src} {}: knock complete, running start command", ev.name),
            Opened::Nothing => info!(
                "{src} {}: knock complete, no command for this address family",
                ev.name
            ),
            // Logged by the doors, at most once a second.
            Opened::Refused(_) => {}
        }
    }

    /// For a one-time event: marks its sequence used in its file (fsync'ed
    /// before the door opens) and moves to the next; false when the door
    /// must stay shut (already used in this batch, or the file could not be
    /// marked, which also disables the event).
    fn one_time_gate(&mut self, event: usize, src: IpAddr, used: &mut Vec<usize>) -> bool {
        let Some(ev) = self.config.events.get_mut(event) else {
            return false;
        };
        let Some(path) = ev.one_time.clone() else {
            return true;
        };
        if used.contains(&event) {
            info!(
                "{src} {}: one-time sequence already used by an earlier knock: ignored",
                ev.name
            );
            return false;
        }
        used.push(event);
        let tcp = ev.tcp_gate.unwrap_or(crate::knock::FlagSpec::Any);
        match config::onetime::mark_used(&path, tcp, &ev.sequence) {
            Err(e) => {
                error!("{src} {}: {e}; event disabled, door stays shut", ev.name);
                ev.sequence.clear();
                false
            }
            Ok(scan) => {
                match scan.active {
                    Some(next) => {
                        info!(
                            "{}: one-time sequence used; next is line {} of {} ({} left)",
                            ev.name,
                            next.line,
                            path.display(),
                            scan.unused
                        );
                        ev.sequence = next.steps;
                    }
                    None => {
                        warn!(
                            "{}: no unused sequence left in {}: event disabled",
                            ev.name,
                            path.display()
                        );
                        ev.sequence.clear();
                    }
                }
                true
            }
        }
    }

    /// Sequences of the running config changed (one-time rotation): the
    /// matchers and the kernel filter follow.
    fn sequences_changed(&mut self) {
        let now = self.now_ms();
        self.matcher.reload(&self.config.events, now);
        if let Some(ring) = &self.ring {
            let program = filter::build(&self.matcher.ports(), RingConfig::default().snaplen);
            if let Err(e) = ring.set_filter(&program) {
                error!("cannot install the new kernel filter: {e}");
            }
        }
    }

    fn submit_requests(&mut self) {
        crate::doors::submit(&self.runner, &mut self.requests);
    }

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

    fn lose_ring(&mut self, why: &str) {
        if let Some(mut ring) = self.ring.take() {
            if let Ok(s) = ring.stats() {
                self.kernel_drops = s.drops;
            }
            warn!(
                "capture on {} stopped ({why}): waiting for it to return",
                self.opts.iface.as_deref().unwrap_or("all interfaces")
            );
        }
        self.retry_ring_at = Some(self.now_ms() + 1000);
    }

    fn retry_ring(&mut self) {
        let index = match &self.opts.iface {
            None => 0,
            Some(name) => match self.addrs.interface(name) {
                Some(i) => i.index,
                None => {
                    self.retry_ring_at = Some(self.now_ms() + 1000);
                    return;
                }
            },
        };
        match open_ring(index, &self.matcher) {
            Ok(ring) => {
                self.ring = Some(ring);
                self.ifindex = index;
                self.retry_ring_at = None;
                info!(
                    "capturing again on {} (ifindex {index})",
                    self.opts.iface.as_deref().unwrap_or("all interfaces")
                );
            }
            Err(e) => {
                debug!("capture not yet possible: {e}");
                self.retry_ring_at = Some(self.now_ms() + 1000);
            }
        }
    }

    fn reload(&mut self) {
        match config::load(&self.opts.config) {
            Err(e) => {
                for m in &e.messages {
                    error!("reload: {m}");
                }
                error!("reload failed: keeping the running configuration");
            }
            Ok(new) => {
                for w in &new.warnings {
                    warn!("reload: {w}");
                }
                let now = self.now_ms();
                self.matcher.reload(&new.events, now);
                self.config = new;
                if let Some(ring) = &self.ring {
                    let program =
                        filter::build(&self.matcher.ports(), RingConfig::default().snaplen);
                    if let Err(e) = ring.set_filter(&program) {
                        error!("reload: cannot install the new kernel filter: {e}");
                    }
                }
                info!("reloaded: {}", self.describe());
            }
        }
    }

    fn log_stats(&mut self) {
        if let Some(ring) = self.ring.as_mut() {
            if let Ok(s) = ring.stats() {
                self.kernel_drops = s.drops;
            }
        }
        let m = self.matcher.stats(self.config.events.len());
        let r = self.runner.stats();
        let doors = self.doors.stats();
        let c = &self.counters;
        let mut events = String::new();
        for (i, ev) in self.config.events.iter().enumerate() {
            let (started, completed) = m
                .events
                .get(i)
                .map(|e| (e.started, e.completed))
                .unwrap_or((0, 0));
            events.push_str(&format!(" {}={started}/{completed}", ev.name));
        }
        info!(
            "stats: frames={} drops={} malformed={} not_local={} {} sources={} pending_stops={} doors={} refused={} retrying={} stop_failures={} journal_errors={} commands={} failed={} knocks(started/completed):{events}",
            c.frames,
            self.kernel_drops,
            c.malformed,
            c.not_local,
            c.refusals,
            m.tracked,
            self.doors.pending(),
            doors.open,
            doors.refused,
            doors.retrying,
            doors.stop_failures,
            doors.journal_errors,
            r.run,
            r.failed,
        );
    }

    fn shutdown(mut self, sig: i32) -> i32 {
        notify("STOPPING=1");
        info!("signal {sig}: stopping capture, closing every open door");
        self.ring = None;
        let limit = self.opts.command_limit.min(Duration::from_secs(30)) + SHUTDOWN_GRACE;
        let clock = self.clock;
        let runner = self.runner;
        crate::doors::close_all_and_wait(&mut self.doors, runner, limit, || {
            clock.elapsed().as_millis() as u64
        });
        if let Some(p) = self.pidfile.take() {
            p.remove();
        }
        info!("stopped");
        0
    }
}

/// knockd's `[options]` fill in what the command line left unset.
fn apply_global_options(opts: &mut Options, config: &Config) -> Result<(), String> {
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
        crate::daemon::log::to_file(path)
            .map_err(|e| format!("LogFile {}: {e}", path.display()))?;
    }
    Ok(())
}

/// As root: commands keep `keep` (their bounding set), the daemon itself
/// only what re-opening the capture socket needs. `None` keeps everything.
fn drop_capabilities(keep: Option<u64>) -> Result<(), String> {
    use crate::sys::caps;
    let Some(keep) = keep else {
        return Ok(());
    };
    if sysd::euid() != 0 {
        return Ok(());
    }
    let left = caps::restrict(keep, caps::DAEMON_NEEDS)
        .map_err(|e| format!("cannot drop capabilities: {e} (-k all keeps them all)"))?;
    if left & !keep != 0 {
        // A service manager chose the bounding set (and withheld CAP_SETPCAP).
        info!(
            "capabilities: commands keep {} as the service manager set it (-k asked for {})",
            caps::format_list(left),
            caps::format_list(keep)
        );
    }
    debug!(
        "capabilities: commands keep {}; the daemon keeps {}",
        caps::format_list(left),
        caps::format_list(caps::DAEMON_NEEDS)
    );
    Ok(())
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
