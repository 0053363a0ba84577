//! The process-wide redirect stacks, one per fd, and the switch itself.
//!
//! Enter: flush, save the fd, open the sink, `dup2` it onto the fd, push — all or nothing.
//! Exit: flush, `dup2` the saved copy back (or close the fd if it was closed), pop.
//! An entry may leave out of order (two threads overlapping): the entry above it then inherits
//! its saved fd, so the fd ends where it would have had the blocks been properly nested.
//! A redirect made outside this stack (another library's `dup2`) owns the fd while it lasts: an
//! entry that ends while the fd points somewhere else than its sink leaves the fd alone.
//! A follower (`2>&1`) shares one entry's sink; when that entry ends first, the follower shares
//! what the entry had saved, as if the followed entry had never been there (see `refollow`).

mod sink;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crate::error::{Error, Subject};
use crate::{crash, fd, flush, fork, locks};
use sink::open_sink;
pub use sink::{open_target, Sink};

/// What `enter` hands back.
#[derive(Debug)]
pub struct Entered {
    pub id: u64,
    /// The memory file, for `Sink::Capture`; the opened file, for `Sink::Path` (to check at exit
    /// that it still exists).
    pub capture: Option<OwnedFd>,
    /// With `keep_original`: a copy of where the fd pointed before (for tee); `None` if it was closed.
    pub original: Option<OwnedFd>,
}

/// What `exit` reports.
#[derive(Debug, Default)]
pub struct Exited {
    /// The entry was inherited through `fork()`: its fds were restored, but its sink belongs to
    /// the parent and must not be touched (no read, no truncate).
    pub inherited: bool,
    /// A `Sink::Follow` entry was still following the redirect that just ended; it now follows
    /// the restored fd.
    pub orphaned_followers: bool,
    /// With `keep_restored`: a copy of where the fd points now (for late output).
    pub restored: Option<OwnedFd>,
    /// libc's buffer for the fd could not be written into the sink (a full disk, `EFBIG`).
    pub flush_error: Option<std::io::Error>,
}

struct Entry {
    id: u64,
    /// The fork generation the entry was made in.
    generation: u64,
    /// The fd as it was before this entry; `None` when it was closed.
    saved: Option<OwnedFd>,
    /// For `Sink::Follow`: the fd followed and the id of its entry that was current at enter.
    follows: Option<(RawFd, Option<u64>)>,
    /// What the fd pointed at once this entry switched it (device, inode).
    installed: Option<(u64, u64)>,
}

struct Stack {
    fd: RawFd,
    entries: Vec<Entry>,
}

pub(crate) struct Stacks(Vec<Stack>);

static STACKS: Mutex<Stacks> = Mutex::new(Stacks(Vec::new()));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn lock_stacks() -> MutexGuard<'static, Stacks> {
    locks::lock(&STACKS)
}

impl Stacks {
    fn stack(&mut self, fd: RawFd) -> &mut Vec<Entry> {
        let index = self.0.iter().position(|s| s.fd == fd).unwrap_or_else(|| {
            self.0.push(Stack {
                fd,
                entries: Vec::new(),
            });
            self.0.len() - 1
        });
        &mut self.0[index].entries
    }

    /// For a `Follow` sink of `fd`'s entry `entry` (its newest when `None`): the entry followed,
    /// and, when that is not the newest, its sink, which the entry above it saved (`fd` itself
    /// points at the newest entry's sink). Borrows a saved fd: use it before the stacks change.
    fn followed(&mut self, fd: RawFd, entry: Option<u64>) -> Result<(Option<u64>, Option<Sink<'static>>), Error> {
        let stack = self.stack(fd);
        let Some(entry) = entry else {
            return Ok((stack.last().map(|e| e.id), None));
        };
        let index = stack.iter().position(|e| e.id == entry).ok_or(Error::NotActive)?;
        let Some(above) = stack.get(index + 1) else {
            return Ok((Some(entry), None));
        };
        match &above.saved {
            Some(sink) => Ok((Some(entry), Some(Sink::Fd(sink.as_raw_fd())))),
            // The newer entry found `fd` closed: the followed entry's sink is gone (closed by
            // someone else), as `2>&1` onto a closed fd 1 fails.
            None => Err(Error::os(
                std::io::Error::from_raw_os_error(libc::EBADF),
                Subject::Fd(fd),
            )),
        }
    }
}

/// Point `fd` at `sink`. On any failure nothing has changed.
pub fn enter(fd: RawFd, sink: &Sink<'_>, keep_original: bool) -> Result<Entered, Error> {
    flush::line_buffer_terminal_stdout();
    flush::flush_native();
    let mut stacks = lock_stacks();
    let saved = fd::save(fd)?;
    let original = match (&saved, keep_original) {
        (Some(saved), true) => Some(fd::dup_above_stdio(saved.as_raw_fd())?),
        _ => None,
    };
    let (follows, followed_sink) = match sink {
        Sink::Follow { fd: target, entry } => {
            let (followed, sink) = stacks.followed(*target, *entry)?;
            (Some((*target, followed)), sink)
        }
        _ => (None, None),
    };
    let (opened, source) = open_sink(fd, followed_sink.as_ref().unwrap_or(sink))?;
    fd::dup2(source, fd)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let generation = fork::generation();
    crash::track(id, fd, saved.as_ref(), generation);
    stacks.stack(fd).push(Entry {
        id,
        generation,
        saved,
        follows,
        installed: fd::identity(fd),
    });
    // /dev/null's fd is now fd `fd` itself; the memory file is read back, a path checked.
    let capture = opened.filter(|_| matches!(sink, Sink::Capture | Sink::Path(_)));
    Ok(Entered { id, capture, original })
}

/// Restore `fd` from the entry `id`. Never leaves a dead fd: the fd points where it did before
/// the entry, or, when the entry is not the newest, the newer entry takes over its saved copy.
pub fn exit(fd: RawFd, id: u64, keep_restored: bool) -> Result<Exited, Error> {
    let flush_error = flush::flush_native_checked(fd).err();
    let mut stacks = lock_stacks();
    let stack = stacks.stack(fd);
    let index = stack.iter().position(|e| e.id == id).ok_or(Error::NotActive)?;
    let entry = stack.remove(index);
    // What the entry's place in the stack resolves to once it is gone: the entry below it, whose
    // sink (or the fd before any entry) is the one it saved. Its followers follow that now.
    let below = index.checked_sub(1).map(|below| stack[below].id);
    let saved = entry.saved.as_ref().map(AsRawFd::as_raw_fd);
    let inherited = entry.generation != fork::generation();
    // Where this block's output goes from now on: late output is sent there. Best effort (a full
    // fd table only costs the late output): the restore below must happen whatever this does.
    let restored = match (&entry.saved, keep_restored) {
        (Some(saved), true) => fd::dup_above_stdio(saved.as_raw_fd()).ok(),
        _ => None,
    };
    let mut result = Ok(());
    if index == stack.len() {
        if moved_by_someone_else(fd, entry.installed) {
            // Another library redirected the fd after this entry and has not restored it yet (or
            // restored it to where it pointed before this entry): restoring now would undo its
            // redirect, and its own restore would then bring back this entry's finished sink.
        } else if let Some(saved) = &entry.saved {
            result = fd::dup2(saved.as_raw_fd(), fd);
        } else {
            fd::close(fd);
        }
    } else {
        // The newer entry saved a copy of *our* sink; it must restore what we saved instead.
        crash::retarget(stack[index].id, entry.saved.as_ref());
        stack[index].saved = entry.saved;
    }
    crash::untrack(id);
    // `saved` is still open: owned by `entry`, or by the newer entry that took it over.
    let orphaned_followers = refollow(&mut stacks, (fd, id), below, saved)?;
    result?;
    Ok(Exited {
        inherited,
        orphaned_followers,
        restored,
        flush_error,
    })
}

/// A copy of where `fd` pointed before the oldest entry still on its stack (inherited ones
/// included: a forked child shares its parent's), or of `fd` itself when none is; `None` when
/// that was closed.
pub fn original(fd: RawFd) -> Result<Option<OwnedFd>, Error> {
    let mut stacks = lock_stacks();
    let source = match stacks.stack(fd).first() {
        Some(bottom) => match &bottom.saved {
            Some(saved) => saved.as_raw_fd(),
            None => return Ok(None),
        },
        None => fd,
    };
    Ok(fd::save(source)?)
}

/// Drop the ids of entries that have ended, on any fd. Never waits: when the stacks are busy
/// (another thread switching, or a `fork()` in progress) nothing is dropped this time.
pub fn retain_active(ids: &mut Vec<u64>) {
    let stacks = match STACKS.try_lock() {
        Ok(stacks) => stacks,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    ids.retain(|id| stacks.0.iter().any(|s| s.entries.iter().any(|e| e.id == *id)));
}

/// `fd` is open and points somewhere other than where the entry put it. A closed fd is not
/// someone else's redirect: it is restored as usual.
fn moved_by_someone_else(fd: RawFd, installed: Option<(u64, u64)>) -> bool {
    match (fd::identity(fd), installed) {
        (Some(now), Some(installed)) => now != installed,
        _ => false,
    }
}

/// Entries elsewhere that follow `followed` (`(fd, id)`: a `2>&1` made while that entry was
/// current) point at its sink, which is going away: they follow the entry `below` it now, and
/// share what it had `saved` (`None`: `fd` was closed before it, so the follower is closed too).
/// Not `fd`'s newest entry: one entered later, by another thread or after the follower, is no
/// business of the follower's. A follower with entries of its own above it is re-pointed in the
/// copy the entry right above it saved, and records what its fd will point at once it is on top
/// again, so that its own exit still knows the fd for its own redirect and restores it.
fn refollow(
    stacks: &mut Stacks,
    followed: (RawFd, u64),
    below: Option<u64>,
    saved: Option<RawFd>,
) -> Result<bool, Error> {
    let (fd, id) = followed;
    let mut found = false;
    for stack in &mut stacks.0 {
        let follower_fd = stack.fd;
        for index in 0..stack.entries.len() {
            if stack.entries[index].follows != Some((fd, Some(id))) {
                continue;
            }
            found = true;
            if index + 1 == stack.entries.len() {
                match saved {
                    Some(saved) => fd::dup2(saved, follower_fd)?,
                    None => fd::close(follower_fd),
                }
                stack.entries[index].installed = fd::identity(follower_fd);
            } else {
                let copy = match saved {
                    Some(saved) => fd::save(saved)?,
                    None => None,
                };
                stack.entries[index].installed = copy.as_ref().and_then(|copy| fd::identity(copy.as_raw_fd()));
                let above = &mut stack.entries[index + 1];
                crash::retarget(above.id, copy.as_ref());
                above.saved = copy;
            }
            stack.entries[index].follows = Some((fd, below));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
