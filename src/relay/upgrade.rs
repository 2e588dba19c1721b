//! What a complete request head gets: a static page, an upgrade to a backend, a wait for a
//! backend whose listen queue is full, or a refusal with its HTTP status.
//!
//! This module owns the order of the checks and what each failure answers: static page or
//! upgrade ([`read`]), then for an upgrade the `Origin` policy, the path's syntax, allow /
//! deny, the backend lookup with ouistiti's subprotocol fallback, and the relay mode
//! ([`decide`]). Every refusal's status comes from [`Refusal::status`], and from nowhere else.
//!
//! It does not own the socket work around the decision: connecting to the backend is the
//! caller's lookup (a closure, [`super::route::Docroot::connect`] in the gateway), and
//! registering the backend, writing the 101 or the error, and the connection context stay
//! with the connection. Nothing here allocates.

use nix::errno::Errno;

use super::codec::Mode;
use super::path::{self, PathError};
use super::route::{Backend, FileError, RouteError};
use crate::config::Site;
use crate::http::handshake::{self, HandshakeError, UpgradeRequest};
use crate::http::static_files::{self, FileRequest, FileRequestError};

/// Why a request is answered with an HTTP error instead of a page or a 101.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A malformed or unacceptable request, or a head that does not fit its buffer.
    Request(HandshakeError),
    /// A bad path.
    Path(PathError),
    /// allow / deny.
    Denied,
    /// Origin policy.
    Origin,
    /// No backend.
    Route(RouteError),
    /// No page.
    File(FileError),
    /// `seqpacket` configured, stream socket found.
    ModeMismatch,
    /// What the backend must get before the first message (the connection context or the
    /// direct hand-over record, both carrying the request head) does not fit its buffer.
    RecordTooLarge,
    /// Our own response head does not fit the client buffer.
    ResponseTooLarge,
    /// The connected backend socket could not be added to the poll set.
    Register(Errno),
    /// All slots busy, or no buffer left for the answer.
    Full,
    /// The backend's listen queue stayed full for this many milliseconds.
    BackendBusy(u32),
    /// Plain HTTP sent to a TLS port.
    PlainHttp,
    /// The path needs a login and the request proves none (see [`crate::auth::gate`]).
    Unauthorized,
    /// A user the site's `auth` policy does not admit.
    NotAdmitted,
    /// Too many failed logins from the client's network lately.
    Throttled,
    /// Credentials that cannot be read.
    BadCredentials(crate::auth::credentials::CredentialError),
    /// A request to the session endpoint ([`crate::auth::login`]) refused with this status.
    Session(u16),
}

impl From<crate::auth::gate::Denial> for Refusal {
    fn from(d: crate::auth::gate::Denial) -> Self {
        use crate::auth::gate::Denial;
        match d {
            Denial::Unauthorized => Self::Unauthorized,
            Denial::Forbidden => Self::NotAdmitted,
            Denial::Throttled => Self::Throttled,
            Denial::Malformed(e) => Self::BadCredentials(e),
        }
    }
}

impl Refusal {
    /// The HTTP status that answers it: the one place a refusal gets its status.
    ///
    /// What the client sent is answered 4xx (431 for a head or a context record too large
    /// for the buffers, whose size the client cannot know), a backend that is missing or
    /// unusable 404 / 502 / 503, and a failure of the gateway itself 500.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Request(e) => e.status(),
            Self::Session(status) => *status,
            Self::Path(e) => e.status(),
            Self::Route(e) => e.status(),
            Self::File(e) => e.status(),
            Self::Denied | Self::Origin | Self::NotAdmitted => 403,
            Self::PlainHttp | Self::BadCredentials(_) => 400,
            Self::Unauthorized => 401,
            Self::Throttled => 429,
            Self::RecordTooLarge => 431,
            Self::ModeMismatch => 502,
            Self::Full | Self::BackendBusy(_) => 503,
            Self::ResponseTooLarge | Self::Register(_) => 500,
        }
    }

    /// A short label, for the status and the metrics (one per variant; the status tells the
    /// cases of a variant apart).
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Request(_) => "bad_request",
            Self::Path(_) => "bad_path",
            Self::Denied => "denied",
            Self::Origin => "origin",
            Self::Route(_) => "backend",
            Self::File(_) => "page",
            Self::ModeMismatch => "mode_mismatch",
            Self::RecordTooLarge => "record_too_large",
            Self::ResponseTooLarge => "response_too_large",
            Self::Register(_) => "register",
            Self::Full => "full",
            Self::BackendBusy(_) => "backend_busy",
            Self::PlainHttp => "plain_http",
            Self::Unauthorized => "unauthorized",
            Self::NotAdmitted => "not_admitted",
            Self::Throttled => "throttled",
            Self::BadCredentials(_) => "bad_credentials",
            Self::Session(_) => "session",
        }
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Request(e) => write!(f, "{e}"),
            Self::Path(e) => write!(f, "{e}"),
            Self::Denied => f.write_str("denied by allow/deny"),
            Self::Origin => f.write_str("Origin not allowed"),
            Self::Route(e) => write!(f, "{e}"),
            Self::File(e) => write!(f, "{e}"),
            Self::ModeMismatch => f.write_str("seqpacket mode but a stream socket"),
            Self::RecordTooLarge => f.write_str("request head too large for the backend record"),
            Self::ResponseTooLarge => f.write_str("response head too large for the buffer"),
            Self::Register(e) => {
                write!(f, "cannot poll the backend socket: {}", crate::sys::ErrnoText(*e))
            }
            Self::Full => f.write_str("all connection slots busy"),
            Self::BackendBusy(ms) => write!(f, "backend busy: listen queue full for {ms} ms"),
            Self::PlainHttp => f.write_str("plain HTTP request on a TLS port"),
            Self::Unauthorized => f.write_str("authentication required"),
            Self::NotAdmitted => f.write_str("user not in a group the site admits"),
            Self::Throttled => f.write_str("too many failed logins from this network"),
            Self::BadCredentials(e) => write!(f, "{e}"),
            Self::Session(status) => write!(
                f,
                "session endpoint: {status} {}",
                crate::http::handshake::reason_phrase(*status)
            ),
        }
    }
}

/// A complete request head, read once.
///
/// It lives on the stack for the one call that examines it; boxing the larger variant would
/// allocate per request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// A request for a static page (the site has pages, and no `Upgrade` header was sent).
    Page(FileRequest<'a>),
    /// A WebSocket upgrade request and the length of its head.
    Upgrade(UpgradeRequest<'a>, usize),
}

/// Reads the request head at the start of `head`: `Ok(None)` while it is incomplete and
/// there is room for more (`full` says the buffer holding it has none left).
///
/// With `pages` (the site serves static pages) a head without `Upgrade` is a page request;
/// any other head, or every head without `pages`, is an upgrade request.
///
/// # Errors
/// The [`Refusal`] that answers the head.
pub fn read(head: &[u8], pages: bool, full: bool) -> Result<Option<Request<'_>>, Refusal> {
    if pages {
        match static_files::parse(head) {
            Ok(Some(req)) if !req.upgrade => return Ok(Some(Request::Page(req))),
            Err(FileRequestError::Method) => {
                return Err(Refusal::Request(HandshakeError::MethodNotAllowed))
            }
            // Incomplete, malformed, or an upgrade: the handshake parser decides.
            _ => {}
        }
    }
    match handshake::parse(head) {
        Ok(Some((req, consumed))) => Ok(Some(Request::Upgrade(req, consumed))),
        Ok(None) if full => Err(Refusal::Request(HandshakeError::HeadersTooLarge)),
        Ok(None) => Ok(None),
        Err(e) => Err(Refusal::Request(e)),
    }
}

/// What a refused request is called in the close line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name<'a> {
    /// Refused before its path was looked at.
    None,
    /// The path as sent, because it failed its checks (to be escaped for the log).
    Raw(&'a str),
    /// The decoded path without its leading '/'.
    Decoded(&'a str),
}

/// A backend socket as the decision sees it.
pub trait Socket {
    /// It is a `SOCK_SEQPACKET` socket.
    fn seqpacket(&self) -> bool;
}

impl Socket for Backend {
    fn seqpacket(&self) -> bool {
        self.seqpacket
    }
}

/// An accepted upgrade: the caller writes the 101 and relays to `backend` (or hands the client
/// over to it).
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade<'a, B> {
    /// The endpoint (the backend's name below the docroot): the decoded path without its
    /// leading '/', or the subprotocol that named it.
    pub endpoint: &'a str,
    /// The relay mode.
    pub mode: Mode,
    /// The subprotocol to echo in the 101: the client's, when it offered exactly one.
    pub protocol: Option<&'a str>,
    /// The connected backend.
    pub backend: B,
    /// Direct mode: the client's socket goes to the backend after the 101.
    pub direct: bool,
}

/// What a request gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a, B> {
    /// Serve the page `name` (decoded, no leading '/', "" for the root) of the site's
    /// document; the document's own allow / deny and the file lookup are the server's.
    Page {
        /// The page.
        name: &'a str,
        /// HEAD: headers only.
        head_only: bool,
        /// Keep the connection for another request.
        keep_alive: bool,
        /// Length of the request head.
        head_len: usize,
    },
    /// Switch protocols.
    Upgrade(Upgrade<'a, B>),
    /// The backend's listen queue is full: try again later (`name` as in [`Name::Decoded`]).
    Wait {
        /// The decoded path without its leading '/'.
        name: &'a str,
    },
    /// Answer with `why.status()`.
    Refuse {
        /// Why.
        why: Refusal,
        /// What to call the request.
        name: Name<'a>,
    },
}

/// Decides what `request` gets on `site` (`tls`: it came over TLS, for the `Origin` policy).
/// `scratch` holds the decoded path; `authorize` is asked about the decoded path (with its
/// leading '/', as allow/deny see it) once the request has passed the Origin policy and
/// allow/deny, before any backend is contacted (and about the subprotocol's path, as a path of
/// its own, before the fallback below connects to it); `connect` looks a backend up by name (without
/// the leading '/') and connects to it. It is called once, or twice when the path names no
/// backend and the client offered one subprotocol (ouistiti's fallback: that subprotocol
/// names the socket).
pub fn decide<'a, B: Socket>(
    request: &Request<'a>,
    site: &Site,
    tls: bool,
    scratch: &'a mut [u8; path::MAX_PATH],
    mut authorize: impl FnMut(&str) -> Result<(), Refusal>,
    mut connect: impl FnMut(&str) -> Result<B, RouteError>,
) -> Decision<'a, B> {
    let refuse = |why, name| Decision::Refuse { why, name };
    let req = match request {
        Request::Page(page) => {
            return match path::decode_page(page.path, scratch) {
                Ok(d) => Decision::Page {
                    name: d.trim_start_matches('/'),
                    head_only: page.head_only,
                    keep_alive: page.keep_alive,
                    head_len: page.head_len,
                },
                Err(e) => refuse(Refusal::Path(e), Name::Raw(page.path)),
            };
        }
        Request::Upgrade(req, _) => req,
    };
    if !site.origin.permits(req.origin, req.host, tls) {
        return refuse(Refusal::Origin, Name::None);
    }
    let decoded = match path::decode(req.path, scratch) {
        Ok(d) => d,
        Err(e) => return refuse(Refusal::Path(e), Name::Raw(req.path)),
    };
    let name = decoded.trim_start_matches('/');
    if !site.access.permits(decoded) {
        return refuse(Refusal::Denied, Name::Decoded(name));
    }
    if let Err(why) = authorize(decoded) {
        return refuse(why, Name::Decoded(name));
    }
    let protocol: Option<&'a str> = match req.protocols.as_slice() {
        [only] => Some(only),
        _ => None,
    };
    let (endpoint, backend) = match (connect(name), protocol) {
        (Ok(b), _) => (name, b),
        (Err(RouteError::Busy), _) => return Decision::Wait { name },
        (Err(RouteError::NotFound), Some(token)) => {
            // The one offered subprotocol names the socket. It must be a single safe segment,
            // and pass allow / deny as a path of its own.
            let mut fallback = heapless::String::<{ path::MAX_PATH }>::new();
            let safe = !matches!(token, "." | "..") && !token.contains('/');
            if !safe || fallback.push('/').is_err() || fallback.push_str(token).is_err() {
                return refuse(Refusal::Route(RouteError::NotFound), Name::Decoded(name));
            }
            if !site.access.permits(&fallback) {
                return refuse(Refusal::Denied, Name::Decoded(name));
            }
            // The backend it names is another endpoint, with its own login rule.
            if let Err(why) = authorize(&fallback) {
                return refuse(why, Name::Decoded(name));
            }
            match connect(token) {
                Ok(b) => (token, b),
                Err(RouteError::Busy) => return Decision::Wait { name },
                Err(e) => return refuse(Refusal::Route(e), Name::Decoded(name)),
            }
        }
        (Err(e), _) => return refuse(Refusal::Route(e), Name::Decoded(name)),
    };
    let mode = if backend.seqpacket() { Mode::SeqPacket } else { site.mode_for(endpoint) };
    if mode == Mode::SeqPacket && !backend.seqpacket() {
        return refuse(Refusal::ModeMismatch, Name::Decoded(name));
    }
    Decision::Upgrade(Upgrade { endpoint, mode, protocol, backend, direct: site.direct })
}

#[cfg(test)]
mod tests;
