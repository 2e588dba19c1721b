"""Load for the QEMU system test (scripts/qemu-system-test.sh), run on the host against the
guest's gateway through QEMU's port forwarding.

Opens CONNS WebSocket connections at once (most to /echo in `framed` mode, some to /lines in
`lines` mode), then every connection sends messages of mixed sizes and types and checks each
reply byte for byte. While the load runs it asks the guest's `ctl` backend for the memory in
use; at the end for the peaks. Exit status 0 only if every reply was right.

    python tests/board/qemu_load.py --port 18080 [--conns 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

from websockets.asyncio.client import connect

# Sizes around the frame header boundaries (125/126, 65535/65536) and past one relay buffer.
SIZES = [0, 1, 125, 126, 1400, 4096, 16384, 65535, 65536, 150000]


async def one(url: str, idx: int, rounds: int, lines: bool, go: asyncio.Event, ready: list,
              opening: asyncio.Semaphore) -> int:
    rnd = random.Random(idx)
    # One connection attempt at a time: QEMU's user-mode network listens on the forwarded
    # port with a backlog of 1, so simultaneous SYNs are dropped and retried seconds later.
    async with opening:
        ws = await connect(url, max_size=1 << 20, open_timeout=60, ping_interval=None)
    async with ws:
        ready.append(idx)
        await go.wait()
        n = 0
        sizes = [s for s in SIZES if s > 0] if lines else SIZES
        for r in range(rounds):
            order = sizes[:]
            rnd.shuffle(order)
            for size in order:
                if lines:
                    # lines mode carries text without newlines, one message per line
                    msg: str | bytes = "".join(rnd.choice("abcdefghij ") for _ in range(size))
                elif (n + idx) % 2:
                    msg = rnd.randbytes(size)
                else:
                    msg = "".join(rnd.choice("xyzé€") for _ in range(size // 3))
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 120)
                if got != msg:
                    raise AssertionError(
                        f"conn {idx} message {n}: sent {type(msg).__name__} of {len(msg)}, "
                        f"got {type(got).__name__} of {len(got)}"
                    )
                n += 1
        return n


async def ctl(ws, cmd: str) -> str:
    await ws.send(cmd)
    return str(await asyncio.wait_for(ws.recv(), 30))


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    base = f"ws://{a.host}:{a.port}"

    async with connect(f"{base}/ctl", open_timeout=60, ping_interval=None) as c:
        print(f"guest idle:  {await ctl(c, 'mem')}", flush=True)
        go = asyncio.Event()
        opening = asyncio.Semaphore(1)
        ready: list[int] = []
        tasks = [
            asyncio.create_task(
                one(f"{base}/{'lines' if i % 5 == 4 else 'echo'}", i, a.rounds, i % 5 == 4, go,
                    ready, opening)
            )
            for i in range(a.conns)
        ]
        start = time.monotonic()
        while len(ready) < a.conns and not any(t.done() for t in tasks):
            await asyncio.sleep(0.05)
        print(f"{len(ready)} connections open in {time.monotonic() - start:.1f}s", flush=True)
        print(f"guest, {len(ready)} open: {await ctl(c, 'mem')}", flush=True)
        go.set()
        start = time.monotonic()
        samples = []
        while not all(t.done() for t in tasks):
            await asyncio.sleep(1)
            samples.append(await ctl(c, "mem"))
        took = time.monotonic() - start
        results = await asyncio.gather(*tasks, return_exceptions=True)
        bad = [r for r in results if isinstance(r, BaseException)]
        msgs = sum(r for r in results if isinstance(r, int))
        for s in samples[len(samples) // 2 : len(samples) // 2 + 1]:
            print(f"guest under load: {s}", flush=True)
        print(f"guest peaks: {await ctl(c, 'report')}", flush=True)
    print(f"{a.conns} connections, {msgs} messages echoed and checked in {took:.1f}s", flush=True)
    for r in bad[:5]:
        print(f"FAILED: {r!r}", flush=True)
    if bad:
        print(f"{len(bad)} of {a.conns} connections failed", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
