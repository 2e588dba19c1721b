//! A loaded file turned into the runtime [`crate::config::Config`].

use std::net::IpAddr;
use std::path::Path;

use super::*;

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
                crate::config::SiteTls::load(t.files.clone())
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
