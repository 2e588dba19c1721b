#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use crate::buffer::BufPool;

/// Decodes server frames: (fin, opcode nibble, payload).
fn frames(out: &Buf) -> Vec<(bool, u8, Vec<u8>)> {
    let mut v = Vec::new();
    let mut b = out.readable();
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
