//! Client-to-server masking (RFC 6455 §5.3): `transformed[i] = original[i] ^ key[i % 4]`.
//!
//! Eight bytes at a time: the key, rotated to the payload offset and repeated twice, is XORed
//! into each 8-byte chunk as a native-endian `u64`. Chunk and key are read with the same byte
//! order, and XOR works bit by bit, so the result is byte for byte that of the definition on
//! any CPU (big-endian MIPS included), and `from_ne_bytes` copies, so alignment does not
//! matter. Measured with `scripts/bench.py` (100 connections, 4 KiB messages): the byte-wise
//! loop it replaces was 41 % of the gateway's CPU (see docs/performance.md).

/// Unmasks (or masks) `data` in place. `offset` is the position of `data[0]` within the frame's
/// payload, so a payload that arrives in pieces is unmasked piece by piece.
pub fn apply(key: [u8; 4], offset: u64, data: &mut [u8]) {
    let start = (offset % 4) as usize;
    let mut k = key;
    k.rotate_left(start);
    let [a, b, c, d] = k;
    let k8 = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(w) = <&mut [u8; 8]>::try_from(chunk) {
            *w = (u64::from_ne_bytes(*w) ^ k8).to_ne_bytes();
        }
    }
    // Fewer than 8 bytes left, starting at key phase 0 (8 is a multiple of 4).
    for (byte, m) in chunks.into_remainder().iter_mut().zip(k.iter().cycle()) {
        *byte ^= m;
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn rfc_hello() {
        // RFC 6455 §5.7.
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply([0x37, 0xfa, 0x21, 0x3d], 0, &mut p);
        assert_eq!(&p, b"Hello");
    }

    /// The definition, byte by byte.
    fn reference(key: [u8; 4], offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[((offset + i as u64) % 4) as usize];
        }
    }

    #[test]
    fn equals_the_definition_at_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let orig: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        for len in 0..orig.len() {
            for offset in 0..8u64 {
                let mut got = orig[..len].to_vec();
                let mut want = got.clone();
                apply(key, offset, &mut got);
                reference(key, offset, &mut want);
                assert_eq!(got, want, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 0xfe];
        let orig: Vec<u8> = (0..=255u8).collect();
        let mut whole = orig.clone();
        apply(key, 0, &mut whole);
        for split in 0..orig.len() {
            let mut parts = orig.clone();
            let (a, b) = parts.split_at_mut(split);
            apply(key, 0, a);
            apply(key, split as u64, b);
            assert_eq!(parts, whole, "split {split}");
        }
    }
}
