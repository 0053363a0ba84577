//! Unit tests of the stacks: nesting, out-of-order exits, followers, forks.

use super::*;
use crate::error::Subject;
use crate::fd::testing::unused_fd;
use crate::memfile;

/// The stacks are process-wide and fd numbers are reused: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    locks::lock(&SERIAL)
}

/// The unit tests redirect a private fd, never 1 or 2 (cargo test's own output goes there).
fn private_fd() -> (OwnedFd, RawFd) {
    let fd = fd::open_devnull().unwrap();
    let raw = fd.as_raw_fd();
    (fd, raw)
}

fn write(fd: RawFd, data: &[u8]) {
    let mut written = 0;
    fd::write_all(fd, data, &mut written).unwrap();
}

fn contents(fd: &OwnedFd) -> Vec<u8> {
    let mut buf = vec![0; memfile::size(fd).unwrap()];
    memfile::read_at(fd, &mut buf, 0).unwrap();
    buf
}

#[test]
fn capture_then_restore() {
    let _serial = serial();
    let (_keep, fd) = private_fd();
    let outer = enter(fd, &Sink::Capture, false).unwrap();
    write(fd, b"inside");
    let exited = exit(fd, outer.id, false).unwrap();
    assert!(!exited.inherited && !exited.orphaned_followers && exited.restored.is_none());
    write(fd, b"after");
    assert_eq!(contents(outer.capture.as_ref().unwrap()), b"inside");
    assert!(matches!(exit(fd, outer.id, false), Err(Error::NotActive)));
}

#[test]
fn retain_active_drops_ended_entries_only() {
    let _serial = serial();
    let (_keep, fd) = private_fd();
    let ended = enter(fd, &Sink::DevNull, false).unwrap();
    exit(fd, ended.id, false).unwrap();
    let open = enter(fd, &Sink::DevNull, false).unwrap();
    let mut ids = vec![ended.id, open.id, u64::MAX];
    retain_active(&mut ids);
    assert_eq!(ids, [open.id]);
    exit(fd, open.id, false).unwrap();
}

#[test]
fn out_of_order_exit_relinks() {
    let _serial = serial();
    let (_keep, fd) = private_fd();
    let first = enter(fd, &Sink::Capture, false).unwrap();
    write(fd, b"1");
    let second = enter(fd, &Sink::Capture, false).unwrap();
    write(fd, b"2");
    exit(fd, first.id, false).unwrap();
    write(fd, b"still second");
    exit(fd, second.id, false).unwrap();
    write(fd, b"to devnull");
    assert_eq!(contents(first.capture.as_ref().unwrap()), b"1");
    assert_eq!(contents(second.capture.as_ref().unwrap()), b"2still second");
}

#[test]
fn original_is_where_the_fd_pointed_before_the_oldest_entry() {
    let _serial = serial();
    let keep = memfile::create().unwrap();
    let fd = keep.as_raw_fd();
    let before = fd::identity(fd);
    let original_now = || fd::identity(original(fd).unwrap().unwrap().as_raw_fd());
    assert_eq!(original_now(), before);
    let outer = enter(fd, &Sink::Capture, false).unwrap();
    let inner = enter(fd, &Sink::Capture, false).unwrap();
    assert_eq!(original_now(), before);
    exit(fd, outer.id, false).unwrap(); // out of order: the inner entry takes over its saved copy
    assert_eq!(original_now(), before);
    exit(fd, inner.id, false).unwrap();
    assert_eq!(fd::identity(fd), before);
}

#[test]
fn closed_fd_is_closed_again() {
    let _serial = serial();
    let fd = unused_fd(1);
    let entered = enter(fd, &Sink::DevNull, false).unwrap();
    assert!(fd::access_mode(fd).is_ok());
    exit(fd, entered.id, false).unwrap();
    assert!(fd::access_mode(fd).is_err());
}

#[test]
fn read_only_and_closed_targets_are_refused_without_change() {
    let _serial = serial();
    let (_keep, fd) = private_fd();
    // SAFETY: a literal path; the fd is closed below.
    let read_only = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(matches!(enter(fd, &Sink::Fd(read_only), false), Err(Error::ReadOnly(f)) if f == read_only));
    fd::close(read_only);
    let closed = unused_fd(0);
    assert!(fd::access_mode(closed).is_err());
    match enter(fd, &Sink::Fd(closed), false) {
        Err(Error::Os { err, subject }) => {
            assert_eq!(err.raw_os_error(), Some(libc::EBADF));
            assert_eq!(subject, Subject::Fd(closed));
        }
        other => panic!("expected EBADF, got {other:?}"),
    }
    assert!(lock_stacks().stack(fd).is_empty());
}

#[test]
fn follower_keeps_following_when_followed_block_ends_first() {
    let _serial = serial();
    let (_keep_a, a) = private_fd();
    let (_keep_b, b) = private_fd();
    let captured_a = enter(a, &Sink::Capture, false).unwrap();
    let merged = enter(b, &follow(a), false).unwrap();
    write(b, b"merged ");
    let exited = exit(a, captured_a.id, false).unwrap();
    assert!(exited.orphaned_followers);
    // b now follows what a points at again (/dev/null), not the finished capture.
    write(b, b"later");
    exit(b, merged.id, false).unwrap();
    assert_eq!(contents(captured_a.capture.as_ref().unwrap()), b"merged ");
}

fn follow(fd: RawFd) -> Sink<'static> {
    Sink::Follow { fd, entry: None }
}

/// A memory file for a private fd to point at first, to see where it points at the end.
fn private_file() -> (OwnedFd, RawFd) {
    let file = memfile::create().unwrap();
    let raw = file.as_raw_fd();
    (file, raw)
}

#[test]
fn follower_under_a_newer_entry_is_restored_after_followed_block_ends_first() {
    // Adversary finding 1: a block on a, a follower of it on b, an inner block above the
    // follower on b; a's block ends, then inner, then the follower: b is back where it was.
    let _serial = serial();
    let (_keep_a, a) = private_file();
    let (_keep_b, b) = private_file();
    let (a_before, b_before) = (fd::identity(a), fd::identity(b));
    let captured_a = enter(a, &Sink::Capture, false).unwrap();
    let merged = enter(b, &follow(a), false).unwrap();
    let inner = enter(b, &Sink::Capture, false).unwrap();
    assert!(exit(a, captured_a.id, false).unwrap().orphaned_followers);
    assert_eq!(fd::identity(a), a_before);
    exit(b, inner.id, false).unwrap();
    assert_eq!(fd::identity(b), a_before, "b follows what a had saved");
    exit(b, merged.id, false).unwrap();
    assert_eq!(fd::identity(b), b_before);
}

#[test]
fn orphaned_follower_does_not_follow_a_later_entry() {
    // Adversary finding 8: a block on a, a follower of it on b, then a later block on a; the
    // first block ends first: b shares what it had saved, not the later block's sink.
    let _serial = serial();
    let (_keep_a, a) = private_file();
    let (_keep_b, b) = private_file();
    let (a_before, b_before) = (fd::identity(a), fd::identity(b));
    let first = enter(a, &Sink::Capture, false).unwrap();
    let merged = enter(b, &follow(a), false).unwrap();
    let later = enter(a, &Sink::Capture, false).unwrap();
    assert!(exit(a, first.id, false).unwrap().orphaned_followers);
    assert_eq!(fd::identity(b), a_before);
    write(b, b"not for later");
    let exited = exit(a, later.id, false).unwrap();
    assert!(!exited.orphaned_followers, "b does not follow the later block");
    assert!(contents(later.capture.as_ref().unwrap()).is_empty());
    assert_eq!(fd::identity(a), a_before);
    exit(b, merged.id, false).unwrap();
    assert_eq!(fd::identity(b), b_before);
}

#[test]
fn orphaned_follower_follows_the_entry_below() {
    // outer, middle on a; b follows middle; middle ends: b shares outer's sink and follows
    // outer, so outer's end moves b on again.
    let _serial = serial();
    let (_keep_a, a) = private_file();
    let (_keep_b, b) = private_file();
    let (a_before, b_before) = (fd::identity(a), fd::identity(b));
    let outer = enter(a, &Sink::Capture, false).unwrap();
    let middle = enter(a, &Sink::Capture, false).unwrap();
    let merged = enter(b, &follow(a), false).unwrap();
    assert!(exit(a, middle.id, false).unwrap().orphaned_followers);
    write(b, b"to outer");
    assert!(exit(a, outer.id, false).unwrap().orphaned_followers);
    assert_eq!(fd::identity(b), a_before);
    exit(b, merged.id, false).unwrap();
    assert_eq!(fd::identity(b), b_before);
    assert_eq!(contents(outer.capture.as_ref().unwrap()), b"to outer");
}

#[test]
fn follower_of_an_entry_shares_its_sink_under_a_newer_entry() {
    // Adversary finding 2: the follower names its entry; a newer entry on a (another thread's)
    // is not followed, and its end is no business of the follower's.
    let _serial = serial();
    let (_keep_a, a) = private_file();
    let (_keep_b, b) = private_file();
    let (a_before, b_before) = (fd::identity(a), fd::identity(b));
    let mine = enter(a, &Sink::Capture, false).unwrap();
    let other = enter(a, &Sink::Capture, false).unwrap();
    let merged = enter(
        b,
        &Sink::Follow {
            fd: a,
            entry: Some(mine.id),
        },
        false,
    )
    .unwrap();
    write(b, b"mine");
    assert!(!exit(a, other.id, false).unwrap().orphaned_followers);
    write(b, b" still mine");
    exit(b, merged.id, false).unwrap();
    assert!(!exit(a, mine.id, false).unwrap().orphaned_followers);
    assert_eq!((fd::identity(a), fd::identity(b)), (a_before, b_before));
    assert_eq!(contents(mine.capture.as_ref().unwrap()), b"mine still mine");
    assert!(contents(other.capture.as_ref().unwrap()).is_empty());
    let ended = Sink::Follow {
        fd: a,
        entry: Some(mine.id),
    };
    assert!(matches!(enter(b, &ended, false), Err(Error::NotActive)));
    assert_eq!(fd::identity(b), b_before);
}

#[test]
fn follower_of_a_block_on_a_closed_fd_is_closed_when_it_ends_first() {
    let _serial = serial();
    let a = unused_fd(1);
    let (_keep_b, b) = private_file();
    let b_before = fd::identity(b);
    let captured_a = enter(a, &Sink::Capture, false).unwrap();
    let merged = enter(b, &follow(a), false).unwrap();
    assert!(exit(a, captured_a.id, false).unwrap().orphaned_followers);
    assert!(fd::access_mode(a).is_err() && fd::access_mode(b).is_err());
    exit(b, merged.id, false).unwrap();
    assert_eq!(fd::identity(b), b_before);
}

#[test]
fn a_foreign_redirect_keeps_the_fd() {
    let _serial = serial();
    let (_keep, fd) = private_fd();
    let original = fd::open_devnull().unwrap();
    let before = fd::identity(fd);
    // Crosswise: ours enters, a foreign redirect enters, ours ends: the foreign one still
    // owns the fd. (Its own restore then brings back our finished sink: its choice.)
    let ours = enter(fd, &Sink::Capture, false).unwrap();
    let foreign = memfile::create().unwrap();
    fd::dup2(foreign.as_raw_fd(), fd).unwrap();
    exit(fd, ours.id, false).unwrap();
    write(fd, b"foreign");
    assert_eq!(contents(&foreign), b"foreign");
    fd::dup2(original.as_raw_fd(), fd).unwrap();
    // The other way: the foreign redirect enters first and ends first, restoring the fd to
    // where it pointed before either; ours must not bring back the foreign sink.
    let foreign_saved = fd::save(fd).unwrap().unwrap();
    let foreign = memfile::create().unwrap();
    fd::dup2(foreign.as_raw_fd(), fd).unwrap();
    let ours = enter(fd, &Sink::Capture, false).unwrap();
    fd::dup2(foreign_saved.as_raw_fd(), fd).unwrap();
    exit(fd, ours.id, false).unwrap();
    write(fd, b"after both");
    assert!(contents(&foreign).is_empty());
    assert_eq!(fd::identity(fd), before);
}
