//! Finding the recorded answer for a request.
//!
//! Replay looks every request up here, and capture uses the same table to
//! notice when a URL answers differently the second time. Keys are
//! normalised only in ways that cannot change which resource a URL names
//! (scheme and host case, default port, fragment), so a client that spells
//! a URL slightly differently still matches while two distinct resources
//! never collide. One URL may hold several representations (content
//! negotiation): entries that differ in the request headers that selected
//! them; which one a request gets is the replay plugin's choice.

use super::Entry;
use std::collections::HashMap;

/// Entries keyed by (method, normalised URL), each key holding its
/// representations in insertion order.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: Vec<Entry>,
    by_key: HashMap<(String, String), Vec<usize>>,
}

/// What [`Index::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// The request (or this representation of it) was new.
    Added,
    /// The request was known, with the same selecting request headers, the
    /// same status and body hash; the first
    /// recording is kept (its headers may differ, e.g. `date`).
    Unchanged,
    /// The request was known with a different status or body. The first
    /// recording is kept, since replay must answer the way the build first
    /// saw it; the caller decides whether to warn or fail.
    Conflict { existing_hash: Option<String> },
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry recorded for `method url`, after normalising both: the
    /// representation without selecting request headers if there is one,
    /// else the first recorded.
    pub fn get(&self, method: &str, url: &str) -> Option<&Entry> {
        let mut all = self.representations(method, url);
        let first = all.next()?;
        Some(if first.request_headers.is_empty() {
            first
        } else {
            all.find(|e| e.request_headers.is_empty()).unwrap_or(first)
        })
    }

    /// Every representation recorded for `method url`, in insertion order.
    pub fn representations(&self, method: &str, url: &str) -> impl Iterator<Item = &Entry> {
        let key = (method.to_ascii_uppercase(), normalize_url(url));
        self.by_key
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&i| &self.entries[i])
    }

    /// Adds `entry` under its normalised URL, upper-case method and
    /// selecting request headers.
    pub fn insert(&mut self, mut entry: Entry) -> Insert {
        entry.url = normalize_url(&entry.url);
        entry.method.make_ascii_uppercase();
        let key = (entry.method.clone(), entry.url.clone());
        let slots = self.by_key.entry(key).or_default();
        if let Some(&i) = slots
            .iter()
            .find(|&&i| self.entries[i].request_headers == entry.request_headers)
        {
            let existing = &self.entries[i];
            let hash = |e: &Entry| e.body.as_ref().map(|b| b.hash.clone());
            return if existing.status == entry.status && hash(existing) == hash(&entry) {
                Insert::Unchanged
            } else {
                Insert::Conflict {
                    existing_hash: hash(existing).flatten(),
                }
            };
        }
        slots.push(self.entries.len());
        self.entries.push(entry);
        Insert::Added
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// A copy of the entries in the order every file is written in.
    pub fn entries_sorted(&self) -> Vec<Entry> {
        let mut v = self.entries.clone();
        v.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        v
    }
}

/// `entries` without the HEAD entries replay would never use: replay
/// answers a HEAD from the GET entry of the same URL and representation
/// when there is one, so a HEAD recorded beside it (uv sends HEAD before
/// its GET) only lengthens the file. A HEAD whose status differs from the
/// GET's is kept, as is a HEAD with no GET beside it.
pub fn without_redundant_heads(entries: Vec<Entry>) -> Vec<Entry> {
    use std::collections::HashSet;
    let gets: HashSet<(String, &std::collections::BTreeMap<String, String>, u16)> = entries
        .iter()
        .filter(|e| e.method == "GET")
        .map(|e| (normalize_url(&e.url), &e.request_headers, e.status))
        .collect();
    let redundant: Vec<bool> = entries
        .iter()
        .map(|e| {
            e.method == "HEAD"
                && gets.contains(&(normalize_url(&e.url), &e.request_headers, e.status))
        })
        .collect();
    entries
        .into_iter()
        .zip(redundant)
        .filter_map(|(e, r)| (!r).then_some(e))
        .collect()
}

/// The match key for a URL: scheme and host lower-cased, the scheme's
/// default port dropped, an empty http(s) path written `/`, the fragment
/// dropped. Path and query are kept byte for byte: decoding `%2F` or
/// re-encoding would merge or split URLs that servers tell apart. (The
/// `url` crate re-encodes and resolves dot segments, so this is by hand.)
/// Text without `scheme://` is returned without its fragment.
pub fn normalize_url(url: &str) -> String {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return url.to_owned();
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let (host, port) = split_host_port(hostport);
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    };
    // On every lookup: one allocation, lower-cased in place.
    let mut out = String::with_capacity(url.len() + 1);
    out.push_str(scheme);
    out.make_ascii_lowercase();
    out.push_str("://");
    out.push_str(userinfo);
    let host_at = out.len();
    out.push_str(host);
    out[host_at..].make_ascii_lowercase();
    let port = match port {
        Some("") | None => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u32>() {
            Ok(n) if Some(n) == default_port => None,
            // The number as written without leading zeros.
            Ok(0) => Some("0"),
            Ok(_) => Some(p.trim_start_matches('0')),
            Err(_) => Some(p),
        },
        // Not a number: leave it for the HTTP client to reject.
        Some(p) => Some(p),
    };
    if let Some(p) = port {
        out.push(':');
        out.push_str(p);
    }
    if default_port.is_some() && !tail.starts_with('/') {
        // A request line always has a path; `http://h` and `http://h/`
        // fetch the same thing.
        out.push('/');
    }
    out.push_str(tail);
    out
}

/// Splits `host[:port]`, keeping an IPv6 literal's brackets on the host.
fn split_host_port(hostport: &str) -> (&str, Option<&str>) {
    if hostport.starts_with('[') {
        if let Some(end) = hostport.find(']') {
            let (host, rest) = hostport.split_at(end + 1);
            return (host, rest.strip_prefix(':'));
        }
        return (hostport, None);
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: &str, url: &str, status: u16, hash: Option<&str>) -> Entry {
        Entry::for_test(method, url, status, hash)
    }

    #[test]
    fn normalises_only_what_is_safe() {
        let cases = [
            (
                "http://EXAMPLE.org:80/a%2Fb?x=1&y=%41",
                "http://example.org/a%2Fb?x=1&y=%41",
            ),
            ("HTTPS://Example.ORG:443/A/B", "https://example.org/A/B"),
            ("https://[::1]:443/x", "https://[::1]/x"),
            ("https://[::ABC]:8443/x", "https://[::abc]:8443/x"),
            ("https://[::1]", "https://[::1]/"),
            ("https://e.org:80/", "https://e.org:80/"),
            ("http://e.org:0080/", "http://e.org/"),
            ("http://e.org:08080/x", "http://e.org:8080/x"),
            ("http://e.org:000/x", "http://e.org:0/x"),
            ("http://e.org:/x", "http://e.org/x"),
            ("http://e.org:+80/x", "http://e.org:+80/x"),
            ("http://e.org?q=1", "http://e.org/?q=1"),
            ("http://e.org/a#frag", "http://e.org/a"),
            ("http://User:PW@E.org/", "http://User:PW@e.org/"),
            ("http://e.org/a b/../c%zz", "http://e.org/a b/../c%zz"),
            ("ftp://E.org", "ftp://e.org"),
            ("not a url#x", "not a url"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_url(input), want, "{input}");
        }
    }

    #[test]
    fn get_normalises_its_argument() {
        let mut ix = Index::new();
        assert_eq!(
            ix.insert(entry("get", "HTTP://E.org:80/x", 200, Some("h"))),
            Insert::Added
        );
        assert_eq!(
            ix.get("GET", "http://e.org/x").unwrap().url,
            "http://e.org/x"
        );
        assert!(ix.get("get", "http://E.ORG/x#top").is_some());
        assert!(ix.get("HEAD", "http://e.org/x").is_none());
        assert!(ix.get("GET", "http://e.org/X").is_none());
    }

    #[test]
    fn insert_reports_unchanged_and_conflicts() {
        let mut ix = Index::new();
        assert_eq!(
            ix.insert(entry("GET", "http://e.org/a", 200, Some("h1"))),
            Insert::Added
        );
        let mut same = entry("GET", "http://e.org/a", 200, Some("h1"));
        same.headers.insert("date".into(), "now".into());
        assert_eq!(ix.insert(same), Insert::Unchanged);
        assert_eq!(
            ix.insert(entry("GET", "http://e.org/a", 200, Some("h2"))),
            Insert::Conflict {
                existing_hash: Some("h1".into())
            }
        );
        assert_eq!(
            ix.insert(entry("GET", "http://e.org/a", 500, Some("h1"))),
            Insert::Conflict {
                existing_hash: Some("h1".into())
            }
        );
        assert_eq!(
            ix.insert(entry("GET", "http://e.org/404", 404, None)),
            Insert::Added
        );
        assert_eq!(
            ix.insert(entry("GET", "http://e.org/404", 404, None)),
            Insert::Unchanged
        );
        assert_eq!(
            ix.insert(entry("GET", "http://e.org/404", 404, Some("h"))),
            Insert::Conflict {
                existing_hash: None
            }
        );
        // The first recording stays.
        let kept = ix.get("GET", "http://e.org/a").unwrap();
        assert_eq!(kept.body.as_ref().unwrap().hash.as_deref(), Some("h1"));
        assert!(kept.headers.is_empty());
        assert_eq!(ix.len(), 2);
    }

    #[test]
    fn representations_of_one_url_are_separate_entries() {
        let json = || {
            let mut e = entry("GET", "https://e.org/simple/a/", 200, Some("json"));
            e.request_headers.insert(
                "accept".into(),
                "application/vnd.pypi.simple.v1+json".into(),
            );
            e
        };
        let mut ix = Index::new();
        assert_eq!(ix.insert(json()), Insert::Added);
        // Without a representation for any request, get falls back to the first.
        assert_eq!(
            ix.get("GET", "https://e.org/simple/a/").unwrap().body,
            json().body
        );
        assert_eq!(
            ix.insert(entry("GET", "https://e.org/simple/a/", 200, Some("html"))),
            Insert::Added
        );
        assert_eq!(ix.insert(json()), Insert::Unchanged);
        let mut other = json();
        other.body.as_mut().unwrap().hash = Some("json2".into());
        assert_eq!(
            ix.insert(other),
            Insert::Conflict {
                existing_hash: Some("json".into())
            }
        );
        let hashes: Vec<_> = ix
            .representations("get", "HTTPS://e.org/simple/a/")
            .map(|e| e.body.as_ref().unwrap().hash.clone().unwrap())
            .collect();
        assert_eq!(hashes, ["json", "html"]);
        let plain = ix.get("GET", "https://e.org/simple/a/").unwrap();
        assert_eq!(plain.body.as_ref().unwrap().hash.as_deref(), Some("html"));
        assert_eq!(ix.len(), 2);
    }

    #[test]
    fn a_head_beside_its_get_is_dropped_and_a_lone_or_different_head_kept() {
        let all = vec![
            entry("HEAD", "https://e.org/a.whl", 200, None),
            entry("GET", "https://e.org/a.whl", 200, Some("h")),
            entry("HEAD", "https://e.org/only-head", 200, None),
            entry("HEAD", "https://e.org/b", 404, None),
            entry("GET", "https://e.org/b", 200, Some("h")),
        ];
        let kept: Vec<_> = without_redundant_heads(all)
            .iter()
            .map(|e| format!("{} {}", e.method, e.url))
            .collect();
        assert_eq!(
            kept,
            [
                "GET https://e.org/a.whl",
                "HEAD https://e.org/only-head",
                "HEAD https://e.org/b",
                "GET https://e.org/b"
            ]
        );
    }

    #[test]
    fn entries_sorted_by_url_then_method() {
        let mut ix = Index::new();
        ix.insert(entry("POST", "http://e.org/b", 200, None));
        ix.insert(entry("GET", "http://e.org/b", 200, None));
        ix.insert(entry("GET", "http://e.org/a", 200, None));
        let keys: Vec<_> = ix
            .entries_sorted()
            .iter()
            .map(|e| format!("{} {}", e.method, e.url))
            .collect();
        assert_eq!(
            keys,
            [
                "GET http://e.org/a",
                "GET http://e.org/b",
                "POST http://e.org/b"
            ]
        );
    }
}
