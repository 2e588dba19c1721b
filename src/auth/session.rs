//! Session tokens: what the login gives a browser (as a cookie) or a script (as a Bearer
//! token), and what proves the user on each later request without a password.
//!
//! `user:group1,group2:expiry:mac`: the user, their groups, the expiry (seconds since the UNIX
//! epoch) and HMAC-SHA256 over the first three fields, in hex, under the gateway's session key.
//! Nothing is kept per session on the gateway: a token is valid until its expiry, and
//! replacing the key (`--rotate-session-key`) ends every session at once. Every field is a
//! character set that needs no escaping in a cookie or a header (user and group names follow
//! the user database's rule).

use ring::hmac;

use super::credentials::{user_name, MAX_USER};

/// Length of a session key, in bytes.
pub const KEY_LEN: usize = 32;
/// Most groups a token carries.
pub const MAX_GROUPS: usize = 8;
/// Longest token.
pub const MAX_TOKEN: usize = MAX_USER * (MAX_GROUPS + 1) + MAX_GROUPS + 24 + 64;

/// Who a valid token says.
#[derive(Debug, PartialEq, Eq)]
pub struct Session<'a> {
    /// The user.
    pub user: &'a str,
    /// Their groups, comma-separated.
    pub groups: &'a str,
    /// Seconds since the UNIX epoch after which the token is refused.
    pub expires: u64,
}

/// Why a token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not the shape above.
    Malformed,
    /// The MAC does not match (another key, or edited).
    BadMac,
    /// Past its expiry.
    Expired,
}

/// The gateway's session key.
pub struct Key(hmac::Key);

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key itself.
        f.write_str("session::Key")
    }
}

impl Key {
    /// The key from its bytes.
    #[must_use]
    pub fn new(bytes: &[u8; KEY_LEN]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// A token for `user` in `groups` (comma-separated) until `expires`, written into `out`;
    /// its length. `None` if a name breaks the user database's rule or `out` is too small.
    #[must_use]
    pub fn issue(&self, user: &str, groups: &str, expires: u64, out: &mut [u8]) -> Option<usize> {
        user_name(user.as_bytes()).ok()?;
        if !groups.is_empty() {
            let mut n = 0;
            for g in groups.split(',') {
                user_name(g.as_bytes()).ok()?;
                n += 1;
            }
            if n > MAX_GROUPS {
                return None;
            }
        }
        let mut w = Writer { out, len: 0 };
        w.put(user.as_bytes())?;
        w.put(b":")?;
        w.put(groups.as_bytes())?;
        w.put(b":")?;
        w.put(expires.to_string().as_bytes())?;
        let signed = w.len;
        let tag = hmac::sign(&self.0, w.out.get(..signed)?);
        w.put(b":")?;
        for b in tag.as_ref() {
            w.put(&[hex(b >> 4), hex(b & 0xf)])?;
        }
        Some(w.len)
    }

    /// Checks `token` at `now` (seconds since the UNIX epoch). The MAC is compared in constant
    /// time (`ring::hmac::verify`), before anything else is believed.
    ///
    /// # Errors
    /// [`TokenError`].
    pub fn check<'a>(&self, token: &'a str, now: u64) -> Result<Session<'a>, TokenError> {
        if token.len() > MAX_TOKEN {
            return Err(TokenError::Malformed);
        }
        let (signed, mac_hex) = token.rsplit_once(':').ok_or(TokenError::Malformed)?;
        let mut mac = [0u8; 32];
        if mac_hex.len() != 64 {
            return Err(TokenError::Malformed);
        }
        for (i, pair) in mac_hex.as_bytes().chunks(2).enumerate() {
            let (Some(&hi), Some(&lo)) = (pair.first(), pair.get(1)) else {
                return Err(TokenError::Malformed);
            };
            let v = unhex(hi).zip(unhex(lo)).ok_or(TokenError::Malformed)?;
            *mac.get_mut(i).ok_or(TokenError::Malformed)? = v.0 << 4 | v.1;
        }
        hmac::verify(&self.0, signed.as_bytes(), &mac).map_err(|_| TokenError::BadMac)?;
        let mut fields = signed.splitn(3, ':');
        let (Some(user), Some(groups), Some(expires)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        if now >= expires {
            return Err(TokenError::Expired);
        }
        Ok(Session { user, groups, expires })
    }
}

struct Writer<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }
}

fn hex(v: u8) -> u8 {
    b"0123456789abcdef".get(usize::from(v & 0xf)).copied().unwrap_or(b'0')
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn token(key: &Key, user: &str, groups: &str, expires: u64) -> String {
        let mut out = [0u8; MAX_TOKEN];
        let n = key.issue(user, groups, expires, &mut out).unwrap();
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn issued_tokens_check_until_they_expire_and_only_under_their_key() {
        let key = Key::new(&[7; KEY_LEN]);
        let t = token(&key, "admin", "root,users", 1_000);
        assert!(t.starts_with("admin:root,users:1000:"), "{t}");
        assert_eq!(
            key.check(&t, 999),
            Ok(Session { user: "admin", groups: "root,users", expires: 1_000 })
        );
        assert_eq!(key.check(&t, 1_000), Err(TokenError::Expired));
        assert_eq!(Key::new(&[8; KEY_LEN]).check(&t, 0), Err(TokenError::BadMac));
        // Any edit breaks the MAC: a longer expiry, another group, another user.
        for edited in [
            t.replace(":1000:", ":9000:"),
            t.replace("root,users", "root,admin"),
            t.replacen("admin", "root", 1),
        ] {
            assert_eq!(key.check(&edited, 0), Err(TokenError::BadMac), "{edited}");
        }
        for bad in ["", "a:b", "admin::1:zz", &t[..t.len() - 1], &format!("{t}0")] {
            assert_eq!(key.check(bad, 0), Err(TokenError::Malformed), "{bad}");
        }
        assert_eq!(token(&key, "u", "", 5).split(':').nth(1), Some(""));
        let mut out = [0u8; MAX_TOKEN];
        assert!(key.issue("bad user", "", 1, &mut out).is_none());
        assert!(key.issue("u", "a,b:c", 1, &mut out).is_none());
        assert!(key.issue("u", "", 1, &mut out[..10]).is_none());
    }
}
