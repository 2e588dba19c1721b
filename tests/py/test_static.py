"""Static pages (--htdocs / document { docroot }) beside the WebSocket endpoints."""

from __future__ import annotations

import os
import socket

import pytest
from harness import read_response_head


@pytest.fixture
def site(tmp_path, gateway, py_backend):
    root = tmp_path / "htdocs"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<h1>router</h1>\n")
    (root / "js" / "app.js").write_text("console.log(1)\n")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<p>docs</p>")
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (tmp_path / "secret").write_text("no")
    os.symlink(tmp_path / "secret", root / "link")
    py_backend("py")
    return root, gateway(htdocs=str(root))


def request(port: int, raw: bytes, sock: socket.socket | None = None):
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw)
    resp = read_response_head(s)
    n = int(resp.header("Content-Length") or 0)
    body = resp.leftover
    while len(body) < n and not raw.startswith(b"HEAD"):
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    return resp, body, s


def get(port, path, extra=b""):
    return request(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")


def test_index_and_types(site):
    root, g = site
    r, body, _ = get(g.port, "/")
    assert r.status == 200 and body == b"<h1>router</h1>\n"
    assert r.header("Content-Type").startswith("text/html")
    r, body, _ = get(g.port, "/js/app.js")
    assert r.status == 200 and r.header("Content-Type").startswith("text/javascript")
    # A directory gets its default page, typed as the page, not as the directory's name.
    r, body, _ = get(g.port, "/docs")
    assert r.status == 200 and body == b"<p>docs</p>"
    assert r.header("Content-Type").startswith("text/html")
    r, body, _ = get(g.port, "/big.bin")
    assert body == (root / "big.bin").read_bytes()


def test_refusals(site):
    _, g = site
    assert get(g.port, "/nope.html")[0].status == 404
    assert get(g.port, "/link")[0].status == 404  # symlinks are never followed
    assert get(g.port, "/%2e%2e/secret")[0].status == 400
    assert get(g.port, "/js/../../secret")[0].status == 400
    r, _, _ = request(g.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert r.status == 405


def test_head_and_keep_alive(site):
    _, g = site
    r, body, s = request(g.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 200 and r.header("Content-Length") == "16"
    # The same connection serves the next request.
    r, body, s = request(g.port, b"GET /js/app.js HTTP/1.1\r\nHost: x\r\n\r\n", s)
    assert r.status == 200 and body == b"console.log(1)\n"
    r, body, s = request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", s)
    assert r.status == 200 and r.header("Connection") == "close"
    s.settimeout(3)
    assert s.recv(10) == b""


def test_websocket_on_the_same_port(site, ws):
    _, g = site
    c = ws(g.url("/py"))
    c.send("x")
