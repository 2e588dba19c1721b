//! A WebSocket echo server on a UNIX socket that answers the upgrade itself: the backend
//! behind nginx in `scripts/bench.py` (nginx passes the request on and copies frames after
//! the 101, so its backend must speak HTTP and WebSocket; `websocket_echo` stands behind the
//! gateway, which does both).
//!
//! ```text
//! cargo build --release --examples && target/release/examples/ws_unix_echo /tmp/x/ws.sock
//! ```
//!
//! Only the HTTP part is its own: the request head is checked by the gateway's parser
//! (`wsgate::http::handshake`) and answered with its 101 or error writer. From then on each
//! connection is the kit's WebSocket server endpoint (`wsgate_kit::direct::Endpoint`, what
//! `websocket_echo -d` runs on): whole messages of at most 16 MiB echoed with their type,
//! one at a time, pings and closes answered. One mio loop, one thread.
// Allowed here: a benchmark backend that only the benchmark's own client talks to, never
// shipped; a panic ends a measurement, it is not reachable by a gateway's clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{self, Read, Write};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use wsgate::http::handshake;
use wsgate_kit::direct::{Endpoint, Incoming, Limits};

const LISTENER: Token = Token(usize::MAX);
/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
const LIMITS: Limits =
    Limits { max_message: 16 << 20, max_queue: (16 << 20) + 256, read_len: 256 * 1024 };

#[derive(Debug)]
enum Conn {
    /// Reading the request head.
    Upgrading(UnixStream, Vec<u8>),
    Open(Box<Endpoint<UnixStream>>),
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: ws_unix_echo SOCKET_PATH");
    let _ = std::fs::remove_file(&path);
    let mut listener = UnixListener::bind(&path).expect("bind");
    let mut poll = Poll::new().expect("epoll");
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).expect("register");
    eprintln!("ws_unix_echo: listening on {path}");
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("poll: {e}");
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut sock, _)) = listener.accept() {
                    let i = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry()
                        .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                        .expect("register");
                    conns[i] = Some(Conn::Upgrading(sock, Vec::new()));
                }
                continue;
            }
            let i = ev.token().0;
            let Some(slot) = conns.get_mut(i) else { continue };
            let Some(conn) = slot.take() else { continue };
            *slot = match conn {
                Conn::Upgrading(sock, head) => upgrade(sock, head),
                Conn::Open(mut ep) => echo(&mut ep).then_some(Conn::Open(ep)),
            };
            // A dropped socket leaves the poll as it is closed.
        }
    }
}

/// Reads the request head; once it is complete, answers it: a 101 makes the connection an
/// endpoint (the bytes after the head are its first input), an error status ends it.
fn upgrade(mut sock: UnixStream, mut head: Vec<u8>) -> Option<Conn> {
    let mut chunk = [0u8; 4096];
    let result = loop {
        match sock.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
        let parsed = handshake::parse(&head).map(|r| r.map(|(req, len)| (req.accept, len)));
        match parsed {
            Ok(None) if head.len() < MAX_HEAD => return Some(Conn::Upgrading(sock, head)),
            Ok(None) => break Err(handshake::HandshakeError::HeadersTooLarge),
            Ok(Some(upgrade)) => break Ok(upgrade),
            Err(e) => break Err(e),
        }
    };
    let mut answer = [0u8; 512];
    // A fresh socket's buffer takes a few hundred bytes at once.
    let (accept, len) = match result {
        Ok(ok) => ok,
        Err(e) => {
            if let Some(n) = handshake::write_error(&mut answer, e.status()) {
                let _ = sock.write_all(&answer[..n]);
            }
            return None;
        }
    };
    let n = handshake::write_switching(&mut answer, &accept, None)?;
    sock.write_all(&answer[..n]).ok()?;
    let mut ep = Box::new(Endpoint::new(sock, &head[len..], LIMITS).ok()?);
    echo(&mut ep).then_some(Conn::Open(ep))
}

/// Echoes messages as the previous echo is written and reads what comes; `false` once the
/// connection is over. The socket is registered for both directions, edge-triggered: every
/// turn writes what was queued in it (echoes, pongs, the close) before it waits.
fn echo(ep: &mut Endpoint<UnixStream>) -> bool {
    loop {
        let mut progress = false;
        // One echo at a time: the next message is decoded once the previous echo is written.
        if ep.pending() == 0 {
            if let Some((event, out)) = ep.next_incoming() {
                if let Incoming::Message(kind, data) = event {
                    // The queue is empty and holds the biggest message: this fits.
                    let _ = out.send(kind, data);
                }
                progress = true;
            }
        }
        match ep.flush() {
            Ok(wrote) => progress |= wrote,
            Err(_) => return false,
        }
        if ep.is_done() {
            return false;
        }
        match ep.read() {
            Ok(read) => progress |= read,
            Err(_) => return false,
        }
        if !progress {
            return true;
        }
    }
}
