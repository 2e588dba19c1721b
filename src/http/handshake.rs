//! The WebSocket opening handshake, server side (RFC 6455 §4.2).
//!
//! This module owns the reading of the client's upgrade request head ([`parse`]), the
//! `Sec-WebSocket-Accept` computation ([`accept_key`]), and the bytes of both possible answers:
//! the 101 ([`write_switching`]) and a complete error response ([`write_error`]). It is
//! sans-IO and allocates nothing: headers are parsed by `httparse` into an array on the stack,
//! the request borrows the caller's buffer, responses are written into the caller's buffer.
//! Base64 (RFC 4648 §4, standard alphabet, padded) is hand-written here.

use heapless::Vec;

/// More request headers than this is answered with 431.
pub const MAX_HEADERS: usize = 32;

/// Most `Sec-WebSocket-Protocol` tokens kept from one request.
pub const MAX_PROTOCOLS: usize = 8;

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// RFC 6455 §4.1: the key is "a randomly selected 16-byte value".
const KEY_LEN: usize = 16;

/// A request head that passed every check of RFC 6455 §4.2.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest<'a> {
    /// The request-target up to `?`, raw (not percent-decoded); starts with `/`.
    pub path: &'a str,
    /// The request-target after `?`, `""` if none.
    pub query: &'a str,
    /// The `Host` header value, trimmed.
    pub host: &'a str,
    /// The `Origin` header value, trimmed, if sent (RFC 6455 §4.2.1 item 7).
    pub origin: Option<&'a str>,
    /// The `Sec-WebSocket-Accept` value for this request's key (base64, ASCII).
    pub accept: [u8; 28],
    /// The `Sec-WebSocket-Protocol` tokens, trimmed, in order, from all such headers.
    pub protocols: Vec<&'a str, MAX_PROTOCOLS>,
}

/// The rule an upgrade request breaks. [`HandshakeError::status`] gives the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not an HTTP/1.x request head (`httparse` refused it).
    Malformed,
    /// More than [`MAX_HEADERS`] headers, or (reported by the caller) a head that does not fit
    /// its buffer.
    HeadersTooLarge,
    /// The request-target is not in origin-form (RFC 7230 §5.3.1), e.g. absolute-form or `*`.
    BadTarget,
    /// The method is not `GET` (RFC 6455 §4.1 item 2).
    MethodNotAllowed,
    /// Not HTTP/1.1 (RFC 6455 §4.1 item 2).
    HttpVersion,
    /// `Host` missing, duplicated, empty or not UTF-8 (RFC 6455 §4.2.1 item 2).
    MissingHost,
    /// No `Upgrade: websocket` or no `Connection: upgrade` (RFC 6455 §4.2.1 items 3, 4).
    NotUpgrade,
    /// `Sec-WebSocket-Key` missing, duplicated, or not the base64 of 16 bytes (§4.2.1 item 5).
    BadKey,
    /// `Sec-WebSocket-Version` missing, duplicated, or not `13` (RFC 6455 §4.2.1 item 6).
    UnsupportedVersion,
    /// `Sec-WebSocket-Protocol` has an element that is not a token (RFC 6455 §4.1 item 10), or
    /// more than [`MAX_PROTOCOLS`] of them.
    BadProtocol,
    /// `Origin` duplicated or not UTF-8 (RFC 6454 §7.3: at most one `Origin` header).
    BadOrigin,
    /// `Content-Length` other than 0, or `Transfer-Encoding`: the bytes after the head would
    /// be read as WebSocket frames.
    UnexpectedBody,
}

impl HandshakeError {
    /// The HTTP status that answers this error: 405 (Method Not Allowed), 426 (Upgrade
    /// Required, RFC 6455 §4.2.2), 431 (Request Header Fields Too Large), 400 for the rest.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed => 405,
            Self::UnsupportedVersion => 426,
            Self::HeadersTooLarge => 431,
            Self::Malformed
            | Self::BadTarget
            | Self::HttpVersion
            | Self::MissingHost
            | Self::NotUpgrade
            | Self::BadKey
            | Self::BadProtocol
            | Self::BadOrigin
            | Self::UnexpectedBody => 400,
        }
    }
}

impl core::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed HTTP request",
            Self::HeadersTooLarge => "request head too large",
            Self::BadTarget => "request-target is not an absolute path",
            Self::MethodNotAllowed => "method is not GET",
            Self::HttpVersion => "HTTP version is not 1.1",
            Self::MissingHost => "missing or bad Host",
            Self::NotUpgrade => "not a WebSocket upgrade",
            Self::BadKey => "missing or bad Sec-WebSocket-Key",
            Self::UnsupportedVersion => "Sec-WebSocket-Version is not 13",
            Self::BadProtocol => "bad Sec-WebSocket-Protocol",
            Self::BadOrigin => "duplicated or bad Origin",
            Self::UnexpectedBody => "upgrade request has a body",
        })
    }
}

/// A header that must appear at most once.
#[derive(Clone, Copy)]
enum Single<'a> {
    Absent,
    Once(&'a [u8]),
    Duplicated,
}

impl<'a> Single<'a> {
    fn see(&mut self, value: &'a [u8]) {
        *self = match self {
            Self::Absent => Self::Once(value),
            Self::Once(_) | Self::Duplicated => Self::Duplicated,
        };
    }
}

/// RFC 7230 §3.2.3: OWS is spaces and horizontal tabs.
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// The elements of an RFC 7230 §7 `#rule` list, trimmed; empty elements are skipped
/// ("a recipient MUST parse and ignore a reasonable number of empty list elements").
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

/// True when the comma-separated header value contains `token`, compared case-insensitively.
fn list_contains(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// RFC 7230 §3.2.6: `token = 1*tchar`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Calls `f(name, value)` for each header of a complete request head (already accepted by
/// [`parse`]); values are trimmed. Used to copy selected headers into the connection context.
pub fn for_each_header(head: &[u8], mut f: impl FnMut(&str, &[u8])) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = req.parse(head) {
        for h in req.headers.iter() {
            f(h.name, trim_ows(h.value));
        }
    }
}

/// Parses a WebSocket upgrade request head at the front of `buf`.
///
/// Returns the request and the length of its head; bytes after the head (a client that does
/// not wait for the 101) are not part of it. `Ok(None)`: the head is not complete yet (the
/// caller reads more; if its buffer is full it answers 431).
///
/// Checks run in this order so that the most specific answer wins: request-target, method,
/// HTTP version, `Host`, `Upgrade`/`Connection`, `Sec-WebSocket-Key`,
/// `Sec-WebSocket-Version`, `Sec-WebSocket-Protocol`, `Origin`, body.
///
/// # Errors
/// [`HandshakeError`] names the first broken rule; its [`status`](HandshakeError::status) is
/// the answer.
pub fn parse(buf: &[u8]) -> Result<Option<(UpgradeRequest<'_>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed);
    };

    // RFC 6455 §4.1 item 2 and RFC 7230 §5.3.1: "The request-target ... origin-form"; only a
    // path-absolute names a backend.
    if !target.starts_with('/') {
        return Err(HandshakeError::BadTarget);
    }
    // RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request". Methods are case-sensitive
    // (RFC 7231 §4.1).
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    // httparse only knows HTTP/1.0 and HTTP/1.1 (anything else is `Malformed`).
    if minor != 1 {
        return Err(HandshakeError::HttpVersion);
    }

    let mut host = Single::Absent;
    let mut key = Single::Absent;
    let mut version = Single::Absent;
    let mut origin = Single::Absent;
    let mut upgrade = false;
    let mut connection = false;
    let mut body = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        if name.eq_ignore_ascii_case(b"host") {
            host.see(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // RFC 6455 §4.2.1 item 3: "An |Upgrade| header field containing the value
            // "websocket", treated as an ASCII case-insensitive value."
            upgrade |= list_contains(value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            // RFC 6455 §4.2.1 item 4: "A |Connection| header field that includes the token
            // "Upgrade", treated as an ASCII case-insensitive value."
            connection |= list_contains(value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            key.see(value);
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            version.see(value);
        } else if name.eq_ignore_ascii_case(b"origin") {
            origin.see(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            body |= value != b"0";
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            body = true;
        }
    }

    // RFC 6455 §4.2.1 item 2: "A |Host| header field containing the server's authority."
    let host = match host {
        Single::Once(v) if !v.is_empty() => core::str::from_utf8(v).ok(),
        _ => None,
    }
    .ok_or(HandshakeError::MissingHost)?;

    if !(upgrade && connection) {
        return Err(HandshakeError::NotUpgrade);
    }

    // RFC 6455 §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value
    // that, when decoded, is 16 bytes in length."
    let Single::Once(key) = key else {
        return Err(HandshakeError::BadKey);
    };
    let mut decoded = [0u8; 18]; // 24 base64 characters decode to at most 18 bytes
    if key.len() != 24 || base64_decode(key, &mut decoded) != Some(KEY_LEN) {
        return Err(HandshakeError::BadKey);
    }

    // RFC 6455 §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    // §4.4: otherwise the server answers 426 with the versions it supports.
    if !matches!(version, Single::Once(b"13")) {
        return Err(HandshakeError::UnsupportedVersion);
    }

    // RFC 6455 §4.1 item 10: "|Sec-WebSocket-Protocol| ... one or more comma-separated
    // subprotocol[s] ... each of which MUST be a ... token" (RFC 2616/7230 token). Several
    // headers are one list (RFC 7230 §3.2.2).
    let mut protocols = Vec::new();
    for h in req.headers.iter() {
        if !h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
            continue;
        }
        for element in list_elements(h.value) {
            if !is_token(element) {
                return Err(HandshakeError::BadProtocol);
            }
            // A token is ASCII, so this never fails.
            let token = core::str::from_utf8(element).map_err(|_| HandshakeError::BadProtocol)?;
            protocols.push(token).map_err(|_| HandshakeError::BadProtocol)?;
        }
    }

    // RFC 6454 §7.3: "The user agent MUST NOT include more than one Origin header field in
    // any HTTP request." Two would let an origin check read one and a backend the other.
    let origin = match origin {
        Single::Absent => None,
        Single::Once(v) => Some(core::str::from_utf8(v).map_err(|_| HandshakeError::BadOrigin)?),
        Single::Duplicated => return Err(HandshakeError::BadOrigin),
    };

    // RFC 7230 §3.3: a request has a body iff it sends Content-Length or Transfer-Encoding.
    // After a 101 the next bytes are frames (RFC 6455 §4.2.2), so a body has no place here.
    if body {
        return Err(HandshakeError::UnexpectedBody);
    }

    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = UpgradeRequest { path, query, host, origin, accept: accept_key(key), protocols };
    Ok(Some((request, head_len)))
}

/// Computes `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key` value (as sent,
/// trimmed): `base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))` (RFC 6455 §4.2.2
/// item 5.4). Infallible: [`parse`] is where the key is checked.
#[must_use]
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    let digest = sha.digest().bytes();
    let mut out = [0u8; 28];
    // 20 bytes encode to exactly 28 characters (RFC 4648 §4).
    let _ = base64_encode(&digest, &mut out);
    out
}

/// Writes the 101 answer into `out` and returns its length:
/// `HTTP/1.1 101 Switching Protocols`, `Upgrade: websocket`, `Connection: Upgrade`,
/// `Sec-WebSocket-Accept: <accept>`, and `Sec-WebSocket-Protocol: <protocol>` if given
/// (RFC 6455 §4.2.2 item 5).
///
/// # Errors
/// `None` if it does not fit in `out`, or if `protocol` is not an RFC 7230 token (which would
/// let it inject header lines).
#[must_use]
pub fn write_switching(out: &mut [u8], accept: &[u8; 28], protocol: Option<&str>) -> Option<usize> {
    let mut w = Writer::new(out);
    w.put(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")?;
    w.put(b"Sec-WebSocket-Accept: ")?;
    w.put(accept)?;
    w.put(b"\r\n")?;
    if let Some(p) = protocol {
        if !is_token(p.as_bytes()) {
            return None;
        }
        w.put(b"Sec-WebSocket-Protocol: ")?;
        w.put(p.as_bytes())?;
        w.put(b"\r\n")?;
    }
    w.put(b"\r\n")?;
    Some(w.len)
}

/// Writes a complete error response for `status` into `out` and returns its length.
///
/// The status line carries the standard reason phrase; headers are `Content-Type:
/// text/plain`, `Content-Length`, `Connection: close`, plus `Allow: GET` for 405 (RFC 7231
/// §6.5.5), and `Upgrade: websocket` and `Sec-WebSocket-Version: 13` for 426 (RFC 7231
/// §6.5.15, RFC 6455 §4.4), whose `Connection` is `Upgrade, close` (RFC 7230 §6.7: "When
/// Upgrade is sent, the sender MUST also send a Connection header field ... that contains an
/// "upgrade" connection option"). The body is the reason phrase followed by `\n`.
///
/// # Errors
/// `None` if it does not fit in `out`, or if `status` is not a 4xx or 5xx code.
#[must_use]
pub fn write_error(out: &mut [u8], status: u16) -> Option<usize> {
    if !(400..=599).contains(&status) {
        return None;
    }
    let reason = reason_phrase(status).as_bytes();
    let mut w = Writer::new(out);
    w.put(b"HTTP/1.1 ")?;
    w.put_decimal(usize::from(status))?;
    w.put(b" ")?;
    w.put(reason)?;
    w.put(b"\r\nContent-Type: text/plain\r\nContent-Length: ")?;
    w.put_decimal(reason.len() + 1)?;
    match status {
        405 => w.put(b"\r\nConnection: close\r\nAllow: GET")?,
        426 => w.put(
            b"\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13",
        )?,
        _ => w.put(b"\r\nConnection: close")?,
    }
    w.put(b"\r\n\r\n")?;
    w.put(reason)?;
    w.put(b"\n")?;
    Some(w.len)
}

/// The standard reason phrase for `status` (RFC 7231 §6.1, RFC 6585, RFC 9110 §15), or `""`
/// for a code without one (RFC 7230 §3.1.2 allows an empty reason phrase).
#[must_use]
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends to a caller buffer; every write is bounds-checked.
struct Writer<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl<'o> Writer<'o> {
    fn new(out: &'o mut [u8]) -> Self {
        Self { out, len: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn put_decimal(&mut self, mut n: usize) -> Option<()> {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start = start.checked_sub(1)?;
            *digits.get_mut(start)? = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(digits.get(start..)?)
    }
}

/// RFC 4648 §4, Table 1: the value of a 6-bit group as a base64 character.
fn base64_char(v: u8) -> u8 {
    match v & 0x3f {
        v @ 0x00..=0x19 => b'A' + v,
        v @ 0x1a..=0x33 => b'a' + (v - 0x1a),
        v @ 0x34..=0x3d => b'0' + (v - 0x34),
        0x3e => b'+',
        _ => b'/',
    }
}

/// RFC 4648 §4, Table 1: the 6-bit value of a base64 character (not `=`).
fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 0x1a),
        b'0'..=b'9' => Some(c - b'0' + 0x34),
        b'+' => Some(0x3e),
        b'/' => Some(0x3f),
        _ => None,
    }
}

/// Base64-encodes `input` into `out` (RFC 4648 §4, padded); returns the length written, or
/// `None` if `out` is too small.
fn base64_encode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let needed = input.len().div_ceil(3).checked_mul(4)?;
    let out = out.get_mut(..needed)?;
    for (group, chars) in input.chunks(3).zip(out.chunks_mut(4)) {
        let (a, b, c) = match *group {
            [a, b, c] => (a, Some(b), Some(c)),
            [a, b] => (a, Some(b), None),
            [a] => (a, None, None),
            _ => return None,
        };
        let (b0, c0) = (b.unwrap_or(0), c.unwrap_or(0));
        let [o0, o1, o2, o3] = chars else {
            return None;
        };
        *o0 = base64_char(a >> 2);
        *o1 = base64_char(a << 4 | b0 >> 4);
        *o2 = if b.is_some() { base64_char(b0 << 2 | c0 >> 6) } else { b'=' };
        *o3 = if c.is_some() { base64_char(c0) } else { b'=' };
    }
    Some(needed)
}

/// Decodes padded base64 (RFC 4648 §4) into `out`; returns the length written. `None` if the
/// input is not canonical padded base64 (length not a multiple of 4, a character outside the
/// alphabet, `=` other than at the end, non-zero pad bits, RFC 4648 §3.5) or `out` is too
/// small.
fn base64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    if input.len() % 4 != 0 {
        return None;
    }
    let quads = input.len() / 4;
    let mut len = 0;
    for (i, quad) in input.chunks(4).enumerate() {
        let &[c0, c1, c2, c3] = quad else {
            return None;
        };
        let last = i + 1 == quads;
        let v0 = base64_value(c0)?;
        let v1 = base64_value(c1)?;
        let (bytes, v2, v3) = match (c2, c3) {
            (b'=', b'=') if last => (1, 0, 0),
            (_, b'=') if last => (2, base64_value(c2)?, 0),
            _ => (3, base64_value(c2)?, base64_value(c3)?),
        };
        // RFC 4648 §3.5: the bits that padding drops must be zero.
        if (bytes == 1 && v1 & 0x0f != 0) || (bytes == 2 && v2 & 0x03 != 0) {
            return None;
        }
        let decoded = [v0 << 2 | v1 >> 4, v1 << 4 | v2 >> 2, v2 << 6 | v3];
        let src = decoded.get(..bytes)?;
        let end = len + bytes;
        out.get_mut(len..end)?.copy_from_slice(src);
        len = end;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, clippy::expect_used)]
    use super::*;

    /// RFC 6455 §1.3, the example handshake.
    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

    const RFC_ACCEPT: &[u8; 28] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A valid request with `extra` header lines inserted before the blank line.
    fn request_with(target: &str, extra: &str) -> std::string::String {
        format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    /// A request whose header lines are all given.
    fn request_lines(lines: &str) -> std::string::String {
        format!("GET /x HTTP/1.1\r\n{lines}\r\n")
    }

    fn err(req: &str) -> HandshakeError {
        parse(req.as_bytes()).unwrap_err()
    }

    #[test]
    fn rfc_example_request() {
        let (req, n) = parse(RFC_REQUEST).unwrap().unwrap();
        assert_eq!(n, RFC_REQUEST.len());
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query, "");
        assert_eq!(req.host, "server.example.com");
        assert_eq!(req.origin, Some("http://example.com"));
        assert_eq!(&req.accept, RFC_ACCEPT);
        assert_eq!(req.protocols.as_slice(), ["chat", "superchat"]);
    }

    #[test]
    fn accept_key_rfc_vector() {
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), RFC_ACCEPT);
    }

    #[test]
    fn query_is_split_off_raw() {
        let r = request_with("/a%20b?x=1&y=%41?z", "");
        let (req, _) = parse(r.as_bytes()).unwrap().unwrap();
        assert_eq!(req.path, "/a%20b");
        assert_eq!(req.query, "x=1&y=%41?z");
        assert_eq!(req.origin, None);
        assert!(req.protocols.is_empty());
    }

    #[test]
    fn partial_input_at_every_split_point() {
        for cut in 0..RFC_REQUEST.len() {
            assert_eq!(parse(&RFC_REQUEST[..cut]), Ok(None), "cut {cut}");
        }
        assert!(parse(RFC_REQUEST).unwrap().is_some());
    }

    #[test]
    fn pipelined_bytes_are_not_consumed() {
        let mut buf = RFC_REQUEST.to_vec();
        buf.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let (req, n) = parse(&buf).unwrap().unwrap();
        assert_eq!(n, RFC_REQUEST.len());
        assert_eq!(buf[n], 0x81);
        assert_eq!(req.path, "/chat");
    }

    #[test]
    fn header_names_and_tokens_in_odd_case() {
        let r = request_lines(
            "hOsT: h\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\
             oRiGiN: http://o\r\nSec-Websocket-Protocol: a\r\n",
        );
        let (req, _) = parse(r.as_bytes()).unwrap().unwrap();
        assert_eq!(req.host, "h");
        assert_eq!(req.origin, Some("http://o"));
        assert_eq!(req.protocols.as_slice(), ["a"]);
        assert_eq!(&req.accept, RFC_ACCEPT);
    }

    #[test]
    fn connection_and_upgrade_are_token_lists() {
        let r = request_lines(
            "Host: h\r\nUpgrade: h2c, websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert!(parse(r.as_bytes()).unwrap().is_some());
        // Spread over several header lines.
        let r = request_lines(
            "Host: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert!(parse(r.as_bytes()).unwrap().is_some());
        // A substring is not a token.
        let r = request_lines(
            "Host: h\r\nUpgrade: websocket\r\nConnection: keep-alive-upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(err(&r), HandshakeError::NotUpgrade);
        let r = request_lines(
            "Host: h\r\nUpgrade: websockets\r\nConnection: upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(err(&r), HandshakeError::NotUpgrade);
    }

    #[test]
    fn protocols_from_several_headers_trimmed() {
        let r = request_with(
            "/p",
            "Sec-WebSocket-Protocol: a ,\tb\r\nSec-WebSocket-Protocol: ,c,, d \r\n",
        );
        let (req, _) = parse(r.as_bytes()).unwrap().unwrap();
        assert_eq!(req.protocols.as_slice(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn protocol_errors() {
        let eight = request_with("/p", "Sec-WebSocket-Protocol: a,b,c,d,e,f,g,h\r\n");
        assert_eq!(parse(eight.as_bytes()).unwrap().unwrap().0.protocols.len(), 8);
        for bad in [
            "Sec-WebSocket-Protocol: a,b,c,d,e,f,g,h,i\r\n",
            "Sec-WebSocket-Protocol: a,b,c,d\r\nSec-WebSocket-Protocol: e,f,g,h,i\r\n",
            "Sec-WebSocket-Protocol: chat room\r\n",
            "Sec-WebSocket-Protocol: chat/1\r\n",
            "Sec-WebSocket-Protocol: \"chat\"\r\n",
            "Sec-WebSocket-Protocol: caf\u{e9}\r\n",
        ] {
            let r = request_with("/p", bad);
            assert_eq!(err(&r), HandshakeError::BadProtocol, "{bad:?}");
            assert_eq!(HandshakeError::BadProtocol.status(), 400);
        }
    }

    #[test]
    fn each_error_with_its_status() {
        let cases: &[(&str, HandshakeError, u16)] = &[
            ("GET /x HTTP/1.1\r\nHost h\r\n\r\n", HandshakeError::Malformed, 400),
            ("\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03", HandshakeError::Malformed, 400),
            ("GET /x HTTP/2.0\r\n\r\n", HandshakeError::Malformed, 400),
            ("GET /x\r\n\r\n", HandshakeError::Malformed, 400),
            ("POST /x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::MethodNotAllowed, 405),
            ("get /x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::MethodNotAllowed, 405),
            ("GET /x HTTP/1.0\r\nHost: h\r\n\r\n", HandshakeError::HttpVersion, 400),
            ("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::BadTarget, 400),
            ("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::BadTarget, 400),
            ("GET /x HTTP/1.1\r\n\r\n", HandshakeError::MissingHost, 400),
            ("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HandshakeError::MissingHost, 400),
            ("GET /x HTTP/1.1\r\nHost: \r\n\r\n", HandshakeError::MissingHost, 400),
            ("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::NotUpgrade, 400),
        ];
        for (req, want, status) in cases {
            assert_eq!(err(req), *want, "{req:?}");
            assert_eq!(want.status(), *status, "{req:?}");
        }
    }

    #[test]
    fn missing_upgrade_or_connection() {
        let r = request_lines(
            "Host: h\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(err(&r), HandshakeError::NotUpgrade);
        let r = request_lines(
            "Host: h\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(err(&r), HandshakeError::NotUpgrade);
    }

    fn with_key(key_lines: &str) -> std::string::String {
        request_lines(&format!(
            "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key_lines}\
             Sec-WebSocket-Version: 13\r\n"
        ))
    }

    #[test]
    fn key_errors() {
        assert_eq!(err(&with_key("")), HandshakeError::BadKey);
        for bad in [
            "Sec-WebSocket-Key: \r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n", // unpadded
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n", // bad padding
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n", // too long
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n", // non-zero pad bits
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n", // outside the alphabet
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==dGhl\r\n", // padding in the middle
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZWVl\r\n", // 18 bytes
            "Sec-WebSocket-Key: c2hvcnQ=\r\n",               // 5 bytes
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", // duplicated
        ] {
            assert_eq!(err(&with_key(bad)), HandshakeError::BadKey, "{bad:?}");
        }
        assert_eq!(HandshakeError::BadKey.status(), 400);
        // Surrounding whitespace is not part of the key.
        let ok = with_key("Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n");
        assert_eq!(&parse(ok.as_bytes()).unwrap().unwrap().0.accept, RFC_ACCEPT);
    }

    fn with_version(version_lines: &str) -> std::string::String {
        request_lines(&format!(
            "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{version_lines}"
        ))
    }

    #[test]
    fn version_errors() {
        for bad in [
            "",
            "Sec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 13, 8\r\n",
            "Sec-WebSocket-Version: 013\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
        ] {
            assert_eq!(err(&with_version(bad)), HandshakeError::UnsupportedVersion, "{bad:?}");
        }
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert!(parse(with_version("Sec-WebSocket-Version:  13 \r\n").as_bytes())
            .unwrap()
            .is_some());
    }

    #[test]
    fn origin_and_body_errors() {
        let r = request_with("/x", "Origin: http://a\r\nOrigin: http://b\r\n");
        assert_eq!(err(&r), HandshakeError::BadOrigin);
        let mut r = request_with("/x", "Origin: http://caf").into_bytes();
        r.truncate(r.len() - 2);
        r.extend_from_slice(b"\xe9\r\n\r\n");
        assert_eq!(parse(&r), Err(HandshakeError::BadOrigin));
        assert_eq!(
            err(&request_with("/x", "Content-Length: 5\r\n")),
            HandshakeError::UnexpectedBody
        );
        assert_eq!(
            err(&request_with("/x", "Transfer-Encoding: chunked\r\n")),
            HandshakeError::UnexpectedBody
        );
        assert!(parse(request_with("/x", "Content-Length: 0\r\n").as_bytes()).unwrap().is_some());
        assert_eq!(HandshakeError::BadOrigin.status(), 400);
        assert_eq!(HandshakeError::UnexpectedBody.status(), 400);
    }

    #[test]
    fn check_order_most_specific_wins() {
        // 405 before anything about the upgrade headers.
        assert_eq!(err("PUT /x HTTP/1.0\r\n\r\n"), HandshakeError::MethodNotAllowed);
        // Target before method.
        assert_eq!(err("PUT * HTTP/1.1\r\n\r\n"), HandshakeError::BadTarget);
        // Version before Host.
        assert_eq!(err("GET /x HTTP/1.0\r\n\r\n"), HandshakeError::HttpVersion);
        // Host before Upgrade.
        assert_eq!(
            err("GET /x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            HandshakeError::MissingHost
        );
        // Upgrade before key.
        assert_eq!(
            err(&request_lines("Host: h\r\nSec-WebSocket-Version: 13\r\n")),
            HandshakeError::NotUpgrade
        );
        // Key before version.
        let r = request_lines("Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        assert_eq!(err(&r), HandshakeError::BadKey);
        // Version before protocols.
        let r = with_version("Sec-WebSocket-Protocol: a b\r\n");
        assert_eq!(err(&r), HandshakeError::UnsupportedVersion);
    }

    #[test]
    fn too_many_headers() {
        let mut lines = std::string::String::from(
            "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        for i in 5..MAX_HEADERS {
            lines.push_str(&format!("X-Filler-{i}: {i}\r\n"));
        }
        assert!(parse(request_lines(&lines).as_bytes()).unwrap().is_some(), "32 headers are fine");
        lines.push_str("X-One-Too-Many: 33\r\n");
        assert_eq!(err(&request_lines(&lines)), HandshakeError::HeadersTooLarge);
        assert_eq!(HandshakeError::HeadersTooLarge.status(), 431);
    }

    #[test]
    fn write_switching_exact_bytes() {
        let mut out = [0u8; 256];
        let n = write_switching(&mut out, RFC_ACCEPT, None).unwrap();
        let want: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(&out[..n], want);
        for small in 0..n {
            assert_eq!(write_switching(&mut out[..small], RFC_ACCEPT, None), None, "{small}");
        }
        assert_eq!(write_switching(&mut out[..n], RFC_ACCEPT, None), Some(n));

        let n = write_switching(&mut out, RFC_ACCEPT, Some("chat")).unwrap();
        let want: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Sec-WebSocket-Protocol: chat\r\n\r\n";
        assert_eq!(&out[..n], want);
        assert_eq!(write_switching(&mut out[..n - 1], RFC_ACCEPT, Some("chat")), None);
        assert_eq!(write_switching(&mut out, RFC_ACCEPT, Some("a\r\nSet-Cookie: x")), None);
        assert_eq!(write_switching(&mut out, RFC_ACCEPT, Some("")), None);
    }

    fn error_text(status: u16) -> std::string::String {
        let mut out = [0u8; 512];
        let n = write_error(&mut out, status).unwrap();
        std::string::String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn write_error_exact_bytes() {
        assert_eq!(
            error_text(400),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\
             Connection: close\r\n\r\nBad Request\n"
        );
        assert_eq!(
            error_text(405),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n\
             Content-Length: 19\r\nConnection: close\r\nAllow: GET\r\n\r\nMethod Not Allowed\n"
        );
        assert_eq!(
            error_text(426),
            "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\
             Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             \r\nUpgrade Required\n"
        );
        assert_eq!(
            error_text(431),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n\
             Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n"
        );
    }

    #[test]
    fn write_error_every_supported_status() {
        for status in [400, 403, 404, 405, 414, 426, 431, 500, 502, 503, 504] {
            let text = error_text(status);
            let reason = reason_phrase(status);
            assert!(!reason.is_empty(), "{status}");
            assert!(text.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")), "{text}");
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert_eq!(body, format!("{reason}\n"));
            assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
            assert!(head.contains("\r\nContent-Type: text/plain\r\n"), "{head}");
            assert!(head.contains("close"), "{head}");
        }
        assert_eq!(reason_phrase(414), "URI Too Long");
        assert_eq!(reason_phrase(504), "Gateway Timeout");
        assert_eq!(reason_phrase(499), "");
        assert!(error_text(499).starts_with("HTTP/1.1 499 \r\n"));
    }

    #[test]
    fn write_error_refuses_small_buffers_and_non_errors() {
        let mut out = [0u8; 256];
        let n = write_error(&mut out, 503).unwrap();
        for small in 0..n {
            assert_eq!(write_error(&mut out[..small], 503), None, "{small}");
        }
        assert_eq!(write_error(&mut out[..n], 503), Some(n));
        assert_eq!(write_error(&mut out, 101), None);
        assert_eq!(write_error(&mut out, 200), None);
        assert_eq!(write_error(&mut out, 600), None);
    }

    #[test]
    fn mutated_requests_never_panic() {
        let mut seed = 0xd1b5_4a32_d192_ed03_u64;
        let mut buf = RFC_REQUEST.to_vec();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            buf.clear();
            buf.extend_from_slice(RFC_REQUEST);
            let at = (seed % buf.len() as u64) as usize;
            let byte = (seed >> 32) as u8;
            match (seed >> 40) % 3 {
                0 => buf[at] = byte,
                1 => buf.insert(at, byte),
                _ => {
                    buf.remove(at);
                }
            }
            let cut = ((seed >> 48) as usize) % (buf.len() + 1);
            for input in [&buf[..], &buf[..cut]] {
                if let Ok(Some((req, n))) = parse(input) {
                    assert!(n <= input.len());
                    assert!(req.path.starts_with('/'));
                    assert!(req.protocols.len() <= MAX_PROTOCOLS);
                }
            }
        }
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let vectors: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"f", b"Zg=="),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"foob", b"Zm9vYg=="),
            (b"fooba", b"Zm9vYmE="),
            (b"foobar", b"Zm9vYmFy"),
            (&[0xfb, 0xff, 0xbf], b"+/+/"),
        ];
        for &(plain, encoded) in vectors {
            let mut buf = [0u8; 16];
            let n = base64_encode(plain, &mut buf).unwrap();
            assert_eq!(&buf[..n], encoded);
            let n = base64_decode(encoded, &mut buf).unwrap();
            assert_eq!(&buf[..n], plain);
        }
        let mut tiny = [0u8; 3];
        assert_eq!(base64_encode(b"foo", &mut tiny), None);
        assert_eq!(base64_decode(b"Zm9vYg==", &mut tiny), None);
        assert_eq!(base64_decode(b"Zg=", &mut [0u8; 4]), None);
        assert_eq!(base64_decode(b"Z===", &mut [0u8; 4]), None);
        assert_eq!(base64_decode(b"Zh==", &mut [0u8; 4]), None);
        assert_eq!(base64_decode(b"Zm9=", &mut [0u8; 4]), None);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            HandshakeError::UnsupportedVersion.to_string(),
            "Sec-WebSocket-Version is not 13"
        );
        assert_eq!(HandshakeError::MethodNotAllowed.to_string(), "method is not GET");
    }
}
