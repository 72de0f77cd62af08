//! The bundled `git` plugin: git clones and fetches over smart HTTP,
//! recorded in capture and answered in replay, with the same commit IDs.
//!
//! A server's pack is not reproducible (it depends on its git version and
//! how it packs); object IDs are. So capture keeps, per fetch, the objects
//! of the commits it wanted in a canonical form whose hash depends on the
//! IDs only (`entries` says what is recorded), and replay answers the
//! protocol itself from them (the SDK's `git::upload_pack`, a shallow
//! server: it holds the fetched commits, not their history, and says so).
//!
//! - capture: asks for the body of every `git-upload-pack` POST (what it
//!   wants) and of its answer (the pack), and of the `info/refs`
//!   advertisement (the refs). The exchanges still go upstream untouched;
//!   the `capture` plugin leaves them to this one.
//! - replay: answers `info/refs` and `git-upload-pack` (protocol v0/v1 and
//!   v2, `ls-refs`, `fetch`, shallow or not) from the entries. A commit that
//!   was not captured is a miss naming the repository and the commit. A
//!   repository with no entries is left to `replay` for its `info/refs`
//!   (a dumb-protocol clone recorded it as a download) and is a miss for
//!   its `git-upload-pack`.
//!
//! The dumb protocol's plain GETs are ordinary downloads, recorded by
//! `capture` like any other file.
//!
//! Config: empty.

mod answer;
pub mod entries;
pub mod record;

use buildproxy_plugin_sdk::git::http::{self, Service};
use buildproxy_plugin_sdk::git::upload_pack::{ADVERTISEMENT_TYPE, RESULT_TYPE};
use buildproxy_plugin_sdk::{
    Body, Hooks, Host, Kind, Level, Mode, Plugin, Request, RequestAction, RequestFilter, Response,
    ResponseAction, ResponseHead, headers,
};

use answer::Cache;
use record::Asked;

#[derive(Default)]
pub struct Git {
    mode: Option<Mode>,
    cache: answer::Cache,
}

impl Plugin for Git {
    fn configure(&mut self, _host: &dyn Host, mode: Mode, config: &str) -> Result<(), String> {
        if !config.trim().is_empty() {
            return Err(format!(
                "unknown option {:?}; the git plugin takes no config",
                config.trim()
            ));
        }
        self.mode = Some(mode);
        Ok(())
    }

    fn hooks(&self) -> Hooks {
        match self.mode {
            Some(Mode::Capture) => Hooks::ON_REQUEST | Hooks::ON_RESPONSE,
            Some(Mode::Replay) => Hooks::ON_REQUEST,
            _ => Hooks::empty(),
        }
    }

    /// Only git's URLs: every other request would cost a call that hears
    /// `pass` (`smart_http` still decides).
    fn requests(&self) -> Option<RequestFilter> {
        Some(RequestFilter {
            url_contains: http::SMART_PATHS.iter().map(|p| p.to_string()).collect(),
            in_chain: false,
        })
    }

    fn on_request(&mut self, host: &dyn Host, _id: u64, req: Request) -> RequestAction {
        let Some((service, repo)) = http::smart_http(&req.method, &req.url) else {
            return RequestAction::Pass;
        };
        match (self.mode, service) {
            (Some(_), Service::UploadPack) => RequestAction::WantBody,
            (Some(Mode::Replay), Service::Advertisement) => {
                advertise(host, &req, &repo, &mut self.cache)
            }
            _ => RequestAction::Pass,
        }
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        _id: u64,
        req: Request,
        body: Vec<u8>,
    ) -> RequestAction {
        let Some((_, repo)) = http::smart_http(&req.method, &req.url) else {
            return RequestAction::Pass;
        };
        let Some(body) = http::decoded(headers::get(&req.headers, "content-encoding"), body) else {
            host.log(
                Level::Warn,
                &format!(
                    "{}: a request body in an encoding git does not use",
                    req.url
                ),
            );
            return RequestAction::Pass;
        };
        match self.mode {
            Some(Mode::Capture) => {
                if let Ok(asked) = Asked::of_request(&body)
                    && host.set_state(&asked.encode()).is_err()
                {
                    host.tell(
                        Kind::Failed,
                        Some(&repo),
                        "git: a fetch wanted more objects than this plugin can keep track of; \
                         it is not recorded",
                    );
                }
                RequestAction::Pass
            }
            Some(Mode::Replay) => {
                RequestAction::Respond(upload_pack(host, &req, &repo, &body, &mut self.cache))
            }
            _ => RequestAction::Pass,
        }
    }

    fn on_response(
        &mut self,
        host: &dyn Host,
        _id: u64,
        req: Request,
        head: ResponseHead,
    ) -> ResponseAction {
        let wanted = match http::smart_http(&req.method, &req.url) {
            Some((Service::Advertisement, _)) => http::is_smart(&req.method, &req.url, &head),
            Some((Service::UploadPack, _)) => host.state().is_some(),
            None => false,
        };
        if wanted && head.status == 200 {
            ResponseAction::WantBody
        } else {
            ResponseAction::Pass
        }
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        _id: u64,
        req: Request,
        head: ResponseHead,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let (service, repo) = http::smart_http(&req.method, &req.url)?;
        let Some(body) = http::decoded(headers::get(&head.headers, "content-encoding"), body)
        else {
            host.tell(
                Kind::Failed,
                Some(&repo),
                "git: the server's answer is in an encoding this plugin cannot read",
            );
            return None;
        };
        match service {
            Service::Advertisement => record::refs(host, &repo, &body, false),
            Service::UploadPack => match host.state().and_then(|s| Asked::decode(&s)) {
                Some(Asked::LsRefs) => record::refs(host, &repo, &body, true),
                Some(Asked::Fetch(wants)) => record::fetch(host, &repo, &wants, &body),
                None => {}
            },
        }
        None
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response {
        head: ResponseHead {
            status,
            headers: vec![
                ("content-type".into(), content_type.as_bytes().to_vec()),
                ("cache-control".into(), b"no-cache".to_vec()),
            ],
        },
        body: Body::Bytes(body),
    }
}

fn v2(req: &Request) -> bool {
    headers::get(&req.headers, "git-protocol")
        .is_some_and(|v| v.split(':').any(|p| p.trim() == "version=2"))
}

/// A repository with no entries: a miss, with what to do.
fn not_captured(host: &dyn Host, req: &Request, repo: &str) -> Response {
    host.record_miss(&req.method, &req.url);
    respond(
        404,
        "text/plain",
        format!(
            "buildproxy: the git repository {repo} was not captured; capture the build again \
             to record it\n"
        )
        .into_bytes(),
    )
}

/// A repository whose entries cannot be read: the file and the fix.
fn damaged(host: &dyn Host, repo: &str, why: &str) -> Response {
    let reason = format!("git: the recorded objects cannot be served: {why}");
    host.tell(Kind::Failed, Some(repo), &reason);
    respond(
        502,
        "text/plain",
        format!("buildproxy: {repo}: {reason}\n").into_bytes(),
    )
}

/// A repository with entries is answered here; one without may have been
/// cloned over the dumb protocol, whose `info/refs` is an ordinary entry
/// the `replay` plugin answers (or misses).
fn advertise(host: &dyn Host, req: &Request, repo: &str, cache: &mut Cache) -> RequestAction {
    match answer::repository(host, repo, cache) {
        Ok(None) => RequestAction::Pass,
        Ok(Some(r)) => {
            let body = r.advertise(v2(req));
            cache.keep(r);
            RequestAction::Respond(respond(200, ADVERTISEMENT_TYPE, body))
        }
        Err(why) => RequestAction::Respond(damaged(host, repo, &why)),
    }
}

fn upload_pack(
    host: &dyn Host,
    req: &Request,
    repo: &str,
    body: &[u8],
    cache: &mut Cache,
) -> Response {
    let r = match answer::repository(host, repo, cache) {
        Ok(None) => return not_captured(host, req, repo),
        Ok(Some(r)) => r,
        Err(why) => return damaged(host, repo, &why),
    };
    let answer = r.upload_pack(body);
    cache.keep(r);
    match answer {
        Ok(a) => {
            if !a.missing.is_empty() {
                host.record_miss(&req.method, &req.url);
                host.tell(
                    Kind::Missed,
                    Some(repo),
                    &format!(
                        "git: {} was not captured; capture the build again to record it",
                        record::list(&a.missing)
                    ),
                );
            }
            respond(200, RESULT_TYPE, a.body)
        }
        Err(e) => respond(
            400,
            "text/plain",
            format!("buildproxy: {repo}: {e}\n").into_bytes(),
        ),
    }
}

buildproxy_plugin_sdk::export_plugin!(Git);

#[cfg(test)]
mod tests;
