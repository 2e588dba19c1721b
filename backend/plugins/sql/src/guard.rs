//! What a statement may do and for how long: SQLite's authorizer, called for every action a
//! statement takes while it is prepared, and its progress handler, called every
//! [`TICK_OPS`] virtual-machine instructions while it runs.
//!
//! Both are closures SQLite keeps, so what they read (may this statement write, how much of
//! its budget is left) is shared with the plugin through [`Guard`].
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

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
    internal: AtomicBool,
    /// The statement being prepared may write.
    writer: AtomicBool,
    /// The last refusal, a [`Refusal`] or 0.
    refused: AtomicU8,
    /// Progress calls left to the running statement.
    ticks: AtomicU64,
    /// Milliseconds after `epoch` at which the running statement stops.
    deadline: AtomicU64,
    /// 0, or 1 + the [`Exhausted`] that stopped the last statement.
    exhausted: AtomicU8,
    epoch: Instant,
}

impl Guard {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            internal: AtomicBool::new(false),
            writer: AtomicBool::new(false),
            refused: AtomicU8::new(0),
            ticks: AtomicU64::new(u64::MAX),
            deadline: AtomicU64::new(u64::MAX),
            exhausted: AtomicU8::new(0),
            epoch: Instant::now(),
        })
    }

    /// The next statements are the plugin's own (`true`) or a client's.
    pub(crate) fn set_internal(&self, on: bool) {
        self.internal.store(on, Ordering::Relaxed);
    }

    /// The next statements are prepared for a connection that may write or not.
    pub(crate) fn set_writer(&self, on: bool) {
        self.writer.store(on, Ordering::Relaxed);
        self.refused.store(0, Ordering::Relaxed);
    }

    /// Why the last statement was refused.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let r = self.refused.load(Ordering::Relaxed);
        Refusal::ALL.into_iter().find(|x| *x as u8 == r)
    }

    /// Gives the next statement `steps` instructions and `ms` milliseconds from now.
    pub(crate) fn arm(&self, steps: u64, ms: u64) {
        self.ticks.store(steps.div_ceil(TICK_OPS), Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.deadline.store(now.saturating_add(ms), Ordering::Relaxed);
        self.exhausted.store(0, Ordering::Relaxed);
    }

    /// What stopped the last statement, if its budget did.
    pub(crate) fn exhausted(&self) -> Option<Exhausted> {
        match self.exhausted.load(Ordering::Relaxed) {
            1 => Some(Exhausted::Steps),
            2 => Some(Exhausted::Time),
            _ => None,
        }
    }

    /// The progress handler: `true` stops the statement (SQLITE_INTERRUPT).
    pub(crate) fn progress(&self) -> bool {
        let left = self.ticks.load(Ordering::Relaxed);
        if left == 0 {
            self.exhausted.store(1, Ordering::Relaxed);
            return true;
        }
        self.ticks.store(left - 1, Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now > self.deadline.load(Ordering::Relaxed) {
            self.exhausted.store(2, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// The authorizer.
    pub(crate) fn authorize(&self, ctx: &AuthContext<'_>) -> Authorization {
        if self.internal.load(Ordering::Relaxed) {
            return Authorization::Allow;
        }
        let writer = self.writer.load(Ordering::Relaxed);
        match verdict(&ctx.action, writer) {
            None => Authorization::Allow,
            Some(why) => {
                self.refused.store(why as u8, Ordering::Relaxed);
                Authorization::Deny
            }
        }
    }
}

/// `None` when `action` is allowed, else why not.
fn verdict(action: &AuthAction<'_>, writer: bool) -> Option<Refusal> {
    let write = if writer { None } else { Some(Refusal::Write) };
    match action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => None,
        AuthAction::Function { function_name } => {
            let f = function_name.to_ascii_lowercase();
            FORBIDDEN_FUNCTIONS.contains(&f.as_str()).then_some(Refusal::Function)
        }
        AuthAction::Pragma { pragma_name, pragma_value } => {
            let p = pragma_name.to_ascii_lowercase();
            let allowed = SCHEMA_PRAGMAS.contains(&p.as_str())
                || (pragma_value.is_none() && READ_PRAGMAS.contains(&p.as_str()));
            (!allowed).then_some(Refusal::Pragma)
        }
        AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateTable { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropTable { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::DropTempView { .. }
        | AuthAction::AlterTable { .. }
        | AuthAction::Reindex { .. }
        | AuthAction::Analyze { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::DropVtable { .. } => write,
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Some(Refusal::Attach),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Some(Refusal::Transaction),
        _ => Some(Refusal::Other),
    }
}
