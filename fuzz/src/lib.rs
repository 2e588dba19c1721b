//! Checks shared by the fuzz targets: what a WebSocket client would accept from a server.
//!
//! The targets turn gateway output into server-to-client frames (the session target echoes
//! what the session decoded, the downlink target takes what `Downlink::pump` wrote), and
//! [`client_view`] reads them as a strict client does: any frame that RFC 6455 forbids a
//! server to send is a panic, so the fuzzer reports it as a crash.
#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use wsgate::ws::frame::{is_valid_close_code, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};

/// A data message as the client assembled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Text (else binary).
    pub text: bool,
    /// The payload bytes received so far.
    pub data: Vec<u8>,
    /// Its final frame arrived.
    pub complete: bool,
}

/// What a client received.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientView {
    /// Data messages in order; only the last may be incomplete.
    pub messages: Vec<Message>,
    /// Ping and pong payloads, in order.
    pub pings: Vec<Vec<u8>>,
    /// Close frames: code and reason.
    pub closes: Vec<(Option<u16>, Vec<u8>)>,
}

/// Reads `bytes`, which must be whole server frames, as a client does.
///
/// # Panics
/// On a truncated frame, a masked frame, RSV bits, a reserved opcode, a fragmented or long
/// control frame, a bad close payload, a continuation outside a message or a new message inside
/// one, and text that is not UTF-8 (a complete message) or cannot become UTF-8 (an unfinished
/// one).
#[must_use]
pub fn client_view(mut bytes: &[u8]) -> ClientView {
    let mut view = ClientView::default();
    let mut open = false;
    while !bytes.is_empty() {
        let (h, hlen) = match FrameHeader::parse(bytes) {
            Ok(Some(x)) => x,
            Ok(None) => panic!("truncated frame header: {bytes:02x?}"),
            Err(e) => panic!("bad frame header ({e}): {bytes:02x?}"),
        };
        assert!(h.mask.is_none(), "a server frame is masked");
        assert_eq!(h.rsv, 0, "RSV bits set");
        let end = hlen + usize::try_from(h.len).expect("length fits");
        assert!(end <= bytes.len(), "truncated frame payload");
        let payload = &bytes[hlen..end];
        bytes = &bytes[end..];
        match h.opcode {
            OpCode::Reserved(op) => panic!("reserved opcode {op:#x}"),
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                assert!(h.fin, "fragmented control frame");
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD, "control frame over 125 bytes");
                match h.opcode {
                    OpCode::Close => view.closes.push(close_payload(payload)),
                    _ => view.pings.push(payload.to_vec()),
                }
            }
            OpCode::Text | OpCode::Binary => {
                assert!(!open, "new message inside an unfinished one");
                view.messages.push(Message {
                    text: h.opcode == OpCode::Text,
                    data: payload.to_vec(),
                    complete: h.fin,
                });
                open = !h.fin;
            }
            OpCode::Continuation => {
                assert!(open, "continuation outside a message");
                let m = view.messages.last_mut().expect("open message");
                m.data.extend_from_slice(payload);
                m.complete = h.fin;
                open = !h.fin;
            }
        }
        if let Some(m) = view.messages.last() {
            if m.text {
                check_utf8(&m.data, m.complete);
            }
        }
    }
    view
}

/// Text so far must be UTF-8, except for an unfinished code point at the end of an unfinished
/// message.
pub fn check_utf8(data: &[u8], complete: bool) {
    if let Err(e) = core::str::from_utf8(data) {
        assert!(!complete && e.error_len().is_none(), "text is not UTF-8: {data:02x?}");
    }
}

fn close_payload(payload: &[u8]) -> (Option<u16>, Vec<u8>) {
    match payload {
        [] => (None, Vec::new()),
        [_] => panic!("one-byte close payload"),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            assert!(is_valid_close_code(code), "close code {code} may not be sent");
            assert!(core::str::from_utf8(reason).is_ok(), "close reason not UTF-8");
            (Some(code), reason.to_vec())
        }
    }
}

/// Appends one unmasked server frame to `out` with the gateway's own header writer.
pub fn push_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8]) {
    let mut h = [0u8; 14];
    let n = FrameHeader::emit(fin, opcode, payload.len() as u64, &mut h).expect("header fits");
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Splits fuzz input into a stream of `(byte, chunk)` steps: each step's first byte is a
/// parameter for the harness, the next `1 + byte % 64` bytes (or what is left) its chunk.
pub fn steps(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    core::iter::from_fn(move || {
        let (&p, rest) = data.split_first()?;
        let n = (1 + usize::from(p % 64)).min(rest.len());
        let (chunk, rest) = rest.split_at(n);
        data = rest;
        Some((p, chunk))
    })
}

/// Appends one masked client frame to `out` (`rsv`: RSV1..RSV3 as the three low bits, as in
/// `FrameHeader::rsv`), with the gateway's own header writer and the length in its shortest
/// form, as RFC 6455 §5.2 requires.
pub fn push_client_frame(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: [u8; 4],
    payload: &[u8],
) {
    let mut h = [0u8; 14];
    let n = FrameHeader::emit(fin, opcode, payload.len() as u64, &mut h).expect("header fits");
    h[0] |= (rsv & 0b111) << 4;
    h[1] |= 0x80;
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}
