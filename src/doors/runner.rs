//! Runs start/stop commands off the capture path.
//!
//! The daemon's main loop is single-threaded and must never wait for a
//! command, so a pool of worker threads does the waiting: `submit` only
//! queues (FIFO, never dropped) and wakes one worker; that worker starts
//! `/bin/sh -c COMMAND` in a session and process group of its own (with
//! `posix_spawn`, which does not copy the daemon: [`crate::sys::spawn`]),
//! collects bounded output, enforces the time limit on the whole group and
//! posts a [`Completion`].
//! The main loop polls [`Runner::wake_fd`] and calls [`Runner::completions`].
//!
//! Commands see a fixed, minimal world: stdin `/dev/null`, stdout and stderr
//! one pipe back to us, cwd `/`, environment exactly `PATH=` [`PATH`] (sh adds
//! `PWD=/`), descriptors 0-2 only, default signal dispositions, no signal
//! blocked, the capability bounding set the daemon kept for them.
//!
//! The daemon must leave SIGCHLD at its default and never `waitpid(-1)`:
//! each worker reaps its own child. (It resets SIGCHLD at start, in case it
//! was started with it ignored.)
//!
//! The pool starts with one worker and grows, up to `max_running`, only
//! when a request finds every worker busy: a daemon whose doors open one at
//! a time keeps one thread (and its stack) instead of sixteen. Workers are
//! started by the thread that calls [`Runner::submit`] and inherit its
//! capability sets and signal mask, as the first one inherits those of the
//! thread that called [`Runner::new`] (see [`crate::sys::caps`]).
//!
//! The queue has no limit of its own: the doors ([`crate::doors::Doors`])
//! keep at most one command per door in flight and cap the doors, so it
//! never holds more requests than the door cap.

use crate::doors::journal::JournalId;
use crate::sys::process;
use crate::sys::spawn::{self, CStrings};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The only environment variable commands get.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SHELL: &CStr = c"/bin/sh";
/// The queue never drops a request (a lost stop command leaves a door open);
/// past this length (which only a door cap above it allows) it complains
/// loudly, again at each doubling.
const QUEUE_WARN: usize = 1024;
/// Without pidfds, how often a worker checks whether its child has exited.
const FALLBACK_TICK: Duration = Duration::from_millis(20);
/// Reads per wakeup before re-checking the deadline, so a command flooding
/// its output cannot keep a worker from enforcing the limit.
const READ_BURST: usize = 64 * 1024;

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The door the command belongs to, returned in the [`Completion`].
    pub tag: Option<JournalId>,
    /// Names the command in logs, e.g. "10.0.0.2 SSH start".
    pub label: String,
    /// Shell text, already expanded (`%IP%` replaced).
    pub command: String,
}

/// How a command ended, from the worker's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status; only 0 counts as done.
    Exited(i32),
    /// A signal (this number) ended it.
    Signaled(i32),
    /// Ran past `time_limit`; its process group was terminated.
    TimedOut,
    /// Still running when shutdown gave up waiting; its group was terminated.
    Terminated,
    /// Still queued when shutdown gave up waiting; never started.
    Cancelled,
    /// `/bin/sh` could not be started: why.
    SpawnFailed(String),
    /// Started but its exit status could not be collected (someone else
    /// reaped it, e.g. SIGCHLD set to SIG_IGN).
    Lost(String),
}

impl Outcome {
    /// Whether it exited 0, the only outcome that counts as done: a stop
    /// that ended otherwise is retried, as the door may still be open.
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(0) => write!(f, "exited 0"),
            Outcome::Exited(n) => write!(f, "failed: exit status {n}"),
            Outcome::Signaled(s) => write!(f, "failed: killed by signal {s}"),
            Outcome::TimedOut => write!(f, "failed: time limit reached, process group terminated"),
            Outcome::Terminated => write!(f, "failed: terminated at shutdown"),
            Outcome::Cancelled => write!(f, "not run: shutdown before it could start"),
            Outcome::SpawnFailed(e) => write!(f, "failed to start: {e}"),
            Outcome::Lost(e) => write!(f, "exit status lost: {e}"),
        }
    }
}

/// How a command ended, and what it printed.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The request's tag.
    pub tag: Option<JournalId>,
    /// The request's label.
    pub label: String,
    /// How it ended.
    pub outcome: Outcome,
    /// From spawn to reaping (zero if it never started).
    pub duration: Duration,
    /// Process id, which is also the process group id; `None` if not started.
    pub pid: Option<u32>,
    /// The first `output_limit` bytes of stdout+stderr, lossily UTF-8.
    pub output: String,
    /// Output bytes read beyond `output_limit` and thrown away.
    pub discarded: u64,
}

/// Limits of the pool and of each command.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Most worker threads, hence commands running at once (0 counts as 1).
    pub max_running: usize,
    /// A command's whole process group is terminated after this long
    /// (`-t`).
    pub time_limit: Duration,
    /// Between SIGTERM and SIGKILL to a timed-out group.
    pub kill_grace: Duration,
    /// Output bytes kept (and logged) per command.
    pub output_limit: usize,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            max_running: 16,
            time_limit: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
            output_limit: 4096,
        }
    }
}

/// Commands counted since start, for the stats line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Commands that were started and have finished, whatever the outcome.
    pub run: u64,
    /// Every outcome but `Exited(0)`, including cancelled ones.
    pub failed: u64,
    /// Those ended by `time_limit` (also counted in `run` and `failed`).
    pub timed_out: u64,
    /// Those never started, as shutdown gave up (counted in `failed`, not
    /// `run`).
    pub cancelled: u64,
}

impl RunnerStats {
    fn record(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::TimedOut => {
                self.run += 1;
                self.timed_out += 1;
            }
            _ => self.run += 1,
        }
        if !outcome.success() {
            self.failed += 1;
        }
    }
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Request>,
    running: usize,
    /// Workers started and still alive; shutdown is complete when it
    /// reaches zero. Invariant: `running <= workers <= max_running`.
    workers: usize,
    /// Workers leave once the queue is empty.
    closing: bool,
    /// Workers take nothing more and terminate what they run.
    aborting: bool,
    done: Vec<Completion>,
    stats: RunnerStats,
    queue_warn_at: usize,
}

#[derive(Debug)]
struct Shared {
    cfg: RunnerConfig,
    state: Mutex<State>,
    /// Signalled when the queue gains a request or closing starts.
    work: Condvar,
    /// Signalled when a command finishes or a worker leaves.
    idle: Condvar,
    /// Held by the one worker that takes the next request, until its child
    /// is spawned: commands start in queue order.
    turn: Mutex<()>,
    /// Write end of the main loop's wake socket.
    wake_tx: UnixStream,
    /// Readable once shutdown gives up; never read, so it stays readable.
    abort_rx: UnixStream,
}

/// The pool of workers that run commands; see the module docs.
#[derive(Debug)]
pub struct Runner {
    shared: Arc<Shared>,
    wake_rx: UnixStream,
    abort_tx: UnixStream,
    /// Workers started so far (they only leave at shutdown).
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `max_running`, at least 1.
    max_workers: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker must not take the daemon down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runner {
    /// Starts the first worker; more follow on demand (see the module
    /// documentation).
    pub fn new(cfg: RunnerConfig) -> io::Result<Runner> {
        let max_workers = cfg.max_running.max(1);
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let (abort_rx, abort_tx) = UnixStream::pair()?;
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                running: 0,
                workers: 0,
                closing: false,
                aborting: false,
                done: Vec::new(),
                stats: RunnerStats::default(),
                queue_warn_at: QUEUE_WARN,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            turn: Mutex::new(()),
            wake_tx,
            abort_rx,
        });
        let runner = Runner {
            shared,
            wake_rx,
            abort_tx,
            threads: Mutex::new(Vec::with_capacity(max_workers)),
            max_workers,
        };
        {
            let mut st = lock(&runner.shared.state);
            runner.add_worker(&mut st)?;
        }
        Ok(runner)
    }

    /// Starts one more worker. Called with the state locked, so that the
    /// count and the decision to grow are one step.
    fn add_worker(&self, st: &mut State) -> io::Result<()> {
        debug_assert!(st.workers < self.max_workers);
        let mut threads = lock(&self.threads);
        let mine = self.shared.clone();
        let t = std::thread::Builder::new()
            .name(format!("runner-{}", threads.len()))
            .stack_size(256 * 1024)
            .spawn(move || worker(&mine))?;
        threads.push(t);
        st.workers += 1;
        Ok(())
    }

    /// Queues a command; returns at once. Requests start in submission
    /// order and none is ever dropped.
    pub fn submit(&self, req: Request) {
        let mut st = lock(&self.shared.state);
        st.queue.push_back(req);
        let len = st.queue.len();
        let loud = len >= st.queue_warn_at;
        if loud {
            st.queue_warn_at = st.queue_warn_at.saturating_mul(2);
        } else if len == 1 {
            st.queue_warn_at = QUEUE_WARN;
        }
        // Every worker busy or already spoken for by a queued request: one
        // more, while the bound allows. Failing only slows the queue down
        // (at least one worker exists since `new`).
        let free = st.workers - st.running;
        let grow = len > free && st.workers < self.max_workers && !st.closing;
        let grown = if grow {
            Some(self.add_worker(&mut st))
        } else {
            None
        };
        drop(st);
        self.shared.work.notify_one();
        if loud {
            crate::error!("{len} commands waiting to run: commands are slower than knocks");
        }
        if let Some(Err(e)) = grown {
            crate::warn!("cannot start another command worker: {e}; commands wait their turn");
        }
    }

    /// Readable when completions are ready.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    /// Takes the completions so far and clears the wake fd.
    pub fn completions(&self) -> Vec<Completion> {
        // Clear before taking: a completion posted in between leaves the fd
        // readable, so it is never missed (at worst one empty wakeup).
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.wake_rx).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::mem::take(&mut lock(&self.shared.state).done)
    }

    /// Worker threads started so far (at most `max_running`).
    pub fn workers(&self) -> usize {
        lock(&self.shared.state).workers
    }

    /// Commands a worker is running now.
    pub fn running(&self) -> usize {
        lock(&self.shared.state).running
    }

    /// Requests waiting for a worker.
    pub fn queued(&self) -> usize {
        lock(&self.shared.state).queue.len()
    }

    /// The counters so far (a copy).
    pub fn stats(&self) -> RunnerStats {
        lock(&self.shared.state).stats
    }

    /// Lets queued and running commands finish for up to `limit`, then
    /// cancels what is still queued and terminates what still runs (SIGTERM,
    /// `kill_grace`, SIGKILL). Returns every completion not yet taken.
    pub fn shutdown(self, limit: Duration) -> Vec<Completion> {
        let shared = self.shared.clone();
        let deadline = later(limit);
        lock(&shared.state).closing = true;
        shared.work.notify_all();
        let mut st = wait_workers(&shared, lock(&shared.state), deadline);
        if st.workers > 0 {
            st.aborting = true;
            let cancelled: Vec<Request> = st.queue.drain(..).collect();
            for req in cancelled {
                let c = Completion {
                    tag: req.tag,
                    label: req.label,
                    outcome: Outcome::Cancelled,
                    duration: Duration::ZERO,
                    pid: None,
                    output: String::new(),
                    discarded: 0,
                };
                log_completion(&c);
                st.stats.record(&c.outcome);
                st.done.push(c);
            }
            drop(st);
            let _ = (&self.abort_tx).write(&[1]);
            shared.work.notify_all();
            // Terminating takes at most the grace plus a moment to reap.
            let until = later(shared.cfg.kill_grace.saturating_add(Duration::from_secs(1)));
            st = wait_workers(&shared, lock(&shared.state), until);
        }
        let stuck = st.workers;
        drop(st);
        let threads = std::mem::take(&mut *lock(&self.threads));
        if stuck == 0 {
            for t in threads {
                let _ = t.join();
            }
        } else {
            crate::error!("{stuck} command workers did not finish at shutdown; leaving them");
        }
        self.completions()
    }
}

/// `now + d`, saturating: limits come from the configuration and an absurd
/// one must mean "a very long time", not a panic.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

fn wait_workers<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    until: Instant,
) -> MutexGuard<'a, State> {
    while st.workers > 0 {
        let now = Instant::now();
        if now >= until {
            break;
        }
        st = match shared.idle.wait_timeout(st, until - now) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
    st
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Without shutdown: idle workers leave once the queue is empty; the
        // busy ones finish their commands in the background.
        if !lock(&self.threads).is_empty() {
            lock(&self.shared.state).closing = true;
            self.shared.work.notify_all();
        }
    }
}

fn worker(shared: &Shared) {
    loop {
        let turn = lock(&shared.turn);
        let next = {
            let mut st = lock(&shared.state);
            loop {
                if st.aborting {
                    break None;
                }
                if let Some(req) = st.queue.pop_front() {
                    st.running += 1;
                    break Some(req);
                }
                if st.closing {
                    break None;
                }
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(req) = next else { break };
        let started = Instant::now();
        let spawned = spawn(&req);
        drop(turn);
        let (outcome, pid, out) = match spawned {
            Ok(child) => {
                let pid = child.child.id();
                let (outcome, out) = supervise(child, &shared.cfg, &shared.abort_rx);
                (outcome, Some(pid), out)
            }
            Err(e) => (Outcome::SpawnFailed(e.to_string()), None, Collector::new(0)),
        };
        let c = Completion {
            tag: req.tag,
            label: req.label,
            outcome,
            duration: started.elapsed(),
            pid,
            output: String::from_utf8_lossy(&out.kept).into_owned(),
            discarded: out.discarded,
        };
        log_completion(&c);
        {
            let mut st = lock(&shared.state);
            st.running -= 1;
            st.stats.record(&c.outcome);
            st.done.push(c);
        }
        // A full socket is already readable: losing this byte is fine.
        let _ = (&shared.wake_tx).write(&[1]);
        shared.idle.notify_all();
    }
    lock(&shared.state).workers -= 1;
    shared.idle.notify_all();
}

struct Spawned {
    child: spawn::Child,
    out: File,
    /// `None` when the kernel has no pidfds: fall back to polling.
    pidfd: Option<OwnedFd>,
}

fn spawn(req: &Request) -> io::Result<Spawned> {
    crate::debug!("command {}: running {}", req.label, req.command);
    // Everything the child needs is built here: between the spawn and the
    // exec nothing may allocate.
    let argv = CStrings::new("command", [SHELL.to_bytes(), b"-c", req.command.as_bytes()])?;
    let envp = CStrings::new("environment", [format!("PATH={PATH}")])?;
    let (rd, wr) = process::pipe()?;
    let child = spawn::spawn(SHELL, &argv, &envp, wr.as_fd());
    // Our write end must go, or the pipe never reports EOF.
    drop(wr);
    let child = child?;
    let pidfd = process::pidfd_open(child.id()).ok();
    let out = File::from(rd);
    if let Err(e) = process::set_nonblocking(&out) {
        // Cannot read without risking a hang: do not leave it running.
        let _ = process::kill_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
        return Err(e);
    }
    Ok(Spawned { child, out, pidfd })
}

/// Waits for the direct child, reading its output meanwhile. The child's
/// exit completes the command even if a descendant keeps the pipe open.
fn supervise(mut sp: Spawned, cfg: &RunnerConfig, abort: &UnixStream) -> (Outcome, Collector) {
    let pid = sp.child.id();
    let deadline = later(cfg.time_limit);
    let mut out = Collector::new(cfg.output_limit);
    let mut pipe_open = true;
    let end = loop {
        let now = Instant::now();
        if now >= deadline {
            break Some(Outcome::TimedOut);
        }
        let mut wait = deadline - now;
        if sp.pidfd.is_none() {
            wait = wait.min(FALLBACK_TICK);
        }
        let fds = [
            pipe_open.then(|| sp.out.as_raw_fd()),
            sp.pidfd.as_ref().map(|p| p.as_raw_fd()),
            Some(abort.as_raw_fd()),
        ];
        let [readable, exited, aborted] = match process::poll_readable(fds, Some(wait)) {
            Ok(r) => r,
            Err(_) => {
                // Out of memory or similar: do not spin.
                std::thread::sleep(FALLBACK_TICK);
                [false; 3]
            }
        };
        if readable && !out.read_from(&mut sp.out, READ_BURST) {
            pipe_open = false;
        }
        let exited = exited || (sp.pidfd.is_none() && process::has_exited(pid).unwrap_or(true));
        if exited {
            break None;
        }
        if aborted {
            break Some(Outcome::Terminated);
        }
    };
    if end.is_some() {
        terminate(&sp, cfg.kill_grace);
    }
    // Whatever is already in the pipe; a lingering descendant may keep it
    // open and writing, so take one burst and close it.
    if pipe_open {
        out.read_from(&mut sp.out, READ_BURST);
    }
    drop(sp.out);
    let outcome = match (end, sp.child.wait()) {
        (Some(o), _) => o,
        (None, Ok(st)) => match (st.code(), st.signal()) {
            (Some(code), _) => Outcome::Exited(code),
            (None, Some(sig)) => Outcome::Signaled(sig),
            (None, None) => Outcome::Lost(format!("unknown status {st}")),
        },
        (None, Err(e)) => Outcome::Lost(e.to_string()),
    };
    (outcome, out)
}

/// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL
/// to whatever is left. The leader is not reaped yet, so the group id cannot
/// have been reused by an unrelated process.
fn terminate(sp: &Spawned, grace: Duration) {
    let pid = sp.child.id();
    let _ = process::kill_group(pid, libc::SIGTERM);
    let until = later(grace);
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        match &sp.pidfd {
            Some(fd) => {
                if let Ok([true]) =
                    process::poll_readable([Some(fd.as_raw_fd())], Some(until - now))
                {
                    break;
                }
            }
            None => {
                if process::has_exited(pid).unwrap_or(true) {
                    break;
                }
                std::thread::sleep(FALLBACK_TICK.min(until - now));
            }
        }
    }
    let _ = process::kill_group(pid, libc::SIGKILL);
}

/// Keeps the first `limit` bytes of output and counts the rest.
struct Collector {
    kept: Vec<u8>,
    limit: usize,
    discarded: u64,
}

impl Collector {
    fn new(limit: usize) -> Collector {
        Collector {
            kept: Vec::new(),
            limit,
            discarded: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        let (keep, rest) = data.split_at(room.min(data.len()));
        self.kept.extend_from_slice(keep);
        self.discarded += rest.len() as u64;
    }

    /// Reads what is available, at most `burst` bytes. False at end of file
    /// or on an error other than "would block".
    fn read_from(&mut self, r: &mut impl Read, burst: usize) -> bool {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < burst {
            match r.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.push(buf.get(..n).unwrap_or(&[]));
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }
}

fn log_completion(c: &Completion) {
    let ok = c.outcome.success();
    // u64: printing the u128 of as_millis() links 128-bit formatting.
    let ms = u64::try_from(c.duration.as_millis()).unwrap_or(u64::MAX);
    for line in c.output.lines() {
        if ok {
            crate::info!("command {}: | {line}", c.label);
        } else {
            crate::warn!("command {}: | {line}", c.label);
        }
    }
    if c.discarded > 0 {
        crate::warn!(
            "command {}: output truncated, {} more bytes discarded",
            c.label,
            c.discarded
        );
    }
    match &c.outcome {
        Outcome::Exited(0) => crate::info!("command {}: exited 0 after {ms} ms", c.label),
        Outcome::Cancelled | Outcome::SpawnFailed(_) | Outcome::Lost(_) => {
            crate::error!("command {}: {}", c.label, c.outcome)
        }
        o => crate::warn!("command {}: {o} after {ms} ms", c.label),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_keeps_the_first_bytes_and_counts_the_rest() {
        let mut c = Collector::new(5);
        c.push(b"abc");
        c.push(b"defg");
        c.push(b"hi");
        assert_eq!(c.kept, b"abcde");
        assert_eq!(c.discarded, 4);
    }

    #[test]
    fn collector_reads_to_eof_and_stops_at_burst() {
        let mut c = Collector::new(10);
        let mut src: &[u8] = &[b'x'; 20_000];
        assert!(c.read_from(&mut src, 8192), "burst reached, not EOF");
        assert_eq!(c.kept.len() as u64 + c.discarded, 8192);
        assert!(!c.read_from(&mut src, usize::MAX), "EOF");
        assert_eq!(c.kept, [b'x'; 10]);
        assert_eq!(c.discarded, 20_000 - 10);
    }

    #[test]
    fn absurd_limits_saturate_instead_of_panicking() {
        assert!(later(Duration::MAX) > Instant::now());
        assert!(later(Duration::ZERO) <= Instant::now());
    }

    #[test]
    fn stats_count_every_non_zero_outcome_as_failed() {
        let mut s = RunnerStats::default();
        for o in [
            Outcome::Exited(0),
            Outcome::Exited(1),
            Outcome::Signaled(9),
            Outcome::TimedOut,
            Outcome::SpawnFailed("x".into()),
            Outcome::Cancelled,
        ] {
            s.record(&o);
        }
        assert_eq!(
            s,
            RunnerStats {
                run: 5,
                failed: 5,
                timed_out: 1,
                cancelled: 1
            }
        );
    }
}
