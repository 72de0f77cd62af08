//! The life of one exchange (see ARCHITECTURE.md for the chart):
//!
//! 1. [`Policy::on_request`]: forward (maybe rewritten) or answer locally.
//! 2. A local answer is served from its bytes or its blob (`local`);
//!    otherwise the request goes upstream (`upstream`; never in replay).
//! 3. [`Policy::on_response`]; the policy may replace the head or ask for
//!    the body, which is then buffered up to the limit (`buffered`).
//! 4. The body streams to the client, hashed on the way (and stored).
//! 5. [`Policy::on_complete`] with the summary: hash and size only if the
//!    whole body went through.
//!
//! Every phase returns an [`ExchangeError`] when it fails; [`handle`]
//! turns it into the answer (status and side decided by the error) and
//! completes the exchange, in one place.

mod buffered;
mod local;
mod upstream;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::auth::Peer;
use super::body::{self, Digested, ProxyBody};
use super::error::{self, ExchangeError, PumpError};
use super::policy::{
    Blob, Fault, FaultReason, Request, RequestOutcome, ResponseHead, Source, Summary,
};
use super::sink::BlobSink;
use super::{InFlight, Proxy, headers};
use crate::catalog::BlobRef;

/// Where a request is going: scheme and authority, known from the tunnel or
/// the absolute-form URI; and who sent it, for its redirect chains.
#[derive(Clone)]
pub struct Target {
    pub scheme: &'static str,
    pub host: Arc<str>,
    pub port: Option<u16>,
    pub client: Option<Arc<Peer>>,
}

/// The per-exchange context that travels through the phases.
struct Flow {
    proxy: Arc<Proxy>,
    id: u64,
    method: Method,
    range: Option<String>,
    /// The request as the client sent it.
    request: Request,
    /// The URL it was sent to after rewrites.
    sent_url: String,
    /// The request body's hash and size, when the policy asked for it.
    request_body: Option<Blob>,
    /// Who sent it, for its redirect chains.
    client: Option<Arc<Peer>>,
    _inflight: InFlight,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.proxy.policy.end(self.id);
    }
}

/// What the body of a response will be made from.
enum BodySource {
    Upstream(body::Idle<Incoming>),
    Bytes(Vec<u8>),
    Blob(BlobRef, String),
    None,
}

/// A response for the client, and what its summary will say.
enum Answer {
    /// Everything is known now: complete, then answer.
    Ready {
        resp: Response<ProxyBody>,
        head: ResponseHead,
        body: Option<Blob>,
        source: Source,
    },
    /// The upstream body streams after the head is sent; the exchange
    /// completes when it ends.
    Streaming {
        resp: Response<ProxyBody>,
        head: ResponseHead,
        source: Source,
        pump: Pump,
    },
}

/// An upstream body on its way to the client (and the store).
struct Pump {
    incoming: body::Idle<Incoming>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    sink: Option<BlobSink>,
}

pub async fn handle<B>(
    proxy: Arc<Proxy>,
    req: hyper::Request<B>,
    target: Target,
) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, client_body) = req.into_parts();
    let mut flow = Flow::new(proxy, &parts, &target);
    match flow.run(client_body).await {
        Ok(Answer::Ready {
            resp,
            head,
            body,
            source,
        }) => {
            flow.complete(Some(head), body, None, source).await;
            resp
        }
        Ok(Answer::Streaming {
            resp,
            head,
            source,
            pump,
        }) => {
            tokio::spawn(async move {
                let mut flow = flow;
                let result = body::pump(pump.incoming, pump.tx, pump.sink).await;
                flow.finish_streamed(head, result, source).await;
            });
            resp
        }
        Err(e) => flow.fail(e).await,
    }
}

impl Flow {
    fn new(proxy: Arc<Proxy>, parts: &http::request::Parts, target: &Target) -> Self {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = super::url::absolute(target.scheme, &target.host, target.port, path);
        let client = target.client.clone();
        let request = Request {
            method: parts.method.as_str().to_string(),
            chain: proxy
                .redirects
                .chain_to(&url, || client.as_ref().and_then(|p| p.process())),
            url: url.clone(),
            headers: headers::to_pairs(&parts.headers),
        };
        Self {
            id: proxy.next_id(),
            _inflight: proxy.enter(),
            proxy,
            method: parts.method.clone(),
            range: parts
                .headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            sent_url: url,
            request_body: None,
            request,
            client,
        }
    }

    async fn run<B>(&mut self, client_body: B) -> Result<Answer, ExchangeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut outcome = self
            .proxy
            .policy
            .on_request(self.id, self.request.clone())
            .await?;
        let mut client_body = Some(client_body);
        let mut buffered: Option<Bytes> = None;
        while let RequestOutcome::WantBody { request, resume } = outcome {
            let body = match (&buffered, client_body.take()) {
                (Some(b), _) => b.clone(),
                (None, Some(b)) => {
                    let b = self.read_request_body(b).await?;
                    buffered = Some(b.clone());
                    b
                }
                (None, None) => unreachable!("the body is taken only to buffer it"),
            };
            outcome = self
                .proxy
                .policy
                .on_request_body(self.id, request, body, resume)
                .await?;
        }
        match outcome {
            RequestOutcome::Respond { by, response } => {
                let fault = |reason| Fault {
                    by: by.clone(),
                    hook: "on-request",
                    reason,
                };
                super::policy::check_head(&response.head).map_err(fault)?;
                let src = match response.body {
                    super::policy::Body::None => BodySource::None,
                    super::policy::Body::Bytes(b) => BodySource::Bytes(b),
                    super::policy::Body::Blob(blob) => match self.proxy.catalog.blob(&blob.id) {
                        Some(r) => BodySource::Blob(r, blob.id),
                        None => return Err(fault(FaultReason::UnknownBlob(blob.id)).into()),
                    },
                };
                self.respond(response.head, src, Source::Policy).await
            }
            RequestOutcome::WantBody { .. } => unreachable!("answered by the loop above"),
            RequestOutcome::Forward { request, by } => {
                let body = match (buffered, client_body) {
                    (Some(b), _) => body::full(b),
                    (None, Some(b)) => b.map_err(std::io::Error::other).boxed(),
                    (None, None) => body::empty(),
                };
                let (head, body) = upstream::send(self, request, by, body).await?;
                self.respond(head, BodySource::Upstream(body), Source::Upstream)
                    .await
            }
        }
    }

    /// The whole request body, for a policy that asked (bounded by the
    /// body limit); its hash goes into the summary.
    async fn read_request_body<B>(&mut self, body: B) -> Result<Bytes, ExchangeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.proxy.body_limit;
        // A length announced past the limit is refused before a byte is
        // read (no `100 Continue`): the client stops instead of sending it.
        if http_body::Body::size_hint(&body).lower() > limit as u64 {
            return Err(ExchangeError::RequestTooBig { limit });
        }
        let bytes = match http_body_util::Limited::new(body, limit).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ExchangeError::RequestTooBig { limit });
            }
            Err(e) => return Err(ExchangeError::ClientBody(e.to_string())),
        };
        self.request_body = Some(local::digest(&bytes));
        Ok(bytes)
    }

    /// Phases 3–4 for any response, upstream or local.
    async fn respond(
        &self,
        head: ResponseHead,
        src: BodySource,
        source: Source,
    ) -> Result<Answer, ExchangeError> {
        let outcome = self
            .proxy
            .policy
            .on_response(self.id, &self.request, head)
            .await?;
        self.remember_redirect(&outcome.head);
        // An upstream HEAD has no body to give; the head goes as it is.
        let no_body = self.method == Method::HEAD && matches!(src, BodySource::Upstream(_));
        if !outcome.want_body.is_empty() && !no_body {
            return buffered::respond(self, outcome.head, src, source, &outcome.want_body).await;
        }
        local::respond(self, outcome.head, src, source)
    }

    /// Where an upstream body with this status goes in the content store
    /// (`--store`), streamed or buffered alike: a GET's 2xx body, the only
    /// kind capture records with its body. A store that cannot take it is
    /// this URL's failure (listed at the end); the client still gets it.
    fn blob_sink(&self, status: u16) -> Option<BlobSink> {
        let store = self.proxy.store.as_ref()?;
        if self.method != Method::GET || !(200..=299).contains(&status) {
            return None;
        }
        match store.begin() {
            Ok(w) => Some(BlobSink::new(w)),
            Err(e) => {
                self.proxy.catalog.record_failure(
                    &self.request.method,
                    &self.request.url,
                    format!("content store: {e}"),
                );
                None
            }
        }
    }

    /// Whether the answer to this request carries no body.
    fn bodiless(&self, status: u16) -> bool {
        self.method == Method::HEAD || matches!(status, 204 | 304)
    }

    async fn finish_streamed(
        &mut self,
        head: ResponseHead,
        result: Result<Digested, PumpError>,
        source: Source,
    ) {
        match result {
            Ok(d) => {
                let size = d.size;
                let id = self.proxy.catalog.register_blob(BlobRef {
                    file: d.file,
                    size,
                    hash: Some(d.sri),
                });
                self.complete(Some(head), Some(Blob { id, size }), None, source)
                    .await;
            }
            Err(why @ PumpError::ClientGone(_)) => {
                // The client's choice; an error only if nothing else got
                // this body whole (decided at the end of the run).
                let (method, url) = (&self.request.method, &self.request.url);
                tracing::info!("{method} {url}: {why}");
                self.proxy
                    .catalog
                    .record_abandoned(method, url, &why.to_string());
                self.complete(Some(head), None, Some(why.to_string()), source)
                    .await;
            }
            Err(why) => {
                let (method, url) = (&self.request.method, &self.request.url);
                self.proxy
                    .catalog
                    .record_failure(method, url, why.to_string());
                tracing::warn!("{method} {url}: {why}");
                self.complete(Some(head), None, Some(why.to_string()), source)
                    .await;
            }
        }
    }

    /// A redirect the client is about to receive: its follow-up request
    /// will carry the chain (see `redirects`).
    fn remember_redirect(&self, head: &ResponseHead) {
        if !super::redirects::is_redirect(head.status) {
            return;
        }
        let location = head
            .header("location")
            .and_then(|v| std::str::from_utf8(v).ok());
        if let Some(location) = location {
            let req = &self.request;
            if let Some(target) = self.proxy.redirects.remember(
                &req.url,
                &req.chain,
                location,
                self.client.as_ref().and_then(|p| p.process()),
            ) {
                tracing::debug!("{} {} redirects to {target}", req.method, req.url);
            }
        }
    }

    /// The exchange's last step: its request moves into the summary.
    async fn complete(
        &mut self,
        head: Option<ResponseHead>,
        body: Option<Blob>,
        error: Option<String>,
        source: Source,
    ) {
        if source == Source::Upstream && error.is_none() {
            self.proxy
                .catalog
                .stats
                .completed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let summary = Summary {
            request: std::mem::take(&mut self.request),
            sent_url: std::mem::take(&mut self.sent_url),
            head,
            body,
            error,
            source,
            request_body: self.request_body.take(),
        };
        self.proxy.policy.on_complete(self.id, &summary).await;
    }

    /// The one place a failed exchange is answered, logged and completed.
    async fn fail(&mut self, e: ExchangeError) -> Response<ProxyBody> {
        let (method, url) = (&self.request.method, &self.request.url);
        let (status, side) = (e.status(), e.side());
        tracing::warn!("{method} {url}: {side:?} error: {e}");
        self.proxy
            .catalog
            .record_failure(method, url, e.to_string());
        let resp = error::respond(status, side, url, &e.to_string());
        let head = ResponseHead {
            status: status.as_u16(),
            headers: vec![],
        };
        self.complete(Some(head), None, Some(e.to_string()), Source::Host)
            .await;
        resp
    }
}

/// A response with the policy's head (checked when the policy answered).
fn response_head(head: &ResponseHead) -> Result<Response<ProxyBody>, ExchangeError> {
    let invalid = |why| Fault {
        by: "the policy".into(),
        hook: "on-response",
        reason: FaultReason::InvalidAnswer(why),
    };
    let status = http::StatusCode::from_u16(head.status)
        .map_err(|_| invalid(format!("invalid status {}", head.status)))?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers::to_http(&head.headers).map_err(invalid)?;
    Ok(resp)
}

fn set_length(resp: &mut Response<ProxyBody>, len: u64) {
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}
