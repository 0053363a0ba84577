//! Delivery of live output to Python targets (file-like objects, callables, loggers).
//!
//! This module owns the one delivery thread. While idle it polls the pipes of the open live
//! blocks itself, so a line written to an idle process reaches its target after a single thread
//! wake-up; it then takes the GIL, decodes and calls the target. The reader thread
//! (`crate::reader`) polls the same pipes without ever taking the GIL: while the delivery thread
//! waits for the GIL or runs a target, the reader keeps draining, so a writer that holds the GIL
//! never blocks on a full pipe, and queues the block for delivery.
//! Deliveries of one block never overlap (a busy flag), so the target sees bytes in write order;
//! the block's exit delivers the rest itself, after any delivery in progress.

use crate::locks;
use std::cell::Cell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::PyErr;

use super::names;
use crate::decode::{encoding_is, LineSplitter, Utf8Carry, UTF8_NAMES};
use crate::fd;
use crate::reader::{self, Channel};

/// How a target takes its output.
#[derive(Clone, Copy)]
pub enum Mode {
    /// `target.write(str)` (text streams) or `target(str)` (callables).
    Text { call: bool },
    /// `target.write(bytes)` or `target(bytes)`.
    Bytes { call: bool },
    /// `target.log(level, line, extra={"fdredirect_fd": fd})`, one record per line.
    Logger { level: i32 },
}

enum Decoder {
    /// UTF-8: an incomplete trailing character waits for the next piece.
    Utf8(Utf8Carry),
    /// One byte per character (ASCII, latin-1): every piece decodes on its own.
    Stateless,
    /// Any other codec: Python's incremental decoder.
    Python(Py<PyAny>),
}

struct Delivery {
    decoder: Decoder,
    lines: LineSplitter,
    /// The first exception the target raised; later output is dropped, not delivered.
    error: Option<PyErr>,
}

pub struct Live {
    fd: RawFd,
    /// The fork generation the block was opened in: a forked child must not read its parent's
    /// pipes.
    generation: u64,
    /// The stack entry of the block, to end it at interpreter shutdown (set by `open`).
    entry: AtomicU64,
    target: Py<PyAny>,
    mode: Mode,
    encoding: String,
    errors: String,
    channel: Arc<Channel>,
    /// Where pending bytes go if the process exits while the block is open.
    /// Released as soon as the block ends: the delivery queue may hold the `Live` a while longer.
    original: Mutex<Option<OwnedFd>>,
    busy: Mutex<bool>,
    idle: Condvar,
    queued: AtomicBool,
    delivery: Mutex<Delivery>,
}

/// Lock without ever letting go of the GIL, attached or not. Only for the locks here, whose
/// sections are short and never run Python code. The delivery thread takes `ACTIVE` and `QUEUE`
/// while it is the one polling the live pipes: if an attached thread held one while waiting for
/// the GIL (as `lock_py_attached` does after waiting detached), and the GIL's holder were
/// writing into a full pipe, nothing would drain it.
fn lock_briefly<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    locks::lock(mutex)
}

impl Live {
    /// A live block's delivery, made before the switch (it needs the GIL). The caller registers
    /// `channel()` with the reader right after switching the fd, without the GIL, then calls
    /// `open`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        py: Python<'_>,
        fd: RawFd,
        target: Py<PyAny>,
        mode: Mode,
        encoding: Option<&str>,
        errors: &str,
        read: OwnedFd,
        forward: Vec<OwnedFd>,
    ) -> PyResult<Arc<Live>> {
        let encoding = encoding.unwrap_or("utf-8").to_owned();
        let decoder = if encoding_is(&encoding, UTF8_NAMES) {
            Decoder::Utf8(Utf8Carry::default())
        } else if encoding_is(
            &encoding,
            &["ascii", "us-ascii", "latin-1", "latin1", "iso-8859-1", "iso8859-1"],
        ) {
            Decoder::Stateless
        } else {
            let codecs = py.import("codecs")?;
            let factory = codecs.call_method1(names::GETINCREMENTALDECODER.get(py), (&encoding,))?;
            Decoder::Python(factory.call1((errors,))?.unbind())
        };
        let delivery = Delivery {
            decoder,
            lines: LineSplitter::default(),
            error: None,
        };
        ensure_delivery_thread(&mut lock_briefly(&QUEUE)).map_err(super::errors::io_error)?;
        let live = Arc::new_cyclic(|me: &Weak<Live>| {
            let me = me.clone();
            let notify = Box::new(move || {
                if let Some(live) = me.upgrade() {
                    schedule(live);
                }
            });
            Live {
                fd,
                generation: crate::fork::generation(),
                entry: AtomicU64::new(0),
                target,
                mode,
                encoding,
                errors: errors.to_owned(),
                channel: Arc::new(Channel::new(read, forward, true, notify)),
                original: Mutex::new(None),
                busy: Mutex::new(false),
                idle: Condvar::new(),
                queued: AtomicBool::new(false),
                delivery: Mutex::new(delivery),
            }
        });
        Ok(live)
    }

    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// The fd now points at the pipe and the reader serves it: the block is open. `original` is
    /// where pending bytes go if the process exits while the block is open.
    pub fn open(self: &Arc<Self>, py: Python<'_>, entry: u64, original: Option<OwnedFd>) {
        self.entry.store(entry, Ordering::Release);
        *super::lock(py, &self.original) = original;
        lock_briefly(&ACTIVE).push(Arc::clone(self));
        // The delivery thread polls the open blocks' pipes: it must add this one. Only then may
        // the reader leave it to the delivery thread.
        self.channel.watch();
        wake_delivery_thread(&lock_briefly(&QUEUE));
    }

    /// The block has ended (fd restored): deliver everything the pipe held, in order, then
    /// return the target's first exception, if any.
    pub fn end(&self, py: Python<'_>, late: Option<OwnedFd>) -> PyResult<()> {
        self.forget(py);
        let rest = py.detach(|| reader::end(&self.channel, late));
        match self.deliver(py, rest, true) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Drop the block from the open ones (and its copy of the original fd). On its own: a forked
    /// child leaving an inherited block, whose channel belongs to the parent's reader.
    pub fn forget(&self, py: Python<'_>) {
        drop(super::lock(py, &self.original).take());
        let removed: Vec<Arc<Live>> = {
            let mut active = lock_briefly(&ACTIVE);
            let (mine, others) = active.drain(..).partition(|live| std::ptr::eq(Arc::as_ptr(live), self));
            *active = others;
            mine
        };
        drop(removed); // outside the lock: dropping may run Python code
    }

    /// Take the block's busy flag: one delivery of a block at a time. Usually nobody else
    /// delivers: take it at once (detaching costs a GIL hand-off). Otherwise wait without the
    /// GIL, which the other delivery may need to finish. Returns whether the flag was taken.
    /// A delivery gives up once interpreter exit has begun: `shutdown` then takes the flag for
    /// good (and everything pending with it); `shutdown` itself waits at most `SHUTDOWN_WAIT`.
    fn claim(&self, py: Python<'_>, for_shutdown: bool) -> bool {
        let was_busy = std::mem::replace(&mut *super::lock(py, &self.busy), true);
        if !was_busy {
            return true;
        }
        py.detach(|| {
            const SLICE: std::time::Duration = std::time::Duration::from_millis(50);
            let deadline = std::time::Instant::now() + SHUTDOWN_WAIT;
            let mut busy = lock_briefly(&self.busy);
            while *busy {
                let now = std::time::Instant::now();
                let gave_up = if for_shutdown {
                    now >= deadline
                } else {
                    SHUTTING_DOWN.load(Ordering::Acquire)
                };
                if gave_up {
                    return false;
                }
                let wait = if for_shutdown { deadline - now } else { SLICE };
                busy = self
                    .idle
                    .wait_timeout(busy, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            *busy = true;
            true
        })
    }

    /// Deliver what is pending plus `extra`. With `last`, returns the target's first exception.
    fn deliver(&self, py: Python<'_>, extra: Vec<u8>, last: bool) -> Option<PyErr> {
        if !self.claim(py, false) {
            return None; // interpreter exit: `shutdown` writes what is pending to the original fd
        }
        // Taken with the GIL held: bytes taken by a thread that then waited for the GIL could be
        // stranded forever at interpreter shutdown. The channel lock is only ever held briefly.
        let mut bytes = self.channel.take_pending();
        bytes.extend(extra);
        // Uncontended: only the holder of `busy` touches `delivery`.
        let mut delivery = super::lock(py, &self.delivery);
        if delivery.error.is_none() {
            if let Err(err) = self.send_in_pieces(py, &mut delivery, &bytes, last) {
                delivery.error = Some(err);
            }
        }
        let error = if last { delivery.error.take() } else { None };
        drop(delivery);
        self.release_busy(py);
        error
    }

    /// In bounded pieces: the bytes/str objects made for the target (and the decoder's copy)
    /// then stay small however far the target fell behind, instead of adding 2-3x the backlog.
    /// Stops at the target's first exception.
    fn send_in_pieces(&self, py: Python<'_>, delivery: &mut Delivery, bytes: &[u8], last: bool) -> PyResult<()> {
        let pieces = bytes.len().div_ceil(DELIVERY_PIECE).max(1);
        for (index, piece) in bytes.chunks(DELIVERY_PIECE).chain([&[][..]]).take(pieces).enumerate() {
            self.send(py, delivery, piece, last && index + 1 == pieces)?;
        }
        Ok(())
    }

    fn release_busy(&self, py: Python<'_>) {
        *super::lock(py, &self.busy) = false;
        self.idle.notify_all();
    }

    /// A synchronisation point, in the calling thread: deliver everything written to the block's
    /// fd so far (what the reader holds and what the pipe holds now), after any delivery in
    /// progress, then flush the target if it is a stream. A target's exception is raised here
    /// (the bytes of that call are lost) and does not end the block's delivery, unlike one in the
    /// delivery thread: in the calling thread it may be a `KeyboardInterrupt`. Inside a delivery
    /// (a target that writes to a synced stream) it does nothing, instead of waiting for itself.
    /// `drained`: the caller has just drained the channel itself, without the GIL.
    pub fn sync(&self, py: Python<'_>, flush_target: bool, drained: bool) -> PyResult<()> {
        if DELIVERING.with(Cell::get) || self.generation != crate::fork::generation() {
            return Ok(());
        }
        // One bounded drain: it takes all a pipe holds, and a writer in another thread that
        // keeps writing must not keep this caller here.
        if !drained {
            py.detach(|| self.channel.drain());
        }
        if !self.claim(py, false) {
            return Ok(()); // interpreter exit: `shutdown` has taken everything
        }
        let bytes = self.channel.take_pending();
        let mut delivery = super::lock(py, &self.delivery);
        let sent = if delivery.error.is_some() || bytes.is_empty() {
            Ok(())
        } else {
            self.send_in_pieces(py, &mut delivery, &bytes, false)
        };
        drop(delivery);
        self.release_busy(py);
        sent?;
        match self.mode {
            Mode::Text { call: false } | Mode::Bytes { call: false } if flush_target => {
                let target = self.target.bind(py);
                if target.hasattr(names::FLUSH.get(py))? {
                    target.call_method0(names::FLUSH.get(py))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn send(&self, py: Python<'_>, delivery: &mut Delivery, bytes: &[u8], last: bool) -> PyResult<()> {
        let _delivering = Delivering::enter();
        let target = self.target.bind(py);
        match self.mode {
            Mode::Bytes { call } => {
                if !bytes.is_empty() {
                    call_or_write(target, call, PyBytes::new(py, bytes).as_any())?;
                }
            }
            Mode::Text { call } => {
                let text = decode(py, delivery, bytes, last, &self.encoding, &self.errors)?;
                if !text.is_empty()? {
                    call_or_write(target, call, text.as_any())?;
                }
            }
            Mode::Logger { level } => {
                let text = decode(py, delivery, bytes, last, &self.encoding, &self.errors)?;
                let mut lines = delivery.lines.push(&text.to_string_lossy());
                if last {
                    lines.extend(delivery.lines.finish());
                }
                if !lines.is_empty() {
                    let extra = PyDict::new(py);
                    extra.set_item(names::FDREDIRECT_FD.get(py), self.fd)?;
                    let kwargs = PyDict::new(py);
                    kwargs.set_item(names::EXTRA.get(py), extra)?;
                    for line in lines {
                        target.call_method(names::LOG.get(py), (level, line), Some(&kwargs))?;
                    }
                }
            }
        }
        Ok(())
    }
}

thread_local! {
    /// This thread is inside a target's call: a synchronisation point reached from there (the
    /// target writes to a stream that syncs first) must not wait for the delivery it is part of.
    static DELIVERING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside a target's call (see `DELIVERING`).
pub fn delivering() -> bool {
    DELIVERING.with(Cell::get)
}

/// Marks the current thread as delivering until dropped (also when the target raises).
struct Delivering(bool);

impl Delivering {
    fn enter() -> Self {
        Delivering(DELIVERING.with(|d| d.replace(true)))
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        DELIVERING.with(|d| d.set(self.0));
    }
}

/// A synchronisation point for every live block open on `fd` in this process, oldest first:
/// see `Live::sync`. Used by `FdWriter.flush()`.
pub fn sync_fd(py: Python<'_>, fd: RawFd) -> PyResult<()> {
    let open: Vec<Arc<Live>> = lock_briefly(&ACTIVE)
        .iter()
        .filter(|live| live.fd == fd)
        .cloned()
        .collect();
    let mut first_error = None;
    for live in &open {
        if let Err(err) = live.sync(py, true, false) {
            first_error.get_or_insert(err);
        }
    }
    drop(open); // dropping the last reference may run Python code: not under a lock
    first_error.map_or(Ok(()), Err)
}

/// The loggers of this process's open logger blocks on `fd`, innermost last.
pub fn open_loggers(py: Python<'_>, fd: RawFd) -> Vec<Py<PyAny>> {
    let generation = crate::fork::generation();
    lock_briefly(&ACTIVE)
        .iter()
        .filter(|live| live.fd == fd && live.generation == generation && matches!(live.mode, Mode::Logger { .. }))
        .map(|live| live.target.clone_ref(py))
        .collect()
}

fn call_or_write(target: &Bound<'_, PyAny>, call: bool, piece: &Bound<'_, PyAny>) -> PyResult<()> {
    if call {
        target.call1((piece,))?;
    } else {
        target.call_method1(names::WRITE.get(target.py()), (piece,))?;
    }
    Ok(())
}

fn decode<'py>(
    py: Python<'py>,
    delivery: &mut Delivery,
    bytes: &[u8],
    last: bool,
    encoding: &str,
    errors: &str,
) -> PyResult<Bound<'py, PyString>> {
    let decoded = match &mut delivery.decoder {
        Decoder::Utf8(carry) => {
            let mut complete = carry.push(bytes);
            if last {
                complete.extend(carry.finish());
            }
            PyBytes::new(py, &complete).call_method1(names::DECODE.get(py), ("utf-8", errors))?
        }
        Decoder::Stateless => PyBytes::new(py, bytes).call_method1(names::DECODE.get(py), (encoding, errors))?,
        Decoder::Python(decoder) => decoder
            .bind(py)
            .call_method1(names::DECODE.get(py), (PyBytes::new(py, bytes), last))?,
    };
    Ok(decoded.cast_into::<PyString>()?)
}

/// For the fork handler (`crate::fork`): the delivery thread and the reader hold `ACTIVE` and
/// `QUEUE` without the GIL, so `os.fork()` can happen while one of them holds a lock that a child
/// needs to leave an inherited block or to start a live block of its own. Never held while waiting
/// for anything else, so taking them before a fork cannot deadlock.
pub fn hold_for_fork() -> Vec<Box<dyn std::any::Any>> {
    vec![Box::new(lock_briefly(&ACTIVE)), Box::new(lock_briefly(&QUEUE))]
}

/// How long the exit handler waits for deliveries in progress to finish.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The most bytes handed to a target in one call (before decoding).
const DELIVERY_PIECE: usize = 1 << 20;

/// Live blocks still open, for shutdown.
static ACTIVE: Mutex<Vec<Arc<Live>>> = Mutex::new(Vec::new());

struct Queue {
    generation: Option<u64>,
    /// Written to wake the delivery thread from its poll.
    wake: Option<OwnedFd>,
    jobs: VecDeque<Arc<Live>>,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    generation: None,
    wake: None,
    jobs: VecDeque::new(),
});
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// Start the delivery thread on first use, and again in a forked child (where the parent's
/// thread does not exist).
fn ensure_delivery_thread(queue: &mut Queue) -> std::io::Result<()> {
    let generation = crate::fork::generation();
    if queue.generation != Some(generation) {
        queue.jobs.clear();
        let (wake_read, wake_write) = fd::pipe_nonblocking()?;
        std::thread::Builder::new()
            .name("fdredirect-delivery".into())
            .spawn(move || run(&wake_read))?;
        queue.wake = Some(wake_write);
        queue.generation = Some(generation);
    }
    Ok(())
}

/// Called by the reader after it drained bytes of `live`'s pipe.
fn schedule(live: Arc<Live>) {
    if live.queued.swap(true, Ordering::AcqRel) {
        return; // already waiting for the delivery thread
    }
    let mut queue = lock_briefly(&QUEUE);
    // Without a thread, the block's exit still delivers everything.
    if ensure_delivery_thread(&mut queue).is_ok() {
        queue.jobs.push_back(live);
        wake_delivery_thread(&queue);
    }
}

fn wake_delivery_thread(queue: &Queue) {
    if let Some(wake) = &queue.wake {
        fd::poke(wake.as_raw_fd());
    }
}

/// Wait, detached, until some blocks have bytes to deliver: blocks the reader queued, or blocks
/// whose pipe this thread polled and drained itself.
fn wait_for_work(wake: &OwnedFd) -> Vec<Arc<Live>> {
    let mut polling = false;
    loop {
        if let Some(jobs) = take_queued() {
            if polling {
                reader::delivery_leaves(0);
            }
            return jobs;
        }
        if !polling {
            reader::delivery_polls();
            polling = true;
        }
        let (jobs, drained) = poll_live_pipes(wake);
        if !jobs.is_empty() {
            reader::delivery_leaves(drained);
            return jobs;
        }
    }
}

/// The blocks the reader queued for delivery, if any.
fn take_queued() -> Option<Vec<Arc<Live>>> {
    let mut queue = lock_briefly(&QUEUE);
    if queue.jobs.is_empty() {
        return None;
    }
    let jobs: Vec<Arc<Live>> = queue.jobs.drain(..).collect();
    for live in &jobs {
        live.queued.store(false, Ordering::Release);
    }
    Some(jobs)
}

/// Poll the pipes of this process's open live blocks and the wake pipe; drain the pipes that
/// are ready. Returns the blocks that now have bytes to deliver, and how many bytes were read.
fn poll_live_pipes(wake: &OwnedFd) -> (Vec<Arc<Live>>, usize) {
    let generation = crate::fork::generation();
    // Only the channels while detached: a `Live` held here could become the last reference when
    // its block ends, and dropping it without the GIL queues its Python objects in PyO3's pool,
    // under a lock that a `fork()` at that moment would leave held in the child.
    let watched: Vec<Arc<Channel>> = lock_briefly(&ACTIVE)
        .iter()
        .filter(|live| live.generation == generation)
        .map(|live| Arc::clone(&live.channel))
        .collect();
    let mut polled = vec![wake.as_raw_fd()];
    let mut served = Vec::with_capacity(watched.len());
    for channel in &watched {
        if let Some(fd) = channel.read_fd() {
            polled.push(fd);
            served.push(channel);
        }
    }
    let ready = fd::wait_readable(&polled);
    if ready[0] {
        fd::discard_available(wake.as_raw_fd());
    }
    let mut filled = Vec::new();
    let mut drained = 0;
    for (channel, _) in served.into_iter().zip(&ready[1..]).filter(|(_, &ready)| ready) {
        let (added, eof) = channel.drain();
        if eof {
            reader::unregister(channel);
        }
        if added > 0 {
            drained += added;
            filled.push(channel);
        }
    }
    // Handed back to the attached side, which drops them. A block that ended meanwhile is not
    // there any more: its exit delivered what its pipe held.
    let jobs = if filled.is_empty() {
        Vec::new()
    } else {
        lock_briefly(&ACTIVE)
            .iter()
            .filter(|live| filled.iter().any(|channel| Arc::ptr_eq(channel, &live.channel)))
            .cloned()
            .collect()
    };
    (jobs, drained)
}

fn run(wake: &OwnedFd) {
    // The first work is awaited without Python: a thread started just before the interpreter
    // exits must not try to attach to it.
    let first = wait_for_work(wake);
    // Attached for the thread's whole life, detached while waiting: attaching anew per delivery
    // would create and destroy a Python thread state every time. `try_attach`: if the
    // interpreter is already gone, there is nobody left to deliver to.
    let _ = Python::try_attach(|py| {
        let mut jobs = first;
        loop {
            for live in jobs.drain(..) {
                // The only place a native thread runs Python. During interpreter shutdown, taking
                // the GIL back blocks forever (PyO3 parks the thread); nothing ever joins it.
                if !SHUTTING_DOWN.load(Ordering::Acquire) {
                    live.deliver(py, Vec::new(), false);
                }
            }
            jobs = py.detach(|| wait_for_work(wake));
        }
    });
}

/// Interpreter shutdown with live blocks still open: stop delivering (the delivery thread may be
/// waiting for a GIL it will never get again), restore each block's fd, and write what is still
/// undelivered to its original destination. Later output (libc's buffers are flushed at exit)
/// then goes straight to the restored fd.
pub fn shutdown(py: Python<'_>) {
    SHUTTING_DOWN.store(true, Ordering::Release);
    let open: Vec<Arc<Live>> = std::mem::take(&mut *lock_briefly(&ACTIVE));
    for live in open.iter().rev() {
        let ours = live.generation == crate::fork::generation();
        if ours {
            // A delivery in progress may have let go of the GIL (a target written in Python
            // does, and so does PyO3's first use of an interned name): let it finish, so the
            // bytes it holds reach the target, and keep the flag so that no other delivery
            // begins. Bounded: a target that never returns must not hang the exit.
            let _ = live.claim(py, true);
        }
        let _ = crate::stack::exit(live.fd, live.entry.load(Ordering::Acquire), false);
        if !ours {
            // A forked child exiting inside its parent's block: the pipe and its pending bytes
            // are the parent's (and its lock may be held by the parent's reader): fds only.
            continue;
        }
        let original = super::lock(py, &live.original).take();
        let late = original
            .as_ref()
            .and_then(|fd| fd::dup_above_stdio(fd.as_raw_fd()).ok());
        let rest = reader::end(&live.channel, late);
        if let Some(original) = &original {
            let mut written = 0;
            while let Err(err) = fd::write_all(original.as_raw_fd(), &rest, &mut written) {
                if err.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
    }
}
