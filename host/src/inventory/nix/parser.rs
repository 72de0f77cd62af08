//! Recursive-descent parser for the tokens of a `proxy_content.nix`: an
//! optional function header (`{ fetchurl }:`, `{ fetchurl, ... }:`) and one
//! list of values built from strings, integers, `null`, booleans, lists,
//! attribute sets and `name { … }` calls.
//!
//! The result is a plain tree with positions; turning it into entries (and
//! deciding which attributes matter) is the reader's job.

use super::lexer::{SyntaxError, Tok, Token};

/// Deeper nesting than any real file has; stops a crafted file from
/// overflowing the stack.
const MAX_DEPTH: usize = 64;

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub line: usize,
    pub col: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Node>),
    Attrs(Attrs),
    /// `func { … }`, such as `fetchurl { url = …; hash = …; }`.
    Call {
        func: String,
        arg: Attrs,
    },
}

impl Value {
    /// How a message names this kind of value.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Attrs(_) => "an attribute set",
            Value::Call { .. } => "a function call",
        }
    }
}

/// Attributes in file order; names are unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Attrs(pub Vec<(String, Node)>);

impl Attrs {
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Parses a whole file (header, then a list, then the end) and returns the
/// list's items.
pub(super) fn parse_file(tokens: &[Token]) -> Result<Vec<Node>, SyntaxError> {
    let mut p = Parser {
        toks: tokens,
        i: 0,
        depth: 0,
    };
    p.header()?;
    let list = p.value()?;
    let Value::List(items) = list.value else {
        return Err(SyntaxError {
            line: list.line,
            col: list.col,
            expected: "a list `[ … ]` of entries".into(),
            found: list.value.kind().into(),
        });
    };
    p.expect(&Tok::Eof, "the end of the file after the list")?;
    Ok(items)
}

struct Parser<'t> {
    toks: &'t [Token],
    i: usize,
    depth: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        // The lexer always ends with Eof, which is never consumed past.
        &self.toks[self.i.min(self.toks.len().saturating_sub(1))]
    }

    fn next(&mut self) -> &'t Token {
        let t = self.peek();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn error(t: &Token, expected: &str) -> SyntaxError {
        SyntaxError {
            line: t.line,
            col: t.col,
            expected: expected.to_owned(),
            found: t.tok.describe(),
        }
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<&'t Token, SyntaxError> {
        let t = self.next();
        if &t.tok == tok {
            Ok(t)
        } else {
            Err(Self::error(t, expected))
        }
    }

    /// `{ a, b ? v, ... }:`, `args@{ … }:`, `{ … }@args:`, `args:` or none.
    fn header(&mut self) -> Result<(), SyntaxError> {
        let t = self.peek();
        match &t.tok {
            Tok::LBracket => return Ok(()),
            Tok::LBrace => {
                self.formals()?;
                if self.peek().tok == Tok::At {
                    self.next();
                    self.ident("a name after `@`")?;
                }
            }
            Tok::Ident(_) => {
                self.next();
                if self.peek().tok == Tok::At {
                    self.next();
                    self.formals()?;
                }
            }
            _ => return Err(Self::error(t, "`{ fetchurl }:` or `[`")),
        }
        self.expect(&Tok::Colon, "`:` after the function's arguments")?;
        Ok(())
    }

    fn ident(&mut self, expected: &str) -> Result<&'t str, SyntaxError> {
        let t = self.next();
        match &t.tok {
            Tok::Ident(s) => Ok(s),
            _ => Err(Self::error(t, expected)),
        }
    }

    fn formals(&mut self) -> Result<(), SyntaxError> {
        self.expect(&Tok::LBrace, "`{`")?;
        loop {
            let t = self.next();
            match &t.tok {
                Tok::RBrace => return Ok(()),
                Tok::Ellipsis => {
                    self.expect(&Tok::RBrace, "`}` after `...`")?;
                    return Ok(());
                }
                Tok::Ident(_) => {
                    if self.peek().tok == Tok::Question {
                        self.next();
                        self.value()?;
                    }
                    let t = self.next();
                    match t.tok {
                        Tok::Comma => {}
                        Tok::RBrace => return Ok(()),
                        _ => return Err(Self::error(t, "`,` or `}` in the argument list")),
                    }
                }
                _ => return Err(Self::error(t, "an argument name, `...` or `}`")),
            }
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let t = self.next();
        if self.depth >= MAX_DEPTH {
            return Err(Self::error(t, "less deeply nested values"));
        }
        self.depth += 1;
        let value = match &t.tok {
            Tok::Str(s) => Value::Str(s.clone()),
            Tok::Int(n) => Value::Int(*n),
            Tok::LBracket => self.list_rest()?,
            Tok::LBrace => Value::Attrs(self.attrs_rest()?),
            Tok::Ident(s) => match s.as_str() {
                "null" => Value::Null,
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                func => {
                    let expected = format!(
                        "`{{` after `{func}` (only calls like `fetchurl {{ … }}` are understood)"
                    );
                    self.expect(&Tok::LBrace, &expected)?;
                    Value::Call {
                        func: func.to_owned(),
                        arg: self.attrs_rest()?,
                    }
                }
            },
            _ => return Err(Self::error(t, "a value")),
        };
        self.depth -= 1;
        Ok(Node {
            line: t.line,
            col: t.col,
            value,
        })
    }

    /// The items and `]` of a list whose `[` was read.
    fn list_rest(&mut self) -> Result<Value, SyntaxError> {
        let mut items = Vec::new();
        loop {
            match self.peek().tok {
                Tok::RBracket => {
                    self.next();
                    return Ok(Value::List(items));
                }
                Tok::Eof => return Err(Self::error(self.peek(), "`]` closing the list")),
                _ => items.push(self.value()?),
            }
        }
    }

    /// The `name = value;` bindings and `}` of a set whose `{` was read.
    fn attrs_rest(&mut self) -> Result<Attrs, SyntaxError> {
        let mut attrs = Attrs::default();
        loop {
            let t = self.next();
            let name = match &t.tok {
                Tok::RBrace => return Ok(attrs),
                Tok::Ident(n) | Tok::Str(n) => n,
                _ => return Err(Self::error(t, "an attribute name or `}`")),
            };
            if let Some(first) = attrs.get(name) {
                return Err(SyntaxError {
                    line: t.line,
                    col: t.col,
                    expected: format!("`{name}` only once in this set"),
                    found: format!(
                        "it again (its first value is at {}:{})",
                        first.line, first.col
                    ),
                });
            }
            self.expect(&Tok::Eq, &format!("`=` after `{name}`"))?;
            let v = self.value()?;
            self.expect(&Tok::Semi, &format!("`;` after the value of `{name}`"))?;
            attrs.0.push((name.clone(), v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse(src: &str) -> Result<Vec<Node>, SyntaxError> {
        parse_file(&tokenize(src).unwrap())
    }

    #[test]
    fn headers_are_tolerated() {
        for src in [
            "{ fetchurl }: [ ]",
            "{ fetchurl, ... }: [ ]",
            "{ fetchurl, lib ? null, }: [ ]",
            "args@{ fetchurl, ... }: [ ]",
            "{ fetchurl }@args: [ ]",
            "_: [ ]",
            "[ ]",
        ] {
            assert_eq!(parse(src).unwrap(), vec![], "{src}");
        }
    }

    #[test]
    fn nested_values_and_calls() {
        let items =
            parse(r#"[ { a = "x"; "b c" = 1; d = null; e = { }; f = fetchurl { url = "u"; }; } ]"#)
                .unwrap();
        let Value::Attrs(a) = &items[0].value else {
            panic!("not attrs")
        };
        assert_eq!(a.get("a").unwrap().value, Value::Str("x".into()));
        assert_eq!(a.get("b c").unwrap().value, Value::Int(1));
        assert_eq!(a.get("d").unwrap().value, Value::Null);
        assert_eq!(a.get("e").unwrap().value, Value::Attrs(Attrs::default()));
        let Value::Call { func, arg } = &a.get("f").unwrap().value else {
            panic!("not a call")
        };
        assert_eq!(func, "fetchurl");
        assert_eq!(arg.get("url").unwrap().value, Value::Str("u".into()));
    }

    #[test]
    fn errors_say_what_was_expected_where() {
        let e = parse("{ fetchurl }:\n[ { url = \"x\" } ]").unwrap_err();
        assert_eq!((e.line, e.col), (2, 15));
        assert_eq!(e.expected, "`;` after the value of `url`");
        assert_eq!(e.found, "`}`");
        let e = parse("[ { a = 1; a = 2; } ]").unwrap_err();
        assert_eq!((e.line, e.col), (1, 12));
        assert!(e.found.contains("first value is at 1:9"), "{e:?}");
        let e = parse("{ fetchurl }: [ ] [ ]").unwrap_err();
        assert!(e.expected.contains("end of the file"));
        let e = parse("[ { f = fetchurl \"x\"; } ]").unwrap_err();
        assert!(e.expected.contains("fetchurl"), "{e:?}");
        let e = parse("{ fetchurl }: { }").unwrap_err();
        assert!(e.expected.contains("list"));
        let deep = format!("[{}", "[".repeat(100));
        assert!(parse(&deep).unwrap_err().expected.contains("nested"));
        assert!(parse("[ 1").unwrap_err().expected.contains("]"));
    }
}
