"""Process and socket helpers shared by the pytest suite (conftest.py) and scripts/autobahn.py.

Nothing here knows about pytest: it starts `wsgate` and `websocket_echo`, speaks raw HTTP and
RFC 6455 frames over plain sockets, plays a UNIX-socket backend, and reads /proc.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

LISTEN_RE = re.compile(r"wsgate: listening on (\S+):(\d+)\s*$")
ECHO_LISTEN_RE = re.compile(r"websocket_echo: listening on (\S+)")
ECHO_TCP_RE = re.compile(r"websocket_echo: listening on (\S+):(\d+) \(")


def gateway_bin() -> str:
    return os.environ.get("WSGATE_BIN") or str(REPO_ROOT / "target/release/wsgate")


def echo_bin() -> str:
    return os.environ.get("WSGATE_ECHO_BIN") or str(REPO_ROOT / "target/release/websocket_echo")


def release_bin(name: str) -> str:
    """A binary of target/release (or $WSGATE_<NAME>_BIN, e.g. WSGATE_WEBSOCKET_CHAT_BIN)."""
    return os.environ.get(f"WSGATE_{name.upper()}_BIN") or str(REPO_ROOT / "target/release" / name)


def wsload_bin() -> str:
    """The load generator, next to the gateway binary: target/release/examples/wsload (or
    $WSLOAD_BIN)."""
    path = os.environ.get("WSLOAD_BIN") or str(Path(gateway_bin()).parent / "examples" / "wsload")
    assert os.path.exists(path), f"{path} is missing: cargo build --release --examples"
    return path


def plugin_path(name: str) -> str:
    """A plugin built by the workspace: target/release/libwsgate_rpc_<name>.so."""
    return str(REPO_ROOT / f"target/release/libwsgate_rpc_{name}.so")


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


class Child:
    """A child process whose stderr is drained line by line into `lines` by a thread."""

    def __init__(self, argv: list[str], name: str):
        if not os.path.exists(argv[0]):
            raise FileNotFoundError(f"{name}: binary {argv[0]} does not exist (build it first)")
        self.argv = argv
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._thread = threading.Thread(target=self._drain, name=f"{name}-stderr", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_line(self, pattern: str | re.Pattern, timeout: float = 5.0, start: int = 0) -> re.Match:
        """Waits for a stderr line (from index `start` on) matching `pattern`; returns the match."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(left)
        raise TimeoutError(
            f"{self.name}: no stderr line matching {rx.pattern!r} within {timeout}s "
            f"(exit status {self.proc.poll()}); stderr so far:\n" + self.log_text()
        )

    def listening_ports(self, n: int, timeout: float = 10.0) -> list[int]:
        """The ports of the first `n` "listening on" announcements, in the order printed (the
        gateway announces its listeners in the config's order)."""
        ports: list[int] = []
        start = 0
        for _ in range(n):
            m = self.wait_line(LISTEN_RE, timeout, start)
            with self._cond:
                start = next(i for i, line in enumerate(self.lines) if i >= start and m.string == line) + 1
            ports.append(int(m.group(2)))
        return ports

    def log_text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        """SIGTERM, then SIGKILL; returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
        self._thread.join(timeout)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


class SampleBackend(Child):
    """A sample server (`websocket_echo`, `websocket_chat`, `websocket_jsonrpc`) started with
    `-R <docroot> -n <name> -m <mode>` and waited for until it says "listening on": the socket
    file appears before the server drops privileges (`-u`), the line only after."""

    def __init__(self, binary: str, docroot: Path, name: str, mode: str = "stream", extra=(), timeout=5.0):
        argv = [binary, "-R", str(docroot), "-n", name, "-m", mode, *[str(a) for a in extra]]
        super().__init__(argv, f"{Path(binary).name}[{name}]")
        self.path = Path(docroot) / name
        self.mode = mode
        deadline = time.monotonic() + timeout
        while not _is_socket(self.path):
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before listening:\n" + self.log_text()
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name}: {self.path} did not appear:\n" + self.log_text())
            time.sleep(0.02)
        try:
            self.wait_line(r": listening on ", timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            self.stop()
            raise


class EchoBackend(SampleBackend):
    """`websocket_echo -R <docroot> -n <name> -m <mode>`, started and waited for."""

    def __init__(self, docroot: Path, name: str = "echo", mode: str = "stream", extra=(), timeout=5.0):
        super().__init__(echo_bin(), docroot, name, mode, extra, timeout)


class TcpEchoBackend(Child):
    """`websocket_echo --tcp HOST:0 -m <mode>`: listens on a port the system picks, read from its
    "listening on" line (so no other process can take it in between). `.link` is the target of
    a gateway's `--link NAME=<link>`."""

    def __init__(self, mode: str = "stream", host: str = "127.0.0.1", extra=(), timeout=5.0):
        bind = f"[{host}]:0" if ":" in host else f"{host}:0"
        argv = [echo_bin(), "--tcp", bind, "-m", mode, *[str(a) for a in extra]]
        super().__init__(argv, f"websocket_echo[tcp {mode}]")
        try:
            m = self.wait_line(ECHO_TCP_RE, timeout)
        except Exception:
            self.stop()
            raise
        self.host = m.group(1)
        self.port = int(m.group(2))
        self.mode = mode
        self.link = f"tcp:{self.host}:{self.port}"


def gateway_argv(docroot: Path, args=(), **opts) -> list[str]:
    """wsgate argv. Keyword options: one letter -> `-k v`, longer -> `--long-name v`;
    True -> flag alone; a list or tuple -> the option repeated; None/False -> left out."""
    argv = [gateway_bin(), "-a", "127.0.0.1", "-p", "0", "-R", str(docroot)]
    for key, value in opts.items():
        flag = f"-{key}" if len(key) == 1 else "--" + key.replace("_", "-")
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None or v is False:
                continue
            argv.append(flag)
            if v is not True:
                argv.append(str(v))
    argv.extend(str(a) for a in args)
    return argv


class Gateway(Child):
    """A running wsgate on 127.0.0.1:<port picked by the OS>."""

    def __init__(self, docroot: Path, args=(), timeout: float = 10.0, **opts):
        super().__init__(gateway_argv(docroot, args, **opts), "wsgate")
        self.docroot = Path(docroot)
        self.expected_exit = False
        try:
            m = self.wait_line(LISTEN_RE, timeout)
        except TimeoutError:
            self.stop()
            raise
        self.host = m.group(1)
        self.port = int(m.group(2))

    def url(self, path: str = "/echo") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


# --------------------------------------------------------------------------------------------
# websockets client
# --------------------------------------------------------------------------------------------


def ws_connect(url: str, **kw):
    """websockets' sync client without proxies, and without compression unless asked
    (compression="deflate")."""
    from websockets.sync.client import connect

    kw.setdefault("legacy", True)  # a direct ClientConnection (17.x wants a with-block otherwise)
    kw.setdefault("proxy", None)
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 5)
    return connect(url, **kw)


# --------------------------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------------------------


def default_request_headers(port: int) -> dict[str, str]:
    return {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
    }


def build_request(port: int, path: str, headers=None, method="GET", version="HTTP/1.1") -> bytes:
    """An upgrade request; `headers` overrides the defaults, a None value removes one."""
    hdrs = default_request_headers(port)
    for k, v in (headers or {}).items():
        for existing in [e for e in hdrs if e.lower() == k.lower()]:
            del hdrs[existing]
        if v is not None:
            hdrs[k] = v
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1")


@dataclass
class Response:
    status: int | None  # None: the connection closed without a status line
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    leftover: bytes  # bytes after the header block
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def read_response_head(sock: socket.socket, timeout: float = 5.0) -> Response:
    """Reads up to the end of the response head (or EOF / reset / timeout)."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout, TimeoutError):
            break
        if not chunk:
            break
        buf += chunk
    return parse_response_head(buf)


def parse_response_head(buf: bytes) -> Response:
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return Response(None, "", {}, b"", buf)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
    if not m:
        return Response(None, lines[0], {}, rest, buf)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Response(int(m.group(1)), m.group(2), headers, rest, buf)


def open_socket(port: int, timeout: float = 5.0, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_all_tolerant(sock: socket.socket, data: bytes) -> None:
    """sendall that ignores the peer having closed already (it may answer and close early)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def raw_handshake(port: int, path: str = "/echo", headers=None, extra: bytes = b"", *, method="GET",
                  version="HTTP/1.1", request: bytes | None = None, timeout: float = 5.0,
                  keep: bool = False):
    """Sends an upgrade request on a fresh socket and reads the response head.

    Returns (status, headers, leftover). With keep=True returns (Response, socket) instead and
    leaves the socket open for frames.
    """
    sock = open_socket(port, timeout)
    data = request if request is not None else build_request(port, path, headers, method, version)
    send_all_tolerant(sock, data + extra)
    resp = read_response_head(sock, timeout)
    if keep:
        return resp, sock
    sock.close()
    return resp.status, resp.headers, resp.leftover


# --------------------------------------------------------------------------------------------
# RFC 6455 frames
# --------------------------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def mask_bytes(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True,
                 rsv: int = 0, key: bytes | None = None) -> bytes:
    """A client frame (masked unless mask=False)."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code: int | None, reason: str = "") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason.encode()


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]


def try_decode_frame(buf: bytearray) -> tuple[Frame, int] | None:
    """Decodes one frame from the front of buf: (frame, bytes used) or None if incomplete."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack_from("!H", buf, 2)[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack_from("!Q", buf, 2)[0]
        pos = 10
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if len(buf) < pos + 4:
            return None
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = mask_bytes(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload), pos + n


class RawWS:
    """A hand-driven WebSocket client over a plain socket (for what a real client won't do)."""

    def __init__(self, sock: socket.socket, leftover: bytes = b""):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.eof = False

    @classmethod
    def connect(cls, port: int, path: str = "/echo", headers=None, timeout: float = 5.0,
                rcvbuf: int | None = None) -> "RawWS":
        sock = open_socket(port, timeout, rcvbuf)
        sock.sendall(build_request(port, path, headers))
        resp = read_response_head(sock, timeout)
        if resp.status != 101:
            sock.close()
            raise AssertionError(f"handshake to {path}: expected 101, got {resp.status} {resp.raw[:200]!r}")
        ws = cls(sock, resp.leftover)
        ws.response = resp
        return ws

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> None:
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def _fill(self, timeout: float) -> bool:
        """Reads more bytes; False on EOF/reset. Raises TimeoutError on timeout."""
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            raise TimeoutError("no data from the gateway")
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def recv_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame; None on EOF. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            got = try_decode_frame(self.buf)
            if got:
                frame, used = got
                del self.buf[:used]
                return frame
            if self.eof or not self._fill(deadline - time.monotonic()):
                return None

    def recv_message(self, timeout: float = 5.0, answer_pings: bool = True):
        """(opcode, payload) of the next data message, reassembled; ('close', frame) for a close
        frame; None on EOF."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            f = self.recv_frame(deadline - time.monotonic())
            if f is None:
                return None
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                return ("close", f)
            if opcode is None:
                opcode = f.opcode
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def wait_close(self, timeout: float = 5.0, reply: bool = True) -> tuple[Frame | None, bool]:
        """Skips data until a close frame; answers it (reply=True) and waits for EOF.
        Returns (close frame or None, saw EOF)."""
        deadline = time.monotonic() + timeout
        close = None
        try:
            while close is None:
                f = self.recv_frame(deadline - time.monotonic())
                if f is None:
                    return None, True
                if f.opcode == OP_CLOSE:
                    close = f
            if reply:
                try:
                    self.send_frame(OP_CLOSE, f.payload[:2])
                except OSError:
                    pass
            while self.recv_frame(deadline - time.monotonic()) is not None:
                pass
            return close, True
        except TimeoutError:
            return close, False

    def wait_eof(self, timeout: float = 5.0) -> bool:
        """Discards whatever arrives until EOF; False on timeout."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline - time.monotonic()):
                self.buf.clear()
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# framed-mode records (the backend side of `-m framed`)
# --------------------------------------------------------------------------------------------


def record(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    return struct.pack("!BI", (0x80 if fin else 0) | opcode, len(payload)) + payload


def recv_exact(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def recv_record(sock: socket.socket, timeout: float = 5.0) -> tuple[bool, int, bytes]:
    """(fin, opcode, payload) of the next record."""
    head = recv_exact(sock, 5, timeout)
    b0, n = struct.unpack("!BI", head)
    assert b0 & 0x70 == 0, f"record with reserved bits: {head!r}"
    return bool(b0 & 0x80), b0 & 0x0F, recv_exact(sock, n, timeout)


def recv_record_message(sock: socket.socket, timeout: float = 5.0) -> tuple[int, bytes]:
    """A whole message from records: (opcode of its first record, payload)."""
    fin, opcode, payload = recv_record(sock, timeout)
    parts = [payload]
    while not fin and opcode != OP_CLOSE:
        fin, op, payload = recv_record(sock, timeout)
        assert op == OP_CONT, f"expected a continuation record, got opcode {op}"
        parts.append(payload)
    return opcode, b"".join(parts)


def recv_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    """What the socket sends up to and including the first `marker` (and what came with it),
    or up to EOF; a connection context (`\\n\\n`) or a request head (`\\r\\n\\r\\n`)."""
    sock.settimeout(timeout)
    out = b""
    while marker not in out:
        chunk = sock.recv(4096)
        if not chunk:
            break
        out += chunk
    return out


def recv_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until EOF. Raises TimeoutError if no EOF in time."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no EOF within {timeout}s (got {bytes(out[:64])!r})")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(out)
        except socket.timeout as e:
            raise TimeoutError(f"no EOF within {timeout}s (got {bytes(out[:64])!r})") from e
        if not chunk:
            return bytes(out)
        out += chunk


def recv_available(sock: socket.socket, quiet: float = 0.3) -> bytes:
    """Reads until nothing more arrives for `quiet` seconds (or EOF)."""
    out = bytearray()
    sock.settimeout(quiet)
    while True:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


# --------------------------------------------------------------------------------------------
# A backend of our own: a UNIX socket server whose accepted connections the test drives
# --------------------------------------------------------------------------------------------


class PyBackend:
    """Listens on <path> (SOCK_STREAM or SOCK_SEQPACKET); a thread accepts and queues the
    connections; `accept()` hands the next one to the test."""

    def __init__(self, path: Path, kind: int = socket.SOCK_STREAM, backlog: int = 16):
        self.path = Path(path)
        self.sock = socket.socket(socket.AF_UNIX, kind)
        self.sock.bind(str(self.path))
        self.sock.listen(backlog)
        self.conns: "queue.Queue[socket.socket]" = queue.Queue()
        self.accepted: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"pybackend-{path}")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(c)
            self.conns.put(c)

    def accept(self, timeout: float = 5.0) -> socket.socket:
        try:
            c = self.conns.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no connection to backend {self.path} within {timeout}s") from None
        c.settimeout(timeout)
        return c

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for c in self.accepted:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (/proc/PID/stat utime + stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # after the command: state is field 3, utime and stime fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> set[int]:
    """The live children of a process (/proc/PID/task/*/children)."""
    out: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(c) for c in f.read().split())
        except FileNotFoundError:
            pass
    return out


def wait_until(pred, timeout: float = 5.0, interval: float = 0.05):
    """Polls pred() until truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


@dataclass
class Stopwatch:
    start: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


# Raw upgrades with early bytes (direct-mode tests)


def handshake_with(port: int, extra: bytes = b"", path: str = "/echo") -> tuple[socket.socket, bytearray]:
    """A raw client: the upgrade request (and `extra` in the same packet); returns the socket
    and the bytes received after the 101."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(build_request(port, path) + extra)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert parse_response_head(head + b"\r\n\r\n").status == 101
    return s, bytearray(rest)


def next_frame(s: socket.socket, buf: bytearray):
    """The next frame from `buf`, reading `s` as needed (None at EOF); removes it from `buf`."""
    while (d := try_decode_frame(buf)) is None:
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    frame, used = d
    del buf[:used]
    return frame


def session_token(key_file: Path, user: str, group: str, expires: int) -> str:
    """A session token signed as the gateway signs them: `user:group:expires:mac`, the MAC
    HMAC-SHA256 under the key file's bytes (hex in the file)."""
    import hashlib
    import hmac

    key = bytes.fromhex(Path(key_file).read_text().strip())
    signed = f"{user}:{group}:{expires}"
    return signed + ":" + hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()


def free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    """A TCP port nobody listens on now (the OS's pick), for a gateway given its port."""
    return free_ports(1, family, host)[0]


def free_ports(n: int, family=socket.AF_INET, host="127.0.0.1") -> list[int]:
    """`n` distinct free TCP ports: the sockets are held until all are picked, since two
    binds to port 0 one after the other may be given the same port."""
    socks = [socket.socket(family) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_kb(pid: int, name: str) -> dict[str, int]:
    """The kB fields of /proc/PID/NAME: `status` (VmSize, VmRSS, RssAnon, ...) or
    `smaps_rollup` (Rss, Pss, Anonymous, ...)."""
    out = {}
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0])
    return out
