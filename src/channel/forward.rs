//! Where a channel sends its bytes besides delivery (see the `channel` module docs).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::Channel;
use crate::fd;

/// Where a channel sends its bytes besides delivery.
pub enum Forward {
    /// An fd outside the library's pipes (a terminal, a file, the memory file behind a tee).
    /// `failed`: a write failed once; it is not tried again.
    Fd { fd: OwnedFd, failed: bool },
    /// The pipe of another channel: the bytes are handed to it in-process. `_open` is a write end
    /// of that pipe, held so that the channel does not reach EOF while bytes may still come.
    Channel { to: Arc<Channel>, _open: OwnedFd },
}

impl Forward {
    /// Send `data` on; an error of an fd target is returned once, and that target then skipped.
    pub(super) fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Forward::Fd { failed: true, .. } => Ok(()),
            Forward::Fd { fd, failed } => {
                let sent = fd::write_all_waiting(fd.as_raw_fd(), data);
                *failed = sent.is_err();
                sent
            }
            Forward::Channel { to, .. } => {
                to.take_in(data);
                Ok(())
            }
        }
    }
}
