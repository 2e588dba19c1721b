//! The one pipeline from what a source says to a validated [`Config`]:
//!
//! ```text
//! command line  (cli::Args::into_config)  ──┐ each maps its own syntax
//! config file   (config_file::to_runtime) ──┴─→ Settings { sites: [SiteSettings], .. }
//!   ─→ Settings::build: defaults filled, certificates loaded, Config::validate ─→ Config
//! ```
//!
//! A source fills the fields its user wrote and leaves the others `None`; it attaches its own
//! place to what goes wrong (a flag name on the command line, `file:line:col` in the file).
//! What an absent setting means, what zero means, loading the certificates (once per build) and
//! the checks of [`Config::validate`] are decided here, once. So are the text syntaxes both
//! sources share: [`parse_duration`], [`parse_bytes`], the mode and type names (see
//! [`alternatives`]) and origin lists ([`OriginPolicy::parse`]). A new setting is a field of
//! [`SiteSettings`] (or [`Settings`]) and its line in `build`, plus one line in each source.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::http::origin::OriginPolicy;
use crate::relay::acl::AccessList;
use crate::relay::codec::{DataType, Mode};
use crate::tls::{TlsError, TlsFiles};

/// What a source says about the whole service; `None`: not said.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The sites, in listener order.
    pub sites: Vec<SiteSettings>,
    /// Size of each relay buffer (default [`DEFAULT_BUFFER_SIZE`]).
    pub buffer_size: Option<usize>,
    /// Log level (default 1, connection lines).
    pub verbosity: Option<u8>,
    /// Programs of exec links running at once (default [`super::DEFAULT_EXEC_LIMIT`]).
    pub exec_limit: Option<u32>,
    /// The compressors' window in bits (default [`DEFAULT_DEFLATE_WINDOW_BITS`]).
    pub compression_window: Option<u8>,
    /// The compression level (default [`DEFAULT_DEFLATE_LEVEL`]).
    pub compression_level: Option<u8>,
    /// Bytes for compression contexts (default [`DEFAULT_DEFLATE_MEMORY`]).
    pub compression_memory: Option<u64>,
}

/// What a source says about one site; `None` (or `false`, or empty): not said.
#[derive(Clone, Debug, Default)]
pub struct SiteSettings {
    /// Listening address (default `0.0.0.0`).
    pub addr: Option<IpAddr>,
    /// Listening port (default 8080; 0 picks a free one).
    pub port: Option<u16>,
    /// Directory of the backend sockets (default `/var/run/websocket`).
    pub docroot: Option<PathBuf>,
    /// Relay mode (default [`DEFAULT_MODE`]).
    pub mode: Option<Mode>,
    /// Per-endpoint modes: the endpoint (a leading '/' is dropped) and its mode.
    pub endpoint_modes: Vec<(String, Mode)>,
    /// Frame type of backend data (default [`DEFAULT_DATA_TYPE`]).
    pub data_type: Option<DataType>,
    /// allow / deny / denylast (default: allow all).
    pub access: Option<AccessList>,
    /// Accepted origins in [`OriginPolicy::parse`]'s syntax (default: the same host).
    pub origin: Option<String>,
    /// Static pages (default none).
    pub document: Option<Document>,
    /// Keep-alive between static requests (default [`DEFAULT_KEEPALIVE`]).
    pub keepalive: Option<Duration>,
    /// Send the backend a connection context.
    pub context: bool,
    /// Request headers to put in the context; any turns the context on.
    pub context_headers: Vec<String>,
    /// The endpoints that get it (default: every one).
    pub context_endpoints: Option<String>,
    /// The site's connections (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: Option<u32>,
    /// Largest client message (default [`DEFAULT_MAX_MESSAGE`]).
    pub max_message: Option<u64>,
    /// Handshake deadline (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Option<Duration>,
    /// Ping interval; zero turns pings off (default [`DEFAULT_PING_INTERVAL`]).
    pub ping_interval: Option<Duration>,
    /// Pong deadline (default [`DEFAULT_PONG_TIMEOUT`]).
    pub pong_timeout: Option<Duration>,
    /// Idle deadline; zero turns it off (default off).
    pub idle_timeout: Option<Duration>,
    /// Closing-handshake deadline (default [`DEFAULT_CLOSE_TIMEOUT`]).
    pub close_timeout: Option<Duration>,
    /// Certificate files: the site serves `wss://` (default plain `ws://`).
    pub tls: Option<TlsFiles>,
    /// Direct mode.
    pub direct: bool,
    /// The metrics page's path (default none).
    pub metrics: Option<String>,
    /// Links (see [`crate::relay::link`]), in any order.
    pub links: Vec<crate::relay::link::Link>,
    /// Authentication (default none).
    pub auth: Option<super::AuthPolicy>,
    /// permessage-deflate on every endpoint (default off).
    pub compression: Option<bool>,
    /// Per-endpoint compression: the endpoint (a leading '/' is dropped) and whether.
    pub endpoint_compression: Vec<(String, bool)>,
}

/// Why [`Settings::build`] failed; the source says where.
#[derive(Debug)]
pub enum BuildError {
    /// The certificate files of `sites[site]` cannot be used.
    Tls {
        /// Index into [`Settings::sites`].
        site: usize,
        /// The file at fault, and why.
        error: TlsError,
    },
    /// The settings do not fit together (see [`Config::validate`]).
    Invalid(ConfigError),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Tls { error, .. } => write!(f, "{error}"),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl Settings {
    /// Fills the defaults, loads every site's certificates and validates the result.
    ///
    /// # Errors
    /// The first site whose certificate files cannot be used, or what does not fit together.
    pub fn build(self) -> Result<Config, BuildError> {
        let defaults = Config::default();
        let mut sites = Vec::with_capacity(self.sites.len());
        for (site, s) in self.sites.into_iter().enumerate() {
            sites.push(s.build().map_err(|error| BuildError::Tls { site, error })?);
        }
        let config = Config {
            sites,
            buffer_size: self.buffer_size.unwrap_or(defaults.buffer_size),
            verbosity: self.verbosity.unwrap_or(defaults.verbosity),
            exec_limit: self.exec_limit.unwrap_or(defaults.exec_limit),
            deflate: Deflate {
                window_bits: self.compression_window.unwrap_or(defaults.deflate.window_bits),
                level: self.compression_level.unwrap_or(defaults.deflate.level),
                memory: self.compression_memory.unwrap_or(defaults.deflate.memory),
            },
        };
        config.validate().map_err(BuildError::Invalid)?;
        Ok(config)
    }
}

impl SiteSettings {
    /// The site, defaults filled and certificates loaded; checked with the others by
    /// [`Config::validate`].
    fn build(self) -> Result<Site, TlsError> {
        let d = Site::default();
        // Zero turns an optional timer off; absent keeps the default.
        let optional = |v: Option<Duration>, default| match v {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => default,
        };
        let context = self.context || !self.context_headers.is_empty();
        Ok(Site {
            listen: SocketAddr::new(
                self.addr.unwrap_or(d.listen.ip()),
                self.port.unwrap_or(d.listen.port()),
            ),
            docroot: self.docroot.unwrap_or(d.docroot),
            mode: self.mode.unwrap_or(d.mode),
            endpoint_modes: self
                .endpoint_modes
                .into_iter()
                .map(|(name, mode)| EndpointMode {
                    name: name.trim_start_matches('/').to_owned(),
                    mode,
                })
                .collect(),
            data_type: self.data_type.unwrap_or(d.data_type),
            access: self.access.unwrap_or(d.access),
            origin: self.origin.map_or(d.origin, |o| OriginPolicy::parse(&o)),
            document: self.document,
            keepalive: self.keepalive.unwrap_or(d.keepalive),
            context: context.then_some(self.context_headers),
            context_endpoints: self.context_endpoints.unwrap_or_default(),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_message: self.max_message.unwrap_or(d.max_message),
            handshake_timeout: self.handshake_timeout.unwrap_or(d.handshake_timeout),
            ping_interval: optional(self.ping_interval, d.ping_interval),
            pong_timeout: self.pong_timeout.unwrap_or(d.pong_timeout),
            idle_timeout: optional(self.idle_timeout, d.idle_timeout),
            close_timeout: self.close_timeout.unwrap_or(d.close_timeout),
            tls: self.tls.map(SiteTls::load).transpose()?,
            direct: self.direct,
            metrics: self.metrics,
            links: self.links,
            auth: self.auth,
            compression: Compression {
                all: self.compression.unwrap_or(false),
                endpoints: self
                    .endpoint_compression
                    .into_iter()
                    .map(|(name, on)| (name.trim_start_matches('/').to_owned(), on))
                    .collect(),
            },
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sites: vec![Site::default()],
            buffer_size: DEFAULT_BUFFER_SIZE,
            verbosity: 1,
            exec_limit: super::DEFAULT_EXEC_LIMIT,
            deflate: Deflate {
                window_bits: DEFAULT_DEFLATE_WINDOW_BITS,
                level: DEFAULT_DEFLATE_LEVEL,
                memory: DEFAULT_DEFLATE_MEMORY,
            },
        }
    }
}

/// A site nobody said anything about: every default of [`SiteSettings`].
impl Default for Site {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            docroot: PathBuf::from("/var/run/websocket"),
            mode: DEFAULT_MODE,
            endpoint_modes: Vec::new(),
            data_type: DEFAULT_DATA_TYPE,
            access: AccessList::default(),
            origin: OriginPolicy::SameHost,
            context: None,
            context_endpoints: String::new(),
            document: None,
            keepalive: DEFAULT_KEEPALIVE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_message: DEFAULT_MAX_MESSAGE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            idle_timeout: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            tls: None,
            direct: false,
            metrics: None,
            links: Vec::new(),
            auth: None,
            compression: Compression::default(),
        }
    }
}

impl Document {
    /// Pages from `root`, with the default page and no access list.
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Self { root, default_page: DEFAULT_PAGE.to_owned(), access: AccessList::default() }
    }
}

impl SiteTls {
    /// Reads and checks `files`.
    ///
    /// # Errors
    /// A [`crate::tls::TlsError`] naming the file at fault.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let server = crate::tls::load(&files)?;
        Ok(Self { files, server })
    }
}

impl Config {
    /// The same configuration with every site's certificate files read again: what SIGHUP
    /// applies when there is no configuration file.
    ///
    /// # Errors
    /// The first site whose files cannot be used, and why; nothing is changed then.
    pub fn with_tls_reloaded(&self) -> Result<Config, String> {
        let mut config = self.clone();
        for site in &mut config.sites {
            if let Some(t) = &mut site.tls {
                *t = SiteTls::load(t.files.clone())
                    .map_err(|e| format!("{}: new certificate: {e}", site.listen))?;
            }
        }
        Ok(config)
    }
}

/// Names for messages: `["a", "b", "c"]` is "a, b or c".
#[must_use]
pub fn alternatives(names: &[&str]) -> String {
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Parses "500ms", "10s", "2m", "1h" or plain seconds; the number may have a fraction ("1.5s",
/// ".5m"), rounded to the nanosecond. Integer arithmetic on the digits: Rust's float parser
/// would cost about 15 KB of the shipped armv7 gateway.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    /// One year, the longest duration taken.
    const MAX_NANOS: u64 = 86_400 * 365 * 1_000_000_000;
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("bad duration {s:?}"));
    }
    let unit_nanos: u64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    let digit = |b: u8| u64::from(b - b'0');
    let whole = int.bytes().fold(0u64, |n, b| n.saturating_mul(10).saturating_add(digit(b)));
    // The fraction in tenths of a nanosecond, from its last digit to its first (each step
    // divides by ten, so what the truncations lose stays below a nanosecond), then rounded.
    let tenths = frac.bytes().rev().fold(0u64, |acc, b| (digit(b) * unit_nanos * 10 + acc) / 10);
    match whole.checked_mul(unit_nanos).and_then(|n| n.checked_add((tenths + 5) / 10)) {
        Some(nanos) if nanos <= MAX_NANOS => Ok(Duration::from_nanos(nanos)),
        _ => Err(format!("duration {s:?} out of range")),
    }
}

/// Parses a byte count with an optional K or M suffix (KiB, MiB).
///
/// # Errors
/// A message naming the bad value.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (s.get(..i).unwrap_or_default(), 1024),
        Some((i, 'M' | 'm')) => (s.get(..i).unwrap_or_default(), 1024 * 1024),
        Some((i, 'G' | 'g')) => (s.get(..i).unwrap_or_default(), 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad byte count {s:?}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("byte count {s:?} too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn one(site: SiteSettings) -> Result<Config, BuildError> {
        Settings { sites: vec![site], ..Settings::default() }.build()
    }

    #[test]
    fn nothing_said_is_the_default_config() {
        let built = one(SiteSettings::default()).unwrap();
        assert_eq!(format!("{built:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn zero_turns_timers_off_and_headers_turn_the_context_on() {
        let built = one(SiteSettings {
            ping_interval: Some(Duration::ZERO),
            idle_timeout: Some(Duration::from_secs(7)),
            context_headers: vec!["Cookie".into()],
            endpoint_modes: vec![("/chat".into(), Mode::Lines)],
            ..SiteSettings::default()
        })
        .unwrap();
        let site = &built.sites[0];
        assert_eq!(site.ping_interval, None);
        assert_eq!(site.idle_timeout, Some(Duration::from_secs(7)));
        assert_eq!(site.context, Some(vec!["Cookie".to_owned()]));
        assert_eq!(site.mode_for("chat"), Mode::Lines);
    }

    #[test]
    fn errors_say_which_site_and_why() {
        let missing = TlsFiles {
            crtfile: "/nonexistent/c.pem".into(),
            keyfile: "/nonexistent/k.pem".into(),
            cachain: None,
            client_ca: None,
        };
        let second = SiteSettings { port: Some(1), tls: Some(missing), ..SiteSettings::default() };
        let sites = vec![SiteSettings::default(), second];
        match (Settings { sites, ..Settings::default() }).build() {
            Err(BuildError::Tls { site: 1, error }) => {
                assert_eq!(error.path(), Some(std::path::Path::new("/nonexistent/c.pem")));
            }
            other => panic!("{other:?}"),
        }
        match one(SiteSettings { max_connections: Some(0), ..SiteSettings::default() }) {
            Err(BuildError::Invalid(e)) => assert!(e.0.starts_with("max connections"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
