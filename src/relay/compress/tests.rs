#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use crate::buffer::BufPool;
use crate::ws::deflate::zstream::bound;
use crate::ws::session::{Event, Session};

const BUF: usize = 16 * 1024;
const SIZES: Sizes = Sizes { deflaters: 1, narrow: 1, inflaters: 2 };

fn json(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u32;
    while v.len() < n {
        v.extend_from_slice(
            format!("{{\"port\":\"lan{}\",\"rx\":{},\"up\":true}},", i % 4, i * 7).as_bytes(),
        );
        i += 1;
    }
    v.truncate(n);
    v
}

/// A client's compressed message as masked frames of `frag` payload bytes each.
fn client_frames(text: bool, payload: &[u8], frag: usize) -> Vec<u8> {
    let mut d = Deflater::new(6, 15, 4);
    let mut z = vec![0u8; bound(payload.len())];
    let n = d.compress(payload, &mut z, true).unwrap();
    assert_eq!(&z[n - 4..n], &TAIL);
    let z = &z[..n - 4];
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = if z.is_empty() { vec![z] } else { z.chunks(frag).collect() };
    for (i, c) in chunks.iter().enumerate() {
        let fin = i + 1 == chunks.len();
        let op = if i > 0 {
            0
        } else if text {
            1
        } else {
            2
        };
        let rsv = if i == 0 { 0x40 } else { 0 };
        out.push(u8::from(fin) << 7 | rsv | op);
        assert!(c.len() < 126);
        out.push(0x80 | c.len() as u8);
        let mask = [1, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(c.iter().enumerate().map(|(j, b)| b ^ mask[j % 4]));
    }
    out
}

/// Drives session + inbound over `wire` as the connection does; the inflated message, or the
/// error.
fn inflate_through(
    cx: &mut Contexts,
    wire: &[u8],
    room: usize,
    max: u64,
) -> Result<Vec<u8>, ProtocolError> {
    let mut pool = BufPool::new(1, BUF).unwrap();
    let mut input = pool.take().unwrap();
    assert!(input.append(wire));
    let mut session = Session::new(max);
    session.set_deflate(true);
    let mut inbound = Inbound { reserved: cx.reserve(), ..Inbound::default() };
    assert!(inbound.reserved);
    let got = relay(cx, &mut session, &mut inbound, &mut input, room, max);
    // As the connection does when it closes, failed or not.
    inbound.release(cx);
    got
}

fn relay(
    cx: &mut Contexts,
    session: &mut Session,
    inbound: &mut Inbound,
    input: &mut Buf,
    room: usize,
    max: u64,
) -> Result<Vec<u8>, ProtocolError> {
    let mut got = Vec::new();
    let mut pieces = 0;
    let mut done = false;
    while !done {
        if inbound.busy() {
            match inbound.step(cx, Some(&mut *input), room, max)? {
                Step::Piece { fin, bytes, start, .. } => {
                    assert_eq!(start, pieces == 0, "only the first piece starts the message");
                    pieces += 1;
                    got.extend_from_slice(bytes);
                    done = fin;
                }
                Step::Consumed => {}
                Step::Blocked => panic!("blocked with room {room}"),
            }
            continue;
        }
        let (n, ev) = session.decode(input.readable_mut(), usize::MAX)?;
        match ev {
            Some(Event::Data { kind, start, fin, len, compressed: true }) => {
                inbound.feed(cx, kind, start, fin, len);
                input.consume(n - len);
            }
            other => panic!("{other:?}"),
        }
    }
    Ok(got)
}

#[test]
fn client_messages_inflate_through_small_rooms_and_fragments() {
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    for (len, frag, room) in [(0, 100, 100), (1, 100, 7), (5000, 100, 333), (40_000, 125, BUF)] {
        let msg = json(len);
        let got =
            inflate_through(&mut cx, &client_frames(true, &msg, frag), room, 1 << 20).unwrap();
        assert_eq!(got, msg, "{len} bytes in frames of {frag}, room {room}");
    }
    // Every decompressor came back, reset, and every promise.
    assert_eq!((cx.inflaters.len(), cx.reserved), (2, 0));
}

#[test]
fn a_bomb_stops_at_the_limit_on_inflated_bytes() {
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    // 200 KB of zeros compress to a few hundred bytes; the limit is 64 KiB.
    let wire = client_frames(false, &vec![0u8; 200_000], 120);
    assert!(wire.len() < 2_000, "{}", wire.len());
    assert_eq!(inflate_through(&mut cx, &wire, BUF, 64 << 10), Err(ProtocolError::TooBig));
    assert_eq!(ProtocolError::TooBig.close_code(), 1009);
}

#[test]
fn bad_data_and_bad_utf8_fail_with_1007() {
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    // Block type 3 is reserved in DEFLATE.
    let wire = [0xc1, 0x83, 0, 0, 0, 0, 0xff, 0xff, 0xff];
    let e = inflate_through(&mut cx, &wire, BUF, 1 << 20).unwrap_err();
    assert_eq!((e, e.close_code()), (ProtocolError::BadCompression, 1007));
    let wire = client_frames(true, b"ok \xff not utf-8", 100);
    assert_eq!(inflate_through(&mut cx, &wire, BUF, 1 << 20), Err(ProtocolError::InvalidUtf8));
    // Data after a final block.
    let wire = [0xc1, 0x83, 0, 0, 0, 0, 0x03, 0x00, 0x41];
    assert_eq!(inflate_through(&mut cx, &wire, BUF, 1 << 20), Err(ProtocolError::BadCompression));
}

#[test]
fn promises_run_out_and_come_back() {
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    assert!(cx.reserve() && cx.reserve());
    assert!(!cx.reserve(), "two decompressors, two promises");
    cx.unreserve();
    assert!(cx.reserve());
}

/// Server frames: (fin, rsv, opcode, payload).
fn frames(out: &Buf) -> Vec<(bool, u8, u8, Vec<u8>)> {
    let mut v = Vec::new();
    let mut b = out.readable();
    while !b.is_empty() {
        let (h, n) = FrameHeader::parse(b).unwrap().unwrap();
        let len = h.len as usize;
        v.push((h.fin, h.rsv, h.opcode.nibble(), b[n..n + len].to_vec()));
        b = &b[n + len..];
    }
    v
}

fn inflate_frames(f: &[(bool, u8, u8, Vec<u8>)]) -> Vec<u8> {
    let mut z: Vec<u8> = f.iter().flat_map(|x| x.3.clone()).collect();
    z.extend_from_slice(&TAIL);
    let mut inf = Inflater::new();
    let mut out = vec![0u8; 1 << 20];
    let r = inf.inflate(&z, &mut out).unwrap();
    out.truncate(r.produced);
    out
}

#[test]
fn backend_messages_go_compressed_with_rsv1_on_the_first_frame_only() {
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    let mut pool = BufPool::new(1, BUF).unwrap();
    let mut out = pool.take().unwrap();
    let mut ob = Outbound::new(&crate::ws::deflate::Agreement { server_window_bits: 15 }, 15);
    let msg = json(20_000);
    let (a, b) = msg.split_at(10_000);
    // Pieces as the pumps cut them: within the room the bound leaves.
    assert!(b.len() <= Outbound::room(&out, MAX_SERVER_HEADER_LEN));
    assert!(ob.emit(&mut cx, &mut out, false, OpCode::Text, a));
    assert!(ob.emit(&mut cx, &mut out, true, OpCode::Continuation, b));
    let f = frames(&out);
    assert_eq!(
        f.iter().map(|x| (x.0, x.1, x.2)).collect::<Vec<_>>(),
        [(false, 4, 1), (true, 0, 0)]
    );
    assert!(out.len() < msg.len() / 2, "compressed: {}", out.len());
    assert_eq!(inflate_frames(&f), msg);
    // The compressor went back for the next message, reset (no context takeover).
    assert_eq!(cx.deflaters.len(), 1);
    out.consume(out.len());
    assert!(ob.emit(&mut cx, &mut out, true, OpCode::Binary, b"x"));
    let f = frames(&out);
    assert_eq!((f[0].1, inflate_frames(&f)), (4, b"x".to_vec()));
}

#[test]
fn without_a_free_compressor_a_message_goes_as_it_is() {
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    let mut pool = BufPool::new(1, 64 * 1024).unwrap();
    let mut out = pool.take().unwrap();
    let agreed = crate::ws::deflate::Agreement { server_window_bits: 15 };
    let (mut busy, mut other) = (Outbound::new(&agreed, 15), Outbound::new(&agreed, 15));
    assert!(busy.emit(&mut cx, &mut out, false, OpCode::Text, b"first, unfinished"));
    out.consume(out.len());
    assert!(other.emit(&mut cx, &mut out, true, OpCode::Text, b"second"));
    assert_eq!(frames(&out), [(true, 0, 1, b"second".to_vec())]);
    // A client that asked for a smaller window gets the literal-only compressor.
    out.consume(out.len());
    let mut narrow = Outbound::new(&crate::ws::deflate::Agreement { server_window_bits: 9 }, 15);
    let msg = json(5_000);
    assert!(narrow.emit(&mut cx, &mut out, true, OpCode::Text, &msg));
    let f = frames(&out);
    assert_eq!(f[0].1, 4);
    assert_eq!(inflate_frames(&f), msg);
    narrow.release(&mut cx);
    busy.release(&mut cx);
    assert_eq!((cx.deflaters.len(), cx.narrow.len()), (1, 1));
}

#[test]
fn the_budget_is_split_and_refused_when_too_small() {
    let s = Sizes::of(2 << 20, 15).unwrap();
    assert_eq!((s.deflaters, s.narrow), (1, 1));
    assert!(s.inflaters >= 30, "{s:?}");
    assert_eq!(Sizes::of(Sizes::minimum(15) - 1, 15), None);
    assert!(Sizes::of(Sizes::minimum(15), 15).is_some());
    assert_eq!(Sizes::of(1 << 20, 9).unwrap().narrow, 0);
}

/// A message's first fragment, inflated into small rooms with no second fragment yet: every
/// byte the fragment holds comes out, including what the decompressor still held when it took
/// the fragment's last byte with the room full.
#[test]
fn a_fragment_gives_all_its_bytes_before_the_next_arrives() {
    use crate::ws::deflate::zstream::Inflater;
    use crate::ws::session::DataKind;
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    let msg = json(20_000);
    let mut z = vec![0u8; bound(msg.len())];
    let n = Deflater::new(6, 15, 4).compress(&msg, &mut z, true).unwrap();
    let z = &z[..n - 4];
    let mut pool = BufPool::new(1, BUF).unwrap();
    for cut in (1..z.len()).step_by(2) {
        // What the fragment holds, inflated with all the room it wants.
        let mut whole = Inflater::new();
        let mut out = vec![0u8; 1 << 16];
        let expected = whole.inflate(&z[..cut], &mut out).unwrap().produced;
        for room in [1, 7, 300] {
            let mut input = pool.take().unwrap();
            assert!(input.append(&z[..cut]));
            let mut inbound = Inbound { reserved: cx.reserve(), ..Inbound::default() };
            inbound.feed(&mut cx, DataKind::Text, true, false, cut);
            let mut got = 0;
            while inbound.busy() {
                match inbound.step(&mut cx, Some(&mut input), room, 1 << 20).unwrap() {
                    Step::Piece { bytes, .. } => got += bytes.len(),
                    Step::Consumed => {}
                    Step::Blocked => panic!("blocked with room {room}"),
                }
            }
            assert!(input.is_empty());
            assert_eq!(got, expected, "cut at {cut}, room {room}");
            inbound.release(&mut cx);
            pool.release_if_empty(&mut Some(input));
        }
    }
}

/// A client that does not take its bytes does not keep the compressor: once its buffer is
/// nearly full, the compressor serves another connection, and its message goes on with a
/// compressor when one is free, else as stored blocks; the client inflates it whole.
#[test]
fn a_slow_client_gives_the_compressor_back_in_the_middle_of_a_message() {
    let mut cx = Contexts::new(SIZES, 6, 15, BUF);
    let agreed = crate::ws::deflate::Agreement { server_window_bits: 15 };
    let mut pool = BufPool::new(3, BUF).unwrap();
    let (mut slow_out, mut other_out) = (pool.take().unwrap(), pool.take().unwrap());
    let (mut slow, mut other) = (Outbound::new(&agreed, 15), Outbound::new(&agreed, 15));
    // Random-looking bytes: they barely compress, so one piece fills the slow client's buffer.
    let msg = crate::ws::deflate::zstream::noise(3 * BUF, 0x9e37_79b9);
    let mut wire = Vec::new();
    let mut sent = 0;
    let step = |ob: &mut Outbound, cx: &mut Contexts, out: &mut Buf, sent: &mut usize| {
        let n = Outbound::room(out, MAX_SERVER_HEADER_LEN).min(msg.len() - *sent);
        let op = if *sent == 0 { OpCode::Binary } else { OpCode::Continuation };
        let fin = *sent + n == msg.len();
        assert!(ob.emit(cx, out, fin, op, &msg[*sent..*sent + n]));
        *sent += n;
    };
    step(&mut slow, &mut cx, &mut slow_out, &mut sent);
    assert_eq!(cx.deflaters.len(), 1, "a full buffer gives the compressor back");
    // Another connection's message is compressed meanwhile, and holds the compressor.
    assert!(other.emit(&mut cx, &mut other_out, false, OpCode::Text, &json(100)));
    assert_eq!(frames(&other_out)[0].1, 4);
    assert!(cx.deflaters.is_empty());
    // The slow client drains; its message goes on as stored blocks, then, once the other
    // message is over, compressed again.
    let mut stored = 0;
    while sent < msg.len() {
        if sent > BUF && !other_out.is_empty() {
            assert!(other.emit(&mut cx, &mut other_out, true, OpCode::Continuation, b"]"));
            other_out.consume(other_out.len());
        }
        wire.extend(frames(&slow_out));
        slow_out.consume(slow_out.len());
        let before = cx.deflaters.len();
        step(&mut slow, &mut cx, &mut slow_out, &mut sent);
        stored += usize::from(before == 0);
    }
    wire.extend(frames(&slow_out));
    assert!(stored > 0, "some pieces went without a compressor");
    assert!(wire.len() > 3, "{}", wire.len());
    assert_eq!(wire[0].1, 4, "RSV1 on the first frame");
    assert!(wire[1..].iter().all(|f| f.1 == 0 && f.2 == 0));
    assert_eq!(inflate_frames(&wire), msg);
    assert_eq!(cx.deflaters.len(), 1, "everything went back");
}
