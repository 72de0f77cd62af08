//! One recorded exchange: what replay answers for one request.
//!
//! This is the host's in-memory form of a `proxy_content.nix` entry; the
//! writer, the readers and the store all convert to and from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A recorded response, keyed by the URL the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Upper-case HTTP method; `GET` for entries read from files that do not say.
    pub method: String,
    /// The URL the client asked for: the match key (normalised, see `url`).
    pub url: String,
    /// Where `fetchurl` downloads the body from, when not `url` (a redirect
    /// chain's stable origin, say). `None` means `url`.
    pub fetch_url: Option<String>,
    /// The store name `fetchurl` must be given because the URL's last path
    /// segment is not a valid one. Computed by the writer when `None`.
    pub name: Option<String>,
    pub status: u16,
    /// Recorded response headers, names lower-case. Sorted so output is stable.
    pub headers: BTreeMap<String, String>,
    /// The request headers that selected this representation of the URL
    /// (content negotiation), names lower-case: part of the match key, and
    /// sent by `fetchurl` too (as `curlOptsList`). Empty for the
    /// representation any request gets.
    pub request_headers: BTreeMap<String, String>,
    /// `None` for status-only entries (redirect hops, 404 probes).
    pub body: Option<Body>,
}

/// Where a recorded body is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// SRI form, `sha256-<base64>`. Unknown only for content files written by
    /// tools that do not record it (nix-buildproxy's JSON).
    pub hash: Option<String>,
    /// Byte length; known once the body is on disk or was streamed.
    pub size: Option<u64>,
    /// The file holding the bytes (a Nix store path, or a blob in `--store`).
    /// `None` while capturing without `--store`.
    pub file: Option<PathBuf>,
}

impl Entry {
    /// The URL `fetchurl` downloads from.
    pub fn fetch_url(&self) -> &str {
        self.fetch_url.as_deref().unwrap_or(&self.url)
    }

    /// Entries sort by URL, then method, then representation: the order of
    /// every file we write.
    pub fn sort_key(&self) -> (&str, &str, &BTreeMap<String, String>) {
        (&self.url, &self.method, &self.request_headers)
    }

    /// For tests: a 200 to `GET url` with `body` and nothing else recorded.
    #[cfg(test)]
    pub fn get_200(url: &str, body: Body) -> Entry {
        Entry {
            method: "GET".into(),
            url: url.into(),
            fetch_url: None,
            name: None,
            status: 200,
            headers: BTreeMap::new(),
            request_headers: BTreeMap::new(),
            body: Some(body),
        }
    }
}

#[cfg(test)]
impl Entry {
    /// An entry for unit tests: no headers, a body known only by its hash.
    pub fn for_test(method: &str, url: &str, status: u16, hash: Option<&str>) -> Self {
        Entry {
            method: method.into(),
            url: url.into(),
            fetch_url: None,
            name: None,
            status,
            headers: Default::default(),
            request_headers: Default::default(),
            body: hash.map(|h| Body {
                hash: Some(h.into()),
                size: None,
                file: None,
            }),
        }
    }
}
