//! Incremental UTF-8 validation of text messages (RFC 6455 §8.1), failing fast.
//!
//! A text message arrives in frames and reads, cut at arbitrary bytes. This module owns the
//! small state that survives a cut (at most the first three bytes of a code point) and the rule
//! that an invalid message is rejected as soon as its bytes can no longer be the prefix of valid
//! UTF-8, not when the message ends. It also owns [`split_complete`], which tells the sender side
//! where it can cut outgoing text without splitting a code point.
//!
//! The bulk of the work is `core::str::from_utf8`: its `Utf8Error::error_len()` is `None` only
//! when the input ends inside a code point whose bytes so far are a valid prefix (it checks the
//! second byte against the lead byte, so `F4 90`, `E0 80` and `ED A0` are rejected at once).
//! Nothing here allocates.

/// RFC 3629 §4: a code point is at most 4 bytes, so a pending prefix is at most 3.
const MAX_CARRY: usize = 3;

/// The bytes are not, and cannot become, valid UTF-8 (RFC 3629; RFC 6455 §8.1: the endpoint
/// _Fails the WebSocket Connection_, close code 1007).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl core::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

/// Validates one message fed in chunks of any size, carrying a split code point between chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// The first bytes of a code point cut by the end of the previous chunk.
    carry: [u8; MAX_CARRY],
    /// How many bytes of `carry` are in use (0 when no code point is pending).
    len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    #[must_use]
    pub const fn new() -> Self {
        Self { carry: [0; MAX_CARRY], len: 0 }
    }

    /// Validates the next chunk of a message.
    ///
    /// Fails as soon as the bytes seen so far cannot be the prefix of valid UTF-8 (e.g.
    /// `F4 90`, overlongs such as `C0 AF` or `E0 80`, surrogates `ED A0`..), even if the chunk
    /// ends right after the bad byte.
    ///
    /// # Errors
    /// [`Utf8Error`] when the message is invalid. The validator's state is then meaningless;
    /// the caller fails the connection (RFC 6455 §8.1) and [`reset`](Self::reset)s it before any
    /// reuse.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        let rest = self.finish_pending(bytes)?;
        if self.len != 0 {
            // `bytes` was too short to complete the pending code point: it is all carried.
            return Ok(());
        }
        let tail = rest.get(split_complete(rest)?..).unwrap_or_default();
        self.carry = [0; MAX_CARRY];
        for (slot, &b) in self.carry.iter_mut().zip(tail) {
            *slot = b;
        }
        // `split_complete` leaves at most 3 bytes (RFC 3629 §4), so this always fits.
        self.len = u8::try_from(tail.len().min(MAX_CARRY)).unwrap_or(0);
        Ok(())
    }

    /// True when no partial code point is pending (the message may end here).
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.len == 0
    }

    /// Forgets any pending bytes: ready for the next message.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Feeds the front of `bytes` to the pending code point, if any. Returns what is left of
    /// `bytes` once the pending code point is complete; when `bytes` was too short to complete
    /// it, the new bytes are carried too and the returned slice is empty.
    fn finish_pending<'b>(&mut self, bytes: &'b [u8]) -> Result<&'b [u8], Utf8Error> {
        let have = usize::from(self.len);
        if have == 0 {
            return Ok(bytes);
        }
        let [lead, ..] = self.carry;
        // RFC 3629 §4 (UTF8-2/3/4): the lead byte gives the length. The carry only ever holds
        // a prefix that `from_utf8` accepted, so the lead is one of these.
        let total: usize = match lead {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Err(Utf8Error),
        };
        let take = total.saturating_sub(have).min(bytes.len());
        let (front, rest) = bytes.split_at_checked(take).ok_or(Utf8Error)?;
        let mut point = [0u8; 4];
        let pending = self.carry.get(..have).ok_or(Utf8Error)?;
        for (slot, &b) in point.iter_mut().zip(pending.iter().chain(front)) {
            *slot = b;
        }
        let point = point.get(..have + take).ok_or(Utf8Error)?;
        match core::str::from_utf8(point) {
            Ok(_) => {
                self.len = 0;
                Ok(rest)
            }
            Err(e) if e.error_len().is_none() => {
                // Still a valid prefix: `bytes` is used up, carry it along.
                for (slot, &b) in self.carry.iter_mut().zip(point) {
                    *slot = b;
                }
                self.len = u8::try_from(point.len().min(MAX_CARRY)).unwrap_or(0);
                Ok(&[])
            }
            Err(_) => Err(Utf8Error),
        }
    }
}

/// Finds where outgoing data can be cut into a text frame.
///
/// Returns `Ok(n)` where `bytes[..n]` is valid UTF-8 and `bytes[n..]` (0 to 3 bytes) is a valid
/// but incomplete code point prefix, to be sent with the next data.
///
/// # Errors
/// [`Utf8Error`] if the bytes are invalid anywhere else (including a tail that can never
/// complete, such as `F4 90`).
pub fn split_complete(bytes: &[u8]) -> Result<usize, Utf8Error> {
    match core::str::from_utf8(bytes) {
        Ok(_) => Ok(bytes.len()),
        // `error_len() == None`: "the end of the input was reached unexpectedly", i.e. the tail
        // is the valid start of a code point.
        Err(e) if e.error_len().is_none() => Ok(e.valid_up_to()),
        Err(_) => Err(Utf8Error),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, clippy::expect_used)]
    use super::*;

    /// Strings with 1-, 2-, 3- and 4-byte code points, mixed.
    const GOOD: &[&str] = &[
        "",
        "hello",
        "é",
        "café",
        "€",
        "a€b",
        "𝄞",
        "x𝄞y",
        "κόσμε",
        "Hello-µ@ßöäüàá-UTF-8!!",
        "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
        "\u{d7ff}\u{e000}\u{fffd}",
    ];

    /// Feeds `bytes` in chunks of `step`; returns the index of the chunk that failed.
    fn feed_in_steps(bytes: &[u8], step: usize) -> Result<Utf8Validator, usize> {
        let mut v = Utf8Validator::new();
        for (i, chunk) in bytes.chunks(step).enumerate() {
            v.feed(chunk).map_err(|_| i)?;
        }
        Ok(v)
    }

    #[test]
    fn whole_valid_strings_pass() {
        for s in GOOD {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(s.as_bytes()), Ok(()), "{s:?}");
            assert!(v.is_complete(), "{s:?}");
        }
    }

    #[test]
    fn valid_strings_pass_byte_by_byte_and_in_pairs_and_triples() {
        for s in GOOD {
            for step in 1..=5 {
                let v = feed_in_steps(s.as_bytes(), step).unwrap();
                assert!(v.is_complete(), "{s:?} step {step}");
            }
        }
    }

    #[test]
    fn every_split_point_of_every_string() {
        for s in GOOD {
            let b = s.as_bytes();
            for cut in 0..=b.len() {
                let mut v = Utf8Validator::new();
                v.feed(&b[..cut]).unwrap();
                // Pending exactly when the cut is inside a code point.
                assert_eq!(v.is_complete(), s.is_char_boundary(cut), "{s:?} cut {cut}");
                v.feed(&b[cut..]).unwrap();
                assert!(v.is_complete(), "{s:?} cut {cut}");
            }
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        let s = "a€𝄞é".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                let mut v = Utf8Validator::new();
                v.feed(&s[..i]).unwrap();
                v.feed(&s[i..j]).unwrap();
                v.feed(&s[j..]).unwrap();
                assert!(v.is_complete(), "cuts {i} {j}");
            }
        }
    }

    #[test]
    fn empty_chunks_change_nothing() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xf0, 0x9d]).unwrap();
        v.feed(&[]).unwrap();
        assert!(!v.is_complete());
        v.feed(&[0x84]).unwrap();
        v.feed(&[]).unwrap();
        v.feed(&[0x9e]).unwrap();
        assert!(v.is_complete());
    }

    /// Autobahn 6.x style sequences and the index of the first byte that makes them invalid.
    const BAD: &[(&[u8], usize)] = &[
        (&[0xc0, 0xaf], 0),             // overlong '/', C0 is never a lead byte
        (&[0xc1, 0xbf], 0),             // overlong, C1 is never a lead byte
        (&[0xe0, 0x80, 0xaf], 1),       // overlong 3-byte
        (&[0xe0, 0x9f, 0xbf], 1),       // overlong 3-byte, highest
        (&[0xf0, 0x80, 0x80, 0xaf], 1), // overlong 4-byte
        (&[0xf0, 0x8f, 0xbf, 0xbf], 1), // overlong 4-byte, highest
        (&[0xed, 0xa0, 0x80], 1),       // U+D800, a surrogate
        (&[0xed, 0xbf, 0xbf], 1),       // U+DFFF, a surrogate
        (&[0xf4, 0x90, 0x80, 0x80], 1), // U+110000, beyond Unicode
        (&[0xf5, 0x80, 0x80, 0x80], 0), // F5 is never a lead byte
        (&[0x80], 0),                   // lone continuation
        (&[0xbf], 0),                   // lone continuation
        (&[0xfe], 0),                   // never in UTF-8
        (&[0xff], 0),                   // never in UTF-8
        (&[0xc3, 0x28], 1),             // lead without continuation
        (&[0xe2, 0x82, 0x28], 2),       // 3-byte cut short
        (&[0xf0, 0x9d, 0x84, 0x28], 3), // 4-byte cut short
        (b"ab\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 14), // Autobahn 6.3.1
    ];

    #[test]
    fn invalid_sequences_fail_at_the_earliest_byte() {
        for &(bytes, bad_at) in BAD {
            // Byte by byte: the failing chunk is the bad byte itself.
            assert_eq!(feed_in_steps(bytes, 1).err(), Some(bad_at), "{bytes:02x?}");
            // Cut right after the bad byte: fails without seeing more.
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&bytes[..=bad_at]), Err(Utf8Error), "{bytes:02x?}");
            // Cut right before it: still a valid prefix.
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&bytes[..bad_at]), Ok(()), "{bytes:02x?}");
            // Split everywhere else, the whole input still fails.
            for cut in 0..=bytes.len() {
                let mut v = Utf8Validator::new();
                let r = v.feed(&bytes[..cut]).and_then(|()| v.feed(&bytes[cut..]));
                assert_eq!(r, Err(Utf8Error), "{bytes:02x?} cut {cut}");
            }
            assert_eq!(split_complete(bytes), Err(Utf8Error), "{bytes:02x?}");
        }
    }

    #[test]
    fn f4_90_fails_at_once_while_f4_8f_is_pending() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf4, 0x90]), Err(Utf8Error));
        let mut v = Utf8Validator::new();
        v.feed(&[0xf4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));

        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf4, 0x8f]), Ok(()));
        assert!(!v.is_complete());
        v.feed(&[0xbf]).unwrap();
        assert!(!v.is_complete());
        v.feed(&[0xbf]).unwrap(); // U+10FFFF
        assert!(v.is_complete());
    }

    #[test]
    fn pending_code_point_then_invalid_or_ascii() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert_eq!(v.feed(b"A"), Err(Utf8Error));
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2]).unwrap();
        assert_eq!(v.feed(&[0x82, 0xac, b'A', 0xc3]), Ok(()));
        assert!(!v.is_complete());
        assert_eq!(v.feed(&[0xa9, 0xff]), Err(Utf8Error));
    }

    #[test]
    fn incomplete_at_message_end_is_visible() {
        let mut v = Utf8Validator::new();
        v.feed(b"caf\xc3").unwrap();
        assert!(!v.is_complete());
        v.reset();
        assert!(v.is_complete());
        assert_eq!(v, Utf8Validator::default());
        v.feed(b"ok").unwrap();
        assert!(v.is_complete());
    }

    #[test]
    fn reset_after_error_allows_reuse() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xed, 0xa0]), Err(Utf8Error));
        v.reset();
        v.feed("€".as_bytes()).unwrap();
        assert!(v.is_complete());
    }

    #[test]
    fn split_complete_finds_the_last_boundary() {
        assert_eq!(split_complete(b""), Ok(0));
        assert_eq!(split_complete(b"abc"), Ok(3));
        let s = "a€𝄞".as_bytes(); // 1 + 3 + 4 bytes
        for cut in 0..=s.len() {
            let expect = match cut {
                0 => 0,
                1..=3 => 1,
                4..=7 => 4,
                _ => 8,
            };
            assert_eq!(split_complete(&s[..cut]), Ok(expect), "cut {cut}");
        }
        assert_eq!(split_complete(&[b'x', 0xf4, 0x8f, 0xbf]), Ok(1));
        assert_eq!(split_complete(&[b'x', 0xf4, 0x90]), Err(Utf8Error));
        assert_eq!(split_complete(&[0xc3, b'x', 0xc3]), Err(Utf8Error));
    }

    /// xorshift64: deterministic pseudo-random numbers for the differential test.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// The index of the first byte after which `bytes` can no longer be a UTF-8 prefix.
    fn reference_fail_at(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len())
            .find(|&k| core::str::from_utf8(&bytes[..=k]).is_err_and(|e| e.error_len().is_some()))
    }

    #[test]
    fn differential_against_std_with_random_chunking() {
        // Bytes drawn mostly from the interesting boundaries.
        const POOL: &[u8] = &[
            b'a', 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1,
            0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            let len = (next(&mut seed) % 12) as usize;
            let bytes: std::vec::Vec<u8> =
                (0..len).map(|_| POOL[(next(&mut seed) % POOL.len() as u64) as usize]).collect();
            let fail_at = reference_fail_at(&bytes);
            let mut v = Utf8Validator::new();
            let mut at = 0;
            let mut failed_chunk_end = None;
            while at < bytes.len() {
                let step = 1 + (next(&mut seed) % 4) as usize;
                let end = (at + step).min(bytes.len());
                if v.feed(&bytes[at..end]).is_err() {
                    failed_chunk_end = Some((at, end));
                    break;
                }
                at = end;
            }
            match (fail_at, failed_chunk_end) {
                (None, None) => {
                    let complete = core::str::from_utf8(&bytes).is_ok();
                    assert_eq!(v.is_complete(), complete, "{bytes:02x?}");
                    let n = split_complete(&bytes).unwrap();
                    assert!(bytes.len() - n <= 3, "{bytes:02x?}");
                    assert!(core::str::from_utf8(&bytes[..n]).is_ok(), "{bytes:02x?}");
                }
                (Some(k), Some((start, end))) => {
                    assert!(
                        start <= k && k < end,
                        "{bytes:02x?} fail at {k}, chunk {start}..{end}"
                    );
                    assert_eq!(split_complete(&bytes), Err(Utf8Error), "{bytes:02x?}");
                }
                other => panic!("{bytes:02x?}: reference vs validator {other:?}"),
            }
        }
    }

    #[test]
    fn error_displays() {
        assert_eq!(Utf8Error.to_string(), "invalid UTF-8");
    }
}
