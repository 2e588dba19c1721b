//! The `Cookie` header parser (`auth::credentials::cookie`).
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::auth::credentials;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    // The first byte picks how much of the rest is the cookie's name.
    let cut = usize::from(split).min(rest.len()).min(16);
    let Ok(name) = core::str::from_utf8(&rest[..cut]) else { return };
    let header = &rest[cut..];
    if let Some(value) = credentials::cookie(header, name) {
        // The value is a slice of the header itself, without the separators around it.
        let start = value.as_ptr() as usize - header.as_ptr() as usize;
        assert!(start + value.len() <= header.len());
        assert!(!value.contains(&b';'));
        // The name occurs in the header.
        assert!(header.windows(name.len().max(1)).any(|w| w == name.as_bytes()) || name.is_empty());
    }
});
