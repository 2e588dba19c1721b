#!/usr/bin/env python3
"""Makes board/demo/demo.db, the demo's SQLite database, from board/demo/demo.sql.

The database file is committed so that the demo needs neither Python nor the sqlite3 tool
(routers have neither): run this after changing demo.sql, and commit both.
tests/py/test_demo_db.py checks that the committed file holds what demo.sql says.

    scripts/demo-db.py [OUT]     (OUT defaults to board/demo/demo.db)
"""

import os
import sqlite3
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SQL = REPO / "board/demo/demo.sql"


def make(out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        # Small pages: the file is a few KiB, on a board's flash as in the repository.
        db.execute("PRAGMA page_size = 1024")
        db.executescript(SQL.read_text())
        db.commit()
        db.execute("VACUUM")
    finally:
        db.close()
    os.replace(tmp, out)


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "board/demo/demo.db")
