//! Links: endpoints whose backend is named in the configuration rather than found as a socket
//! in the docroot (ouistiti's `links`). A link maps a path prefix to a target:
//!
//! * `unix`: a UNIX socket anywhere in the file system (stream or seqpacket, as in the docroot);
//! * `tcp`: a host and port, IPv4 or IPv6, connected without blocking (see
//!   [`crate::event_loop::conn`]'s `Dialing`): `TCP_NODELAY` and keepalive on;
//! * `tty`: a serial line, one connection at a time (see [`crate::sys::tty`]);
//! * `fifo`: a pair of named pipes, one written and one read, one connection at a time (see
//!   [`crate::sys::fifo`]);
//! * `exec`: a program started for each connection, its stdin and stdout the connection's
//!   backend, the request in CGI variables (see [`crate::sys::child`]).
//!
//! Matching: a link's `origin` matches a request path that is the origin itself or continues
//! it with '/' (`origin = "mqtt"` takes `/mqtt` and `/mqtt/anything`, not `/mqttx`), and of
//! several the longest origin wins, whatever their order. ouistiti compared the first
//! `strlen(origin)` bytes and took the last one configured; a prefix that swallows unrelated
//! names is a routing surprise, so wsgate matches whole segments. A link wins over the docroot:
//! it is the configuration naming this endpoint's backend, where the docroot is what every
//! other name falls back to.
//!
//! Targets are fixed by the configuration, never taken from the request: the part of the path
//! after the origin does not reach the target (an exec program sees it in `PATH_INFO`, as
//! data, never as the program to run). A TCP host name is resolved when the
//! configuration is loaded (at start, and on SIGHUP, where the loop waits for it as for the
//! files), never per connection, where a lookup would stall every other one.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::sys::tty::Serial;

/// Where a link's backend is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A UNIX socket.
    Unix(PathBuf),
    /// A TCP service: the host and port as configured, and the addresses the host resolved
    /// to, tried in order.
    Tcp {
        /// A name or an address (an IPv6 one without brackets).
        host: String,
        /// The port.
        port: u16,
        /// Resolved at load.
        addrs: Vec<SocketAddr>,
    },
    /// A serial line, opened for one connection at a time (see [`crate::sys::tty`]).
    Tty {
        /// The device.
        path: PathBuf,
        /// Speed and frame.
        serial: Serial,
    },
    /// A FIFO pair, held by one connection at a time (see [`crate::sys::fifo`]).
    Fifo {
        /// The FIFO the gateway writes: the backend's input.
        to_backend: PathBuf,
        /// The FIFO the gateway reads: the backend's output.
        from_backend: PathBuf,
    },
    /// A program per connection.
    Exec(Exec),
}

/// A program started for each connection of an exec link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// An absolute path, run as is: no shell, no `PATH` lookup.
    pub program: PathBuf,
    /// Its arguments after `argv[0]`.
    pub args: Vec<String>,
    /// The directory it starts in: the configured one, else the program's own (as a CGI
    /// server does), so that it does not depend on where wsgate was started from.
    pub dir: PathBuf,
    /// At most this many of its processes at a time; the service's `exec_limit` applies too.
    pub limit: Option<u32>,
}

impl core::fmt::Display for Exec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "exec:{}", self.program.display())?;
        for a in &self.args {
            if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"') {
                write!(f, " {a:?}")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

impl core::fmt::Display for Target {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp { host, port, .. } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Self::Tcp { host, port, .. } => write!(f, "tcp:{host}:{port}"),
            Self::Tty { path, serial } => write!(f, "tty:{}:{serial}", path.display()),
            Self::Fifo { to_backend, from_backend } => {
                write!(f, "fifo:{}:{}", to_backend.display(), from_backend.display())
            }
            Self::Exec(e) => write!(f, "{e}"),
        }
    }
}

impl Target {
    /// Its kind, as the configuration names it.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unix(_) => "unix",
            Self::Tcp { .. } => "tcp",
            Self::Tty { .. } => "tty",
            Self::Fifo { .. } => "fifo",
            Self::Exec(_) => "exec",
        }
    }
}

/// One link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The path prefix, without its leading '/'.
    pub origin: String,
    /// The backend.
    pub target: Target,
}

/// The link for the endpoint `name` (a checked path without its leading '/'), if any.
#[must_use]
pub fn find<'a>(links: &'a [Link], name: &str) -> Option<&'a Link> {
    links
        .iter()
        .filter(|l| {
            name.strip_prefix(l.origin.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .max_by_key(|l| l.origin.len())
}

/// Parses a link as the command line writes it: `ORIGIN=unix:PATH`, `ORIGIN=tcp:HOST:PORT`
/// (`tcp:[::1]:1883` for an IPv6 address; the host is resolved here),
/// `ORIGIN=tty:DEVICE[:SPEED[,FRAME]]` (`tty:/dev/ttyS0:115200,8N1`) or
/// `ORIGIN=exec:PROGRAM [ARG...]` (the words split at white space, no quoting: an argument with
/// a space in it is for the configuration file's `args`).
///
/// # Errors
/// What is wrong with it.
pub fn parse(spec: &str) -> Result<Link, String> {
    let (origin, target) = spec.split_once('=').ok_or_else(|| {
        format!("expected ORIGIN=unix:PATH, ORIGIN=tcp:HOST:PORT, ORIGIN=tty:DEVICE or ORIGIN=exec:PROGRAM, not {spec:?}")
    })?;
    let origin = origin.trim_start_matches('/');
    let target = match target.split_once(':') {
        Some(("unix", path)) => unix(path)?,
        Some(("tcp", hostport)) => {
            let (host, port) = split_host_port(hostport)?;
            tcp(host, port)?
        }
        Some(("tty", rest)) => match rest.split_once(':') {
            Some((path, settings)) => tty(path, Some(settings))?,
            None => tty(rest, None)?,
        },
        Some(("fifo", paths)) => match paths.split_once(':') {
            Some((to, from)) => fifo(to, from)?,
            None => return Err(format!("expected fifo:WRITTEN:READ (two FIFO paths), not {target:?}")),
        },
        Some(("exec", command)) => {
            let mut words = command.split_ascii_whitespace();
            let program = words.next().unwrap_or_default();
            exec(program, words.map(str::to_owned).collect(), None, None)?
        }
        _ => {
            return Err(format!(
                "expected unix:PATH, tcp:HOST:PORT, tty:DEVICE[:SPEED,FRAME] or exec:PROGRAM [ARG...], not {target:?}"
            ))
        }
    };
    check_origin(origin)?;
    Ok(Link { origin: origin.to_owned(), target })
}

/// A `unix` target at `path`; a relative one is found from the working directory, as the
/// file's other relative paths are.
///
/// # Errors
/// An empty path.
pub fn unix(path: &str) -> Result<Target, String> {
    if path.is_empty() {
        return Err("a unix link needs a socket path".to_owned());
    }
    Ok(Target::Unix(PathBuf::from(path)))
}

/// A `tcp` target: `host` (a name, an IPv4 address or an IPv6 address, brackets optional)
/// resolved now.
///
/// # Errors
/// Port 0, or a host that does not resolve.
pub fn tcp(host: &str, port: u16) -> Result<Target, String> {
    use std::net::ToSocketAddrs;
    if port == 0 {
        return Err("a tcp link needs a port (1..65535)".to_owned());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() {
        return Err("a tcp link needs a host".to_owned());
    }
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("tcp link host {bare:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("tcp link host {bare:?} has no address"));
    }
    Ok(Target::Tcp { host: bare.to_owned(), port, addrs })
}

/// A `tty` target: the device `path`, at `settings` (`115200` or `115200,8N1`; default
/// 115200 8N1). The device is opened per connection, not now: a USB adapter may be plugged in
/// later.
///
/// # Errors
/// An empty path, or settings that are not a speed and frame termios has.
pub fn tty(path: &str, settings: Option<&str>) -> Result<Target, String> {
    if path.is_empty() {
        return Err("a tty link needs a device path".to_owned());
    }
    let serial = match settings {
        Some(s) => s.parse().map_err(|e| format!("tty link settings {s:?}: {e}"))?,
        None => Serial::default(),
    };
    Ok(Target::Tty { path: PathBuf::from(path), serial })
}

/// A `fifo` target: `to_backend` written by the gateway, `from_backend` read. Opened per
/// connection, not now: the backend may create them later.
///
/// # Errors
/// An empty path, or the same path twice (one FIFO cannot carry both ways).
pub fn fifo(to_backend: &str, from_backend: &str) -> Result<Target, String> {
    if to_backend.is_empty() || from_backend.is_empty() {
        return Err("a fifo link needs two paths: the FIFO written (to the backend) and the one read (from it)".to_owned());
    }
    if to_backend == from_backend {
        return Err(format!("a fifo link needs two FIFOs, one each way, not {to_backend:?} twice"));
    }
    Ok(Target::Fifo {
        to_backend: PathBuf::from(to_backend),
        from_backend: PathBuf::from(from_backend),
    })
}

/// An `exec` target: `program` (an absolute path to an executable file, checked now) with
/// `args`, started in `dir` (default: the program's directory), at most `limit` at a time.
///
/// # Errors
/// A program that is not an absolute path to an executable file, a `dir` that is not a
/// directory, a limit of 0.
pub fn exec(
    program: &str,
    args: Vec<String>,
    dir: Option<&str>,
    limit: Option<u32>,
) -> Result<Target, String> {
    let path = Path::new(program);
    if !path.is_absolute() {
        return Err(format!(
            "an exec link runs a program named by its absolute path (no PATH lookup, no shell), not {program:?}"
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => return Err(format!("exec link program {program:?}: not an executable file")),
        Err(e) => return Err(format!("exec link program {program:?}: {e}")),
    }
    let dir = match dir {
        Some(d) => {
            if !Path::new(d).is_dir() {
                return Err(format!("exec link dir {d:?}: not a directory"));
            }
            PathBuf::from(d)
        }
        None => path.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
    };
    if limit == Some(0) {
        return Err("an exec link's limit is at least 1".to_owned());
    }
    Ok(Target::Exec(Exec { program: path.to_path_buf(), args, dir, limit }))
}

/// An origin is a non-empty path of plain segments (what a request path can match).
///
/// # Errors
/// Why it can never match.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let bad = origin.is_empty()
        || origin.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || origin.chars().any(char::is_control);
    if bad {
        return Err(format!(
            "a link origin is a path like \"mqtt\" or \"dev/tty\", not {origin:?}"
        ));
    }
    Ok(())
}

fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) =
        s.rsplit_once(':').ok_or_else(|| format!("expected HOST:PORT, not {s:?}"))?;
    let port = port.parse().map_err(|_| format!("expected a port number, not {port:?}"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn link(origin: &str) -> Link {
        Link { origin: origin.into(), target: Target::Unix(PathBuf::from("/run/x")) }
    }

    #[test]
    fn whole_segments_and_the_longest_origin_win() {
        let links = [link("a"), link("a/b"), link("mqtt")];
        assert_eq!(find(&links, "a").unwrap().origin, "a");
        assert_eq!(find(&links, "a/c").unwrap().origin, "a");
        assert_eq!(find(&links, "a/b/c").unwrap().origin, "a/b");
        assert_eq!(find(&links, "mqtt").unwrap().origin, "mqtt");
        assert!(find(&links, "mqttx").is_none());
        assert!(find(&links, "ab").is_none());
        assert!(find(&links, "").is_none());
    }

    #[test]
    fn command_line_links() {
        let l = parse("/mqtt=tcp:127.0.0.1:1883").unwrap();
        assert_eq!(l.origin, "mqtt");
        assert_eq!(
            l.target,
            Target::Tcp {
                host: "127.0.0.1".into(),
                port: 1883,
                addrs: vec!["127.0.0.1:1883".parse().unwrap()]
            }
        );
        let l = parse("v6=tcp:[::1]:80").unwrap();
        assert_eq!(l.target.to_string(), "tcp:[::1]:80");
        let l = parse("console=tty:/dev/ttyS0:9600,7E1").unwrap();
        assert_eq!(l.target.to_string(), "tty:/dev/ttyS0:9600,7E1");
        let l = parse("console=tty:/dev/ttyUSB0").unwrap();
        assert_eq!(l.target.to_string(), "tty:/dev/ttyUSB0:115200,8N1");
        let l = parse("dev/echo=unix:/run/echo.sock").unwrap();
        assert_eq!(l.target, Target::Unix("/run/echo.sock".into()));
        let l = parse("shell=exec:/bin/sh  -c   cat").unwrap();
        assert_eq!(
            l.target,
            Target::Exec(Exec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "cat".into()],
                dir: "/bin".into(),
                limit: None
            })
        );
        assert_eq!(l.target.to_string(), "exec:/bin/sh -c cat");
        let l = parse("pipe=fifo:/run/p.in:/run/p.out").unwrap();
        assert_eq!(l.target.to_string(), "fifo:/run/p.in:/run/p.out");
        let spaced =
            exec("/bin/sh", vec!["-c".into(), "echo \"hi\"".into()], Some("/tmp"), Some(2));
        assert_eq!(spaced.unwrap().to_string(), r#"exec:/bin/sh -c "echo \"hi\"""#);
        for bad in [
            "mqtt",
            "mqtt=tcp:127.0.0.1",
            "mqtt=tcp:127.0.0.1:0",
            "mqtt=tcp::1883",
            "mqtt=unix:",
            "mqtt=udp:1.2.3.4:5",
            "c=tty:",
            "c=tty:/dev/ttyS0:12345",
            "c=tty:/dev/ttyS0:9600,9N1",
            "=unix:/x",
            "a/../b=unix:/x",
            "s=exec:",
            "s=exec:sh -c cat",
            "s=exec:./prog",
            "s=exec:/nonexistent/prog",
            "s=exec:/etc/passwd",
            "s=exec:/tmp",
            "f=fifo:/run/a",
            "f=fifo:/run/a:/run/a",
            "f=fifo::/run/b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
