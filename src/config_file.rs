//! ouistiti's configuration file, read into a [`ServiceConfig`].
//!
//! wsgate reads the file ouistiti reads (libconfig syntax, see [`crate::libconfig`]) and takes
//! from it what a WebSocket gateway needs: the servers (listeners) and their `websocket`
//! sections, plus the few service-wide settings. What ouistiti knows but wsgate does not
//! provide is reported as a [`Warning`] and ignored when leaving it out serves less than the
//! file asks for (a CGI directory, a virtual host, CORS headers: none of it is served), and is
//! a [`ConfigFileError`] when leaving it out would serve more (`auth`, `clientfilter`,
//! `userfilter`, `redirect` with `hsts`: pages and WebSockets the file protects would be open);
//! see [`REFUSED_MODULES`]. Unknown keys are warnings. Values of the wrong type or out of range,
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
use crate::libconfig::{self, quote, Document, Kind, ParseError, Pos, Setting, Value};
use crate::relay::acl::AccessList;
use crate::relay::codec::{DataType, Mode};

/// Most servers in one configuration, `config_d` included: one listener (site) each.
pub const MAX_SERVERS: usize = crate::config::MAX_SITES;
/// Most files read from a `config_d` directory.
pub const MAX_CONFIG_D_FILES: usize = 64;
/// Port when a server names none.
pub const DEFAULT_PORT: u16 = 80;
/// `defaultpage` when a document names none.
pub const DEFAULT_PAGE: &str = "index.html";
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
    ("auth", "wsgate does not authenticate clients"),
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
    pub tls: Option<TlsFiles>,
    /// `document` / `static_file`.
    pub document: Option<DocumentConfig>,
    /// `websocket`.
    pub websocket: Option<WebsocketConfig>,
    /// File and line where the server's group starts, for messages.
    pub file: PathBuf,
    /// See [`ServerConfig::file`].
    pub line: u32,
}

/// The `tls` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate (`crtfile`).
    pub crtfile: PathBuf,
    /// Private key (`keyfile`, or ouistiti's older `pemfile`).
    pub keyfile: PathBuf,
    /// CA chain (`cachain`).
    pub cachain: Option<PathBuf>,
    /// CA certificates that client certificates must chain to (`client_ca`, wsgate's own key):
    /// when set, every client must present one.
    pub client_ca: Option<PathBuf>,
    /// Where the group and each file were named (group, crtfile, keyfile, cachain, client_ca),
    /// so that a file found unusable after loading is reported at its own line.
    pub at: [Place; 5],
}

/// The files alone, as the TLS layer loads them (it knows nothing of configuration files).
impl From<&TlsFiles> for crate::tls::TlsFiles {
    fn from(t: &TlsFiles) -> Self {
        Self {
            crtfile: t.crtfile.clone(),
            keyfile: t.keyfile.clone(),
            cachain: t.cachain.clone(),
            client_ca: t.client_ca.clone(),
        }
    }
}

impl TlsFiles {
    /// Where `path` was named in the group, or the group itself when no setting names it.
    #[must_use]
    pub fn place_of(&self, path: Option<&Path>) -> &Place {
        let named = [
            Some(&self.crtfile),
            Some(&self.keyfile),
            self.cachain.as_ref(),
            self.client_ca.as_ref(),
        ];
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
    /// `context`.
    pub context: bool,
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
    from_document(&doc, workdir)
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
    from_document(&doc, workdir)
}

/// The working directory, for messages and relative `config_d` paths (`.` if it is gone).
fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// A server being read, with where its listener was set.
struct Loaded {
    server: ServerConfig,
    file: PathBuf,
    listen: Pos,
}

fn from_document(
    doc: &Document,
    workdir: &Path,
) -> Result<(ServiceConfig, Vec<Warning>), ConfigFileError> {
    let mut warnings = Vec::new();
    let mut cfg = ServiceConfig::default();
    let mut servers: Vec<Loaded> = Vec::new();
    let mut config_d: Option<(&Setting, PathBuf)> = None;
    {
        let mut r = Reader { doc, warnings: &mut warnings };
        for s in &doc.root {
            match s.name.as_str() {
                "user" => cfg.user = Some(r.string(s)?.to_owned()),
                "log-file" | "log_file" => cfg.log_file = Some(r.path(s)?),
                "pid-file" | "pid_file" => cfg.pid_file = Some(r.path(s)?),
                "init_d" => cfg.init_d = Some(r.path(s)?),
                "syslog" => cfg.syslog = r.boolean(s)?,
                "config_d" => config_d = Some((s, r.path(s)?)),
                "servers" | "server" => r.servers(s, &mut servers)?,
                n if TOP_IGNORED.contains(&n) => r.ignored(s),
                n => r.warn(s.pos, format!("unknown key {} (ignored)", quote(n))),
            }
        }
        if let Some((s, dir)) = config_d {
            r.config_d(s, &workdir.join(dir), &mut servers)?;
        }
    }
    check_listeners(&servers)?;
    if !servers.iter().any(|l| l.server.websocket.is_some()) {
        warnings.push(Warning {
            file: doc.files.first().cloned().unwrap_or_default(),
            line: 0,
            message: "no server has a websocket section: wsgate has nothing to relay".to_owned(),
        });
    }
    cfg.servers = servers.into_iter().map(|l| l.server).collect();
    Ok((cfg, warnings))
}

/// Rejects two servers whose listeners overlap.
fn check_listeners(servers: &[Loaded]) -> Result<(), ConfigFileError> {
    for (i, b) in servers.iter().enumerate() {
        let earlier = servers.get(..i).unwrap_or_default();
        if let Some(a) = earlier.iter().find(|a| overlaps(&a.server, &b.server)) {
            return Err(ConfigFileError {
                file: b.file.clone(),
                line: b.listen.line,
                col: b.listen.col,
                message: format!(
                    "expected a listener no other server uses, found {} while the server at {}:{} listens on {}",
                    listener(&b.server),
                    a.file.display(),
                    a.server.line,
                    listener(&a.server)
                ),
            });
        }
    }
    Ok(())
}

fn listener(s: &ServerConfig) -> String {
    match s.addr {
        None => format!("*:{} (all interfaces)", s.port),
        Some(IpAddr::V4(a)) => format!("{a}:{}", s.port),
        Some(IpAddr::V6(a)) => format!("[{a}]:{}", s.port),
    }
}

/// True when both cannot listen at once: same port, and the addresses are equal or one is a
/// wildcard covering the other (`None` and `::` are dual-stack, `0.0.0.0` covers IPv4).
fn overlaps(a: &ServerConfig, b: &ServerConfig) -> bool {
    if a.port != b.port || a.port == 0 {
        return false;
    }
    match (a.addr, b.addr) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => {
            x == y
                || x.is_unspecified() && (x.is_ipv6() || y.is_ipv4())
                || y.is_unspecified() && (y.is_ipv6() || x.is_ipv4())
        }
    }
}

struct Reader<'a> {
    doc: &'a Document,
    warnings: &'a mut Vec<Warning>,
}

impl Reader<'_> {
    fn place(&self, pos: Pos) -> Place {
        Place { file: self.doc.path(pos).to_path_buf(), line: pos.line, col: pos.col }
    }

    fn err(&self, pos: Pos, message: String) -> ConfigFileError {
        ConfigFileError::at(&self.place(pos), message)
    }

    fn warn(&mut self, pos: Pos, message: String) {
        self.warnings.push(Warning {
            file: self.doc.path(pos).to_path_buf(),
            line: pos.line,
            message,
        });
    }

    fn ignored(&mut self, s: &Setting) {
        self.warn(
            s.pos,
            format!("ouistiti setting {} is not used by wsgate (ignored)", quote(&s.name)),
        );
    }

    fn unknown(&mut self, s: &Setting, section: &str) {
        self.warn(s.pos, format!("unknown key {} in {section} (ignored)", quote(&s.name)));
    }

    fn type_err(&self, s: &Setting, expected: &str) -> ConfigFileError {
        self.err(
            s.value.pos,
            format!(
                "expected {expected} for {}, found {}",
                quote(&s.name),
                s.value.kind.describe()
            ),
        )
    }

    fn string<'v>(&self, s: &'v Setting) -> Result<&'v str, ConfigFileError> {
        s.value.as_str().ok_or_else(|| self.type_err(s, "a string"))
    }

    fn path(&self, s: &Setting) -> Result<PathBuf, ConfigFileError> {
        let p = self.string(s)?;
        if p.is_empty() {
            return Err(self
                .err(s.value.pos, format!("expected a path for {}, found \"\"", quote(&s.name))));
        }
        Ok(PathBuf::from(p))
    }

    fn boolean(&self, s: &Setting) -> Result<bool, ConfigFileError> {
        s.value.as_bool().ok_or_else(|| self.type_err(s, "true or false"))
    }

    fn int(&self, s: &Setting, lo: i64, hi: i64, what: &str) -> Result<i64, ConfigFileError> {
        let i =
            s.value.as_int().ok_or_else(|| self.type_err(s, &format!("an integer ({what})")))?;
        if !(lo..=hi).contains(&i) {
            return Err(self.err(
                s.value.pos,
                format!("expected {what} {lo}..={hi} for {}, found {i}", quote(&s.name)),
            ));
        }
        Ok(i)
    }

    fn millis(&self, s: &Setting, min: i64) -> Result<Duration, ConfigFileError> {
        let ms = self.int(s, min, MAX_TIMEOUT_MS, "milliseconds")?;
        Ok(Duration::from_millis(u64::try_from(ms).unwrap_or_default()))
    }

    fn group<'v>(&self, s: &'v Setting, what: &str) -> Result<&'v [Setting], ConfigFileError> {
        s.value.as_group().ok_or_else(|| self.type_err(s, &format!("a group {{ ... }} ({what})")))
    }

    /// Comma-separated words of a string setting, trimmed, empty ones dropped.
    fn words<'v>(&self, s: &'v Setting) -> Result<Vec<&'v str>, ConfigFileError> {
        Ok(self.string(s)?.split(',').map(str::trim).filter(|w| !w.is_empty()).collect())
    }

    fn servers(&mut self, s: &Setting, out: &mut Vec<Loaded>) -> Result<(), ConfigFileError> {
        let elems: Vec<&Value> = match &s.value.kind {
            Kind::List(v) => v.iter().collect(),
            Kind::Group(_) => vec![&s.value],
            _ => return Err(self.type_err(s, "a list of server groups ( { ... }, ... )")),
        };
        for v in elems {
            let Some(g) = v.as_group() else {
                return Err(self.err(
                    v.pos,
                    format!(
                        "expected a server group {{ ... }} in {}, found {}",
                        quote(&s.name),
                        v.kind.describe()
                    ),
                ));
            };
            if out.len() >= MAX_SERVERS {
                return Err(self.err(
                    v.pos,
                    format!("expected at most {MAX_SERVERS} servers, found a {}th", out.len() + 1),
                ));
            }
            let server = self.server(v.pos, g)?;
            out.push(server);
        }
        Ok(())
    }

    fn server(&mut self, pos: Pos, g: &[Setting]) -> Result<Loaded, ConfigFileError> {
        let mut server = ServerConfig {
            hostname: None,
            port: DEFAULT_PORT,
            addr: None,
            maxclients: DEFAULT_MAX_CONNECTIONS,
            keepalive_timeout: Duration::ZERO,
            tls: None,
            document: None,
            websocket: None,
            file: self.doc.path(pos).to_path_buf(),
            line: pos.line,
        };
        let mut listen = pos;
        let mut port_set = false;
        let mut direct: Option<Pos> = None;
        let mut document_at: Option<Pos> = None;
        for s in g {
            match s.name.as_str() {
                "hostname" => server.hostname = Some(self.string(s)?.to_owned()),
                "port" => {
                    let p = self.int(s, 0, 65_535, "a port number")?;
                    server.port = u16::try_from(p).unwrap_or(DEFAULT_PORT);
                    listen = s.value.pos;
                    port_set = true;
                }
                "addr" => {
                    let a = self.string(s)?;
                    server.addr = if a.is_empty() {
                        None
                    } else {
                        Some(a.parse().map_err(|_| {
                            self.err(
                                s.value.pos,
                                format!("expected an IP address for \"addr\", found {}", quote(a)),
                            )
                        })?)
                    };
                    if !port_set {
                        listen = s.value.pos;
                    }
                }
                "maxclients" => {
                    let n = self.int(s, 1, i64::from(MAX_CONNECTIONS), "a client count")?;
                    server.maxclients = u32::try_from(n).unwrap_or(DEFAULT_MAX_CONNECTIONS);
                }
                "keepalivetimeout" => {
                    let secs = self.int(s, 0, MAX_KEEPALIVE_SECS, "seconds")?;
                    server.keepalive_timeout =
                        Duration::from_secs(u64::try_from(secs).unwrap_or_default());
                }
                "tls" => server.tls = Some(self.tls(s)?),
                "filestorage" => self.warn(
                    s.pos,
                    "filestorage (ouistiti's read/write file store) is not part of wsgate \
                     (ignored: nothing under its docroot is served)"
                        .to_owned(),
                ),
                "document" | "static_file" => {
                    let first = match &s.value.kind {
                        Kind::Group(g) => Some((s.value.pos, g.as_slice())),
                        Kind::List(items) => {
                            let mut first = None;
                            for (i, v) in items.iter().enumerate() {
                                let Some(g) = v.as_group() else {
                                    return Err(self.err(
                                        v.pos,
                                        format!(
                                            "expected a group {{ ... }} in {}, found {}",
                                            quote(&s.name),
                                            v.kind.describe()
                                        ),
                                    ));
                                };
                                if i == 0 {
                                    first = Some((v.pos, g));
                                } else {
                                    self.warn(
                                        v.pos,
                                        format!(
                                            "only the first {} of a list is used (ignored)",
                                            s.name
                                        ),
                                    );
                                }
                            }
                            if first.is_none() {
                                self.warn(s.pos, format!("empty {} list (ignored)", s.name));
                            }
                            first
                        }
                        _ => return Err(self.type_err(s, "a group { ... } or a list of groups")),
                    };
                    let Some((at, g)) = first else { continue };
                    if let Some(prev) = document_at {
                        self.warn(
                            s.pos,
                            format!(
                                "{} ignored: the document at line {} is used (one per server)",
                                s.name, prev.line
                            ),
                        );
                        continue;
                    }
                    document_at = Some(at);
                    server.document = Some(self.document(at, g)?);
                }
                "websocket" => {
                    let g = self.group(s, "websocket")?;
                    let (ws, d) = self.websocket(s.value.pos, g)?;
                    server.websocket = Some(ws);
                    direct = d;
                }
                n if REFUSED_MODULES.iter().any(|(m, _)| *m == n) => {
                    return Err(self.refused(s));
                }
                "redirect" => self.redirect(s)?,
                n if SERVER_MODULES.contains(&n) => self.warn(
                    s.pos,
                    format!("ouistiti module {} is not part of wsgate (ignored)", quote(n)),
                ),
                n if SERVER_IGNORED.contains(&n) => self.ignored(s),
                _ => self.unknown(s, "server"),
            }
        }
        if let (Some(at), Some(_)) = (direct, &server.tls) {
            return Err(self.err(at, DIRECT_TLS.to_owned()));
        }
        Ok(Loaded { server, file: self.doc.path(pos).to_path_buf(), listen })
    }

    /// The error for a module of [`REFUSED_MODULES`].
    fn refused(&self, s: &Setting) -> ConfigFileError {
        let why = REFUSED_MODULES.iter().find(|(m, _)| *m == s.name).map_or("", |(_, w)| w);
        self.err(
            s.pos,
            format!(
                "{}: {why}, and serving this server without it would open to anyone what the \
                 file protects; remove the section to serve the server unprotected on purpose",
                s.name
            ),
        )
    }

    /// `redirect`: its links are routing (left out, with a warning); its `hsts` option sends
    /// plain-HTTP clients to HTTPS, a protection wsgate does not give (an error).
    fn redirect(&mut self, s: &Setting) -> Result<(), ConfigFileError> {
        let hsts = s.value.as_group().and_then(|g| {
            g.iter().find(|o| {
                o.name == "options" && o.value.as_str().is_some_and(|v| v.contains("hsts"))
            })
        });
        if let Some(o) = hsts {
            return Err(self.err(
                o.value.pos,
                "redirect options \"hsts\": wsgate does not redirect plain HTTP to HTTPS nor \
                 send Strict-Transport-Security; serve this server over tls instead"
                    .to_owned(),
            ));
        }
        self.warn(
            s.pos,
            "ouistiti module \"redirect\" is not part of wsgate (ignored: no redirections are sent)"
                .to_owned(),
        );
        Ok(())
    }

    fn tls(&mut self, s: &Setting) -> Result<TlsFiles, ConfigFileError> {
        let g = self.group(s, "tls")?;
        let (mut crtfile, mut keyfile, mut cachain, mut client_ca) = (None, None, None, None);
        let mut at: [Place; 5] = Default::default();
        let [group_at, crt_at, key_at, chain_at, ca_at] = &mut at;
        *group_at = self.place(s.value.pos);
        for t in g {
            let here = self.place(t.value.pos);
            match t.name.as_str() {
                "crtfile" => (crtfile, *crt_at) = (Some(self.path(t)?), here),
                "keyfile" | "pemfile" => (keyfile, *key_at) = (Some(self.path(t)?), here),
                "cachain" => (cachain, *chain_at) = (Some(self.path(t)?), here),
                "client_ca" => (client_ca, *ca_at) = (Some(self.path(t)?), here),
                "dhmfile" => {
                    self.warn(t.pos, "dhmfile is not used by wsgate (ignored)".to_owned());
                }
                _ => self.unknown(t, "tls"),
            }
        }
        let need = |v: Option<PathBuf>, key: &str, what: &str| {
            v.ok_or_else(|| {
                self.err(s.value.pos, format!("expected \"{key}\" ({what}) in tls, found none"))
            })
        };
        Ok(TlsFiles {
            crtfile: need(crtfile, "crtfile", "the certificate file")?,
            keyfile: need(keyfile, "keyfile", "the private key file")?,
            cachain,
            client_ca,
            at,
        })
    }

    fn document(&mut self, pos: Pos, g: &[Setting]) -> Result<DocumentConfig, ConfigFileError> {
        let mut docroot = None;
        let mut doc = DocumentConfig {
            docroot: PathBuf::new(),
            defaultpage: DEFAULT_PAGE.to_owned(),
            access: AccessList::default(),
            dirlisting: false,
        };
        for s in g {
            match s.name.as_str() {
                "docroot" => docroot = Some(self.path(s)?),
                "defaultpage" => doc.defaultpage = self.string(s)?.to_owned(),
                "allow" | "accepted_ext" => doc.access.allow = self.string(s)?.to_owned(),
                "deny" | "ignored_ext" => doc.access.deny = self.string(s)?.to_owned(),
                "denylast" => doc.access.denylast = self.boolean(s)?,
                "options" | "transfer_type" => {
                    doc.dirlisting = self.words(s)?.contains(&"dirlisting");
                }
                _ => self.unknown(s, "document"),
            }
        }
        doc.docroot = docroot.ok_or_else(|| {
            self.err(
                pos,
                "expected \"docroot\" (the directory of the files) in document, found none"
                    .to_owned(),
            )
        })?;
        Ok(doc)
    }

    /// The websocket group, and where `direct` was asked for.
    fn websocket(
        &mut self,
        pos: Pos,
        g: &[Setting],
    ) -> Result<(WebsocketConfig, Option<Pos>), ConfigFileError> {
        let mut docroot = None;
        let mut direct = None;
        let mut ws = WebsocketConfig {
            docroot: PathBuf::new(),
            access: AccessList::default(),
            direct: false,
            mode: Mode::Stream,
            endpoint_modes: Vec::new(),
            data_type: DataType::Text,
            origin: None,
            ping_interval: None,
            pong_timeout: None,
            idle_timeout: None,
            handshake_timeout: None,
            max_message: None,
            context: false,
        };
        for s in g {
            match s.name.as_str() {
                "docroot" => docroot = Some(self.path(s)?),
                "allow" => ws.access.allow = self.string(s)?.to_owned(),
                "deny" => ws.access.deny = self.string(s)?.to_owned(),
                "denylast" => ws.access.denylast = self.boolean(s)?,
                "options" => {
                    for w in self.words(s)? {
                        if w == "direct" {
                            direct = Some(s.value.pos);
                        } else {
                            self.warn(
                                s.value.pos,
                                format!("unknown websocket option {} (ignored)", quote(w)),
                            );
                        }
                    }
                }
                "mode" => {
                    let m = self.string(s)?;
                    if m == "direct" {
                        direct = Some(s.value.pos);
                        self.warn(
                            s.pos,
                            "mode = \"direct\" is ouistiti's old spelling of options = \"direct\""
                                .to_owned(),
                        );
                    } else {
                        ws.mode = self.mode(s, m)?;
                    }
                }
                "modes" => {
                    let g = self.group(s, "endpoint = \"mode\"; ...")?;
                    for e in g {
                        let m = self.string(e)?;
                        let mode = self.mode(e, m)?;
                        ws.endpoint_modes.push((e.name.clone(), mode));
                    }
                }
                "type" => {
                    let t = self.string(s)?;
                    ws.data_type = t.parse().map_err(|_: String| {
                        self.err(
                            s.value.pos,
                            format!(
                                "expected text, binary or auto for \"type\", found {}",
                                quote(t)
                            ),
                        )
                    })?;
                }
                "origin" => ws.origin = Some(self.origins(s)?),
                "ping_interval_ms" => ws.ping_interval = Some(self.millis(s, 0)?),
                "pong_timeout_ms" => ws.pong_timeout = Some(self.millis(s, 1)?),
                "idle_timeout_ms" => ws.idle_timeout = Some(self.millis(s, 0)?),
                "handshake_timeout_ms" => ws.handshake_timeout = Some(self.millis(s, 1)?),
                "max_message" => {
                    let n = match &s.value.kind {
                        Kind::Str(t) => parse_bytes(t).map_err(|e| {
                            self.err(
                                s.value.pos,
                                format!("expected a byte count for \"max_message\": {e}"),
                            )
                        })?,
                        _ => u64::try_from(self.int(s, 1, i64::MAX, "bytes")?).unwrap_or_default(),
                    };
                    if n == 0 {
                        return Err(self.err(
                            s.value.pos,
                            "expected bytes 1.. for \"max_message\", found 0".to_owned(),
                        ));
                    }
                    ws.max_message = Some(n);
                }
                "context" => ws.context = self.boolean(s)?,
                "links" => {
                    self.warn(s.pos, "links are not supported; use docroot (ignored)".to_owned())
                }
                "server" => self.warn(
                    s.pos,
                    "websocket server (a TCP backend) is not supported; use docroot (ignored)"
                        .to_owned(),
                ),
                _ => self.unknown(s, "websocket"),
            }
        }
        ws.docroot = docroot.ok_or_else(|| {
            self.err(
                pos,
                "expected \"docroot\" (the directory of the backend sockets) in websocket, found none"
                    .to_owned(),
            )
        })?;
        ws.direct = direct.is_some();
        Ok((ws, direct))
    }

    fn mode(&self, s: &Setting, m: &str) -> Result<Mode, ConfigFileError> {
        m.parse().map_err(|_: String| {
            self.err(
                s.value.pos,
                format!(
                    "expected stream, lines, framed or seqpacket for {}, found {}",
                    quote(&s.name),
                    quote(m)
                ),
            )
        })
    }

    fn origins(&self, s: &Setting) -> Result<Vec<String>, ConfigFileError> {
        let list: Vec<String> = match &s.value.kind {
            Kind::Str(_) => self.words(s)?.into_iter().map(str::to_owned).collect(),
            Kind::Array(items) | Kind::List(items) => {
                let mut out = Vec::new();
                for v in items {
                    let Some(o) = v.as_str() else {
                        return Err(self.err(
                            v.pos,
                            format!(
                                "expected an origin string in \"origin\", found {}",
                                v.kind.describe()
                            ),
                        ));
                    };
                    let o = o.trim();
                    if !o.is_empty() {
                        out.push(o.to_owned());
                    }
                }
                out
            }
            _ => return Err(self.type_err(s, "a string or an array of strings")),
        };
        if list.is_empty() {
            return Err(self.err(
                s.value.pos,
                "expected at least one origin for \"origin\" (\"*\" accepts any), found none"
                    .to_owned(),
            ));
        }
        if let Some(bad) = list.iter().find(|o| o.contains(char::is_whitespace)) {
            return Err(self.err(
                s.value.pos,
                format!(
                    "expected origins like \"https://host:port\" for \"origin\", found {}",
                    quote(bad)
                ),
            ));
        }
        Ok(list)
    }

    /// `config_d`: adds the servers of each `*.conf` file in `dir` (or of `dir` if a file).
    fn config_d(
        &mut self,
        s: &Setting,
        dir: &Path,
        out: &mut Vec<Loaded>,
    ) -> Result<(), ConfigFileError> {
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn(
                    s.pos,
                    format!(
                        "config_d {} does not exist (no servers added; a relative config_d is \
                         resolved from the working directory, which -W sets)",
                        dir.display()
                    ),
                );
                return Ok(());
            }
            Err(e) => {
                return Err(
                    self.err(s.value.pos, format!("cannot read config_d {}: {e}", dir.display()))
                )
            }
        };
        let files = if meta.is_dir() {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                self.err(s.value.pos, format!("cannot read config_d {}: {e}", dir.display()))
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
                .collect();
            // By name bytes: the order `ls` shows in the C locale.
            files.sort_unstable_by(|a, b| {
                a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes())
            });
            if files.len() > MAX_CONFIG_D_FILES {
                return Err(self.err(
                    s.value.pos,
                    format!(
                        "expected at most {MAX_CONFIG_D_FILES} .conf files in config_d {}, found {}",
                        dir.display(),
                        files.len()
                    ),
                ));
            }
            files
        } else {
            vec![dir.to_path_buf()]
        };
        for f in files {
            let doc = libconfig::parse_file(&f)?;
            let mut r = Reader { doc: &doc, warnings: &mut *self.warnings };
            for t in &doc.root {
                match t.name.as_str() {
                    "servers" | "server" => r.servers(t, out)?,
                    n => r.warn(
                        t.pos,
                        format!("only servers are read from a config_d file; {} ignored", quote(n)),
                    ),
                }
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// render

fn data_type_name(t: DataType) -> &'static str {
    match t {
        DataType::Text => "text",
        DataType::Binary => "binary",
        DataType::Auto => "auto",
    }
}

fn path_str(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Writes lines at an indentation.
struct Out {
    text: String,
    indent: usize,
}

impl Out {
    fn line(&mut self, s: &str) {
        for _ in 0..self.indent {
            self.text.push_str("  ");
        }
        self.text.push_str(s);
        self.text.push('\n');
    }

    fn set(&mut self, name: &str, value: &str) {
        self.line(&format!("{name} = {value};"));
    }

    fn open(&mut self, name: &str) {
        self.line(&format!("{name} = {{"));
        self.indent += 1;
    }

    fn close(&mut self, tail: &str) {
        self.indent = self.indent.saturating_sub(1);
        self.line(&format!("}}{tail}"));
    }

    fn access(&mut self, a: &AccessList) {
        self.set("allow", &quote(&a.allow));
        self.set("deny", &quote(&a.deny));
        self.set("denylast", if a.denylast { "true" } else { "false" });
    }

    fn millis(&mut self, name: &str, v: Option<Duration>, default: &str) {
        match v {
            Some(d) => self.set(name, &ms(d).to_string()),
            None => self.line(&format!("# {name} = {default}; (wsgate's default)")),
        }
    }
}

/// The effective configuration in libconfig syntax, every default written out. Settings left
/// to wsgate's runtime defaults (the `Option` timeouts, `max_message`, `origin`) are written
/// as comments showing that default, so that loading the output gives back `cfg` (except
/// [`ServerConfig::line`]).
#[must_use]
pub fn render(cfg: &ServiceConfig) -> String {
    let mut o = Out { text: String::new(), indent: 0 };
    o.line("# wsgate: effective configuration, defaults written out");
    if let Some(u) = &cfg.user {
        o.set("user", &quote(u));
    }
    if let Some(p) = &cfg.log_file {
        o.set("log-file", &path_str(p));
    }
    if let Some(p) = &cfg.pid_file {
        o.set("pid-file", &path_str(p));
    }
    if let Some(p) = &cfg.init_d {
        o.set("init_d", &path_str(p));
    }
    if cfg.syslog {
        o.set("syslog", "true");
    }
    o.line("servers = (");
    o.indent += 1;
    let count = cfg.servers.len();
    for (i, s) in cfg.servers.iter().enumerate() {
        o.line("{");
        o.indent += 1;
        if let Some(h) = &s.hostname {
            o.set("hostname", &quote(h));
        }
        match s.addr {
            Some(a) => o.set("addr", &quote(&a.to_string())),
            None => o.line("# addr: all interfaces (dual-stack)"),
        }
        o.set("port", &s.port.to_string());
        o.set("maxclients", &s.maxclients.to_string());
        o.set("keepalivetimeout", &s.keepalive_timeout.as_secs().to_string());
        if let Some(t) = &s.tls {
            o.open("tls");
            o.set("crtfile", &path_str(&t.crtfile));
            o.set("keyfile", &path_str(&t.keyfile));
            if let Some(c) = &t.cachain {
                o.set("cachain", &path_str(c));
            }
            if let Some(c) = &t.client_ca {
                o.set("client_ca", &path_str(c));
            }
            o.close(";");
        }
        if let Some(d) = &s.document {
            o.open("document");
            o.set("docroot", &path_str(&d.docroot));
            o.set("defaultpage", &quote(&d.defaultpage));
            o.access(&d.access);
            o.set("options", if d.dirlisting { "\"dirlisting\"" } else { "\"\"" });
            o.close(";");
        }
        if let Some(w) = &s.websocket {
            o.open("websocket");
            o.set("docroot", &path_str(&w.docroot));
            o.access(&w.access);
            o.set("options", if w.direct { "\"direct\"" } else { "\"\"" });
            o.set("mode", &quote(&w.mode.to_string()));
            if w.endpoint_modes.is_empty() {
                o.line("modes = { };");
            } else {
                o.open("modes");
                for (name, mode) in &w.endpoint_modes {
                    if libconfig::is_name(name) {
                        o.set(name, &quote(&mode.to_string()));
                    } else {
                        // Only reachable for a config built in code: the file syntax has no
                        // way to spell this endpoint as a setting name.
                        o.line(&format!(
                            "# {} = {}; (not a valid setting name)",
                            quote(name),
                            quote(&mode.to_string())
                        ));
                    }
                }
                o.close(";");
            }
            o.set("type", &quote(data_type_name(w.data_type)));
            match &w.origin {
                Some(list) => {
                    let items: Vec<String> = list.iter().map(|s| quote(s)).collect();
                    o.set("origin", &format!("[ {} ]", items.join(", ")));
                }
                None => o.line(
                    r#"# origin = "same"; (the default: no Origin, or the same host:port as Host)"#,
                ),
            }
            o.millis("ping_interval_ms", w.ping_interval, &ms(DEFAULT_PING_INTERVAL).to_string());
            o.millis("pong_timeout_ms", w.pong_timeout, &ms(DEFAULT_PONG_TIMEOUT).to_string());
            o.millis("idle_timeout_ms", w.idle_timeout, "0");
            o.millis(
                "handshake_timeout_ms",
                w.handshake_timeout,
                &ms(DEFAULT_HANDSHAKE_TIMEOUT).to_string(),
            );
            match w.max_message {
                Some(n) => o.set("max_message", &n.to_string()),
                None => {
                    o.line(&format!("# max_message = {DEFAULT_MAX_MESSAGE}; (wsgate's default)"))
                }
            }
            o.set("context", if w.context { "true" } else { "false" });
            o.close(";");
        }
        o.indent = o.indent.saturating_sub(1);
        o.line(if i + 1 < count { "}," } else { "}" });
    }
    o.indent = o.indent.saturating_sub(1);
    o.line(");");
    o.text
}

/// What `wsgate --check` prints: [`render`] of the servers that run, then a comment for each
/// server that does not (one without a websocket section, see [`to_runtime`]).
#[must_use]
pub fn render_check(cfg: &ServiceConfig) -> String {
    let (run, idle): (Vec<ServerConfig>, Vec<ServerConfig>) =
        cfg.servers.iter().cloned().partition(|s| s.websocket.is_some());
    let mut text = render(&ServiceConfig { servers: run, ..cfg.clone() });
    for s in idle {
        text.push_str(&format!(
            "# not run: the server at {}:{} (port {}) has no websocket section\n",
            s.file.display(),
            s.line,
            s.port
        ));
    }
    text
}

/// The runtime configuration of a loaded file: one site per server that has a `websocket`
/// section. `base` supplies what the file does not say (buffer size, verbosity).
///
/// # Errors
/// A [`ConfigFileError`] when no server relays WebSockets, or when the sites do not fit
/// together (see [`crate::config::Config::validate`]).
pub fn to_runtime(
    file: &Path,
    cfg: &ServiceConfig,
    base: &crate::config::Config,
) -> Result<(crate::config::Config, Vec<Warning>), ConfigFileError> {
    use crate::config::{EndpointMode, Site};
    use crate::http::origin::OriginPolicy;
    let mut warnings = Vec::new();
    let mut sites = Vec::new();
    let defaults = Site::default();
    for server in &cfg.servers {
        let Some(ws) = &server.websocket else {
            warnings.push(Warning {
                file: server.file.clone(),
                line: server.line,
                message: NOT_RUN.replace("{port}", &server.port.to_string()),
            });
            continue;
        };
        // The certificate and key are loaded now, once, so that a typo shows at start-up (and
        // with --check) at the line that names the file.
        let tls = match &server.tls {
            Some(t) => Some(
                crate::config::SiteTls::load(t.into())
                    .map_err(|e| ConfigFileError::at(t.place_of(e.path()), format!("tls: {e}")))?,
            ),
            None => None,
        };
        if server.document.as_ref().is_some_and(|d| d.dirlisting) {
            warnings.push(Warning {
                file: server.file.clone(),
                line: server.line,
                message: "document: directory listings are not generated (\"dirlisting\" ignored)"
                    .into(),
            });
        }
        let ip = server.addr.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        let origin = match &ws.origin {
            None => OriginPolicy::SameHost,
            Some(list) => OriginPolicy::parse(&list.join(",")),
        };
        sites.push(Site {
            listen: std::net::SocketAddr::new(ip, server.port),
            docroot: ws.docroot.clone(),
            mode: ws.mode,
            endpoint_modes: ws
                .endpoint_modes
                .iter()
                .map(|(name, mode)| EndpointMode { name: name.clone(), mode: *mode })
                .collect(),
            data_type: ws.data_type,
            access: ws.access.clone(),
            origin,
            context: ws.context.then(Vec::new),
            document: server.document.as_ref().map(|d| crate::config::Document {
                root: d.docroot.clone(),
                default_page: d.defaultpage.clone(),
                access: d.access.clone(),
            }),
            keepalive: server.keepalive_timeout,
            max_connections: server.maxclients,
            max_message: ws.max_message.unwrap_or(defaults.max_message),
            handshake_timeout: ws.handshake_timeout.unwrap_or(defaults.handshake_timeout),
            ping_interval: match ws.ping_interval {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => defaults.ping_interval,
            },
            pong_timeout: ws.pong_timeout.unwrap_or(defaults.pong_timeout),
            idle_timeout: match ws.idle_timeout {
                Some(d) if d.is_zero() => None,
                other => other.or(defaults.idle_timeout),
            },
            close_timeout: defaults.close_timeout,
            tls,
            direct: ws.direct,
        });
    }
    let at =
        |message: String| ConfigFileError { file: file.to_path_buf(), line: 0, col: 0, message };
    if sites.is_empty() {
        return Err(at("no server has a websocket section: nothing to relay".into()));
    }
    let config = crate::config::Config { sites, ..base.clone() };
    config.validate().map_err(|e| at(e.0))?;
    Ok((config, warnings))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn load_text(text: &str) -> (ServiceConfig, Vec<Warning>) {
        load_str(text, Path::new("t.conf")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(text: &str) -> String {
        match load_str(text, Path::new("t.conf")) {
            Ok(c) => panic!("loaded: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const WS: &str = "websocket = { docroot = \"/run/ws\"; };";

    #[test]
    fn defaults() {
        let (c, w) = load_text(&format!("servers = ({{ {WS} }});"));
        assert!(w.is_empty(), "{w:?}");
        let s = &c.servers[0];
        assert_eq!((s.port, s.addr, s.maxclients), (80, None, DEFAULT_MAX_CONNECTIONS));
        assert_eq!(s.keepalive_timeout, Duration::ZERO);
        assert_eq!(s.line, 1);
        let ws = s.websocket.as_ref().unwrap();
        assert_eq!(ws.access, AccessList::default());
        assert_eq!(
            (ws.mode, ws.data_type, ws.direct, ws.context),
            (Mode::Stream, DataType::Text, false, false)
        );
        assert_eq!(ws.origin, None);
        assert_eq!(ws.ping_interval, None);
    }

    #[test]
    fn websocket_keys() {
        let (c, w) = load_text(
            "servers = ({ websocket = { docroot = \"/w\"; options = \"direct\"; mode = \"framed\";
              modes = { chat = \"lines\"; raw = \"seqpacket\"; }; type = \"auto\";
              origin = \"https://a.example, *\"; ping_interval_ms = 0; pong_timeout_ms = 500;
              idle_timeout_ms = 60000; handshake_timeout_ms = 2000; max_message = \"64K\";
              context = true; links = ({ origin = \"a\"; destination = \"b\"; }); }; });",
        );
        let ws = c.servers[0].websocket.clone().unwrap();
        assert!(ws.direct);
        assert_eq!(ws.mode, Mode::Framed);
        assert_eq!(
            ws.endpoint_modes,
            vec![("chat".into(), Mode::Lines), ("raw".into(), Mode::SeqPacket)]
        );
        assert_eq!(ws.data_type, DataType::Auto);
        assert_eq!(ws.origin, Some(vec!["https://a.example".into(), "*".into()]));
        assert_eq!(ws.ping_interval, Some(Duration::ZERO));
        assert_eq!(ws.pong_timeout, Some(Duration::from_millis(500)));
        assert_eq!(ws.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(ws.handshake_timeout, Some(Duration::from_secs(2)));
        assert_eq!(ws.max_message, Some(65536));
        assert!(ws.context);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].to_string(), "t.conf:5: links are not supported; use docroot (ignored)");
        let (c, _) = load_text("servers = ({ websocket = { docroot = \"/w\"; origin = [\"a\", \"b\"]; max_message = 100; }; });");
        let ws = c.servers[0].websocket.clone().unwrap();
        assert_eq!(ws.origin, Some(vec!["a".into(), "b".into()]));
        assert_eq!(ws.max_message, Some(100));
    }

    #[test]
    fn old_direct_mode_spelling() {
        let (c, w) =
            load_text("servers = ({ websocket = { docroot = \"/w\"; mode = \"direct\"; }; });");
        assert!(c.servers[0].websocket.as_ref().unwrap().direct);
        assert!(w[0].message.contains("old spelling"));
        let e = error("servers = ({ tls = { crtfile = \"c\"; keyfile = \"k\"; };\n websocket = { docroot = \"/w\"; mode = \"direct\"; }; });");
        assert!(e.starts_with("t.conf:2:39: direct mode cannot work over TLS"), "{e}");
    }

    #[test]
    fn warnings_for_ignored_and_unknown() {
        let (_, w) = load_text(
            "version = \"x\";\nfoo = 1;\nservers = ({\n version = \"HTTP11\";\n cgi = { docroot = \"/c\"; };\n bar = 2;\n websocket = { docroot = \"/w\"; baz = 1; options = \"zap\"; };\n tls = { crtfile = \"c\"; pemfile = \"k\"; dhmfile = \"d\"; qux = 1; };\n});",
        );
        let got: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert!(
            got.contains(
                &"t.conf:1: ouistiti setting \"version\" is not used by wsgate (ignored)"
                    .to_owned()
            ),
            "{got:#?}"
        );
        assert!(got.contains(&"t.conf:2: unknown key \"foo\" (ignored)".to_owned()));
        assert!(got.contains(
            &"t.conf:4: ouistiti setting \"version\" is not used by wsgate (ignored)".to_owned()
        ));
        assert!(got.contains(
            &"t.conf:5: ouistiti module \"cgi\" is not part of wsgate (ignored)".to_owned()
        ));
        assert!(got.contains(&"t.conf:6: unknown key \"bar\" in server (ignored)".to_owned()));
        assert!(got.contains(&"t.conf:7: unknown key \"baz\" in websocket (ignored)".to_owned()));
        assert!(got.contains(&"t.conf:7: unknown websocket option \"zap\" (ignored)".to_owned()));
        assert!(got.iter().any(|g| g.starts_with("t.conf:8: dhmfile is not used")));
        assert!(got.contains(&"t.conf:8: unknown key \"qux\" in tls (ignored)".to_owned()));
    }

    #[test]
    fn document_spellings_and_lists() {
        let (c, w) = load_text(
            "servers = ({ static_file = ({ docroot = \"/a\"; options = \"range, dirlisting\"; }, { docroot = \"/b\"; });\n filestorage = { docroot = \"/c\"; }; });",
        );
        let d = c.servers[0].document.as_ref().unwrap();
        assert_eq!(d.docroot, PathBuf::from("/a"));
        assert!(d.dirlisting);
        assert_eq!(d.defaultpage, "index.html");
        let got: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert!(
            got.iter().any(|g| g.contains("only the first static_file of a list is used")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|g| g.starts_with("t.conf:2: filestorage (ouistiti's read/write")),
            "{got:?}"
        );
        assert!(got.iter().any(|g| g.contains("nothing to relay")));
    }

    #[test]
    fn listener_overlap() {
        let s = |addr: Option<&str>, port| ServerConfig {
            hostname: None,
            port,
            addr: addr.map(|a| a.parse().unwrap()),
            maxclients: 1,
            keepalive_timeout: Duration::ZERO,
            tls: None,
            document: None,
            websocket: None,
            file: PathBuf::new(),
            line: 1,
        };
        assert!(overlaps(&s(None, 80), &s(Some("::1"), 80)));
        assert!(!overlaps(&s(None, 80), &s(None, 443)));
        assert!(!overlaps(&s(None, 0), &s(None, 0)));
        assert!(overlaps(&s(Some("0.0.0.0"), 80), &s(Some("127.0.0.1"), 80)));
        assert!(!overlaps(&s(Some("0.0.0.0"), 80), &s(Some("::1"), 80)));
        assert!(overlaps(&s(Some("::"), 80), &s(Some("127.0.0.1"), 80)));
        assert!(overlaps(&s(Some("::1"), 80), &s(Some("::1"), 80)));
        assert!(!overlaps(&s(Some("::1"), 80), &s(Some("127.0.0.1"), 80)));
        assert!(overlaps(&s(Some("127.0.0.1"), 80), &s(Some("0.0.0.0"), 80)));
    }

    #[test]
    fn render_round_trips() {
        let (c, _) = load_text(
            "user = \"u\\\"q\"; pid-file = \"/run/p\"; log-file = \"/l\"; init_d = \"/i\"; syslog = true;
             servers = ({ addr = \"::1\"; port = 8080; maxclients = 5; keepalivetimeout = 7;
               document = { docroot = \"/d\"; defaultpage = \"x.html\"; allow = \"a\"; deny = \"b\"; denylast = true; options = \"dirlisting\"; };
               websocket = { docroot = \"/w\"; options = \"direct\"; modes = { e = \"framed\"; }; origin = \"*\"; max_message = 9; idle_timeout_ms = 0; }; },
             { port = 443; tls = { crtfile = \"c\"; keyfile = \"k\"; cachain = \"ca\"; }; websocket = { docroot = \"/w2\"; }; });",
        );
        let text = render(&c);
        let (back, w) =
            load_str(&text, Path::new("rendered.conf")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(w.is_empty(), "{w:?}\n{text}");
        assert_eq!(back.without_places(), c.clone().without_places(), "{text}");
        assert!(text.contains("# ping_interval_ms = 30000; (wsgate's default)"), "{text}");
        assert!(text.contains("# addr: all interfaces"));
    }
}
