//! The scanner: bytes of the top file and its `@include`s into tokens with positions, as
//! libconfig's `scanner.l` does (includes are spliced in here, so the parser never sees them).

use std::path::{Path, PathBuf};

use super::{
    is_name_byte, quote, read_limited, short, ParseError, Pos, MAX_FILES, MAX_INCLUDE_DEPTH,
    MAX_TOTAL_SIZE,
};

/// A token.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Name(String),
    Str(String),
    Int(i64),
    /// As written (the exponent's `e` in lower case).
    Float(String),
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
    /// "name \"x\"", "';'", ... for messages.
    pub(super) fn describe(&self) -> String {
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

/// A token and where it starts.
#[derive(Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) pos: Pos,
}

/// One file being scanned.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) file: u16,
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

/// The files being scanned (the innermost include last) and the token looked ahead.
#[derive(Debug)]
pub(super) struct Lexer {
    pub(super) stack: Vec<Source>,
    pub(super) files: Vec<PathBuf>,
    total: usize,
    peeked: Option<Token>,
    /// Position of the end of the top file.
    eof: Pos,
    /// The last string that ran over a line end: the usual cause of a later syntax error.
    pub(super) multiline: Option<Pos>,
}

impl Lexer {
    /// A lexer at the start of `text`, read from `name` (`canon`: its canonical path).
    pub(super) fn new(text: Vec<u8>, name: &Path, canon: PathBuf) -> Self {
        let total = text.len();
        Self {
            stack: vec![Source::new(0, text, name, canon)],
            files: vec![name.to_path_buf()],
            total,
            peeked: None,
            eof: Pos { file: 0, line: 1, col: 1 },
            multiline: None,
        }
    }

    pub(super) fn error(&self, pos: Pos, message: String) -> ParseError {
        ParseError {
            file: self.files.get(usize::from(pos.file)).cloned().unwrap_or_default(),
            line: pos.line,
            col: pos.col,
            message,
        }
    }

    pub(super) fn peek(&mut self) -> Result<&Token, ParseError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(self.error(self.eof, "internal error: no token".to_owned())),
        }
    }

    pub(super) fn next(&mut self) -> Result<Token, ParseError> {
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
            if !finite_float(&text) {
                return Err((start, format!("expected a finite float, found {text}")));
            }
            Tok::Float(text.clone())
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

/// The smallest magnitude that a 64-bit float rounds to infinity (2^1024 - 2^970, halfway
/// between `f64::MAX` and 2^1024, which rounds to even, hence up): `0.DIGITS` × 10^309.
const F64_OVERFLOW_DIGITS: &[u8] = b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

/// Whether a float literal (`[+-]DIGITS[.DIGITS][e[+-]DIGITS]`, the lexer's text) is within
/// the range of a 64-bit float once rounded, as C's `strtod` reads it: compared as decimal
/// digits against the overflow threshold. wsgate reads no float setting, so a float is kept as
/// written and nothing else of it is computed; this comparison costs far less than Rust's
/// exact float parser (about 15 KB of the shipped armv7 gateway).
fn finite_float(text: &str) -> bool {
    let unsigned = text.trim_start_matches(['+', '-']);
    let (mantissa, exponent) = unsigned.split_once('e').unwrap_or((unsigned, "0"));
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = int.bytes().chain(frac.bytes());
    let leading_zeros = digits.clone().take_while(|&d| d == b'0').count();
    let significant: Vec<u8> = digits.skip(leading_zeros).collect();
    let significant = match significant.iter().rposition(|&d| d != b'0') {
        Some(last) => significant.get(..=last).unwrap_or_default(),
        None => return true, // zero
    };
    // 10^6 is far past any float's range and keeps the sum below i64's.
    let exp_digits = exponent.trim_start_matches(['+', '-']);
    let exp_abs =
        exp_digits.bytes().fold(0i64, |e, d| (e * 10 + i64::from(d - b'0')).min(1_000_000));
    let exp = if exponent.starts_with('-') { -exp_abs } else { exp_abs };
    // The value is 0.SIGNIFICANT × 10^point.
    let int_len = i64::try_from(int.len()).unwrap_or(i64::MAX);
    let zeros = i64::try_from(leading_zeros).unwrap_or(i64::MAX);
    let point = int_len.saturating_sub(zeros).saturating_add(exp);
    point < 309 || point == 309 && significant < F64_OVERFLOW_DIGITS
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
