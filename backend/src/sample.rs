//! What the sample servers (`websocket_echo`, `websocket_chat`, `websocket_jsonrpc`) share
//! around their [`Service`]: the options every one of them takes ([`sample_args!`], one argh
//! struct per program since argh cannot merge structs), and the way from the command line to
//! the loop ([`main`], [`serve`]): the socket made (or the connection taken) and privileges
//! dropped ([`super::start`]), the service made (after the drop: a plugin never runs as root),
//! the loop run until SIGTERM or SIGINT, the socket file removed.
//!
//! A sample server is reached one of three ways ([`Reach`]): on its UNIX socket in the docroot
//! (the default), on a TCP port (`--tcp`, behind the gateway's `tcp:` links), or on the one
//! connection it is started with (`--stdio`: a connected socket as standard input and output,
//! as inetd and the gateway's exec links give it; it exits when that connection ends).
//!
//! What it does not own: each program's own options and limits, and what it serves.
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use super::server::{Limits, Server, Service};
use super::{say, Fatal, Serves};
use wsgate::relay::codec::Mode;

/// How a sample server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Its UNIX socket `<root>/<name>`.
    Unix,
    /// A TCP socket listening on this address (`--tcp`).
    Tcp(SocketAddr),
    /// The connected socket on standard input, alone (`--stdio`).
    Stdio,
}

/// `--tcp`'s value: an IP address and a port, `127.0.0.1:9001` or `[::1]:9001`. A host name is
/// not taken: which of its addresses to listen on would be a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpAddr(pub SocketAddr);

impl core::str::FromStr for TcpAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|_| {
            format!(
                "{s:?} is not an IP address and port (e.g. 127.0.0.1:9001, [::1]:9001; port 0 \
                 lets the system pick one)"
            )
        })
    }
}

/// The options every sample server takes, resolved against the program's defaults.
#[derive(Clone, Copy, Debug)]
pub struct Common<'a> {
    /// `-R`: the directory of the sockets.
    pub root: &'a Path,
    /// `-n`: the socket name.
    pub name: &'a str,
    /// `-u`: the user to become.
    pub user: Option<&'a str>,
    /// `-m`: the relay mode.
    pub mode: Mode,
    /// `-b`: the listen backlog.
    pub backlog: i32,
    /// `-M`: the largest message, in bytes.
    pub max_message: usize,
    /// `-d`: direct mode.
    pub direct: bool,
    /// `-v`: a line per client connect and disconnect.
    pub verbose: bool,
    /// `--tcp`: the address to listen on instead of the UNIX socket.
    pub tcp: Option<SocketAddr>,
    /// `--stdio`: serve the connection on standard input, alone.
    pub stdio: bool,
}

impl Common<'_> {
    /// How the server is reached, once the options are known to go together: `--tcp` and
    /// `--stdio` exclude each other; over TCP there is neither `seqpacket` (TCP keeps no
    /// packet boundaries) nor direct mode (the client's socket is handed over a UNIX
    /// connection).
    ///
    /// # Errors
    /// [`Fatal`] naming the option that does not fit.
    pub fn reach(&self) -> Result<Reach, Fatal> {
        if self.direct && self.mode == Mode::SeqPacket {
            return Err(Fatal::new(
                "-d",
                "direct mode takes the socket over a stream connection, not seqpacket",
            ));
        }
        match (self.tcp, self.stdio) {
            (Some(_), true) => Err(Fatal::new("--tcp", "--tcp and --stdio exclude each other")),
            (Some(_), false) if self.mode == Mode::SeqPacket => Err(Fatal::new(
                "--tcp",
                "-m seqpacket needs a UNIX SOCK_SEQPACKET socket: TCP is a byte stream without \
                 packet boundaries (use stream, lines or framed)",
            )),
            (Some(_), false) if self.direct => Err(Fatal::new(
                "--tcp",
                "direct mode (-d) takes the client's socket over a UNIX connection; it cannot \
                 be handed over TCP",
            )),
            (Some(addr), false) => Ok(Reach::Tcp(addr)),
            (None, true) => Ok(Reach::Stdio),
            (None, false) => Ok(Reach::Unix),
        }
    }
}

/// Declares a sample server's `Args`: argh options `-R`, `-n`, `-u`, `-m`, `-b`, `-M`, `-d`,
/// `-v`, `--tcp`, `--stdio` as every sample server has them, then the program's own fields, and
/// `Args::common(&self) -> Common` with the program's defaults applied. Given: the program's
/// help (doc comments), its socket name and `-M` default, each with its help text (a literal:
/// argh reads help from literals only).
///
/// ```text
/// wsgate_kit::sample_args! {
///     /// Sample chat server for wsgate: ...
///     struct Args {
///         socket: "chat", "socket name, which is the URL path (default \"chat\"); ...",
///         max_message: 16 << 10, "largest message in bytes, or with a K or M suffix (default 16K)",
///         /// understand ouistiti's commands: WSHello, WSPrivate, WSWhois
///         #[argh(switch, short = 'w')]
///         commands: bool,
///     }
/// }
/// ```
#[macro_export]
macro_rules! sample_args {
    (
        $(#[doc = $about:tt])*
        struct $args:ident {
            socket: $socket:tt, $socket_help:tt,
            max_message: $max:expr, $max_help:tt,
            $($own:tt)*
        }
    ) => {
        $(#[doc = $about])*
        #[derive(argh::FromArgs, Debug)]
        struct $args {
            /// directory of the sockets, the gateway's docroot (default /var/run/websocket);
            /// created with mode 0755 if missing
            #[argh(
                option,
                short = 'R',
                default = "::std::path::PathBuf::from(\"/var/run/websocket\")"
            )]
            root: ::std::path::PathBuf,
            #[doc = $socket_help]
            #[argh(option, short = 'n')]
            name: Option<String>,
            /// user to run as: the socket is created owned by that user, then privileges are
            /// dropped
            #[argh(option, short = 'u')]
            user: Option<String>,
            /// relay mode: stream (default), lines, framed or seqpacket
            #[argh(option, short = 'm', default = "::wsgate::relay::codec::Mode::Stream")]
            mode: ::wsgate::relay::codec::Mode,
            /// listen backlog: connections the kernel queues until they are accepted (default
            /// SOMAXCONN, which the kernel caps at net.core.somaxconn)
            #[argh(option, short = 'b')]
            backlog: Option<i32>,
            #[doc = $max_help]
            #[argh(option, short = 'M')]
            max_message: Option<$crate::ByteSize>,
            /// direct mode (the gateway's --direct): take each client's socket from the gateway
            /// and speak WebSocket on it; a connection without a socket is served in the -m
            /// mode (stream, lines or framed)
            #[argh(switch, short = 'd')]
            direct: bool,
            /// print a line per client connect and disconnect
            #[argh(switch, short = 'v')]
            verbose: bool,
            /// listen on TCP at HOST:PORT instead of the UNIX socket (-R and -n unused), for
            /// the gateway's tcp: links: an IP address and a port, e.g. 127.0.0.1:9001 or
            /// [::1]:9001 (port 0: the system picks one, said in the "listening on" line); not
            /// with -m seqpacket or -d
            #[argh(option)]
            tcp: Option<$crate::sample::TcpAddr>,
            /// serve the one connection already open on standard input (a connected socket as
            /// stdin and stdout, as inetd and the gateway's exec links start a program), then
            /// exit 0 when it ends; no socket file is made (-R and -n unused)
            #[argh(switch)]
            stdio: bool,
            $($own)*
        }

        impl $args {
            /// The common options, the program's defaults applied.
            fn common(&self) -> $crate::sample::Common<'_> {
                $crate::sample::Common {
                    root: &self.root,
                    name: self.name.as_deref().unwrap_or($socket),
                    user: self.user.as_deref(),
                    mode: self.mode,
                    backlog: self.backlog.unwrap_or($crate::conn::DEFAULT_BACKLOG),
                    max_message: self.max_message.map_or($max, |b| b.0),
                    direct: self.direct,
                    verbose: self.verbose,
                    tcp: self.tcp.map(|t| t.0),
                    stdio: self.stdio,
                }
            }
        }
    };
}

/// A sample server's `main`: names the program in log lines, parses the command line (argh
/// prints the help or the usage error and exits), and runs `run`; a failure is said on stderr
/// and exits with status 1.
pub fn main<A: argh::TopLevelCommand>(
    program: &'static str,
    run: fn(&A) -> Result<(), Fatal>,
) -> ExitCode {
    super::set_program(program);
    let args: A = argh::from_env();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("{e}"));
            ExitCode::FAILURE
        }
    }
}

/// How a sample server runs, beyond its common options.
#[derive(Clone, Copy, Debug)]
pub struct Serving<'a> {
    /// The loop's limits.
    pub limits: Limits,
    /// The gateway sends the connection context (`--context`).
    pub context: bool,
    /// Said after the mode in the "listening on" line (e.g. ", commands"), or empty.
    pub detail: &'a str,
}

/// Runs a sample server: checks its options ([`Common::reach`], before anything is made), makes
/// its socket or takes its connection and drops privileges ([`super::start`]), makes the
/// service, says where it listens, serves until SIGTERM or SIGINT (with `--stdio`, until its
/// connection ends), then drops the service and removes the socket file.
///
/// # Errors
/// [`Fatal`] from any step, `make`'s included.
pub fn serve<S: Service>(
    common: &Common<'_>,
    serving: &Serving<'_>,
    make: impl FnOnce() -> Result<S, Fatal>,
) -> Result<(), Fatal> {
    let started = super::start(common)?;
    let mut service = make()?;
    let (mut server, verb) = match started.serves {
        Serves::Listener(listener) => (
            Server::new(
                listener,
                common.mode,
                serving.limits,
                serving.context,
                common.direct,
                common.verbose,
            )?,
            "listening on",
        ),
        Serves::Connection(sock) => (
            Server::single(
                sock,
                common.mode,
                serving.limits,
                serving.context,
                common.direct,
                common.verbose,
            )?,
            "serving",
        ),
    };
    say(format_args!(
        "{verb} {} ({}{}{})",
        started.place,
        if common.direct { "direct, else " } else { "" },
        common.mode,
        serving.detail
    ));
    let stopped = server.serve(&started.signals, &mut service)?;
    if common.verbose {
        say(format_args!("{stopped}, exiting"));
    }
    drop(service);
    drop(started.socket_file);
    Ok(())
}
