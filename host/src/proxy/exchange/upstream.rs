//! Phase 2b: the request goes upstream, as the policy left it.

use std::sync::Arc;

use http::header;
use hyper::body::Incoming;

use super::Flow;
use crate::proxy::body::{self, ProxyBody};
use crate::proxy::error::{self, ExchangeError};
use crate::proxy::headers;
use crate::proxy::policy::{self, Fault, Request, ResponseHead};

/// Sends the request and waits for the response head (within
/// `--response-timeout-secs`). `by` rewrote the request, if anyone did: an
/// unusable rewrite is its fault.
pub(super) async fn send(
    flow: &mut Flow,
    sent: Request,
    by: Option<Arc<str>>,
    request_body: ProxyBody,
) -> Result<(ResponseHead, body::Idle<Incoming>), ExchangeError> {
    flow.sent_url = sent.url.clone();
    let (method, uri, mut hdrs) = policy::check_request(&sent).map_err(|reason| Fault {
        by: by.unwrap_or_else(|| "the policy".into()),
        hook: "on-request",
        reason,
    })?;
    let Some(client) = flow.proxy.upstream.clone() else {
        return Err(ExchangeError::NoUpstream);
    };
    // The client derives Host from the URI; a stale one would misroute.
    hdrs.remove(header::HOST);
    let mut upstream_req = hyper::Request::new(request_body);
    *upstream_req.method_mut() = method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = hdrs;
    let timeouts = flow.proxy.timeouts;
    let resp = match tokio::time::timeout(timeouts.response, client.request(upstream_req)).await {
        Err(_) => return Err(ExchangeError::HeadTimeout(timeouts.response)),
        Ok(Err(e)) => {
            let mut cause = error::chain(&e);
            if e.is_connect() && cause.ends_with("deadline has elapsed") {
                let limit = timeouts.connect.as_secs_f64();
                cause.push_str(&format!(
                    " (no connection within {limit} s, --connect-timeout-secs)"
                ));
            }
            return Err(ExchangeError::Upstream(cause));
        }
        Ok(Ok(r)) => r,
    };
    let (parts, body) = resp.into_parts();
    headers::check_framing(&parts.headers).map_err(ExchangeError::Upstream)?;
    let head = ResponseHead {
        status: parts.status.as_u16(),
        headers: headers::to_pairs(&parts.headers),
    };
    Ok((head, body::Idle::new(body, timeouts.body_idle)))
}
