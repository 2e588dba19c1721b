//! One connection: a client TCP socket, its backend socket, four optional buffers, the
//! WebSocket session and the relay codec, moved through its lifecycle by [`Connection::drive`].
//!
//! Lifecycle (see `docs/lifecycle.md`):
//!
//! ```text
//! Handshake ─101─→ Open ─client close / protocol error / timeout─→ Flushing ─→ Linger ─→ done
//!     │              └─backend EOF or close record─→ Closing ─client close─→ Flushing
//!     ├─refusal (4xx/5xx)─→ Flushing          client vanished (Open) ─→ Draining ─→ done
//!     ├─backend's listen queue full─→ Connecting ─retry timer─→ Handshake (connects again)
//!     └─direct mode: 101─→ Handover ─fd sent to the backend (SCM_RIGHTS)─→ done
//! ```
//!
//! * `Flushing`: the last bytes for the client (a close frame or an HTTP refusal) go out; then
//!   the write side is shut down (the server closes the TCP connection first, RFC 6455 §7.1.1).
//! * `Linger`: read and discard until the client closes too, so that unread input cannot turn
//!   our close into a reset that destroys the close frame in flight.
//! * `Draining`: the client is gone; what it sent before still reaches the backend.
//! * `Connecting`: the request is complete but the backend's listen queue was full. See
//!   [`BackendWait`].
//!
//! I/O is driven by readiness flags (mio is edge-triggered): a flag is set by an event and
//! cleared by `WouldBlock`, so a side that was not read because a buffer was full is read
//! again as soon as the buffer drains, without a new event. A plain stream read that returns
//! less than it asked for also clears the flag: the socket's queue was empty at that moment,
//! and whatever arrives later raises a new edge. This saves the read that would only answer
//! `EAGAIN`, a third of the gateway's syscalls under ping-pong load. It is not done when the
//! event reported the peer's FIN (the next read must see the EOF), nor over TLS (rustls reads
//! in its own sizes) or on `SOCK_SEQPACKET` (one read is one packet). Interest in `WRITABLE` is
//! registered only while bytes wait for a socket that said `WouldBlock`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry};
use nix::errno::Errno;
use nix::sys::socket::{recv, send, shutdown, MsgFlags};

use super::timers::{self, Timeouts};
use super::tls_io::{TlsFault, TlsIo};
use super::token::{self, Side};
use crate::buffer::{Buf, BufPool};
use crate::config::Site;
use crate::http::{handshake, static_files};
use crate::relay::codec::{
    self, DataType, Downlink, DownlinkError, Mode, Uplink, UplinkError, CONTROL_ROOM,
};
use crate::relay::path;
use crate::relay::route::{Backend, Docroot};
pub use crate::relay::upgrade::Refusal;
use crate::relay::upgrade::{self, Decision, Name, Request};
use crate::slab::Key;
use crate::ws::frame::{close_code, OpCode, MAX_SERVER_HEADER_LEN};
use crate::ws::session::{Control, Event, ProtocolError, Session};

/// Rounds of I/O per drive before yielding to other connections.
const MAX_ROUNDS: u32 = 16;
/// The pause before the first new connect to a backend whose listen queue was full; it doubles
/// at each try, up to [`CONNECT_PAUSE_MAX`].
const CONNECT_PAUSE_MIN: std::time::Duration = std::time::Duration::from_millis(1);
/// The longest pause between two connects to a full backend.
const CONNECT_PAUSE_MAX: std::time::Duration = std::time::Duration::from_millis(64);

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the upgrade request.
    Handshake,
    /// Relaying.
    Open,
    /// We sent a close frame and wait for the client's.
    Closing,
    /// Last bytes to the client, then shut down its write side.
    Flushing,
    /// Write side shut; discarding input until the client closes.
    Linger,
    /// The client is gone; flushing to the backend.
    Draining,
    /// Streaming a static file to the client.
    File,
    /// Direct mode: the 101 goes out, then the client's socket goes to the backend.
    Handover,
    /// The request is complete, the backend's listen queue was full: waiting to try again
    /// (see [`BackendWait`]).
    Connecting,
}

/// Why a connection ended (the close log line says it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The handshake was refused (with [`Refusal::status`]).
    Refused(Refusal),
    /// The client sent a close frame.
    ClientClose(Option<u16>),
    /// The client broke RFC 6455.
    Protocol(ProtocolError),
    /// The client sent something the mode cannot carry.
    Uplink(UplinkError),
    /// The backend closed its socket.
    BackendEof,
    /// The backend closed its socket in the middle of a message (1011).
    BackendEofMidMessage,
    /// The backend closed its socket while a client message was being relayed to it: the rest
    /// can never arrive (1011).
    BackendEofMidClientMessage,
    /// The backend sent a close record.
    BackendClose(u16),
    /// The backend broke the mode's rules.
    BackendProtocol(DownlinkError),
    /// A backend packet larger than the buffer.
    BackendPacketTooBig,
    /// A socket error on the backend.
    BackendError(Errno),
    /// The client closed TCP without a close frame.
    ClientGone,
    /// A socket error on the client.
    ClientError(ErrorKind),
    /// TLS failed (the rustls detail was logged when it happened).
    Tls(TlsFault),
    /// No complete upgrade request in time.
    HandshakeTimeout,
    /// A ping went unanswered.
    PingTimeout,
    /// No traffic either way for the idle timeout.
    IdleTimeout,
    /// The closing handshake did not finish in time.
    CloseTimeout,
    /// The gateway is shutting down.
    Shutdown,
    /// Direct mode: the client's socket now belongs to the backend.
    HandedOver,
    /// Direct mode: the backend did not take the socket in time.
    HandoverTimeout,
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "refused {}: {r}", r.status()),
            Self::ClientClose(Some(c)) => write!(f, "client closed ({c})"),
            Self::ClientClose(None) => f.write_str("client closed"),
            Self::Protocol(e) => write!(f, "protocol error ({}): {e}", e.close_code()),
            Self::Uplink(UplinkError::NewlineInMessage) => {
                f.write_str("newline in a lines-mode message (1003)")
            }
            Self::BackendEof => f.write_str("backend closed"),
            Self::BackendEofMidMessage => {
                f.write_str("backend closed in the middle of a message (1011)")
            }
            Self::BackendEofMidClientMessage => {
                f.write_str("backend closed while a client message was being relayed (1011)")
            }
            Self::BackendClose(c) => write!(f, "backend sent close ({c})"),
            Self::BackendProtocol(e) => write!(f, "{e} (1011)"),
            Self::BackendPacketTooBig => {
                f.write_str("backend packet larger than the buffer (1011)")
            }
            Self::BackendError(e) => write!(f, "backend error: {e} (1011)"),
            Self::ClientGone => f.write_str("client went away without a close frame"),
            Self::ClientError(k) => write!(f, "client error: {k}"),
            Self::Tls(t) => write!(f, "{t}"),
            Self::HandshakeTimeout => f.write_str("handshake timeout"),
            Self::PingTimeout => f.write_str("ping timeout (1011)"),
            Self::IdleTimeout => f.write_str("idle timeout (1001)"),
            Self::CloseTimeout => f.write_str("closing handshake timeout"),
            Self::Shutdown => f.write_str("gateway shutting down (1001)"),
            Self::HandedOver => f.write_str("handed over to the backend (direct)"),
            Self::HandoverTimeout => f.write_str("the backend did not take the socket in time"),
        }
    }
}

impl Reason {
    /// The close code the gateway sends when it ends an open connection for this reason:
    /// the one place a reason gets its code. `None` for the reasons that send no close frame
    /// of the gateway's choosing (a client's close is echoed as it came, §5.5.1).
    #[must_use]
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::Protocol(e) => Some(e.close_code()),
            Self::Uplink(UplinkError::NewlineInMessage) => Some(close_code::UNSUPPORTED_DATA),
            Self::BackendEof => Some(close_code::NORMAL),
            Self::BackendClose(c) => Some(*c),
            Self::IdleTimeout | Self::Shutdown => Some(close_code::GOING_AWAY),
            Self::BackendEofMidMessage
            | Self::BackendEofMidClientMessage
            | Self::BackendProtocol(_)
            | Self::BackendPacketTooBig
            | Self::BackendError(_)
            | Self::PingTimeout => Some(close_code::INTERNAL_ERROR),
            Self::Refused(_)
            | Self::ClientClose(_)
            | Self::ClientGone
            | Self::ClientError(_)
            | Self::Tls(_)
            | Self::HandshakeTimeout
            | Self::CloseTimeout
            | Self::HandedOver
            | Self::HandoverTimeout => None,
        }
    }
}

/// What the loop should do after a drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Wait for events or timers.
    Continue,
    /// Work is left although no new event will come: drive again soon.
    Again,
    /// Tear down and free the slot.
    Done,
}

/// What a drive needs from the server.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Buffers.
    pub pool: &'a mut BufPool,
    /// The site's limits and policy.
    pub site: &'a Site,
    /// Where backends live.
    pub docroot: &'a Docroot,
    /// Where static pages live, when the site has them.
    pub htdocs: Option<&'a Docroot>,
    /// For registering the backend and changing interest.
    pub registry: &'a Registry,
    /// The loop's clock for this batch.
    pub now: Instant,
}

#[derive(Debug)]
struct BackendSock {
    sock: Backend,
    readable: bool,
    writable: bool,
    eof: bool,
    /// Shut down and drop once `to_backend` is flushed.
    finish: bool,
    /// The kernel said the peer shut down (EPOLLRDHUP): on a SOCK_SEQPACKET socket this is how
    /// a zero-length read means EOF rather than an empty packet.
    read_closed: bool,
    wants_write: bool,
}

impl BackendSock {
    /// A freshly connected backend, writable until it says otherwise; `readable` when its
    /// replies are wanted (not in direct mode, where nothing is read from it).
    fn new(sock: Backend, readable: bool) -> Self {
        Self {
            sock,
            readable,
            writable: true,
            eof: false,
            finish: false,
            read_closed: false,
            wants_write: false,
        }
    }
}

/// Byte and message counters for the close log line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Bytes read from the client.
    pub client_in: u64,
    /// Bytes written to the client.
    pub client_out: u64,
    /// Messages relayed client → backend.
    pub msgs_up: u64,
    /// Frames relayed backend → client.
    pub frames_down: u64,
}

/// A backend whose listen queue was full when the request was complete.
///
/// A non-blocking `connect` to a UNIX socket answers `EAGAIN` while the listener's queue of
/// connections not yet accepted is full. That is momentary when many clients arrive at once (a
/// router's devices all reconnecting after a reboot): the backend accepts as fast as it can,
/// but each client's connect is made the moment its request is read. The kernel has no event
/// for "room in that queue", so the connection waits in [`Phase::Connecting`] for its
/// `deadline`, then connects again (from the request still in `from_client`, walking the path
/// anew), pausing 1 ms, then twice as long at each try up to 64 ms. The last try is made at the
/// handshake deadline; if the queue is still full then, the answer is 503. Each try is a fresh
/// socket: a Linux stream socket whose `connect` failed with `EAGAIN` could be connected
/// again, but a fresh walk also finds a backend that was restarted meanwhile (a new socket
/// file), and no descriptor is held while waiting. Nothing is sent to the client before the
/// connect succeeds; what it sends meanwhile stays in `from_client`, which it can fill, no
/// more.
#[derive(Clone, Copy, Debug)]
struct BackendWait {
    /// The first connect that found the queue full.
    since: Instant,
    /// The pause before the next try.
    pause: std::time::Duration,
    /// The handshake deadline: the last try.
    last_try: Instant,
}

/// A WebSocket connection and its backend.
#[derive(Debug)]
pub struct Connection {
    key: Key,
    client: TcpStream,
    /// `wss://`: the TLS layer between the socket and the buffers.
    tls: Option<TlsIo>,
    /// Client address.
    pub peer: SocketAddr,
    backend: Option<BackendSock>,
    phase: Phase,
    session: Session,
    uplink: Uplink,
    downlink: Downlink,
    from_client: Option<Buf>,
    to_backend: Option<Buf>,
    from_backend: Option<Buf>,
    to_client: Option<Buf>,
    client_readable: bool,
    /// The last client event reported the peer's FIN (EPOLLRDHUP): read until EOF.
    client_read_closed: bool,
    client_writable: bool,
    client_eof: bool,
    client_wants_write: bool,
    close_sent: bool,
    reason: Option<Reason>,
    deadline: Option<Instant>,
    ping_at: Option<Instant>,
    pong_deadline: Option<Instant>,
    last_rx: Instant,
    last_activity: Instant,
    /// The endpoint name, for logs (truncated).
    pub name: heapless::String<64>,
    /// The relay mode chosen at the handshake.
    pub mode: Mode,
    /// Counters.
    pub stats: Stats,
    /// Opened at.
    pub opened: Instant,
    /// Holds an overflow slot (answered 503).
    pub overflow: bool,
    /// Already queued for another drive.
    pub queued: bool,
    /// Index of the site (listener) that accepted it.
    pub site: usize,
    /// The site's timeouts when the connection was accepted: every timer is armed and fired
    /// from this copy, never from the site (see `timers`).
    timeouts: Timeouts,
    /// The static file being sent and the bytes left.
    file: Option<(std::fs::File, u64)>,
    /// Keep the HTTP connection for another request after this response.
    keep_alive: bool,
    /// `sendfile` failed with "not supported" once: copy pages through the buffer.
    no_sendfile: bool,
    /// Direct mode: the client's fd went to the backend.
    fd_sent: bool,
    /// Set while the backend's listen queue is full (see [`BackendWait`]).
    backend_wait: Option<BackendWait>,
}

impl Connection {
    /// A freshly accepted client, registered for reading.
    ///
    /// # Errors
    /// The registration error.
    pub fn accept(
        key: Key,
        mut client: TcpStream,
        peer: SocketAddr,
        cx: &mut Ctx<'_>,
        site: usize,
        overflow: bool,
        tls: Option<Box<rustls::ServerConnection>>,
    ) -> std::io::Result<Self> {
        cx.registry.register(&mut client, token::encode(key, Side::Client), Interest::READABLE)?;
        let timeouts = Timeouts::of(cx.site);
        let mut c = Self {
            key,
            client,
            tls: tls.map(TlsIo::new),
            peer,
            backend: None,
            phase: Phase::Handshake,
            session: Session::new(cx.site.max_message),
            uplink: Uplink::new(Mode::Stream),
            downlink: Downlink::new(Mode::Stream, cx.site.data_type),
            from_client: None,
            to_backend: None,
            from_backend: None,
            to_client: None,
            client_readable: true,
            client_read_closed: false,
            client_writable: true,
            client_eof: false,
            client_wants_write: false,
            close_sent: false,
            reason: None,
            deadline: Some(cx.now + timeouts.handshake),
            ping_at: None,
            pong_deadline: None,
            last_rx: cx.now,
            last_activity: cx.now,
            name: heapless::String::new(),
            mode: Mode::Stream,
            stats: Stats::default(),
            opened: cx.now,
            overflow,
            queued: false,
            site,
            timeouts,
            file: None,
            keep_alive: false,
            no_sendfile: false,
            fd_sent: false,
            backend_wait: None,
        };
        // Pages over https:// go through rustls, not sendfile.
        c.no_sendfile = c.tls.is_some();
        if overflow {
            c.refuse(cx, Refusal::Full);
        }
        Ok(c)
    }

    /// The slab key.
    #[must_use]
    pub fn key(&self) -> Key {
        self.key
    }

    /// Why it ended (or is ending).
    #[must_use]
    pub fn reason(&self) -> Option<Reason> {
        self.reason
    }

    /// Current phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The timeouts it was admitted with.
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Records an event's readiness.
    pub fn on_event(&mut self, side: Side, readable: bool, writable: bool, read_closed: bool) {
        match side {
            Side::Client => {
                self.client_readable |= readable;
                self.client_read_closed |= read_closed;
                self.client_writable |= writable;
            }
            Side::Backend => {
                if let Some(b) = self.backend.as_mut() {
                    b.readable |= readable;
                    b.writable |= writable;
                    b.read_closed |= read_closed;
                }
            }
        }
    }

    /// Deregisters both sockets (the loop calls it before dropping the connection).
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.client);
        if let Some(b) = &self.backend {
            let _ = registry.deregister(&mut SourceFd(&b.sock.fd.as_raw_fd()));
        }
    }

    /// Gives every buffer back.
    pub fn release(&mut self, pool: &mut BufPool) {
        for slot in [
            &mut self.from_client,
            &mut self.to_backend,
            &mut self.from_backend,
            &mut self.to_client,
        ] {
            if let Some(b) = slot.take() {
                pool.put(b);
            }
        }
    }

    /// The earliest timer.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.deadline, self.ping_at, self.pong_deadline, self.idle_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the connection is idle for its timeout: only `Open` has one, counted from the
    /// last activity either way.
    fn idle_deadline(&self) -> Option<Instant> {
        match (self.phase, self.timeouts.idle) {
            (Phase::Open, Some(d)) => Some(self.last_activity + d),
            _ => None,
        }
    }

    fn set_reason(&mut self, r: Reason) {
        if self.reason.is_none() {
            self.reason = Some(r);
        }
    }

    /// Starts closing for a gateway shutdown: close 1001 to open connections, drop handshakes.
    pub fn shutdown(&mut self, cx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Handshake | Phase::Connecting => self.give_up(Reason::Shutdown),
            Phase::Open => {
                self.start_close(cx, Reason::Shutdown);
            }
            _ => {}
        }
    }

    /// Fires the timers that are due. Returns `true` when the connection should be driven.
    ///
    /// Every due deadline is taken first, then acted on only where the phase gives it a
    /// meaning; none is left in the past (see `timers`).
    pub fn on_timers(&mut self, cx: &mut Ctx<'_>) -> bool {
        let now = cx.now;
        if self.phase == Phase::Connecting {
            return self.connect_again(now);
        }
        let t = self.timeouts;
        let deadline = timers::take_due(&mut self.deadline, now);
        let pong_due = timers::take_due(&mut self.pong_deadline, now);
        let ping_due = timers::take_due(&mut self.ping_at, now);
        let idle_due = self.idle_deadline().is_some_and(|d| d <= now);
        if deadline {
            let r = match self.phase {
                Phase::Handshake => Reason::HandshakeTimeout,
                Phase::Handover => Reason::HandoverTimeout,
                _ => Reason::CloseTimeout,
            };
            self.give_up(r);
            return true;
        }
        if self.phase != Phase::Open {
            return false;
        }
        if pong_due {
            self.fail(cx, Reason::PingTimeout);
            return true;
        }
        if idle_due {
            self.start_close(cx, Reason::IdleTimeout);
            return true;
        }
        if ping_due {
            if let Some(interval) = t.ping_interval {
                if now.duration_since(self.last_rx) >= interval {
                    let queued = cx.pool.ensure(&mut self.to_client)
                        && self
                            .to_client
                            .as_mut()
                            .is_some_and(|out| codec::emit(out, true, OpCode::Ping, b"wsgate"));
                    // The pong is due from the first attempt, queued or not: a client that
                    // reads nothing keeps its output full, so its ping never fits, and it
                    // must not hold its slot (and stall its backend) for ever.
                    if self.pong_deadline.is_none() {
                        self.pong_deadline = Some(now + t.pong);
                    }
                    if !queued {
                        // No room now: try again shortly, and before the pong is due, so that
                        // a client heard from meanwhile is not failed for a ping it never got.
                        self.ping_at = Some(now + (interval / 4).min(t.pong / 2));
                    }
                } else {
                    // Heard from since a ping that never fitted: nothing is outstanding.
                    self.pong_deadline = None;
                    self.ping_at = Some(self.last_rx + interval);
                }
            }
            return true;
        }
        false
    }

    /// Moves bytes until nothing more can move, then updates interest.
    pub fn drive(&mut self, cx: &mut Ctx<'_>) -> Verdict {
        let mut rounds = 0;
        loop {
            let mut progress = self.read_client(cx);
            progress |= self.process_client(cx);
            progress |= self.handover(cx);
            progress |= self.write_backend(cx);
            progress |= self.read_backend(cx);
            progress |= self.process_backend(cx);
            progress |= self.pump_file(cx);
            progress |= self.write_client(cx);
            progress |= self.advance(cx);
            if self.is_done() {
                return Verdict::Done;
            }
            if !progress {
                break;
            }
            rounds += 1;
            if rounds >= MAX_ROUNDS {
                self.release_empty(cx.pool);
                self.update_interest(cx.registry);
                return Verdict::Again;
            }
        }
        self.release_empty(cx.pool);
        self.update_interest(cx.registry);
        Verdict::Continue
    }

    fn is_done(&self) -> bool {
        match self.phase {
            Phase::Linger => self.client_eof,
            Phase::Draining => self.backend.is_none(),
            Phase::Handover => self.fd_sent && self.to_backend.as_ref().is_none_or(Buf::is_empty),
            _ => false,
        }
    }

    fn release_empty(&mut self, pool: &mut BufPool) {
        for slot in [
            &mut self.from_client,
            &mut self.to_backend,
            &mut self.from_backend,
            &mut self.to_client,
        ] {
            pool.release_if_empty(slot);
        }
    }

    fn update_interest(&mut self, registry: &Registry) {
        let pending = self.to_client.as_ref().is_some_and(|b| !b.is_empty())
            || (self.phase == Phase::File && self.file.is_some())
            || self.tls.as_ref().is_some_and(TlsIo::wants_write);
        let want = pending && !self.client_writable;
        if want != self.client_wants_write {
            let interest =
                if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if registry
                .reregister(&mut self.client, token::encode(self.key, Side::Client), interest)
                .is_ok()
            {
                self.client_wants_write = want;
            }
        }
        let pending = self.to_backend.as_ref().is_some_and(|b| !b.is_empty());
        if let Some(b) = self.backend.as_mut() {
            let want = pending && !b.writable;
            if want != b.wants_write {
                let interest =
                    if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                let fd = b.sock.fd.as_raw_fd();
                if registry
                    .reregister(
                        &mut SourceFd(&fd),
                        token::encode(self.key, Side::Backend),
                        interest,
                    )
                    .is_ok()
                {
                    b.wants_write = want;
                }
            }
        }
    }

    /// Phase changes that depend on buffers having drained.
    fn advance(&mut self, cx: &mut Ctx<'_>) -> bool {
        // Over TLS, bytes are out only once rustls has sent them, and plaintext written before
        // the handshake completed (a 503 at accept) waits inside rustls for it.
        let to_client_empty = self.to_client.as_ref().is_none_or(Buf::is_empty)
            && !self.tls.as_ref().is_some_and(|t| t.wants_write() || t.is_handshaking());
        match self.phase {
            // The client left (or TLS failed) before it was answered.
            Phase::Handshake | Phase::Connecting if self.client_eof => {
                self.phase = Phase::Linger;
                true
            }
            Phase::Open if self.client_eof => {
                self.set_reason(Reason::ClientGone);
                self.enter_draining(cx);
                true
            }
            Phase::Flushing if self.client_eof => {
                self.phase = Phase::Linger;
                true
            }
            Phase::Flushing if to_client_empty => {
                // TLS first says its own goodbye (close_notify), which must go out too.
                if self.tls.as_mut().is_some_and(TlsIo::close_notify) {
                    return true;
                }
                let _ = self.client.shutdown(Shutdown::Write);
                self.phase = Phase::Linger;
                true
            }
            Phase::Closing if self.client_eof => {
                self.phase = Phase::Linger;
                true
            }
            _ => false,
        }
    }

    fn enter_draining(&mut self, cx: &mut Ctx<'_>) {
        self.enter_close(cx, Phase::Draining);
    }

    /// Ends without a closing handshake (none was started, or its time is up): stop reading
    /// the client and linger until what is queued for it has gone.
    fn give_up(&mut self, why: Reason) {
        self.set_reason(why);
        self.phase = Phase::Linger;
        self.client_eof = true;
    }

    /// The close transition: into `phase` (`Flushing`, `Closing` or `Draining`) with the close
    /// deadline, the backend told to finish (shut down once what it is owed is flushed).
    fn enter_close(&mut self, cx: &mut Ctx<'_>, phase: Phase) {
        self.phase = phase;
        self.deadline = Some(cx.now + self.timeouts.close);
        if let Some(b) = self.backend.as_mut() {
            b.finish = true;
        }
        self.finish_backend_if_flushed(cx);
    }

    /// Queues an HTTP refusal (its status is [`Refusal::status`]) and heads for `Flushing`.
    fn refuse(&mut self, cx: &mut Ctx<'_>, why: Refusal) {
        self.set_reason(Reason::Refused(why));
        if cx.pool.ensure(&mut self.to_client) {
            if let Some(out) = self.to_client.as_mut() {
                if let Some(n) = handshake::write_error(out.spare(), why.status()) {
                    out.commit(n);
                }
            }
        }
        self.enter_close(cx, Phase::Flushing);
    }

    /// The 101 was queued but what the backend must get first does not fit in its buffer:
    /// take the 101 back and refuse with 431.
    fn refuse_after_101(&mut self, cx: &mut Ctx<'_>) {
        if let Some(o) = self.to_client.as_mut() {
            o.consume(o.len());
        }
        self.refuse(cx, Refusal::RecordTooLarge);
    }

    /// Queues a close frame to the client (once).
    fn send_close(&mut self, cx: &mut Ctx<'_>, code: Option<u16>) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        if cx.pool.ensure(&mut self.to_client) {
            if let Some(out) = self.to_client.as_mut() {
                let _ = codec::emit_close(out, code);
            }
        }
    }

    /// Fails the connection: close with `why`'s code now, then shut down (§7.1.7).
    fn fail(&mut self, cx: &mut Ctx<'_>, why: Reason) {
        self.set_reason(why);
        self.send_close(cx, why.close_code());
        self.enter_close(cx, Phase::Flushing);
    }

    /// Starts the closing handshake from our side, with `why`'s code, and waits for the
    /// client's close.
    fn start_close(&mut self, cx: &mut Ctx<'_>, why: Reason) {
        self.set_reason(why);
        self.send_close(cx, why.close_code());
        self.enter_close(cx, Phase::Closing);
    }

    fn finish_backend_if_flushed(&mut self, cx: &mut Ctx<'_>) {
        let flushed = self.to_backend.as_ref().is_none_or(Buf::is_empty);
        let done = self.backend.as_ref().is_some_and(|b| b.finish && (flushed || b.eof));
        if done {
            if let Some(b) = self.backend.take() {
                // The client is done sending (§7.1.1 counterpart): tell the backend with EOF.
                let _ = shutdown(b.sock.fd.as_raw_fd(), nix::sys::socket::Shutdown::Write);
                let _ = cx.registry.deregister(&mut SourceFd(&b.sock.fd.as_raw_fd()));
            }
        }
    }

    fn read_client(&mut self, cx: &mut Ctx<'_>) -> bool {
        // In `Handover` the client's bytes are left in the socket: they are the backend's.
        if !self.client_readable
            || self.client_eof
            || matches!(self.phase, Phase::Draining | Phase::Handover)
        {
            return false;
        }
        if !cx.pool.ensure(&mut self.from_client) {
            return false;
        }
        let Some(buf) = self.from_client.as_mut() else { return false };
        if matches!(self.phase, Phase::Linger | Phase::Flushing) {
            // Input left from before the end is not wanted either (a backend that failed while
            // the client was sending leaves the buffer full): without the room, the client's
            // EOF would never be read and the connection would wait for the close timeout.
            buf.consume(buf.len());
        }
        if buf.free() == 0 {
            return false;
        }
        let room = buf.free();
        let result = match self.tls.as_mut() {
            Some(tls) => tls.read(&self.client, buf.spare()),
            None => (&self.client).read(buf.spare()),
        };
        match result {
            Ok(0) => {
                self.client_eof = true;
                true
            }
            Ok(n) => {
                if n < room && self.tls.is_none() && !self.client_read_closed {
                    // Short read: the socket is empty (see the module comment).
                    self.client_readable = false;
                }
                buf.commit(n);
                self.stats.client_in += n as u64;
                self.last_rx = cx.now;
                if matches!(self.phase, Phase::Linger | Phase::Flushing) {
                    // Nobody will read it: keep the buffer free for the next read.
                    buf.consume(n);
                }
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.client_readable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(e) if e.kind() == ErrorKind::InvalidData && self.tls.is_some() => {
                self.tls_failed(cx);
                true
            }
            Err(e) => {
                self.set_reason(Reason::ClientError(e.kind()));
                self.client_eof = true;
                true
            }
        }
    }

    /// TLS gave up: log why, answer plain HTTP with a 400 in clear, otherwise send the alert
    /// rustls queued (best effort) and end the client side.
    fn tls_failed(&mut self, cx: &mut Ctx<'_>) {
        let Some(tls) = self.tls.as_mut() else { return };
        let Some((fault, detail)) = tls.fault() else { return };
        match detail {
            Some(e) => {
                crate::conn_log!(
                    crate::logging::WARN,
                    "conn={} peer={} {fault}: {e}",
                    self.key,
                    self.peer
                )
            }
            None => {
                crate::conn_log!(
                    crate::logging::WARN,
                    "conn={} peer={} {fault}",
                    self.key,
                    self.peer
                )
            }
        }
        if fault == TlsFault::PlainHttp && self.phase == Phase::Handshake {
            // Nothing was encrypted yet: the refusal goes out as plain HTTP.
            self.tls = None;
            self.refuse(cx, Refusal::PlainHttp);
            return;
        }
        while tls.wants_write() {
            if !matches!(tls.write_tls(&self.client), Ok(n) if n > 0) {
                break;
            }
        }
        self.set_reason(Reason::Tls(fault));
        self.client_eof = true;
        if let Some(b) = self.from_client.as_mut() {
            if self.phase == Phase::Handshake {
                b.consume(b.len());
            }
        }
    }

    fn write_client(&mut self, cx: &mut Ctx<'_>) -> bool {
        if !self.client_writable || self.phase == Phase::Draining || self.phase == Phase::Linger {
            return false;
        }
        if self.tls.is_some() {
            return self.write_client_tls(cx);
        }
        let Some(buf) = self.to_client.as_mut() else { return false };
        if buf.is_empty() {
            return false;
        }
        match (&self.client).write(buf.readable()) {
            Ok(n) => {
                buf.consume(n);
                self.stats.client_out += n as u64;
                n > 0
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.client_writable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(e) => {
                self.client_write_failed(cx, e.kind());
                true
            }
        }
    }

    /// `write_client` over TLS: plaintext into rustls while it takes it, ciphertext out until
    /// the socket is full or nothing is left (handshake messages and alerts included).
    fn write_client_tls(&mut self, cx: &mut Ctx<'_>) -> bool {
        let mut progress = false;
        loop {
            let Some(tls) = self.tls.as_mut() else { return progress };
            if let Some(buf) = self.to_client.as_mut() {
                if !buf.is_empty() {
                    let n = tls.write(buf.readable());
                    buf.consume(n);
                    self.stats.client_out += n as u64;
                    progress |= n > 0;
                }
            }
            if !tls.wants_write() {
                return progress;
            }
            match tls.write_tls(&self.client) {
                Ok(0) => return progress,
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.client_writable = false;
                    return progress;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.client_write_failed(cx, e.kind());
                    return true;
                }
            }
        }
    }

    /// The client socket refused a write: nothing more goes to the client.
    fn client_write_failed(&mut self, cx: &mut Ctx<'_>, kind: ErrorKind) {
        self.set_reason(Reason::ClientError(kind));
        self.client_eof = true;
        if let Some(b) = self.to_client.as_mut() {
            b.consume(b.len());
        }
        if self.phase == Phase::Open || self.phase == Phase::Closing {
            self.enter_draining(cx);
        } else {
            self.phase = Phase::Linger;
        }
    }

    fn write_backend(&mut self, cx: &mut Ctx<'_>) -> bool {
        // Direct mode: the record's first bytes must carry the client's fd (`handover`).
        if self.phase == Phase::Handover && !self.fd_sent {
            return false;
        }
        let (Some(b), Some(out)) = (self.backend.as_mut(), self.to_backend.as_mut()) else {
            return false;
        };
        if !b.writable || out.is_empty() {
            return false;
        }
        let fd = b.sock.fd.as_raw_fd();
        let mut progress = false;
        let result = if b.sock.seqpacket {
            let mut r = Ok(());
            while let Some((end, range)) = Uplink::next_packet(out) {
                match send(
                    fd,
                    out.readable().get(range).unwrap_or_default(),
                    MsgFlags::MSG_NOSIGNAL,
                ) {
                    Ok(_) => {
                        out.consume(end);
                        progress = true;
                    }
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            r
        } else {
            match send(fd, out.readable(), MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => {
                    out.consume(n);
                    progress = n > 0;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => {}
            Err(Errno::EAGAIN) => b.writable = false,
            Err(Errno::EINTR) => progress = true,
            Err(e) => {
                // The backend is gone: what was queued for it is lost; say so to the client.
                out.consume(out.len());
                b.eof = true;
                if self.phase == Phase::Open {
                    self.fail(cx, Reason::BackendError(e));
                }
                progress = true;
            }
        }
        self.finish_backend_if_flushed(cx);
        progress
    }

    /// Direct mode: once the 101 is out, one `sendmsg` carries the hand-over record and, as
    /// `SCM_RIGHTS`, the client's socket. What did not fit in that call follows as plain bytes
    /// (`write_backend`); then the slot is freed, closing our copy of the socket without a
    /// `shutdown`, which would cut the backend's connection too.
    fn handover(&mut self, cx: &mut Ctx<'_>) -> bool {
        if self.phase != Phase::Handover || self.fd_sent {
            return false;
        }
        if !self.to_client.as_ref().is_none_or(Buf::is_empty) {
            return false;
        }
        let (Some(b), Some(out)) = (self.backend.as_mut(), self.to_backend.as_mut()) else {
            return false;
        };
        // SCM_RIGHTS needs at least one byte to travel with; the record always has some.
        if !b.writable || out.is_empty() {
            return false;
        }
        let fds = [self.client.as_raw_fd()];
        let iov = [std::io::IoSlice::new(out.readable())];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        match nix::sys::socket::sendmsg::<()>(
            b.sock.fd.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => {
                out.consume(n);
                self.fd_sent = true;
                self.set_reason(Reason::HandedOver);
                crate::conn_log!(
                    crate::logging::INFO,
                    "conn={} peer={} handed over to /{} (direct)",
                    self.key,
                    self.peer,
                    self.name
                );
                true
            }
            Err(Errno::EAGAIN) => {
                b.writable = false;
                false
            }
            Err(Errno::EINTR) => true,
            Err(e) => {
                // The backend went away: the client got its 101, so it gets a close (1011).
                out.consume(out.len());
                b.eof = true;
                self.phase = Phase::Open;
                self.fail(cx, Reason::BackendError(e));
                true
            }
        }
    }

    fn read_backend(&mut self, cx: &mut Ctx<'_>) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        let Some(b) = self.backend.as_mut() else { return false };
        if !b.readable || b.eof {
            return false;
        }
        if !cx.pool.ensure(&mut self.from_backend) {
            return false;
        }
        let Some(buf) = self.from_backend.as_mut() else { return false };
        let fd = b.sock.fd.as_raw_fd();
        let result = if b.sock.seqpacket {
            // One packet at a time, and only into an empty buffer, leaving room for the frame
            // header in the client buffer of the same size.
            let room = if cx.pool.ensure(&mut self.to_client) {
                self.to_client.as_ref().map_or(0, Buf::free)
            } else {
                0
            };
            if !buf.is_empty() || room < MAX_SERVER_HEADER_LEN {
                return false;
            }
            let limit = buf.capacity().saturating_sub(MAX_SERVER_HEADER_LEN);
            let spare = buf.spare();
            let spare = spare.get_mut(..limit).unwrap_or_default();
            match recv(fd, spare, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > limit => {
                    b.eof = true;
                    self.fail(cx, Reason::BackendPacketTooBig);
                    return true;
                }
                other => other,
            }
        } else {
            if buf.free() == 0 {
                return false;
            }
            let room = buf.free();
            let result = recv(fd, buf.spare(), MsgFlags::empty());
            if matches!(result, Ok(n) if n > 0 && n < room) && !b.read_closed {
                // Short read: the socket is empty (see the module comment).
                b.readable = false;
            }
            result
        };
        match result {
            Ok(0) if b.sock.seqpacket && !b.read_closed && !peer_hung_up(b.sock.fd.as_fd()) => {
                // A zero-length packet, not EOF: an empty message.
                self.last_activity = cx.now;
                // The connection's own type, like its other messages: not the site's, which a
                // reload may have changed since.
                let kind = match self.downlink.data_type() {
                    DataType::Binary => OpCode::Binary,
                    DataType::Text | DataType::Auto => OpCode::Text,
                };
                if let Some(out) = self.to_client.as_mut() {
                    if codec::emit(out, true, kind, &[]) {
                        self.stats.frames_down += 1;
                    }
                }
                true
            }
            Ok(0) => {
                b.eof = true;
                true
            }
            Ok(n) => {
                buf.commit(n);
                self.last_activity = cx.now;
                true
            }
            Err(Errno::EAGAIN) => {
                b.readable = false;
                false
            }
            Err(Errno::EINTR) => true,
            Err(e) => {
                b.eof = true;
                self.set_reason(Reason::BackendError(e));
                true
            }
        }
    }

    fn process_backend(&mut self, cx: &mut Ctx<'_>) -> bool {
        if self.phase != Phase::Open || self.close_sent {
            return false;
        }
        let Some(b) = self.backend.as_ref() else { return false };
        let eof = b.eof;
        let has_input = self.from_backend.as_ref().is_some_and(|x| !x.is_empty());
        if !has_input {
            if eof {
                // Everything the backend sent has gone to the client. EOF alone is how a
                // backend says it is done (1000), in stream mode its only way; a message cut
                // short in either direction, or a socket error, says it failed (1011).
                let why = match self.reason {
                    Some(r @ Reason::BackendError(_)) => r,
                    _ if self.downlink.in_message() => Reason::BackendEofMidMessage,
                    _ if self.session.in_message() => Reason::BackendEofMidClientMessage,
                    _ => Reason::BackendEof,
                };
                self.start_close(cx, why);
                return true;
            }
            return false;
        }
        if !cx.pool.ensure(&mut self.to_client) {
            return false;
        }
        let (Some(input), Some(out)) = (self.from_backend.as_mut(), self.to_client.as_mut()) else {
            return false;
        };
        let before = input.len();
        match self.downlink.pump(input, out, eof) {
            Ok(report) => {
                self.stats.frames_down += u64::from(report.frames);
                if report.demoted_to_binary {
                    crate::conn_log!(
                        crate::logging::WARN,
                        "conn={} peer={} backend data is not UTF-8: sent as binary",
                        self.key,
                        self.peer
                    );
                }
                if let Some((code, reason_len)) = report.close {
                    if out.free() < 2 + 125 {
                        return false;
                    }
                    let reason = Downlink::close_reason(input, reason_len);
                    let mut payload = [0u8; 125];
                    let [hi, lo] = code.to_be_bytes();
                    let n = 2 + reason.len();
                    if let Some(p) = payload.get_mut(..n) {
                        if let Some((h, rest)) = p.split_first_chunk_mut::<2>() {
                            *h = [hi, lo];
                            rest.copy_from_slice(reason);
                        }
                    }
                    let _ =
                        codec::emit(out, true, OpCode::Close, payload.get(..n).unwrap_or_default());
                    input.consume(crate::relay::record::HEADER_LEN + n);
                    self.close_sent = true;
                    self.set_reason(Reason::BackendClose(code));
                    self.enter_close(cx, Phase::Closing);
                    return true;
                }
                report.frames > 0 || input.len() != before
            }
            Err(e) => {
                self.fail(cx, Reason::BackendProtocol(e));
                true
            }
        }
    }

    fn process_client(&mut self, cx: &mut Ctx<'_>) -> bool {
        match self.phase {
            Phase::Handshake => self.process_handshake(cx),
            Phase::Open | Phase::Closing => self.process_frames(cx),
            _ => false,
        }
    }

    fn process_frames(&mut self, cx: &mut Ctx<'_>) -> bool {
        let mut progress = false;
        loop {
            if self.from_client.as_ref().is_none_or(Buf::is_empty) {
                return progress;
            }
            if !cx.pool.ensure(&mut self.to_client) {
                return progress;
            }
            let forwarding =
                self.phase == Phase::Open && self.backend.as_ref().is_some_and(|b| !b.finish);
            if forwarding && !cx.pool.ensure(&mut self.to_backend) {
                return progress;
            }
            let (Some(input), Some(to_client)) =
                (self.from_client.as_mut(), self.to_client.as_mut())
            else {
                return progress;
            };
            if to_client.free() < CONTROL_ROOM {
                return progress;
            }
            let max_data = match (forwarding, self.to_backend.as_ref()) {
                (true, Some(tb)) if tb.free() < CONTROL_ROOM => return progress,
                (true, Some(tb)) => self.uplink.room(tb).saturating_sub(CONTROL_ROOM),
                // Not forwarding (closing): data is read and dropped.
                _ => usize::MAX,
            };
            let (n, event) = match self.session.decode(input.readable_mut(), max_data) {
                Ok(x) => x,
                Err(e) => {
                    if let Some(i) = self.from_client.as_mut() {
                        i.consume(i.len());
                    }
                    self.fail(cx, Reason::Protocol(e));
                    return true;
                }
            };
            let mut close: Option<(Option<u16>, Control)> = None;
            match event {
                Some(Event::Data { kind, start, fin, len }) => {
                    self.last_activity = cx.now;
                    if forwarding {
                        let payload = input.readable().get(n - len..n).unwrap_or_default();
                        if let Some(tb) = self.to_backend.as_mut() {
                            if let Err(e) = self.uplink.put(tb, kind, start, fin, payload) {
                                input.consume(input.len());
                                self.fail(cx, Reason::Uplink(e));
                                return true;
                            }
                        }
                        if fin {
                            self.stats.msgs_up += 1;
                        }
                    }
                }
                // §5.5.3: no pong after our close frame.
                Some(Event::Ping(p)) if !self.close_sent => {
                    let _ = codec::emit(to_client, true, OpCode::Pong, p.as_slice());
                }
                Some(Event::Ping(_)) => {}
                Some(Event::Pong(_)) => {
                    self.pong_deadline = None;
                    if let Some(interval) = self.timeouts.ping_interval {
                        self.ping_at = Some(cx.now + interval);
                    }
                }
                Some(Event::Close { code, reason }) => close = Some((code, reason)),
                None => {}
            }
            input.consume(n);
            if let Some((code, reason)) = close {
                self.set_reason(Reason::ClientClose(code));
                // §5.5.1: echo the status code; empty close gets an empty answer.
                self.send_close(cx, code);
                if let (Some(tb), true) = (self.to_backend.as_mut(), forwarding) {
                    self.uplink.close(tb, code, reason.as_slice());
                }
                self.enter_close(cx, Phase::Flushing);
                return true;
            }
            if n == 0 && event.is_none() {
                return progress;
            }
            progress = true;
        }
    }

    /// Answers a static page request for `name` (decoded, no leading '/', "" for the root).
    fn serve_file(
        &mut self,
        cx: &mut Ctx<'_>,
        name: &str,
        head_only: bool,
        keep_alive: bool,
    ) -> bool {
        let (Some(htdocs), Some(doc)) = (cx.htdocs, cx.site.document.as_ref()) else {
            return false;
        };
        let mut haystack = heapless::String::<{ path::MAX_PATH + 1 }>::new();
        let _ = haystack.push('/');
        let _ = haystack.push_str(name);
        if !doc.access.permits(&haystack) {
            self.refuse(cx, Refusal::Denied);
            return true;
        }
        let file = match htdocs.open_file(name, &doc.default_page) {
            Ok(f) => f,
            Err(e) => {
                self.refuse(cx, Refusal::File(e));
                return true;
            }
        };
        // `/sub` and `/sub/` are one directory: its page is served only when both spellings
        // pass, so that a rule written for one (`deny = "^/private$"`) cannot be stepped
        // around with the other.
        if file.default_page && !name.is_empty() {
            if haystack.ends_with('/') {
                haystack.pop();
            } else {
                let _ = haystack.push('/');
            }
            if !doc.access.permits(&haystack) {
                self.refuse(cx, Refusal::Denied);
                return true;
            }
        }
        if !cx.pool.ensure(&mut self.to_client) {
            self.refuse(cx, Refusal::Full);
            return true;
        }
        let Some(out) = self.to_client.as_mut() else { return false };
        let keep_alive = keep_alive && !self.timeouts.keepalive.is_zero();
        // The MIME type follows the name served; a directory gets its default page's.
        let mime_name = if file.default_page { doc.default_page.as_str() } else { name };
        let mime = static_files::mime_type(mime_name);
        let Some(n) = static_files::write_ok(out.spare(), mime, file.len, keep_alive) else {
            self.refuse(cx, Refusal::ResponseTooLarge);
            return true;
        };
        out.commit(n);
        crate::conn_log!(
            crate::logging::INFO,
            "conn={} peer={} {} /{name} 200 ({} bytes)",
            self.key,
            self.peer,
            if head_only { "HEAD" } else { "GET" },
            file.len
        );
        self.keep_alive = keep_alive;
        if head_only || file.len == 0 {
            self.finish_response(cx);
        } else {
            self.file = Some((file.file, file.len));
            self.phase = Phase::File;
            self.deadline = Some(cx.now + self.timeouts.handshake.max(self.timeouts.close));
        }
        true
    }

    /// After a static response: wait for the next request, or close. The name stays (the
    /// close line names the last path served) until the next request replaces it.
    fn finish_response(&mut self, cx: &mut Ctx<'_>) {
        self.file = None;
        if self.keep_alive && !self.client_eof {
            self.phase = Phase::Handshake;
            self.deadline = Some(cx.now + self.timeouts.keepalive);
        } else {
            self.enter_close(cx, Phase::Flushing);
        }
    }

    /// Moves file bytes into the client buffer while there is room.
    fn pump_file(&mut self, cx: &mut Ctx<'_>) -> bool {
        if self.phase != Phase::File {
            return false;
        }
        // Plain HTTP: once the head is out, the kernel copies the file to the socket itself.
        if self.to_client.as_ref().is_none_or(Buf::is_empty) && !self.no_sendfile {
            return self.send_file(cx);
        }
        if !cx.pool.ensure(&mut self.to_client) {
            return false;
        }
        let (Some((file, left)), Some(out)) = (self.file.as_mut(), self.to_client.as_mut()) else {
            return false;
        };
        if out.free() == 0 {
            return false;
        }
        let spare = out.spare();
        let want = spare.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
        let Some(dst) = spare.get_mut(..want) else { return false };
        match file.read(dst) {
            Ok(0) | Err(_) => {
                // The file shrank or failed under us: the promised length cannot be met, so the
                // connection must end here (RFC 9112 §6.3).
                self.keep_alive = false;
                self.finish_response(cx);
            }
            Ok(n) => {
                out.commit(n);
                *left -= n as u64;
                if *left == 0 {
                    self.finish_response(cx);
                }
                // Sending a page is activity: push the deadline.
                if self.phase == Phase::File {
                    self.deadline = Some(cx.now + self.timeouts.close.max(self.timeouts.handshake));
                }
            }
        }
        true
    }

    /// `sendfile(2)` from the page to the client socket, without a user-space copy.
    fn send_file(&mut self, cx: &mut Ctx<'_>) -> bool {
        if !self.client_writable {
            return false;
        }
        let Some((file, left)) = self.file.as_mut() else { return false };
        let count = usize::try_from(*left).unwrap_or(usize::MAX).min(1 << 20);
        match nix::sys::sendfile::sendfile(self.client.as_fd(), file.as_fd(), None, count) {
            Ok(0) => {
                // The file shrank under us: the promised length cannot be met (RFC 9112 §6.3).
                self.keep_alive = false;
                self.finish_response(cx);
            }
            Ok(n) => {
                *left -= n as u64;
                self.stats.client_out += n as u64;
                if *left == 0 {
                    self.finish_response(cx);
                } else {
                    self.deadline = Some(cx.now + self.timeouts.close.max(self.timeouts.handshake));
                }
            }
            Err(Errno::EAGAIN) => {
                self.client_writable = false;
                return false;
            }
            Err(Errno::EINTR) => {}
            // A file system without sendfile support: copy through the buffer instead.
            Err(Errno::EINVAL | Errno::ENOSYS) => self.no_sendfile = true,
            Err(e) => {
                self.set_reason(Reason::ClientError(std::io::Error::from(e).kind()));
                self.client_eof = true;
                self.phase = Phase::Linger;
            }
        }
        true
    }

    fn process_handshake(&mut self, cx: &mut Ctx<'_>) -> bool {
        // Taken out while the request (which borrows it) is examined, put back after.
        let Some(mut input) = self.from_client.take() else { return false };
        let progress = self.handshake_with(cx, &mut input);
        self.from_client = Some(input);
        progress
    }

    fn handshake_with(&mut self, cx: &mut Ctx<'_>, input: &mut Buf) -> bool {
        if input.is_empty() {
            return false;
        }
        // A new request: the last one's name (a page served on this connection) is not its.
        self.name.clear();
        let request = match upgrade::read(input.readable(), cx.htdocs.is_some(), input.free() == 0)
        {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(why) => {
                self.refuse(cx, why);
                return true;
            }
        };
        let mut scratch = [0u8; path::MAX_PATH];
        let docroot = cx.docroot;
        let decision =
            upgrade::decide(&request, cx.site, self.tls.is_some(), &mut scratch, |name: &str| {
                docroot.connect(name)
            });
        let up = match decision {
            Decision::Upgrade(up) => up,
            Decision::Page { name, head_only, keep_alive, head_len } => {
                drop(request);
                let _ = self.name.push_str(truncate(name, 64));
                let served = self.serve_file(cx, name, head_only, keep_alive);
                input.consume(head_len);
                return served;
            }
            Decision::Wait { name } => {
                let _ = self.name.push_str(truncate(name, 64));
                return self.wait_for_backend(cx);
            }
            Decision::Refuse { why, name } => {
                match name {
                    Name::None => {}
                    Name::Raw(raw) => self.name_raw(raw),
                    Name::Decoded(name) => {
                        let _ = self.name.push_str(truncate(name, 64));
                    }
                }
                if let (Refusal::Origin, Request::Upgrade(req, _)) = (why, &request) {
                    crate::conn_log!(
                        crate::logging::WARN,
                        "conn={} peer={} Origin {:?} refused for Host {:?}",
                        self.key,
                        self.peer,
                        req.origin.unwrap_or_default(),
                        req.host
                    );
                }
                self.refuse(cx, why);
                return true;
            }
        };
        // An upgrade is decided for an upgrade request only.
        let Request::Upgrade(req, consumed) = &request else { return false };
        let consumed = *consumed;
        let upgrade::Upgrade { endpoint, mode, protocol, backend, direct } = up;
        let _ = self.name.push_str(truncate(endpoint, 64));
        if !cx.pool.ensure(&mut self.to_client) {
            self.refuse(cx, Refusal::Full);
            return true;
        }
        let Some(out) = self.to_client.as_mut() else { return false };
        let Some(n) = handshake::write_switching(out.spare(), &req.accept, protocol) else {
            self.refuse(cx, Refusal::ResponseTooLarge);
            return true;
        };
        out.commit(n);
        self.backend_wait = None;
        let fd = backend.fd.as_raw_fd();
        if let Err(e) = cx.registry.register(
            &mut SourceFd(&fd),
            token::encode(self.key, Side::Backend),
            Interest::READABLE,
        ) {
            self.refuse(cx, Refusal::Register(Errno::from_raw(e.raw_os_error().unwrap_or(0))));
            return true;
        }
        if direct {
            let started =
                self.start_handover(cx, input, req, consumed, endpoint, protocol, mode, backend);
            drop(request);
            if started {
                // Now in the hand-over record: the client's bytes are the backend's.
                input.consume(input.len());
            }
            return true;
        }
        if let Some(headers) = &cx.site.context {
            let head = input.readable().get(..consumed).unwrap_or_default();
            let info = crate::relay::context::Info {
                peer: self.peer,
                server_port: cx.site.listen.port(),
                path: req.path,
                query: req.query,
                endpoint,
                host: req.host,
                origin: req.origin,
                protocol,
                tls: self.tls.is_some(),
            };
            let written = cx.pool.ensure(&mut self.to_backend)
                && self
                    .to_backend
                    .as_mut()
                    .is_some_and(|tb| crate::relay::context::write(tb, mode, &info, head, headers));
            if !written {
                self.refuse_after_101(cx);
                return true;
            }
        }
        self.backend = Some(BackendSock::new(backend, true));
        self.mode = mode;
        self.uplink = Uplink::new(mode);
        self.downlink = Downlink::new(mode, cx.site.data_type);
        let limit = self
            .uplink
            .max_message(cx.pool.buf_size())
            .map_or(cx.site.max_message, |m| m.min(cx.site.max_message));
        self.session.set_max_message(limit);
        self.phase = Phase::Open;
        self.deadline = None;
        self.last_rx = cx.now;
        self.last_activity = cx.now;
        self.ping_at = self.timeouts.ping_interval.map(|i| cx.now + i);
        crate::conn_log!(
            crate::logging::INFO,
            "conn={} peer={} open /{} mode={}",
            self.key,
            self.peer,
            self.name,
            self.mode
        );
        drop(request);
        input.consume(consumed);
        true
    }
}

impl Connection {
    /// The backend's listen queue is full: wait in `Connecting` for the next try (see
    /// [`BackendWait`]), or refuse with 503 once the last try, at the handshake deadline, has
    /// found it full too. The request stays in `from_client`.
    fn wait_for_backend(&mut self, cx: &mut Ctx<'_>) -> bool {
        let now = cx.now;
        let last_try = self.deadline.unwrap_or(now);
        let wait = self.backend_wait.get_or_insert(BackendWait {
            since: now,
            pause: std::time::Duration::ZERO,
            last_try,
        });
        if now >= wait.last_try {
            let waited = now.saturating_duration_since(wait.since).as_millis();
            self.backend_wait = None;
            self.refuse(cx, Refusal::BackendBusy(u32::try_from(waited).unwrap_or(u32::MAX)));
            return true;
        }
        if wait.pause.is_zero() {
            crate::conn_log!(
                crate::logging::DEBUG,
                "conn={} peer={} backend /{} busy (listen queue full): connecting again for up \
                 to {} ms",
                self.key,
                self.peer,
                self.name,
                wait.last_try.saturating_duration_since(now).as_millis()
            );
        }
        wait.pause = wait.pause.saturating_mul(2).clamp(CONNECT_PAUSE_MIN, CONNECT_PAUSE_MAX);
        self.deadline = Some((now + wait.pause).min(wait.last_try));
        self.phase = Phase::Connecting;
        true
    }

    /// `Connecting`: at the time of the next try, back to `Handshake`, whose deadline is the
    /// last try again; the drive that follows connects. `true` when that drive is due.
    fn connect_again(&mut self, now: Instant) -> bool {
        if self.deadline.is_some_and(|d| d > now) {
            return false;
        }
        self.deadline = self.backend_wait.map(|w| w.last_try);
        self.phase = Phase::Handshake;
        true
    }

    /// Names the connection after a request path that failed its checks, as it was sent (less
    /// its leading '/'), for the close line: control characters are escaped, so the name cannot
    /// break the line, and it is cut to the name's capacity.
    fn name_raw(&mut self, raw: &str) {
        self.name.clear();
        let raw = raw.strip_prefix('/').unwrap_or(raw);
        for c in raw.chars() {
            let full = if c.is_control() {
                c.escape_debug().any(|e| self.name.push(e).is_err())
            } else {
                self.name.push(c).is_err()
            };
            if full {
                break;
            }
        }
    }

    /// Direct mode, after the 101 was queued: the hand-over record (request metadata and the
    /// client bytes already read past the request head) waits in `to_backend`, and the
    /// connection waits in `Handover` for the 101 to leave (see [`Self::handover`]). `false`
    /// when the record does not fit: the request is refused (431) instead.
    #[allow(clippy::too_many_arguments)]
    fn start_handover(
        &mut self,
        cx: &mut Ctx<'_>,
        input: &Buf,
        req: &handshake::UpgradeRequest<'_>,
        consumed: usize,
        endpoint: &str,
        protocol: Option<&str>,
        mode: Mode,
        backend: Backend,
    ) -> bool {
        let head = input.readable().get(..consumed).unwrap_or_default();
        let early = input.readable().get(consumed..).unwrap_or_default();
        let info = crate::relay::context::Info {
            peer: self.peer,
            server_port: cx.site.listen.port(),
            path: req.path,
            query: req.query,
            endpoint,
            host: req.host,
            origin: req.origin,
            protocol,
            tls: false,
        };
        let headers = cx.site.context.as_deref().unwrap_or_default();
        let written = cx.pool.ensure(&mut self.to_backend)
            && self.to_backend.as_mut().is_some_and(|tb| {
                crate::relay::context::write_direct(tb, &info, head, headers, early)
            });
        if !written {
            let _ = cx.registry.deregister(&mut SourceFd(&backend.fd.as_raw_fd()));
            self.refuse_after_101(cx);
            return false;
        }
        self.backend = Some(BackendSock::new(backend, false));
        self.mode = mode;
        self.phase = Phase::Handover;
        self.deadline = Some(cx.now + self.timeouts.close);
        true
    }
}

/// Has the peer of `fd` shut down its writing side? (poll with no wait, `POLLRDHUP`.)
fn peer_hung_up(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // nix has no name for POLLRDHUP; the bit is Linux's.
    let rdhup = PollFlags::from_bits_retain(nix::libc::POLLRDHUP);
    let mut fds = [PollFd::new(fd, rdhup)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds
            .first()
            .and_then(PollFd::revents)
            .is_some_and(|r| r.intersects(rdhup | PollFlags::POLLHUP | PollFlags::POLLERR)),
        _ => false,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_one_close_code() {
        for (why, code) in [
            (Reason::Protocol(ProtocolError::Unmasked), Some(1002)),
            (Reason::Protocol(ProtocolError::TooBig), Some(1009)),
            (Reason::Protocol(ProtocolError::InvalidUtf8), Some(1007)),
            (Reason::Uplink(UplinkError::NewlineInMessage), Some(1003)),
            (Reason::BackendEof, Some(1000)),
            (Reason::BackendClose(4001), Some(4001)),
            (Reason::IdleTimeout, Some(1001)),
            (Reason::Shutdown, Some(1001)),
            (Reason::BackendEofMidMessage, Some(1011)),
            (Reason::BackendEofMidClientMessage, Some(1011)),
            (Reason::BackendProtocol(DownlinkError::InvalidUtf8), Some(1011)),
            (Reason::BackendPacketTooBig, Some(1011)),
            (Reason::BackendError(Errno::EPIPE), Some(1011)),
            (Reason::PingTimeout, Some(1011)),
            (Reason::ClientClose(Some(1000)), None),
            (Reason::ClientGone, None),
            (Reason::Refused(Refusal::Denied), None),
            (Reason::CloseTimeout, None),
        ] {
            assert_eq!(why.close_code(), code, "{why}");
        }
    }
}
