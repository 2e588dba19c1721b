#!/usr/bin/env python3
"""Bounded soak: wsgate under a 16 MB memory limit, its slab full, mixed
traffic for a fixed time; no errors, RSS stable.

    scripts/soak.py                      10 minutes (by hand)
    scripts/soak.py --duration 120       2 minutes (CI, scripts/test.sh)

Needs root (a memory cgroup) and target/release/{wsgate,websocket_echo} and
target/release/examples/wsload (`cargo build --release --bins --examples`).

The memory limit: a cgroup v2 `memory.max` where the memory controller is on cgroup v2, else a
cgroup v1 `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, so swap is no way out);
only where neither can be made, an address-space rlimit (`ulimit -v`) instead. The gateway
alone is in it (it is started inside, so its start-up allocation counts too); the report says
which limit was used and what it counted.

The gateway runs with `-c 64` (8 more slots answer 503), in framed mode, pinging every 5 s.
Its 64 slots are filled, and kept full, by:

* wsload: 48 connections of 64-byte messages (window 4), 8 of 64 KiB (window 2) and 2 of
  900 KB (window 1, near `--max-message`), each echo compared byte for byte;
* 2 slow readers that send 256 KiB messages and read the echo 4 KiB at a time with pauses
  (the gateway stops reading the backend, then resumes);
* 1 idle connection that only answers the gateway's pings;
* 1 holder echoing a message every 50 ms;
* 2 churners that, in turn, open a connection and echo, send garbage (close 1002), send an
  oversized ping (close 1002), ask for a missing path (404) or a traversal (400), and close.

and, from outside the slab, a prober that tries an extra upgrade every 200 ms: it must get 503
while the slab is full (or 101 in the instant a churner's slot is free).

Passes when: the gateway is alive at the end and the memory limit never killed it; wsload
reports no error on any connection, and every other client saw exactly the answers above;
after the warm-up (the first sixth, at least 20 s: buffers are touched for the first time),
VmRSS stays within --rss-band KiB (default 512) of its value at the end of the warm-up and
below the limit. A JSON summary is printed last (and written to --report).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

import harness  # noqa: E402
from harness import (  # noqa: E402
    OP_BINARY,
    OP_PING,
    Child,
    RawWS,
    build_request,
    encode_frame,
    open_socket,
    read_response_head,
)

KiB = 1024
MiB = 1024 * 1024
SLOTS = 64


def log(msg: str) -> None:
    print(f"soak: {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# The memory limit
# --------------------------------------------------------------------------------------------


class MemoryLimit:
    """A fresh cgroup with a memory limit (v2, else v1), or an rlimit: `wrap(argv)` starts a
    program inside it; `stats()` reads what the cgroup counted."""

    def __init__(self, limit: int):
        self.limit = limit
        self.kind = "rlimit"
        self.path: Path | None = None
        name = f"wsgate-soak-{os.getpid()}"
        v2 = self._v2_root()
        try:
            if v2 is not None:
                self.path = v2 / name
                self.path.mkdir()
                (self.path / "memory.max").write_text(str(limit))
                if (self.path / "memory.swap.max").exists():
                    (self.path / "memory.swap.max").write_text("0")
                self.kind = "cgroup v2 memory.max"
            else:
                v1 = self._v1_root()
                if v1 is not None:
                    self.path = v1 / name
                    self.path.mkdir()
                    (self.path / "memory.limit_in_bytes").write_text(str(limit))
                    if (self.path / "memory.memsw.limit_in_bytes").exists():
                        (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))
                    self.kind = "cgroup v1 memory.limit_in_bytes"
        except OSError as e:
            log(f"no memory cgroup ({e}); using an address-space rlimit instead")
            self.cleanup()
            self.path = None
            self.kind = "rlimit"

    @staticmethod
    def _mounts(fstype: str) -> list[tuple[Path, str]]:
        out = []
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4 and parts[2] == fstype:
                    out.append((Path(parts[1]), parts[3]))
        return out

    def _v2_root(self) -> Path | None:
        for mnt, _ in self._mounts("cgroup2"):
            try:
                controllers = (mnt / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if "memory" not in controllers:
                continue
            sub = mnt / "cgroup.subtree_control"
            try:
                if "memory" not in sub.read_text().split():
                    sub.write_text("+memory")
            except OSError:
                continue
            return mnt
        return None

    def _v1_root(self) -> Path | None:
        for mnt, opts in self._mounts("cgroup"):
            if "memory" in opts.split(","):
                return mnt
        return None

    def wrap(self, argv: list[str]) -> list[str]:
        if self.path is not None:
            procs = self.path / "cgroup.procs"
            return ["/bin/sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]
        return ["/bin/sh", "-c", f'ulimit -v {self.limit // KiB} && exec "$@"', "sh", *argv]

    def stats(self) -> dict:
        if self.path is None:
            return {}
        out = {}

        def read(name):
            try:
                return (self.path / name).read_text()
            except OSError:
                return None

        if self.kind.startswith("cgroup v2"):
            for name in ("memory.max", "memory.current", "memory.peak"):
                v = read(name)
                if v is not None:
                    out[name] = v.strip()
            ev = read("memory.events")
            if ev:
                out["events"] = dict((k, int(v)) for k, v in (l.split() for l in ev.splitlines()))
        else:
            for name in ("memory.limit_in_bytes", "memory.usage_in_bytes",
                         "memory.max_usage_in_bytes", "memory.failcnt"):
                v = read(name)
                if v is not None:
                    out[name] = v.strip()
            oom = read("memory.oom_control")
            if oom:
                out["events"] = dict((k, int(v)) for k, v in (l.split() for l in oom.splitlines()))
        return out

    def oom_kills(self) -> int:
        ev = self.stats().get("events", {})
        return ev.get("oom_kill", 0) + (ev.get("oom", 0) if self.kind.startswith("cgroup v2") else 0)

    def cleanup(self) -> None:
        if self.path is not None:
            for _ in range(50):
                try:
                    self.path.rmdir()
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# The clients of our own
# --------------------------------------------------------------------------------------------


class Errors:
    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[str] = []

    def add(self, who: str, what: str) -> None:
        with self.lock:
            self.items.append(f"{who}: {what}")
        log(f"ERROR {who}: {what}")


class Client(threading.Thread):
    """A thread running `body` until `stop` is set; exceptions are errors."""

    def __init__(self, name: str, port: int, stop: threading.Event, errors: Errors, counts: dict):
        super().__init__(daemon=True, name=name)
        self.port = port
        self.stop = stop
        self.errors = errors
        self.counts = counts
        self.rnd = random.Random(name)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def run(self) -> None:
        try:
            self.body()
        except Exception as e:
            self.errors.add(self.name, f"{type(e).__name__}: {e}")

    def echo(self, ws: RawWS, payload: bytes, timeout: float = 30) -> None:
        ws.send_frame(OP_BINARY, payload)
        got = ws.recv_message(timeout=timeout)
        if got != (OP_BINARY, payload):
            raise AssertionError(f"echo of {len(payload)} bytes came back as {str(got)[:100]}")


class SlowReader(Client):
    def body(self) -> None:
        ws = RawWS.connect(self.port, "/echo", timeout=30, rcvbuf=32 * KiB)
        while not self.stop.is_set():
            payload = self.rnd.randbytes(256 * KiB)
            ws.send_frame(OP_BINARY, payload)
            time.sleep(0.5)  # the echo piles up in the gateway meanwhile
            got = bytearray()
            deadline = time.monotonic() + 60
            while True:
                frame = harness.try_decode_frame(ws.buf)
                if frame is not None:
                    f, used = frame
                    del ws.buf[:used]
                    if f.opcode == OP_PING:
                        ws.send_frame(0xA, f.payload)
                        continue
                    got += f.payload
                    if f.fin:
                        break
                    continue
                # 4 KiB at a time, with pauses: a reader slower than the backend
                left = deadline - time.monotonic()
                r, _, _ = select.select([ws.sock], [], [], max(left, 0))
                if not r:
                    raise TimeoutError(f"slow echo: {len(got)} of {len(payload)} bytes in 60 s")
                chunk = ws.sock.recv(4 * KiB)
                if not chunk:
                    raise AssertionError("EOF in the middle of an echo")
                ws.buf += chunk
                time.sleep(0.002)
            if bytes(got) != payload:
                raise AssertionError(f"slow echo differs ({len(got)} of {len(payload)} bytes)")
            self.count("slow echoes")
        ws.send_close(1000)
        ws.wait_close(timeout=10)
        ws.close()


class Idle(Client):
    def body(self) -> None:
        ws = RawWS.connect(self.port, "/echo", timeout=30)
        while not self.stop.is_set():
            try:
                m = ws.recv_message(timeout=1)  # answers pings
            except TimeoutError:
                continue
            raise AssertionError(f"an idle connection got {str(m)[:80]}")
        ws.send_close(1000)
        ws.wait_close(timeout=10)
        ws.close()


class Holder(Client):
    def body(self) -> None:
        ws = RawWS.connect(self.port, "/echo", timeout=30)
        while not self.stop.is_set():
            self.echo(ws, self.rnd.randbytes(self.rnd.choice((1, 200, 3000))))
            self.count("holder echoes")
            self.stop.wait(0.05)
        ws.send_close(1000)
        ws.wait_close(timeout=10)
        ws.close()


class Churner(Client):
    """Opens and closes connections in its slot, with a bad request or frame now and then."""

    def connect_retrying(self) -> RawWS:
        # The slot this churner just gave back may still be closing: a 503 then is fair.
        deadline = time.monotonic() + 10
        while True:
            s = open_socket(self.port, timeout=30)
            s.sendall(build_request(self.port, "/echo"))
            resp = read_response_head(s, timeout=30)
            if resp.status == 101:
                return RawWS(s, resp.leftover)
            s.close()
            if resp.status != 503 or time.monotonic() > deadline:
                raise AssertionError(f"churner connect: {resp.status}")
            self.count("churner 503 (slot still closing)")
            time.sleep(0.05)

    def expect_close(self, ws: RawWS, code: int, what: str) -> None:
        close, _ = ws.wait_close(timeout=10)
        ws.close()
        if close is None or close.close_code != code:
            raise AssertionError(f"{what}: expected close {code}, got {close}")

    def status(self, path: str) -> int | None:
        s = open_socket(self.port, timeout=30)
        s.sendall(build_request(self.port, path))
        resp = read_response_head(s, timeout=30)
        s.close()
        return resp.status

    def body(self) -> None:
        i = 0
        while not self.stop.is_set():
            kind = i % 5
            i += 1
            if kind in (0, 1):
                ws = self.connect_retrying()
                for _ in range(self.rnd.randint(1, 5)):
                    self.echo(ws, self.rnd.randbytes(self.rnd.randint(0, 20000)))
                ws.send_close(1000)
                close, _ = ws.wait_close(timeout=10)
                ws.close()
                if close is None or close.close_code != 1000:
                    raise AssertionError(f"normal close answered with {close}")
                self.count("churn echo sessions")
            elif kind == 2:
                ws = self.connect_retrying()
                ws.send_raw(b"\x81\x05hello")  # unmasked
                self.expect_close(ws, 1002, "unmasked frame")
                self.count("churn 1002 garbage")
            elif kind == 3:
                ws = self.connect_retrying()
                ws.send_raw(encode_frame(OP_PING, b"p" * 200))
                self.expect_close(ws, 1002, "oversized ping")
                self.count("churn 1002 oversized ping")
            else:
                # Refused at the handshake (needs a slot, so it may meet a full slab: 503).
                for path, want in (("/nosuch", 404), ("/../echo", 400)):
                    st = self.status(path)
                    if st not in (want, 503):
                        raise AssertionError(f"{path}: {st}, expected {want}")
                    self.count(f"churn {st}")


class Prober(Client):
    def body(self) -> None:
        while not self.stop.is_set():
            s = open_socket(self.port, timeout=30)
            s.sendall(build_request(self.port, "/echo"))
            resp = read_response_head(s, timeout=30)
            if resp.status == 101:
                ws = RawWS(s, resp.leftover)
                ws.send_close(1000)
                ws.wait_close(timeout=10)
            elif resp.status != 503:
                raise AssertionError(f"an extra connection got {resp.status}")
            s.close()
            self.count(f"probe {resp.status}")
            self.stop.wait(0.2)


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600, help="seconds of traffic (default 600)")
    ap.add_argument("--limit-mb", type=int, default=16, help="memory limit in MB (default 16)")
    ap.add_argument("--rss-band", type=int, default=512,
                    help="KiB RSS may move after the warm-up (default 512)")
    ap.add_argument("--report", help="also write the JSON summary here")
    args = ap.parse_args()

    wsload = Path(harness.gateway_bin()).parent / "examples" / "wsload"
    for p in (harness.gateway_bin(), harness.echo_bin(), str(wsload)):
        if not os.path.exists(p):
            log(f"{p} is missing: cargo build --release --bins --examples")
            return 2
    limit = MemoryLimit(args.limit_mb * 1000 * 1000)
    log(f"memory limit: {args.limit_mb} MB ({limit.kind})")
    sandbox = Path(tempfile.mkdtemp(prefix="wsgate-soak-", dir="/tmp"))
    docroot = sandbox / "www"
    docroot.mkdir()
    errors = Errors()
    counts: dict = {}
    procs: list[Child] = []
    loads: list[subprocess.Popen] = []
    stop = threading.Event()
    warmup = max(20.0, args.duration / 6)
    samples: list[tuple[float, int, int]] = []
    summary: dict = {}
    try:
        echo = harness.EchoBackend(docroot, mode="framed")
        procs.append(echo)
        argv = harness.gateway_argv(docroot, c=SLOTS, m="framed", ping_interval="5s",
                                    pong_timeout="5s", max_message="1M")
        g = Child(limit.wrap(argv), "wsgate")
        procs.append(g)
        port = int(g.wait_line(harness.LISTEN_RE, 10).group(2))
        pid = g.pid  # the shell exec'd the gateway: same pid
        base_fds = harness.fd_count(pid)
        log(f"wsgate pid {pid} on port {port}; RSS {harness.rss_kb(pid)} KiB at start")

        url = f"ws://127.0.0.1:{port}/echo"
        secs = str(args.duration)
        for conns, size, window in ((48, 64, 4), (8, 64 * KiB, 2), (2, 900_000, 1)):
            loads.append(subprocess.Popen(
                [str(wsload), "--url", url, "--conns", str(conns), "--size", str(size),
                 "--window", str(window), "--duration", secs, "--connect-timeout", "30"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        clients: list[Client] = [
            SlowReader("slow reader 1", port, stop, errors, counts),
            SlowReader("slow reader 2", port, stop, errors, counts),
            Idle("idle", port, stop, errors, counts),
            Holder("holder", port, stop, errors, counts),
            Churner("churner 1", port, stop, errors, counts),
            Churner("churner 2", port, stop, errors, counts),
        ]
        for c in clients:
            c.start()
        # The slab is full when every slot's client and backend sockets are open.
        deadline = time.monotonic() + 30
        while harness.fd_count(pid) < base_fds + 2 * (SLOTS - 2):
            if time.monotonic() > deadline:
                errors.add("setup", f"slab not full after 30 s ({harness.fd_count(pid)} fds)")
                break
            time.sleep(0.1)
        prober = Prober("prober", port, stop, errors, counts)
        prober.start()
        clients.append(prober)
        t0 = time.monotonic()
        log(f"slab full; traffic for {args.duration:.0f} s (warm-up {warmup:.0f} s)")
        next_report = t0 + 30
        while time.monotonic() - t0 < args.duration:
            if not g.alive():
                errors.add("wsgate", f"exited with {g.proc.returncode}")
                break
            try:
                samples.append((time.monotonic() - t0, harness.rss_kb(pid), harness.fd_count(pid)))
            except (OSError, RuntimeError):
                errors.add("wsgate", "gone")
                break
            if time.monotonic() > next_report:
                next_report += 30
                log(f"{samples[-1][0]:.0f}s: RSS {samples[-1][1]} KiB, {samples[-1][2]} fds, {counts}")
            time.sleep(1)
        stop.set()
        for c in clients:
            c.join(60)
            if c.is_alive():
                errors.add(c.name, "did not finish")
        results = []
        for p in loads:
            out, err = p.communicate(timeout=120)
            try:
                res = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                errors.add("wsload", f"no result (exit {p.returncode}): {err[-500:]}")
                continue
            results.append(res)
            if res["error_total"] or res["connected"] != res["conns"] or res["completed"] == 0:
                errors.add("wsload", f"{res['conns']} x {res['size']} B: {res}")
        alive = g.alive()
        if not alive:
            errors.add("wsgate", f"exited with {g.proc.returncode}")
        mem = limit.stats()
        ooms = limit.oom_kills()
        if ooms:
            errors.add("memory limit", f"{ooms} OOM event(s): {mem}")

        after = [s for s in samples if s[0] >= warmup]
        if after:
            ref = after[0][1]
            lo = min(s[1] for s in after)
            hi = max(s[1] for s in after)
            if hi - ref > args.rss_band or ref - lo > args.rss_band:
                errors.add("RSS", f"moved from {ref} KiB to {lo}..{hi} KiB after the warm-up "
                                  f"(band {args.rss_band} KiB)")
            if hi * KiB >= limit.limit:
                errors.add("RSS", f"{hi} KiB is at the limit")
        else:
            ref = lo = hi = None
            errors.add("RSS", "no sample after the warm-up")
        if counts.get("probe 503", 0) == 0:
            errors.add("prober", "never saw the slab full (no 503)")
        summary = {
            "duration_s": args.duration,
            "memory_limit": {"bytes": limit.limit, "kind": limit.kind, "cgroup": mem},
            "rss_kib": {
                "start": samples[0][1] if samples else None,
                "after_warmup": ref,
                "min_after_warmup": lo,
                "max_after_warmup": hi,
                "end": samples[-1][1] if samples else None,
                "band": args.rss_band,
            },
            "fds": {"idle": base_fds, "min": min((s[2] for s in samples), default=None),
                    "max": max((s[2] for s in samples), default=None)},
            "wsload": [{k: r[k] for k in ("conns", "size", "window", "completed", "msgs_per_s",
                                          "error_total")} for r in results],
            "clients": counts,
            "gateway_alive": alive,
            "errors": errors.items,
        }
    finally:
        stop.set()
        for p in loads:
            if p.poll() is None:
                p.kill()
                p.wait()
        for p in reversed(procs):
            p.stop()
        limit.cleanup()
        subprocess.run(["rm", "-rf", str(sandbox)], check=False)
    print(json.dumps(summary, indent=2))
    if args.report:
        Path(args.report).write_text(json.dumps(summary, indent=2) + "\n")
    if errors.items:
        log(f"FAILED: {len(errors.items)} error(s)")
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    sys.exit(main())
