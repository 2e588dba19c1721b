//! Raw DEFLATE streams (RFC 1951, no zlib header), zlib-rs behind the few calls
//! permessage-deflate needs.
//!
//! Both kinds of stream allocate once, when made (at start-up, see
//! [`crate::relay::compress::Contexts`]); [`Deflater::reset`] and [`Inflater::reset`] reuse
//! that memory.

use zlib_rs::{
    Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Method, Status, Strategy,
};

/// The largest window, in bits (32 KiB). Every inflater has it: zlib-rs allocates it whatever
/// the window asked for, and it reads streams made with any smaller one.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window zlib's deflate makes (512 bytes).
pub const MIN_WINDOW_BITS: u8 = 9;

/// The input is not DEFLATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidData;

impl core::fmt::Display for InvalidData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("invalid deflate data")
    }
}

/// A raw DEFLATE compressor.
pub struct Deflater {
    z: Deflate,
}

impl core::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Deflater {
    /// A compressor at `level` (clamped to 1..=9) with a window of `window_bits` (clamped to
    /// 9..=15) and zlib's `mem_level` (clamped to 1..=9: the size of its symbol buffer, so of
    /// a block).
    #[must_use]
    pub fn new(level: u8, window_bits: u8, mem_level: u8) -> Self {
        Self::with_strategy(level, window_bits, mem_level, Strategy::Default)
    }

    /// A compressor that only entropy-codes (Huffman, no LZ77 matches): its output reaches
    /// back into no window at all, so any peer reads it, whatever window it asked for.
    #[must_use]
    pub fn literal_only(level: u8, mem_level: u8) -> Self {
        Self::with_strategy(level, MAX_WINDOW_BITS, mem_level, Strategy::HuffmanOnly)
    }

    fn with_strategy(level: u8, window_bits: u8, mem_level: u8, strategy: Strategy) -> Self {
        // Clamped: zlib-rs asserts (panics) on values out of range.
        let config = DeflateConfig {
            level: i32::from(level.clamp(1, 9)),
            method: Method::Deflated,
            window_bits: -i32::from(window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)),
            mem_level: i32::from(mem_level.clamp(1, 9)),
            strategy,
        };
        Self { z: Deflate::new_with_config(config) }
    }

    /// Starts a new stream (the next message, under no context takeover).
    pub fn reset(&mut self) {
        self.z.reset();
    }

    /// Compresses all of `input` into `out` and, with `sync`, flushes to a byte boundary
    /// (ending with the empty stored block `00 00 ff ff`). Returns the bytes written; `None`
    /// when `out` was too small (see [`bound`]) or the stream is broken.
    pub fn compress(&mut self, input: &[u8], out: &mut [u8], sync: bool) -> Option<usize> {
        let flush = if sync { DeflateFlush::SyncFlush } else { DeflateFlush::NoFlush };
        let (in0, out0) = (self.z.total_in(), self.z.total_out());
        let status = self.z.compress(input, out, flush).ok()?;
        let taken = usize::try_from(self.z.total_in() - in0).ok()?;
        let written = usize::try_from(self.z.total_out() - out0).ok()?;
        // All input taken and room left over: the flush, if any, is complete.
        (status != Status::StreamEnd && taken == input.len() && written < out.len())
            .then_some(written)
    }
}

/// The most bytes [`Deflater::compress`] writes for `len` input bytes with a sync flush, for
/// any window and memory level (zlib's conservative `deflateBound`, plus the flush's empty
/// stored block and a partial byte), plus one so that a complete flush always leaves room.
#[must_use]
pub const fn bound(len: usize) -> usize {
    len + len.div_ceil(8) + len.div_ceil(64) + 5 + 6 + 1 + 1
}

/// Writes `data` as stored (uncompressed) DEFLATE blocks into `out`, as [`Deflater::compress`]
/// with a sync flush would place them in a stream: byte-aligned, and at `fin` followed by the
/// start of the empty stored block whose rest is the tail the receiver puts back. Returns the
/// bytes written; `out` must hold [`bound`]`(data.len())` bytes (anything shorter is cut).
#[must_use]
pub fn stored(data: &[u8], fin: bool, out: &mut [u8]) -> usize {
    let mut n = 0;
    let mut put = |bytes: &[u8], n: &mut usize| {
        if let Some(dst) = out.get_mut(*n..*n + bytes.len()) {
            dst.copy_from_slice(bytes);
            *n += bytes.len();
        }
    };
    for block in data.chunks(usize::from(u16::MAX)) {
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX).to_le_bytes();
        let nlen = (!u16::from_le_bytes(len)).to_le_bytes();
        // BFINAL 0, BTYPE 00 (stored), padded to the byte; then LEN and its complement.
        put(&[0, len[0], len[1], nlen[0], nlen[1]], &mut n);
        put(block, &mut n);
    }
    if fin {
        put(&[0], &mut n);
    }
    n
}

/// The most input bytes whose compressed form fits in `room` bytes (the inverse of
/// [`bound`], rounded down).
#[must_use]
pub const fn max_input(room: usize) -> usize {
    // bound(n) is about n * 73 / 64 + 13: start just below, then step to the exact answer.
    let mut n = room.saturating_sub(14) / 73 * 64;
    while n > 0 && bound(n) > room {
        n -= 1;
    }
    while bound(n + 1) <= room {
        n += 1;
    }
    n
}

/// A raw DEFLATE decompressor with a 32 KiB window (it reads streams of any window).
pub struct Inflater {
    z: Inflate,
    /// The stream's final block has ended; nothing more is read until a reset.
    ended: bool,
}

impl core::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Inflater(ended {})", self.ended)
    }
}

/// What one [`Inflater::inflate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflated {
    /// Input bytes used.
    pub consumed: usize,
    /// Output bytes written.
    pub produced: usize,
    /// The final block (BFINAL) has ended.
    pub ended: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A decompressor.
    #[must_use]
    pub fn new() -> Self {
        Self { z: Inflate::new(false, MAX_WINDOW_BITS), ended: false }
    }

    /// Forgets the window: the next input starts a new stream.
    pub fn reset(&mut self) {
        self.ended = false;
        self.z.reset(false);
    }

    /// Decompresses from `input` into `out` as far as either goes. Once the final block has
    /// ended, nothing more is read.
    ///
    /// # Errors
    /// The input is not DEFLATE.
    pub fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<Inflated, InvalidData> {
        if self.ended || (input.is_empty() && out.is_empty()) {
            return Ok(Inflated { consumed: 0, produced: 0, ended: self.ended });
        }
        let (in0, out0) = (self.z.total_in(), self.z.total_out());
        let status =
            self.z.decompress(input, out, InflateFlush::NoFlush).map_err(|_| InvalidData)?;
        let consumed = usize::try_from(self.z.total_in() - in0).map_err(|_| InvalidData)?;
        let produced = usize::try_from(self.z.total_out() - out0).map_err(|_| InvalidData)?;
        self.ended = status == Status::StreamEnd;
        Ok(Inflated { consumed, produced, ended: self.ended })
    }
}

/// `len` bytes of xorshift output from `seed`: they barely compress (tests only).
#[cfg(test)]
pub(crate) fn noise(len: usize, mut seed: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed.to_le_bytes()[0]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn json(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let mut i = 0u32;
        while v.len() < n {
            v.extend_from_slice(
                format!(
                    "{{\"if\":\"eth{}\",\"rx\":{},\"tx\":{},\"up\":true}},",
                    i % 4,
                    i * 7919,
                    i * 104729
                )
                .as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn roundtrip(level: u8, window: u8, data: &[u8]) -> usize {
        let mut d = Deflater::new(level, window, 4);
        let mut z = vec![0u8; bound(data.len())];
        let n = d.compress(data, &mut z, true).unwrap();
        assert_eq!(&z[n - 4..n], &[0, 0, 0xff, 0xff], "a sync flush ends with the empty block");
        let mut inf = Inflater::new();
        let mut out = vec![0u8; data.len() + 1];
        let r = inf.inflate(&z[..n], &mut out).unwrap();
        assert_eq!(r.consumed, n);
        assert_eq!(&out[..r.produced], data);
        n
    }

    #[test]
    fn round_trips_at_every_window_and_level() {
        let data = json(20_000);
        for window in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
            for level in [1, 6, 9] {
                let n = roundtrip(level, window, &data);
                assert!(n < data.len() / 2, "JSON compresses: {n} of {}", data.len());
            }
        }
    }

    #[test]
    fn literal_only_compresses_less_but_still_compresses() {
        let data = json(20_000);
        let mut lit = Deflater::literal_only(6, 4);
        let mut z = vec![0u8; bound(data.len())];
        let n = lit.compress(&data, &mut z, true).unwrap();
        let full = roundtrip(6, 15, &data);
        assert!(full < n && n < data.len() * 3 / 4, "{full} < {n} < {}", data.len());
        let mut inf = Inflater::new();
        let mut out = vec![0u8; data.len()];
        let r = inf.inflate(&z[..n], &mut out).unwrap();
        assert_eq!(&out[..r.produced], &data[..]);
    }

    #[test]
    fn stored_blocks_inflate_with_the_tail_put_back() {
        for len in [0, 1, 1000, 65_535, 65_536, 140_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut z = vec![0u8; bound(len)];
            let (a, b) = data.split_at(len / 3);
            let n = stored(a, false, &mut z);
            let m = stored(b, true, &mut z[n..]);
            let mut wire = z[..n + m].to_vec();
            wire.extend_from_slice(&super::super::TAIL);
            let mut inf = Inflater::new();
            let mut out = vec![0u8; len + 1];
            let r = inf.inflate(&wire, &mut out).unwrap();
            assert_eq!((r.consumed, &out[..r.produced]), (wire.len(), &data[..]), "{len}");
            assert!(n <= bound(a.len()) && m <= bound(b.len()));
        }
    }

    #[test]
    fn bound_holds_for_incompressible_input() {
        let data = noise(70_000, 0x1234_5678);
        for window in [9, 15] {
            for mem in [1, 4, 9] {
                let mut d = Deflater::new(6, window, mem);
                for len in [0, 1, 100, 4096, 16_000, 70_000] {
                    let mut z = vec![0u8; bound(len)];
                    assert!(d.compress(&data[..len], &mut z, true).is_some(), "{len}");
                }
            }
        }
        for room in [0, 12, 13, 100, 16_384] {
            let n = max_input(room);
            if room < bound(0) {
                assert_eq!(n, 0);
            } else {
                assert!(bound(n) <= room && bound(n + 1) > room, "{room}: {n}");
            }
        }
    }

    #[test]
    fn streams_through_small_output_and_reports_errors() {
        let data = json(50_000);
        let mut d = Deflater::new(6, 15, 4);
        let mut z = vec![0u8; bound(data.len())];
        let n = d.compress(&data, &mut z, true).unwrap();
        let mut inf = Inflater::new();
        let (mut at, mut out) = (0, Vec::new());
        let mut chunk = [0u8; 333];
        loop {
            let r = inf.inflate(&z[at..n], &mut chunk).unwrap();
            at += r.consumed;
            out.extend_from_slice(&chunk[..r.produced]);
            if r.produced < chunk.len() && at == n {
                break;
            }
        }
        assert_eq!(out, data);
        // Too small an output for a sync flush: refused, not truncated.
        d.reset();
        assert_eq!(d.compress(&data, &mut [0u8; 100], true), None);
        // Not DEFLATE: block type 3 is reserved.
        inf.reset();
        assert_eq!(inf.inflate(&[0xff, 0xff, 0xff], &mut chunk), Err(InvalidData));
        // BFINAL: the stream ends, and nothing more is read.
        inf.reset();
        let r = inf.inflate(&[0x03, 0x00, 0xaa], &mut chunk).unwrap();
        assert!(r.ended);
        assert_eq!((r.consumed, r.produced), (2, 0));
        assert_eq!(inf.inflate(&[0xaa], &mut chunk).unwrap().consumed, 0);
    }
}
