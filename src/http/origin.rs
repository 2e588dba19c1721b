//! Origin policy against cross-site WebSocket hijacking (RFC 6455 §10.2).
//!
//! Browsers send `Origin` on every WebSocket handshake, and send cookies with it even when the
//! page that opened the socket is on another site. So a gateway that accepts any Origin lets any
//! web page a user visits talk to the router's backends with the user's session. The default
//! policy therefore accepts only a request without `Origin` (not a browser: device clients,
//! scripts) or one whose Origin names the same host and port as the request's `Host`.

/// Which `Origin` values are accepted.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// No Origin, or Origin's host:port equal to Host's (the default).
    #[default]
    SameHost,
    /// Anything (`origin = "*"`).
    Any,
    /// No Origin, same host, or one of these: `scheme://host[:port]` entries must equal the
    /// Origin (default ports filled in); bare `host[:port]` entries match its authority.
    List(Vec<String>),
}

impl OriginPolicy {
    /// Parses `"*"`, `"same"`, or a comma-separated list.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "*" => Self::Any,
            "" | "same" => Self::SameHost,
            list => Self::List(
                list.split(',')
                    .map(|e| e.trim().to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect(),
            ),
        }
    }

    /// Is a handshake with this `Origin` and `Host` acceptable? `tls`: the listener's scheme.
    #[must_use]
    pub fn permits(&self, origin: Option<&str>, host: &str, tls: bool) -> bool {
        let Some(origin) = origin else { return true };
        if *self == Self::Any {
            return true;
        }
        let Some(o) = Authority::of_origin(origin) else { return false };
        let default_port = if tls { 443 } else { 80 };
        if let Some(h) = Authority::parse(host, default_port) {
            if o.same(&h) {
                return true;
            }
        }
        let Self::List(entries) = self else { return false };
        entries.iter().any(|e| match Authority::of_origin(e) {
            Some(full) if e.contains("://") => full.same(&o) && full.scheme == o.scheme,
            _ => {
                // Bare host[:port]: the port is compared only when given.
                let (h, p) = split_port(e);
                h.eq_ignore_ascii_case(o.host) && p.is_none_or(|p| p == o.port)
            }
        })
    }
}

#[derive(Debug)]
struct Authority<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

impl<'a> Authority<'a> {
    fn parse(s: &'a str, default_port: u16) -> Option<Self> {
        let (host, port) = split_port(s);
        if host.is_empty() {
            return None;
        }
        Some(Self { scheme: "", host, port: port.unwrap_or(default_port) })
    }

    /// `scheme://host[:port]` (RFC 6454 serialisation). "null" and anything else fail.
    fn of_origin(s: &'a str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let mut a = Self::parse(rest, default_port)?;
        a.scheme = scheme;
        Some(a)
    }

    fn same(&self, other: &Self) -> bool {
        self.host.eq_ignore_ascii_case(other.host) && self.port == other.port
    }
}

/// `host[:port]`, IPv6 literals in brackets included.
fn split_port(s: &str) -> (&str, Option<u16>) {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => return (s, None),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    match port.map(str::parse::<u16>) {
        Some(Ok(p)) => (host, Some(p)),
        Some(Err(_)) => ("", None),
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_default() {
        let p = OriginPolicy::default();
        assert!(p.permits(None, "router.lan", false));
        assert!(p.permits(Some("http://router.lan"), "router.lan", false));
        assert!(p.permits(Some("http://Router.LAN:80"), "router.lan", false));
        assert!(p.permits(Some("http://192.168.1.1:8080"), "192.168.1.1:8080", false));
        assert!(p.permits(Some("https://router.lan"), "router.lan", true));
        assert!(p.permits(Some("http://[::1]:8080"), "[::1]:8080", false));
        assert!(!p.permits(Some("http://evil.example"), "router.lan", false));
        assert!(!p.permits(Some("http://router.lan:8081"), "router.lan:8080", false));
        assert!(!p.permits(Some("null"), "router.lan", false));
        assert!(!p.permits(Some("http://router.lan@evil.example"), "router.lan", false));
        assert!(!p.permits(Some("http://router.lan:99999"), "router.lan", false));
    }

    #[test]
    fn lists_and_any() {
        let p = OriginPolicy::parse("http://ui.lan:8000, app.lan");
        assert!(p.permits(Some("http://ui.lan:8000"), "router.lan", false));
        assert!(!p.permits(Some("https://ui.lan:8000"), "router.lan", false));
        assert!(p.permits(Some("https://app.lan"), "router.lan", false));
        assert!(p.permits(Some("http://app.lan:1234"), "router.lan", false));
        assert!(p.permits(Some("http://router.lan"), "router.lan", false));
        assert!(!p.permits(Some("http://evil.lan"), "router.lan", false));
        assert!(OriginPolicy::parse("*").permits(Some("null"), "x", false));
        assert_eq!(OriginPolicy::parse("same"), OriginPolicy::SameHost);
    }
}
