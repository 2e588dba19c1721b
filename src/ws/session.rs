//! The receive side of a server connection: client bytes in, message pieces and control events
//! out. Sans-IO: the caller owns the buffer, this owns a few bytes of state.
//!
//! [`Session::decode`] is pull-based. Each call consumes bytes from the front of the caller's
//! buffer and returns at most one [`Event`]. Data payloads are unmasked in place and handed
//! back as a range of that buffer, so a message of any size streams through a fixed buffer
//! without being assembled. The caller says how many payload bytes it can take (`max_data`),
//! which is how backpressure reaches the parser.
//!
//! Rules enforced, with their RFC 6455 sections:
//! * §5.1 client frames MUST be masked;
//! * §5.2 RSV bits MUST be 0 without a negotiated extension; reserved opcodes fail; with
//!   permessage-deflate (RFC 7692 §6.1) RSV1 marks a compressed message, on its first frame
//!   only;
//! * §5.4 fragmentation: continuation only inside a message, no new message inside one;
//! * §5.5 control frames: at most 125 bytes, never fragmented, may interleave fragments;
//! * §5.5.1 close: payload empty or ≥ 2 bytes, a valid code (§7.4), a UTF-8 reason;
//! * §8.1 text messages are UTF-8, checked across fragments and failing fast (1007), here for
//!   uncompressed messages (a compressed one is checked once inflated, by the caller);
//! * the message size limit (1009), checked against each frame header before its payload (for
//!   a compressed message, against the compressed bytes with DEFLATE's worst-case growth
//!   allowed; the caller counts the inflated ones).

use super::frame::MAX_CONTROL_PAYLOAD;
use super::frame::{close_code, is_valid_close_code, FrameError, FrameHeader, OpCode};
use super::mask;
use super::utf8::Utf8Validator;

/// RSV1 in [`FrameHeader::rsv`]: permessage-deflate's "compressed" bit.
pub const RSV1: u8 = 0b100;

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// Opcode 0x1.
    Text,
    /// Opcode 0x2.
    Binary,
}

/// A control frame's payload, copied out (at most 125 bytes, no heap).
#[derive(Clone, Copy)]
pub struct Control {
    buf: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl core::fmt::Debug for Control {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Control({:?})", self.as_slice())
    }
}

impl Control {
    /// An empty payload.
    pub const EMPTY: Self = Self { buf: [0; MAX_CONTROL_PAYLOAD], len: 0 };

    /// Copies up to 125 bytes.
    #[must_use]
    pub fn new(bytes: &[u8]) -> Self {
        let mut c = Self::EMPTY;
        let n = bytes.len().min(MAX_CONTROL_PAYLOAD);
        if let (Some(dst), Some(src)) = (c.buf.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        c.len = n as u8;
        c
    }

    /// The payload.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// What one call of [`Session::decode`] found.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A piece of a data message: the last `len` consumed bytes of the input, unmasked.
    /// `start` marks the first piece of a message, `fin` the last; a message may consist of a
    /// single piece with both set, and pieces may be empty.
    Data {
        /// Text or binary.
        kind: DataKind,
        /// First piece of the message.
        start: bool,
        /// Last piece of the message.
        fin: bool,
        /// Payload length, at the end of the consumed bytes.
        len: usize,
        /// The message is compressed (permessage-deflate): the payload is DEFLATE data.
        compressed: bool,
    },
    /// A ping; answer with a pong carrying the same payload (§5.5.2).
    Ping(Control),
    /// A pong.
    Pong(Control),
    /// A close frame, already checked: code (if any) and UTF-8 reason.
    Close {
        /// Status code; `None` for an empty close payload.
        code: Option<u16>,
        /// Reason text (validated UTF-8).
        reason: Control,
    },
}

/// A client that broke the protocol; the connection must be failed with [`Self::close_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A malformed frame header.
    Frame(FrameError),
    /// §5.1: "a client MUST mask all frames that it sends to the server".
    Unmasked,
    /// §5.2: "MUST be 0 unless an extension is negotiated".
    ReservedBits(u8),
    /// §5.2: reserved opcode.
    ReservedOpcode(u8),
    /// §5.5: control payload over 125 bytes.
    ControlTooLong,
    /// §5.5: "Control frames themselves MUST NOT be fragmented".
    ControlFragmented,
    /// §5.4: a continuation frame with no message in progress.
    UnexpectedContinuation,
    /// §5.4: a new text/binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// §5.5.1: a close payload of exactly one byte.
    CloseTooShort,
    /// §7.4: a close code that must not appear on the wire.
    BadCloseCode(u16),
    /// §8.1: a text message (or a close reason) that is not UTF-8.
    InvalidUtf8,
    /// The message exceeds the configured limit.
    TooBig,
    /// A compressed message that is not DEFLATE, or has data after its final block (RFC 7692
    /// §7.2.2; 1007, as for any payload that is not what it claims).
    BadCompression,
}

impl ProtocolError {
    /// The close code that answers this error (§7.4.1).
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::BadCompression => close_code::INVALID_PAYLOAD,
            Self::TooBig => close_code::TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Frame(e) => write!(f, "{e}"),
            Self::Unmasked => f.write_str("unmasked client frame"),
            Self::ReservedBits(r) => write!(f, "reserved bits {r:#x} set"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::ControlTooLong => f.write_str("control frame over 125 bytes"),
            Self::ControlFragmented => f.write_str("fragmented control frame"),
            Self::UnexpectedContinuation => f.write_str("continuation frame outside a message"),
            Self::ExpectedContinuation => f.write_str("new message inside a fragmented one"),
            Self::CloseTooShort => f.write_str("close payload of one byte"),
            Self::BadCloseCode(c) => write!(f, "invalid close code {c}"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            Self::TooBig => f.write_str("message too big"),
            Self::BadCompression => f.write_str("invalid compressed data"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct DataFrame {
    fin: bool,
    mask: [u8; 4],
    remaining: u64,
    offset: u64,
}

/// Receive-side state of one connection.
#[derive(Clone, Debug)]
pub struct Session {
    max_message: u64,
    frame: Option<DataFrame>,
    message: Option<DataKind>,
    message_len: u64,
    start_pending: bool,
    utf8: Utf8Validator,
    /// permessage-deflate was negotiated: RSV1 may mark a message compressed.
    deflate: bool,
    /// The message in progress is compressed.
    compressed: bool,
}

impl Session {
    /// A session enforcing `max_message` bytes per message.
    #[must_use]
    pub fn new(max_message: u64) -> Self {
        Self {
            max_message,
            frame: None,
            message: None,
            message_len: 0,
            start_pending: false,
            utf8: Utf8Validator::new(),
            deflate: false,
            compressed: false,
        }
    }

    /// permessage-deflate was negotiated: RSV1 on a message's first frame is allowed and marks
    /// it compressed.
    pub fn set_deflate(&mut self, on: bool) {
        self.deflate = on;
    }

    /// The limit on a compressed message's payload: the message limit plus what DEFLATE may
    /// add to incompressible data (5 bytes per stored block of up to 64 KiB, and the flush).
    fn compressed_limit(&self) -> u64 {
        self.max_message.saturating_add(self.max_message / 8192).saturating_add(64)
    }

    /// Lowers (or raises) the message limit, e.g. for a mode that must hold whole messages.
    pub fn set_max_message(&mut self, max: u64) {
        self.max_message = max;
    }

    /// The message limit.
    #[must_use]
    pub fn max_message(&self) -> u64 {
        self.max_message
    }

    /// Is a data message in progress (some of it consumed, not its end)?
    #[must_use]
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Consumes bytes from the front of `input` and returns how many, with at most one event.
    /// `(0, None)` means more input is needed, or `max_data` is 0 inside a payload.
    /// A `Data` event's payload is `input[consumed - len..consumed]`, unmasked in place.
    ///
    /// # Errors
    /// [`ProtocolError`]: the connection must be failed; nothing more should be decoded.
    pub fn decode(
        &mut self,
        input: &mut [u8],
        max_data: usize,
    ) -> Result<(usize, Option<Event>), ProtocolError> {
        let mut consumed = 0;
        if self.frame.is_none() {
            let Some((h, hlen)) = FrameHeader::parse(input).map_err(ProtocolError::Frame)? else {
                return Ok((0, None));
            };
            let Some(mask) = h.mask else { return Err(ProtocolError::Unmasked) };
            // RFC 7692 §6.1: RSV1 is permessage-deflate's, on a data message's first frame.
            let rsv1 =
                self.deflate && h.rsv == RSV1 && matches!(h.opcode, OpCode::Text | OpCode::Binary);
            if h.rsv != 0 && !rsv1 {
                return Err(ProtocolError::ReservedBits(h.rsv));
            }
            if let OpCode::Reserved(op) = h.opcode {
                return Err(ProtocolError::ReservedOpcode(op));
            }
            if h.opcode.is_control() {
                return self.control(input, h, hlen, mask);
            }
            let kind = match h.opcode {
                OpCode::Text => Some(DataKind::Text),
                OpCode::Binary => Some(DataKind::Binary),
                OpCode::Continuation => None,
                OpCode::Reserved(op) => return Err(ProtocolError::ReservedOpcode(op)),
                // Control opcodes returned above.
                OpCode::Close | OpCode::Ping | OpCode::Pong => None,
            };
            match (kind, self.message) {
                (Some(_), Some(_)) => return Err(ProtocolError::ExpectedContinuation),
                (None, None) => return Err(ProtocolError::UnexpectedContinuation),
                (Some(k), None) => {
                    self.message = Some(k);
                    self.message_len = 0;
                    self.start_pending = true;
                    self.compressed = rsv1;
                    self.utf8.reset();
                }
                (None, Some(_)) => {}
            }
            self.message_len = self.message_len.saturating_add(h.len);
            let limit = if self.compressed { self.compressed_limit() } else { self.max_message };
            if self.message_len > limit {
                return Err(ProtocolError::TooBig);
            }
            self.frame = Some(DataFrame { fin: h.fin, mask, remaining: h.len, offset: 0 });
            consumed = hlen;
            if h.len == 0 {
                return self.data(input, consumed, 0).map(|ev| (consumed, ev));
            }
        }
        let Some(frame) = self.frame else { return Ok((consumed, None)) };
        let available = input.len().saturating_sub(consumed);
        let n = available.min(max_data).min(usize::try_from(frame.remaining).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok((consumed, None));
        }
        let ev = self.data(input, consumed, n)?;
        Ok((consumed + n, ev))
    }

    /// Unmasks and checks `n` payload bytes at `input[at..]`, and advances the frame.
    fn data(
        &mut self,
        input: &mut [u8],
        at: usize,
        n: usize,
    ) -> Result<Option<Event>, ProtocolError> {
        let (Some(mut frame), Some(kind)) = (self.frame, self.message) else { return Ok(None) };
        let payload = input.get_mut(at..at + n).unwrap_or_default();
        mask::apply(frame.mask, frame.offset, payload);
        let check = kind == DataKind::Text && !self.compressed;
        if check && self.utf8.feed(payload).is_err() {
            // §8.1 / Autobahn 6.4: fail as soon as the bytes cannot be UTF-8, not at the end.
            return Err(ProtocolError::InvalidUtf8);
        }
        frame.offset += n as u64;
        frame.remaining -= n as u64;
        let fin = frame.remaining == 0 && frame.fin;
        if fin && check && !self.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        let start = core::mem::take(&mut self.start_pending);
        if frame.remaining == 0 {
            self.frame = None;
            if frame.fin {
                self.message = None;
            }
        } else {
            self.frame = Some(frame);
        }
        Ok(Some(Event::Data { kind, start, fin, len: n, compressed: self.compressed }))
    }

    fn control(
        &mut self,
        input: &mut [u8],
        h: FrameHeader,
        hlen: usize,
        mask: [u8; 4],
    ) -> Result<(usize, Option<Event>), ProtocolError> {
        if h.len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlTooLong);
        }
        if !h.fin {
            return Err(ProtocolError::ControlFragmented);
        }
        // Control frames are small: wait until the whole frame is buffered.
        let total = hlen + h.len as usize;
        let Some(payload) = input.get_mut(hlen..total) else { return Ok((0, None)) };
        mask::apply(mask, 0, payload);
        let event = match h.opcode {
            OpCode::Ping => Event::Ping(Control::new(payload)),
            OpCode::Pong => Event::Pong(Control::new(payload)),
            _ => close_event(payload)?,
        };
        Ok((total, Some(event)))
    }
}

fn close_event(payload: &[u8]) -> Result<Event, ProtocolError> {
    match payload {
        [] => Ok(Event::Close { code: None, reason: Control::EMPTY }),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::BadCloseCode(code));
            }
            let mut v = Utf8Validator::new();
            if v.feed(reason).is_err() || !v.is_complete() {
                return Err(ProtocolError::InvalidUtf8);
            }
            Ok(Event::Close { code: Some(code), reason: Control::new(reason) })
        }
    }
}

#[cfg(test)]
mod tests;
