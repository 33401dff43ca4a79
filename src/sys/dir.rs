//! A directory held open as a descriptor. Files in it are opened, created,
//! renamed and removed relative to that descriptor (`openat`, `renameat`,
//! `unlinkat`), with `O_NOFOLLOW`, so nobody can swap a path component or a
//! file for a symbolic link between a check and its use.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A directory opened with `O_DIRECTORY | O_NOFOLLOW`.
#[derive(Debug)]
pub struct Dir {
    file: File,
}

/// What `lstat` says about a name in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// `S_IFMT` bits of the mode.
    pub kind: Kind,
    /// Owner.
    pub uid: u32,
    /// Permission bits (`0o7777`).
    pub mode: u32,
}

/// File types the daemon tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// FIFO, socket, device.
    Other,
}

impl Kind {
    fn of(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// A name inside a directory: one component, no `/`, no NUL.
fn component(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

impl Dir {
    /// Opens `path` as a directory. A symbolic link as its last component
    /// is not followed: it fails, like anything but a directory, with
    /// `ENOTDIR` (Linux checks `O_DIRECTORY` on the link itself).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Dir { file })
    }

    /// The directory's own owner, mode and type.
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Sets the directory's own permission bits (`fchmod` on the
    /// descriptor: no name is followed).
    pub fn set_own_mode(&self, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// Another descriptor for the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            file: self.file.try_clone()?,
        })
    }

    /// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`: a symbolic
    /// link named `name` fails with `ELOOP` instead of being followed.
    pub fn open_file(&self, name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
        let name = component(name)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY;
        // SAFETY: valid directory descriptor and NUL-terminated name; the
        // mode is only read when O_CREAT is given.
        let fd = syscall!(openat(
            self.file.as_raw_fd(),
            name.as_ptr(),
            flags,
            mode as libc::c_uint
        ))?;
        // SAFETY: openat returned a fresh descriptor that we now own.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// `lstat` of `name` in the directory; `None` if there is no such entry.
    pub fn entry(&self, name: &str) -> io::Result<Option<Entry>> {
        let name = component(name)?;
        // SAFETY: an all-zero stat is a valid value for fstatat to fill in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, NUL-terminated name, writable stat.
        match syscall!(fstatat(
            self.file.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW
        )) {
            Ok(_) => Ok(Some(Entry {
                kind: Kind::of(st.st_mode),
                uid: st.st_uid,
                mode: st.st_mode & 0o7777,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the entry `name` (a symbolic link itself, never its target).
    /// A missing entry is not an error.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let name = component(name)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        match syscall!(unlinkat(self.file.as_raw_fd(), name.as_ptr(), 0)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the permission bits of the entry `name` (`fchmodat`). Only for
    /// an entry the daemon just made in a directory nobody else can write:
    /// a symbolic link's target would be changed.
    pub fn set_mode(&self, name: &str, mode: u32) -> io::Result<()> {
        let name = component(name)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        syscall!(fchmodat(
            self.file.as_raw_fd(),
            name.as_ptr(),
            mode as libc::mode_t,
            0
        ))?;
        Ok(())
    }

    /// A path that names the entry `name` through this descriptor
    /// (`/proc/self/fd/N/name`): binding or connecting a unix socket there
    /// reaches this directory whatever its path has become, and stays far
    /// below the 108 bytes a socket address holds.
    pub fn proc_path(&self, name: &str) -> io::Result<std::path::PathBuf> {
        component(name)?;
        Ok(format!("/proc/self/fd/{}/{name}", self.file.as_raw_fd()).into())
    }

    /// Atomically replaces `to` by `from`, both in this directory.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (component(from)?, component(to)?);
        let fd = self.file.as_raw_fd();
        // SAFETY: valid descriptor and NUL-terminated names.
        syscall!(renameat(fd, from.as_ptr(), fd, to.as_ptr()))?;
        Ok(())
    }

    /// fsync of the directory itself: makes creations and renames durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Takes an exclusive `flock` on `file` without waiting; `Ok(false)` when
/// another open file description holds it.
pub fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: valid descriptor owned by `file`.
    match syscall!(flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Scratch;
    use std::io::{Read, Write};

    #[test]
    fn files_are_opened_relative_to_the_descriptor_and_never_through_links() {
        let tmp = Scratch::new("dir-nofollow");
        let target = tmp.file("target", b"keep", 0o644);
        std::fs::create_dir(tmp.0.join("d")).unwrap();
        std::os::unix::fs::symlink(&target, tmp.0.join("d/link")).unwrap();
        let dir = Dir::open(&tmp.0.join("d")).unwrap();
        let e = dir
            .open_file("link", libc::O_WRONLY | libc::O_CREAT, 0o600)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(dir.entry("link").unwrap().unwrap().kind, Kind::Symlink);
        // Removing the link leaves the target alone.
        dir.remove_file("link").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(dir.entry("link").unwrap(), None);
        // O_EXCL creates; a second O_EXCL fails.
        let mut f = dir
            .open_file("new", libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600)
            .unwrap();
        f.write_all(b"x").unwrap();
        let e = dir
            .open_file("new", libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        dir.rename("new", "renamed").unwrap();
        let mut s = String::new();
        dir.open_file("renamed", libc::O_RDONLY, 0)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "x");
        assert!(dir.open_file("../target", libc::O_RDONLY, 0).is_err());
    }

    #[test]
    fn a_link_to_a_directory_is_not_opened() {
        let tmp = Scratch::new("dir-link");
        std::fs::create_dir(tmp.0.join("real")).unwrap();
        std::os::unix::fs::symlink(tmp.0.join("real"), tmp.0.join("link")).unwrap();
        let e = Dir::open(&tmp.0.join("link")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        let file = tmp.file("plain", b"", 0o600);
        let e = Dir::open(&file).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
    }

    #[test]
    fn flock_is_exclusive_between_descriptions() {
        let tmp = Scratch::new("dir-flock");
        let path = tmp.file("lock", b"", 0o600);
        let a = File::open(&path).unwrap();
        let b = File::open(&path).unwrap();
        assert!(try_lock(&a).unwrap());
        assert!(!try_lock(&b).unwrap());
        drop(a);
        assert!(try_lock(&b).unwrap());
    }
}
