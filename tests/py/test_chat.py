"""websocket_chat end to end: gateway + chat server + real WebSocket clients (websockets).

Broadcast in every relay mode, ouistiti's -w commands (WSHello/WSWelcome with the
duplicate-name suffix, WSPrivate, WSWhois/WSIs with the address from the connection context),
the message limit, and the safe socket set-up and privilege drop shared by the sample servers.
"""

from __future__ import annotations

import os
import socket
import stat

import pytest

MODES = ["stream", "lines", "framed", "seqpacket"]


def quiet(conn, timeout=0.4):
    """Asserts that nothing arrives on `conn` for `timeout` seconds."""
    with pytest.raises(TimeoutError):
        got = conn.recv(timeout=timeout)
        print(f"unexpected message: {got!r}")


@pytest.fixture
def chat(sample_backend, gateway, ws):
    """Starts the chat (extra options) behind a gateway in `mode`; returns a client factory."""

    def start(mode="framed", extra=(), **gw):
        sample_backend("websocket_chat", "chat", mode, extra)
        g = gateway(m=mode, **gw)
        return lambda: ws(g.url("/chat"))

    return start


@pytest.mark.parametrize("mode", MODES)
def test_broadcast_goes_to_every_other_client(chat, mode):
    client = chat(mode)
    a, b, c = client(), client(), client()
    a.send("hello from a")
    assert b.recv(timeout=5) == "hello from a"
    assert c.recv(timeout=5) == "hello from a"
    quiet(a)
    c.send("and from c")
    assert a.recv(timeout=5) == "and from c"
    assert b.recv(timeout=5) == "and from c"


def test_framed_mode_keeps_binary_messages_binary(chat):
    client = chat("framed")
    a, b = client(), client()
    a.send(b"\x00\x01\xff")
    assert b.recv(timeout=5) == b"\x00\x01\xff"


def test_without_w_commands_are_ordinary_messages(chat):
    client = chat("framed")
    a, b = client(), client()
    a.send("WSHello bob")
    assert b.recv(timeout=5) == "WSHello bob"
    quiet(a)


def test_wshello_welcomes_with_a_free_suffix_for_duplicates(chat):
    client = chat("framed", ["-w"])
    a, b, c, d = client(), client(), client(), client()
    a.send("WSHello bob")
    assert a.recv(timeout=5) == "WSWelcome bob"
    b.send("WSHello bob")
    assert b.recv(timeout=5) == "WSWelcome bob001"
    # ouistiti counted the clients called exactly "bob" and handed out bob001 again.
    c.send("WSHello bob")
    assert c.recv(timeout=5) == "WSWelcome bob002"
    # Commands are not broadcast.
    quiet(d)
    # A long name is cut to 30 bytes, a duplicate's stem to 27 (on character boundaries).
    long = "x" * 40
    a.send(f"WSHello {long}")
    assert a.recv(timeout=5) == "WSWelcome " + "x" * 30
    b.send(f"WSHello {long}")
    assert b.recv(timeout=5) == "WSWelcome " + "x" * 27 + "001"


def test_wsprivate_reaches_only_the_named_client(chat):
    client = chat("lines", ["-w"])
    a, b, c = client(), client(), client()
    a.send("WSHello alice")
    assert a.recv(timeout=5) == "WSWelcome alice"
    b.send("WSHello bob")
    assert b.recv(timeout=5) == "WSWelcome bob"
    a.send("WSPrivate bob psst, bob")
    assert b.recv(timeout=5) == "psst, bob"
    quiet(c)
    quiet(a)
    # Ordinary messages still go to everybody else.
    c.send("public")
    assert a.recv(timeout=5) == "public"
    assert b.recv(timeout=5) == "public"


@pytest.mark.parametrize("mode,extra", [("framed", []), ("lines", ["-c"]), ("seqpacket", ["-c"])])
def test_wswhois_answers_the_address_from_the_context(chat, mode, extra):
    client = chat(mode, ["-w", *extra], context=True)
    a, b = client(), client()
    a.send("WSHello alice")
    assert a.recv(timeout=5) == "WSWelcome alice"
    b.send("WSWhois alice")
    assert b.recv(timeout=5) == "WSIs alice 127.0.0.1"
    b.send("WSWhois nobody")
    assert b.recv(timeout=5) == "WSIs nobody undefined"
    # The context never reaches the other clients as a message.
    a.send("after context")
    assert b.recv(timeout=5) == "after context"


def test_wswhois_without_context_says_network_error(chat):
    client = chat("framed", ["-w"])
    a, b = client(), client()
    a.send("WSHello alice")
    assert a.recv(timeout=5) == "WSWelcome alice"
    b.send("WSWhois alice")
    assert b.recv(timeout=5) == "WSIs alice network error"


def test_a_message_over_the_limit_closes_its_sender_with_1009(chat):
    from websockets.exceptions import ConnectionClosed

    client = chat("framed", ["-M", "100"])
    a, b = client(), client()
    a.send("x" * 100)
    assert b.recv(timeout=5) == "x" * 100
    a.send("y" * 101)
    with pytest.raises(ConnectionClosed) as info:
        a.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    quiet(b)


def test_stream_mode_cuts_big_writes_at_the_limit_and_keeps_everyone(chat):
    # In stream mode a read is a message: at most -M bytes, so a big write arrives in pieces,
    # all of them, and a queue of 4 x -M filled within one turn does not drop the reader.
    client = chat("stream", ["-M", "100"])
    a, b = client(), client()
    payload = "".join(chr(ord("a") + i % 26) for i in range(3000))
    a.send(payload)
    got = ""
    while len(got) < len(payload):
        got += b.recv(timeout=5)
    assert got == payload
    b.send("still here")
    assert a.recv(timeout=5) == "still here"


def test_many_clients_at_once(chat):
    client = chat("framed")
    conns = [client() for _ in range(40)]
    conns[0].send("to all")
    for c in conns[1:]:
        assert c.recv(timeout=5) == "to all"


def test_socket_is_0660_and_a_live_one_is_not_replaced(sample_backend, docroot):
    b = sample_backend("websocket_chat", "chat")
    st = os.stat(b.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    import subprocess

    from harness import release_bin

    second = subprocess.run(
        [release_bin("websocket_chat"), "-R", str(docroot), "-n", "chat"],
        capture_output=True, text=True, timeout=10,
    )
    assert second.returncode == 1
    assert "address in use" in second.stderr
    assert b.alive() and stat.S_ISSOCK(os.stat(b.path).st_mode)


def test_a_stale_socket_is_replaced(sample_backend, docroot):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(docroot / "chat"))
    stale.close()  # the file stays, nobody listens
    b = sample_backend("websocket_chat", "chat")
    # The stale file was there from the start: wait for the server, not for the file.
    b.wait_line("listening on")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(b.path))
    s.close()


def test_u_drops_privileges_for_real(sample_backend, docroot):
    assert os.geteuid() == 0, "the suite runs as root"
    os.chmod(docroot, 0o755)
    b = sample_backend("websocket_chat", "chat", extra=["-u", "nobody"])
    st = os.stat(b.path)
    import pwd

    nobody = pwd.getpwnam("nobody")
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    status = open(f"/proc/{b.pid}/status").read()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    assert uids == [str(nobody.pw_uid)] * 4
    assert gids == [str(nobody.pw_gid)] * 4
