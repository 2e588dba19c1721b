"""Connection context (--context): delivered to the backend before any payload, kept apart
from payload in each relay mode."""

from __future__ import annotations

import socket

from harness import OP_TEXT, recv_exact, recv_record

CONTEXT_OP = 0x3


def parse(block: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in block.decode().splitlines() if line)


def read_until(s: socket.socket, marker: bytes, limit: int = 65536) -> bytes:
    buf = b""
    while marker not in buf:
        buf += recv_exact(s, 1)
        assert len(buf) < limit
    return buf


def check(ctx: dict[str, str], port: int, cookie: bool = True) -> None:
    assert ctx["REMOTE_ADDR"] == "127.0.0.1"
    assert 0 < int(ctx["REMOTE_PORT"]) < 65536
    assert ctx["SERVER_PORT"] == str(port)
    assert ctx["REQUEST_URI"] == "/py?room=1&x=%41"
    assert ctx["SCRIPT_NAME"] == "/py"
    assert ctx["QUERY_STRING"] == "room=1&x=%41"
    assert ctx["HTTP_HOST"] == f"127.0.0.1:{port}"
    assert ctx["HTTPS"] == "off"
    if cookie:
        assert ctx["HTTP_COOKIE"] == "session=abc"
    assert "HTTP_USER_AGENT" not in ctx  # only the headers asked for


def connect(ws, g):
    return ws(g.url("/py?room=1&x=%41"), additional_headers={"Cookie": "session=abc"})


def test_context_stream_then_payload(py_backend, gateway, ws):
    b = py_backend("py")
    g = gateway(context_header="Cookie")
    c = connect(ws, g)
    s = b.accept()
    c.send("hello")
    block = read_until(s, b"\n\n")
    check(parse(block), g.port)
    assert recv_exact(s, 5) == b"hello"


def test_context_lines(py_backend, gateway, ws):
    b = py_backend("py")
    g = gateway(context_header="Cookie", m="lines")
    c = connect(ws, g)
    s = b.accept()
    c.send("a")
    block = read_until(s, b"\n\n")
    check(parse(block), g.port)
    assert recv_exact(s, 2) == b"a\n"


def test_context_framed_record(py_backend, gateway, ws):
    b = py_backend("py")
    g = gateway(context_header="Cookie", m="framed")
    c = connect(ws, g)
    s = b.accept()
    c.send("hi")
    fin, op, payload = recv_record(s)
    assert (fin, op) == (True, CONTEXT_OP)
    check(parse(payload), g.port)
    assert recv_record(s) == (True, OP_TEXT, b"hi")


def test_context_seqpacket_first_packet(py_backend, gateway, ws):
    b = py_backend("py", kind=socket.SOCK_SEQPACKET)
    g = gateway(context_header="Cookie")
    c = connect(ws, g)
    s = b.accept()
    c.send("payload")
    s.settimeout(5)
    check(parse(s.recv(65536)), g.port)
    assert s.recv(65536) == b"payload"


def test_context_off_by_default(py_backend, gateway, ws):
    b = py_backend("py")
    g = gateway()
    c = connect(ws, g)
    s = b.accept()
    c.send("x")
    assert recv_exact(s, 1) == b"x"


def test_context_without_extra_headers(py_backend, gateway, ws):
    b = py_backend("py")
    g = gateway(context=True)
    c = connect(ws, g)
    s = b.accept()
    ctx = parse(read_until(s, b"\n\n"))
    check(ctx, g.port, cookie=False)
    assert "HTTP_COOKIE" not in ctx
