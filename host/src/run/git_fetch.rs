//! `buildproxy git-fetch URL REV… -o OUT`: the fixed-output fetcher of
//! commits (or annotated tags) of a repository, each object once, in the canonical form of
//! `git::objects`, whose hash depends on the object IDs only.
//!
//! It asks the server for every REV at depth 1 over smart HTTP (protocol v2),
//! reads whatever pack the server makes, and writes the objects REV needs,
//! sorted and uncompressed; a server that lacks REV or sends an incomplete
//! pack is an error naming the URL and REV, and nothing is written.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};

use crate::cli::GitFetchArgs;
use crate::git::object::ObjectId;
use crate::git::{objects, record};
use crate::inventory::write_atomic_bytes;
use crate::proxy::{Timeouts, Upstream, upstream_client};
use crate::tls::upstream;

pub async fn run(args: GitFetchArgs) -> Result<i32> {
    let revs = args
        .revs
        .iter()
        .map(|r| {
            ObjectId::from_hex(r)
                .with_context(|| format!("REV must be a full commit or tag ID, not {r:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let config = if args.insecure {
        upstream::unverified_client_config()
    } else {
        upstream::client_config(upstream::roots(&args.upstream_ca)?.0)
    };
    let client = upstream_client(config, &Timeouts::default());
    let (bytes, count) = objects_of(&client, &args.url, &revs)
        .await
        .map_err(anyhow::Error::msg)?;
    write_atomic_bytes(&args.output, &bytes)?;
    eprintln!(
        "buildproxy: {count} objects of {} from {} -> {}",
        record::list(&revs),
        args.url,
        args.output.display()
    );
    Ok(0)
}

/// The canonical form of `revs` of the repository at `repo`, and how many
/// objects it holds: what `fetchGitObjects` will write (and `check
/// --fetch` compares with the recorded hash). The error names the URL and
/// the revs.
pub(crate) async fn objects_of(
    client: &Upstream,
    repo: &str,
    revs: &[ObjectId],
) -> Result<(Vec<u8>, usize), String> {
    let shown = record::list(revs);
    let url = format!("{}/git-upload-pack", repo.trim_end_matches('/'));
    let req = hyper::Request::post(&url)
        .header("content-type", "application/x-git-upload-pack-request")
        .header("accept", "application/x-git-upload-pack-result")
        .header("git-protocol", "version=2")
        .body(
            Full::new(bytes::Bytes::from(record::fetch_request(revs)))
                .map_err(|never| match never {})
                .boxed(),
        )
        .map_err(|_| format!("{url} is not a URL"))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("fetching {shown} from {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {} for {shown}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer of {url}: {e}"))?
        .to_bytes();
    let pack = record::pack_of(&body)
        .map_err(|e| format!("{url} refused {shown}: {e}"))?
        .ok_or_else(|| format!("{url} sent no pack for {shown}"))?;
    let sets = record::fetched(revs, &pack, &|_| None)
        .map_err(|e| format!("reading the pack {url} sent for {shown}: {e}"))?;
    let mut union = BTreeMap::new();
    for rev in revs {
        let Some(set) = sets.get(rev) else {
            return Err(format!("the pack {url} sent does not hold all of {rev}"));
        };
        union.extend(set.iter().map(|(id, o)| (*id, o.clone())));
    }
    Ok((objects::encode(&union), union.len()))
}
