//! permessage-deflate (RFC 7692): the offer a client makes in `Sec-WebSocket-Extensions`, the
//! answer the gateway gives, and the raw DEFLATE streams ([`zstream`]) that compress messages.
//!
//! The answer bounds the gateway's memory, whatever the client offered:
//! * `server_no_context_takeover` always (§7.1.1.1 lets the server add it): each message to
//!   the client is compressed on its own, so a compressor is needed only while one is being
//!   sent, and the compressors are a small pool shared by every connection;
//! * `client_no_context_takeover` always (§7.1.1.2 lets the server add it): likewise, the
//!   client's messages are inflated one at a time, each from a fresh window;
//! * `server_max_window_bits` when the configured window is below 15 (§7.1.2.1 lets the server
//!   add it), or the client's value when it asked for less (8 included): such a client's
//!   messages are entropy-coded only, with no LZ77 matches, so they reach into no window (a
//!   second size of compressor for each window would cost memory, and zlib's small windows
//!   are slow: each slide walks its whole hash table);
//! * never `client_max_window_bits`: the decompressor has a 32 KiB window, so it reads any
//!   stream, and the parameter may only be answered when offered (§7.1.2.2).
//!
//! An offer the gateway cannot accept (an unknown or repeated parameter, a bad value) is
//! declined and the next one considered (§5.1); a header that is not an extension list at all
//! is a bad request.

pub mod zstream;

use core::fmt::Write as _;

use zstream::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// The extension's name.
pub const NAME: &str = "permessage-deflate";

/// The 4 bytes a sender strips from the end of each compressed message and a receiver puts
/// back before inflating (§7.2.1, §7.2.2): the end of an empty stored block.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What the configuration allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The compressor's window, in bits (9..=15).
    pub window_bits: u8,
}

/// What was agreed with a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// The window the gateway's compressor may use, in bits (8..=15).
    pub server_window_bits: u8,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101.
    #[must_use]
    pub fn response(&self) -> heapless::String<128> {
        let mut s = heapless::String::new();
        let _ = s.push_str(NAME);
        let _ = s.push_str("; server_no_context_takeover; client_no_context_takeover");
        if self.server_window_bits < MAX_WINDOW_BITS {
            let _ = write!(s, "; server_max_window_bits={}", self.server_window_bits);
        }
        s
    }
}

/// `Sec-WebSocket-Extensions` does not follow RFC 6455 §9.1's grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedExtensions;

impl core::fmt::Display for MalformedExtensions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("malformed Sec-WebSocket-Extensions")
    }
}

/// Chooses the first permessage-deflate offer that `policy` can honour among the values of
/// every `Sec-WebSocket-Extensions` header (`headers`, in order). `Ok(None)`: no offer, or
/// none acceptable, so the connection goes uncompressed.
///
/// # Errors
/// [`MalformedExtensions`] when a header is not an extension list.
pub fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
    policy: Policy,
) -> Result<Option<Agreement>, MalformedExtensions> {
    let mut chosen = None;
    for value in headers {
        let mut p = Parser { s: value, at: 0 };
        // 1#extension: elements separated by commas; empty elements are allowed (RFC 7230 §7).
        loop {
            p.ows();
            if p.eat(b',') {
                continue;
            }
            if p.done() {
                break;
            }
            let name = p.token().ok_or(MalformedExtensions)?;
            let mut offer = Offer::default();
            let ours = name.eq_ignore_ascii_case(NAME.as_bytes());
            loop {
                p.ows();
                if !p.eat(b';') {
                    break;
                }
                p.ows();
                let param = p.token().ok_or(MalformedExtensions)?;
                p.ows();
                let value = if p.eat(b'=') {
                    p.ows();
                    Some(p.value().ok_or(MalformedExtensions)?)
                } else {
                    None
                };
                if ours {
                    offer.param(param, value);
                }
            }
            p.ows();
            if !p.done() && !p.eat(b',') {
                return Err(MalformedExtensions);
            }
            if ours && chosen.is_none() {
                chosen = offer.accept(policy);
            }
        }
    }
    Ok(chosen)
}

/// One permessage-deflate offer's parameters (§7.1).
#[derive(Clone, Copy, Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// Asked for, with its value.
    server_max_window_bits: Option<u8>,
    client_max_window_bits: bool,
    /// Unknown, repeated or badly valued: the offer must be declined (§5.1).
    invalid: bool,
}

impl Offer {
    fn param(&mut self, name: &[u8], value: Option<Token>) {
        let seen = match name {
            b"server_no_context_takeover" => {
                self.invalid |= value.is_some();
                core::mem::replace(&mut self.server_no_context_takeover, true)
            }
            b"client_no_context_takeover" => {
                self.invalid |= value.is_some();
                core::mem::replace(&mut self.client_no_context_takeover, true)
            }
            b"server_max_window_bits" => {
                // A value is required (§7.1.2.1).
                let bits = value.and_then(window_bits);
                self.invalid |= bits.is_none();
                self.server_max_window_bits.replace(bits.unwrap_or(0)).is_some()
            }
            b"client_max_window_bits" => {
                // The value is optional (§7.1.2.2).
                self.invalid |= value.is_some_and(|v| window_bits(v).is_none());
                core::mem::replace(&mut self.client_max_window_bits, true)
            }
            _ => {
                self.invalid = true;
                false
            }
        };
        self.invalid |= seen;
    }

    fn accept(&self, policy: Policy) -> Option<Agreement> {
        if self.invalid {
            return None;
        }
        let ours = policy.window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        let asked = self.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
        Some(Agreement { server_window_bits: asked.min(ours) })
    }
}

/// A parameter's value: a token, or a quoted string whose content is a token (RFC 6455
/// §9.1), unescaped into a small fixed buffer.
type Token = heapless::Vec<u8, 16>;

/// `8`..`15`, in decimal without a leading zero (§7.1.2).
fn window_bits(v: Token) -> Option<u8> {
    let n = match v.as_slice() {
        [d @ b'8'..=b'9'] => d - b'0',
        [b'1', d @ b'0'..=b'5'] => 10 + (d - b'0'),
        _ => return None,
    };
    Some(n)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.at += usize::from(hit);
        hit
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        self.s.get(start..self.at).filter(|t| !t.is_empty())
    }

    fn value(&mut self) -> Option<Token> {
        if !self.eat(b'"') {
            return self.token().map(|t| Token::from_slice(t).unwrap_or_default());
        }
        let mut v = Token::new();
        // Longer than any value this extension knows: kept as the empty token, which no
        // parameter accepts, so the offer is declined rather than the request refused.
        let mut long = false;
        let mut tokenish = true;
        loop {
            let c = match self.peek()? {
                b'"' => {
                    self.at += 1;
                    // The unescaped content must itself be a token.
                    return (tokenish && (long || !v.is_empty())).then(|| {
                        if long {
                            Token::new()
                        } else {
                            v
                        }
                    });
                }
                b'\\' => {
                    self.at += 1;
                    self.peek()?
                }
                c if c == b'\t' || (0x20..0x7f).contains(&c) => c,
                _ => return None,
            };
            self.at += 1;
            tokenish &= is_tchar(c);
            long |= v.push(c).is_err();
        }
    }
}

/// RFC 7230 §3.2.6 tchar.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests;
