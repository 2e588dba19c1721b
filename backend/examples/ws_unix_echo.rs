//! A WebSocket echo server on a UNIX socket: the backend behind nginx in `scripts/bench.py`
//! (nginx copies frames after the 101, so its backend must speak WebSocket itself).
//!
//! ```text
//! cargo run --release --example ws_unix_echo -- /tmp/x/ws.sock
//! ```
//!
//! One mio loop, one thread. It answers the upgrade (wsgate's `accept_key`), unmasks client
//! frames and sends each one back unmasked with the same opcode and FIN (so fragments are
//! echoed as fragments), answers pings, echoes a close and ends. No validation beyond that:
//! it is a benchmark backend, not a conformant server.
// Allowed here: a benchmark backend that only the benchmark's own client talks to, never
// shipped; a panic ends a measurement, it is not reachable by a gateway's clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{self, Read, Write};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);

#[derive(Debug)]
struct Conn {
    sock: UnixStream,
    upgraded: bool,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    closing: bool,
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
    let mut scratch = vec![0u8; 256 * 1024];
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
                    conns[i] = Some(Conn {
                        sock,
                        upgraded: false,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        closing: false,
                    });
                }
                continue;
            }
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !serve(c, &mut scratch) {
                let _ = poll.registry().deregister(&mut c.sock);
                conns[i] = None;
            }
        }
    }
}

/// Reads, echoes, writes; false when the connection is over.
fn serve(c: &mut Conn, scratch: &mut [u8]) -> bool {
    let mut eof = false;
    loop {
        match c.sock.read(scratch) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                c.inbuf.extend_from_slice(&scratch[..n]);
                if n < scratch.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let mut pos = 0;
    if !c.upgraded {
        let Some(end) = c.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return !eof && c.inbuf.len() < 16384;
        };
        let mut key = None;
        wsgate::http::handshake::for_each_header(&c.inbuf[..end + 4], |name, value| {
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(value.to_vec());
            }
        });
        let Some(key) = key else { return false };
        let accept = wsgate::http::handshake::accept_key(&key);
        c.out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: ",
        );
        c.out.extend_from_slice(&accept);
        c.out.extend_from_slice(b"\r\n\r\n");
        c.upgraded = true;
        pos = end + 4;
    }
    while !c.closing {
        let rest = &c.inbuf[pos..];
        if rest.len() < 2 {
            break;
        }
        let (b0, b1) = (rest[0], rest[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut hl) = match b1 & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                (u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize, 10)
            }
            126 | 127 => break,
            l => (l as usize, 2),
        };
        let key_at = hl;
        if masked {
            hl += 4;
        }
        if rest.len() < hl + len {
            break;
        }
        let key: [u8; 4] =
            if masked { rest[key_at..key_at + 4].try_into().unwrap() } else { [0; 4] };
        let opcode = b0 & 0x0f;
        let out_op = if opcode == 9 { 10 } else { opcode };
        c.out.push((b0 & 0x80) | out_op);
        if len < 126 {
            c.out.push(len as u8);
        } else if len <= 0xffff {
            c.out.push(126);
            c.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            c.out.push(127);
            c.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let at = c.out.len();
        c.out.extend_from_slice(&rest[hl..hl + len]);
        wsgate::ws::mask::apply(key, 0, &mut c.out[at..]);
        pos += hl + len;
        if opcode == 8 {
            c.closing = true;
        }
    }
    c.inbuf.drain(..pos);
    let mut at = 0;
    while at < c.out.len() {
        match c.sock.write(&c.out[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    c.out.drain(..at);
    !(eof || (c.closing && c.out.is_empty()))
}
