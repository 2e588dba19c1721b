//! OS-level helpers: privilege drop, signals, child processes, and the crate's only `unsafe`
//! code (`fork`, and the clean-up between fork and exec of a child program). The backend kit's helpers
//! (listening UNIX sockets, receiving a passed descriptor, plugins) are in its own `sys` module
//! (`backend/src/sys/`).
pub mod child;
pub mod signals;
pub mod user;

use std::os::fd::RawFd;

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
