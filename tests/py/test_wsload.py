"""Smoke tests of the benchmark load generator (examples/wsload.rs, used by scripts/bench.py):
it runs for about 2 s against wsgate with zero errors, over ws:// and wss://, and it does
report an echo that differs from what it sent."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

from harness import REPO_ROOT, free_port, wsload_bin


def wsload(*args: str, timeout: float = 30) -> tuple[int, dict]:
    r = subprocess.run([wsload_bin(), *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def check_clean(res: dict, conns: int) -> None:
    assert res["error_total"] == 0, res
    assert res["connected"] == conns, res
    assert res["completed"] > 100, res


def test_wsload_ping_pong_and_window_framed(echo_backend, gateway):
    echo_backend(mode="framed")
    g = gateway(m="framed", ping_interval="0")
    rc, res = wsload("--url", f"ws://127.0.0.1:{g.port}/echo", "--conns", "10", "--size", "32",
                     "--duration", "1")
    assert rc == 0
    check_clean(res, 10)
    rc, res = wsload("--url", f"ws://127.0.0.1:{g.port}/echo", "--conns", "10", "--size", "5000",
                     "--window", "8", "--msgs", "200", "--duration", "1")
    assert rc == 0
    check_clean(res, 10)
    assert res["frames_per_msg"] >= 1.0, res


def test_wsload_stream_mode_rechunks_but_matches(echo_backend, gateway):
    echo_backend(mode="stream")
    g = gateway(m="stream", ping_interval="0")
    rc, res = wsload("--url", f"ws://127.0.0.1:{g.port}/echo", "--conns", "20", "--size", "4096",
                     "--window", "8", "--duration", "1.5")
    assert rc == 0
    check_clean(res, 20)


def test_wsload_over_tls(echo_backend, gateway, sandbox):
    pki = sandbox / "pki"
    subprocess.run([wsload_bin(), "gen-cert", str(pki)], check=True, timeout=30)
    echo_backend(mode="framed")
    g = gateway(m="framed", ping_interval="0", tls_cert=str(pki / "cert.pem"),
                tls_key=str(pki / "key.pem"))
    rc, res = wsload("--url", f"wss://127.0.0.1:{g.port}/echo", "--ca", str(pki / "cert.pem"),
                     "--conns", "5", "--size", "1000", "--window", "4", "--duration", "1")
    assert rc == 0
    check_clean(res, 5)
    assert res["url_tls"] is True


def test_wsload_counts_a_corrupted_echo(py_backend, gateway):
    b = py_backend("py")
    g = gateway(m="stream", ping_interval="0")

    def bad_echo():
        s = b.accept(timeout=10)
        s.settimeout(10)
        n = 0
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                n += len(data)
                # the 5th message comes back with one byte changed
                if n > 4 * 32 and n - len(data) <= 4 * 32:
                    data = data[:-1] + b"!"
                s.sendall(data)
        except OSError:
            return

    t = threading.Thread(target=bad_echo, daemon=True)
    t.start()
    rc, res = wsload("--url", f"ws://127.0.0.1:{g.port}/py", "--conns", "1", "--size", "32",
                     "--msgs", "20", "--duration", "3")
    assert rc == 1, res
    assert res["errors"]["mismatch"] == 1, res
    assert res["completed"] == 4, res


def test_wsload_deflate_json_and_wire_bytes(echo_backend, gateway):
    """--payload json --deflate against a gateway that compresses: every connection negotiates,
    every echo comes back compressed and matches once inflated; the wire counters are exact
    for uncompressed frames (a masked 1 KiB frame is 1,032 bytes, the echo 1,028) and smaller
    when compressed."""
    echo_backend(mode="framed")
    g = gateway(m="framed", ping_interval="0", compression="permessage-deflate")
    url = f"ws://127.0.0.1:{g.port}/echo"
    args = ("--url", url, "--conns", "4", "--size", "1024", "--window", "2", "--msgs", "200",
            "--payload", "json")
    rc, plain = wsload(*args)
    assert rc == 0
    check_clean(plain, 4)
    assert (plain["deflate_negotiated"], plain["compressed_rx"]) == (0, 0), plain
    assert plain["sent"] == plain["completed"] == 800, plain
    assert plain["wire_tx_bytes"] == 800 * 1032 and plain["wire_rx_bytes"] == 800 * 1028, plain
    rc, z = wsload(*args, "--deflate")
    assert rc == 0
    check_clean(z, 4)
    assert (z["deflate_negotiated"], z["compressed_rx"], z["sent"]) == (4, 800, 800), z
    assert z["wire_tx_bytes"] < plain["wire_tx_bytes"] * 0.6, z
    assert z["wire_rx_bytes"] < plain["wire_rx_bytes"] * 0.6, z


def test_connrate_counts_whole_connection_lives(echo_backend, gateway):
    """examples/connrate (bench scenario f): every cycle it counts is a connection the gateway
    opened and closed with the client's close frame."""
    echo_backend(mode="stream")
    g = gateway(m="stream", ping_interval="0", log_rate="0")
    connrate = str(Path(wsload_bin()).parent / "connrate")
    r = subprocess.run([connrate, "--url", f"ws://127.0.0.1:{g.port}/echo", "--conns", "4",
                        "--duration", "1"], capture_output=True, text=True, timeout=30)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and res["errors"] == 0 and res["connections"] > 20, res
    # Each connection is one open and one close line (the log's rate limit is off here).
    closes = []
    for _ in range(50):
        text = g.log_text()
        closes = re.findall(r" close /echo ([^;]*);", text)
        if len(closes) >= res["connections"]:
            break
        time.sleep(0.1)
    assert len(re.findall(r" open /echo mode=stream", text)) == res["connections"], res
    assert len(closes) == res["connections"] and set(closes) == {"client closed (1000)"}, res
    # A refused upgrade is an error, not a connection.
    r = subprocess.run([connrate, "--url", f"ws://127.0.0.1:{g.port}/nowhere", "--conns", "1",
                        "--duration", "0.2"], capture_output=True, text=True, timeout=30)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["connections"] == 0 and res["errors"] > 0 and "not a 101" in res["first_error"], res


def test_floor_relay_copies_bytes_unchanged(tmp_path):
    """scripts/floor-relay.c (bench peer `floor`) in front of ws_unix_echo: wsload's echoes come
    back byte for byte, 32 B and 5,000 B with 8 in flight."""
    relay = tmp_path / "floor-relay"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(relay), str(REPO_ROOT / "scripts/floor-relay.c")],
                   check=True)
    sock = tmp_path / "echo"
    echo = subprocess.Popen([str(Path(wsload_bin()).parent / "ws_unix_echo"), str(sock)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    floor = subprocess.Popen([str(relay), str(port), str(sock)])
    try:
        for _ in range(100):
            if sock.exists():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    pass
            time.sleep(0.05)
        for size, window in [("32", "1"), ("5000", "8")]:
            rc, res = wsload("--url", f"ws://127.0.0.1:{port}/echo", "--conns", "10", "--size", size,
                             "--window", window, "--msgs", "200", "--duration", "2")
            assert rc == 0
            check_clean(res, 10)
    finally:
        floor.kill()
        echo.kill()
        floor.wait()
        echo.wait()
