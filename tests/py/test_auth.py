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

from harness import LISTEN_RE, Child, RawWS, rss_kb, build_request, gateway_bin, open_socket, read_response_head, ws_connect


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
    conn.settimeout(5)
    context = b""
    while b"\n\n" not in context:
        context += conn.recv(4096)
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
    g = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        port = int(g.wait_line(LISTEN_RE, 10).group(2))
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
        ('type = "Basic"; dbname = "DB"; options = "cookie,token";', r':3:\d+: auth: options "cookie,token" are not served'),
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
    for _ in range(5):
        assert status_of(g.port, "/echo", basic("admin", "guess"), source="127.0.0.9").status == 401
    assert status_of(g.port, "/echo", basic("admin", "guess"), source="127.0.0.9").status == 429
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

    # A warm-up at the same pace touches what the loop allocated at start (its slots and
    # buffers) as the flood will; then the baseline.
    run(1_000, 3)
    before = rss_kb(g.pid)
    answers.clear()
    run(10_000, 2)
    assert answers == {401: 10_000}, answers
    grown = rss_kb(g.pid) - before
    assert grown <= 256, f"RSS grew {grown} KiB"
    assert status_of(g.port, "/echo", basic("admin", "s3cret"), source="127.0.0.9").status == 429
    assert status_of(g.port, "/echo", basic("admin", "s3cret")).status == 101
