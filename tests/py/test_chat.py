"""websocket_chat end to end: gateway + chat server + real WebSocket clients (websockets).

Broadcast in every relay mode, ouistiti's -w commands (WSHello/WSWelcome with the
duplicate-name suffix, WSPrivate, WSWhois/WSIs with the address from the connection context),
the message limit, the safe socket set-up and privilege drop shared by the sample servers, and
direct mode (-d: the gateway hands each client's socket over; direct and relayed clients in one
chat).
"""

from __future__ import annotations

import os
import re
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


# ---- direct mode (-d): the gateway hands each client's socket to the chat ---------------------


def from_address(g, source: str):
    """A websockets client of gateway `g` whose TCP connection comes from `source` (another
    loopback address), so that the peer address the chat reports can only be the real one."""
    from harness import ws_connect

    s = socket.create_connection(("127.0.0.1", g.port), timeout=5, source_address=(source, 0))
    return ws_connect(g.url("/chat"), sock=s)


def test_direct_broadcast_between_handed_over_clients(sample_backend, gateway, ws):
    b = sample_backend("websocket_chat", "chat", "framed", ["-d", "-v"])
    g = gateway(direct=True)
    a, c, d = ws(g.url("/chat")), ws(g.url("/chat")), ws(g.url("/chat"))
    a.send("hello from a")
    assert c.recv(timeout=5) == "hello from a"
    assert d.recv(timeout=5) == "hello from a"
    quiet(a)
    d.send(b"\x00\x01\xff")  # binary stays binary
    assert a.recv(timeout=5) == b"\x00\x01\xff"
    assert c.recv(timeout=5) == b"\x00\x01\xff"
    # The chat is the WebSocket server: it answers pings and the closing handshake itself.
    c.ping(b"still there").wait(5)
    c.close(code=4001)
    assert c.close_code == 4001
    b.wait_line(r"client \d+: socket of 127\.0\.0\.1 handed over \(0 early bytes\)")
    b.wait_line(r"client \d+ disconnected \(close answered\)")
    # The gateway left the data path of every client.
    assert len(re.findall(r"handed over to /chat \(direct\)", g.log_text())) == 3
    a.send("after c left")
    assert d.recv(timeout=5) == "after c left"


def test_direct_and_relayed_clients_share_one_chat(sample_backend, gateway, ws):
    """One chat behind a direct gateway and a relaying one (framed, with the context): a
    message from either kind of client reaches both kinds."""
    b = sample_backend("websocket_chat", "chat", "framed", ["-d", "-w", "-v"])
    direct = gateway(direct=True)
    relay = gateway(m="framed", context=True)
    a = from_address(direct, "127.0.0.2")
    r = from_address(relay, "127.0.0.3")
    a.send("WSHello alice")
    assert a.recv(timeout=5) == "WSWelcome alice"
    r.send("WSHello rob")
    assert r.recv(timeout=5) == "WSWelcome rob"
    a.send("from the direct client")
    assert r.recv(timeout=5) == "from the direct client"
    r.send("from the relayed client")
    assert a.recv(timeout=5) == "from the relayed client"
    quiet(a)
    quiet(r)
    # Each side's address: from the hand-over record, and from the relayed context.
    r.send("WSWhois alice")
    assert r.recv(timeout=5) == "WSIs alice 127.0.0.2"
    a.send("WSWhois rob")
    assert a.recv(timeout=5) == "WSIs rob 127.0.0.3"
    a.send("WSPrivate rob just for you")
    assert r.recv(timeout=5) == "just for you"
    b.wait_line(r"socket of 127\.0\.0\.2 handed over")
    b.wait_line(r"no socket handed over, relaying in framed mode")


def test_direct_chat_holds_messages_for_a_relayed_client_until_it_shows(sample_backend, gateway, ws):
    from harness import wait_until

    """Without the context a relayed client sends nothing before its first message, so until
    then the chat cannot tell it from a hand-over still on its way: what others send meanwhile
    is held and delivered once it speaks (within its queue limit)."""
    b = sample_backend("websocket_chat", "chat", "framed", ["-d", "-v"])
    direct = gateway(direct=True)
    relay = gateway(m="framed")
    a = ws(direct.url("/chat"))
    r = ws(relay.url("/chat"))
    # Both connections are accepted (r's as one whose kind is not known yet).
    assert wait_until(lambda: len(re.findall(r"client \d+ connected", b.log_text())) == 2)
    a.send("one")
    a.send(b"two")
    quiet(r)  # held: the chat does not know yet how to reach r
    r.send("here")
    assert a.recv(timeout=5) == "here"
    assert r.recv(timeout=5) == "one"
    assert r.recv(timeout=5) == b"two"
    a.send("three")
    assert r.recv(timeout=5) == "three"


def test_direct_wswhois_answers_the_peer_address_from_the_hand_over(sample_backend, gateway, ws):
    """In direct mode the address comes with every hand-over record: no --context needed
    (in relay mode without it WSWhois says "network error")."""
    sample_backend("websocket_chat", "chat", "framed", ["-d", "-w"])
    g = gateway(direct=True)
    a, b = from_address(g, "127.0.0.2"), from_address(g, "127.0.0.3")
    a.send("WSHello alice")
    assert a.recv(timeout=5) == "WSWelcome alice"
    b.send("WSHello alice")
    assert b.recv(timeout=5) == "WSWelcome alice001"
    b.send("WSWhois alice")
    assert b.recv(timeout=5) == "WSIs alice 127.0.0.2"
    a.send("WSWhois alice001")
    assert a.recv(timeout=5) == "WSIs alice001 127.0.0.3"
    a.send("WSWhois nobody")
    assert a.recv(timeout=5) == "WSIs nobody undefined"
    quiet(b)


def test_direct_chat_fails_protocol_errors_and_keeps_the_others(sample_backend, gateway, ws, raw):
    from harness import OP_TEXT

    sample_backend("websocket_chat", "chat", "framed", ["-d", "-M", "100"])
    g = gateway(direct=True)
    a = ws(g.url("/chat"))
    big = raw(g.port, "/chat")
    big.send_frame(OP_TEXT, b"x" * 101)
    close, eof = big.wait_close(reply=False)
    assert close.close_code == 1009 and eof
    bad = raw(g.port, "/chat")
    bad.send_frame(OP_TEXT, b"\xff\xfe")
    close, eof = bad.wait_close(reply=False)
    assert close.close_code == 1007 and eof
    quiet(a)  # nothing of theirs was broadcast
    b = ws(g.url("/chat"))
    a.send("y" * 100)
    assert b.recv(timeout=5) == "y" * 100


def test_direct_is_refused_in_seqpacket_mode(docroot):
    import subprocess

    from harness import release_bin

    p = subprocess.run(
        [release_bin("websocket_chat"), "-R", str(docroot), "-n", "chat", "-m", "seqpacket", "-d"],
        capture_output=True, text=True, timeout=10,
    )
    assert p.returncode == 1
    assert "-d: direct mode takes the socket over a stream connection" in p.stderr
    assert not (docroot / "chat").exists()
