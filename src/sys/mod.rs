//! OS-level helpers: privilege drop, signals, and the crate's only `unsafe` code (`fork`). The
//! backend kit's helpers (listening UNIX sockets, receiving a passed descriptor, plugins) are
//! in its own `sys` module (`backend/src/sys/`).
pub mod signals;
pub mod user;

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
