//! A connection's states and what each owns, the transitions there are, and the two ends'
//! sockets with their readiness.

use std::time::{Duration, Instant};

use super::super::tls_io::TlsIo;

/// Where a connection is in its life: the tag of its [`State`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request: the upgrade, or a page.
    Handshake,
    /// The request is complete, the backend's listen queue was full: waiting to try again
    /// (see [`BackendWait`]).
    Connecting,
    /// The request is complete and its backend's connect (TCP) under way: the 101 waits for it.
    Dialing,
    /// Streaming a static file to the client.
    File,
    /// Direct mode: the 101 goes out, then the client's socket goes to the backend.
    Handover,
    /// Relaying.
    Open,
    /// We sent a close frame and wait for the client's.
    Closing,
    /// Last bytes to the client, then shut down its write side.
    Flushing,
    /// The client is gone; flushing to the backend.
    Draining,
    /// Write side shut; discarding input until the client closes.
    Linger,
}

impl Phase {
    /// Its name, for the status.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::Connecting => "connecting",
            Phase::Dialing => "dialing",
            Phase::File => "page",
            Phase::Handover => "handover",
            Phase::Open => "open",
            Phase::Closing => "closing",
            Phase::Flushing => "flushing",
            Phase::Draining => "draining",
            Phase::Linger => "linger",
        }
    }

    /// The transitions there are. Forward only, but for the two loops before an upgrade: a
    /// kept-alive HTTP connection back to `Handshake` for its next request, and a request
    /// waiting for a busy backend back to `Handshake` to connect again.
    #[must_use]
    pub fn may_become(self, next: Phase) -> bool {
        use Phase::*;
        match self {
            Handshake => {
                matches!(next, Connecting | Dialing | File | Handover | Open | Flushing | Linger)
            }
            Connecting => matches!(next, Handshake | Linger),
            Dialing => matches!(next, Open | Flushing | Linger),
            File => matches!(next, Handshake | Flushing | Linger),
            Handover => matches!(next, Flushing | Linger),
            Open => matches!(next, Closing | Flushing | Draining | Linger),
            Closing => matches!(next, Flushing | Draining | Linger),
            Flushing | Draining => next == Linger,
            Linger => false,
        }
    }
}

/// A connection's state, with the data only that state has.
#[derive(Debug)]
pub(super) enum State<U> {
    /// Waiting for a request; `Some` while a complete one waits for a busy backend.
    Handshake(Option<BackendWait>),
    /// The backend's listen queue was full: the next try is at the deadline.
    Connecting(BackendWait),
    /// The backend's connect is under way; the request waits in `from_client`. The backend
    /// leaves it for the 101 (see `request::dialed`).
    Dialing(Option<BackendEnd<U>>),
    /// A page is being sent.
    File(Page),
    /// Direct mode: the hand-over record waits in `to_backend` for the 101 to leave; `true`
    /// once the client's socket went with it.
    Handover(BackendEnd<U>, bool),
    /// Relaying to the backend.
    Open(BackendEnd<U>),
    /// Our close frame is out; the backend, until what it is owed has gone.
    Closing(Option<BackendEnd<U>>),
    /// The client's last bytes go out; the backend as in `Closing`.
    Flushing(Option<BackendEnd<U>>),
    /// The client is gone; the backend gets what the client sent before.
    Draining(Option<BackendEnd<U>>),
    /// Nothing more for the client; what is left of the backend ends with the connection.
    Linger(Option<BackendEnd<U>>),
}

impl<U> State<U> {
    pub(super) fn phase(&self) -> Phase {
        match self {
            Self::Handshake(_) => Phase::Handshake,
            Self::Connecting(_) => Phase::Connecting,
            Self::Dialing(_) => Phase::Dialing,
            Self::File(_) => Phase::File,
            Self::Handover(..) => Phase::Handover,
            Self::Open(_) => Phase::Open,
            Self::Closing(_) => Phase::Closing,
            Self::Flushing(_) => Phase::Flushing,
            Self::Draining(_) => Phase::Draining,
            Self::Linger(_) => Phase::Linger,
        }
    }

    /// The backend, in the states that have one.
    pub(super) fn backend(&mut self) -> Option<&mut BackendEnd<U>> {
        match self {
            Self::Handover(b, _) | Self::Open(b) => Some(b),
            Self::Dialing(b)
            | Self::Closing(b)
            | Self::Flushing(b)
            | Self::Draining(b)
            | Self::Linger(b) => b.as_mut(),
            Self::Handshake(_) | Self::Connecting(_) | Self::File(_) => None,
        }
    }

    /// The backend, given up by the state that had it.
    pub(super) fn into_backend(self) -> Option<BackendEnd<U>> {
        match self {
            Self::Handover(b, _) | Self::Open(b) => Some(b),
            Self::Dialing(b)
            | Self::Closing(b)
            | Self::Flushing(b)
            | Self::Draining(b)
            | Self::Linger(b) => b,
            Self::Handshake(_) | Self::Connecting(_) | Self::File(_) => None,
        }
    }

    /// Where a state that keeps the backend through the close holds it.
    pub(super) fn backend_slot(&mut self) -> Option<&mut Option<BackendEnd<U>>> {
        match self {
            Self::Closing(b) | Self::Flushing(b) | Self::Draining(b) | Self::Linger(b) => Some(b),
            _ => None,
        }
    }
}

/// The backend socket and its readiness.
#[derive(Debug)]
pub(super) struct BackendEnd<U> {
    pub(super) sock: U,
    pub(super) readable: bool,
    pub(super) writable: bool,
    pub(super) eof: bool,
    /// Shut down and drop once `to_backend` is flushed.
    pub(super) finish: bool,
    /// The kernel said the peer shut down (EPOLLRDHUP): on a SOCK_SEQPACKET socket this is how
    /// a zero-length read means EOF rather than an empty packet.
    pub(super) read_closed: bool,
    pub(super) wants_write: bool,
}

impl<U> BackendEnd<U> {
    /// A freshly connected backend, writable until it says otherwise; `readable` when its
    /// replies are wanted (not in direct mode, where nothing is read from it).
    pub(super) fn new(sock: U, readable: bool) -> Self {
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

/// The client socket, its TLS layer and its readiness.
#[derive(Debug)]
pub(super) struct ClientEnd<T> {
    pub(super) sock: T,
    /// `wss://`: the TLS layer between the socket and the buffers.
    pub(super) tls: Option<TlsIo>,
    pub(super) readable: bool,
    /// The last client event reported the peer's FIN (EPOLLRDHUP): read until EOF.
    pub(super) read_closed: bool,
    pub(super) writable: bool,
    pub(super) eof: bool,
    pub(super) wants_write: bool,
    /// `sendfile` cannot be used (TLS, or it failed with "not supported" once): pages go
    /// through the buffer.
    pub(super) no_sendfile: bool,
}

/// A static page being sent: the file, the bytes left, and whether the connection stays for
/// another request after it.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) file: std::fs::File,
    pub(super) left: u64,
    pub(super) keep_alive: bool,
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
/// deadline, then connects again (from the request still in `from_client`, walking the path
/// anew), pausing 1 ms, then twice as long at each try up to 64 ms. The last try is made at the
/// handshake deadline; if the queue is still full then, the answer is 503. Each try is a fresh
/// socket: a Linux stream socket whose `connect` failed with `EAGAIN` could be connected
/// again, but a fresh walk also finds a backend that was restarted meanwhile (a new socket
/// file), and no descriptor is held while waiting. Nothing is sent to the client before the
/// connect succeeds; what it sends meanwhile stays in `from_client`, which it can fill, no
/// more.
#[derive(Clone, Copy, Debug)]
pub(super) struct BackendWait {
    /// The first connect that found the queue full.
    pub(super) since: Instant,
    /// The pause before the next try.
    pub(super) pause: Duration,
    /// The handshake deadline: the last try.
    pub(super) last_try: Instant,
}
