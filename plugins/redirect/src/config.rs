//! The redirect plugin's config: which policy, and for which URLs.
//!
//! The config string is empty (all defaults), `faithful` or `flatten` (the
//! replay policy for every chain), or a JSON object:
//!
//! ```json
//! { "replay": "faithful",
//!   "flatten": ["^https://github\\.com/"],
//!   "forget": ["://objects\\.githubusercontent\\.com/"],
//!   "unstable": ["/latest/"],
//!   "reject": ["\\.(md5|sha1|sha256|sha512|asc)$"],
//!   "max-hops": 20 }
//! ```
//!
//! Patterns are regular expressions searched anywhere in the absolute URL
//! (anchor them with `^`/`$` when needed).

use regex_lite::Regex;
use serde::Deserialize;

/// The limit curl and most clients use is 50; a chain of 20 is already far
/// beyond anything a download needs, and usually a loop.
pub const DEFAULT_MAX_HOPS: usize = 20;

#[derive(Debug)]
pub struct Config {
    /// Replay: flatten every chain, not only those matching `flatten`.
    pub flatten_all: bool,
    /// Replay: chains whose first URL matches answer with the final response.
    pub flatten: Patterns,
    /// Capture: a redirect from or to a matching URL is not recorded; the
    /// URL that made it is recorded with the final response instead.
    pub forget: Patterns,
    /// Capture: URLs never used as a fetch URL (what they redirect to
    /// changes over time, like `/latest/`).
    pub unstable: Patterns,
    /// Capture and replay: answered 404 locally; nothing recorded, no miss.
    pub reject: Patterns,
    /// A chain reaching this many redirects is stopped and reported.
    pub max_hops: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            flatten_all: false,
            flatten: Patterns::default(),
            forget: Patterns::default(),
            unstable: Patterns::default(),
            reject: Patterns::default(),
            max_hops: DEFAULT_MAX_HOPS,
        }
    }
}

/// A list of compiled patterns, kept with their source for messages.
#[derive(Debug, Default)]
pub struct Patterns(Vec<(String, Regex)>);

impl Patterns {
    /// The first pattern that matches `url`, as written in the config.
    pub fn find(&self, url: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, re)| re.is_match(url))
            .map(|(src, _)| src.as_str())
    }

    pub fn matches(&self, url: &str) -> bool {
        self.find(url).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn compile(option: &str, sources: Vec<String>) -> Result<Self, String> {
        sources
            .into_iter()
            .map(|src| match Regex::new(&src) {
                Ok(re) => Ok((src, re)),
                Err(e) => Err(format!(
                    "\"{option}\": pattern {src:?} is not a valid regex: {e}"
                )),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    #[serde(default)]
    replay: Option<String>,
    #[serde(default)]
    flatten: Vec<String>,
    #[serde(default)]
    forget: Vec<String>,
    #[serde(default)]
    unstable: Vec<String>,
    #[serde(default)]
    reject: Vec<String>,
    #[serde(default)]
    max_hops: Option<usize>,
}

const SHAPE: &str = "the redirect plugin takes an empty config, `faithful`, `flatten`, or a JSON \
     object with any of \"replay\" (\"faithful\" or \"flatten\"), \"flatten\", \"forget\", \
     \"unstable\", \"reject\" (lists of regexes) and \"max-hops\" (a number)";

impl Config {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "" | "faithful" => return Ok(Self::default()),
            "flatten" => {
                return Ok(Self {
                    flatten_all: true,
                    ..Self::default()
                });
            }
            _ => {}
        }
        if !text.starts_with('{') {
            return Err(format!("unknown option {text:?}; {SHAPE}"));
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| format!("{e}; {SHAPE}"))?;
        let flatten_all = match raw.replay.as_deref() {
            None | Some("faithful") => false,
            Some("flatten") => true,
            Some(other) => {
                return Err(format!(
                    "\"replay\": {other:?} is not a policy; use \"faithful\" (serve each recorded \
                     redirect, the client follows) or \"flatten\" (answer the first URL with the \
                     final response)"
                ));
            }
        };
        let max_hops = raw.max_hops.unwrap_or(DEFAULT_MAX_HOPS);
        if max_hops == 0 {
            return Err("\"max-hops\" must be at least 1".into());
        }
        Ok(Self {
            flatten_all,
            flatten: Patterns::compile("flatten", raw.flatten)?,
            forget: Patterns::compile("forget", raw.forget)?,
            unstable: Patterns::compile("unstable", raw.unstable)?,
            reject: Patterns::compile("reject", raw.reject)?,
            max_hops,
        })
    }

    /// Whether replay answers `first_url`'s chain with its final response.
    pub fn flattens(&self, first_url: &str) -> bool {
        self.flatten_all || self.flatten.matches(first_url)
    }

    /// Whether the redirect `from` → `to` is forgotten at capture.
    pub fn forgets(&self, from: &str, to: &str) -> bool {
        self.forget.matches(from) || self.forget.matches(to)
    }
}
