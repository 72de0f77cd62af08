//! The inventory: what a build downloaded, and what replay answers with.
//!
//! Capture records every exchange as an [`Entry`]; the inventory turns those
//! into the files that outlive the proxy: `proxy_content.nix` (a list of
//! `fetchurl` calls Nix can fetch and check on its own, see [`nix`]), the JSON
//! that Nix builds from it for replay ([`content`]), and the `--store`
//! directory of content-addressed blobs ([`store`]). [`index`] looks entries
//! up by request, and [`names`] keeps `fetchurl`'s store names valid.
//!
//! The inventory must never hold a body in memory: downloads can be
//! gigabytes and a build can fetch thousands of them. Entries carry a body's
//! hash, size and path only; bytes move between the network and disk in
//! streams, and loaders read a file's size from its metadata, never its
//! content.

pub mod check;
pub mod content;
pub mod entry;
pub mod index;
pub mod journal;
pub mod names;
pub mod nix;
pub mod prepared;
#[cfg(test)]
mod props;
pub mod store;
pub mod umask;
pub mod verify;

pub use entry::{Body, Entry};

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why reading or writing an inventory file failed.
///
/// Each message names the file, the entry (its 0-based position, as jq's
/// `.[N]` and Nix's `builtins.elemAt` count, and its URL) and what to do,
/// because the user meets these at the end of a long build and must be able
/// to fix the file without reading our source.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The operating system refused a read or write.
    ///
    /// The OS error is part of the message rather than a `source`, so that
    /// reporters that print source chains do not print it twice.
    #[error("{}: cannot {action}: {err}{}", .path.display(), io_hint(.err))]
    Io {
        path: PathBuf,
        action: &'static str,
        err: io::Error,
    },

    /// A `proxy_content.nix` is not in the subset of Nix we read.
    #[error(
        "{}:{line}:{col}: expected {expected}, found {found}; \
         this reader understands `{{ fetchurl }}: [ {{ url = \"…\"; file = fetchurl {{ … }}; }} … ]` \
         as buildproxy and nix-buildproxy write it: fix the file or regenerate it with `buildproxy capture`",
        .path.display()
    )]
    Syntax {
        path: PathBuf,
        line: usize,
        col: usize,
        expected: String,
        found: String,
    },

    /// A content or index JSON file is not valid JSON or not in our schema.
    #[error(
        "{}:{line}:{column}: {message}; expected a JSON list of {{\"url\", \"file\", \
         \"status_code\"?, \"headers\"?, \"method\"?, \"hash\"?}} objects, as Nix's \
         builtins.toJSON makes from a proxy_content.nix",
        .path.display()
    )]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// One entry of a file is well-formed but unusable.
    #[error("{}: entry [{index}] ({url}): {problem}; {fix}", at(.path, *.pos))]
    InvalidEntry {
        path: PathBuf,
        /// Line and column in the file, where the reader knows them.
        pos: Option<(usize, usize)>,
        index: usize,
        url: String,
        problem: String,
        fix: &'static str,
    },

    /// Two entries answer the same request, so replay could not choose.
    #[error(
        "{}: entries [{first}] and [{second}] both record {method} {url}; \
         remove one of them (replay answers each request with exactly one recording)",
        .path.display()
    )]
    Duplicate {
        path: PathBuf,
        first: usize,
        second: usize,
        method: String,
        url: String,
    },

    /// A prepared content index (see [`prepared`]) cannot be used as a whole.
    #[error("{}: {problem}; {fix}", .path.display())]
    Prepared {
        path: PathBuf,
        problem: String,
        fix: &'static str,
    },

    /// An entry cannot be written as a `fetchurl` call.
    #[error("cannot write the entry for {url}: {problem}; {fix}")]
    Unrenderable {
        url: String,
        problem: String,
        fix: &'static str,
    },
}

impl InventoryError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, err: io::Error) -> Self {
        InventoryError::Io {
            path: path.into(),
            action,
            err,
        }
    }
}

/// `path` or `path:line:col`, for messages.
fn at(path: &Path, pos: Option<(usize, usize)>) -> String {
    match pos {
        Some((line, col)) => format!("{}:{line}:{col}", path.display()),
        None => path.display().to_string(),
    }
}

/// What the user can do about an I/O error, for the common causes.
///
/// By kind as well as by errno: wrappers such as `tempfile`'s (which add the
/// path) keep the kind but not the raw OS error.
pub(crate) fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => " (the disk is full: free space and retry)",
        Some(libc::EROFS) => " (read-only file system: choose a writable location)",
        _ => match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                " (the disk is full: free space and retry)"
            }
            io::ErrorKind::ReadOnlyFilesystem => {
                " (read-only file system: choose a writable location)"
            }
            io::ErrorKind::PermissionDenied => {
                " (check the file's and its directory's permissions)"
            }
            io::ErrorKind::NotFound => " (check the path)",
            _ => "",
        },
    }
}

/// Replaces `path` with `bytes` so that a reader sees either the old file or
/// the new one, never a torn one, even across a crash: write a temporary file
/// in the same directory (rename is only atomic within a file system), fsync
/// it, rename it over `path`, fsync the directory so the rename is durable.
/// On error the temporary file is removed and the old file is untouched.
pub(crate) fn write_atomic_bytes(path: &Path, bytes: &[u8]) -> Result<(), InventoryError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Keep an existing file's mode; a new one gets what the umask allows
    // rather than the temporary file's private 0600.
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or_else(|_| umask::file_mode());
    let mut tmp = tempfile::Builder::new()
        .prefix(".buildproxy-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| InventoryError::io(path, "create a temporary file beside", e))?;
    let io = |e| InventoryError::io(path, "write", e);
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path)
        .map_err(|e| InventoryError::io(path, "replace", e.error))?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), InventoryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| InventoryError::io(dir, "sync directory", e))
}

/// `Path::starts_with` on bytes, for a `path` with no `.`, `..` or empty
/// component: asked on every request served from a file, where walking
/// the components cost more than the `fstat` beside it.
pub(crate) fn under(path: &Path, root: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (p, r) = (path.as_os_str().as_bytes(), root.as_os_str().as_bytes());
    let r = r.strip_suffix(b"/").unwrap_or(r);
    p.starts_with(r) && (p.len() == r.len() || p[r.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.nix");
        write_atomic_bytes(&path, b"one").unwrap();
        write_atomic_bytes(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, umask::file_mode());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_error_names_path_and_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way makes the rename fail after the write.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();
        let err = write_atomic_bytes(&path, b"new").unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(path.join("keep").exists());
        // Only the directory itself: the temporary file is gone.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn messages_name_file_entry_and_fix() {
        let e = InventoryError::InvalidEntry {
            path: "c.json".into(),
            pos: Some((3, 7)),
            index: 2,
            url: "https://x/y".into(),
            problem: "no such file".into(),
            fix: "rebuild it",
        };
        assert_eq!(
            e.to_string(),
            "c.json:3:7: entry [2] (https://x/y): no such file; rebuild it"
        );
        let e = InventoryError::io(
            "/d/blob",
            "write",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let s = e.to_string();
        assert!(s.starts_with("/d/blob: cannot write: "), "{s}");
        assert!(s.contains("disk is full"), "{s}");
        // As tempfile wraps it: the kind survives, the errno does not.
        let wrapped = io::Error::new(
            io::Error::from_raw_os_error(libc::ENOSPC).kind(),
            "No space left on device (os error 28) at path \"/d/.tmp\"",
        );
        let s = InventoryError::io("/d/f", "write", wrapped).to_string();
        assert!(s.contains("disk is full"), "{s}");
    }
}
