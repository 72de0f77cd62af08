//! The life of one exchange (see ARCHITECTURE.md for the chart):
//!
//! 1. `on-request` through the chain: pass, rewrite, or a local answer.
//! 2. A local answer is served from its bytes or its blob (file, Range);
//!    otherwise the request goes upstream (never in replay).
//! 3. `on-response` through the chain; a plugin may replace the head or ask
//!    for the body, which is then buffered up to the limit.
//! 4. The body streams to the client, hashed on the way (and stored).
//! 5. `on-complete` with the summary: hash and size only if the whole body
//!    went through.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::auth::Peer;
use super::body::{self, Digested, ProxyBody};
use super::error::{self, Side};
use super::headers;
use super::{InFlight, Proxy};
use crate::catalog::BlobRef;
use crate::inventory::verify;
use crate::plugin::bindings::{self as wit, Source};
use crate::plugin::{PluginFault, RequestOutcome};

/// Where a request is going: scheme and authority, known from the tunnel or
/// the absolute-form URI.
#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: &'static str,
    pub host: String,
    pub port: Option<u16>,
}

/// Headers that vouch for particular bytes; dropped when a plugin changed
/// the body.
const VALIDATORS: &[&str] = &[
    "etag",
    "last-modified",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
];

/// The per-exchange context that travels through the phases.
struct Flow {
    proxy: Arc<Proxy>,
    id: u64,
    method: Method,
    range: Option<String>,
    /// The request as the client sent it.
    request: wit::Request,
    /// The URL it was sent to after rewrites.
    sent_url: String,
    /// Who sent it, for its redirect chains.
    client: Option<Arc<Peer>>,
    _inflight: InFlight,
}

/// What the body of a response will be made from.
enum BodySource {
    Upstream(body::Idle<Incoming>),
    Bytes(Vec<u8>),
    Blob(BlobRef, String),
    None,
}

pub async fn handle(
    proxy: Arc<Proxy>,
    req: hyper::Request<Incoming>,
    target: Target,
) -> Response<ProxyBody> {
    let (parts, client_body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = super::url::absolute(target.scheme, &target.host, target.port, path);
    let client = parts.extensions.get::<Arc<Peer>>().cloned();
    let request = wit::Request {
        method: parts.method.as_str().to_string(),
        chain: proxy
            .redirects
            .chain_to(&url, || client.as_ref().and_then(|p| p.process())),
        url: url.clone(),
        headers: headers::to_wit(&parts.headers),
    };
    let flow = Flow {
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
        request,
        client,
    };
    match flow.proxy.chain.on_request(flow.id, flow.request.clone()) {
        Err(fault) => flow.plugin_fault(&fault),
        Ok(RequestOutcome::Respond { by, response }) => {
            if let Err(why) = headers::validate(&response.head) {
                let fault = PluginFault {
                    plugin: by,
                    hook: "on-request",
                    reason: format!("answered with {why}"),
                };
                return flow.plugin_fault(&fault);
            }
            let src = match response.body {
                wit::Body::None => BodySource::None,
                wit::Body::Bytes(b) => BodySource::Bytes(b),
                wit::Body::Blob(blob) => match flow.proxy.catalog.blob(&blob.id) {
                    Some(r) => BodySource::Blob(r, blob.id),
                    None => {
                        let fault = PluginFault {
                            plugin: by,
                            hook: "on-request",
                            reason: format!("named a body the host does not hold: {:?}", blob.id),
                        };
                        return flow.plugin_fault(&fault);
                    }
                },
            };
            flow.respond(response.head, src, Source::Plugin).await
        }
        Ok(RequestOutcome::Forward(sent)) => flow.forward(sent, client_body).await,
    }
}

impl Flow {
    async fn forward(mut self, sent: wit::Request, client_body: Incoming) -> Response<ProxyBody> {
        let Some(client) = self.proxy.upstream.clone() else {
            return self.fail(
                StatusCode::BAD_GATEWAY,
                Side::Host,
                "no plugin answered this request, and replay never goes upstream",
            );
        };
        self.sent_url = sent.url.clone();
        let uri: http::Uri = match sent.url.parse() {
            Ok(u) => u,
            Err(e) => {
                return self.fail(
                    StatusCode::BAD_GATEWAY,
                    Side::Plugin,
                    &format!("rewritten URL {:?} is invalid: {e}", sent.url),
                );
            }
        };
        let method = match Method::from_bytes(sent.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return self.fail(
                    StatusCode::BAD_GATEWAY,
                    Side::Plugin,
                    &format!("invalid method {:?}", sent.method),
                );
            }
        };
        let mut hdrs = match headers::to_http(&sent.headers) {
            Ok(h) => h,
            Err(why) => return self.fail(StatusCode::BAD_GATEWAY, Side::Plugin, &why),
        };
        // The client derives Host from the URI; a stale one would misroute.
        hdrs.remove(header::HOST);
        let mut upstream_req =
            hyper::Request::new(client_body.map_err(std::io::Error::other).boxed());
        *upstream_req.method_mut() = method;
        *upstream_req.uri_mut() = uri;
        *upstream_req.headers_mut() = hdrs;
        let limit = self.proxy.timeouts.response;
        let resp = match tokio::time::timeout(limit, client.request(upstream_req)).await {
            Err(_) => {
                return self.fail(
                    StatusCode::GATEWAY_TIMEOUT,
                    Side::Upstream,
                    &format!(
                        "no response head within {} s (--response-timeout-secs)",
                        limit.as_secs_f64()
                    ),
                );
            }
            Ok(Err(e)) => {
                let mut cause = error::chain(&e);
                if e.is_connect() && cause.ends_with("deadline has elapsed") {
                    let limit = self.proxy.timeouts.connect.as_secs_f64();
                    cause.push_str(&format!(
                        " (no connection within {limit} s, --connect-timeout-secs)"
                    ));
                }
                return self.fail(StatusCode::BAD_GATEWAY, Side::Upstream, &cause);
            }
            Ok(Ok(r)) => r,
        };
        let (parts, body) = resp.into_parts();
        if let Err(why) = headers::check_framing(&parts.headers) {
            return self.fail(StatusCode::BAD_GATEWAY, Side::Upstream, &why);
        }
        let head = wit::ResponseHead {
            status: parts.status.as_u16(),
            headers: headers::to_wit(&parts.headers),
        };
        let body = body::Idle::new(body, self.proxy.timeouts.body_idle);
        self.respond(head, BodySource::Upstream(body), Source::Upstream)
            .await
    }

    /// Phases 3–5 for any response, upstream or local.
    async fn respond(
        self,
        head: wit::ResponseHead,
        src: BodySource,
        source: Source,
    ) -> Response<ProxyBody> {
        let outcome = match self.proxy.chain.on_response(self.id, &self.request, head) {
            Ok(o) => o,
            Err(fault) => return self.plugin_fault(&fault),
        };
        self.remember_redirect(&outcome.head);
        // An upstream HEAD has no body to give; the head goes as it is.
        let no_body = self.method == Method::HEAD && matches!(src, BodySource::Upstream(_));
        if !outcome.want_body.is_empty() && !no_body {
            return self
                .buffered(outcome.head, src, source, &outcome.want_body)
                .await;
        }
        let head = outcome.head;
        let mut resp = match response_head(&head) {
            Ok(r) => r,
            Err(why) => return self.fail(StatusCode::BAD_GATEWAY, Side::Plugin, &why),
        };
        let bodiless = self.method == Method::HEAD || matches!(head.status, 204 | 304);
        match src {
            BodySource::Upstream(incoming) => {
                if bodiless {
                    drop(incoming);
                    self.complete(Some(head), None, None, source);
                    return resp;
                }
                let len = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let writer = match (&self.proxy.store, head.status) {
                    (Some(store), 200..=299) if self.method == Method::GET => match store.begin() {
                        Ok(w) => Some(w),
                        Err(e) => {
                            self.proxy
                                .catalog
                                .record_error(format!("{}: content store: {e}", self.request.url));
                            None
                        }
                    },
                    _ => None,
                };
                let (tx, client_body) = body::channel(len);
                *resp.body_mut() = client_body.boxed();
                tokio::spawn(async move {
                    let result = body::pump(incoming, tx, writer).await;
                    self.finish_streamed(head, result, source);
                });
                resp
            }
            BodySource::Bytes(bytes) => {
                let digest = digest(&bytes);
                set_length(&mut resp, bytes.len() as u64);
                if !bodiless {
                    *resp.body_mut() = body::full(bytes);
                }
                self.complete(Some(head), Some(digest), None, source);
                resp
            }
            BodySource::None => {
                if !bodiless {
                    set_length(&mut resp, 0);
                }
                self.complete(Some(head), None, None, source);
                resp
            }
            BodySource::Blob(blob, id) => {
                let Some(path) = blob.file.clone() else {
                    return self.fail(StatusCode::BAD_GATEWAY, Side::Host, "the recorded body has no file (capture without --store cannot serve recorded bodies)");
                };
                resp.headers_mut()
                    .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                let (start, len) = match self.apply_range(&mut resp, blob.size) {
                    Ok(r) => r,
                    Err(r) => return *r,
                };
                set_length(&mut resp, len);
                if !bodiless {
                    let report = super::file_body::Report {
                        catalog: self.proxy.catalog.clone(),
                        what: format!("{} {}", self.request.method, self.request.url),
                        idle: self.proxy.timeouts.body_idle,
                    };
                    let hash = blob.hash.as_deref();
                    match super::file_body::serve(&path, hash, blob.size, start, len, report) {
                        Ok(b) => *resp.body_mut() = b,
                        Err(e) => return self.fail(StatusCode::BAD_GATEWAY, Side::Host, &e),
                    }
                }
                let summary_blob = wit::Blob {
                    id,
                    size: blob.size,
                };
                self.complete(Some(head), Some(summary_blob), None, source);
                resp
            }
        }
    }

    /// A plugin asked for the whole body: buffer it (up to the limit), let
    /// each such plugin replace it, fix the length.
    async fn buffered(
        self,
        head: wit::ResponseHead,
        src: BodySource,
        source: Source,
        wanting: &[usize],
    ) -> Response<ProxyBody> {
        let limit = self.proxy.limits.body_bytes;
        let too_big = |size: u64| {
            format!(
                "the body ({size} bytes or more) is larger than the plugin body limit of {} MiB; raise --plugin-body-limit-mib or narrow the plugin's URL pattern",
                limit >> 20
            )
        };
        let (original, recorded): (Vec<u8>, Option<wit::Blob>) = match src {
            BodySource::Upstream(incoming) => match http_body_util::Limited::new(incoming, limit)
                .collect()
                .await
            {
                Ok(c) => {
                    let bytes = c.to_bytes().to_vec();
                    let d = self.store_buffered(&bytes).await;
                    (bytes, Some(d))
                }
                Err(e) => {
                    let why = if e.is::<http_body_util::LengthLimitError>() {
                        too_big(limit as u64)
                    } else {
                        format!("upstream body failed: {e}")
                    };
                    return self.fail(StatusCode::BAD_GATEWAY, Side::Upstream, &why);
                }
            },
            BodySource::Bytes(b) => {
                let d = digest(&b);
                (b, Some(d))
            }
            BodySource::None => (Vec::new(), None),
            BodySource::Blob(blob, id) => {
                if blob.size > limit as u64 {
                    return self.fail(StatusCode::BAD_GATEWAY, Side::Host, &too_big(blob.size));
                }
                let Some(path) = blob.file.clone() else {
                    return self.fail(
                        StatusCode::BAD_GATEWAY,
                        Side::Host,
                        "the recorded body has no file",
                    );
                };
                let (hash, size) = (blob.hash.clone(), blob.size);
                let read = tokio::task::spawn_blocking(move || {
                    verify::read_all(&path, hash.as_deref(), size).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match read {
                    Ok(b) => (
                        b,
                        Some(wit::Blob {
                            id,
                            size: blob.size,
                        }),
                    ),
                    Err(e) => return self.fail(StatusCode::BAD_GATEWAY, Side::Host, &e),
                }
            }
        };
        let mut bytes = original;
        let mut changed = false;
        for &i in wanting {
            match self
                .proxy
                .chain
                .on_response_body(i, self.id, &self.request, &head, &bytes)
            {
                Ok(Some(new)) => {
                    changed |= new != bytes;
                    bytes = new;
                }
                Ok(None) => {}
                Err(fault) => return self.plugin_fault(&fault),
            }
        }
        let mut resp = match response_head(&head) {
            Ok(r) => r,
            Err(why) => return self.fail(StatusCode::BAD_GATEWAY, Side::Plugin, &why),
        };
        if changed {
            // They describe the old bytes: a client or cache trusting them
            // would mix the two versions.
            for name in VALIDATORS {
                resp.headers_mut().remove(*name);
            }
        }
        resp.headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let (start, len) = match self.apply_range(&mut resp, bytes.len() as u64) {
            Ok(r) => r,
            Err(r) => return *r,
        };
        set_length(&mut resp, len);
        if self.method != Method::HEAD {
            let slice = Bytes::from(bytes).slice(start as usize..(start + len) as usize);
            *resp.body_mut() = body::full(slice);
        }
        self.complete(Some(head), recorded, None, source);
        resp
    }

    /// Hashes (and stores, in capture) a body that was buffered.
    async fn store_buffered(&self, bytes: &[u8]) -> wit::Blob {
        let sha = Sha256::digest(bytes);
        let sri = body::sri(&sha);
        let mut file = None;
        if let Some(store) = self.proxy.store.clone()
            && self.method == Method::GET
        {
            let (data, hexd) = (bytes.to_vec(), body::hex(&sha));
            let stored = tokio::task::spawn_blocking(move || -> Result<_, String> {
                let mut w = store.begin().map_err(|e| e.to_string())?;
                w.write(&data).map_err(|e| e.to_string())?;
                w.finish(&hexd).map_err(|e| e.to_string())
            })
            .await;
            match stored {
                Ok(Ok(path)) => file = Some(path),
                Ok(Err(e)) => self
                    .proxy
                    .catalog
                    .record_error(format!("{}: content store: {e}", self.request.url)),
                Err(e) => self
                    .proxy
                    .catalog
                    .record_error(format!("{}: content store: {e}", self.request.url)),
            }
        }
        let id = self.proxy.catalog.register_blob(BlobRef {
            file,
            size: bytes.len() as u64,
            hash: Some(sri),
        });
        wit::Blob {
            id,
            size: bytes.len() as u64,
        }
    }

    /// 206 or 416 for a Range request on a 200 of `size` bytes; returns the
    /// byte span to send.
    fn apply_range(
        &self,
        resp: &mut Response<ProxyBody>,
        size: u64,
    ) -> Result<(u64, u64), Box<Response<ProxyBody>>> {
        let range = match (&self.range, resp.status()) {
            (Some(r), StatusCode::OK) => body::parse_range(r, size),
            _ => None,
        };
        match range {
            None => Ok((0, size)),
            Some(Ok((start, end))) => {
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                let value = format!("bytes {start}-{end}/{size}");
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&value).expect("ascii"),
                );
                Ok((start, end - start + 1))
            }
            Some(Err(())) => {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                let value = format!("bytes */{size}");
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&value).expect("ascii"),
                );
                Err(Box::new(r))
            }
        }
    }

    fn finish_streamed(
        &self,
        head: wit::ResponseHead,
        result: Result<Digested, String>,
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
                self.complete(Some(head), Some(wit::Blob { id, size }), None, source);
            }
            Err(why) if why.starts_with(buildproxy_plugin_sdk::record::CLIENT_LEFT) => {
                // The client's choice; an error only if nothing else got
                // this body whole (decided at the end of the run).
                tracing::info!("{} {}: {why}", self.request.method, self.request.url);
                self.proxy
                    .catalog
                    .record_abandoned(&self.request.method, &self.request.url, &why);
                self.complete(Some(head), None, Some(why), source);
            }
            Err(why) => {
                self.proxy.catalog.record_error(format!(
                    "{} {}: {why}",
                    self.request.method, self.request.url
                ));
                tracing::warn!("{} {}: {why}", self.request.method, self.request.url);
                self.complete(Some(head), None, Some(why), source);
            }
        }
    }

    /// A redirect the client is about to receive: its follow-up request
    /// will carry the chain (see `redirects`).
    fn remember_redirect(&self, head: &wit::ResponseHead) {
        if !super::redirects::is_redirect(head.status) {
            return;
        }
        let location = head
            .headers
            .iter()
            .find(|(n, _)| n == "location")
            .and_then(|(_, v)| std::str::from_utf8(v).ok());
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

    fn complete(
        &self,
        head: Option<wit::ResponseHead>,
        body: Option<wit::Blob>,
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
        let summary = wit::Exchange {
            request: self.request.clone(),
            sent_url: self.sent_url.clone(),
            head,
            body,
            error,
            source,
        };
        self.proxy.chain.on_complete(self.id, &summary);
    }

    fn fail(&self, status: StatusCode, side: Side, cause: &str) -> Response<ProxyBody> {
        let url = &self.request.url;
        tracing::warn!("{} {url}: {side:?} error: {cause}", self.request.method);
        self.proxy
            .catalog
            .record_error(format!("{} {url}: {cause}", self.request.method));
        let resp = error::respond(status, side, url, cause);
        self.complete(
            Some(wit::ResponseHead {
                status: status.as_u16(),
                headers: vec![],
            }),
            None,
            Some(cause.to_string()),
            Source::Host,
        );
        resp
    }

    fn plugin_fault(&self, fault: &PluginFault) -> Response<ProxyBody> {
        self.fail(StatusCode::BAD_GATEWAY, Side::Plugin, &fault.to_string())
    }
}

fn response_head(head: &wit::ResponseHead) -> Result<Response<ProxyBody>, String> {
    let status =
        StatusCode::from_u16(head.status).map_err(|_| format!("invalid status {}", head.status))?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers::to_http(&head.headers)?;
    Ok(resp)
}

fn set_length(resp: &mut Response<ProxyBody>, len: u64) {
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

fn digest(bytes: &[u8]) -> wit::Blob {
    wit::Blob {
        id: body::sri(&Sha256::digest(bytes)),
        size: bytes.len() as u64,
    }
}
