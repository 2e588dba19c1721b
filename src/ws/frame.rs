//! Frame headers (RFC 6455 §5.2) and close codes (§7.4). Read RFC 6455 §5 first.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! This module parses and emits headers only; payloads stay in the caller's buffers. It owns no
//! state and knows nothing of messages (see [`super::session`]).

/// Largest header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;
/// Largest header the server emits (server frames are never masked, §5.1).
pub const MAX_SERVER_HEADER_LEN: usize = 10;
/// Largest control-frame payload (§5.5: "All control frames MUST have a payload length of 125
/// bytes or less").
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The opcodes of §5.2; the reserved ones are kept as they came so that errors can name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
    /// 0x3–0x7 and 0xB–0xF.
    Reserved(u8),
}

impl OpCode {
    /// From the low nibble of the first header byte.
    #[must_use]
    pub fn from_nibble(n: u8) -> Self {
        match n & 0x0f {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            other => Self::Reserved(other),
        }
    }

    /// The wire nibble.
    #[must_use]
    pub fn nibble(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
            Self::Reserved(n) => n & 0x0f,
        }
    }

    /// Close, ping and pong (§5.5: opcodes whose most significant bit is 1).
    #[must_use]
    pub fn is_control(self) -> bool {
        self.nibble() & 0x08 != 0
    }
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the three low bits.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

/// A header that breaks §5.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// §5.2: "The most significant bit MUST be 0" in the 64-bit length.
    LengthMsbSet,
    /// §5.2: lengths must use the minimal encoding. ("the minimal number of bytes MUST be used")
    NonMinimalLength,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::LengthMsbSet => "64-bit payload length has its most significant bit set",
            Self::NonMinimalLength => "payload length not in its minimal encoding",
        })
    }
}

impl FrameHeader {
    /// Parses a header from the front of `buf`. `Ok(None)` means more bytes are needed;
    /// `Ok(Some((header, n)))` means the header took `n` bytes.
    ///
    /// # Errors
    /// [`FrameError`] for lengths that break §5.2. Semantic checks (masking, RSV, opcodes,
    /// control-frame rules) belong to the session, which knows the context.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, FrameError> {
        let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
            return Ok(None);
        };
        let rest = buf.get(2..).unwrap_or_default();
        let (len, len_bytes) = match b1 & 0x7f {
            126 => {
                let Some(&l) = rest.first_chunk::<2>() else { return Ok(None) };
                let len = u64::from(u16::from_be_bytes(l));
                if len < 126 {
                    return Err(FrameError::NonMinimalLength);
                }
                (len, 2)
            }
            127 => {
                let Some(&l) = rest.first_chunk::<8>() else { return Ok(None) };
                let len = u64::from_be_bytes(l);
                if len & (1 << 63) != 0 {
                    return Err(FrameError::LengthMsbSet);
                }
                if len <= 0xffff {
                    return Err(FrameError::NonMinimalLength);
                }
                (len, 8)
            }
            short => (u64::from(short), 0),
        };
        let rest = rest.get(len_bytes..).unwrap_or_default();
        let mask = if b1 & 0x80 != 0 {
            let Some(&m) = rest.first_chunk::<4>() else { return Ok(None) };
            Some(m)
        } else {
            None
        };
        let header_len = 2 + len_bytes + if mask.is_some() { 4 } else { 0 };
        let header = Self {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode: OpCode::from_nibble(b0),
            mask,
            len,
        };
        Ok(Some((header, header_len)))
    }

    /// Bytes [`emit`](Self::emit) writes for an unmasked header with this payload length.
    #[must_use]
    pub fn server_header_len(len: u64) -> usize {
        match len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        }
    }

    /// Writes an unmasked server header (§5.1: "A server MUST NOT mask any frames") into the front
    /// of `out`; returns the bytes written, or `None` when `out` is too short.
    #[must_use]
    pub fn emit(fin: bool, opcode: OpCode, len: u64, out: &mut [u8]) -> Option<usize> {
        let b0 = u8::from(fin) << 7 | opcode.nibble();
        let n = Self::server_header_len(len);
        let out = out.get_mut(..n)?;
        match out {
            [h0, h1] => {
                *h0 = b0;
                // `len` fits in 7 bits here (0..=125), by `server_header_len`.
                *h1 = len as u8;
            }
            [h0, h1, l @ ..] if l.len() == 2 => {
                *h0 = b0;
                *h1 = 126;
                l.copy_from_slice(&(len as u16).to_be_bytes());
            }
            [h0, h1, l @ ..] => {
                *h0 = b0;
                *h1 = 127;
                l.copy_from_slice(&len.to_be_bytes());
            }
            _ => return None,
        }
        Some(n)
    }
}

/// Is `code` allowed in a close frame received from a peer? (§7.4.1, §7.4.2, and the IANA
/// registry: 1004–1006 and 1015 must never be sent; 1012–1014 are registered since RFC 6455.)
#[must_use]
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Close codes the gateway sends (§7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away (shutdown, ping timeout).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Data of a type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Invalid payload data (bad UTF-8 in a text message).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error (here: the backend failed).
    pub const INTERNAL_ERROR: u16 = 1011;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn rfc_examples_parse() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let f = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = FrameHeader::parse(&f).unwrap().unwrap();
        assert_eq!(n, 6);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.len, 5);
        // §5.7: 256 bytes binary in a single unmasked frame: 0x82 0x7E 0x0100.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.len, n, h.opcode), (256, 4, OpCode::Binary));
        // §5.7: 64 KiB: 0x82 0x7F 0x0000000000010000.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap().unwrap();
        assert_eq!((h.len, n), (65536, 10));
    }

    #[test]
    fn every_prefix_needs_more() {
        let f = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for i in 0..f.len() {
            assert_eq!(FrameHeader::parse(&f[..i]), Ok(None), "prefix {i}");
        }
        assert_eq!(FrameHeader::parse(&f).unwrap().unwrap().1, 14);
    }

    #[test]
    fn length_rules() {
        assert_eq!(FrameHeader::parse(&[0x82, 0x7e, 0, 125]), Err(FrameError::NonMinimalLength));
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Err(FrameError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 1, 0, 0]),
            Err(FrameError::LengthMsbSet)
        );
    }

    #[test]
    fn emit_round_trips() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40] {
            let mut out = [0u8; 10];
            let n = FrameHeader::emit(true, OpCode::Binary, len, &mut out).unwrap();
            assert_eq!(n, FrameHeader::server_header_len(len));
            let (h, m) = FrameHeader::parse(&out[..n]).unwrap().unwrap();
            assert_eq!((h.len, m, h.fin, h.mask), (len, n, true, None));
        }
        assert_eq!(FrameHeader::emit(true, OpCode::Text, 70000, &mut [0u8; 9]), None);
    }

    #[test]
    fn rsv_and_opcode_are_reported() {
        let (h, _) = FrameHeader::parse(&[0xf3, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 7);
        assert_eq!(h.opcode, OpCode::Reserved(3));
        assert!(!OpCode::Reserved(3).is_control());
        assert!(OpCode::Reserved(0xb).is_control());
    }

    #[test]
    fn close_codes() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
