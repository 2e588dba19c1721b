//! Compressed client messages (permessage-deflate) through `ws::session::Session` and
//! `relay::compress::Inbound`, driven as `event_loop/conn/client.rs` drives them: the
//! client's bytes arrive in pieces into a fixed input buffer, the session decodes frames,
//! and a compressed message's payload stays at the front of the buffer until `Inbound::step`
//! has inflated it into an output room of 1 to 2041 bytes, under a message limit of 0 to
//! 4080 bytes. And the other direction: backend messages compressed by
//! `relay::compress::Outbound` into frames, cut as the downlink pumps cut them, read back
//! through the same session and `Inbound`.
//!
//! Hostile messages: the input's bytes, as DEFLATE data, in RSV1 frames of input-derived
//! sizes (empty ones too), masked, with pings between them; two messages in a row. Each is
//! checked against a reference that inflates the whole message (payload and the 4-byte tail,
//! RFC 7692 §7.2.2) in one go with zlib-rs: a message that is DEFLATE, no longer than the
//! limit once inflated and (text) UTF-8 is delivered whole and identical; otherwise the
//! connection fails with 1007 (bad data, data after the final block, bad UTF-8) or 1009
//! (more inflated bytes than the limit, or more compressed bytes than the session lets
//! through), whichever the reference allows, and never with a byte past the limit delivered.
//! No piece is larger than the room, and `step` never blocks while it owes bytes and has
//! room (the connection would hang).
//!
//! Round trip: the input's bytes as one or two backend messages, on one connection or two
//! sharing the compressors (so one may find none free and go uncompressed), in pieces no
//! larger than `Outbound::room` (or as one whole packet), with the client reading the output
//! buffer at input-derived amounts. The frames are server frames (RSV1 on a compressed
//! message's first frame only); a message is compressed exactly when a compressor of its
//! kind (full or literal-only window) is free and its first piece fits once compressed; read
//! back, the messages are the backend's, byte for byte.
//!
//! After every input all contexts are back in the pool and no promise is held.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A fuzz harness: a panic is how it reports a broken invariant.

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use wsgate::buffer::{Buf, BufPool};
use wsgate::relay::compress::{Contexts, Inbound, Outbound, Sizes, Step};
use wsgate::ws::deflate::zstream::{bound, MIN_WINDOW_BITS};
use wsgate::ws::deflate::{Agreement, TAIL};
use wsgate::ws::frame::{FrameHeader, OpCode, MAX_SERVER_HEADER_LEN};
use wsgate::ws::session::{DataKind, Event, ProtocolError, Session, RSV1};
use wsgate_fuzz::push_client_frame;
use zlib_rs::{Inflate, InflateFlush, Status};

/// Connection buffer sizes (the gateway's smallest, `config::MIN_BUFFER_SIZE`, and a common
/// one); the contexts' scratch buffer is one of them, as in the gateway.
const BUF_SIZES: [usize; 2] = [1024, 4096];
/// Compressors' (window bits, level).
const ZCONF: [(u8, u8); 3] = [(15, 6), (12, 9), (9, 1)];

/// Persistent per process: `BufPool` leaks its arena by design, and compressors are made at
/// start-up in the gateway too.
struct World {
    /// One per (buffer size, compressor configuration), with its pool's full counts.
    contexts: Vec<(Contexts, Sizes)>,
    /// Per buffer size: an input buffer and two connections' output buffers.
    pools: Vec<BufPool>,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World {
        contexts: BUF_SIZES
            .iter()
            .flat_map(|&buf| {
                ZCONF.iter().map(move |&(window, level)| {
                    let narrow = usize::from(window > MIN_WINDOW_BITS);
                    let sizes = Sizes { deflaters: 1, narrow, inflaters: 2 };
                    (Contexts::new(sizes, level, window, buf), sizes)
                })
            })
            .collect(),
        pools: BUF_SIZES.iter().map(|&s| BufPool::new(3, s).unwrap()).collect(),
    });
}

fn give(pool: &mut BufPool, mut buf: Buf) {
    let n = buf.len();
    buf.consume(n);
    pool.put(buf);
}

/// What came out of the session and `Inbound` for one message.
#[derive(Debug, Default)]
struct Got {
    kind: Option<DataKind>,
    data: Vec<u8>,
    complete: bool,
    compressed: bool,
}

/// How the client's bytes are read.
#[derive(Clone, Copy, Debug)]
struct Reading {
    /// The uplink room `Inbound::step` inflates into.
    room: usize,
    max_message: u64,
    /// The session's `max_data`.
    max_data: usize,
    /// Bytes per arrival from the socket.
    arrival: usize,
}

/// Reads `wire` (client frames) as the connection does; the messages delivered and the
/// failure, if any. The connection's promise and contexts go back at the end, as when it
/// closes.
fn read_client(
    cx: &mut Contexts,
    input: &mut Buf,
    wire: &[u8],
    r: Reading,
) -> (Vec<Got>, Option<ProtocolError>) {
    let mut session = Session::new(r.max_message);
    session.set_deflate(true);
    let mut inbound = Inbound::default();
    inbound.reserved = cx.reserve();
    assert!(inbound.reserved, "a promise is free: {} held", cx.reserved());
    let total = cx.free();
    let mut got: Vec<Got> = Vec::new();
    let mut fed = 0;
    let mut failed = None;
    loop {
        if inbound.busy() {
            match inbound.step(cx, Some(&mut *input), r.room, r.max_message) {
                Ok(Step::Piece { kind, start, fin, bytes }) => {
                    assert!(bytes.len() <= r.room, "{} bytes in a room of {}", bytes.len(), r.room);
                    let m = got.last_mut().expect("a message is open");
                    assert!(!m.complete && m.compressed);
                    assert_eq!(start, m.kind.is_none(), "start on the first piece only");
                    assert_eq!(*m.kind.get_or_insert(kind), kind);
                    m.data.extend_from_slice(bytes);
                    m.complete = fin;
                    assert!(
                        m.data.len() as u64 <= r.max_message,
                        "{} bytes delivered, limit {}",
                        m.data.len(),
                        r.max_message
                    );
                    if kind == DataKind::Text {
                        wsgate_fuzz::check_utf8(&m.data, fin);
                    }
                    if fin {
                        // The decompressor is back, reset, for the next message.
                        assert_eq!(cx.free().inflaters, total.inflaters);
                    }
                }
                Ok(Step::Consumed) => {}
                Ok(Step::Blocked) => panic!("blocked with bytes owed and a room of {}", r.room),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            continue;
        }
        let (n, ev) = match session.decode(input.readable_mut(), r.max_data) {
            Ok(x) => x,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let mut consume = n;
        match ev {
            Some(Event::Data { kind, start, fin, len, compressed }) => {
                if start {
                    got.push(Got { compressed, ..Got::default() });
                }
                let m = got.last_mut().expect("a message is open");
                assert_eq!(m.compressed, compressed);
                if compressed {
                    inbound.feed(cx, kind, start, fin, len);
                    consume = n - len;
                } else {
                    assert_eq!(*m.kind.get_or_insert(kind), kind);
                    m.data.extend_from_slice(&input.readable()[n - len..n]);
                    m.complete = fin;
                }
            }
            Some(Event::Ping(_)) => {}
            Some(other) => panic!("{other:?}"),
            None if n > 0 => {}
            None => {
                if fed == wire.len() {
                    break;
                }
                let take = r.arrival.min(wire.len() - fed).min(input.free());
                assert!(take > 0, "stalled with a full input buffer ({} bytes)", input.len());
                assert!(input.append(&wire[fed..fed + take]));
                fed += take;
            }
        }
        input.consume(consume);
    }
    inbound.release(cx);
    input.consume(input.len());
    (got, failed)
}

/// A message inflated in one go, as the reference.
struct Reference {
    /// The first `limit + 1` bytes.
    head: Vec<u8>,
    /// Bytes produced before the stream ended or broke.
    len: u64,
    /// Not DEFLATE, or data after the final block.
    bad: bool,
}

fn reference(z: &mut Inflate, payload: &[u8], limit: u64) -> Reference {
    z.reset(false);
    let input: Vec<u8> = payload.iter().chain(&TAIL).copied().collect();
    let keep = usize::try_from(limit).unwrap() + 1;
    let mut head = Vec::new();
    let mut out = vec![0u8; 32 << 10];
    let mut at = 0;
    let bad = loop {
        let (in0, out0) = (z.total_in(), z.total_out());
        let status = z.decompress(&input[at..], &mut out, InflateFlush::NoFlush);
        let consumed = (z.total_in() - in0) as usize;
        let produced = (z.total_out() - out0) as usize;
        at += consumed;
        let room = keep.saturating_sub(head.len());
        head.extend_from_slice(&out[..produced.min(room)]);
        match status {
            Err(_) => break true,
            // Data after the final block; the tail after it is not needed.
            Ok(Status::StreamEnd) => break at < payload.len(),
            Ok(_) if at == input.len() && produced < out.len() => break false,
            Ok(_) if consumed == 0 && produced == 0 => break false,
            // Far past anything `Inbound` inflates before it stops at the limit: what follows
            // cannot change its answer.
            Ok(_) if z.total_out() > limit + (64 << 10) => break false,
            Ok(_) => {}
        }
    };
    Reference { head, len: z.total_out(), bad }
}

/// The input's layout: parameters, then the bytes every part uses.
struct Plan<'a> {
    reading: Reading,
    texts: [bool; 2],
    pings: bool,
    buf: usize,
    zconf: usize,
    /// Round trip: the window the client agreed to, two connections, drain amounts, pieces.
    agreed: u8,
    two: bool,
    drain: u8,
    packets: bool,
    empty_fin: bool,
    sizes: &'a [u8],
    /// The two messages.
    messages: [&'a [u8]; 2],
}

fn plan(data: &[u8]) -> Option<Plan<'_>> {
    let (&[max, room, flags, ctx, rt, k], rest) = data.split_first_chunk::<6>()?;
    let k = 1 + usize::from(k % 8);
    let (sizes, rest) = (rest.get(..k)?, rest.get(k..)?);
    let (&l, payload) = rest.split_first_chunk::<2>()?;
    let split = usize::from(u16::from_be_bytes(l)).min(payload.len());
    let (m1, m2) = payload.split_at(split);
    Some(Plan {
        reading: Reading {
            room: 1 + usize::from(room) * 8,
            max_message: u64::from(max) * 16,
            max_data: [usize::MAX, 1, 9, 200][usize::from(flags >> 4 & 3)],
            arrival: [1, 7, 64, usize::MAX][usize::from(flags >> 2 & 3)],
        },
        texts: [flags & 1 != 0, flags & 2 != 0],
        pings: flags & 0x40 != 0,
        buf: usize::from(flags >> 7),
        zconf: usize::from(ctx % 3),
        agreed: 8 + (rt & 7),
        two: rt & 8 != 0,
        drain: rt >> 4 & 3,
        packets: rt & 0x40 != 0,
        empty_fin: rt & 0x80 != 0,
        sizes,
        messages: [m1, m2],
    })
}

/// A frame's or piece's length from a size byte: small ones up to 127, then steps of 32.
fn size(b: u8) -> usize {
    if b < 128 {
        usize::from(b)
    } else {
        usize::from(b - 128) * 32
    }
}

fn hostile(w: &mut World, p: &Plan<'_>, z: &mut Inflate) {
    let (cx, _) = &mut w.contexts[p.buf * ZCONF.len() + p.zconf];
    let mut wire = Vec::new();
    let mut frames = 0usize;
    let messages: Vec<(&[u8], bool)> = p
        .messages
        .iter()
        .zip(p.texts)
        .enumerate()
        .filter(|(i, (m, _))| *i == 0 || !m.is_empty())
        .map(|(_, (m, t))| (*m, t))
        .collect();
    for &(m, text) in &messages {
        let mut rest = m;
        let mut first = true;
        let mut last_empty = false;
        loop {
            let mut n = size(p.sizes[frames % p.sizes.len()]).min(rest.len());
            if n == 0 && last_empty {
                n = rest.len();
            }
            last_empty = n == 0;
            let (chunk, after) = rest.split_at(n);
            rest = after;
            let fin = rest.is_empty();
            let op = match (first, text) {
                (false, _) => OpCode::Continuation,
                (true, true) => OpCode::Text,
                (true, false) => OpCode::Binary,
            };
            let mask = [frames as u8, 0xa5, p.sizes[0], (frames >> 8) as u8];
            push_client_frame(&mut wire, fin, if first { RSV1 } else { 0 }, op, mask, chunk);
            frames += 1;
            first = false;
            if fin {
                break;
            }
            if p.pings {
                push_client_frame(&mut wire, true, 0, OpCode::Ping, mask, &[frames as u8]);
            }
        }
    }
    let mut input = w.pools[p.buf].take().unwrap();
    let (got, failed) = read_client(cx, &mut input, &wire, p.reading);
    give(&mut w.pools[p.buf], input);

    let max = p.reading.max_message;
    // The session's own limit on a compressed message's bytes (`compressed_limit`).
    let compressed_limit = max + max / 8192 + 64;
    let done = got.iter().filter(|g| g.complete).count();
    assert!(done == got.len() || done + 1 == got.len(), "only the last message is open");
    for (i, &(m, text)) in messages.iter().enumerate() {
        let r = reference(z, m, max);
        let big = r.len > max;
        let definite = |d: &[u8]| core::str::from_utf8(d).is_err_and(|e| e.error_len().is_some());
        let shown = &r.head[..r.head.len().min(max as usize)];
        let bad_utf8 = text && definite(shown);
        let unfinished_utf8 = text && !r.bad && !big && core::str::from_utf8(&r.head).is_err();
        let too_long = m.len() as u64 > compressed_limit;
        let good = !r.bad && !big && !bad_utf8 && !unfinished_utf8 && !too_long;
        if i < done {
            let g = &got[i];
            assert!(good, "message {i} delivered: bad {}, {} bytes inflated", r.bad, r.len);
            assert_eq!(g.kind, Some(if text { DataKind::Text } else { DataKind::Binary }));
            assert!(g.compressed);
            assert_eq!(g.data, r.head, "message {i}");
            continue;
        }
        // The message the connection stopped at.
        if let Some(g) = got.get(i) {
            assert!(r.head.starts_with(&g.data), "message {i}: delivered bytes not inflated");
        }
        let e = failed.unwrap_or_else(|| panic!("message {i} neither delivered nor failed"));
        let allowed = match e {
            ProtocolError::TooBig => big || too_long,
            ProtocolError::BadCompression => r.bad,
            ProtocolError::InvalidUtf8 => bad_utf8 || unfinished_utf8,
            _ => false,
        };
        assert!(
            allowed,
            "message {i} failed with {e:?} ({}): bad {}, {} bytes inflated, limit {max}, \
             {} compressed, utf-8 {bad_utf8}/{unfinished_utf8}",
            e.close_code(),
            r.bad,
            r.len,
            m.len()
        );
        assert!(matches!(e.close_code(), 1007 | 1009 | 1002));
        assert!(!good, "message {i} failed with {e:?} though it is good");
        return;
    }
    assert!(failed.is_none(), "{failed:?} after every message was delivered");
}

/// One connection's downlink in the round trip.
struct Downlink<'a> {
    ob: Outbound,
    out: Buf,
    /// What the client read from `out`.
    wire: Vec<u8>,
    /// Messages still to send, and how far the first one went.
    queue: Vec<(&'a [u8], DataKind)>,
    pos: usize,
    started: bool,
    /// Whether each message sent was expected compressed.
    expected: Vec<bool>,
}

/// A small generator for the harness's choices, seeded from the input.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fn drain(d: &mut Downlink<'_>, amount: usize) {
    let n = amount.min(d.out.len());
    d.wire.extend_from_slice(&d.out.readable()[..n]);
    d.out.consume(n);
}

fn round_trip(w: &mut World, p: &Plan<'_>) {
    let World { contexts, pools } = w;
    let (cx, _) = &mut contexts[p.buf * ZCONF.len() + p.zconf];
    let pool = &mut pools[p.buf];
    let agreement = Agreement { server_window_bits: p.agreed.min(cx.window_bits()) };
    let narrow = agreement.server_window_bits < cx.window_bits();
    let kind = |m: &[u8]| {
        if core::str::from_utf8(m).is_ok() {
            DataKind::Text
        } else {
            DataKind::Binary
        }
    };
    let mut links: Vec<Downlink<'_>> = (0..1 + usize::from(p.two))
        .map(|_| Downlink {
            ob: Outbound::new(&agreement, cx.window_bits()),
            out: pool.take().unwrap(),
            wire: Vec::new(),
            queue: Vec::new(),
            pos: 0,
            started: false,
            expected: Vec::new(),
        })
        .collect();
    let nlinks = links.len();
    for (i, m) in p.messages.iter().enumerate() {
        links[i % nlinks].queue.push((m, kind(m)));
    }
    let mut rng = Rng(0x9e37_79b9 ^ u32::from_le_bytes([p.sizes[0], p.agreed, p.drain, 1]) | 1);
    let mut pieces = 0;
    loop {
        let first = rng.next() as usize;
        let Some(c) =
            (0..nlinks).map(|j| (first + j) % nlinks).find(|&j| !links[j].queue.is_empty())
        else {
            break;
        };
        let d = &mut links[c];
        let (m, kind) = d.queue[0];
        let capacity = d.out.capacity();
        let whole = p.packets && !d.started && m.len() + MAX_SERVER_HEADER_LEN <= capacity;
        if whole && d.out.free() < m.len() + MAX_SERVER_HEADER_LEN {
            // The packet pump waits for room for the whole packet.
            drain(d, usize::MAX);
        }
        let room = Outbound::room(&d.out, MAX_SERVER_HEADER_LEN);
        let rest = &m[d.pos..];
        let (n, fin) = if whole {
            (m.len(), true)
        } else if rest.is_empty() {
            // An empty message, or the empty last piece of a message whose bytes all went
            // (as the lines pump ends a long line when its newline comes).
            (0, true)
        } else {
            // Past 32 pieces, as large as the room allows, as when the backend has sent
            // plenty: tiny pieces are a compressor flush each, and would make most runs slow.
            let want =
                if pieces < 32 { size(p.sizes[pieces % p.sizes.len()]).max(1) } else { room };
            let n = want.min(rest.len()).min(room);
            (n, n == rest.len() && !p.empty_fin)
        };
        pieces += 1;
        if n == 0 && !rest.is_empty() {
            drain(d, usize::MAX);
            continue;
        }
        let piece = &rest[..n];
        let opcode = if d.started { OpCode::Continuation } else { kind.into() };
        if !d.started {
            let free = cx.free();
            let has = if narrow { free.narrow } else { free.deflaters } > 0;
            let fits = bound(n) + MAX_SERVER_HEADER_LEN <= capacity;
            d.expected.push(has && fits);
        }
        let mut sent = d.ob.emit(cx, &mut d.out, fin, opcode, piece);
        if !sent {
            // Only a whole packet, or a message going uncompressed, may not fit at once.
            assert!(whole, "a piece within the room did not fit: {n} of {room}");
            drain(d, usize::MAX);
            sent = d.ob.emit(cx, &mut d.out, fin, opcode, piece);
            assert!(sent, "{n} bytes do not fit in an empty buffer of {capacity}");
        }
        d.started = !fin;
        d.pos += n;
        if fin {
            d.queue.remove(0);
            d.pos = 0;
        }
        let amount = match (p.drain + (rng.next() & 1) as u8) % 4 {
            0 => 0,
            1 => usize::MAX,
            2 => d.out.len() / 2,
            _ => 37,
        };
        drain(d, amount);
    }

    let mut input = pool.take().unwrap();
    for (j, mut d) in links.into_iter().enumerate() {
        drain(&mut d, usize::MAX);
        d.ob.release(cx);
        give(pool, d.out);
        // Server frames, as the gateway sent them; masked again as a client would send them.
        let mut client = Vec::new();
        let mut b = d.wire.as_slice();
        let mut open = false;
        let mut compressed = Vec::new();
        while !b.is_empty() {
            let (h, hlen) = FrameHeader::parse(b).unwrap().expect("whole frames");
            assert!(h.mask.is_none());
            let len = h.len as usize;
            let payload = &b[hlen..hlen + len];
            b = &b[hlen + len..];
            assert_eq!(h.opcode == OpCode::Continuation, open, "{:?} while open {open}", h.opcode);
            assert!(matches!(h.opcode, OpCode::Text | OpCode::Binary | OpCode::Continuation));
            if h.opcode == OpCode::Continuation {
                assert_eq!(h.rsv, 0, "RSV bits on a continuation");
            } else {
                assert!(h.rsv == 0 || h.rsv == RSV1, "RSV bits {:#x}", h.rsv);
                compressed.push(h.rsv == RSV1);
            }
            open = !h.fin;
            let mask = [len as u8, 0x3c, 0x00, 0xff];
            push_client_frame(&mut client, h.fin, h.rsv, h.opcode, mask, payload);
        }
        assert!(!open, "a message left unfinished");
        assert_eq!(compressed, d.expected, "connection {j}: which messages went compressed");
        let r = Reading { max_message: 1 << 20, ..p.reading };
        let (got, failed) = read_client(cx, &mut input, &client, r);
        assert_eq!(failed, None, "connection {j}");
        let sent: Vec<(&[u8], DataKind)> = p
            .messages
            .iter()
            .enumerate()
            .filter(|(i, _)| i % nlinks == j)
            .map(|(_, m)| (*m, kind(m)))
            .collect();
        assert_eq!(got.len(), sent.len(), "connection {j}: messages");
        for (g, (m, k)) in got.iter().zip(sent) {
            assert!(g.complete);
            assert_eq!(g.kind, Some(k));
            assert!(g.data == m, "connection {j}: {} bytes back for {}", g.data.len(), m.len());
        }
    }
    give(pool, input);
}

fuzz_target!(|data: &[u8]| {
    let Some(p) = plan(data) else { return };
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let mut z = Inflate::new(false, 15);
        hostile(&mut w, &p, &mut z);
        round_trip(&mut w, &p);
        // Every context and promise is back.
        for (cx, sizes) in &w.contexts {
            assert_eq!(cx.free(), *sizes);
            assert_eq!(cx.reserved(), 0);
        }
    });
});
