//! A recorded body served from its file: verified (`inventory::verify`),
//! streamed, and unable to starve other clients.
//!
//! The reader is an async task that borrows a blocking-pool thread only for
//! each chunk's read (and hash), never while it waits for a slow client: a
//! client that stops reading holds a few chunks of memory, not a thread. At
//! most [`READERS`] reads run at once, so a crowd of downloads cannot take
//! the whole blocking pool; a client that takes nothing for
//! `--idle-timeout-secs` is given up on.
//!
//! Verification hashes the file from its first byte (a Range request reads
//! the whole file, serving only its part), and holds back the last chunk
//! until the hash is known: a mismatch ends the transfer with an error, so
//! the client never sees a clean end of wrong bytes.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, mpsc};

use super::body::{self, ProxyBody};
use crate::catalog::Catalog;
use crate::inventory::verify::{self, Hasher, Opened, VerifyError};

/// What the client is sent at a time: large enough that TLS records and
/// wake-ups are few.
const CHUNK: usize = 256 << 10;
/// What one hand-off to the blocking pool reads: a few chunks, so the
/// thread hop (two context switches) is paid once per MiB, not per chunk.
const READ: usize = 4 * CHUNK;
/// Bodies at most this big (as read, whole file when verifying) are read
/// at once on the runtime: a thread hand-off costs more than the read.
const SMALL: u64 = 256 << 10;
/// File reads in flight at once, across all clients: a fraction of the
/// blocking pool (512 threads), enough that a crowd's reads queue briefly.
pub const READERS: usize = 64;
/// Chunks queued for the client. A client that stops reading holds these,
/// the rest of one read, and the chunk being written: about 1.5 MiB.
const DEPTH: usize = 2;

static READS: Semaphore = Semaphore::const_new(READERS);

/// Where a failure mid-transfer is reported: the run's error list (printed
/// at exit) and stderr at once.
pub struct Report {
    pub catalog: Arc<Catalog>,
    /// `METHOD URL`.
    pub what: String,
    /// How long a client may take nothing.
    pub idle: Duration,
}

impl Report {
    fn failed(&self, why: &str) {
        eprintln!("buildproxy: {}: {why}", self.what);
        self.catalog.record_error(format!("{}: {why}", self.what));
    }
}

/// `len` bytes from `start` of a body of `size` bytes whose file is `path`
/// and SRI hash `hash`. `Err` before anything was sent: the caller answers
/// 502 with it. `report` is made only for a body that streams: a small one
/// is read whole here, and cannot fail later.
pub fn serve(
    path: &std::path::Path,
    hash: Option<&str>,
    size: u64,
    start: u64,
    len: u64,
    report: impl FnOnce() -> Report,
) -> Result<ProxyBody, String> {
    let opened = verify::open(path, hash).map_err(|e| e.to_string())?;
    let verifying = opened.expect.is_some();
    let read_len = if verifying { size } else { len };
    if read_len <= SMALL {
        return small(opened, size, start, len).map_err(|e| e.to_string());
    }
    let (tx, body) = body::channel_of(Some(len), DEPTH);
    tokio::spawn(stream(opened, size, start, len, tx, report()));
    Ok(body.boxed())
}

fn small(o: Opened, size: u64, start: u64, len: u64) -> Result<ProxyBody, VerifyError> {
    // `pread`: one call, no `lseek`; into memory not zeroed first (a
    // zeroed buffer was a `calloc` and a `memset` per request).
    let read = |f: &std::fs::File, from: u64, n: u64| -> Result<Vec<u8>, VerifyError> {
        let mut buf = Vec::with_capacity(n as usize);
        let mut got = 0;
        while got < n as usize {
            match pread_uninit(f, &mut buf.spare_capacity_mut()[got..], from + got as u64) {
                Ok(0) => {
                    return Err(VerifyError::Short {
                        path: o.path.clone(),
                        size,
                    });
                }
                Ok(k) => {
                    got += k;
                    // SAFETY: `pread` initialised these `k` bytes.
                    unsafe { buf.set_len(got) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(VerifyError::Read {
                        path: o.path.clone(),
                        err,
                    });
                }
            }
        }
        Ok(buf)
    };
    match o.expect {
        None => Ok(body::full(read(&o.file, start, len)?)),
        Some(expect) => {
            let all = read(&o.file, 0, size)?;
            let mut h = Hasher::new(expect);
            h.update(&all);
            h.check(&o.path)?;
            Ok(body::full(
                Bytes::from(all).slice(start as usize..(start + len) as usize),
            ))
        }
    }
}

/// `pread(2)` into memory that need not be initialised; returns the bytes
/// read, which are then initialised.
fn pread_uninit(
    f: &std::fs::File,
    buf: &mut [std::mem::MaybeUninit<u8>],
    offset: u64,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which
    // is valid for writes of that length.
    let n = unsafe {
        libc::pread(
            f.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            offset as libc::off_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What a blocking read borrows and gives back.
struct Reader {
    file: std::fs::File,
    hasher: Option<Hasher>,
    path: PathBuf,
}

async fn stream(
    o: Opened,
    size: u64,
    start: u64,
    len: u64,
    tx: mpsc::Sender<io::Result<Bytes>>,
    report: Report,
) {
    let verifying = o.expect.is_some();
    let (mut pos, end) = if verifying {
        (0, size)
    } else {
        (start, start + len)
    };
    let mut reader = Some(Reader {
        file: o.file,
        hasher: o.expect.map(Hasher::new),
        path: o.path,
    });
    let fail = |why: String| {
        report.failed(&why);
        io::Error::other(why)
    };
    if pos > 0
        && let Some(r) = &mut reader
        && let Err(e) = r.file.seek(SeekFrom::Start(pos))
    {
        let _ = tx
            .send(Err(fail(format!("{}: {e}", r.path.display()))))
            .await;
        return;
    }
    // The last chunk of the client's range, sent once the hash is known.
    let mut pending: Option<Bytes> = None;
    while pos < end {
        let want = READ.min((end - pos) as usize);
        let Ok(permit) = READS.acquire().await else {
            return;
        };
        let mut r = reader
            .take()
            .expect("the reader comes back after each read");
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(want);
            let got = read_up_to(&mut r.file, &mut buf);
            if let (Ok(n), Some(h)) = (&got, &mut r.hasher) {
                h.update(&buf[..*n]);
            }
            (
                r,
                got.map(|n| {
                    buf.truncate(n);
                    buf.freeze()
                }),
            )
        })
        .await;
        drop(permit);
        let Ok((r, got)) = read else {
            return;
        };
        let chunk = match got {
            Ok(c) if c.is_empty() => {
                let why = VerifyError::Short {
                    path: r.path.clone(),
                    size,
                };
                let _ = tx.send(Err(fail(why.to_string()))).await;
                return;
            }
            Ok(c) => c,
            Err(err) => {
                let why = VerifyError::Read {
                    path: r.path.clone(),
                    err,
                };
                let _ = tx.send(Err(fail(why.to_string()))).await;
                return;
            }
        };
        reader = Some(r);
        // The part of this chunk inside the client's range.
        let (c0, c1) = (pos, pos + chunk.len() as u64);
        pos = c1;
        let (s, e) = (c0.max(start), c1.min(start + len));
        if s >= e {
            continue;
        }
        let mut part = chunk.slice((s - c0) as usize..(e - c0) as usize);
        while !part.is_empty() {
            let piece = part.split_to(CHUNK.min(part.len()));
            if let Some(prev) = pending.replace(piece)
                && !send(&tx, prev, &report).await
            {
                return;
            }
        }
    }
    let r = reader.expect("the reader came back");
    if let Some(h) = r.hasher
        && let Err(e) = h.check(&r.path)
    {
        let _ = tx.send(Err(fail(e.to_string()))).await;
        return;
    }
    if let Some(last) = pending {
        send(&tx, last, &report).await;
    }
}

/// Fills `buf` as far as the file goes: short only at its end.
fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hands a chunk to the client's side; false when the client left or took
/// nothing for the idle time.
async fn send(tx: &mpsc::Sender<io::Result<Bytes>>, chunk: Bytes, report: &Report) -> bool {
    match tokio::time::timeout(report.idle, tx.send(Ok(chunk))).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::debug!(
                "{}: the client took nothing for {} s (--idle-timeout-secs): given up",
                report.what,
                report.idle.as_secs_f64()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            catalog: Arc::new(Catalog::default()),
            what: "GET https://e.org/f".into(),
            idle: Duration::from_secs(5),
        }
    }

    fn sri(bytes: &[u8]) -> String {
        use sha2::Digest;
        body::sri(&sha2::Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn ranges_and_whole_bodies_stream_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let hash = sri(&data);
        let size = data.len() as u64;
        for (start, len) in [(0, size), (1000, 600_000), (size - 10, 10)] {
            let b = serve(&path, Some(&hash), size, start, len, report).unwrap();
            let got = b.collect().await.unwrap().to_bytes();
            assert_eq!(&got[..], &data[start as usize..(start + len) as usize]);
        }
    }

    #[tokio::test]
    async fn a_changed_file_ends_the_body_with_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = vec![7u8; 3 << 20];
        let hash = sri(&data);
        let mut other = data.clone();
        other[2 << 20] = 8;
        std::fs::write(&path, &other).unwrap();
        let r = report();
        let catalog = r.catalog.clone();
        let b = serve(
            &path,
            Some(&hash),
            data.len() as u64,
            0,
            data.len() as u64,
            || r,
        )
        .unwrap();
        let err = b.collect().await.err().unwrap().to_string();
        assert!(err.contains("do not match the recorded hash"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert_eq!(catalog.errors().len(), 1);
        // Small bodies: refused before anything is sent.
        std::fs::write(&path, b"jello").unwrap();
        let err = serve(&path, Some(&sri(b"hello")), 5, 0, 5, report)
            .err()
            .unwrap();
        assert!(err.contains("do not match"), "{err}");
    }
}
