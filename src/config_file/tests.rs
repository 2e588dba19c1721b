#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
use super::read::overlaps;
use super::*;

fn load_text(text: &str) -> (ServiceConfig, Vec<Warning>) {
    load_str(text, Path::new("t.conf")).unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    match load_str(text, Path::new("t.conf")) {
        Ok(c) => panic!("loaded: {c:?}"),
        Err(e) => e.to_string(),
    }
}

const WS: &str = "websocket = { docroot = \"/run/ws\"; };";

#[test]
fn defaults() {
    let (c, w) = load_text(&format!("servers = ({{ {WS} }});"));
    assert!(w.is_empty(), "{w:?}");
    let s = &c.servers[0];
    assert_eq!((s.port, s.addr, s.maxclients), (80, None, DEFAULT_MAX_CONNECTIONS));
    assert_eq!(s.keepalive_timeout, Duration::ZERO);
    assert_eq!(s.line, 1);
    let ws = s.websocket.as_ref().unwrap();
    assert_eq!(ws.access, AccessList::default());
    assert_eq!(
        (ws.mode, ws.data_type, ws.direct, ws.context),
        (Mode::Stream, DataType::Text, false, false)
    );
    assert_eq!(ws.origin, None);
    assert_eq!(ws.ping_interval, None);
}

#[test]
fn websocket_keys() {
    let (c, w) = load_text(
        "servers = ({ websocket = { docroot = \"/w\"; options = \"direct\"; mode = \"framed\";
          modes = { chat = \"lines\"; raw = \"seqpacket\"; }; type = \"auto\";
          origin = \"https://a.example, *\"; ping_interval_ms = 0; pong_timeout_ms = 500;
          idle_timeout_ms = 60000; handshake_timeout_ms = 2000; max_message = \"64K\";
          context = true; links = ({ origin = \"a\"; destination = \"b\"; }); }; });",
    );
    let ws = c.servers[0].websocket.clone().unwrap();
    assert!(ws.direct);
    assert_eq!(ws.mode, Mode::Framed);
    assert_eq!(
        ws.endpoint_modes,
        vec![("chat".into(), Mode::Lines), ("raw".into(), Mode::SeqPacket)]
    );
    assert_eq!(ws.data_type, DataType::Auto);
    assert_eq!(ws.origin, Some(vec!["https://a.example".into(), "*".into()]));
    assert_eq!(ws.ping_interval, Some(Duration::ZERO));
    assert_eq!(ws.pong_timeout, Some(Duration::from_millis(500)));
    assert_eq!(ws.idle_timeout, Some(Duration::from_secs(60)));
    assert_eq!(ws.handshake_timeout, Some(Duration::from_secs(2)));
    assert_eq!(ws.max_message, Some(65536));
    assert!(ws.context);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        ws.links,
        vec![crate::relay::link::Link {
            origin: "a".into(),
            target: crate::relay::link::Target::Unix("b".into())
        }]
    );
    let (c, _) = load_text("servers = ({ websocket = { docroot = \"/w\"; origin = [\"a\", \"b\"]; max_message = 100; }; });");
    let ws = c.servers[0].websocket.clone().unwrap();
    assert_eq!(ws.origin, Some(vec!["a".into(), "b".into()]));
    assert_eq!(ws.max_message, Some(100));
}

#[test]
fn old_direct_mode_spelling() {
    let (c, w) =
        load_text("servers = ({ websocket = { docroot = \"/w\"; mode = \"direct\"; }; });");
    assert!(c.servers[0].websocket.as_ref().unwrap().direct);
    assert!(w[0].message.contains("old spelling"));
    let e = error("servers = ({ tls = { crtfile = \"c\"; keyfile = \"k\"; };\n websocket = { docroot = \"/w\"; mode = \"direct\"; }; });");
    assert!(e.starts_with("t.conf:2:39: direct mode cannot work over TLS"), "{e}");
}

#[test]
fn warnings_for_ignored_and_unknown() {
    let (_, w) = load_text(
        "version = \"x\";\nfoo = 1;\nservers = ({\n version = \"HTTP11\";\n cgi = { docroot = \"/c\"; };\n bar = 2;\n websocket = { docroot = \"/w\"; baz = 1; options = \"zap\"; };\n tls = { crtfile = \"c\"; pemfile = \"k\"; dhmfile = \"d\"; qux = 1; };\n});",
    );
    let got: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert!(
        got.contains(
            &"t.conf:1: ouistiti setting \"version\" is not used by wsgate (ignored)".to_owned()
        ),
        "{got:#?}"
    );
    assert!(got.contains(&"t.conf:2: unknown key \"foo\" (ignored)".to_owned()));
    assert!(got.contains(
        &"t.conf:4: ouistiti setting \"version\" is not used by wsgate (ignored)".to_owned()
    ));
    assert!(got
        .contains(&"t.conf:5: ouistiti module \"cgi\" is not part of wsgate (ignored)".to_owned()));
    assert!(got.contains(&"t.conf:6: unknown key \"bar\" in server (ignored)".to_owned()));
    assert!(got.contains(&"t.conf:7: unknown key \"baz\" in websocket (ignored)".to_owned()));
    assert!(got.contains(&"t.conf:7: unknown websocket option \"zap\" (ignored)".to_owned()));
    assert!(got.iter().any(|g| g.starts_with("t.conf:8: dhmfile is not used")));
    assert!(got.contains(&"t.conf:8: unknown key \"qux\" in tls (ignored)".to_owned()));
}

#[test]
fn document_spellings_and_lists() {
    let (c, w) = load_text(
        "servers = ({ static_file = ({ docroot = \"/a\"; options = \"range, dirlisting\"; }, { docroot = \"/b\"; });\n filestorage = { docroot = \"/c\"; }; });",
    );
    let d = c.servers[0].document.as_ref().unwrap();
    assert_eq!(d.docroot, PathBuf::from("/a"));
    assert!(d.dirlisting);
    assert_eq!(d.defaultpage, "index.html");
    let got: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert!(
        got.iter().any(|g| g.contains("only the first static_file of a list is used")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|g| g.starts_with("t.conf:2: filestorage (ouistiti's read/write")),
        "{got:?}"
    );
    assert!(got.iter().any(|g| g.contains("nothing to relay")));
}

#[test]
fn listener_overlap() {
    let s = |addr: Option<&str>, port| ServerConfig {
        hostname: None,
        port,
        addr: addr.map(|a| a.parse().unwrap()),
        maxclients: 1,
        keepalive_timeout: Duration::ZERO,
        tls: None,
        document: None,
        websocket: None,
        auth: None,
        file: PathBuf::new(),
        line: 1,
    };
    assert!(overlaps(&s(None, 80), &s(Some("::1"), 80)));
    assert!(!overlaps(&s(None, 80), &s(None, 443)));
    assert!(!overlaps(&s(None, 0), &s(None, 0)));
    assert!(overlaps(&s(Some("0.0.0.0"), 80), &s(Some("127.0.0.1"), 80)));
    assert!(!overlaps(&s(Some("0.0.0.0"), 80), &s(Some("::1"), 80)));
    assert!(overlaps(&s(Some("::"), 80), &s(Some("127.0.0.1"), 80)));
    assert!(overlaps(&s(Some("::1"), 80), &s(Some("::1"), 80)));
    assert!(!overlaps(&s(Some("::1"), 80), &s(Some("127.0.0.1"), 80)));
    assert!(overlaps(&s(Some("127.0.0.1"), 80), &s(Some("0.0.0.0"), 80)));
}

#[test]
fn render_round_trips() {
    let (c, _) = load_text(
        "user = \"u\\\"q\"; pid-file = \"/run/p\"; log-file = \"/l\"; init_d = \"/i\"; syslog = true;
         servers = ({ addr = \"::1\"; port = 8080; maxclients = 5; keepalivetimeout = 7;
           document = { docroot = \"/d\"; defaultpage = \"x.html\"; allow = \"a\"; deny = \"b\"; denylast = true; options = \"dirlisting\"; };
           websocket = { docroot = \"/w\"; options = \"direct\"; modes = { e = \"framed\"; }; origin = \"*\"; max_message = 9; idle_timeout_ms = 0; }; },
         { port = 443; tls = { crtfile = \"c\"; keyfile = \"k\"; cachain = \"ca\"; }; websocket = { docroot = \"/w2\"; }; });",
    );
    let text = render(&c);
    let (back, w) =
        load_str(&text, Path::new("rendered.conf")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(w.is_empty(), "{w:?}\n{text}");
    assert_eq!(back.without_places(), c.clone().without_places(), "{text}");
    assert!(text.contains("# ping_interval_ms = 30000; (wsgate's default)"), "{text}");
    assert!(text.contains("# addr: all interfaces"));
}

#[test]
fn render_escapes_control_characters_in_a_link_comment() {
    // The config fuzzer's input (fuzz/regressions/config/newline_in_link_destination): a
    // newline in a destination must not end the comment that shows the link's target.
    let (c, _) = load_text(
        "servers = ({ port = 8080; websocket = { docroot = \"/tmp\"; links = ({ origin = \"echo2\"; type = \"unix\"; destination = \"echo\\nnumbers = { dec = -12\\x1b\"; }); }; });",
    );
    let text = render(&c);
    assert!(text.contains(" # unix:echo\\nnumbers = { dec = -12\\u{1b}\n"), "{text}");
    let (back, _) =
        load_str(&text, Path::new("rendered.conf")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.without_places(), c.clone().without_places(), "{text}");
}

#[test]
fn compression_keys() {
    let (c, w) = load_text(
        "compression_window = 10; compression_level = 3; compression_memory = \"1M\";
         servers = ({ port = 1; websocket = { docroot = \"/w\"; compression = \"none\"; }; },
           { port = 2; websocket = { docroot = \"/v\"; compression = { chat = \"none\"; raw = \"none\"; }; }; });",
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        (c.compression_window, c.compression_level, c.compression_memory),
        (Some(10), Some(3), Some(1 << 20))
    );
    let ws = |i: usize| c.servers[i].websocket.clone().unwrap();
    assert_eq!(ws(0).compression, Some(false));
    assert_eq!(ws(1).endpoint_compression, vec![("chat".into(), false), ("raw".into(), false)]);
    // A name that is not a compression is refused at its value, whole or per endpoint.
    let e = error("servers = ({ websocket = { docroot = \"/w\"; compression = \"gzip\"; }; });");
    assert!(
        e.starts_with(
            "t.conf:1:58: compression: unknown compression \"gzip\" (permessage-deflate, none)"
        ),
        "{e}"
    );
    let e = error(
        "servers = ({ websocket = { docroot = \"/w\";\n compression = { a = \"none\"; b = \"zstd\"; }; }; });",
    );
    assert!(e.starts_with("t.conf:2:34: compression: unknown compression \"zstd\""), "{e}");
}

#[cfg(feature = "deflate")]
#[test]
fn compression_on() {
    let (c, _) = load_text(
        "servers = ({ websocket = { docroot = \"/w\"; compression = { chat = \"permessage-deflate\"; }; }; });",
    );
    let ws = c.servers[0].websocket.clone().unwrap();
    assert_eq!(ws.endpoint_compression, vec![("chat".into(), true)]);
}

/// Without the `deflate` feature, asking for permessage-deflate is an error at the setting that
/// asks, not a compression silently left off.
#[cfg(not(feature = "deflate"))]
#[test]
fn compression_without_the_feature_is_an_error_at_its_line() {
    let e = error(
        "servers = ({ websocket = { docroot = \"/w\";\n   compression = \"permessage-deflate\"; }; });",
    );
    assert!(
        e.starts_with(
            "t.conf:2:18: compression: \"permessage-deflate\": this wsgate was built without it"
        ),
        "{e}"
    );
    let e = error(
        "servers = ({ websocket = { docroot = \"/w\";\n compression = {\n chat = \"permessage-deflate\"; }; }; });",
    );
    assert!(e.starts_with("t.conf:3:9: compression: \"permessage-deflate\""), "{e}");
    // "none" says nothing the build cannot do.
    let (c, _) =
        load_text("servers = ({ websocket = { docroot = \"/w\"; compression = \"none\"; }; });");
    assert_eq!(c.servers[0].websocket.clone().unwrap().compression, Some(false));
}
