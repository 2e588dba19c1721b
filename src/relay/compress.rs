//! permessage-deflate in the relay: the compression contexts every connection shares, and what
//! a connection keeps between calls to inflate its client's messages and compress its
//! backend's. Sans-IO: bytes move between [`Buf`]s and slices.
//!
//! Memory is fixed at start-up ([`Contexts::new`]): a few compressors and enough
//! decompressors for the connections that may negotiate compression, all from the configured
//! budget, plus one scratch buffer. A connection holds a context only while a message is in
//! flight (both directions are negotiated without context takeover, see
//! [`crate::ws::deflate`]), and gives it back reset:
//! * a decompressor is *reserved* when the connection negotiates compression, so one is always
//!   free when its client starts a compressed message; once every decompressor is reserved,
//!   new connections are answered without compression, and existing ones never fail for it;
//! * a compressor is taken when a backend message starts; when none is free the message goes
//!   to the client uncompressed, which the extension always allows.
//!
//! Most of that memory is resident from start-up on: zlib zeroes a compressor's window, chain
//! and hash table when it is made (about 256 KiB of its 272 KiB at 15 bits), and writes a
//! decompressor's state and tables (about 19 KiB of its 47 KiB); a decompressor's 32 KiB window
//! is written only when it inflates. The free lists are LIFO, so the contexts in use stay the
//! same few and the windows of the others stay out of the resident set. However many
//! connections come, compression adds at most the budget to the gateway's resident set
//! (tests/py/test_compression_memory.py).

use crate::buffer::Buf;
use crate::ws::deflate::zstream::{
    self, Deflater, Inflater, InvalidData, MAX_WINDOW_BITS, MIN_WINDOW_BITS,
};
use crate::ws::deflate::{Agreement, TAIL};
use crate::ws::frame::{FrameHeader, OpCode, MAX_SERVER_HEADER_LEN};
use crate::ws::session::{DataKind, ProtocolError, RSV1};
use crate::ws::utf8::Utf8Validator;

/// zlib's memory level for the compressors: a 1,024-symbol block buffer (7 KiB), where zlib's
/// default of 8 takes 112 KiB for a ratio within a few percent on messages of this size.
pub const MEM_LEVEL: u8 = 4;

/// The bytes one compressor takes at `window_bits` (zlib-rs: a 64 Ki-entry hash head, the
/// window and its chain, the symbol buffers at [`MEM_LEVEL`], the state): 272,512 bytes
/// measured at 15 bits, 143,488 at 9, rounded up.
#[must_use]
pub const fn deflater_size(window_bits: u8) -> usize {
    (128 << 10) + (4 << window_bits) + (7 << 10) + (6 << 10)
}

/// The bytes one decompressor takes (a 32 KiB window and the state; 47,552 measured).
pub const INFLATER_SIZE: usize = 47 << 10;

/// How the budget is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Compressors at the configured window.
    pub deflaters: usize,
    /// Literal-only compressors (see [`Deflater::literal_only`]), for clients that ask for a
    /// window below the configured one (none when that is the smallest).
    pub narrow: usize,
    /// Decompressors, so connections that may negotiate compression.
    pub inflaters: usize,
}

impl Sizes {
    /// The split of `budget` bytes: a quarter for compressors, an eighth for literal-only ones
    /// (at least one of each), the rest for decompressors. `None` when the budget does not
    /// hold that much.
    #[must_use]
    pub fn of(budget: usize, window_bits: u8) -> Option<Self> {
        let d = deflater_size(window_bits);
        let deflaters = (budget / 4 / d).max(1);
        let n = deflater_size(MAX_WINDOW_BITS);
        let narrow = if window_bits > MIN_WINDOW_BITS { (budget / 8 / n).max(1) } else { 0 };
        let inflaters = budget.checked_sub(deflaters * d + narrow * n)? / INFLATER_SIZE;
        (inflaters > 0).then_some(Self { deflaters, narrow, inflaters })
    }

    /// The least budget that holds one of each at `window_bits`.
    #[must_use]
    pub fn minimum(window_bits: u8) -> usize {
        let narrow = if window_bits > MIN_WINDOW_BITS { deflater_size(MAX_WINDOW_BITS) } else { 0 };
        deflater_size(window_bits) + narrow + INFLATER_SIZE
    }
}

/// Free contexts of one kind. Each is boxed once, at start-up, so that a connection holds a
/// pointer to the one it uses, not the context itself: a zlib stream is about 120 bytes, and
/// every connection slot would otherwise have room for two, in use or not.
#[allow(clippy::vec_box)]
type Free<T> = Vec<Box<T>>;

/// The compression contexts, made at start-up.
#[derive(Debug)]
pub struct Contexts {
    deflaters: Free<Deflater>,
    narrow: Free<Deflater>,
    inflaters: Free<Inflater>,
    /// Decompressors promised to connections (each holds one promise while open).
    reserved: usize,
    total_inflaters: usize,
    /// Where one compressed frame is assembled, or one piece of a message inflated.
    scratch: Box<[u8]>,
    window_bits: u8,
}

impl Contexts {
    /// `sizes` contexts compressing at `level` with a window of `window_bits`, and a scratch
    /// buffer of `buf_size` bytes (a connection buffer's size).
    #[must_use]
    pub fn new(sizes: Sizes, level: u8, window_bits: u8, buf_size: usize) -> Self {
        Self {
            deflaters: (0..sizes.deflaters)
                .map(|_| Box::new(Deflater::new(level, window_bits, MEM_LEVEL)))
                .collect(),
            narrow: (0..sizes.narrow)
                .map(|_| Box::new(Deflater::literal_only(level, MEM_LEVEL)))
                .collect(),
            inflaters: (0..sizes.inflaters).map(|_| Box::new(Inflater::new())).collect(),
            reserved: 0,
            total_inflaters: sizes.inflaters,
            scratch: vec![0; buf_size].into_boxed_slice(),
            window_bits,
        }
    }

    /// The compressors' window, in bits.
    #[must_use]
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Promises a decompressor to a connection that negotiates compression; `false` when all
    /// are promised (the connection goes without).
    pub fn reserve(&mut self) -> bool {
        let ok = self.reserved < self.total_inflaters;
        self.reserved += usize::from(ok);
        ok
    }

    /// A connection that held a promise has ended.
    pub fn unreserve(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// The contexts no connection holds now, of each kind: all of them once every connection
    /// has ended (the `inflate` fuzz target checks it after each input).
    #[must_use]
    pub fn free(&self) -> Sizes {
        Sizes {
            deflaters: self.deflaters.len(),
            narrow: self.narrow.len(),
            inflaters: self.inflaters.len(),
        }
    }

    /// Decompressors promised to open connections.
    #[must_use]
    pub fn reserved(&self) -> usize {
        self.reserved
    }
}

impl From<InvalidData> for ProtocolError {
    fn from(_: InvalidData) -> Self {
        Self::BadCompression
    }
}

/// What one [`Inbound::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'s> {
    /// Nothing: no room, or no compressed bytes waiting.
    Blocked,
    /// The decompressor moved with nothing out yet: compressed bytes went in (a block
    /// header), or the output it might have held after a full room turned out to be none.
    Consumed,
    /// A piece of the inflated message, for the uplink.
    Piece {
        /// Text or binary.
        kind: DataKind,
        /// The message's first piece.
        start: bool,
        /// Its last.
        fin: bool,
        /// The bytes, in the scratch buffer.
        bytes: &'s [u8],
    },
}

/// Client → backend: the compressed message being inflated.
#[derive(Debug, Default)]
pub struct Inbound {
    /// The connection holds a decompressor promise.
    pub reserved: bool,
    inflater: Option<Box<Inflater>>,
    /// Compressed bytes at the front of the client buffer, already unmasked, not yet inflated.
    pending: usize,
    /// Those bytes end the message: the tail follows them.
    last: bool,
    /// The last step filled its room: the decompressor may hold more output, which it gives
    /// without further input.
    more: bool,
    /// How much of [`TAIL`] went in.
    tail: usize,
    kind: Option<DataKind>,
    started: bool,
    produced: u64,
    utf8: Utf8Validator,
}

impl Inbound {
    /// Is a compressed message in progress?
    #[must_use]
    pub fn in_message(&self) -> bool {
        self.kind.is_some()
    }

    /// Are inflated bytes still owed before the next frame may be decoded?
    #[must_use]
    pub fn busy(&self) -> bool {
        self.pending > 0 || self.more || (self.last && self.kind.is_some())
    }

    /// The session decoded `len` payload bytes of a compressed message (they are the last
    /// `len` bytes it consumed, which the caller leaves in its buffer); `start` and `fin` as
    /// its event said.
    pub fn feed(&mut self, cx: &mut Contexts, kind: DataKind, start: bool, fin: bool, len: usize) {
        if start {
            self.kind = Some(kind);
            self.started = false;
            self.produced = 0;
            self.tail = 0;
            self.utf8.reset();
            if self.inflater.is_none() {
                self.inflater = cx.inflaters.pop();
            }
        }
        self.pending = len;
        self.last = fin;
    }

    /// Inflates what it can of the pending bytes at the front of `input` into the scratch
    /// buffer, at most `room` bytes, and consumes what it used. `input` may be `None` (a
    /// connection gives its empty buffers back) when no byte is pending: what is owed then is
    /// the tail, or output the decompressor holds.
    ///
    /// # Errors
    /// [`ProtocolError`]: fail the connection with its close code (1007 for data that is not
    /// DEFLATE or not UTF-8, 1009 past `max_message` inflated bytes).
    pub fn step<'s>(
        &mut self,
        cx: &'s mut Contexts,
        input: Option<&mut Buf>,
        room: usize,
        max_message: u64,
    ) -> Result<Step<'s>, ProtocolError> {
        let Some(kind) = self.kind else { return Ok(Step::Blocked) };
        let out_len = room.min(cx.scratch.len());
        if out_len == 0 {
            return Ok(Step::Blocked);
        }
        // A message starts compressed only on a connection that holds a promise, so that a
        // decompressor was free.
        let Some(inf) = self.inflater.as_mut() else { return Err(ProtocolError::BadCompression) };
        let Contexts { scratch, inflaters, .. } = cx;
        let out = scratch.get_mut(..out_len).unwrap_or_default();
        let mut produced = 0;
        let mut full = false;
        let mut consumed = 0;
        let drained = core::mem::take(&mut self.more);
        if self.pending > 0 || drained {
            let data = match input.as_deref() {
                Some(b) => b.readable().get(..self.pending).unwrap_or_default(),
                None => &[],
            };
            let r = inf.inflate(data, out)?;
            if r.ended && r.consumed < data.len() {
                return Err(ProtocolError::BadCompression);
            }
            if let Some(b) = input {
                b.consume(r.consumed);
            }
            self.pending -= r.consumed;
            consumed = r.consumed;
            produced = r.produced;
            full = produced == out_len;
        }
        if self.pending == 0 && self.last && !full {
            let rest = out.get_mut(produced..).unwrap_or_default();
            let tail = TAIL.get(self.tail..).unwrap_or_default();
            let r = inf.inflate(tail, rest)?;
            // After a final block the tail is not read, and not needed.
            self.tail = if r.ended { TAIL.len() } else { self.tail + r.consumed };
            consumed += r.consumed;
            produced += r.produced;
            full = produced == out_len;
        }
        self.more = full;
        let fin = self.last && self.pending == 0 && self.tail == TAIL.len() && !full;
        if produced == 0 && !fin {
            return Ok(if consumed > 0 || drained { Step::Consumed } else { Step::Blocked });
        }
        let bytes = out.get(..produced).unwrap_or_default();
        self.produced = self.produced.saturating_add(produced as u64);
        if self.produced > max_message {
            return Err(ProtocolError::TooBig);
        }
        if kind == DataKind::Text {
            self.utf8.feed(bytes).map_err(|_| ProtocolError::InvalidUtf8)?;
            if fin && !self.utf8.is_complete() {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        let start = !self.started;
        self.started = true;
        if fin {
            self.end(inflaters);
        }
        Ok(Step::Piece { kind, start, fin, bytes })
    }

    /// The message is over (or the connection): the decompressor goes back, reset.
    fn end(&mut self, free: &mut Free<Inflater>) {
        self.kind = None;
        self.pending = 0;
        self.last = false;
        self.more = false;
        if let Some(mut inf) = self.inflater.take() {
            inf.reset();
            free.push(inf);
        }
    }

    /// The message will not be relayed (the connection is closing): its pending bytes are
    /// dropped from the front of `input` (`None` when none are).
    pub fn discard(&mut self, cx: &mut Contexts, input: Option<&mut Buf>) {
        if let Some(input) = input {
            input.consume(self.pending);
        }
        self.end(&mut cx.inflaters);
    }

    /// The connection ends: its contexts and its promise go back.
    pub fn release(&mut self, cx: &mut Contexts) {
        self.end(&mut cx.inflaters);
        if core::mem::take(&mut self.reserved) {
            cx.unreserve();
        }
    }
}

/// Backend → client: whether messages may be compressed, and the compressor of the one in
/// flight.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Messages may be compressed (negotiated).
    pub allowed: bool,
    /// The client asked for a window below the configured one: compressors come from the
    /// literal-only pool.
    narrow: bool,
    deflater: Option<Box<Deflater>>,
    /// The message in flight is compressed.
    compressing: bool,
}

impl Outbound {
    /// For what was agreed with compressors of `window_bits`.
    #[must_use]
    pub fn new(agreement: &Agreement, window_bits: u8) -> Self {
        Self {
            allowed: true,
            narrow: agreement.server_window_bits < window_bits,
            deflater: None,
            compressing: false,
        }
    }

    /// Payload bytes of one piece that can go in `out` now, whether this message is
    /// compressed or not (the same bound keeps the pieces the same size).
    #[must_use]
    pub fn room(out: &Buf, header: usize) -> usize {
        zstream::max_input(out.free().saturating_sub(header))
    }

    /// Appends one frame for `piece` of a message (its first when `opcode` is text or binary),
    /// compressed when the message is. `false` when it does not fit; nothing is then written,
    /// and the same piece comes again.
    pub fn emit(
        &mut self,
        cx: &mut Contexts,
        out: &mut Buf,
        fin: bool,
        opcode: OpCode,
        piece: &[u8],
    ) -> bool {
        if opcode != OpCode::Continuation {
            // A message too big for the buffer once bounded goes as it is (only a whole
            // packet can be: other modes cut their pieces to `room`).
            let fits = zstream::bound(piece.len()) + MAX_SERVER_HEADER_LEN
                <= out.capacity().min(cx.scratch.len());
            if self.allowed && self.deflater.is_none() && fits {
                self.deflater = self.pool(cx).pop();
            }
            self.compressing = self.allowed && fits && self.deflater.is_some();
        }
        if !self.compressing {
            return super::codec::emit(out, fin, opcode, piece);
        }
        let need = zstream::bound(piece.len());
        if out.free() < FrameHeader::server_header_len(need as u64) + need {
            return false;
        }
        // A message that goes on after its compressor was given back takes one again if one is
        // free; else its pieces go as stored (uncompressed) DEFLATE blocks, which need none.
        if self.deflater.is_none() {
            self.deflater = self.pool(cx).pop();
        }
        let Some(z) = cx.scratch.get_mut(..need) else { return false };
        let n = match self.deflater.as_mut() {
            // Every piece is flushed, so that it is a frame of its own and the compressor holds
            // nothing back between calls; the last one's flush marker is the tail the client
            // puts back (RFC 7692 §7.2.1).
            Some(d) => match d.compress(piece, z, true) {
                Some(n) if fin && z.get(n.saturating_sub(4)..n) == Some(&TAIL[..]) => n - 4,
                Some(n) => n,
                None => return false,
            },
            None => zstream::stored(piece, fin, z),
        };
        let rsv = if opcode == OpCode::Continuation { 0 } else { RSV1 };
        if !super::codec::emit_rsv(out, fin, rsv, opcode, z.get(..n).unwrap_or_default()) {
            return false;
        }
        if fin {
            self.end(cx);
        } else if out.free() < out.capacity() / 4 {
            // The client is not taking its bytes as fast as they come: until it does, the
            // compressor serves other connections (the stream is at a block boundary, and
            // with no context takeover nothing after it refers back).
            self.park(cx);
        }
        true
    }

    fn pool<'c>(&self, cx: &'c mut Contexts) -> &'c mut Free<Deflater> {
        if self.narrow {
            &mut cx.narrow
        } else {
            &mut cx.deflaters
        }
    }

    /// The compressor goes back, reset; the message, if one is in flight, stays compressed.
    fn park(&mut self, cx: &mut Contexts) {
        if let Some(mut d) = self.deflater.take() {
            d.reset();
            self.pool(cx).push(d);
        }
    }

    fn end(&mut self, cx: &mut Contexts) {
        self.compressing = false;
        self.park(cx);
    }

    /// The connection ends: the compressor goes back.
    pub fn release(&mut self, cx: &mut Contexts) {
        self.end(cx);
    }
}

#[cfg(test)]
mod tests;
