//! The dispatcher against a real SQLite database in a temporary directory.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use wsgate::auth::users::sha512_crypt;

use super::*;

/// A fresh directory with `demo.db`: table `items`, view `named`, table `odd "name"`.
fn fixture() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wsgate-sql-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Connection::open(dir.join("demo.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL, data BLOB);
         INSERT INTO items VALUES (1, 'eth0', 1.5, x'00ff6162'), (2, 'eth1', NULL, NULL),
             (3, 'wlan0', 2.25, NULL), (9007199254740993, 'big', 1e308, NULL);
         CREATE VIEW named AS SELECT id, name FROM items WHERE name IS NOT NULL;
         CREATE TABLE \"odd \"\"name\" (\"a b\" INTEGER);
         INSERT INTO \"odd \"\"name\" VALUES (7);",
    )
    .unwrap();
    dir
}

fn plugin(dir: &std::path::Path, options: &str) -> Sql {
    Sql::init(&format!("{}{options}", dir.join("demo.db").display())).unwrap()
}

fn call(sql: &Sql, s: &mut Session, method: &str, params: Value) -> Result<Value, RpcError> {
    sql.call(s, method, &params)
}

fn code(r: Result<Value, RpcError>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.code,
    }
}

fn exec(sql: &Sql, s: &mut Session, query: &str) -> Result<Value, RpcError> {
    call(sql, s, "exec", json!({ "query": query }))
}

fn admin() -> &'static str {
    "REMOTE_USER=alice\nREMOTE_GROUPS=users,admin\n"
}

#[test]
fn exec_answers_columns_rows_and_faithful_types() {
    let dir = fixture();
    let p = plugin(&dir, "");
    let mut s = p.open("").unwrap();
    let r = exec(&p, &mut s, "SELECT id, name, value, data FROM items ORDER BY id").unwrap();
    assert_eq!(r["columns"], json!(["id", "name", "value", "data"]));
    assert_eq!(r["changes"], json!(0));
    assert_eq!(
        r["rows"][0],
        json!({"id": 1, "name": "eth0", "value": 1.5, "data": {"base64": "AP9hYg=="}})
    );
    assert_eq!(r["rows"][1], json!({"id": 2, "name": "eth1", "value": null, "data": null}));
    assert_eq!(r["rows"][3]["id"], json!("9007199254740993"));
    assert_eq!(r["rows"][3]["value"], json!(1e308));
    let r = exec(&p, &mut s, "SELECT 1 AS a, 2 AS a, 9e999 AS inf, -9e999 AS ninf").unwrap();
    assert_eq!(r["columns"], json!(["a", "a:2", "inf", "ninf"]));
    assert_eq!(r["rows"][0], json!({"a": 1, "a:2": 2, "inf": "Infinity", "ninf": "-Infinity"}));
}

#[test]
fn parameters_are_bound_and_injection_stays_data() {
    let dir = fixture();
    let p = plugin(&dir, "");
    let mut s = p.open("").unwrap();
    let q = "SELECT name FROM items WHERE id = ? OR name = ?";
    let r = call(&p, &mut s, "exec", json!({"query": q, "params": [3, "eth1"]})).unwrap();
    assert_eq!(r["rows"], json!([{"name": "eth1"}, {"name": "wlan0"}]));
    let q = "SELECT id FROM items WHERE name = :name AND id > @min";
    let r = call(&p, &mut s, "exec", json!({"query": q, "params": {":name": "eth0", "min": 0}}));
    assert_eq!(r.unwrap()["rows"], json!([{"id": 1}]));
    let r =
        call(&p, &mut s, "exec", json!({"query": "SELECT ?2 AS b, ?1 AS a", "params": ["x", "y"]}));
    assert_eq!(r.unwrap()["rows"], json!([{"a": "x", "b": "y"}]));
    let blob = call(
        &p,
        &mut s,
        "exec",
        json!({"query": "SELECT hex(?) AS h", "params": [{"base64": "AP9hYg=="}]}),
    );
    assert_eq!(blob.unwrap()["rows"][0]["h"], json!("00FF6162"));
    // Text that would be SQL if it were spliced in stays a value.
    for evil in [
        "x' OR '1'='1",
        "'; DROP TABLE items; --",
        "eth0\" OR 1=1 --",
        "1 UNION SELECT sql FROM sqlite_schema",
    ] {
        let r = call(
            &p,
            &mut s,
            "exec",
            json!({"query": "SELECT id FROM items WHERE name = ?", "params": [evil]}),
        );
        assert_eq!(r.unwrap()["rows"], json!([]), "{evil}");
        let r = call(&p, &mut s, "get", json!({"table": "items", "where": {"name": evil}}));
        assert_eq!(r.unwrap()["rows"], json!([]), "{evil}");
    }
    assert_eq!(
        exec(&p, &mut s, "SELECT count(*) AS n FROM items").unwrap()["rows"][0]["n"],
        json!(4)
    );
    // Every parameter gets a value, every value a parameter.
    let bad = [
        json!({"query": "SELECT ?, ?", "params": [1]}),
        json!({"query": "SELECT ?", "params": [1, 2]}),
        json!({"query": "SELECT ?"}),
        json!({"query": "SELECT :a", "params": {"a": 1, "b": 2}}),
        json!({"query": "SELECT :a", "params": {"b": 2}}),
        json!({"query": "SELECT :a", "params": {"a": 1, ":a": 1}}),
        json!({"query": "SELECT ?", "params": {"a": 1}}),
        json!({"query": "SELECT ?", "params": [[1]]}),
        json!({"query": "SELECT ?", "params": "1"}),
        json!({"query": "SELECT 1", "db": "/etc/passwd"}),
        json!({"query": 1}),
        json!({}),
        json!([]),
    ];
    for params in bad {
        assert_eq!(code(call(&p, &mut s, "exec", params.clone())), -32602, "{params}");
    }
}

#[test]
fn one_statement_per_call() {
    let dir = fixture();
    let p = plugin(&dir, "");
    let mut s = p.open("").unwrap();
    assert_eq!(code(exec(&p, &mut s, "SELECT 1; DROP TABLE items")), -32602);
    assert_eq!(code(exec(&p, &mut s, "SELECT 1; SELECT 2")), -32602);
    assert_eq!(code(exec(&p, &mut s, "  -- nothing\n")), -32602);
    assert_eq!(code(exec(&p, &mut s, "SELECT 1\0; SELECT 2")), -32602);
    assert!(exec(&p, &mut s, "SELECT 1; -- a comment after is fine").is_ok());
    assert_eq!(code(exec(&p, &mut s, "SELEC 1")), SQL_ERROR);
    assert_eq!(code(exec(&p, &mut s, "SELECT * FROM nowhere")), SQL_ERROR);
}

#[test]
fn read_only_unless_in_the_write_group() {
    let dir = fixture();
    let writes = [
        "INSERT INTO items (name) VALUES ('x')",
        "UPDATE items SET name = 'x'",
        "DELETE FROM items",
        "DROP TABLE items",
        "CREATE TABLE t (a)",
        "CREATE TEMP TABLE t (a)",
        "ALTER TABLE items ADD COLUMN c",
        "CREATE INDEX i ON items (name)",
        "ANALYZE",
    ];
    // No write= at all: opened read-only.
    let p = plugin(&dir, "");
    let mut s = p.open(admin()).unwrap();
    for q in writes {
        let r = exec(&p, &mut s, q);
        assert_eq!(r.as_ref().map_err(|e| e.code), Err(DENIED), "{q}");
    }
    // write=admin from the gateway: others are refused, members write.
    let p = plugin(&dir, ",write=admin,gateway");
    let mut reader = p.open("REMOTE_USER=bob\nREMOTE_GROUPS=users\n").unwrap();
    let mut anonymous = p.open("").unwrap();
    let mut writer = p.open(admin()).unwrap();
    for q in writes {
        assert_eq!(code(exec(&p, &mut reader, q)), DENIED, "{q}");
        assert_eq!(code(exec(&p, &mut anonymous, q)), DENIED, "{q}");
    }
    assert_eq!(
        call(&p, &mut reader, "whoami", json!({})).unwrap(),
        json!({"user": "bob", "groups": ["users"], "write": false})
    );
    let r = call(
        &p,
        &mut writer,
        "exec",
        json!({"query": "INSERT INTO items (name) VALUES (?), (?)", "params": ["a", "b"]}),
    );
    assert_eq!(r.unwrap()["changes"], json!(2));
    let r =
        exec(&p, &mut writer, "UPDATE items SET value = 0 WHERE name = 'a' RETURNING id").unwrap();
    assert_eq!((r["changes"].clone(), r["rows"].as_array().unwrap().len()), (json!(1), 1));
    // The reader after a writer: query_only is back on.
    assert_eq!(code(exec(&p, &mut reader, "DELETE FROM items")), DENIED);
    assert_eq!(
        exec(&p, &mut reader, "SELECT count(*) AS n FROM items").unwrap()["rows"][0]["n"],
        json!(6)
    );
    // Without the gateway option the context is not believed.
    let p = plugin(&dir, ",write=admin,users=/dev/null");
    let mut s = p.open(admin()).unwrap();
    assert_eq!(code(exec(&p, &mut s, "DELETE FROM items")), DENIED);
}

#[test]
fn write_with_an_auth_login() {
    let dir = fixture();
    let hash = sha512_crypt(b"secret", b"0123456789abcdef", 1000);
    let line = |user: &str, group: &str| {
        format!(
            "{user}:{group}:$6$rounds=1000$0123456789abcdef${}:/home/{user}\n",
            String::from_utf8_lossy(&hash)
        )
    };
    std::fs::write(dir.join("users"), line("root", "admin") + &line("guest", "users")).unwrap();
    let p = plugin(&dir, &format!(",write=admin,users={}", dir.join("users").display()));
    let mut s = p.open("").unwrap();
    assert_eq!(code(exec(&p, &mut s, "DELETE FROM items WHERE id = 2")), DENIED);
    let bad = call(&p, &mut s, "auth", json!({"user": "root", "passwd": "wrong"}));
    assert_eq!(code(bad), AUTH_FAILED);
    assert_eq!(
        code(call(&p, &mut s, "auth", json!({"user": "nobody", "passwd": "secret"}))),
        AUTH_FAILED
    );
    let ok = call(&p, &mut s, "auth", json!({"user": "guest", "passwd": "secret"})).unwrap();
    assert_eq!(ok, json!({"user": "guest", "groups": ["users"], "write": false}));
    assert_eq!(code(exec(&p, &mut s, "DELETE FROM items WHERE id = 2")), DENIED);
    call(&p, &mut s, "auth", json!({"user": "root", "passwd": "secret"})).unwrap();
    assert_eq!(exec(&p, &mut s, "DELETE FROM items WHERE id = 2").unwrap()["changes"], json!(1));
    // Without users= there is no auth method.
    let p = plugin(&dir, "");
    let mut s = p.open("").unwrap();
    assert_eq!(code(call(&p, &mut s, "auth", json!({"user": "root", "passwd": "secret"}))), -32601);
}

#[test]
fn attach_extensions_transactions_and_pragma_writes_are_never_allowed() {
    let dir = fixture();
    let p = plugin(&dir, ",write=admin,gateway");
    let mut s = p.open(admin()).unwrap();
    let target = dir.join("copy.db");
    let never = [
        format!("ATTACH '{}' AS x", target.display()),
        format!("VACUUM INTO '{}'", target.display()),
        "DETACH main".into(),
        "VACUUM".into(),
        "BEGIN".into(),
        "COMMIT".into(),
        "SAVEPOINT a".into(),
        "PRAGMA user_version = 7".into(),
        "PRAGMA query_only = 0".into(),
        "PRAGMA writable_schema = 1".into(),
        "PRAGMA journal_mode = delete".into(),
        "PRAGMA hard_heap_limit = 0".into(),
        "PRAGMA database_list".into(),
        "SELECT * FROM pragma_database_list".into(),
    ];
    for q in &never {
        // Even for a connection that may write.
        assert_eq!(code(exec(&p, &mut s, q)), FORBIDDEN, "{q}");
    }
    // The bundled SQLite has no load_extension at all; a system one has it, and it is refused.
    let e = exec(&p, &mut s, "SELECT load_extension('/lib/libc.so.6')").unwrap_err();
    assert!(
        (e.code, e.message.as_str()) == (FORBIDDEN, Refusal::Function.message())
            || (e.code == SQL_ERROR && e.message.starts_with("no such function: load_extension")),
        "{e:?}"
    );
    assert!(!target.exists());
    let r = exec(&p, &mut s, "PRAGMA table_info(items)").unwrap();
    assert_eq!(r["rows"].as_array().unwrap().len(), 4);
    let r = exec(&p, &mut s, "SELECT name FROM pragma_table_info('items') ORDER BY cid").unwrap();
    assert_eq!(r["rows"][1], json!({"name": "name"}));
    assert_eq!(
        exec(&p, &mut s, "PRAGMA user_version").unwrap()["rows"],
        json!([{"user_version": 0}])
    );
}

#[test]
fn a_runaway_statement_is_stopped_by_its_budget() {
    let dir = fixture();
    let forever =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let p = plugin(&dir, ",steps=100000");
    let mut s = p.open("").unwrap();
    let e = exec(&p, &mut s, forever).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (BUDGET, "stopped after 100000 steps (steps=)"));
    // The budget is per statement: the next one runs.
    assert_eq!(exec(&p, &mut s, "SELECT 1 AS one").unwrap()["rows"], json!([{"one": 1}]));
    let p = plugin(&dir, ",steps=10000000000,ms=50");
    let mut s = p.open("").unwrap();
    let start = std::time::Instant::now();
    let e = exec(&p, &mut s, forever).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (BUDGET, "stopped after 50 ms (ms=)"));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn rows_and_answer_bytes_are_capped() {
    let dir = fixture();
    let p = plugin(&dir, ",rows=3,bytes=300");
    let mut s = p.open("").unwrap();
    let three =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3) SELECT x FROM c";
    assert_eq!(exec(&p, &mut s, three).unwrap()["rows"].as_array().unwrap().len(), 3);
    assert_eq!(code(exec(&p, &mut s, &three.replace("LIMIT 3", "LIMIT 4"))), TOO_MANY_ROWS);
    assert_eq!(code(exec(&p, &mut s, "SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)")), TOO_MANY_ROWS);
    assert!(exec(&p, &mut s, "SELECT printf('%.200c', 'a') AS s").is_ok());
    assert_eq!(code(exec(&p, &mut s, "SELECT printf('%.300c', 'a') AS s")), TOO_LARGE);
    // get: no limit means "all", which must fit the cap; a limit above it is refused.
    assert_eq!(code(call(&p, &mut s, "get", json!({"table": "items"}))), TOO_MANY_ROWS);
    assert_eq!(
        call(&p, &mut s, "get", json!({"table": "items", "limit": 2})).unwrap()["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(code(call(&p, &mut s, "get", json!({"table": "items", "limit": 4}))), -32602);
    // SQLite's own bounds: the longest value, the heap.
    assert_eq!(code(exec(&p, &mut s, "SELECT length(zeroblob(2000000)) AS n")), SQL_ERROR);
    let p = plugin(&dir, ",heap=1048576");
    let mut s = p.open("").unwrap();
    let hog = "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000) \
               SELECT DISTINCT randomblob(64) FROM c)";
    let e = exec(&p, &mut s, hog).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (BUDGET, "stopped: it needs more than 1048576 bytes of memory (heap=)")
    );
}

#[test]
fn list_and_get() {
    let dir = fixture();
    let p = plugin(&dir, "");
    let mut s = p.open("").unwrap();
    let tables = call(&p, &mut s, "list", Value::Null).unwrap();
    assert_eq!(
        tables,
        json!([{"name": "items", "type": "table"}, {"name": "named", "type": "view"}, {"name": "odd \"name", "type": "table"}])
    );
    assert_eq!(code(call(&p, &mut s, "list", json!({"x": 1}))), -32602);
    let r = call(
        &p,
        &mut s,
        "get",
        json!({"table": "ITEMS", "where": {"name": "eth1", "value": null}}),
    )
    .unwrap();
    assert_eq!(r["rows"], json!([{"id": 2, "name": "eth1", "value": null, "data": null}]));
    let r = call(&p, &mut s, "get", json!({"table": "named", "limit": 2, "offset": 1})).unwrap();
    assert_eq!(r["rows"].as_array().unwrap().len(), 2);
    let r = call(&p, &mut s, "get", json!({"table": "odd \"name", "where": {"a b": 7}})).unwrap();
    assert_eq!(r["rows"], json!([{"a b": 7}]));
    // Names come from the schema, never from the client's text.
    let bad = [
        json!({"table": "items; DROP TABLE items"}),
        json!({"table": "items\" --"}),
        json!({"table": "sqlite_schema"}),
        json!({"table": "items", "where": {"name = name OR 1": 1}}),
        json!({"table": "items", "where": "1=1"}),
        json!({"table": "items", "limit": -1}),
        json!({"table": "items", "offset": -1}),
        json!({"table": "items", "offset": "1; DROP TABLE items"}),
        json!({"table": "items", "db": "x"}),
        json!({"where": {}}),
    ];
    for params in bad {
        assert_eq!(code(call(&p, &mut s, "get", params.clone())), -32602, "{params}");
    }
    assert_eq!(code(call(&p, &mut s, "drop", json!({}))), -32601);
}

#[test]
fn configuration_errors() {
    let dir = fixture();
    let db = dir.join("demo.db").display().to_string();
    for (config, why) in [
        (String::new(), "must name the database file"),
        (format!("{db},rows=0"), "rows= takes a number from 1 to 100000"),
        (format!("{db},bytes=70000"), "bytes= takes a number from 256 to 65536"),
        (format!("{db},ms=x"), "ms= takes"),
        (format!("{db},write=admin"), "needs gateway or users=FILE"),
        (format!("{db},gateway=1"), "bad option"),
        (format!("{db},frobnicate"), "bad option"),
        (format!("{db},users={}", dir.join("none").display()), "user database"),
        (dir.join("missing.db").display().to_string(), "unable to open"),
        (format!("{}", dir.display()), &format!("{}: ", dir.display())),
    ] {
        let e = Sql::init(&config).unwrap_err();
        assert!(e.starts_with("sql: ") && e.contains(why), "{config}: {e}");
    }
    std::fs::write(dir.join("text.db"), "not a database, just text padded to a page ".repeat(20))
        .unwrap();
    let e = Sql::init(&dir.join("text.db").display().to_string()).unwrap_err();
    assert!(e.contains("not a database"), "{e}");
}

/// Gives `items`' column `name` a name that is not UTF-8, as another program could.
fn break_utf8(db: &std::path::Path) {
    let db = Connection::open(db).unwrap();
    db.execute_batch("PRAGMA writable_schema = ON").unwrap();
    let sql =
        b"CREATE TABLE items (id INTEGER PRIMARY KEY, \"na\xffme\" TEXT, value REAL, data BLOB)";
    db.execute(
        "UPDATE sqlite_schema SET sql = CAST(?1 AS TEXT) WHERE name = 'items'",
        [sql.to_vec()],
    )
    .unwrap();
    // Editing the schema by hand does not move its version: the editor must.
    let v: i64 = db.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap();
    db.execute_batch(&format!("PRAGMA schema_version = {}", v + 1)).unwrap();
}

#[test]
fn a_name_that_is_not_utf8_is_an_error_not_a_crash() {
    let dir = fixture();
    let p = plugin(&dir, "");
    let mut s = p.open("").unwrap();
    assert_eq!(
        exec(&p, &mut s, "SELECT count(*) AS n FROM items").unwrap()["rows"][0]["n"],
        json!(4)
    );
    // Changed under the running plugin: refused at the next call.
    break_utf8(&dir.join("demo.db"));
    let e = exec(&p, &mut s, "SELECT * FROM items").unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (DB_ERROR, "the schema holds a name that is not UTF-8")
    );
    assert_eq!(code(call(&p, &mut s, "get", json!({"table": "items"}))), DB_ERROR);
    // At start: the plugin does not start.
    let e = Sql::init(&dir.join("demo.db").display().to_string()).unwrap_err();
    assert!(e.ends_with("the schema holds a name that is not UTF-8"), "{e}");
}

#[test]
fn a_write_whose_answer_is_refused_changes_nothing() {
    let dir = fixture();
    let p = plugin(&dir, ",write=admin,gateway,rows=3,bytes=300");
    let mut s = p.open(admin()).unwrap();
    let state = |s: &mut Session| {
        let q = "SELECT count(*) AS n, total(value) AS t, total(length(name)) AS chars FROM items";
        exec(&p, s, q).unwrap()["rows"][0].clone()
    };
    let before = state(&mut s);
    // SQLite changes the rows before RETURNING hands out the first one: more of them than
    // rows=, or a larger answer than bytes=, must undo the change.
    assert_eq!(code(exec(&p, &mut s, "UPDATE items SET value = 0 RETURNING id")), TOO_MANY_ROWS);
    let big = "INSERT INTO items (name) VALUES (printf('%.400c', 'x')) RETURNING name";
    assert_eq!(code(exec(&p, &mut s, big)), TOO_LARGE);
    // So must an error of SQLite's own after the first row.
    let dup = "INSERT INTO items (id, name) VALUES (10, 'ten'), (1, 'dup') RETURNING id";
    assert_eq!(code(exec(&p, &mut s, dup)), SQL_ERROR);
    assert_eq!(state(&mut s), before);
    assert!(p.db.is_autocommit());
    // Within the caps, the write is made and counted.
    let r = exec(&p, &mut s, "DELETE FROM items WHERE id = 2 RETURNING id").unwrap();
    assert_eq!((r["changes"].clone(), r["rows"].clone()), (json!(1), json!([{"id": 2}])));
    assert_eq!(state(&mut s)["n"], json!(3));
    assert!(p.db.is_autocommit());
}
