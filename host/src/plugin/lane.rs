//! Where a hook call runs. Almost every call returns within microseconds:
//! it runs where it was awaited, on the proxy's worker, with no hand-off.
//! A call still running at an epoch tick yields (see `chain`), and is then
//! moved, as it is, to the slow lane: a small runtime of its own, where long
//! calls share their threads tick by tick until they end or reach their
//! deadline. So a plugin computing for its whole deadline costs an
//! unrelated exchange nothing but CPU, never a wait for a worker thread.
//!
//! The CPU it costs is kept small by [`Pace`]: at niceness 19 a long call
//! still fills every gap the proxy's work leaves (a fifth of the cores
//! during W9's 8 connections), and on this machine a core kept busy slows
//! its neighbour. A call that gets under 80% of a tick's time is competing
//! with other work, and rests for the next tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

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
            .enable_time()
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

/// When a long call rests: kept in its store, asked at every epoch tick.
///
/// A rest is not counted against the call's deadline (the epoch callback
/// counts the ticks a call ran), so resting costs the call none of its
/// deadline, and its wall time is at most twice the deadline.
#[derive(Debug, Default)]
pub struct Pace {
    /// Where the call has run since it last resumed: the thread, and that
    /// thread's wall and CPU clocks then. Set by the yield itself as it
    /// completes, on the thread that goes on with the call: the slow lane's
    /// threads take turns at a call, so a baseline taken at the tick would
    /// compare the clocks of two threads.
    since: Arc<Mutex<Option<Since>>>,
}

type Since = (ThreadId, Instant, Duration);

impl Pace {
    /// For a new call: nothing to compare its first tick with.
    pub fn reset(&self) {
        *self.since.lock().unwrap() = None;
    }

    /// At an epoch tick: how the call yields. It rests for `tick` if it got
    /// under 80% of the time since it resumed; never on its first tick.
    pub fn at_tick(&self, tick: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let rest = contended(
            *self.since.lock().unwrap(),
            (thread::current().id(), Instant::now(), thread_cpu()),
        );
        let since = self.since.clone();
        Box::pin(async move {
            if rest {
                tokio::time::sleep(tick).await;
            } else {
                tokio::task::yield_now().await;
            }
            *since.lock().unwrap() = Some((thread::current().id(), Instant::now(), thread_cpu()));
        })
    }
}

/// Whether a call that resumed at `since` got under 80% of its thread's
/// time until `now`.
fn contended(since: Option<Since>, now: Since) -> bool {
    matches!(since, Some((thread, wall, cpu)) if thread == now.0
        && now.2.saturating_sub(cpu) * 5 < now.1.saturating_duration_since(wall) * 4)
}

/// CPU time of the calling thread; zero where the clock is refused (the
/// call then never rests).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the calling thread's CPU clock into `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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

    const TICK: Duration = Duration::from_millis(10);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_call_is_contended_when_it_got_under_four_fifths_of_its_time() {
        let (me, t0) = (thread::current().id(), Instant::now());
        let since = Some((me, t0, MS));
        assert!(!contended(None, (me, t0 + TICK, MS)), "a first tick");
        // 9 of 10 ms: alone on its core
        assert!(!contended(since, (me, t0 + TICK, MS * 10)));
        // 7 of 10 ms: other work wanted the core
        assert!(contended(since, (me, t0 + TICK, MS * 8)));
        let other = thread::spawn(|| thread::current().id()).join().unwrap();
        assert!(
            !contended(since, (other, t0 + TICK, MS)),
            "two threads' CPU clocks do not compare"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_did_not_get_its_tick_rests_one_and_the_next_is_measured_from_the_rest_s_end()
     {
        let pace = Pace::default();
        let started = Instant::now();
        pace.at_tick(TICK).await; // a first tick: a yield, and the baseline
        assert!(started.elapsed() < TICK);
        std::thread::sleep(TICK); // a tick without the CPU
        let rested = Instant::now();
        pace.at_tick(TICK).await;
        assert!(rested.elapsed() >= TICK, "it rested");
        // measured from the rest's end, not from the tick before it (which
        // would take the rest for contention and rest again)
        let next = Instant::now();
        pace.at_tick(TICK).await;
        assert!(next.elapsed() < TICK, "it rested twice");
        std::thread::sleep(TICK);
        let yielded = Instant::now();
        pace.reset();
        pace.at_tick(TICK).await;
        assert!(
            yielded.elapsed() < TICK,
            "a reset call starts without a baseline"
        );
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
