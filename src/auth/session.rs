//! Session tokens: what the login gives a browser (as a cookie) or a script (as a Bearer
//! token), and what proves the user on each later request without a password.
//!
//! `user:group1,group2:expiry:mac`: the user, their groups, the expiry (seconds since the UNIX
//! epoch) and HMAC-SHA256 over the first three fields, in hex, under the gateway's session key.
//! Nothing is kept per session on the gateway: a token is valid until its expiry, and
//! replacing the key (`--rotate-session-key`) ends every session at once. Every field is a
//! character set that needs no escaping in a cookie or a header (user and group names follow
//! the user database's rule).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use ring::hmac;

use super::credentials::{user_name, MAX_USER};
use super::Stamp;

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

/// The session key's file: [`KEY_LEN`] bytes as hex and a newline, mode 0600. It is made at
/// the first start ([`ensure_key_file`]), replaced on request ([`rotate_key_file`]), and read
/// again by the gateway when it changes, so a rotation ends every session without a restart.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    stamp: Option<Stamp>,
    key: Key,
}

impl KeyFile {
    /// The key in `path`, read now.
    ///
    /// # Errors
    /// It cannot be read, is not a key, or others than its owner may read it.
    pub fn open(path: &Path) -> Result<Self, String> {
        let (key, stamp) =
            read_key(path).map_err(|e| format!("session key {}: {e}", path.display()))?;
        Ok(Self { path: path.to_path_buf(), stamp: Some(stamp), key })
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Reads the file again if it changed; a bad new version leaves the last good key in use,
    /// and the error says why (once per version).
    ///
    /// # Errors
    /// Why the changed file was not taken.
    pub fn refresh(&mut self) -> Result<bool, String> {
        let meta = std::fs::metadata(&self.path).map_err(|e| e.to_string())?;
        let now = Stamp::of(&meta);
        if self.stamp == Some(now) {
            return Ok(false);
        }
        self.stamp = Some(now);
        let (key, stamp) = read_key(&self.path)?;
        self.key = key;
        self.stamp = Some(stamp);
        Ok(true)
    }
}

fn read_key(path: &Path) -> Result<(Key, Stamp), String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "mode {:04o}: others than its owner may read it (chmod 600, or rotate it)",
            meta.mode() & 0o7777
        ));
    }
    let mut text = [0u8; 2 * KEY_LEN + 2];
    let n = file.take(text.len() as u64).read(&mut text).map_err(|e| e.to_string())?;
    let hex_text = text.get(..n).unwrap_or_default();
    let hex_text = hex_text.strip_suffix(b"\n").unwrap_or(hex_text);
    let mut bytes = [0u8; KEY_LEN];
    if hex_text.len() != 2 * KEY_LEN {
        return Err(format!("not a key ({} hex digits expected)", 2 * KEY_LEN));
    }
    for (b, pair) in bytes.iter_mut().zip(hex_text.chunks(2)) {
        let (Some(hi), Some(lo)) =
            (pair.first().copied().and_then(unhex), pair.get(1).copied().and_then(unhex))
        else {
            return Err(format!("not a key ({} hex digits expected)", 2 * KEY_LEN));
        };
        *b = hi << 4 | lo;
    }
    Ok((Key::new(&bytes), Stamp::of(&meta)))
}

/// Makes the key file at `path` if there is none: a fresh random key, mode 0600, owned by
/// `owner` (the account the service drops to, which must read it again after a rotation).
/// `true` when it made one.
///
/// # Errors
/// The file cannot be made, or the random source failed.
pub fn ensure_key_file(path: &Path, owner: Option<(u32, u32)>) -> Result<bool, String> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("session key {}: {e}", path.display())),
    }
    write_key(path, owner).map_err(|e| format!("session key {}: {e}", path.display()))?;
    Ok(true)
}

/// Replaces the key in `path` with a fresh random one (a new file renamed over the old, with
/// the old one's owner): every session issued under the old key ends.
///
/// # Errors
/// The file cannot be written, or the random source failed.
pub fn rotate_key_file(path: &Path) -> Result<(), String> {
    let owner = std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let done = write_key(&tmp, owner)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done.map_err(|e| format!("session key {}: {e}", path.display()))
}

fn write_key(path: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; KEY_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no random bytes from the system".to_owned())?;
    let mut text = [0u8; 2 * KEY_LEN + 1];
    for (pair, b) in text.chunks_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = hex(b >> 4);
            *lo = hex(b & 0xf);
        }
    }
    if let Some(last) = text.last_mut() {
        *last = b'\n';
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| format!("chown: {e}"))?;
    }
    file.write_all(&text).and_then(|()| file.sync_all()).map_err(|e| e.to_string())
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

    #[test]
    fn the_key_file_is_made_once_private_and_rotated_by_replacement() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("wsgate-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("session.key");
        assert!(ensure_key_file(&path, None).unwrap());
        assert!(!ensure_key_file(&path, None).unwrap(), "an existing key is kept");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 2 * KEY_LEN as u64 + 1);
        let mut kf = KeyFile::open(&path).unwrap();
        let t = token(kf.key(), "admin", "root", u64::MAX);
        assert!(kf.key().check(&t, 0).is_ok());
        assert_eq!(kf.refresh(), Ok(false));
        // A rotation ends the sessions of the old key.
        rotate_key_file(&path).unwrap();
        assert_eq!(kf.refresh(), Ok(true));
        assert_eq!(kf.key().check(&t, 0), Err(TokenError::BadMac));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A bad new version leaves the last good key in use.
        let t2 = token(kf.key(), "admin", "root", u64::MAX);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "not a key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(kf.refresh().is_err());
        assert!(kf.key().check(&t2, 0).is_ok());
        assert!(KeyFile::open(&path).unwrap_err().contains("not a key"));
        // One others may read is refused.
        rotate_key_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            KeyFile::open(&path).unwrap_err().contains("mode 0644"),
            "{:?}",
            KeyFile::open(&path)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
