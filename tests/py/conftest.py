"""Fixtures for the wsgate end-to-end tests.

Binaries: $WSGATE_BIN (default target/release/wsgate) and $WSGATE_ECHO_BIN (default
target/release/websocket_echo). A missing binary is an error, never a skip.

* `sandbox`: a fresh short temp dir (UNIX socket paths are limited to 108 bytes); `docroot`
  is `<sandbox>/www`, so `<sandbox>` itself is "outside the docroot".
* `echo_backend(mode="stream", name="echo")`: starts websocket_echo, waits for its socket.
* `gateway(**opts)`: starts wsgate on 127.0.0.1, an OS-picked port, docroot `docroot`;
  `opts` become options (`c=4` -> `-c 4`, `ping_interval="1s"` -> `--ping-interval 1s`,
  `m=["a=framed", "lines"]` -> `-m a=framed -m lines`, `denylast=True` -> `--denylast`).
  The returned object has `.port`, `.pid`, `.lines` (stderr, drained by a thread),
  `.wait_line(regex)`, `.url(path)`.
* `sample_backend(program, name, mode="stream", extra=())`: starts a sample server of
  target/release (`websocket_chat`, `websocket_jsonrpc`...), waits for its socket.
* `browser_page(**context_options)`: a page of headless Chromium (tests/py/browser.py).
* `py_backend(name, kind=socket.SOCK_STREAM)`: a UNIX socket server of our own in the docroot;
  `.accept()` returns the gateway's connection to it.
At teardown everything is stopped; a gateway that died during the test fails it (unless the
test set `g.expected_exit = True`).
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from browser import browser_page, chromium  # noqa: E402,F401  (fixtures for the page tests)
from harness import (  # noqa: E402,F401  (re-exported for the tests)
    RFC_ACCEPT,
    RFC_KEY,
    EchoBackend,
    Gateway,
    SampleBackend,
    PyBackend,
    RawWS,
    accept_for,
    encode_frame,
    fd_count,
    raw_handshake,
    rss_kb,
    try_decode_frame,
)


@pytest.fixture
def sandbox():
    d = Path(tempfile.mkdtemp(prefix="wsgt-", dir="/tmp"))
    (d / "www").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def docroot(sandbox):
    return sandbox / "www"


@pytest.fixture
def echo_backend(docroot):
    started: list[EchoBackend] = []

    def start(mode: str = "stream", name: str = "echo", extra=()) -> EchoBackend:
        b = EchoBackend(docroot, name=name, mode=mode, extra=extra)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def sample_backend(docroot):
    started: list[SampleBackend] = []

    def start(program: str, name: str, mode: str = "stream", extra=()) -> SampleBackend:
        b = SampleBackend(harness.release_bin(program), docroot, name=name, mode=mode, extra=extra)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()
        print(f"---- {b.name} stderr ----\n{b.log_text()}")


@pytest.fixture
def gateway(docroot):
    started: list[Gateway] = []

    def start(*args, **opts) -> Gateway:
        g = Gateway(docroot, args=args, **opts)
        started.append(g)
        return g

    yield start
    died = []
    for g in started:
        if not g.alive() and not g.expected_exit:
            died.append(f"wsgate {g.argv[1:]} exited by itself with status {g.proc.returncode}")
        g.stop()
        print(f"---- wsgate stderr ({' '.join(g.argv[1:])}) ----\n{g.log_text()}")
    if died:
        pytest.fail("; ".join(died), pytrace=False)


@pytest.fixture
def py_backend(docroot):
    started: list[PyBackend] = []

    def start(name: str = "py", kind: int = socket.SOCK_STREAM, backlog: int = 16) -> PyBackend:
        b = PyBackend(docroot / name, kind, backlog)
        started.append(b)
        return b

    yield start
    for b in started:
        b.close()


@pytest.fixture
def raw():
    """Factory for RawWS connections that are closed at teardown."""
    conns: list[RawWS] = []

    def connect(port: int, path: str = "/echo", **kw) -> RawWS:
        c = RawWS.connect(port, path, **kw)
        conns.append(c)
        return c

    yield connect
    for c in conns:
        c.close()


@pytest.fixture
def ws():
    """Factory for websockets sync clients that are closed at teardown."""
    conns = []

    def connect(url: str, **kw):
        c = harness.ws_connect(url, **kw)
        conns.append(c)
        return c

    yield connect
    for c in conns:
        try:
            c.close()
        except Exception:
            pass


# ---- a per-test time limit without plugins -----------------------------------------------

TEST_TIMEOUT = int(__import__("os").environ.get("WSGATE_TEST_TIMEOUT", "120"))


class PerTestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    import signal

    def on_alarm(signum, frame):
        raise PerTestTimeout(f"{item.nodeid} took longer than {TEST_TIMEOUT}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
