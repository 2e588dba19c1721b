"""The opening handshake: every answer the gateway gives before (or instead of) 101."""

from __future__ import annotations

import os
import socket

import pytest
from harness import (
    RFC_ACCEPT,
    OP_TEXT,
    PyBackend,
    RawWS,
    accept_for,
    build_request,
    open_socket,
    raw_handshake,
    read_response_head,
    send_all_tolerant,
)


@pytest.fixture
def gw(echo_backend, gateway):
    echo_backend("stream")
    return gateway()


def test_101_with_rfc_accept(gw):
    status, headers, leftover = raw_handshake(gw.port, "/echo")
    assert status == 101
    assert headers["sec-websocket-accept"] == RFC_ACCEPT
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert "sec-websocket-protocol" not in headers
    assert "sec-websocket-extensions" not in headers  # no permessage-deflate
    assert leftover == b""


def test_101_accept_for_random_key_and_relay_works(gw):
    import base64

    key = base64.b64encode(os.urandom(16)).decode()
    sock = open_socket(gw.port)
    sock.sendall(build_request(gw.port, "/echo", {"Sec-WebSocket-Key": key}))
    resp = read_response_head(sock)
    assert resp.status == 101
    assert resp.header("Sec-WebSocket-Accept") == accept_for(key)
    c = RawWS(sock, resp.leftover)
    c.send_frame(OP_TEXT, b"ping?")
    assert c.recv_message() == (OP_TEXT, b"ping?")
    c.close()


def test_extensions_offer_is_declined(gw):
    status, headers, _ = raw_handshake(
        gw.port, "/echo", {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    )
    assert status == 101
    assert "sec-websocket-extensions" not in headers


@pytest.mark.parametrize(
    "case, kwargs",
    [
        ("missing key", dict(headers={"Sec-WebSocket-Key": None})),
        ("key decodes to 15 bytes", dict(headers={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"})),
        ("key decodes to 17 bytes", dict(headers={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAA="})),
        ("key not base64", dict(headers={"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!=="})),
        ("missing Host", dict(headers={"Host": None})),
        ("no Upgrade header", dict(headers={"Upgrade": None})),
        ("Upgrade is not websocket", dict(headers={"Upgrade": "h2c"})),
        ("Connection lacks upgrade", dict(headers={"Connection": "keep-alive"})),
        ("HTTP/1.0", dict(version="HTTP/1.0")),
    ],
)
def test_400_bad_requests(gw, case, kwargs):
    status, _, _ = raw_handshake(gw.port, "/echo", **kwargs)
    assert status == 400, case


def test_400_garbage_request_line(gw):
    status, _, _ = raw_handshake(gw.port, request=b"HELLO\r\n\r\n")
    assert status == 400


def test_connection_header_token_list_is_accepted(gw):
    status, headers, _ = raw_handshake(
        gw.port, "/echo", {"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket"}
    )
    assert status == 101
    assert headers["sec-websocket-accept"] == RFC_ACCEPT


@pytest.mark.parametrize("deny", ["echo", "*echo", "foo,echo", "ech*"])
def test_403_denied(echo_backend, gateway, deny):
    echo_backend("stream", name="echo")
    echo_backend("stream", name="other")
    g = gateway(deny=deny)
    assert raw_handshake(g.port, "/echo")[0] == 403
    assert raw_handshake(g.port, "/other")[0] == 101


def test_403_deny_first_by_default(echo_backend, gateway):
    """Without --denylast a matching deny wins over a matching allow."""
    echo_backend("stream", name="echo")
    echo_backend("stream", name="ws_a")
    g = gateway(deny="*", allow="ws_*")
    assert raw_handshake(g.port, "/ws_a")[0] == 403
    assert raw_handshake(g.port, "/echo")[0] == 403


def test_403_denylast_lets_allow_win(echo_backend, gateway):
    """With --denylast, allow is checked first: deny everything except ws_*."""
    echo_backend("stream", name="echo")
    echo_backend("stream", name="ws_a")
    g = gateway(deny="*", allow="ws_*", denylast=True)
    assert raw_handshake(g.port, "/ws_a")[0] == 101
    assert raw_handshake(g.port, "/echo")[0] == 403


def test_403_is_answered_before_looking_for_the_socket(gateway):
    g = gateway(deny="*")
    assert raw_handshake(g.port, "/nosuch")[0] == 403


def test_404_no_socket(gw):
    assert raw_handshake(gw.port, "/nosuch")[0] == 404


def test_404_regular_file_is_not_a_socket(gw, docroot):
    (docroot / "file").write_text("not a socket")
    status = raw_handshake(gw.port, "/file")[0]
    assert status in (404, 502), status


def test_405_post(gw):
    status, headers, _ = raw_handshake(gw.port, "/echo", method="POST")
    assert status == 405
    assert "get" in headers.get("allow", "get").lower()


def test_426_version_8(gw):
    status, headers, _ = raw_handshake(gw.port, "/echo", {"Sec-WebSocket-Version": "8"})
    assert status == 426
    assert headers.get("sec-websocket-version") == "13"


def test_426_or_400_version_missing(gw):
    status, _, _ = raw_handshake(gw.port, "/echo", {"Sec-WebSocket-Version": None})
    assert status in (400, 426)


def test_431_huge_header(gw):
    status, _, _ = raw_handshake(gw.port, "/echo", {"X-Big": "a" * 20_000})
    assert status == 431


def test_431_many_small_headers(gw):
    headers = {f"X-H{i}": "v" * 40 for i in range(500)}  # ~25 KB in 500 lines
    status, _, _ = raw_handshake(gw.port, "/echo", headers)
    assert status in (400, 431)


def test_502_stale_socket_file(gw, docroot):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(docroot / "stale"))  # bind + close without listen leaves a dead socket file
    s.close()
    assert raw_handshake(gw.port, "/stale")[0] == 502


def test_gateway_survives_errors_and_still_serves(gw):
    for path in ("/nosuch", "/../x", "/%00"):
        raw_handshake(gw.port, path)
    raw_handshake(gw.port, request=b"\x00\xff garbage\r\n\r\n")
    assert raw_handshake(gw.port, "/echo")[0] == 101


# ---- traversal ---------------------------------------------------------------------------


@pytest.fixture
def outside(sandbox):
    """A listening socket at <sandbox>/x, i.e. next to the docroot, plus <sandbox>/sub/echo.
    Any traversal that reaches them would get a 101."""
    (sandbox / "sub").mkdir()
    a = PyBackend(sandbox / "x")
    b = PyBackend(sandbox / "sub" / "echo")
    yield sandbox
    a.close()
    b.close()


@pytest.mark.parametrize(
    "path",
    [
        "/../x",
        "/%2e%2e/x",
        "/%2E%2E/x",
        "/.%2e/x",
        "/..%2fx",
        "/..%2Fx",
        "/a/../echo",
        "/%2F",
        "/%2Fetc/passwd",
        "//echo",
        "/echo/",
        "/../sub/echo",
        "/%2e%2e%2fsub%2fecho",
        "/..\\x",
        "/%00echo",
        "/echo%00",
        "echo",
        "*",
    ],
)
def test_traversal_is_never_upgraded(gw, outside, path):
    status, _, _ = raw_handshake(gw.port, path)
    assert status in (400, 404), f"{path!r} -> {status}"


def test_symlink_to_directory_outside(gw, outside, docroot):
    os.symlink(outside / "sub", docroot / "link")
    status, _, _ = raw_handshake(gw.port, "/link/echo")
    assert status in (400, 404), status


def test_symlink_to_socket_outside(gw, outside, docroot):
    os.symlink(outside / "x", docroot / "evil")
    status, _, _ = raw_handshake(gw.port, "/evil")
    assert status in (400, 404), status


def test_subdirectory_inside_docroot_is_served(py_backend, gateway, docroot):
    (docroot / "dir").mkdir()
    py_backend("dir/echo")
    g = gateway()
    assert raw_handshake(g.port, "/dir/echo")[0] == 101


def test_query_string_is_ignored(gw):
    assert raw_handshake(gw.port, "/echo?x=1&y=2")[0] == 101


# ---- subprotocols ------------------------------------------------------------------------


@pytest.fixture
def chat(echo_backend, gateway):
    echo_backend("stream", name="chat")
    return gateway()


def test_subprotocol_fallback(chat):
    status, headers, _ = raw_handshake(chat.port, "/nosuch", {"Sec-WebSocket-Protocol": "chat"})
    assert status == 101
    assert headers.get("sec-websocket-protocol") == "chat"
    assert headers["sec-websocket-accept"] == RFC_ACCEPT


def test_subprotocol_fallback_relays_to_that_backend(chat, ws):
    c = ws(chat.url("/nosuch"), subprotocols=["chat"])
    assert c.subprotocol == "chat"
    c.send("via protocol")
    assert c.recv(timeout=5) == "via protocol"


def test_two_protocols_no_fallback(chat):
    status, _, _ = raw_handshake(chat.port, "/nosuch", {"Sec-WebSocket-Protocol": "chat, other"})
    assert status == 404


def test_protocol_with_slash_is_400(chat):
    status, _, _ = raw_handshake(chat.port, "/nosuch", {"Sec-WebSocket-Protocol": "../chat"})
    assert status == 400
    status, _, _ = raw_handshake(chat.port, "/nosuch", {"Sec-WebSocket-Protocol": "a/b"})
    assert status == 400


def test_protocol_fallback_respects_deny(echo_backend, gateway):
    echo_backend("stream", name="chat")
    g = gateway(deny="chat")
    status, _, _ = raw_handshake(g.port, "/nosuch", {"Sec-WebSocket-Protocol": "chat"})
    assert status in (403, 404)


# ---- logging -----------------------------------------------------------------------------


def test_connection_is_logged_with_conn_and_peer(echo_backend, gateway, raw):
    echo_backend("stream")
    g = gateway(v=True)
    c = raw(g.port, "/echo")
    local_port = c.sock.getsockname()[1]
    c.send_close(1000)
    c.wait_close()
    m = g.wait_line(rf"^wsgate: .*conn=\d+:\d+ peer=127\.0\.0\.1:{local_port}\b", timeout=5)
    assert m
    assert all(line.startswith("wsgate: ") for line in g.lines if line.strip()), g.lines


def test_half_request_then_more_bytes(gw):
    """A request head arriving in several TCP segments is assembled."""
    import time

    sock = open_socket(gw.port)
    req = build_request(gw.port, "/echo")
    for i in range(0, len(req), 7):
        sock.sendall(req[i:i + 7])
        time.sleep(0.005)
    resp = read_response_head(sock)
    sock.close()
    assert resp.status == 101


def test_frames_pipelined_after_request(gw):
    """Frame bytes sent together with the request are not lost."""
    from harness import encode_frame

    sock = open_socket(gw.port)
    send_all_tolerant(sock, build_request(gw.port, "/echo") + encode_frame(OP_TEXT, b"early"))
    resp = read_response_head(sock)
    assert resp.status == 101
    c = RawWS(sock, resp.leftover)
    assert c.recv_message() == (OP_TEXT, b"early")
    c.close()
