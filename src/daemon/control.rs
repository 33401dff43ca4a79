//! The status socket the daemon answers `tportknockd -S` on.
//!
//! A unix stream socket `control`, mode 0600, in a directory of its own,
//! 0700 and owned by the daemon's user, named after the pid file
//! ([`socket_dir`]: `/run/tportknockd.pid` → `/run/tportknockd/`). It is
//! made only once the pid file is locked, so a socket left by a daemon that
//! died is known to be stale and replaced; the directory is opened without
//! following a link and the socket bound through that descriptor, so nobody
//! can redirect it.
//!
//! The poll loop must never wait for a client. One connection is served at
//! a time (others wait in a short listen queue); it is non-blocking, its
//! request is one line of at most [`MAX_REQUEST`] bytes, its answer at most
//! [`MAX_ANSWER`], and a client that has not sent its request or taken its
//! answer within [`CLIENT_TIMEOUT_MS`] is dropped. A peer whose user
//! (`SO_PEERCRED`) is neither root nor the daemon's own is refused.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::sys::dir::{Dir, Kind};
use crate::{debug, warn};

/// The socket's name in its directory.
pub const SOCKET_NAME: &str = "control";
/// Longest request line, newline included.
pub const MAX_REQUEST: usize = 64;
/// Longest answer; a longer one is cut (the status lists at most
/// [`super::status::MAX_LISTED`] doors per section, well below this).
pub const MAX_ANSWER: usize = 1 << 20;
/// How long a client has to send its request and take the answer.
pub const CLIENT_TIMEOUT_MS: u64 = 2_000;
/// Connections waiting while one is served; more are refused by the kernel.
const BACKLOG: i32 = 4;
/// The answer to a peer that may not ask.
const REFUSED: &str = "error: refused: only root and the daemon's user may ask\n";

/// The directory the status socket of a daemon with pid file `pidfile`
/// lives in: the pid file's path without `.pid`, or with `.d` appended
/// when it has no such ending.
pub fn socket_dir(pidfile: &Path) -> PathBuf {
    let name = pidfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match name.strip_suffix(".pid").filter(|n| !n.is_empty()) {
        Some(stem) => stem.to_string(),
        None => format!("{name}.d"),
    };
    pidfile.with_file_name(dir)
}

/// What a client may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Open doors, pending stops, counters.
    Status,
}

impl Request {
    /// Parses one request line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        match line.trim_ascii() {
            b"status" => Ok(Request::Status),
            other => Err(format!(
                "unknown request '{}'; this daemon answers: status",
                String::from_utf8_lossy(other).escape_debug()
            )),
        }
    }
}

/// Whether a peer of user `uid` may talk to a daemon running as `owner`.
pub fn peer_allowed(uid: u32, owner: u32) -> bool {
    uid == 0 || uid == owner
}

/// The listening socket and the one connection being served.
pub struct Control {
    dir: Dir,
    /// The socket's path, for messages.
    path: PathBuf,
    listener: Socket,
    conn: Option<Conn>,
    /// The daemon's user: it and root may ask.
    owner: u32,
}

struct Conn {
    sock: Socket,
    deadline_ms: u64,
    phase: Phase,
    /// Its peer may not ask: its request is read (closing with it unread
    /// would reset the connection, answer and all) and refused.
    refused: bool,
}

enum Phase {
    /// Collecting the request line.
    Reading(Vec<u8>),
    /// A request was handed out; [`Control::answer`] comes next.
    Answering,
    /// Sending the answer; then the connection is closed.
    Writing { text: Vec<u8>, sent: usize },
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("path", &self.path)
            .field("serving", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Makes the status socket for the daemon whose pid file `pidfile` it
    /// has locked (which is what makes a socket found there stale). The
    /// error says what is wrong; the daemon runs on without the socket.
    pub fn open(pidfile: &Path) -> Result<Control, String> {
        let dir_path = socket_dir(pidfile);
        let shown = dir_path.display();
        match std::fs::DirBuilder::new().mode(0o700).create(&dir_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {shown}: {e}")),
        }
        let dir = Dir::open(&dir_path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR | libc::ELOOP) => format!(
                "{shown} is a symbolic link or no directory; tportknockd follows none there: \
                 remove it"
            ),
            _ => format!("cannot open {shown}: {e}"),
        })?;
        let meta = dir
            .metadata()
            .map_err(|e| format!("cannot stat {shown}: {e}"))?;
        let owner = crate::sys::daemon::euid();
        if meta.uid() != owner {
            return Err(format!(
                "{shown} is owned by uid {}, not by this daemon's user (uid {owner}): \
                 remove it (it is made anew)",
                meta.uid()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            dir.set_own_mode(0o700)
                .map_err(|e| format!("cannot chmod 700 {shown}: {e}"))?;
        }
        let path = dir_path.join(SOCKET_NAME);
        let fail = |what: &str, e: io::Error| format!("{what} {}: {e}", path.display());
        match dir.entry(SOCKET_NAME).map_err(|e| fail("cannot stat", e))? {
            None => {}
            Some(e) if e.kind == Kind::Dir => {
                return Err(format!("{} is a directory: remove it", path.display()))
            }
            // Left by a daemon that is gone: this one holds the pid file.
            Some(_) => dir
                .remove_file(SOCKET_NAME)
                .map_err(|e| fail("cannot remove the stale", e))?,
        }
        let listener = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)
            .map_err(|e| fail("socket for", e))?;
        let addr = dir
            .proc_path(SOCKET_NAME)
            .and_then(SockAddr::unix)
            .map_err(|e| fail("cannot name", e))?;
        listener.bind(&addr).map_err(|e| fail("cannot bind", e))?;
        dir.set_mode(SOCKET_NAME, 0o600)
            .map_err(|e| fail("cannot chmod", e))?;
        listener
            .listen(BACKLOG)
            .map_err(|e| fail("cannot listen on", e))?;
        Ok(Control {
            dir,
            path,
            listener,
            conn: None,
            owner,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What to poll: the listener while idle, else the connection, for
    /// reading or for writing.
    pub fn pollfd(&self) -> libc::pollfd {
        let (fd, events): (RawFd, i16) = match &self.conn {
            None => (self.listener.as_raw_fd(), libc::POLLIN),
            Some(c) => match c.phase {
                Phase::Reading(_) => (c.sock.as_raw_fd(), libc::POLLIN),
                Phase::Answering => (-1, 0),
                Phase::Writing { .. } => (c.sock.as_raw_fd(), libc::POLLOUT),
            },
        };
        libc::pollfd {
            fd,
            events,
            revents: 0,
        }
    }

    /// When the connection being served must be done.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.conn.as_ref().map(|c| c.deadline_ms)
    }

    /// The polled descriptor is ready (`revents`): accepts, reads or
    /// writes without waiting. Returns a request once its line is in; the
    /// caller answers it with [`Control::answer`].
    pub fn ready(&mut self, revents: i16, now_ms: u64) -> Option<Request> {
        if revents == 0 {
            return None;
        }
        if self.conn.is_none() {
            self.accept(now_ms);
        }
        let conn = self.conn.as_mut()?;
        match &mut conn.phase {
            Phase::Reading(buf) => match read_line(&conn.sock, buf) {
                Read::More => None,
                Read::Gone => {
                    self.conn = None;
                    None
                }
                Read::Line(_) if conn.refused => {
                    self.answer(REFUSED.into());
                    None
                }
                Read::Line(line) => match Request::parse(&line) {
                    Ok(req) => {
                        conn.phase = Phase::Answering;
                        Some(req)
                    }
                    Err(e) => {
                        self.answer(format!("error: {e}\n"));
                        None
                    }
                },
                Read::TooLong => {
                    self.answer(format!("error: request longer than {MAX_REQUEST} bytes\n"));
                    None
                }
            },
            Phase::Answering => None,
            Phase::Writing { .. } => {
                self.flush();
                None
            }
        }
    }

    /// The answer to the request [`Control::ready`] handed out: sent as far
    /// as the socket takes it now, the rest when it is writable again.
    pub fn answer(&mut self, mut text: String) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if text.len() > MAX_ANSWER {
            let mut end = MAX_ANSWER - 32;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str("\n… (cut)\n");
        }
        conn.phase = Phase::Writing {
            text: text.into_bytes(),
            sent: 0,
        };
        self.flush();
    }

    /// Drops a connection past its deadline.
    pub fn expire(&mut self, now_ms: u64) {
        if self.conn.as_ref().is_some_and(|c| now_ms >= c.deadline_ms) {
            debug!("status socket: a client took longer than {CLIENT_TIMEOUT_MS} ms: dropped");
            self.conn = None;
        }
    }

    fn accept(&mut self, now_ms: u64) {
        let sock = match self.listener.accept() {
            Ok((sock, _)) => sock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                debug!("status socket: accept: {e}");
                return;
            }
        };
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        let refused = match crate::sys::daemon::peer_uid(&sock) {
            Ok(uid) if peer_allowed(uid, self.owner) => false,
            who => {
                let who = match who {
                    Ok(uid) => format!("uid {uid}"),
                    Err(e) => format!("an unknown user ({e})"),
                };
                warn!(
                    "status socket: refused a client of {who}: only root and the daemon's \
                     user may ask"
                );
                true
            }
        };
        self.conn = Some(Conn {
            sock,
            deadline_ms: now_ms.saturating_add(CLIENT_TIMEOUT_MS),
            phase: Phase::Reading(Vec::new()),
            refused,
        });
    }

    /// Sends what the socket takes now; closes the connection once all is
    /// sent or the client is gone.
    fn flush(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Phase::Writing { text, sent } = &mut conn.phase else {
            return;
        };
        while *sent < text.len() {
            match conn
                .sock
                .send_with_flags(&text[*sent..], libc::MSG_NOSIGNAL)
            {
                Ok(0) => break,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        let _ = conn.sock.shutdown(std::net::Shutdown::Both);
        self.conn = None;
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // The daemon still holds its pid file: nobody else made this one.
        let _ = self.dir.remove_file(SOCKET_NAME);
        // And the directory, if nothing else is in it (rmdir follows no link).
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// What reading a request did.
enum Read {
    /// The line is not complete yet.
    More,
    /// The request line, without its newline.
    Line(Vec<u8>),
    /// Past [`MAX_REQUEST`] without a newline.
    TooLong,
    /// The client hung up, or the socket failed, before a request.
    Gone,
}

/// Reads what is there (never waiting) into `buf`, up to a newline; `buf`
/// never grows past twice [`MAX_REQUEST`].
fn read_line(sock: &Socket, buf: &mut Vec<u8>) -> Read {
    let mut chunk = [0u8; MAX_REQUEST];
    loop {
        match std::io::Read::read(&mut &*sock, &mut chunk) {
            Ok(0) if buf.is_empty() => return Read::Gone,
            // Hung up after a request without its newline: take it as is.
            Ok(0) => return Read::Line(std::mem::take(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::More,
            Err(_) => return Read::Gone,
        }
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            return Read::Line(std::mem::take(buf));
        }
        if buf.len() >= MAX_REQUEST {
            return Read::TooLong;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Scratch;
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_socket_directory_is_named_after_the_pid_file() {
        assert_eq!(
            socket_dir(Path::new("/run/tportknockd.pid")),
            Path::new("/run/tportknockd")
        );
        assert_eq!(
            socket_dir(Path::new("/tmp/x/pid")),
            Path::new("/tmp/x/pid.d")
        );
        assert_eq!(socket_dir(Path::new("/tmp/.pid")), Path::new("/tmp/.pid.d"));
    }

    #[test]
    fn requests() {
        assert_eq!(Request::parse(b"status"), Ok(Request::Status));
        assert_eq!(Request::parse(b" status\r"), Ok(Request::Status));
        let e = Request::parse(b"shutdown\x1b").unwrap_err();
        assert!(e.contains("'shutdown\\u{1b}'"), "{e}");
        assert!(peer_allowed(0, 0) && peer_allowed(0, 1000) && peer_allowed(1000, 1000));
        assert!(!peer_allowed(65534, 0) && !peer_allowed(1001, 1000));
    }

    /// Serves `control` until it hands out a request or `limit` polls pass.
    fn serve(control: &mut Control, now_ms: u64) -> Option<Request> {
        for _ in 0..100 {
            let mut fds = [control.pollfd()];
            crate::sys::daemon::poll(&mut fds, 20).unwrap();
            if let Some(r) = control.ready(fds[0].revents, now_ms) {
                return Some(r);
            }
        }
        None
    }

    #[test]
    fn answers_a_request_and_replaces_a_stale_socket() {
        let dir = Scratch::new("control");
        let pidfile = dir.0.join("t.pid");
        let sdir = socket_dir(&pidfile);
        std::fs::create_dir(&sdir).unwrap();
        std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // What a daemon that died left behind.
        std::fs::write(sdir.join(SOCKET_NAME), b"stale").unwrap();
        let mut control = Control::open(&pidfile).unwrap();
        let meta = std::fs::symlink_metadata(sdir.join(SOCKET_NAME)).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&sdir).unwrap().mode() & 0o777, 0o700);

        let mut client = UnixStream::connect(control.path()).unwrap();
        client.write_all(b"status\n").unwrap();
        assert_eq!(serve(&mut control, 0), Some(Request::Status));
        control.answer("all well\n".into());
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "all well\n");

        // An unknown request gets an error, and the next client is served.
        let mut client = UnixStream::connect(control.path()).unwrap();
        client.write_all(b"open sesame\n").unwrap();
        assert_eq!(serve(&mut control, 0), None);
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert!(
            got.starts_with("error: unknown request 'open sesame'"),
            "{got}"
        );

        drop(control);
        assert!(
            !sdir.exists(),
            "socket and directory removed on the way out"
        );
    }

    #[test]
    fn a_client_that_stalls_or_floods_is_dropped_without_waiting() {
        let dir = Scratch::new("control-stall");
        let pidfile = dir.0.join("t.pid");
        let mut control = Control::open(&pidfile).unwrap();
        // Connects and says nothing: served until its deadline, then gone.
        let mut quiet = UnixStream::connect(control.path()).unwrap();
        let mut fds = [control.pollfd()];
        crate::sys::daemon::poll(&mut fds, 1000).unwrap();
        assert_eq!(control.ready(fds[0].revents, 0), None);
        assert_eq!(control.deadline_ms(), Some(CLIENT_TIMEOUT_MS));
        let t = std::time::Instant::now();
        let mut fds = [control.pollfd()];
        crate::sys::daemon::poll(&mut fds, 50).unwrap();
        assert_eq!(fds[0].revents, 0, "nothing to do: the loop is not held");
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
        control.expire(CLIENT_TIMEOUT_MS - 1);
        assert!(control.deadline_ms().is_some());
        control.expire(CLIENT_TIMEOUT_MS);
        assert_eq!(control.deadline_ms(), None);
        let mut got = Vec::new();
        quiet.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());

        // Sends as much as a request may hold, and no newline. (All of it is
        // read: bytes left unread would reset the connection, error line
        // and all.)
        let mut long = UnixStream::connect(control.path()).unwrap();
        long.write_all(&[b'x'; MAX_REQUEST]).unwrap();
        assert_eq!(serve(&mut control, 0), None);
        let mut got = String::new();
        long.read_to_string(&mut got).unwrap();
        assert_eq!(
            got,
            format!("error: request longer than {MAX_REQUEST} bytes\n")
        );
    }

    #[test]
    fn a_link_in_place_of_the_directory_is_refused() {
        let dir = Scratch::new("control-link");
        let elsewhere = dir.0.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let pidfile = dir.0.join("t.pid");
        std::os::unix::fs::symlink(&elsewhere, socket_dir(&pidfile)).unwrap();
        let e = Control::open(&pidfile).unwrap_err();
        assert!(e.contains("is a symbolic link"), "{e}");
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
    }
}
