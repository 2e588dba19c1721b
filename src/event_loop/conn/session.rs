//! The session endpoint on a connection: a request for it ([`crate::auth::login`]) is answered
//! here, before the page and upgrade decision, with the site's [`Gate`] deciding who logs in.
//!
//! The site's `Origin` policy applies to it as to upgrades, so a page of another origin cannot
//! log a browser in or out. A refused request closes the connection; an answered one keeps it
//! when the client asked to.

use core::fmt::Write as _;

use super::super::transport::{Transport, Upstream};
use super::{truncate, Connection, Ctx, Reason, Refusal, State};
use crate::auth::credentials::{self, MAX_PASSWORD, MAX_USER};
use crate::auth::gate::{Denial, Gate, Identity};
use crate::auth::login::{self, Action, Parsed, Response, SessionRequest};
use crate::buffer::Buf;
use crate::logging::INFO;

/// A response's extra header lines.
type Line = heapless::String<512>;

impl<T: Transport, U: Upstream> Connection<T, U> {
    /// Answers the request at the start of `input` if it is the session endpoint's: `None`
    /// when it is not (or the site has no sessions), else whether anything was done.
    pub(super) fn session_request(&mut self, cx: &mut Ctx<'_, U>, input: &mut Buf) -> Option<bool> {
        let gate = cx.gate?;
        let parsed = {
            let g = gate.borrow();
            let base = g.policy.session.as_ref()?.path.as_str();
            login::parse(input.readable(), base, input.free() == 0)
        };
        let req = match parsed {
            Parsed::NotOurs => return None,
            Parsed::Incomplete => return Some(false),
            Parsed::WrongMethod(action) => {
                self.session_refused(cx, 405, &[login::allow(action)]);
                return Some(true);
            }
            Parsed::Refused(status) => {
                self.session_refused(cx, status, &[]);
                return Some(true);
            }
            Parsed::Request(req) => req,
        };
        let _ = self.name.push_str(truncate(req.target, 64).trim_start_matches('/'));
        let tls = self.client.tls.is_some();
        if !cx.site.origin.permits(req.origin, req.host, tls) {
            crate::conn_log!(
                crate::logging::WARN,
                "conn={} peer={} Origin {:?} refused for Host {:?} at the session endpoint",
                self.key,
                self.peer,
                req.origin.unwrap_or_default(),
                req.host
            );
            self.session_refused(cx, 403, &[]);
            return Some(true);
        }
        let len = req.len;
        let answered = {
            let mut g = gate.borrow_mut();
            match req.action {
                Action::Login => self.login(cx, &mut g, &req, tls),
                Action::Logout => self.logout(cx, &req, tls),
                Action::Status => self.status(cx, &mut g, &req),
            }
        };
        input.consume(len);
        if let Some(keep_alive) = answered {
            self.finish_response(cx, keep_alive);
        }
        Some(true)
    }

    /// `POST BASE/login`. `Some(keep_alive)` once answered with success; `None` once refused.
    fn login(
        &mut self,
        cx: &mut Ctx<'_, U>,
        gate: &mut Gate,
        req: &SessionRequest<'_>,
        tls: bool,
    ) -> Option<bool> {
        let (mut u, mut p) = ([0u8; MAX_USER], [0u8; MAX_PASSWORD]);
        let read = if req.json {
            credentials::login_json(req.body, &mut u, &mut p)
        } else {
            credentials::login_form(req.body, &mut u, &mut p).map(|(u, p)| (u, p, false))
        };
        let (user, password, want_token) = match read {
            Ok(x) => x,
            Err(e) => {
                self.session_denied(cx, gate, Denial::Malformed(e));
                return None;
            }
        };
        let id = match gate.login(user, password, self.peer.ip(), cx.now) {
            Ok(id) => id,
            Err(d) => {
                self.session_denied(cx, gate, d);
                return None;
            }
        };
        let Some((token, expires)) = gate.issue(&id) else {
            self.session_refused(cx, 500, &[]);
            return None;
        };
        let max_age = gate.policy.session.as_ref().map_or(0, |s| s.expire.as_secs());
        let mut cookie = Line::new();
        let _ = login::set_cookie(&mut cookie, &token, max_age, tls);
        crate::conn_log!(
            INFO,
            "conn={} peer={} login: user {:?} (group {:?}) until {expires}",
            self.key,
            self.peer,
            id.user.as_str(),
            id.group.as_str()
        );
        if req.json {
            let mut body = heapless::String::<{ 128 + crate::auth::session::MAX_TOKEN }>::new();
            let _ = write!(
                body,
                "{{\"user\":\"{}\",\"group\":\"{}\",\"expires\":{expires}",
                id.user, id.group
            );
            if want_token {
                let _ = write!(body, ",\"token\":\"{token}\"");
            }
            let _ = body.push_str("}\n");
            self.session_answer(cx, 200, &[&cookie], "application/json", body.as_bytes(), req)
        } else {
            let mut location = Line::new();
            let _ = write!(location, "Location: {}", form_next(req.body));
            self.session_answer(cx, 303, &[&cookie, &location], "text/plain", b"logged in\n", req)
        }
    }

    /// `POST BASE/logout`: the cookie is cleared (a form goes on to its `next`).
    fn logout(&mut self, cx: &mut Ctx<'_, U>, req: &SessionRequest<'_>, tls: bool) -> Option<bool> {
        let mut cookie = Line::new();
        let _ = login::set_cookie(&mut cookie, "", 0, tls);
        crate::conn_log!(INFO, "conn={} peer={} logout", self.key, self.peer);
        if req.json || req.body.is_empty() {
            self.session_answer(cx, 200, &[&cookie], "application/json", b"{}\n", req)
        } else {
            let mut location = Line::new();
            let _ = write!(location, "Location: {}", form_next(req.body));
            self.session_answer(cx, 303, &[&cookie, &location], "text/plain", b"logged out\n", req)
        }
    }

    /// `GET BASE`: who the request's credential says.
    fn status(
        &mut self,
        cx: &mut Ctx<'_, U>,
        gate: &mut Gate,
        req: &SessionRequest<'_>,
    ) -> Option<bool> {
        let cert = self.client.tls.as_ref().and_then(|t| t.peer_certificate());
        match gate.identify(req.head, self.peer.ip(), cert, cx.now) {
            Ok(Identity { user, group }) => {
                let mut body = heapless::String::<128>::new();
                let _ = writeln!(body, "{{\"user\":\"{user}\",\"group\":\"{group}\"}}");
                self.session_answer(cx, 200, &[], "application/json", body.as_bytes(), req)
            }
            Err(d) => {
                self.session_denied(cx, gate, d);
                None
            }
        }
    }

    /// Writes a successful answer; `Some(keep_alive)` once written.
    fn session_answer(
        &mut self,
        cx: &mut Ctx<'_, U>,
        status: u16,
        headers: &[&str],
        content_type: &str,
        body: &[u8],
        req: &SessionRequest<'_>,
    ) -> Option<bool> {
        let keep_alive = req.keep_alive && !self.timers.timeouts.keepalive.is_zero();
        let r =
            Response { status, headers, content_type, body, head_only: req.head_only, keep_alive };
        if !self.session_write(cx, &r) {
            self.session_refused(cx, 500, &[]);
            return None;
        }
        crate::conn_log!(
            INFO,
            "conn={} peer={} {} /{} {status}",
            self.key,
            self.peer,
            if req.action == Action::Status { "GET" } else { "POST" },
            self.name
        );
        Some(keep_alive)
    }

    /// A login the gate refused: 401 with the session challenge, 403, 429 or 400.
    fn session_denied(&mut self, cx: &mut Ctx<'_, U>, gate: &Gate, d: Denial) {
        let mut extra = Line::new();
        match d {
            Denial::Unauthorized => {
                let base = gate.policy.session.as_ref().map_or("", |s| s.path.as_str());
                // The cookie scheme: a challenge no browser answers with a password dialog.
                let _ = write!(
                    extra,
                    "WWW-Authenticate: Cookie realm=\"{}\", form-action=\"{base}/login\", \
                     cookie-name=\"{}\"",
                    gate.policy.realm,
                    login::COOKIE
                );
            }
            Denial::Throttled => {
                let _ = write!(extra, "Retry-After: {}", crate::auth::throttle::REFILL.as_secs());
            }
            Denial::Forbidden | Denial::Malformed(_) => {}
        }
        let why = Refusal::from(d);
        self.set_reason(Reason::Refused(why));
        self.session_close(cx, why.status(), &[&extra]);
    }

    /// A session request that cannot be answered: its status, and the connection closes.
    fn session_refused(&mut self, cx: &mut Ctx<'_, U>, status: u16, headers: &[&str]) {
        self.set_reason(Reason::Refused(Refusal::Session(status)));
        self.session_close(cx, status, headers);
    }

    fn session_close(&mut self, cx: &mut Ctx<'_, U>, status: u16, headers: &[&str]) {
        let headers: heapless::Vec<&str, 4> =
            headers.iter().copied().filter(|h| !h.is_empty()).take(4).collect();
        let reason = crate::http::handshake::reason_phrase(status);
        let mut body = heapless::String::<64>::new();
        let _ = writeln!(body, "{reason}");
        let r = Response {
            status,
            headers: &headers,
            content_type: "text/plain",
            body: body.as_bytes(),
            head_only: false,
            keep_alive: false,
        };
        let _ = self.session_write(cx, &r);
        self.enter_close(cx, State::Flushing(None));
    }

    fn session_write(&mut self, cx: &mut Ctx<'_, U>, r: &Response<'_>) -> bool {
        if !cx.pool.ensure(&mut self.to_client) {
            return false;
        }
        let Some(out) = self.to_client.as_mut() else { return false };
        match login::write_response(out.spare(), r) {
            Some(n) => {
                out.commit(n);
                true
            }
            None => false,
        }
    }
}

/// Where a form goes after a login or logout: its `next` field when that is a local path,
/// else the root.
fn form_next(body: &[u8]) -> heapless::String<256> {
    let mut out = heapless::String::new();
    let mut next = [0u8; 256];
    let field = credentials::form_field(body, "next", &mut next).ok().flatten();
    let target = field
        .and_then(|n| next.get(..n))
        .and_then(|b| core::str::from_utf8(b).ok())
        .and_then(login::local_target)
        .unwrap_or("/");
    let _ = out.push_str(target);
    out
}
