#!/usr/bin/env python3
"""The gateway's memory with permessage-deflate: what it holds idle, per compressed connection
idle and active, with a thousand connections offering compression, and under decompression
bombs; printed as a table (Markdown) and as JSON.

    .venv/bin/python scripts/deflate-memory.py                 # about 15 s
    options: --memory 1M,2M,4M (budgets for the idle figures), --flood N (default 1000),
             --bombs N (default 100), --json FILE

Needs target/release/{wsgate,websocket_echo} and target/release/examples/wsload
(`cargo build --release --bins --examples`). The measurements are those of
tests/py/deflate_memory.py, which tests/py/test_compression_memory.py bounds; that module's
docstring says how each is taken. RSS is the gateway's `Rss` from /proc/PID/smaps_rollup, kB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

import deflate_memory as dm  # noqa: E402
import harness  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory", default="1M,2M,4M,8M")
    ap.add_argument("--flood", type=int, default=1000)
    ap.add_argument("--bombs", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args()
    dm.raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="wsdm-", dir="/tmp"))
    docroot = work / "www"
    docroot.mkdir()
    started: list[harness.Child] = [harness.EchoBackend(docroot, mode="framed", extra=dm.ECHO_ARGS)]

    def start(**opts) -> harness.Gateway:
        g = harness.Gateway(docroot, **opts)
        started.append(g)
        return g

    def stop_gateways() -> None:
        for c in started[1:]:
            c.stop()
        del started[1:]

    try:
        idle = dm.measure_idle(start, args.memory.split(","))
        stop_gateways()
        conns = dm.measure_connections(start, work)
        stop_gateways()
        flood = dm.measure_flood(start, work, args.flood)
        stop_gateways()
        bombs = dm.measure_bombs(start, work, args.bombs)
    finally:
        for c in started:
            c.stop()
        shutil.rmtree(work, ignore_errors=True)

    L = ["| measurement | plain | permessage-deflate | bound asserted in CI |", "|---|---:|---:|---|"]
    for d in idle["deflate"]:
        s = d["sizes"]
        L.append(f"| idle gateway, `--compression-memory {d['memory']}` ({s.deflaters} + {s.narrow} "
                 f"compressors, {s.inflaters} decompressors): RSS kB | {idle['plain_kb']:,} "
                 f"| {d['rss_kb']:,} (+{d['rss_kb'] - idle['plain_kb']:,}) "
                 f"| + ≤ budget ({s.budget_kb:,}) + scratch |")
    k, share = conns["conns"], conns["sizes"].share_kb
    for kind, what in (("idle", f"per idle connection ({k} open, one 1 KiB echo each)"),
                       ("active", f"per active connection ({k} exchanging 16 KiB, 4 in flight; peak)")):
        L.append(f"| {what}: (RSS − fresh) / {k}, kB | {conns['plain'][kind]:.2f} "
                 f"| {conns['deflate'][kind]:.2f} | ≤ plain + share ({share:.0f}) |")
    L.append(f"| the same {k} connections again (twice each): least RSS added, kB "
             f"| {conns['plain']['again_kb']} | {conns['deflate']['again_kb']} | ≤ {dm.SLACK_KB} |")
    n = flood["conns"]
    first = {x: flood[x]["runs"][0] for x in ("plain", "deflate")}
    L.append(f"| {n:,} connections offering compression, held open: RSS kB "
             f"| {flood['plain']['flood_kb'][0]:,} | {flood['deflate']['flood_kb'][0]:,} | |")
    L.append(f"| … growth over the fresh process, kB "
             f"| {flood['plain']['flood_kb'][0] - flood['plain']['fresh_kb']:,} "
             f"| {flood['deflate']['flood_kb'][0] - flood['deflate']['fresh_kb']:,} "
             f"| ≤ plain + budget ({flood['sizes'].budget_kb:,}) |")
    L.append(f"| … negotiated permessage-deflate / answered uncompressed with a warning "
             f"| {first['plain']['result']['deflate_negotiated']} / — "
             f"| {first['deflate']['result']['deflate_negotiated']} / {first['deflate']['fallbacks']} "
             f"| = K ({flood['sizes'].inflaters}) / {n} − K |")
    L.append(f"| … the flood repeated: RSS with each, kB | "
             f"| {' → '.join(f'{x:,}' for x in flood['deflate']['flood_kb'])} "
             f"| least added ≤ {dm.SLACK_KB} |")
    codes = sorted(set(bombs["codes"]))
    L.append(f"| {args.bombs} bombs ({bombs['payload']:,} B inflating to {bombs['inflated']:,} B, "
             f"limit 1 MiB): close codes {codes}, compression negotiated {bombs['negotiated']} "
             f"times; RSS before → after the first → after the last, kB | "
             f"| {bombs['before_kb']:,} → {bombs['after_first_kb']:,} → {bombs['after_kb']:,} "
             f"| all 1009; after − before ≤ {dm.SLACK_KB} |")
    table = "\n".join(L)
    print(table)
    if args.json:
        def plain(o):
            return o.__dict__ if isinstance(o, dm.Sizes) else str(o)
        Path(args.json).write_text(json.dumps({"idle": idle, "connections": conns, "flood": flood,
                                               "bombs": bombs}, indent=1, default=plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
