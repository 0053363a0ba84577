//! A capture read back straight into a `str`, when its bytes are ASCII and its encoding decodes
//! ASCII to itself (UTF-8, ASCII, Latin-1): no `bytes` made first and decoded after. That second
//! copy cost 2× the memory and a third of the time of a large capture read back as text. Valid
//! non-ASCII UTF-8 is decoded at once from what was read, so no `bytes` stays beside the text.
//!
//! A compact ASCII `str` stores its characters as one byte each, so the memory file is read into
//! a new, not yet shared `str` of that many characters (`PyUnicode_New`), releasing the file's
//! pages behind the copy as the bytes path does. Neither `PyUnicode_New` nor writing a new `str`'s
//! characters is in the limited API: both are used only after checking, on the object made, that
//! the bytes written are the characters read back (a runtime whose `str` stored them elsewhere
//! takes the `bytes` path).

use std::ffi::c_char;
use std::os::fd::OwnedFd;

use pyo3::exceptions::PyUnicodeDecodeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::binding::errors::io_error;
use crate::decode::{encoding_is, UTF8_NAMES};
use crate::memfile;

extern "C" {
    // CPython's full API (stable since 3.3), not the limited one: see the module docs.
    fn PyUnicode_New(size: ffi::Py_ssize_t, maxchar: u32) -> *mut ffi::PyObject;
    // In the limited API from 3.10 on; exported by every CPython 3.
    fn PyUnicode_AsUTF8AndSize(unicode: *mut ffi::PyObject, size: *mut ffi::Py_ssize_t) -> *const c_char;
}

/// Encodings that decode every ASCII byte to the same character, whatever the error handler.
const ASCII_SUPERSETS: &[&str] = &["utf-8", "utf8", "ascii", "us-ascii", "latin-1", "latin1", "iso-8859-1"];

/// Below this, decoding a copy costs little: small captures keep the plain `bytes` path (and
/// tiny `str`s stay the interpreter's own, such as its one-character singletons).
const MIN_TEXT: usize = 64 << 10;

/// How a capture is read back (`read_text`), if not into `bytes`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AsText {
    /// ASCII straight into a `str`; anything else into `bytes`.
    Ascii,
    /// Also valid non-ASCII UTF-8, decoded at once into a `str` (the bytes are its encoding).
    Utf8,
}

/// How a capture of `len` bytes in `encoding` is read back: `None` for `bytes`.
pub fn as_text(encoding: Option<&str>, len: usize) -> Option<AsText> {
    let encoding = encoding.filter(|e| len >= MIN_TEXT && encoding_is(e, ASCII_SUPERSETS))?;
    Some(if encoding_is(encoding, UTF8_NAMES) {
        AsText::Utf8
    } else {
        AsText::Ascii
    })
}

/// What a capture read back holds.
pub enum ReadBack {
    /// Text whose UTF-8 encoding is exactly the bytes captured (ASCII, or valid UTF-8).
    Text(Py<PyString>),
    Bytes(Py<PyBytes>),
}

impl ReadBack {
    /// The bytes captured: for text, its UTF-8 encoding (a new copy each time; exact, see above).
    pub fn bytes(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        match self {
            ReadBack::Bytes(bytes) => Ok(bytes.clone_ref(py)),
            ReadBack::Text(text) => Ok(text.bind(py).encode_utf8()?.unbind()),
        }
    }
}

/// Read the first `len` bytes of `memfd` (releasing its pages) into a `str` if they are ASCII
/// (with `AsText::Utf8`: or valid UTF-8), else into `bytes`.
pub fn read_text(py: Python<'_>, memfd: &OwnedFd, len: usize, how: AsText) -> PyResult<ReadBack> {
    let Some((text, buf)) = new_ascii(py, len)? else {
        let bytes = super::new_bytes_filled(py, len, |buf| memfile::read_and_release(memfd, buf))?;
        return Ok(ReadBack::Bytes(bytes.unbind()));
    };
    let filled = py.detach(|| memfile::read_and_release(memfd, buf)).map_err(io_error)?;
    let read = &buf[..filled];
    // A file that shrank under us (someone truncated the fd) keeps only what was read: rare
    // enough for the `bytes` path.
    if filled == len && py.detach(|| read.is_ascii()) && same_characters(&text, read) {
        return Ok(ReadBack::Text(text.unbind()));
    }
    // Decoded now, as `getvalue` would later, from the bytes already read: no `bytes` copy kept
    // beside the text. Invalid UTF-8 needs the block's error handler at `getvalue`: `bytes`.
    if how == AsText::Utf8 {
        if let Some(decoded) = decode_utf8_strict(py, read)? {
            return Ok(ReadBack::Text(decoded.unbind()));
        }
    }
    let bytes = super::new_bytes_filled(py, filled, |copy| {
        copy.copy_from_slice(read);
        Ok(filled)
    })?;
    Ok(ReadBack::Bytes(bytes.unbind()))
}

/// `data` decoded as strict UTF-8, or `None` if it is not valid UTF-8.
fn decode_utf8_strict<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Option<Bound<'py, PyString>>> {
    let Ok(len) = ffi::Py_ssize_t::try_from(data.len()) else {
        return Ok(None);
    };
    // SAFETY: `data` is valid for `len` bytes; a NULL error handler is "strict".
    let raw = unsafe { ffi::PyUnicode_DecodeUTF8(data.as_ptr().cast(), len, std::ptr::null()) };
    // SAFETY: `raw` is a new reference, or NULL with an exception set.
    match unsafe { Bound::from_owned_ptr_or_err(py, raw) } {
        Ok(text) => Ok(Some(text.cast_into::<PyString>()?)),
        Err(err) if err.is_instance_of::<PyUnicodeDecodeError>(py) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A new `str` of `len` (at least `MIN_TEXT`) ASCII characters, and its characters' bytes to
/// fill: `None` where the runtime does not hand them out.
fn new_ascii(py: Python<'_>, len: usize) -> PyResult<Option<(Bound<'_, PyString>, &mut [u8])>> {
    let Ok(size) = ffi::Py_ssize_t::try_from(len) else {
        return Ok(None);
    };
    // SAFETY: asks CPython for a new compact ASCII `str` of `size` characters (uninitialised).
    let raw = unsafe { PyUnicode_New(size, 127) };
    // SAFETY: `raw` is a new reference, or NULL with an exception set.
    let text = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?.cast_into::<PyString>()?;
    let mut got: ffi::Py_ssize_t = 0;
    // SAFETY: `text` is a valid `str`; for a compact ASCII one CPython returns its own characters.
    let data = unsafe { PyUnicode_AsUTF8AndSize(text.as_ptr(), &raw mut got) };
    if data.is_null() || got != size {
        if data.is_null() {
            PyErr::take(py);
        }
        return Ok(None);
    }
    // SAFETY: `data` points at `len` bytes owned by `text`, which is new and not shared with any
    // other code yet, and stays alive (the caller holds it) while the slice is used.
    let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>().cast_mut(), len) };
    Ok(Some((text, buf)))
}

/// Whether the characters of `text` are the bytes written into `buf` (checked at both ends and
/// the middle: a runtime that handed out a copy would show the uninitialised characters).
fn same_characters(text: &Bound<'_, PyString>, buf: &[u8]) -> bool {
    let Some(last) = buf.len().checked_sub(1) else {
        return true;
    };
    [0, last / 2, last].into_iter().all(|index| {
        let Ok(at) = ffi::Py_ssize_t::try_from(index) else {
            return false;
        };
        // SAFETY: `text` is a valid `str` and `index` lies inside it.
        let char = unsafe { ffi::PyUnicode_ReadChar(text.as_ptr(), at) };
        char == u32::from(buf[index])
    })
}
