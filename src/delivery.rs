//! The delivery thread's life outside Python: its queue, and its wait for work. It delivers live
//! output to Python targets (the binding's `live` module gives it its body, which attaches to
//! Python); this module knows only channels.
//!
//! While idle the thread polls the pipes of the open live blocks itself, so a line written to an
//! idle process reaches its target after a single thread wake-up (see `crate::handover`). The
//! reader polls the same pipes without ever taking the GIL: while the delivery thread waits for
//! the GIL or runs a target, the reader keeps draining, so a writer that holds the GIL never
//! blocks on a full pipe, and queues the block's channel here.

use crate::locks;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::channel::Channel;
use crate::handover;
use crate::poll::{self, Poller};
use crate::worker::Worker;

/// The delivery thread's body: given the read end of its wake-up pipe, it never returns.
pub type Body = fn(&OwnedFd);

struct Queue {
    thread: Worker,
    body: Option<Body>,
    /// Channels with bytes for delivery, each once, oldest first.
    jobs: VecDeque<Arc<Channel>>,
    /// The channels of this process's open live blocks: polled while the thread is idle.
    watched: Vec<Arc<Channel>>,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    thread: Worker::new(),
    body: None,
    jobs: VecDeque::new(),
    watched: Vec::new(),
});

/// Lock without ever letting go of the GIL, attached or not: the sections are short and never
/// run Python code. The delivery thread takes this lock while it is the one polling the live
/// pipes: if an attached thread held it while waiting for the GIL, and the GIL's holder were
/// writing into a full pipe, nothing would drain it. Taken while a channel's lock is held (a
/// channel handing bytes over schedules the receiver), so never take a channel's lock under it.
fn lock_queue() -> MutexGuard<'static, Queue> {
    locks::lock(&QUEUE)
}

/// For the fork handler: the delivery thread holds this lock without the GIL.
pub fn lock_for_fork() -> Box<dyn std::any::Any> {
    Box::new(lock_queue())
}

/// Start the delivery thread with `body` on first use, and again in a forked child (where the
/// parent's thread does not exist).
pub fn start(body: Body) -> io::Result<()> {
    let mut queue = lock_queue();
    queue.body = Some(body);
    start_locked(&mut queue)
}

fn start_locked(queue: &mut Queue) -> io::Result<()> {
    let Some(body) = queue.body else {
        return Err(io::Error::other("the delivery thread has no body"));
    };
    let Queue {
        thread, jobs, watched, ..
    } = queue;
    thread.ensure("fdredirect-delivery", || {
        jobs.clear();
        // The parent's: never dropped here (their locks may have been held at the fork).
        std::mem::forget(std::mem::take(watched));
        Ok(body)
    })?;
    Ok(())
}

/// Called (by the reader, or a channel handing bytes over) after bytes were added to `channel`.
pub fn schedule(channel: &Arc<Channel>) {
    let mut queue = lock_queue();
    if queue.jobs.iter().any(|job| Arc::ptr_eq(job, channel)) {
        return; // already waiting for the delivery thread
    }
    // Without a thread, the block's exit still delivers everything.
    if start_locked(&mut queue).is_ok() {
        queue.jobs.push_back(Arc::clone(channel));
        queue.thread.wake();
    }
}

/// The block of `channel` is open: the delivery thread polls its pipe from now on. Only then
/// may the reader leave the pipe to it.
pub fn watch(channel: &Arc<Channel>) {
    lock_queue().watched.push(Arc::clone(channel));
    // Not under the queue's lock: a channel handing bytes to another (a tee's copy into an
    // enclosing block's pipe) schedules that one while holding its own lock.
    channel.watch();
    lock_queue().thread.wake();
}

/// The block of `channel` has ended (or is a forked parent's): no longer polled here.
pub fn unwatch(channel: &Arc<Channel>) {
    lock_queue().watched.retain(|watched| !Arc::ptr_eq(watched, channel));
}

/// Wait, detached, until some channels have bytes to deliver: channels the reader queued, or
/// channels whose pipe this thread polled and drained itself.
pub fn wait_for_work(wake: &OwnedFd) -> Vec<Arc<Channel>> {
    let mut polling = false;
    loop {
        let watched = {
            let mut queue = lock_queue();
            if !queue.jobs.is_empty() {
                let jobs = queue.jobs.drain(..).collect();
                drop(queue);
                if polling {
                    handover::delivery_leaves(0);
                }
                return jobs;
            }
            queue.watched.clone()
        };
        if !polling {
            handover::delivery_polls();
            polling = true;
        }
        let filled = poll::turn(Poller::Delivery, &[wake.as_raw_fd()], -1, &watched, Channel::read_fd);
        if !filled.is_empty() {
            handover::delivery_leaves(filled.iter().map(|(_, added)| added).sum());
            return filled.into_iter().map(|(channel, _)| channel).collect();
        }
    }
}
