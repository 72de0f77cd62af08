//! Bodies plugins make (`inventory.put-body`) and read (`read-body`).
//!
//! A body a plugin makes is a representation of its own (the git plugin's
//! objects of a commit). Under `--store` it is a blob of the store, like
//! any recorded body. Without one, capture records hashes only, yet a
//! plugin may need the bytes again later in the run (a git fetch that
//! brings only what the client lacked is completed from the objects an
//! earlier fetch recorded): those bodies are spooled to a private
//! directory that lives as long as the run, and never named by an entry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::Digest as _;

use crate::catalog::{BlobRef, Catalog};
use crate::inventory::nix::{hex, sri};
use crate::inventory::store::Store;
use crate::inventory::verify;

pub struct Bodies {
    catalog: Arc<Catalog>,
    store: Option<Arc<Store>>,
    /// The largest body a plugin may make or read.
    limit: usize,
    spool: OnceLock<Result<(tempfile::TempDir, Store), String>>,
    /// Spooled bodies by blob id.
    spooled: Mutex<HashMap<String, PathBuf>>,
}

impl Bodies {
    pub fn new(catalog: Arc<Catalog>, store: Option<Arc<Store>>, limit: usize) -> Self {
        Self {
            catalog,
            store,
            limit,
            spool: OnceLock::new(),
            spooled: Mutex::new(HashMap::new()),
        }
    }

    /// Hashes `bytes`, writes them (store or spool) and makes them a blob
    /// plugins may name; (id, size).
    pub fn put(&self, bytes: &[u8]) -> Result<(String, u64), String> {
        if bytes.len() > self.limit {
            return Err(format!(
                "a body of {} bytes is over the limit of {} (--plugin-body-limit-mib)",
                bytes.len(),
                self.limit
            ));
        }
        let digest = sha2::Sha256::digest(bytes);
        let (store, spooled) = match &self.store {
            Some(store) => (&**store, false),
            None => (self.spool()?, true),
        };
        let write = || -> Result<PathBuf, String> {
            let mut w = store.begin().map_err(|e| e.to_string())?;
            w.write(bytes)
                .map_err(|e| format!("{}: {e}", store.dir().display()))?;
            w.finish(&hex(&digest)).map_err(|e| e.to_string())
        };
        let file = write().map_err(|e| format!("content store: {e}"))?;
        let size = bytes.len() as u64;
        let id = self.catalog.register_blob(BlobRef {
            file: (!spooled).then(|| file.clone()),
            size,
            hash: Some(sri(&digest)),
        });
        if spooled {
            self.spooled.lock().unwrap().insert(id.clone(), file);
        }
        Ok((id, size))
    }

    /// A recorded (or spooled) body's bytes, checked against its hash.
    pub fn read(&self, id: &str) -> Result<Vec<u8>, String> {
        let known = self
            .catalog
            .blob(id)
            .ok_or_else(|| format!("no body {id:?} is recorded"))?;
        if known.size > self.limit as u64 {
            return Err(format!(
                "the body {id} is {} bytes, over the limit of {} (--plugin-body-limit-mib)",
                known.size, self.limit
            ));
        }
        let file = match known.file {
            Some(f) => f,
            None => self
                .spooled
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .ok_or_else(|| {
                    format!("the body {id} is known by its hash only: this run has no file for it")
                })?,
        };
        verify::read_all(&file, known.hash.as_deref(), known.size).map_err(|e| e.to_string())
    }

    fn spool(&self) -> Result<&Store, String> {
        let made = self.spool.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("buildproxy-bodies-")
                .tempdir()
                .map_err(|e| format!("a directory for plugin bodies: {e}"))?;
            let store = Store::open(dir.path()).map_err(|e| e.to_string())?;
            Ok((dir, store))
        });
        made.as_ref().map(|(_, s)| s).map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_store_bodies_are_spooled_and_read_back_but_never_named_by_an_entry() {
        let catalog = Arc::new(Catalog::for_capture(None));
        let bodies = Bodies::new(catalog.clone(), None, 1 << 20);
        let (id, size) = bodies.put(b"objects").unwrap();
        assert_eq!(size, 7);
        assert_eq!(catalog.blob(&id).unwrap().file, None);
        assert_eq!(bodies.read(&id).unwrap(), b"objects");
        assert!(bodies.put(&vec![0; 2 << 20]).unwrap_err().contains("limit"));
        assert!(bodies.read("sha256-nope").unwrap_err().contains("no body"));
    }

    #[test]
    fn with_a_store_bodies_are_its_blobs_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::for_capture(None));
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let bodies = Bodies::new(catalog.clone(), Some(store), 1 << 20);
        let (id, _) = bodies.put(b"objects").unwrap();
        let file = catalog.blob(&id).unwrap().file.unwrap();
        assert!(file.starts_with(dir.path()));
        assert_eq!(bodies.read(&id).unwrap(), b"objects");
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, b"0bjects").unwrap();
        let err = bodies.read(&id).unwrap_err();
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
}
