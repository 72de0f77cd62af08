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
use super::auth::{self, Peer};
use super::body::{self, ProxyBody};
use super::error::{self, Side};
use super::exchange::{self, Target};
use super::idle::{self, Activity};
use super::stall::WriteDeadline;
use super::url::split_authority;

/// Accepts clients until the task is dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: transient.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let peer = Arc::new(Peer::new(local, remote));
        tokio::spawn(serve_client(proxy.clone(), stream, peer));
    }
}

fn builder(proxy: &Proxy) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.timeouts.client_header)
        .keep_alive(true);
    // h2 has no header timeout: a peer that stops answering pings is
    // closed after the same time an HTTP/1.1 head may take.
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(proxy.timeouts.client_header))
        .keep_alive_timeout(proxy.timeouts.client_header);
    b
}

async fn serve_client(proxy: Arc<Proxy>, stream: TcpStream, peer: Arc<Peer>) {
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
    // hyper picks the version once it has seen enough of the h2 preface;
    // half a preface would wait there with no timeout.
    if tokio::time::timeout(limit, whole_preface_or_not(&stream))
        .await
        .is_err()
    {
        tracing::debug!("a client sent part of an h2 preface and stopped: closed");
        return;
    }
    let p = proxy.clone();
    let activity = Arc::new(Activity::default());
    let a = activity.clone();
    let service = service_fn(move |req| {
        let (p, peer, a) = (p.clone(), peer.clone(), a.clone());
        async move {
            let _running = a.begin();
            Ok::<_, Infallible>(route(p, req, peer).await)
        }
    });
    let stream = WriteDeadline::new(stream, proxy.timeouts.body_idle);
    let builder = builder(&proxy);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = idle::serve(conn, &activity, limit, |c| c.graceful_shutdown()).await {
        tracing::debug!("client connection: {e}");
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Encrypted bytes a client connection may hold unsent (rustls's limit).
const TLS_WRITE_BUFFER: usize = 1 << 20;

/// Returns once the first bytes are either the whole h2 preface or not a
/// prefix of it (any HTTP/1.1 request): what hyper needs to pick.
async fn whole_preface_or_not(stream: &TcpStream) {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        if n == buf.len() || buf[..n] != H2_PREFACE[..n] {
            return;
        }
        // peek returns at once while bytes wait: poll gently.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn route(
    proxy: Arc<Proxy>,
    req: hyper::Request<Incoming>,
    peer: Arc<Peer>,
) -> Response<ProxyBody> {
    if !proxy.access.admits(req.headers(), &peer) {
        tracing::info!(
            "refused {} {} from {} (uid {:?}): not this run's client (407)",
            req.method(),
            req.uri(),
            peer.remote(),
            peer.uid()
        );
        return auth::refusal();
    }
    if req.method() == Method::CONNECT {
        return connect(proxy, req, peer);
    }
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme @ ("http" | "https")), Some(authority)) => {
            let (host, port) = split_authority(authority);
            let scheme = if scheme == "https" { "https" } else { "http" };
            let port = port.or(Some(if scheme == "https" { 443 } else { 80 }));
            // Which client this is, for its redirect chains (`redirects`).
            let client = Some(peer);
            let target = Target {
                scheme,
                host: host.into(),
                port,
                client,
            };
            exchange::handle(proxy, req, target).await
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

fn connect(
    proxy: Arc<Proxy>,
    req: hyper::Request<Incoming>,
    peer: Arc<Peer>,
) -> Response<ProxyBody> {
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
            Ok(upgraded) => intercept(proxy, TokioIo::new(upgraded), authority, peer).await,
            Err(e) => tracing::debug!("CONNECT {authority}: upgrade failed: {e}"),
        }
    });
    Response::new(body::empty())
}

/// Terminates the client's TLS with a certificate for the host it asked for,
/// then serves the requests inside as HTTPS exchanges.
async fn intercept<IO>(proxy: Arc<Proxy>, io: IO, authority: http::uri::Authority, peer: Arc<Peer>)
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
    let mut tls = match tokio::time::timeout(limit, start.into_stream(config)).await {
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
    // rustls takes 64 KiB of a body at a time by default: one `writev` (and
    // one wake-up of the client) per four records. A body chunk (hyper
    // hands on up to 400 KiB) goes out in one.
    tls.get_mut().1.set_buffer_limit(Some(TLS_WRITE_BUFFER));
    let p = proxy.clone();
    let activity = Arc::new(Activity::default());
    let a = activity.clone();
    let host: Arc<str> = host.into();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (p, a) = (p.clone(), a.clone());
        let target = Target {
            scheme: "https",
            host: host.clone(),
            port: port.or(Some(443)),
            client: Some(peer.clone()),
        };
        async move {
            let _running = a.begin();
            Ok::<_, Infallible>(exchange::handle(p, req, target).await)
        }
    });
    // ALPN already chose the version: serving it directly (rather than
    // sniffing the first bytes) puts an idle client under the header
    // timeout at once.
    let builder = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => builder(&proxy).http2_only(),
        _ => builder(&proxy).http1_only(),
    };
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    if let Err(e) = idle::serve(conn, &activity, limit, |c| c.graceful_shutdown()).await {
        tracing::debug!("tunnel {authority}: {e}");
    }
}
