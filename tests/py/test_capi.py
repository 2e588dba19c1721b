"""The backend library's C ABI: tests/c/backend_echo.c is compiled here
with gcc against the installed header and library (scripts/install-backend-lib.sh into a temp
prefix, flags from `pkg-config --cflags --libs wsgate-backend`), then run behind the real
gateway in direct mode and in the relay modes, driven by a websockets client.

The C backend echoes every message with its type; "whoami" answers with what it knows of the
connection (wsb_is_direct, wsb_value), "close CODE REASON" closes with that code."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from harness import (
    handshake_with,
    next_frame,
    OP_TEXT,
    REPO_ROOT,
    Child,
    encode_frame,
    gateway_bin,
)

CFLAGS = ["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-O1"]


def _run(argv, **kw) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    assert p.returncode == 0, f"{shlex.join(map(str, argv))} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The library installed into a temp prefix from the release build next to the gateway
    (LIB_DIR: the script does not rebuild); returns (prefix, env with PKG_CONFIG_PATH)."""
    prefix = tmp_path_factory.mktemp("prefix")
    lib_dir = Path(gateway_bin()).parent
    assert (lib_dir / "libwsgate_backend.so").exists(), f"build the workspace first: no {lib_dir}/libwsgate_backend.so"
    env = dict(os.environ, LIB_DIR=str(lib_dir))
    _run(["bash", str(REPO_ROOT / "scripts/install-backend-lib.sh"), str(prefix)], env=env)
    for f in ["lib/libwsgate_backend.so", "lib/libwsgate_backend.a", "include/wsgate_backend.h",
              "lib/pkgconfig/wsgate-backend.pc"]:
        assert (prefix / f).is_file(), f
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))
    return prefix, env


def pkg_config(env, *args) -> list[str]:
    return shlex.split(_run(["pkg-config", *args, "wsgate-backend"], env=env))


@pytest.fixture(scope="module")
def c_backend(installed) -> str:
    """backend_echo linked against the shared library, with the flags pkg-config gives."""
    prefix, env = installed
    out = prefix / "backend_echo"
    _run(["gcc", *CFLAGS, "-o", str(out), str(REPO_ROOT / "tests/c/backend_echo.c"),
          *pkg_config(env, "--cflags", "--libs")])
    return str(out)


@pytest.fixture(scope="module")
def c_backend_static(installed) -> str:
    """backend_echo with libwsgate_backend.a linked in (pkg-config --static for what the Rust
    standard library inside it needs): the file runs without the shared library."""
    prefix, env = installed
    out = prefix / "backend_echo_static"
    libs: list[str] = []
    for a in pkg_config(env, "--static", "--libs"):
        libs += ["-Wl,-Bstatic", a, "-Wl,-Bdynamic"] if a == "-lwsgate_backend" else [a]
    _run(["gcc", *CFLAGS, "-o", str(out), str(REPO_ROOT / "tests/c/backend_echo.c"),
          *pkg_config(env, "--cflags"), *libs])
    needed = _run(["ldd", str(out)])
    assert "libwsgate_backend" not in needed, needed
    return str(out)


@pytest.fixture
def run_backend(docroot, installed):
    started: list[Child] = []

    def start(binary: str, mode: str, *flags: str, name: str = "echo") -> Child:
        prefix, _ = installed
        # The shared library is found through LD_LIBRARY_PATH, as from a prefix off the
        # loader's path (an install into /usr/lib needs nothing). env execs: same process.
        argv = ["/usr/bin/env", f"LD_LIBRARY_PATH={prefix / 'lib'}", binary, str(docroot / name), mode, *flags]
        b = Child(argv, f"backend_echo[{mode}]")
        started.append(b)
        b.wait_line(r"backend_echo: listening on ", 5)
        return b

    yield start
    for b in started:
        b.stop()
        print(f"---- {b.name} stderr ----\n{b.log_text()}")


def round_trips(c, big: bool = True, binary: bool = True) -> None:
    msgs = ["hello", "é" * 3000, ""]
    if binary:
        msgs += [b"\x00\x01\xff binary", b""]
    if big:
        msgs.append(bytes(range(256)) * 2000)  # 512000 bytes: many frames and reads
    for m in msgs:
        c.send(m)
        got = c.recv(timeout=10)
        assert got == m, (type(got), len(got), len(m))


def closed_by_backend(c, code: int, reason: str) -> None:
    c.send(f"close {code} {reason}")
    with pytest.raises(ConnectionClosed):
        while True:
            c.recv(timeout=5)
    assert c.close_code == code
    assert c.close_reason == reason


def test_c_backend_direct_mode(c_backend, run_backend, gateway, ws):
    b = run_backend(c_backend, "framed", "direct")
    g = gateway(direct=True)
    c = ws(g.url("/echo?room=7"), subprotocols=["chat"], max_size=2 << 20)
    round_trips(c)
    assert c.ping(b"are you there").wait(5)  # answered inside the library
    c.send("whoami")
    port = c.local_address[1]
    assert c.recv(timeout=5) == f"direct=1 peer=127.0.0.1:{port} path=/echo query=room=7 protocol=chat"
    closed_by_backend(c, 4001, "bye from C")
    g.wait_line(r"handed over to /echo \(direct\)")
    b.wait_line(r"conn \d+: accepted, direct=1 peer=127\.0\.0\.1$")
    b.wait_line(r"conn \d+: client closed with 4001")  # the client's answer to our close
    b.wait_line(r"conn \d+: done \(closed\)")


def test_c_backend_direct_client_closes_and_early_bytes(c_backend, run_backend, gateway):
    """A frame sent in the same packet as the upgrade request reaches the C backend (the
    hand-over's early data), and the client's close code reaches it too."""
    b = run_backend(c_backend, "framed", "direct")
    g = gateway(direct=True)
    s, got = handshake_with(g.port, encode_frame(OP_TEXT, b"early bird"))
    with s:
        f = next_frame(s, got)
        assert f is not None and (f.opcode, f.payload) == (OP_TEXT, b"early bird")
        s.sendall(encode_frame(0x8, (4100).to_bytes(2, "big") + b"done"))
        f = next_frame(s, got)
        assert f is not None, "no close frame came back"
        assert f.opcode == 0x8 and f.close_code == 4100  # echoed (RFC 6455 §5.5.1)
        assert s.recv(100) == b""  # the server closes the TCP connection first (§7.1.1)
    b.wait_line(r"conn \d+: client closed with 4100")
    b.wait_line(r"conn \d+: done \(closed\)")


def test_c_backend_framed_relay(c_backend, run_backend, gateway, ws):
    b = run_backend(c_backend, "framed", "context")
    g = gateway(m="framed", context=True)
    c = ws(g.url("/echo?x=1"), max_size=2 << 20)
    round_trips(c)
    assert c.ping(b"p").wait(5)  # the gateway answers in relay modes
    c.send("whoami")
    port = c.local_address[1]
    assert c.recv(timeout=5) == f"direct=0 peer=127.0.0.1:{port} path=/echo query=x=1 protocol=-"
    closed_by_backend(c, 4002, "relayed")
    g.wait_line(r"close /echo backend sent close \(4002\)")
    b.wait_line(r"conn \d+: done \(closed\)")


def test_c_backend_framed_relay_client_close_code(c_backend, run_backend, gateway, ws):
    b = run_backend(c_backend, "framed")
    g = gateway(m="framed")
    c = ws(g.url("/echo"))
    c.send("whoami")  # no --context: the library has no values
    assert c.recv(timeout=5) == "direct=0 peer=-:- path=- query=- protocol=-"
    c.close(code=4003, reason="client leaves")
    assert c.close_code == 4003  # answered with the same code
    b.wait_line(r"conn \d+: client closed with 4003")
    b.wait_line(r"conn \d+: done \(closed\)")


def test_c_backend_direct_falls_back_to_relay(c_backend, run_backend, gateway, ws):
    """A backend started for direct mode behind a gateway that relays (no socket comes): the
    same API serves the connection in the relay mode it names."""
    b = run_backend(c_backend, "framed", "direct", "context")
    g = gateway(m="framed", context=True)
    c = ws(g.url("/echo"), max_size=2 << 20)
    round_trips(c)
    c.send("whoami")
    assert c.recv(timeout=5).startswith("direct=0 peer=127.0.0.1:")
    closed_by_backend(c, 4004, "fallback")
    b.wait_line(r"conn \d+: accepted, direct=0 peer=127\.0\.0\.1$")


def test_c_backend_stream_relay_static(c_backend_static, run_backend, gateway, ws):
    """Stream mode (ouistiti's), with the library linked statically: text round trips; closing
    ends the stream and the gateway closes the client (stream mode carries no code)."""
    b = run_backend(c_backend_static, "stream", "context")
    g = gateway(context=True)
    c = ws(g.url("/echo"))
    for m in ["hello", "é" * 300, "x"]:
        c.send(m)
        assert c.recv(timeout=5) == m
    c.send("whoami")
    assert c.recv(timeout=5).startswith("direct=0 peer=127.0.0.1:")
    c.send("close 4005 ignored")
    with pytest.raises(ConnectionClosed):
        while True:
            c.recv(timeout=5)
    assert c.close_code is not None and c.close_code != 4005
    b.wait_line(r"conn \d+: done \(closed\)")


@pytest.mark.parametrize("mode", ["lines", "seqpacket"])
def test_c_backend_lines_and_seqpacket_relay(c_backend, run_backend, gateway, ws, mode):
    """The other relay modes through the same API: text messages, the context."""
    b = run_backend(c_backend, mode, "context")
    g = gateway(m=mode, context=True)  # a SOCK_SEQPACKET backend is detected when connecting
    c = ws(g.url("/echo?m=1"))
    for m in ["hello", "é" * 500, "third"]:
        c.send(m)
        assert c.recv(timeout=5) == m
    c.send("whoami")
    port = c.local_address[1]
    assert c.recv(timeout=5) == f"direct=0 peer=127.0.0.1:{port} path=/echo query=m=1 protocol=-"
    c.close()
    b.wait_line(r"conn \d+: done \(closed\)")


def test_c_backend_many_clients_direct(c_backend, run_backend, gateway, ws):
    """Several clients at once through one poll loop, each served by its own handed-over
    socket."""
    run_backend(c_backend, "framed", "direct")
    g = gateway(direct=True)
    clients = [ws(g.url("/echo")) for _ in range(8)]
    for round_ in range(3):
        for i, c in enumerate(clients):
            c.send(f"{i}:{round_}")
        for i, c in enumerate(clients):
            assert c.recv(timeout=5) == f"{i}:{round_}"


def test_c_api_misuse_is_refused(c_backend, installed, docroot, tmp_path):
    """Bad arguments give an error, never a crash: direct with seqpacket, a path taken by a
    regular file."""
    prefix, _ = installed
    env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    p = subprocess.run([c_backend, str(docroot / "x"), "seqpacket", "direct"], capture_output=True,
                       text=True, timeout=10, env=env)
    assert p.returncode == 1 and "Invalid argument" in p.stderr, p.stderr
    (tmp_path / "file").write_text("not a socket")
    p = subprocess.run([c_backend, str(tmp_path / "file"), "framed"], capture_output=True, text=True,
                       timeout=10, env=env)
    assert p.returncode == 1 and "File exists" in p.stderr, p.stderr
    assert (tmp_path / "file").read_text() == "not a socket"
