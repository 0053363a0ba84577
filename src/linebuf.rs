//! The line buffer behind `sys.stdout`/`sys.stderr` inside a block (plain Rust: the binding's
//! `FdWriter` encodes, this keeps and writes bytes).
//!
//! The order guarantee is a terminal's line buffering: a complete line reaches the fd when its
//! `\n` is written, before the `write` call that completes it returns, so complete lines keep
//! their order with native output flushed after them. Holding several lines would let native
//! output written between them overtake them, and native writes cannot be seen coming: a line is
//! the most that can be held. A partial line waits for its newline, a `flush()` in its thread, a
//! switch (enter or exit of a block, `fork`, a crash dump, interpreter exit) or `FULL` bytes.
//! `print("line", i)` makes four writes: one syscall per line instead of four.
//!
//! Threads: each thread has its own partial line, and its line is written with one `write` call
//! once complete, so lines from concurrent threads never mix within a line (even `print` with
//! several arguments). Writing out takes a turn (`busy`): a switch in one thread writing every
//! thread's partial line and a thread completing its line cannot overtake each other.
//!
//! The turn is a flag under a mutex held only for a few instructions, never across the syscall
//! or while waiting for the GIL (the fork handlers take it: `hold_for_fork`). A `fork()` in
//! another thread while a line is being written leaves the flag set in the child, where the fork
//! generation shows it as the parent's.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use crate::locks::lock;
use crate::{fd, fork};

/// A partial line longer than this is written out without waiting for its newline (glibc's
/// line-buffered streams do the same when their buffer fills), bounding memory and delay.
pub const FULL: usize = 64 << 10;

pub struct LineBuffer {
    fd: RawFd,
    state: Mutex<State>,
    /// Signalled when the turn to write is given back.
    turn: Condvar,
}

struct State {
    /// The fork generation of the thread writing to the fd now, if any.
    busy: Option<u64>,
    /// Threads waiting for the turn: a wake-up is a syscall, made only when one waits.
    waiting: usize,
    /// Bytes taken out for writing that a signal interrupted: written first at the next turn.
    unwritten: Vec<u8>,
    /// Per thread: the text after its last newline.
    partial: Vec<(ThreadId, Vec<u8>)>,
}

impl State {
    fn partial_of(&mut self, thread: ThreadId) -> &mut Vec<u8> {
        let index = if let Some(index) = self.partial.iter().position(|(t, _)| *t == thread) {
            index
        } else {
            self.partial.push((thread, Vec::new()));
            self.partial.len() - 1
        };
        &mut self.partial[index].1
    }

    /// This thread's partial line and `data` up to its last newline (all of it if none); the
    /// rest becomes the thread's partial line.
    fn take_lines(&mut self, thread: ThreadId, data: &[u8]) -> Vec<u8> {
        let cut = data.iter().rposition(|&b| b == b'\n').map_or(data.len(), |i| i + 1);
        let partial = self.partial_of(thread);
        let mut lines = std::mem::take(partial);
        lines.extend_from_slice(&data[..cut]);
        partial.extend_from_slice(&data[cut..]);
        lines
    }

    fn take_all(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        for (_, partial) in self.partial.drain(..) {
            all.extend(partial);
        }
        all
    }
}

thread_local! {
    // `thread::current()` clones an `Arc` on every call; a `print` writes several times.
    static THREAD: ThreadId = thread::current().id();
}

fn this_thread() -> ThreadId {
    THREAD.with(|id| *id)
}

static BUFFERS: [LineBuffer; 2] = [LineBuffer::new(1), LineBuffer::new(2)];

/// The buffer of fd 1 or 2.
pub fn for_fd(fd: RawFd) -> &'static LineBuffer {
    &BUFFERS[usize::from(fd == 2)]
}

/// For the fork handlers: both buffers' locks, so no thread holds one across the fork.
pub fn hold_for_fork() -> Vec<Box<dyn std::any::Any>> {
    BUFFERS
        .iter()
        .map(|b| Box::new(lock(&b.state)) as Box<dyn std::any::Any>)
        .collect()
}

/// In a forked child (its only thread, locks free): the partial lines and interrupted bytes held
/// at the fork are the parent's, which writes them; written here too they would appear twice
/// (the fork stress test saw another thread's partial line again when the child exited). The
/// forking thread's own partial line was written by `os.fork`'s flush before the fork.
pub fn forked_child() {
    for buffer in &BUFFERS {
        let mut state = lock(&buffer.state);
        state.partial.clear();
        state.unwritten.clear();
    }
}

/// At a crash, in the signal handler once the dump has restored fds 1 and 2: every partial line
/// goes where its fd points now, after the captured output, as libc's buffers do (see
/// `crash::dump::flush_libc`). Only when the lock is free (a thread may hold it at the crash); no
/// allocation, nothing but a try-lock, `write(2)` and an unlock.
pub fn write_at_crash() {
    for buffer in &BUFFERS {
        let mut state = match buffer.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => continue,
        };
        let state = &mut *state;
        for pending in std::iter::once(&mut state.unwritten).chain(state.partial.iter_mut().map(|(_, p)| p)) {
            let mut written = 0;
            while fd::write_all(buffer.fd, pending, &mut written).is_err_and(|e| e.kind() == io::ErrorKind::Interrupted)
            {
            }
            pending.clear(); // a process that survives the signal must not write it again
        }
    }
}

impl LineBuffer {
    const fn new(fd: RawFd) -> Self {
        LineBuffer {
            fd,
            state: Mutex::new(State {
                busy: None,
                waiting: 0,
                unwritten: Vec::new(),
                partial: Vec::new(),
            }),
            turn: Condvar::new(),
        }
    }

    /// Keep `data` in this thread's partial line if it completes no line and the line stays
    /// below `FULL`. Never blocks for long (no syscall): callers need not release the GIL.
    /// Returns false when `data` must go through `write_lines`.
    pub fn keep(&self, data: &[u8]) -> bool {
        if data.contains(&b'\n') {
            return false;
        }
        let mut state = lock(&self.state);
        let partial = state.partial_of(this_thread());
        if partial.len() + data.len() >= FULL {
            return false;
        }
        partial.extend_from_slice(data);
        true
    }

    /// Write this thread's partial line and the complete lines of `data` (all of `data` when it
    /// has no newline); keep the text after the last newline. Blocks: release the GIL.
    /// `EINTR` is returned with the bytes kept (see `resume`).
    pub fn write_lines(&self, data: &[u8]) -> io::Result<()> {
        let thread = this_thread();
        self.emit(|state| state.take_lines(thread, data))
    }

    /// Write this thread's partial line (a `flush()`: another thread's partial line is still
    /// being written, and writing it now would split it). Blocks: release the GIL.
    pub fn flush_mine(&self) -> io::Result<()> {
        self.write_lines(b"")
    }

    /// Whether a `drain` now would have nothing to write and nobody to wait for: no partial
    /// line, nothing left by an interrupted write, no thread writing. Never blocks for long, so
    /// a switch checks it before releasing the GIL for `drain` (two GIL hand-offs per switch).
    pub fn is_idle(&self) -> bool {
        let state = lock(&self.state);
        state.busy != Some(fork::generation())
            && state.unwritten.is_empty()
            && state.partial.iter().all(|(_, partial)| partial.is_empty())
    }

    /// Write every thread's partial line (a switch). Blocks: release the GIL.
    pub fn drain(&self) -> io::Result<()> {
        self.emit(State::take_all)
    }

    /// After `EINTR` (and the signal handlers): write what the interrupted write left.
    pub fn resume(&self) -> io::Result<()> {
        self.emit(|_| Vec::new())
    }

    /// Wait for the turn, take the bytes to write (`unwritten` first), write them, give the turn
    /// back. What an interrupted write left is kept for the next turn; on any other error the
    /// bytes are dropped, as a failed `write` drops them.
    fn emit(&self, take: impl FnOnce(&mut State) -> Vec<u8>) -> io::Result<()> {
        let generation = fork::generation();
        let mut state = lock(&self.state);
        while state.busy == Some(generation) {
            state.waiting += 1;
            state = self.turn.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
        // A mark from another generation is a parent's thread, which does not exist here.
        let mut chunk = std::mem::take(&mut state.unwritten);
        let taken = take(&mut state);
        if chunk.is_empty() {
            chunk = taken;
        } else {
            chunk.extend(taken);
        }
        if chunk.is_empty() {
            state.busy = None;
            return Ok(());
        }
        state.busy = Some(generation);
        drop(state);
        let mut written = 0;
        let result = fd::write_all(self.fd, &chunk, &mut written);
        let mut state = lock(&self.state);
        state.busy = None;
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
            // Nobody else took a turn meanwhile, so `unwritten` is still empty.
            state.unwritten = chunk.split_off(written);
        }
        let wake = state.waiting > 0;
        drop(state);
        if wake {
            self.turn.notify_all();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::fd::testing::read_available;

    #[test]
    fn complete_lines_are_written_at_the_newline_partial_lines_at_drain() {
        let (read, write) = crate::fd::pipe_cloexec().unwrap();
        let buffer = LineBuffer::new(write.as_raw_fd());
        for piece in [&b"line"[..], b" ", b"1"] {
            assert!(buffer.keep(piece));
        }
        assert!(read_available(&read).is_empty());
        assert!(!buffer.keep(b"\n"));
        buffer.write_lines(b"\npart").unwrap();
        assert_eq!(read_available(&read), b"line 1\n");
        buffer.drain().unwrap();
        assert_eq!(read_available(&read), b"part");
    }

    #[test]
    fn each_thread_keeps_its_own_partial_line() {
        let (read, write) = crate::fd::pipe_cloexec().unwrap();
        let buffer = LineBuffer::new(write.as_raw_fd());
        assert!(buffer.keep(b"main "));
        thread::scope(|s| {
            s.spawn(|| {
                assert!(buffer.keep(b"other "));
                buffer.write_lines(b"done\n").unwrap();
            });
        });
        assert_eq!(read_available(&read), b"other done\n");
        buffer.write_lines(b"done\n").unwrap();
        assert_eq!(read_available(&read), b"main done\n");
    }

    #[test]
    fn a_long_partial_line_is_written_when_full() {
        let (read, write) = crate::fd::pipe_cloexec().unwrap();
        let buffer = LineBuffer::new(write.as_raw_fd());
        let chunk = vec![b'x'; FULL / 2];
        assert!(buffer.keep(&chunk));
        assert!(!buffer.keep(&chunk));
        buffer.write_lines(&chunk).unwrap();
        assert_eq!(read_available(&read).len(), FULL);
    }
}
