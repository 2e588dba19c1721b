"""libwsgate_ouistiti_ws.so (backend/shim/): an unmodified ouistiti-style backend behind wsgate.

tests/c/ouistiti_echo.c is written as ouistiti's utils/websocket/echo.c: an AF_UNIX stream
socket, accept, one forked process per client, select + recv + send, and nothing about
WebSocket or wsgate; tests/c/ouistiti_chat.c as its chat.c: one pselect over every client,
read, and a broadcast. Both decide on errno after a read that returned <= 0, as ouistiti's do.
They are compiled here with gcc and run with LD_PRELOAD=<the shim>; the gateway runs in direct
mode (and, in some tests, in relay mode); the clients are the real `websockets` client or raw
sockets.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from harness import (
    handshake_with,
    next_frame,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    REPO_ROOT,
    Child,
    child_pids,
    cpu_seconds,
    encode_frame,
    fd_count,
    wait_until,
    ws_connect,
)
from websockets.exceptions import ConnectionClosedOK

WS_TEXT = 153  # ouistiti's websocket.h: socket(AF_UNIX, SOCK_STREAM, WS_TEXT) asks for text


def shim_path() -> str:
    p = os.environ.get("WSGATE_SHIM") or str(REPO_ROOT / "target/release/libwsgate_ouistiti_ws.so")
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p} does not exist (cargo build --release builds it)")
    return p


@pytest.fixture(scope="session")
def c_servers(tmp_path_factory) -> dict[str, str]:
    """tests/c/ouistiti_{echo,chat}.c compiled: {"echo": path, "chat": path}."""
    out = tmp_path_factory.mktemp("ouistiti")
    built = {}
    for program in ["echo", "chat"]:
        exe = out / f"ouistiti_{program}"
        subprocess.run(
            ["gcc", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread", "-o", str(exe),
             str(REPO_ROOT / f"tests/c/ouistiti_{program}.c")],
            check=True,
        )
        built[program] = str(exe)
    return built


@pytest.fixture
def ouistiti(docroot, c_servers):
    """Starts a C server (the echo by default), preloaded with the shim:
    ouistiti(name="echo", extra=(), env={}, program="echo")."""
    started: list[Child] = []

    def start(name: str = "echo", extra=(), env=None, program: str = "echo") -> Child:
        envs = [f"{k}={v}" for k, v in (env or {}).items()]
        argv = ["/usr/bin/env", f"LD_PRELOAD={shim_path()}", *envs, c_servers[program], "-R", str(docroot),
                "-n", name, *[str(a) for a in extra]]
        b = Child(argv, f"ouistiti_{program}[{name}]")
        started.append(b)
        b.wait_line(rf"{program}: listening on ")
        return b

    yield start
    for b in started:
        try:  # the forked per-client processes too (same process group)
            os.killpg(b.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        b.stop()
        print(f"---- {b.name} stderr ----\n{b.log_text()}")


def test_text_messages_are_echoed_and_accept_gives_the_client_address(ouistiti, gateway):
    """With WS_TEXT the server's messages are text. The parent process closes its copy of each
    client socket right after fork (as echo.c does): a close frame from it would end the test."""
    e = ouistiti(extra=("-p", WS_TEXT))
    g = gateway(direct=True)
    with ws_connect(g.url("/echo")) as c:
        for m in ["hello", "é" * 3000, "x", "la fin"]:
            c.send(m)
            assert c.recv(timeout=5) == m
    e.wait_line(r"echo: new connection from 127\.0\.0\.1$")
    e.wait_line(r"echo: receive 6000$")
    g.wait_line(r"handed over to /echo \(direct\)")


def test_messages_are_binary_by_default_as_with_the_original(ouistiti, gateway):
    ouistiti()  # socket(AF_UNIX, SOCK_STREAM, 0)
    g = gateway(direct=True)
    with ws_connect(g.url("/echo")) as c:
        c.send("hello")
        assert c.recv(timeout=5) == b"hello"
        c.send(b"\x00\xff\x01")
        assert c.recv(timeout=5) == b"\x00\xff\x01"


def test_wsgate_ws_type_text_and_bytes_that_are_not_utf8(ouistiti, gateway):
    ouistiti(env={"WSGATE_WS_TYPE": "text"})
    g = gateway(direct=True)
    with ws_connect(g.url("/echo")) as c:
        c.send("ünïcode")
        assert c.recv(timeout=5) == "ünïcode"
        # text on the wire must be UTF-8: these bytes go back as a binary message
        c.send(b"\xff\xfe")
        assert c.recv(timeout=5) == b"\xff\xfe"


def test_read_and_write_work_as_recv_and_send(ouistiti, gateway):
    ouistiti(extra=("-p", WS_TEXT, "-r"))
    g = gateway(direct=True)
    with ws_connect(g.url("/echo")) as c:
        for m in ["read", "and", "write"]:
            c.send(m)
            assert c.recv(timeout=5) == m


def test_several_clients_at_once(ouistiti, gateway):
    e = ouistiti(extra=("-p", WS_TEXT))
    g = gateway(direct=True)
    clients = [ws_connect(g.url("/echo")) for _ in range(12)]
    try:
        for round_ in range(3):
            for i, c in enumerate(clients):
                c.send(f"client {i} round {round_}")
            for i, c in enumerate(clients):
                assert c.recv(timeout=5) == f"client {i} round {round_}"
    finally:
        for c in clients:
            c.close()
    assert wait_until(lambda: sum("new connection from 127.0.0.1" in line for line in e.lines) == 12)


def test_a_large_message_is_one_recv_and_one_message_back(ouistiti, gateway):
    ouistiti(extra=("-b", 1 << 20))
    g = gateway(direct=True)
    big = bytes(range(256)) * 2048  # 512 KiB: many TCP segments, a 64-bit length header
    with ws_connect(g.url("/echo"), max_size=2 << 20) as c:
        c.send(big)
        assert c.recv(timeout=10) == big
        # in fragments: still one message for the server
        c.send([big[:1000], big[1000:70000], big[70000:]])
        assert c.recv(timeout=10) == big


def test_a_message_larger_than_the_buffer_comes_in_parts(ouistiti, gateway):
    """recv(256) of a 1000-byte message: 256, 256, 256, 232 (each echoed as one message)."""
    e = ouistiti(extra=("-b", 256))
    g = gateway(direct=True)
    msg = os.urandom(1000)
    with ws_connect(g.url("/echo")) as c:
        c.send(msg)
        parts = [c.recv(timeout=5) for _ in range(4)]
    assert [len(p) for p in parts] == [256, 256, 256, 232]
    assert b"".join(parts) == msg
    e.wait_line(r"echo: receive 232$")


def test_pings_are_answered_with_their_payload(ouistiti, gateway):
    e = ouistiti(extra=("-p", WS_TEXT))
    g = gateway(direct=True)
    s, buf = handshake_with(g.port)
    with s:
        s.sendall(encode_frame(OP_PING, b"are you there"))
        f = next_frame(s, buf)
        assert (f.opcode, f.payload, f.masked) == (OP_PONG, b"are you there", False)
        # the server's recv found only the ping: EAGAIN, and it goes on serving
        e.wait_line(r"echo: nothing yet$")
        s.sendall(encode_frame(OP_TEXT, b"after the ping"))
        f = next_frame(s, buf)
        assert (f.fin, f.opcode, f.payload) == (True, OP_TEXT, b"after the ping")
    with ws_connect(g.url("/echo")) as c:
        c.ping(b"websockets").wait(5)
        c.send("still echoing")
        assert c.recv(timeout=5) == "still echoing"


def test_client_close_is_answered_and_the_server_sees_the_end(ouistiti, gateway):
    e = ouistiti(extra=("-p", WS_TEXT))
    g = gateway(direct=True)
    c = ws_connect(g.url("/echo"))
    c.send("one")
    assert c.recv(timeout=5) == "one"
    c.close(code=4000, reason="done")
    assert c.close_code == 4000  # our close code, echoed by the shim
    e.wait_line(r"echo: client closed$")


def test_server_close_sends_a_close_frame(ouistiti, gateway):
    e = ouistiti(extra=("-p", WS_TEXT))
    g = gateway(direct=True)
    with ws_connect(g.url("/echo")) as c:
        c.send("close")
        with pytest.raises(ConnectionClosedOK):
            c.recv(timeout=5)
        assert c.close_code == 1000
    e.wait_line(r"echo: closing$")
    # on the wire: one close frame 1000, then the end of the stream
    s, buf = handshake_with(g.port)
    with s:
        s.sendall(encode_frame(OP_TEXT, b"close"))
        f = next_frame(s, buf)
        assert (f.opcode, f.payload) == (OP_CLOSE, b"\x03\xe8")
        s.sendall(encode_frame(OP_CLOSE, b"\x03\xe8"))
        assert next_frame(s, buf) is None


@pytest.mark.parametrize(
    "frame, code",
    [
        (encode_frame(OP_TEXT, b"unmasked", mask=False), 1002),
        (encode_frame(OP_TEXT, b"\xff\xfe"), 1007),  # not UTF-8
        (encode_frame(OP_BINARY, b"x", rsv=4), 1002),  # RSV without an extension
        (encode_frame(OP_PING, b"p" * 126), 1002),  # control frame over 125 bytes
    ],
    ids=["unmasked", "bad-utf8", "rsv", "long-ping"],
)
def test_protocol_errors_get_their_close_code_and_the_server_sees_the_end(ouistiti, gateway, frame, code):
    e = ouistiti(extra=("-p", WS_TEXT))
    g = gateway(direct=True)
    s, buf = handshake_with(g.port)
    with s:
        s.sendall(frame)
        f = next_frame(s, buf)
        assert f is not None and (f.opcode, f.payload[:2]) == (OP_CLOSE, code.to_bytes(2, "big"))
        assert next_frame(s, buf) is None  # the server side closed the TCP connection
    e.wait_line(r"echo: client closed$")


def test_bytes_sent_with_the_upgrade_request_are_not_lost(ouistiti, gateway):
    """Frames in the same packet as the request reach the shim in the hand-over record; a
    server waiting in select() reads them when the socket next becomes readable."""
    ouistiti(extra=("-p", WS_TEXT))
    g = gateway(direct=True)
    s, buf = handshake_with(g.port, encode_frame(OP_TEXT, b"early"))
    with s:
        time.sleep(0.3)
        s.sendall(encode_frame(OP_TEXT, b"later"))
        got = [next_frame(s, buf).payload for _ in range(2)]
        assert got == [b"early", b"later"]


def test_the_same_server_works_behind_a_relaying_gateway(ouistiti, gateway):
    """No descriptor comes from a relaying gateway: accept returns the UNIX connection itself,
    as the original did, and the server speaks the relay's byte stream."""
    e = ouistiti(extra=("-p", WS_TEXT), env={"WSGATE_WS_WAIT_MS": "300"})
    g = gateway(m="stream")
    with ws_connect(g.url("/echo")) as c:
        c.send("relayed")
        assert c.recv(timeout=5) == "relayed"
    e.wait_line(r"echo: new connection from unix$")
    # a client that stays silent past the wait: still a relay connection
    with ws_connect(g.url("/echo")) as c:
        time.sleep(0.6)
        c.send("silent first")
        assert c.recv(timeout=5) == "silent first"


def test_other_descriptors_pass_through(ouistiti, gateway, tmp_path):
    """The server's stderr (write on fd 2) and files go through the real calls: the log lines
    above prove the first; here a preloaded `cat` copies a file untouched."""
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(100_000))
    out = subprocess.run(["/usr/bin/env", f"LD_PRELOAD={shim_path()}", "cat", str(src)], capture_output=True,
                         timeout=10, check=True)
    assert out.stdout == src.read_bytes()


def test_an_ipv6_client_address_is_whole(ouistiti, docroot):
    """ouistiti passed a sockaddr_in-sized record; accept here gives the client's address as
    accept(2) would (getpeername on the client's socket)."""
    from harness import LISTEN_RE, gateway_bin

    e = ouistiti(extra=("-p", WS_TEXT))
    g = Child([gateway_bin(), "-a", "::1", "-p", "0", "-R", str(docroot), "--direct"], "wsgate")
    try:
        port = int(g.wait_line(LISTEN_RE, 10).group(2))
        with ws_connect(f"ws://[::1]:{port}/echo") as c:
            c.send("v6")
            assert c.recv(timeout=5) == "v6"
    finally:
        g.stop()
    e.wait_line(r"echo: new connection from ::1$")


@pytest.mark.parametrize("model", ["thread", "select"])
def test_threaded_and_single_select_servers(ouistiti, gateway, model):
    """echo.c built with PTHREAD (a thread per client, no fork) and chat.c's shape (one select()
    over every client in one process). In the latter, a client's ping must not stall the
    others: the recv that finds only the ping returns EAGAIN instead of waiting for data."""
    e = ouistiti(extra=("-p", WS_TEXT, "-m", model))
    g = gateway(direct=True)
    s, buf = handshake_with(g.port)
    clients = [ws_connect(g.url("/echo")) for _ in range(5)]
    try:
        with s:
            s.sendall(encode_frame(OP_PING, b"only a ping"))
            f = next_frame(s, buf)
            assert (f.opcode, f.payload) == (OP_PONG, b"only a ping")
            for i, c in enumerate(clients):
                c.send(f"{model} {i}")
            for i, c in enumerate(clients):
                assert c.recv(timeout=5) == f"{model} {i}"
            s.sendall(encode_frame(OP_TEXT, b"the pinger speaks"))
            assert next_frame(s, buf).payload == b"the pinger speaks"
        clients[0].send("close")
        with pytest.raises(ConnectionClosedOK):
            clients[0].recv(timeout=5)
        assert clients[0].close_code == 1000
        clients[1].send("still here")
        assert clients[1].recv(timeout=5) == "still here"
    finally:
        for c in clients:
            c.close()
    e.wait_line(r"echo: nothing yet$")


def test_a_hand_over_that_comes_after_accept_is_taken_at_the_first_recv(ouistiti, gateway):
    """WSGATE_WS_WAIT_MS=0: accept does not wait, so the record is not there yet; the server
    gets the UNIX connection (its address says so), and its first recv takes the hand-over,
    putting the client's socket under the same descriptor number."""
    e = ouistiti(extra=("-p", WS_TEXT), env={"WSGATE_WS_WAIT_MS": "0"})
    g = gateway(direct=True)
    with ws_connect(g.url("/echo")) as c:
        for m in ["late", "hand-over"]:
            c.send(m)
            assert c.recv(timeout=5) == m
        c.send("close")
        with pytest.raises(ConnectionClosedOK):
            c.recv(timeout=5)
        assert c.close_code == 1000
    e.wait_line(r"echo: new connection from unix$")
    g.wait_line(r"handed over to /echo \(direct\)")


@pytest.mark.parametrize(
    "record",
    [
        b"no equals sign\n\n",
        b"REMOTE_ADDR=1.2.3.4\nEARLY_DATA_LENGTH=99999999999\n\n",
        b"EARLY_DATA_LENGTH=x\n\n",
        b"REMOTE_ADDR=1.2.3.4\n",  # never ends: the wait runs out
    ],
    ids=["no-equals", "huge-early", "bad-length", "unfinished"],
)
def test_a_bad_hand_over_is_dropped_and_the_server_goes_on(ouistiti, gateway, docroot, record):
    """Not from the gateway: a local process hands over a descriptor with a broken record. The
    shim logs it, closes both, and the server's accept goes on to the next connection."""
    e = ouistiti(extra=("-p", WS_TEXT), env={"WSGATE_WS_WAIT_MS": "500"})
    g = gateway(direct=True)
    a, b = socket.socketpair()
    with b, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
        u.connect(str(docroot / "echo"))
        socket.send_fds(u, [record], [a.fileno()])
        a.close()  # the shim now holds the only other copy
        e.wait_line(r"hand-over from the gateway failed", timeout=5)
        b.settimeout(5)
        assert b.recv(10) == b""  # the shim closed the descriptor it was given
    with ws_connect(g.url("/echo")) as c:
        c.send("still serving")
        assert c.recv(timeout=5) == "still serving"


def test_a_bad_late_hand_over_ends_that_connection_only(ouistiti, gateway, docroot):
    """With WSGATE_WS_WAIT_MS=0 the record is read at the server's first recv: a broken one
    ends that connection (the server reads the end of the stream), not the server."""
    e = ouistiti(extra=("-p", WS_TEXT), env={"WSGATE_WS_WAIT_MS": "0"})
    g = gateway(direct=True)
    a, b = socket.socketpair()
    with b, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
        u.connect(str(docroot / "echo"))
        socket.send_fds(u, [b"no equals sign\n\n"], [a.fileno()])
        a.close()
        e.wait_line(r"late hand-over from the gateway failed", timeout=5)
        e.wait_line(r"echo: client closed$")
        b.settimeout(5)
        assert b.recv(10) == b""
    with ws_connect(g.url("/echo")) as c:
        c.send("still serving")
        assert c.recv(timeout=5) == "still serving"


# errno: set by a call that fails, left alone by one that succeeds. ouistiti's servers test
# `ret <= 0 && errno != EAGAIN` after every read, the end of the stream (0) included: an EAGAIN
# left over from anything before makes them take a client's departure for "nothing yet", and
# select() then wakes them at once, for ever.

QUIET_CPU = 0.1  # seconds of CPU over QUIET_TIME: a server that waits in select uses none
QUIET_TIME = 1.5


def cpu_over(pids, seconds: float = QUIET_TIME) -> float:
    """CPU seconds the processes `pids` use over the next `seconds` (those that live on)."""
    before = {}
    for p in pids:
        try:
            before[p] = cpu_seconds(p)
        except FileNotFoundError:
            pass
    time.sleep(seconds)
    spent = 0.0
    for p, t in before.items():
        try:
            spent += cpu_seconds(p) - t
        except FileNotFoundError:
            pass
    return spent


@pytest.mark.parametrize("model", ["fork", "thread"])
def test_a_client_that_pinged_then_left_ends_its_server(ouistiti, gateway, model):
    """The recv that found only the ping returned -1 with EAGAIN; the end of the stream that
    comes later must not carry it: the per-client process (or thread) closes the socket and
    ends, and nothing spins."""
    e = ouistiti(extra=("-p", WS_TEXT, "-m", model))
    g = gateway(direct=True)
    fds, children = fd_count(e.pid), child_pids(e.pid)
    with ws_connect(g.url("/echo")) as c:
        c.send("before the ping")
        assert c.recv(timeout=5) == "before the ping"
        c.ping(b"ping").wait(5)
        e.wait_line(r"echo: nothing yet$")
        served = child_pids(e.pid) - children
        assert len(served) == (1 if model == "fork" else 0), served
    # the client has closed (close frame answered, TCP closed)
    if model == "fork":
        gone = wait_until(lambda: not child_pids(e.pid) & served, timeout=3)
        assert gone, f"the per-client process {served} is still there, {cpu_over(served, 1):.2f} s CPU in 1 s"
    else:
        closed = wait_until(lambda: fd_count(e.pid) == fds, timeout=3)
        assert closed, f"{fd_count(e.pid) - fds} descriptor(s) left open, {cpu_over([e.pid], 1):.2f} s CPU in 1 s"
    e.wait_line(r"echo: client closed$")
    spent = cpu_over([e.pid])
    assert spent < QUIET_CPU, f"the server used {spent:.2f} s of CPU in {QUIET_TIME} s with no client"


def test_a_chat_server_sees_each_client_leave(ouistiti, gateway):
    """chat.c's shape: one pselect over every client, read, broadcast; `read <= 0 && errno !=
    EAGAIN` drops a client. A first client leaving makes the server close() its socket; that
    close must not leave an EAGAIN for the next departure to be taken for "nothing yet"."""
    ch = ouistiti(name="chat", program="chat")
    g = gateway(direct=True)
    fds = fd_count(ch.pid)
    a, b, c, d = [ws_connect(g.url("/chat")) for _ in range(4)]
    try:
        assert wait_until(lambda: sum("chat: new connection" in line for line in ch.lines) == 4)
        a.send(b"from a")
        for other in (b, c, d):
            assert other.recv(timeout=5) == b"from a"
        assert fd_count(ch.pid) == fds + 4
        c.close()
        ch.wait_line(r"chat: goodbye ")
        a.close()
        left = wait_until(lambda: sum("chat: goodbye" in line for line in ch.lines) == 2, timeout=3)
        assert left, f"the second client to leave was missed, {cpu_over([ch.pid], 1):.2f} s CPU in 1 s"
        assert fd_count(ch.pid) == fds + 2
        d.send(b"from d")
        assert b.recv(timeout=5) == b"from d"
        spent = cpu_over([ch.pid])
        assert spent < QUIET_CPU, f"the server used {spent:.2f} s of CPU in {QUIET_TIME} s, waiting"
    finally:
        for x in (a, b, c, d):
            x.close()
    assert wait_until(lambda: fd_count(ch.pid) == fds)


@pytest.mark.parametrize(
    "extra, env, gateway_opts, names",
    [
        ((), {}, {"direct": True}, ("recv", "send")),
        (("-r",), {}, {"direct": True}, ("read", "write")),
        (("-m", "select"), {}, {"direct": True}, ("recv", "send")),
        ((), {"WSGATE_WS_WAIT_MS": "0"}, {"direct": True}, ("recv", "send")),
        ((), {"WSGATE_WS_WAIT_MS": "300"}, {"m": "stream"}, ("recv", "send")),
    ],
    ids=["direct", "read-write", "select", "late-hand-over", "relay"],
)
def test_a_call_that_succeeds_leaves_errno_alone(ouistiti, gateway, extra, env, gateway_opts, names):
    """The echo with -e sets errno to 12345 before each accept, recv/read, send/write and close,
    and says whether a call that succeeded changed it: none may (libc never does)."""
    recv, send = names
    e = ouistiti(extra=("-p", WS_TEXT, "-e", *extra), env=env)
    g = gateway(**gateway_opts)
    # a client that pings, talks, and closes
    with ws_connect(g.url("/echo")) as c:
        c.send("one")
        assert c.recv(timeout=5) == "one"
        c.ping(b"p").wait(5)
        c.send("two")
        assert c.recv(timeout=5) == "two"
    # the server closes
    with ws_connect(g.url("/echo")) as c:
        c.send("close")
        with pytest.raises(ConnectionClosedOK):
            c.recv(timeout=5)
    # the client's TCP connection ends without a close frame
    s, buf = handshake_with(g.port)
    s.sendall(encode_frame(OP_TEXT, b"three"))
    assert next_frame(s, buf).payload == b"three"
    s.close()
    assert wait_until(lambda: sum("echo: client closed" in line for line in e.lines) == 2)
    assert wait_until(lambda: sum("echo: closing" in line for line in e.lines) == 1)
    time.sleep(0.2)  # the forked processes' last lines
    changed = [line for line in e.lines if "errno changed" in line]
    assert not changed, "\n".join(changed)
    kept = {line.split("errno kept by ")[1] for line in e.lines if "errno kept by" in line}
    assert kept >= {"accept", f"{recv} data", f"{recv} end", send, "close"}, kept
