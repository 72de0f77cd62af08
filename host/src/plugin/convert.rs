//! The proxy's types to and from the plugin interface: the only place that
//! knows both. Owned values move field by field (no copies of bodies).

use super::bindings as wit;
use crate::proxy::policy as p;

impl From<p::Request> for wit::Request {
    fn from(r: p::Request) -> Self {
        Self {
            method: r.method,
            url: r.url,
            headers: r.headers,
            chain: r.chain,
        }
    }
}

impl From<wit::Request> for p::Request {
    fn from(r: wit::Request) -> Self {
        Self {
            method: r.method,
            url: r.url,
            headers: r.headers,
            chain: r.chain,
        }
    }
}

impl From<p::ResponseHead> for wit::ResponseHead {
    fn from(h: p::ResponseHead) -> Self {
        Self {
            status: h.status,
            headers: h.headers,
        }
    }
}

impl From<wit::ResponseHead> for p::ResponseHead {
    fn from(h: wit::ResponseHead) -> Self {
        Self {
            status: h.status,
            headers: h.headers,
        }
    }
}

impl From<p::Blob> for wit::Blob {
    fn from(b: p::Blob) -> Self {
        Self {
            id: b.id,
            size: b.size,
        }
    }
}

impl From<wit::Response> for p::Response {
    fn from(r: wit::Response) -> Self {
        Self {
            head: r.head.into(),
            body: match r.body {
                wit::Body::None => p::Body::None,
                wit::Body::Bytes(b) => p::Body::Bytes(b),
                wit::Body::Blob(b) => p::Body::Blob(p::Blob {
                    id: b.id,
                    size: b.size,
                }),
            },
        }
    }
}

impl From<p::Source> for wit::Source {
    fn from(s: p::Source) -> Self {
        match s {
            p::Source::Upstream => Self::Upstream,
            p::Source::Policy => Self::Plugin,
            p::Source::Host => Self::Host,
        }
    }
}

impl From<&p::Summary> for wit::Exchange {
    fn from(s: &p::Summary) -> Self {
        Self {
            request: s.request.clone().into(),
            sent_url: s.sent_url.clone(),
            head: s.head.clone().map(Into::into),
            body: s.body.clone().map(Into::into),
            error: s.error.clone(),
            source: s.source.into(),
            request_body: s.request_body.clone().map(Into::into),
        }
    }
}

/// A recorded entry as plugins see it: its body named by the id the
/// catalog issues for it.
pub fn entry(e: crate::inventory::Entry) -> wit::Entry {
    wit::Entry {
        body: e.body.as_ref().map(|b| wit::Blob {
            id: crate::catalog::blob_id(b),
            size: b.size.unwrap_or(0),
        }),
        method: e.method,
        url: e.url,
        fetch_url: e.fetch_url,
        status: e.status,
        headers: e.headers.into_iter().collect(),
        request_headers: e.request_headers.into_iter().collect(),
    }
}
