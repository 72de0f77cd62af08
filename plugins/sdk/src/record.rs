//! What of a response goes into a recorded entry. Shared by every plugin
//! that records (capture, redirect), so an entry looks the same whoever made
//! it.

use crate::{Blob, Entry, Headers, ResponseHead, negotiation};

/// How the host's `exchange.error` begins when the client stopped reading
/// the body (its own choice: uv reads a wheel's metadata from the start of
/// a whole body and hangs up). Whether that matters is decided at the end
/// of the run: it does only if no other request got the body whole.
pub const CLIENT_LEFT: &str = "client went away";

/// Response headers worth replaying: they change how a client treats the
/// body. Hop-by-hop and per-connection headers are the host's business.
pub const RECORDED_HEADERS: &[&str] = &[
    "content-disposition",
    "content-encoding",
    "content-length",
    "content-type",
    "etag",
    "last-modified",
    "location",
];

/// The entry for a response to a request with `request` headers: only the
/// recorded headers, as text, no `content-length` on a status-only entry
/// (it would describe no body), and the request headers that selected this
/// representation ([`negotiation::selecting`]).
pub fn entry(
    request: &Headers,
    method: String,
    url: String,
    head: &ResponseHead,
    fetch_url: Option<String>,
    body: Option<Blob>,
) -> Entry {
    let has_body = body.is_some();
    let headers = head
        .headers
        .iter()
        .filter(|(name, _)| RECORDED_HEADERS.contains(&name.as_str()))
        .filter(|(name, _)| has_body || name != "content-length")
        .filter_map(|(n, v)| Some((n.clone(), String::from_utf8(v.clone()).ok()?)))
        .collect();
    Entry {
        method,
        url,
        fetch_url,
        status: head.status,
        headers,
        request_headers: negotiation::selecting(request, head),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recorded_headers_and_no_length_without_a_body() {
        let head = ResponseHead {
            status: 302,
            headers: vec![
                ("location".into(), b"/x".to_vec()),
                ("content-length".into(), b"0".to_vec()),
                ("set-cookie".into(), b"s".to_vec()),
            ],
        };
        let e = entry(
            &Headers::new(),
            "GET".into(),
            "https://e.org/".into(),
            &head,
            None,
            None,
        );
        assert_eq!(e.headers, vec![("location".to_string(), "/x".to_string())]);
        let with_body = Some(Blob {
            id: "sha256-x".into(),
            size: 0,
        });
        let e = entry(
            &Headers::new(),
            "GET".into(),
            "https://e.org/".into(),
            &head,
            None,
            with_body,
        );
        assert!(e.headers.iter().any(|(n, _)| n == "content-length"));
    }
}
