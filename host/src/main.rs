//! The `buildproxy` binary: parses the command line, sets up logging, runs
//! a mode, and turns its errors into one readable message and exit code 2.

use clap::Parser;

use buildproxy::cli::{CheckArgs, Cli, Command};
use buildproxy::run;

fn main() {
    buildproxy::glibc::put_back_environment();
    let cli = Cli::parse();
    // The modes that carry upstream bodies (why: `prefer_vector_copies`).
    if matches!(
        &cli.command,
        Command::Capture(_) | Command::Proxy(_) | Command::Check(CheckArgs { fetch: true, .. })
    ) {
        buildproxy::glibc::prefer_vector_copies();
    }
    buildproxy::glibc::tune_malloc();
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
