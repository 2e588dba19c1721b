//! Static pages: enough HTTP/1.1 to serve a router's web UI (and the sample pages) from the
//! document docroot: GET and HEAD of regular files, a default page for directories, MIME types
//! by extension, keep-alive. Sans-IO: parsing and response heads only; the connection streams
//! the file through its buffer.

use std::io::Write;

/// A request for a static file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRequest<'a> {
    /// HEAD: headers only.
    pub head_only: bool,
    /// Raw path (before '?').
    pub path: &'a str,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// It carries an `Upgrade` header: a WebSocket handshake, not a page request.
    pub upgrade: bool,
    /// Length of the request head.
    pub head_len: usize,
}

/// Why a request is not a file request we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRequestError {
    /// Not HTTP/1.x, a bad target, or a body.
    Malformed,
    /// Another method (405 with `Allow: GET, HEAD`).
    Method,
}

/// Parses a request head: `Ok(None)` while it is incomplete.
///
/// # Errors
/// [`FileRequestError`].
pub fn parse(head: &[u8]) -> Result<Option<FileRequest<'_>>, FileRequestError> {
    let mut headers = [httparse::EMPTY_HEADER; super::handshake::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(FileRequestError::Malformed),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(FileRequestError::Malformed);
    };
    let upgrade = req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        // A WebSocket handshake with a wrong method is the handshake parser's to answer.
        _ if upgrade => true,
        _ => return Err(FileRequestError::Method),
    };
    if !target.starts_with('/') {
        return Err(FileRequestError::Malformed);
    }
    // RFC 9112 §9.3: HTTP/1.1 is persistent unless "close"; HTTP/1.0 only with "keep-alive".
    let mut keep_alive = minor == 1;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if (name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // A body we would have to skip: refuse rather than misread it as the next request.
            return Err(FileRequestError::Malformed);
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Ok(Some(FileRequest { head_only, path, keep_alive, upgrade, head_len }))
}

/// The MIME type for a file name, by extension.
#[must_use]
pub fn mime_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Writes a `200 OK` head for a body of `len` bytes; `None` when `out` is too small.
#[must_use]
pub fn write_ok(out: &mut [u8], mime: &str, len: u64, keep_alive: bool) -> Option<usize> {
    let mut c = std::io::Cursor::new(out);
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        c,
        "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {len}\r\n\
         X-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nConnection: {connection}\r\n\r\n"
    )
    .ok()?;
    usize::try_from(c.position()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn requests() {
        let r = parse(b"GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\n\r\nnext").unwrap().unwrap();
        assert_eq!(
            (r.head_only, r.path, r.keep_alive, r.upgrade, r.head_len),
            (false, "/index.html", true, false, 41)
        );
        let r = parse(b"HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((r.head_only, r.path, r.keep_alive), (true, "/", false));
        let r = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(r.keep_alive);
        let r = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let r = parse(b"GET /echo HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").unwrap().unwrap();
        assert!(r.upgrade);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost"), Ok(None));
        assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n"), Err(FileRequestError::Method));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Err(FileRequestError::Malformed)
        );
        assert_eq!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n"), Err(FileRequestError::Malformed));
    }

    #[test]
    fn mime_and_head() {
        assert_eq!(mime_type("a/b.HTML"), "text/html; charset=utf-8");
        assert_eq!(mime_type("x"), "application/octet-stream");
        let mut out = [0u8; 256];
        let n = write_ok(&mut out, "text/plain", 12, false).unwrap();
        let s = std::str::from_utf8(&out[..n]).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 12\r\n"));
        assert!(s.ends_with("Connection: close\r\n\r\n"));
        assert!(write_ok(&mut [0u8; 10], "x", 1, true).is_none());
    }
}
