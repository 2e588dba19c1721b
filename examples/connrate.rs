//! connrate: the connection set-up load of `scripts/bench.py`.
//!
//! ```text
//! connrate --url ws://127.0.0.1:8080/echo --conns 64 --duration 10
//! ```
//!
//! `--conns` clients, one thread each, reconnect for `--duration` seconds: TCP connect, the
//! upgrade request, the 101 (its `Sec-WebSocket-Accept` checked), a masked close frame (1000),
//! the server's close frame back, then the socket closed. So each cycle is the whole life of a
//! connection as a gateway sees it: accept, upgrade, backend connect, closing handshake,
//! teardown. A cycle that fails (refused, not 101, no close back within 5 s) counts as an
//! error and the client goes on. Results are one JSON object on stdout:
//! `{"connections", "errors", "first_error", "elapsed_s", "per_s"}`.
//!
//! A measuring tool, not the gateway: it may panic on misuse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// RFC 6455 §1.3's example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// A masked close frame with code 1000 (mask 0x01020304).
const CLOSE: [u8; 8] = [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// One connection's life; an error says what went wrong.
fn cycle(addr: SocketAddr, host: &str, path: &str) -> Result<(), String> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(timeout)).ok();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).map_err(|e| format!("request: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut got = 0;
    let head_end = loop {
        let n = s.read(&mut buf[got..]).map_err(|e| format!("response: {e}"))?;
        if n == 0 {
            return Err("closed before the 101".into());
        }
        got += n;
        if let Some(i) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if got == buf.len() {
            return Err("response head too long".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    if !head.starts_with("HTTP/1.1 101") || !head.contains(ACCEPT) {
        return Err(format!("not a 101: {}", head.lines().next().unwrap_or("")));
    }
    s.write_all(&CLOSE).map_err(|e| format!("close: {e}"))?;
    // The server's close frame: its first byte 0x88, after anything the head's read took in.
    let mut rest = buf[head_end..got].to_vec();
    loop {
        if rest.first() == Some(&0x88) {
            return Ok(());
        }
        if !rest.is_empty() {
            return Err(format!("frame 0x{:02x} instead of a close", rest[0]));
        }
        let n = s.read(&mut buf).map_err(|e| format!("close answer: {e}"))?;
        if n == 0 {
            return Err("closed without a close frame".into());
        }
        rest.extend_from_slice(&buf[..n]);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url").expect("--url ws://HOST:PORT/PATH");
    let conns: usize = arg(&args, "--conns").map_or(64, |v| v.parse().expect("--conns N"));
    let duration: f64 = arg(&args, "--duration").map_or(10.0, |v| v.parse().expect("--duration S"));
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let addr = authority.to_socket_addrs().expect("HOST:PORT").next().expect("an address");
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (done, errors, first_error) = (done.clone(), errors.clone(), first_error.clone());
            let (host, path) = (authority.to_owned(), path.clone());
            std::thread::spawn(move || {
                while Instant::now() < end {
                    match cycle(addr, &host, &path) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            first_error.lock().unwrap().get_or_insert(e);
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let first = first_error.lock().unwrap().clone();
    println!(
        "{{\"connections\": {n}, \"errors\": {}, \"first_error\": {}, \"elapsed_s\": {elapsed:.3}, \"per_s\": {:.1}}}",
        errors.load(Ordering::Relaxed),
        first.map_or("null".into(), |e| format!("{e:?}")),
        n as f64 / elapsed
    );
}
