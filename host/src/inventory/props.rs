//! Property tests (proptest) of what reads and writes user-facing files and
//! match keys: the content/JSON loader, the `proxy_content.nix` writer and
//! reader, store names, and URL normalisation (here and in the proxy).
//!
//! Each property runs `PROPTEST_CASES` cases (256 by default, a few seconds
//! in all). A longer run, as documented in README "Guarantees":
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test -p buildproxy --lib inventory::props
//! ```
//!
//! The Nix round trip through a real `nix-instantiate --eval` runs on a
//! smaller sample (each case is one evaluation).

use super::content::{self, RawEntry};
use super::index::normalize_url;
use super::nix::{self, parse_str, render};
use super::{Body, Entry, InventoryError, names};
use crate::proxy::url::absolute;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Any text, with the characters that matter to quoting, escaping and URL
/// parsing over-represented.
fn nasty_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("${".to_string()),
        Just("$".to_string()),
        Just("''".to_string()),
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("\t".to_string()),
        Just("%2F".to_string()),
        Just("/".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(".".to_string()),
        Just("é".to_string()),
        Just("日本".to_string()),
        Just("\u{1F600}".to_string()),
        "[a-zA-Z0-9._~-]{1,8}",
        any::<char>()
            .prop_filter("no NUL", |c| *c != '\0')
            .prop_map(String::from),
    ];
    vec(pieces, 0..12).prop_map(|v| v.concat())
}

fn url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("https"), Just("http"), Just("HTTPS"), Just("ftp")],
        "[a-zA-Z0-9.-]{1,12}",
        proptest::option::of(0u32..70000),
        nasty_text(),
    )
        .prop_map(|(scheme, host, port, tail)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}/{tail}")
        })
}

fn sri_hash() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|d| nix::sri(&d))
}

fn header_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,15}"
}

fn store_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9+_?=-][a-zA-Z0-9+._?=-]{0,40}"
}

/// Entries as capture makes them, before any file: lower-case header
/// names, upper-case methods, hashes in SRI form, no size or file (a Nix
/// file records neither).
fn entry() -> impl Strategy<Value = Entry> {
    (
        url(),
        prop_oneof![
            Just("GET".to_string()),
            Just("HEAD".to_string()),
            Just("POST".to_string()),
            "[A-Z]{1,7}"
        ],
        100u16..=999,
        btree_map(header_name(), nasty_text(), 0..4),
        btree_map(header_name(), nasty_text(), 0..2),
        proptest::option::of((
            sri_hash(),
            proptest::option::of(url()),
            proptest::option::of(store_name()),
        )),
    )
        .prop_map(|(url, method, status, headers, request_headers, body)| {
            let (body, fetch_url, name) = match body {
                None => (None, None, None),
                Some((hash, fetch_url, name)) => (
                    Some(Body {
                        hash: Some(hash),
                        size: None,
                        file: None,
                    }),
                    fetch_url,
                    name,
                ),
            };
            Entry {
                method,
                url,
                fetch_url,
                name,
                status,
                headers,
                request_headers,
                body,
            }
        })
}

/// What reading a rendered file must give back for `e`: the writer leaves
/// out what it would compute again (a fetch URL equal to the URL, a name
/// equal to the one derived from the fetch URL), so the reader does too.
fn as_read_back(mut e: Entry) -> Entry {
    if e.fetch_url.as_deref() == Some(e.url.as_str()) || e.body.is_none() {
        e.fetch_url = None;
    }
    if e.body.is_none() || e.name.is_some() && e.name == names::store_name_for(e.fetch_url()) {
        e.name = None;
    }
    e
}

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    v
}

proptest! {
    /// render → parse gives the same entries, and rendering again gives the
    /// same text (re-capturing an unchanged build changes nothing).
    #[test]
    fn nix_render_then_parse_is_the_identity(entries in vec(entry(), 0..8)) {
        let text = render(&entries).unwrap();
        let back = parse_str(Path::new("p.nix"), &text).unwrap();
        let want = sorted(entries.into_iter().map(as_read_back).collect());
        prop_assert_eq!(&back, &want);
        prop_assert_eq!(render(&back).unwrap(), text);
    }

    /// The reader never panics, whatever it is given: text cut, spliced or
    /// made up returns entries or an error naming the file.
    #[test]
    fn nix_reader_never_panics(
        entries in vec(entry(), 1..4),
        cut in any::<prop::sample::Index>(),
        junk in nasty_text(),
        raw in ".{0,200}",
    ) {
        let text = render(&entries).unwrap();
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        for src in [format!("{}{junk}", &text[..at]), format!("{}{junk}{}", &text[..at], &text[at..]), raw] {
            if let Err(e) = parse_str(Path::new("p.nix"), &src) {
                prop_assert!(e.to_string().starts_with("p.nix"), "{}", e);
            }
        }
    }

    /// Whatever the URL, the name given to fetchurl is one Nix accepts.
    #[test]
    fn store_names_are_always_valid(url in prop_oneof![url(), nasty_text()]) {
        match names::store_name_for(&url) {
            Some(name) => prop_assert!(names::is_valid_store_name(&name), "{:?} -> {:?}", url, name),
            None => prop_assert!(names::url_store_name(&url).is_some(), "{:?}", url),
        }
    }

    /// Normalising twice changes nothing, and never panics.
    #[test]
    fn normalize_url_is_idempotent(url in prop_oneof![url(), nasty_text(), ".*"]) {
        let once = normalize_url(&url);
        prop_assert_eq!(normalize_url(&once), once);
    }

    /// Spellings HTTP calls equal share a key: scheme and host case, the
    /// default port, a fragment.
    #[test]
    fn equal_spellings_share_a_key(
        https in any::<bool>(),
        host in "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,2}",
        path in "(/[a-zA-Z0-9%._~!$&'()*+,;=:@-]{0,8}){0,4}",
        query in proptest::option::of("[a-zA-Z0-9%=&/?._~-]{0,12}"),
        fragment in "[a-z0-9]{0,6}",
    ) {
        let scheme = if https { "https" } else { "http" };
        let port = if https { 443 } else { 80 };
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        let canonical = normalize_url(&format!("{scheme}://{host}{path}{q}"));
        let shouty = format!("{}://{}:{port}{path}{q}#{fragment}", scheme.to_uppercase(), host.to_uppercase());
        prop_assert_eq!(normalize_url(&shouty), canonical.clone());
        // The proxy writes the URL it saw in this same normal form.
        let p = if path.is_empty() { "/" } else { &path };
        prop_assert_eq!(absolute(scheme, &host.to_uppercase(), Some(port), &format!("{p}{q}")), canonical);
    }

    /// Distinct resources never share a key: path and query are compared
    /// byte for byte (no decoding of `%2F`, no dot-segment removal).
    #[test]
    fn distinct_paths_never_collide(
        a in "/[a-zA-Z0-9%./?=&~-]{0,16}",
        b in "/[a-zA-Z0-9%./?=&~-]{0,16}",
        port in proptest::option::of(1u16..),
    ) {
        prop_assume!(a != b);
        let host = "e.org";
        let ka = normalize_url(&absolute("https", host, port, &a));
        let kb = normalize_url(&absolute("https", host, port, &b));
        prop_assert_ne!(ka, kb);
    }

    /// The proxy's URLs are already normal: the index finds what a plugin
    /// recorded under the URL the proxy gave it.
    #[test]
    fn proxy_urls_are_already_normal(
        scheme in prop_oneof![Just("http"), Just("https")],
        host in prop_oneof!["[a-zA-Z0-9.-]{1,12}", Just("::1".to_string()), Just("[::1]".to_string())],
        port in proptest::option::of(any::<u16>()),
        pq in "(/[^#\\s]{0,20})?",
    ) {
        let url = absolute(scheme, &host, port, &pq);
        prop_assert_eq!(normalize_url(&url), url.clone());
    }
}

/// A content file on disk with one body file under an allowed root.
struct ContentDir {
    dir: tempfile::TempDir,
    blob: PathBuf,
}

impl ContentDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let blob = root.join("blob");
        std::fs::write(&blob, b"hello").unwrap();
        Self { dir, blob }
    }

    fn load(&self, bytes: &[u8]) -> Result<Vec<Entry>, InventoryError> {
        let path = self.dir.path().join("content.json");
        std::fs::write(&path, bytes).unwrap();
        content::load(&path, &[self.dir.path().join("root")])
    }
}

/// Raw entries as Nix's builtins.toJSON writes them, with unique match keys.
fn raw_entries() -> impl Strategy<Value = Vec<RawEntry>> {
    vec(
        (
            url(),
            prop_oneof![
                Just("GET".to_string()),
                Just("get".to_string()),
                Just("Head".to_string()),
                "[A-Z]{1,6}"
            ],
            100u16..=999,
            btree_map("[a-zA-Z][a-zA-Z0-9-]{0,10}", nasty_text(), 0..3),
            any::<bool>(),
            proptest::option::of(sri_hash()),
            proptest::option::of(url()),
            proptest::option::of(store_name()),
        ),
        0..10,
    )
    .prop_map(|rows| {
        let mut seen = HashSet::new();
        rows.into_iter()
            .filter_map(
                |(url, method, status, headers, has_file, hash, fetch_url, name)| {
                    // Header names differing only in case are an error of their own.
                    let lower: HashSet<_> =
                        headers.keys().map(|k| k.to_ascii_lowercase()).collect();
                    (lower.len() == headers.len()
                        && !url.is_empty()
                        && seen.insert((method.to_ascii_uppercase(), normalize_url(&url))))
                    .then(|| RawEntry {
                        url,
                        method,
                        status_code: status,
                        headers,
                        request_headers: Default::default(),
                        file: has_file.then(String::new),
                        hash,
                        fetch_url,
                        name,
                    })
                },
            )
            .collect()
    })
}

proptest! {
    /// JSON from the schema loads back as the same entries: methods
    /// upper-cased, header names lower-cased, each body's size from its file.
    #[test]
    fn content_json_loads_what_it_says(raws in raw_entries()) {
        let cd = ContentDir::new();
        let raws: Vec<RawEntry> = raws
            .into_iter()
            .map(|mut r| {
                if r.file.is_some() {
                    r.file = Some(cd.blob.display().to_string());
                }
                r
            })
            .collect();
        let got = cd.load(&serde_json::to_vec(&raws).unwrap()).unwrap();
        let blob = std::fs::canonicalize(&cd.blob).unwrap();
        prop_assert_eq!(got.len(), raws.len());
        for (e, r) in got.iter().zip(&raws) {
            prop_assert_eq!(&e.url, &r.url);
            prop_assert_eq!(&e.method, &r.method.to_ascii_uppercase());
            prop_assert_eq!(e.status, r.status_code);
            let headers: BTreeMap<String, String> = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            prop_assert_eq!(&e.headers, &headers);
            prop_assert_eq!(&e.fetch_url, &r.fetch_url);
            prop_assert_eq!(&e.name, &r.name);
            let want = r.file.as_ref().map(|_| Body {
                hash: r.hash.clone(),
                size: Some(5),
                file: Some(blob.clone()),
            });
            prop_assert_eq!(&e.body, &want);
        }
    }

    /// Any bytes, and any JSON value: an error naming the file, or entries;
    /// never a panic, never a file outside the roots.
    #[test]
    fn content_loader_never_panics(
        bytes in vec(any::<u8>(), 0..200),
        json in json_value(),
    ) {
        let cd = ContentDir::new();
        let text = serde_json::to_vec(&json).unwrap();
        for input in [&bytes[..], &text[..]] {
            match cd.load(input) {
                Err(e) => prop_assert!(e.to_string().contains("content.json"), "{}", e),
                Ok(entries) => {
                    for e in entries {
                        if let Some(file) = e.body.and_then(|b| b.file) {
                            prop_assert!(file.starts_with(cd.dir.path().join("root")) || file.starts_with("/nix/store"));
                        }
                    }
                }
            }
        }
    }
}

/// JSON values shaped roughly like content files, often wrongly.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        nasty_text().prop_map(Value::String),
        Just(Value::String("/etc/passwd".into())),
        Just(Value::String("../root/blob".into())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(
                (
                    prop_oneof![
                        Just("url".to_string()),
                        Just("file".to_string()),
                        Just("method".to_string()),
                        Just("status_code".to_string()),
                        Just("headers".to_string()),
                        Just("hash".to_string()),
                        Just("name".to_string()),
                        "[a-z]{1,5}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Tests that run an outside program (here a real `nix-instantiate`). The
/// Nix package's check phase has no Nix in it, so `nix/package.nix` skips
/// every module of this name, explicitly (`checkFlags`); the e2e test
/// `suite::the_package_check_phase_runs_no_test_that_needs_an_outside_program`
/// fails if a test outside such a module needs a program.
mod needs_tools {
    use super::*;

    /// What the writer renders, real Nix reads as the same entries: url,
    /// method, status, headers, and each body's fetchurl url, hash and name.
    #[test]
    fn nix_instantiate_reads_what_the_writer_meant() {
        // Checked once, so a missing Nix is one line, not one per case.
        let nix = std::process::Command::new("nix-instantiate")
            .arg("--version")
            .output();
        assert!(
            nix.is_ok_and(|o| o.status.success()),
            "this test needs `nix-instantiate`, which is not installed: apt-get install nix-bin \
             (tests/run.sh installs everything the tests need)"
        );
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse::<u32>().ok())
            .map_or(12, |c| (c / 50).max(12));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            ..ProptestConfig::default()
        });
        runner
            .run(&vec(entry(), 1..6), |entries| {
                let dir = tempfile::tempdir().unwrap();
                let file = dir.path().join("proxy_content.nix");
                nix::write_atomic(&file, &entries).unwrap();
                let expr = format!("import {} {{ fetchurl = args: args; }}", file.display());
                let out = std::process::Command::new("nix-instantiate")
                    .args(["--eval", "--strict", "--json", "-E", &expr])
                    .output()
                    .unwrap();
                prop_assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let got: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
                let want = sorted(entries);
                prop_assert_eq!(got.len(), want.len());
                for (g, e) in got.iter().zip(&want) {
                    prop_assert_eq!(g["url"].as_str(), Some(e.url.as_str()));
                    prop_assert_eq!(g["method"].as_str(), Some(e.method.as_str()));
                    prop_assert_eq!(g["status_code"].as_u64(), Some(u64::from(e.status)));
                    let headers: BTreeMap<String, String> =
                        serde_json::from_value(g["headers"].clone()).unwrap();
                    prop_assert_eq!(&headers, &e.headers);
                    match &e.body {
                        None => prop_assert!(g["file"].is_null()),
                        Some(b) => {
                            let f = &g["file"];
                            prop_assert_eq!(f["url"].as_str(), Some(e.fetch_url()));
                            prop_assert_eq!(f["hash"].as_str(), b.hash.as_deref());
                            let name = e
                                .name
                                .clone()
                                .or_else(|| names::store_name_for(e.fetch_url()));
                            prop_assert_eq!(f["name"].as_str(), name.as_deref());
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}

proptest! {
    /// A Range answer never reaches outside the body: whatever the header,
    /// a satisfiable range is within `0..size` and non-empty.
    #[test]
    fn ranges_stay_inside_the_body(
        header in prop_oneof![
            "bytes=[0-9]{0,20}-[0-9]{0,20}",
            "bytes= ?-?[0-9]{0,4} ?- ?[0-9]{0,4}",
            ".{0,20}",
        ],
        size in prop_oneof![Just(0u64), Just(1), any::<u64>(), 0u64..10_000],
    ) {
        if let Some(Ok((start, end))) = crate::proxy::body::parse_range(&header, size) {
            prop_assert!(start <= end && end < size, "{:?} on {}: {}-{}", header, size, start, end);
        }
    }
}
