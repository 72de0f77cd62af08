//! The prepared content index: replay's input in a form it can open in
//! constant time, whatever the number of entries.
//!
//! Loading the content JSON parses every entry, resolves every `file` and
//! builds a hash map: 1.2 s and 186 MB at 100,000 entries, paid by every
//! build before its first download. All of that depends only on the
//! content, so it is done once, where the result can be cached: by
//! `buildproxy prepare` in the Nix derivation that turns the JSON into this
//! file (see nix/prepareContent.nix), and by `capture --store` beside the
//! store's index. Replay then reads a fixed header and a directory of the
//! hash table's blocks, checks them against the header's checksum, and per
//! request reads (and, the first time, checks) one block of the table and
//! one record: start reads 40 bytes per 1,024 entries, whatever their
//! size, instead of the whole table (16 bytes an entry).
//!
//! Layout, integers little-endian:
//!
//! ```text
//! 0   magic "BPINDEX\0"
//! 8   version u32, flags u32 (0)
//! 16  count u64              number of records
//! 24  block u64              table entries per block (the last may be short)
//! 32  records_offset u64     = 80 + 40 × blocks + 16 × count
//! 40  file_length u64        the whole file, to catch truncation
//! 48  sha256 [32]            of bytes 0..48 and the directory
//! 80  directory: blocks × (first key_hash u64, sha256 [32] of the block)
//!     table: count × (key_hash u64, record_offset u64), sorted
//!     records: one each (layout in [`record`]), in table order
//! ```
//!
//! `key_hash` is FNV-1a of the match key, `METHOD \0 normalised-URL`.
//! Records with the same key are adjacent, so match-key fields beyond
//! method and URL (request headers a response varies on) select among the
//! candidates [`Prepared::candidates`] returns without changing the format.
//! Records are binary, read in place, because one is decoded on every
//! replayed request; a new field is a new version, and a file of another
//! version is refused at start with the command that prepares it again.
//!
//! Bodies are checked when prepared (every `file` a regular file under an
//! allowed root, as [`super::content::load`] checks) and again for the one
//! entry asked for: its path when it is looked up (under an allowed root; a
//! `--store` blob named by its hash), so a prepared file from elsewhere can
//! name no file outside the allowed roots, and the file itself when it is
//! served (`verify::open`: no symlink, a regular file, its bytes against
//! the hash unless it is a read-only Nix store file), so a lookup does not
//! `stat` it as well.

use super::content::{self, NIX_STORE};
use super::index::normalize_url;
use super::{Body, Entry, InventoryError, nix, under};
use record::Record;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

mod record;

const MAGIC: &[u8; 8] = b"BPINDEX\0";
/// 3: binary records (2: JSON records; 1: one checksum over the whole
/// table).
const VERSION: u32 = 3;
const HEADER: usize = 80;
/// Table entries per block: 16 KiB, read and hashed in about 10 µs.
const BLOCK: u64 = 1024;
/// A directory slot: the block's first key and its SHA-256.
const DIR_SLOT: usize = 40;
/// No record is near this; a larger one means a damaged table.
const MAX_RECORD: u64 = 16 << 20;

const REBUILD: &str = "prepare it again from the content JSON (`buildproxy prepare CONTENT.json --output FILE`, \
     or rebuild the Nix derivation that made it)";

/// Whether `path` starts like a prepared file (replay's `--content` takes
/// either this or the content JSON).
pub fn is_prepared(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == MAGIC)
}

/// Whether `path` is a prepared file of the version this buildproxy reads
/// (a store written by an older one falls back to its `index.json`).
pub fn is_current(path: &Path) -> bool {
    let mut head = [0u8; 12];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head[..8] == MAGIC && head[8..] == VERSION.to_le_bytes())
}

fn key_hash(method: &str, url: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in method.bytes().chain([0]).chain(url.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Writes `entries` (already checked, e.g. by [`content::load`]; their
/// position is the index messages name) as a prepared file. `relative_to`:
/// body paths under this directory are written relative to it, so a
/// `--store` directory can move.
pub fn write(
    out: &mut impl Write,
    entries: &[Entry],
    relative_to: Option<&Path>,
) -> io::Result<()> {
    let mut records: Vec<(u64, Vec<u8>)> = Vec::with_capacity(entries.len());
    for (index, e) in entries.iter().enumerate() {
        let method = e.method.to_ascii_uppercase();
        let url = normalize_url(&e.url);
        let body = e.body.as_ref();
        let file = body.and_then(|b| b.file.as_deref()).map(|f| {
            relative_to
                .and_then(|d| f.strip_prefix(d).ok())
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned()
        });
        let record = Record {
            index,
            fetch_url: e.fetch_url.clone(),
            name: e.name.clone(),
            status: e.status,
            headers: e.headers.clone(),
            request_headers: e.request_headers.clone(),
            file,
            size: body.and_then(|b| b.size),
            hash: body.and_then(|b| b.hash.clone()),
            method,
            url,
        };
        let mut bytes = Vec::new();
        record::encode(&record, &mut bytes);
        records.push((key_hash(&record.method, &record.url), bytes));
    }
    // Stable: records with one key keep the content's order.
    records.sort_by_key(|(h, _)| *h);
    let count = records.len() as u64;
    let blocks = count.div_ceil(BLOCK);
    let table_offset = HEADER as u64 + DIR_SLOT as u64 * blocks;
    let records_offset = table_offset + 16 * count;
    let mut table = Vec::with_capacity(16 * records.len());
    let mut offset = 0u64;
    for (h, bytes) in &records {
        table.extend_from_slice(&h.to_le_bytes());
        table.extend_from_slice(&offset.to_le_bytes());
        offset += bytes.len() as u64;
    }
    let mut directory = Vec::with_capacity(DIR_SLOT * blocks as usize);
    for block in table.chunks(16 * BLOCK as usize) {
        directory.extend_from_slice(&block[..8]);
        directory.extend_from_slice(&Sha256::digest(block));
    }
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&BLOCK.to_le_bytes());
    header.extend_from_slice(&records_offset.to_le_bytes());
    header.extend_from_slice(&(records_offset + offset).to_le_bytes());
    let sum = Sha256::new()
        .chain_update(&header)
        .chain_update(&directory)
        .finalize();
    header.extend_from_slice(&sum);
    out.write_all(&header)?;
    out.write_all(&directory)?;
    out.write_all(&table)?;
    for (_, bytes) in &records {
        out.write_all(bytes)?;
    }
    out.flush()
}

/// `buildproxy prepare`: checks a content JSON the way replay would load
/// it and writes it prepared to `output`.
pub fn prepare(
    content_json: &Path,
    output: &Path,
    allowed_roots: &[PathBuf],
) -> Result<usize, InventoryError> {
    let entries = content::load(content_json, allowed_roots)?;
    let io = |e| InventoryError::io(output, "write", e);
    let file = File::create(output).map_err(io)?;
    let mut w = io::BufWriter::new(file);
    write(&mut w, &entries, None).map_err(io)?;
    w.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok(entries.len())
}

/// An opened prepared file: its block directory in memory (40 bytes per
/// 1,024 entries), each table block read and checked when first needed,
/// its records on disk.
#[derive(Debug)]
pub struct Prepared {
    path: PathBuf,
    file: File,
    count: u64,
    block: u64,
    /// Per block: its first key and its SHA-256.
    directory: Vec<(u64, [u8; 32])>,
    /// Per block: its (key_hash, record_offset) slots, once read and checked.
    blocks: Vec<OnceLock<Slots>>,
    table_offset: u64,
    records_offset: u64,
    records_len: u64,
    /// Relative `file`s are under this directory.
    base: Option<PathBuf>,
    roots: Vec<PathBuf>,
    /// Canonical forms of the directories content files were found in, so
    /// a lookup resolves one name, not every component of its path.
    parents: Mutex<HashMap<String, PathBuf>>,
}

/// A table block: (key_hash, record_offset) per entry.
type Slots = Box<[(u64, u64)]>;

/// Directories [`Prepared::parents`] remembers at most.
const PARENTS: usize = 4096;

impl Prepared {
    /// Opens `path`, checking its version, length and the checksum of its
    /// header and block directory: time and memory grow by 40 bytes per
    /// 1,024 entries, and no table block, record or body is touched (each
    /// table block is checked against its SHA-256 when a lookup first needs
    /// it). Bodies must be under `/nix/store`, `base` (for relative paths)
    /// or one of `allowed_roots`, checked per lookup, and regular files,
    /// checked when prepared and when served (see [`Self::check`]).
    pub fn open(
        path: &Path,
        base: Option<&Path>,
        allowed_roots: &[PathBuf],
    ) -> Result<Prepared, InventoryError> {
        let bad = |problem: String| InventoryError::Prepared {
            path: path.to_owned(),
            problem,
            fix: REBUILD,
        };
        let file = File::open(path).map_err(|e| InventoryError::io(path, "open", e))?;
        let mut header = [0u8; HEADER];
        let len = file
            .metadata()
            .map_err(|e| InventoryError::io(path, "read", e))?
            .len();
        if len < HEADER as u64 {
            return Err(bad(format!(
                "it is {len} bytes, shorter than the {HEADER}-byte header"
            )));
        }
        file.read_exact_at(&mut header, 0)
            .map_err(|e| InventoryError::io(path, "read", e))?;
        if &header[..8] != MAGIC {
            return Err(bad("it is not a prepared content index".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "it is format version {version}; this buildproxy reads version {VERSION}"
            )));
        }
        let (count, block) = (u64_at(16), u64_at(24));
        let (records_offset, file_length) = (u64_at(32), u64_at(40));
        let blocks = if block == 0 {
            None
        } else {
            Some(count.div_ceil(block))
        };
        let table_offset = blocks
            .and_then(|b| b.checked_mul(DIR_SLOT as u64))
            .and_then(|d| d.checked_add(HEADER as u64));
        let consistent = table_offset.and_then(|t| {
            count
                .checked_mul(16)
                .and_then(|n| n.checked_add(t))
                .filter(|&r| r == records_offset && r <= file_length)
                .map(|_| t)
        });
        let (Some(blocks), Some(table_offset)) = (blocks, consistent) else {
            return Err(bad("its header is inconsistent".into()));
        };
        if file_length != len {
            return Err(bad(format!(
                "it is {len} bytes but its header says {file_length} (truncated or appended to)"
            )));
        }
        let mut dir_bytes = vec![0u8; (table_offset - HEADER as u64) as usize];
        file.read_exact_at(&mut dir_bytes, HEADER as u64)
            .map_err(|e| InventoryError::io(path, "read", e))?;
        let sum = Sha256::new()
            .chain_update(&header[..48])
            .chain_update(&dir_bytes)
            .finalize();
        if sum[..] != header[48..80] {
            return Err(bad(
                "its checksum does not match (the file is damaged)".into()
            ));
        }
        let directory = dir_bytes
            .chunks_exact(DIR_SLOT)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().unwrap()),
                    c[8..].try_into().unwrap(),
                )
            })
            .collect();
        let roots = std::iter::once(Path::new(NIX_STORE))
            .chain(base)
            .chain(allowed_roots.iter().map(PathBuf::as_path))
            .map(|r| fs::canonicalize(r).unwrap_or_else(|_| r.to_owned()))
            .collect();
        Ok(Prepared {
            path: path.to_owned(),
            file,
            count,
            block,
            directory,
            blocks: (0..blocks).map(|_| OnceLock::new()).collect(),
            table_offset,
            records_offset,
            records_len: file_length - records_offset,
            base: base.map(Path::to_owned),
            roots,
            parents: Mutex::new(HashMap::new()),
        })
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    fn damaged(&self, problem: String) -> InventoryError {
        InventoryError::Prepared {
            path: self.path.clone(),
            problem,
            fix: REBUILD,
        }
    }

    /// Table block `b`: read and checked against the directory the first
    /// time, kept after.
    fn block(&self, b: usize) -> Result<&[(u64, u64)], InventoryError> {
        if let Some(slots) = self.blocks[b].get() {
            return Ok(slots);
        }
        let first = b as u64 * self.block;
        let n = self.block.min(self.count - first) as usize;
        let mut bytes = vec![0u8; 16 * n];
        self.file
            .read_exact_at(&mut bytes, self.table_offset + 16 * first)
            .map_err(|e| InventoryError::io(&self.path, "read", e))?;
        let (key, sum) = &self.directory[b];
        if Sha256::digest(&bytes)[..] != sum[..] || bytes[..8] != key.to_le_bytes() {
            return Err(self.damaged(format!(
                "its table block {b} does not match its checksum (the file is damaged)"
            )));
        }
        let slots = bytes
            .chunks_exact(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().unwrap()),
                    u64::from_le_bytes(c[8..].try_into().unwrap()),
                )
            })
            .collect();
        Ok(self.blocks[b].get_or_init(|| slots))
    }

    /// Table slot `i` (< count): (key_hash, record_offset).
    fn slot(&self, i: u64) -> Result<(u64, u64), InventoryError> {
        let b = (i / self.block) as usize;
        Ok(self.block(b)?[(i % self.block) as usize])
    }

    /// The first slot whose key is at least `h`.
    fn first_at_least(&self, h: u64) -> Result<u64, InventoryError> {
        // Blocks starting below `h`: the slot is in the last of them (past
        // its end, it is the next block's first).
        let below = self.directory.partition_point(|&(k, _)| k < h);
        let Some(b) = below.checked_sub(1) else {
            return Ok(0);
        };
        let slots = self.block(b)?;
        Ok(b as u64 * self.block + slots.partition_point(|&(k, _)| k < h) as u64)
    }

    /// The entry recorded for `method url` (normalised as [`super::index`]
    /// does), with its body checked.
    #[cfg(test)]
    pub fn get(&self, method: &str, url: &str) -> Result<Option<Entry>, InventoryError> {
        Ok(self.candidates(method, url)?.into_iter().next())
    }

    /// Every entry recorded for `method url`, in the content's order.
    pub fn candidates(&self, method: &str, url: &str) -> Result<Vec<Entry>, InventoryError> {
        let method = if method.bytes().any(|b| b.is_ascii_lowercase()) {
            std::borrow::Cow::Owned(method.to_ascii_uppercase())
        } else {
            std::borrow::Cow::Borrowed(method)
        };
        let url = normalize_url(url);
        let h = key_hash(&method, &url);
        let mut out = Vec::new();
        let mut slot = self.first_at_least(h)?;
        while slot < self.count {
            let (key, start) = self.slot(slot)?;
            if key != h {
                break;
            }
            let end = if slot + 1 < self.count {
                self.slot(slot + 1)?.1
            } else {
                self.records_len
            };
            if let Some(record) = self.record(slot, start, end, &method, &url)? {
                out.push(self.entry(record)?);
            }
            slot += 1;
        }
        Ok(out)
    }

    /// The record of table slot `slot`, at `start..end` of the records,
    /// if its key is `method url` (another key with the same hash is
    /// skipped without being decoded).
    fn record(
        &self,
        slot: u64,
        start: u64,
        end: u64,
        method: &str,
        url: &str,
    ) -> Result<Option<Record>, InventoryError> {
        let bad = |problem: String| {
            self.damaged(format!(
                "its record in table slot {slot} is unreadable: {problem}"
            ))
        };
        if start > end || end > self.records_len || end - start > MAX_RECORD {
            return Err(self.damaged(format!("its table slot {slot} points outside the file")));
        }
        // Most records are a few hundred bytes: read them without a heap
        // buffer.
        let mut stack = [0u8; 1024];
        let mut heap = Vec::new();
        let len = (end - start) as usize;
        let bytes = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap[..]
        };
        self.file
            .read_exact_at(bytes, self.records_offset + start)
            .map_err(|e| InventoryError::io(&self.path, "read", e))?;
        if record::key(bytes).map_err(bad)? != (method.as_bytes(), url.as_bytes()) {
            return Ok(None);
        }
        record::decode(bytes).map(Some).map_err(bad)
    }

    fn entry(&self, r: Record) -> Result<Entry, InventoryError> {
        let body = match r.file.as_deref() {
            None => None,
            Some(file) => {
                let (real, size) =
                    self.check(file, r.hash.as_deref(), r.size)
                        .map_err(|(problem, fix)| InventoryError::InvalidEntry {
                            path: self.path.clone(),
                            pos: None,
                            index: r.index,
                            url: r.url.clone(),
                            problem,
                            fix,
                        })?;
                Some(Body {
                    hash: r.hash,
                    size: Some(size),
                    file: Some(real),
                })
            }
        };
        Ok(Entry {
            method: r.method,
            url: r.url,
            fetch_url: r.fetch_url,
            name: r.name,
            status: r.status,
            headers: r.headers,
            request_headers: r.request_headers,
            body,
        })
    }

    /// The body file, checked as loading its source checked it: a
    /// `--store` blob (relative) by name, `blobs/sha256/<its hash>` inside
    /// the store, not resolved (serving refuses a symlink, and says so); a
    /// content file (absolute) resolved and under an allowed root. The size
    /// is the one recorded when prepared, as loading took it at start.
    ///
    /// With a recorded size the file itself is not looked at here: `prepare`
    /// checked it, and serving opens it without following a symlink, refuses
    /// anything but a regular file and checks its bytes unless it is a
    /// read-only Nix store file (`verify::open`), so a file changed since
    /// fails there, naming the file, and a lookup costs no `stat` walk over
    /// the path.
    fn check(
        &self,
        file: &str,
        hash: Option<&str>,
        size: Option<u64>,
    ) -> Result<(PathBuf, u64), content::FileProblem> {
        let (path, len) = match &self.base {
            Some(base) if Path::new(file).is_relative() => {
                let want = hash.and_then(|h| nix::to_hex(h).ok());
                let hex = file.strip_prefix("blobs/sha256/");
                if hex.is_none() || hex != want.as_deref() {
                    return Err((
                        format!("`file` {file:?} is not \"blobs/sha256/<the entry's sha256>\""),
                        REBUILD,
                    ));
                }
                let path = base.join(file);
                if let Some(size) = size {
                    return Ok((path, size));
                }
                let meta = fs::metadata(&path)
                    .map_err(|e| (format!("blob {} is missing: {e}", path.display()), REBUILD))?;
                if !meta.is_file() {
                    let problem = format!("{} is not a regular file", path.display());
                    return Err((problem, REBUILD));
                }
                (path, meta.len())
            }
            _ => self.content_file(file, size)?,
        };
        Ok((path, size.unwrap_or(len)))
    }

    /// [`content::check_file`] with the file's directory resolved once per
    /// run: a lookup then costs at most one `lstat` (none when the size was
    /// recorded, see [`Self::check`]), not a `readlink` per component of
    /// the path. The result is the real path under a root. With a recorded
    /// size that is all: a symlink, a missing file or anything but a
    /// regular file is refused when the body is opened (`verify::open`
    /// follows no symlink). Without one, the file is `lstat`ed, and
    /// anything but a regular file under a root gets the full check and
    /// its message, as loading the JSON would.
    ///
    /// The fast path works on the string (a `Path` walks its components for
    /// every `starts_with`, `parent` and hash): it takes only a plain
    /// absolute path, `/a/b/name` with no empty, `.` or `..` component;
    /// anything else gets the full check.
    fn content_file(
        &self,
        file: &str,
        size: Option<u64>,
    ) -> Result<(PathBuf, u64), content::FileProblem> {
        let (true, Some((parent, name))) = (plain_absolute(file), file.rsplit_once('/')) else {
            return content::check_file(&self.roots, file);
        };
        let parent = if parent.is_empty() { "/" } else { parent };
        let known = self.parents.lock().unwrap().get(parent).cloned();
        let real_parent = match known {
            Some(p) => p,
            None => match fs::canonicalize(parent) {
                Ok(p) => {
                    let mut parents = self.parents.lock().unwrap();
                    if parents.len() < PARENTS {
                        parents.insert(parent.to_owned(), p.clone());
                    }
                    p
                }
                Err(_) => return content::check_file(&self.roots, file),
            },
        };
        let mut real = real_parent.into_os_string();
        if !real.as_bytes().ends_with(b"/") {
            real.push("/");
        }
        real.push(name);
        let real = PathBuf::from(real);
        if !self.roots.iter().any(|r| under(&real, r)) {
            return content::check_file(&self.roots, file);
        }
        if let Some(size) = size {
            return Ok((real, size));
        }
        match fs::symlink_metadata(&real) {
            Ok(m) if m.file_type().is_file() => Ok((real, m.len())),
            _ => content::check_file(&self.roots, file),
        }
    }
}

/// `/a/b/name`: absolute, with no empty, `.` or `..` component (a byte
/// scan; `str::split` with a char pattern searched each separator anew).
fn plain_absolute(file: &str) -> bool {
    let b = file.as_bytes();
    b.first() == Some(&b'/')
        && b[1..]
            .split(|&c| c == b'/')
            .all(|c| !matches!(c, b"" | b"." | b".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    /// A GET entry whose body is `file` (hash [`SRI`], size `size`).
    fn body_entry(url: &str, file: PathBuf, size: Option<u64>) -> Entry {
        let body = Body {
            hash: Some(SRI.into()),
            size,
            file: Some(file),
        };
        Entry::get_200(url, body)
    }

    struct Fx {
        dir: tempfile::TempDir,
    }

    impl Fx {
        fn new() -> Fx {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("root")).unwrap();
            fs::write(dir.path().join("root/blob"), b"hello").unwrap();
            Fx { dir }
        }
        fn root(&self) -> Vec<PathBuf> {
            vec![self.dir.path().join("root")]
        }
        fn json(&self, n: usize) -> PathBuf {
            let blob = self.dir.path().join("root/blob");
            let list: Vec<_> = (0..n)
                .map(|i| {
                    serde_json::json!({
                        "url": format!("https://E.org:443/f/{i}"),
                        "file": if i % 2 == 0 { Some(blob.display().to_string()) } else { None },
                        "hash": if i % 2 == 0 { Some(SRI) } else { None },
                        "status_code": if i % 2 == 0 { 200 } else { 302 },
                        "headers": {"location": format!("/f/{}", i + 1)},
                    })
                })
                .collect();
            let path = self.dir.path().join("content.json");
            fs::write(&path, serde_json::to_vec(&list).unwrap()).unwrap();
            path
        }
        fn prepare(&self, n: usize) -> PathBuf {
            let out = self.dir.path().join("content.idx");
            assert_eq!(prepare(&self.json(n), &out, &self.root()).unwrap(), n);
            out
        }
    }

    /// The errors of looking up the first `n` of [`Fx::json`]'s URLs.
    fn failed_lookups(p: &Prepared, n: usize) -> Vec<String> {
        (0..n)
            .filter_map(|i| p.get("GET", &format!("https://e.org/f/{i}")).err())
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn under_is_starts_with_on_whole_components() {
        for (path, root, want) in [
            ("/nix/store/a", "/nix/store", true),
            ("/nix/store/a", "/nix/store/", true),
            ("/nix/store", "/nix/store", true),
            ("/nix/storex/a", "/nix/store", false),
            ("/nix/sto", "/nix/store", false),
            ("/a", "/", true),
        ] {
            assert_eq!(
                under(Path::new(path), Path::new(root)),
                want,
                "{path} {root}"
            );
            assert_eq!(Path::new(path).starts_with(root), want, "{path} {root}");
        }
    }

    #[test]
    fn lookups_match_loading_the_json() {
        let fx = Fx::new();
        let idx = fx.prepare(1000);
        assert!(is_prepared(&idx));
        assert!(!is_prepared(&fx.json(1)));
        let p = Prepared::open(&idx, None, &fx.root()).unwrap();
        assert_eq!(p.len(), 1000);
        let loaded = content::load(&fx.json(1000), &fx.root()).unwrap();
        for (i, want) in loaded.iter().enumerate() {
            // Spelled differently: the key is normalised on both sides.
            let got = p
                .get("get", &format!("https://e.org/f/{i}#frag"))
                .unwrap()
                .unwrap_or_else(|| panic!("entry {i} not found"));
            assert_eq!(got.url, normalize_url(&want.url));
            assert_eq!(got.status, want.status);
            assert_eq!(got.headers, want.headers);
            assert_eq!(got.body, want.body);
        }
        assert!(p.get("GET", "https://e.org/f/1000").unwrap().is_none());
        assert!(p.get("HEAD", "https://e.org/f/1").unwrap().is_none());
    }

    #[test]
    fn damage_is_refused_at_open_naming_the_file_and_the_fix() {
        let fx = Fx::new();
        let idx = fx.prepare(10);
        let good = fs::read(&idx).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 1].to_vec(), "truncated"),
            (
                {
                    let mut b = good.clone();
                    b[HEADER + 3] ^= 1; // a key hash in the table
                    b
                },
                "checksum",
            ),
            (
                {
                    let mut b = good.clone();
                    b[8] = 9;
                    b
                },
                "version 9",
            ),
            (b"[]".to_vec(), "shorter than"),
        ];
        for (bytes, want) in cases {
            fs::write(&idx, &bytes).unwrap();
            let err = Prepared::open(&idx, None, &fx.root())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.contains(&idx.display().to_string()), "{err}");
            assert!(err.contains("buildproxy prepare"), "{err}");
        }
    }

    #[test]
    fn a_damaged_table_block_fails_its_lookups_naming_the_file_and_the_fix() {
        let fx = Fx::new();
        let idx = fx.prepare(3000);
        let mut bytes = fs::read(&idx).unwrap();
        // A record offset in the second block (of three): the directory is
        // intact, so the file opens; lookups that need the block fail.
        let blocks = 3000u64.div_ceil(BLOCK) as usize;
        let at = HEADER + DIR_SLOT * blocks + 16 * (BLOCK as usize + 5) + 9;
        bytes[at] ^= 1;
        fs::write(&idx, &bytes).unwrap();
        let p = Prepared::open(&idx, None, &fx.root()).unwrap();
        let failed = failed_lookups(&p, 3000);
        assert!(
            !failed.is_empty() && failed.len() < 3000,
            "{}",
            failed.len()
        );
        for err in &failed {
            assert!(err.contains("table block 1 does not match"), "{err}");
            assert!(err.contains(&idx.display().to_string()), "{err}");
            assert!(err.contains("buildproxy prepare"), "{err}");
        }
    }

    #[test]
    fn a_damaged_record_fails_its_lookup_naming_the_file_and_the_fix() {
        let fx = Fx::new();
        let idx = fx.prepare(10);
        let mut bytes = fs::read(&idx).unwrap();
        let records = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
        // The high byte of the first record's method length: far past the
        // record's end.
        bytes[records + record::KEY_AT + 3] = 0x7f;
        fs::write(&idx, &bytes).unwrap();
        let p = Prepared::open(&idx, None, &fx.root()).unwrap();
        let failed = failed_lookups(&p, 10);
        assert_eq!(failed.len(), 1, "{failed:?}");
        let err = &failed[0];
        assert!(
            err.contains("table slot 0 is unreadable: it ends inside its method"),
            "{err}"
        );
        assert!(err.contains(&idx.display().to_string()), "{err}");
        assert!(err.contains("buildproxy prepare"), "{err}");
    }

    #[test]
    fn keys_shared_across_a_block_boundary_are_all_found() {
        // Every key once, then one key 1,500 times: its records straddle
        // the first two blocks.
        let fx = Fx::new();
        let blob = fx.dir.path().join("root/blob");
        let entry = |url: &str| {
            let mut e = Entry::for_test("GET", url, 200, Some(SRI));
            e.body.as_mut().unwrap().file = Some(blob.clone());
            e
        };
        let mut entries: Vec<Entry> = (0..600)
            .map(|i| entry(&format!("https://e.org/u/{i}")))
            .collect();
        for i in 0..1500 {
            let mut e = entry("https://e.org/same");
            e.request_headers.insert("accept".into(), format!("x/{i}"));
            entries.push(e);
        }
        let mut bytes = Vec::new();
        write(&mut bytes, &entries, None).unwrap();
        let idx = fx.dir.path().join("same.idx");
        fs::write(&idx, &bytes).unwrap();
        let p = Prepared::open(&idx, None, &fx.root()).unwrap();
        let all = p.candidates("GET", "https://e.org/same").unwrap();
        assert_eq!(all.len(), 1500);
        // In the content's order.
        assert_eq!(all[0].request_headers["accept"], "x/0");
        assert_eq!(all[1499].request_headers["accept"], "x/1499");
        for i in 0..600 {
            assert_eq!(
                p.candidates("GET", &format!("https://e.org/u/{i}"))
                    .unwrap()
                    .len(),
                1
            );
        }
        assert!(p.get("GET", "https://e.org/none").unwrap().is_none());
    }

    #[test]
    fn a_body_out_of_the_roots_fails_the_lookup_naming_the_entry() {
        let fx = Fx::new();
        let idx = fx.prepare(4);
        // Opened without the root the body lives in: refused.
        let p = Prepared::open(&idx, None, &[]).unwrap();
        let err = p.get("GET", "https://e.org/f/2").unwrap_err().to_string();
        assert!(err.contains("entry [2] (https://e.org/f/2)"), "{err}");
        assert!(err.contains("outside the allowed roots"), "{err}");
        assert!(err.contains("--allow-root"), "{err}");
        // Status-only entries need no file.
        assert_eq!(
            p.get("GET", "https://e.org/f/1").unwrap().unwrap().status,
            302
        );
        // A body replaced by a symlink out of the root after it was
        // prepared: the lookup does not look at the file (its size was
        // recorded); serving opens it without following the link, and
        // refuses it.
        let blob = fx.dir.path().join("root/blob");
        fs::remove_file(&blob).unwrap();
        fs::write(fx.dir.path().join("elsewhere"), b"hello").unwrap();
        std::os::unix::fs::symlink(fx.dir.path().join("elsewhere"), &blob).unwrap();
        let p = Prepared::open(&idx, None, &fx.root()).unwrap();
        let body = p
            .get("GET", "https://e.org/f/0")
            .unwrap()
            .unwrap()
            .body
            .unwrap();
        let file = body.file.unwrap();
        let err = super::super::verify::open(&file, body.hash.as_deref())
            .err()
            .expect("a symlinked body is not opened")
            .to_string();
        assert!(err.contains("symlink"), "{err}");
        // Deleted after it was prepared: refused where it is opened, naming
        // the file and what to do.
        fs::remove_file(&blob).unwrap();
        let err = super::super::verify::open(&file, body.hash.as_deref())
            .err()
            .expect("a deleted body is not opened")
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("the recorded body is gone"), "{err}");
        // Without a recorded size the lookup looks at the file, as loading
        // the JSON does, and names the entry.
        let mut rec = Vec::new();
        let entry = body_entry("https://e.org/nosize", blob.clone(), None);
        write(&mut rec, &[entry], None).unwrap();
        let nosize = fx.dir.path().join("nosize.idx");
        fs::write(&nosize, &rec).unwrap();
        let p = Prepared::open(&nosize, None, &fx.root()).unwrap();
        let err = p
            .get("GET", "https://e.org/nosize")
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry [0] (https://e.org/nosize)"), "{err}");
        assert!(err.contains("cannot be opened"), "{err}");
    }

    #[test]
    fn bad_content_fails_prepare_naming_the_entry() {
        let fx = Fx::new();
        let json = fx.dir.path().join("bad.json");
        fs::write(
            &json,
            r#"[{"url": "u", "file": null}, {"url": "v", "file": "/etc/passwd"}]"#,
        )
        .unwrap();
        let err = prepare(&json, &fx.dir.path().join("x.idx"), &fx.root())
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry [1] (v)"), "{err}");
        assert!(err.contains("outside the allowed roots"), "{err}");
    }

    #[test]
    fn store_blobs_resolve_under_the_base_by_their_hash() {
        let fx = Fx::new();
        let base = fs::canonicalize(fx.dir.path().join("root")).unwrap();
        let hex = nix::to_hex(SRI).unwrap();
        let blob = base.join("blobs/sha256").join(&hex);
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, b"hello").unwrap();
        let entry = |url: &str, file: PathBuf| body_entry(url, file, Some(5));
        let entries = vec![
            entry("http://e.org/a", blob.clone()),
            // Another name than its hash's: refused when looked up.
            entry("http://e.org/b", base.join("root-blob")),
        ];
        let mut bytes = Vec::new();
        write(&mut bytes, &entries, Some(&base)).unwrap();
        // Relative to the base, so the store can move.
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(&format!("blobs/sha256/{hex}")), "{text}");
        assert!(!text.contains(base.to_str().unwrap()), "{text}");
        let idx = fx.dir.path().join("rel.idx");
        fs::write(&idx, &bytes).unwrap();
        let p = Prepared::open(&idx, Some(&base), &[]).unwrap();
        let got = p.get("GET", "http://e.org/a").unwrap().unwrap();
        assert_eq!(got.body.unwrap().file, Some(blob));
        let err = p.get("GET", "http://e.org/b").unwrap_err().to_string();
        assert!(
            err.contains("is not \"blobs/sha256/<the entry's sha256>\""),
            "{err}"
        );
    }
}
