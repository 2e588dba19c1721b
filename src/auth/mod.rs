//! Authentication before the upgrade and before pages, for the paths a site's `auth` policy
//! protects: HTTP Basic against the user database, and sessions (a cookie for browsers, a
//! Bearer token for scripts) that its login endpoint gives.
//!
//! * [`credentials`]: parsing what a request presents (an `Authorization` header, a session
//!   cookie, a login form), bounded and allocation-free;
//! * [`session`]: session tokens signed with HMAC-SHA256 under the gateway's key;
//! * [`throttle`]: the fixed-size table of login failures per network;
//! * [`users`]: the user database (the JSON-RPC `auth` plugin's file), SHA-512-crypt;
//! * [`gate`]: a site's check of each request against its policy, in that order;
//! * [`login`]: the session endpoint's requests and responses (login, logout, who am I);
//! * [`x509`]: the issuer and subject of a verified client certificate.

pub mod credentials;
pub mod gate;
pub mod login;
pub mod session;
pub mod throttle;
pub mod users;
pub mod x509;

use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

/// What tells a changed file from the one read (the user database, the session key): they are
/// read again when it differs, and not otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self { ino: meta.ino(), size: meta.len(), mtime: meta.modified().ok() }
    }
}
