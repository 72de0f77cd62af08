//! The bundled `redirect` plugin: owns everything a redirect chain means.
//!
//! The host links the exchanges of one chain (a request for a URL that a
//! redirect it relayed shortly before pointed to carries `chain`, the URLs
//! before it); this plugin decides what that means:
//!
//! - Capture (`on-complete`): every hop is a status-only entry with its
//!   `location`; the final response is matched by its own URL but fetched
//!   from the chain's first URL (see [`record`] for `forget` and
//!   `unstable`). 5xx/429 at the end of a chain are not recorded and are
//!   reported. The capture plugin leaves all of these to this one.
//! - Replay (`on-request`): **faithful** by default (the replay plugin serves
//!   each recorded redirect, the client follows); **flatten** (globally or
//!   for first URLs matching `flatten`) answers the first URL with the
//!   final response, by rewriting the request to the final URL of the chain
//!   recorded in the content ([`follow`]), for clients that do not follow.
//! - Both modes (`on-request`): URLs matching `reject` get a local 404
//!   (nothing recorded, no miss: `.sha1`/`.md5` sidecars a build only
//!   probes); a request whose URL is already in its own chain (a loop) or
//!   whose chain reached `max-hops` gets a local 508 and is reported at the
//!   end of the run.
//!
//! In `proxy` mode it does nothing. Config: see [`config`].

pub mod config;
pub mod follow;
pub mod record;

use buildproxy_plugin_sdk::{
    Body, Exchange, Hooks, Host, Kind, Level, Mode, Plugin, PutOutcome, Request, RequestAction,
    RequestFilter, Response, ResponseHead,
};

use config::Config;
use follow::Followed;
use record::Decision;

#[derive(Default)]
pub struct Redirect {
    mode: Option<Mode>,
    config: Config,
}

impl Redirect {
    /// A local answer that explains itself.
    fn answer(status: u16, marker: &str, text: String) -> RequestAction {
        RequestAction::Respond(Response {
            head: ResponseHead {
                status,
                headers: vec![
                    ("content-type".into(), b"text/plain; charset=utf-8".to_vec()),
                    (marker.into(), b"1".to_vec()),
                ],
            },
            body: Body::Bytes(text.into_bytes()),
        })
    }

    /// A loop or an over-long chain: stopped here, reported at the end.
    fn stop_chain(&self, host: &dyn Host, req: &Request) -> Option<RequestAction> {
        let what = if req.chain.contains(&req.url) {
            format!("redirect loop: {} -> {}", req.chain.join(" -> "), req.url)
        } else if req.chain.len() >= self.config.max_hops {
            format!(
                "redirect chain from {} reached {} redirects (\"max-hops\") at {}",
                req.chain[0],
                req.chain.len(),
                req.url
            )
        } else {
            return None;
        };
        host.log(Level::Warn, &format!("{what}; answered 508"));
        host.tell(
            Kind::Failed,
            Some(&req.url),
            &format!("{what} (answered 508, not followed further)"),
        );
        Some(Self::answer(
            508,
            "x-buildproxy-redirect-stopped",
            format!(
                "buildproxy: {what}.\nThe proxy stopped following this chain; nothing past this \
                 point is recorded. A server that redirects back to a URL already in the chain \
                 (often a cookie dance) cannot be replayed from recorded URLs.\n"
            ),
        ))
    }

    fn flatten(&self, host: &dyn Host, req: Request) -> RequestAction {
        let first = req.chain.first().unwrap_or(&req.url);
        if !self.config.flattens(first) {
            return RequestAction::Pass;
        }
        match follow::follow(host, &req.method, &req.url, self.config.max_hops) {
            Followed::NotARedirect => RequestAction::Pass,
            Followed::Final { url, hops } => {
                host.log(
                    Level::Debug,
                    &format!("flatten: {} answered with {url}", req.url),
                );
                let mut req = req;
                req.chain.extend(hops);
                req.url = url;
                RequestAction::Rewrite(req)
            }
            Followed::Broken(why) => {
                host.log(
                    Level::Warn,
                    &format!("{why}; serving the redirect as recorded"),
                );
                host.tell(
                    Kind::Note,
                    Some(&req.url),
                    &format!("{why} (served the redirect as recorded)"),
                );
                RequestAction::Pass
            }
        }
    }
}

impl Plugin for Redirect {
    fn configure(&mut self, _host: &dyn Host, mode: Mode, config: &str) -> Result<(), String> {
        self.config = Config::parse(config)?;
        self.mode = Some(mode);
        Ok(())
    }

    /// Requests in capture and replay (reject, loops, flatten); completed
    /// exchanges in capture (recording); nothing in proxy mode.
    fn hooks(&self) -> Hooks {
        match self.mode {
            Some(Mode::Capture) => Hooks::ON_REQUEST | Hooks::ON_COMPLETE,
            Some(Mode::Replay) => Hooks::ON_REQUEST,
            _ => Hooks::empty(),
        }
    }

    /// Without `reject` or flattening, only a request in a redirect chain
    /// can be stopped here (a loop, too many hops); the rest would cost a
    /// call that hears `pass`.
    fn requests(&self) -> Option<RequestFilter> {
        let c = &self.config;
        (c.reject.is_empty() && c.flatten.is_empty() && !c.flatten_all).then(|| RequestFilter {
            url_contains: Vec::new(),
            in_chain: true,
        })
    }

    fn on_request(&mut self, host: &dyn Host, _id: u64, req: Request) -> RequestAction {
        let mode = match self.mode {
            Some(m @ (Mode::Capture | Mode::Replay)) => m,
            _ => return RequestAction::Pass,
        };
        if let Some(pattern) = self.config.reject.find(&req.url) {
            host.log(
                Level::Info,
                &format!(
                    "rejected {} {} (\"reject\": {pattern})",
                    req.method, req.url
                ),
            );
            return Self::answer(
                404,
                "x-buildproxy-rejected",
                format!(
                    "buildproxy: {} is rejected by the redirect plugin's \"reject\" pattern \
                     {pattern:?}; it is never recorded nor fetched.\n",
                    req.url
                ),
            );
        }
        if let Some(stop) = self.stop_chain(host, &req) {
            return stop;
        }
        if mode == Mode::Replay {
            return self.flatten(host, req);
        }
        RequestAction::Pass
    }

    fn on_complete(&mut self, host: &dyn Host, _id: u64, summary: Exchange) {
        if self.mode != Some(Mode::Capture) {
            return;
        }
        let (method, url) = (&summary.request.method, &summary.request.url);
        match record::decide(&self.config, &summary) {
            Decision::NotMine => {}
            Decision::Record(entry) => {
                let at = entry.url.clone();
                match host.put(entry) {
                    Ok(PutOutcome::Conflict) => host.tell(
                        Kind::Conflict,
                        Some(&at),
                        "recorded before with another status or body; the first is kept \
                         (redirects that change are a reproducibility hazard)",
                    ),
                    Ok(_) => {}
                    Err(e) => host.log(Level::Error, &format!("could not record {at}: {e}")),
                }
            }
            Decision::Drop(why) => host.log(
                Level::Info,
                &format!("not recorded: {method} {url} ({why})"),
            ),
            Decision::Skip(why) => {
                host.log(
                    Level::Warn,
                    &format!("not recorded: {method} {url} ({why})"),
                );
                host.tell(Kind::Failed, Some(url), &format!("not recorded: {why}"));
            }
        }
    }
}

buildproxy_plugin_sdk::export_plugin!(Redirect);

#[cfg(test)]
mod tests;
