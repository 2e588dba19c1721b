//! Backend bytes to client frames (`relay::codec::Downlink::pump`), in the four relay modes
//! and above all `framed`, whose record parser (`relay::record::RecordHeader::parse`) reads
//! what the backend sends. The harness does what the connection does (src/event_loop/conn.rs
//! `process_backend`): it fills the input buffer as the backend's bytes arrive, pumps, drains
//! the output buffer at the client's pace, and answers a close record with a close frame.
//! Checks: everything written is a valid server stream (`client_view`), and the messages the
//! client gets are the backend's: its records' payloads (`framed`), its bytes (`stream`), its
//! packets (`seqpacket`).
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A fuzz harness: a panic is how it reports a broken invariant.

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use wsgate::buffer::{Buf, BufPool};
use wsgate::relay::codec::{self, DataType, Downlink, Mode};
use wsgate::relay::record::{self, RecordHeader};
use wsgate::ws::frame::OpCode;
use wsgate_fuzz::{client_view, steps, Message};

/// Buffer sizes tried: small ones reach the room-limited paths often. The output buffer has
/// room for a whole close frame (127 bytes), which the connection waits for (conn.rs); the
/// gateway's own buffers are at least 1 KiB (`config::MIN_BUFFER_SIZE`).
const IN_SIZES: [usize; 4] = [64, 300, 1024, 4096];
const OUT_SIZES: [usize; 4] = [160, 300, 1024, 4096];

/// One pool per size, input and output sizes apart, made once: `BufPool` leaks its arena by
/// design (it lives as long as the gateway).
fn pools() -> &'static [Mutex<BufPool>; 8] {
    static POOLS: OnceLock<[Mutex<BufPool>; 8]> = OnceLock::new();
    POOLS.get_or_init(|| {
        let mut sizes = IN_SIZES.into_iter().chain(OUT_SIZES);
        core::array::from_fn(|_| Mutex::new(BufPool::new(1, sizes.next().unwrap()).unwrap()))
    })
}

fn take(i: usize) -> Buf {
    pools()[i].lock().unwrap().take().expect("one buffer per pool, taken once per run")
}

fn give(i: usize, mut buf: Buf) {
    let n = buf.len();
    buf.consume(n);
    pools()[i].lock().unwrap().put(buf);
}

/// The messages the backend's `framed` records carry, from the bytes the gateway consumed.
fn framed_messages(mut bytes: &[u8]) -> Vec<Message> {
    let mut msgs: Vec<Message> = Vec::new();
    // Has the last message put a frame on the wire? An empty first record does; a first
    // record whose header was read but none of its payload yet does not.
    let mut emitted = false;
    while let Ok(Some(h)) = RecordHeader::parse(bytes) {
        let end = (record::HEADER_LEN + h.len as usize).min(bytes.len());
        let payload = &bytes[record::HEADER_LEN..end];
        match h.opcode {
            record::OP_TEXT | record::OP_BINARY => {
                msgs.push(Message {
                    text: h.opcode == record::OP_TEXT,
                    data: Vec::new(),
                    complete: false,
                });
                emitted = h.len == 0;
            }
            record::OP_CONTINUATION => {}
            _ => break,
        }
        let m = msgs.last_mut().expect("a message is open");
        m.data.extend_from_slice(payload);
        m.complete = h.fin && end == record::HEADER_LEN + h.len as usize;
        emitted |= !payload.is_empty() || m.complete;
        bytes = &bytes[end..];
    }
    if !emitted {
        msgs.pop();
    }
    msgs
}

fuzz_target!(|data: &[u8]| {
    let Some((&[p, q], data)) = data.split_first_chunk::<2>() else { return };
    let mode = [Mode::Framed, Mode::Stream, Mode::Lines, Mode::SeqPacket][usize::from(p & 3)];
    let data_type = [DataType::Auto, DataType::Text, DataType::Binary][usize::from((p >> 2) % 3)];
    let (in_i, out_i) = (usize::from(q & 3), 4 + usize::from((q >> 2) & 3));
    let (mut input, mut out) = (take(in_i), take(out_i));
    let mut downlink = Downlink::new(mode, data_type);

    let mut sent: Vec<u8> = Vec::new(); // everything the backend wrote
    let mut packets: Vec<Vec<u8>> = Vec::new(); // seqpacket: the packets read
    let mut appended = 0; // backend bytes moved into the input buffer
    let mut client: Vec<u8> = Vec::new();
    let mut closed = false;
    let mut failed = false;
    let mut chunks = steps(data).peekable();
    loop {
        let drain_now = match chunks.next() {
            Some((s, chunk)) => {
                sent.extend_from_slice(chunk);
                s & 0x80 != 0
            }
            None => true,
        };
        let eof = chunks.peek().is_none();
        let state = (appended, input.len(), client.len() + out.len());
        // The backend's bytes arrive as fast as the input buffer takes them.
        if mode == Mode::SeqPacket {
            // One packet per read, only into an empty buffer (a packet is never split).
            let packet = &sent[appended..];
            if input.is_empty() && !packet.is_empty() {
                if packet.len() <= input.capacity() {
                    assert!(input.append(packet));
                    packets.push(packet.to_vec());
                }
                appended = sent.len();
            }
        } else {
            let n = input.free().min(sent.len() - appended);
            assert!(input.append(&sent[appended..appended + n]));
            appended += n;
        }
        loop {
            let before = input.len();
            let report = match downlink.pump(&mut input, &mut out, eof && appended == sent.len()) {
                Ok(r) => r,
                Err(_) => {
                    failed = true;
                    break;
                }
            };
            if let Some((code, reason_len)) = report.close {
                assert_eq!(mode, Mode::Framed);
                if out.free() < 2 + 125 {
                    client.extend_from_slice(out.readable());
                    out.consume(out.len());
                }
                let reason = Downlink::close_reason(&input, reason_len).to_vec();
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(&reason);
                assert!(codec::emit(&mut out, true, OpCode::Close, &payload));
                closed = true;
                break;
            }
            let progress = report.frames > 0 || input.len() != before;
            if drain_now || !progress {
                client.extend_from_slice(out.readable());
                out.consume(out.len());
            }
            if !progress {
                break;
            }
            // Room made in the input buffer is filled again at once.
            if mode != Mode::SeqPacket && appended < sent.len() {
                let n = input.free().min(sent.len() - appended);
                assert!(input.append(&sent[appended..appended + n]));
                appended += n;
            }
        }
        // After the backend's last byte, go on while anything moves.
        if closed || failed || (eof && state == (appended, input.len(), client.len() + out.len())) {
            break;
        }
    }
    client.extend_from_slice(out.readable());
    let consumed = appended - input.len();
    give(in_i, input);
    give(out_i, out);

    let view = client_view(&client);
    assert_eq!(view.closes.len(), usize::from(closed));
    match mode {
        Mode::Framed => {
            let mut expected = framed_messages(&sent[..consumed]);
            let mut got = view.messages;
            if failed {
                // The message that broke a rule was cut where the rule broke: compare what
                // came out of it as a prefix, and nothing after.
                let (e, g) = (expected.pop(), got.pop());
                if let Some(g) = g {
                    let e = e.expect("a message went out that the backend did not send");
                    assert!(e.data.starts_with(&g.data) && e.text == g.text, "{g:?} / {e:?}");
                    assert!(!g.complete || e.complete);
                } else if let Some(e) = e {
                    expected.push(e);
                }
            }
            assert_eq!(got, expected);
        }
        Mode::Stream => {
            let got: Vec<u8> = view.messages.iter().flat_map(|m| m.data.clone()).collect();
            assert_eq!(got, &sent[..consumed]);
            assert!(view.messages.iter().all(|m| m.complete));
            // At the backend's end of file, everything goes out: nothing may stall.
            assert!(failed || consumed == sent.len(), "{consumed} of {} bytes sent", sent.len());
        }
        Mode::SeqPacket => {
            let got: Vec<Vec<u8>> = view.messages.iter().map(|m| m.data.clone()).collect();
            assert_eq!(got, packets[..got.len()]);
        }
        Mode::Lines => {}
    }
});
