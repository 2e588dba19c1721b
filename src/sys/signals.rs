//! Signals as events of the poll loop: SIGTERM/SIGINT (stop) and SIGHUP (reload) are blocked
//! and read from a signalfd, so the loop acts on them between batches, never inside a handler.

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

/// The blocked signals and the descriptor they arrive on.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call it before starting any
    /// thread, so that all inherit the mask) and opens a non-blocking signalfd for them.
    ///
    /// # Errors
    /// `sigprocmask` or `signalfd` failures.
    pub fn install() -> Result<Self, Errno> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGHUP);
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// The descriptor to register for readability.
    #[must_use]
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending signal. A stop outranks a reload.
    ///
    /// # Errors
    /// A read error other than "nothing pending".
    pub fn take(&self) -> Result<Option<Request>, Errno> {
        let mut request = None;
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    let next = match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGTERM) => Request::Stop("SIGTERM"),
                        Ok(Signal::SIGINT) => Request::Stop("SIGINT"),
                        Ok(Signal::SIGHUP) => Request::Reload,
                        _ => continue,
                    };
                    if !matches!(request, Some(Request::Stop(_))) {
                        request = Some(next);
                    }
                }
                Ok(None) | Err(Errno::EAGAIN) => return Ok(request),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
