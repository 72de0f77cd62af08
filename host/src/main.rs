//! The `buildproxy` binary: parses the command line, sets up logging, runs
//! a mode, and turns its errors into one readable message and exit code 2.

use clap::Parser;

use buildproxy::cli::{Cli, Command};
use buildproxy::run;

fn main() {
    tune_malloc();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a build log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BUILDPROXY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Capture(a) => run::capture::run(a).await,
            Command::Replay(a) => run::replay::run(a).await,
            Command::Proxy(a) => run::proxy::run(a).await,
            Command::Prepare(a) => run::prepare(a),
            Command::Plugins(a) => run::plugins(a),
            Command::Component(a) => run::component::run(a),
            Command::Check(a) if a.fetch => run::verify::check(a).await,
            Command::Check(a) => run::check::run(a),
            Command::GitFetch(a) => run::git_fetch::run(a).await,
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("buildproxy: error: {e:#}");
            2
        }
    };
    // Background tasks (the listener, the epoch ticker) end with the process.
    runtime.shutdown_background();
    std::process::exit(code);
}

/// glibc returns freed memory at the top of a heap to the kernel once more
/// than 128 KiB is free there, and serves large allocations with fresh
/// mappings: a body streaming through the proxy allocates and frees its
/// buffers (TLS records, read buffers) hundreds of KiB at a time, and every
/// round paid page faults for memory it had just given back (58,000 per
/// captured GiB). Fixed thresholds keep a few MiB for reuse instead.
///
/// Each of those few MiB is kept per malloc arena, and glibc gives threads
/// new arenas (up to eight per core) as they contend: a body's buffers are
/// freed on whichever worker thread sends them, so after one large download
/// two or three arenas each held megabytes (W1's peak RSS 30–34 MiB). One
/// arena per four cores: on 2 cores W1 peaked at 25.8 MiB against 30.4,
/// with W1, W2 and W4's throughput and CPU unchanged in the same rounds.
/// Allocations of a request's size come from per-thread caches first, so
/// threads meet at an arena's lock only for the larger buffers.
fn tune_malloc() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(cores.div_ceil(4)).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}
