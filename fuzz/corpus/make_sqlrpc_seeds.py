#!/usr/bin/env python3
"""Writes the seeds of the `sqlrpc` fuzz target (docs/fuzzing.md).

The target's layout (fuzz/fuzz_targets/sqlrpc.rs): up to four calls, each a head byte, a
little-endian u16 length and that many bytes of params. The head: bits 0-2 the method
(0 exec, 1 get, 2 list, 3 whoami, 4 auth, 5 an unknown one, 6 exec, 7 get), bits 3-4 who calls
(0 no identity, 1 alice in group admin, who may write, 2 bob in group users, 3 a connection of
the plugin without write=), bits 5-6 how the params are made (0 the bytes as JSON, 1 built
from the bytes, 2 for exec a query of SQL fragments), bit 7 the last call.

The seeds here are mostly JSON params (form 0): injection strings, statements never allowed
(ATTACH, VACUUM INTO, pragma writes, load_extension, transactions), recursive CTEs that run
into the caps, positional and named params, big integers, base64 blobs, where objects; and
a few built ones (form 1) for the structured paths.
"""
import json
import os
import shutil
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sqlrpc")
METHODS = {"exec": 0, "get": 1, "list": 2, "whoami": 3, "auth": 4, "drop": 5}
READER, WRITER, BOB, READONLY = 0, 1, 2, 3


def call(method, params, who=READER, form=0, last=False):
    body = json.dumps(params).encode() if form == 0 else bytes(params)
    head = METHODS[method] | who << 3 | form << 5 | (0x80 if last else 0)
    return bytes([head]) + struct.pack("<H", len(body)) + body


def ex(query, params=None, who=READER):
    p = {"query": query}
    if params is not None:
        p["params"] = params
    return call("exec", p, who)


FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
seeds = {
    "select_all": ex("SELECT * FROM items"),
    "select_types": ex("SELECT 1 AS a, 2 AS a, 9e999 AS inf, -9e999 AS ninf, x'00ff' AS b, 'a:2' AS \"a:2\""),
    "big_integers": ex("SELECT ? AS a, ? AS b, ? + 1 AS c", [9007199254740993, -9223372036854775808, 9007199254740991]),
    "integer_beyond_i64": ex("SELECT ?", [18446744073709551615]),
    "blob_param": ex("SELECT hex(?) AS h, ? AS b", [{"base64": "AP9hYg=="}, {"base64": ""}]),
    "bad_base64": ex("SELECT ?", [{"base64": "A"}]),
    "named_params": ex("SELECT id FROM items WHERE name = :name AND id > @min OR id = $x", {":name": "eth0", "min": 0, "$x": 3}),
    "numbered_params": ex("SELECT ?2 AS b, ?1 AS a, ?2 AS c", ["x", "y"]),
    "injection_bound": ex("SELECT id FROM items WHERE name = ?", ["x' OR '1'='1"]),
    "injection_drop": ex("SELECT id FROM items WHERE name = ?", ["'; DROP TABLE items; --"]),
    "two_statements": ex("SELECT 1; DROP TABLE items"),
    "nul_in_query": ex("SELECT 1\u0000; SELECT 2"),
    "comment_after": ex("SELECT 1; -- fine"),
    "attach": ex("ATTACH 'attached.db' AS x", who=WRITER),
    "attach_memory": ex("ATTACH ':memory:' AS m", who=WRITER),
    "vacuum_into": ex("VACUUM INTO 'vacuumed.db'", who=WRITER),
    "vacuum": ex("VACUUM", who=WRITER),
    "detach": ex("DETACH main", who=WRITER),
    "pragma_write": ex("PRAGMA user_version = 7", who=WRITER),
    "pragma_query_only": ex("PRAGMA query_only = 0"),
    "pragma_journal": ex("PRAGMA journal_mode = wal", who=WRITER),
    "pragma_read": ex("PRAGMA table_info(items)"),
    "pragma_function": ex("SELECT * FROM pragma_database_list"),
    "load_extension": ex("SELECT load_extension('/lib/libc.so.6')", who=WRITER),
    "begin": ex("BEGIN", who=WRITER),
    "savepoint": ex("SAVEPOINT a", who=WRITER),
    "forever": ex("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"),
    "too_many_rows": ex(FOREVER),
    "too_large": ex("SELECT printf('%.3000c', 'a') AS s"),
    "zeroblob": ex("SELECT length(zeroblob(2000000)) AS n"),
    "reader_insert": ex("INSERT INTO items (name) VALUES ('x')"),
    "reader_temp_table": ex("CREATE TEMP TABLE t (a)"),
    "insert": ex("INSERT INTO items (name, data) VALUES (?, ?)", ["new", {"base64": "AAEC"}], WRITER),
    "returning_too_many": ex("UPDATE items SET value = 0 RETURNING *", who=WRITER),
    "returning_too_many_rows": ex("INSERT INTO log SELECT x, 'n' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 20) SELECT x FROM c) RETURNING at", who=WRITER),
    "returning_too_large": ex("UPDATE kv SET v = printf('%.900c', 'v') RETURNING v", who=WRITER),
    "delete_returning": ex("DELETE FROM kv RETURNING k, v", who=WRITER),
    "insert_or_fail": ex("INSERT OR FAIL INTO kv VALUES ('z', 1), ('a', 2)", who=WRITER),
    "create_and_use": call("exec", {"query": "CREATE TEMP TABLE t AS SELECT * FROM items"}, WRITER)
    + call("exec", {"query": "SELECT * FROM temp.t"})
    + call("list", {}),
    "temp_trigger": call("exec", {"query": "CREATE TEMP TRIGGER tt AFTER DELETE ON kv BEGIN INSERT INTO log VALUES (1, old.k); END"}, WRITER)
    + ex("DELETE FROM kv WHERE k = 'a'", who=WRITER),
    "alter_then_get": ex("ALTER TABLE items ADD COLUMN \"odd\"\"col\"", who=WRITER)
    + call("get", {"table": "items", "where": {"odd\"col": None}, "limit": 2}),
    "drop_table": ex("DROP TABLE \"odd \"\"name\"", who=WRITER) + call("list", None),
    "get_where": call("get", {"table": "ITEMS", "where": {"name": "eth1", "value": None}}),
    "get_odd": call("get", {"table": "odd \"name", "where": {"a b": 7, "select": "from"}}),
    "get_view_page": call("get", {"table": "named", "limit": 2, "offset": 1}),
    "get_injection": call("get", {"table": "items", "where": {"name = name OR 1": 1}}),
    "get_bad_table": call("get", {"table": "items; DROP TABLE items"}),
    "get_schema": call("get", {"table": "sqlite_schema"}),
    "get_limit_over": call("get", {"table": "items", "limit": 9}),
    "get_where_string": call("get", {"table": "items", "where": "1=1"}),
    "get_db": call("get", {"table": "items", "db": "/etc/passwd"}),
    "list": call("list", {}),
    "whoami_all": call("whoami", None, READER) + call("whoami", None, WRITER) + call("whoami", None, BOB) + call("whoami", None, READONLY),
    "auth_root_then_write": call("auth", {"user": "root", "passwd": "secret"}, BOB)
    + ex("INSERT INTO kv VALUES ('root', 1)", who=BOB)
    + call("whoami", {}, BOB),
    "auth_wrong": call("auth", {"user": "root", "passwd": "wrong"}),
    "auth_readonly": call("auth", {"user": "root", "passwd": "secret"}, READONLY)
    + ex("DELETE FROM items", who=READONLY),
    "unknown_method": call("drop", {"table": "items"}),
    # Built params (form 1): exec with named params of several kinds.
    "built_exec_named": call("exec", [0x02 | 3 << 2] + list(b"SELECT :a, @a, $a\x00") + [0, 3, 0x07, 1, 6, 5, 3, 0x7f], form=1),
    "built_get": call("get", [0, 0x0a, 1, 6, 4, ord("e"), ord("t"), ord("h"), ord("0"), 3, 0], form=1),
    "built_fragments": call("exec", [0, 8, 0, 1, 2, 3, 8, 9, 13, 14], READER, form=2),
}

shutil.rmtree(HERE, ignore_errors=True)
os.makedirs(HERE)
for name, data in seeds.items():
    assert len(data) <= 4096, name
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
