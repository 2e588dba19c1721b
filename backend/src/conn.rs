//! The backend library: one [`Listener`] for every way the gateway reaches a backend, and one
//! [`Connection`] type with the same operations whichever way it came. The C ABI
//! (`backend/capi/`, `wsgate_backend.h`) is a thin layer over this module.
//!
//! * **Direct mode** (`Options::direct`, the gateway's `--direct`): the gateway hands over the
//!   client's TCP socket ([`super::direct::Receiver`]); the connection is then a WebSocket
//!   server endpoint on it ([`super::direct::Endpoint`]): pings are answered inside, the
//!   closing handshake is run inside, text is checked as UTF-8. A connection that comes without
//!   a socket (the gateway relays this endpoint) is served in `Options::mode`, as ouistiti's
//!   interposer did.
//! * **Relay modes** (`stream`, `lines`, `framed`, `seqpacket`): the gateway speaks WebSocket
//!   and the connection decodes its relay stream ([`super::message`]); the gateway answers
//!   pings. Only `framed` carries message types and close codes both ways; in the other modes
//!   a message received is text and closing is ending the stream (the gateway then closes the
//!   client with its own code).
//!
//! Everything is non-blocking and meant for the caller's own poll loop: [`Listener`] and
//! [`Connection`] are [`AsRawFd`]; an operation that would block returns
//! [`std::io::ErrorKind::WouldBlock`], and [`Connection::wants_write`] says when to wait for
//! writability too. A hand-over record (or a relayed connection's context) may arrive in
//! pieces: the listener keeps such connections in a small table of its own (at most
//! `max_pending`), behind its one descriptor (a mio poll, itself pollable), and
//! [`Listener::accept`] returns only connections whose socket and context are there; so the
//! descriptor of a connection never changes. Call [`Connection::recv`] until `WouldBlock`
//! before waiting on a connection, and right after `accept`: bytes may already wait inside
//! (the client's early frames, messages that came with the context).
//!
//! Memory is bounded by [`Options`]: per connection a read buffer, one message being
//! reassembled (at most `max_message`), the messages decoded from one read waiting to be
//! taken, and at most `max_queue` bytes of output.
//!
//! What it does not own: timers (bound the time a connection may stay
//! [`Connection::is_closing`]; a pending hand-over that never completes holds one of the
//! `max_pending` slots: only the gateway, or the socket's owner and group, can connect), and
//! what the messages mean.
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::direct::{self, Endpoint, Incoming, Receiver, Taken};
use super::message::{DecodeError, Kind};
use super::sock::{self, Sock};
use super::{context, SocketFile};
use crate::sys::listen;
use wsgate::relay::codec::Mode;
use wsgate::ws::frame::{close_code, is_valid_close_code, FrameHeader, MAX_CONTROL_PAYLOAD};
use wsgate::ws::session::ProtocolError;

mod relay;
use relay::Relay;

/// The default largest message received: 1 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;
/// The default output queue: 1 MiB (a message of `max_message` must fit, with its header).
pub const DEFAULT_MAX_QUEUE: usize = (1 << 20) + 64;
/// The default number of connections whose hand-over (or context) is still arriving.
pub const DEFAULT_MAX_PENDING: usize = 32;
/// The default listen backlog: the largest the system allows (`SOMAXCONN`; the kernel caps it
/// at `net.core.somaxconn`, 4096 since Linux 5.4, 128 before). A gateway connects to its backend
/// the moment a client's request is read, so when every device reconnects at once (a router
/// that rebooted) connections arrive faster than any loop accepts them. The limit costs nothing
/// until connections wait in it.
pub const DEFAULT_BACKLOG: i32 = nix::libc::SOMAXCONN;
/// Bytes read at a time from a handed-over client socket.
const DIRECT_READ_LEN: usize = 16 * 1024;
/// Queued messages (decoded from one read) keep at most this much capacity once taken.
const KEEP_CAPACITY: usize = 64 * 1024;
/// The token of the listening socket in the listener's poll.
const LISTEN: Token = Token(usize::MAX);

/// How connections come and what they may hold.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Expect the client's socket (the gateway's `--direct`); a connection that comes without
    /// one is relayed in `mode`. Such a connection is recognised by its first bytes (the
    /// context with the gateway's `--context`, else the client's first message): until then it
    /// holds a `max_pending` slot, so a relaying gateway should send the context.
    pub direct: bool,
    /// The relay mode (the gateway's `-m` for this endpoint); `seqpacket` makes a
    /// `SOCK_SEQPACKET` socket, and cannot be combined with `direct`.
    pub mode: Mode,
    /// The gateway sends the connection context (`--context`): wait for it before handing a
    /// relayed connection out (in `framed` mode a context record is recognised anyway).
    pub context: bool,
    /// Largest message received; a bigger one fails the connection (close 1009 where a code can
    /// be sent).
    pub max_message: usize,
    /// Most bytes waiting to be written per connection.
    pub max_queue: usize,
    /// Most connections whose hand-over or context is still arriving.
    pub max_pending: usize,
    /// The listen backlog.
    pub backlog: i32,
}

impl Options {
    /// Relay mode `mode` (or direct mode, relaying in `mode` when no socket comes) with the
    /// default limits.
    #[must_use]
    pub fn new(mode: Mode, direct: bool) -> Self {
        Self {
            direct,
            mode,
            context: false,
            max_message: DEFAULT_MAX_MESSAGE,
            max_queue: DEFAULT_MAX_QUEUE,
            max_pending: DEFAULT_MAX_PENDING,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// A connection whose socket or context is still arriving.
#[derive(Debug)]
enum Pending {
    /// Direct mode: the hand-over record so far.
    Handover(Sock, Receiver),
    /// A relayed connection waiting for its context.
    Context(Box<Relay>),
}

/// The backend's listening socket, with the connections still being taken.
#[derive(Debug)]
pub struct Listener {
    poll: Poll,
    events: Events,
    sock: sock::Listener,
    options: Options,
    pending: Vec<Option<Pending>>,
    /// Pending slots with events, being processed (kept to reuse its memory).
    touched: Vec<usize>,
    /// Connections complete, not yet returned by `accept`.
    ready: VecDeque<Connection>,
    /// The listening socket may have connections waiting (not drained to `WouldBlock`).
    accept_more: bool,
    /// Connections dropped because their hand-over or stream was bad.
    rejected: u64,
    /// The socket file, removed on drop (when bound by [`Listener::bind`]).
    _file: Option<SocketFile>,
}

impl Listener {
    /// Creates the socket at `path` (mode 0660; a dead socket there is replaced, anything else
    /// is left alone) and listens.
    ///
    /// # Errors
    /// `InvalidInput` for `direct` with `seqpacket`; `AddrInUse` when a live socket is at the
    /// path, `AlreadyExists` for a file that is not a socket, or the system call's error.
    pub fn bind(path: &Path, options: Options) -> std::io::Result<Self> {
        check_options(&options)?;
        let fd = listen::listen_unix(path, super::socket_kind(options.mode), options.backlog, None)
            .map_err(|e| match e {
                listen::ListenError::AddrInUse(_) => {
                    std::io::Error::new(ErrorKind::AddrInUse, e.to_string())
                }
                listen::ListenError::NotASocket(_) => {
                    std::io::Error::new(ErrorKind::AlreadyExists, e.to_string())
                }
                listen::ListenError::Os { source, .. } => source,
            })?;
        let file = SocketFile::new(path).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut listener = Self::new(super::listener(fd, options.mode), options)?;
        listener._file = Some(file);
        Ok(listener)
    }

    /// A listener on a socket made elsewhere (e.g. by [`super::start`], which also drops
    /// privileges); the socket's type must be the one `options.mode` needs.
    ///
    /// # Errors
    /// `InvalidInput` for `direct` with `seqpacket`, or the poll's error.
    pub fn new(mut sock: sock::Listener, options: Options) -> std::io::Result<Self> {
        check_options(&options)?;
        let poll = Poll::new()?;
        sock.register(poll.registry(), LISTEN)?;
        let slots = options.max_pending.max(1);
        Ok(Self {
            poll,
            events: Events::with_capacity(slots + 1),
            sock,
            options,
            pending: (0..slots).map(|_| None).collect(),
            touched: Vec::with_capacity(slots + 1),
            ready: VecDeque::with_capacity(slots),
            accept_more: true,
            rejected: 0,
            _file: None,
        })
    }

    /// The options it was made with.
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Connections dropped so far because their hand-over record or stream was bad (the
    /// gateway is not one that this listener's options expect, or something else connected).
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The next connection that is complete. Call it when the descriptor is readable, until it
    /// returns `WouldBlock` (like `accept(2)` on a non-blocking socket).
    ///
    /// # Errors
    /// `WouldBlock` when none is complete yet; the `accept` error (out of descriptors or
    /// memory: try again later).
    pub fn accept(&mut self) -> std::io::Result<Connection> {
        if let Some(c) = self.ready.pop_front() {
            return Ok(c);
        }
        match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut touched = core::mem::take(&mut self.touched);
        for event in &self.events {
            match event.token() {
                LISTEN => self.accept_more = true,
                Token(idx) => touched.push(idx),
            }
        }
        for idx in touched.drain(..) {
            self.advance(idx);
        }
        self.touched = touched;
        if self.accept_more {
            self.accept_new()?;
        }
        self.ready.pop_front().ok_or_else(|| ErrorKind::WouldBlock.into())
    }

    /// Accepts from the socket while there is room for what comes.
    fn accept_new(&mut self) -> std::io::Result<()> {
        let needs_waiting = self.options.direct || self.options.context;
        while self.ready.len() < self.pending.len() {
            let free = self.pending.iter().position(Option::is_none);
            if needs_waiting && free.is_none() {
                // The table is full: accept again when a slot frees (accept_more stays set).
                return Ok(());
            }
            let mut sock = match self.sock.accept() {
                Ok(sock) => sock,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.accept_more = false;
                    return Ok(());
                }
                Err(e)
                    if e.kind() == ErrorKind::Interrupted
                        || e.kind() == ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) if self.ready.is_empty() => return Err(e),
                Err(_) => return Ok(()),
            };
            let (Some(idx), true) = (free, needs_waiting) else {
                match Relay::new(sock, &self.options) {
                    Some(relay) => self.ready.push_back(Connection::relay(relay)),
                    None => self.rejected += 1,
                }
                continue;
            };
            if sock.register(self.poll.registry(), Token(idx), Interest::READABLE).is_err() {
                self.rejected += 1;
                continue;
            }
            let pending = if self.options.direct {
                Some(Pending::Handover(sock, Receiver::new(direct::MAX_EARLY_DATA)))
            } else {
                Relay::new(sock, &self.options).map(|r| Pending::Context(Box::new(r)))
            };
            if let Some(slot) = self.pending.get_mut(idx) {
                *slot = pending;
            }
            // What came before the registration is read now (readiness is edge-triggered).
            self.advance(idx);
        }
        Ok(())
    }

    /// Reads what pending connection `idx` has; a complete one moves to `ready`.
    fn advance(&mut self, idx: usize) {
        let Some(slot) = self.pending.get_mut(idx) else { return };
        let Some(pending) = slot.take() else { return };
        let (fd, conn) = match pending {
            Pending::Handover(sock, mut rx) => {
                let taken = match &sock {
                    Sock::Stream(unix) => rx.receive(unix),
                    Sock::Packet(_) => Err(direct::HandoverError::Truncated),
                    Sock::Tcp(_) => {
                        Err(direct::HandoverError::BadDescriptor("not a UNIX stream connection"))
                    }
                };
                match taken {
                    Ok(None) => {
                        *slot = Some(Pending::Handover(sock, rx));
                        return;
                    }
                    Ok(Some(Taken::Direct(handover))) => {
                        // The UNIX connection has served its purpose: deregistered, closed.
                        let _ = self.poll.registry().deregister(&mut SourceFd(&sock.as_raw_fd()));
                        drop(sock);
                        (None, Connection::direct(handover, &self.options))
                    }
                    Ok(Some(Taken::Relay(first))) => {
                        let fd = Some(sock.as_raw_fd());
                        match Relay::new(sock, &self.options) {
                            Some(mut relay) => {
                                relay.feed(&first);
                                if relay.waits_for_context() {
                                    *slot = Some(Pending::Context(Box::new(relay)));
                                    return;
                                }
                                (fd, Some(Connection::relay(relay)))
                            }
                            None => (fd, None),
                        }
                    }
                    Err(_) => {
                        let _ = self.poll.registry().deregister(&mut SourceFd(&sock.as_raw_fd()));
                        (None, None)
                    }
                }
            }
            Pending::Context(mut relay) => {
                relay.fill_context();
                if relay.waits_for_context() {
                    *slot = Some(Pending::Context(relay));
                    return;
                }
                (Some(relay.sock.as_raw_fd()), Some(Connection::relay(*relay)))
            }
        };
        // The caller polls the connection's descriptor from now on, not this poll (the
        // descriptor is still open here: a relayed connection's is in `conn`).
        if let Some(fd) = fd {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        match conn {
            Some(conn) => self.ready.push_back(conn),
            None => self.rejected += 1,
        }
    }
}

impl AsRawFd for Listener {
    /// The descriptor to poll for readability: new connections, or hand-overs progressing.
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

fn check_options(options: &Options) -> std::io::Result<()> {
    if options.direct && options.mode == Mode::SeqPacket {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "direct mode takes the socket over a stream connection, not seqpacket",
        ));
    }
    Ok(())
}

/// What [`Connection::recv`] found.
#[derive(Debug)]
pub enum Received<'a> {
    /// A whole message (text is valid UTF-8 in direct mode; in the relay modes the gateway
    /// checked it). Lent until the next call.
    Message(Kind, &'a [u8]),
    /// The client closed, with this code (`None`: no code); the answer is queued. Go on
    /// calling `recv` (or `flush`) until [`Received::Done`].
    Closed(Option<u16>),
    /// The connection failed; a close with [`Failure::close_code`] is queued where a code can
    /// be sent. Go on until [`Received::Done`].
    Failed(Failure),
    /// The connection is over: drop it.
    Done,
}

/// Why a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Direct mode: the client broke RFC 6455 (or sent a message over `max_message`).
    Protocol(ProtocolError),
    /// A relay mode: the stream from the gateway could not be decoded (or held a message over
    /// `max_message`).
    Relay(DecodeError),
}

impl Failure {
    /// The close code sent (or that would have been sent) for it.
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(e) => e.close_code(),
            Self::Relay(DecodeError::TooBig(_)) => close_code::TOO_BIG,
            Self::Relay(_) => close_code::INTERNAL_ERROR,
        }
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Protocol(e) => e.fmt(f),
            Self::Relay(e) => e.fmt(f),
        }
    }
}

/// One client, handed over or relayed.
#[derive(Debug)]
pub struct Connection {
    inner: Inner,
    /// The context's `NAME=value` lines (empty when none came).
    context: Vec<u8>,
    max_queue: usize,
}

#[derive(Debug)]
enum Inner {
    Direct(Box<Endpoint<std::net::TcpStream>>),
    Relay(Box<Relay>),
}

impl Connection {
    fn direct(handover: direct::Handover, options: &Options) -> Option<Self> {
        let context = handover.lines().to_vec();
        let early = handover.early().to_vec();
        let tcp = std::net::TcpStream::from(handover.client);
        tcp.set_nonblocking(true).ok()?;
        let limits = direct::Limits {
            max_message: options.max_message,
            max_queue: options.max_queue,
            read_len: DIRECT_READ_LEN,
        };
        let ep = Endpoint::new(tcp, &early, limits).ok()?;
        Some(Self { inner: Inner::Direct(Box::new(ep)), context, max_queue: options.max_queue })
    }

    fn relay(mut relay: Relay) -> Self {
        let context = relay.context.take().unwrap_or_default();
        let max_queue = relay.out.capacity();
        Self { inner: Inner::Relay(Box::new(relay)), context, max_queue }
    }

    /// The client's socket was handed over (direct mode), rather than relayed.
    #[must_use]
    pub fn is_direct(&self) -> bool {
        matches!(self.inner, Inner::Direct(_))
    }

    /// The connection context: `NAME=value` lines (the hand-over record's in direct mode, the
    /// relayed context otherwise; empty when the gateway sent none).
    #[must_use]
    pub fn context(&self) -> &[u8] {
        &self.context
    }

    /// A value of the context: `REMOTE_ADDR`, `REMOTE_PORT`, `SERVER_PORT`, `REQUEST_URI`,
    /// `SCRIPT_NAME`, `QUERY_STRING`, `HTTP_HOST`, `HTTP_ORIGIN`, `SEC_WEBSOCKET_PROTOCOL`,
    /// `HTTPS`, and the headers the gateway was told to pass.
    #[must_use]
    pub fn value(&self, name: &str) -> Option<&str> {
        context::value(&self.context, name)
    }

    /// The client's address and port.
    #[must_use]
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        context::peer(&self.context)
    }

    /// The endpoint's path (`SCRIPT_NAME`, e.g. `/chat`).
    #[must_use]
    pub fn path(&self) -> Option<&str> {
        self.value("SCRIPT_NAME")
    }

    /// The query string, without `?`.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.value("QUERY_STRING")
    }

    /// The subprotocol the gateway chose, if any.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.value("SEC_WEBSOCKET_PROTOCOL")
    }

    /// Reads and decodes up to the next event; writes what waits first (pongs, answers).
    ///
    /// # Errors
    /// `WouldBlock`: wait for readability (and writability when [`Self::wants_write`]). Any
    /// other error is the socket's: the connection is over, drop it.
    pub fn recv(&mut self) -> std::io::Result<Received<'_>> {
        match &mut self.inner {
            Inner::Direct(ep) => recv_direct(ep, self.max_queue),
            Inner::Relay(relay) => relay.recv(),
        }
    }

    /// Queues a message and writes what it can.
    ///
    /// # Errors
    /// `WouldBlock` when the queue is full (wait for writability, [`Self::flush`], try
    /// again); `InvalidInput` for a message that can never fit the queue (`max_queue`);
    /// `NotConnected` once the connection is closing; or the socket's error.
    pub fn send(&mut self, kind: Kind, data: &[u8]) -> std::io::Result<()> {
        if !self.is_open() {
            return Err(ErrorKind::NotConnected.into());
        }
        // A full queue may drain on a flush: one more try after it.
        for retry in [false, true] {
            if retry {
                self.flush()?;
            }
            let fits = match &mut self.inner {
                Inner::Direct(ep) => ep.send(kind, data),
                Inner::Relay(relay) => relay.out.push(kind, data),
            };
            if fits {
                self.flush()?;
                return Ok(());
            }
        }
        let framing = FrameHeader::server_header_len(data.len() as u64) + 1;
        if data.len().saturating_add(framing) > self.max_queue {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                "message larger than the queue",
            ));
        }
        Err(ErrorKind::WouldBlock.into())
    }

    /// Starts closing with `code` and `reason` (cut to fit a close frame, on a character
    /// boundary): a close frame in direct mode, a close record in `framed` mode; in the other
    /// relay modes the code cannot be carried and the stream is ended. Then go on calling
    /// `recv` until [`Received::Done`] (the client's answer is awaited).
    ///
    /// # Errors
    /// `InvalidInput` for a code that may not be sent (RFC 6455 §7.4: 1000-1003, 1007-1011,
    /// 3000-4999); or the socket's error.
    pub fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        if !is_valid_close_code(code) {
            return Err(std::io::Error::new(ErrorKind::InvalidInput, "invalid close code"));
        }
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = reason.get(..end).unwrap_or_default();
        match &mut self.inner {
            Inner::Direct(ep) => ep.close(code, reason),
            Inner::Relay(relay) => relay.close(code, reason),
        }
        self.flush().map(drop)
    }

    /// Writes what is queued until the socket would block; whether anything was written.
    ///
    /// # Errors
    /// The socket's error: the connection is over.
    pub fn flush(&mut self) -> std::io::Result<bool> {
        match &mut self.inner {
            Inner::Direct(ep) => ep.flush(),
            Inner::Relay(relay) => relay.flush(),
        }
    }

    /// Messages may be sent (no close sent or received, no failure).
    #[must_use]
    pub fn is_open(&self) -> bool {
        match &self.inner {
            Inner::Direct(ep) => ep.is_open(),
            Inner::Relay(relay) => relay.is_open(),
        }
    }

    /// The closing handshake has started (bound its time).
    #[must_use]
    pub fn is_closing(&self) -> bool {
        !self.is_open()
    }

    /// The connection is over: drop it.
    #[must_use]
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Inner::Direct(ep) => ep.is_done(),
            Inner::Relay(relay) => relay.is_done(),
        }
    }

    /// Bytes waiting to be written.
    #[must_use]
    pub fn pending(&self) -> usize {
        match &self.inner {
            Inner::Direct(ep) => ep.pending(),
            Inner::Relay(relay) => relay.out.pending(),
        }
    }

    /// Something waits to be written: wait for writability too.
    #[must_use]
    pub fn wants_write(&self) -> bool {
        match &self.inner {
            Inner::Direct(ep) => ep.wants_write(),
            Inner::Relay(relay) => relay.wants_write(),
        }
    }
}

impl AsRawFd for Connection {
    /// The socket to poll: the client's TCP socket in direct mode, the gateway's UNIX
    /// connection otherwise. It does not change during the connection's life.
    fn as_raw_fd(&self) -> RawFd {
        match &self.inner {
            Inner::Direct(ep) => ep.io().as_raw_fd(),
            Inner::Relay(relay) => relay.sock.as_raw_fd(),
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            Inner::Direct(ep) => ep.io().as_fd(),
            Inner::Relay(relay) => relay.sock.as_fd(),
        }
    }
}

fn recv_direct(
    ep: &mut Endpoint<std::net::TcpStream>,
    max_queue: usize,
) -> std::io::Result<Received<'_>> {
    let decoded = loop {
        ep.flush()?;
        if ep.is_done() {
            return Ok(Received::Done);
        }
        // Decoding makes answers (pongs, a close): not while the queue is over its limit.
        if ep.pending() <= max_queue {
            if let Some(d) = ep.decode_next() {
                break d;
            }
        }
        if !ep.read()? {
            // The buffer is full behind a blocked write, or the socket has nothing.
            return Err(ErrorKind::WouldBlock.into());
        }
    };
    // A close or a failure queued its answer: out it goes now. (Writing leaves the decoded
    // message's bytes where they are.) A client that closed and left at once makes this write
    // fail: the event is still told; the endpoint is then done.
    let _ = ep.flush();
    Ok(match ep.incoming(&decoded) {
        Incoming::Message(kind, data) => Received::Message(kind, data),
        Incoming::Closed(code) => Received::Closed(code),
        Incoming::Failed(e) => Received::Failed(Failure::Protocol(e)),
    })
}

#[cfg(test)]
mod tests;
