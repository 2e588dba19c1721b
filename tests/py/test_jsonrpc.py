"""websocket_jsonrpc end to end: gateway + JSON-RPC server + real WebSocket clients.

The protocol's errors (parse error, invalid request, method not found, invalid params),
notifications and batches; every relay mode; the plugin ABI with a plugin written in C
(tests/c/rpc_test_plugin.c, compiled here with gcc against backend/plugins/wsgate_rpc.h); the two
shipped plugins (auth, sysinfo); direct mode (-d: the gateway hands each client's socket over).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from harness import REPO_ROOT, encode_frame, plugin_path, release_bin

MODES = ["stream", "lines", "framed", "seqpacket"]


@pytest.fixture(scope="session")
def c_plugin(tmp_path_factory):
    """tests/c/rpc_test_plugin.c built as a shared library (and a variant with ABI version 2)."""
    out = tmp_path_factory.mktemp("cplugin")
    built = {}
    for name, defs in [("ok", []), ("v2", ["-DTEST_ABI_VERSION=2u"])]:
        so = out / f"rpc_test_{name}.so"
        subprocess.run(
            ["gcc", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *defs,
             "-I", str(REPO_ROOT / "backend/plugins"), "-o", str(so), str(REPO_ROOT / "tests/c/rpc_test_plugin.c")],
            check=True,
        )
        built[name] = str(so)
    return built


class Rpc:
    """A JSON-RPC client over one WebSocket."""

    def __init__(self, conn):
        self.conn = conn
        self.next_id = 0

    def raw(self, text: str):
        self.conn.send(text)
        return json.loads(self.conn.recv(timeout=5))

    def call(self, method: str, params=None, **extra):
        self.next_id += 1
        req = {"jsonrpc": "2.0", "method": method, "id": self.next_id}
        if params is not None:
            req["params"] = params
        resp = self.raw(json.dumps(req))
        assert resp["id"] == self.next_id and resp["jsonrpc"] == "2.0", resp
        return resp

    def result(self, method: str, params=None):
        resp = self.call(method, params)
        assert "error" not in resp, resp
        return resp["result"]

    def error(self, method: str, params=None):
        resp = self.call(method, params)
        assert "result" not in resp, resp
        return resp["error"]["code"], resp["error"]["message"]


@pytest.fixture
def rpc(sample_backend, gateway, ws):
    """Starts websocket_jsonrpc with `library` and `config` behind a gateway; returns a
    factory of clients."""

    def start(library, config=None, mode="framed", extra=(), **gw):
        args = ["-L", library, *(["-C", config] if config is not None else []), *extra]
        backend = sample_backend("websocket_jsonrpc", "rpc", mode, args)
        g = gateway(m=mode, **gw)
        factory = lambda: Rpc(ws(g.url("/rpc")))  # noqa: E731
        factory.backend = backend
        return factory

    return start


def no_answer(rpc_client, timeout=0.4):
    with pytest.raises(TimeoutError):
        got = rpc_client.conn.recv(timeout=timeout)
        print(f"unexpected answer: {got!r}")


# ---- the protocol --------------------------------------------------------------------------


def test_parse_error(rpc):
    c = rpc(plugin_path("sysinfo"))()
    for bad in ['{"jsonrpc": "2.0", "method": "uptime", "id": 1', "not json", "", "[1,]"]:
        resp = c.raw(bad)
        assert resp == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}


@pytest.mark.parametrize(
    "request_text,reply_id",
    [
        ('{"jsonrpc": "1.0", "method": "uptime", "id": 7}', 7),
        ('{"method": "uptime", "id": "x"}', "x"),
        ('{"jsonrpc": "2.0", "method": 1, "params": "bar", "id": 3}', 3),
        ('{"jsonrpc": "2.0", "method": "uptime", "params": "bar", "id": 4}', 4),
        ('{"jsonrpc": "2.0", "method": "uptime", "id": {"a": 1}}', None),
        ('{"foo": "bar"}', None),
        ("1", None),
        ('"a string"', None),
    ],
)
def test_invalid_request(rpc, request_text, reply_id):
    c = rpc(plugin_path("sysinfo"))()
    resp = c.raw(request_text)
    assert resp["error"]["code"] == -32600, resp
    assert resp["id"] == reply_id


def test_method_not_found(rpc):
    c = rpc(plugin_path("sysinfo"))()
    assert c.error("reboot")[0] == -32601
    # rpc.* is reserved for the protocol and never reaches the plugin.
    assert c.error("rpc.discover")[0] == -32601


def test_invalid_params(rpc):
    c = rpc(plugin_path("sysinfo"))()
    assert c.error("load", [1, 2])[0] == -32602
    assert c.error("uptime", {"x": 1})[0] == -32602
    assert c.result("uptime", [])["seconds"] > 0


def test_notifications_get_no_answer(rpc):
    c = rpc(plugin_path("sysinfo"))()
    c.conn.send('{"jsonrpc": "2.0", "method": "uptime"}')
    c.conn.send('{"jsonrpc": "2.0", "method": "no such method"}')
    no_answer(c)
    assert c.result("uptime")["seconds"] > 0


def test_batch(rpc):
    c = rpc(plugin_path("sysinfo"))()
    batch = [
        {"jsonrpc": "2.0", "method": "uptime", "id": "1"},
        {"jsonrpc": "2.0", "method": "load"},  # notification: no entry
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "memory", "id": 9},
        1,
    ]
    resp = c.raw(json.dumps(batch))
    assert isinstance(resp, list) and len(resp) == 5, resp
    assert resp[0]["id"] == "1" and resp[0]["result"]["seconds"] > 0
    assert resp[1] == {"jsonrpc": "2.0", "error": resp[1]["error"], "id": None}
    assert resp[1]["error"]["code"] == -32600
    assert resp[2]["id"] == "5" and resp[2]["error"]["code"] == -32601
    assert resp[3]["id"] == 9 and resp[3]["result"]["total_kb"] > 0
    assert resp[4]["error"]["code"] == -32600 and resp[4]["id"] is None


def test_batch_edge_cases(rpc):
    c = rpc(plugin_path("sysinfo"))()
    # An empty batch is one invalid request, not an empty array.
    resp = c.raw("[]")
    assert isinstance(resp, dict) and resp["error"]["code"] == -32600
    resp = c.raw("[1, 2, 3]")
    assert [r["error"]["code"] for r in resp] == [-32600] * 3
    # A batch of notifications only gets no answer at all.
    c.conn.send(json.dumps([{"jsonrpc": "2.0", "method": "uptime"}] * 3))
    no_answer(c)
    # Over the batch limit: one error.
    resp = c.raw(json.dumps([{"jsonrpc": "2.0", "method": "uptime", "id": i} for i in range(33)]))
    assert isinstance(resp, dict) and resp["error"]["code"] == -32600
    assert len(c.raw(json.dumps([{"jsonrpc": "2.0", "method": "uptime", "id": i} for i in range(32)]))) == 32


def test_request_over_the_limit_closes_with_1009(rpc):
    from websockets.exceptions import ConnectionClosed

    c = rpc(plugin_path("sysinfo"), extra=["-M", "200"])()
    assert c.result("uptime")["seconds"] > 0
    c.conn.send(json.dumps({"jsonrpc": "2.0", "method": "uptime", "id": "x" * 300}))
    with pytest.raises(ConnectionClosed) as info:
        c.conn.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


@pytest.mark.parametrize("mode", MODES)
def test_every_relay_mode(rpc, mode):
    client = rpc(plugin_path("sysinfo"), mode=mode)
    a, b = client(), client()
    assert a.result("uptime")["seconds"] > 0
    assert any(i["name"] == "lo" for i in b.result("network"))
    assert b.error("nope")[0] == -32601
    system = a.result("system")
    assert system["kernel"] and system["memory"]["total_kb"] > 0


# ---- the plugin ABI, with a plugin written in C ------------------------------------------------


def test_c_plugin_is_loaded_and_called(rpc, c_plugin):
    client = rpc(c_plugin["ok"], config="some config")
    a, b = client(), client()
    assert a.result("hello") == "hello from C"
    assert a.result("add", [40, 2]) == 42
    assert a.error("add", {"a": 1}) == (-32602, "add takes [a, b]")
    assert a.error("missing") == (-32601, "Method not found")
    assert a.error("fail") == (-32000, "it failed")
    code, message = a.error("broken")
    assert code == -32603 and "not JSON" in message
    assert a.result("config") == "some config"
    # Per-connection state from wsgate_rpc_open.
    assert [a.result("count") for _ in range(3)] == [1, 2, 3]
    assert b.result("count") == 1


@pytest.mark.parametrize("mode,extra", [("framed", []), ("lines", ["-c"]), ("stream", ["-c"])])
def test_c_plugin_gets_the_connection_context(rpc, c_plugin, mode, extra):
    client = rpc(c_plugin["ok"], mode=mode, extra=extra, context=True)
    assert client().result("peer") == "127.0.0.1"


def test_c_plugin_without_context(rpc, c_plugin):
    assert rpc(c_plugin["ok"])().result("peer") is None


def test_plugin_state_is_released_before_fini(rpc, c_plugin):
    client = rpc(c_plugin["ok"])
    conns = [client() for _ in range(3)]
    for c in conns:
        c.result("count")
    conns[0].conn.close()
    status = client.backend.stop()
    assert status == 0
    assert "fini with" not in client.backend.log_text()


def test_a_plugin_that_fails_or_is_not_one_stops_start_up(docroot, c_plugin):
    binary = release_bin("websocket_jsonrpc")
    cases = [
        (["-L", c_plugin["ok"], "-C", "fail"], "wsgate_rpc_init failed"),
        (["-L", c_plugin["v2"]], "plugin ABI version 2"),
        (["-L", "/nonexistent.so"], "cannot load"),
        (["-L", "/usr/lib/x86_64-linux-gnu/libc.so.6" if os.path.exists("/usr/lib/x86_64-linux-gnu/libc.so.6")
          else "libc.so.6"], "not a wsgate_rpc plugin"),
    ]
    for args, message in cases:
        r = subprocess.run([binary, "-R", str(docroot), "-n", "rpc", *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 1, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert not (docroot / "rpc").exists(), "the socket file is removed on a failed start"


# ---- the auth plugin ------------------------------------------------------------------------


def test_auth_plugin(rpc, sandbox):
    db = sandbox / "users.db"
    client = rpc(plugin_path("auth"), config=f"{db},rounds=1000")
    admin, guest = client(), client()
    # First-run setup: the first user is created without a login, as an administrator.
    added = admin.result("adduser", {"user": "admin", "passwd": "s3cret"})
    assert added["group"] == "root"
    # After that, adding users needs a root login.
    assert guest.error("adduser", {"user": "eve", "passwd": "x"})[0] == -32003
    assert admin.error("auth", {"user": "admin", "passwd": "wrong"})[0] == -32001
    assert admin.error("auth", {"user": "nobody", "passwd": "wrong"})[0] == -32001
    assert admin.result("auth", {"user": "admin", "passwd": "s3cret"}) == {
        "user": "admin", "group": "root", "home": "/home/admin"}
    assert admin.result("adduser", {"user": "bob", "passwd": "pw1", "home": "/tmp/bob"})["group"] == "users"
    assert admin.error("adduser", {"user": "bob", "passwd": "pw1"})[0] == -32004
    # Bad params.
    assert guest.error("auth", {"user": "bob"})[0] == -32602
    assert guest.error("auth", ["bob", "pw1"])[0] == -32602
    assert admin.error("adduser", {"user": "a:b", "passwd": "x"})[0] == -32602
    # passwd with the old password, by anybody.
    assert guest.error("passwd", {"user": "bob", "old": "bad", "new": "pw2", "confirm": "pw2"})[0] == -32001
    assert guest.error("passwd", {"user": "bob", "old": "pw1", "new": "pw2", "confirm": "pw3"})[0] == -32602
    assert guest.result("passwd", {"user": "bob", "old": "pw1", "new": "pw2", "confirm": "pw2"})["user"] == "bob"
    assert guest.error("auth", {"user": "bob", "passwd": "pw1"})[0] == -32001
    assert guest.result("auth", {"user": "bob", "passwd": "pw2"})["group"] == "users"
    # Without the old password only a root login may change it; bob is logged in, not root.
    assert guest.error("passwd", {"user": "admin", "new": "x", "confirm": "x"})[0] == -32003
    assert admin.result("passwd", {"user": "bob", "new": "pw3", "confirm": "pw3"})["user"] == "bob"
    # The database: user:group:hash:home, SHA-512-crypt hashes, mode 0600.
    lines = db.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["admin", "bob"]
    assert all(line.split(":")[2].startswith("$6$rounds=1000$") for line in lines)
    assert "pw3" not in db.read_text()
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    # rmuser: with the user's password, or by root.
    assert guest.error("rmuser", {"user": "bob", "passwd": "pw2"})[0] == -32001
    assert guest.error("rmuser", {"user": "admin"})[0] == -32003
    assert guest.result("rmuser", {"user": "bob", "passwd": "pw3"})["user"] == "bob"
    assert admin.error("rmuser", {"user": "bob"})[0] == -32005
    assert [line.split(":")[0] for line in db.read_text().splitlines()] == ["admin"]


def test_auth_hashes_are_crypt3_compatible(rpc, sandbox):
    """The stored hash is checked by the system's crypt(3) (glibc's libcrypt)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("crypt")
    assert name, "libcrypt is part of every Debian system"
    crypt = ctypes.CDLL(name).crypt
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    db = sandbox / "users.db"
    c = rpc(plugin_path("auth"), config=str(db))()
    c.result("adduser", {"user": "admin", "passwd": "pässwörd"})
    stored = db.read_text().split(":")[2]
    assert stored.startswith("$6$rounds=5000$")
    assert crypt("pässwörd".encode(), stored.encode()).decode() == stored
    assert crypt(b"other", stored.encode()).decode() != stored


def test_auth_refuses_to_start_without_a_database_path(docroot):
    r = subprocess.run(
        [release_bin("websocket_jsonrpc"), "-R", str(docroot), "-n", "rpc", "-L", plugin_path("auth")],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 1 and "must name the user database" in r.stderr


def test_header_is_the_documented_abi():
    header = (REPO_ROOT / "backend/plugins/wsgate_rpc.h").read_text()
    for symbol in ["wsgate_rpc_abi_version", "wsgate_rpc_init", "wsgate_rpc_open", "wsgate_rpc_call",
                   "wsgate_rpc_close", "wsgate_rpc_fini", "WSGATE_RPC_ABI_VERSION 1u"]:
        assert symbol in header
    assert "backend/plugins/wsgate_rpc.h" in (REPO_ROOT / "README.md").read_text()
    assert Path(plugin_path("auth")).exists() and Path(plugin_path("sysinfo")).exists()


# ---- direct mode (-d): the gateway hands each client's socket to the server -------------------


def test_direct_mode_calls_batches_and_errors(rpc):
    client = rpc(plugin_path("sysinfo"), extra=["-d", "-v"], direct=True)
    c = client()
    assert c.result("uptime")["seconds"] > 0
    assert c.error("reboot")[0] == -32601
    assert c.error("rpc.discover") == (-32601, "Method not found")
    assert c.error("load", [1, 2])[0] == -32602
    resp = c.raw("not json")
    assert resp == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
    batch = [
        {"jsonrpc": "2.0", "method": "uptime", "id": 1},
        {"jsonrpc": "2.0", "method": "load"},  # notification: no entry
        {"jsonrpc": "2.0", "method": "nope", "id": 2},
        {"jsonrpc": "2.0", "method": "memory", "id": 3},
    ]
    resp = c.raw(json.dumps(batch))
    assert [r["id"] for r in resp] == [1, 2, 3], resp
    assert resp[0]["result"]["seconds"] > 0
    assert resp[1]["error"]["code"] == -32601
    assert resp[2]["result"]["total_kb"] > 0
    c.conn.send(json.dumps({"jsonrpc": "2.0", "method": "uptime"}))
    no_answer(c)
    client.backend.wait_line(r"client \d+: socket of 127\.0\.0\.1 handed over")


def test_direct_mode_gives_the_plugin_the_hand_over_record_as_context(rpc, c_plugin, gateway, ws):
    """The record's lines reach wsgate_rpc_open as the context (no --context needed), and the
    same server serves a relaying gateway's clients too."""
    direct = rpc(c_plugin["ok"], extra=["-d", "-v"], direct=True)
    a, b = direct(), direct()
    assert a.result("peer") == "127.0.0.1"
    assert [a.result("count") for _ in range(3)] == [1, 2, 3]
    assert b.result("count") == 1  # per-connection plugin state
    assert a.error("fail") == (-32000, "it failed")
    relay = gateway(m="framed", context=True)
    r = Rpc(ws(relay.url("/rpc")))
    assert r.result("peer") == "127.0.0.1"
    assert r.result("add", [40, 2]) == 42
    direct.backend.wait_line(r"no socket handed over, relaying in framed mode")


def test_direct_mode_request_over_the_limit_closes_with_1009(rpc):
    from websockets.exceptions import ConnectionClosed

    c = rpc(plugin_path("sysinfo"), extra=["-d", "-M", "200"], direct=True)()
    assert c.result("uptime")["seconds"] > 0
    c.conn.send(json.dumps({"jsonrpc": "2.0", "method": "uptime", "id": "x" * 300}))
    with pytest.raises(ConnectionClosed) as info:
        c.conn.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_direct_mode_pauses_a_client_that_does_not_read_and_resumes(sample_backend, gateway, raw):
    """Requests pipelined faster than their answers are read: once more than half of the
    client's queue waits, the server stops reading it (backpressure) and goes on when the
    client reads again; every answer comes, in order, none is lost."""
    import threading

    from harness import OP_TEXT

    sample_backend("websocket_jsonrpc", "rpc", "framed", ["-L", plugin_path("sysinfo"), "-d"])
    g = gateway(direct=True)
    c = raw(g.port, "/rpc", rcvbuf=4096)
    n, per = 1500, 32  # batches of 32 requests: answers of ~7 KB each, ~10 MB in all
    requests = b"".join(
        encode_frame(OP_TEXT, json.dumps(
            [{"jsonrpc": "2.0", "method": "system", "id": i * per + j} for j in range(per)]).encode())
        for i in range(n)
    )
    sender = threading.Thread(target=c.send_raw, args=(requests,), daemon=True)
    sender.start()
    time.sleep(1.0)  # the server fills its queue for us and pauses
    total = 0
    for i in range(n):
        opcode, payload = c.recv_message(timeout=10)
        resp = json.loads(payload)
        assert [r["id"] for r in resp] == list(range(i * per, (i + 1) * per)), resp
        assert all(r["result"]["kernel"] for r in resp)
        total += len(payload)
    sender.join(10)
    # More than the kernel's socket buffers (tcp_wmem: at most 4 MiB here) could hold: the
    # server's own queue filled, and a server without backpressure would have dropped us.
    assert total > 8 << 20, total
