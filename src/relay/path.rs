//! The URL path of an upgrade request, turned into a safe relative name.
//!
//! This module owns percent-decoding (RFC 3986 §2.1) and every syntactic check on the path,
//! before it is matched by [`acl`](super::acl) and joined to the docroot by
//! [`route`](super::route). The result keeps its leading `/`; the name below the docroot is
//! what follows it. Anything that could name a file outside the docroot, or name the same
//! file two ways, is refused here rather than normalised: no dot segments, no empty segments,
//! no encoded `/`, no NUL or other control character, no backslash. Nothing here allocates.
//!
//! A trailing `/` is not an empty segment: it says the path names a directory. A backend is
//! a socket, never a directory, so [`decode`] (backend names) refuses it with its own error;
//! [`decode_page`] (static pages) keeps it, and the page server answers a directory with its
//! default page, asked for with or without the `/`.

/// Largest decoded path, in bytes, leading `/` included.
pub const MAX_PATH: usize = 256;

/// The rule a request path breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (RFC 3986 §3.3: a path-absolute).
    NotAbsolute,
    /// A `%` not followed by two hex digits (RFC 3986 §2.1), e.g. `%zz` or a truncated `%2`.
    BadEscape,
    /// A decoded NUL byte (`%00`): it would cut the name short at the OS boundary.
    Nul,
    /// A decoded control character (`%01`..`%1F`, `%7F`, or a C1 control U+0080..U+009F,
    /// raw or encoded) other than NUL: never part of a name, and a line break would forge log
    /// lines.
    Control,
    /// An encoded `/` (`%2F`).
    EncodedSlash,
    /// A backslash, raw or encoded: a path separator to some clients and tools, never a name.
    Backslash,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// An empty segment: `//` anywhere, or a trailing `/` after another `/`.
    EmptySegment,
    /// A backend name ending with `/`: that names a directory, and a backend is a socket.
    TrailingSlash,
    /// A `.` or `..` segment (RFC 3986 §3.3), also when spelled with escapes (`%2e%2e`).
    DotSegment,
    /// The decoded path is longer than [`MAX_PATH`].
    TooLong,
    /// The path is `/`: it names nothing.
    Empty,
}

impl PathError {
    /// The HTTP status that answers this error: 414 (URI Too Long) for [`PathError::TooLong`],
    /// 400 (Bad Request) for the rest.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLong => 414,
            _ => 400,
        }
    }
}

impl core::fmt::Display for PathError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "path does not start with '/'",
            Self::BadEscape => "bad percent-escape in path",
            Self::Nul => "path contains NUL",
            Self::Control => "path contains a control character",
            Self::EncodedSlash => "path contains an encoded '/'",
            Self::Backslash => "path contains a backslash",
            Self::NotUtf8 => "path is not UTF-8",
            Self::EmptySegment => "path has an empty segment",
            Self::TrailingSlash => "path ends with '/' (a directory, not a backend)",
            Self::DotSegment => "path has a '.' or '..' segment",
            Self::TooLong => "path too long",
            Self::Empty => "path names nothing",
        })
    }
}

/// The value of one hex digit (RFC 3986 §2.1: "HEXDIG", either case).
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 0xa),
        b'A'..=b'F' => Some(b - b'A' + 0xa),
        _ => None,
    }
}

/// Percent-decodes `raw` (a request path, no query) into `out` and checks it as the name of
/// a backend.
///
/// Returns the decoded path with its leading `/`.
///
/// # Errors
/// [`PathError`] names the broken rule: `raw` not starting with `/`, a bad or truncated
/// %-escape, a decoded NUL or other control character, an encoded `/`, a backslash, a result
/// that is not UTF-8, an empty segment (`//`), a `.` or `..` segment (also from escapes such
/// as `%2e%2e`), a trailing `/`, the bare `/`, or a decoded result longer than `out`
/// ([`PathError::TooLong`], status 414).
pub fn decode<'o>(raw: &str, out: &'o mut [u8; MAX_PATH]) -> Result<&'o str, PathError> {
    let path = decode_checked(raw, out)?;
    if path.len() == 1 {
        return Err(PathError::Empty);
    }
    if path.ends_with('/') {
        return Err(PathError::TrailingSlash);
    }
    Ok(path)
}

/// [`decode`] for a static page: the bare `/` (the docroot) and a trailing `/` (a directory)
/// are accepted, and kept in the result.
///
/// # Errors
/// As [`decode`], less [`PathError::Empty`] and [`PathError::TrailingSlash`].
pub fn decode_page<'o>(raw: &str, out: &'o mut [u8; MAX_PATH]) -> Result<&'o str, PathError> {
    decode_checked(raw, out)
}

/// The rules [`decode`] and [`decode_page`] share; the result may end with `/`.
fn decode_checked<'o>(raw: &str, out: &'o mut [u8; MAX_PATH]) -> Result<&'o str, PathError> {
    let Some(b'/') = raw.as_bytes().first() else {
        return Err(PathError::NotAbsolute);
    };
    let mut len = 0;
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        let decoded = if b == b'%' {
            let (Some(hi), Some(lo)) = (bytes.next(), bytes.next()) else {
                return Err(PathError::BadEscape);
            };
            let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
                return Err(PathError::BadEscape);
            };
            let value = hi << 4 | lo;
            // RFC 3986 §2.2: "%2F" is data, not a delimiter. Decoding it to '/' would make
            // "a%2Fb" and "a/b" the same file while the ACL and the logs saw different paths;
            // keeping it encoded would make a name that no other tool spells the same way.
            // Either way it is ambiguous, so it is refused.
            if value == b'/' {
                return Err(PathError::EncodedSlash);
            }
            value
        } else {
            b
        };
        match decoded {
            0x00 => return Err(PathError::Nul),
            0x01..=0x1f | 0x7f => return Err(PathError::Control),
            b'\\' => return Err(PathError::Backslash),
            _ => {}
        }
        let slot = out.get_mut(len).ok_or(PathError::TooLong)?;
        *slot = decoded;
        len += 1;
    }
    let out: &'o [u8; MAX_PATH] = out;
    let path = out.get(..len).ok_or(PathError::TooLong)?;
    let path = core::str::from_utf8(path).map_err(|_| PathError::NotUtf8)?;
    // The C1 controls (U+0080..U+009F) are control characters too, raw or encoded: U+0085
    // (NEL) is a line break to some log readers, U+009B a terminal's CSI (found by
    // fuzz/handshake).
    if path.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    // Only '/' bytes from `raw` separate segments here: an encoded one was refused above.
    let name = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    // One trailing '/' marks a directory; what comes before it must be a name.
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.is_empty() {
        // "/" itself, or "//" (an empty name before the trailing '/').
        return if path.len() == 1 { Ok(path) } else { Err(PathError::EmptySegment) };
    }
    for segment in name.split('/') {
        match segment {
            // RFC 3986 §3.3: a segment may be empty, but here it would be an empty file name.
            "" => return Err(PathError::EmptySegment),
            // RFC 3986 §5.2.4 would remove these; a name must not depend on that.
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, clippy::expect_used)]
    use super::*;

    fn check(raw: &str) -> Result<String, PathError> {
        let mut out = [0u8; MAX_PATH];
        decode(raw, &mut out).map(str::to_owned)
    }

    #[test]
    fn good_paths_decode() {
        assert_eq!(check("/echo").as_deref(), Ok("/echo"));
        assert_eq!(check("/ws_chat").as_deref(), Ok("/ws_chat"));
        assert_eq!(check("/a/b").as_deref(), Ok("/a/b"));
        assert_eq!(check("/caf%C3%A9").as_deref(), Ok("/café"));
        assert_eq!(check("/caf%c3%a9").as_deref(), Ok("/café"));
        assert_eq!(check("/a%20b").as_deref(), Ok("/a b"));
        assert_eq!(check("/%41").as_deref(), Ok("/A"));
        assert_eq!(check("/a.b/..c/...").as_deref(), Ok("/a.b/..c/..."));
        assert_eq!(check("/.hidden").as_deref(), Ok("/.hidden"));
        assert_eq!(check("/%25").as_deref(), Ok("/%"));
    }

    #[test]
    fn traversal_corpus_is_refused() {
        let cases: &[(&str, PathError)] = &[
            ("/../x", PathError::DotSegment),
            ("/a/../b", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/%2e%2e/x", PathError::DotSegment),
            ("/%2E%2e", PathError::DotSegment),
            ("/.%2e/x", PathError::DotSegment),
            ("/%2E%2e%2fetc", PathError::EncodedSlash),
            ("/%2E%2e%2Fetc", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/./a", PathError::DotSegment),
            ("/a/.", PathError::DotSegment),
            ("/%2e", PathError::DotSegment),
            ("/a//b", PathError::EmptySegment),
            ("//a", PathError::EmptySegment),
            ("/a/", PathError::TrailingSlash),
            ("/a//", PathError::EmptySegment),
            ("//", PathError::EmptySegment),
            ("/%00", PathError::Nul),
            ("/a%00b", PathError::Nul),
            ("/a%0a", PathError::Control),
            ("/a%0D%0A", PathError::Control),
            ("/a%7f", PathError::Control),
            ("/a%C2%85", PathError::Control),
            ("/a\u{9b}b", PathError::Control),
            ("/a\\..\\b", PathError::Backslash),
            ("/a%5c..%5Cb", PathError::Backslash),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/a%g0", PathError::BadEscape),
            ("/a%+1", PathError::BadEscape),
            ("/%c3%28", PathError::NotUtf8),
            ("/%ff", PathError::NotUtf8),
            ("/%ed%a0%80", PathError::NotUtf8),
            ("/", PathError::Empty),
            ("", PathError::NotAbsolute),
            ("echo", PathError::NotAbsolute),
            ("http://h/echo", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("%2fecho", PathError::NotAbsolute),
        ];
        for (raw, want) in cases {
            assert_eq!(check(raw), Err(*want), "{raw:?}");
            assert_eq!(want.status(), 400, "{raw:?}");
        }
    }

    #[test]
    fn pages_may_name_directories() {
        let page = |raw: &str| {
            let mut out = [0u8; MAX_PATH];
            decode_page(raw, &mut out).map(str::to_owned)
        };
        assert_eq!(page("/").as_deref(), Ok("/"));
        assert_eq!(page("/docs/").as_deref(), Ok("/docs/"));
        assert_eq!(page("/a/b%20c/").as_deref(), Ok("/a/b c/"));
        assert_eq!(page("/docs").as_deref(), Ok("/docs"));
        for (raw, want) in [
            ("//", PathError::EmptySegment),
            ("//x", PathError::EmptySegment),
            ("/a//b", PathError::EmptySegment),
            ("/a//", PathError::EmptySegment),
            ("/../", PathError::DotSegment),
            ("/a/./", PathError::DotSegment),
            ("/a%2f", PathError::EncodedSlash),
            ("", PathError::NotAbsolute),
        ] {
            assert_eq!(page(raw), Err(want), "{raw:?}");
        }
        // A backend name never ends with '/'.
        assert_eq!(check("/docs/"), Err(PathError::TrailingSlash));
        assert_eq!(PathError::TrailingSlash.status(), 400);
    }

    #[test]
    fn length_limit_is_on_the_decoded_path() {
        let long = format!("/{}", "a".repeat(299));
        assert_eq!(check(&long), Err(PathError::TooLong));
        assert_eq!(PathError::TooLong.status(), 414);
        let exact = format!("/{}", "a".repeat(MAX_PATH - 1));
        assert_eq!(check(&exact).as_deref(), Ok(exact.as_str()));
        let over = format!("/{}", "a".repeat(MAX_PATH));
        assert_eq!(check(&over), Err(PathError::TooLong));
        // 3 raw bytes per decoded byte: fits although raw is longer than MAX_PATH.
        let escaped = format!("/{}", "%41".repeat(MAX_PATH - 1));
        assert_eq!(check(&escaped).map(|p| p.len()), Ok(MAX_PATH));
    }

    #[test]
    fn result_borrows_the_caller_buffer() {
        let mut out = [0u8; MAX_PATH];
        let p = decode("/x%79z", &mut out).unwrap();
        assert_eq!(p, "/xyz");
        assert_eq!(&out[..4], b"/xyz");
    }

    #[test]
    fn random_input_never_panics_and_results_are_safe() {
        const POOL: &[&str] = &[
            "/", "a", ".", "..", "%", "%2", "%2e", "%2E", "%2f", "%00", "%41", "%c3", "%a9", "%ff",
            "%zz", "\\", "é", "%5c", "%0a", "?",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut raw = std::string::String::new();
            let mut bits = seed;
            for _ in 0..(seed % 9) {
                raw.push_str(POOL[(bits % POOL.len() as u64) as usize]);
                bits /= POOL.len() as u64;
            }
            if let Ok(p) = check(&raw) {
                assert!(p.starts_with('/') && p.len() > 1, "{raw:?} -> {p:?}");
                for segment in p[1..].split('/') {
                    assert!(!segment.is_empty() && segment != "." && segment != "..", "{raw:?}");
                }
                assert!(!p.contains(['\0', '\\', '\n']), "{raw:?} -> {p:?}");
            }
            let mut out = [0u8; MAX_PATH];
            match decode_page(&raw, &mut out) {
                Ok(p) => {
                    let dir = p.strip_suffix('/').unwrap_or(p);
                    if !dir.is_empty() {
                        for segment in dir[1..].split('/') {
                            assert!(!segment.is_empty() && segment != "." && segment != "..");
                        }
                    }
                    assert!(!p.contains(['\0', '\\', '\n']), "{raw:?} -> {p:?}");
                    // A backend name is a page path that names no directory.
                    let named = p.len() > 1 && !p.ends_with('/');
                    assert_eq!(check(&raw).is_ok(), named, "{raw:?} -> {p:?}");
                }
                Err(e) => assert_eq!(check(&raw), Err(e), "{raw:?}"),
            }
        }
    }

    #[test]
    fn errors_display() {
        assert_eq!(PathError::DotSegment.to_string(), "path has a '.' or '..' segment");
        assert_eq!(PathError::TooLong.to_string(), "path too long");
        assert_eq!(
            PathError::TrailingSlash.to_string(),
            "path ends with '/' (a directory, not a backend)"
        );
    }
}
