//! The `tportknockd` binary's command line: `-C` exit statuses and output,
//! usage errors, `-h`, `-V`. No network needed.

mod common;
use common::daemon::BIN;
use common::TempDir;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// Copies a fixture to a private file (a checkout's umask may have made it
/// group-writable, which the checker rightly refuses).
fn fixture(dir: &TempDir, name: &str) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/check_cli_fixtures")
        .join(name);
    let dst = dir.join(name);
    std::fs::copy(&src, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    dst
}

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_valid_file_exits_0_and_describes_events() {
    let dir = TempDir::new("cli1");
    let f = fixture(&dir, "valid.conf");
    let (code, out, err) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("2 events, 0 errors, 0 warnings"), "{out}");
    let f = fixture(&dir, "warnings.conf");
    let (code, out, _) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(0));
    assert_eq!(out.matches("warning: ").count(), 4, "{out}");
}

#[test]
fn check_invalid_file_exits_1_with_every_error() {
    let dir = TempDir::new("cli2");
    let f = fixture(&dir, "invalid.conf");
    let (code, _, err) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(1), "{err}");
    let prefix = format!("{}:", f.display());
    assert_eq!(
        err.lines().filter(|l| l.contains(&prefix)).count(),
        6 + 1,
        "{err}"
    );
}

#[test]
fn check_the_shipped_example() {
    let dir = TempDir::new("cli3");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("knock.conf.example");
    let f = dir.join("knock.conf");
    std::fs::copy(src, &f).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("tcp/123 with exactly FIN RST PSH ACK"),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_2_with_one_line_and_the_usage() {
    for args in [
        &["-x"][..],
        &["-C"][..],
        &[][..],
        &["-c", "k", "-r", "soon"][..],
    ] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty());
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("tportknockd: "), "{args:?}: {err}");
        assert!(err.contains("Usage: tportknockd"), "{args:?}: {err}");
    }
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["-h".as_ref()]);
    assert_eq!(code, Some(0));
    for opt in [
        "-c", "-C", "-i", "-r", "-l", "-d", "-D", "-p", "-s", "-m", "-t", "-j", "-V", "-h",
    ] {
        assert!(out.contains(opt), "help lacks {opt}: {out}");
    }
    // knockd's users learn where its letters mean something else.
    assert!(
        out.contains("here -d debugs and -D detaches, the other way round from\nknockd"),
        "{out}"
    );
    // knockd's long spellings.
    let (code, long, _) = run(&["--help".as_ref()]);
    assert_eq!((code, &long), (Some(0), &out));
    for arg in ["-V", "--version"] {
        let (code, out, _) = run(&[arg.as_ref()]);
        assert_eq!(code, Some(0));
        assert_eq!(
            out.trim(),
            format!("tportknockd {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn run_refuses_a_config_others_can_write() {
    let dir = TempDir::new("cli4");
    let f = fixture(&dir, "valid.conf");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let pid = dir.join("pid");
    let (code, _, err) = run(&["-c".as_ref(), f.as_os_str(), "-p".as_ref(), pid.as_os_str()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
}

/// Issue 15: a 100,000-event file passed `-C` and then aborted the daemon
/// on allocation. Now `-C` (and the daemon's loader) refuse it at once,
/// saying which limit it breaks and what to do.
#[test]
fn check_refuses_a_100000_event_file_with_the_limit_named() {
    let dir = TempDir::new("cli-big");
    let path = dir.join("big.conf");
    let mut text = String::new();
    for i in 0..100_000u32 {
        text += &format!(
            "<E{i}>\n sequence = tcp:{}:s udp:{}\n timeout = 5\n start_command = true\n</E{i}>\n",
            1 + i % 60_000,
            1 + (i * 7) % 60_000
        );
    }
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = run(&["-C".as_ref(), path.as_os_str()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(
        err,
        format!(
            "error: {0}: 100000 events with 200000 steps in all; at most 65536 steps \
             (events × steps) are allowed: split the events over several daemons or \
             shorten the sequences\n{0}: invalid, 1 error\n",
            path.display()
        )
    );
}

/// `dist/knock.conf`, the file the package and `make install` put in
/// /etc, copied to a private file.
fn installed_config(dir: &TempDir, text: Option<&str>) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/knock.conf");
    let text = text.map_or_else(|| std::fs::read_to_string(src).unwrap(), str::to_owned);
    let f = dir.join("knock.conf");
    std::fs::write(&f, text).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

/// The installed config with every commented event uncommented, as its
/// header tells the admin to do.
fn uncommented() -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/knock.conf"),
    )
    .unwrap();
    let mut inside = false;
    let mut out = String::new();
    for line in text.lines() {
        let opens = line.starts_with("#<") && !line.starts_with("#</");
        inside |= opens;
        out.push_str(if inside { &line[1..] } else { line });
        out.push('\n');
        inside &= !line.starts_with("#</");
    }
    out
}

#[test]
fn the_installed_config_opens_nothing_until_edited() {
    let dir = TempDir::new("cli5");
    // As shipped: no event, so nothing to run.
    let f = installed_config(&dir, None);
    let (code, out, err) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("no event"), "{err}");

    // Uncommented but the sequences not chosen: refused, every PORT named.
    let text = uncommented();
    let f = installed_config(&dir, Some(&text));
    let (code, _, err) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(1), "{err}");
    let ports = text
        .lines()
        .filter(|l| l.trim_start().starts_with("sequence"))
        .map(|l| l.matches("PORT").count())
        .sum::<usize>();
    assert!(ports >= 4, "{text}");
    assert_eq!(err.matches("not 'PORT'").count(), ports, "{err}");

    // Ports chosen: every commented event is a valid one.
    let mut port = 40_000;
    let chosen: String = text
        .split("PORT")
        .enumerate()
        .map(|(i, part)| {
            port += 1;
            if i == 0 {
                part.to_string()
            } else {
                format!("{port}{part}")
            }
        })
        .collect();
    let f = installed_config(&dir, Some(&chosen));
    let (code, out, err) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(0), "{chosen}\n{out}{err}");
    let events = text
        .lines()
        .filter(|l| l.starts_with('<') && !l.starts_with("</"))
        .count();
    assert!(events >= 2, "{text}");
    assert!(out.contains(&format!("{events} events, 0 errors")), "{out}");
}

#[test]
fn run_refuses_a_config_with_no_events_and_names_the_fix() {
    let dir = TempDir::new("cli6");
    let f = installed_config(&dir, None);
    let (pid, state) = (dir.join("pid"), dir.join("state"));
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&f)
        .arg("-p")
        .arg(&pid)
        .arg("-s")
        .arg(&state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let shown = f.display();
    assert!(
        err.contains(&format!("{shown}: no events: edit it")),
        "{err}"
    );
    assert!(
        err.contains(&format!("check it with tportknockd -C {shown}")),
        "{err}"
    );
    // Refused before anything was set up.
    assert!(!pid.exists() && !state.exists());
    // -C says the same.
    let (code, _, err) = run(&["-C".as_ref(), f.as_os_str()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("{shown}: no events: edit it")),
        "{err}"
    );
}
