//! The session endpoint's HTTP: which requests are its (`POST BASE/login`,
//! `POST BASE/logout`, `GET BASE`), their bodies, and the responses it writes. Sans-IO like
//! the handshake: the request is read from the connection's buffer in place (its head with
//! `httparse`, its body by `Content-Length`), responses are written into the caller's buffer,
//! nothing allocates.
//!
//! A browser session is a cookie ([`COOKIE`]): `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it), `Secure` on TLS listeners, `Path=/` and
//! `Max-Age` the session's length. A script gets the same token in the JSON answer when it
//! asks for it (`"token": true`) and sends it as `Authorization: Bearer`.

use crate::http::handshake::{reason_phrase, Writer};

/// The session cookie's name.
pub const COOKIE: &str = "wsgate_session";
/// Longest login body read: a form or JSON object with the longest user name and password,
/// escaped, fits.
pub const MAX_BODY: usize = 2048;
/// Most headers read.
const MAX_HEADERS: usize = 32;

/// What a session request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST BASE/login`: a form or a JSON object with the user and the password.
    Login,
    /// `POST BASE/logout`: the cookie is cleared.
    Logout,
    /// `GET BASE` (or `HEAD`): who the request's credential says, or 401.
    Status,
}

/// A complete session request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest<'a> {
    /// What it asks.
    pub action: Action,
    /// The request target, as sent (for names and logs).
    pub target: &'a str,
    /// Its head (for the credential headers).
    pub head: &'a [u8],
    /// Its body (empty for `Status`).
    pub body: &'a [u8],
    /// Head and body: the bytes it takes from the buffer.
    pub len: usize,
    /// The body is JSON (else a form).
    pub json: bool,
    /// `HEAD`: no body in the answer.
    pub head_only: bool,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
    /// `Origin`, when sent.
    pub origin: Option<&'a str>,
    /// `Host`.
    pub host: &'a str,
}

/// What the bytes at the start of a connection's buffer are, as far as the session endpoint
/// goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a request for the session endpoint (or its request line is not all there yet: the
    /// page and upgrade parser, which waits for it too, will look again).
    NotOurs,
    /// Ours, not complete yet.
    Incomplete,
    /// Ours and complete.
    Request(SessionRequest<'a>),
    /// Ours, with a method the action does not take: 405, with [`allow`]'s header.
    WrongMethod(Action),
    /// Ours, refused with this status.
    Refused(u16),
}

/// The `Allow` header of a 405 for `path`'s action.
#[must_use]
pub fn allow(action: Action) -> &'static str {
    match action {
        Action::Login | Action::Logout => "Allow: POST",
        Action::Status => "Allow: GET, HEAD",
    }
}

/// Which action `target` names under `base` (`/session`): the path before any query.
#[must_use]
pub fn action_of(target: &str, base: &str) -> Option<Action> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let rest = path.strip_prefix(base)?;
    match rest {
        "" => Some(Action::Status),
        "/login" => Some(Action::Login),
        "/logout" => Some(Action::Logout),
        _ => None,
    }
}

/// Reads `buf` as a request for the session endpoint at `base`. `full`: the buffer has no
/// room left, so a request that is not complete never will be (413).
#[must_use]
pub fn parse<'a>(buf: &'a [u8], base: &str, full: bool) -> Parsed<'a> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(buf);
    let Some(action) = req.path.and_then(|p| action_of(p, base)) else {
        return Parsed::NotOurs;
    };
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if full => return Parsed::Refused(431),
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refused(431),
        Err(_) => return Parsed::Refused(400),
    };
    let method = req.method.unwrap_or_default();
    let head_only = method == "HEAD";
    let method_ok = match action {
        Action::Login | Action::Logout => method == "POST",
        Action::Status => method == "GET" || head_only,
    };
    if !method_ok {
        return Parsed::WrongMethod(action);
    }
    let mut host = None;
    let mut origin = None;
    let mut length: Option<usize> = None;
    let mut json = false;
    let mut form = false;
    let mut close = req.version != Some(1);
    for h in req.headers.iter() {
        let value = core::str::from_utf8(h.value).map(str::trim);
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Parsed::Refused(400);
            }
            host = value.ok();
        } else if name.eq_ignore_ascii_case("origin") {
            if origin.is_some() {
                return Parsed::Refused(400);
            }
            origin = value.ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = value.ok().filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
            let Some(n) = n.and_then(|v| v.parse::<usize>().ok()) else {
                return Parsed::Refused(400);
            };
            if length.is_some_and(|l| l != n) {
                return Parsed::Refused(400);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // A body in chunks is not read: a login body is small and its length known.
            return Parsed::Refused(411);
        } else if name.eq_ignore_ascii_case("content-type") {
            let mime = value.unwrap_or_default().split(';').next().unwrap_or_default().trim();
            json = mime.eq_ignore_ascii_case("application/json");
            form = mime.eq_ignore_ascii_case("application/x-www-form-urlencoded");
        } else if name.eq_ignore_ascii_case("connection") {
            close |=
                value.is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        } else if name.eq_ignore_ascii_case("upgrade") {
            // The session endpoint is no WebSocket.
            return Parsed::Refused(400);
        }
    }
    let Some(host) = host else { return Parsed::Refused(400) };
    let body_len = match (action, length) {
        (Action::Status, None | Some(0)) => 0,
        (Action::Status, Some(_)) => return Parsed::Refused(400),
        (_, None) => return Parsed::Refused(411),
        (_, Some(n)) if n > MAX_BODY => return Parsed::Refused(413),
        (_, Some(n)) => n,
    };
    if action == Action::Login && !json && !form {
        return Parsed::Refused(415);
    }
    let Some(end) = head_len.checked_add(body_len) else { return Parsed::Refused(413) };
    let (Some(head), Some(body)) = (buf.get(..head_len), buf.get(head_len..end)) else {
        return if full { Parsed::Refused(413) } else { Parsed::Incomplete };
    };
    Parsed::Request(SessionRequest {
        action,
        target: req.path.unwrap_or_default(),
        head,
        body,
        len: end,
        json,
        head_only,
        keep_alive: !close,
        origin,
        host,
    })
}

/// A response of the session endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    /// The status.
    pub status: u16,
    /// Extra header lines, without their CRLF.
    pub headers: &'a [&'a str],
    /// The body's type.
    pub content_type: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// `HEAD`: the body's length, not the body.
    pub head_only: bool,
    /// The connection stays open.
    pub keep_alive: bool,
}

/// Writes `r` into `out`; its length, or `None` when it does not fit.
#[must_use]
pub fn write_response(out: &mut [u8], r: &Response<'_>) -> Option<usize> {
    let Response { status, headers, content_type, body, head_only, keep_alive } = *r;
    let mut w = Writer::new(out);
    w.put(b"HTTP/1.1 ")?;
    w.put_decimal(usize::from(status))?;
    w.put(b" ")?;
    w.put(reason_phrase(status).as_bytes())?;
    w.put(b"\r\nContent-Type: ")?;
    w.put(content_type.as_bytes())?;
    w.put(b"\r\nContent-Length: ")?;
    w.put_decimal(body.len())?;
    // Answers about a session are never kept by a cache.
    w.put(b"\r\nCache-Control: no-store")?;
    w.put(if keep_alive { b"\r\nConnection: keep-alive" } else { b"\r\nConnection: close" })?;
    for h in headers {
        w.put(b"\r\n")?;
        w.put(h.as_bytes())?;
    }
    w.put(b"\r\n\r\n")?;
    if !head_only {
        w.put(body)?;
    }
    Some(w.len)
}

/// The `Set-Cookie` line that gives `token` for `max_age` seconds (0: clears it), into `out`.
pub fn set_cookie<const N: usize>(
    out: &mut heapless::String<N>,
    token: &str,
    max_age: u64,
    secure: bool,
) -> core::fmt::Result {
    use core::fmt::Write as _;
    write!(
        out,
        "Set-Cookie: {COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    )?;
    if secure {
        out.write_str("; Secure")?;
    }
    Ok(())
}

/// A local path to go to after a form login: it starts with one '/', and holds no character
/// that could end the `Location` line or make it another site's (`//host`, `/\host`).
#[must_use]
pub fn local_target(next: &str) -> Option<&str> {
    let b = next.as_bytes();
    let ok = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && b.len() <= 256
        && b.iter().all(|&c| c.is_ascii_graphic() && c != b'\\');
    ok.then_some(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn post(path: &str, ctype: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw.lan\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn session_paths_and_their_methods() {
        assert_eq!(action_of("/session", "/session"), Some(Action::Status));
        assert_eq!(action_of("/session?x=1", "/session"), Some(Action::Status));
        assert_eq!(action_of("/session/login", "/session"), Some(Action::Login));
        assert_eq!(action_of("/session/logout", "/session"), Some(Action::Logout));
        for other in ["/sessions", "/session/", "/session/login/x", "/", "/echo"] {
            assert_eq!(action_of(other, "/session"), None, "{other}");
        }
        let get = b"GET /echo HTTP/1.1\r\nHost: gw.lan\r\n\r\n";
        assert_eq!(parse(get, "/session", false), Parsed::NotOurs);
        assert_eq!(parse(b"GET /sess", "/session", false), Parsed::NotOurs);
        assert_eq!(parse(b"GET /session HTTP/1.1\r\nHo", "/session", false), Parsed::Incomplete);
        assert_eq!(parse(b"GET /session HTTP/1.1\r\nHo", "/session", true), Parsed::Refused(431));
        let r = parse(b"GET /session/login HTTP/1.1\r\nHost: a\r\n\r\n", "/session", false);
        assert_eq!(r, Parsed::WrongMethod(Action::Login));
        let r = parse(
            b"POST /session HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "/session",
            false,
        );
        assert_eq!(r, Parsed::WrongMethod(Action::Status));
        let Parsed::Request(r) = parse(
            b"HEAD /session HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "/session",
            false,
        ) else {
            panic!()
        };
        assert!(r.head_only && !r.keep_alive && r.action == Action::Status);
    }

    #[test]
    fn login_bodies_are_read_by_length_and_bounded() {
        let req = post("/session/login", "application/x-www-form-urlencoded", "user=a&password=b");
        let Parsed::Request(r) = parse(req.as_bytes(), "/session", false) else { panic!() };
        assert_eq!(
            (r.body, r.json, r.len, r.keep_alive),
            (&b"user=a&password=b"[..], false, req.len(), true)
        );
        // Pipelined bytes after the body are not its.
        let more = format!("{req}GET / HTTP/1.1\r\n");
        let Parsed::Request(r) = parse(more.as_bytes(), "/session", false) else { panic!() };
        assert_eq!(r.len, req.len());
        let req = post("/session/login", "application/json; charset=utf-8", "{}");
        let Parsed::Request(r) = parse(req.as_bytes(), "/session", false) else { panic!() };
        assert!(r.json);
        // The body not all there yet; then never, in a full buffer.
        let cut = &req.as_bytes()[..req.len() - 1];
        assert_eq!(parse(cut, "/session", false), Parsed::Incomplete);
        assert_eq!(parse(cut, "/session", true), Parsed::Refused(413));
        let big = format!(
            "POST /session/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(parse(big.as_bytes(), "/session", false), Parsed::Refused(413));
        for (head, status) in [
            ("POST /session/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\r\n", 411),
            ("POST /session/login HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
            ("POST /session/login HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n", 415),
            ("POST /session/login HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("POST /session/login HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST /session/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
            ("GET /session HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", 400),
        ] {
            assert_eq!(parse(head.as_bytes(), "/session", false), Parsed::Refused(status), "{head}");
        }
    }

    #[test]
    fn responses_and_cookies() {
        let mut out = [0u8; 512];
        let mut cookie = heapless::String::<256>::new();
        set_cookie(&mut cookie, "u:g:1:ab", 3600, true).unwrap();
        assert_eq!(
            cookie.as_str(),
            "Set-Cookie: wsgate_session=u:g:1:ab; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"
        );
        let ok = Response {
            status: 200,
            headers: &[&cookie],
            content_type: "application/json",
            body: b"{}",
            head_only: false,
            keep_alive: true,
        };
        let n = write_response(&mut out, &ok).unwrap();
        let text = core::str::from_utf8(&out[..n]).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("SameSite=Strict; Secure\r\n\r\n{}"), "{text}");
        assert!(write_response(&mut out[..20], &ok).is_none());
        assert_eq!(local_target("/webauth.html?x=1"), Some("/webauth.html?x=1"));
        for bad in
            ["//evil.example/", "/\\evil.example", "http://evil.example/", "/a b", "/a\r\nX: y", ""]
        {
            assert_eq!(local_target(bad), None, "{bad:?}");
        }
    }
}
