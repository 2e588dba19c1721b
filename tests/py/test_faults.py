"""The fault suite: hostile clients, failing backends, floods and reloads.

Every fault runs inside `FaultCheck`, which

* keeps `BYSTANDERS` connections to an echo backend open and echoing (a message every 50 ms,
  each echo compared) from before the fault until after it, and checks each of them once more
  at the end: no error, no echo slower than `MAX_ECHO_S`, and each echoed during the fault;
* counts the gateway's descriptors (/proc/PID/fd) before the fault and after it, once the
  faulty connections are gone (it waits up to `SETTLE_S` for them to go): the counts must be
  equal;
* samples the gateway's VmRSS before, during (every 20 ms, for the peak) and after the fault,
  and checks the growth against the bound the test states.

Most faults run twice (`rounds=2`): the first round touches the buffers of the pool the fault
needs for the first time (they are allocated at start-up but the kernel maps pages on first
use), so "flat" is checked on the second round, which must not grow RSS by more than
`FLAT_KB`; the first round's growth is bounded by the test's own figure.

Each test also asserts the specific answer to its fault: an HTTP status, a WebSocket close code,
or the gateway's close log line naming the connection (`conn=<slot>:<gen> peer=<ip>:<port>`).
`pytest -s` prints a `FAULT` line per test with the measured figures.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from harness import (
    LISTEN_RE,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Child,
    PyBackend,
    RawWS,
    build_request,
    encode_frame,
    fd_count,
    gateway_bin,
    open_socket,
    raw_handshake,
    read_response_head,
    rss_kb,
    wait_until,
)

MiB = 1024 * 1024
BYSTANDERS = 3
MAX_ECHO_S = 3.0
SETTLE_S = 8.0
# RSS growth allowed over a round that repeats a fault already seen once.
FLAT_KB = 256


# --------------------------------------------------------------------------------------------
# The shared checker
# --------------------------------------------------------------------------------------------


class Bystander:
    """A connection that echoes a random message every 50 ms in its own thread."""

    def __init__(self, port: int, path: str, seed: int):
        self.ws = RawWS.connect(port, path, timeout=10)
        self.rnd = random.Random(seed)
        self.echoes = 0
        self.worst = 0.0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"bystander-{seed}")

    def start(self) -> None:
        self._thread.start()

    def echo_once(self) -> None:
        n = self.rnd.choice((1, 100, 1000, 5000))
        payload = bytes(self.rnd.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
        payload = payload[:n]
        t0 = time.monotonic()
        self.ws.send_frame(OP_BINARY, payload)
        got = self.ws.recv_message(timeout=10)  # answers the gateway's pings, if any
        took = time.monotonic() - t0
        if got != (OP_BINARY, payload):
            raise AssertionError(f"echo of {n} bytes came back as {str(got)[:120]}")
        self.worst = max(self.worst, took)
        self.echoes += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.echo_once()
            except Exception as e:  # reported by check()
                self.error = f"{type(e).__name__}: {e}"
                return
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def close(self) -> None:
        try:
            self.ws.send_close(1000)
            self.ws.wait_close(timeout=3)
        except OSError:
            pass
        self.ws.close()


class FaultCheck:
    """Bystanders, descriptor counts and RSS around a fault; see the module doc.

    `grow_kb`: the bound on RSS growth from before the fault to after it (all rounds);
    `peak_kb`: on the growth at the peak, during the fault."""

    def __init__(self, name: str, g, path: str = "/echo", grow_kb: int = 1024,
                 peak_kb: int | None = None, pid: int | None = None):
        self.name = name
        self.g = g
        self.pid = pid if pid is not None else g.pid
        self.path = path
        self.grow_kb = grow_kb
        self.peak_kb = peak_kb if peak_kb is not None else grow_kb
        self.bystanders: list[Bystander] = []
        self.rss: list[int] = []
        self.fds: list[int] = []
        self.peak = 0
        self._sampling = False
        self._sampler: threading.Thread | None = None

    # -- set-up and the figures

    def __enter__(self) -> "FaultCheck":
        for i in range(BYSTANDERS):
            b = Bystander(self.g.port, self.path, seed=i)
            self.bystanders.append(b)
            b.echo_once()
        for b in self.bystanders:
            b.start()
        time.sleep(0.3)
        self.fds.append(fd_count(self.pid))
        self.rss.append(rss_kb(self.pid))
        self.peak = self.rss[0]
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True, name="rss-sampler")
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while self._sampling:
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.02)

    def settle(self) -> None:
        """Waits for the fault's connections to be gone (descriptors back to the count before),
        then records the descriptor count and RSS of this point."""
        base = self.fds[0]
        wait_until(lambda: fd_count(self.pid) <= base, timeout=SETTLE_S, interval=0.05)
        time.sleep(0.1)
        self.fds.append(fd_count(self.pid))
        self.rss.append(rss_kb(self.pid))

    def run(self, fault, rounds: int = 2) -> None:
        """Runs `fault(round)` `rounds` times, settling after each."""
        for r in range(rounds):
            fault(r)
            self.settle()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._sampling = False
        if self._sampler is not None:
            self._sampler.join(2)
        for b in self.bystanders:
            b.stop()
        if exc_type is not None:
            for b in self.bystanders:
                b.close()
            return
        if len(self.fds) == 1:
            self.settle()
        errors = [f"bystander {i}: {b.error}" for i, b in enumerate(self.bystanders) if b.error]
        # ... and each still echoes now, after the fault.
        for i, b in enumerate(self.bystanders):
            if b.error is None:
                try:
                    b.echo_once()
                except Exception as e:
                    errors.append(f"bystander {i} after the fault: {type(e).__name__}: {e}")
        for b in self.bystanders:
            b.close()
        rss0 = self.rss[0]
        line = (
            f"FAULT {self.name}: fds {' -> '.join(map(str, self.fds))}; "
            f"RSS KiB {' -> '.join(map(str, self.rss))} (peak {self.peak}, "
            f"bounds +{self.grow_kb} total, +{self.peak_kb} peak, +{FLAT_KB} per repeat); "
            f"bystander echoes {[b.echoes for b in self.bystanders]}, "
            f"worst {max(b.worst for b in self.bystanders):.2f}s"
        )
        print(line)
        report = os.environ.get("WSGATE_FAULTS_REPORT")
        if report:
            with open(report, "a") as f:
                f.write(line + "\n")
        assert not errors, errors
        for i, b in enumerate(self.bystanders):
            assert b.echoes >= 3, f"bystander {i} echoed only {b.echoes} times during the fault"
            assert b.worst <= MAX_ECHO_S, f"bystander {i}: an echo took {b.worst:.2f}s"
        assert all(n == self.fds[0] for n in self.fds), f"descriptor leak: {self.fds}"
        assert self.rss[-1] - rss0 <= self.grow_kb, (
            f"RSS grew by {self.rss[-1] - rss0} KiB (bound {self.grow_kb}): {self.rss}"
        )
        assert self.peak - rss0 <= self.peak_kb, (
            f"RSS peak {self.peak - rss0} KiB over the start (bound {self.peak_kb})"
        )
        for a, b in zip(self.rss[1:], self.rss[2:]):
            assert b - a <= FLAT_KB, f"RSS still grew by {b - a} KiB on a repeated round: {self.rss}"


def close_line(g, local_port: int, pattern: str, timeout: float = 10.0) -> str:
    """The gateway's close log line for the connection from 127.0.0.1:`local_port` (any peer
    address with that port); its reason (after `close /<name> `, without the duration at the
    end) must match `pattern`."""
    rx = re.compile(rf"conn=\d+:\d+ peer=\S+:{local_port} close /\S* (.*?)(?: \(\d+\.\ds\))?$")
    m = g.wait_line(rx, timeout)
    reason = m.group(1)
    assert re.search(pattern, reason), f"close line for :{local_port} says {reason!r}, not {pattern!r}"
    return reason


def local_port(sock: socket.socket) -> int:
    return sock.getsockname()[1]


@pytest.fixture
def gw(echo_backend, gateway):
    """The gateway most faults use: framed mode, the echo backend at /echo for the bystanders,
    every log line kept (no rate limit, so that each faulty connection's line can be found)."""

    def start(**opts):
        echo_backend("framed")
        opts.setdefault("m", "framed")
        opts.setdefault("log_rate", 0)
        return gateway(**opts)

    return start


# --------------------------------------------------------------------------------------------
# Backend faults
# --------------------------------------------------------------------------------------------

# A backend of its own process, so that it can really be killed (SIGKILL: no close, no
# shutdown; the kernel closes its sockets). "down": it sends a record header promising 1 MiB
# and 64 KiB of it, then waits. "up": it reads 1000 bytes of what the client sends, then waits.
DYING_BACKEND = r"""
import socket, struct, sys, time
path, how = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(4)
print("listening", file=sys.stderr, flush=True)
c, _ = s.accept()
if how == "down":
    c.sendall(struct.pack("!BI", 0x82, 1 << 20) + b"x" * 65536)
    print("sent part of a message", file=sys.stderr, flush=True)
else:
    n = 0
    while n < 1000:
        n += len(c.recv(1000 - n))
    print("read part of a message", file=sys.stderr, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("direction", ["down", "up"])
def test_backend_killed_mid_message(gw, docroot, direction):
    """SIGKILL to a backend in the middle of a message. Down (the backend was sending): the
    client gets what came, then close 1011 (the message can never be completed). Up (the client
    was sending a 4 MiB message): close 1011 too, and the gateway then reads the client's
    remaining input until its EOF instead of waiting out the close timeout with a full buffer.
    Other connections do not notice."""
    g = gw(max_message="8M", close_timeout="5s")

    def fault(r):
        path = docroot / f"victim{r}"
        b = Child([sys.executable, "-c", DYING_BACKEND, str(path), direction], f"victim{r}")
        try:
            b.wait_line("listening", 5)
            c = RawWS.connect(g.port, f"/victim{r}", timeout=10)
            port = local_port(c.sock)
            sender = None
            if direction == "down":
                b.wait_line("sent part", 5)
                f = c.recv_frame(timeout=5)
                assert f is not None and f.opcode == OP_BINARY and not f.fin, f
            else:
                big = encode_frame(OP_BINARY, os.urandom(4 * MiB))

                def send():
                    with contextlib.suppress(OSError):
                        c.sock.sendall(big)

                sender = threading.Thread(target=send, daemon=True)
                sender.start()
                b.wait_line("read part", 5)
            time.sleep(0.2)
            b.proc.kill()
            b.proc.wait(5)
            t0 = time.monotonic()
            close, eof = c.wait_close(timeout=10)
            # The gateway reads (and drops) what the client still sends until the client's
            # EOF, rather than waiting for the close timeout (5 s) with a full buffer.
            assert eof and time.monotonic() - t0 < 2.5, (eof, time.monotonic() - t0)
            with contextlib.suppress(OSError):
                c.sock.shutdown(socket.SHUT_RDWR)  # ends a send still blocked in the thread
            if sender is not None:
                sender.join(10)
            c.close()
            assert close is not None and close.close_code == 1011, close
            close_line(g, port, r"\(1011\)")
        finally:
            b.stop()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    with FaultCheck(f"backend killed mid-message ({direction})", g, grow_kb=1024) as chk:
        chk.run(fault)


def test_backend_that_never_reads(gw, py_backend):
    """A backend that accepts and never reads: the gateway stops reading the client (the
    client's sends stall well before 64 MiB), its memory does not follow the client. When the
    backend finally goes away with the data unread, the client gets close 1011."""
    g = gw(max_message="1M", close_timeout="5s")

    def fault(r):
        b = py_backend(f"deaf{r}")
        c = RawWS.connect(g.port, f"/deaf{r}", timeout=10)
        port = local_port(c.sock)
        s = b.accept()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        frame = encode_frame(OP_BINARY, os.urandom(256 * 1024))
        c.sock.setblocking(False)
        sent, pending, stalled_since = 0, b"", None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sent < 64 * MiB:
            pending = pending or frame
            try:
                n = c.sock.send(pending)
                pending, sent, stalled_since = pending[n:], sent + n, None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.0:
                    break
                time.sleep(0.01)
        c.sock.setblocking(True)
        c.sock.settimeout(10)
        assert sent < 8 * MiB, f"the gateway took {sent} bytes for a backend that never reads"
        s.close()  # gone, with the data unread
        t0 = time.monotonic()
        close, eof = c.wait_close(timeout=10)
        c.close()
        assert eof and time.monotonic() - t0 < 2.5, (eof, time.monotonic() - t0)
        assert close is not None and close.close_code == 1011, close
        close_line(g, port, r"\(1011\)")
        b.close()

    with FaultCheck("backend that never reads", g, grow_kb=1024) as chk:
        chk.run(fault)


# --------------------------------------------------------------------------------------------
# Client faults
# --------------------------------------------------------------------------------------------


def test_client_never_reads_16mib_message(gw, py_backend):
    """The backend sends a 16 MiB message to a client that never reads (64 KiB receive buffer):
    the gateway holds at most its buffers, the backend is stalled, and the ping timeout (1 s
    interval, 1 s for the pong) ends the connection: close line "ping timeout (1011)", the
    backend gets EOF, and the slot and descriptors are given back."""
    g = gw(ping_interval="1s", pong_timeout="1s", close_timeout="1s")

    def fault(r):
        b = py_backend(f"firehose{r}")
        c = RawWS.connect(g.port, f"/firehose{r}", rcvbuf=64 * 1024, timeout=10)
        port = local_port(c.sock)
        s = b.accept()
        pushed = [0]
        ended = []

        def push():
            try:
                s.settimeout(30)
                s.sendall(struct.pack("!BI", 0x82, 16 * MiB))
                chunk = b"\xa5" * (256 * 1024)
                while pushed[0] < 16 * MiB:
                    s.sendall(chunk)
                    pushed[0] += len(chunk)
                ended.append("all sent")
            except OSError as e:
                ended.append(type(e).__name__)

        t = threading.Thread(target=push, daemon=True)
        t.start()
        close_line(g, port, r"ping timeout \(1011\)", timeout=15)
        t.join(10)
        assert pushed[0] < 16 * MiB, "a client that never reads swallowed 16 MiB"
        assert ended and ended[0] != "all sent", ended
        c.close()
        s.close()
        b.close()

    with FaultCheck("client never reads a 16 MiB message", g, grow_kb=1024) as chk:
        chk.run(fault)


def test_garbage_after_upgrade(gw):
    """Bytes that are not client frames after the 101: each gets close 1002 and its line."""
    g = gw()
    corpus = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a second request ('G' sets RSV bits)
        b"\x81\x05hello",  # unmasked frame
        b"\x00" * 64,  # a continuation with no message
        b"\x8f\x80\x00\x00\x00\x00",  # reserved opcode 0xF
        bytes([0xC1, 0x80, 0, 0, 0, 0]),  # RSV1 without an extension
        bytes([0x83, 0x80, 0, 0, 0, 0]),  # reserved opcode 3
    ]

    def fault(r):
        for garbage in corpus:
            c = RawWS.connect(g.port, "/echo", timeout=10)
            port = local_port(c.sock)
            c.send_raw(garbage)
            close, _ = c.wait_close(timeout=5)
            c.close()  # the gateway lingers until the client closes too; then it logs
            assert close is not None and close.close_code == 1002, (garbage[:16], close)
            close_line(g, port, r"protocol error \(1002\)")
        # garbage in the same packet as the upgrade request: the 101, then 1002
        s = open_socket(g.port)
        s.sendall(build_request(g.port, "/echo") + b"\x81\x05hello")
        resp = read_response_head(s)
        assert resp.status == 101
        c = RawWS(s, resp.leftover)
        port = local_port(s)
        close, _ = c.wait_close(timeout=5)
        c.close()
        assert close is not None and close.close_code == 1002, close
        close_line(g, port, r"protocol error \(1002\)")

    with FaultCheck("garbage after the upgrade", g, grow_kb=512) as chk:
        chk.run(fault)


def test_oversized_control_frames(gw):
    """Control frames over 125 bytes (RFC 6455 §5.5), and a fragmented one: close 1002, even
    when the header claims gigabytes."""
    g = gw()

    def long_header(opcode: int, n: int) -> bytes:
        return struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n) + b"\0\0\0\0"

    corpus = [
        encode_frame(OP_PING, b"p" * 126),
        encode_frame(OP_PONG, b"p" * 200),
        encode_frame(OP_CLOSE, struct.pack("!H", 1000) + b"r" * 124),
        encode_frame(OP_PING, b"p" * 65536),
        long_header(OP_PING, 1 << 40),
        long_header(OP_CLOSE, 1 << 62),
        encode_frame(OP_PING, b"fragmented", fin=False),
    ]

    def fault(r):
        for frame in corpus:
            c = RawWS.connect(g.port, "/echo", timeout=10)
            port = local_port(c.sock)
            with contextlib.suppress(OSError):
                c.send_raw(frame)
            close, _ = c.wait_close(timeout=5)
            c.close()
            assert close is not None and close.close_code == 1002, (frame[:10], close)
            close_line(g, port, r"protocol error \(1002\)")

    with FaultCheck("oversized control frames", g, grow_kb=512) as chk:
        chk.run(fault)


def test_slowloris_handshakes(gw):
    """40 clients trickle their upgrade request a byte every 100 ms (it would take 15 s); the
    handshake timeout (1 s) is not extended by the trickle: each is closed within 2.5 s, without
    a response (the slot is freed at once, rather than held for a lingering 408), with a close
    line "handshake timeout". A client that comes after them is served."""
    g = gw(handshake_timeout="1s")
    n = 40

    def fault(r):
        socks = [open_socket(g.port, timeout=5) for _ in range(n)]
        req = build_request(g.port, "/echo")
        t0 = time.monotonic()
        closed_at: dict[int, float] = {}
        got: dict[int, bytes] = {i: b"" for i in range(n)}
        sent = 0
        while len(closed_at) < n and time.monotonic() - t0 < 6:
            for i, s in enumerate(socks):
                if i in closed_at:
                    continue
                try:
                    s.send(req[sent:sent + 1])
                except OSError:
                    closed_at[i] = time.monotonic() - t0
                    continue
                s.setblocking(False)
                try:
                    data = s.recv(4096)
                    if data:
                        got[i] += data
                    else:
                        closed_at[i] = time.monotonic() - t0
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed_at[i] = time.monotonic() - t0
                s.setblocking(True)
            sent += 1
            time.sleep(0.1)
        ports = [local_port(s) for s in socks]
        for s in socks:
            s.close()
        assert len(closed_at) == n, f"{n - len(closed_at)} slowloris clients still connected after 6 s"
        assert max(closed_at.values()) < 2.5, sorted(closed_at.values())
        assert all(v == b"" for v in got.values()), {i: v[:40] for i, v in got.items() if v}
        for p in ports:
            close_line(g, p, r"^handshake timeout;")
        assert raw_handshake(g.port, "/echo")[0] == 101

    with FaultCheck("slowloris handshakes", g, grow_kb=512) as chk:
        chk.run(fault)


# A private network namespace for the calling thread (and the processes and threads it starts
# from then on): its own loopback, so that an address can be taken away without touching the
# machine's network.
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def private_netns():
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)} (the suite runs as root)")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's network namespace")
    finally:
        os.close(here)


def test_half_open_tcp(gw):
    """A client whose host vanishes: no FIN, no RST, nothing comes back. Done for real in a
    private network namespace: the client connects from 10.123.0.2 (an address of that
    namespace's loopback), and the address is then deleted, so the gateway's packets to it go
    nowhere. The ping (1 s) goes unanswered, the pong timeout (1 s) closes it with 1011 (which
    cannot arrive), and the close timeout (1 s) drops it: close line "ping timeout (1011)"
    within 5 s, descriptors back."""
    with private_netns():
        g = gw(ping_interval="1s", pong_timeout="1s", close_timeout="1s")
        addr = "10.123.0.2"

        def fault(r):
            subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((addr, 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", g.port))
                s.sendall(build_request(g.port, "/echo"))
                resp = read_response_head(s)
                assert resp.status == 101
                c = RawWS(s, resp.leftover)
                c.send_frame(OP_TEXT, b"last words")
                assert c.recv_message(timeout=5) == (OP_TEXT, b"last words")
                port = local_port(s)
                t0 = time.monotonic()
                subprocess.run(["ip", "addr", "del", f"{addr}/32", "dev", "lo"], check=True)
                close_line(g, port, r"ping timeout \(1011\)", timeout=10)
                assert time.monotonic() - t0 < 5
                # Really half-open: the ping, the close frame, the FIN: none of it arrived.
                s.setblocking(False)
                with pytest.raises(BlockingIOError):
                    s.recv(100)
            finally:
                s.close()  # its FIN goes nowhere either

        with FaultCheck("half-open TCP", g, grow_kb=512) as chk:
            chk.run(fault)


def test_10000_connection_attempts_against_64_slots(echo_backend, gateway):
    """`-c 64`: 61 clients and the 3 bystanders hold every slot; then 10,000 TCP connections,
    64 at a time, each send an upgrade request: every one gets 503 (from the overflow slots,
    the listener pausing while those are busy). The log is rate-limited, with a count of the
    lines left out. Afterwards, closing one holder frees exactly one slot."""
    echo_backend("framed")
    g = gateway(m="framed", c=64)
    holders = []
    statuses: Counter = Counter()

    def storm(total: int, concurrency: int = 64) -> None:
        req = build_request(g.port, "/echo")
        sel = selectors.DefaultSelector()
        started = done = 0

        def finish(s, buf):
            nonlocal done
            sel.unregister(s)
            s.close()
            m = re.match(rb"HTTP/1\.1 (\d{3}) ", bytes(buf))
            statuses[int(m.group(1)) if m else f"no status: {bytes(buf[:30])!r}"] += 1
            done += 1

        deadline = time.monotonic() + 60
        while done < total:
            assert time.monotonic() < deadline, f"storm stuck after {done} answers: {statuses}"
            while started < total and len(sel.get_map()) < concurrency:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", g.port))
                sel.register(s, selectors.EVENT_WRITE, bytearray())
                started += 1
            for key, _ in sel.select(timeout=5):
                s, buf = key.fileobj, key.data
                if key.events == selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        statuses[f"connect: {os.strerror(err)}"] += 1
                        sel.unregister(s)
                        s.close()
                        done += 1
                        continue
                    s.send(req)
                    sel.modify(s, selectors.EVENT_READ, buf)
                    continue
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                buf += data
                if not data or b"\r\n\r\n" in buf:
                    finish(s, buf)
        sel.close()

    chk = FaultCheck("10,000 connection attempts against 64 slots", g, grow_kb=1024)
    with chk:
        for _ in range(64 - BYSTANDERS):
            holders.append(RawWS.connect(g.port, "/echo", timeout=10))
        time.sleep(0.2)
        # the holders' descriptors are part of the count before the storm
        chk.fds[0] = fd_count(g.pid)
        chk.rss[0] = rss_kb(g.pid)
        assert raw_handshake(g.port, "/echo")[0] == 503
        t0 = time.monotonic()
        storm(10_000)
        took = time.monotonic() - t0
        print(f"10,000 attempts answered in {took:.1f}s: {dict(statuses)}")
        assert statuses == Counter({503: 10_000}), statuses
        chk.settle()
        g.wait_line(r"log lines suppressed", 5)
        # one slot freed: exactly one newcomer gets in
        holders.pop().close()
        assert wait_until(lambda: raw_handshake(g.port, "/echo")[0] == 101, timeout=5)
        for h in holders:
            h.send_frame(OP_TEXT, b"held")
            assert h.recv_message(timeout=5) == (OP_TEXT, b"held")
    for h in holders:
        h.close()


# --------------------------------------------------------------------------------------------
# Requests the policy must refuse
# --------------------------------------------------------------------------------------------

# path -> the status: 400 for a path that is not a clean name (dot segments, empty segments,
# encoded slashes, backslashes, NUL and control characters, bad escapes), 404 for a clean name
# with no socket behind it (or a symlink on the way), 414 past 256 bytes.
TRAVERSAL = {
    "/../outside": 400,
    "/%2e%2e/outside": 400,
    "/%2E%2E/outside": 400,
    "/.%2e/outside": 400,
    "/..%2foutside": 400,
    "/..%2Foutside": 400,
    "/%2e%2e%2foutside": 400,
    "/a/../echo": 400,
    "/./echo": 400,
    "/echo/.": 400,
    "/echo/..": 400,
    "//echo": 400,
    "/echo//": 400,
    "/%2Fetc%2Fpasswd": 400,
    "/..\\outside": 400,
    "/%5c..%5coutside": 400,
    "/echo%00": 400,
    "/%00": 400,
    "/echo%0a": 400,
    "/echo%7f": 400,
    "/%": 400,
    "/%2": 400,
    "/%zz": 400,
    "/%252e%252e/outside": 404,  # decoded once: a file named "%2e%2e" in the docroot
    "/%c0%ae%c0%ae/outside": 400,  # overlong UTF-8 dots
    "/link/outside": 404,  # a symlink to the sandbox, next to the docroot
    "/evil": 404,  # a symlink to the socket outside
    "/nosuch": 404,
    "/" + "a" * 300: 414,
    "echo": 400,
    "*": 400,
    "http://127.0.0.1/../outside": 400,
}


def test_path_traversal_corpus(gw, sandbox, docroot):
    """Each path of the corpus gets its status and a close line "refused <status>"; the socket
    outside the docroot (at <sandbox>/outside) is never connected to."""
    g = gw()
    outside = PyBackend(sandbox / "outside")
    os.symlink(sandbox, docroot / "link")
    os.symlink(sandbox / "outside", docroot / "evil")
    try:

        def fault(r):
            for path, want in TRAVERSAL.items():
                s = open_socket(g.port)
                s.sendall(build_request(g.port, path))
                resp = read_response_head(s)
                port = local_port(s)
                s.close()
                assert resp.status == want, f"{path!r}: {resp.status}, expected {want}"
                close_line(g, port, rf"^refused {want}: ")

        with FaultCheck("path traversal corpus", g, grow_kb=512) as chk:
            chk.run(fault)
        assert outside.accepted == [], "a request reached the socket outside the docroot"
    finally:
        outside.close()


def test_origin_spoofing(echo_backend, gateway):
    """Cross-site WebSocket hijacking attempts against `--origin same` and against a list: 403
    with the close line "refused 403: Origin not allowed"; the genuine ones get 101."""
    echo_backend("framed")
    g = gateway(m="framed", log_rate=0, origin="https://ui.example,router.lan:8080")
    host = f"127.0.0.1:{g.port}"
    cases = [
        ("http://evil.example", host, 403),
        (f"http://{host}.evil.example", host, 403),
        (f"http://evil.example/{host}", host, 403),
        (f"http://{host}@evil.example", host, 403),
        (f"http://evil.example#{host}", host, 403),
        ("null", host, 403),
        ("http://127.0.0.1:1", host, 403),  # same host, another port
        ("http://127.0.0.1", host, 403),  # default port 80, not ours
        ("https://ui.example.evil.com", host, 403),
        ("https://evil-ui.example", host, 403),
        ("http://ui.example", host, 403),  # the list says https
        ("https://ui.example:444", host, 403),
        ("http://router.lan:8081", host, 403),
        ("http://router.lan.evil:8080", host, 403),
        ("", host, 403),
        ("http://", host, 403),
        ("http://evil.example", "evil.example", 101),  # Host and Origin agree: not cross-site
        (f"http://{host}", host, 101),
        (f"HTTP://{host.upper()}", host, 101),
        ("https://ui.example", host, 101),
        ("https://ui.example:443", host, 101),
        ("http://router.lan:8080", host, 101),
    ]

    def fault(r):
        for origin, hst, want in cases:
            s = open_socket(g.port)
            s.sendall(build_request(g.port, "/echo", {"Origin": origin, "Host": hst}))
            resp = read_response_head(s)
            port = local_port(s)
            if resp.status == 101:
                c = RawWS(s, resp.leftover)
                c.send_close(1000)
                c.wait_close(timeout=5)
            s.close()
            assert resp.status == want, f"Origin {origin!r} Host {hst!r}: {resp.status}, expected {want}"
            if want == 403:
                close_line(g, port, r"^refused 403: Origin not allowed$")
        # two Origin headers, the first one genuine (a check could read one and a backend the
        # other), and one that is not UTF-8: 400
        head = build_request(g.port, "/echo", {"Origin": f"http://{host}"})
        for request in (head[:-2] + b"Origin: http://evil.example\r\n\r\n",
                        head[:-2].replace(f"http://{host}".encode(), b"http://\xff\xfe") + b"\r\n"):
            s = open_socket(g.port)
            s.sendall(request)
            resp = read_response_head(s)
            port = local_port(s)
            s.close()
            assert resp.status == 400, resp.status
            close_line(g, port, r"^refused 400: duplicated or bad Origin$")

    with FaultCheck("Origin spoofing", g, grow_kb=512) as chk:
        chk.run(fault)


# --------------------------------------------------------------------------------------------
# Reloads under load
# --------------------------------------------------------------------------------------------


def write_conf(path: Path, docroot: Path, deny: str) -> None:
    path.write_text(
        'user = "";\n'
        "servers = ({\n"
        '  addr = "127.0.0.1"; port = 0; maxclients = 64;\n'
        f'  websocket = {{ docroot = "{docroot}"; mode = "framed"; deny = "{deny}"; }};\n'
        "});\n"
    )


def test_repeated_sighup_under_load(echo_backend, docroot, tmp_path):
    """20 SIGHUPs, one every ~100 ms, while the bystanders and 8 more clients echo 4 KiB
    messages as fast as they can. The configuration alternates between denying /blocked and
    not, and one file in the run is broken: every reload is logged ("configuration reloaded",
    or "refused, the old one stays" for the broken one), new connections follow the policy of
    the moment, no echo fails, and the descriptor count and RSS stay put."""
    echo_backend("framed")
    echo_backend("framed", name="blocked")
    conf = tmp_path / "wsgate.conf"
    write_conf(conf, docroot, "nothing")
    g = Child([gateway_bin(), "-f", str(conf), "--log-rate", "0"], "wsgate")
    try:
        m = g.wait_line(LISTEN_RE, 10)
        g.port = int(m.group(2))
        load_errors: list[str] = []
        load_counts = [0] * 8
        stop = threading.Event()

        def load(i):
            try:
                c = RawWS.connect(g.port, "/echo", timeout=10)
                payload = os.urandom(4096)
                while not stop.is_set():
                    c.send_frame(OP_BINARY, payload)
                    assert c.recv_message(timeout=10) == (OP_BINARY, payload)
                    load_counts[i] += 1
                c.send_close(1000)
                c.wait_close(timeout=5)
                c.close()
            except Exception as e:
                load_errors.append(f"load {i}: {type(e).__name__}: {e}")

        def fault(r):
            threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(8)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            for i in range(20):
                broken = i == 13
                deny = "^/blocked" if i % 2 == 0 else "nothing"
                if broken:
                    conf.write_text("servers = ( { port = \"x\"; } );\n")
                else:
                    write_conf(conf, docroot, deny)
                mark = len(g.lines)
                os.kill(g.pid, signal.SIGHUP)
                if broken:
                    g.wait_line("refused, the old one stays", 5, start=mark)
                    continue
                g.wait_line("configuration reloaded", 5, start=mark)
                want = 403 if deny == "^/blocked" else 101
                assert raw_handshake(g.port, "/blocked")[0] == want, (i, deny)
                time.sleep(0.1)
            stop.set()
            for t in threads:
                t.join(15)
            stop.clear()
            assert not load_errors, load_errors
            assert min(load_counts) > 0, load_counts

        with FaultCheck("repeated SIGHUP under load", g, grow_kb=1024) as chk:
            chk.run(fault)
        reloads = sum("configuration reloaded" in line for line in g.lines)
        assert reloads == 2 * 19, reloads
        print(f"load clients echoed {load_counts} messages of 4 KiB")
        assert g.alive()
    finally:
        g.stop()
        print(g.log_text()[-3000:])
