//! `buildproxy git-fetch URL REV… -o OUT`: the fixed-output fetcher of
//! commits (or annotated tags) of a repository, each object once, in the canonical form of
//! `git::objects`, whose hash depends on the object IDs only.
//!
//! It asks the server for every REV at depth 1 over smart HTTP (protocol v2),
//! reads whatever pack the server makes, and writes the objects REV needs,
//! sorted and uncompressed; a server that lacks REV or sends an incomplete
//! pack is an error naming the URL and REV, and nothing is written.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};

use crate::cli::GitFetchArgs;
use crate::git::object::ObjectId;
use crate::git::{objects, record};
use crate::inventory::write_atomic_bytes;
use crate::proxy::{Timeouts, upstream_client};
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
    let shown = record::list(&revs);
    let url = format!("{}/git-upload-pack", args.url.trim_end_matches('/'));
    let config = if args.insecure {
        upstream::unverified_client_config()
    } else {
        upstream::client_config(upstream::roots(&args.upstream_ca)?.0)
    };
    let client = upstream_client(config, &Timeouts::default());
    let req = hyper::Request::post(&url)
        .header("content-type", "application/x-git-upload-pack-request")
        .header("accept", "application/x-git-upload-pack-result")
        .header("git-protocol", "version=2")
        .body(
            Full::new(bytes::Bytes::from(record::fetch_request(&revs)))
                .map_err(|never| match never {})
                .boxed(),
        )
        .with_context(|| format!("{url} is not a URL"))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("fetching {shown} from {url}"))?;
    if !resp.status().is_success() {
        bail!("{url} answered {} for {shown}", resp.status());
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of {url}"))?
        .to_bytes();
    let pack = record::pack_of(&body)
        .with_context(|| format!("{url} refused {shown}"))?
        .with_context(|| format!("{url} sent no pack for {shown}"))?;
    let sets = record::fetched(&revs, &pack, &|_| None)
        .with_context(|| format!("reading the pack {url} sent for {shown}"))?;
    let mut union = BTreeMap::new();
    for rev in &revs {
        let Some(set) = sets.get(rev) else {
            bail!("the pack {url} sent does not hold all of {rev}");
        };
        union.extend(set.iter().map(|(id, o)| (*id, o.clone())));
    }
    write_atomic_bytes(&args.output, &objects::encode(&union))?;
    eprintln!(
        "buildproxy: {} objects of {shown} from {} -> {}",
        union.len(),
        args.url,
        args.output.display()
    );
    Ok(0)
}
