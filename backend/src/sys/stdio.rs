//! The one connection a websocket server is started with (`--stdio`): a connected socket as
//! standard input and output, as inetd gives it and as the gateway's exec links start a
//! program (one end of a socketpair, `SOCK_STREAM`, or `SOCK_SEQPACKET` in `seqpacket` mode).
//!
//! Only a socket is taken. The kit's loop registers one descriptor per client with epoll, which
//! does not take a regular file and would need two descriptors (with two registrations) for a
//! pair of pipes; and making an inherited pipe non-blocking changes it for every process that
//! shares it (a terminal, the parent's pipe). So anything else on standard input is refused.
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{self, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};
use nix::sys::stat::Mode;

/// The kind of socket found on standard input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inherited {
    /// A UNIX `SOCK_STREAM` socket (a socketpair end, or a connection accepted elsewhere).
    UnixStream,
    /// A UNIX `SOCK_SEQPACKET` socket.
    SeqPacket,
    /// A TCP connection (inetd).
    Tcp,
}

/// Why standard input cannot be served.
#[derive(Debug)]
pub enum StdioError {
    /// Standard input is not a socket (a terminal, a pipe, a file).
    NotASocket,
    /// A socket of another kind (a datagram socket, a listening one...).
    Unsupported(&'static str),
    /// A system call failed.
    Os(&'static str, Errno),
}

impl core::fmt::Display for StdioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotASocket => f.write_str(
                "needs a socket on stdin (a connected UNIX or TCP socket as standard input and \
                 output); standard input is not a socket",
            ),
            Self::Unsupported(what) => write!(
                f,
                "needs a connected UNIX stream or seqpacket socket, or a TCP connection, on \
                 stdin; standard input is {what}"
            ),
            Self::Os(op, e) => write!(f, "standard input: {op}: {}", e.desc()),
        }
    }
}

impl std::error::Error for StdioError {}

/// Takes the connected socket on standard input: a close-on-exec, non-blocking duplicate of
/// it, and its kind. Standard input and output are then pointed at `/dev/null`, so that the
/// connection is ours alone: closing the duplicate ends it for the peer at once, and nothing
/// written to standard output by mistake can reach the peer.
///
/// # Errors
/// [`StdioError::NotASocket`] for anything but a socket on standard input,
/// [`StdioError::Unsupported`] for a socket that is not a connected stream or seqpacket
/// socket of the UNIX or an IP family, [`StdioError::Os`] when a call fails.
pub fn take_stdin() -> Result<(OwnedFd, Inherited), StdioError> {
    let stdin = std::io::stdin();
    let fd0 = stdin.as_fd();
    let ty = match socket::getsockopt(&fd0, sockopt::SockType) {
        Ok(ty) => ty,
        Err(Errno::ENOTSOCK) => return Err(StdioError::NotASocket),
        Err(e) => return Err(StdioError::Os("getsockopt SO_TYPE", e)),
    };
    if socket::getsockopt(&fd0, sockopt::AcceptConn).map_err(|e| StdioError::Os("getsockopt", e))? {
        return Err(StdioError::Unsupported("a listening socket"));
    }
    let local = socket::getsockname::<SockaddrStorage>(fd0.as_raw_fd())
        .map_err(|e| StdioError::Os("getsockname", e))?;
    let kind = match (local.family(), ty) {
        (Some(AddressFamily::Unix), SockType::Stream) => Inherited::UnixStream,
        (Some(AddressFamily::Unix), SockType::SeqPacket) => Inherited::SeqPacket,
        (Some(AddressFamily::Inet | AddressFamily::Inet6), SockType::Stream) => Inherited::Tcp,
        (_, SockType::Datagram) => return Err(StdioError::Unsupported("a datagram socket")),
        _ => return Err(StdioError::Unsupported("a socket of another family or type")),
    };
    let fd = fd0.try_clone_to_owned().map_err(|e| StdioError::Os("dup", errno_of(&e)))?;
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| StdioError::Os("open /dev/null", e))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| StdioError::Os("dup2", e))?;
    nix::unistd::dup2_stdout(&null).map_err(|e| StdioError::Os("dup2", e))?;
    let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| StdioError::Os("fcntl", e))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))
        .map_err(|e| StdioError::Os("fcntl", e))?;
    Ok((fd, kind))
}

fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::UnknownErrno, Errno::from_raw)
}
