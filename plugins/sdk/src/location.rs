//! Where a `location` points: RFC 3986 reference resolution against the
//! URL of the request it answered, normalised as the host writes request
//! URLs (scheme and host lower-case, default port dropped, path and query
//! byte for byte), so the result compares equal to the URL of the request a
//! client sends when it follows, and to the URL of a recorded entry.
//!
//! One implementation for both sides: the host links redirect chains with it
//! (host/src/proxy/redirects.rs) and the redirect plugin follows recorded
//! chains with it, so the two can never disagree about where a `location`
//! points. Tested on RFC 3986's examples.

/// The statuses a client follows with a new request to `location` (301,
/// 302, 303, 307, 308): the host links chains by them and the plugins
/// record and follow them by the same set.
pub fn is_redirect_status(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The absolute URL `location` names, seen from `base`; `None` when it is
/// not an http(s) URL. The fragment is dropped: clients do not send it.
pub fn resolve(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    let location = location.split('#').next().unwrap_or("");
    let (scheme, rest) = split_scheme(base)?;
    let (base_authority, base_path, base_query) = split_hier(rest);
    if let Some((s, r)) = split_scheme(location) {
        let (a, p, q) = split_hier(r);
        return normalise(s, a?, &remove_dots(p), q);
    }
    if location.starts_with("//") {
        let (a, p, q) = split_hier(location);
        return normalise(scheme, a?, &remove_dots(p), q);
    }
    let authority = base_authority?;
    if location.is_empty() {
        return normalise(scheme, authority, base_path, base_query);
    }
    if let Some(q) = location.strip_prefix('?') {
        return normalise(scheme, authority, base_path, Some(q));
    }
    let (p, q) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let path = if p.starts_with('/') {
        remove_dots(p)
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        remove_dots(&format!("{dir}{p}"))
    };
    normalise(scheme, authority, &path, q)
}

fn normalise(scheme: &str, authority: &str, path: &str, query: Option<&str>) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    // Userinfo is never part of what the host sees of a request.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() || authority.contains(|c: char| c.is_whitespace()) {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    if authority.ends_with(default_port) {
        authority.truncate(authority.len() - default_port.len());
    }
    let path = if path.is_empty() { "/" } else { path };
    Some(match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    })
}

fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some((scheme, rest))
}

fn split_hier(rest: &str) -> (Option<&str>, &str, Option<&str>) {
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    match before_query.strip_prefix("//") {
        Some(r) => {
            let end = r.find('/').unwrap_or(r.len());
            (Some(&r[..end]), &r[end..], query)
        }
        None => (None, before_query, query),
    }
}

fn remove_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://a.example/b/c/d;p?q";

    #[test]
    fn resolves_locations_as_rfc_3986_says() {
        // The examples of RFC 3986 5.4.1, with a real host.
        for (loc, want) in [
            ("g", "http://a.example/b/c/g"),
            ("./g", "http://a.example/b/c/g"),
            ("g/", "http://a.example/b/c/g/"),
            ("/g", "http://a.example/g"),
            ("//g.example/x", "http://g.example/x"),
            ("?y", "http://a.example/b/c/d;p?y"),
            ("g?y", "http://a.example/b/c/g?y"),
            ("#s", "http://a.example/b/c/d;p?q"),
            ("g#s", "http://a.example/b/c/g"),
            ("", "http://a.example/b/c/d;p?q"),
            (".", "http://a.example/b/c/"),
            ("..", "http://a.example/b/"),
            ("../g", "http://a.example/b/g"),
            ("../../g", "http://a.example/g"),
            ("../../../g", "http://a.example/g"),
            ("/./g", "http://a.example/g"),
            ("g/../h", "http://a.example/b/c/h"),
        ] {
            assert_eq!(resolve(BASE, loc).as_deref(), Some(want), "{loc:?}");
        }
    }

    #[test]
    fn absolute_locations_cross_schemes_and_hosts_and_are_normalised() {
        assert_eq!(
            resolve("http://a.example/x", "HTTPS://CDN.Example:443/f?sig=1%2F").as_deref(),
            Some("https://cdn.example/f?sig=1%2F")
        );
        assert_eq!(
            resolve("https://a.example/x", "http://[::1]:8080/y").as_deref(),
            Some("http://[::1]:8080/y")
        );
        assert_eq!(
            resolve("http://a.example:8080/x", "/y").as_deref(),
            Some("http://a.example:8080/y")
        );
        assert_eq!(resolve("http://a.example/x", "ftp://f.example/y"), None);
        assert_eq!(resolve("http://a.example/x", "https://bad host/"), None);
    }
}
