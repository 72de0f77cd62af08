//! Replay, flatten policy: follow a recorded chain inside the recorded
//! content, from the URL the client asked for to the final entry.
//!
//! Works from the content alone: each hop is a status-only entry whose
//! `location` names the next (as capture records it, and as a
//! nix-buildproxy file with `status_code = 302` and `headers.location`
//! says it), so a file captured faithfully can be replayed either way.

use buildproxy_plugin_sdk::{Entry, Host};

use buildproxy_plugin_sdk::location;

#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// The URL is not a recorded redirect: nothing to flatten.
    NotARedirect,
    /// The final URL, and the URLs before it (the first one first).
    Final { url: String, hops: Vec<String> },
    /// The chain cannot be followed; the reason, for the report.
    Broken(String),
}

/// The entry replay would answer `url` with, for any method (HEAD is
/// answered from GET).
fn lookup(host: &dyn Host, method: &str, url: &str) -> Option<Entry> {
    match method {
        "HEAD" => host.get("GET", url).or_else(|| host.get("HEAD", url)),
        m => host.get(m, url),
    }
}

fn location_of(entry: &Entry) -> Option<&str> {
    if !buildproxy_plugin_sdk::location::is_redirect_status(entry.status) {
        return None;
    }
    entry
        .headers
        .iter()
        .find(|(n, _)| n == "location")
        .map(|(_, v)| v.as_str())
}

pub fn follow(host: &dyn Host, method: &str, url: &str, max_hops: usize) -> Followed {
    let mut hops: Vec<String> = Vec::new();
    let mut current = url.to_string();
    loop {
        let Some(entry) = lookup(host, method, &current) else {
            return if hops.is_empty() {
                Followed::NotARedirect
            } else {
                Followed::Broken(format!(
                    "cannot flatten {url}: its chain leads to {current}, which is not in the content"
                ))
            };
        };
        let Some(loc) = location_of(&entry) else {
            return if hops.is_empty() {
                Followed::NotARedirect
            } else {
                Followed::Final { url: current, hops }
            };
        };
        let Some(next) = location::resolve(&current, loc) else {
            return Followed::Broken(format!(
                "cannot flatten {url}: {current} redirects to {loc:?}, which is not an http(s) URL"
            ));
        };
        hops.push(std::mem::replace(&mut current, next));
        if hops.contains(&current) {
            return Followed::Broken(format!(
                "cannot flatten {url}: the recorded redirects loop ({} -> {current})",
                hops.join(" -> ")
            ));
        }
        if hops.len() >= max_hops {
            return Followed::Broken(format!(
                "cannot flatten {url}: its recorded chain has more than {max_hops} redirects"
            ));
        }
    }
}
