//! The connection context as a backend reads it: `NAME=value` lines (see
//! [`wsgate::relay::context`] for what the gateway sends and how each mode delivers it).

/// The value of `name` in the context `lines`, if present and UTF-8.
#[must_use]
pub fn value<'a>(lines: &'a [u8], name: &str) -> Option<&'a str> {
    lines.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        std::str::from_utf8(rest).ok()
    })
}

/// The client's address and port (`REMOTE_ADDR`, `REMOTE_PORT`; IPv4 or IPv6, whole).
#[must_use]
pub fn peer(lines: &[u8]) -> Option<std::net::SocketAddr> {
    let ip = value(lines, "REMOTE_ADDR")?.parse().ok()?;
    let port = value(lines, "REMOTE_PORT")?.parse().ok()?;
    Some(std::net::SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_exact_name() {
        let ctx = b"REMOTE_ADDR=10.0.0.2\nREMOTE_PORT=5000\nHTTP_HOST=r.lan\n";
        assert_eq!(value(ctx, "REMOTE_ADDR"), Some("10.0.0.2"));
        assert_eq!(value(ctx, "REMOTE_PORT"), Some("5000"));
        assert_eq!(value(ctx, "REMOTE"), None);
        assert_eq!(value(ctx, "HOST"), None);
        assert_eq!(value(b"", "REMOTE_ADDR"), None);
        assert_eq!(peer(ctx), "10.0.0.2:5000".parse().ok());
        assert_eq!(
            peer(b"REMOTE_ADDR=2001:db8::1\nREMOTE_PORT=1\n"),
            "[2001:db8::1]:1".parse().ok()
        );
    }
}
