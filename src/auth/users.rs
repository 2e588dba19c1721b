//! The user database: the text file the JSON-RPC `auth` plugin writes (`webauth.html` manages
//! it), one user a line, `user:group:hash:home`, `hash` being SHA-512-crypt
//! (`$6$[rounds=N$]salt$hash`, as in /etc/shadow), so that one file serves the plugin's
//! sessions and the gateway's logins.
//!
//! [`UserDb`] reads it when it changes (its inode, size or modification time; one `stat` per
//! login attempt), never per request otherwise, and keeps the last good reading when a new one
//! is bad (a half-written file, a typo), saying so once in the log.
//!
//! [`UserDb::verify`] costs the same for an unknown user as for a wrong password: a hash is
//! computed either way (against a fixed dummy with the default cost), and the result compared
//! in constant time, so that neither the answer nor its time tells which names exist.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha_crypt::Sha512Params;

/// Most users read.
pub const MAX_USERS: usize = 1000;
/// Largest file read.
pub const MAX_BYTES: u64 = 256 * 1024;
/// Bounds of `rounds=`: SHA-crypt allows up to 999,999,999, a denial of service here.
pub const ROUNDS_MIN: usize = 1000;
/// See [`ROUNDS_MIN`].
pub const ROUNDS_MAX: usize = 1_000_000;

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// The group.
    pub group: String,
    /// The SHA-512-crypt hash.
    pub hash: String,
    /// The home directory (the plugin's; not used by the gateway).
    pub home: String,
}

/// Parses the database's text.
///
/// # Errors
/// The line that is not `user:group:hash:home`, or a name the database does not allow, or more
/// than [`MAX_USERS`] users.
pub fn parse(text: &str) -> Result<Vec<User>, String> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.splitn(4, ':');
        let (Some(name), Some(group), Some(hash), Some(home)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(format!("line {}: not user:group:hash:home", n + 1));
        };
        for (what, v) in [("user", name), ("group", group)] {
            if super::credentials::user_name(v.as_bytes()).is_err() {
                return Err(format!("line {}: bad {what} name", n + 1));
            }
        }
        if users.len() >= MAX_USERS {
            return Err(format!("more than {MAX_USERS} users"));
        }
        users.push(User {
            name: name.into(),
            group: group.into(),
            hash: hash.into(),
            home: home.into(),
        });
    }
    Ok(users)
}

/// Whether `password` matches the SHA-512-crypt `hash` (`$6$[rounds=N$]salt$hash`), compared
/// in constant time. A malformed hash, or one with rounds out of bounds, never matches.
#[must_use]
pub fn check_hash(password: &[u8], hash: &str) -> bool {
    let Some(rest) = hash.strip_prefix("$6$") else { return false };
    let (rounds, rest) = match rest.strip_prefix("rounds=").and_then(|r| r.split_once('$')) {
        Some((n, rest)) => match n.parse::<usize>() {
            Ok(n) => (n, rest),
            Err(_) => return false,
        },
        None => (sha_crypt::ROUNDS_DEFAULT, rest),
    };
    let Some((salt, expected)) = rest.split_once('$') else { return false };
    if !(ROUNDS_MIN..=ROUNDS_MAX).contains(&rounds) || expected.contains('$') {
        return false;
    }
    let Ok(params) = Sha512Params::new(rounds) else { return false };
    let Ok(got) = sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params) else {
        return false;
    };
    got.len() == expected.len()
        && got.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// What tells a changed file from the one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: Option<SystemTime>,
}

/// The database file and its last good reading.
#[derive(Debug)]
pub struct UserDb {
    path: PathBuf,
    stamp: Option<Stamp>,
    users: Vec<User>,
}

/// The hash an unknown user's password is checked against: the default cost, a salt and hash
/// of the right lengths, matching no password anyone types.
const DUMMY: &str = "$6$wsgatedummysalt0$\
    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

impl UserDb {
    /// The database at `path`, read now.
    ///
    /// # Errors
    /// It cannot be read or parsed: at start that is a configuration error.
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut db = Self { path: path.to_path_buf(), stamp: None, users: Vec::new() };
        db.read().map_err(|e| format!("user database {}: {e}", path.display()))?;
        Ok(db)
    }

    fn read(&mut self) -> Result<(), String> {
        use std::io::Read as _;
        let file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if meta.len() > MAX_BYTES {
            return Err(format!("larger than {MAX_BYTES} bytes"));
        }
        let mut text = String::new();
        file.take(MAX_BYTES).read_to_string(&mut text).map_err(|e| e.to_string())?;
        self.users = parse(&text)?;
        self.stamp = Some(Stamp { ino: meta.ino(), size: meta.len(), mtime: meta.modified().ok() });
        Ok(())
    }

    /// Reads the file again if it changed since the last reading. A bad new version leaves the
    /// last good one in use; the error says why (once per version).
    ///
    /// # Errors
    /// Why the changed file was not taken.
    pub fn refresh(&mut self) -> Result<bool, String> {
        let meta = std::fs::metadata(&self.path).map_err(|e| e.to_string())?;
        let now = Stamp { ino: meta.ino(), size: meta.len(), mtime: meta.modified().ok() };
        if self.stamp == Some(now) {
            return Ok(false);
        }
        let kept = core::mem::take(&mut self.users);
        match self.read() {
            Ok(()) => Ok(true),
            Err(e) => {
                self.users = kept;
                // Not tried again until the file changes again.
                self.stamp = Some(now);
                Err(e)
            }
        }
    }

    /// The user `name` if `password` is theirs. The same work, and the same `None`, for a
    /// name nobody has.
    #[must_use]
    pub fn verify(&self, name: &str, password: &[u8]) -> Option<&User> {
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map_or(DUMMY, |u| u.hash.as_str());
        let ok = check_hash(password, hash);
        user.filter(|_| ok)
    }

    /// The users read.
    #[must_use]
    pub fn users(&self) -> &[User] {
        &self.users
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// From Ulrich Drepper's SHA-crypt specification.
    const VECTOR: &str = "$6$rounds=5000$toolongsaltstrin$\
        lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0";

    #[test]
    fn sha512_crypt_checks() {
        // The specification's example: salt "toolongsaltstring" cut to 16 characters.
        assert!(check_hash(b"This is just a test", VECTOR));
        assert!(!check_hash(b"This is just a tesT", VECTOR));
        assert!(!check_hash(b"x", "$6$rounds=999$salt$abc"));
        assert!(!check_hash(b"x", "$6$rounds=2000000$salt$abc"));
        assert!(!check_hash(b"x", "$5$salt$abc"));
        assert!(!check_hash(b"x", "$6$salt"));
        assert!(!check_hash(b"x", "$6$rounds=x$salt$abc"));
        assert!(!check_hash(b"", DUMMY));
    }

    #[test]
    fn the_database_is_read_again_when_it_changes_and_a_bad_version_is_not_taken() {
        let dir = std::env::temp_dir().join(format!("wsgate-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passwd");
        std::fs::write(&path, format!("# users\nadmin:root:{VECTOR}:/root\n")).unwrap();
        let mut db = UserDb::open(&path).unwrap();
        assert_eq!(db.verify("admin", b"This is just a test").unwrap().group, "root");
        assert!(db.verify("admin", b"wrong").is_none());
        assert!(db.verify("nobody", b"This is just a test").is_none());
        assert_eq!(db.refresh(), Ok(false));
        std::fs::write(&path, format!("admin:root:{VECTOR}:/root\nann:users:{VECTOR}:/home/ann\n"))
            .unwrap();
        assert_eq!(db.refresh(), Ok(true));
        assert_eq!(db.users().len(), 2);
        std::fs::write(&path, "ann:users\n").unwrap();
        assert!(db.refresh().unwrap_err().contains("line 1"));
        assert_eq!(db.users().len(), 2, "the last good reading stays");
        assert_eq!(db.refresh(), Ok(false), "a bad version is reported once");
        for bad in ["a b:g:h:/", "-a:g:h:/", "a:g g:h:/"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(UserDb::open(&dir.join("none")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
