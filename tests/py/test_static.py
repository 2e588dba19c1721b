"""Static pages (--htdocs / document { docroot }) beside the WebSocket endpoints."""

from __future__ import annotations

import os
import re
import socket

import pytest
from harness import raw_handshake, read_response_head


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


def served_line(g, s: socket.socket, request: str) -> str:
    """The gateway's log line for the page served on `s`: `conn=.. peer=..:<port> <request>`."""
    port = s.getsockname()[1]
    return g.wait_line(rf"conn=\d+:\d+ peer=127\.0\.0\.1:{port} {re.escape(request)}").string


def close_line(g, s: socket.socket) -> str:
    """The gateway's close line for the connection of `s` (closed here: the gateway waits for
    the client's EOF), from `close` on."""
    port = s.getsockname()[1]
    s.close()
    return g.wait_line(rf"conn=\d+:\d+ peer=127\.0\.0\.1:{port} (close .*) \(\d+\.\ds\)$").group(1)


def test_trailing_slash_serves_the_directory_page(site):
    """`/docs/` names the directory `docs` just as `/docs` does: both get its default page (no
    redirect), typed as the page; `/` is the same rule at the root. A directory without its
    default page is 404 either way, and a file named with a trailing slash is not a directory.
    An empty segment anywhere else stays a bad request."""
    root, g = site
    (root / "empty").mkdir()
    served = []
    for path in ("/docs", "/docs/"):
        r, body, s = get(g.port, path)
        assert (r.status, body) == (200, b"<p>docs</p>"), path
        assert r.header("Content-Type").startswith("text/html"), path
        served.append((s, path))
    for s, path in served:
        served_line(g, s, f"GET {path} 200")
    r, body, s = request(g.port, b"HEAD /docs/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (r.status, r.header("Content-Length")) == (200, "11")
    served_line(g, s, "HEAD /docs/ 200")
    for path in ("/empty", "/empty/", "/js/app.js/", "/nope/"):
        r, _, s = get(g.port, path)
        assert r.status == 404, path
    for path in ("//x", "/a//b", "/docs//", "//"):
        r, _, s = get(g.port, path)
        assert r.status == 400, path
        assert close_line(g, s) == f"close {path} refused 400: path has an empty segment", path


def test_static_log_lines_name_the_request_path(site):
    """One line per response naming the path asked for: a page served says so with its status;
    a miss is a missing file (not a missing backend), on the connection's close line."""
    _, g = site
    r, _, s = get(g.port, "/js/app.js")
    assert r.status == 200
    assert served_line(g, s, "GET /js/app.js 200").endswith("GET /js/app.js 200 (15 bytes)")
    # Keep-alive: each response on the connection gets its own line.
    r, _, s = request(g.port, b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n", s)
    assert r.status == 200
    served_line(g, s, "GET /docs 200 (11 bytes)")
    r, _, s = request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", s)
    assert r.status == 200
    served_line(g, s, "GET / 200 (16 bytes)")
    assert close_line(g, s).startswith("close / ")
    for path in ("/nope.html", "/js/nope.js", "/docs/nope/"):
        r, _, s = get(g.port, path)
        assert r.status == 404
        assert close_line(g, s) == f"close {path} refused 404: no such file", path
    r, _, s = get(g.port, "/link")
    assert r.status == 404
    assert close_line(g, s) == "close /link refused 404: symlink refused"
    assert "no such backend" not in g.log_text()


def test_websocket_upgrade_with_trailing_slash_is_refused(site):
    """A backend is a socket, never a directory: `/py/` cannot name one. The answer is a bad
    request that says why, on a line naming the path as asked; `/py` still upgrades."""
    _, g = site
    resp, s = raw_handshake(g.port, "/py/", keep=True)
    assert resp.status == 400
    assert close_line(g, s) == "close /py/ refused 400: path ends with '/' (a directory, not a backend)"
    assert raw_handshake(g.port, "/py")[0] == 101
