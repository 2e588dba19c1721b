//! What the sample servers (`websocket_echo`, `websocket_chat`, `websocket_jsonrpc`) share
//! around their [`Service`]: the options every one of them takes ([`sample_args!`], one argh
//! struct per program since argh cannot merge structs), and the way from the command line to
//! the loop ([`main`], [`serve`]): the socket made and privileges dropped ([`super::start`]),
//! the service made (after the drop: a plugin never runs as root), the loop run until SIGTERM
//! or SIGINT, the socket file removed.
//!
//! What it does not own: each program's own options and limits, and what it serves.
use std::path::Path;
use std::process::ExitCode;

use super::server::{Limits, Server, Service};
use super::{say, Fatal};
use wsgate::relay::codec::Mode;

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
}

/// Declares a sample server's `Args`: argh options `-R`, `-n`, `-u`, `-m`, `-b`, `-M`, `-d`,
/// `-v` as every sample server has them, then the program's own fields, and
/// `Args::common(&self) -> Common` with the program's defaults applied. Given: the program's
/// help (doc comments), its socket name and `-M` default, each with its help text (a literal:
/// argh reads help from literals only).
///
/// ```ignore
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

/// Runs a sample server: refuses `-d` with `seqpacket` (before anything is made), makes the
/// socket and drops privileges ([`super::start`]), makes the service, says where it listens,
/// serves until SIGTERM or SIGINT, then drops the service and removes the socket file.
///
/// # Errors
/// [`Fatal`] from any step, `make`'s included.
pub fn serve<S: Service>(
    common: &Common<'_>,
    serving: &Serving<'_>,
    make: impl FnOnce() -> Result<S, Fatal>,
) -> Result<(), Fatal> {
    if common.direct && common.mode == Mode::SeqPacket {
        return Err(Fatal::new(
            "-d",
            "direct mode takes the socket over a stream connection, not seqpacket",
        ));
    }
    let started = super::start(common)?;
    let mut service = make()?;
    let mut server = Server::new(
        started.listener,
        common.mode,
        serving.limits,
        serving.context,
        common.direct,
        common.verbose,
    )?;
    say(format_args!(
        "listening on {} ({}{}{})",
        started.path.display(),
        if common.direct { "direct, else " } else { "" },
        common.mode,
        serving.detail
    ));
    let signal = server.serve(&started.signals, &mut service)?;
    if common.verbose {
        say(format_args!("{signal}, exiting"));
    }
    drop(service);
    drop(started.socket_file);
    Ok(())
}
