//! What a request gets, applied: the decision is [`crate::relay::upgrade::decide`]'s (pure:
//! request, site, docroot → route or refusal); here it becomes a 101 and an open relay, a
//! direct-mode hand-over, a page streamed from the site's document, a wait for a busy backend,
//! or a refusal.

use std::io::Read;
use std::time::{Duration, Instant};

use mio::Interest;
use nix::errno::Errno;

use super::super::token::{self, Side};
use super::super::transport::{errno_of, Caller, Transport, Upstream};
use super::{truncate, BackendEnd, BackendWait, Connection, Ctx, Page, Phase, Refusal, State};
use crate::buffer::Buf;
use crate::http::{handshake, static_files};
use crate::relay::codec::{Downlink, Mode, Uplink};
use crate::relay::path;
use crate::relay::route::RouteError;
use crate::relay::upgrade::{self, Decision, Name, Request};

/// The pause before the first new connect to a backend whose listen queue was full; it doubles
/// at each try, up to [`CONNECT_PAUSE_MAX`].
const CONNECT_PAUSE_MIN: Duration = Duration::from_millis(1);
/// The longest pause between two connects to a full backend.
const CONNECT_PAUSE_MAX: Duration = Duration::from_millis(64);

impl<T: Transport, U: Upstream> Connection<T, U> {
    pub(super) fn process_handshake(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        // Taken out while the request (which borrows it) is examined, put back after.
        let Some(mut input) = self.from_client.take() else { return false };
        let progress = self.handshake_with(cx, &mut input, None);
        self.from_client = Some(input);
        progress
    }

    /// `Dialing`: once the backend's socket says writable, its connect is over. Connected: the
    /// request, still in `from_client`, is decided again, its first dial answered with this
    /// backend, and gets its 101. Failed: 502 (refused, unreachable).
    pub(super) fn dialed(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let State::Dialing(slot) = &mut self.state else { return false };
        if !slot.as_ref().is_some_and(|b| b.writable) || self.from_client.is_none() {
            return false;
        }
        let (Some(mut b), Some(mut input)) = (slot.take(), self.from_client.take()) else {
            return false;
        };
        if let Err(e) = b.sock.connect_result() {
            b.sock.deregister(cx.registry);
            self.from_client = Some(input);
            self.refuse(cx, Refusal::Route(e));
            return true;
        }
        let progress = self.handshake_with(cx, &mut input, Some(b.sock));
        self.from_client = Some(input);
        progress
    }

    /// Examines the request in `input`. `dialed`: its backend, connected in `Dialing` (and
    /// registered already).
    fn handshake_with(&mut self, cx: &mut Ctx<'_, U>, input: &mut Buf, dialed: Option<U>) -> bool {
        if input.is_empty() {
            return false;
        }
        // A new request: the last one's name (a page served on this connection) is not its.
        self.name.clear();
        if let Some(progress) = self.session_request(cx, input) {
            return progress;
        }
        let pages = cx.htdocs.is_some() || cx.site.metrics.is_some();
        let request = match upgrade::read(input.readable(), pages, input.free() == 0) {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(why) => {
                self.refuse(cx, why);
                return true;
            }
        };
        let mut scratch = [0u8; path::MAX_PATH];
        // A verified client certificate's subject, told to the backend.
        let cert = self.client.tls.as_ref().and_then(|t| t.peer_certificate());
        let subject = cert.and_then(crate::auth::x509::names).map(|(_, subject)| subject);
        let backends = cx.backends;
        let tls = self.client.tls.is_some();
        let registered = dialed.is_some();
        let mut dialed = dialed;
        let site = cx.site;
        // What a backend started for this request is told of it.
        let caller = match &request {
            Request::Upgrade(req, consumed) => Some(Caller {
                conn: self.key,
                info: crate::relay::context::Info {
                    peer: self.peer,
                    server_port: site.listen.port(),
                    path: req.path,
                    query: req.query,
                    endpoint: "",
                    host: req.host,
                    origin: req.origin,
                    protocol: None,
                    tls,
                    user: None,
                    cert_subject: subject.as_deref(),
                },
                head: input.readable().get(..*consumed).unwrap_or_default(),
                seqpacket: false,
                grace: site.close_timeout,
                now: cx.now,
            }),
            Request::Page(_) => None,
        };
        // Proved before the backend's connect finished: the same request, not checked again.
        let identity = core::cell::RefCell::new(self.identity.take().filter(|_| registered));
        let (gate, peer, now) = (cx.gate, self.peer.ip(), cx.now);
        let authorize = |path: &str| -> Result<(), Refusal> {
            let Some(gate) = gate else { return Ok(()) };
            if identity.borrow().is_some() {
                return Ok(());
            }
            let head = caller.as_ref().map_or(&[][..], |c| c.head);
            let id = gate.borrow_mut().check(path, head, peer, cert, now).map_err(Refusal::from)?;
            *identity.borrow_mut() = id;
            Ok(())
        };
        let connect = |name: &str| {
            let Some(caller) = &caller else { return Err(RouteError::NotFound) };
            let seqpacket = site.mode_for(name) == Mode::SeqPacket;
            let id = identity.borrow();
            let user = id.as_ref().map(|i| (i.user.as_str(), i.group.as_str()));
            let info = crate::relay::context::Info { user, ..caller.info };
            dialed
                .take()
                .map_or_else(|| backends.dial(name, &Caller { seqpacket, info, ..*caller }), Ok)
        };
        let decision = upgrade::decide(&request, site, tls, &mut scratch, authorize, connect);
        let identity = identity.into_inner();
        let up = match decision {
            Decision::Upgrade(up) => up,
            Decision::Page { name, head_only, keep_alive, head_len } => {
                drop(request);
                let _ = self.name.push_str(truncate(name, 64));
                let head = input.readable().get(..head_len).unwrap_or_default();
                let metrics =
                    cx.site.metrics.as_deref().and_then(|m| m.strip_prefix('/')) == Some(name);
                let served = if metrics {
                    self.serve_metrics(cx, head, head_only, keep_alive)
                } else {
                    self.serve_file(cx, name, head, head_only, keep_alive)
                };
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
        let upgrade::Upgrade { endpoint, mode, protocol, mut backend, direct } = up;
        let _ = self.name.push_str(truncate(endpoint, 64));
        let token = token::encode(self.key, Side::Backend);
        if backend.connecting() {
            // Connected when its socket says writable; until then no 101, and the request
            // stays where it is.
            if let Err(e) =
                backend.register(cx.registry, token, Interest::READABLE | Interest::WRITABLE)
            {
                self.refuse(cx, Refusal::Register(errno_of(&e)));
                return true;
            }
            let mut b = BackendEnd::new(backend, true);
            b.writable = false;
            self.identity = identity;
            self.enter(State::Dialing(Some(b)));
            return true;
        }
        if !cx.pool.ensure(&mut self.to_client) {
            self.refuse(cx, Refusal::Full);
            return true;
        }
        // permessage-deflate, where the endpoint offers it: the answer goes in the 101.
        #[cfg(feature = "deflate")]
        let agreement = match self.negotiate_deflate(cx, req, endpoint, direct) {
            Ok(a) => a,
            Err(why) => {
                self.refuse(cx, why);
                return true;
            }
        };
        #[cfg(feature = "deflate")]
        let answer = agreement.map(|a| a.response());
        #[cfg(feature = "deflate")]
        let extensions = answer.as_deref();
        #[cfg(not(feature = "deflate"))]
        let extensions = None;
        let Some(out) = self.to_client.as_mut() else { return false };
        let Some(n) =
            handshake::write_switching_with(out.spare(), &req.accept, protocol, extensions)
        else {
            self.refuse(cx, Refusal::ResponseTooLarge);
            return true;
        };
        out.commit(n);
        let registration = if registered {
            backend.reregister(cx.registry, token, Interest::READABLE)
        } else {
            backend.register(cx.registry, token, Interest::READABLE)
        };
        if let Err(e) = registration {
            self.refuse(cx, Refusal::Register(errno_of(&e)));
            return true;
        }
        let info = crate::relay::context::Info {
            peer: self.peer,
            server_port: cx.site.listen.port(),
            path: req.path,
            query: req.query,
            endpoint,
            host: req.host,
            origin: req.origin,
            protocol,
            tls,
            user: identity.as_ref().map(|i| (i.user.as_str(), i.group.as_str())),
            cert_subject: subject.as_deref(),
        };
        let head = input.readable().get(..consumed).unwrap_or_default();
        if direct {
            // The hand-over record: the request's metadata and the client bytes already read
            // past its head, which are the backend's from now on.
            let early = input.readable().get(consumed..).unwrap_or_default();
            let headers = cx.site.context.as_deref().unwrap_or_default();
            let written = cx.pool.ensure(&mut self.to_backend)
                && self.to_backend.as_mut().is_some_and(|tb| {
                    crate::relay::context::write_direct(tb, &info, head, headers, early)
                });
            drop(request);
            if !written {
                backend.deregister(cx.registry);
                self.refuse_after_101(cx);
                return true;
            }
            input.consume(input.len());
            self.mode = mode;
            self.count_upgrade(cx, identity);
            self.enter(State::Handover(BackendEnd::new(backend, false), false));
            self.timers.deadline = Some(cx.now + self.timers.timeouts.close);
            return true;
        }
        let context_on = cx.site.context_endpoints.is_empty() || {
            let mut p = heapless::String::<{ path::MAX_PATH + 1 }>::new();
            let _ = p.push('/');
            let _ = p.push_str(endpoint);
            crate::relay::acl::matches(&cx.site.context_endpoints, &p)
        };
        if let Some(headers) = cx.site.context.as_ref().filter(|_| context_on) {
            let written = cx.pool.ensure(&mut self.to_backend)
                && self
                    .to_backend
                    .as_mut()
                    .is_some_and(|tb| crate::relay::context::write(tb, mode, &info, head, headers));
            if !written {
                backend.deregister(cx.registry);
                self.refuse_after_101(cx);
                return true;
            }
        }
        drop(request);
        input.consume(consumed);
        self.mode = mode;
        self.uplink = Uplink::new(mode);
        self.downlink = Downlink::new(mode, cx.site.data_type);
        let limit = self
            .uplink
            .max_message(cx.pool.buf_size())
            .map_or(cx.site.max_message, |m| m.min(cx.site.max_message));
        self.session.set_max_message(limit);
        #[cfg(feature = "deflate")]
        if let Some(a) = agreement {
            self.session.set_deflate(true);
            let window = cx.deflate.as_ref().map_or(0, |z| z.window_bits());
            self.outbound = crate::relay::compress::Outbound::new(&a, window);
        }
        self.enter(State::Open(BackendEnd::new(backend, true)));
        self.timers.open(cx.now);
        self.count_upgrade(cx, identity);
        #[cfg(feature = "deflate")]
        let deflate = if agreement.is_some() { " permessage-deflate" } else { "" };
        #[cfg(not(feature = "deflate"))]
        let deflate = "";
        crate::conn_log!(
            crate::logging::INFO,
            "conn={} peer={} open /{} mode={}{deflate}",
            self.key,
            self.peer,
            self.name,
            self.mode
        );
        true
    }

    /// The permessage-deflate answer to `req` on `endpoint`: `None` where compression is not
    /// offered, the client asks for none that can be honoured, or every decompressor is
    /// promised already (the connection then goes uncompressed, and the log says so).
    ///
    /// # Errors
    /// A header that is not an extension list, on an endpoint that reads it (400).
    #[cfg(feature = "deflate")]
    fn negotiate_deflate(
        &mut self,
        cx: &mut Ctx<'_, U>,
        req: &handshake::UpgradeRequest<'_>,
        endpoint: &str,
        direct: bool,
    ) -> Result<Option<crate::ws::deflate::Agreement>, Refusal> {
        use crate::ws::deflate;
        let Some(z) = cx.deflate.as_deref_mut() else { return Ok(None) };
        if direct || !cx.site.compression.on(endpoint) {
            return Ok(None);
        }
        let policy = deflate::Policy { window_bits: z.window_bits() };
        let offers = req.extensions.iter().copied();
        let agreement = deflate::negotiate(offers, policy)
            .map_err(|_| Refusal::Request(handshake::HandshakeError::BadExtensions))?;
        let Some(a) = agreement else { return Ok(None) };
        if !z.reserve() {
            crate::conn_log!(
                crate::logging::WARN,
                "conn={} peer={} compression memory full: /{} goes uncompressed",
                self.key,
                self.peer,
                endpoint
            );
            return Ok(None);
        }
        self.inbound.reserved = true;
        Ok(Some(a))
    }

    /// Answers a static page request for `name` (decoded, no leading '/', "" for the root).
    fn serve_file(
        &mut self,
        cx: &mut Ctx<'_, U>,
        name: &str,
        head: &[u8],
        head_only: bool,
        keep_alive: bool,
    ) -> bool {
        let (Some(htdocs), Some(doc)) = (cx.htdocs, cx.site.document.as_ref()) else {
            // Pages are read for the metrics page alone: any other path is not there.
            self.refuse(cx, Refusal::File(crate::relay::route::FileError::NotFound));
            return true;
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
        let mut other = heapless::String::<{ path::MAX_PATH + 1 }>::new();
        if file.default_page && !name.is_empty() {
            other.clone_from(&haystack);
            if other.ends_with('/') {
                other.pop();
            } else {
                let _ = other.push('/');
            }
            if !doc.access.permits(&other) {
                self.refuse(cx, Refusal::Denied);
                return true;
            }
        }
        // Both spellings of a directory, as for allow/deny: a rule protecting one protects
        // the other.
        if let Some(gate) = cx.gate {
            let paths = [haystack.as_str(), other.as_str()];
            let cert = self.client.tls.as_ref().and_then(|t| t.peer_certificate());
            let checked = gate.borrow_mut().check_any(&paths, head, self.peer.ip(), cert, cx.now);
            if let Err(d) = checked {
                self.refuse(cx, d.into());
                return true;
            }
        }
        // The MIME type follows the name served; a directory gets its default page's.
        let mime_name = if file.default_page { doc.default_page.as_str() } else { name };
        let mime = static_files::mime_type(mime_name);
        self.send_page(cx, file.file, file.len, mime, &haystack, head_only, keep_alive)
    }

    /// Queues the 200 head of a page of `len` bytes from `file` (named `path` in the log line),
    /// then sends the page (`File`), or after a `HEAD` or an empty page waits for the next
    /// request or closes.
    #[allow(clippy::too_many_arguments)]
    fn send_page(
        &mut self,
        cx: &mut Ctx<'_, U>,
        file: std::fs::File,
        len: u64,
        mime: &str,
        path: &str,
        head_only: bool,
        keep_alive: bool,
    ) -> bool {
        if !cx.pool.ensure(&mut self.to_client) {
            self.refuse(cx, Refusal::Full);
            return true;
        }
        let Some(out) = self.to_client.as_mut() else { return false };
        let keep_alive = keep_alive && !self.timers.timeouts.keepalive.is_zero();
        let Some(n) = static_files::write_ok(out.spare(), mime, len, keep_alive) else {
            self.refuse(cx, Refusal::ResponseTooLarge);
            return true;
        };
        out.commit(n);
        if let Some(l) = cx.counters.site(self.site) {
            super::super::counters::bump(&l.pages);
        }
        crate::conn_log!(
            crate::logging::INFO,
            "conn={} peer={} {} {path} 200 ({len} bytes)",
            self.key,
            self.peer,
            if head_only { "HEAD" } else { "GET" },
        );
        if head_only || len == 0 {
            self.finish_response(cx, keep_alive);
        } else {
            self.enter(State::File(Page { file, left: len, keep_alive }));
            self.timers.deadline = Some(cx.now + self.page_timeout());
        }
        true
    }

    /// Counts an upgrade (relayed, or handed over in direct mode) and keeps who made it, for
    /// the status.
    fn count_upgrade(
        &mut self,
        cx: &mut Ctx<'_, U>,
        identity: Option<crate::auth::gate::Identity>,
    ) {
        self.identity = identity;
        self.endpoint_row = u8::try_from(cx.counters.opened(&self.name)).ok();
        if let Some(l) = cx.counters.site(self.site) {
            super::super::counters::bump(&l.upgraded);
        }
    }

    /// The metrics page (see [`crate::event_loop::metrics`]), behind the site's allow/deny and
    /// its `auth` rules for the path, as an endpoint would be.
    fn serve_metrics(
        &mut self,
        cx: &mut Ctx<'_, U>,
        head: &[u8],
        head_only: bool,
        keep_alive: bool,
    ) -> bool {
        let path = cx.site.metrics.as_deref().unwrap_or_default();
        if !cx.site.access.permits(path) {
            self.refuse(cx, Refusal::Denied);
            return true;
        }
        if let Some(gate) = cx.gate {
            let cert = self.client.tls.as_ref().and_then(|t| t.peer_certificate());
            let checked = gate.borrow_mut().check_any(&[path], head, self.peer.ip(), cert, cx.now);
            if let Err(d) = checked {
                self.refuse(cx, d.into());
                return true;
            }
        }
        let gauges = crate::event_loop::metrics::Gauges {
            buffers: (cx.pool.count().saturating_sub(cx.pool.available()), cx.pool.count()),
        };
        let (file, len) = match crate::event_loop::metrics::page(cx.counters, gauges, cx.now) {
            Ok(p) => p,
            Err(e) => {
                let errno = e.raw_os_error().map_or(Errno::EIO, Errno::from_raw);
                self.refuse(cx, Refusal::File(crate::relay::route::FileError::Other(errno)));
                return true;
            }
        };
        let mime = "text/plain; version=0.0.4; charset=utf-8";
        self.send_page(cx, file, len, mime, path, head_only, keep_alive)
    }

    /// How long a page may take between two writes.
    fn page_timeout(&self) -> Duration {
        let t = self.timers.timeouts;
        t.handshake.max(t.close)
    }

    /// After a static page or a session answer: wait for the next request, or close. The name
    /// stays (the close line names the last path served) until the next request replaces it.
    pub(super) fn finish_response(&mut self, cx: &mut Ctx<'_, U>, keep_alive: bool) {
        if keep_alive && !self.client.eof {
            if self.phase() != Phase::Handshake {
                self.enter(State::Handshake(None));
            }
            self.timers.deadline = Some(cx.now + self.timers.timeouts.keepalive);
        } else {
            self.enter_close(cx, State::Flushing(None));
        }
    }

    /// Moves file bytes into the client buffer while there is room.
    pub(super) fn pump_file(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        if self.phase() != Phase::File {
            return false;
        }
        // Plain HTTP: once the head is out, the kernel copies the file to the socket itself.
        if self.to_client.as_ref().is_none_or(Buf::is_empty) && !self.client.no_sendfile {
            return self.send_file(cx);
        }
        if !cx.pool.ensure(&mut self.to_client) {
            return false;
        }
        let (State::File(page), Some(out)) = (&mut self.state, self.to_client.as_mut()) else {
            return false;
        };
        if out.free() == 0 {
            return false;
        }
        let spare = out.spare();
        let want = spare.len().min(usize::try_from(page.left).unwrap_or(usize::MAX));
        let Some(dst) = spare.get_mut(..want) else { return false };
        match page.file.read(dst) {
            Ok(0) | Err(_) => {
                // The file shrank or failed under us: the promised length cannot be met, so the
                // connection must end here (RFC 9112 §6.3).
                self.finish_response(cx, false);
            }
            Ok(n) => {
                out.commit(n);
                page.left -= n as u64;
                if page.left == 0 {
                    let keep_alive = page.keep_alive;
                    self.finish_response(cx, keep_alive);
                } else {
                    // Sending a page is activity: push the deadline.
                    self.timers.deadline = Some(cx.now + self.page_timeout());
                }
            }
        }
        true
    }

    /// `sendfile(2)` from the page to the client socket, without a user-space copy.
    fn send_file(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        if !self.client.writable {
            return false;
        }
        let State::File(page) = &mut self.state else { return false };
        let count = usize::try_from(page.left).unwrap_or(usize::MAX).min(1 << 20);
        match self.client.sock.send_file(&page.file, count) {
            Ok(0) => {
                // The file shrank under us: the promised length cannot be met (RFC 9112 §6.3).
                self.finish_response(cx, false);
            }
            Ok(n) => {
                page.left -= n as u64;
                self.stats.client_out += n as u64;
                if page.left == 0 {
                    let keep_alive = page.keep_alive;
                    self.finish_response(cx, keep_alive);
                } else {
                    self.timers.deadline = Some(cx.now + self.page_timeout());
                }
            }
            Err(Errno::EAGAIN) => {
                self.client.writable = false;
                return false;
            }
            Err(Errno::EINTR) => {}
            // A file system without sendfile support: copy through the buffer instead.
            Err(Errno::EINVAL | Errno::ENOSYS) => self.client.no_sendfile = true,
            Err(e) => {
                self.set_reason(super::Reason::ClientError(std::io::Error::from(e).kind()));
                self.client.eof = true;
                self.enter(State::Linger(None));
            }
        }
        true
    }

    /// The backend's listen queue is full: wait in `Connecting` for the next try (see
    /// [`BackendWait`]), or refuse with 503 once the last try, at the handshake deadline, has
    /// found it full too. The request stays in `from_client`.
    fn wait_for_backend(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let now = cx.now;
        let State::Handshake(wait) = &mut self.state else { return false };
        let last_try = self.timers.deadline.unwrap_or(now);
        let mut wait =
            wait.take().unwrap_or(BackendWait { since: now, pause: Duration::ZERO, last_try });
        if now >= wait.last_try {
            let waited = now.saturating_duration_since(wait.since).as_millis();
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
                // As u64: formatting a u128 would bring its own 700-byte printer.
                u64::try_from(wait.last_try.saturating_duration_since(now).as_millis())
                    .unwrap_or(u64::MAX)
            );
        }
        wait.pause = wait.pause.saturating_mul(2).clamp(CONNECT_PAUSE_MIN, CONNECT_PAUSE_MAX);
        self.timers.deadline = Some((now + wait.pause).min(wait.last_try));
        self.enter(State::Connecting(wait));
        true
    }

    /// `Connecting`: at the time of the next try, back to `Handshake`, whose deadline is the
    /// last try again; the drive that follows connects. `true` when that drive is due.
    pub(super) fn connect_again(&mut self, now: Instant, wait: BackendWait) -> bool {
        if self.timers.deadline.is_some_and(|d| d > now) {
            return false;
        }
        self.timers.deadline = Some(wait.last_try);
        self.enter(State::Handshake(Some(wait)));
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
}
