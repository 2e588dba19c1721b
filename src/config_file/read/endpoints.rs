//! The endpoint groups of a server: its `websocket` section (names, modes, origins) and its
//! `links` (endpoints whose backend the configuration names).

use super::*;

impl Reader<'_> {
    /// The websocket group, and where `direct` was asked for.
    pub(super) fn websocket(
        &mut self,
        pos: Pos,
        g: &[Setting],
    ) -> Result<(WebsocketConfig, Option<Pos>), ConfigFileError> {
        let mut docroot = None;
        let mut direct = None;
        // The first setting that turns compression on, where an error with direct mode points.
        let mut compression_on = None;
        let mut ws = WebsocketConfig {
            docroot: PathBuf::new(),
            access: AccessList::default(),
            direct: false,
            metrics: None,
            mode: DEFAULT_MODE,
            endpoint_modes: Vec::new(),
            data_type: DEFAULT_DATA_TYPE,
            origin: None,
            ping_interval: None,
            pong_timeout: None,
            idle_timeout: None,
            handshake_timeout: None,
            max_message: None,
            context: false,
            context_endpoints: None,
            links: Vec::new(),
            compression: None,
            endpoint_compression: Vec::new(),
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
                                "expected {} for \"type\", found {}",
                                alternatives(&DataType::ALL.map(DataType::name)),
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
                "max_message" => ws.max_message = Some(self.bytes(s, "max_message")?),
                "compression" => match &s.value.kind {
                    Kind::Group(g) => {
                        for e in g {
                            let on = self.compression(e)?;
                            ws.endpoint_compression.push((e.name.clone(), on));
                            compression_on = compression_on.or(on.then_some(e.value.pos));
                        }
                    }
                    _ => {
                        let on = self.compression(s)?;
                        ws.compression = Some(on);
                        compression_on = compression_on.or(on.then_some(s.value.pos));
                    }
                },
                "context" => match &s.value.kind {
                    Kind::Str(p) => {
                        ws.context = true;
                        ws.context_endpoints = Some(p.clone());
                    }
                    _ => ws.context = self.boolean(s)?,
                },
                "links" => ws.links = self.links(s)?,
                "metrics" => ws.metrics = Some(self.string(s)?.to_owned()),
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
        if let (Some(_), Some(at)) = (direct, compression_on) {
            return Err(self.err(at, crate::config::DIRECT_COMPRESSION.to_owned()));
        }
        ws.direct = direct.is_some();
        Ok((ws, direct))
    }

    /// `links = ( { origin = "mqtt"; type = "tcp"; destination = "127.0.0.1"; port = 1883; },
    /// ... );`: ouistiti's form. A link type wsgate cannot serve is an error at its line, never
    /// a link silently missing.
    pub(super) fn links(&mut self, s: &Setting) -> Result<Vec<Link>, ConfigFileError> {
        let elems: Vec<&Value> = match &s.value.kind {
            Kind::List(v) => v.iter().collect(),
            Kind::Group(_) => vec![&s.value],
            _ => return Err(self.type_err(s, "a list of link groups ( { ... }, ... )")),
        };
        let mut links = Vec::new();
        for v in elems {
            let Some(g) = v.as_group() else {
                return Err(self.err(
                    v.pos,
                    format!("expected a group {{ ... }} in \"links\", found {}", v.kind.describe()),
                ));
            };
            links.push(self.link(v.pos, g)?);
        }
        Ok(links)
    }

    fn link(&mut self, pos: Pos, g: &[Setting]) -> Result<Link, ConfigFileError> {
        let (mut origin, mut destination, mut kind, mut port) = (None, None, None, None);
        let (mut baud, mut frame) = (None, None);
        let (mut args, mut dir, mut limit, mut source) = (None, None, None, None);
        for s in g {
            match s.name.as_str() {
                "origin" => origin = Some((s.value.pos, self.string(s)?)),
                "destination" => destination = Some((s.value.pos, self.string(s)?)),
                "type" => kind = Some((s.value.pos, self.string(s)?)),
                "port" => port = Some(u16::try_from(self.int(s, 1, 65535, "a port")?).unwrap_or(0)),
                "baud" => baud = Some(self.int(s, 1, i64::from(u32::MAX), "bits per second")?),
                "frame" => frame = Some((s.value.pos, self.string(s)?)),
                "args" => args = Some((s.value.pos, self.strings(s)?)),
                "dir" => dir = Some((s.value.pos, self.string(s)?)),
                "source" => source = Some((s.value.pos, self.string(s)?)),
                "limit" => {
                    limit = Some(
                        u32::try_from(self.int(
                            s,
                            1,
                            i64::from(crate::config::MAX_EXEC_LIMIT),
                            "processes",
                        )?)
                        .unwrap_or(1),
                    )
                }
                _ => self.unknown(s, "a link"),
            }
        }
        let need =
            |what: &str| self.err(pos, format!("expected {} in a link, found none", quote(what)));
        let (opos, origin) = origin.ok_or_else(|| need("origin"))?;
        let (dpos, destination) = destination.ok_or_else(|| need("destination"))?;
        let origin = origin.trim_start_matches('/');
        link::check_origin(origin).map_err(|e| self.err(opos, e))?;
        let kind = kind.map_or(("unix", pos), |(p, k)| (k, p));
        // What only an exec link reads is an error elsewhere: a program's settings on a socket
        // link mean the configuration is not what its author thinks.
        if kind.0 != "exec" {
            if let Some(p) = args.as_ref().map(|a| a.0).or(dir.map(|d| d.0)) {
                return Err(self.err(
                    p,
                    format!(
                        "\"args\" and \"dir\" are settings of an exec link, not of a {} one",
                        quote(kind.0)
                    ),
                ));
            }
        }
        let target = match kind {
            ("unix", _) => link::unix(destination).map_err(|e| self.err(dpos, e))?,
            ("tcp", _) => {
                let port = port.ok_or_else(|| need("port"))?;
                link::tcp(destination, port).map_err(|e| self.err(dpos, e))?
            }
            ("tty", _) => {
                // ouistiti's `baud`, and wsgate's `frame` (data bits, parity, stop bits).
                let settings =
                    format!("{},{}", baud.unwrap_or(115_200), frame.map_or("8N1", |(_, f)| f));
                let at = frame.map_or(dpos, |(p, _)| p);
                link::tty(destination, Some(&settings)).map_err(|e| self.err(at, e))?
            }
            ("exec", _) => {
                let at = dir.map_or(dpos, |(p, _)| p);
                let args = args.map(|(_, a)| a).unwrap_or_default();
                link::exec(destination, args, dir.map(|(_, d)| d), limit).map_err(|e| self.err(at, e))?
            }
            ("fifo", _) => {
                // ouistiti's fifo had one path, which carries one way only: the second, read
                // by the gateway, is wsgate's `source`.
                let (spos, source) = source.ok_or_else(|| need("source"))?;
                link::fifo(destination, source).map_err(|e| self.err(spos, e))?
            }
            (other, tpos) => {
                return Err(self.err(
                    tpos,
                    format!(
                        "expected \"unix\", \"tcp\", \"tty\" or \"exec\" for a link's \"type\", found {}",
                        quote(other)
                    ),
                ))
            }
        };
        Ok(Link { origin: origin.to_owned(), target })
    }

    fn mode(&self, s: &Setting, m: &str) -> Result<Mode, ConfigFileError> {
        m.parse().map_err(|_: String| {
            self.err(
                s.value.pos,
                format!(
                    "expected {} for {}, found {}",
                    alternatives(&Mode::ALL.map(Mode::name)),
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
}

impl Reader<'_> {
    /// A byte count, `N` or `"16K"`, from 1 to `i64::MAX` (what `render` writes back).
    pub(super) fn bytes(&self, s: &Setting, key: &str) -> Result<u64, ConfigFileError> {
        let n = match &s.value.kind {
            Kind::Str(t) => parse_bytes(t).map_err(|e| {
                self.err(s.value.pos, format!("expected a byte count for {}: {e}", quote(key)))
            })?,
            _ => u64::try_from(self.int(s, 1, i64::MAX, "bytes")?).unwrap_or_default(),
        };
        if n == 0 || n > i64::MAX as u64 {
            return Err(self.err(
                s.value.pos,
                format!("expected bytes 1..={} for {}, found {n}", i64::MAX, quote(key)),
            ));
        }
        Ok(n)
    }

    /// `"permessage-deflate"` or `"none"` (see [`crate::config::parse_compression`]).
    fn compression(&self, s: &Setting) -> Result<bool, ConfigFileError> {
        let c = self.string(s)?;
        crate::config::parse_compression(c)
            .map_err(|e| self.err(s.value.pos, format!("compression: {e}")))
    }
}
