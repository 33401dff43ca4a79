//! `make deb`: the package's contents, modes and conffiles as dpkg-deb shows
//! them, lintian without errors, and the package installed, upgraded,
//! removed and purged by dpkg in a scratch root (`dpkg --root`, maintainer
//! scripts run outside a chroot with DPKG_ROOT set, as dpkg supports). The
//! maintainer scripts' systemd branch runs against recording stand-ins for
//! systemctl and deb-systemd-invoke, in a mount namespace where
//! /run/systemd/system exists: no systemd runs here, and the host's is never
//! touched.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (`make test` installs dpkg-dev and lintian)"))
}

/// `make deb` once for every test of this file: the release build (which
/// `make test` has just made) packaged.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = Command::new("make")
            .args(["-s", "-C"])
            .arg(repo())
            .arg("deb")
            .output()
            .expect("run make");
        let stdout = ok(out, "make deb");
        let path = PathBuf::from(stdout.lines().last().expect("make deb names the package"));
        let want = format!("tportknockd_{}_", env!("CARGO_PKG_VERSION"));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&want) && name.ends_with(".deb"), "{name}");
        path
    })
}

fn deb_str() -> &'static str {
    deb().to_str().unwrap()
}

/// Every entry of the package: path (without the leading `.`) → mode as
/// `ls -l` shows it and owner.
fn contents() -> BTreeMap<String, (String, String)> {
    ok(run("dpkg-deb", &["-c", deb_str()]), "dpkg-deb -c")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_start_matches('.').trim_end_matches('/');
            let path = if path.is_empty() { "/" } else { path };
            (path.to_string(), (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

const BINARIES: [&str; 2] = ["/usr/sbin/tportknockd", "/usr/bin/tportknock"];
const CONFFILES: [&str; 2] = ["/etc/default/tportknockd", "/etc/tportknockd/knock.conf"];

/// The files the package must hold, with their modes; documentation that
/// policy wants gzipped is found under either name.
fn expected_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("/usr/sbin/tportknockd", "-rwxr-xr-x"),
        ("/usr/bin/tportknock", "-rwxr-xr-x"),
        ("/usr/share/man/man8/tportknockd.8.gz", "-rw-r--r--"),
        ("/usr/share/man/man5/knock.conf.5.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/tportknock.1.gz", "-rw-r--r--"),
        ("/lib/systemd/system/tportknockd.service", "-rw-r--r--"),
        ("/etc/default/tportknockd", "-rw-r--r--"),
        ("/etc/tportknockd", "drwx------"),
        ("/etc/tportknockd/knock.conf", "-rw-------"),
        ("/usr/share/doc/tportknockd/copyright", "-rw-r--r--"),
        ("/usr/share/doc/tportknockd/changelog.gz", "-rw-r--r--"),
        ("/usr/share/doc/tportknockd/README.md.gz", "-rw-r--r--"),
        ("/usr/share/doc/tportknockd/SECURITY.md.gz", "-rw-r--r--"),
        ("/usr/share/doc/tportknockd/BENCHMARKS.md.gz", "-rw-r--r--"),
        (
            "/usr/share/doc/tportknockd/examples/knock.conf.example",
            "-rw-r--r--",
        ),
        (
            "/usr/share/bash-completion/completions/tportknockd",
            "-rw-r--r--",
        ),
        (
            "/usr/share/bash-completion/completions/tportknock",
            "-rw-r--r--",
        ),
        ("/usr/share/lintian/overrides/tportknockd", "-rw-r--r--"),
    ]
}

#[test]
fn package_holds_every_file_with_its_mode_and_nothing_else() {
    let files = contents();
    for (path, mode) in expected_files() {
        let (got, owner) = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{files:#?}"));
        assert_eq!(got, mode, "{path}");
        assert_eq!(owner, "root/root", "{path}");
    }
    // Only directories besides: nothing unlisted slipped in.
    for (path, (mode, owner)) in &files {
        assert_eq!(owner, "root/root", "{path}");
        if !mode.starts_with('d') {
            assert!(
                expected_files().iter().any(|(p, _)| p == path),
                "{path} is in the package but not in this test"
            );
        } else if path != "/etc/tportknockd" {
            assert_eq!(mode, "drwxr-xr-x", "{path}");
        }
    }
}

#[test]
fn control_fields_and_conffiles() {
    let field = |name: &str| ok(run("dpkg-deb", &["-f", deb_str(), name]), "dpkg-deb -f");
    assert_eq!(field("Package").trim(), "tportknockd");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    let arch = ok(run("dpkg", &["--print-architecture"]), "dpkg");
    assert_eq!(field("Architecture").trim(), arch.trim());
    // dpkg-shlibdeps found what the binaries link.
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>= "), "{depends}");
    assert!(field("Installed-Size").trim().parse::<u64>().unwrap() > 0);

    let conffiles = ok(
        run("dpkg-deb", &["-I", deb_str(), "conffiles"]),
        "dpkg-deb -I",
    );
    let mut listed: Vec<&str> = conffiles.lines().collect();
    listed.sort_unstable();
    assert_eq!(listed, CONFFILES);

    // The maintainer scripts are there and executable.
    let info = ok(run("dpkg-deb", &["-I", deb_str()]), "dpkg-deb -I");
    for script in ["postinst", "prerm", "postrm", "md5sums"] {
        assert!(info.contains(&format!(" {script} ")), "{script}:\n{info}");
    }
}

/// The package's files unpacked (no scripts run) into a fresh directory.
fn unpacked(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb())
            .arg(dir.join(""))
            .output()
            .unwrap(),
        "dpkg-deb -x",
    );
    dir
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", path.display());
    out.stdout
}

#[test]
fn packaged_files_are_the_sources_and_the_binaries_run() {
    let dir = unpacked("deb-x");
    let at = |p: &str| dir.join(p.trim_start_matches('/'));
    for (page, section) in [
        ("tportknockd.8", 8),
        ("knock.conf.5", 5),
        ("tportknock.1", 1),
    ] {
        let packed = at(&format!("/usr/share/man/man{section}/{page}.gz"));
        assert!(
            gunzip(&packed) == fs::read(repo().join("man").join(page)).unwrap(),
            "{page}"
        );
    }
    for (packed, source) in [
        ("/etc/tportknockd/knock.conf", "dist/knock.conf"),
        ("/etc/default/tportknockd", "dist/tportknockd.default"),
        ("/usr/share/doc/tportknockd/copyright", "dist/deb/copyright"),
        (
            "/usr/share/doc/tportknockd/examples/knock.conf.example",
            "knock.conf.example",
        ),
        (
            "/usr/share/bash-completion/completions/tportknock",
            "dist/bash-completion/tportknock",
        ),
    ] {
        assert!(
            fs::read(at(packed)).unwrap() == fs::read(repo().join(source)).unwrap(),
            "{packed} differs from {source}"
        );
    }
    assert!(
        gunzip(&at("/usr/share/doc/tportknockd/changelog.gz"))
            == fs::read(repo().join("dist/deb/changelog")).unwrap()
    );
    // The copyright file is machine-readable (DEP-5).
    let copyright = fs::read_to_string(at("/usr/share/doc/tportknockd/copyright")).unwrap();
    assert!(copyright.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
    assert!(copyright.contains("\nFiles: *\n") && copyright.contains("\nLicense: GPL-2+\n"));

    // Stripped release binaries of this version.
    for (bin, name) in BINARIES.iter().zip(["tportknockd", "tportknock"]) {
        let out = run(at(bin).to_str().unwrap(), &["--version"]);
        assert_eq!(
            ok(out, bin),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION"))
        );
        let symbols = run("nm", &[at(bin).to_str().unwrap()]);
        assert!(text(&symbols).contains("no symbols"), "{bin} not stripped");
    }

    // The unit names the package's paths and is one systemd accepts: verified
    // with its paths pointed into the unpacked tree.
    let unit = fs::read_to_string(at("/lib/systemd/system/tportknockd.service")).unwrap();
    assert!(!unit.contains('@'), "unsubstituted placeholder:\n{unit}");
    assert!(
        unit.contains(
            "\nExecStart=/usr/sbin/tportknockd -c /etc/tportknockd/knock.conf $TPORTKNOCKD_OPTS\n"
        ),
        "{unit}"
    );
    assert!(unit.contains("\nEnvironmentFile=-/etc/default/tportknockd\n"));
    // A config to fix (78) or wrong options (2) end the unit, no restart loop.
    assert!(unit.contains("\nRestartPreventExitStatus=2 78\n"), "{unit}");
    let local = dir.join("tportknockd.service");
    fs::write(
        &local,
        unit.replace(
            "/usr/sbin/tportknockd",
            at("/usr/sbin/tportknockd").to_str().unwrap(),
        ),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local)
        .output()
        .expect("systemd-analyze (Debian package systemd; `make test` installs it)");
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn lintian_finds_no_errors() {
    let out = run("lintian", &["--no-tag-display-limit", "-I", deb_str()]);
    let report = text(&out);
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{report}");
    // Warnings are overridden with their reason in the package, or fail here
    // until they are explained.
    let warnings: Vec<&str> = report.lines().filter(|l| l.starts_with("W: ")).collect();
    assert!(
        warnings.is_empty(),
        "unexplained lintian warnings:\n{report}"
    );
    assert!(out.status.success(), "{report}");
}

/// A root with its own dpkg database, holding only the packages the
/// package depends on (as the host has them, without their files), so
/// dpkg checks the dependencies for real.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new(tag: &str) -> Root {
        require_root();
        let dir = TempDir::new(tag);
        let admin = dir.join("var/lib/dpkg");
        fs::create_dir_all(admin.join("info")).unwrap();
        fs::create_dir_all(admin.join("updates")).unwrap();
        let depends = ok(
            run("dpkg-deb", &["-f", deb_str(), "Depends"]),
            "dpkg-deb -f",
        );
        let names: Vec<&str> = depends
            .split(',')
            .map(|d| d.split_whitespace().next().unwrap())
            .collect();
        let status = ok(
            run("dpkg-query", &[&["-s"][..], &names].concat()),
            "dpkg-query -s",
        );
        fs::write(admin.join("status"), status).unwrap();
        for name in names {
            let full = ok(
                run("dpkg-query", &["-W", "-f", "${binary:Package}", name]),
                "dpkg-query -W",
            );
            fs::write(admin.join(format!("info/{full}.list")), "").unwrap();
        }
        Root { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    fn dpkg(&self, args: &[&str]) -> Output {
        Command::new("dpkg")
            .arg(format!("--root={}", self.dir.join("").display()))
            .arg("--force-script-chrootless")
            .arg(format!("--log={}", self.path("dpkg.log").display()))
            .args(args)
            .output()
            .expect("dpkg")
    }

    fn install(&self) {
        ok(self.dpkg(&["-i", deb_str()]), "dpkg -i");
    }

    /// The unit's wants link exists (it points into the root, so it is not
    /// followed here).
    fn enabled(&self) -> bool {
        let link = self.path("/etc/systemd/system/multi-user.target.wants/tportknockd.service");
        fs::symlink_metadata(link).is_ok()
    }

    /// systemctl on the scratch root (offline: enable, is-enabled).
    fn systemctl(&self, args: &[&str]) -> Output {
        Command::new("systemctl")
            .arg(format!("--root={}", self.dir.join("").display()))
            .args(args)
            .output()
            .expect("systemctl (Debian package systemd; `make test` installs it)")
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Pids of processes running `exe`.
fn running(exe: &Path) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe))
        .collect()
}

#[test]
fn installs_into_a_scratch_root_and_opens_nothing_until_edited() {
    let root = Root::new("deb-root");
    root.install();

    for (path, want) in [
        ("/usr/sbin/tportknockd", 0o755),
        ("/usr/bin/tportknock", 0o755),
        ("/etc/tportknockd", 0o700),
        ("/etc/tportknockd/knock.conf", 0o600),
        ("/etc/default/tportknockd", 0o644),
        ("/lib/systemd/system/tportknockd.service", 0o644),
        // postinst's state directory.
        ("/var/lib/tportknockd", 0o700),
    ] {
        assert_eq!(mode(&root.path(path)), want, "{path}");
    }
    let status = ok(root.dpkg(&["-s", "tportknockd"]), "dpkg -s");
    assert!(status.contains("Status: install ok installed"), "{status}");

    // Not enabled, not started: no wants link, systemctl agrees, and no
    // process runs the installed daemon.
    assert!(!root.enabled());
    let state = root.systemctl(&["is-enabled", "tportknockd.service"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "disabled");
    let daemon = root.path("/usr/sbin/tportknockd");
    assert_eq!(running(&daemon), Vec::<i32>::new());

    // Started anyway on the untouched config, the daemon refuses and says
    // what to do.
    let conf = root.path("/etc/tportknockd/knock.conf");
    let out = Command::new(&daemon)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(root.path("/run/tportknockd.pid"))
        .arg("-s")
        .arg(root.path("/var/lib/tportknockd"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // 78, which the unit's RestartPreventExitStatus names: no restart loop.
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("no events: edit it"), "{err}");
    assert!(
        err.contains(&format!("tportknockd -C {}", conf.display())),
        "{err}"
    );

    // The admin enables it; an upgrade keeps it enabled and keeps an edited
    // conffile; the state directory survives too.
    ok(
        root.systemctl(&["enable", "tportknockd.service"]),
        "systemctl enable",
    );
    assert!(root.enabled());
    fs::write(&conf, "# edited\n").unwrap();
    fs::write(root.path("/var/lib/tportknockd/doors.journal"), "x").unwrap();
    ok(
        root.dpkg(&["--force-confold", "-i", deb_str()]),
        "dpkg -i (again)",
    );
    assert!(root.enabled(), "upgrade lost the enabling");
    assert_eq!(fs::read_to_string(&conf).unwrap(), "# edited\n");
    assert!(root.path("/var/lib/tportknockd/doors.journal").exists());

    // Removal keeps the conffiles and the journal; purge takes both.
    ok(root.dpkg(&["-r", "tportknockd"]), "dpkg -r");
    for bin in BINARIES {
        assert!(!root.path(bin).exists(), "{bin} left after removal");
    }
    assert!(!root
        .path("/lib/systemd/system/tportknockd.service")
        .exists());
    assert_eq!(fs::read_to_string(&conf).unwrap(), "# edited\n");
    assert!(root.path("/var/lib/tportknockd/doors.journal").exists());
    ok(root.dpkg(&["--purge", "tportknockd"]), "dpkg --purge");
    for gone in [
        "/etc/tportknockd",
        "/etc/default/tportknockd",
        "/var/lib/tportknockd",
    ] {
        assert!(!root.path(gone).exists(), "{gone} left after purge");
    }
    assert!(!root.enabled(), "purge left the enabling");
}

/// What a maintainer script did on a (stand-in) systemd machine.
#[derive(Debug)]
struct Ran {
    /// The stand-ins' calls, one line each: `systemctl --system daemon-reload`.
    calls: Vec<String>,
    /// The state directory's mode afterwards, if it exists.
    state_dir: Option<String>,
}

/// Runs a maintainer script from dist/deb as dpkg would on a systemd machine:
/// in a private mount namespace whose /run has systemd/system and whose
/// /var/lib is an empty tmpfs (holding the state directory when `state`),
/// with `systemctl`, `deb-systemd-invoke` and `deb-systemd-helper` replaced
/// by stand-ins that record their arguments. The helper's queries
/// (debian-installed, was-enabled) answer `helper_says`.
fn script_under_systemd(script: &str, args: &[&str], helper_says: bool, state: bool) -> Ran {
    require_root();
    let dir = TempDir::new("deb-sd");
    let log = dir.join("calls");
    let bin = dir.join("bin");
    fs::create_dir(&bin).unwrap();
    for tool in ["systemctl", "deb-systemd-invoke", "deb-systemd-helper"] {
        let status = if tool == "deb-systemd-helper" && !helper_says {
            1
        } else {
            0
        };
        let path = bin.join(tool);
        fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >>'{}'\nexit {status}\n",
                log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let inner = format!(
        "mount -t tmpfs tpk-run /run && mkdir -p /run/systemd/system && \
         mount -t tmpfs tpk-varlib /var/lib && {} \
         PATH='{}':\"$PATH\" DPKG_ROOT= sh '{}' \"$@\"; rc=$?; \
         if [ -d /var/lib/tportknockd ]; then \
             stat -c 'state %a' /var/lib/tportknockd >>'{}'; fi; exit $rc",
        if state {
            "mkdir -m 0700 /var/lib/tportknockd &&"
        } else {
            ""
        },
        bin.display(),
        repo().join("dist/deb").join(script).display(),
        log.display()
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &inner,
            script,
        ])
        .args(args)
        .output()
        .expect("unshare (Debian package util-linux)");
    assert!(out.status.success(), "{script} {args:?}: {}", text(&out));
    let mut ran = Ran {
        calls: Vec::new(),
        state_dir: None,
    };
    for line in fs::read_to_string(&log).unwrap_or_default().lines() {
        match line.strip_prefix("state ") {
            Some(mode) => ran.state_dir = Some(mode.to_string()),
            None => ran.calls.push(line.to_string()),
        }
    }
    ran
}

const UNIT: &str = "tportknockd.service";

#[test]
fn fresh_installation_reloads_systemd_and_starts_nothing() {
    let ran = script_under_systemd("postinst", &["configure", ""], false, false);
    let calls = ran.calls.join("\n");
    assert!(
        calls.contains("systemctl --system daemon-reload"),
        "{calls}"
    );
    assert!(
        !calls.contains("deb-systemd-invoke"),
        "started something:\n{calls}"
    );
    assert!(
        !calls.contains(&format!("deb-systemd-helper enable {UNIT}")),
        "enabled the unit:\n{calls}"
    );
    assert!(calls.contains(&format!("deb-systemd-helper update-state {UNIT}")));
    assert_eq!(ran.state_dir.as_deref(), Some("700"), "{ran:?}");
}

#[test]
fn upgrade_keeps_the_admins_enabling_and_restarts_the_daemon() {
    let ran = script_under_systemd("postinst", &["configure", "0.0.9"], true, true);
    let calls = ran.calls.join("\n");
    assert!(
        calls.contains(&format!("deb-systemd-helper enable {UNIT}")),
        "{calls}"
    );
    assert!(
        calls.contains("systemctl --system daemon-reload"),
        "{calls}"
    );
    // deb-systemd-invoke restarts only a unit that runs or is enabled.
    assert!(
        calls.ends_with(&format!("deb-systemd-invoke restart {UNIT}")),
        "{calls}"
    );
    assert_eq!(ran.state_dir.as_deref(), Some("700"));

    // A disabled unit stays disabled through an upgrade.
    let ran = script_under_systemd("postinst", &["configure", "0.0.9"], false, true);
    assert!(!ran.calls.iter().any(|c| c.contains(" enable ")), "{ran:?}");
}

#[test]
fn removal_stops_the_daemon_and_purge_takes_the_state_directory() {
    let ran = script_under_systemd("prerm", &["remove"], true, true);
    assert_eq!(ran.calls, [format!("deb-systemd-invoke stop {UNIT}")]);
    // An upgrade does not stop it (postinst restarts it).
    let ran = script_under_systemd("prerm", &["upgrade", "0.2.0"], true, true);
    assert_eq!(ran.calls, Vec::<String>::new());

    let ran = script_under_systemd("postrm", &["remove"], true, true);
    assert_eq!(ran.calls, ["systemctl --system daemon-reload"]);
    assert_eq!(
        ran.state_dir.as_deref(),
        Some("700"),
        "removal keeps the journal"
    );
    let ran = script_under_systemd("postrm", &["purge"], true, true);
    assert_eq!(ran.calls, [format!("deb-systemd-helper purge {UNIT}")]);
    assert_eq!(ran.state_dir, None, "purge left the state directory");
}
