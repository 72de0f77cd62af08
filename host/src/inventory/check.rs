//! What will go wrong with an inventory, entry by entry: the rules behind
//! `buildproxy check`.
//!
//! A `proxy_content.nix` can load fine and still fail later, on another
//! machine or months on: Nix cannot fetch a POST, a signed URL expires, a
//! store name makes evaluation fail, two recordings of one URL make replay
//! refuse to start. Each rule here names such a failure and its fix, from
//! the entries alone: nothing is fetched and nothing is evaluated (the
//! command around it checks what needs the disk, such as a store's blobs).

use std::collections::{BTreeSet, HashMap};

use super::Entry;
use super::index::normalize_url;
use super::{names, nix};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The entry will fail: Nix cannot fetch it, or replay cannot answer
    /// with it. The file is not sound.
    Error,
    /// It works today but is a hazard, or a newer capture would record it
    /// differently.
    Warning,
}

/// One thing wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The entry's 0-based position in the file (jq's `.[N]`).
    pub index: usize,
    pub method: String,
    pub url: String,
    pub severity: Severity,
    pub problem: String,
    pub fix: String,
}

/// An entry to check, as the file spells it.
#[derive(Debug, Clone)]
pub struct Subject {
    pub index: usize,
    pub entry: Entry,
    /// Whether Nix's `fetchurl` will download this entry (a
    /// `proxy_content.nix`; a store or a built content file is already
    /// fetched), and so whether the name it derives matters.
    pub fetched_by_nix: bool,
    /// The `fetchurl` call gives a `name`.
    pub names_itself: bool,
}

/// Every finding for `subjects`, in file order.
pub fn check(subjects: &[Subject]) -> Vec<Finding> {
    let redirects = RedirectMap::new(subjects);
    let mut out = Vec::new();
    for s in subjects {
        let e = &s.entry;
        let mut found = |severity, problem: String, fix: String| {
            out.push(Finding {
                index: s.index,
                method: e.method.clone(),
                url: e.url.clone(),
                severity,
                problem,
                fix,
            })
        };
        if let Some((problem, fix)) = never_replays(e) {
            found(Severity::Error, problem, fix);
        } else if let Some(problem) = git_advertisement(e) {
            found(Severity::Warning, problem, GIT_FIX.into());
        }
        if s.fetched_by_nix
            && e.method != nix::GIT_METHOD
            && !s.names_itself
            && e.body.is_some()
            && names::url_store_name(e.fetch_url()).is_none()
        {
            let name = names::store_name_for(e.fetch_url()).unwrap_or_else(|| "download".into());
            found(
                Severity::Error,
                format!(
                    "fetchurl names the download after the end of its URL, {:?}, which is not a \
                     valid Nix store name, so evaluation fails",
                    names::base_name_of(e.fetch_url())
                ),
                format!("add `name = \"{name}\";` to its fetchurl (buildproxy capture writes it)"),
            );
        }
        if e.body.is_some() && is_signed(e.fetch_url()) {
            let fix = match redirects.origin_of(e.fetch_url()) {
                Some(origin) => format!(
                    "fetch it from the URL that redirected here: `url = \"{origin}\";` in its \
                     fetchurl (buildproxy capture records a chain's body so)"
                ),
                None => "re-capture with buildproxy capture, which fetches a redirect chain's \
                         body from the chain's first URL; or point fetchurl's `url` at a stable \
                         URL for the same bytes"
                    .into(),
            };
            found(
                Severity::Error,
                format!(
                    "fetchurl downloads from a signed URL that expires ({}): on a machine \
                     whose store lacks the body, Nix cannot fetch it",
                    e.fetch_url()
                ),
                fix,
            );
        }
        for (severity, problem, fix) in recorded_differently(e) {
            found(severity, problem, fix.into());
        }
    }
    out.extend(duplicates(subjects));
    out.sort_by_key(|f| (f.index, f.severity));
    out
}

/// The `git` plugin records what a clone fetched as objects Nix can fetch
/// again, and replay answers git itself (ARCHITECTURE.md, "git over smart
/// HTTP").
const GIT_FIX: &str = "capture the build again with buildproxy: its git plugin records the \
                       commits the clone fetched (entries of method GIT) and replay answers \
                       the clone from them; then delete these entries";

/// A request whose recording can never be served: Nix's `fetchurl` only
/// GETs, and the server generated the answer for that one request body.
///
/// nix-buildproxy records every response as a `fetchurl` without a method,
/// so git's POSTs show up there as GETs of `…/git-upload-pack`: those are
/// recognised by their path.
fn never_replays(e: &Entry) -> Option<(String, String)> {
    let path = url_path(&e.url);
    if path.ends_with("/git-upload-pack") || path.ends_with("/git-receive-pack") {
        let recorded = if e.method == "POST" {
            String::new()
        } else {
            format!(" (recorded as a {}, but git POSTs there)", e.method)
        };
        return Some((
            format!(
                "a git smart-HTTP negotiation{recorded}: the pack the server answered was \
                 generated for one request body, and fetchurl can only GET, so it never \
                 replays"
            ),
            GIT_FIX.into(),
        ));
    }
    if e.method == "GET" || e.method == "HEAD" || e.method == nix::GIT_METHOD {
        return None;
    }
    Some((
        format!(
            "a {} request: fetchurl can only GET, and the answer depended on a request body \
             the file does not keep, so it never replays",
            e.method
        ),
        "delete the entry, and make the build get this content with a GET (or a plugin that \
         answers the request)"
            .into(),
    ))
}

/// `info/refs?service=git-upload-pack`: replay can answer it, but the
/// clone's next request is a POST that cannot be replayed.
fn git_advertisement(e: &Entry) -> Option<String> {
    let (path, query) = e.url.split_once('?').unwrap_or((&e.url, ""));
    (path.ends_with("/info/refs") && query.split('&').any(|p| p == "service=git-upload-pack")).then(
        || {
            "a git smart-HTTP ref advertisement recorded as a download: the server's refs \
             move, and the clone's next request (a POST of git-upload-pack) was not recorded \
             in a form that replays"
                .into()
        },
    )
}

/// Entries a current capture would not make, or would make differently.
fn recorded_differently(e: &Entry) -> Vec<(Severity, String, &'static str)> {
    let mut out = Vec::new();
    let recapture = "capture it again with buildproxy capture";
    match e.status {
        206 => out.push((
            Severity::Error,
            "a 206 partial response: fetchurl downloads the whole body, so its hash cannot \
             match"
                .into(),
            "capture it again (buildproxy strips `range` from what it sends upstream)",
        )),
        200..=299 if e.body.is_none() && e.method == "GET" => out.push((
            Severity::Warning,
            format!(
                "a {} with `file = null`: replay answers it with an empty body",
                e.status
            ),
            recapture,
        )),
        300..=399 if !e.headers.contains_key("location") && e.status != 304 => out.push((
            Severity::Warning,
            format!(
                "a {} redirect without a `location`: the client has nowhere to go",
                e.status
            ),
            recapture,
        )),
        404 | 410 | 100..=399 => {}
        s => out.push((
            Severity::Warning,
            format!(
                "status {s} is recorded: replay answers the build with that error every time; \
                 buildproxy records only 2xx, 3xx, 404 and 410"
            ),
            "delete the entry if the build recovers without it, or capture it again when the \
             server answers",
        )),
    }
    if e.body.is_some()
        && let Some(coding) = e.headers.get("content-encoding")
        && !coding.eq_ignore_ascii_case("identity")
    {
        out.push((
            Severity::Warning,
            format!(
                "recorded with `content-encoding: {coding}`: fetchurl asks for no encoding, so the \
                 bytes Nix fetches may not be the bytes the client was sent"
            ),
            "capture it again (buildproxy asks upstream for the unencoded body, as fetchurl \
             does)",
        ));
    }
    if e.method == "GET"
        && e.status == 200
        && e.body.as_ref().and_then(|b| b.hash.as_deref()) == Some(EMPTY_SHA256)
        && never_replays(e).is_none()
    {
        out.push((
            Severity::Warning,
            "an empty body: often a redirect or an error recorded as a file (nix-buildproxy \
             records every response so), which replay answers with 200 and nothing"
                .into(),
            "capture it again: buildproxy records a redirect as a status-only entry the client \
             follows",
        ));
    }
    if e.method == "HEAD" && e.body.is_some() {
        out.push((
            Severity::Warning,
            "a HEAD with a body: a HEAD answer has none, and replay answers HEAD from the GET \
             entry"
                .into(),
            "delete it, or make it `file = null;`",
        ));
    }
    out
}

/// The SHA-256 of no bytes.
const EMPTY_SHA256: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

/// Two entries for one request: replay would have to pick one, so it
/// refuses to start; a capture would have kept the first.
fn duplicates(subjects: &[Subject]) -> Vec<Finding> {
    // Representations of one URL (their request headers differ) are not
    // duplicates: replay tells them apart.
    type Key = (String, String, std::collections::BTreeMap<String, String>);
    let mut first: HashMap<Key, &Subject> = HashMap::new();
    let mut out = Vec::new();
    for s in subjects {
        let e = &s.entry;
        let key = (
            e.method.to_ascii_uppercase(),
            normalize_url(&e.url),
            e.request_headers.clone(),
        );
        let Some(earlier) = first.get(&key) else {
            first.insert(key, s);
            continue;
        };
        let hash = |e: &Entry| e.body.as_ref().and_then(|b| b.hash.clone());
        let (a, b) = (&earlier.entry, e);
        let differs = a.status != b.status || hash(a) != hash(b);
        let problem = if differs {
            format!(
                "the same request as entry [{}] with a different {} ({} here, {} there): the \
                 server answered differently each time, and replay refuses to start with two \
                 answers to one request",
                earlier.index,
                if a.status != b.status {
                    "status"
                } else {
                    "hash"
                },
                describe(b),
                describe(a),
            )
        } else {
            format!(
                "the same request and answer as entry [{}]: replay refuses to start with two \
                 entries for one request",
                earlier.index
            )
        };
        out.push(Finding {
            index: s.index,
            method: e.method.clone(),
            url: e.url.clone(),
            severity: Severity::Error,
            problem,
            fix: format!(
                "delete one of [{}] and [{}]; `buildproxy capture --merge` keeps the first, as \
                 capture does",
                earlier.index, s.index
            ),
        });
    }
    out
}

fn describe(e: &Entry) -> String {
    match e.body.as_ref().and_then(|b| b.hash.as_deref()) {
        Some(h) => format!("{} {h}", e.status),
        None => format!("{} without a body", e.status),
    }
}

/// Where each recorded redirect points, to find a signed URL's origin.
struct RedirectMap {
    /// Normalised target → the URL that redirected to it.
    from: HashMap<String, String>,
}

impl RedirectMap {
    fn new(subjects: &[Subject]) -> Self {
        let from = subjects
            .iter()
            .filter(|s| (300..400).contains(&s.entry.status))
            .filter_map(|s| {
                let loc = s.entry.headers.get("location")?;
                let target = buildproxy_plugin_sdk::location::resolve(&s.entry.url, loc)?;
                Some((normalize_url(&target), s.entry.url.clone()))
            })
            .collect();
        RedirectMap { from }
    }

    /// The first URL of the recorded chain that ends at `url`, if any led
    /// there.
    fn origin_of(&self, url: &str) -> Option<String> {
        let mut seen = BTreeSet::new();
        let mut at = self.from.get(&normalize_url(url))?.clone();
        while seen.insert(at.clone()) {
            match self.from.get(&normalize_url(&at)) {
                Some(prev) => at = prev.clone(),
                None => break,
            }
        }
        Some(at)
    }
}

/// Query parameters that make a URL a signed, expiring one: S3 and other
/// SigV4 stores, Google Cloud Storage, Azure SAS, CloudFront, Akamai.
const SIGNED_ALONE: &[&str] = &[
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "googleaccessid",
    "key-pair-id",
    "hdnts",
    "hdnea",
    "__token__",
];
/// A signature parameter signs only together with an expiry.
const SIGNATURE: &[&str] = &["signature", "sig", "token", "policy", "jwt"];
const EXPIRY: &[&str] = &["expires", "se", "exp", "expiry", "x-amz-expires"];

/// Whether `url` carries a signature that expires.
pub fn is_signed(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or("");
    let keys: BTreeSet<String> = query
        .split('&')
        .map(|p| p.split('=').next().unwrap_or("").to_ascii_lowercase())
        .collect();
    let has = |set: &[&str]| set.iter().any(|k| keys.contains(*k));
    has(SIGNED_ALONE) || (has(SIGNATURE) && has(EXPIRY))
}

fn url_path(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "sha256-ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=";
    const H2: &str = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

    fn e(method: &str, url: &str, status: u16, hash: Option<&str>) -> Entry {
        Entry::for_test(method, url, status, hash)
    }

    fn subjects(entries: Vec<Entry>) -> Vec<Subject> {
        entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| Subject {
                index,
                entry,
                fetched_by_nix: true,
                names_itself: false,
            })
            .collect()
    }

    fn problems(entries: Vec<Entry>) -> Vec<(usize, Severity, String)> {
        check(&subjects(entries))
            .into_iter()
            .map(|f| (f.index, f.severity, f.problem))
            .collect()
    }

    #[test]
    fn a_sound_file_has_no_findings() {
        let mut hop = e("GET", "https://e.org/dl/a.tar.gz", 302, None);
        hop.headers
            .insert("location".into(), "https://cdn.e.org/a.tar.gz".into());
        let mut fin = e("GET", "https://cdn.e.org/a.tar.gz", 200, Some(H1));
        fin.fetch_url = Some("https://e.org/dl/a.tar.gz".into());
        let probe = e("GET", "https://e.org/missing", 404, None);
        assert_eq!(problems(vec![hop, fin, probe]), vec![]);
    }

    #[test]
    fn git_smart_http_posts_never_replay_and_advertisements_warn() {
        let found = check(&subjects(vec![
            e(
                "GET",
                "https://g.org/fmt.git/info/refs?service=git-upload-pack",
                200,
                Some(H1),
            ),
            e(
                "POST",
                "https://g.org/fmt.git/git-upload-pack",
                200,
                Some(H2),
            ),
            e("POST", "https://g.org/api", 200, Some(H2)),
            e(
                "GET",
                "https://g.org/ftxui.git/git-upload-pack",
                200,
                Some(H2),
            ),
        ]));
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[3]
                .problem
                .contains("recorded as a GET, but git POSTs there")
        );
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0].problem.contains("ref advertisement"));
        assert_eq!(found[1].severity, Severity::Error);
        assert!(found[1].problem.contains("git smart-HTTP negotiation:"));
        assert!(found[1].fix.contains("its git plugin records"));
        assert!(found[2].problem.contains("a POST request"));
        // What the git plugin records is sound.
        let mut objects = e("GIT", "https://g.org/fmt.git", 200, Some(H1));
        objects
            .request_headers
            .insert(nix::GIT_WANTS.into(), "1".repeat(40));
        let mut refs = e("GIT", "https://g.org/fmt.git", 200, None);
        refs.request_headers
            .insert("git-refs".into(), "0123".into());
        let found = check(&subjects(vec![objects, refs]));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn the_same_url_with_two_hashes_is_an_error_on_the_second() {
        let found = check(&subjects(vec![
            e("POST", "https://g.org/r.git/git-upload-pack", 200, Some(H1)),
            e("GET", "https://e.org/x", 200, Some(H1)),
            e(
                "POST",
                "https://G.org:443/r.git/git-upload-pack",
                200,
                Some(H2),
            ),
            e("GET", "https://e.org/x", 200, Some(H1)),
        ]));
        let dups: Vec<_> = found
            .iter()
            .filter(|f| f.problem.contains("the same request"))
            .collect();
        assert_eq!(dups.len(), 2, "{found:#?}");
        assert_eq!(dups[0].index, 2);
        assert!(dups[0].problem.contains("different hash"), "{dups:#?}");
        assert!(dups[0].problem.contains(H2) && dups[0].problem.contains(H1));
        assert!(dups[0].fix.contains("[0] and [2]"));
        assert_eq!(dups[1].index, 3);
        assert!(
            dups[1]
                .problem
                .contains("same request and answer as entry [1]")
        );
    }

    #[test]
    fn signed_fetch_urls_are_errors_whose_fix_names_the_redirect_origin() {
        let signed =
            "https://cdn.e.org/a.tgz?X-Amz-Algorithm=AWS4&X-Amz-Signature=ab&X-Amz-Expires=300";
        let mut hop1 = e("GET", "https://e.org/latest", 302, None);
        hop1.headers.insert("location".into(), "/v1/a.tgz".into());
        let mut hop2 = e("GET", "https://e.org/v1/a.tgz", 302, None);
        hop2.headers.insert("location".into(), signed.into());
        let fin = e("GET", signed, 200, Some(H1));
        let signed_only = |found: Vec<Finding>| -> Vec<Finding> {
            found
                .into_iter()
                .filter(|f| f.problem.contains("signed URL"))
                .collect()
        };
        let found = signed_only(check(&subjects(vec![hop1, hop2, fin])));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Error);
        assert!(found[0].problem.contains("expires"));
        assert!(
            found[0].fix.contains("`url = \"https://e.org/latest\";`"),
            "{}",
            found[0].fix
        );
        // Without a recorded redirect, the fix is to re-capture.
        let found = signed_only(check(&subjects(vec![e("GET", signed, 200, Some(H1))])));
        assert!(found[0].fix.contains("re-capture"));
        // The match URL may be signed: only where Nix fetches from matters.
        let mut ok = e("GET", signed, 200, Some(H1));
        ok.fetch_url = Some("https://e.org/v1/a.tgz".into());
        assert_eq!(problems(vec![ok]), vec![]);
    }

    #[test]
    fn signature_detection() {
        for url in [
            "https://s3.e.org/b/k?X-Amz-Credential=a&X-Amz-Signature=b",
            "https://blob.e.org/c/f.zip?sv=2020&se=2026-01-01T00%3A00%3A00Z&sr=b&sp=r&sig=abc",
            "https://d1.cloudfront.net/f?Expires=1&Signature=x&Key-Pair-Id=K",
            "https://storage.e.org/b/o?GoogleAccessId=a&Expires=1&Signature=s",
            "https://e.org/f?token=abc&expires=123",
        ] {
            assert!(is_signed(url), "{url}");
        }
        for url in [
            "https://e.org/f?version=2",
            "https://e.org/f?sig=abc",
            "https://e.org/expires/f",
            "https://e.org/f",
        ] {
            assert!(!is_signed(url), "{url}");
        }
    }

    #[test]
    fn store_names_fetchurl_would_derive_and_refuse() {
        let bad = e("GET", "https://e.org/get.php?f=a%2Fb&v=2", 200, Some(H1));
        let found = check(&subjects(vec![bad.clone()]));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].problem.contains("\"get.php?f=a%2Fb&v=2\""));
        assert_eq!(
            found[0].fix,
            "add `name = \"get.php\";` to its fetchurl (buildproxy capture writes it)"
        );
        // Named in the file, or not fetched by Nix at all: fine.
        let mut named = subjects(vec![bad.clone()]);
        named[0].names_itself = true;
        assert_eq!(check(&named), vec![]);
        let mut stored = subjects(vec![bad]);
        stored[0].fetched_by_nix = false;
        assert_eq!(check(&stored), vec![]);
        // A query whose characters Nix accepts is not flagged.
        assert_eq!(
            problems(vec![e("GET", "https://e.org/f?v=2", 200, Some(H1))]),
            vec![]
        );
    }

    #[test]
    fn entries_a_capture_would_record_differently() {
        let mut gz = e("GET", "https://e.org/a.txt", 200, Some(H1));
        gz.headers.insert("content-encoding".into(), "gzip".into());
        let found = problems(vec![
            e("GET", "https://e.org/part", 206, Some(H1)),
            e("GET", "https://e.org/err", 503, None),
            gz,
            e("GET", "https://e.org/empty", 200, None),
            e("HEAD", "https://e.org/h", 200, Some(H1)),
            e("GET", "https://e.org/nowhere", 302, None),
            e("GET", "https://e.org/dl", 200, Some(EMPTY_SHA256)),
        ]);
        let got: Vec<_> = found.iter().map(|(i, s, _)| (*i, *s)).collect();
        assert_eq!(
            got,
            vec![
                (0, Severity::Error),
                (1, Severity::Warning),
                (2, Severity::Warning),
                (3, Severity::Warning),
                (4, Severity::Warning),
                (5, Severity::Warning),
                (6, Severity::Warning),
            ],
            "{found:#?}"
        );
        assert!(found[0].2.contains("206"));
        assert!(found[1].2.contains("status 503"));
        assert!(found[2].2.contains("content-encoding: gzip"));
        assert!(found[6].2.contains("an empty body"));
    }
}
