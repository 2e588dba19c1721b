"""Relay modes, checked byte for byte against a backend of our own (harness.PyBackend)."""

from __future__ import annotations

import os
import re
import socket
import struct
import sys
import time

import pytest
from harness import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    Child,
    RawWS,
    recv_available,
    recv_exact,
    recv_record,
    recv_record_message,
    record,
)
from websockets.exceptions import ConnectionClosed


def recv_messages(c, total_len, timeout=5.0):
    """Messages until their payloads add up to total_len (text measured in UTF-8 bytes)."""
    out, got = [], 0
    deadline = time.monotonic() + timeout
    while got < total_len:
        m = c.recv(timeout=max(deadline - time.monotonic(), 0.01))
        out.append(m)
        got += len(m.encode() if isinstance(m, str) else m)
    return out


# ---- stream ------------------------------------------------------------------------------


@pytest.fixture
def stream(py_backend, gateway, ws):
    def make(**opts):
        b = py_backend("py")
        g = gateway(**opts)
        c = ws(g.url("/py"))
        s = b.accept()
        return c, s

    return make


def test_stream_client_text_reaches_backend_verbatim(stream):
    c, s = stream()
    c.send("hello")
    assert recv_exact(s, 5) == b"hello"
    assert recv_available(s, 0.3) == b""  # no framing, no terminator


def test_stream_client_binary_reaches_backend_verbatim(stream):
    c, s = stream()
    payload = bytes(range(256)) * 3
    c.send(payload)
    assert recv_exact(s, len(payload)) == payload


def test_stream_client_messages_have_no_boundaries(stream):
    c, s = stream()
    for part in ("ab", "cd", "", "ef"):
        c.send(part)
    assert recv_exact(s, 6) == b"abcdef"


def test_stream_fragmented_client_message(stream):
    c, s = stream()
    c.send(["frag", "mented", " text"])
    assert recv_exact(s, 15) == b"fragmented text"


def test_stream_backend_write_is_one_text_message(stream):
    c, s = stream()
    s.sendall(b"abc")
    assert c.recv(timeout=5) == "abc"


def test_stream_binary_type(stream):
    c, s = stream(t="binary")
    s.sendall(b"abc")
    assert c.recv(timeout=5) == b"abc"


def test_stream_auto_type(stream):
    c, s = stream(t="auto")
    s.sendall(b"plain text")
    assert c.recv(timeout=5) == "plain text"
    time.sleep(0.2)
    s.sendall(b"\x00\xff\xfe binary")
    assert c.recv(timeout=5) == b"\x00\xff\xfe binary"


def test_stream_invalid_utf8_in_text_mode_goes_binary(stream):
    c, s = stream()
    s.sendall(b"\xff\xfe\xfd")
    msgs = recv_messages(c, 3)
    assert all(isinstance(m, bytes) for m in msgs), msgs
    assert b"".join(msgs) == b"\xff\xfe\xfd"


def test_stream_text_never_carries_invalid_utf8(stream):
    """Mixed valid/invalid bytes: whatever the split, text messages are valid UTF-8 (the client
    would fail the connection otherwise) and every byte arrives in order."""
    c, s = stream()
    data = "héllo ".encode() + b"\xc3\x28 bad " + "wörld €".encode()
    s.sendall(data)
    msgs = recv_messages(c, len(data))
    assert b"".join(m.encode() if isinstance(m, str) else m for m in msgs) == data


def test_stream_split_code_point_arrives_intact(stream):
    c, s = stream()
    euro = "€".encode()  # e2 82 ac
    s.sendall(b"x" + euro[:1])
    time.sleep(0.3)
    s.sendall(euro[1:] + b"y")
    msgs = recv_messages(c, 5)
    assert all(isinstance(m, str) for m in msgs), msgs
    assert "".join(msgs) == "x€y"


def test_stream_split_code_point_byte_by_byte(stream):
    c, s = stream()
    text = "añ€😀"
    for byte in text.encode():
        s.sendall(bytes([byte]))
        time.sleep(0.05)
    msgs = recv_messages(c, len(text.encode()))
    assert all(isinstance(m, str) for m in msgs), msgs
    assert "".join(msgs) == text


def test_stream_large_backend_write(stream):
    c, s = stream(t="binary")
    data = os.urandom(300_000)
    s.sendall(data)
    assert b"".join(recv_messages(c, len(data), timeout=10)) == data


# ---- lines -------------------------------------------------------------------------------


@pytest.fixture
def lines(py_backend, gateway, ws):
    b = py_backend("py")
    g = gateway(m="lines")
    c = ws(g.url("/py"))
    return c, b.accept()


def test_lines_client_message_gets_newline(lines):
    c, s = lines
    c.send("a")
    assert recv_exact(s, 2) == b"a\n"
    c.send("second line")
    assert recv_exact(s, 12) == b"second line\n"


def test_lines_backend_lines_are_messages(lines):
    c, s = lines
    s.sendall(b"x\ny\n")
    assert c.recv(timeout=5) == "x"
    assert c.recv(timeout=5) == "y"


def test_lines_crlf_is_stripped(lines):
    c, s = lines
    s.sendall(b"z\r\n")
    assert c.recv(timeout=5) == "z"


def test_lines_partial_line_waits_for_newline(lines):
    c, s = lines
    s.sendall(b"hel")
    with pytest.raises(TimeoutError):
        c.recv(timeout=0.5)
    s.sendall(b"lo\nwor")
    assert c.recv(timeout=5) == "hello"
    s.sendall(b"ld\n")
    assert c.recv(timeout=5) == "world"


def test_lines_empty_line_is_empty_message(lines):
    c, s = lines
    s.sendall(b"\nafter\n")
    assert c.recv(timeout=5) == ""
    assert c.recv(timeout=5) == "after"


def test_lines_per_name_mode(py_backend, gateway, ws):
    """`-m NAME=MODE` applies to that name only."""
    b_lines = py_backend("l")
    b_stream = py_backend("s")
    g = gateway(m=["l=lines"])
    cl = ws(g.url("/l"))
    sl = b_lines.accept()
    cs = ws(g.url("/s"))
    ss = b_stream.accept()
    cl.send("a")
    cs.send("a")
    assert recv_exact(sl, 2) == b"a\n"
    assert recv_exact(ss, 1) == b"a"
    assert recv_available(ss, 0.3) == b""


# ---- framed ------------------------------------------------------------------------------


@pytest.fixture
def framed(py_backend, gateway, ws):
    b = py_backend("py")
    g = gateway(m="framed")
    c = ws(g.url("/py"))
    return c, b.accept()


def test_framed_client_text_becomes_record(framed):
    c, s = framed
    c.send("hi")
    assert recv_exact(s, 7) == b"\x81\x00\x00\x00\x02hi"


def test_framed_client_binary_and_empty(framed):
    c, s = framed
    c.send(b"\x00\x01")
    assert recv_record_message(s) == (OP_BINARY, b"\x00\x01")
    c.send(b"")
    assert recv_record_message(s) == (OP_BINARY, b"")
    c.send("")
    assert recv_record_message(s) == (OP_TEXT, b"")


def test_framed_client_fragmented_message(framed):
    c, s = framed
    c.send(["ab", "cd", "ef"])
    opcode, payload = recv_record_message(s)
    assert (opcode, payload) == (OP_TEXT, b"abcdef")


def test_framed_large_client_message(framed):
    c, s = framed
    data = os.urandom(500_000)
    c.send(data)
    assert recv_record_message(s, timeout=10) == (OP_BINARY, data)


def test_framed_backend_record_becomes_binary_message(framed):
    c, s = framed
    s.sendall(b"\x82\x00\x00\x00\x03abc")
    assert c.recv(timeout=5) == b"abc"


def test_framed_backend_text_record(framed):
    c, s = framed
    s.sendall(record(OP_TEXT, "héllo".encode()))
    assert c.recv(timeout=5) == "héllo"


def test_framed_backend_message_in_several_records(framed):
    c, s = framed
    s.sendall(record(OP_TEXT, b"ab", fin=False))
    time.sleep(0.1)
    s.sendall(record(OP_CONT, b"cd", fin=False) + record(OP_CONT, b"ef", fin=True))
    assert c.recv(timeout=5) == "abcdef"


def test_framed_backend_record_split_across_writes(framed):
    c, s = framed
    rec = record(OP_BINARY, b"0123456789")
    for i in range(len(rec)):
        s.sendall(rec[i:i + 1])
        time.sleep(0.01)
    assert c.recv(timeout=5) == b"0123456789"


def test_framed_backend_many_records_in_one_write(framed):
    c, s = framed
    s.sendall(b"".join(record(OP_BINARY, bytes([i]) * i) for i in range(50)))
    for i in range(50):
        assert c.recv(timeout=5) == bytes([i]) * i


def test_framed_backend_close_record(framed):
    c, s = framed
    s.sendall(record(OP_CLOSE, struct.pack("!H", 4000) + b"bye"))
    with pytest.raises(ConnectionClosed) as e:
        c.recv(timeout=5)
    assert e.value.rcvd is not None
    assert e.value.rcvd.code == 4000
    assert e.value.rcvd.reason == "bye"


def test_framed_client_close_becomes_close_record(framed):
    c, s = framed
    c.close(code=4001, reason="done")
    fin, opcode, payload = recv_record(s)
    assert (fin, opcode) == (True, OP_CLOSE)
    assert payload == struct.pack("!H", 4001) + b"done"


def test_framed_bad_record_from_backend_fails_connection(framed):
    c, s = framed
    s.sendall(b"\x83\x00\x00\x00\x00")  # reserved opcode
    with pytest.raises(ConnectionClosed) as e:
        c.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1011


# ---- seqpacket ---------------------------------------------------------------------------


@pytest.fixture
def seqpacket(py_backend, gateway, ws):
    b = py_backend("sp", kind=socket.SOCK_SEQPACKET)
    g = gateway()  # no -m: the socket type is detected
    c = ws(g.url("/sp"))
    return c, b.accept()


def test_seqpacket_client_messages_are_packets(seqpacket):
    c, s = seqpacket
    c.send("one")
    c.send(b"two two")
    c.send("")
    s.settimeout(5)
    assert s.recv(65536) == b"one"
    assert s.recv(65536) == b"two two"
    # an empty message is an empty packet (or nothing): never merged with the next one
    c.send("three")
    p = s.recv(65536)
    if p == b"":
        p = s.recv(65536)
    assert p == b"three"


def test_seqpacket_backend_packets_are_messages(seqpacket):
    c, s = seqpacket
    s.send(b"p1")
    s.send(b"p2")
    s.send(b"p3" * 1000)
    assert c.recv(timeout=5) == "p1"
    assert c.recv(timeout=5) == "p2"
    assert c.recv(timeout=5) == "p3" * 1000


def test_seqpacket_fragmented_client_message_is_one_packet(seqpacket):
    c, s = seqpacket
    c.send(["a", "b", "c"])
    s.settimeout(5)
    assert s.recv(65536) == b"abc"


def test_seqpacket_explicit_mode(py_backend, gateway, ws):
    b = py_backend("sp", kind=socket.SOCK_SEQPACKET)
    g = gateway(m="seqpacket", t="binary")
    c = ws(g.url("/sp"))
    s = b.accept()
    s.send(b"\x00\x01")
    assert c.recv(timeout=5) == b"\x00\x01"


def test_seqpacket_invalid_utf8_goes_binary(seqpacket):
    c, s = seqpacket
    s.send(b"\xff\x00")
    assert c.recv(timeout=5) == b"\xff\x00"


def test_seqpacket_empty_packet_is_an_empty_message(seqpacket):
    """An empty packet is a message (one message = one packet), not the end of the stream."""
    c, s = seqpacket
    s.send(b"")
    s.send(b"after")
    assert c.recv(timeout=5) == ""
    assert c.recv(timeout=5) == "after"


@pytest.mark.parametrize("fragment", [1024, 64])
def test_seqpacket_message_too_big_1009(py_backend, gateway, raw, fragment):
    """A seqpacket message must fit in a buffer (--buffer-size): a bigger one fails with 1009,
    also when it arrives in small fragments."""
    from harness import OP_BINARY as B, OP_CONT as C

    b = py_backend("sp", kind=socket.SOCK_SEQPACKET)
    g = gateway(buffer_size="16K", max_message="1M")
    c = raw(g.port, "/sp")
    b.accept()
    t0 = time.monotonic()
    for i in range(64 * 1024 // fragment):  # 64 KiB in fragments
        try:
            c.send_frame(B if i == 0 else C, b"f" * fragment, fin=False)
        except OSError:
            break
    close, _ = c.wait_close(timeout=5)
    assert close is not None, "no close frame within 5 s"
    assert close.close_code == 1009, close
    assert time.monotonic() - t0 < 3


def test_seqpacket_unfragmented_message_too_big_1009(py_backend, gateway, raw):
    b = py_backend("sp", kind=socket.SOCK_SEQPACKET)
    g = gateway(buffer_size="16K", max_message="1M")
    c = raw(g.port, "/sp")
    b.accept()
    c.send_frame(OP_BINARY, b"x" * 20000)
    close, _ = c.wait_close(timeout=5)
    assert close is not None and close.close_code == 1009, close


# ---- a backend that ends: cleanly, or killed -----------------------------------------------

# A backend process of its own, so that it can really be killed (SIGKILL: the kernel closes its
# socket, nothing is said). It reads `want` bytes, reports them, then either writes "done" and
# exits normally ("clean") or waits for the kill.
ENDING_BACKEND = r"""
import socket, sys, time
path, want, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
print("listening", file=sys.stderr, flush=True)
c, _ = s.accept()
got = b""
while len(got) < want:
    got += c.recv(want - len(got))
print("read", got.hex(), file=sys.stderr, flush=True)
if how == "clean":
    c.sendall(b"done")
    c.close()
    sys.exit(0)
time.sleep(120)
"""


@pytest.fixture
def ending(docroot, gateway):
    """(gateway, backend process at /end) for `mode`, the backend reading `want` bytes."""
    started = []

    def start(mode: str, want: int, how: str):
        g = gateway(m=mode, log_rate=0)
        b = Child([sys.executable, "-c", ENDING_BACKEND, str(docroot / "end"), str(want), how], "end")
        started.append(b)
        b.wait_line("listening", 5)
        return g, b

    yield start
    for b in started:
        b.stop()


def close_of(g, c: RawWS) -> tuple[int | None, str]:
    """The close code the client got (answering it, then closing) and the reason on the
    gateway's close line."""
    frames = []
    while (f := c.recv_frame(timeout=5)) is not None and f.opcode != OP_CLOSE:
        frames.append(f)
    assert f is not None, f"EOF without a close frame after {frames}"
    c.send_frame(OP_CLOSE, f.payload[:2])
    port = c.sock.getsockname()[1]
    assert c.recv_frame(timeout=5) is None  # the gateway's EOF; ours ends the connection
    c.close()
    reason = g.wait_line(rf"conn=\d+:\d+ peer=127\.0\.0\.1:{port} close /end (.*) \(\d+\.\ds\)$").group(1)
    return f.close_code, reason


@pytest.mark.parametrize("mode,want", [("stream", 4), ("framed", 9), ("lines", 4)])
def test_backend_killed_while_a_client_message_is_relayed_gives_1011(ending, mode, want):
    """The client sent the first fragment of a message; the backend read it and was killed.
    The rest of the message can never reach it: close 1011 (in every mode, as for a backend
    message cut short), not the 1000 of a backend that is done."""
    g, b = ending(mode, want, "kill")
    c = RawWS.connect(g.port, "/end")
    c.send_frame(OP_TEXT, b"part", fin=False)
    b.wait_line("read", 5)
    b.proc.kill()
    b.proc.wait(5)
    code, reason = close_of(g, c)
    assert code == 1011, reason
    assert reason.startswith("backend closed while a client message was being relayed (1011)")


def test_stream_backend_killed_with_input_unread_gives_1011(ending):
    """Killed with bytes from the client still unread in its socket: the kernel resets the
    connection (ECONNRESET), which the gateway reports as a backend error, 1011."""
    g, b = ending("stream", 5, "kill")
    c = RawWS.connect(g.port, "/end")
    c.send_frame(OP_TEXT, b"first")
    b.wait_line("read", 5)
    c.send_frame(OP_TEXT, b"never read")
    time.sleep(0.2)
    b.proc.kill()
    b.proc.wait(5)
    code, reason = close_of(g, c)
    assert code == 1011, reason
    assert re.match(r"backend error: ECONN(RESET|ABORTED).* \(1011\)", reason), reason


def test_stream_backend_that_ends_cleanly_gives_1000(ending):
    """The stream backend's way of saying "done": it reads the message, answers, closes its
    socket and exits. The client gets the answer, then close 1000."""
    g, b = ending("stream", 5, "clean")
    c = RawWS.connect(g.port, "/end")
    c.send_frame(OP_TEXT, b"hello")
    assert c.recv_message(timeout=5) == (OP_TEXT, b"done")
    code, reason = close_of(g, c)
    assert code == 1000, reason
    assert reason.startswith("backend closed;"), reason
    assert b.proc.wait(5) == 0
