//! The control socket (`control = "PATH";`, `--control PATH`): a UNIX stream socket, mode
//! 0600 and owned by the account the gateway runs as, that answers one request per
//! connection, a line:
//!
//! * `status` or `status json`: the report of [`super::status`];
//! * `drop ID CODE`: closes connection `ID` (as `status` names it) with close code `CODE`.
//!
//! An answer that is an error starts with `error: `. At most [`MAX_CLIENTS`] requests are
//! served at once (more are answered `error: busy` and closed), each through its own
//! [`BUF`]-byte buffer made at start-up. Reports are filled one buffer per turn of the loop,
//! for one client at a time in turn, so that however long they are and however many ask, a
//! turn of relaying waits for one buffer's worth of rendering at most (see [`super::status`]).
//! A client that sends no complete request in [`REQUEST_TIME`] is closed.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry};

use super::token::{control_client as client_token, CONTROL as LISTENER};

use super::status::Cursor;

/// Requests served at once.
pub const MAX_CLIENTS: usize = 4;
/// Each request's output buffer.
pub const BUF: usize = 4096;
/// The longest request line.
const LINE: usize = 64;
/// How long a client may take to send its request, and to read the answer.
pub const REQUEST_TIME: Duration = Duration::from_secs(10);

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Its request line is not complete yet.
    Reading,
    /// A report, to be written from the cursor on.
    Status {
        /// JSON rather than text.
        json: bool,
        /// Where the next fill starts.
        cursor: Cursor,
    },
    /// The answer is all in the buffer: write it, then close.
    Answer,
}

/// A request being served.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    line: heapless::Vec<u8, LINE>,
    /// The answer's bytes not written yet (from `sent` on).
    pub out: Vec<u8>,
    sent: usize,
    /// What it asked for.
    pub job: Job,
    /// Its socket said `WouldBlock` on the last write.
    blocked: bool,
    deadline: Instant,
}

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `status [json]`.
    Status(bool),
    /// `drop ID CODE`: the ID as written, and the code.
    Drop(&'a str, u16),
}

/// Reads a request line.
///
/// # Errors
/// What to answer a request that is not one.
pub fn parse(line: &str) -> Result<Command<'_>, &'static str> {
    let mut words = line.split_ascii_whitespace();
    let command = match (words.next(), words.next(), words.next()) {
        (Some("status"), None, None) => Command::Status(false),
        (Some("status"), Some("json"), None) => Command::Status(true),
        (Some("drop"), Some(id), code) => {
            let code = match code {
                None => crate::ws::frame::close_code::NORMAL,
                Some(c) => c.parse().map_err(|_| "the close code is not a number")?,
            };
            if !crate::ws::frame::is_valid_close_code(code) {
                return Err("a close code is 1000-1003, 1007-1014 or 3000-4999");
            }
            Command::Drop(id, code)
        }
        _ => return Err("unknown request (status, status json, drop ID [CODE])"),
    };
    if words.next().is_some() {
        return Err("unknown request (status, status json, drop ID [CODE])");
    }
    Ok(command)
}

/// The socket and its clients.
#[derive(Debug)]
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Option<Client>>,
    /// Output buffers not in use.
    spare: Vec<Vec<u8>>,
    /// The client whose turn to fill is next.
    next: usize,
}

impl Control {
    /// Binds `path` (replacing a stale socket left by a gateway that is gone), mode 0600,
    /// owned by `owner` (uid, gid) when given, and registers it.
    ///
    /// # Errors
    /// Why it cannot be had: another gateway answers there, the path is not a socket, or the
    /// system call's error.
    pub fn bind(
        path: &Path,
        owner: Option<(u32, u32)>,
        registry: &Registry,
    ) -> Result<Self, String> {
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(m) => {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_socket() {
                    return Err(format!("control socket {shown}: exists and is not a socket"));
                }
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(format!("control socket {shown}: a running gateway answers there"));
                }
                std::fs::remove_file(path)
                    .map_err(|e| format!("control socket {shown}: stale, cannot remove: {e}"))?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("control socket {shown}: {e}")),
        }
        // Made 0600 from the start: no moment in which another user could connect.
        let mask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(mask);
        let mut listener = bound.map_err(|e| format!("control socket {shown}: {e}"))?;
        if let Some((uid, gid)) = owner {
            let (uid, gid) = (nix::unistd::Uid::from_raw(uid), nix::unistd::Gid::from_raw(gid));
            if let Err(e) = nix::unistd::chown(path, Some(uid), Some(gid)) {
                let _ = std::fs::remove_file(path);
                return Err(format!("control socket {shown}: chown: {}", crate::sys::ErrnoText(e)));
            }
        }
        registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| format!("control socket {shown}: {e}"))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            spare: (0..MAX_CLIENTS).map(|_| Vec::with_capacity(BUF)).collect(),
            next: 0,
        })
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts waiting clients; past [`MAX_CLIENTS`], answers `error: busy` and closes.
    pub fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let mut sock = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let free = self.clients.iter().position(Option::is_none);
            let (Some(i), Some(out)) = (free, self.spare.pop()) else {
                // Its request is read first where it has come: a socket closed with unread
                // bytes resets the peer's, which would then miss the answer.
                let _ = sock.read(&mut [0u8; LINE]);
                let _ = sock.write(b"error: busy\n");
                continue;
            };
            if registry
                .register(&mut sock, client_token(i), Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                self.spare.push(out);
                continue;
            }
            if let Some(slot) = self.clients.get_mut(i) {
                *slot = Some(Client {
                    sock,
                    line: heapless::Vec::new(),
                    out,
                    sent: 0,
                    job: Job::Reading,
                    blocked: false,
                    deadline: now + REQUEST_TIME,
                });
            }
        }
    }

    /// Client `i`, if connected.
    pub fn client(&mut self, i: usize) -> Option<&mut Client> {
        self.clients.get_mut(i).and_then(Option::as_mut)
    }

    /// Clients with work to do now: a report with more to fill while its socket takes it.
    pub fn busy(&self) -> bool {
        (0..MAX_CLIENTS).any(|i| self.has_work(i))
    }

    /// The next client, in turn, with a report to go on with.
    pub fn next_with_work(&mut self) -> Option<usize> {
        let i =
            (0..MAX_CLIENTS).map(|k| (self.next + k) % MAX_CLIENTS).find(|&i| self.has_work(i))?;
        self.next = i + 1;
        Some(i)
    }

    /// Client `i` has a report to go on with, and its socket takes it.
    #[must_use]
    pub fn has_work(&self, i: usize) -> bool {
        self.clients
            .get(i)
            .and_then(Option::as_ref)
            .is_some_and(|c| matches!(c.job, Job::Status { .. }) && !c.blocked)
    }

    /// The earliest deadline of a client.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().flatten().map(|c| c.deadline).min()
    }

    /// Closes client `i` and keeps its buffer.
    pub fn close(&mut self, i: usize, registry: &Registry) {
        if let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) {
            let _ = registry.deregister(&mut c.sock);
            c.out.clear();
            self.spare.push(c.out);
        }
    }

    /// Closes the clients whose deadline has passed.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        for i in 0..MAX_CLIENTS {
            if self.client(i).is_some_and(|c| c.deadline <= now) {
                self.close(i, registry);
            }
        }
    }

    /// Removes the socket file (at exit; a gateway without the right to leaves it, and the
    /// next start replaces it).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Client {
    /// Reads the request line; `Some` once it is complete (or cannot be: an error to answer).
    pub fn read_line(&mut self) -> Option<Result<&str, &'static str>> {
        let mut chunk = [0u8; LINE];
        loop {
            if let Some(end) = self.line.iter().position(|&b| b == b'\n') {
                let line = self.line.get(..end).unwrap_or_default();
                return Some(core::str::from_utf8(line).map_err(|_| "the request is not text"));
            }
            let room = LINE - self.line.len();
            let Some(dst) = chunk.get_mut(..room) else { return Some(Err("request too long")) };
            match self.sock.read(dst) {
                Ok(0) => {
                    // A request without its newline, then EOF: taken as it is.
                    let line = self.line.as_slice();
                    if line.is_empty() {
                        return Some(Err("no request"));
                    }
                    return Some(core::str::from_utf8(line).map_err(|_| "the request is not text"));
                }
                Ok(n) => {
                    if self.line.extend_from_slice(chunk.get(..n).unwrap_or_default()).is_err()
                        || (self.line.is_full() && !self.line.contains(&b'\n'))
                    {
                        return Some(Err("request too long"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Replaces what is buffered with `text` and makes it the whole answer.
    pub fn answer(&mut self, text: core::fmt::Arguments<'_>) {
        self.out.clear();
        self.sent = 0;
        let mut w = super::status::Fill::new(&mut self.out);
        let _ = core::fmt::write(&mut w, text);
        self.job = Job::Answer;
    }

    /// Writes what is buffered; `true` once it is all out.
    ///
    /// # Errors
    /// The socket's error: the client is gone.
    pub fn flush(&mut self) -> std::io::Result<bool> {
        while self.sent < self.out.len() {
            let rest = self.out.get(self.sent..).unwrap_or_default();
            match self.sock.write(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Its socket can take more.
    pub fn on_writable(&mut self) {
        self.blocked = false;
    }

    /// Its socket said `WouldBlock`.
    #[must_use]
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Pushes its deadline on: it is reading the answer.
    pub fn progress(&mut self, now: Instant) {
        self.deadline = now + REQUEST_TIME;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse("status"), Ok(Command::Status(false)));
        assert_eq!(parse(" status  json "), Ok(Command::Status(true)));
        assert_eq!(parse("drop 3:1"), Ok(Command::Drop("3:1", 1000)));
        assert_eq!(parse("drop 3:1 4000"), Ok(Command::Drop("3:1", 4000)));
        assert!(parse("drop 3:1 1005").is_err());
        assert!(parse("drop 3:1 99999").is_err());
        assert!(parse("drop").is_err());
        assert!(parse("status xml").is_err());
        assert!(parse("status json more").is_err());
        assert!(parse("").is_err());
    }
}
