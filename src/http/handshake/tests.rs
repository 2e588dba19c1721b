#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, clippy::expect_used)]
use super::*;

/// RFC 6455 §1.3, the example handshake.
const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

const RFC_ACCEPT: &[u8; 28] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid request with `extra` header lines inserted before the blank line.
fn request_with(target: &str, extra: &str) -> std::string::String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A request whose header lines are all given.
fn request_lines(lines: &str) -> std::string::String {
    format!("GET /x HTTP/1.1\r\n{lines}\r\n")
}

fn err(req: &str) -> HandshakeError {
    parse(req.as_bytes()).unwrap_err()
}

#[test]
fn rfc_example_request() {
    let (req, n) = parse(RFC_REQUEST).unwrap().unwrap();
    assert_eq!(n, RFC_REQUEST.len());
    assert_eq!(req.path, "/chat");
    assert_eq!(req.query, "");
    assert_eq!(req.host, "server.example.com");
    assert_eq!(req.origin, Some("http://example.com"));
    assert_eq!(&req.accept, RFC_ACCEPT);
    assert_eq!(req.protocols.as_slice(), ["chat", "superchat"]);
}

#[test]
fn accept_key_rfc_vector() {
    assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), RFC_ACCEPT);
}

#[test]
fn query_is_split_off_raw() {
    let r = request_with("/a%20b?x=1&y=%41?z", "");
    let (req, _) = parse(r.as_bytes()).unwrap().unwrap();
    assert_eq!(req.path, "/a%20b");
    assert_eq!(req.query, "x=1&y=%41?z");
    assert_eq!(req.origin, None);
    assert!(req.protocols.is_empty());
}

#[test]
fn partial_input_at_every_split_point() {
    for cut in 0..RFC_REQUEST.len() {
        assert_eq!(parse(&RFC_REQUEST[..cut]), Ok(None), "cut {cut}");
    }
    assert!(parse(RFC_REQUEST).unwrap().is_some());
}

#[test]
fn pipelined_bytes_are_not_consumed() {
    let mut buf = RFC_REQUEST.to_vec();
    buf.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    let (req, n) = parse(&buf).unwrap().unwrap();
    assert_eq!(n, RFC_REQUEST.len());
    assert_eq!(buf[n], 0x81);
    assert_eq!(req.path, "/chat");
}

#[test]
fn header_names_and_tokens_in_odd_case() {
    let r = request_lines(
        "hOsT: h\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\
         oRiGiN: http://o\r\nSec-Websocket-Protocol: a\r\n",
    );
    let (req, _) = parse(r.as_bytes()).unwrap().unwrap();
    assert_eq!(req.host, "h");
    assert_eq!(req.origin, Some("http://o"));
    assert_eq!(req.protocols.as_slice(), ["a"]);
    assert_eq!(&req.accept, RFC_ACCEPT);
}

#[test]
fn connection_and_upgrade_are_token_lists() {
    let r = request_lines(
        "Host: h\r\nUpgrade: h2c, websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert!(parse(r.as_bytes()).unwrap().is_some());
    // Spread over several header lines.
    let r = request_lines(
        "Host: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert!(parse(r.as_bytes()).unwrap().is_some());
    // A substring is not a token.
    let r = request_lines(
        "Host: h\r\nUpgrade: websocket\r\nConnection: keep-alive-upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_eq!(err(&r), HandshakeError::NotUpgrade);
    let r = request_lines(
        "Host: h\r\nUpgrade: websockets\r\nConnection: upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_eq!(err(&r), HandshakeError::NotUpgrade);
}

#[test]
fn protocols_from_several_headers_trimmed() {
    let r =
        request_with("/p", "Sec-WebSocket-Protocol: a ,\tb\r\nSec-WebSocket-Protocol: ,c,, d \r\n");
    let (req, _) = parse(r.as_bytes()).unwrap().unwrap();
    assert_eq!(req.protocols.as_slice(), ["a", "b", "c", "d"]);
}

#[test]
fn protocol_errors() {
    let eight = request_with("/p", "Sec-WebSocket-Protocol: a,b,c,d,e,f,g,h\r\n");
    assert_eq!(parse(eight.as_bytes()).unwrap().unwrap().0.protocols.len(), 8);
    for bad in [
        "Sec-WebSocket-Protocol: a,b,c,d,e,f,g,h,i\r\n",
        "Sec-WebSocket-Protocol: a,b,c,d\r\nSec-WebSocket-Protocol: e,f,g,h,i\r\n",
        "Sec-WebSocket-Protocol: chat room\r\n",
        "Sec-WebSocket-Protocol: chat/1\r\n",
        "Sec-WebSocket-Protocol: \"chat\"\r\n",
        "Sec-WebSocket-Protocol: caf\u{e9}\r\n",
    ] {
        let r = request_with("/p", bad);
        assert_eq!(err(&r), HandshakeError::BadProtocol, "{bad:?}");
        assert_eq!(HandshakeError::BadProtocol.status(), 400);
    }
}

#[test]
fn each_error_with_its_status() {
    let cases: &[(&str, HandshakeError, u16)] = &[
        ("GET /x HTTP/1.1\r\nHost h\r\n\r\n", HandshakeError::Malformed, 400),
        ("\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03", HandshakeError::Malformed, 400),
        ("GET /x HTTP/2.0\r\n\r\n", HandshakeError::Malformed, 400),
        ("GET /x\r\n\r\n", HandshakeError::Malformed, 400),
        ("POST /x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::MethodNotAllowed, 405),
        ("get /x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::MethodNotAllowed, 405),
        ("GET /x HTTP/1.0\r\nHost: h\r\n\r\n", HandshakeError::HttpVersion, 400),
        ("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::BadTarget, 400),
        ("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::BadTarget, 400),
        ("GET /x HTTP/1.1\r\n\r\n", HandshakeError::MissingHost, 400),
        ("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HandshakeError::MissingHost, 400),
        ("GET /x HTTP/1.1\r\nHost: \r\n\r\n", HandshakeError::MissingHost, 400),
        ("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", HandshakeError::NotUpgrade, 400),
    ];
    for (req, want, status) in cases {
        assert_eq!(err(req), *want, "{req:?}");
        assert_eq!(want.status(), *status, "{req:?}");
    }
}

#[test]
fn missing_upgrade_or_connection() {
    let r = request_lines(
        "Host: h\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_eq!(err(&r), HandshakeError::NotUpgrade);
    let r = request_lines(
        "Host: h\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_eq!(err(&r), HandshakeError::NotUpgrade);
}

fn with_key(key_lines: &str) -> std::string::String {
    request_lines(&format!(
        "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key_lines}\
         Sec-WebSocket-Version: 13\r\n"
    ))
}

#[test]
fn key_errors() {
    assert_eq!(err(&with_key("")), HandshakeError::BadKey);
    for bad in [
        "Sec-WebSocket-Key: \r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n", // unpadded
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n", // bad padding
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n", // too long
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n", // non-zero pad bits
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n", // outside the alphabet
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==dGhl\r\n", // padding in the middle
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZWVl\r\n", // 18 bytes
        "Sec-WebSocket-Key: c2hvcnQ=\r\n",               // 5 bytes
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", // duplicated
    ] {
        assert_eq!(err(&with_key(bad)), HandshakeError::BadKey, "{bad:?}");
    }
    assert_eq!(HandshakeError::BadKey.status(), 400);
    // Surrounding whitespace is not part of the key.
    let ok = with_key("Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n");
    assert_eq!(&parse(ok.as_bytes()).unwrap().unwrap().0.accept, RFC_ACCEPT);
}

fn with_version(version_lines: &str) -> std::string::String {
    request_lines(&format!(
        "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{version_lines}"
    ))
}

#[test]
fn version_errors() {
    for bad in [
        "",
        "Sec-WebSocket-Version: 8\r\n",
        "Sec-WebSocket-Version: 13, 8\r\n",
        "Sec-WebSocket-Version: 013\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
    ] {
        assert_eq!(err(&with_version(bad)), HandshakeError::UnsupportedVersion, "{bad:?}");
    }
    assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
    assert!(parse(with_version("Sec-WebSocket-Version:  13 \r\n").as_bytes()).unwrap().is_some());
}

#[test]
fn origin_and_body_errors() {
    let r = request_with("/x", "Origin: http://a\r\nOrigin: http://b\r\n");
    assert_eq!(err(&r), HandshakeError::BadOrigin);
    let mut r = request_with("/x", "Origin: http://caf").into_bytes();
    r.truncate(r.len() - 2);
    r.extend_from_slice(b"\xe9\r\n\r\n");
    assert_eq!(parse(&r), Err(HandshakeError::BadOrigin));
    assert_eq!(err(&request_with("/x", "Content-Length: 5\r\n")), HandshakeError::UnexpectedBody);
    assert_eq!(
        err(&request_with("/x", "Transfer-Encoding: chunked\r\n")),
        HandshakeError::UnexpectedBody
    );
    assert!(parse(request_with("/x", "Content-Length: 0\r\n").as_bytes()).unwrap().is_some());
    assert_eq!(HandshakeError::BadOrigin.status(), 400);
    assert_eq!(HandshakeError::UnexpectedBody.status(), 400);
}

#[test]
fn check_order_most_specific_wins() {
    // 405 before anything about the upgrade headers.
    assert_eq!(err("PUT /x HTTP/1.0\r\n\r\n"), HandshakeError::MethodNotAllowed);
    // Target before method.
    assert_eq!(err("PUT * HTTP/1.1\r\n\r\n"), HandshakeError::BadTarget);
    // Version before Host.
    assert_eq!(err("GET /x HTTP/1.0\r\n\r\n"), HandshakeError::HttpVersion);
    // Host before Upgrade.
    assert_eq!(err("GET /x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), HandshakeError::MissingHost);
    // Upgrade before key.
    assert_eq!(
        err(&request_lines("Host: h\r\nSec-WebSocket-Version: 13\r\n")),
        HandshakeError::NotUpgrade
    );
    // Key before version.
    let r = request_lines("Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    assert_eq!(err(&r), HandshakeError::BadKey);
    // Version before protocols.
    let r = with_version("Sec-WebSocket-Protocol: a b\r\n");
    assert_eq!(err(&r), HandshakeError::UnsupportedVersion);
}

#[test]
fn too_many_headers() {
    let mut lines = std::string::String::from(
        "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for i in 5..MAX_HEADERS {
        lines.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    assert!(parse(request_lines(&lines).as_bytes()).unwrap().is_some(), "32 headers are fine");
    lines.push_str("X-One-Too-Many: 33\r\n");
    assert_eq!(err(&request_lines(&lines)), HandshakeError::HeadersTooLarge);
    assert_eq!(HandshakeError::HeadersTooLarge.status(), 431);
}

#[test]
fn write_switching_exact_bytes() {
    let mut out = [0u8; 256];
    let n = write_switching(&mut out, RFC_ACCEPT, None).unwrap();
    let want: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_eq!(&out[..n], want);
    for small in 0..n {
        assert_eq!(write_switching(&mut out[..small], RFC_ACCEPT, None), None, "{small}");
    }
    assert_eq!(write_switching(&mut out[..n], RFC_ACCEPT, None), Some(n));

    let n = write_switching(&mut out, RFC_ACCEPT, Some("chat")).unwrap();
    let want: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Sec-WebSocket-Protocol: chat\r\n\r\n";
    assert_eq!(&out[..n], want);
    assert_eq!(write_switching(&mut out[..n - 1], RFC_ACCEPT, Some("chat")), None);
    assert_eq!(write_switching(&mut out, RFC_ACCEPT, Some("a\r\nSet-Cookie: x")), None);
    assert_eq!(write_switching(&mut out, RFC_ACCEPT, Some("")), None);
}

fn error_text(status: u16) -> std::string::String {
    let mut out = [0u8; 512];
    let n = write_error(&mut out, status).unwrap();
    std::string::String::from_utf8(out[..n].to_vec()).unwrap()
}

#[test]
fn write_error_exact_bytes() {
    assert_eq!(
        error_text(400),
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\
         Connection: close\r\n\r\nBad Request\n"
    );
    assert_eq!(
        error_text(405),
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n\
         Content-Length: 19\r\nConnection: close\r\nAllow: GET\r\n\r\nMethod Not Allowed\n"
    );
    assert_eq!(
        error_text(426),
        "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\
         Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         \r\nUpgrade Required\n"
    );
    assert_eq!(
        error_text(431),
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n\
         Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n"
    );
}

#[test]
fn write_error_every_supported_status() {
    for status in [400, 403, 404, 405, 414, 426, 431, 500, 502, 503, 504] {
        let text = error_text(status);
        let reason = reason_phrase(status);
        assert!(!reason.is_empty(), "{status}");
        assert!(text.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, format!("{reason}\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
        assert!(head.contains("\r\nContent-Type: text/plain\r\n"), "{head}");
        assert!(head.contains("close"), "{head}");
    }
    assert_eq!(reason_phrase(414), "URI Too Long");
    assert_eq!(reason_phrase(504), "Gateway Timeout");
    assert_eq!(reason_phrase(499), "");
    assert!(error_text(499).starts_with("HTTP/1.1 499 \r\n"));
}

#[test]
fn write_error_refuses_small_buffers_and_non_errors() {
    let mut out = [0u8; 256];
    let n = write_error(&mut out, 503).unwrap();
    for small in 0..n {
        assert_eq!(write_error(&mut out[..small], 503), None, "{small}");
    }
    assert_eq!(write_error(&mut out[..n], 503), Some(n));
    assert_eq!(write_error(&mut out, 101), None);
    assert_eq!(write_error(&mut out, 200), None);
    assert_eq!(write_error(&mut out, 600), None);
}

#[test]
fn mutated_requests_never_panic() {
    let mut seed = 0xd1b5_4a32_d192_ed03_u64;
    let mut buf = RFC_REQUEST.to_vec();
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        buf.clear();
        buf.extend_from_slice(RFC_REQUEST);
        let at = (seed % buf.len() as u64) as usize;
        let byte = (seed >> 32) as u8;
        match (seed >> 40) % 3 {
            0 => buf[at] = byte,
            1 => buf.insert(at, byte),
            _ => {
                buf.remove(at);
            }
        }
        let cut = ((seed >> 48) as usize) % (buf.len() + 1);
        for input in [&buf[..], &buf[..cut]] {
            if let Ok(Some((req, n))) = parse(input) {
                assert!(n <= input.len());
                assert!(req.path.starts_with('/'));
                assert!(req.protocols.len() <= MAX_PROTOCOLS);
            }
        }
    }
}

#[test]
fn base64_rfc4648_vectors() {
    let vectors: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"f", b"Zg=="),
        (b"fo", b"Zm8="),
        (b"foo", b"Zm9v"),
        (b"foob", b"Zm9vYg=="),
        (b"fooba", b"Zm9vYmE="),
        (b"foobar", b"Zm9vYmFy"),
        (&[0xfb, 0xff, 0xbf], b"+/+/"),
    ];
    for &(plain, encoded) in vectors {
        let mut buf = [0u8; 16];
        let n = base64_encode(plain, &mut buf).unwrap();
        assert_eq!(&buf[..n], encoded);
        let n = base64_decode(encoded, &mut buf).unwrap();
        assert_eq!(&buf[..n], plain);
    }
    let mut tiny = [0u8; 3];
    assert_eq!(base64_encode(b"foo", &mut tiny), None);
    assert_eq!(base64_decode(b"Zm9vYg==", &mut tiny), None);
    assert_eq!(base64_decode(b"Zg=", &mut [0u8; 4]), None);
    assert_eq!(base64_decode(b"Z===", &mut [0u8; 4]), None);
    assert_eq!(base64_decode(b"Zh==", &mut [0u8; 4]), None);
    assert_eq!(base64_decode(b"Zm9=", &mut [0u8; 4]), None);
}

#[test]
fn errors_display() {
    assert_eq!(HandshakeError::UnsupportedVersion.to_string(), "Sec-WebSocket-Version is not 13");
    assert_eq!(HandshakeError::MethodNotAllowed.to_string(), "method is not GET");
}
