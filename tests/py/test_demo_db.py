"""board/demo/demo.db, the database the demo's sql endpoint serves, holds what
board/demo/demo.sql says: the file is committed (the demo runs where neither Python nor the
sqlite3 tool is), and made from the SQL text by scripts/demo-db.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from harness import REPO_ROOT

DEMO = REPO_ROOT / "board/demo"


def content(db: sqlite3.Connection) -> dict:
    """The schema (each object's SQL) and every table's rows, in an order of their own."""
    schema = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name").fetchall()
    tables = {}
    for (name,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        width = len(db.execute(f'SELECT * FROM "{name}" LIMIT 0').description)
        order = ", ".join(str(i) for i in range(1, width + 1))
        tables[name] = db.execute(f'SELECT * FROM "{name}" ORDER BY {order}').fetchall()
    return {"schema": schema, "tables": tables}


def test_the_committed_database_holds_what_demo_sql_says():
    expected = sqlite3.connect(":memory:")
    expected.executescript((DEMO / "demo.sql").read_text())
    committed = sqlite3.connect(f"file:{DEMO / 'demo.db'}?mode=ro", uri=True)
    try:
        assert committed.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        want, got = content(expected), content(committed)
        assert got["schema"] == want["schema"], "board/demo/demo.db is stale: run scripts/demo-db.py"
        assert got["tables"] == want["tables"], "board/demo/demo.db is stale: run scripts/demo-db.py"
        # Not an empty match: the tables and views websql.html's examples use.
        assert {"interfaces", "clients", "events"} <= set(want["tables"])
        assert all(want["tables"].values())
        assert [n for t, n, _, _ in want["schema"] if t == "view"] == ["active_clients", "event_counts"]
    finally:
        committed.close()


def test_the_script_makes_that_database(tmp_path):
    out = tmp_path / "demo.db"
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts/demo-db.py"), str(out)], check=True)
    made = sqlite3.connect(out)
    committed = sqlite3.connect(f"file:{DEMO / 'demo.db'}?mode=ro", uri=True)
    try:
        assert content(made) == content(committed)
        assert made.execute("PRAGMA page_size").fetchone() == (1024,)
    finally:
        made.close()
        committed.close()
