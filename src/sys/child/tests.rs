#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;

const HEAD: &[u8] = b"GET /chat/room/1?x=1&y=2 HTTP/1.1\r\nHost: router.lan:8443\r\n\
    Origin: https://router.lan\r\nAuthorization: Basic YWRtaW46c2VjcmV0\r\nX-Forwarded-For: 10.1.1.1\r\nX_Forwarded_For: 6.6.6.6\r\n\
    Proxy: http://evil\r\nAccept: a\r\naccept: b\r\n\r\n";

fn info() -> Info<'static> {
    Info {
        peer: "[fd00::2]:51234".parse().unwrap(),
        server_port: 8443,
        path: "/chat/room/1",
        query: "x=1&y=2",
        endpoint: "chat",
        host: "router.lan:8443",
        origin: Some("https://router.lan"),
        protocol: None,
        tls: true,
        user: Some(("admin", "root")),
        cert_subject: Some("/O=Acme/CN=admin"),
    }
}

fn lines(env: &[(OsString, OsString)]) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{}={}", k.to_str().unwrap(), v.to_str().unwrap())).collect()
}

#[test]
fn cgi_env_is_websocketds_set_from_the_request() {
    let got = lines(&cgi_env(&info(), HEAD));
    let version = env!("CARGO_PKG_VERSION");
    let want = [
        "GATEWAY_INTERFACE=CGI/1.1".to_string(),
        format!("SERVER_SOFTWARE=wsgate/{version}"),
        "SERVER_PROTOCOL=HTTP/1.1".into(),
        "REQUEST_METHOD=GET".into(),
        "REMOTE_ADDR=fd00::2".into(),
        "REMOTE_HOST=fd00::2".into(),
        "REMOTE_PORT=51234".into(),
        "SERVER_NAME=router.lan".into(),
        "SERVER_PORT=8443".into(),
        "REQUEST_URI=/chat/room/1?x=1&y=2".into(),
        "QUERY_STRING=x=1&y=2".into(),
        "SCRIPT_NAME=/chat".into(),
        "PATH_INFO=/room/1".into(),
        "HTTPS=on".into(),
        "REMOTE_USER=admin".into(),
        "REMOTE_GROUPS=root".into(),
        "SSL_CLIENT_S_DN=/O=Acme/CN=admin".into(),
        "HTTP_HOST=router.lan:8443".into(),
        "HTTP_ORIGIN=https://router.lan".into(),
        "HTTP_X_FORWARDED_FOR=10.1.1.1".into(),
        "HTTP_ACCEPT=a, b".into(),
    ];
    assert_eq!(got, want);
}

#[test]
fn plain_request_without_user_query_or_path_info() {
    let head = b"GET /chat HTTP/1.1\r\nHost: r\r\n\r\n";
    let info = Info { path: "/chat", query: "", host: "r", tls: false, user: None, ..info() };
    let got = lines(&cgi_env(&info, head));
    for want in ["REQUEST_URI=/chat", "QUERY_STRING=", "PATH_INFO=", "HTTPS=off", "SERVER_NAME=r"] {
        assert!(got.iter().any(|l| l == want), "{want} not in {got:?}");
    }
    assert!(!got.iter().any(|l| l.starts_with("REMOTE_USER=")), "{got:?}");
}

#[test]
fn header_values_keep_their_bytes() {
    let head = b"GET /chat HTTP/1.1\r\nHost: r\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n";
    let env = cgi_env(&Info { user: None, ..info() }, head);
    let v = env.iter().find(|(k, _)| k == "HTTP_X_NAME").map(|(_, v)| v.as_bytes()).unwrap();
    assert_eq!(v, b"caf\xc3\xa9 \xff");
}

#[test]
fn server_name_drops_the_port_only() {
    assert_eq!(server_name("router.lan:8080"), "router.lan");
    assert_eq!(server_name("router.lan"), "router.lan");
    assert_eq!(server_name("[::1]:8080"), "[::1]");
    assert_eq!(server_name("[::1]"), "[::1]");
    assert_eq!(server_name("10.0.0.1:80"), "10.0.0.1");
}

#[test]
fn path_info_is_what_follows_the_endpoint_at_a_slash() {
    assert_eq!(split_script("/chat", "chat"), ("/chat".into(), ""));
    assert_eq!(split_script("/chat/", "chat"), ("/chat".into(), "/"));
    assert_eq!(split_script("/chat/a/b", "chat"), ("/chat".into(), "/a/b"));
    assert_eq!(split_script("/chatty", "chat"), ("/chat".into(), ""));
    assert_eq!(split_script("/other", "chat"), ("/chat".into(), ""));
}

#[test]
fn an_untracked_pid_is_never_signalled() {
    let mut r = Reaper::new(1);
    assert_eq!(r.capacity(), 1);
    // Process group 1 is init's: a reaper that signalled it would stop the machine.
    assert_eq!(r.terminate(Pid::from_raw(1), Instant::now(), Duration::ZERO), None);
    assert_eq!(r.live(), 0);
    assert_eq!(r.next_deadline(), None);
}
