"""The gateway's memory with permessage-deflate, measured from outside: what
scripts/deflate-memory.py reports and tests/py/test_compression_memory.py bounds.

Every figure is the gateway process's resident set (`Rss` of /proc/PID/smaps_rollup, the
same pages as VmRSS) at a moment when the connections being measured are open and idle, or
its peak while they exchange messages. The load is wsload (examples/wsload.rs) with
`--payload json`, router-status JSON, and `--deflate` where the connections offer
compression: every echo is checked, inflated first when it comes back compressed. The
decompression bomb is a raw client (harness.RawWS).

How the compression memory is laid out (src/relay/compress.rs): the whole
`--compression-memory` budget is allocated at start-up, as compressors, literal-only
compressors and decompressors, and the gateway's start-up line says how many of each. A
connection that negotiates compression is promised one decompressor and holds it only while
one of its messages is being inflated; once every decompressor is promised, connections go
uncompressed. So the bounds are in terms of the budget B and the decompressor count K:
compression adds at most B to the resident set however many connections come, and a
compressed connection at most B / K (its share) more than a plain one.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import harness
from harness import OP_BINARY, RawWS

KiB = 1024
SIZES_RE = re.compile(
    r"compression: (\d+) \+ (\d+) narrow compressors, decompressors for (\d+) connections "
    r"\((\d+) bytes\)"
)
# Growth allowed where nothing should grow (a repeated load, 100 bombs): 16 pages. A leak of
# 100 bytes per connection over a 1,000-connection flood, or of 1 KiB per bomb, is past it.
SLACK_KB = 64


def raise_nofile() -> None:
    """The soft descriptor limit up to the hard one (1,000 client sockets in wsload, 2,000 in the
    gateway): children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def smaps_kb(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup's kB fields (Rss, Pss, Anonymous, ...)."""
    return harness.proc_kb(pid, "smaps_rollup")


def rss_kb(pid: int) -> int:
    return smaps_kb(pid)["Rss"]


@dataclass
class Sizes:
    """What the gateway made of its compression budget (its start-up line)."""

    deflaters: int
    narrow: int
    inflaters: int
    budget: int

    @classmethod
    def of(cls, g: harness.Gateway) -> "Sizes":
        m = g.wait_line(SIZES_RE)
        return cls(*(int(x) for x in m.groups()))

    @property
    def budget_kb(self) -> int:
        return self.budget // KiB

    @property
    def share_kb(self) -> float:
        """A compressed connection's share of the budget."""
        return self.budget / self.inflaters / KiB


def gateway_opts(deflate: bool, memory: str | None = None, conns: int = 1100) -> dict:
    """Options of the measured gateway: `-m framed -c CONNS`, no pings, every log line kept
    (`--log-rate 0`: the fallback warnings are counted), and compression on every endpoint
    with `--compression-memory MEMORY` when `deflate`."""
    return {"m": "framed", "c": conns, "ping_interval": "0", "log_rate": 0,
            "compression": "permessage-deflate" if deflate else None,
            "compression_memory": memory if deflate else None}


ECHO_ARGS = ("-c", "2000", "-b", "1024")
"""websocket_echo's options for a thousand connections."""


def fresh_kb(g: harness.Gateway) -> int:
    """RSS of a gateway that has just started, once it has settled."""
    time.sleep(0.2)
    return rss_kb(g.pid)


def fallbacks(g: harness.Gateway) -> int:
    """Connections answered without compression because every decompressor was promised."""
    return sum("compression memory full" in line for line in g.lines)


class Load:
    """wsload against `g`'s /echo that keeps its connections open once its messages are echoed,
    until `release()`; RSS is sampled while it runs (`peak_kb`) and once it is idle
    (`idle_kb`)."""

    def __init__(self, g: harness.Gateway, work: Path, *args: str, timeout: float = 60):
        self.pid = g.pid
        self.ready = Path(work) / f"ready-{id(self)}"
        self.ready.unlink(missing_ok=True)
        argv = [harness.wsload_bin(), "--url", g.url("/echo"), "--payload", "json", *args,
                "--hold", str(timeout), "--ready-file", str(self.ready),
                "--connect-timeout", str(timeout)]
        self.peak_kb = rss_kb(self.pid)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not self.ready.exists() and self.proc.poll() is None and time.monotonic() < deadline:
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            time.sleep(0.01)
        if not self.ready.exists():
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"wsload did not finish its messages ({self.proc.returncode}): "
                                 f"{err.decode()[-500:]}")
        self.idle_kb = rss_kb(self.pid)
        self.peak_kb = max(self.peak_kb, self.idle_kb)

    def release(self) -> dict:
        """Lets wsload close its connections; its JSON results."""
        self.ready.unlink(missing_ok=True)
        out, err = self.proc.communicate(timeout=60)
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"wsload printed no results: {err.decode()[-500:]}") from None


# --------------------------------------------------------------------------------------------
# The decompression bomb
# --------------------------------------------------------------------------------------------


def bomb_payload(compressed: int = 16 * KiB) -> tuple[bytes, int]:
    """A raw DEFLATE stream of at most `compressed` bytes as RFC 7692 §7.2.1 sends it (its
    sync flush's tail stripped), and how many bytes it inflates to: zeros, about 1,000 to 1,
    in sync-flushed steps of 256 KiB, as many as fit."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(256 * KiB)
    out, inflated = b"", 0
    while True:
        step = z.compress(chunk) + z.flush(zlib.Z_SYNC_FLUSH)
        if len(out) + len(step) - 4 > compressed:
            return out[:-4], inflated
        out += step
        inflated += len(chunk)


def send_bomb(port: int, payload: bytes, timeout: float = 10) -> tuple[bool, int | None]:
    """One connection offering permessage-deflate sends `payload` as one compressed binary
    frame; (compression was negotiated, the close code the gateway answered)."""
    ws = RawWS.connect(port, "/echo",
                       headers={"Sec-WebSocket-Extensions": "permessage-deflate"},
                       timeout=timeout)
    try:
        negotiated = "permessage-deflate" in (ws.response.header("sec-websocket-extensions") or "")
        ws.send_frame(OP_BINARY, payload, rsv=4)  # RSV1
        close, _ = ws.wait_close(timeout)
        return negotiated, close.close_code if close else None
    finally:
        ws.close()


def bombs(g: harness.Gateway, count: int, payload: bytes) -> dict:
    """`count` bombs one after another: the RSS before the first, after the first and after the
    last; the close codes and how many connections negotiated compression."""
    before = rss_kb(g.pid)
    codes, negotiated = [], 0
    after_first = None
    for i in range(count):
        n, code = send_bomb(g.port, payload)
        negotiated += n
        codes.append(code)
        if i == 0:
            after_first = rss_kb(g.pid)
    return {"before_kb": before, "after_first_kb": after_first, "after_kb": rss_kb(g.pid),
            "codes": codes, "negotiated": negotiated}


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


def connections(g: harness.Gateway, work: Path, conns: int, deflate: bool, size: int = 1024,
                msgs: int = 1, window: int = 1) -> dict:
    """`conns` connections (offering compression when `deflate`) each echo `msgs` JSON messages
    of `size` bytes, `window` in flight, then stay open and idle while RSS is read; then they
    close, and this returns once the gateway holds none of them. RSS before, at its peak during
    the messages and with the connections idle (kB); wsload's results; the fallback warnings
    this load caused."""
    fds = harness.fd_count(g.pid)
    warned = fallbacks(g)
    before = rss_kb(g.pid)
    load = Load(g, work, "--conns", str(conns), "--size", str(size), "--msgs", str(msgs),
                "--window", str(window), *(["--deflate"] if deflate else []))
    res = load.release()
    # Closed on both sides: the gateway's descriptors are back to its idle set.
    harness.wait_until(lambda: harness.fd_count(g.pid) <= fds, 20, 0.02)
    return {"before_kb": before, "peak_kb": load.peak_kb, "idle_kb": load.idle_kb,
            "after_kb": rss_kb(g.pid), "result": res, "fallbacks": fallbacks(g) - warned}


# --------------------------------------------------------------------------------------------
# The measurements: `start(**opts)` starts a gateway (the `gateway` fixture, or harness.Gateway
# on a docroot where websocket_echo -m framed runs with ECHO_ARGS)
# --------------------------------------------------------------------------------------------


def measure_idle(start, memories=("2M",)) -> dict:
    """A fresh gateway's RSS without compression, and with it at each budget."""
    plain = fresh_kb(start(**gateway_opts(False)))
    out = []
    for memory in memories:
        g = start(**gateway_opts(True, memory))
        sizes = Sizes.of(g)
        out.append({"memory": memory, "sizes": sizes, "rss_kb": fresh_kb(g),
                    "anonymous_kb": smaps_kb(g.pid)["Anonymous"]})
    return {"plain_kb": plain, "deflate": out}


def least_growth(kbs: list[int]) -> int:
    """The least that one run added to the RSS the run before it left (kB). A leak grows the
    resident set on every repeat of the same load; the buffer pool grows only when a run has
    more buffers in use at once than any before it, which scheduling can make one repeat do
    and seldom two in a row."""
    return min(b - a for a, b in zip(kbs, kbs[1:]))


def measure_connections(start, work: Path, msgs: int = 20, repeats: int = 3) -> dict:
    """K connections, K the decompressors of the default budget (so every one is compressed),
    on a fresh gateway with compression and on a fresh plain one: `repeats` times idle after
    one 1 KiB echo each, then `repeats` times all exchanging `msgs` 16 KiB messages, 4 in
    flight. Per connection (kB): `idle` (RSS with them open and idle − fresh RSS) / K and
    `active` (peak RSS during the messages − fresh RSS) / K, from the first run of each;
    `again_kb`: what the repeats added (least_growth, the larger of idle and active)."""
    d = start(**gateway_opts(True))
    sizes = Sizes.of(d)
    p = start(**gateway_opts(False))
    k = sizes.inflaters
    out = {"sizes": sizes, "conns": k}
    for name, g, deflate in (("plain", p, False), ("deflate", d, True)):
        base = fresh_kb(g)
        idle = [connections(g, work, k, deflate) for _ in range(repeats)]
        active = [connections(g, work, k, deflate, size=16384, msgs=msgs, window=4)
                  for _ in range(repeats)]
        out[name] = {
            "fresh_kb": base,
            "idle": (idle[0]["idle_kb"] - base) / k,
            "active": (active[0]["peak_kb"] - base) / k,
            "again_kb": max(least_growth([r["idle_kb"] for r in idle]),
                            least_growth([r["peak_kb"] for r in active])),
            "runs": idle + active,
        }
    return out


def measure_flood(start, work: Path, n: int = 1000, repeats: int = 3) -> dict:
    """`n` connections offering compression, each echoing one 1 KiB message, held open: on a
    fresh plain gateway once, on a fresh one with the default budget `repeats` times. RSS
    fresh and with each flood open (kB); what the repeats added (least_growth); the runs
    (negotiated counts, fallbacks)."""
    d = start(**gateway_opts(True))
    sizes = Sizes.of(d)
    p = start(**gateway_opts(False))
    out = {"sizes": sizes, "conns": n}
    for name, g, times in (("plain", p, 1), ("deflate", d, repeats)):
        base = fresh_kb(g)
        floods = [connections(g, work, n, True) for _ in range(times)]
        kbs = [f["idle_kb"] for f in floods]
        out[name] = {"fresh_kb": base, "flood_kb": kbs,
                     "again_kb": least_growth(kbs) if times > 1 else None, "runs": floods}
    return out


def measure_bombs(start, work: Path, count: int = 100) -> dict:
    """On a gateway with the default budget and a 1 MiB message limit, after one compressed
    message just under the limit has gone both ways (every buffer and context it touches is
    resident): `count` decompression bombs (bomb_payload), one per connection."""
    g = start(**gateway_opts(True), max_message="1M")
    sizes = Sizes.of(g)
    payload, inflated = bomb_payload()
    warm = connections(g, work, 1, True, size=1000 * 1000)
    r = bombs(g, count, payload)
    r.update({"sizes": sizes, "payload": len(payload), "inflated": inflated, "warm": warm})
    return r
