//! Issue 18, running it like a Debian daemon: `tportknockd -S` from the
//! real binary (open doors, a stop being retried, the counters; the door
//! journal once the daemon is gone), its socket's modes, a stalled or
//! foreign client, the step and reset lines, the config-mode warning at
//! start and reload, and `RELOADING=1`/`READY=1` on a real notify socket.

mod common;
use common::daemon::*;
use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OPEN: &[Hit] = &[(TCP, 7000, 0x02), (UDP, 7001, 0), (TCP, 7002, 0x11)];
const FLAKY: &[Hit] = &[(TCP, 8000, 0x02), (UDP, 8001, 0), (TCP, 8002, 0x11)];

/// OPEN keeps its doors for ten minutes; FLAKY's stop, a second after its
/// start, always fails (and is retried).
fn config(dir: &TempDir) -> String {
    let out = dir.join("doors");
    let out = out.display();
    format!(
        "<OPEN>\n sequence = tcp:7000:s udp:7001 tcp:7002:fa\n timeout = 5\n \
         start_command = echo start %IP% >> {out}\n stop_command = echo stop %IP% >> {out}\n \
         command_delay = 600\n</OPEN>\n\
         <FLAKY>\n sequence = tcp:8000:s udp:8001 tcp:8002:fa\n timeout = 5\n \
         start_command = echo flaky %IP% >> {out}\n \
         stop_command = echo failing stop %IP% >> {out}; exit 1\n \
         command_delay = 1\n</FLAKY>\n"
    )
}

/// `tportknockd -S` for the daemon with its files in `dir`: (status, stdout,
/// stderr).
fn status(dir: &TempDir) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("-S")
        .arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn from(pair: &Pair, src: Ipv4Addr, hits: &[Hit]) {
    knock_from(pair, IpAddr::V4(src), IpAddr::V4(pair.server4), hits);
}

#[test]
fn status_shows_open_doors_and_a_retried_stop_then_the_journal() {
    let pair = Pair::new();
    let dir = TempDir::new("st1");
    write_config(&dir, &config(&dir));
    // Without -d: the step lines are the default's.
    let mut d = start_daemon_opts(&pair.server, Some(&pair.server_if), &dir, &[], false);
    let (second, flaky) = (Ipv4Addr::new(10, 199, 0, 3), Ipv4Addr::new(10, 199, 0, 4));
    from(&pair, pair.client4, OPEN);
    from(&pair, second, OPEN);
    from(&pair, flaky, FLAKY);
    d.expect_log(
        &format!("{flaky} FLAKY: stop failed (attempt 1)"),
        Duration::from_secs(5),
    );
    wait_lines(&dir.join("doors"), 3, Duration::from_secs(3));

    // The failed stop is retried after 1, 2, 4 s: ask until it is seen
    // waiting for its next attempt (not running it).
    let shown = wait_for(Duration::from_secs(8), || {
        let (code, out, err) = status(&dir);
        assert_eq!(code, Some(0), "{out}{err}");
        out.contains(&format!("{flaky} FLAKY: stop failed"))
            .then_some(out)
    })
    .unwrap_or_else(|| panic!("-S never showed the failed stop:\n{}", status(&dir).1));
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "tportknockd {} running, pid {}, up ",
            env!("CARGO_PKG_VERSION"),
            d.proc.pid()
        )) && lines[0].contains(&format!("capturing on {}", pair.server_if)),
        "{shown}"
    );
    assert_eq!(lines[1], "doors open: 2", "{shown}");
    for (line, src) in [(lines[2], pair.client4), (lines[3], second)] {
        let prefix = format!("  {src} OPEN: open, closes in ");
        assert!(line.starts_with(&prefix), "{shown}");
        // About ten minutes left.
        assert!(
            line.contains("closes in 9 min ") || line.ends_with("closes in 10 min 00 s"),
            "{shown}"
        );
    }
    assert_eq!(lines[4], "stops pending or being retried: 1", "{shown}");
    assert!(
        lines[5].starts_with(&format!("  {flaky} FLAKY: stop failed "))
            && lines[5].contains("the door may still be open; next attempt in "),
        "{shown}"
    );
    assert!(lines[6].starts_with("counters: frames="), "{shown}");
    assert!(
        lines[6].contains(" doors=3 ") && lines[6].contains(" retrying=1 "),
        "{shown}"
    );
    assert_eq!(lines.len(), 7, "{shown}");

    // The socket: 0600 in a 0700 directory of root's, beside the pid file.
    let sock = dir.join("pid.d/control");
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(&dir.join("pid.d")), 0o700);

    // Steps past the first are info lines by default; the first is not
    // logged, and nothing at debug level.
    let log = d.log_text();
    for src in [pair.client4, second] {
        for step in [2, 3] {
            let want = format!("tportknockd: info: {src} OPEN: step {step} of 3\n");
            assert!(log.contains(&want), "no {want:?} in:\n{log}");
        }
    }
    assert!(!log.contains("step 1 of"), "{log}");
    assert!(!log.contains(": debug: "), "{log}");

    // Stopped: the open doors close, the failing stop stays in the journal,
    // and -S says so from there.
    d.proc.signal(libc::SIGTERM);
    let st = d
        .proc
        .wait_timeout(Duration::from_secs(15))
        .expect("no exit");
    assert!(st.success(), "{}", d.log_tail(10));
    assert!(!sock.exists(), "the socket outlived the daemon");
    let (code, out, err) = status(&dir);
    assert_eq!(code, Some(3), "{out}{err}");
    let journal = dir.join("state/doors.journal");
    assert!(
        out.starts_with(&format!(
            "tportknockd is not running (no daemon answers on {}).\n\
             From the door journal {}:\n\
             stops pending, run at the next start: 1\n  {flaky} FLAKY: overdue by ",
            sock.display(),
            journal.display()
        )) && out.ends_with(&format!(
            ": runs at once: echo failing stop {flaky} >> {}; exit 1\n",
            dir.join("doors").display()
        )),
        "{out}"
    );
}

#[test]
fn a_stalled_or_foreign_client_does_not_hold_the_daemon_and_reload_notifies() {
    let pair = Pair::new();
    let dir = TempDir::new("st2");
    let conf = write_config(&dir, &config(&dir));
    // Readable by the group: the sequences are the secret.
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let log = dir.join("daemon.log");
    let mut cmd = pair.server.command(BIN);
    cmd.arg("-c")
        .arg(&conf)
        .args(["-i", &pair.server_if, "-d"])
        .arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"))
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let d = Daemon {
        proc: spawn(cmd),
        log,
    };
    let recv = || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("no notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv(), "READY=1", "{}", d.log_text());
    let chmod = format!(
        "{} can be read by group or others (mode 0640): whoever reads it knows the knock \
         sequences; fix: chmod 600 {}",
        conf.display(),
        conf.display()
    );
    d.expect_log(&format!("warning: {chmod}"), Duration::from_secs(1));

    // With -d a reset names the frame and the step it waited for.
    knock(
        &pair,
        &[(TCP, 7000, 0x02), (UDP, 7001, 0), (TCP, 7002, 0x10)],
    );
    d.expect_log(
        &format!(
            "debug: {} OPEN: reset at step 2 by tcp/7002 flags A, expected tcp/7002 with \
             exactly FIN ACK",
            pair.client4
        ),
        Duration::from_secs(3),
    );

    // A client that connects and says nothing: knocks still open doors.
    let stalled = UnixStream::connect(dir.join("pid.d/control")).unwrap();
    let knocked = Instant::now();
    knock(&pair, OPEN);
    let opened = wait_lines(&dir.join("doors"), 1, Duration::from_secs(3));
    assert_eq!(
        opened,
        [format!("start {}", pair.client4)],
        "{}",
        d.log_tail(20)
    );
    assert!(
        knocked.elapsed() < Duration::from_secs(2),
        "{:?}",
        knocked.elapsed()
    );
    // …and -S is answered once the stalled client's two seconds are up.
    let asked = Instant::now();
    let (code, out, err) = status(&dir);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("  {} OPEN: open, closes in ", pair.client4)),
        "{out}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    drop(stalled);

    // A user that is neither root nor the daemon's, even one that gets past
    // the directory's and socket's modes, is refused by its credentials.
    let bin_dir = TempDir::new("st2bin");
    let bin = bin_dir.join("tportknockd");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin_dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+dac_override",
            "--ambient-caps=+dac_override",
        ])
        .arg(&bin)
        .arg("-S")
        .arg("-p")
        .arg(dir.join("pid"))
        .arg("-s")
        .arg(dir.join("state"))
        .output()
        .expect("setpriv (Debian package util-linux; `make test` installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text,
        "error: refused: only root and the daemon's user may ask\n"
    );
    d.expect_log(
        "status socket: refused a client of uid 65534",
        Duration::from_secs(2),
    );

    // SIGHUP: RELOADING=1 with the monotonic clock, then READY=1; the
    // config's mode is warned about again.
    let reload = || {
        d.proc.signal(libc::SIGHUP);
        let first = recv();
        let usec: u64 = first
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{first:?}"))
            .parse()
            .unwrap();
        // STATUS= lines may come between; READY=1 ends the reload.
        let ready = (0..4).map(|_| recv()).find(|m| m == "READY=1");
        assert!(ready.is_some(), "no READY=1 after the reload");
        usec
    };
    let a = reload();
    std::thread::sleep(Duration::from_millis(300));
    let b = reload();
    assert!(
        b >= a + 300_000 && b < a + 30_000_000,
        "MONOTONIC_USEC {a} then {b}"
    );
    d.expect_log(&format!("warning: reload: {chmod}"), Duration::from_secs(1));
    d.expect_log("info: reloaded: capturing on", Duration::from_secs(1));
}
