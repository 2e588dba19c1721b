//! A backend's sockets in every relay mode: mio's UNIX stream types for byte streams, plain
//! descriptors for `SOCK_SEQPACKET` (which mio has no type for), and mio's TCP types for a
//! server the gateway reaches through a `tcp:` link (byte streams only: TCP keeps no message
//! boundaries, so `seqpacket` is never served on it).
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};

/// Why a socket read or write failed.
#[derive(Debug)]
pub enum SockError {
    /// The peer went away (reset, or a write after it closed).
    Reset,
    /// A `SOCK_SEQPACKET` packet of this many bytes did not fit the buffer.
    Truncated(usize),
    /// Any other socket error, with the call that failed.
    Io(&'static str, std::io::Error),
}

impl core::fmt::Display for SockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Reset => f.write_str("connection reset"),
            Self::Truncated(n) => write!(f, "packet of {n} bytes is larger than the buffer"),
            Self::Io(op, e) => write!(f, "{op}: {e}"),
        }
    }
}

/// The listening socket.
#[derive(Debug)]
pub enum Listener {
    /// `SOCK_STREAM`.
    Stream(mio::net::UnixListener),
    /// `SOCK_SEQPACKET`.
    Packet(std::os::unix::net::UnixListener),
    /// TCP; accepted connections get `TCP_NODELAY`.
    Tcp(mio::net::TcpListener),
}

impl Listener {
    /// Accepts one connection, non-blocking.
    ///
    /// # Errors
    /// `WouldBlock` when none is waiting, or the accept error.
    pub fn accept(&self) -> std::io::Result<Sock> {
        match self {
            Self::Stream(l) => l.accept().map(|(s, _)| Sock::Stream(s)),
            Self::Packet(l) => {
                let (s, _) = l.accept()?;
                // std accepts with SOCK_CLOEXEC only; the loop needs non-blocking sockets.
                s.set_nonblocking(true)?;
                Ok(Sock::Packet(OwnedFd::from(s)))
            }
            Self::Tcp(l) => {
                let (s, _) = l.accept()?;
                // Like a connection the peer aborted before it was taken: dropped, and the
                // next one is accepted.
                Sock::tcp(s).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string())
                })
            }
        }
    }

    /// Registers the listener for readability under `token`.
    ///
    /// # Errors
    /// The poll error.
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        match self {
            Self::Stream(l) => registry.register(l, token, Interest::READABLE),
            Self::Packet(l) => {
                registry.register(&mut SourceFd(&l.as_raw_fd()), token, Interest::READABLE)
            }
            Self::Tcp(l) => registry.register(l, token, Interest::READABLE),
        }
    }

    /// The local address of a TCP listener (with the port the system picked for port 0).
    #[must_use]
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Stream(_) | Self::Packet(_) => None,
        }
    }
}

/// A client connection (the gateway's connection for one WebSocket client).
#[derive(Debug)]
pub enum Sock {
    /// A byte stream.
    Stream(mio::net::UnixStream),
    /// A `SOCK_SEQPACKET` socket.
    Packet(OwnedFd),
    /// A TCP connection (a byte stream).
    Tcp(mio::net::TcpStream),
}

impl AsRawFd for Sock {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Stream(s) => s.as_fd(),
            Self::Packet(fd) => fd.as_fd(),
            Self::Tcp(s) => s.as_fd(),
        }
    }
}

impl Sock {
    /// A TCP connection with `TCP_NODELAY`: the relay writes whole records and echoes, and
    /// Nagle's algorithm would hold a small one back until the previous one is acknowledged
    /// (a delayed ACK away, up to 40 ms on Linux).
    ///
    /// # Errors
    /// The `setsockopt` error (the connection is closed).
    pub fn tcp(stream: mio::net::TcpStream) -> std::io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self::Tcp(stream))
    }

    fn raw(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }

    /// Registers the socket under `token`.
    ///
    /// # Errors
    /// The poll error.
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> std::io::Result<()> {
        match self {
            Self::Stream(s) => registry.register(s, token, interest),
            Self::Packet(fd) => registry.register(&mut SourceFd(&fd.as_raw_fd()), token, interest),
            Self::Tcp(s) => registry.register(s, token, interest),
        }
    }

    /// Changes the registration.
    ///
    /// # Errors
    /// The poll error.
    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> std::io::Result<()> {
        match self {
            Self::Stream(s) => registry.reregister(s, token, interest),
            Self::Packet(fd) => {
                registry.reregister(&mut SourceFd(&fd.as_raw_fd()), token, interest)
            }
            Self::Tcp(s) => registry.reregister(s, token, interest),
        }
    }

    /// Removes the registration.
    ///
    /// # Errors
    /// The poll error.
    pub fn deregister(&mut self, registry: &Registry) -> std::io::Result<()> {
        match self {
            Self::Stream(s) => registry.deregister(s),
            Self::Packet(fd) => registry.deregister(&mut SourceFd(&fd.as_raw_fd())),
            Self::Tcp(s) => registry.deregister(s),
        }
    }

    /// Shuts down the writing side (the peer reads the end of the stream).
    ///
    /// # Errors
    /// The `shutdown` error.
    pub fn shutdown_write(&self) -> std::io::Result<()> {
        socket::shutdown(self.raw(), socket::Shutdown::Write).map_err(std::io::Error::from)
    }

    /// Reads into `buf`: `Some(0)` is end of stream, `None` would block. A SEQPACKET read takes
    /// exactly one packet and fails with [`SockError::Truncated`] when it did not fit.
    ///
    /// # Errors
    /// [`SockError`].
    pub fn read(&self, buf: &mut [u8]) -> Result<Option<usize>, SockError> {
        match self {
            Self::Stream(s) => read_stream(s, buf),
            Self::Tcp(s) => read_stream(s, buf),
            // MSG_TRUNC makes Linux return the packet's real length, so a packet longer than
            // the buffer shows instead of being cut silently.
            Self::Packet(fd) => match socket::recv(fd.as_raw_fd(), buf, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > buf.len() => Err(SockError::Truncated(n)),
                Ok(n) => Ok(Some(n)),
                Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
                Err(Errno::ECONNRESET) => Err(SockError::Reset),
                Err(e) => Err(SockError::Io("recv", e.into())),
            },
        }
    }

    /// Writes from `buf` without raising SIGPIPE; `None` when the socket would block. On a
    /// SEQPACKET socket `buf` is one packet.
    ///
    /// # Errors
    /// [`SockError`].
    pub fn write(&self, buf: &[u8]) -> Result<Option<usize>, SockError> {
        match socket::send(self.raw(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
            Err(Errno::EPIPE | Errno::ECONNRESET) => Err(SockError::Reset),
            Err(e) => Err(SockError::Io("send", e.into())),
        }
    }
}

/// One read from a byte stream: `Some(0)` is end of stream, `None` would block.
fn read_stream(mut stream: impl Read, buf: &mut [u8]) -> Result<Option<usize>, SockError> {
    match stream.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(SockError::Reset),
        Err(e) => Err(SockError::Io("read", e)),
    }
}
