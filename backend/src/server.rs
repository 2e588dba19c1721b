//! The kit's one event loop for sample servers (`websocket_echo`, `websocket_chat`,
//! `websocket_jsonrpc`): a single-threaded mio loop that accepts the gateway's connections,
//! serves each client in its relay mode or, in direct mode, on its own socket, and hands what
//! they send to a [`Service`].
//!
//! A client comes one of two ways, and a service cannot tell which:
//!
//! * relayed (the gateway's relay modes): its bytes are decoded by a
//!   [`super::message::Decoder`] and messages go out through a [`super::message::Outbox`]; or,
//!   for a service that says so ([`Relayed::Echoed`]), they are echoed as they come, byte for
//!   byte, through one fixed buffer (`server/echo.rs`);
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
//! each client. A client with more than `pause_at` bytes queued is not read from until it
//! drains (backpressure); a message that does not fit a client's queue at all disconnects
//! that client (it does not keep up). A client's read buffer ([`READ_LEN`], or `max_message`
//! in `seqpacket` mode, at most `max_message` in `stream` mode where a read is a message;
//! 64 KiB for an echoed one) is allocated when it connects (in direct mode, when
//! its first bytes come); message and queue buffers grow on use. In direct mode a closing
//! handshake that is not over within [`CLOSE_TIMEOUT`] ends its client.
//!
//! Files: this one is the loop (accepting, each client's turn, hand-overs, ends);
//! `server/client.rs` the clients and their queues; `server/echo.rs` the byte-exact echo;
//! `server/handover.rs` direct mode's hand-overs and the clients served on their own sockets.
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use nix::sys::signalfd::SignalFd;

use super::direct::{self, Endpoint, HandoverError, Incoming, Receiver, Taken};
use super::message::{DecodeError, Decoder, Event, Kind, Outbox};
use super::sock::{Listener, Sock, SockError};
use super::{say, take_signal, Fatal};
pub use client::Clients;
use client::{
    held_messages, message_kind, sock_error, Client, Direct, Gone, Held, Input, Link, Pending,
    Relay,
};
use echo::{Echo, Turn};
use wsgate::relay::codec::Mode;

mod client;
mod echo;
mod handover;

/// Bytes read at a time in the byte-stream modes (in `stream` mode, the largest message) and
/// the read buffer of a direct client.
pub const READ_LEN: usize = 16 * 1024;
/// Direct mode: the longest a closing handshake may take before its client is dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads plus writes one client may do per loop turn before the others get theirs: a client
/// that keeps both directions busy would otherwise hold the loop forever, since with
/// edge-triggered readiness every socket is drained until it would block.
const TURN_BUDGET: usize = 16;
/// `framed`: close 1009 "message too big".
const CLOSE_TOO_BIG: [u8; 2] = [0x03, 0xf1];
/// The capacity the message scratch buffer keeps between messages (as a direct endpoint
/// keeps for its own): messages up to this size cost no allocation.
const KEEP_SCRATCH: usize = 64 * 1024;

/// The fixed limits of a server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most clients at once.
    pub max_clients: usize,
    /// Largest message (and connection context) read, in bytes.
    pub max_message: usize,
    /// Most bytes waiting to be written to one client.
    pub max_queue: usize,
    /// A client with more than this many bytes waiting is not read from (and its messages
    /// read already are not decoded) until they drain: half of `max_queue` leaves room for
    /// answers to what was read; 0 answers one message at a time.
    pub pause_at: usize,
}

/// What the server does with a relayed client's bytes ([`Service::relayed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relayed {
    /// Decoded into messages for [`Service::message`].
    Decoded,
    /// Sent back to the client as they come, without being decoded: byte for byte
    /// in `stream`, `lines` and `seqpacket` modes, whole messages verbatim in `framed` mode.
    /// The service sees no message of a relayed client, only of direct ones.
    Echoed,
}

/// What a server does with messages. Every callback may queue messages for any client
/// through [`Clients`].
pub trait Service {
    /// What is done with relayed clients' bytes; [`Relayed::Decoded`] unless the service is
    /// an echo.
    fn relayed(&self) -> Relayed {
        Relayed::Decoded
    }
    /// The connection context of client `id` arrived (before any of its messages): the
    /// `NAME=value` lines of the gateway's `--context`, or of a direct client's hand-over
    /// record (the same names, and `EARLY_DATA_LENGTH`).
    fn context(&mut self, id: usize, context: &[u8], clients: &mut Clients<'_>);
    /// Client `id` sent a message.
    fn message(&mut self, id: usize, kind: Kind, data: &[u8], clients: &mut Clients<'_>);
    /// Client `id` is gone (already removed from `clients`).
    fn closed(&mut self, id: usize, clients: &mut Clients<'_>);
}

/// Why [`Server::serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// A stop signal came: its name.
    Signal(&'static str),
    /// The server's one connection ([`Server::single`]) ended.
    Served,
}

impl core::fmt::Display for Stopped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Signal(name) => f.write_str(name),
            Self::Served => f.write_str("its connection ended"),
        }
    }
}

/// The server's loop state.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    /// `None` for a server of one connection: nothing more comes once it ends.
    listener: Option<Listener>,
    /// The one connection of a [`Self::single`] server until `serve` admits it (how it is
    /// served depends on the service).
    single: Option<Sock>,
    mode: Mode,
    limits: Limits,
    context: bool,
    /// Connections may bring the client's socket (direct mode).
    direct: bool,
    /// Relayed clients are echoed ([`Relayed::Echoed`]), from the service given to `serve`.
    echo: bool,
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
        let server = Self::empty(mode, limits, context, direct, verbose)?;
        listener
            .register(server.poll.registry(), Token(limits.max_clients))
            .map_err(|e| Fatal::new("poll", e))?;
        Ok(Self { listener: Some(listener), ..server })
    }

    /// A server of the one connection `sock` (`--stdio`, from [`super::start`]), otherwise as
    /// [`Self::new`]: [`Self::serve`] returns [`Stopped::Served`] once it ends.
    ///
    /// # Errors
    /// [`Fatal`] when the poll cannot be made, or for `direct` in `seqpacket` mode.
    pub fn single(
        sock: Sock,
        mode: Mode,
        limits: Limits,
        context: bool,
        direct: bool,
        verbose: bool,
    ) -> Result<Self, Fatal> {
        let limits = Limits { max_clients: 1, ..limits };
        let server = Self::empty(mode, limits, context, direct, verbose)?;
        Ok(Self { single: Some(sock), ..server })
    }

    fn empty(
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
        Ok(Self {
            poll,
            listener: None,
            single: None,
            mode,
            limits,
            context,
            direct,
            echo: false,
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

    /// Runs until SIGTERM or SIGINT, or until the one connection of a [`Self::single`] server
    /// ends.
    ///
    /// # Errors
    /// [`Fatal`] when polling fails, or when the one connection cannot be served (registered,
    /// its buffer allocated).
    pub fn serve(
        &mut self,
        signals: &SignalFd,
        service: &mut dyn Service,
    ) -> Result<Stopped, Fatal> {
        self.echo = service.relayed() == Relayed::Echoed;
        if let Some(sock) = self.single.take() {
            self.admit(0, sock).map_err(|gone| Fatal::new("client 0", gone))?;
        }
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
        let mut events = Events::with_capacity(self.limits.max_clients.clamp(16, 1024));
        loop {
            if self.listener.is_none() && self.clients.iter().all(Option::is_none) {
                return Ok(Stopped::Served);
            }
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
                        return Ok(Stopped::Signal(name));
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
            let Some(listener) = &self.listener else { return };
            let sock = match listener.accept() {
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
            if let Err(gone) = self.admit(idx, sock) {
                say(format_args!("client {idx}: {gone}; closing"));
            }
        }
    }

    /// Makes `sock` client `idx`: registered, and served as what it is (relayed, or in direct
    /// mode to be told by its first bytes). The socket is closed on failure.
    fn admit(&mut self, idx: usize, mut sock: Sock) -> Result<(), Gone> {
        sock.register(self.poll.registry(), Token(idx), Interest::READABLE)
            .map_err(|e| Gone::Sock(SockError::Io("poll register", e)))?;
        // A relayed client's buffer now; a direct-mode one's when its kind is known.
        let link = if self.direct {
            Link::Pending(Box::new(Pending {
                sock,
                rx: Receiver::new(direct::MAX_EARLY_DATA),
                held: Held { buf: Vec::new(), cap: self.limits.max_queue },
            }))
        } else {
            self.relayed_link(sock, &[])?
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
        Ok(())
    }

    /// How a relayed client on `sock` is served, echoed or decoded; `first` is what was read
    /// from it already (with the hand-over check), to echo. The socket is closed on failure.
    fn relayed_link(&self, sock: Sock, first: &[u8]) -> Result<Link, Gone> {
        if self.echo {
            return Ok(Link::Echo(Box::new(Echo::new(sock, first)?)));
        }
        let input = self.input().ok_or(Gone::Decode(DecodeError::NoMemory))?;
        Ok(Link::Relay(Box::new(Relay {
            sock,
            input: Some(input),
            out: Outbox::new(self.mode, self.limits.max_queue),
            eof: false,
        })))
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
            Some(Some(Client { link: Link::Echo(_), .. })) => {
                self.run_echo(idx, service);
                return;
            }
            Some(Some(Client { link: Link::Relay(_), .. })) => self.read_relay(idx, service),
            Some(Some(Client { link: Link::Direct(_), .. })) => self.read_direct(idx, service),
            _ => {}
        }
        self.dirty.push(idx);
        while let Some(id) = self.dirty.pop() {
            self.flush(id, service);
        }
    }

    /// Echoed client `idx`'s turn: the echo runs, then its registration follows
    /// what it waits for.
    fn run_echo(&mut self, idx: usize, service: &mut dyn Service) {
        let (mode, max_message) = (self.mode, self.limits.max_message);
        let Some(Some(client)) = self.clients.get_mut(idx) else { return };
        let Link::Echo(echo) = &mut client.link else { return };
        let gone = match echo.run(mode, max_message, TURN_BUDGET) {
            Err(gone) => Some(gone),
            Ok(turn) => {
                if turn == Turn::MoreWork {
                    self.again.push(idx);
                }
                match echo.wanted(mode) {
                    Some(want) if want == client.interest => None,
                    Some(want) => {
                        match echo.sock.reregister(self.poll.registry(), Token(idx), want) {
                            Ok(()) => {
                                client.interest = want;
                                None
                            }
                            Err(e) => Some(Gone::Sock(SockError::Io("poll reregister", e))),
                        }
                    }
                    // Nothing left to wait for: `run` ends such clients, this is a safety net.
                    None => Some(Gone::Done),
                }
            }
        };
        if let Some(gone) = gone {
            self.end(idx, gone, service);
        }
    }

    /// Writes what is queued for client `idx`, then ends it, re-reads it (when it was paused)
    /// or updates its registration.
    fn flush(&mut self, idx: usize, service: &mut dyn Service) {
        let pause_at = self.limits.pause_at;
        let Some(Some(client)) = self.clients.get_mut(idx) else { return };
        client.dirty = false;
        let was_paused = client.backpressured(pause_at);
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
            if was_paused && !client.backpressured(pause_at) {
                self.again.push(idx);
            }
            let want = client.wanted();
            if want != client.interest {
                let registry = self.poll.registry();
                let result = match &mut client.link {
                    Link::Relay(r) => r.sock.reregister(registry, Token(idx), want),
                    Link::Echo(e) => e.sock.reregister(registry, Token(idx), want),
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
                Link::Echo(mut e) => e.sock.deregister(registry),
                Link::Pending(mut p) => p.sock.deregister(registry),
                Link::Direct(mut d) => registry.deregister(d.ep.io_mut()),
            };
        }
        match gone {
            // A peer that goes away without waiting for its answers is an ordinary end.
            Gone::Done | Gone::Closed | Gone::Sock(SockError::Reset) => {
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
            | Gone::CloseTimeout
            | Gone::Echo(_) => {
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
