//! A reader for libconfig files (the syntax of ouistiti's configuration), keeping the position
//! of every setting name and every value.
//!
//! # Why hand-written
//!
//! The `libconfig-rs` crate, measured against this module on this tree
//! (x86_64, `--release`, opt-level s, fat LTO, stripped, one parse call on a file named at run time):
//!
//! * `libconfig-rs` 4.0.1 (nom 8, indexmap, serde) adds **45,136 bytes** to `wsgate`
//!   (453,240 → 498,376), and it cannot read ouistiti's configuration at all: its root rule is
//!   a single `name = value;` setting, so the sample `user = "www-data"; ... servers = (...);`
//!   "parses" as the string `www-data` and silently drops everything after it. It also has no
//!   comments, no hex, no `,` terminators, no optional terminators, no adjacent-string
//!   concatenation, no `\x` escapes and no `@include`. Values carry **no position**, and
//!   errors are `error Char at: <rest of the input>` with no line or column.
//! * `libconfig` 0.1.3 (nom 1, 2015) adds **94,208 bytes** and rejects the sample
//!   (`log-file` is not a name to it); its errors are `Syntax error: 0`, without position.
//! * `libconfig-sys` / `librustconfig` bind the C library: a C dependency to cross-build for
//!   MIPS, and the C API gives a line per setting but no column, and no column for errors.
//!
//! Measured the same way, this module (`parse_file` alone) adds **34,632 bytes**, includes,
//! positions and limits included, less than `libconfig-rs` while reading the whole language.
//! The ouistiti schema on top ([`crate::config_file::load`]) brings the total to 80,248 bytes,
//! and [`crate::config_file::render`] (for `--check`) to 89,192.
//!
//! # The language (libconfig 1.7, `grammar.y` and `scanner.l`)
//!
//! * A file is a list of settings `name = value` or `name : value`, each optionally followed
//!   by `;` or `,`. Names are `[A-Za-z*][-A-Za-z0-9_*]*`. A name set twice in one group is an
//!   error (as in libconfig).
//! * Values: booleans (`true` / `false`, any case), integers (`42`, `-7`, `+3`, `0x1F`, with
//!   an optional `L` / `LL` suffix; all held as `i64`), floats (`1.5`, `.5`, `2.`, `1e3`),
//!   strings (`"..."`, escapes `\n \r \t \f \\ \" \xHH`; any other backslash stays as it is;
//!   adjacent strings are concatenated), arrays `[ scalars of one type ]`, lists `( any values )`
//!   and groups `{ settings }`. Arrays and lists accept a trailing comma.
//! * Comments: `# ...`, `// ...` to the end of the line, `/* ... */`.
//! * `@include "file"` splices the file's text in place (libconfig does it in the scanner, so
//!   the included file may hold any run of settings). A relative path is relative to the
//!   directory of the including file. A file that includes itself, directly or not, is an
//!   error; so is an include chain deeper than [`MAX_INCLUDE_DEPTH`]. Unlike libconfig, the
//!   directive need not start a line.
//!
//! Stricter than libconfig: a number directly followed by a letter (`80abc`) is an error
//! (libconfig reads `80` then a setting named `abc`); strings must be UTF-8.
//!
//! # Limits
//!
//! Each file is at most [`MAX_FILE_SIZE`] bytes, all files together at most
//! [`MAX_TOTAL_SIZE`], at most [`MAX_FILES`] files are read, a document holds at most
//! [`MAX_VALUES`] values, and groups, lists and arrays nest at most [`MAX_DEPTH`] deep, so
//! the tree stays under a few megabytes. Nothing here panics on any input.
//!
//! # Errors
//!
//! [`ParseError`] displays as `file:line:col: expected X, found Y`; lines and columns count
//! from 1, columns in characters.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest file read (bytes).
pub const MAX_FILE_SIZE: usize = 256 * 1024;
/// Largest sum of all files read for one document (bytes).
pub const MAX_TOTAL_SIZE: usize = 1024 * 1024;
/// Most files read for one document (the top file and its includes).
pub const MAX_FILES: usize = 64;
/// Deepest `@include` chain (the top file is depth 1).
pub const MAX_INCLUDE_DEPTH: usize = 10;
/// Deepest nesting of groups, lists and arrays.
pub const MAX_DEPTH: usize = 32;
/// Most values in one document (about 100 bytes of memory each): a 1 MiB file of `1,1,1,...`
/// would otherwise take 50 MB, more than the smallest router has.
pub const MAX_VALUES: usize = 20_000;

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
    /// A float.
    Float(f64),
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

    fn scalar_type(&self) -> Option<&'static str> {
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

/// Reads and parses `path` and the files it includes.
///
/// # Errors
/// A [`ParseError`] for the first problem found.
pub fn parse_file(path: &Path) -> Result<Document, ParseError> {
    let text = read_limited(path).map_err(|message| ParseError {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        message,
    })?;
    parse_bytes(text, path)
}

/// Parses `text` as if read from `name` (includes are relative to its directory).
///
/// # Errors
/// A [`ParseError`] for the first problem found.
pub fn parse_str(text: &str, name: &Path) -> Result<Document, ParseError> {
    if text.len() > MAX_FILE_SIZE {
        return Err(ParseError {
            file: name.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("expected at most {MAX_FILE_SIZE} bytes, found {}", text.len()),
        });
    }
    parse_bytes(text.as_bytes().to_vec(), name)
}

fn parse_bytes(text: Vec<u8>, name: &Path) -> Result<Document, ParseError> {
    let canon = std::fs::canonicalize(name).unwrap_or_else(|_| name.to_path_buf());
    let total = text.len();
    let mut parser = Parser {
        lx: Lexer {
            stack: vec![Source::new(0, text, name, canon)],
            files: vec![name.to_path_buf()],
            total,
            peeked: None,
            eof: Pos { file: 0, line: 1, col: 1 },
            multiline: None,
        },
        depth: 0,
        values: 0,
    };
    let root = parser.settings(None)?;
    Ok(Document { files: parser.lx.files, root })
}

/// Quotes `s` as a libconfig string: `"`, `\` and control characters escaped.
#[must_use]
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// True when `s` can be written as a setting name.
#[must_use]
pub fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
        && bytes.all(is_name_byte)
        && !s.eq_ignore_ascii_case("true")
        && !s.eq_ignore_ascii_case("false")
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*')
}

fn short(s: &str) -> String {
    if s.chars().count() <= 24 {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(24).collect();
        t.push_str("...");
        t
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = Vec::new();
    file.take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() > MAX_FILE_SIZE {
        return Err(format!("expected at most {MAX_FILE_SIZE} bytes, found a larger file"));
    }
    Ok(text)
}

// ------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `=` or `:`.
    Equals(u8),
    Semi,
    Comma,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    /// A character that starts no token.
    Garbage(String),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Self::Name(n) => format!("name {}", quote(&short(n))),
            Self::Str(s) => format!("string {}", quote(&short(s))),
            Self::Int(i) => format!("integer {i}"),
            Self::Float(_) => "a float".to_owned(),
            Self::Bool(b) => format!("{b}"),
            Self::Equals(c) => format!("'{}'", char::from(*c)),
            Self::Semi => "';'".to_owned(),
            Self::Comma => "','".to_owned(),
            Self::LBrace => "'{'".to_owned(),
            Self::RBrace => "'}'".to_owned(),
            Self::LBracket => "'['".to_owned(),
            Self::RBracket => "']'".to_owned(),
            Self::LParen => "'('".to_owned(),
            Self::RParen => "')'".to_owned(),
            Self::Garbage(c) => format!("character '{c}'"),
            Self::Eof => "end of file".to_owned(),
        }
    }
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    pos: Pos,
}

#[derive(Debug)]
struct Source {
    file: u16,
    text: Vec<u8>,
    off: usize,
    line: u32,
    col: u32,
    /// Directory for relative includes.
    dir: PathBuf,
    /// Canonical path, for loop detection.
    canon: PathBuf,
}

impl Source {
    fn new(file: u16, text: Vec<u8>, path: &Path, canon: PathBuf) -> Self {
        let off = if text.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self { file, text, off, line: 1, col: 1, dir, canon }
    }

    fn pos(&self) -> Pos {
        Pos { file: self.file, line: self.line, col: self.col }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.off).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.text.get(self.off + n).copied()
    }

    fn rest(&self) -> &[u8] {
        self.text.get(self.off..).unwrap_or_default()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.off += 1;
        if b == b'\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.col = self.col.saturating_add(1);
        }
        Some(b)
    }

    /// The character at the cursor, whole (for messages), without consuming it.
    fn char_here(&self) -> String {
        let rest = self.rest();
        let len = rest.iter().skip(1).take_while(|&&b| b & 0xC0 == 0x80).count() + 1;
        let bytes = rest.get(..len).unwrap_or_default();
        let s = String::from_utf8_lossy(bytes);
        match s.chars().next() {
            Some(c) if c.is_control() => c.escape_default().to_string(),
            _ => s.into_owned(),
        }
    }

    fn consume_char(&mut self) {
        self.bump();
        while self.peek().is_some_and(|b| b & 0xC0 == 0x80) {
            self.bump();
        }
    }
}

#[derive(Debug)]
struct Lexer {
    stack: Vec<Source>,
    files: Vec<PathBuf>,
    total: usize,
    peeked: Option<Token>,
    /// Position of the end of the top file.
    eof: Pos,
    /// The last string that ran over a line end: the usual cause of a later syntax error.
    multiline: Option<Pos>,
}

impl Lexer {
    fn error(&self, pos: Pos, message: String) -> ParseError {
        ParseError {
            file: self.files.get(usize::from(pos.file)).cloned().unwrap_or_default(),
            line: pos.line,
            col: pos.col,
            message,
        }
    }

    fn peek(&mut self) -> Result<&Token, ParseError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(self.error(self.eof, "internal error: no token".to_owned())),
        }
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn lex(&mut self) -> Result<Token, ParseError> {
        loop {
            let skipped = match self.stack.last_mut() {
                None => return Ok(Token { tok: Tok::Eof, pos: self.eof }),
                Some(src) => skip_blanks(src),
            };
            if let Err((pos, message)) = skipped {
                return Err(self.error(pos, message));
            }
            let Some(src) = self.stack.last_mut() else { continue };
            let pos = src.pos();
            let Some(b) = src.peek() else {
                if self.stack.len() > 1 {
                    self.stack.pop();
                    continue;
                }
                self.eof = pos;
                return Ok(Token { tok: Tok::Eof, pos });
            };
            let single = match b {
                b'=' | b':' => Some(Tok::Equals(b)),
                b';' => Some(Tok::Semi),
                b',' => Some(Tok::Comma),
                b'{' => Some(Tok::LBrace),
                b'}' => Some(Tok::RBrace),
                b'[' => Some(Tok::LBracket),
                b']' => Some(Tok::RBracket),
                b'(' => Some(Tok::LParen),
                b')' => Some(Tok::RParen),
                _ => None,
            };
            if let Some(tok) = single {
                src.bump();
                return Ok(Token { tok, pos });
            }
            let tok = match b {
                b'"' => {
                    let s = string(src);
                    if src.line != pos.line {
                        self.multiline = Some(pos);
                    }
                    s.map(Tok::Str)
                }
                b'@' if src.rest().starts_with(b"@include") => {
                    self.include()?;
                    continue;
                }
                b'0'..=b'9' | b'+' | b'-' | b'.' => number(src),
                b if b.is_ascii_alphabetic() || b == b'*' => Ok(name(src)),
                _ => {
                    let c = src.char_here();
                    src.consume_char();
                    Ok(Tok::Garbage(c))
                }
            };
            return match tok {
                Ok(tok) => Ok(Token { tok, pos }),
                Err((pos, message)) => Err(self.error(pos, message)),
            };
        }
    }

    /// At `@include`: reads the path and pushes the file.
    fn include(&mut self) -> Result<(), ParseError> {
        let (at, file, dir) = {
            let Some(src) = self.stack.last_mut() else { return Ok(()) };
            let at = src.pos();
            for _ in 0..b"@include".len() {
                src.bump();
            }
            let mut spaced = false;
            while matches!(src.peek(), Some(b' ' | b'\t')) {
                src.bump();
                spaced = true;
            }
            if !spaced || src.peek() != Some(b'"') {
                let found = match src.peek() {
                    None => "end of file".to_owned(),
                    Some(_) => format!("character '{}'", src.char_here()),
                };
                let pos = src.pos();
                return Err(self.error(
                    pos,
                    format!("expected a quoted file name after @include, found {found}"),
                ));
            }
            let file = string(src);
            (at, file, src.dir.clone())
        };
        let file = file.map_err(|(pos, message)| self.error(pos, message))?;
        let path = dir.join(&file);
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.error(
                at,
                format!("expected includes nested at most {MAX_INCLUDE_DEPTH} deep, found a deeper one at {}", quote(&file)),
            ));
        }
        if self.files.len() >= MAX_FILES {
            return Err(
                self.error(at, format!("expected at most {MAX_FILES} files, found more includes"))
            );
        }
        let canon = std::fs::canonicalize(&path)
            .map_err(|e| self.error(at, format!("cannot include {}: {e}", path.display())))?;
        if self.stack.iter().any(|s| s.canon == canon) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .map(|s| {
                    self.files
                        .get(usize::from(s.file))
                        .map_or_else(String::new, |p| p.display().to_string())
                })
                .chain(std::iter::once(path.display().to_string()))
                .collect();
            return Err(self.error(at, format!("include loop: {}", chain.join(" -> "))));
        }
        let text = read_limited(&path)
            .map_err(|m| self.error(at, format!("cannot include {}: {m}", path.display())))?;
        self.total += text.len();
        if self.total > MAX_TOTAL_SIZE {
            return Err(self.error(
                at,
                format!(
                    "expected at most {MAX_TOTAL_SIZE} bytes in all files, found more at {}",
                    path.display()
                ),
            ));
        }
        let index = u16::try_from(self.files.len()).unwrap_or(u16::MAX);
        self.files.push(path.clone());
        self.stack.push(Source::new(index, text, &path, canon));
        Ok(())
    }
}

type LexResult<T> = Result<T, (Pos, String)>;

/// Skips white space and comments.
fn skip_blanks(src: &mut Source) -> LexResult<()> {
    loop {
        match (src.peek(), src.peek_at(1)) {
            (Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'), _) => {
                src.bump();
            }
            (Some(b'#'), _) | (Some(b'/'), Some(b'/')) => {
                while src.peek().is_some_and(|b| b != b'\n') {
                    src.bump();
                }
            }
            (Some(b'/'), Some(b'*')) => {
                let start = src.pos();
                src.bump();
                src.bump();
                loop {
                    match (src.peek(), src.peek_at(1)) {
                        (Some(b'*'), Some(b'/')) => {
                            src.bump();
                            src.bump();
                            break;
                        }
                        (Some(_), _) => {
                            src.bump();
                        }
                        (None, _) => {
                            return Err((
                                start,
                                "expected '*/' to close this comment, found end of file".to_owned(),
                            ))
                        }
                    }
                }
            }
            _ => return Ok(()),
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// At `"`: one string literal.
fn string(src: &mut Source) -> LexResult<String> {
    let start = src.pos();
    src.bump();
    let mut out = Vec::new();
    loop {
        let Some(b) = src.bump() else {
            return Err((
                start,
                "expected '\"' to close this string, found end of file".to_owned(),
            ));
        };
        match b {
            b'"' => break,
            b'\\' => {
                let esc = match src.peek() {
                    Some(b'n') => Some(b'\n'),
                    Some(b'r') => Some(b'\r'),
                    Some(b't') => Some(b'\t'),
                    Some(b'f') => Some(b'\x0c'),
                    Some(b'\\') => Some(b'\\'),
                    Some(b'"') => Some(b'"'),
                    Some(b'x' | b'X') => {
                        match (src.peek_at(1).and_then(hex_val), src.peek_at(2).and_then(hex_val)) {
                            (Some(h), Some(l)) => {
                                src.bump();
                                src.bump();
                                Some(h * 16 + l)
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                match esc {
                    Some(c) => {
                        src.bump();
                        out.push(c);
                    }
                    // libconfig keeps a lone backslash as it is.
                    None => out.push(b'\\'),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out)
        .map_err(|_| (start, "expected UTF-8 text in this string, found invalid bytes".to_owned()))
}

/// At a letter or `*`: a name or a boolean.
fn name(src: &mut Source) -> Tok {
    let mut s = String::new();
    while let Some(b) = src.peek().filter(|&b| is_name_byte(b)) {
        s.push(char::from(b));
        src.bump();
    }
    if s.eq_ignore_ascii_case("true") {
        Tok::Bool(true)
    } else if s.eq_ignore_ascii_case("false") {
        Tok::Bool(false)
    } else {
        Tok::Name(s)
    }
}

/// At a digit, sign or dot: an integer or a float.
fn number(src: &mut Source) -> LexResult<Tok> {
    let start = src.pos();
    let mut text = String::new();
    let take_digits = |src: &mut Source, text: &mut String, hex: bool| -> usize {
        let mut n = 0;
        while let Some(b) =
            src.peek().filter(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
        {
            text.push(char::from(b));
            src.bump();
            n += 1;
        }
        n
    };
    let tok = if src.peek() == Some(b'0') && matches!(src.peek_at(1), Some(b'x' | b'X')) {
        src.bump();
        src.bump();
        if take_digits(src, &mut text, true) == 0 {
            return Err(malformed(src, start, "0x".to_owned()));
        }
        eat_long_suffix(src);
        let v = u64::from_str_radix(&text, 16)
            .ok()
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| (start, format!("expected a 64-bit integer, found 0x{text}")))?;
        Tok::Int(v)
    } else {
        if let Some(b @ (b'+' | b'-')) = src.peek() {
            text.push(char::from(b));
            src.bump();
        }
        let mut digits = take_digits(src, &mut text, false);
        let mut float = false;
        if src.peek() == Some(b'.') {
            float = true;
            text.push('.');
            src.bump();
            digits += take_digits(src, &mut text, false);
        }
        if digits == 0 {
            // A lone sign or dot.
            if text.len() == 1 {
                return Ok(Tok::Garbage(text));
            }
            return Err(malformed(src, start, text));
        }
        if matches!(src.peek(), Some(b'e' | b'E'))
            && (src.peek_at(1).is_some_and(|b| b.is_ascii_digit())
                || matches!(src.peek_at(1), Some(b'+' | b'-'))
                    && src.peek_at(2).is_some_and(|b| b.is_ascii_digit()))
        {
            float = true;
            text.push('e');
            src.bump();
            if let Some(b @ (b'+' | b'-')) = src.peek() {
                text.push(char::from(b));
                src.bump();
            }
            take_digits(src, &mut text, false);
        }
        if float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Tok::Float(f),
                _ => return Err((start, format!("expected a finite float, found {text}"))),
            }
        } else {
            eat_long_suffix(src);
            let v = text
                .parse::<i64>()
                .map_err(|_| (start, format!("expected a 64-bit integer, found {text}")))?;
            Tok::Int(v)
        }
    };
    if src.peek().is_some_and(|b| is_name_byte(b) || b == b'.') {
        return Err(malformed(src, start, text));
    }
    Ok(tok)
}

fn eat_long_suffix(src: &mut Source) {
    if src.peek() == Some(b'L') {
        src.bump();
        if src.peek() == Some(b'L') {
            src.bump();
        }
    }
}

fn malformed(src: &mut Source, start: Pos, mut text: String) -> (Pos, String) {
    while let Some(b) = src.peek().filter(|&b| is_name_byte(b) || b == b'.' || b == b'+') {
        text.push(char::from(b));
        src.bump();
    }
    (start, format!("expected a number, found {}", quote(&short(&text))))
}

// ------------------------------------------------------------------------------------------
// Parser

#[derive(Debug)]
struct Parser {
    lx: Lexer,
    depth: usize,
    values: usize,
}

impl Parser {
    fn error(&self, pos: Pos, mut message: String) -> ParseError {
        if let Some(at) = self.lx.multiline {
            message.push_str(&format!(
                " (the string at {} runs over a line end: a missing '\"'?)",
                self.at(at)
            ));
        }
        self.lx.error(pos, message)
    }

    fn at(&self, pos: Pos) -> String {
        let here = self.lx.files.get(usize::from(pos.file));
        let top = self.lx.stack.last().map(|s| s.file);
        match here {
            Some(p) if Some(pos.file) != top => format!("{}:{}:{}", p.display(), pos.line, pos.col),
            _ => format!("{}:{}", pos.line, pos.col),
        }
    }

    fn enter(&mut self, pos: Pos) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(
                self.error(pos, format!("expected nesting at most {MAX_DEPTH} deep, found deeper"))
            );
        }
        Ok(())
    }

    /// Settings up to the end of file (`open` is `None`) or the `}` closing the group opened
    /// at `open`.
    fn settings(&mut self, open: Option<Pos>) -> Result<Vec<Setting>, ParseError> {
        let mut out: Vec<Setting> = Vec::new();
        loop {
            let t = self.lx.next()?;
            let name = match t.tok {
                Tok::Name(n) => n,
                Tok::RBrace if open.is_some() => return Ok(out),
                Tok::Eof if open.is_none() => return Ok(out),
                other => {
                    let expected = match open {
                        Some(o) => format!(
                            "a setting name or '}}' to close the group opened at {}",
                            self.at(o)
                        ),
                        None => "a setting name".to_owned(),
                    };
                    return Err(self
                        .error(t.pos, format!("expected {expected}, found {}", other.describe())));
                }
            };
            let eq = self.lx.next()?;
            if !matches!(eq.tok, Tok::Equals(_)) {
                return Err(self.error(
                    eq.pos,
                    format!(
                        "expected '=' or ':' after {}, found {}",
                        quote(&name),
                        eq.tok.describe()
                    ),
                ));
            }
            let first = self.lx.next()?;
            let value = self.value(first)?;
            if let Some(prev) = out.iter().find(|s| s.name == name) {
                return Err(self.error(
                    t.pos,
                    format!(
                        "duplicate setting {} (first set at {})",
                        quote(&name),
                        self.at(prev.pos)
                    ),
                ));
            }
            out.push(Setting { name, pos: t.pos, value });
            if matches!(self.lx.peek()?.tok, Tok::Semi | Tok::Comma) {
                self.lx.next()?;
            }
        }
    }

    /// A value starting with token `t`.
    fn value(&mut self, t: Token) -> Result<Value, ParseError> {
        let pos = t.pos;
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(
                self.error(pos, format!("expected at most {MAX_VALUES} values, found more"))
            );
        }
        let kind = match t.tok {
            Tok::Bool(b) => Kind::Bool(b),
            Tok::Int(i) => Kind::Int(i),
            Tok::Float(f) => Kind::Float(f),
            Tok::Str(mut s) => {
                while let Tok::Str(_) = self.lx.peek()?.tok {
                    if let Tok::Str(more) = self.lx.next()?.tok {
                        s.push_str(&more);
                    }
                }
                Kind::Str(s)
            }
            Tok::LBrace => {
                self.enter(pos)?;
                let g = self.settings(Some(pos))?;
                self.depth -= 1;
                Kind::Group(g)
            }
            Tok::LBracket => {
                self.enter(pos)?;
                let items = self.items(pos, true)?;
                self.depth -= 1;
                Kind::Array(items)
            }
            Tok::LParen => {
                self.enter(pos)?;
                let items = self.items(pos, false)?;
                self.depth -= 1;
                Kind::List(items)
            }
            Tok::Name(n) => {
                return Err(self.error(
                    pos,
                    format!(
                        "expected a value, found name {} (strings need double quotes)",
                        quote(&short(&n))
                    ),
                ))
            }
            other => {
                return Err(self.error(pos, format!("expected a value, found {}", other.describe())))
            }
        };
        Ok(Value { pos, kind })
    }

    /// Elements of an array (`[`, scalars of one type) or a list (`(`) opened at `open`.
    fn items(&mut self, open: Pos, array: bool) -> Result<Vec<Value>, ParseError> {
        let (close, what) = if array { (Tok::RBracket, "array") } else { (Tok::RParen, "list") };
        let close_s = close.describe();
        let mut out: Vec<Value> = Vec::new();
        loop {
            let t = self.lx.next()?;
            if t.tok == close {
                return Ok(out);
            }
            if t.tok == Tok::Eof {
                return Err(self.error(
                    t.pos,
                    format!(
                        "expected {close_s} to close the {what} opened at {}, found end of file",
                        self.at(open)
                    ),
                ));
            }
            let v = self.value(t)?;
            if array {
                let Some(ty) = v.kind.scalar_type() else {
                    return Err(self.error(
                        v.pos,
                        format!(
                            "expected a scalar in an array (lists '( )' hold groups and arrays), found {}",
                            v.kind.describe()
                        ),
                    ));
                };
                if let Some(first) = out.first().and_then(|f| f.kind.scalar_type()) {
                    if first != ty {
                        return Err(self.error(
                            v.pos,
                            format!(
                                "expected a {first} like the first element of this array, found {}",
                                v.kind.describe()
                            ),
                        ));
                    }
                }
            }
            out.push(v);
            let sep = self.lx.next()?;
            if sep.tok == close {
                return Ok(out);
            }
            if sep.tok != Tok::Comma {
                return Err(self.error(
                    sep.pos,
                    format!(
                        "expected ',' or {close_s} to close the {what} opened at {}, found {}",
                        self.at(open),
                        sep.tok.describe()
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
