//! Every crash the fuzz targets found in the backend kit's code (fuzz/, docs/fuzzing.md), as a
//! test: the input the fuzzer saved, kept in fuzz/regressions/TARGET/, fed to the code it
//! broke, with the behaviour that fixed it asserted. The gateway's are in
//! tests/fuzz_regressions.rs at the top of the repository.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use wsgate_kit::direct::{parse_record, HandoverError};

/// fuzz/direct_record: a hand-over record starting with a blank line was refused as "empty
/// record" while it arrived, then accepted once a later "\n\n" came (the search for the blank
/// line skipped the first one). The answer must not depend on how the bytes are cut, and a
/// blank first line is an empty record.
#[test]
fn direct_record_with_a_blank_first_line_is_refused_however_it_arrives() {
    let input = include_bytes!("../../fuzz/regressions/direct_record/leading_blank_line");
    // The target's input: one byte for the early-data limit, then the record.
    let (&limit, bytes) = input.split_first().unwrap();
    let max_early = usize::from(limit) * 4;
    assert_eq!(bytes.first(), Some(&b'\n'));
    assert!(bytes.windows(2).any(|w| w == b"\n\n"), "the input has a later blank line");
    for k in 1..=bytes.len() {
        match parse_record(&bytes[..k], max_early) {
            Err(HandoverError::Malformed(m)) => assert_eq!(m, "empty record", "at {k} bytes"),
            other => panic!("at {k} bytes: {other:?}"),
        }
    }
}
