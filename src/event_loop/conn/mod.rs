//! One connection: the client's [`Transport`], the [`Upstream`] it relays to, four optional
//! buffers, the WebSocket session and the relay codec, moved through its lifecycle by
//! [`Connection::drive`] and [`Connection::on_timers`].
//!
//! Lifecycle (see `docs/lifecycle.md`):
//!
//! ```text
//! Handshake ─101─→ Open ─client close / protocol error / timeout─→ Flushing ─→ Linger ─→ done
//!  │   ↑  ↑          └─backend EOF or close record─→ Closing ─client close─→ Flushing
//!  │   │  └─page sent, kept alive── File ←─page─┤  client vanished (Open) ─→ Draining ─→ done
//!  │   └─retry timer── Connecting ←─backend's listen queue full─┤
//!  ├─backend connect under way (TCP)─→ Dialing ─connected: 101─→ Open / failed: 502, 504
//!  ├─refusal (4xx/5xx)─→ Flushing
//!  └─direct mode: 101─→ Handover ─fd sent to the backend (SCM_RIGHTS)─→ done
//! ```
//!
//! The state is a [`State`] whose variants own what only they use: the request's wait for a
//! busy backend, the page being sent, the backend socket (from the 101 to the end of the
//! close). It changes in one place, [`Connection::enter`], and only forward: the two loops
//! are an HTTP connection kept alive for its next request, and a request waiting for a busy
//! backend, both before any upgrade. See [`Phase::may_become`].
//!
//! * `Flushing`: the last bytes for the client (a close frame or an HTTP refusal) go out; then
//!   the write side is shut down (the server closes the TCP connection first, RFC 6455 §7.1.1).
//! * `Linger`: read and discard until the client closes too, so that unread input cannot turn
//!   our close into a reset that destroys the close frame in flight.
//! * `Draining`: the client is gone; what it sent before still reaches the backend.
//! * `Connecting`: the request is complete but the backend's listen queue was full. See
//!   [`BackendWait`].
//!
//! The work is split by side: `client` (reading and writing the client, plain or TLS, and
//! decoding its frames), `backend` (writing the backend, the direct hand-over, reading it and
//! framing its bytes for the client), `request` (what a request gets: the upgrade, a page, a
//! wait for a busy backend), `state` (the states, what each owns, the transitions there are).
//! This file holds the connection itself: its one transition function, the close paths, the
//! timers.
//!
//! I/O is driven by readiness flags (mio is edge-triggered): a flag is set by an event and
//! cleared by `WouldBlock`, so a side that was not read because a buffer was full is read
//! again as soon as the buffer drains, without a new event. A plain stream read that returns
//! less than it asked for also clears the flag: the socket's queue was empty at that moment,
//! and whatever arrives later raises a new edge. This saves the read that would only answer
//! `EAGAIN`, a third of the gateway's syscalls under ping-pong load. It is not done when the
//! event reported the peer's FIN (the next read must see the EOF), nor over TLS (rustls reads
//! in its own sizes) or on `SOCK_SEQPACKET` (one read is one packet). Interest in `WRITABLE` is
//! registered only while bytes wait for a socket that said `WouldBlock`. Frames from the backend
//! may go to a plain client straight from `process_backend` (one `writev` from the buffer they
//! were read into, see [`codec::Gather`]) under the same flag: only while the client is writable
//! and nothing is queued for it; its `WouldBlock` clears the flag, and what the socket did not
//! take waits in the client buffer for `write_client`.

mod backend;
mod client;
mod reason;
mod request;
mod session;
mod state;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry};

use core::fmt::Write as _;

use super::timers::{self, Timeouts, Timers};
use super::tls_io::TlsIo;
use super::token::{self, Side};
use super::transport::{Dial, Transport, Upstream};
use crate::buffer::{Buf, BufPool};
use crate::config::Site;
use crate::http::handshake;
use crate::relay::codec::{self, Downlink, Mode, Uplink};
use crate::relay::route::{Docroot, RouteError};
use crate::slab::Key;
use crate::ws::frame::OpCode;
use crate::ws::session::Session;

pub use self::reason::Reason;
use self::state::{BackendEnd, BackendWait, ClientEnd, Page, State};
pub use self::state::{Phase, Stats};
pub use crate::relay::upgrade::Refusal;

/// Rounds of I/O per drive before yielding to other connections.
const MAX_ROUNDS: u32 = 16;

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
pub struct Ctx<'a, U> {
    /// Buffers.
    pub pool: &'a mut BufPool,
    /// The site's limits and policy.
    pub site: &'a Site,
    /// Where backends are found.
    pub backends: &'a dyn Dial<U>,
    /// Where static pages live, when the site has them.
    pub htdocs: Option<&'a Docroot>,
    /// The site's authentication, when it has a policy.
    pub gate: Option<&'a core::cell::RefCell<crate::auth::gate::Gate>>,
    /// For registering the backend and changing interest.
    pub registry: &'a Registry,
    /// The loop's clock for this batch.
    pub now: Instant,
    /// permessage-deflate's contexts, when a site offers compression.
    #[cfg(feature = "deflate")]
    pub deflate: Option<&'a mut crate::relay::compress::Contexts>,
    /// The gateway's counters (and what the metrics page shows).
    pub counters: &'a super::counters::Counters,
}

impl<U> core::fmt::Debug for Ctx<'_, U> {
    /// All but the backends, a [`Dial`] (which has no `Debug`).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ctx")
            .field("pool", &self.pool)
            .field("site", &self.site)
            .field("htdocs", &self.htdocs)
            .field("gate", &self.gate)
            .field("registry", &self.registry)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A WebSocket connection and its backend.
#[derive(Debug)]
pub struct Connection<T, U> {
    key: Key,
    client: ClientEnd<T>,
    /// Client address.
    pub peer: SocketAddr,
    state: State<U>,
    session: Session,
    uplink: Uplink,
    downlink: Downlink,
    /// Client → backend compression state (permessage-deflate).
    #[cfg(feature = "deflate")]
    inbound: crate::relay::compress::Inbound,
    /// Backend → client compression state.
    #[cfg(feature = "deflate")]
    outbound: crate::relay::compress::Outbound,
    from_client: Option<Buf>,
    to_backend: Option<Buf>,
    from_backend: Option<Buf>,
    to_client: Option<Buf>,
    close_sent: bool,
    reason: Option<Reason>,
    timers: Timers,
    /// The endpoint name, for logs (truncated; its length in a byte, as the slot is kept small).
    pub name: heapless::String<64, u8>,
    /// The relay mode chosen at the handshake.
    pub mode: Mode,
    /// Counters.
    pub stats: Stats,
    /// Opened at.
    pub opened: Instant,
    /// Holds an overflow slot (answered 503).
    pub overflow: bool,
    /// Who the request proved to be: kept while its backend's connect is under way (the
    /// request is decided again then, and is not checked twice), then for the status.
    identity: Option<crate::auth::gate::Identity>,
    /// Its row in the endpoint counters, once upgraded.
    pub endpoint_row: Option<u8>,
    /// Already queued for another drive.
    pub queued: bool,
    /// Index of the site (listener) that accepted it.
    pub site: usize,
}

impl<T: Transport, U: Upstream> Connection<T, U> {
    /// A freshly accepted client, registered for reading.
    ///
    /// # Errors
    /// The registration error.
    pub fn accept(
        key: Key,
        mut sock: T,
        peer: SocketAddr,
        cx: &mut Ctx<'_, U>,
        site: usize,
        overflow: bool,
        tls: Option<Box<rustls::ServerConnection>>,
    ) -> std::io::Result<Self> {
        sock.register(cx.registry, token::encode(key, Side::Client), Interest::READABLE)?;
        // The site's timeouts as they are now: every timer is armed and fired from this copy,
        // never from the site (see `timers`).
        let timeouts = Timeouts::of(cx.site);
        // Pages over https:// go through rustls, not sendfile.
        let no_sendfile = tls.is_some();
        let mut c = Self {
            key,
            client: ClientEnd {
                sock,
                tls: tls.map(TlsIo::new),
                readable: true,
                read_closed: false,
                writable: true,
                eof: false,
                wants_write: false,
                no_sendfile,
            },
            peer,
            state: State::Handshake(None),
            session: Session::new(cx.site.max_message),
            uplink: Uplink::new(Mode::Stream),
            downlink: Downlink::new(Mode::Stream, cx.site.data_type),
            #[cfg(feature = "deflate")]
            inbound: crate::relay::compress::Inbound::default(),
            #[cfg(feature = "deflate")]
            outbound: crate::relay::compress::Outbound::default(),
            from_client: None,
            to_backend: None,
            from_backend: None,
            to_client: None,
            close_sent: false,
            reason: None,
            timers: Timers::new(timeouts, cx.now),
            name: heapless::String::new(),
            mode: Mode::Stream,
            stats: Stats::default(),
            opened: cx.now,
            overflow,
            identity: None,
            endpoint_row: None,
            queued: false,
            site,
        };
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
        self.state.phase()
    }

    /// Over TLS.
    #[must_use]
    pub fn tls(&self) -> bool {
        self.client.tls.is_some()
    }

    /// Over TLS, a handshake that resumed a session (`Some(true)`) or made a new one;
    /// `None` without TLS or before its handshake is done.
    #[must_use]
    pub fn tls_resumed(&self) -> Option<bool> {
        self.client.tls.as_ref().and_then(TlsIo::resumed)
    }

    /// The user it authenticated as, once upgraded.
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.user.as_str())
    }

    /// The timeouts it was admitted with.
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        self.timers.timeouts
    }

    /// Records an event's readiness.
    pub fn on_event(&mut self, side: Side, readable: bool, writable: bool, read_closed: bool) {
        match side {
            Side::Client => {
                self.client.readable |= readable;
                self.client.read_closed |= read_closed;
                self.client.writable |= writable;
            }
            Side::Backend => {
                if let Some(b) = self.state.backend() {
                    b.readable |= readable;
                    b.writable |= writable;
                    b.read_closed |= read_closed;
                }
            }
        }
    }

    /// Deregisters both sockets (the loop calls it before dropping the connection).
    pub fn deregister(&mut self, registry: &Registry) {
        self.client.sock.deregister(registry);
        if let Some(b) = self.state.backend() {
            b.sock.deregister(registry);
        }
    }

    /// Gives the compression contexts it holds, and its promise of one, back.
    #[cfg(feature = "deflate")]
    pub fn release_deflate(&mut self, contexts: &mut crate::relay::compress::Contexts) {
        self.inbound.release(contexts);
        self.outbound.release(contexts);
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
        self.timers.next(self.phase() == Phase::Open)
    }

    fn set_reason(&mut self, r: Reason) {
        if self.reason.is_none() {
            self.reason = Some(r);
        }
    }

    /// Starts closing for a gateway shutdown: close 1001 to open connections, drop handshakes.
    pub fn shutdown(&mut self, cx: &mut Ctx<'_, U>) {
        match self.phase() {
            Phase::Handshake | Phase::Connecting | Phase::Dialing => self.give_up(Reason::Shutdown),
            Phase::Open => {
                self.start_close(cx, Reason::Shutdown);
            }
            _ => {}
        }
    }

    /// Ends it at an operator's request (`wsgate drop`): an open connection gets a close frame
    /// with `code` and the closing handshake; one that is not relaying yet is closed at once.
    /// `false` when it is closing already (and is left to finish).
    pub fn drop_with(&mut self, cx: &mut Ctx<'_, U>, code: u16) -> bool {
        match self.phase() {
            Phase::Open => self.start_close(cx, Reason::Dropped(code)),
            Phase::Closing | Phase::Flushing | Phase::Linger | Phase::Draining => return false,
            _ => self.give_up(Reason::Dropped(code)),
        }
        true
    }

    /// Fires the timers that are due. Returns `true` when the connection should be driven.
    ///
    /// Every due deadline is taken first, then acted on only where the phase gives it a
    /// meaning; none is left in the past (see `timers`).
    pub fn on_timers(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let now = cx.now;
        if let State::Connecting(wait) = self.state {
            return self.connect_again(now, wait);
        }
        let open = self.phase() == Phase::Open;
        let t = self.timers.timeouts;
        let deadline = timers::take_due(&mut self.timers.deadline, now);
        let pong_due = timers::take_due(&mut self.timers.pong_deadline, now);
        let ping_due = timers::take_due(&mut self.timers.ping_at, now);
        let idle_due = self.timers.idle_deadline(open).is_some_and(|d| d <= now);
        if deadline {
            if let State::Dialing(b) = &mut self.state {
                // The connect did not finish by the handshake deadline: 504 before any 101.
                if let Some(mut b) = b.take() {
                    b.sock.deregister(cx.registry);
                }
                self.refuse(cx, Refusal::Route(RouteError::TimedOut));
                return true;
            }
            let r = match self.phase() {
                Phase::Handshake => Reason::HandshakeTimeout,
                Phase::Handover => Reason::HandoverTimeout,
                _ => Reason::CloseTimeout,
            };
            self.give_up(r);
            return true;
        }
        if !open {
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
                if now.duration_since(self.timers.last_rx) >= interval {
                    let queued = cx.pool.ensure(&mut self.to_client)
                        && self
                            .to_client
                            .as_mut()
                            .is_some_and(|out| codec::emit(out, true, OpCode::Ping, b"wsgate"));
                    // The pong is due from the first attempt, queued or not: a client that
                    // reads nothing keeps its output full, so its ping never fits, and it
                    // must not hold its slot (and stall its backend) for ever.
                    if self.timers.pong_deadline.is_none() {
                        self.timers.pong_deadline = Some(now + t.pong);
                    }
                    if !queued {
                        // No room now: try again shortly, and before the pong is due, so that
                        // a client heard from meanwhile is not failed for a ping it never got.
                        self.timers.ping_at = Some(now + (interval / 4).min(t.pong / 2));
                    }
                } else {
                    // Heard from since a ping that never fitted: nothing is outstanding.
                    self.timers.pong_deadline = None;
                    self.timers.ping_at = Some(self.timers.last_rx + interval);
                }
            }
            return true;
        }
        false
    }

    /// Moves bytes until nothing more can move, then updates interest.
    pub fn drive(&mut self, cx: &mut Ctx<'_, U>) -> Verdict {
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
        match &self.state {
            State::Linger(_) => self.client.eof,
            State::Draining(b) => b.is_none(),
            State::Handover(_, fd_sent) => {
                *fd_sent && self.to_backend.as_ref().is_none_or(Buf::is_empty)
            }
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
            || matches!(self.state, State::File(_))
            || self.client.tls.as_ref().is_some_and(TlsIo::wants_write);
        let c = &mut self.client;
        let want = pending && !c.writable;
        if want != c.wants_write {
            let interest =
                if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if c.sock.reregister(registry, token::encode(self.key, Side::Client), interest).is_ok()
            {
                c.wants_write = want;
            }
        }
        let pending = self.to_backend.as_ref().is_some_and(|b| !b.is_empty());
        if let Some(b) = self.state.backend() {
            let want = pending && !b.writable;
            if want != b.wants_write {
                let interest =
                    if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                if b.sock
                    .reregister(registry, token::encode(self.key, Side::Backend), interest)
                    .is_ok()
                {
                    b.wants_write = want;
                }
            }
        }
    }

    /// Phase changes that depend on buffers having drained.
    fn advance(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        // Over TLS, bytes are out only once rustls has sent them, and plaintext written before
        // the handshake completed (a 503 at accept) waits inside rustls for it.
        let to_client_empty = self.to_client.as_ref().is_none_or(Buf::is_empty)
            && !self.client.tls.as_ref().is_some_and(|t| t.wants_write() || t.is_handshaking());
        let eof = self.client.eof;
        match self.phase() {
            // The client left (or TLS failed) before it was answered.
            Phase::Handshake
            | Phase::Connecting
            | Phase::Dialing
            | Phase::Flushing
            | Phase::Closing
                if eof =>
            {
                self.enter(State::Linger(None));
                true
            }
            Phase::Open if eof => {
                self.set_reason(Reason::ClientGone);
                self.enter_close(cx, State::Draining(None));
                true
            }
            Phase::Flushing if to_client_empty => {
                // TLS first says its own goodbye (close_notify), which must go out too.
                if self.client.tls.as_mut().is_some_and(TlsIo::close_notify) {
                    return true;
                }
                self.client.sock.shutdown_write();
                self.enter(State::Linger(None));
                true
            }
            _ => false,
        }
    }

    /// The one place the state changes. The backend goes along from a state that had it to
    /// one that keeps it through the close; a new state's own data comes with it.
    fn enter(&mut self, mut next: State<U>) {
        debug_assert!(
            self.phase().may_become(next.phase()),
            "{:?} -> {:?}",
            self.phase(),
            next.phase()
        );
        let old = std::mem::replace(&mut self.state, State::Linger(None));
        if let (Some(b), Some(slot)) = (old.into_backend(), next.backend_slot()) {
            if slot.is_none() {
                *slot = Some(b);
            }
        }
        self.state = next;
    }

    /// Ends without a closing handshake (none was started, or its time is up): stop reading
    /// the client and linger until what is queued for it has gone.
    fn give_up(&mut self, why: Reason) {
        self.set_reason(why);
        self.client.eof = true;
        if self.phase() != Phase::Linger {
            self.enter(State::Linger(None));
        }
    }

    /// The close transition: into `next` (`Flushing`, `Closing` or `Draining`) with the close
    /// deadline, the backend told to finish (shut down once what it is owed is flushed).
    fn enter_close(&mut self, cx: &mut Ctx<'_, U>, next: State<U>) {
        self.enter(next);
        self.timers.deadline = Some(cx.now + self.timers.timeouts.close);
        if let Some(b) = self.state.backend() {
            b.finish = true;
        }
        self.finish_backend_if_flushed(cx);
    }

    /// Queues an HTTP refusal (its status is [`Refusal::status`]) and heads for `Flushing`.
    fn refuse(&mut self, cx: &mut Ctx<'_, U>, why: Refusal) {
        self.set_reason(Reason::Refused(why));
        if cx.pool.ensure(&mut self.to_client) {
            if let Some(out) = self.to_client.as_mut() {
                // A 401 says how to authenticate; a 429 when to try again.
                let mut extra = heapless::String::<128>::new();
                match why {
                    Refusal::Unauthorized => {
                        let realm = cx.site.auth.as_ref().map_or("wsgate", |a| a.realm.as_str());
                        let _ = write!(
                            extra,
                            "WWW-Authenticate: Basic realm=\"{realm}\", charset=\"UTF-8\""
                        );
                    }
                    Refusal::Throttled => {
                        let secs = crate::auth::throttle::REFILL.as_secs();
                        let _ = write!(extra, "Retry-After: {secs}");
                    }
                    _ => {}
                }
                if let Some(n) =
                    handshake::write_error_with(out.spare(), why.status(), extra.as_bytes())
                {
                    out.commit(n);
                }
            }
        }
        self.enter_close(cx, State::Flushing(None));
    }

    /// The 101 was queued but what the backend must get first does not fit in its buffer:
    /// take the 101 back and refuse with 431.
    fn refuse_after_101(&mut self, cx: &mut Ctx<'_, U>) {
        if let Some(o) = self.to_client.as_mut() {
            o.consume(o.len());
        }
        self.refuse(cx, Refusal::RecordTooLarge);
    }

    /// Queues a close frame to the client (once).
    fn send_close(&mut self, cx: &mut Ctx<'_, U>, code: Option<u16>) {
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
    fn fail(&mut self, cx: &mut Ctx<'_, U>, why: Reason) {
        self.set_reason(why);
        self.send_close(cx, why.close_code());
        self.enter_close(cx, State::Flushing(None));
    }

    /// Starts the closing handshake from our side, with `why`'s code, and waits for the
    /// client's close.
    fn start_close(&mut self, cx: &mut Ctx<'_, U>, why: Reason) {
        self.set_reason(why);
        self.send_close(cx, why.close_code());
        self.enter_close(cx, State::Closing(None));
    }

    /// The backend told to finish is shut down for writing (it reads EOF: the client is done
    /// sending, §7.1.1's counterpart) and dropped once what it is owed is written.
    fn finish_backend_if_flushed(&mut self, cx: &mut Ctx<'_, U>) {
        let flushed = self.to_backend.as_ref().is_none_or(Buf::is_empty);
        let Some(slot) = self.state.backend_slot() else { return };
        if slot.as_ref().is_some_and(|b| b.finish && (flushed || b.eof)) {
            if let Some(mut b) = slot.take() {
                b.sock.shutdown_write();
                b.sock.deregister(cx.registry);
            }
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
