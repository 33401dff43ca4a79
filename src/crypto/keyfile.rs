//! Key files: where a rotating event's secret is kept, one per event.
//!
//! Format: one line of 32 to 128 hexadecimal digits (upper or lower case;
//! an even number of them: 128 to 512 bits), optionally ended by a single
//! newline, nothing else: no spaces, no comment, no CR. The key is the
//! bytes the digits spell, the first two digits being the first byte — not
//! the ASCII text. `tportknock --genkey FILE` writes 64 lower-case digits
//! (256 bits from `getrandom(2)`) and a newline.
//!
//! Rules on load, for the daemon and the client alike: the file is opened
//! without following a symbolic link; it must be a regular file owned by
//! root or by the user reading it, with no permission bit for group or
//! others (0600 or 0400), and at most [`MAX_KEY_FILE`] bytes. Every error
//! names the file and the fix, and none shows any byte of the file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::key::{Key, MAX_KEY_BYTES, MIN_KEY_BYTES};
use crate::sys::wipe::wipe;

/// Largest key file read: a full 512-bit key with its newline is 129 bytes;
/// anything much larger is not a key file, and is refused unread.
pub const MAX_KEY_FILE: usize = 256;

/// What is wrong with a key file, as one line that starts with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError(pub String);

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyFileError {}

/// What every format error adds: what a key file looks like.
const FORMAT_HINT: &str = "a key file holds one line of 32 to 128 hexadecimal digits \
                           (tportknock --genkey FILE writes one)";

/// Reads the key at `path` for the running user (see the module rules).
pub fn load(path: &Path) -> Result<Key, KeyFileError> {
    load_as(path, crate::sys::daemon::euid())
}

/// Reads the key at `path` for a process running as `euid`.
pub fn load_as(path: &Path, euid: u32) -> Result<Key, KeyFileError> {
    let name = path.display();
    let fail = |msg: String| KeyFileError(format!("{name}: {msg}"));
    // O_NOFOLLOW: a link could point the daemon at a file someone else
    // controls. O_NONBLOCK: opening a FIFO must not hang; it is refused below.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            fail(match e.raw_os_error() {
                Some(libc::ELOOP) => {
                    "is a symbolic link; name the key file itself in key_file".into()
                }
                Some(libc::ENOENT) => {
                    format!("cannot open: {e}; tportknock --genkey {name} writes a new key")
                }
                _ => format!("cannot open: {e}"),
            })
        })?;
    // Checks the opened file itself, so a rename after the check changes nothing.
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    let uid = meta.uid();
    if uid != 0 && uid != euid {
        return Err(fail(format!(
            "refusing the key: the file is owned by uid {uid}, not by root or by uid {euid} \
             who reads it, so someone else can change or read it; fix: chown {euid} {name}"
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "refusing the key: group or others have access to it (mode {mode:04o}), and \
             whoever reads it can knock; fix: chmod 600 {name}"
        )));
    }
    if meta.len() > MAX_KEY_FILE as u64 {
        return Err(fail(format!("is {} bytes long; {FORMAT_HINT}", meta.len())));
    }
    let mut buf = [0u8; MAX_KEY_FILE + 1];
    let read = read_bounded(&file, &mut buf);
    let result = match read {
        Err(e) => Err(fail(format!("cannot read: {e}"))),
        // The file grew between fstat and read.
        Ok(n) if n > MAX_KEY_FILE => Err(fail(format!(
            "is more than {MAX_KEY_FILE} bytes long; {FORMAT_HINT}"
        ))),
        Ok(n) => parse(&buf[..n]).map_err(fail),
    };
    wipe(&mut buf);
    result
}

/// Reads until EOF or until `buf` is full.
fn read_bounded(mut file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The key in the text of a key file, or why the text is not one. The
/// message never contains a byte of `text`.
pub fn parse(text: &[u8]) -> Result<Key, String> {
    let line = text.strip_suffix(b"\n").unwrap_or(text);
    if line.is_empty() {
        return Err(format!("is empty; {FORMAT_HINT}"));
    }
    if let Some(pos) = line.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(if line[pos] == b'\n' {
            format!("has more than one line; {FORMAT_HINT}")
        } else {
            // Its position only: even a non-digit could be part of a secret.
            format!(
                "character {} of the line is not a hexadecimal digit (no spaces, no CR); \
                 {FORMAT_HINT}",
                pos + 1
            )
        });
    }
    let digits = line.len();
    if digits % 2 == 1 {
        return Err(format!(
            "has an odd number of hexadecimal digits ({digits}); {FORMAT_HINT}"
        ));
    }
    if digits < 2 * MIN_KEY_BYTES {
        return Err(format!(
            "holds a key of {} bits, fewer than the {} needed; {FORMAT_HINT}",
            digits * 4,
            MIN_KEY_BYTES * 8
        ));
    }
    if digits > 2 * MAX_KEY_BYTES {
        return Err(format!(
            "holds a key of {} bits, more than the {} used; {FORMAT_HINT}",
            digits * 4,
            MAX_KEY_BYTES * 8
        ));
    }
    let mut bytes = [0u8; MAX_KEY_BYTES];
    for (out, pair) in bytes.iter_mut().zip(line.chunks_exact(2)) {
        *out = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    let key = Key::new(&bytes[..digits / 2]).map_err(|e| e.to_string());
    wipe(&mut bytes);
    key
}

/// The value of a hexadecimal digit (checked by the caller).
fn nibble(digit: u8) -> u8 {
    debug_assert!(digit.is_ascii_hexdigit());
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Writes `key` to a new file at `path`: created with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` (an existing file or link is never
/// replaced or followed), mode 0600 whatever the umask, owned by the running
/// user, synced to disk. A file left half-written by an error is removed.
pub fn create(path: &Path, key: &Key) -> Result<(), KeyFileError> {
    let name = path.display();
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            KeyFileError(match e.kind() {
                io::ErrorKind::AlreadyExists => format!(
                    "{name}: already exists; a key file is never overwritten (remove it \
                     first to replace the key, and give every client the new one)"
                ),
                _ => format!("{name}: cannot create: {e}"),
            })
        })?;
    let mut text = [0u8; 2 * MAX_KEY_BYTES + 1];
    let digits = 2 * key.as_bytes().len();
    for (pair, byte) in text.chunks_exact_mut(2).zip(key.as_bytes()) {
        pair[0] = b"0123456789abcdef"[usize::from(byte >> 4)];
        pair[1] = b"0123456789abcdef"[usize::from(byte & 0xf)];
    }
    text[digits] = b'\n';
    let written = file
        // fchmod: a umask like 0277 would otherwise leave the owner without
        // read permission.
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| (&file).write_all(&text[..digits + 1]))
        .and_then(|()| file.sync_all());
    wipe(&mut text);
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(KeyFileError(format!(
            "{name}: cannot write: {e} (the file was removed again)"
        )));
    }
    // The directory entry too, so the file survives a crash right after.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        // Some file systems refuse fsync on a directory; the file's own
        // data is already synced, so this is only extra care.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Generates a key and writes it to a new file at `path` ([`create`]),
/// then reads it back as the daemon would, so a file system that ignores
/// the mode or owner is found now rather than at the daemon's start.
/// Returns the key's length in bits.
pub fn generate(path: &Path) -> Result<usize, KeyFileError> {
    let key = Key::generate().map_err(|e| {
        KeyFileError(format!(
            "{}: no random bytes from getrandom(2): {e}",
            path.display()
        ))
    })?;
    create(path, &key)?;
    match load(path) {
        Ok(back) if back == key => Ok(key.bits()),
        Ok(_) => {
            let _ = std::fs::remove_file(path);
            Err(KeyFileError(format!(
                "{}: reading the new key back gave different bytes; removed it again",
                path.display()
            )))
        }
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(KeyFileError(format!(
                "{e} (the new file was removed again)"
            )))
        }
    }
}

/// `tportknock --genkey FILE`: generates, says where the key went (never
/// the key), returns the exit status.
pub fn genkey_command(path: &Path, out: &mut dyn Write, err: &mut dyn Write, prog: &str) -> i32 {
    // A closed pipe must not change the verdict: write errors are ignored.
    match generate(path) {
        Ok(bits) => {
            let _ = writeln!(
                out,
                "{prog}: wrote a new {bits}-bit key to {} (mode 0600, owner uid {}); copy it \
                 to the other side over a channel you trust and name it in the event's key_file",
                path.display(),
                crate::sys::daemon::euid()
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "{prog}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Scratch;

    const HEX64: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key_bytes(text: &str) -> Vec<u8> {
        parse(text.as_bytes()).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn parses_hex_lines() {
        assert_eq!(key_bytes(HEX64), (0..32).collect::<Vec<u8>>());
        assert_eq!(
            key_bytes(&format!("{HEX64}\n")),
            (0..32).collect::<Vec<u8>>()
        );
        assert_eq!(
            key_bytes("A0b1C2d3E4f5A6b7C8d9EaFb0c1D2e3F"),
            [
                0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0xa6, 0xb7, 0xc8, 0xd9, 0xea, 0xfb, 0x0c, 0x1d,
                0x2e, 0x3f
            ]
        );
        assert_eq!(key_bytes(&"ff".repeat(64)).len(), 64);
    }

    /// Bad formats are refused with a message that never echoes the file.
    #[test]
    fn format_errors_show_no_key_material() {
        let secret = "c0ffee15deadbeefc0ffee15deadbeef";
        for (text, needle) in [
            (String::new(), "is empty"),
            ("\n".into(), "is empty"),
            (format!("{secret}\n\n"), "more than one line"),
            (format!("{secret}\n{secret}"), "more than one line"),
            (format!("{secret}\r\n"), "character 33 of the line"),
            (format!(" {secret}"), "character 1 of the line"),
            (format!("{secret}zz"), "character 33 of the line"),
            (
                format!("{secret}0"),
                "odd number of hexadecimal digits (33)",
            ),
            (
                secret[..30].to_string(),
                "key of 120 bits, fewer than the 128",
            ),
            ("ab".repeat(65), "key of 520 bits, more than the 512"),
            ("key = ".to_string() + secret, "character 1 of the line"),
        ] {
            let msg = match parse(text.as_bytes()) {
                Ok(key) => panic!("{text:?} gave {key:?}"),
                Err(msg) => msg,
            };
            assert!(msg.contains(needle), "{text:?}: {msg}");
            assert!(msg.contains("tportknock --genkey FILE"), "{msg}");
            for window in secret.as_bytes().windows(6) {
                let piece = std::str::from_utf8(window).unwrap();
                assert!(!msg.contains(piece), "{text:?}: {msg} shows {piece}");
            }
        }
    }

    #[test]
    fn loads_a_private_file() {
        let dir = Scratch::new("key-ok");
        for mode in [0o600, 0o400] {
            let path = dir.file(&format!("k{mode:o}"), format!("{HEX64}\n"), mode);
            assert_eq!(load(&path).unwrap().as_bytes(), &key_bytes(HEX64)[..]);
        }
    }

    #[test]
    fn refuses_group_or_other_access_naming_chmod() {
        let dir = Scratch::new("key-mode");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601] {
            let path = dir.file("k", HEX64, mode);
            let e = load(&path).unwrap_err().0;
            assert_eq!(
                e,
                format!(
                    "{0}: refusing the key: group or others have access to it (mode {mode:04o}), \
                     and whoever reads it can knock; fix: chmod 600 {0}",
                    path.display()
                )
            );
        }
    }

    /// Owned by someone who is neither root nor the reader: as root the
    /// file is given to nobody (65534); otherwise the reader is pretended
    /// to be another user, so the test runs with or without root.
    #[test]
    fn refuses_another_owner_naming_chown() {
        let dir = Scratch::new("key-owner");
        let path = dir.file("k", HEX64, 0o600);
        let me = crate::sys::daemon::euid();
        let (owner, reader) = if me == 0 {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            (65534, 0)
        } else {
            (me, me + 1)
        };
        let e = load_as(&path, reader).unwrap_err().0;
        assert_eq!(
            e,
            format!(
                "{0}: refusing the key: the file is owned by uid {owner}, not by root or by \
                 uid {reader} who reads it, so someone else can change or read it; fix: chown \
                 {reader} {0}",
                path.display()
            )
        );
        // The owner itself may read it.
        assert!(load_as(&path, owner).is_ok());
    }

    #[test]
    fn refuses_links_directories_fifos_and_large_files() {
        let dir = Scratch::new("key-kind");
        let target = dir.file("target", HEX64, 0o600);
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = load(&link).unwrap_err().0;
        assert!(e.ends_with("is a symbolic link; name the key file itself in key_file"));
        let sub = dir.0.join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(load(&sub).unwrap_err().0.ends_with("is not a regular file"));
        let fifo = dir.0.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .expect("mkfifo (coreutils)");
        assert!(status.success());
        assert!(load(&fifo)
            .unwrap_err()
            .0
            .ends_with("is not a regular file"));
        let big = dir.file("big", "a".repeat(MAX_KEY_FILE + 1), 0o600);
        assert!(load(&big).unwrap_err().0.contains("is 257 bytes long"));
        let missing = dir.0.join("missing");
        assert!(load(&missing)
            .unwrap_err()
            .0
            .contains("tportknock --genkey"));
        let bad = dir.file("bad", "secretsecret\n", 0o600);
        let e = load(&bad).unwrap_err().0;
        assert!(
            e.contains("character 1 of the line") && !e.contains("secret"),
            "{e}"
        );
    }

    #[test]
    fn generate_writes_a_private_new_file_and_never_replaces_one() {
        let dir = Scratch::new("key-gen");
        let path = dir.0.join("new.key");
        assert_eq!(generate(&path).unwrap(), 256);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), crate::sys::daemon::euid());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(text[..64]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let first = load(&path).unwrap();

        // An existing file is left alone, and so is the target of a link.
        let e = generate(&path).unwrap_err().0;
        assert!(
            e.contains("already exists; a key file is never overwritten"),
            "{e}"
        );
        assert_eq!(load(&path).unwrap(), first);
        let link = dir.0.join("link.key");
        let victim = dir.file("victim", "keep me", 0o644);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(generate(&link).unwrap_err().0.contains("already exists"));
        let dangling = dir.0.join("dangling.key");
        std::os::unix::fs::symlink(dir.0.join("nowhere"), &dangling).unwrap();
        assert!(generate(&dangling)
            .unwrap_err()
            .0
            .contains("already exists"));
        assert!(!dir.0.join("nowhere").exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

        // A second key differs from the first.
        let other = dir.0.join("other.key");
        generate(&other).unwrap();
        assert_ne!(load(&other).unwrap(), first);
    }

    #[test]
    fn genkey_command_prints_nothing_secret() {
        let dir = Scratch::new("key-cmd");
        let path = dir.0.join("k");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(genkey_command(&path, &mut out, &mut err, "prog"), 0);
        let out = String::from_utf8(out).unwrap();
        assert!(err.is_empty());
        assert!(out.starts_with(&format!(
            "prog: wrote a new 256-bit key to {} (mode 0600",
            path.display()
        )));
        let text = std::fs::read_to_string(&path).unwrap();
        for window in text.trim_end().as_bytes().windows(6) {
            let piece = std::str::from_utf8(window).unwrap();
            assert!(!out.contains(piece), "{out} shows {piece}");
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(genkey_command(&path, &mut out, &mut err, "prog"), 1);
        assert!(out.is_empty());
        assert!(String::from_utf8(err)
            .unwrap()
            .starts_with(&format!("prog: {}: already exists", path.display())));
    }
}
