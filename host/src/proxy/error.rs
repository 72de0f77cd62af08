//! Answers the host makes itself when something fails. Each says which side
//! failed (upstream, client, plugin, host), the URL, and what to do.

use http::{HeaderValue, Response, StatusCode};

use super::body::{ProxyBody, full};

/// Which side of the proxy an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Upstream,
    Client,
    Plugin,
    Host,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Upstream => "upstream",
            Side::Client => "client",
            Side::Plugin => "plugin",
            Side::Host => "host",
        }
    }
}

pub fn respond(status: StatusCode, side: Side, url: &str, cause: &str) -> Response<ProxyBody> {
    let text = format!(
        "buildproxy: {} {} failed ({} error)\n{cause}\n",
        status.as_u16(),
        url,
        side.as_str()
    );
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-buildproxy-error",
        HeaderValue::from_static(side.as_str()),
    );
    resp
}

/// A readable chain of causes: hyper's top-level messages ("client error
/// (Connect)") say little without their sources.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_names_the_url_the_side_and_the_cause() {
        let r = respond(
            StatusCode::BAD_GATEWAY,
            Side::Upstream,
            "https://x.org/a",
            "connection refused",
        );
        assert_eq!(r.status(), 502);
        assert_eq!(r.headers()["x-buildproxy-error"], "upstream");
    }

    #[test]
    fn chain_joins_sources() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        assert!(chain(&outer).contains("connection refused"));
    }
}

/// The summary line for a client that broke off the TLS handshake with
/// the proxy: almost always a client that does not trust buildproxy's CA,
/// so nothing it wanted from `host` was downloaded or recorded, although
/// the client may well exit 0 (apt does).
pub fn client_rejected_tls(host: &str, cause: &std::io::Error) -> String {
    format!(
        "a client connecting to {host} broke off the TLS handshake ({cause}): it does not \
         trust buildproxy's CA, so nothing it fetched from {host} was recorded. Fix: give \
         that client the CA bundle (SSL_CERT_FILE and the other variables buildproxy \
         exports; apt reads APT_CONFIG, wget WGETRC, Java JAVA_TOOL_OPTIONS; see README's \
         compatibility table); a client that pins its certificates cannot be captured"
    )
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn a_rejected_handshake_names_the_host_and_the_fix() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: UnknownCA",
        );
        let line = client_rejected_tls("deb.example.org", &e);
        assert!(line.contains("connecting to deb.example.org"), "{line}");
        assert!(line.contains("UnknownCA"), "{line}");
        assert!(line.contains("APT_CONFIG"), "{line}");
    }
}
