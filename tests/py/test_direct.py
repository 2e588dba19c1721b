"""Direct mode (--direct, ouistiti's `options = "direct"`): after the 101 the gateway hands the
client's TCP socket to the backend with SCM_RIGHTS, preceded by a hand-over record (the
request's metadata as NAME=value lines, EARLY_DATA_LENGTH, an empty line, then the client bytes
already read), and leaves the data path. The backend here is a Python UNIX server that takes
the fd and speaks WebSocket on it itself."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from harness import (
    handshake_with,
    next_frame,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
    fd_count,
    gateway_bin,
    try_decode_frame,
    ws_connect,
)


def take_over(conn: socket.socket) -> tuple[dict[str, str], bytes, socket.socket]:
    """Receives the hand-over: (metadata, early bytes, the client's socket)."""
    msg, fds, _flags, _addr = socket.recv_fds(conn, 65536, 1)
    assert len(fds) == 1, "no file descriptor came with the hand-over record"
    while b"\n\n" not in msg:
        more = conn.recv(65536)
        assert more, msg
        msg += more
    head, rest = msg.split(b"\n\n", 1)
    meta = dict(line.split("=", 1) for line in head.decode().splitlines())
    n = int(meta["EARLY_DATA_LENGTH"])
    while len(rest) < n:
        more = conn.recv(65536)
        assert more
        rest += more
    assert len(rest) == n, (len(rest), n)
    return meta, rest, socket.socket(fileno=fds[0])


def serve_echo(client: socket.socket, early: bytes, frames: list) -> None:
    """A WebSocket echo on the handed-over socket: unmasks client frames, echoes data frames,
    answers a close."""
    buf = bytearray(early)
    client.settimeout(10)
    while True:
        while (d := try_decode_frame(buf)) is None:
            chunk = client.recv(65536)
            if not chunk:
                return
            buf += chunk
        frame, used = d
        del buf[:used]
        frames.append(frame)
        if frame.opcode == 0x8:
            client.sendall(encode_frame(0x8, frame.payload[:2], mask=False))
            client.close()
            return
        client.sendall(encode_frame(frame.opcode, frame.payload, mask=False))


def backend_thread(b, results: dict):
    def run():
        conn = b.accept(timeout=10)
        meta, early, client = take_over(conn)
        # the UNIX connection has served its purpose: the gateway closes its end
        conn.settimeout(5)
        results["unix_eof"] = conn.recv(1) == b""
        results["meta"], results["early"] = meta, early
        results["frames"] = []
        serve_echo(client, early, results["frames"])

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_direct_hands_the_socket_to_the_backend(py_backend, gateway):
    b = py_backend("echo")
    g = gateway(direct=True)
    results: dict = {}
    t = backend_thread(b, results)
    time.sleep(0.2)
    fds_before = fd_count(g.pid)
    c = ws_connect(g.url("/echo?room=7"), subprotocols=["chat"])
    try:
        for text in ["hello", "é" * 5000, ""]:
            c.send(text)
            assert c.recv(timeout=5) == text
        c.send(b"\x00\x01binary")
        assert c.recv(timeout=5) == b"\x00\x01binary"
        g.wait_line(r"conn=\S+ peer=127\.0\.0\.1:\d+ handed over to /echo \(direct\)")
        g.wait_line(r"close /echo handed over to the backend \(direct\)")
        # the gateway kept nothing of the connection: no fd, no slot
        assert fd_count(g.pid) == fds_before
    finally:
        c.close()
    t.join(10)
    meta = results["meta"]
    assert meta["REMOTE_ADDR"] == "127.0.0.1"
    assert meta["SCRIPT_NAME"] == "/echo"
    assert meta["REQUEST_URI"] == "/echo?room=7"
    assert meta["QUERY_STRING"] == "room=7"
    assert meta["SEC_WEBSOCKET_PROTOCOL"] == "chat"
    assert meta["HTTPS"] == "off"
    assert meta["EARLY_DATA_LENGTH"] == "0"
    assert results["unix_eof"]
    assert [f.opcode for f in results["frames"]][-1] == 0x8


def test_bytes_sent_with_the_handshake_reach_the_backend(py_backend, gateway):
    """A client that sends a frame in the same packet as its upgrade request: the gateway read
    it with the request; it goes to the backend in the hand-over record, none lost."""
    b = py_backend("echo")
    g = gateway(direct=True)
    results: dict = {}
    t = backend_thread(b, results)
    frame = encode_frame(OP_TEXT, b"sent with the request")
    s, got = handshake_with(g.port, frame)
    with s:
        f = next_frame(s, got)
        assert f is not None and f.payload == b"sent with the request"
        s.sendall(encode_frame(0x8, b"\x03\xe8"))
        s.recv(100)
    t.join(10)
    assert results["early"] == frame
    assert results["meta"]["EARLY_DATA_LENGTH"] == str(len(frame))


def test_ipv6_peer_address_is_whole(py_backend, docroot):
    """ouistiti passed a sockaddr_in-sized buffer, truncating IPv6 peers; the record has the
    whole address."""
    from harness import LISTEN_RE, Child

    b = py_backend("echo")
    g = Child([gateway_bin(), "-a", "::1", "-p", "0", "-R", str(docroot), "--direct"], "wsgate")
    try:
        port = int(g.wait_line(LISTEN_RE, 10).group(2))
        results: dict = {}
        t = backend_thread(b, results)
        c = ws_connect(f"ws://[::1]:{port}/echo")
        c.send("v6")
        assert c.recv(timeout=5) == "v6"
        c.close()
        t.join(10)
    finally:
        g.stop()
    assert results["meta"]["REMOTE_ADDR"] == "::1"


def test_direct_is_refused_with_tls(tmp_path, docroot):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-keyout", "k.pem", "-out", "c.pem", "-subj", "/CN=localhost"],
                   cwd=tmp_path, check=True, capture_output=True)
    p = subprocess.run([gateway_bin(), "--direct", "--tls-cert", str(tmp_path / "c.pem"),
                        "--tls-key", str(tmp_path / "k.pem"), "-p", "0", "-R", str(docroot)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, p.stderr
    assert "direct mode cannot work over TLS" in p.stderr, p.stderr


# --------------------------------------------------------------------------------------------
# websocket_echo -d: the sample server in direct mode (wsgate_kit::direct in Rust)
# --------------------------------------------------------------------------------------------


def test_websocket_echo_direct_echoes_messages(echo_backend, gateway):
    e = echo_backend("framed", extra=("-d", "-v"))
    g = gateway(direct=True)
    c = ws_connect(g.url("/echo"), max_size=2 << 20)
    try:
        for m in ["hello", "é" * 5000, "", b"", b"\x00\x01binary", bytes(range(256)) * 4096]:
            c.send(m)
            got = c.recv(timeout=10)
            assert got == m, (type(got), len(got), len(m))
        c.ping(b"are you there").wait(5)
        c.close(code=4000, reason="done")
        assert c.close_code == 4000  # the echo answers with the same code
    finally:
        c.close()
    e.wait_line(r"client \d+: socket of 127\.0\.0\.1 handed over \(0 early bytes\)")
    e.wait_line(r"client \d+ disconnected \(close answered\)")
    g.wait_line(r"handed over to /echo \(direct\)")


def test_websocket_echo_direct_reassembles_fragments_and_answers_pings(echo_backend, gateway, raw):
    echo_backend("framed", extra=("-d",))
    g = gateway(direct=True)
    c = raw(g.port)
    c.send_frame(OP_TEXT, "frag".encode(), fin=False)
    c.send_frame(OP_PING, b"in between")
    c.send_frame(OP_CONT, "mé".encode()[:2], fin=False)  # "m" and half of "é"
    c.send_frame(OP_CONT, "mé".encode()[2:] + b"nts", fin=True)
    pong = c.recv_frame()
    assert (pong.opcode, pong.payload) == (OP_PONG, b"in between")
    f = c.recv_frame()
    # one whole message, one unmasked frame
    assert (f.fin, f.opcode, f.payload, f.masked) == (True, OP_TEXT, "fragménts".encode(), False)
    c.send_close(1000)
    close, eof = c.wait_close(reply=False)
    assert close.payload == b"\x03\xe8" and eof


@pytest.mark.parametrize(
    "frames, code",
    [
        ([encode_frame(OP_TEXT, b"\xff\xfe")], 1007),  # not UTF-8
        ([encode_frame(OP_TEXT, b"a", fin=False), encode_frame(OP_CONT, b"\xc3", fin=True)], 1007),
        ([encode_frame(OP_TEXT, b"x", mask=False)], 1002),  # unmasked
        ([encode_frame(OP_PING, b"p" * 126)], 1002),  # control frame over 125 bytes
        ([encode_frame(OP_PING, b"", fin=False)], 1002),  # fragmented control frame
        ([encode_frame(OP_CONT, b"x")], 1002),  # continuation outside a message
        ([encode_frame(OP_BINARY, b"x", rsv=4)], 1002),  # RSV without an extension
        ([encode_frame(OP_CLOSE, b"\x03\xed")], 1002),  # close code 1005 on the wire
        ([encode_frame(OP_BINARY, b"x" * 2000)], 1009),  # over -M 1K
    ],
)
def test_websocket_echo_direct_fails_protocol_errors_with_their_codes(echo_backend, gateway, raw, frames, code):
    echo_backend("framed", extra=("-d", "-M", "1K"))
    g = gateway(direct=True)
    c = raw(g.port)
    c.send_raw(b"".join(frames))
    close, eof = c.wait_close(reply=False)
    assert close is not None and close.payload[:2] == code.to_bytes(2, "big"), close
    assert eof  # the echo closes the TCP connection after its close (§7.1.1)


def test_websocket_echo_direct_gets_bytes_sent_with_the_handshake(echo_backend, gateway):
    """Frames in the same packet as the upgrade request travel in the hand-over record and are
    decoded before anything read from the socket."""
    e = echo_backend("framed", extra=("-d", "-v"))
    g = gateway(direct=True)
    early = encode_frame(OP_TEXT, b"first") + encode_frame(OP_BINARY, b"second")
    s, got = handshake_with(g.port, early)
    with s:
        frames = [next_frame(s, got), next_frame(s, got)]
        assert None not in frames, frames
        assert [(f.opcode, f.payload) for f in frames] == [(OP_TEXT, b"first"), (OP_BINARY, b"second")]
        s.sendall(encode_frame(OP_CLOSE, b"\x03\xe8"))
        s.recv(100)
    e.wait_line(rf"handed over \({len(early)} early bytes\)")


def test_websocket_echo_direct_serves_many_clients_at_once(echo_backend, gateway):
    echo_backend("framed", extra=("-d",))
    g = gateway(direct=True)
    clients = [ws_connect(g.url("/echo")) for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            c.send(f"client {i}")
        for i, c in enumerate(clients):
            assert c.recv(timeout=5) == f"client {i}"
    finally:
        for c in clients:
            c.close()


def test_websocket_echo_direct_serves_a_relaying_gateway_too(echo_backend, gateway):
    """No socket comes with the first bytes: the gateway relays this endpoint, and the same
    echo serves it in its -m mode (as ouistiti's interposer returned the UNIX connection)."""
    e = echo_backend("framed", extra=("-d", "-v"))
    g = gateway(m="framed")
    c = ws_connect(g.url("/echo"))
    try:
        c.send("relayed")
        assert c.recv(timeout=5) == "relayed"
    finally:
        c.close()
    e.wait_line(r"no socket handed over, relaying in framed mode")


def test_websocket_echo_direct_bounds_the_closing_handshake(echo_backend, gateway, raw):
    """A client that never ends its side after the echo's close is dropped after 5 s."""
    e = echo_backend("framed", extra=("-d", "-v"))
    g = gateway(direct=True)
    c = raw(g.port)
    c.send_raw(encode_frame(OP_TEXT, b"\xff"))
    close, eof = c.wait_close(reply=False)
    assert close.close_code == 1007 and eof  # the echo shut its side down at once
    # the client keeps its side open: the echo gives up after the close timeout
    e.wait_line(r"client \d+: closing handshake timed out; closing", timeout=8)
