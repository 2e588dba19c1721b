//! The sql plugin's dispatcher (`wsgate_rpc_sql::Sql`, through the `Plugin` trait as
//! `websocket_jsonrpc` calls it) on a small SQLite database in a temporary directory: a table
//! of text, reals, integers beyond 2^53 and blobs with an index and a trigger, a view, a
//! WITHOUT ROWID table, and a table with a quoted odd name and odd column names.
//!
//! Two plugins share the file: `write=admin,gateway,users=FILE` with small caps, and one
//! without `write=` (opened read-only). An input is up to four calls, each by one of four
//! connections: no identity, alice in group admin (may write), bob in group users (the
//! gateway's context), or a connection of the read-only plugin; `auth` may change who they
//! are. Each call's params are the input's bytes as JSON, or built from them (exec with a
//! query from the bytes or from SQL fragments, positional or named params of every JSON
//! kind; get with table and column names from the schema or not, where objects, limits and
//! offsets; auth with right and wrong credentials), so that binding, where clauses and the
//! caps are reached and not only the params checks.
//!
//! Checks, after every call: an answer of `exec` or `get` is `{"columns", "rows",
//! "changes"}` with distinct column names, every row an object whose keys are exactly the
//! columns and whose values are what the plugin's `value` module maps to (`null`, a number
//! within ±(2^53 − 1) when integral, a string, `{"base64": padded base64}`), no more rows than
//! `rows=` (nor than `get`'s `limit`), a `where: {column: null}` matched by NULLs only,
//! `changes` 0 for a read, and the whole answer no larger than `bytes=`; `list` is what a
//! connection of the target's own reads in the schema; `whoami` and `auth` give the identity
//! the target expects, right credentials are accepted and wrong ones refused; an error has a
//! code the module documentation lists for its method (`get` never fails with -32020: its SQL
//! is the plugin's own, and a connection that may write is never told it may not). The
//! database file is byte for byte the same after every call of a connection that may not
//! write and after every failed call (a call is one statement in its own transaction; a
//! statement or schema with `OR FAIL`/`ON CONFLICT FAIL` keeps what it did before failing,
//! so an input that names FAIL is spared that check); no file appears beside the database
//! (no journal left behind, nothing ATTACH or VACUUM INTO made): the calls run with the
//! database's directory as the working directory, so a relative name lands there too
//! (`scripts/fuzz.sh` and cargo-fuzz give libFuzzer absolute paths, which this does not
//! disturb).
//!
//! Every input starts from the same database and plugins: after an input in which a
//! connection that may write ran `exec`, both plugins are closed, the file written back and
//! the plugins opened again (temporary tables and triggers live in the plugin's
//! connection). A finding therefore reproduces from its input alone.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A fuzz harness: a panic is how it reports a broken invariant.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use wsgate::auth::users::sha512_crypt;
use wsgate::http::handshake::{base64_decode, base64_encode};
use wsgate_rpc_plugin::Plugin;
use wsgate_rpc_sql::{
    Session, Sql, AUTH_FAILED, BUDGET, DENIED, FORBIDDEN, SQL_ERROR, TOO_LARGE, TOO_MANY_ROWS,
};

/// -32602 and -32601 (`wsgate_rpc_plugin`).
const INVALID_PARAMS: i32 = wsgate_rpc_plugin::INVALID_PARAMS;
const METHOD_NOT_FOUND: i32 = wsgate_rpc_plugin::METHOD_NOT_FOUND;

/// The caps: small, so that every input runs in well under 10 ms and the fuzzer meets them.
const ROWS: usize = 8;
const BYTES: usize = 2048;
const STEPS: u64 = 20_000;

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

const SCHEMA: &str = "
    CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL, data BLOB);
    INSERT INTO items VALUES
        (1, 'eth0', 1.5, x'00ff6162'), (2, 'eth1', NULL, NULL), (3, 'wlan0', 2.25, x''),
        (9007199254740993, 'big', 1e308, NULL), (-9223372036854775808, 'min', -0.0, NULL),
        (5, 'quote''s \"and\" ünïcödé', 9007199254740992.0, zeroblob(40)), (6, NULL, 0.1, 'text');
    CREATE INDEX items_name ON items (name);
    CREATE TABLE log (at INTEGER, what TEXT);
    CREATE TRIGGER items_log AFTER INSERT ON items BEGIN
        INSERT INTO log VALUES (new.id, new.name);
    END;
    CREATE VIEW named AS SELECT id, name FROM items WHERE name IS NOT NULL;
    CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
    INSERT INTO kv VALUES ('a', 1), ('b', 'two'), ('c', x'03'), ('d', 4.5), ('e', NULL);
    CREATE TABLE \"odd \"\"name\" (\"a b\" INTEGER, \"select\" TEXT, \"x:2\");
    INSERT INTO \"odd \"\"name\" VALUES (7, 'from', 1), (NULL, NULL, NULL);
";

/// The user database of `auth`: password `secret` for both.
const USERS: [(&str, &str); 2] = [("root", "admin"), ("guest", "users")];
const PASSWORD: &str = "secret";

/// Who makes a call: the plugin (0: with `write=admin`, 1: without) and the gateway's context.
const WHO: [(usize, &str); 4] = [
    (0, ""),
    (0, "REMOTE_USER=alice\nREMOTE_GROUPS=users,admin\n"),
    (0, "REMOTE_USER=bob\nREMOTE_GROUPS=users\n"),
    (1, "REMOTE_USER=alice\nREMOTE_GROUPS=users,admin\n"),
];

/// The identity the target expects a connection to have.
#[derive(Clone, Debug, PartialEq)]
struct Identity {
    user: Option<String>,
    groups: Vec<String>,
}

impl Identity {
    fn of(who: usize) -> Self {
        let (user, groups): (Option<&str>, &[&str]) = match who {
            1 => (Some("alice"), &["users", "admin"]),
            2 => (Some("bob"), &["users"]),
            _ => (None, &[]),
        };
        Self {
            user: user.map(str::to_owned),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn may_write(&self, plugin: usize) -> bool {
        plugin == 0 && self.groups.iter().any(|g| g == "admin")
    }
}

struct World {
    dir: PathBuf,
    db: PathBuf,
    pristine: Vec<u8>,
    /// Both plugins, `None` only while the file is written back.
    plugins: Option<[Sql; 2]>,
    /// The target's own connection, to read the schema.
    own: Option<rusqlite::Connection>,
    /// The file may differ from `pristine`, or the plugins hold temporary objects.
    dirty: bool,
    /// The entries of the directory: the database and the user database.
    dir_entries: BTreeSet<String>,
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect()
}

impl World {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("wsgate-fuzz-sqlrpc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("demo.db");
        rusqlite::Connection::open(&db).unwrap().execute_batch(SCHEMA).unwrap();
        let mut users = String::new();
        for (user, group) in USERS {
            let hash = sha512_crypt(PASSWORD.as_bytes(), b"0123456789abcdef", 1000);
            users += &format!(
                "{user}:{group}:$6$rounds=1000$0123456789abcdef${}:/home/{user}\n",
                String::from_utf8_lossy(&hash)
            );
        }
        std::fs::write(dir.join("users"), users).unwrap();
        let pristine = std::fs::read(&db).unwrap();
        let dir_entries = entries(&dir);
        assert_eq!(dir_entries, ["demo.db".to_owned(), "users".to_owned()].into());
        let mut w = Self { dir, db, pristine, plugins: None, own: None, dirty: true, dir_entries };
        w.reset();
        w
    }

    /// The database as it was made, and both plugins opened on it afresh.
    fn reset(&mut self) {
        self.plugins = None;
        self.own = None;
        std::fs::write(&self.db, &self.pristine).unwrap();
        let db = self.db.display();
        let users = self.dir.join("users");
        let users = users.display();
        let caps = format!("rows={ROWS},bytes={BYTES},steps={STEPS},ms=1000,heap=4194304");
        let open = |options: String| Sql::init(&format!("{db},{options},{caps}")).unwrap();
        self.plugins = Some([
            open(format!("write=admin,gateway,users={users}")),
            open(format!("users={users}")),
        ]);
        self.own = Some(
            rusqlite::Connection::open_with_flags(
                &self.db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap(),
        );
        self.dirty = false;
    }

    /// `list`'s answer as the target's own connection reads the schema.
    fn tables(&self) -> Value {
        let own = self.own.as_ref().unwrap();
        let mut stmt = own
            .prepare(
                "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok(json!({"name": r.get::<_, String>(0)?, "type": r.get::<_, String>(1)?}))
            })
            .unwrap();
        Value::Array(rows.collect::<Result<_, _>>().unwrap())
    }
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World::new());
}

/// The input's bytes, read front to back; past the end, zeros.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.take(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    /// A length byte, then that many bytes as text.
    fn text(&mut self) -> String {
        let n = usize::from(self.byte());
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    /// Bytes up to a NUL (or the end), as text.
    fn until_nul(&mut self) -> String {
        let n = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        let text = String::from_utf8_lossy(self.take(n)).into_owned();
        self.byte();
        text
    }

    /// One of `choices`, or (the last choice) text from the input.
    fn choose(&mut self, choices: &[&str]) -> String {
        let i = usize::from(self.byte()) % (choices.len() + 1);
        choices.get(i).map_or_else(|| self.text(), |s| (*s).to_owned())
    }
}

fn base64(data: &[u8]) -> String {
    let mut out = vec![0u8; data.len().div_ceil(3) * 4];
    let n = base64_encode(data, &mut out).unwrap();
    out.truncate(n);
    String::from_utf8(out).unwrap()
}

/// A JSON value of any kind a client could send as a parameter.
fn value(b: &mut Bytes<'_>) -> Value {
    match b.byte() % 16 {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(false),
        3 => json!(b.byte() as i8),
        4 => json!(b.u64() as i64),
        5 => {
            let f = f64::from_bits(b.u64());
            if f.is_finite() {
                json!(f)
            } else {
                json!(f.to_string())
            }
        }
        6 => json!(b.text()),
        7 => {
            let n = usize::from(b.byte());
            json!({"base64": base64(b.take(n))})
        }
        8 => json!({"base64": b.text()}),
        9 => json!((1u64 << 63) + u64::from(b.byte())),
        10 => json!([b.byte()]),
        11 => json!({"x": 1, "base64": ""}),
        12 => json!(MAX_SAFE_INTEGER as i64 + i64::from(b.byte() as i8)),
        13 => json!(
            ["eth0", "eth1", "wlan0", "big", "min", "text", "a", "two"][usize::from(b.byte() % 8)]
        ),
        14 => json!(i64::from(b.byte() % 8)),
        _ => json!(-(MAX_SAFE_INTEGER as i64) - i64::from(b.byte())),
    }
}

/// Pieces of SQL that an `exec` query is made of, one per input byte.
const FRAGMENTS: [&str; 97] = [
    "SELECT",
    "*",
    "FROM",
    "items",
    "named",
    "kv",
    "\"odd \"\"name\"",
    "log",
    "WHERE",
    "id",
    "name",
    "value",
    "data",
    "=",
    "?",
    "?1",
    "?2",
    ":a",
    "@a",
    "$a",
    ":b",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "LIMIT",
    "OFFSET",
    "ORDER BY",
    "GROUP BY",
    "(",
    ")",
    ",",
    "1",
    "9007199254740993",
    "-9223372036854775808",
    "1e308",
    "'x'",
    "x'00ff'",
    "UNION ALL",
    "WITH RECURSIVE c(x) AS",
    "SELECT x + 1 FROM c",
    "c",
    "count(*)",
    "length(",
    "hex(",
    "zeroblob(",
    "randomblob(",
    "printf('%.500c', 'a')",
    "INSERT INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "RETURNING",
    "CREATE TABLE",
    "CREATE TEMP TABLE",
    "CREATE TEMP TRIGGER",
    "DROP TABLE",
    "ALTER TABLE",
    "ADD COLUMN",
    "CREATE INDEX",
    "ON",
    "ATTACH",
    "DETACH",
    "AS",
    "'attached.db'",
    "VACUUM",
    "INTO",
    "'vacuumed.db'",
    "PRAGMA",
    "user_version",
    "table_info(items)",
    "journal_mode = wal",
    "query_only = 0",
    "writable_schema",
    "BEGIN",
    "COMMIT",
    "SAVEPOINT",
    "ROLLBACK",
    "load_extension('x')",
    "sqlite_schema",
    "pragma_table_info('items')",
    "temp.",
    "main.",
    "DISTINCT",
    "JOIN",
    "CAST(",
    "AS INTEGER)",
    "OR IGNORE",
    "OR REPLACE",
    "ANALYZE",
    "REINDEX",
    ";",
    "--",
    "/*",
    "DEFAULT VALUES",
];

/// `exec`'s params.
fn exec_params(b: &mut Bytes<'_>, fragments: bool) -> Value {
    let flags = b.byte();
    let query = if fragments {
        let n = usize::from(b.byte() % 32);
        let words: Vec<&str> =
            (0..n).map(|_| FRAGMENTS[usize::from(b.byte()) % FRAGMENTS.len()]).collect();
        words.join(" ")
    } else {
        b.until_nul()
    };
    let mut params = Map::new();
    params.insert(
        "query".into(),
        if flags & 0x40 == 0 { Value::String(query) } else { json!(query.len()) },
    );
    let n = usize::from(flags >> 2 & 7);
    match flags & 3 {
        0 => {}
        1 => {
            params.insert("params".into(), Value::Array((0..n).map(|_| value(b)).collect()));
        }
        2 => {
            const NAMES: [&str; 12] =
                [":a", "a", "@a", "$a", "b", ":b", "name", ":name", "min", "@min", "1", ""];
            let mut named = Map::new();
            for _ in 0..n {
                let name = NAMES[usize::from(b.byte()) % NAMES.len()];
                named.insert(name.into(), value(b));
            }
            params.insert("params".into(), Value::Object(named));
        }
        _ => {
            params.insert("params".into(), value(b));
        }
    }
    if flags & 0x20 != 0 {
        params.insert(if flags & 0x80 == 0 { "db" } else { "x" }.into(), json!("/etc/passwd"));
    }
    Value::Object(params)
}

/// `get`'s params.
fn get_params(b: &mut Bytes<'_>) -> Value {
    let mut params = Map::new();
    let table =
        b.choose(&["items", "ITEMS", "named", "odd \"name", "kv", "log", "sqlite_schema", "nope"]);
    let flags = b.byte();
    if flags & 0x80 == 0 {
        params.insert("table".into(), json!(table));
    }
    let n = usize::from(flags & 3);
    if flags & 4 != 0 {
        params.insert("where".into(), json!("1=1"));
    } else if n > 0 {
        let mut conditions = Map::new();
        for _ in 0..n {
            let column = b.choose(&[
                "id",
                "NAME",
                "value",
                "data",
                "a b",
                "select",
                "x:2",
                "k",
                "v",
                "at",
                "what",
                "name = name OR 1",
            ]);
            conditions.insert(column, value(b));
        }
        params.insert("where".into(), Value::Object(conditions));
    }
    let cap = ROWS as i64;
    let number = |b: &mut Bytes<'_>, kind: u8| match kind {
        0 => None,
        1 => Some(json!(i64::from(b.byte() % 16))),
        2 => Some(json!(cap)),
        _ => Some(match b.byte() % 6 {
            0 => json!(-1),
            1 => json!(1.5),
            2 => json!("3"),
            3 => json!(cap + 1),
            4 => json!(i64::MAX),
            _ => Value::Null,
        }),
    };
    if let Some(v) = number(b, flags >> 3 & 3) {
        params.insert("limit".into(), v);
    }
    if let Some(v) = number(b, flags >> 5 & 3) {
        params.insert("offset".into(), v);
    }
    if b.byte() & 0x80 != 0 {
        params.insert("db".into(), json!("x"));
    }
    Value::Object(params)
}

/// `auth`'s params.
fn auth_params(b: &mut Bytes<'_>) -> Value {
    let user = b.choose(&["root", "guest", "nobody", ""]);
    let passwd = b.choose(&[PASSWORD, "wrong", ""]);
    let flags = b.byte();
    let mut params = Map::new();
    if flags & 1 == 0 {
        params.insert("user".into(), json!(user));
    }
    if flags & 2 == 0 {
        params.insert("passwd".into(), if flags & 4 == 0 { json!(passwd) } else { json!(1) });
    }
    if flags & 8 != 0 {
        params.insert("db".into(), json!("x"));
    }
    Value::Object(params)
}

/// Params for a method that takes none.
fn no_params(b: &mut Bytes<'_>) -> Value {
    match b.byte() % 6 {
        0 => Value::Null,
        1 => json!({}),
        2 => json!([]),
        3 => json!({"x": 1}),
        4 => json!([1]),
        _ => json!("s"),
    }
}

/// A value the plugin's `value` module may give for a column.
fn check_value(v: &Value, context: &str) {
    match v {
        Value::Null | Value::String(_) => {}
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                assert!(i.unsigned_abs() <= MAX_SAFE_INTEGER, "{context}: integer {i} as a number");
            } else if let Some(u) = n.as_u64() {
                panic!("{context}: integer {u} as a number");
            }
        }
        Value::Object(o) => {
            assert_eq!(o.len(), 1, "{context}: {v}");
            let s = o.get("base64").and_then(Value::as_str).expect("a blob is {\"base64\": ..}");
            assert_eq!(s.len() % 4, 0, "{context}: unpadded base64 {s:?}");
            let mut out = vec![0u8; s.len() / 4 * 3];
            assert!(base64_decode(s.as_bytes(), &mut out).is_some(), "{context}: bad base64 {s:?}");
        }
        Value::Bool(_) | Value::Array(_) => panic!("{context}: {v} is not a column value"),
    }
}

/// `exec`'s and `get`'s answer.
fn check_rows(answer: &Value, read: bool, params: &Value, method: &str) {
    let context = format!("{method} {params} -> {answer}");
    let Value::Object(o) = answer else { panic!("{context}: not an object") };
    let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
    assert_eq!(keys, ["changes", "columns", "rows"].into(), "{context}");
    let columns: Vec<&str> = o["columns"]
        .as_array()
        .expect("columns is an array")
        .iter()
        .map(|c| c.as_str().expect("a column name is a string"))
        .collect();
    let distinct: BTreeSet<&str> = columns.iter().copied().collect();
    assert_eq!(distinct.len(), columns.len(), "{context}: repeated column names");
    let rows = o["rows"].as_array().expect("rows is an array");
    assert!(rows.len() <= ROWS, "{context}: {} rows, more than rows={ROWS}", rows.len());
    if let Some(limit) = params.get("limit").and_then(Value::as_u64) {
        assert!(rows.len() as u64 <= limit, "{context}: more rows than the limit");
    }
    for row in rows {
        let row = row.as_object().expect("a row is an object");
        let keys: BTreeSet<&str> = row.keys().map(String::as_str).collect();
        assert_eq!(keys, distinct, "{context}: a row's keys are not the columns");
        for v in row.values() {
            check_value(v, &context);
        }
        if let Some(Value::Object(conditions)) = params.get("where") {
            for (key, want) in conditions {
                if want.is_null() {
                    let column = columns.iter().find(|c| c.eq_ignore_ascii_case(key)).unwrap();
                    assert!(row[*column].is_null(), "{context}: {key} IS NULL matched a value");
                }
            }
        }
    }
    let changes = o["changes"].as_u64().expect("changes is a count");
    if read {
        assert_eq!(changes, 0, "{context}: a read changed rows");
    }
    let size = serde_json::to_string(answer).unwrap().len();
    assert!(size <= BYTES, "{context}: {size} bytes, more than bytes={BYTES}");
}

/// The codes each method may answer with.
fn allowed(method: &str, may_write: bool) -> &'static [i32] {
    match method {
        "exec" if may_write => {
            &[INVALID_PARAMS, SQL_ERROR, FORBIDDEN, BUDGET, TOO_MANY_ROWS, TOO_LARGE]
        }
        "exec" => &[INVALID_PARAMS, DENIED, SQL_ERROR, FORBIDDEN, BUDGET, TOO_MANY_ROWS, TOO_LARGE],
        "get" => &[INVALID_PARAMS, BUDGET, TOO_MANY_ROWS, TOO_LARGE],
        "list" | "whoami" => &[INVALID_PARAMS],
        "auth" => &[INVALID_PARAMS, AUTH_FAILED],
        _ => &[METHOD_NOT_FOUND],
    }
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        if w.dirty {
            w.reset();
        }
        let cwd = std::env::current_dir().unwrap();
        let mut identities: Vec<Identity> = (0..WHO.len()).map(Identity::of).collect();
        let mut sessions: Vec<Session> = WHO
            .iter()
            .map(|&(p, context)| w.plugins.as_ref().unwrap()[p].open(context).unwrap())
            .collect();
        // A statement or schema that says FAIL may keep what it did before an error.
        let mut fail_named = false;
        let mut b = Bytes(data);
        for _ in 0..4 {
            if b.0.is_empty() {
                break;
            }
            let head = b.byte();
            let len = usize::from(b.byte()) | usize::from(b.byte()) << 8;
            let mut p = Bytes(b.take(len));
            let who = usize::from(head >> 3 & 3);
            let plugin = WHO[who].0;
            let method = match head & 7 {
                0 | 6 => "exec",
                1 | 7 => "get",
                2 => "list",
                3 => "whoami",
                4 => "auth",
                _ => "drop",
            };
            let params = match head >> 5 & 3 {
                0 => serde_json::from_slice(p.0)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(p.0).into_owned())),
                form => match method {
                    "exec" => exec_params(&mut p, form == 2),
                    "get" => get_params(&mut p),
                    "auth" => auth_params(&mut p),
                    _ => no_params(&mut p),
                },
            };
            let may_write = identities[who].may_write(plugin);
            let writes = may_write && method == "exec";
            if writes {
                w.dirty = true;
                fail_named |= params.to_string().to_ascii_lowercase().contains("fail");
            }
            let before = std::fs::read(&w.db).unwrap();
            // In the database's directory, so that a file a relative name would make lands
            // where it is looked for.
            std::env::set_current_dir(&w.dir).unwrap();
            let result = w.plugins.as_ref().unwrap()[plugin].call(&mut sessions[who], method, &params);
            std::env::set_current_dir(&cwd).unwrap();
            let context = format!("{method} by {:?} {params} -> {result:?}", WHO[who]);

            // Nothing beside the database.
            assert_eq!(entries(&w.dir), w.dir_entries, "{context}: files beside the database");
            let same = std::fs::read(&w.db).unwrap() == before;
            if !writes || (result.is_err() && !fail_named) {
                assert!(same, "{context}: the database file changed");
            }

            match (&result, method) {
                (Ok(answer), "exec" | "get") => check_rows(answer, !writes, &params, method),
                (Ok(answer), "list") => assert_eq!(*answer, w.tables(), "{context}"),
                (Ok(answer), "whoami") => {
                    let id = &identities[who];
                    let want = json!({"user": id.user, "groups": id.groups, "write": id.may_write(plugin)});
                    assert_eq!(*answer, want, "{context}");
                }
                (Ok(answer), "auth") => {
                    let user = params["user"].as_str().unwrap();
                    let (_, group) = USERS.iter().find(|(u, _)| *u == user).expect("a user that exists");
                    assert_eq!(params["passwd"], json!(PASSWORD), "{context}: a wrong password");
                    identities[who] = Identity { user: Some(user.into()), groups: vec![(*group).into()] };
                    let id = &identities[who];
                    let want = json!({"user": id.user, "groups": id.groups, "write": id.may_write(plugin)});
                    assert_eq!(*answer, want, "{context}");
                }
                (Ok(_), _) => panic!("{context}: an answer to an unknown method"),
                (Err(e), _) => {
                    assert!(allowed(method, may_write).contains(&e.code), "{context}: code {}", e.code);
                    assert!(!e.message.is_empty(), "{context}");
                    if method == "auth" {
                        let right = params.as_object().is_some_and(|o| {
                            o.len() == 2
                                && o.get("passwd") == Some(&json!(PASSWORD))
                                && USERS.iter().any(|(u, _)| o.get("user") == Some(&json!(u)))
                        });
                        assert!(!right, "{context}: the right password refused");
                    }
                }
            }
            if head & 0x80 != 0 {
                break;
            }
        }
    });
});
