//! The login form body parser (`auth::credentials::login_form`).
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::auth::credentials::{self, MAX_PASSWORD, MAX_USER};

fuzz_target!(|data: &[u8]| {
    let (mut u, mut p) = ([0u8; MAX_USER], [0u8; MAX_PASSWORD]);
    if let Ok((user, password)) = credentials::login_form(data, &mut u, &mut p) {
        assert!((1..=MAX_USER).contains(&user.len()));
        assert!(credentials::user_name(user.as_bytes()).is_ok());
        assert!(password.len() <= MAX_PASSWORD);
        // Decoding never makes a value longer than it was written.
        assert!(user.len() + password.len() <= data.len());
    }
});
