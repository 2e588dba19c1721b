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

/// The value of field `name` of a form body, percent-decoded into `out`: its length, `None`
/// when the form does not have it.
///
/// # Errors
/// The field is there twice, badly escaped, or longer than `out`.
pub fn form_field(
    body: &[u8],
    name: &str,
    out: &mut [u8],
) -> Result<Option<usize>, CredentialError> {
    let mut found = None;
    for field in body.split(|&b| b == b'&') {
        let Some(eq) = field.iter().position(|&b| b == b'=') else { continue };
        if field.get(..eq) != Some(name.as_bytes()) {
            continue;
        }
        if found.is_some() {
            return Err(CredentialError::Malformed);
        }
        found = Some(percent_decode(field.get(eq + 1..).unwrap_or_default(), out)?);
    }
    Ok(found)
}

/// A JSON login (`{"user": "...", "password": "...", "token": true}`): a flat object whose
/// `user` (or `username`) and `password` are strings, decoded into `user_out` and `pass_out`,
/// and whose `token` (a boolean, false when absent) asks for the session token in the answer.
/// Other members may hold strings, numbers, booleans or null; nested values, a member given
/// twice, or anything after the object are refused.
///
/// # Errors
/// [`CredentialError`].
pub fn login_json<'u, 'p>(
    body: &[u8],
    user_out: &'u mut [u8; MAX_USER],
    pass_out: &'p mut [u8; MAX_PASSWORD],
) -> Result<(&'u str, &'p [u8], bool), CredentialError> {
    let mut j = Json { s: body, i: 0 };
    let (mut user, mut pass, mut token) = (None, None, None);
    let mut key = [0u8; 16];
    j.expect(b'{')?;
    if !j.eat(b'}') {
        loop {
            // Keys longer than any known one are skipped, not refused.
            let k = j.string(&mut key).unwrap_or(0);
            let k = key.get(..k).unwrap_or_default();
            j.expect(b':')?;
            match k {
                b"user" | b"username" if user.is_none() => user = Some(j.string(user_out)?),
                b"password" if pass.is_none() => pass = Some(j.string(pass_out)?),
                b"token" if token.is_none() => token = Some(j.boolean()?),
                b"user" | b"username" | b"password" | b"token" => {
                    return Err(CredentialError::Malformed)
                }
                _ => j.scalar()?,
            }
            if j.eat(b',') {
                continue;
            }
            j.expect(b'}')?;
            break;
        }
    }
    j.ws();
    if j.i != j.s.len() {
        return Err(CredentialError::Malformed);
    }
    let (Some(u), Some(p)) = (user, pass) else { return Err(CredentialError::Malformed) };
    let user = user_name(user_out.get(..u).unwrap_or_default())?;
    Ok((user, pass_out.get(..p).unwrap_or_default(), token.unwrap_or(false)))
}

/// Just enough JSON (RFC 8259) for a login object: every read is bounds-checked.
struct Json<'a> {
    s: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.s.get(self.i) == Some(&c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), CredentialError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(CredentialError::Malformed)
        }
    }

    fn next(&mut self) -> Result<u8, CredentialError> {
        let b = *self.s.get(self.i).ok_or(CredentialError::Malformed)?;
        self.i += 1;
        Ok(b)
    }

    /// A string, decoded as UTF-8 into `out`; its length. Too long for `out` is `TooLong`
    /// (the whole string is still read).
    fn string(&mut self, out: &mut [u8]) -> Result<usize, CredentialError> {
        self.expect(b'"')?;
        let mut n = 0;
        let mut long = false;
        let mut put = |bytes: &[u8], n: &mut usize| {
            match out.get_mut(*n..*n + bytes.len()) {
                Some(dst) => dst.copy_from_slice(bytes),
                None => long = true,
            }
            *n += bytes.len();
        };
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.next()? != b'\\' || self.next()? != b'u' {
                                    return Err(CredentialError::Malformed);
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(CredentialError::Malformed);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or(CredentialError::Malformed)?
                        }
                        _ => return Err(CredentialError::Malformed),
                    };
                    let mut buf = [0u8; 4];
                    put(c.encode_utf8(&mut buf).as_bytes(), &mut n);
                }
                c if c < 0x20 => return Err(CredentialError::Malformed),
                c => put(&[c], &mut n),
            }
        }
        // Raw bytes were copied as sent: the whole must be UTF-8.
        if long {
            return Err(CredentialError::TooLong);
        }
        core::str::from_utf8(out.get(..n).unwrap_or_default())
            .map_err(|_| CredentialError::Malformed)?;
        Ok(n)
    }

    fn hex4(&mut self) -> Result<u32, CredentialError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = char::from(self.next()?).to_digit(16).ok_or(CredentialError::Malformed)?;
            v = v << 4 | d;
        }
        Ok(v)
    }

    fn boolean(&mut self) -> Result<bool, CredentialError> {
        self.ws();
        let rest = self.s.get(self.i..).unwrap_or_default();
        for (word, v) in [(&b"true"[..], true), (b"false", false)] {
            if rest.starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(CredentialError::Malformed)
    }

    /// Skips a string, number, boolean or null.
    fn scalar(&mut self) -> Result<(), CredentialError> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'"') => {
                let mut sink = [0u8; 0];
                match self.string(&mut sink) {
                    Ok(_) | Err(CredentialError::TooLong) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                while matches!(
                    self.s.get(self.i),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.i += 1;
                }
                Ok(())
            }
            Some(b'n') if self.s.get(self.i..self.i + 4) == Some(b"null") => {
                self.i += 4;
                Ok(())
            }
            _ => self.boolean().map(|_| ()),
        }
    }
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
        let mut next = [0u8; 64];
        let n = form_field(b"user=a&next=%2Fwebauth.html", "next", &mut next).unwrap();
        assert_eq!(&next[..n.unwrap()], b"/webauth.html");
        assert_eq!(form_field(b"user=a", "next", &mut next), Ok(None));
        assert!(form_field(b"next=/a&next=/b", "next", &mut next).is_err());
    }

    fn json(body: &str) -> Result<(String, Vec<u8>, bool), CredentialError> {
        let (mut u, mut p) = ([0u8; MAX_USER], [0u8; MAX_PASSWORD]);
        login_json(body.as_bytes(), &mut u, &mut p).map(|(u, p, t)| (u.to_owned(), p.to_vec(), t))
    }

    #[test]
    fn json_logins() {
        assert_eq!(
            json(r#"{"user":"admin","password":"pw"}"#),
            Ok(("admin".into(), b"pw".to_vec(), false))
        );
        assert_eq!(
            json(r#" { "username" : "a", "x": [1] } "#),
            Err(CredentialError::Malformed),
            "nested values are refused"
        );
        assert_eq!(
            json(
                r#"{"password":"p\u00e9\"\\\ud83d\ude00","user":"a","token":true,"n":-1.5e3,"z":null,"s":"x"}"#
            ),
            Ok(("a".into(), "pé\"\\😀".as_bytes().to_vec(), true))
        );
        for bad in [
            "",
            "{}",
            r#"{"user":"a"}"#,
            r#"{"user":"a","password":"b"} x"#,
            r#"{"user":"a","user":"b","password":"c"}"#,
            r#"{"user":"a b","password":"c"}"#,
            r#"{"user":"a","password":"\ud800"}"#,
            r#"{"user":"a","password":"b","token":"yes"}"#,
            "{\"user\":\"a\",\"password\":\"\u{1}\"}",
            r#"{"user":"a","password":"b",}"#,
        ] {
            assert!(json(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"user":"a","password":"{}"}}"#, "x".repeat(MAX_PASSWORD + 1));
        assert_eq!(json(&long), Err(CredentialError::TooLong));
    }
}
