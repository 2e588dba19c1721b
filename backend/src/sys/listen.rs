//! Listening UNIX sockets for websocket servers: creating one at a path without clobbering
//! anything but a dead socket, with the permissions the gateway needs to connect.
//!
//! A socket file outlives the process that bound it (a crash, a `kill -9`), so a restart finds
//! the path taken. Unlinking blindly would steal the path from a second instance that is still
//! serving, or delete an unrelated file after a configuration mistake; so the path is probed
//! first and only a socket nobody listens on is replaced.
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::unistd::{Gid, Uid};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permissions of the socket file: owner and group may connect (connecting needs write
/// permission), others not.
pub const SOCKET_MODE: u32 = 0o660;

/// The type of the listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_STREAM`: a byte stream (the `stream`, `lines` and `framed` relay modes).
    Stream,
    /// `SOCK_SEQPACKET`: connected, reliable, message boundaries kept (the `seqpacket` mode).
    SeqPacket,
}

impl SocketKind {
    fn sock_type(self) -> SockType {
        match self {
            Self::Stream => SockType::Stream,
            Self::SeqPacket => SockType::SeqPacket,
        }
    }
}

/// Why a listening socket could not be created.
#[derive(Debug)]
pub enum ListenError {
    /// A live socket is at the path: another instance serves it.
    AddrInUse(PathBuf),
    /// Something other than a socket is at the path; it was left alone.
    NotASocket(PathBuf),
    /// A system call failed.
    Os {
        /// What was being done (`bind`, `chmod`, ...).
        op: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl ListenError {
    fn os(op: &'static str, path: &Path, source: impl Into<std::io::Error>) -> Self {
        Self::Os { op, path: path.to_owned(), source: source.into() }
    }
}

impl core::fmt::Display for ListenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::AddrInUse(p) => {
                write!(f, "{}: address in use (another instance is listening)", p.display())
            }
            Self::NotASocket(p) => write!(f, "{}: exists and is not a socket", p.display()),
            Self::Os { op, path, source } => write!(f, "{}: {op}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os { source, .. } => Some(source),
            Self::AddrInUse(_) | Self::NotASocket(_) => None,
        }
    }
}

/// Creates a non-blocking, close-on-exec UNIX socket of `kind` listening at `path`.
///
/// A socket file already at `path` is unlinked only when nobody listens on it (`connect`
/// answers `ECONNREFUSED`). The new file gets mode [`SOCKET_MODE`] and, when `owner` is given,
/// that owner and group (the caller must be allowed to `chown`); only then does the socket
/// start listening, so nobody connects through looser permissions. `backlog` is clamped to
/// `0..=SOMAXCONN`.
///
/// Probe and unlink are not atomic: two instances started in the same instant may both find
/// the path dead. Start-up is serialized by whoever launches backends, so this is accepted.
///
/// # Errors
/// [`ListenError::AddrInUse`] when a live socket (of any type) is at `path`,
/// [`ListenError::NotASocket`] when a file that is not a socket is there (including a symbolic
/// link, which is never followed), [`ListenError::Os`] when a system call fails (path too long
/// for `sockaddr_un`, no permission, ...).
pub fn listen_unix(
    path: &Path,
    kind: SocketKind,
    backlog: i32,
    owner: Option<(Uid, Gid)>,
) -> Result<OwnedFd, ListenError> {
    let addr = UnixAddr::new(path).map_err(|e| ListenError::os("socket address", path, e))?;
    clear_stale(path, kind, &addr)?;

    let fd = socket::socket(
        AddressFamily::Unix,
        kind.sock_type(),
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ListenError::os("socket", path, e))?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(|e| match e {
        // Lost a race with another instance between the probe and here.
        Errno::EADDRINUSE => ListenError::AddrInUse(path.to_owned()),
        e => ListenError::os("bind", path, e),
    })?;

    // From here on the file is ours: remove it again if the set-up cannot be finished, so a
    // failed start leaves nothing behind.
    let finish = || -> Result<(), ListenError> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(|e| ListenError::os("chmod", path, e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(|e| ListenError::os("chown", path, e))?;
        }
        let max = i32::from(Backlog::MAXCONN);
        let backlog =
            Backlog::new(backlog.clamp(0, max)).map_err(|e| ListenError::os("listen", path, e))?;
        socket::listen(&fd, backlog).map_err(|e| ListenError::os("listen", path, e))
    };
    if let Err(e) = finish() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(fd)
}

/// Makes `path` free for a new socket: nothing there, or a dead socket that is then unlinked.
fn clear_stale(path: &Path, kind: SocketKind, addr: &UnixAddr) -> Result<(), ListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ListenError::os("stat", path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    // Probe with the same socket type, non-blocking so that a live listener with a full
    // backlog answers EAGAIN at once instead of blocking start-up.
    let probe = socket::socket(
        AddressFamily::Unix,
        kind.sock_type(),
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ListenError::os("socket", path, e))?;
    match socket::connect(probe.as_raw_fd(), addr) {
        // Nobody has this socket bound any more: the file is a leftover.
        Err(Errno::ECONNREFUSED) => {}
        // Connected, backlog full, or bound by a socket of another type: somebody is alive.
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS | Errno::EPROTOTYPE) => {
            return Err(ListenError::AddrInUse(path.to_owned()));
        }
        Err(e) => return Err(ListenError::os("connect (probe)", path, e)),
    }
    drop(probe);
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        // Somebody else cleaned it up meanwhile: just as good.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ListenError::os("unlink stale socket", path, e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    use nix::sys::socket::sockopt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("wsgate-listen-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn fresh_socket_listens_with_mode_0660_nonblocking_cloexec() {
        let dir = TempDir::new();
        let path = dir.0.join("echo");
        let fd = listen_unix(&path, SocketKind::Stream, 8, None).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
        assert_eq!(socket::getsockopt(&fd, sockopt::SockType).unwrap(), SockType::Stream);
        assert!(socket::getsockopt(&fd, sockopt::AcceptConn).unwrap());
        let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).unwrap());
        assert!(fl.contains(OFlag::O_NONBLOCK));
        let fdfl = FdFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFD).unwrap());
        assert!(fdfl.contains(FdFlag::FD_CLOEXEC));
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TempDir::new();
        let path = dir.0.join("stale");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        let _fd = listen_unix(&path, SocketKind::Stream, 8, None).unwrap();
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn live_socket_is_refused() {
        let dir = TempDir::new();
        let path = dir.0.join("live");
        let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = listen_unix(&path, SocketKind::Stream, 8, None).unwrap_err();
        assert!(matches!(err, ListenError::AddrInUse(_)), "{err}");
        // A live socket of another type is just as taken.
        let err = listen_unix(&path, SocketKind::SeqPacket, 8, None).unwrap_err();
        assert!(matches!(err, ListenError::AddrInUse(_)), "{err}");
        // And it still works.
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn our_own_live_socket_is_refused_twice() {
        let dir = TempDir::new();
        let path = dir.0.join("twice");
        let _first = listen_unix(&path, SocketKind::SeqPacket, 8, None).unwrap();
        let err = listen_unix(&path, SocketKind::SeqPacket, 8, None).unwrap_err();
        assert!(matches!(err, ListenError::AddrInUse(_)), "{err}");
    }

    #[test]
    fn regular_file_and_symlink_are_left_alone() {
        let dir = TempDir::new();
        let path = dir.0.join("file");
        std::fs::write(&path, b"keep me").unwrap();
        let err = listen_unix(&path, SocketKind::Stream, 8, None).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket(_)), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");

        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = listen_unix(&link, SocketKind::Stream, 8, None).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket(_)), "{err}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn seqpacket_kind_gives_a_seqpacket_socket() {
        let dir = TempDir::new();
        let path = dir.0.join("seq");
        let fd = listen_unix(&path, SocketKind::SeqPacket, 8, None).unwrap();
        assert_eq!(socket::getsockopt(&fd, sockopt::SockType).unwrap(), SockType::SeqPacket);
    }

    #[test]
    fn owner_is_applied() {
        let dir = TempDir::new();
        let path = dir.0.join("owned");
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        let _fd = listen_unix(&path, SocketKind::Stream, 8, Some((uid, gid))).unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid.as_raw(), gid.as_raw()));
    }

    #[test]
    fn too_long_a_path_is_an_error_not_a_panic() {
        let path = std::env::temp_dir().join("x".repeat(200));
        let err = listen_unix(&path, SocketKind::Stream, 8, None).unwrap_err();
        assert!(matches!(err, ListenError::Os { op: "socket address", .. }), "{err}");
    }
}
