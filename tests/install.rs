//! `make install` / `make uninstall` into a scratch prefix, and the installed
//! systemd unit's command run the way systemd would run it: with only the
//! unit's capability bounding set, no new privileges, and a notify socket.

mod common;

use common::daemon::*;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An installation under `root`, made with the binaries this test run built
/// (`-o release`: the tests do not wait for a release build).
struct Installed {
    root: TempDir,
}

impl Installed {
    fn new(tag: &str) -> Installed {
        require_root();
        let root = TempDir::new(tag);
        let i = Installed { root };
        let out = i.make("install");
        assert!(out.status.success(), "make install failed:\n{}", text(&out));
        i
    }

    fn make(&self, target: &str) -> Output {
        let bin_dir = Path::new(BIN).parent().unwrap();
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(repo())
            .args(["-o", "release", target])
            .arg(format!("PREFIX={}", self.path("usr").display()))
            .arg(format!("SYSCONFDIR={}", self.path("etc").display()))
            .arg(format!("RELEASE_DIR={}", bin_dir.display()))
            .output()
            .expect("run make")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("etc/tportknockd/knock.conf")
    }

    fn unit(&self) -> String {
        fs::read_to_string(self.path("usr/lib/systemd/system/tportknockd.service"))
            .expect("unit installed")
    }

    /// The value of `Key=` in the unit (the first one).
    fn unit_value(&self, key: &str) -> String {
        let unit = self.unit();
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit has no {key}=:\n{unit}"))
            .to_string()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_places_every_file_and_uninstall_keeps_only_the_config() {
    let inst = Installed::new("inst1");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let files = [
        ("usr/sbin/tportknockd", bin_dir.join("tportknockd"), 0o755),
        ("usr/bin/tportknock", bin_dir.join("tportknock"), 0o755),
        (
            "usr/share/man/man8/tportknockd.8",
            repo().join("man/tportknockd.8"),
            0o644,
        ),
        (
            "usr/share/man/man5/knock.conf.5",
            repo().join("man/knock.conf.5"),
            0o644,
        ),
        (
            "usr/share/man/man1/tportknock.1",
            repo().join("man/tportknock.1"),
            0o644,
        ),
        (
            "usr/share/bash-completion/completions/tportknockd",
            repo().join("dist/bash-completion/tportknockd"),
            0o644,
        ),
        (
            "usr/share/bash-completion/completions/tportknock",
            repo().join("dist/bash-completion/tportknock"),
            0o644,
        ),
        // The safe first config (every event commented out), not the example.
        (
            "etc/tportknockd/knock.conf",
            repo().join("dist/knock.conf"),
            0o600,
        ),
        (
            "etc/default/tportknockd",
            repo().join("dist/tportknockd.default"),
            0o644,
        ),
    ];
    let removed = files.len() - 2;
    for (rel, source, want) in &files {
        let path = inst.path(rel);
        assert_eq!(mode(&path), *want, "{rel}");
        assert!(
            fs::read(&path).unwrap() == fs::read(source).unwrap(),
            "{rel} differs from {}",
            source.display()
        );
    }
    assert_eq!(mode(&inst.path("etc/tportknockd")), 0o700);
    assert_eq!(
        mode(&inst.path("usr/lib/systemd/system/tportknockd.service")),
        0o644
    );

    // The unit names the installed paths, nothing left to substitute.
    let unit = inst.unit();
    assert!(!unit.contains('@'), "unsubstituted placeholder:\n{unit}");
    let exec = inst.unit_value("ExecStart");
    assert!(
        exec.starts_with(&format!(
            "{} -c {} ",
            inst.path("usr/sbin/tportknockd").display(),
            inst.config().display()
        )),
        "{exec}"
    );
    assert_eq!(inst.unit_value("Type"), "notify");
    assert_eq!(inst.unit_value("Restart"), "on-failure");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(inst.path("usr/lib/systemd/system/tportknockd.service"))
        .output()
        .expect("systemd-analyze (Debian package systemd; `make test` installs it)");
    assert!(verify.status.success(), "{}", text(&verify));

    // The config the user starts from opens nothing: the installed daemon
    // refuses it and names the way on.
    let check = Command::new(inst.path("usr/sbin/tportknockd"))
        .arg("-C")
        .arg(inst.config())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        text(&check).contains(&format!(
            "no events: edit it (an event is a <NAME> … </NAME> block), then check it with \
             tportknockd -C {}",
            inst.config().display()
        )),
        "{}",
        text(&check)
    );

    // A second install never overwrites a config the user edited.
    fs::write(inst.config(), "# mine\n").unwrap();
    fs::write(inst.path("etc/default/tportknockd"), "# my options\n").unwrap();
    let again = inst.make("install");
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(fs::read_to_string(inst.config()).unwrap(), "# mine\n");
    assert_eq!(
        fs::read_to_string(inst.path("etc/default/tportknockd")).unwrap(),
        "# my options\n"
    );

    let out = inst.make("uninstall");
    assert!(out.status.success(), "{}", text(&out));
    for (rel, _, _) in &files[..removed] {
        assert!(!inst.path(rel).exists(), "{rel} left behind");
    }
    assert!(!inst
        .path("usr/lib/systemd/system/tportknockd.service")
        .exists());
    assert_eq!(fs::read_to_string(inst.config()).unwrap(), "# mine\n");
}

#[test]
fn install_never_compiles_and_says_to_run_make_first() {
    require_root();
    let root = TempDir::new("inst0");
    let empty = root.join("no-build");
    fs::create_dir(&empty).unwrap();
    // A cargo that would leave a mark if install ran it.
    let mark = root.join("cargo-ran");
    let cargo = root.join("cargo");
    fs::write(
        &cargo,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display()),
    )
    .unwrap();
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(repo())
        .arg("install")
        .arg(format!("PREFIX={}", root.join("usr").display()))
        .arg(format!("SYSCONFDIR={}", root.join("etc").display()))
        .arg(format!("RELEASE_DIR={}", empty.display()))
        .arg(format!("CARGO={}", cargo.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "{}/tportknockd is missing: run 'make' first",
            empty.display()
        )),
        "{}",
        text(&out)
    );
    assert!(!mark.exists(), "make install ran cargo");
    assert!(
        !root.join("usr").exists(),
        "make install installed something"
    );
}

/// The capability numbers of `CAP_…` names (only those the unit may use).
fn cap_bits(names: &str) -> u64 {
    names
        .split_whitespace()
        .map(|n| match n {
            "CAP_NET_ADMIN" => 1u64 << 12,
            "CAP_NET_RAW" => 1 << 13,
            other => panic!("unit keeps {other}: extend this test and the man page"),
        })
        .fold(0, |a, b| a | b)
}

fn status_hex(pid: i32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in status"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

#[test]
fn installed_unit_command_opens_a_door_with_only_the_units_capabilities() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    let inst = Installed::new("inst2");
    let pair = Pair::new();
    pair.server.must(
        "nft add table inet t && \
         nft add set inet t knocked '{ type ipv4_addr; }'",
    );
    fs::write(
        inst.config(),
        "<SSH>\n sequence = tcp:7001:fs udp:7002 tcp:7003:up\n timeout = 10\n \
         start_command = nft add element inet t knocked { %IP% }\n</SSH>\n",
    )
    .unwrap();

    // ExecStart as systemd would run it, $TPORTKNOCKD_OPTS from the
    // environment file replaced by this test's options.
    let bounding = cap_bits(&inst.unit_value("CapabilityBoundingSet"));
    let setpriv_caps: Vec<String> = inst
        .unit_value("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert_eq!(inst.unit_value("NoNewPrivileges"), "yes");
    let state = inst.path("state");
    let opts = format!(
        "-i {} -p {} -s {}",
        pair.server_if,
        inst.path("pid").display(),
        state.display()
    );
    let exec = inst
        .unit_value("ExecStart")
        .replace("$TPORTKNOCKD_OPTS", &opts);
    let sock_path = inst.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut cmd = pair.server.command("setpriv");
    cmd.arg(format!("--bounding-set=-all,{}", setpriv_caps.join(",")))
        .arg("--inh-caps=-all")
        .arg("--no-new-privs")
        .arg("--")
        .args(exec.split_whitespace())
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(fs::File::create(inst.path("daemon.log")).unwrap());
    let mut daemon = spawn(cmd);
    let log = || fs::read_to_string(inst.path("daemon.log")).unwrap_or_default();
    let mut buf = [0u8; 64];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1 ({e}); log:\n{}", log()));
    assert_eq!(&buf[..n], b"READY=1", "log:\n{}", log());
    // setpriv execs the daemon, so the pid is the daemon's.
    assert_eq!(
        status_hex(daemon.pid(), "CapBnd:") & !bounding,
        0,
        "daemon runs with more than the unit's bounding set"
    );

    knock(
        &pair,
        &[(TCP, 7001, 0x03), (UDP, 7002, 0), (TCP, 7003, 0x28)],
    );
    let opened = wait_for(Duration::from_secs(5), || {
        pair.server
            .must("nft list set inet t knocked")
            .contains(&pair.client4.to_string())
            .then_some(())
    });
    assert!(
        opened.is_some(),
        "nft did not run with the unit's capabilities; log:\n{}",
        log()
    );

    daemon.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(daemon
        .wait_timeout(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}
