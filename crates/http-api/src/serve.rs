//! Serving HTTP/1.1 connections with the limits a public listener needs:
//! a cap on concurrent connections, a deadline for each request's headers,
//! and one for reading and answering the whole request, so slow clients
//! (a header or a body at one byte a second) cannot hold connections open.

use crate::auth::PeerAddr;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Per-listener connection limits (`kumo.start_http_listener`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections; one more is closed at once.
    pub max_connections: usize,
    /// Time for a request's header block to arrive.
    pub header_read_timeout: Duration,
    /// Time to read a request's body and answer it.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Where connections come from: a plain socket, or one that completes TLS
/// handshakes first.
pub(crate) trait Accept: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Option<(Box<dyn Io>, SocketAddr)>> + Send;
}

/// Accept until `stop`; each connection served in its own task with the
/// router current when each request arrives.
pub(crate) async fn serve(
    mut incoming: impl Accept,
    app: Router,
    limits: Arc<arc_swap::ArcSwap<HttpLimits>>,
    stop: CancellationToken,
) {
    // Counted, not a semaphore: the cap is read at each accept, so a reload
    // that lowers it applies at once.
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            a = incoming.next() => a,
            _ = stop.cancelled() => return,
        };
        let Some((io, peer)) = accepted else { return };
        let now = **limits.load();
        if open.load(Ordering::SeqCst) >= now.max_connections {
            tracing::warn!(%peer, "HTTP connection limit reached; closing a new connection");
            drop(io);
            continue;
        }
        let slot = Slot::take(&open);
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_one(io, peer, app, now, stop).await;
        });
    }
}

/// One open connection, counted while it lives.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_one(io: Box<dyn Io>, peer: SocketAddr, app: Router, limits: HttpLimits, stop: CancellationToken) {
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            let response = match tokio::time::timeout(limits.request_timeout, app.oneshot(request)).await {
                Ok(response) => response.into_response(),
                Err(_) => {
                    tracing::info!(%peer, "HTTP request not read and answered in time; closing");
                    (StatusCode::REQUEST_TIMEOUT, [(header::CONNECTION, "close")], "request timed out\n")
                        .into_response()
                }
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}
