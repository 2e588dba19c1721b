//! A single-threaded loop for message-oriented sample servers (`websocket_chat`,
//! `websocket_jsonrpc`): it accepts the gateway's connections, turns each client's bytes into
//! messages, hands them to a [`Service`], and writes what the service queued.
//!
//! A client comes one of two ways, and a service cannot tell which:
//!
//! * relayed (the gateway's relay modes): its bytes are decoded by a
//!   [`super::message::Decoder`] and messages go out through a [`super::message::Outbox`];
//! * handed over (direct mode, [`Server::new`] with `direct`): the gateway sends the client's
//!   own socket and a hand-over record ([`super::direct::Receiver`]); the record's lines are
//!   the client's connection context, and the server speaks WebSocket on the socket itself
//!   ([`super::direct::Endpoint`]). With `direct` a connection that brings no socket is served
//!   as relayed, so one server can stand behind a direct gateway and a relaying one at once.
//!   Until a connection's first bytes come its kind is not known: messages for it are held
//!   (within its queue limit) and queued in its encoding once it is. A relayed client without
//!   the connection context (the gateway's `--context`) shows itself with its first message
//!   only, so it receives what others send from then on.
//!
//! Everything is bounded by [`Limits`]: at most `max_clients` clients (more wait in the listen
//! backlog), messages of at most `max_message` bytes (a bigger one closes its client, with
//! close 1009 in `framed` mode and in direct mode), and at most `max_queue` bytes waiting for
//! each client. A client whose queue is more than half full is not read from until it drains
//! (backpressure); a message that does not fit a client's queue at all disconnects that
//! client (it does not keep up). A client's read buffer ([`READ_LEN`], or `max_message` in
//! `seqpacket` mode, at most `max_message` in `stream` mode where a read is a message) is
//! allocated when it connects (in direct mode, when its first bytes come); message and queue
//! buffers grow on use. In direct mode a closing handshake that is not over within
//! [`CLOSE_TIMEOUT`] ends its client.
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use nix::sys::signalfd::SignalFd;

use super::direct::{self, Endpoint, HandoverError, Incoming, Receiver, Taken};
use super::message::{DecodeError, Decoder, Event, Kind, Outbox};
use super::sock::{Listener, Sock, SockError};
use super::{say, take_signal, Fatal};
use wsgate::relay::codec::Mode;
use wsgate::ws::session::{DataKind, ProtocolError};

/// Bytes read at a time in the byte-stream modes (in `stream` mode, the largest message) and
/// the read buffer of a direct client.
pub const READ_LEN: usize = 16 * 1024;
/// Direct mode: the longest a closing handshake may take before its client is dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads plus writes one client may do per loop turn before the others get theirs.
const TURN_BUDGET: usize = 16;
/// `framed`: close 1009 "message too big".
const CLOSE_TOO_BIG: [u8; 2] = [0x03, 0xf1];
/// A held message's header: its type (1 byte) and length (4 bytes, big-endian).
const HELD_HEADER: usize = 5;

/// The fixed limits of a server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most clients at once.
    pub max_clients: usize,
    /// Largest message (and connection context) read, in bytes.
    pub max_message: usize,
    /// Most bytes waiting to be written to one client.
    pub max_queue: usize,
}

/// What a server does with messages. Every callback may queue messages for any client
/// through [`Clients`].
pub trait Service {
    /// The connection context of client `id` arrived (before any of its messages): the
    /// `NAME=value` lines of the gateway's `--context`, or of a direct client's hand-over
    /// record (the same names, and `EARLY_DATA_LENGTH`).
    fn context(&mut self, id: usize, context: &[u8], clients: &mut Clients<'_>);
    /// Client `id` sent a message.
    fn message(&mut self, id: usize, kind: Kind, data: &[u8], clients: &mut Clients<'_>);
    /// Client `id` is gone (already removed from `clients`).
    fn closed(&mut self, id: usize, clients: &mut Clients<'_>);
}

/// Why a client ended.
#[derive(Debug)]
enum Gone {
    Done,
    Closed,
    Kicked(&'static str),
    TooSlow,
    Decode(DecodeError),
    Sock(SockError),
    /// Direct mode: the gateway's hand-over could not be taken.
    Handover(HandoverError),
    /// Direct mode: the client broke the protocol; the close with its code was sent.
    Protocol(ProtocolError),
    /// Direct mode: the closing handshake took longer than [`CLOSE_TIMEOUT`].
    CloseTimeout,
}

impl core::fmt::Display for Gone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Done => f.write_str("end of stream"),
            Self::Closed => f.write_str("close answered"),
            Self::Kicked(why) => f.write_str(why),
            Self::TooSlow => f.write_str("its queue is full (it does not read fast enough)"),
            Self::Decode(e) => e.fmt(f),
            Self::Sock(e) => e.fmt(f),
            Self::Handover(e) => e.fmt(f),
            Self::Protocol(e) => write!(f, "{e}, answered with close {}", e.close_code()),
            Self::CloseTimeout => f.write_str("closing handshake timed out"),
        }
    }
}

#[derive(Debug)]
struct Client {
    link: Link,
    interest: Interest,
    /// Relayed: ends once its queue is written (a close was answered or the service said so).
    /// Direct: the reason to give once the endpoint is done.
    closing: Option<Gone>,
    /// Ends now (at the end of the current step).
    doomed: Option<Gone>,
    /// In the list of clients to flush.
    dirty: bool,
}

/// How the client's bytes travel.
#[derive(Debug)]
enum Link {
    /// Through the gateway, in a relay mode.
    Relay(Box<Relay>),
    /// Direct mode: the gateway's first bytes are still to come.
    Pending(Box<Pending>),
    /// Direct mode: on the client's own socket.
    Direct(Box<Direct>),
}

#[derive(Debug)]
struct Relay {
    sock: Sock,
    /// Taken out while its bytes are handed to the service.
    input: Option<Input>,
    out: Outbox,
    eof: bool,
}

#[derive(Debug)]
struct Input {
    buf: Box<[u8]>,
    decoder: Decoder,
}

#[derive(Debug)]
struct Pending {
    sock: Sock,
    rx: Receiver,
    held: Held,
}

#[derive(Debug)]
struct Direct {
    ep: Endpoint<mio::net::TcpStream>,
    /// When the closing handshake started.
    closing_since: Option<Instant>,
}

/// Messages for a client whose kind is not known yet, kept as they were sent (at most `cap`
/// bytes with their headers), to be queued in its encoding once it is known.
#[derive(Debug)]
struct Held {
    buf: Vec<u8>,
    cap: usize,
}

impl Held {
    fn push(&mut self, kind: Kind, data: &[u8]) -> bool {
        let Ok(len) = u32::try_from(data.len()) else { return false };
        let total = HELD_HEADER.saturating_add(data.len());
        if self.buf.len().saturating_add(total) > self.cap || self.buf.try_reserve(total).is_err() {
            return false;
        }
        self.buf.push(u8::from(kind == Kind::Binary));
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(data);
        true
    }
}

/// The messages of a [`Held`] buffer, in order.
fn held_messages(buf: &[u8]) -> impl Iterator<Item = (Kind, &[u8])> + '_ {
    let mut rest = buf;
    core::iter::from_fn(move || {
        let (head, tail) = rest.split_first_chunk::<HELD_HEADER>()?;
        let [kind, len @ ..] = *head;
        let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
        let data = tail.get(..len)?;
        rest = tail.get(len..).unwrap_or_default();
        Some((if kind == 1 { Kind::Binary } else { Kind::Text }, data))
    })
}

impl Client {
    /// Bytes waiting to be written.
    fn pending(&self) -> usize {
        match &self.link {
            Link::Relay(r) => r.out.pending(),
            Link::Pending(_) => 0,
            Link::Direct(d) => d.ep.pending(),
        }
    }

    /// Not read from while more than half of `max_queue` waits to be written.
    fn backpressured(&self, max_queue: usize) -> bool {
        self.pending() > max_queue / 2
    }

    fn wants_read(&self, max_queue: usize) -> bool {
        if self.doomed.is_some() || self.backpressured(max_queue) {
            return false;
        }
        match &self.link {
            Link::Relay(r) => !r.eof && self.closing.is_none(),
            Link::Pending(_) => true,
            // The endpoint reads on through the closing handshake, for the client's close.
            Link::Direct(d) => d.ep.wants_read(),
        }
    }

    fn wanted(&self) -> Interest {
        let write = match &self.link {
            Link::Relay(r) => r.out.pending() > 0,
            Link::Pending(_) => false,
            Link::Direct(d) => d.ep.wants_write(),
        };
        if write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Queues a message as it is; `false` when it does not fit.
    fn push(&mut self, kind: Kind, data: &[u8]) -> bool {
        match &mut self.link {
            Link::Relay(r) => r.out.push(kind, data),
            Link::Pending(p) => p.held.push(kind, data),
            Link::Direct(d) => d.ep.send(data_kind(kind), data),
        }
    }

    /// Queues a message; when the queue is full, writes what waits and tries again, and a
    /// client whose queue still cannot take it is doomed: only a client that really does not
    /// read is dropped, not one whose queue filled within one turn.
    fn queue(&mut self, kind: Kind, data: &[u8]) -> bool {
        if self.doomed.is_some() {
            return false;
        }
        if let Link::Direct(d) = &self.link {
            if !d.ep.is_open() {
                return false;
            }
        }
        if self.push(kind, data) {
            return true;
        }
        self.write();
        let queued = self.doomed.is_none() && self.push(kind, data);
        if !queued && self.doomed.is_none() {
            self.doomed = Some(Gone::TooSlow);
        }
        queued
    }

    /// Writes what is queued until the socket would block; a failure dooms the client.
    fn write(&mut self) {
        match &mut self.link {
            Link::Relay(r) => {
                while self.doomed.is_none() && r.out.pending() > 0 {
                    match r.sock.write(r.out.front()) {
                        Ok(Some(n)) => r.out.consume(n),
                        Ok(None) => break,
                        Err(e) => self.doomed = Some(Gone::Sock(e)),
                    }
                }
            }
            Link::Pending(_) => {}
            Link::Direct(d) => {
                if let Err(e) = d.ep.flush() {
                    self.doomed = Some(Gone::Sock(sock_error("write", e)));
                }
            }
        }
    }

    /// How the client ends now that its queue was written as far as it goes, if it does.
    fn finished(&mut self) -> Option<Gone> {
        if let Some(gone) = self.doomed.take() {
            return Some(gone);
        }
        match &self.link {
            Link::Relay(r) if r.out.pending() == 0 => {
                if self.closing.is_some() {
                    self.closing.take()
                } else if r.eof {
                    Some(Gone::Done)
                } else {
                    None
                }
            }
            Link::Direct(d) if d.ep.is_done() => Some(self.closing.take().unwrap_or(Gone::Done)),
            Link::Relay(_) | Link::Pending(_) | Link::Direct(_) => None,
        }
    }
}

fn data_kind(kind: Kind) -> DataKind {
    match kind {
        Kind::Text => DataKind::Text,
        Kind::Binary => DataKind::Binary,
    }
}

fn message_kind(kind: DataKind) -> Kind {
    match kind {
        DataKind::Text => Kind::Text,
        DataKind::Binary => Kind::Binary,
    }
}

fn sock_error(op: &'static str, e: std::io::Error) -> SockError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => SockError::Reset,
        _ => SockError::Io(op, e),
    }
}

/// The clients, as a service sees them: who is there, and their queues.
#[derive(Debug)]
pub struct Clients<'a> {
    slots: &'a mut [Option<Client>],
    dirty: &'a mut Vec<usize>,
}

impl Clients<'_> {
    /// Queues a message for client `id`. A client whose queue cannot take it is disconnected;
    /// `false` then, or when there is no such client (or it is closing).
    pub fn send(&mut self, id: usize, kind: Kind, data: &[u8]) -> bool {
        let Some(Some(c)) = self.slots.get_mut(id) else { return false };
        let queued = c.queue(kind, data);
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(id);
        }
        queued
    }

    /// Closes client `id` with `code`: a relayed one once what is queued for it is written
    /// (with a close record carrying `code` in `framed` mode), a direct one with the closing
    /// handshake; a client whose kind is not known yet at once.
    pub fn close(&mut self, id: usize, code: u16, why: &'static str) {
        let Some(Some(c)) = self.slots.get_mut(id) else { return };
        if c.closing.is_some() || c.doomed.is_some() {
            return;
        }
        match &mut c.link {
            Link::Relay(r) => {
                let _ = r.out.push_close(&code.to_be_bytes());
                c.closing = Some(Gone::Kicked(why));
            }
            Link::Pending(_) => c.doomed = Some(Gone::Kicked(why)),
            Link::Direct(d) => {
                d.ep.close(code, why);
                c.closing = Some(Gone::Kicked(why));
            }
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Whether client `id` is connected and not on its way out.
    #[must_use]
    pub fn is_open(&self, id: usize) -> bool {
        matches!(self.slots.get(id), Some(Some(c)) if is_open(c))
    }

    /// The ids of the connected clients (not those on their way out).
    pub fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, c)| match c {
            Some(c) if is_open(c) => Some(i),
            _ => None,
        })
    }
}

fn is_open(c: &Client) -> bool {
    c.doomed.is_none()
        && c.closing.is_none()
        && match &c.link {
            Link::Direct(d) => d.ep.is_open(),
            Link::Relay(_) | Link::Pending(_) => true,
        }
}

/// The server's loop state.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listener: Listener,
    mode: Mode,
    limits: Limits,
    context: bool,
    /// Connections may bring the client's socket (direct mode).
    direct: bool,
    verbose: bool,
    clients: Vec<Option<Client>>,
    /// Clients with queued output, to write at the end of the step.
    dirty: Vec<usize>,
    /// Clients whose budget ran out, to run again on the next turn; `spare` is its swap
    /// partner, so neither is reallocated in the loop.
    again: Vec<usize>,
    spare: Vec<usize>,
    accept_blocked: bool,
    /// Direct mode: a message being handed to the service (the endpoint that read it stays
    /// reachable for the service's answers); grows on use up to `max_message`.
    scratch: Vec<u8>,
    /// Direct mode: the earliest time a closing handshake may run out, if one is under way.
    next_sweep: Option<Instant>,
}

impl Server {
    /// A server on `listener` (from [`super::start`]) for `mode`; `context` says whether the
    /// gateway sends the connection context in the modes where it cannot be recognised;
    /// `direct` that connections may hand over the client's socket (direct mode; the
    /// listener must be a stream socket).
    ///
    /// # Errors
    /// [`Fatal`] when the poll cannot be made, or for `direct` in `seqpacket` mode.
    pub fn new(
        mut listener: Listener,
        mode: Mode,
        limits: Limits,
        context: bool,
        direct: bool,
        verbose: bool,
    ) -> Result<Self, Fatal> {
        if direct && mode == Mode::SeqPacket {
            return Err(Fatal::new(
                "-d",
                "direct mode takes the socket over a stream connection, not seqpacket",
            ));
        }
        let poll = Poll::new().map_err(|e| Fatal::new("poll", e))?;
        listener
            .register(poll.registry(), Token(limits.max_clients))
            .map_err(|e| Fatal::new("poll", e))?;
        Ok(Self {
            poll,
            listener,
            mode,
            limits,
            context,
            direct,
            verbose,
            clients: (0..limits.max_clients).map(|_| None).collect(),
            dirty: Vec::with_capacity(limits.max_clients),
            again: Vec::with_capacity(limits.max_clients),
            spare: Vec::with_capacity(limits.max_clients),
            accept_blocked: false,
            scratch: Vec::new(),
            next_sweep: None,
        })
    }

    /// Runs until SIGTERM or SIGINT; returns the signal's name.
    ///
    /// # Errors
    /// [`Fatal`] when polling fails.
    pub fn serve(
        &mut self,
        signals: &SignalFd,
        service: &mut dyn Service,
    ) -> Result<&'static str, Fatal> {
        let listener_token = Token(self.limits.max_clients);
        let signal_token = Token(self.limits.max_clients + 1);
        self.poll
            .registry()
            .register(
                &mut mio::unix::SourceFd(&signals.as_raw_fd()),
                signal_token,
                Interest::READABLE,
            )
            .map_err(|e| Fatal::new("poll", e))?;
        let mut events = Events::with_capacity(self.limits.max_clients.max(16));
        loop {
            let timeout = if self.again.is_empty() {
                self.next_sweep.map(|t| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fatal::new("poll", e)),
            }
            if self.next_sweep.is_some_and(|t| t <= Instant::now()) {
                self.sweep(service);
            }
            core::mem::swap(&mut self.again, &mut self.spare);
            for event in &events {
                let token = event.token();
                if token == listener_token {
                    self.accept_all();
                } else if token == signal_token {
                    if let Some(name) = take_signal(signals)? {
                        return Ok(name);
                    }
                } else {
                    self.step(token.0, service);
                }
            }
            while let Some(idx) = self.spare.pop() {
                self.step(idx, service);
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            let Some(idx) = self.clients.iter().position(Option::is_none) else {
                self.accept_blocked = true;
                return;
            };
            let mut sock = match self.listener.accept() {
                Ok(sock) => sock,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.accept_blocked = false;
                    return;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::Interrupted
                        || e.kind() == std::io::ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) => {
                    say(format_args!("accept: {e}"));
                    self.accept_blocked = true;
                    return;
                }
            };
            // A relayed client's buffer now; a direct-mode one's when its kind is known.
            let input = if self.direct {
                None
            } else {
                let Some(input) = self.input() else { continue };
                Some(input)
            };
            if let Err(e) = sock.register(self.poll.registry(), Token(idx), Interest::READABLE) {
                say(format_args!("poll register: {e}"));
                continue;
            }
            let link = match input {
                None => Link::Pending(Box::new(Pending {
                    sock,
                    rx: Receiver::new(direct::MAX_EARLY_DATA),
                    held: Held { buf: Vec::new(), cap: self.limits.max_queue },
                })),
                input @ Some(_) => Link::Relay(Box::new(Relay {
                    sock,
                    input,
                    out: Outbox::new(self.mode, self.limits.max_queue),
                    eof: false,
                })),
            };
            let client = Client {
                link,
                interest: Interest::READABLE,
                closing: None,
                doomed: None,
                dirty: false,
            };
            if self.verbose {
                say(format_args!("client {idx} connected"));
            }
            if let Some(slot) = self.clients.get_mut(idx) {
                *slot = Some(client);
                // Data may already be waiting (edge-triggered readiness).
                self.again.push(idx);
            }
        }
    }

    /// A relayed client's read buffer and decoder; `None` (said) when memory is short.
    fn input(&self) -> Option<Input> {
        let len = match self.mode {
            Mode::SeqPacket => self.limits.max_message,
            // A read is a message: no bigger than the limit.
            Mode::Stream => READ_LEN.min(self.limits.max_message),
            Mode::Lines | Mode::Framed => READ_LEN,
        };
        let mut buf = Vec::new();
        if buf.try_reserve_exact(len).is_err() {
            say(format_args!("cannot allocate a {len}-byte buffer for a client"));
            return None;
        }
        buf.resize(len, 0);
        Some(Input {
            buf: buf.into_boxed_slice(),
            decoder: Decoder::new(self.mode, self.limits.max_message, self.context),
        })
    }

    /// Client `idx`'s turn: read and dispatch, then write every queue that got something.
    fn step(&mut self, idx: usize, service: &mut dyn Service) {
        if matches!(self.clients.get(idx), Some(Some(Client { link: Link::Pending(_), .. }))) {
            self.take_handover(idx, service);
        }
        match self.clients.get(idx) {
            Some(Some(Client { link: Link::Relay(_), .. })) => self.read_relay(idx, service),
            Some(Some(Client { link: Link::Direct(_), .. })) => self.read_direct(idx, service),
            _ => {}
        }
        self.dirty.push(idx);
        while let Some(id) = self.dirty.pop() {
            self.flush(id, service);
        }
    }

    /// Direct mode: reads the gateway's first bytes on connection `idx`: once the hand-over
    /// record is complete the client is served on its own socket, its record lines given to
    /// the service as its context; without a socket it is a relayed client. Messages held
    /// for it are queued.
    fn take_handover(&mut self, idx: usize, service: &mut dyn Service) {
        let Some(slot) = self.clients.get_mut(idx) else { return };
        let Some(Client { link: Link::Pending(p), doomed, .. }) = slot else { return };
        let taken = match &p.sock {
            Sock::Stream(unix) => p.rx.receive(unix),
            Sock::Packet(_) => Err(HandoverError::BadDescriptor("not a stream connection")),
        };
        let taken = match taken {
            Ok(Some(taken)) => taken,
            Ok(None) => return,
            Err(e) => {
                *doomed = Some(Gone::Handover(e));
                return;
            }
        };
        let Some(mut client) = slot.take() else { return };
        let Link::Pending(pending) = client.link else { return };
        let Pending { sock, held: Held { buf: held, .. }, .. } = *pending;
        let handover = match taken {
            Taken::Relay(first) => {
                if self.verbose {
                    say(format_args!(
                        "client {idx}: no socket handed over, relaying in {} mode",
                        self.mode
                    ));
                }
                let input = self.input();
                if input.is_none() {
                    client.doomed = Some(Gone::Decode(DecodeError::NoMemory));
                }
                client.link = Link::Relay(Box::new(Relay {
                    sock,
                    input,
                    out: Outbox::new(self.mode, self.limits.max_queue),
                    eof: false,
                }));
                if let Some(slot) = self.clients.get_mut(idx) {
                    *slot = Some(client);
                }
                self.replay(idx, &held);
                self.feed_relay(idx, &first, service);
                return;
            }
            Taken::Direct(handover) => handover,
        };
        let mut unix = sock;
        let _ = unix.deregister(self.poll.registry());
        drop(unix);
        if self.verbose {
            say(format_args!(
                "client {idx}: socket of {} handed over ({} early bytes)",
                handover.value("REMOTE_ADDR").unwrap_or("?"),
                handover.early().len()
            ));
        }
        match self.endpoint(idx, &handover) {
            Ok(ep) => client.link = Link::Direct(Box::new(Direct { ep, closing_since: None })),
            Err(gone) => {
                // The slot is empty already: `end` logs and tells the service.
                self.end(idx, gone, service);
                return;
            }
        }
        if let Some(slot) = self.clients.get_mut(idx) {
            *slot = Some(client);
        }
        self.replay(idx, &held);
        let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
        service.context(idx, handover.lines(), &mut clients);
    }

    /// The WebSocket endpoint on a handed-over socket, registered under `idx`.
    fn endpoint(
        &mut self,
        idx: usize,
        handover: &direct::Handover,
    ) -> Result<Endpoint<mio::net::TcpStream>, Gone> {
        let io_gone = |op, e| Gone::Sock(SockError::Io(op, e));
        // A duplicate: the record (its lines go to the service next) stays whole; the
        // original descriptor is closed with it.
        let fd = handover.client.try_clone().map_err(|e| io_gone("dup", e))?;
        let tcp = std::net::TcpStream::from(fd);
        tcp.set_nonblocking(true).map_err(|e| io_gone("fcntl", e))?;
        let mut tcp = mio::net::TcpStream::from_std(tcp);
        self.poll
            .registry()
            .register(&mut tcp, Token(idx), Interest::READABLE)
            .map_err(|e| io_gone("poll register", e))?;
        let limits = direct::Limits {
            max_message: self.limits.max_message,
            max_queue: self.limits.max_queue,
            read_len: READ_LEN,
        };
        Endpoint::new(tcp, handover.early(), limits).map_err(Gone::Handover)
    }

    /// Queues the messages held for client `idx` before its kind was known.
    fn replay(&mut self, idx: usize, held: &[u8]) {
        let Some(Some(client)) = self.clients.get_mut(idx) else { return };
        for (kind, data) in held_messages(held) {
            if !client.queue(kind, data) {
                break;
            }
        }
    }

    /// Reads relayed client `idx` while it wants to and the budget lasts, handing the events
    /// to the service.
    fn read_relay(&mut self, idx: usize, service: &mut dyn Service) {
        let max_queue = self.limits.max_queue;
        let mut budget = TURN_BUDGET;
        while let Some(Some(client)) = self.clients.get_mut(idx) {
            if !client.wants_read(max_queue) {
                break;
            }
            let Link::Relay(relay) = &mut client.link else { break };
            let Some(mut input) = relay.input.take() else { break };
            if budget == 0 {
                relay.input = Some(input);
                self.again.push(idx);
                break;
            }
            budget -= 1;
            let n = match relay.sock.read(&mut input.buf) {
                Ok(Some(0)) => {
                    relay.eof = true;
                    relay.input = Some(input);
                    break;
                }
                Ok(Some(n)) => n,
                Ok(None) => {
                    relay.input = Some(input);
                    break;
                }
                Err(e) => {
                    relay.input = Some(input);
                    client.doomed = Some(Gone::Sock(e));
                    break;
                }
            };
            let data = input.buf.get(..n).unwrap_or_default();
            let more = self.dispatch_relay(idx, &mut input.decoder, data, service);
            if let Some(Some(Client { link: Link::Relay(relay), .. })) = self.clients.get_mut(idx) {
                relay.input = Some(input);
            }
            if !more {
                break;
            }
        }
    }

    /// Hands `data`, read from relayed client `idx`, to the service (its first bytes, read
    /// with the hand-over check).
    fn feed_relay(&mut self, idx: usize, data: &[u8], service: &mut dyn Service) {
        let Some(Some(Client { link: Link::Relay(relay), .. })) = self.clients.get_mut(idx) else {
            return;
        };
        let Some(mut input) = relay.input.take() else { return };
        self.dispatch_relay(idx, &mut input.decoder, data, service);
        if let Some(Some(Client { link: Link::Relay(relay), .. })) = self.clients.get_mut(idx) {
            relay.input = Some(input);
        }
    }

    /// Decodes `data` of relayed client `idx` and hands the events to the service; `false`
    /// when the client is not to be read any more.
    fn dispatch_relay(
        &mut self,
        idx: usize,
        decoder: &mut Decoder,
        data: &[u8],
        service: &mut dyn Service,
    ) -> bool {
        let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
        let mut close_payload = None;
        let result = decoder.feed(data, &mut |event| match event {
            Event::Context(c) => service.context(idx, c, &mut clients),
            Event::Message(kind, m) => service.message(idx, kind, m, &mut clients),
            Event::Close(p) => close_payload = Some(heapless::Vec::<u8, 125>::from_slice(p)),
        });
        let Some(Some(client)) = self.clients.get_mut(idx) else { return false };
        let Link::Relay(relay) = &mut client.link else { return false };
        if let Some(payload) = close_payload {
            // Answer with the same code (RFC 6455 §5.5.1: echo the status code).
            let code = payload.ok().and_then(|p| p.get(..2).map(<[u8]>::to_vec));
            let _ = relay.out.push_close(code.as_deref().unwrap_or_default());
            client.closing = Some(Gone::Closed);
            self.dirty.push(idx);
        }
        if let Err(e) = result {
            if matches!(e, DecodeError::TooBig(_)) && client.doomed.is_none() {
                let _ = relay.out.push_close(&CLOSE_TOO_BIG);
                client.closing = Some(Gone::Decode(e));
                self.dirty.push(idx);
            } else {
                client.doomed = Some(Gone::Decode(e));
            }
            return false;
        }
        true
    }

    /// Direct client `idx`'s turn: hands the messages read to the service while its queue
    /// has room for answers, and reads while it wants to and the budget lasts.
    fn read_direct(&mut self, idx: usize, service: &mut dyn Service) {
        let max_queue = self.limits.max_queue;
        let mut budget = TURN_BUDGET;
        loop {
            // Decoding makes answers (pongs, closes, the service's): only while there is room.
            loop {
                let Some(Some(client)) = self.clients.get_mut(idx) else { return };
                if client.doomed.is_some() || client.backpressured(max_queue) {
                    break;
                }
                let Link::Direct(d) = &mut client.link else { return };
                let Some((incoming, _)) = d.ep.next_incoming() else { break };
                let kind = match incoming {
                    Incoming::Message(kind, data) => {
                        // The message is lent by the endpoint, which the service may answer
                        // on: it goes through the scratch buffer.
                        self.scratch.clear();
                        if self.scratch.try_reserve(data.len()).is_err() {
                            client.doomed = Some(Gone::Decode(DecodeError::NoMemory));
                            break;
                        }
                        self.scratch.extend_from_slice(data);
                        message_kind(kind)
                    }
                    Incoming::Closed(_) => {
                        // The endpoint answered; a reason given before stays.
                        client.closing.get_or_insert(Gone::Closed);
                        continue;
                    }
                    Incoming::Failed(e) => {
                        client.closing = Some(Gone::Protocol(e));
                        continue;
                    }
                };
                let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
                service.message(idx, kind, &self.scratch, &mut clients);
            }
            self.scratch.clear();
            self.scratch.shrink_to(READ_LEN);
            let Some(Some(client)) = self.clients.get_mut(idx) else { return };
            if !client.wants_read(max_queue) {
                break;
            }
            let Link::Direct(d) = &mut client.link else { return };
            if budget == 0 {
                self.again.push(idx);
                break;
            }
            budget -= 1;
            match d.ep.read() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    client.doomed = Some(Gone::Sock(sock_error("read", e)));
                    break;
                }
            }
        }
    }

    /// Writes what is queued for client `idx`, then ends it, re-reads it (when it was paused)
    /// or updates its registration.
    fn flush(&mut self, idx: usize, service: &mut dyn Service) {
        let max_queue = self.limits.max_queue;
        let Some(Some(client)) = self.clients.get_mut(idx) else { return };
        client.dirty = false;
        let was_paused = client.backpressured(max_queue);
        client.write();
        if let Link::Direct(d) = &mut client.link {
            if d.closing_since.is_none() && d.ep.is_closing() {
                let now = Instant::now();
                d.closing_since = Some(now);
                let deadline = now + CLOSE_TIMEOUT;
                self.next_sweep = Some(self.next_sweep.map_or(deadline, |t| t.min(deadline)));
            }
        }
        let mut gone = client.finished();
        if gone.is_none() {
            // Unpaused: run it again even if nothing new arrives (edge-triggered readiness);
            // a direct client may hold messages read but not yet decoded.
            if was_paused && !client.backpressured(max_queue) {
                self.again.push(idx);
            }
            let want = client.wanted();
            if want != client.interest {
                let registry = self.poll.registry();
                let result = match &mut client.link {
                    Link::Relay(r) => r.sock.reregister(registry, Token(idx), want),
                    Link::Pending(p) => p.sock.reregister(registry, Token(idx), want),
                    Link::Direct(d) => registry.reregister(d.ep.io_mut(), Token(idx), want),
                };
                match result {
                    Ok(()) => client.interest = want,
                    Err(e) => gone = Some(Gone::Sock(SockError::Io("poll reregister", e))),
                }
            }
        }
        if let Some(gone) = gone {
            self.end(idx, gone, service);
        }
    }

    /// Ends the direct clients whose closing handshake ran out of time.
    fn sweep(&mut self, service: &mut dyn Service) {
        let now = Instant::now();
        self.next_sweep = None;
        for idx in 0..self.clients.len() {
            let Some(Some(Client { link: Link::Direct(d), .. })) = self.clients.get(idx) else {
                continue;
            };
            let Some(since) = d.closing_since else { continue };
            let deadline = since + CLOSE_TIMEOUT;
            if deadline <= now {
                self.end(idx, Gone::CloseTimeout, service);
                while let Some(id) = self.dirty.pop() {
                    self.flush(id, service);
                }
            } else {
                self.next_sweep = Some(self.next_sweep.map_or(deadline, |t| t.min(deadline)));
            }
        }
    }

    fn end(&mut self, idx: usize, gone: Gone, service: &mut dyn Service) {
        let Some(slot) = self.clients.get_mut(idx) else { return };
        if let Some(client) = slot.take() {
            let registry = self.poll.registry();
            let _ = match client.link {
                Link::Relay(mut r) => r.sock.deregister(registry),
                Link::Pending(mut p) => p.sock.deregister(registry),
                Link::Direct(mut d) => registry.deregister(d.ep.io_mut()),
            };
        }
        match gone {
            Gone::Done | Gone::Closed => {
                if self.verbose {
                    say(format_args!("client {idx} disconnected ({gone})"));
                }
            }
            Gone::Kicked(_)
            | Gone::TooSlow
            | Gone::Decode(_)
            | Gone::Sock(_)
            | Gone::Handover(_)
            | Gone::Protocol(_)
            | Gone::CloseTimeout => {
                say(format_args!("client {idx}: {gone}; closing"));
            }
        }
        let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
        service.closed(idx, &mut clients);
        // Clients doomed meanwhile (the service's sends overflowed) are flushed by the caller.
        if self.accept_blocked {
            self.accept_all();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn held_messages_come_back_in_order_within_the_cap() {
        let mut held = Held { buf: Vec::new(), cap: 2 * HELD_HEADER + 5 };
        assert!(held.push(Kind::Text, b"abc"));
        assert!(held.push(Kind::Binary, b"\x00\xff"));
        assert!(!held.push(Kind::Text, b""), "over the cap");
        let got: Vec<_> = held_messages(&held.buf).map(|(k, d)| (k, d.to_vec())).collect();
        assert_eq!(got, [(Kind::Text, b"abc".to_vec()), (Kind::Binary, b"\x00\xff".to_vec())]);
    }
}
