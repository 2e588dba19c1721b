//! The client's side: reading and writing its transport (plain, or through rustls), and
//! decoding its frames once the connection is open.

use std::io::ErrorKind;

use super::super::tls_io::TlsFault;
use super::super::transport::{Transport, Upstream};
use super::{Connection, Ctx, Phase, Reason, Refusal, State};
use crate::buffer::Buf;
use crate::relay::codec::{self, CONTROL_ROOM};
use crate::ws::frame::OpCode;
use crate::ws::session::{Control, Event};

impl<T: Transport, U: Upstream> Connection<T, U> {
    pub(super) fn read_client(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let phase = self.phase();
        // In `Handover` the client's bytes are left in the socket: they are the backend's.
        if !self.client.readable
            || self.client.eof
            || matches!(phase, Phase::Draining | Phase::Handover)
        {
            return false;
        }
        if !cx.pool.ensure(&mut self.from_client) {
            return false;
        }
        let Some(buf) = self.from_client.as_mut() else { return false };
        let discard = matches!(phase, Phase::Linger | Phase::Flushing);
        if discard {
            // Input left from before the end is not wanted either (a backend that failed while
            // the client was sending leaves the buffer full): without the room, the client's
            // EOF would never be read and the connection would wait for the close timeout.
            buf.consume(buf.len());
        }
        if buf.free() == 0 {
            return false;
        }
        let room = buf.free();
        let c = &mut self.client;
        let result = match c.tls.as_mut() {
            Some(tls) => tls.read(&mut c.sock, buf.spare()),
            None => c.sock.read(buf.spare()),
        };
        match result {
            Ok(0) => {
                c.eof = true;
                true
            }
            Ok(n) => {
                if n < room && c.tls.is_none() && !c.read_closed {
                    // Short read: the socket is empty (see the module comment).
                    c.readable = false;
                }
                buf.commit(n);
                self.stats.client_in += n as u64;
                self.timers.last_rx = cx.now;
                if discard {
                    // Nobody will read it: keep the buffer free for the next read.
                    buf.consume(n);
                }
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.readable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(e) if e.kind() == ErrorKind::InvalidData && c.tls.is_some() => {
                self.tls_failed(cx);
                true
            }
            Err(e) => {
                self.set_reason(Reason::ClientError(e.kind()));
                self.client.eof = true;
                true
            }
        }
    }

    /// TLS gave up: log why, answer plain HTTP with a 400 in clear, otherwise send the alert
    /// rustls queued (best effort) and end the client side.
    fn tls_failed(&mut self, cx: &mut Ctx<'_, U>) {
        let handshake = self.phase() == Phase::Handshake;
        let c = &mut self.client;
        let Some(tls) = c.tls.as_mut() else { return };
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
        if fault == TlsFault::PlainHttp && handshake {
            // Nothing was encrypted yet: the refusal goes out as plain HTTP.
            c.tls = None;
            self.refuse(cx, Refusal::PlainHttp);
            return;
        }
        while tls.wants_write() {
            if !matches!(tls.write_tls(&mut c.sock), Ok(n) if n > 0) {
                break;
            }
        }
        c.eof = true;
        self.set_reason(Reason::Tls(fault));
        if let Some(b) = self.from_client.as_mut() {
            if handshake {
                b.consume(b.len());
            }
        }
    }

    pub(super) fn write_client(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        if !self.client.writable || matches!(self.phase(), Phase::Draining | Phase::Linger) {
            return false;
        }
        if self.client.tls.is_some() {
            return self.write_client_tls(cx);
        }
        let Some(buf) = self.to_client.as_mut() else { return false };
        if buf.is_empty() {
            return false;
        }
        match self.client.sock.write(buf.readable()) {
            Ok(n) => {
                buf.consume(n);
                self.stats.client_out += n as u64;
                n > 0
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.client.writable = false;
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
    fn write_client_tls(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let mut progress = false;
        loop {
            let c = &mut self.client;
            let Some(tls) = c.tls.as_mut() else { return progress };
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
            match tls.write_tls(&mut c.sock) {
                Ok(0) => return progress,
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.writable = false;
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
    pub(super) fn client_write_failed(&mut self, cx: &mut Ctx<'_, U>, kind: ErrorKind) {
        self.set_reason(Reason::ClientError(kind));
        self.client.eof = true;
        if let Some(b) = self.to_client.as_mut() {
            b.consume(b.len());
        }
        if matches!(self.phase(), Phase::Open | Phase::Closing) {
            self.enter_close(cx, State::Draining(None));
        } else {
            self.enter(State::Linger(None));
        }
    }

    pub(super) fn process_client(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        match self.phase() {
            Phase::Handshake => self.process_handshake(cx),
            Phase::Dialing => self.dialed(cx),
            Phase::Open | Phase::Closing => self.process_frames(cx),
            _ => false,
        }
    }

    /// Decodes the client's frames: data goes to the backend through the relay mode (dropped
    /// once the connection is closing), pings are answered, a pong clears the ping timer, a
    /// close is echoed and ends the relay.
    fn process_frames(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let mut progress = false;
        loop {
            // A compressed message may owe inflated bytes with no client byte left (and its
            // buffer given back): the tail, after an empty last frame or when the last bytes
            // filled the backend buffer's room.
            #[cfg(feature = "deflate")]
            let owed = self.inbound.busy();
            #[cfg(not(feature = "deflate"))]
            let owed = false;
            if !owed && self.from_client.as_ref().is_none_or(Buf::is_empty) {
                return progress;
            }
            if !cx.pool.ensure(&mut self.to_client) {
                return progress;
            }
            let forwarding = matches!(&self.state, State::Open(b) if !b.finish);
            if forwarding && !cx.pool.ensure(&mut self.to_backend) {
                return progress;
            }
            if self.to_client.as_ref().is_none_or(|b| b.free() < CONTROL_ROOM) {
                return progress;
            }
            // Inflated bytes of a compressed message come before any further frame.
            #[cfg(feature = "deflate")]
            if owed {
                match self.inflate(cx, forwarding) {
                    Some(true) => {
                        progress = true;
                        continue;
                    }
                    Some(false) => return true,
                    None => return progress,
                }
            }
            let (Some(input), Some(to_client)) =
                (self.from_client.as_mut(), self.to_client.as_mut())
            else {
                return progress;
            };
            let max_data = match (forwarding, self.to_backend.as_ref()) {
                (true, Some(tb)) if tb.free() < CONTROL_ROOM => return progress,
                (true, Some(tb)) => self.uplink.room(tb).saturating_sub(CONTROL_ROOM),
                // Not forwarding (closing): data is read and dropped.
                _ => usize::MAX,
            };
            let (n, event) = match self.session.decode(input.readable_mut(), max_data) {
                Ok(x) => x,
                Err(e) => {
                    input.consume(input.len());
                    self.fail(cx, Reason::Protocol(e));
                    return true;
                }
            };
            let mut close: Option<(Option<u16>, Control)> = None;
            // Less than the frame only for a compressed message (below).
            #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
            let mut consume = n;
            match event {
                // A compressed message's bytes stay at the front of the input, unmasked, until
                // they are inflated (above).
                #[cfg(feature = "deflate")]
                Some(Event::Data { kind, start, fin, len, compressed: true }) => {
                    self.timers.last_activity = cx.now;
                    if let (true, Some(z)) = (forwarding, cx.deflate.as_deref_mut()) {
                        self.inbound.feed(z, kind, start, fin, len);
                        consume = n - len;
                    }
                }
                Some(Event::Data { kind, start, fin, len, .. }) => {
                    self.timers.last_activity = cx.now;
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
                Some(Event::Pong(_)) => self.timers.pong(cx.now),
                Some(Event::Close { code, reason }) => close = Some((code, reason)),
                None => {}
            }
            input.consume(consume);
            if let Some((code, reason)) = close {
                self.set_reason(Reason::ClientClose(code));
                // §5.5.1: echo the status code; empty close gets an empty answer.
                self.send_close(cx, code);
                if let (Some(tb), true) = (self.to_backend.as_mut(), forwarding) {
                    self.uplink.close(tb, code, reason.as_slice());
                }
                self.enter_close(cx, State::Flushing(None));
                return true;
            }
            if n == 0 && event.is_none() {
                return progress;
            }
            progress = true;
        }
    }

    /// Inflates the compressed message at the front of the client's input into the backend
    /// buffer, as far as it has room (or drops it when the connection is no longer relaying).
    /// The client's buffer may have been given back, empty, while the tail was owed.
    /// `Some(true)`: progress; `Some(false)`: the connection failed; `None`: blocked.
    #[cfg(feature = "deflate")]
    fn inflate(&mut self, cx: &mut Ctx<'_, U>, forwarding: bool) -> Option<bool> {
        use crate::relay::compress::Step;
        let z = cx.deflate.as_deref_mut()?;
        if !forwarding {
            self.inbound.discard(z, self.from_client.as_mut());
            return Some(true);
        }
        let tb = self.to_backend.as_mut()?;
        if tb.free() < CONTROL_ROOM {
            return None;
        }
        let room = self.uplink.room(tb).saturating_sub(CONTROL_ROOM);
        let input = self.from_client.as_mut();
        let failed = match self.inbound.step(z, input, room, self.session.max_message()) {
            Ok(Step::Piece { kind, start, fin, bytes }) => {
                match self.uplink.put(tb, kind, start, fin, bytes) {
                    Ok(()) => {
                        if fin {
                            self.stats.msgs_up += 1;
                        }
                        return Some(true);
                    }
                    Err(e) => Reason::Uplink(e),
                }
            }
            Ok(Step::Consumed) => return Some(true),
            Ok(Step::Blocked) => return None,
            Err(e) => Reason::Protocol(e),
        };
        if let Some(input) = self.from_client.as_mut() {
            input.consume(input.len());
        }
        self.fail(cx, failed);
        Some(false)
    }
}
