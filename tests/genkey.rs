//! `tportknock -K FILE`: a new key for a rotating event, through the built
//! binary. No network needed.

mod common;
use common::TempDir;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tportknock");

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `-K path` under `umask`, through sh so the umask is the child's own.
fn genkey(path: &std::path::Path, umask: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" -K \"$1\""))
        .arg(BIN)
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn writes_a_private_key_file_and_prints_nothing_secret() {
    let dir = TempDir::new("genkey1");
    // Whoever runs the test owns what it creates: the key must be theirs.
    let probe = dir.join("probe");
    std::fs::write(&probe, b"").unwrap();
    let me = std::fs::metadata(&probe).unwrap().uid();

    // A umask that would leave the owner without read permission
    // (0277) must not matter, nor a permissive one (0000).
    for (name, umask) in [("a.key", "0022"), ("b.key", "0277"), ("c.key", "0000")] {
        let path = dir.join(name);
        let out = genkey(&path, umask);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert_eq!(stderr, "");
        assert!(
            stdout.starts_with(&format!(
                "tportknock: wrote a new 256-bit key to {} (mode 0600, owner uid {me})",
                path.display()
            )),
            "{stdout}"
        );
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600, "umask {umask}");
        assert_eq!(meta.uid(), me);
        // The documented format: 64 lower-case hex digits and a newline.
        let key = std::fs::read_to_string(&path).unwrap();
        assert_eq!(key.len(), 65);
        assert!(key.ends_with('\n'));
        assert!(key[..64]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        // No 8-digit stretch of the key is on the terminal.
        for piece in key.as_bytes()[..64].windows(8) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!stdout.contains(piece) && !stderr.contains(piece));
        }
        // The daemon's loader accepts it.
        let loaded = tportknockd::crypto::keyfile::load(&path).unwrap();
        assert_eq!(loaded.bits(), 256);
    }
    let a = std::fs::read(dir.join("a.key")).unwrap();
    let b = std::fs::read(dir.join("b.key")).unwrap();
    assert_ne!(a, b, "two keys alike");
}

#[test]
fn never_replaces_a_file_or_follows_a_link() {
    let dir = TempDir::new("genkey2");
    let existing = dir.join("old.key");
    std::fs::write(&existing, "keep\n").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = genkey(&existing, "0022");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(&format!(
            "tportknock: {}: already exists; a key file is never overwritten",
            existing.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep\n");

    // A link planted where the key is to go, to a file or to nowhere.
    let victim = dir.join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    for (link, target) in [("l1.key", victim.clone()), ("l2.key", dir.join("nowhere"))] {
        let link = dir.join(link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let out = genkey(&link, "0022");
        assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
    assert!(!dir.join("nowhere").exists());

    // A directory that does not exist: an error, nothing created.
    let out = genkey(&dir.join("no/such/dir.key"), "0022");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("cannot create"), "{:?}", text(&out));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["-K"][..],
        &["-K", "x.key", "host"],
        &["-K", "x.key", "-v"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", text(&out));
    }
    let help = Command::new(BIN).arg("-h").output().unwrap();
    assert!(text(&help).0.contains("-K FILE"));
}
