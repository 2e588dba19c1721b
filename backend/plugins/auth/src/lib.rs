//! `libwsgate_rpc_auth.so`: a user database for `websocket_jsonrpc -L ... -C DBFILE`, with
//! ouistiti's `authrpc` methods (`auth`, `passwd`, `adduser`, `rmuser`), all taking an object
//! of strings as params.
//!
//! * `auth {user, passwd}` checks the password and, on success, logs this connection in as
//!   that user; returns `{user, group, home}`.
//! * `passwd {user, old?, new, confirm}` changes a password: with `old`, the old password of
//!   `user` authorises it; without, the connection must be logged in as a member of group
//!   `root`.
//! * `adduser {user, passwd, group?, home?}` needs a `root` login, except when the database
//!   has no user at all: then the first user is created, in group `root` (first-run setup).
//!   `group` defaults to `users`, `home` to `/home/<user>`.
//! * `rmuser {user, passwd?}`: with the user's own password, or with a `root` login.
//!
//! Errors are JSON-RPC errors (ouistiti returned some inside `result`): -32602 for bad
//! params, -32001 authentication failed (the same for an unknown user and a wrong password,
//! and just as slow), -32003 permission denied, -32004 user exists, -32005 no such user,
//! -32010 database error.
//!
//! The database is a text file, one user a line, `user:group:hash:home`, `hash` being
//! SHA-512-crypt (`$6$rounds=5000$<salt>$<hash>`, as in /etc/shadow). It is read at every
//! call (so several servers may share it) and rewritten whole through a temporary file and
//! `rename`, with mode 0600. Limits: names of 1–32 characters from `[A-Za-z0-9_.-]` not
//! starting with `-`, passwords of 1–128 bytes, home paths of at most 128 bytes without `:`
//! or control characters, at most 1000 users, a file of at most 256 KiB.
//!
//! * `whoami {}`: the connection's login, `{user, group}`, or `null`.
//!
//! `-C` is the database path, optionally followed by `,rounds=N` (1000 to 1000000) and
//! `,gateway`. With `gateway`, a connection the gateway authenticated (its connection context,
//! `--context`, carries `REMOTE_USER` and `REMOTE_GROUPS`) starts logged in as that user, so a
//! page whose user logged in at the gateway needs no `auth` call; only the gateway must be
//! able to connect to the server's socket, since the context is believed as it comes.
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wsgate::auth::users::{
    self, check_hash, sha512_crypt, User, MAX_USERS, ROUNDS_DEFAULT, ROUNDS_MAX, ROUNDS_MIN,
};
use wsgate_rpc_plugin::{export_plugin, opt_str_param, str_param, Plugin, RpcError};

/// Largest database file read.
const MAX_DB_BYTES: u64 = users::MAX_BYTES;
/// Longest user and group name.
const MAX_NAME: usize = 32;
/// Longest password (SHA-crypt's cost grows with the length).
const MAX_PASSWORD: usize = 128;
/// Longest home path.
const MAX_HOME: usize = 128;
/// Characters of a SHA-crypt salt.
const SALT_LEN: usize = 16;
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const AUTH_FAILED: i32 = -32001;
const DENIED: i32 = -32003;
const EXISTS: i32 = -32004;
const NO_USER: i32 = -32005;
const DB_ERROR: i32 = -32010;

/// The plugin: where the database is and how hard to hash.
#[derive(Debug)]
pub struct Auth {
    db: PathBuf,
    rounds: usize,
    gateway: bool,
}

/// A connection's login.
#[derive(Debug, Default)]
pub struct Login {
    user: Option<(String, String)>,
}

impl Login {
    fn is_root(&self) -> bool {
        self.user.as_ref().is_some_and(|(_, group)| group == "root")
    }
}

impl Plugin for Auth {
    type Conn = Login;

    fn init(config: &str) -> Result<Self, String> {
        let mut parts = config.split(',');
        let db = parts.next().unwrap_or_default();
        if db.is_empty() {
            return Err("auth: -C must name the user database file".into());
        }
        let mut rounds = ROUNDS_DEFAULT;
        let mut gateway = false;
        for opt in parts {
            if opt == "gateway" {
                gateway = true;
                continue;
            }
            match opt.strip_prefix("rounds=").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if (ROUNDS_MIN..=ROUNDS_MAX).contains(&n) => rounds = n,
                _ => {
                    return Err(format!("auth: bad option {opt:?} (rounds=1000..1000000, gateway)"))
                }
            }
        }
        let auth = Self { db: PathBuf::from(db), rounds, gateway };
        // Fail at start-up, not at the first request, when the file is unreadable.
        auth.load().map_err(|e| format!("auth: {}: {}", auth.db.display(), e.message))?;
        Ok(auth)
    }

    fn open(&self, context: &str) -> Option<Login> {
        if !self.gateway {
            return Some(Login::default());
        }
        let field =
            |name: &str| context.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('='));
        let user = match (field("REMOTE_USER"), field("REMOTE_GROUPS")) {
            (Some(u), Some(g)) if check_name(u, "user").is_ok() => {
                // The database's rule allows one group a user; a session carries that one.
                let group = g.split(',').next().unwrap_or_default();
                check_name(group, "group").ok().map(|()| (u.to_owned(), group.to_owned()))
            }
            _ => None,
        };
        Some(Login { user })
    }

    fn call(&self, login: &mut Login, method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "auth" => self.auth(login, params),
            "passwd" => self.passwd(login, params),
            "adduser" => self.adduser(login, params),
            "rmuser" => self.rmuser(login, params),
            "whoami" => Ok(match &login.user {
                Some((user, group)) => json!({ "user": user, "group": group }),
                None => Value::Null,
            }),
            _ => Err(RpcError::method_not_found(method)),
        }
    }
}

export_plugin!(Auth);

impl Auth {
    fn auth(&self, login: &mut Login, params: &Value) -> Result<Value, RpcError> {
        let name = str_param(params, "user")?;
        let password = str_param(params, "passwd")?;
        let users = self.load()?;
        let user = self.verify(&users, name, password)?;
        login.user = Some((user.name.clone(), user.group.clone()));
        Ok(json!({ "user": user.name, "group": user.group, "home": user.home }))
    }

    fn passwd(&self, login: &Login, params: &Value) -> Result<Value, RpcError> {
        let name = str_param(params, "user")?;
        let old = opt_str_param(params, "old")?;
        let new = str_param(params, "new")?;
        let confirm = str_param(params, "confirm")?;
        check_password(new)?;
        if new != confirm {
            return Err(RpcError::invalid_params("new and confirm differ"));
        }
        let mut users = self.load()?;
        match old {
            Some(old) => {
                self.verify(&users, name, old)?;
            }
            None if login.is_root() => {}
            None => return Err(RpcError::new(DENIED, "the old password is needed")),
        }
        let hash = self.hash(new)?;
        let user = users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| RpcError::new(NO_USER, "no such user"))?;
        user.hash = hash;
        self.store(&users)?;
        Ok(json!({ "user": name, "message": "password changed" }))
    }

    fn adduser(&self, login: &Login, params: &Value) -> Result<Value, RpcError> {
        let name = str_param(params, "user")?;
        let password = str_param(params, "passwd")?;
        let group = opt_str_param(params, "group")?.unwrap_or("users");
        let home = match opt_str_param(params, "home")? {
            Some(h) => h.to_owned(),
            None => format!("/home/{name}"),
        };
        check_name(name, "user")?;
        check_name(group, "group")?;
        check_password(password)?;
        check_home(&home)?;
        let mut users = self.load()?;
        // First-run setup: the first user is the administrator.
        let group = if users.is_empty() {
            "root"
        } else if login.is_root() {
            group
        } else {
            return Err(RpcError::new(DENIED, "adding users needs a root login"));
        };
        if users.iter().any(|u| u.name == name) {
            return Err(RpcError::new(EXISTS, "user exists"));
        }
        if users.len() >= MAX_USERS {
            return Err(RpcError::new(DB_ERROR, format!("at most {MAX_USERS} users")));
        }
        let user =
            User { name: name.into(), group: group.into(), hash: self.hash(password)?, home };
        let answer = json!({
            "user": user.name, "group": user.group, "home": user.home, "message": "user added"
        });
        users.push(user);
        self.store(&users)?;
        Ok(answer)
    }

    fn rmuser(&self, login: &mut Login, params: &Value) -> Result<Value, RpcError> {
        let name = str_param(params, "user")?;
        let password = opt_str_param(params, "passwd")?;
        let mut users = self.load()?;
        match password {
            Some(p) => {
                self.verify(&users, name, p)?;
            }
            None if login.is_root() => {}
            None => return Err(RpcError::new(DENIED, "removing a user needs its password")),
        }
        let before = users.len();
        users.retain(|u| u.name != name);
        if users.len() == before {
            return Err(RpcError::new(NO_USER, "no such user"));
        }
        self.store(&users)?;
        if login.user.as_ref().is_some_and(|(u, _)| u == name) {
            login.user = None;
        }
        Ok(json!({ "user": name, "message": "user removed" }))
    }

    /// The user `name` if `password` is theirs; an unknown user costs a hash too, so that the
    /// answer's timing does not tell which users exist.
    fn verify<'u>(
        &self,
        users: &'u [User],
        name: &str,
        password: &str,
    ) -> Result<&'u User, RpcError> {
        let failed = || RpcError::new(AUTH_FAILED, "authentication failed");
        if password.len() > MAX_PASSWORD {
            return Err(failed());
        }
        match users.iter().find(|u| u.name == name) {
            Some(user) if check_hash(password.as_bytes(), &user.hash) => Ok(user),
            Some(_) => Err(failed()),
            None => {
                let _ = self.hash(password);
                Err(failed())
            }
        }
    }

    fn hash(&self, password: &str) -> Result<String, RpcError> {
        let internal = |what: &str| RpcError::new(DB_ERROR, format!("cannot hash: {what}"));
        let mut raw = [0u8; SALT_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(|e| internal(&e.to_string()))?;
        let salt: String = raw
            .iter()
            .filter_map(|b| CRYPT_ALPHABET.get(usize::from(b & 63)))
            .map(|&c| char::from(c))
            .collect();
        let hash: String = sha512_crypt(password.as_bytes(), salt.as_bytes(), self.rounds)
            .iter()
            .map(|&c| char::from(c))
            .collect();
        Ok(format!("$6$rounds={}${salt}${hash}", self.rounds))
    }

    fn load(&self) -> Result<Vec<User>, RpcError> {
        let db_error = |e: String| RpcError::new(DB_ERROR, format!("user database: {e}"));
        let file = match std::fs::File::open(&self.db) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(db_error(e.to_string())),
        };
        let mut text = String::new();
        file.take(MAX_DB_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| db_error(e.to_string()))?;
        if text.len() as u64 > MAX_DB_BYTES {
            return Err(db_error(format!("larger than {MAX_DB_BYTES} bytes")));
        }
        users::parse(&text).map_err(db_error)
    }

    fn store(&self, users: &[User]) -> Result<(), RpcError> {
        let db_error = |e: std::io::Error| RpcError::new(DB_ERROR, format!("user database: {e}"));
        let mut text = String::new();
        for u in users {
            text.push_str(&format!("{}:{}:{}:{}\n", u.name, u.group, u.hash, u.home));
        }
        let tmp = temp_path(&self.db);
        let write = || -> std::io::Result<()> {
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.db)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            db_error(e)
        })
    }
}

/// `<db>.tmp`, beside the database so that `rename` is atomic.
fn temp_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    db.with_file_name(name)
}

fn check_name(name: &str, what: &str) -> Result<(), RpcError> {
    let ok = (1..=MAX_NAME).contains(&name.len())
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RpcError::invalid_params(format!(
            "{what} name: 1 to {MAX_NAME} characters of A-Z a-z 0-9 _ . -, not starting with -"
        )))
    }
}

fn check_password(password: &str) -> Result<(), RpcError> {
    if (1..=MAX_PASSWORD).contains(&password.len()) {
        Ok(())
    } else {
        Err(RpcError::invalid_params(format!("password: 1 to {MAX_PASSWORD} bytes")))
    }
}

fn check_home(home: &str) -> Result<(), RpcError> {
    if home.len() <= MAX_HOME && !home.contains(':') && !home.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(RpcError::invalid_params(format!("home: at most {MAX_HOME} bytes, no ':'")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn known_sha512_crypt_vector() {
        // From Ulrich Drepper's SHA-crypt specification.
        let h = "$6$rounds=5000$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu\
                 esI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
        assert!(check_hash(b"Hello world!", h));
        assert!(!check_hash(b"Hello world?", h));
        let h = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OT\
                 LiBFdcbYEdFCoEOfaS35inz1";
        assert!(check_hash(b"Hello world!", h));
        assert!(!check_hash(b"x", "$6$rounds=999999999$s$h"));
        assert!(!check_hash(b"x", "plain"));
    }

    #[test]
    fn hashes_round_trip_with_fresh_salts() {
        let a = Auth { db: PathBuf::from("/nonexistent"), rounds: 1000, gateway: false };
        let h1 = a.hash("pw").unwrap();
        let h2 = a.hash("pw").unwrap();
        assert_ne!(h1, h2);
        assert!(h1.starts_with("$6$rounds=1000$"));
        assert!(check_hash(b"pw", &h1) && check_hash(b"pw", &h2) && !check_hash(b"pW", &h1));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("bob_1.x", "user").is_ok());
        for bad in ["", "-x", "a:b", "a b", "é", &"x".repeat(33)] {
            assert!(check_name(bad, "user").is_err(), "{bad:?}");
        }
    }
}
