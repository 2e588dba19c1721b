//! A FIFO pair as a backend: one named pipe the gateway writes (client to backend), one it
//! reads (backend to client), since a FIFO carries bytes one way only.
//!
//! Opening, per connection:
//!
//! 1. The write FIFO, `O_WRONLY | O_NONBLOCK`: with nobody reading it the kernel says `ENXIO`,
//!    which is the backend not running ([`FifoError::NoReader`], a 502), not a connection
//!    that would stall.
//! 2. The read FIFO, `O_RDONLY | O_NONBLOCK` (it opens at once, writer or not). Until the
//!    backend has opened it for writing nothing is read; once it has, its close is the end of
//!    the backend's output.
//! 3. `flock(LOCK_EX | LOCK_NB)` on the read FIFO: a FIFO pair is one stream, so it serves one
//!    connection at a time; a second gets [`FifoError::InUse`] (503). Two clients writing into
//!    one FIFO would interleave their bytes, and each would read what was meant for the
//!    other. The lock is on the read side because that one stays open as long as the pair is
//!    held; the write side is closed first, at the end of the client's input.
//!
//! Both are checked to be FIFOs (`fstat`), both close-on-exec. Closing the write FIFO is the
//! end of the client's input for the backend (its `read` returns 0).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{self, Mode, SFlag};

/// Why a FIFO pair could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum FifoError {
    /// A path does not exist.
    NotFound,
    /// A path is not a FIFO.
    NotAFifo,
    /// Nobody reads the write FIFO: the backend is not running.
    NoReader,
    /// Another connection holds the pair.
    InUse,
    /// Any other failure of a system call.
    Io(Errno),
}

impl core::fmt::Display for FifoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such FIFO"),
            Self::NotAFifo => f.write_str("not a FIFO"),
            Self::NoReader => f.write_str("nobody reads the FIFO"),
            Self::InUse => f.write_str("FIFO pair in use"),
            Self::Io(e) => write!(f, "{}", super::ErrnoText(*e)),
        }
    }
}

/// An open FIFO pair, held by one connection.
#[derive(Debug)]
pub struct FifoPair {
    /// Written: the backend's input. `None` once closed (the end of the client's input).
    tx: Option<OwnedFd>,
    /// Read: the backend's output; locked while held.
    rx: OwnedFd,
}

fn open_fifo(path: &Path, flags: OFlag) -> Result<OwnedFd, FifoError> {
    let fd = fcntl::open(path, flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| match e {
            Errno::ENOENT | Errno::ENOTDIR => FifoError::NotFound,
            Errno::ENXIO => FifoError::NoReader,
            e => FifoError::Io(e),
        })?;
    let st = stat::fstat(&fd).map_err(FifoError::Io)?;
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFIFO.bits() {
        return Err(FifoError::NotAFifo);
    }
    Ok(fd)
}

impl FifoPair {
    /// Opens `to_backend` for writing and `from_backend` for reading (see the module
    /// documentation for the order and why).
    ///
    /// # Errors
    /// [`FifoError`].
    pub fn open(to_backend: &Path, from_backend: &Path) -> Result<Self, FifoError> {
        let tx = open_fifo(to_backend, OFlag::O_WRONLY)?;
        let rx = open_fifo(from_backend, OFlag::O_RDONLY)?;
        match super::flock_exclusive(rx.as_fd(), true) {
            Ok(()) => Ok(Self { tx: Some(tx), rx }),
            Err(Errno::EWOULDBLOCK) => Err(FifoError::InUse),
            Err(e) => Err(FifoError::Io(e)),
        }
    }

    /// `write(2)` to the backend; `EPIPE` once it stopped reading.
    ///
    /// # Errors
    /// `EAGAIN` when the FIFO is full; the FIFO's errors.
    pub fn write(&self, src: &[u8]) -> nix::Result<usize> {
        match &self.tx {
            Some(fd) => nix::unistd::write(fd, src),
            None => Err(Errno::EPIPE),
        }
    }

    /// `read(2)` from the backend: `Ok(0)` once every writer closed it.
    ///
    /// # Errors
    /// `EAGAIN` when nothing is there.
    pub fn read(&self, dst: &mut [u8]) -> nix::Result<usize> {
        nix::unistd::read(self.rx.as_fd(), dst)
    }

    /// Closes the write FIFO: the backend reads its end.
    pub fn close_write(&mut self) {
        self.tx = None;
    }

    /// The read FIFO, borrowed.
    #[must_use]
    pub fn rx(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rx.as_fd()
    }

    /// The read FIFO (polled for readable).
    #[must_use]
    pub fn rx_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// The write FIFO while open (polled for writable).
    #[must_use]
    pub fn tx_fd(&self) -> Option<RawFd> {
        self.tx.as_ref().map(AsRawFd::as_raw_fd)
    }
}

impl Drop for FifoPair {
    fn drop(&mut self) {
        // Closing the last descriptor of the open file releases the lock anyway; said here so
        // that the pair is free the moment it is let go of, whatever else holds the fd.
        let _ = super::flock_exclusive(self.rx.as_fd(), false);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn fifos() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "wsgate-fifo-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("in"), dir.join("out"));
        nix::unistd::mkfifo(&a, Mode::from_bits_truncate(0o600)).unwrap();
        nix::unistd::mkfifo(&b, Mode::from_bits_truncate(0o600)).unwrap();
        (dir, a, b)
    }

    #[test]
    fn a_pair_relays_both_ways_for_one_holder() {
        let (dir, to, from) = fifos();
        // Without a reader of `to`, the backend is not there.
        assert_eq!(FifoPair::open(&to, &from).unwrap_err(), FifoError::NoReader);
        let backend_in = fcntl::open(&to, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty());
        let backend_in = backend_in.unwrap();
        let mut pair = FifoPair::open(&to, &from).unwrap();
        assert_eq!(FifoPair::open(&to, &from).unwrap_err(), FifoError::InUse);
        let backend_out = fcntl::open(&from, OFlag::O_WRONLY | OFlag::O_NONBLOCK, Mode::empty());
        let backend_out = backend_out.unwrap();
        assert_eq!(pair.write(b"ping"), Ok(4));
        let mut buf = [0u8; 16];
        assert_eq!(nix::unistd::read(backend_in.as_fd(), &mut buf), Ok(4));
        assert_eq!(&buf[..4], b"ping");
        assert_eq!(nix::unistd::write(&backend_out, b"pong"), Ok(4));
        assert_eq!(pair.read(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"pong");
        assert_eq!(pair.read(&mut buf), Err(Errno::EAGAIN));
        pair.close_write();
        assert_eq!(pair.write(b"x"), Err(Errno::EPIPE));
        assert_eq!(nix::unistd::read(backend_in.as_fd(), &mut buf), Ok(0));
        drop(backend_out);
        assert_eq!(pair.read(&mut buf), Ok(0));
        drop(pair);
        // Let go of: free for the next connection.
        drop(FifoPair::open(&to, &from).unwrap());
        assert_eq!(FifoPair::open(&dir.join("none"), &from).unwrap_err(), FifoError::NotFound);
        std::fs::write(dir.join("file"), b"").unwrap();
        assert_eq!(FifoPair::open(&to, &dir.join("file")).unwrap_err(), FifoError::NotAFifo);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
