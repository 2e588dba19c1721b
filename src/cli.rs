//! The gateway's command line: flags only, no policy. It turns into a [`Config`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use argh::FromArgs;

use crate::config::{
    parse_bytes, parse_duration, Config, ConfigError, EndpointMode, Site, SiteTls,
};
use crate::relay::acl::AccessList;
use crate::relay::codec::{DataType, Mode};

/// wsgate: WebSocket gateway relaying ws:// clients to UNIX-socket backends at DOCROOT/<path>.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// ouistiti configuration file (libconfig syntax); its servers replace -a/-p/-R and the
    /// policy flags
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
    #[argh(option, short = 'a', default = "String::from(\"0.0.0.0\")")]
    pub addr: String,
    /// TCP port (default 8080; 0 picks a free one)
    #[argh(option, short = 'p', default = "8080")]
    pub port: u16,
    /// directory of the backend sockets (default /var/run/websocket)
    #[argh(option, short = 'R', default = "PathBuf::from(\"/var/run/websocket\")")]
    pub docroot: PathBuf,
    /// directory of static pages served for requests without Upgrade (none by default)
    #[argh(option)]
    pub htdocs: Option<PathBuf>,
    /// relay mode: stream (default), lines, framed, seqpacket; or NAME=MODE for one endpoint
    /// (repeatable)
    #[argh(option, short = 'm')]
    pub mode: Vec<String>,
    /// frame type of backend data in stream, lines and seqpacket modes: text (default), binary,
    /// auto
    #[argh(option, short = 't', default = "String::from(\"text\")")]
    pub r#type: String,
    /// most concurrent WebSocket connections (default 64)
    #[argh(option, short = 'c', default = "crate::config::DEFAULT_MAX_CONNECTIONS")]
    pub max_connections: u32,
    /// allowed endpoints, ouistiti pattern list (default "*")
    #[argh(option, default = "String::from(\"*\")")]
    pub allow: String,
    /// denied endpoints, ouistiti pattern list (default "")
    #[argh(option, default = "String::new()")]
    pub deny: String,
    /// accepted Origin headers: "same" (default: none, or the same host:port as Host), "*", or
    /// a comma-separated list of origins or hosts
    #[argh(option, default = "String::from(\"same\")")]
    pub origin: String,
    /// direct mode: after the 101, hand each client's socket to its backend (SCM_RIGHTS, with
    /// the request's metadata) instead of relaying; not with TLS
    #[argh(switch)]
    pub direct: bool,
    /// send the backend a connection context (peer, path, query, ...) before any payload
    #[argh(switch)]
    pub context: bool,
    /// a request header to include in the context (repeatable; implies --context)
    #[argh(option)]
    pub context_header: Vec<String>,
    /// evaluate deny after allow
    #[argh(switch)]
    pub denylast: bool,
    /// size of each relay buffer, e.g. 16K (default 16K)
    #[argh(option, default = "String::from(\"16K\")")]
    pub buffer_size: String,
    /// largest client message, e.g. 1M (default 1M)
    #[argh(option, default = "String::from(\"1M\")")]
    pub max_message: String,
    /// ping after this much client silence, 0 disables (default 30s)
    #[argh(option, default = "String::from(\"30s\")")]
    pub ping_interval: String,
    /// close when a ping is unanswered this long (default 10s)
    #[argh(option, default = "String::from(\"10s\")")]
    pub pong_timeout: String,
    /// time allowed for the upgrade request, and for a backend whose listen queue is full to
    /// make room (default 10s)
    #[argh(option, default = "String::from(\"10s\")")]
    pub handshake_timeout: String,
    /// close after this much silence both ways, 0 disables (default 0)
    #[argh(option, default = "String::from(\"0\")")]
    pub idle_timeout: String,
    /// time allowed for the closing handshake (default 5s)
    #[argh(option, default = "String::from(\"5s\")")]
    pub close_timeout: String,
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
    /// most connection log lines per second, bursts of 50 (default 20; 0: no limit)
    #[argh(option, default = "crate::logging::DEFAULT_RATE")]
    pub log_rate: u32,
}

fn optional(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

impl Args {
    /// Builds and validates the configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let err = |flag: &str, e: String| ConfigError(format!("{flag}: {e}"));
        let ip: IpAddr =
            self.addr.parse().map_err(|_| err("-a", format!("bad address {:?}", self.addr)))?;
        let mut mode = Mode::Stream;
        let mut endpoint_modes = Vec::new();
        for m in &self.mode {
            match m.split_once('=') {
                Some((name, mo)) => endpoint_modes.push(EndpointMode {
                    name: name.trim_start_matches('/').to_owned(),
                    mode: mo.parse().map_err(|e| err("-m", e))?,
                }),
                None => mode = m.parse().map_err(|e| err("-m", e))?,
            }
        }
        let data_type: DataType = self.r#type.parse().map_err(|e| err("-t", e))?;
        let buffer_size = parse_bytes(&self.buffer_size).map_err(|e| err("--buffer-size", e))?;
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(crtfile), Some(keyfile)) => Some(
                SiteTls::load(crate::tls::TlsFiles {
                    crtfile,
                    keyfile,
                    cachain: self.tls_chain,
                    client_ca: self.tls_client_ca,
                })
                .map_err(|e| err("--tls-cert", e.to_string()))?,
            ),
            (None, None) if self.tls_chain.is_none() && self.tls_client_ca.is_none() => None,
            (None, _) => return Err(err("--tls-cert", "needed for TLS".into())),
            (Some(_), None) => return Err(err("--tls-key", "needed with --tls-cert".into())),
        };
        let site = Site {
            listen: SocketAddr::new(ip, self.port),
            docroot: self.docroot,
            mode,
            endpoint_modes,
            data_type,
            access: AccessList { allow: self.allow, deny: self.deny, denylast: self.denylast },
            origin: crate::http::origin::OriginPolicy::parse(&self.origin),
            document: self.htdocs.map(|root| crate::config::Document {
                root,
                default_page: "index.html".into(),
                access: AccessList::default(),
            }),
            keepalive: crate::config::DEFAULT_KEEPALIVE,
            context: (self.context || !self.context_header.is_empty())
                .then_some(self.context_header),
            max_connections: self.max_connections,
            max_message: parse_bytes(&self.max_message).map_err(|e| err("--max-message", e))?,
            handshake_timeout: parse_duration(&self.handshake_timeout)
                .map_err(|e| err("--handshake-timeout", e))?,
            ping_interval: optional(
                parse_duration(&self.ping_interval).map_err(|e| err("--ping-interval", e))?,
            ),
            pong_timeout: parse_duration(&self.pong_timeout)
                .map_err(|e| err("--pong-timeout", e))?,
            idle_timeout: optional(
                parse_duration(&self.idle_timeout).map_err(|e| err("--idle-timeout", e))?,
            ),
            close_timeout: parse_duration(&self.close_timeout)
                .map_err(|e| err("--close-timeout", e))?,
            tls,
            direct: self.direct,
        };
        let config = Config {
            sites: vec![site],
            buffer_size: usize::try_from(buffer_size)
                .map_err(|_| err("--buffer-size", "too large".into()))?,
            verbosity: if self.quiet {
                0
            } else if self.verbose {
                2
            } else {
                1
            },
        };
        config.validate()?;
        Ok(config)
    }
}
