//! The session endpoint's request parser (`auth::login::parse`) and what it hands on: the JSON
//! login body (`auth::credentials::login_json`) and a form's `next` field.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::auth::credentials::{self, MAX_PASSWORD, MAX_USER};
use wsgate::auth::login::{self, Parsed, MAX_BODY};

fuzz_target!(|data: &[u8]| {
    let full = data.first().is_some_and(|b| b & 1 == 1);
    if let Parsed::Request(req) = login::parse(data, "/session", full) {
        // The request is what the buffer holds, and its body is bounded.
        assert!(req.len <= data.len());
        assert!(req.body.len() <= MAX_BODY);
        assert_eq!(req.head.len() + req.body.len(), req.len);
    }
    let (mut u, mut p) = ([0u8; MAX_USER], [0u8; MAX_PASSWORD]);
    if let Ok((user, password, _)) = credentials::login_json(data, &mut u, &mut p) {
        assert!(credentials::user_name(user.as_bytes()).is_ok());
        assert!(password.len() <= MAX_PASSWORD);
    }
    let mut next = [0u8; 256];
    if let Ok(Some(n)) = credentials::form_field(data, "next", &mut next) {
        assert!(n <= next.len() && n <= data.len());
        if let Some(t) = core::str::from_utf8(&next[..n]).ok().and_then(login::local_target) {
            assert!(t.starts_with('/') && !t.starts_with("//") && !t.contains(['\r', '\n']));
        }
    }
});
