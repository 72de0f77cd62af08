//! One capture per output file at a time.
//!
//! Two captures writing the same `--output` share its journal: the first to
//! finish would delete the journal under the other and the last writer would
//! win, losing what the other recorded. The second capture therefore stops
//! at start, before its build runs, naming the first's PID.
//!
//! The lock is `flock(2)` on `<output>.lock`, which holds the owner's PID
//! and is removed when the capture ends. A process killed with SIGKILL
//! leaves the file but not the lock (the kernel drops it with the
//! descriptor), so a stale file never blocks the next capture.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{}: another capture (PID {pid}) is writing this output; wait for it to finish, \
         or give this one another --output", .output.display()
    )]
    Held { output: PathBuf, pid: String },
    #[error("{}: cannot lock: {err}", .path.display())]
    Io { path: PathBuf, err: std::io::Error },
}

/// Held while a capture writes `output`; removes the lock file on drop.
pub struct OutputLock {
    path: PathBuf,
    file: File,
}

pub fn path_for(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    output.with_file_name(name)
}

impl OutputLock {
    pub fn acquire(output: &Path) -> Result<Self, LockError> {
        let path = path_for(output);
        let io = |err| LockError::Io {
            path: path.clone(),
            err,
        };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io(err));
                }
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Held {
                    output: output.to_owned(),
                    pid: pid.trim().to_string(),
                });
            }
            // The holder before us may have removed the file between our
            // open and our lock: then we hold a lock nobody else sees.
            let same = std::fs::metadata(&path)
                .ok()
                .zip(file.metadata().ok())
                .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                continue;
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(Self { path, file });
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiting capture re-checks.
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_output_names_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("proxy_content.nix");
        let first = OutputLock::acquire(&out).unwrap();
        let err = OutputLock::acquire(&out).err().unwrap().to_string();
        assert!(
            err.contains(&format!("PID {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("proxy_content.nix"), "{err}");
        drop(first);
        assert!(!path_for(&out).exists());
        let _again = OutputLock::acquire(&out).unwrap();
    }
}
