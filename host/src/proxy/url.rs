//! The absolute URL of a request, as plugins and the inventory see it.

/// `scheme://host[:port]/path?query` with scheme and host lower-case and the
/// default port dropped: only what HTTP says is equal is normalised; path
/// and query are kept byte for byte.
pub fn absolute(scheme: &str, host: &str, port: Option<u16>, path_and_query: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default = matches!(
        (scheme.as_str(), port),
        ("http", Some(80)) | ("https", Some(443))
    );
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    match port {
        Some(p) if !default => format!("{scheme}://{host}:{p}{path}"),
        _ => format!("{scheme}://{host}{path}"),
    }
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
