//! Signals as events of the poll loop: SIGTERM/SIGINT (stop), SIGHUP (reload) and SIGCHLD (a
//! child process ended: `sys::child::Reaper::reap`) are blocked and read from a signalfd, so
//! the loop acts on them between batches, never inside a handler.
//!
//! Blocking SIGCHLD changes nothing for children: its default action is to be ignored. The
//! mask is inherited by programs the process starts: `sys::exec_clean` empties it for them.

use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What the signals read so far ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: drain and exit.
    Stop(&'static str),
    /// SIGHUP: reload the configuration.
    Reload,
}

/// Everything the signals read so far ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Stop or reload, if asked.
    pub request: Option<Request>,
    /// SIGCHLD: at least one child process ended (one signal may stand for several).
    pub child_exited: bool,
}

/// The blocked signals and the descriptor they arrive on.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD in the calling thread (call it before starting any
    /// thread, so that all inherit the mask) and opens a non-blocking signalfd for them.
    ///
    /// # Errors
    /// `sigprocmask` or `signalfd` failures.
    pub fn install() -> Result<Self, Errno> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGHUP);
        mask.add(Signal::SIGCHLD);
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// The descriptor to register for readability.
    #[must_use]
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending signal and returns the stop or reload asked (a stop outranks a
    /// reload). A SIGCHLD read here is consumed: a loop that runs children uses
    /// [`read`](Self::read) instead.
    ///
    /// # Errors
    /// A read error other than "nothing pending".
    pub fn take(&self) -> Result<Option<Request>, Errno> {
        self.read().map(|p| p.request)
    }

    /// Reads every pending signal.
    ///
    /// # Errors
    /// A read error other than "nothing pending".
    pub fn read(&self) -> Result<Pending, Errno> {
        let mut pending = Pending::default();
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    let next = match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGTERM) => Request::Stop("SIGTERM"),
                        Ok(Signal::SIGINT) => Request::Stop("SIGINT"),
                        Ok(Signal::SIGHUP) => Request::Reload,
                        Ok(Signal::SIGCHLD) => {
                            pending.child_exited = true;
                            continue;
                        }
                        _ => continue,
                    };
                    if !matches!(pending.request, Some(Request::Stop(_))) {
                        pending.request = Some(next);
                    }
                }
                Ok(None) | Err(Errno::EAGAIN) => return Ok(pending),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sigchld_is_read_beside_a_request() {
        let signals = Signals::install().unwrap();
        assert_eq!(signals.read().unwrap(), Pending::default());
        // Blocked in this thread: both stay pending for the signalfd.
        nix::sys::signal::raise(Signal::SIGCHLD).unwrap();
        nix::sys::signal::raise(Signal::SIGHUP).unwrap();
        assert_eq!(
            signals.read().unwrap(),
            Pending { request: Some(Request::Reload), child_exited: true }
        );
        assert_eq!(signals.read().unwrap(), Pending::default());
        nix::sys::signal::raise(Signal::SIGCHLD).unwrap();
        assert_eq!(signals.take().unwrap(), None);
        assert_eq!(signals.read().unwrap(), Pending::default());
    }
}
