//! Every crash the fuzz targets found (fuzz/, docs/fuzzing.md), as a test: the input the
//! fuzzer saved, kept in fuzz/regressions/TARGET/, fed to the code it broke, with the
//! behaviour that fixed it asserted. scripts/fuzz.sh also replays these files through the
//! fuzz targets themselves. The backend kit's targets have theirs in
//! backend/tests/fuzz_regressions.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use wsgate::http::handshake;
use wsgate::relay::path::{self, PathError, MAX_PATH};

/// fuzz/handshake: a request path with a raw C1 control character (U+0087) passed the path
/// checks, which refused only the ASCII controls; U+0085 (NEL) is a line break to some log
/// readers, and the path is logged. Now refused as a control character, raw or encoded.
#[test]
fn handshake_path_with_a_c1_control_is_refused() {
    let input = include_bytes!("../fuzz/regressions/handshake/c1_control_in_path");
    let (req, _) = handshake::parse(input).unwrap().unwrap();
    assert!(req.path.contains('\u{87}'), "{:?}", req.path);
    let mut out = [0u8; MAX_PATH];
    assert_eq!(path::decode(req.path, &mut out), Err(PathError::Control));
    for raw in ["/a%C2%85", "/a\u{85}", "/a%c2%9b[31m"] {
        assert_eq!(path::decode(raw, &mut out), Err(PathError::Control), "{raw}");
    }
    // Other non-ASCII characters are names like any other.
    assert_eq!(path::decode("/caf%C3%A9/\u{fc}", &mut out), Ok("/caf\u{e9}/\u{fc}"));
}
