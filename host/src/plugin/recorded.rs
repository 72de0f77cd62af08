//! `requests.answer-recorded`: the answer the host gives in a plugin's
//! place for a request the recorded content answers plainly.
//!
//! Why: a call into a plugin copies the request in and, for replay, the
//! recorded entry out, string by string (each one a call into the plugin's
//! allocator), and then the answer back: measured on replayed 4 KiB
//! files, 20–30 µs of the proxy's 110–125 µs of CPU a request. Most
//! replayed requests are a plain `GET` of a URL recorded once, and for
//! those every answer a plugin like `replay` can give is the entry itself. The plugin still
//! decides that it wants this (it calls `answer-recorded` in `configure`),
//! and still answers everything else: conditional requests (304), `HEAD`,
//! negotiated URLs, misses. Those the host declines after its lookup (a
//! miss, a URL with several representations) the plugin looks up again:
//! a few µs, on requests that are few.

use super::bindings as wit;
use super::convert;
use crate::catalog::Catalog;

/// Request headers after which the answer may not be the entry as
/// recorded (a 304, in `replay`): such a request goes to the plugin.
const CONDITIONAL: &[&str] = &["if-none-match", "if-modified-since"];

/// The entry's response, when `req` is a `GET` without conditional headers
/// and the inventory holds exactly one entry for its method and URL,
/// recorded without request headers; `None` sends the request to the
/// plugin. The conversion is the replay plugin's `from_entry`; the test
/// below holds the two to the same answers.
pub fn answer(catalog: &Catalog, req: &wit::Request) -> Option<wit::Response> {
    if req.method != "GET"
        || req
            .headers
            .iter()
            .any(|(name, _)| CONDITIONAL.contains(&name.as_str()))
    {
        return None;
    }
    let mut found = catalog.representations(&req.method, &req.url);
    if found.len() != 1 || !found[0].request_headers.is_empty() {
        return None;
    }
    let entry = convert::entry(found.pop()?);
    Some(wit::Response {
        head: wit::ResponseHead {
            status: entry.status,
            headers: entry
                .headers
                .into_iter()
                .map(|(name, value)| (name, value.into_bytes()))
                .collect(),
        },
        body: entry.body.map_or(wit::Body::None, wit::Body::Blob),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Body, Entry};
    use crate::plugin::bindings::Mode;
    use crate::plugin::{Chain, Limits, Runtime, bundled};
    use crate::proxy::policy::{self, Policy, RequestOutcome};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn entry(url: &str, request_headers: &[(&str, &str)]) -> Entry {
        let body = Body {
            hash: Some("sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
            size: Some(3),
            file: Some("/nix/store/x-f".into()),
        };
        Entry {
            headers: BTreeMap::from([("etag".to_string(), "\"v1\"".to_string())]),
            request_headers: request_headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Entry::get_200(url, body)
        }
    }

    fn req(method: &str, url: &str, headers: &[(&str, &str)]) -> wit::Request {
        wit::Request {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            chain: vec![],
        }
    }

    #[test]
    fn only_a_plain_get_of_a_url_recorded_once_is_answered_in_the_plugins_place() {
        let catalog = Catalog::from_entries(vec![
            entry("https://e.org/once", &[]),
            entry("https://e.org/two", &[]),
            entry("https://e.org/two", &[("accept", "application/json")]),
            entry("https://e.org/negotiated", &[("accept", "text/html")]),
        ]);
        let r = answer(
            &catalog,
            &req("GET", "https://e.org/once", &[("accept", "*/*")]),
        )
        .expect("a plain GET of a URL recorded once");
        assert_eq!(r.head.status, 200);
        assert_eq!(r.head.headers, vec![("etag".into(), b"\"v1\"".to_vec())]);
        let wit::Body::Blob(blob) = r.body else {
            panic!("the recorded body, by the id the catalog issued");
        };
        assert!(catalog.blob(&blob.id).is_some());
        assert_eq!(blob.size, 3);
        // Everything else is the plugin's to answer.
        for (method, url, headers) in [
            ("HEAD", "https://e.org/once", vec![]),
            (
                "GET",
                "https://e.org/once",
                vec![("if-none-match", "\"v1\"")],
            ),
            (
                "GET",
                "https://e.org/once",
                vec![("if-modified-since", "x")],
            ),
            ("GET", "https://e.org/two", vec![]),
            (
                "GET",
                "https://e.org/negotiated",
                vec![("accept", "text/html")],
            ),
            ("GET", "https://e.org/missing", vec![]),
        ] {
            assert!(
                answer(&catalog, &req(method, url, &headers)).is_none(),
                "{method} {url} {headers:?}"
            );
        }
    }

    async fn answers(
        chain: &Chain,
        requests: &[(&str, Vec<(&str, &str)>)],
    ) -> Vec<(Arc<str>, policy::Response)> {
        let mut out = Vec::new();
        for (url, headers) in requests {
            match chain.on_request(1, req("GET", url, headers).into()).await {
                Ok(RequestOutcome::Respond { by, response }) => out.push((by, response)),
                other => panic!("{url} not answered: {other:?}"),
            }
        }
        out
    }

    /// The bundled replay plugin, asked, gives the answer the host gives
    /// in its place: status, every header, the body's id and size.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_host_answers_exactly_as_the_bundled_replay_plugin_does() {
        let mut moved = entry("https://e.org/old", &[]);
        moved.status = 301;
        moved.body = None;
        moved.headers = BTreeMap::from([("location".into(), "https://e.org/new".into())]);
        let mut full = entry("https://e.org/f.tar.gz", &[]);
        full.headers.extend([
            ("content-type".into(), "application/gzip".into()),
            (
                "last-modified".into(),
                "Tue, 01 Jan 2030 00:00:00 GMT".into(),
            ),
            ("x-empty".into(), String::new()),
        ]);
        let catalog = Arc::new(Catalog::from_entries(vec![full, moved]));
        let specs: Vec<_> = bundled::default_chain()
            .into_iter()
            .filter(|s| s.name == "replay")
            .collect();
        let runtime = Runtime::new(Limits::default(), None).unwrap();
        let mut chain = Chain::load(&runtime, &specs, Mode::Replay, catalog.clone(), None)
            .await
            .unwrap();
        let requests = [
            ("https://e.org/f.tar.gz", vec![]),
            (
                "https://e.org/f.tar.gz",
                vec![("accept", "application/json")],
            ),
            (
                "https://e.org/f.tar.gz",
                vec![("range", "bytes=0-1"), ("if-range", "x")],
            ),
            ("https://e.org/old", vec![("user-agent", "curl/8")]),
        ];
        let by_host = answers(&chain, &requests).await;
        for r in &requests {
            assert!(answer(&catalog, &req("GET", r.0, &r.1)).is_some(), "{r:?}");
        }
        chain.ask_every_plugin();
        let by_plugin = answers(&chain, &requests).await;
        assert_eq!(by_host, by_plugin);
        assert_eq!(by_host[3].1.head.status, 301);
    }
}
