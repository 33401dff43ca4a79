//! The command runner against real processes: output and status, the
//! child's environment and descriptors, the concurrency bound and order,
//! time limits on whole process groups, orphans holding the output pipe,
//! non-blocking submit and shutdown.

mod common;
use common::*;
use std::fs;
use std::os::fd::RawFd;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tportknockd::doors::journal::JournalId;
use tportknockd::doors::runner::{Completion, Outcome, Request, Runner, RunnerConfig, PATH};

fn config(max_running: usize, time_limit: Duration) -> RunnerConfig {
    RunnerConfig {
        max_running,
        time_limit,
        kill_grace: Duration::from_millis(500),
        output_limit: 4096,
    }
}

fn runner(max_running: usize) -> Runner {
    Runner::new(config(max_running, Duration::from_secs(10))).expect("runner")
}

fn req(tag: u64, command: &str) -> Request {
    Request {
        tag: Some(JournalId::new(tag)),
        label: format!("test #{tag}"),
        command: command.to_string(),
    }
}

fn poll_in(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Waits on the wake fd, as the daemon does, until `n` completions came.
#[track_caller]
fn collect(r: &Runner, n: usize, limit: Duration) -> Vec<Completion> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n {
        let now = Instant::now();
        assert!(
            now < until,
            "only {} of {n} completions within {limit:?}: {got:?}",
            got.len()
        );
        if poll_in(r.wake_fd(), until - now) {
            got.extend(r.completions());
        }
    }
    got.sort_by_key(|c| c.tag);
    got
}

/// Process state letter from /proc, `None` if the pid does not exist.
fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, pgrp))
}

fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some((s, _)) if s != 'Z')
}

/// Live (non-zombie) processes in group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if let Some((s, g)) = proc_state(pid) {
                if g == pgid && s != 'Z' {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Kills a command's process group when the test ends, pass or fail.
struct Group(i32);
impl Drop for Group {
    fn drop(&mut self) {
        if self.0 > 1 {
            // SAFETY: signalling a process group this test created.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn output_and_exit_status_are_reported_and_failures_counted() {
    let r = runner(2);
    r.submit(req(1, "echo to-out; echo to-err >&2; exit 3"));
    r.submit(req(2, "printf 'fine\\n'"));
    r.submit(req(3, "kill -USR1 $$"));
    let c = collect(&r, 3, Duration::from_secs(10));
    assert_eq!(c[0].outcome, Outcome::Exited(3));
    assert_eq!(c[0].label, "test #1");
    assert_eq!(c[0].output, "to-out\nto-err\n");
    assert!(c[0].pid.is_some());
    assert_eq!(c[1].outcome, Outcome::Exited(0));
    assert_eq!(c[1].output, "fine\n");
    assert_eq!(c[2].outcome, Outcome::Signaled(libc::SIGUSR1));
    let s = r.stats();
    assert_eq!((s.run, s.failed, s.timed_out), (3, 2, 0));
    assert_eq!((r.running(), r.queued()), (0, 0));
    // Draining clears the wake fd (a late byte may cause one empty wakeup).
    let cleared = wait_for(Duration::from_secs(2), || {
        (r.completions().is_empty() && !poll_in(r.wake_fd(), Duration::ZERO)).then_some(())
    });
    assert!(
        cleared.is_some(),
        "wake fd stays readable with nothing to take"
    );
}

#[test]
fn output_is_bounded_and_the_rest_drained() {
    let r = runner(1);
    // 1 MiB is far more than a pipe holds: the command only finishes if the
    // runner keeps reading past the limit.
    r.submit(req(1, "head -c 1048576 /dev/zero | tr '\\0' x; echo end"));
    let c = collect(&r, 1, Duration::from_secs(10));
    assert_eq!(c[0].outcome, Outcome::Exited(0));
    assert_eq!(c[0].output, "x".repeat(4096));
    assert_eq!(c[0].discarded, 1048576 + 4 - 4096);
}

#[test]
fn unknown_program_fails_with_127_and_says_why() {
    // A true SpawnFailed needs /bin/sh itself to fail to start (fork
    // failing), which a test cannot provoke without hurting its neighbours.
    let r = runner(1);
    r.submit(req(1, "/nonexistent/program"));
    let c = collect(&r, 1, Duration::from_secs(10));
    assert_eq!(c[0].outcome, Outcome::Exited(127));
    assert!(c[0].output.contains("/nonexistent/program"), "{:?}", c[0]);
}

#[test]
fn environment_is_exactly_path_and_the_pwd_sh_adds() {
    let r = runner(1);
    r.submit(req(1, "env"));
    let c = collect(&r, 1, Duration::from_secs(10));
    assert_eq!(c[0].outcome, Outcome::Exited(0));
    let mut lines: Vec<&str> = c[0].output.lines().collect();
    lines.sort();
    assert_eq!(lines, [format!("PATH={PATH}"), "PWD=/".to_string()]);
}

#[test]
fn only_descriptors_0_to_2_are_inherited() {
    // Descriptors without O_CLOEXEC, as a careless open elsewhere in the
    // daemon would leave them, plus one opened the normal Rust way.
    // SAFETY: plain open/dup2 on our own descriptor table.
    let leaky = unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0);
        assert_eq!(libc::dup2(fd, 900), 900);
        fd
    };
    let normal = fs::File::open("/dev/null").unwrap();
    let r = runner(1);
    // `ls` opens the directory it lists: that is the 3.
    r.submit(req(1, "ls /proc/self/fd"));
    r.submit(req(2, "readlink /proc/$$/fd/1 /proc/$$/fd/2"));
    let c = collect(&r, 2, Duration::from_secs(10));
    // SAFETY: closing the descriptors opened above.
    unsafe {
        libc::close(leaky);
        libc::close(900);
    }
    drop(normal);
    assert_eq!(c[0].outcome, Outcome::Exited(0));
    let mut fds: Vec<u32> = c[0].output.lines().map(|l| l.parse().unwrap()).collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2, 3], "descriptors seen by the command");
    // stdout and stderr are one pipe, so their output interleaves in order.
    let links: Vec<&str> = c[1].output.lines().collect();
    assert_eq!(links.len(), 2);
    assert!(links[0].starts_with("pipe:["), "{links:?}");
    assert_eq!(links[0], links[1]);
}

#[test]
fn stdin_is_dev_null() {
    let r = runner(1);
    let start = Instant::now();
    r.submit(req(1, "readlink /proc/self/fd/0; cat; echo cat=$?"));
    let c = collect(&r, 1, Duration::from_secs(10));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "cat waited for input"
    );
    assert_eq!(c[0].outcome, Outcome::Exited(0));
    assert_eq!(c[0].output, "/dev/null\ncat=0\n");
}

#[test]
fn at_most_max_running_at_once_started_in_order() {
    let dir = TempDir::new("runner_bound");
    let log = dir.join("log");
    let r = runner(2);
    for i in 0..10 {
        r.submit(req(
            i,
            &format!(
                "echo \"{i} start $(date +%s%N)\" >> {p}; sleep 0.3; echo \"{i} end $(date +%s%N)\" >> {p}",
                p = log.display()
            ),
        ));
    }
    let c = collect(&r, 10, Duration::from_secs(20));
    assert!(c.iter().all(|c| c.outcome == Outcome::Exited(0)), "{c:?}");
    let mut start = [0u128; 10];
    let mut end = [0u128; 10];
    for line in fs::read_to_string(&log).unwrap().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (i, t): (usize, u128) = (f[0].parse().unwrap(), f[2].parse().unwrap());
        match f[1] {
            "start" => start[i] = t,
            _ => end[i] = t,
        }
    }
    assert!(start.iter().chain(&end).all(|&t| t > 0), "all 10 ran");
    // The measured spans lie inside the real process lifetimes, so more
    // than two overlapping here would mean more than two running.
    let most = (0..10)
        .map(|i| {
            (0..10)
                .filter(|&j| start[j] <= start[i] && start[i] < end[j])
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(
        most, 2,
        "commands running at once (starts {start:?}, ends {end:?})"
    );
    // Spawned in queue order; the shells' `date` may be scheduled a little
    // out of order, hence the slack.
    let slack = 100_000_000;
    for i in 0..10 {
        for j in i + 1..10 {
            assert!(
                start[i] <= start[j] + slack,
                "{i} started after {j}: {start:?}"
            );
        }
    }
}

#[test]
fn time_limit_terminates_the_whole_group() {
    let dir = TempDir::new("runner_limit");
    let pids = dir.join("pids");
    let r = Runner::new(config(2, Duration::from_millis(500))).unwrap();
    // A background grandchild, and a foreground one that replaces a subshell.
    r.submit(req(
        1,
        &format!(
            "sleep 100 & echo $! > {p}; sh -c 'echo $$ >> {p}; exec sleep 100'",
            p = pids.display()
        ),
    ));
    // The same with SIGTERM ignored everywhere: only SIGKILL ends it.
    let pids2 = dir.join("pids2");
    r.submit(req(
        2,
        &format!(
            "trap '' TERM; sleep 100 & echo $! > {p}; sh -c 'echo $$ >> {p}; exec sleep 100'",
            p = pids2.display()
        ),
    ));
    let start = Instant::now();
    let c = collect(&r, 2, Duration::from_secs(10));
    let elapsed = start.elapsed();
    let _guards: Vec<Group> = c
        .iter()
        .filter_map(|c| c.pid)
        .map(|p| Group(p as i32))
        .collect();
    assert_eq!(c[0].outcome, Outcome::TimedOut);
    assert_eq!(c[1].outcome, Outcome::TimedOut);
    assert!(c[1].duration >= Duration::from_millis(1000), "{:?}", c[1]);
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    for (c, file) in c.iter().zip([&pids, &pids2]) {
        let leader = c.pid.unwrap() as i32;
        let kids: Vec<i32> = read_lines(file)
            .iter()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(kids.len(), 2, "{file:?}");
        // Orphans are reaped by init, which may take a moment.
        let gone = wait_for(Duration::from_secs(2), || {
            (!alive(leader) && kids.iter().all(|&k| !alive(k)) && group_members(leader).is_empty())
                .then_some(())
        });
        assert!(
            gone.is_some(),
            "group {leader} still has {:?}",
            group_members(leader)
        );
    }
    let s = r.stats();
    assert_eq!((s.run, s.failed, s.timed_out), (2, 2, 2));
}

#[test]
fn orphan_holding_the_pipe_does_not_hang_the_runner() {
    let r = runner(1);
    let start = Instant::now();
    r.submit(req(1, "sleep 1000 & echo $!; exit 0"));
    let c = collect(&r, 1, Duration::from_secs(5));
    let _guard = Group(c[0].pid.unwrap() as i32);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(c[0].outcome, Outcome::Exited(0));
    let orphan: i32 = c[0].output.trim().parse().unwrap();
    assert!(alive(orphan), "the orphan is still there holding the pipe");
    // Our end of its stdout pipe is closed: nothing leaks per such command.
    let pipe = fs::read_link(format!("/proc/{orphan}/fd/1")).unwrap();
    assert!(pipe.to_string_lossy().starts_with("pipe:["));
    for e in fs::read_dir("/proc/self/fd").unwrap().flatten() {
        assert_ne!(fs::read_link(e.path()).ok().as_ref(), Some(&pipe));
    }
    // And the worker is free for the next command.
    r.submit(req(2, "echo again"));
    let c = collect(&r, 1, Duration::from_secs(5));
    assert_eq!(
        (c[0].tag, &c[0].outcome),
        (Some(JournalId::new(2)), &Outcome::Exited(0))
    );
    assert_eq!(c[0].output, "again\n");
}

#[test]
fn submit_does_not_block_while_all_workers_are_busy() {
    let r = runner(1);
    r.submit(req(0, "sleep 0.5"));
    assert!(wait_for(Duration::from_secs(5), || (r.running() == 1).then_some(())).is_some());
    let start = Instant::now();
    for i in 1..=100 {
        r.submit(req(i, "true"));
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "100 submits took {took:?}"
    );
    assert_eq!((r.running(), r.queued()), (1, 100));
    // Shutdown lets them all run and reports every one.
    let c = r.shutdown(Duration::from_secs(30));
    assert_eq!(c.len(), 101);
    assert!(c.iter().all(|c| c.outcome == Outcome::Exited(0)));
}

#[test]
fn shutdown_waits_for_running_commands() {
    let r = runner(2);
    for i in 0..3 {
        r.submit(req(i, "sleep 0.3; echo done"));
    }
    let start = Instant::now();
    let mut c = r.shutdown(Duration::from_secs(10));
    let took = start.elapsed();
    c.sort_by_key(|c| c.tag);
    assert_eq!(c.len(), 3);
    for c in &c {
        assert_eq!(
            (&c.outcome, c.output.as_str()),
            (&Outcome::Exited(0), "done\n")
        );
    }
    // Two waves of 0.3 s with two workers.
    assert!(took >= Duration::from_millis(600), "{took:?}");
}

#[test]
fn shutdown_terminates_what_is_left_at_the_limit() {
    let r = runner(1);
    r.submit(req(1, "sleep 100"));
    r.submit(req(2, "echo never"));
    assert!(wait_for(Duration::from_secs(5), || (r.running() == 1).then_some(())).is_some());
    let start = Instant::now();
    let mut c = r.shutdown(Duration::from_millis(300));
    let took = start.elapsed();
    c.sort_by_key(|c| c.tag);
    assert_eq!(c.len(), 2);
    let _guard = Group(c[0].pid.unwrap() as i32);
    assert_eq!(c[0].outcome, Outcome::Terminated);
    assert_eq!((&c[1].outcome, c[1].pid), (&Outcome::Cancelled, None));
    assert!(took < Duration::from_secs(2), "{took:?}");
    let leader = c[0].pid.unwrap() as i32;
    // The group got SIGKILL; members that are not the runner's child die
    // asynchronously (the kernel tears them down after the signal), so
    // allow them a moment, but no longer than that.
    let gone = wait_for(Duration::from_secs(1), || {
        group_members(leader).is_empty().then_some(())
    });
    assert!(gone.is_some(), "{:?}", group_members(leader));
}

const LOG_HELPER: &str = "TPK_RUNNER_LOG_HELPER";

/// Run by `log_lines_reach_stderr` in a child test process, whose stderr
/// (where the daemon logs in the foreground) it inspects.
#[test]
#[ignore = "helper for log_lines_reach_stderr; does nothing on its own"]
fn log_helper() {
    if std::env::var_os(LOG_HELPER).is_none() {
        return;
    }
    let r = runner(1);
    r.submit(Request {
        tag: Some(JournalId::new(1)),
        label: "LOGTEST start 10.0.0.2".into(),
        command: "echo hello; printf 'esc\\033[31m\\n'; exit 3".into(),
    });
    r.submit(Request {
        tag: Some(JournalId::new(2)),
        label: "LOGTEST ok".into(),
        command: "echo fine; head -c 5000 /dev/zero | tr '\\0' y".into(),
    });
    collect(&r, 2, Duration::from_secs(10));
}

#[test]
fn log_lines_reach_stderr() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "log_helper", "--ignored", "--nocapture"])
        .env(LOG_HELPER, "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for want in [
        "tportknockd: warning: command LOGTEST start 10.0.0.2: | hello\n",
        "tportknockd: warning: command LOGTEST start 10.0.0.2: | esc\\u{1b}[31m\n",
        "tportknockd: warning: command LOGTEST start 10.0.0.2: failed: exit status 3 after ",
        "tportknockd: info: command LOGTEST ok: | fine\n",
        "tportknockd: warning: command LOGTEST ok: output truncated, 909 more bytes discarded\n",
        "tportknockd: info: command LOGTEST ok: exited 0 after ",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn median(mut v: Vec<u128>) -> u128 {
    v.sort();
    v[v.len() / 2]
}

/// Measures (reports, does not judge) the time from `submit` to the first
/// program the command runs, against spawning the same shell directly.
/// `cargo test --release --test runner -- --ignored --nocapture latency`
#[test]
#[ignore = "measurement; run explicitly, preferably with --release"]
fn latency_from_submit_to_command() {
    let dir = TempDir::new("runner_latency");
    let r = runner(4);
    let mut via_runner = Vec::new();
    let mut direct = Vec::new();
    for i in 0..50 {
        let f = dir.join(&format!("t{i}"));
        let cmd = format!("date +%s%N > {}", f.display());
        let t0 = now_ns();
        r.submit(req(i, &cmd));
        let c = collect(&r, 1, Duration::from_secs(5));
        assert_eq!(c[0].outcome, Outcome::Exited(0));
        let t1: u128 = fs::read_to_string(&f).unwrap().trim().parse().unwrap();
        via_runner.push(t1 - t0);

        let t0 = now_ns();
        let st = Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .status()
            .unwrap();
        assert!(st.success());
        let t1: u128 = fs::read_to_string(&f).unwrap().trim().parse().unwrap();
        direct.push(t1 - t0);
    }
    let (a, b) = (median(via_runner), median(direct));
    println!(
        "submit -> `date` in the command: median {:.3} ms via runner, {:.3} ms spawning sh directly",
        a as f64 / 1e6,
        b as f64 / 1e6
    );
}

/// Minor page faults taken so far by the calling thread.
fn minor_faults_of_this_thread() -> u64 {
    let stat = fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    // state ppid pgrp session tty_nr tpgid flags minflt
    after_name.split(' ').nth(7).unwrap().parse().unwrap()
}

/// Starting a command must not copy the daemon's address space: `fork`
/// write-protects every private page of the parent for copy-on-write, so
/// each page the daemon writes afterwards takes a fault (and a forked
/// daemon's cost grows with its memory); a spawn that borrows the address
/// space until `exec` leaves the pages alone.
#[test]
fn starting_a_command_leaves_the_daemons_memory_alone() {
    const PAGE: usize = 4096;
    const PAGES: usize = 16 * 1024; // 64 MiB of private, written memory
    let mut mem = memmap2::MmapMut::map_anon(PAGES * PAGE).unwrap();
    // Small pages, so that copy-on-write would cost one fault per page.
    mem.advise(memmap2::Advice::NoHugePage).unwrap();
    let mut write_all = |v: u8| {
        for p in 0..PAGES {
            mem[p * PAGE] = v;
        }
    };
    write_all(1);
    let r = runner(1);
    for i in 0..3 {
        r.submit(req(i, "true"));
    }
    let c = collect(&r, 3, Duration::from_secs(10));
    assert!(c.iter().all(|c| c.outcome.success()), "{c:?}");
    let before = minor_faults_of_this_thread();
    write_all(2);
    let faults = minor_faults_of_this_thread() - before;
    assert!(
        faults < PAGES as u64 / 4,
        "{faults} page faults writing {PAGES} pages after commands ran: \
         the daemon's memory was write-protected as by fork"
    );
}

/// Workers are started when requests find every worker busy, not all at
/// start: a daemon whose commands run one at a time keeps one thread.
#[test]
fn workers_start_on_demand_up_to_the_bound() {
    let r = runner(16);
    assert_eq!(r.workers(), 1, "one worker at start");
    for i in 0..5 {
        r.submit(req(i, "true"));
        collect(&r, 1, Duration::from_secs(10));
    }
    assert_eq!(r.workers(), 1, "one command at a time needs one worker");
    for i in 10..13 {
        r.submit(req(i, "sleep 0.3"));
    }
    assert_eq!(r.workers(), 3, "three at once need three");
    let c = collect(&r, 3, Duration::from_secs(10));
    assert!(c.iter().all(|c| c.outcome.success()), "{c:?}");
    let r = runner(2);
    for i in 0..4 {
        r.submit(req(i, "sleep 0.1"));
    }
    assert_eq!(r.workers(), 2, "never more than max_running");
    collect(&r, 4, Duration::from_secs(10));
}
