//! Patch rules: parsed from the config the host builds out of `--patch`
//! files, and applied to bodies. Plain Rust, tested natively.
//!
//! The config is a JSON list of rule files, in `--patch` order:
//! `[{"source": "RULES.json", "rules": [RULE, ...]}]`. A rule is what the
//! user wrote: `{"url": REGEX, ACTION}` where ACTION is one of
//! `"find": TEXT, "replace": TEXT` (every occurrence, literally),
//! `"regex": REGEX, "replace": TEXT` (every match; `$1`, `${name}` expand),
//! `"body_file": PATH` (the whole body). The host, which alone reads files,
//! adds the file's bytes to a `body_file` rule as `"body": BASE64`.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use regex::Regex;
use regex::bytes::{NoExpand, Regex as BytesRegex};
use serde_json::{Map, Value};

/// What a rule does to a body whose URL it matches.
#[derive(Debug)]
pub enum Action {
    /// Every occurrence of `find`, replaced literally.
    Find {
        find: String,
        re: BytesRegex,
        replace: String,
    },
    /// Every match, replaced with capture groups expanded.
    Regex { re: BytesRegex, replace: String },
    /// The whole body.
    Body { file: String, bytes: Vec<u8> },
}

#[derive(Debug)]
pub struct Rule {
    /// Where the rule was written: `RULES.json: rule #2 (url "…")`.
    pub label: String,
    pub url: Regex,
    pub action: Action,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// What happened to one rule on one body, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The URL matched but the action found nothing to change.
    Missed,
    /// The action changed (or replaced) the body.
    Hit,
}

#[derive(Debug, Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

const SHAPE: &str = r#"a rule is {"url": REGEX, "find": TEXT, "replace": TEXT}, {"url": REGEX, "regex": REGEX, "replace": TEXT} or {"url": REGEX, "body_file": PATH}"#;

impl Rules {
    /// Parses and compiles the config; an empty config means no rules. An
    /// error names the file, the rule and the fix.
    pub fn parse(config: &str) -> Result<Self, String> {
        if config.trim().is_empty() {
            return Ok(Self::default());
        }
        let files: Vec<Value> = serde_json::from_str(config).map_err(|e| {
            format!(
                "the patch plugin's config is not the JSON the host writes for --patch ({e}); \
                 give rules with `--patch RULES.json`, not as a --plugin config"
            )
        })?;
        let mut rules = Vec::new();
        for file in files {
            let source = file
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or("patch config")
                .to_string();
            let Some(list) = file.get("rules").and_then(Value::as_array) else {
                return Err(format!("{source}: expected a JSON list of rules; {SHAPE}"));
            };
            for (i, rule) in list.iter().enumerate() {
                rules.push(Rule::parse(&source, i, rule)?);
            }
        }
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Indexes of the rules whose URL pattern matches `url`.
    pub fn matching(&self, url: &str) -> impl Iterator<Item = usize> + '_ {
        let url = url.to_string();
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.url.is_match(&url))
            .map(|(i, _)| i)
    }

    /// Applies every rule matching `url`, in order, each to the output of
    /// the one before. Returns the new body if it differs from `body`;
    /// `tally` hears what each matching rule did.
    pub fn apply(
        &self,
        url: &str,
        body: &[u8],
        mut tally: impl FnMut(usize, Applied),
    ) -> Option<Vec<u8>> {
        let mut current: Cow<[u8]> = Cow::Borrowed(body);
        for i in self.matching(url) {
            let (next, applied) = self.rules[i].action.apply(&current);
            tally(i, applied);
            if let Some(next) = next {
                current = Cow::Owned(next);
            }
        }
        match current {
            Cow::Owned(bytes) if bytes != body => Some(bytes),
            _ => None,
        }
    }
}

impl Action {
    /// The new body (none if unchanged) and whether the action found
    /// something to do.
    fn apply(&self, body: &[u8]) -> (Option<Vec<u8>>, Applied) {
        let replaced = match self {
            Action::Find { re, replace, .. } => re.replace_all(body, NoExpand(replace.as_bytes())),
            Action::Regex { re, replace } => re.replace_all(body, replace.as_bytes()),
            Action::Body { bytes, .. } => return (Some(bytes.clone()), Applied::Hit),
        };
        match replaced {
            // `replace_all` borrows exactly when nothing matched.
            Cow::Borrowed(_) => (None, Applied::Missed),
            Cow::Owned(new) => (Some(new), Applied::Hit),
        }
    }

    /// What the action looks for, for messages.
    pub fn describe(&self) -> String {
        match self {
            Action::Find { find, .. } => format!("the text {find:?}"),
            Action::Regex { re, .. } => format!("the regex {:?}", re.as_str()),
            Action::Body { file, .. } => format!("the body from {file}"),
        }
    }
}

impl Rule {
    fn parse(source: &str, index: usize, value: &Value) -> Result<Self, String> {
        let url_hint = value
            .get("url")
            .and_then(Value::as_str)
            .map(|u| format!(" (url {u:?})"))
            .unwrap_or_default();
        let label = format!("{source}: rule #{}{url_hint}", index + 1);
        let err = |why: String| format!("{label}: {why}");
        let Some(obj) = value.as_object() else {
            return Err(err(format!("not a JSON object; {SHAPE}")));
        };
        const KEYS: &[&str] = &["url", "find", "regex", "replace", "body_file", "body"];
        if let Some(key) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(err(format!(
                "unknown key {key:?}; the keys are \"url\", \"find\", \"regex\", \"replace\" and \"body_file\" ({SHAPE})"
            )));
        }
        let text = |key: &str| -> Result<Option<String>, String> {
            match obj.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(err(format!("{key:?} must be a JSON string, not {other}"))),
            }
        };
        let url = text("url")?.ok_or_else(|| {
            err(format!(
                "no \"url\": every rule names the URLs it applies to with a regex, e.g. \"cmake/deps\\\\.cmake$\" ({SHAPE})"
            ))
        })?;
        let url = Regex::new(&url).map_err(|e| {
            err(format!(
                "\"url\" is not a valid regex: {e}\n  (a literal dot or question mark is \\\\. or \\\\? in JSON)"
            ))
        })?;
        let action = action(obj, &text).map_err(err)?;
        Ok(Self { label, url, action })
    }
}

fn action(
    obj: &Map<String, Value>,
    text: &dyn Fn(&str) -> Result<Option<String>, String>,
) -> Result<Action, String> {
    let find = text("find")?;
    let regex = text("regex")?;
    let body_file = text("body_file")?;
    let replace = text("replace")?;
    let given: Vec<&str> = [
        ("find", &find),
        ("regex", &regex),
        ("body_file", &body_file),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| *k)
    .collect();
    match given.as_slice() {
        [] => return Err(format!("no action; {SHAPE}")),
        [_] => {}
        many => {
            return Err(format!(
                "has {} at once; a rule has one action: split it into several rules (they apply in order)",
                many.iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
    }
    if let Some(file) = body_file {
        if replace.is_some() {
            return Err(
                "\"body_file\" replaces the whole body, so \"replace\" has no meaning here: remove it"
                    .into(),
            );
        }
        let Some(Value::String(b64)) = obj.get("body") else {
            return Err(format!(
                "\"body_file\" {file:?} was not read: body files are read by buildproxy from \
                 `--patch RULES.json` (relative to that file), not from a plugin config"
            ));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the body of {file:?} is not valid base64: {e}"))?;
        return Ok(Action::Body { file, bytes });
    }
    if obj.contains_key("body") {
        return Err(
            "unknown key \"body\"; to replace the whole body, name a file with \"body_file\""
                .into(),
        );
    }
    let Some(replace) = replace else {
        let key = if find.is_some() { "find" } else { "regex" };
        return Err(format!(
            "{key:?} without \"replace\": say what to put instead (\"replace\": \"\" deletes)"
        ));
    };
    if let Some(find) = find {
        if find.is_empty() {
            return Err("\"find\" is empty: give the text to look for".into());
        }
        let re = BytesRegex::new(&regex::escape(&find)).map_err(|e| e.to_string())?;
        return Ok(Action::Find { find, re, replace });
    }
    let regex = regex.expect("one action was given");
    let re = BytesRegex::new(&regex).map_err(|e| format!("\"regex\" is not a valid regex: {e}"))?;
    check_references(&re, &replace)?;
    Ok(Action::Regex { re, replace })
}

/// Every `$group` in `replace` must name a group of `re`: the regex crate
/// silently expands an unknown one to nothing, and `$1abc` is the group
/// named `1abc`, not group 1 followed by `abc`.
fn check_references(re: &BytesRegex, replace: &str) -> Result<(), String> {
    let names: Vec<&str> = re.capture_names().flatten().collect();
    let mut rest = replace;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => ("", rest),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        rest = after;
        if name.is_empty() {
            continue; // a lone `$` is literal
        }
        let known = match name.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => names.contains(&name),
        };
        if !known {
            let groups = re.captures_len() - 1;
            return Err(format!(
                "\"replace\" refers to ${name}, which is not a group of the regex (it has {groups} numbered group{}{}). \
                 To put text right after a group write ${{1}}text; a literal dollar is $$",
                if groups == 1 { "" } else { "s" },
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" and the named ones {names:?}")
                }
            ));
        }
    }
    Ok(())
}
