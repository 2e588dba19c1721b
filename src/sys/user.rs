//! Accounts and the privilege drop: the one place where a process started as root becomes an
//! ordinary user, for good.
//!
//! The drop is "real": real, effective and saved ids all change, supplementary groups are
//! replaced, and the result is read back from the kernel. A half-done drop (say, the effective
//! uid changed but the saved one is still 0) lets any later code bug regain root, so every
//! failure is reported and callers must exit rather than carry on.
use nix::errno::Errno;
use nix::unistd::{self, Gid, Uid, User};
use std::ffi::CString;

/// A user account from the password database: who to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The user id.
    pub uid: Uid,
    /// The primary group id.
    pub gid: Gid,
    /// The login name.
    pub name: String,
}

/// Why an account could not be found or become the process's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserError {
    /// No account has this name.
    UnknownUser(String),
    /// The password database could not be read.
    Lookup {
        /// The name looked up.
        name: String,
        /// The error `getpwnam_r` gave.
        errno: Errno,
    },
    /// A system call of the drop failed; the process may be partly dropped and must exit.
    Step {
        /// The call that failed (`initgroups`, `setresgid`, ...).
        step: &'static str,
        /// Its error.
        errno: Errno,
    },
    /// The calls succeeded but the kernel reports other ids than asked for, or root could be
    /// regained afterwards.
    NotDropped(&'static str),
}

impl core::fmt::Display for UserError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownUser(name) => write!(f, "unknown user {name:?}"),
            Self::Lookup { name, errno } => {
                write!(f, "cannot look up user {name:?}: {}", super::ErrnoText(*errno))
            }
            Self::Step { step, errno } => {
                write!(f, "privilege drop failed in {step}: {}", super::ErrnoText(*errno))
            }
            Self::NotDropped(what) => write!(f, "privilege drop did not take: {what}"),
        }
    }
}

impl std::error::Error for UserError {}

/// Looks `name` up in the password database.
///
/// # Errors
/// [`UserError::UnknownUser`] when no account has that name (a name with a NUL byte included),
/// [`UserError::Lookup`] when the database cannot be read.
pub fn lookup(name: &str) -> Result<Account, UserError> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok(Account { uid: user.uid, gid: user.gid, name: user.name }),
        Ok(None) => Err(UserError::UnknownUser(name.to_owned())),
        Err(errno) => Err(UserError::Lookup { name: name.to_owned(), errno }),
    }
}

/// Becomes `account` for good: supplementary groups from the group database
/// (`initgroups`, which always includes the primary group), then real, effective and saved
/// gid, then real, effective and saved uid, and finally reads all six ids back.
///
/// Groups go first because changing them, and the gids, needs the root uid that the last step
/// gives up. When the process already is exactly `account` (all three uids and gids match and
/// it is not root), nothing is changed: an unprivileged process cannot change its groups and
/// has nothing to drop.
///
/// # Errors
/// [`UserError::Step`] names the first call that failed, [`UserError::NotDropped`] a read-back
/// that disagrees or a successful attempt to regain root. After any error the process's
/// identity is unknown: the caller must exit, not serve.
pub fn drop_privileges(account: &Account) -> Result<(), UserError> {
    if !account.uid.is_root() && is_exactly(account)? {
        return Ok(());
    }
    let name = CString::new(account.name.as_str())
        .map_err(|_| UserError::Step { step: "initgroups", errno: Errno::EINVAL })?;
    unistd::initgroups(&name, account.gid)
        .map_err(|errno| UserError::Step { step: "initgroups", errno })?;
    unistd::setresgid(account.gid, account.gid, account.gid)
        .map_err(|errno| UserError::Step { step: "setresgid", errno })?;
    unistd::setresuid(account.uid, account.uid, account.uid)
        .map_err(|errno| UserError::Step { step: "setresuid", errno })?;

    if !is_exactly(account)? {
        return Err(UserError::NotDropped("ids differ from the account's after setresuid"));
    }
    // The classic check (CERT POS37-C): if the kernel still lets us become root again, the drop
    // did not happen, whatever the ids say.
    if !account.uid.is_root()
        && unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok()
    {
        return Err(UserError::NotDropped("root could be regained"));
    }
    Ok(())
}

/// Whether real, effective and saved uid and gid all are the account's.
fn is_exactly(account: &Account) -> Result<bool, UserError> {
    let uids = unistd::getresuid().map_err(|errno| UserError::Step { step: "getresuid", errno })?;
    let gids = unistd::getresgid().map_err(|errno| UserError::Step { step: "getresgid", errno })?;
    Ok([uids.real, uids.effective, uids.saved].iter().all(|&u| u == account.uid)
        && [gids.real, gids.effective, gids.saved].iter().all(|&g| g == account.gid))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn root_is_found_and_strangers_are_not() {
        let root = lookup("root").unwrap();
        assert!(root.uid.is_root());
        assert_eq!(root.name, "root");
        assert_eq!(
            lookup("no-such-user-wsgate").unwrap_err(),
            UserError::UnknownUser("no-such-user-wsgate".into())
        );
        assert!(matches!(lookup("nul\0name"), Err(UserError::UnknownUser(_))));
    }

    #[test]
    fn errors_read_well() {
        let e = UserError::Step { step: "setresuid", errno: Errno::EPERM };
        assert!(e.to_string().contains("setresuid"));
    }
}
