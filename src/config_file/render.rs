//! The effective configuration written back in libconfig syntax (`wsgate --check`).

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::libconfig::quote;
use crate::relay::link::Target;

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
    if let Some(p) = &cfg.control {
        o.set("control", &path_str(p));
    }
    if let Some(n) = cfg.exec_limit {
        o.set("exec_limit", &n.to_string());
    }
    if let Some(n) = cfg.compression_window {
        o.set("compression_window", &n.to_string());
    }
    if let Some(n) = cfg.compression_level {
        o.set("compression_level", &n.to_string());
    }
    if let Some(n) = cfg.compression_memory {
        o.set("compression_memory", &n.to_string());
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
        if let Some(t) = s.tls.as_ref().map(|t| &t.files) {
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
        if let Some(a) = &s.auth {
            o.open("auth");
            o.set("type", "\"Basic\"");
            o.set("dbname", &path_str(&a.db));
            o.set("realm", &quote(&a.realm));
            o.set("protect", &quote(&a.protect));
            o.set("unprotect", &quote(&a.unprotect));
            o.set("require", &quote(&a.require.join(",")));
            if !a.rules.is_empty() {
                let rules: Vec<String> = a
                    .rules
                    .iter()
                    .map(|r| {
                        format!(
                            "{{ path = {}; require = {}; }}",
                            quote(&r.paths),
                            quote(&r.require.join(","))
                        )
                    })
                    .collect();
                o.set("rules", &format!("( {} )", rules.join(", ")));
            }
            if let Some(c) = &a.certificate {
                o.set(
                    "certificate",
                    &format!(
                        "{{ subject = {}; issuer = {}; group = {}; }}",
                        quote(&c.subject),
                        quote(&c.issuer),
                        quote(&c.group)
                    ),
                );
            }
            if let Some(sp) = &a.session {
                o.set("session_key", &path_str(&sp.key));
                o.set("session_path", &quote(&sp.path));
                o.set("expire", &sp.expire.as_secs().to_string());
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
            if let Some(m) = &w.metrics {
                o.set("metrics", &quote(m));
            }
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
            o.set("type", &quote(w.data_type.name()));
            let compression =
                |on: bool| quote(if on { crate::config::COMPRESSION_NAME } else { "none" });
            if let Some(on) = w.compression {
                o.set("compression", &compression(on));
            }
            if !w.endpoint_compression.is_empty() {
                o.open("compression");
                for (name, on) in &w.endpoint_compression {
                    if libconfig::is_name(name) {
                        o.set(name, &compression(*on));
                    } else {
                        o.line(&format!(
                            "# {} = {}; (not a valid setting name)",
                            quote(name),
                            compression(*on)
                        ));
                    }
                }
                o.close(";");
            }
            if !w.links.is_empty() {
                // As ouistiti writes them; the comment is what wsgate makes of each.
                o.line("links = (");
                for (i, l) in w.links.iter().enumerate() {
                    let comma = if i + 1 < w.links.len() { "," } else { "" };
                    let target = match &l.target {
                        Target::Unix(p) => {
                            format!("type = \"unix\"; destination = {};", path_str(p))
                        }
                        Target::Tcp { host, port, .. } => {
                            format!("type = \"tcp\"; destination = {}; port = {port};", quote(host))
                        }
                        Target::Tty { path, serial } => {
                            let text = serial.to_string();
                            let frame = text.split_once(',').map_or("8N1", |(_, f)| f);
                            format!(
                                "type = \"tty\"; destination = {}; baud = {}; frame = {};",
                                path_str(path),
                                serial.baud,
                                quote(frame)
                            )
                        }
                        Target::Fifo { to_backend, from_backend } => format!(
                            "type = \"fifo\"; destination = {}; source = {};",
                            path_str(to_backend),
                            path_str(from_backend)
                        ),
                        Target::Exec(e) => {
                            let args: Vec<String> = e.args.iter().map(|a| quote(a)).collect();
                            let mut t = format!(
                                "type = \"exec\"; destination = {}; args = [ {} ]; dir = {};",
                                path_str(&e.program),
                                args.join(", "),
                                path_str(&e.dir)
                            );
                            if let Some(n) = e.limit {
                                t.push_str(&format!(" limit = {n};"));
                            }
                            t
                        }
                    };
                    // A comment ends at the line's end: a newline in a path is shown escaped.
                    // Character by character (`char::escape_debug`, which the request path's
                    // log form uses too): `str::escape_debug`'s own formatter would add 1 KiB
                    // of code to the gateway for this one comment.
                    let shown: String =
                        l.target.to_string().chars().flat_map(char::escape_debug).collect();
                    o.line(&format!(
                        "  {{ origin = {}; {target} }}{comma} # {shown}",
                        quote(&l.origin)
                    ));
                }
                o.line(");");
            }
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
            match (&w.context_endpoints, w.context) {
                (Some(p), true) => o.set("context", &quote(p)),
                (_, on) => o.set("context", if on { "true" } else { "false" }),
            }
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
