//! `capture --verify` and `check --fetch`: download each entry again the
//! way `fetchurl` will, and report those whose bytes differ from the
//! recorded hash.
//!
//! A capture records what the build's client received; Nix later fetches
//! each body with curl, which sends no `Accept-Encoding`, only the
//! entry's recorded request headers, and follows redirects. When the
//! server answers that request with other bytes (content negotiation on a
//! header buildproxy does not record, a page generated per request, a
//! token in the body), the fixed-output fetch fails with a hash mismatch
//! long after the capture. This finds those at capture time.

use std::time::Duration;

use buildproxy_plugin_sdk::location::resolve;
use http_body_util::BodyExt;
use hyper::{Method, Request};
use sha2::{Digest, Sha256};

use crate::cli::CheckArgs;
use crate::inventory::{Entry, nix};
use crate::proxy::{Timeouts, Upstream, body, upstream_client};
use crate::tls::upstream;

/// What curl calls itself: some servers answer browsers and tools
/// differently, and fetchurl's curl is a tool.
const USER_AGENT: &str = "curl/8 (buildproxy capture --verify)";

/// fetchurl's curl gives up after this many redirects.
const MAX_REDIRECTS: usize = 20;

/// An entry `fetchurl` would not reproduce.
#[derive(Debug)]
pub(crate) struct Mismatch {
    pub url: String,
    pub fetch_url: String,
    pub recorded: String,
    /// What the new download hashed to, or why it failed.
    pub got: Result<String, String>,
    pub request_headers: Vec<(String, String)>,
}

impl Mismatch {
    /// Lines for the end-of-capture report: what differs, and the fix.
    pub fn describe(&self) -> String {
        let via = if self.fetch_url == self.url {
            String::new()
        } else {
            format!(" (fetched from {})", self.fetch_url)
        };
        let sent = if self.request_headers.is_empty() {
            "no request headers".to_string()
        } else {
            self.request_headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match &self.got {
            Ok(hash) => format!(
                "{}{via}: recorded {}, but a download as fetchurl makes it ({sent}) gives {hash}.\n\
                 \x20   fix: if the server picks the body by a request header the client sent \
                 (its `vary`), capture with a client that sends what fetchurl sends, or drop \
                 the entry and let the build not need it; if the body changes on every \
                 download (a generated page, a token, a timestamp), the build must not depend \
                 on it: patch the build or reject the URL (--plugin-config redirect='{{\"reject\": [\"…\"]}}')",
                self.url, self.recorded
            ),
            Err(why) => format!(
                "{}{via}: recorded {}, but a download as fetchurl makes it ({sent}) failed: \
                 {why}.\n\x20   fix: the URL needs something fetchurl does not send \
                 (credentials, a cookie, a short-lived signature): download it in the \
                 build's source instead (a fetchurl with the right URL), or make the \
                 build not need it",
                self.url, self.recorded
            ),
        }
    }
}

/// `buildproxy check --fetch FILE`: [`verify_and_report`] on every entry
/// of a `proxy_content.nix`.
pub async fn check(args: CheckArgs) -> anyhow::Result<i32> {
    let file = args.file.unwrap_or_default();
    let entries = nix::parse(&file)?;
    let (roots, _) = upstream::roots(&args.upstream_ca)?;
    let timeouts = Timeouts::default();
    let client = upstream_client(upstream::client_config(roots), &timeouts);
    let label = format!("check {}", file.display());
    let same = verify_and_report(&label, &client, &entries, timeouts.response).await;
    Ok(if same { 0 } else { 1 })
}

/// Verifies `entries` and prints the outcome, each line starting with
/// `label`; whether every body came back the same.
pub(crate) async fn verify_and_report(
    label: &str,
    client: &Upstream,
    entries: &[Entry],
    timeout: Duration,
) -> bool {
    let with_body = entries.iter().filter(|e| e.body.is_some()).count();
    let bodies = if with_body == 1 { "body" } else { "bodies" };
    let mismatches = verify(client, entries, timeout).await;
    if mismatches.is_empty() {
        eprintln!(
            "buildproxy: {label}: {with_body} {bodies} downloaded as fetchurl will download {}: \
             the same bytes",
            if with_body == 1 { "it" } else { "them" }
        );
        return true;
    }
    eprintln!(
        "buildproxy: {label}: {} of {with_body} {bodies} fetchurl would not reproduce:",
        mismatches.len()
    );
    for m in &mismatches {
        eprintln!("buildproxy:   {}", m.describe());
    }
    false
}

/// Downloads every entry with a body as fetchurl would and returns those
/// whose hash differs. `timeout` bounds each download.
pub(crate) async fn verify(
    client: &Upstream,
    entries: &[Entry],
    timeout: Duration,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for e in entries {
        let Some(recorded) = e.body.as_ref().and_then(|b| b.hash.clone()) else {
            continue;
        };
        let headers: Vec<(String, String)> = e
            .request_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let download = async {
            match git_revs(e) {
                Some(revs) => super::git_fetch::objects_of(client, e.fetch_url(), &revs)
                    .await
                    .map(|(bytes, _)| nix::sri(&Sha256::digest(&bytes))),
                None => fetch(client, e.fetch_url(), &headers).await,
            }
        };
        let got = match tokio::time::timeout(timeout, download).await {
            Ok(r) => r,
            Err(_) => Err(format!("no complete answer within {} s", timeout.as_secs())),
        };
        if got.as_ref() != Ok(&recorded) {
            out.push(Mismatch {
                url: e.url.clone(),
                fetch_url: e.fetch_url().to_string(),
                recorded,
                got,
                request_headers: headers,
            });
        }
    }
    out
}

/// The IDs of a git objects entry, which `fetchGitObjects` fetches with
/// `git-fetch` rather than as a download.
fn git_revs(e: &Entry) -> Option<Vec<crate::git::object::ObjectId>> {
    if e.method != nix::GIT_METHOD {
        return None;
    }
    crate::git::entry::wants(e.request_headers.get(nix::GIT_WANTS)?)
}

/// The SRI hash of `url`'s body, following redirects, with curl's default
/// headers (`accept: */*`, no encodings) and `headers` over them.
async fn fetch(
    client: &Upstream,
    url: &str,
    headers: &[(String, String)],
) -> Result<String, String> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .header("user-agent", USER_AGENT);
        if !headers.iter().any(|(k, _)| k == "accept") {
            req = req.header("accept", "*/*");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(body::empty()).map_err(|e| e.to_string())?;
        let resp = client.request(req).await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        })?;
        let status = resp.status();
        if status.is_redirection()
            && let Some(loc) = resp.headers().get("location")
        {
            let loc = loc.to_str().map_err(|_| "a location that is not text")?;
            url = resolve(&url, loc).unwrap_or_else(|| loc.to_string());
            continue;
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let mut hasher = Sha256::new();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("{url}: {e}"))?;
            if let Some(data) = frame.data_ref() {
                hasher.update(data);
            }
        }
        return Ok(body::sri(&hasher.finalize()));
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}
