//! Connection context: what a backend may want to know about its client, delivered before any
//! payload when the endpoint asks for it (`--context`, or `context = true` in the config).
//!
//! The context is `NAME=value` lines, CGI-style names as websocketd uses them:
//!
//! ```text
//! REMOTE_ADDR=192.168.1.20
//! REMOTE_PORT=51234
//! SERVER_PORT=8080
//! REQUEST_URI=/chat?room=1
//! SCRIPT_NAME=/chat            (the endpoint: the socket's name, after any subprotocol fallback)
//! QUERY_STRING=room=1
//! HTTP_HOST=router.lan:8080
//! HTTP_ORIGIN=http://router.lan:8080      (only when sent)
//! SEC_WEBSOCKET_PROTOCOL=chat             (only when one was chosen)
//! HTTPS=off
//! REMOTE_USER=admin, REMOTE_GROUPS=root   (when the site's auth proved a user)
//! SSL_CLIENT_S_DN=/O=Acme/CN=device1      (a client certificate's subject, when one was sent)
//! HTTP_COOKIE=session=abc                 (each header named with --context-header)
//! ```
//!
//! How it is kept apart from payload, per mode:
//! * `stream`, `lines`: the lines, then one empty line (like an HTTP head), then payload;
//! * `framed`: one record with opcode `0x3` and FIN, whose payload is the lines;
//! * `seqpacket`: the first packet holds the lines.
//!
//! Values come from a request head that httparse accepted, so they hold no CR, LF or NUL; the
//! path was decoded and checked. Nothing here allocates: lines are written straight into the
//! backend buffer.

use std::io::Write;
use std::net::SocketAddr;

use crate::buffer::Buf;
use crate::http::handshake;
use crate::relay::codec::Mode;
use crate::relay::record::{self, RecordHeader};

/// What goes into the context.
#[derive(Clone, Copy, Debug)]
pub struct Info<'a> {
    /// The client.
    pub peer: SocketAddr,
    /// The listener's port.
    pub server_port: u16,
    /// Raw request path (before '?').
    pub path: &'a str,
    /// Raw query, "" if none.
    pub query: &'a str,
    /// The endpoint name (socket name).
    pub endpoint: &'a str,
    /// Host header.
    pub host: &'a str,
    /// Origin header.
    pub origin: Option<&'a str>,
    /// The subprotocol echoed to the client.
    pub protocol: Option<&'a str>,
    /// Served over TLS.
    pub tls: bool,
    /// The user the request proved to be (the site's `auth`), and their group.
    pub user: Option<(&'a str, &'a str)>,
    /// The subject of the client's verified certificate (rendered as
    /// [`crate::auth::x509`] writes it), when it sent one.
    pub cert_subject: Option<&'a str>,
}

/// Writes the context for `mode` into `out`; `false` when it does not fit (nothing written).
#[must_use]
pub fn write(out: &mut Buf, mode: Mode, info: &Info<'_>, head: &[u8], headers: &[String]) -> bool {
    let framed = matches!(mode, Mode::Framed | Mode::SeqPacket);
    let skip = if framed { record::HEADER_LEN } else { 0 };
    let spare = out.spare();
    let capacity = spare.len();
    let Some(body) = spare.get_mut(skip..) else { return false };
    let mut cursor = std::io::Cursor::new(body);
    if write_lines(&mut cursor, info, head, headers).is_err() {
        return false;
    }
    if !framed && cursor.write_all(b"\n").is_err() {
        return false;
    }
    let len = cursor.position() as usize;
    if framed {
        // seqpacket: an internal record the uplink sends as one packet (see `Uplink`).
        let opcode = if mode == Mode::Framed { record::OP_CONTEXT } else { record::OP_BINARY };
        let h = RecordHeader { fin: true, opcode, len: len as u32 }.to_bytes();
        match out.spare().get_mut(..record::HEADER_LEN) {
            Some(dst) => dst.copy_from_slice(&h),
            None => return false,
        }
    }
    let total = skip + len;
    if total > capacity {
        return false;
    }
    out.commit(total);
    true
}

/// Writes the direct-mode hand-over record into `out`: the context lines, an
/// `EARLY_DATA_LENGTH=<n>` line, an empty line, then `early` (client bytes read after the
/// request head, which belong to the backend now). `false` when it does not fit (nothing
/// written).
#[must_use]
pub fn write_direct(
    out: &mut Buf,
    info: &Info<'_>,
    head: &[u8],
    headers: &[String],
    early: &[u8],
) -> bool {
    let spare = out.spare();
    let mut cursor = std::io::Cursor::new(spare);
    let written = write_lines(&mut cursor, info, head, headers)
        .and_then(|()| write!(cursor, "EARLY_DATA_LENGTH={}\n\n", early.len()))
        .and_then(|()| cursor.write_all(early));
    if written.is_err() {
        return false;
    }
    let len = cursor.position() as usize;
    out.commit(len);
    true
}

fn write_lines(
    w: &mut impl Write,
    info: &Info<'_>,
    head: &[u8],
    headers: &[String],
) -> std::io::Result<()> {
    writeln!(w, "REMOTE_ADDR={}\nREMOTE_PORT={}", info.peer.ip(), info.peer.port())?;
    writeln!(w, "SERVER_PORT={}", info.server_port)?;
    if info.query.is_empty() {
        writeln!(w, "REQUEST_URI={}", info.path)?;
    } else {
        writeln!(w, "REQUEST_URI={}?{}", info.path, info.query)?;
    }
    write!(
        w,
        "SCRIPT_NAME=/{}\nQUERY_STRING={}\nHTTP_HOST={}\n",
        info.endpoint, info.query, info.host
    )?;
    if let Some(o) = info.origin {
        writeln!(w, "HTTP_ORIGIN={o}")?;
    }
    if let Some(p) = info.protocol {
        writeln!(w, "SEC_WEBSOCKET_PROTOCOL={p}")?;
    }
    writeln!(w, "HTTPS={}", if info.tls { "on" } else { "off" })?;
    if let Some((user, group)) = info.user {
        writeln!(w, "REMOTE_USER={user}\nREMOTE_GROUPS={group}")?;
    }
    if let Some(subject) = info.cert_subject {
        writeln!(w, "SSL_CLIENT_S_DN={subject}")?;
    }
    let mut result = Ok(());
    handshake::for_each_header(head, |name, value| {
        if result.is_err() || !headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return;
        }
        result = (|| {
            w.write_all(b"HTTP_")?;
            for b in name.bytes() {
                w.write_all(&[if b == b'-' { b'_' } else { b.to_ascii_uppercase() }])?;
            }
            w.write_all(b"=")?;
            w.write_all(value)?;
            w.write_all(b"\n")
        })();
    });
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::buffer::BufPool;

    const HEAD: &[u8] =
        b"GET /chat?room=1 HTTP/1.1\r\nHost: r.lan\r\nCookie: s=1\r\nUser-Agent: t\r\n\r\n";

    fn info() -> Info<'static> {
        Info {
            peer: "10.0.0.2:5000".parse().unwrap(),
            server_port: 8080,
            path: "/chat",
            query: "room=1",
            endpoint: "chat",
            host: "r.lan",
            origin: None,
            protocol: Some("chat"),
            tls: false,
            user: None,
            cert_subject: None,
        }
    }

    #[test]
    fn stream_block_ends_with_an_empty_line() {
        let mut out = BufPool::new(1, 1024).unwrap().take().unwrap();
        assert!(write(&mut out, Mode::Stream, &info(), HEAD, &["cookie".into()]));
        let text = std::str::from_utf8(out.readable()).unwrap();
        assert_eq!(
            text,
            "REMOTE_ADDR=10.0.0.2\nREMOTE_PORT=5000\nSERVER_PORT=8080\nREQUEST_URI=/chat?room=1\n\
             SCRIPT_NAME=/chat\nQUERY_STRING=room=1\nHTTP_HOST=r.lan\nSEC_WEBSOCKET_PROTOCOL=chat\n\
             HTTPS=off\nHTTP_COOKIE=s=1\n\n"
        );
    }

    #[test]
    fn framed_is_one_context_record() {
        let mut out = BufPool::new(1, 1024).unwrap().take().unwrap();
        assert!(write(&mut out, Mode::Framed, &info(), HEAD, &[]));
        let h = RecordHeader::parse(out.readable()).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode), (true, record::OP_CONTEXT));
        assert_eq!(h.len as usize + 5, out.len());
        assert!(out.readable()[5..].starts_with(b"REMOTE_ADDR=10.0.0.2\n"));
    }

    #[test]
    fn too_small_writes_nothing() {
        let mut out = BufPool::new(1, 64).unwrap().take().unwrap();
        assert!(!write(&mut out, Mode::Stream, &info(), HEAD, &[]));
        assert!(out.is_empty());
    }
}
