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
//! its neighbour. A call whose thread waited for a core for over a fifth of
//! a tick is competing with other work, and rests for the next tick.

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
/// A call competes when its thread spent over a fifth of the time since the
/// call resumed waiting for a core (the kernel's run-queue delay,
/// `/proc/thread-self/schedstat`). Time blocked in an import (a body read
/// from disk) is not competing, and an idle machine never makes a call
/// rest. Where the kernel keeps no such figure, calls never rest.
///
/// A rest is not counted against the call's deadline (the epoch callback
/// counts the ticks a call ran, and a rest follows only a counted tick), so
/// resting costs the call none of its deadline: its wall time is at most
/// about twice the deadline, more only if the slow lane gets no core at all.
#[derive(Debug, Default)]
pub struct Pace {
    /// Where the call has run since it last resumed. Set by the yield
    /// itself as it completes, on the thread that goes on with the call:
    /// the slow lane's threads take turns at a call, so a baseline taken at
    /// the tick would compare two threads' figures.
    since: Arc<Mutex<Option<Since>>>,
}

/// A thread, a time, and how long that thread had waited for a core by
/// then.
type Since = (ThreadId, Instant, Duration);

fn here() -> Option<Since> {
    Some((thread::current().id(), Instant::now(), run_queue_wait()?))
}

impl Pace {
    /// For a new call: nothing to compare its first tick with.
    pub fn reset(&self) {
        *self.since.lock().unwrap() = None;
    }

    /// At an epoch tick: how the call yields. It rests for `tick` if it
    /// competed for its core since it resumed; never on its first tick.
    pub fn at_tick(&self, tick: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let since = *self.since.lock().unwrap();
        // A call's first tick has no baseline: no figure to read.
        let rest = since.is_some_and(|since| here().is_some_and(|now| competed(since, now)));
        self.resume_after(rest.then_some(tick))
    }

    /// Sleeps `rest` (or just yields), then takes the baseline where the
    /// call goes on.
    fn resume_after(&self, rest: Option<Duration>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let since = self.since.clone();
        Box::pin(async move {
            match rest {
                Some(rest) => tokio::time::sleep(rest).await,
                None => tokio::task::yield_now().await,
            }
            let now = here();
            *since.lock().unwrap() = now;
        })
    }
}

/// Whether a thread that was at `since` spent over a fifth of the time
/// until `now` waiting for a core.
fn competed(since: Since, now: Since) -> bool {
    since.0 == now.0 && now.2.saturating_sub(since.2) * 5 > now.1.saturating_duration_since(since.1)
}

thread_local! {
    /// Kept open: a tick's figure is one `pread`.
    static SCHEDSTAT: Option<std::fs::File> = std::fs::File::open("/proc/thread-self/schedstat").ok();
}

/// How long the calling thread has waited on a run queue, in all: the
/// second figure of its `schedstat` ("run time, run-queue delay, slices").
fn run_queue_wait() -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    SCHEDSTAT.with(|f| {
        let mut buf = [0u8; 96];
        let n = f.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let ns = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(ns))
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

    const TICK: Duration = Duration::from_millis(10);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_call_competed_when_over_a_fifth_of_its_time_went_waiting_for_a_core() {
        let (me, t0) = (thread::current().id(), Instant::now());
        let since = (me, t0, MS * 100);
        assert!(!competed(since, (me, t0 + TICK, MS * 101)), "1 of 10 ms");
        assert!(competed(since, (me, t0 + TICK, MS * 103)), "3 of 10 ms");
        let other = thread::spawn(|| thread::current().id()).join().unwrap();
        assert!(
            !competed(since, (other, t0 + TICK, MS * 200)),
            "two threads' figures do not compare"
        );
    }

    #[test]
    fn the_run_queue_wait_is_read_and_never_goes_back() {
        let a = run_queue_wait().expect("/proc/thread-self/schedstat");
        thread::sleep(MS);
        let b = run_queue_wait().unwrap();
        assert!(b >= a);
        // another thread has its own figure, from its own file
        let other = thread::spawn(run_queue_wait).join().unwrap();
        assert!(other.is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_blocked_off_the_cpu_does_not_rest() {
        // a sleep is what an import reading a file looks like: off the CPU,
        // not waiting for it
        let pace = Pace::default();
        pace.at_tick(TICK).await;
        thread::sleep(TICK * 10);
        let started = Instant::now();
        pace.at_tick(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_rest_ends_with_a_baseline_taken_after_it_and_a_reset_clears_it() {
        let pace = Pace::default();
        let before = Instant::now();
        pace.resume_after(Some(TICK * 5)).await;
        let (thread, at, _) = pace.since.lock().unwrap().expect("a baseline");
        assert_eq!(thread, thread::current().id());
        assert!(at >= before + TICK * 5, "taken when the rest was over");
        pace.reset();
        assert!(pace.since.lock().unwrap().is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_call_can_sleep_on_the_slow_lane() {
        // the lane's runtime has a timer (a rest is a sleep there)
        run(async {
            tokio::task::yield_now().await;
            tokio::time::sleep(MS).await;
        })
        .await;
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
