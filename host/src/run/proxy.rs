//! `buildproxy proxy`: the intercepting proxy with its plugin chain and
//! nothing recorded: for trying plugins, and the host's own tests.

use std::sync::Arc;

use anyhow::Result;

use super::{child, setup};
use crate::catalog::Catalog;
use crate::cli::ProxyArgs;
use crate::plugin::bindings::Mode;
use crate::proxy::upstream_client;
use crate::tls::upstream;

pub async fn run(args: ProxyArgs) -> Result<i32> {
    let (roots, root_certs) = upstream::roots(&args.upstream_ca)?;
    let client = upstream_client(
        upstream::client_config(roots),
        &setup::timeouts(&args.common)?,
    );
    let catalog = Arc::new(Catalog::default());
    let running = setup::start(&args.common, Mode::Proxy, catalog, Some(client), None).await?;
    let env = running.client_env(&root_certs, args.common.proxy_loopback)?;
    let code = if args.command.is_empty() {
        print!("{}", env.exports());
        eprintln!("buildproxy: proxying on {}; Ctrl-C to stop", running.addr);
        128 + child::until_signal().await?
    } else {
        if args.common.print_env {
            print!("{}", env.exports());
        }
        child::run(&args.command, &env, "").await?.code()
    };
    setup::report(&running, false).await;
    Ok(code)
}
