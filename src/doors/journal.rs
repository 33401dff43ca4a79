//! The doors journal: every pending stop is on disk before its door opens,
//! so a crash, `kill -9` or power loss never leaves a door open for good.
//!
//! The file is append-only text, one self-checking record per line, its
//! first word naming its kind:
//!
//! ```text
//! seq <next_id> <crc>
//! add <id> <due_unix_ms> <delay_ms> <len>:<event> <ip> <len>:<command> <crc>
//! kadd <id> <due_unix_ms> <delay_ms> <len>:<event> <ip> <len>:<command> <n> <len>:<set>… <crc>
//! done <id> <crc>
//! burn <window_secs> <window> <len>:<event> <crc>
//! ```
//!
//! `<crc>` is the CRC-32 (IEEE) of everything before its separating space,
//! as eight lowercase hex digits. Event and command are escaped (`\\`, `\n`,
//! `\r`, `\0`) so a record is always one physical line, and length-prefixed
//! (length of the escaped text) so spaces inside need no quoting. A later
//! `add` or `kadd` for the same id replaces the earlier one (a re-armed
//! door); `seq` keeps ids growing across compactions.
//!
//! `kadd` is a kernel door: `<ip>` is in the `<n>` sets that follow (1 to
//! [`MAX_SETS`], each as `nft FAMILY TABLE SET` or `ipset NAME`) until
//! `<due_unix_ms>` by the kernel's own timeout, and `<command>` (possibly
//! empty) is its stop command. A door without sets is still written as
//! `add`, as before kernel doors existed. A new kind of record is a new
//! first word: an older daemon counts it as corrupt and skips it.
//! `burn` records a spent window of a rotating sequence ([`super::burn`]).
//!
//! Reading never panics: a line that fails its check is skipped and counted,
//! a torn last line (power loss mid-write) is counted with a warning. When
//! anything is dropped on open, the file is rewritten clean so new appends
//! never glue onto a fragment.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::sets::SetTarget;
use crate::doors::burn::{self, Burn, Burns};
use crate::sys::dir::Kind;
use crate::sys::statedir::{StateDir, StateDirError};

/// The journal file's name in the state directory.
pub const FILE_NAME: &str = "doors.journal";
/// Compaction writes here first, then renames over [`FILE_NAME`].
pub const TMP_NAME: &str = "doors.journal.tmp";
/// Compact once the file has more lines than this and most are dead.
const COMPACT_MIN_LINES: usize = 1_000;
/// Most sets one kernel door may name in its record: one nftables set and
/// one ipset for its address family, with room to spare.
pub const MAX_SETS: usize = 4;
/// Largest journal read at start. The door cap keeps a real one far below
/// (4,096 doors of a few hundred bytes, plus dead lines until compaction).
pub const MAX_FILE: u64 = 64 << 20;

/// Names one door for its whole life: its journal record, and the commands
/// run for it (the runner hands it back with each completion). Never
/// reused by the same journal file, even across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JournalId(u64);

impl JournalId {
    /// The id numbered `n`.
    pub const fn new(n: u64) -> JournalId {
        JournalId(n)
    }

    /// Its number, as written in the file.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One pending stop as it is kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The door's id.
    pub id: JournalId,
    /// Wall-clock unix milliseconds, so the due time survives a reboot.
    pub due_unix_ms: u64,
    /// The stop's delay in milliseconds: after a restart it waits at most
    /// this long, so a wall clock that was wrong when the door opened cannot
    /// hold it open.
    pub delay_ms: u64,
    /// The event's name.
    pub event: String,
    /// The knocking address.
    pub src: IpAddr,
    /// Already expanded; empty for a kernel door without a stop command.
    pub stop_command: String,
    /// A kernel door's sets, which hold `src` until `due_unix_ms` (the
    /// kernel removes it then); empty for a door of commands only.
    pub sets: Vec<SetTarget>,
}

/// A change to the journal, written in batches by [`Journal::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOp {
    /// Records a pending stop (or replaces the record with the same id).
    Add(JournalEntry),
    /// The stop ran successfully: forget it.
    Done(JournalId),
    /// A rotating sequence's window is spent (see [`super::burn`]).
    Burn(Burn),
}

impl JournalOp {
    /// The door the operation is about; `None` for a burn, which is about
    /// no door.
    pub fn id(&self) -> Option<JournalId> {
        match self {
            JournalOp::Add(e) => Some(e.id),
            JournalOp::Done(id) => Some(*id),
            JournalOp::Burn(_) => None,
        }
    }
}

/// The open journal, holding its state directory (and so its lock).
#[derive(Debug)]
pub struct Journal {
    state: StateDir,
    path: PathBuf,
    file: File,
    /// Length of the file's intact content; a failed append is cut back to it.
    len: u64,
    live: HashMap<JournalId, JournalEntry>,
    /// Spent windows of rotating sequences that may still be live.
    burns: Burns,
    /// Records in the file (live or dead).
    lines: usize,
    next_id: u64,
    compact_min_lines: usize,
    /// The directory has been fsynced since the file was opened (or
    /// renamed into place), so the file's name survives a power cut.
    name_durable: bool,
    /// Tests: how long each sync sleeps first (a slow disk).
    #[cfg(test)]
    sync_delay: std::time::Duration,
}

impl Journal {
    /// Opens (creating the directory 0700 and the file 0600 as needed)
    /// `dir/doors.journal`, after [`StateDir::open`]'s checks and lock.
    /// Returns the journal, the pending stops it holds (by id) and how many
    /// lines were corrupt or torn and skipped.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<JournalEntry>, usize), StateDirError> {
        let state = StateDir::open(dir)?;
        let path = dir.join(FILE_NAME);
        // A temp file is only ever left by a compaction cut short: remove
        // it. Anything else by that name was put there by someone else.
        match state.dir().entry(TMP_NAME).map_err(StateDirError::Io)? {
            None => {}
            Some(e) if e.kind == Kind::File => state
                .dir()
                .remove_file(TMP_NAME)
                .map_err(StateDirError::Io)?,
            Some(_) => {
                let p = dir.join(TMP_NAME);
                return Err(StateDirError::Unsafe(format!(
                    "{} is not a regular file; tportknockd created no such thing: \
                     someone else wrote into its state directory; check it, then remove {}",
                    p.display(),
                    p.display()
                )));
            }
        }
        let file = state.open_own(FILE_NAME, libc::O_RDWR | libc::O_APPEND | libc::O_CREAT)?;
        let mut bytes = Vec::new();
        (&file)
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(StateDirError::Io)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(StateDirError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than {} MiB, far more than tportknockd writes; move it away",
                    path.display(),
                    MAX_FILE >> 20
                ),
            )));
        }
        // A file left with looser bits still holds commands. (fchmod on our
        // own descriptor: no name is followed.)
        let mode = file
            .metadata()
            .map_err(StateDirError::Io)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(StateDirError::Io)?;
        }
        // An fsynced record is worthless if the file's name is not; that
        // directory sync is left to `sync_name` (the writer thread does it
        // at once, off the start-up path, and `commit` makes sure of it).
        let parsed = parse(&bytes);
        if parsed.torn {
            crate::warn!(
                "journal {}: ignoring torn last line (interrupted write)",
                path.display()
            );
        }
        let skipped = parsed.corrupt + usize::from(parsed.torn);
        if parsed.corrupt > 0 {
            crate::warn!(
                "journal {}: skipped {} corrupt line(s)",
                path.display(),
                parsed.corrupt
            );
        }
        let mut journal = Journal {
            state,
            path,
            file,
            len: bytes.len() as u64,
            live: parsed.live,
            burns: parsed.burns,
            lines: parsed.lines,
            next_id: parsed.next_id,
            compact_min_lines: COMPACT_MIN_LINES,
            name_durable: false,
            #[cfg(test)]
            sync_delay: std::time::Duration::ZERO,
        };
        journal.burns.prune(burn::unix_secs());
        if skipped > 0 || journal.lines > journal.records() {
            journal.compact().map_err(StateDirError::Io)?;
        }
        let mut entries: Vec<JournalEntry> = journal.live.values().cloned().collect();
        crate::sort::sort_by_key(&mut entries, |e| e.id);
        Ok((journal, entries, skipped))
    }

    /// `STATE_DIR/doors.journal`, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first id this file has never seen: every id from here up is free.
    pub fn next_id(&self) -> JournalId {
        JournalId(self.next_id)
    }

    /// A fresh id, never handed out before by this journal file.
    pub fn allocate_id(&mut self) -> JournalId {
        let id = self.next_id;
        self.next_id += 1;
        JournalId(id)
    }

    /// Pending stops on record.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// The burned windows on record that may still be live, for the
    /// matchers at start.
    pub fn burns(&self) -> Vec<Burn> {
        self.burns.iter().cloned().collect()
    }

    /// Lines a compacted file has: `seq`, the live stops and the burns.
    fn records(&self) -> usize {
        1 + self.live.len() + self.burns.len()
    }

    /// Writes `ops` in order with one `write` and one `fdatasync`: when it
    /// returns `Ok`, all of them are durable. On error none counts as written
    /// (a partial write is cut off again).
    pub fn commit(&mut self, ops: &[JournalOp]) -> io::Result<()> {
        self.write(ops)?;
        self.sync()
    }

    /// Makes everything written so far durable (`fdatasync`, and the
    /// directory once, so that a new file's name is durable too).
    pub fn sync(&mut self) -> io::Result<()> {
        self.sync_name()?;
        #[cfg(test)]
        std::thread::sleep(self.sync_delay);
        self.file.sync_data()
    }

    /// Writes `ops` in order with one `write`, without waiting for the disk:
    /// when it returns `Ok` they are in the kernel's page cache, so they
    /// survive the daemon's death (`kill -9`) but not yet a power loss; a
    /// [`Journal::sync`] makes them durable. On error none counts as
    /// written (a partial write is cut off again).
    pub fn write(&mut self, ops: &[JournalOp]) -> io::Result<()> {
        let mut text = String::new();
        let mut lines = 0;
        // Ids added in this batch (to the op that added them: the map type
        // the commit index uses, rather than a HashSet's own code).
        let mut added: HashMap<JournalId, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                JournalOp::Add(entry) => {
                    added.insert(entry.id, i);
                    text.push_str(&encode_add(entry))
                }
                // Unknown ids (never journaled, or done already) need no line.
                JournalOp::Done(id) if self.live.contains_key(id) || added.contains_key(id) => {
                    text.push_str(&seal(format!("done {id}")))
                }
                JournalOp::Done(_) => continue,
                JournalOp::Burn(b) => text.push_str(&seal(b.encode(escape))),
            }
            lines += 1;
        }
        if lines == 0 {
            return Ok(());
        }
        self.append(&text, lines)?;
        for op in ops {
            match op {
                JournalOp::Add(entry) => {
                    self.next_id = self.next_id.max(entry.id.0.saturating_add(1));
                    self.live.insert(entry.id, entry.clone());
                }
                JournalOp::Done(id) => {
                    self.live.remove(id);
                }
                JournalOp::Burn(b) => {
                    self.burns.prune(burn::unix_secs());
                    self.burns.insert(b.clone());
                }
            }
        }
        self.maybe_compact();
        Ok(())
    }

    /// Fsyncs the state directory once after the journal was opened, so
    /// that the file's name (it may just have been created) is as durable as
    /// what is written into it. [`Journal::commit`] calls it first; calling
    /// it earlier only takes that wait off the first commit.
    pub fn sync_name(&mut self) -> io::Result<()> {
        if !self.name_durable {
            self.state.dir().sync()?;
            self.name_durable = true;
        }
        Ok(())
    }

    /// Makes `entry` durable (written and fsynced) before returning; an
    /// existing entry with the same id is replaced.
    pub fn record(&mut self, entry: &JournalEntry) -> io::Result<()> {
        self.commit(&[JournalOp::Add(entry.clone())])
    }

    /// Marks a stop as run. Unknown ids are ignored.
    pub fn done(&mut self, id: JournalId) -> io::Result<()> {
        self.commit(&[JournalOp::Done(id)])
    }

    /// Compacts when dead records dominate. The records just written are
    /// safe either way; a failed compaction only costs space and is retried
    /// later.
    fn maybe_compact(&mut self) {
        if self.lines > self.compact_min_lines && self.lines > 2 * self.records() {
            if let Err(e) = self.compact() {
                crate::warn!("journal {}: compaction failed: {e}", self.path.display());
            }
        }
    }

    fn append(&mut self, text: &str, records: usize) -> io::Result<()> {
        match self.file.write_all(text.as_bytes()) {
            Ok(()) => {
                self.len += text.len() as u64;
                self.lines += records;
                Ok(())
            }
            Err(e) => {
                // Cut off any partial record so the next append starts on a
                // line of its own; best effort, the error is what matters.
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Rewrites only the live entries: a new temp file (O_EXCL, no link
    /// followed), fsync, rename over the journal, fsync the directory.
    fn compact(&mut self) -> io::Result<()> {
        let mut text = seal(format!("seq {}", self.next_id));
        let mut entries: Vec<&JournalEntry> = self.live.values().collect();
        crate::sort::sort_by_key(&mut entries, |e| e.id);
        for entry in &entries {
            text.push_str(&encode_add(entry));
        }
        self.burns.prune(burn::unix_secs());
        for b in self.burns.iter() {
            text.push_str(&seal(b.encode(escape)));
        }
        let dir = self.state.dir();
        let written = (|| {
            dir.remove_file(TMP_NAME)?;
            let mut f = dir.open_file(
                TMP_NAME,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o600,
            )?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            dir.rename(TMP_NAME, FILE_NAME)?;
            dir.sync()
        })();
        if let Err(e) = written {
            let _ = dir.remove_file(TMP_NAME);
            return Err(e);
        }
        self.file = self
            .state
            .open_own(FILE_NAME, libc::O_RDWR | libc::O_APPEND)
            .map_err(|e| match e {
                StateDirError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
        self.len = text.len() as u64;
        self.lines = self.records();
        // The rename was made durable by the directory sync above.
        self.name_durable = true;
        Ok(())
    }

    /// Test hook: send appends to another file (e.g. `/dev/full`).
    #[cfg(test)]
    pub(crate) fn replace_file_for_test(&mut self, file: File) {
        self.file = file;
    }

    /// Test hook: every sync first sleeps `delay` (a slow disk).
    #[cfg(test)]
    pub(crate) fn set_sync_delay_for_test(&mut self, delay: std::time::Duration) {
        self.sync_delay = delay;
    }

    #[cfg(test)]
    pub(crate) fn set_compact_min_lines(&mut self, lines: usize) {
        self.compact_min_lines = lines;
    }
}

fn encode_add(e: &JournalEntry) -> String {
    debug_assert!(e.sets.len() <= MAX_SETS);
    let event = escape(&e.event);
    let command = escape(&e.stop_command);
    let mut body = format!(
        "{} {} {} {} {}:{} {} {}:{}",
        if e.sets.is_empty() { "add" } else { "kadd" },
        e.id,
        e.due_unix_ms,
        e.delay_ms,
        event.len(),
        event,
        e.src,
        command.len(),
        command
    );
    if !e.sets.is_empty() {
        body.push_str(&format!(" {}", e.sets.len()));
        for set in &e.sets {
            // Names are plain words (see config::sets): nothing to escape.
            let spec = set.spec();
            body.push_str(&format!(" {}:{spec}", spec.len()));
        }
    }
    seal(body)
}

/// Appends the checksum and newline to a record body.
fn seal(mut body: String) -> String {
    let crc = crc32(body.as_bytes());
    body.push_str(&format!(" {crc:08x}\n"));
    body
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            'n' => '\n',
            'r' => '\r',
            '0' => '\0',
            _ => return None,
        });
    }
    Some(out)
}

struct Parsed {
    live: HashMap<JournalId, JournalEntry>,
    burns: Burns,
    lines: usize,
    corrupt: usize,
    torn: bool,
    next_id: u64,
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed {
        live: HashMap::new(),
        burns: Burns::default(),
        lines: 0,
        corrupt: 0,
        torn: false,
        next_id: 1,
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            parsed.torn = true;
            break;
        };
        let (line, tail) = rest.split_at(end);
        rest = tail.get(1..).unwrap_or_default();
        parsed.lines += 1;
        match parse_line(line) {
            Some(Record::Seq(next)) => parsed.next_id = parsed.next_id.max(next),
            Some(Record::Add(entry)) => {
                parsed.next_id = parsed.next_id.max(entry.id.0.saturating_add(1));
                parsed.live.insert(entry.id, entry);
            }
            Some(Record::Done(id)) => {
                parsed.next_id = parsed.next_id.max(id.0.saturating_add(1));
                parsed.live.remove(&id);
            }
            Some(Record::Burn(b)) => parsed.burns.insert(b),
            None => parsed.corrupt += 1,
        }
    }
    parsed
}

/// The pending stops in the journal in `dir`, due first, read as they are:
/// no lock taken, nothing written, links not followed (for `tportknockd
/// -S` while no daemon runs; the daemon itself opens it with
/// [`Journal::open`]). A missing file holds nothing.
pub fn read_pending(dir: &Path) -> io::Result<Vec<JournalEntry>> {
    let dir = crate::sys::dir::Dir::open(dir)?;
    let file = match dir.open_file(FILE_NAME, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{FILE_NAME} is not a regular file"
        )));
    }
    let mut bytes = Vec::new();
    (&file).take(MAX_FILE).read_to_end(&mut bytes)?;
    let mut entries: Vec<JournalEntry> = parse(&bytes).live.into_values().collect();
    crate::sort::sort_by_key(&mut entries, |e| (e.due_unix_ms, e.id));
    Ok(entries)
}

enum Record {
    Seq(u64),
    Add(JournalEntry),
    Done(JournalId),
    Burn(Burn),
}

fn parse_line(line: &[u8]) -> Option<Record> {
    let line = std::str::from_utf8(line).ok()?;
    let (body, crc) = line.rsplit_once(' ')?;
    if crc.len() != 8 || u32::from_str_radix(crc, 16).ok()? != crc32(body.as_bytes()) {
        return None;
    }
    if let Some(rest) = body.strip_prefix("burn ") {
        return Burn::decode(rest, unescape).map(Record::Burn);
    }
    let mut cur = Cursor(body);
    let record = match cur.word()? {
        "seq" => Record::Seq(cur.word()?.parse().ok()?),
        "done" => Record::Done(JournalId(cur.word()?.parse().ok()?)),
        kind @ ("add" | "kadd") => {
            let mut entry = JournalEntry {
                id: JournalId(cur.word()?.parse().ok()?),
                due_unix_ms: cur.word()?.parse().ok()?,
                delay_ms: cur.word()?.parse().ok()?,
                event: unescape(cur.prefixed()?)?,
                src: cur.word()?.parse().ok()?,
                stop_command: unescape(cur.prefixed()?)?,
                sets: Vec::new(),
            };
            if kind == "kadd" {
                let n: usize = cur.word()?.parse().ok()?;
                if n == 0 || n > MAX_SETS {
                    return None;
                }
                for _ in 0..n {
                    entry
                        .sets
                        .push(SetTarget::parse_spec(cur.prefixed()?).ok()?);
                }
            }
            Record::Add(entry)
        }
        _ => return None,
    };
    cur.0.is_empty().then_some(record)
}

/// Reads space-separated fields of a record body.
struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    fn word(&mut self) -> Option<&'a str> {
        let (word, rest) = self.0.split_once(' ').unwrap_or((self.0, ""));
        self.0 = rest;
        (!word.is_empty()).then_some(word)
    }

    /// `<len>:<text>` where text may contain spaces.
    fn prefixed(&mut self) -> Option<&'a str> {
        let (len, rest) = self.0.split_once(':')?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: usize = len.parse().ok()?;
        let text = rest.get(..len)?;
        let after = rest.get(len..)?;
        self.0 = match after.strip_prefix(' ') {
            Some(after) => after,
            None if after.is_empty() => after,
            None => return None,
        };
        Some(text)
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    pub(crate) use crate::testutil::Scratch as Tmp;

    /// The pending stops a journal file holds, read without opening it
    /// (its lock may be held by a test's writer).
    pub(crate) fn parse_file(path: &Path) -> Vec<JournalEntry> {
        let bytes = std::fs::read(path).unwrap_or_default();
        let mut entries: Vec<JournalEntry> = parse(&bytes).live.into_values().collect();
        crate::sort::sort_by_key(&mut entries, |e| e.id);
        entries
    }

    pub(crate) fn entry(id: u64, due: u64, cmd: &str) -> JournalEntry {
        JournalEntry {
            id: JournalId(id),
            due_unix_ms: due,
            delay_ms: 30,
            event: "ssh".into(),
            src: "10.199.0.2".parse().unwrap(),
            stop_command: cmd.into(),
            sets: Vec::new(),
        }
    }

    #[test]
    fn read_pending_sees_the_live_stops_without_taking_the_lock() {
        let tmp = Tmp::new("journal-read");
        assert_eq!(
            read_pending(&tmp.0).unwrap(),
            [],
            "no file: nothing pending"
        );
        let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
        j.record(&entry(1, 2_000, "stop one")).unwrap();
        j.record(&entry(2, 1_000, "stop two")).unwrap();
        j.record(&entry(3, 3_000, "stop three")).unwrap();
        j.done(JournalId(1)).unwrap();
        // The journal stays open (locked): reading does not need the lock.
        let pending = read_pending(&tmp.0).unwrap();
        let shown: Vec<(u64, &str)> = pending
            .iter()
            .map(|e| (e.id.get(), e.stop_command.as_str()))
            .collect();
        assert_eq!(shown, [(2, "stop two"), (3, "stop three")]);
        drop(j);
        // A journal that is a link is not followed.
        let other = Tmp::new("journal-read-link");
        std::os::unix::fs::symlink(tmp.0.join(FILE_NAME), other.0.join(FILE_NAME)).unwrap();
        assert!(read_pending(&other.0).is_err());
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn records_survive_reopen_with_hostile_bytes_in_commands() {
        let tmp = Tmp::new("journal-roundtrip");
        let dir = tmp.0.join("state");
        let odd = JournalEntry {
            id: JournalId(0),
            due_unix_ms: 1_700_000_123,
            delay_ms: 3_600,
            event: "we ird\nname".into(),
            src: "fd00:199::2".parse().unwrap(),
            stop_command: "iptables -D x\nrm -rf / \\n \0 12:ab ffffffff".into(),
            sets: Vec::new(),
        };
        {
            let (mut j, entries, skipped) = Journal::open(&dir).unwrap();
            assert!(entries.is_empty());
            assert_eq!(skipped, 0);
            let id = j.allocate_id();
            j.record(&JournalEntry { id, ..odd.clone() }).unwrap();
            let id2 = j.allocate_id();
            assert_ne!(id, id2);
            j.record(&entry(id2.get(), 5, "plain")).unwrap();
        }
        let text = fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 2, "one physical line per record");
        let (_j, entries, skipped) = Journal::open(&dir).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            JournalEntry {
                id: JournalId(1),
                ..odd
            }
        );
        assert_eq!(entries[1], entry(2, 5, "plain"));
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(dir.join(FILE_NAME)).unwrap().mode() & 0o777,
            0o600
        );
    }

    fn kernel_entry(id: u64, due: u64, cmd: &str, sets: &[&str]) -> JournalEntry {
        JournalEntry {
            sets: sets
                .iter()
                .map(|s| SetTarget::parse_spec(s).unwrap())
                .collect(),
            ..entry(id, due, cmd)
        }
    }

    #[test]
    fn kernel_doors_are_kadd_records_and_come_back() {
        let k = kernel_entry(
            3,
            1_700_000_030_000,
            "",
            &["nft inet filter k4", "ipset k4"],
        );
        assert_eq!(
            encode_add(&k),
            seal(
                "kadd 3 1700000030000 30 3:ssh 10.199.0.2 0: 2 18:nft inet filter k4 8:ipset k4"
                    .into()
            )
        );
        // A door of commands only keeps the old record, which an older
        // daemon reads.
        assert!(encode_add(&entry(4, 5, "x")).starts_with("add 4 5 30 3:ssh 10.199.0.2 1:x "));
        let tmp = Tmp::new("journal-kadd");
        let with_stop = kernel_entry(5, 9, "logger gone %", &["nft ip6 t k6"]);
        {
            let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
            j.commit(&[
                JournalOp::Add(k.clone()),
                JournalOp::Add(entry(4, 5, "x")),
                JournalOp::Add(with_stop.clone()),
            ])
            .unwrap();
        }
        let (_, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(entries, [k, entry(4, 5, "x"), with_stop]);
    }

    #[test]
    fn broken_kadd_records_are_skipped() {
        let tmp = Tmp::new("journal-kadd-bad");
        let base = "kadd 6 600 5 3:ssh 10.0.0.1 0:";
        let mut text = String::new();
        for tail in [
            " 0",                       // no set
            " 5 1:a 1:b 1:c 1:d 1:e",   // more than MAX_SETS
            " 2 8:ipset k4",            // fewer than announced
            " 1 8:ipset k4 8:ipset k6", // more than announced
            " 1 13:ipset k4;rm x",      // a name the config would refuse
            " 1 10:nft inet f",         // an nft set of two words
            " 1 10:iptables k",         // unknown kind of set
            "",                         // no count
        ] {
            text.push_str(&seal(format!("{base}{tail}")));
        }
        text.push_str(&seal(format!("{base} 1 8:ipset k4")));
        fs::write(tmp.0.join(FILE_NAME), text).unwrap();
        let (_, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!(skipped, 8);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].sets[0].spec(), "ipset k4");
    }

    #[test]
    fn done_removes_and_ids_stay_unique_across_restarts() {
        let tmp = Tmp::new("journal-done");
        let max_id;
        {
            let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
            for _ in 0..3 {
                let id = j.allocate_id();
                j.record(&entry(id.get(), 100, "stop")).unwrap();
            }
            max_id = JournalId(j.next_id - 1);
            j.done(max_id).unwrap();
            j.done(JournalId(12345)).unwrap(); // unknown: ignored
        }
        // Reopen compacts away the done record (and the add of max_id) but
        // must not hand out max_id again.
        let (mut j, entries, _) = Journal::open(&tmp.0).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.id.get()).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(j.allocate_id() > max_id);
        drop(j);
        let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
        assert!(j.allocate_id() > max_id);
    }

    #[test]
    fn rearm_record_replaces_due_time() {
        let tmp = Tmp::new("journal-rearm");
        {
            let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
            j.record(&entry(7, 100, "stop")).unwrap();
            j.record(&entry(7, 200, "stop")).unwrap();
        }
        let (_, entries, _) = Journal::open(&tmp.0).unwrap();
        assert_eq!(entries, [entry(7, 200, "stop")]);
    }

    #[test]
    fn torn_last_line_is_ignored_and_cut_before_new_appends() {
        let tmp = Tmp::new("journal-torn");
        {
            let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
            j.record(&entry(1, 100, "stop one")).unwrap();
            j.record(&entry(2, 200, "stop two")).unwrap();
        }
        let path = tmp.0.join(FILE_NAME);
        let full = fs::read(&path).unwrap();
        // Power loss in the middle of the second record.
        fs::write(&path, &full[..full.len() - 7]).unwrap();
        let (mut j, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!(entries, [entry(1, 100, "stop one")]);
        assert_eq!(skipped, 1);
        j.record(&entry(3, 300, "stop three")).unwrap();
        drop(j);
        let (_, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(
            entries,
            [entry(1, 100, "stop one"), entry(3, 300, "stop three")]
        );
    }

    #[test]
    fn corrupt_lines_are_skipped_and_counted() {
        let tmp = Tmp::new("journal-corrupt");
        let good = encode_add(&entry(4, 400, "keep"));
        let flipped = encode_add(&entry(5, 500, "flip")).replace("flip", "flop");
        let bad_len = seal("add 6 600 5 3:ssh 10.0.0.1 999:short".into());
        let bad_esc = seal("add 6 600 5 3:ssh 10.0.0.1 2:\\q".into());
        let bad_ip = seal("add 6 600 5 3:ssh 10.0.0.300 1:x".into());
        let trailing = seal("done 4 extra".into());
        let mut text = String::new();
        for l in [
            "garbage\n",
            &flipped,
            "\n",
            &good,
            &bad_len,
            &bad_esc,
            &bad_ip,
            &trailing,
        ] {
            text.push_str(l);
        }
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe binary \x00\n");
        fs::write(tmp.0.join(FILE_NAME), &bytes).unwrap();
        let (_, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!(entries, [entry(4, 400, "keep")]);
        assert_eq!(skipped, 8);
        // The rewrite on open left only clean records behind.
        let (_, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!((entries.len(), skipped), (1, 0));
    }

    #[test]
    fn compaction_keeps_live_entries_and_shrinks_the_file() {
        let tmp = Tmp::new("journal-compact");
        let path = tmp.0.join(FILE_NAME);
        let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
        j.set_compact_min_lines(40);
        let keep: Vec<u64> = (0..5)
            .map(|_| {
                let id = j.allocate_id().get();
                j.record(&entry(id, id, "keep")).unwrap();
                id
            })
            .collect();
        let mut max_lines = 0;
        for _ in 0..60 {
            let id = j.allocate_id();
            j.record(&entry(id.get(), id.get(), "churn")).unwrap();
            j.done(id).unwrap();
            max_lines = max_lines.max(fs::read_to_string(&path).unwrap().lines().count());
        }
        assert!(max_lines <= 42, "file grew to {max_lines} lines");
        assert!(j.lines < 40);
        assert!(!tmp.0.join(TMP_NAME).exists());
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let last = j.allocate_id();
        drop(j);
        let (mut j, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(entries.iter().map(|e| e.id.get()).collect::<Vec<_>>(), keep);
        // Every recorded id (all below `last`) stays used.
        assert!(j.allocate_id() >= last);
        // Re-arming one door over and over compacts too.
        j.set_compact_min_lines(40);
        for due in 0..100 {
            j.record(&entry(keep[0], due, "keep")).unwrap();
        }
        assert!(j.lines <= 41);
        drop(j);
        let (_, entries, _) = Journal::open(&tmp.0).unwrap();
        assert_eq!(entries.len(), keep.len());
        assert_eq!(entries[0].due_unix_ms, 99);
    }

    #[test]
    fn open_fails_where_the_directory_cannot_exist() {
        let tmp = Tmp::new("journal-notdir");
        let file = tmp.0.join("plain-file");
        fs::write(&file, b"x").unwrap();
        match Journal::open(&file.join("state")).err().unwrap() {
            StateDirError::Io(e) => assert!(
                matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::EEXIST)),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn disk_full_record_fails_and_leaves_state_unchanged() {
        let tmp = Tmp::new("journal-full");
        let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
        j.record(&entry(1, 100, "first")).unwrap();
        j.replace_file_for_test(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        );
        let err = j.record(&entry(2, 200, "second")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(j.live(), 1);
        drop(j);
        let (_, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!((entries, skipped), (vec![entry(1, 100, "first")], 0));
    }
}

#[cfg(test)]
mod hostile_dir_tests {
    use super::tests::{entry, Tmp};
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    /// A file outside the directory whose bytes and mode must never change.
    fn precious(tmp: &Tmp) -> PathBuf {
        tmp.file("precious", b"root's data\n", 0o644)
    }

    fn untouched(path: &Path) {
        assert_eq!(fs::read(path).unwrap(), b"root's data\n");
        assert_eq!(fs::metadata(path).unwrap().mode() & 0o7777, 0o644);
    }

    fn refused(dir: &Path) -> String {
        match Journal::open(dir) {
            Err(StateDirError::Unsafe(m)) => m,
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(_) => panic!("expected a refusal, got a journal"),
        }
    }

    #[test]
    fn a_journal_or_temp_file_that_is_a_link_is_refused_and_the_target_untouched() {
        let tmp = Tmp::new("journal-links");
        let target = precious(&tmp);
        let dir = tmp.0.join("state");
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&target, dir.join(FILE_NAME)).unwrap();
        assert!(refused(&dir).contains("symbolic link"));
        untouched(&target);
        fs::remove_file(dir.join(FILE_NAME)).unwrap();
        std::os::unix::fs::symlink(&target, dir.join(TMP_NAME)).unwrap();
        assert!(refused(&dir).contains("not a regular file"));
        untouched(&target);
        // A stale regular temp file (a compaction cut short) is removed.
        fs::remove_file(dir.join(TMP_NAME)).unwrap();
        fs::write(dir.join(TMP_NAME), b"half").unwrap();
        let (mut j, _, _) = Journal::open(&dir).unwrap();
        assert!(!dir.join(TMP_NAME).exists());
        // A link planted while running is not followed by compaction.
        std::os::unix::fs::symlink(&target, dir.join(TMP_NAME)).unwrap();
        j.set_compact_min_lines(2);
        for n in 1..5 {
            j.record(&entry(n, n, "x")).unwrap();
            j.done(JournalId(n)).unwrap();
        }
        untouched(&target);
        assert!(!dir.join(TMP_NAME).exists());
    }

    #[test]
    fn a_hard_link_or_foreign_journal_is_refused() {
        let tmp = Tmp::new("journal-hardlink");
        let target = precious(&tmp);
        let dir = tmp.0.join("state");
        fs::create_dir(&dir).unwrap();
        fs::hard_link(&target, dir.join(FILE_NAME)).unwrap();
        assert!(refused(&dir).contains("hard links"));
        untouched(&target);
        fs::remove_file(dir.join(FILE_NAME)).unwrap();
        fs::write(dir.join(FILE_NAME), b"").unwrap();
        std::os::unix::fs::chown(dir.join(FILE_NAME), Some(65534), None).unwrap();
        assert!(refused(&dir).contains("owned by uid 65534"));
    }

    #[test]
    fn a_group_commit_is_one_append_of_every_op() {
        let tmp = Tmp::new("journal-batch");
        let (mut j, _, _) = Journal::open(&tmp.0).unwrap();
        let ops: Vec<JournalOp> = (1..=3)
            .map(|n| JournalOp::Add(entry(n, n, "stop")))
            .chain([JournalOp::Done(JournalId(2)), JournalOp::Done(JournalId(9))])
            .collect();
        j.commit(&ops).unwrap();
        assert_eq!(j.live(), 2);
        let text = fs::read_to_string(tmp.0.join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        drop(j);
        let (_, entries, _) = Journal::open(&tmp.0).unwrap();
        let ids: Vec<u64> = entries.iter().map(|e| e.id.get()).collect();
        assert_eq!(ids, [1, 3]);
    }
}
