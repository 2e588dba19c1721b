//! The `direct` mode's hand-over record (`wsgate_kit::direct::parse_record`): the `NAME=value`
//! lines, a blank line and the client's early bytes that a backend reads before it takes over
//! the client's socket. Checks: a complete record's layout covers exactly its bytes, and the
//! answer is consistent as the record arrives: an error stays an error, "need more" never
//! follows a complete record.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate_kit::direct::{parse_record, HandoverError, MAX_RECORD_LINES};

fuzz_target!(|data: &[u8]| {
    let Some((&p, bytes)) = data.split_first() else { return };
    let max_early = usize::from(p) * 4;
    let whole = parse_record(bytes, max_early);
    if let Ok(Some(layout)) = whole {
        assert_eq!(layout.lines + 1 + layout.early, bytes.len());
        assert!(layout.early <= max_early);
        assert!(layout.lines <= MAX_RECORD_LINES);
        assert_eq!(&bytes[layout.lines - 1..=layout.lines], b"\n\n");
        assert!(!bytes[..layout.lines - 1].windows(2).any(|w| w == b"\n\n"));
    }
    // The record as it arrives, cut at a few places.
    for k in [bytes.len() / 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        match parse_record(&bytes[..k], max_early) {
            Err(e) => assert!(whole.is_err(), "{e} at {k} bytes, then {whole:?}"),
            Ok(Some(_)) => assert!(matches!(whole, Err(HandoverError::TrailingBytes))),
            Ok(None) => {}
        }
    }
});
