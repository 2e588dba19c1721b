"""The control socket (`wsgate status`, `wsgate drop`) and the metrics page, against a running
gateway with real clients: connections in every state, a close code delivered by `drop`, the
metrics read by Prometheus' own text parser (prometheus_client), the socket's mode and owner,
and a status of hundreds of connections requested in a loop while a relay load runs."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from harness import (
    Child,
    proc_kb,
    RawWS,
    build_request,
    gateway_bin,
    open_socket,
    read_response_head,
    wsload_bin,
)
from prometheus_client.parser import text_string_to_metric_families
from test_auth import basic, userdb  # noqa: F401 (userdb: a fixture, admin in root, ann in users)
from test_tls import client_context, pki, wss  # noqa: F401 (pki: a fixture)


def ctl(sock, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([gateway_bin(), *args, "--control", str(sock)], capture_output=True,
                       text=True, timeout=30)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def status(sock) -> dict:
    return json.loads(ctl(sock, "status", "--json").stdout)


def conn_of(st: dict, **match) -> dict:
    rows = [c for c in st["connections"] if all(c.get(k) == v for k, v in match.items())]
    assert len(rows) == 1, (match, st["connections"])
    return rows[0]


def wait_for(pred, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


@pytest.fixture
def site(sandbox, gateway, echo_backend):
    htdocs = sandbox / "htdocs"
    htdocs.mkdir()
    (htdocs / "index.html").write_text("<h1>router</h1>\n")
    echo_backend(mode="framed")
    sock = sandbox / "ctl.sock"
    g = gateway(m="framed", htdocs=htdocs, control=sock, metrics="/metrics", ping_interval="0")
    return g, sock


def test_status_shows_connections_in_every_state(site, raw):
    g, sock = site
    open_ = raw(g.port)
    open_.send_frame(0x1, b"hi")
    assert open_.recv_message()[1] == b"hi"
    # Half a request: handshaking.
    half = open_socket(g.port)
    half.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    # A page, kept alive for the next request.
    page = open_socket(g.port)
    page.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = read_response_head(page)
    assert resp.status == 200
    # Dropped, and not answering the close frame: closing.
    closing = raw(g.port)
    st = status(sock)
    cid = conn_of(st, state="open", msgs_up=0)["id"]
    ctl(sock, "drop", cid, "4001")
    assert closing.recv_frame().close_code == 4001

    st = wait_for(lambda: (s := status(sock)) and any(c["state"] == "closing" for c in s["connections"]) and s)
    assert st, status(sock)
    peer = "127.0.0.1:%d"
    o = conn_of(st, peer=peer % open_.sock.getsockname()[1])
    assert (o["state"], o["path"], o["backend"], o["mode"], o["tls"], o["user"]) == \
        ("open", "echo", "unix", "framed", False, None)
    assert o["msgs_up"] == 1 and o["frames_down"] == 1 and o["bytes_in"] > 0 and o["bytes_out"] > 0
    h = conn_of(st, peer=peer % half.getsockname()[1])
    assert (h["state"], h["path"], h["backend"]) == ("handshake", "", "-")
    p = conn_of(st, peer=peer % page.getsockname()[1])
    assert (p["state"], p["path"]) == ("handshake", "index.html")
    c = conn_of(st, peer=peer % closing.sock.getsockname()[1])
    assert c["state"] == "closing"
    again = ctl(sock, "drop", c["id"], check=False)
    assert again.returncode == 1 and "closing already" in again.stderr
    assert st["slots"]["used"] == 4 and st["dropped"] == 1
    (lst,) = st["listeners"]
    assert lst["listen"] == f"127.0.0.1:{g.port}" and lst["scheme"] == "ws"
    assert lst["accepted"] == 4 and lst["upgraded"] == 2 and lst["pages"] == 1 and lst["live"] == 4
    (ep,) = st["endpoints"]
    assert (ep["name"], ep["open"], ep["opened"]) == ("echo", 2, 2)

    text = ctl(sock, "status").stdout
    assert text.startswith("wsgate ") and f"listener 127.0.0.1:{g.port} ws: live 4 of 64" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("conn ")]
    assert len(lines) == 4
    assert any(f"conn {o['id']} " in ln and " path /echo backend unix mode framed state open " in ln
               for ln in lines), lines
    assert any(" path / backend - mode - state handshake " in ln for ln in lines), lines
    half.close()
    page.close()


def test_refusals_and_closes_are_counted_by_reason(site, raw):
    g, sock = site
    for path in ("/nope", "/nope2"):
        s = open_socket(g.port)
        s.sendall(build_request(g.port, path))
        assert read_response_head(s).status == 404
        s.close()
    c = raw(g.port)
    c.send_close(1000)
    c.wait_close(reply=False)
    st = wait_for(lambda: (s := status(sock)) and s["closes"] and s)
    assert {"status": 404, "reason": "backend", "count": 2} in st["refusals"], st
    assert {"code": 1000, "reason": "client_close", "count": 1} in st["closes"], st
    assert st["listeners"][0]["refused"] == 2
    text = ctl(sock, "status").stdout
    assert "refused 404 backend: 2" in text and "closed 1000 client_close: 1" in text


def test_drop_answers_errors_and_closes_a_handshake_at_once(site):
    g, sock = site
    r = ctl(sock, "drop", "999:1", check=False)
    assert r.returncode == 1 and "no such connection" in r.stderr
    r = ctl(sock, "drop", "x", check=False)
    assert r.returncode == 1 and "INDEX:GENERATION" in r.stderr
    r = ctl(sock, "drop", "1:1", "1005", check=False)
    assert r.returncode == 1 and "close code" in r.stderr
    r = subprocess.run([gateway_bin(), "drop"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    half = open_socket(g.port)
    half.sendall(b"GET /echo HTTP/1.1\r\n")
    cid = wait_for(lambda: status(sock)["connections"])[0]["id"]
    assert ctl(sock, "drop", cid).stdout == f"dropped {cid} with 1000\n"
    half.settimeout(5)
    assert half.recv(100) == b""
    g.wait_line(rf"conn={cid} peer=\S+ dropped with 1000 by the control socket")
    g.wait_line(rf"conn={cid} peer=\S+ close / dropped by the operator \(1000\)")


def test_a_wss_connection_is_shown_as_tls_with_its_user(gateway, echo_backend, pki, sandbox,  # noqa: F811
                                                         userdb):  # noqa: F811
    echo_backend(mode="framed")
    sock = sandbox / "ctl.sock"
    g = gateway(m="framed", tls_cert=str(pki / "server.crt"), tls_key=str(pki / "server.key"),
                control=sock, auth_db=userdb)
    c = wss(g, pki, additional_headers=basic("ann", "annpw"))
    c.send("x")
    assert c.recv(timeout=5) == "x"
    st = status(sock)
    row = conn_of(st, state="open")
    assert (row["tls"], row["user"], row["path"]) == (True, "ann", "echo")
    assert st["listeners"][0]["scheme"] == "wss"
    assert " tls yes user ann " in ctl(sock, "status").stdout
    c.close()
    # TLS sessions: a new one, then one resumed from its ticket, counted as their connections end.
    ctx = client_context(pki)
    session = None
    for _ in range(2):
        raw_sock = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        with ctx.wrap_socket(raw_sock, server_hostname="localhost", session=session) as t:
            t.sendall(build_request(g.port, "/nope", basic("ann", "annpw")))
            assert read_response_head(t).status == 404
            session, reused = t.session, t.session_reused
    assert reused
    lst = wait_for(lambda: (l := status(sock)["listeners"][0]) and l["closed"] == 3 and l)
    assert (lst["tls_full"], lst["tls_resumed"]) == (2, 1), lst


def metrics(port: int, headers=None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_with_prometheus_client(site, raw):
    g, sock = site
    c = raw(g.port)
    c.send_frame(0x1, b"hello")
    c.recv_message()
    s = open_socket(g.port)
    s.sendall(build_request(g.port, "/missing"))
    assert read_response_head(s).status == 404
    c.send_close(1000)
    c.wait_close(reply=False)
    wait_for(lambda: status(sock)["closes"])
    code, text = metrics(g.port)
    assert code == 200
    m = samples(text)
    listener = (("listener", f"127.0.0.1:{g.port}"),)
    assert m[("wsgate_accepted_total", listener)] == 3
    assert m[("wsgate_upgraded_total", listener)] == 1
    assert m[("wsgate_refused_total", listener)] == 1
    # The scrape itself is a connection in a slot.
    assert m[("wsgate_connections", listener)] == 1
    assert m[("wsgate_endpoint_opened_total", (("endpoint", "echo"),))] == 1
    assert m[("wsgate_endpoint_messages_up_total", (("endpoint", "echo"),))] == 1
    assert m[("wsgate_endpoint_received_bytes_total", (("endpoint", "echo"),))] > 0
    assert m[("wsgate_refusals_total", (("reason", "backend"), ("status", "404")))] == 1
    assert m[("wsgate_closes_total", (("code", "1000"), ("reason", "client_close")))] == 1
    assert m[("wsgate_slots", ())] == status(sock)["slots"]["capacity"]
    assert m[("wsgate_slots_used", ())] == 1
    assert m[("wsgate_pages_total", listener)] == 0
    assert samples(metrics(g.port)[1])[("wsgate_pages_total", listener)] == 1


def test_metrics_are_behind_allow_deny_and_authentication(gateway, echo_backend, userdb):  # noqa: F811
    g = gateway(metrics="/metrics", deny="^/metrics")
    assert metrics(g.port)[0] == 403
    g = gateway(metrics="/metrics", auth_db=userdb, auth_require="root")
    assert metrics(g.port)[0] == 401
    assert metrics(g.port, basic("ann", "annpw"))[0] == 403
    code, text = metrics(g.port, basic("admin", "s3cret"))
    assert code == 200 and samples(text)
    # Without a document root, the metrics page is the only page.
    s = open_socket(g.port)
    s.sendall(build_request(g.port, "/other", basic("admin", "s3cret")))
    assert read_response_head(s).status == 404
    # No metrics path: no metrics.
    g = gateway()
    s = open_socket(g.port)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response_head(s).status != 200


def test_the_socket_is_0600_owned_by_the_service_user_and_replaced_when_stale(gateway, sandbox):
    sock = sandbox / "ctl.sock"
    os.chmod(sandbox, 0o755)
    nobody = pwd.getpwnam("nobody")
    g = gateway(control=sock, user="nobody")
    st = os.stat(sock)
    assert st.st_mode & 0o777 == 0o600
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert status(sock)["slots"]["used"] == 0
    # Another gateway on the same socket: refused at start, the first one keeps it.
    second = Child([gateway_bin(), "-a", "127.0.0.1", "-p", "0", "-R", str(sandbox / "www"),
                    "--control", str(sock)], "wsgate")
    second.wait_line("a running gateway answers there")
    assert second.proc.wait(10) == 1
    assert status(sock)["slots"]["used"] == 0
    g.expected_exit = True
    g.stop()
    # Stale: a socket file that nobody answers is replaced.
    stale = socket.socket(socket.AF_UNIX)
    if sock.exists():
        sock.unlink()
    stale.bind(str(sock))
    stale.close()
    g = gateway(control=sock)
    assert status(sock)["slots"]["capacity"] > 0
    g.expected_exit = True
    g.stop()
    assert not sock.exists()
    # A file that is not a socket is never removed.
    sock.write_text("keep")
    bad = Child([gateway_bin(), "-a", "127.0.0.1", "-p", "0", "-R", str(sandbox / "www"),
                 "--control", str(sock)], "wsgate")
    bad.wait_line("exists and is not a socket")
    assert bad.proc.wait(10) == 1 and sock.read_text() == "keep"


def test_control_from_the_config_file(sandbox, docroot):
    sock = sandbox / "c.sock"
    conf = sandbox / "wsgate.conf"
    conf.write_text(f"""control = "{sock}";
servers = ({{ port = 0; addr = "127.0.0.1"; websocket = {{ docroot = "{docroot}"; metrics = "/m"; }}; }});
""")
    check = subprocess.run([gateway_bin(), "-f", str(conf), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert f'control = "{sock}";' in check.stdout and 'metrics = "/m";' in check.stdout
    g = Child([gateway_bin(), "-f", str(conf)], "wsgate")
    try:
        g.wait_line(r"listening on")
        r = subprocess.run([gateway_bin(), "status", "-f", str(conf), "--json"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and json.loads(r.stdout)["slots"]["used"] == 0
    finally:
        g.stop()
    conf.write_text(conf.read_text().replace('"/m"', '"m"'))
    check = subprocess.run([gateway_bin(), "-f", str(conf), "--check"], capture_output=True, text=True)
    assert check.returncode == 2 and "metrics" in check.stderr


def test_a_status_of_800_connections_during_a_relay_load(echo_backend, gateway, sandbox):
    """Four clients ask for the status of 800 idle connections over and over while wsload
    relays ping-pong messages; every report is complete, valid JSON, and the relay's latency
    stays within a bound of the same load without them."""
    echo_backend(mode="framed", extra=("-c", "1000"))
    sock = sandbox / "ctl.sock"
    g = gateway(m="framed", control=sock, c=900, ping_interval="0")
    idle = []
    for _ in range(800):
        s = socket.create_connection(("127.0.0.1", g.port))
        s.sendall(build_request(g.port, "/echo"))
        idle.append(s)
    for s in idle:
        assert read_response_head(s).status == 101
    assert status(sock)["slots"]["used"] == 800

    def load() -> dict:
        r = subprocess.run([wsload_bin(), "--url", f"ws://127.0.0.1:{g.port}/echo", "--conns", "20",
                            "--size", "32", "--duration", "3"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    quiet = load()
    assert quiet["error_total"] == 0 and quiet["completed"] > 1000, quiet

    def ask_raw() -> socket.socket:
        c = socket.socket(socket.AF_UNIX)
        c.connect(str(sock))
        try:
            c.sendall(b"status json\n")
        except BrokenPipeError:
            pass  # a busy gateway answers without waiting for the request (read below)
        return c

    def read_all(c: socket.socket) -> bytes:
        c.settimeout(10)
        out = b""
        while chunk := c.recv(65536):
            out += chunk
        c.close()
        return out

    # Four clients that ask and do not read: each report waits in its own fixed buffer (and
    # the socket's), the gateway's memory does not grow by the reports' size, a fifth client
    # is told the gateway is busy, and the relay goes on.
    rss0 = proc_kb(g.pid, "status")["VmRSS"]
    stalled = [ask_raw() for _ in range(4)]
    time.sleep(0.3)
    fifth = ask_raw()
    assert read_all(fifth) == b"error: busy\n"
    during = load()
    assert during["error_total"] == 0 and during["completed"] > quiet["completed"] / 3, during
    grown = proc_kb(g.pid, "status")["VmRSS"] - rss0
    assert grown < 256, f"RSS grew {grown} kB with four reports of ~180 kB waiting"
    for c in stalled:
        report = json.loads(read_all(c))
        assert len(report["connections"]) >= 800

    # Four clients asking five times a second each (a dashboard polling much faster than a
    # person would), reading as fast as they can.
    stop = threading.Event()
    sizes, errors = [], []

    def ask():
        while not stop.is_set():
            try:
                out = read_all(ask_raw())
                # Parsed now and then: the askers' CPU is the relay's too.
                if len(sizes) % 8 == 0:
                    assert len(json.loads(out)["connections"]) >= 800
                assert out.endswith(b"}]}\n")
                sizes.append(len(out))
                stop.wait(0.2)
            except Exception as e:  # noqa: BLE001 (any failure fails the test below)
                errors.append(repr(e))

    askers = [threading.Thread(target=ask) for _ in range(4)]
    for t in askers:
        t.start()
    busy = load()
    stop.set()
    for t in askers:
        t.join()
    assert not errors, errors[:3]
    assert len(sizes) >= 40 and min(sizes) > 800 * 200, sizes
    assert busy["error_total"] == 0, busy
    # Reports are filled a buffer per turn of the loop, one client at a time: a turn of the
    # relay waits for one buffer's rendering at most, never for a whole report. The bound is
    # loose: the askers, wsload, the gateway and the backend share two CPUs.
    p99_quiet, p99_busy = quiet["latency_us"]["p99"], busy["latency_us"]["p99"]
    print(f"ping-pong p99 {p99_quiet} us quiet, {p99_busy} us with {len(sizes)} reports "
          f"of {min(sizes)}..{max(sizes)} bytes")
    assert p99_busy <= max(2 * p99_quiet, p99_quiet + 10000), (quiet["latency_us"], busy["latency_us"])
    assert busy["completed"] >= quiet["completed"] / 2, (quiet, busy)
    for s in idle:
        s.close()
