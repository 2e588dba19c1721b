//! `libwsgate_ouistiti_ws.so`: what ouistiti's `libouistiti_ws.so` did for its backends, for
//! wsgate. Preloaded into an unmodified ouistiti websocket server
//! (`LD_PRELOAD=libwsgate_ouistiti_ws.so websocket_echo ...`), it takes the client sockets that
//! wsgate hands over in direct mode and makes each look like a message socket: the server
//! `accept`s, `recv`s and `send`s plain message bytes, the shim does RFC 6455 underneath.
//!
//! The calls it replaces, as the original did (resolving the real ones with
//! `dlsym(RTLD_NEXT)`):
//!
//! * `socket(AF_UNIX, SOCK_STREAM, proto)`: a real socket, remembered as a possible listener;
//!   `proto == WS_TEXT` (153, ouistiti's `websocket.h`) makes every message the server sends a
//!   text message (the real socket gets protocol 0; so does `WS_AUTO`, -1, which means the
//!   default). Any other socket passes through.
//! * `accept`/`accept4` on such a socket: accepts the gateway's UNIX connection, waits (at most
//!   `WSGATE_WS_WAIT_MS`, 1000 by default) for its first bytes, and when a descriptor comes
//!   with them (direct mode) takes the hand-over record (`wsgate_kit::direct::Receiver`: the
//!   client's TCP socket, the request's lines, the early client bytes), closes the UNIX
//!   connection and returns the client's socket, blocking and without close-on-exec as
//!   `accept` makes it (`accept4` flags apply), with the client's address in `addr`. When the
//!   first bytes come without a descriptor, or none come in time, the gateway relays this
//!   endpoint: the UNIX connection itself is returned, as the original did, and the server
//!   talks to the relay (a late hand-over is still taken at the first `recv`/`read`, the
//!   client's socket replacing the UNIX connection under the same number; with
//!   `WSGATE_WS_WAIT_MS=0` that is always how it is taken).
//! * `bind`, `listen`: not replaced (the original passed them through).
//! * `recv`/`recvfrom`/`read` on a client socket: one call returns one message (or, when the
//!   buffer is too small, the next part of it); pings are answered with pongs carrying their
//!   payload; a client close is answered with the same code and the call returns 0 (end of
//!   stream); a protocol error (unmasked frame, bad UTF-8 in text, ...) is answered with its
//!   close code and the call returns 0. A call that found only control frames, and nothing
//!   more waiting, returns -1 with `EAGAIN`, which ouistiti's servers (`select`, then `recv`)
//!   take as "nothing yet"; the next call that succeeds leaves `errno` as the caller had it
//!   before that one (they test `errno` after an end of stream too, see `sys::received`).
//! * `send`/`sendto`/`write` on a client socket: the whole buffer is one message, binary by
//!   default (as the original) or text after `WS_TEXT` or with `WSGATE_WS_TYPE=text` (bytes that
//!   are not UTF-8 then go as binary: text on the wire is always valid). Returns the length.
//! * `close` on a client socket: sends close 1000 unless a close was exchanged, then closes.
//!   A forked copy stays silent: after `fork`, only the process that used the socket since sends
//!   the close (ouistiti's echo forks per client and its parent closes its copy at once).
//!
//! What it does not cover: `readv`/`writev`/`recvmsg`/`sendmsg`/`sendfile`, `dup`ed numbers,
//! `MSG_PEEK` (refused with `EOPNOTSUPP`), and `select`/`poll` readiness for early bytes (bytes
//! a client sent with its upgrade request are returned by the first `recv`, but a server that
//! waits in `select` first only wakes when the client sends more; browsers never send early).
//!
//! All `unsafe` code is in `sys`: the exported C symbols, the real functions and `errno`.
//! Nothing here may panic (the host is a C program): every failure is an errno, as from the
//! real call, and a call that succeeds leaves `errno` as the caller had it, as libc does, even
//! when the shim's own system calls on the way failed harmlessly.
#![deny(unsafe_code)]
// The unit tests leave out the exported symbols (their own I/O must stay libc's), and with
// them the only callers of the accept path.
#![cfg_attr(test, allow(dead_code))]

mod sys;

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, IntoRawFd as _, OwnedFd};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use wsgate::ws::frame::{
    close_code, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_SERVER_HEADER_LEN,
};
use wsgate::ws::session::{Event, Session};
use wsgate_kit::direct::{Receiver, Taken};

/// ouistiti's `WS_TEXT` (`utils/websocket.h`): the `protocol` of `socket()` asking for text.
const WS_TEXT: c_int = 153;
/// ouistiti's `WS_AUTO`: the old "detect the type" request; detection is gone from ouistiti
/// too, so it means the default (binary). The real socket gets protocol 0.
const WS_AUTO: c_int = -1;
/// Early client bytes taken with a hand-over (the gateway's buffer is 16 KiB by default).
const MAX_EARLY: usize = 1024 * 1024;
/// A header and a whole control frame: 2 + 8 + 4 + 125 bytes.
const HEAD_MAX: usize = 14 + MAX_CONTROL_PAYLOAD;
/// How long a frame may take to leave once part of it is out (a client that stopped reading).
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Settings from the environment, read once.
#[derive(Debug)]
struct Settings {
    /// `WSGATE_WS_TYPE`: `Some(true)` text, `Some(false)` binary, `None` as `socket()` said.
    text: Option<bool>,
    /// `WSGATE_WS_WAIT_MS`: how long `accept` waits for the gateway's first bytes.
    wait: Duration,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let text = match std::env::var("WSGATE_WS_TYPE").as_deref() {
            Ok("text") => Some(true),
            Ok("binary") => Some(false),
            _ => None,
        };
        // At most an hour: a deadline past what `Instant` can add would panic.
        let wait = std::env::var("WSGATE_WS_WAIT_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::from_millis(1000), |ms| Duration::from_millis(ms.min(3_600_000)));
        Settings { text, wait }
    })
}

/// `socket(..., WS_TEXT)` was called: messages go out as text (process-wide, as the original).
static TEXT: AtomicBool = AtomicBool::new(false);

fn sends_text() -> bool {
    settings().text.unwrap_or_else(|| TEXT.load(Ordering::Relaxed))
}

/// Counts the `fork`s of this process (both sides count one at each `fork`): a socket used
/// since the last one is this process's to close politely.
static FORK_GEN: AtomicU32 = AtomicU32::new(0);

fn on_fork() {
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

/// What the shim knows of a descriptor.
#[derive(Clone, Debug)]
enum Kind {
    /// An `AF_UNIX` stream socket: `accept` on it may bring a hand-over.
    Listen,
    /// A UNIX connection from the gateway whose first bytes had not come when `accept`
    /// returned it; `nonblock`/`cloexec` are the `accept4` flags.
    Pending { nonblock: bool, cloexec: bool },
    /// A client's WebSocket connection.
    Conn(Arc<Conn>),
}

/// The descriptors the shim handles, by number. Small (one entry per listener and client),
/// locked only to look up, insert or remove, never across I/O.
static TABLE: Mutex<Vec<(c_int, Kind)>> = Mutex::new(Vec::new());
/// Which numbers below 1024 are in `TABLE`, and how many entries are 1024 or above: the calls
/// on every other descriptor (files, pipes, stderr; a signal handler's `write` to a self-pipe
/// while this thread holds the lock) decide without taking the lock.
/// 32-bit words: 32-bit MIPS has no 64-bit atomics.
static LOW: [AtomicU32; 32] = [const { AtomicU32::new(0) }; 32];
static HIGH: AtomicUsize = AtomicUsize::new(0);

fn table() -> MutexGuard<'static, Vec<(c_int, Kind)>> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `fd` may be in `TABLE` (false: surely not).
fn maybe_tracked(fd: c_int) -> bool {
    match usize::try_from(fd) {
        Ok(n) if n < 1024 => {
            LOW.get(n / 32).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (n % 32)) != 0)
        }
        Ok(_) => HIGH.load(Ordering::Acquire) > 0,
        Err(_) => false,
    }
}

/// Updates the lock-free summary of `fd` (called with the table locked).
fn mark(fd: c_int, tracked: bool) {
    match usize::try_from(fd) {
        Ok(n) if n < 1024 => {
            if let Some(w) = LOW.get(n / 32) {
                if tracked {
                    w.fetch_or(1 << (n % 32), Ordering::Release);
                } else {
                    w.fetch_and(!(1 << (n % 32)), Ordering::Release);
                }
            }
        }
        Ok(_) if tracked => {
            HIGH.fetch_add(1, Ordering::Release);
        }
        Ok(_) => {
            HIGH.fetch_sub(1, Ordering::Release);
        }
        Err(_) => {}
    }
}

fn lookup(fd: c_int) -> Option<Kind> {
    if !maybe_tracked(fd) {
        return None;
    }
    table().iter().find(|(f, _)| *f == fd).map(|(_, k)| k.clone())
}

fn insert(fd: c_int, kind: Kind) {
    let mut t = table();
    if let Some(at) = t.iter().position(|(f, _)| *f == fd) {
        t.swap_remove(at);
        mark(fd, false);
    }
    if t.try_reserve(1).is_ok() {
        t.push((fd, kind));
        mark(fd, true);
    }
}

/// Removes `fd` (closed, or a new descriptor reusing its number); the entry it had.
fn forget(fd: c_int) -> Option<Kind> {
    if !maybe_tracked(fd) {
        return None;
    }
    let mut t = table();
    let at = t.iter().position(|(f, _)| *f == fd)?;
    let (_, kind) = t.swap_remove(at);
    mark(fd, false);
    Some(kind)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn log(what: std::fmt::Arguments<'_>) {
    // Never `eprintln!`: it panics when stderr is closed.
    let _ = writeln!(std::io::stderr(), "wsgate_ouistiti_ws[{}]: {what}", std::process::id());
}

/// One client's WebSocket connection.
#[derive(Debug)]
struct Conn {
    fd: c_int,
    rx: Mutex<Reader>,
    tx: Mutex<Writer>,
    /// `FORK_GEN` when this process last used the socket.
    used: AtomicU32,
}

/// What a `recv` on a client socket came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Received {
    /// This many bytes of a message; 0 at the end of the stream.
    Bytes(usize),
    /// Only control frames were waiting (each handled), and nothing more: no message bytes, and
    /// the stream goes on. The C call returns -1 with `EAGAIN` (see `sys::received`).
    OnlyControl,
}

/// The receive side: where the decoder is in the client's byte stream.
#[derive(Debug)]
struct Reader {
    session: Session,
    /// Client bytes the gateway had read (they come before the socket's).
    early: Vec<u8>,
    early_pos: usize,
    /// A frame header being read, or a whole control frame.
    head: [u8; HEAD_MAX],
    have: usize,
    /// Payload bytes of the current data frame still to read.
    remaining: u64,
    /// The stream is over for the server (close exchanged, failure, end of stream).
    done: bool,
}

/// The send side.
#[derive(Debug)]
struct Writer {
    /// A close frame went out: no more messages.
    closed: bool,
    /// A frame was cut by a write error: nothing more can go out.
    broken: bool,
}

impl Conn {
    fn new(fd: c_int, early: &[u8]) -> Option<Self> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(early.len()).ok()?;
        buf.extend_from_slice(early);
        Some(Self {
            fd,
            rx: Mutex::new(Reader {
                // Messages stream through the caller's buffer: no size limit costs memory.
                session: Session::new(u64::MAX),
                early: buf,
                early_pos: 0,
                head: [0; HEAD_MAX],
                have: 0,
                remaining: 0,
                done: false,
            }),
            tx: Mutex::new(Writer { closed: false, broken: false }),
            used: AtomicU32::new(FORK_GEN.load(Ordering::Relaxed)),
        })
    }

    fn touch(&self) {
        self.used.store(FORK_GEN.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// This process used the socket since the last `fork` (or there was none since it came).
    fn is_owner(&self) -> bool {
        self.used.load(Ordering::Relaxed) == FORK_GEN.load(Ordering::Relaxed)
    }

    /// Writes one whole frame. `flags` are the caller's; `MSG_DONTWAIT` only until the first
    /// byte is out (a frame must not stay cut in half).
    fn write_frame(
        &self,
        tx: &mut Writer,
        opcode: OpCode,
        payload: &[u8],
        flags: c_int,
    ) -> Result<(), Errno> {
        if tx.closed || tx.broken {
            return Err(Errno::EPIPE);
        }
        let mut head = [0u8; MAX_SERVER_HEADER_LEN];
        let Some(n) = FrameHeader::emit(true, opcode, payload.len() as u64, &mut head) else {
            return Err(Errno::EINVAL);
        };
        let parts = [head.get(..n).unwrap_or_default(), payload];
        match sys::send_all(self.fd, &parts, flags, WRITE_WAIT) {
            Ok(()) => {
                tx.closed = opcode == OpCode::Close;
                Ok(())
            }
            Err((e, 0)) => Err(e),
            Err((e, _)) => {
                tx.broken = true;
                Err(e)
            }
        }
    }

    fn send_control(&self, opcode: OpCode, payload: &[u8]) {
        let mut tx = lock(&self.tx);
        let _ = self.write_frame(&mut tx, opcode, payload, libc::MSG_NOSIGNAL);
    }

    /// Answers a close or fails the connection (§7.1.7) with `payload`, then shuts our side
    /// down: the server closes the TCP connection first (§7.1.1).
    fn end(&self, rx: &mut Reader, payload: &[u8]) {
        self.send_control(OpCode::Close, payload);
        rx.done = true;
        if self.is_owner() {
            let _ = sys::shutdown(self.fd, libc::SHUT_WR);
        }
    }

    /// Reads into `dst`: early bytes first, then the socket.
    fn fill(&self, rx: &mut Reader, dst: &mut [u8], nonblock: bool) -> Result<usize, Errno> {
        let early = rx.early.get(rx.early_pos..).unwrap_or_default();
        if !early.is_empty() {
            let n = early.len().min(dst.len());
            if let (Some(d), Some(s)) = (dst.get_mut(..n), early.get(..n)) {
                d.copy_from_slice(s);
            }
            rx.early_pos += n;
            if rx.early_pos == rx.early.len() {
                rx.early = Vec::new();
                rx.early_pos = 0;
            }
            return Ok(n);
        }
        sys::recv(self.fd, dst, nonblock)
    }

    /// `recv`: the next message, or the next part of it when `buf` is too small.
    fn recv(&self, buf: &mut [u8], dontwait: bool) -> Result<Received, Errno> {
        self.touch();
        let mut rx = lock(&self.rx);
        let mut got = 0usize;
        let mut control = false;
        loop {
            if rx.done || buf.is_empty() {
                return Ok(Received::Bytes(got));
            }
            // Once only control frames were handled, do not block for more: a `select` loop
            // must get back to its other clients.
            let nonblock = dontwait || (control && got == 0);
            let read = if rx.remaining > 0 {
                // A data frame's payload: straight into the caller's buffer, unmasked there.
                let room = buf.get_mut(got..).unwrap_or_default();
                if room.is_empty() {
                    return Ok(Received::Bytes(got));
                }
                let want = room.len().min(usize::try_from(rx.remaining).unwrap_or(usize::MAX));
                let dst = room.get_mut(..want).unwrap_or_default();
                match self.fill(&mut rx, dst, nonblock) {
                    Ok(0) => Ok(0),
                    Ok(n) => {
                        let piece = dst.get_mut(..n).unwrap_or_default();
                        match rx.session.decode(piece, n) {
                            Ok((_, Some(Event::Data { fin, len, .. }))) => {
                                got += len;
                                rx.remaining = rx.remaining.saturating_sub(len as u64);
                                if fin {
                                    return Ok(Received::Bytes(got));
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                self.end(&mut rx, &e.close_code().to_be_bytes());
                                return Ok(Received::Bytes(got));
                            }
                        }
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            } else {
                let need = head_need(rx.head.get(..rx.have).unwrap_or_default());
                if rx.have < need {
                    let (have, mut head) = (rx.have, rx.head);
                    let dst = head.get_mut(have..need).unwrap_or_default();
                    let r = self.fill(&mut rx, dst, nonblock);
                    rx.head = head;
                    if let Ok(n) = r {
                        rx.have += n;
                    }
                    r
                } else {
                    if let Some(done) = self.frame(&mut rx, got, &mut control) {
                        return Ok(Received::Bytes(done));
                    }
                    continue;
                }
            };
            match read {
                Ok(0) => {
                    // The client's TCP stream ended without a close frame.
                    rx.done = true;
                    return Ok(Received::Bytes(got));
                }
                Ok(_) => {}
                Err(e) => {
                    if !matches!(e, Errno::EAGAIN | Errno::EINTR) {
                        rx.done = true;
                    }
                    return match (got, e) {
                        (0, Errno::EAGAIN) if control => Ok(Received::OnlyControl),
                        (0, e) => Err(e),
                        // A message cut by "would block" goes out in parts (non-blocking only).
                        (got, _) => Ok(Received::Bytes(got)),
                    };
                }
            }
        }
    }

    /// A whole header (and control payload) is in `rx.head`: decodes it. `Some(n)` to return
    /// `n` bytes to the caller now.
    fn frame(&self, rx: &mut Reader, got: usize, control: &mut bool) -> Option<usize> {
        let have = rx.have;
        let mut head = rx.head;
        let frame = head.get_mut(..have).unwrap_or_default();
        let len = match FrameHeader::parse(frame) {
            Ok(Some((h, _))) => h.len,
            _ => 0,
        };
        let decoded = rx.session.decode(frame, 0);
        rx.have = 0;
        match decoded {
            Err(e) => {
                self.end(rx, &e.close_code().to_be_bytes());
                Some(got)
            }
            // A data frame's header: its payload follows.
            Ok((_, None)) => {
                rx.remaining = len;
                None
            }
            // An empty data frame: ends a message that has bytes; an empty message is not
            // passed on (0 would read as the end of the stream).
            Ok((_, Some(Event::Data { fin, .. }))) => (fin && got > 0).then_some(got),
            Ok((_, Some(Event::Ping(p)))) => {
                // §5.5.2: a Pong with the same Application data.
                self.send_control(OpCode::Pong, p.as_slice());
                *control = true;
                None
            }
            Ok((_, Some(Event::Pong(_)))) => {
                *control = true;
                None
            }
            Ok((_, Some(Event::Close { code, .. }))) => {
                // §5.5.1: answer with a close echoing the status code.
                let payload = code.map(u16::to_be_bytes);
                self.end(rx, payload.as_ref().map_or(&[], |p| p));
                Some(got)
            }
        }
    }

    /// `send`: `data` as one message.
    fn send(&self, data: &[u8], flags: c_int) -> Result<usize, Errno> {
        self.touch();
        if data.is_empty() {
            // As the original: nothing is sent for an empty buffer.
            return Ok(0);
        }
        let opcode = if sends_text() && std::str::from_utf8(data).is_ok() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let mut tx = lock(&self.tx);
        self.write_frame(&mut tx, opcode, data, flags)?;
        Ok(data.len())
    }

    /// `close`: a close frame unless one was exchanged (and only from the process that uses the
    /// socket), then our side shut down and what the client already sent read away, so that
    /// closing does not reset the connection before the close frame is read.
    fn close(&self) {
        if !self.is_owner() {
            return;
        }
        {
            let mut tx = lock(&self.tx);
            if !tx.closed && !tx.broken {
                let payload = close_code::NORMAL.to_be_bytes();
                let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
                let _ = self.write_frame(&mut tx, OpCode::Close, &payload, flags);
            }
        }
        let _ = sys::shutdown(self.fd, libc::SHUT_WR);
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match sys::recv(self.fd, &mut scratch, true) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// Bytes of `head` needed before the frame can be decoded: the header, and for a control
/// frame its payload too (at most 125 bytes; longer ones are refused by the session).
fn head_need(head: &[u8]) -> usize {
    let Some(&[b0, b1]) = head.first_chunk::<2>() else { return 2 };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let hlen = 2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 };
    if head.len() < hlen || OpCode::from_nibble(b0).is_control() {
        return hlen.max(match FrameHeader::parse(head) {
            Ok(Some((h, n))) if h.len <= MAX_CONTROL_PAYLOAD as u64 => n + h.len as usize,
            _ => hlen,
        });
    }
    hlen
}

/// What [`after_accept`] made of an accepted UNIX connection.
#[derive(Debug)]
enum Accepted {
    /// Return it as it is (relay mode, or nothing came yet).
    Same,
    /// Direct mode: return this client socket instead.
    Direct(c_int),
    /// The hand-over failed (logged): accept the next connection.
    Retry,
}

/// Registers the fork counter once.
fn watch_forks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sys::register_atfork);
}

/// A hand-over taken from `unix` within `wait`: the client's socket and its connection (for
/// the descriptor number `fd`, or the client socket's own when `None`).
fn take_handover(
    unix: c_int,
    wait: Duration,
    fd: Option<c_int>,
) -> Result<(OwnedFd, Conn), String> {
    let deadline = Instant::now() + wait;
    let mut receiver = Receiver::new(MAX_EARLY);
    loop {
        match sys::with_fd(unix, |fd| receiver.receive(fd)) {
            Ok(Some(Taken::Direct(h))) => {
                let number = fd.unwrap_or_else(|| h.client.as_raw_fd());
                let conn = Conn::new(number, h.early()).ok_or("no memory for the early bytes")?;
                return Ok((h.client, conn));
            }
            Ok(Some(Taken::Relay(_))) => return Err("a descriptor came after data".into()),
            Ok(None) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("the hand-over record did not come in time".into());
                }
                let _ = sys::wait_readable(unix, Some(left));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Makes `client` what `accept4(flags)` would have returned: blocking unless `nonblock`,
/// inherited by `exec` unless `cloexec`.
fn like_accepted(client: &OwnedFd, nonblock: bool, cloexec: bool) {
    let _ = sys::set_flags(client.as_raw_fd(), nonblock, cloexec);
}

/// Called by `accept` with a fresh UNIX connection `unix` on a listener.
fn after_accept(unix: c_int, nonblock: bool, cloexec: bool) -> Accepted {
    watch_forks();
    let wait = settings().wait;
    // 0: never look in `accept`; the first use of the connection decides.
    if wait.is_zero() || !sys::wait_readable(unix, Some(wait)).unwrap_or(false) {
        insert(unix, Kind::Pending { nonblock, cloexec });
        return Accepted::Same;
    }
    if sys::peek_has_fd(unix) != Ok(true) {
        return Accepted::Same;
    }
    match take_handover(unix, wait, None) {
        Ok((client, conn)) => {
            like_accepted(&client, nonblock, cloexec);
            let fd = client.into_raw_fd();
            sys::real_close(unix);
            insert(fd, Kind::Conn(Arc::new(conn)));
            Accepted::Direct(fd)
        }
        Err(why) => {
            log(format_args!("hand-over from the gateway failed: {why}"));
            sys::real_close(unix);
            Accepted::Retry
        }
    }
}

/// A `Pending` connection at its first use: a hand-over that came late is taken now (the
/// client's socket replaces the UNIX connection under the same number); otherwise it is a
/// relay connection and the shim lets go of it. `block`: wait for the first bytes.
fn resolve(
    fd: c_int,
    nonblock: bool,
    cloexec: bool,
    block: bool,
) -> Result<Option<Arc<Conn>>, Errno> {
    let ready = sys::wait_readable(fd, if block { None } else { Some(Duration::ZERO) })?;
    if !ready {
        return Err(Errno::EAGAIN);
    }
    forget(fd);
    if sys::peek_has_fd(fd) != Ok(true) {
        return Ok(None);
    }
    match take_handover(fd, settings().wait, Some(fd)) {
        Ok((client, conn)) => {
            like_accepted(&client, nonblock, cloexec);
            sys::replace(client, fd, cloexec)?;
            let conn = Arc::new(conn);
            insert(fd, Kind::Conn(conn.clone()));
            Ok(Some(conn))
        }
        Err(why) => {
            // The connection is useless: the server reads its end and closes it.
            log(format_args!("late hand-over from the gateway failed: {why}"));
            let _ = sys::shutdown(fd, libc::SHUT_RDWR);
            Ok(None)
        }
    }
}

/// `recv`/`read` on a descriptor the shim knows; `None`: call the real function.
fn on_recv(fd: c_int, kind: Kind, buf: &mut [u8], flags: c_int) -> Option<Result<Received, Errno>> {
    let conn = match kind {
        Kind::Listen => return None,
        Kind::Conn(c) => c,
        Kind::Pending { nonblock, cloexec } => {
            let block = flags & libc::MSG_DONTWAIT == 0 && !nonblock;
            match resolve(fd, nonblock, cloexec, block) {
                Ok(Some(c)) => c,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    };
    if flags & libc::MSG_PEEK != 0 {
        return Some(Err(Errno::EOPNOTSUPP));
    }
    Some(conn.recv(buf, flags & libc::MSG_DONTWAIT != 0))
}

/// `send`/`write` on a descriptor the shim knows; `None`: call the real function.
fn on_send(fd: c_int, kind: Kind, data: &[u8], flags: c_int) -> Option<Result<usize, Errno>> {
    let conn = match kind {
        Kind::Listen => return None,
        Kind::Conn(c) => c,
        // Nothing came from the gateway yet and the server speaks first: that is a relay.
        Kind::Pending { nonblock, cloexec } => match resolve(fd, nonblock, cloexec, false) {
            Ok(Some(c)) => c,
            Ok(None) | Err(Errno::EAGAIN) => {
                forget(fd);
                return None;
            }
            Err(e) => return Some(Err(e)),
        },
    };
    Some(conn.send(data, flags))
}

/// `close`: the shim forgets `fd` (the caller then closes it for real).
fn on_close(fd: c_int) {
    if let Some(Kind::Conn(conn)) = forget(fd) {
        conn.close();
    }
}

/// `socket`: the protocol for the real call, and whether to remember the socket.
fn on_socket(domain: c_int, ty: c_int, protocol: c_int) -> (c_int, bool) {
    let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    if domain != libc::AF_UNIX || base != libc::SOCK_STREAM {
        return (protocol, false);
    }
    if protocol == WS_TEXT {
        TEXT.store(true, Ordering::Relaxed);
        return (0, true);
    }
    if protocol == WS_AUTO {
        return (0, true);
    }
    (protocol, true)
}

#[cfg(test)]
mod tests;
