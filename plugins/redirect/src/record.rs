//! Capture: what a redirect, or an exchange a redirect led to, becomes.
//!
//! For a chain A → B → C (200), where the host gave C's request the chain
//! `[A, B]`:
//! - A and B become status-only entries with their status and `location`
//!   (replayed as they came; the client follows, as it did here);
//! - C becomes a normal entry matched by C (what the client asks for), whose
//!   `fetchurl` downloads from A: the first URL of the chain is the stable
//!   one, C is often a signed CDN URL that expires. URLs matching `unstable`
//!   are passed over (the first URL that does not match is used, C itself
//!   if all do).
//! - A redirect from or to a URL matching `forget` is not recorded, nor is
//!   anything after it: the URL that made it is recorded with C's response
//!   (fetched from the chain's stable URL). The file then holds no CDN URL at
//!   all, and re-capturing gives the same file even when the CDN URL is
//!   signed per request (mitm-cache's `--forget-redirects-from/-to`).

use buildproxy_plugin_sdk::{Entry, Exchange, ResponseHead, Source, headers};

use crate::config::Config;
use buildproxy_plugin_sdk::location;
use buildproxy_plugin_sdk::record::entry;

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not a redirect and not led to by one: the capture plugin's.
    NotMine,
    Record(Entry),
    /// Expected, nothing to tell the user (a forgotten hop).
    Drop(String),
    /// Not recorded, and the user should hear why at the end of the run.
    Skip(String),
}

/// A response the client follows with a new request (the host links the
/// two by the same rule).
pub fn redirect_target(req_url: &str, head: &ResponseHead) -> Option<String> {
    if !buildproxy_plugin_sdk::location::is_redirect_status(head.status) {
        return None;
    }
    let location = headers::get(&head.headers, "location")?;
    location::resolve(req_url, location).or_else(|| Some(location.to_string()))
}

pub fn decide(config: &Config, summary: &Exchange) -> Decision {
    let req = &summary.request;
    let Some(head) = &summary.head else {
        return Decision::NotMine;
    };
    let target = redirect_target(&req.url, head);
    if summary.source != Source::Upstream || target.is_none() && req.chain.is_empty() {
        return Decision::NotMine;
    }
    if let Some(err) = &summary.error {
        return Decision::Skip(format!("transfer failed: {err}"));
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Decision::Drop(format!("method {} is not replayable", req.method));
    }
    // The whole chain as URLs, this exchange's last, then where it points.
    let mut urls: Vec<&str> = req.chain.iter().map(String::as_str).collect();
    let here = urls.len();
    urls.push(&req.url);
    if let Some(t) = &target {
        urls.push(t);
    }
    let forgotten = urls.windows(2).position(|w| config.forgets(w[0], w[1]));
    if target.is_some() {
        return match forgotten {
            Some(i) if i <= here => Decision::Drop(format!(
                "the redirect {} -> {} is forgotten (\"forget\"): {} is recorded with the final response",
                urls[i],
                urls[i + 1],
                urls[i]
            )),
            _ => Decision::Record(entry(
                &req.headers,
                req.method.clone(),
                req.url.clone(),
                head,
                None,
                None,
            )),
        };
    }
    let status = head.status;
    let keep_body = match status {
        200..=299 => req.method == "GET",
        300..=399 | 404 | 410 => false,
        _ => {
            return Decision::Skip(format!(
                "upstream answered {status} at the end of the redirect chain from {}",
                urls[0]
            ));
        }
    };
    let body = if keep_body {
        match &summary.body {
            Some(blob) => Some(blob.clone()),
            None => return Decision::Skip("body incomplete".into()),
        }
    } else {
        None
    };
    let url = match forgotten {
        Some(i) => urls[i].to_string(),
        None => req.url.clone(),
    };
    let fetch_url = if body.is_some() {
        let stable = urls
            .iter()
            .find(|u| !config.unstable.matches(u))
            .unwrap_or(&urls[here]);
        (*stable != url).then(|| stable.to_string())
    } else {
        None
    };
    Decision::Record(entry(
        &req.headers,
        req.method.clone(),
        url,
        head,
        fetch_url,
        body,
    ))
}
