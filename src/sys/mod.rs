//! OS-level helpers: privilege drop, signals, listening UNIX sockets for the sample backends,
//! and the crate's only `unsafe` code (`fork`, and `plugin`: loading and calling
//! `websocket_jsonrpc` plugins; `fdpass`: owning a descriptor received with `SCM_RIGHTS`).
pub mod fdpass;
pub mod listen;
pub mod plugin;
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
