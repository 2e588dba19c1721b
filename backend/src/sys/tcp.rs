//! A listening TCP socket for a websocket server that the gateway reaches through a `tcp:` link
//! (`--tcp HOST:PORT`), with the listen backlog of `-b`.
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::socket::{self, Backlog};

/// Why the TCP socket could not be made: the call that failed and its error.
#[derive(Debug)]
pub struct TcpListenError {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The call.
    pub op: &'static str,
    /// Its error.
    pub source: std::io::Error,
}

impl core::fmt::Display for TcpListenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}: {}", self.addr, self.op, self.source)
    }
}

impl std::error::Error for TcpListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Creates a non-blocking, close-on-exec TCP socket listening on `addr` with `SO_REUSEADDR` (a
/// restart finds the port in `TIME_WAIT` after its last connections and must still bind it):
/// std's `bind` makes it so. Its backlog is std's own; a second `listen` sets `backlog`
/// instead (Linux takes a new backlog on a listening socket), clamped to `0..=SOMAXCONN`.
/// Port 0 lets the system pick one (read it from the socket's local address).
///
/// # Errors
/// [`TcpListenError`] naming the call that failed (`bind` with `AddrInUse` when another server
/// has the port, `AddrNotAvailable` for an address that is not this machine's).
pub fn listen_tcp(addr: SocketAddr, backlog: i32) -> Result<OwnedFd, TcpListenError> {
    let fail = |op| move |source| TcpListenError { addr, op, source };
    let listener = std::net::TcpListener::bind(addr).map_err(fail("bind"))?;
    listener.set_nonblocking(true).map_err(fail("fcntl O_NONBLOCK"))?;
    let fd = OwnedFd::from(listener);
    let max = i32::from(Backlog::MAXCONN);
    Backlog::new(backlog.clamp(0, max))
        .and_then(|b| socket::listen(&fd, b))
        .map_err(|e: Errno| fail("listen")(e.into()))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    use nix::sys::socket::{sockopt, SockType};
    use std::time::Duration;

    #[test]
    fn listens_nonblocking_cloexec_on_the_given_address() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let fd = listen_tcp(host.parse().unwrap(), 8).unwrap();
            assert!(socket::getsockopt(&fd, sockopt::AcceptConn).unwrap());
            assert!(socket::getsockopt(&fd, sockopt::ReuseAddr).unwrap());
            assert_eq!(socket::getsockopt(&fd, sockopt::SockType).unwrap(), SockType::Stream);
            let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).unwrap());
            assert!(fl.contains(OFlag::O_NONBLOCK));
            let fdfl = FdFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFD).unwrap());
            assert!(fdfl.contains(FdFlag::FD_CLOEXEC));
            let listener = std::net::TcpListener::from(fd);
            let local = listener.local_addr().unwrap();
            assert_ne!(local.port(), 0, "{host}");
            std::net::TcpStream::connect(local).unwrap();
        }
    }

    #[test]
    fn the_backlog_is_the_one_asked_for() {
        // Linux queues backlog + 1 connections that are not accepted yet and drops the SYN of
        // the next one (std's own backlog would take it).
        let fd = listen_tcp("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let listener = std::net::TcpListener::from(fd);
        let addr = listener.local_addr().unwrap();
        let connect = |wait| std::net::TcpStream::connect_timeout(&addr, wait);
        let _queued =
            [connect(Duration::from_secs(10)).unwrap(), connect(Duration::from_secs(10)).unwrap()];
        let err = connect(Duration::from_millis(500)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        // Accepting one makes room.
        drop(listener.accept().unwrap());
        connect(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_taken_port_is_an_error_naming_bind() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = listen_tcp(taken.local_addr().unwrap(), 8).unwrap_err();
        assert_eq!(err.op, "bind");
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().starts_with(&format!("{}: bind: ", taken.local_addr().unwrap())));
    }
}
