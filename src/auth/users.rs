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

use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA512};

use super::Stamp;

/// Most users read.
pub const MAX_USERS: usize = 1000;
/// Largest file read.
pub const MAX_BYTES: u64 = 256 * 1024;
/// Bounds of `rounds=`: SHA-crypt allows up to 999,999,999, a denial of service here.
pub const ROUNDS_MIN: usize = 1000;
/// See [`ROUNDS_MIN`].
pub const ROUNDS_MAX: usize = 1_000_000;
/// The rounds of a hash without `rounds=`.
pub const ROUNDS_DEFAULT: usize = 5000;
/// Characters of the salt that count: a longer one is cut.
pub const SALT_MAX: usize = 16;
/// Characters of the encoded hash.
pub const HASH_LEN: usize = 86;

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
        None => (ROUNDS_DEFAULT, rest),
    };
    let Some((salt, expected)) = rest.split_once('$') else { return false };
    if !(ROUNDS_MIN..=ROUNDS_MAX).contains(&rounds) || expected.contains('$') {
        return false;
    }
    let got = sha512_crypt(password, salt.as_bytes(), rounds);
    got.len() == expected.len()
        && got.iter().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// SHA-512-crypt as Ulrich Drepper specifies it (<https://www.akkadia.org/drepper/SHA-crypt.txt>):
/// the encoded hash (the part after the salt's `$`) of `password` with `salt` (its first
/// [`SALT_MAX`] bytes) and `rounds` (taken as given: the bounds are the caller's).
///
/// Over ring's SHA-512, which rustls' SHA-384 links already: a second SHA-512 (the `sha2`
/// crate, through `sha-crypt`) cost 21,376 bytes of the shipped armv7 gateway. No heap: the
/// spec's byte sequences P and S are fed to the digest as the repeats they are.
#[must_use]
pub fn sha512_crypt(password: &[u8], salt: &[u8], rounds: usize) -> [u8; HASH_LEN] {
    let salt = salt.get(..SALT_MAX).unwrap_or(salt);
    // Steps 4-8: digest B.
    let mut ctx = Context::new(&SHA512);
    for part in [password, salt, password] {
        ctx.update(part);
    }
    let b = ctx.finish();
    // Steps 1-3, 9-12: digest A.
    let mut ctx = Context::new(&SHA512);
    ctx.update(password);
    ctx.update(salt);
    repeat(&mut ctx, b.as_ref(), password.len());
    let mut n = password.len();
    while n > 0 {
        ctx.update(if n & 1 == 1 { b.as_ref() } else { password });
        n >>= 1;
    }
    let a = ctx.finish();
    // Steps 13-16: digest DP, whose repeats over the password's length are P.
    let mut ctx = Context::new(&SHA512);
    for _ in 0..password.len() {
        ctx.update(password);
    }
    let dp = ctx.finish();
    // Steps 17-20: digest DS, whose first bytes (as many as the salt's) are S.
    let mut ctx = Context::new(&SHA512);
    for _ in 0..16 + usize::from(a.as_ref().first().copied().unwrap_or(0)) {
        ctx.update(salt);
    }
    let ds = ctx.finish();
    let s = ds.as_ref().get(..salt.len()).unwrap_or_default();
    let p = |ctx: &mut Context| repeat(ctx, dp.as_ref(), password.len());
    // Step 21: the rounds.
    let mut c = [0u8; 64];
    c.copy_from_slice(a.as_ref());
    for i in 0..rounds {
        let mut ctx = Context::new(&SHA512);
        if i & 1 == 1 {
            p(&mut ctx);
        } else {
            ctx.update(&c);
        }
        if i % 3 != 0 {
            ctx.update(s);
        }
        if i % 7 != 0 {
            p(&mut ctx);
        }
        if i & 1 == 1 {
            ctx.update(&c);
        } else {
            p(&mut ctx);
        }
        c.copy_from_slice(ctx.finish().as_ref());
    }
    encode(&c)
}

/// Feeds `len` bytes of `d` repeated (`d` whole as many times as it fits, then its start).
fn repeat(ctx: &mut Context, d: &[u8], len: usize) {
    for _ in 0..len / d.len() {
        ctx.update(d);
    }
    ctx.update(d.get(..len % d.len()).unwrap_or_default());
}

/// Step 22: SHA-crypt's base64 of a SHA-512 digest. The bytes go by threes, `i`, `i + 21`,
/// `i + 42` turned by `i % 3` (the spec's table), the last byte alone; each group's 24 bits
/// come out low six bits first, in the alphabet `./0-9A-Za-z`.
fn encode(c: &[u8; 64]) -> [u8; HASH_LEN] {
    let at = |i: usize| u32::from(c.get(i).copied().unwrap_or(0));
    let mut out = [0u8; HASH_LEN];
    let mut chars = out.iter_mut();
    let mut put = |mut w: u32, n: usize| {
        for ch in chars.by_ref().take(n) {
            let v = (w & 0x3f) as u8;
            *ch = match v {
                0..=11 => b'.' + v,
                12..=37 => b'A' + (v - 12),
                _ => b'a' + (v - 38),
            };
            w >>= 6;
        }
    };
    for i in 0..21 {
        let (x, y, z) = (at(i), at(i + 21), at(i + 42));
        let (hi, mid, lo) = match i % 3 {
            0 => (x, y, z),
            1 => (y, z, x),
            _ => (z, x, y),
        };
        put(hi << 16 | mid << 8 | lo, 4);
    }
    put(at(63), 2);
    out
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
        self.stamp = Some(Stamp::of(&meta));
        Ok(())
    }

    /// Reads the file again if it changed since the last reading. A bad new version leaves the
    /// last good one in use; the error says why (once per version).
    ///
    /// # Errors
    /// Why the changed file was not taken.
    pub fn refresh(&mut self) -> Result<bool, String> {
        let meta = std::fs::metadata(&self.path).map_err(|e| e.to_string())?;
        let now = Stamp::of(&meta);
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

    /// Every `$6$` vector of the specification: password, salt as given, rounds (`None`
    /// without `rounds=`), and the result.
    const DREPPER: [(&str, &str, Option<usize>, &str); 7] = [
        ("Hello world!", "saltstring", None, "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
        ("Hello world!", "saltstringsaltstring", Some(10000), "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."),
        ("This is just a test", "toolongsaltstring", Some(5000), "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"),
        ("a very much longer text to encrypt.  This one even stretches over morethan one line.", "anotherlongsaltstring", Some(1400), "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"),
        ("we have a short salt string but not a short password", "short", Some(77777), "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"),
        ("a short string", "asaltof16chars..", Some(123456), "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"),
        // rounds=10 is raised to the minimum, 1000, by the spec's crypt (this module refuses
        // it in a stored hash instead, see `sha512_crypt_checks`).
        ("the minimum number is still observed", "roundstoolow", Some(10), "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."),
    ];

    /// `openssl passwd -6 -salt 'rounds=R$SALT' PASSWORD` (OpenSSL 3.0), and glibc's crypt(3)
    /// for the empty password (which openssl does not take).
    const OTHERS: [(&str, &str, usize, &str); 6] = [
        ("pw", "abc", 5000, "MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJqOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5."),
        ("correct horse battery staple", "0123456789abcdef", 1000, "CbCV1oAMbTCHchFb0qMpXKIJdNN5oA/sJW/5HepxkUfNGTIONPZ3MPUpGP3dzgpGEY3QB7EnRyjuwrQzGB8GR0"),
        ("p@ss w0rd é", "./xyzXYZ", 31337, "61nUjpp2HQwq8obAqK3Jh2QeKtO9V2L5KmL2yzezxW/BexLz4R8HWWr0oY14JXnX8xBe.7KNnMnOPrlhS6b0/."),
        ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "sixteencharsalt!", 1000, "tjTet7/79XDzX/v5mErFGQq8dXlYduUiTrLo1e/uejAeRC4QxIcHLfAAr/k/9wVaBESKMJTsdvaZvqLXXIil5/"),
        ("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", "64bytes", 2048, "RSH5SF..eYyjnTSXWrIHKAfswSfuL.bP2BQ8jSu3TUuD1k3JJZGEC.BvOl6NBsA12kdsl/qERBPlGnZkptVBs."),
        ("", "s", 1000, "u6h1nDplZjxDo4zJTtL/gDw7SGioQGm.0uRtQXjSgB6lTpGGOfGi4A6UMV.7Q7d2K2ppsidkHUrit0FKUiAv71"),
    ];

    #[test]
    fn sha512_crypt_gives_the_specifications_vectors() {
        for (password, salt, rounds, want) in DREPPER {
            let r = rounds.map_or(ROUNDS_DEFAULT, |r| r.max(ROUNDS_MIN));
            let got = sha512_crypt(password.as_bytes(), salt.as_bytes(), r);
            let cut = &salt[..salt.len().min(SALT_MAX)];
            let prefix = rounds.map_or(String::new(), |_| format!("rounds={r}$"));
            assert_eq!(format!("$6${prefix}{cut}${}", std::str::from_utf8(&got).unwrap()), want);
            assert!(check_hash(password.as_bytes(), want), "{want}");
            assert!(!check_hash(b"x", want), "{want}");
        }
    }

    #[test]
    fn sha512_crypt_gives_openssls_and_crypts_outputs() {
        for (password, salt, rounds, want) in OTHERS {
            let got = sha512_crypt(password.as_bytes(), salt.as_bytes(), rounds);
            assert_eq!(std::str::from_utf8(&got).unwrap(), want, "{password:?} {salt}");
            assert!(check_hash(password.as_bytes(), &format!("$6$rounds={rounds}${salt}${want}")));
        }
    }

    #[test]
    fn sha512_crypt_agrees_with_rustcryptos_sha_crypt() {
        // Passwords and salts around the digest's 64 bytes and the salt's 16.
        let params = sha_crypt::Sha512Params::new(ROUNDS_MIN).unwrap();
        for n in [0, 1, 2, 3, 63, 64, 65, 127, 128, 129, 200] {
            let password: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            for salt in ["", "a", "0123456789abcde", "0123456789abcdef", "0123456789abcdefg"] {
                let want = sha_crypt::sha512_crypt_b64(&password, salt.as_bytes(), &params);
                let got = sha512_crypt(&password, salt.as_bytes(), ROUNDS_MIN);
                assert_eq!(std::str::from_utf8(&got).unwrap(), want.unwrap(), "{n} {salt:?}");
            }
        }
    }

    #[test]
    fn sha512_crypt_checks() {
        // The specification's example: salt "toolongsaltstring" cut to 16 characters.
        assert!(check_hash(b"This is just a test", VECTOR));
        assert!(!check_hash(b"This is just a tesT", VECTOR));
        assert!(!check_hash(b"This is just a test", &VECTOR[..VECTOR.len() - 1]));
        assert!(!check_hash(b"This is just a test", &format!("{VECTOR}0")));
        assert!(!check_hash(b"x", "$6$rounds=999$salt$abc"));
        assert!(!check_hash(b"x", "$6$rounds=2000000$salt$abc"));
        assert!(!check_hash(
            b"the minimum number is still observed",
            &DREPPER[6].3.replace("=1000", "=10")
        ));
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
