//! The capture journal: every recorded entry, appended and fsynced as soon as
//! its exchange completes, next to the output file. If buildproxy is killed
//! (SIGKILL, power loss) before it writes `proxy_content.nix`, the next
//! `buildproxy capture` (or `capture --recover`) writes the file from it, so
//! nothing that completed is lost.
//!
//! One JSON object a line. A crash can leave the last line cut short; the
//! reader ignores such a tail and nothing else.
//!
//! Writes happen on a thread of their own: the proxy hands over an entry and
//! goes on; the thread writes whatever has queued up, then fsyncs once.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::{Body, Entry, InventoryError};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    url: String,
    method: String,
    status_code: u16,
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    request_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetch_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
    has_body: bool,
}

impl From<&Entry> for Record {
    fn from(e: &Entry) -> Self {
        Self {
            url: e.url.clone(),
            method: e.method.clone(),
            status_code: e.status,
            headers: e.headers.clone(),
            request_headers: e.request_headers.clone(),
            fetch_url: e.fetch_url.clone(),
            name: e.name.clone(),
            hash: e.body.as_ref().and_then(|b| b.hash.clone()),
            size: e.body.as_ref().and_then(|b| b.size),
            file: e.body.as_ref().and_then(|b| b.file.clone()),
            has_body: e.body.is_some(),
        }
    }
}

impl From<Record> for Entry {
    fn from(r: Record) -> Self {
        Self {
            method: r.method,
            url: r.url,
            fetch_url: r.fetch_url,
            name: r.name,
            status: r.status_code,
            headers: r.headers,
            request_headers: r.request_headers,
            body: r.has_body.then_some(Body {
                hash: r.hash,
                size: r.size,
                file: r.file,
            }),
        }
    }
}

/// Where the journal of an output file lives.
pub fn path_for(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    output.with_file_name(name)
}

/// Reads a journal left by an earlier run; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Vec<Entry>>, InventoryError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InventoryError::io(path, "read the capture journal", e)),
    };
    let mut entries = Vec::new();
    let mut lines = BufReader::new(file).lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let line = line.map_err(|e| InventoryError::io(path, "read the capture journal", e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(r) => entries.push(r.into()),
            // The last line may have been cut short by a crash: what it
            // described never completed, so it is not lost data.
            Err(_) if lines.peek().is_none() => break,
            Err(e) => {
                return Err(InventoryError::Json {
                    path: path.to_path_buf(),
                    line: i + 1,
                    column: e.column(),
                    message: format!(
                        "{e}; the journal is damaged: move it away to start over, \
                         or fix or delete line {}",
                        i + 1
                    ),
                });
            }
        }
    }
    Ok(Some(entries))
}

/// Appends entries from any thread; a writer thread makes them durable.
pub struct Journal {
    tx: Option<mpsc::Sender<Record>>,
    writer: Option<JoinHandle<Result<(), String>>>,
    path: PathBuf,
}

impl Journal {
    /// Opens (or continues) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, InventoryError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| InventoryError::io(path, "open the capture journal", e))?;
        let (tx, rx) = mpsc::channel::<Record>();
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("capture-journal".into())
            .spawn(move || write_loop(file, rx).map_err(|e| format!("{shown}: {e}")))
            .map_err(|e| InventoryError::io(path, "start the journal writer", e))?;
        Ok(Self {
            tx: Some(tx),
            writer: Some(writer),
            path: path.to_path_buf(),
        })
    }

    pub fn append(&self, entry: &Entry) {
        if let Some(tx) = &self.tx {
            // A send fails only once the writer stopped on an error, which
            // `close` reports.
            let _ = tx.send(entry.into());
        }
    }

    /// Waits until everything appended is on disk.
    pub fn close(mut self) -> Result<(), String> {
        self.shutdown()
    }

    /// Closes and deletes it: its entries are in the output file now.
    pub fn remove(mut self) -> Result<(), String> {
        self.shutdown()?;
        std::fs::remove_file(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    fn shutdown(&mut self) -> Result<(), String> {
        drop(self.tx.take());
        match self.writer.take() {
            Some(w) => w
                .join()
                .map_err(|_| "the journal writer panicked".to_string())?,
            None => Ok(()),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn write_loop(mut file: File, rx: mpsc::Receiver<Record>) -> io::Result<()> {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut buf = Vec::new();
        for r in &batch {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, body: bool) -> Entry {
        Entry {
            method: "GET".into(),
            url: url.into(),
            fetch_url: None,
            name: None,
            status: if body { 200 } else { 404 },
            headers: BTreeMap::from([("content-type".into(), "text/plain".into())]),
            request_headers: BTreeMap::new(),
            body: body.then(|| Body {
                hash: Some("sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=".into()),
                size: Some(5),
                file: None,
            }),
        }
    }

    #[test]
    fn what_was_appended_reads_back_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.nix.journal");
        let j = Journal::open(&path).unwrap();
        let (a, b) = (
            entry("https://e.org/a", true),
            entry("https://e.org/b", false),
        );
        j.append(&a);
        j.append(&b);
        j.close().unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), vec![a, b]);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_ignored_but_damage_elsewhere_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let j = Journal::open(&path).unwrap();
        j.append(&entry("https://e.org/a", true));
        j.close().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"url":"https://e.org/b","met"#).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().len(), 1);

        std::fs::write(&path, "garbage\n{\"url\":\"x\"}\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("journal"), "{err}");
    }

    #[test]
    fn no_journal_is_none_and_the_path_sits_next_to_the_output() {
        assert_eq!(
            path_for(Path::new("/x/proxy_content.nix")),
            Path::new("/x/proxy_content.nix.journal")
        );
        assert!(read(Path::new("/nonexistent/j")).unwrap().is_none());
    }
}
