//! The seam between the proxy (mechanism) and whatever decides about
//! content (policy). The proxy speaks these types and calls [`Policy`];
//! `plugin::Chain` is the implementation that runs WebAssembly plugins, and
//! the only place that converts to and from the plugin interface. Tests of
//! the exchange use a plain Rust policy instead.
//!
//! What a policy answers is checked here, once ([`check_head`],
//! [`check_request`]): an answer that is not valid HTTP is the policy's
//! fault, reported as such, never sent on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::headers;

/// Header values are bytes: HTTP allows values that are not UTF-8. Names
/// are lower-case; hop-by-hop headers never appear.
pub type Headers = Vec<(String, Vec<u8>)>;

/// A boxed future: [`Policy`] is used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// Absolute URL, scheme and host lower-case, default port omitted.
    pub url: String,
    pub headers: Headers,
    /// The redirect chain that led here, first URL first (see `redirects`).
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Headers,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A body the host holds, named by the id the host issued for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub id: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    None,
    Bytes(Vec<u8>),
    Blob(Blob),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub head: ResponseHead,
    pub body: Body,
}

/// Where the response an exchange ended with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upstream,
    /// The policy answered the request itself.
    Policy,
    /// The host answered: an error it generated.
    Host,
}

/// Everything known about a finished exchange, for [`Policy::on_complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The request as the client sent it (before any rewrite).
    pub request: Request,
    /// The URL the request was finally sent to.
    pub sent_url: String,
    /// The head the client received (as the policy left it, before the
    /// host's fixes for changed bytes); none if none was produced.
    pub head: Option<ResponseHead>,
    /// Hash (SRI) and size of the body as it came from its source, only if
    /// all of it went through.
    pub body: Option<Blob>,
    /// Why the exchange failed, if it did.
    pub error: Option<String>,
    pub source: Source,
    /// Hash (SRI) and size of the request body, when the policy asked for it.
    pub request_body: Option<Blob>,
}

/// Where a request goes after [`Policy::on_request`].
#[derive(Debug)]
pub enum RequestOutcome {
    /// Upstream, as (possibly) rewritten; `by` names who rewrote it.
    Forward {
        request: Request,
        by: Option<Arc<str>>,
    },
    /// Answered locally by `by`.
    Respond { by: Arc<str>, response: Response },
    /// The policy wants the request body before it decides: buffer it and
    /// call [`Policy::on_request_body`] with `resume`.
    WantBody { request: Request, resume: Resume },
}

/// Where the policy's decision on a request continues once it has the body
/// (opaque to the proxy).
#[derive(Debug, Clone)]
pub struct Resume {
    pub at: usize,
    /// Who rewrote the request so far.
    pub by: Option<Arc<str>>,
}

/// What [`Policy::on_response`] decided.
#[derive(Debug)]
pub struct ResponseOutcome {
    pub head: ResponseHead,
    /// Who wants the whole body (opaque to the proxy; handed back to
    /// [`Policy::on_response_body`]). Empty: stream it.
    pub want_body: Vec<usize>,
}

/// The decisions the proxy asks for, in the order it asks (see
/// ARCHITECTURE.md, "The life of one exchange").
pub trait Policy: Send + Sync {
    /// Forward (maybe rewritten) or answer locally.
    fn on_request(&self, id: u64, req: Request) -> BoxFuture<'_, Result<RequestOutcome, Fault>>;

    /// The request body, buffered because the policy asked for it; decides
    /// as [`Policy::on_request`] does.
    fn on_request_body(
        &self,
        id: u64,
        req: Request,
        body: Bytes,
        resume: Resume,
    ) -> BoxFuture<'_, Result<RequestOutcome, Fault>>;

    /// Every response head, upstream or local: keep, replace, or ask for
    /// the body.
    fn on_response<'a>(
        &'a self,
        id: u64,
        req: &'a Request,
        head: ResponseHead,
    ) -> BoxFuture<'a, Result<ResponseOutcome, Fault>>;

    /// The whole body, for those that asked; returns the body to send
    /// instead, if any.
    fn on_response_body<'a>(
        &'a self,
        id: u64,
        req: &'a Request,
        head: &'a ResponseHead,
        want_body: &'a [usize],
        body: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Fault>>;

    /// After the exchange ended; cannot fail it any more.
    fn on_complete<'a>(&'a self, id: u64, summary: &'a Summary) -> BoxFuture<'a, ()>;

    /// The exchange is gone (completed, or its client left): what the
    /// policy kept for it can go.
    fn end(&self, _id: u64) {}
}

/// The policy (a plugin) failed while deciding about one exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {by} failed in {hook}: {reason}")]
pub struct Fault {
    pub by: Arc<str>,
    pub hook: &'static str,
    pub reason: FaultReason,
}

/// Why a policy call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultReason {
    /// The guest trapped (a panic in a Rust plugin is `unreachable`).
    #[error("trapped: {code}{}", colon(.detail))]
    Trap { code: String, detail: String },
    /// The call ran past `--plugin-deadline-ms`.
    #[error(
        "ran past its deadline of {} ms (raise it with --plugin-deadline-ms if the work is legitimate)",
        .0.as_millis()
    )]
    Deadline(Duration),
    /// The instance tried to grow its memory past `--plugin-memory-mib`.
    #[error("exceeded its memory limit of {} MiB (raise it with --plugin-memory-mib)", .0 >> 20)]
    Memory(usize),
    /// The call returned an answer the host cannot use (an invalid status,
    /// header, method or URL).
    #[error("answered with {0}")]
    InvalidAnswer(String),
    /// The policy named a body the host never gave it.
    #[error("named a body the host does not hold: {0:?}")]
    UnknownBlob(String),
    /// `configure` refused the plugin's config.
    #[error("rejected config: {0}")]
    Config(String),
    /// Anything else the runtime reported (instantiation, a host error).
    #[error("{0}")]
    Other(String),
}

fn colon(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

/// A response head a policy produced must be valid HTTP.
pub fn check_head(head: &ResponseHead) -> Result<(), FaultReason> {
    if !(100..=599).contains(&head.status) {
        return Err(FaultReason::InvalidAnswer(format!(
            "invalid status {}",
            head.status
        )));
    }
    headers::check(&head.headers).map_err(FaultReason::InvalidAnswer)
}

/// A rewritten request must be one the upstream client can send.
pub fn check_request(req: &Request) -> Result<(Method, http::Uri, http::HeaderMap), FaultReason> {
    let invalid = FaultReason::InvalidAnswer;
    let uri: http::Uri = req
        .url
        .parse()
        .map_err(|e| invalid(format!("rewritten URL {:?} is invalid: {e}", req.url)))?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(invalid(format!(
            "rewritten URL {:?} is not absolute",
            req.url
        )));
    }
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| invalid(format!("invalid method {:?}", req.method)))?;
    let headers = headers::to_http(&req.headers).map_err(invalid)?;
    Ok((method, uri, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_heads_are_the_policys_fault_with_the_reason() {
        let head = |status, headers: &[(&str, &[u8])]| ResponseHead {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
        };
        assert!(check_head(&head(200, &[("x-a", b"1")])).is_ok());
        for (bad, says) in [
            (head(1000, &[]), "1000"),
            (head(200, &[("bad name", b"1")]), "bad name"),
            (head(200, &[("x", b"a\nb")]), "\"x\""),
        ] {
            match check_head(&bad) {
                Err(FaultReason::InvalidAnswer(why)) => assert!(why.contains(says), "{why}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_rewrite_must_be_an_absolute_url_and_a_valid_method() {
        let req = |method: &str, url: &str| Request {
            method: method.into(),
            url: url.into(),
            headers: vec![],
            chain: vec![],
        };
        assert!(check_request(&req("GET", "https://a.test/x")).is_ok());
        for bad in [req("GET", "/relative"), req("G ET", "https://a.test/")] {
            assert!(
                matches!(check_request(&bad), Err(FaultReason::InvalidAnswer(_))),
                "{bad:?}"
            );
        }
    }
}
