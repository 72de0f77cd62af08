//! `buildproxy git-fetch URL REV -o OUT`: the fixed-output fetcher of one
//! commit (or annotated tag) of a repository, in the canonical form of
//! `git::objects`, whose hash depends on the object IDs only.
//!
//! It asks the server for REV at depth 1 over smart HTTP (protocol v2),
//! reads whatever pack the server makes, and writes the objects REV needs,
//! sorted and uncompressed; a server that lacks REV or sends an incomplete
//! pack is an error naming the URL and REV, and nothing is written.

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};

use crate::cli::GitFetchArgs;
use crate::git::object::ObjectId;
use crate::git::{objects, record};
use crate::inventory::write_atomic_bytes;
use crate::proxy::{Timeouts, upstream_client};
use crate::tls::upstream;

pub async fn run(args: GitFetchArgs) -> Result<i32> {
    let rev = ObjectId::from_hex(&args.rev)
        .with_context(|| format!("REV must be a full commit or tag ID, not {:?}", args.rev))?;
    let url = format!("{}/git-upload-pack", args.url.trim_end_matches('/'));
    let (roots, _) = upstream::roots(&args.upstream_ca)?;
    let client = upstream_client(upstream::client_config(roots), &Timeouts::default());
    let req = hyper::Request::post(&url)
        .header("content-type", "application/x-git-upload-pack-request")
        .header("accept", "application/x-git-upload-pack-result")
        .header("git-protocol", "version=2")
        .body(
            Full::new(bytes::Bytes::from(record::fetch_request(rev)))
                .map_err(|never| match never {})
                .boxed(),
        )
        .with_context(|| format!("{url} is not a URL"))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("fetching {rev} from {url}"))?;
    if !resp.status().is_success() {
        bail!("{url} answered {} for {rev}", resp.status());
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of {url}"))?
        .to_bytes();
    let pack = record::pack_of(&body)
        .with_context(|| format!("{url} refused {rev}"))?
        .with_context(|| format!("{url} sent no pack for {rev}"))?;
    let sets = record::fetched(&[rev], &pack, &|_| None)
        .with_context(|| format!("reading the pack {url} sent for {rev}"))?;
    let Some(set) = sets.get(&rev) else {
        bail!("the pack {url} sent does not hold all of {rev}");
    };
    write_atomic_bytes(&args.output, &objects::encode(set))?;
    eprintln!(
        "buildproxy: {} objects of {rev} from {} -> {}",
        set.len(),
        args.url,
        args.output.display()
    );
    Ok(0)
}
