//! The parsed tree (settings and values, each with its position) and the parse error.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{quote, short};

/// Where a name or a value starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    /// Index into [`Document::files`].
    pub file: u16,
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

/// A value with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Where the value starts (for a concatenated string, its first part).
    pub pos: Pos,
    /// The value.
    pub kind: Kind,
}

/// The kinds of libconfig values.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `true` / `false`.
    Bool(bool),
    /// Any integer, hex or 64-bit included.
    Int(i64),
    /// A float, as written (the exponent's `e` in lower case): wsgate reads no float
    /// setting, so only its type matters.
    Float(String),
    /// A string, escapes resolved, adjacent parts joined.
    Str(String),
    /// `[ ... ]`: scalars of one kind.
    Array(Vec<Value>),
    /// `( ... )`: any values.
    List(Vec<Value>),
    /// `{ ... }`: settings, in file order.
    Group(Vec<Setting>),
}

impl Kind {
    /// "a string", "an integer (5)", ... for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Bool(b) => format!("a boolean ({b})"),
            Self::Int(i) => format!("an integer ({i})"),
            Self::Float(_) => "a float".to_owned(),
            Self::Str(s) => format!("a string ({})", quote(&short(s))),
            Self::Array(_) => "an array [...]".to_owned(),
            Self::List(_) => "a list (...)".to_owned(),
            Self::Group(_) => "a group {...}".to_owned(),
        }
    }

    /// The type name of a scalar (arrays hold one type), `None` for the others.
    pub(super) fn scalar_type(&self) -> Option<&'static str> {
        match self {
            Self::Bool(_) => Some("boolean"),
            Self::Int(_) => Some("integer"),
            Self::Float(_) => Some("float"),
            Self::Str(_) => Some("string"),
            _ => None,
        }
    }
}

impl Value {
    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    #[must_use]
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The settings, if this is a group.
    #[must_use]
    pub fn as_group(&self) -> Option<&[Setting]> {
        match &self.kind {
            Kind::Group(g) => Some(g),
            _ => None,
        }
    }

    /// The elements, if this is an array or a list.
    #[must_use]
    pub fn items(&self) -> Option<&[Value]> {
        match &self.kind {
            Kind::Array(v) | Kind::List(v) => Some(v),
            _ => None,
        }
    }
}

/// `name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// The name.
    pub name: String,
    /// Where the name starts.
    pub pos: Pos,
    /// The value.
    pub value: Value,
}

/// A parsed file with its includes.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Every file read, the top one first; [`Pos::file`] indexes this.
    pub files: Vec<PathBuf>,
    /// The top-level settings.
    pub root: Vec<Setting>,
}

impl Document {
    /// The file a position is in.
    #[must_use]
    pub fn path(&self, pos: Pos) -> &Path {
        self.files.get(usize::from(pos.file)).map_or(Path::new("?"), PathBuf::as_path)
    }
}

/// A syntax error, an unreadable file or a limit reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file where it was found.
    pub file: PathBuf,
    /// Line from 1; 0 when the file itself could not be read.
    pub line: u32,
    /// Column from 1; 0 when the file itself could not be read.
    pub col: u32,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
        }
    }
}

impl std::error::Error for ParseError {}
