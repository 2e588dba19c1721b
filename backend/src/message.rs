//! The relay modes from a backend's side: bytes from the gateway to whole messages
//! ([`Decoder`]) and messages to bytes in a bounded per-client queue ([`Outbox`]).
//!
//! | mode | a message in | a message out |
//! |---|---|---|
//! | `stream` | what one read returns (no boundaries, as in ouistiti) | its bytes |
//! | `lines` | a line, without `\n` (and a `\r` before it) | its bytes and `\n` |
//! | `framed` | the records up to FIN, type kept ([`wsgate::relay::record`]) | one record |
//! | `seqpacket` | one packet | one packet |
//!
//! The connection context comes first when there is one: a context record in `framed` (always
//! recognised), and, when the server is told to expect it, the lines up to an empty line in
//! `stream` and `lines`, the first packet in `seqpacket`.
//!
//! Memory is bounded by the caller's limits: a message is collected into a buffer that grows
//! up to `max_message` (fallibly: an allocation failure ends the client, not the process),
//! and an [`Outbox`] holds at most its capacity.
use std::collections::VecDeque;

use wsgate::relay::codec::Mode;
use wsgate::relay::record::{self, RecordHeader, HEADER_LEN};

/// The type of a message: what `framed` mode carries; the other modes receive text. The same
/// type as a WebSocket data message's ([`wsgate::ws::session::DataKind`]), so that one backend
/// code path serves the relay modes and direct mode ([`super::conn`]).
pub use wsgate::ws::session::DataKind as Kind;

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The connection context (`NAME=value` lines).
    Context(&'a [u8]),
    /// A whole message.
    Message(Kind, &'a [u8]),
    /// `framed`: a close record with this payload (empty, or a code and a reason). Nothing
    /// after it is read.
    Close(&'a [u8]),
}

/// Why a client's input cannot be decoded: the client is then closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A message (or context) over the limit; it had at least this many bytes.
    TooBig(usize),
    /// The message buffer could not be allocated.
    NoMemory,
    /// A malformed or out-of-sequence `framed` record stream.
    Record(RecordFault),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooBig(n) => write!(f, "message of {n} bytes or more is over the limit (-M)"),
            Self::NoMemory => f.write_str("cannot allocate a message buffer"),
            Self::Record(e) => write!(f, "malformed record stream: {e}"),
        }
    }
}

/// A `framed` record stream out of sequence (RFC 6455 §5.4's fragmentation rules, which the
/// records follow): the client is then closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceError {
    /// A continuation record with no message started.
    StrayContinuation,
    /// A text or binary record while a message is still open.
    NestedMessage,
    /// A connection-context record inside a message.
    ContextInMessage,
}

impl core::fmt::Display for SequenceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::StrayContinuation => "continuation record outside a message",
            Self::NestedMessage => "new message before the previous one ended",
            Self::ContextInMessage => "connection-context record inside a message",
        })
    }
}

/// Why a `framed` record stream cannot be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFault {
    /// A malformed record header.
    Header(record::RecordError),
    /// A well-formed record in the wrong place.
    Sequence(SequenceError),
}

impl core::fmt::Display for RecordFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Header(e) => e.fmt(f),
            Self::Sequence(e) => e.fmt(f),
        }
    }
}

/// One step through a `framed` record stream ([`Records::next`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A record header, in sequence.
    Header(RecordHeader),
    /// Payload bytes of the record `RecordHeader` heads.
    Payload(RecordHeader, &'a [u8]),
    /// The record is complete; with the message's type when it was the last of a message.
    End(RecordHeader, Option<Kind>),
}

/// Follows the record structure of a `framed` byte stream as it passes, cut anywhere: the
/// record headers ([`wsgate::relay::record`]) and their order, without holding any payload
/// (a header split between reads is kept, in 5 bytes). The one reader of the record stream:
/// the [`Decoder`] collects the payloads it shows, and the byte-exact echo
/// ([`super::server`]) passes records on verbatim and only needs their boundaries.
#[derive(Debug, Default)]
pub struct Records {
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// The record whose payload is being read, and how much of it is still to come.
    record: Option<RecordHeader>,
    left: usize,
    /// The type of the message in progress (its first record's), if one is.
    kind: Option<Kind>,
}

impl Records {
    /// Takes the next step from the start of `data`: how many bytes of it the step used, and
    /// the step, `None` when `data` ended first (a header's bytes so far are kept).
    ///
    /// # Errors
    /// [`RecordFault`]: the stream cannot be followed further.
    // Inlined into its two callers: it runs a few times per message on the echo's and the
    // decoder's hot paths, where a call costs as much as the step (measured with callgrind).
    #[inline(always)]
    pub fn next<'a>(&mut self, data: &'a [u8]) -> Result<(usize, Option<Step<'a>>), RecordFault> {
        if let Some(h) = self.record {
            if self.left == 0 {
                self.record = None;
                let ended = match h.opcode {
                    record::OP_TEXT | record::OP_BINARY | record::OP_CONTINUATION if h.fin => {
                        self.kind.take()
                    }
                    _ => None,
                };
                return Ok((0, Some(Step::End(h, ended))));
            }
            let take = self.left.min(data.len());
            if take == 0 {
                return Ok((0, None));
            }
            self.left -= take;
            return Ok((take, Some(Step::Payload(h, data.get(..take).unwrap_or_default()))));
        }
        let slots = self.header.iter_mut().skip(self.header_len);
        let copied = slots.zip(data).map(|(dst, src)| *dst = *src).count();
        self.header_len += copied;
        if self.header_len < HEADER_LEN {
            return Ok((copied, None));
        }
        self.header_len = 0;
        let Some(h) = RecordHeader::parse(&self.header).map_err(RecordFault::Header)? else {
            // Unreachable: all 5 bytes are there. Treat as needing more, never panic.
            return Ok((copied, None));
        };
        let out_of_sequence = |e| Err(RecordFault::Sequence(e));
        match h.opcode {
            record::OP_CONTEXT if self.kind.is_some() => {
                return out_of_sequence(SequenceError::ContextInMessage)
            }
            record::OP_CONTINUATION if self.kind.is_none() => {
                return out_of_sequence(SequenceError::StrayContinuation)
            }
            record::OP_TEXT | record::OP_BINARY if self.kind.is_some() => {
                return out_of_sequence(SequenceError::NestedMessage)
            }
            record::OP_TEXT => self.kind = Some(Kind::Text),
            record::OP_BINARY => self.kind = Some(Kind::Binary),
            _ => {}
        }
        self.record = Some(h);
        self.left = usize::try_from(h.len).unwrap_or(usize::MAX);
        Ok((copied, Some(Step::Header(h))))
    }
}

/// Turns a client's bytes into [`Event`]s for one relay mode.
#[derive(Debug)]
pub struct Decoder {
    mode: Mode,
    max: usize,
    /// The context is still to come (stream, lines, seqpacket with the context expected).
    want_context: bool,
    /// The message (or context, or line) collected so far.
    msg: Vec<u8>,
    /// `framed`: where the record stream is.
    records: Records,
    /// `framed`: the close record's payload.
    close: heapless::Vec<u8, { record::MAX_CLOSE_PAYLOAD }>,
    /// A close record was read: ignore everything after it.
    closed: bool,
}

impl Decoder {
    /// A decoder for `mode` with messages of at most `max` bytes; `context` says whether the
    /// connection context is to be expected (in `framed` mode it is recognised anyway).
    #[must_use]
    pub fn new(mode: Mode, max: usize, context: bool) -> Self {
        Self {
            mode,
            max,
            want_context: context && mode != Mode::Framed,
            msg: Vec::new(),
            records: Records::default(),
            close: heapless::Vec::new(),
            closed: false,
        }
    }

    /// Feeds what one read returned (in `seqpacket` mode: one packet) and calls `emit` for
    /// each event it completes.
    ///
    /// # Errors
    /// [`DecodeError`]: the client must be closed.
    pub fn feed(
        &mut self,
        data: &[u8],
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DecodeError> {
        if self.closed {
            return Ok(());
        }
        match self.mode {
            Mode::SeqPacket if self.want_context => {
                self.want_context = false;
                emit(Event::Context(data));
                Ok(())
            }
            Mode::SeqPacket => {
                emit(Event::Message(Kind::Text, data));
                Ok(())
            }
            Mode::Stream | Mode::Lines if self.want_context => {
                let rest = self.gather_context(data, emit)?;
                if self.want_context || rest.is_empty() {
                    return Ok(());
                }
                self.feed(rest, emit)
            }
            Mode::Stream => {
                if !data.is_empty() {
                    emit(Event::Message(Kind::Text, data));
                }
                Ok(())
            }
            Mode::Lines => self.feed_lines(data, emit),
            Mode::Framed => self.feed_records(data, emit),
        }
    }

    /// Collects context lines up to the empty line that ends them; returns what follows it.
    fn gather_context<'d>(
        &mut self,
        data: &'d [u8],
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<&'d [u8], DecodeError> {
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' && (self.msg.is_empty() || self.msg.last() == Some(&b'\n')) {
                emit(Event::Context(&self.msg));
                self.msg.clear();
                self.want_context = false;
                return Ok(data.get(i + 1..).unwrap_or_default());
            }
            append(&mut self.msg, &[b], self.max)?;
        }
        Ok(&[])
    }

    fn feed_lines(
        &mut self,
        data: &[u8],
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DecodeError> {
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            rest = tail.get(1..).unwrap_or_default();
            if self.msg.is_empty() {
                if line.len() > self.max {
                    return Err(DecodeError::TooBig(line.len()));
                }
                emit(Event::Message(Kind::Text, line.strip_suffix(b"\r").unwrap_or(line)));
            } else {
                append(&mut self.msg, line, self.max)?;
                let whole = self.msg.strip_suffix(b"\r").unwrap_or(&self.msg);
                emit(Event::Message(Kind::Text, whole));
                self.msg.clear();
            }
        }
        append(&mut self.msg, rest, self.max)
    }

    fn feed_records(
        &mut self,
        data: &[u8],
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DecodeError> {
        let mut data = data;
        loop {
            let (used, step) = self.records.next(data).map_err(DecodeError::Record)?;
            data = data.get(used..).unwrap_or_default();
            match step {
                None => return Ok(()),
                Some(Step::Header(h)) if h.opcode == record::OP_CLOSE => self.close.clear(),
                Some(Step::Header(h)) => {
                    let len = usize::try_from(h.len).unwrap_or(usize::MAX);
                    let total = self.msg.len().saturating_add(len);
                    if total > self.max {
                        return Err(DecodeError::TooBig(total));
                    }
                }
                Some(Step::Payload(h, part)) if h.opcode == record::OP_CLOSE => {
                    // At most 125 bytes: RecordHeader::parse checked the length.
                    let _ = self.close.extend_from_slice(part);
                }
                Some(Step::Payload(_, part)) => append(&mut self.msg, part, self.max)?,
                Some(Step::End(h, _)) if h.opcode == record::OP_CLOSE => {
                    self.closed = true;
                    emit(Event::Close(&self.close));
                    return Ok(());
                }
                Some(Step::End(h, _)) if h.opcode == record::OP_CONTEXT => {
                    emit(Event::Context(&self.msg));
                    self.msg.clear();
                }
                Some(Step::End(_, Some(kind))) => {
                    emit(Event::Message(kind, &self.msg));
                    self.msg.clear();
                }
                Some(Step::End(_, None)) => {}
            }
        }
    }
}

/// Appends to a message buffer that may grow to `max` bytes; fallible allocation.
fn append(buf: &mut Vec<u8>, data: &[u8], max: usize) -> Result<(), DecodeError> {
    let need = buf.len().saturating_add(data.len());
    if need > max {
        return Err(DecodeError::TooBig(need));
    }
    if need > buf.capacity() {
        let cap = buf.capacity().saturating_mul(2).max(1024).min(max).max(need);
        buf.try_reserve_exact(cap - buf.len()).map_err(|_| DecodeError::NoMemory)?;
    }
    buf.extend_from_slice(data);
    Ok(())
}

/// Most packets waiting in one `seqpacket` outbox.
const MAX_PACKETS: usize = 1024;

/// A client's queue of bytes to write, encoded for its mode, bounded by `cap` bytes.
#[derive(Debug)]
pub struct Outbox {
    mode: Mode,
    cap: usize,
    buf: Vec<u8>,
    start: usize,
    /// `seqpacket`: the length of each queued packet.
    packets: VecDeque<usize>,
}

impl Outbox {
    /// An empty queue for `mode` that holds at most `cap` bytes; nothing is allocated yet.
    #[must_use]
    pub fn new(mode: Mode, cap: usize) -> Self {
        Self { mode, cap, buf: Vec::new(), start: 0, packets: VecDeque::new() }
    }

    /// Drops everything queued (the peer is gone).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.packets.clear();
    }

    /// Bytes waiting.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The queue's capacity in bytes.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Queues one message; `false` (nothing queued) when it does not fit.
    #[must_use]
    pub fn push(&mut self, kind: Kind, data: &[u8]) -> bool {
        let opcode = match kind {
            Kind::Text => record::OP_TEXT,
            Kind::Binary => record::OP_BINARY,
        };
        self.push_record(opcode, data)
    }

    /// Queues a close: a close record in `framed` mode (with `payload`: empty or a code and a
    /// reason); nothing in the other modes, where closing the socket says it.
    #[must_use]
    pub fn push_close(&mut self, payload: &[u8]) -> bool {
        self.mode != Mode::Framed || self.push_record(record::OP_CLOSE, payload)
    }

    fn push_record(&mut self, opcode: u8, data: &[u8]) -> bool {
        let Ok(len) = u32::try_from(data.len()) else { return false };
        let (head, tail): (&[u8], &[u8]) = match self.mode {
            Mode::Framed => (&RecordHeader { fin: true, opcode, len }.to_bytes(), b""),
            Mode::Lines => (b"", b"\n"),
            Mode::Stream | Mode::SeqPacket => (b"", b""),
        };
        let total = head.len() + data.len() + tail.len();
        if self.pending().saturating_add(total) > self.cap
            || (self.mode == Mode::SeqPacket && self.packets.len() >= MAX_PACKETS)
        {
            return false;
        }
        if self.start > 0 && self.buf.len() + total > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.try_reserve(total).is_err() {
            return false;
        }
        self.buf.extend_from_slice(head);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(tail);
        if self.mode == Mode::SeqPacket {
            self.packets.push_back(total);
        }
        true
    }

    /// The next bytes to write: everything in the byte-stream modes, the next packet in
    /// `seqpacket`.
    #[must_use]
    pub fn front(&self) -> &[u8] {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        match self.mode {
            Mode::SeqPacket => {
                rest.get(..self.packets.front().copied().unwrap_or(0)).unwrap_or_default()
            }
            Mode::Stream | Mode::Lines | Mode::Framed => rest,
        }
    }

    /// `n` bytes of [`Self::front`] were written (a packet is always written whole).
    pub fn consume(&mut self, n: usize) {
        let n = if self.mode == Mode::SeqPacket {
            self.packets.pop_front().unwrap_or(0)
        } else {
            n.min(self.pending())
        };
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn rec(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut v = RecordHeader { fin, opcode, len }.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// Every event, rendered, for `input` fed in pieces of `chunk` bytes.
    fn events(mode: Mode, ctx: bool, max: usize, input: &[u8], chunk: usize) -> Vec<String> {
        let mut d = Decoder::new(mode, max, ctx);
        let mut got = Vec::new();
        for piece in input.chunks(chunk) {
            let r = d.feed(piece, &mut |e| {
                got.push(match e {
                    Event::Context(c) => format!("ctx:{}", String::from_utf8_lossy(c)),
                    Event::Message(k, m) => format!("{k:?}:{}", String::from_utf8_lossy(m)),
                    Event::Close(p) => format!("close:{p:?}"),
                })
            });
            if let Err(e) = r {
                got.push(format!("error:{e:?}"));
                break;
            }
        }
        got
    }

    #[test]
    fn framed_messages_context_and_close_split_anywhere() {
        let mut s = rec(true, record::OP_CONTEXT, b"REMOTE_ADDR=1.2.3.4\n");
        s.extend(rec(false, record::OP_TEXT, b"hel"));
        s.extend(rec(true, record::OP_CONTINUATION, b"lo"));
        s.extend(rec(true, record::OP_BINARY, b""));
        s.extend(rec(true, record::OP_CLOSE, &[3, 0xe8]));
        s.extend(b"ignored");
        for chunk in 1..=s.len() {
            assert_eq!(
                events(Mode::Framed, false, 100, &s, chunk),
                ["ctx:REMOTE_ADDR=1.2.3.4\n", "Text:hello", "Binary:", "close:[3, 232]"],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn framed_limits_and_sequence() {
        let s = rec(true, record::OP_TEXT, b"123456");
        assert_eq!(events(Mode::Framed, false, 5, &s, 3), ["error:TooBig(6)"]);
        assert_eq!(events(Mode::Framed, false, 6, &s, 3), ["Text:123456"]);
        let s = rec(true, record::OP_CONTINUATION, b"x");
        assert_eq!(
            events(Mode::Framed, false, 6, &s, 9),
            ["error:Record(Sequence(StrayContinuation))"]
        );
    }

    #[test]
    fn lines_and_stream_with_context() {
        let input = b"REMOTE_ADDR=::1\nREMOTE_PORT=9\n\nab\r\ncd\nlong";
        for chunk in 1..=input.len() {
            assert_eq!(
                events(Mode::Lines, true, 64, input, chunk),
                ["ctx:REMOTE_ADDR=::1\nREMOTE_PORT=9\n", "Text:ab", "Text:cd"]
            );
        }
        assert_eq!(events(Mode::Lines, false, 3, b"abcd\n", 9), ["error:TooBig(4)"]);
        let got = events(Mode::Stream, true, 64, input, input.len());
        assert_eq!(got, ["ctx:REMOTE_ADDR=::1\nREMOTE_PORT=9\n", "Text:ab\r\ncd\nlong"]);
    }

    #[test]
    fn outbox_encodes_per_mode_and_is_bounded() {
        let mut o = Outbox::new(Mode::Framed, 16);
        assert!(o.push(Kind::Binary, b"abc"));
        assert_eq!(o.front(), [0x82, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert!(!o.push(Kind::Text, b"too long"));
        assert!(o.push_close(&[3, 0xe8]));
        o.consume(8);
        assert_eq!(o.front(), [0x88, 0, 0, 0, 2, 3, 0xe8]);

        let mut o = Outbox::new(Mode::SeqPacket, 100);
        assert!(o.push(Kind::Text, b"a") && o.push(Kind::Text, b"bc"));
        assert_eq!(o.front(), b"a");
        o.consume(1);
        assert_eq!(o.front(), b"bc");
        o.consume(2);
        assert_eq!(o.pending(), 0);

        let mut o = Outbox::new(Mode::Lines, 100);
        assert!(o.push(Kind::Text, b"x"));
        assert_eq!(o.front(), b"x\n");
    }
}
