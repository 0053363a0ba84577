//! Bytes waiting for delivery, with the time the reader took each piece from the pipe: a line's
//! time is when its last byte was read (write time, not delivery time, which lags while the GIL
//! is busy), to the millisecond.

use std::time::{Duration, SystemTime};

/// Reads this close together share the first one's time: a backlog of tiny reads (a target that
/// lags behind a writer of short lines) then costs one time per millisecond, not one per read.
const SAME_TIME: Duration = Duration::from_millis(1);
/// ...as long as their bytes stay a read's size: a target given times gets each read apart.
const SAME_TIME_BYTES: usize = 64 << 10;

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
        let len = self.bytes.len();
        let start = self.reads.len().checked_sub(2).map_or(0, |before| self.reads[before].0);
        if let Some((end, first)) = self.reads.last_mut() {
            let close = at.duration_since(*first).is_ok_and(|since| since < SAME_TIME);
            if close && len - start <= SAME_TIME_BYTES {
                *end = len;
                return;
            }
        }
        self.reads.push((len, at));
    }

    /// Append `other` after these bytes.
    pub fn extend(&mut self, other: Stamped) {
        let base = self.bytes.len();
        self.bytes.extend(other.bytes);
        self.reads
            .extend(other.reads.into_iter().map(|(end, at)| (base + end, at)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_a_millisecond_share_a_time_up_to_a_reads_size() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut stamped = Stamped::default();
        stamped.push(b"a", t0);
        stamped.push(b"b", t0 + Duration::from_micros(500));
        stamped.push(b"c", t0 + Duration::from_millis(2));
        stamped.push(&vec![b'd'; SAME_TIME_BYTES], t0 + Duration::from_millis(2));
        assert_eq!(
            stamped.reads,
            [
                (2, t0),
                (3, t0 + Duration::from_millis(2)),
                (3 + SAME_TIME_BYTES, t0 + Duration::from_millis(2))
            ]
        );
    }
}
