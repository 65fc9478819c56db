//! The connection loop: how many connections the server holds, how long a client may take
//! to send its request, and how it stops.
//!
//! axum's own `serve` keeps every connection for as long as the client likes: clients that
//! never finish their headers pile up until nothing else is answered. Here:
//! - at most `max_connections` are open at once; past that, new ones wait in the listen
//!   backlog (and the first wait is logged);
//! - a request's headers must arrive within `header_timeout` (hyper closes the connection
//!   otherwise), which also ends a keep-alive connection idle that long; the body has its
//!   own limit, applied where it is read (`read_body`);
//! - on shutdown the listener closes at once; for a short drain window every answer says
//!   `Connection: close`, so a keep-alive client that sends one more request gets an
//!   answer rather than a reset; then idle connections are closed and requests in flight
//!   finish, within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, STRICT_TRANSPORT_SECURITY};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// The limits of the connection loop.
#[derive(Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// How long requests in flight may take to finish once shutdown began.
    pub grace: Duration,
    /// TLS, when the server has a certificate (`super::tls`); a client must finish its
    /// handshake within `header_timeout`.
    pub tls: Option<Arc<super::tls::Tls>>,
}

/// How long keep-alive connections keep being answered (with `Connection: close`) after
/// shutdown began, before idle ones are closed.
const DRAIN: Duration = Duration::from_millis(1000);

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see the module
/// docs). Returns once every connection is closed or the grace period is over.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let draining = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    let mut warned_full = false;
    loop {
        if slots.available_permits() == 0 && !warned_full {
            tracing::warn!(
                max = limits.max_connections,
                "connection limit reached: new connections wait"
            );
            warned_full = true;
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if slots.available_permits() > 0 {
            warned_full = false;
        }
        let tls = limits.tls.as_ref().and_then(|tls| tls.acceptor());
        let service = connection_service(router.clone(), peer, draining.clone(), tls.is_some());
        let (http, stopped) = (http.clone(), stopped.clone());
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(&http, stream, service, stopped, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(&http, stream, service, stopped, peer).await;
                        }
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "a TLS handshake failed");
                        }
                        Err(_) => tracing::info!(%peer, "a TLS handshake did not finish in time"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    draining.store(true, Ordering::Relaxed);
    tokio::time::sleep(DRAIN.min(limits.grace)).await;
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let closed = tokio::time::timeout(limits.grace.saturating_sub(DRAIN), slots.acquire_many(all));
    if closed.await.is_err() {
        tracing::warn!("grace period over; stopping with requests still open");
    }
}

/// Serves one connection (plain or TLS) until it ends or the server stops.
async fn serve_connection<I, S>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stopped: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result
        && error.is_timeout()
    {
        tracing::info!(%peer, "closed a connection that did not send its request headers in time");
    }
}

/// The service of one connection: the router, with the peer's address for `ConnectInfo`,
/// `Connection: close` on answers once the server is draining, and HSTS over TLS.
fn connection_service(
    router: Router,
    peer: SocketAddr,
    draining: Arc<AtomicBool>,
    tls: bool,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let (router, draining) = (router.clone(), draining.clone());
        async move {
            let mut response = router.oneshot(request.map(axum::body::Body::new)).await?;
            if tls {
                response.headers_mut().insert(
                    STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static(super::tls::HSTS),
                );
            }
            if draining.load(Ordering::Relaxed) {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    })
}
