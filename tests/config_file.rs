//! The configuration corpus: every `tests/configs/good/*.conf` loads and survives
//! `render` → load; every `tests/configs/bad/*.conf` fails with the `file:line` and message
//! its first line announces (`# expect: [FILE:]LINE:substring`, FILE relative to `bad/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wsgate::config::DIRECT_COMPRESSION;
use wsgate::config_file::{load, load_str, render, ServiceConfig, Warning, DIRECT_TLS};
use wsgate::relay::acl::AccessList;
use wsgate::relay::codec::{DataType, Mode};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

fn good(name: &str) -> (ServiceConfig, Vec<Warning>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/good").join(name);
    load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_good_file_loads_and_renders_back_to_itself() {
    let files = corpus("good");
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        let (cfg, warnings) = load(&path).unwrap_or_else(|e| panic!("{e}"));
        for w in &warnings {
            assert!(
                w.to_string().starts_with(&path.parent().unwrap().display().to_string()),
                "{w}"
            );
        }
        let text = render(&cfg);
        let again = path.with_file_name("rendered.conf");
        let (back, back_warnings) =
            load_str(&text, &again).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()));
        assert!(back_warnings.is_empty(), "{}: {back_warnings:?}\n{text}", path.display());
        assert_eq!(
            back.without_places(),
            cfg.clone().without_places(),
            "{}\n{text}",
            path.display()
        );
        // Rendering is stable.
        assert_eq!(render(&cfg), text);
    }
}

#[test]
fn every_bad_file_fails_where_it_says() {
    let files = corpus("bad");
    assert!(files.len() >= 20, "{}", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no '# expect: ' line", path.display()));
        let (first, rest) = expect.split_once(':').unwrap();
        let (file, line, want) = match first.parse::<u32>() {
            Ok(line) => (path.clone(), line, rest),
            Err(_) => {
                let (line, want) = rest.split_once(':').unwrap();
                (path.with_file_name(first), line.parse().unwrap(), want)
            }
        };
        let err = match load(&path) {
            Ok(c) => panic!("{}: loaded {c:#?}", path.display()),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!((&err.file, err.line), (&file, line), "{}: got {shown}", path.display());
        assert!(err.col >= 1, "{shown}");
        assert!(
            shown.starts_with(&format!("{}:{line}:{}: ", file.display(), err.col)),
            "{}: {shown}",
            path.display()
        );
        assert!(shown.contains(want), "{}: wanted {want:?}, got {shown}", path.display());
    }
}

#[test]
fn the_sample_reads_as_documented() {
    let (c, w) = good("sample.conf");
    assert_eq!(c.user.as_deref(), Some("www-data"));
    assert_eq!(c.log_file, Some(PathBuf::from("/var/log/ouistiti.log")));
    assert_eq!(c.init_d, Some(PathBuf::from("/etc/ouistiti/init.d")));
    assert_eq!(c.pid_file, None);
    assert_eq!(c.servers.len(), 2);

    let s = &c.servers[0];
    assert_eq!(s.hostname.as_deref(), Some("www.ouistiti.local"));
    assert_eq!((s.port, s.addr, s.maxclients, s.line), (80, None, 64, 5));
    assert_eq!(s.keepalive_timeout, Duration::from_secs(90));
    assert!(s.tls.is_none());
    let d = s.document.as_ref().unwrap();
    assert_eq!(d.docroot, PathBuf::from("/srv/www/htdocs"));
    assert_eq!(d.defaultpage, "index.html");
    assert_eq!(d.access.allow, ".html,.htm,.css,.js,.txt,*");
    assert_eq!(d.access.deny, "^.htaccess,.php");
    assert!(d.dirlisting);
    let ws = s.websocket.as_ref().unwrap();
    assert_eq!(ws.docroot, PathBuf::from("/srv/www/websocket"));
    assert_eq!(ws.access, AccessList { allow: "*".into(), deny: String::new(), denylast: true });
    assert!(!ws.direct);
    assert_eq!((ws.mode, ws.data_type), (Mode::Stream, DataType::Text));

    let s = &c.servers[1];
    assert_eq!((s.port, s.line), (443, 12));
    assert!(s.document.is_none());
    let tls = &s.tls.as_ref().unwrap().files;
    assert_eq!(tls.crtfile, PathBuf::from("/etc/ouistiti/ouistiti_srv.crt"));
    assert_eq!(tls.keyfile, PathBuf::from("/etc/ouistiti/ouistiti_srv.key"));
    assert_eq!(tls.cachain, Some(PathBuf::from("/etc/ouistiti/ouistiti_ca.crt")));
    let ws = s.websocket.as_ref().unwrap();
    assert_eq!(
        ws.access,
        AccessList { allow: "echo,chat,auth".into(), deny: "*".into(), denylast: true }
    );
    assert!(ws.access.permits("/echo"));
    assert!(!ws.access.permits("/admin"));

    let shown: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0]
        .ends_with("sample.conf:9: ouistiti setting \"version\" is not used by wsgate (ignored)"));
    assert!(shown[1].ends_with("sample.conf:16: dhmfile is not used by wsgate (ignored)"));
}

#[test]
fn two_servers_one_on_ipv6_loopback() {
    let (c, w) = good("two_servers.conf");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert_eq!(c.pid_file, Some(PathBuf::from("/run/wsgate.pid")));
    let [a, b] = &c.servers[..] else { panic!("{c:?}") };
    assert_eq!(a.addr, Some("::1".parse::<IpAddr>().unwrap()));
    assert_eq!(b.addr, Some("127.0.0.1".parse::<IpAddr>().unwrap()));
    assert_eq!((a.port, b.port), (8080, 8080));
    assert_eq!((a.maxclients, b.maxclients), (16, 32));
    let ws = a.websocket.as_ref().unwrap();
    assert_eq!(ws.mode, Mode::Lines);
    assert_eq!(
        ws.endpoint_modes,
        vec![("echo".into(), Mode::Framed), ("status".into(), Mode::SeqPacket)]
    );
    assert_eq!(ws.data_type, DataType::Auto);
    assert_eq!(ws.origin, Some(vec!["http://router.lan".into(), "http://[::1]:8080".into()]));
    assert_eq!(ws.ping_interval, Some(Duration::from_secs(15)));
    assert_eq!(ws.pong_timeout, Some(Duration::from_secs(5)));
    assert_eq!(ws.idle_timeout, Some(Duration::ZERO));
    assert_eq!(ws.handshake_timeout, Some(Duration::from_secs(3)));
    assert_eq!(ws.max_message, Some(256 * 1024));
    assert!(ws.context);
    let ws = b.websocket.as_ref().unwrap();
    assert!(ws.direct);
    assert_eq!(ws.origin, Some(vec!["*".into()]));
    assert!(!ws.access.permits("/api/internal/x"));
}

#[test]
fn config_d_and_include() {
    let (c, w) = good("with_config_d.conf");
    assert_eq!(c.user.as_deref(), Some("www-data"));
    assert_eq!(c.log_file, Some(PathBuf::from("/var/log/wsgate.log")));
    let ports: Vec<u16> = c.servers.iter().map(|s| s.port).collect();
    assert_eq!(ports, [80, 8081, 443], "main file first, then config.d in name order");
    let ws = c.servers[0].websocket.as_ref().unwrap();
    assert_eq!(
        ws.access,
        AccessList { allow: "echo,chat".into(), deny: "*".into(), denylast: true }
    );
    assert_eq!(c.servers[1].websocket.as_ref().unwrap().mode, Mode::Lines);
    assert_eq!(c.servers[2].tls.as_ref().unwrap().files.keyfile, PathBuf::from("/etc/ssl/srv.key"));
    assert_eq!(c.servers[2].line, 1);
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn legacy_layout_warns_but_loads() {
    let (c, w) = good("ouistiti_legacy.conf");
    assert!(c.servers[0].websocket.as_ref().unwrap().direct);
    assert!(c.servers[0].document.as_ref().unwrap().dirlisting);
    let doc = c.servers[0].document.as_ref().unwrap();
    assert_eq!(
        (doc.access.allow.as_str(), doc.access.deny.as_str()),
        (".html,.css,*", ".htaccess,.php")
    );
    // ouistiti's read/write file store is not served, not even read-only.
    assert_eq!(c.servers[1].document, None);
    let shown: Vec<String> = w.iter().map(ToString::to_string).collect();
    let has = |s: &str| shown.iter().any(|w| w.contains(s));
    assert!(
        has(":5: ouistiti setting \"mimetypes\" is not used by wsgate (ignored)"),
        "{shown:#?}"
    );
    assert!(has(":11: ouistiti setting \"chunksize\""));
    assert!(has(":16: ouistiti module \"cgi\" is not part of wsgate (ignored)"));
    assert!(has(":17: ouistiti module \"redirect\" is not part of wsgate (ignored"));
    assert!(has(":18: mode = \"direct\" is ouistiti's old spelling"));
    assert!(has(":19: ouistiti module \"webstream\""));
    assert!(has(":24: ouistiti setting \"unlock_groups\""));
    assert!(has(":25: filestorage (ouistiti's read/write file store) is not part of wsgate"));
    // ouistiti's links, served beside the docroot (a relative socket path is found from the
    // working directory, like the file's other relative paths).
    assert!(!has(":28:"), "{shown:#?}");
    let links = &c.servers[1].websocket.as_ref().unwrap().links;
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].origin.as_str(), links[0].target.to_string().as_str()),
        ("echo2", "unix:echo")
    );
    assert!(has(":33: dhmfile is not used by wsgate (ignored)"));
}

#[test]
fn syntax_tour_loads_with_warnings_for_unknown_keys() {
    let (c, w) = good("syntax_tour.conf");
    assert_eq!(c.servers[0].hostname.as_deref(), Some("tour-example"));
    assert_eq!(c.servers[0].port, 8000);
    let shown: Vec<String> = w.iter().map(ToString::to_string).collect();
    for key in ["numbers", "strings", "nested", "flags"] {
        assert!(
            shown.iter().any(|w| w.contains(&format!("unknown key \"{key}\" (ignored)"))),
            "{shown:#?}"
        );
    }
}

#[test]
fn direct_over_tls_is_refused_with_the_reason() {
    let e = load_str(
        "servers = ({ websocket = { docroot = \"/w\"; options = \"direct\"; };\n tls = { crtfile = \"c\"; keyfile = \"k\"; }; });",
        Path::new("x.conf"),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), format!("x.conf:1:54: {DIRECT_TLS}"));
}

#[test]
fn compression_with_direct_is_refused_at_the_setting_that_turns_it_on() {
    let e = load_str(
        "servers = ({ websocket = { docroot = \"/w\"; options = \"direct\";\n compression = { a = \"none\"; b = \"permessage-deflate\"; }; }; });",
        Path::new("x.conf"),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), format!("x.conf:2:34: {DIRECT_COMPRESSION}"));
    let e = load_str(
        "servers = ({ websocket = { docroot = \"/w\"; compression = \"permessage-deflate\"; mode = \"direct\"; }; });",
        Path::new("x.conf"),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), format!("x.conf:1:58: {DIRECT_COMPRESSION}"));
    // Off everywhere, direct mode has nothing to refuse.
    let (c, _) = load_str(
        "servers = ({ websocket = { docroot = \"/w\"; options = \"direct\"; compression = { a = \"none\"; }; }; });",
        Path::new("x.conf"),
    )
    .unwrap();
    assert!(c.servers[0].websocket.as_ref().unwrap().direct);
}

#[test]
fn missing_file_names_the_file() {
    let e = load(Path::new("/nonexistent/wsgate.conf")).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/wsgate.conf: cannot read"), "{e}");
}

/// A certificate and a key of another certificate, each named on its own line of a config_d
/// file: `to_runtime` reports the unusable file at the line that names it, in that file.
#[test]
fn tls_files_are_reported_at_their_own_line() {
    let dir = std::env::temp_dir().join(format!("wsgate-cfgtls-{}", std::process::id()));
    let confd = dir.join("conf.d");
    std::fs::create_dir_all(&confd).unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a.local".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.local".into()]).unwrap();
    std::fs::write(dir.join("a.crt"), a.cert.pem()).unwrap();
    std::fs::write(dir.join("b.key"), b.key_pair.serialize_pem()).unwrap();
    let main = dir.join("main.conf");
    std::fs::write(&main, "# main\n\n\n\nconfig_d = \"conf.d\";\n").unwrap();
    let server = |key: &str| {
        format!(
            "servers = ({{\n  port = 0;\n  websocket = {{ docroot = \"/w\"; }};\n  tls = {{\n    crtfile = \"{}\";\n    keyfile = \"{}\";\n  }};\n}});\n",
            dir.join("a.crt").display(),
            dir.join(key).display()
        )
    };
    let inc = confd.join("tls.conf");
    let runtime = |key: &str| {
        std::fs::write(&inc, server(key)).unwrap();
        let (cfg, _) = wsgate::config_file::load_in(&main, &dir).unwrap();
        wsgate::config_file::to_runtime(&main, &cfg, &wsgate::config::Config::default())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let mismatch = runtime("b.key");
    assert!(
        mismatch.starts_with(&format!("{}:6:15: tls: ", inc.display())),
        "key line of the included file: {mismatch}"
    );
    assert!(mismatch.contains("does not match the certificate"), "{mismatch}");
    let absent = runtime("absent.key");
    assert!(absent.starts_with(&format!("{}:6:15: tls: ", inc.display())), "{absent}");
    std::fs::write(dir.join("a.crt"), "not a certificate").unwrap();
    let bad_cert = runtime("b.key");
    assert!(bad_cert.starts_with(&format!("{}:5:15: tls: ", inc.display())), "{bad_cert}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The service-wide flags (`--exec-limit`, `--compression-window`, `--compression-level`,
/// `--compression-memory`) hold where the file says nothing; what the file says wins.
#[test]
fn service_wide_flags_fill_what_the_file_does_not_say() {
    use wsgate::config::{Config, Deflate};
    let file = Path::new("t.conf");
    let (cfg, _) = load_str(
        "compression_level = 2;\nservers = ({ port = 0; websocket = { docroot = \"/w\"; }; });",
        file,
    )
    .unwrap();
    let base = Config {
        exec_limit: 3,
        deflate: Deflate { window_bits: 10, level: 9, memory: 1 << 20 },
        ..Config::default()
    };
    let (c, _) = wsgate::config_file::to_runtime(file, &cfg, &base).unwrap();
    assert_eq!(c.deflate, Deflate { window_bits: 10, level: 2, memory: 1 << 20 });
    assert_eq!(c.exec_limit, 3);
}
