//! Replay: a repository rebuilt from its entries, and the answers of the
//! SDK's upload-pack server over it. Every object is checked against its
//! ID when its entry is read (`objects::decode`), so what is served is what
//! was fetched.

use std::collections::HashMap;

use buildproxy_plugin_sdk::Host;
use buildproxy_plugin_sdk::git::object::{Object, ObjectId};
use buildproxy_plugin_sdk::git::objects;
use buildproxy_plugin_sdk::git::upload_pack::Repository;

use crate::entries;

/// The objects of one repository as last read, by the blob IDs they came
/// from: a clone's three or four requests read the same entries, and the
/// host usually gives them the same instance. Only a speed-up: an instance
/// may be dropped at any time, and then the next request reads again.
#[derive(Default)]
pub struct Cache {
    repo: String,
    blobs: Vec<String>,
    objects: HashMap<ObjectId, Object>,
}

impl Cache {
    /// Takes back the objects `repository` lent.
    pub fn keep(&mut self, r: Repository) {
        if r.url == self.repo {
            self.objects = r.objects;
        }
    }
}

/// What a repository's entries hold; `Ok(None)` when it has none (a miss),
/// `Err` naming what is damaged.
pub fn repository(
    host: &dyn Host,
    repo: &str,
    cache: &mut Cache,
) -> Result<Option<Repository>, String> {
    let recorded = host.representations(entries::METHOD, repo);
    if recorded.is_empty() {
        return Ok(None);
    }
    let refs: Vec<_> = recorded.iter().filter_map(entries::refs_of).collect();
    let bodies: Vec<_> = recorded
        .iter()
        .filter(|e| entries::wants_of(e).is_some())
        .map(|e| {
            e.body
                .as_ref()
                .ok_or_else(|| format!("{repo}: an objects entry has no body"))
        })
        .collect::<Result<_, _>>()?;
    let ids: Vec<String> = bodies.iter().map(|b| b.id.clone()).collect();
    if cache.repo != repo || cache.blobs != ids {
        let mut objects = HashMap::new();
        for blob in bodies {
            let bytes = host.read_body(blob)?;
            let set = objects::decode(&bytes).map_err(|e| format!("{repo}: {e}"))?;
            objects.extend(set);
        }
        *cache = Cache {
            repo: repo.to_owned(),
            blobs: ids,
            objects,
        };
    }
    // Lent to the answer, and given back by `Cache::keep`.
    let objects = std::mem::take(&mut cache.objects);
    // Only refs whose objects were fetched: a client told of a ref wants
    // it, and a want that cannot be served fails its whole clone.
    let refs = entries::merged(refs)
        .into_iter()
        .filter(|r| objects.contains_key(&r.id))
        .collect();
    Ok(Some(Repository {
        url: repo.to_owned(),
        refs,
        objects,
    }))
}
