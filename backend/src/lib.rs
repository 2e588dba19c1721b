//! wsgate-kit: the backend kit of wsgate, everything on the far side of the gateway's UNIX
//! sockets. The gateway (the `wsgate` crate, `src/` at the top of the repository) accepts the
//! clients and relays them; this crate is what a websocket server needs to be one of its
//! backends, and the servers and libraries built on it:
//!
//! ```text
//!  gateway (wsgate)                          backend kit (this crate and backend/*)
//!  relay::codec/record, context ──relay──→ message::Decoder/Outbox ─→ conn / server ─→ a Service
//!  direct mode: 101 + hand-over ──fd──────→ direct::Receiver ─→ direct::Endpoint (ws::session)
//! ```
//!
//! The wire formats live once, in the gateway crate, and both sides use them: the WebSocket
//! frame codec, masking and UTF-8 validation (`wsgate::ws`), the relay modes and the `framed`
//! record (`wsgate::relay::{codec, record}`). This crate adds only what a backend does with
//! them. Around it in `backend/`: `capi/` (this library's C ABI, `libwsgate_backend.so`),
//! `shim/` (`libwsgate_ouistiti_ws.so`, the LD_PRELOAD shim for ouistiti backends),
//! `plugins/` (the JSON-RPC plugin ABI, `wsgate_rpc.h`, and the shipped plugins), and
//! `src/bin/` (the sample servers `websocket_echo`, `websocket_chat`, `websocket_jsonrpc`).
//!
//! # Modules
//!
//! * [`conn`]: the backend library: one listener for a handed-over client (direct mode) or a
//!   relayed connection (in a stated mode), one connection type with the same operations
//!   (whole messages with their type, close with a code, the context, non-blocking). Its C ABI
//!   is the `capi/` crate (`wsgate_backend.h`).
//! * [`start`]: the socket `<docroot>/<name>` created safely (a stale socket is replaced only
//!   when nobody listens on it; mode 0660, owned by the `-u` user), or a TCP socket
//!   (`--tcp`), or the connection on standard input taken (`--stdio`); SIGTERM/SIGINT routed to
//!   a signalfd, then the real privilege drop of [`wsgate::sys::user`]. The socket file is
//!   removed at exit.
//! * [`sock`]: the listener and client sockets of every relay mode (mio streams, TCP, and plain
//!   descriptors for `SOCK_SEQPACKET`).
//! * [`message`]: the relay modes seen from a backend: client bytes to whole messages and the
//!   connection context ([`message::Decoder`]), messages to bytes in a bounded queue
//!   ([`message::Outbox`]).
//! * [`context`]: the `NAME=value` lines of the connection context.
//! * [`direct`]: direct mode: taking the client's socket from the gateway, and a WebSocket
//!   server endpoint over it.
//! * [`server`]: the one event loop of the sample servers, with fixed limits: a
//!   [`server::Service`] sees messages and sends messages, whether its clients are relayed or
//!   (direct mode) handed over; an echoing service has its relayed clients' bytes echoed byte
//!   for byte instead ([`server::Relayed::Echoed`]).
//! * [`sample`]: the sample servers' common options and their way from the command line to
//!   the loop.
//! * [`sys`]: the kit's only `unsafe` code and OS-level helpers: listening UNIX and TCP sockets,
//!   the connection on standard input, receiving a passed descriptor, loading JSON-RPC
//!   plugins.
//!
//! What it does not own: chat or JSON-RPC.
#![deny(unsafe_code)]

pub mod conn;
pub mod context;
pub mod direct;
pub mod message;
pub mod sample;
pub mod server;
pub mod sock;
pub mod sys;

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::sys::listen::{self, SocketKind};
use wsgate::relay::codec::Mode;
use wsgate::sys::user;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// Sets the program name [`say`] puts before each line (once; later calls are ignored).
pub fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// Prints one line to stderr, prefixed with the program name. A failed write is ignored:
/// `eprintln!` would panic when stderr is a closed pipe, and a log line is not worth the
/// process.
pub fn say(args: core::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let name = PROGRAM.get().copied().unwrap_or("websocket");
    let _ = writeln!(std::io::stderr().lock(), "{name}: {args}");
}

/// A start-up or event-loop failure: the process exits with status 1 and this message.
#[derive(Debug)]
pub struct Fatal {
    what: &'static str,
    detail: String,
}

impl Fatal {
    /// A failure of `what` (an option or a system call), with details.
    pub fn new(what: &'static str, detail: impl core::fmt::Display) -> Self {
        Self { what, detail: detail.to_string() }
    }
}

impl core::fmt::Display for Fatal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// A byte count given as a plain integer or with a `K` (KiB) or `M` (MiB) suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl core::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{s:?} is not a positive byte count (an integer, optionally with K or M)");
        let n = wsgate::config::parse_bytes(s).map_err(|_| bad())?;
        usize::try_from(n).ok().filter(|&b| b > 0).map(Self).ok_or_else(bad)
    }
}

/// The socket type a relay mode needs.
#[must_use]
pub fn socket_kind(mode: Mode) -> SocketKind {
    match mode {
        Mode::SeqPacket => SocketKind::SeqPacket,
        Mode::Stream | Mode::Lines | Mode::Framed => SocketKind::Stream,
    }
}

/// What a started server serves: connections from a listening socket, or one connection.
#[derive(Debug)]
pub enum Serves {
    /// Connections accepted from this socket.
    Listener(sock::Listener),
    /// This connection only (`--stdio`): the server ends with it.
    Connection(sock::Sock),
}

/// A started server: what it serves, its signals, and its socket file (removed on drop).
#[derive(Debug)]
pub struct Started {
    /// The listening socket, or the one connection.
    pub serves: Serves,
    /// SIGTERM and SIGINT.
    pub signals: SignalFd,
    /// Where it is reached, for its "listening on" line: the socket's path, the TCP address
    /// (with the port the system picked for port 0), or standard input.
    pub place: String,
    /// Removes the socket file when dropped; `None` when no file was made (`--tcp`,
    /// `--stdio`).
    pub socket_file: Option<SocketFile>,
}

/// Makes what a sample server serves from its options and drops privileges, in this order:
/// the options are checked together ([`sample::Common::reach`]), the name checked and the
/// user looked up (nothing made yet); SIGTERM and SIGINT are blocked and routed to a signalfd
/// (so a signal cannot kill the process with a socket file left behind); then
///
/// * by default (`-R`, `-n`, `-m`, `-b`): the docroot is made (mode 0755) if missing and the
///   socket is bound, mode 0660, owned by the `-u` user;
/// * `--tcp`: a TCP socket listens on the address (`-b`), no file is made;
/// * `--stdio`: the connected socket on standard input is taken, no file is made;
///
/// then the process becomes the user for good.
///
/// # Errors
/// [`Fatal`] naming the step or the option; a failed privilege drop is fatal (never serve as
/// root by mistake).
pub fn start(setup: &sample::Common<'_>) -> Result<Started, Fatal> {
    let reach = setup.reach()?;
    if reach == sample::Reach::Unix {
        check_name(setup.name)?;
    }
    let account = match setup.user {
        Some(name) => Some(user::lookup(name).map_err(|e| Fatal::new("-u", e))?),
        None => None,
    };

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().map_err(|e| Fatal::new("sigprocmask", e))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Fatal::new("signalfd", e))?;

    let (serves, place, socket_file) = match reach {
        sample::Reach::Unix => {
            make_docroot(setup.root)?;
            let path = setup.root.join(setup.name);
            let owner = account.as_ref().map(|a| (a.uid, a.gid));
            let fd = listen::listen_unix(&path, socket_kind(setup.mode), setup.backlog, owner)
                .map_err(|e| Fatal::new("listen", e))?;
            let socket_file = SocketFile::new(&path)?;
            let place = path.display().to_string();
            (Serves::Listener(listener(fd, setup.mode)), place, Some(socket_file))
        }
        sample::Reach::Tcp(addr) => {
            let fd =
                sys::tcp::listen_tcp(addr, setup.backlog).map_err(|e| Fatal::new("--tcp", e))?;
            let tcp = std::net::TcpListener::from(fd);
            let place = tcp.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
            (
                Serves::Listener(sock::Listener::Tcp(mio::net::TcpListener::from_std(tcp))),
                place,
                None,
            )
        }
        sample::Reach::Stdio => {
            let sock = stdin_connection(setup.mode, setup.direct)?;
            (Serves::Connection(sock), "standard input".to_owned(), None)
        }
    };

    if let Some(account) = &account {
        user::drop_privileges(account).map_err(|e| Fatal::new("-u", e))?;
    }
    Ok(Started { serves, signals, place, socket_file })
}

/// The connected socket on standard input, as the connection of a server in `mode` (`direct`:
/// a gateway that hands the client's socket over it).
fn stdin_connection(mode: Mode, direct: bool) -> Result<sock::Sock, Fatal> {
    use sys::stdio::Inherited;
    let (fd, kind) = sys::stdio::take_stdin().map_err(|e| Fatal::new("--stdio", e))?;
    let packets = mode == Mode::SeqPacket;
    if direct && kind != Inherited::UnixStream {
        return Err(Fatal::new(
            "-d",
            "direct mode takes the client's socket over a UNIX stream connection; standard \
             input is not one",
        ));
    }
    match kind {
        Inherited::SeqPacket if packets => Ok(sock::Sock::Packet(fd)),
        Inherited::UnixStream if !packets => Ok(sock::Sock::Stream(
            mio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)),
        )),
        Inherited::Tcp if !packets => {
            let tcp = mio::net::TcpStream::from_std(std::net::TcpStream::from(fd));
            sock::Sock::tcp(tcp).map_err(|e| Fatal::new("--stdio", format!("TCP_NODELAY: {e}")))
        }
        Inherited::SeqPacket => Err(Fatal::new(
            "--stdio",
            format!("standard input is a SOCK_SEQPACKET socket, which -m {mode} does not read; use -m seqpacket"),
        )),
        Inherited::UnixStream | Inherited::Tcp => Err(Fatal::new(
            "--stdio",
            "-m seqpacket needs a SOCK_SEQPACKET socket on standard input; it is a byte stream",
        )),
    }
}

pub(crate) fn listener(fd: OwnedFd, mode: Mode) -> sock::Listener {
    match socket_kind(mode) {
        SocketKind::Stream => sock::Listener::Stream(mio::net::UnixListener::from_std(
            std::os::unix::net::UnixListener::from(fd),
        )),
        // std's listener only wraps the fd; its accept works on any socket type and is the one
        // safe way to turn an accepted fd into an `OwnedFd`.
        SocketKind::SeqPacket => sock::Listener::Packet(std::os::unix::net::UnixListener::from(fd)),
    }
}

/// The socket name is one path component: the gateway maps the URL path to `<docroot>/<name>`
/// and a name reaching elsewhere would put the socket outside the docroot.
///
/// # Errors
/// [`Fatal`] for `-n` when the name is empty, `.`, `..`, or has a `/` or NUL.
pub fn check_name(name: &str) -> Result<(), Fatal> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Fatal::new("-n", format!("{name:?} is not a single file name")));
    }
    Ok(())
}

fn make_docroot(root: &Path) -> Result<(), Fatal> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Fatal::new("-R", format!("{} is not a directory", root.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root)
            .map_err(|e| Fatal::new("-R", format!("{}: {e}", root.display()))),
        Err(e) => Err(Fatal::new("-R", format!("{}: {e}", root.display()))),
    }
}

/// The socket file we created, removed when dropped, on every way out of `run`.
///
/// Only the very file we bound is removed (same device and inode), never one that somebody put
/// at the path later.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    pub(crate) fn new(path: &Path) -> Result<Self, Fatal> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| Fatal::new("stat", format!("{}: {e}", path.display())))?;
        Ok(Self { path: path.to_owned(), id: (meta.dev(), meta.ino()) })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    // Typical after -u: the docroot belongs to root. The next start finds
                    // the dead socket and replaces it.
                    say(format_args!("cannot remove {}: {e}", self.path.display()));
                }
            }
            _ => {}
        }
    }
}

/// Drains the signalfd; the name of the last stop signal read, if any.
///
/// # Errors
/// [`Fatal`] when the signalfd cannot be read.
pub fn take_signal(signals: &SignalFd) -> Result<Option<&'static str>, Fatal> {
    let mut got = None;
    loop {
        match signals.read_signal() {
            Ok(Some(info)) => {
                got = Some(match i32::try_from(info.ssi_signo) {
                    Ok(n) if n == Signal::SIGINT as i32 => "SIGINT",
                    _ => "SIGTERM",
                });
            }
            Ok(None) | Err(Errno::EAGAIN) => return Ok(got),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Fatal::new("signalfd", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn byte_sizes_parse() {
        assert_eq!("1".parse(), Ok(ByteSize(1)));
        assert_eq!("1000".parse(), Ok(ByteSize(1000)));
        assert_eq!("64K".parse(), Ok(ByteSize(64 << 10)));
        assert_eq!("32M".parse(), Ok(ByteSize(32 << 20)));
        assert_eq!("2m".parse(), Ok(ByteSize(2 << 20)));
        for bad in ["", "M", "0", "0K", "-1", "1.5M", "1 M", "99999999999999999999M"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_single_components() {
        assert!(check_name("echo").is_ok());
        for bad in ["", ".", "..", "a/b", "/abs", "nul\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
