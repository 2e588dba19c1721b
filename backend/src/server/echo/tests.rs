#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
use super::*;
use wsgate::relay::record::RecordHeader;

fn rec(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut v = RecordHeader { fin, opcode, len }.to_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

const NO_LIMIT: usize = usize::MAX;

/// Every boundary in `stream` fed in pieces of `chunk` bytes, as absolute offsets; stops
/// at the first close or oversized message.
fn boundaries(stream: &[u8], chunk: usize, limit: usize) -> Vec<(usize, Boundary)> {
    let mut framer = Framer::default();
    let mut found = Vec::new();
    let mut seen = 0;
    for piece in stream.chunks(chunk) {
        let mut piece = piece;
        while let Some((at, b)) = framer.scan(piece, limit).unwrap() {
            found.push((seen + at, b));
            if b != Boundary::Message {
                return found;
            }
            piece = &piece[at..];
            seen += at;
        }
        seen += piece.len();
    }
    found
}

#[test]
fn framer_follows_records_split_at_every_byte() {
    let mut stream = rec(false, record::OP_TEXT, b"hello ");
    stream.extend(rec(true, record::OP_CONTINUATION, b"world"));
    let first_end = stream.len();
    stream.extend(rec(true, record::OP_BINARY, b""));
    let second_end = stream.len();
    let close_at = stream.len() + HEADER_LEN + 2;
    stream.extend(rec(true, record::OP_CLOSE, &1000u16.to_be_bytes()));
    stream.extend(b"trailing junk");
    let want = vec![
        (first_end, Boundary::Message),
        (second_end, Boundary::Message),
        (close_at, Boundary::Close),
    ];
    for chunk in 1..=stream.len() {
        assert_eq!(boundaries(&stream, chunk, NO_LIMIT), want, "chunk size {chunk}");
    }
}

#[test]
fn framer_checks_the_limit_per_message_headers_included() {
    // 3 + 5 and 2 + 5 bytes: 15 in all.
    let mut stream = rec(false, record::OP_BINARY, b"abc");
    stream.extend(rec(true, record::OP_CONTINUATION, b"de"));
    let end = stream.len();
    for chunk in 1..=stream.len() {
        assert_eq!(boundaries(&stream, chunk, 15), vec![(end, Boundary::Message)]);
        // Over by one: found at the second header, before its payload.
        assert_eq!(boundaries(&stream, chunk, 14), vec![(13, Boundary::TooBig(15))]);
    }
    // The count starts again with each message.
    let mut two = stream.clone();
    two.extend(&stream);
    let got = boundaries(&two, 4, 15);
    assert_eq!(got, vec![(end, Boundary::Message), (2 * end, Boundary::Message)]);
}

#[test]
fn message_buffer_capacity_stays_within_the_limit() {
    let limit = 200_000;
    let mut msg = Vec::new();
    while msg.len() + 1000 <= limit {
        grow(&mut msg, &[7; 1000], limit).unwrap();
        assert!(msg.capacity() <= limit + HEADER_LEN + record::MAX_CLOSE_PAYLOAD);
    }
    assert!(msg.capacity() >= MSG_MIN_CAP);
}

#[test]
fn framer_rejects_bad_sequences() {
    use crate::message::SequenceError;
    let seq = |e| Err(FrameFault::Records(RecordFault::Sequence(e)));
    let mut framer = Framer::default();
    assert_eq!(
        framer.scan(&rec(true, record::OP_CONTINUATION, b"x"), NO_LIMIT),
        seq(SequenceError::StrayContinuation)
    );
    let mut framer = Framer::default();
    let mut two = rec(false, record::OP_TEXT, b"a");
    two.extend(rec(true, record::OP_BINARY, b"b"));
    assert_eq!(framer.scan(&two, NO_LIMIT), seq(SequenceError::NestedMessage));
    let mut framer = Framer::default();
    assert!(matches!(
        framer.scan(&[0x84, 0, 0, 0, 0], NO_LIMIT),
        Err(FrameFault::Records(RecordFault::Header(_)))
    ));
    let mut framer = Framer::default();
    assert_eq!(framer.scan(&[0x83, 0, 0, 0, 0], NO_LIMIT), Err(FrameFault::Context));
}

#[test]
fn close_may_come_inside_a_message() {
    let mut framer = Framer::default();
    let mut s = rec(false, record::OP_BINARY, b"part");
    s.extend(rec(true, record::OP_CLOSE, b""));
    assert_eq!(framer.scan(&s, NO_LIMIT), Ok(Some((s.len(), Boundary::Close))));
}
