//! Direct mode seen from a backend: the gateway hands over the client's TCP socket after the
//! 101 and the backend speaks WebSocket on it itself (see the README, "Direct mode").
//!
//! * [`Receiver`]: takes the hand-over from an accepted UNIX connection, non-blocking: the
//!   client's descriptor (`SCM_RIGHTS`, with the first bytes), the record's `NAME=value` lines
//!   (at most [`MAX_RECORD_LINES`] bytes), then `EARLY_DATA_LENGTH` client bytes (at most the
//!   receiver's limit). When the first bytes come without a descriptor the gateway relays
//!   this endpoint instead ([`Taken::Relay`]), so one backend serves both ways, as ouistiti's
//!   interposer did. [`parse_record`] is the sans-IO part.
//! * [`Endpoint`]: the server side of a WebSocket connection over that socket, non-blocking and
//!   bounded: client bytes (the early ones first) go through [`wsgate::ws::session::Session`]
//!   into whole messages (text checked as UTF-8 across fragments, at most `max_message`
//!   bytes); pings are answered with pongs, a close with a close; messages go out as unmasked
//!   server frames through a queue of at most `max_queue` bytes.
//!
//! Memory per connection: the read buffer, one message being reassembled and the output queue;
//! the last two grow on use, up to their limits, and give back what is over 64 KiB once a
//! message is handled.
//!
//! What it does not own: the poll loop, timers (a caller should end a connection that stays
//! [`Endpoint::is_closing`] too long) and what the messages mean.
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::context;
use crate::sys::fdpass;
use wsgate::ws::frame::{close_code, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use wsgate::ws::session::{DataKind, Event, ProtocolError, Session};

/// Most bytes of `NAME=value` lines in a hand-over record (the empty line included).
pub const MAX_RECORD_LINES: usize = 16 * 1024;
/// The gateway's largest buffer (`buffer_size`): early data never exceeds it.
pub const MAX_EARLY_DATA: usize = 16 * 1024 * 1024;
/// Bytes read at a time by a [`Receiver`].
const CHUNK: usize = 4096;
/// The message and output buffers keep at most this much capacity between messages: a big
/// message costs its memory while it is handled, not for the rest of the connection.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A hand-over record that cannot be taken.
#[derive(Debug)]
pub enum HandoverError {
    /// The connection ended before the record was complete.
    Truncated,
    /// No empty line within [`MAX_RECORD_LINES`] bytes.
    LinesTooLong,
    /// A line is not `NAME=value`, or `EARLY_DATA_LENGTH` is missing or not a number.
    Malformed(&'static str),
    /// More early data than the receiver takes.
    EarlyTooLong(usize),
    /// Bytes after the early data (the gateway sends nothing more).
    TrailingBytes,
    /// More than one descriptor, or a descriptor after the first bytes.
    BadDescriptor(&'static str),
    /// The memory for the record could not be had.
    NoMemory,
    /// The socket failed.
    Io(Errno),
}

impl core::fmt::Display for HandoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("the gateway closed before the hand-over record ended"),
            Self::LinesTooLong => {
                write!(f, "hand-over record lines exceed {MAX_RECORD_LINES} bytes")
            }
            Self::Malformed(why) => write!(f, "malformed hand-over record: {why}"),
            Self::EarlyTooLong(n) => write!(f, "{n} bytes of early data exceed the limit"),
            Self::TrailingBytes => f.write_str("bytes after the hand-over record"),
            Self::BadDescriptor(why) => write!(f, "hand-over descriptor: {why}"),
            Self::NoMemory => f.write_str("cannot allocate the hand-over record"),
            Self::Io(e) => write!(f, "recvmsg: {e}"),
        }
    }
}

/// Where a complete record's parts are in its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    /// The `NAME=value` lines are `bytes[..lines]` (each ending with `\n`).
    pub lines: usize,
    /// The early data is `bytes[lines + 1..lines + 1 + early]`.
    pub early: usize,
}

/// Parses a hand-over record from the start of `bytes`: `Ok(None)` while incomplete.
///
/// # Errors
/// [`HandoverError`] for a record that can never be right, as soon as that shows.
pub fn parse_record(bytes: &[u8], max_early: usize) -> Result<Option<RecordLayout>, HandoverError> {
    // A blank first line ends the record at once: it has no lines. Checked before looking
    // for "\n\n", which would otherwise skip it once a later blank line arrived, and make
    // the answer depend on how the bytes were cut (found by fuzz/direct_record).
    if bytes.first() == Some(&b'\n') {
        return Err(HandoverError::Malformed("empty record"));
    }
    let window = bytes.get(..MAX_RECORD_LINES).unwrap_or(bytes);
    let Some(blank) = window.windows(2).position(|w| w == b"\n\n").map(|p| p + 1) else {
        if bytes.len() >= MAX_RECORD_LINES {
            return Err(HandoverError::LinesTooLong);
        }
        return Ok(None);
    };
    let lines = bytes.get(..blank).unwrap_or_default();
    let mut early = None;
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            return Err(HandoverError::Malformed("a line without '='"));
        };
        if eq == 0 {
            return Err(HandoverError::Malformed("a line without a name"));
        }
    }
    if let Some(v) = context::value(lines, "EARLY_DATA_LENGTH") {
        let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<usize>().ok())
            .flatten()
            .ok_or(HandoverError::Malformed("EARLY_DATA_LENGTH is not a number"))?;
        early = Some(n);
    }
    let early = early.ok_or(HandoverError::Malformed("no EARLY_DATA_LENGTH"))?;
    if early > max_early {
        return Err(HandoverError::EarlyTooLong(early));
    }
    let have = bytes.len().saturating_sub(blank + 1);
    if have > early {
        return Err(HandoverError::TrailingBytes);
    }
    Ok((have == early).then_some(RecordLayout { lines: blank, early }))
}

/// A taken hand-over: the client's socket, its metadata and the bytes it sent early.
#[derive(Debug)]
pub struct Handover {
    /// The record: `NAME=value` lines, then the early data.
    bytes: Vec<u8>,
    layout: RecordLayout,
    /// The client's TCP socket (non-blocking, as the gateway had it).
    pub client: OwnedFd,
}

impl Handover {
    /// The `NAME=value` lines (see [`context::value`]).
    #[must_use]
    pub fn lines(&self) -> &[u8] {
        self.bytes.get(..self.layout.lines).unwrap_or_default()
    }

    /// A value of the record: `REMOTE_ADDR`, `REMOTE_PORT`, `REQUEST_URI`, `SCRIPT_NAME`,
    /// `QUERY_STRING`, `HTTP_HOST`, `HTTP_ORIGIN`, `SEC_WEBSOCKET_PROTOCOL`, `HTTPS`, ...
    #[must_use]
    pub fn value(&self, name: &str) -> Option<&str> {
        context::value(self.lines(), name)
    }

    /// The client's address and port, from the record (whole, IPv4 or IPv6).
    #[must_use]
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        context::peer(self.lines())
    }

    /// The endpoint's path (`SCRIPT_NAME`, e.g. `/chat`).
    #[must_use]
    pub fn path(&self) -> Option<&str> {
        self.value("SCRIPT_NAME")
    }

    /// The request's query string, without `?` (empty when there is none).
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.value("QUERY_STRING")
    }

    /// The subprotocol the gateway chose in the 101, if any.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.value("SEC_WEBSOCKET_PROTOCOL")
    }

    /// The client bytes the gateway read after the request head: they come first.
    #[must_use]
    pub fn early(&self) -> &[u8] {
        let start = self.layout.lines + 1;
        self.bytes.get(start..start + self.layout.early).unwrap_or_default()
    }
}

/// What a UNIX connection from the gateway turned out to be.
#[derive(Debug)]
pub enum Taken {
    /// Direct mode: the client's socket is ours (the UNIX connection may be closed).
    Direct(Handover),
    /// No descriptor came with the first bytes: the gateway relays this endpoint; these bytes
    /// are the start of the relay stream, and the UNIX connection goes on carrying it.
    Relay(Vec<u8>),
}

/// Takes a hand-over from one accepted UNIX stream connection, a read at a time.
#[derive(Debug)]
pub struct Receiver {
    bytes: Vec<u8>,
    fd: Option<OwnedFd>,
    max_early: usize,
}

impl Receiver {
    /// A receiver taking at most `max_early` early bytes (at most [`MAX_EARLY_DATA`]).
    #[must_use]
    pub fn new(max_early: usize) -> Self {
        Self { bytes: Vec::new(), fd: None, max_early: max_early.min(MAX_EARLY_DATA) }
    }

    /// Reads what `conn` has (non-blocking): `Ok(None)` until the record is complete (wait for
    /// readability and call again).
    ///
    /// # Errors
    /// [`HandoverError`]; the connection should then be closed.
    pub fn receive(&mut self, conn: impl AsFd) -> Result<Option<Taken>, HandoverError> {
        let mut chunk = [0u8; CHUNK];
        loop {
            let got = match fdpass::recv_with_fd(conn.as_fd(), &mut chunk) {
                Ok(got) => got,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(HandoverError::Io(e)),
            };
            if got.extra {
                return Err(HandoverError::BadDescriptor("more than one"));
            }
            let data = chunk.get(..got.len).unwrap_or_default();
            match (got.fd, self.bytes.is_empty() && self.fd.is_none()) {
                (Some(fd), true) => self.fd = Some(fd),
                (Some(_), false) => {
                    return Err(HandoverError::BadDescriptor("after the first bytes"))
                }
                (None, true) if !data.is_empty() => return Ok(Some(Taken::Relay(data.to_vec()))),
                (None, _) => {}
            }
            if data.is_empty() {
                return Err(HandoverError::Truncated);
            }
            if self.bytes.try_reserve(data.len()).is_err() {
                return Err(HandoverError::NoMemory);
            }
            self.bytes.extend_from_slice(data);
            if let Some(layout) = parse_record(&self.bytes, self.max_early)? {
                let Some(client) = self.fd.take() else {
                    return Err(HandoverError::BadDescriptor("none came"));
                };
                let bytes = core::mem::take(&mut self.bytes);
                return Ok(Some(Taken::Direct(Handover { bytes, layout, client })));
            }
        }
    }
}

/// The fixed limits of an [`Endpoint`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message received (a bigger one fails the connection with close 1009).
    pub max_message: usize,
    /// Most bytes of frames waiting to be written.
    pub max_queue: usize,
    /// The read buffer (at least 256 bytes; the early data may make it bigger).
    pub read_len: usize,
}

/// What [`Endpoint::next_incoming`] found.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A whole message (text is valid UTF-8).
    Message(DataKind, &'a [u8]),
    /// The client closed (the answer is queued); `None` for a close without a code.
    Closed(Option<u16>),
    /// The client broke the protocol; the close with this error's code is queued.
    Failed(ProtocolError),
}

/// Where the closing handshake is (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Open,
    /// We sent a close (not a failure): reading, data discarded, until the client's close.
    CloseSent,
    /// Both closes are done (or we failed the connection): write what is queued, then shut
    /// down our side (§7.1.1: the server closes the TCP connection first).
    Flushing,
    /// Our side is shut down: read and discard until the client ends.
    Linger,
}

/// The server side of one WebSocket connection over a byte stream `S`.
#[derive(Debug)]
pub struct Endpoint<S> {
    io: S,
    session: Session,
    stage: Stage,
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// A fragmented message so far (allocated on use, at most `max_message`).
    msg: Vec<u8>,
    /// `msg` was handed out: clear it before the next event.
    msg_taken: bool,
    out: Outbox,
    eof: bool,
    /// A write failed or the socket was reset: nothing more goes out.
    broken: bool,
}

/// A stream the endpoint can shut down for writing.
pub trait ShutdownWrite {
    /// `shutdown(SHUT_WR)`.
    ///
    /// # Errors
    /// The `shutdown` error.
    fn shutdown_write(&self) -> std::io::Result<()>;
}

impl ShutdownWrite for mio::net::TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl ShutdownWrite for std::net::TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl ShutdownWrite for mio::net::UnixStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl ShutdownWrite for std::os::unix::net::UnixStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl<S: Read + Write + ShutdownWrite> Endpoint<S> {
    /// An endpoint on `io` whose first input is `early`.
    ///
    /// # Errors
    /// [`HandoverError::NoMemory`] when the read buffer cannot be allocated.
    pub fn new(io: S, early: &[u8], limits: Limits) -> Result<Self, HandoverError> {
        let len = limits.read_len.max(256).max(early.len());
        let mut input = Vec::new();
        input.try_reserve_exact(len).map_err(|_| HandoverError::NoMemory)?;
        input.resize(len, 0);
        if let Some(dst) = input.get_mut(..early.len()) {
            dst.copy_from_slice(early);
        }
        Ok(Self {
            io,
            session: Session::new(limits.max_message as u64),
            stage: Stage::Open,
            input: input.into_boxed_slice(),
            start: 0,
            end: early.len(),
            msg: Vec::new(),
            msg_taken: false,
            out: Outbox { buf: Vec::new(), start: 0, max: limits.max_queue, closed: false },
            eof: false,
            broken: false,
        })
    }

    /// The stream.
    pub fn io(&self) -> &S {
        &self.io
    }

    /// The stream (to register it with a poll).
    pub fn io_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Messages may be sent (no close was sent or received).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.stage == Stage::Open && !self.out.closed && !self.eof && !self.broken
    }

    /// The closing handshake has started (bound its time).
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.stage != Stage::Open
    }

    /// The connection is over: drop the endpoint (closing the socket).
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.broken || (self.eof && (self.pending() == 0 || self.stage == Stage::Linger))
    }

    /// Bytes queued for the client.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    /// Worth reading: not at end of stream, and the input buffer has room.
    #[must_use]
    pub fn wants_read(&self) -> bool {
        !self.eof && !self.broken && (self.start > 0 || self.end < self.input.len())
    }

    /// Something waits to be written.
    #[must_use]
    pub fn wants_write(&self) -> bool {
        !self.broken && self.pending() > 0
    }

    /// One read from the stream. `Ok(true)` when bytes (or the end of the stream) came,
    /// `Ok(false)` when it would block or the buffer is full.
    ///
    /// # Errors
    /// The read error; the connection is then over.
    pub fn read(&mut self) -> std::io::Result<bool> {
        if !self.wants_read() {
            return Ok(false);
        }
        if self.start > 0 && self.end == self.input.len() || self.start == self.end {
            self.input.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let room = self.input.get_mut(self.end..).unwrap_or_default();
        match self.io.read(room) {
            Ok(0) => {
                self.eof = true;
                if self.stage == Stage::Linger {
                    self.start = self.end;
                }
                Ok(true)
            }
            Ok(n) => {
                self.end += n;
                if self.stage == Stage::Linger {
                    self.start = self.end;
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(true),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Decodes what was read up to the next message or close. Pings are answered and pongs
    /// dropped on the way; `None` when more input is needed (or the connection is closing and
    /// only discards). With the event comes the output queue, to answer a message while it is
    /// borrowed (an echo needs no copy of its own). Do not call it while [`Self::pending`] is
    /// more than the caller wants queued: decoding is what makes answers.
    pub fn next_incoming(&mut self) -> Option<(Incoming<'_>, &mut Outbox)> {
        let Decoded(found) = self.decode_next()?;
        let event = found.incoming(&self.input, &self.msg);
        Some((event, &mut self.out))
    }

    /// [`Self::next_incoming`] in two steps, for a caller that returns the event from a loop
    /// that reads on `None` (the borrow checker cannot see that the `None` branch holds no
    /// borrow): decodes up to the next event and returns a token for it, read with
    /// [`Self::incoming`] until the next call.
    pub fn decode_next(&mut self) -> Option<Decoded> {
        if core::mem::take(&mut self.msg_taken) {
            self.msg.clear();
            self.msg.shrink_to(KEEP_CAPACITY);
        }
        self.decode_one().map(Decoded)
    }

    /// The event a [`Decoded`] token of the last [`Self::decode_next`] stands for.
    #[must_use]
    pub fn incoming(&self, decoded: &Decoded) -> Incoming<'_> {
        decoded.0.clone().incoming(&self.input, &self.msg)
    }

    fn decode_one(&mut self) -> Option<Found> {
        loop {
            if !matches!(self.stage, Stage::Open | Stage::CloseSent) || self.broken {
                self.start = self.end;
                return None;
            }
            let input = self.input.get_mut(self.start..self.end).unwrap_or_default();
            let (n, event) = match self.session.decode(input, usize::MAX) {
                Ok(r) => r,
                Err(e) => {
                    self.fail(e.close_code());
                    return Some(Found::Failed(e));
                }
            };
            self.start += n;
            if n == 0 && event.is_none() {
                return None;
            }
            match event {
                None => {}
                Some(Event::Data { kind, start, fin, len, .. }) => {
                    if self.stage != Stage::Open {
                        continue;
                    }
                    let range = self.start - len..self.start;
                    if start && fin {
                        return Some(Found::Piece(kind, range));
                    }
                    if start {
                        self.msg.clear();
                    }
                    let piece = self.input.get(range).unwrap_or_default();
                    if self.msg.try_reserve(piece.len()).is_err() {
                        // Memory is short: fail as too big rather than abort the process.
                        self.fail(close_code::TOO_BIG);
                        return Some(Found::Failed(ProtocolError::TooBig));
                    }
                    self.msg.extend_from_slice(piece);
                    if fin {
                        self.msg_taken = true;
                        return Some(Found::Message(kind));
                    }
                }
                // §5.5.2: a Pong with the same Application data (none after our close).
                Some(Event::Ping(payload)) if self.stage == Stage::Open => {
                    self.out.push(OpCode::Pong, payload.as_slice(), true);
                }
                Some(Event::Ping(_)) => {}
                Some(Event::Pong(_)) => {}
                Some(Event::Close { code, .. }) => {
                    if self.stage == Stage::Open {
                        // §5.5.1: answer with a close, echoing the status code.
                        let payload = code.map(u16::to_be_bytes);
                        self.out.push(OpCode::Close, payload.as_ref().map_or(&[], |p| p), true);
                    }
                    self.stage = Stage::Flushing;
                    return Some(Found::Closed(code));
                }
            }
        }
    }

    /// Fails the connection (§7.1.7): close `code` now, then shut down without waiting.
    fn fail(&mut self, code: u16) {
        if self.stage == Stage::Open {
            self.out.push(OpCode::Close, &code.to_be_bytes(), true);
        }
        self.stage = Stage::Flushing;
    }

    /// Queues a message (one unmasked frame). `false` when it is not open or the queue cannot
    /// take it (more than `max_queue` bytes would wait): write, then try again.
    pub fn send(&mut self, kind: DataKind, data: &[u8]) -> bool {
        self.is_open() && self.out.send(kind, data)
    }

    /// Starts the closing handshake with `code` and a reason (cut to fit 125 bytes on a
    /// character boundary); the client's close is then awaited, its data discarded.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.stage != Stage::Open {
            return;
        }
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let n = 2 + end;
        if let (Some((c, rest)), Some(r)) =
            (payload.split_first_chunk_mut::<2>(), reason.as_bytes().get(..end))
        {
            *c = code.to_be_bytes();
            if let Some(dst) = rest.get_mut(..end) {
                dst.copy_from_slice(r);
            }
        }
        self.out.push(OpCode::Close, payload.get(..n).unwrap_or_default(), true);
        self.stage = Stage::CloseSent;
    }

    /// Writes what is queued until the stream would block; once the closing handshake is done
    /// and everything is written, shuts down our side. Whether anything was written.
    ///
    /// # Errors
    /// The write error; the connection is then over.
    pub fn flush(&mut self) -> std::io::Result<bool> {
        let mut wrote = false;
        while !self.broken && self.pending() > 0 {
            let out = self.out.buf.get(self.out.start..).unwrap_or_default();
            match self.io.write(out) {
                Ok(0) => {
                    self.broken = true;
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    self.out.start += n;
                    wrote = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        if self.pending() == 0 {
            self.out.buf.clear();
            self.out.buf.shrink_to(KEEP_CAPACITY);
            self.out.start = 0;
            if self.stage == Stage::Flushing {
                // §7.1.1: the server closes the TCP connection first; the client's bytes
                // still in flight are read and dropped (Linger) so that no reset cuts our close.
                let _ = self.io.shutdown_write();
                self.stage = Stage::Linger;
                self.start = self.end;
                wrote = true;
            }
        }
        Ok(wrote)
    }
}

/// The frames waiting to be written to the client: at most `max_queue` bytes of messages
/// (control frames always fit).
#[derive(Debug)]
pub struct Outbox {
    buf: Vec<u8>,
    start: usize,
    max: usize,
    /// A close is queued: no more frames.
    closed: bool,
}

impl Outbox {
    /// Queues a message (one unmasked frame). `false` after a close, or when the queue cannot
    /// take it (more than `max_queue` bytes would wait): write, then try again.
    pub fn send(&mut self, kind: DataKind, data: &[u8]) -> bool {
        !self.closed && self.push(OpCode::from(kind), data, false)
    }

    /// Bytes waiting.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn push(&mut self, opcode: OpCode, payload: &[u8], force: bool) -> bool {
        let len = payload.len() as u64;
        let total = FrameHeader::server_header_len(len) + payload.len();
        if !force && self.pending() + total > self.max {
            return false;
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        if self.closed {
            return false;
        }
        if self.buf.try_reserve(total).is_err() {
            return false;
        }
        let at = self.buf.len();
        self.buf.resize(at + total, 0);
        let Some(dst) = self.buf.get_mut(at..) else { return false };
        let Some(h) = FrameHeader::emit(true, opcode, len, dst) else { return false };
        if let Some(body) = dst.get_mut(h..) {
            body.copy_from_slice(payload);
        }
        self.closed = opcode == OpCode::Close;
        true
    }
}

/// An event found by [`Endpoint::decode_next`] (where its message is, not the bytes).
#[derive(Debug)]
pub struct Decoded(Found);

#[derive(Clone, Debug)]
enum Found {
    Piece(DataKind, core::ops::Range<usize>),
    Message(DataKind),
    Closed(Option<u16>),
    Failed(ProtocolError),
}

impl Found {
    fn incoming<'a>(self, input: &'a [u8], msg: &'a [u8]) -> Incoming<'a> {
        match self {
            Self::Piece(kind, range) => {
                Incoming::Message(kind, input.get(range).unwrap_or_default())
            }
            Self::Message(kind) => Incoming::Message(kind, msg),
            Self::Closed(code) => Incoming::Closed(code),
            Self::Failed(e) => Incoming::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests;
