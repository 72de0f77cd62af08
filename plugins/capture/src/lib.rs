//! The bundled `capture` plugin: decides which exchanges become entries.
//!
//! Policy, in order of the hooks:
//! - `on-request`: the request sent upstream asks for exactly what `fetchurl`
//!   will download: no `accept-encoding` (fetchurl sends none, so a hash of a
//!   gzip-encoded body would never match), no `range` and no conditionals (a
//!   206 or 304 is not the body). The client still gets a valid answer: a
//!   server may always ignore those headers.
//! - `on-complete`: a complete GET/HEAD exchange from upstream becomes an
//!   entry when its status is 2xx (with its body), another 3xx
//!   (status-only), or 404/410 (status-only probes). 5xx, 429, other 4xx,
//!   failed transfers and other methods are skipped, logged, and told to
//!   the host's end-of-run summary (`report`).
//! - An entry keeps the request headers that selected its representation
//!   (`accept`, and what `vary` names: see the SDK's `negotiation`), so the
//!   same URL asked for JSON and for HTML gives two entries, and `fetchurl`
//!   asks for the same one.
//! - git's smart HTTP (`info/refs?service=git-upload-pack`, the
//!   `git-upload-pack` POSTs) is the `git` plugin's: their bytes are not
//!   reproducible, the objects they carry are.
//! - Redirects (301, 302, 303, 307, 308 with a `location`) and every
//!   exchange a redirect led to (its request has a `chain`) are the
//!   `redirect` plugin's to record: one owner for everything a chain means
//!   (fetch URLs, forgotten hops, loops).
//!
//! Config: empty, or `keep-encoding` to pass `accept-encoding` through (for
//! upstreams that only serve compressed bodies).

use buildproxy_plugin_sdk::{
    Entry, Exchange, Hooks, Host, Kind, Level, Mode, Plugin, PutOutcome, Request, RequestAction,
    ResponseHead, Source, headers,
};
use buildproxy_plugin_sdk::{negotiation, record};

#[derive(Default)]
pub struct Capture {
    keep_encoding: bool,
    enabled: bool,
}

/// What happens to a finished exchange, and why.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Record(Entry),
    Skip(String),
}

impl Capture {
    pub fn decide(summary: &Exchange) -> Decision {
        let req = &summary.request;
        if summary.source != Source::Upstream {
            return Decision::Skip("answered locally".into());
        }
        if let Some(head) = &summary.head
            && buildproxy_plugin_sdk::git::http::is_smart(&req.method, &req.url, head)
        {
            return Decision::Skip("git's smart HTTP: the git plugin records it".into());
        }
        if let Some(err) = &summary.error {
            return Decision::Skip(format!("transfer failed: {err}"));
        }
        let Some(head) = &summary.head else {
            return Decision::Skip("no response".into());
        };
        if req.method != "GET" && req.method != "HEAD" {
            return Decision::Skip(format!("method {} is not replayable", req.method));
        }
        let status = head.status;
        if !req.chain.is_empty() || is_redirect(head) {
            return Decision::Skip(
                "part of a redirect chain: the redirect plugin records it".into(),
            );
        }
        let keep_body = match status {
            200..=299 => req.method == "GET",
            300..=399 | 404 | 410 => false,
            _ => {
                return Decision::Skip(format!(
                    "upstream answered {status}, which is not recorded"
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
        Decision::Record(record::entry(
            &req.headers,
            req.method.clone(),
            req.url.clone(),
            head,
            None,
            body,
        ))
    }
}

/// A response the client follows with a new request, which the redirect
/// plugin records (the host links the two by the same rule).
fn is_redirect(head: &ResponseHead) -> bool {
    buildproxy_plugin_sdk::location::is_redirect_status(head.status)
        && headers::get(&head.headers, "location").is_some()
}

/// Whether the user must hear about a skip: upstream failed to give the
/// build something; local answers and chains are expected. A client that
/// stopped reading (uv, given a whole body where it asked for a range or
/// wanted only a wheel's metadata) chose to: the host reports it at the end
/// only if no request got that body whole.
fn reported(summary: &Exchange) -> bool {
    let client_left = summary
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with(record::CLIENT_LEFT));
    summary.source == Source::Upstream
        && !client_left
        && (summary.error.is_some() || summary.head.as_ref().is_some_and(|h| h.status >= 400))
}

impl Plugin for Capture {
    fn configure(&mut self, _host: &dyn Host, mode: Mode, config: &str) -> Result<(), String> {
        self.enabled = mode == Mode::Capture;
        match config.trim() {
            "" => {}
            "keep-encoding" => self.keep_encoding = true,
            other => {
                return Err(format!(
                    "unknown option {other:?}; the capture plugin takes an empty config or \"keep-encoding\""
                ));
            }
        }
        Ok(())
    }

    /// It shapes what is sent upstream, records, and reports, in capture only.
    fn hooks(&self) -> Hooks {
        if self.enabled {
            Hooks::ON_REQUEST | Hooks::ON_COMPLETE
        } else {
            Hooks::empty()
        }
    }

    fn on_request(&mut self, _host: &dyn Host, _id: u64, mut req: Request) -> RequestAction {
        if !self.enabled {
            return RequestAction::Pass;
        }
        let before = req.headers.len();
        for name in negotiation::STRIPPED_BY_CAPTURE {
            headers::remove(&mut req.headers, name);
        }
        if !self.keep_encoding {
            headers::remove(&mut req.headers, "accept-encoding");
        }
        if req.headers.len() == before {
            RequestAction::Pass
        } else {
            RequestAction::Rewrite(req)
        }
    }

    fn on_complete(&mut self, host: &dyn Host, _id: u64, summary: Exchange) {
        if !self.enabled {
            return;
        }
        match Self::decide(&summary) {
            Decision::Record(entry) => {
                let url = entry.url.clone();
                let selecting = entry.request_headers.clone();
                match host.put(entry) {
                    Ok(PutOutcome::Conflict) => {
                        let why = format!(
                            "answered with a different body than before ({}); the first is \
                             kept (dynamic content is a reproducibility hazard)",
                            negotiation::describe(&selecting)
                        );
                        host.log(Level::Warn, &format!("{url} {why}"));
                        host.tell(Kind::Conflict, Some(&url), &why);
                    }
                    Ok(_) => {}
                    Err(e) => host.log(Level::Error, &format!("could not record {url}: {e}")),
                }
            }
            Decision::Skip(why) => {
                host.log(
                    Level::Info,
                    &format!(
                        "not recorded: {} {} ({why})",
                        summary.request.method, summary.request.url
                    ),
                );
                if reported(&summary) {
                    host.tell(
                        Kind::Failed,
                        Some(&summary.request.url),
                        &format!("not recorded: {why}"),
                    );
                }
            }
        }
    }
}

buildproxy_plugin_sdk::export_plugin!(Capture);

#[cfg(test)]
mod tests;
