"""permessage-deflate's memory is fixed at start-up: the gateway's resident set against bounds
taken from its configuration (the compression budget B, the decompressors K it makes of it,
the buffer size), with a plain gateway of the same options measured alongside where the
bound is "what compression adds". The measurements are deflate_memory.py's, the same that
scripts/deflate-memory.py prints."""

from __future__ import annotations

import pytest

import deflate_memory as dm
from deflate_memory import SLACK_KB

BUF_KB = 16  # the default --buffer-size: the contexts' scratch buffer is one


@pytest.fixture(autouse=True)
def _nofile():
    dm.raise_nofile()


def test_idle_gateway_holds_at_most_its_compression_memory(echo_backend, gateway):
    echo_backend("framed")
    m = dm.measure_idle(gateway, ("1M", "4M"))
    print(m)
    for d in m["deflate"]:
        # The contexts and their scratch buffer are all that compression adds.
        assert d["rss_kb"] - m["plain_kb"] <= d["sizes"].budget_kb + BUF_KB + SLACK_KB, m


def test_compressed_connections_cost_their_share_idle_and_active(echo_backend, gateway, sandbox):
    """K connections, every one compressed, first idle after one echo, then all exchanging
    16 KiB messages: a compressed connection costs at most its share of the budget (B / K)
    more than a plain one, and repeating either adds nothing."""
    echo_backend("framed", extra=dm.ECHO_ARGS)
    m = dm.measure_connections(gateway, sandbox)
    k, sizes = m["conns"], m["sizes"]
    for name in ("plain", "deflate"):
        for r in m[name]["runs"]:
            res = r["result"]
            assert (res["error_total"], res["connected"]) == (0, k), res
            assert res["deflate_negotiated"] == (k if name == "deflate" else 0), res
            assert r["fallbacks"] == 0
    # Every message came back compressed: the compressor went back after each one.
    assert m["deflate"]["runs"][-1]["result"]["compressed_rx"] == k * 20
    figures = {n: {f: m[n][f] for f in ("fresh_kb", "idle", "active", "again_kb")}
               for n in ("plain", "deflate")}
    print(f"{k} connections, RSS per connection (kB): {figures}; share {sizes.share_kb:.1f} kB")
    for kind in ("idle", "active"):
        assert figures["deflate"][kind] <= figures["plain"][kind] + sizes.share_kb, (kind, figures)
    assert figures["deflate"]["again_kb"] <= SLACK_KB, figures


def test_a_flood_falls_back_uncompressed_within_the_cap(echo_backend, gateway, sandbox):
    """1,000 connections offer compression to a gateway with decompressors for K: exactly K
    negotiate it and the rest are answered uncompressed, each with its warning, every echo
    right; compression adds at most its budget to what the same flood costs a plain gateway,
    and repeated floods (the promises given back) negotiate K again and add nothing."""
    echo_backend("framed", extra=dm.ECHO_ARGS)
    m = dm.measure_flood(gateway, sandbox)
    n, k = m["conns"], m["sizes"].inflaters
    for name in ("plain", "deflate"):
        for f in m[name]["runs"]:
            res = f["result"]
            assert (res["error_total"], res["connected"], res["completed"]) == (0, n, n), res
            assert res["deflate_negotiated"] == (k if name == "deflate" else 0), res
            assert f["fallbacks"] == (n - k if name == "deflate" else 0)
    growth = {name: m[name]["flood_kb"][0] - m[name]["fresh_kb"] for name in ("plain", "deflate")}
    print(f"{n} connections, RSS growth kB: {growth}; "
          f"repeated floods: {m['deflate']['flood_kb']} kB, added {m['deflate']['again_kb']} kB")
    assert growth["deflate"] <= growth["plain"] + m["sizes"].budget_kb, growth
    assert m["deflate"]["again_kb"] <= SLACK_KB, m["deflate"]["flood_kb"]


def test_decompression_bombs_close_1009_and_leave_rss_flat(echo_backend, gateway, sandbox):
    """A 16 KiB compressed frame that inflates to about 15 MiB, past the 1 MiB message limit,
    100 times on 100 connections, after a compressed message just under the limit has gone
    both ways: every one negotiates compression (the promises come back) and is closed 1009,
    and the resident set stays where that message left it."""
    echo_backend("framed")
    r = dm.measure_bombs(gateway, sandbox, 100)
    print({k: v for k, v in r.items() if k not in ("codes", "warm")})
    assert r["payload"] <= 16 * 1024 and r["inflated"] > 1 << 20
    assert r["warm"]["result"]["compressed_rx"] == 1, r["warm"]["result"]
    assert r["negotiated"] == 100
    assert r["codes"] == [1009] * 100
    assert r["after_kb"] - r["before_kb"] <= SLACK_KB, r
