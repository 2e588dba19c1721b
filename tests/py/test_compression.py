"""permessage-deflate (RFC 7692) end to end: the real gateway, real backends, and two clients
that compress on their own (websockets' extension, and raw frames deflated here with zlib, so
that what travels on the wire is seen bit for bit: RSV1, the stripped tail, the window).

The gateway's answer is always `server_no_context_takeover; client_no_context_takeover`, so
each message here is deflated and inflated on its own, with a fresh zlib stream.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import subprocess
import threading
import time
import zlib

import pytest
from harness import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Child,
    RawWS,
    gateway_bin,
    raw_handshake,
    record,
    recv_record_message,
    wait_until,
)
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate

TAIL = b"\x00\x00\xff\xff"
EXTENSIONS = "Sec-WebSocket-Extensions"
AGREED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
RSV1 = 4  # encode_frame's rsv argument: RSV1 is the highest of the three bits
SIZES = [0, 1, 125, 126, 65535, 65536, 1_000_000]
COMPRESSED = {"compression": "permessage-deflate", "m": "framed", "max_message": "2M"}


# ---- deflate on our side --------------------------------------------------------------------


def deflate(data: bytes, wbits: int = 15) -> bytes:
    """One message's payload as RFC 7692 §7.2.1 sends it: raw DEFLATE, flushed, tail stripped."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[: -len(TAIL)]


def inflate(data: bytes, wbits: int = 15) -> bytes:
    """§7.2.2: the tail put back, then inflated with a window of `wbits`."""
    d = zlib.decompressobj(-wbits)
    out = d.decompress(data + TAIL)
    assert not d.unconsumed_tail
    return out


def text_of(n: int, seed: int = 0) -> bytes:
    """`n` bytes of valid UTF-8 with multi-byte characters, compressible but not trivially."""
    rng = random.Random(seed + n)
    words = ["wsgate", "relais", "grüße", "naïve", "€uro", "日本", "😀", "deflate", "window"]
    parts, size = [], 0
    while size < n:
        w = (rng.choice(words) + " ").encode()
        parts.append(w)
        size += len(w)
    data = b"".join(parts)[:n].decode("utf-8", "ignore").encode()
    return data + b"." * (n - len(data))


def binary_of(n: int, seed: int = 0) -> bytes:
    """`n` bytes, half random (incompressible), half a repeated pattern."""
    rng = random.Random(seed + n + 1)
    half = n // 2
    return rng.randbytes(half) + bytes(range(256)) * ((n - half) // 256) + bytes((n - half) % 256)


class DeflateWS:
    """A raw client that negotiated permessage-deflate: it deflates what it sends and reads the
    gateway's frames as they are, so the tests see RSV1 and the compressed bytes."""

    def __init__(self, port: int, path: str = "/echo", offer: str = "permessage-deflate", rcvbuf=None):
        self.ws = RawWS.connect(port, path, headers={EXTENSIONS: offer}, rcvbuf=rcvbuf)
        self.agreed = self.ws.response.header(EXTENSIONS)

    def send(self, opcode: int, payload: bytes, fragments: int = 1, wbits: int = 15) -> None:
        z = deflate(payload, wbits)
        step = max(1, -(-len(z) // fragments))
        pieces = [z[i : i + step] for i in range(0, len(z), step)] or [b""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            self.ws.send_frame(opcode if i == 0 else OP_CONT, piece, fin=last, rsv=RSV1 if i == 0 else 0)

    def recv(self, timeout: float = 10.0, wbits: int = 15):
        """(opcode, payload, compressed) of the next data message; RFC 7692 §6.1: RSV1 on its
        first frame only."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            f = self.ws.recv_frame(deadline - time.monotonic())
            assert f is not None, "EOF from the gateway"
            assert not f.masked
            if f.opcode in (OP_PING, OP_PONG):
                continue
            assert f.opcode != OP_CLOSE, f"close {f.close_code} from the gateway"
            assert f.opcode == (OP_CONT if frames else f.opcode)
            frames.append(f)
            if f.fin:
                break
        assert all(f.rsv == 0 for f in frames[1:]), [f.rsv for f in frames]
        assert frames[0].rsv in (0, RSV1), frames[0].rsv
        data = b"".join(f.payload for f in frames)
        compressed = frames[0].rsv == RSV1
        return frames[0].opcode, inflate(data, wbits) if compressed else data, compressed

    def conn_id(self, g) -> str:
        """The gateway's name for this connection (`conn=...`), from its open line."""
        port = self.ws.sock.getsockname()[1]
        return g.wait_line(rf"conn=(\S+) peer=127\.0\.0\.1:{port} open ").group(1)

    def expect_close(self, code: int) -> None:
        close, eof = self.ws.wait_close(timeout=10)
        assert close is not None, "no close frame from the gateway"
        assert close.close_code == code, close
        assert eof, "the gateway did not close TCP after the closing handshake"

    def close(self) -> None:
        self.ws.close()


class RecordingEcho:
    """A framed-mode backend of our own: records each message it receives and echoes it back
    as one record, on every connection the gateway makes to it."""

    def __init__(self, py_backend, name: str = "rec"):
        self.backend = py_backend(name)
        self.received: list[tuple[int, bytes]] = []
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                s = self.backend.accept(timeout=60)
            except (TimeoutError, OSError):
                return
            self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        try:
            while True:
                opcode, payload = recv_record_message(s, timeout=60)
                if opcode == OP_CLOSE:
                    return
                self.received.append((opcode, payload))
                s.sendall(record(opcode, payload))
        except (EOFError, OSError):
            return


@pytest.fixture
def echo_gw(echo_backend, gateway):
    """websocket_echo (framed, messages up to 4 MiB) behind a gateway compressing every endpoint."""
    echo_backend("framed", extra=["-M", str(4 << 20)])
    return gateway(**COMPRESSED)


def ws_deflate(ws, url: str, **kw):
    """websockets' client with its permessage-deflate offer (`permessage-deflate;
    client_max_window_bits`)."""
    kw.setdefault("max_size", None)
    return ws(url, compression="deflate", **kw)


def deflate_in_use(c) -> PerMessageDeflate:
    (ext,) = c.protocol.extensions
    assert isinstance(ext, PerMessageDeflate)
    return ext


# ---- negotiation ------------------------------------------------------------------------------


def test_answer_is_exact(echo_gw):
    status, headers, _ = raw_handshake(echo_gw.port, "/echo", {EXTENSIONS: "permessage-deflate"})
    assert status == 101
    assert headers["sec-websocket-extensions"] == AGREED
    echo_gw.wait_line(r"conn=\S+ peer=\S+ open /echo mode=framed permessage-deflate$")


def test_websockets_client_offer_is_answered(echo_gw, ws):
    c = ws_deflate(ws, echo_gw.url("/echo"))
    assert c.response.headers[EXTENSIONS] == AGREED
    ext = deflate_in_use(c)
    assert ext.remote_no_context_takeover and ext.local_no_context_takeover
    assert ext.remote_max_window_bits == 15


def test_configured_window_is_announced(echo_backend, gateway, ws):
    echo_backend("framed")
    g = gateway(compression_window=10, **COMPRESSED)
    status, headers, _ = raw_handshake(g.port, "/echo", {EXTENSIONS: "permessage-deflate"})
    assert status == 101
    assert headers["sec-websocket-extensions"] == AGREED + "; server_max_window_bits=10"
    # The client is held to it: websockets refuses a stream that reaches further back.
    c = ws_deflate(ws, g.url("/echo"))
    assert deflate_in_use(c).remote_max_window_bits == 10
    msg = text_of(200_000)
    c.send(msg.decode())
    assert c.recv(timeout=10) == msg.decode()


@pytest.mark.parametrize("bits", [8, 9, 12])
def test_client_asks_for_a_smaller_server_window(echo_gw, bits):
    """The answer carries the client's window, and what the gateway sends inflates within it
    (zlib's inflater rejects a distance past its window)."""
    c = DeflateWS(echo_gw.port, offer=f"permessage-deflate; server_max_window_bits={bits}")
    assert c.agreed == AGREED + f"; server_max_window_bits={bits}"
    # Repeats at distances of 1 KiB .. 16 KiB: matches a 15-bit window would take.
    rng = random.Random(bits)
    block = rng.randbytes(16 << 10)
    msg = block * 6
    c.send(OP_BINARY, msg)
    opcode, payload, compressed = c.recv(wbits=bits)
    assert (opcode, compressed) == (OP_BINARY, True)
    assert payload == msg


def test_client_window_parameter_is_never_answered(echo_gw):
    c = DeflateWS(echo_gw.port, offer="permessage-deflate; client_max_window_bits=10")
    assert c.agreed == AGREED
    # The client keeps within 10 bits, which the gateway's 15-bit inflater reads.
    msg = text_of(50_000)
    c.send(OP_TEXT, msg, wbits=10)
    assert c.recv() == (OP_TEXT, msg, True)


@pytest.mark.parametrize(
    "offer, answer",
    [
        ("permessage-deflate; server_max_window_bits=7", None),  # out of range: declined
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits", None),  # the value is required
        ("permessage-deflate; mystery", None),  # unknown parameter
        ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
        ("x-webkit-deflate-frame", None),  # another extension
        ("permessage-deflate; mystery, permessage-deflate; server_max_window_bits=11",
         AGREED + "; server_max_window_bits=11"),  # the first acceptable offer
        ('permessage-deflate; server_max_window_bits="12"', AGREED + "; server_max_window_bits=12"),
        ("PerMessage-Deflate ;server_no_context_takeover", AGREED),
    ],
)
def test_offers_declined_or_chosen(echo_gw, offer, answer):
    resp, sock = raw_handshake(echo_gw.port, "/echo", {EXTENSIONS: offer}, keep=True)
    sock.close()
    assert resp.status == 101, resp.raw
    assert resp.header(EXTENSIONS) == answer


def test_offer_in_two_headers(echo_gw):
    req = (
        f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{echo_gw.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: x-other; a=1\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=13\r\n\r\n"
    ).encode()
    status, headers, _ = raw_handshake(echo_gw.port, request=req)
    assert status == 101
    assert headers["sec-websocket-extensions"] == AGREED + "; server_max_window_bits=13"


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate;",
        "; permessage-deflate",
        "permessage-deflate; client_max_window_bits=",
        'permessage-deflate; server_max_window_bits="12',
        "permessage-deflate server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=1 0",
    ],
)
def test_malformed_header_is_400(echo_gw, value):
    mark = len(echo_gw.lines)
    status, _, _ = raw_handshake(echo_gw.port, "/echo", {EXTENSIONS: value})
    assert status == 400
    echo_gw.wait_line(r"conn=\S+ peer=\S+ close /echo refused 400: bad Sec-WebSocket-Extensions", 5, mark)


def test_no_offer_no_extension(echo_gw, ws):
    status, headers, _ = raw_handshake(echo_gw.port, "/echo")
    assert status == 101 and "sec-websocket-extensions" not in headers
    c = ws(echo_gw.url("/echo"))  # harness default: no compression offered
    assert EXTENSIONS not in c.response.headers
    c.send("plain")
    assert c.recv(timeout=5) == "plain"


def test_compression_off_answers_no_extension(echo_backend, gateway, ws):
    """Without --compression the offer is ignored, a malformed header included (the header is
    not read where there is nothing to negotiate)."""
    echo_backend("framed")
    g = gateway(m="framed")
    for value in ["permessage-deflate", "permessage-deflate;"]:
        status, headers, _ = raw_handshake(g.port, "/echo", {EXTENSIONS: value})
        assert status == 101 and "sec-websocket-extensions" not in headers
    c = ws_deflate(ws, g.url("/echo"))
    assert c.protocol.extensions == []
    c.send("x" * 1000)
    assert c.recv(timeout=5) == "x" * 1000


@pytest.mark.parametrize(
    "setting, on, off",
    [
        (["on=permessage-deflate"], "on", "off"),
        (["permessage-deflate", "off=none"], "on", "off"),
    ],
)
def test_per_endpoint_setting(echo_backend, gateway, ws, setting, on, off):
    echo_backend("framed", name="on")
    echo_backend("framed", name="off")
    g = gateway(m="framed", compression=setting)
    status, headers, _ = raw_handshake(g.port, f"/{on}", {EXTENSIONS: "permessage-deflate"})
    assert status == 101 and headers["sec-websocket-extensions"] == AGREED
    status, headers, _ = raw_handshake(g.port, f"/{off}", {EXTENSIONS: "permessage-deflate"})
    assert status == 101 and "sec-websocket-extensions" not in headers
    for name, compressed in [(on, True), (off, False)]:
        c = ws_deflate(ws, g.url(f"/{name}"))
        assert bool(c.protocol.extensions) == compressed
        c.send("per endpoint " * 50)
        assert c.recv(timeout=5) == "per endpoint " * 50
    g.wait_line(rf"open /{on} mode=framed permessage-deflate$")
    g.wait_line(rf"open /{off} mode=framed$")


# ---- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_raw_round_trip_on_the_wire(py_backend, gateway, size):
    """Compressed frames both ways (RSV1 on the first frame), plain records to the backend."""
    backend = RecordingEcho(py_backend)
    g = gateway(**COMPRESSED)
    c = DeflateWS(g.port, "/rec")
    assert c.agreed == AGREED
    text, binary = text_of(size), binary_of(size)
    c.send(OP_TEXT, text)
    assert c.recv() == (OP_TEXT, text, True)
    c.send(OP_BINARY, binary, fragments=3)
    assert c.recv() == (OP_BINARY, binary, True)
    # The backend got the inflated payloads, as records of the same type.
    assert backend.received == [(OP_TEXT, text), (OP_BINARY, binary)]


@pytest.mark.parametrize("size", SIZES)
def test_websockets_round_trip_through_echo(echo_gw, ws, size):
    c = ws_deflate(ws, echo_gw.url("/echo"))
    deflate_in_use(c)
    text, binary = text_of(size).decode(), binary_of(size)
    c.send(text)
    assert c.recv(timeout=10) == text
    c.send(binary)
    assert c.recv(timeout=10) == binary


def test_uncompressed_messages_still_pass_on_a_compressed_connection(echo_gw):
    """RSV1 is per message (§6): a client may send some messages as they are."""
    c = DeflateWS(echo_gw.port)
    c.ws.send_frame(OP_TEXT, b"as it is")
    assert c.recv() == (OP_TEXT, b"as it is", True)
    c.ws.send_frame(OP_BINARY, b"ab", fin=False)
    c.ws.send_frame(OP_PING, b"p")
    c.ws.send_frame(OP_CONT, b"cd")
    assert c.recv() == (OP_BINARY, b"abcd", True)


@pytest.mark.parametrize("size", [0, 1, 3000])
def test_compressed_message_ending_with_an_empty_frame(echo_gw, size):
    """The last frame carries no byte: the tail alone ends the message, with nothing more
    coming from the client."""
    c = DeflateWS(echo_gw.port)
    msg = text_of(size)
    c.ws.send_frame(OP_TEXT, deflate(msg), fin=False, rsv=RSV1)
    c.ws.send_frame(OP_CONT, b"", fin=True)
    assert c.recv(timeout=5) == (OP_TEXT, msg, True)


def stored(data: bytes) -> bytes:
    """`data` in one non-final stored DEFLATE block: inflating it gives as many bytes as it
    takes in, so the inflated output ends exactly where the input does."""
    return b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


def test_inflated_piece_that_fills_its_room_exactly(echo_gw):
    """Stored blocks of sizes around two and three relay buffers (16 KiB): for some of them the
    last frame's bytes, decoded as far as the backend buffer has room, inflate to exactly that
    room, and the tail is inflated in a step of its own with no client bytes left to read."""
    c = DeflateWS(echo_gw.port)
    for n in [*range(32_400, 32_560), *range(48_640, 48_800)]:
        msg = bytes([n % 251]) * n
        c.ws.send_frame(OP_BINARY, stored(msg), rsv=RSV1)
        assert c.recv(timeout=3) == (OP_BINARY, msg, True), n


def test_compressed_message_fragmented_byte_by_byte_with_pings(echo_gw):
    c = DeflateWS(echo_gw.port)
    msg = text_of(3000)
    z = deflate(msg)
    c.ws.send_frame(OP_TEXT, z[:1], fin=False, rsv=RSV1)
    for i in range(1, len(z)):
        c.ws.send_frame(OP_CONT, z[i : i + 1], fin=False)
        if i % 100 == 0:
            c.ws.send_frame(OP_PING, b"x")
    c.ws.send_frame(OP_CONT, b"", fin=True)
    assert c.recv() == (OP_TEXT, msg, True)


def test_many_messages_on_one_connection(echo_gw):
    """Each message's stream is fresh (no context takeover): 200 messages of the same text
    inflate on their own."""
    c = DeflateWS(echo_gw.port)
    for i in range(200):
        msg = b"message %d " % i + text_of(500)
        c.send(OP_TEXT, msg)
        assert c.recv() == (OP_TEXT, msg, True)


# ---- bad compressed data ----------------------------------------------------------------------


def bomb() -> bytes:
    """About 16 KiB of DEFLATE that inflates to 16 MiB of zeros."""
    z = deflate(bytes(16 << 20))
    assert 15 << 10 < len(z) < 17 << 10, len(z)
    return z


def test_decompression_bomb_closes_1009_and_others_go_on(echo_backend, gateway, ws):
    echo_backend("framed")
    g = gateway(compression="permessage-deflate", m="framed", max_message="1M")
    other = ws_deflate(ws, g.url("/echo"))
    other.send("before")
    assert other.recv(timeout=5) == "before"

    c = DeflateWS(g.port)
    conn = c.conn_id(g)
    started = time.monotonic()
    c.ws.send_frame(OP_BINARY, bomb(), rsv=RSV1)
    c.expect_close(1009)
    assert time.monotonic() - started < 5
    c.close()
    g.wait_line(rf"conn={re.escape(conn)} peer=\S+ close /echo protocol error \(1009\): message too big", 5)

    # The other connection was not disturbed, and a new one works.
    other.send("after")
    assert other.recv(timeout=5) == "after"
    fresh = DeflateWS(g.port)
    fresh.send(OP_TEXT, b"fresh")
    assert fresh.recv() == (OP_TEXT, b"fresh", True)


def test_inflated_size_counts_against_max_message(echo_backend, gateway):
    """Max message is the inflated size: a message of exactly the limit passes, one more byte
    (from a tiny compressed frame) is 1009."""
    echo_backend("framed", extra=["-M", str(1 << 20)])
    g = gateway(compression="permessage-deflate", m="framed", max_message="64K")
    c = DeflateWS(g.port)
    c.send(OP_BINARY, bytes(64 << 10))
    assert c.recv() == (OP_BINARY, bytes(64 << 10), True)
    c.send(OP_BINARY, bytes((64 << 10) + 1))
    c.expect_close(1009)


@pytest.mark.parametrize(
    "opcode, payload",
    [
        (OP_BINARY, b"\x07\x00"),  # block type 3: reserved
        (OP_BINARY, b"\x00\x05\x00\x00\x00"),  # a stored block whose lengths disagree
        (OP_BINARY, zlib.compress(b"zlib header, not raw")),
        # A final block, then more bytes after it.
        (OP_BINARY, (lambda c: c.compress(b"end") + c.flush(zlib.Z_FINISH))(zlib.compressobj(6, zlib.DEFLATED, -15)) + b"\x00"),
        (OP_TEXT, deflate(b"\xff\xfe not UTF-8")),
        (OP_TEXT, deflate("truncated €".encode()[:-1])),
    ],
)
def test_invalid_compressed_data_is_1007(echo_gw, opcode, payload):
    c = DeflateWS(echo_gw.port)
    conn = c.conn_id(echo_gw)
    c.ws.send_frame(opcode, payload, rsv=RSV1)
    c.expect_close(1007)
    c.close()
    why = "invalid UTF-8 in text" if opcode == OP_TEXT else "invalid compressed data"
    echo_gw.wait_line(rf"conn={re.escape(conn)} peer=\S+ close /echo protocol error \(1007\): {why};", 5)


def test_final_block_without_tail_is_accepted(echo_gw):
    """A sender may end a message with a final block (BFINAL set, RFC 7692 §7.2.3): nothing
    follows it, the tail included."""
    c = DeflateWS(echo_gw.port)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = z.compress(b"finished") + z.flush(zlib.Z_FINISH)
    c.ws.send_frame(OP_TEXT, payload, rsv=RSV1)
    assert c.recv() == (OP_TEXT, b"finished", True)


@pytest.mark.parametrize(
    "frames",
    [
        [(OP_TEXT, b"a", False, 0), (OP_CONT, b"b", True, RSV1)],  # RSV1 on a continuation
        [(OP_PING, b"p", True, RSV1)],  # RSV1 on a control frame
        [(OP_TEXT, b"a", True, 2)],  # RSV2: nothing negotiated it
    ],
)
def test_rsv_bits_outside_the_extension_are_1002(echo_gw, frames):
    c = DeflateWS(echo_gw.port)
    for opcode, payload, fin, rsv in frames:
        c.ws.send_frame(opcode, payload, fin=fin, rsv=rsv)
    c.expect_close(1002)


# ---- the contexts' memory -----------------------------------------------------------------------

POOL_RE = r"compression: (\d+) \+ (\d+) narrow compressors, decompressors for (\d+) connections"


def test_decompressors_full_goes_uncompressed_and_a_close_frees_one(echo_backend, gateway, ws):
    echo_backend("framed")
    g = gateway(compression="permessage-deflate", m="framed", compression_memory="700K")
    n = int(g.wait_line(POOL_RE).group(3))
    assert 1 <= n <= 4, n
    held = [ws_deflate(ws, g.url("/echo")) for _ in range(n)]
    for c in held:
        deflate_in_use(c)

    mark = len(g.lines)
    extra = ws_deflate(ws, g.url("/echo"))
    assert extra.protocol.extensions == []
    assert EXTENSIONS not in extra.response.headers
    port = extra.socket.getsockname()[1]
    g.wait_line(rf"conn=\S+ peer=127\.0\.0\.1:{port} compression memory full: /echo goes uncompressed", 5, mark)
    extra.send("still works " * 100)
    assert extra.recv(timeout=5) == "still works " * 100
    # The compressed connections go on as they were.
    for c in held:
        c.send("held " * 100)
        assert c.recv(timeout=5) == "held " * 100

    mark = len(g.lines)
    held.pop().close()
    g.wait_line(r"close /echo client closed \(1000\)", 5, mark)
    # Refused upgrades, connections that offered nothing and the one that went without hold
    # no promise: the freed one is still there after them.
    for _ in range(n + 1):
        status, _, _ = raw_handshake(g.port, "/echo", {EXTENSIONS: "permessage-deflate;"})
        assert status == 400
        ws(g.url("/echo")).close()
    extra.close()
    again = ws_deflate(ws, g.url("/echo"))
    deflate_in_use(again)
    again.send("again " * 100)
    assert again.recv(timeout=5) == "again " * 100
    mark = len(g.lines)
    still_full = DeflateWS(g.port)
    assert still_full.agreed is None
    g.wait_line(r"compression memory full", 5, mark)


def test_a_client_that_does_not_read_does_not_hold_the_compressor(py_backend, gateway):
    """One compressor: a message to a client that does not read gives it back once that
    client's buffer is full, so another client's messages are compressed meanwhile; the first
    message still arrives whole once its client reads (stored blocks where no compressor was
    free)."""
    backend = py_backend("py")
    g = gateway(compression="permessage-deflate", m="framed", compression_memory="700K")
    assert int(g.wait_line(POOL_RE).group(1)) == 1
    slow = DeflateWS(g.port, "/py", rcvbuf=4096)
    slow_backend = backend.accept()
    quick = DeflateWS(g.port, "/py")
    quick_backend = backend.accept()
    assert slow.agreed == quick.agreed == AGREED

    big = random.Random(7).randbytes(8 << 20)  # incompressible: it fills every buffer
    sender = threading.Thread(target=lambda: slow_backend.sendall(record(OP_BINARY, big)), daemon=True)
    sender.start()
    time.sleep(0.5)
    assert sender.is_alive(), "the slow client's message went through: its buffers are not full"

    msg = text_of(20_000)
    for _ in range(3):
        quick_backend.sendall(record(OP_TEXT, msg))
        assert quick.recv() == (OP_TEXT, msg, True)

    assert slow.recv(timeout=30) == (OP_BINARY, big, True)
    sender.join(10)
    quick_backend.sendall(record(OP_TEXT, msg))
    assert quick.recv() == (OP_TEXT, msg, True)


# ---- configuration ----------------------------------------------------------------------------


def test_compression_with_direct_mode_is_a_config_error(docroot):
    r = subprocess.run(
        [gateway_bin(), "-a", "127.0.0.1", "-p", "0", "-R", str(docroot), "--direct", "--compression",
         "permessage-deflate"],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 2, r.stderr
    assert "compression with direct mode" in r.stderr, r.stderr
    # Off everywhere it is not an error.
    r = subprocess.run(
        [gateway_bin(), "--check", "-a", "127.0.0.1", "-p", "0", "-R", str(docroot), "--direct",
         "--compression", "none"],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--compression", "gzip"], 'unknown compression "gzip"'),
        (["--compression", "permessage-deflate", "--compression-window", "8"], "window is 9 to 15 bits"),
        (["--compression", "permessage-deflate", "--compression-level", "0"], "level is 1 to 9"),
        (["--compression", "permessage-deflate", "--compression-memory", "64K"], "holds no compressor"),
    ],
)
def test_bad_settings_are_config_errors(docroot, args, message):
    r = subprocess.run([gateway_bin(), "-a", "127.0.0.1", "-p", "0", "-R", str(docroot), *args],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr


def config_file(path, docroot, websocket: str, top: str = "") -> None:
    path.write_text(f"""
{top}
servers = ({{
    addr = "127.0.0.1";
    port = 0;
    websocket = {{ docroot = "{docroot}"; mode = "framed"; {websocket} }};
}});
""")


def test_config_file_forms(tmp_path, docroot, echo_backend):
    echo_backend("framed", name="on")
    echo_backend("framed", name="off")
    conf = tmp_path / "all.conf"
    config_file(conf, docroot, 'compression = "permessage-deflate";',
                "compression_window = 11; compression_level = 1; compression_memory = 1048576;")
    conf2 = tmp_path / "some.conf"
    config_file(conf2, docroot, 'compression = { on = "permessage-deflate"; off = "none"; };')
    for path, expect in [
        (conf, {"on": AGREED + "; server_max_window_bits=11", "off": AGREED + "; server_max_window_bits=11"}),
        (conf2, {"on": AGREED, "off": None}),
    ]:
        g = Child([gateway_bin(), "-f", str(path)], "wsgate")
        try:
            (port,) = g.listening_ports(1)
            for name, answer in expect.items():
                c = DeflateWS(port, f"/{name}")
                assert c.agreed == answer, (path.name, name)
                msg = text_of(30_000)
                if answer:
                    c.send(OP_TEXT, msg)
                else:
                    c.ws.send_frame(OP_TEXT, msg)
                wbits = 11 if path == conf else 15
                assert c.recv(wbits=wbits) == (OP_TEXT, msg, answer is not None)
                c.close()
        finally:
            g.stop()
            print(g.log_text())
    check = subprocess.run([gateway_bin(), "--check", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    assert 'compression = "permessage-deflate"' in check.stdout
    assert "compression_window = 11" in check.stdout


def test_config_file_compression_with_direct_names_the_line(tmp_path, docroot):
    conf = tmp_path / "direct.conf"
    conf.write_text(f"""servers = ({{
    addr = "127.0.0.1";
    port = 0;
    websocket = {{
        docroot = "{docroot}";
        options = "direct";
        compression = {{ a = "none"; b = "permessage-deflate"; }};
    }};
}});
""")
    r = subprocess.run([gateway_bin(), "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert re.search(rf"{re.escape(str(conf))}:7:\d+: .*compression with direct mode", r.stderr), r.stderr
