#!/usr/bin/env python3
"""Benchmark wsgate against what users would pick instead, on this machine, in one run.

    .venv/bin/python scripts/bench.py            # full run (about 8 minutes), writes docs/performance.md
    .venv/bin/python scripts/bench.py --quick    # about 2 minutes, fewer messages and rounds
    options: --rounds N, --no-install, --no-build, --out FILE (default docs/performance.md),
             --json FILE (default reports/bench.json), --peers a,b,..., --scenarios a,b,...,
             --nice N (niceness of every benchmark process; negative needs root),
             --baseline-bin PATH (adds peers base-stream, base-framed: another wsgate binary,
             for before/after comparisons of a change),
             --direct (direct mode against relaying instead: see below),
             --compression (permessage-deflate against no compression instead: see below),
             --floor (wsgate against the floor of a relay, set-up and scale: see below)

Peers, each on 127.0.0.1 with its own config in a temp dir, each with its own echo backend:

  lighttpd        Debian's lighttpd, mod_wstunnel -> websocket_echo -m stream (raw byte echo, UNIX)
  nginx           Debian's nginx, worker_processes 1, proxy_pass -> ws_unix_echo (backend/examples/: WebSocket echo, UNIX)
  websocketd      Debian's websocketd running `cat` per connection (line mode)
  wsgate-stream   wsgate -m stream -> websocket_echo -m stream
  wsgate-framed   wsgate -m framed -> websocket_echo -m framed
  wsgate-tls      wsgate over TLS (wss://), -m framed -> websocket_echo -m framed
  wsgate-direct   wsgate --direct -> websocket_echo -d (the echo takes each client's socket
                  and speaks WebSocket itself; the gateway leaves the data path after the 101)
  wsgate-tcp      wsgate -m stream --link echo=tcp:127.0.0.1:PORT -> websocket_echo --tcp -m stream
                  (the same echo as wsgate-stream, behind a TCP link instead of a UNIX socket);
                  its tables add the gateway's CPU per message against wsgate-stream's
  wsgate-deflate  wsgate-framed with --compression permessage-deflate (default level 6 and
                  budget), its clients offering it (wsload --deflate)
  wsgate-deflate-fast   the same at --compression-level 1
  floor           scripts/floor-relay.c (built here with gcc -O2) -> ws_unix_echo: a relay
                  that copies bytes unchanged between the TCP client and a UNIX WebSocket echo
                  (one read, one write per readiness, epoll), parsing nothing: what relaying
                  costs at least

Scenarios (load generator: examples/wsload.rs, which checks every echoed byte):

  a   1 connection, 32 B ping-pong
  b   100 connections, 32 B ping-pong
  c   100 connections, 4 KiB, 8 messages in flight per connection
  d   1,000 idle connections (each did one echo): RSS of the gateway's processes
  e   1 connection, 4 KiB ping-pong (in --direct runs)
  j   16 connections, 1 KiB router-status JSON, 4 in flight (in --compression runs)
  k   16 connections, 16 KiB router-status JSON, 4 in flight (in --compression runs)
  f   64 clients reconnecting for 10 s (examples/connrate.rs: TCP connect, upgrade, close
      frame and its answer, socket closed): connections per second and gateway CPU per
      connection set-up (in --floor runs)
  g   1,000 connections, 32 B ping-pong (in --floor runs)
  h   10,000 idle connections (one echo each): RSS of the gateway's processes (in --floor runs)

--direct measures direct mode against relaying in one interleaved run: peers wsgate-direct,
wsgate-framed, wsgate-stream; scenarios a, b, e, c (1 and 100 connections, 32 B and 4 KiB);
msgs/s, gateway CPU per message and, since a direct gateway's work is the connection set-up,
gateway CPU per connection set-up (from wsload's start until every connection is up); ratios
against wsgate-framed. It writes its own block of docs/performance.md and
reports/bench-direct.json.

--compression measures permessage-deflate against the same relay without it, in one
interleaved run: peers wsgate-deflate, wsgate-deflate-fast and wsgate-framed, scenarios j and k (JSON text that
compresses as router status does: wsload --payload json); gateway CPU per message and bytes
on the wire per message each way (the client's socket bytes during the message phase, as
wsload counts them), with ratios compressed / uncompressed. It writes its own block of
docs/performance.md and reports/bench-compression.json.

--floor measures wsgate against the floor peer, lighttpd for the connection set-up, and itself at
1,000 connections against 100, in one interleaved run: peers floor, wsgate-stream,
wsgate-framed, lighttpd; scenarios b, c, g, f, h. Gateway CPU per message as a ratio to the
floor's, CPU per connection set-up as a ratio to lighttpd's, CPU per message at 1,000
connections as a ratio to 100, and the RSS of 10,000 idle connections, each against its goal.
Every peer gets room for 10,000 connections (wsgate and websocket_echo -c 10100). It writes its
own block of docs/performance.md and reports/bench-floor.json.

Runs are interleaved (round 1 of every scenario and peer, then round 2, ...; the peer order
rotates each round) and every round starts fresh peer processes. Tables give medians over the
rounds and ratios against lighttpd. CPU is utime+stime from /proc/PID/stat of the gateway's
processes (nginx: master + worker; websocketd: itself + its `cat` children, live and reaped),
sampled when every connection is up and again when the last echo is back, so only the message
phase counts; RSS is VmRSS summed over the same processes (PSS next to it). The CPU used on
the machine by everything else during each run is recorded too ("other load").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
REL = TARGET / "release"
WSLOAD = REL / "examples" / "wsload"
CONNRATE = REL / "examples" / "connrate"
FLOOR_SRC = ROOT / "scripts" / "floor-relay.c"
WSECHO = REL / "examples" / "ws_unix_echo"
WSGATE = REL / "wsgate"
ECHO = REL / "websocket_echo"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

PEERS = ["lighttpd", "nginx", "websocketd", "wsgate-stream", "wsgate-framed", "wsgate-tls"]
DIRECT_PEERS = ["wsgate-direct", "wsgate-framed", "wsgate-stream"]
# Peers that run only when named with --peers.
EXTRA_PEERS = ["wsgate-tcp", "wsgate-deflate", "wsgate-deflate-fast"]
COMPRESSION_PEERS = ["wsgate-deflate", "wsgate-deflate-fast", "wsgate-framed"]
COMPRESSION_SCENARIOS = ["j", "k"]
FLOOR_PEERS = ["floor", "wsgate-stream", "wsgate-framed", "lighttpd"]
FLOOR_SCENARIOS = ["b", "c", "g", "f", "h"]
# Goals of a --floor run: gateway CPU per message against the floor's (scenario: most), per
# connection set-up against lighttpd's, per message at 1,000 connections against 100, and the
# RSS of 10,000 idle connections.
FLOOR_GOALS = {"b": 1.00, "c": 1.10}
SETUP_GOAL = 0.70
SCALE_GOAL = 1.15
IDLE_10K_GOAL_KB = 12 * 1024
# Connection slots every peer gets (wsgate -c, websocket_echo -c, lighttpd's limits): 1,100, or
# 10,100 in --floor runs (scenario h).
SLOTS = 1100
# A tcp link may cost the relay at most this much more CPU per message than a UNIX socket.
TCP_LINK_CPU_LIMIT = 1.10
DIRECT_SCENARIOS = ["a", "b", "e", "c"]
BASE_PEERS = ["base-stream", "base-framed"]
BASELINE_BIN: Path | None = None
SCENARIOS = {
    # name: (title, conns, size, window, msgs per conn full, quick)
    "a": ("1 connection, 32 B ping-pong", 1, 32, 1, 30000, 10000),
    "b": ("100 connections, 32 B ping-pong", 100, 32, 1, 2000, 600),
    "c": ("100 connections, 4 KiB, 8 in flight", 100, 4096, 8, 800, 250),
    "d": ("1,000 idle connections (one echo each)", 1000, 32, 1, 1, 1),
    "e": ("1 connection, 4 KiB ping-pong", 1, 4096, 1, 20000, 6000),
    # 16 connections: every one gets a decompressor under the default compression budget (32).
    "j": ("16 connections, 1 KiB JSON, 4 in flight", 16, 1024, 4, 2500, 600),
    "k": ("16 connections, 16 KiB JSON, 4 in flight", 16, 16384, 4, 300, 80),
    # f: msgs are the seconds of reconnecting (full, quick).
    "f": ("64 clients reconnecting: connection set-up", 64, 0, 0, 10, 4),
    "g": ("1,000 connections, 32 B ping-pong", 1000, 32, 1, 200, 60),
    "h": ("10,000 idle connections (one echo each)", 10000, 32, 1, 1, 1),
}
# Scenarios that measure memory on fresh processes, before the others.
MEMORY_SCENARIOS = ["d", "h"]
# Scenarios whose messages are router-status JSON (wsload --payload json) rather than letters.
JSON_SCENARIOS = {"j", "k"}
APT_PACKAGES = ["lighttpd", "nginx", "websocketd"]


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# /proc
# ------------------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """The processes of the group `pid` leads (every peer starts in its own session, so this
    is the gateway with its workers or children, e.g. websocketd's `cat`s)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = proc_stat(int(entry))
            # after ")": state=0, ppid=1, pgrp=2
            if f and int(f[2]) == pid:
                pids.append(int(entry))
    return pids or [pid]


def cpu_ns(pid: int) -> int:
    """CPU time of the process tree in ns: every thread's run time from schedstat (ns
    resolution, where utime+stime tick at 10 ms), plus what reaped children used
    (cutime+cstime: websocketd's `cat`s that are gone)."""
    total = 0
    for p in tree(pid):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                try:
                    total += int(Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
        except OSError:
            pass
        f = proc_stat(p)
        if f:
            # after ")": state=0, ..., utime=11, stime=12, cutime=13, cstime=14
            total += (int(f[13]) + int(f[14])) * 1_000_000_000 // CLK_TCK
    return total


def rss_pss_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def machine_busy_ticks() -> int:
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) for x in f]
    # user nice system idle iowait irq softirq steal
    ticks = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return ticks * 1_000_000_000 // CLK_TCK


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    logfile: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def spawn(name: str, argv: list[str], work: Path, nice: int) -> Proc:
    logfile = work / f"{name}.log"
    fh = open(logfile, "ab")

    def pre():
        if nice:
            os.nice(nice)

    p = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, start_new_session=True,
        preexec_fn=pre, cwd=work,
    )
    fh.close()
    return Proc(name, p, logfile)


def wait_for(cond, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Peer:
    name: str
    port: int
    gateway: Proc
    backend: Proc | None
    path: str
    tls: bool = False
    extra: list[Proc] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    deflate: bool = False

    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{self.path}"

    def stop(self) -> None:
        for p in [self.gateway, self.backend, *self.extra]:
            if p:
                p.stop()


def said_tcp_addr(logfile: Path) -> str | None:
    """The ADDR:PORT of websocket_echo's "listening on ADDR:PORT (MODE)" line, once it is out."""
    m = re.search(r"listening on (\S+) \(", logfile.read_text())
    return m.group(1) if m else None


def start_peer(name: str, work: Path, nice: int, pki: Path) -> Peer:
    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    (d / "www").mkdir(parents=True)
    port = free_port()
    sock = d / "www" / "echo"
    echo_mode = {"lighttpd": "stream", "wsgate-stream": "stream", "base-stream": "stream",
                 "wsgate-tcp": "stream"}.get(name, "framed")
    direct = ["-d"] if name == "wsgate-direct" else []
    # wsgate-tcp: the echo listens on a port it picks and says which ("listening on ADDR:PORT").
    reach = ["--tcp", "127.0.0.1:0"] if name == "wsgate-tcp" else []
    backend = None
    link = None
    if name not in ("websocketd", "nginx", "floor"):
        backend = spawn(f"{name}-backend", [str(ECHO), "-R", str(d / "www"), "-n", "echo",
                                             "-m", echo_mode, "-c", str(max(2000, SLOTS)), "-b",
                                             "1024", *direct, *reach],
                        d, nice)
    elif name in ("nginx", "floor"):
        backend = spawn(f"{name}-backend", [str(WSECHO), str(sock)], d, nice)
    if backend and reach:
        wait_for(lambda: said_tcp_addr(backend.logfile), f"{name} backend's TCP port")
        link = f"echo=tcp:{said_tcp_addr(backend.logfile)}"
    elif backend:
        wait_for(sock.exists, f"{name} backend socket")

    if name == "lighttpd":
        (d / "htdocs").mkdir()
        conf = d / "lighttpd.conf"
        conf.write_text(f"""\
server.modules = ("mod_wstunnel")
server.document-root = "{d}/htdocs"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{d}/lighttpd.err"
server.max-connections = {max(2048, SLOTS + 100)}
server.max-fds = {max(8192, 3 * SLOTS)}
server.max-worker = 0
wstunnel.server = ( "/" => ( ( "socket" => "{sock}" ) ) )
wstunnel.frame-type = "text"
""")
        gw = spawn(name, ["lighttpd", "-D", "-f", str(conf)], d, nice)
    elif name == "nginx":
        conf = d / "nginx.conf"
        conf.write_text(f"""\
user root;
worker_processes 1;
worker_rlimit_nofile 8192;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp_body;
    proxy_temp_path {d}/tmp_proxy;
    fastcgi_temp_path {d}/tmp_fcgi;
    uwsgi_temp_path {d}/tmp_uwsgi;
    scgi_temp_path {d}/tmp_scgi;
    upstream wsecho {{ server unix:{sock}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://wsecho;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
""")
        gw = spawn(name, ["nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "nginx.err")], d, nice)
    elif name == "floor":
        relay = work / "floor-relay"
        if not relay.exists():
            subprocess.run(["gcc", "-O2", "-Wall", "-o", str(relay), str(FLOOR_SRC)], check=True)
        gw = spawn(name, [str(relay), str(port), str(sock)], d, nice)
    elif name == "websocketd":
        gw = spawn(name, ["websocketd", f"--port={port}", "--address=127.0.0.1", "--loglevel=fatal",
                          "cat"], d, nice)
    else:
        binary = BASELINE_BIN if name.startswith("base-") else WSGATE
        argv = [str(binary), "-a", "127.0.0.1", "-p", str(port), "-R", str(d / "www"),
                "-m", echo_mode, "-c", str(SLOTS), "--ping-interval", "0", "-q"]
        if name == "wsgate-tls":
            argv += ["--tls-cert", str(pki / "cert.pem"), "--tls-key", str(pki / "key.pem")]
        if name == "wsgate-direct":
            argv += ["--direct"]
        if name.startswith("wsgate-deflate"):
            argv += ["--compression", "permessage-deflate"]
        if name == "wsgate-deflate-fast":
            argv += ["--compression-level", "1"]
        if link:
            argv += ["--link", link]
        gw = spawn(name, argv, d, nice)
        wait_for(lambda: port_open(port), f"{name} on port {port}")
        return Peer(name, port, gw, backend, "/echo", tls=(name == "wsgate-tls"), argv=argv,
                    deflate=name.startswith("wsgate-deflate"))
    wait_for(lambda: port_open(port), f"{name} on port {port}")
    return Peer(name, port, gw, backend, "/echo", tls=(name == "wsgate-tls"))


def rss_floor_kb(peer: Peer, work: Path, nice: int) -> int:
    """RSS of the same wsgate started fresh with `-c 1`: wsgate preallocates its connection
    slab (and maps its buffer pool) for `-c` slots at start-up, so a fresh `-c 1100` process
    already holds the per-connection state that `RSS with 1,000 - fresh RSS` would miss."""
    argv = list(peer.argv)
    port = free_port()
    argv[argv.index("-c") + 1] = "1"
    argv[argv.index("-p") + 1] = str(port)
    p = spawn(f"{peer.name}-floor", argv, work, nice)
    try:
        wait_for(lambda: port_open(port), "wsgate -c 1")
        time.sleep(0.3)
        return rss_pss_kb(p.pid)[0]
    finally:
        p.stop()


# ------------------------------------------------------------------------------------------
# One measured run
# ------------------------------------------------------------------------------------------


def run_load(peer: Peer, scen: str, quick: bool, work: Path, pki: Path, nice: int) -> dict:
    title, conns, size, window, msgs_full, msgs_quick = SCENARIOS[scen]
    msgs = msgs_quick if quick else msgs_full
    start_f, ready_f = work / "start", work / "ready"
    for f in (start_f, ready_f):
        f.unlink(missing_ok=True)
    argv = [str(WSLOAD), "--url", peer.url(), "--conns", str(conns), "--size", str(size),
            "--window", str(window), "--msgs", str(msgs), "--duration", "30" if not quick else "15",
            "--hold", "120", "--start-file", str(start_f), "--ready-file", str(ready_f),
            "--connect-timeout", "60"]
    if peer.tls:
        argv += ["--ca", str(pki / "cert.pem")]
    if scen in JSON_SCENARIOS:
        argv += ["--payload", "json"]
    if peer.deflate:
        argv += ["--deflate"]
    gw_pid = peer.gateway.pid
    be_pid = peer.backend.pid if peer.backend else None
    rss0 = rss_pss_kb(gw_pid)

    def pre():
        if nice:
            os.nice(nice)

    # Before wsload starts: from here to "every connection is up" is the connection set-up.
    # The previous run's connections are closed by then (their teardown is not counted).
    time.sleep(0.3)
    p0 = (cpu_ns(gw_pid), cpu_ns(be_pid) if be_pid else 0)
    lg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=pre)
    try:
        wait_for(lambda: start_f.exists() or lg.poll() is not None, "wsload connections", 90)
        t0 = time.monotonic()
        c0 = (cpu_ns(gw_pid), cpu_ns(be_pid) if be_pid else 0, cpu_ns(lg.pid),
              machine_busy_ticks())
        start_f.unlink(missing_ok=True)
        wait_for(lambda: ready_f.exists() or lg.poll() is not None, "wsload messages", 120)
        c1 = (cpu_ns(gw_pid), cpu_ns(be_pid) if be_pid else 0, cpu_ns(lg.pid),
              machine_busy_ticks())
        t1 = time.monotonic()
        if scen in MEMORY_SCENARIOS:
            time.sleep(1.0)  # let the gateway settle (buffers returned, closes done)
        rss1 = rss_pss_kb(gw_pid)
        procs = len(tree(gw_pid))
        ready_f.unlink(missing_ok=True)
        out, err = lg.communicate(timeout=60)
    finally:
        if lg.poll() is None:
            lg.kill()
            lg.wait()
    try:
        res = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"error_total": -1, "first_error": err.decode()[-300:], "completed": 0,
               "msgs_per_s": 0}
    done = max(res.get("completed", 0), 1)
    wall = max(t1 - t0, 1e-6)
    ours = (c1[0] - c0[0]) + (c1[1] - c0[1]) + (c1[2] - c0[2])
    res.update({
        "peer": peer.name, "scenario": scen,
        "gw_cpu_us_per_msg": (c1[0] - c0[0]) / 1e3 / done,
        "gw_setup_us_per_conn": (c0[0] - p0[0]) / 1e3 / max(res.get("connected", conns), 1),
        "be_setup_us_per_conn": ((c0[1] - p0[1]) / 1e3 / max(res.get("connected", conns), 1)
                                 if be_pid else None),
        "gw_cpu_pct": (c1[0] - c0[0]) / 1e9 / wall * 100,
        "be_cpu_us_per_msg": (c1[1] - c0[1]) / 1e3 / done if be_pid else None,
        "lg_cpu_us_per_msg": (c1[2] - c0[2]) / 1e3 / done,
        "other_load_pct": max(0, (c1[3] - c0[3]) - ours) / 1e9 / wall * 100,
        "rss_before_kb": rss0[0], "pss_before_kb": rss0[1],
        "rss_kb": rss1[0], "pss_kb": rss1[1],
        "procs": procs,
    })
    return res


def run_connrate(peer: Peer, quick: bool, nice: int) -> dict:
    """Scenario f: connrate's clients reconnecting; the gateway's CPU over the whole run, per
    connection completed."""
    title, conns, _, _, secs_full, secs_quick = SCENARIOS["f"]
    argv = [str(CONNRATE), "--url", peer.url(), "--conns", str(conns),
            "--duration", str(secs_quick if quick else secs_full)]
    gw_pid = peer.gateway.pid
    be_pid = peer.backend.pid if peer.backend else None

    def pre():
        if nice:
            os.nice(nice)

    time.sleep(0.3)
    c0 = (cpu_ns(gw_pid), cpu_ns(be_pid) if be_pid else 0, machine_busy_ticks())
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, timeout=120, preexec_fn=pre)
    t1 = time.monotonic()
    # Closing sockets the clients dropped last: wait for the gateway to finish their teardown.
    time.sleep(0.5)
    c1 = (cpu_ns(gw_pid), cpu_ns(be_pid) if be_pid else 0, machine_busy_ticks())
    try:
        res = json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"connections": 0, "errors": -1, "first_error": p.stderr.decode()[-300:], "per_s": 0}
    done = max(res.get("connections", 0), 1)
    wall = max(t1 - t0, 1e-6)
    ours = (c1[0] - c0[0]) + (c1[1] - c0[1])
    res.update({
        "peer": peer.name, "scenario": "f",
        "error_total": res.get("errors", 0), "msgs_per_s": res.get("per_s", 0),
        "gw_cpu_us_per_msg": (c1[0] - c0[0]) / 1e3 / done,
        "gw_cpu_us_per_conn": (c1[0] - c0[0]) / 1e3 / done,
        "be_cpu_us_per_conn": (c1[1] - c0[1]) / 1e3 / done if be_pid else None,
        "other_load_pct": max(0, (c1[2] - c0[2]) - ours) / 1e9 / wall * 100,
        "rss_kb": rss_pss_kb(gw_pid)[0],
    })
    return res


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0):
    if v is None:
        return "—"
    if nd == 0:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def versions() -> dict:
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    def deb(pkg):
        return first(["dpkg-query", "-W", "-f=${Version}", pkg])

    rev = first(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return {
        "lighttpd": f"{first(['lighttpd', '-v'])} (Debian {deb('lighttpd')})",
        "nginx": f"{first(['nginx', '-v'])} (Debian {deb('nginx')})",
        "websocketd": f"{first(['websocketd', '--version'])} (Debian {deb('websocketd')})",
        "wsgate": f"wsgate {rev} (release build, {first(['rustc', '--version'])})",
        "cat": first(["cat", "--version"]),
    }


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    deb = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    return (f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {mem} GiB, "
            f"Linux {platform.release()}, Debian {deb}")


def report_head(meta: dict, flag: str = "") -> list[str]:
    """The first lines of every report: how it was made, and on what machine under what load."""
    quick = " --quick" if meta["quick"] else ""
    return [
        f"Generated by `scripts/bench.py{flag}{quick}` on {meta['date']}, {meta['rounds']} "
        f"interleaved rounds, medians; wall time {meta['wall_s']:.0f} s.",
        "",
        f"* Machine: {meta['machine']}. Shared with other jobs: the CPU they used during the "
        f"measured runs was {fmt(meta['other_load_median'])} % of one core (median; max "
        f"{fmt(meta['other_load_max'])} %), so compare ratios from this run, not absolute "
        f"figures from different runs.",
    ]


def report(results: list[dict], meta: dict) -> str:
    by = {}
    for r in results:
        by.setdefault((r["scenario"], r["peer"]), []).append(r)
    peers = meta["peers"]
    L = report_head(meta)
    for k, v in meta["versions"].items():
        L.append(f"* {k}: {v}")
    L.append(f"* Niceness of all benchmark processes: {meta['nice']}. nginx runs with "
             "`worker_processes 1`, lighttpd with its default single process, websocketd forks "
             "one `cat` per connection (its CPU and memory are counted with websocketd's).")
    L.append("")
    goals = []
    # A tcp link against a UNIX socket: the same relay and echo, so the gateway's CPU per
    # message is compared with wsgate-stream's.
    vs_unix = "wsgate-tcp" in peers and "wsgate-stream" in peers
    for scen in [s for s in meta["scenarios"] if s != "d"]:
        title, conns, size, window, *_ = SCENARIOS[scen]
        L.append(f"### ({scen}) {title}")
        L.append("")
        L.append("| peer | msgs/s | min..max | × lighttpd | RTT p50 µs | RTT p99 µs | errors | "
                 "gateway CPU µs/msg | × lighttpd | gateway CPU % | backend CPU µs/msg | frames/msg |"
                 + (" gateway CPU × wsgate-stream |" if vs_unix else ""))
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if vs_unix else ""))
        base = by.get((scen, "lighttpd"), [])
        b_rate = med([r["msgs_per_s"] for r in base])
        b_cpu = med([r["gw_cpu_us_per_msg"] for r in base])
        u_cpu = med([r["gw_cpu_us_per_msg"] for r in by.get((scen, "wsgate-stream"), [])])
        for p in peers:
            rs = by.get((scen, p), [])
            if not rs:
                continue
            rate = med([r["msgs_per_s"] for r in rs])
            cpu = med([r["gw_cpu_us_per_msg"] for r in rs])
            errs = sum(max(r.get("error_total", 0), 0) for r in rs)
            errs += sum(1 for r in rs if r.get("error_total", 0) < 0)
            exp = sum(r.get("expected", 0) for r in rs)
            got = sum(r.get("completed", 0) for r in rs)
            err_txt = f"{errs}" + (f" ({exp - got} short)" if exp and got < exp else "")
            L.append(
                f"| {p} | {fmt(rate)} | {fmt(min(r['msgs_per_s'] for r in rs))}..{fmt(max(r['msgs_per_s'] for r in rs))} "
                f"| {fmt(ratio(rate, b_rate), 2)} | {fmt(med([r['latency_us']['p50'] for r in rs if 'latency_us' in r]))} "
                f"| {fmt(med([r['latency_us']['p99'] for r in rs if 'latency_us' in r]))} | {err_txt} "
                f"| {fmt(cpu, 1)} | {fmt(ratio(cpu, b_cpu), 2)} | {fmt(med([r['gw_cpu_pct'] for r in rs]))} "
                f"| {fmt(med([r['be_cpu_us_per_msg'] for r in rs]), 1)} | {fmt(med([r.get('frames_per_msg') for r in rs]), 2)} |"
                + (f" {fmt(ratio(cpu, u_cpu), 2)} |" if vs_unix else ""))
        L.append("")
        if vs_unix and by.get((scen, "wsgate-tcp")) and u_cpu:
            t_cpu = med([r["gw_cpu_us_per_msg"] for r in by[(scen, "wsgate-tcp")]])
            cr = ratio(t_cpu, u_cpu)
            # Each round runs both peers back to back: the per-round ratios show the noise.
            per_round = {r["round"]: r["gw_cpu_us_per_msg"] for r in by[(scen, "wsgate-stream")]}
            rounds = sorted(r["gw_cpu_us_per_msg"] / per_round[r["round"]]
                            for r in by[(scen, "wsgate-tcp")] if per_round.get(r["round"]))
            spread = f" (rounds {fmt(rounds[0], 2)}..{fmt(rounds[-1], 2)})" if rounds else ""
            goals.append((f"({scen}) wsgate-tcp: gateway CPU per message ≤ {TCP_LINK_CPU_LIMIT:.2f}× "
                          "wsgate-stream (a tcp link against a UNIX socket)",
                          f"{fmt(cr, 2)}×{spread}", cr is not None and cr <= TCP_LINK_CPU_LIMIT))
        if scen in ("b", "c"):
            for p in ("wsgate-stream", "wsgate-framed"):
                rs = by.get((scen, p), [])
                if rs and base:
                    cr = ratio(med([r["gw_cpu_us_per_msg"] for r in rs]), b_cpu)
                    rr = ratio(med([r["msgs_per_s"] for r in rs]), b_rate)
                    goals.append((f"({scen}) {p}: gateway CPU per message ≤ 0.5× lighttpd",
                                  f"{fmt(cr, 2)}×", cr is not None and cr <= 0.5))
                    goals.append((f"({scen}) {p}: msgs/s ≥ 1.5× lighttpd at 100 connections",
                                  f"{fmt(rr, 2)}×", rr is not None and rr >= 1.5))
    if "d" in meta["scenarios"]:
        L.append("### (d) 1,000 idle connections: memory of the gateway's processes")
        L.append("")
        L.append("| peer | RSS fresh kB | RSS with 1,000 kB | RSS per conn kB | × lighttpd "
                 "| wsgate: per conn incl. its preallocated slot, kB | PSS per conn kB | processes | errors |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        base = by.get(("d", "lighttpd"), [])
        per = lambda r, k0, k1: (r[k1] - r[k0]) / max(r.get("connected", 1000), 1)
        b_per = med([per(r, "rss_before_kb", "rss_kb") for r in base])
        for p in peers:
            rs = by.get(("d", p), [])
            if not rs:
                continue
            pc = med([per(r, "rss_before_kb", "rss_kb") for r in rs])
            pss = med([per(r, "pss_before_kb", "pss_kb") for r in rs])
            tot = med([r["rss_kb"] for r in rs])
            errs = sum(abs(r.get("error_total", 0)) for r in rs)
            slot = med([per(r, "rss_floor_kb", "rss_kb") for r in rs if "rss_floor_kb" in r])
            L.append(f"| {p} | {fmt(med([r['rss_before_kb'] for r in rs]))} | {fmt(tot)} | {fmt(pc, 2)} "
                     f"| {fmt(ratio(pc, b_per), 2)} | {fmt(slot, 2)} | {fmt(pss, 2)} "
                     f"| {fmt(med([r['procs'] for r in rs]))} | {errs} |")
            if slot is not None:
                pc = max(pc, slot)  # the goals use the larger, honest figure
            if p in ("wsgate-stream", "wsgate-framed"):
                goals.append((f"(d) {p}: an idle plain connection ≤ 2 kB RSS", f"{fmt(pc, 2)} kB",
                              pc is not None and pc <= 2.0))
                goals.append((f"(d) {p}: 1,000 connections ≤ 6 MB total RSS", f"{fmt(tot / 1000, 2)} MB",
                              tot is not None and tot <= 6000))
            if p == "wsgate-tls":
                goals.append(("(d) wsgate-tls: an idle TLS connection ≤ 24 kB RSS", f"{fmt(pc, 2)} kB",
                              pc is not None and pc <= 24.0))
        L.append("")
        L.append("RSS per connection = (RSS with 1,000 idle connections − RSS of the fresh "
                 "process) / 1,000; MB = 1,000 kB. wsgate runs with `-c 1100` and preallocates its "
                 "connection slab for 1,100 slots at start-up, so its fresh RSS already holds most "
                 "of the per-connection state: the next column charges it, (RSS with 1,000 − RSS "
                 "of a fresh `wsgate -c 1`) / 1,000, and the goals use that figure. nginx also "
                 "preallocates its `worker_connections 4096` (in its fresh RSS, not charged here). "
                 "Kernel socket memory is not in RSS for any peer. websocketd's RSS sums every `cat` "
                 "child (shared pages counted per process): its PSS is the fairer figure.")
        L.append("")
    L.append("### Goals, from this run")
    L.append("")
    L.append("| goal | measured | met |")
    L.append("|---|---:|---|")
    for g, v, ok in goals:
        L.append(f"| {g} | {v} | {'**met**' if ok else 'not met'} |")
    L.append("")
    return "\n".join(L)


def report_direct(results: list[dict], meta: dict) -> str:
    """The --direct tables: direct mode against the relay modes, ratios against framed."""
    by = {}
    for r in results:
        by.setdefault((r["scenario"], r["peer"]), []).append(r)
    peers = meta["peers"]
    both = lambda r: r["gw_cpu_us_per_msg"] + (r["be_cpu_us_per_msg"] or 0)  # noqa: E731
    L = report_head(meta, " --direct")
    L.append(f"* {meta['versions']['wsgate']}")
    L.append("")
    L.append("| scenario | peer | msgs/s | min..max | × framed relay | RTT p50 µs | errors | "
             "gateway CPU µs/msg | gateway + backend CPU µs/msg | × framed relay |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scen in meta["scenarios"]:
        title = SCENARIOS[scen][0]
        base = by.get((scen, "wsgate-framed"), [])
        b_rate = med([r["msgs_per_s"] for r in base])
        b_both = med([both(r) for r in base])
        for p in peers:
            rs = by.get((scen, p), [])
            if not rs:
                continue
            rate = med([r["msgs_per_s"] for r in rs])
            cpu = med([both(r) for r in rs])
            errs = sum(abs(r.get("error_total", 0)) for r in rs)
            L.append(
                f"| ({scen}) {title} | {p} | {fmt(rate)} "
                f"| {fmt(min(r['msgs_per_s'] for r in rs))}..{fmt(max(r['msgs_per_s'] for r in rs))} "
                f"| {fmt(ratio(rate, b_rate), 2)} "
                f"| {fmt(med([r['latency_us']['p50'] for r in rs if 'latency_us' in r]))} | {errs} "
                f"| {fmt(med([r['gw_cpu_us_per_msg'] for r in rs]), 2)} | {fmt(cpu, 1)} "
                f"| {fmt(ratio(cpu, b_both), 2)} |")
    L.append("")
    many = [s for s in meta["scenarios"] if SCENARIOS[s][1] >= 100]
    if many:
        L.append(f"Connection set-up, CPU per connection (scenarios {', '.join(many)}: from "
                 "wsload's start until all 100 connections are open; the gateway's figure "
                 "includes the TCP accept, the HTTP upgrade, the backend connect and, in direct "
                 "mode, the hand-over):")
        L.append("")
        L.append("| peer | gateway µs | backend µs | × framed relay (gateway) |")
        L.append("|---|---:|---:|---:|")
        rows = {p: [r for s in many for r in by.get((s, p), [])] for p in peers}
        b_setup = med([r["gw_setup_us_per_conn"] for r in rows.get("wsgate-framed", [])])
        for p in peers:
            rs = rows[p]
            if not rs:
                continue
            g = med([r["gw_setup_us_per_conn"] for r in rs])
            L.append(f"| {p} | {fmt(g, 1)} | {fmt(med([r['be_setup_us_per_conn'] for r in rs]), 1)} "
                     f"| {fmt(ratio(g, b_setup), 2)} |")
        L.append("")
    return "\n".join(L)


def report_compression(results: list[dict], meta: dict) -> str:
    """The --compression table: permessage-deflate against the same relay without it, ratios
    compressed / uncompressed."""
    by = {}
    for r in results:
        by.setdefault((r["scenario"], r["peer"]), []).append(r)
    peers = meta["peers"]
    # Bytes on the wire per message, each way: what the client wrote per message sent, what it
    # read per message echoed.
    up = lambda r: r["wire_tx_bytes"] / max(r["sent"], 1)  # noqa: E731
    down = lambda r: r["wire_rx_bytes"] / max(r["completed"], 1)  # noqa: E731
    L = report_head(meta, " --compression")
    L.append(f"* {meta['versions']['wsgate']}")
    L.append("")
    L.append("| scenario | peer | msgs/s | min..max | RTT p50 µs | errors | compressed conns "
             "| messages back compressed | gateway CPU µs/msg | × uncompressed "
             "| wire B/msg client → gateway | × uncompressed | wire B/msg gateway → client "
             "| × uncompressed | load generator CPU µs/msg |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scen in meta["scenarios"]:
        title, conns, size, *_ = SCENARIOS[scen]
        base = by.get((scen, "wsgate-framed"), [])
        b_cpu = med([r["gw_cpu_us_per_msg"] for r in base])
        b_up = med([up(r) for r in base])
        b_down = med([down(r) for r in base])
        for p in peers:
            rs = by.get((scen, p), [])
            if not rs:
                continue
            cpu = med([r["gw_cpu_us_per_msg"] for r in rs])
            u, d = med([up(r) for r in rs]), med([down(r) for r in rs])
            errs = sum(abs(r.get("error_total", 0)) for r in rs)
            got = sum(r.get("completed", 0) for r in rs)
            zipped = sum(r.get("compressed_rx", 0) for r in rs)
            L.append(
                f"| ({scen}) {title} | {p} | {fmt(med([r['msgs_per_s'] for r in rs]))} "
                f"| {fmt(min(r['msgs_per_s'] for r in rs))}..{fmt(max(r['msgs_per_s'] for r in rs))} "
                f"| {fmt(med([r['latency_us']['p50'] for r in rs if 'latency_us' in r]))} | {errs} "
                f"| {fmt(med([r.get('deflate_negotiated', 0) for r in rs]))} of {conns} "
                f"| {100 * zipped / max(got, 1):.0f} % "
                f"| {fmt(cpu, 1)} | {fmt(ratio(cpu, b_cpu), 2)} "
                f"| {fmt(u)} | {fmt(ratio(u, b_up), 3)} | {fmt(d)} | {fmt(ratio(d, b_down), 3)} "
                f"| {fmt(med([r['lg_cpu_us_per_msg'] for r in rs]), 1)} |")
    L.append("")
    return "\n".join(L)


def report_floor(results: list[dict], meta: dict) -> str:
    """The --floor tables: gateway CPU per message against the floor peer, connection set-up
    against lighttpd, 1,000 connections against 100, 10,000 idle connections; each with its
    goal."""
    by = {}
    for r in results:
        by.setdefault((r["scenario"], r["peer"]), []).append(r)
    peers = meta["peers"]
    scens = meta["scenarios"]
    cpu = lambda s, p: med([r["gw_cpu_us_per_msg"] for r in by.get((s, p), [])])  # noqa: E731
    L = report_head(meta, " --floor")
    L.append(f"* {meta['versions']['wsgate']}")
    L.append("")
    L.append("Gateway CPU per message against the floor (a relay that copies bytes and parses "
             "nothing, `scripts/floor-relay.c`):")
    L.append("")
    L.append("| scenario | peer | msgs/s | min..max | RTT p50 µs | errors | gateway CPU µs/msg "
             "| × floor | goal |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for scen in [s for s in scens if s in ("b", "c", "g")]:
        title = SCENARIOS[scen][0]
        base = cpu(scen, "floor")
        for p in peers:
            rs = by.get((scen, p), [])
            if not rs:
                continue
            c = cpu(scen, p)
            goal = FLOOR_GOALS.get(scen)
            verdict = ""
            if goal and p.startswith("wsgate"):
                x = ratio(c, base)
                verdict = f"≤ {goal:.2f}: {'met' if x is not None and x <= goal else 'not met'}"
            errs = sum(abs(r.get("error_total", 0)) for r in rs)
            L.append(
                f"| ({scen}) {title} | {p} | {fmt(med([r['msgs_per_s'] for r in rs]))} "
                f"| {fmt(min(r['msgs_per_s'] for r in rs))}..{fmt(max(r['msgs_per_s'] for r in rs))} "
                f"| {fmt(med([r['latency_us']['p50'] for r in rs if 'latency_us' in r]))} | {errs} "
                f"| {fmt(c, 2)} | {fmt(ratio(c, base), 2)} | {verdict} |")
    L.append("")
    if "f" in scens:
        L.append(f"Connection set-up ({SCENARIOS['f'][0]}; CPU over the whole run per connection: "
                 "TCP accept, upgrade, backend connect, closing handshake, teardown):")
        L.append("")
        L.append("| peer | connections/s | errors | gateway CPU µs/conn | backend CPU µs/conn "
                 "| × lighttpd | goal |")
        L.append("|---|---:|---:|---:|---:|---:|---|")
        base = med([r["gw_cpu_us_per_conn"] for r in by.get(("f", "lighttpd"), [])])
        for p in peers:
            rs = by.get(("f", p), [])
            if not rs:
                continue
            g = med([r["gw_cpu_us_per_conn"] for r in rs])
            x = ratio(g, base)
            verdict = (f"≤ {SETUP_GOAL:.2f}: {'met' if x is not None and x <= SETUP_GOAL else 'not met'}"
                       if p.startswith("wsgate") else "")
            L.append(f"| {p} | {fmt(med([r['msgs_per_s'] for r in rs]))} "
                     f"| {sum(abs(r.get('error_total', 0)) for r in rs)} | {fmt(g, 1)} "
                     f"| {fmt(med([r['be_cpu_us_per_conn'] for r in rs]), 1)} | {fmt(x, 2)} "
                     f"| {verdict} |")
        L.append("")
    if "b" in scens and "g" in scens:
        L.append("Scale: gateway CPU per message at 1,000 connections (g) against 100 (b), "
                 "32 B ping-pong:")
        L.append("")
        L.append("| peer | µs/msg at 100 | µs/msg at 1,000 | × | goal |")
        L.append("|---|---:|---:|---:|---|")
        for p in peers:
            a, b = cpu("b", p), cpu("g", p)
            if a is None or b is None:
                continue
            x = ratio(b, a)
            verdict = (f"≤ {SCALE_GOAL:.2f}: {'met' if x is not None and x <= SCALE_GOAL else 'not met'}"
                       if p.startswith("wsgate") else "")
            L.append(f"| {p} | {fmt(a, 2)} | {fmt(b, 2)} | {fmt(x, 2)} | {verdict} |")
        L.append("")
    if "h" in scens:
        L.append(f"{SCENARIOS['h'][0]}: RSS of the gateway's processes (wsgate with -c {SLOTS}):")
        L.append("")
        L.append(f"| peer | RSS fresh kB | RSS with {SCENARIOS['h'][1]:,} kB | PSS kB | errors | goal |")
        L.append("|---|---:|---:|---:|---:|---|")
        for p in peers:
            rs = by.get(("h", p), [])
            if not rs:
                continue
            rss = med([r["rss_kb"] for r in rs])
            verdict = (f"≤ {IDLE_10K_GOAL_KB:,} kB: {'met' if rss <= IDLE_10K_GOAL_KB else 'not met'}"
                       if p.startswith("wsgate") else "")
            L.append(f"| {p} | {fmt(med([r['rss_before_kb'] for r in rs]))} | {fmt(rss)} "
                     f"| {fmt(med([r['pss_kb'] for r in rs]))} "
                     f"| {sum(abs(r.get('error_total', 0)) for r in rs)} | {verdict} |")
        L.append("")
    return "\n".join(L)


BEGIN = "<!-- bench:begin (generated by scripts/bench.py; edits inside are overwritten) -->"
END = "<!-- bench:end -->"
DIRECT_BEGIN = ("<!-- bench-direct:begin (generated by scripts/bench.py --direct; edits inside "
                "are overwritten) -->")
DIRECT_END = "<!-- bench-direct:end -->"
COMPRESSION_BEGIN = ("<!-- bench-compression:begin (generated by scripts/bench.py --compression; "
                     "edits inside are overwritten) -->")
COMPRESSION_END = "<!-- bench-compression:end -->"
FLOOR_BEGIN = ("<!-- bench-floor:begin (generated by scripts/bench.py --floor; edits inside "
               "are overwritten) -->")
FLOOR_END = "<!-- bench-floor:end -->"


def write_doc(path: Path, body: str, begin: str = BEGIN, end: str = END) -> None:
    """Replaces the block between `begin` and `end` in `path`; appends it when missing."""
    block = f"{begin}\n{body}\n{end}"
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            pre, rest = text.split(begin, 1)
            post = rest.split(end, 1)[1]
            path.write_text(pre + block + post)
        else:
            path.write_text(text.rstrip("\n") + f"\n\n{block}\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Performance\n\n{block}\n")


# ------------------------------------------------------------------------------------------


def install(no_install: bool, peers: list[str]) -> None:
    """Installs the Debian packages of the `peers` that need one (not the wsgate peers)."""
    missing = [p for p in APT_PACKAGES if p in peers and not shutil.which(p)]
    if not missing:
        return
    if no_install or os.geteuid() != 0:
        raise SystemExit(f"bench: missing {missing}: run as root without --no-install, or apt-get install them")
    # Do not let the packages start system-wide services on port 80.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        log("apt-get update")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        log(f"apt-get install {' '.join(missing)}")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       check=True, env=env)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--json")
    ap.add_argument("--peers")
    ap.add_argument("--scenarios")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--baseline-bin")
    ap.add_argument("--direct", action="store_true")
    ap.add_argument("--compression", action="store_true")
    ap.add_argument("--floor", action="store_true")
    args = ap.parse_args()
    if args.direct + args.compression + args.floor > 1:
        raise SystemExit("bench: one of --direct, --compression, --floor")
    kind = ("direct" if args.direct else "compression" if args.compression
            else "floor" if args.floor else None)
    default_peers = {"direct": DIRECT_PEERS, "compression": COMPRESSION_PEERS,
                     "floor": FLOOR_PEERS}.get(kind, PEERS)
    args.peers = args.peers or ",".join(default_peers)
    args.scenarios = args.scenarios or ",".join(
        {"direct": DIRECT_SCENARIOS, "compression": COMPRESSION_SCENARIOS,
         "floor": FLOOR_SCENARIOS}.get(kind, "abcd"))
    global SLOTS
    if args.floor:
        SLOTS = 10100
        # A relayed connection holds two descriptors in the gateway (client and backend): where
        # the hard limit is below what 10,000 need, scenario h opens as many as it allows.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 2 * 10000 + 200:
            n = (hard - 200) // 2
            SCENARIOS["h"] = (f"{n:,} idle connections (one echo each; the hard limit of open "
                              f"files here is {hard:,})", n, 32, 1, 1, 1)
    args.json = args.json or str(ROOT / "reports" / (f"bench-{kind}.json" if kind else "bench.json"))
    global BASELINE_BIN
    if args.baseline_bin:
        BASELINE_BIN = Path(args.baseline_bin).resolve()
    rounds = args.rounds or (3 if args.quick else 5)
    peers = [p for p in args.peers.split(",") if p]
    scens = [s for s in args.scenarios.split(",") if s]
    if BASELINE_BIN and args.peers == ",".join(default_peers):
        peers += BASE_PEERS
    for p in peers:
        if p not in PEERS + DIRECT_PEERS + EXTRA_PEERS + FLOOR_PEERS + (BASE_PEERS if BASELINE_BIN else []):
            raise SystemExit(f"unknown peer {p}")
    for s in scens:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s}")
    t_start = time.monotonic()
    install(args.no_install, peers)
    if not args.no_build:
        log("cargo build --release --bins --examples")
        subprocess.run(["cargo", "build", "--release", "-q", "--bins", "--examples"], cwd=ROOT, check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 65536), hard), hard))

    work = Path(tempfile.mkdtemp(prefix="wsgb-", dir="/tmp"))
    pki = work / "pki"
    subprocess.run([str(WSLOAD), "gen-cert", str(pki)], check=True)
    results = []
    try:
        for rnd in range(rounds):
            order = peers[rnd % len(peers):] + peers[:rnd % len(peers)]
            log(f"round {rnd + 1}/{rounds}: {', '.join(order)}")
            running = {p: start_peer(p, work, args.nice, pki) for p in order}
            try:
                # memory first, on fresh processes
                memory = [s for s in MEMORY_SCENARIOS if s in scens]
                for scen in memory + [s for s in scens if s not in memory]:
                    for p in order:
                        if scen == "f":
                            r = run_connrate(running[p], args.quick, args.nice)
                        else:
                            r = run_load(running[p], scen, args.quick, work, pki, args.nice)
                        r["round"] = rnd + 1
                        if scen == "d" and running[p].argv:
                            r["rss_floor_kb"] = rss_floor_kb(running[p], work, args.nice)
                        results.append(r)
                        log(f"  ({scen}) {p:14s} {r['msgs_per_s']:>10,.0f} msg/s  "
                            f"gw {r['gw_cpu_us_per_msg']:6.1f} µs/msg  rss {r['rss_kb']:>8,} kB  "
                            f"errors {r.get('error_total')}  other {r['other_load_pct']:.0f}%"
                            + (f"  [{r.get('first_error')}]" if r.get("error_total") else ""))
            finally:
                for p in running.values():
                    p.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    loads = [r["other_load_pct"] for r in results if r["scenario"] not in MEMORY_SCENARIOS]
    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "quick": args.quick, "rounds": rounds, "peers": peers, "scenarios": scens,
        "machine": machine(), "versions": versions(), "nice": args.nice,
        "other_load_median": med(loads) if loads else None,
        "other_load_max": max(loads) if loads else None,
        "wall_s": time.monotonic() - t_start,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    if args.direct:
        body = report_direct(results, meta)
        write_doc(Path(args.out), body, DIRECT_BEGIN, DIRECT_END)
    elif args.compression:
        body = report_compression(results, meta)
        write_doc(Path(args.out), body, COMPRESSION_BEGIN, COMPRESSION_END)
    elif args.floor:
        body = report_floor(results, meta)
        write_doc(Path(args.out), body, FLOOR_BEGIN, FLOOR_END)
    else:
        body = report(results, meta)
        write_doc(Path(args.out), body)
    print(body)
    bad = sum(1 for r in results if r.get("error_total", 0) != 0)
    if bad:
        log(f"{bad} runs had errors (see the tables)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
