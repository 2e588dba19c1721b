//! OS-level helpers: privilege drop, signals, serial lines, and the crate's only `unsafe` code
//! (`fork`, and the two raw calls of [`tty`]: `flock` and the `TIOCEXCL` ioctls). The
//! backend kit's helpers (listening UNIX sockets, receiving a passed descriptor, plugins) are
//! in its own `sys` module (`backend/src/sys/`).
pub mod signals;
pub mod tty;
pub mod user;

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::libc;

/// `fork(2)` for a process that has exactly one thread.
///
/// # Errors
/// The `fork` error.
#[allow(unsafe_code)]
pub fn fork_single_threaded() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: callers are single-threaded (wsgate: neither argh, the config loader, `Command`,
    // nor mio's epoll and eventfd start a thread), so the child is a complete copy of the only
    // thread and may do anything the parent could, allocation included.
    unsafe { nix::unistd::fork() }
}

/// `flock(fd, LOCK_EX | LOCK_NB)` when `lock`, `flock(fd, LOCK_UN)` otherwise.
///
/// A raw call rather than nix's `Flock`, whose `Drop` panics when the unlock fails.
///
/// # Errors
/// `EWOULDBLOCK` when another open file description holds a lock, other `flock` errors.
#[allow(unsafe_code)]
pub(crate) fn flock_exclusive(fd: BorrowedFd<'_>, lock: bool) -> nix::Result<()> {
    let op = if lock { libc::LOCK_EX | libc::LOCK_NB } else { libc::LOCK_UN };
    // SAFETY: `flock` takes a descriptor and an integer and touches no memory of ours; the
    // borrow keeps the descriptor open for the duration of the call.
    Errno::result(unsafe { libc::flock(fd.as_raw_fd(), op) }).map(drop)
}

/// `ioctl(fd, TIOCEXCL)` when `exclusive` (further opens of the terminal fail with `EBUSY`
/// unless the opener has `CAP_SYS_ADMIN`), `ioctl(fd, TIOCNXCL)` otherwise.
///
/// # Errors
/// `ENOTTY` when `fd` is not a terminal, `EIO` on a hung-up one.
#[allow(unsafe_code)]
pub(crate) fn tty_exclusive(fd: BorrowedFd<'_>, exclusive: bool) -> nix::Result<()> {
    let request = if exclusive { libc::TIOCEXCL } else { libc::TIOCNXCL };
    // SAFETY: TIOCEXCL and TIOCNXCL take no argument and touch no memory of ours; libc gives
    // `request` the type this target's `ioctl` expects; the borrow keeps the descriptor open.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), request) }).map(drop)
}

/// `ioctl(fd, TIOCOUTQ)`: the number of bytes in the terminal's output queue, not yet sent.
///
/// # Errors
/// `ENOTTY` when `fd` is not a terminal, `EIO` on a hung-up one.
#[allow(unsafe_code)]
pub(crate) fn tty_output_queue(fd: BorrowedFd<'_>) -> nix::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one `int` through its argument, which points at `queued`, alive
    // and writable for the whole call; the borrow keeps the descriptor open.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut queued) })?;
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// `ioctl(fd, TIOCGEXCL)`: whether the terminal is in exclusive mode (Linux 3.8 and later).
///
/// # Errors
/// `ENOTTY` when `fd` is not a terminal (or the kernel predates the request).
#[cfg(test)]
#[allow(unsafe_code)]
pub(crate) fn tty_is_exclusive(fd: BorrowedFd<'_>) -> nix::Result<bool> {
    let mut on: libc::c_int = 0;
    // SAFETY: TIOCGEXCL writes one `int` through its argument, which points at `on`, alive and
    // writable for the whole call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGEXCL, &mut on) })?;
    Ok(on != 0)
}
