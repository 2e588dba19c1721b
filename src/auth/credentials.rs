//! What a request presents to prove who it is: an `Authorization` header (Basic, Bearer), a
//! session cookie, or a login form's body. Parsing only, into the caller's buffers: nothing
//! here allocates, and no input can make it panic (`fuzz/fuzz_targets/credentials.rs`).
//!
//! Every parser is strict where leniency would let two readings of one request disagree (a
//! proxy's and ours) and bounded where an attacker chooses the size.

/// Longest `Authorization` value looked at; a longer one is refused (400), not truncated.
pub const MAX_AUTHORIZATION: usize = 1024;
/// Longest user name (the user database's rule).
pub const MAX_USER: usize = 32;
/// Longest password (SHA-crypt's cost grows with it).
pub const MAX_PASSWORD: usize = 256;

/// A credential from an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Basic base64(user:password)`: the user and the password, decoded.
    Basic {
        /// The user name.
        user: &'a str,
        /// The password, bytes as sent.
        password: &'a [u8],
    },
    /// `Bearer <token>`: a session token as the login gave it.
    Bearer(&'a str),
}

/// Why a credential is refused before any user is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialError {
    /// Longer than the bounds above.
    TooLong,
    /// A scheme other than Basic and Bearer.
    Scheme,
    /// Not base64, no ':', not UTF-8 in the user name, a control character...
    Malformed,
}

impl core::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooLong => "credentials too long",
            Self::Scheme => "authorization scheme not Basic or Bearer",
            Self::Malformed => "malformed credentials",
        })
    }
}

/// Parses an `Authorization` header value (RFC 7235 §2.1, RFC 7617, RFC 6750 §2.1). The scheme
/// is matched without regard to case; one space separates it from its parameter, as every
/// client sends it. Basic's decoded bytes go into `scratch`.
///
/// # Errors
/// [`CredentialError`].
pub fn authorization<'a>(
    value: &'a [u8],
    scratch: &'a mut [u8; MAX_AUTHORIZATION],
) -> Result<Credential<'a>, CredentialError> {
    if value.len() > MAX_AUTHORIZATION {
        return Err(CredentialError::TooLong);
    }
    let (scheme, param) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (value.get(..i).unwrap_or_default(), value.get(i + 1..).unwrap_or_default()),
        None => return Err(CredentialError::Scheme),
    };
    if scheme.eq_ignore_ascii_case(b"basic") {
        let n = crate::http::handshake::base64_decode(param, scratch)
            .ok_or(CredentialError::Malformed)?;
        let decoded = scratch.get(..n).ok_or(CredentialError::Malformed)?;
        let colon = decoded.iter().position(|&b| b == b':').ok_or(CredentialError::Malformed)?;
        let (user, password) = (
            decoded.get(..colon).unwrap_or_default(),
            decoded.get(colon + 1..).unwrap_or_default(),
        );
        let user = user_name(user)?;
        if password.len() > MAX_PASSWORD {
            return Err(CredentialError::TooLong);
        }
        return Ok(Credential::Basic { user, password });
    }
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return token(param).map(Credential::Bearer);
    }
    Err(CredentialError::Scheme)
}

/// A user name as the user database allows it: 1 to [`MAX_USER`] bytes of `A-Z a-z 0-9 _ . -`,
/// not starting with `-`.
///
/// # Errors
/// [`CredentialError::Malformed`], or `TooLong`.
pub fn user_name(raw: &[u8]) -> Result<&str, CredentialError> {
    if raw.len() > MAX_USER {
        return Err(CredentialError::TooLong);
    }
    let ok = !raw.is_empty()
        && raw.first() != Some(&b'-')
        && raw.iter().all(|&b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(CredentialError::Malformed);
    }
    core::str::from_utf8(raw).map_err(|_| CredentialError::Malformed)
}

/// A session token (RFC 6750 `b64token`, which the tokens wsgate makes are a subset of).
///
/// # Errors
/// [`CredentialError::Malformed`].
pub fn token(raw: &[u8]) -> Result<&str, CredentialError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_AUTHORIZATION
        && raw.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~+/:,=".contains(&b));
    if !ok {
        return Err(CredentialError::Malformed);
    }
    core::str::from_utf8(raw).map_err(|_| CredentialError::Malformed)
}

/// The value of cookie `name` in a `Cookie` header value (RFC 6265 §5.4: `a=1; b=2`), if it is
/// there exactly once. A name given twice is `None`: a second cookie of the same name may come
/// from a sibling domain or path, and taking either one would let that one choose.
#[must_use]
pub fn cookie<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut found = None;
    for pair in header.split(|&b| b == b';') {
        let pair = trim(pair);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else { continue };
        let (n, v) = (pair.get(..eq).unwrap_or_default(), pair.get(eq + 1..).unwrap_or_default());
        if trim(n) != name.as_bytes() {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let v = trim(v);
        let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
        found = Some(v);
    }
    found
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// The `user` and `password` fields of a login form
/// (`application/x-www-form-urlencoded`), percent-decoded into `user_out` and `pass_out`.
/// A field given twice, a missing one, a bad `%` escape or one over its bound is refused.
///
/// # Errors
/// [`CredentialError`].
pub fn login_form<'u, 'p>(
    body: &[u8],
    user_out: &'u mut [u8; MAX_USER],
    pass_out: &'p mut [u8; MAX_PASSWORD],
) -> Result<(&'u str, &'p [u8]), CredentialError> {
    let (mut user, mut pass) = (None, None);
    for field in body.split(|&b| b == b'&') {
        let Some(eq) = field.iter().position(|&b| b == b'=') else { continue };
        let (k, v) = (field.get(..eq).unwrap_or_default(), field.get(eq + 1..).unwrap_or_default());
        match k {
            b"user" | b"username" if user.is_none() => {
                user = Some(percent_decode(v, user_out.as_mut_slice())?);
            }
            b"password" if pass.is_none() => {
                pass = Some(percent_decode(v, pass_out.as_mut_slice())?);
            }
            b"user" | b"username" | b"password" => return Err(CredentialError::Malformed),
            _ => {}
        }
    }
    let (Some(u), Some(p)) = (user, pass) else { return Err(CredentialError::Malformed) };
    let user = user_name(user_out.get(..u).unwrap_or_default())?;
    Ok((user, pass_out.get(..p).unwrap_or_default()))
}

/// Percent-decodes a form value (`+` is a space) into `out`; its length.
fn percent_decode(src: &[u8], out: &mut [u8]) -> Result<usize, CredentialError> {
    let mut n = 0;
    let mut i = 0;
    while let Some(&b) = src.get(i) {
        let byte = match b {
            b'+' => {
                i += 1;
                b' '
            }
            b'%' => {
                let hex = src.get(i + 1..i + 3).ok_or(CredentialError::Malformed)?;
                let s = core::str::from_utf8(hex).map_err(|_| CredentialError::Malformed)?;
                i += 3;
                u8::from_str_radix(s, 16).map_err(|_| CredentialError::Malformed)?
            }
            _ => {
                i += 1;
                b
            }
        };
        *out.get_mut(n).ok_or(CredentialError::TooLong)? = byte;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn basic(v: &[u8]) -> Result<(String, Vec<u8>), CredentialError> {
        let mut scratch = [0u8; MAX_AUTHORIZATION];
        match authorization(v, &mut scratch)? {
            Credential::Basic { user, password } => Ok((user.to_owned(), password.to_vec())),
            Credential::Bearer(_) => panic!("bearer"),
        }
    }

    #[test]
    fn basic_credentials() {
        // RFC 7617 §2's example.
        assert_eq!(
            basic(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(),
            ("Aladdin".into(), b"open sesame".to_vec())
        );
        assert_eq!(basic(b"basic YTpiOmM=").unwrap(), ("a".into(), b"b:c".to_vec()));
        assert_eq!(basic(b"Basic YTo=").unwrap(), ("a".into(), b"".to_vec()));
        for bad in
            [&b"Basic"[..], b"Basic ", b"Basic YWJj", b"Basic !!!!", b"Basic Ojo=", b"Digest x"]
        {
            assert!(basic(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(basic(&[b'x'; MAX_AUTHORIZATION + 1]), Err(CredentialError::TooLong));
        assert_eq!(basic(b"Negotiate abc"), Err(CredentialError::Scheme));
        let mut scratch = [0u8; MAX_AUTHORIZATION];
        assert_eq!(
            authorization(b"Bearer admin:root:1767225600:ab01", &mut scratch),
            Ok(Credential::Bearer("admin:root:1767225600:ab01"))
        );
        assert!(authorization(b"Bearer a b", &mut scratch).is_err());
    }

    #[test]
    fn cookies() {
        let h = b"theme=dark; wsgate=abc:def ;other=1";
        assert_eq!(cookie(h, "wsgate"), Some(&b"abc:def"[..]));
        assert_eq!(cookie(h, "theme"), Some(&b"dark"[..]));
        assert_eq!(cookie(h, "missing"), None);
        assert_eq!(cookie(b"wsgate=\"q\"", "wsgate"), Some(&b"q"[..]));
        // Twice: neither.
        assert_eq!(cookie(b"wsgate=a; wsgate=b", "wsgate"), None);
        assert_eq!(cookie(b"xwsgate=a", "wsgate"), None);
    }

    #[test]
    fn login_forms() {
        let (mut u, mut p) = ([0u8; MAX_USER], [0u8; MAX_PASSWORD]);
        let (user, pass) =
            login_form(b"user=admin&password=s%3Dcr+t%21&x=1", &mut u, &mut p).unwrap();
        assert_eq!((user, pass), ("admin", &b"s=cr t!"[..]));
        for bad in [
            &b"user=admin"[..],
            b"password=x",
            b"user=a&user=b&password=x",
            b"user=a&password=%zz",
            b"user=a&password=%4",
            b"user=a%20b&password=x",
        ] {
            let (mut u, mut p) = ([0u8; MAX_USER], [0u8; MAX_PASSWORD]);
            assert!(login_form(bad, &mut u, &mut p).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = [b"user=a&password=".as_slice(), &[b'x'; MAX_PASSWORD + 1]].concat();
        let (mut u, mut p) = ([0u8; MAX_USER], [0u8; MAX_PASSWORD]);
        assert_eq!(login_form(&long, &mut u, &mut p), Err(CredentialError::TooLong));
    }
}
