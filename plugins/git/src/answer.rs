//! Replay: a repository rebuilt from its entries, and the answers of the
//! SDK's upload-pack server over it. Every object is checked against its
//! ID when its entry is read (`objects::decode`), so what is served is what
//! was fetched.

use std::collections::HashMap;

use buildproxy_plugin_sdk::Host;
use buildproxy_plugin_sdk::git::objects;
use buildproxy_plugin_sdk::git::upload_pack::Repository;

use crate::entries;

/// What a repository's entries hold; `Ok(None)` when it has none (a miss),
/// `Err` naming what is damaged.
pub fn repository(host: &dyn Host, repo: &str) -> Result<Option<Repository>, String> {
    let recorded = host.representations(entries::METHOD, repo);
    if recorded.is_empty() {
        return Ok(None);
    }
    let mut objects = HashMap::new();
    let mut refs = Vec::new();
    for e in &recorded {
        if let Some(r) = entries::refs_of(e) {
            refs.push(r);
        } else if entries::wants_of(e).is_some() {
            let blob = e
                .body
                .as_ref()
                .ok_or_else(|| format!("{repo}: an objects entry has no body"))?;
            let bytes = host.read_body(blob)?;
            let set = objects::decode(&bytes).map_err(|e| format!("{repo}: {e}"))?;
            objects.extend(set);
        }
    }
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
