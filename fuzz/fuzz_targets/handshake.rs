//! The upgrade request parser (`http::handshake::parse`) and what the gateway does with its
//! result: the path decoder, the origin check, and the 101 or error answer.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
// A fuzz harness: a panic is how it reports a broken invariant.

use libfuzzer_sys::fuzz_target;
use wsgate::http::handshake::{self, MAX_HEADERS};
use wsgate::http::origin::OriginPolicy;
use wsgate::relay::path::{self, MAX_PATH};

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; 1024];
    match handshake::parse(data) {
        Ok(None) => {}
        Err(e) => {
            let status = e.status();
            assert!(matches!(status, 400 | 405 | 426 | 431), "{e}: {status}");
            // Every refusal has a complete answer that an HTTP client can read.
            let n = handshake::write_error(&mut out, status).expect("error answer fits 1 KiB");
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut resp = httparse::Response::new(&mut headers);
            let head = resp.parse(&out[..n]).expect("answer parses");
            assert!(head.is_complete());
            assert_eq!(resp.code, Some(status));
        }
        Ok(Some((req, n))) => {
            assert!(n <= data.len());
            // The head alone gives the same request; the bytes after it are not part of it.
            let (again, m) = handshake::parse(&data[..n]).unwrap().unwrap();
            assert_eq!((&again, m), (&req, n));
            // A head cut short is "need more", never a different answer.
            for k in [0, n / 2, n - 1] {
                assert_eq!(handshake::parse(&data[..k]), Ok(None), "prefix of {k} bytes");
            }
            assert!(req.path.starts_with('/') && !req.path.contains('?'));
            assert!(req.accept.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)));
            let mut seen = 0;
            handshake::for_each_header(&data[..n], |_, _| seen += 1);
            assert!(seen <= MAX_HEADERS);
            for protocol in [None, req.protocols.first().copied()] {
                let n = handshake::write_switching(&mut out, &req.accept, protocol)
                    .expect("101 answer fits 1 KiB");
                let mut headers = [httparse::EMPTY_HEADER; 8];
                let mut resp = httparse::Response::new(&mut headers);
                assert!(resp.parse(&out[..n]).expect("101 parses").is_complete());
                assert_eq!(resp.code, Some(101));
                let picked = resp.headers.iter().find(|h| h.name == "Sec-WebSocket-Protocol");
                assert_eq!(picked.map(|h| h.value), protocol.map(str::as_bytes));
            }
            let mut decoded = [0u8; MAX_PATH];
            if let Ok(p) = path::decode(req.path, &mut decoded) {
                assert!(p.starts_with('/') && p.len() <= MAX_PATH);
                assert!(!p.split('/').skip(1).any(|s| s.is_empty() || s == "." || s == ".."));
                assert!(!p.contains('\\') && !p.chars().any(char::is_control));
            }
            for policy in ["*", "same", "http://a.example, https://b.example:8443"] {
                let _ = OriginPolicy::parse(policy).permits(req.origin, req.host, false);
            }
        }
    }
});
