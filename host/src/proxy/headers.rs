//! Headers between hyper and the policy's plain pairs.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Connection-level headers: they describe one hop, never the resource, and
/// h2 forbids them.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// An upstream response that gives both `Content-Length` and
/// `Transfer-Encoding` has two lengths (a request-smuggling pattern, RFC
/// 9112 §6.3): relayed, the client would read one and capture hash the
/// other. It is refused, never relayed or recorded.
pub fn check_framing(headers: &HeaderMap) -> Result<(), String> {
    if headers.contains_key(http::header::CONTENT_LENGTH)
        && headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        return Err(
            "the upstream sent both Content-Length and Transfer-Encoding, \
                    so the body's length is ambiguous (RFC 9112 §6.3): refused, not recorded"
                .into(),
        );
    }
    Ok(())
}

/// The end-to-end headers, names lower-case (hyper's are already).
pub fn to_pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(n, _)| !is_hop_by_hop(n.as_str()))
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Plugin-provided headers, checked: an invalid name or value is the
/// plugin's error, reported as such rather than sent on.
pub fn to_http(headers: &[(String, Vec<u8>)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name_of(name)?;
        if is_hop_by_hop(n.as_str()) {
            continue;
        }
        let v = HeaderValue::from_bytes(value)
            .map_err(|_| format!("invalid value for header {name:?}"))?;
        map.append(n, v);
    }
    Ok(map)
}

/// What [`to_http`] would refuse, found without building the map (whose
/// values are copies): a policy answer is checked where it is made and
/// converted once, when it is sent.
pub fn check(headers: &[(String, Vec<u8>)]) -> Result<(), String> {
    for (name, value) in headers {
        name_of(name)?;
        if !value.iter().all(|&b| valid_value_byte(b)) {
            return Err(format!("invalid value for header {name:?}"));
        }
    }
    Ok(())
}

fn name_of(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))
}

/// `HeaderValue::from_bytes`'s rule: visible ASCII, obs-text, space, tab.
fn valid_value_byte(b: u8) -> bool {
    b >= 32 && b != 127 || b == b'\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_exactly_what_to_http_refuses() {
        for b in 0..=255u8 {
            let pairs = [("x-v".to_string(), vec![b'a', b])];
            assert_eq!(
                check(&pairs).is_ok(),
                to_http(&pairs).is_ok(),
                "value byte {b:#04x}"
            );
        }
        for name in ["etag", "x-buildproxy-miss", "bad name", "", "caf\u{e9}"] {
            let pairs = [(name.to_string(), b"1".to_vec())];
            assert_eq!(check(&pairs).is_ok(), to_http(&pairs).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn hop_by_hop_headers_never_cross() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(
            to_pairs(&h),
            vec![("content-type".to_string(), b"text/plain".to_vec())]
        );
    }
}
