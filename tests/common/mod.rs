//! Process-level helpers shared by the integration tests, the gateway's and (through
//! backend/tests/common/) the backend kit's: temp docroots, child processes killed on drop,
//! and a small blocking WebSocket client that speaks real RFC 6455 (masked frames,
//! fragmentation) over a real TCP socket.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod counting;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!("wsgate-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The client's transport: TCP, or TLS over TCP (rustls, verifying the server).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A blocking WebSocket client.
pub struct Client {
    pub sock: Stream,
    buf: Vec<u8>,
    seed: u32,
}

impl Client {
    /// Connects and upgrades; panics unless the answer is 101.
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::upgrade(Stream::Plain(Self::tcp(addr)), path)
    }

    /// Connects over TLS to "localhost", trusting only `ca` (DER), and upgrades.
    pub fn connect_tls(
        addr: SocketAddr,
        path: &str,
        ca: &rustls::pki_types::CertificateDer<'_>,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tls = rustls::StreamOwned::new(conn, Self::tcp(addr));
        Self::upgrade(Stream::Tls(Box::new(tls)), path)
    }

    fn tcp(addr: SocketAddr) -> TcpStream {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        sock
    }

    fn upgrade(mut sock: Stream, path: &str) -> Self {
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            sock.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        Self { sock, buf: Vec::new(), seed: 0x1234_5678 }
    }

    fn key(&mut self) -> [u8; 4] {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed.to_be_bytes()
    }

    /// Sends one frame, masked.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(u8::from(fin) << 7 | opcode);
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = self.key();
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.sock.write_all(&f).unwrap();
    }

    /// Sends a message in fragments of at most `frag` bytes.
    pub fn send(&mut self, opcode: u8, payload: &[u8], frag: usize) {
        if payload.len() <= frag {
            return self.send_frame(true, opcode, payload);
        }
        let chunks: Vec<&[u8]> = payload.chunks(frag).collect();
        for (i, c) in chunks.iter().enumerate() {
            let op = if i == 0 { opcode } else { 0 };
            self.send_frame(i + 1 == chunks.len(), op, c);
        }
    }

    /// Reads one frame: (fin, opcode, payload).
    pub fn recv_frame(&mut self) -> (bool, u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                let b1 = self.buf[1];
                assert_eq!(b1 & 0x80, 0, "server frames are never masked");
                let (len, hl) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= hl + len {
                    let b0 = self.buf[0];
                    let payload = self.buf[hl..hl + len].to_vec();
                    self.buf.drain(..hl + len);
                    return (b0 & 0x80 != 0, b0 & 0x0f, payload);
                }
            }
            let mut tmp = [0u8; 65536];
            let n = self.sock.read(&mut tmp).unwrap();
            assert!(n > 0, "connection closed while waiting for a frame");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Reads one whole message (answering nothing): (opcode, payload). Close frames return
    /// opcode 8.
    pub fn recv(&mut self) -> (u8, Vec<u8>) {
        let (mut fin, opcode, mut payload) = self.recv_frame();
        while !fin {
            let (f, op, p) = self.recv_frame();
            if op >= 8 {
                continue;
            }
            assert_eq!(op, 0, "continuation expected");
            payload.extend_from_slice(&p);
            fin = f;
        }
        (opcode, payload)
    }
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
