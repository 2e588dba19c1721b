//! A relayed connection of the backend library ([`super::Connection`] in a relay mode): the
//! gateway's UNIX connection, its decoder ([`crate::message::Decoder`]), the events decoded
//! from one read waiting to be taken, and the output queue.
use std::io::ErrorKind;

use super::{Failure, Options, Received, KEEP_CAPACITY};
use crate::message::{DecodeError, Decoder, Event, Kind, Outbox};
use crate::server;
use crate::sock::{self, Sock};
use wsgate::relay::codec::Mode;
use wsgate::ws::frame::MAX_CONTROL_PAYLOAD;

/// Tags of the decoded events queued in [`Relay::inbox`].
const TAG_TEXT: u8 = 0;
const TAG_BINARY: u8 = 1;
const TAG_CLOSE: u8 = 2;
/// An inbox entry's header: the tag and a native-endian `u32` length.
const ENTRY_HEAD: usize = 5;

/// A relayed connection: the gateway's UNIX connection and its decoder.
#[derive(Debug)]
pub(super) struct Relay {
    pub(super) sock: Sock,
    pub(super) mode: Mode,
    pub(super) decoder: Decoder,
    pub(super) buf: Box<[u8]>,
    /// Events decoded from the last read, in order: `[tag][len][bytes]` entries.
    pub(super) inbox: Vec<u8>,
    pub(super) inbox_at: usize,
    pub(super) out: Outbox,
    pub(super) want_context: bool,
    pub(super) context: Option<Vec<u8>>,
    pub(super) eof: bool,
    /// The end of the stream was reported as `Closed`.
    pub(super) end_told: bool,
    /// A close was sent or answered, or the stream is to end: no more messages either way.
    pub(super) closing: bool,
    /// Our side is shut down.
    pub(super) shut: bool,
    pub(super) failed: Option<DecodeError>,
    pub(super) broken: bool,
}

impl Relay {
    pub(super) fn new(sock: Sock, options: &Options) -> Option<Self> {
        let len = match options.mode {
            Mode::SeqPacket => options.max_message.max(1),
            // A read is a message: no bigger than the limit.
            Mode::Stream => server::READ_LEN.min(options.max_message.max(1)),
            Mode::Lines | Mode::Framed => server::READ_LEN,
        };
        let mut buf = Vec::new();
        buf.try_reserve_exact(len).ok()?;
        buf.resize(len, 0);
        Some(Self {
            sock,
            mode: options.mode,
            decoder: Decoder::new(options.mode, options.max_message, options.context),
            buf: buf.into_boxed_slice(),
            inbox: Vec::new(),
            inbox_at: 0,
            out: Outbox::new(options.mode, options.max_queue),
            want_context: options.context,
            context: None,
            eof: false,
            end_told: false,
            closing: false,
            shut: false,
            failed: None,
            broken: false,
        })
    }

    pub(super) fn ended(&self) -> bool {
        self.eof || self.broken || self.failed.is_some()
    }

    pub(super) fn is_open(&self) -> bool {
        !self.closing && !self.eof && !self.broken && self.failed.is_none()
    }

    pub(super) fn is_done(&self) -> bool {
        self.broken || (self.closing && self.shut && self.eof)
    }

    pub(super) fn wants_write(&self) -> bool {
        !self.broken && (self.out.pending() > 0 || (self.closing && !self.shut))
    }

    /// Decodes `data` into the inbox (and the context).
    pub(super) fn feed(&mut self, data: &[u8]) {
        let Self { decoder, inbox, context, failed, .. } = self;
        feed(decoder, inbox, context, failed, data);
    }

    pub(super) fn waits_for_context(&self) -> bool {
        self.want_context && self.context.is_none() && !self.ended()
    }

    /// One read: `Ok(true)` when bytes or the end came.
    pub(super) fn read_once(&mut self) -> std::io::Result<bool> {
        match self.sock.read(&mut self.buf) {
            Ok(Some(0)) => {
                self.eof = true;
                Ok(true)
            }
            Ok(Some(n)) => {
                let Self { buf, decoder, inbox, context, failed, .. } = self;
                feed(decoder, inbox, context, failed, buf.get(..n).unwrap_or_default());
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(sock::SockError::Reset) if self.closing => {
                self.ended_after_close();
                Ok(true)
            }
            Err(e) => {
                self.broken = true;
                Err(match e {
                    sock::SockError::Reset => ErrorKind::ConnectionReset.into(),
                    sock::SockError::Truncated(_) => {
                        self.failed = Some(DecodeError::TooBig(self.buf.len() + 1));
                        return Ok(true);
                    }
                    sock::SockError::Io(_, e) => e,
                })
            }
        }
    }

    /// Pending: reads until the context came, or the stream ended, or it would block.
    pub(super) fn fill_context(&mut self) {
        while self.context.is_none() && !self.ended() && self.inbox.is_empty() {
            match self.read_once() {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    pub(super) fn recv(&mut self) -> std::io::Result<Received<'_>> {
        loop {
            self.flush()?;
            if self.inbox_at < self.inbox.len() {
                if self.closing && self.inbox.get(self.inbox_at) != Some(&TAG_CLOSE) {
                    // Messages after our close are dropped, as a WebSocket endpoint does.
                    self.skip_entry();
                    continue;
                }
                break;
            }
            if !self.inbox.is_empty() {
                self.inbox.clear();
                self.inbox.shrink_to(KEEP_CAPACITY);
                self.inbox_at = 0;
            }
            if let Some(e) = self.failed.take() {
                self.broken = self.mode != Mode::Framed;
                if self.mode == Mode::Framed && !self.closing {
                    let code = Failure::Relay(e).close_code();
                    let _ = self.out.push_close(&code.to_be_bytes());
                }
                self.closing = true;
                let _ = self.flush();
                return Ok(Received::Failed(Failure::Relay(e)));
            }
            if self.is_done() {
                return Ok(Received::Done);
            }
            if self.eof {
                self.closing = true;
                let _ = self.flush();
                if !core::mem::replace(&mut self.end_told, true) {
                    return Ok(Received::Closed(None));
                }
                if self.is_done() {
                    return Ok(Received::Done);
                }
                return Err(ErrorKind::WouldBlock.into());
            }
            if !self.read_once()? {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
        let at = self.inbox_at;
        let tag = self.inbox.get(at).copied().unwrap_or(TAG_CLOSE);
        let len = self
            .inbox
            .get(at + 1..at + ENTRY_HEAD)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u32::from_ne_bytes(b) as usize);
        let start = at + ENTRY_HEAD;
        self.inbox_at = start + len;
        if tag == TAG_CLOSE {
            let code = self.inbox.get(start..start + 2).and_then(|c| <[u8; 2]>::try_from(c).ok());
            if !self.closing {
                // RFC 6455 §5.5.1: answer with the same code.
                let _ = self.out.push_close(code.as_ref().map_or(&[], |c| c.as_slice()));
            }
            self.closing = true;
            self.end_told = true;
            // The gateway may have answered the client and gone already: the close is still
            // told (a failed write makes the connection done).
            let _ = self.flush();
            return Ok(Received::Closed(code.map(u16::from_be_bytes)));
        }
        let kind = if tag == TAG_BINARY { Kind::Binary } else { Kind::Text };
        Ok(Received::Message(kind, self.inbox.get(start..start + len).unwrap_or_default()))
    }

    pub(super) fn skip_entry(&mut self) {
        let at = self.inbox_at;
        let len = self
            .inbox
            .get(at + 1..at + ENTRY_HEAD)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u32::from_ne_bytes(b) as usize);
        self.inbox_at = at + ENTRY_HEAD + len;
    }

    pub(super) fn close(&mut self, code: u16, reason: &str) {
        if self.closing || self.broken {
            return;
        }
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let n = 2 + reason.len();
        if let Some((c, rest)) = payload.split_first_chunk_mut::<2>() {
            *c = code.to_be_bytes();
            if let Some(dst) = rest.get_mut(..reason.len()) {
                dst.copy_from_slice(reason.as_bytes());
            }
        }
        // A close always goes in, over the queue's limit if need be: it is small.
        let _ = self.out.push_close(payload.get(..n).unwrap_or_default());
        self.closing = true;
    }

    /// The gateway is gone after the closing handshake began: it does not read an answer
    /// to a close it relayed (it has answered the client already) and may close its end
    /// before ours arrives, which the kernel reports as a reset. That is the end of the
    /// connection, not a failure: what is queued is dropped.
    pub(super) fn ended_after_close(&mut self) {
        self.out.clear();
        self.eof = true;
        self.shut = true;
    }

    pub(super) fn flush(&mut self) -> std::io::Result<bool> {
        let mut wrote = false;
        while !self.broken && self.out.pending() > 0 {
            match self.sock.write(self.out.front()) {
                Ok(Some(n)) => {
                    self.out.consume(n);
                    wrote = true;
                }
                Ok(None) => return Ok(wrote),
                Err(sock::SockError::Reset) if self.closing => {
                    self.ended_after_close();
                    return Ok(true);
                }
                Err(e) => {
                    self.broken = true;
                    return Err(match e {
                        sock::SockError::Reset => ErrorKind::BrokenPipe.into(),
                        sock::SockError::Truncated(_) => ErrorKind::InvalidData.into(),
                        sock::SockError::Io(_, e) => e,
                    });
                }
            }
        }
        if self.closing && !self.shut && !self.broken {
            // The gateway reads the end of our stream: in the modes without a close record
            // that is the close; in framed mode it follows the close record.
            let _ = self.sock.shutdown_write();
            self.shut = true;
            wrote = true;
        }
        Ok(wrote)
    }
}

/// Decodes `data` into `inbox` entries (and the context); a failure is kept in `failed`.
pub(super) fn feed(
    decoder: &mut Decoder,
    inbox: &mut Vec<u8>,
    context: &mut Option<Vec<u8>>,
    failed: &mut Option<DecodeError>,
    data: &[u8],
) {
    if failed.is_some() {
        return;
    }
    let mut no_memory = false;
    let result = decoder.feed(data, &mut |event| {
        let (tag, bytes) = match event {
            Event::Context(c) => {
                if context.is_none() {
                    *context = Some(c.to_vec());
                }
                return;
            }
            Event::Message(Kind::Text, m) => (TAG_TEXT, m),
            Event::Message(Kind::Binary, m) => (TAG_BINARY, m),
            Event::Close(p) => (TAG_CLOSE, p),
        };
        // At most `max_message` bytes (the decoder's limit), which is below 4 GiB.
        let Ok(len) = u32::try_from(bytes.len()) else {
            no_memory = true;
            return;
        };
        if no_memory || inbox.try_reserve(ENTRY_HEAD + bytes.len()).is_err() {
            no_memory = true;
            return;
        }
        inbox.push(tag);
        inbox.extend_from_slice(&len.to_ne_bytes());
        inbox.extend_from_slice(bytes);
    });
    if no_memory {
        *failed = Some(DecodeError::NoMemory);
    } else if let Err(e) = result {
        *failed = Some(e);
    }
}
