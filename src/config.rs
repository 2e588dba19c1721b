//! The validated configuration: every limit the gateway enforces, with its default.
//!
//! [`crate::cli`] and [`crate::config_file`] each fill a [`Settings`], and [`Settings::build`]
//! turns it into a [`Config`] (see [`build`] for the pipeline); nothing else decides policy.
//! Defaults are sized for the smallest router we target (32 MB of RAM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::origin::OriginPolicy;
use crate::relay::acl::AccessList;
use crate::relay::codec::{DataType, Mode};

pub mod build;

pub use build::{alternatives, parse_bytes, parse_duration, BuildError, Settings, SiteSettings};

/// Concurrent WebSocket connections (handshakes included) when nothing else is said.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;
/// Largest slab we accept: the slot index must fit the token layout (see `event_loop::token`).
pub const MAX_CONNECTIONS: u32 = 32_767;
/// Size of each relay buffer. Four per busy connection, none per idle one.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;
/// Smallest buffer that still holds a control frame, a record header and some payload.
pub const MIN_BUFFER_SIZE: usize = 1024;
/// Largest buffer we accept.
pub const MAX_BUFFER_SIZE: usize = 16 * 1024 * 1024;
/// Largest client message (sum of its fragments); bigger ones get close 1009. Large messages
/// stream through the fixed buffers, so this is policy, not memory.
pub const DEFAULT_MAX_MESSAGE: u64 = 1024 * 1024;
/// Time allowed from accept to a complete upgrade request (slowloris).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence from the client after which the gateway pings it.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Time a ping may go unanswered before the connection is closed.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay mode for endpoints without an override.
pub const DEFAULT_MODE: Mode = Mode::Stream;
/// Frame type of backend data in the modes that do not carry one.
pub const DEFAULT_DATA_TYPE: DataType = DataType::Text;
/// Time allowed for the closing handshake and for flushing a refusal.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Programs of exec links running at once, all endpoints together, when nothing else is said.
/// Each is a process of its own: on a 32 MB router a dozen shells is already a lot.
pub const DEFAULT_EXEC_LIMIT: u32 = 16;
/// Largest process limit we accept (the loop reserves a token per program's stderr, see
/// `event_loop::token`).
pub const MAX_EXEC_LIMIT: u32 = 1024;

/// A document's page served for a directory when the source names none.
pub const DEFAULT_PAGE: &str = "index.html";

/// Static pages of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Directory of the pages.
    pub root: PathBuf,
    /// Served for a directory (default `index.html`).
    pub default_page: String,
    /// allow / deny on the page path.
    pub access: AccessList,
}

/// Time an idle keep-alive HTTP connection stays open between requests.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

/// A per-endpoint relay mode override (`-m NAME=MODE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointMode {
    /// The endpoint name (URL path without its leading '/').
    pub name: String,
    /// Its mode.
    pub mode: Mode,
}

/// The whole service: its listeners (sites) and what they share.
#[derive(Clone, Debug)]
pub struct Config {
    /// One listener each, with its own policy and limits.
    pub sites: Vec<Site>,
    /// Size of each relay buffer (shared pool).
    pub buffer_size: usize,
    /// Log level: 0 errors and warnings, 1 connection lines, 2 debug.
    pub verbosity: u8,
    /// Programs of exec links running at once, all sites together: past it a new connection
    /// to an exec link is answered 503. Fixed at start (a reload cannot change it).
    pub exec_limit: u32,
    /// permessage-deflate's compressors and their memory, for the endpoints that enable it
    /// ([`Site::compression`]). Fixed at start (a reload cannot change it).
    pub deflate: Deflate,
}

/// permessage-deflate's settings for the whole service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// The compressors' window, in bits (9..=15): 2^bits bytes of history.
    pub window_bits: u8,
    /// zlib's compression level (1 fastest .. 9 smallest).
    pub level: u8,
    /// Bytes for compression contexts, all connections together, allocated at start-up. Past
    /// what it holds, new connections are answered without compression.
    pub memory: u64,
}

/// The compressors' window when none is configured: zlib's, the largest.
pub const DEFAULT_DEFLATE_WINDOW_BITS: u8 = 15;
/// The compression level when none is configured.
pub const DEFAULT_DEFLATE_LEVEL: u8 = 6;
/// The compression memory when none is configured: at a 15-bit window, a compressor, a
/// literal-only one and 32 connections' decompressors (relay::compress::Sizes splits it).
pub const DEFAULT_DEFLATE_MEMORY: u64 = 2 << 20;

/// Where permessage-deflate is offered: every endpoint of a site, or some.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compression {
    /// The endpoints without an entry of their own.
    pub all: bool,
    /// Endpoints (without their leading '/') with their own setting.
    pub endpoints: Vec<(String, bool)>,
}

impl Compression {
    /// Is compression offered on `endpoint`?
    #[must_use]
    pub fn on(&self, endpoint: &str) -> bool {
        self.endpoints.iter().find(|(n, _)| n == endpoint).map_or(self.all, |(_, on)| *on)
    }

    /// On anywhere?
    #[must_use]
    pub fn any(&self) -> bool {
        self.all || self.endpoints.iter().any(|(_, on)| *on)
    }
}

/// The error for compression where the site hands its clients over (direct mode).
pub const DIRECT_COMPRESSION: &str = "compression with direct mode: the backend gets the \
                                      client's socket, and the gateway cannot compress for it";

/// Does `memory` hold the compression contexts the smallest pool needs (a compressor, a
/// literal-only one and a decompressor) at a window of `window_bits`?
///
/// # Errors
/// It does not: what it holds and the least that would do.
pub fn deflate_memory_holds(memory: u64, window_bits: u8) -> Result<(), String> {
    #[cfg(feature = "deflate")]
    {
        use crate::relay::compress::Sizes;
        if Sizes::of(usize::try_from(memory).unwrap_or(usize::MAX), window_bits).is_none() {
            return Err(format!(
                "compression memory of {memory} bytes holds no compressor and decompressor at a \
                 window of {window_bits} bits; at least {} bytes",
                Sizes::minimum(window_bits)
            ));
        }
    }
    #[cfg(not(feature = "deflate"))]
    let _ = (memory, window_bits);
    Ok(())
}

/// The name of the one compression wsgate has, as configurations spell it.
pub const COMPRESSION_NAME: &str = "permessage-deflate";

/// Reads a compression name: `permessage-deflate` on, `none` off. Both sources (the command
/// line and the file) read names here, so each places the error at its flag or line.
///
/// # Errors
/// Another name, or `permessage-deflate` in a build without the `deflate` feature.
pub fn parse_compression(s: &str) -> Result<bool, String> {
    match s {
        #[cfg(feature = "deflate")]
        COMPRESSION_NAME => Ok(true),
        #[cfg(not(feature = "deflate"))]
        COMPRESSION_NAME => Err(format!("{s:?}: {WITHOUT_DEFLATE}")),
        "none" => Ok(false),
        _ => Err(format!("unknown compression {s:?} (permessage-deflate, none)")),
    }
}

/// What `wsgate --check` prints for a configuration given on the command line: each site's
/// listener and what it serves, and the limits. (A derived `Debug` of the whole configuration
/// would cost the shipped binary about 10 KiB.)
#[derive(Debug)]
pub struct Summary<'a>(&'a Config);

impl core::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let c = self.0;
        for s in &c.sites {
            write!(f, "listen {} docroot {} mode {}", s.listen, s.docroot.display(), s.mode)?;
            for (flag, on) in [
                ("tls", s.tls.is_some()),
                ("direct", s.direct),
                ("auth", s.auth.is_some()),
                ("pages", s.document.is_some()),
                ("compression", s.compression.any()),
            ] {
                if on {
                    write!(f, " {flag}")?;
                }
            }
            writeln!(
                f,
                "\n  max_connections {} max_message {} links {}",
                s.max_connections,
                s.max_message,
                s.links.len()
            )?;
        }
        writeln!(
            f,
            "buffer_size {} exec_limit {} verbosity {}",
            c.buffer_size, c.exec_limit, c.verbosity
        )?;
        if c.sites.iter().any(|s| s.compression.any()) {
            let d = c.deflate;
            writeln!(
                f,
                "compression_window {} compression_level {} compression_memory {}",
                d.window_bits, d.level, d.memory
            )?;
        }
        writeln!(f, "# ok")
    }
}

/// Why a build without the `deflate` feature refuses compression.
const WITHOUT_DEFLATE: &str =
    "this wsgate was built without it (cargo feature `deflate`; the default build has it)";

impl Config {
    /// What `wsgate --check` prints for it.
    #[must_use]
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }

    /// A service with one site.
    #[must_use]
    pub fn single(site: Site) -> Self {
        Self { sites: vec![site], ..Self::default() }
    }

    /// Checks every site and what they share.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sites.is_empty() {
            return Err(ConfigError("no listener configured".into()));
        }
        if self.sites.len() > MAX_SITES {
            return Err(ConfigError(format!("at most {MAX_SITES} listeners")));
        }
        if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&self.buffer_size) {
            return Err(ConfigError(format!(
                "buffer size must be {MIN_BUFFER_SIZE}..={MAX_BUFFER_SIZE} bytes, not {}",
                self.buffer_size
            )));
        }
        let mut total = 0u32;
        for (i, site) in self.sites.iter().enumerate() {
            site.validate()?;
            // Port 0 asks the kernel for a free port per listener, so those never clash.
            let clash = |o: &Site| o.listen == site.listen && site.listen.port() != 0;
            if self.sites.iter().take(i).any(clash) {
                return Err(ConfigError(format!("two listeners on {}", site.listen)));
            }
            total = total.saturating_add(site.max_connections + site.overflow_slots());
        }
        if total > MAX_CONNECTIONS {
            return Err(ConfigError(format!(
                "at most {MAX_CONNECTIONS} connections in all, not {total}"
            )));
        }
        if self.exec_limit > MAX_EXEC_LIMIT {
            return Err(ConfigError(format!(
                "the exec process limit is at most {MAX_EXEC_LIMIT}, not {}",
                self.exec_limit
            )));
        }
        let exec = self.sites.iter().flat_map(|s| &s.links).find(|l| l.target.kind() == "exec");
        if let (Some(l), 0) = (exec, self.exec_limit) {
            return Err(ConfigError(format!(
                "link {:?} runs a program per connection, but the exec process limit is 0",
                l.origin
            )));
        }
        let d = self.deflate;
        if !(9..=15).contains(&d.window_bits) {
            return Err(ConfigError(format!(
                "the compression window is 9 to 15 bits, not {}",
                d.window_bits
            )));
        }
        if !(1..=9).contains(&d.level) {
            return Err(ConfigError(format!("the compression level is 1 to 9, not {}", d.level)));
        }
        if self.sites.iter().any(|s| s.compression.any()) {
            // A configuration built in code; the command line and the file refuse the name
            // itself, at its flag or line (see `parse_compression`).
            if cfg!(not(feature = "deflate")) {
                return Err(ConfigError(format!(
                    "compression: {COMPRESSION_NAME}: {WITHOUT_DEFLATE}"
                )));
            }
            deflate_memory_holds(d.memory, d.window_bits).map_err(ConfigError)?;
        }
        if let Some(s) = self.sites.iter().find(|s| s.direct && s.compression.any()) {
            return Err(ConfigError(format!("{}: {DIRECT_COMPRESSION}", s.listen)));
        }
        Ok(())
    }
}

/// Most listeners in one service.
pub const MAX_SITES: usize = 8;

/// One listener: where it listens and what its connections may do.
#[derive(Clone, Debug)]
pub struct Site {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding the backend sockets.
    pub docroot: PathBuf,
    /// Relay mode for endpoints without an override.
    pub mode: Mode,
    /// Per-endpoint overrides.
    pub endpoint_modes: Vec<EndpointMode>,
    /// Frame type of backend data in stream, lines and seqpacket modes.
    pub data_type: DataType,
    /// allow / deny / denylast.
    pub access: AccessList,
    /// Which `Origin` headers are accepted.
    pub origin: OriginPolicy,
    /// Static pages, when configured: requests without `Upgrade` are served from there.
    pub document: Option<Document>,
    /// Keep-alive between static requests; zero closes after each response.
    pub keepalive: Duration,
    /// Connection context for the backend: `None` off, otherwise the extra request headers to
    /// include (see `relay::context`).
    pub context: Option<Vec<String>>,
    /// The endpoints that get the context, in allow/deny's pattern language, matched against
    /// the decoded path (with its leading '/'); empty: every endpoint. A backend that does not
    /// read a context (an echo) then shares a site with one that does.
    pub context_endpoints: String,
    /// This site's share of the connection slab.
    pub max_connections: u32,
    /// Largest client message.
    pub max_message: u64,
    /// Handshake deadline.
    pub handshake_timeout: Duration,
    /// Ping after this much client silence; `None` disables pings.
    pub ping_interval: Option<Duration>,
    /// Close when a ping is not answered within this.
    pub pong_timeout: Duration,
    /// Close after this much silence both ways; `None` disables.
    pub idle_timeout: Option<Duration>,
    /// Closing-handshake and refusal-flush deadline.
    pub close_timeout: Duration,
    /// `wss://`: the certificate files and what was loaded from them. `None`: plain `ws://`.
    pub tls: Option<SiteTls>,
    /// Direct mode (ouistiti's `options = "direct"`): after the 101, the client's socket is
    /// handed to the backend instead of relayed. Not with TLS.
    pub direct: bool,
    /// The path of the metrics page (see [`crate::event_loop::metrics`]); none by default.
    pub metrics: Option<String>,
    /// Endpoints whose backend the configuration names (see [`crate::relay::link`]); they
    /// win over the docroot.
    pub links: Vec<crate::relay::link::Link>,
    /// Authentication before the upgrade and before pages (see [`crate::auth`]).
    pub auth: Option<AuthPolicy>,
    /// Where permessage-deflate is offered (nowhere by default).
    pub compression: Compression,
}

/// Who may open what: the paths that need a login, the user database that checks it, and the
/// groups that may pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthPolicy {
    /// The user database (the JSON-RPC `auth` plugin's file).
    pub db: PathBuf,
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// Paths (decoded, with their leading '/') that need a login, in allow/deny's pattern
    /// language (see [`crate::relay::acl`]); every path by default.
    pub protect: String,
    /// Paths that do not, even when `protect` names them (a login page, its style sheet).
    pub unprotect: String,
    /// The groups allowed, any one of them; any user when empty.
    pub require: Vec<String>,
    /// Browser and script sessions: a login endpoint and signed tokens. Without it, HTTP Basic
    /// is the only credential.
    pub session: Option<SessionPolicy>,
    /// Endpoints with groups of their own, first match wins: each needs a login, and its groups
    /// replace `require` there.
    pub rules: Vec<AuthRule>,
    /// Client certificates that identify their holder (a TLS listener with client CAs).
    pub certificate: Option<CertificateRule>,
}

/// Paths (allow/deny's patterns) that need a login and the groups that may open them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRule {
    /// The paths.
    pub paths: String,
    /// The groups, any one of them; any user when empty.
    pub require: Vec<String>,
}

/// Which verified client certificates identify their holder: the subject's and the issuer's
/// names (rendered `/C=FR/O=Acme/CN=device1`, see [`crate::auth::x509`]) must match these
/// patterns; the subject's common name becomes the user, in `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRule {
    /// Pattern for the subject (every subject when empty).
    pub subject: String,
    /// Pattern for the issuer (every issuer the client CAs trust when empty).
    pub issuer: String,
    /// The group of a certificate's user.
    pub group: String,
}

/// The group of certificate users when none is configured.
pub const DEFAULT_CERTIFICATE_GROUP: &str = "certificate";

/// Sessions: what the login endpoint gives (a cookie, and a token for `Authorization: Bearer`)
/// and how long it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// The session key's file (made at the first start, 0600).
    pub key: PathBuf,
    /// The endpoint's path: `POST PATH/login`, `POST PATH/logout`, `GET PATH` (who am I).
    pub path: String,
    /// How long a session lasts.
    pub expire: Duration,
}

/// The login endpoint's path when none is configured.
pub const DEFAULT_SESSION_PATH: &str = "/session";
/// A session's length when none is configured.
pub const DEFAULT_SESSION_EXPIRE: Duration = Duration::from_secs(3600);
/// The longest session.
pub const MAX_SESSION_EXPIRE: Duration = Duration::from_secs(30 * 24 * 3600);

impl SessionPolicy {
    /// Sessions keyed by the file `key`, with the default path and length.
    #[must_use]
    pub fn new(key: PathBuf) -> Self {
        Self { key, path: DEFAULT_SESSION_PATH.to_owned(), expire: DEFAULT_SESSION_EXPIRE }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.key.as_os_str().is_empty() {
            return Err(ConfigError("auth sessions need a key file (session_key)".into()));
        }
        let p = self.path.as_bytes();
        let segment_ok = |s: &[u8]| {
            !s.is_empty()
                && s != b"."
                && s != b".."
                && s.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        };
        if p.len() > 64
            || p.first() != Some(&b'/')
            || !p.split(|&b| b == b'/').skip(1).all(segment_ok)
        {
            return Err(ConfigError(format!(
                "auth session path {:?}: '/' and 1 to 63 characters of A-Z a-z 0-9 - . _ ~ in \
                 '/'-separated segments",
                self.path
            )));
        }
        if self.expire < Duration::from_secs(60) || self.expire > MAX_SESSION_EXPIRE {
            return Err(ConfigError(format!(
                "auth expire {} s: 60 s to {} s (30 days)",
                self.expire.as_secs(),
                MAX_SESSION_EXPIRE.as_secs()
            )));
        }
        Ok(())
    }
}

/// The realm when none is configured.
pub const DEFAULT_REALM: &str = "wsgate";

impl AuthPolicy {
    /// The rule of `path`, if one names it.
    fn rule(&self, path: &str) -> Option<&AuthRule> {
        self.rules.iter().find(|r| crate::relay::acl::matches(&r.paths, path))
    }

    /// Does `path` need a login?
    #[must_use]
    pub fn protects(&self, path: &str) -> bool {
        self.rule(path).is_some()
            || crate::relay::acl::matches(&self.protect, path)
                && !crate::relay::acl::matches(&self.unprotect, path)
    }

    /// May a user of `groups` (comma-separated) open `path`? Its rule's groups, or `require`.
    #[must_use]
    pub fn admits(&self, path: &str, groups: &str) -> bool {
        let require = self.rule(path).map_or(&self.require, |r| &r.require);
        require.is_empty() || groups.split(',').any(|g| require.iter().any(|r| r == g))
    }

    /// May a user of `group` open anything that needs a login (the login endpoint's question)?
    #[must_use]
    pub fn admits_anywhere(&self, group: &str) -> bool {
        let any = |require: &Vec<String>| require.is_empty() || require.iter().any(|r| r == group);
        any(&self.require) || self.rules.iter().any(|r| any(&r.require))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.db.as_os_str().is_empty() {
            return Err(ConfigError("auth needs a user database (dbname, --auth-db)".into()));
        }
        if self.realm.is_empty()
            || self.realm.len() > 64
            || self.realm.chars().any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(ConfigError(format!(
                "auth realm {:?}: 1 to 64 characters, no '\"', no '\\', no control character",
                self.realm
            )));
        }
        let groups = self.rules.iter().flat_map(|r| &r.require).chain(&self.require);
        for g in groups.chain(self.certificate.as_ref().map(|c| &c.group)) {
            if crate::auth::credentials::user_name(g.as_bytes()).is_err() {
                return Err(ConfigError(format!("auth require: {g:?} is not a group name")));
            }
        }
        if self.rules.iter().any(|r| r.paths.is_empty()) {
            return Err(ConfigError("auth rule: a rule names no path".into()));
        }
        self.session.as_ref().map_or(Ok(()), SessionPolicy::validate)
    }
}

/// A `wss://` site's TLS: the files, and the server configuration built from them when the
/// [`Config`] was (at start-up, and again for each SIGHUP): certificates are read once per load.
#[derive(Clone)]
pub struct SiteTls {
    /// The certificate, key and CA files.
    pub files: crate::tls::TlsFiles,
    /// rustls' configuration for the site's connections.
    pub server: std::sync::Arc<rustls::ServerConfig>,
}

/// The files only (`wsgate --check` prints them): rustls' `Debug` of its configuration would
/// keep the `Debug` of every type it holds (providers, verifiers, caches) in the binary, about
/// 10 KB of the shipped gateway, to print what is the same for every site.
impl core::fmt::Debug for SiteTls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SiteTls").field("files", &self.files).finish_non_exhaustive()
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Site {
    /// Checks the limits against each other.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(ConfigError(format!(
                "max connections must be 1..={MAX_CONNECTIONS}, not {}",
                self.max_connections
            )));
        }
        if self.max_message == 0 {
            return Err(ConfigError("max message size must not be 0".into()));
        }
        if self.handshake_timeout.is_zero() || self.close_timeout.is_zero() {
            return Err(ConfigError("handshake and close timeouts must not be 0".into()));
        }
        if self.ping_interval.is_some() && self.pong_timeout.is_zero() {
            return Err(ConfigError("pong timeout must not be 0 when pings are on".into()));
        }
        if self.direct && self.tls.is_some() {
            return Err(ConfigError(
                "direct mode cannot work over TLS: TLS state cannot move to another process".into(),
            ));
        }
        if let Some(m) = &self.metrics {
            let name = m.strip_prefix('/').unwrap_or_default();
            if name.is_empty()
                || crate::relay::path::decode(m, &mut [0; crate::relay::path::MAX_PATH]).ok()
                    != Some(m.as_str())
            {
                return Err(ConfigError(format!(
                    "metrics {m:?}: a path, as /metrics (no query, no escapes, no dot segments)"
                )));
            }
        }
        if let Some(a) = &self.auth {
            a.validate()?;
            let client_ca = self.tls.as_ref().is_some_and(|t| t.files.client_ca.is_some());
            if a.certificate.is_some() && !client_ca {
                return Err(ConfigError(
                    "auth certificate: client certificates need a TLS listener with client_ca"
                        .into(),
                ));
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            if self.links.iter().take(i).any(|o| o.origin == l.origin) {
                return Err(ConfigError(format!("two links for origin {:?}", l.origin)));
            }
            if self.direct && l.target.kind() != "unix" {
                return Err(ConfigError(format!(
                    "link {:?}: direct mode hands the client's socket over a UNIX socket; its \
                     {} target cannot take it",
                    l.origin,
                    l.target.kind()
                )));
            }
        }
        Ok(())
    }

    /// The relay mode configured for endpoint `name`.
    #[must_use]
    pub fn mode_for(&self, name: &str) -> Mode {
        self.endpoint_modes.iter().find(|e| e.name == name).map_or(self.mode, |e| e.mode)
    }

    /// Slots kept beyond `max_connections` to answer 503 politely while full.
    #[must_use]
    pub fn overflow_slots(&self) -> u32 {
        (self.max_connections / 8).clamp(2, 64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(".5m").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5.").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0.0000000006").unwrap(), Duration::from_nanos(1));
        assert_eq!(parse_duration("8760h").unwrap(), Duration::from_secs(86_400 * 365));
        for bad in ["", ".", "1.2.3", "..5", "1.5.s"] {
            assert_eq!(parse_duration(bad), Err(format!("bad duration {bad:?}")));
        }
        for far in ["8760.0001h", "31536001", "99999999999999999999999999h"] {
            assert_eq!(parse_duration(far), Err(format!("duration {far:?} out of range")));
        }
        assert!(parse_duration("1d").unwrap_err().contains("bad duration unit"));
        assert_eq!(parse_bytes("16K").unwrap(), 16384);
        assert_eq!(parse_bytes("32M").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("K").is_err());
        assert!(parse_bytes("99999999999999G").is_err());
    }

    /// The same durations as reading the number as a float and rounding to the nanosecond.
    #[test]
    fn durations_as_by_float() {
        let by_float = |s: &str| -> Option<Duration> {
            let (num, unit) =
                s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
            let n: f64 = num.parse().ok()?;
            let secs = match unit {
                "ms" => n / 1000.0,
                "m" => n * 60.0,
                "h" => n * 3600.0,
                _ => n,
            };
            (secs <= 86_400.0 * 365.0).then(|| Duration::from_secs_f64(secs))
        };
        for num in [
            "0",
            "1",
            "0.1",
            "2.5",
            "10.25",
            "59.999",
            ".001",
            "1.000001",
            "3600",
            "123.456789",
            "7.",
            "525600",
        ] {
            for unit in ["", "ms", "s", "m", "h"] {
                let s = format!("{num}{unit}");
                let (exact, float) = (parse_duration(&s).ok(), by_float(&s));
                let gap = match (exact, float) {
                    (Some(a), Some(b)) => a.abs_diff(b),
                    _ => {
                        assert_eq!(exact, float, "{s}");
                        continue;
                    }
                };
                assert!(gap <= Duration::from_nanos(1), "{s}: {exact:?} vs {float:?}");
            }
        }
    }

    #[test]
    fn rules_protect_their_paths_with_their_own_groups() {
        let policy = AuthPolicy {
            db: "/db".into(),
            realm: DEFAULT_REALM.into(),
            protect: "^/chat$".into(),
            unprotect: String::new(),
            require: vec!["users".into()],
            session: None,
            rules: vec![
                AuthRule { paths: "^/admin*".into(), require: vec!["root".into()] },
                AuthRule { paths: "^/admin/open$,^/status$".into(), require: Vec::new() },
            ],
            certificate: None,
        };
        assert!(
            policy.protects("/chat") && policy.protects("/admin/x") && policy.protects("/status")
        );
        assert!(!policy.protects("/echo"));
        assert!(policy.admits("/chat", "users") && !policy.admits("/chat", "root"));
        assert!(policy.admits("/admin/x", "root") && !policy.admits("/admin/x", "users"));
        // First match wins: /admin/open is the root rule's.
        assert!(!policy.admits("/admin/open", "users"));
        // A rule without groups admits any user; a token's groups are comma-separated.
        assert!(policy.admits("/status", "guests") && policy.admits("/admin", "a,root"));
        assert!(policy.admits_anywhere("guests") && policy.admits_anywhere("root"));
        let strict = AuthPolicy { rules: policy.rules.get(..1).unwrap().to_vec(), ..policy };
        assert!(!strict.admits_anywhere("guests") && strict.admits_anywhere("users"));
    }

    #[test]
    fn compression_names() {
        assert_eq!(parse_compression("none"), Ok(false));
        assert_eq!(
            parse_compression("gzip"),
            Err("unknown compression \"gzip\" (permessage-deflate, none)".into())
        );
        #[cfg(feature = "deflate")]
        assert_eq!(parse_compression("permessage-deflate"), Ok(true));
        #[cfg(not(feature = "deflate"))]
        assert!(parse_compression("permessage-deflate").unwrap_err().contains("built without"));
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(Config::default().validate(), Ok(()));
        let c = Config { buffer_size: 10, ..Config::default() };
        assert!(c.validate().is_err());
        let twice = Config { sites: vec![Site::default(), Site::default()], ..Config::default() };
        assert!(twice.validate().is_err());
        let any_port = Site { listen: "127.0.0.1:0".parse().unwrap(), ..Site::default() };
        let ephemeral = Config { sites: vec![any_port.clone(), any_port], ..Config::default() };
        assert_eq!(ephemeral.validate(), Ok(()));
        let huge = Site { max_connections: MAX_CONNECTIONS, ..Site::default() };
        let cert_auth = AuthPolicy {
            db: "/db".into(),
            realm: DEFAULT_REALM.into(),
            protect: "*".into(),
            unprotect: String::new(),
            require: Vec::new(),
            session: None,
            rules: Vec::new(),
            certificate: Some(CertificateRule {
                subject: String::new(),
                issuer: String::new(),
                group: DEFAULT_CERTIFICATE_GROUP.into(),
            }),
        };
        let no_client_ca = Site { auth: Some(cert_auth), ..Site::default() };
        assert!(no_client_ca.validate().unwrap_err().0.contains("client_ca"));
        assert!(Config::single(huge).validate().is_err());
    }
}
