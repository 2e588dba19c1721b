//! A single-threaded loop for message-oriented sample servers (`websocket_chat`,
//! `websocket_jsonrpc`): it accepts the gateway's connections, decodes each client's bytes
//! into messages ([`super::message::Decoder`]), hands them to a [`Service`], and writes what
//! the service queued ([`super::message::Outbox`]).
//!
//! Everything is bounded by [`Limits`]: at most `max_clients` clients (more wait in the listen
//! backlog), messages of at most `max_message` bytes (a bigger one closes its client, with
//! close 1009 in `framed` mode), and at most `max_queue` bytes waiting for each client. A
//! client whose queue is more than half full is not read from until it drains
//! (backpressure); a message that does not fit a client's queue at all disconnects that
//! client (it does not keep up). A client's read buffer ([`READ_LEN`], or `max_message` in
//! `seqpacket` mode, at most `max_message` in `stream` mode where a read is a message) is
//! allocated when it connects; message and queue buffers grow on use.
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use nix::sys::signalfd::SignalFd;

use super::message::{DecodeError, Decoder, Event, Kind, Outbox};
use super::sock::{Listener, Sock, SockError};
use super::{say, take_signal, Fatal};
use crate::relay::codec::Mode;

/// Bytes read at a time in the byte-stream modes: in `stream` mode, the largest message.
pub const READ_LEN: usize = 16 * 1024;
/// Reads plus writes one client may do per loop turn before the others get theirs.
const TURN_BUDGET: usize = 16;
/// `framed`: close 1009 "message too big".
const CLOSE_TOO_BIG: [u8; 2] = [0x03, 0xf1];

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
    /// The connection context of client `id` arrived (before any of its messages).
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
}

impl core::fmt::Display for Gone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Done => f.write_str("end of stream"),
            Self::Closed => f.write_str("close record answered"),
            Self::Kicked(why) => f.write_str(why),
            Self::TooSlow => f.write_str("its queue is full (it does not read fast enough)"),
            Self::Decode(e) => e.fmt(f),
            Self::Sock(e) => e.fmt(f),
        }
    }
}

#[derive(Debug)]
struct Client {
    sock: Sock,
    interest: Interest,
    /// Taken out while its bytes are handed to the service.
    input: Option<Input>,
    out: Outbox,
    eof: bool,
    /// Ends once its queue is written: a close was answered or the service said so.
    closing: Option<Gone>,
    /// Ends now (at the end of the current step).
    doomed: Option<Gone>,
    /// In the list of clients to flush.
    dirty: bool,
}

#[derive(Debug)]
struct Input {
    buf: Box<[u8]>,
    decoder: Decoder,
}

impl Client {
    fn wants_read(&self) -> bool {
        !self.eof
            && self.closing.is_none()
            && self.doomed.is_none()
            && self.out.pending() <= self.out.capacity() / 2
    }

    fn wanted(&self) -> Interest {
        if self.out.pending() > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
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
    /// `false` then, or when there is no such client.
    pub fn send(&mut self, id: usize, kind: Kind, data: &[u8]) -> bool {
        let Some(Some(c)) = self.slots.get_mut(id) else { return false };
        if c.doomed.is_some() {
            return false;
        }
        let mut queued = c.out.push(kind, data);
        if !queued {
            // Write what waits now and try again: only a client that really does not read
            // is dropped, not one whose queue filled within one turn.
            while c.doomed.is_none() && c.out.pending() > 0 {
                match c.sock.write(c.out.front()) {
                    Ok(Some(n)) => c.out.consume(n),
                    Ok(None) => break,
                    Err(e) => c.doomed = Some(Gone::Sock(e)),
                }
            }
            queued = c.doomed.is_none() && c.out.push(kind, data);
            if !queued && c.doomed.is_none() {
                c.doomed = Some(Gone::TooSlow);
            }
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(id);
        }
        queued
    }

    /// Closes client `id` once what is queued for it is written (with a close record carrying
    /// `code` in `framed` mode).
    pub fn close(&mut self, id: usize, code: u16, why: &'static str) {
        let Some(Some(c)) = self.slots.get_mut(id) else { return };
        if c.closing.is_none() && c.doomed.is_none() {
            let _ = c.out.push_close(&code.to_be_bytes());
            c.closing = Some(Gone::Kicked(why));
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Whether client `id` is connected and not on its way out.
    #[must_use]
    pub fn is_open(&self, id: usize) -> bool {
        matches!(self.slots.get(id), Some(Some(c)) if c.doomed.is_none() && c.closing.is_none())
    }

    /// The ids of the connected clients (not those on their way out).
    pub fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, c)| match c {
            Some(c) if c.doomed.is_none() && c.closing.is_none() => Some(i),
            _ => None,
        })
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
    verbose: bool,
    clients: Vec<Option<Client>>,
    /// Clients with queued output, to write at the end of the step.
    dirty: Vec<usize>,
    /// Clients whose budget ran out, to run again on the next turn; `spare` is its swap
    /// partner, so neither is reallocated in the loop.
    again: Vec<usize>,
    spare: Vec<usize>,
    accept_blocked: bool,
}

impl Server {
    /// A server on `listener` (from [`super::start`]) for `mode`; `context` says whether the
    /// gateway sends the connection context in the modes where it cannot be recognised.
    ///
    /// # Errors
    /// [`Fatal`] when the poll cannot be made.
    pub fn new(
        mut listener: Listener,
        mode: Mode,
        limits: Limits,
        context: bool,
        verbose: bool,
    ) -> Result<Self, Fatal> {
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
            verbose,
            clients: (0..limits.max_clients).map(|_| None).collect(),
            dirty: Vec::with_capacity(limits.max_clients),
            again: Vec::with_capacity(limits.max_clients),
            spare: Vec::with_capacity(limits.max_clients),
            accept_blocked: false,
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
                &mut mio::unix::SourceFd(&std::os::fd::AsRawFd::as_raw_fd(signals)),
                signal_token,
                Interest::READABLE,
            )
            .map_err(|e| Fatal::new("poll", e))?;
        let mut events = Events::with_capacity(self.limits.max_clients.max(16));
        loop {
            let timeout = (!self.again.is_empty()).then_some(Duration::ZERO);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fatal::new("poll", e)),
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
            let len = match self.mode {
                Mode::SeqPacket => self.limits.max_message,
                // A read is a message: no bigger than the limit.
                Mode::Stream => READ_LEN.min(self.limits.max_message),
                Mode::Lines | Mode::Framed => READ_LEN,
            };
            let mut buf = Vec::new();
            if buf.try_reserve_exact(len).is_err() {
                say(format_args!("cannot allocate a {len}-byte buffer for a client"));
                continue;
            }
            buf.resize(len, 0);
            if let Err(e) = sock.register(self.poll.registry(), Token(idx), Interest::READABLE) {
                say(format_args!("poll register: {e}"));
                continue;
            }
            if self.verbose {
                say(format_args!("client {idx} connected"));
            }
            let input = Input {
                buf: buf.into_boxed_slice(),
                decoder: Decoder::new(self.mode, self.limits.max_message, self.context),
            };
            if let Some(slot) = self.clients.get_mut(idx) {
                *slot = Some(Client {
                    sock,
                    interest: Interest::READABLE,
                    input: Some(input),
                    out: Outbox::new(self.mode, self.limits.max_queue),
                    eof: false,
                    closing: None,
                    doomed: None,
                    dirty: false,
                });
                // Data may already be waiting (edge-triggered readiness).
                self.again.push(idx);
            }
        }
    }

    /// Client `idx`'s turn: read and dispatch, then write every queue that got something.
    fn step(&mut self, idx: usize, service: &mut dyn Service) {
        self.read(idx, service);
        self.dirty.push(idx);
        while let Some(id) = self.dirty.pop() {
            self.flush(id, service);
        }
    }

    /// Reads client `idx` while it wants to and the budget lasts, handing the events to the
    /// service.
    fn read(&mut self, idx: usize, service: &mut dyn Service) {
        let Some(Some(client)) = self.clients.get_mut(idx) else { return };
        let Some(mut input) = client.input.take() else { return };
        let mut budget = TURN_BUDGET;
        while let Some(Some(client)) = self.clients.get_mut(idx) {
            if !client.wants_read() {
                break;
            }
            if budget == 0 {
                self.again.push(idx);
                break;
            }
            budget -= 1;
            let n = match client.sock.read(&mut input.buf) {
                Ok(Some(0)) => {
                    client.eof = true;
                    break;
                }
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    client.doomed = Some(Gone::Sock(e));
                    break;
                }
            };
            let data = input.buf.get(..n).unwrap_or_default();
            let mut clients = Clients { slots: &mut self.clients, dirty: &mut self.dirty };
            let mut close_payload = None;
            let result = input.decoder.feed(data, &mut |event| match event {
                Event::Context(c) => service.context(idx, c, &mut clients),
                Event::Message(kind, m) => service.message(idx, kind, m, &mut clients),
                Event::Close(p) => close_payload = Some(heapless::Vec::<u8, 125>::from_slice(p)),
            });
            let Some(Some(client)) = self.clients.get_mut(idx) else { break };
            if let Some(payload) = close_payload {
                // Answer with the same code (RFC 6455 §5.5.1: echo the status code).
                let code = payload.ok().and_then(|p| p.get(..2).map(<[u8]>::to_vec));
                let _ = client.out.push_close(code.as_deref().unwrap_or_default());
                client.closing = Some(Gone::Closed);
                self.dirty.push(idx);
            }
            if let Err(e) = result {
                if matches!(e, DecodeError::TooBig(_)) && client.doomed.is_none() {
                    let _ = client.out.push_close(&CLOSE_TOO_BIG);
                    client.closing = Some(Gone::Decode(e));
                    self.dirty.push(idx);
                } else {
                    client.doomed = Some(Gone::Decode(e));
                }
                break;
            }
        }
        if let Some(Some(client)) = self.clients.get_mut(idx) {
            client.input = Some(input);
        }
    }

    /// Writes what is queued for client `idx`, then ends it, re-reads it (when it was paused)
    /// or updates its registration.
    fn flush(&mut self, idx: usize, service: &mut dyn Service) {
        let Some(Some(client)) = self.clients.get_mut(idx) else { return };
        client.dirty = false;
        let was_paused = !client.wants_read();
        while client.doomed.is_none() && client.out.pending() > 0 {
            match client.sock.write(client.out.front()) {
                Ok(Some(n)) => client.out.consume(n),
                Ok(None) => break,
                Err(e) => client.doomed = Some(Gone::Sock(e)),
            }
        }
        let done = client.out.pending() == 0;
        let mut gone = if let Some(g) = client.doomed.take() {
            Some(g)
        } else if done && client.closing.is_some() {
            client.closing.take()
        } else if done && client.eof {
            Some(Gone::Done)
        } else {
            None
        };
        if gone.is_none() {
            if was_paused && client.wants_read() {
                self.again.push(idx);
            }
            let want = client.wanted();
            if want != client.interest {
                match client.sock.reregister(self.poll.registry(), Token(idx), want) {
                    Ok(()) => client.interest = want,
                    Err(e) => gone = Some(Gone::Sock(SockError::Io("poll reregister", e))),
                }
            }
        }
        if let Some(gone) = gone {
            self.end(idx, gone, service);
        }
    }

    fn end(&mut self, idx: usize, gone: Gone, service: &mut dyn Service) {
        let Some(slot) = self.clients.get_mut(idx) else { return };
        if let Some(mut client) = slot.take() {
            let _ = client.sock.deregister(self.poll.registry());
        }
        match gone {
            Gone::Done | Gone::Closed => {
                if self.verbose {
                    say(format_args!("client {idx} disconnected ({gone})"));
                }
            }
            Gone::Kicked(_) | Gone::TooSlow | Gone::Decode(_) | Gone::Sock(_) => {
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
