//! `replay --detach`: start the proxy in the background for the calling
//! shell, and return as soon as it listens.
//!
//! The launcher re-runs itself with `--serve-for-pid <shell>` and its stdout
//! on a pipe. The server writes the `export` lines once it listens, then
//! closes its stdout: the launcher's read ends there (no polling, no fixed
//! port). The server watches the shell through a pidfd and exits with it.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use tokio::io::unix::AsyncFd;

use crate::env::ClientEnv;

pub fn launch() -> Result<i32> {
    let exe = std::env::current_exe().context("finding buildproxy's own executable")?;
    let shell = shell_pid()?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .arg(format!("--serve-for-pid={shell}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // Its own session: a terminal's Ctrl-C for the shell's foreground job
    // must not stop the proxy the shell relies on.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the background proxy")?;
    let mut exports = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut exports)
        .context("reading the background proxy's environment")?;
    if exports.is_empty() {
        let status = child.wait()?;
        bail!("the background proxy did not start ({status}); see its messages above");
    }
    print!("{exports}");
    Ok(0)
}

/// The shell to live with: `$BUILDPROXY_SHELL_PID` when the caller names
/// it, else our parent. A shell may run `$(…)` in a forked subshell (bash
/// does when errtrace and an ERR trap are set) that exits as soon as we
/// return, taking the proxy with it; mkBuildproxy's script passes `$$`.
fn shell_pid() -> Result<i32> {
    match std::env::var("BUILDPROXY_SHELL_PID") {
        Ok(pid) => pid.trim().parse().with_context(|| {
            format!("BUILDPROXY_SHELL_PID={pid:?} is not a process id; set it to the shell's `$$`")
        }),
        // SAFETY: getppid never fails.
        Err(_) => Ok(unsafe { libc::getppid() }),
    }
}

/// Serves until process `pid` exits. Prints the exports first, then closes
/// stdout so the launcher returns.
pub async fn serve(env: &ClientEnv, pid: i32) -> Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        bail!(
            "watching process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else;
    // the AsyncFd owns it from here on and closes it on drop.
    let pidfd = unsafe { AsyncFd::register(OwnedFd::from_raw_fd(fd as i32)) }?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(env.exports().as_bytes())?;
        out.flush()?;
    }
    // SAFETY: replacing fd 1 with /dev/null; nothing else writes stdout now.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    tokio::select! {
        _ = pidfd.readable() => {}
        _ = super::child::until_signal() => {}
    }
    Ok(())
}
