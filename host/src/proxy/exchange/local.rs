//! Phase 4 when no policy wants the body: the upstream body streams, a
//! local answer is sent from its bytes or its blob (a file, with HEAD and
//! Range served from it).

use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::{Answer, BodySource, Flow, Pump, response_head, set_length};
use crate::inventory::verify;
use crate::proxy::body::{self, ProxyBody};
use crate::proxy::error::ExchangeError;
use crate::proxy::policy::{Blob, ResponseHead, Source};

pub(super) fn respond(
    flow: &Flow,
    head: ResponseHead,
    src: BodySource,
    source: Source,
) -> Result<Answer, ExchangeError> {
    let mut resp = response_head(&head)?;
    let bodiless = flow.bodiless(head.status);
    let ready = |resp, head, body| Answer::Ready {
        resp,
        head,
        body,
        source,
    };
    match src {
        BodySource::Upstream(incoming) => {
            if bodiless {
                return Ok(ready(resp, head, None));
            }
            let len = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let sink = flow.blob_sink(head.status);
            let (tx, client_body) = body::channel(len);
            *resp.body_mut() = client_body.boxed();
            Ok(Answer::Streaming {
                resp,
                head,
                source,
                pump: Pump { incoming, tx, sink },
            })
        }
        BodySource::Bytes(bytes) => {
            let digest = digest(&bytes);
            set_length(&mut resp, bytes.len() as u64);
            if !bodiless {
                *resp.body_mut() = body::full(bytes);
            }
            Ok(ready(resp, head, Some(digest)))
        }
        BodySource::None => {
            if !bodiless {
                set_length(&mut resp, 0);
            }
            Ok(ready(resp, head, None))
        }
        BodySource::Blob(blob, id) => {
            let Some(path) = blob.file.clone() else {
                return Err(ExchangeError::NoFile);
            };
            resp.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let summary = Some(Blob {
                id,
                size: blob.size,
            });
            let hash = blob.hash.as_deref();
            // A HEAD or a 416 reads nothing but states the body's size: it
            // fails when the file is gone or short, which a GET could not
            // deliver either.
            let present = || {
                verify::check_present(&path, hash, blob.size)
                    .map_err(|e| ExchangeError::Blob(e.to_string()))
            };
            let (start, len) = match apply_range(flow, &mut resp, blob.size) {
                Ok(r) => r,
                Err(unsatisfiable) => {
                    present()?;
                    return Ok(ready(*unsatisfiable, head, summary));
                }
            };
            set_length(&mut resp, len);
            if flow.method == Method::HEAD {
                present()?;
            } else if !bodiless {
                let report = || crate::proxy::file_body::Report {
                    catalog: flow.proxy.catalog.clone(),
                    what: format!("{} {}", flow.request.method, flow.request.url),
                    idle: flow.proxy.timeouts.body_idle,
                };
                *resp.body_mut() =
                    crate::proxy::file_body::serve(&path, hash, blob.size, start, len, report)
                        .map_err(ExchangeError::Blob)?;
            }
            Ok(ready(resp, head, summary))
        }
    }
}

/// 206 or 416 for a Range request on a 200 of `size` bytes; returns the
/// byte span to send, or the 416 to send instead.
pub(super) fn apply_range(
    flow: &Flow,
    resp: &mut Response<ProxyBody>,
    size: u64,
) -> Result<(u64, u64), Box<Response<ProxyBody>>> {
    let range = match (&flow.range, resp.status()) {
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

pub(super) fn digest(bytes: &[u8]) -> Blob {
    Blob {
        id: body::sri(&Sha256::digest(bytes)),
        size: bytes.len() as u64,
    }
}
