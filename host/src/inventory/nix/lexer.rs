//! Tokens of the Nix subset that `proxy_content.nix` files use.
//!
//! Strings follow Nix's lexer exactly (escapes, `$$`, CR/LF folding) because
//! URLs and headers are copied from them verbatim; anything that would need
//! evaluation (interpolation, indented strings, paths) is refused with its
//! position rather than misread.

/// One token and where it starts (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    Semi,
    Eq,
    Comma,
    Question,
    At,
    Ellipsis,
    Ident(String),
    Str(String),
    Int(i64),
    Eof,
}

impl Tok {
    /// How a message names this token.
    pub fn describe(&self) -> String {
        let punct = |s: &str| format!("`{s}`");
        match self {
            Tok::LBrace => punct("{"),
            Tok::RBrace => punct("}"),
            Tok::LBracket => punct("["),
            Tok::RBracket => punct("]"),
            Tok::Colon => punct(":"),
            Tok::Semi => punct(";"),
            Tok::Eq => punct("="),
            Tok::Comma => punct(","),
            Tok::Question => punct("?"),
            Tok::At => punct("@"),
            Tok::Ellipsis => punct("..."),
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Str(s) if s.chars().count() > 40 => {
                format!("string \"{}…\"", s.chars().take(40).collect::<String>())
            }
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Int(n) => format!("integer {n}"),
            Tok::Eof => "end of file".to_owned(),
        }
    }
}

/// A position and what was expected there.
#[derive(Debug, PartialEq)]
pub(super) struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub expected: String,
    pub found: String,
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut lx = Lexer {
        src,
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        lx.skip_trivia()?;
        let (line, col) = (lx.line, lx.col);
        let tok = lx.token()?;
        let eof = tok == Tok::Eof;
        out.push(Token { tok, line, col });
        if eof {
            return Ok(out);
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn error(&self, line: usize, col: usize, expected: &str, found: String) -> SyntaxError {
        SyntaxError {
            line,
            col,
            expected: expected.to_owned(),
            found,
        }
    }

    /// Skips whitespace, `# …` and `/* … */` comments.
    fn skip_trivia(&mut self) -> Result<(), SyntaxError> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let (line, col) = (self.line, self.col);
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                            None => {
                                let what = format!("`*/` closing the comment at {line}:{col}");
                                return Err(self.error(line, col, &what, "end of file".into()));
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn token(&mut self) -> Result<Tok, SyntaxError> {
        let (line, col) = (self.line, self.col);
        let Some(c) = self.peek() else {
            return Ok(Tok::Eof);
        };
        let single = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ':' => Some(Tok::Colon),
            ';' => Some(Tok::Semi),
            '=' => Some(Tok::Eq),
            ',' => Some(Tok::Comma),
            '?' => Some(Tok::Question),
            '@' => Some(Tok::At),
            _ => None,
        };
        if let Some(tok) = single {
            self.bump();
            return Ok(tok);
        }
        if self.src[self.pos..].starts_with("...") {
            (0..3).for_each(|_| {
                self.bump();
            });
            return Ok(Tok::Ellipsis);
        }
        if self.src[self.pos..].starts_with("''") {
            let found = "an indented string (''…''), which this reader does not support".into();
            return Err(self.error(line, col, "a double-quoted string", found));
        }
        if c == '"' {
            self.bump();
            return self.string(line, col).map(Tok::Str);
        }
        if c.is_ascii_digit() {
            return self.integer(line, col);
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || "_'-".contains(c))
            {
                self.bump();
            }
            return Ok(Tok::Ident(self.src[start..self.pos].to_owned()));
        }
        Err(self.error(
            line,
            col,
            "a value or one of `{ } [ ] = ; :`",
            format!("`{c}`"),
        ))
    }

    fn integer(&mut self, line: usize, col: usize) -> Result<Tok, SyntaxError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let text = &self.src[start..self.pos];
        text.parse().map(Tok::Int).map_err(|_| {
            self.error(
                line,
                col,
                "an integer that fits in 64 bits",
                text.to_owned(),
            )
        })
    }

    /// The rest of a `"…"` string after its opening quote, unescaped as Nix
    /// does: `\n \r \t` are control characters, any other escaped character
    /// stands for itself, a raw CR or CR LF becomes LF, and `$$` is two
    /// dollars (so `$${` is text, not interpolation).
    fn string(&mut self, line: usize, col: usize) -> Result<String, SyntaxError> {
        let mut s = String::new();
        loop {
            let Some(c) = self.bump() else {
                let what = format!("`\"` closing the string at {line}:{col}");
                return Err(self.error(line, col, &what, "end of file".into()));
            };
            match c {
                '"' => return Ok(s),
                '\\' => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some(other) => s.push(other),
                    None => {
                        let what = format!("`\"` closing the string at {line}:{col}");
                        return Err(self.error(line, col, &what, "end of file".into()));
                    }
                },
                '$' if self.peek() == Some('{') => {
                    let found = "`${` (interpolation needs evaluation; write `\\${` for the text)";
                    return Err(self.error(self.line, self.col - 1, "string text", found.into()));
                }
                '$' if self.peek() == Some('$') => {
                    self.bump();
                    s.push_str("$$");
                }
                '\r' => {
                    if self.peek() == Some('\n') {
                        self.bump();
                    }
                    s.push('\n');
                }
                other => s.push(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn punctuation_idents_ints_and_comments() {
        assert_eq!(
            toks("{ fetchurl, ... }: # c\n[ /* x\n */ { a = 12; } ]"),
            vec![
                Tok::LBrace,
                Tok::Ident("fetchurl".into()),
                Tok::Comma,
                Tok::Ellipsis,
                Tok::RBrace,
                Tok::Colon,
                Tok::LBracket,
                Tok::LBrace,
                Tok::Ident("a".into()),
                Tok::Eq,
                Tok::Int(12),
                Tok::Semi,
                Tok::RBrace,
                Tok::RBracket,
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn strings_unescape_like_nix() {
        let src = r#""a\"b\\c\${d}\n\t\r\q $$ $${x} $ ü""#;
        assert_eq!(
            toks(src),
            vec![Tok::Str("a\"b\\c${d}\n\t\rq $$ $${x} $ ü".into()), Tok::Eof]
        );
        // Raw CR and CR LF inside a string read as LF.
        assert_eq!(
            toks("\"x\r\ny\ry\""),
            vec![Tok::Str("x\ny\ny".into()), Tok::Eof]
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let t = tokenize("\"ü\"\n  \"x\"").unwrap();
        assert_eq!((t[1].line, t[1].col), (2, 3));
        let e = tokenize("[\n  \"é ${x}\" ]").unwrap_err();
        assert_eq!((e.line, e.col), (2, 6));
        assert!(e.found.contains("${"));
    }

    #[test]
    fn unsupported_and_unterminated() {
        assert!(tokenize("''x''").unwrap_err().found.contains("indented"));
        let e = tokenize("\"abc").unwrap_err();
        assert_eq!(e.found, "end of file");
        let e = tokenize("/* x").unwrap_err();
        assert!(e.expected.contains("*/"));
        let e = tokenize("./a.nix").unwrap_err();
        assert_eq!((e.line, e.col, e.found.as_str()), (1, 1, "`.`"));
    }
}
