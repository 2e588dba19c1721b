//! ouistiti's configuration file, read into a [`ServiceConfig`].
//!
//! wsgate reads the file ouistiti reads (libconfig syntax, see [`crate::libconfig`]) and takes
//! from it what a WebSocket gateway needs: the servers (listeners) and their `websocket`
//! sections, plus the few service-wide settings. What ouistiti knows but wsgate does not
//! provide is reported as a [`Warning`] and ignored when leaving it out serves less than the
//! file asks for (a CGI directory, a virtual host, CORS headers: none of it is served), and is
//! a [`ConfigFileError`] when leaving it out would serve more (`clientfilter`, `userfilter`,
//! `redirect` with `hsts`, and what of `auth` wsgate does not serve: pages and WebSockets the
//! file protects would be open); see [`REFUSED_MODULES`]. Unknown keys are warnings. Values of the wrong type or out of range,
//! and combinations that cannot work, are a [`ConfigFileError`] naming `file:line:col`.
//!
//! # Schema
//!
//! ```text
//! user, log-file (log_file), pid-file (pid_file), init_d : strings
//! syslog : boolean, default false (log to the syslog socket, see [`crate::logging`])
//! config_d : a directory whose *.conf files (in name order) each add servers, or one file;
//!            a relative path is resolved from the working directory, as ouistiti does (its
//!            init scripts run it with -W /; wsgate's -W DIR sets it too); a missing one is a
//!            warning
//! servers (server) = ( { ... }, ... )   at most 8 in all, config_d included
//!   hostname         string
//!   addr             IP address; absent or "" = all interfaces (dual-stack)
//!   port             0..=65535, default 80 (0: any free port, never a duplicate)
//!   maxclients       1..=32767, default 64 (wsgate's default, not ouistiti's)
//!   keepalivetimeout seconds 0..=86400, default 0
//!   tls = { crtfile; keyfile (or pemfile); cachain; client_ca (wsgate's: verify client
//!           certificates against these CAs); dhmfile (ignored, warning) }
//!   document (static_file) = group, or a list whose first group is used
//!     docroot (required); defaultpage "index.html"; allow (accepted_ext) "*";
//!     deny (ignored_ext) ""; denylast false;
//!     options (transfer_type): "dirlisting" in the comma list turns listing on
//!   filestorage: ouistiti's read/write file store, not provided (warning; nothing of it is
//!     served, not even read-only)
//!   websocket = {
//!     docroot (required); allow "*"; deny ""; denylast false
//!     options   comma list; "direct" hands the socket to the backend (not with tls)
//!     mode      stream | lines | framed | seqpacket (default stream); ouistiti's old
//!               mode = "direct" is read as options = "direct" (warning)
//!     modes     = { endpoint = "mode"; ... }
//!     type      text | binary | auto (default text)
//!     origin    "a,b" or [ "a", "b" ]; "*" accepts any; absent: none, or the same host:port as Host (see http::origin)
//!     ping_interval_ms, idle_timeout_ms   0..; 0 turns it off; absent: wsgate's default
//!     pong_timeout_ms, handshake_timeout_ms   1..; absent: wsgate's default
//!     max_message  bytes, an integer or a string like "1M"; absent: wsgate's default
//!     context   boolean, default false
//!     links     not supported (warning)
//!   }
//! ```
//!
//! [`render`] writes a [`ServiceConfig`] back in the same syntax with every default written
//! out (what `wsgate --check -f FILE` should print); settings left to wsgate's runtime
//! defaults appear as comments showing the value.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    parse_bytes, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE,
    DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT, MAX_CONNECTIONS,
};
use crate::libconfig::{self, ParseError};
use crate::relay::acl::AccessList;
use crate::relay::codec::{DataType, Mode};

mod read;
mod render;
mod runtime;
#[cfg(test)]
mod tests;

pub use render::{render, render_check};
pub use runtime::to_runtime;

/// Most servers in one configuration, `config_d` included: one listener (site) each.
pub const MAX_SERVERS: usize = crate::config::MAX_SITES;
/// Most files read from a `config_d` directory.
pub const MAX_CONFIG_D_FILES: usize = 64;
/// Port when a server names none.
pub const DEFAULT_PORT: u16 = 80;
/// `defaultpage` when a document names none.
pub use crate::config::DEFAULT_PAGE;
/// Largest `keepalivetimeout` (seconds).
pub const MAX_KEEPALIVE_SECS: i64 = 86_400;
/// Largest `*_ms` timeout: one year, as [`crate::config::parse_duration`] allows.
pub const MAX_TIMEOUT_MS: i64 = 365 * 86_400_000;

/// The warning for a server that does not run; `{port}` is its port.
const NOT_RUN: &str = "server on port {port} has no websocket section: not run (wsgate serves \
                       static pages only beside a websocket section)";

/// The error for direct mode on a TLS server.
pub const DIRECT_TLS: &str =
    "direct mode cannot work over TLS: TLS state cannot move to another process";

/// Top-level ouistiti settings wsgate does not use.
const TOP_IGNORED: &[&str] = &["mimetypes", "log-level", "loglevel", "version", "modules"];
/// Server-level ouistiti settings wsgate does not use.
const SERVER_IGNORED: &[&str] = &[
    "version",
    "service",
    "chunksize",
    "security",
    "root",
    "unlock_groups",
    "error_redirection",
    "server_headers",
    "headers",
];
/// ouistiti modules (server-level groups) wsgate does not provide and may leave out: without
/// them a server serves less, never more (their pages, scripts and streams are not served;
/// CORS headers that would let other sites read responses are not sent; a `vhost`'s own
/// document, websocket and auth are not served at all, and the server's own answer any Host).
const SERVER_MODULES: &[&str] = &[
    "authmngt",
    "cgi",
    "cookie",
    "cors",
    "methodlock",
    "python",
    "redirect404",
    "rewrite",
    "signup",
    "tinysvcmdns",
    "upgrade",
    "vhost",
    "vhosts",
    "webstream",
];

/// ouistiti modules that protect what a server serves, and why leaving one out is refused:
/// the server would serve, to anyone, what the file says only some may have. `redirect` is
/// refused only with its `hsts` option (see [`Reader::redirect`]).
pub const REFUSED_MODULES: &[(&str, &str)] = &[
    ("clientfilter", "wsgate does not filter clients by address"),
    ("userfilter", "wsgate does not filter authenticated users"),
];

/// Settings for the whole service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceConfig {
    /// User to run as (`user`).
    pub user: Option<String>,
    /// Log file (`log-file`).
    pub log_file: Option<PathBuf>,
    /// ouistiti's init.d directory (`init_d`), kept for the integrator.
    pub init_d: Option<PathBuf>,
    /// PID file (`pid-file`).
    pub pid_file: Option<PathBuf>,
    /// Log to syslog (`syslog = true;`).
    pub syslog: bool,
    /// The control socket (`control`), wsgate's own setting.
    pub control: Option<PathBuf>,
    /// Programs of exec links running at once (`exec_limit`), wsgate's own setting.
    pub exec_limit: Option<u32>,
    /// permessage-deflate's window in bits (`compression_window`), wsgate's own setting.
    pub compression_window: Option<u8>,
    /// Its level (`compression_level`).
    pub compression_level: Option<u8>,
    /// Its memory, all connections together (`compression_memory`).
    pub compression_memory: Option<u64>,
    /// The servers, main file first, then `config_d` files in name order.
    pub servers: Vec<ServerConfig>,
}

impl ServiceConfig {
    /// The same settings with every [`Place`] (and server line) cleared: what two readings of
    /// one configuration from different files have in common.
    #[must_use]
    pub fn without_places(mut self) -> Self {
        for s in &mut self.servers {
            s.file = PathBuf::new();
            s.line = 0;
            if let Some(t) = &mut s.tls {
                t.at = Default::default();
            }
        }
        self
    }
}

/// One server: a listener and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `hostname`.
    pub hostname: Option<String>,
    /// `port` (default 80).
    pub port: u16,
    /// `addr`; `None` listens on all interfaces, dual-stack.
    pub addr: Option<IpAddr>,
    /// `maxclients` (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub maxclients: u32,
    /// `keepalivetimeout` (seconds, default 0).
    pub keepalive_timeout: Duration,
    /// `tls`.
    pub tls: Option<TlsSection>,
    /// `document` / `static_file`.
    pub document: Option<DocumentConfig>,
    /// `websocket`.
    pub websocket: Option<WebsocketConfig>,
    /// `auth`: Basic authentication against the user database.
    pub auth: Option<crate::config::AuthPolicy>,
    /// File and line where the server's group starts, for messages.
    pub file: PathBuf,
    /// See [`ServerConfig::file`].
    pub line: u32,
}

/// The `tls` group: the files (`crtfile`, `keyfile` or ouistiti's older `pemfile`,
/// `cachain`, and wsgate's own `client_ca`: CA certificates that every client's certificate
/// must chain to), and where each was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSection {
    /// The files, as the TLS layer loads them.
    pub files: crate::tls::TlsFiles,
    /// Where the group and each file were named (group, crtfile, keyfile, cachain, client_ca),
    /// so that a file found unusable after loading is reported at its own line.
    pub at: [Place; 5],
}

impl TlsSection {
    /// Where `path` was named in the group, or the group itself when no setting names it.
    #[must_use]
    pub fn place_of(&self, path: Option<&Path>) -> &Place {
        let f = &self.files;
        let named = [Some(&f.crtfile), Some(&f.keyfile), f.cachain.as_ref(), f.client_ca.as_ref()];
        let i = named.iter().position(|p| p.is_some() && p.map(PathBuf::as_path) == path);
        let i = i.map_or(0, |i| i + 1);
        let [group, ..] = &self.at;
        self.at.get(i).unwrap_or(group)
    }
}

/// Where a setting was written: `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    /// The file (an included one where the setting is in it).
    pub file: PathBuf,
    /// The line.
    pub line: u32,
    /// The column.
    pub col: u32,
}

/// The `document` group (static files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentConfig {
    /// `docroot`.
    pub docroot: PathBuf,
    /// `defaultpage` (default `index.html`).
    pub defaultpage: String,
    /// `allow`, `deny`, `denylast`.
    pub access: AccessList,
    /// `options` contains `dirlisting`.
    pub dirlisting: bool,
}

/// The `websocket` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebsocketConfig {
    /// Directory of the backend sockets (`docroot`).
    pub docroot: PathBuf,
    /// `allow` / `deny` / `denylast`, wsgate's defaults (allow `*`, deny nothing).
    pub access: AccessList,
    /// `options` contains `direct`.
    pub direct: bool,
    /// `metrics`: the path of the metrics page, wsgate's own setting.
    pub metrics: Option<String>,
    /// `mode` (default stream).
    pub mode: Mode,
    /// `modes = { name = "mode"; }`.
    pub endpoint_modes: Vec<(String, Mode)>,
    /// `type` (default text).
    pub data_type: DataType,
    /// `origin`; `None` does not check.
    pub origin: Option<Vec<String>>,
    /// `ping_interval_ms`; zero turns pings off; `None` leaves wsgate's default.
    pub ping_interval: Option<Duration>,
    /// `pong_timeout_ms`.
    pub pong_timeout: Option<Duration>,
    /// `idle_timeout_ms`; zero turns it off.
    pub idle_timeout: Option<Duration>,
    /// `handshake_timeout_ms`.
    pub handshake_timeout: Option<Duration>,
    /// `max_message` (bytes).
    pub max_message: Option<u64>,
    /// `context`: `true`, or a pattern naming the endpoints that get one.
    pub context: bool,
    /// `context = "PATTERN"`: the endpoints that get the context.
    pub context_endpoints: Option<String>,
    /// `links`: endpoints whose backend the file names.
    pub links: Vec<crate::relay::link::Link>,
    /// `compression = "permessage-deflate";` (or `"none"`), wsgate's own setting.
    pub compression: Option<bool>,
    /// `compression = { name = "permessage-deflate"; }`.
    pub endpoint_compression: Vec<(String, bool)>,
}

/// Something ignored: `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: PathBuf,
    /// The line (0: about the file as a whole).
    pub line: u32,
    /// What was ignored.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// A configuration that cannot be used: `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    /// The file.
    pub file: PathBuf,
    /// The line (0 when the file could not be read).
    pub line: u32,
    /// The column (0 when the file could not be read).
    pub col: u32,
    /// What was expected.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
        }
    }
}

impl std::error::Error for ConfigFileError {}

impl ConfigFileError {
    /// An error about the setting at `place`.
    #[must_use]
    pub fn at(place: &Place, message: String) -> Self {
        Self { file: place.file.clone(), line: place.line, col: place.col, message }
    }
}

impl From<ParseError> for ConfigFileError {
    fn from(e: ParseError) -> Self {
        Self { file: e.file, line: e.line, col: e.col, message: e.message }
    }
}

/// Reads the ouistiti configuration at `path` (its includes and `config_d` too). A relative
/// `config_d` is resolved from the working directory.
///
/// # Errors
/// A [`ConfigFileError`] for the first syntax error, type error, range error, impossible
/// combination or protection wsgate cannot give.
pub fn load(path: &Path) -> Result<(ServiceConfig, Vec<Warning>), ConfigFileError> {
    load_in(path, &working_dir())
}

/// [`load`] with relative `config_d` paths resolved from `workdir`.
///
/// # Errors
/// As [`load`].
pub fn load_in(
    path: &Path,
    workdir: &Path,
) -> Result<(ServiceConfig, Vec<Warning>), ConfigFileError> {
    let doc = libconfig::parse_file(path)?;
    read::from_document(&doc, workdir)
}

/// [`load`] for text already in memory, as if read from `path` (includes are relative to its
/// directory).
///
/// # Errors
/// As [`load`].
pub fn load_str(text: &str, path: &Path) -> Result<(ServiceConfig, Vec<Warning>), ConfigFileError> {
    load_str_in(text, path, &working_dir())
}

/// [`load_str`] with relative `config_d` paths resolved from `workdir`.
///
/// # Errors
/// As [`load`].
pub fn load_str_in(
    text: &str,
    path: &Path,
    workdir: &Path,
) -> Result<(ServiceConfig, Vec<Warning>), ConfigFileError> {
    let doc = libconfig::parse_str(text, path)?;
    read::from_document(&doc, workdir)
}

/// The working directory, for messages and relative `config_d` paths (`.` if it is gone).
fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}
