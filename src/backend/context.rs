//! The connection context as a backend reads it: `NAME=value` lines (see
//! [`crate::relay::context`] for what the gateway sends and how each mode delivers it).

/// The value of `name` in the context `lines`, if present and UTF-8.
#[must_use]
pub fn value<'a>(lines: &'a [u8], name: &str) -> Option<&'a str> {
    lines.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        std::str::from_utf8(rest).ok()
    })
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
    }
}
