//! The relay modes: how WebSocket messages become backend bytes and back. Sans-IO: every
//! function moves bytes between two [`Buf`]s.
//!
//! | mode | client message → backend | backend → client message |
//! |---|---|---|
//! | `stream` | payload bytes as they are, no boundary | each read becomes one message |
//! | `lines` | payload bytes then `\n` | each line (without `\n`, a final `\r` dropped) |
//! | `framed` | 5-byte records, see [`super::record`] | records → frames, type and FIN kept |
//! | `seqpacket` | one packet per message | one message per packet |
//!
//! Outgoing text frames never carry invalid UTF-8: in `stream` mode a code point split across
//! reads is held back until it is complete, and bytes that are not UTF-8 go as a binary message
//! (the caller logs a warning). The [`Uplink`] (client → backend) and [`Downlink`]
//! (backend → client) keep the little state a mode needs between calls.

use core::str::FromStr;

use crate::buffer::Buf;
use crate::relay::record::{self, RecordError, RecordHeader};
use crate::ws::frame::{
    close_code, is_valid_close_code, FrameHeader, OpCode, MAX_SERVER_HEADER_LEN,
};
use crate::ws::session::DataKind;
use crate::ws::utf8::{split_complete, Utf8Validator};

/// How messages map to backend bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Raw bytes both ways (ouistiti-compatible).
    Stream,
    /// Newline-delimited messages both ways.
    Lines,
    /// 5-byte records both ways.
    Framed,
    /// One SOCK_SEQPACKET packet per message.
    SeqPacket,
}

impl Mode {
    /// Every mode, in the order messages list them.
    pub const ALL: [Self; 4] = [Self::Stream, Self::Lines, Self::Framed, Self::SeqPacket];

    /// The name configurations use (`-m`, `mode = "..."`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Lines => "lines",
            Self::Framed => "framed",
            Self::SeqPacket => "seqpacket",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mode {s:?} ({})", Self::ALL.map(Self::name).join(", ")))
    }
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Frame type for backend data in the modes that do not carry one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// Text (UTF-8 checked; invalid data goes as binary with a warning).
    Text,
    /// Binary.
    Binary,
    /// Text when the data is UTF-8, binary otherwise.
    Auto,
}

impl DataType {
    /// Every type, in the order messages list them.
    pub const ALL: [Self; 3] = [Self::Text, Self::Binary, Self::Auto];

    /// The name configurations use (`-t`, `type = "..."`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Binary => "binary",
            Self::Auto => "auto",
        }
    }
}

impl FromStr for DataType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown type {s:?} ({})", Self::ALL.map(Self::name).join(", ")))
    }
}

/// Free bytes the caller must have in both outgoing buffers before decoding client input:
/// room for a control answer (pong or close, 2 + 125 bytes) or a close record (5 + 125).
pub const CONTROL_ROOM: usize = record::HEADER_LEN + record::MAX_CLOSE_PAYLOAD + 8;

/// Why client data could not be relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UplinkError {
    /// `lines` mode: the message contains a newline, which would split it (close 1003).
    NewlineInMessage,
}

/// Client → backend state.
#[derive(Clone, Debug)]
pub struct Uplink {
    mode: Mode,
    /// `seqpacket`: payload bytes of the message being assembled.
    assembling: Option<u32>,
}

impl Uplink {
    /// For `mode`.
    #[must_use]
    pub fn new(mode: Mode) -> Self {
        Self { mode, assembling: None }
    }

    /// Payload bytes that fit in `out` now.
    #[must_use]
    pub fn room(&self, out: &Buf) -> usize {
        let free = out.free();
        match self.mode {
            Mode::Stream => free,
            Mode::Lines => free.saturating_sub(1),
            Mode::Framed => free.saturating_sub(record::HEADER_LEN),
            Mode::SeqPacket if self.assembling.is_some() => free,
            Mode::SeqPacket => free.saturating_sub(record::HEADER_LEN),
        }
    }

    /// The largest message this mode can carry with buffers of `buf_size` bytes.
    #[must_use]
    pub fn max_message(&self, buf_size: usize) -> Option<u64> {
        // The message must fit with its header, and still leave the control room the caller
        // keeps free twice over (once to decode at all, once inside `room`), so that the frame
        // header that would make it too big is always read and answered with 1009.
        (self.mode == Mode::SeqPacket)
            .then(|| buf_size.saturating_sub(record::HEADER_LEN + 2 * CONTROL_ROOM) as u64)
    }

    /// Appends one piece of a client message. The caller passed at most [`Self::room`] bytes.
    ///
    /// # Errors
    /// [`UplinkError`] when the mode cannot carry this message.
    pub fn put(
        &mut self,
        out: &mut Buf,
        kind: DataKind,
        start: bool,
        fin: bool,
        payload: &[u8],
    ) -> Result<(), UplinkError> {
        match self.mode {
            Mode::Stream => {
                let _ = out.append(payload);
            }
            Mode::Lines => {
                if payload.contains(&b'\n') {
                    return Err(UplinkError::NewlineInMessage);
                }
                let _ = out.append(payload);
                if fin {
                    let _ = out.append(b"\n");
                }
            }
            Mode::Framed => {
                if payload.is_empty() && !start && !fin {
                    return Ok(());
                }
                let opcode = match (start, kind) {
                    (false, _) => record::OP_CONTINUATION,
                    (true, DataKind::Text) => record::OP_TEXT,
                    (true, DataKind::Binary) => record::OP_BINARY,
                };
                let h = RecordHeader { fin, opcode, len: payload.len() as u32 };
                let _ = out.append(&h.to_bytes());
                let _ = out.append(payload);
            }
            Mode::SeqPacket => {
                // Whole messages only: a header placeholder, patched when the message ends.
                if start {
                    let h = RecordHeader { fin: false, opcode: record::OP_BINARY, len: 0 };
                    let _ = out.append(&h.to_bytes());
                    self.assembling = Some(0);
                }
                let _ = out.append(payload);
                let len = self.assembling.unwrap_or(0).saturating_add(payload.len() as u32);
                self.assembling = Some(len);
                if fin {
                    let back = record::HEADER_LEN + len as usize;
                    if let Some(h) = out.tail_mut(back).and_then(|t| t.first_chunk_mut::<5>()) {
                        *h = RecordHeader { fin: true, opcode: record::OP_BINARY, len }.to_bytes();
                    }
                    self.assembling = None;
                }
            }
        }
        Ok(())
    }

    /// Tells the backend the client closed: a close record in `framed` mode, nothing otherwise
    /// (the caller shuts the socket down). `out` has [`CONTROL_ROOM`] free.
    pub fn close(&mut self, out: &mut Buf, code: Option<u16>, reason: &[u8]) {
        if self.mode != Mode::Framed {
            return;
        }
        let reason =
            reason.get(..reason.len().min(record::MAX_CLOSE_PAYLOAD - 2)).unwrap_or_default();
        let len = if code.is_some() { 2 + reason.len() } else { 0 };
        let h = RecordHeader { fin: true, opcode: record::OP_CLOSE, len: len as u32 };
        let _ = out.append(&h.to_bytes());
        if let Some(code) = code {
            let _ = out.append(&code.to_be_bytes());
            let _ = out.append(reason);
        }
    }

    /// `seqpacket`: the next complete message at the front of `out`, as (header + payload
    /// length, payload range). The caller sends the payload as one packet, then consumes.
    #[must_use]
    pub fn next_packet(out: &Buf) -> Option<(usize, core::ops::Range<usize>)> {
        let h = RecordHeader::parse(out.readable()).ok()??;
        if !h.fin {
            return None;
        }
        let end = record::HEADER_LEN + h.len as usize;
        (out.len() >= end).then_some((end, record::HEADER_LEN..end))
    }
}

/// What the backend did that ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownlinkError {
    /// `framed`: a malformed record.
    Record(RecordError),
    /// `framed`: continuation outside a message, or a new message inside one.
    RecordSequence,
    /// Text that is not UTF-8 inside a fragmented message, where it can no longer go as binary.
    InvalidUtf8,
    /// The backend stopped in the middle of a message.
    Truncated,
}

impl core::fmt::Display for DownlinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Record(e) => write!(f, "backend sent a bad record: {e}"),
            Self::RecordSequence => f.write_str("backend records out of sequence"),
            Self::InvalidUtf8 => f.write_str("backend sent invalid UTF-8 in a text message"),
            Self::Truncated => f.write_str("backend ended in the middle of a message"),
        }
    }
}

/// Something the caller should act on after [`Downlink::pump`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PumpReport {
    /// Data that was not UTF-8 went as binary although text was configured: warn.
    pub demoted_to_binary: bool,
    /// `framed`: the backend sent a close record with this code (already valid) and reason
    /// length (the reason is at the front of the input, see [`Downlink::close_reason`]).
    pub close: Option<(u16, usize)>,
    /// Frames written.
    pub frames: u32,
}

/// Frames a [`Gather`] holds at most: the frames of one full input buffer of 4 KiB messages,
/// with room to spare.
pub const GATHER_MAX: usize = 16;

/// Payloads shorter than this are copied into the client buffer rather than gathered: copying
/// a few hundred bytes costs less than an I/O vector entry of their own.
pub const GATHER_MIN: usize = 512;

/// Frames for the client that are not copied into its buffer: each one's header, and where its
/// payload lies in the backend input ([`Buf::raw`]), which the codec has consumed but not
/// overwritten. The caller sends them with one vectored write ([`Self::slices`]) before
/// anything else is written into either buffer, and copies what the socket did not take into
/// the client buffer ([`Self::spill`]); the frames never add up to more than that buffer had
/// free, so the rest always fits. Lives on the caller's stack for one pump.
#[derive(Debug)]
pub struct Gather {
    headers: [[u8; MAX_SERVER_HEADER_LEN]; GATHER_MAX],
    /// Per frame: header length, payload position in the input's storage, payload length.
    frames: [(usize, usize, usize); GATHER_MAX],
    count: usize,
    bytes: usize,
}

impl Default for Gather {
    fn default() -> Self {
        Self {
            headers: [[0; MAX_SERVER_HEADER_LEN]; GATHER_MAX],
            frames: [(0, 0, 0); GATHER_MAX],
            count: 0,
            bytes: 0,
        }
    }
}

impl Gather {
    /// Frames held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// No frame held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of every frame held, headers included.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds a frame whose payload is `len` bytes at `at` in the input's storage; `false`
    /// (nothing held) when [`GATHER_MAX`] frames are held already or this one would take them
    /// past `free` bytes.
    fn push(&mut self, fin: bool, opcode: OpCode, at: usize, len: usize, free: usize) -> bool {
        let hlen = FrameHeader::server_header_len(len as u64);
        if self.count >= GATHER_MAX || self.bytes + hlen + len > free {
            return false;
        }
        let Some(h) = self.headers.get_mut(self.count) else { return false };
        if FrameHeader::emit(fin, opcode, len as u64, h).is_none() {
            return false;
        }
        if let Some(f) = self.frames.get_mut(self.count) {
            *f = (hlen, at, len);
        }
        self.count += 1;
        self.bytes += hlen + len;
        true
    }

    /// The frames as I/O vectors into `dst` (header, payload, header, ...): how many were set.
    pub fn slices<'b>(&'b self, input: &'b Buf, dst: &mut [std::io::IoSlice<'b>]) -> usize {
        let mut n = 0;
        for (h, &(hlen, at, len)) in self.headers.iter().zip(&self.frames).take(self.count) {
            for part in [h.get(..hlen).unwrap_or_default(), input.raw(at..at + len)] {
                if let Some(d) = dst.get_mut(n) {
                    *d = std::io::IoSlice::new(part);
                    n += 1;
                }
            }
        }
        n
    }

    /// Appends to `out` what follows the first `sent` bytes of the frames (all of them when
    /// nothing was sent).
    pub fn spill(&self, input: &Buf, sent: usize, out: &mut Buf) {
        let mut skip = sent;
        for (h, &(hlen, at, len)) in self.headers.iter().zip(&self.frames).take(self.count) {
            for part in [h.get(..hlen).unwrap_or_default(), input.raw(at..at + len)] {
                let rest = part.get(skip.min(part.len())..).unwrap_or_default();
                skip = skip.saturating_sub(part.len());
                let _ = out.append(rest);
            }
        }
    }
}

/// Where the downlink's frames go: into the client buffer as they are, gathered for a vectored
/// write when the caller can make one, or compressed first when the connection negotiated
/// permessage-deflate.
#[derive(Debug)]
pub struct Frames<'a> {
    /// The client buffer.
    pub out: &'a mut Buf,
    /// Frames to send from the input where they are (plain connections only), while the
    /// client buffer is empty.
    pub gather: Option<&'a mut Gather>,
    /// The connection's compression state and the shared contexts.
    #[cfg(feature = "deflate")]
    pub deflate: Option<(&'a mut super::compress::Outbound, &'a mut super::compress::Contexts)>,
}

impl<'a> Frames<'a> {
    /// Frames as they are.
    pub fn plain(out: &'a mut Buf) -> Self {
        Self {
            out,
            gather: None,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// Bytes free for frames: the client buffer's, less the frames gathered; none once
    /// [`GATHER_MAX`] frames are.
    fn free(&self) -> usize {
        match self.gather.as_ref() {
            Some(g) if g.count >= GATHER_MAX => 0,
            Some(g) => self.out.free().saturating_sub(g.bytes),
            None => self.out.free(),
        }
    }

    /// Payload bytes of one piece that fit now.
    fn room(&self) -> usize {
        #[cfg(feature = "deflate")]
        if self.deflate.is_some() {
            return super::compress::Outbound::room(self.out, MAX_SERVER_HEADER_LEN);
        }
        self.free().saturating_sub(MAX_SERVER_HEADER_LEN)
    }

    /// Can a frame with an empty payload go now?
    fn fits_empty(&self) -> bool {
        // A compressed empty message is one byte (RFC 7692 §7.2.3.6), the flush a few more.
        #[cfg(feature = "deflate")]
        if self.deflate.is_some() {
            return self.out.free()
                >= MAX_SERVER_HEADER_LEN + crate::ws::deflate::zstream::bound(0);
        }
        self.free() >= MAX_SERVER_HEADER_LEN
    }

    /// Appends one frame whose payload is the front of the input, at `at` in its storage;
    /// `false` when it does not fit (nothing written), which [`Self::room`] and
    /// [`Self::fits_empty`] rule out. Gathering starts with a frame of [`GATHER_MIN`] bytes
    /// or more while the client buffer is empty; every later frame of the pump is gathered
    /// too, since they must follow it, so the client buffer stays empty meanwhile.
    fn emit(&mut self, fin: bool, opcode: OpCode, payload: &[u8], at: usize) -> bool {
        #[cfg(feature = "deflate")]
        if let Some((ob, cx)) = &mut self.deflate {
            return ob.emit(cx, self.out, fin, opcode, payload);
        }
        if let Some(g) = self.gather.as_deref_mut() {
            if self.out.is_empty() && (payload.len() >= GATHER_MIN || !g.is_empty()) {
                return g.push(fin, opcode, at, payload.len(), self.out.free());
            }
        }
        emit(self.out, fin, opcode, payload)
    }
}

#[derive(Clone, Copy, Debug)]
struct RecordState {
    opcode: u8,
    fin: bool,
    remaining: u32,
}

/// Backend → client state.
#[derive(Clone, Debug)]
pub struct Downlink {
    mode: Mode,
    data_type: DataType,
    /// A fragmented message is in progress towards the client (its kind).
    message: Option<DataKind>,
    record: Option<RecordState>,
    utf8: Utf8Validator,
}

impl Downlink {
    /// For `mode`, with `data_type` for the modes that do not carry one.
    #[must_use]
    pub fn new(mode: Mode, data_type: DataType) -> Self {
        Self { mode, data_type, message: None, record: None, utf8: Utf8Validator::new() }
    }

    /// The frame type for backend data that carries none, fixed at the handshake.
    #[must_use]
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// Is a message to the client unfinished (bytes of it sent, not its end)?
    #[must_use]
    pub fn in_message(&self) -> bool {
        self.message.is_some() || self.record.is_some()
    }

    /// Moves what it can from `input` (backend bytes) to `out` (client frames). `eof`: the
    /// backend has closed, so whatever is left must go now. `seqpacket`: `input` holds exactly
    /// one packet.
    ///
    /// # Errors
    /// [`DownlinkError`]: the backend broke the mode's rules; close the client with 1011.
    pub fn pump(
        &mut self,
        input: &mut Buf,
        out: &mut Buf,
        eof: bool,
    ) -> Result<PumpReport, DownlinkError> {
        self.pump_to(input, &mut Frames::plain(out), eof)
    }

    /// [`Self::pump`] into `frames`, which may compress.
    ///
    /// # Errors
    /// As [`Self::pump`].
    pub fn pump_to(
        &mut self,
        input: &mut Buf,
        out: &mut Frames<'_>,
        eof: bool,
    ) -> Result<PumpReport, DownlinkError> {
        let mut report = PumpReport::default();
        match self.mode {
            Mode::Stream => self.pump_stream(input, out, eof, &mut report),
            Mode::SeqPacket => self.pump_packet(input, out, &mut report),
            Mode::Lines => self.pump_lines(input, out, eof, &mut report)?,
            Mode::Framed => self.pump_framed(input, out, eof, &mut report)?,
        }
        Ok(report)
    }

    /// `framed`: the reason of a close record reported by [`PumpReport::close`], which the
    /// caller copies and then consumes with `input.consume(record::HEADER_LEN + 2 + len)`.
    #[must_use]
    pub fn close_reason(input: &Buf, len: usize) -> &[u8] {
        input
            .readable()
            .get(record::HEADER_LEN + 2..record::HEADER_LEN + 2 + len)
            .unwrap_or_default()
    }

    /// Chooses the frame type of a whole chunk for `data_type`.
    fn whole_kind(&self, chunk: &[u8], report: &mut PumpReport) -> DataKind {
        match self.data_type {
            DataType::Binary => DataKind::Binary,
            DataType::Auto | DataType::Text => {
                if core::str::from_utf8(chunk).is_ok() {
                    DataKind::Text
                } else {
                    report.demoted_to_binary |= self.data_type == DataType::Text;
                    DataKind::Binary
                }
            }
        }
    }

    fn pump_stream(
        &mut self,
        input: &mut Buf,
        out: &mut Frames<'_>,
        eof: bool,
        report: &mut PumpReport,
    ) {
        loop {
            let room = out.room();
            let data = input.readable();
            let take = data.len().min(room);
            let Some(chunk) = data.get(..take) else { return };
            if chunk.is_empty() {
                return;
            }
            let (n, kind) = if self.data_type == DataType::Binary {
                (take, DataKind::Binary)
            } else {
                match split_complete(chunk) {
                    // A split code point at the very end of what we have: hold it back.
                    Ok(n) if n < take && take == data.len() && !eof => (n, DataKind::Text),
                    // Cut by our own room limit: the rest follows in the next frame.
                    Ok(n) if n < take && take < data.len() && n > 0 => (n, DataKind::Text),
                    Ok(n) if n == take => (n, DataKind::Text),
                    _ => (take, self.whole_kind(chunk, report)),
                }
            };
            if n == 0 {
                return;
            }
            if !out.emit(true, kind.into(), chunk.get(..n).unwrap_or_default(), input.position()) {
                return;
            }
            report.frames += 1;
            input.consume(n);
        }
    }

    fn pump_packet(&mut self, input: &mut Buf, out: &mut Frames<'_>, report: &mut PumpReport) {
        let packet = input.readable();
        if packet.is_empty() || out.free() < packet.len() + MAX_SERVER_HEADER_LEN {
            return;
        }
        let kind = self.whole_kind(packet, report);
        if out.emit(true, kind.into(), packet, input.position()) {
            report.frames += 1;
            let n = packet.len();
            input.consume(n);
        }
    }

    fn pump_lines(
        &mut self,
        input: &mut Buf,
        out: &mut Frames<'_>,
        eof: bool,
        report: &mut PumpReport,
    ) -> Result<(), DownlinkError> {
        loop {
            let room = out.room();
            let data = input.readable();
            if data.is_empty() || room == 0 {
                return Ok(());
            }
            let (piece, consumed, fin) = match data.iter().position(|&b| b == b'\n') {
                Some(i) if i <= room => {
                    let line = data.get(..i).unwrap_or_default();
                    (line.strip_suffix(b"\r").unwrap_or(line), i + 1, true)
                }
                // An unterminated last line still goes out when the backend is done.
                None if eof && data.len() <= room => (data, data.len(), true),
                // A long line: send what we have as a fragment once it fills the room or the
                // input buffer, so that neither buffer can stall.
                _ if data.len() >= room || input.free() == 0 => {
                    let piece = data.get(..room.min(data.len())).unwrap_or_default();
                    let n = if self.data_type == DataType::Binary {
                        piece.len()
                    } else {
                        split_complete(piece).map_err(|_| DownlinkError::InvalidUtf8)?
                    };
                    if n == 0 {
                        return Err(DownlinkError::InvalidUtf8);
                    }
                    (piece.get(..n).unwrap_or_default(), n, false)
                }
                _ => return Ok(()),
            };
            let (start, kind) = match self.message {
                Some(k) => (false, k),
                None => {
                    let kind = if fin {
                        self.whole_kind(piece, report)
                    } else if self.data_type == DataType::Binary {
                        DataKind::Binary
                    } else {
                        DataKind::Text
                    };
                    (true, kind)
                }
            };
            if kind == DataKind::Text && !start {
                self.utf8.feed(piece).map_err(|_| DownlinkError::InvalidUtf8)?;
                if fin && !self.utf8.is_complete() {
                    return Err(DownlinkError::InvalidUtf8);
                }
            } else if kind == DataKind::Text {
                self.utf8.reset();
                self.utf8.feed(piece).map_err(|_| DownlinkError::InvalidUtf8)?;
            }
            let opcode = if start { kind.into() } else { OpCode::Continuation };
            if !out.emit(fin, opcode, piece, input.position()) {
                return Ok(());
            }
            report.frames += 1;
            self.message = if fin { None } else { Some(kind) };
            input.consume(consumed);
        }
    }

    fn pump_framed(
        &mut self,
        input: &mut Buf,
        out: &mut Frames<'_>,
        eof: bool,
        report: &mut PumpReport,
    ) -> Result<(), DownlinkError> {
        loop {
            let Some(rec) = self.record else {
                let Some(h) =
                    RecordHeader::parse(input.readable()).map_err(DownlinkError::Record)?
                else {
                    return if eof && (!input.is_empty() || self.message.is_some()) {
                        Err(DownlinkError::Truncated)
                    } else {
                        Ok(())
                    };
                };
                if h.opcode == record::OP_CLOSE {
                    let total = record::HEADER_LEN + h.len as usize;
                    if input.len() < total {
                        return if eof { Err(DownlinkError::Truncated) } else { Ok(()) };
                    }
                    let code = match input.readable().get(record::HEADER_LEN..total) {
                        Some([hi, lo, reason @ ..]) => {
                            let c = u16::from_be_bytes([*hi, *lo]);
                            if is_valid_close_code(c) && core::str::from_utf8(reason).is_ok() {
                                (c, reason.len())
                            } else {
                                (close_code::INTERNAL_ERROR, 0)
                            }
                        }
                        _ => (close_code::NORMAL, 0),
                    };
                    report.close = Some(code);
                    // The caller reads the reason, then consumes the record.
                    return Ok(());
                }
                let start_kind = match (h.opcode, self.message) {
                    (record::OP_CONTINUATION, None) | (record::OP_CONTEXT, _) => {
                        return Err(DownlinkError::RecordSequence)
                    }
                    (record::OP_TEXT | record::OP_BINARY, Some(_)) => {
                        return Err(DownlinkError::RecordSequence)
                    }
                    (record::OP_TEXT, None) => Some(DataKind::Text),
                    (record::OP_BINARY, None) => Some(DataKind::Binary),
                    _ => None,
                };
                // An empty record still matters when it starts or ends a message.
                let empty_matters = h.len == 0 && (h.opcode != record::OP_CONTINUATION || h.fin);
                if empty_matters && !out.fits_empty() {
                    return Ok(());
                }
                if let Some(k) = start_kind {
                    self.message = Some(k);
                    self.utf8.reset();
                }
                input.consume(record::HEADER_LEN);
                self.record = Some(RecordState { opcode: h.opcode, fin: h.fin, remaining: h.len });
                if empty_matters {
                    self.finish_piece(out, &[], input.position(), report)?;
                } else if h.len == 0 {
                    self.record = None;
                }
                continue;
            };
            let room = out.room();
            let data = input.readable();
            let take = data.len().min(room).min(rec.remaining as usize);
            if take == 0 {
                if rec.remaining == 0 {
                    // Pending empty record (no room before).
                    if !out.fits_empty() {
                        return Ok(());
                    }
                    self.finish_piece(out, &[], input.position(), report)?;
                    continue;
                }
                return if eof && data.is_empty() { Err(DownlinkError::Truncated) } else { Ok(()) };
            }
            let piece = data.get(..take).unwrap_or_default();
            self.finish_piece(out, piece, input.position(), report)?;
            input.consume(take);
        }
    }

    /// Emits `piece` of the current record (the front of the input, at `at` in its storage)
    /// as one frame and advances the record.
    fn finish_piece(
        &mut self,
        out: &mut Frames<'_>,
        piece: &[u8],
        at: usize,
        report: &mut PumpReport,
    ) -> Result<(), DownlinkError> {
        let (Some(mut rec), Some(kind)) = (self.record, self.message) else {
            return Err(DownlinkError::RecordSequence);
        };
        if kind == DataKind::Text {
            self.utf8.feed(piece).map_err(|_| DownlinkError::InvalidUtf8)?;
        }
        rec.remaining -= piece.len() as u32;
        let fin = rec.fin && rec.remaining == 0;
        if fin && kind == DataKind::Text && !self.utf8.is_complete() {
            return Err(DownlinkError::InvalidUtf8);
        }
        let opcode =
            if rec.opcode == record::OP_CONTINUATION { OpCode::Continuation } else { kind.into() };
        if !out.emit(fin, opcode, piece, at) {
            return Ok(());
        }
        report.frames += 1;
        // Later pieces of the same record continue the message.
        rec.opcode = record::OP_CONTINUATION;
        self.record = (rec.remaining > 0).then_some(rec);
        if fin {
            self.message = None;
        }
        Ok(())
    }
}

impl From<DataKind> for OpCode {
    fn from(k: DataKind) -> Self {
        match k {
            DataKind::Text => Self::Text,
            DataKind::Binary => Self::Binary,
        }
    }
}

/// Appends one whole unmasked frame (header + payload); `false` when it does not fit.
#[must_use]
pub fn emit(out: &mut Buf, fin: bool, opcode: OpCode, payload: &[u8]) -> bool {
    emit_rsv(out, fin, 0, opcode, payload)
}

/// [`emit`] with the RSV bits `rsv` (permessage-deflate's RSV1 on a compressed message).
#[must_use]
pub fn emit_rsv(out: &mut Buf, fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> bool {
    let hlen = FrameHeader::server_header_len(payload.len() as u64);
    if out.free() < hlen + payload.len() {
        return false;
    }
    let Some(dst) = out.room(hlen + payload.len()) else { return false };
    let Some(n) = FrameHeader::emit(fin, opcode, payload.len() as u64, dst) else { return false };
    if let Some(b0) = dst.first_mut() {
        *b0 |= (rsv & 0b111) << 4;
    }
    let Some(body) = dst.get_mut(n..n + payload.len()) else { return false };
    body.copy_from_slice(payload);
    out.commit(n + payload.len());
    true
}

/// Appends a close frame with `code` (and no reason); `false` when it does not fit.
#[must_use]
pub fn emit_close(out: &mut Buf, code: Option<u16>) -> bool {
    match code {
        Some(c) => emit(out, true, OpCode::Close, &c.to_be_bytes()),
        None => emit(out, true, OpCode::Close, &[]),
    }
}

#[cfg(test)]
mod tests;
