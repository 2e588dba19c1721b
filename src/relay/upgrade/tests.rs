#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use crate::config::{Document, EndpointMode};
use crate::http::origin::OriginPolicy;

/// A backend the fake lookup "connected" to.
#[derive(Debug, PartialEq, Eq)]
struct Fake {
    name: String,
    seqpacket: bool,
}

impl Socket for Fake {
    fn seqpacket(&self) -> bool {
        self.seqpacket
    }
}

/// A decision with its borrows turned into owned strings.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Page(String),
    Upgrade {
        endpoint: String,
        mode: Mode,
        protocol: Option<String>,
        backend: Fake,
        direct: bool,
    },
    Wait(String),
    /// Status, refusal, name ("" unnamed, "raw:" before a path as sent).
    Refuse(u16, Refusal, String),
}

fn got(d: Decision<'_, Fake>) -> Got {
    match d {
        Decision::Page { name, .. } => Got::Page(name.to_owned()),
        Decision::Upgrade(u) => Got::Upgrade {
            endpoint: u.endpoint.to_owned(),
            mode: u.mode,
            protocol: u.protocol.map(str::to_owned),
            backend: u.backend,
            direct: u.direct,
        },
        Decision::Wait { name } => Got::Wait(name.to_owned()),
        Decision::Refuse { why, name } => Got::Refuse(
            why.status(),
            why,
            match name {
                Name::None => String::new(),
                Name::Raw(s) => format!("raw:{s}"),
                Name::Decoded(s) => s.to_owned(),
            },
        ),
    }
}

/// An upgrade request for `path` from a page of the same host, with `extra` header lines.
fn upgrade(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw.lan\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn page(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: gw.lan\r\n\r\n").into_bytes()
}

/// Runs the decision for `head` against a docroot holding the sockets of `table` (name and
/// seqpacket, or the error its connect gives; any other name is not found). Also returns the
/// names looked up, in order.
fn run(site: &Site, head: &[u8], table: &[(&str, Result<bool, RouteError>)]) -> (Got, Vec<String>) {
    let request = match read(head, site.document.is_some(), false) {
        Ok(Some(r)) => r,
        Ok(None) => panic!("incomplete head"),
        Err(why) => return (Got::Refuse(why.status(), why, String::new()), Vec::new()),
    };
    let mut scratch = [0u8; path::MAX_PATH];
    let mut calls = Vec::new();
    let d = decide(
        &request,
        site,
        false,
        &mut scratch,
        |_| Ok(()),
        |name: &str| {
            calls.push(name.to_owned());
            match table.iter().find(|(n, _)| *n == name) {
                Some((_, Ok(seqpacket))) => {
                    Ok(Fake { name: name.to_owned(), seqpacket: *seqpacket })
                }
                Some((_, Err(e))) => Err(*e),
                None => Err(RouteError::NotFound),
            }
        },
    );
    (got(d), calls)
}

fn stream(name: &str) -> Fake {
    Fake { name: name.to_owned(), seqpacket: false }
}

fn opened(endpoint: &str, mode: Mode, protocol: Option<&str>) -> Got {
    Got::Upgrade {
        endpoint: endpoint.to_owned(),
        mode,
        protocol: protocol.map(str::to_owned),
        backend: stream(endpoint),
        direct: false,
    }
}

const ECHO: &[(&str, Result<bool, RouteError>)] = &[("echo", Ok(false))];

#[test]
fn an_upgrade_reaches_its_backend_in_the_site_mode() {
    let site = Site { mode: Mode::Lines, ..Site::default() };
    let (d, calls) = run(&site, &upgrade("/echo", ""), ECHO);
    assert_eq!(d, opened("echo", Mode::Lines, None));
    assert_eq!(calls, ["echo"]);
}

#[test]
fn origin_refused_403_before_anything_is_looked_up() {
    let site = Site::default();
    let (d, calls) = run(&site, &upgrade("/echo", "Origin: http://evil.example\r\n"), ECHO);
    assert_eq!(d, Got::Refuse(403, Refusal::Origin, String::new()));
    assert!(calls.is_empty());
    // The same host passes; a listed origin passes where the list allows it.
    let (d, _) = run(&site, &upgrade("/echo", "Origin: http://gw.lan\r\n"), ECHO);
    assert_eq!(d, opened("echo", Mode::Stream, None));
    let site = Site { origin: OriginPolicy::parse("http://evil.example"), ..Site::default() };
    let (d, _) = run(&site, &upgrade("/echo", "Origin: http://evil.example\r\n"), ECHO);
    assert_eq!(d, opened("echo", Mode::Stream, None));
}

#[test]
fn path_errors_are_400_or_414_and_keep_the_raw_name() {
    let site = Site::default();
    for (path, e) in [
        ("/a//b", PathError::EmptySegment),
        ("/echo/", PathError::TrailingSlash),
        ("/%2e%2e/x", PathError::DotSegment),
        ("/a%2Fb", PathError::EncodedSlash),
        ("/", PathError::Empty),
    ] {
        let (d, calls) = run(&site, &upgrade(path, ""), ECHO);
        assert_eq!(d, Got::Refuse(400, Refusal::Path(e), format!("raw:{path}")), "{path}");
        assert!(calls.is_empty());
    }
    let long = format!("/{}", "a".repeat(path::MAX_PATH));
    let (d, calls) = run(&site, &upgrade(&long, ""), ECHO);
    assert_eq!(d, Got::Refuse(414, Refusal::Path(PathError::TooLong), format!("raw:{long}")));
    assert!(calls.is_empty());
}

#[test]
fn allow_deny_refuses_403_by_the_decoded_path() {
    let mut site = Site::default();
    site.access.deny = "^/priv".to_owned();
    // Decoded first: an escaped spelling is the same path.
    for path in ["/private", "/%70rivate"] {
        let (d, calls) = run(&site, &upgrade(path, ""), &[("private", Ok(false))]);
        assert_eq!(d, Got::Refuse(403, Refusal::Denied, "private".to_owned()), "{path}");
        assert!(calls.is_empty());
    }
    let (d, _) = run(&site, &upgrade("/echo", ""), ECHO);
    assert_eq!(d, opened("echo", Mode::Stream, None));
}

#[test]
fn one_offered_subprotocol_names_the_backend_when_the_path_names_none() {
    let mut site = Site::default();
    let proto = "Sec-WebSocket-Protocol: echo\r\n";
    let (d, calls) = run(&site, &upgrade("/nope", proto), ECHO);
    assert_eq!(d, opened("echo", Mode::Stream, Some("echo")));
    assert_eq!(calls, ["nope", "echo"]);
    // The path's own backend wins, and the one subprotocol is still echoed.
    let (d, calls) = run(&site, &upgrade("/echo", "Sec-WebSocket-Protocol: chat\r\n"), ECHO);
    assert_eq!(d, opened("echo", Mode::Stream, Some("chat")));
    assert_eq!(calls, ["echo"]);
    // Two offered: no fallback, nothing echoed.
    let (d, calls) = run(&site, &upgrade("/nope", "Sec-WebSocket-Protocol: echo, chat\r\n"), ECHO);
    assert_eq!(d, Got::Refuse(404, Refusal::Route(RouteError::NotFound), "nope".to_owned()));
    assert_eq!(calls, ["nope"]);
    // Only after "not found": a path that names something unusable is answered as such.
    let (d, calls) = run(&site, &upgrade("/file", proto), &[("file", Err(RouteError::NotSocket))]);
    assert_eq!(d, Got::Refuse(404, Refusal::Route(RouteError::NotSocket), "file".to_owned()));
    assert_eq!(calls, ["file"]);
    // A token that is not a single safe segment is never looked up.
    let (d, calls) = run(&site, &upgrade("/nope", "Sec-WebSocket-Protocol: ..\r\n"), ECHO);
    assert_eq!(d, Got::Refuse(404, Refusal::Route(RouteError::NotFound), "nope".to_owned()));
    assert_eq!(calls, ["nope"]);
    // The token passes allow / deny as a path of its own.
    site.access.deny = "^/echo$".to_owned();
    let (d, calls) = run(&site, &upgrade("/nope", proto), ECHO);
    assert_eq!(d, Got::Refuse(403, Refusal::Denied, "nope".to_owned()));
    assert_eq!(calls, ["nope"]);
    // The fallback's own failures are its answer; the name stays the path's.
    let site = Site::default();
    let (d, _) = run(&site, &upgrade("/nope", proto), &[("echo", Err(RouteError::Refused))]);
    assert_eq!(d, Got::Refuse(502, Refusal::Route(RouteError::Refused), "nope".to_owned()));
    let (d, _) = run(&site, &upgrade("/nope", proto), &[("echo", Err(RouteError::Busy))]);
    assert_eq!(d, Got::Wait("nope".to_owned()));
}

#[test]
fn the_mode_is_the_endpoints_the_sites_or_the_sockets() {
    let site = Site {
        mode: Mode::Lines,
        endpoint_modes: vec![
            EndpointMode { name: "rec".to_owned(), mode: Mode::Framed },
            EndpointMode { name: "pkt".to_owned(), mode: Mode::SeqPacket },
        ],
        ..Site::default()
    };
    let table = &[("rec", Ok(false)), ("other", Ok(false)), ("pkt", Ok(false)), ("sp", Ok(true))];
    let (d, _) = run(&site, &upgrade("/rec", ""), table);
    assert_eq!(d, opened("rec", Mode::Framed, None));
    let (d, _) = run(&site, &upgrade("/other", ""), table);
    assert_eq!(d, opened("other", Mode::Lines, None));
    // A fallback endpoint gets its own mode, not the path's.
    let (d, _) = run(&site, &upgrade("/nope", "Sec-WebSocket-Protocol: rec\r\n"), table);
    assert_eq!(d, opened("rec", Mode::Framed, Some("rec")));
    // A SOCK_SEQPACKET socket is relayed packet by packet whatever was configured.
    let (d, _) = run(&site, &upgrade("/sp", ""), table);
    let Got::Upgrade { mode, backend, .. } = d else { panic!("{d:?}") };
    assert_eq!((mode, backend.seqpacket), (Mode::SeqPacket, true));
    // seqpacket configured, stream socket found: the backend is wrong, 502.
    let (d, _) = run(&site, &upgrade("/pkt", ""), table);
    assert_eq!(d, Got::Refuse(502, Refusal::ModeMismatch, "pkt".to_owned()));
}

#[test]
fn backend_errors_map_to_their_status_and_a_full_queue_waits() {
    let site = Site::default();
    for (e, status) in [
        (RouteError::NotSocket, 404),
        (RouteError::Symlink, 404),
        (RouteError::Refused, 502),
        (RouteError::Other(Errno::EACCES), 502),
    ] {
        let (d, _) = run(&site, &upgrade("/x", ""), &[("x", Err(e))]);
        assert_eq!(d, Got::Refuse(status, Refusal::Route(e), "x".to_owned()));
    }
    let (d, _) = run(&site, &upgrade("/x", ""), &[("x", Err(RouteError::Busy))]);
    assert_eq!(d, Got::Wait("x".to_owned()));
}

#[test]
fn pages_and_upgrades_are_told_apart_by_the_upgrade_header() {
    let doc = Document {
        root: "/www".into(),
        default_page: "index.html".to_owned(),
        access: crate::relay::acl::AccessList::default(),
    };
    let site = Site { document: Some(doc), ..Site::default() };
    let (d, calls) = run(&site, &page("GET", "/ui/index.html?x=1"), ECHO);
    assert_eq!(d, Got::Page("ui/index.html".to_owned()));
    assert!(calls.is_empty());
    let (d, _) = run(&site, &page("HEAD", "/"), ECHO);
    assert_eq!(d, Got::Page(String::new()));
    // Pages keep a trailing '/' (a directory) and refuse what backends refuse.
    let (d, _) = run(&site, &page("GET", "/ui/"), ECHO);
    assert_eq!(d, Got::Page("ui/".to_owned()));
    let (d, _) = run(&site, &page("GET", "/a//b"), ECHO);
    assert_eq!(d, Got::Refuse(400, Refusal::Path(PathError::EmptySegment), "raw:/a//b".to_owned()));
    let (d, _) = run(&site, &page("POST", "/"), ECHO);
    let e = HandshakeError::MethodNotAllowed;
    assert_eq!(d, Got::Refuse(405, Refusal::Request(e), String::new()));
    let (d, _) = run(&site, &upgrade("/echo", ""), ECHO);
    assert_eq!(d, opened("echo", Mode::Stream, None));
    // Without pages, a plain GET is a failed upgrade.
    let (d, _) = run(&Site::default(), &page("GET", "/"), ECHO);
    assert_eq!(d, Got::Refuse(400, Refusal::Request(HandshakeError::NotUpgrade), String::new()));
}

#[test]
fn an_incomplete_head_waits_for_more_until_its_buffer_is_full() {
    let head = upgrade("/echo", "");
    let part = head.get(..head.len() - 2).unwrap();
    assert_eq!(read(part, true, false), Ok(None));
    let e = read(part, true, true).unwrap_err();
    assert_eq!((e, e.status()), (Refusal::Request(HandshakeError::HeadersTooLarge), 431));
    assert!(matches!(read(&head, true, true), Ok(Some(Request::Upgrade(_, n))) if n == head.len()));
}

#[test]
fn direct_mode_is_the_sites() {
    let site = Site { direct: true, ..Site::default() };
    let (d, _) = run(&site, &upgrade("/echo", ""), ECHO);
    let Got::Upgrade { endpoint, direct, .. } = d else { panic!("{d:?}") };
    assert_eq!((endpoint.as_str(), direct), ("echo", true));
}

#[test]
fn each_refusal_has_one_status() {
    for (r, status) in [
        (Refusal::RecordTooLarge, 431),
        (Refusal::ResponseTooLarge, 500),
        (Refusal::Register(Errno::ENOMEM), 500),
        (Refusal::Full, 503),
        (Refusal::BackendBusy(64), 503),
        (Refusal::PlainHttp, 400),
        (Refusal::Denied, 403),
        (Refusal::Origin, 403),
        (Refusal::ModeMismatch, 502),
        (Refusal::File(FileError::NotRegular), 403),
        (Refusal::File(FileError::NotFound), 404),
    ] {
        assert_eq!(r.status(), status, "{r}");
    }
}

#[test]
fn authorization_is_asked_after_origin_and_allow_deny_and_before_any_backend() {
    let access = crate::relay::acl::AccessList { deny: "secret".into(), ..Default::default() };
    let site = Site { access, ..Site::default() };
    let decide_with = |head: &[u8], verdict: Result<(), Refusal>| {
        let request = read(head, false, false).unwrap().unwrap();
        let mut scratch = [0u8; path::MAX_PATH];
        let (mut asked, mut connected) = (Vec::new(), 0);
        let d = decide(
            &request,
            &site,
            false,
            &mut scratch,
            |p: &str| {
                asked.push(p.to_owned());
                verdict
            },
            |name: &str| {
                connected += 1;
                Ok(stream(name))
            },
        );
        (got(d), asked, connected)
    };
    // Refused: no backend is contacted.
    let (d, asked, connected) = decide_with(&upgrade("/echo", ""), Err(Refusal::Unauthorized));
    assert_eq!(d, Got::Refuse(401, Refusal::Unauthorized, "echo".into()));
    assert_eq!((asked, connected), (vec!["/echo".to_owned()], 0));
    // Admitted: the backend is reached.
    let (d, _, connected) = decide_with(&upgrade("/echo", ""), Ok(()));
    assert_eq!(d, opened("echo", Mode::Stream, None));
    assert_eq!(connected, 1);
    // A request the Origin policy or allow/deny refuses is never asked about.
    let (d, asked, _) = decide_with(
        &upgrade("/echo", "Origin: http://evil.example\r\n"),
        Err(Refusal::Unauthorized),
    );
    assert!(matches!(d, Got::Refuse(403, Refusal::Origin, _)), "{d:?}");
    assert!(asked.is_empty());
    let (d, asked, _) = decide_with(&upgrade("/secret", ""), Err(Refusal::Unauthorized));
    assert!(matches!(d, Got::Refuse(403, Refusal::Denied, _)), "{d:?}");
    assert!(asked.is_empty());
}

#[test]
fn a_subprotocol_naming_a_protected_backend_needs_its_login() {
    // `/open` needs no login, `/admin` does; `/open` has no backend, so the one offered
    // subprotocol would name the socket.
    let site = Site::default();
    let request_head = upgrade("/open", "Sec-WebSocket-Protocol: admin\r\n");
    let request = read(&request_head, false, false).unwrap().unwrap();
    let mut scratch = [0u8; path::MAX_PATH];
    let (mut asked, mut connected) = (Vec::new(), Vec::new());
    let d = decide(
        &request,
        &site,
        false,
        &mut scratch,
        |p: &str| {
            asked.push(p.to_owned());
            if p == "/admin" {
                Err(Refusal::Unauthorized)
            } else {
                Ok(())
            }
        },
        |name: &str| {
            connected.push(name.to_owned());
            if name == "admin" {
                Ok(stream(name))
            } else {
                Err(RouteError::NotFound)
            }
        },
    );
    assert_eq!(got(d), Got::Refuse(401, Refusal::Unauthorized, "open".into()));
    assert_eq!(asked, ["/open", "/admin"]);
    assert_eq!(connected, ["open"], "the protected backend is never contacted");
}
