//! The receive side of a connection (`ws::session::Session`): client bytes, fed in pieces of
//! any size, against a reference decoder written here from RFC 6455 that sees all the bytes
//! at once; and the gateway's echo of what the session accepted, read by a strict client
//! (`client_view`), so that the session can never make the gateway send an invalid frame.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::ws::frame::{is_valid_close_code, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use wsgate::ws::session::{DataKind, Event, Session};
use wsgate_fuzz::{client_view, push_frame, steps};

/// Longest input that can leave the session waiting: a 14-byte header and a 125-byte
/// control payload. With this much buffered, `decode` must make progress.
const STALL_MAX: usize = 14 + MAX_CONTROL_PAYLOAD;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Msg { text: bool, data: Vec<u8>, complete: bool },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, Vec<u8>),
    Fail(u16),
}

fn utf8_ok(data: &[u8], complete: bool) -> bool {
    match core::str::from_utf8(data) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none(),
    }
}

/// RFC 6455 §5 as a client's bytes must follow it, decoded in one go.
fn reference(mut input: &[u8], max_message: u64) -> Vec<Ev> {
    let mut evs = Vec::new();
    let mut open: Option<(bool, u64)> = None; // (text, declared length so far)
    loop {
        let (h, hlen) = match FrameHeader::parse(input) {
            Ok(Some(x)) => x,
            Ok(None) => return evs,
            Err(_) => return fail(evs, 1002),
        };
        let Some(mask) = h.mask else { return fail(evs, 1002) };
        if h.rsv != 0 || matches!(h.opcode, OpCode::Reserved(_)) {
            return fail(evs, 1002);
        }
        let rest = &input[hlen..];
        let avail = rest.len().min(usize::try_from(h.len).unwrap_or(usize::MAX));
        let mut payload: Vec<u8> = rest[..avail].to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let whole = avail as u64 == h.len;
        if matches!(h.opcode, OpCode::Close | OpCode::Ping | OpCode::Pong) {
            if h.len > MAX_CONTROL_PAYLOAD as u64 || !h.fin {
                return fail(evs, 1002);
            }
            if !whole {
                return evs;
            }
            match h.opcode {
                OpCode::Ping => evs.push(Ev::Ping(payload)),
                OpCode::Pong => evs.push(Ev::Pong(payload)),
                _ => {
                    return match payload.as_slice() {
                        [] => {
                            evs.push(Ev::Close(None, Vec::new()));
                            evs
                        }
                        [_] => fail(evs, 1002),
                        [hi, lo, reason @ ..] => {
                            let code = u16::from_be_bytes([*hi, *lo]);
                            if !is_valid_close_code(code) {
                                fail(evs, 1002)
                            } else if core::str::from_utf8(reason).is_err() {
                                fail(evs, 1007)
                            } else {
                                evs.push(Ev::Close(Some(code), reason.to_vec()));
                                evs
                            }
                        }
                    };
                }
            }
        } else {
            let declared = match (h.opcode, open) {
                (OpCode::Continuation, None) | (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return fail(evs, 1002)
                }
                (OpCode::Continuation, Some((_, so_far))) => so_far.saturating_add(h.len),
                _ => h.len,
            };
            if declared > max_message {
                return fail(evs, 1009);
            }
            let text = match open {
                Some((text, _)) => text,
                None => {
                    let text = h.opcode == OpCode::Text;
                    if avail == 0 && h.len > 0 {
                        // The session has read the header, and shows nothing before payload.
                        return evs;
                    }
                    evs.push(Ev::Msg { text, data: Vec::new(), complete: false });
                    text
                }
            };
            // The open message (control frames may have come after its first frame).
            let m = evs.iter_mut().rev().find(|e| matches!(e, Ev::Msg { .. })).unwrap();
            let Ev::Msg { data, complete, .. } = m else { unreachable!() };
            data.extend_from_slice(&payload);
            *complete = whole && h.fin;
            if text && !utf8_ok(data, *complete) {
                // Never delivered: the session fails before handing out the bad piece.
                let i = evs.iter().rposition(|e| matches!(e, Ev::Msg { .. })).unwrap();
                evs.remove(i);
                return fail(evs, 1007);
            }
            if !whole {
                return evs;
            }
            open = (!h.fin).then_some((text, declared));
        }
        input = &input[hlen + avail..];
    }
}

fn fail(mut evs: Vec<Ev>, code: u16) -> Vec<Ev> {
    evs.push(Ev::Fail(code));
    evs
}

/// When decoding failed, how much of the open message came out first depends on where the
/// input was cut (the session fails as soon as it sees a bad piece): compare without it.
fn normalized(mut evs: Vec<Ev>) -> Vec<Ev> {
    if matches!(evs.last(), Some(Ev::Fail(_))) {
        evs.retain(|e| !matches!(e, Ev::Msg { complete: false, .. }));
    }
    evs
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, data)) = data.split_first() else { return };
    let max_message = if limit == 0xff { u64::MAX } else { u64::from(limit) * 16 };
    // The byte stream is every step's chunk; the steps' parameter bytes say how much the
    // session may hand out per call.
    let all: Vec<u8> = steps(data).flat_map(|(_, c)| c.iter().copied()).collect();
    let expected = reference(&all, max_message);

    let mut session = Session::new(max_message);
    let mut pending: Vec<u8> = Vec::new();
    let mut got: Vec<Ev> = Vec::new();
    let mut echo: Vec<u8> = Vec::new();
    let mut open = false;
    'feed: for (p, chunk) in steps(data) {
        pending.extend_from_slice(chunk);
        let max_data = [1, 7, 200, usize::MAX][usize::from(p >> 6)];
        loop {
            let (n, ev) = match session.decode(&mut pending, max_data) {
                Ok(x) => x,
                Err(e) => {
                    got.push(Ev::Fail(e.close_code()));
                    break 'feed;
                }
            };
            assert!(n <= pending.len());
            let Some(ev) = ev else {
                if n == 0 {
                    assert!(pending.len() < STALL_MAX, "stalled with {} bytes", pending.len());
                    break;
                }
                // A data frame's header, its payload still to come.
                pending.drain(..n);
                continue;
            };
            match ev {
                Event::Data { kind, start, fin, len, .. } => {
                    assert!(len <= n && len <= max_data);
                    let piece = &pending[n - len..n];
                    assert_eq!(start, !open, "start flag out of step");
                    let text = kind == DataKind::Text;
                    if start {
                        got.push(Ev::Msg { text, data: Vec::new(), complete: false });
                    }
                    let m = got.iter_mut().rev().find(|e| matches!(e, Ev::Msg { .. })).unwrap();
                    let Ev::Msg { text: t, data, complete } = m else { unreachable!() };
                    assert_eq!(*t, text, "message kind changed");
                    data.extend_from_slice(piece);
                    *complete = fin;
                    assert!(data.len() as u64 <= max_message);
                    let op = match (start, kind) {
                        (false, _) => OpCode::Continuation,
                        (true, DataKind::Text) => OpCode::Text,
                        (true, DataKind::Binary) => OpCode::Binary,
                    };
                    push_frame(&mut echo, fin, op, piece);
                    open = !fin;
                }
                Event::Ping(c) => {
                    got.push(Ev::Ping(c.as_slice().to_vec()));
                    push_frame(&mut echo, true, OpCode::Pong, c.as_slice());
                }
                Event::Pong(c) => got.push(Ev::Pong(c.as_slice().to_vec())),
                Event::Close { code, reason } => {
                    got.push(Ev::Close(code, reason.as_slice().to_vec()));
                    let mut payload = code.map(u16::to_be_bytes).unwrap_or_default().to_vec();
                    payload.truncate(if code.is_some() { 2 } else { 0 });
                    payload.extend_from_slice(reason.as_slice());
                    push_frame(&mut echo, true, OpCode::Close, &payload);
                    break 'feed;
                }
            }
            pending.drain(..n);
        }
    }
    assert_eq!(normalized(got), normalized(expected));
    // The echo of everything the session let through is a valid server stream.
    let _ = client_view(&echo);
});
