//! The check a site's requests go through when it has an `auth` policy: which paths need a
//! login, the credential the request presents, the user database's answer, the groups the
//! policy admits, and the failure throttle. One per site, owned by the loop.
//!
//! The order holds the hardening together: the throttle is asked before any hash work, so a
//! guessing client costs nothing once refused; an unknown user and a wrong password cost the
//! same hash and get the same answer (see [`UserDb::verify`]); only a failed password counts
//! against the client's network. Nothing about the credential reaches the log but the user
//! name, and only one the database's rule allows.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use super::credentials::{self, Credential, CredentialError, MAX_AUTHORIZATION};
use super::login;
use super::session::{self, KeyFile};
use super::throttle::Throttle;
use super::users::UserDb;
use crate::config::AuthPolicy;
use crate::http::handshake;
use crate::logging::{INFO, WARN};
use crate::{conn_log, log};

/// Networks the throttle remembers at once.
pub const THROTTLE_SLOTS: usize = 256;

/// Who a request proved to be. The lengths are bytes (`u8`), not `usize`: a connection slot
/// has room for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: heapless::String<{ credentials::MAX_USER }, u8>,
    /// Their group (the user database has one a user; a session token carries it).
    pub group: heapless::String<{ credentials::MAX_USER }, u8>,
}

impl Identity {
    /// `user` of `group`, cut to the database's bounds (which valid names are within).
    #[must_use]
    pub fn of(user: &str, group: &str) -> Self {
        let mut id = Self { user: heapless::String::new(), group: heapless::String::new() };
        let _ = id.user.push_str(user.get(..credentials::MAX_USER).unwrap_or(user));
        let _ = id.group.push_str(group.get(..credentials::MAX_USER).unwrap_or(group));
        id
    }
}

/// Why a request is not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No credential, or not a valid one: 401 with the challenge.
    Unauthorized,
    /// A valid user outside the groups the policy admits: 403.
    Forbidden,
    /// Too many failures from the client's network lately: 429.
    Throttled,
    /// Credentials that cannot be read (two `Authorization` headers, bad base64...): 400.
    Malformed(CredentialError),
}

/// A site's authentication state.
#[derive(Debug)]
pub struct Gate {
    /// The policy.
    pub policy: AuthPolicy,
    db: UserDb,
    throttle: Throttle,
    key: Option<KeyFile>,
}

/// A session token as the login gives it.
pub type Token = heapless::String<{ session::MAX_TOKEN }>;

/// Seconds since the UNIX epoch: sessions expire by the wall clock, which outlives the process.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Gate {
    /// The gate of `policy`, its user database read now.
    ///
    /// # Errors
    /// The database cannot be read: a configuration error.
    pub fn open(policy: &AuthPolicy) -> Result<Self, String> {
        let key = match &policy.session {
            Some(s) => Some(KeyFile::open(&s.key)?),
            None => None,
        };
        Ok(Self {
            policy: policy.clone(),
            db: UserDb::open(&policy.db)?,
            throttle: Throttle::new(THROTTLE_SLOTS),
            key,
        })
    }

    /// The session key, read again if its file changed (a rotation).
    fn session_key(&mut self) -> Option<&session::Key> {
        let kf = self.key.as_mut()?;
        match kf.refresh() {
            Ok(true) => log!(INFO, "session key read again: earlier sessions have ended"),
            Ok(false) => {}
            Err(e) => log!(WARN, "session key: {e} (the last good key stays in use)"),
        }
        Some(kf.key())
    }

    /// Checks `user`'s `password` (a login form or JSON): throttled per network like Basic, the
    /// same answer for an unknown user as for a wrong password; the user must be in a group
    /// the policy admits.
    ///
    /// # Errors
    /// [`Denial`].
    pub fn login(
        &mut self,
        user: &str,
        password: &[u8],
        peer: IpAddr,
        now: Instant,
    ) -> Result<Identity, Denial> {
        if !self.throttle.allows(peer, now) {
            return Err(Denial::Throttled);
        }
        self.refresh_db();
        let Some(found) = self.db.verify(user, password) else {
            self.throttle.failed(peer, now);
            conn_log!(INFO, "peer={peer} auth: user {user:?} failed");
            return Err(Denial::Unauthorized);
        };
        if !self.policy.admits_anywhere(&found.group) {
            conn_log!(INFO, "peer={peer} auth: user {user:?} not in an allowed group");
            return Err(Denial::Forbidden);
        }
        Ok(Identity::of(&found.name, &found.group))
    }

    /// A session token for `id`, and when it expires (seconds since the UNIX epoch); `None`
    /// without sessions.
    pub fn issue(&mut self, id: &Identity) -> Option<(Token, u64)> {
        let expire = self.policy.session.as_ref()?.expire.as_secs();
        let expires = unix_now().saturating_add(expire);
        let key = self.session_key()?;
        let mut out = [0u8; session::MAX_TOKEN];
        let n = key.issue(&id.user, &id.group, expires, &mut out)?;
        let text = core::str::from_utf8(out.get(..n)?).ok()?;
        let mut token = Token::new();
        token.push_str(text).ok()?;
        Some((token, expires))
    }

    fn refresh_db(&mut self) {
        match self.db.refresh() {
            Ok(true) => log!(INFO, "user database {} read again", self.policy.db.display()),
            Ok(false) => {}
            Err(e) => log!(
                WARN,
                "user database {}: {e} (the last good reading stays in use)",
                self.policy.db.display()
            ),
        }
    }

    /// On a path that needs no login, a session (cookie or Bearer) is still recognised, so
    /// that a backend open to all can tell a logged-in user from others; what does not prove
    /// one is ignored. Basic is not looked at there: a browser that has it sends it with every
    /// request, and a password hash per page is not a cost to pay for nothing.
    fn session_only(
        &mut self,
        head: &[u8],
        peer: IpAddr,
        cert: Option<&[u8]>,
        now: Instant,
    ) -> Option<Identity> {
        if let Some(id) = self.certificate_user(cert, peer) {
            return Some(id);
        }
        self.key.as_ref()?;
        let mut basic = false;
        handshake::for_each_header(head, |name, v| {
            basic |= name.eq_ignore_ascii_case("authorization")
                && v.get(..6).is_some_and(|s| s.eq_ignore_ascii_case(b"basic "));
        });
        if basic {
            return None;
        }
        self.identify(head, peer, None, now).ok()
    }

    /// Who the request whose head is `head` proves to be, whatever its path: a client
    /// certificate the policy takes, else an `Authorization` header (Basic, or Bearer with a
    /// session token), else the session cookie. Whether the identity may open a given path is
    /// [`AuthPolicy::admits`]'s question.
    ///
    /// # Errors
    /// [`Denial`]: `Unauthorized` when there is no valid credential.
    pub fn identify(
        &mut self,
        head: &[u8],
        peer: IpAddr,
        cert: Option<&[u8]>,
        now: Instant,
    ) -> Result<Identity, Denial> {
        if let Some(id) = self.certificate_user(cert, peer) {
            return Ok(id);
        }
        let mut value: Option<&[u8]> = None;
        let mut cookies: Option<&[u8]> = None;
        let mut twice = false;
        handshake::for_each_header(head, |name, v| {
            if name.eq_ignore_ascii_case("authorization") {
                twice |= value.is_some();
                value = Some(v);
            } else if name.eq_ignore_ascii_case("cookie") {
                // RFC 6265 §5.4: one Cookie header; a second one is not looked at.
                cookies.get_or_insert(v);
            }
        });
        if twice {
            return Err(Denial::Malformed(CredentialError::Malformed));
        }
        let token = match value {
            Some(value) => {
                let mut scratch = [0u8; MAX_AUTHORIZATION];
                match credentials::authorization(value, &mut scratch) {
                    Ok(Credential::Basic { user, password }) => {
                        return self.login(user, password, peer, now)
                    }
                    Ok(Credential::Bearer(t)) => Some(t),
                    Err(e) => return Err(Denial::Malformed(e)),
                }
                .and_then(|t| Token::try_from(t).ok())
            }
            None => cookies
                .and_then(|c| credentials::cookie(c, login::COOKIE))
                .and_then(|v| core::str::from_utf8(v).ok())
                .and_then(|t| Token::try_from(t).ok()),
        };
        let Some(token) = token else { return Err(Denial::Unauthorized) };
        let Some(key) = self.session_key() else { return Err(Denial::Unauthorized) };
        let session = match key.check(&token, unix_now()) {
            Ok(s) => s,
            Err(e) => {
                conn_log!(INFO, "peer={peer} auth: session refused ({e:?})");
                return Err(Denial::Unauthorized);
            }
        };
        Ok(Identity::of(session.user, session.groups))
    }

    /// Lets the request whose head is `head`, for the decoded `path` (with its leading '/'),
    /// from `peer` with the client certificate `cert`, through: `None` when the path needs no
    /// login, the identity when it does and the request proves one the policy admits there.
    ///
    /// # Errors
    /// [`Denial`].
    pub fn check(
        &mut self,
        path: &str,
        head: &[u8],
        peer: IpAddr,
        cert: Option<&[u8]>,
        now: Instant,
    ) -> Result<Option<Identity>, Denial> {
        self.check_any(&[path], head, peer, cert, now)
    }

    /// [`check`](Self::check) for a request that `paths` all name (a directory's two
    /// spellings, `""` for none): a login is needed when any of them needs one.
    ///
    /// # Errors
    /// [`Denial`].
    pub fn check_any(
        &mut self,
        paths: &[&str],
        head: &[u8],
        peer: IpAddr,
        cert: Option<&[u8]>,
        now: Instant,
    ) -> Result<Option<Identity>, Denial> {
        let policy = &self.policy;
        let protected = |p: &&&str| !p.is_empty() && policy.protects(p);
        let Some(first) = paths.iter().find(protected).copied() else {
            return Ok(self.session_only(head, peer, cert, now));
        };
        let id = self.identify(head, peer, cert, now)?;
        let policy = &self.policy;
        let admitted = paths
            .iter()
            .filter(|p| !p.is_empty() && policy.protects(p))
            .all(|p| policy.admits(p, &id.group));
        if !admitted {
            conn_log!(
                INFO,
                "peer={peer} auth: user {:?} not in a group allowed at {first}",
                id.user.as_str()
            );
            return Err(Denial::Forbidden);
        }
        Ok(Some(id))
    }

    /// The holder of `cert`, when the policy takes certificates and this one's names match.
    fn certificate_user(&self, cert: Option<&[u8]>, peer: IpAddr) -> Option<Identity> {
        let rule = self.policy.certificate.as_ref()?;
        let (issuer, subject) = super::x509::names(cert?)?;
        let matches = |pattern: &str, name: &str| {
            pattern.is_empty() || crate::relay::acl::matches(pattern, name)
        };
        if !matches(&rule.subject, &subject) || !matches(&rule.issuer, &issuer) {
            conn_log!(
                INFO,
                "peer={peer} auth: certificate {subject:?} (issuer {issuer:?}) not taken"
            );
            return None;
        }
        let cn = super::x509::common_name(&subject)?;
        let Ok(user) = credentials::user_name(cn.as_bytes()) else {
            conn_log!(INFO, "peer={peer} auth: certificate {subject:?}: its CN is not a user name");
            return None;
        };
        Some(Identity::of(user, &rule.group))
    }
}
