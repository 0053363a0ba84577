//! A thread of the library that is started on first use and again in every forked child (the
//! parent's threads do not exist there), and that sleeps in `poll` until its wake-up pipe is
//! poked. The reader (`crate::reader`) and the delivery thread (`crate::delivery`) are two.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::fd;

/// The thread of one fork generation and the write end of its wake-up pipe. Lives under the lock
/// of whatever the thread serves.
pub struct Worker {
    /// The fork generation the thread was started in, and the write end of its wake-up pipe.
    running: Option<(u64, OwnedFd)>,
}

impl Worker {
    pub const fn new() -> Self {
        Worker { running: None }
    }

    /// Whether the thread runs in this process (not only in a forked parent).
    pub fn is_ours(&self) -> bool {
        matches!(&self.running, Some((generation, _)) if *generation == crate::fork::generation())
    }

    /// Start the thread unless this process has it already. `make_run` is called only to start
    /// it (first use, or a forked child): it forgets what a parent's thread served and returns
    /// the thread's body, which gets the read end of the wake-up pipe. Returns whether the thread
    /// was started now.
    pub fn ensure<F>(&mut self, name: &str, make_run: impl FnOnce() -> io::Result<F>) -> io::Result<bool>
    where
        F: FnOnce(&OwnedFd) + Send + 'static,
    {
        if self.is_ours() {
            return Ok(false);
        }
        let (wake_read, wake_write) = fd::pipe_nonblocking()?;
        let run = make_run()?;
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&wake_read))?;
        self.running = Some((crate::fork::generation(), wake_write));
        Ok(true)
    }

    /// Wake the thread from its poll (a forked parent's pipe: nobody reads it, harmless).
    pub fn wake(&self) {
        if let Some((_, wake)) = &self.running {
            fd::poke(wake.as_raw_fd());
        }
    }
}
