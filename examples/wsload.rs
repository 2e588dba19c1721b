//! wsload: the WebSocket load generator of `scripts/bench.py` and of the load smoke test.
//!
//! ```text
//! wsload --url ws://127.0.0.1:8080/echo --conns 100 --size 32 --window 1 --msgs 1000 --duration 20
//! wsload --url wss://127.0.0.1:8443/echo --ca cert.pem ...      (TLS; the CA may be the leaf)
//! wsload --url ws://... --conns 1000 --msgs 1 --hold 30 --ready-file F   (idle connections)
//! wsload --url ws://... --payload json --deflate ...   (router-status JSON, permessage-deflate)
//! wsload gen-cert DIR                 writes DIR/cert.pem and DIR/key.pem (127.0.0.1, localhost)
//! ```
//!
//! N connections are established first (at most 64 handshakes at a time), then every
//! connection sends up to `--msgs` text messages of `--size` bytes, keeping `--window` of them
//! in flight (1 is ping-pong), until all are echoed or `--duration` seconds have passed.
//! Payloads are printable letters (no `\n`, so a line echo works) that shift with the
//! connection and the message number, or with `--payload json` windows of the same length
//! into a compact JSON text of router status records (interfaces, counters, Wi-Fi stations:
//! text that compresses as such status messages do, no `\n` either). The echo is compared
//! byte by byte as one stream per connection, because gateways that unframe (lighttpd, wsgate
//! `stream`, websocketd lines) may merge or split messages: a message counts as echoed when
//! its last byte is back. Any difference, an unexpected close or an I/O error is an error,
//! counted by kind; a connection with an error stops. `--hold S` keeps the connections open
//! after the message phase for S seconds or until the `--ready-file` (written when they are
//! all idle) is removed.
//! `--start-file F` writes F once every connection is up and starts the messages when the
//! caller has removed it, so that the caller can sample CPU counters around the message phase
//! alone (with `--ready-file` and `--hold` for its end).
//!
//! `--deflate` offers permessage-deflate (RFC 7692) the way browsers do. On a connection whose
//! 101 accepts it, every message is sent compressed (a fresh stream per message: the gateway
//! always answers `client_no_context_takeover`), and received messages with RSV1 are inflated
//! before they are compared; elsewhere messages go as they are. The results count the
//! connections that negotiated it and the messages that came back compressed.
//!
//! `wire_tx_bytes` and `wire_rx_bytes` count the bytes written to and read from the sockets
//! (TLS records included) during the message phase, `sent` the messages sent in it: what a
//! message costs on the wire, each way.
//!
//! One mio loop per thread (`--threads`, default 1), no allocation per message besides the
//! latency samples. Results are one JSON object on stdout.
//!
//! A measuring tool, not the gateway: it may panic on misuse and index freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::{CertificateDer, ServerName};
use wsgate::ws::deflate::zstream::{self, Deflater, Inflater};
use wsgate::ws::deflate::TAIL;

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MAX_PENDING_HANDSHAKES: usize = 64;
const SCRATCH: usize = 256 * 1024;

#[derive(Clone, Debug)]
struct Opts {
    addr: SocketAddr,
    host: String,
    path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    conns: usize,
    size: usize,
    window: u64,
    msgs: u64,
    duration: Duration,
    connect_timeout: Duration,
    threads: usize,
    hold: Duration,
    ready_file: Option<PathBuf>,
    start_file: Option<PathBuf>,
    json: bool,
    deflate: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: wsload --url ws[s]://HOST:PORT/PATH [--conns N] [--size BYTES] [--window N] \
         [--msgs N per connection] [--duration SECS] [--threads N] [--ca PEM] \
         [--hold SECS --ready-file FILE] [--start-file FILE] [--connect-timeout SECS] \
         [--payload letters|json] [--deflate]\n       wsload gen-cert DIR"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("gen-cert") {
        gen_cert(args.get(1).unwrap_or_else(|| usage()));
        std::process::exit(0);
    }
    let mut url = None;
    let mut ca = None;
    let (mut conns, mut size, mut window, mut msgs) = (1usize, 32usize, 1u64, u64::MAX);
    let (mut duration, mut hold, mut connect_timeout) = (10.0f64, 0.0f64, 30.0f64);
    let mut threads = 1usize;
    let mut ready_file = None;
    let mut start_file = None;
    let (mut json, mut deflate) = (false, false);
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => url = Some(val()),
            "--conns" => conns = val().parse().unwrap_or_else(|_| usage()),
            "--size" => size = val().parse().unwrap_or_else(|_| usage()),
            "--window" => window = val().parse().unwrap_or_else(|_| usage()),
            "--msgs" => msgs = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => duration = val().parse().unwrap_or_else(|_| usage()),
            "--threads" => threads = val().parse().unwrap_or_else(|_| usage()),
            "--hold" => hold = val().parse().unwrap_or_else(|_| usage()),
            "--connect-timeout" => connect_timeout = val().parse().unwrap_or_else(|_| usage()),
            "--ready-file" => ready_file = Some(PathBuf::from(val())),
            "--start-file" => start_file = Some(PathBuf::from(val())),
            "--ca" => ca = Some(PathBuf::from(val())),
            "--payload" => {
                json = match val().as_str() {
                    "letters" => false,
                    "json" => true,
                    _ => usage(),
                }
            }
            "--deflate" => deflate = true,
            _ => usage(),
        }
    }
    let url = url.unwrap_or_else(|| usage());
    let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else {
        usage()
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr =
        hostport.to_socket_addrs().ok().and_then(|mut a| a.next()).unwrap_or_else(|| usage());
    if size == 0 || window == 0 || conns == 0 || threads == 0 {
        usage();
    }
    let tls = tls.then(|| {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca.expect("wss:// needs --ca PEM")).expect("read --ca");
        for der in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let der: CertificateDer<'static> = der.expect("--ca: PEM");
            roots.add(der).expect("--ca: certificate");
        }
        Arc::new(
            rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
        )
    });
    Opts {
        addr,
        host: hostport.to_owned(),
        path: path.to_owned(),
        tls,
        conns,
        size,
        window,
        msgs,
        duration: Duration::from_secs_f64(duration),
        connect_timeout: Duration::from_secs_f64(connect_timeout),
        threads: threads.min(conns),
        hold: Duration::from_secs_f64(hold),
        ready_file,
        start_file,
        json,
        deflate,
    }
}

/// `len` bytes of compact JSON: router status records one after another, their counters, rates
/// and addresses from a fixed pseudo-random sequence (so they differ from record to record as
/// live counters do). Printable ASCII, no `\n`.
fn router_status_json(len: usize) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut x = 0x2545_f491_u32;
    let mut next = |m: u32| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x % m
    };
    let mut s = String::with_capacity(len + 1024);
    let mut ts = 1_733_112_000u32;
    while s.len() < len {
        ts += 1 + next(5);
        let _ = write!(
            s,
            "{{\"ts\":{ts},\"uptime\":{},\"load\":[{}.{:02},{}.{:02},{}.{:02}],\
             \"mem\":{{\"total\":251904,\"free\":{},\"buffers\":{},\"cached\":{}}},\"interfaces\":[",
            86_400 + next(1_000_000),
            next(3),
            next(100),
            next(2),
            next(100),
            next(2),
            next(100),
            60_000 + next(40_000),
            2_000 + next(6_000),
            30_000 + next(20_000),
        );
        for (i, name) in ["wan", "lan", "wlan0", "wlan1"].iter().enumerate() {
            let _ = write!(
                s,
                "{}{{\"name\":\"{name}\",\"device\":\"eth{i}\",\"up\":{},\"speed\":{},\
                 \"rx_bytes\":{},\"tx_bytes\":{},\"rx_packets\":{},\"tx_packets\":{},\
                 \"rx_errors\":{},\"tx_dropped\":{},\"ipv4\":\"192.168.{}.{}\"}}",
                if i == 0 { "" } else { "," },
                next(8) != 0,
                [100, 1000, 2500][next(3) as usize],
                next(4_000_000_000),
                next(2_000_000_000),
                next(40_000_000),
                next(30_000_000),
                next(20),
                next(300),
                next(4),
                1 + next(254),
            );
        }
        s.push_str("],\"stations\":[");
        for j in 0..1 + next(4) {
            let _ = write!(
                s,
                "{}{{\"mac\":\"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\",\"band\":\"{}\",\
                 \"signal\":-{},\"tx_rate\":{},\"rx_rate\":{},\"connected_s\":{}}}",
                if j == 0 { "" } else { "," },
                next(256),
                next(256),
                next(256),
                next(256),
                next(256),
                next(256),
                ["2.4GHz", "5GHz"][next(2) as usize],
                35 + next(50),
                [65, 130, 286, 573, 866, 1201][next(6) as usize],
                [6, 24, 54, 130, 433, 866][next(6) as usize],
                next(90_000),
            );
        }
        s.push_str("]},");
    }
    s.truncate(len);
    s.into_bytes()
}

fn gen_cert(dir: &str) {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).expect("write key.pem");
}

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Connecting,
    Upgrading,
    Open,
    Failed,
}

#[derive(Clone, Copy, Debug, Default)]
struct Errors {
    connect: u64,
    handshake: u64,
    mismatch: u64,
    closed: u64,
    io: u64,
    protocol: u64,
}

impl Errors {
    fn total(&self) -> u64 {
        self.connect + self.handshake + self.mismatch + self.closed + self.io + self.protocol
    }
    fn add(&mut self, o: &Self) {
        self.connect += o.connect;
        self.handshake += o.handshake;
        self.mismatch += o.mismatch;
        self.closed += o.closed;
        self.io += o.io;
        self.protocol += o.protocol;
    }
}

#[derive(Clone, Copy, Debug)]
enum ErrKind {
    Connect,
    Handshake,
    Mismatch,
    Closed,
    Io,
    Protocol,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    st: St,
    /// Bytes waiting for the socket (plain) or for `tls.writer()` (TLS).
    out: Vec<u8>,
    /// Received (decrypted) bytes not parsed yet.
    inbuf: Vec<u8>,
    /// Payload bytes left in the data frame being received.
    frame_left: u64,
    sent: u64,
    done: u64,
    rx_off: usize,
    sent_at: VecDeque<Instant>,
    frames: u64,
    mask_state: u32,
    /// The 101 accepted permessage-deflate.
    deflate: bool,
    /// Its decompressor (one per connection: messages interleave between connections).
    inflater: Option<Box<Inflater>>,
    /// The data frame being received has FIN.
    rx_fin: bool,
    /// The message being received is compressed (RSV1 on its first frame).
    rx_z: bool,
}

struct Worker<'a> {
    o: &'a Opts,
    pattern: Vec<u8>,
    scratch: Vec<u8>,
    lat: Vec<u32>,
    errs: Errors,
    first_err: Option<String>,
    running: bool,
    frames: u64,
    /// Compresses every message sent on a deflate connection (reset before each one).
    deflater: Option<Deflater>,
    /// Where a message is compressed.
    zbuf: Vec<u8>,
    /// Where received compressed bytes are inflated.
    ibuf: Vec<u8>,
    /// Socket bytes written and read during the message phase.
    wire_tx: u64,
    wire_rx: u64,
    /// Messages received compressed.
    compressed_rx: u64,
}

impl Worker<'_> {
    fn fail(&mut self, c: &mut Conn, kind: ErrKind, what: String) {
        if c.st == St::Failed {
            return;
        }
        c.st = St::Failed;
        let e = &mut self.errs;
        match kind {
            ErrKind::Connect => e.connect += 1,
            ErrKind::Handshake => e.handshake += 1,
            ErrKind::Mismatch => e.mismatch += 1,
            ErrKind::Closed => e.closed += 1,
            ErrKind::Io => e.io += 1,
            ErrKind::Protocol => e.protocol += 1,
        }
        if self.first_err.is_none() {
            self.first_err = Some(format!("conn {}: {what}", c.id));
        }
    }

    fn queue_message(&mut self, c: &mut Conn) {
        let size = self.o.size;
        let start = ((c.id * 131 + c.sent * 7) % 26) as usize;
        let mut payload = &self.pattern[start..start + size];
        let mut b0 = 0x81; // FIN | text
        if c.deflate {
            let d = self.deflater.as_mut().expect("a deflater with --deflate");
            d.reset();
            let n = d.compress(payload, &mut self.zbuf, true).expect("bound holds");
            // RFC 7692 §7.2.1: the sync flush's empty block is not sent.
            let n = if self.zbuf[..n].ends_with(&TAIL) { n - 4 } else { n };
            payload = &self.zbuf[..n];
            b0 |= 0x40; // RSV1: compressed
        }
        let size = payload.len();
        c.out.push(b0);
        if size < 126 {
            c.out.push(0x80 | size as u8);
        } else if size <= 0xffff {
            c.out.push(0x80 | 126);
            c.out.extend_from_slice(&(size as u16).to_be_bytes());
        } else {
            c.out.push(0x80 | 127);
            c.out.extend_from_slice(&(size as u64).to_be_bytes());
        }
        // xorshift32: a different masking key per frame (RFC 6455 §5.3), cheap.
        let mut x = c.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c.mask_state = x;
        let key = x.to_be_bytes();
        c.out.extend_from_slice(&key);
        let at = c.out.len();
        c.out.extend_from_slice(payload);
        wsgate::ws::mask::apply(key, 0, &mut c.out[at..]);
        c.sent += 1;
        c.sent_at.push_back(Instant::now());
    }

    fn top_up(&mut self, c: &mut Conn) {
        while c.st == St::Open && c.sent < self.o.msgs && c.sent - c.done < self.o.window {
            self.queue_message(c);
        }
    }

    /// Passes received payload bytes on to [`Self::verify`], inflating those of a compressed
    /// message (`last`: they end it, so the stripped tail goes in after them).
    fn receive(&mut self, c: &mut Conn, bytes: &[u8], last: bool, now: Instant) -> bool {
        if !c.rx_z {
            return self.verify(c, bytes, now);
        }
        let mut out = std::mem::take(&mut self.ibuf);
        let mut inf = c.inflater.take().expect("an inflater on a deflate connection");
        let mut failed = None;
        let tail: &[u8] = if last { &TAIL } else { &[] };
        'pieces: for mut input in [bytes, tail] {
            let mut full = false;
            // Until the input is used up and the output no longer fills (a match may still
            // be pending in the inflater when it did).
            while !input.is_empty() || full {
                match inf.inflate(input, &mut out) {
                    Ok(r) => {
                        input = &input[r.consumed..];
                        full = r.produced == out.len();
                        if r.produced > 0 && !self.verify(c, &out[..r.produced], now) {
                            failed = Some(None);
                            break 'pieces;
                        }
                        if r.ended || (r.consumed == 0 && r.produced == 0) {
                            break;
                        }
                    }
                    Err(e) => {
                        failed = Some(Some(format!("inflate: {e}")));
                        break 'pieces;
                    }
                }
            }
        }
        if last {
            inf.reset();
            c.rx_z = false;
        }
        c.inflater = Some(inf);
        self.ibuf = out;
        match failed {
            None => true,
            Some(None) => false,
            Some(Some(what)) => {
                self.fail(c, ErrKind::Protocol, what);
                false
            }
        }
    }

    /// Checks echoed payload bytes against what was sent.
    fn verify(&mut self, c: &mut Conn, mut bytes: &[u8], now: Instant) -> bool {
        let size = self.o.size;
        while !bytes.is_empty() {
            if c.done >= c.sent {
                self.fail(c, ErrKind::Mismatch, "data that was never sent".into());
                return false;
            }
            let start = ((c.id * 131 + c.done * 7) % 26) as usize;
            let exp = &self.pattern[start + c.rx_off..start + size];
            let n = exp.len().min(bytes.len());
            if bytes[..n] != exp[..n] {
                let msg = format!("message {} differs at byte {}", c.done, c.rx_off);
                self.fail(c, ErrKind::Mismatch, msg);
                return false;
            }
            c.rx_off += n;
            bytes = &bytes[n..];
            if c.rx_off == size {
                c.rx_off = 0;
                c.done += 1;
                let t0 = c.sent_at.pop_front().unwrap_or(now);
                if self.running {
                    let us = now.saturating_duration_since(t0).as_micros();
                    self.lat.push(us.min(u32::MAX as u128) as u32);
                }
            }
        }
        true
    }

    /// Parses what is in `inbuf`: the 101 answer, then server frames.
    fn parse(&mut self, c: &mut Conn, now: Instant) {
        let mut pos = 0;
        let buf = std::mem::take(&mut c.inbuf);
        if c.st == St::Upgrading {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if buf.len() > 8192 {
                    self.fail(c, ErrKind::Handshake, "no end of the response head".into());
                }
                c.inbuf = buf;
                return;
            };
            let head = &buf[..end + 4];
            let ok = head.starts_with(b"HTTP/1.1 101")
                && head.windows(RFC_ACCEPT.len()).any(|w| w == RFC_ACCEPT);
            if !ok {
                let first = String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned();
                self.fail(c, ErrKind::Handshake, format!("not a 101: {first:?}"));
                return;
            }
            c.deflate = self.o.deflate
                && head.to_ascii_lowercase().windows(18).any(|w| w == b"permessage-deflate");
            if c.deflate {
                c.inflater = Some(Box::new(Inflater::new()));
            }
            c.st = St::Open;
            pos = end + 4;
        }
        while c.st == St::Open && pos < buf.len() {
            if c.frame_left > 0 {
                let n = (c.frame_left.min((buf.len() - pos) as u64)) as usize;
                c.frame_left -= n as u64;
                let last = c.frame_left == 0 && c.rx_fin;
                if !self.receive(c, &buf[pos..pos + n], last, now) {
                    return;
                }
                pos += n;
                continue;
            }
            let rest = &buf[pos..];
            if rest.len() < 2 {
                break;
            }
            let (b0, b1) = (rest[0], rest[1]);
            if b1 & 0x80 != 0 {
                self.fail(c, ErrKind::Protocol, "masked server frame".into());
                return;
            }
            let (len, hl) = match b1 & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as u64, 4),
                127 if rest.len() >= 10 => {
                    (u64::from_be_bytes(rest[2..10].try_into().unwrap()), 10)
                }
                126 | 127 => break,
                l => (l as u64, 2),
            };
            let opcode = b0 & 0x0f;
            let rsv1 = b0 & 0x40 != 0;
            if rsv1 && (!c.deflate || opcode != 1 && opcode != 2) {
                self.fail(c, ErrKind::Protocol, format!("RSV1 on opcode {opcode}"));
                return;
            }
            match opcode {
                0..=2 => {
                    c.frames += 1;
                    c.frame_left = len;
                    c.rx_fin = b0 & 0x80 != 0;
                    if opcode != 0 {
                        c.rx_z = rsv1;
                        self.compressed_rx += u64::from(rsv1 && self.running);
                    }
                    pos += hl;
                    if len == 0 && c.rx_fin && c.rx_z {
                        // An empty last frame still ends the message: its tail goes in.
                        if !self.receive(c, &[], true, now) {
                            return;
                        }
                    }
                }
                8 => {
                    let msg = format!("closed by the server after {} echoes", c.done);
                    self.fail(c, ErrKind::Closed, msg);
                    return;
                }
                9 | 10 => {
                    if rest.len() < hl + len as usize {
                        break;
                    }
                    if opcode == 9 {
                        // pong with the same payload, masked with a zero key
                        c.out.push(0x8a);
                        c.out.push(0x80 | len as u8);
                        c.out.extend_from_slice(&[0; 4]);
                        c.out.extend_from_slice(&rest[hl..hl + len as usize]);
                    }
                    pos += hl + len as usize;
                }
                _ => {
                    self.fail(c, ErrKind::Protocol, format!("opcode {opcode}"));
                    return;
                }
            }
        }
        let mut buf = buf;
        buf.drain(..pos);
        c.inbuf = buf;
    }

    /// Reads what the socket has; false at EOF or error (the connection is failed).
    fn read(&mut self, c: &mut Conn) -> bool {
        if let Some(tls) = c.tls.as_mut() {
            loop {
                match tls.read_tls(&mut c.sock) {
                    Ok(0) => break,
                    Ok(n) => self.wire_rx += if self.running { n as u64 } else { 0 },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.fail(c, ErrKind::Io, format!("read: {e}"));
                        return false;
                    }
                }
                if let Err(e) = tls.process_new_packets() {
                    self.fail(c, ErrKind::Io, format!("tls: {e}"));
                    return false;
                }
                loop {
                    match tls.reader().read(&mut self.scratch) {
                        Ok(0) => break,
                        Ok(n) => c.inbuf.extend_from_slice(&self.scratch[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            self.fail(c, ErrKind::Io, format!("tls read: {e}"));
                            return false;
                        }
                    }
                }
            }
        } else {
            loop {
                match c.sock.read(&mut self.scratch) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.wire_rx += if self.running { n as u64 } else { 0 };
                        c.inbuf.extend_from_slice(&self.scratch[..n]);
                        if n < self.scratch.len() {
                            // A short read emptied the socket: the next byte brings an edge.
                            return true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.fail(c, ErrKind::Io, format!("read: {e}"));
                        return false;
                    }
                }
            }
        }
        // EOF: parse what came before it, then count it unless already failed
        let now = Instant::now();
        self.parse(c, now);
        let msg = format!("EOF after {} echoes", c.done);
        self.fail(c, ErrKind::Closed, msg);
        false
    }

    fn flush(&mut self, c: &mut Conn) {
        let res = if let Some(tls) = c.tls.as_mut() {
            if !c.out.is_empty() {
                tls.writer().write_all(&c.out).expect("unlimited TLS buffer");
                c.out.clear();
            }
            let mut r = Ok(());
            while tls.wants_write() {
                match tls.write_tls(&mut c.sock) {
                    Ok(n) => self.wire_tx += if self.running { n as u64 } else { 0 },
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            r
        } else {
            let mut r = Ok(());
            let mut at = 0;
            while at < c.out.len() {
                match c.sock.write(&c.out[at..]) {
                    Ok(n) => {
                        at += n;
                        self.wire_tx += if self.running { n as u64 } else { 0 };
                    }
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            c.out.drain(..at);
            r
        };
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.fail(c, ErrKind::Io, format!("write: {e}")),
        }
    }

    fn on_event(&mut self, c: &mut Conn, writable: bool) {
        if c.st == St::Failed {
            return;
        }
        if c.st == St::Connecting {
            if !writable {
                return;
            }
            match c.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(c, ErrKind::Connect, format!("{e}")),
            }
            if c.sock.peer_addr().is_err() {
                return; // not connected yet
            }
            let _ = c.sock.set_nodelay(true);
            c.st = St::Upgrading;
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
                self.o.path,
                self.o.host,
                if self.o.deflate {
                    // What browsers offer.
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                } else {
                    ""
                }
            );
            c.out.extend_from_slice(req.as_bytes());
        }
        if self.read(c) {
            let now = Instant::now();
            self.parse(c, now);
        }
        if self.running {
            self.top_up(c);
        }
        if c.st != St::Failed {
            self.flush(c);
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    connected: u64,
    completed: u64,
    lat: Vec<u32>,
    errs: Errors,
    first_err: Option<String>,
    frames: u64,
    elapsed: Duration,
    sent: u64,
    wire_tx: u64,
    wire_rx: u64,
    deflate: u64,
    compressed_rx: u64,
}

fn run_worker(
    o: &Opts,
    ids: std::ops::Range<u64>,
    phase: &Barrier,
    ready: &Barrier,
    stop: &AtomicBool,
) -> Outcome {
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(1024);
    let mut w = Worker {
        o,
        pattern: if o.json {
            router_status_json(26 + o.size)
        } else {
            (0..26 + o.size).map(|i| b'a' + (i % 26) as u8).collect()
        },
        scratch: vec![0; SCRATCH],
        lat: Vec::with_capacity(
            ((o.msgs.min(1_000_000) as usize) * ids.clone().count()).min(1 << 24),
        ),
        errs: Errors::default(),
        first_err: None,
        running: false,
        frames: 0,
        deflater: o.deflate.then(|| Deflater::new(6, 15, 8)),
        zbuf: vec![0; if o.deflate { zstream::bound(o.size) } else { 0 }],
        ibuf: vec![0; if o.deflate { SCRATCH } else { 0 }],
        wire_tx: 0,
        wire_rx: 0,
        compressed_rx: 0,
    };
    let mut conns: Vec<Conn> = Vec::with_capacity(ids.clone().count());
    let mut next = ids.start;
    let t_connect = Instant::now();

    // Phase 1: connect and upgrade, at most MAX_PENDING_HANDSHAKES at a time.
    loop {
        let pending =
            conns.iter().filter(|c| matches!(c.st, St::Connecting | St::Upgrading)).count();
        let mut room = MAX_PENDING_HANDSHAKES.saturating_sub(pending);
        while room > 0 && next < ids.end {
            let idx = conns.len();
            match TcpStream::connect(o.addr) {
                Ok(mut sock) => {
                    poll.registry()
                        .register(&mut sock, Token(idx), Interest::READABLE | Interest::WRITABLE)
                        .expect("register");
                    let tls = o.tls.as_ref().map(|cfg| {
                        let name = ServerName::try_from(
                            o.host.rsplit_once(':').map_or(o.host.as_str(), |h| h.0).to_owned(),
                        )
                        .expect("server name");
                        let mut t = rustls::ClientConnection::new(cfg.clone(), name).expect("tls");
                        t.set_buffer_limit(None);
                        Box::new(t)
                    });
                    conns.push(Conn {
                        id: next,
                        sock,
                        tls,
                        st: St::Connecting,
                        out: Vec::with_capacity(256),
                        inbuf: Vec::with_capacity(256),
                        frame_left: 0,
                        sent: 0,
                        done: 0,
                        rx_off: 0,
                        sent_at: VecDeque::with_capacity(o.window.min(1024) as usize),
                        frames: 0,
                        mask_state: 0x9e37_79b9 ^ (next as u32).wrapping_mul(2_654_435_761) | 1,
                        deflate: false,
                        inflater: None,
                        rx_fin: false,
                        rx_z: false,
                    });
                }
                Err(e) => {
                    w.errs.connect += 1;
                    w.first_err.get_or_insert(format!("connect: {e}"));
                }
            }
            next += 1;
            room -= 1;
        }
        let pending =
            conns.iter().filter(|c| matches!(c.st, St::Connecting | St::Upgrading)).count();
        if next >= ids.end && pending == 0 {
            break;
        }
        if t_connect.elapsed() > o.connect_timeout {
            for c in conns.iter_mut().filter(|c| matches!(c.st, St::Connecting | St::Upgrading)) {
                w.fail(c, ErrKind::Handshake, "connect timeout".into());
            }
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100))).expect("poll");
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            w.on_event(c, ev.is_writable());
        }
    }
    let connected = conns.iter().filter(|c| c.st == St::Open).count() as u64;

    // Phase 2: messages, started together by every thread (after the caller removed the
    // start file it was given).
    if phase.wait().is_leader() {
        if let Some(f) = &o.start_file {
            let _ = std::fs::write(f, b"connected\n");
            let until = Instant::now() + o.connect_timeout;
            while f.exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    phase.wait();
    let start = Instant::now();
    let deadline = start + o.duration;
    w.running = true;
    for c in conns.iter_mut() {
        w.top_up(c);
        if c.st == St::Open {
            w.flush(c);
        }
    }
    let finished = |c: &Conn| c.st != St::Open || c.done >= o.msgs;
    let mut unfinished = conns.iter().filter(|c| !finished(c)).count();
    let mut end = Instant::now();
    while unfinished > 0 {
        let now = Instant::now();
        if now >= deadline {
            end = deadline;
            break;
        }
        poll.poll(&mut events, Some(deadline - now)).expect("poll");
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            let was = finished(c);
            w.on_event(c, ev.is_writable());
            if !was && finished(c) {
                unfinished -= 1;
                end = Instant::now();
            }
        }
    }
    w.running = false;
    let completed = conns.iter().map(|c| c.done).sum();
    let frames = conns.iter().map(|c| c.frames).sum::<u64>() + w.frames;
    let sent = conns.iter().map(|c| c.sent).sum();
    let deflate = conns.iter().filter(|c| c.deflate).count() as u64;
    let (wire_tx, wire_rx, compressed_rx) = (w.wire_tx, w.wire_rx, w.compressed_rx);

    // Phase 3: hold the idle connections while the caller measures.
    ready.wait();
    if !o.hold.is_zero() {
        while !stop.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(50))).expect("poll");
            for ev in events.iter() {
                let c = &mut conns[ev.token().0];
                w.on_event(c, ev.is_writable());
            }
        }
    }
    Outcome {
        connected,
        completed,
        lat: w.lat,
        errs: w.errs,
        first_err: w.first_err,
        frames,
        elapsed: end.saturating_duration_since(start),
        sent,
        wire_tx,
        wire_rx,
        deflate,
        compressed_rx,
    }
}

/// utime + stime of this process, in seconds (from /proc: no unsafe getrusage).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |p| p.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields after ")": state(0) ... utime(11) stime(12); USER_HZ is 100 on Linux
    (ticks(11) + ticks(12)) / 100.0
}

/// A JSON string literal (Rust's `{:?}` escapes are not all JSON).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let o = Arc::new(parse_opts());
    let n = o.threads;
    let phase = Arc::new(Barrier::new(n));
    let ready = Arc::new(Barrier::new(n + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = own_cpu();
    let mut handles = Vec::new();
    for t in 0..n {
        let lo = (o.conns * t / n) as u64;
        let hi = (o.conns * (t + 1) / n) as u64;
        let (o, phase, ready, stop) = (o.clone(), phase.clone(), ready.clone(), stop.clone());
        handles.push(std::thread::spawn(move || run_worker(&o, lo..hi, &phase, &ready, &stop)));
    }
    ready.wait();
    // The message phase is over in every thread: hold the idle connections.
    let cpu1 = own_cpu();
    if let Some(f) = &o.ready_file {
        let _ = std::fs::write(f, b"ready\n");
    }
    let until = Instant::now() + o.hold;
    while Instant::now() < until && o.ready_file.as_ref().is_none_or(|f| f.exists()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Outcome::default();
    for h in handles {
        let r = h.join().expect("worker");
        all.connected += r.connected;
        all.completed += r.completed;
        all.lat.extend_from_slice(&r.lat);
        all.errs.add(&r.errs);
        all.frames += r.frames;
        all.sent += r.sent;
        all.wire_tx += r.wire_tx;
        all.wire_rx += r.wire_rx;
        all.deflate += r.deflate;
        all.compressed_rx += r.compressed_rx;
        all.elapsed = all.elapsed.max(r.elapsed);
        if all.first_err.is_none() {
            all.first_err = r.first_err;
        }
    }
    let cpu = cpu1 - cpu0;
    all.lat.sort_unstable();
    let secs = all.elapsed.as_secs_f64().max(1e-9);
    let e = &all.errs;
    let expected = if o.msgs == u64::MAX { 0 } else { o.msgs * o.conns as u64 };
    println!(
        "{{\"url_tls\": {}, \"conns\": {}, \"connected\": {}, \"size\": {}, \"window\": {}, \
         \"msgs_per_conn\": {}, \"expected\": {}, \"completed\": {}, \"elapsed_s\": {:.4}, \
         \"msgs_per_s\": {:.1}, \"frames_per_msg\": {:.3}, \
         \"latency_us\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}}, \
         \"errors\": {{\"connect\": {}, \"handshake\": {}, \"mismatch\": {}, \"closed\": {}, \
         \"io\": {}, \"protocol\": {}}}, \"error_total\": {}, \"first_error\": {}, \
         \"loadgen_cpu_s\": {:.3}, \"sent\": {}, \"wire_tx_bytes\": {}, \
         \"wire_rx_bytes\": {}, \"deflate_negotiated\": {}, \"compressed_rx\": {}}}",
        o.tls.is_some(),
        o.conns,
        all.connected,
        o.size,
        o.window,
        if o.msgs == u64::MAX { 0 } else { o.msgs },
        expected,
        all.completed,
        secs,
        all.completed as f64 / secs,
        all.frames as f64 / (all.completed.max(1)) as f64,
        pct(&all.lat, 0.5),
        pct(&all.lat, 0.9),
        pct(&all.lat, 0.99),
        pct(&all.lat, 0.999),
        all.lat.last().copied().unwrap_or(0),
        e.connect,
        e.handshake,
        e.mismatch,
        e.closed,
        e.io,
        e.protocol,
        e.total(),
        all.first_err.as_deref().map_or("null".to_owned(), json_string),
        cpu,
        all.sent,
        all.wire_tx,
        all.wire_rx,
        all.deflate,
        all.compressed_rx,
    );
    let failed = e.total() > 0;
    std::process::exit(if failed { 1 } else { 0 });
}
