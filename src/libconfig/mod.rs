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
//!
//! # Layout
//!
//! `lexer` turns bytes (includes spliced in) into tokens, `parser` turns tokens into the tree
//! of `value` ([`Document`], [`Setting`], [`Value`]); this module holds the entry points, the
//! limits and the helpers both use.

use std::fs::File;
use std::io::Read;
use std::path::Path;

mod lexer;
mod parser;
mod value;

pub use value::{Document, Kind, ParseError, Pos, Setting, Value};

use lexer::Lexer;
use parser::Parser;

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
    Parser::new(Lexer::new(text, name, canon)).document()
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

#[cfg(test)]
mod tests;
