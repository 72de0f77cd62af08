//! `buildproxy check FILE`: says, entry by entry, what will go wrong when a
//! `proxy_content.nix` (ours or nix-buildproxy's), a content JSON or a
//! `--store` directory is used, with the fix; the exit status says whether
//! it is sound.
//!
//! The rules live in [`crate::inventory::check`]; this module reads the
//! file without stopping at the first bad entry, checks what needs the
//! disk (a body's file exists and hashes to its recorded hash), and prints.
//! It never touches the network.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::cli::CheckArgs;
use crate::inventory::check::{Finding, Severity, Subject, check};
use crate::inventory::content;
use crate::inventory::{InventoryError, nix};

/// Exit status when the file has errors (2 is "could not check at all").
const UNSOUND: i32 = 1;

pub fn run(args: CheckArgs) -> Result<i32> {
    let (target, is_store) = match (&args.file, &args.store) {
        (_, Some(dir)) => (dir.clone(), true),
        (Some(f), None) => (f.clone(), f.is_dir()),
        (None, None) => unreachable!("clap requires FILE or --store"),
    };
    let read = if is_store {
        read_json(&target.join("index.json"), Some(&target))?
    } else if target.extension().is_some_and(|x| x == "json") {
        read_json(&target, None)?
    } else {
        read_nix(&target)?
    };
    let mut findings = read.unreadable;
    findings.extend(check(&read.subjects));
    findings.sort_by_key(|f| (f.index, f.severity));
    let shown = if is_store {
        target.join("index.json")
    } else {
        target.clone()
    };
    print!("{}", report(&shown, read.total, &findings));
    let sound = !findings.iter().any(|f| f.severity == Severity::Error);
    Ok(if sound { 0 } else { UNSOUND })
}

/// The findings as text: one paragraph per finding, then a verdict.
fn report(path: &Path, total: usize, findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let request = if f.method.is_empty() {
            f.url.clone()
        } else {
            format!("{} {}", f.method, f.url)
        };
        out.push_str(&format!(
            "{}: entry [{}] ({request}): {level}: {}\n  fix: {}\n",
            path.display(),
            f.index,
            f.problem,
            f.fix
        ));
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    out.push_str(&format!(
        "{}: {}, {}, {}: {}\n",
        path.display(),
        plural(total, "entry", "entries"),
        plural(errors, "error", "errors"),
        plural(warnings, "warning", "warnings"),
        if errors == 0 {
            "sound"
        } else {
            "not sound: fix the errors above"
        }
    ));
    out
}

/// What a file held: the entries that could be read, and a finding for
/// each one that could not.
struct Contents {
    total: usize,
    subjects: Vec<Subject>,
    unreadable: Vec<Finding>,
}

fn read_nix(path: &Path) -> Result<Contents> {
    let src = std::fs::read_to_string(path).map_err(|e| InventoryError::io(path, "read", e))?;
    let each = nix::parse_each(path, &src)?;
    let mut read = Contents {
        total: each.len(),
        subjects: Vec::new(),
        unreadable: Vec::new(),
    };
    for (index, r) in each.into_iter().enumerate() {
        match r {
            Ok(s) => read.subjects.push(Subject {
                index,
                entry: s.entry,
                fetched_by_nix: true,
                names_itself: s.names_itself,
            }),
            Err(e) => read.unreadable.push(unreadable(index, e)),
        }
    }
    Ok(read)
}

/// A content JSON (files are Nix store paths) or, with `store`, a store's
/// index (files are `blobs/sha256/<hex>` under it). Every body's file must
/// exist and hash to the entry's hash.
fn read_json(path: &Path, store: Option<&Path>) -> Result<Contents> {
    let raws = content::read_raw(path)?;
    let mut hashed: HashMap<PathBuf, Result<String, String>> = HashMap::new();
    let mut read = Contents {
        total: raws.len(),
        subjects: Vec::new(),
        unreadable: Vec::new(),
    };
    for (index, raw) in raws.into_iter().enumerate() {
        let url = raw.url.clone();
        let method = raw.method.to_ascii_uppercase();
        let resolve = |file: &str,
                       hash: Option<&str>|
         -> Result<(PathBuf, u64), (String, &'static str)> {
            let refetch = match store {
                Some(_) => "capture into the store again, or restore the blob from a backup",
                None => {
                    "build the content file again on this machine (mkContent), so Nix fetches the bodies"
                }
            };
            let real = match store {
                Some(dir) => blob_path(dir, file, hash)?,
                None => PathBuf::from(file),
            };
            let meta = std::fs::metadata(&real).map_err(|e| {
                (
                    format!("its body {} cannot be read: {e}", real.display()),
                    refetch,
                )
            })?;
            if !meta.is_file() {
                return Err((
                    format!("its body {} is not a regular file", real.display()),
                    refetch,
                ));
            }
            Ok((real, meta.len()))
        };
        match content::to_entries(path, vec![raw], resolve) {
            Ok(mut entries) => {
                let entry = entries.remove(0);
                if let Some(body) = &entry.body
                    && let (Some(want), Some(file)) = (&body.hash, &body.file)
                {
                    let got = hashed
                        .entry(file.clone())
                        .or_insert_with(|| sha256_file(file).map_err(|e| e.to_string()));
                    let problem = match got {
                        Ok(got) if got == want => None,
                        Ok(got) => Some(format!(
                            "its body {} hashes to {got}, not the recorded {want}: it was changed \
                             or corrupted, and replay would serve wrong bytes",
                            file.display()
                        )),
                        Err(e) => Some(format!("its body {} cannot be read: {e}", file.display())),
                    };
                    if let Some(problem) = problem {
                        read.unreadable.push(Finding {
                            index,
                            method: method.clone(),
                            url: url.clone(),
                            severity: Severity::Error,
                            problem,
                            fix: "delete the file and fetch or capture it again".into(),
                        });
                    }
                }
                read.subjects.push(Subject {
                    index,
                    entry,
                    fetched_by_nix: false,
                    names_itself: true,
                });
            }
            Err(e) => read.unreadable.push(unreadable(index, e)),
        }
    }
    Ok(read)
}

/// A store index's `file` must be exactly `blobs/sha256/<hex of its hash>`.
fn blob_path(
    dir: &Path,
    file: &str,
    hash: Option<&str>,
) -> Result<PathBuf, (String, &'static str)> {
    let fix = "capture into the store again, or restore the blob from a backup";
    let hex = file
        .strip_prefix("blobs/sha256/")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            (
                format!("`file` {file:?} is not \"blobs/sha256/<sha256 hex>\""),
                fix,
            )
        })?;
    match hash.map(nix::to_hex) {
        Some(Ok(h)) if h == hex => Ok(dir.join(file)),
        _ => Err((
            format!("`file` {file:?} does not match the entry's hash"),
            fix,
        )),
    }
}

/// An entry the reader rejected, as a finding with its position and fix.
fn unreadable(index: usize, e: InventoryError) -> Finding {
    let (url, problem, fix) = match e {
        InventoryError::InvalidEntry {
            url,
            problem,
            fix,
            pos,
            ..
        } => {
            let at = pos
                .map(|(l, c)| format!(" (line {l}, column {c})"))
                .unwrap_or_default();
            (url, format!("{problem}{at}"), fix.to_string())
        }
        other => ("?".into(), other.to_string(), "fix the entry".into()),
    };
    Finding {
        index,
        method: String::new(),
        url,
        severity: Severity::Error,
        problem: format!("cannot be read: {problem}"),
        fix,
    }
}

/// The SRI SHA-256 of a file, streamed.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(nix::sri(&hasher.finalize()))
}
