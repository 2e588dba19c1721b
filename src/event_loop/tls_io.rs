//! The client side of a `wss://` / `https://` connection: rustls between the TCP socket and
//! the connection's plaintext buffers.
//!
//! [`TlsIo::read`] has the contract of `read(2)` on a non-blocking socket (bytes, `Ok(0)` at
//! the end, `WouldBlock`), so the connection drives it exactly like a plain socket and keeps
//! its readiness flags: ciphertext is pulled from the socket only when rustls holds no
//! plaintext, and until the socket says `WouldBlock`, which is also what lets rustls shrink its
//! input buffer back to its minimum on an idle connection. [`TlsIo::write`] hands plaintext to
//! rustls, which takes no more than its buffer limit (`crate::tls::BUFFER_LIMIT`) of unsent
//! ciphertext allows: that is the backpressure signal, as a full socket buffer is for `ws://`.
//! [`TlsIo::write_tls`] moves ciphertext to the socket.
//!
//! Why the buffered `ServerConnection` and not rustls' unbuffered API: in rustls 0.23.46 both
//! allocate the same per record (decrypted records are copied into an owned `Vec` before the
//! application sees them, `take_received_plaintext`; every encrypted record is an owned
//! `Vec`, `encrypt_outgoing`), so lending our own buffers would save no allocation and would
//! add a state machine of our own. The buffered connection, with its limit, holds about 6 KiB
//! on an idle connection and at most about 38 KiB (see `crate::tls`).

use std::io::{self, ErrorKind, Read, Write};

use rustls::ServerConnection;

use super::transport::{Io, Transport};

/// Why the TLS layer gave up on a connection (the close log line says it; the rustls detail
/// is logged when it happens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFault {
    /// The client spoke plain HTTP to the TLS port (answered 400 in clear).
    PlainHttp,
    /// The handshake failed: not TLS, no common parameters, a refused client certificate...
    Handshake,
    /// A bad record after the handshake (decryption failure, unexpected message...).
    Record,
}

impl core::fmt::Display for TlsFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::PlainHttp => "plain HTTP on a TLS port",
            Self::Handshake => "TLS handshake failed",
            Self::Record => "TLS error",
        })
    }
}

/// One connection's TLS state.
#[derive(Debug)]
pub struct TlsIo {
    conn: Box<ServerConnection>,
    /// The first byte was looked at (plain HTTP is told apart before rustls sees it).
    first_checked: bool,
    close_notify_sent: bool,
    /// What went wrong, once something did; the connection reads nothing more after that.
    /// rustls keeps its own error (see [`Self::fault`]), which is not copied here: it is 64
    /// bytes, and every connection slot has room for a `TlsIo`.
    fault: Option<TlsFault>,
}

impl TlsIo {
    /// Wraps a fresh server connection (see `crate::tls::new_connection`).
    #[must_use]
    pub fn new(conn: Box<ServerConnection>) -> Self {
        Self { conn, first_checked: false, close_notify_sent: false, fault: None }
    }

    /// The client's certificate, verified against the site's client CAs, when it sent one.
    #[must_use]
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.conn.peer_certificates()?.first().map(AsRef::as_ref)
    }

    /// Decrypted bytes into `dst`. `Ok(0)`: the client closed (with or without `close_notify`).
    ///
    /// # Errors
    /// `WouldBlock` when the socket has nothing more; `InvalidData` when TLS failed:
    /// [`Self::fault`] says why, and rustls may have queued an alert for [`Self::write_tls`].
    /// Other errors are the socket's.
    pub fn read<T: Transport + ?Sized>(
        &mut self,
        sock: &mut T,
        dst: &mut [u8],
    ) -> io::Result<usize> {
        if self.fault.is_some() {
            return Err(ErrorKind::InvalidData.into());
        }
        if !self.first_checked {
            let mut first = [0u8; 8];
            match sock.peek(&mut first) {
                Ok(0) => return Ok(0),
                Ok(n) => {
                    self.first_checked = true;
                    // A TLS record starts with its content type (22 for the ClientHello); an
                    // HTTP request with its method and a space.
                    if looks_like_http(first.get(..n).unwrap_or_default()) {
                        self.fault = Some(TlsFault::PlainHttp);
                        return Err(ErrorKind::InvalidData.into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            match self.conn.reader().read(dst) {
                Ok(n) => return Ok(n),
                // The TCP connection ended without close_notify: for us, the end all the same
                // (the WebSocket close handshake says whether the messages were complete).
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext left: more ciphertext from the socket.
            let n = self.conn.read_tls(&mut Io(sock))?;
            if self.conn.process_new_packets().is_err() {
                let kind =
                    if self.conn.is_handshaking() { TlsFault::Handshake } else { TlsFault::Record };
                self.fault = Some(kind);
                return Err(ErrorKind::InvalidData.into());
            }
            if n == 0 {
                // EOF: the reader now says Ok(0) or UnexpectedEof, both the end.
                return match self.conn.reader().read(dst) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
                    Err(e) => Err(e),
                };
            }
        }
    }

    /// Plaintext for the client: how much of `src` rustls took (0 when its output is full).
    pub fn write(&mut self, src: &[u8]) -> usize {
        if self.close_notify_sent || self.fault.is_some() {
            return 0;
        }
        self.conn.writer().write(src).unwrap_or(0)
    }

    /// Ciphertext waits for the socket.
    #[must_use]
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes waiting ciphertext to the socket.
    ///
    /// # Errors
    /// The socket's, `WouldBlock` included.
    pub fn write_tls<T: Transport + ?Sized>(&mut self, sock: &mut T) -> io::Result<usize> {
        self.conn.write_tls(&mut Io(sock))
    }

    /// Queues `close_notify` (once). Returns `false` when it was sent before, or when TLS
    /// failed (then only the alert rustls queued goes out).
    pub fn close_notify(&mut self) -> bool {
        if self.close_notify_sent || self.fault.is_some() {
            return false;
        }
        self.close_notify_sent = true;
        self.conn.send_close_notify();
        true
    }

    /// What went wrong, if anything, and what rustls said about it: after an error,
    /// `process_new_packets` does no new work and returns the same error again (rustls
    /// documents it), so that is where the error is read back from.
    pub fn fault(&mut self) -> Option<(TlsFault, Option<rustls::Error>)> {
        let fault = self.fault?;
        let detail = match fault {
            TlsFault::PlainHttp => None,
            TlsFault::Handshake | TlsFault::Record => self.conn.process_new_packets().err(),
        };
        Some((fault, detail))
    }

    /// The handshake resumed a session (`Some(true)`) or made a new one; `None` before it is
    /// known.
    #[must_use]
    pub fn resumed(&self) -> Option<bool> {
        self.conn.handshake_kind().map(|k| k == rustls::HandshakeKind::Resumed)
    }

    /// Still in the TLS handshake.
    #[must_use]
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }
}

/// Do the first bytes of a connection start an HTTP/1 request?
fn looks_like_http(first: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"TRACE ",
        b"CONNECT ",
    ];
    METHODS.iter().any(|m| first.starts_with(m) || (first.len() >= 4 && m.starts_with(first)))
}
