//! The frame header decoder (`FrameHeader::parse`) against its encoder (`FrameHeader::emit`).
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::ws::frame::{FrameError, FrameHeader, OpCode};

fuzz_target!(|data: &[u8]| {
    let parsed = match FrameHeader::parse(data) {
        Ok(p) => p,
        Err(e) => {
            // A refused length encoding is refused whatever follows the length.
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0xff; 16]);
            assert_eq!(
                FrameHeader::parse(&longer),
                Err::<Option<(FrameHeader, usize)>, FrameError>(e)
            );
            return;
        }
    };
    let Some((h, n)) = parsed else {
        // "Need more": only while fewer bytes than the longest header are there.
        assert!(data.len() < 14);
        return;
    };
    assert!(n <= data.len() && n >= 2);
    let len_bytes = match h.len {
        0..=125 => 0,
        126..=0xffff => 2,
        _ => 8,
    };
    assert_eq!(n, 2 + len_bytes + if h.mask.is_some() { 4 } else { 0 });
    assert_eq!(h.len >> 63, 0);
    assert_eq!(OpCode::from_nibble(h.opcode.nibble()), h.opcode);
    // Every proper prefix of a header is "need more", never an error or another header.
    for k in 0..n {
        assert_eq!(FrameHeader::parse(&data[..k]), Ok(None), "prefix of {k} bytes");
    }
    // Bytes after the header change nothing.
    assert_eq!(FrameHeader::parse(&data[..n]), Ok(Some((h, n))));
    // Round trip: the server encoder writes the same fields back, and for an unmasked header
    // without RSV bits the very same bytes (minimal lengths are the only encoding accepted).
    let mut out = [0u8; 14];
    let m = FrameHeader::emit(h.fin, h.opcode, h.len, &mut out).expect("14 bytes are enough");
    assert_eq!(m, FrameHeader::server_header_len(h.len));
    let (back, bn) = FrameHeader::parse(&out[..m]).unwrap().unwrap();
    assert_eq!(bn, m);
    assert_eq!(
        (back.fin, back.rsv, back.opcode, back.mask, back.len),
        (h.fin, 0, h.opcode, None, h.len)
    );
    if h.mask.is_none() && h.rsv == 0 {
        assert_eq!(&out[..m], &data[..n]);
    }
    // Too small an output buffer is refused, never overrun.
    assert_eq!(FrameHeader::emit(h.fin, h.opcode, h.len, &mut out[..m - 1]), None);
});
