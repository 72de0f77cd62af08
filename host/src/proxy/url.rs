//! The absolute URL of a request, as plugins and the inventory see it.

/// `scheme://host[:port]/path?query` with scheme and host lower-case and the
/// default port dropped: only what HTTP says is equal is normalised; path
/// and query are kept byte for byte.
pub fn absolute(scheme: &str, host: &str, port: Option<u16>, path_and_query: &str) -> String {
    let default = matches!(
        (
            port,
            scheme.eq_ignore_ascii_case("http"),
            scheme.eq_ignore_ascii_case("https")
        ),
        (Some(80), true, _) | (Some(443), _, true)
    );
    let bracket = host.contains(':') && !host.starts_with('[');
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    // Once per request: one allocation, not `format!`'s and two lowercase
    // copies.
    let mut out = String::with_capacity(scheme.len() + host.len() + path.len() + 11);
    out.push_str(scheme);
    out.make_ascii_lowercase();
    out.push_str("://");
    if bracket {
        out.push('[');
    }
    let host_at = out.len();
    out.push_str(host);
    out[host_at..].make_ascii_lowercase();
    if bracket {
        out.push(']');
    }
    if let Some(p) = port.filter(|_| !default) {
        use std::fmt::Write;
        // Into the same String: writing to a String cannot fail.
        let _ = write!(out, ":{p}");
    }
    out.push_str(path);
    out
}

/// Host without brackets, and port, of an `authority` like `[::1]:443`.
pub fn split_authority(authority: &http::uri::Authority) -> (String, Option<u16>) {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    (host.to_string(), authority.port_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_only_what_http_calls_equal() {
        assert_eq!(
            absolute("HTTP", "Example.ORG", Some(80), "/a%2Fb?x=%41"),
            "http://example.org/a%2Fb?x=%41"
        );
        assert_eq!(
            absolute("https", "example.org", Some(8443), "/"),
            "https://example.org:8443/"
        );
        assert_eq!(absolute("https", "::1", Some(443), ""), "https://[::1]/");
        assert_eq!(
            absolute("https", "::1", Some(8443), "/x"),
            "https://[::1]:8443/x"
        );
    }
}
