//! Bytes waiting for delivery, with the time the reader took each piece from the pipe: a line's
//! time is when its last byte was read (write time, not delivery time, which lags while the GIL
//! is busy).

use std::time::SystemTime;

/// Bytes waiting for delivery, with the time each read took them from the pipe.
#[derive(Default)]
pub struct Stamped {
    pub bytes: Vec<u8>,
    /// (end offset in `bytes` of a read's bytes, when it was read), in order.
    pub reads: Vec<(usize, SystemTime)>,
}

impl Stamped {
    pub fn push(&mut self, data: &[u8], at: SystemTime) {
        self.bytes.extend_from_slice(data);
        self.reads.push((self.bytes.len(), at));
    }

    /// When the byte at `offset` was read (the last read's time past the end).
    pub fn read_at(&self, offset: usize) -> Option<SystemTime> {
        let index = self.reads.partition_point(|(end, _)| *end <= offset);
        self.reads.get(index).or(self.reads.last()).map(|(_, at)| *at)
    }

    /// Append `other` after these bytes.
    pub fn extend(&mut self, other: Stamped) {
        let base = self.bytes.len();
        self.bytes.extend(other.bytes);
        self.reads
            .extend(other.reads.into_iter().map(|(end, at)| (base + end, at)));
    }
}
