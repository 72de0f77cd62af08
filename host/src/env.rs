//! The environment that makes clients use the proxy and trust its CA.
//!
//! Every client is reached through what buildproxy exports, with no setup
//! of its own: most read the proxy variables and a CA bundle variable; the
//! rest get a file written next to the bundle (wget a `wgetrc`, Java a
//! PKCS#12 truststore) or their own variables (npm, cargo). README's
//! compatibility table says which client reads what, and which test proves
//! it. Where a user's value must be combined with ours (`no_proxy`,
//! `JAVA_TOOL_OPTIONS`, a `wgetrc`) it is kept, ours taking precedence only
//! where both say the same thing.
//!
//! Files go in a private temporary directory that is removed when the run
//! ends. No private key is ever written.

mod apt;
mod java;
mod pkcs12;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls::pki_types::CertificateDer;

pub struct ClientEnv {
    pub vars: Vec<(String, String)>,
    /// Holds the files the variables name (CA bundle, wgetrc, truststore,
    /// apt configuration): dropping it deletes them, so it lives as long as
    /// the environment is in use. Only tests read it.
    _dir: tempfile::TempDir,
}

/// Variables that name a PEM bundle, each read by some client: OpenSSL
/// (and so Python, CMake, Ruby), Nix, curl, requests, pip, Node, git, cargo.
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

/// The user's values that ours are combined with, read once.
#[derive(Default)]
struct Existing {
    no_proxy: Option<String>,
    java_tool_options: Option<String>,
    /// The wgetrc wget would read without us: its path and text.
    wgetrc: Option<(PathBuf, String)>,
    /// The user's own `APT_CONFIG` file: its path and text.
    apt_config: Option<(PathBuf, String)>,
}

impl Existing {
    fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        let wgetrc_path = var("WGETRC")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".wgetrc")));
        Self {
            no_proxy: var("no_proxy").or_else(|| var("NO_PROXY")),
            java_tool_options: var("JAVA_TOOL_OPTIONS"),
            wgetrc: wgetrc_path
                .and_then(|p| std::fs::read_to_string(&p).ok().map(|text| (p, text))),
            apt_config: var("APT_CONFIG")
                .map(PathBuf::from)
                .and_then(|p| std::fs::read_to_string(&p).ok().map(|text| (p, text))),
        }
    }
}

impl ClientEnv {
    /// `extra_roots`: in capture, traffic that bypasses the proxy (no_proxy)
    /// still needs the system roots, so they join the bundle.
    pub fn prepare(
        addr: SocketAddr,
        proxy_url: &str,
        ca_pem: &str,
        extra_roots: &[CertificateDer<'_>],
        proxy_loopback: bool,
    ) -> std::io::Result<Self> {
        Self::prepare_with(
            addr,
            proxy_url,
            ca_pem,
            extra_roots,
            proxy_loopback,
            &Existing::from_process(),
        )
    }

    fn prepare_with(
        addr: SocketAddr,
        proxy_url: &str,
        ca_pem: &str,
        extra_roots: &[CertificateDer<'_>],
        proxy_loopback: bool,
        existing: &Existing,
    ) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("buildproxy.").tempdir()?;
        let bundle = dir.path().join("ca-bundle.pem");
        let mut pem = String::from(ca_pem);
        for cert in extra_roots {
            pem.push_str(&to_pem(cert));
        }
        std::fs::write(&bundle, pem)?;
        let bundle_str = bundle.display().to_string();
        let no_proxy = no_proxy(existing.no_proxy.as_deref(), proxy_loopback);
        let no_proxy_list = no_proxy.join(",");

        let wgetrc = dir.path().join("wgetrc");
        std::fs::write(
            &wgetrc,
            wgetrc_text(existing.wgetrc.as_ref(), proxy_url, &no_proxy_list, &bundle),
        )?;
        let apt_config = dir.path().join("apt.conf");
        std::fs::write(
            &apt_config,
            apt::config_text(existing.apt_config.as_ref(), &bundle),
        )?;
        let truststore = dir.path().join("truststore.p12");
        std::fs::write(&truststore, truststore_der(ca_pem, extra_roots)?)?;

        let mut vars = Vec::new();
        let mut set = |k: &str, v: &str| vars.push((k.to_string(), v.to_string()));
        for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
            set(name, proxy_url);
        }
        set("no_proxy", &no_proxy_list);
        set("NO_PROXY", &no_proxy_list);
        for name in CA_VARS {
            set(name, &bundle_str);
        }
        // wget reads neither SSL_CERT_FILE (GnuTLS) nor, for its CA, any
        // other variable: only a wgetrc.
        set("WGETRC", &wgetrc.display().to_string());
        set("APT_CONFIG", &apt_config.display().to_string());
        set(
            "JAVA_TOOL_OPTIONS",
            &java::tool_options(
                existing.java_tool_options.as_deref(),
                addr,
                &no_proxy,
                &truststore,
            ),
        );
        // npm takes its CA from `cafile` when a global or user npmrc sets
        // one (Debian's does), ignoring NODE_EXTRA_CA_CERTS; and a proxy
        // in an npmrc beats the proxy variables. npm_config_* beat both.
        set("npm_config_cafile", &bundle_str);
        set("npm_config_proxy", proxy_url);
        set("npm_config_https_proxy", proxy_url);
        set("npm_config_noproxy", &no_proxy_list);
        // cargo prefers `http.proxy` from its config files to the proxy
        // variables; this one beats the config files.
        set("CARGO_HTTP_PROXY", proxy_url);
        // Last: readers of `--print-env` output may stop at it.
        set("BUILDPROXY_ADDR", &addr.to_string());
        Ok(Self { vars, _dir: dir })
    }

    #[cfg(test)]
    fn dir(&self) -> &Path {
        self._dir.path()
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
fn no_proxy(existing: Option<&str>, proxy_loopback: bool) -> Vec<String> {
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
    items
}

/// Setting WGETRC hides `~/.wgetrc`, so the user's file comes first and
/// ours after it: wget lets a later setting win.
fn wgetrc_text(
    existing: Option<&(PathBuf, String)>,
    proxy_url: &str,
    no_proxy: &str,
    bundle: &Path,
) -> String {
    let mut text = String::new();
    if let Some((path, user)) = existing {
        text.push_str(&format!("# from {}\n{user}\n", path.display()));
    }
    text.push_str(&format!(
        "# buildproxy\nuse_proxy = on\nhttp_proxy = {proxy_url}\nhttps_proxy = {proxy_url}\n\
         no_proxy = {no_proxy}\nca_certificate = {}\n",
        bundle.display()
    ));
    text
}

/// The bundle's certificates as a Java truststore: ours first, then the
/// extra roots (capture's system roots, for what bypasses the proxy).
fn truststore_der(ca_pem: &str, extra_roots: &[CertificateDer<'_>]) -> std::io::Result<Vec<u8>> {
    let ours = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .next()
        .ok_or_else(|| std::io::Error::other("the proxy's CA PEM holds no certificate"))??;
    let aliases: Vec<String> = (1..=extra_roots.len())
        .map(|i| format!("root-{i}"))
        .collect();
    Ok(pkcs12::truststore(
        std::iter::once(("buildproxy-ca", ours.as_ref())).chain(
            aliases
                .iter()
                .map(String::as_str)
                .zip(extra_roots.iter().map(|c| c.as_ref())),
        ),
    ))
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
            no_proxy(Some("corp.example, .internal"), false).join(","),
            "corp.example,.internal,localhost,127.0.0.1,::1"
        );
        assert_eq!(no_proxy(Some("localhost,corp"), true), ["corp"]);
        assert!(no_proxy(None, true).is_empty());
    }

    #[test]
    fn exports_quote_for_the_shell() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }

    #[test]
    fn the_users_wgetrc_is_kept_before_ours() {
        let user = (PathBuf::from("/home/u/.wgetrc"), "tries = 3\n".to_string());
        let text = wgetrc_text(
            Some(&user),
            "http://127.0.0.1:1",
            "localhost",
            Path::new("/b.pem"),
        );
        let ours = text.find("# buildproxy").unwrap();
        assert!(text.find("tries = 3").unwrap() < ours, "{text}");
        assert!(text[ours..].contains("ca_certificate = /b.pem\n"), "{text}");
        assert!(text[ours..].contains("no_proxy = localhost\n"), "{text}");
    }

    #[test]
    fn the_users_java_options_and_no_proxy_reach_the_exports() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let existing = Existing {
            no_proxy: Some("corp.example".into()),
            java_tool_options: Some("-Xmx2g".into()),
            wgetrc: None,
            apt_config: None,
        };
        let env = ClientEnv::prepare_with(
            "127.0.0.1:3128".parse().unwrap(),
            "http://buildproxy:s3cret@127.0.0.1:3128",
            &ca.cert.pem(),
            &[],
            false,
            &existing,
        )
        .unwrap();
        let var = |k: &str| &env.vars.iter().find(|(n, _)| n == k).unwrap().1;
        assert_eq!(var("no_proxy"), "corp.example,localhost,127.0.0.1,::1");
        assert_eq!(var("npm_config_noproxy"), var("no_proxy"));
        assert_eq!(
            var("https_proxy"),
            "http://buildproxy:s3cret@127.0.0.1:3128"
        );
        assert_eq!(var("CARGO_HTTP_PROXY"), var("https_proxy"));
        let java = var("JAVA_TOOL_OPTIONS");
        // A JVM prints these options to the build log: no secret in them.
        assert!(!java.contains("s3cret"), "{java}");
        assert!(
            java.starts_with("-Xmx2g -Dhttp.proxyHost=127.0.0.1 "),
            "{java}"
        );
        assert!(
            java.contains("-Dhttp.nonProxyHosts=corp.example|*.corp.example|localhost|*.localhost|127.0.0.1|[::1] "),
            "{java}"
        );
        assert!(env.dir().join("truststore.p12").is_file());
        assert_eq!(env.vars.last().unwrap().0, "BUILDPROXY_ADDR");
    }
}
