"""Authentication before the upgrade and before pages: HTTP Basic against the user database
(the JSON-RPC auth plugin's file), per path, with groups, the failure throttle, and the
identity handed to the backend. Python clients; the browser login comes with sessions."""

from __future__ import annotations

import base64
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from harness import LISTEN_RE, Child, RawWS, rss_kb, build_request, gateway_bin, open_socket, read_response_head, recv_until, session_token, ws_connect


def sha512_crypt(password: str, salt: str, rounds: int = 5000) -> str:
    out = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", f"rounds={rounds}${salt}" if rounds != 5000 else salt, password],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return out


@pytest.fixture
def userdb(sandbox) -> Path:
    db = sandbox / "passwd"
    db.write_text(
        f"admin:root:{sha512_crypt('s3cret', 'saltsalt')}:/root\n"
        f"ann:users:{sha512_crypt('annpw', 'annsalt1')}:/home/ann\n"
    )
    return db


def start_from_file(conf: Path, *extra: str) -> tuple[Child, int]:
    """The gateway of config file `conf`, and the port it announced."""
    g = Child([gateway_bin(), "-f", str(conf), *extra], "wsgate")
    try:
        return g, int(g.wait_line(LISTEN_RE, 10).group(2))
    except BaseException:
        g.stop()
        raise


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def status_of(port: int, path: str, headers=None, source: str = "127.0.0.1"):
    s = open_socket(port) if source == "127.0.0.1" else _socket_from(source, port)
    try:
        s.sendall(build_request(port, path, headers))
        return read_response_head(s)
    finally:
        s.close()


def _socket_from(source: str, port: int):
    import socket

    s = socket.socket()
    s.settimeout(5)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def test_basic_right_wrong_unknown_and_none(gateway, userdb, py_backend):
    b = py_backend("echo")
    g = gateway(auth_db=userdb, auth_realm="router")
    for headers in (None, basic("admin", "wrong"), basic("nobody", "s3cret"), {"Authorization": "Bearer x:y"}):
        r = status_of(g.port, "/echo", headers)
        assert r.status == 401, (headers, r.status)
        assert r.header("WWW-Authenticate") == 'Basic realm="router", charset="UTF-8"'
    assert status_of(g.port, "/echo", {"Authorization": "Basic !!!"}).status == 400
    ws = RawWS.connect(g.port, "/echo", headers=basic("admin", "s3cret"))
    assert ws.response.status == 101
    b.accept().close()
    ws.close()
    log = g.log_text()
    # Refusals name the reason; no credential reaches the log.
    assert "refused 401: authentication required" in log
    for secret in ("s3cret", "wrong", base64.b64encode(b"admin:s3cret").decode()):
        assert secret not in log


def test_an_unknown_user_and_a_wrong_password_take_the_same_time(gateway, userdb):
    g = gateway(auth_db=userdb)
    times = {"unknown": [], "wrong": []}
    for i in range(8):
        # From a different address each time, so that the throttle never steps in.
        for kind, h in (("unknown", basic("nobody", "x")), ("wrong", basic("admin", "x"))):
            start = time.perf_counter()
            assert status_of(g.port, "/echo", h, source=f"127.0.{i + 1}.{1 if kind == 'wrong' else 2}").status == 401
            times[kind].append(time.perf_counter() - start)
    unknown, wrong = statistics.median(times["unknown"]), statistics.median(times["wrong"])
    # Both cost one SHA-512-crypt (milliseconds); a lookup alone would take microseconds.
    assert 0.5 < unknown / wrong < 2, (unknown, wrong)


def test_groups_protect_and_unprotect(gateway, userdb, py_backend):
    py_backend("echo")
    py_backend("public")
    g = gateway(auth_db=userdb, auth_require="root,admins", auth_unprotect="^/public$")
    assert status_of(g.port, "/echo", basic("ann", "annpw")).status == 403
    assert status_of(g.port, "/echo", basic("admin", "s3cret")).status == 101
    assert status_of(g.port, "/public").status == 101
    g.wait_line(r'auth: user "ann" not in an allowed group')


def test_the_throttle_refuses_a_guessing_network_and_not_others(gateway, userdb, py_backend):
    py_backend("echo")
    g = gateway(auth_db=userdb)
    for _ in range(5):
        assert status_of(g.port, "/echo", basic("admin", "guess"), source="127.0.0.9").status == 401
    r = status_of(g.port, "/echo", basic("admin", "s3cret"), source="127.0.0.9")
    assert r.status == 429
    assert r.header("Retry-After") == "12"
    g.wait_line(r"refused 429: too many failed logins")
    # Another network, and the same user, are not touched.
    assert status_of(g.port, "/echo", basic("admin", "s3cret"), source="127.0.0.10").status == 101


def test_the_backend_and_a_program_learn_who_the_user_is(gateway, userdb, py_backend, sandbox):
    b = py_backend("echo")
    prog = sandbox / "who.sh"
    prog.write_text('#!/bin/sh\necho "$REMOTE_USER/$REMOTE_GROUPS/${HTTP_AUTHORIZATION-none}"\n')
    prog.chmod(0o755)
    g = gateway(auth_db=userdb, context=True)
    ws = RawWS.connect(g.port, "/echo", headers=basic("ann", "annpw"))
    conn = b.accept()
    context = recv_until(conn, b"\n\n")
    assert b"REMOTE_USER=ann\nREMOTE_GROUPS=users\n" in context
    conn.close()
    ws.close()
    g = gateway(auth_db=userdb, link=[f"who=exec:{prog}"])
    ws = RawWS.connect(g.port, "/who", headers=basic("admin", "s3cret"))
    kind, data = ws.recv_message(timeout=5)
    # The program gets the user, never the credential.
    assert data == b"admin/root/none\n"
    ws.close()


def test_pages_are_protected_in_both_spellings_of_a_directory(gateway, userdb, sandbox):
    htdocs = sandbox / "htdocs"
    (htdocs / "admin").mkdir(parents=True)
    (htdocs / "admin" / "index.html").write_text("admin page")
    (htdocs / "index.html").write_text("public page")
    g = gateway(auth_db=userdb, auth_protect="^/admin/*", htdocs=htdocs)

    def get(path, headers=None):
        import http.client

        c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=5)
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    assert get("/") == (200, b"public page")
    assert get("/admin/")[0] == 401
    assert get("/admin")[0] == 401
    assert get("/admin/", basic("admin", "s3cret")) == (200, b"admin page")


def test_the_database_is_read_again_when_it_changes(gateway, userdb, py_backend):
    py_backend("echo")
    g = gateway(auth_db=userdb)
    assert status_of(g.port, "/echo", basic("bob", "bobpw")).status == 401
    time.sleep(0.01)
    with userdb.open("a") as f:
        f.write(f"bob:users:{sha512_crypt('bobpw', 'bobsalt1')}:/home/bob\n")
    assert status_of(g.port, "/echo", basic("bob", "bobpw")).status == 101
    g.wait_line(r"user database .* read again")


def test_auth_from_an_ouistiti_config_file(tmp_path, docroot, userdb, py_backend):
    py_backend("echo")
    conf = tmp_path / "auth.conf"
    conf.write_text(
        f"""servers = ({{
    port = 0; addr = "127.0.0.1";
    auth = {{ type = "Basic"; dbname = "{userdb}"; realm = "Router"; unprotect = "^/open$"; require = "root"; signin = "/signin.html"; }};
    websocket = {{ docroot = "{docroot}"; }};
}});
"""
    )
    check = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert f'dbname = "{userdb}";' in check.stdout and 'require = "root";' in check.stdout
    assert '"signin" is not used by wsgate' in check.stderr
    g, port = start_from_file(conf)
    try:
        r = status_of(port, "/echo")
        assert r.status == 401 and r.header("WWW-Authenticate").startswith('Basic realm="Router"')
        assert status_of(port, "/echo", basic("ann", "annpw")).status == 403
        assert status_of(port, "/echo", basic("admin", "s3cret")).status == 101
    finally:
        g.stop()


@pytest.mark.parametrize(
    "auth, message",
    [
        ('type = "Digest"; dbname = "DB";', r':3:\d+: auth: type "Digest" is not served by wsgate'),
        ('type = "Basic"; dbname = "DB"; options = "cookie,token";', r':3:\d+: auth: options "cookie,token" are not read'),
        ('type = "Basic"; file = "shadow";', r':3:\d+: auth: file: wsgate reads the user database'),
        ('type = "Basic"; realm = "x";', r':3:\d+: auth: expected "dbname"'),
        ('type = "Basic"; dbname = "DB"; realm = "a\\"b";', r':3:\d+: auth: auth realm'),
    ],
)
def test_auth_wsgate_cannot_honour_is_a_config_error_at_its_line(tmp_path, docroot, userdb, auth, message):
    import re

    conf = tmp_path / "bad.conf"
    conf.write_text(
        f"""servers = ({{
    port = 8080;
    auth = {{ {auth.replace("DB", str(userdb))} }};
    websocket = {{ docroot = "{docroot}"; }};
}});
"""
    )
    r = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert re.search(message, r.stderr), r.stderr


def test_a_missing_user_database_stops_the_start(docroot, sandbox):
    r = subprocess.run(
        [gateway_bin(), "-R", str(docroot), "-p", "0", "--auth-db", str(sandbox / "none")],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode != 0
    assert "user database" in r.stderr and "none" in r.stderr
    r = subprocess.run(
        [gateway_bin(), "-R", str(docroot), "-p", "0", "--auth-require", "root"],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 2 and "--auth-db" in r.stderr


def test_a_flood_of_bad_logins_from_many_networks(gateway, sandbox, py_backend):
    """10,000 failed logins from 5,000 addresses: every one is answered, the throttle keeps
    refusing the network that guessed first, memory stays where it was, and the user still
    logs in."""
    import threading

    py_backend("echo")
    db = sandbox / "passwd"
    # The lowest cost the database accepts: the flood is about the table, not the hash.
    db.write_text(f"admin:root:{sha512_crypt('s3cret', 'floodsal', rounds=1000)}:/root\n")
    g = gateway(auth_db=db, c=256)
    answers: dict[int, int] = {}
    lock = threading.Lock()

    def flood(worker: int, total: int, net: int):
        for n in range(worker, total, 8):
            addr = n // 2
            source = f"127.{net}.{addr // 250}.{addr % 250 + 1}"
            status = status_of(g.port, "/echo", basic("admin", f"guess{n}"), source=source).status
            with lock:
                answers[status] = answers.get(status, 0) + 1

    def run(total: int, net: int):
        threads = [threading.Thread(target=flood, args=(w, total, net)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # A warm-up of the same size and pace touches what the loop allocated at start as the flood
    # will: slots and buffers become resident on first use, as many as the most connections
    # open at once, so a shorter warm-up can leave the flood's peak to touch more of them.
    run(10_000, 3)
    # The network that guessed first, just before the flood: its throttle must hold through it.
    for _ in range(5):
        assert status_of(g.port, "/echo", basic("admin", "guess"), source="127.0.0.9").status == 401
    assert status_of(g.port, "/echo", basic("admin", "guess"), source="127.0.0.9").status == 429
    before = rss_kb(g.pid)
    answers.clear()
    run(10_000, 2)
    assert answers == {401: 10_000}, answers
    grown = rss_kb(g.pid) - before
    assert grown <= 256, f"RSS grew {grown} KiB"
    assert status_of(g.port, "/echo", basic("admin", "s3cret"), source="127.0.0.9").status == 429
    assert status_of(g.port, "/echo", basic("admin", "s3cret")).status == 101


# ---- sessions: the login endpoint, the cookie, Bearer tokens -------------------------------


def http(port: int, method: str, path: str, body: str | bytes | None = None, headers=None):
    """One request with http.client; the status, the response headers and the body."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def login_json(port: int, user: str, password: str, **extra):
    import json

    body = json.dumps({"user": user, "password": password, **extra})
    return http(port, "POST", "/session/login", body, {"Content-Type": "application/json"})


def session_cookie(headers) -> str:
    value = headers["Set-Cookie"].split(";")[0]
    assert value.startswith("wsgate_session=")
    return value


def test_a_login_gives_a_session_cookie_that_opens_protected_endpoints(gateway, userdb, py_backend, sandbox):
    import json

    b = py_backend("echo")
    key = sandbox / "session.key"
    g = gateway(auth_db=userdb, auth_session_key=key, context=True)
    # The key is made at the first start, for the owner only.
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text()) == 65
    assert status_of(g.port, "/echo").status == 401

    # A form: 303 to its local `next`, the cookie with every attribute (no Secure without TLS).
    status, headers, _ = http(g.port, "POST", "/session/login", "user=admin&password=s3cret&next=%2Fwebauth.html",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["Location"] == "/webauth.html"
    attrs = [a.strip() for a in headers["Set-Cookie"].split(";")]
    assert attrs[1:] == ["Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Strict"], attrs
    assert headers["Cache-Control"] == "no-store"
    cookie = session_cookie(headers)
    # Another site's address as `next` is not followed.
    status, headers, _ = http(g.port, "POST", "/session/login", "user=admin&password=s3cret&next=//evil.example/",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["Location"] == "/"

    # The cookie opens the WebSocket, and the backend learns the user.
    ws = RawWS.connect(g.port, "/echo", headers={"Cookie": f"theme=dark; {cookie}"})
    assert ws.response.status == 101
    conn = b.accept()
    context = recv_until(conn, b"\n\n")
    assert b"REMOTE_USER=admin\nREMOTE_GROUPS=root\n" in context
    conn.close()
    ws.close()
    status, _, body = http(g.port, "GET", "/session", headers={"Cookie": cookie})
    assert (status, json.loads(body)) == (200, {"user": "admin", "group": "root"})

    # JSON: the token only when asked for, and it works as Bearer.
    status, headers, body = login_json(g.port, "ann", "annpw")
    assert status == 200 and "token" not in json.loads(body)
    status, headers, body = login_json(g.port, "ann", "annpw", token=True)
    answer = json.loads(body)
    assert status == 200 and answer["user"] == "ann" and answer["group"] == "users"
    assert abs(answer["expires"] - time.time() - 3600) < 60
    assert session_cookie(headers) == f"wsgate_session={answer['token']}"
    ws = RawWS.connect(g.port, "/echo", headers={"Authorization": f"Bearer {answer['token']}"})
    assert ws.response.status == 101
    b.accept().close()
    ws.close()

    # Logout clears the cookie.
    status, headers, _ = http(g.port, "POST", "/session/logout", b"", {"Cookie": cookie})
    assert status == 200 and headers["Set-Cookie"].startswith("wsgate_session=; Path=/; Max-Age=0;")
    log = g.log_text()
    assert 'login: user "admin" (group "root")' in log
    for secret in ("s3cret", "annpw", cookie.split("=", 1)[1], answer["token"]):
        assert secret not in log


def test_sessions_that_do_not_open(gateway, userdb, py_backend, sandbox):
    py_backend("echo")
    key = sandbox / "session.key"
    g = gateway(auth_db=userdb, auth_session_key=key, auth_require="root")
    # A wrong password: 401 with the cookie challenge (no browser password dialog).
    status, headers, _ = login_json(g.port, "admin", "wrong")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Cookie realm="wsgate", form-action="/session/login"')
    # A user outside the required groups gets no session.
    assert login_json(g.port, "ann", "annpw")[0] == 403
    now = int(time.time())
    good = session_token(key, "admin", "root", now + 600)
    assert status_of(g.port, "/echo", {"Cookie": f"wsgate_session={good}"}).status == 101
    for token, want in [
        (session_token(key, "admin", "root", now - 1), 401),  # expired
        (good.replace(":root:", ":users:"), 401),  # edited: the MAC no longer matches
        (good[:-1] + ("0" if good[-1] != "0" else "1"), 401),
        ("admin:root:99999999999:" + "0" * 64, 401),  # another key
        (session_token(key, "ann", "users", now + 600), 403),  # signed, but the policy does not admit users
    ]:
        assert status_of(g.port, "/echo", {"Cookie": f"wsgate_session={token}"}).status == want, token
        assert status_of(g.port, "/echo", {"Authorization": f"Bearer {token}"}).status == want, token
    # Two cookies of the name: neither is believed.
    assert status_of(g.port, "/echo", {"Cookie": f"wsgate_session={good}; wsgate_session=x"}).status == 401
    # Bodies and methods the endpoint does not take.
    assert http(g.port, "GET", "/session/login")[0] == 405
    assert http(g.port, "GET", "/session/login")[1]["Allow"] == "POST"
    assert http(g.port, "POST", "/session/login", "x", {"Content-Type": "text/plain"})[0] == 415
    assert http(g.port, "POST", "/session/login", "{", {"Content-Type": "application/json"})[0] == 400
    assert http(g.port, "POST", "/session/login", "u" * 3000, {"Content-Type": "application/json"})[0] == 413


def test_the_origin_policy_applies_to_logins_and_to_cookie_upgrades(gateway, userdb, py_backend, sandbox):
    py_backend("echo")
    key = sandbox / "session.key"
    g = gateway(auth_db=userdb, auth_session_key=key)
    evil = {"Origin": "http://evil.example", "Content-Type": "application/json"}
    body = '{"user":"admin","password":"s3cret"}'
    assert http(g.port, "POST", "/session/login", body, evil)[0] == 403
    own = {"Origin": f"http://127.0.0.1:{g.port}", "Content-Type": "application/json"}
    status, headers, _ = http(g.port, "POST", "/session/login", body, own)
    assert status == 200
    cookie = session_cookie(headers)
    # The browser sends the cookie with another site's page's WebSocket: refused all the same.
    r = status_of(g.port, "/echo", {"Cookie": cookie, "Origin": "http://evil.example"})
    assert r.status == 403
    assert status_of(g.port, "/echo", {"Cookie": cookie, "Origin": f"http://127.0.0.1:{g.port}"}).status == 101
    g.wait_line(r"Origin .*evil.example.* refused .* at the session endpoint")


def test_a_rotated_key_ends_every_session(gateway, userdb, py_backend, sandbox):
    py_backend("echo")
    key = sandbox / "session.key"
    g = gateway(auth_db=userdb, auth_session_key=key)
    cookie = session_cookie(login_json(g.port, "admin", "s3cret")[1])
    assert status_of(g.port, "/echo", {"Cookie": cookie}).status == 101
    out = subprocess.run([gateway_bin(), "--rotate-session-key", str(key)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    assert status_of(g.port, "/echo", {"Cookie": cookie}).status == 401
    g.wait_line(r"session key read again")
    cookie = session_cookie(login_json(g.port, "admin", "s3cret")[1])
    assert status_of(g.port, "/echo", {"Cookie": cookie}).status == 101


def test_a_session_key_others_may_read_is_refused_at_start(userdb, docroot, sandbox):
    key = sandbox / "session.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o644)
    args = [gateway_bin(), "-p", "0", "-R", str(docroot), "--auth-db", str(userdb), "--auth-session-key", str(key)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert "mode 0644: others than its owner may read it" in out.stderr
    check = subprocess.run(args + ["--check"], capture_output=True, text=True, timeout=10)
    assert check.returncode == 2 and "mode 0644" in check.stderr
    key.chmod(0o600)
    assert subprocess.run(args + ["--check"], capture_output=True, text=True, timeout=10).returncode == 0


def test_sessions_from_an_ouistiti_config_file(tmp_path, docroot, userdb, py_backend, sandbox):
    py_backend("echo")
    key = sandbox / "k"
    conf = tmp_path / "auth.conf"
    conf.write_text(
        f"""servers = ({{
    port = 0; addr = "127.0.0.1";
    auth = {{ type = "Basic"; dbname = "{userdb}"; session_key = "{key}"; session_path = "/auth/s"; expire = 120; }};
    websocket = {{ docroot = "{docroot}"; }};
}});
"""
    )
    check = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert f'session_key = "{key}";' in check.stdout and 'session_path = "/auth/s";' in check.stdout
    assert "expire = 120;" in check.stdout
    g, port = start_from_file(conf)
    try:
        status, headers, _ = http(port, "POST", "/auth/s/login", '{"user":"admin","password":"s3cret"}',
                                  {"Content-Type": "application/json"})
        assert status == 200 and "Max-Age=120;" in headers["Set-Cookie"]
        assert status_of(port, "/echo", {"Cookie": session_cookie(headers)}).status == 101
    finally:
        g.stop()
    conf.write_text(conf.read_text().replace(f'session_key = "{key}"; ', ""))
    bad = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "session_path needs session_key" in bad.stderr
    assert f"{conf}:3:" in bad.stderr


def test_open_paths_tell_the_backend_of_a_session_and_only_the_named_endpoints_get_context(
        tmp_path, docroot, userdb, py_backend, sandbox):
    """On a path that needs no login, a valid session still reaches the backend (Basic is not
    looked at there); `context = "PATTERN"` sends the context to the endpoints it names only."""
    open_b, quiet = py_backend("open"), py_backend("quiet")
    key = sandbox / "session.key"
    conf = tmp_path / "wsgate.conf"
    conf.write_text(
        f"""servers = ({{
    port = 0; addr = "127.0.0.1";
    auth = {{ type = "Basic"; dbname = "{userdb}"; session_key = "{key}"; protect = "^/private$"; }};
    websocket = {{ docroot = "{docroot}"; context = "^/open$"; }};
}});
"""
    )
    g, port = start_from_file(conf, "-v")
    try:
        cookie = session_cookie(login_json(port, "ann", "annpw")[1])
        for headers, user in [({"Cookie": cookie}, b"REMOTE_USER=ann\n"), (None, None),
                              ({"Cookie": "wsgate_session=ann:users:99999999999:" + "0" * 64}, None),
                              (basic("admin", "s3cret"), None)]:
            ws = RawWS.connect(port, "/open", headers=headers)
            assert ws.response.status == 101, headers
            context = recv_until(open_b.accept(), b"\n\n")
            assert b"REQUEST_URI=/open" in context or b"/open" in context, context
            if user:
                assert user in context, context
            else:
                assert b"REMOTE_USER" not in context, (headers, context)
            ws.close()
        # No hash was computed for the Basic header on the open path.
        assert 'user "admin"' not in g.log_text()
        # The endpoint the pattern does not name gets its client's bytes only.
        ws = RawWS.connect(port, "/quiet", headers={"Cookie": cookie})
        assert ws.response.status == 101
        conn = quiet.accept()
        ws.send_frame(0x1, b"first")
        conn.settimeout(5)
        assert conn.recv(4096) == b"first"
        ws.close()
    finally:
        g.stop()


def test_endpoints_with_groups_of_their_own(tmp_path, docroot, userdb, py_backend):
    """`rules`: each names paths that need a login and the groups that open them there; the
    other paths keep `protect` and `require`. From the file and from --auth-rule."""
    for name in ("chat", "admin", "open"):
        py_backend(name)
    conf = tmp_path / "wsgate.conf"
    conf.write_text(
        f"""servers = ({{
    port = 0; addr = "127.0.0.1";
    auth = {{ type = "Basic"; dbname = "{userdb}"; protect = "^/chat$";
             rules = ( {{ path = "^/admin$"; require = "root"; }} ); }};
    websocket = {{ docroot = "{docroot}"; }};
}});
"""
    )
    check = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert 'rules = ( { path = "^/admin$"; require = "root"; } );' in check.stdout
    # What --check prints reads back as the same configuration.
    again = tmp_path / "again.conf"
    again.write_text(check.stdout)
    assert subprocess.run([gateway_bin(), "--check", "-f", str(again)], capture_output=True, text=True,
                          timeout=10).stdout == check.stdout.replace(str(conf), str(again))
    g, port = start_from_file(conf)
    try:
        assert status_of(port, "/open").status == 101
        assert status_of(port, "/chat").status == 401
        assert status_of(port, "/chat", basic("ann", "annpw")).status == 101
        assert status_of(port, "/admin").status == 401
        assert status_of(port, "/admin", basic("ann", "annpw")).status == 403
        assert status_of(port, "/admin", basic("admin", "s3cret")).status == 101
    finally:
        g.stop()
    # The same from the command line.
    g = Child([gateway_bin(), "-p", "0", "-R", str(docroot), "--auth-db", str(userdb), "--auth-protect", "^/chat$",
               "--auth-rule", "^/admin$=root"], "wsgate")
    try:
        port = int(g.wait_line(LISTEN_RE, 10).group(2))
        assert status_of(port, "/admin", basic("ann", "annpw")).status == 403
        assert status_of(port, "/admin", basic("admin", "s3cret")).status == 101
        assert status_of(port, "/chat", basic("ann", "annpw")).status == 101
    finally:
        g.stop()
    conf.write_text(conf.read_text().replace('rules = (', 'certificate = { subject = "^/CN=*"; }; rules = ('))
    bad = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "client certificates need a TLS listener with client_ca" in bad.stderr
