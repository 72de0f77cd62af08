//! The prepared content index: replay's input in a form it can open in
//! constant time, whatever the number of entries.
//!
//! Loading the content JSON parses every entry, resolves every `file` and
//! builds a hash map: 1.2 s and 186 MB at 100,000 entries, paid by every
//! build before its first download. All of that depends only on the
//! content, so it is done once, where the result can be cached: by
//! `buildproxy prepare` in the Nix derivation that turns the JSON into this
//! file (see nix/prepareContent.nix), and by `capture --store` beside the
//! store's index. Replay then reads a fixed header and the hash table,
//! checks them against the header's checksum, and reads one record per
//! request.
//!
//! Layout, integers little-endian:
//!
//! ```text
//! 0   magic "BPINDEX\0"
//! 8   version u32, flags u32 (0)
//! 16  count u64              number of records
//! 24  records_offset u64     = 72 + 16 × count
//! 32  file_length u64        the whole file, to catch truncation
//! 40  sha256 [32]            of bytes 0..40 and the table
//! 72  table: count × (key_hash u64, record_offset u64), sorted
//!     records: one JSON object and `\n` each, in table order
//! ```
//!
//! `key_hash` is FNV-1a of the match key, `METHOD \0 normalised-URL`.
//! Records with the same key are adjacent, so match-key fields beyond
//! method and URL (request headers a response varies on) select among the
//! candidates [`Prepared::candidates`] returns without changing the format.
//! Records are JSON so fields can be added the way the content JSON grows.
//!
//! Bodies are checked when prepared (every `file` a regular file under an
//! allowed root, as [`super::content::load`] checks) and again, for the one
//! entry asked for, when it is looked up, so a prepared file from elsewhere
//! can name no file outside the allowed roots.

use super::content::{self, NIX_STORE};
use super::index::normalize_url;
use super::{Body, Entry, InventoryError, nix};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BPINDEX\0";
const VERSION: u32 = 1;
const HEADER: usize = 72;
/// No record is near this; a larger one means a damaged table.
const MAX_RECORD: u64 = 16 << 20;

const REBUILD: &str = "prepare it again from the content JSON (`buildproxy prepare CONTENT.json --output FILE`, \
     or rebuild the Nix derivation that made it)";

/// One entry as stored in a prepared file.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// Position in the content it was prepared from, for messages.
    index: usize,
    method: String,
    /// Normalised (see [`normalize_url`]).
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetch_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    /// The request headers that selected this representation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    request_headers: BTreeMap<String, String>,
    /// Absolute, or relative to the directory given to [`Prepared::open`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
}

/// Whether `path` starts like a prepared file (replay's `--content` takes
/// either this or the content JSON).
pub fn is_prepared(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == MAGIC)
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
        let mut bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        bytes.push(b'\n');
        records.push((key_hash(&record.method, &record.url), bytes));
    }
    // Stable: records with one key keep the content's order.
    records.sort_by_key(|(h, _)| *h);
    let count = records.len() as u64;
    let records_offset = HEADER as u64 + 16 * count;
    let mut table = Vec::with_capacity(16 * records.len());
    let mut offset = 0u64;
    for (h, bytes) in &records {
        table.extend_from_slice(&h.to_le_bytes());
        table.extend_from_slice(&offset.to_le_bytes());
        offset += bytes.len() as u64;
    }
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&records_offset.to_le_bytes());
    header.extend_from_slice(&(records_offset + offset).to_le_bytes());
    let sum = Sha256::new()
        .chain_update(&header)
        .chain_update(&table)
        .finalize();
    header.extend_from_slice(&sum);
    out.write_all(&header)?;
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

/// An opened prepared file: its table in memory (16 bytes per entry), its
/// records on disk.
#[derive(Debug)]
pub struct Prepared {
    path: PathBuf,
    file: File,
    table: Vec<(u64, u64)>,
    records_offset: u64,
    records_len: u64,
    /// Relative `file`s are under this directory.
    base: Option<PathBuf>,
    roots: Vec<PathBuf>,
}

impl Prepared {
    /// Opens `path`, checking its version, length and checksum: time and
    /// memory grow with the table only (16 bytes an entry), not with the
    /// entries' contents, and no body is touched. Bodies must be regular
    /// files under `/nix/store`, `base` (for relative paths) or one of
    /// `allowed_roots`; that is checked per lookup.
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
        let (count, records_offset, file_length) = (u64_at(16), u64_at(24), u64_at(32));
        if count
            .checked_mul(16)
            .and_then(|t| t.checked_add(HEADER as u64))
            != Some(records_offset)
            || records_offset > file_length
        {
            return Err(bad("its header is inconsistent".into()));
        }
        if file_length != len {
            return Err(bad(format!(
                "it is {len} bytes but its header says {file_length} (truncated or appended to)"
            )));
        }
        let mut table_bytes = vec![0u8; (records_offset - HEADER as u64) as usize];
        file.read_exact_at(&mut table_bytes, HEADER as u64)
            .map_err(|e| InventoryError::io(path, "read", e))?;
        let sum = Sha256::new()
            .chain_update(&header[..40])
            .chain_update(&table_bytes)
            .finalize();
        if sum[..] != header[40..72] {
            return Err(bad(
                "its checksum does not match (the file is damaged)".into()
            ));
        }
        let table = table_bytes
            .chunks_exact(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().unwrap()),
                    u64::from_le_bytes(c[8..].try_into().unwrap()),
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
            table,
            records_offset,
            records_len: file_length - records_offset,
            base: base.map(Path::to_owned),
            roots,
        })
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The entry recorded for `method url` (normalised as [`super::index`]
    /// does), with its body checked.
    #[cfg(test)]
    pub fn get(&self, method: &str, url: &str) -> Result<Option<Entry>, InventoryError> {
        Ok(self.candidates(method, url)?.into_iter().next())
    }

    /// Every entry recorded for `method url`, in the content's order.
    pub fn candidates(&self, method: &str, url: &str) -> Result<Vec<Entry>, InventoryError> {
        let method = method.to_ascii_uppercase();
        let url = normalize_url(url);
        let h = key_hash(&method, &url);
        let start = self.table.partition_point(|&(k, _)| k < h);
        let mut out = Vec::new();
        for slot in start..self.table.len() {
            if self.table[slot].0 != h {
                break;
            }
            let record = self.record(slot)?;
            if record.method == method && record.url == url {
                out.push(self.entry(record)?);
            }
        }
        Ok(out)
    }

    fn record(&self, slot: usize) -> Result<Record, InventoryError> {
        let start = self.table[slot].1;
        let end = self
            .table
            .get(slot + 1)
            .map_or(self.records_len, |&(_, o)| o);
        let bad = |problem: String| InventoryError::Prepared {
            path: self.path.clone(),
            problem,
            fix: REBUILD,
        };
        if start > end || end > self.records_len || end - start > MAX_RECORD {
            return Err(bad(format!(
                "its table slot {slot} points outside the file"
            )));
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        self.file
            .read_exact_at(&mut bytes, self.records_offset + start)
            .map_err(|e| InventoryError::io(&self.path, "read", e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "its record in table slot {slot} is unreadable: {e}"
            ))
        })
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
    /// is the one recorded when prepared, as loading took it at start: a
    /// file changed since is caught while it is served.
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
                let meta = fs::metadata(&path)
                    .map_err(|e| (format!("blob {} is missing: {e}", path.display()), REBUILD))?;
                if !meta.is_file() {
                    let problem = format!("{} is not a regular file", path.display());
                    return Err((problem, REBUILD));
                }
                (path, meta.len())
            }
            _ => content::check_file(&self.roots, file)?,
        };
        Ok((path, size.unwrap_or(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

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
        // A body replaced by a symlink out of the root: refused too.
        let blob = fx.dir.path().join("root/blob");
        fs::remove_file(&blob).unwrap();
        fs::write(fx.dir.path().join("elsewhere"), b"hello").unwrap();
        std::os::unix::fs::symlink(fx.dir.path().join("elsewhere"), &blob).unwrap();
        let p = Prepared::open(&idx, None, &fx.root()).unwrap();
        let err = p.get("GET", "https://e.org/f/0").unwrap_err().to_string();
        assert!(err.contains("outside the allowed roots"), "{err}");
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
        let entry = |url: &str, file: PathBuf| Entry {
            method: "GET".into(),
            url: url.into(),
            fetch_url: None,
            name: None,
            status: 200,
            headers: BTreeMap::new(),
            request_headers: BTreeMap::new(),
            body: Some(Body {
                hash: Some(SRI.into()),
                size: Some(5),
                file: Some(file),
            }),
        };
        let entries = vec![
            entry("http://e.org/a", blob.clone()),
            // Another name than its hash's: refused when looked up.
            entry("http://e.org/b", base.join("root-blob")),
        ];
        let mut bytes = Vec::new();
        write(&mut bytes, &entries, Some(&base)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(&format!(r#""file":"blobs/sha256/{hex}""#)),
            "{text}"
        );
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
