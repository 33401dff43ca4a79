//! Group commit: the journal is written on a thread of its own, one write
//! and one fsync per batch of changes, so the capture thread never waits
//! for a disk.
//!
//! The main loop pushes [`JournalOp`]s; each push says which batch will
//! carry it. The writer takes everything pushed so far as one batch, writes
//! it (marks it written), fsyncs it, marks it durable and wakes the main
//! loop through [`JournalWriter::wake_fd`]. A door's open action is
//! released only once the batch holding its close is durable, or, for a
//! kernel door whose close is the kernel's alone, once it is written: a
//! written record survives the daemon's death, and what a power loss could
//! take from the file it also takes from the kernel's sets (see
//! `Doors::tick`). Such doors are pushed with [`JournalWriter::push_early`],
//! and only then is the main loop woken after the write as well.
//!
//! Bounded: pending changes are keyed by door, a later change replacing an
//! earlier one (a re-armed door's new due time replaces the old), so the
//! queue never holds more than one change per door, and doors are capped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::doors::journal::{Journal, JournalId, JournalOp};

/// Number of a batch of changes; batch `n` is durable once
/// [`JournalWriter::durable`] is at least `n`.
pub type Batch = u64;

struct State {
    pending: Vec<JournalOp>,
    /// Position in `pending` of each door's change.
    index: HashMap<JournalId, usize>,
    /// The batch changes pushed now will be written in.
    filling: Batch,
    /// Some change of the filling batch waits for it to be written only.
    early: bool,
    /// Every batch up to this one is in the file (or failed, and logged).
    written: Batch,
    /// Every batch up to this one has been written and synced (or failed,
    /// and logged).
    durable: Batch,
    closing: bool,
    exited: bool,
    errors: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when changes arrive or closing starts.
    work: Condvar,
    /// Signalled when a batch is durable or the writer leaves.
    idle: Condvar,
    wake_tx: UnixStream,
}

/// Handle to the journal's writer thread.
pub struct JournalWriter {
    shared: Arc<Shared>,
    wake_rx: UnixStream,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    next_id: JournalId,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl JournalWriter {
    /// Moves `journal` onto a new writer thread.
    pub fn spawn(journal: Journal) -> io::Result<JournalWriter> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let path = journal.path().to_owned();
        let next_id = journal.next_id();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                index: HashMap::new(),
                filling: 1,
                early: false,
                written: 0,
                durable: 0,
                closing: false,
                exited: false,
                errors: 0,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            wake_tx,
        });
        let mine = shared.clone();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .stack_size(256 * 1024)
            .spawn(move || writer(journal, &mine))?;
        Ok(JournalWriter {
            shared,
            wake_rx,
            thread: Some(thread),
            path,
            next_id,
        })
    }

    /// The journal file, for messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The first id the journal had never used when it was opened.
    pub fn first_free_id(&self) -> JournalId {
        self.next_id
    }

    /// Queues `op`; returns the batch that will carry it. Never blocks on
    /// the disk (only, briefly, on the queue's lock).
    pub fn push(&self, op: JournalOp) -> Batch {
        self.push_as(op, false)
    }

    /// As [`push`](Self::push), for a change someone waits to see
    /// [`written`](Self::written) (not only durable): the main loop is
    /// woken after the write too.
    pub fn push_early(&self, op: JournalOp) -> Batch {
        self.push_as(op, true)
    }

    fn push_as(&self, op: JournalOp, early: bool) -> Batch {
        let mut st = lock(&self.shared.state);
        st.early |= early;
        let Some(id) = op.id() else {
            // A burn is about no door: queued as it is. Each completes a
            // rotating window once, so they are as bounded as the doors.
            st.pending.push(op);
            let batch = st.filling;
            drop(st);
            self.shared.work.notify_one();
            return batch;
        };
        match st.index.get(&id) {
            Some(&at) => {
                if let Some(slot) = st.pending.get_mut(at) {
                    *slot = op;
                }
            }
            None => {
                let at = st.pending.len();
                st.pending.push(op);
                st.index.insert(id, at);
            }
        }
        let batch = st.filling;
        drop(st);
        self.shared.work.notify_one();
        batch
    }

    /// The last batch written and synced (successfully or not).
    pub fn durable(&self) -> Batch {
        lock(&self.shared.state).durable
    }

    /// The last batch written to the file, synced or not (successfully or
    /// not). Never behind [`durable`](Self::durable).
    pub fn written(&self) -> Batch {
        lock(&self.shared.state).written
    }

    /// Batches that could not be written.
    pub fn errors(&self) -> u64 {
        lock(&self.shared.state).errors
    }

    /// Readable after a batch was written; [`JournalWriter::clear_wake`] empties it.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    /// Empties the wake socket (call before reading `durable`).
    pub fn clear_wake(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.wake_rx).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// Waits up to `limit` for batch `batch` to be written; true if it was.
    pub fn wait(&self, batch: Batch, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut st = lock(&self.shared.state);
        while st.durable < batch && !st.exited {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            st = match self.shared.idle.wait_timeout(st, until - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        st.durable >= batch
    }

    /// Writes what is queued and ends the thread, waiting at most `limit`
    /// (a disk that hangs must not hold up the exit: the thread is then
    /// left behind). True when everything was written.
    pub fn finish(mut self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut st = lock(&self.shared.state);
        st.closing = true;
        self.shared.work.notify_all();
        while !st.exited {
            let now = Instant::now();
            if now >= until {
                break;
            }
            st = match self.shared.idle.wait_timeout(st, until - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        let exited = st.exited;
        drop(st);
        if exited {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        } else {
            crate::error!(
                "journal {}: still writing at exit; leaving it",
                self.path.display()
            );
        }
        exited
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        // Without finish: the thread writes what is queued, then leaves.
        lock(&self.shared.state).closing = true;
        self.shared.work.notify_all();
    }
}

fn writer(mut journal: Journal, shared: &Shared) {
    // What the journal leaves to its first commit, done before any commit
    // is asked for; a failure here is retried (and reported) by that commit.
    let _ = journal.sync_name();
    loop {
        let (ops, batch, early) = {
            let mut st = lock(&shared.state);
            while st.pending.is_empty() && !st.closing {
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.pending.is_empty() {
                break;
            }
            st.index.clear();
            let batch = st.filling;
            st.filling += 1;
            let early = std::mem::take(&mut st.early);
            (std::mem::take(&mut st.pending), batch, early)
        };
        let written = journal.write(&ops);
        lock(&shared.state).written = batch;
        if early {
            shared.idle.notify_all();
            let _ = (&shared.wake_tx).write(&[1]);
        }
        let result = written.and_then(|()| journal.sync());
        if let Err(e) = &result {
            let first = ops.iter().find_map(|op| match op {
                JournalOp::Add(e) => Some(format!(" for {} from {}", e.event, e.src)),
                JournalOp::Done(_) | JournalOp::Burn(_) => None,
            });
            crate::warn!(
                "journal {}: cannot record stop{} and {} other change(s) (kept in memory only: \
                 doors close on time but would not survive a crash): {e}",
                journal.path().display(),
                first.unwrap_or_default(),
                ops.len().saturating_sub(1)
            );
        }
        {
            let mut st = lock(&shared.state);
            debug_assert!(st.written >= batch);
            st.durable = batch;
            st.errors += u64::from(result.is_err());
        }
        shared.idle.notify_all();
        // A full socket is already readable: losing this byte is fine.
        let _ = (&shared.wake_tx).write(&[1]);
    }
    lock(&shared.state).exited = true;
    shared.idle.notify_all();
    let _ = (&shared.wake_tx).write(&[1]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::journal::tests::{entry, Tmp};

    #[test]
    fn pushes_are_written_in_batches_and_coalesced_per_door() {
        let tmp = Tmp::new("commit-batch");
        let (journal, _, _) = Journal::open(&tmp.0).unwrap();
        let w = JournalWriter::spawn(journal).unwrap();
        let mut last = 0;
        for n in 1..=50u64 {
            last = w.push(JournalOp::Add(entry(n % 5 + 1, n, "stop")));
        }
        w.push(JournalOp::Done(JournalId::new(1)));
        assert!(w.wait(last, Duration::from_secs(5)));
        assert!(w.finish(Duration::from_secs(5)));
        let (_, entries, skipped) = Journal::open(&tmp.0).unwrap();
        assert_eq!(skipped, 0);
        let ids: Vec<u64> = entries.iter().map(|e| e.id.get()).collect();
        assert_eq!(ids, [2, 3, 4, 5]);
        // The last due time pushed for each door is the one kept.
        assert_eq!(entries[0].due_unix_ms, 46);
    }

    #[test]
    fn an_early_push_wakes_the_loop_once_written() {
        let tmp = Tmp::new("commit-early");
        let (journal, _, _) = Journal::open(&tmp.0).unwrap();
        let w = JournalWriter::spawn(journal).unwrap();
        let b = w.push_early(JournalOp::Add(entry(1, 1, "")));
        let ready =
            crate::sys::process::poll_readable([Some(w.wake_fd())], Some(Duration::from_secs(5)))
                .unwrap();
        assert_eq!(ready, [true]);
        assert!(w.written() >= b, "woken before the write");
        assert!(w.wait(b, Duration::from_secs(5)));
        assert!(w.written() >= w.durable());
        assert!(w.finish(Duration::from_secs(5)));
        let (_, entries, _) = Journal::open(&tmp.0).unwrap();
        assert_eq!(entries, [entry(1, 1, "")]);
    }

    #[test]
    fn the_wake_fd_turns_readable_after_a_batch() {
        let tmp = Tmp::new("commit-wake");
        let (journal, _, _) = Journal::open(&tmp.0).unwrap();
        let w = JournalWriter::spawn(journal).unwrap();
        let b = w.push(JournalOp::Add(entry(1, 1, "stop")));
        let ready =
            crate::sys::process::poll_readable([Some(w.wake_fd())], Some(Duration::from_secs(5)))
                .unwrap();
        assert_eq!(ready, [true]);
        assert!(w.durable() >= b);
        w.clear_wake();
        let ready =
            crate::sys::process::poll_readable([Some(w.wake_fd())], Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, [false]);
        assert_eq!(w.errors(), 0);
    }
}
