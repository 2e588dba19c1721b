//! A loaded file mapped onto the configuration pipeline ([`crate::config::build`]): one
//! [`SiteSettings`] per server with a `websocket` section, the builder's errors placed in the
//! file.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use super::*;
use crate::config::{BuildError, Document, Settings, SiteSettings};

/// The runtime configuration of a loaded file: one site per server that has a `websocket`
/// section. `base` supplies what the file does not say (buffer size, verbosity, and the
/// service-wide limits: the exec process limit, the compression window, level and memory).
///
/// # Errors
/// A [`ConfigFileError`] when no server relays WebSockets, when a certificate file cannot be
/// used (at the line naming it), or when the sites do not fit together (see
/// [`crate::config::Config::validate`]).
pub fn to_runtime(
    file: &Path,
    cfg: &ServiceConfig,
    base: &crate::config::Config,
) -> Result<(crate::config::Config, Vec<Warning>), ConfigFileError> {
    let mut warnings = Vec::new();
    let mut sites = Vec::new();
    // Each site's tls section, to place a certificate error at the line naming the file.
    let mut tls_at = Vec::new();
    for server in &cfg.servers {
        let Some(ws) = &server.websocket else {
            warnings.push(Warning {
                file: server.file.clone(),
                line: server.line,
                message: NOT_RUN.replace("{port}", &server.port.to_string()),
            });
            continue;
        };
        if server.document.as_ref().is_some_and(|d| d.dirlisting) {
            warnings.push(Warning {
                file: server.file.clone(),
                line: server.line,
                message: "document: directory listings are not generated (\"dirlisting\" ignored)"
                    .into(),
            });
        }
        tls_at.push(server.tls.as_ref());
        sites.push(SiteSettings {
            // No addr: all interfaces, dual-stack.
            addr: Some(server.addr.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))),
            port: Some(server.port),
            docroot: Some(ws.docroot.clone()),
            mode: Some(ws.mode),
            endpoint_modes: ws.endpoint_modes.clone(),
            data_type: Some(ws.data_type),
            access: Some(ws.access.clone()),
            origin: ws.origin.as_ref().map(|list| list.join(",")),
            document: server.document.as_ref().map(|d| Document {
                root: d.docroot.clone(),
                default_page: d.defaultpage.clone(),
                access: d.access.clone(),
            }),
            keepalive: Some(server.keepalive_timeout),
            context: ws.context,
            context_headers: Vec::new(),
            context_endpoints: ws.context_endpoints.clone(),
            max_connections: Some(server.maxclients),
            max_message: ws.max_message,
            handshake_timeout: ws.handshake_timeout,
            ping_interval: ws.ping_interval,
            pong_timeout: ws.pong_timeout,
            idle_timeout: ws.idle_timeout,
            close_timeout: None,
            tls: server.tls.as_ref().map(|t| t.files.clone()),
            direct: ws.direct,
            metrics: ws.metrics.clone(),
            links: ws.links.clone(),
            auth: server.auth.clone(),
            compression: ws.compression,
            endpoint_compression: ws.endpoint_compression.clone(),
        });
    }
    let at =
        |message: String| ConfigFileError { file: file.to_path_buf(), line: 0, col: 0, message };
    if sites.is_empty() {
        return Err(at("no server has a websocket section: nothing to relay".into()));
    }
    let settings = Settings {
        sites,
        buffer_size: Some(base.buffer_size),
        verbosity: Some(base.verbosity),
        exec_limit: Some(cfg.exec_limit.unwrap_or(base.exec_limit)),
        // Service-wide sizes: the file's, or the command line's (as exec_limit).
        compression_window: Some(cfg.compression_window.unwrap_or(base.deflate.window_bits)),
        compression_level: Some(cfg.compression_level.unwrap_or(base.deflate.level)),
        compression_memory: Some(cfg.compression_memory.unwrap_or(base.deflate.memory)),
    };
    let config = settings.build().map_err(|e| match e {
        // The certificate and key are loaded by the build, once, so that a typo shows at
        // start-up (and with --check) at the line that names the file.
        BuildError::Tls { site, error } => match tls_at.get(site).copied().flatten() {
            Some(t) => ConfigFileError::at(t.place_of(error.path()), format!("tls: {error}")),
            None => at(format!("tls: {error}")),
        },
        BuildError::Invalid(e) => at(e.0),
    })?;
    Ok((config, warnings))
}
