//! The environment that makes clients use the proxy and trust its CA.
//!
//! Files (the CA bundle, a wgetrc) go in a private temporary directory that
//! is removed when the run ends. No private key is ever written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls::pki_types::CertificateDer;

pub struct ClientEnv {
    pub vars: Vec<(String, String)>,
    pub bundle: PathBuf,
    dir: tempfile::TempDir,
}

const CA_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "NIX_SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
];

const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl ClientEnv {
    /// `extra_roots`: in capture, traffic that bypasses the proxy (no_proxy)
    /// still needs the system roots, so they join the bundle.
    pub fn prepare(
        addr: SocketAddr,
        ca_pem: &str,
        extra_roots: &[CertificateDer<'_>],
        proxy_loopback: bool,
    ) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("buildproxy.").tempdir()?;
        let bundle = dir.path().join("ca-bundle.pem");
        let mut pem = String::from(ca_pem);
        for cert in extra_roots {
            pem.push_str(&to_pem(cert));
        }
        std::fs::write(&bundle, pem)?;
        let proxy_url = format!("http://{addr}");
        let wgetrc = dir.path().join("wgetrc");
        std::fs::write(
            &wgetrc,
            format!(
                "use_proxy = on\nhttp_proxy = {proxy_url}\nhttps_proxy = {proxy_url}\nca_certificate = {}\n",
                bundle.display()
            ),
        )?;
        let mut vars = Vec::new();
        for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
            vars.push((name.to_string(), proxy_url.clone()));
        }
        let no_proxy = no_proxy(
            std::env::var("no_proxy")
                .ok()
                .or_else(|| std::env::var("NO_PROXY").ok()),
            proxy_loopback,
        );
        vars.push(("no_proxy".into(), no_proxy.clone()));
        vars.push(("NO_PROXY".into(), no_proxy));
        for name in CA_VARS {
            vars.push((name.to_string(), bundle.display().to_string()));
        }
        vars.push(("WGETRC".into(), wgetrc.display().to_string()));
        vars.push(("BUILDPROXY_ADDR".into(), addr.to_string()));
        Ok(Self { vars, bundle, dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `export NAME='value'` lines for `eval` in a POSIX shell.
    pub fn exports(&self) -> String {
        self.vars
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
            .collect()
    }
}

/// The user's `no_proxy` entries, plus loopback unless it is proxied too.
fn no_proxy(existing: Option<String>, proxy_loopback: bool) -> String {
    let mut items: Vec<String> = existing
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if proxy_loopback {
        items.retain(|i| !LOOPBACK.contains(&i.as_str()));
    } else {
        for l in LOOPBACK {
            if !items.iter().any(|i| i == l) {
                items.push(l.to_string());
            }
        }
    }
    items.join(",")
}

fn to_pem(cert: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_no_proxy_is_kept_and_loopback_added() {
        assert_eq!(
            no_proxy(Some("corp.example, .internal".into()), false),
            "corp.example,.internal,localhost,127.0.0.1,::1"
        );
        assert_eq!(no_proxy(Some("localhost,corp".into()), true), "corp");
        assert_eq!(no_proxy(None, true), "");
    }

    #[test]
    fn exports_quote_for_the_shell() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }
}
