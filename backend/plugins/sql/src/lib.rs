//! `libwsgate_rpc_sql.so`: SQL on one SQLite database, for
//! `websocket_jsonrpc -L ... -C DBFILE[,option...]`, safe to leave enabled on a router: read-only
//! unless the configuration names a group that may write, and every statement bounded in
//! time, rows and answer size.
//!
//! # Methods
//!
//! * `exec {query, params?}`: runs one SQL statement. `params` binds its parameters: an array
//!   for `?` and `?NNN` (in order, one value per parameter), or an object for `:name`, `@name`
//!   and `$name` (the key with or without the prefix). Every parameter must get a value and
//!   every value a parameter. Values are bound, never spliced into the SQL text.
//! * `list {}`: the tables and views, `[{"name": .., "type": "table" | "view"}, ...]`.
//! * `get {table, where?, limit?, offset?}`: the rows of a table or view. `table` must be
//!   one `list` returns and each key of `where` one of its columns (they are checked against
//!   the schema and quoted, never bound); `where`'s values are bound (`null` matches NULL);
//!   `limit` defaults to, and may not exceed, the row cap.
//! * `auth {user, passwd}` (with `users=`): logs this connection in with the user database
//!   of the auth plugin (`libwsgate_rpc_auth.so`); the user's group then counts for `write=`.
//! * `whoami {}`: `{"user": .. | null, "groups": [..], "write": bool}`.
//!
//! `exec` and `get` answer `{"columns": [..], "rows": [{column: value, ...}, ...],
//! "changes": n}`: `columns` in the statement's order (a repeated name gets `:2`, `:3`...,
//! as in the row objects), `changes` the rows a write changed (0 for a read). Values are
//! mapped as [`value`] says: integers beyond ±(2^53 − 1) as strings, blobs as
//! `{"base64": ".."}`.
//!
//! # Errors (JSON-RPC error codes, stable)
//!
//! | code | meaning |
//! |---|---|
//! | -32602 | bad params: a missing query, a parameter without a value, an unknown table or column, more than one statement, a `db` member |
//! | -32601 | no such method |
//! | -32001 | authentication failed (`auth`) |
//! | -32003 | this connection may not write (no `write=`, or not a member of its group) |
//! | -32020 | SQLite refused the statement (syntax, no such table, constraint...): its message |
//! | -32021 | a statement never allowed: ATTACH, DETACH, VACUUM, transactions, pragmas other than the read-only ones, load_extension |
//! | -32022 | the statement ran out of its budget: `steps=`, `ms=` or `heap=` |
//! | -32023 | more rows than `rows=` |
//! | -32024 | an answer larger than `bytes=` |
//! | -32010 | the database failed: busy, locked, I/O error, corrupt |
//!
//! # Configuration
//!
//! `-C DBFILE[,write=GROUP][,gateway][,users=FILE][,rows=N][,bytes=N][,steps=N][,ms=N][,heap=N]`
//!
//! * `DBFILE`: an existing SQLite database, the only one this plugin opens (no client chooses
//!   a file). Without `write=` it is opened read-only, with `query_only` on.
//! * `write=GROUP`: connections whose identity is in GROUP may write. The identity comes from
//!   the gateway (`gateway`) or from `auth` (`users=`); one of them is needed.
//! * `gateway`: believe the connection context's `REMOTE_USER` and `REMOTE_GROUPS` (comma
//!   separated), which the gateway sends (`--context`) for a client it authenticated. Only the
//!   gateway must be able to connect to the server's socket.
//! * `users=FILE`: the auth plugin's user database, for `auth`.
//! * `rows=N` (default 1000, 1 to 100000), `bytes=N` (the largest answer, default and at most
//!   65536: `websocket_jsonrpc`'s result buffer), `steps=N` (virtual-machine instructions per
//!   statement, default 10000000), `ms=N` (milliseconds per statement, default 1000, at most
//!   60000), `heap=N` (SQLite's memory, bytes, default 8 MiB, 1 MiB to 1 GiB).
//!
//! Each call blocks the server, as every plugin call does: the budget is what bounds it.
//!
//! # What is never allowed
//!
//! The authorizer checks every action of a statement as it is prepared: no ATTACH or DETACH
//! (the limit of attached databases is 0 as well; VACUUM INTO attaches its target, so it is
//! refused with them), no BEGIN/COMMIT/SAVEPOINT (the connection is shared by all clients),
//! only the read-only pragmas, no load_extension (the bundled SQLite is built without it). A
//! statement that writes is refused unless the connection may write, and SQLite's own
//! `query_only` and `sqlite3_stmt_readonly` check that again. The database runs in defensive
//! mode with an untrusted schema.
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, ErrorCode, OpenFlags, Statement};
use serde_json::{json, Map, Value};
use wsgate::auth::users::UserDb;
use wsgate_rpc_plugin::{export_plugin, str_param, Plugin, RpcError};

mod guard;
pub mod value;

use guard::{Exhausted, Guard, Refusal, TICK_OPS};

/// `auth` failed.
pub const AUTH_FAILED: i32 = -32001;
/// The connection may not write.
pub const DENIED: i32 = -32003;
/// SQLite refused the statement.
pub const SQL_ERROR: i32 = -32020;
/// A statement never allowed.
pub const FORBIDDEN: i32 = -32021;
/// The statement's budget ran out.
pub const BUDGET: i32 = -32022;
/// More rows than the cap.
pub const TOO_MANY_ROWS: i32 = -32023;
/// An answer larger than the cap.
pub const TOO_LARGE: i32 = -32024;
/// The database failed.
pub const DB_ERROR: i32 = -32010;

/// `websocket_jsonrpc`'s result buffer: no answer can be larger.
pub const MAX_ANSWER: usize = 64 * 1024;
/// Longest SQL text.
const MAX_SQL: i32 = 64 * 1024;
/// Longest string or blob SQLite makes (zeroblob, replace, printf...).
const MAX_VALUE: i32 = 1 << 20;
/// Longest wait for a lock another process holds, in milliseconds (the wait blocks the server).
const BUSY_MS: u64 = 100;

/// The limits and rights `-C` sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The database file.
    pub db: PathBuf,
    /// The group that may write.
    pub write: Option<String>,
    /// Believe the gateway's REMOTE_USER and REMOTE_GROUPS.
    pub gateway: bool,
    /// The user database of `auth`.
    pub users: Option<PathBuf>,
    /// Most rows in an answer.
    pub rows: usize,
    /// Largest answer, bytes of JSON.
    pub bytes: usize,
    /// Virtual-machine instructions per statement.
    pub steps: u64,
    /// Milliseconds per statement.
    pub ms: u64,
    /// SQLite's heap limit, bytes.
    pub heap: u64,
}

impl Config {
    /// Parses `-C`.
    ///
    /// # Errors
    /// The option that is wrong, and why.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',');
        let db = parts.next().unwrap_or_default();
        if db.is_empty() {
            return Err("-C must name the database file: DBFILE[,option...]".into());
        }
        let mut c = Self {
            db: PathBuf::from(db),
            write: None,
            gateway: false,
            users: None,
            rows: 1000,
            bytes: MAX_ANSWER,
            steps: 10_000_000,
            ms: 1000,
            heap: 8 << 20,
        };
        for opt in parts {
            let (name, value) = opt.split_once('=').unwrap_or((opt, ""));
            let number = |lo: u64, hi: u64| {
                value.parse::<u64>().ok().filter(|n| (lo..=hi).contains(n)).ok_or_else(|| {
                    format!("option {opt:?}: {name}= takes a number from {lo} to {hi}")
                })
            };
            match name {
                "write" if !value.is_empty() => c.write = Some(value.to_owned()),
                "gateway" if opt == "gateway" => c.gateway = true,
                "users" if !value.is_empty() => c.users = Some(PathBuf::from(value)),
                "rows" => c.rows = usize::try_from(number(1, 100_000)?).unwrap_or(1000),
                "bytes" => {
                    let max = u64::try_from(MAX_ANSWER).unwrap_or(u64::MAX);
                    c.bytes = usize::try_from(number(256, max)?).unwrap_or(MAX_ANSWER);
                }
                "steps" => c.steps = number(TICK_OPS, 10_000_000_000)?,
                "ms" => c.ms = number(1, 60_000)?,
                "heap" => c.heap = number(1 << 20, 1 << 30)?,
                _ => {
                    return Err(format!(
                        "bad option {opt:?} (write=GROUP, gateway, users=FILE, rows=N, bytes=N, \
                         steps=N, ms=N, heap=N)"
                    ))
                }
            }
        }
        if c.write.is_some() && !c.gateway && c.users.is_none() {
            return Err("write=GROUP needs gateway or users=FILE: without an identity no \
                        connection could be in the group"
                .into());
        }
        Ok(c)
    }
}

/// The plugin: the database, its guard, and the user database of `auth`.
#[derive(Debug)]
pub struct Sql {
    config: Config,
    /// Before `guard`, so that it is closed first: SQLite keeps a pointer to the guard.
    db: Connection,
    guard: Rc<Guard>,
    users: Option<RefCell<UserDb>>,
    /// The value `query_only` has now.
    query_only: Cell<bool>,
    /// The schema version whose names were checked.
    schema_checked: Cell<Option<i64>>,
}

/// A connection's identity.
#[derive(Debug, Default)]
pub struct Session {
    user: Option<String>,
    groups: Vec<String>,
}

impl Plugin for Sql {
    type Conn = Session;

    fn init(config: &str) -> Result<Self, String> {
        let config = Config::parse(config).map_err(|e| format!("sql: {e}"))?;
        Self::open(config).map_err(|e| format!("sql: {e}"))
    }

    fn open(&self, context: &str) -> Option<Session> {
        if !self.config.gateway {
            return Some(Session::default());
        }
        let field =
            |name: &str| context.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('='));
        let user = field("REMOTE_USER").filter(|u| !u.is_empty());
        let groups = match (user, field("REMOTE_GROUPS")) {
            (Some(_), Some(g)) => {
                g.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };
        Some(Session { user: user.map(str::to_owned), groups })
    }

    fn call(&self, session: &mut Session, method: &str, params: &Value) -> Result<Value, RpcError> {
        if matches!(method, "exec" | "list" | "get") {
            self.check_schema()?;
        }
        match method {
            "exec" => self.exec(session, params),
            "list" => {
                no_params(params)?;
                self.list()
            }
            "get" => self.get(params),
            "auth" => self.auth(session, params),
            "whoami" => {
                no_params(params)?;
                Ok(json!({
                    "user": session.user, "groups": session.groups, "write": self.may_write(session)
                }))
            }
            _ => Err(RpcError::method_not_found(method)),
        }
    }
}

export_plugin!(Sql);

/// Params that must be empty: `null`, `[]` or `{}`.
fn no_params(params: &Value) -> Result<(), RpcError> {
    match params {
        Value::Null => Ok(()),
        Value::Array(a) if a.is_empty() => Ok(()),
        Value::Object(o) if o.is_empty() => Ok(()),
        _ => Err(RpcError::invalid_params("this method takes no params")),
    }
}

/// Refuses members of `params` other than `known`.
fn only_members(params: &Value, known: &[&str]) -> Result<(), RpcError> {
    let Value::Object(map) = params else {
        return Err(RpcError::invalid_params("params must be an object"));
    };
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) if k == "db" => {
            Err(RpcError::invalid_params("no \"db\": this plugin serves one database, set by -C"))
        }
        Some(k) => Err(RpcError::invalid_params(format!("unknown member {k:?}"))),
        None => Ok(()),
    }
}

/// An identifier quoted for SQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The parameters of one statement.
enum Binds<'a> {
    None,
    List(&'a [Value]),
    Named(&'a Map<String, Value>),
}

impl Sql {
    /// Opens the database and sets its limits.
    ///
    /// # Errors
    /// What SQLite or the user database said.
    pub fn open(config: Config) -> Result<Self, String> {
        let mode = if config.write.is_some() {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let path = config.db.display().to_string();
        let why = |e: rusqlite::Error| format!("{path}: {e}");
        // No CREATE: the database must exist. No URI: the path is a path.
        let db = Connection::open_with_flags(&config.db, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(why)?;
        db.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0).map_err(why)?;
        db.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE).map_err(why)?;
        db.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL).map_err(why)?;
        db.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true).map_err(why)?;
        db.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false).map_err(why)?;
        db.busy_timeout(Duration::from_millis(BUSY_MS.min(config.ms))).map_err(why)?;
        db.pragma_update(None, "hard_heap_limit", i64::try_from(config.heap).unwrap_or(i64::MAX))
            .map_err(why)?;
        db.pragma_update(None, "query_only", true).map_err(why)?;
        let guard = Guard::new();
        guard::install(&db, &guard)?;
        let users = match &config.users {
            Some(p) => Some(RefCell::new(UserDb::open(p)?)),
            None => None,
        };
        let sql = Self {
            config,
            db,
            guard,
            users,
            query_only: Cell::new(true),
            schema_checked: Cell::new(None),
        };
        sql.check_schema().map_err(|e| format!("{path}: {}", e.message))?;
        Ok(sql)
    }

    fn may_write(&self, session: &Session) -> bool {
        self.config.write.as_ref().is_some_and(|g| session.groups.contains(g))
    }

    /// Runs `f` with the authorizer allowing everything: the plugin's own statements.
    fn internal<T>(&self, f: impl FnOnce() -> rusqlite::Result<T>) -> Result<T, RpcError> {
        self.guard.set_internal(true);
        self.guard.arm(self.config.steps, self.config.ms);
        let out = f();
        self.guard.set_internal(false);
        out.map_err(|e| self.error(e))
    }

    /// Refuses a schema with a name that is not UTF-8 (a file another program wrote): such a
    /// name cannot be a JSON key, and rusqlite panics on it as a column name. Checked again
    /// whenever the schema changes; at start, a file that is not a database fails here.
    fn check_schema(&self) -> Result<(), RpcError> {
        let version = self
            .internal(|| self.db.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)))?;
        if self.schema_checked.get() == Some(version) {
            return Ok(());
        }
        let utf8 = self.internal(|| {
            let mut stmt = self.db.prepare("SELECT name, tbl_name, sql FROM sqlite_schema")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                for i in 0..3 {
                    if let ValueRef::Text(t) = row.get_ref(i)? {
                        if std::str::from_utf8(t).is_err() {
                            return Ok(false);
                        }
                    }
                }
            }
            Ok(true)
        })?;
        if !utf8 {
            return Err(RpcError::new(DB_ERROR, "the schema holds a name that is not UTF-8"));
        }
        self.schema_checked.set(Some(version));
        Ok(())
    }

    /// `query_only` as this connection's rights say.
    fn set_query_only(&self, on: bool) -> Result<(), RpcError> {
        if self.query_only.get() != on {
            self.internal(|| self.db.pragma_update(None, "query_only", on))?;
            self.query_only.set(on);
        }
        Ok(())
    }

    fn exec(&self, session: &Session, params: &Value) -> Result<Value, RpcError> {
        only_members(params, &["query", "params"])?;
        let query = str_param(params, "query")?;
        let binds = match params.get("params") {
            None | Some(Value::Null) => Binds::None,
            Some(Value::Array(list)) => Binds::List(list),
            Some(Value::Object(map)) => Binds::Named(map),
            Some(_) => {
                return Err(RpcError::invalid_params("params must be an array or an object"))
            }
        };
        self.run(query, &binds, self.may_write(session))
    }

    fn list(&self) -> Result<Value, RpcError> {
        let rows = self.internal(|| {
            let mut stmt = self.db.prepare(
                "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(json!({ "name": r.get::<_, String>(0)?, "type": r.get::<_, String>(1)? }))
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        Ok(Value::Array(rows))
    }

    fn get(&self, params: &Value) -> Result<Value, RpcError> {
        only_members(params, &["table", "where", "limit", "offset"])?;
        let name = str_param(params, "table")?;
        // The schema's spelling of the name (SQLite's names ignore ASCII case).
        let table: Option<String> = self.internal(|| {
            let mut stmt = self.db.prepare(
                "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name = ?1 COLLATE NOCASE",
            )?;
            let mut rows = stmt.query([name])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })?;
        let table =
            table.ok_or_else(|| RpcError::invalid_params(format!("no table or view {name:?}")))?;
        let columns: Vec<String> = self.internal(|| {
            let mut stmt = self.db.prepare("SELECT name FROM pragma_table_xinfo(?1)")?;
            let names = stmt.query_map([&table], |r| r.get(0))?;
            names.collect()
        })?;
        let mut sql = format!("SELECT * FROM {}", quote(&table));
        let mut binds = Vec::new();
        match params.get("where") {
            None | Some(Value::Null) => {}
            Some(Value::Object(conditions)) => {
                for (i, (key, value)) in conditions.iter().enumerate() {
                    let column =
                        columns.iter().find(|c| c.eq_ignore_ascii_case(key)).ok_or_else(|| {
                            RpcError::invalid_params(format!("{table} has no column {key:?}"))
                        })?;
                    sql.push_str(if i == 0 { " WHERE " } else { " AND " });
                    sql.push_str(&quote(column));
                    if value.is_null() {
                        sql.push_str(" IS NULL");
                    } else {
                        sql.push_str(" = ?");
                        binds.push(value.clone());
                    }
                }
            }
            Some(_) => {
                return Err(RpcError::invalid_params("where must be an object {column: value}"))
            }
        }
        let cap = u64::try_from(self.config.rows).unwrap_or(u64::MAX);
        let limit = match params.get("limit") {
            None | Some(Value::Null) => cap + 1,
            Some(v) => v.as_u64().filter(|n| *n <= cap).ok_or_else(|| {
                RpcError::invalid_params(format!("limit must be an integer from 0 to {cap}"))
            })?,
        };
        let offset = match params.get("offset") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                RpcError::invalid_params("offset must be an integer from 0 to 2^63 - 1")
            })?,
        };
        sql.push_str(" LIMIT ? OFFSET ?");
        binds.push(json!(limit));
        binds.push(json!(offset));
        self.run(&sql, &Binds::List(&binds), false)
    }

    fn auth(&self, session: &mut Session, params: &Value) -> Result<Value, RpcError> {
        let Some(users) = &self.users else {
            return Err(RpcError::method_not_found("auth"));
        };
        only_members(params, &["user", "passwd"])?;
        let name = str_param(params, "user")?;
        let password = str_param(params, "passwd")?;
        let mut users = users.try_borrow_mut().map_err(|_| RpcError::new(DB_ERROR, "busy"))?;
        // A bad new version of the file leaves the last good one in use.
        let _ = users.refresh();
        let user = users
            .verify(name, password.as_bytes())
            .ok_or_else(|| RpcError::new(AUTH_FAILED, "authentication failed"))?;
        session.user = Some(user.name.clone());
        session.groups = vec![user.group.clone()];
        Ok(json!({ "user": user.name, "groups": session.groups, "write": self.may_write(session) }))
    }

    /// Prepares, binds and runs one statement for a connection that may write or not.
    ///
    /// A statement that writes and returns rows (RETURNING) runs in a transaction of its
    /// own, committed only once its answer is made: SQLite makes all the changes before it
    /// hands out the first row, so an answer refused by the caps (more rows than `rows=`, a
    /// larger one than `bytes=`) would otherwise leave the change made and the client told
    /// it failed. Other statements are their own transaction, as SQLite runs them (VACUUM,
    /// refused when it attaches its target, cannot run inside one).
    fn run(&self, sql: &str, binds: &Binds<'_>, writer: bool) -> Result<Value, RpcError> {
        self.set_query_only(!writer)?;
        self.guard.set_writer(writer);
        let mut stmt = self.prepare_one(sql)?;
        if !writer && !stmt.readonly() {
            return Err(self.denied());
        }
        bind(&mut stmt, binds)?;
        if stmt.readonly() || stmt.column_count() == 0 {
            return self.answer(&mut stmt);
        }
        self.internal(|| self.db.execute_batch("BEGIN"))?;
        let out = self
            .answer(&mut stmt)
            .and_then(|answer| self.internal(|| self.db.execute_batch("COMMIT")).map(|()| answer));
        if out.is_err() && !self.db.is_autocommit() {
            // Some errors (an interrupt, ON CONFLICT ROLLBACK) have ended the transaction
            // already; the others end it here.
            let _ = self.internal(|| self.db.execute_batch("ROLLBACK"));
        }
        out
    }

    /// Runs a bound statement to its end: `{"columns", "rows", "changes"}` within the caps.
    fn answer(&self, stmt: &mut Statement<'_>) -> Result<Value, RpcError> {
        let columns = column_names(stmt);
        self.guard.arm(self.config.steps, self.config.ms);
        let mut out = Vec::new();
        // The answer's JSON: `{"columns":[..],"rows":[` and `],"changes":N}`, then each row
        // and its comma.
        let mut size = serde_json::to_string(&columns).map_or(0, |s| s.len()) + 40;
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            if out.len() == self.config.rows {
                return Err(RpcError::new(
                    TOO_MANY_ROWS,
                    format!(
                        "more than {} rows (rows=): narrow the query or page it",
                        self.config.rows
                    ),
                ));
            }
            let mut obj = Map::new();
            for (i, name) in columns.iter().enumerate() {
                let v = row.get_ref(i).map_err(|e| self.error(e))?;
                obj.insert(name.clone(), value::to_json(v));
            }
            let obj = Value::Object(obj);
            size += serde_json::to_string(&obj).map_or(0, |s| s.len()) + 1;
            if size > self.config.bytes {
                return Err(self.too_large());
            }
            out.push(obj);
        }
        drop(rows);
        let changes = if stmt.readonly() { 0 } else { self.db.changes() };
        let answer = json!({ "columns": columns, "rows": out, "changes": changes });
        if serde_json::to_string(&answer).map_or(usize::MAX, |s| s.len()) > self.config.bytes {
            return Err(self.too_large());
        }
        Ok(answer)
    }

    /// Prepares the one statement of `sql`. What follows it must be nothing (comments,
    /// white space): more is refused before the first statement runs, whatever the rest says
    /// (so a refusal of the second does not stand for the first).
    fn prepare_one<'a>(&'a self, sql: &str) -> Result<Statement<'a>, RpcError> {
        let one = || RpcError::invalid_params("one statement per call");
        // SQLite reads the text up to a NUL: what follows one would go unseen.
        if sql.contains('\0') {
            return Err(RpcError::invalid_params("the query holds a NUL"));
        }
        let mut batch = Batch::new(&self.db, sql);
        let stmt = batch
            .next()
            .map_err(|e| self.error(e))?
            .ok_or_else(|| self.error(rusqlite::Error::Empty))?;
        match batch.next() {
            Ok(None) => Ok(stmt),
            Ok(Some(_)) | Err(_) => Err(one()),
        }
    }

    fn too_large(&self) -> RpcError {
        RpcError::new(
            TOO_LARGE,
            format!(
                "the answer is larger than {} bytes (bytes=): select fewer rows or columns",
                self.config.bytes
            ),
        )
    }

    fn denied(&self) -> RpcError {
        RpcError::new(
            DENIED,
            match &self.config.write {
                Some(g) => format!("writing needs a login in group {g:?}"),
                None => "the database is read-only".into(),
            },
        )
    }

    /// A SQLite error as the client's error.
    fn error(&self, e: rusqlite::Error) -> RpcError {
        let message = e.to_string();
        match e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::AuthorizationForStatementDenied => match self.guard.refusal() {
                    Some(Refusal::Write) => self.denied(),
                    Some(why) => RpcError::new(FORBIDDEN, why.message()),
                    None => RpcError::new(FORBIDDEN, Refusal::Other.message()),
                },
                ErrorCode::ReadOnly => self.denied(),
                ErrorCode::OperationInterrupted => RpcError::new(
                    BUDGET,
                    match self.guard.exhausted() {
                        Some(Exhausted::Time) => {
                            format!("stopped after {} ms (ms=)", self.config.ms)
                        }
                        _ => format!("stopped after {} steps (steps=)", self.config.steps),
                    },
                ),
                ErrorCode::OutOfMemory => RpcError::new(
                    BUDGET,
                    format!(
                        "stopped: it needs more than {} bytes of memory (heap=)",
                        self.config.heap
                    ),
                ),
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::NoLargeFileSupport
                | ErrorCode::PermissionDenied => RpcError::new(DB_ERROR, message),
                _ => RpcError::new(SQL_ERROR, message),
            },
            rusqlite::Error::MultipleStatement => {
                RpcError::invalid_params("one statement per call")
            }
            rusqlite::Error::Empty => RpcError::invalid_params("the query has no statement"),
            rusqlite::Error::NulError(_) => RpcError::invalid_params("the query holds a NUL"),
            _ => RpcError::new(SQL_ERROR, message),
        }
    }
}

/// The statement's column names, a repeated one made distinct with `:2`, `:3`...
fn column_names(stmt: &Statement<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(stmt.column_count());
    for name in stmt.column_names() {
        let mut unique = name.to_owned();
        let mut n = 1;
        while names.contains(&unique) {
            n += 1;
            unique = format!("{name}:{n}");
        }
        names.push(unique);
    }
    names
}

/// Binds `binds` to `stmt`'s parameters, each one exactly once.
fn bind(stmt: &mut Statement<'_>, binds: &Binds<'_>) -> Result<(), RpcError> {
    let count = stmt.parameter_count();
    match binds {
        Binds::None if count == 0 => Ok(()),
        Binds::None => Err(RpcError::invalid_params(format!(
            "the statement has {count} parameter(s) and no params were given"
        ))),
        Binds::List(values) => {
            if values.len() != count {
                return Err(RpcError::invalid_params(format!(
                    "the statement has {count} parameter(s), params has {}",
                    values.len()
                )));
            }
            for (i, v) in values.iter().enumerate() {
                let what = format!("params[{i}]");
                bind_one(stmt, i + 1, v, &what)?;
            }
            Ok(())
        }
        Binds::Named(map) => {
            let mut used = 0;
            for i in 1..=count {
                let Some(name) = stmt.parameter_name(i).map(str::to_owned) else {
                    return Err(RpcError::invalid_params(
                        "the statement has positional parameters: give params as an array",
                    ));
                };
                let bare = name.get(1..).unwrap_or_default();
                let v = map.get(&name).or_else(|| map.get(bare)).ok_or_else(|| {
                    RpcError::invalid_params(format!("no value for parameter {name}"))
                })?;
                if map.contains_key(&name) && map.contains_key(bare) {
                    return Err(RpcError::invalid_params(format!("{name} is given twice")));
                }
                used += 1;
                bind_one(stmt, i, v, &format!("params.{bare}"))?;
            }
            if used != map.len() {
                return Err(RpcError::invalid_params(
                    "params names a parameter the statement does not have (or one twice)",
                ));
            }
            Ok(())
        }
    }
}

fn bind_one(stmt: &mut Statement<'_>, i: usize, v: &Value, what: &str) -> Result<(), RpcError> {
    let v = value::to_sql(v, what)?;
    stmt.raw_bind_parameter(i, v).map_err(|e| RpcError::new(SQL_ERROR, format!("{what}: {e}")))
}

#[cfg(test)]
mod tests;
