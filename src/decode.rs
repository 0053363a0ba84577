//! Splitting a byte stream for incremental text delivery, without Python: a UTF-8 character cut
//! by a read stays whole (carried to the next piece). Lines are cut in `crate::lines`.

/// The length of the prefix of `bytes` that can be decoded now: everything except a trailing
/// *incomplete but still valid* UTF-8 sequence, which must wait for its remaining bytes. An
/// invalid tail is not held back (the decoder replaces it at once), exactly as Python's
/// incremental UTF-8 decoder does, so decoding piece by piece equals decoding the whole.
pub fn utf8_complete_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let start = len - back;
        let lead = bytes[start];
        if lead & 0xC0 == 0x80 {
            continue; // a continuation byte: keep looking for the lead
        }
        let needed = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return len, // ASCII or an invalid lead: nothing to wait for
        };
        if back >= needed || !valid_prefix(&bytes[start..]) {
            return len;
        }
        return start;
    }
    len
}

/// Whether `seq` (a lead byte and some continuation bytes) can still become a valid character.
fn valid_prefix(seq: &[u8]) -> bool {
    let Some(&second) = seq.get(1) else { return true };
    let second_ok = match seq[0] {
        0xE0 => (0xA0..=0xBF).contains(&second),
        0xED => (0x80..=0x9F).contains(&second),
        0xF0 => (0x90..=0xBF).contains(&second),
        0xF4 => (0x80..=0x8F).contains(&second),
        _ => second & 0xC0 == 0x80,
    };
    second_ok && seq[2..].iter().all(|b| b & 0xC0 == 0x80)
}

/// Whether `encoding` is one of `names` (lower case, `-` separated), as Python spells codec
/// names loosely: `UTF_8`, `utf8`, `Latin-1`.
pub fn encoding_is(encoding: &str, names: &[&str]) -> bool {
    // Byte by byte, without allocating: this runs at every enter and exit of a block.
    let normal = |b: u8| if b == b'_' { b'-' } else { b.to_ascii_lowercase() };
    names
        .iter()
        .any(|name| name.len() == encoding.len() && encoding.bytes().map(normal).eq(name.bytes()))
}

pub const UTF8_NAMES: &[&str] = &["utf-8", "utf8"];

/// Holds back an incomplete UTF-8 tail between pieces.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    carry: Vec<u8>,
}

impl Utf8Carry {
    /// The bytes that can be decoded now (the carried tail first), keeping a new incomplete tail.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(bytes);
        let complete = utf8_complete_len(&joined);
        self.carry = joined.split_off(complete);
        joined
    }

    /// At the end of the stream: whatever is still held back.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_names_match_loosely() {
        for name in ["utf-8", "UTF-8", "utf_8", "Utf8", "UTF8"] {
            assert!(encoding_is(name, UTF8_NAMES), "{name}");
        }
        for name in ["utf-16", "utf-8-sig", "utf", "", "utf-8 ", "ütf-8"] {
            assert!(!encoding_is(name, UTF8_NAMES), "{name}");
        }
    }

    #[test]
    fn every_cut_of_multibyte_characters_reassembles() {
        let text = "aé€😀z";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut carry = Utf8Carry::default();
            let mut out = carry.push(&bytes[..cut]);
            assert!(std::str::from_utf8(&out).is_ok(), "cut at {cut}");
            out.extend(carry.push(&bytes[cut..]));
            out.extend(carry.finish());
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn invalid_tails_are_not_held_back() {
        assert_eq!(utf8_complete_len(b"ab\xff"), 3);
        assert_eq!(utf8_complete_len(b"ab\xe0\x80"), 4); // E0 80 can never be valid
        assert_eq!(utf8_complete_len(b"ab\xed\xa0"), 4); // a surrogate
        assert_eq!(utf8_complete_len(b"ab\xf4\x90"), 4); // above U+10FFFF
        assert_eq!(utf8_complete_len(b"ab\x80\x80\x80"), 5);
        assert_eq!(utf8_complete_len(b"ab\xe2\x82"), 2);
        assert_eq!(utf8_complete_len(b"ab\xf0\x9f\x98"), 2);
        assert_eq!(utf8_complete_len(b"\xf0\x9f\x98\x80"), 4);
    }
}
