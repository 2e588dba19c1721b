"""The ways a sample server is reached besides its UNIX socket in the docroot: `--tcp` behind the
gateway's `tcp:` links, and `--stdio`, the one connection it is started with (a connected socket
as standard input and output, as the gateway's exec links start a program)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest

from harness import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    TcpEchoBackend,
    echo_bin,
    encode_frame,
    next_frame,
    plugin_path,
    record,
    recv_record_message,
    recv_until_eof,
    release_bin,
    ws_connect,
)

MiB = 1 << 20


@pytest.fixture
def tcp_echo_backend():
    started: list[TcpEchoBackend] = []

    def start(mode: str = "stream", host: str = "127.0.0.1", extra=()) -> TcpEchoBackend:
        b = TcpEchoBackend(mode, host, extra)
        started.append(b)
        return b

    yield start
    for b in started:
        status = b.stop()
        print(f"---- {b.name} stderr ----\n{b.log_text()}")
        assert status == 0, f"{b.name} exited with {status} on SIGTERM"


def sample(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed * 7) % 251 for i in range(n))


def text(n: int) -> str:
    """Mixed 1-, 2- and 3-byte UTF-8 characters, n bytes or up to 2 fewer (a whole character)."""
    return ("aé✓" * (n // 6 + 1)).encode()[:n].decode("utf-8", "ignore")


SIZES = [0, 1, 125, 126, 65535, 65536, 100_000, MiB]


def test_framed_messages_through_a_tcp_link_to_the_echo(gateway, tcp_echo_backend, docroot):
    echo = tcp_echo_backend("framed", extra=["-M", "2M"])
    g = gateway(link=[f"echo={echo.link}"], m="framed", max_message="2M")
    c = ws_connect(g.url("/echo"), max_size=4 * MiB)
    try:
        for i, n in enumerate(SIZES):
            data = sample(n, i)
            c.send(data)
            assert c.recv(timeout=20) == data, f"binary message of {n} bytes"
            t = text(n)
            c.send(t)
            assert c.recv(timeout=20) == t, f"text message of {len(t.encode())} bytes"
        # A fragmented message comes back whole.
        c.send([b"part one, ", b"part two"])
        assert c.recv(timeout=5) == b"part one, part two"
    finally:
        c.close()
    g.wait_line(r"open /echo mode=framed")
    assert list(docroot.iterdir()) == [], "the echo made a file in the docroot"


def test_several_clients_at_once_through_a_tcp_link_over_ipv6(gateway, tcp_echo_backend):
    echo = tcp_echo_backend("framed", host="::1")
    assert echo.link.startswith("tcp:[::1]:")
    g = gateway(link=[f"echo={echo.link}"], m="framed")
    errors: list[str] = []

    def client(k: int):
        try:
            c = ws_connect(g.url("/echo"))
            try:
                for j in range(20):
                    data = sample(1000 + k * 100 + j, k)
                    c.send(data)
                    if c.recv(timeout=20) != data:
                        errors.append(f"client {k}: message {j} differs")
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001 (reported below, with the client's number)
            errors.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def start_stdio(conn: socket.socket, *args: str) -> subprocess.Popen:
    """websocket_echo --stdio with `conn` as standard input and output."""
    p = subprocess.Popen([echo_bin(), "--stdio", *args], stdin=conn, stdout=conn, stderr=subprocess.PIPE)
    conn.close()
    return p


def finish(p: subprocess.Popen) -> str:
    """Waits for the echo to exit by itself; asserts status 0; its stderr."""
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"websocket_echo --stdio did not exit: {err.decode()}") from None
    assert p.returncode == 0, err.decode()
    return err.decode()


def test_stdio_framed_records_round_trip_then_it_exits(sandbox):
    ours, theirs = socket.socketpair()
    p = start_stdio(theirs, "-m", "framed", "-R", str(sandbox / "nowhere"), "-v")
    ours.settimeout(10)
    # A text message in one record, a binary one in three (a continuation of 0 bytes among them).
    ours.sendall(record(OP_TEXT, "hello ✓".encode()))
    assert recv_record_message(ours) == (OP_TEXT, "hello ✓".encode())
    big = sample(300_000, 1)
    ours.sendall(record(OP_BINARY, big[:1000], fin=False) + record(OP_CONT, b"", fin=False)
                 + record(OP_CONT, big[1000:]))
    assert recv_record_message(ours) == (OP_BINARY, big)
    # A close record is echoed, and the connection ends: so does the echo.
    ours.sendall(record(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye"))
    assert recv_record_message(ours) == (OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
    assert recv_until_eof(ours) == b""
    err = finish(p)
    assert "serving standard input (framed)" in err
    assert "its connection ended, exiting" in err
    assert not (sandbox / "nowhere").exists(), "--stdio made the docroot"
    assert os.listdir(sandbox) == ["www"], "--stdio made a file"


def test_stdio_seqpacket_socketpair(sandbox):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = start_stdio(theirs, "-m", "seqpacket")
    ours.settimeout(10)
    for n in (1, 7, 4096, 65536):
        data = sample(n, n)
        ours.send(data)
        assert ours.recv(1 << 17) == data
    ours.close()
    finish(p)


def test_stdio_refuses_a_stdin_that_is_not_a_socket():
    r = subprocess.run([echo_bin(), "--stdio", "-m", "framed"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    assert r.returncode == 1
    assert "--stdio: needs a socket on stdin" in r.stderr.decode()


def test_stdio_direct_mode_takes_the_client_socket_handed_over_stdin():
    """With -d the connection on stdin is a gateway's hand-over: the client's TCP socket and its
    record come over it, and the echo speaks WebSocket on the socket; it exits once that ends."""
    ours, theirs = socket.socketpair()
    p = start_stdio(theirs, "-m", "framed", "-d")
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=10)
    server_side, _ = listener.accept()
    listener.close()
    handover = b"REMOTE_ADDR=127.0.0.1\nSCRIPT_NAME=/echo\nEARLY_DATA_LENGTH=0\n\n"
    socket.send_fds(ours, [handover], [server_side.fileno()])
    server_side.close()
    ours.close()
    client.sendall(encode_frame(OP_TEXT, "direct ✓".encode()))
    buf = bytearray()
    f = next_frame(client, buf)
    assert (f.opcode, f.masked, f.payload) == (OP_TEXT, False, "direct ✓".encode())
    client.sendall(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
    f = next_frame(client, buf)
    assert (f.opcode, f.payload[:2]) == (OP_CLOSE, (1000).to_bytes(2, "big"))
    assert next_frame(client, buf) is None
    client.close()
    finish(p)


def test_the_other_samples_take_stdio_too_jsonrpc_answers_on_it():
    """The options are the kit's, so a decoding service (not only the echo) serves its one
    connection: a JSON-RPC request in a framed record is answered, and the server exits with
    the connection."""
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(
        [release_bin("websocket_jsonrpc"), "--stdio", "-m", "framed", "-L", plugin_path("sysinfo")],
        stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
    theirs.close()
    ours.settimeout(10)
    ours.sendall(record(OP_TEXT, b'{"jsonrpc":"2.0","method":"no.such","id":7}'))
    op, answer = recv_record_message(ours)
    assert op == OP_TEXT
    assert b'"code":-32601' in answer and b'"id":7' in answer, answer
    ours.close()
    finish(p)
