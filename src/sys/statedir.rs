//! The daemon's state directory (`-s`): its own, or refused.
//!
//! It holds the journal of stop commands that run as root at the next
//! start, so whoever can write into it can run commands as root. It is
//! therefore created 0700, owned by the daemon's user; an existing one must
//! be a real directory (not a symbolic link), owned by that user and not
//! writable by group or others. It is then held as a descriptor ([`Dir`])
//! and every file in it is opened relative to that, without following links.
//!
//! One daemon per directory: `lock` in it carries an exclusive `flock` for
//! the daemon's lifetime (released by the kernel however the process ends)
//! and the holder's pid, which a second daemon names when it is refused.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::dir::{self, Dir};

/// The lock file's name in the state directory.
pub const LOCK_NAME: &str = "lock";

/// A state directory that passed the checks, locked for this process.
#[derive(Debug)]
pub struct StateDir {
    dir: Dir,
    path: PathBuf,
    /// Holds the `flock` while open.
    _lock: File,
}

/// Why a state directory cannot be used.
#[derive(Debug)]
pub enum StateDirError {
    /// Not safely the daemon's own (wrong owner or mode, a symbolic link
    /// where a directory or file should be). The daemon refuses to start:
    /// running the journal's commands would let someone else choose them.
    Unsafe(String),
    /// Another daemon holds the directory (`pid` as it wrote it, if readable).
    Locked {
        /// The directory.
        path: PathBuf,
        /// The holder's pid as its lock file says.
        pid: Option<u32>,
    },
    /// Cannot be created, opened or written (read-only file system, a file
    /// in the way…). The daemon runs on without a journal.
    Io(io::Error),
}

impl std::fmt::Display for StateDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateDirError::Unsafe(msg) => f.write_str(msg),
            StateDirError::Locked { path, pid } => {
                write!(
                    f,
                    "state directory {} is in use by another tportknockd",
                    path.display()
                )?;
                match pid {
                    Some(pid) => write!(f, " (pid {pid})"),
                    None => Ok(()),
                }?;
                write!(
                    f,
                    ": two daemons on one journal would run each other's stops; \
                     stop that one, or give this one its own -s DIR"
                )
            }
            StateDirError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// What is wrong with a directory's owner and mode, if anything.
pub fn dir_problem(path: &Path, uid: u32, mode: u32, euid: u32) -> Option<String> {
    let p = path.display();
    if uid != euid {
        return Some(format!(
            "state directory {p} is owned by uid {uid}, not by this daemon's user (uid {euid}); \
             whoever owns it could plant stop commands that run as root; \
             fix: chown {euid} {p} && chmod 700 {p}, or give -s a directory of its own"
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "state directory {p} can be written by group or others (mode {:04o}); \
             they could plant stop commands that run as root; fix: chmod 700 {p}",
            mode & 0o7777
        ));
    }
    None
}

impl StateDir {
    /// Creates `path` (0700) if missing, checks it and locks it.
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        let p = path.display();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(StateDirError::Io)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StateDirError::Io(e)),
        }
        let is_link = || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let dir = Dir::open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) if is_link() => StateDirError::Unsafe(format!(
                "state directory {p} is a symbolic link; the daemon follows none there, \
                 so that nobody can redirect it; fix: give -s the real directory"
            )),
            Some(libc::ENOTDIR) => StateDirError::Unsafe(format!(
                "state directory {p} exists and is not a directory; fix: move it away \
                 or give -s another path"
            )),
            _ => StateDirError::Io(e),
        })?;
        let meta = dir.metadata().map_err(StateDirError::Io)?;
        if let Some(problem) = dir_problem(path, meta.uid(), meta.mode(), super::daemon::euid()) {
            return Err(StateDirError::Unsafe(problem));
        }
        let lock = lock(&dir, path)?;
        Ok(StateDir {
            dir,
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The directory's descriptor.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The path it was opened by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` for the daemon's own use: no link followed, created 0600
    /// when `create`, and refused ([`StateDirError::Unsafe`]) unless it is a
    /// regular file owned by the daemon's user with no other name.
    pub fn open_own(&self, name: &str, flags: libc::c_int) -> Result<File, StateDirError> {
        open_own(&self.dir, &self.path, name, flags)
    }
}

fn open_own(dir: &Dir, path: &Path, name: &str, flags: libc::c_int) -> Result<File, StateDirError> {
    let where_ = format!("{}/{name}", path.display());
    let file = dir
        .open_file(name, flags, 0o600)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => StateDirError::Unsafe(format!(
                "{where_} is a symbolic link, which tportknockd never creates: \
                 someone else wrote into its state directory; check it, then remove {where_}"
            )),
            _ => StateDirError::Io(e),
        })?;
    let meta = file.metadata().map_err(StateDirError::Io)?;
    own_file_problem(&where_, &meta, super::daemon::euid())
        .map_or(Ok(file), |m| Err(StateDirError::Unsafe(m)))
}

/// Why a file in the state directory is not the daemon's own, if it is not.
pub fn own_file_problem(name: &str, meta: &std::fs::Metadata, euid: u32) -> Option<String> {
    if !meta.is_file() {
        return Some(format!(
            "{name} is not a regular file; tportknockd created no such thing: \
             check the state directory, then remove {name}"
        ));
    }
    if meta.uid() != euid {
        return Some(format!(
            "{name} is owned by uid {}, not by this daemon's user (uid {euid}): \
             check the state directory, then remove {name}",
            meta.uid()
        ));
    }
    if meta.nlink() != 1 {
        return Some(format!(
            "{name} has {} names (hard links); writing it would change another file: \
             check the state directory, then remove {name}",
            meta.nlink()
        ));
    }
    None
}

/// Takes the directory's lock and writes this process's pid into it.
fn lock(dir: &Dir, path: &Path) -> Result<File, StateDirError> {
    let mut file = open_own(dir, path, LOCK_NAME, libc::O_RDWR | libc::O_CREAT)?;
    if !dir::try_lock(&file).map_err(StateDirError::Io)? {
        let mut text = String::new();
        let _ = Read::by_ref(&mut file).take(32).read_to_string(&mut text);
        return Err(StateDirError::Locked {
            path: path.to_owned(),
            pid: text.trim().parse().ok(),
        });
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    written.map_err(StateDirError::Io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Scratch;
    use std::os::unix::fs::PermissionsExt;

    fn unsafe_msg(r: Result<StateDir, StateDirError>) -> String {
        match r {
            Err(StateDirError::Unsafe(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn created_0700_and_locked_with_the_pid() {
        let tmp = Scratch::new("statedir-new");
        let path = tmp.0.join("a/b/state");
        let sd = StateDir::open(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        let pid = std::fs::read_to_string(path.join(LOCK_NAME)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // A second open in the same process is another description: refused.
        match StateDir::open(&path) {
            Err(StateDirError::Locked { pid: Some(p), .. }) => assert_eq!(p, std::process::id()),
            other => panic!("{other:?}"),
        }
        drop(sd);
        StateDir::open(&path).unwrap();
    }

    #[test]
    fn writable_by_others_or_a_link_is_refused() {
        let tmp = Scratch::new("statedir-bad");
        let path = tmp.0.join("state");
        std::fs::create_dir(&path).unwrap();
        for mode in [0o777, 0o1777, 0o770, 0o720] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let m = unsafe_msg(StateDir::open(&path));
            assert!(m.contains("chmod 700"), "{m}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(&path).unwrap();
        let link = tmp.0.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let m = unsafe_msg(StateDir::open(&link));
        assert!(m.contains("symbolic link"), "{m}");
        let file = tmp.file("file", b"", 0o600);
        assert!(unsafe_msg(StateDir::open(&file)).contains("not a directory"));
    }

    #[test]
    fn owner_rule() {
        let p = Path::new("/s");
        assert_eq!(dir_problem(p, 0, 0o700, 0), None);
        assert_eq!(dir_problem(p, 0, 0o755, 0), None);
        assert!(dir_problem(p, 1000, 0o700, 0)
            .unwrap()
            .contains("chown 0 /s"));
        assert!(dir_problem(p, 0, 0o700, 1000).is_some());
        assert!(dir_problem(p, 0, 0o702, 0).unwrap().contains("chmod 700"));
    }

    #[test]
    fn a_lock_file_that_is_a_link_is_refused_and_its_target_untouched() {
        let tmp = Scratch::new("statedir-locklink");
        let target = tmp.file("target", b"precious", 0o644);
        let path = tmp.0.join("state");
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::symlink(&target, path.join(LOCK_NAME)).unwrap();
        assert!(unsafe_msg(StateDir::open(&path)).contains("symbolic link"));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        // A hard link is refused too.
        std::fs::remove_file(path.join(LOCK_NAME)).unwrap();
        std::fs::hard_link(&target, path.join(LOCK_NAME)).unwrap();
        assert!(unsafe_msg(StateDir::open(&path)).contains("hard links"));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }
}
