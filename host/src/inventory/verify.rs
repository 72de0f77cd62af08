//! Replay serves only bytes it has verified.
//!
//! A recorded body's file is opened without following a symlink anywhere in
//! its path (a blob, or `blobs/` itself, swapped for a link to another file
//! is refused), must be a regular file, and is checked against the entry's
//! SHA-256 as it streams ([`Hasher`]): a mismatch ends the transfer with an
//! error before its last bytes, so a client never takes wrong bytes for a
//! whole body.
//!
//! One exception: a read-only file in the Nix store (`$NIX_STORE_DIR`,
//! default `/nix/store`). Nix checked its hash when it fetched it and made
//! it read-only; only the store's owner could change it, and re-hashing
//! every replayed byte in the sandbox would cost what the store already
//! guarantees.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

use super::nix;

/// Why a recorded body cannot be served. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{}: cannot open: {err}{}", .path.display(), open_hint(.err))]
    Open { path: PathBuf, err: io::Error },
    #[error("{}: not a regular file; restore the recorded body", .path.display())]
    NotRegular { path: PathBuf },
    #[error(
        "{}: the content gives no hash to check it against, and it is not a read-only file \
         in the Nix store; add the entry's `hash` (mkContent writes it)", .path.display()
    )]
    NoHash { path: PathBuf },
    #[error("{}: the entry's hash {hash:?} is not a SHA-256: {problem}", .path.display())]
    BadHash {
        path: PathBuf,
        hash: String,
        problem: String,
    },
    #[error(
        "{}: its bytes do not match the recorded hash (expected {expected}, found {found}): \
         the file was changed after capture; not served. Capture again, or restore it",
        .path.display()
    )]
    Mismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{}: shorter than its recorded size ({size} bytes)", .path.display())]
    Short { path: PathBuf, size: u64 },
    #[error("{}: read failed: {err}", .path.display())]
    Read { path: PathBuf, err: io::Error },
}

/// What to do about a body that cannot be opened. A prepared lookup does
/// not look at the file (`prepared::Prepared::check`), so a body deleted
/// since is first noticed here.
fn open_hint(err: &io::Error) -> &'static str {
    if err.kind() == io::ErrorKind::NotFound {
        " (the recorded body is gone: restore it, or capture again and rebuild the content and \
         what was prepared from it: `buildproxy prepare`, or the derivation that runs it)"
    } else if err.get_ref().is_some_and(|e| e.is::<SymlinkRefused>()) {
        " (a symlink anywhere in the path is refused: replay serves only the recorded file itself)"
    } else {
        ""
    }
}

/// What a refused symlink (ELOOP) becomes, so that [`open_hint`] can tell
/// it from other failures.
#[derive(Debug, thiserror::Error)]
#[error("a component of the path is a symlink")]
struct SymlinkRefused;

/// A recorded body's file, open, and what must be checked while reading it.
pub struct Opened {
    pub file: File,
    pub path: PathBuf,
    /// `None`: a read-only Nix store file, trusted.
    pub expect: Option<nix::Digest>,
    /// Its length when opened (from the `fstat` that checked its type).
    pub len: u64,
}

/// What an answer that sends none of the body (HEAD, 416) still promises:
/// the body can be opened for serving and is at least its recorded
/// `size` (a GET reads `size` bytes: it fails at once on a file that is
/// gone, and on a short one before or while it streams). Without this,
/// HEAD said 200 with a length for a body no GET could deliver.
pub fn check_present(path: &Path, hash: Option<&str>, size: u64) -> Result<(), VerifyError> {
    if open(path, hash)?.len < size {
        return Err(VerifyError::Short {
            path: path.to_owned(),
            size,
        });
    }
    Ok(())
}

/// Opens `path` for serving a body whose SRI hash is `hash`.
pub fn open(path: &Path, hash: Option<&str>) -> Result<Opened, VerifyError> {
    let file = open_no_symlinks(path).map_err(|err| VerifyError::Open {
        path: path.to_owned(),
        err,
    })?;
    let meta = file.metadata().map_err(|err| VerifyError::Open {
        path: path.to_owned(),
        err,
    })?;
    if !meta.file_type().is_file() {
        return Err(VerifyError::NotRegular {
            path: path.to_owned(),
        });
    }
    let trusted = read_only_in_store(path, &meta);
    let expect = if trusted {
        None
    } else {
        let hash = hash.ok_or_else(|| VerifyError::NoHash {
            path: path.to_owned(),
        })?;
        Some(
            nix::digest_of(hash).map_err(|problem| VerifyError::BadHash {
                path: path.to_owned(),
                hash: hash.to_string(),
                problem,
            })?,
        )
    };
    Ok(Opened {
        file,
        path: path.to_owned(),
        expect,
        len: meta.len(),
    })
}

fn read_only_in_store(path: &Path, meta: &std::fs::Metadata) -> bool {
    meta.mode() & 0o222 == 0
        && super::under(path, nix_store())
        && !path
            .as_os_str()
            .as_bytes()
            .split(|&b| b == b'/')
            .any(|c| c == b"..")
}

/// A read-only regular file in the Nix store (not through a symlink):
/// what Nix checked and only the store's owner could change.
pub fn in_nix_store_read_only(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_file() && read_only_in_store(path, &m))
}

/// The Nix store, resolved once (it may itself sit behind a symlink).
fn nix_store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::var_os("NIX_STORE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(super::content::NIX_STORE));
        std::fs::canonicalize(&dir).unwrap_or(dir)
    })
}

/// `open(2)` that fails if any component of `path` is a symlink:
/// `openat2(RESOLVE_NO_SYMLINKS)`, or a walk with `O_NOFOLLOW` on kernels
/// older than 5.6.
fn open_no_symlinks(path: &Path) -> io::Result<File> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // O_NONBLOCK: opening a FIFO put where a body was would otherwise wait
    // for a writer before `open` could refuse it (not a regular file); a
    // regular file's reads ignore the flag. O_NOCTTY: a terminal put there
    // does not become ours.
    let flags =
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    // SAFETY: open_how is plain data; zeroed is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: openat2 with a valid C string and a correctly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a new descriptor we own.
        return Ok(unsafe { File::from_raw_fd(fd as i32) });
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(symlink_hint(err));
    }
    walk_no_symlinks(path, flags)
}

/// ELOOP is what a refused symlink looks like; say so.
fn symlink_hint(err: io::Error) -> io::Error {
    if err.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(err.kind(), SymlinkRefused)
    } else {
        err
    }
}

fn walk_no_symlinks(path: &Path, flags: i32) -> io::Result<File> {
    use std::path::Component;
    let comps: Vec<_> = path.components().collect();
    let mut dir = File::open("/")?;
    for (i, c) in comps.iter().enumerate() {
        let name = match c {
            Component::RootDir => continue,
            Component::Normal(n) => std::ffi::CString::new(n.as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute, normal path",
                ));
            }
        };
        let last = i + 1 == comps.len();
        let f = if last {
            flags
        } else {
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC
        };
        use std::os::fd::AsRawFd;
        // SAFETY: openat on a directory fd we hold, with a valid C string.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), f) };
        if fd < 0 {
            return Err(symlink_hint(io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor we own.
        dir = unsafe { File::from_raw_fd(fd) };
        // O_PATH|O_NOFOLLOW opens a symlink itself: refuse it here.
        if !last && !dir.metadata()?.is_dir() {
            return Err(symlink_hint(io::Error::from_raw_os_error(libc::ELOOP)));
        }
    }
    Ok(dir)
}

/// SHA-256 over a body as it is read, from its first byte.
pub struct Hasher {
    expect: nix::Digest,
    sha: Sha256,
}

impl Hasher {
    pub fn new(expect: nix::Digest) -> Self {
        Self {
            expect,
            sha: Sha256::new(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
    }

    /// Whether the bytes seen match; the error names `path`.
    pub fn check(self, path: &Path) -> Result<(), VerifyError> {
        let found: nix::Digest = self.sha.finalize().into();
        if found == self.expect {
            Ok(())
        } else {
            Err(VerifyError::Mismatch {
                path: path.to_owned(),
                expected: nix::sri(&self.expect),
                found: nix::sri(&found),
            })
        }
    }
}

/// The whole body, checked (for plugins that asked for it).
pub fn read_all(path: &Path, hash: Option<&str>, size: u64) -> Result<Vec<u8>, VerifyError> {
    let mut opened = open(path, hash)?;
    let mut buf = Vec::with_capacity(size as usize);
    (&mut opened.file)
        .take(size)
        .read_to_end(&mut buf)
        .map_err(|err| VerifyError::Read {
            path: path.to_owned(),
            err,
        })?;
    if (buf.len() as u64) < size {
        return Err(VerifyError::Short {
            path: path.to_owned(),
            size,
        });
    }
    if let Some(expect) = opened.expect {
        let mut h = Hasher::new(expect);
        h.update(&buf);
        h.check(path)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

    #[test]
    fn symlinks_anywhere_in_the_path_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("f"), b"hello").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("linkdir")).unwrap();
        std::os::unix::fs::symlink(real.join("f"), real.join("linkfile")).unwrap();
        assert!(open(&real.join("f"), Some(HELLO)).is_ok());
        for p in [dir.path().join("linkdir/f"), real.join("linkfile")] {
            let err = open(&p, Some(HELLO)).err().unwrap().to_string();
            assert!(err.contains("symlink"), "{err}");
        }
        let err = walk_no_symlinks(&dir.path().join("linkdir/f"), libc::O_RDONLY)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symlink"), "{err}");
        assert!(walk_no_symlinks(&real.join("f"), libc::O_RDONLY).is_ok());
    }

    #[test]
    fn other_bytes_and_missing_hashes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_all(&f, Some(HELLO), 5).unwrap(), b"hello");
        std::fs::write(&f, b"jello").unwrap();
        let err = read_all(&f, Some(HELLO), 5).unwrap_err().to_string();
        assert!(err.contains("do not match the recorded hash"), "{err}");
        assert!(err.contains(&f.display().to_string()), "{err}");
        let err = open(&f, None).err().unwrap().to_string();
        assert!(err.contains("no hash"), "{err}");
        let err = open(dir.path(), Some(HELLO)).err().unwrap().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    /// A prepared lookup does not look at the file, so this open is the
    /// check: a FIFO in a body's place is refused at once, not waited on.
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(open(&fifo, Some(HELLO)).err().map(|e| e.to_string()));
        });
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO waited for a writer")
            .expect("a FIFO was opened as a body");
        assert!(err.contains("not a regular file"), "{err}");
    }
}
