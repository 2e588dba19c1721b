//! The backend's side: writing it (and, in direct mode, handing it the client's socket),
//! reading it, and framing what it sent for the client.

use nix::errno::Errno;

use super::super::transport::{Transport, Upstream};
use super::{Connection, Ctx, Phase, Reason, State};
use crate::buffer::Buf;
use crate::relay::codec::{self, DataType, Downlink, Uplink};
use crate::ws::frame::{OpCode, MAX_SERVER_HEADER_LEN};

impl<T: Transport, U: Upstream> Connection<T, U> {
    pub(super) fn write_backend(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        // Direct mode: the record's first bytes must carry the client's fd (`handover`).
        if matches!(self.state, State::Handover(_, false)) {
            return false;
        }
        let open = self.phase() == Phase::Open;
        let (Some(b), Some(out)) = (self.state.backend(), self.to_backend.as_mut()) else {
            return false;
        };
        if !b.writable || out.is_empty() {
            return false;
        }
        let mut progress = false;
        let result = if b.sock.seqpacket() {
            let mut r = Ok(());
            while let Some((end, range)) = Uplink::next_packet(out) {
                match b.sock.send(out.readable().get(range).unwrap_or_default()) {
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
            match b.sock.send(out.readable()) {
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
                if open {
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
    pub(super) fn handover(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let State::Handover(b, fd_sent @ false) = &mut self.state else { return false };
        if !self.to_client.as_ref().is_none_or(Buf::is_empty) {
            return false;
        }
        let Some(out) = self.to_backend.as_mut() else { return false };
        // SCM_RIGHTS needs at least one byte to travel with; the record always has some.
        if !b.writable || out.is_empty() {
            return false;
        }
        match b.sock.send_with_fd(out.readable(), self.client.sock.raw_fd()) {
            Ok(n) => {
                out.consume(n);
                *fd_sent = true;
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
                self.fail(cx, Reason::BackendError(e));
                true
            }
        }
    }

    pub(super) fn read_backend(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        let State::Open(b) = &mut self.state else { return false };
        if !b.readable || b.eof {
            return false;
        }
        if !cx.pool.ensure(&mut self.from_backend) {
            return false;
        }
        let Some(buf) = self.from_backend.as_mut() else { return false };
        let seqpacket = b.sock.seqpacket();
        let result = if seqpacket {
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
            match b.sock.recv(spare) {
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
            let result = b.sock.recv(buf.spare());
            if matches!(result, Ok(n) if n > 0 && n < room) && !b.read_closed {
                // Short read: the socket is empty (see the module comment).
                b.readable = false;
            }
            result
        };
        match result {
            Ok(0) if seqpacket && !b.read_closed && !b.sock.hung_up() => {
                // A zero-length packet, not EOF: an empty message.
                self.timers.last_activity = cx.now;
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
                self.timers.last_activity = cx.now;
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

    pub(super) fn process_backend(&mut self, cx: &mut Ctx<'_, U>) -> bool {
        if self.close_sent {
            return false;
        }
        let State::Open(b) = &self.state else { return false };
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
        // On a plain client socket that is writable with nothing queued before them, frames
        // go out from the input where they are (one vectored write), not copied first.
        let mut gather = codec::Gather::default();
        let direct = self.client.tls.is_none() && self.client.writable && out.is_empty();
        let mut frames = codec::Frames::plain(&mut *out);
        #[cfg(feature = "deflate")]
        if self.outbound.allowed {
            frames.deflate = cx.deflate.as_deref_mut().map(|z| (&mut self.outbound, z));
        }
        #[cfg(feature = "deflate")]
        let direct = direct && frames.deflate.is_none();
        if direct {
            frames.gather = Some(&mut gather);
        }
        let pumped = self.downlink.pump_to(input, &mut frames, eof);
        if !gather.is_empty() {
            let c = &mut self.client;
            self.stats.client_out +=
                write_gathered(&mut c.sock, &mut c.writable, &gather, input, out);
        }
        match pumped {
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
                    self.enter_close(cx, State::Closing(None));
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
}

/// Sends the gathered frames with one vectored write and copies what the socket did not take
/// into `out` (empty before, so it fits: see [`codec::Gather`]). Returns the bytes sent. A
/// socket that would block is marked not writable; any other failure is left for
/// `write_client`, which meets it again when it writes the copy.
fn write_gathered<T: Transport>(
    sock: &mut T,
    writable: &mut bool,
    gather: &codec::Gather,
    input: &Buf,
    out: &mut Buf,
) -> u64 {
    let mut slices = [std::io::IoSlice::new(&[]); 2 * codec::GATHER_MAX];
    let n = gather.slices(input, &mut slices);
    let sent = match sock.write_vectored(slices.get(..n).unwrap_or_default()) {
        Ok(sent) => sent,
        Err(e) => {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                *writable = false;
            }
            0
        }
    };
    if sent < gather.bytes() {
        gather.spill(input, sent, out);
    }
    sent as u64
}
