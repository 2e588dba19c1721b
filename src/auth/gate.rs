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
use std::time::Instant;

use super::credentials::{self, Credential, CredentialError, MAX_AUTHORIZATION};
use super::throttle::Throttle;
use super::users::UserDb;
use crate::config::AuthPolicy;
use crate::http::handshake;
use crate::logging::{INFO, WARN};
use crate::{conn_log, log};

/// Networks the throttle remembers at once.
pub const THROTTLE_SLOTS: usize = 256;

/// Who a request proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: heapless::String<{ credentials::MAX_USER }>,
    /// Their group.
    pub group: heapless::String<{ credentials::MAX_USER }>,
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
}

impl Gate {
    /// The gate of `policy`, its user database read now.
    ///
    /// # Errors
    /// The database cannot be read: a configuration error.
    pub fn open(policy: &AuthPolicy) -> Result<Self, String> {
        Ok(Self {
            policy: policy.clone(),
            db: UserDb::open(&policy.db)?,
            throttle: Throttle::new(THROTTLE_SLOTS),
        })
    }

    /// Lets the request whose head is `head`, for the decoded `path` (with its leading '/'),
    /// from `peer`, through: `None` when the path needs no login, the identity when it does
    /// and the request proves one the policy admits.
    ///
    /// # Errors
    /// [`Denial`].
    pub fn check(
        &mut self,
        path: &str,
        head: &[u8],
        peer: IpAddr,
        now: Instant,
    ) -> Result<Option<Identity>, Denial> {
        self.check_any(&[path], head, peer, now)
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
        now: Instant,
    ) -> Result<Option<Identity>, Denial> {
        if !paths.iter().any(|p| !p.is_empty() && self.policy.protects(p)) {
            return Ok(None);
        }
        let mut value: Option<&[u8]> = None;
        let mut twice = false;
        handshake::for_each_header(head, |name, v| {
            if name.eq_ignore_ascii_case("authorization") {
                twice |= value.is_some();
                value = Some(v);
            }
        });
        if twice {
            return Err(Denial::Malformed(CredentialError::Malformed));
        }
        let Some(value) = value else { return Err(Denial::Unauthorized) };
        let mut scratch = [0u8; MAX_AUTHORIZATION];
        let (user, password) = match credentials::authorization(value, &mut scratch) {
            Ok(Credential::Basic { user, password }) => (user, password),
            // Session tokens come from a login, which this gate does not serve: none is valid.
            Ok(Credential::Bearer(_)) => return Err(Denial::Unauthorized),
            Err(e) => return Err(Denial::Malformed(e)),
        };
        if !self.throttle.allows(peer, now) {
            return Err(Denial::Throttled);
        }
        match self.db.refresh() {
            Ok(true) => log!(INFO, "user database {} read again", self.policy.db.display()),
            Ok(false) => {}
            Err(e) => log!(
                WARN,
                "user database {}: {e} (the last good reading stays in use)",
                self.policy.db.display()
            ),
        }
        let Some(found) = self.db.verify(user, password) else {
            self.throttle.failed(peer, now);
            conn_log!(INFO, "peer={peer} auth: user {user:?} failed");
            return Err(Denial::Unauthorized);
        };
        if !self.policy.admits(&found.group) {
            conn_log!(INFO, "peer={peer} auth: user {user:?} not in an allowed group");
            return Err(Denial::Forbidden);
        }
        let mut id = Identity { user: heapless::String::new(), group: heapless::String::new() };
        // Both fit: the database's names are at most MAX_USER bytes.
        let _ = id.user.push_str(&found.name);
        let _ = id.group.push_str(&found.group);
        Ok(Some(id))
    }
}
