//! Closing connections that carry no requests.
//!
//! HTTP/1.1 has hyper's header timeout between requests; h2 has none: a
//! client that opens an h2 connection (on the listener, or inside a CONNECT
//! tunnel) and sends nothing, or only answers pings, would hold it forever.
//! [`Activity`] counts a connection's running requests and when the last one
//! started or ended; the connection is shut down gracefully (GOAWAY: bodies
//! still streaming finish) once it has had no request running for the
//! limit.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub struct Activity {
    running: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            running: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    /// Marks a request running until the guard drops.
    pub fn begin(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap() = Instant::now();
        Running(self)
    }

    /// When the connection may be closed if nothing happens before; `None`
    /// while a request runs.
    pub fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        (self.running.load(Ordering::Relaxed) == 0).then(|| *self.last.lock().unwrap() + limit)
    }
}

pub struct Running<'a>(&'a Activity);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap() = Instant::now();
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Drives `conn` to its end, calling `shutdown` once when it has been idle
/// for `limit` (checked every `limit` at most).
pub async fn serve<C, E>(
    conn: C,
    activity: &Activity,
    limit: Duration,
    shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut shutdown = Some(shutdown);
    loop {
        let wake = activity
            .idle_deadline(limit)
            .unwrap_or_else(|| Instant::now() + limit);
        tokio::select! {
            r = conn.as_mut() => return r,
            _ = tokio::time::sleep_until(wake), if shutdown.is_some() => {
                if activity.idle_deadline(limit).is_some_and(|d| d <= Instant::now())
                    && let Some(f) = shutdown.take()
                {
                    tracing::debug!(
                        "a client connection carried no request for {} s \
                         (--client-header-timeout-secs): closing it",
                        limit.as_secs_f64()
                    );
                    f(conn.as_mut());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_connection_is_shut_down_and_a_busy_one_is_not() {
        let activity = Activity::default();
        let limit = Duration::from_millis(300);
        // Never ends on its own; "shutdown" makes it end.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let conn = async move {
            let _ = rx.await;
            Ok::<(), ()>(())
        };
        let busy = activity.begin();
        let t0 = Instant::now();
        let driven = serve(conn, &activity, limit, |_| {
            let _ = tx.take().unwrap().send(());
        });
        let done = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            drop(busy);
        };
        let (r, ()) = tokio::join!(driven, done);
        r.unwrap();
        // Busy for 700 ms, then idle for the limit.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(1000), "{took:?}");
        assert!(took <= Duration::from_millis(3000), "{took:?}");
    }
}
