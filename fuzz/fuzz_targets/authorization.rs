//! The `Authorization` header parser (`auth::credentials::authorization`) and the session token
//! check (`auth::session::Key::check`) on whatever a Bearer header carries.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::auth::credentials::{self, Credential, MAX_AUTHORIZATION, MAX_PASSWORD, MAX_USER};
use wsgate::auth::session::{Key, KEY_LEN, MAX_TOKEN};

fuzz_target!(|data: &[u8]| {
    let mut scratch = [0u8; MAX_AUTHORIZATION];
    let key = Key::new(&[0x5a; KEY_LEN]);
    match credentials::authorization(data, &mut scratch) {
        Err(_) => {}
        Ok(Credential::Basic { user, password }) => {
            assert!((1..=MAX_USER).contains(&user.len()));
            assert!(password.len() <= MAX_PASSWORD);
            // What was decoded is what the header's base64 says.
            assert!(data.len() >= 6 && data[..6].eq_ignore_ascii_case(b"basic "));
            // A token issued for this user checks back to it.
            let mut out = [0u8; MAX_TOKEN];
            let n = key.issue(user, "", u64::MAX, &mut out).expect("a valid user gets a token");
            let token = core::str::from_utf8(&out[..n]).unwrap();
            let session = key.check(token, 0).expect("a fresh token checks");
            assert_eq!(session.user, user);
        }
        Ok(Credential::Bearer(token)) => {
            assert!(data.len() > 7 && data[..7].eq_ignore_ascii_case(b"bearer "));
            assert_eq!(token.as_bytes(), &data[7..]);
            // A token nobody issued under this key never checks.
            assert!(key.check(token, 0).is_err());
        }
    }
});
