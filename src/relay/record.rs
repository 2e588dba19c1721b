//! The `framed` relay mode's record header: how message boundaries, types and close codes
//! survive a byte-stream UNIX socket.
//!
//! Every record is a 5-byte header followed by `len` payload bytes:
//!
//! ```text
//!  byte 0            bytes 1..=4
//! +-+-----+-------+ +---------------------------+
//! |F| 000 |opcode | | payload length, u32, big-endian |
//! +-+-----+-------+ +---------------------------+
//! ```
//!
//! * `F` (bit 7): this record ends its message.
//! * `opcode` (bits 0–3), the WebSocket opcodes: `0x0` continuation, `0x1` text, `0x2` binary,
//!   `0x8` close. A message is a first record with opcode 1 or 2, then zero or more records with
//!   opcode 0; the last one has `F` set. A message may be split into any number of records at any
//!   byte (the gateway cuts where its buffers do), so a backend must not assume one record per
//!   message, only that `F` marks the end.
//! * A context record (opcode `0x3`, gateway → backend only, `F` set) is the first record of a
//!   connection whose endpoint has `context` on: `NAME=value` lines, see [`super::context`].
//! * A close record has `F` set and a payload of nothing, or a 2-byte big-endian status code
//!   followed by at most 123 bytes of UTF-8 reason (RFC 6455 §5.5.1).
//! * Bits 4–6 are zero; other opcodes are reserved, and a record using them is a protocol error.
//!
//! Example: the text message "hi" is `81 00 00 00 02 68 69`; an empty binary message is
//! `82 00 00 00 00`; close 1000 is `88 00 00 00 02 03 e8`.

/// Size of a record header in bytes.
pub const HEADER_LEN: usize = 5;

/// Largest close-record payload (RFC 6455 §5.5: control payloads are at most 125 bytes).
pub const MAX_CLOSE_PAYLOAD: usize = 125;

/// Record opcodes (the WebSocket opcodes, RFC 6455 §5.2).
pub const OP_CONTINUATION: u8 = 0x0;
/// Text message start.
pub const OP_TEXT: u8 = 0x1;
/// Binary message start.
pub const OP_BINARY: u8 = 0x2;
/// Close.
pub const OP_CLOSE: u8 = 0x8;
/// Connection context (gateway → backend only).
pub const OP_CONTEXT: u8 = 0x3;

/// A parsed record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// This record ends its message.
    pub fin: bool,
    /// One of the `OP_*` opcodes.
    pub opcode: u8,
    /// Payload length.
    pub len: u32,
}

/// A malformed record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Bits 4–6 of the first byte are not zero.
    ReservedBits(u8),
    /// The opcode is not one of continuation, text, binary or close.
    ReservedOpcode(u8),
    /// A close record without `F`, or with more than 125 payload bytes or exactly 1.
    BadClose,
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ReservedBits(b) => write!(f, "record header byte {b:#04x} has reserved bits set"),
            Self::ReservedOpcode(op) => write!(f, "record opcode {op:#x} is reserved"),
            Self::BadClose => f.write_str("malformed close record"),
        }
    }
}

impl RecordHeader {
    /// Parses a header from the front of `buf`: `Ok(None)` when fewer than 5 bytes are there.
    ///
    /// # Errors
    /// [`RecordError`] names the broken rule.
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, RecordError> {
        let Some(&[b0, l0, l1, l2, l3]) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(RecordError::ReservedBits(b0));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            OP_CLOSE => {
                if !fin || len as usize > MAX_CLOSE_PAYLOAD || len == 1 {
                    return Err(RecordError::BadClose);
                }
            }
            OP_CONTEXT if fin => {}
            other => return Err(RecordError::ReservedOpcode(other)),
        }
        Ok(Some(Self { fin, opcode, len }))
    }

    /// The 5 header bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let [l0, l1, l2, l3] = self.len.to_be_bytes();
        [u8::from(self.fin) << 7 | (self.opcode & 0x0f), l0, l1, l2, l3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples_round_trip() {
        let hi = RecordHeader { fin: true, opcode: OP_TEXT, len: 2 };
        assert_eq!(hi.to_bytes(), [0x81, 0, 0, 0, 2]);
        assert_eq!(RecordHeader::parse(&[0x81, 0, 0, 0, 2, b'h', b'i']), Ok(Some(hi)));
        let close = RecordHeader { fin: true, opcode: OP_CLOSE, len: 2 };
        assert_eq!(close.to_bytes(), [0x88, 0, 0, 0, 2]);
        let big = RecordHeader { fin: false, opcode: OP_BINARY, len: 0x0102_0304 };
        assert_eq!(RecordHeader::parse(&big.to_bytes()), Ok(Some(big)));
    }

    #[test]
    fn short_input_needs_more() {
        assert_eq!(RecordHeader::parse(&[0x81, 0, 0, 0]), Ok(None));
        assert_eq!(RecordHeader::parse(&[]), Ok(None));
    }

    #[test]
    fn broken_rules_are_named() {
        assert_eq!(RecordHeader::parse(&[0xc1, 0, 0, 0, 0]), Err(RecordError::ReservedBits(0xc1)));
        assert_eq!(RecordHeader::parse(&[0x03, 0, 0, 0, 0]), Err(RecordError::ReservedOpcode(3)));
        assert_eq!(RecordHeader::parse(&[0x84, 0, 0, 0, 0]), Err(RecordError::ReservedOpcode(4)));
        assert_eq!(RecordHeader::parse(&[0x89, 0, 0, 0, 0]), Err(RecordError::ReservedOpcode(9)));
        assert_eq!(RecordHeader::parse(&[0x08, 0, 0, 0, 2]), Err(RecordError::BadClose));
        assert_eq!(RecordHeader::parse(&[0x88, 0, 0, 0, 1]), Err(RecordError::BadClose));
        assert_eq!(RecordHeader::parse(&[0x88, 0, 0, 0, 126]), Err(RecordError::BadClose));
    }
}
