//! End-to-end: real frames into the real daemon in a network namespace,
//! real commands, real signals. Issue 4 (doors) and the daemon's life.

mod common;
use common::daemon::*;
use common::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const SEQ: &[Hit] = &[(TCP, 7000, 0x02), (UDP, 7001, 0), (TCP, 7002, 0x11)];

fn config(dir: &TempDir, delay: u32) -> String {
    format!(
        "<OPEN>\n sequence = tcp:7000:s udp:7001 tcp:7002:fa\n timeout = 5\n \
         start_command = echo start %IP% >> {out}\n stop_command = echo stop %IP% >> {out}\n \
         command_delay = {delay}\n</OPEN>\n",
        out = dir.join("doors").display()
    )
}

#[test]
fn knock_runs_start_with_the_address_then_stop_after_the_delay() {
    let pair = Pair::new();
    let dir = TempDir::new("d1");
    write_config(&dir, &config(&dir, 2));
    let d = start_daemon(&pair, &dir, &[]);
    let knocked = Instant::now();
    knock(&pair, SEQ);
    let out = dir.join("doors");
    let l = wait_lines(&out, 1, Duration::from_secs(3));
    assert_eq!(
        l,
        vec![format!("start {}", pair.client4)],
        "log:\n{}",
        d.log_text()
    );
    let l = wait_lines(&out, 2, Duration::from_secs(5));
    let closed = knocked.elapsed();
    assert_eq!(
        l.get(1),
        Some(&format!("stop {}", pair.client4)),
        "log:\n{}",
        d.log_text()
    );
    assert!(
        closed >= Duration::from_millis(2000) && closed < Duration::from_millis(2700),
        "stop after {closed:?}, wanted about 2 s"
    );
    d.expect_log("door opened", Duration::from_secs(1));
}

#[test]
fn incomplete_or_wrong_sequences_open_nothing() {
    let pair = Pair::new();
    let dir = TempDir::new("d2");
    write_config(&dir, &config(&dir, 2));
    let d = start_daemon(&pair, &dir, &[]);
    knock(&pair, &SEQ[..2]);
    knock(
        &pair,
        &[(TCP, 7000, 0x02), (UDP, 7001, 0), (TCP, 7002, 0x10)],
    ); // ACK only: wrong flags
    knock(
        &pair,
        &[(TCP, 7002, 0x11), (UDP, 7001, 0), (TCP, 7000, 0x02)],
    ); // wrong order
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        lines(&dir.join("doors")).is_empty(),
        "log:\n{}",
        d.log_text()
    );
    // …and the right one still works afterwards.
    knock(&pair, SEQ);
    assert_eq!(
        wait_lines(&dir.join("doors"), 1, Duration::from_secs(3)).len(),
        1,
        "log:\n{}",
        d.log_text()
    );
}

#[test]
fn repeated_completion_rearms_instead_of_duplicating() {
    let pair = Pair::new();
    let dir = TempDir::new("d3");
    write_config(&dir, &config(&dir, 3));
    let d = start_daemon(&pair, &dir, &[]);
    knock(&pair, SEQ);
    wait_lines(&dir.join("doors"), 1, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1500));
    let second = Instant::now();
    knock(&pair, SEQ);
    d.expect_log("re-armed", Duration::from_secs(2));
    let l = wait_lines(&dir.join("doors"), 2, Duration::from_secs(6));
    let closed = second.elapsed();
    assert_eq!(
        l,
        vec![
            format!("start {}", pair.client4),
            format!("stop {}", pair.client4)
        ]
    );
    assert!(
        closed >= Duration::from_millis(2700),
        "stop came {closed:?} after the re-arm; expected about 3 s"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lines(&dir.join("doors")).len(),
        2,
        "exactly one start and one stop"
    );
}

#[test]
fn sigterm_closes_open_doors_and_removes_the_pid_file() {
    let pair = Pair::new();
    let dir = TempDir::new("d4");
    write_config(&dir, &config(&dir, 600));
    let mut d = start_daemon(&pair, &dir, &[]);
    assert!(dir.join("pid").exists());
    knock(&pair, SEQ);
    wait_lines(&dir.join("doors"), 1, Duration::from_secs(3));
    d.proc.signal(libc::SIGTERM);
    let st = d
        .proc
        .wait_timeout(Duration::from_secs(10))
        .expect("daemon did not exit on SIGTERM");
    assert!(st.success(), "exit status {st:?}; log:\n{}", d.log_text());
    assert_eq!(
        lines(&dir.join("doors")),
        vec![
            format!("start {}", pair.client4),
            format!("stop {}", pair.client4)
        ]
    );
    assert!(!dir.join("pid").exists(), "pid file left behind");
}

#[test]
fn kill_9_then_restart_runs_overdue_stop_at_once_and_the_other_on_time() {
    let pair = Pair::new();
    let dir = TempDir::new("d5");
    let out = dir.join("doors");
    let conf = format!(
        "<SHORT>\n sequence = tcp:7000:s tcp:7001:s\n timeout = 5\n start_command = echo start short >> {o}\n \
         stop_command = echo stop short >> {o}\n command_delay = 2\n</SHORT>\n\
         <LONG>\n sequence = tcp:7100:s tcp:7101:s\n timeout = 5\n start_command = echo start long >> {o}\n \
         stop_command = echo stop long >> {o}\n command_delay = 8\n</LONG>\n",
        o = out.display()
    );
    write_config(&dir, &conf);
    let mut d = start_daemon(&pair, &dir, &[]);
    let knocked = Instant::now();
    knock(
        &pair,
        &[
            (TCP, 7000, 2),
            (TCP, 7001, 2),
            (TCP, 7100, 2),
            (TCP, 7101, 2),
        ],
    );
    wait_lines(&out, 2, Duration::from_secs(3));
    d.proc.signal(libc::SIGKILL);
    d.proc.wait_timeout(Duration::from_secs(5)).expect("killed");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lines(&out).len(),
        2,
        "nothing closes while the daemon is dead"
    );
    let _d2 = start_daemon(&pair, &dir, &[]);
    let l = wait_lines(&out, 3, Duration::from_secs(2));
    assert_eq!(
        l.get(2).map(String::as_str),
        Some("stop short"),
        "overdue stop not run at once: {l:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(&out).len(), 3, "the long door must not close early");
    let l = wait_lines(&out, 4, Duration::from_secs(8));
    let closed = knocked.elapsed();
    assert_eq!(l.get(3).map(String::as_str), Some("stop long"));
    assert!(
        closed >= Duration::from_millis(7950) && closed < Duration::from_millis(8700),
        "long stop after {closed:?}, wanted about 8 s"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&out).len(), 4, "no stop runs twice");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_configuration() {
    let pair = Pair::new();
    let dir = TempDir::new("d6");
    write_config(&dir, &config(&dir, 60));
    let d = start_daemon(&pair, &dir, &[]);
    write_config(&dir, "<BROKEN>\n sequence = tcp:0\n</BROKEN>\n");
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reload failed", Duration::from_secs(3));
    knock(&pair, SEQ);
    assert_eq!(
        wait_lines(&dir.join("doors"), 1, Duration::from_secs(3)).len(),
        1,
        "log:\n{}",
        d.log_text()
    );
}

#[test]
fn sighup_with_a_new_file_switches_sequences_and_filter() {
    let pair = Pair::new();
    let dir = TempDir::new("d7");
    write_config(&dir, &config(&dir, 60));
    let d = start_daemon(&pair, &dir, &[]);
    let out = dir.join("doors");
    write_config(
        &dir,
        &format!(
            "<NEW>\n sequence = udp:9000 tcp:9001:x\n timeout = 5\n start_command = echo new %IP% >> {}\n</NEW>\n",
            out.display()
        ),
    );
    d.proc.signal(libc::SIGHUP);
    d.expect_log("reloaded", Duration::from_secs(3));
    knock(&pair, SEQ);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lines(&out).is_empty(),
        "old sequence still opens after reload"
    );
    knock(&pair, &[(UDP, 9000, 0), (TCP, 9001, 0x3f)]);
    assert_eq!(
        wait_lines(&out, 1, Duration::from_secs(3)),
        vec![format!("new {}", pair.client4)],
        "log:\n{}",
        d.log_text()
    );
}

#[test]
fn sigusr1_prints_a_stats_line() {
    let pair = Pair::new();
    let dir = TempDir::new("d8");
    write_config(&dir, &config(&dir, 60));
    let d = start_daemon(&pair, &dir, &[]);
    knock(&pair, SEQ);
    wait_lines(&dir.join("doors"), 1, Duration::from_secs(3));
    d.proc.signal(libc::SIGUSR1);
    d.expect_log("stats: frames=", Duration::from_secs(3));
    let text = d.log_text();
    let line = text.lines().find(|l| l.contains("stats: frames=")).unwrap();
    assert!(line.contains("OPEN=1/1"), "{line}");
    assert!(line.contains("pending_stops=1"), "{line}");
}

#[test]
fn ipv6_knock_opens_with_the_v6_address() {
    let pair = Pair::new();
    let dir = TempDir::new("d9");
    write_config(&dir, &config(&dir, 60));
    let d = start_daemon(&pair, &dir, &[]);
    knock_from(
        &pair,
        IpAddr::V6(pair.client6),
        IpAddr::V6(pair.server6),
        SEQ,
    );
    assert_eq!(
        wait_lines(&dir.join("doors"), 1, Duration::from_secs(3)),
        vec![format!("start {}", pair.client6)],
        "log:\n{}",
        d.log_text()
    );
}

#[test]
fn daemon_mode_returns_when_ready_and_fails_loudly() {
    let pair = Pair::new();
    let dir = TempDir::new("d10");
    write_config(&dir, &config(&dir, 60));
    let conf = dir.join("knock.conf");
    let pid = dir.join("pid");
    let state = dir.join("state");
    // A wrong interface: non-zero, and the message lists the real ones.
    let out = pair
        .server
        .command(BIN)
        .arg("-c")
        .arg(&conf)
        .args(["-i", "nosuch0", "-D"])
        .arg("-p")
        .arg(&pid)
        .arg("-s")
        .arg(&state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("nosuch0") && err.contains(&pair.server_if),
        "stderr: {err}"
    );
    // A good start: when -D returns, the daemon is capturing.
    let out = pair
        .server
        .command(BIN)
        .arg("-c")
        .arg(&conf)
        .args(["-i", &pair.server_if, "-D"])
        .arg("-p")
        .arg(&pid)
        .arg("-s")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon_pid: i32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: signalling the daemon we started, by its pid.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let guard = KillOnDrop(daemon_pid);
    knock(&pair, SEQ);
    assert_eq!(
        wait_lines(&dir.join("doors"), 1, Duration::from_secs(3)).len(),
        1
    );
    // A second instance on the same pid file is refused.
    let out = pair
        .server
        .command(BIN)
        .arg("-c")
        .arg(&conf)
        .args(["-i", &pair.server_if])
        .arg("-p")
        .arg(&pid)
        .arg("-s")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another tportknockd is running"));
    // SAFETY: as above.
    unsafe { libc::kill(daemon_pid, libc::SIGTERM) };
    let gone = wait_for(Duration::from_secs(10), || {
        (!alive(daemon_pid)).then_some(())
    });
    assert!(gone.is_some(), "daemon did not stop on SIGTERM");
    std::mem::forget(guard);
    assert_eq!(lines(&dir.join("doors")).len(), 2, "SIGTERM ran the stop");
}

#[test]
fn commands_get_a_clean_environment_fds_and_signal_mask() {
    let pair = Pair::new();
    let dir = TempDir::new("d11");
    let out = dir.join("probe");
    write_config(
        &dir,
        &format!(
            "<PROBE>\n sequence = tcp:7000:s udp:7001 tcp:7002:fa\n timeout = 5\n \
             start_command = {{ ls /proc/self/fd; env; grep -E '^Sig(Blk|Ign)' /proc/self/status; echo done; }} > {}\n</PROBE>\n",
            out.display()
        ),
    );
    let d = start_daemon(&pair, &dir, &[]);
    knock(&pair, SEQ);
    let text = wait_for(Duration::from_secs(3), || {
        let t = std::fs::read_to_string(&out).ok()?;
        t.contains("done").then_some(t)
    })
    .unwrap_or_else(|| panic!("probe command did not run; log:\n{}", d.log_text()));
    let lines: Vec<&str> = text.lines().collect();
    // ls lists its own directory fd (3) besides 0-2; nothing else is inherited.
    let fds: Vec<&str> = lines
        .iter()
        .copied()
        .take_while(|l| l.parse::<u32>().is_ok())
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{text}");
    let env: Vec<&str> = lines.iter().copied().filter(|l| l.contains('=')).collect();
    assert!(
        env.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{text}"
    );
    assert!(
        env.iter()
            .all(|l| l.starts_with("PATH=") || l.starts_with("PWD=")),
        "unexpected environment: {env:?}"
    );
    assert!(
        text.contains("SigBlk:\t0000000000000000"),
        "command inherited blocked signals:\n{text}"
    );
    // Signals 32 and 33 belong to the C library's threads and cannot be
    // reset; the 31 standard signals must all be at their defaults.
    let ign = lines
        .iter()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .expect("SigIgn line");
    let ign = u64::from_str_radix(ign.trim(), 16).unwrap();
    assert_eq!(
        ign & 0x7fff_ffff,
        0,
        "command inherited ignored standard signals:\n{text}"
    );
}

#[test]
fn notify_socket_gets_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let pair = Pair::new();
    let dir = TempDir::new("d12");
    write_config(&dir, &config(&dir, 60));
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let log = dir.join("daemon.log");
    let mut cmd = pair.server.command(BIN);
    cmd.arg("-c")
        .arg(dir.join("knock.conf"))
        .args(["-i", &pair.server_if]);
    cmd.arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"));
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::fs::File::create(&log).unwrap());
    let mut d = Daemon {
        proc: spawn(cmd),
        log,
    };
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("no READY=1 datagram");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means capturing: a knock right away opens.
    knock(&pair, SEQ);
    assert_eq!(
        wait_lines(&dir.join("doors"), 1, Duration::from_secs(3)).len(),
        1,
        "log:\n{}",
        d.log_text()
    );
    d.proc.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("no STOPPING=1 datagram");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(d
        .proc
        .wait_timeout(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}

#[test]
fn debug_logs_each_step_reset_and_timeout() {
    let pair = Pair::new();
    let dir = TempDir::new("d13");
    write_config(
        &dir,
        &config(&dir, 60).replace("timeout = 5", "timeout = 1"),
    );
    let d = start_daemon(&pair, &dir, &[]); // start_daemon passes -d
    let me = pair.client4;
    knock(&pair, &SEQ[..2]);
    d.expect_log(
        &format!("debug: {me} OPEN: step 1 of 3"),
        Duration::from_secs(2),
    );
    d.expect_log(
        &format!("info: {me} OPEN: step 2 of 3"),
        Duration::from_secs(2),
    );
    knock(&pair, &[(TCP, 7002, 0x02)]); // right port, wrong flags
    d.expect_log(
        &format!(
            "debug: {me} OPEN: reset at step 2 by tcp/7002 flags S, expected tcp/7002 with \
             exactly FIN ACK"
        ),
        Duration::from_secs(2),
    );
    knock(&pair, &SEQ[..1]);
    d.expect_log(&format!("{me} OPEN: timed out"), Duration::from_secs(4));
    knock(&pair, SEQ);
    d.expect_log(
        &format!("{me} OPEN: sequence complete"),
        Duration::from_secs(2),
    );
}
