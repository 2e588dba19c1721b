//! The byte-exact echo of a relayed client ([`super::Relayed::Echoed`]): what it sends comes
//! back through one fixed buffer of [`BUF_LEN`] bytes, allocated when it connects and reused
//! for every message. A client whose peer stops reading fills that buffer and is then not read
//! from until its echo drains (backpressure instead of a queue).
//!
//! * `stream`, `lines`: bytes come back exactly as they were sent, streaming through the
//!   buffer.
//! * `framed`: a whole message is read before it is echoed. Its records
//!   ([`wsgate::relay::record`], followed by [`Records`]) are collected verbatim (headers and
//!   payloads, as they came) in a message buffer until the record with `F` completes the
//!   message; then all of those bytes are echoed, and the client is read from again (into
//!   the fixed buffer only) once the echo is written. A message bigger than `max_message`
//!   bytes, headers included, is answered with close 1009 and ends the client; a close
//!   record is answered once everything before it is echoed. The message buffer is allocated
//!   on the first message, grows as needed up to the limit, and is kept for the next message.
//!   A malformed record stream ends the client.
//! * `seqpacket`: each packet comes back as one packet.
//!
//! What it does not own: the socket's registration and the client's end, which are the
//! loop's ([`super::Server`]).
use mio::Interest;

use super::client::Gone;
use crate::message::{RecordFault, Records, Step};
use crate::sock::Sock;
use wsgate::relay::codec::Mode;
use wsgate::relay::record::{self, HEADER_LEN};

/// Each client's echo buffer. 64 KiB also bounds a `seqpacket` message.
pub(super) const BUF_LEN: usize = 64 * 1024;
/// The first allocation of a `framed` message buffer; it doubles from there, up to the limit.
const MSG_MIN_CAP: usize = 64 * 1024;
/// The `framed` answer to a message over the limit: close 1009, "message too big".
const CLOSE_TOO_BIG: [u8; HEADER_LEN + 2] = [0x88, 0, 0, 0, 2, 0x03, 0xf1];

/// Why an echoed client ends, beyond the loop's common reasons.
#[derive(Debug)]
pub(super) enum Fault {
    /// A `framed` message grew past the limit; close 1009 was answered.
    TooBig { size: usize, limit: usize },
    /// The buffer for a `framed` message of this many bytes could not be allocated.
    NoMemory(usize),
    /// A `framed` record stream that cannot be followed.
    Malformed(FrameFault),
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooBig { size, limit } => write!(
                f,
                "message of {size} bytes or more exceeds the {limit}-byte limit (-M), answered \
                 with close 1009"
            ),
            Self::NoMemory(n) => write!(f, "cannot allocate {n} bytes for a message"),
            Self::Malformed(e) => write!(f, "malformed record: {e}"),
        }
    }
}

/// A `framed` record stream the echo cannot pass on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameFault {
    /// Malformed, or out of sequence.
    Records(RecordFault),
    /// A connection-context record: the echo takes none (run the gateway without
    /// `--context` for this endpoint).
    Context,
}

impl core::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Records(e) => e.fmt(f),
            Self::Context => {
                f.write_str("a connection-context record: the echo takes none (no --context)")
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

/// Finds message boundaries in a `framed` byte stream as it passes, and sizes messages
/// headers included.
#[derive(Debug, Default)]
struct Framer {
    records: Records,
    /// Bytes of the current message, headers included, as its headers so far declare.
    msg_bytes: usize,
}

impl Framer {
    /// Walks newly read bytes up to the first boundary in them: returns the offset just past
    /// it, or `None` when all of `data` belongs to a message that goes on. A message's size
    /// is checked against `limit` at each record header, so `TooBig` comes before the payload
    /// that would not fit.
    fn scan(&mut self, data: &[u8], limit: usize) -> Result<Option<(usize, Boundary)>, FrameFault> {
        let mut pos = 0;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            let (used, step) = self.records.next(rest).map_err(FrameFault::Records)?;
            pos += used;
            match step {
                None => return Ok(None),
                Some(Step::Header(h)) if h.opcode == record::OP_CONTEXT => {
                    return Err(FrameFault::Context)
                }
                Some(Step::Header(h)) if h.opcode == record::OP_CLOSE => {}
                Some(Step::Header(h)) => {
                    let len = usize::try_from(h.len).unwrap_or(usize::MAX);
                    self.msg_bytes = self.msg_bytes.saturating_add(len).saturating_add(HEADER_LEN);
                    if self.msg_bytes > limit {
                        return Ok(Some((pos, Boundary::TooBig(self.msg_bytes))));
                    }
                }
                Some(Step::End(h, _)) if h.opcode == record::OP_CLOSE => {
                    return Ok(Some((pos, Boundary::Close)))
                }
                Some(Step::Payload(..) | Step::End(_, None)) => {}
                Some(Step::End(_, Some(_))) => {
                    self.msg_bytes = 0;
                    return Ok(Some((pos, Boundary::Message)));
                }
            }
        }
    }
}

/// What a client's turn ended with, when it did not end the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// Both directions would block (or are not wanted): wait for readiness.
    Blocked,
    /// The turn budget ran out with work left: run again without waiting for readiness.
    MoreWork,
}

/// How a `framed` client ends once its echo buffer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    /// A close record was echoed.
    Close,
    /// A message of this many bytes was over the limit; close 1009 was sent.
    TooBig(usize),
}

/// An echoed relayed client.
#[derive(Debug)]
pub(super) struct Echo {
    pub(super) sock: Sock,
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
    /// `framed`: end the client once the echo is written.
    finish: Option<Finish>,
    framer: Framer,
}

impl Echo {
    /// An echo on `sock` whose first input is `first` (at most [`BUF_LEN`] bytes are kept).
    ///
    /// # Errors
    /// [`Fault::NoMemory`] when the buffer cannot be allocated (`sock` is closed).
    pub(super) fn new(sock: Sock, first: &[u8]) -> Result<Self, Gone> {
        let mut buf = Vec::new();
        if buf.try_reserve_exact(BUF_LEN).is_err() {
            return Err(Gone::Echo(Fault::NoMemory(BUF_LEN)));
        }
        buf.resize(BUF_LEN, 0);
        let end = first.len().min(BUF_LEN);
        if let (Some(dst), Some(src)) = (buf.get_mut(..end), first.get(..end)) {
            dst.copy_from_slice(src);
        }
        Ok(Self {
            sock,
            buf: buf.into_boxed_slice(),
            start: 0,
            end,
            eof: false,
            msg: Vec::new(),
            echo: false,
            sent: 0,
            finish: None,
            framer: Framer::default(),
        })
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
        match self.sock.read(space).map_err(Gone::Sock)? {
            Some(0) => self.eof = true,
            Some(n) => self.end += n,
            None => return Ok(false),
        }
        Ok(true)
    }

    /// Gives the client its turn: until both directions would block or `budget` reads plus
    /// writes are spent.
    ///
    /// # Errors
    /// [`Gone`]: the client is over (done, closed, or failed).
    pub(super) fn run(
        &mut self,
        mode: Mode,
        max_message: usize,
        budget: usize,
    ) -> Result<Turn, Gone> {
        match mode {
            Mode::Framed => self.run_framed(max_message, budget),
            Mode::Stream | Mode::Lines | Mode::SeqPacket => self.run_stream(mode, budget),
        }
    }

    /// Echoes what can be echoed and reads what fits.
    fn run_stream(&mut self, mode: Mode, budget: usize) -> Result<Turn, Gone> {
        for _ in 0..budget {
            let mut progress = false;
            if self.pending(mode) {
                let out = self.buf.get(self.start..self.end).unwrap_or_default();
                if let Some(n) = self.sock.write(out).map_err(Gone::Sock)? {
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
    fn run_framed(&mut self, max_message: usize, budget: usize) -> Result<Turn, Gone> {
        for _ in 0..budget {
            let mut progress = false;
            if self.wants_read(Mode::Framed) {
                progress = self.read_some()?;
            }
            progress |= self.collect(max_message)?;
            if self.echo {
                let out = self.msg.get(self.sent..).unwrap_or_default();
                if let Some(n) = self.sock.write(out).map_err(Gone::Sock)? {
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
                            return Err(Gone::Echo(Fault::TooBig { size, limit: max_message }))
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
        let found =
            self.framer.scan(data, max_message).map_err(|e| Gone::Echo(Fault::Malformed(e)))?;
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
    #[must_use]
    pub(super) fn wanted(&self, mode: Mode) -> Option<Interest> {
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
        msg.try_reserve_exact(cap - msg.len()).map_err(|_| Gone::Echo(Fault::NoMemory(cap)))?;
    }
    msg.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests;
