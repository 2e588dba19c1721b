//! `websocket_echo`: the sample websocket server for wsgate. It listens on a UNIX socket at
//! `<docroot>/<name>` and sends every message back to the client that sent it.
//!
//! This program owns the echo semantics of each relay mode and its own event loop: one
//! single-threaded mio `Poll`, up to `-c` clients (default [`MAX_CLIENTS`]), each with one fixed buffer of
//! [`BUF_LEN`] bytes allocated when it connects and reused for every message. A client whose
//! peer stops reading fills that buffer and is then not read from until its echo drains
//! (backpressure instead of unbounded queues).
//!
//! * `stream`, `lines`: bytes come back exactly as they were sent, streaming through the
//!   buffer.
//! * `framed`: like a WebSocket echo server, a whole message is read before it is echoed. The
//!   records of [`wsgate::relay::record`] are collected verbatim (headers and payloads, as they
//!   came) in a per-client message buffer until the record with `F` completes the message;
//!   then all of those bytes are echoed, and the client is read from again (into the fixed
//!   buffer only) once the echo is written. A message bigger than `-M` bytes, headers
//!   included, is answered with close 1009 and the connection closed; a close record is
//!   answered once everything before it is echoed. The message buffer is allocated on the
//!   first message, grows as needed up to the limit, is kept for the next message and freed
//!   when the client leaves. A malformed record stream is dropped.
//! * `seqpacket`: each packet comes back as one packet.
//!
//! With `-d` (direct mode) the gateway hands over each client's TCP socket after the 101
//! ([`wsgate_kit::direct`]): the echo takes the hand-over record, then is the WebSocket
//! server itself on that socket (a [`direct::Endpoint`]: whole messages of at most `-M` bytes,
//! UTF-8 checked, pings answered, closes answered; a message is echoed once the previous echo
//! is written). A connection that brings no socket (the gateway relays this endpoint) is
//! served in the `-m` mode as above. A closing handshake that is not over within
//! [`CLOSE_TIMEOUT`] ends the connection.
//!
//! SIGTERM and SIGINT arrive through a signalfd in the same loop; the socket file is removed on
//! the way out.
use argh::FromArgs;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wsgate::relay::codec::Mode;
use wsgate::relay::record::{self, RecordError, RecordHeader, HEADER_LEN};
use wsgate_kit::direct::{self, Endpoint, HandoverError, Incoming, Receiver, Taken};
use wsgate_kit::sock::{Listener, Sock, SockError};
use wsgate_kit::{take_signal, ByteSize, Fatal, Setup};

/// One line to stderr, prefixed with the program name ([`wsgate_kit::say`]).
macro_rules! say {
    ($($arg:tt)*) => {
        wsgate_kit::say(format_args!($($arg)*))
    };
}

/// Most clients served at once by default (`-c`); further connections wait in the listen
/// backlog until one leaves.
const MAX_CLIENTS: usize = 256;
/// Each client's echo buffer. 64 KiB also bounds a `seqpacket` message.
const BUF_LEN: usize = 64 * 1024;
/// The first allocation of a `framed` message buffer; it doubles from there, up to the limit.
const MSG_MIN_CAP: usize = 64 * 1024;
/// The `framed` answer to a message over the `-M` limit: close 1009, "message too big".
const CLOSE_TOO_BIG: [u8; HEADER_LEN + 2] = [0x88, 0, 0, 0, 2, 0x03, 0xf1];
/// Reads plus writes one client may do per loop turn before the others get theirs: a client
/// that keeps both directions busy would otherwise hold the loop forever, since with
/// edge-triggered readiness we drain every socket until it would block.
const TURN_BUDGET: usize = 16;
/// `-d`: the longest a closing handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// `-d`: the read buffer of a client's WebSocket endpoint.
const DIRECT_READ_LEN: usize = 16 * 1024;
// Client tokens are their slot numbers, below `-c`.
const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX);

/// Sample websocket server for wsgate: echoes every message back to its sender.
#[derive(FromArgs, Debug)]
struct Args {
    /// directory of the sockets, the gateway's docroot (default /var/run/websocket); created
    /// with mode 0755 if missing
    #[argh(option, short = 'R', default = "PathBuf::from(\"/var/run/websocket\")")]
    root: PathBuf,
    /// socket name, which is the URL path (default "echo"); a single name, no '/'
    #[argh(option, short = 'n', default = "String::from(\"echo\")")]
    name: String,
    /// user to run as: the socket is created owned by that user, then privileges are dropped
    #[argh(option, short = 'u')]
    user: Option<String>,
    /// relay mode: stream (default), lines, framed or seqpacket
    #[argh(option, short = 'm', default = "Mode::Stream")]
    mode: Mode,
    /// listen backlog: connections the kernel queues until they are accepted (default
    /// SOMAXCONN, which the kernel caps at net.core.somaxconn)
    #[argh(option, short = 'b', default = "wsgate_kit::conn::DEFAULT_BACKLOG")]
    backlog: i32,
    /// most clients served at once (default 256; each costs a 64 KiB buffer while connected)
    #[argh(option, short = 'c', default = "MAX_CLIENTS")]
    max_clients: usize,
    /// framed and direct modes: largest message (in framed mode record headers included), in
    /// bytes or with a K or M suffix (default 1M); a bigger one is answered with close 1009
    #[argh(option, short = 'M', default = "ByteSize(1 << 20)")]
    max_message: ByteSize,
    /// direct mode (the gateway's --direct): take each client's socket from the gateway and
    /// speak WebSocket on it; a connection without a socket is served in the -m mode (stream,
    /// lines or framed)
    #[argh(switch, short = 'd')]
    direct: bool,
    /// print a line per client connect and disconnect
    #[argh(switch, short = 'v')]
    verbose: bool,
}

fn main() -> ExitCode {
    wsgate_kit::set_program("websocket_echo");
    let args: Args = argh::from_env();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Fatal> {
    if args.direct && args.mode == Mode::SeqPacket {
        return Err(Fatal::new(
            "-d",
            "direct mode takes the socket over a stream connection, not seqpacket",
        ));
    }
    let started = wsgate_kit::start(&Setup {
        root: &args.root,
        name: &args.name,
        user: args.user.as_deref(),
        mode: args.mode,
        backlog: args.backlog,
    })?;
    let (listener, signals, path) = (started.listener, started.signals, started.path);
    let _socket_file = started.socket_file;

    let max_clients = args.max_clients.clamp(1, 1 << 20);
    let mut server =
        Server::new(listener, args.mode, args.max_message.0, max_clients, args.verbose)?;
    server.direct = args.direct;
    server
        .poll
        .registry()
        .register(&mut SourceFd(&signals.as_raw_fd()), SIGNALS, Interest::READABLE)
        .map_err(|e| Fatal::new("poll", e))?;
    if args.direct {
        say!("listening on {} (direct, else {})", path.display(), args.mode);
    } else {
        say!("listening on {} ({})", path.display(), args.mode);
    }

    let signal = server.serve(&signals)?;
    if args.verbose {
        say!("{signal}, exiting");
    }
    Ok(())
}

/// Why a client connection ended.
#[derive(Debug)]
enum Gone {
    /// The client finished sending and got all its echoes.
    Done,
    /// The close record was answered.
    Closed,
    /// A `framed` message grew past the `-M` limit; close 1009 was answered.
    TooBig { size: usize, limit: usize },
    /// The buffer for a `framed` message of this many bytes could not be allocated.
    NoMemory(usize),
    /// The client went away before reading its echoes.
    Reset,
    /// A `seqpacket` message of this many bytes did not fit the buffer.
    Truncated(usize),
    /// A malformed `framed` record stream.
    Malformed(FrameError),
    /// Any other socket error.
    Io(&'static str, std::io::Error),
    /// `-d`: the hand-over failed.
    Handover(HandoverError),
    /// `-d`: the client broke the protocol; the close with its code was sent.
    Protocol(wsgate::ws::session::ProtocolError),
    /// `-d`: the closing handshake took longer than [`CLOSE_TIMEOUT`].
    CloseTimeout,
}

impl From<SockError> for Gone {
    fn from(e: SockError) -> Self {
        match e {
            SockError::Reset => Self::Reset,
            SockError::Truncated(n) => Self::Truncated(n),
            SockError::Io(op, e) => Self::Io(op, e),
        }
    }
}

impl core::fmt::Display for Gone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Done => f.write_str("end of stream"),
            Self::Closed => f.write_str("closed"),
            Self::TooBig { size, limit } => write!(
                f,
                "message of {size} bytes or more exceeds the {limit}-byte limit (-M), answered \
                 with close 1009"
            ),
            Self::NoMemory(n) => write!(f, "cannot allocate {n} bytes for a message"),
            Self::Reset => f.write_str("connection reset"),
            Self::Truncated(n) => {
                write!(f, "packet of {n} bytes is larger than the {BUF_LEN}-byte buffer")
            }
            Self::Malformed(e) => write!(f, "malformed record: {e}"),
            Self::Io(op, e) => write!(f, "{op}: {e}"),
            Self::Handover(e) => e.fmt(f),
            Self::Protocol(e) => write!(f, "{e}, answered with close {}", e.close_code()),
            Self::CloseTimeout => f.write_str("closing handshake timed out"),
        }
    }
}

/// A broken `framed` record stream: the header itself or the message sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameError {
    Header(RecordError),
    /// A continuation record with no message started.
    StrayContinuation,
    /// A text or binary record while a message is still open.
    NestedMessage,
    /// A connection-context record: the echo does not take one (run the gateway without
    /// `--context` for this endpoint).
    Context,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Header(e) => e.fmt(f),
            Self::StrayContinuation => f.write_str("continuation record outside a message"),
            Self::NestedMessage => f.write_str("new message before the previous one ended"),
            Self::Context => {
                f.write_str("a connection-context record: websocket_echo takes none (no --context)")
            }
        }
    }
}

/// Where [`Framer::scan`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Boundary {
    /// The last record of a message ended.
    Message,
    /// A close record ended (nothing after it is echoed).
    Close,
    /// A record header took the message to this many bytes, over the limit.
    TooBig(usize),
}

/// Follows the record structure of a `framed` byte stream as it passes through, without
/// holding any of it: only a split header is kept, in 5 bytes.
#[derive(Debug, Default)]
struct Framer {
    header: [u8; HEADER_LEN],
    header_len: usize,
    payload_left: u32,
    in_message: bool,
    /// The record being read is a close record.
    in_close: bool,
    /// The record being read is the last of its message.
    last: bool,
    /// Bytes of the current message, headers included, as its headers so far declare.
    msg_bytes: usize,
}

impl Framer {
    /// Walks newly read bytes up to the first boundary in them: returns the offset just past
    /// it, or `None` when all of `data` belongs to a message that goes on. A message's size
    /// is checked against `limit` at each record header, so `TooBig` comes before the payload
    /// that would not fit.
    fn scan(&mut self, data: &[u8], limit: usize) -> Result<Option<(usize, Boundary)>, FrameError> {
        let mut pos = 0;
        loop {
            if self.payload_left > 0 {
                let rest = data.len().saturating_sub(pos);
                let take = rest.min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                pos += take;
                // `take` is at most `payload_left`, a u32.
                self.payload_left -= u32::try_from(take).unwrap_or(self.payload_left);
                if self.payload_left > 0 {
                    return Ok(None);
                }
            }
            if self.in_close {
                return Ok(Some((pos, Boundary::Close)));
            }
            if self.last {
                self.last = false;
                self.msg_bytes = 0;
                return Ok(Some((pos, Boundary::Message)));
            }
            let rest = data.get(pos..).unwrap_or_default();
            if rest.is_empty() {
                return Ok(None);
            }
            let slots = self.header.iter_mut().skip(self.header_len);
            let copied = slots.zip(rest).map(|(dst, src)| *dst = *src).count();
            self.header_len += copied;
            pos += copied;
            if self.header_len < HEADER_LEN {
                return Ok(None);
            }
            self.header_len = 0;
            let Some(header) = RecordHeader::parse(&self.header).map_err(FrameError::Header)?
            else {
                // Unreachable: all 5 bytes are there. Treat as needing more, never panic.
                return Ok(None);
            };
            match header.opcode {
                record::OP_CLOSE => self.in_close = true,
                record::OP_CONTEXT => return Err(FrameError::Context),
                record::OP_CONTINUATION if !self.in_message => {
                    return Err(FrameError::StrayContinuation)
                }
                record::OP_TEXT | record::OP_BINARY if self.in_message => {
                    return Err(FrameError::NestedMessage)
                }
                _ => {
                    self.in_message = !header.fin;
                    self.last = header.fin;
                    let len = usize::try_from(header.len).unwrap_or(usize::MAX);
                    self.msg_bytes = self.msg_bytes.saturating_add(len).saturating_add(HEADER_LEN);
                    if self.msg_bytes > limit {
                        return Ok(Some((pos, Boundary::TooBig(self.msg_bytes))));
                    }
                }
            }
            self.payload_left = header.len;
        }
    }
}

/// What a client's turn ended with, when it did not end the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    /// Both directions would block (or are not wanted): wait for readiness.
    Blocked,
    /// The turn budget ran out with work left: run again without waiting for readiness.
    MoreWork,
}

/// How a `framed` connection ends once its echo buffer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    /// A close record was echoed.
    Close,
    /// A message of this many bytes was over the limit; close 1009 was sent.
    TooBig(usize),
}

#[derive(Debug)]
struct Client {
    sock: Sock,
    /// The read buffer; `buf[start..end]` is read but not yet echoed (`stream`, `lines`,
    /// `seqpacket`) or not yet taken into the message (`framed`).
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The client sent end of stream.
    eof: bool,
    /// `framed`: the records of the message read so far, verbatim; empty (and unallocated)
    /// until the first message. Its capacity is kept for the next message.
    msg: Vec<u8>,
    /// `framed`: `msg` is complete and `msg[sent..]` is still to be echoed.
    echo: bool,
    sent: usize,
    /// `framed`: end the connection once the echo is written.
    finish: Option<Finish>,
    framer: Framer,
    /// What the socket is registered for now.
    interest: Interest,
    /// Waiting in the run-again list.
    queued: bool,
}

impl Client {
    fn new(sock: Sock) -> Self {
        Self {
            sock,
            buf: vec![0u8; BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            msg: Vec::new(),
            echo: false,
            sent: 0,
            finish: None,
            framer: Framer::default(),
            interest: Interest::READABLE,
            queued: false,
        }
    }

    /// Bytes are waiting to be echoed.
    fn pending(&self, mode: Mode) -> bool {
        match mode {
            Mode::Framed => self.echo,
            Mode::Stream | Mode::Lines | Mode::SeqPacket => self.start < self.end,
        }
    }

    fn wants_read(&self, mode: Mode) -> bool {
        if self.eof || self.finish.is_some() {
            return false;
        }
        match mode {
            // Packets are echoed one at a time: the buffer holds exactly one.
            Mode::SeqPacket => !self.pending(mode),
            // Room at the tail, or at the front once the tail is moved there. In `framed` mode
            // the buffer is only filled while an echo is written; otherwise every read is
            // taken into the message at once.
            Mode::Stream | Mode::Lines | Mode::Framed => self.end - self.start < self.buf.len(),
        }
    }

    /// One read into the free part of the buffer; whether anything (data or EOF) came.
    fn read_some(&mut self) -> Result<bool, Gone> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let space = self.buf.get_mut(self.end..).unwrap_or_default();
        match self.sock.read(space)? {
            Some(0) => self.eof = true,
            Some(n) => self.end += n,
            None => return Ok(false),
        }
        Ok(true)
    }

    /// Gives the client its turn: until both directions would block or the budget is spent.
    fn run(&mut self, mode: Mode, max_message: usize) -> Result<Turn, Gone> {
        match mode {
            Mode::Framed => self.run_framed(max_message),
            Mode::Stream | Mode::Lines | Mode::SeqPacket => self.run_stream(mode),
        }
    }

    /// Echoes what can be echoed and reads what fits.
    fn run_stream(&mut self, mode: Mode) -> Result<Turn, Gone> {
        for _ in 0..TURN_BUDGET {
            let mut progress = false;
            if self.pending(mode) {
                let out = self.buf.get(self.start..self.end).unwrap_or_default();
                if let Some(n) = self.sock.write(out)? {
                    self.start += n;
                    progress = n > 0;
                    if self.start == self.end {
                        (self.start, self.end) = (0, 0);
                    }
                }
            }
            if !self.pending(mode) && self.eof {
                return Err(Gone::Done);
            }
            if self.wants_read(mode) {
                progress |= self.read_some()?;
            }
            if !progress {
                return Ok(Turn::Blocked);
            }
        }
        Ok(Turn::MoreWork)
    }

    /// Reads, takes the read bytes into the message and echoes complete messages. Every
    /// read is collected in the same round, so a turn never ends with a full buffer and no
    /// echo to write.
    fn run_framed(&mut self, max_message: usize) -> Result<Turn, Gone> {
        for _ in 0..TURN_BUDGET {
            let mut progress = false;
            if self.wants_read(Mode::Framed) {
                progress = self.read_some()?;
            }
            progress |= self.collect(max_message)?;
            if self.echo {
                let out = self.msg.get(self.sent..).unwrap_or_default();
                if let Some(n) = self.sock.write(out)? {
                    self.sent += n;
                    progress |= n > 0;
                }
                if self.sent >= self.msg.len() {
                    // Keep the capacity for the next message.
                    self.msg.clear();
                    (self.echo, self.sent) = (false, 0);
                    match self.finish {
                        Some(Finish::Close) => return Err(Gone::Closed),
                        Some(Finish::TooBig(size)) => {
                            return Err(Gone::TooBig { size, limit: max_message })
                        }
                        None => {}
                    }
                }
            }
            // At end of stream an unfinished message is dropped: it never was a message.
            if !self.echo && self.eof && self.start == self.end {
                return Err(Gone::Done);
            }
            if !progress {
                return Ok(Turn::Blocked);
            }
        }
        Ok(Turn::MoreWork)
    }

    /// Unless an echo is being written, moves the read bytes into the message, up to the
    /// first boundary: the end of a message or a close record starts the echo, an oversized
    /// message is replaced by close 1009. Whether anything was taken.
    fn collect(&mut self, max_message: usize) -> Result<bool, Gone> {
        if self.echo || self.start == self.end {
            return Ok(false);
        }
        let data = self.buf.get(self.start..self.end).unwrap_or_default();
        let found = self.framer.scan(data, max_message).map_err(Gone::Malformed)?;
        match found {
            Some((_, Boundary::TooBig(size))) => {
                // What is left of the input is never answered.
                self.msg.clear();
                grow(&mut self.msg, &CLOSE_TOO_BIG, max_message)?;
                (self.start, self.end) = (0, 0);
                self.finish = Some(Finish::TooBig(size));
                self.echo = true;
            }
            Some((at, boundary)) => {
                grow(&mut self.msg, data.get(..at).unwrap_or_default(), max_message)?;
                self.start += at;
                if boundary == Boundary::Close {
                    self.finish = Some(Finish::Close);
                }
                self.echo = true;
            }
            None => {
                grow(&mut self.msg, data, max_message)?;
                self.start = self.end;
            }
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        Ok(true)
    }

    /// The readiness the client waits for, `None` when it waits for nothing.
    fn wanted(&self, mode: Mode) -> Option<Interest> {
        let read = self.wants_read(mode).then_some(Interest::READABLE);
        let write = self.pending(mode).then_some(Interest::WRITABLE);
        match (read, write) {
            (Some(r), Some(w)) => Some(r | w),
            (r, w) => r.or(w),
        }
    }
}

/// Appends `data` to a `framed` message buffer. Capacity doubles from [`MSG_MIN_CAP`] but is
/// capped at what `max_message` needs (a message plus a close record, at most one read more),
/// and an allocation failure ends the client instead of the process.
fn grow(msg: &mut Vec<u8>, data: &[u8], max_message: usize) -> Result<(), Gone> {
    let need = msg.len().saturating_add(data.len());
    if need > msg.capacity() {
        let cap = msg
            .capacity()
            .saturating_mul(2)
            .max(MSG_MIN_CAP)
            .min(max_message.saturating_add(HEADER_LEN + record::MAX_CLOSE_PAYLOAD))
            .max(need);
        msg.try_reserve_exact(cap - msg.len()).map_err(|_| Gone::NoMemory(cap))?;
    }
    msg.extend_from_slice(data);
    Ok(())
}

/// One slot of the client table.
#[derive(Debug)]
enum Conn {
    /// A relay-mode connection (with `-d`: one that came without a socket).
    Relay(Client),
    /// `-d`: the gateway's connection, until its hand-over record is complete.
    Handover(Sock, Receiver),
    /// `-d`: the client's own socket.
    Direct(Box<DirectClient>),
}

/// `-d`: a client whose socket the gateway handed over.
#[derive(Debug)]
struct DirectClient {
    ep: Endpoint<mio::net::TcpStream>,
    interest: Interest,
    /// When the closing handshake started.
    closing_since: Option<Instant>,
    /// The protocol error that failed the connection.
    failed: Option<wsgate::ws::session::ProtocolError>,
}

impl DirectClient {
    /// Echoes messages while the previous echo is written, reads what fits: until both
    /// directions would block or the budget is spent.
    fn run(&mut self) -> Result<Turn, Gone> {
        for _ in 0..TURN_BUDGET {
            let mut progress = self.ep.flush().map_err(|e| sock_gone("write", e))?;
            // One echo at a time: the queue never holds more than a message and a few control
            // frames, and the next message is decoded once it is written.
            while self.ep.pending() == 0 {
                let Some((event, out)) = self.ep.next_incoming() else { break };
                progress = true;
                match event {
                    // The queue is empty and holds a message of `-M` bytes: this cannot fail.
                    Incoming::Message(kind, data) => {
                        let _ = out.send(kind, data);
                    }
                    Incoming::Closed(_) => {}
                    // The close is queued; the endpoint shuts down once it is written, and the
                    // client's last bytes are read and dropped (no reset to cut the close).
                    Incoming::Failed(e) => self.failed = Some(e),
                }
                progress |= self.ep.flush().map_err(|e| sock_gone("write", e))?;
            }
            if self.ep.is_done() {
                return Err(match self.failed {
                    Some(e) => Gone::Protocol(e),
                    None if self.ep.is_closing() => Gone::Closed,
                    None => Gone::Done,
                });
            }
            progress |= self.ep.read().map_err(|e| sock_gone("read", e))?;
            if !progress {
                return Ok(Turn::Blocked);
            }
        }
        Ok(Turn::MoreWork)
    }

    fn wanted(&self) -> Interest {
        if self.ep.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }
}

fn sock_gone(op: &'static str, e: std::io::Error) -> Gone {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => Gone::Reset,
        _ => Gone::Io(op, e),
    }
}

#[derive(Debug)]
struct Server {
    poll: Poll,
    listener: Listener,
    mode: Mode,
    /// `-M`: the largest `framed` message.
    max_message: usize,
    verbose: bool,
    /// `-d`: connections bring the client's socket.
    direct: bool,
    /// `-d`: the earliest time a closing handshake may run out, if one is under way.
    next_sweep: Option<Instant>,
    clients: Vec<Option<Conn>>,
    /// Clients whose budget ran out, to run on the next turn; `spare` is its swap partner so
    /// that neither is reallocated in the loop.
    again: Vec<usize>,
    spare: Vec<usize>,
    /// The table was full when a connection was pending: accept again once a client leaves.
    accept_blocked: bool,
}

impl Server {
    fn new(
        mut listener: Listener,
        mode: Mode,
        max_message: usize,
        max_clients: usize,
        verbose: bool,
    ) -> Result<Self, Fatal> {
        let poll = Poll::new().map_err(|e| Fatal::new("poll", e))?;
        listener.register(poll.registry(), LISTENER).map_err(|e| Fatal::new("poll", e))?;
        Ok(Self {
            poll,
            listener,
            mode,
            max_message,
            verbose,
            direct: false,
            next_sweep: None,
            clients: (0..max_clients).map(|_| None).collect(),
            again: Vec::with_capacity(max_clients),
            spare: Vec::with_capacity(max_clients),
            accept_blocked: false,
        })
    }

    /// Runs until SIGTERM or SIGINT; returns the signal's name.
    fn serve(&mut self, signals: &SignalFd) -> Result<&'static str, Fatal> {
        let mut events = Events::with_capacity(self.clients.len().min(1024));
        loop {
            let timeout = if self.again.is_empty() {
                self.next_sweep.map(|t| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fatal::new("poll", e)),
            }
            if self.next_sweep.is_some_and(|t| t <= Instant::now()) {
                self.sweep();
            }
            core::mem::swap(&mut self.again, &mut self.spare);
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        if let Some(name) = take_signal(signals)? {
                            return Ok(name);
                        }
                    }
                    Token(idx) => self.service(idx),
                }
            }
            while let Some(idx) = self.spare.pop() {
                self.service(idx);
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            let Some(idx) = self.clients.iter().position(Option::is_none) else {
                self.accept_blocked = true;
                return;
            };
            let mut sock = match self.listener.accept() {
                Ok(sock) => sock,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.accept_blocked = false;
                    return;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::Interrupted
                        || e.kind() == std::io::ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) => {
                    // Out of descriptors or memory: retry when a client leaves and frees some.
                    say!("accept: {e}");
                    self.accept_blocked = true;
                    return;
                }
            };
            if let Err(e) = sock.register(self.poll.registry(), Token(idx), Interest::READABLE) {
                say!("poll register: {e}");
                continue;
            }
            if self.verbose {
                say!("client {idx} connected");
            }
            if let Some(slot) = self.clients.get_mut(idx) {
                *slot = Some(if self.direct {
                    Conn::Handover(sock, Receiver::new(direct::MAX_EARLY_DATA))
                } else {
                    Conn::Relay(Client::new(sock))
                });
                if self.direct {
                    // The record may be there already (edge-triggered readiness).
                    self.again.push(idx);
                }
            }
        }
    }

    /// Ends the direct clients whose closing handshake ran out of time.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.next_sweep = None;
        for idx in 0..self.clients.len() {
            let Some(Some(Conn::Direct(d))) = self.clients.get(idx) else { continue };
            let Some(since) = d.closing_since else { continue };
            let deadline = since + CLOSE_TIMEOUT;
            if deadline <= now {
                self.end(idx, Gone::CloseTimeout);
            } else {
                self.next_sweep = Some(self.next_sweep.map_or(deadline, |t| t.min(deadline)));
            }
        }
    }

    /// `-d`: reads the hand-over of connection `idx`; once complete, the connection becomes a
    /// direct client (the UNIX connection is closed) or, without a socket, a relay client.
    fn take_handover(&mut self, idx: usize) -> Result<(), Gone> {
        let Some(slot) = self.clients.get_mut(idx) else { return Ok(()) };
        let Some(Conn::Handover(sock, rx)) = slot.as_mut() else { return Ok(()) };
        let Sock::Stream(unix) = &*sock else {
            return Err(Gone::Handover(HandoverError::Truncated));
        };
        let taken = match rx.receive(unix).map_err(Gone::Handover)? {
            Some(taken) => taken,
            None => return Ok(()),
        };
        let Some(Conn::Handover(mut sock, _)) = slot.take() else { return Ok(()) };
        match taken {
            Taken::Relay(first) => {
                if self.verbose {
                    say!("client {idx}: no socket handed over, relaying in {} mode", self.mode);
                }
                let mut client = Client::new(sock);
                if let Some(dst) = client.buf.get_mut(..first.len()) {
                    dst.copy_from_slice(&first);
                    client.end = first.len();
                }
                *slot = Some(Conn::Relay(client));
            }
            Taken::Direct(handover) => {
                let _ = sock.deregister(self.poll.registry());
                drop(sock);
                if self.verbose {
                    say!(
                        "client {idx}: socket of {} handed over ({} early bytes)",
                        handover.value("REMOTE_ADDR").unwrap_or("?"),
                        handover.early().len()
                    );
                }
                let early = handover.early().to_vec();
                let tcp = std::net::TcpStream::from(handover.client);
                tcp.set_nonblocking(true).map_err(|e| Gone::Io("fcntl", e))?;
                let mut tcp = mio::net::TcpStream::from_std(tcp);
                self.poll
                    .registry()
                    .register(&mut tcp, Token(idx), Interest::READABLE)
                    .map_err(|e| Gone::Io("poll register", e))?;
                let limits = direct::Limits {
                    max_message: self.max_message,
                    // An echo of the biggest message, with its header and a close.
                    max_queue: self.max_message.saturating_add(256),
                    read_len: DIRECT_READ_LEN,
                };
                let ep = Endpoint::new(tcp, &early, limits).map_err(Gone::Handover)?;
                *slot = Some(Conn::Direct(Box::new(DirectClient {
                    ep,
                    interest: Interest::READABLE,
                    closing_since: None,
                    failed: None,
                })));
            }
        }
        // Its first turn now: early bytes, or data that came before the registration.
        self.again.push(idx);
        Ok(())
    }

    /// Gives connection `idx` its turn; a stale index (the client already left) is ignored.
    fn service(&mut self, idx: usize) {
        let gone = match self.clients.get(idx) {
            Some(Some(Conn::Relay(_))) => self.service_relay(idx),
            Some(Some(Conn::Handover(..))) => self.take_handover(idx).err(),
            Some(Some(Conn::Direct(_))) => self.service_direct(idx),
            _ => None,
        };
        if let Some(gone) = gone {
            self.end(idx, gone);
        }
    }

    fn service_relay(&mut self, idx: usize) -> Option<Gone> {
        let (mode, max_message) = (self.mode, self.max_message);
        let Some(Some(Conn::Relay(client))) = self.clients.get_mut(idx) else { return None };
        client.queued = false;
        match client.run(mode, max_message) {
            Ok(turn) => {
                if turn == Turn::MoreWork {
                    client.queued = true;
                    self.again.push(idx);
                }
                match client.wanted(mode) {
                    Some(want) if want == client.interest => None,
                    Some(want) => {
                        match client.sock.reregister(self.poll.registry(), Token(idx), want) {
                            Ok(()) => {
                                client.interest = want;
                                None
                            }
                            Err(e) => Some(Gone::Io("poll reregister", e)),
                        }
                    }
                    // Nothing left to wait for: `run` ends such clients, this is a safety net.
                    None => Some(Gone::Done),
                }
            }
            Err(gone) => Some(gone),
        }
    }

    fn service_direct(&mut self, idx: usize) -> Option<Gone> {
        let Some(Some(Conn::Direct(d))) = self.clients.get_mut(idx) else { return None };
        let turn = match d.run() {
            Ok(turn) => turn,
            Err(gone) => return Some(gone),
        };
        if turn == Turn::MoreWork {
            self.again.push(idx);
        }
        if d.closing_since.is_none() && d.ep.is_closing() {
            let now = Instant::now();
            d.closing_since = Some(now);
            let deadline = now + CLOSE_TIMEOUT;
            self.next_sweep = Some(self.next_sweep.map_or(deadline, |t| t.min(deadline)));
        }
        let want = d.wanted();
        if want != d.interest {
            if let Err(e) = self.poll.registry().reregister(d.ep.io_mut(), Token(idx), want) {
                return Some(Gone::Io("poll reregister", e));
            }
            d.interest = want;
        }
        None
    }

    /// Ends connection `idx`: deregistered, closed, logged.
    fn end(&mut self, idx: usize, gone: Gone) {
        let Some(slot) = self.clients.get_mut(idx) else { return };
        match slot.take() {
            Some(Conn::Relay(mut c)) => {
                let _ = c.sock.deregister(self.poll.registry());
            }
            Some(Conn::Handover(mut sock, _)) => {
                let _ = sock.deregister(self.poll.registry());
            }
            Some(Conn::Direct(mut d)) => {
                let _ = self.poll.registry().deregister(d.ep.io_mut());
            }
            None => return,
        }
        match gone {
            Gone::TooBig { .. }
            | Gone::NoMemory(_)
            | Gone::Malformed(_)
            | Gone::Truncated(_)
            | Gone::Handover(_)
            | Gone::Io(..) => {
                say!("client {idx}: {gone}; closing");
            }
            Gone::Done | Gone::Closed | Gone::Reset | Gone::Protocol(_) | Gone::CloseTimeout => {
                if self.verbose {
                    say!("client {idx} disconnected ({gone})");
                }
            }
        }
        if self.accept_blocked {
            self.accept_all();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn rec(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut v = RecordHeader { fin, opcode, len }.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    const NO_LIMIT: usize = usize::MAX;

    /// Every boundary in `stream` fed in pieces of `chunk` bytes, as absolute offsets; stops
    /// at the first close or oversized message.
    fn boundaries(stream: &[u8], chunk: usize, limit: usize) -> Vec<(usize, Boundary)> {
        let mut framer = Framer::default();
        let mut found = Vec::new();
        let mut seen = 0;
        for piece in stream.chunks(chunk) {
            let mut piece = piece;
            while let Some((at, b)) = framer.scan(piece, limit).unwrap() {
                found.push((seen + at, b));
                if b != Boundary::Message {
                    return found;
                }
                piece = &piece[at..];
                seen += at;
            }
            seen += piece.len();
        }
        found
    }

    #[test]
    fn framer_follows_records_split_at_every_byte() {
        let mut stream = rec(false, record::OP_TEXT, b"hello ");
        stream.extend(rec(true, record::OP_CONTINUATION, b"world"));
        let first_end = stream.len();
        stream.extend(rec(true, record::OP_BINARY, b""));
        let second_end = stream.len();
        let close_at = stream.len() + HEADER_LEN + 2;
        stream.extend(rec(true, record::OP_CLOSE, &1000u16.to_be_bytes()));
        stream.extend(b"trailing junk");
        let want = vec![
            (first_end, Boundary::Message),
            (second_end, Boundary::Message),
            (close_at, Boundary::Close),
        ];
        for chunk in 1..=stream.len() {
            assert_eq!(boundaries(&stream, chunk, NO_LIMIT), want, "chunk size {chunk}");
        }
    }

    #[test]
    fn framer_checks_the_limit_per_message_headers_included() {
        // 3 + 5 and 2 + 5 bytes: 15 in all.
        let mut stream = rec(false, record::OP_BINARY, b"abc");
        stream.extend(rec(true, record::OP_CONTINUATION, b"de"));
        let end = stream.len();
        for chunk in 1..=stream.len() {
            assert_eq!(boundaries(&stream, chunk, 15), vec![(end, Boundary::Message)]);
            // Over by one: found at the second header, before its payload.
            assert_eq!(boundaries(&stream, chunk, 14), vec![(13, Boundary::TooBig(15))]);
        }
        // The count starts again with each message.
        let mut two = stream.clone();
        two.extend(&stream);
        let got = boundaries(&two, 4, 15);
        assert_eq!(got, vec![(end, Boundary::Message), (2 * end, Boundary::Message)]);
    }

    #[test]
    fn message_buffer_capacity_stays_within_the_limit() {
        let limit = 200_000;
        let mut msg = Vec::new();
        while msg.len() + 1000 <= limit {
            grow(&mut msg, &[7; 1000], limit).unwrap();
            assert!(msg.capacity() <= limit + HEADER_LEN + record::MAX_CLOSE_PAYLOAD);
        }
        assert!(msg.capacity() >= MSG_MIN_CAP);
    }

    #[test]
    fn framer_rejects_bad_sequences() {
        let mut framer = Framer::default();
        assert_eq!(
            framer.scan(&rec(true, record::OP_CONTINUATION, b"x"), NO_LIMIT),
            Err(FrameError::StrayContinuation)
        );
        let mut framer = Framer::default();
        let mut two = rec(false, record::OP_TEXT, b"a");
        two.extend(rec(true, record::OP_BINARY, b"b"));
        assert_eq!(framer.scan(&two, NO_LIMIT), Err(FrameError::NestedMessage));
        let mut framer = Framer::default();
        assert!(matches!(framer.scan(&[0x84, 0, 0, 0, 0], NO_LIMIT), Err(FrameError::Header(_))));
        let mut framer = Framer::default();
        assert_eq!(framer.scan(&[0x83, 0, 0, 0, 0], NO_LIMIT), Err(FrameError::Context));
    }

    #[test]
    fn close_may_come_inside_a_message() {
        let mut framer = Framer::default();
        let mut s = rec(false, record::OP_BINARY, b"part");
        s.extend(rec(true, record::OP_CLOSE, b""));
        assert_eq!(framer.scan(&s, NO_LIMIT), Ok(Some((s.len(), Boundary::Close))));
    }

    #[test]
    fn modes_parse() {
        for m in ["stream", "lines", "framed", "seqpacket"] {
            assert_eq!(m.parse::<Mode>().unwrap().to_string(), m);
        }
        assert!("udp".parse::<Mode>().is_err());
    }
}
