//! Client-to-server masking (RFC 6455 §5.3): `transformed[i] = original[i] ^ key[i % 4]`.
//!
//! Byte-wise over the key, so the result does not depend on the CPU's byte order or alignment
//! (big-endian MIPS included). Word-at-a-time variants are a later optimisation, measured first.

/// Unmasks (or masks) `data` in place. `offset` is the position of `data[0]` within the frame's
/// payload, so a payload that arrives in pieces is unmasked piece by piece.
pub fn apply(key: [u8; 4], offset: u64, data: &mut [u8]) {
    let start = (offset % 4) as usize;
    let mut k = key;
    k.rotate_left(start);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        for (b, m) in c.iter_mut().zip(k) {
            *b ^= m;
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(k) {
        *b ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_hello() {
        // RFC 6455 §5.7.
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply([0x37, 0xfa, 0x21, 0x3d], 0, &mut p);
        assert_eq!(&p, b"Hello");
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
