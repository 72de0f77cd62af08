//! Bodies that stream: nothing here holds a whole body in memory.
//!
//! - [`ChannelBody`]: the client side of a bounded channel. The producer
//!   waits when the client reads slowly, so memory stays at a few chunks
//!   whatever the size (back-pressure).
//! - [`pump`]: upstream → client, hashing (SHA-256) and counting on the way,
//!   and writing to the content store when asked.
//! - `file_body`: a recorded body from a file (its own module: verified,
//!   and bounded so stalled clients cannot starve the others).
//! - [`Idle`]: an upstream body that fails when it sends nothing for too
//!   long, so a stalled transfer ends with an error instead of hanging.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::error::PumpError;
use super::sink::BlobSink;

pub type ProxyBody = BoxBody<Bytes, io::Error>;

/// Chunks in flight between producer and client.
const CHANNEL_DEPTH: usize = 4;

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: Option<u64>,
}

pub fn channel(len: Option<u64>) -> (mpsc::Sender<io::Result<Bytes>>, ChannelBody) {
    channel_of(len, CHANNEL_DEPTH)
}

/// [`channel`] holding at most `depth` chunks.
pub fn channel_of(
    len: Option<u64>,
    depth: usize,
) -> (mpsc::Sender<io::Result<Bytes>>, ChannelBody) {
    let (tx, rx) = mpsc::channel(depth);
    (tx, ChannelBody { rx, remaining: len })
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(r) = &mut self.remaining {
                    *r = r.saturating_sub(bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// An upstream body with a deadline on silence: each frame must arrive
/// within `limit` of the previous one (or of the head). Errors carry their
/// whole cause chain ("connection reset by peer", "end of file before
/// message length reached"), since they end up in the user's summary.
pub struct Idle<B> {
    inner: B,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    sent: u64,
}

impl<B> Idle<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            sent: 0,
        }
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                let next = Instant::now() + this.limit;
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(io::Error::other(super::error::chain(&e)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the upstream sent nothing for {} s after {} bytes of the body \
                         (--idle-timeout-secs)",
                        this.limit.as_secs_f64(),
                        this.sent
                    ),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a completely transferred body was.
#[derive(Debug, Clone)]
pub struct Digested {
    pub sri: String,
    pub size: u64,
    /// Where the content store put it, when one is in use.
    pub file: Option<std::path::PathBuf>,
}

/// Hash spellings live with the Nix hash conversions, one copy for all.
pub use crate::inventory::nix::{hex, sri};

/// Moves `body` to `tx`, hashing it; the result says whether the whole body
/// went through. A client that hangs up, an upstream reset or a body shorter
/// than its `content-length` is an error: such a body is never recorded.
///
/// Capture records only a body it read whole from upstream: when the client
/// leaves mid-body, pumping stops (nothing more is read from upstream) and
/// the exchange is not recorded. When the upstream or the content store
/// fails, the client's body ends with an error, never cleanly, so it cannot
/// take a truncated body for a whole one.
pub async fn pump<B>(
    mut body: B,
    tx: mpsc::Sender<io::Result<Bytes>>,
    mut sink: Option<BlobSink>,
) -> Result<Digested, PumpError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    // With a store, the last chunk is held back until the blob is written
    // whole (the store writes behind the stream, see `sink`): a store that
    // fails ends the client's body with an error, never cleanly.
    let mut held: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let why = PumpError::Upstream {
                    after: size,
                    cause: e.to_string(),
                };
                let _ = tx.send(Err(io::Error::other(why.to_string()))).await;
                return Err(why);
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // An h2 upstream often ends with an empty DATA frame (END_STREAM).
        // By then the client may have had every byte its content-length
        // promised and hyper may have let go of its side: sending it the
        // empty frame would fail, and a whole body pass for a client that
        // left.
        if data.is_empty() {
            continue;
        }
        hasher.update(&data);
        size += data.len() as u64;
        let data = match &mut sink {
            None => data,
            Some(s) => {
                if let Err(e) = s.push(&data).await {
                    // Dropping the sink (on return) removes the partial blob.
                    let why = PumpError::Store(e);
                    let _ = tx.send(Err(io::Error::other(why.to_string()))).await;
                    return Err(why);
                }
                match held.replace(data) {
                    Some(previous) => previous,
                    None => continue,
                }
            }
        };
        if tx.send(Ok(data)).await.is_err() {
            return Err(PumpError::ClientGone(size));
        }
    }
    let digest = hasher.finalize();
    let file = match sink {
        Some(s) => match s.finish(hex(&digest)).await {
            Ok(path) => Some(path),
            Err(e) => {
                let why = PumpError::Store(e);
                let _ = tx.send(Err(io::Error::other(why.to_string()))).await;
                return Err(why);
            }
        },
        None => None,
    };
    if let Some(last) = held
        && tx.send(Ok(last)).await.is_err()
    {
        return Err(PumpError::ClientGone(size));
    }
    Ok(Digested {
        sri: sri(&digest),
        size,
        file,
    })
}

/// A single `Range: bytes=…` against a body of `size` bytes. `None`: serve
/// the whole body (no header, several ranges, or a unit we do not know —
/// a server may always ignore Range). `Some(Err(()))`: unsatisfiable (416).
pub fn parse_range(header: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    /// Found by the load test: an h2 upstream's closing empty frame, after
    /// the client took the whole body and hung up, is not a client that
    /// left mid-body.
    #[tokio::test]
    async fn a_closing_empty_frame_after_the_client_is_done_still_records() {
        let (feed, frames) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(4);
        let src = http_body_util::StreamBody::new(Box::pin(futures_util::stream::unfold(
            frames,
            |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
        )));
        let (tx, mut rx) = channel(Some(5));
        let task = tokio::spawn(async move { pump(src, tx, None).await });
        feed.send(Ok(Frame::data(Bytes::from_static(b"hello"))))
            .await
            .unwrap();
        let first = rx.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"hello");
        drop(rx);
        feed.send(Ok(Frame::data(Bytes::new()))).await.unwrap();
        drop(feed);
        let d = task.await.unwrap().unwrap();
        assert_eq!(d.size, 5);
    }

    #[tokio::test]
    async fn pump_hashes_and_reports_a_client_that_left() {
        let (tx, rx) = channel(None);
        drop(rx);
        let src = full(Bytes::from_static(b"hello"));
        let err = pump(src, tx, None).await.unwrap_err();
        assert!(matches!(err, PumpError::ClientGone(5)), "{err}");

        let (tx, mut rx) = channel(None);
        let src = full(Bytes::from_static(b"hello"));
        let task = tokio::spawn(async move { pump(src, tx, None).await });
        while rx.frame().await.is_some() {}
        let d = task.await.unwrap().unwrap();
        assert_eq!(d.size, 5);
        assert_eq!(d.sri, "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
    }
}
