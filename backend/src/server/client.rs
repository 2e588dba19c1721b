//! The loop's clients ([`super::Server`]): how each one's bytes travel ([`Link`]: relayed and
//! decoded, relayed and echoed, waiting for a hand-over, or on its own socket in direct mode),
//! its queue and its end, and [`Clients`], the view a [`super::Service`] gets of them.
use mio::Interest;
use std::time::Instant;

use super::echo::{self, Echo};
use crate::direct::{Endpoint, HandoverError, Receiver};
use crate::message::{DecodeError, Decoder, Kind, Outbox};
use crate::sock::{Sock, SockError};
use wsgate::ws::session::{DataKind, ProtocolError};

/// A held message's header: its type (1 byte) and length (4 bytes, big-endian).
const HELD_HEADER: usize = 5;

/// Why a client ended.
#[derive(Debug)]
pub(super) enum Gone {
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
    /// Direct mode: the closing handshake took longer than [`super::CLOSE_TIMEOUT`].
    CloseTimeout,
    /// An echoed client failed.
    Echo(echo::Fault),
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
            Self::Echo(e) => e.fmt(f),
        }
    }
}

#[derive(Debug)]
pub(super) struct Client {
    pub(super) link: Link,
    pub(super) interest: Interest,
    /// Relayed: ends once its queue is written (a close was answered or the service said so).
    /// Direct: the reason to give once the endpoint is done.
    pub(super) closing: Option<Gone>,
    /// Ends now (at the end of the current step).
    pub(super) doomed: Option<Gone>,
    /// In the list of clients to flush.
    pub(super) dirty: bool,
}

/// How the client's bytes travel.
#[derive(Debug)]
pub(super) enum Link {
    /// Through the gateway, in a relay mode, decoded into messages for the service.
    Relay(Box<Relay>),
    /// Through the gateway, in a relay mode, echoed as it comes ([`super::Relayed::Echoed`]).
    Echo(Box<Echo>),
    /// Direct mode: the gateway's first bytes are still to come.
    Pending(Box<Pending>),
    /// Direct mode: on the client's own socket.
    Direct(Box<Direct>),
}

#[derive(Debug)]
pub(super) struct Relay {
    pub(super) sock: Sock,
    /// Taken out while its bytes are handed to the service.
    pub(super) input: Option<Input>,
    pub(super) out: Outbox,
    pub(super) eof: bool,
}

#[derive(Debug)]
pub(super) struct Input {
    pub(super) buf: Box<[u8]>,
    pub(super) decoder: Decoder,
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) sock: Sock,
    pub(super) rx: Receiver,
    pub(super) held: Held,
}

#[derive(Debug)]
pub(super) struct Direct {
    pub(super) ep: Endpoint<mio::net::TcpStream>,
    /// When the closing handshake started.
    pub(super) closing_since: Option<Instant>,
}

/// Messages for a client whose kind is not known yet, kept as they were sent (at most `cap`
/// bytes with their headers), to be queued in its encoding once it is known.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) buf: Vec<u8>,
    pub(super) cap: usize,
}

impl Held {
    pub(super) fn push(&mut self, kind: Kind, data: &[u8]) -> bool {
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
pub(super) fn held_messages(buf: &[u8]) -> impl Iterator<Item = (Kind, &[u8])> + '_ {
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
    pub(super) fn pending(&self) -> usize {
        match &self.link {
            Link::Relay(r) => r.out.pending(),
            // An echo has no queue: its buffer is its backpressure.
            Link::Echo(_) | Link::Pending(_) => 0,
            Link::Direct(d) => d.ep.pending(),
        }
    }

    /// Not read from while more than `pause_at` bytes wait to be written.
    pub(super) fn backpressured(&self, pause_at: usize) -> bool {
        self.pending() > pause_at
    }

    pub(super) fn wants_read(&self, pause_at: usize) -> bool {
        if self.doomed.is_some() || self.backpressured(pause_at) {
            return false;
        }
        match &self.link {
            Link::Relay(r) => !r.eof && self.closing.is_none(),
            // Its turn reads as far as its buffer goes.
            Link::Echo(_) => false,
            Link::Pending(_) => true,
            // The endpoint reads on through the closing handshake, for the client's close.
            Link::Direct(d) => d.ep.wants_read(),
        }
    }

    pub(super) fn wanted(&self) -> Interest {
        let write = match &self.link {
            Link::Relay(r) => r.out.pending() > 0,
            // Its turn keeps its registration up to date.
            Link::Echo(_) => return self.interest,
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
    pub(super) fn push(&mut self, kind: Kind, data: &[u8]) -> bool {
        match &mut self.link {
            Link::Relay(r) => r.out.push(kind, data),
            // What it sends is all it gets.
            Link::Echo(_) => false,
            Link::Pending(p) => p.held.push(kind, data),
            Link::Direct(d) => d.ep.send(data_kind(kind), data),
        }
    }

    /// Queues a message; when the queue is full, writes what waits and tries again, and a
    /// client whose queue still cannot take it is doomed: only a client that really does not
    /// read is dropped, not one whose queue filled within one turn.
    pub(super) fn queue(&mut self, kind: Kind, data: &[u8]) -> bool {
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
    pub(super) fn write(&mut self) {
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
            Link::Echo(_) | Link::Pending(_) => {}
            Link::Direct(d) => {
                if let Err(e) = d.ep.flush() {
                    self.doomed = Some(Gone::Sock(sock_error("write", e)));
                }
            }
        }
    }

    /// How the client ends now that its queue was written as far as it goes, if it does.
    pub(super) fn finished(&mut self) -> Option<Gone> {
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
            Link::Relay(_) | Link::Echo(_) | Link::Pending(_) | Link::Direct(_) => None,
        }
    }
}

pub(super) fn data_kind(kind: Kind) -> DataKind {
    match kind {
        Kind::Text => DataKind::Text,
        Kind::Binary => DataKind::Binary,
    }
}

pub(super) fn message_kind(kind: DataKind) -> Kind {
    match kind {
        DataKind::Text => Kind::Text,
        DataKind::Binary => Kind::Binary,
    }
}

pub(super) fn sock_error(op: &'static str, e: std::io::Error) -> SockError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => SockError::Reset,
        _ => SockError::Io(op, e),
    }
}

/// The clients, as a service sees them: who is there, and their queues.
#[derive(Debug)]
pub struct Clients<'a> {
    pub(super) slots: &'a mut [Option<Client>],
    pub(super) dirty: &'a mut Vec<usize>,
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
    /// handshake; an echoed one, or one whose kind is not known yet, at once.
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
            Link::Echo(_) | Link::Pending(_) => c.doomed = Some(Gone::Kicked(why)),
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

pub(super) fn is_open(c: &Client) -> bool {
    c.doomed.is_none()
        && c.closing.is_none()
        && match &c.link {
            Link::Direct(d) => d.ep.is_open(),
            Link::Relay(_) | Link::Echo(_) | Link::Pending(_) => true,
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
