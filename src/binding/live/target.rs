//! Handing live output to a Python target: decoding, and the call the target takes (`write`, a
//! call, or one log record per line). Runs attached, under the block's busy flag.

use std::cell::Cell;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::PyErr;

use crate::binding::names;
use crate::decode::{encoding_is, LineSplitter, Utf8Carry, UTF8_NAMES};

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
    lines: LineSplitter,
    outcome: Outcome,
}

impl Target {
    pub fn new(
        py: Python<'_>,
        fd: i32,
        object: Py<PyAny>,
        mode: Mode,
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
            lines: LineSplitter::default(),
            outcome: Outcome::Receiving,
        })
    }

    /// Send `bytes` (with `last`, the block's final bytes), in bounded pieces: the bytes/str
    /// objects made for the target (and the decoder's copy) then stay small however far the
    /// target fell behind, instead of adding 2-3x the backlog. After the target's first exception
    /// nothing more is sent; with `last`, that exception is returned (once).
    pub fn deliver(&mut self, py: Python<'_>, bytes: &[u8], last: bool) -> Option<PyErr> {
        if let Outcome::Receiving = self.outcome {
            if let Err(err) = self.send_in_pieces(py, bytes, last) {
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
    pub fn deliver_now(&mut self, py: Python<'_>, bytes: &[u8]) -> PyResult<()> {
        match self.outcome {
            Outcome::Receiving if !bytes.is_empty() => self.send_in_pieces(py, bytes, false),
            _ => Ok(()),
        }
    }

    fn send_in_pieces(&mut self, py: Python<'_>, bytes: &[u8], last: bool) -> PyResult<()> {
        let pieces = bytes.len().div_ceil(DELIVERY_PIECE).max(1);
        for (index, piece) in bytes.chunks(DELIVERY_PIECE).chain([&[][..]]).take(pieces).enumerate() {
            self.send(py, piece, last && index + 1 == pieces)?;
        }
        Ok(())
    }

    fn send(&mut self, py: Python<'_>, bytes: &[u8], last: bool) -> PyResult<()> {
        let _delivering = Delivering::enter();
        let target = self.object.clone_ref(py).into_bound(py);
        let target = &target;
        match self.mode {
            Mode::Bytes { call } => {
                if !bytes.is_empty() {
                    call_or_write(target, call, PyBytes::new(py, bytes).as_any())?;
                }
            }
            Mode::Text { call } => {
                let text = self.decode(py, bytes, last)?;
                if !text.is_empty()? {
                    call_or_write(target, call, text.as_any())?;
                }
            }
            Mode::Logger { level } => {
                let text = self.decode(py, bytes, last)?;
                let mut lines = self.lines.push(&text.to_string_lossy());
                if last {
                    lines.extend(self.lines.finish());
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

    fn decode<'py>(&mut self, py: Python<'py>, bytes: &[u8], last: bool) -> PyResult<Bound<'py, PyString>> {
        let errors = self.errors.as_str();
        let decoded = match &mut self.decoder {
            Decoder::Utf8(carry) => {
                let mut complete = carry.push(bytes);
                if last {
                    complete.extend(carry.finish());
                }
                PyBytes::new(py, &complete).call_method1(names::DECODE.get(py), ("utf-8", errors))?
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
