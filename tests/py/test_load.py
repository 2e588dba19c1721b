"""Backpressure (memory stays flat when a client stops reading) and many concurrent clients."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import threading
import time

import pytest
from harness import OP_BINARY, RawWS, encode_frame, record, recv_record_message, rss_kb
from test_wsload import wsload

MiB = 1024 * 1024


def test_backpressure_slow_reader(py_backend, gateway):
    b = py_backend("py")
    g = gateway(m="framed")
    # small receive buffer: the kernel holds little, so the gateway must stop reading the backend
    c = RawWS.connect(g.port, "/py", rcvbuf=64 * 1024, timeout=10)
    s = b.accept()
    time.sleep(0.3)
    base = rss_kb(g.pid)

    chunk = 64 * 1024
    total = 16 * MiB
    sent = [0]
    digest = hashlib.sha256()
    payloads = []
    rnd = random.Random(1234)
    for _ in range(total // chunk):
        p = rnd.randbytes(chunk)
        payloads.append(p)
        digest.update(p)
    failure = []

    def push():
        try:
            s.settimeout(60)
            for p in payloads:
                s.sendall(record(OP_BINARY, p))
                sent[0] += len(p)
        except Exception as e:  # pragma: no cover - reported below
            failure.append(e)

    t = threading.Thread(target=push, daemon=True)
    t.start()

    # wait until the pusher is stuck (no progress for 1 s), sampling the gateway's RSS
    peak = base
    last, still_since = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        peak = max(peak, rss_kb(g.pid))
        if sent[0] != last:
            last, still_since = sent[0], time.monotonic()
        elif time.monotonic() - still_since > 1.0:
            break
        time.sleep(0.05)
    stuck_at = sent[0]
    for _ in range(10):
        peak = max(peak, rss_kb(g.pid))
        time.sleep(0.05)
    assert stuck_at < total, "the backend could push everything into a client that never reads"
    growth = peak - base
    assert growth < 4096, f"gateway RSS grew by {growth} KiB while the client was not reading"

    # now read everything
    h = hashlib.sha256()
    got = 0
    c.sock.settimeout(30)
    while got < total:
        m = c.recv_message(timeout=30)
        assert m is not None and m[0] == OP_BINARY, m
        h.update(m[1])
        got += len(m[1])
    t.join(10)
    assert not failure, failure
    assert got == total
    assert h.hexdigest() == digest.hexdigest()
    assert rss_kb(g.pid) - base < 4096
    c.close()


def test_backpressure_slow_backend(py_backend, gateway):
    """The other direction: a backend that does not read stops the gateway reading the client."""
    b = py_backend("py")
    g = gateway(m="framed", max_message="1M")
    c = RawWS.connect(g.port, "/py", timeout=10)
    s = b.accept()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    time.sleep(0.3)
    base = rss_kb(g.pid)
    c.sock.setblocking(False)
    sent = 0
    payload = os.urandom(256 * 1024)
    frame = encode_frame(OP_BINARY, payload)
    pending = b""
    deadline = time.monotonic() + 5
    stalled_since = None
    while time.monotonic() < deadline and sent < 64 * MiB:
        if not pending:
            pending = frame
        try:
            n = c.sock.send(pending)
            pending = pending[n:]
            sent += n
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    assert sent < 64 * MiB, "the gateway swallowed 64 MiB for a backend that does not read"
    assert rss_kb(g.pid) - base < 4096
    c.sock.setblocking(True)
    # the backend now reads; every complete message arrives, in order
    for _ in range(sent // len(frame)):
        op, data = recv_record_message(s, timeout=10)
        assert op == OP_BINARY and data == payload
    c.close()


async def _client(url: str, seed: int, count: int) -> int:
    from websockets.asyncio.client import connect

    rnd = random.Random(seed)
    async with connect(url, proxy=None, compression=None, max_size=1 * MiB, open_timeout=20,
                       ping_interval=None, close_timeout=10) as c:
        for i in range(count):
            n = rnd.randint(0, 70_000)
            if rnd.random() < 0.3:
                msg = "".join(rnd.choice("aé€😀z ") for _ in range(n // 3))
            else:
                msg = rnd.randbytes(n)
            await c.send(msg)
            echo = await asyncio.wait_for(c.recv(), 30)
            assert type(echo) is type(msg), (seed, i, type(echo))
            assert echo == msg, f"client {seed} message {i}: echo differs ({len(echo)} vs {len(msg)})"
    return count


def test_many_clients_framed_echo(echo_backend, gateway):
    echo_backend("framed")
    g = gateway(m="framed")
    url = g.url("/echo")

    async def main():
        return await asyncio.wait_for(
            asyncio.gather(*(_client(url, seed, 200) for seed in range(50))), timeout=240
        )

    t0 = time.monotonic()
    done = asyncio.run(main())
    assert done == [200] * 50
    print(f"50 clients x 200 messages in {time.monotonic() - t0:.1f}s")
    assert g.alive()


@pytest.mark.parametrize("direct", [False, True], ids=["relay", "direct"])
def test_burst_of_1000_clients_against_a_backlog_of_8(echo_backend, gateway, direct):
    """1,000 clients connect at once (wsload: 64 handshakes in flight) to `-c 1100` in front of
    websocket_echo `-c 1100 -b 8`. The echo accepts as fast as it can, yet its listen queue of 8
    overflows again and again, and each overflow is a connect that answers EAGAIN: a momentary
    state, which the gateway waits out instead of answering 503. Every client gets its 101 and
    the echo of its message, relayed or handed over (direct mode connects first too)."""
    echo_backend("stream", extra=("-c", "1100", "-b", "8", *(("-d",) if direct else ())))
    g = gateway(c=1100, log_rate=0, ping_interval="0", direct=direct, v=True)
    t0 = time.monotonic()
    rc, res = wsload("--url", g.url("/echo"), "--conns", "1000", "--msgs", "1", "--size", "32",
                     "--duration", "15", timeout=60)
    took = time.monotonic() - t0
    refused = sum("refused 503" in line for line in g.lines)
    waited = sum("busy (listen queue full): connecting again" in line for line in g.lines)
    print(f"1,000 clients in {took:.1f}s: {res['connected']} connected, {res['completed']} echoed, "
          f"{refused} refused 503, {waited} waited for room in the backend's queue")
    assert refused == 0, f"{refused} of 1,000 clients refused 503: {res['first_error']}"
    assert (rc, res["connected"], res["completed"], res["error_total"]) == (0, 1000, 1000, 0), res
    assert waited > 0, "the backend's queue never overflowed: the test tested nothing"
