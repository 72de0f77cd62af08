//! Running the user's command in the client environment, and stopping it
//! cleanly when buildproxy is told to stop.

use anyhow::{Context, Result};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};

use crate::env::ClientEnv;

/// How the run ended.
pub enum Ended {
    /// The command exited with this code (128+N for a signal).
    Exited(i32),
    /// buildproxy got this signal; the command was stopped.
    Signalled(i32),
}

impl Ended {
    pub fn code(&self) -> i32 {
        match self {
            Ended::Exited(c) => *c,
            Ended::Signalled(s) => 128 + s,
        }
    }
}

/// Runs `command`, or the user's `$SHELL` when empty, until it exits or
/// buildproxy gets SIGINT/SIGTERM/SIGHUP.
pub async fn run(command: &[String], env: &ClientEnv, banner: &str) -> Result<Ended> {
    let mut cmd = if command.is_empty() {
        let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
        eprintln!("{banner}");
        let mut c = Command::new(&shell);
        c.arg("-i");
        c
    } else {
        let mut c = Command::new(&command[0]);
        c.args(&command[1..]);
        c
    };
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "starting {:?}",
            command.first().map_or("$SHELL", |s| s.as_str())
        )
    })?;
    let interactive = command.is_empty();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        let sig = tokio::select! {
            status = child.wait() => {
                let status = status?;
                use std::os::unix::process::ExitStatusExt;
                return Ok(Ended::Exited(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))));
            }
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
        };
        // Ctrl-C in an interactive shell belongs to the shell.
        if interactive && sig == libc::SIGINT {
            continue;
        }
        if let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await;
        let _ = child.start_kill();
        return Ok(Ended::Signalled(sig));
    }
}

/// Waits for SIGINT/SIGTERM/SIGHUP (a proxy serving with no command).
pub async fn until_signal() -> Result<i32> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::select! {
        _ = int.recv() => libc::SIGINT,
        _ = term.recv() => libc::SIGTERM,
        _ = hup.recv() => libc::SIGHUP,
    })
}
