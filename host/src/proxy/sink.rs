//! Bodies on their way into the content store (`--store`): the one path by
//! which a body becomes a blob, whether it streamed (`body::pump`) or a
//! policy had it buffered (`exchange::buffered`).
//!
//! Chunks are gathered (shared, not copied) into batches of
//! [`BATCH`] bytes, and each batch is written on the blocking pool while
//! the next one gathers: a body larger than a batch never has more than two
//! in memory, the network side waits on the disk only when the disk is the
//! slower, and no async worker blocks on a write (the store writes large
//! bodies with `O_DIRECT`, see `BlobWriter`).

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::inventory::store::{BlobWriter, DIRECT_BLOCK};

/// Bytes gathered before they are written: one `O_DIRECT` block.
const BATCH: usize = DIRECT_BLOCK;

type Written = (BlobWriter, io::Result<()>);

pub struct BlobSink {
    /// Here between batches; inside `in_flight` while one is written.
    writer: Option<BlobWriter>,
    in_flight: Option<JoinHandle<Written>>,
    batch: Vec<Bytes>,
    batched: usize,
}

impl BlobSink {
    pub fn new(writer: BlobWriter) -> Self {
        Self {
            writer: Some(writer),
            in_flight: None,
            batch: Vec::new(),
            batched: 0,
        }
    }

    /// Takes the next chunk of the body. An error (a full disk, say) names
    /// the file; the blob is then abandoned (dropping the sink removes it).
    pub async fn push(&mut self, data: Bytes) -> Result<(), String> {
        self.batched += data.len();
        self.batch.push(data);
        if self.batched < BATCH {
            return Ok(());
        }
        let mut writer = self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let result = batch.iter().try_for_each(|b| writer.write(b));
            (writer, result)
        }));
        Ok(())
    }

    /// Writes what is left, syncs, and moves the blob under its hash
    /// (`sha256_hex`, computed by the caller as the body went by).
    pub async fn finish(mut self, sha256_hex: String) -> Result<PathBuf, String> {
        let mut writer = self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        tokio::task::spawn_blocking(move || {
            for b in &batch {
                writer.write(b).map_err(|e| e.to_string())?;
            }
            writer.finish(&sha256_hex).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The writer, once the batch in flight (if any) is written.
    async fn settle(&mut self) -> Result<BlobWriter, String> {
        match self.in_flight.take() {
            Some(task) => {
                let (writer, result) = task.await.map_err(|e| e.to_string())?;
                result.map_err(|e| e.to_string())?;
                Ok(writer)
            }
            None => Ok(self
                .writer
                .take()
                .expect("the writer is here between batches")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::store::Store;
    use sha2::{Digest, Sha256};

    #[tokio::test]
    async fn batches_land_whole_under_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(2 * BATCH + 777)).map(|i| (i % 253) as u8).collect();
        let mut sink = BlobSink::new(store.begin().unwrap());
        for chunk in data.chunks(300_000) {
            sink.push(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let hex = crate::proxy::body::hex(&Sha256::digest(&data));
        let path = sink.finish(hex.clone()).await.unwrap();
        assert!(path.ends_with(&hex));
        assert!(std::fs::read(&path).unwrap() == data);
    }

    #[tokio::test]
    async fn a_dropped_sink_leaves_no_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sink = BlobSink::new(store.begin().unwrap());
        sink.push(Bytes::from(vec![1u8; BATCH + 1])).await.unwrap();
        drop(sink);
        // The batch in flight finishes on its own, then its file goes.
        for _ in 0..100 {
            if std::fs::read_dir(dir.path().join("tmp")).unwrap().count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}
