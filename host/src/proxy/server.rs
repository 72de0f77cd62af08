//! Accepting clients: the forward-proxy listener, `CONNECT` tunnels, and TLS
//! interception inside them (one leaf certificate per host, SNI honoured,
//! ALPN h2 or HTTP/1.1).

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;

use super::Proxy;
use super::body::{self, ProxyBody};
use super::error::{self, Side};
use super::exchange::{self, Target};
use super::url::split_authority;

/// Accepts clients until the task is dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: transient.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(serve_client(proxy.clone(), stream));
    }
}

fn builder(proxy: &Proxy) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.timeouts.client_header)
        .keep_alive(true);
    b.http2().timer(TokioTimer::new());
    b
}

async fn serve_client(proxy: Arc<Proxy>, stream: TcpStream) {
    // Nagle would hold back every small response on a kept-alive connection.
    let _ = stream.set_nodelay(true);
    // hyper's header timeout starts once it knows the HTTP version, which
    // it learns from the first bytes: a client that sends none would hold
    // its connection (and a file descriptor) forever.
    let limit = proxy.timeouts.client_header;
    match tokio::time::timeout(limit, stream.peek(&mut [0u8; 1])).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return,
        Err(_) => {
            tracing::debug!(
                "a client sent nothing for {} s (--client-header-timeout-secs): closed",
                limit.as_secs_f64()
            );
            return;
        }
    }
    let p = proxy.clone();
    let service = service_fn(move |req| {
        let p = p.clone();
        async move { Ok::<_, Infallible>(route(p, req).await) }
    });
    if let Err(e) = builder(&proxy)
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("client connection: {e}");
    }
}

async fn route(proxy: Arc<Proxy>, req: hyper::Request<Incoming>) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect(proxy, req);
    }
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme @ ("http" | "https")), Some(authority)) => {
            let (host, port) = split_authority(authority);
            let scheme = if scheme == "https" { "https" } else { "http" };
            let port = port.or(Some(if scheme == "https" { 443 } else { 80 }));
            exchange::handle(proxy, req, Target { scheme, host, port }).await
        }
        _ => error::respond(
            StatusCode::BAD_REQUEST,
            Side::Client,
            &uri.to_string(),
            "this is buildproxy, an HTTP proxy: send absolute-form requests or CONNECT \
             (set http_proxy/https_proxy to this address)",
        ),
    }
}

fn connect(proxy: Arc<Proxy>, req: hyper::Request<Incoming>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return error::respond(
            StatusCode::BAD_REQUEST,
            Side::Client,
            &req.uri().to_string(),
            "CONNECT needs host:port",
        );
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => intercept(proxy, TokioIo::new(upgraded), authority).await,
            Err(e) => tracing::debug!("CONNECT {authority}: upgrade failed: {e}"),
        }
    });
    Response::new(body::empty())
}

/// Terminates the client's TLS with a certificate for the host it asked for,
/// then serves the requests inside as HTTPS exchanges.
async fn intercept<IO>(proxy: Arc<Proxy>, io: IO, authority: http::uri::Authority)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (connect_host, port) = split_authority(&authority);
    // The handshake is the tunnel's request head: it gets the same time.
    let limit = proxy.timeouts.client_header;
    let accept = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(limit, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!("CONNECT {authority}: the client did not start TLS: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(
                "CONNECT {authority}: the client sent no TLS hello within {} s \
                 (--client-header-timeout-secs)",
                limit.as_secs_f64()
            );
            return;
        }
    };
    // SNI names the host when the client connected by IP or through an alias.
    let host = start
        .client_hello()
        .server_name()
        .map(str::to_string)
        .unwrap_or(connect_host);
    let config = match proxy.ca.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("CONNECT {authority}: {e}");
            return;
        }
    };
    let tls = match tokio::time::timeout(limit, start.into_stream(config)).await {
        Err(_) => {
            tracing::warn!("CONNECT {authority}: the TLS handshake with the client stalled");
            return;
        }
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::warn!(
                "CONNECT {authority}: TLS handshake with the client failed: {e} \
                 (does the client trust buildproxy's CA? see SSL_CERT_FILE)"
            );
            // The client got nothing: the end summary must say so.
            proxy
                .catalog
                .record_error(super::error::client_rejected_tls(&host, &e));
            return;
        }
    };
    let p = proxy.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let p = p.clone();
        let target = Target {
            scheme: "https",
            host: host.clone(),
            port: port.or(Some(443)),
        };
        async move { Ok::<_, Infallible>(exchange::handle(p, req, target).await) }
    });
    // ALPN already chose the version: serving it directly (rather than
    // sniffing the first bytes) puts an idle client under the header
    // timeout at once.
    let builder = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => builder(&proxy).http2_only(),
        _ => builder(&proxy).http1_only(),
    };
    if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!("tunnel {authority}: {e}");
    }
}
