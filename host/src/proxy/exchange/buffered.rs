//! Phase 3b: the policy asked for the whole body. It is buffered (up to
//! `--plugin-body-limit-mib`), handed to the policy, and the answer is
//! built from what it returns: length fixed, validators dropped when the
//! bytes changed, HEAD and Range served from the new bytes.

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::local::{apply_range, digest};
use super::{Answer, BodySource, Flow, response_head, set_length};
use crate::catalog::BlobRef;
use crate::inventory::verify;
use crate::proxy::body;
use crate::proxy::error::ExchangeError;
use crate::proxy::policy::{Blob, ResponseHead, Source};

/// Headers that vouch for particular bytes; dropped when the policy
/// changed the body.
const VALIDATORS: &[&str] = &[
    "etag",
    "last-modified",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
];

pub(super) async fn respond(
    flow: &Flow,
    head: ResponseHead,
    src: BodySource,
    source: Source,
    wanting: &[usize],
) -> Result<Answer, ExchangeError> {
    let limit = flow.proxy.body_limit;
    let too_big = |size| ExchangeError::TooBig { size, limit };
    let (original, recorded): (Bytes, Option<Blob>) = match src {
        BodySource::Upstream(incoming) => {
            match http_body_util::Limited::new(incoming, limit)
                .collect()
                .await
            {
                Ok(c) => {
                    let bytes = c.to_bytes();
                    let d = store(flow, head.status, &bytes).await;
                    (bytes, Some(d))
                }
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(too_big(limit as u64));
                }
                Err(e) => return Err(ExchangeError::UpstreamBody(e.to_string())),
            }
        }
        BodySource::Bytes(b) => {
            let d = digest(&b);
            (b.into(), Some(d))
        }
        BodySource::None => (Bytes::new(), None),
        BodySource::Blob(blob, id) => {
            if blob.size > limit as u64 {
                return Err(too_big(blob.size));
            }
            let Some(path) = blob.file.clone() else {
                return Err(ExchangeError::NoFile);
            };
            let (hash, size) = (blob.hash.clone(), blob.size);
            let read = tokio::task::spawn_blocking(move || {
                verify::read_all(&path, hash.as_deref(), size).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match read {
                Ok(b) => (
                    b.into(),
                    Some(Blob {
                        id,
                        size: blob.size,
                    }),
                ),
                Err(e) => return Err(ExchangeError::Blob(e)),
            }
        }
    };
    let replaced = flow
        .proxy
        .policy
        .on_response_body(flow.id, &flow.request, &head, wanting, original.clone())
        .await?;
    let (bytes, changed) = match replaced {
        Some(new) => {
            let changed = new != original;
            (new, changed)
        }
        None => (original, false),
    };
    let mut resp = response_head(&head)?;
    if changed {
        // They describe the old bytes: a client or cache trusting them
        // would mix the two versions.
        for name in VALIDATORS {
            resp.headers_mut().remove(*name);
        }
    }
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (start, len) = match apply_range(flow, &mut resp, bytes.len() as u64) {
        Ok(r) => r,
        Err(unsatisfiable) => {
            return Ok(Answer::Ready {
                resp: *unsatisfiable,
                head,
                body: recorded,
                source,
            });
        }
    };
    set_length(&mut resp, len);
    if flow.method != Method::HEAD {
        let slice = bytes.slice(start as usize..(start + len) as usize);
        *resp.body_mut() = body::full(slice);
    }
    Ok(Answer::Ready {
        resp,
        head,
        body: recorded,
        source,
    })
}

/// Hashes (and stores, with `--store`, the way a streamed body is) a body
/// that was buffered.
async fn store(flow: &Flow, status: u16, bytes: &Bytes) -> Blob {
    let sha = Sha256::digest(bytes);
    let sri = body::sri(&sha);
    let mut file = None;
    if let Some(mut sink) = flow.blob_sink(status) {
        let stored = match sink.push(bytes).await {
            Ok(()) => sink.finish(body::hex(&sha)).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(path) => file = Some(path),
            Err(e) => flow.proxy.catalog.record_failure(
                &flow.request.method,
                &flow.request.url,
                format!("content store: {e}"),
            ),
        }
    }
    let id = flow.proxy.catalog.register_blob(BlobRef {
        file,
        size: bytes.len() as u64,
        hash: Some(sri),
    });
    Blob {
        id,
        size: bytes.len() as u64,
    }
}
