#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use crate::buffer::BufPool;

/// Decodes server frames: (fin, opcode nibble, payload).
fn frames(out: &Buf) -> Vec<(bool, u8, Vec<u8>)> {
    frames_of(out.readable())
}

/// [`frames`] of bytes.
fn frames_of(mut b: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let (h, n) = FrameHeader::parse(b).unwrap().unwrap();
        assert!(h.mask.is_none());
        let len = h.len as usize;
        v.push((h.fin, h.opcode.nibble(), b[n..n + len].to_vec()));
        b = &b[n + len..];
    }
    v
}

fn bufs(size: usize) -> (Buf, Buf) {
    let mut pool = BufPool::new(2, size).unwrap();
    (pool.take().unwrap(), pool.take().unwrap())
}

#[test]
fn uplink_modes_byte_exact() {
    let (mut out, _) = bufs(64);
    let mut up = Uplink::new(Mode::Stream);
    up.put(&mut out, DataKind::Text, true, false, b"hel").unwrap();
    up.put(&mut out, DataKind::Text, false, true, b"lo").unwrap();
    up.put(&mut out, DataKind::Text, true, true, b"").unwrap();
    assert_eq!(out.readable(), b"hello");

    let (mut out, _) = bufs(64);
    let mut up = Uplink::new(Mode::Lines);
    up.put(&mut out, DataKind::Text, true, true, b"a").unwrap();
    up.put(&mut out, DataKind::Text, true, true, b"").unwrap();
    assert_eq!(out.readable(), b"a\n\n");
    assert_eq!(
        up.put(&mut out, DataKind::Text, true, true, b"x\ny"),
        Err(UplinkError::NewlineInMessage)
    );

    let (mut out, _) = bufs(64);
    let mut up = Uplink::new(Mode::Framed);
    up.put(&mut out, DataKind::Text, true, true, b"hi").unwrap();
    up.put(&mut out, DataKind::Binary, true, false, b"a").unwrap();
    up.put(&mut out, DataKind::Binary, false, false, b"").unwrap();
    up.put(&mut out, DataKind::Binary, false, true, b"").unwrap();
    up.close(&mut out, Some(1000), b"ok");
    assert_eq!(
        out.readable(),
        b"\x81\0\0\0\x02hi\x02\0\0\0\x01a\x80\0\0\0\0\x88\0\0\0\x04\x03\xe8ok".as_slice()
    );

    let (mut out, _) = bufs(64);
    let mut up = Uplink::new(Mode::SeqPacket);
    up.put(&mut out, DataKind::Text, true, false, b"ab").unwrap();
    assert!(Uplink::next_packet(&out).is_none(), "incomplete message is not sent");
    up.put(&mut out, DataKind::Text, false, true, b"cd").unwrap();
    up.put(&mut out, DataKind::Text, true, true, b"e").unwrap();
    let (end, range) = Uplink::next_packet(&out).unwrap();
    assert_eq!(&out.readable()[range], b"abcd");
    out.consume(end);
    let (_, range) = Uplink::next_packet(&out).unwrap();
    assert_eq!(&out.readable()[range], b"e");
}

#[test]
fn stream_downlink_types_and_utf8() {
    let (mut input, mut out) = bufs(64);
    let mut d = Downlink::new(Mode::Stream, DataType::Text);
    // "é" split across two reads: held back, then sent whole.
    assert!(input.append(b"caf\xc3"));
    d.pump(&mut input, &mut out, false).unwrap();
    assert_eq!(frames(&out), vec![(true, 1, b"caf".to_vec())]);
    assert!(input.append(b"\xa9!"));
    d.pump(&mut input, &mut out, false).unwrap();
    assert_eq!(frames(&out)[1], (true, 1, "é!".as_bytes().to_vec()));
    // Not UTF-8: binary, with the warning flag.
    let (mut input, mut out) = bufs(64);
    assert!(input.append(b"\xff\xfe"));
    let r = d.pump(&mut input, &mut out, false).unwrap();
    assert!(r.demoted_to_binary);
    assert_eq!(frames(&out), vec![(true, 2, vec![0xff, 0xfe])]);
    // Binary type.
    let (mut input, mut out) = bufs(64);
    let mut d = Downlink::new(Mode::Stream, DataType::Binary);
    assert!(input.append(b"abc"));
    d.pump(&mut input, &mut out, false).unwrap();
    assert_eq!(frames(&out), vec![(true, 2, b"abc".to_vec())]);
    // A split code point left at EOF goes as binary.
    let (mut input, mut out) = bufs(64);
    let mut d = Downlink::new(Mode::Stream, DataType::Text);
    assert!(input.append(b"\xc3"));
    d.pump(&mut input, &mut out, false).unwrap();
    assert!(out.is_empty());
    d.pump(&mut input, &mut out, true).unwrap();
    assert_eq!(frames(&out), vec![(true, 2, vec![0xc3])]);
}

#[test]
fn stream_downlink_respects_room() {
    let mut pool = BufPool::new(2, 1024).unwrap();
    let mut input = pool.take().unwrap();
    let mut out = pool.take().unwrap();
    assert!(input.append(&[b'x'; 1000]));
    assert!(out.append(&[0; 500]));
    let mut d = Downlink::new(Mode::Stream, DataType::Text);
    d.pump(&mut input, &mut out, false).unwrap();
    // 524 free: room 514 after the worst-case header; the real header is 4 bytes.
    assert!(out.free() < MAX_SERVER_HEADER_LEN);
    assert_eq!(input.len(), 1000 - 514);
}

#[test]
fn lines_downlink() {
    let (mut input, mut out) = bufs(64);
    let mut d = Downlink::new(Mode::Lines, DataType::Text);
    assert!(input.append(b"x\ny\r\npart"));
    d.pump(&mut input, &mut out, false).unwrap();
    assert_eq!(frames(&out), vec![(true, 1, b"x".to_vec()), (true, 1, b"y".to_vec())]);
    assert_eq!(input.readable(), b"part");
    d.pump(&mut input, &mut out, true).unwrap();
    assert_eq!(frames(&out)[2], (true, 1, b"part".to_vec()));
}

#[test]
fn lines_longer_than_the_buffer_go_as_fragments() {
    let mut pool = BufPool::new(2, 32).unwrap();
    let mut input = pool.take().unwrap();
    let mut out = pool.take().unwrap();
    let mut d = Downlink::new(Mode::Lines, DataType::Text);
    assert!(input.append(&[b'a'; 32]));
    d.pump(&mut input, &mut out, false).unwrap();
    let f = frames(&out);
    assert_eq!(f.len(), 1);
    assert!(!f[0].0);
    assert_eq!(f[0].1, 1);
    out.consume(out.len());
    assert!(input.append(b"b\n"));
    d.pump(&mut input, &mut out, false).unwrap();
    d.pump(&mut input, &mut out, false).unwrap();
    let f = frames(&out);
    assert!(f.last().unwrap().0);
    assert!(f.iter().all(|x| x.1 == 0));
}

#[test]
fn framed_downlink() {
    let (mut input, mut out) = bufs(256);
    let mut d = Downlink::new(Mode::Framed, DataType::Text);
    assert!(input.append(b"\x82\0\0\0\x03abc\x01\0\0\0\x02h\xc3\x80\0\0\0\x01\xa9\x81\0\0\0\0"));
    let r = d.pump(&mut input, &mut out, false).unwrap();
    assert_eq!(r.frames, 4);
    assert_eq!(
        frames(&out),
        vec![
            (true, 2, b"abc".to_vec()),
            (false, 1, b"h\xc3".to_vec()),
            (true, 0, b"\xa9".to_vec()),
            (true, 1, vec![])
        ]
    );
    assert!(input.append(b"\x88\0\0\0\x04\x0f\xa0ok"));
    let r = d.pump(&mut input, &mut out, false).unwrap();
    assert_eq!(r.close, Some((4000, 2)));
    assert_eq!(Downlink::close_reason(&input, 2), b"ok");
}

#[test]
fn framed_downlink_errors() {
    let check = |wire: &[u8], eof: bool| {
        let (mut input, mut out) = bufs(256);
        let mut d = Downlink::new(Mode::Framed, DataType::Text);
        assert!(input.append(wire));
        d.pump(&mut input, &mut out, eof)
    };
    assert_eq!(check(b"\x80\0\0\0\x01a", false), Err(DownlinkError::RecordSequence));
    assert_eq!(check(b"\x01\0\0\0\x01a\x81\0\0\0\0", false), Err(DownlinkError::RecordSequence));
    assert_eq!(check(b"\x81\0\0\0\x64abc", true), Err(DownlinkError::Truncated));
    assert_eq!(check(b"\x81\0\0", true), Err(DownlinkError::Truncated));
    assert_eq!(check(b"\x81\0\0\0\x01\xff", false), Err(DownlinkError::InvalidUtf8));
    assert_eq!(
        check(b"\x84\0\0\0\0", false),
        Err(DownlinkError::Record(RecordError::ReservedOpcode(4)))
    );
    // Context records only go to the backend.
    assert_eq!(check(b"\x83\0\0\0\0", false), Err(DownlinkError::RecordSequence));
    assert!(check(b"\x81\0\0\0\x64abc", false).is_ok());
}

#[test]
fn framed_big_record_streams_through_small_buffers() {
    let mut pool = BufPool::new(2, 1024).unwrap();
    let mut input = pool.take().unwrap();
    let mut out = pool.take().unwrap();
    let mut d = Downlink::new(Mode::Framed, DataType::Binary);
    let total = 100_000u32;
    let mut sent = 0u32;
    let mut received = 0usize;
    assert!(
        input.append(&RecordHeader { fin: true, opcode: record::OP_BINARY, len: total }.to_bytes())
    );
    let mut frames_seen = 0;
    while received < total as usize {
        let n = (input.free() as u32).min(total - sent);
        assert!(input.append(&vec![7u8; n as usize]));
        sent += n;
        d.pump(&mut input, &mut out, false).unwrap();
        for (fin, op, p) in frames(&out) {
            assert_eq!(op, if frames_seen == 0 { 2 } else { 0 });
            frames_seen += 1;
            received += p.len();
            assert_eq!(fin, received == total as usize);
        }
        out.consume(out.len());
    }
}

#[test]
fn seqpacket_downlink_whole_packets() {
    let (mut input, mut out) = bufs(64);
    let mut d = Downlink::new(Mode::SeqPacket, DataType::Auto);
    assert!(input.append(b"packet"));
    d.pump(&mut input, &mut out, false).unwrap();
    assert_eq!(frames(&out), vec![(true, 1, b"packet".to_vec())]);
    assert!(input.is_empty());
}

/// Pumps `wire` (backend bytes) once through `mode` with frames gathered, as the connection
/// does on a writable plain socket: returns the bytes of the gathered frames, what went into
/// the client buffer, and the gather's frame count; checks that spilling after any number of
/// sent bytes leaves exactly the rest.
fn gathered(mode: Mode, wire: &[u8], size: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let mut pool = BufPool::new(3, size).unwrap();
    let mut input = pool.take().unwrap();
    let mut out = pool.take().unwrap();
    assert!(input.append(wire));
    let mut d = Downlink::new(mode, DataType::Binary);
    let mut g = Gather::default();
    let mut f = Frames::plain(&mut out);
    f.gather = Some(&mut g);
    d.pump_to(&mut input, &mut f, false).unwrap();
    let mut slices = [std::io::IoSlice::new(&[]); 2 * GATHER_MAX];
    let n = g.slices(&input, &mut slices);
    let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    assert_eq!(bytes.len(), g.bytes());
    for sent in [0, 1, 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        let mut spill = pool.take().unwrap();
        g.spill(&input, sent, &mut spill);
        assert_eq!(spill.readable(), &bytes[sent.min(bytes.len())..]);
        pool.put(spill);
    }
    (bytes, out.readable().to_vec(), g.len())
}

/// The same pump copying every frame into the client buffer.
fn copied(mode: Mode, wire: &[u8], size: usize) -> Vec<u8> {
    let (mut input, mut out) = bufs(size);
    assert!(input.append(wire));
    let mut d = Downlink::new(mode, DataType::Binary);
    d.pump(&mut input, &mut out, false).unwrap();
    out.readable().to_vec()
}

fn record(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = RecordHeader { fin, opcode, len: payload.len() as u32 }.to_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn gathered_frames_are_the_copied_frames() {
    // framed: big records, a small one and an empty one after them (gathered too: they follow).
    let mut wire = record(true, record::OP_BINARY, &[1; 600]);
    wire.extend(record(false, record::OP_BINARY, &[2; 1000]));
    wire.extend(record(true, record::OP_CONTINUATION, b"xy"));
    wire.extend(record(true, record::OP_TEXT, b""));
    let (bytes, out, n) = gathered(Mode::Framed, &wire, 4096);
    assert_eq!((n, out.len()), (4, 0));
    assert_eq!(bytes, copied(Mode::Framed, &wire, 4096));
    assert_eq!(
        frames_of(&bytes),
        vec![
            (true, 2, vec![1; 600]),
            (false, 2, vec![2; 1000]),
            (true, 0, b"xy".to_vec()),
            (true, 1, vec![])
        ]
    );
    // stream: a read bigger than one frame's room; the rest waits for the next pump.
    let wire = vec![b'z'; 4096];
    let (bytes, out, n) = gathered(Mode::Stream, &wire, 4096);
    assert_eq!((n, out.len()), (1, 0));
    assert_eq!(bytes, copied(Mode::Stream, &wire, 4096));
    assert_eq!(frames_of(&bytes), vec![(true, 2, vec![b'z'; 4096 - MAX_SERVER_HEADER_LEN])]);
    // lines and seqpacket.
    let wire = [vec![b'l'; 700], b"\n".to_vec(), vec![b'm'; 600], b"\n".to_vec()].concat();
    let (bytes, _, n) = gathered(Mode::Lines, &wire, 4096);
    assert_eq!(n, 2);
    assert_eq!(bytes, copied(Mode::Lines, &wire, 4096));
    let (bytes, _, n) = gathered(Mode::SeqPacket, &[9; 800], 4096);
    assert_eq!(n, 1);
    assert_eq!(bytes, copied(Mode::SeqPacket, &[9; 800], 4096));
}

#[test]
fn small_frames_are_copied_and_what_follows_them_too() {
    // A small first frame goes into the client buffer; the big one after it must follow it
    // there, not overtake it in a vectored write.
    let mut wire = record(true, record::OP_BINARY, b"small");
    wire.extend(record(true, record::OP_BINARY, &[3; 900]));
    let (bytes, out, n) = gathered(Mode::Framed, &wire, 4096);
    assert_eq!((n, bytes.len()), (0, 0));
    assert_eq!(out, copied(Mode::Framed, &wire, 4096));
}

#[test]
fn gathering_stops_at_its_limit_and_at_the_client_buffer_size() {
    // More big records than a gather holds: the pump stops after GATHER_MAX, the rest stays.
    let one = record(true, record::OP_BINARY, &[4; GATHER_MIN]);
    let wire = one.repeat(GATHER_MAX + 3);
    let size = wire.len() + 64;
    let mut pool = BufPool::new(2, size).unwrap();
    let mut input = pool.take().unwrap();
    let mut out = pool.take().unwrap();
    assert!(input.append(&wire));
    let mut d = Downlink::new(Mode::Framed, DataType::Binary);
    let mut g = Gather::default();
    let mut f = Frames::plain(&mut out);
    f.gather = Some(&mut g);
    d.pump_to(&mut input, &mut f, false).unwrap();
    assert_eq!(g.len(), GATHER_MAX);
    assert!(out.is_empty());
    // The next record's header is read; its payload waits.
    assert_eq!(input.len(), 3 * one.len() - record::HEADER_LEN);
    // Frames never add up to more than the client buffer holds, so a spill always fits.
    let wire = vec![b's'; 1024];
    let (bytes, _, _) = gathered(Mode::Stream, &wire, 1024);
    assert_eq!(bytes.len(), 1024 - MAX_SERVER_HEADER_LEN + 4);
}
