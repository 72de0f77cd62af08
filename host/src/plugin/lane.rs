//! Where a hook call runs. Almost every call returns within microseconds:
//! it runs where it was awaited, on the proxy's worker, with no hand-off.
//! A call still running at an epoch tick yields (see `chain`), and is then
//! moved, as it is, to the slow lane: a small runtime of its own, where long
//! calls share their threads tick by tick until they end or reach their
//! deadline. So a plugin computing for its whole deadline costs an
//! unrelated exchange nothing but CPU, never a wait for a worker thread.

use std::future::Future;
use std::sync::OnceLock;
use std::task::Poll;

/// Threads of the slow lane: long calls are the exception, and each
/// yields at every tick, so two keep them all moving.
const SLOW_THREADS: usize = 2;
/// The slow lane's niceness: when long plugin calls and the proxy's own
/// work want the same cores, the proxy's work goes first. 19, not 10: with
/// one plugin computing to its deadline, W2 over 8 connections kept 0.70–
/// 0.73× of its quiet rate at 10 and 0.80–0.83× at 19 (two runs of each,
/// 2 cores); a long call gets the cores the proxy leaves idle.
const SLOW_NICE: libc::c_int = 19;

fn slow_lane() -> &'static tokio::runtime::Runtime {
    // Never dropped: a runtime cannot be dropped from async code, and the
    // lane lives as long as the process.
    static LANE: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    LANE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SLOW_THREADS)
            .thread_name("plugin-slow-lane")
            .on_thread_start(|| {
                // On Linux this sets the calling thread's niceness; failing
                // only costs the priority.
                // SAFETY: a plain syscall with constant arguments.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, SLOW_NICE) };
            })
            .build()
            .expect("starting the plugin slow lane")
    })
}

/// Runs a hook call: here if it finishes before its first yield, on the
/// slow lane otherwise.
pub async fn run<F>(call: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut call = Box::pin(call);
    let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        return out;
    }
    match slow_lane().spawn(call).await {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_yields_finishes_on_the_slow_lane_and_a_quick_one_here() {
        let here = std::thread::current().id();
        let quick = run(async { std::thread::current().id() }).await;
        assert_eq!(quick, here);
        let slow = run(async {
            tokio::task::yield_now().await;
            std::thread::current().id()
        })
        .await;
        assert_ne!(slow, here);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_call_does_not_hold_the_runtime_that_awaits_it() {
        // On a one-thread runtime, a call that yields forever would starve
        // everything else if it ran here.
        let spin = tokio::spawn(run(async {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
            while std::time::Instant::now() < until {
                tokio::task::yield_now().await;
            }
        }));
        let started = std::time::Instant::now();
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
        spin.await.unwrap();
    }
}
