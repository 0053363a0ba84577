//! Handing live output to a Python target: decoding, and the call the target takes (`write`, a
//! call, or one log record per line). Runs attached, during the block's delivery turn.

use std::cell::Cell;
use std::time::SystemTime;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use pyo3::PyErr;

use crate::binding::names;
use crate::decode::{encoding_is, Utf8Carry, UTF8_NAMES};
use crate::lines::LineCutter;
use crate::stamped::Stamped;

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

/// How a callable takes its output (options of the block; a logger always gets lines and their
/// read times).
#[derive(Clone, Copy, Default)]
pub struct Shape {
    /// One call per line, without its line ending (see `crate::lines`).
    pub lines: bool,
    /// Call `target(time, piece)`, `time` when the piece's last byte was read (seconds since the
    /// epoch, as `time.time()`).
    pub timestamps: bool,
}

enum Decoder {
    /// UTF-8: an incomplete trailing character waits for the next piece.
    Utf8(Utf8Carry),
    /// One byte per character (ASCII, latin-1): every piece decodes on its own.
    Stateless,
    /// Any other codec: Python's incremental decoder.
    Python(Py<PyAny>),
}

/// Whether the target still takes output.
enum Outcome {
    Receiving,
    /// The target raised: later output is dropped, and the exception raised at the block's end.
    Failed(PyErr),
    /// The block's last delivery is done (its exception, if any, handed over).
    Finished,
}

/// One block's target and the state of what it was sent.
pub struct Target {
    fd: i32,
    object: Py<PyAny>,
    mode: Mode,
    encoding: String,
    errors: String,
    decoder: Decoder,
    /// For targets that take lines.
    lines: Option<LineCutter>,
    timestamps: bool,
    outcome: Outcome,
}

impl Target {
    pub fn new(
        py: Python<'_>,
        fd: i32,
        object: Py<PyAny>,
        mode: Mode,
        shape: Shape,
        encoding: Option<&str>,
        errors: &str,
    ) -> PyResult<Self> {
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
        Ok(Target {
            fd,
            object,
            mode,
            encoding,
            errors: errors.to_owned(),
            decoder,
            lines: match mode {
                Mode::Logger { .. } => Some(LineCutter::unbounded()),
                _ => shape.lines.then(LineCutter::bounded),
            },
            timestamps: shape.timestamps,
            outcome: Outcome::Receiving,
        })
    }

    /// Send `pending` (with `last`, the block's final bytes), in bounded pieces: the bytes/str
    /// objects made for the target (and the decoder's copy) then stay small however far the
    /// target fell behind, instead of adding 2-3x the backlog. After the target's first exception
    /// nothing more is sent; with `last`, that exception is returned (once).
    pub fn deliver(&mut self, py: Python<'_>, pending: &Stamped, last: bool) -> Option<PyErr> {
        if let Outcome::Receiving = self.outcome {
            if let Err(err) = self.send_in_pieces(py, pending, last) {
                self.outcome = Outcome::Failed(err);
            }
        }
        if !last {
            return None;
        }
        match std::mem::replace(&mut self.outcome, Outcome::Finished) {
            Outcome::Failed(err) => Some(err),
            Outcome::Receiving | Outcome::Finished => None,
        }
    }

    /// A synchronisation point's delivery: the target's exception is raised to the caller (those
    /// bytes are lost), and later output is still delivered.
    pub fn deliver_now(&mut self, py: Python<'_>, pending: &Stamped) -> PyResult<()> {
        match self.outcome {
            Outcome::Receiving if !pending.bytes.is_empty() => self.send_in_pieces(py, pending, false),
            _ => Ok(()),
        }
    }

    /// A target that is given times gets each read's bytes apart (a read is at most a pipe
    /// read's size); any other gets pieces of at most `DELIVERY_PIECE`.
    fn send_in_pieces(&mut self, py: Python<'_>, pending: &Stamped, last: bool) -> PyResult<()> {
        let bytes = pending.bytes.as_slice();
        if self.lines.is_some() || self.timestamps {
            let mut start = 0;
            for (index, &(end, at)) in pending.reads.iter().enumerate() {
                self.send(py, &bytes[start..end], at, last && index + 1 == pending.reads.len())?;
                start = end;
            }
            if last && pending.reads.is_empty() {
                self.send(py, &[], SystemTime::now(), true)?;
            }
            return Ok(());
        }
        let pieces = bytes.len().div_ceil(DELIVERY_PIECE).max(1);
        for (index, piece) in bytes.chunks(DELIVERY_PIECE).chain([&[][..]]).take(pieces).enumerate() {
            self.send(py, piece, SystemTime::now(), last && index + 1 == pieces)?;
        }
        Ok(())
    }

    /// Send `bytes`, whose last byte was read at `at`.
    fn send(&mut self, py: Python<'_>, bytes: &[u8], at: SystemTime, last: bool) -> PyResult<()> {
        let _delivering = Delivering::enter();
        let text = match self.mode {
            Mode::Bytes { .. } => None,
            Mode::Text { .. } | Mode::Logger { .. } => Some(self.decode(py, bytes, last)?),
        };
        let Some(cutter) = &mut self.lines else {
            let piece = match text {
                Some(text) if !text.is_empty()? => text.into_any(),
                None if !bytes.is_empty() => PyBytes::new(py, bytes).into_any(),
                _ => return Ok(()),
            };
            return self.emit(py, &piece, at);
        };
        let decoded = text.as_ref().map(|text| text.to_string_lossy());
        let data = decoded.as_deref().map_or(bytes, str::as_bytes);
        let mut lines = cutter.push(data, at, decoded.is_some());
        if last {
            lines.extend(cutter.finish());
        }
        for (line, at) in lines {
            let piece = if decoded.is_some() {
                PyString::new(py, &String::from_utf8_lossy(&line)).into_any()
            } else {
                PyBytes::new(py, &line).into_any()
            };
            self.emit(py, &piece, at)?;
        }
        Ok(())
    }

    /// Hand one piece (or line) to the target.
    fn emit(&self, py: Python<'_>, piece: &Bound<'_, PyAny>, at: SystemTime) -> PyResult<()> {
        let target = self.object.bind(py);
        match self.mode {
            Mode::Logger { level } => self.log(py, level, piece, at),
            Mode::Text { call: true } | Mode::Bytes { call: true } if self.timestamps => {
                target.call1((seconds(at), piece))?;
                Ok(())
            }
            Mode::Text { call } | Mode::Bytes { call } => call_or_write(target, call, piece),
        }
    }

    /// One log record, made as `Logger.log` makes it, but dated when the line was read (the
    /// delivery may come much later, while the GIL is busy).
    fn log(&self, py: Python<'_>, level: i32, line: &Bound<'_, PyAny>, at: SystemTime) -> PyResult<()> {
        let logger = self.object.bind(py);
        if !logger
            .call_method1(names::ISENABLEDFOR.get(py), (level,))?
            .is_truthy()?
        {
            return Ok(());
        }
        let extra = PyDict::new(py);
        extra.set_item(names::FDREDIRECT_FD.get(py), self.fd)?;
        let args = (
            logger.getattr(names::NAME.get(py))?,
            level,
            "(unknown file)",
            0,
            line,
            PyTuple::empty(py),
            py.None(),
            "(unknown function)",
            extra,
            py.None(),
        );
        let record = logger.call_method1(names::MAKERECORD.get(py), args)?;
        // relativeCreated shifts with created: it is counted from logging's start time, which
        // differs between versions in unit (seconds or nanoseconds).
        let made: f64 = record.getattr(names::CREATED.get(py))?.extract()?;
        let relative: f64 = record.getattr(names::RELATIVECREATED.get(py))?.extract()?;
        let read = seconds(at);
        record.setattr(names::CREATED.get(py), read)?;
        record.setattr(names::MSECS.get(py), ((read - read.trunc()) * 1000.0).trunc())?;
        record.setattr(names::RELATIVECREATED.get(py), relative - (made - read) * 1000.0)?;
        logger.call_method1(names::HANDLE.get(py), (record,))?;
        Ok(())
    }

    fn decode<'py>(&mut self, py: Python<'py>, bytes: &[u8], last: bool) -> PyResult<Bound<'py, PyString>> {
        let errors = self.errors.as_str();
        let decoded = match &mut self.decoder {
            Decoder::Utf8(carry) => {
                let mut complete = carry.push(bytes);
                if last {
                    complete.extend(carry.finish());
                }
                match std::str::from_utf8(&complete) {
                    // Valid (the usual case): no bytes object and no method call on the way.
                    Ok(text) => return Ok(PyString::new(py, text)),
                    Err(_) => PyBytes::new(py, &complete).call_method1(names::DECODE.get(py), ("utf-8", errors))?,
                }
            }
            Decoder::Stateless => {
                PyBytes::new(py, bytes).call_method1(names::DECODE.get(py), (self.encoding.as_str(), errors))?
            }
            Decoder::Python(decoder) => decoder
                .bind(py)
                .call_method1(names::DECODE.get(py), (PyBytes::new(py, bytes), last))?,
        };
        Ok(decoded.cast_into::<PyString>()?)
    }
}

/// The most bytes handed to a target in one call (before decoding).
const DELIVERY_PIECE: usize = 1 << 20;

/// `at` in seconds since the epoch, as `time.time()` gives it.
fn seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

fn call_or_write(target: &Bound<'_, PyAny>, call: bool, piece: &Bound<'_, PyAny>) -> PyResult<()> {
    if call {
        target.call1((piece,))?;
    } else {
        target.call_method1(names::WRITE.get(target.py()), (piece,))?;
    }
    Ok(())
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
