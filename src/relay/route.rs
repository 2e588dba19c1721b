//! Path → backend: finds `<docroot>/<name>` and connects to it, without leaving the docroot.
//!
//! The decoded, checked path (see [`super::path`]) is walked one segment at a time from a
//! descriptor of the docroot opened at start-up, with `O_NOFOLLOW`: a symlink anywhere on the
//! way is refused, so nothing outside the docroot can be reached through one, and a docroot
//! renamed or replaced after start-up cannot redirect us. The last segment must be a socket
//! (checked with `fstatat(AT_SYMLINK_NOFOLLOW)`). `connect()` takes a path, not a descriptor, so
//! the gateway `fchdir`s into the directory that holds the socket, connects to the bare name,
//! and `fchdir`s back (the loop is single-threaded; this also sidesteps the 108-byte `sun_path`
//! limit for deep docroots, as ouistiti does).
//!
//! A link (see [`super::link`]) names its socket by a path of the configuration instead
//! ([`connect_unix`]), or a TCP service ([`connect_tcp`], whose connect completes later:
//! [`connect_result`]).
//!
//! One backend connection per client, made before the 101 is sent. A `SOCK_SEQPACKET` backend
//! is detected by the kernel's `EPROTOTYPE` answer to a stream connect, and retried as one.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{fstatat, Mode as FileMode, SFlag};
use nix::unistd::fchdir;

/// Why no backend could be reached; each maps to an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No such file, or a directory on the way is missing: 404.
    NotFound,
    /// The name exists but is not a socket: 404.
    NotSocket,
    /// A symlink on the way: 404 (refused, so that nothing outside the docroot is reachable).
    Symlink,
    /// Nobody listens on the socket: 502.
    Refused,
    /// The backend's listen queue is full: 503.
    Busy,
    /// A TCP connect did not complete in time: 504.
    TimedOut,
    /// A serial line another connection holds: 503.
    InUse,
    /// An exec link's program would pass a process limit: 503.
    ProcessLimit,
    /// Any other error: 502.
    Other(Errno),
}

impl RouteError {
    /// The HTTP status that answers it.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound | Self::NotSocket | Self::Symlink => 404,
            Self::Busy | Self::InUse | Self::ProcessLimit => 503,
            Self::TimedOut => 504,
            Self::Refused | Self::Other(_) => 502,
        }
    }
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such backend"),
            Self::NotSocket => f.write_str("not a socket"),
            Self::Symlink => f.write_str("symlink refused"),
            Self::Refused => f.write_str("backend refused the connection"),
            Self::Busy => f.write_str("backend busy (listen queue full)"),
            Self::TimedOut => f.write_str("backend connect timed out"),
            Self::ProcessLimit => f.write_str("process limit reached"),
            Self::InUse => f.write_str("serial line in use"),
            Self::Other(e) => write!(f, "backend connect failed: {}", crate::sys::ErrnoText(*e)),
        }
    }
}

/// A connected backend socket (non-blocking, close-on-exec): a UNIX socket, or a TCP one.
#[derive(Debug)]
pub struct Backend {
    /// The socket.
    pub fd: OwnedFd,
    /// It is a `SOCK_SEQPACKET` socket.
    pub seqpacket: bool,
    /// A TCP connect still in progress (`EINPROGRESS`): writable means it ended, `SO_ERROR`
    /// says how.
    pub connecting: bool,
}

/// The docroot, opened once.
#[derive(Debug)]
pub struct Docroot {
    dir: OwnedFd,
    home: OwnedFd,
}

impl Docroot {
    /// Opens `path` (a directory) and remembers the current directory to come back to.
    ///
    /// # Errors
    /// The `open` error.
    pub fn open(path: &Path) -> Result<Self, Errno> {
        let dir =
            open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, FileMode::empty())?;
        let home =
            open(".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, FileMode::empty())?;
        Ok(Self { dir, home })
    }

    /// Connects to the socket named `name` (a checked path without its leading '/').
    ///
    /// # Errors
    /// [`RouteError`].
    pub fn connect(&self, name: &str) -> Result<Backend, RouteError> {
        let mut segments = name.split('/');
        let Some(mut last) = segments.next() else { return Err(RouteError::NotFound) };
        let mut opened: Option<OwnedFd> = None;
        for next in segments {
            let at = opened.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
            let fd = openat(
                at,
                last,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                FileMode::empty(),
            )
            .map_err(walk_error)?;
            opened = Some(fd);
            last = next;
        }
        let at = opened.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
        let st = fstatat(at, last, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(walk_error)?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFLNK {
            return Err(RouteError::Symlink);
        }
        if kind != SFlag::S_IFSOCK {
            return Err(RouteError::NotSocket);
        }
        fchdir(at).map_err(RouteError::Other)?;
        let result = connect_here(last);
        // Coming back cannot reasonably fail (the descriptor is ours); if it did, the next
        // connect still works because every path we use is relative to a descriptor.
        let _ = fchdir(self.home.as_fd());
        result
    }
}

/// Why no page could be served for a name; each maps to an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileError {
    /// No such file, or no such directory on the way, or a file named as a directory (with a
    /// trailing `/`), or a directory without its default page: 404.
    NotFound,
    /// A symlink on the way: 404 (refused, so that nothing outside the docroot is reachable).
    Symlink,
    /// The name exists but is not a regular file (a device, a socket, a directory where the
    /// default page is a directory too): 403.
    NotRegular,
    /// Any other error (permissions, I/O): 403 for `EACCES`, 404 otherwise.
    Other(Errno),
}

impl FileError {
    /// The HTTP status that answers it.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound | Self::Symlink => 404,
            Self::NotRegular | Self::Other(Errno::EACCES) => 403,
            Self::Other(_) => 404,
        }
    }
}

impl core::fmt::Display for FileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such file"),
            Self::Symlink => f.write_str("symlink refused"),
            Self::NotRegular => f.write_str("not a regular file"),
            Self::Other(e) => write!(f, "cannot open the file: {}", crate::sys::ErrnoText(*e)),
        }
    }
}

/// A regular file opened under a docroot, for static pages.
#[derive(Debug)]
pub struct StaticFile {
    /// The open file.
    pub file: std::fs::File,
    /// Its size.
    pub len: u64,
    /// The name was a directory and this is its default page (the MIME type follows the page).
    pub default_page: bool,
}

impl Docroot {
    /// Opens the regular file `name` (a path checked by [`super::path::decode_page`], without
    /// its leading '/'; empty for the root), or `default_page` inside it when it is a
    /// directory. A `name` ending with '/' must be a directory. Same walk as
    /// [`Docroot::connect`]: no symlinks anywhere, nothing outside the docroot.
    ///
    /// # Errors
    /// [`FileError`].
    pub fn open_file(&self, name: &str, default_page: &str) -> Result<StaticFile, FileError> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let (name, dir_only) = match name.strip_suffix('/') {
            Some(dir) => (dir, true),
            None => (name, false),
        };
        let mut current: Option<OwnedFd> = None;
        for segment in name.split('/').filter(|s| !s.is_empty()) {
            let at = current.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
            current = Some(openat(at, segment, flags, FileMode::empty()).map_err(file_error)?);
        }
        let fd = match current {
            Some(fd) => fd,
            None => openat(self.dir.as_fd(), ".", flags, FileMode::empty()).map_err(file_error)?,
        };
        let mut file = std::fs::File::from(fd);
        let mut meta = file.metadata().map_err(|_| FileError::NotFound)?;
        let default_page_used = meta.is_dir();
        if default_page_used {
            if default_page.is_empty() || default_page.contains('/') {
                return Err(FileError::NotFound);
            }
            let page =
                openat(file.as_fd(), default_page, flags, FileMode::empty()).map_err(file_error)?;
            file = std::fs::File::from(page);
            meta = file.metadata().map_err(|_| FileError::NotFound)?;
        } else if dir_only {
            // "x/" names a directory; a file called x is not one (POSIX gives ENOTDIR).
            return Err(FileError::NotFound);
        }
        if !meta.is_file() {
            return Err(FileError::NotRegular);
        }
        Ok(StaticFile { file, len: meta.len(), default_page: default_page_used })
    }
}

fn file_error(e: Errno) -> FileError {
    match e {
        Errno::ENOENT | Errno::ENOTDIR => FileError::NotFound,
        Errno::ELOOP => FileError::Symlink,
        other => FileError::Other(other),
    }
}

fn walk_error(e: Errno) -> RouteError {
    match e {
        Errno::ENOENT | Errno::ENOTDIR => RouteError::NotFound,
        Errno::ELOOP => RouteError::Symlink,
        other => RouteError::Other(other),
    }
}

/// Connects to the UNIX socket at `path` (a link's target: a path named by the
/// configuration, not by a request).
///
/// # Errors
/// [`RouteError`].
pub fn connect_unix(path: &Path) -> Result<Backend, RouteError> {
    connect_here(path)
}

/// Starts a TCP connect to the first of `addrs` that takes it, with `TCP_NODELAY` (messages go
/// out as they come) and keepalive (a peer gone without a word is found). It is in progress on
/// return ([`Backend::connecting`]): the socket says writable when it is over, either way.
///
/// # Errors
/// [`RouteError::Refused`] when every address refused, otherwise the last error.
pub fn connect_tcp(addrs: &[SocketAddr]) -> Result<Backend, RouteError> {
    use nix::sys::socket::{setsockopt, sockopt};
    let mut last = RouteError::Other(Errno::EADDRNOTAVAIL);
    for addr in addrs {
        // mio's connect: a non-blocking, close-on-exec socket whose connect is under way.
        match mio::net::TcpStream::connect(*addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let fd = OwnedFd::from(stream);
                let _ = setsockopt(&fd, sockopt::KeepAlive, &true);
                return Ok(Backend { fd, seqpacket: false, connecting: true });
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = RouteError::Refused
            }
            Err(e) => last = RouteError::Other(Errno::from_raw(e.raw_os_error().unwrap_or(0))),
        }
    }
    Err(last)
}

/// The outcome of a connect that was in progress, once its socket said writable.
///
/// # Errors
/// [`RouteError::Refused`], or the socket's error.
pub fn connect_result(fd: &OwnedFd) -> Result<(), RouteError> {
    use nix::sys::socket::{getsockopt, sockopt};
    match getsockopt(fd, sockopt::SocketError).map_err(RouteError::Other)? {
        0 => Ok(()),
        e if e == Errno::ECONNREFUSED as i32 => Err(RouteError::Refused),
        e if e == Errno::ETIMEDOUT as i32 => Err(RouteError::TimedOut),
        e => Err(RouteError::Other(Errno::from_raw(e))),
    }
}

fn connect_here<P: ?Sized + nix::NixPath>(name: &P) -> Result<Backend, RouteError> {
    let addr = UnixAddr::new(name).map_err(RouteError::Other)?;
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    for (ty, seqpacket) in [(SockType::Stream, false), (SockType::SeqPacket, true)] {
        let fd = socket(AddressFamily::Unix, ty, flags, None).map_err(RouteError::Other)?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => return Ok(Backend { fd, seqpacket, connecting: false }),
            // The socket exists but is of the other type.
            Err(Errno::EPROTOTYPE) if !seqpacket => {}
            Err(Errno::ECONNREFUSED) => return Err(RouteError::Refused),
            Err(Errno::EAGAIN) => return Err(RouteError::Busy),
            Err(Errno::ENOENT) => return Err(RouteError::NotFound),
            Err(e) => return Err(RouteError::Other(e)),
        }
    }
    Err(RouteError::Other(Errno::EPROTOTYPE))
}
