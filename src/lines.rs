//! Cutting live output into lines, for targets that take one line per call (loggers, and
//! callables with `lines=True`). A line is handed over without its `\n`, and without a `\r`
//! right before it (CRLF), with the time its last byte was read. For callables memory stays
//! bounded: a line that grows past `LINE_MAX` bytes without a newline is handed over in parts of
//! that size (at a character boundary for text), the last part ending where the line ends. A
//! logger gets one record per line, however long.

use std::time::SystemTime;

/// The longest line (in bytes) held back waiting for its newline.
pub const LINE_MAX: usize = 1 << 20;

/// A complete line (or part of a long one), and when its last byte was read.
pub type Line = (Vec<u8>, SystemTime);

/// Holds back a partial last line between pieces.
pub struct LineCutter {
    /// The longest line held back (`LINE_MAX`, or unbounded).
    max: usize,
    partial: Vec<u8>,
    /// When the last byte of `partial` was read.
    at: Option<SystemTime>,
}

impl LineCutter {
    /// Long lines come in parts of at most `LINE_MAX` bytes.
    pub fn bounded() -> Self {
        LineCutter {
            max: LINE_MAX,
            partial: Vec::new(),
            at: None,
        }
    }

    /// Every line comes whole.
    pub fn unbounded() -> Self {
        LineCutter {
            max: usize::MAX,
            ..Self::bounded()
        }
    }

    /// The lines `data` (read at `at`) completes. `text`: `data` is UTF-8, and a long line is
    /// cut only between characters.
    pub fn push(&mut self, data: &[u8], at: SystemTime, text: bool) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut rest = data;
        loop {
            let newline = rest.iter().position(|&b| b == b'\n');
            let chunk = &rest[..newline.unwrap_or(rest.len())];
            self.partial.extend_from_slice(chunk);
            if !chunk.is_empty() {
                self.at = Some(at);
            }
            self.cut_long(text, &mut lines);
            let Some(end) = newline else {
                return lines;
            };
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push((line, at));
            self.at = None;
            rest = &rest[end + 1..];
        }
    }

    /// Hand over the front of a line longer than the limit as a part of its own.
    fn cut_long(&mut self, text: bool, lines: &mut Vec<Line>) {
        let Some(at) = self.at else { return };
        while self.partial.len() > self.max {
            let mut cut = self.max;
            while text && cut > 1 && self.partial[cut] & 0xC0 == 0x80 {
                cut -= 1; // a UTF-8 continuation byte: the character starts before
            }
            let tail = self.partial.split_off(cut);
            lines.push((std::mem::replace(&mut self.partial, tail), at));
        }
    }

    /// At the end of the block: the partial last line, if any.
    pub fn finish(&mut self) -> Option<Line> {
        let at = self.at.take()?;
        (!self.partial.is_empty()).then(|| (std::mem::take(&mut self.partial), at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn texts(lines: &[Line]) -> Vec<&[u8]> {
        lines.iter().map(|(line, _)| line.as_slice()).collect()
    }

    #[test]
    fn lines_split_across_pieces_without_their_ending() {
        let t0 = SystemTime::UNIX_EPOCH;
        let t1 = t0 + Duration::from_secs(1);
        let mut cutter = LineCutter::bounded();
        assert_eq!(texts(&cutter.push(b"one\r\ntw", t0, true)), [b"one".as_slice()]);
        let lines = cutter.push(b"o\n\nthr", t1, true);
        assert_eq!(texts(&lines), [b"two".as_slice(), b""]);
        assert_eq!(lines[0].1, t1, "a line's time is its last byte's");
        assert!(cutter.push(b"ee\r", t0, true).is_empty());
        assert_eq!(cutter.finish(), Some((b"three\r".to_vec(), t0)));
        assert_eq!(cutter.finish(), None);
    }

    #[test]
    fn a_long_line_comes_in_bounded_parts_whole_characters_kept() {
        let mut cutter = LineCutter::bounded();
        let mut data = vec![b'a'; LINE_MAX - 1];
        data.extend("é".as_bytes()); // straddles the limit
        data.extend(b"z\n");
        let lines = cutter.push(&data, SystemTime::UNIX_EPOCH, true);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0.len(), LINE_MAX - 1);
        assert_eq!(lines[1].0, "éz".as_bytes());
        assert_eq!(
            texts(&cutter.push(&vec![b'c'; LINE_MAX], SystemTime::UNIX_EPOCH, false)),
            Vec::<&[u8]>::new()
        );
        assert_eq!(
            cutter.finish().map(|l| l.0.len()),
            Some(LINE_MAX),
            "at the limit, not past it"
        );
        let lines = cutter.push(&vec![b'b'; 2 * LINE_MAX + 3], SystemTime::UNIX_EPOCH, false);
        assert_eq!(
            lines.iter().map(|l| l.0.len()).collect::<Vec<_>>(),
            [LINE_MAX, LINE_MAX]
        );
        assert_eq!(cutter.finish().map(|l| l.0.len()), Some(3));
        let mut whole = LineCutter::unbounded();
        assert!(whole
            .push(&vec![b'd'; 2 * LINE_MAX], SystemTime::UNIX_EPOCH, false)
            .is_empty());
        assert_eq!(whole.finish().map(|l| l.0.len()), Some(2 * LINE_MAX));
    }
}
