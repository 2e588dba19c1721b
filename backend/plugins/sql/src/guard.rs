//! What a statement may do and for how long: SQLite's authorizer, called for every action a
//! statement takes while it is prepared, and its progress handler, called every
//! [`TICK_OPS`] virtual-machine instructions while it runs.
//!
//! Both are C callbacks SQLite keeps with a pointer to a [`Guard`], which the plugin shares:
//! may this statement write, how much of its budget is left. SQLite calls them on the
//! plugin's one thread, during its own calls, so plain cells do (no atomics: 32-bit MIPS has
//! no 64-bit ones).
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::rc::Rc;
use std::time::Instant;

use rusqlite::{ffi, Connection};

/// Virtual-machine instructions between two calls of the progress handler.
pub(crate) const TICK_OPS: u64 = 1000;

/// Pragmas that only describe the schema; their argument names a table or an index.
const SCHEMA_PRAGMAS: [&str; 6] =
    ["table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"];
/// Pragmas that read a setting when given no value (with one, most of them write it).
const READ_PRAGMAS: [&str; 8] = [
    "user_version",
    "application_id",
    "schema_version",
    "page_count",
    "page_size",
    "freelist_count",
    "encoding",
    "data_version",
];
/// SQL functions that reach outside the database: loading code, and the FTS3 tokenizer
/// pointer (turned off by default in SQLite, refused here whatever the build).
const FORBIDDEN_FUNCTIONS: [&str; 2] = ["load_extension", "fts3_tokenizer"];

/// Why the authorizer refused a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Refusal {
    /// It writes, and this connection may not.
    Write = 1,
    /// ATTACH or DETACH (VACUUM INTO attaches its target, so it is refused too).
    Attach,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE: every call is one statement in its own
    /// transaction, on a database connection all clients share.
    Transaction,
    /// A pragma other than the read-only ones.
    Pragma,
    /// A function of [`FORBIDDEN_FUNCTIONS`].
    Function,
    /// An action this plugin does not know.
    Other,
}

impl Refusal {
    const ALL: [Self; 6] =
        [Self::Write, Self::Attach, Self::Transaction, Self::Pragma, Self::Function, Self::Other];

    /// What the client is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Write => "this connection may not write",
            Self::Attach => "ATTACH, DETACH and VACUUM are not allowed",
            Self::Transaction => {
                "transaction statements are not allowed: each call is its own transaction"
            }
            Self::Pragma => "only the read-only pragmas are allowed",
            Self::Function => "load_extension and fts3_tokenizer are not allowed",
            Self::Other => "this statement is not allowed",
        }
    }
}

/// Why the progress handler stopped a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exhausted {
    /// It ran more than its instructions.
    Steps,
    /// It ran longer than its time.
    Time,
}

/// The state the authorizer and the progress handler share with the plugin.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The plugin's own statements (set-up, schema look-ups): everything is allowed.
    internal: Cell<bool>,
    /// The statement being prepared may write.
    writer: Cell<bool>,
    /// The last refusal, a [`Refusal`] or 0.
    refused: Cell<u8>,
    /// Progress calls left to the running statement.
    ticks: Cell<u64>,
    /// Milliseconds after `epoch` at which the running statement stops.
    deadline: Cell<u64>,
    /// 0, or 1 + the [`Exhausted`] that stopped the last statement.
    exhausted: Cell<u8>,
    epoch: Instant,
}

impl Guard {
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(Self {
            internal: Cell::new(false),
            writer: Cell::new(false),
            refused: Cell::new(0),
            ticks: Cell::new(u64::MAX),
            deadline: Cell::new(u64::MAX),
            exhausted: Cell::new(0),
            epoch: Instant::now(),
        })
    }

    /// The next statements are the plugin's own (`true`) or a client's.
    pub(crate) fn set_internal(&self, on: bool) {
        self.internal.set(on);
    }

    /// The next statements are prepared for a connection that may write or not.
    pub(crate) fn set_writer(&self, on: bool) {
        self.writer.set(on);
        self.refused.set(0);
    }

    /// Why the last statement was refused.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let r = self.refused.get();
        Refusal::ALL.into_iter().find(|x| *x as u8 == r)
    }

    /// Gives the next statement `steps` instructions and `ms` milliseconds from now.
    pub(crate) fn arm(&self, steps: u64, ms: u64) {
        self.ticks.set(steps.div_ceil(TICK_OPS));
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.deadline.set(now.saturating_add(ms));
        self.exhausted.set(0);
    }

    /// What stopped the last statement, if its budget did.
    pub(crate) fn exhausted(&self) -> Option<Exhausted> {
        match self.exhausted.get() {
            1 => Some(Exhausted::Steps),
            2 => Some(Exhausted::Time),
            _ => None,
        }
    }

    /// The progress handler: `true` stops the statement (SQLITE_INTERRUPT).
    pub(crate) fn progress(&self) -> bool {
        let left = self.ticks.get();
        if left == 0 {
            self.exhausted.set(1);
            return true;
        }
        self.ticks.set(left - 1);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now > self.deadline.get() {
            self.exhausted.set(2);
            return true;
        }
        false
    }

    /// The authorizer's verdict on one action: `code` is SQLite's action code, `a1` and `a2`
    /// its two arguments (names as bytes: a database written by another program may hold
    /// names that are not UTF-8).
    fn authorize(&self, code: c_int, a1: Option<&[u8]>, a2: Option<&[u8]>) -> c_int {
        if self.internal.get() {
            return ffi::SQLITE_OK;
        }
        match verdict(code, a1, a2, self.writer.get()) {
            None => ffi::SQLITE_OK,
            Some(why) => {
                self.refused.set(why as u8);
                ffi::SQLITE_DENY
            }
        }
    }
}

/// `None` when action `code` with arguments `a1`, `a2` is allowed, else why not.
fn verdict(code: c_int, a1: Option<&[u8]>, a2: Option<&[u8]>, writer: bool) -> Option<Refusal> {
    let listed = |name: Option<&[u8]>, list: &[&str]| {
        name.is_some_and(|n| list.iter().any(|l| l.as_bytes().eq_ignore_ascii_case(n)))
    };
    match code {
        ffi::SQLITE_SELECT | ffi::SQLITE_READ | ffi::SQLITE_RECURSIVE => None,
        // a2: the function's name.
        ffi::SQLITE_FUNCTION => listed(a2, &FORBIDDEN_FUNCTIONS).then_some(Refusal::Function),
        // a1: the pragma, a2: its argument or value.
        ffi::SQLITE_PRAGMA => {
            let allowed =
                listed(a1, &SCHEMA_PRAGMAS) || (a2.is_none() && listed(a1, &READ_PRAGMAS));
            (!allowed).then_some(Refusal::Pragma)
        }
        ffi::SQLITE_INSERT
        | ffi::SQLITE_UPDATE
        | ffi::SQLITE_DELETE
        | ffi::SQLITE_CREATE_INDEX
        | ffi::SQLITE_CREATE_TABLE
        | ffi::SQLITE_CREATE_TRIGGER
        | ffi::SQLITE_CREATE_VIEW
        | ffi::SQLITE_CREATE_TEMP_INDEX
        | ffi::SQLITE_CREATE_TEMP_TABLE
        | ffi::SQLITE_CREATE_TEMP_TRIGGER
        | ffi::SQLITE_CREATE_TEMP_VIEW
        | ffi::SQLITE_DROP_INDEX
        | ffi::SQLITE_DROP_TABLE
        | ffi::SQLITE_DROP_TRIGGER
        | ffi::SQLITE_DROP_VIEW
        | ffi::SQLITE_DROP_TEMP_INDEX
        | ffi::SQLITE_DROP_TEMP_TABLE
        | ffi::SQLITE_DROP_TEMP_TRIGGER
        | ffi::SQLITE_DROP_TEMP_VIEW
        | ffi::SQLITE_ALTER_TABLE
        | ffi::SQLITE_REINDEX
        | ffi::SQLITE_ANALYZE
        | ffi::SQLITE_CREATE_VTABLE
        | ffi::SQLITE_DROP_VTABLE => (!writer).then_some(Refusal::Write),
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => Some(Refusal::Attach),
        ffi::SQLITE_TRANSACTION | ffi::SQLITE_SAVEPOINT => Some(Refusal::Transaction),
        _ => Some(Refusal::Other),
    }
}

/// Installs `guard` as `db`'s authorizer and progress handler.
///
/// They are SQLite's own callbacks, not rusqlite's closures: rusqlite's authorizer panics on
/// a name that is not UTF-8 (which a database file may hold), and a panic aborts the server.
/// `db` must be closed before `guard` goes, since SQLite keeps a pointer to it: [`crate::Sql`]
/// declares the connection before the guard, so it is dropped first.
#[allow(unsafe_code)]
pub(crate) fn install(db: &Connection, guard: &Rc<Guard>) -> Result<(), String> {
    let arg = Rc::as_ptr(guard).cast_mut().cast::<c_void>();
    let ops = c_int::try_from(TICK_OPS).unwrap_or(c_int::MAX);
    // SAFETY: the handle is the open connection's, used here on the thread that owns it; the
    // callbacks only read through `arg`, a `Guard` that outlives the connection (above).
    let rc = unsafe {
        let handle = db.handle();
        ffi::sqlite3_progress_handler(handle, ops, Some(progress), arg);
        ffi::sqlite3_set_authorizer(handle, Some(authorizer), arg)
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(format!("the authorizer could not be installed (SQLite error {rc})"))
    }
}

/// The bytes of a C string SQLite passes, `None` for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
#[allow(unsafe_code)]
unsafe fn bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

#[allow(unsafe_code)]
unsafe extern "C" fn authorizer(
    arg: *mut c_void,
    code: c_int,
    a1: *const c_char,
    a2: *const c_char,
    _database: *const c_char,
    _trigger_or_view: *const c_char,
) -> c_int {
    // SAFETY: `arg` is the `Guard` given to `install`, alive while the connection is; SQLite
    // passes NULL or NUL-terminated strings valid during the call.
    unsafe {
        match arg.cast_const().cast::<Guard>().as_ref() {
            Some(guard) => guard.authorize(code, bytes(a1), bytes(a2)),
            None => ffi::SQLITE_DENY,
        }
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn progress(arg: *mut c_void) -> c_int {
    // SAFETY: as in `authorizer`.
    match unsafe { arg.cast_const().cast::<Guard>().as_ref() } {
        Some(guard) => c_int::from(guard.progress()),
        None => 1,
    }
}
