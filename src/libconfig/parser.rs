//! The grammar (libconfig's `grammar.y`): tokens into settings, groups, arrays and lists,
//! within the depth and value-count limits.

use super::lexer::{Lexer, Tok, Token};
use super::{quote, short, Document, Kind, ParseError, Pos, Setting, Value, MAX_DEPTH, MAX_VALUES};

/// The lexer and how deep and how many values have been read.
#[derive(Debug)]
pub(super) struct Parser {
    lx: Lexer,
    depth: usize,
    values: usize,
}

impl Parser {
    /// A parser reading `lx`'s tokens.
    pub(super) fn new(lx: Lexer) -> Self {
        Self { lx, depth: 0, values: 0 }
    }

    /// The whole document.
    pub(super) fn document(mut self) -> Result<Document, ParseError> {
        let root = self.settings(None)?;
        Ok(Document { files: self.lx.files, root })
    }

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
