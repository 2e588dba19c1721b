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

/// Most `Sec-WebSocket-Extensions` headers kept from one request (browsers send one).
pub const MAX_EXTENSION_HEADERS: usize = 4;

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
    /// The `Sec-WebSocket-Extensions` values, trimmed, in order (read by
    /// [`crate::ws::deflate::negotiate`] where compression is on).
    pub extensions: Vec<&'a [u8], MAX_EXTENSION_HEADERS>,
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
    /// `Sec-WebSocket-Extensions` is not an extension list (RFC 6455 §9.1), or comes in more
    /// than [`MAX_EXTENSION_HEADERS`] headers.
    BadExtensions,
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
            | Self::BadExtensions
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
            Self::BadExtensions => "bad Sec-WebSocket-Extensions",
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
pub fn for_each_header<'h>(head: &'h [u8], mut f: impl FnMut(&'h str, &'h [u8])) {
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

    let mut extensions = Vec::new();
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            extensions.push(trim_ows(h.value)).map_err(|_| HandshakeError::BadExtensions)?;
        }
    }

    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let accept = accept_key(key);
    let request = UpgradeRequest { path, query, host, origin, accept, protocols, extensions };
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
    write_switching_with(out, accept, protocol, None)
}

/// [`write_switching`] with a `Sec-WebSocket-Extensions: <extensions>` line when given (the
/// answer of [`crate::ws::deflate`]'s negotiation).
///
/// # Errors
/// As [`write_switching`], and `None` if `extensions` holds a control character.
#[must_use]
pub fn write_switching_with(
    out: &mut [u8],
    accept: &[u8; 28],
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Option<usize> {
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
    if let Some(e) = extensions {
        if e.bytes().any(|b| b.is_ascii_control()) {
            return None;
        }
        w.put(b"Sec-WebSocket-Extensions: ")?;
        w.put(e.as_bytes())?;
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
    write_error_with(out, status, b"")
}

/// [`write_error`] with one more header line, `extra` (without its CRLF; nothing when empty):
/// a 401's `WWW-Authenticate`, a 429's `Retry-After`.
#[must_use]
pub fn write_error_with(out: &mut [u8], status: u16, extra: &[u8]) -> Option<usize> {
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
    if !extra.is_empty() {
        w.put(b"\r\n")?;
        w.put(extra)?;
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
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
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
pub(crate) struct Writer<'o> {
    out: &'o mut [u8],
    pub(crate) len: usize,
}

impl<'o> Writer<'o> {
    pub(crate) fn new(out: &'o mut [u8]) -> Self {
        Self { out, len: 0 }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    pub(crate) fn put_decimal(&mut self, mut n: usize) -> Option<()> {
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
pub fn base64_encode(input: &[u8], out: &mut [u8]) -> Option<usize> {
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
pub fn base64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
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
mod tests;
