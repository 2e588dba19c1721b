//! Reading the schema: a parsed [`Document`] (and its `config_d` files) into a
//! [`ServiceConfig`] with its warnings.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::{alternatives, DEFAULT_DATA_TYPE, DEFAULT_MODE};
use crate::libconfig::{quote, Document, Kind, Pos, Setting, Value};
use crate::relay::link::{self, Link};

mod endpoints;

/// A server being read, with where its listener was set.
struct Loaded {
    server: ServerConfig,
    file: PathBuf,
    listen: Pos,
}

/// Reads the settings of `doc` (and of its `config_d` files, relative ones from `workdir`).
pub(super) fn from_document(
    doc: &Document,
    workdir: &Path,
) -> Result<(ServiceConfig, Vec<Warning>), ConfigFileError> {
    let mut warnings = Vec::new();
    let mut cfg = ServiceConfig::default();
    let mut servers: Vec<Loaded> = Vec::new();
    let mut config_d: Option<(&Setting, PathBuf)> = None;
    let mut memory_at = None;
    {
        let mut r = Reader { doc, warnings: &mut warnings };
        for s in &doc.root {
            match s.name.as_str() {
                "user" => cfg.user = Some(r.string(s)?.to_owned()),
                "log-file" | "log_file" => cfg.log_file = Some(r.path(s)?),
                "pid-file" | "pid_file" => cfg.pid_file = Some(r.path(s)?),
                "init_d" => cfg.init_d = Some(r.path(s)?),
                "control" => cfg.control = Some(r.path(s)?),
                "syslog" => cfg.syslog = r.boolean(s)?,
                "exec_limit" => {
                    let n = r.int(s, 0, i64::from(crate::config::MAX_EXEC_LIMIT), "processes")?;
                    cfg.exec_limit = Some(u32::try_from(n).unwrap_or_default());
                }
                "compression_window" => {
                    let n = r.int(s, 9, 15, "bits")?;
                    cfg.compression_window = Some(u8::try_from(n).unwrap_or_default());
                }
                "compression_level" => {
                    let n = r.int(s, 1, 9, "level")?;
                    cfg.compression_level = Some(u8::try_from(n).unwrap_or_default());
                }
                "compression_memory" => {
                    cfg.compression_memory = Some(r.bytes(s, "compression_memory")?);
                    memory_at = Some(s.value.pos);
                }
                "config_d" => config_d = Some((s, r.path(s)?)),
                "servers" | "server" => r.servers(s, &mut servers)?,
                n if TOP_IGNORED.contains(&n) => r.ignored(s),
                n => r.warn(s.pos, format!("unknown key {} (ignored)", quote(n))),
            }
        }
        if let (Some(pos), Some(memory)) = (memory_at, cfg.compression_memory) {
            // Checked at its line, with the window the file sets (before or after it).
            let window =
                cfg.compression_window.unwrap_or(crate::config::DEFAULT_DEFLATE_WINDOW_BITS);
            crate::config::deflate_memory_holds(memory, window).map_err(|e| r.err(pos, e))?;
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
pub(super) fn overlaps(a: &ServerConfig, b: &ServerConfig) -> bool {
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

    /// An array or list of strings (`[ "-x", "1" ]`), kept as written: a program's arguments.
    fn strings(&self, s: &Setting) -> Result<Vec<String>, ConfigFileError> {
        let (Kind::Array(items) | Kind::List(items)) = &s.value.kind else {
            return Err(self.type_err(s, "an array of strings [ \"...\", ... ]"));
        };
        items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    self.err(
                        v.pos,
                        format!(
                            "expected a string in {}, found {}",
                            quote(&s.name),
                            v.kind.describe()
                        ),
                    )
                })
            })
            .collect()
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
            auth: None,
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
                "auth" => server.auth = Some(self.auth(s)?),
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

    /// `auth = { type = "Basic"; dbname = "..."; realm; protect; unprotect; require; }`:
    /// ouistiti's mod_auth as far as wsgate serves it, Basic against the user database. What it
    /// does not serve is an error at its line, never left out: left out, the server would be
    /// open where the file says it is protected.
    fn auth(&mut self, s: &Setting) -> Result<crate::config::AuthPolicy, ConfigFileError> {
        let g =
            match &s.value.kind {
                Kind::Group(g) => g.as_slice(),
                Kind::List(_) => return Err(self.err(
                    s.value.pos,
                    "auth: a list of methods is not served by wsgate (one group: Basic against \
                     the user database)"
                        .to_owned(),
                )),
                _ => return Err(self.type_err(s, "a group { ... }")),
            };
        let mut policy = crate::config::AuthPolicy {
            db: PathBuf::new(),
            realm: crate::config::DEFAULT_REALM.to_owned(),
            protect: "*".to_owned(),
            unprotect: String::new(),
            require: Vec::new(),
            session: None,
            rules: Vec::new(),
            certificate: None,
        };
        let mut db_set = false;
        let (mut session_path, mut expire) = (None, None);
        for a in g {
            match a.name.as_str() {
                "type" => {
                    let t = self.string(a)?;
                    if !t.eq_ignore_ascii_case("basic") {
                        return Err(self.err(
                            a.value.pos,
                            format!(
                                "auth: type {} is not served by wsgate (\"Basic\" is)",
                                quote(t)
                            ),
                        ));
                    }
                }
                "dbname" => {
                    policy.db = self.path(a)?;
                    db_set = true;
                }
                "realm" => policy.realm = self.string(a)?.to_owned(),
                "protect" => policy.protect = self.string(a)?.to_owned(),
                "unprotect" => policy.unprotect = self.string(a)?.to_owned(),
                "require" => {
                    policy.require = self.words(a)?.into_iter().map(str::to_owned).collect();
                }
                "rules" => policy.rules = self.auth_rules(a)?,
                "certificate" => policy.certificate = Some(self.certificate(a)?),
                "session_key" => {
                    policy.session = Some(crate::config::SessionPolicy::new(self.path(a)?));
                }
                "session_path" => session_path = Some((a, self.string(a)?.to_owned())),
                // ouistiti's: the session's length, in seconds.
                "expire" => {
                    let max = crate::config::MAX_SESSION_EXPIRE.as_secs();
                    let secs =
                        self.int(a, 60, i64::try_from(max).unwrap_or(i64::MAX), "seconds")?;
                    expire = Some((a, Duration::from_secs(u64::try_from(secs).unwrap_or(60))));
                }
                "options" => {
                    let o = self.string(a)?;
                    if !o.trim().is_empty() {
                        return Err(self.err(
                            a.value.pos,
                            format!(
                                "auth: options {} are not read by wsgate (its sessions, cookie \
                                 and token, come with session_key)",
                                quote(o)
                            ),
                        ));
                    }
                }
                "file" => {
                    return Err(self.err(
                        a.value.pos,
                        "auth: file: wsgate reads the user database of the JSON-RPC auth plugin \
                         (user:group:hash:home), named with dbname"
                            .to_owned(),
                    ))
                }
                // A page to send the unauthenticated to (a redirect: ouistiti itself does not
                // redirect WebSocket handshakes), and how ouistiti's own tokens are made:
                // wsgate answers 401, and signs its sessions with its own key file.
                "signin" | "mode" | "secret" | "algorithm" | "issuer" => self.warn(
                    a.pos,
                    format!(
                        "auth: {} is not used by wsgate (ignored; it answers 401)",
                        quote(&a.name)
                    ),
                ),
                _ => self.unknown(a, "auth"),
            }
        }
        for (a, what) in [
            (session_path.as_ref().map(|(a, _)| *a), "session_path"),
            (expire.map(|(a, _)| a), "expire"),
        ] {
            if let (Some(a), None) = (a, &policy.session) {
                return Err(self.err(
                    a.pos,
                    format!("auth: {what} needs session_key (the sessions' key file)"),
                ));
            }
        }
        if let Some(sp) = policy.session.as_mut() {
            if let Some((_, p)) = session_path {
                sp.path = p;
            }
            if let Some((_, e)) = expire {
                sp.expire = e;
            }
        }
        if !db_set {
            return Err(
                self.err(s.value.pos, "auth: expected \"dbname\", the user database".to_owned())
            );
        }
        let check =
            crate::config::Site { auth: Some(policy.clone()), ..crate::config::Site::default() };
        check.validate().map_err(|e| self.err(s.value.pos, format!("auth: {}", e.0)))?;
        Ok(policy)
    }

    /// `rules = ( { path = "PATTERNS"; require = "GROUPS"; }, ... )`.
    fn auth_rules(&mut self, s: &Setting) -> Result<Vec<crate::config::AuthRule>, ConfigFileError> {
        let items = match &s.value.kind {
            Kind::List(items) => items.as_slice(),
            _ => return Err(self.type_err(s, "a list ( { path; require; }, ... )")),
        };
        let mut rules = Vec::new();
        for item in items {
            let Kind::Group(g) = &item.kind else {
                return Err(self
                    .err(item.pos, "auth rules: expected a group { path; require; }".to_owned()));
            };
            let mut rule = crate::config::AuthRule { paths: String::new(), require: Vec::new() };
            for a in g {
                match a.name.as_str() {
                    "path" => rule.paths = self.string(a)?.to_owned(),
                    "require" => {
                        rule.require = self.words(a)?.into_iter().map(str::to_owned).collect();
                    }
                    _ => self.unknown(a, "auth rule"),
                }
            }
            if rule.paths.is_empty() {
                return Err(self
                    .err(item.pos, "auth rule: expected \"path\", the paths it names".to_owned()));
            }
            rules.push(rule);
        }
        Ok(rules)
    }

    /// `certificate = { subject = "PATTERN"; issuer = "PATTERN"; group = "NAME"; }`.
    fn certificate(
        &mut self,
        s: &Setting,
    ) -> Result<crate::config::CertificateRule, ConfigFileError> {
        let g = self.group(s, "certificate")?;
        let mut rule = crate::config::CertificateRule {
            subject: String::new(),
            issuer: String::new(),
            group: crate::config::DEFAULT_CERTIFICATE_GROUP.to_owned(),
        };
        for a in g {
            match a.name.as_str() {
                "subject" => rule.subject = self.string(a)?.to_owned(),
                "issuer" => rule.issuer = self.string(a)?.to_owned(),
                "group" => rule.group = self.string(a)?.to_owned(),
                _ => self.unknown(a, "auth certificate"),
            }
        }
        Ok(rule)
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

    fn tls(&mut self, s: &Setting) -> Result<TlsSection, ConfigFileError> {
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
        Ok(TlsSection {
            files: crate::tls::TlsFiles {
                crtfile: need(crtfile, "crtfile", "the certificate file")?,
                keyfile: need(keyfile, "keyfile", "the private key file")?,
                cachain,
                client_ca,
            },
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
