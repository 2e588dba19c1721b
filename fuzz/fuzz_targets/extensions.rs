//! permessage-deflate negotiation (`ws::deflate::negotiate`): one or more
//! `Sec-WebSocket-Extensions` values, alone and as a request's headers read by
//! `http::handshake::parse` (as `event_loop/conn/request.rs` passes them), under every
//! configured window; and the answer as `http::handshake::write_switching_with` writes it
//! into the 101.
//!
//! Checks: whether the header is well formed and whether an offer is accepted do not depend
//! on the configured window, and the window agreed is the client's (when it asked for one)
//! bounded by the configured one; several header fields mean what their values joined by
//! commas mean (RFC 7230 §3.2.2); a value with a byte outside visible ASCII and tab is never
//! well formed; the answer written into the 101 is one permessage-deflate offer in the form
//! RFC 7692 allows a server (both no-context-takeover parameters, `server_max_window_bits`
//! exactly when below 15, never `client_max_window_bits`), and read back as an offer it gives
//! the same agreement.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::http::handshake::{self, HandshakeError, MAX_EXTENSION_HEADERS};
use wsgate::ws::deflate::{negotiate, Agreement, MalformedExtensions, Policy, NAME};

/// Separates the header values in the input: a byte no header value can hold.
const SEP: u8 = b'\n';

/// A `Sec-WebSocket-Accept` value, for the 101.
const ACCEPT: &[u8; 28] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

type Outcome = Result<Option<Agreement>, MalformedExtensions>;

fn policy(window_bits: u8) -> Policy {
    Policy { window_bits }
}

/// The answer in the 101, checked against what RFC 7692 lets a server answer, as a client
/// reads it: `permessage-deflate`, then parameters, each once.
fn check_answer(a: Agreement, configured: u8) {
    assert!((8..=configured).contains(&a.server_window_bits), "{a:?} under {configured}");
    let response = a.response();
    let mut out = [0u8; 512];
    let n = handshake::write_switching_with(&mut out, ACCEPT, None, Some(response.as_str()))
        .expect("101 with the answer fits");
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut headers);
    assert!(resp.parse(&out[..n]).expect("101 parses").is_complete());
    assert_eq!(resp.code, Some(101));
    let mut values = resp.headers.iter().filter(|h| h.name == "Sec-WebSocket-Extensions");
    let value = values.next().expect("the 101 names the extension").value;
    assert!(values.next().is_none(), "one Sec-WebSocket-Extensions header");
    let text = core::str::from_utf8(value).expect("ASCII answer");
    assert!(!text.contains(','), "one extension: {text}");
    let mut parts = text.split(';').map(str::trim);
    assert_eq!(parts.next(), Some(NAME), "{text}");
    let (mut snct, mut cnct, mut smwb) = (0, 0, None);
    for p in parts {
        match p.split_once('=') {
            None if p == "server_no_context_takeover" => snct += 1,
            None if p == "client_no_context_takeover" => cnct += 1,
            Some(("server_max_window_bits", v)) => {
                assert!(smwb.is_none(), "server_max_window_bits twice: {text}");
                let bits: u8 = v.parse().expect("a decimal window");
                assert!(!v.starts_with('0'), "{text}");
                smwb = Some(bits);
            }
            _ => panic!("parameter {p:?} in the answer {text}"),
        }
    }
    assert_eq!((snct, cnct), (1, 1), "{text}");
    assert_eq!(smwb, (a.server_window_bits < 15).then_some(a.server_window_bits), "{text}");
    // Offered back, the answer is accepted as it is, whatever the configured window at or
    // above it.
    for w in configured..=15 {
        assert_eq!(negotiate([value], policy(w)), Ok(Some(a)), "{text} under {w}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&p, data)) = data.split_first() else { return };
    let configured = 9 + p % 7;
    let values: Vec<&[u8]> = data.split(|&b| b == SEP).collect();
    let got = negotiate(values.iter().copied(), policy(configured));

    // The same acceptance under every window; the window agreed is the client's bounded by
    // the configured one.
    let widest = negotiate(values.iter().copied(), policy(15));
    for w in 9..=15 {
        let at = negotiate(values.iter().copied(), policy(w));
        let expected: Outcome = widest
            .map(|a| a.map(|a| Agreement { server_window_bits: a.server_window_bits.min(w) }));
        assert_eq!(at, expected, "window {w}");
    }

    if got.is_ok() {
        for v in &values {
            assert!(
                v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)),
                "a value with control or non-ASCII bytes accepted: {v:02x?}"
            );
        }
        // Several headers are one list.
        let joined = values.join(&b","[..]);
        assert_eq!(negotiate([joined.as_slice()], policy(configured)), got, "joined");
    }
    if let Ok(Some(a)) = got {
        assert!(
            values
                .iter()
                .any(|v| v.to_ascii_lowercase().windows(NAME.len()).any(|w| w == NAME.as_bytes())),
            "agreed without an offer"
        );
        check_answer(a, configured);
    }

    // The same values as a request's headers, as the connection reads them.
    if values.iter().any(|v| v.contains(&b'\r')) {
        return;
    }
    let mut req = b"GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        .to_vec();
    for v in &values {
        req.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    match handshake::parse(&req) {
        Ok(Some((r, n))) => {
            assert_eq!(n, req.len());
            assert!(values.len() <= MAX_EXTENSION_HEADERS, "{} headers kept", values.len());
            assert_eq!(r.extensions.len(), values.len());
            // Trimmed of outer whitespace, which the negotiation skips anyway.
            assert_eq!(negotiate(r.extensions.iter().copied(), policy(configured)), got);
        }
        Err(HandshakeError::BadExtensions) => {
            assert!(values.len() > MAX_EXTENSION_HEADERS, "{} headers refused", values.len());
        }
        // httparse refuses some bytes in header values, or too many headers (431).
        Err(_) => {}
        Ok(None) => panic!("a complete head is incomplete"),
    };
});
