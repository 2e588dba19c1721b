//! The gateway's command line: flags only, no policy. Its flags map onto a
//! [`crate::config::Settings`] (a flag not given says nothing: the defaults are the builder's),
//! and errors are placed at the flag.

use std::path::PathBuf;

use argh::FromArgs;

use crate::config::{
    parse_bytes, parse_duration, BuildError, Config, ConfigError, Document, Settings, SiteSettings,
};
use crate::relay::acl::AccessList;

/// wsgate: WebSocket gateway relaying ws:// clients to UNIX-socket backends at DOCROOT/<path>.
/// `wsgate status [--json]` and `wsgate drop ID [CODE]` ask a running one (see --control).
#[derive(FromArgs, Debug)]
pub struct Args {
    /// ouistiti configuration file (libconfig syntax); its servers replace -a/-p/-R and the
    /// policy flags (--buffer-size, --exec-limit and --compression-window/-level/-memory hold
    /// where the file does not set them)
    #[argh(option, short = 'f')]
    pub config: Option<PathBuf>,
    /// validate the configuration, print the effective one, and exit
    #[argh(switch)]
    pub check: bool,
    /// working directory: every relative path (the configuration's config_d, docroots, init_d,
    /// certificates, log and pid files; -R, -L...) is resolved from DIR, -f's excepted; as
    /// ouistiti's -W, but without a chroot
    #[argh(option, short = 'W')]
    pub workdir: Option<PathBuf>,
    /// address to listen on (default 0.0.0.0)
    #[argh(option, short = 'a')]
    pub addr: Option<String>,
    /// TCP port (default 8080; 0 picks a free one)
    #[argh(option, short = 'p')]
    pub port: Option<u16>,
    /// directory of the backend sockets (default /var/run/websocket)
    #[argh(option, short = 'R')]
    pub docroot: Option<PathBuf>,
    /// directory of static pages served for requests without Upgrade (none by default)
    #[argh(option)]
    pub htdocs: Option<PathBuf>,
    /// relay mode: stream (default), lines, framed, seqpacket; or NAME=MODE for one endpoint
    /// (repeatable)
    #[argh(option, short = 'm')]
    pub mode: Vec<String>,
    /// an endpoint whose backend is not in the docroot, repeatable: ORIGIN=unix:/PATH,
    /// ORIGIN=tcp:HOST:PORT (e.g. mqtt=tcp:127.0.0.1:1883), ORIGIN=tty:/DEV[:SPEED[,FRAME]],
    /// ORIGIN=fifo:/WRITTEN:/READ (a FIFO pair) or ORIGIN=exec:/PROGRAM [ARG...] (a program
    /// per connection); it takes /ORIGIN and the paths below
    #[argh(option)]
    pub link: Vec<String>,
    /// the user database (user:group:hash:home, SHA-512-crypt: the JSON-RPC auth plugin's
    /// file); with it, the protected paths need HTTP Basic authentication
    #[argh(option)]
    pub auth_db: Option<PathBuf>,
    /// the realm named in WWW-Authenticate (default wsgate)
    #[argh(option)]
    pub auth_realm: Option<String>,
    /// paths that need a login, as allow/deny patterns (default *: every path)
    #[argh(option)]
    pub auth_protect: Option<String>,
    /// paths that do not, even when --auth-protect names them
    #[argh(option)]
    pub auth_unprotect: Option<String>,
    /// groups allowed in, comma-separated (default: any user of the database)
    #[argh(option)]
    pub auth_require: Option<String>,
    /// the session key's file (made at the first start, mode 0600); with it, a login endpoint
    /// gives browsers a session cookie and scripts a Bearer token
    #[argh(option)]
    pub auth_session_key: Option<PathBuf>,
    /// paths with groups of their own, repeatable: PATTERNS=GROUPS (e.g. '^/admin*=root'):
    /// they need a login, and only those groups open them
    #[argh(option)]
    pub auth_rule: Vec<String>,
    /// client certificates (TLS with --tls-client-ca) whose subject matches this pattern
    /// (rendered /C=FR/O=Acme/CN=device1) identify their holder: the CN is the user
    #[argh(option)]
    pub auth_cert_subject: Option<String>,
    /// with --auth-cert-subject: the pattern the certificate's issuer must match too
    #[argh(option)]
    pub auth_cert_issuer: Option<String>,
    /// the group of certificate users (default certificate)
    #[argh(option)]
    pub auth_cert_group: Option<String>,
    /// the login endpoint: POST PATH/login, POST PATH/logout, GET PATH (default /session)
    #[argh(option)]
    pub auth_session_path: Option<String>,
    /// how long a session lasts, in seconds (default 3600)
    #[argh(option)]
    pub auth_expire: Option<u64>,
    /// make a new session key in FILE (ending every session signed with the old one) and exit
    #[argh(option)]
    pub rotate_session_key: Option<PathBuf>,
    /// frame type of backend data in stream, lines and seqpacket modes: text (default), binary,
    /// auto
    #[argh(option, short = 't')]
    pub r#type: Option<String>,
    /// most concurrent WebSocket connections (default 64)
    #[argh(option, short = 'c')]
    pub max_connections: Option<u32>,
    /// allowed endpoints, ouistiti pattern list (default "*")
    #[argh(option)]
    pub allow: Option<String>,
    /// denied endpoints, ouistiti pattern list (default "")
    #[argh(option)]
    pub deny: Option<String>,
    /// accepted Origin headers: "same" (default: none, or the same host:port as Host), "*", or
    /// a comma-separated list of origins or hosts
    #[argh(option)]
    pub origin: Option<String>,
    /// direct mode: after the 101, hand each client's socket to its backend (SCM_RIGHTS, with
    /// the request's metadata) instead of relaying; not with TLS
    #[argh(switch)]
    pub direct: bool,
    /// serve the counters in Prometheus text format on this path (e.g. /metrics), behind
    /// --allow/--deny and the authentication rules
    #[argh(option)]
    pub metrics: Option<String>,
    /// send the backend a connection context (peer, path, query, ...) before any payload
    #[argh(switch)]
    pub context: bool,
    /// a request header to include in the context (repeatable; implies --context)
    #[argh(option)]
    pub context_header: Vec<String>,
    /// evaluate deny after allow
    #[argh(switch)]
    pub denylast: bool,
    /// programs of exec links running at once, all endpoints together; past it, 503 (default
    /// 16)
    #[argh(option)]
    pub exec_limit: Option<u32>,
    /// size of each relay buffer, e.g. 16K (default 16K)
    #[argh(option)]
    pub buffer_size: Option<String>,
    /// permessage-deflate on every endpoint (`permessage-deflate`, or `none`: the default), or
    /// on one (NAME=permessage-deflate or NAME=none; repeatable); not with --direct
    #[argh(option)]
    pub compression: Vec<String>,
    /// the compressors' window in bits, 9 to 15 (default 15)
    #[argh(option)]
    pub compression_window: Option<u8>,
    /// the compression level, 1 (fastest) to 9 (smallest) (default 6)
    #[argh(option)]
    pub compression_level: Option<u8>,
    /// memory for compression contexts, all connections together, allocated at start-up when
    /// an endpoint offers compression, e.g. 2M (default 2M); past it, new connections go
    /// uncompressed
    #[argh(option)]
    pub compression_memory: Option<String>,
    /// largest client message, e.g. 1M (default 1M)
    #[argh(option)]
    pub max_message: Option<String>,
    /// ping after this much client silence, 0 disables (default 30s)
    #[argh(option)]
    pub ping_interval: Option<String>,
    /// close when a ping is unanswered this long (default 10s)
    #[argh(option)]
    pub pong_timeout: Option<String>,
    /// time allowed for the upgrade request, and for a backend whose listen queue is full to
    /// make room (default 10s)
    #[argh(option)]
    pub handshake_timeout: Option<String>,
    /// close after this much silence both ways, 0 disables (default 0)
    #[argh(option)]
    pub idle_timeout: Option<String>,
    /// time allowed for the closing handshake (default 5s)
    #[argh(option)]
    pub close_timeout: Option<String>,
    /// serve wss:// (and https:// pages) with this certificate file (PEM; chain after it)
    #[argh(option)]
    pub tls_cert: Option<PathBuf>,
    /// private key of --tls-cert (PEM: RSA, ECDSA or Ed25519, not encrypted)
    #[argh(option)]
    pub tls_key: Option<PathBuf>,
    /// more chain certificates sent after those of --tls-cert
    #[argh(option)]
    pub tls_chain: Option<PathBuf>,
    /// require client certificates that chain to the CAs in this file
    #[argh(option)]
    pub tls_client_ca: Option<PathBuf>,
    /// more log output (repeatable)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// only errors and warnings
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// run as USER after binding the listeners (real, effective and saved ids; needs root)
    #[argh(option, short = 'u')]
    pub user: Option<String>,
    /// append log lines to FILE (created 0640) instead of stderr
    #[argh(option, short = 'L')]
    pub log_file: Option<PathBuf>,
    /// log to syslog (/dev/log, or $WSGATE_SYSLOG_SOCKET), facility daemon
    #[argh(switch)]
    pub syslog: bool,
    /// write the pid to FILE after start-up; removed at exit
    #[argh(option)]
    pub pid_file: Option<PathBuf>,
    /// a script, or a directory of executable scripts run in name order, to run with "start"
    /// before binding and with "stop" (in reverse order) at exit, as root
    #[argh(option)]
    pub init_d: Option<PathBuf>,
    /// the control socket (made mode 0600, owned by --user) that `wsgate status` and
    /// `wsgate drop` talk to; none by default
    #[argh(option)]
    pub control: Option<PathBuf>,
    /// most connection log lines per second, bursts of 50 (default 20; 0: no limit)
    #[argh(option, default = "crate::logging::DEFAULT_RATE")]
    pub log_rate: u32,
}

/// `value` of `flag` parsed by `parse`, the error placed at the flag.
fn parsed<T>(
    flag: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    value.map(|v| parse(&v).map_err(|e| at(flag, e))).transpose()
}

fn at(flag: &str, e: String) -> ConfigError {
    ConfigError(format!("{flag}: {e}"))
}

impl Args {
    /// Builds and validates the configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let addr =
            parsed("-a", self.addr, |a| a.parse().map_err(|_| format!("bad address {a:?}")))?;
        let mut mode = None;
        let mut endpoint_modes = Vec::new();
        for m in &self.mode {
            match m.split_once('=') {
                Some((name, mo)) => {
                    endpoint_modes.push((name.to_owned(), mo.parse().map_err(|e| at("-m", e))?));
                }
                None => mode = Some(m.parse().map_err(|e| at("-m", e))?),
            }
        }
        let data_type = parsed("-t", self.r#type, str::parse)?;
        let mut compression = None;
        let mut endpoint_compression = Vec::new();
        for c in &self.compression {
            match c.split_once('=') {
                Some((name, on)) => endpoint_compression.push((
                    name.to_owned(),
                    crate::config::parse_compression(on).map_err(|e| at("--compression", e))?,
                )),
                None => {
                    compression = Some(
                        crate::config::parse_compression(c).map_err(|e| at("--compression", e))?,
                    );
                }
            }
        }
        let buffer_size = parsed("--buffer-size", self.buffer_size, |s| {
            usize::try_from(parse_bytes(s)?).map_err(|_| "too large".to_owned())
        })?;
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(crtfile), Some(keyfile)) => Some(crate::tls::TlsFiles {
                crtfile,
                keyfile,
                cachain: self.tls_chain,
                client_ca: self.tls_client_ca,
            }),
            (None, None) if self.tls_chain.is_none() && self.tls_client_ca.is_none() => None,
            (None, _) => return Err(at("--tls-cert", "needed for TLS".into())),
            (Some(_), None) => return Err(at("--tls-key", "needed with --tls-cert".into())),
        };
        let access = AccessList::default();
        let site = SiteSettings {
            addr,
            port: self.port,
            docroot: self.docroot,
            mode,
            endpoint_modes,
            data_type,
            access: Some(AccessList {
                allow: self.allow.unwrap_or(access.allow),
                deny: self.deny.unwrap_or(access.deny),
                denylast: self.denylast,
            }),
            origin: self.origin,
            document: self.htdocs.map(Document::new),
            keepalive: None,
            context: self.context,
            context_headers: self.context_header,
            context_endpoints: None,
            max_connections: self.max_connections,
            max_message: parsed("--max-message", self.max_message, parse_bytes)?,
            handshake_timeout: parsed(
                "--handshake-timeout",
                self.handshake_timeout,
                parse_duration,
            )?,
            ping_interval: parsed("--ping-interval", self.ping_interval, parse_duration)?,
            pong_timeout: parsed("--pong-timeout", self.pong_timeout, parse_duration)?,
            idle_timeout: parsed("--idle-timeout", self.idle_timeout, parse_duration)?,
            close_timeout: parsed("--close-timeout", self.close_timeout, parse_duration)?,
            tls,
            direct: self.direct,
            metrics: self.metrics.clone(),
            links: self
                .link
                .iter()
                .map(|l| crate::relay::link::parse(l).map_err(|e| at("--link", e)))
                .collect::<Result<_, _>>()?,
            auth: match self.auth_db {
                Some(db) => Some(crate::config::AuthPolicy {
                    db,
                    realm: self.auth_realm.unwrap_or_else(|| crate::config::DEFAULT_REALM.into()),
                    protect: self.auth_protect.unwrap_or_else(|| "*".into()),
                    unprotect: self.auth_unprotect.unwrap_or_default(),
                    require: self
                        .auth_require
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    rules: self
                        .auth_rule
                        .iter()
                        .map(|r| parse_auth_rule(r).map_err(|e| at("--auth-rule", e)))
                        .collect::<Result<_, _>>()?,
                    certificate: if self.auth_cert_subject.is_some()
                        || self.auth_cert_issuer.is_some()
                        || self.auth_cert_group.is_some()
                    {
                        Some(crate::config::CertificateRule {
                            subject: self.auth_cert_subject.unwrap_or_default(),
                            issuer: self.auth_cert_issuer.unwrap_or_default(),
                            group: self
                                .auth_cert_group
                                .unwrap_or_else(|| crate::config::DEFAULT_CERTIFICATE_GROUP.into()),
                        })
                    } else {
                        None
                    },
                    session: match self.auth_session_key {
                        Some(key) => Some(crate::config::SessionPolicy {
                            key,
                            path: self
                                .auth_session_path
                                .unwrap_or_else(|| crate::config::DEFAULT_SESSION_PATH.into()),
                            expire: self.auth_expire.map_or(
                                crate::config::DEFAULT_SESSION_EXPIRE,
                                std::time::Duration::from_secs,
                            ),
                        }),
                        None if self.auth_session_path.is_some() || self.auth_expire.is_some() => {
                            return Err(at(
                                "--auth-session-key",
                                "needed by --auth-session-path and --auth-expire".into(),
                            ));
                        }
                        None => None,
                    },
                }),
                None if self.auth_realm.is_some()
                    || self.auth_protect.is_some()
                    || self.auth_unprotect.is_some()
                    || self.auth_require.is_some()
                    || self.auth_session_key.is_some()
                    || !self.auth_rule.is_empty()
                    || self.auth_cert_subject.is_some()
                    || self.auth_cert_issuer.is_some()
                    || self.auth_cert_group.is_some()
                    || self.auth_session_path.is_some()
                    || self.auth_expire.is_some() =>
                {
                    return Err(at("--auth-db", "needed by the other --auth options".into()));
                }
                None => None,
            },
            compression,
            endpoint_compression,
        };
        let verbosity = if self.quiet {
            Some(0)
        } else if self.verbose {
            Some(2)
        } else {
            None
        };
        let settings = Settings {
            sites: vec![site],
            buffer_size,
            verbosity,
            exec_limit: self.exec_limit,
            compression_window: self.compression_window,
            compression_level: self.compression_level,
            compression_memory: parsed(
                "--compression-memory",
                self.compression_memory,
                parse_bytes,
            )?,
        };
        settings.build().map_err(|e| match e {
            BuildError::Tls { error, .. } => at("--tls-cert", error.to_string()),
            BuildError::Invalid(e) => e,
        })
    }
}

/// `PATTERNS=GROUPS`: the paths (allow/deny's patterns, which hold no '=') and their groups.
///
/// # Errors
/// No '=', or no pattern.
pub fn parse_auth_rule(text: &str) -> Result<crate::config::AuthRule, String> {
    let (paths, groups) =
        text.rsplit_once('=').ok_or_else(|| format!("{text:?}: expected PATTERNS=GROUPS"))?;
    if paths.is_empty() {
        return Err(format!("{text:?}: no path pattern"));
    }
    Ok(crate::config::AuthRule {
        paths: paths.to_owned(),
        require: groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}
