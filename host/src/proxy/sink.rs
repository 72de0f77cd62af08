//! Bodies on their way into the content store (`--store`): the one path by
//! which a body becomes a blob, whether it streamed (`body::pump`) or a
//! policy had it buffered (`exchange::buffered`).
//!
//! Chunks are copied, as they go by (while still in the CPU's cache), into
//! aligned blocks of [`DIRECT_BLOCK`] bytes, and each full block is written
//! on the blocking pool while the next one fills: a body never has more
//! than two blocks in memory, the network side waits on the disk only when
//! the disk is the slower, no async worker blocks on a write, and the
//! store writes the blocks with `O_DIRECT` straight from them (see
//! `BlobWriter`).

use std::io;
use std::path::PathBuf;

use tokio::task::JoinHandle;

use crate::inventory::store::{BlobWriter, Block};

type Written = (BlobWriter, Block, io::Result<()>);

pub struct BlobSink {
    /// Here between blocks; inside `in_flight` while one is written.
    writer: Option<BlobWriter>,
    in_flight: Option<JoinHandle<Written>>,
    /// Allocated at the first byte; the block back from the last write is
    /// filled next.
    filling: Option<Block>,
}

impl BlobSink {
    pub fn new(writer: BlobWriter) -> Self {
        Self {
            writer: Some(writer),
            in_flight: None,
            filling: None,
        }
    }

    /// Takes the next chunk of the body. An error (a full disk, say) names
    /// the file; the blob is then abandoned (dropping the sink removes it).
    pub async fn push(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            let block = self.filling.get_or_insert_with(Block::new);
            data = &data[block.fill(data)..];
            if block.is_full() {
                let full = self.filling.take().expect("filling");
                let (mut writer, spare) = self.settle().await?;
                self.filling = spare.map(|mut b| {
                    b.clear();
                    b
                });
                self.in_flight = Some(tokio::task::spawn_blocking(move || {
                    let result = writer.write_block(&full);
                    (writer, full, result)
                }));
            }
        }
        Ok(())
    }

    /// Writes what is left, syncs, and moves the blob under its hash
    /// (`sha256_hex`, computed by the caller as the body went by).
    pub async fn finish(mut self, sha256_hex: String) -> Result<PathBuf, String> {
        let (mut writer, _) = self.settle().await?;
        let tail = self.filling.take();
        tokio::task::spawn_blocking(move || {
            if let Some(b) = &tail {
                writer.write(b.filled()).map_err(|e| e.to_string())?;
            }
            writer.finish(&sha256_hex).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The writer, once the block in flight (if any) is written, and that
    /// block for reuse.
    async fn settle(&mut self) -> Result<(BlobWriter, Option<Block>), String> {
        match self.in_flight.take() {
            Some(task) => {
                let (writer, block, result) = task.await.map_err(|e| e.to_string())?;
                result.map_err(|e| e.to_string())?;
                Ok((writer, Some(block)))
            }
            None => Ok((
                self.writer
                    .take()
                    .expect("the writer is here between blocks"),
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::store::{DIRECT_BLOCK, Store};

    const BATCH: usize = DIRECT_BLOCK;
    use sha2::{Digest, Sha256};

    #[tokio::test]
    async fn batches_land_whole_under_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(2 * BATCH + 777)).map(|i| (i % 253) as u8).collect();
        let mut sink = BlobSink::new(store.begin().unwrap());
        for chunk in data.chunks(300_000) {
            sink.push(chunk).await.unwrap();
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
        sink.push(&vec![1u8; BATCH + 1]).await.unwrap();
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
