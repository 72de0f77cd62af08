//! Java: `HttpURLConnection`, `java.net.http.HttpClient` and what Gradle
//! and the Maven wrapper build on read neither the proxy variables nor PEM
//! bundles, only system properties. `JAVA_TOOL_OPTIONS` hands them to every
//! JVM the build starts, whatever launches it.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The user's `JAVA_TOOL_OPTIONS` followed by ours: a JVM applies options
/// in order, so ours win where both set the same property and the user's
/// others (heap size, agents, …) stay.
pub fn tool_options(
    existing: Option<&str>,
    proxy: SocketAddr,
    no_proxy: &[String],
    truststore: &Path,
) -> String {
    let (host, port) = (proxy.ip(), proxy.port());
    let ours = [
        format!("-Dhttp.proxyHost={host}"),
        format!("-Dhttp.proxyPort={port}"),
        format!("-Dhttps.proxyHost={host}"),
        format!("-Dhttps.proxyPort={port}"),
        // Set even when empty: unset, a JVM exempts loopback on its own,
        // which `--proxy-loopback` must override.
        format!("-Dhttp.nonProxyHosts={}", non_proxy_hosts(no_proxy)),
        option(&format!(
            "-Djavax.net.ssl.trustStore={}",
            truststore.display()
        )),
        "-Djavax.net.ssl.trustStoreType=PKCS12".to_string(),
    ];
    let mut all: Vec<String> = existing
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .into_iter()
        .collect();
    all.extend(ours);
    all.join(" ")
}

/// `no_proxy` in the syntax of `http.nonProxyHosts` (which also governs
/// HTTPS): `|`-separated patterns with a leading `*` wildcard. A domain
/// entry covers its subdomains, as in curl. CIDR ranges have no Java
/// equivalent and are left out.
pub fn non_proxy_hosts(no_proxy: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    for item in no_proxy {
        let item = item.trim();
        if item.is_empty() || item.contains('/') {
            continue;
        }
        let bare = item.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            out.push(match ip {
                IpAddr::V4(v4) => v4.to_string(),
                // A JVM matches the URL's host, which keeps the brackets.
                IpAddr::V6(v6) => format!("[{v6}]"),
            });
        } else if item == "*" || item.starts_with("*.") {
            out.push(item.to_string());
        } else if let Some(domain) = item.strip_prefix('.') {
            out.push(format!("*.{domain}"));
        } else {
            out.push(item.to_string());
            out.push(format!("*.{item}"));
        }
    }
    out.join("|")
}

/// A JVM splits `JAVA_TOOL_OPTIONS` at whitespace unless it is quoted.
fn option(s: &str) -> String {
    if s.contains(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_proxy_entries_become_java_patterns() {
        assert_eq!(
            non_proxy_hosts(&list(&[
                "localhost",
                "127.0.0.1",
                "::1",
                ".internal",
                "corp.example",
                "*.dev",
                "10.0.0.0/8"
            ])),
            "localhost|*.localhost|127.0.0.1|[::1]|*.internal|corp.example|*.corp.example|*.dev"
        );
        assert_eq!(non_proxy_hosts(&[]), "");
    }

    #[test]
    fn the_users_options_come_first_so_ours_win() {
        let opts = tool_options(
            Some(" -Xmx1g -Dhttp.proxyHost=elsewhere "),
            "127.0.0.1:3128".parse().unwrap(),
            &list(&["localhost"]),
            Path::new("/tmp/bp/truststore.p12"),
        );
        assert!(
            opts.starts_with("-Xmx1g -Dhttp.proxyHost=elsewhere -Dhttp.proxyHost=127.0.0.1 "),
            "{opts}"
        );
        assert!(opts.contains(" -Dhttps.proxyPort=3128 "), "{opts}");
        assert!(
            opts.contains(" -Dhttp.nonProxyHosts=localhost|*.localhost "),
            "{opts}"
        );
        assert!(
            opts.ends_with(
                " -Djavax.net.ssl.trustStore=/tmp/bp/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12"
            ),
            "{opts}"
        );
    }

    #[test]
    fn a_path_with_spaces_is_quoted() {
        let opts = tool_options(
            None,
            "127.0.0.1:1".parse().unwrap(),
            &[],
            Path::new("/tmp/a b/truststore.p12"),
        );
        assert!(
            opts.contains(" \"-Djavax.net.ssl.trustStore=/tmp/a b/truststore.p12\" "),
            "{opts}"
        );
        assert!(opts.starts_with("-Dhttp.proxyHost="), "{opts}");
    }
}
