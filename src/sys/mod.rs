//! OS-level helpers: privilege drop, signals, serial lines, child processes, and the crate's
//! only `unsafe` code (`fork`, the clean-up between fork and exec of a child program, the raw
//! calls of [`tty`]: `flock` and the terminal ioctls, and the `mmap` of the buffer pool). The backend kit's helpers (listening
//! UNIX sockets, receiving a passed descriptor, plugins) are in its own `sys` module
//! (`backend/src/sys/`).
pub mod child;
pub mod fifo;
pub mod signals;
pub mod tty;
pub mod user;

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

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

/// Makes `cmd` start its program in a clean state, whatever the gateway's: every signal at its
/// default action and none blocked, and no descriptor but 0, 1 and 2 (which `Command` sets up).
///
/// The gateway blocks TERM, INT, HUP and CHLD for its signalfd, and std ignores PIPE; `Command`
/// resets PIPE only and passes the mask on, so a program would not die on `SIGTERM`. The
/// gateway's own descriptors are all close-on-exec (mio's sockets, epoll and eventfd, the
/// signalfd, std's files and pipes, `relay::route`'s `O_CLOEXEC` opens), but one it inherited
/// without the flag (from an init system, a shell) would reach every program.
///
/// This is a `pre_exec` hook, so `Command` forks rather than using `posix_spawn` (whose
/// attributes `Command` does not expose): the copy of page tables is small next to the exec.
/// Descriptors are marked close-on-exec in the child, not closed, so std's own error pipe still
/// reports a failed exec: one `close_range(CLOSE_RANGE_CLOEXEC)` call on Linux 5.11 and later,
/// else `fcntl` on each number below `_SC_OPEN_MAX`.
#[allow(unsafe_code)]
pub fn exec_clean(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let hook = || {
        // SAFETY: between fork and exec only async-signal-safe calls may run; these are raw
        // system calls on integers and on a sigaction and a sigset on this stack, with no
        // allocation and no lock.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            for sig in 1..=libc::SIGRTMAX() {
                // KILL and STOP cannot be changed (EINVAL, harmless), nor can the C library's
                // internal signals; everything else a program expects at its default.
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let all = libc::c_uint::MAX;
            if libc::syscall(libc::SYS_close_range, 3, all, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                let open_max = RawFd::try_from(libc::sysconf(libc::_SC_OPEN_MAX));
                let end = open_max.ok().filter(|&n| n > 0).unwrap_or(1024);
                for fd in 3..end {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec, and does only what is allowed
    // there (see inside).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// `len` bytes of fresh private anonymous memory (`mmap`), zero-filled, that stay mapped as
/// long as the process lives: for what is reserved once at start-up and used a little at a
/// time (the buffer pool).
///
/// The kernel gives each page its frame at the first write, so what nobody has written costs
/// address space, not RSS. The C library's `calloc` promises nothing of the kind: glibc and
/// musl's mallocng skip clearing a chunk that came fresh from `mmap`, but the libc that zig
/// links into the static router builds clears every byte, which makes all of it resident at
/// once.
///
/// # Errors
/// `ENOMEM` when the mapping cannot be made (or is larger than a slice may be).
#[allow(unsafe_code)]
pub fn reserve_zeroed(len: usize) -> std::io::Result<&'static mut [u8]> {
    if len == 0 {
        return Ok(Default::default());
    }
    if isize::try_from(len).is_err() {
        return Err(Errno::ENOMEM.into());
    }
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: a new mapping at an address the kernel chooses, backed by no file: it overlaps
    // nothing the program already uses.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `p` starts `len` (at most isize::MAX) readable and writable bytes, zeroed by the
    // kernel, that nothing else refers to and that are never unmapped, hence `'static`.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// How many of the pages that `bytes` spans are resident (`mincore`), and how many it spans:
/// the tests' proof that a reservation costs no memory until it is written.
///
/// # Errors
/// The `mincore` error (`ENOMEM` for memory that is not mapped).
#[cfg(test)]
#[allow(unsafe_code)]
pub(crate) fn resident_pages(bytes: &[u8]) -> std::io::Result<(usize, usize)> {
    // SAFETY: sysconf reads a constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = bytes.as_ptr() as usize;
    let first = start - start % page;
    let len = start + bytes.len() - first;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `first..first + len` is the page-aligned span of `bytes`, which the borrow keeps
    // mapped; `vec` holds one byte per page of it, as mincore writes.
    let rc = unsafe { libc::mincore(first as *mut libc::c_void, len, vec.as_mut_ptr().cast()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((vec.iter().filter(|&&v| v & 1 != 0).count(), vec.len()))
}

/// An errno as messages and log lines show it: its name, then the C library's text for it
/// (`ENOENT: No such file or directory`). nix's own `Display` gives the same form with a table
/// of texts of its own, about 5 KB of the shipped armv7 gateway beside libc's, which std's
/// `io::Error` already brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrnoText(pub Errno);

impl core::fmt::Display for ErrnoText {
    #[allow(unsafe_code)]
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut buf = [0u8; 128];
        // SAFETY: `strerror_r` (the XSI one: the libc crate binds glibc's `__xpg_strerror_r`)
        // writes at most `buf.len()` bytes into `buf`, which stays ours, or fails.
        let rc =
            unsafe { libc::strerror_r(self.0 as libc::c_int, buf.as_mut_ptr().cast(), buf.len()) };
        write!(f, "{:?}", self.0)?;
        let text = std::ffi::CStr::from_bytes_until_nul(&buf).ok().and_then(|t| t.to_str().ok());
        match text {
            Some(t) if rc == 0 && !t.is_empty() => write!(f, ": {t}"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod errno_tests {
    use super::*;

    #[test]
    fn name_then_text() {
        assert_eq!(ErrnoText(Errno::ENOENT).to_string(), "ENOENT: No such file or directory");
        assert_eq!(
            ErrnoText(Errno::ECONNRESET).to_string(),
            "ECONNRESET: Connection reset by peer"
        );
        assert_eq!(ErrnoText(Errno::EACCES).to_string(), "EACCES: Permission denied");
    }
}
