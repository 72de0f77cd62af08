//! Content negotiation: which request headers chose the representation a
//! client got, and which recorded representation a request asks for.
//!
//! One URL can answer different bytes for different request headers: a
//! package index gives its JSON to a client that sends `Accept:
//! application/vnd.…+json` and HTML to `curl`. An entry is the
//! representation the client got, so the headers that selected it are part
//! of the entry: capture records them ([`selecting`]), `fetchurl` sends
//! them (the writer turns them into `curlOptsList`), and replay answers a
//! request only with a representation whose headers it sent ([`select`]).
//!
//! Shared by every plugin that records (capture, redirect) and by replay,
//! so the rule is written once.

use crate::{Entry, Headers, ResponseHead};

/// Request headers never part of an entry, whatever `vary` says, besides
/// [`STRIPPED_BY_CAPTURE`] (upstream never saw those):
/// - `accept-encoding`, which capture strips too (fetchurl sends none);
/// - credentials, which must not end up in a committed file;
/// - `user-agent`, which names the client's version: keying on it would
///   make every upgrade a miss (`capture --verify` reports when it
///   mattered);
/// - what describes the connection or the request's own body, not the
///   representation asked for.
const NEVER_SELECTING: &[&str] = &[
    "accept-encoding",
    "authorization",
    "proxy-authorization",
    "cookie",
    "user-agent",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "content-encoding",
];

/// Request headers the capture plugin removes before a request goes
/// upstream: they would make upstream answer with something other than the
/// plain body `fetchurl` downloads (a 206 or a 304 is not the body).
pub const STRIPPED_BY_CAPTURE: &[&str] = &[
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
];

/// What `fetchurl` (curl) sends when told nothing: the representation any
/// request gets, so an `accept` with this value selects nothing.
const DEFAULT_ACCEPT: &str = "*/*";

/// The request headers that selected the response `head` for a request
/// with `request` headers: `accept` always (servers negotiate on it without
/// saying so in `vary`), plus every header the response's `vary` names,
/// minus [`NEVER_SELECTING`]; only those the client sent, as text, sorted
/// by name. An `accept` of `*/*` is what `fetchurl` sends anyway and is
/// left out.
pub fn selecting(request: &Headers, head: &ResponseHead) -> Vec<(String, String)> {
    let mut names: Vec<String> = vec!["accept".into()];
    for (name, value) in &head.headers {
        if name != "vary" {
            continue;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        names.extend(
            value
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty() && n != "*"),
        );
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| {
            !NEVER_SELECTING.contains(&n.as_str()) && !STRIPPED_BY_CAPTURE.contains(&n.as_str())
        })
        .filter_map(|n| {
            let value = joined(request, &n)?;
            (n != "accept" || value != DEFAULT_ACCEPT).then_some((n, value))
        })
        .collect()
}

/// Every value of a header, joined as HTTP folds them (`, `), trimmed;
/// `None` when absent or not text.
fn joined(request: &Headers, name: &str) -> Option<String> {
    let values: Vec<&str> = request
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).map(str::trim))
        .collect::<Result<_, _>>()
        .ok()?;
    (!values.is_empty()).then(|| values.join(", "))
}

/// Whether a request with `request` headers asks for the representation
/// `entry` recorded: it sent every selecting header with the same value.
pub fn asks_for(request: &Headers, entry: &Entry) -> bool {
    entry
        .request_headers
        .iter()
        .all(|(name, value)| joined(request, name).as_deref() == Some(value.trim()))
}

/// The representation a request gets among those recorded for its method
/// and URL: the one with the most selecting headers, all sent by the
/// request (an entry without any is what every request gets); `None` when
/// the request matches none of them. An index, so the caller takes the one
/// it serves without copying the others (it may still need them, to say
/// what was recorded when none matches).
pub fn select(request: &Headers, representations: &[Entry]) -> Option<usize> {
    representations
        .iter()
        .enumerate()
        .filter(|(_, e)| asks_for(request, e))
        .max_by_key(|(_, e)| e.request_headers.len())
        .map(|(i, _)| i)
}

/// `name: value` lines, for messages.
pub fn describe(selecting: &[(String, String)]) -> String {
    if selecting.is_empty() {
        return "no selecting headers".into();
    }
    selecting
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The request's own values of the headers the recorded representations
/// were selected by, for a miss message.
pub fn sent(request: &Headers, representations: &[Entry]) -> Vec<(String, String)> {
    let mut names: Vec<&str> = representations
        .iter()
        .flat_map(|e| e.request_headers.iter().map(|(n, _)| n.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| {
            let v = joined(request, n).unwrap_or_else(|| "(not sent)".into());
            (n.to_string(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = "application/vnd.pypi.simple.v1+json";

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn head(vary: Option<&str>) -> ResponseHead {
        ResponseHead {
            status: 200,
            headers: vary.map(|v| h(&[("vary", v)])).unwrap_or_default(),
        }
    }

    fn rep(selecting: &[(&str, &str)], id: &str) -> Entry {
        Entry {
            method: "GET".into(),
            url: "https://e.org/simple/a/".into(),
            fetch_url: None,
            status: 200,
            headers: vec![],
            request_headers: selecting
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Some(crate::Blob {
                id: id.into(),
                size: 1,
            }),
        }
    }

    #[test]
    fn accept_selects_always_and_vary_adds_headers_but_never_secrets_or_encodings() {
        let req = h(&[
            ("accept", JSON),
            ("accept-encoding", "gzip"),
            ("accept-language", "de"),
            ("authorization", "Bearer x"),
            ("user-agent", "pip/23"),
        ]);
        assert_eq!(
            selecting(&req, &head(None)),
            [("accept".to_string(), JSON.to_string())]
        );
        let got = selecting(
            &req,
            &head(Some(
                "Accept-Encoding, Accept-Language, Authorization, User-Agent, Origin",
            )),
        );
        assert_eq!(
            got,
            [
                ("accept".to_string(), JSON.to_string()),
                ("accept-language".to_string(), "de".to_string())
            ]
        );
    }

    #[test]
    fn what_fetchurl_sends_anyway_selects_nothing() {
        assert!(selecting(&h(&[("accept", "*/*")]), &head(Some("Accept"))).is_empty());
        assert!(selecting(&h(&[]), &head(Some("Accept, *"))).is_empty());
    }

    #[test]
    fn a_request_gets_the_representation_it_asked_for_or_none() {
        let reps = vec![rep(&[], "html"), rep(&[("accept", JSON)], "json")];
        let id = |req: &Headers| select(req, &reps).map(|i| reps[i].body.clone().unwrap().id);
        assert_eq!(id(&h(&[("accept", JSON)])).as_deref(), Some("json"));
        let spaced = format!(" {JSON} ");
        assert_eq!(
            id(&h(&[("accept", spaced.as_str())])).as_deref(),
            Some("json")
        );
        assert_eq!(id(&h(&[])).as_deref(), Some("html"));
        assert_eq!(id(&h(&[("accept", "text/html")])).as_deref(), Some("html"));
        // Only the JSON was recorded: curl's request is not answered with it.
        let only_json = vec![rep(&[("accept", JSON)], "json")];
        assert_eq!(select(&h(&[("accept", "*/*")]), &only_json), None);
        assert_eq!(
            sent(&h(&[("accept", "*/*")]), &only_json),
            [("accept".to_string(), "*/*".to_string())]
        );
        assert_eq!(
            describe(&only_json[0].request_headers),
            format!("accept: {JSON}")
        );
    }
}
