#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;

const P15: Policy = Policy { window_bits: 15 };
const P12: Policy = Policy { window_bits: 12 };

fn neg(headers: &[&str], policy: Policy) -> Result<Option<Agreement>, MalformedExtensions> {
    negotiate(headers.iter().map(|h| h.as_bytes()), policy)
}

fn answer(headers: &[&str], policy: Policy) -> Option<String> {
    neg(headers, policy).unwrap().map(|a| a.response().as_str().to_owned())
}

#[test]
fn browsers_offers_are_accepted_with_no_context_takeover_both_ways() {
    // Chromium's and Firefox's offers.
    for offer in ["permessage-deflate; client_max_window_bits", "permessage-deflate"] {
        assert_eq!(
            answer(&[offer], P15).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }
    // A smaller configured window is announced even when not asked about (§7.1.2.1).
    assert_eq!(
        answer(&["permessage-deflate"], P12).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12"
        )
    );
}

#[test]
fn a_client_window_below_ours_is_honoured() {
    let a = neg(&["permessage-deflate; server_max_window_bits=9"], P12).unwrap().unwrap();
    assert_eq!(a, Agreement { server_window_bits: 9 });
    assert!(a.response().ends_with("server_max_window_bits=9"));
    // At or above ours: ours, compressing.
    for v in ["12", "15", "\"13\""] {
        let h = format!("permessage-deflate; server_max_window_bits={v}");
        let a = neg(&[&h], P12).unwrap().unwrap();
        assert_eq!(a, Agreement { server_window_bits: 12 }, "{h}");
    }
    // 8 is a legal value.
    let a = neg(&["permessage-deflate; server_max_window_bits=8"], P15).unwrap().unwrap();
    assert_eq!(a, Agreement { server_window_bits: 8 });
}

#[test]
fn bad_offers_are_declined_and_the_next_one_taken() {
    let bad = [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; client_max_window_bits=1x",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; x_unknown",
        "permessage-deflate; server_max_window_bits=\"1234567890123456789\"",
    ];
    for b in bad {
        assert_eq!(neg(&[b], P15), Ok(None), "{b}");
        let two = format!("{b}, permessage-deflate; client_max_window_bits=10");
        assert!(neg(&[&two], P15).unwrap().is_some(), "{two}");
    }
    // Across headers too, and other extensions are skipped.
    let a = neg(&["x-webkit-deflate-frame", "permessage-deflate; x=1", "permessage-deflate"], P15);
    assert!(a.unwrap().is_some());
    assert_eq!(neg(&["x-webkit-deflate-frame; no_context_takeover"], P15), Ok(None));
    assert_eq!(neg(&[], P15), Ok(None));
    // The first acceptable offer wins.
    let a = neg(&["permessage-deflate; server_max_window_bits=10, permessage-deflate"], P15);
    assert_eq!(a.unwrap().unwrap().server_window_bits, 10);
}

#[test]
fn grammar_is_checked() {
    let malformed = [
        "permessage-deflate;",
        "permessage-deflate; =1",
        "permessage-deflate; a=",
        "permessage-deflate; a=\"unterminated",
        "permessage-deflate; a=\"not a token\"",
        "permessage-deflate; a=\"\"",
        "permessage-deflate foo",
        "permessage-deflate; a=b c",
        ";",
        "per\u{e9}",
    ];
    for m in malformed {
        assert_eq!(neg(&[m], P15), Err(MalformedExtensions), "{m}");
    }
    // Whitespace, tabs, empty list elements, case of the name, escapes in a quoted value.
    for ok in [
        " permessage-deflate \t;\tclient_max_window_bits = 10 ",
        ", ,permessage-deflate,",
        "PerMessage-Deflate",
        "permessage-deflate; client_max_window_bits=\"1\\0\"",
    ] {
        assert!(neg(&[ok], P15).unwrap().is_some(), "{ok}");
    }
    assert_eq!(neg(&[""], P15), Ok(None));
}
