//! The two seams of a connection: the client's byte stream ([`Transport`]) and the backend it
//! relays to ([`Upstream`], reached through a [`Dial`]).
//!
//! The connection's state machine (`conn`) moves bytes between buffers and these two; it never
//! names a socket type. The loop instantiates it with a mio `TcpStream` and a UNIX
//! [`Backend`]; its tests with in-memory fakes that can split the input at any byte, refuse
//! writes, or end either side at a chosen moment (`conn/tests.rs`), which is how the lifecycle
//! is tested under qemu-user too. Each method is the system call it stands for, with that
//! call's contract (`WouldBlock` / `EAGAIN` when it would block), so the instantiation costs
//! nothing: the trait calls are resolved at compile time.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::errno::Errno;
use nix::sys::socket::{recv, send, sendmsg, shutdown, ControlMessage, MsgFlags};

use super::children::{ExecBackend, Shared};
use crate::relay::context::Info;
use crate::relay::link::{self, Exec, Link, Target};
use crate::relay::route::{self, Backend, Docroot, RouteError};
use crate::relay::upgrade::Socket;
use crate::slab::Key;
use crate::sys::child::{cgi_env, Spawn, SpawnError};
use crate::sys::fifo::{FifoError, FifoPair};
use crate::sys::tty::{Tty, TtyError};

/// What the loop polls: registration with its mio registry, under a connection's token.
pub trait Pollable {
    /// Registers with the loop.
    ///
    /// # Errors
    /// The registry's.
    fn register(&mut self, registry: &Registry, token: Token, interest: Interest)
        -> io::Result<()>;
    /// Changes the interest.
    ///
    /// # Errors
    /// The registry's.
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;
    /// Leaves the loop.
    fn deregister(&mut self, registry: &Registry);
}

/// The client's side: a non-blocking byte stream (TCP, carrying TLS or not).
pub trait Transport: Pollable + core::fmt::Debug {
    /// `read(2)`: `Ok(0)` at the end.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is there; the socket's errors.
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize>;
    /// `recv(MSG_PEEK)`: the first bytes, left in place (plain HTTP on a TLS port is told
    /// apart by them).
    ///
    /// # Errors
    /// As [`Self::read`].
    fn peek(&mut self, dst: &mut [u8]) -> io::Result<usize>;
    /// `write(2)`.
    ///
    /// # Errors
    /// `WouldBlock` when the socket is full; the socket's errors.
    fn write(&mut self, src: &[u8]) -> io::Result<usize>;
    /// `writev(2)`.
    ///
    /// # Errors
    /// As [`Self::write`].
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize>;
    /// `shutdown(SHUT_WR)`: the server closes first (RFC 6455 §7.1.1).
    fn shutdown_write(&mut self);
    /// `sendfile(2)` of `count` bytes of `file` from its current offset.
    ///
    /// # Errors
    /// `EAGAIN` when the socket is full; `EINVAL`/`ENOSYS` where sendfile cannot be used
    /// (the page is then copied through the buffer).
    fn send_file(&mut self, file: &File, count: usize) -> nix::Result<usize>;
    /// The descriptor handed to a direct-mode backend.
    fn raw_fd(&self) -> RawFd;
}

impl Transport for TcpStream {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        Read::read(self, dst)
    }

    fn peek(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek(self, dst)
    }

    fn write(&mut self, src: &[u8]) -> io::Result<usize> {
        Write::write(self, src)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Write::write_vectored(self, bufs)
    }

    fn shutdown_write(&mut self) {
        let _ = TcpStream::shutdown(self, Shutdown::Write);
    }

    fn send_file(&mut self, file: &File, count: usize) -> nix::Result<usize> {
        nix::sys::sendfile::sendfile(self.as_fd(), file.as_fd(), None, count)
    }

    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl Pollable for TcpStream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(self, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(self, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(self);
    }
}

/// `Read` / `Write` over a [`Transport`], for rustls, which wants `&mut dyn Read`.
#[derive(Debug)]
pub struct Io<'a, T: ?Sized>(pub &'a mut T);

impl<T: Transport + ?Sized> Read for Io<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<T: Transport + ?Sized> Write for Io<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The backend's side: a connected, non-blocking socket, a byte stream or (`seqpacket`) a
/// sequence of packets.
pub trait Upstream: Socket + Pollable + core::fmt::Debug {
    /// `send(2)` (no `SIGPIPE`); on a packet socket, one packet.
    ///
    /// # Errors
    /// `EAGAIN` when full; the socket's errors.
    fn send(&mut self, src: &[u8]) -> nix::Result<usize>;
    /// `sendmsg(2)` of `src` with `fd` attached (`SCM_RIGHTS`): the direct-mode hand-over.
    ///
    /// # Errors
    /// As [`Self::send`].
    fn send_with_fd(&mut self, src: &[u8], fd: RawFd) -> nix::Result<usize>;
    /// `recv(2)`; on a packet socket with `MSG_TRUNC`, the packet's whole length even when
    /// `dst` was too small for it.
    ///
    /// # Errors
    /// `EAGAIN` when nothing is there; the socket's errors.
    fn recv(&mut self, dst: &mut [u8]) -> nix::Result<usize>;
    /// Has the peer shut down its writing side? (On a packet socket, tells an empty packet
    /// from the end.)
    fn hung_up(&self) -> bool;
    /// `shutdown(SHUT_WR)`: the client is done sending.
    fn shutdown_write(&mut self);
    /// A connect still in progress (TCP): the 101 waits until it is done.
    fn connecting(&self) -> bool;
    /// The outcome of the connect in progress, once the socket said writable; it is then no
    /// longer [`Self::connecting`].
    ///
    /// # Errors
    /// Why it failed.
    fn connect_result(&mut self) -> Result<(), RouteError>;
}

/// Who dials, for a backend that is started for the connection (an exec link's program gets
/// the request in its environment).
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The connection.
    pub conn: Key,
    /// Its request (the endpoint is the link's, filled in by the dial).
    pub info: Info<'a>,
    /// The request head as received.
    pub head: &'a [u8],
    /// The endpoint's relay mode keeps packet boundaries (seqpacket).
    pub seqpacket: bool,
    /// From `SIGTERM` to `SIGKILL` when a program's connection ends: the site's close timeout.
    pub grace: Duration,
    /// The loop's clock.
    pub now: Instant,
}

/// Where backends are found by name.
///
/// Without `Debug` as a supertrait: a `dyn Dial`'s vtable would hold its `Debug`, and keep
/// every backend's and every child process's `Debug` in the binary, which nothing prints.
pub trait Dial<U> {
    /// Connects to the backend `name` (a checked path without its leading '/') for `caller`.
    ///
    /// # Errors
    /// [`RouteError`]: none there, not a socket, its listen queue full...
    fn dial(&self, name: &str, caller: &Caller<'_>) -> Result<U, RouteError>;
}

/// A site's backends: its links first (see [`crate::relay::link`]), then its docroot.
#[derive(Debug)]
pub struct Backends {
    /// The directory of the backend sockets.
    pub docroot: Docroot,
    /// Endpoints the configuration names a target for.
    pub links: Vec<Link>,
    /// The loop's programs, for exec links.
    pub children: Shared,
    /// The site's index: an exec link's programs are counted per site and origin.
    pub site: usize,
}

impl Backends {
    /// Starts `exec`'s program for `caller` as link `origin`'s.
    fn spawn(
        &self,
        origin: &str,
        exec: &Exec,
        caller: &Caller<'_>,
    ) -> Result<Upstreams, RouteError> {
        let info = Info { endpoint: origin, protocol: None, ..caller.info };
        let spec = Spawn {
            program: exec.program.clone(),
            args: exec.args.iter().map(Into::into).collect(),
            dir: Some(exec.dir.clone()),
            env: cgi_env(&info, caller.head),
            seqpacket: caller.seqpacket,
        };
        // The link's processes are one group: the same site and origin, across reloads.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.site, origin).hash(&mut h);
        let group = (h.finish() & u64::from(u32::MAX >> 1)) as u32;
        let limit = exec.limit.map_or(usize::MAX, |n| n as usize);
        let spawned = self
            .children
            .try_borrow_mut()
            .map_err(|_| RouteError::Other(Errno::EBUSY))?
            .spawn(&spec, caller.conn, group, limit, caller.now);
        match spawned {
            Ok((pid, fd)) => {
                let sock = Backend { fd, seqpacket: caller.seqpacket, connecting: false };
                Ok(Upstreams::Exec(ExecBackend::new(
                    sock,
                    pid,
                    Rc::clone(&self.children),
                    caller.grace,
                )))
            }
            Err(SpawnError::Limit | SpawnError::GroupLimit) => Err(RouteError::ProcessLimit),
            Err(e) => {
                crate::conn_log!(
                    crate::logging::WARN,
                    "conn={} {}: {e}",
                    caller.conn,
                    exec.program.display()
                );
                Err(RouteError::Other(match e {
                    SpawnError::Start(e) => errno_of(&e),
                    SpawnError::Setup(_, e) => e,
                    _ => Errno::EINVAL,
                }))
            }
        }
    }
}

impl Dial<Upstreams> for Backends {
    fn dial(&self, name: &str, caller: &Caller<'_>) -> Result<Upstreams, RouteError> {
        let link = link::find(&self.links, name);
        match link.map(|l| &l.target) {
            Some(Target::Unix(path)) => route::connect_unix(path).map(Upstreams::Socket),
            Some(Target::Tcp { addrs, .. }) => route::connect_tcp(addrs).map(Upstreams::Socket),
            Some(Target::Fifo { to_backend, from_backend }) => {
                match FifoPair::open(to_backend, from_backend) {
                    Ok(p) => Ok(Upstreams::Fifo(p)),
                    Err(FifoError::NotFound) => Err(RouteError::NotFound),
                    Err(FifoError::NoReader) => Err(RouteError::Refused),
                    Err(FifoError::InUse) => Err(RouteError::InUse),
                    Err(FifoError::NotAFifo) => Err(RouteError::Other(Errno::EINVAL)),
                    Err(FifoError::Io(e)) => Err(RouteError::Other(e)),
                }
            }
            Some(Target::Exec(exec)) => {
                self.spawn(link.map_or("", |l| l.origin.as_str()), exec, caller)
            }
            Some(Target::Tty { path, serial }) => match Tty::open(path, serial) {
                Ok(t) => Ok(Upstreams::Tty(t)),
                Err(TtyError::NotFound(_)) => Err(RouteError::NotFound),
                Err(TtyError::InUse) => Err(RouteError::InUse),
                Err(TtyError::Denied(e) | TtyError::Io { errno: e, .. }) => {
                    Err(RouteError::Other(e))
                }
                Err(TtyError::NotATty(_)) => Err(RouteError::Other(Errno::ENOTTY)),
                Err(TtyError::BadSettings(_)) => Err(RouteError::Other(Errno::EINVAL)),
            },
            None => self.docroot.connect(name).map(Upstreams::Socket),
        }
    }
}

/// The backends the loop relays to: a socket (UNIX, from the docroot or a link, or TCP), a
/// program's stdio socket, or a serial line.
#[derive(Debug)]
pub enum Upstreams {
    /// A connected socket.
    Socket(Backend),
    /// A program started for the connection; it is ended when this is dropped.
    Exec(ExecBackend),
    /// A serial line, in raw mode; its settings are restored when it is dropped.
    Tty(Tty),
    /// A FIFO pair, written and read.
    Fifo(FifoPair),
}

impl Upstreams {
    /// The socket, if the backend is one.
    fn socket(&mut self) -> Option<&mut Backend> {
        match self {
            Self::Socket(b) => Some(b),
            Self::Exec(e) => Some(&mut e.sock),
            Self::Tty(_) | Self::Fifo(_) => None,
        }
    }

    fn socket_ref(&self) -> Option<&Backend> {
        match self {
            Self::Socket(b) => Some(b),
            Self::Exec(e) => Some(&e.sock),
            Self::Tty(_) | Self::Fifo(_) => None,
        }
    }
}

impl Socket for Upstreams {
    fn seqpacket(&self) -> bool {
        self.socket_ref().is_some_and(|b| b.seqpacket)
    }
}

impl Upstream for Upstreams {
    fn send(&mut self, src: &[u8]) -> nix::Result<usize> {
        match self {
            Self::Tty(t) => t.write(src).map_err(|e| errno_of(&e)),
            Self::Fifo(p) => p.write(src),
            other => other.socket().map_or(Err(Errno::ENOTSOCK), |b| b.send(src)),
        }
    }

    fn send_with_fd(&mut self, src: &[u8], fd: RawFd) -> nix::Result<usize> {
        match self {
            Self::Socket(b) => b.send_with_fd(src, fd),
            // The configuration keeps direct mode away from programs and serial lines.
            Self::Exec(_) | Self::Tty(_) | Self::Fifo(_) => Err(Errno::ENOTSOCK),
        }
    }

    fn recv(&mut self, dst: &mut [u8]) -> nix::Result<usize> {
        match self {
            Self::Socket(b) => b.recv(dst),
            Self::Exec(e) => e.sock.recv(dst),
            // Its end of file is the backend closing its output.
            Self::Fifo(p) => p.read(dst),
            // A line does not end: the end of file is its hang-up (an adapter unplugged), a
            // failure for the client (1011), as the EIO that may come instead.
            Self::Tty(t) => match t.read(dst) {
                Ok(0) if !dst.is_empty() => Err(Errno::EIO),
                Ok(n) => Ok(n),
                Err(e) => Err(errno_of(&e)),
            },
        }
    }

    fn hung_up(&self) -> bool {
        match self {
            Self::Tty(t) => peer_hung_up(t.as_fd()),
            Self::Fifo(p) => peer_hung_up(p.rx()),
            other => other.socket_ref().is_some_and(Upstream::hung_up),
        }
    }

    fn shutdown_write(&mut self) {
        match self {
            Self::Fifo(p) => p.close_write(),
            // A line has no half-close; it is given back when the connection drops it.
            Self::Tty(_) => {}
            other => {
                if let Some(b) = other.socket() {
                    b.shutdown_write();
                }
            }
        }
    }

    fn connecting(&self) -> bool {
        self.socket_ref().is_some_and(|b| b.connecting)
    }

    fn connect_result(&mut self) -> Result<(), RouteError> {
        self.socket().map_or(Ok(()), Upstream::connect_result)
    }
}

impl AsRawFd for Upstreams {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Socket(b) => b.fd.as_raw_fd(),
            Self::Exec(e) => e.sock.fd.as_raw_fd(),
            Self::Tty(t) => t.as_raw_fd(),
            Self::Fifo(p) => p.rx_fd(),
        }
    }
}

/// A FIFO pair is two descriptors under the connection's one backend token: the read FIFO
/// for readable, the write FIFO for writable, each always (the loop is edge-triggered: an event
/// the connection has no use for costs one drive, and it never has to say which FIFO it waits
/// on). The write FIFO leaves the poll set when it is closed.
impl Pollable for Upstreams {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        if let Self::Fifo(p) = self {
            registry.register(&mut SourceFd(&p.rx_fd()), token, Interest::READABLE)?;
            if let Some(tx) = p.tx_fd() {
                registry.register(&mut SourceFd(&tx), token, Interest::WRITABLE)?;
            }
            return Ok(());
        }
        registry.register(&mut SourceFd(&self.as_raw_fd()), token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        if let Self::Fifo(p) = self {
            registry.reregister(&mut SourceFd(&p.rx_fd()), token, Interest::READABLE)?;
            if let Some(tx) = p.tx_fd() {
                registry.reregister(&mut SourceFd(&tx), token, Interest::WRITABLE)?;
            }
            return Ok(());
        }
        registry.reregister(&mut SourceFd(&self.as_raw_fd()), token, interest)
    }

    fn deregister(&mut self, registry: &Registry) {
        if let Self::Fifo(p) = self {
            if let Some(tx) = p.tx_fd() {
                let _ = registry.deregister(&mut SourceFd(&tx));
            }
        }
        let _ = registry.deregister(&mut SourceFd(&self.as_raw_fd()));
    }
}

impl Upstream for Backend {
    fn send(&mut self, src: &[u8]) -> nix::Result<usize> {
        send(self.fd.as_raw_fd(), src, MsgFlags::MSG_NOSIGNAL)
    }

    fn send_with_fd(&mut self, src: &[u8], fd: RawFd) -> nix::Result<usize> {
        let fds = [fd];
        let iov = [io::IoSlice::new(src)];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
    }

    fn recv(&mut self, dst: &mut [u8]) -> nix::Result<usize> {
        let flags = if self.seqpacket { MsgFlags::MSG_TRUNC } else { MsgFlags::empty() };
        recv(self.fd.as_raw_fd(), dst, flags)
    }

    fn hung_up(&self) -> bool {
        peer_hung_up(self.fd.as_fd())
    }

    fn shutdown_write(&mut self) {
        let _ = shutdown(self.fd.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    }

    fn connecting(&self) -> bool {
        self.connecting
    }

    fn connect_result(&mut self) -> Result<(), RouteError> {
        self.connecting = false;
        route::connect_result(&self.fd)
    }
}

impl Pollable for Backend {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(&mut SourceFd(&self.fd.as_raw_fd()), token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(&mut SourceFd(&self.fd.as_raw_fd()), token, interest)
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.fd.as_raw_fd()));
    }
}

/// Has the peer of `fd` shut down its writing side? (poll with no wait, `POLLRDHUP`.)
fn peer_hung_up(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // nix has no name for POLLRDHUP; the bit is Linux's.
    let rdhup = PollFlags::from_bits_retain(nix::libc::POLLRDHUP);
    let mut fds = [PollFd::new(fd, rdhup)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds
            .first()
            .and_then(PollFd::revents)
            .is_some_and(|r| r.intersects(rdhup | PollFlags::POLLHUP | PollFlags::POLLERR)),
        _ => false,
    }
}

/// The `Errno` of an `io::Error` from a system call (`EAGAIN` for `WouldBlock`, whatever made
/// it).
#[must_use]
pub fn errno_of(e: &io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n),
        None if e.kind() == io::ErrorKind::WouldBlock => Errno::EAGAIN,
        None => Errno::UnknownErrno,
    }
}
