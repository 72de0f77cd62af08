//! Finding the recorded answer for a request.
//!
//! Replay looks every request up here, and capture uses the same table to
//! notice when a URL answers differently the second time. Keys are
//! normalised only in ways that cannot change which resource a URL names
//! (scheme and host case, default port, fragment), so a client that spells
//! a URL slightly differently still matches while two distinct resources
//! never collide.

use super::Entry;
use std::collections::HashMap;

/// Entries keyed by (method, normalised URL), in insertion order.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: Vec<Entry>,
    by_key: HashMap<(String, String), usize>,
}

/// What [`Index::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// The request was new.
    Added,
    /// The request was known with the same status and body hash; the first
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

    /// The entry recorded for `method url`, after normalising both.
    pub fn get(&self, method: &str, url: &str) -> Option<&Entry> {
        let key = (method.to_ascii_uppercase(), normalize_url(url));
        self.by_key.get(&key).map(|&i| &self.entries[i])
    }

    /// Adds `entry` under its normalised URL and upper-case method.
    pub fn insert(&mut self, mut entry: Entry) -> Insert {
        entry.url = normalize_url(&entry.url);
        entry.method.make_ascii_uppercase();
        let key = (entry.method.clone(), entry.url.clone());
        if let Some(&i) = self.by_key.get(&key) {
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
        self.by_key.insert(key, self.entries.len());
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
    let scheme = scheme.to_ascii_lowercase();
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let (host, port) = split_host_port(hostport);
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let port = match port {
        Some("") | None => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u32>() {
            Ok(n) if Some(n) == default_port => None,
            Ok(n) => Some(n.to_string()),
            Err(_) => Some(p.to_owned()),
        },
        // Not a number: leave it for the HTTP client to reject.
        Some(p) => Some(p.to_owned()),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(userinfo);
    out.push_str(&host.to_ascii_lowercase());
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p);
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
    use super::super::Body;
    use super::*;
    use std::collections::BTreeMap;

    fn entry(method: &str, url: &str, status: u16, hash: Option<&str>) -> Entry {
        Entry {
            method: method.into(),
            url: url.into(),
            fetch_url: None,
            name: None,
            status,
            headers: BTreeMap::new(),
            body: hash.map(|h| Body {
                hash: Some(h.into()),
                size: None,
                file: None,
            }),
        }
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
