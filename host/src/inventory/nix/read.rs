//! From the parsed tree to entries, with messages that point into the file.

use super::super::{Body, Entry, InventoryError, names};
use super::hash::to_sri;
use super::lexer::{SyntaxError, tokenize};
use super::parser::{Attrs, Node, Value, parse_file};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Reads a `proxy_content.nix` written by buildproxy or nix-buildproxy.
///
/// Attributes nix-buildproxy leaves out get their defaults (`method = "GET"`,
/// `status_code = 200`, no headers); attributes we do not know are ignored so
/// that newer files still load. Bodies carry their hash only: size and file
/// are unknown until Nix fetches them.
pub fn parse(path: &Path) -> Result<Vec<Entry>, InventoryError> {
    let src = fs::read_to_string(path).map_err(|e| InventoryError::io(path, "read", e))?;
    parse_str(path, &src)
}

/// [`parse`] on text already read; `path` is used in messages only.
pub fn parse_str(path: &Path, src: &str) -> Result<Vec<Entry>, InventoryError> {
    parse_each(path, src)?
        .into_iter()
        .map(|r| r.map(|s| s.entry))
        .collect()
}

/// One entry as the file spells it, for `buildproxy check`: what the
/// reader turns into an [`Entry`] loses whether the file names the
/// download itself, which decides what Nix's `fetchurl` calls it.
#[derive(Debug)]
pub struct Spelled {
    pub entry: Entry,
    /// Its `fetchurl` has a `name`, so Nix does not derive one from the URL.
    pub names_itself: bool,
}

/// [`parse_str`], but one result per entry, so that a checker can report
/// every bad entry rather than stop at the first. The outer error is a
/// file that is not a list of entries at all.
pub fn parse_each(
    path: &Path,
    src: &str,
) -> Result<Vec<Result<Spelled, InventoryError>>, InventoryError> {
    let syntax = |e: SyntaxError| InventoryError::Syntax {
        path: path.to_owned(),
        line: e.line,
        col: e.col,
        expected: e.expected,
        found: e.found,
    };
    let tokens = tokenize(src).map_err(syntax)?;
    let items = parse_file(&tokens).map_err(syntax)?;
    Ok(items
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let mut cx = Cx {
                path,
                index,
                url: String::from("<no url>"),
                names_itself: false,
            };
            let entry = cx.entry(node)?;
            Ok(Spelled {
                entry,
                names_itself: cx.names_itself,
            })
        })
        .collect())
}

/// What an entry's `file` says about its body.
#[derive(Default)]
struct Fetched {
    fetch_url: Option<String>,
    name: Option<String>,
    body: Option<Body>,
}

/// The entry being converted, for messages.
struct Cx<'a> {
    path: &'a Path,
    index: usize,
    url: String,
    names_itself: bool,
}

impl Cx<'_> {
    fn error(&self, at: &Node, problem: String, fix: &'static str) -> InventoryError {
        InventoryError::InvalidEntry {
            path: self.path.to_owned(),
            pos: Some((at.line, at.col)),
            index: self.index,
            url: self.url.clone(),
            problem,
            fix,
        }
    }

    fn wrong_type(&self, name: &str, node: &Node, want: &str) -> InventoryError {
        let problem = format!("`{name}` is {}, but must be {want}", node.value.kind());
        self.error(node, problem, "correct its value")
    }

    fn string<'n>(
        &self,
        attrs: &'n Attrs,
        name: &str,
    ) -> Result<Option<(&'n Node, &'n str)>, InventoryError> {
        match attrs.get(name) {
            None => Ok(None),
            Some(n) => match &n.value {
                Value::Str(s) => Ok(Some((n, s))),
                _ => Err(self.wrong_type(name, n, "a string")),
            },
        }
    }

    fn entry(&mut self, node: &Node) -> Result<Entry, InventoryError> {
        let Value::Attrs(attrs) = &node.value else {
            let problem = format!("is {}, not an attribute set", node.value.kind());
            return Err(self.error(
                node,
                problem,
                "write each entry as `{ url = \"…\"; file = …; }`",
            ));
        };
        let Some((_, url)) = self.string(attrs, "url")? else {
            return Err(self.error(
                node,
                "has no `url`".into(),
                "add the URL the build requested as `url = \"…\";`",
            ));
        };
        self.url = url.to_owned();
        let method = match self.string(attrs, "method")? {
            None => "GET".to_owned(),
            Some((n, m)) if m.is_empty() || !m.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(self.error(
                    n,
                    format!("`{m}` is not an HTTP method"),
                    "write a method such as \"GET\"",
                ));
            }
            Some((_, m)) => m.to_ascii_uppercase(),
        };
        let status = match attrs.get("status_code") {
            None => 200,
            Some(n) => match n.value {
                Value::Int(code) => u16::try_from(code)
                    .ok()
                    .filter(|c| (100..=999).contains(c))
                    .ok_or_else(|| {
                        self.error(
                            n,
                            format!("status code {code} is not an HTTP status"),
                            "use a three-digit status such as 200",
                        )
                    })?,
                _ => return Err(self.wrong_type("status_code", n, "an integer")),
            },
        };
        let headers = match attrs.get("headers") {
            None => BTreeMap::new(),
            Some(n) => self.headers("headers", n)?,
        };
        let request_headers = match attrs.get("request_headers") {
            None => BTreeMap::new(),
            Some(n) => self.headers("request_headers", n)?,
        };
        let Some(file) = attrs.get("file") else {
            return Err(self.error(
                node,
                "has no `file`".into(),
                "add `file = fetchurl { url = …; hash = …; };`, or `file = null;` for a response without a body",
            ));
        };
        let Fetched {
            fetch_url,
            name,
            body,
        } = match &file.value {
            Value::Null => Fetched::default(),
            Value::Call { func, arg } if func == "fetchurl" => self.fetchurl(arg, file)?,
            Value::Call { func, arg } if func == "fetchGitObjects" => {
                self.git_objects(arg, file)?
            }
            _ => {
                return Err(self.wrong_type(
                    "file",
                    file,
                    "`fetchurl { … }`, `fetchGitObjects { … }` or null",
                ));
            }
        };
        Ok(Entry {
            method,
            url: self.url.clone(),
            fetch_url,
            name,
            status,
            headers,
            request_headers,
            body,
        })
    }

    fn headers(&self, what: &str, node: &Node) -> Result<BTreeMap<String, String>, InventoryError> {
        let Value::Attrs(attrs) = &node.value else {
            return Err(self.wrong_type(what, node, "an attribute set"));
        };
        let mut headers = BTreeMap::new();
        for (name, value) in &attrs.0 {
            let Value::Str(v) = &value.value else {
                return Err(self.wrong_type(&format!("{what}.\"{name}\""), value, "a string"));
            };
            if headers
                .insert(name.to_ascii_lowercase(), v.clone())
                .is_some()
            {
                let problem = format!("header `{name}` appears twice (names are case-insensitive)");
                return Err(self.error(value, problem, "keep one of them"));
            }
        }
        Ok(headers)
    }

    /// The body's source, from a `fetchGitObjects { url; revs; hash; }`
    /// call (git objects the `git` plugin recorded; the IDs are the entry's
    /// `git-wants` request header too, which is what replay reads).
    fn git_objects(&mut self, arg: &Attrs, call: &Node) -> Result<Fetched, InventoryError> {
        let Some((_, fetch_url)) = self.string(arg, "url")? else {
            return Err(self.error(
                call,
                "`fetchGitObjects` has no `url`".into(),
                "add the repository's URL as `url = \"…\";`",
            ));
        };
        match arg.get("revs").map(|n| &n.value) {
            Some(Value::List(revs))
                if !revs.is_empty() && revs.iter().all(|r| matches!(r.value, Value::Str(_))) => {}
            _ => {
                return Err(self.error(
                    call,
                    "`fetchGitObjects` has no list of `revs`".into(),
                    "add the commit IDs as `revs = [ \"…\" ];`",
                ));
            }
        }
        let Some((n, hash)) = self.string(arg, "hash")? else {
            return Err(self.error(
                call,
                "`fetchGitObjects` has no `hash`".into(),
                "add `hash = \"sha256-…\";`",
            ));
        };
        let hash = to_sri(hash)
            .map_err(|p| self.error(n, p, "write the objects' sha256 as `hash = \"sha256-…\";`"))?;
        Ok(Fetched {
            fetch_url: (fetch_url != self.url).then(|| fetch_url.to_owned()),
            name: None,
            body: Some(Body {
                hash: Some(hash),
                size: None,
                file: None,
            }),
        })
    }

    /// The body's source, from a `fetchurl { … }` call.
    fn fetchurl(&mut self, arg: &Attrs, call: &Node) -> Result<Fetched, InventoryError> {
        let Some((_, fetch_url)) = self.string(arg, "url")? else {
            return Err(self.error(
                call,
                "`fetchurl` has no `url`".into(),
                "add `url = \"…\";` to the fetchurl call",
            ));
        };
        let hash_node = match (self.string(arg, "hash")?, self.string(arg, "sha256")?) {
            (Some(h), None) | (None, Some(h)) => h,
            (Some(_), Some((n, _))) => {
                return Err(self.error(
                    n,
                    "`fetchurl` has both `hash` and `sha256`".into(),
                    "keep only `hash`",
                ));
            }
            (None, None) => {
                return Err(self.error(
                    call,
                    "`fetchurl` has no `hash`".into(),
                    "add `hash = \"sha256-…\";`",
                ));
            }
        };
        let hash = to_sri(hash_node.1).map_err(|p| {
            self.error(
                hash_node.0,
                p,
                "write the body's sha256 as `hash = \"sha256-…\";`",
            )
        })?;
        self.names_itself = arg.get("name").is_some();
        let name = match self.string(arg, "name")? {
            Some((n, name)) if !names::is_valid_store_name(name) => {
                let problem = format!("`{name}` is not a valid Nix store name");
                return Err(self.error(
                    n,
                    problem,
                    "use letters, digits and `+-._?=`, no leading `.`, at most 211 characters",
                ));
            }
            // A name the writer would compute again is not kept, so that
            // reading and writing a file changes nothing.
            Some((_, name)) if names::store_name_for(fetch_url).as_deref() == Some(name) => None,
            other => other.map(|(_, n)| n.to_owned()),
        };
        let fetch_url = (fetch_url != self.url).then(|| fetch_url.to_owned());
        let body = Body {
            hash: Some(hash),
            size: None,
            file: None,
        };
        Ok(Fetched {
            fetch_url,
            name,
            body: Some(body),
        })
    }
}
