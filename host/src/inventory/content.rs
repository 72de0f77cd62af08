//! The replay inventory: the JSON that Nix builds from a `proxy_content.nix`.
//!
//! In the sandbox, Nix has already fetched and verified every body; this
//! JSON (`builtins.toJSON` of the list, each `fetchurl` turned into its
//! store path) tells replay which file answers which request. Loading only
//! stats files: bodies are streamed from disk when a request asks for them.
//! Files outside the Nix store are refused unless explicitly allowed, so a
//! crafted content file cannot make replay serve arbitrary host files.

use super::index::normalize_url;
use super::{Body, Entry, InventoryError, names, nix};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// The one root every content file may point into.
pub const NIX_STORE: &str = "/nix/store";

/// One entry as stored in JSON; shared with the `--store` index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RawEntry {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_status")]
    pub status_code: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request headers that selected this representation (content
    /// negotiation): part of the match key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, String>,
    /// Required, but may be `null`: a missing `file` is more likely a broken
    /// generator than a status-only entry.
    #[serde(deserialize_with = "Option::deserialize")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_status() -> u16 {
    200
}

/// What is wrong with an entry's `file`, and how to fix it.
pub(crate) type FileProblem = (String, &'static str);

/// Loads a content JSON file for replay.
///
/// Every `file` must be a regular file under `/nix/store` or under one of
/// `allowed_roots` (after resolving `..` and symlinks); its size comes from
/// its metadata. Two entries for the same request are an error.
pub fn load(path: &Path, allowed_roots: &[PathBuf]) -> Result<Vec<Entry>, InventoryError> {
    let raws = read_raw(path)?;
    let mut resolver = Resolver::new(allowed_roots);
    to_entries(path, raws, |file, _hash| resolver.resolve(file))
}

/// Parses a JSON list of [`RawEntry`]; unknown fields are ignored.
pub(crate) fn read_raw(path: &Path) -> Result<Vec<RawEntry>, InventoryError> {
    let bytes = fs::read(path).map_err(|e| InventoryError::io(path, "read", e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        let (line, column) = (e.line(), e.column());
        if e.classify() == serde_json::error::Category::Data
            && let Some((index, url)) = first_unfit_entry(&bytes)
        {
            return InventoryError::InvalidEntry {
                path: path.to_owned(),
                pos: Some((line, column)),
                index,
                url,
                fix: fix_for(&message),
                problem: message,
            };
        }
        InventoryError::Json {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    })
}

/// For valid JSON that is not in our schema: the index and URL of the
/// first entry that does not fit, so the message can name it. Runs only
/// on the error path: loading a good file parses it once.
fn first_unfit_entry(bytes: &[u8]) -> Option<(usize, String)> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    values.into_iter().enumerate().find_map(|(index, v)| {
        let url = v
            .get("url")
            .and_then(|u| u.as_str())
            .unwrap_or("?")
            .to_owned();
        serde_json::from_value::<RawEntry>(v)
            .is_err()
            .then_some((index, url))
    })
}

fn fix_for(problem: &str) -> &'static str {
    if problem.contains("missing field `file`") {
        "give `\"file\": null` for a status-only entry (a redirect hop, a 404 probe), \
         or the path of its body"
    } else if problem.contains("missing field `url`") {
        "give the URL the build requested"
    } else {
        "each entry is {\"url\", \"file\", \"status_code\"?, \"headers\"?, \"method\"?, \
         \"hash\"?}, as Nix's builtins.toJSON makes from a proxy_content.nix: fix the entry \
         or build the file again"
    }
}

/// Checks raw entries and turns them into [`Entry`]s, asking `resolve` for
/// each body's file and size (given the `file` text and the SRI hash).
pub(crate) fn to_entries(
    path: &Path,
    raws: Vec<RawEntry>,
    mut resolve: impl FnMut(&str, Option<&str>) -> Result<(PathBuf, u64), FileProblem>,
) -> Result<Vec<Entry>, InventoryError> {
    let mut seen: HashMap<(String, String, BTreeMap<String, String>), usize> =
        HashMap::with_capacity(raws.len());
    let mut out = Vec::with_capacity(raws.len());
    for (index, mut raw) in raws.into_iter().enumerate() {
        let invalid = |problem: String, fix: &'static str| InventoryError::InvalidEntry {
            path: path.to_owned(),
            pos: None,
            index,
            url: raw.url.clone(),
            problem,
            fix,
        };
        if raw.url.is_empty() {
            return Err(invalid(
                "`url` is empty".into(),
                "give the URL the build requested",
            ));
        }
        if raw.method.is_empty() || !raw.method.bytes().all(|b| b.is_ascii_graphic()) {
            let problem = format!("`{}` is not an HTTP method", raw.method);
            return Err(invalid(problem, "write a method such as \"GET\""));
        }
        if !(100..=999).contains(&raw.status_code) {
            let problem = format!("status code {} is not an HTTP status", raw.status_code);
            return Err(invalid(problem, "use a three-digit status such as 200"));
        }
        let headers = match lowercase_headers(&raw.headers) {
            Ok(None) => std::mem::take(&mut raw.headers),
            Ok(Some(h)) => h,
            Err(k) => {
                let problem = format!("header `{k}` appears twice (names are case-insensitive)");
                return Err(invalid(problem, "keep one of them"));
            }
        };
        let request_headers = match lowercase_headers(&raw.request_headers) {
            Ok(None) => std::mem::take(&mut raw.request_headers),
            Ok(Some(h)) => h,
            Err(k) => {
                let problem =
                    format!("request header `{k}` appears twice (names are case-insensitive)");
                return Err(invalid(problem, "keep one of them"));
            }
        };
        if let Some(name) = raw
            .name
            .as_deref()
            .filter(|n| !names::is_valid_store_name(n))
        {
            let problem = format!("`{name}` is not a valid Nix store name");
            return Err(invalid(
                problem,
                "use letters, digits and `+-._?=`, at most 211 characters",
            ));
        }
        let hash = match raw.hash.as_deref().map(nix::to_sri).transpose() {
            Ok(h) => h,
            Err(problem) => return Err(invalid(problem, "write `hash` as SRI (`sha256-…`)")),
        };
        let body = match raw.file.as_deref() {
            None => None,
            Some(file) => {
                let (file, size) =
                    resolve(file, hash.as_deref()).map_err(|(p, fix)| invalid(p, fix))?;
                Some(Body {
                    hash,
                    size: Some(size),
                    file: Some(file),
                })
            }
        };
        let method = raw.method.to_ascii_uppercase();
        let key = (
            method.clone(),
            normalize_url(&raw.url),
            request_headers.clone(),
        );
        if let Some(&first) = seen.get(&key) {
            return Err(InventoryError::Duplicate {
                path: path.to_owned(),
                first,
                second: index,
                method,
                url: raw.url,
            });
        }
        seen.insert(key, index);
        out.push(Entry {
            method,
            url: raw.url,
            fetch_url: raw.fetch_url,
            name: raw.name,
            status: raw.status_code,
            headers,
            request_headers,
            body,
        });
    }
    Ok(out)
}

/// `headers` with lower-case names, or `None` if they already are (the
/// common case, so loading need not rebuild the map); `Err` names a header
/// that appears twice when case is ignored.
fn lowercase_headers(
    headers: &BTreeMap<String, String>,
) -> Result<Option<BTreeMap<String, String>>, &str> {
    if headers
        .keys()
        .all(|k| !k.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Ok(None);
    }
    let mut out = BTreeMap::new();
    for (k, v) in headers {
        if out.insert(k.to_ascii_lowercase(), v.clone()).is_some() {
            return Err(k);
        }
    }
    Ok(Some(out))
}

/// Resolves and checks `file` paths, once per distinct path: content files
/// often point many entries at one store path, and a stat per entry would
/// dominate loading.
struct Resolver {
    roots: Vec<PathBuf>,
    cache: HashMap<String, Result<(PathBuf, u64), FileProblem>>,
}

impl Resolver {
    fn new(allowed: &[PathBuf]) -> Self {
        let roots = std::iter::once(Path::new(NIX_STORE))
            .chain(allowed.iter().map(PathBuf::as_path))
            // A root that does not exist yet cannot contain a file either;
            // canonicalise the ones that do so symlinked roots compare.
            .map(|r| fs::canonicalize(r).unwrap_or_else(|_| r.to_owned()))
            .collect();
        Resolver {
            roots,
            cache: HashMap::new(),
        }
    }

    fn resolve(&mut self, file: &str) -> Result<(PathBuf, u64), FileProblem> {
        if let Some(hit) = self.cache.get(file) {
            return hit.clone();
        }
        let result = self.check(file);
        self.cache.insert(file.to_owned(), result.clone());
        result
    }

    fn check(&self, file: &str) -> Result<(PathBuf, u64), FileProblem> {
        check_file(&self.roots, file)
    }
}

/// Resolves `file` (symlinks, `..`) and checks that it is a regular file
/// under one of `roots` (canonical); returns its real path and size.
pub(crate) fn check_file(roots: &[PathBuf], file: &str) -> Result<(PathBuf, u64), FileProblem> {
    let rebuild =
        "build the content file again (the store paths it names must exist on this machine)";
    if !Path::new(file).is_absolute() {
        return Err((format!("`file` {file:?} is not an absolute path"), rebuild));
    }
    let real = fs::canonicalize(file)
        .map_err(|e| (format!("`file` {file} cannot be opened: {e}"), rebuild))?;
    if !roots.iter().any(|r| real.starts_with(r)) {
        let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        let really = if real.as_path() == Path::new(file) {
            String::new()
        } else {
            format!(" (really {})", real.display())
        };
        return Err((
            format!(
                "`file` {file}{really} is outside the allowed roots ({})",
                roots.join(", ")
            ),
            "point it into the Nix store, or allow its directory with --allow-root DIR",
        ));
    }
    let meta =
        fs::metadata(&real).map_err(|e| (format!("`file` {file} cannot be read: {e}"), rebuild))?;
    if !meta.is_file() {
        return Err((
            format!("`file` {file} is not a regular file"),
            "point it at the downloaded file itself (unpacked outputs such as fetchzip's are not bodies)",
        ));
    }
    Ok((real, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    struct Fixture {
        dir: tempfile::TempDir,
        blob: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("root/blob");
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, b"hello").unwrap();
        Fixture { dir, blob }
    }

    impl Fixture {
        fn root(&self) -> Vec<PathBuf> {
            vec![self.dir.path().join("root")]
        }

        fn load(&self, json: &str) -> Result<Vec<Entry>, InventoryError> {
            let path = self.dir.path().join("content.json");
            fs::write(&path, json).unwrap();
            load(&path, &self.root())
        }
    }

    #[test]
    fn loads_with_defaults_and_ignores_unknown_fields() {
        let fx = fixture();
        let json = format!(
            r#"[{{"url": "https://e.org/a", "file": "{}", "hash": "{SRI}", "extra": 1}},
                {{"url": "https://e.org/b", "file": null, "status_code": 404, "method": "head",
                  "headers": {{"X-A": "1"}}}}]"#,
            fx.blob.display()
        );
        let got = fx.load(&json).unwrap();
        assert_eq!(got[0].method, "GET");
        assert_eq!(got[0].status, 200);
        let body = got[0].body.as_ref().unwrap();
        assert_eq!(body.size, Some(5));
        assert_eq!(body.hash.as_deref(), Some(SRI));
        assert_eq!(
            body.file.as_deref(),
            Some(fs::canonicalize(&fx.blob).unwrap().as_path())
        );
        assert_eq!(got[1].method, "HEAD");
        assert_eq!(got[1].headers.get("x-a").map(String::as_str), Some("1"));
        assert!(got[1].body.is_none());
    }

    #[test]
    fn refuses_files_outside_the_roots() {
        let fx = fixture();
        let outside = fx.dir.path().join("secret");
        fs::write(&outside, b"x").unwrap();
        let dotdot = format!("{}/../secret", fx.root()[0].display());
        let link = fx.root()[0].join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        for file in [
            outside.display().to_string(),
            dotdot,
            link.display().to_string(),
        ] {
            let json = format!(r#"[{{"url": "https://e.org/a", "file": "{file}"}}]"#);
            let err = fx.load(&json).unwrap_err().to_string();
            assert!(err.contains("outside the allowed roots"), "{err}");
            assert!(err.contains("entry [0] (https://e.org/a)"), "{err}");
        }
        // With no roots given, only the Nix store is allowed.
        let path = fx.dir.path().join("c.json");
        let json = format!(r#"[{{"url": "u", "file": "{}"}}]"#, fx.blob.display());
        fs::write(&path, json).unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        assert!(err.contains(NIX_STORE), "{err}");
    }

    #[test]
    fn missing_and_non_regular_files_are_errors() {
        let fx = fixture();
        let missing = fx.root()[0].join("missing");
        let json = format!(r#"[{{"url": "u", "file": "{}"}}]"#, missing.display());
        assert!(
            fx.load(&json)
                .unwrap_err()
                .to_string()
                .contains("cannot be opened")
        );
        let json = format!(r#"[{{"url": "u", "file": "{}"}}]"#, fx.root()[0].display());
        assert!(
            fx.load(&json)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        let json = r#"[{"url": "u", "file": "relative/x"}]"#;
        assert!(
            fx.load(json)
                .unwrap_err()
                .to_string()
                .contains("not an absolute path")
        );
    }

    #[test]
    fn malformed_json_names_file_line_and_column() {
        let fx = fixture();
        let err = fx
            .load("[\n  {\"url\": \"u\", \"file\": null,}\n]")
            .unwrap_err();
        let InventoryError::Json { line, path, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*line, 2);
        assert!(path.ends_with("content.json"));
        let err = fx.load(r#"[{"url": "u"}]"#).unwrap_err().to_string();
        assert!(err.contains("missing field `file`"), "{err}");
        let err = fx
            .load(r#"[{"url": "u", "file": null, "status_code": "x"}]"#)
            .unwrap_err();
        assert!(err.to_string().contains(":1:"), "{err}");
    }

    #[test]
    fn duplicates_name_both_indexes() {
        let fx = fixture();
        let json = r#"[{"url": "http://E.org/a", "file": null}, {"url": "x", "file": null},
                      {"url": "http://e.org:80/a", "file": null, "method": "get"}]"#;
        let err = fx.load(json).unwrap_err().to_string();
        assert!(err.contains("entries [0] and [2]"), "{err}");
        let ok = r#"[{"url": "http://e.org/a", "file": null},
                     {"url": "http://e.org/a", "file": null, "method": "HEAD"}]"#;
        assert_eq!(fx.load(ok).unwrap().len(), 2);
    }

    #[test]
    fn bad_hashes_are_errors() {
        let fx = fixture();
        let json = r#"[{"url": "u", "file": null, "hash": "md5-abc"}]"#;
        assert!(fx.load(json).unwrap_err().to_string().contains("md5"));
    }

    #[test]
    fn loads_100k_entries_sharing_one_file() {
        let fx = fixture();
        let mut json = String::from("[");
        for i in 0..100_000 {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!(
                r#"{{"url":"https://e.org/f/{i}","status_code":200,"headers":{{"content-type":"application/octet-stream"}},"file":"{}","hash":"{SRI}"}}"#,
                fx.blob.display()
            ));
        }
        json.push(']');
        let path = fx.dir.path().join("big.json");
        fs::write(&path, json).unwrap();
        // Speed is the benchmark's business (tests/bench); this proves the
        // size is handled and reports the time for the curious.
        let start = Instant::now();
        let got = load(&path, &fx.root()).unwrap();
        eprintln!("loaded 100k entries in {:?}", start.elapsed());
        assert_eq!(got.len(), 100_000);
        assert_eq!(got[99_999].url, "https://e.org/f/99999");
    }
}
