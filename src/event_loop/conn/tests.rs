#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! The connection's state machine against an in-memory client and backend and a clock the test
//! moves: requests split at every byte, backpressure both ways, every way a connection ends,
//! every timer. Nothing here touches a socket, so these run unchanged under qemu-user on the
//! router targets (`scripts/cross.sh test`), big-endian MIPS included.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Registry, Token};
use nix::errno::Errno;

use super::*;
use crate::event_loop::transport::{Caller, Pollable};
use crate::relay::record::{RecordHeader, OP_BINARY, OP_CLOSE, OP_TEXT};
use crate::relay::route::RouteError;
use crate::relay::upgrade::Socket;

/// One side of a fake socket, shared between the connection and the test.
#[derive(Debug, Default)]
struct Wire {
    /// Bytes (or, on a packet socket, packets) waiting to be read by the gateway.
    input: VecDeque<Vec<u8>>,
    /// Once `input` is empty, reads see the end.
    eof: bool,
    /// What the gateway wrote.
    output: Vec<u8>,
    /// Packets the gateway sent (packet sockets).
    packets: Vec<Vec<u8>>,
    /// Bytes the socket still takes before `WouldBlock` (`None`: no limit).
    room: Option<usize>,
    /// Writes fail with this.
    write_error: Option<Errno>,
    /// `shutdown(SHUT_WR)` was called.
    shut: bool,
    /// A descriptor came with a write (direct mode).
    fd_sent: Option<RawFd>,
    seqpacket: bool,
    /// A connect in progress, and how it will end.
    connecting: Option<Result<(), RouteError>>,
}

impl Wire {
    /// As `read(2)`: a byte stream gives everything there up to `dst`'s size (so a short read
    /// means the socket is empty, which the gateway relies on); a packet socket one packet.
    fn read(&mut self, dst: &mut [u8]) -> Result<usize, Errno> {
        if self.input.is_empty() {
            return if self.eof { Ok(0) } else { Err(Errno::EAGAIN) };
        }
        if self.seqpacket {
            let p = self.input.pop_front().unwrap_or_default();
            let n = p.len().min(dst.len());
            dst[..n].copy_from_slice(&p[..n]);
            return Ok(p.len());
        }
        let mut n = 0;
        while let Some(front) = self.input.front_mut() {
            let k = front.len().min(dst.len() - n);
            dst[n..n + k].copy_from_slice(&front[..k]);
            front.drain(..k);
            n += k;
            if !front.is_empty() {
                break;
            }
            self.input.pop_front();
        }
        Ok(n)
    }

    fn write(&mut self, src: &[u8]) -> Result<usize, Errno> {
        if let Some(e) = self.write_error {
            return Err(e);
        }
        let n = match self.room {
            Some(0) => return Err(Errno::EAGAIN),
            Some(r) => r.min(src.len()),
            None => src.len(),
        };
        if let Some(r) = self.room.as_mut() {
            *r -= n;
        }
        if self.seqpacket {
            self.packets.push(src.to_vec());
        } else {
            self.output.extend_from_slice(&src[..n]);
        }
        Ok(n)
    }
}

#[derive(Clone, Debug, Default)]
struct Fake(Rc<RefCell<Wire>>);

impl Fake {
    fn send(&self, bytes: &[u8]) {
        self.0.borrow_mut().input.push_back(bytes.to_vec());
    }
    fn take_output(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().output)
    }
    fn wire(&self) -> std::cell::RefMut<'_, Wire> {
        self.0.borrow_mut()
    }
}

fn io_err(e: Errno) -> io::Error {
    if e == Errno::EAGAIN {
        ErrorKind::WouldBlock.into()
    } else {
        io::Error::from(e)
    }
}

impl Pollable for Fake {
    fn register(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn reregister(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn deregister(&mut self, _: &Registry) {}
}

impl Transport for Fake {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(dst).map_err(io_err)
    }
    fn peek(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let w = self.0.borrow();
        let Some(front) = w.input.front() else {
            return if w.eof { Ok(0) } else { Err(ErrorKind::WouldBlock.into()) };
        };
        let n = front.len().min(dst.len());
        dst[..n].copy_from_slice(&front[..n]);
        Ok(n)
    }
    fn write(&mut self, src: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(src).map_err(io_err)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for b in bufs {
            match Transport::write(self, b) {
                Ok(n) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(total)
    }
    fn shutdown_write(&mut self) {
        self.0.borrow_mut().shut = true;
    }
    fn send_file(&mut self, _: &File, _: usize) -> nix::Result<usize> {
        // As on a file system without sendfile: the page goes through the buffer.
        Err(Errno::EINVAL)
    }
    fn raw_fd(&self) -> RawFd {
        42
    }
}

impl Socket for Fake {
    fn seqpacket(&self) -> bool {
        self.0.borrow().seqpacket
    }
}

impl Upstream for Fake {
    fn send(&mut self, src: &[u8]) -> nix::Result<usize> {
        self.0.borrow_mut().write(src)
    }
    fn send_with_fd(&mut self, src: &[u8], fd: RawFd) -> nix::Result<usize> {
        let n = self.0.borrow_mut().write(src)?;
        self.0.borrow_mut().fd_sent = Some(fd);
        Ok(n)
    }
    fn recv(&mut self, dst: &mut [u8]) -> nix::Result<usize> {
        self.0.borrow_mut().read(dst)
    }
    fn hung_up(&self) -> bool {
        let w = self.0.borrow();
        w.eof && w.input.is_empty()
    }
    fn shutdown_write(&mut self) {
        self.0.borrow_mut().shut = true;
    }
    fn connecting(&self) -> bool {
        self.0.borrow().connecting.is_some()
    }
    fn connect_result(&mut self) -> Result<(), RouteError> {
        self.0.borrow_mut().connecting.take().unwrap_or(Ok(()))
    }
}

/// Backends by name: a fake socket, or the error its connect meets.
#[derive(Debug, Default)]
struct Backends(RefCell<HashMap<&'static str, VecDeque<Result<Fake, RouteError>>>>);

impl Backends {
    fn add(&self, name: &'static str, r: Result<Fake, RouteError>) {
        self.0.borrow_mut().entry(name).or_default().push_back(r);
    }
}

impl Dial<Fake> for Backends {
    fn dial(&self, name: &str, _caller: &Caller<'_>) -> Result<Fake, RouteError> {
        self.0
            .borrow_mut()
            .get_mut(name)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Err(RouteError::NotFound))
    }
}

/// A connection, the world around it, and the clock.
struct Rig {
    conn: Connection<Fake, Fake>,
    client: Fake,
    pool: BufPool,
    site: Site,
    backends: Backends,
    poll: Poll,
    now: Instant,
    verdict: Verdict,
    /// Compression contexts, for a site that offers permessage-deflate.
    #[cfg(feature = "deflate")]
    deflate: Option<crate::relay::compress::Contexts>,
    counters: crate::event_loop::counters::Counters,
}

const KEY: Key = Key { index: 1, gen: 1 };
const BUF: usize = 4096;

fn site() -> Site {
    Site {
        ping_interval: Some(Duration::from_secs(30)),
        pong_timeout: Duration::from_secs(10),
        idle_timeout: None,
        ..Site::default()
    }
}

impl Rig {
    fn new(site: Site) -> Self {
        Self::with(site, false)
    }

    fn with(site: Site, overflow: bool) -> Self {
        let client = Fake::default();
        let mut pool = BufPool::new(8, BUF).unwrap();
        let backends = Backends::default();
        let poll = Poll::new().unwrap();
        let now = Instant::now();
        let counters =
            crate::event_loop::counters::Counters::new(std::iter::once(site.listen), 1, now);
        let conn = {
            let mut cx = Ctx {
                pool: &mut pool,
                site: &site,
                backends: &backends,
                htdocs: None,
                gate: None,
                registry: poll.registry(),
                now,
                #[cfg(feature = "deflate")]
                deflate: None,
                counters: &counters,
            };
            Connection::accept(
                KEY,
                client.clone(),
                "192.0.2.1:4000".parse().unwrap(),
                &mut cx,
                0,
                overflow,
                None,
            )
            .unwrap()
        };
        Self {
            conn,
            client,
            pool,
            site,
            backends,
            poll,
            now,
            verdict: Verdict::Continue,
            #[cfg(feature = "deflate")]
            deflate: None,
            counters,
        }
    }

    fn cx(&mut self) -> (Ctx<'_, Fake>, &mut Connection<Fake, Fake>) {
        (
            Ctx {
                pool: &mut self.pool,
                site: &self.site,
                backends: &self.backends,
                htdocs: None,
                gate: None,
                registry: self.poll.registry(),
                now: self.now,
                #[cfg(feature = "deflate")]
                deflate: self.deflate.as_mut(),
                counters: &self.counters,
            },
            &mut self.conn,
        )
    }

    /// An event on both sockets (as epoll would report new bytes or room, and the peer's FIN
    /// with them), then a drive, as the loop does; again while the connection asks for it.
    fn drive(&mut self) -> Verdict {
        let fin = self.client.wire().eof;
        self.conn.on_event(Side::Client, true, true, fin);
        self.drive_backend()
    }

    /// An event on the backend's socket alone (it took bytes, say), then a drive.
    fn drive_backend(&mut self) -> Verdict {
        let (fin, room) = self.conn.state.backend().map_or((false, true), |b| {
            let w = b.sock.wire();
            (w.eof, w.room != Some(0))
        });
        self.conn.on_event(Side::Backend, true, room, fin);
        loop {
            let (mut cx, conn) = self.cx();
            let v = conn.drive(&mut cx);
            self.verdict = v;
            if v != Verdict::Again {
                return v;
            }
        }
    }

    /// Moves the clock to `t` and fires the timers as the loop does, driving when told to.
    fn at(&mut self, t: Instant) -> Verdict {
        self.now = t;
        let due = self.conn.next_deadline().is_some_and(|d| d <= t);
        let (mut cx, conn) = self.cx();
        if due && conn.on_timers(&mut cx) {
            return self.drive();
        }
        self.verdict
    }

    fn after(&mut self, d: Duration) -> Verdict {
        self.at(self.now + d)
    }

    fn phase(&self) -> Phase {
        self.conn.phase()
    }

    /// Opens `/echo` in `mode`, returning the backend.
    fn open(&mut self, mode: &str) -> Fake {
        let backend = Fake::default();
        backend.wire().seqpacket = mode == "seqpacket";
        self.backends.add("echo", Ok(backend.clone()));
        self.site.mode = mode.parse().unwrap();
        self.client.send(&request("/echo"));
        self.drive();
        assert_eq!(self.phase(), Phase::Open);
        let head = self.client.take_output();
        assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
        backend
    }
}

fn request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Server frames: (opcode, payload) each, with continuations joined to their message; panics
/// on a masked or cut frame.
fn frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    while !b.is_empty() {
        let op = b[0] & 0x0f;
        assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
        let (len, h) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        match (op, out.last_mut()) {
            (0, Some(last)) => last.1.extend_from_slice(&b[h..h + len]),
            _ => out.push((op, b[h..h + len].to_vec())),
        }
        b = &b[h + len..];
    }
    out
}

/// A framed-mode record from the backend.
fn record(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut r = RecordHeader { fin, opcode, len }.to_bytes().to_vec();
    r.extend_from_slice(payload);
    r
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn transitions_only_go_forward() {
    use Phase::*;
    let all =
        [Handshake, Connecting, Dialing, File, Handover, Open, Closing, Flushing, Draining, Linger];
    // Once upgraded (or handed over), no phase is ever entered twice.
    let after_upgrade = [Handover, Open, Closing, Flushing, Draining, Linger];
    for from in after_upgrade {
        for to in all {
            if from.may_become(to) {
                let (i, j) = (
                    after_upgrade.iter().position(|p| *p == from).unwrap(),
                    after_upgrade.iter().position(|p| *p == to),
                );
                assert!(j.is_some_and(|j| j > i), "{from:?} -> {to:?}");
            }
        }
    }
    // The two loops before an upgrade, and nothing leaves Linger.
    assert!(File.may_become(Handshake));
    assert!(Connecting.may_become(Handshake));
    assert!(!Open.may_become(Handshake));
    assert!(all.iter().all(|p| !Linger.may_become(*p)));
}

#[test]
fn a_request_split_at_every_byte_opens() {
    let req = request("/echo");
    for split in 1..req.len() {
        let mut rig = Rig::new(site());
        let backend = Fake::default();
        rig.backends.add("echo", Ok(backend.clone()));
        rig.client.send(&req[..split]);
        rig.drive();
        assert_eq!(rig.phase(), Phase::Handshake, "split at {split}");
        assert!(rig.client.take_output().is_empty(), "nothing before the whole head");
        rig.client.send(&req[split..]);
        rig.drive();
        assert_eq!(rig.phase(), Phase::Open, "split at {split}");
        let out = rig.client.take_output();
        assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"), "split at {split}");
        assert!(out.windows(28).any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }
}

#[test]
fn a_request_and_a_frame_arriving_byte_by_byte_open_and_relay() {
    let mut rig = Rig::new(site());
    let backend = Fake::default();
    rig.backends.add("echo", Ok(backend.clone()));
    for b in request("/echo") {
        assert_eq!(rig.phase(), Phase::Handshake);
        rig.client.send(&[b]);
        rig.drive();
    }
    assert_eq!(rig.phase(), Phase::Open);
    assert!(rig.client.take_output().starts_with(b"HTTP/1.1 101 "));
    // Payload bytes stream through as they come, unmasked, without waiting for the frame's end.
    let mut up = Vec::new();
    for b in frame(true, 1, b"hello, router") {
        rig.client.send(&[b]);
        rig.drive();
        up.extend(backend.take_output());
    }
    assert_eq!(up, b"hello, router");
    backend.send(b"and back");
    rig.drive();
    assert_eq!(frames(&rig.client.take_output()), vec![(1, b"and back".to_vec())]);
}

#[test]
fn a_frame_split_at_every_byte_is_relayed_once() {
    let msg = frame(true, 2, &[7u8; 300]);
    for split in 1..msg.len() {
        let mut rig = Rig::new(site());
        let backend = rig.open("framed");
        rig.client.send(&msg[..split]);
        rig.drive();
        rig.client.send(&msg[split..]);
        rig.drive();
        // framed: the message in as many records as it came in pieces, the last one final.
        let up = backend.take_output();
        let mut rest = &up[..];
        let (mut payload, mut fin, mut records) = (Vec::new(), false, 0);
        while let Some(h) = RecordHeader::parse(rest).unwrap() {
            assert!(!fin, "split at {split}: nothing after the final record");
            assert_eq!(h.opcode, if records == 0 { OP_BINARY } else { 0 }, "split at {split}");
            let end = crate::relay::record::HEADER_LEN + h.len as usize;
            payload.extend_from_slice(&rest[crate::relay::record::HEADER_LEN..end]);
            (fin, records, rest) = (h.fin, records + 1, &rest[end..]);
        }
        assert!(rest.is_empty() && fin, "split at {split}");
        assert_eq!(payload, [7u8; 300], "split at {split}");
        assert_eq!(rig.conn.stats.msgs_up, 1);
    }
}

#[test]
fn a_slow_backend_stops_reading_the_client_and_loses_nothing() {
    let mut rig = Rig::new(site());
    let backend = rig.open("stream");
    backend.wire().room = Some(0);
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let msgs: Vec<Vec<u8>> = payload.chunks(1000).map(|c| frame(true, 2, c)).collect();
    for m in &msgs {
        rig.client.send(m);
    }
    rig.drive();
    let queued: usize = rig.client.wire().input.iter().map(Vec::len).sum();
    assert!(queued > 0, "the client is not read while the backend is full");
    assert!(rig.conn.from_client.as_ref().is_some_and(|b| b.free() == 0) || queued > 20_000);
    // The backend drains a little at a time; everything arrives, in order.
    let mut got = Vec::new();
    for _ in 0..1000 {
        backend.wire().room = Some(777);
        rig.drive();
        got.extend(backend.take_output());
        if got.len() == payload.len() {
            break;
        }
    }
    assert_eq!(got, payload);
    assert_eq!(rig.conn.stats.msgs_up, msgs.len() as u64);
}

#[test]
fn a_slow_client_stops_reading_the_backend_and_loses_nothing() {
    let mut rig = Rig::new(site());
    let backend = rig.open("framed");
    rig.client.wire().room = Some(0);
    let mut sent = Vec::new();
    for i in 0..60u8 {
        let body = vec![i; 1500];
        backend.send(&record(true, OP_BINARY, &body));
        sent.push(body);
    }
    rig.drive();
    let left: usize = backend.wire().input.iter().map(Vec::len).sum();
    assert!(left > 0, "the backend is not read while the client is full");
    let mut out = Vec::new();
    for _ in 0..2000 {
        rig.client.wire().room = Some(333);
        rig.drive();
        out.extend(rig.client.take_output());
        if backend.wire().input.is_empty() && rig.conn.to_client.as_ref().is_none_or(Buf::is_empty)
        {
            break;
        }
    }
    let got: Vec<Vec<u8>> = frames(&out)
        .into_iter()
        .map(|(op, p)| {
            assert_eq!(op, 2);
            p
        })
        .collect();
    assert_eq!(got, sent);
}

#[test]
fn client_close_is_echoed_and_the_backend_gets_eof() {
    let mut rig = Rig::new(site());
    let backend = rig.open("stream");
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    rig.client.send(&frame(true, 8, &close));
    rig.drive();
    let out = frames(&rig.client.take_output());
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, close_code(&out[0].1)), (8, 1000));
    assert!(backend.wire().shut, "the backend reads EOF");
    assert!(rig.client.wire().shut, "the server closes TCP first");
    assert_eq!(rig.phase(), Phase::Linger);
    rig.client.wire().eof = true;
    assert_eq!(rig.drive(), Verdict::Done);
    assert_eq!(rig.conn.reason(), Some(Reason::ClientClose(Some(1000))));
}

#[test]
fn backend_eof_closes_1000_and_waits_for_the_client() {
    let mut rig = Rig::new(site());
    let backend = rig.open("stream");
    backend.send(b"last words");
    backend.wire().eof = true;
    rig.drive();
    let out = frames(&rig.client.take_output());
    assert_eq!(out[0], (1, b"last words".to_vec()));
    assert_eq!((out[1].0, close_code(&out[1].1)), (8, 1000));
    assert_eq!(rig.phase(), Phase::Closing);
    rig.client.send(&frame(true, 8, &1000u16.to_be_bytes()));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Linger);
    rig.client.wire().eof = true;
    assert_eq!(rig.drive(), Verdict::Done);
    assert_eq!(rig.conn.reason(), Some(Reason::BackendEof));
}

#[test]
fn backend_eof_in_the_middle_of_a_message_is_1011() {
    let mut rig = Rig::new(site());
    let backend = rig.open("framed");
    backend.send(&record(false, OP_TEXT, b"abc"));
    backend.wire().eof = true;
    rig.drive();
    let out = frames(&rig.client.take_output());
    let last = out.last().unwrap();
    assert_eq!((last.0, close_code(&last.1)), (8, 1011));
    assert_eq!(rig.conn.reason(), Some(Reason::BackendEofMidMessage));
}

#[test]
fn an_unmasked_frame_fails_1002() {
    let mut rig = Rig::new(site());
    let _backend = rig.open("stream");
    rig.client.send(&[0x81, 0x02, b'h', b'i']);
    rig.drive();
    let out = frames(&rig.client.take_output());
    assert_eq!((out[0].0, close_code(&out[0].1)), (8, 1002));
    assert!(matches!(rig.conn.reason(), Some(Reason::Protocol(_))));
    assert_eq!(rig.phase(), Phase::Linger);
}

#[test]
fn a_client_that_vanishes_drains_to_the_backend() {
    let mut rig = Rig::new(site());
    let backend = rig.open("stream");
    backend.wire().room = Some(0);
    rig.client.send(&frame(true, 1, b"still for you"));
    rig.client.wire().eof = true;
    assert_eq!(rig.drive(), Verdict::Continue);
    assert_eq!(rig.phase(), Phase::Draining);
    backend.wire().room = None;
    assert_eq!(rig.drive(), Verdict::Done);
    assert_eq!(backend.take_output(), b"still for you");
    assert!(backend.wire().shut);
    assert_eq!(rig.conn.reason(), Some(Reason::ClientGone));
}

#[test]
fn a_backend_write_error_fails_1011() {
    let mut rig = Rig::new(site());
    let backend = rig.open("stream");
    backend.wire().write_error = Some(Errno::EPIPE);
    rig.client.send(&frame(true, 1, b"x"));
    rig.drive();
    let out = frames(&rig.client.take_output());
    assert_eq!((out[0].0, close_code(&out[0].1)), (8, 1011));
    assert_eq!(rig.conn.reason(), Some(Reason::BackendError(Errno::EPIPE)));
}

#[test]
fn a_backend_close_record_is_relayed_with_its_code() {
    let mut rig = Rig::new(site());
    let backend = rig.open("framed");
    backend.send(&record(true, OP_CLOSE, &[&4001u16.to_be_bytes()[..], b"done"].concat()));
    rig.drive();
    let out = frames(&rig.client.take_output());
    assert_eq!(out, vec![(8, [&4001u16.to_be_bytes()[..], b"done"].concat())]);
    assert_eq!(rig.phase(), Phase::Closing);
    assert_eq!(rig.conn.reason(), Some(Reason::BackendClose(4001)));
}

fn status(out: &[u8]) -> &str {
    std::str::from_utf8(&out[9..12]).unwrap()
}

#[test]
fn refusals_get_their_status_and_end() {
    for (req, want) in [
        (request("/nobody"), "404"),
        (b"GET /echo HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(), "400"),
        (b"BREW /pot HTCPCP/1.0\r\n\r\n".to_vec(), "400"),
    ] {
        let mut rig = Rig::new(site());
        rig.client.send(&req);
        rig.drive();
        let out = rig.client.take_output();
        assert_eq!(status(&out), want, "{}", String::from_utf8_lossy(&req));
        assert!(matches!(rig.conn.reason(), Some(Reason::Refused(_))));
        assert!(rig.client.wire().shut);
        rig.client.wire().eof = true;
        assert_eq!(rig.drive(), Verdict::Done);
    }
}

#[test]
fn an_overflow_connection_gets_503_at_once() {
    let mut rig = Rig::with(site(), true);
    rig.drive();
    assert_eq!(status(&rig.client.take_output()), "503");
    assert_eq!(rig.conn.reason(), Some(Reason::Refused(Refusal::Full)));
}

#[test]
fn a_busy_backend_is_connected_again_then_opens() {
    let mut rig = Rig::new(site());
    let backend = Fake::default();
    rig.backends.add("echo", Err(RouteError::Busy));
    rig.backends.add("echo", Err(RouteError::Busy));
    rig.backends.add("echo", Ok(backend));
    rig.client.send(&request("/echo"));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Connecting);
    assert!(rig.client.take_output().is_empty());
    rig.after(Duration::from_millis(1));
    assert_eq!(rig.phase(), Phase::Connecting, "the pause doubles");
    rig.after(Duration::from_millis(2));
    assert_eq!(rig.phase(), Phase::Open);
    assert!(rig.client.take_output().starts_with(b"HTTP/1.1 101 "));
}

#[test]
fn a_backend_busy_until_the_handshake_deadline_is_503() {
    let mut rig = Rig::new(site());
    for _ in 0..1000 {
        rig.backends.add("echo", Err(RouteError::Busy));
    }
    rig.client.send(&request("/echo"));
    rig.drive();
    let end = rig.now + rig.site.handshake_timeout;
    while rig.phase() == Phase::Connecting && rig.now < end {
        let next = rig.conn.next_deadline().unwrap();
        assert!(next > rig.now, "no deadline in the past");
        rig.at(next);
    }
    assert_eq!(rig.now, end, "the last try is at the handshake deadline");
    assert_eq!(status(&rig.client.take_output()), "503");
    assert!(matches!(rig.conn.reason(), Some(Reason::Refused(Refusal::BackendBusy(_)))));
}

#[test]
fn the_handshake_timeout_ends_a_silent_client() {
    let mut rig = Rig::new(site());
    rig.client.send(b"GET /echo HTTP/1.1\r\n");
    rig.drive();
    assert_eq!(rig.after(rig.site.handshake_timeout - Duration::from_millis(1)), Verdict::Continue);
    assert_eq!(rig.phase(), Phase::Handshake);
    assert_eq!(rig.after(Duration::from_millis(1)), Verdict::Done);
    assert_eq!(rig.conn.reason(), Some(Reason::HandshakeTimeout));
}

#[test]
fn a_silent_client_is_pinged_and_failed_1011_without_a_pong() {
    let mut rig = Rig::new(site());
    let _backend = rig.open("stream");
    rig.after(Duration::from_secs(30));
    let out = frames(&rig.client.take_output());
    assert_eq!(out, vec![(9, b"wsgate".to_vec())]);
    rig.after(Duration::from_secs(10));
    let out = frames(&rig.client.take_output());
    assert_eq!((out[0].0, close_code(&out[0].1)), (8, 1011));
    assert_eq!(rig.conn.reason(), Some(Reason::PingTimeout));
}

#[test]
fn a_pong_keeps_the_connection_and_rearms_the_ping() {
    let mut rig = Rig::new(site());
    let _backend = rig.open("stream");
    rig.after(Duration::from_secs(30));
    assert_eq!(frames(&rig.client.take_output()), vec![(9, b"wsgate".to_vec())]);
    rig.client.send(&frame(true, 10, b"wsgate"));
    rig.after(Duration::from_secs(1));
    rig.drive();
    assert_eq!(rig.conn.timers.pong_deadline, None);
    rig.after(Duration::from_secs(10));
    assert_eq!(rig.phase(), Phase::Open, "answered in time");
    rig.after(Duration::from_secs(20));
    assert_eq!(frames(&rig.client.take_output()), vec![(9, b"wsgate".to_vec())]);
}

#[test]
fn the_idle_timeout_closes_1001() {
    let mut rig = Rig::new(Site { idle_timeout: Some(Duration::from_secs(5)), ..site() });
    let backend = rig.open("stream");
    rig.after(Duration::from_secs(3));
    backend.send(b"activity");
    rig.drive();
    rig.client.take_output();
    rig.after(Duration::from_secs(3));
    assert_eq!(rig.phase(), Phase::Open, "activity moved the idle deadline");
    rig.after(Duration::from_secs(2));
    let out = frames(&rig.client.take_output());
    assert_eq!((out[0].0, close_code(&out[0].1)), (8, 1001));
    assert_eq!(rig.conn.reason(), Some(Reason::IdleTimeout));
    assert_eq!(rig.phase(), Phase::Closing);
}

#[test]
fn a_closing_handshake_not_answered_in_time_ends() {
    let mut rig = Rig::new(site());
    let backend = rig.open("stream");
    backend.wire().eof = true;
    rig.drive();
    assert_eq!(rig.phase(), Phase::Closing);
    let close = rig.site.close_timeout;
    assert_eq!(rig.after(close - Duration::from_millis(1)), Verdict::Continue);
    assert_eq!(rig.after(Duration::from_millis(1)), Verdict::Done);
    assert_eq!(rig.conn.reason(), Some(Reason::BackendEof));
}

#[test]
fn a_client_that_never_closes_after_a_refusal_is_let_go_at_the_close_timeout() {
    let mut rig = Rig::new(site());
    rig.client.send(&request("/nobody"));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Linger);
    assert_eq!(rig.after(rig.site.close_timeout), Verdict::Done);
}

#[test]
fn no_timer_is_left_in_the_past_after_firing() {
    let mut rig = Rig::new(site());
    let _backend = rig.open("stream");
    // Pings, an unanswered pong, the close: at every firing the next deadline is later.
    for _ in 0..6 {
        let Some(next) = rig.conn.next_deadline() else { break };
        if rig.at(next) == Verdict::Done {
            return;
        }
        assert!(rig.conn.next_deadline().is_none_or(|d| d > rig.now));
    }
}

#[test]
fn shutdown_closes_an_open_connection_1001_and_drops_a_handshake() {
    let mut rig = Rig::new(site());
    let _backend = rig.open("stream");
    let (mut cx, conn) = rig.cx();
    conn.shutdown(&mut cx);
    rig.drive();
    let out = frames(&rig.client.take_output());
    assert_eq!((out[0].0, close_code(&out[0].1)), (8, 1001));

    let mut rig = Rig::new(site());
    rig.client.send(b"GET /");
    rig.drive();
    let (mut cx, conn) = rig.cx();
    conn.shutdown(&mut cx);
    assert_eq!(rig.drive(), Verdict::Done);
    assert_eq!(rig.conn.reason(), Some(Reason::Shutdown));
}

#[test]
fn drop_closes_an_open_connection_with_its_code_and_a_handshake_at_once() {
    let mut rig = Rig::new(site());
    let _backend = rig.open("stream");
    assert_eq!(rig.conn.endpoint_row, Some(0), "counted as an upgrade");
    let (mut cx, conn) = rig.cx();
    conn.drop_with(&mut cx, 4001);
    rig.drive();
    let out = frames(&rig.client.take_output());
    assert_eq!((out[0].0, close_code(&out[0].1)), (8, 4001));
    assert_eq!(rig.phase(), Phase::Closing);
    assert_eq!(rig.conn.reason(), Some(Reason::Dropped(4001)));
    // A second drop while closing changes nothing, and says so.
    let (mut cx, conn) = rig.cx();
    assert!(!conn.drop_with(&mut cx, 4002));
    rig.drive();
    assert!(rig.client.take_output().is_empty());
    assert_eq!(rig.conn.reason(), Some(Reason::Dropped(4001)));

    let mut rig = Rig::new(site());
    rig.client.send(b"GET /");
    rig.drive();
    let (mut cx, conn) = rig.cx();
    conn.drop_with(&mut cx, 1000);
    assert_eq!(rig.drive(), Verdict::Done);
    assert!(rig.client.take_output().is_empty(), "no answer to a request not complete");
    assert_eq!(rig.conn.reason(), Some(Reason::Dropped(1000)));
}

#[test]
fn a_client_write_error_ends_the_client_side() {
    let mut rig = Rig::new(site());
    let backend = rig.open("stream");
    rig.client.wire().write_error = Some(Errno::ECONNRESET);
    backend.send(b"to nobody");
    rig.drive();
    assert_eq!(rig.conn.reason(), Some(Reason::ClientError(ErrorKind::ConnectionReset)));
    assert_eq!(rig.drive(), Verdict::Done);
}

#[test]
fn seqpacket_relays_packets_and_empty_messages() {
    let mut rig = Rig::new(site());
    let backend = rig.open("seqpacket");
    rig.client.send(&frame(true, 1, b"one"));
    rig.client.send(&frame(true, 1, b"two"));
    rig.drive();
    assert_eq!(backend.wire().packets, vec![b"one".to_vec(), b"two".to_vec()]);
    backend.send(b"three");
    backend.send(b"");
    rig.drive();
    assert_eq!(frames(&rig.client.take_output()), vec![(1, b"three".to_vec()), (1, Vec::new())]);
    assert_eq!(rig.phase(), Phase::Open, "an empty packet is not the end");
}

#[test]
fn direct_mode_hands_the_client_over_after_the_101() {
    let mut rig = Rig::new(Site { direct: true, ..site() });
    let backend = Fake::default();
    rig.backends.add("echo", Ok(backend.clone()));
    let mut req = request("/echo");
    let early = frame(true, 1, b"early");
    req.extend_from_slice(&early);
    rig.client.wire().room = Some(0);
    rig.client.send(&req);
    rig.drive();
    assert_eq!(rig.phase(), Phase::Handover);
    assert_eq!(backend.wire().fd_sent, None, "not before the 101 is out");
    rig.client.wire().room = None;
    assert_eq!(rig.drive(), Verdict::Done);
    assert!(rig.client.take_output().starts_with(b"HTTP/1.1 101 "));
    assert_eq!(backend.wire().fd_sent, Some(42));
    let record = backend.take_output();
    assert!(record.ends_with(&early), "the bytes read past the head go with the socket");
    assert_eq!(rig.conn.reason(), Some(Reason::HandedOver));
}

#[test]
fn a_handover_the_backend_does_not_take_in_time_ends() {
    let mut rig = Rig::new(Site { direct: true, ..site() });
    let backend = Fake::default();
    backend.wire().room = Some(0);
    rig.backends.add("echo", Ok(backend.clone()));
    rig.client.send(&request("/echo"));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Handover);
    assert_eq!(rig.after(rig.site.close_timeout), Verdict::Done);
    assert_eq!(rig.conn.reason(), Some(Reason::HandoverTimeout));
}

#[test]
fn a_backend_whose_connect_is_under_way_gets_the_101_once_connected() {
    let mut rig = Rig::new(site());
    let backend = Fake::default();
    backend.wire().connecting = Some(Ok(()));
    backend.wire().room = Some(0);
    rig.backends.add("echo", Ok(backend.clone()));
    rig.client.send(&request("/echo"));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Dialing);
    assert!(rig.client.take_output().is_empty(), "no 101 before the backend is connected");
    rig.client.send(&frame(true, 1, b"early"));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Dialing);
    backend.wire().room = None;
    rig.drive();
    assert_eq!(rig.phase(), Phase::Open);
    assert!(rig.client.take_output().starts_with(b"HTTP/1.1 101 "));
    assert_eq!(backend.take_output(), b"early", "what came meanwhile is relayed");
}

#[test]
fn a_refused_connect_is_502_and_an_unfinished_one_504() {
    let mut rig = Rig::new(site());
    let backend = Fake::default();
    backend.wire().connecting = Some(Err(RouteError::Refused));
    rig.backends.add("echo", Ok(backend));
    rig.client.send(&request("/echo"));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Dialing);
    // The socket says writable: the connect is over.
    rig.drive();
    assert_eq!(status(&rig.client.take_output()), "502");
    assert_eq!(rig.conn.reason(), Some(Reason::Refused(Refusal::Route(RouteError::Refused))));

    let mut rig = Rig::new(site());
    let backend = Fake::default();
    backend.wire().connecting = Some(Ok(()));
    backend.wire().room = Some(0);
    rig.backends.add("echo", Ok(backend));
    rig.client.send(&request("/echo"));
    rig.drive();
    assert_eq!(rig.phase(), Phase::Dialing);
    rig.after(rig.site.handshake_timeout);
    assert_eq!(status(&rig.client.take_output()), "504");
    assert_eq!(rig.conn.reason(), Some(Reason::Refused(Refusal::Route(RouteError::TimedOut))));
}

/// A rig whose site offers permessage-deflate on every endpoint, with a few contexts.
#[cfg(feature = "deflate")]
fn compressing() -> Rig {
    use crate::relay::compress::{Contexts, Sizes};
    let mut s = site();
    s.compression.all = true;
    let mut rig = Rig::new(s);
    let sizes = Sizes { deflaters: 1, narrow: 1, inflaters: 2 };
    rig.deflate = Some(Contexts::new(sizes, 6, 15, BUF));
    rig
}

/// Opens `/echo` in framed mode with permessage-deflate agreed, returning the backend.
#[cfg(feature = "deflate")]
fn open_compressed(rig: &mut Rig) -> Fake {
    let backend = Fake::default();
    rig.backends.add("echo", Ok(backend.clone()));
    rig.site.mode = "framed".parse().unwrap();
    let mut req = request("/echo");
    req.truncate(req.len() - 2);
    req.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    rig.client.send(&req);
    rig.drive();
    assert_eq!(rig.phase(), Phase::Open);
    let head = String::from_utf8(rig.client.take_output()).unwrap();
    assert!(head.contains("\r\nSec-WebSocket-Extensions: permessage-deflate;"), "{head}");
    backend
}

/// A masked client frame with RSV1 (the first frame of a compressed message).
#[cfg(feature = "deflate")]
fn compressed_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(fin, opcode, payload);
    f[0] |= 0x40;
    f
}

/// `data` as one non-final stored DEFLATE block: it inflates to as many bytes as it holds.
#[cfg(feature = "deflate")]
fn stored(data: &[u8]) -> Vec<u8> {
    let n = u16::try_from(data.len()).unwrap();
    let mut b = vec![0];
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(&(!n).to_le_bytes());
    b.extend_from_slice(data);
    b
}

/// The framed-mode records the backend got, as (opcode of the first, payload, ended).
#[cfg(feature = "deflate")]
fn message_of(up: &[u8]) -> (u8, Vec<u8>, bool) {
    let mut rest = up;
    let (mut opcode, mut payload, mut fin) = (None, Vec::new(), false);
    while let Some(h) = RecordHeader::parse(rest).unwrap() {
        assert!(!fin, "nothing after the final record");
        opcode.get_or_insert(h.opcode);
        let end = crate::relay::record::HEADER_LEN + h.len as usize;
        payload.extend_from_slice(&rest[crate::relay::record::HEADER_LEN..end]);
        (fin, rest) = (h.fin, &rest[end..]);
    }
    assert!(rest.is_empty());
    (opcode.unwrap_or(0), payload, fin)
}

#[test]
#[cfg(feature = "deflate")]
fn a_compressed_message_ending_in_an_empty_frame_ends_with_nothing_more_to_read() {
    let mut rig = compressing();
    let backend = open_compressed(&mut rig);
    rig.client.send(&compressed_frame(false, 1, &stored(b"hello")));
    rig.drive();
    assert_eq!(message_of(&backend.take_output()), (OP_TEXT, b"hello".to_vec(), false));
    // The last frame is empty: the tail alone ends the message.
    rig.client.send(&frame(true, 0, b""));
    rig.drive();
    assert_eq!(message_of(&backend.take_output()), (0, Vec::new(), true));
    assert_eq!(rig.conn.stats.msgs_up, 1);
}

#[test]
#[cfg(feature = "deflate")]
fn a_tail_owed_while_the_backend_is_full_is_inflated_once_it_drains() {
    // Message sizes around the backend buffer's room: for one of them the empty last frame is
    // decoded when that room is exactly full, so the tail waits for the backend, with no client
    // byte left (and the client buffer given back meanwhile).
    for n in BUF - 300..BUF {
        let mut rig = compressing();
        let backend = open_compressed(&mut rig);
        backend.wire().room = Some(0);
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        rig.client.send(&compressed_frame(false, 2, &stored(&data)));
        rig.client.send(&frame(true, 0, b""));
        rig.drive();
        // The backend takes everything; the client has nothing more to say.
        backend.wire().room = None;
        rig.drive_backend();
        let (opcode, got, fin) = message_of(&backend.take_output());
        assert!(fin, "{n} bytes: the message did not end ({} bytes up)", got.len());
        assert!(opcode == OP_BINARY && got == data, "{n} bytes");
        assert_eq!(rig.conn.stats.msgs_up, 1, "{n} bytes");
    }
}
