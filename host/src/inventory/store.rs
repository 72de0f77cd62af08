//! The content-addressed body store behind `capture --store DIR` and
//! `replay --store DIR`.
//!
//! Layout:
//!
//! ```text
//! DIR/blobs/sha256/<hex>   one file per distinct body, named by its sha256
//! DIR/index.json           the entries, in content.rs's JSON schema, with
//!                          `file` = "blobs/sha256/<hex>" and `hash` always set
//! DIR/index.prepared       the same entries prepared for replay (see
//!                          prepared.rs); replay uses it unless index.json
//!                          is newer (edited by hand)
//! DIR/tmp/                 bodies still being written
//! ```
//!
//! Naming blobs by hash deduplicates bodies for free and makes "is this body
//! already stored" a stat. Bodies arrive over the network as a stream, so a
//! blob is first written to `tmp/` under a random name and only renamed into
//! `blobs/` once complete and synced: a crash or failed transfer never
//! leaves a truncated blob under a hash name. A crash can leave files in
//! `tmp/`; nothing reads them, and they are safe to delete.

use super::content::{self, FileProblem, RawEntry};
use super::prepared::{self, Prepared};
use super::{Entry, InventoryError, io_hint, nix, sync_dir, write_atomic_bytes};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

const BLOBS: &str = "blobs/sha256";
const TMP: &str = "tmp";
const INDEX: &str = "index.json";
const PREPARED: &str = "index.prepared";

/// An opened store directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens `dir`, creating it and its subdirectories if needed. The path is
    /// made absolute so the blob paths handed out stay valid whatever the
    /// process's working directory becomes.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, InventoryError> {
        let dir = dir.as_ref();
        for sub in [BLOBS, TMP] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| InventoryError::io(p, "create directory", e))?;
        }
        let dir = fs::canonicalize(dir).map_err(|e| InventoryError::io(dir, "open store", e))?;
        Ok(Store { dir })
    }

    /// The store's absolute directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with this sha256 (lower-case hex) lives, or `None` if
    /// `sha256_hex` is not 64 hex digits (never a path outside the store).
    pub fn blob_path(&self, sha256_hex: &str) -> Option<PathBuf> {
        is_sha256_hex(sha256_hex).then(|| self.dir.join(BLOBS).join(sha256_hex))
    }

    /// Starts a new blob: a fresh temporary file in `DIR/tmp/`, created
    /// exclusively under a random name so concurrent captures cannot clash.
    pub fn begin(&self) -> Result<BlobWriter, InventoryError> {
        let tmp_dir = self.dir.join(TMP);
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp_dir)
            .map_err(|e| InventoryError::io(tmp_dir, "create a temporary blob in", e))?;
        Ok(BlobWriter {
            tmp,
            blobs: self.dir.join(BLOBS),
            written: 0,
            direct: false,
            staging: None,
            cached_only: false,
        })
    }

    /// Writes `DIR/index.json` atomically: `entries` sorted, one JSON object
    /// each. Every body must have a hash and its blob must already be in
    /// the store, and the entries must load back ([`Store::load`] checks
    /// the same things), so a store on disk is always replayable.
    pub fn write_index(&self, entries: &[Entry]) -> Result<(), InventoryError> {
        let path = self.dir.join(INDEX);
        let mut sorted: Vec<&Entry> = entries.iter().collect();
        sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let mut raws = Vec::with_capacity(sorted.len());
        for (index, e) in sorted.into_iter().enumerate() {
            let (file, hash) = match &e.body {
                None => (None, None),
                Some(body) => {
                    let Some(hash) = body.hash.as_deref() else {
                        let fix = "hash every body before storing it (a bug in the caller)";
                        return Err(self.invalid(index, e, "its body has no hash".into(), fix));
                    };
                    let digest = nix::digest_of(hash).map_err(|problem| {
                        self.invalid(index, e, problem, "record bodies' sha256 in SRI form")
                    })?;
                    let file = format!("{BLOBS}/{}", nix::hex(&digest));
                    (Some(file), Some(nix::sri(&digest)))
                }
            };
            raws.push(RawEntry {
                url: e.url.clone(),
                method: e.method.clone(),
                status_code: e.status,
                headers: e.headers.clone(),
                request_headers: e.request_headers.clone(),
                file,
                hash,
                fetch_url: e.fetch_url.clone(),
                name: e.name.clone(),
            });
        }
        let checked =
            content::to_entries(&path, raws.clone(), |file, hash| self.resolve(file, hash))?;
        let mut json = serde_json::to_vec_pretty(&raws)
            .map_err(|e| InventoryError::io(&path, "serialise", io::Error::other(e)))?;
        json.push(b'\n');
        write_atomic_bytes(&path, &json)?;
        // After index.json, so that it is never newer than a prepared file
        // made from it (see `open_prepared`).
        let prepared_path = self.dir.join(PREPARED);
        let mut bytes = Vec::new();
        prepared::write(&mut bytes, &checked, Some(&self.dir))
            .map_err(|e| InventoryError::io(&prepared_path, "serialise", e))?;
        write_atomic_bytes(&prepared_path, &bytes)
    }

    /// The store's prepared index, for replay to open in constant time;
    /// `None` when there is none, it was written by a buildproxy with
    /// another format, or `index.json` was changed after it was written
    /// (then [`Store::load`] reads `index.json`).
    pub fn open_prepared(dir: impl AsRef<Path>) -> Result<Option<Prepared>, InventoryError> {
        let dir = dir.as_ref();
        let dir = fs::canonicalize(dir).map_err(|e| InventoryError::io(dir, "open store", e))?;
        let (json, path) = (dir.join(INDEX), dir.join(PREPARED));
        let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        match (modified(&json), modified(&path)) {
            (Some(j), Some(p)) if p >= j && prepared::is_current(&path) => {
                Prepared::open(&path, Some(&dir), &[]).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Reads a store's index, with each body's `file` made absolute under
    /// `dir` and checked to exist (its size from metadata). Hashes are not
    /// re-verified here: that would read every body.
    pub fn load(dir: impl AsRef<Path>) -> Result<Vec<Entry>, InventoryError> {
        let dir = dir.as_ref();
        let dir = fs::canonicalize(dir).map_err(|e| InventoryError::io(dir, "open store", e))?;
        let store = Store { dir };
        let path = store.dir.join(INDEX);
        let raws = content::read_raw(&path)?;
        content::to_entries(&path, raws, |file, hash| store.resolve(file, hash))
    }

    fn invalid(
        &self,
        index: usize,
        e: &Entry,
        problem: String,
        fix: &'static str,
    ) -> InventoryError {
        InventoryError::InvalidEntry {
            path: self.dir.join(INDEX),
            pos: None,
            index,
            url: e.url.clone(),
            problem,
            fix,
        }
    }

    /// Checks an index entry's `file`: exactly `blobs/sha256/<hex>` of its
    /// own hash (so an index cannot point outside the store or at another
    /// body), present as a regular file.
    fn resolve(&self, file: &str, hash: Option<&str>) -> Result<(PathBuf, u64), FileProblem> {
        let rebuild = "capture into the store again, or restore the blob from a backup";
        let Some(hex) = file.strip_prefix(BLOBS).and_then(|s| s.strip_prefix('/')) else {
            return Err((
                format!("`file` {file:?} is not of the form \"{BLOBS}/<sha256 hex>\""),
                rebuild,
            ));
        };
        let Some(path) = self.blob_path(hex) else {
            return Err((
                format!("`file` {file:?} does not end in 64 lower-case hex digits"),
                rebuild,
            ));
        };
        match hash.map(nix::to_hex) {
            Some(Ok(h)) if h == hex => {}
            Some(_) => {
                return Err((
                    format!("`file` {file:?} does not match the entry's hash"),
                    rebuild,
                ));
            }
            None => {
                return Err(("the entry has a `file` but no `hash`".into(), rebuild));
            }
        }
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok((path, m.len())),
            Ok(_) => Err((format!("{} is not a regular file", path.display()), rebuild)),
            Err(e) => Err((format!("blob {} is missing: {e}", path.display()), rebuild)),
        }
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A body being written into the store.
///
/// The first [`DIRECT_BLOCK`] bytes go through the page cache; past them,
/// whole blocks of that size are written with `O_DIRECT` from an aligned
/// buffer (where the file system supports it), the tail through the page
/// cache again. A large body then skips the page cache's per-page work and
/// its write-back: a third of the CPU that storing took (issue 17), and a
/// captured GiB does not evict the page cache. A caller that gathers whole
/// [`Block`]s itself ([`BlobWriter::write_block`]) saves the copy as well.
///
/// Dropping it without [`BlobWriter::finish`] removes the temporary file,
/// so an aborted transfer leaves nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    /// Removes itself when dropped unless persisted.
    tmp: NamedTempFile,
    blobs: PathBuf,
    written: u64,
    /// The file is in `O_DIRECT` mode (past the first block).
    direct: bool,
    /// Where [`BlobWriter::write`] gathers pieces into whole blocks, once
    /// `O_DIRECT` is on.
    staging: Option<Block>,
    /// The file system refused `O_DIRECT`: the page cache for the rest.
    cached_only: bool,
}

/// Bytes per `O_DIRECT` write, and the part of a body written before it.
pub const DIRECT_BLOCK: usize = 1 << 20;
/// What `O_DIRECT` asks of memory addresses (and lengths, and offsets): a
/// multiple of the device's logical block size, which this covers.
const ALIGN: usize = 4096;

/// A block-aligned buffer of up to [`DIRECT_BLOCK`] bytes.
pub struct Block {
    /// Its length is where the filled part ends: memory past it is never
    /// touched, so a block holding a small body costs only that body's
    /// pages.
    mem: Vec<u8>,
    start: usize,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({} bytes)", self.filled().len())
    }
}

impl Default for Block {
    fn default() -> Self {
        Self::new()
    }
}

impl Block {
    pub fn new() -> Self {
        let mut mem: Vec<u8> = Vec::with_capacity(DIRECT_BLOCK + ALIGN);
        let start = mem.as_ptr().align_offset(ALIGN);
        mem.resize(start, 0);
        Self { mem, start }
    }

    pub fn filled(&self) -> &[u8] {
        &self.mem[self.start..]
    }

    pub fn is_full(&self) -> bool {
        self.filled().len() == DIRECT_BLOCK
    }

    /// Copies what fits of `buf`; returns how much. Never reallocates, so
    /// the block stays aligned.
    pub fn fill(&mut self, buf: &[u8]) -> usize {
        let n = buf.len().min(DIRECT_BLOCK - self.filled().len());
        self.mem.extend_from_slice(&buf[..n]);
        n
    }

    pub fn clear(&mut self) {
        self.mem.truncate(self.start);
    }
}

/// Sets or clears `O_DIRECT` on `file`; false when the file system refuses.
fn set_direct(file: &fs::File, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return false;
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) == 0 }
}

impl BlobWriter {
    /// Appends `buf`. Blocking I/O: call it off the async runtime. Errors
    /// name the temporary file (a full disk shows up here).
    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        if !self.direct && !self.cached_only {
            let before = (DIRECT_BLOCK as u64).saturating_sub(self.written);
            let now = buf.len().min(before as usize);
            self.write_cached(&buf[..now])?;
            buf = &buf[now..];
            if !buf.is_empty() {
                self.start_direct();
            }
        }
        while !buf.is_empty() {
            if !self.direct {
                self.write_cached(buf)?;
                break;
            }
            let staging = self.staging.get_or_insert_with(Block::new);
            buf = &buf[staging.fill(buf)..];
            if staging.is_full() {
                let mut staging = self.staging.take().expect("staging");
                let result = self.write_direct(staging.filled());
                staging.clear();
                self.staging = Some(staging);
                result?;
            }
        }
        self.written += len;
        Ok(())
    }

    /// Appends `block`; a full one past the first is written from its own
    /// memory (no copy) when `O_DIRECT` is on.
    pub fn write_block(&mut self, block: &Block) -> io::Result<()> {
        let aligned = block.is_full()
            && self.written >= DIRECT_BLOCK as u64
            && self.written.is_multiple_of(DIRECT_BLOCK as u64)
            && self.staging.as_ref().is_none_or(|s| s.filled().is_empty());
        if aligned && !self.direct && !self.cached_only {
            self.start_direct();
        }
        if !aligned || !self.direct {
            return self.write(block.filled());
        }
        self.write_direct(block.filled())?;
        self.written += DIRECT_BLOCK as u64;
        Ok(())
    }

    fn start_direct(&mut self) {
        if set_direct(self.tmp.as_file(), true) {
            self.direct = true;
        } else {
            self.cached_only = true;
        }
    }

    /// Writes an aligned block with `O_DIRECT`; if the file system refuses
    /// (some accept the flag but not the write), through the page cache
    /// from then on.
    fn write_direct(&mut self, data: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < data.len() {
            match self.tmp.as_file().write(&data[done..]) {
                Ok(0) => return Err(self.failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    set_direct(self.tmp.as_file(), false);
                    self.direct = false;
                    self.cached_only = true;
                    return self.write_cached(&data[done..]);
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
        Ok(())
    }

    fn write_cached(&mut self, buf: &[u8]) -> io::Result<()> {
        let result = self.tmp.write_all(buf);
        result.map_err(|e| self.failed(e))
    }

    /// Bytes written so far.
    #[cfg(test)]
    fn written(&self) -> u64 {
        self.written
    }

    fn failed(&self, e: io::Error) -> io::Error {
        let path = self.tmp.path().display();
        io::Error::new(e.kind(), format!("cannot write {path}: {e}{}", io_hint(&e)))
    }

    /// Syncs the body and moves it to `blobs/sha256/<sha256_hex>`, which it
    /// returns. The caller hashed the stream as it arrived, so the body is
    /// not read again. A blob already under that name is replaced, not
    /// trusted: it may have been planted in a shared store (other bytes, a
    /// symlink), and these bytes are the ones just verified.
    pub fn finish(mut self, sha256_hex: &str) -> Result<PathBuf, InventoryError> {
        let hex = sha256_hex.to_ascii_lowercase();
        if !is_sha256_hex(&hex) {
            return Err(InventoryError::io(
                self.tmp.path(),
                "store blob",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{sha256_hex:?} is not a sha256 in hex (64 hex digits)"),
                ),
            ));
        }
        let dest = self.blobs.join(&hex);
        let tmp_path = self.tmp.path().to_owned();
        // The tail (less than a block): through the page cache.
        if self.direct {
            set_direct(self.tmp.as_file(), false);
        }
        if let Some(staging) = self.staging.take() {
            let result = self.tmp.write_all(staging.filled());
            result.map_err(|e| InventoryError::io(&tmp_path, "write", e))?;
        }
        let file = self.tmp.as_file();
        file.set_permissions(fs::Permissions::from_mode(super::umask::file_mode()))
            .and_then(|()| file.sync_all())
            .map_err(|e| InventoryError::io(&tmp_path, "sync", e))?;
        self.tmp
            .persist(&dest)
            .map_err(|e| InventoryError::io(&dest, "move blob into place at", e.error))?;
        sync_dir(&self.blobs)?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Body;
    use super::*;
    use std::collections::BTreeMap;

    // sha256("hello")
    const HELLO_HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn count(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    fn put_hello(store: &Store) -> PathBuf {
        let mut w = store.begin().unwrap();
        w.write(b"hel").unwrap();
        w.write(b"lo").unwrap();
        w.finish(HELLO_HEX).unwrap()
    }

    fn entry(url: &str, file: Option<PathBuf>) -> Entry {
        Entry {
            method: "GET".into(),
            url: url.into(),
            fetch_url: None,
            name: None,
            status: if file.is_some() { 200 } else { 404 },
            headers: BTreeMap::from([("content-length".into(), "5".into())]),
            request_headers: BTreeMap::new(),
            body: file.map(|f| Body {
                hash: Some(nix::to_sri(HELLO_HEX).unwrap()),
                size: Some(5),
                file: Some(f),
            }),
        }
    }

    #[test]
    fn a_large_blob_is_written_whole_in_any_pieces() {
        use sha2::{Digest, Sha256};
        // Past DIRECT_BLOCK the writer switches to aligned O_DIRECT blocks
        // (where the file system has them): the bytes must come out the
        // same, whatever the pieces and wherever the tail ends.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (size, piece) in [
            (3 * DIRECT_BLOCK + 12345, 417_792),
            (2 * DIRECT_BLOCK, 4096),
            (DIRECT_BLOCK + 1, 7),
            (DIRECT_BLOCK, DIRECT_BLOCK),
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut w = store.begin().unwrap();
            for chunk in data.chunks(piece) {
                w.write(chunk).unwrap();
            }
            assert_eq!(w.written(), size as u64);
            let path = w.finish(&nix::hex(&Sha256::digest(&data))).unwrap();
            assert!(
                fs::read(&path).unwrap() == data,
                "{size} in pieces of {piece}"
            );
        }
    }

    #[test]
    fn whole_blocks_and_pieces_mix() {
        use sha2::{Digest, Sha256};
        // A block after an odd piece is no longer at an aligned offset: it
        // must still land in order (through the staging block).
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..5 * DIRECT_BLOCK + 99)
            .map(|i| (i % 241) as u8)
            .collect();
        let mut w = store.begin().unwrap();
        let mut block = Block::new();
        let mut at = 0;
        for (i, len) in [
            DIRECT_BLOCK,
            DIRECT_BLOCK,
            99,
            DIRECT_BLOCK,
            DIRECT_BLOCK,
            DIRECT_BLOCK,
        ]
        .into_iter()
        .enumerate()
        {
            let piece = &data[at..at + len];
            if len == DIRECT_BLOCK {
                block.clear();
                assert_eq!(block.fill(piece), len);
                assert!(block.is_full());
                assert_eq!(block.filled().as_ptr().align_offset(ALIGN), 0, "{i}");
                w.write_block(&block).unwrap();
            } else {
                w.write(piece).unwrap();
            }
            at += len;
        }
        assert_eq!(w.written(), data.len() as u64);
        let path = w.finish(&nix::hex(&Sha256::digest(&data))).unwrap();
        assert!(fs::read(&path).unwrap() == data);
    }

    #[test]
    fn finished_blobs_land_under_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let path = put_hello(&store);
        assert_eq!(path, store.dir().join(BLOBS).join(HELLO_HEX));
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(count(&store.dir().join(TMP)), 0);
        // The same body again: same path, no leftovers.
        assert_eq!(put_hello(&store), path);
        assert_eq!(count(&store.dir().join(TMP)), 0);
        assert_eq!(count(&store.dir().join(BLOBS)), 1);
    }

    #[test]
    fn abandoned_or_misnamed_blobs_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.begin().unwrap();
        w.write(b"partial").unwrap();
        assert_eq!(count(&store.dir().join(TMP)), 1);
        drop(w);
        assert_eq!(count(&store.dir().join(TMP)), 0);
        let mut w = store.begin().unwrap();
        w.write(b"x").unwrap();
        let err = w.finish("../../escape").unwrap_err().to_string();
        assert!(err.contains("not a sha256"), "{err}");
        assert_eq!(count(&store.dir().join(TMP)), 0);
        assert_eq!(count(&store.dir().join(BLOBS)), 0);
        assert_eq!(store.blob_path("../x"), None);
    }

    #[test]
    fn index_round_trips_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = put_hello(&store);
        let mut other = entry("https://e.org/a", Some(blob.clone()));
        other.fetch_url = Some("https://mirror.e.org/a".into());
        let entries = vec![
            entry("https://e.org/z", Some(blob.clone())),
            entry("https://e.org/missing", None),
            other,
        ];
        store.write_index(&entries).unwrap();
        let first = fs::read(store.dir().join(INDEX)).unwrap();
        let mut reversed = entries.clone();
        reversed.reverse();
        store.write_index(&reversed).unwrap();
        assert_eq!(fs::read(store.dir().join(INDEX)).unwrap(), first);
        let text = String::from_utf8(first).unwrap();
        assert!(
            text.contains(&format!("\"file\": \"blobs/sha256/{HELLO_HEX}\"")),
            "{text}"
        );
        assert!(text.ends_with("]\n"));

        let mut want = entries;
        want.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        assert_eq!(Store::load(dir.path()).unwrap(), want);
    }

    #[test]
    fn a_prepared_index_of_another_format_falls_back_to_index_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = put_hello(&store);
        store
            .write_index(&[entry("https://e.org/a", Some(blob))])
            .unwrap();
        assert!(Store::open_prepared(dir.path()).unwrap().is_some());
        // As an older buildproxy wrote it: version 1.
        let path = store.dir().join(PREPARED);
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        assert!(Store::open_prepared(dir.path()).unwrap().is_none());
        assert_eq!(Store::load(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn index_refuses_unstored_or_unhashed_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .write_index(&[entry("https://e.org/a", Some(dir.path().join("nowhere")))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is missing"), "{err}");
        let mut e = entry("https://e.org/a", Some(put_hello(&store)));
        e.body.as_mut().unwrap().hash = None;
        let err = store.write_index(&[e]).unwrap_err().to_string();
        assert!(err.contains("entry [0] (https://e.org/a)"), "{err}");
        assert!(!store.dir().join(INDEX).exists());
    }

    #[test]
    fn load_refuses_paths_outside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        put_hello(&store);
        let sri = nix::to_sri(HELLO_HEX).unwrap();
        let zeros = "0".repeat(64);
        for file in [
            "/etc/passwd".to_owned(),
            format!("blobs/sha256/../../{INDEX}"),
            format!("blobs/sha256/{zeros}"),
        ] {
            let json = format!(r#"[{{"url": "u", "file": "{file}", "hash": "{sri}"}}]"#);
            fs::write(store.dir().join(INDEX), json).unwrap();
            let err = Store::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("entry [0] (u)"), "{err}");
        }
        let err = Store::load(dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent"), "{err}");
    }
}
