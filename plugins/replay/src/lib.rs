//! The bundled `replay` plugin: answers requests from the recorded content.
//!
//! - A request is matched on method and full URL (the host normalises scheme,
//!   host case and default port), then on the request headers that selected
//!   each recorded representation (content negotiation, see the SDK's
//!   `negotiation`): a request that asks for JSON never gets the HTML, nor
//!   the reverse. HEAD is answered from the GET entry (the host sends its
//!   headers and length, no body).
//! - Conditional GETs get 304 when the entry's validators match
//!   (`if-none-match` against `etag`, `if-modified-since` against an
//!   identical `last-modified`), else the full entry.
//! - A miss answers 404 with a body that says what to do, and is reported to
//!   the host so it can list misses at exit and fail under `--strict`.
//!
//! Range requests are the host's: it serves 206 from the file.
//!
//! A plain `GET` of a URL recorded once (no conditional headers, one entry
//! recorded without request headers) gets that entry whatever else the
//! request says, so the plugin lets the host give it without a call
//! (`answers_recorded`, `requests.answer-recorded`): in replay, most
//! requests never reach it.
//!
//! Config: empty.

use buildproxy_plugin_sdk::{
    Body, Entry, Hooks, Host, Mode, Plugin, Request, RequestAction, Response, ResponseHead,
    headers, negotiation,
};

#[derive(Default)]
pub struct Replay {
    enabled: bool,
}

impl Replay {
    pub fn answer(host: &dyn Host, req: &Request) -> Response {
        let lookup = |method: &str| host.representations(method, &req.url);
        let mut representations = match req.method.as_str() {
            "HEAD" => {
                let get = lookup("GET");
                if get.is_empty() { lookup("HEAD") } else { get }
            }
            m => lookup(m),
        };
        match negotiation::select(&req.headers, &representations) {
            Some(i) => match not_modified(req, &representations[i]) {
                Some(head) => Response {
                    head,
                    body: Body::None,
                },
                None => Self::from_entry(representations.swap_remove(i)),
            },
            None => {
                host.record_miss(&req.method, &req.url);
                miss(req, &representations)
            }
        }
    }

    fn from_entry(entry: Entry) -> Response {
        let headers = entry
            .headers
            .into_iter()
            .map(|(n, v)| (n, v.into_bytes()))
            .collect();
        Response {
            head: ResponseHead {
                status: entry.status,
                headers,
            },
            body: entry.body.map_or(Body::None, Body::Blob),
        }
    }
}

/// 304 when the client already holds what the entry holds.
fn not_modified(req: &Request, entry: &Entry) -> Option<ResponseHead> {
    if entry.status != 200 || req.method != "GET" && req.method != "HEAD" {
        return None;
    }
    let recorded = |name: &str| {
        entry
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let etag = recorded("etag");
    let matches = match headers::get(&req.headers, "if-none-match") {
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        Some(inm) => etag.is_some_and(|etag| {
            inm.split(',')
                .map(str::trim)
                .any(|t| t == "*" || weak(t) == weak(etag))
        }),
        None => headers::get(&req.headers, "if-modified-since")
            .is_some_and(|ims| recorded("last-modified") == Some(ims.trim())),
    };
    matches.then(|| ResponseHead {
        status: 304,
        headers: ["etag", "last-modified"]
            .iter()
            .filter_map(|n| Some((n.to_string(), recorded(n)?.as_bytes().to_vec())))
            .collect(),
    })
}

fn weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

fn miss(req: &Request, representations: &[Entry]) -> Response {
    let what = format!("buildproxy replay: {} {}", req.method, req.url);
    let text = if !representations.is_empty() {
        let recorded: Vec<String> = representations
            .iter()
            .map(|e| format!("  {}\n", negotiation::describe(&e.request_headers)))
            .collect();
        format!(
            "{what} was captured, but for other request headers (content negotiation):\n\
             recorded:\n{}this request sent: {}\n\
             The same URL gives different bytes for different headers, so replay answers only \
             the representation a request asks for.\n\
             Capture with the client (and version) the build uses, so that it records this one.\n",
            recorded.concat(),
            negotiation::describe(&negotiation::sent(&req.headers, representations))
        )
    } else if !matches!(req.method.as_str(), "GET" | "HEAD") {
        format!(
            "{what} cannot be replayed: capture records only GET and HEAD, because a {} \
             sends data whose answer a fixed-output fetch cannot reproduce.\n\
             Make the build not send it: for npm, pass --no-audit --no-fund (or set \
             npm_config_audit=false); for git, use Nix's fetchgit.\n",
            req.method
        )
    } else {
        format!(
            "{what} is not in the captured content.\n\
             The build asked for a URL that was not downloaded when the content was captured.\n\
             Re-run the capture (buildproxy capture -- <your build>) so that it records this URL,\n\
             or make the build not need it.\n"
        )
    };
    Response {
        head: ResponseHead {
            status: 404,
            headers: vec![
                ("content-type".into(), b"text/plain; charset=utf-8".to_vec()),
                ("x-buildproxy-miss".into(), b"1".to_vec()),
            ],
        },
        body: Body::Bytes(text.into_bytes()),
    }
}

impl Plugin for Replay {
    fn configure(&mut self, _host: &dyn Host, mode: Mode, config: &str) -> Result<(), String> {
        if !config.trim().is_empty() {
            return Err(format!("the replay plugin takes no config, got {config:?}"));
        }
        self.enabled = mode == Mode::Replay;
        Ok(())
    }

    /// It only answers requests, and only in replay.
    fn hooks(&self) -> Hooks {
        if self.enabled {
            Hooks::ON_REQUEST
        } else {
            Hooks::empty()
        }
    }

    /// A plain `GET` of a URL recorded once gets its entry from `answer`
    /// (nothing to negotiate, no validators to compare): the host may
    /// give it without a call.
    fn answers_recorded(&self) -> bool {
        self.enabled
    }

    fn on_request(&mut self, host: &dyn Host, _id: u64, req: Request) -> RequestAction {
        if !self.enabled {
            return RequestAction::Pass;
        }
        RequestAction::Respond(Self::answer(host, &req))
    }
}

buildproxy_plugin_sdk::export_plugin!(Replay);

#[cfg(test)]
mod tests;
