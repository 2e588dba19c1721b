#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;

/// A masked client frame.
fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut v = vec![u8::from(fin) << 7 | op];
    match payload.len() {
        n @ 0..=125 => v.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&key);
    let mut p = payload.to_vec();
    mask::apply(key, 0, &mut p);
    v.extend_from_slice(&p);
    v
}

#[derive(Debug, PartialEq)]
enum Seen {
    Data(DataKind, bool, bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, Vec<u8>),
}

/// Feeds `wire` in pieces of `step` bytes with `max_data`, collecting events.
fn run(
    s: &mut Session,
    wire: &[u8],
    step: usize,
    max_data: usize,
) -> Result<Vec<Seen>, ProtocolError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        let (n, ev) = s.decode(&mut buf, max_data)?;
        if let Some(ev) = ev {
            out.push(match ev {
                Event::Data { kind, start, fin, len, .. } => {
                    Seen::Data(kind, start, fin, buf[n - len..n].to_vec())
                }
                Event::Ping(c) => Seen::Ping(c.as_slice().to_vec()),
                Event::Pong(c) => Seen::Pong(c.as_slice().to_vec()),
                Event::Close { code, reason } => Seen::Close(code, reason.as_slice().to_vec()),
            });
        }
        buf.drain(..n);
        if n == 0 && ev.is_none() {
            if fed >= wire.len() {
                return Ok(out);
            }
            let end = (fed + step).min(wire.len());
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
        }
    }
}

/// Concatenates the data pieces of each message.
fn messages(seen: &[Seen]) -> Vec<(DataKind, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cur: Option<(DataKind, Vec<u8>)> = None;
    for s in seen {
        if let Seen::Data(k, start, fin, p) = s {
            if *start {
                assert!(cur.is_none());
                cur = Some((*k, Vec::new()));
            }
            cur.as_mut().unwrap().1.extend_from_slice(p);
            if *fin {
                out.push(cur.take().unwrap());
            }
        }
    }
    assert!(cur.is_none());
    out
}

#[test]
fn single_text_frame() {
    let mut s = Session::new(1 << 20);
    let seen = run(&mut s, &frame(true, 1, b"Hello"), 1000, 1000).unwrap();
    assert_eq!(seen, vec![Seen::Data(DataKind::Text, true, true, b"Hello".to_vec())]);
}

#[test]
fn any_split_and_any_max_data_give_the_same_messages() {
    let mut wire = frame(false, 1, "κόσμε".as_bytes());
    wire.extend(frame(true, 9, b"ping!"));
    wire.extend(frame(false, 0, b" and "));
    wire.extend(frame(true, 0, "more ü".as_bytes()));
    wire.extend(frame(true, 2, &[0u8, 1, 2, 255]));
    wire.extend(frame(true, 1, b""));
    let big = vec![b'x'; 70_000];
    wire.extend(frame(true, 2, &big));
    for step in [1, 2, 3, 7, 64, 100_000] {
        for max_data in [1, 5, 4096, usize::MAX] {
            let mut s = Session::new(1 << 20);
            let seen = run(&mut s, &wire, step, max_data).unwrap();
            let msgs = messages(&seen);
            assert_eq!(msgs.len(), 4, "step {step} max {max_data}");
            assert_eq!(msgs[0], (DataKind::Text, "κόσμε and more ü".as_bytes().to_vec()));
            assert_eq!(msgs[1], (DataKind::Binary, vec![0, 1, 2, 255]));
            assert_eq!(msgs[2], (DataKind::Text, vec![]));
            assert_eq!(msgs[3], (DataKind::Binary, big.clone()));
            assert!(seen.contains(&Seen::Ping(b"ping!".to_vec())));
        }
    }
}

#[test]
fn close_frames() {
    let mut s = Session::new(100);
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(b"bye");
    assert_eq!(
        run(&mut s, &frame(true, 8, &p), 100, 100).unwrap(),
        vec![Seen::Close(Some(1000), b"bye".to_vec())]
    );
    assert_eq!(
        run(&mut Session::new(9), &frame(true, 8, b""), 100, 100).unwrap(),
        vec![Seen::Close(None, vec![])]
    );
    assert_eq!(
        run(&mut Session::new(9), &frame(true, 8, b"x"), 100, 100),
        Err(ProtocolError::CloseTooShort)
    );
    assert_eq!(
        run(&mut Session::new(9), &frame(true, 8, &1005u16.to_be_bytes()), 100, 100),
        Err(ProtocolError::BadCloseCode(1005))
    );
    let mut bad = 1000u16.to_be_bytes().to_vec();
    bad.extend_from_slice(&[0xce, 0xba, 0xe1, 0xbd]);
    assert_eq!(
        run(&mut Session::new(9), &frame(true, 8, &bad), 100, 100),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn protocol_errors() {
    let e = |wire: Vec<u8>| run(&mut Session::new(1000), &wire, 1000, 1000).unwrap_err();
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    assert_eq!(e(unmasked), ProtocolError::Unmasked);
    assert_eq!(e(frame(true, 0x41, b"")), ProtocolError::ReservedBits(4));
    assert_eq!(e(frame(true, 3, b"")), ProtocolError::ReservedOpcode(3));
    assert_eq!(e(frame(true, 0xb, b"")), ProtocolError::ReservedOpcode(0xb));
    assert_eq!(e(frame(true, 9, &[0; 126])), ProtocolError::ControlTooLong);
    assert_eq!(e(frame(false, 9, b"")), ProtocolError::ControlFragmented);
    assert_eq!(e(frame(true, 0, b"x")), ProtocolError::UnexpectedContinuation);
    let mut two = frame(false, 1, b"a");
    two.extend(frame(true, 1, b"b"));
    assert_eq!(e(two), ProtocolError::ExpectedContinuation);
    assert_eq!(e(frame(true, 2, &[0; 1001])), ProtocolError::TooBig);
    let mut frag = frame(false, 2, &[0; 600]);
    frag.extend(frame(true, 0, &[0; 600]));
    assert_eq!(e(frag), ProtocolError::TooBig);
    assert_eq!(ProtocolError::TooBig.close_code(), 1009);
    assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
    assert_eq!(ProtocolError::Unmasked.close_code(), 1002);
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    // Autobahn 6.4.1: the invalid byte sequence arrives in the second fragment; the error must
    // surface then, without waiting for the final fragment.
    let mut s = Session::new(1000);
    let mut wire = frame(false, 1, "κόσμε".as_bytes());
    wire.extend(frame(false, 0, &[0xf4, 0x90, 0x80, 0x80]));
    assert_eq!(run(&mut s, &wire, 1000, 1000), Err(ProtocolError::InvalidUtf8));
    // A code point split across fragments is fine.
    let mut s = Session::new(1000);
    let mut wire = frame(false, 1, &[0xce]);
    wire.extend(frame(true, 0, &[0xba]));
    assert_eq!(
        messages(&run(&mut s, &wire, 1, 1).unwrap()),
        vec![(DataKind::Text, "κ".as_bytes().to_vec())]
    );
    // A text message ending inside a code point is not.
    assert_eq!(
        run(&mut Session::new(10), &frame(true, 1, &[0xce]), 10, 10),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn zero_max_data_makes_no_progress_inside_a_payload() {
    let mut s = Session::new(1000);
    let mut wire = frame(true, 2, b"abc");
    let (n, ev) = s.decode(&mut wire, 0).unwrap();
    assert_eq!(n, 6);
    assert!(ev.is_none());
    let (n2, ev) = s.decode(&mut wire[n..], 0).unwrap();
    assert_eq!((n2, ev.is_none()), (0, true));
    let (n3, ev) = s.decode(&mut wire[n..], 10).unwrap();
    assert_eq!(n3, 3);
    assert!(matches!(ev, Some(Event::Data { fin: true, start: true, len: 3, .. })));
}

#[test]
fn rsv1_marks_a_compressed_message_only_where_negotiated() {
    let decode = |deflate: bool, wire: &[u8]| {
        let mut s = Session::new(1 << 20);
        s.set_deflate(deflate);
        let mut w = wire.to_vec();
        let mut events = Vec::new();
        let mut at = 0;
        while at < w.len() {
            let (n, ev) = s.decode(&mut w[at..], usize::MAX)?;
            at += n;
            events.extend(ev);
        }
        Ok::<_, ProtocolError>(events)
    };
    let with_rsv = |mut f: Vec<u8>, rsv: u8| {
        f[0] |= rsv << 4;
        f
    };
    // Without the extension, RSV1 is a protocol error.
    let first = with_rsv(frame(false, 1, b"\xf2\x48"), RSV1);
    assert_eq!(decode(false, &first).unwrap_err(), ProtocolError::ReservedBits(RSV1));
    // With it: the message is compressed, its payload not read as UTF-8 (0xf2 alone is not).
    let mut wire = first.clone();
    wire.extend(frame(true, 0, b"\xcd"));
    let ev = decode(true, &wire).unwrap();
    assert!(ev.iter().all(|e| matches!(e, Event::Data { compressed: true, .. })), "{ev:?}");
    // An uncompressed message on the same connection is still checked.
    assert_eq!(decode(true, &frame(true, 1, b"\xf2")).unwrap_err(), ProtocolError::InvalidUtf8);
    // RSV1 on a continuation or a control frame, and RSV2/RSV3, stay errors (RFC 7692 §6.1).
    let mut cont = frame(false, 1, b"a");
    cont.extend(with_rsv(frame(true, 0, b"b"), RSV1));
    assert_eq!(decode(true, &cont).unwrap_err(), ProtocolError::ReservedBits(RSV1));
    let ping = with_rsv(frame(true, 9, b""), RSV1);
    assert_eq!(decode(true, &ping).unwrap_err(), ProtocolError::ReservedBits(RSV1));
    let rsv2 = with_rsv(frame(true, 1, b"a"), 0b010);
    assert_eq!(decode(true, &rsv2).unwrap_err(), ProtocolError::ReservedBits(0b010));
}

#[test]
fn a_compressed_message_is_limited_with_deflate_growth_allowed() {
    let mut s = Session::new(100_000);
    s.set_deflate(true);
    // Incompressible data grows by a few bytes per stored block: a little past the limit is
    // still read (the inflated bytes are counted by the caller) ...
    let mut w = frame(true, 2, &vec![0u8; 100_010]);
    w[0] |= RSV1 << 4;
    assert!(s.decode(&mut w, usize::MAX).is_ok());
    // ... but not without bound.
    let mut s = Session::new(100_000);
    s.set_deflate(true);
    let mut w = frame(true, 2, &vec![0u8; 120_000]);
    w[0] |= RSV1 << 4;
    assert_eq!(s.decode(&mut w, usize::MAX).unwrap_err(), ProtocolError::TooBig);
}
