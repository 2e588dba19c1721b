"""The SQL plugin (libwsgate_rpc_sql.so) end to end: the gateway, websocket_jsonrpc with the plugin
on a real SQLite database, and real WebSocket clients.

Every method; parameters bound (injection attempts stay data); read-only by default, the file
unchanged; writes for the configured group only, with the gateway's login or the plugin's
`auth`; ATTACH, VACUUM INTO, transactions, pragma writes refused; a runaway statement stopped by
its budget while another client is served; the row and answer caps; configuration errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from harness import plugin_path, release_bin
from test_auth import userdb  # noqa: F401 (a fixture: admin in root, ann in users)
from test_jsonrpc import Rpc

DENIED, SQL_ERROR, FORBIDDEN, BUDGET, TOO_MANY_ROWS, TOO_LARGE = -32003, -32020, -32021, -32022, -32023, -32024
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.fixture
def db(sandbox) -> Path:
    path = sandbox / "router.db"
    with sqlite3.connect(path) as c:
        c.executescript(
            """
            CREATE TABLE hosts (id INTEGER PRIMARY KEY, mac TEXT, name TEXT, seen INTEGER, key BLOB);
            INSERT INTO hosts VALUES (1, 'aa:bb:cc:00:00:01', 'laptop', 1700000000, x'01020304'),
                                     (2, 'aa:bb:cc:00:00:02', 'phone', 9007199254740993, NULL),
                                     (3, 'aa:bb:cc:00:00:03', NULL, 0, NULL);
            CREATE VIEW named AS SELECT id, name FROM hosts WHERE name IS NOT NULL;
            """
        )
    c.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sql(sample_backend, gateway, ws, db):
    """websocket_jsonrpc with the SQL plugin on `db` (options appended to -C) behind a gateway;
    returns a factory of clients (keyword `headers` for the WebSocket handshake)."""

    def start(options="", mode="framed", **gw):
        args = ["-L", plugin_path("sql"), "-C", f"{db}{options}"]
        backend = sample_backend("websocket_jsonrpc", "sql", mode, args)
        g = gateway(m=mode, **gw)

        def client(headers=None):
            return Rpc(ws(g.url("/sql"), additional_headers=headers or {}))

        client.backend, client.gateway = backend, g
        return client

    return start


@pytest.mark.parametrize("mode", ["framed", "stream"])
def test_methods_types_and_bound_parameters(sql, db, mode):
    before = digest(db)
    c = sql(mode=mode)()
    assert c.result("list") == [{"name": "hosts", "type": "table"}, {"name": "named", "type": "view"}]
    r = c.result("exec", {"query": "SELECT id, name, seen, key FROM hosts ORDER BY id"})
    assert r["columns"] == ["id", "name", "seen", "key"] and r["changes"] == 0
    assert r["rows"][0] == {"id": 1, "name": "laptop", "seen": 1700000000,
                            "key": {"base64": base64.b64encode(b"\x01\x02\x03\x04").decode()}}
    # Beyond 2^53 an integer is a string: a JSON number would lose its last digits.
    assert r["rows"][1]["seen"] == "9007199254740993"
    assert r["rows"][2]["name"] is None
    positional = c.result("exec", {"query": "SELECT name FROM hosts WHERE id > ? AND mac LIKE ?", "params": [1, "aa:%"]})
    assert positional["rows"] == [{"name": "phone"}, {"name": None}]
    named = c.result("exec", {"query": "SELECT id FROM hosts WHERE name = :name", "params": {"name": "phone"}})
    assert named["rows"] == [{"id": 2}]
    blob = c.result("exec", {"query": "SELECT id FROM hosts WHERE key = ?", "params": [{"base64": "AQIDBA=="}]})
    assert blob["rows"] == [{"id": 1}]
    got = c.result("get", {"table": "hosts", "where": {"name": None}})
    assert [row["id"] for row in got["rows"]] == [3]
    assert c.result("get", {"table": "named", "limit": 1, "offset": 1})["rows"] == [{"id": 2, "name": "phone"}]
    # Text that would be SQL if it were spliced in stays a value, and names come from the schema.
    for evil in ["' OR '1'='1", "laptop'; DELETE FROM hosts; --", "x\" OR 1=1 --"]:
        assert c.result("exec", {"query": "SELECT id FROM hosts WHERE name = ?", "params": [evil]})["rows"] == []
        assert c.result("get", {"table": "hosts", "where": {"name": evil}})["rows"] == []
    assert c.error("get", {"table": "hosts; DELETE FROM hosts"})[0] == -32602
    assert c.error("get", {"table": "hosts", "where": {"1=1 OR name": 1}})[0] == -32602
    assert c.error("exec", {"query": "SELECT 1; DELETE FROM hosts"}) == (-32602, "one statement per call")
    assert c.error("exec", {"query": "SELECT 1", "db": "/etc/shadow"})[0] == -32602
    assert c.error("exec", {"query": "SELECT * FROM nowhere"})[0] == SQL_ERROR
    # Read-only: a write is refused, and the file is as it was.
    assert c.error("exec", {"query": "DELETE FROM hosts"}) == (DENIED, "the database is read-only")
    assert c.result("exec", {"query": "SELECT count(*) AS n FROM hosts"})["rows"] == [{"n": 3}]
    assert digest(db) == before


def test_never_allowed_even_for_a_writer(sql, db, sandbox, userdb):
    c = sql(f",write=root,users={userdb}")()
    c.result("auth", {"user": "admin", "passwd": "s3cret"})
    copy = sandbox / "copy.db"
    for query in [f"ATTACH '{copy}' AS x", f"VACUUM INTO '{copy}'", "BEGIN", "PRAGMA writable_schema = 1",
                  "PRAGMA journal_mode = delete", "PRAGMA user_version = 3"]:
        code, message = c.error("exec", {"query": query})
        assert code == FORBIDDEN, (query, code, message)
    code, message = c.error("exec", {"query": "SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6')"})
    assert code in (FORBIDDEN, SQL_ERROR) and "load_extension" in message
    assert not copy.exists()
    assert c.result("exec", {"query": "PRAGMA table_info(hosts)"})["rows"][0]["name"] == "id"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_writes_for_the_group_the_gateway_authenticated(sql, db, userdb):
    factory = sql(",write=root,gateway", auth_db=userdb, context=True)
    admin, ann = factory(basic("admin", "s3cret")), factory(basic("ann", "annpw"))
    assert ann.result("whoami") == {"user": "ann", "groups": ["users"], "write": False}
    assert admin.result("whoami") == {"user": "admin", "groups": ["root"], "write": True}
    assert ann.error("exec", {"query": "INSERT INTO hosts (mac) VALUES ('x')"}) == (DENIED, 'writing needs a login in group "root"')
    r = admin.result("exec", {"query": "INSERT INTO hosts (mac, name) VALUES (?, ?) RETURNING id", "params": ["aa:bb:cc:00:00:04", "tv"]})
    assert (r["changes"], r["rows"]) == (1, [{"id": 4}])
    # The reader after the writer is read-only again; the write is in the file.
    assert ann.error("exec", {"query": "DELETE FROM hosts"})[0] == DENIED
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT name FROM hosts WHERE id = 4").fetchone() == ("tv",)
    c.close()


def test_writes_after_the_plugins_own_login(sql, db, userdb):
    c = sql(f",write=root,users={userdb}")()
    assert c.error("exec", {"query": "UPDATE hosts SET name = 'x'"})[0] == DENIED
    assert c.error("auth", {"user": "admin", "passwd": "wrong"})[0] == -32001
    assert c.result("auth", {"user": "ann", "passwd": "annpw"})["write"] is False
    assert c.error("exec", {"query": "UPDATE hosts SET name = 'x'"})[0] == DENIED
    assert c.result("auth", {"user": "admin", "passwd": "s3cret"})["write"] is True
    assert c.result("exec", {"query": "UPDATE hosts SET name = 'x' WHERE id = 3"})["changes"] == 1


def test_a_runaway_statement_is_stopped_and_others_are_served(sql):
    factory = sql(",steps=10000000000,ms=300")
    slow, other = factory(), factory()
    start = time.monotonic()
    slow.conn.send('{"jsonrpc":"2.0","method":"exec","params":{"query":"%s"},"id":1}' % RUNAWAY)
    answer = other.result("exec", {"query": "SELECT 42 AS n"})
    assert answer["rows"] == [{"n": 42}]
    stopped = json.loads(slow.conn.recv(timeout=5))
    assert stopped["error"] == {"code": BUDGET, "message": "stopped after 300 ms (ms=)"}
    assert time.monotonic() - start < 3


def test_steps_rows_and_bytes_caps(sql):
    c = sql(",rows=10,bytes=1024,steps=200000")()
    assert c.error("exec", {"query": RUNAWAY}) == (BUDGET, "stopped after 200000 steps (steps=)")
    ten = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT %d) SELECT x FROM c"
    assert len(c.result("exec", {"query": ten % 10})["rows"]) == 10
    code, message = c.error("exec", {"query": ten % 11})
    assert code == TOO_MANY_ROWS and "more than 10 rows" in message
    code, message = c.error("exec", {"query": "SELECT printf('%.2000c', 'a') AS s"})
    assert code == TOO_LARGE and "1024 bytes" in message
    # The same client goes on.
    assert c.result("exec", {"query": "SELECT 1 AS one"})["rows"] == [{"one": 1}]


@pytest.mark.parametrize(
    "options, message",
    [
        (",write=root", "needs gateway or users=FILE"),
        (",rows=0", "rows= takes a number from 1 to 100000"),
        (",nonsense", "bad option"),
    ],
)
def test_configuration_errors_stop_start_up(docroot, db, options, message):
    r = subprocess.run(
        [release_bin("websocket_jsonrpc"), "-R", str(docroot), "-n", "sql", "-L", plugin_path("sql"), "-C", f"{db}{options}"],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not (docroot / "sql").exists()


def test_a_missing_database_is_not_created(docroot, sandbox):
    missing = sandbox / "missing.db"
    r = subprocess.run(
        [release_bin("websocket_jsonrpc"), "-R", str(docroot), "-n", "sql", "-L", plugin_path("sql"), "-C", str(missing)],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 1 and "unable to open database file" in r.stderr, r.stderr
    assert not missing.exists()
